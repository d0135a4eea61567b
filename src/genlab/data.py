"""Datasets held in memory as one uint8 tensor per split; batches drawn by seeded index.

Every loader returns an ``ImageData``: ``images`` (N, C, H, W) uint8 and ``labels`` (N,) int64.
Batches are float in [-1, 1], converted per batch by ``to_float``. The image ranges are defined
here and nowhere else: ``to_float`` / ``to_uint8`` (uint8 <-> [-1, 1]) and ``to_unit`` /
``from_unit`` ([-1, 1] <-> [0, 1]). No per-item DataLoader on the hot path: indexing one
in-memory tensor is several times faster than decoding items one by one.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from genlab.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
SPLITS = ("train", "test", "val")
FER_USAGE = {"Training": "train", "PublicTest": "test", "PrivateTest": "val"}
FER_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                 "truck")


@dataclass
class ImageData:
    """One split of a dataset, in memory."""

    images: torch.Tensor  # (N, C, H, W) uint8, 0..255
    labels: torch.Tensor  # (N,) int64
    classes: tuple[str, ...]
    name: str
    split: str

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]


def default_data_dir() -> Path:
    """Where datasets live unless ``data_dir`` is given: $GENLAB_DATA or ~/.cache/genlab/data."""
    return Path(os.environ.get("GENLAB_DATA", Path.home() / ".cache" / "genlab" / "data"))


def load(name: str, split: str = "train", data_dir: str | Path | None = None,
         download: bool = True) -> ImageData:
    """Load one split of a dataset by name (see DATASETS, plus ``folder:PATH``)."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
    if name.startswith("folder:"):
        return _load_folder_dataset(Path(name[len("folder:"):]), split)
    if name not in DATASETS:
        raise DataError(
            f"unknown dataset {name!r}; expected one of {sorted(DATASETS)} or folder:PATH"
        )
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    return DATASETS[name](root, split, download)


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 -> float32 in [-1, 1]."""
    return x.to(torch.float32).div_(127.5).sub_(1.0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float in [-1, 1] -> uint8 0..255 (values outside the range are clipped, then rounded)."""
    return ((x.detach().float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """float in [-1, 1] -> [0, 1] (Bernoulli means, probabilities)."""
    return (x + 1) / 2


def from_unit(p: torch.Tensor) -> torch.Tensor:
    """float in [0, 1] -> [-1, 1]."""
    return p * 2 - 1


def bernoulli_targets(images: torch.Tensor, binarize: bool, seed: int = 0) -> torch.Tensor:
    """uint8 images -> Bernoulli targets in [0, 1] for a VAE likelihood: the grey levels, or one
    fixed binarisation drawn with ``seed`` (every evaluation then scores the same binary set)."""
    x01 = to_unit(to_float(images))
    if binarize:
        x01 = torch.bernoulli(x01, generator=torch.Generator().manual_seed(seed))
    return x01


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, rank: int = 0,
                  world_size: int = 1) -> list[torch.Tensor]:
    """Index batches of one epoch: a permutation seeded by (seed, epoch), sharded across ranks.

    Depending only on (seed, epoch) makes a resumed run draw exactly the batches it would have
    drawn uninterrupted, with no sampler state to save.
    """
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(n, generator=gen)
    if world_size > 1:
        perm = perm[: n - n % world_size][rank::world_size]
    return list(perm.split(batch_size))


def steps_per_epoch(n: int, batch_size: int, world_size: int = 1) -> int:
    return math.ceil((n // world_size if world_size > 1 else n) / batch_size)


# --- loaders -----------------------------------------------------------------------------------


def _load_digits(root: Path, split: str, download: bool) -> ImageData:
    """scikit-learn's bundled 8x8 digits (1,797 images); 0..16 maps to 0..255. Needs no files.

    A fixed permutation puts 1,500 images in train and 297 in test (val is the test split).
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # (1797, 1, 8, 8)
    perm = np.random.default_rng(0).permutation(len(images))
    idx = perm[:1500] if split == "train" else perm[1500:]
    return ImageData(torch.from_numpy(images[idx].copy()), torch.from_numpy(bunch.target[idx]),
                     tuple(str(i) for i in range(10)), "digits", split)


def _torchvision(cls_name: str, dataset: str, how: str) -> Callable[[Path, str, bool], ImageData]:
    def loader(root: Path, split: str, download: bool) -> ImageData:
        import torchvision

        cls = getattr(torchvision.datasets, cls_name)
        train = split == "train"
        try:
            ds = cls(str(root), train=train, download=False)
        except RuntimeError:
            if not download:
                raise DataError(
                    f"{dataset} files not found under {root / cls_name}; {how} "
                    f"(or pass --data-dir to the folder that holds {cls_name}/, or --download)"
                ) from None
            try:
                ds = cls(str(root), train=train, download=True)
            except Exception as err:  # network errors come in many types
                raise DataError(
                    f"{dataset} files not found under {root / cls_name} and the download failed "
                    f"({type(err).__name__}: {err}); {how}"
                ) from None
        images = ds.data if isinstance(ds.data, torch.Tensor) else torch.from_numpy(ds.data)
        images = images[:, None] if images.ndim == 3 else images.permute(0, 3, 1, 2)
        labels = torch.as_tensor(ds.targets, dtype=torch.int64)
        return ImageData(images.contiguous(), labels, tuple(ds.classes), dataset, split)

    return loader


def _load_cifar10(root: Path, split: str, download: bool) -> ImageData:
    """CIFAR-10: torchvision's python batches, or an image-folder copy (``train/<class>/*.png``)."""
    if (root / "train").is_dir() and not (root / "cifar-10-batches-py").exists():
        data = _load_folder_dataset(root, split)
        data.name = "cifar10"
        return data
    return _torchvision("CIFAR10", "cifar10", "torchvision downloads it with --download")(
        root, split, download
    )


def _load_fer2013(root: Path, split: str, download: bool) -> ImageData:
    """FER2013 from the Kaggle CSV (columns emotion, pixels, Usage; 48x48 grey faces)."""
    candidates = [root] if root.suffix == ".csv" else [
        root / "fer2013.csv", root / "icml_face_data.csv", root / "fer2013" / "fer2013.csv",
    ]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise DataError(
            f"fer2013 CSV not found (looked for {', '.join(str(p) for p in candidates)}); download "
            "fer2013.csv from https://www.kaggle.com/datasets/deadskull7/fer2013 (or the "
            "challenge's icml_face_data.csv) and pass --data-dir to its folder"
        )
    return read_fer_csv(path, split)


def read_fer_csv(path: Path, split: str) -> ImageData:
    """Parse a Kaggle FER2013 CSV, keeping the rows whose Usage maps to ``split``."""
    wanted = [usage for usage, s in FER_USAGE.items() if s == split]
    images, labels, side = [], [], None
    with open(path, newline="") as f:
        reader = csv.reader(f)
        try:
            header = [h.strip().lower() for h in next(reader)]
        except StopIteration:
            raise DataError(f"{path}: empty file; expected a header emotion,pixels,Usage") from None
        missing = [c for c in ("emotion", "pixels", "usage") if c not in header]
        if missing:
            raise DataError(f"{path}: missing column(s) {missing}; expected emotion,pixels,Usage, "
                            f"found {header}")
        col_e, col_p, col_u = (header.index(c) for c in ("emotion", "pixels", "usage"))
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) <= max(col_e, col_p, col_u):
                raise DataError(f"{path} line {line}: {len(row)} fields; expected {len(header)}")
            usage = row[col_u].strip()
            if usage not in FER_USAGE:
                raise DataError(f"{path} line {line}: Usage {usage!r}; expected one of "
                                f"{list(FER_USAGE)}")
            if usage not in wanted:
                continue
            try:
                pixels = np.array(row[col_p].split(), dtype=np.int32)
                label = int(row[col_e])
            except ValueError:
                raise DataError(f"{path} line {line}: non-integer emotion or pixel value") from None
            n = pixels.size
            s = math.isqrt(n)
            if s * s != n or n == 0:
                raise DataError(f"{path} line {line}: {n} pixels is not a square image "
                                "(expected 2304 = 48x48)")
            if side is None:
                side = s
            elif s != side:
                raise DataError(f"{path} line {line}: {s}x{s} image; "
                                f"earlier rows are {side}x{side}")
            if pixels.min() < 0 or pixels.max() > 255:
                raise DataError(f"{path} line {line}: pixel values must be 0..255, found "
                                f"{pixels.min()}..{pixels.max()}")
            if not 0 <= label < len(FER_CLASSES):
                raise DataError(f"{path} line {line}: emotion {label}; expected 0..6")
            images.append(pixels.astype(np.uint8).reshape(1, s, s))
            labels.append(label)
    if not images:
        raise DataError(f"{path}: no rows with Usage {wanted} (the {split!r} split)")
    return ImageData(torch.from_numpy(np.stack(images)), torch.tensor(labels, dtype=torch.int64),
                     FER_CLASSES, "fer2013", split)


def read_image(path: str | Path) -> np.ndarray:
    """One image file -> (H, W, C) array, uint8 or uint16 as stored; a clear error otherwise."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.array(im, dtype=np.int64).clip(0, 65535).astype(np.uint16)
            elif im.mode in ("L", "RGB"):
                arr = np.array(im)
            elif im.mode == "LA":
                arr = np.array(im.convert("L"))
            else:
                arr = np.array(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DataError(f"{path}: not a readable image ({err})") from None
    return arr[:, :, None] if arr.ndim == 2 else arr


def _load_folder_dataset(root: Path, split: str) -> ImageData:
    """Images in one subfolder per class; ``root/<split>/<class>/`` when split folders exist.

    Without split folders, every tenth image (in sorted order) forms the test split.
    """
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist")
    split_names = {"train": ["train"], "test": ["test"], "val": ["val", "valid", "validation"]}
    has_splits = any((root / s).is_dir() for s in ("train", "test"))
    base = root
    if has_splits:
        base = next((root / s for s in split_names[split] if (root / s).is_dir()), None)
        if base is None:
            if split == "val":
                base = root / "test"
            else:
                raise DataError(f"image folder {root} has no {split}/ subfolder")
    class_dirs = sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DataError(f"image folder {base} has no class subfolders; expected "
                        f"{base}/<class>/<image>.png")
    files: list[tuple[Path, int]] = []
    for label, d in enumerate(class_dirs):
        for p in sorted(d.iterdir()):
            if p.name.startswith(".") or p.is_dir():
                continue
            if p.suffix.lower() not in IMAGE_SUFFIXES:
                raise DataError(f"{p}: not an image file (expected one of "
                                f"{sorted(IMAGE_SUFFIXES)})")
            files.append((p, label))
    if not files:
        raise DataError(f"image folder {base} contains no images")
    if not has_splits:
        files = [f for i, f in enumerate(files) if (i % 10 == 9) == (split != "train")]
        if not files:
            raise DataError(f"image folder {base} has too few images for a {split} split")
    arrays = []
    first_shape = None
    for p, _ in files:
        arr = read_image(p)
        if arr.dtype != np.uint8:
            arr = (arr.astype(np.float64) / 257.0).round().astype(np.uint8)
        if first_shape is None:
            first_shape = arr.shape
        if arr.shape[:2] != first_shape[:2]:
            raise DataError(f"{p}: image is {arr.shape[1]}x{arr.shape[0]}; expected "
                            f"{first_shape[1]}x{first_shape[0]} like {files[0][0]}")
        arrays.append(arr)
    channels = max(a.shape[2] for a in arrays)
    arrays = [np.repeat(a, channels, axis=2) if a.shape[2] != channels else a for a in arrays]
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    labels = torch.tensor([label for _, label in files], dtype=torch.int64)
    return ImageData(images, labels, tuple(d.name for d in class_dirs), f"folder:{root}", split)


DATASETS: dict[str, Callable[[Path, str, bool], ImageData]] = {
    "digits": _load_digits,
    "mnist": _torchvision("MNIST", "mnist", "torchvision downloads it with --download"),
    "fashion-mnist": _torchvision("FashionMNIST", "fashion-mnist",
                                  "torchvision downloads it with --download"),
    "cifar10": _load_cifar10,
    "fer2013": _load_fer2013,
}
