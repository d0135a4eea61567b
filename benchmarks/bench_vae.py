"""VAE training speed: genlab's in-memory loop vs the pytorch/examples DataLoader way, side by side.

Both train the reference MLP VAE (784-256-2, BCE + 0.1 KL, Adam 1e-3, batch 128) on full MNIST.
The baseline reads torchvision's MNIST dataset item by item (PIL image -> ToTensor) through a
DataLoader, as pytorch/examples/vae does. Prints images/s, the ratio, peak memory (max RSS) and the
test loss each reached, then (with --full) times the whole 20-epoch reference run through genlab.

    .venv/bin/python benchmarks/bench_vae.py [--data-dir ../shared/data/mnist] [--epochs 1] [--full]
"""

from __future__ import annotations

import argparse
import importlib
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import genlab  # noqa: E402
from genlab.models.vae import MLPVAE  # noqa: E402
from genlab.objectives import vae_loss  # noqa: E402

train_module = importlib.import_module("genlab.training")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def dataloader_baseline(data_dir: Path, epochs: int, workers: int) -> tuple[float, float]:
    """pytorch/examples/vae/main.py's input pipeline and loop (its loss summed over the batch)."""
    from torchvision import datasets, transforms

    ds = datasets.MNIST(str(data_dir), train=True, download=False,
                        transform=transforms.ToTensor())
    loader = torch.utils.data.DataLoader(ds, batch_size=128, shuffle=True, num_workers=workers)
    torch.manual_seed(0)
    net = MLPVAE((1, 28, 28), 2, (256,))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    seen, start = 0, time.perf_counter()
    for _ in range(epochs):
        for x, _ in loader:
            loss, _ = vae_loss(net, x, beta=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen += x.shape[0]
    elapsed = time.perf_counter() - start
    return seen / elapsed, loss.item()


def genlab_loop(data_dir: Path, epochs: int, out: Path) -> tuple[float, float, Path]:
    cfg = genlab.make_config("vae", "reference", dataset="mnist", data_dir=str(data_dir),
                             download=False, epochs=epochs, run_dir=str(out),
                             checkpoint_every=10**9, log_every=100)
    run_dir = train_module.train(cfg, progress=False)
    log = genlab.checkpoint.read_log(run_dir)
    # the loop's own time (train_seconds), like the baseline's: dataset set-up excluded on both
    return epochs * 60000 / log[-1]["train_seconds"], log[-1]["loss"], run_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "mnist")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per side (default: 2)")
    parser.add_argument("--workers", type=int, default=0,
                        help="DataLoader workers of the baseline (default: 0, as on 2 cores)")
    parser.add_argument("--full", action="store_true",
                        help="also time the 20-epoch reference run, evaluate it and print metrics")
    args = parser.parse_args()
    if not (args.data_dir / "MNIST" / "raw").is_dir():
        sys.exit(f"MNIST not found under {args.data_dir}; pass --data-dir")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"MNIST from {args.data_dir}, {args.epochs} epoch(s) each")
    with tempfile.TemporaryDirectory() as tmp:
        ours, our_loss, _ = genlab_loop(args.data_dir, args.epochs, Path(tmp) / "g")
        rss_ours = peak_rss_mib()
        base, base_loss = dataloader_baseline(args.data_dir, args.epochs, args.workers)
        print(f"{'pipeline':34s} {'images/s':>10s} {'last loss':>10s}")
        print(f"{'genlab (in-memory uint8 batches)':34s} {ours:10.0f} {our_loss:10.2f}")
        print(f"{'DataLoader(torchvision MNIST)':34s} {base:10.0f} {base_loss:10.2f}")
        print(f"speed-up: {ours / base:.2f}x   peak RSS after genlab's loop: {rss_ours:.0f} MiB, "
              f"after both: {peak_rss_mib():.0f} MiB")
        if args.full:
            start = time.perf_counter()
            cfg = genlab.make_config("vae", "reference", dataset="mnist",
                                     data_dir=str(args.data_dir), download=False,
                                     run_dir=str(Path(tmp) / "full"))
            run_dir = train_module.train(cfg, progress=False)
            seconds = time.perf_counter() - start
            metrics = genlab.evaluate(run_dir)
            print(f"20-epoch reference run (load + train + checkpoints): {seconds:.1f} s, "
                  f"{20 * 60000 / seconds:.0f} images/s")
            print(json.dumps({k: metrics[k] for k in ("loss_as_trained", "nll_elbo_nats",
                                                      "nll_iwae_nats", "iwae_k")}, indent=1))


if __name__ == "__main__":
    main()
