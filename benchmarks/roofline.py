"""How close each family's training step and default sampler come to this machine's ceiling.

For each family's default preset (the VAE's reference preset, the one the speed target names) on
real data (MNIST from ../shared/data, FER2013 faces for the denoising GAN; the embedded digits
where they are absent), in the precision ``--precision auto`` picks for it:

- FLOPs of one training step and of one default-sampler call, counted by torch's
  ``FlopCounterMode`` (matmuls and convolutions, forward and backward);
- the measured time of each, hence the achieved GFLOP/s;
- this machine's ceiling, measured here: a 2048x2048 matmul and a 3x3 convolution (64 -> 64
  channels, 32x32, batch 32, channels-last), in fp32 and in bf16, so each family is set against
  the peak of the kind of work it does in the precision it runs;
- where the time goes: the top operators of ``torch.profiler`` by self CPU time.

The step is genlab's own (the recipe's ``step`` through ``TrainState``, under Accelerate as the
loop runs it); the sampler is the recipe's ``sample`` with its default options.

    .venv/bin/python benchmarks/roofline.py [--families vae,gan,dcgan,ddpm,flow] [--seconds 4]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from genlab import data, recipes  # noqa: E402
from genlab.checkpoint import Run  # noqa: E402
from genlab.config import replace  # noqa: E402
from genlab.hardware import cpu_name, resolve_precision  # noqa: E402
from genlab.images import to_float  # noqa: E402
from genlab.recipes.base import TrainState  # noqa: E402
from genlab.samplers import denoise  # noqa: E402
from genlab.trackers import make_accelerator  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
SAMPLE_N = {"vae": 256, "gan": 64, "dcgan": 256, "ddpm": 16, "flow": 64}


def timed(fn, seconds: float, least: int = 2) -> float:
    """Seconds per call of ``fn`` (after one warm-up call), over at least ``seconds``."""
    fn()
    calls, start = 0, time.perf_counter()
    while calls < least or time.perf_counter() - start < seconds:
        fn()
        calls += 1
    return (time.perf_counter() - start) / calls


def peaks(seconds: float) -> dict[str, float]:
    """GFLOP/s of a large matmul and of a 3x3 convolution, fp32 and bf16."""
    out = {}
    for dtype, name in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
        a = torch.randn(2048, 2048, dtype=dtype)
        out[f"matmul_{name}"] = 2 * 2048**3 / timed(lambda a=a: a @ a, seconds) / 1e9
        conv = torch.nn.Conv2d(64, 64, 3, padding=1).to(dtype=dtype,
                                                         memory_format=torch.channels_last)
        x = torch.randn(32, 64, 32, 32, dtype=dtype).contiguous(memory_format=torch.channels_last)
        flops = 2 * 32 * 64 * 64 * 9 * 32 * 32
        with torch.no_grad():
            out[f"conv_{name}"] = flops / timed(lambda c=conv, x=x: c(x), seconds) / 1e9
    return out


def dataset_of(family: str) -> dict:
    if family == "gan" and (SHARED / "fer2013").is_dir():
        return dict(dataset="fer2013", data_dir=str(SHARED / "fer2013"))
    if family != "gan" and (SHARED / "mnist").is_dir():
        return dict(dataset="mnist", data_dir=str(SHARED / "mnist"))
    return dict(dataset="digits")


def flops_of(fn) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def top_ops(fn, calls: int = 3, k: int = 5) -> list[tuple[str, float]]:
    """The ``k`` operators with the most self CPU time over ``calls`` calls, with their share."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(calls):
            fn()
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: -e.self_cpu_time_total)
    return [(e.key, e.self_cpu_time_total / total) for e in events[:k]]


def family_row(family: str, seconds: float, compile_model: bool = False) -> dict:
    recipe = recipes.get(family)
    preset = "reference" if family == "vae" else "default"
    cfg = recipes.make_config(family, preset, **dataset_of(family), download=False)
    split = data.load_split(cfg, "train")
    shape, classes = split.image_shape, len(split.classes)
    torch.manual_seed(0)
    modules = recipes.build_modules(cfg, shape, classes)
    precision, _ = resolve_precision("auto", "cpu", modules.values())
    cfg = replace(cfg, precision=precision)
    optimizers = recipe.setup(cfg, modules)
    if cfg.channels_last:
        for m in modules.values():
            m.to(memory_format=torch.channels_last)
    accelerator = make_accelerator(cpu=True, mixed_precision="bf16" if precision == "bf16"
                                   else "no")
    trained = [n for n in modules if n in optimizers]
    prepared = accelerator.prepare(*[modules[n] for n in trained],
                                   *[optimizers[n] for n in trained])
    for i, n in enumerate(trained):
        modules[n], optimizers[n] = prepared[i], prepared[len(trained) + i]
    if compile_model:
        for n in trained:
            modules[n] = torch.compile(modules[n])
    gen = torch.Generator().manual_seed(0)
    info = {"image_shape": list(shape), "classes": list(split.classes), "num_train": len(split)}
    state = TrainState(cfg, accelerator, modules, optimizers, gen, info)
    x = to_float(split.images[:cfg.batch_size])
    y = split.labels[:cfg.batch_size]
    if cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    counter = [0]

    def train_step():
        recipe.step(state, x, y, counter[0])
        counter[0] += 1

    compile_start = time.perf_counter()
    train_step()  # the first step (compiles, where asked)
    first_step = time.perf_counter() - compile_start
    step_s = timed(train_step, seconds)
    step_flops = flops_of(train_step)
    step_ops = top_ops(train_step)

    # the default sampler, on the inference modules of a run that is this state
    inference = {n: accelerator.unwrap_model(m).eval() for n, m in modules.items()}
    run = Run(Path("."), cfg, info, inference, counter[0])
    n = SAMPLE_N.get(family, 64)
    opts = recipe.sample_options()
    if recipe.denoises:  # the denoiser's sampler maps noisy images to clean ones
        noisy = to_float(split.images[:n])

        def draw():
            return denoise(run.model, noisy, precision="bf16" if precision == "bf16"
                           else "fp32")
    else:
        def draw():
            return recipe.sample(run, n, torch.Generator().manual_seed(0), opts)
    with torch.no_grad():
        sample_s = timed(draw, seconds, least=1)
        sample_flops = flops_of(draw)
        sample_ops = top_ops(draw, calls=1)
    return {"family": family, "preset": preset, "dataset": cfg.dataset, "precision": precision,
            "batch_size": cfg.batch_size, "image_shape": list(shape),
            "step_s": step_s, "step_gflop": step_flops / 1e9,
            "step_gflops": step_flops / step_s / 1e9, "images_per_s": cfg.batch_size / step_s,
            "first_step_s": first_step, "step_top_ops": step_ops,
            "sample_n": n, "sample_s": sample_s, "sample_gflop": sample_flops / 1e9,
            "sample_gflops": sample_flops / sample_s / 1e9, "sample_top_ops": sample_ops}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--families", default="vae,gan,dcgan,ddpm,flow")
    p.add_argument("--seconds", type=float, default=4.0, help="timing per measurement")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    p.add_argument("--compile", action="store_true",
                   help="also time the training step under torch.compile (inductor)")
    p.add_argument("--json", type=Path, default=None, help="write the rows here too")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    ceiling = peaks(args.seconds)
    print(f"{cpu_name()}; torch {torch.__version__}; {torch.get_num_threads()} threads")
    print("ceiling (GFLOP/s): " + ", ".join(f"{k} {v:.0f}" for k, v in ceiling.items()))
    rows = []
    header = (f"{'family':6s} {'prec':4s} {'what':6s} {'GFLOP/call':>10s} {'s/call':>8s} "
              f"{'GFLOP/s':>8s} {'of conv':>7s} {'of mm':>6s}  top ops (self CPU share)")
    print(header)
    for family in args.families.split(","):
        row = family_row(family, args.seconds)
        if args.compile:
            compiled = family_row(family, args.seconds, compile_model=True)
            row["compiled"] = {k: compiled[k] for k in ("step_s", "first_step_s",
                                                        "images_per_s")}
        rows.append(row)
        p_ = row["precision"]
        for what in ("step", "sample"):
            rate = row[f"{what}_gflops"]
            ops = ", ".join(f"{name} {share:.0%}" for name, share in row[f"{what}_top_ops"][:4])
            print(f"{family:6s} {p_:4s} {what:6s} {row[f'{what}_gflop']:10.3f} "
                  f"{row[f'{what}_s']:8.4f} {rate:8.1f} {rate / ceiling[f'conv_{p_}']:7.1%} "
                  f"{rate / ceiling[f'matmul_{p_}']:6.1%}  {ops}", flush=True)
        if args.compile:
            c = row["compiled"]
            print(f"{family:6s} {p_:4s} compiled step {c['step_s']:.4f} s "
                  f"({row['step_s'] / c['step_s']:.2f}x eager), first step "
                  f"{c['first_step_s']:.1f} s", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_name(), "ceiling": ceiling, "rows": rows},
                                        indent=1))


if __name__ == "__main__":
    main()
