"""DDIM against ancestral DDPM on one trained run, at one sample count: seconds per image and the
offline FID/KID of each sampler setting (the same score as `genlab evaluate`).

    python benchmarks/ddim_vs_ddpm.py RUN_DIR --n 300 --ddim 50:0 50:0.5 100:0

`genlab evaluate` scores DDPM-T on fewer samples than DDIM (T network calls per image); this
script puts every setting on the same n and the same seed, so that the FIDs (biased upward by a
small n, by the same amount for samples of similar spread) compare directly. KID is unbiased.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from genlab import data, recipes
from genlab.checkpoint import pick_device
from genlab.featurenet import feature_network
from genlab.images import to_float
from genlab.metrics import fid_kid
from genlab.recipes.base import class_labels
from genlab.recipes.ddpm import generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--n", type=int, default=300, help="samples per setting")
    parser.add_argument("--ddim", nargs="*", default=["50:0", "50:0.5", "100:0"],
                        help="DDIM settings as STEPS:ETA")
    parser.add_argument("--no-ddpm", action="store_true", help="skip the DDPM-T row")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--num-threads", type=int, default=0)
    args = parser.parse_args()
    if args.num_threads:
        torch.set_num_threads(args.num_threads)

    run = recipes.load_run(args.run_dir, pick_device(args.device))
    cfg, net = run.config, run.model
    features, finfo = feature_network(cfg.dataset, cfg.data_dir, cfg.download, device=run.device)
    real = to_float(data.load(cfg.dataset, "test", cfg.data_dir, cfg.download).images)
    settings = [("ddim", int(s), float(e)) for s, e in (x.split(":") for x in args.ddim)]
    if not args.no_ddpm:
        settings.append(("ddpm", cfg.num_steps, 1.0))
    print(f"run {args.run_dir} (step {run.step}), {args.n} samples per setting, seed {args.seed}, "
          f"{len(real)} real test images, feature net accuracy {finfo['test_accuracy']:.3f}, "
          f"precision {cfg.precision}", flush=True)
    print(f"{'sampler':<16}{'s/image':>10}{'FID':>9}{'KID':>16}", flush=True)
    rows = []
    for sampler, steps, eta in settings:
        gen = torch.Generator(device=run.device).manual_seed(args.seed)
        start = time.perf_counter()
        kwargs = dict(steps=steps, eta=eta) if sampler == "ddim" else {}
        fake = generate(run, args.n, gen, sampler, y=class_labels(net, args.n), batch_size=250,
                        **kwargs)
        seconds = (time.perf_counter() - start) / args.n
        s = fid_kid(features, real, fake, seed=args.seed)
        name = f"ddpm-{steps}" if sampler == "ddpm" else f"ddim-{steps} eta {eta:g}"
        rows.append({"sampler": name, "seconds_per_image": seconds, **s, "n": args.n})
        print(f"{name:<16}{seconds:>10.3f}{s['fid']:>9.2f}"
              f"{s['kid']:>9.2f} +- {s['kid_std']:<5.2f}", flush=True)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
