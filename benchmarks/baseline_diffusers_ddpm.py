"""The diffusers baseline of the DDPM quality target: a UNet2DModel of about the FLOPs per image of
genlab's default UNet, trained with diffusers' DDPMScheduler on the same data for the same
training time, sampled with diffusers' DDIMScheduler (50 steps), and scored with genlab's offline
FID/KID (the same cached feature network, the same test images, the same sample count).

    pip install -e .[bench]
    python benchmarks/baseline_diffusers_ddpm.py --dataset mnist --data-dir ../shared/data/mnist \
        --minutes 30 --out runs/diffusers-mnist

The recipe copies genlab's default preset where the two libraries allow it: cosine schedule
("squaredcos_cap_v2"), T = 1000, epsilon prediction, batch 64, Adam 1e-3 with 200 warm-up steps,
gradient clipping at 1, EMA 0.999 (diffusers' EMAModel), bf16 autocast + channels_last. Training
time counts only the training steps (genlab's counts its checkpoints and previews as well).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import torch


def build_unet(shape: tuple[int, int, int]):
    """Three resolutions (32, 64, 128 channels), one ResNet layer per block, attention at the
    lowest resolution: 1.73 training GFLOP per 1x28x28 image, against 1.65 for genlab's default."""
    from diffusers import UNet2DModel

    return UNet2DModel(sample_size=shape[1], in_channels=shape[0], out_channels=shape[0],
                       block_out_channels=(32, 64, 128), layers_per_block=1, norm_num_groups=8,
                       down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"))


def train_flops(net: torch.nn.Module, shape: tuple[int, int, int]) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    x, t = torch.randn(2, *shape), torch.randint(0, 1000, (2,))
    with FlopCounterMode(display=False) as counter:
        net(x, t).sample.pow(2).mean().backward()
    net.zero_grad(set_to_none=True)
    return counter.get_total_flops() / 2


def main() -> None:
    from diffusers import DDIMScheduler, DDPMScheduler
    from diffusers.training_utils import EMAModel
    from safetensors.torch import save_file

    from genlab import batching, data
    from genlab.featurenet import feature_network
    from genlab.images import to_float, to_uint8
    from genlab.metrics import fid_kid
    from genlab.plots import save_grid

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--minutes", type=float, default=30.0, help="training time (default: 30)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--num-samples", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precision", choices=("fp32", "bf16"), default="bf16")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    train_data = data.load(args.dataset, "train", args.data_dir, download=False)
    shape = train_data.image_shape
    net = build_unet(shape)
    flops = train_flops(net, shape)
    fmt = torch.channels_last if args.precision == "bf16" else torch.contiguous_format
    net = net.to(memory_format=fmt).train()
    ema = EMAModel(net.parameters(), decay=0.999)
    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    bf16 = args.precision == "bf16"
    n, step, seconds = len(train_data), 0, 0.0
    per_epoch = batching.steps_per_epoch(n, args.batch)
    gen = torch.Generator().manual_seed(args.seed)
    log = []
    while seconds < 60 * args.minutes:
        epoch, i = divmod(step, per_epoch)
        if i == 0:
            batches = batching.epoch_batches(n, args.batch, args.seed, epoch)
        tick = time.perf_counter()
        x = to_float(train_data.images[batches[i]]).contiguous(memory_format=fmt)
        noise = torch.randn(x.shape, generator=gen)
        t = torch.randint(0, 1000, (len(x),), generator=gen)
        for group in opt.param_groups:
            group["lr"] = args.lr * min(1.0, (step + 1) / 200)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            pred = net(sched.add_noise(x, noise, t), t).sample
        loss = torch.nn.functional.mse_loss(pred.float(), noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        ema.step(net.parameters())
        seconds += time.perf_counter() - tick
        step += 1
        if step % 50 == 0:
            log.append({"step": step, "loss": float(loss), "train_seconds": round(seconds, 1),
                        "images_per_s": round(step * args.batch / seconds, 1)})
            print(json.dumps(log[-1]), flush=True)
    ema.copy_to(net.parameters())
    net.eval()

    ddim = DDIMScheduler.from_config(sched.config)
    ddim.set_timesteps(50)
    gen = torch.Generator().manual_seed(args.seed)
    samples = []
    start = time.perf_counter()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for b in range(0, args.num_samples, 250):
            x = torch.randn(min(250, args.num_samples - b), *shape, generator=gen)
            for t in ddim.timesteps:
                eps = net(x.contiguous(memory_format=fmt), t).sample.float()
                x = ddim.step(eps, t, x, eta=0.0).prev_sample
            samples.append(x.clamp(-1, 1))
    sample_seconds = (time.perf_counter() - start) / args.num_samples
    fake = torch.cat(samples)
    save_grid(to_uint8(fake[:100]), out / "samples-ddim50.png", nrow=10)
    # the EMA weights and the samples (8-bit), so that the baseline can be re-scored later
    # (say, after the feature network's recipe changes) without training it again
    save_file({k: v.float().contiguous() for k, v in net.state_dict().items()},
              str(out / "unet-ema.safetensors"))
    save_file({"samples": to_uint8(fake).contiguous()},
              str(out / "samples-ddim50.safetensors"))
    features, finfo = feature_network(args.dataset, args.data_dir, False)
    real = to_float(data.load(args.dataset, "test", args.data_dir, download=False).images)
    scores = fid_kid(features, real, fake, seed=args.seed)
    result = {"library": "diffusers", "dataset": args.dataset, "steps": step,
              "train_seconds": round(seconds, 1),
              "images_per_s": round(step * args.batch / seconds, 1),
              "params_m": sum(p.numel() for p in net.parameters()) / 1e6,
              "train_gflop_per_image": flops / 1e9, "precision": args.precision,
              "fid_ddim50": scores["fid"], "kid_ddim50": scores["kid"],
              "kid_std_ddim50": scores["kid_std"], "num_samples": len(fake),
              "num_real": len(real),
              "seconds_per_image_ddim50": round(sample_seconds, 4), "seed": args.seed,
              "feature_net_test_accuracy": finfo["test_accuracy"],
              "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}
    (out / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
    (out / "metrics.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
