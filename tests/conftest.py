"""Shared fixtures: tiny files in each real dataset format, and the real sample data when
present."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


@pytest.fixture
def one_thread():
    """One torch thread: on a shared 2-core machine, OpenMP threads that wait on each other cost
    more than they bring to tiny tensors."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run_cli(*args: str) -> tuple[int, str, str]:
    """The `genlab` command in-process: (exit code, stdout, stderr)."""
    from genlab.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def shared_data(sub: str) -> Path:
    path = SHARED_DATA / sub
    if not path.exists():
        pytest.skip(f"real sample data {path} not present")
    return path


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write an IDX (MNIST) file: magic 0x0000 08 <ndim>, big-endian dims, uint8 data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def tiny_mnist(tmp_path: Path) -> Path:
    """A torchvision-layout MNIST with 20 train and 10 test random digits."""
    rng = np.random.default_rng(0)
    raw = tmp_path / "MNIST" / "raw"
    for prefix, n in (("train", 20), ("t10k", 10)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    return tmp_path


def write_fer_csv(path: Path, rows: list[tuple[int, np.ndarray | str, str]],
                  header: str = "emotion,pixels,Usage") -> Path:
    lines = [header]
    for emotion, pixels, usage in rows:
        text = pixels if isinstance(pixels, str) else " ".join(map(str, pixels.ravel()))
        lines.append(f"{emotion},{text},{usage}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def tiny_fer(tmp_path: Path) -> Path:
    """A Kaggle-format FER2013 CSV with 6 Training, 3 PublicTest and 2 PrivateTest 48x48 rows."""
    rng = np.random.default_rng(1)
    usages = ["Training"] * 6 + ["PublicTest"] * 3 + ["PrivateTest"] * 2
    rows = [(i % 7, rng.integers(0, 256, (48, 48)), u) for i, u in enumerate(usages)]
    return write_fer_csv(tmp_path / "fer2013.csv", rows)


@pytest.fixture
def tiny_folder(tmp_path: Path) -> Path:
    """An image folder with train/ and test/ splits, two classes of 8x8 RGB PNGs."""
    from PIL import Image

    rng = np.random.default_rng(2)
    root = tmp_path / "imgs"
    for split, n in (("train", 4), ("test", 2)):
        for cls in ("cat", "dog"):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(
                    root / split / cls / f"{i:04d}.png")
    return root


def kill_at(monkeypatch, family: str, at_step: int) -> None:
    """Make ``family``'s training step raise KeyboardInterrupt (a simulated kill) at
    ``at_step``, through ``monkeypatch`` (use its context to undo it)."""
    from genlab import recipes

    original = recipes.RECIPES[family]

    def step(s, x, y, step):
        if step == at_step:
            raise KeyboardInterrupt("simulated kill")
        return original.step(s, x, y, step)

    monkeypatch.setitem(recipes.RECIPES, family, dataclasses.replace(original, step=step))
