"""The feature network of genlab's offline FID/KID: a small classifier trained once per dataset on
its labelled train split, cached with its recipe and test accuracy (the role Inception-v3 plays in
the standard FID, with no download)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from genlab import data
from genlab.errors import ConfigError
from genlab.files import read_json, write_file_atomic, write_json
from genlab.hardware import native_bf16
from genlab.models.classifier import Classifier, Features

# The classifier's training recipe; part of the cache key, recorded beside the weights. Where bf16
# is native (AMX, AVX512-BF16, recent GPUs) it trains under bf16 autocast in channels-last memory:
# 2.9x (28x28) to 4.9x (48x48) faster per step than fp32 on an AMX CPU. Elsewhere it trains in
# fp32 (emulated bf16 is ~300x slower). The features are always computed in fp32.
FEATURE_NET = {"widths": [32, 64], "feature_dim": 128, "batch_size": 128, "lr": 1e-3, "seed": 0,
               "channels_last": True}


def cache_root() -> Path:
    """$GENLAB_CACHE, else .cache/genlab under the working directory (the project's cache)."""
    return Path(os.environ.get("GENLAB_CACHE", Path(".cache") / "genlab"))


def feature_network(dataset: str, data_dir: str | None = None, download: bool = True,
                    steps: int = 1500, device: str | torch.device = "cpu",
                    progress: bool = False, resolution: int = 0,
                    channels: int = 0) -> tuple[Features, dict[str, Any]]:
    """The classifier whose features the offline FID/KID use, trained once on the dataset's
    labelled train split and cached (weights + info.json with its recipe and test accuracy)
    under cache_root()/feature-nets/<dataset>-<hash of the recipe>/."""
    device = torch.device(device)
    precision = "bf16" if native_bf16(device.type) else "fp32"
    recipe = {**FEATURE_NET, "precision": precision, "steps": steps, "dataset": dataset,
              "data_dir": str(Path(data_dir).resolve()) if data_dir else None}
    recipe.update({k: v for k, v in (("resolution", resolution), ("channels", channels)) if v})
    digest = hashlib.sha1(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:10]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", dataset).strip("_")
    folder = cache_root() / "feature-nets" / f"{slug}-{digest}"
    if (folder / "info.json").is_file():
        info = read_json(folder / "info.json")
    else:
        info = _train_feature_network(data.load(dataset, "train", data_dir, download,
                                                resolution, channels),
                                      data.load(dataset, "test", data_dir, download,
                                                resolution, channels),
                                      recipe, folder, progress, device)
    net = Classifier(info["image_shape"][0], len(info["classes"]), tuple(info["widths"]),
                     info["feature_dim"])
    net.load_state_dict(load_file(folder / "weights.safetensors"))
    return Features(net).to(device).eval(), {**info, "path": str(folder)}


def _train_feature_network(train_data: data.ImageData, test_data: data.ImageData,
                           recipe: dict[str, Any], folder: Path, progress: bool,
                           device: torch.device) -> dict[str, Any]:
    """Adam on cross-entropy for recipe['steps'] batches on ``device`` (under the recipe's
    precision and memory format); saves the weights atomically."""
    if len(train_data.classes) < 2:
        raise ConfigError(f"the offline FID/KID needs a labelled dataset; {train_data.name!r} "
                          f"has {len(train_data.classes)} class")
    start = time.perf_counter()
    gen = torch.Generator().manual_seed(recipe["seed"])
    torch.manual_seed(recipe["seed"])
    net = Classifier(train_data.image_shape[0], len(train_data.classes), tuple(recipe["widths"]),
                     recipe["feature_dim"])
    fmt = torch.channels_last if recipe["channels_last"] else torch.contiguous_format
    net = net.to(device, memory_format=fmt)
    bf16 = recipe["precision"] == "bf16"
    opt = torch.optim.Adam(net.parameters(), lr=recipe["lr"])
    n, batch_size = len(train_data), recipe["batch_size"]
    per_epoch = data.steps_per_epoch(n, batch_size)
    batches: list[torch.Tensor] = []
    for step in range(recipe["steps"]):
        epoch, i = divmod(step, per_epoch)
        if i == 0:
            batches = data.epoch_batches(n, batch_size, recipe["seed"], epoch)
        idx = batches[i]
        x = data.to_float(train_data.images[idx])
        # small random shifts (pad 2, crop) keep the features from memorising the split
        x = torch.nn.functional.pad(x, (2, 2, 2, 2), value=-1.0)
        dy, dx = torch.randint(0, 5, (2,), generator=gen).tolist()
        x = x[:, :, dy:dy + train_data.image_shape[1], dx:dx + train_data.image_shape[2]]
        x = x.to(device).contiguous(memory_format=fmt)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = net(x)
        loss = torch.nn.functional.cross_entropy(logits.float(), train_data.labels[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if progress and (step + 1) % 500 == 0:
            print(f"feature network: step {step + 1}/{recipe['steps']}, loss {loss.item():.3f}")
    net = net.to("cpu", memory_format=torch.contiguous_format).eval()  # autocast kept it fp32
    with torch.no_grad():  # accuracy of the fp32 features that the scores use
        pred = torch.cat([net(data.to_float(b)).argmax(1) for b in test_data.images.split(1000)])
    accuracy = float((pred == test_data.labels).float().mean())
    info = {**recipe, "test_accuracy": accuracy, "num_train": n, "num_test": len(test_data),
            "image_shape": list(train_data.image_shape), "classes": list(train_data.classes),
            "train_seconds": round(time.perf_counter() - start, 1), "device": device.type}
    weights = {k: v.contiguous() for k, v in net.state_dict().items()}
    write_file_atomic(folder / "weights.safetensors",
                                 lambda tmp: save_file(weights, tmp))
    write_json(folder / "info.json", info)  # written last: marks the cache complete
    return info
