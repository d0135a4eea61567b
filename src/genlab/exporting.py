"""``export(run_dir, out)``: a self-contained folder to share a trained model, optionally pushed to
the Hugging Face Hub.

The folder is a minimal run folder (written by ``checkpoint.export_run``, which owns the format):
config.json, data.json, log.jsonl, metrics.json when the run was evaluated, and one weights-only
safetensors checkpoint of the inference networks (the model and its EMA copy; no discriminator,
no optimizer state). So ``genlab.load_run(out)``, ``genlab sample``, ``evaluate`` and ``plot``
read it as they read the run. Beside those: sample_grid.png, drawn with the run's recipe, and
README.md, a Hugging Face model card (YAML front matter, then what the model is, how it was
trained, its metrics, the grid and the commands that reload it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genlab import checkpoint, plots, recipes
from genlab.checkpoint import Run
from genlab.config import to_dict
from genlab.errors import ConfigError, RunError
from genlab.files import write_atomic
from genlab.hardware import shares_cores
from genlab.images import to_uint8
from genlab.inference import sample

GRID_IMAGES = 16
"""images in the exported sample grid (seed 0, the family's default sampler)"""
GRID_NAME = "sample_grid.png"
CARD_CONFIG = ("batch_size", "grad_accum", "lr", "lr_schedule", "warmup_steps", "warmup_fraction",
               "ema_decay", "ema_sigma_rel", "max_minutes", "budget_minutes", "precision",
               "hflip", "random_crop", "seed")
"""config fields every model card lists, after the family's own key_config"""


@dataclass(frozen=True)
class ExportOptions:
    """The options of ``genlab export`` (the CLI's flags are made from these fields and their
    docstrings: every default is written here once)."""

    step: int | None = None
    """export the checkpoint of this step (--keep-checkpoints sets how many a run keeps)"""
    push_to_hub: str | None = None
    """also upload OUT to this Hugging Face Hub model repository (USER/NAME, created if missing;
    needs pip install 'genlab[hub]' and a token)"""
    private: bool = False
    """create the Hub repository private (with --push-to-hub)"""


@shares_cores
def export(run_dir: str | Path, out: str | Path, *args: Any, **kwargs: Any) -> Path:
    """Write the folder ``out`` from the run's latest checkpoint (or that of ``step``): weights,
    config, data info, log and metrics, a sample grid and a model card; with ``push_to_hub`` (a
    Hub repository id, 'user/name'), upload it there too (``private``: create the repository
    private). The further arguments are the fields of ExportOptions, in its order. Returns
    ``out``."""
    o = ExportOptions(*args, **kwargs)
    run_dir, out = Path(run_dir), Path(out)
    if o.private and not o.push_to_hub:
        raise ConfigError("--private applies to the repository that --push-to-hub creates; give "
                          "--push-to-hub USER/NAME too")
    if o.push_to_hub:
        hub_api()  # a missing huggingface_hub is reported before any file is written
    checkpoint.export_run(run_dir, out, o.step)
    run = recipes.load_run(out, "cpu")  # read back as any run folder is
    draw_grid(run, out / GRID_NAME)
    write_atomic(out / "README.md", model_card(run, out, run_dir, o.push_to_hub).encode())
    if o.push_to_hub:
        upload(out, o.push_to_hub, o.private, f"genlab export of {run_dir.name} at step {run.step}")
    return out


def draw_grid(run: Run, path: Path) -> Path:
    """GRID_IMAGES images from the run's default sampler at seed 0 (what ``genlab sample OUT -n
    16`` draws), or, for a family that maps images to images, its recipe's grid (the denoiser:
    clean / noisy / denoised test images)."""
    capability = recipes.get(run.family).image_to_image
    if capability is not None:
        return capability.grid(run, path)
    images = sample(run, GRID_IMAGES, seed=0)
    return plots.save_grid(to_uint8(images), path, nrow=8)


def _yaml_list(key: str, values: list[str]) -> list[str]:
    return [f"{key}:"] + [f"- {v}" for v in values]


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value))
    return str(value)


def model_card(run: Run, out: Path, source: Path, repo_id: str | None = None) -> str:
    """The README.md of an exported folder: Hugging Face model-card front matter (library_name,
    tags, datasets, pipeline_tag), then the family, data, training length, key config, metrics,
    the sample grid and the commands that reload the folder."""
    recipe = recipes.get(run.family)
    cfg, info = run.config, run.data_info
    values = to_dict(cfg)
    dataset = cfg.dataset
    named = not dataset.startswith(("folder:", "prepared:"))
    capability = recipe.image_to_image
    task = "unconditional-image-generation" if capability is None else capability.task
    tags = ["genlab", run.family, "pytorch", "safetensors", task]
    front = ["---", "library_name: genlab", *_yaml_list("tags", tags)]
    if named:
        front += _yaml_list("datasets", [dataset])
    front += [f"pipeline_tag: {task}", "---", ""]

    log = checkpoint.read_log(out)
    seconds = log[-1].get("train_seconds") if log else None
    epoch = log[-1].get("epoch") if log else None
    c, h, w = run.image_shape
    classes = info.get("classes", [])
    lines = [f"# {run.family} on {dataset}", "",
             f"A genlab **{run.family}** model: {recipe.summary}.", "",
             f"- data: `{dataset}`, {w}x{h} images with {c} channel(s), "
             f"{info.get('dtype', 'uint8')}, {len(classes)} class(es), "
             f"{info.get('num_train', '?')} training images",
             f"- trained for **{run.step} steps**"
             + (f" ({epoch} epochs" if epoch is not None else "")
             + (f", {seconds:.0f} s of training)" if seconds is not None else
                (")" if epoch is not None else "")),
             f"- weights: `checkpoints/ckpt-{run.step:08d}.safetensors` "
             f"({', '.join(sorted(run.modules))}; sampling uses "
             f"{'the EMA copy' if 'ema' in run.modules else 'the model'})",
             f"- exported from `{source}`", ""]

    lines += [f"![{GRID_NAME}]({GRID_NAME})", ""]
    folder = str(out)
    lines += ["## Use it", ""]
    if repo_id:
        lines += ["Download it from the Hub first:", "", "```python",
                  "from huggingface_hub import snapshot_download", "",
                  f'folder = snapshot_download("{repo_id}")  # then use folder as below', "```",
                  ""]
    lines += ["```python", "import genlab", "",
              f'run = genlab.load_run("{folder}")  # run.config, run.model (eval mode)']
    if capability is None:
        lines += [f'images = genlab.sample("{folder}", n=16, seed=0)  # float in [-1, 1], '
                  f"(16, {c}, {h}, {w})", "```", "", "```bash",
                  f"genlab sample {folder} -n 16 --seed 0 --out samples/   # this card's grid"]
    else:  # the verb of every family that maps images to images
        lines += [f'records = genlab.denoise_files("{folder}", ["noisy.png"], "denoised/")',
                  "```", "", "```bash", f"genlab denoise {folder} noisy.png --out denoised/"]
    lines += [f"genlab evaluate {folder}", f"genlab plot {folder} {recipe.control_figure}",
              "```", ""]

    lines += ["## Training config", "", "| field | value |", "|---|---|"]
    for name in dict.fromkeys((*recipe.key_config, *CARD_CONFIG)):
        if name in values:
            lines.append(f"| `{name}` | {_cell(values[name])} |")
    lines += ["", "The full config is in `config.json`; `log.jsonl` holds the training curves.",
              ""]

    metrics = checkpoint.read_metrics(out)
    lines += ["## Metrics", ""]
    shown = [k for k in recipe.headline if isinstance(metrics.get(k), int | float)]
    if not shown:
        lines += [f"Not evaluated yet: `genlab evaluate {folder}` writes metrics.json.", ""]
    else:
        where = f"step {metrics.get('step', '?')}, {metrics.get('split', 'test')} split"
        if metrics.get("step") not in (None, run.step):
            where += f" (the exported weights are of step {run.step})"
        lines += [f"From `metrics.json` ({where}):", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_cell(metrics[k])} |" for k in shown]
        lines.append("")
    return "\n".join(front + lines)


def hub_api() -> Any:
    """A ``huggingface_hub.HfApi``, or a one-line ConfigError naming the extra to install."""
    try:
        from huggingface_hub import HfApi
    except ImportError:
        raise ConfigError("--push-to-hub needs the huggingface_hub package: "
                          "pip install 'genlab[hub]'") from None
    return HfApi()


def upload(folder: Path, repo_id: str, private: bool, message: str) -> str:
    """Create the Hub model repository ``repo_id`` when missing and upload ``folder`` into it
    as one commit; returns the repository's URL. Any failure of the Hub (no token, no network,
    no rights) becomes a one-line RunError; the folder stays written."""
    api = hub_api()
    try:
        url = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                          commit_message=message)
    except Exception as err:  # HTTP, token and connection errors of huggingface_hub alike
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RunError(f"pushing {folder} to the Hub repository {repo_id} failed: {first}; the "
                       f"folder is written: upload it with `hf upload {repo_id} {folder}`"
                       ) from None
    return str(url)
