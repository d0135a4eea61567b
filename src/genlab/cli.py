"""The ``genlab`` command: each subcommand parses flags and calls one API function.

Training flags are generated from the config dataclasses (``latent_dim`` -> ``--latent-dim``), with
the field's docstring, default and allowed values as help. Errors in the input print one line and
exit with code 2.
"""

from __future__ import annotations

import argparse
import sys
import typing
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from genlab.config import CONFIGS, PRESETS, choices, field_docs
from genlab.figures import FIGURES

SKIP_FIELDS = {"family"}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _parse_tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


def add_config_flags(parser: argparse.ArgumentParser, family: str) -> None:
    """One flag per config field; absent flags stay absent (argparse.SUPPRESS), so that only what
    the user typed overrides the preset."""
    cls = CONFIGS[family]
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group(f"{family} config (defaults: the 'default' preset)")
    default_preset = PRESETS[family]["default"]
    ref_preset = PRESETS[family]["reference"]
    for f in fields(cls):
        if f.name in SKIP_FIELDS:
            continue
        default = default_preset.get(f.name, f.default if f.default is not MISSING else None)
        ref = ref_preset.get(f.name, f.default)
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        help_text = f"{docs.get(f.name, '')} (default: {shown}"
        if ref != default:
            ref_shown = ",".join(map(str, ref)) if isinstance(ref, tuple) else ref
            help_text += f"; reference: {ref_shown}"
        help_text += ")"
        hint = hints[f.name]
        kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "help": help_text,
                                  "dest": f.name}
        allowed = choices(cls, f.name)
        args = typing.get_args(hint)
        if allowed is not None:
            kwargs["choices"] = allowed
        elif hint is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(hint) is tuple:
            kwargs["type"] = _parse_tuple
            kwargs["metavar"] = "N,N,..."
        elif hint in (int, float, str):
            kwargs["type"] = hint
        elif type(None) in args:
            kwargs["type"] = next(a for a in args if a is not type(None))
        group.add_argument(_flag(f.name), **kwargs)


def _overrides(ns: argparse.Namespace, family: str) -> dict[str, Any]:
    names = {f.name for f in fields(CONFIGS[family])}
    return {k: v for k, v in vars(ns).items() if k in names and k not in SKIP_FIELDS}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genlab", description="Train, sample, evaluate and explain VAEs, GANs and DDPMs.")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = sub.add_parser("train", help="train a model (or --resume a run)",
                       description="Train a model; `genlab train --resume RUN_DIR` continues one.")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue this run from its last checkpoint")
    fam = p.add_subparsers(dest="family", metavar="FAMILY")
    for family in CONFIGS:
        fp = fam.add_parser(family, help=f"train a {family}")
        fp.add_argument("--preset", choices=sorted(PRESETS[family]), default="default",
                        help="named settings: 'reference' (the notebook's) or 'default' "
                             "(corrected); flags override it (default: default)")
        fp.add_argument("--resume", metavar="RUN_DIR", dest="resume_family",
                        help="continue this run; only --epochs/--steps may change")
        add_config_flags(fp, family)

    p = sub.add_parser("sweep", help="one run per latent size + the comparison figure")
    fam = p.add_subparsers(dest="family", metavar="FAMILY", required=True)
    fp = fam.add_parser("vae", help="sweep the VAE's latent size")
    fp.add_argument("--latent-dims", type=_parse_tuple, default=(2, 4, 16), metavar="N,N,...",
                    help="latent sizes to train (default: 2,4,16)")
    fp.add_argument("--preset", choices=sorted(PRESETS["vae"]), default="default",
                    help="named settings (default: default)")
    add_config_flags(fp, "vae")

    p = sub.add_parser("evaluate", help="score a run; writes RUN_DIR/metrics.json")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--split", default="test", choices=["train", "test", "val"],
                   help="split to score (default: test)")
    p.add_argument("--seed", type=int, default=0, help="seed of all sampling (default: 0)")
    p.add_argument("--k", type=int, default=None,
                   help="VAE: importance samples of the IWAE bound (default: 100)")
    p.add_argument("--num-images", type=int, default=None,
                   help="score only the first N images of the split (default: all)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    # DDPM
    p.add_argument("--num-samples", type=int, default=None,
                   help="DDPM: DDIM samples scored by FID/KID (default: 1000)")
    p.add_argument("--ddpm-samples", type=int, default=None,
                   help="DDPM: ancestral DDPM-T samples scored, T network calls each; keep it "
                        "above the 128 feature dimensions; 0 skips them (default: 300)")
    p.add_argument("--ddim-steps", type=int, default=None,
                   help="DDPM: steps of the DDIM sampler that is scored (default: 50)")
    p.add_argument("--ddim-eta", type=float, default=None,
                   help="DDPM: noise of the DDIM sampler that is scored, 0 deterministic .. 1 "
                        "DDPM-like (default: 1)")
    p.add_argument("--feature-steps", type=int, default=None,
                   help="DDPM: training steps of the cached feature classifier (default: 1500)")
    p.add_argument("--guidance", type=float, default=None,
                   help="DDPM, class-conditional runs: classifier-free guidance scale")
    p.add_argument("--inception-weights", type=Path, default=None,
                   help="DDPM and DCGAN: also report the standard Inception-v3 FID with these "
                        "weights (torch-fidelity's pt_inception-2015-12-05-6726825d.pth; needs "
                        "pip install 'genlab[eval]')")

    p = sub.add_parser("sample", help="draw images from a run: a gallery and one PNG each")
    p.add_argument("run_dir", type=Path)
    p.add_argument("-n", type=int, default=64, help="number of images (default: 64)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    p.add_argument("--nrow", type=int, default=None, help="gallery columns (default: sqrt(n))")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    # DDPM
    p.add_argument("--sampler", choices=["ddim", "ddpm"], default=None,
                   help="DDPM: 'ddim' (--steps, --eta) or ancestral 'ddpm' with all T steps "
                        "(default: ddim)")
    p.add_argument("--steps", type=int, default=None, help="DDPM: DDIM steps (default: 50)")
    p.add_argument("--eta", type=float, default=None,
                   help="DDPM: DDIM noise, 0 deterministic .. 1 DDPM-like (default: 1, "
                        "which scored best at 50 steps)")
    p.add_argument("--class", type=int, default=None, dest="label", metavar="K",
                   help="DDPM, class-conditional runs: draw class K (default: classes in turn)")
    p.add_argument("--guidance", type=float, default=None,
                   help="DDPM, class-conditional runs: classifier-free guidance scale w "
                        "(1: plain conditional; default: none)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="DDPM: images per sampling batch (default: 256)")

    p = sub.add_parser("plot", help="draw one figure of a run")
    p.add_argument("run_dir", type=Path)
    p.add_argument("kind", help="; ".join(f"{family}: {', '.join(kinds)}"
                                          for family, kinds in FIGURES.items()))
    p.add_argument("--out", type=Path, default=None,
                   help="PNG path (default: RUN_DIR/figures/KIND.png)")
    p.add_argument("--split", default=None, choices=["train", "test", "val"],
                   help="data split for data-based figures (default: test)")
    p.add_argument("--num-images", type=int, default=None,
                   help="t-SNE: embed only the first N images (default: all)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")

    p = sub.add_parser("report", help="one HTML page comparing run folders")
    p.add_argument("run_dirs", type=Path, nargs="+")
    p.add_argument("--out", type=Path, default=Path("report.html"),
                   help="HTML file (default: report.html)")

    p = sub.add_parser("demo", help="the short experiments on the embedded digits, with a report")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default: runs/demo, or runs/demo-<time> if taken)")
    add_denoise_parser(sub)
    return parser


def run(ns: argparse.Namespace) -> int:
    import genlab
    from genlab.errors import ConfigError

    if ns.verb == "train":
        resume = ns.resume or getattr(ns, "resume_family", None)
        if ns.family is None:
            if resume is None:
                raise ConfigError(
                    "say what to train: `genlab train {vae,gan,ddpm} ...` or "
                    "`genlab train --resume RUN_DIR`")
            run_dir = genlab.train(resume=resume)
        elif resume is not None:
            run_dir = genlab.train(resume=resume, **_overrides(ns, ns.family))
        else:
            cfg = genlab.make_config(ns.family, ns.preset, **_overrides(ns, ns.family))
            run_dir = genlab.train(cfg)
        print(f"run folder: {run_dir}")
    elif ns.verb == "sweep":
        cfg = genlab.make_config("vae", ns.preset, **_overrides(ns, "vae"))
        run_dirs, fig = genlab.sweep(ns.latent_dims, cfg)
        for d in run_dirs:
            print(f"run folder: {d}")
        print(f"comparison figure: {fig}")
    elif ns.verb == "evaluate":
        metrics = genlab.evaluate(ns.run_dir, split=ns.split, seed=ns.seed, device=ns.device,
                                  k=ns.k, num_images=ns.num_images, num_samples=ns.num_samples,
                                  ddpm_samples=ns.ddpm_samples, ddim_steps=ns.ddim_steps,
                                  ddim_eta=ns.ddim_eta, feature_steps=ns.feature_steps,
                                  guidance=ns.guidance, inception_weights=ns.inception_weights)
        for key, value in metrics.items():
            if isinstance(value, dict):  # the GAN's table: one line per method
                print(f"{key}:")
                for name, row in value.items():
                    cells = (", ".join(f"{k} {v:.4g}" for k, v in row.items())
                             if isinstance(row, dict) else row)
                    print(f"  {name}: {cells}")
            else:
                print(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")
        print(f"written: {ns.run_dir / 'metrics.json'}")
    elif ns.verb == "sample":
        images = genlab.sample(ns.run_dir, n=ns.n, seed=ns.seed, device=ns.device,
                               sampler=ns.sampler, steps=ns.steps, eta=ns.eta, label=ns.label,
                               guidance=ns.guidance, batch_size=ns.batch_size)
        gallery = genlab.save_samples(images, ns.out, nrow=ns.nrow)
        print(f"{len(images)} images in {ns.out}; gallery: {gallery}")
    elif ns.verb == "plot":
        path = genlab.plot(ns.run_dir, ns.kind, out=ns.out, device=ns.device, split=ns.split,
                           num_images=ns.num_images)
        print(f"figure: {path}")
    elif ns.verb == "report":
        print(f"report: {genlab.report(ns.run_dirs, ns.out)}")
    elif ns.verb == "demo":
        page = genlab.demo(ns.out)
        print(f"figures and metrics: {page.parent}\nreport: {page}")
    elif ns.verb == "denoise":
        run_denoise(ns)
    return 0


# --- GAN: the denoise verb ----------------------------------------------------------------------


def add_denoise_parser(sub: Any) -> None:
    p = sub.add_parser(
        "denoise", help="denoise image files with a trained GAN denoiser",
        description="Denoise PNG/JPEG files of any size, grey or RGB (per channel), 8- or "
                    "16-bit, with a run trained by `genlab train gan --mode denoise`; writes "
                    "OUT/<name>.png.")
    p.add_argument("run_dir", type=Path, help="the denoiser's run folder")
    p.add_argument("inputs", type=Path, nargs="+", metavar="IMAGE", help="noisy image file(s)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--clean", type=Path, nargs="+", metavar="REF", default=None,
                   help="clean reference(s), one per input in the same order: prints PSNR/SSIM")
    p.add_argument("--add-noise", action="store_true",
                   help="corrupt each input with the run's noise model first and score against "
                        "the original (also writes <name>_noisy.png)")
    p.add_argument("--peak", type=float, default=None,
                   help="with --add-noise: Poisson photons at white (default: the run's)")
    p.add_argument("--sigma", type=float, default=None,
                   help="with --add-noise: Gaussian sigma in grey levels (default: the run's)")
    p.add_argument("--seed", type=int, default=0, help="seed of --add-noise (default: 0)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="fp32, or bf16 autocast (faster on CPUs with AVX512-BF16/AMX and recent "
                        "GPUs) (default: fp32)")


def run_denoise(ns: argparse.Namespace) -> None:
    import genlab

    records = genlab.denoise_files(ns.run_dir, ns.inputs, ns.out, clean=ns.clean,
                            add_noise=ns.add_noise, peak=ns.peak, sigma=ns.sigma, seed=ns.seed,
                            device=ns.device, precision=ns.precision)
    for r in records:
        line = f"{r['input']} ({r['size']}, {r['bits']}-bit) -> {r['output']}"
        if "psnr_denoised" in r:
            line += (f"  PSNR {r['psnr_noisy']:.2f} -> {r['psnr_denoised']:.2f} dB, "
                     f"SSIM {r['ssim_noisy']:.3f} -> {r['ssim_denoised']:.3f}")
        print(line)


def main(argv: list[str] | None = None) -> int:
    from genlab.errors import GenlabError

    ns = build_parser().parse_args(argv)
    try:
        return run(ns)
    except GenlabError as err:
        red, reset = ("\033[31m", "\033[0m") if sys.stderr.isatty() else ("", "")
        print(f"{red}genlab: error: {err}{reset}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
