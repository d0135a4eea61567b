"""What OpenMP's wait policy and genlab's thread sharing cost and save: torch's CPU kernels run on
an OpenMP pool whose idle threads, by default (libgomp), spin for a while before they sleep. That
is what makes them fast alone; beside another busy process, the spinning threads of two processes
steal each other's cores. This benchmark times, on an idle machine and beside a busy one:

- ``default``: no OpenMP variable set, a fixed thread count (``--threads``);
- NAME=VALUE settings (``--policies``), e.g. OMP_WAIT_POLICY=PASSIVE (threads sleep at once:
  what genlab 0.3.1 set), GOMP_SPINCOUNT=50000 (a bounded spin);
- ``genlab``: no OpenMP variable, genlab imported first as its command does (passive waiting
  where other processes keep the cores busy at that moment), and ``hardware.cpu_threads`` (its
  share of the cores, lowered while another process keeps cores busy, polled from the loop as
  the training loop and the samplers do).

Each measurement runs in a fresh process, repeated (``--repeats``, interleaved) and reported as
the median (the policy is read when the OpenMP runtime starts):

- ``sample``: DDIM-50 sampling of the demo's DDPM (the (16, 32) UNet on 8x8 digits, untrained)
  in batches of 100, images/s;
- ``train``: Adam steps of genlab's feature classifier (two conv blocks) on 28x28 images in
  batches of 128, images/s.

"Busy" starts a competing process first: a 2-thread 512x512 fp32 matmul loop under the default
policy, like a second training job.

    .venv/bin/python benchmarks/bench_threads.py [--threads 2] [--seconds 8] \
        [--policies genlab,OMP_WAIT_POLICY=PASSIVE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BUSY = """
import torch, time
torch.set_num_threads({threads})
a = torch.randn(512, 512)
while True:
    a = (a @ a).tanh()
"""


def _work(kind: str, threads: int, seconds: float, shared: bool = False) -> float:
    import contextlib

    sys.path.insert(0, str(ROOT / "src"))
    if shared:  # as the genlab command does: the package first, then torch's OpenMP runtime
        import genlab  # noqa: F401
    import torch

    from genlab.hardware import cpu_threads, poll_threads

    torch.set_num_threads(threads)

    with cpu_threads() if shared else contextlib.nullcontext():
        return _timed(kind, seconds, poll_threads)


def _timed(kind: str, seconds: float, poll) -> float:
    import torch
    if kind == "sample":
        from genlab.recipes import make_config
        from genlab.recipes.ddpm import build_unet, schedule_of
        from genlab.samplers import ddim

        cfg = make_config("ddpm", "default", dataset="digits", channels=(16, 32), num_steps=200)
        net = build_unet(cfg, (1, 8, 8), 10)["model"].eval()
        schedule = schedule_of(cfg, torch.device("cpu"))

        def once() -> int:
            with torch.no_grad():
                ddim(net, schedule, (100, 1, 8, 8), 50, 1.0)
            return 100
    else:
        from genlab.models.classifier import Classifier

        net = Classifier(1, 10)
        opt = torch.optim.Adam(net.parameters(), 1e-3)
        x, y = torch.rand(128, 1, 28, 28), torch.randint(0, 10, (128,))

        def once() -> int:
            for _ in range(5):
                poll()  # as the training loop does, once per step (DDIM: once per network call)
                loss = torch.nn.functional.cross_entropy(net(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
            return 5 * 128
    once()  # warm-up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        done += once()
    return done / (time.perf_counter() - start)


OMP_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")


def measure(kind: str, policy: str, busy: bool, threads: int, seconds: float) -> float:
    """images/s of ``kind`` under ``policy``: 'default' (no OpenMP variable set), 'genlab' (none
    set, genlab's thread sharing) or NAME=VALUE."""
    env = {k: v for k, v in os.environ.items() if k not in OMP_VARS}
    if policy not in ("default", "genlab"):
        name, value = policy.split("=")
        env[name] = value
    rival = None
    if busy:
        rival_env = {k: v for k, v in os.environ.items() if k not in OMP_VARS}
        rival = subprocess.Popen([sys.executable, "-c", BUSY.format(threads=threads)],
                                 env=rival_env)
        time.sleep(1.0)
    try:
        out = subprocess.run([sys.executable, __file__, "--one",
                              json.dumps([kind, threads, seconds, policy == "genlab"])],
                             env=env, capture_output=True, text=True, check=True)
    finally:
        if rival is not None:
            rival.kill()
            rival.wait()
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--kinds", default="sample,train")
    ap.add_argument("--repeats", type=int, default=3,
                    help="measurements of each setting, interleaved; the median is reported")
    ap.add_argument("--policies", default="genlab,OMP_WAIT_POLICY=PASSIVE",
                    help="comma-separated settings to time against the default: 'genlab' or "
                         "NAME=VALUE")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(_work(*json.loads(args.one)))
        return
    import torch

    sys.path.insert(0, str(ROOT / "src"))
    from genlab.hardware import cpu_name  # each measurement strips the OpenMP variables it sets

    print(f"{cpu_name()}; {os.cpu_count()} logical CPUs; torch {torch.__version__}; "
          f"{args.threads} threads per process")
    rows = []
    for kind in args.kinds.split(","):
        for busy in (False, True):
            row = {"kind": kind, "busy": busy}
            policies = ("default", *args.policies.split(","))
            runs: dict[str, list[float]] = {p: [] for p in policies}
            for _ in range(args.repeats):  # interleaved, so that drift hits every setting
                for policy in policies:
                    runs[policy].append(measure(kind, policy, busy, args.threads, args.seconds))
            row.update({p: statistics.median(v) for p, v in runs.items()})
            row["all"] = runs
            rows.append(row)
            print(f"{kind:6s} {'beside a busy process' if busy else 'idle machine':22s} "
                  f"default {row['default']:7.1f} img/s   " + "   ".join(
                      f"{p} {row[p]:7.1f} ({row[p] / row['default']:.2f}x)"
                      for p in args.policies.split(",")), flush=True)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
