"""The prepared dataset format: a dataset converted once into raw files that are mapped from disk.

A prepared folder (written by ``genlab prepare``, as EDM's dataset_tool and nanoGPT's prepare.py
write theirs) holds, for each split, ``{split}.u8`` (``{split}.u16`` for 16-bit images): the
(N, C, H, W) images as raw bytes in row order; ``{split}.labels.npy``: the (N,) int64 labels;
and ``dataset.json``, written last, which names the files and records the image shape, dtype,
classes and how the set was made. This module writes and reads that format; ``genlab.data``
converts sources into it (``data.prepare``) and loads it as ``prepared:DIR``. Reading maps the
image file, so a batch reads only its own rows and a set larger than memory trains with the same
seeded batch order.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genlab.errors import DataError

PREPARED_FORMAT, PREPARED_VERSION = "genlab-prepared", 1
FILE_SUFFIX = {"uint8": ".u8", "uint16": ".u16"}  # raw image files of a prepared dataset
CHUNK = 1024  # images converted and written at a time


def chunks(images: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    """(C, H, W) arrays -> (k, C, H, W) arrays of up to CHUNK images."""
    batch: list[np.ndarray] = []
    for image in images:
        batch.append(image)
        if len(batch) == CHUNK:
            yield np.stack(batch)
            batch = []
    if batch:
        yield np.stack(batch)



def write_prepared(out: str | Path,
                   splits: dict[str, tuple[Iterable[np.ndarray], np.ndarray, int]],
                   classes: tuple[str, ...], source: str, resolution: int = 0, channels: int = 0,
                   progress: bool = False) -> dict[str, Any]:
    """Write a prepared dataset: for each split, (k, C, H, W) image chunks appended to one raw
    file, its labels and count; dataset.json last, so a folder without it is incomplete."""
    from tqdm.auto import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    entries: dict[str, Any] = {}
    shape: tuple[int, ...] | None = None
    dtype: np.dtype | None = None
    for split, (chunks, labels, count) in splits.items():
        labels = np.asarray(labels, dtype=np.int64)
        if labels.shape != (count,):
            raise DataError(f"{source} {split}: {labels.shape[0]} labels for {count} images")
        bar = tqdm(total=count, desc=f"{split}", unit="img", disable=not progress,
                   mininterval=0.5, dynamic_ncols=True)
        written = 0
        tmp = out / f"{split}.images.tmp"
        try:
            with open(tmp, "wb") as f:
                for chunk in chunks:
                    if shape is None:
                        shape, dtype = tuple(chunk.shape[1:]), chunk.dtype
                    if tuple(chunk.shape[1:]) != shape or chunk.dtype != dtype:
                        raise DataError(f"{source} {split}: images are {tuple(chunk.shape[1:])} "
                                        f"{chunk.dtype}; the earlier ones are {shape} {dtype} "
                                        f"(pass --resolution and --image-channels to make them "
                                        f"agree)")
                    f.write(np.ascontiguousarray(chunk).tobytes())
                    written += len(chunk)
                    bar.update(len(chunk))
        except BaseException:
            tmp.unlink(missing_ok=True)  # no half-written file is left behind
            raise
        finally:
            bar.close()
        if written != count:
            raise DataError(f"{source} {split}: wrote {written} images; expected {count}")
        if dtype is None:
            raise DataError(f"{source} {split}: no images to prepare")
        path = out / f"{split}{FILE_SUFFIX[str(dtype)]}"
        os.replace(tmp, path)
        np.save(out / f"{split}.labels.npy", labels)
        entries[split] = {"count": count, "shape": [count, *shape], "images": path.name,
                          "labels": f"{split}.labels.npy"}
    meta = {"format": PREPARED_FORMAT, "version": PREPARED_VERSION, "source": source,
            "resolution": resolution, "channels": channels, "image_shape": list(shape or ()),
            "dtype": str(dtype), "classes": list(classes), "splits": entries,
            "created_by": f"genlab {getattr(sys.modules.get('genlab'), '__version__', '?')}"}
    (out / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta



def read_prepared_info(root: Path) -> dict[str, Any]:
    """dataset.json of a prepared folder, checked; a DataError names the file and the fault."""
    path = root / "dataset.json"
    if not path.is_file():
        raise DataError(f"{path}: no such file; expected a folder written by "
                        f"`genlab prepare SOURCE --out {root}`")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != PREPARED_FORMAT:
        raise DataError(f"{path}: not a genlab prepared dataset (expected \"format\": "
                        f"\"{PREPARED_FORMAT}\")")
    if meta.get("version") != PREPARED_VERSION:
        raise DataError(f"{path}: version {meta.get('version')!r}; this genlab reads version "
                        f"{PREPARED_VERSION}")
    missing = [k for k in ("image_shape", "dtype", "classes", "splits") if k not in meta]
    if missing:
        raise DataError(f"{path}: missing key(s) {missing}")
    if meta["dtype"] not in FILE_SUFFIX:
        raise DataError(f"{path}: dtype {meta['dtype']!r}; expected one of {list(FILE_SUFFIX)}")
    return meta



def map_images(path: Path, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """A raw image file as an array mapped from disk (as np.memmap does): copy-on-write, so the
    file is never modified, and advised for random access, since each batch reads scattered rows
    (no readahead that a set larger than memory would only evict again)."""
    with open(path, "rb") as f:
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    if hasattr(mapped, "madvise"):  # POSIX only
        mapped.madvise(mmap.MADV_RANDOM)
    return np.frombuffer(mapped, dtype).reshape(shape)



def read_split(root: Path, split: str, resolution: int = 0, channels: int = 0
               ) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """One split of a prepared folder, checked against dataset.json ('val' reads test where there
    is no val split): the (N, C, H, W) images, a memory-mapped view of the file, so indexing a
    batch reads only its rows from disk (see ``map_images``); the (N,) int64 labels; the class
    names. A non-zero ``resolution`` or ``channels`` must be what the folder was prepared at."""
    meta = read_prepared_info(root)
    splits = meta["splits"]
    name = split if split in splits else ("test" if split == "val" and "test" in splits else None)
    if name is None:
        raise DataError(f"{root} has no {split} split (prepared: {', '.join(splits)})")
    shape = tuple(meta["image_shape"])                               # (C, H, W)
    if resolution and shape[1:] != (resolution, resolution):
        raise DataError(f"{root} holds {shape[2]}x{shape[1]} images; prepare it again with "
                        f"--resolution {resolution} (or leave --resolution at 0)")
    if channels and shape[0] != channels:
        raise DataError(f"{root} holds {shape[0]}-channel images; prepare it again with "
                        f"--image-channels {channels} (or leave --image-channels at 0)")
    entry = splits[name]
    count, dtype = int(entry["count"]), np.dtype(meta["dtype"])
    images_path, labels_path = root / entry["images"], root / entry["labels"]
    expected = count * math.prod(shape) * dtype.itemsize
    if not images_path.is_file():
        raise DataError(f"{images_path}: no such file; expected {expected} bytes of {name} images")
    size = images_path.stat().st_size
    if size != expected:
        raise DataError(f"{images_path}: {size} bytes; expected {expected} ({count} images of "
                        f"{'x'.join(map(str, shape))} {dtype}), so the file is truncated or from "
                        f"another preparation; run genlab prepare again")
    try:
        labels = np.load(labels_path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise DataError(f"{labels_path}: not a readable .npy file ({err})") from None
    if labels.shape != (count,):
        raise DataError(f"{labels_path}: {labels.shape} labels; expected ({count},)")
    if count == 0:
        images = torch.empty((0, *shape), dtype=torch.from_numpy(np.empty(0, dtype)).dtype)
    else:
        images = torch.from_numpy(map_images(images_path, dtype, (count, *shape)))
    return images, torch.from_numpy(labels.astype(np.int64)), tuple(meta["classes"])

