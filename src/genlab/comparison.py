"""``genlab compare``: train several families on the same data for the same training-time budget,
score them in one feature space, and test the textbook claims about them with numbers.

For each family and seed the default preset trains in three legs (25%, 50% and 100% of the
budget, ``--max-minutes`` semantics), its schedules (warm-up, decay) spanning the whole budget
(``budget_minutes``), so the first two legs are snapshots of a run on its way, not runs
scheduled for their own minutes. Each leg is followed by the full scoring on the held-out split in
the dataset classifier's features: FID/KID, FID extrapolated to infinite samples (FD-infinity,
fit over five subset sizes), precision/recall/density/coverage, the class
histogram of its samples against the real one (on a labelled dataset; an unlabelled one is
scored in contrastive features, without it), on Stacked MNIST the modes covered of 1,000 and
KL(sample modes || uniform) with each channel read by the MNIST classifier, for class-conditional
runs the share of samples the classifier reads as the class they were drawn for (and, after the
last leg, that share and FID at each classifier-free guidance scale), the distance of
samples to their nearest training image against that of test images (memorisation), the
likelihood bound where the family has one, the latent's path length, and the cost of a sample
(FLOPs, network evaluations, seconds).
Each leg is stamped with the training it had (seconds, steps, epochs, images seen). Everything
goes into ``compare.json`` (each run's record also into ``records/<run>.json``, so that runs
trained by other processes, ``--jobs`` or a cluster's ``--plan``, are collected), rewritten
after every step, so that an interrupted comparison resumes where it stopped. ``verdicts``
turns it into the claims' verdicts at every leg by the rule of ``genlab.stats``, and the
report renders both.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from genlab import checkpoint, data, plots, recipes, stats
from genlab.errors import ConfigError, GenlabError, TrainingDiverged
from genlab.figures import plot
from genlab.files import read_json, write_json
from genlab.hardware import shares_cores
from genlab.metrics import (
    fd_infinity,
    inception_fid,
)
from genlab.recipes.base import class_labels
from genlab.recipes.scoring import Scorer, features
from genlab.reporting import compare_report
from genlab.samplers import slerp
from genlab.training import budget_seconds, train

# every family that draws images of its own (the denoiser maps images to images)
DEFAULT_FAMILIES = tuple(name for name, r in recipes.RECIPES.items() if r.sample is not None)
LEGS = (0.25, 0.5, 1.0)
NFE_SWEEP = (10, 20, 50)
PATH_PAIRS, PATH_EPSILON = 64, 1e-4
# settings added after comparisons were already written, with the value that matches those
# (feature_net None: not recorded, so not checked)
NEW_SETTINGS = {"inception_weights": None, "path_pairs": PATH_PAIRS, "feature_net": None,
                "lr_grid": [], "lr_grid_seeds": 0}
# settings that only add a measure or runs of their own: changeable on resume
ADDITIVE = ("inception_weights", "lr_grid", "lr_grid_seeds")
LR_GRID = (0.5, 2.0)  # --lr-grid: each family also at these multiples of its preset's rates
LR_GRID_SEEDS = 3  # and with this many seeds (0, 1, 2), or the comparison's, if fewer
CONTROL_GUIDANCE = (1.0, 2.0, 4.0)  # classifier-free guidance scales of the control sweep
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
    ``window`` lines before them (a window of identical losses has no spread: a floor of 1e-6
    of its median keeps rounding noise from counting). Descriptive only: a run of n log lines
    has n - window chances to show one, so short runs show few."""
    losses = [r["loss"] for r in log if "loss" in r]
    count = 0
    for i in range(window, len(losses)):
        past = losses[i - window:i]
        med = statistics.median(past)
        mad = max(statistics.median(abs(v - med) for v in past), 1e-6 * abs(med), 1e-12)
        count += abs(losses[i] - med) > factor * mad
    return count


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


def _train_leg(cfg, run_dir: Path, minutes: float, record: dict[str, Any],
               fraction: float = 1.0) -> None:
    """Train (or resume) to ``minutes`` of training time; a divergence is recorded (with the leg
    it happened in), not raised."""
    try:
        if checkpoint.latest_checkpoint(run_dir) is None:
            if checkpoint.is_run(run_dir):  # a first leg killed before its first checkpoint
                import shutil

                shutil.rmtree(run_dir)
            # the schedules span the whole budget; each leg stops part of the way along it
            train(recipes.make_config(**cfg, max_minutes=minutes,
                                      budget_minutes=minutes / fraction), progress=False)
        else:
            train(resume=run_dir, max_minutes=minutes, progress=False)
    except TrainingDiverged as err:
        record.setdefault("diverged", str(err))
        record.setdefault("diverged_leg", fraction)


def flops_per_image(run_dir: Path, log: list[dict[str, Any]] | None = None) -> float | None:
    """Training FLOPs per image of a run, as its loop counted them on its first update; for a
    run trained by a genlab that did not count them, counted now by one update of the same
    config in a scratch folder (the count depends on the networks and the batch, not on the
    weights). ``log``: the run's log, where the caller has read it."""
    log = checkpoint.read_log(run_dir) if log is None else log
    counted = next((r["flops_per_image"] for r in reversed(log)
                    if r.get("flops_per_image") is not None), None)
    if counted is not None or not log:
        return counted
    import tempfile

    from genlab.config import to_dict

    cfg = to_dict(recipes.run_config(run_dir))
    with tempfile.TemporaryDirectory() as scratch:
        cfg.update(run_dir=str(Path(scratch) / "run"), steps=1, epochs=0, max_minutes=0.0,
                   budget_minutes=0.0, log_every=1, checkpoint_every=1, log_with="none")
        one = train(recipes.make_config(**cfg), progress=False)
        return checkpoint.read_log(one)[-1].get("flops_per_image")


def _stamp(run_dir: Path, step: int, budget_minutes: float, diverged: bool) -> dict[str, Any]:
    """The training a run had by the end of a leg: seconds, epochs, images seen, training FLOPs
    (counted by the loop on its first update, per image), whether it is still in LR warm-up,
    and whether it stopped before its minutes (its epochs ran out)."""
    log = checkpoint.read_log(run_dir)
    cfg = recipes.run_config(run_dir)
    seconds = log[-1]["train_seconds"] if log else 0.0
    budget = budget_seconds(cfg)
    in_warmup = step < cfg.warmup_steps or (budget > 0 and seconds / budget < cfg.warmup_fraction)
    per_image = flops_per_image(run_dir, log)
    return {"train_seconds": seconds, "epoch": log[-1].get("epoch", 0.0) if log else 0.0,
            "images_seen": step * cfg.batch_size, "in_warmup": in_warmup,
            **({"train_flops": per_image * step * cfg.batch_size} if per_image else {}),
            "ended_early": not diverged and seconds < 0.95 * 60 * budget_minutes}


@dataclass(frozen=True)
class CompareOptions:
    """The options of ``genlab compare`` (the CLI's flags are made from these fields and their
    docstrings: every default is written here once)."""

    dataset: str = "digits"
    """dataset name; stacked-mnist adds the mode-collapse measures: modes covered of 1,000 and
    KL(sample modes || uniform)"""
    data_dir: str | None = None
    """folder holding the dataset's files"""
    minutes: float = 1.0
    """training minutes per family and seed"""
    seeds: int = 5
    """seeds per family (under 3 the report describes the numbers and gives no verdicts)"""
    families: tuple[str, ...] = ()
    """families to compare (empty: every family that draws images of its own)"""
    out: str | None = None
    """output folder (empty: runs/compare-DATASET)"""
    num_samples: int = 1000
    """samples scored per run at every leg"""
    leg_samples: int = 300
    """samples behind each point of the FID-vs-NFE curve and of the control sweep"""
    feature_steps: int = 0
    """training steps of the feature network (0: the network genlab ships for a named dataset,
    else 1500 steps, trained once and cached)"""
    download: bool = True
    """download a missing torchvision dataset"""
    nfe_sweep: tuple[int, ...] = NFE_SWEEP
    """network evaluations per sample of the FID-vs-NFE curve of the iterative samplers"""
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    """family -> config values that change its default preset (the CLI's --set)"""
    inception_weights: str | None = None
    """also score every final sample set by the standard Inception FID with these weights
    (torch-fidelity's pt_inception-2015-12-05-6726825d.pth; pip install 'genlab[eval]'; about 6
    GFLOP per image on the CPU)"""
    path_pairs: int = PATH_PAIRS
    """latent pairs behind each path-length score"""
    jobs: int = 1
    """runs trained at a time on this machine, each in its own process with its share of the
    cores (1: one after another in this one)"""
    plan: str | None = None
    """write the command of each unfinished run to this file, one a line, for a cluster's
    scheduler (examples/slurm_compare.sh), and train nothing; run compare again once they have
    finished to collect them"""
    only: str | None = None
    """train and score this one run of the comparison (a line of --plan, FAMILY-seedN); writes
    OUT/records/FAMILY-seedN.json"""
    lr_grid: bool = False
    """also train each family at x0.5 and x2 its preset's learning rates and report divergence
    and collapse rates and the final-FID spread over seeds and the grid (Lucic et al. 2018);
    descriptive, no verdict"""
    lr_grid_seeds: int = LR_GRID_SEEDS
    """seeds of the --lr-grid runs, 0..N-1 (at most --seeds); the x1 point is the main runs of
    those seeds"""
    class_conditional: bool = False
    """train every family that can be class-conditional so (on a labelled dataset) and test the
    control claim: requested-class accuracy at matched FID over classifier-free guidance scales
    1, 2, 4"""


@shares_cores
def compare(*args: Any, **kwargs: Any) -> Path:
    """Train, score and compare ``families`` on ``dataset``; returns the report's path. The
    arguments are the fields of CompareOptions, in its order.
    ``overrides`` changes a family's default preset (the demo shrinks the networks; ``{"ddpm":
    {"class_conditional": True}}`` adds guidance rows to its control figure).
    ``inception_weights`` adds the standard Inception FID of every final sample set.

    ``jobs`` > 1 trains and scores that many runs at a time, each in its own process given its
    share of the cores (``GENLAB_LOCAL_JOBS``); ``plan`` writes the command of each unfinished
    run to that file instead (one a line, for a cluster's scheduler; returns its path), and
    ``only`` ('FAMILY-seedN') is one such command: it trains and scores that run alone and
    returns its record's path. Each run's record is out/records/<run>.json; a later call
    collects them, trains what is missing, and writes the report.

    ``class_conditional`` sets ``class_conditional`` in the preset of every family whose config
    has the field (the others stay unconditional): their samples are scored for the class they
    were drawn for, and after the last leg over the guidance scales of CONTROL_GUIDANCE.

    ``lr_grid`` also trains each family at x0.5 and x2 its preset's learning rates (every
    config field 'lr' or 'lr_*'), seeds 0..``lr_grid_seeds`` - 1 (at most ``seeds``), for the
    full budget in one leg, each scored as a final run ('FAMILY-lrx0.5-seedN'); the x1 point
    is the main runs of those seeds. The report's stability table gives each family's
    divergence and collapse rate and the spread of its final FID over seeds and the grid
    (Lucic et al. 2018)."""
    o = CompareOptions(*args, **kwargs)
    dataset, data_dir, minutes, seeds, out = o.dataset, o.data_dir, o.minutes, o.seeds, o.out
    num_samples, leg_samples, feature_steps = o.num_samples, o.leg_samples, o.feature_steps
    download, nfe_sweep, inception_weights = o.download, o.nfe_sweep, o.inception_weights
    path_pairs, jobs, plan, only = o.path_pairs, o.jobs, o.plan, o.only
    lr_grid, lr_grid_seeds, class_conditional = o.lr_grid, o.lr_grid_seeds, o.class_conditional
    families = tuple(o.families or DEFAULT_FAMILIES)
    for name in families:
        if recipes.get(name).sample is None:
            raise ConfigError(f"{name} draws no images of its own (it maps images to images): "
                              f"nothing to compare; compare families such as "
                              f"{list(DEFAULT_FAMILIES)}")
    if not 0 < leg_samples <= num_samples:
        raise ConfigError(f"need 0 < --leg-samples <= --num-samples (the last curve point reuses "
                          f"the final samples), got {leg_samples} and {num_samples}")
    if minutes <= 0 or seeds < 1 or jobs < 1:
        raise ConfigError(f"need minutes > 0, seeds >= 1 and jobs >= 1, got {minutes}, {seeds} "
                          f"and {jobs}")
    if lr_grid and lr_grid_seeds < 1:
        raise ConfigError(f"--lr-grid-seeds must be >= 1, got {lr_grid_seeds}")
    overrides = {f: dict(v) for f, v in (o.overrides or {}).items()}
    if class_conditional:
        for name in families:
            if "class_conditional" in {f.name for f in fields(recipes.get(name).config)}:
                overrides.setdefault(name, {})["class_conditional"] = True
    out = Path(out or f"runs/compare-{dataset}")
    path = out / "compare.json"
    settings = {"dataset": dataset, "data_dir": data_dir, "minutes": minutes, "seeds": seeds,
                "families": list(families), "num_samples": num_samples,
                "leg_samples": leg_samples, "feature_steps": feature_steps, "legs": list(LEGS),
                "nfe_sweep": list(nfe_sweep), "overrides": overrides or {},
                "inception_weights": inception_weights, "path_pairs": path_pairs,
                "lr_grid": list(LR_GRID) if lr_grid else [],
                "lr_grid_seeds": min(lr_grid_seeds, seeds) if lr_grid else 0}
    # the feature network is resolved (trained and cached, where none ships) before any job
    scorer = Scorer(dataset, data_dir, download, feature_steps, train_reference=5000,
                    inception_weights=inception_weights)
    settings["feature_net"] = scorer.info["weights_sha1"]
    state = read_json(path) if path.is_file() else {"settings": settings, "runs": {}}
    check_settings(path, state["settings"], settings)
    state["settings"] = settings
    state.setdefault("lr_grid_runs", {})
    _collect(out, state)
    runs = [(family, seed) for family in families for seed in range(seeds)]
    grid = [(family, factor, seed) for family in families for factor in settings["lr_grid"]
            for seed in range(settings["lr_grid_seeds"])]
    if only is not None:
        if only in {grid_name(*g) for g in grid}:
            _run_grid_one(state, *next(g for g in grid if grid_name(*g) == only), out, scorer,
                          download)
            return _record_path(out, only)
        family, seed = _parse_run(only, runs, [grid_name(*g) for g in grid])
        _run_one(state, family, seed, out, scorer, download)
        return _record_path(out, only)
    pending = [f"{f}-seed{s}" for f, s in runs if not _finished(state["runs"].get(f"{f}-seed{s}"))]
    pending += [grid_name(*g) for g in grid
                if "done" not in state["lr_grid_runs"].get(grid_name(*g), {})]
    if plan is not None or (jobs > 1 and pending):
        write_json(path, state)  # the settings every job checks its own against
        command = _job_command(settings, out, download)
        if plan is not None:
            plan = Path(plan)
            plan.parent.mkdir(parents=True, exist_ok=True)
            plan.write_text("".join(shlex.join(["python", "-m", "genlab.cli", *command,
                                                "--only", name]) + "\n" for name in pending))
            _progress(f"{len(pending)} run(s) to train: one command a line in {plan}; run "
                      f"compare again once they have finished, to collect them")
            return plan
        _run_jobs(command, pending, jobs, out)
        _collect(out, state)
    for family, seed in runs:  # in-process: whatever is left (nothing, after the jobs)
        _run_one(state, family, seed, out, scorer, download)
    for g in grid:
        _run_grid_one(state, *g, out, scorer, download)
    state["runs"] = {f"{f}-seed{s}": state["runs"][f"{f}-seed{s}"] for f, s in runs}
    state["lr_grid_runs"] = {grid_name(*g): state["lr_grid_runs"][grid_name(*g)] for g in grid}
    state["stability"] = stability(state)
    for record in state["runs"].values():  # the control sweep's row each run is judged at
        row = matched_row(state, record)
        if row is not None:
            record["matched_guidance"] = row["guidance"]
    state["verdicts"] = verdicts(state)
    state["summary"] = summary(state)
    state["budget"] = budget(state)
    state["rule"] = rule(state)
    write_json(path, state)
    figs = _compare_figures(state, out)
    return compare_report(state, out / "report.html", figs)


def _record_path(out: Path, name: str) -> Path:
    return out / "records" / f"{name}.json"


def _collect(out: Path, state: dict[str, Any]) -> None:
    """Take the run records in out/records (written by each run's process) into ``state``:
    each is the latest word on its run."""
    folder = out / "records"
    if folder.is_dir():
        for file in sorted(folder.glob("*.json")):
            record = read_json(file)
            # a learning-rate grid run is kept apart: the claims and the summary are the main runs
            kept = state.setdefault("lr_grid_runs", {}) if "lr_factor" in record else state["runs"]
            kept[file.stem] = record


def _finished(record: dict[str, Any] | None) -> bool:
    """Whether a run needs no more training or scoring (its seed-0 extras aside)."""
    return bool(record) and len(record.get("legs", [])) == len(LEGS) and "final" in record


def _parse_run(name: str, runs: list[tuple[str, int]],
               others: Sequence[str] = ()) -> tuple[str, int]:
    known = {f"{f}-seed{s}": (f, s) for f, s in runs}
    if name not in known:
        raise ConfigError(f"--only {name!r}: not a run of this comparison; expected one of "
                          f"{sorted([*known, *others])}")
    return known[name]


def _job_command(settings: dict[str, Any], out: Path, download: bool) -> list[str]:
    """The `genlab compare` arguments that repeat this comparison's settings (one run is chosen
    by --only)."""
    s = settings
    args = ["compare", "--dataset", s["dataset"], "--minutes", repr(s["minutes"]),
            "--seeds", str(s["seeds"]), "--families", ",".join(s["families"]),
            "--out", str(out), "--num-samples", str(s["num_samples"]),
            "--leg-samples", str(s["leg_samples"]), "--feature-steps", str(s["feature_steps"]),
            "--nfe-sweep", ",".join(map(str, s["nfe_sweep"])),
            "--path-pairs", str(s["path_pairs"])]
    if s["data_dir"]:
        args += ["--data-dir", str(s["data_dir"])]
    if not download:
        args.append("--no-download")
    if s["inception_weights"]:
        args += ["--inception-weights", str(s["inception_weights"])]
    if s.get("lr_grid"):
        args += ["--lr-grid", "--lr-grid-seeds", str(s["lr_grid_seeds"])]
    for family, changes in s["overrides"].items():
        args += [a for k, v in changes.items() for a in ("--set", f"{family}.{k}={json.dumps(v)}")]
    return args


def _run_jobs(command: list[str], names: list[str], jobs: int, out: Path) -> None:
    """Run ``genlab compare ... --only NAME`` for each of ``names``, ``jobs`` at a time, each
    told with GENLAB_LOCAL_JOBS how many share the machine (so each takes its share of the
    cores); each one's output goes to out/records/NAME.log. A failed job is an error naming its
    log, once the others have finished."""
    import subprocess

    env = {**os.environ, "GENLAB_LOCAL_JOBS": str(jobs)}
    (out / "records").mkdir(parents=True, exist_ok=True)
    waiting, running, failed = list(names), {}, []
    while waiting or running:
        while waiting and len(running) < jobs:
            name = waiting.pop(0)
            log = _record_path(out, name).with_suffix(".log").open("w")
            running[name] = (subprocess.Popen(
                [sys.executable, "-m", "genlab.cli", *command, "--only", name],
                stdout=log, stderr=subprocess.STDOUT, env=env), log)
            _progress(f"{name}: started (job {len(names) - len(waiting)} of {len(names)}, "
                      f"{jobs} at a time)")
        time.sleep(0.2)
        for name, (proc, log) in list(running.items()):
            if proc.poll() is not None:
                log.close()
                del running[name]
                _progress(f"{name}: finished" if proc.returncode == 0 else
                          f"{name}: failed (exit {proc.returncode})")
                if proc.returncode != 0:
                    failed.append(name)
    if failed:
        raise GenlabError("compare job(s) failed: " + ", ".join(
            f"{name} (see {_record_path(out, name).with_suffix('.log')})" for name in failed))


def _run_one(state: dict[str, Any], family: str, seed: int, out: Path, scorer: Scorer,
             download: bool) -> None:
    """Train and score one run of the comparison, as far as it is not done yet: its three legs,
    each scored in full, then (seed 0) the NFE sweep and the figures. Its record is written to
    out/records/<run>.json after every step, and kept in ``state``."""
    s = state["settings"]
    recipe = recipes.get(family)
    name = f"{family}-seed{seed}"
    run_dir = out / name
    record = state["runs"].setdefault(name, {"family": family, "seed": seed,
                                             "run_dir": str(run_dir), "legs": []})
    record_path = _record_path(out, name)

    def save() -> None:
        record_path.parent.mkdir(parents=True, exist_ok=True)
        write_json(record_path, record)

    cfg = {"family": family, "preset": "default", "dataset": s["dataset"],
           "data_dir": s["data_dir"], "download": download, "seed": seed,
           "run_dir": str(run_dir), **s["overrides"].get(family, {})}
    minutes, num_samples, path_pairs = s["minutes"], s["num_samples"], s["path_pairs"]
    for fraction in LEGS[len(record["legs"]):]:
        _progress(f"{name}: training to {fraction:.0%} of {minutes:g} min")
        _train_leg(cfg, run_dir, fraction * minutes, record, fraction)
        if checkpoint.latest_checkpoint(run_dir) is None:  # diverged before any
            break
        # every measure at every leg, so that verdicts can be drawn at each budget; the curve's
        # point is the quick FID of the first leg_samples of the same draw
        latest = checkpoint.latest_checkpoint(run_dir)
        assert latest is not None, f"{run_dir} has no checkpoint after its leg"
        step = latest["step"]
        before = record["legs"][-1] if record["legs"] else None
        if before is not None and before["step"] == step and "scores" in before:
            # the run stopped before this leg (its epochs ran out, or it diverged): the same
            # checkpoint, the same scores
            scores, quick = dict(before["scores"]), {"fid": before["fid"], "kid": before["kid"]}
        else:
            _progress(f"{name}: scoring at {fraction:.0%}")
            scores, fake = _score(run_dir, recipe, scorer, seed, num_samples, path_pairs)
            quick = scorer.quick_fid(fake[:s["leg_samples"]])
        leg = {"fraction": fraction, "step": scores["step"],
               **_stamp(run_dir, scores["step"], fraction * minutes, "diverged" in record),
               **quick}
        if fraction == LEGS[-1]:
            record["final"] = scores
        else:
            leg["scores"] = scores
        record["legs"].append(leg)
        save()
    if checkpoint.latest_checkpoint(run_dir) is None:
        _progress(f"{name}: no checkpoint to score ({record.get('diverged', '')})")
        save()
        return
    if "final" not in record:  # a diverged run's last leg did not score it
        _progress(f"{name}: scoring")
        record["final"] = _score(run_dir, recipe, scorer, seed, num_samples, path_pairs)[0]
        save()
    missing = _missing_measures(record["final"], recipe, scorer)
    if missing:  # scored by an older genlab, or without --inception-weights
        _progress(f"{name}: adding {', '.join(missing)}")
        if "class_kl" in missing:  # from the counts: nothing to sample
            record["final"].update(scorer.class_kl(record["final"]["class_counts"]))
        if "collapsed" in missing:  # likewise
            record["final"].update(scorer.collapse(record["final"]))
        rest = [k for k in missing if k not in ("class_kl", "collapsed")]
        if rest:
            record["final"].update(_measure(run_dir, recipe, scorer, seed, num_samples,
                                            path_pairs, rest))
        save()
    if any("train_flops" not in leg for leg in record["legs"]):
        per_image = flops_per_image(run_dir)  # stamped by a genlab that did not count them
        if per_image:
            for leg in record["legs"]:
                leg["train_flops"] = per_image * leg["images_seen"]
            save()
    if "class_accuracy" in record["final"] and "control_sweep" not in record["final"]:
        _progress(f"{name}: control sweep (FID and requested-class accuracy per guidance scale)")
        record["final"]["control_sweep"] = _control_sweep(run_dir, recipe, scorer, seed,
                                                          s["leg_samples"])
        save()
    if seed == 0 and "nfe_sweep" not in record and recipe.nfe_options is not None:
        record["nfe_sweep"] = _nfe_sweep(run_dir, recipe, scorer, s["leg_samples"],
                                         s["nfe_sweep"])
        save()
    if seed == 0 and "figures" not in record:
        record["figures"] = _figures(run_dir, recipe, out)
        save()


def grid_name(family: str, factor: float, seed: int) -> str:
    """The name of a learning-rate grid run: 'dcgan-lrx0.5-seed0'."""
    return f"{family}-lrx{factor:g}-seed{seed}"


def learning_rates(cfg) -> dict[str, float]:
    """A config's learning rates: its numeric fields named 'lr' or 'lr_*' (the generator's and,
    where a family has one, the discriminator's), by name."""
    return {k: float(v) for k, v in vars(cfg).items()
            if (k == "lr" or k.startswith("lr_")) and isinstance(v, (int, float))
            and not isinstance(v, bool)}


def _run_grid_one(state: dict[str, Any], family: str, factor: float, seed: int, out: Path,
                  scorer: Scorer, download: bool) -> None:
    """Train one learning-rate grid run (the family's default preset with every learning rate
    times ``factor``) for the full budget in one leg, and score it as a final run: FID and the
    rest of ``Scorer.full``, whether it collapsed, and its loss spikes (descriptive). A
    divergence is recorded, not raised. Its record is out/records/<name>.json."""
    s = state["settings"]
    name = grid_name(family, factor, seed)
    run_dir = out / "lr-grid" / name
    record = state["lr_grid_runs"].setdefault(name, {"family": family, "seed": seed,
                                                     "lr_factor": factor,
                                                     "run_dir": str(run_dir), "legs": []})
    if "done" in record:
        return
    cfg = {"family": family, "preset": "default", "dataset": s["dataset"],
           "data_dir": s["data_dir"], "download": download, "seed": seed,
           "run_dir": str(run_dir), **s["overrides"].get(family, {})}
    record["lrs"] = {k: v * factor for k, v in learning_rates(recipes.make_config(**cfg)).items()}
    _progress(f"{name}: training to {s['minutes']:g} min at x{factor:g} the preset's learning "
              f"rates ({', '.join(f'{k} {v:.3g}' for k, v in record['lrs'].items())})")
    _train_leg({**cfg, **record["lrs"]}, run_dir, s["minutes"], record, 1.0)
    latest = checkpoint.latest_checkpoint(run_dir)
    if latest is not None:
        _progress(f"{name}: scoring")
        run = recipes.load_run(run_dir, checkpoint.pick_device())
        recipe = recipes.get(family)
        gen = torch.Generator(device=run.device).manual_seed(seed)
        fake = recipe.sample(run, s["num_samples"], gen,
                             recipes.verb_options(family, "sample", {})).cpu()
        scores = scorer.full(fake)
        scores.update(step=run.step, loss_spikes=_spikes(checkpoint.read_log(run_dir)))
        record["final"] = scores
        record["legs"] = [{"fraction": 1.0, "step": run.step,
                           **_stamp(run_dir, run.step, s["minutes"], "diverged" in record)}]
    record["done"] = True
    path = _record_path(out, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, record)


def _missing_measures(final: dict[str, Any], recipe, scorer: Scorer) -> list[str]:
    """The measures a run's final scores lack that this comparison takes."""
    wanted = {"pr_num_real": True,  # scored against all real images by genlab < 0.3
              "class_kl": "class_counts" in final,  # genlab < 0.4 scored the entropy
              "collapsed": "class_counts" in final,
              "likelihood": recipe.likelihood is not None,
              "path_length": recipe.latent_map is not None,
              "inception_fid": scorer.inception_weights is not None,
              "modes_covered": scorer.mode_net is not None,
              "fd_inf": True}
    return [key for key, want in wanted.items() if want and key not in final]


def _measure(run_dir: Path, recipe, scorer: Scorer, seed: int, num_samples: int,
             path_pairs: int, keys: Sequence[str]) -> dict[str, Any]:
    """The measures ``keys`` of a scored run (likelihood, path length, Inception FID,
    precision/recall/density/coverage, keyed by 'pr_num_real', the mode measures, keyed by
    'modes_covered', and FD-infinity, keyed by 'fd_inf')."""
    run = recipes.load_run(run_dir, checkpoint.pick_device())
    out: dict[str, Any] = {}
    if "likelihood" in keys:
        out["likelihood"] = recipe.likelihood(run, data.load_split(run.config, "test"), seed)
    if "path_length" in keys:
        shape, decode = recipe.latent_map(run)
        out.update(path_length(lambda z: decode(z.to(run.device)),
                               lambda x: features(scorer.net, x)[0], shape, path_pairs,
                               seed=seed))
    drawn = {"inception_fid", "pr_num_real", "modes_covered", "fd_inf"}
    if drawn & set(keys):  # the final samples, drawn again
        gen = torch.Generator(device=run.device).manual_seed(seed)
        opts = recipes.verb_options(recipe.name, "sample", {})
        fake = recipe.sample(run, num_samples, gen, opts).cpu()
        if "inception_fid" in keys:
            out["inception_fid"] = inception_fid(scorer.real, fake, scorer.inception_weights)
        feats = features(scorer.net, fake)[0]
        if "pr_num_real" in keys:
            out.update(scorer.precision_recall(feats))
        if "fd_inf" in keys:
            out.update(fd_infinity(scorer.real_features, feats))
        if "modes_covered" in keys:
            out.update(scorer.modes(fake))
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
    # a class-conditional net draws the classes in turn (recipes.base.class_labels)
    requested = class_labels(run.model, num_samples)
    result = {**scorer.full(fake, requested), "seconds_per_sample": seconds,
              "flops_per_sample": flops, "nfe": nfe, "num_samples": num_samples, "step": run.step,
              "train_seconds": log[-1]["train_seconds"] if log else 0.0,
              "train_images_per_s": statistics.median(speeds) if speeds else 0.0,
              "params": sum(p.numel() for p in run.model.parameters()),
              "params_trained": sum(p.numel() for n, m in run.modules.items() if n != "ema"
                                    for p in m.parameters()),
              "loss_spikes": _spikes(log), "log_lines": len(log)}
    drawn = ("inception_fid", "pr_num_real", "modes_covered", "fd_inf")  # full() has them
    result.update(_measure(run_dir, recipe, scorer, seed, num_samples, path_pairs,
                           [k for k in _missing_measures(result, recipe, scorer)
                            if k not in drawn]))
    return result, fake


def _control_sweep(run_dir: Path, recipe, scorer: Scorer, seed: int,
                   n: int) -> list[dict[str, Any]]:
    """FID and requested-class accuracy of a class-conditional run at each guidance scale of
    CONTROL_GUIDANCE (one row, guidance None, for a family whose sampler has no guidance), on
    ``n`` samples each."""
    run = recipes.load_run(run_dir, checkpoint.pick_device())
    guided = "guidance" in {f.name for f in fields(recipe.sample_options)}

    def draw(k: int, w: float | None) -> tuple[torch.Tensor, torch.Tensor]:
        opts = recipes.verb_options(recipe.name, "sample", {"guidance": w} if guided else {})
        gen = torch.Generator(device=run.device).manual_seed(seed)
        return recipe.sample(run, k, gen, opts).cpu(), class_labels(run.model, k)

    return scorer.control(draw, CONTROL_GUIDANCE if guided else (None,), n)


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
#
# Every measure has a minimal meaningful effect, declared here with its reason: the smallest
# difference a verdict may rest on (genlab.stats holds the decision rule). A measure without one
# is described (mean, SD, interval over seeds) and never decides a claim.

QUALITY = stats.relative(
    0.10, "FID moves by a few percent between training seeds and between sample sets of ~1000 "
    "images (its bias depends on the set size), and papers do not call an FID gain of less than "
    "10% an improvement; tested as a ratio, so 10% means the same at FID 5 and at FID 50")
SHARE = stats.absolute(
    0.05, "precision, recall and coverage are shares of ~1000 points, whose binomial standard "
    "error is at most 0.016, so 0.05 is about three of them; 5 points of coverage is half of one "
    "class's share on a ten-class dataset")
HISTOGRAM = stats.absolute(
    0.02, "KL from the real class histogram; halving one class of ten (5% instead of 10%, the "
    "rest scaled up) costs 0.017 nats, a visible loss of a mode", "nats")
MODES = stats.relative(
    0.10, "modes covered of Stacked MNIST's 1,000: a generator that drops a tenth of the modes "
    "covers 10% fewer at any N, and at N = 1,000 an even draw covers 632 +- 10 (SD), so 10% is "
    "about six SDs; tested as a ratio, so 10% means the same at 100 modes and at 900")
MODE_KL = stats.absolute(
    0.1, "KL(sample modes || uniform): a generator that drops a tenth of the modes and draws the "
    "rest evenly is log(1 / 0.9) = 0.105 nats from uniform", "nats")
LIKELIHOOD = stats.relative(
    0.05, "bits per dimension of the 8-bit test images: on CIFAR-10, published models a "
    "generation apart differ by 3-4% (PixelCNN 3.14, PixelRNN 3.00, PixelCNN++ 2.92), so 5% is "
    "more than a generation's gain; tested as a ratio, so 5% means the same at 1 and at 3 "
    "bits/dim")
COST = stats.ratio(
    1.25, "timings on a shared machine vary by 10-20% between runs, and a user does not notice a "
    "smaller saving; FLOPs and NFE are exact but are judged on the same scale as the time they "
    "stand for")


@dataclass(frozen=True)
class Measure:
    """A column of the summary and, where it has an effect, a measure claims may be tested on."""

    key: str
    label: str
    unit: str
    better: str | None
    """'lower' or 'higher' is better; None: no direction (described only)"""
    effect: stats.Effect | None
    """the minimal meaningful effect; None: described, never a verdict"""
    scale: float = 1.0
    where: str = ""
    """the datasets it is taken on, when not all ('labelled', 'Stacked MNIST'): a claim tests
    it only where some run of the comparison recorded it"""
    floor: float | None = None
    """the least value it can take (0 for a count): its summary interval is cut there"""


MEASURES = (
    Measure("fid", "FID", "", "lower", QUALITY),
    Measure("inception_fid", "Inception FID", "", "lower", QUALITY),
    # extrapolated from subsets of one sample set: described beside FID, not a verdict's basis
    # (its fit can land below 0 and its spread is larger than FID's)
    Measure("fd_inf", "FD∞ (FID extrapolated to infinite N)", "", "lower", None),
    # unbiased, so it can be negative (no ratio), and its units depend on the feature network
    Measure("kid", "KID", "", "lower", None),
    Measure("precision", "precision", "", "higher", SHARE),
    Measure("recall", "recall", "", "higher", SHARE),
    Measure("coverage", "coverage", "", "higher", SHARE),
    Measure("class_kl", "KL(sample classes || real classes)", "nats", "lower", HISTOGRAM,
            where="labelled"),
    Measure("modes_covered", "modes covered (of 1,000)", "", "higher", MODES,
            where="Stacked MNIST"),
    Measure("mode_kl", "KL(sample modes || uniform)", "nats", "lower", MODE_KL,
            where="Stacked MNIST"),
    Measure("class_accuracy", "requested-class accuracy", "", "higher", SHARE,
            where="class-conditional"),
    # the requested-class accuracy where the family's FID meets the unguided families' (the
    # guidance scale of the control sweep whose FID is nearest theirs): control at equal quality
    Measure("class_accuracy_matched", "requested-class accuracy at matched FID", "", "higher",
            SHARE, where="class-conditional"),
    # exact for an autoregressive model, an upper bound (the variational bound) for diffusion:
    # a bound can only overstate a model's NLL, which the claim's test states
    Measure("nll_8bit", "NLL of the 8-bit test images (exact, or a bound)", "bits/dim", "lower",
            LIKELIHOOD, where="8-bit likelihood"),
    Measure("nn_distance_ratio", "NN-train distance, samples / test", "", None, None),
    # a latent's path length depends on its dimension and prior: compared within a family only
    # (across its legs and seeds), never across families
    Measure("path_length", "latent path length (within a family only)", "", None, None),
    Measure("seconds_per_sample", "time per sample", "s", "lower", COST),
    Measure("nfe", "network evaluations per sample", "", "lower", COST),
    Measure("flops_per_sample", "FLOPs per sample", "GFLOP", "lower", COST, 1e-9),
    Measure("train_images_per_s", "training speed", "images/s", "higher", COST),
    Measure("params", "parameters (sampling network)", "M", None, None, 1e-6),
    # counted in windows of 10 log lines, so a short run has few chances to show one: described
    Measure("loss_spikes", "loss spikes (descriptive)", "", None, None, floor=0.0),
)
MEASURE = {m.key: m for m in MEASURES}
NLL = "nll_bits_per_dim"  # the key of a likelihood's bits/dim in a run's scores
ONE_SCALE = "nll_8bit"  # the families whose likelihood is of the 8-bit images, in one column
DIVERGED = "diverged_runs"
MATCHED = "class_accuracy_matched"
MIN_EPOCHS = 1.0  # under one pass over the data a family is not converged
FID_STILL_FALLING = 0.2  # nor while its FID falls by more than this share between the last legs


def _likelihood_measures(families: Sequence[str]) -> list[Measure]:
    """A descriptive column per pixel model of the families whose likelihood is not on the one
    scale (``Recipe.likelihood_scale``): bounds under different pixel models do not compare."""
    models = sorted({m for f in families if (m := recipes.get(f).likelihood_model)
                     and recipes.get(f).likelihood_scale is None})
    return [Measure(f"{NLL}:{m}", f"NLL bound under the {m} pixel model", "bits/dim", None,
                    None) for m in models]


def _leg_scores(record: dict[str, Any], leg: int) -> dict[str, Any] | None:
    """A run's scores at leg ``leg`` (an index into the legs): the final scores at the last,
    the leg's own before (an older genlab's legs hold FID and KID only)."""
    legs = record.get("legs", [])
    last = len(LEGS) - 1
    if leg == last or leg == -1:
        return record.get("final")
    if leg < len(legs):
        return legs[leg].get("scores", legs[leg])
    return None


def _diverged_by(record: dict[str, Any], leg: int) -> bool:
    """Whether a run had diverged by the end of leg ``leg`` (a record without the leg counts at
    every leg)."""
    if "diverged" not in record:
        return False
    return record.get("diverged_leg", 0.0) <= LEGS[leg]


def _values(state: dict[str, Any], family: str, key: str, leg: int = -1) -> list[float]:
    """The values of measure ``key`` of a family's runs at leg ``leg`` (one per seed)."""
    out = []
    for record in state["runs"].values():
        if record["family"] != family:
            continue
        if key == DIVERGED:  # 1 per diverged run
            out.append(float(_diverged_by(record, leg)))
            continue
        if key == MATCHED:
            row = matched_row(state, record, leg)
            if row is not None:
                out.append(float(row["class_accuracy"]))
            continue
        scores = _leg_scores(record, leg)
        if scores is None:
            continue
        if key == ONE_SCALE or key.startswith(NLL + ":"):  # the column of the family's scale
            recipe = recipes.get(family)
            scale, wanted = ((recipe.likelihood_scale, "8-bit") if key == ONE_SCALE
                             else (recipe.likelihood_model, key.split(":", 1)[1]))
            if scale != wanted:
                continue
            value = scores.get("likelihood", {}).get(NLL)
        else:
            value = scores.get(key)
        if value is not None:
            scale = MEASURE[key].scale if key in MEASURE else 1.0
            out.append(float(value) * scale)
    return out


def matched_row(state: dict[str, Any], record: dict[str, Any],
                leg: int = -1) -> dict[str, Any] | None:
    """The row of a run's control sweep (taken after the last leg only) at matched FID: a run
    without guidance has one row, its own; a guided run's is the scale whose FID is nearest (in
    log FID) the mean FID of the unguided runs' rows, all on the same number of samples. None
    where the run has no sweep, no run is unguided, or ``leg`` is not the last."""
    if leg not in (-1, len(LEGS) - 1):
        return None
    sweep = record.get("final", {}).get("control_sweep")
    if not sweep:
        return None
    if len(sweep) == 1:
        return sweep[0]
    unguided = [r["final"]["control_sweep"][0]["fid"] for r in state["runs"].values()
                if len(r.get("final", {}).get("control_sweep", [])) == 1
                and r["final"]["control_sweep"][0]["fid"] > 0]
    if not unguided:
        return None
    target = math.log(statistics.fmean(unguided))
    return min((row for row in sweep if row["fid"] > 0),
               key=lambda row: abs(math.log(row["fid"]) - target), default=None)


def summary(state: dict[str, Any], leg: int = -1) -> dict[str, Any]:
    """Per family and measure: mean, SD, n and the 95% t interval over seeds; the best family
    of a measure only where Welch's intervals separate it from every other (Holm across those
    comparisons), so overlapping spreads mark none."""
    families = state["settings"]["families"]
    measures = [*MEASURES, *_likelihood_measures(families)]
    table: dict[str, Any] = {"measures": [[m.key, m.label, m.unit, m.better] for m in measures],
                             "families": {}}
    for family in families:
        row = {}
        for m in measures:
            values = _values(state, family, m.key, leg)
            if values:
                row[m.key] = stats.summarise(values, floor=m.floor)
        diverged = _values(state, family, DIVERGED, leg)
        row[DIVERGED] = {"mean": sum(diverged), "std": 0.0, "n": len(diverged)}
        table["families"][family] = row
    best = {}
    for m in measures:
        if m.better is None:
            continue
        have = {f: _values(state, f, m.key, leg) for f in families}
        have = {f: v for f, v in have.items() if v}
        if len(have) < 2 or min(len(v) for v in have.values()) < stats.MIN_SEEDS:
            continue
        pick = min if m.better == "lower" else max
        top = pick(have, key=lambda f: statistics.fmean(have[f]))
        p = [stats.welch(have[top], v).p for f, v in have.items() if f != top]
        if all(q <= stats.ALPHA for q in stats.holm(p)):
            best[m.key] = top
    table["best"] = best
    sizes = next((r["final"]["fd_inf_sizes"] for r in state["runs"].values()
                  if "fd_inf_sizes" in r.get("final", {})), None)
    if sizes:
        table["fd_inf_sizes"] = sizes
    reference = next((r["final"] for r in state["runs"].values()
                      if "modes_covered_real" in r.get("final", {})), None)
    if reference is not None:  # Stacked MNIST: what real images and an even draw reach at N
        table["mode_reference"] = {k: reference[k] for k in (
            "num_modes", "mode_num_samples", "mode_num_real", "modes_covered_real",
            "mode_kl_real", "modes_covered_even") if k in reference}
    return table


@dataclass(frozen=True)
class Part:
    """One thing a claim asserts: families of kinds ``a`` beat those of kinds ``b`` on every one
    of ``measures`` (each in its better direction; 'diverged_runs': fewer diverged runs)."""

    label: str
    a: tuple[str, ...]
    b: tuple[str, ...]
    measures: tuple[str, ...]


@dataclass(frozen=True)
class Finding:
    """What a published paper reports about a claim, with its citation, and the verdict of
    genlab's part ``part`` that would agree with it (None: context that no part of genlab's
    tests; shown, never scored as agreeing or not)."""

    cite: str
    says: str
    part: str | None = None
    expects: str | None = None
    """stats.SUPPORTED or stats.CONTRADICTED: the part's verdict that agrees with the paper"""


@dataclass(frozen=True)
class Claim:
    """A textbook claim, the families it is about (by recipe kind), the parts it asserts, and
    what published results say about it."""

    text: str
    test: str
    parts: tuple[Part, ...]
    literature: tuple[Finding, ...] = ()


# Published results beside the claims, stated no more strongly than the papers do. Their
# budgets (GPU-days on ImageNet, CIFAR-10, LSUN) are far beyond a comparison on a CPU, so genlab
# reports whether its verdict at its own budget agrees, not whether the paper is right.
DHARIWAL_NICHOL = "Dhariwal & Nichol 2021, Diffusion Models Beat GANs on Image Synthesis"
XIAO = ("Xiao, Kreis & Vahdat 2022, Tackling the Generative Learning Trilemma with Denoising "
        "Diffusion GANs")
LUCIC = "Lucic, Kurach, Michalski, Gelly & Bousquet 2018, Are GANs Created Equal?"
DDIM = "Song, Meng & Ermon 2021, Denoising Diffusion Implicit Models"
LIPMAN = ("Lipman, Chen, Ben-Hamu, Nickel & Le 2023, Flow Matching for Generative Modeling")
STACKED = ("Srivastava et al. 2017, VEEGAN; Lin, Khetan, Fanti & Oh 2018, PacGAN (Stacked "
           "MNIST, the setup of Metz et al. 2017, Unrolled GANs)")
KARRAS = "Karras, Laine & Aila 2019, A Style-Based Generator Architecture for GANs"
MIYATO = "Miyato & Koyama 2018, cGANs with Projection Discriminator"
HO_SALIMANS = "Ho & Salimans 2022, Classifier-Free Diffusion Guidance"
PIXEL_RNN = "van den Oord, Kalchbrenner & Kavukcuoglu 2016, Pixel Recurrent Neural Networks"
PIXEL_CNN = ("van den Oord, Kalchbrenner, Vinyals, Espeholt, Graves & Kavukcuoglu 2016, "
             "Conditional Image Generation with PixelCNN Decoders")
HO_DDPM = "Ho, Jain & Abbeel 2020, Denoising Diffusion Probabilistic Models"
VDM = "Kingma, Salimans, Poole & Ho 2021, Variational Diffusion Models"


CLAIMS = (
    Claim("Diffusion models train more stably than GANs, which can suffer mode collapse.",
          "mode coverage of each diffusion model against each GAN (coverage, recall, the KL "
          "divergence of the samples' class histogram from the real test set's on labelled data, "
          "and on Stacked MNIST the modes covered of 1,000 and KL(sample modes || uniform), each "
          "channel read by the MNIST classifier), and how many runs diverged (Fisher's exact "
          "test); loss spikes are shown, not tested",
          (Part("covers the modes better", ("diffusion",), ("adversarial",),
                ("coverage", "recall", "class_kl", "modes_covered", "mode_kl")),
           Part("trains more stably", ("diffusion",), ("adversarial",), (DIVERGED,))),
          literature=(
              Finding(DHARIWAL_NICHOL, "on ImageNet their diffusion models reach higher recall "
                      "than BigGAN-deep at comparable or better FID, and they describe GANs as "
                      "capturing less diversity than likelihood-based models",
                      "covers the modes better", stats.SUPPORTED),
              Finding(XIAO, "diffusion models cover the modes of the data well where GANs are "
                      "known to drop some (one corner of their trilemma)",
                      "covers the modes better", stats.SUPPORTED),
              Finding(STACKED, "a DCGAN trained on Stacked MNIST misses many of its 1,000 modes "
                      "in the setups they test (how many depends on the discriminator's size), "
                      "and their remedies recover more; no diffusion model was in these "
                      "studies"),
              Finding(DHARIWAL_NICHOL, "GANs are often difficult to train, collapsing without "
                      "carefully selected hyperparameters and regularizers (said of earlier "
                      "work, not measured there)", "trains more stably", stats.SUPPORTED),
              Finding(LUCIC, "the FID each GAN they studied reaches depends strongly on its "
                      "hyperparameters and random seed, and with enough tuning and restarts "
                      "none was consistently better than the original GAN; no diffusion model "
                      "was in the study"))),
    Claim("Diffusion models give higher-quality images than VAEs, but need more resources.",
          "FID and precision of each diffusion model against each VAE at equal training time, "
          "and the VAE's lower sampling cost (FLOPs and seconds per sample)",
          (Part("higher quality", ("diffusion",), ("autoencoder",), ("fid", "precision")),
           Part("more resources", ("autoencoder",), ("diffusion",),
                ("flops_per_sample", "seconds_per_sample"))),
          literature=(
              Finding(XIAO, "VAEs (and normalising flows) sample fast and cover the modes but "
                      "give lower sample quality than diffusion models",
                      "higher quality", stats.SUPPORTED),
              Finding(XIAO, "diffusion models are expensive to sample, needing up to thousands "
                      "of network evaluations per sample", "more resources", stats.SUPPORTED))),
    Claim("Diffusion models are slow to sample, because of their many steps.",
          "seconds per sample of the one-step families (VAE, GAN) against each diffusion model at "
          "its default sampler (DDPM: DDIM-50); the NFE sweep shows what fewer steps cost in "
          "FID, and flow matching at few NFE",
          (Part("slower to sample", ("autoencoder", "adversarial"), ("diffusion",),
                ("seconds_per_sample",)),),
          literature=(
              Finding(DDIM, "DDPMs need a Markov chain of many steps per sample; DDIM produces "
                      "high-quality samples 10x to 50x faster in wall-clock time than DDPM, "
                      "still with tens of steps", "slower to sample", stats.SUPPORTED),
              Finding(XIAO, "GANs sample in one network evaluation; diffusion models are slow "
                      "to sample", "slower to sample", stats.SUPPORTED),
              Finding(LIPMAN, "flow matching with optimal-transport paths samples with fewer "
                      "function evaluations than the same model trained with diffusion paths; "
                      "flow matching is a family of its own here, not in this claim"))),
    Claim("GANs give finer control over the features of what they generate than diffusion "
          "models.",
          "for class-conditional runs (compare --class-conditional): the share of samples the "
          "dataset's classifier reads as the class they were drawn for, each GAN against each "
          "diffusion and flow model at matched FID (their classifier-free guidance scale of 1, "
          "2 or 4 whose FID, on the same number of samples, is nearest the GANs'), so neither "
          "side buys accuracy with quality; the latent's path length is shown within a family "
          "only (it depends on the latent's dimension and prior), and the control figures show "
          "the paths",
          (Part("steers to the requested class better at matched FID", ("adversarial",),
                ("diffusion", "flow-matching"), (MATCHED,)),),
          literature=(
              Finding(KARRAS, "path length and linear separability measure how smoothly and "
                      "how separably a GAN's latent space steers its images, within GANs"),
              Finding(MIYATO, "a projection discriminator gave class-conditional GAN samples "
                      "on ImageNet a better Inception score and intra-class FID than "
                      "concatenating the label; no diffusion model was in the study"),
              Finding(HO_SALIMANS, "raising the classifier-free guidance scale makes a "
                      "diffusion model's samples more typical of their class (higher Inception "
                      "score) at the cost of diversity and, beyond small scales, FID"),
              Finding(DHARIWAL_NICHOL, "classifier guidance steers a diffusion model towards a "
                      "class, trading diversity for fidelity; neither paper compares control "
                      "across families"))),
    Claim("Autoregressive models give the best likelihoods, and sample the slowest.",
          "the NLL of the 8-bit test images in bits per dimension of each autoregressive model "
          "against every family whose likelihood is of the same 8-bit images (exact for an "
          "autoregressive model, the variational upper bound for a diffusion model, which can "
          "only overstate its NLL; a Bernoulli bound of grey levels is another quantity and is "
          "left out), and the seconds per sample of every other family against each "
          "autoregressive model (one network call per pixel)",
          (Part("best likelihood", ("autoregressive",),
                ("autoencoder", "diffusion", "flow-matching"), (ONE_SCALE,)),
           Part("samples the slowest", ("autoencoder", "adversarial", "diffusion",
                                        "flow-matching"), ("autoregressive",),
                ("seconds_per_sample",))),
          literature=(
              Finding(PIXEL_RNN, "on CIFAR-10 PixelCNN reaches 3.14 bits/dim and PixelRNN "
                      "3.00, below every earlier model in their table, a diffusion model "
                      "among them", "best likelihood", stats.SUPPORTED),
              Finding(HO_DDPM, "their CIFAR-10 diffusion model's NLL bound (3.70 bits/dim) is "
                      "worse than the likelihoods of other likelihood-based models, "
                      "autoregressive ones included, while its samples are better",
                      "best likelihood", stats.SUPPORTED),
              Finding(VDM, "diffusion models trained for likelihood (a learned noise schedule, "
                      "Fourier features) reach 2.65 bits/dim on CIFAR-10, better than the "
                      "autoregressive models of the time", "best likelihood",
                      stats.CONTRADICTED),
              Finding(PIXEL_CNN, "sampling is sequential, one network evaluation per pixel, "
                      "where training sees every pixel at once", "samples the slowest",
                      stats.SUPPORTED))),
)


def _of_kind(families: Sequence[str], kinds: tuple[str, ...]) -> list[str]:
    return [f for f in families if recipes.get(f).kind in kinds]


def _applies(claim: Claim, families: Sequence[str]) -> bool:
    return all(_of_kind(families, part.a) and _of_kind(families, part.b)
               for part in claim.parts)


def _seeds(state: dict[str, Any]) -> int:
    return int(state["settings"]["seeds"])


def _test(state: dict[str, Any], key: str, a: str, b: str, leg: int) -> dict[str, Any]:
    """One comparison of family ``a`` against ``b`` on ``key`` at ``leg``, before Holm."""
    out: dict[str, Any] = {"measure": key, "a": a, "b": b}
    va, vb = _values(state, a, key, leg), _values(state, b, key, leg)
    if not va or not vb:
        out.update(verdict="not measured", text=f"{key}: no data for {a if not va else b}")
        return out
    if key == DIVERGED:
        out["text"] = (f"diverged runs {a} {int(sum(va))} of {len(va)} vs {b} {int(sum(vb))} "
                       f"of {len(vb)} (Fisher's exact test)")
    else:
        da, db = stats.summarise(va), stats.summarise(vb)
        out["text"] = f"{key} {a} {_mean_text(da)} vs {b} {_mean_text(db)}"
    if min(len(va), len(vb)) < stats.MIN_SEEDS:
        out.update(verdict="no verdict",
                   text=out["text"] + f" (n = {len(va)}, {len(vb)} < {stats.MIN_SEEDS})")
        return out
    if key == DIVERGED:
        decision = stats.compare_rates(int(sum(va)), len(va), int(sum(vb)), len(vb))
    else:
        m = MEASURE[key]
        assert m.effect is not None and m.better is not None, f"{key} decides no claim"
        try:
            decision = stats.compare(va, vb, m.effect, m.better)
        except ValueError as err:  # a ratio of values that are not all positive
            out.update(verdict="not measured", text=f"{out['text']} ({err})")
            return out
    out["decision"] = decision
    return out


def _mean_text(s: dict[str, Any]) -> str:
    ci = s.get("ci")
    return f"{s['mean']:.4g}" + (f" [{ci[0]:.4g}, {ci[1]:.4g}]" if ci else "") + f" (n={s['n']})"


def _describe(test: dict[str, Any]) -> str:
    """A decided test in words: the improvement of a over b with its interval, the effect it
    had to clear, the adjusted p-value, the verdict and, when undecided, the seeds it needs."""
    d: stats.Decision = test["decision"]
    key = test["measure"]
    if key == DIVERGED:
        core = f"p (Holm) = {d.p_holm:.3g}"
    else:
        m = MEASURE[key]
        assert m.effect is not None
        lo, hi = d.ci
        if m.effect.scale == "log":
            core = (f"{test['a']} better by a factor {math.exp(d.improvement):.3g} [95% CI "
                    f"{math.exp(lo):.3g}, {math.exp(hi):.3g}], effect {math.exp(d.effect):.3g}")
        else:
            core = (f"{test['a']} better by {d.improvement:+.3g} [95% CI {lo:+.3g}, {hi:+.3g}], "
                    f"effect ±{d.effect:.3g}")
        if d.hedges_g is not None:
            core += f", Hedges' g {d.sign * d.hedges_g:+.2g}"
        core += f", p (Holm) = {d.p_holm:.3g}"
    text = f"{test['text']}: {core}: {test['verdict']}"
    if test["verdict"] == stats.UNDECIDED and key != DIVERGED:
        needed = stats.seeds_needed(d)
        test["seeds_needed"] = needed
        text += (f" (about {needed} seeds a family would settle it)" if needed
                 else " (more than 1000 seeds would be needed: the difference sits at the effect)")
    return text


def _combine(verdicts_: list[str]) -> str:
    """One verdict from several that must all hold: the common one where they agree; 'mixed'
    where decided ones disagree; else undecided (or not measured, or no verdict)."""
    kinds = set(verdicts_)
    if not kinds or "not measured" in kinds:
        return "not measured"
    if kinds == {"no verdict"} or "no verdict" in kinds:
        return "no verdict"
    if len(kinds) == 1:
        return verdicts_[0]
    decided = kinds - {stats.UNDECIDED}
    return "mixed" if len(decided) > 1 else stats.UNDECIDED


def claims_at(state: dict[str, Any], leg: int = -1) -> list[dict[str, Any]]:
    """The claims' verdicts at leg ``leg``, with Holm's correction across every test of them
    (one report of the claims at that budget)."""
    families = state["settings"]["families"]
    # a measure taken on some runs only (MEASURE[k].where) is tested where a run recorded it,
    # and between the families that did; the others are named as left out
    taking = {m.key: [f for f in families if _values(state, f, m.key)]
              for m in MEASURES if m.where}
    few = _seeds(state) < stats.MIN_SEEDS
    applying = [c for c in CLAIMS if _applies(c, families)]
    layout = []  # (claim, [(part, [tests])])
    for claim in applying:
        parts = []
        for part in claim.parts:
            keys = [k for k in part.measures if taking.get(k, True)]
            tests = [_test(state, key, a, b, leg) for key in keys
                     for a in _of_kind(families, part.a) for b in _of_kind(families, part.b)
                     if key not in taking or {a, b} <= set(taking[key])]
            parts.append((part, tests))
        layout.append((claim, parts))
    decided = [t for _, parts in layout for _, tests in parts for t in tests if "decision" in t]
    for t, d in zip(decided, stats.decide([t["decision"] for t in decided])):
        t["decision"] = d
        t["verdict"] = d.verdict if not few else "no verdict"
    out = []
    for claim, parts in layout:
        judged, evidence = [], []
        for part, tests in parts:
            for key in part.measures:
                left = [f for f in _of_kind(families, (*part.a, *part.b))
                        if taking.get(key) and f not in taking[key]]
                if left:
                    evidence.append(f"{part.label}: {', '.join(left)} left out of "
                                    f"{MEASURE[key].label}: not taken on their runs")
            if not tests:
                where = sorted({MEASURE[k].where for k in part.measures
                                if k in MEASURE and MEASURE[k].where})
                evidence.append(f"{part.label}: not measured: taken on {', '.join(where)} "
                                f"runs only, and this comparison's families of these kinds have "
                                f"none on both sides")
            for t in tests:
                evidence.append(f"{part.label}: " + (_describe(t) if "decision" in t
                                                     else f"{t['text']}: {t['verdict']}"))
            judged.append({"part": part.label, "verdict": _combine([t["verdict"] for t in tests]),
                           "tests": [_test_record(t) for t in tests]})
        if not parts:
            overall = "not tested"
        elif len({p["verdict"] for p in judged}) == 1:
            overall = judged[0]["verdict"]
        else:
            overall = "mixed: " + "; ".join(f"{p['part']} {p['verdict']}" for p in judged)
        out.append({"claim": claim.text, "test": claim.test, "verdict": overall,
                    "parts": judged, "evidence": evidence,
                    "families": sorted({f for part in claim.parts
                                        for f in _of_kind(families, (*part.a, *part.b))})})
    return out


def _test_record(t: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in t.items() if k != "decision"}
    if "decision" in t:
        out["decision"] = t["decision"].as_dict()
    return out


def budget(state: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Per family and leg: the training it had (minutes, steps, epochs, images seen; means over
    seeds), whether it is converged (not in LR warm-up, at least one epoch, FID no longer falling
    by more than 20% since the leg before) and whether it used its budget."""
    minutes = float(state["settings"].get("minutes", 0))
    out: dict[str, list[dict[str, Any]]] = {}
    for family in state["settings"]["families"]:
        rows = []
        for i, fraction in enumerate(LEGS):
            legs = [r["legs"][i] for r in state["runs"].values()
                    if r["family"] == family and len(r.get("legs", [])) > i]
            if not legs:
                break
            row: dict[str, Any] = {"fraction": fraction, "budget_minutes": fraction * minutes}
            for key in ("train_seconds", "step", "epoch", "images_seen", "train_flops"):
                have = [leg[key] for leg in legs if key in leg]
                if have:
                    row[key] = statistics.fmean(have)
            row["minutes"] = row.pop("train_seconds", 0.0) / 60
            reasons = []
            if any(leg.get("in_warmup") for leg in legs):
                reasons.append("in LR warm-up")
            if "epoch" in row and row["epoch"] < MIN_EPOCHS:
                reasons.append(f"under {MIN_EPOCHS:g} epoch")
            now = _values(state, family, "fid", i)
            before = _values(state, family, "fid", i - 1) if i else []
            fall = 1 - statistics.fmean(now) / statistics.fmean(before) if now and before else 0
            if not i:
                reasons.append("no earlier leg to show FID levelling off")
            elif not (now and before):
                reasons.append("no FID at this leg and the one before to show it levelling off")
            elif fall > FID_STILL_FALLING:
                reasons.append(f"FID fell {fall:.0%} since the {LEGS[i - 1]:.0%} leg")
            row["not_converged"] = reasons
            # a run whose epochs ran out stops before its minutes: it did not use its budget
            row["ended_early"] = sum(bool(leg.get("ended_early")) for leg in legs)
            rows.append(row)
        out[family] = rows
    return out


def verdicts(state: dict[str, Any]) -> list[dict[str, Any]]:
    """Each textbook claim that applies to the families (by their recipes' kinds), split into
    the parts it asserts, each tested on its measures family against family at the full budget
    (genlab.stats: 95% Welch intervals against each measure's minimal effect, Holm across the
    report), with the verdict at every leg (``by_leg``) and the budget each family had. Fewer
    than 3 seeds: every part reads 'no verdict'."""
    legs = [claims_at(state, i) for i in range(len(LEGS))]
    stamps = budget(state)
    final = legs[-1]
    for j, claim in enumerate(final):
        claim["by_leg"] = [{"fraction": f, "verdict": legs[i][j]["verdict"],
                            "parts": [p["verdict"] for p in legs[i][j]["parts"]]}
                           for i, f in enumerate(LEGS)]
        claim["budget"] = {f: stamps[f][-1] for f in claim["families"] if stamps.get(f)}
        caveats = [f"{f}: {', '.join(s['not_converged'])}" for f, s in claim["budget"].items()
                   if s.get("not_converged")]
        claim["converged"] = not caveats
        claim["caveat"] = ("at this budget, before convergence (" + "; ".join(caveats) + ")"
                           if caveats else "")
        claim["literature"] = literature(claim)
    return final


def agreement(expects: str | None, verdict: str) -> str:
    """Whether genlab's verdict on a part agrees with a paper that expects ``expects`` of it:
    'agree' (the same verdict), 'disagree' (the opposite one, or no meaningful difference where
    the paper reports one), 'undecided' (undecided, mixed, no verdict or not measured), or
    'context' (a finding no part tests)."""
    if expects is None:
        return "context"
    if verdict == expects:
        return "agree"
    if verdict in (stats.SUPPORTED, stats.CONTRADICTED, stats.EQUIVALENT):
        return "disagree"
    return "undecided"


def literature(claim: dict[str, Any]) -> list[dict[str, Any]]:
    """The published findings on a judged claim (``verdicts``), each with the verdict of the
    part it speaks to at the full budget and whether they agree (``agreement``)."""
    declared = next(c for c in CLAIMS if c.text == claim["claim"])
    parts = {p["part"]: p["verdict"] for p in claim["parts"]}
    out = []
    for f in declared.literature:
        verdict = parts.get(f.part, "not tested") if f.part else None
        out.append({"cite": f.cite, "says": f.says, "part": f.part, "expects": f.expects,
                    "verdict": verdict,
                    "agreement": agreement(f.expects, verdict) if f.part else "context"})
    return out


def _grid_row(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Runs, diverged, collapsed (of those whose collapse was measured), failed (either), and
    the final FID of the runs that did not diverge: mean, SD, min, median, max; loss spikes'
    mean (descriptive)."""
    diverged = ["diverged" in r for r in records]
    collapsed = [bool(r.get("final", {}).get("collapsed")) for r in records]
    fids = [r["final"]["fid"] for r, d in zip(records, diverged)
            if not d and "fid" in r.get("final", {})]
    spikes = [r["final"]["loss_spikes"] for r in records if "loss_spikes" in r.get("final", {})]
    row: dict[str, Any] = {
        "runs": len(records), "diverged": sum(diverged), "collapsed": sum(collapsed),
        "collapse_measured": sum("collapsed" in r.get("final", {}) for r in records),
        "failed": sum(d or c for d, c in zip(diverged, collapsed)),
        "seeds": sorted({int(r["seed"]) for r in records})}
    row["failed_rate"] = row["failed"] / len(records) if records else None
    if fids:
        row["fid"] = {**stats.summarise(fids), "min": min(fids), "max": max(fids),
                      "median": statistics.median(fids)}
    if spikes:
        row["loss_spikes"] = statistics.fmean(spikes)
    return row


def stability(state: dict[str, Any]) -> dict[str, Any]:
    """Stability as Lucic et al. 2018 measured it for GANs: per family, over seeds 0..k-1 and
    the learning-rate grid (x0.5 and x2 the preset's rates, and x1: the main runs of those
    seeds), how many runs diverged (a non-finite loss) or collapsed (samples in under half of
    the classes as many real images fall in), and the spread of the final FID of the runs that
    did not diverge, per rate and over all of them. Descriptive: no verdict rests on it. Empty
    without --lr-grid."""
    s = state["settings"]
    grid = s.get("lr_grid") or []
    if not grid:
        return {}
    seeds = int(s["lr_grid_seeds"])
    out: dict[str, Any] = {"factors": sorted([*grid, 1.0]), "seeds": seeds, "families": {}}
    for family in s["families"]:
        by_factor = {1.0: [r for r in state["runs"].values()
                           if r["family"] == family and int(r["seed"]) < seeds]}
        for factor in grid:
            by_factor[factor] = [r for r in state.get("lr_grid_runs", {}).values()
                                 if r["family"] == family and r["lr_factor"] == factor]
        lrs = next(({k: v / r["lr_factor"] for k, v in r["lrs"].items()}
                    for rs in by_factor.values() for r in rs if "lrs" in r), {})
        rows = []
        for factor in out["factors"]:
            rows.append({"factor": factor, "lrs": {k: v * factor for k, v in lrs.items()},
                         **_grid_row(by_factor[factor])})
        out["families"][family] = {
            "rows": rows, "overall": _grid_row([r for rs in by_factor.values() for r in rs])}
    return out


def rule(state: dict[str, Any]) -> dict[str, Any]:
    """The decision rule as the report states it, and whether it gave verdicts."""
    seeds = _seeds(state)
    return {"alpha": stats.ALPHA, "min_seeds": stats.MIN_SEEDS, "seeds": seeds,
            "verdicts": seeds >= stats.MIN_SEEDS,
            "effects": {m.key: {"effect": m.effect.text, "reason": m.effect.reason}
                        for m in MEASURES if m.effect is not None
                        and any(_values(state, f, m.key)
                                for f in state["settings"]["families"])}}


def _compare_figures(state: dict[str, Any], out: Path) -> dict[str, str]:
    """FID against training minutes and against training FLOPs (all families: the mean over
    seeds at each leg, with the band of the seeds' lowest to highest), and FID against NFE
    (iterative ones)."""
    curves: dict[str, dict[str, list[float]]] = {}
    for family in state["settings"]["families"]:
        by_leg: dict[float, list[dict[str, Any]]] = {}
        for record in state["runs"].values():
            if record["family"] == family:
                for leg in record["legs"]:
                    if "fid" in leg:
                        by_leg.setdefault(leg["fraction"], []).append(leg)
        if not by_leg:
            continue
        legs = [by_leg[f] for f in sorted(by_leg)]
        curves[family] = {
            "minutes": [statistics.fmean(g["train_seconds"] / 60 for g in legs_)
                        for legs_ in legs],
            "flops": [statistics.fmean(g.get("train_flops", math.nan) for g in legs_)
                      for legs_ in legs],
            "fid": [statistics.fmean(g["fid"] for g in legs_) for legs_ in legs],
            "lo": [min(g["fid"] for g in legs_) for legs_ in legs],
            "hi": [max(g["fid"] for g in legs_) for legs_ in legs]}
    figs = {}
    if curves:
        figs["fid_vs_minutes"] = str(plots.save_budget_curves(
            curves, out / "figures" / "fid_vs_training_minutes.png",
            f"quality against training budget (mean over seeds; band: lowest to highest of "
            f"{state['settings']['seeds']} seed(s))").relative_to(out))
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
