"""The ``genlab`` command: each subcommand parses flags and calls one API function.

Every flag with a default is generated from a dataclass field, with the field's docstring,
default and allowed values as help: training flags from the recipe's config (``latent_dim`` ->
``--latent-dim``), ``sample`` and ``evaluate`` flags from the recipe's option dataclasses (and
the noise flags of ``denoise`` from its ``image_to_image.noise_options``), and the flags of
``compare``, ``export``, ``demo``, ``denoise`` and ``prepare`` from CompareOptions,
ExportOptions, DemoOptions, DenoiseOptions and PrepareOptions. A flag the run's family does not
take is refused in one line. Errors in the input print one line and exit
with code 2 (a failed write: 74); see EXIT_CODES.
"""

from __future__ import annotations

import argparse
import errno
import json
import sys
import typing
import warnings
from dataclasses import MISSING, Field, fields
from pathlib import Path
from typing import Any

from genlab import checkpoint
from genlab.comparison import DEFAULT_FAMILIES, CompareOptions
from genlab.config import PrepareOptions, choices, field_docs, type_hints
from genlab.errors import ConfigError, FallbackWarning
from genlab.experiments import DemoOptions
from genlab.exporting import ExportOptions
from genlab.inference import DenoiseOptions
from genlab.recipes import RECIPES, image_to_image_families, options_class
from genlab.training import RESUMABLE_CHANGES

EXIT_CODES = ("exit codes: 0 done; 2 an error in the input, a run folder or the training (one line "
              "on stderr); 74 a file could not be written (disk full, I/O error): what was "
              "written before is intact, free space and run it again (train: resume); 143 "
              "(SIGTERM) or 130 (SIGINT) training preempted with a checkpoint written: resume it")
WRITE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EFBIG)
"""errno values of a write that failed for want of space or a working disk (exit 74)"""
SKIP_FIELDS = {"family"}
ALIASES = {"label": ["--class"]}  # flags that kept their earlier name too


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _tuple_of(kind: type) -> Any:
    def parse(text: str) -> tuple[Any, ...]:
        try:
            return tuple(kind(v.strip()) for v in text.split(",") if v.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {kind.__name__} values, got {text!r}") from None
    return parse


def _preset_changes(items: list[str]) -> dict[str, dict[str, Any]]:
    """``FAMILY.FIELD=VALUE`` strings -> {family: {field: value}}; VALUE is read as JSON (true,
    3, 0.5, [16, 32]) and else kept as text."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, eq, text = item.partition("=")
        family, dot, field = key.partition(".")
        if not (eq and dot and family and field):
            raise ConfigError(f"--set {item!r}: expected FAMILY.FIELD=VALUE, e.g. "
                              f"ddpm.class_conditional=true")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        out.setdefault(family, {})[field.replace("-", "_")] = value
    return out


def _shown(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _field_kwargs(cls: type, f: Field) -> dict[str, Any]:
    """argparse keywords for one dataclass field: its type, choices or boolean switch."""
    hint = type_hints(cls)[f.name]
    kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "dest": f.name}
    allowed = choices(cls, f.name)
    args = typing.get_args(hint)
    if allowed is not None:
        kwargs["choices"] = allowed
        if not any(isinstance(v, str) for v in allowed):  # Literal[0, 1, 3]: parse the number
            kwargs["type"] = type(allowed[0])
    elif hint is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif typing.get_origin(hint) is tuple:
        kwargs["type"] = _tuple_of(args[0])
        kwargs["metavar"] = "V,V,..."
    elif hint in (int, float, str):
        kwargs["type"] = hint
    elif type(None) in args:
        kwargs["type"] = next(a for a in args if a is not type(None))
    return kwargs


def add_options_of(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = (),
                   shown: dict[str, str] | None = None,
                   parse: dict[str, dict[str, Any]] | None = None) -> None:
    """One flag per field of a verb's options dataclass, its help the field's docstring and its
    default (``shown`` says how a default is written where the value itself would not tell;
    ``parse`` gives a field argparse keywords of its own, such as nargs or metavar); absent
    flags stay absent, so the dataclass's defaults are the only ones."""
    docs, shown, parse = field_docs(cls), shown or {}, parse or {}
    for f in fields(cls):
        if f.name in skip:
            continue
        default = shown.get(f.name, _shown(f.default))
        parser.add_argument(_flag(f.name), help=f"{docs.get(f.name, '')} (default: {default})",
                            **{**_field_kwargs(cls, f), **parse.get(f.name, {})})


def _given(ns: argparse.Namespace, cls: type, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The fields of an options dataclass the user gave flags for."""
    names = {f.name for f in fields(cls)} - set(skip)
    return {k: v for k, v in vars(ns).items() if k in names}


def add_config_flags(parser: argparse.ArgumentParser, family: str) -> None:
    """One flag per config field; absent flags stay absent (argparse.SUPPRESS), so that only what
    the user typed overrides the preset."""
    recipe = RECIPES[family]
    cls = recipe.config
    docs = field_docs(cls)
    group = parser.add_argument_group(f"{family} config (defaults: the 'default' preset)")
    default_preset = recipe.presets["default"]
    ref_preset = recipe.presets.get("reference", default_preset)
    for f in fields(cls):
        if f.name in SKIP_FIELDS:
            continue
        default = default_preset.get(f.name, f.default if f.default is not MISSING else None)
        ref = ref_preset.get(f.name, f.default)
        help_text = f"{docs.get(f.name, '')} (default: {_shown(default)}"
        if ref != default:
            help_text += f"; reference: {_shown(ref)}"
        group.add_argument(_flag(f.name), help=help_text + ")", **_field_kwargs(cls, f))


def add_option_flags(parser: argparse.ArgumentParser, verb: str,
                     none_shown: str = "None") -> list[str]:
    """One flag per field of any family's ``verb`` options ('sample', 'evaluate', 'denoise');
    the help says which families take it, and writes a default of None as ``none_shown``.
    Returns the option names."""
    by_name: dict[str, list[tuple[str, type, Field]]] = {}
    for name in RECIPES:
        cls = options_class(name, verb)
        for f in fields(cls):
            by_name.setdefault(f.name, []).append((name, cls, f))
    group = parser.add_argument_group(
        "family options (each applies to the families named; others refuse it)")
    for option, owners in by_name.items():
        texts: dict[str, list[str]] = {}
        for family, cls, f in owners:
            default = none_shown if f.default is None else _shown(f.default)
            text = f"{field_docs(cls).get(option, '')} (default: {default})"
            texts.setdefault(text, []).append(family)
        help_text = "; ".join(f"{', '.join(fams)}: {text}" for text, fams in texts.items())
        _, cls, f = owners[0]
        group.add_argument(_flag(option), *ALIASES.get(option, []), help=help_text,
                           **_field_kwargs(cls, f))
    return list(by_name)


def _overrides(ns: argparse.Namespace, family: str) -> dict[str, Any]:
    names = {f.name for f in fields(RECIPES[family].config)}
    return {k: v for k, v in vars(ns).items() if k in names and k not in SKIP_FIELDS}


def _presets_help(family: str) -> str:
    return (f"named settings: {', '.join(sorted(RECIPES[family].presets))}; 'reference' is the "
            "notebook's, 'default' the corrected one; flags override it (default: default)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genlab", epilog=EXIT_CODES,
        description="Train, sample, evaluate and explain generative image models: "
                    + "; ".join(f"{name} ({r.summary})" for name, r in RECIPES.items()) + ".")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = sub.add_parser("train", help="train a model (or --resume a run)", epilog=EXIT_CODES,
                       description="Train a model; `genlab train --resume RUN_DIR [--steps N | "
                                   "--epochs E | --max-minutes M ...]` continues one (the flags "
                                   "of the run's family follow it; only those a resume may "
                                   "change are taken).")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue this run from its newest intact checkpoint")
    fam = p.add_subparsers(dest="family", metavar="FAMILY")
    for family, recipe in RECIPES.items():
        fp = fam.add_parser(family, help=recipe.summary, description=recipe.summary)
        fp.add_argument("--preset", choices=sorted(recipe.presets), default="default",
                        help=_presets_help(family))
        fp.add_argument("--resume", metavar="RUN_DIR", dest="resume_family",
                        help="continue this run; only " + ", ".join(
                            _flag(f) for f in RESUMABLE_CHANGES) + " may change")
        add_config_flags(fp, family)

    p = sub.add_parser("sweep", help="one run per value of a field + the comparison figure")
    fam = p.add_subparsers(dest="family", metavar="FAMILY", required=True)
    for family, recipe in RECIPES.items():
        if recipe.sweep is None:
            continue
        field = recipe.sweep.field
        fp = fam.add_parser(family, help=f"sweep the {family}'s {field}")
        fp.add_argument(_flag(field) + "s", dest="sweep_values",
                        type=_tuple_of(type(recipe.sweep.values[0])),
                        default=recipe.sweep.values, metavar="V,V,...",
                        help=f"values of {field} to train (default: "
                             f"{_shown(recipe.sweep.values)})")
        fp.add_argument("--preset", choices=sorted(recipe.presets), default="default",
                        help=_presets_help(family))
        add_config_flags(fp, family)

    p = sub.add_parser("evaluate", help="score a run; writes RUN_DIR/metrics.json")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--split", default="test", choices=["train", "test", "val"],
                   help="split to score (default: test)")
    p.add_argument("--seed", type=int, default=0, help="seed of all sampling (default: 0)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    p.add_argument("--step", type=int, default=None,
                   help="use the checkpoint of this step (default: the latest; "
                        "--keep-checkpoints sets how many a run keeps)")
    p.set_defaults(option_names=add_option_flags(p, "evaluate"))

    p = sub.add_parser("sample", help="draw images from a run: a gallery and one PNG each")
    p.add_argument("run_dir", type=Path)
    p.add_argument("-n", type=int, default=64, help="number of images (default: 64)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    p.add_argument("--nrow", type=int, default=None, help="gallery columns (default: sqrt(n))")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    p.add_argument("--step", type=int, default=None,
                   help="use the checkpoint of this step (default: the latest; "
                        "--keep-checkpoints sets how many a run keeps)")
    p.set_defaults(option_names=add_option_flags(p, "sample"))

    p = sub.add_parser("plot", help="draw one figure of a run")
    p.add_argument("run_dir", type=Path)
    p.add_argument("kind", help="; ".join(f"{family}: {', '.join(r.figures)}"
                                          for family, r in RECIPES.items()))
    p.add_argument("--out", type=Path, default=None,
                   help="PNG path (default: RUN_DIR/figures/KIND.png)")
    p.add_argument("--split", default=None, choices=["train", "test", "val"],
                   help="data split for data-based figures (default: test)")
    p.add_argument("--num-images", type=int, default=None,
                   help="vae t-SNE: embed only the first N images (default: all)")
    p.add_argument("--step", type=int, default=None,
                   help="use the checkpoint of this step (default: the latest; "
                        "--keep-checkpoints sets how many a run keeps)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")

    p = sub.add_parser("export", help="a self-contained folder to share a model (weights, config, "
                                      "sample grid, model card); optionally pushed to the Hub",
                       description="Write OUT: config.json, data.json, log.jsonl, metrics.json, "
                                   "the checkpoint's inference weights (safetensors, EMA "
                                   "included), sample_grid.png and a Hugging Face model card "
                                   "README.md. OUT loads, samples, evaluates and plots like RUN.")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--out", type=Path, required=True, help="output folder (new or empty)")
    add_options_of(p, ExportOptions, shown={"step": "the latest", "push_to_hub": "none"},
                   parse={"push_to_hub": {"metavar": "REPO_ID"}})

    p = sub.add_parser("report", help="one HTML page comparing run folders")
    p.add_argument("run_dirs", type=Path, nargs="+")
    p.add_argument("--out", type=Path, default=Path("report.html"),
                   help="HTML file (default: report.html)")

    p = sub.add_parser("compare", help="train families on the same data and budget, test the "
                                       "textbook claims; writes compare.json and report.html",
                       description="Train every listed family's default preset for the same "
                                   "training minutes per seed, score all in one feature space, "
                                   "and test the textbook claims. Run it again on the same --out "
                                   "to resume.")
    add_options_of(p, CompareOptions, skip=("overrides",),
                   shown={"families": ",".join(DEFAULT_FAMILIES), "out": "runs/compare-DATASET",
                          "data_dir": "$GENLAB_DATA or ~/.cache/genlab/data",
                          "inception_weights": "none", "plan": "none", "only": "none"})
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="FAMILY.FIELD=VALUE",
                   help="change a family's default preset, e.g. ddpm.class_conditional=true "
                        "(repeatable)")

    p = sub.add_parser("demo", help="the short experiments on the embedded digits, with a report")
    add_options_of(p, DemoOptions,
                   shown={"out": "none",
                          "families": f"all: {','.join(RECIPES)}"},
                   parse={"families": {"metavar": "F,F,..."}})
    add_denoise_parser(sub)
    add_prepare_parser(sub)
    return parser


def _train_summary(run_dir: Path) -> str:
    """One line at the end of training: where the run is, how far and how fast it trained."""
    from genlab.checkpoint import read_log

    log = read_log(run_dir)
    if not log:
        return f"run folder: {run_dir}"
    last = log[-1]
    speeds = [r["images_per_s"] for r in log if "images_per_s" in r]
    return (f"run folder: {run_dir} (step {last['step']}, {last.get('train_seconds', 0):.0f} s of "
            f"training, {sum(speeds) / max(len(speeds), 1):.0f} images/s)")


def _options(ns: argparse.Namespace) -> dict[str, Any]:
    return {k: getattr(ns, k) for k in ns.option_names if hasattr(ns, k)}


ONCE_PER_JOB = ("evaluate", "sample", "plot", "report", "denoise", "export")
"""verbs that, launched on several processes, run on the main one only (the others exit 0)"""


def run(ns: argparse.Namespace) -> int:
    import genlab
    from genlab.hardware import is_main_process, launched_processes

    if ns.verb in ONCE_PER_JOB and not is_main_process():
        return 0
    if ns.verb == "compare" and launched_processes() > 1:
        raise ConfigError("genlab compare trains its runs one after another in one process; "
                          "launch it without torchrun or accelerate launch")
    if ns.verb == "train":
        resume = ns.resume or getattr(ns, "resume_family", None)
        if ns.family is None:
            if resume is None:
                raise ConfigError(
                    f"say what to train: `genlab train {{{','.join(RECIPES)}}} ...` or "
                    "`genlab train --resume RUN_DIR`")
            run_dir = genlab.train(resume=resume)
        elif resume is not None:
            run_dir = genlab.train(resume=resume, **_overrides(ns, ns.family))
        else:
            cfg = genlab.make_config(ns.family, ns.preset, **_overrides(ns, ns.family))
            run_dir = genlab.train(cfg)
        if is_main_process():
            print(_train_summary(run_dir))
    elif ns.verb == "sweep":
        cfg = genlab.make_config(ns.family, ns.preset, **_overrides(ns, ns.family))
        run_dirs, fig = genlab.sweep(ns.sweep_values, cfg)
        if is_main_process():
            for d in run_dirs:
                print(f"run folder: {d}")
            print(f"comparison figure: {fig}")
    elif ns.verb == "evaluate":
        metrics = genlab.evaluate(ns.run_dir, split=ns.split, seed=ns.seed, device=ns.device,
                                  step=ns.step, **_options(ns))
        for key, value in metrics.items():
            if isinstance(value, dict):  # the GAN's table: one line per method
                print(f"{key}:")
                for name, row in value.items():
                    cells = (", ".join(f"{k} {v:.4g}" for k, v in row.items())
                             if isinstance(row, dict) else row)
                    print(f"  {name}: {cells}")
            else:
                print(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")
        print(f"written: {checkpoint.metrics_path(ns.run_dir)}")
    elif ns.verb == "sample":
        images = genlab.sample(ns.run_dir, n=ns.n, seed=ns.seed, device=ns.device, step=ns.step,
                               **_options(ns))
        gallery = genlab.save_samples(images, ns.out, nrow=ns.nrow)
        print(f"{len(images)} images in {ns.out}; gallery: {gallery}")
    elif ns.verb == "plot":
        path = genlab.plot(ns.run_dir, ns.kind, out=ns.out, device=ns.device, split=ns.split,
                           num_images=ns.num_images, step=ns.step)
        print(f"figure: {path}")
    elif ns.verb == "report":
        print(f"report: {genlab.report(ns.run_dirs, ns.out)}")
    elif ns.verb == "export":
        given = _given(ns, ExportOptions)
        out = genlab.export(ns.run_dir, ns.out, **given)
        print(f"exported: {out} (model card: {out / 'README.md'})")
        if given.get("push_to_hub"):
            print(f"pushed to https://huggingface.co/{given['push_to_hub']}")
    elif ns.verb == "compare":
        page = genlab.compare(**_given(ns, CompareOptions, skip=("overrides",)),
                              overrides=_preset_changes(ns.overrides))
        if getattr(ns, "only", None):
            print(f"record: {page}")
        elif getattr(ns, "plan", None):
            print(f"plan: {page}")
        else:
            print(f"comparison: {page.parent / 'compare.json'}\nreport: {page}")
    elif ns.verb == "demo":
        page = genlab.demo(**_given(ns, DemoOptions))
        if is_main_process():
            print(f"figures and metrics: {page.parent}\nreport: {page}")
    elif ns.verb == "denoise":
        run_denoise(ns)
    elif ns.verb == "prepare":
        run_prepare(ns)
    return 0


# --- the denoise verb (families whose recipe maps images to images) -----------------------------


def add_denoise_parser(sub: Any) -> None:
    denoisers = ", ".join(image_to_image_families())
    p = sub.add_parser(
        "denoise", help=f"denoise image files with a trained denoiser ({denoisers})",
        description="Denoise PNG/JPEG files of any size, grey or RGB (per channel), 8- or "
                    f"16-bit, with a trained denoiser ({denoisers}); writes OUT/<name>.png.")
    p.add_argument("run_dir", type=Path, help="the denoiser's run folder")
    p.add_argument("inputs", type=Path, nargs="+", metavar="IMAGE", help="noisy image file(s)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    add_options_of(p, DenoiseOptions, shown={"clean": "none", "step": "the latest"},
                   parse={"clean": {"type": Path, "nargs": "+", "metavar": "REF"}})
    p.set_defaults(option_names=add_option_flags(p, "denoise", none_shown="the run's"))


def run_denoise(ns: argparse.Namespace) -> None:
    import genlab

    records = genlab.denoise_files(ns.run_dir, ns.inputs, ns.out, **_given(ns, DenoiseOptions),
                                   **_options(ns))
    for r in records:
        line = f"{r['input']} ({r['size']}, {r['bits']}-bit) -> {r['output']}"
        if "psnr_denoised" in r:
            line += (f"  PSNR {r['psnr_noisy']:.2f} -> {r['psnr_denoised']:.2f} dB, "
                     f"SSIM {r['ssim_noisy']:.3f} -> {r['ssim_denoised']:.3f}")
        print(line)


# --- the prepare verb ------------------------------------------------------------------------


def add_prepare_parser(sub: Any) -> None:
    p = sub.add_parser(
        "prepare", help="convert a dataset once into files that training reads from disk "
                        "(--dataset prepared:DIR)",
        description="Convert a dataset once into OUT/{train,test}.u8 (raw uint8 (N, C, H, W) "
                    "images; .u16 for 16-bit files), OUT/{train,test}.labels.npy and "
                    "OUT/dataset.json. Train on it with --dataset prepared:OUT: each batch reads "
                    "only its own rows, so a set larger than memory trains in the same seeded "
                    "batch order.")
    p.add_argument("source", help="a dataset name (digits, mnist, fashion-mnist, cifar10, "
                                  "fer2013, stacked-mnist) or folder:PATH")
    p.add_argument("--out", type=Path, required=True,
                   help="output folder (created; must not hold a prepared dataset already)")
    add_options_of(p, PrepareOptions,
                   shown={"data_dir": "$GENLAB_DATA or ~/.cache/genlab/data"})


def run_prepare(ns: argparse.Namespace) -> None:
    from genlab import data

    o = PrepareOptions(**_given(ns, PrepareOptions))
    meta = data.prepare(ns.source, ns.out, o.data_dir, o.download, resolution=o.resolution,
                        channels=o.image_channels, progress=sys.stderr.isatty())
    for split, entry in meta["splits"].items():
        print(f"{split}: {entry['count']} images of {'x'.join(map(str, meta['image_shape']))} "
              f"{meta['dtype']} -> {ns.out / entry['images']}")
    print(f"train on it with --dataset prepared:{ns.out}")


def resume_argv(argv: list[str]) -> list[str]:
    """``train --resume RUN [flags]`` without a family: the run's own family is put after
    ``train``, so that the flags parse (and are refused) as with the family named."""
    if argv[:1] != ["train"] or any(a in ("-h", "--help") for a in argv[1:2]):
        return argv
    resume, rest = None, argv[1:]
    for i, arg in enumerate(rest):
        if arg == "--resume" and i + 1 < len(rest):
            resume, rest = rest[i + 1], rest[:i] + rest[i + 2:]
            break
        if arg.startswith("--resume="):
            resume, rest = arg.partition("=")[2], rest[:i] + rest[i + 1:]
            break
    if resume is None or any(a in RECIPES for a in rest):
        return argv
    from genlab.recipes import run_config

    family = run_config(resume).family
    return ["train", family, "--resume", resume, *rest]


def main(argv: list[str] | None = None) -> int:
    """Runs one verb; returns the exit code (EXIT_CODES): 0 done; 2 an error in the input, a run
    folder or the training (one line on stderr); 74 a write that failed (disk full, I/O error),
    what was written before being intact; 128 + the signal number (143 SIGTERM, 130 SIGINT) when
    training was preempted: it finished its step, wrote a checkpoint, and `genlab train --resume
    RUN` continues it. A damaged checkpoint passed over for an older one is one warning line."""
    from genlab.errors import GenlabError, Preempted

    argv = list(sys.argv[1:] if argv is None else argv)
    with warnings.catch_warnings():
        warnings.simplefilter("always", FallbackWarning)
        shown = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, FallbackWarning):
                _report(f"warning: {message}", every_rank=False, red=False)
            else:
                shown(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        try:
            ns = build_parser().parse_args(resume_argv(argv))
            return run(ns)
        except Preempted as stop:
            _report(str(stop), every_rank=True, red=False)
            return stop.exit_code
        except GenlabError as err:
            _report(f"error: {err}", every_rank=err.every_rank, red=True)
            return err.exit_code
        except OSError as err:  # a failure of the machine (disk, file system), not of genlab
            where = f" ({err.filename})" if err.filename else ""
            _report(f"error: {err.strerror or err}{where}", every_rank=False, red=True)
            return 74 if err.errno in WRITE_ERRORS else 2


def _report(message: str, every_rank: bool, red: bool) -> None:
    """One line on stderr. Under several processes, a message that every process has alike is
    printed by the main one, and all of them then meet, so that the launcher tears none down
    before it is printed; another process's own error is printed with its rank."""
    from genlab.distributed import wait_for_other_processes
    from genlab.hardware import launched_processes, process_rank

    rank = process_rank()
    if every_rank and rank != 0:
        wait_for_other_processes()
        return
    where = f" (rank {rank})" if launched_processes() > 1 and rank != 0 else ""
    on, off = ("\033[31m", "\033[0m") if red and sys.stderr.isatty() else ("", "")
    message = " ".join(message.split())  # one line, whatever the message holds
    print(f"{on}genlab{where}: {message}{off}", file=sys.stderr, flush=True)
    if every_rank:
        wait_for_other_processes()


if __name__ == "__main__":
    sys.exit(main())
