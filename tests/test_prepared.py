"""Prepared datasets: `genlab prepare` writes raw (N, C, H, W) files once, `prepared:DIR` maps
them from disk, and training on them matches training in memory step for step."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_cli_vae import genlab

from genlab import checkpoint, data, prepared, recipes
from genlab import training as train_mod
from genlab.errors import DataError


def tiny_vae(tmp_path: Path, name: str, dataset: str, **kw):
    values = dict(dataset=dataset, steps=4, batch_size=32, log_every=1, checkpoint_every=2,
                  hidden=(16,), latent_dim=2, run_dir=str(tmp_path / name), seed=5)
    return recipes.make_config("vae", "reference", **{**values, **kw})


def losses(run_dir: Path) -> list[tuple[int, float, float]]:
    return [(r["step"], r["loss"], r["kl"]) for r in checkpoint.read_log(run_dir)]


def image_folder(root: Path, n: int = 23) -> Path:
    """A flat-class folder: two classes of 6x6 grey PNGs, some in a deeper subfolder."""
    from PIL import Image

    rng = np.random.default_rng(4)
    for i in range(n):
        folder = root / ("a" if i % 3 else "b") / ("sub" if i % 5 == 0 else "")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (6, 6), dtype=np.uint8)).save(folder / f"{i}.png")
    return root


def test_prepared_digits_equal_the_in_memory_split(tmp_path):
    meta = data.prepare("digits", tmp_path / "p")
    assert meta["splits"]["train"]["shape"] == [1500, 1, 8, 8] and meta["dtype"] == "uint8"
    assert json.loads((tmp_path / "p" / "dataset.json").read_text())["classes"][9] == "9"
    assert (tmp_path / "p" / "train.u8").stat().st_size == 1500 * 64
    for split in ("train", "test", "val"):
        mapped, memory = data.load(f"prepared:{tmp_path / 'p'}", split), data.load("digits", split)
        assert mapped.memory_mapped and not memory.memory_mapped
        assert torch.equal(mapped.images, memory.images)
        assert torch.equal(mapped.labels, memory.labels) and mapped.classes == memory.classes
    # a folder holding dataset.json is read as prepared too
    assert data.load(f"folder:{tmp_path / 'p'}", "test").memory_mapped


def test_prepared_folder_is_written_in_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(prepared, "CHUNK", 4)  # 20 train images: five chunks
    source = f"folder:{image_folder(tmp_path / 'imgs')}"
    meta = data.prepare(source, tmp_path / "p", resolution=4, channels=3)
    assert meta["image_shape"] == [3, 4, 4] and meta["resolution"] == 4
    assert meta["splits"]["test"]["count"] == 2 and meta["created_by"].startswith("genlab")
    for split in ("train", "test"):
        memory = data.load(source, split, resolution=4, channels=3)
        mapped = data.load(f"prepared:{tmp_path / 'p'}", split)
        assert torch.equal(mapped.images, memory.images)
        assert torch.equal(mapped.labels, memory.labels)
    only_train = tmp_path / "only"
    image_folder(only_train / "train", n=3)
    assert list(data.prepare(f"folder:{only_train}", tmp_path / "q")["splits"]) == ["train"]
    with pytest.raises(DataError, match=r"has no test split \(prepared: train\)"):
        data.load(f"prepared:{tmp_path / 'q'}", "test")


def test_training_from_prepared_matches_in_memory_and_resumes(tmp_path, one_thread):
    data.prepare("digits", tmp_path / "p")
    memory = train_mod.train(tiny_vae(tmp_path, "memory", "digits"), progress=False)
    mapped = train_mod.train(tiny_vae(tmp_path, "mapped", f"prepared:{tmp_path / 'p'}"),
                             progress=False)
    assert len(losses(memory)) == 4 and losses(mapped) == losses(memory)
    half = train_mod.train(tiny_vae(tmp_path, "half", f"prepared:{tmp_path / 'p'}", steps=2),
                           progress=False)
    train_mod.train(resume=half, steps=4, progress=False)
    assert losses(half) == losses(memory)


def test_prepare_cli(tmp_path):
    r = genlab("prepare", "digits", "--out", str(tmp_path / "p"), "--resolution", "16",
               "--image-channels", "3", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "train: 1500 images of 3x16x16 uint8" in r.stdout
    assert f"--dataset prepared:{tmp_path / 'p'}" in r.stdout
    assert data.load(f"prepared:{tmp_path / 'p'}", "train").image_shape == (3, 16, 16)
    r = genlab("prepare", "digits", "--out", str(tmp_path / "p"), cwd=tmp_path)
    assert r.returncode == 2 and "already holds a prepared dataset" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = genlab("prepare", "folder:/no/such/dir", "--out", str(tmp_path / "q"), cwd=tmp_path)
    assert r.returncode == 2 and "image folder /no/such/dir does not exist" in r.stderr


def test_bad_prepared_folders_are_named(tmp_path):
    root = tmp_path / "p"
    with pytest.raises(DataError, match=rf"{root}/dataset.json: no such file; expected a folder "
                                        r"written by `genlab prepare"):
        data.load(f"prepared:{root}")
    data.prepare("digits", root)
    with pytest.raises(DataError, match=r"holds 8x8 images; prepare it again with --resolution"):
        data.load(f"prepared:{root}", resolution=32)
    labels = np.load(root / "test.labels.npy")
    np.save(root / "test.labels.npy", labels[:-1])
    with pytest.raises(DataError, match=r"test.labels.npy: \(296,\) labels; expected \(297,\)"):
        data.load(f"prepared:{root}", "test")
    raw = (root / "train.u8").read_bytes()
    (root / "train.u8").write_bytes(raw[:-100])
    with pytest.raises(DataError, match=rf"{root}/train.u8: 95900 bytes; expected 96000 \(1500 "
                                        r"images of 1x8x8 uint8\), so the file is truncated"):
        data.load(f"prepared:{root}", "train")
    (root / "dataset.json").write_text("{not json")
    with pytest.raises(DataError, match=r"dataset.json: not valid JSON"):
        data.load(f"prepared:{root}")
    (root / "dataset.json").write_text('{"format": "genlab-prepared", "version": 1}')
    with pytest.raises(DataError, match=r"missing key\(s\) \['image_shape'"):
        data.load(f"prepared:{root}")


def test_prepare_refuses_splits_that_disagree(tmp_path):
    from PIL import Image

    for split, side in (("train", 4), ("test", 8)):
        (tmp_path / "imgs" / split).mkdir(parents=True)
        Image.fromarray(np.zeros((side, side), np.uint8)).save(tmp_path / "imgs" / split / "a.png")
    with pytest.raises(DataError, match=r"test: images are \(1, 8, 8\) uint8; the earlier ones "
                                        r"are \(1, 4, 4\) uint8 \(pass --resolution"):
        data.prepare(f"folder:{tmp_path / 'imgs'}", tmp_path / "p")
    assert not (tmp_path / "p" / "dataset.json").exists()
    assert not list((tmp_path / "p").glob("*.tmp"))
    meta = data.prepare(f"folder:{tmp_path / 'imgs'}", tmp_path / "q", resolution=4)
    assert meta["splits"]["test"]["shape"] == [1, 1, 4, 4]
