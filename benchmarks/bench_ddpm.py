"""DDPM training and sampling speed: genlab's UNets against diffusers' UNet2DModel.

Prints, per network and precision: parameters, training GFLOP per image (forward + backward,
torch.utils.flop_counter), training images/s, achieved GFLOP/s and peak resident memory; then
sampling seconds per image for DDPM-T and DDIM-50. Each measurement runs in its own process, so
that peak memory is that network's alone. diffusers is used only when importable
(`pip install -e .[bench]`).

    python benchmarks/bench_ddpm.py                       # 3x32x32, batch 128 (the issue's setting)
    python benchmarks/bench_ddpm.py --shape 1,28,28 --batch 64 --iters 2 --nets resnet,reference
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

NETS = ("reference", "resnet", "resnet-wide", "diffusers", "diffusers-small")


def build(name: str, shape: tuple[int, int, int]) -> torch.nn.Module:
    from genlab.models.unet import ReferenceUNet, ResUNet

    if name == "reference":
        return ReferenceUNet(shape)
    if name == "resnet":
        return ResUNet(shape, (32, 64, 128), res_blocks=1)
    if name == "resnet-wide":
        return ResUNet(shape, (64, 128, 256), res_blocks=2)
    from diffusers import UNet2DModel

    class Wrapped(torch.nn.Module):  # (x, t) -> eps, as genlab's networks
        def __init__(self) -> None:
            super().__init__()
            if name == "diffusers-small":  # the FLOPs of genlab's default: the quality baseline's
                sys.path.insert(0, str(Path(__file__).parent))
                from baseline_diffusers_ddpm import build_unet

                self.net = build_unet(shape)
            else:  # diffusers' default UNet2DModel
                self.net = UNet2DModel(sample_size=shape[1], in_channels=shape[0],
                                       out_channels=shape[0])

        def forward(self, x, t, y=None):
            return self.net(x, t).sample

    return Wrapped()


def measure(name: str, mode: str, shape: tuple[int, int, int], batch: int, iters: int,
            sample_batch: int, num_steps: int, device: str = "cpu") -> dict:
    """One network, one precision ('fp32' or 'bf16' = bf16 autocast + channels_last)."""
    from torch.utils.flop_counter import FlopCounterMode

    from genlab.diffusion import NoiseSchedule
    from genlab.objectives import ddpm_loss
    from genlab.samplers import ancestral, ddim

    torch.manual_seed(0)
    net = build(name, shape)
    fmt = torch.channels_last if mode == "bf16" else torch.contiguous_format
    dev = torch.device(device)
    net = net.to(dev, memory_format=fmt)
    schedule = NoiseSchedule("cosine", num_steps, dev)
    x = torch.rand(batch, *shape, device=dev).mul(2).sub(1).contiguous(memory_format=fmt)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    with FlopCounterMode(display=False) as counter:
        ddpm_loss(net, schedule, x[:2])[0].backward()
    flops = counter.get_total_flops() / 2

    def step() -> None:
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=mode == "bf16"):
            loss, _ = ddpm_loss(net, schedule, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sync()
    start = time.perf_counter()
    for _ in range(iters):
        step()
    sync()
    seconds = (time.perf_counter() - start) / iters
    result = {"net": name, "mode": mode, "params_m": sum(p.numel() for p in net.parameters()) / 1e6,
              "train_gflop_per_image": flops / 1e9, "train_images_per_s": batch / seconds,
              "achieved_gflop_per_s": flops * batch / seconds / 1e9}
    if sample_batch:
        net.eval()
        for sampler in ("ddim50", "ddpm"):
            sync()
            start = time.perf_counter()
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=mode == "bf16"):
                if sampler == "ddpm":
                    ancestral(net, schedule, (sample_batch, *shape))
                else:
                    ddim(net, schedule, (sample_batch, *shape), steps=50)
            sync()
            result[f"{sampler}_s_per_image"] = (time.perf_counter() - start) / sample_batch
    result["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    if dev.type == "cuda":  # the GPU's peak during the timed training steps, in the same column
        result["peak_rss_gb"] = torch.cuda.max_memory_allocated() / 1e9
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="3,32,32", help="C,H,W (default: 3,32,32)")
    parser.add_argument("--batch", type=int, default=128, help="training batch (default: 128)")
    parser.add_argument("--iters", type=int, default=3, help="timed training steps (default: 3)")
    parser.add_argument("--nets", default=",".join(NETS), help=f"subset of {','.join(NETS)}")
    parser.add_argument("--modes", default="fp32,bf16", help="fp32, bf16 (+ channels_last)")
    parser.add_argument("--sample-batch", type=int, default=0,
                        help="also time DDPM-T and DDIM-50 sampling on this batch (default: off)")
    parser.add_argument("--num-steps", type=int, default=300, help="T for sampling (default: 300)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    if args.one:
        name, mode = args.one.split(":")
        print(json.dumps(measure(name, mode, shape, args.batch, args.iters, args.sample_batch,
                                 args.num_steps, args.device)))
        return
    try:
        import diffusers  # noqa: F401
        have_diffusers = True
    except ImportError:
        have_diffusers = False
    print(f"shape {shape}, batch {args.batch}, device {args.device}, "
          f"torch threads {torch.get_num_threads()} (peak GB: RSS on CPU, allocated on CUDA)")
    header = (f"{'net':12s} {'mode':5s} {'params':>8s} {'GFLOP/img':>9s} {'img/s':>7s} "
              f"{'GFLOP/s':>8s} {'peak GB':>7s} {'DDIM50 s/img':>12s} {'DDPM-T s/img':>12s}")
    print(header)
    for name in args.nets.split(","):
        if name.startswith("diffusers") and not have_diffusers:
            print(f"{name:12s} skipped: diffusers is not installed (pip install -e .[bench])")
            continue
        for mode in args.modes.split(","):
            cmd = [sys.executable, __file__, "--one", f"{name}:{mode}", "--shape", args.shape,
                   "--batch", str(args.batch), "--iters", str(args.iters),
                   "--sample-batch", str(args.sample_batch), "--num-steps", str(args.num_steps),
                   "--device", args.device]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode:
                print(f"{name:12s} {mode:5s} failed: {out.stderr.strip().splitlines()[-1]}")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{name:12s} {mode:5s} {r['params_m']:7.2f}M {r['train_gflop_per_image']:9.2f} "
                  f"{r['train_images_per_s']:7.1f} {r['achieved_gflop_per_s']:8.1f} "
                  f"{r['peak_rss_gb']:7.2f} {r.get('ddim50_s_per_image', float('nan')):12.4f} "
                  f"{r.get('ddpm_s_per_image', float('nan')):12.4f}")


if __name__ == "__main__":
    main()
