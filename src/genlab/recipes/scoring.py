"""The one scorer of sample sets: ``genlab evaluate`` (each recipe's ``evaluate``, through
``Scorer.for_run``) and ``genlab compare`` measure samples with it, in the same feature space and
by the same code.

A ``Scorer`` loads the dataset's feature network once (``featurenet.feature_network``) and the
real images it compares against, and takes every measure of a sample set in that space: FID and
KID (``score``), FID extrapolated to infinite N, precision/recall/density/coverage against as many
real images as fakes, the class histogram against the real one, requested-class accuracy,
collapse, the modes of Stacked MNIST, and the distance of samples to their nearest training image
against that of test images (``full``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from genlab import data, stats
from genlab.checkpoint import Run
from genlab.featurenet import channel_stack, feature_network
from genlab.images import to_float
from genlab.metrics import (
    expected_modes_covered,
    fd_infinity,
    fid_kid,
    inception_fid,
    mode_scores,
    precision_recall,
)
from genlab.recipes.base import (
    INCEPTION_FILE,
    LABEL_FREE_SCORE,
    OFFLINE_SCORE,
    SampleScoreOptions,
    inception_weights,
    scored_samples,
)

COLLAPSED = 0.5  # a sample set that falls in under this share of the classes real images do


@torch.no_grad()
def features(net: torch.nn.Module, images: torch.Tensor, batch: int = 500
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Penultimate features and class predictions of the feature classifier."""
    feats, preds = [], []
    device = next(net.parameters()).device
    for chunk in images.split(batch):
        f = net(chunk.to(device).float())
        feats.append(f.cpu())
        preds.append(net.classify(f).cpu())
    return torch.cat(feats), torch.cat(preds)


@torch.no_grad()
def nearest(images: torch.Tensor, reference: torch.Tensor, batch: int = 250) -> torch.Tensor:
    """Euclidean pixel distance (on [-1, 1] images) from each image to its nearest reference."""
    ref = reference.flatten(1).float()
    return torch.cat([torch.cdist(chunk.flatten(1).float(), ref).min(1).values
                      for chunk in images.split(batch)])


class Scorer:
    """The feature space of a dataset and the real images a sample set is scored against.

    ``real``: the split to compare with (default: the dataset's test split), its first
    ``num_images`` when given; ``train_reference``: that many training images for the
    memorisation distances (0: not taken). A network trained without labels (an unlabelled
    dataset) predicts no classes, so the class measures are left out. On a dataset of known modes
    (Stacked MNIST, ``data.CHANNEL_STACKS``) each sample's mode is read by the shipped classifier
    on each channel, for the modes covered and KL(sample modes || uniform), beside the same
    numbers for as many real test images."""

    def __init__(self, dataset: str, data_dir: str | None, download: bool, feature_steps: int,
                 *, real: data.ImageData | None = None, num_images: int = 0,
                 train_reference: int = 0, inception_weights: str | None = None,
                 device: str | torch.device = "cpu", resolution: int = 0, channels: int = 0,
                 seed: int = 0) -> None:
        self.net, self.info = feature_network(dataset, data_dir, download, feature_steps, device,
                                              resolution=resolution, channels=channels)
        self.inception_weights, self.seed = inception_weights, seed
        split = real if real is not None else data.load(dataset, "test", data_dir, download)
        images = split.images[:num_images] if num_images else split.images
        self.real = to_float(images)
        self.labelled = self.info["task"] == "classes"
        self.classes = list(self.info["classes"]) if self.labelled else []
        labels = getattr(split, "labels", None)
        self.real_labels = (torch.as_tensor(labels[:len(images)]).long()
                            if labels is not None and self.labelled else None)
        self.real_features, self.real_preds = features(self.net, self.real)
        # the classifier's own accuracy on the real images: the ceiling of class_accuracy
        self.real_accuracy = (float((self.real_preds == self.real_labels).float().mean())
                              if self.real_labels is not None else None)
        # precision/recall/density/coverage compare equal numbers of real and fake points (as
        # both papers do): the first len(fake) real images of one fixed shuffle
        self.real_order = torch.randperm(len(self.real), generator=torch.Generator().manual_seed(0))
        self.train_ref = (to_float(data.load(dataset, "train", data_dir, download)
                                        .images[:train_reference]) if train_reference else None)
        self.mode_net, self.num_modes = None, 0
        if dataset in data.CHANNEL_STACKS:  # the FID features may be another network's
            self.mode_net, mode_info = ((self.net, self.info) if "modes" in self.info
                                        else channel_stack(dataset))
            self.num_modes = int(mode_info["modes"])
            self.real_modes = (self.real_preds if self.mode_net is self.net
                               else features(self.mode_net, self.real)[1])
        self.opts: SampleScoreOptions | None = None
        self.num_samples = 0

    @classmethod
    def for_run(cls, run: Run, split_data: data.ImageData, opts: SampleScoreOptions,
                seed: int) -> Scorer:
        """The scorer of ``genlab evaluate``: the run's dataset at the run's size, against
        ``split_data``, with the protocol of ``opts`` (its sample count, Inception weights)."""
        cfg = run.config
        scorer = cls(cfg.dataset, cfg.data_dir, cfg.download, opts.feature_steps,
                     real=split_data, num_images=opts.num_images,
                     inception_weights=inception_weights(opts), device=run.device,
                     resolution=cfg.resolution, channels=cfg.image_channels, seed=seed)
        scorer.opts, scorer.num_samples = opts, scored_samples(opts)
        return scorer

    # --- evaluate's protocol -------------------------------------------------------------

    def time(self, draw: Callable[[int], torch.Tensor], n: int) -> tuple[torch.Tensor, float]:
        """n samples from ``draw(n)`` and the seconds per sample they took."""
        start = time.perf_counter()
        fake = draw(n).cpu()
        return fake, (time.perf_counter() - start) / max(n, 1)

    def score(self, fake: torch.Tensor, label: str) -> dict[str, Any]:
        """fid_<label>, kid_<label>, kid_std_<label>, num_samples_<label> (and the Inception FID
        when weights were given or found)."""
        s = fid_kid(self.net, self.real, fake, seed=self.seed)
        out = {f"fid_{label}": s["fid"], f"kid_{label}": s["kid"], f"kid_std_{label}": s["kid_std"],
               f"num_samples_{label}": len(fake)}
        if self.inception_weights:
            out[f"inception_fid_{label}"] = inception_fid(self.real, fake, self.inception_weights)
        return out

    def fid(self, fake: torch.Tensor) -> float:
        return fid_kid(self.net, self.real, fake, seed=self.seed)["fid"]

    def common(self) -> dict[str, Any]:
        """What every evaluation records about the score: the real images, the protocol, the
        feature network and its hash."""
        label_free = self.info["task"] != "classes"
        full = self.opts is not None and self.opts.full
        out = {"num_real": len(self.real), "seed": self.seed,
               "protocol": "full" if full else "quick",
               "score": LABEL_FREE_SCORE if label_free else OFFLINE_SCORE,
               "feature_net_task": self.info["task"],
               "feature_net_test_accuracy": self.info["test_accuracy"],
               "feature_net": self.info["path"],
               "feature_net_sha1": self.info["weights_sha1"]}
        if full and not self.inception_weights:
            out["inception_fid"] = ("not computed: needs torch-fidelity and its weights "
                                    f"({INCEPTION_FILE} in torch hub's checkpoints or "
                                    "$GENLAB_INCEPTION_WEIGHTS)")
        return out

    # --- compare's measures --------------------------------------------------------------

    def quick_fid(self, fake: torch.Tensor) -> dict[str, float]:
        s = fid_kid(self.net, self.real, fake, seed=self.seed)
        return {"fid": s["fid"], "kid": s["kid"]}

    def precision_recall(self, fake_features: torch.Tensor) -> dict[str, Any]:
        """Precision, recall, density and coverage against as many real images as fakes."""
        m = min(len(fake_features), len(self.real))
        pr = precision_recall(self.real_features[self.real_order[:m]], fake_features)
        return {**{k: pr[k] for k in ("precision", "recall", "density", "coverage")},
                "pr_num_real": m}

    def full(self, fake: torch.Tensor, requested: torch.Tensor | None = None) -> dict[str, Any]:
        """Every sample measure of ``fake``; ``requested``: the classes a class-conditional run
        drew them for (adds 'class_accuracy')."""
        s = fid_kid(self.net, self.real, fake, seed=self.seed)
        feats, preds = features(self.net, fake)
        inception = ({"inception_fid": inception_fid(self.real, fake, self.inception_weights)}
                     if self.inception_weights else {})
        histogram = self.class_histogram(preds) if self.labelled else {}
        return {"fid": s["fid"], "kid": s["kid"], "kid_std": s["kid_std"], **inception,
                **fd_infinity(self.real_features, feats), **self.precision_recall(feats),
                **histogram, **self.collapse(histogram), **self.accuracy(preds, requested),
                **(self.modes(fake, preds) if self.mode_net is not None else {}),
                **self.memorisation(fake)}

    def memorisation(self, fake: torch.Tensor) -> dict[str, Any]:
        """The median distance of samples to their nearest training image against that of as
        many test images (up to 500), and the share of samples closer than the test images'
        1st percentile; {} without training images (``train_reference`` 0)."""
        if self.train_ref is None:
            return {}
        n = min(len(fake), len(self.real), 500)
        d_fake = nearest(fake[:n], self.train_ref)
        d_test = nearest(self.real[:n], self.train_ref)
        close = float(torch.quantile(d_test, 0.01))
        return {"nn_train_distance_samples": float(d_fake.median()),
                "nn_train_distance_test": float(d_test.median()),
                "nn_distance_ratio": float(d_fake.median() / d_test.median()),
                "share_closer_than_test_1pct": float((d_fake < close).float().mean())}

    def accuracy(self, preds: torch.Tensor, requested: torch.Tensor | None) -> dict[str, Any]:
        """The share of samples the feature classifier reads as the class they were drawn for
        (its own accuracy on the real images beside it, the ceiling); {} for an unconditional
        run or a dataset without classes."""
        if requested is None or not self.labelled:
            return {}
        out = {"class_accuracy": float((preds == requested.cpu()).float().mean())}
        if self.real_accuracy is not None:
            out["class_accuracy_real"] = self.real_accuracy
        return out

    def control(self, draw, guidance: Sequence[float | None], n: int) -> list[dict[str, Any]]:
        """The control sweep of a class-conditional run: for each guidance scale (None: the
        family has none), ``draw(n, w)`` -> (samples, requested classes), scored by FID (on n
        samples, as every run of the sweep is, so FIDs match across families) and the share
        drawn as the requested class."""
        rows = []
        for w in guidance:
            fake, requested = draw(n, w)
            preds = features(self.net, fake)[1]
            rows.append({"guidance": w, "num_samples": n, **self.quick_fid(fake),
                         "class_accuracy": float((preds == requested.cpu()).float().mean())})
        return rows

    def class_histogram(self, preds: torch.Tensor) -> dict[str, Any]:
        """The samples' predicted-class counts and their KL divergence from the real images'
        (both as the feature classifier predicts them, so its errors fall on both sides): a
        generator that drops or over-draws a class is far from the real histogram, where a high
        entropy would reward a uniform one on unbalanced data."""
        counts = torch.bincount(preds, minlength=len(self.classes)).tolist()
        return {"class_counts": counts, **self.class_kl(counts),
                "classes_missing": sum(c == 0 for c in counts)}

    def modes(self, fake: torch.Tensor, preds: torch.Tensor | None = None) -> dict[str, Any]:
        """Modes covered and KL(sample modes || uniform) of ``fake`` (Stacked MNIST; ``preds``:
        the feature network's classes, used where that network is the mode classifier), and the
        same for as many real test images (the first of the fixed shuffle, so N is equal) and
        the modes an even draw would cover at that N."""
        assert self.mode_net is not None
        if preds is None or self.mode_net is not self.net:
            preds = features(self.mode_net, fake)[1]
        n = len(preds)
        real = mode_scores(self.real_modes[self.real_order[:n]], self.num_modes)
        return {**mode_scores(preds, self.num_modes), "num_modes": self.num_modes,
                "modes_covered_real": real["modes_covered"], "mode_kl_real": real["mode_kl"],
                "mode_num_real": real["mode_num_samples"],
                "modes_covered_even": expected_modes_covered(self.num_modes, n)}

    def collapse(self, scores: dict[str, Any]) -> dict[str, Any]:
        """Whether a sample set collapsed: its samples fall in fewer than COLLAPSED (half) of
        the classes (modes, on Stacked MNIST) that as many real images fall in, both read by the
        same classifier. Not measured ({}) where the features predict no classes."""
        if "class_counts" not in scores:
            return {}
        n = sum(scores["class_counts"])
        covered = sum(c > 0 for c in scores["class_counts"])
        real = len(self.real_preds[self.real_order[:n]].unique())
        return {"classes_covered": covered, "classes_covered_real": real,
                "collapsed": covered < COLLAPSED * real}

    def class_kl(self, counts: list[int]) -> dict[str, Any]:
        real_counts = torch.bincount(self.real_preds, minlength=len(self.classes)).tolist()
        return {"class_kl": stats.kl_divergence(counts, real_counts),
                "real_class_counts": real_counts}
