"""The feature network of genlab's offline FID/KID: a small classifier whose penultimate features
play the role Inception-v3 plays in the standard FID, with no download.

Three sources, in this order:

1. **Shipped.** genlab ships one network per named dataset (digits, mnist, cifar10, fer2013) in
   ``genlab/featurenets/<dataset>.safetensors``, with ``<dataset>.json`` beside it: its recipe,
   the data it saw, its test accuracy, its training seconds and CPU. A named dataset at its native
   resolution and channels uses it: no training, the same features on every machine.
   ``scripts/train_feature_nets.py`` regenerates them. A stacked dataset (stacked-mnist: an
   MNIST digit per RGB channel) is read by its channels' network on each channel: the features
   side by side, the predicted class the mode (the digit triple), as the literature counts them.
2. **Trained on labels and cached**, for every other labelled dataset (an image folder with class
   folders, a prepared set, a resolution or channel override, fashion-mnist, which ships none, or
   an explicit step count other than the shipped one's): trained once on the train split and
   cached under cache_root()/feature-nets/<dataset>-<hash of the recipe>/.
3. **Trained without labels and cached**, for a dataset with one class (a flat image folder):
   the same network learns contrastively (SimCLR's NT-Xent, Chen et al. 2020): two random views
   of each image (affine warp, contrast and brightness jitter, a little noise) must find each
   other among the batch's views. Its quality check is the held-out view-matching accuracy.

Why contrastive, measured by ``benchmarks/rotation_features.py`` (labels hidden from the
label-free networks; 1,500 steps each, fp32; sklearn's digits): the supervised network has test
accuracy 0.966. Rotation prediction (Gidaris et al. 2018, which genlab used before) reaches
held-out rotation accuracy 0.668, and contrastive learning view matching 0.540 (chance 1/511).

- Class information (a probe fit on 1,500 train features, scored on 297 test ones):

  | features | linear probe | 5-NN |
  |---|---|---|
  | supervised | 0.983 | 0.993 |
  | contrastive | 0.976 | 0.993 |
  | rotation | 0.801 | 0.549 |
  | random init | 0.976 | 0.960 |

- Mode dropping (the test images of the first k classes removed, k = 0, 1, 2, 3, 5, 7, the rest
  resampled): the FID must rise with k. Spearman correlation of FID with k: supervised 1.00,
  contrastive 1.00 (FID 0.021, 0.062, 0.12, 0.16, 0.21, 0.33), rotation 0.77 (0.027, 0.11, 0.10,
  0.039, 0.93, 1.3: three dropped classes score better than one), random 0.94. Three classes
  dropped against Gaussian noise of std 0.2: FID ratio 3.4 supervised, 5.5 contrastive, 0.04
  rotation (blind to the mode dropping a generative model's score must catch).
- Pixel corruption (Gaussian noise std 0 .. 0.8, blur std 0 .. 3 px): every network's FID rises
  with the level (Spearman 0.94-1.00); the contrastive one is, by construction, nearly blind to
  noise of std 0.05 (one of its augmentations), which ties its two lowest noise levels.
- On MNIST (60,000 train images; supervised test accuracy 0.980, rotation 0.812, view matching
  0.861) both label-free networks do well and contrastive still leads: linear probe / 5-NN
  0.981 / 0.973 contrastive, 0.964 / 0.922 rotation, 0.987 / 0.984 supervised, 0.954 / 0.951
  random; Spearman(FID, classes dropped) 0.94 for both (one tie each); three classes dropped
  against noise of std 0.2: FID ratio 1.6 contrastive, 0.8 rotation, 3.3 supervised.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save

from genlab import data
from genlab.batching import epoch_batches, steps_per_epoch
from genlab.errors import ConfigError, DataError, FallbackWarning, RunError, one_line
from genlab.files import read_bytes, read_json, sha256, write_atomic, write_json
from genlab.hardware import cpu_name, native_bf16, poll_threads
from genlab.images import to_float
from genlab.models.classifier import ChannelStack, Classifier, Features

# The classifier's training recipe; part of the cache key, recorded beside the weights. Where bf16
# is native (AMX, AVX512-BF16, recent GPUs) it trains under bf16 autocast in channels-last memory:
# 2.9x (28x28) to 4.9x (48x48) faster per step than fp32 on an AMX CPU. Elsewhere it trains in
# fp32 (emulated bf16 is ~300x slower). The features are always computed in fp32.
FEATURE_NET = {"widths": [32, 64], "feature_dim": 128, "batch_size": 128, "lr": 1e-3, "seed": 0,
               "channels_last": True}
DEFAULT_STEPS = 1500  # training steps of a network that is not shipped
SHIPPED_DIR = Path(__file__).resolve().parent / "featurenets"
ROTATIONS = 4  # the label-free task: which of 0, 90, 180, 270 degrees an image was turned by
CONTRASTIVE_DIM = 64  # the contrastive network's projection (its head)
CONTRASTIVE_TEMPERATURE = 0.2


def cache_root() -> Path:
    """$GENLAB_CACHE, else .cache/genlab under the working directory (the project's cache)."""
    return Path(os.environ.get("GENLAB_CACHE", Path(".cache") / "genlab"))


def shipped_info(dataset: str) -> dict[str, Any] | None:
    """What genlab/featurenets/<dataset>.json records about the shipped network, or None when
    none is shipped for ``dataset``."""
    path = SHIPPED_DIR / f"{dataset}.json"
    if dataset not in data.DATASETS or not path.is_file():
        return None
    return read_json(path)


def _uses_shipped(dataset: str, steps: int, resolution: int, channels: int
                  ) -> dict[str, Any] | None:
    """The shipped network's info when it serves this request: a named dataset at its native
    resolution and channels, and the default (0) or the shipped step count."""
    info = shipped_info(dataset)
    if info is None or steps not in (0, info["steps"]):
        return None
    c, h, w = info["image_shape"]
    if resolution not in (0, h) or h != w or channels not in (0, c):
        return None
    return info


def _uses_channel_stack(dataset: str, steps: int, resolution: int, channels: int) -> bool:
    """Whether a stacked dataset (``data.CHANNEL_STACKS``) is asked for at its native size with
    the default steps (or its channel network's shipped count): it is then scored with that
    network on each channel, as the literature scores it."""
    if dataset not in data.CHANNEL_STACKS:
        return False
    base, count = data.CHANNEL_STACKS[dataset]
    info = shipped_info(base)
    if info is None or steps not in (0, info["steps"]):
        return False
    _, h, w = info["image_shape"]
    return resolution in (0, h) and channels in (0, count)


def channel_stack(dataset: str, device: str | torch.device = "cpu"
                  ) -> tuple[ChannelStack, dict[str, Any]]:
    """The mode classifier of a stacked dataset (``data.CHANNEL_STACKS``: Stacked MNIST): the
    shipped network of the dataset its channels come from, read on each channel
    (``models.classifier.ChannelStack``). Its features are the channels' side by side, its
    classes the modes; info["modes"] is their number, info["test_accuracy"] the chance that a
    test image's mode is right (the channels' digits are independent draws from the test split,
    so it is the per-channel accuracy cubed) and info["weights_sha1"] names the shipped weights
    read per channel."""
    if dataset not in data.CHANNEL_STACKS:
        raise ConfigError(f"{dataset!r} is not a stacked dataset; expected one of "
                          f"{sorted(data.CHANNEL_STACKS)}")
    base, count = data.CHANNEL_STACKS[dataset]
    info = shipped_info(base)
    if info is None:
        raise RunError(f"{dataset} is read per channel by the shipped {base} network, but "
                       f"{SHIPPED_DIR / (base + '.json')} is missing; the genlab installation is "
                       f"damaged: reinstall it")
    net, base_info = feature_network(base, steps=0, device=device)
    classes = len(base_info["classes"])
    _, h, w = base_info["image_shape"]
    stack = ChannelStack(net, count, classes).to(device).eval()
    modes = classes**count
    width = len(str(modes - 1))
    return stack, {**base_info, "task": "classes", "dataset": dataset, "per_channel": base,
                   "image_shape": [count, h, w], "modes": modes,
                   "classes": [f"{m:0{width}d}" for m in range(modes)],
                   "channel_test_accuracy": base_info["test_accuracy"],
                   "test_accuracy": base_info["test_accuracy"] ** count,
                   "weights_sha1": hashlib.sha1(
                       f"{base_info['weights_sha1']} per channel x{count}".encode()).hexdigest()}


def feature_network(dataset: str, data_dir: str | None = None, download: bool = True,
                    steps: int = 0, device: str | torch.device = "cpu",
                    progress: bool = False, resolution: int = 0,
                    channels: int = 0) -> tuple[Features | ChannelStack, dict[str, Any]]:
    """The network whose features the offline FID/KID use: the shipped one of a named dataset
    (``steps`` 0 or the shipped count, native size; for a stacked dataset such as
    stacked-mnist, its channel dataset's shipped network read on each channel, see
    ``channel_stack``), else one trained on the train split's
    labels (``steps`` or DEFAULT_STEPS), or contrastively (without labels) when the split has
    one class, and cached with its recipe and test accuracy. Returns (features, info);
    info["task"] is 'classes' or 'contrastive', info["classes"] the classes the head predicts
    (the projection's dimensions for 'contrastive'), info["path"] the shipped .safetensors file
    or the cache folder and info["weights_sha1"] the weights' hash (what a score's feature space
    is). A damaged cache entry is trained again, with a FallbackWarning naming the file."""
    device = torch.device(device)
    if _uses_channel_stack(dataset, steps, resolution, channels):
        return channel_stack(dataset, device)
    info = _uses_shipped(dataset, steps, resolution, channels)
    if info is not None:
        path = SHIPPED_DIR / f"{dataset}.safetensors"
        info = {**info, "path": str(path)}
        raw = read_bytes(path)  # read once: the weights and their hash
        try:
            net = _network(info, raw, path)
        except RunError as err:
            raise RunError(f"{err}; the genlab installation is damaged: reinstall it") from None
    else:
        info, net, raw = _cached_or_trained(dataset, data_dir, download, steps or DEFAULT_STEPS,
                                            device, progress, resolution, channels)
    info["weights_sha1"] = hashlib.sha1(raw).hexdigest()
    return Features(net).to(device).eval(), {"task": "classes", **info}


def _network(info: dict[str, Any], raw: bytes, path: Path) -> Classifier:
    """The classifier that ``info`` describes, with the weights in ``raw`` (the bytes of
    ``path``); anything that does not fit is a RunError naming the file."""
    try:
        net = Classifier(info["image_shape"][0], len(info["classes"]), tuple(info["widths"]),
                         info["feature_dim"])
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as err:
        where = (path.with_suffix(".json") if path.parent == SHIPPED_DIR
                 else path.parent / "info.json")
        raise RunError(f"{where}: expected the image_shape, classes, widths and feature_dim of "
                       f"a network ({one_line(err)})") from None
    try:
        net.load_state_dict(safetensors_load(raw))
    except Exception as err:  # the parser's or load_state_dict's errors, of any damage
        raise RunError(f"{path}: not the weights of the network its info describes "
                       f"({one_line(err)})") from None
    return net


def _cached(folder: Path) -> tuple[dict[str, Any], Classifier, bytes]:
    """The network cached in ``folder``: its info, checked against the size and SHA-256 of the
    weights it records, and the network; a RunError naming the file when damaged."""
    info = read_json(folder / "info.json")
    if not isinstance(info, dict):
        raise RunError(f"{folder / 'info.json'}: expected a JSON object, got "
                       f"{type(info).__name__}")
    path = folder / "weights.safetensors"
    raw = read_bytes(path)
    if "weights_sha256" in info and (len(raw) != info.get("weights_bytes")
                                     or sha256(raw) != info["weights_sha256"]):
        raise RunError(f"{path}: its size or SHA-256 differs from what info.json records (the "
                       f"file was damaged after it was written)")
    info = {**info, "path": str(folder)}
    return info, _network(info, raw, path), raw


def _cached_or_trained(dataset: str, data_dir: str | None, download: bool, steps: int,
                       device: torch.device, progress: bool, resolution: int,
                       channels: int) -> tuple[dict[str, Any], Classifier, bytes]:
    """(info, network, weights' bytes) of the cached network for this recipe, trained first
    when absent or damaged: on the labels, or contrastively when the train split has a single
    class."""
    precision = "bf16" if native_bf16(device.type) else "fp32"
    recipe = {**FEATURE_NET, "precision": precision, "steps": steps, "dataset": dataset,
              "data_dir": str(Path(data_dir).resolve()) if data_dir else None}
    recipe.update({k: v for k, v in (("resolution", resolution), ("channels", channels)) if v})
    label_free = {**recipe, "task": "contrastive"}
    folders = {"classes": _cache_folder(dataset, recipe),
               "contrastive": _cache_folder(dataset, label_free)}
    for folder in folders.values():
        if (folder / "info.json").exists() or (folder / "weights.safetensors").exists():
            try:
                return _cached(folder)
            except RunError as err:  # the cache can be made again: train it anew
                warnings.warn(f"{err}; training the feature network again", FallbackWarning,
                              stacklevel=3)
    train = data.load(dataset, "train", data_dir, download, resolution, channels)
    test = data.load(dataset, "test", data_dir, download, resolution, channels)
    if len(train.classes) >= 2:
        folder = folders["classes"]
        info = train_classifier(train, test, recipe, progress, device)
    else:
        folder = folders["contrastive"]
        info = train_contrastive_net(train, test, label_free, progress, device)
    save_network(info, folder / "weights.safetensors", folder / "info.json")
    return _cached(folder)


def _cache_folder(dataset: str, recipe: dict[str, Any]) -> Path:
    digest = hashlib.sha1(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:10]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", dataset).strip("_")
    return cache_root() / "feature-nets" / f"{slug}-{digest}"


def save_network(info: dict[str, Any], weights_path: Path, info_path: Path) -> None:
    """Write a trained network (info['net'], removed from what is recorded) as safetensors and
    its info as JSON with the weights' size and SHA-256, both atomically; the JSON last, since
    it marks the pair complete."""
    info = dict(info)
    net = info.pop("net")
    raw = safetensors_save({k: v.contiguous() for k, v in net.state_dict().items()})
    write_atomic(weights_path, raw)
    write_json(info_path, {**info, "weights_bytes": len(raw), "weights_sha256": sha256(raw)})


def rotate(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Each image x[i] (B, C, H, W) turned by k[i] quarter turns counter-clockwise (H == W)."""
    out = x.clone()
    for quarter in range(1, ROTATIONS):
        chosen = k == quarter
        if chosen.any():
            out[chosen] = torch.rot90(x[chosen], quarter, dims=(2, 3))
    return out


def train_classifier(train_data: data.ImageData, test_data: data.ImageData,
                     recipe: dict[str, Any], progress: bool = False,
                     device: str | torch.device = "cpu") -> dict[str, Any]:
    """Adam on cross-entropy with the class labels for recipe['steps'] batches; returns the info
    to record, with the trained network (fp32, CPU) under 'net'."""
    if len(train_data.classes) < 2:
        raise ConfigError(f"a class-feature network needs a labelled dataset; "
                          f"{train_data.name!r} has {len(train_data.classes)} class (genlab "
                          f"trains a contrastive network for it instead)")
    return _train(train_data, test_data, recipe, len(train_data.classes),
                  lambda x, y: (x, y), progress, torch.device(device),
                  classes=list(train_data.classes))


def train_rotation_net(train_data: data.ImageData, test_data: data.ImageData,
                       recipe: dict[str, Any], progress: bool = False,
                       device: str | torch.device = "cpu") -> dict[str, Any]:
    """A label-free feature network (Gidaris et al. 2018), which benchmarks/rotation_features.py
    measures against the contrastive one genlab uses: the same classifier learns which of four
    quarter turns each train image was given (labels are never read). Its quality check is the
    rotation accuracy on every test image in all four turns."""
    _, h, w = train_data.image_shape
    if h != w:
        raise ConfigError(f"rotation features need square images; {train_data.name!r} images are "
                          f"{w}x{h}: pass --resolution N to resize and centre-crop them")
    gen = torch.Generator().manual_seed(recipe["seed"] + 1)

    def task(x: torch.Tensor, _: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k = torch.randint(0, ROTATIONS, (x.shape[0],), generator=gen)
        return rotate(x, k), k

    return _train(train_data, test_data, recipe, ROTATIONS, task, progress,
                  torch.device(device), classes=["0", "90", "180", "270"])


def train_contrastive_net(train_data: data.ImageData, test_data: data.ImageData,
                          recipe: dict[str, Any], progress: bool = False,
                          device: str | torch.device = "cpu") -> dict[str, Any]:
    """The other label-free feature network, contrastive (SimCLR, Chen et al. 2020): the same
    classifier's head becomes a CONTRASTIVE_DIM-d projection, and NT-Xent (temperature
    CONTRASTIVE_TEMPERATURE) pulls two random views of each train image together and pushes
    the batch's other images away. A view is a random affine warp (shift up to 1/8 of the side,
    scale 0.85-1.15, rotation up to 15 degrees), a contrast and brightness jitter and a little
    noise (a mirror image too when the recipe has 'flip'). Labels are never read. Its quality
    check is the held-out view-matching accuracy: on the test split, in groups of 256 images,
    how often a view's nearest projection among the other 511 is its twin."""
    gen = torch.Generator().manual_seed(recipe["seed"] + 2)

    def task(x: torch.Tensor, _: torch.Tensor) -> tuple[torch.Tensor, None]:
        flip = recipe.get("flip", False)
        return torch.cat([random_view(x, gen, flip), random_view(x, gen, flip)]), None

    return _train(train_data, test_data, recipe, CONTRASTIVE_DIM, task, progress,
                  torch.device(device), classes=[f"z{i}" for i in range(CONTRASTIVE_DIM)],
                  criterion=lambda z, _: nt_xent(z))


def random_view(x: torch.Tensor, gen: torch.Generator, flip: bool = False) -> torch.Tensor:
    """One random view of each image of x (B, C, H, W) in [-1, 1] (see train_contrastive_net)."""
    b = x.shape[0]
    u = torch.rand(b, 6, generator=gen)
    angle = (u[:, 0] * 2 - 1) * math.radians(15)
    scale = 0.85 + 0.3 * u[:, 1]
    shift = (u[:, 2:4] * 2 - 1) * 0.25  # grid units: the side is 2, so 1/8 of it
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1),
                         torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    if flip:
        theta[:, 0, :2] *= torch.where(u[:, 4] < 0.5, -1.0, 1.0)[:, None]
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    # warp x + 1 so that the area brought in from outside is black (-1), not grey
    out = torch.nn.functional.grid_sample(x + 1, grid, align_corners=False) - 1
    contrast = 0.7 + 0.6 * torch.rand(b, 1, 1, 1, generator=gen)
    brightness = 0.2 * (torch.rand(b, 1, 1, 1, generator=gen) * 2 - 1)
    noise = 0.05 * torch.randn(x.shape, generator=gen)
    return (out * contrast + brightness + noise).clamp(-1, 1)


def nt_xent(z: torch.Tensor, temperature: float | None = None) -> torch.Tensor:
    """NT-Xent over 2B projections, rows i and i + B the two views of one image: cross-entropy
    of each row's cosine similarities to the 2B - 1 others (over ``temperature``), the twin
    being the right answer."""
    sim, twin = _twin_similarities(z)
    return torch.nn.functional.cross_entropy(sim / (temperature or CONTRASTIVE_TEMPERATURE), twin)


def _twin_similarities(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The cosine similarities of 2B projections (rows i and i + B two views of one image), each
    row's similarity to itself set to -inf, and the index of each row's twin."""
    z = torch.nn.functional.normalize(z, dim=1)
    n = z.shape[0] // 2
    sim = z @ z.T
    sim.fill_diagonal_(float("-inf"))
    return sim, torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)


def _train(train_data: data.ImageData, test_data: data.ImageData, recipe: dict[str, Any],
           num_classes: int, task, progress: bool, device: torch.device,
           classes: list[str], criterion=None) -> dict[str, Any]:
    """Adam for recipe['steps'] batches on ``device`` (under the recipe's precision and memory
    format) on what ``task(x, labels) -> (inputs, targets)`` makes of each batch, with the loss
    ``criterion(outputs, targets)`` (default: cross-entropy); returns the info to record (test
    accuracy of the fp32 network on the same task) with the network under 'net'."""
    if len(test_data) == 0:
        raise DataError(f"{test_data.name!r} has no {test_data.split} images to check the feature "
                        f"network on")
    start = time.perf_counter()
    gen = torch.Generator().manual_seed(recipe["seed"])
    torch.manual_seed(recipe["seed"])
    net = Classifier(train_data.image_shape[0], num_classes, tuple(recipe["widths"]),
                     recipe["feature_dim"])
    fmt = torch.channels_last if recipe["channels_last"] else torch.contiguous_format
    net = net.to(device, memory_format=fmt)
    bf16 = recipe["precision"] == "bf16"
    opt = torch.optim.Adam(net.parameters(), lr=recipe["lr"])
    # optional (recorded in the recipe when used): cosine decay of the learning rate to 0, and
    # random horizontal flips for datasets whose classes are mirror-symmetric (CIFAR-10, faces)
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, recipe["steps"])
             if recipe.get("cosine") else None)
    n, batch_size = len(train_data), recipe["batch_size"]
    per_epoch = steps_per_epoch(n, batch_size)
    batches: list[torch.Tensor] = []
    for step in range(recipe["steps"]):
        poll_threads()
        epoch, i = divmod(step, per_epoch)
        if i == 0:
            batches = epoch_batches(n, batch_size, recipe["seed"], epoch)
        idx = batches[i]
        x = to_float(train_data.images[idx])
        # small random shifts (pad 2, crop) keep the features from memorising the split
        x = torch.nn.functional.pad(x, (2, 2, 2, 2), value=-1.0)
        dy, dx = torch.randint(0, 5, (2,), generator=gen).tolist()
        x = x[:, :, dy:dy + train_data.image_shape[1], dx:dx + train_data.image_shape[2]]
        if recipe.get("flip"):
            mirrored = torch.rand(len(x), generator=gen) < 0.5
            x = torch.where(mirrored[:, None, None, None], x.flip(3), x)
        x, target = task(x, train_data.labels[idx])
        x = x.to(device).contiguous(memory_format=fmt)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            outputs = net(x)
        target = None if target is None else target.to(device)
        loss = (criterion or torch.nn.functional.cross_entropy)(outputs.float(), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        if progress and (step + 1) % 100 == 0:
            print(f"feature network: step {step + 1}/{recipe['steps']}, loss {loss.item():.3f}",
                  flush=True)
    net = net.to("cpu", memory_format=torch.contiguous_format).eval()  # autocast kept it fp32
    accuracy = held_out_accuracy(net, test_data, recipe.get("task", "classes"))
    return {**recipe, "test_accuracy": accuracy, "num_train": n, "num_test": len(test_data),
            "image_shape": list(train_data.image_shape), "classes": classes,
            "train_seconds": round(time.perf_counter() - start, 1), "device": device.type,
            "cpu": cpu_name(), "net": net}


@torch.no_grad()
def held_out_accuracy(net: Classifier, test_data: data.ImageData, task: str = "classes") -> float:
    """Accuracy of the fp32 network on the test split: its classes, (task 'rotation') the
    quarter turn of every test image in each of the four turns, or (task 'contrastive') the
    view matching of train_contrastive_net."""
    correct = total = 0
    if task == "contrastive":
        gen = torch.Generator().manual_seed(0)
        for images in test_data.images.split(256):
            x = to_float(images)
            sim, twin = _twin_similarities(net(torch.cat([random_view(x, gen),
                                                          random_view(x, gen)])))
            correct += int((sim.argmax(1) == twin).sum())
            total += len(twin)
        return correct / total
    for images, labels in zip(test_data.images.split(1000), test_data.labels.split(1000)):
        x = to_float(images)
        turns = range(ROTATIONS) if task == "rotation" else [None]
        for k in turns:
            target = labels if k is None else torch.full((len(x),), k)
            xk = x if k is None else torch.rot90(x, k, dims=(2, 3))
            correct += int((net(xk).argmax(1) == target).sum())
            total += len(x)
    return correct / total
