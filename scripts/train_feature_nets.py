"""Regenerate the feature networks genlab ships (src/genlab/featurenets/<dataset>.safetensors and
.json): the offline FID/KID classifier of each named dataset, trained with featurenet's recipe in
fp32 (identical features on every machine).

    python scripts/train_feature_nets.py digits
    python scripts/train_feature_nets.py cifar10 --data-dir ../shared/data/cifar10 --steps 3000 \
        --batch-size 128 --flip --cosine
    python scripts/train_feature_nets.py fer2013 --data-dir ../shared/data/fer2013 --steps 1200 \
        --batch-size 128 --flip --cosine
    python scripts/train_feature_nets.py mnist --data-dir ../shared/data/mnist \
        --from-cache .cache/genlab/feature-nets/mnist-ff1967906b

``--from-cache`` ships a network that featurenet trained and cached earlier, weights copied byte
for byte (the shipped MNIST net: 1500 fp32 steps on the full MNIST, test accuracy 0.9804).
The step counts, batch sizes, options and test accuracies of the shipped networks are in their
JSON files. CIFAR-10 and FER2013 have 5,000 training images each in ../shared: random horizontal
flips and a cosine learning-rate decay lifted CIFAR-10 from 0.391 (500 plain steps) to 0.557
(3000 steps) and FER2013 from 0.280 (300 plain steps) to 0.360 (1200 steps).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch

from genlab import data
from genlab.featurenet import (
    DEFAULT_STEPS,
    FEATURE_NET,
    SHIPPED_DIR,
    held_out_accuracy,
    save_network,
    train_classifier,
)
from genlab.files import read_json, write_json
from genlab.models.classifier import Classifier

SOURCES = {
    "digits": "scikit-learn's bundled 8x8 digits (load_digits), genlab's fixed 1500/297 split",
    "mnist": "MNIST, all 60,000 train and 10,000 test digits (torchvision layout)",
    "cifar10": "a CIFAR-10 subset: 500 train and 100 test images per class, image-folder layout "
               "decoded from a JPEG (quality 75) copy",
    "fer2013": "a FER2013 subset: 5,000 Training and 1,000 PublicTest rows of the Kaggle CSV",
}


def data_seen(dataset: str, data_dir: str | None, train: data.ImageData,
              test: data.ImageData) -> dict[str, object]:
    """What the shipped JSON says about the data: counts, source and the data folder's name."""
    return {"num_train": len(train), "num_test": len(test), "source": SOURCES[dataset],
            "data_dir": Path(data_dir).name if data_dir else None}


def ship_trained(dataset: str, data_dir: str | None, steps: int, batch_size: int = 0,
                 flip: bool = False, cosine: bool = False) -> dict[str, object]:
    """Train the dataset's classifier in fp32 (batches of ``batch_size``, 0: the recipe's; with
    random horizontal flips and a cosine learning-rate decay on request) and write it into
    SHIPPED_DIR."""
    train = data.load(dataset, "train", data_dir, download=False)
    test = data.load(dataset, "test", data_dir, download=False)
    recipe = {**FEATURE_NET, "precision": "fp32", "steps": steps, "dataset": dataset}
    if batch_size:
        recipe["batch_size"] = batch_size
    recipe.update({k: True for k, on in (("flip", flip), ("cosine", cosine)) if on})
    info = train_classifier(train, test, recipe, progress=True, device="cpu")
    info.update(data_seen(dataset, data_dir, train, test))
    save_network(info, SHIPPED_DIR / f"{dataset}.safetensors", SHIPPED_DIR / f"{dataset}.json")
    return read_json(SHIPPED_DIR / f"{dataset}.json")


def ship_cached(dataset: str, data_dir: str | None, folder: Path) -> dict[str, object]:
    """Ship a cached network unchanged (weights byte for byte), after checking its recorded test
    accuracy on the test split."""
    info = read_json(folder / "info.json")
    if info["dataset"] != dataset or info["precision"] != "fp32":
        sys.exit(f"{folder} holds a {info['precision']} {info['dataset']} network; expected fp32 "
                 f"{dataset}")
    test = data.load(dataset, "test", data_dir, download=False)
    train = data.load(dataset, "train", data_dir, download=False)
    net = Classifier(info["image_shape"][0], len(info["classes"]), tuple(info["widths"]),
                     info["feature_dim"])
    from safetensors.torch import load_file

    net.load_state_dict(load_file(folder / "weights.safetensors"))
    accuracy = held_out_accuracy(net.eval(), test)
    if abs(accuracy - info["test_accuracy"]) > 1e-6:
        sys.exit(f"{folder}: recorded test accuracy {info['test_accuracy']}, measured {accuracy}")
    shutil.copyfile(folder / "weights.safetensors", SHIPPED_DIR / f"{dataset}.safetensors")
    info.update(data_seen(dataset, data_dir, train, test))
    info["cpu"] = info.get("cpu", "not recorded by the cache (trained by genlab's featurenet "
                                  "on the 2-core AMD EPYC development machine)")
    write_json(SHIPPED_DIR / f"{dataset}.json", info)
    return info


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dataset", choices=sorted(SOURCES))
    p.add_argument("--data-dir", default=None, help="folder holding the dataset's files")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="training steps")
    p.add_argument("--from-cache", type=Path, default=None,
                   help="ship this cached feature-nets/<dataset>-<hash> folder instead of training")
    p.add_argument("--batch-size", type=int, default=0,
                   help="images per step (0: the recipe's, 128)")
    p.add_argument("--flip", action="store_true",
                   help="random horizontal flips (mirror-symmetric classes: cifar10, fer2013)")
    p.add_argument("--cosine", action="store_true",
                   help="cosine decay of the learning rate to 0 over the steps")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    SHIPPED_DIR.mkdir(parents=True, exist_ok=True)
    if args.from_cache:
        info = ship_cached(args.dataset, args.data_dir, args.from_cache)
    else:
        info = ship_trained(args.dataset, args.data_dir, args.steps, args.batch_size, args.flip,
                            args.cosine)
    for suffix in (".safetensors", ".json"):  # package data: readable by every user
        (SHIPPED_DIR / f"{args.dataset}{suffix}").chmod(0o644)
    size = (SHIPPED_DIR / f"{args.dataset}.safetensors").stat().st_size
    print(f"{args.dataset}: {info['steps']} steps, test accuracy {info['test_accuracy']:.4f}, "
          f"{info['train_seconds']} s of training, {size / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
