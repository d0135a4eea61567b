"""Training from a prepared (memory-mapped) dataset vs from memory: images/s and peak memory.

(a) MNIST: the VAE reference preset (784-256-2 MLP, batch 128; the family where reading a batch
weighs most against its compute) trains a fixed number of steps once from the in-memory split and
once from `genlab prepare mnist`'s files, each in its own process, alternating --repeats times;
the images/s of each and its peak RSS (VmHWM) are printed side by side. Target: the
memory-mapped loop within 10% of the in-memory one.
(b) a synthetic prepared set of --big-gib GiB (28x28 grey noise, written in chunks, deleted
afterwards) trains --big-steps steps, first evicted from the page cache (as a set larger than
memory is), then with all of it cached. Pages read through the map count in RSS as RssFile: clean
page cache the kernel drops under pressure (on recent kernels whole 2 MiB page-cache folios are
mapped at once, so a cached file shows up nearly whole); the process's own memory is RssAnon.
Images/s are the median over the ten log intervals of a run (robust to other jobs on a shared
machine; for (a) of the best run), next to the overall figure (the loop's own train_seconds).

    .venv/bin/python benchmarks/bench_prepared.py [--data-dir ../shared/data/mnist] [--steps 1000]
        [--repeats 3] [--big-gib 3] [--big-steps 500] [--parts ab] [--memory-limit-gib 1]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def memory_status() -> dict[str, float]:
    """VmHWM (peak RSS), RssAnon and RssFile of this process in MiB, from /proc/self/status."""
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmHWM", "RssAnon", "RssFile"):
            values[key] = int(rest.split()[0]) / 1024
    return values


def child(args: argparse.Namespace) -> None:
    """Train in this process and print one JSON line: images/s and memory (VmHWM, and the
    largest RssAnon and RssFile seen by a thread that reads them every 0.1 s)."""
    import statistics
    import threading

    import genlab
    from genlab import checkpoint, training

    if args.child == "import-only":
        print(json.dumps({"images_per_s": 0.0, **memory_status()}))
        return
    peaks = {"RssAnon": 0.0, "RssFile": 0.0}
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.1):
            now = memory_status()
            for key in peaks:
                peaks[key] = max(peaks[key], now[key])

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    cfg = genlab.make_config("vae", "reference", dataset=args.child, data_dir=str(args.data_dir),
                             download=False, steps=args.steps, log_every=max(1, args.steps // 10),
                             checkpoint_every=10**9, run_dir=args.run_dir,
                             num_threads=args.threads)
    run_dir = training.train(cfg, progress=False)
    done.set()
    watcher.join()
    log = checkpoint.read_log(run_dir)
    print(json.dumps({"images_per_s": args.steps * cfg.batch_size / log[-1]["train_seconds"],
                      "median_images_per_s": statistics.median(r["images_per_s"] for r in log),
                      **memory_status(), **{f"peak_{k}": v for k, v in peaks.items()}}))


def memory_cgroup(limit_gib: float) -> tuple[Path, Path, Path]:
    """A new memory cgroup (v1 or v2; needs root) capped at ``limit_gib`` GiB: (its folder, the
    file its processes go in, the file of its peak usage). Page cache counts against the cap, so
    a process in it must make do with that much memory for its own pages and the file's."""
    name = f"genlab-bench-{os.getpid()}"
    v1, v2 = Path("/sys/fs/cgroup/memory"), Path("/sys/fs/cgroup")
    try:
        if v1.is_dir():
            group = v1 / name
            group.mkdir()
            (group / "memory.limit_in_bytes").write_text(str(int(limit_gib * 2**30)))
            return group, group / "cgroup.procs", group / "memory.max_usage_in_bytes"
        group = v2 / name
        group.mkdir()
        (group / "memory.max").write_text(str(int(limit_gib * 2**30)))
        return group, group / "cgroup.procs", group / "memory.peak"
    except OSError as err:
        sys.exit(f"--memory-limit-gib needs a writable memory cgroup (root): {err}")


def run_child(dataset: str, steps: int, args: argparse.Namespace, work: Path,
              cgroup_procs: Path | None = None) -> dict:
    run_dir = Path(tempfile.mkdtemp(dir=work, prefix="run-"))
    cmd = [sys.executable, __file__, "--child", dataset, "--steps", str(steps), "--run-dir",
           str(run_dir), "--data-dir", str(args.data_dir), "--threads", str(args.threads)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    join = (lambda: cgroup_procs.write_text(str(os.getpid()))) if cgroup_procs else None
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False,
                          preexec_fn=join)
    if done.returncode != 0:
        sys.exit(f"child {dataset} failed:\n{done.stderr}")
    shutil.rmtree(run_dir)
    return json.loads(done.stdout.strip().splitlines()[-1])


def write_big(out: Path, gib: float) -> tuple[int, float]:
    """A prepared set of ``gib`` GiB of 28x28 grey noise, 65,536 images at a time."""
    import numpy as np

    from genlab import prepared

    per_chunk, side = 65536, 28
    count = int(gib * 2**30) // (side * side) // per_chunk * per_chunk
    rng = np.random.default_rng(0)

    def chunks(n):
        for _ in range(n // per_chunk):
            yield np.frombuffer(rng.bytes(per_chunk * side * side), np.uint8).reshape(
                per_chunk, 1, side, side)

    start = time.perf_counter()
    prepared.write_prepared(out, {
        "train": (chunks(count), rng.integers(0, 10, count), count),
        "test": (chunks(per_chunk), rng.integers(0, 10, per_chunk), per_chunk),
    }, tuple(str(i) for i in range(10)), "synthetic noise")
    return count, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "mnist")
    parser.add_argument("--steps", type=int, default=1000, help="steps per MNIST run (1000)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per MNIST side (3)")
    parser.add_argument("--big-gib", type=float, default=3.0, help="synthetic set size (3 GiB)")
    parser.add_argument("--big-steps", type=int, default=500, help="steps on it (500)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--memory-limit-gib", type=float, default=0.0,
                        help="(b) also train inside a memory cgroup capped at this many GiB, page "
                             "cache included: a set several times the memory it may use (root)")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: tmp)")
    parser.add_argument("--parts", default="ab", help="which parts to run: a, b or ab (ab)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if not (args.data_dir / "MNIST" / "raw").is_dir():
        sys.exit(f"MNIST not found under {args.data_dir}; pass --data-dir")
    from genlab import data

    work = Path(tempfile.mkdtemp(dir=args.work, prefix="bench-prepared-"))
    results: dict[str, list[dict]] = {}
    big: dict[str, dict] = {}
    try:
        baseline = run_child("import-only", 0, args, work)
        if "a" in args.parts:
            start = time.perf_counter()
            data.prepare("mnist", work / "mnist", args.data_dir, download=False)
            prepare_s = time.perf_counter() - start
            sides = {"in memory (mnist)": "mnist",
                     "memory-mapped (prepared:)": f"prepared:{work / 'mnist'}"}
            results = {name: [] for name in sides}
            for _ in range(args.repeats):
                for name, dataset in sides.items():
                    results[name].append(run_child(dataset, args.steps, args, work))
        if "b" in args.parts:
            count, write_s = write_big(work / "big", args.big_gib)
            big_file = work / "big" / "train.u8"
            size_mib = big_file.stat().st_size / 2**20
            for state in ("not in page cache", "in page cache"):
                with open(big_file, "rb") as f:
                    if state == "not in page cache":  # write it out, then drop its cached pages
                        os.fsync(f.fileno())
                        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
                    else:
                        while f.read(2**26):
                            pass
                big[state] = run_child(f"prepared:{work / 'big'}", args.big_steps, args, work)
            if args.memory_limit_gib:
                state = f"cgroup cap {args.memory_limit_gib:g} GiB"
                with open(big_file, "rb") as f:  # evicted: its pages are then charged to the cap
                    os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
                group, procs, peak = memory_cgroup(args.memory_limit_gib)
                try:
                    big[state] = run_child(f"prepared:{work / 'big'}", args.big_steps, args, work,
                                           procs)
                    big[state]["cgroup_peak_mib"] = int(peak.read_text()) / 2**20
                finally:
                    group.rmdir()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    from genlab.hardware import cpu_name

    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores; torch threads: "
          f"{args.threads or 'default'}")
    if results:
        best = {name: max(rs, key=lambda r: r["median_images_per_s"])
                for name, rs in results.items()}
        print(f"(a) MNIST, VAE reference, {args.steps} steps x batch 128, {args.repeats} runs per "
              f"side, alternating; prepare mnist took {prepare_s:.1f} s")
        print(f"{'':28s} {'images/s':>9s} {'each run, overall':>22s} {'peak RSS MiB':>13s}")
        for name, rs in results.items():
            runs = ", ".join(f"{r['images_per_s']:.0f}" for r in rs)
            print(f"{name:28s} {best[name]['median_images_per_s']:9.0f} {runs:>22s} "
                  f"{best[name]['VmHWM']:13.0f}")
        print(f"{'import torch + genlab only':28s} {'':9s} {'':>22s} {baseline['VmHWM']:13.0f}")
        names = list(results)
        ratio = (best[names[1]]["median_images_per_s"] / best[names[0]]["median_images_per_s"])
        print(f"memory-mapped / in memory: {ratio:.3f} (target >= 0.90)")
    if big:
        print(f"(b) synthetic prepared set: {count} images of 1x28x28, {size_mib:.0f} MiB on disk "
              f"(written in {write_s:.1f} s, deleted); VAE reference, {args.big_steps} steps x 128")
        print(f"{'file':20s} {'images/s':>9s} {'overall':>8s} {'peak RSS':>9s} {'RssAnon':>8s} "
              f"{'RssFile':>8s} {'peak RSS / file':>16s}  (MiB; Rss*: the largest seen)")
        for state, r in big.items():
            print(f"{state:20s} {r['median_images_per_s']:9.0f} {r['images_per_s']:8.0f} "
                  f"{r['VmHWM']:9.0f} {r['peak_RssAnon']:8.0f} {r['peak_RssFile']:8.0f} "
                  f"{r['VmHWM'] / size_mib:16.2f}")
        for state, r in big.items():
            if "cgroup_peak_mib" in r:
                print(f"{state}: the cgroup's peak usage (process + page cache) "
                      f"{r['cgroup_peak_mib']:.0f} MiB for a {size_mib:.0f} MiB file "
                      f"({size_mib / r['cgroup_peak_mib']:.1f}x)")
        print(f"{'(import only)':20s} {'':9s} {'':8s} {baseline['VmHWM']:9.0f} "
              f"{baseline['RssAnon']:8.0f} {baseline['RssFile']:8.0f}  (shared libraries are "
              f"most of RssFile)")

if __name__ == "__main__":
    main()
