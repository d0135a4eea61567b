"""Can a feature network trained without labels (rotation prediction, or contrastive views) stand in
for the labelled one in the offline FID/KID? Measured on a labelled dataset with the labels hidden
from them:

1. class information in the 128 features: a linear probe (logistic regression on the train
   split's features, accuracy on the test split) and 5-nearest-neighbour accuracy, for the
   supervised features, the rotation and contrastive features and a randomly initialised
   network;
2. FID as a distance: the FID between the train images and the test images corrupted by
   Gaussian noise or a Gaussian blur at increasing levels should rise with the level; the
   Spearman rank correlation of FID with level, per feature network;
3. FID against mode dropping, the failure a generative model's score must catch and pixel
   corruption does not probe: the test images of the first k classes removed (the rest drawn
   with replacement back to the same count), k = 0, 1, 2, 3, 5, 7; the FID should rise with k.

    python benchmarks/rotation_features.py                       # digits, 1500 steps each
    python benchmarks/rotation_features.py --dataset mnist --data-dir ../shared/data/mnist

Writes the numbers as JSON (--out) and prints them.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from genlab import data
from genlab.featurenet import (
    DEFAULT_STEPS,
    FEATURE_NET,
    feature_network,
    train_classifier,
    train_contrastive_net,
    train_rotation_net,
)
from genlab.images import to_float
from genlab.metrics import fid_kid
from genlab.models.classifier import Classifier, Features

NOISE_LEVELS = (0.0, 0.05, 0.1, 0.2, 0.4, 0.8)  # Gaussian noise std, in [-1, 1] units
BLUR_LEVELS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)  # Gaussian blur std, in pixels
DROP_LEVELS = (0, 1, 2, 3, 5, 7)  # classes removed from the test images


def drop_classes(x: torch.Tensor, labels: torch.Tensor, k: int, seed: int = 0) -> torch.Tensor:
    """The images of classes >= k, drawn with replacement back to len(x) images (k = 0: x)."""
    if k == 0:
        return x
    kept = torch.nonzero(labels >= k).flatten()
    pick = torch.randint(0, len(kept), (len(x),), generator=torch.Generator().manual_seed(seed))
    return x[kept[pick]]


def add_noise(x: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    """x + N(0, sigma^2), clipped to [-1, 1]."""
    eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    return (x + sigma * eps).clamp(-1, 1)


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """A separable Gaussian blur of std ``sigma`` pixels (edges replicated); 0 leaves x."""
    if sigma <= 0:
        return x
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    c = x.shape[1]
    out = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    out = F.conv2d(out, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(out, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


@torch.no_grad()
def features_of(net: Features, images: torch.Tensor) -> torch.Tensor:
    return torch.cat([net(to_float(b)) for b in images.split(1000)])


def probe_accuracies(net: Features, train: data.ImageData, test: data.ImageData
                     ) -> dict[str, float]:
    """Linear-probe and 5-NN class accuracy of the features (standardised on the train split)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.preprocessing import StandardScaler

    f_train, f_test = features_of(net, train.images).numpy(), features_of(net, test.images).numpy()
    scale = StandardScaler().fit(f_train)
    f_train, f_test = scale.transform(f_train), scale.transform(f_test)
    y_train, y_test = train.labels.numpy(), test.labels.numpy()
    linear = LogisticRegression(max_iter=2000).fit(f_train, y_train).score(f_test, y_test)
    knn = KNeighborsClassifier(5).fit(f_train, y_train).score(f_test, y_test)
    return {"linear_probe": float(linear), "knn5": float(knn)}


def corruption_fids(net: Features, reference: torch.Tensor, test: torch.Tensor,
                    kind: str, levels: tuple[float, ...],
                    labels: torch.Tensor | None = None) -> list[float]:
    """FID between the reference images and the test images corrupted at each level."""
    out = []
    for level in levels:
        if kind == "drop":
            fake = drop_classes(test, labels, int(level))
        else:
            fake = add_noise(test, level) if kind == "noise" else blur(test, level)
        out.append(fid_kid(net, reference, fake, kid_subsets=2)["fid"])
    return out


def spearman(levels: tuple[float, ...], values: list[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(levels, values).statistic)


def measure(dataset: str, data_dir: str | None, steps: int, supervised_steps: int = 0
            ) -> dict[str, object]:
    """Every number of the benchmark for one dataset; the labels reach only the supervised
    network and the probes."""
    train = data.load(dataset, "train", data_dir, download=False)
    test = data.load(dataset, "test", data_dir, download=False)
    recipe = {**FEATURE_NET, "precision": "fp32", "steps": steps, "dataset": dataset}
    start = time.perf_counter()
    if supervised_steps:
        info = train_classifier(train, test, {**recipe, "steps": supervised_steps})
        supervised = Features(info.pop("net")).eval()
    else:  # the shipped (or cached) labelled network
        supervised, info = feature_network(dataset, data_dir, download=False)
    rot_info = train_rotation_net(train, test, {**recipe, "task": "rotation"})
    rotation = Features(rot_info.pop("net")).eval()
    con_info = train_contrastive_net(train, test, {**recipe, "task": "contrastive"})
    contrastive = Features(con_info.pop("net")).eval()
    torch.manual_seed(0)
    random = Features(Classifier(train.image_shape[0], 10)).eval()
    nets = {"supervised": supervised, "rotation": rotation, "contrastive": contrastive,
            "random": random}
    reference = to_float(train.images[:10_000])
    real_test = to_float(test.images[:2_000])
    test_labels = test.labels[:2_000]
    result: dict[str, object] = {
        "dataset": dataset, "rotation_steps": steps, "supervised_steps": info["steps"],
        "supervised_test_accuracy": info["test_accuracy"],
        "rotation_test_accuracy": rot_info["test_accuracy"],
        "rotation_train_seconds": rot_info["train_seconds"],
        "contrastive_view_matching": con_info["test_accuracy"],
        "contrastive_train_seconds": con_info["train_seconds"],
        "num_reference": len(reference), "num_test": len(real_test),
        "noise_levels": NOISE_LEVELS, "blur_levels": BLUR_LEVELS, "drop_levels": DROP_LEVELS,
        "features": {}}
    for name, net in nets.items():
        row = probe_accuracies(net, train, test)
        for kind, levels in (("noise", NOISE_LEVELS), ("blur", BLUR_LEVELS),
                             ("drop", DROP_LEVELS)):
            fids = corruption_fids(net, reference, real_test, kind, levels, test_labels)
            row[f"fid_{kind}"] = fids
            row[f"spearman_{kind}"] = spearman(levels, fids)
        result["features"][name] = row  # type: ignore[index]
    result["seconds"] = round(time.perf_counter() - start, 1)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="digits")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS,
                   help="training steps of the rotation network")
    p.add_argument("--supervised-steps", type=int, default=0,
                   help="train the supervised network for this many steps (0: the shipped one)")
    p.add_argument("--out", type=Path, default=None, help="JSON file for the numbers")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    result = measure(args.dataset, args.data_dir, args.steps, args.supervised_steps)
    print(f"{args.dataset}: rotation net {result['rotation_steps']} steps, held-out rotation "
          f"accuracy {result['rotation_test_accuracy']:.3f}; supervised test accuracy "
          f"{result['supervised_test_accuracy']:.3f}; contrastive net: held-out view matching "
          f"{result['contrastive_view_matching']:.3f}")
    for name, row in result["features"].items():  # type: ignore[union-attr]
        print(f"  {name:10s} linear probe {row['linear_probe']:.3f}  5-NN {row['knn5']:.3f}  "
              f"Spearman(FID, noise) {row['spearman_noise']:.2f}  "
              f"Spearman(FID, blur) {row['spearman_blur']:.2f}  "
              f"Spearman(FID, classes dropped) {row['spearman_drop']:.2f}")
        for kind in ("noise", "blur", "drop"):
            print(f"             FID {kind:5s} "
                  f"[{', '.join(f'{v:.3g}' for v in row[f'fid_{kind}'])}]")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
