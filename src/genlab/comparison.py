"""``genlab compare``: train several families on the same data for the same training-time budget,
score them in one feature space, and test the textbook claims about them with numbers.

For each family and seed the default preset trains in three legs (25%, 50% and 100% of the
budget, ``--max-minutes`` semantics), each followed by a quick FID, which gives the
quality-vs-compute curve. The final model is then scored on the held-out split in the dataset
classifier's features: FID/KID, precision/recall/density/coverage, the class histogram of its
samples (on a labelled dataset; an unlabelled one is scored in contrastive features, without it),
the distance of samples to their nearest training image against that of test images
(memorisation), the likelihood bound where the family has one, and the cost of a sample (FLOPs,
network evaluations, seconds). Everything goes into ``compare.json``, rewritten after every
step, so that an interrupted comparison resumes where it stopped; ``verdicts`` turns it into the
claims' verdicts, and the report renders both.
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from genlab import checkpoint, data, plots, recipes
from genlab.errors import ConfigError, TrainingDiverged
from genlab.featurenet import feature_network
from genlab.figures import plot
from genlab.files import read_json, write_json
from genlab.hardware import shares_cores
from genlab.metrics import fid_kid, inception_fid, precision_recall
from genlab.reporting import compare_report
from genlab.samplers import slerp
from genlab.training import train

DEFAULT_FAMILIES = ("vae", "dcgan", "ddpm", "flow")
LEGS = (0.25, 0.5, 1.0)
NFE_SWEEP = (10, 20, 50)
PATH_PAIRS, PATH_EPSILON = 64, 1e-4
# settings added after comparisons were already written, with the value that matches those
# (feature_net None: not recorded, so not checked)
NEW_SETTINGS = {"inception_weights": None, "path_pairs": PATH_PAIRS, "feature_net": None}
ADDITIVE = ("inception_weights",)  # settings that only add a measure: changeable on resume
# --feature-steps is a request; what must not change is the network it resolves to (0 and the
# shipped network's step count name the same one), recorded as "feature_net", its weights' hash
RESOLVED = ("feature_steps",)


def check_settings(path: Path, old: dict[str, Any], new: dict[str, Any]) -> None:
    """Refuse to resume the comparison in ``path`` (written with ``old`` settings) under
    ``new`` ones, unless they differ only in additive settings or in how the same feature network
    was asked for."""
    old, new = {**NEW_SETTINGS, **old}, {**NEW_SETTINGS, **new}
    skip = {*ADDITIVE, *RESOLVED, *(["feature_net"] if old["feature_net"] is None else [])}
    changed = sorted(k for k in set(old) | set(new)
                     if k not in skip and old.get(k) != new.get(k))
    if "feature_net" in changed:
        raise ConfigError(f"{path} was scored in the features of another feature network (weights "
                          f"sha1 {old['feature_net']}, now {new['feature_net']}: a retrained "
                          f"shipped network or another --feature-steps); its scores would not "
                          f"compare: pass another --out")
    if changed:
        raise ConfigError(f"{path} was written with other settings ("
                          + ", ".join(f"{k}={old.get(k)!r}, now {new.get(k)!r}" for k in changed)
                          + "); pass the same ones to resume it, or another --out")


def _progress(message: str) -> None:
    print(f"compare: {message}", file=sys.stderr, flush=True)


@torch.no_grad()
def _features(net: torch.nn.Module, images: torch.Tensor, batch: int = 500
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Penultimate features and class predictions of the feature classifier."""
    feats, preds = [], []
    device = next(net.parameters()).device
    for chunk in images.split(batch):
        f = net(chunk.to(device).float())
        feats.append(f.cpu())
        preds.append(net.classifier.head(f).argmax(1).cpu())
    return torch.cat(feats), torch.cat(preds)


def _entropy(counts: list[int]) -> float:
    total = sum(counts)
    return -sum(c / total * math.log(c / total) for c in counts if c)


@torch.no_grad()
def _nearest(images: torch.Tensor, reference: torch.Tensor, batch: int = 250) -> torch.Tensor:
    """Euclidean pixel distance (on [-1, 1] images) from each image to its nearest reference."""
    ref = reference.flatten(1).float()
    return torch.cat([torch.cdist(chunk.flatten(1).float(), ref).min(1).values
                      for chunk in images.split(batch)])


def _count_cost(run: checkpoint.Run, draw) -> tuple[float, int]:
    """FLOPs of drawing one sample and the network evaluations it took (forward calls of the
    inference network; one decode for a VAE)."""
    from torch.utils.flop_counter import FlopCounterMode

    calls = []
    hook = run.model.register_forward_hook(lambda *a: calls.append(1))
    try:
        with FlopCounterMode(display=False) as counter:
            draw(1)
    finally:
        hook.remove()
    return float(counter.get_total_flops()), max(1, len(calls))


def _spikes(log: list[dict[str, Any]], window: int = 10, factor: float = 5.0) -> int:
    """Logged losses further than ``factor`` median absolute deviations from the median of the
    ``window`` lines before them."""
    losses = [r["loss"] for r in log if "loss" in r]
    count = 0
    for i in range(window, len(losses)):
        past = losses[i - window:i]
        med = statistics.median(past)
        mad = statistics.median(abs(v - med) for v in past) or 1e-12
        count += abs(losses[i] - med) > factor * mad
    return count


class Scorer:
    """The common feature space of a comparison: the dataset's feature network, the real test
    images and a subset of the training images for the memorisation distances. A network
    trained without labels (an unlabelled dataset) predicts no classes, so the class-histogram
    measures are left out."""

    def __init__(self, dataset: str, data_dir: str | None, download: bool,
                 feature_steps: int, num_train_reference: int = 5000,
                 inception_weights: str | None = None) -> None:
        self.net, self.info = feature_network(dataset, data_dir, download, feature_steps)
        self.inception_weights = inception_weights
        test = data.load(dataset, "test", data_dir, download)
        train_split = data.load(dataset, "train", data_dir, download)
        self.labelled = self.info["task"] == "classes"
        self.classes = list(self.info["classes"]) if self.labelled else []
        self.real = data.to_float(test.images)
        self.real_features, self.real_preds = _features(self.net, self.real)
        # precision/recall/density/coverage compare equal numbers of real and fake points (as
        # both papers do): the first len(fake) real images of one fixed shuffle
        self.real_order = torch.randperm(len(self.real), generator=torch.Generator().manual_seed(0))
        self.train_ref = data.to_float(train_split.images[:num_train_reference])

    def quick_fid(self, fake: torch.Tensor) -> dict[str, float]:
        s = fid_kid(self.net, self.real, fake)
        return {"fid": s["fid"], "kid": s["kid"]}

    def precision_recall(self, fake_features: torch.Tensor) -> dict[str, Any]:
        """Precision, recall, density and coverage against as many real test images as fakes."""
        m = min(len(fake_features), len(self.real))
        pr = precision_recall(self.real_features[self.real_order[:m]], fake_features)
        return {**{k: pr[k] for k in ("precision", "recall", "density", "coverage")},
                "pr_num_real": m}

    def full(self, fake: torch.Tensor) -> dict[str, Any]:
        s = fid_kid(self.net, self.real, fake)
        feats, preds = _features(self.net, fake)
        pr = self.precision_recall(feats)
        n_mem = min(len(fake), len(self.real), 500)
        d_fake = _nearest(fake[:n_mem], self.train_ref)
        d_test = _nearest(self.real[:n_mem], self.train_ref)
        close = float(torch.quantile(d_test, 0.01))
        inception = ({"inception_fid": inception_fid(self.real, fake, self.inception_weights)}
                     if self.inception_weights else {})
        return {"fid": s["fid"], "kid": s["kid"], "kid_std": s["kid_std"], **inception, **pr,
                **(self.class_histogram(preds) if self.labelled else {}),
                "nn_train_distance_samples": float(d_fake.median()),
                "nn_train_distance_test": float(d_test.median()),
                "nn_distance_ratio": float(d_fake.median() / d_test.median()),
                "share_closer_than_test_1pct": float((d_fake < close).float().mean())}

    def class_histogram(self, preds: torch.Tensor) -> dict[str, Any]:
        """The samples' predicted-class counts, their entropy and the real test images'."""
        counts = torch.bincount(preds, minlength=len(self.classes)).tolist()
        real_counts = torch.bincount(self.real_preds, minlength=len(self.classes)).tolist()
        return {"class_counts": counts, "class_entropy": _entropy(counts),
                "real_class_entropy": _entropy(real_counts),
                "classes_missing": sum(c == 0 for c in counts)}


@torch.no_grad()
def path_length(decode, features, latent_shape: tuple[int, ...], pairs: int = PATH_PAIRS,
                epsilon: float = PATH_EPSILON, seed: int = 0) -> dict[str, float]:
    """Perceptual path length (Karras et al. 2019, eq. 3) in the feature classifier's space: the
    mean over ``pairs`` random points t of slerp paths between latents z0, z1 ~ N(0, I) of
    |f(G(slerp(z0, z1, t))) - f(G(slerp(z0, z1, t + epsilon)))|^2 / epsilon^2, the values outside
    the 1st-99th percentiles left out as they do. Low: small steps in the latent move the image
    a little, which is what steering by latent needs (a collapsed generator is also low, so read
    it beside recall and coverage)."""
    gen = torch.Generator().manual_seed(seed)
    z0 = torch.randn((pairs, *latent_shape), generator=gen)
    z1 = torch.randn((pairs, *latent_shape), generator=gen)
    t = torch.rand((pairs, 1), generator=gen, dtype=torch.float64) * (1 - epsilon)
    images = decode(torch.cat([slerp(z0, z1, t), slerp(z0, z1, t + epsilon)])).float().cpu()
    f = features(images)
    d = (f[:pairs] - f[pairs:]).double().pow(2).sum(1) / epsilon**2
    lo, hi = torch.quantile(d, 0.01), torch.quantile(d, 0.99)
    return {"path_length": float(d[(d >= lo) & (d <= hi)].mean()),
            "path_length_median": float(d.median()), "path_pairs": pairs}


def _train_leg(cfg, run_dir: Path, minutes: float, record: dict[str, Any]) -> None:
    """Train (or resume) to ``minutes`` of training time; a divergence is recorded, not raised."""
    try:
        if checkpoint.latest_checkpoint(run_dir) is None:
            if checkpoint.is_run(run_dir):  # a first leg killed before its first checkpoint
                import shutil

                shutil.rmtree(run_dir)
            train(recipes.make_config(**cfg, max_minutes=minutes), progress=False)
        else:
            train(resume=run_dir, max_minutes=minutes, progress=False)
    except TrainingDiverged as err:
        record.setdefault("diverged", str(err))


@shares_cores
def compare(dataset: str = "digits", data_dir: str | None = None, minutes: float = 1.0,
            seeds: int = 1, families: Sequence[str] | None = None, out: str | Path | None = None,
            num_samples: int = 1000, leg_samples: int = 300, feature_steps: int = 0,
            download: bool = True, nfe_sweep: Sequence[int] = NFE_SWEEP,
            overrides: dict[str, dict[str, Any]] | None = None,
            inception_weights: str | None = None, path_pairs: int = PATH_PAIRS) -> Path:
    """Train, score and compare ``families`` on ``dataset``; returns the report's path.
    ``overrides`` changes a family's default preset (the demo shrinks the networks; ``{"ddpm":
    {"class_conditional": True}}`` adds guidance rows to its control figure).
    ``inception_weights`` adds the standard Inception FID of every final sample set."""
    families = tuple(families or DEFAULT_FAMILIES)
    for name in families:
        if recipes.get(name).denoises:
            raise ConfigError(f"{name} is a denoiser: it has no samples to compare; compare "
                              f"generators such as {list(DEFAULT_FAMILIES)}")
    if not 0 < leg_samples <= num_samples:
        raise ConfigError(f"need 0 < --leg-samples <= --num-samples (the last curve point reuses "
                          f"the final samples), got {leg_samples} and {num_samples}")
    if minutes <= 0 or seeds < 1:
        raise ConfigError(f"need minutes > 0 and seeds >= 1, got {minutes} and {seeds}")
    out = Path(out or f"runs/compare-{dataset}")
    path = out / "compare.json"
    settings = {"dataset": dataset, "data_dir": data_dir, "minutes": minutes, "seeds": seeds,
                "families": list(families), "num_samples": num_samples,
                "leg_samples": leg_samples, "feature_steps": feature_steps, "legs": list(LEGS),
                "nfe_sweep": list(nfe_sweep), "overrides": overrides or {},
                "inception_weights": inception_weights, "path_pairs": path_pairs}
    scorer = Scorer(dataset, data_dir, download, feature_steps,
                    inception_weights=inception_weights)
    settings["feature_net"] = scorer.info["weights_sha1"]
    state = read_json(path) if path.is_file() else {"settings": settings, "runs": {}}
    check_settings(path, state["settings"], settings)
    state["settings"] = settings
    for family in families:
        recipe = recipes.get(family)
        for seed in range(seeds):
            name = f"{family}-seed{seed}"
            run_dir = out / name
            record = state["runs"].setdefault(name, {"family": family, "seed": seed,
                                                     "run_dir": str(run_dir), "legs": []})
            cfg = {"family": family, "preset": "default", "dataset": dataset,
                   "data_dir": data_dir, "download": download, "seed": seed,
                   "run_dir": str(run_dir), **(overrides or {}).get(family, {})}
            for fraction in LEGS[len(record["legs"]):]:
                _progress(f"{name}: training to {fraction:.0%} of {minutes:g} min")
                _train_leg(cfg, run_dir, fraction * minutes, record)
                if checkpoint.latest_checkpoint(run_dir) is None:  # diverged before any
                    break
                if fraction == LEGS[-1]:  # the last leg's curve point reuses the final draw
                    _progress(f"{name}: scoring")
                    record["final"], fake = _score(run_dir, recipe, scorer, seed, num_samples,
                                                   path_pairs)
                    run_step = record["final"]["step"]
                else:
                    run = recipes.load_run(run_dir, checkpoint.pick_device())
                    gen = torch.Generator(device=run.device).manual_seed(seed)
                    opts = recipes.verb_options(family, "sample", {})
                    fake = recipe.sample(run, leg_samples, gen, opts).cpu()
                    run_step = run.step
                log = checkpoint.read_log(run_dir)
                record["legs"].append({"fraction": fraction, "step": run_step,
                                       "train_seconds": log[-1]["train_seconds"] if log else 0,
                                       **scorer.quick_fid(fake[:leg_samples])})
                write_json(path, state)
            if checkpoint.latest_checkpoint(run_dir) is None:
                _progress(f"{name}: no checkpoint to score ({record.get('diverged', '')})")
                continue
            if "final" not in record:  # a diverged run's last leg did not score it
                _progress(f"{name}: scoring")
                record["final"] = _score(run_dir, recipe, scorer, seed, num_samples,
                                         path_pairs)[0]
                write_json(path, state)
            missing = _missing_measures(record["final"], recipe, scorer)
            if missing:  # scored by an older genlab, or without --inception-weights
                _progress(f"{name}: adding {', '.join(missing)}")
                record["final"].update(_measure(run_dir, recipe, scorer, seed, num_samples,
                                                path_pairs, missing))
                write_json(path, state)
            if seed == 0 and "nfe_sweep" not in record and recipe.nfe_options is not None:
                record["nfe_sweep"] = _nfe_sweep(run_dir, recipe, scorer, leg_samples, nfe_sweep)
                write_json(path, state)
            if seed == 0 and "figures" not in record:
                record["figures"] = _figures(run_dir, recipe, out)
                write_json(path, state)
    state["verdicts"] = verdicts(state)
    state["summary"] = summary(state)
    write_json(path, state)
    figs = _compare_figures(state, out)
    return compare_report(state, out / "report.html", figs)


def _missing_measures(final: dict[str, Any], recipe, scorer: Scorer) -> list[str]:
    """The measures a run's final scores lack that this comparison takes."""
    wanted = {"pr_num_real": True,  # scored against all real images by genlab < 0.3
              "likelihood": recipe.likelihood is not None,
              "path_length": recipe.latent_map is not None,
              "inception_fid": scorer.inception_weights is not None}
    return [key for key, want in wanted.items() if want and key not in final]


def _measure(run_dir: Path, recipe, scorer: Scorer, seed: int, num_samples: int,
             path_pairs: int, keys: Sequence[str]) -> dict[str, Any]:
    """The measures ``keys`` of a scored run (likelihood, path length, Inception FID, and
    precision/recall/density/coverage, keyed by 'pr_num_real')."""
    run = recipes.load_run(run_dir, checkpoint.pick_device())
    out: dict[str, Any] = {}
    if "likelihood" in keys:
        out["likelihood"] = recipe.likelihood(run, data.load_split(run.config, "test"), seed)
    if "path_length" in keys:
        shape, decode = recipe.latent_map(run)
        out.update(path_length(lambda z: decode(z.to(run.device)),
                               lambda x: _features(scorer.net, x)[0], shape, path_pairs,
                               seed=seed))
    if "inception_fid" in keys or "pr_num_real" in keys:  # the final samples, drawn again
        gen = torch.Generator(device=run.device).manual_seed(seed)
        opts = recipes.verb_options(recipe.name, "sample", {})
        fake = recipe.sample(run, num_samples, gen, opts).cpu()
        if "inception_fid" in keys:
            out["inception_fid"] = inception_fid(scorer.real, fake, scorer.inception_weights)
        if "pr_num_real" in keys:
            out.update(scorer.precision_recall(_features(scorer.net, fake)[0]))
    return out


def _score(run_dir: Path, recipe, scorer: Scorer, seed: int, num_samples: int,
           path_pairs: int = PATH_PAIRS) -> tuple[dict[str, Any], torch.Tensor]:
    """The final scores of a run, and the samples they were computed from."""
    run = recipes.load_run(run_dir, checkpoint.pick_device())
    opts = recipes.verb_options(recipe.name, "sample", {})

    def draw(n: int) -> torch.Tensor:
        gen = torch.Generator(device=run.device).manual_seed(seed)
        return recipe.sample(run, n, gen, opts).cpu()

    start = time.perf_counter()
    fake = draw(num_samples)
    seconds = (time.perf_counter() - start) / num_samples
    flops, nfe = _count_cost(run, draw)
    log = checkpoint.read_log(run_dir)
    speeds = [r["images_per_s"] for r in log if "images_per_s" in r]
    result = {**scorer.full(fake), "seconds_per_sample": seconds, "flops_per_sample": flops,
              "nfe": nfe, "num_samples": num_samples, "step": run.step,
              "train_seconds": log[-1]["train_seconds"] if log else 0.0,
              "train_images_per_s": statistics.median(speeds) if speeds else 0.0,
              "params": sum(p.numel() for p in run.model.parameters()),
              "params_trained": sum(p.numel() for n, m in run.modules.items() if n != "ema"
                                    for p in m.parameters()),
              "loss_spikes": _spikes(log), "log_lines": len(log)}
    result.update(_measure(run_dir, recipe, scorer, seed, num_samples, path_pairs,
                           [k for k in _missing_measures(result, recipe, scorer)
                            if k not in ("inception_fid", "pr_num_real")]))  # full() has them
    return result, fake


def _nfe_sweep(run_dir: Path, recipe, scorer: Scorer, n: int,
               budgets: Sequence[int]) -> list[dict[str, Any]]:
    run = recipes.load_run(run_dir, checkpoint.pick_device())
    rows = []
    for nfe in budgets:
        opts = recipes.verb_options(recipe.name, "sample", recipe.nfe_options(nfe))
        gen = torch.Generator(device=run.device).manual_seed(0)
        start = time.perf_counter()
        fake = recipe.sample(run, n, gen, opts).cpu()
        rows.append({"nfe": nfe, "seconds_per_sample": (time.perf_counter() - start) / n,
                     **scorer.quick_fid(fake)})
    return rows


def _figures(run_dir: Path, recipe, out: Path) -> dict[str, str]:
    """The sample grid and the control figure of a run, copied under out/figures."""
    made = {}
    for kind in ("samples", recipe.control_figure):
        path = plot(run_dir, kind, out=out / "figures" / f"{recipe.name}-{kind}.png")
        made[kind] = str(path.relative_to(out))
    return made


# --- from numbers to verdicts --------------------------------------------------------------------

SUMMARY_MEASURES = (
    # key, label, unit, better ('lower' / 'higher' / None)
    ("fid", "FID", "", "lower"),
    ("inception_fid", "Inception FID", "", "lower"),
    ("kid", "KID", "", "lower"),
    ("precision", "precision", "", "higher"),
    ("recall", "recall", "", "higher"),
    ("coverage", "coverage", "", "higher"),
    ("class_entropy", "class entropy", "nats", "higher"),
    ("nn_distance_ratio", "NN-train distance, samples / test", "", None),
    # not ranked: the VAE's Bernoulli decoder and DDPM's discretised Gaussian are different
    # likelihood models of the pixels, so their bits/dim do not compare across families
    ("nll_bits_per_dim", "NLL bound, the family's own pixel model", "bits/dim", None),
    ("path_length", "latent path length", "", "lower"),
    ("seconds_per_sample", "time per sample", "s", "lower"),
    ("nfe", "network evaluations per sample", "", "lower"),
    ("flops_per_sample", "FLOPs per sample", "GFLOP", "lower"),
    ("train_images_per_s", "training speed", "images/s", "higher"),
    ("params", "parameters (sampling network)", "M", None),
    ("loss_spikes", "loss spikes", "", "lower"),
)
SCALE = {"flops_per_sample": 1e-9, "params": 1e-6}


def _values(state: dict[str, Any], family: str, key: str) -> list[float]:
    out = []
    for record in state["runs"].values():
        if record["family"] == family and key == "diverged_runs":  # 1 per diverged run
            out.append(float("diverged" in record))
            continue
        if record["family"] != family or "final" not in record:
            continue
        final = record["final"]
        value = (final.get("likelihood", {}).get(key) if key == "nll_bits_per_dim"
                 else final.get(key))
        if value is not None:
            out.append(float(value) * SCALE.get(key, 1.0))
    return out


def _mean_std(values: list[float]) -> tuple[float, float] | None:
    if not values:
        return None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summary(state: dict[str, Any]) -> dict[str, Any]:
    """Per family and measure: mean and std over seeds; the best family per measure."""
    families = state["settings"]["families"]
    table: dict[str, Any] = {"measures": [list(m) for m in SUMMARY_MEASURES], "families": {}}
    for family in families:
        row = {}
        for key, *_ in SUMMARY_MEASURES:
            ms = _mean_std(_values(state, family, key))
            if ms is not None:
                row[key] = {"mean": ms[0], "std": ms[1], "n": len(_values(state, family, key))}
        diverged = sum("diverged" in r for r in state["runs"].values() if r["family"] == family)
        row["diverged_runs"] = {"mean": diverged, "std": 0.0, "n": state["settings"]["seeds"]}
        table["families"][family] = row
    best = {}
    for key, _, _, better in SUMMARY_MEASURES:
        have = {f: r[key]["mean"] for f, r in table["families"].items() if key in r}
        if better and len(have) > 1:
            best[key] = (min if better == "lower" else max)(have, key=have.get)
    table["best"] = best
    return table


def _compare(state: dict[str, Any], key: str, a: str, b: str, better: str) -> tuple[str, str]:
    """Whether family ``a`` beats ``b`` on ``key``: 'yes', 'no' or 'unsettled' (the seeds'
    spreads overlap: |mean difference| <= std_a + std_b), and the numbers as text."""
    va, vb = _values(state, a, key), _values(state, b, key)
    if not va or not vb:
        return "missing", f"{key}: no data for {a if not va else b}"
    (ma, sa), (mb, sb) = _mean_std(va), _mean_std(vb)
    text = f"{key} {a} {ma:.4g} ± {sa:.2g} vs {b} {mb:.4g} ± {sb:.2g} (n = {len(va)}, {len(vb)})"
    single = min(len(va), len(vb)) < 2 and abs(ma - mb) <= 0.25 * max(abs(ma), abs(mb))
    if abs(ma - mb) <= sa + sb or single:  # one seed a side: only a difference > 25% counts
        return "unsettled", text
    wins = ma < mb if better == "lower" else ma > mb
    return ("yes" if wins else "no"), text


def _verdict(parts: list[str]) -> str:
    if not parts or "missing" in parts:
        return "not measured"
    if all(p == "yes" for p in parts):
        return "supported"
    if all(p == "no" for p in parts):
        return "contradicted"
    return "not settled at this budget"


Test = tuple[str, str, str, str]  # metric, family a, family b, 'lower' or 'higher' is better


def verdicts(state: dict[str, Any]) -> list[dict[str, Any]]:
    """Each textbook claim, split into the parts it asserts, each with the measurements that
    test it and a verdict computed from them: supported (every test goes the claim's way beyond
    the seeds' spread), contradicted (every test goes the other way), not settled (the spreads
    overlap or the tests disagree). The claim's verdict is its parts' when they agree, else
    'mixed' naming each part's."""
    families = state["settings"]["families"]
    diffusion = [f for f in ("ddpm", "flow") if f in families]
    # an unlabelled dataset's samples have no class histogram (label-free features predict none)
    labelled = any("class_entropy" in r.get("final", {}) for r in state["runs"].values())
    out = []

    def claim(text: str, how: str, parts: list[tuple[str, list[Test]]]) -> None:
        evidence, judged = [], []
        for label, tests in parts:
            results = []
            for key, a, b, better in tests:
                result, numbers = _compare(state, key, a, b, better)
                results.append(result)
                evidence.append(f"{label}: {numbers}: {result}")
            judged.append({"part": label, "verdict": _verdict(results)})
        verdicts_ = {p["verdict"] for p in judged}
        overall = (judged[0]["verdict"] if len(verdicts_) == 1 else
                   "mixed: " + "; ".join(f"{p['part']} {p['verdict']}" for p in judged))
        out.append({"claim": text, "test": how, "verdict": overall, "parts": judged,
                    "evidence": evidence})

    if "ddpm" in families and "dcgan" in families:
        claim("Diffusion models train more stably than GANs, which can suffer mode collapse.",
              "mode coverage (coverage, recall, entropy of the samples' class histogram) and "
              "loss spikes of DDPM against the DCGAN, beyond the spread across seeds",
              [("covers the modes better", [("coverage", "ddpm", "dcgan", "higher"),
                                            ("recall", "ddpm", "dcgan", "higher"),
                                            *([("class_entropy", "ddpm", "dcgan", "higher")]
                                              if labelled else [])]),
               ("trains more stably", [("loss_spikes", "ddpm", "dcgan", "lower"),
                                       ("diverged_runs", "ddpm", "dcgan", "lower")])])
    if "ddpm" in families and "vae" in families:
        claim("Diffusion models give higher-quality images than VAEs, but need more resources.",
              "FID and precision of DDPM against the VAE at equal training time, and the "
              "VAE's lower sampling cost (FLOPs and seconds per sample)",
              [("higher quality", [("fid", "ddpm", "vae", "lower"),
                                   ("precision", "ddpm", "vae", "higher")]),
               ("more resources", [("flops_per_sample", "vae", "ddpm", "lower"),
                                   ("seconds_per_sample", "vae", "ddpm", "lower")])])
    slow = [("seconds_per_sample", f, "ddpm", "lower") for f in ("vae", "dcgan")
            if f in families]
    if "ddpm" in families and slow:
        claim("Diffusion models are slow to sample, because of their many steps.",
              "seconds per sample at each family's default sampler (DDPM: DDIM-50); the NFE "
              "sweep shows what fewer steps cost in FID, and flow matching at few NFE",
              [("slower to sample", slow)])
    if "dcgan" in families and diffusion:
        claim("GANs give finer control over the features of what they generate than diffusion "
              "models.",
              "perceptual path length in the classifier's features (Karras et al. 2019): how "
              "far the image moves per small step along a path between two latents; lower is "
              "smoother steering. The control figures show the paths (GAN: latent slerp; DDPM "
              "and flow: noise slerp through their deterministic samplers)",
              [("smoother latent paths", [("path_length", "dcgan", f, "lower")
                                          for f in diffusion])])
    return out


def _compare_figures(state: dict[str, Any], out: Path) -> dict[str, str]:
    """FID against training minutes (all families), and FID against NFE (iterative ones)."""
    series: dict[str, tuple[list[float], list[float]]] = {}
    for family in state["settings"]["families"]:
        by_leg: dict[float, list[tuple[float, float]]] = {}
        for record in state["runs"].values():
            if record["family"] == family:
                for leg in record["legs"]:
                    by_leg.setdefault(leg["fraction"], []).append(
                        (leg["train_seconds"] / 60, leg["fid"]))
        if by_leg:
            legs = sorted(by_leg)
            series[family] = ([statistics.fmean(m for m, _ in by_leg[f]) for f in legs],
                              [statistics.fmean(v for _, v in by_leg[f]) for f in legs])
    figs = {}
    if series:
        figs["fid_vs_minutes"] = str(plots.save_curves(
            series, out / "figures" / "fid_vs_training_minutes.png",
            "quality against training time (mean over seeds)", xlabel="training minutes",
            log_y=True, ylabel="FID (offline features)").relative_to(out))
    nfe_series = {}
    for record in state["runs"].values():
        if record.get("nfe_sweep"):
            rows = record["nfe_sweep"]
            nfe_series[record["family"]] = ([r["nfe"] for r in rows], [r["fid"] for r in rows])
    if nfe_series:
        figs["fid_vs_nfe"] = str(plots.save_curves(
            nfe_series, out / "figures" / "fid_vs_nfe.png",
            "quality against network evaluations per sample (seed 0)", xlabel="NFE",
            ylabel="FID (offline features)").relative_to(out))
    return figs
