"""Datasets by name: each split as one integer tensor, in memory or memory-mapped.

Every loader returns an ``ImageData``: ``images`` (N, C, H, W) uint8 (uint16 for image folders of
16-bit files) and ``labels`` (N,) int64. The named sets (DATASETS: scikit-learn's digits,
torchvision's MNIST, Fashion-MNIST and CIFAR-10, the FER2013 CSV, Stacked MNIST) load from their
files; ``folder:PATH`` reads images as users keep them, a flat folder (unlabelled) or one
subfolder per class, optionally under train/ test/ split folders; ``resolution`` and ``channels``
resize, centre-crop and convert every dataset (``conform``). ``prepare`` converts any of these
once into the prepared format of ``genlab.prepared``, which ``prepared:DIR`` maps from disk.

No per-item DataLoader on the hot path: the training loop indexes the one tensor by the seeded
batches of ``genlab.batching``, several times faster than decoding items one by one, and
converts each batch to [-1, 1] with ``genlab.images``.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from genlab import prepared
from genlab.config import BaseConfig
from genlab.errors import ConfigError, DataError
from genlab.images import WHITE, WHITE_8, white_level

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
SPLITS = ("train", "test", "val")
SPLIT_FOLDERS = {"train": ("train",), "test": ("test",), "val": ("val", "valid", "validation")}
UNLABELLED = "unlabelled"  # the one class of a flat image folder
FER_USAGE = {"Training": "train", "PublicTest": "test", "PrivateTest": "val"}
FER_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                 "truck")


@dataclass
class ImageData:
    """One split of a dataset: in memory, or memory-mapped from a prepared folder."""

    images: torch.Tensor  # (N, C, H, W) uint8 0..255 (uint16 0..65535 for 16-bit image files)
    labels: torch.Tensor  # (N,) int64
    classes: tuple[str, ...]
    name: str
    split: str
    memory_mapped: bool = False  # images read from disk row by row: keep them on the CPU

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)


def default_data_dir() -> Path:
    """Where datasets live unless ``data_dir`` is given: $GENLAB_DATA or ~/.cache/genlab/data."""
    return Path(os.environ.get("GENLAB_DATA", Path.home() / ".cache" / "genlab" / "data"))


def load(name: str, split: str = "train", data_dir: str | Path | None = None,
         download: bool = True, resolution: int = 0, channels: int = 0) -> ImageData:
    """Load one split of a dataset by name (see DATASETS), ``folder:PATH`` or ``prepared:DIR``
    (a folder holding dataset.json is read as prepared), every image resized and centre-cropped
    to ``resolution`` x ``resolution`` and converted to ``channels`` (1 grey, 3 RGB) when those
    are non-zero."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
    check_target(resolution, channels)
    if name.startswith("prepared:"):
        return _load_prepared(Path(name[len("prepared:"):]), split, resolution, channels)
    if name.startswith("folder:"):
        root = Path(name[len("folder:"):])
        if (root / "dataset.json").is_file():
            return _load_prepared(root, split, resolution, channels)
        return _load_folder_dataset(root, split, resolution, channels)
    if name not in DATASETS:
        raise DataError(
            f"unknown dataset {name!r}; expected one of {sorted(DATASETS)}, folder:PATH or "
            "prepared:DIR"
        )
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    split_data = DATASETS[name](root, split, download)
    if resolution or channels:
        split_data.images = torch.cat([conform(chunk, resolution, channels)
                                       for chunk in split_data.images.split(prepared.CHUNK)])
    return split_data


def _load_prepared(root: Path, split: str, resolution: int, channels: int) -> ImageData:
    """One split of a prepared folder (see ``prepared.read_split``), memory-mapped."""
    images, labels, classes = prepared.read_split(root, split, resolution, channels)
    return ImageData(images, labels, classes, f"prepared:{root}", split, memory_mapped=True)


def check_target(resolution: int, channels: int) -> None:
    """ConfigError unless resolution >= 0 and channels is 0, 1 or 3."""
    if resolution < 0:
        raise ConfigError(f"resolution must be >= 0 (0 keeps the images' size), got {resolution}")
    if channels not in (0, 1, 3):
        raise ConfigError(f"channels must be 0 (keep), 1 (grey) or 3 (RGB), got {channels}")


def load_split(cfg: BaseConfig, split: str) -> ImageData:
    """One split of a run's dataset, as its config says: data_dir, download, resolution and
    image_channels."""
    return load(cfg.dataset, split, cfg.data_dir, cfg.download, resolution=cfg.resolution,
                channels=cfg.image_channels)


def stored_dtype(info: dict[str, Any]) -> torch.dtype:
    """The depth a run's training images were stored at, from its data info (data.json):
    torch.uint16 for 16-bit image files, else torch.uint8 (also for runs that predate the key)."""
    name = info.get("dtype", "uint8")
    if name not in prepared.FILE_SUFFIX:
        raise DataError(f"unknown image dtype {name!r} in the run's data info; expected one of "
                        f"{sorted(prepared.FILE_SUFFIX)}")
    return getattr(torch, name)


def convert_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, channels, H, W): grey is copied into R, G and B; RGB becomes grey by
    ITU-R 601-2 luma (PIL's L = 0.299 R + 0.587 G + 0.114 B), rounded. 0 keeps the images."""
    have = images.shape[1]
    if channels in (0, have):
        return images
    if have == 1:
        return images.expand(-1, channels, -1, -1).contiguous()
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    grey = (images.to(torch.float32) * luma).sum(1, keepdim=True)
    return grey.round_().clamp_(0, white_level(images.dtype)).to(images.dtype)


def resize_crop(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, resolution, resolution): the shorter side resized to
    ``resolution`` (bilinear, antialiased when shrinking), then the centre cropped; same dtype,
    rounded. 0 keeps the images."""
    height, width = images.shape[-2:]
    if resolution == 0 or height == width == resolution:
        return images
    scale = resolution / min(height, width)
    size = (max(resolution, round(height * scale)), max(resolution, round(width * scale)))
    x = F.interpolate(images.to(torch.float32), size=size, mode="bilinear", antialias=True,
                      align_corners=False)
    top, left = (size[0] - resolution) // 2, (size[1] - resolution) // 2
    x = x[..., top:top + resolution, left:left + resolution]
    return x.round_().clamp_(0, white_level(images.dtype)).to(images.dtype).contiguous()


def conform(images: torch.Tensor, resolution: int, channels: int) -> torch.Tensor:
    """``convert_channels`` then ``resize_crop``: what ``resolution`` and ``channels`` do."""
    return resize_crop(convert_channels(images, channels), resolution)


# --- loaders -----------------------------------------------------------------------------------


def _load_digits(root: Path, split: str, download: bool) -> ImageData:
    """scikit-learn's bundled 8x8 digits (1,797 images); 0..16 maps to 0..255. Needs no files.

    A fixed permutation puts 1,500 images in train and 297 in test (val is the test split).
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.rint(bunch.images * (WHITE_8 / 16.0)).astype(np.uint8)[:, None]  # (1797, 1, 8, 8)
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
            if pixels.min() < 0 or pixels.max() > WHITE_8:
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
                arr = np.array(im, dtype=np.int64).clip(0, WHITE[torch.uint16]).astype(np.uint16)
            elif im.mode in ("L", "RGB"):
                arr = np.array(im)
            elif im.mode in ("1", "LA"):
                arr = np.array(im.convert("L"))
            else:
                arr = np.array(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DataError(f"{path}: not a readable image ({err})") from None
    return arr[:, :, None] if arr.ndim == 2 else arr


def _visible(path: Path, root: Path) -> bool:
    """False for hidden files and anything inside a hidden folder below ``root``."""
    return not any(part.startswith(".") for part in path.relative_to(root).parts)


def _image_files(folder: Path, recursive: bool) -> list[Path]:
    """The image files in ``folder`` (and its subfolders when ``recursive``), sorted; any other
    visible file is an error naming it."""
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    files = sorted(p for p in candidates if p.is_file() and _visible(p, folder))
    for p in files:
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            raise DataError(f"{p}: not an image file (expected one of {sorted(IMAGE_SUFFIXES)})")
    return files


def _folder_split(root: Path, split: str) -> tuple[list[tuple[Path, int]], tuple[str, ...]]:
    """The (file, label) pairs of one split of an image folder, and its class names.

    ``root`` holds images directly (one class, ``unlabelled``) or one subfolder per class, whose
    images may sit in deeper subfolders; either layout may sit under train/ test/ (val/) split
    folders. Class names are those of every split folder, so labels agree across splits. Without
    split folders, every tenth image (in sorted order) forms the test split.
    """
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist")
    split_dirs = {s: next((root / f for f in folders if (root / f).is_dir()), None)
                  for s, folders in SPLIT_FOLDERS.items()}
    has_splits = split_dirs["train"] is not None or split_dirs["test"] is not None
    base = root
    if has_splits:
        base = split_dirs[split] or (split_dirs["test"] if split == "val" else None)
        if base is None:
            raise DataError(f"image folder {root} has no {split}/ subfolder")
    bases = [d for d in split_dirs.values() if d is not None] if has_splits else [root]
    classes = tuple(sorted({p.name for b in bases for p in b.iterdir()
                            if p.is_dir() and not p.name.startswith(".")}))
    if classes:
        # other files beside the class folders (a README, a labels.csv) are not images: ignored
        loose = sorted(p for p in base.iterdir() if p.is_file() and _visible(p, base)
                       and p.suffix.lower() in IMAGE_SUFFIXES)
        if loose:
            raise DataError(f"{loose[0]}: an image beside the class folders of {base}; move it "
                            f"into a class folder (or every image out of them, for an unlabelled "
                            f"set)")
        files = [(p, label) for label, name in enumerate(classes) if (base / name).is_dir()
                 for p in _image_files(base / name, recursive=True)]
    else:
        classes = (UNLABELLED,)
        files = [(p, 0) for p in _image_files(base, recursive=False)]
    if not files:
        raise DataError(f"image folder {base} contains no images; expected them directly in it "
                        f"(unlabelled) or in one subfolder per class")
    if not has_splits:
        files = [f for i, f in enumerate(files) if (i % 10 == 9) == (split != "train")]
        if not files:
            raise DataError(f"image folder {base} has too few images for a {split} split")
    return files, classes


def _describe(image: torch.Tensor, depth: np.dtype) -> str:
    kind = {1: "grey", 3: "RGB"}.get(image.shape[1], f"{image.shape[1]}-channel")
    return f"{8 * depth.itemsize}-bit {kind}"


def read_folder_images(files: Iterable[Path], resolution: int = 0,
                       channels: int = 0) -> Iterator[np.ndarray]:
    """Each image file as a (C, H, W) array, conformed to ``resolution`` and ``channels``; the
    first image sets the size, mode and bit depth that every later one must share (a DataError
    names the first that does not, and the flag that would reconcile them)."""
    first: tuple[Path, torch.Size, str] | None = None
    for path in files:
        arr = read_image(path)                                       # (H, W, C) uint8 or uint16
        image = conform(torch.from_numpy(arr).permute(2, 0, 1)[None], resolution, channels)
        mode = _describe(image, arr.dtype)
        if first is None:
            first = (path, image.shape, mode)
        elif mode != first[2]:
            fix = ("convert the files to one bit depth" if image.shape[1] == first[1][1]
                   else "pass --image-channels 1 or 3 to convert every image")
            raise DataError(f"{path}: {mode} image; expected {first[2]} like {first[0]}; {fix}")
        elif image.shape[-2:] != first[1][-2:]:
            (h, w), (h0, w0) = image.shape[-2:], first[1][-2:]
            raise DataError(f"{path}: image is {w}x{h}; expected {w0}x{h0} like {first[0]}; "
                            f"pass --resolution N to resize and centre-crop every image to NxN")
        yield image[0].numpy()


def _load_folder_dataset(root: Path, split: str, resolution: int = 0,
                         channels: int = 0) -> ImageData:
    """One split of an image folder (see ``_folder_split``) in memory; 16-bit files stay uint16."""
    files, classes = _folder_split(root, split)
    images = None
    for i, image in enumerate(read_folder_images((p for p, _ in files), resolution, channels)):
        if images is None:
            images = np.empty((len(files), *image.shape), image.dtype)
        images[i] = image
    labels = torch.tensor([label for _, label in files], dtype=torch.int64)
    return ImageData(torch.from_numpy(images), labels, classes, f"folder:{root}", split)


# --- prepared datasets: any source converted once into genlab.prepared's format --------------


def prepare(source: str, out: str | Path, data_dir: str | Path | None = None,
            download: bool = True, resolution: int = 0, channels: int = 0,
            progress: bool = False) -> dict[str, Any]:
    """Convert a dataset (a name or ``folder:PATH``) once into ``out``: {split}.u8, the raw
    (N, C, H, W) uint8 images in row order ({split}.u16 for 16-bit files), {split}.labels.npy
    and dataset.json (``prepared.write_prepared``); returns what dataset.json holds. An image
    folder is converted ``prepared.CHUNK`` images at a time, never held whole in memory.
    ``load("prepared:OUT")`` then maps the files."""
    check_target(resolution, channels)
    out = Path(out)
    if (out / "dataset.json").exists():
        raise DataError(f"{out / 'dataset.json'} exists; {out} already holds a prepared dataset "
                        f"(remove it or choose another --out)")
    if source.startswith("prepared:"):
        raise DataError(f"{source} is prepared already; pass its source (a dataset name or "
                        f"folder:PATH) to prepare it again")
    splits: dict[str, tuple[Iterable[np.ndarray], np.ndarray, int]] = {}
    classes: tuple[str, ...] = ()
    folder = Path(source[len("folder:"):]) if source.startswith("folder:") else None
    for split in ("train", "test"):
        if folder is not None:
            if split == "test" and not _folder_has_split(folder, split):
                continue
            files, classes = _folder_split(folder, split)
            images = read_folder_images((p for p, _ in files), resolution, channels)
            labels = np.array([label for _, label in files], dtype=np.int64)
            splits[split] = (prepared.chunks(images), labels, len(files))
        else:
            split_data = load(source, split, data_dir, download, resolution, channels)
            classes = split_data.classes
            splits[split] = ((c.numpy() for c in split_data.images.split(prepared.CHUNK)),
                             split_data.labels.numpy(), len(split_data))
    return prepared.write_prepared(out, splits, classes, source, resolution, channels,
                                   progress)


def _folder_has_split(root: Path, split: str) -> bool:
    """Whether ``_folder_split(root, split)`` has a split to read (flat folders always do)."""
    folders = [root / f for f in (*SPLIT_FOLDERS["train"], *SPLIT_FOLDERS["test"])]
    if not any(f.is_dir() for f in folders):
        return True
    return any((root / f).is_dir() for f in SPLIT_FOLDERS[split])


# --- Stacked MNIST: a dataset of 1,000 known modes, for measuring mode collapse ------------------

STACKED_MNIST_SIZES = {"train": 60_000, "test": 10_000, "val": 10_000}
STACKED_MNIST_SEEDS = {"train": 0, "test": 1, "val": 1}  # val is the test split, as for MNIST


def stack_channels(images: torch.Tensor, labels: torch.Tensor, n: int, seed: int,
                   channels: int = 3, num_classes: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images of ``channels`` channels, each channel one grey image of ``images``
    (M, 1, H, W) drawn uniformly at random (with replacement; a torch generator seeded with
    ``seed``), and each image's mode: the channels' labels read as the digits of a number in
    base ``num_classes``, the first channel the most significant (red 3, green 0, blue 7 is mode
    307). Returns (n, channels, H, W) images and (n,) modes in 0..num_classes**channels - 1."""
    if images.ndim != 4 or images.shape[1] != 1:
        raise DataError(f"stacking needs grey (M, 1, H, W) images, got shape "
                        f"{tuple(images.shape)}")
    if len(images) == 0:
        raise DataError("stacking needs at least one image to draw from, got none")
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, len(images), (n, channels), generator=gen)   # (n, channels)
    stacked = images[:, 0][idx]                                          # (n, channels, H, W)
    place = num_classes ** torch.arange(channels - 1, -1, -1)            # (100, 10, 1)
    return stacked.contiguous(), (labels[idx] * place).sum(1)


def _load_stacked_mnist(root: Path, split: str, download: bool) -> ImageData:
    """Stacked MNIST (Metz et al. 2017, Unrolled GAN; Srivastava et al. 2017, VEEGAN; Lin et al.
    2018, PacGAN): three MNIST digits drawn at random, one per RGB channel, 28x28x3; its 1,000
    modes are the digit triples, and an image's label is its mode, 100 * red + 10 * green + blue
    digit. Built from the MNIST files (torchvision layout, under ``root``) on every load, the
    same on every machine: 60,000 train images from MNIST's train split (seed 0) and 10,000
    test images from its test split (seed 1). The modes are as frequent as MNIST's digits make
    them (each 0.07%-0.14%), near the uniform 0.1% that the KL of the literature compares with."""
    digits = DATASETS["mnist"](root, split, download)
    images, modes = stack_channels(digits.images, digits.labels, STACKED_MNIST_SIZES[split],
                                   STACKED_MNIST_SEEDS[split])
    return ImageData(images, modes, tuple(f"{m:03d}" for m in range(1000)), "stacked-mnist",
                     split)


DATASETS: dict[str, Callable[[Path, str, bool], ImageData]] = {
    "digits": _load_digits,
    "mnist": _torchvision("MNIST", "mnist", "torchvision downloads it with --download"),
    "fashion-mnist": _torchvision("FashionMNIST", "fashion-mnist",
                                  "torchvision downloads it with --download"),
    "cifar10": _load_cifar10,
    "fer2013": _load_fer2013,
    "stacked-mnist": _load_stacked_mnist,
}
# datasets whose images stack one image of another named dataset per channel: their modes are
# the combinations of that dataset's classes, read per channel by its feature classifier
# (that dataset, the number of channels)
CHANNEL_STACKS = {"stacked-mnist": ("mnist", 3)}
