"""What ``--precision auto`` chooses on this machine, and the training images/s it gives against
fp32 and forced bf16, side by side in one process, for every generating family's default preset.

Each (family, precision) trains a few steps on MNIST (../shared/data/mnist, else the embedded
digits) from scratch in a temporary folder; images/s is the median of the logged intervals after
the first (warm-up). Forced bf16 runs only ``--bf16-steps`` steps: on a CPU without native bf16
(AVX2) it is one to two orders of magnitude slower, which is why auto does not pick it there.

    .venv/bin/python benchmarks/bench_precision.py [--families ddpm,flow,dcgan,vae] [--threads 2]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from genlab import checkpoint, recipes  # noqa: E402
from genlab.hardware import cpu_name, native_bf16, resolve_precision  # noqa: E402
from genlab.training import train  # noqa: E402

STEPS = {"ddpm": 24, "flow": 24, "dcgan": 60, "vae": 300}  # fp32 and auto


def images_per_s(family: str, precision: str, steps: int, data: dict, threads: int,
                 minutes: float = 0.0) -> float:
    """Measured in a fresh process: Accelerate's state (its mixed precision) is process-wide."""
    import subprocess

    args = json.dumps([family, precision, steps, data, threads, minutes])
    done = subprocess.run([sys.executable, __file__, "--one", args], capture_output=True,
                          text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def _measure(family: str, precision: str, steps: int, data: dict, threads: int,
             minutes: float = 0.0) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = recipes.make_config(family, "default", **data, precision=precision, steps=steps,
                                  log_every=max(1, steps // 4), checkpoint_every=10_000,
                                  num_threads=threads, max_minutes=minutes,
                                  run_dir=str(Path(tmp) / "run"))
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            run_dir = train(cfg, progress=False)
        speeds = [r["images_per_s"] for r in checkpoint.read_log(run_dir) if "images_per_s" in r]
        return statistics.median(speeds[1:] or speeds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", default="ddpm,flow,dcgan,vae")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)  # one measurement, as JSON
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bf16-steps", type=int, default=3)
    ap.add_argument("--bf16-families", default=None,
                    help="families to time under forced bf16 (default: all of --families; on an "
                         "emulating CPU one DDPM step on MNIST takes minutes)")
    ap.add_argument("--bf16-minutes", type=float, default=1.0,
                    help="time cap of each emulated-bf16 run (it stops after the step that "
                         "passes it)")
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "mnist"))
    args = ap.parse_args()
    if args.one:
        print(_measure(*json.loads(args.one)))
        return
    data = (dict(dataset="mnist", data_dir=args.data_dir, download=False)
            if Path(args.data_dir).is_dir() else dict(dataset="digits"))
    auto = resolve_precision("auto", "cpu")[0]
    print(f"{cpu_name()}; native "
          f"bf16: {native_bf16('cpu')}; --precision auto -> {auto}; {args.threads} threads; "
          f"data {data['dataset']}")
    rows = []
    for family in args.families.split(","):
        row = {"family": family}
        forced = args.bf16_families is None or family in args.bf16_families.split(",")
        for precision in ("fp32", "auto", "bf16")[:3 if forced else 2]:
            emulated = precision == "bf16" and not native_bf16("cpu")
            row[precision] = images_per_s(family, precision,
                                          args.bf16_steps if emulated else STEPS[family], data,
                                          args.threads, args.bf16_minutes if emulated else 0.0)
        rows.append(row)
        bf16 = (f"{row['bf16']:8.1f} img/s ({row['bf16'] / row['fp32']:.3f}x)" if forced
                else "not measured")
        print(f"{family:6s} fp32 {row['fp32']:8.1f} img/s   auto({auto}) {row['auto']:8.1f} "
              f"img/s ({row['auto'] / row['fp32']:.2f}x)   bf16 {bf16}", flush=True)
    print(json.dumps({"cpu": cpu_name(), "auto": auto, "rows": rows}))


if __name__ == "__main__":
    main()
