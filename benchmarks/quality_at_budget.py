"""Quality at a fixed training budget: trains a family's preset for M minutes of training time
(one fresh run per budget, so each run's schedules span its own minutes), scores it, and prints
one row per run: family, minutes, CPU, precision, steps, images seen, and the quality figure.

    # flow and DDPM on MNIST: FID in the shipped MNIST features on 10,000 samples
    python benchmarks/quality_at_budget.py flow --minutes 5 10 20 --data-dir ../shared/data/mnist
    python benchmarks/quality_at_budget.py ddpm --minutes 5 10 20 --data-dir ../shared/data/mnist
    # the VAE: IWAE (k = 5,000) NLL in nats on the fixed binarisation of the 10k test images
    python benchmarks/quality_at_budget.py vae --minutes 10 --set binarize=true \\
        --data-dir ../shared/data/mnist
    # the denoiser on FER2013 at three Poisson peaks: PSNR/SSIM against BM3D + Anscombe
    python benchmarks/quality_at_budget.py gan --minutes 30 --dataset fer2013 \\
        --data-dir ../shared/data/fer2013 --set peak=10

    # score checkpoints of an existing run at given minutes of its training instead (the
    # checkpoint nearest below each), e.g. a run trained by an older genlab:
    python benchmarks/quality_at_budget.py flow --score-run runs/old-flow --minutes 5 10 20

Runs go to --out/FAMILY-Mmin (an interrupted run resumes; a finished one is only scored).
Rows, with the evaluate options that scored them, are appended to --out/quality.jsonl. Training
runs alone: run nothing else meanwhile, as a budget in minutes buys fewer steps on shared cores;
--train-only trains a queue of runs and scores none, so that scoring runs in a batch afterwards.
A checkpoint's writing counts as training time (2.4-6 s each for the MNIST UNets on 2 cores),
so a run asked for --set checkpoint_every=100 to score snapshots takes fewer steps in its minutes.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import genlab
from genlab import checkpoint, recipes
from genlab.hardware import cpu_name

QUALITY = {  # family -> (evaluate options, the figure reported, lower is better)
    "vae": (dict(k=5000), "nll_iwae_nats"),
    "flow": (dict(num_samples=10_000, num_images=0, solvers=("heun",), nfe=(20,)),
             "fid_heun20"),
    "ddpm": (dict(num_samples=10_000, num_images=0, ddpm_samples=0, ddim_steps=50),
             "fid_ddim50"),
    "dcgan": (dict(num_samples=10_000, num_images=0), "fid"),
    "gan": (dict(num_images=1000, baselines=("bm3d",)), "methods"),
}

def parse_value(text: str) -> Any:
    """JSON where it parses (true, 3, 0.5, [16, 32]), else the text."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def checkpoint_at(run: Path, minutes: float) -> int:
    """The step of the newest checkpoint written by ``minutes`` of training time."""
    log = checkpoint.read_log(run)
    steps = set(checkpoint.checkpoint_steps(run))
    best = None
    for record in log:
        if record["step"] in steps and record["train_seconds"] <= 60 * minutes + 1:
            best = record["step"]
    if best is None:
        raise SystemExit(f"{run} has no checkpoint within {minutes} minutes of training")
    return best


def row(family: str, run: Path, minutes: float, step: int, options: dict[str, Any],
        key: str, weights: str) -> dict[str, Any]:
    cfg = recipes.run_config(run)
    log = [r for r in checkpoint.read_log(run) if r["step"] <= step]
    start = time.perf_counter()
    metrics = genlab.evaluate(run, step=step, **options)
    quality = metrics[key]
    if family == "gan":  # the table: the network and the classical denoisers, PSNR and SSIM
        quality = {name: {m: round(v, 4) for m, v in scores.items() if m in ("psnr", "ssim")}
                   for name, scores in quality.items()}
    return {"family": family, "minutes": minutes, "cpu": cpu_name(),
            "precision": cfg.precision, "steps": step,
            "images_seen": step * cfg.batch_size, "train_seconds": log[-1]["train_seconds"],
            "measure": key, "weights": weights, "quality": quality,
            "options": options,
            "score_seconds": time.perf_counter() - start,
            "run": str(run), "config": {k: getattr(cfg, k) for k in (
                "lr_schedule", "warmup_steps", "warmup_fraction", "ema_decay", "ema_sigma_rel",
                "batch_size", "lr")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("family", choices=sorted(QUALITY))
    parser.add_argument("--minutes", type=float, nargs="+", default=[5.0])
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--data-dir", default="../shared/data/mnist")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="a config field of the family's preset, e.g. latent_dim=32")
    parser.add_argument("--out", type=Path, default=Path("runs/quality-at-budget"))
    parser.add_argument("--score-run", type=Path, default=None,
                        help="score this run's checkpoints at --minutes instead of training")
    parser.add_argument("--eval", action="append", default=[], metavar="OPTION=VALUE",
                        help="an evaluate option, e.g. num_samples=2000")
    parser.add_argument("--weights", choices=["ema", "model"], default="ema",
                        help="score the EMA copy (genlab's choice where a run keeps one) or the "
                             "trained weights themselves, to measure what the EMA buys")
    parser.add_argument("--train-only", action="store_true",
                        help="train (or finish) the runs and score none of them: score later with "
                             "the same command, so that training runs alone and scoring "
                             "runs in a batch afterwards")
    args = parser.parse_args()
    if args.train_only and args.score_run is not None:
        parser.error("--train-only trains runs and --score-run scores one: pick one")
    if args.weights == "model":
        checkpoint.Run.model = property(lambda run: run.modules["model"])  # type: ignore
    options, key = QUALITY[args.family]
    options = dict(options)
    for item in args.eval:
        name, _, value = item.partition("=")
        options[name] = parse_value(value)
    overrides = {}
    for item in args.set:
        name, _, value = item.partition("=")
        overrides[name] = parse_value(value)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for minutes in args.minutes:
        if args.score_run is not None:
            run = args.score_run
            step = checkpoint_at(run, minutes)
        else:
            run = args.out / f"{args.family}-{minutes:g}min"
            if checkpoint.is_run(run):
                genlab.train(resume=run, progress=False)
            else:
                fields = {"checkpoint_every": 10**9, **overrides}  # --set may ask for more
                cfg = recipes.make_config(args.family, args.preset, dataset=args.dataset,
                                          data_dir=args.data_dir, download=False,
                                          max_minutes=minutes, run_dir=str(run), **fields)
                genlab.train(cfg, progress=False)
            step = checkpoint.latest_checkpoint(run)["step"]
            if args.train_only:
                print(f"trained {run} to step {step}", flush=True)
                continue
        result = row(args.family, run, minutes, step, options, key, args.weights)
        rows.append(result)
        with open(args.out / "quality.jsonl", "a") as f:
            f.write(json.dumps(result) + "\n")
        print(json.dumps(result), flush=True)
    if not rows:
        return
    print(f"\n{'family':<7} {'min':>5} {'steps':>7} {'images':>9} {'precision':<9} quality "
          f"({key}) on {cpu_name()}")
    for r in rows:
        q = r["quality"]
        shown = f"{q:.2f}" if isinstance(q, float) else json.dumps(q)
        print(f"{r['family']:<7} {r['minutes']:>5g} {r['steps']:>7} {r['images_seen']:>9} "
              f"{r['precision']:<9} {shown}")


if __name__ == "__main__":
    main()
