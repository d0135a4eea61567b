"""Run folders -> one self-contained HTML page: runs grouped by family, one summary table per family
(its key settings and headline metrics, from the recipe, so no column is empty for most rows),
then each run's metrics and figures. Reads only the JSON files and PNGs that runs wrote
(config.json, metrics.json, figures/*.png, the preview grids) and any extra figures given;
images are linked by relative path."""

from __future__ import annotations

import html
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from genlab import checkpoint, recipes


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return ", ".join(_fmt(x) for x in v)
    return html.escape(str(v))


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[str],
           raw: Sequence[str] = ()) -> str:
    """An HTML table; cells of the ``raw`` columns are HTML already, the rest are escaped."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(
        f"<td>{r.get(c, '') if c in raw else _fmt(r.get(c, ''))}</td>" for c in columns)
        + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(path: Path, base: Path, caption: str) -> str:
    rel = html.escape(os.path.relpath(path, base))
    return (f'<figure><a href="{rel}"><img src="{rel}" alt="{html.escape(caption)}"></a>'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _family(run_dir: Path) -> str:
    """The family a run folder belongs to now (an older genlab's 'gan' in 'generate' mode is a
    'dcgan' run)."""
    values = checkpoint.read_config_values(run_dir)
    return recipes.get(values.get("family")).upgrade(values)["family"]


def report(run_dirs: Sequence[str | Path], out: str | Path, title: str = "genlab report",
           extra_figures: Sequence[tuple[str, str | Path]] = ()) -> Path:
    """Write ``out`` (an .html file) comparing ``run_dirs``; returns its path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    base = out.parent
    runs = [Path(d) for d in run_dirs]
    by_family: dict[str, list[Path]] = {}
    for d in runs:
        by_family.setdefault(_family(d), []).append(d)
    parts = [f"<h1>{html.escape(title)}</h1>"]
    for family, members in by_family.items():
        recipe = recipes.get(family)
        rows = []
        for d in members:
            cfg, metrics = _read(d / "config.json"), checkpoint.read_metrics(d)
            flat = _flatten(metrics)
            rows.append({"run": f"<a href='#{html.escape(d.name)}'>{html.escape(d.name)}</a>",
                         "dataset": cfg.get("dataset", ""),
                         **{k: cfg[k] for k in recipe.key_config if k in cfg},
                         **{k: flat[k] for k in recipe.headline if k in flat}})
        columns = ["run", "dataset", *[c for c in (*recipe.key_config, *recipe.headline)
                                       if any(c in r for r in rows)]]
        parts += [f"<h2>{html.escape(family)}: {html.escape(recipe.summary)}</h2>",
                  _table(rows, columns, raw=("run",))]
    if extra_figures:
        parts.append("<h2>Comparisons across runs</h2><div class='figs'>")
        parts += [_img(Path(p), base, caption) for caption, p in extra_figures]
        parts.append("</div>")
    for d in runs:
        metrics = checkpoint.read_metrics(d)
        parts.append(f"<h2 id='{html.escape(d.name)}'>{html.escape(d.name)}</h2>")
        parts.append(f"<p>run folder: <code>{html.escape(str(d))}</code> &middot; "
                     f"<a href='{html.escape(os.path.relpath(d / 'config.json', base))}'>"
                     f"config.json</a>"
                     + (" &middot; <a href="
                        f"'{html.escape(os.path.relpath(checkpoint.metrics_path(d), base))}'>"
                        "metrics.json</a>" if metrics else " &middot; not evaluated yet")
                     + "</p>")
        if metrics:
            flat = _flatten(metrics)
            parts.append(_table([{"metric": k, "value": v} for k, v in flat.items()],
                                ["metric", "value"]))
        figures = sorted(checkpoint.figures_dir(d).glob("*.png"))
        samples = checkpoint.previews(d)[-1:]
        if figures or samples:
            parts.append("<div class='figs'>")
            parts += [_img(p, base, p.stem) for p in figures]
            parts += [_img(p, base, f"samples at {p.stem}") for p in samples]
            parts.append("</div>")
    style = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}"
             "table{border-collapse:collapse;margin:1em 0;font-size:13px;display:block;"
             "max-width:100%;overflow-x:auto}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
             "th{background:#f3f3f3}td:first-child{text-align:left;word-break:break-all}"
             ".figs{display:flex;flex-wrap:wrap;gap:12px}"
             "figure{margin:0}img{max-width:440px;max-height:440px;border:1px solid #ddd;"
             "image-rendering:pixelated}figcaption{font-size:12px;color:#555}")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{style}</style></head><body>{''.join(parts)}</body></html>\n")
    out.write_text(page)
    return out
