"""Arrays in, PNG out: image grids, labelled image rows, scatters and curves (matplotlib Agg).

Images arrive as uint8 (N, C, H, W); nothing here imports the rest of genlab.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from genlab.images import WHITE_8

MIN_GRID_PIXELS = 320  # small images (8x8 digits) are enlarged, pixel-exact, up to about this


def grid(images: torch.Tensor, nrow: int, pad: int = 2, pad_value: int = WHITE_8) -> np.ndarray:
    """Tile (N, C, H, W) uint8 images row-major into one (rows*(H+pad)+pad, ...) array.

    Image i goes to row i // nrow, column i % nrow, at offset (pad + r*(H+pad), pad + c*(W+pad)).
    """
    n, c, h, w = images.shape
    rows = math.ceil(n / nrow)
    canvas = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad, c), pad_value, np.uint8)
    arr = images.permute(0, 2, 3, 1).cpu().numpy()
    for i in range(n):
        r, col = divmod(i, nrow)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        canvas[top:top + h, left:left + w] = arr[i]
    return canvas


def _upscale(arr: np.ndarray, target: int = MIN_GRID_PIXELS) -> np.ndarray:
    factor = max(1, target // max(arr.shape[:2]))
    return arr.repeat(factor, 0).repeat(factor, 1) if factor > 1 else arr


def save_image(arr: np.ndarray, path: Path) -> Path:
    """Write an (H, W, C) uint8 array as PNG (grey when C == 1)."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr).save(path)
    return path


def save_grid(images: torch.Tensor, path: Path, nrow: int | None = None) -> Path:
    """Save a row-major grid of uint8 images as a PNG, enlarging tiny images for visibility."""
    nrow = nrow or math.ceil(math.sqrt(images.shape[0]))
    return save_image(_upscale(grid(images, nrow)), path)


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, plt.figure(figsize=(width, height), dpi=100)


def save_rows(rows: Sequence[tuple[str, torch.Tensor]], path: Path, title: str = "") -> Path:
    """One labelled row of images per entry: e.g. originals, then reconstructions per latent
    size."""
    n = max(imgs.shape[0] for _, imgs in rows)
    plt, fig = _figure(1.0 * n + 1.6, 1.0 * len(rows) + (0.5 if title else 0.1))
    axes = fig.subplots(len(rows), n, squeeze=False)
    for r, (label, imgs) in enumerate(rows):
        for c in range(n):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c < imgs.shape[0]:
                img = imgs[c].permute(1, 2, 0).cpu().numpy()
                ax.imshow(img[:, :, 0] if img.shape[2] == 1 else img, cmap="gray", vmin=0,
                          vmax=WHITE_8, interpolation="nearest")
            if c == 0:
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=10)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(plt, fig, path)


def save_scatter(points: np.ndarray, labels: np.ndarray, path: Path, title: str,
                 xlabel: str, ylabel: str, class_names: Sequence[str] | None = None) -> Path:
    """2-D points coloured by integer label (tab10) with a colour bar naming the classes."""
    plt, fig = _figure(7.5, 6.0)
    ax = fig.add_subplot(1, 1, 1)
    k = int(labels.max()) + 1 if labels.size else 1
    cmap = plt.get_cmap("tab10", max(k, 2))
    sc = ax.scatter(points[:, 0], points[:, 1], c=labels, cmap=cmap, s=3, alpha=0.7,
                    vmin=-0.5, vmax=max(k, 2) - 0.5, rasterized=True)
    bar = fig.colorbar(sc, ax=ax, ticks=range(k))
    if class_names is not None:
        bar.ax.set_yticklabels(list(class_names)[:k])
    bar.set_label("class")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    fig.tight_layout()
    return _save(plt, fig, path)


def save_curves(series: dict[str, tuple[Sequence[float], Sequence[float]]], path: Path,
                title: str, xlabel: str = "step", panels: Sequence[Sequence[str]] | None = None,
                log_y: bool = False, ylabel: str | None = None) -> Path:
    """Line plots: ``series`` maps name -> (x, y); ``panels`` groups names into side-by-side
    axes."""
    panels = panels or [list(series)]
    plt, fig = _figure(5.0 * len(panels), 3.8)
    for i, names in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for name in names:
            x, y = series[name]
            ax.plot(x, y, label=name, marker="o" if len(x) < 12 else None)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel or ", ".join(names))
        if log_y:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return _save(plt, fig, path)


def save_budget_curves(curves: dict[str, dict[str, Sequence[float]]], path: Path,
                       title: str) -> Path:
    """FID against training minutes (left) and training FLOPs (right, log scale; a family
    without counted FLOPs is left out there): per family the mean line over its legs and a
    shaded band from ``lo`` to ``hi``. ``curves``: name -> {'minutes', 'flops', 'fid', 'lo',
    'hi'}, one value per leg."""
    plt, fig = _figure(10.0, 3.8)
    for i, (key, label) in enumerate((("minutes", "training minutes"),
                                      ("flops", "training FLOPs (counted)"))):
        ax = fig.add_subplot(1, 2, i + 1)
        for name, c in curves.items():
            x = list(c[key])
            if any(v != v for v in x):  # NaN: not counted
                continue
            line, = ax.plot(x, c["fid"], marker="o", label=name)
            ax.fill_between(x, c["lo"], c["hi"], color=line.get_color(), alpha=0.2)
        ax.set_xlabel(label)
        ax.set_ylabel("FID (offline features)")
        ax.set_yscale("log")
        if key == "flops":
            from matplotlib.ticker import NullFormatter

            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())  # decades only: no overlapping labels
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return _save(plt, fig, path)


def _save(plt, fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
