"""GAN speed: training images/s and peak memory for both presets (fp32 vs bf16 autocast +
channels_last), denoising images/s (a batch of 48x48 faces, one 1-megapixel image), and BM3D
seconds per face. Prints a table; run with `python benchmarks/bench_gan.py [--quick]`.

One training step is what the loop does: one discriminator and one generator update on a batch
of 64 noisy/clean 48x48 pairs (noise drawn on the fly).
"""

from __future__ import annotations

import argparse
import resource
import time
from contextlib import nullcontext

import torch

from genlab.corruption import corrupt, fixed_noisy
from genlab.images import to_float
from genlab.objectives import gan_d_loss, gan_g_loss
from genlab.recipes import build_modules, make_config
from genlab.samplers import bm3d_available, denoise, denoise_classical


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def train_speed(preset: str, precision: str, channels_last: bool, steps: int,
                device: torch.device) -> tuple[float, float]:
    """Images per second of D + G updates, and peak memory (CUDA: allocated; CPU: process RSS)."""
    cfg = make_config("gan", preset, dataset="fer2013")
    torch.manual_seed(0)
    modules = build_modules(cfg, (1, 48, 48), 7)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net, disc = (modules[k].to(device, memory_format=fmt) for k in ("model", "disc"))
    opt_g = torch.optim.Adam(net.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, 0.999))
    gen = torch.Generator(device=device).manual_seed(0)
    clean = torch.randint(0, 256, (64, 1, 48, 48), dtype=torch.uint8, device=device)
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16"
                else nullcontext())

    def step() -> None:
        x0 = to_float(clean).contiguous(memory_format=fmt)
        noisy = to_float(corrupt(clean, "poisson", cfg.peak, gen=gen).round_())
        noisy = noisy.contiguous(memory_format=fmt)
        with autocast:
            x_fake = net(noisy)
            d_loss, _ = gan_d_loss(disc, x0, x_fake, noisy)
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        disc.requires_grad_(False)
        with autocast:
            g_loss, _ = gan_g_loss(disc, x0, x_fake, noisy, cfg.l1_weight, cfg.adv_weight)
        disc.requires_grad_(True)
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()

    for _ in range(2):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        memory = torch.cuda.max_memory_allocated() / 2**20
    else:
        memory = peak_rss_mib()
    return 64 * steps / (time.perf_counter() - start), memory


@torch.no_grad()
def denoise_speed(preset: str, device: torch.device, repeats: int) -> tuple[float, float]:
    """Faces per second for a batch of 256 48x48 faces; seconds for one 1000x1000 image."""
    cfg = make_config("gan", preset, dataset="fer2013")
    net = build_modules(cfg, (1, 48, 48), 7)["model"].eval()
    net = net.to(device, memory_format=torch.channels_last)  # as genlab.load_denoiser does
    faces = torch.rand(256, 1, 48, 48, device=device) * 2 - 1
    big = torch.rand(1, 1, 1000, 1000, device=device) * 2 - 1
    results = []
    for batch in (faces, big):
        denoise(net, batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            denoise(net, batch, batch_size=256)
        if device.type == "cuda":
            torch.cuda.synchronize()
        results.append((time.perf_counter() - start) / repeats)
    return 256 / results[0], results[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few steps (a smoke run)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    steps, repeats = (3, 1) if args.quick else (20, 3)
    print(f"device {device}, {torch.get_num_threads()} CPU threads, torch {torch.__version__}")
    print(f"{'preset':10} {'precision':20} {'train img/s':>12} {'peak MiB':>9}")
    for preset in ("reference", "default"):
        for precision, cl in (("fp32", False), ("fp32", True), ("bf16", True)):
            label = precision + (" + channels_last" if cl else "")
            ips, mem = train_speed(preset, precision, cl, steps, device)
            print(f"{preset:10} {label:20} {ips:12.1f} {mem:9.0f}")
    for preset in ("reference", "default"):
        faces_per_s, big_s = denoise_speed(preset, device, repeats)
        print(f"denoise {preset:10}: {faces_per_s:8.1f} faces/s (48x48, batch 256); "
              f"1-megapixel image {big_s:.2f} s")
    if bm3d_available():
        faces = torch.randint(0, 256, (3 if args.quick else 10, 1, 48, 48), dtype=torch.uint8)
        noisy = fixed_noisy(faces)
        start = time.perf_counter()
        denoise_classical(noisy, "bm3d")
        print(f"BM3D + Anscombe: {(time.perf_counter() - start) / len(faces):.3f} s per face")
    else:
        print("BM3D: skipped (pip install bm3d)")


if __name__ == "__main__":
    main()
