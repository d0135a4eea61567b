"""Run folders -> one self-contained HTML page: a comparison table, then each run's metrics and
figures. Reads only the JSON files and PNGs that runs wrote (config.json, metrics.json,
figures/*.png, samples/*.png) and any extra figures given; images are linked by relative path."""

from __future__ import annotations

import html
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

KEY_CONFIG = ("family", "dataset", "arch", "latent_dim", "beta", "binarize", "mode", "schedule",
              "num_steps", "epochs", "steps", "batch_size", "lr", "seed")


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


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(c, ''))}</td>" for c in columns) + "</tr>"
                   for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(path: Path, base: Path, caption: str) -> str:
    rel = html.escape(os.path.relpath(path, base))
    return (f'<figure><a href="{rel}"><img src="{rel}" alt="{html.escape(caption)}"></a>'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def report(run_dirs: Sequence[str | Path], out: str | Path, title: str = "genlab report",
           extra_figures: Sequence[tuple[str, str | Path]] = ()) -> Path:
    """Write ``out`` (an .html file) comparing ``run_dirs``; returns its path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    base = out.parent
    runs = [Path(d) for d in run_dirs]
    summary = []
    for d in runs:
        cfg, metrics = _read(d / "config.json"), _read(d / "metrics.json")
        row = {"run": d.name, **{k: cfg[k] for k in KEY_CONFIG if k in cfg}}
        row.update({k: v for k, v in _flatten(metrics).items()
                    if isinstance(v, int | float) and not isinstance(v, bool)})
        summary.append(row)
    columns = ["run"] + [c for c in KEY_CONFIG if any(c in r for r in summary)]
    metric_cols = sorted({k for r in summary for k in r} - set(columns))
    parts = [f"<h1>{html.escape(title)}</h1>"]
    if summary:
        parts += ["<h2>Comparison</h2>", _table(summary, columns + metric_cols)]
    if extra_figures:
        parts.append("<h2>Comparisons across runs</h2><div class='figs'>")
        parts += [_img(Path(p), base, caption) for caption, p in extra_figures]
        parts.append("</div>")
    for d in runs:
        metrics = _read(d / "metrics.json")
        parts.append(f"<h2 id='{html.escape(d.name)}'>{html.escape(d.name)}</h2>")
        parts.append(f"<p>run folder: <code>{html.escape(str(d))}</code> &middot; "
                     f"<a href='{html.escape(os.path.relpath(d / 'config.json', base))}'>"
                     f"config.json</a>"
                     + (" &middot; <a href="
                        f"'{html.escape(os.path.relpath(d / 'metrics.json', base))}'>"
                        "metrics.json</a>" if metrics else " &middot; not evaluated yet")
                     + "</p>")
        if metrics:
            flat = _flatten(metrics)
            parts.append(_table([{"metric": k, "value": v} for k, v in flat.items()],
                                ["metric", "value"]))
        figures = sorted((d / "figures").glob("*.png"))
        samples = sorted((d / "samples").glob("*.png"))[-1:]
        if figures or samples:
            parts.append("<div class='figs'>")
            parts += [_img(p, base, p.stem) for p in figures]
            parts += [_img(p, base, f"samples at {p.stem}") for p in samples]
            parts.append("</div>")
    style = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px}"
             "table{border-collapse:collapse;margin:1em 0;font-size:13px}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
             "th{background:#f3f3f3}td:first-child{text-align:left}"
             ".figs{display:flex;flex-wrap:wrap;gap:12px}"
             "figure{margin:0}img{max-width:440px;max-height:440px;border:1px solid #ddd;"
             "image-rendering:pixelated}figcaption{font-size:12px;color:#555}")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{style}</style></head><body>{''.join(parts)}</body></html>\n")
    out.write_text(page)
    return out
