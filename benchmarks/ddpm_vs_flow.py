"""DDPM against flow matching at an equal training budget: trains (or resumes) both default
presets for the same minutes of training time, then scores DDIM-50 and flow at several NFE with
Euler and Heun on the same number of samples, in the same offline feature space.

    python benchmarks/ddpm_vs_flow.py --data-dir ../shared/data/mnist --minutes 20 \\
        --out runs/ddpm-vs-flow --n 300 --nfe 10 20 50

Each run is trained by `genlab train FAMILY --max-minutes M` semantics (training time summed over
resumes), so an interrupted benchmark continues where it stopped. Prints one row per sampler
(seconds per image, NFE, FID, KID) and the rows as JSON; the target is flow at 20 NFE reaching
DDIM-50's FID in under half its sampling time.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import genlab
from genlab import checkpoint
from genlab.hardware import cpu_name


def train(family: str, out: Path, args: argparse.Namespace) -> Path:
    run_dir = out / family
    if checkpoint.is_run(run_dir):
        genlab.train(resume=run_dir, plot=False, progress=False)
        return run_dir
    cfg = genlab.make_config(family, "default", dataset=args.dataset, data_dir=args.data_dir,
                             download=False, steps=10**7, max_minutes=args.minutes,
                             num_threads=args.threads, precision=args.precision,
                             checkpoint_every=2000, run_dir=str(run_dir))
    return genlab.train(cfg, plot=False, progress=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--data-dir", default="../shared/data/mnist")
    parser.add_argument("--minutes", type=float, default=20.0, help="training minutes per family")
    parser.add_argument("--out", type=Path, default=Path("runs/ddpm-vs-flow"))
    parser.add_argument("--ddpm-run", type=Path, default=None, help="score this DDPM run instead")
    parser.add_argument("--flow-run", type=Path, default=None, help="score this flow run instead")
    parser.add_argument("--n", type=int, default=300, help="samples per sampler setting")
    parser.add_argument("--nfe", type=int, nargs="+", default=[10, 20, 50])
    parser.add_argument("--ddim-steps", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ddpm_run = args.ddpm_run or train("ddpm", args.out, args)
    flow_run = args.flow_run or train("flow", args.out, args)

    common = dict(num_samples=args.n, num_images=0)
    ddpm = genlab.evaluate(ddpm_run, ddpm_samples=0, ddim_steps=args.ddim_steps, **common)
    flow = genlab.evaluate(flow_run, solvers=("euler", "heun"), nfe=tuple(args.nfe), **common)
    rows = []
    for family, run_dir, metrics in (("ddpm", ddpm_run, ddpm), ("flow", flow_run, flow)):
        log = checkpoint.read_log(run_dir)
        trained = {"steps": log[-1]["step"], "train_seconds": log[-1]["train_seconds"],
                   "images_seen": log[-1]["step"] * genlab.load_run(run_dir).config.batch_size}
        for key in metrics:
            if key.startswith("nfe_"):
                label = key[len("nfe_"):]
                rows.append({"family": family, "sampler": label, "nfe": metrics[key],
                             "seconds_per_image": metrics[f"seconds_per_image_{label}"],
                             "fid": metrics[f"fid_{label}"], "kid": metrics[f"kid_{label}"],
                             "kid_std": metrics[f"kid_std_{label}"], **trained})
    print(f"{cpu_name()}, {args.threads} threads; {args.n} samples per setting against "
          f"{ddpm['num_real']} test images; feature net accuracy "
          f"{ddpm['feature_net_test_accuracy']:.3f}")
    for family, run_dir in (("ddpm", ddpm_run), ("flow", flow_run)):
        r = next(r for r in rows if r["family"] == family)
        print(f"{family}: {r['steps']} steps, {r['images_seen']} images in "
              f"{r['train_seconds']:.0f} s of training ({run_dir})")
    print(f"{'family':<6}{'sampler':<10}{'NFE':>5}{'s/image':>10}{'FID':>9}{'KID':>18}")
    for r in rows:
        print(f"{r['family']:<6}{r['sampler']:<10}{r['nfe']:>5}{r['seconds_per_image']:>10.4f}"
              f"{r['fid']:>9.2f}{r['kid']:>10.3f} +- {r['kid_std']:.3f}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
