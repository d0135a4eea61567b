"""Training schedules as functions of progress: the learning-rate warm-up and decay, and the
EMA decay of the inference network's weights. No torch: plain numbers in, plain numbers out.

Progress is the fraction of the run that is spent, in [0, 1]. A run bounded by steps (or epochs)
has spent step / total of them; a run with a time budget (``--max-minutes``, or the budget a
comparison gives the whole run while it trains it leg by leg) has spent trained seconds /
budget seconds of it; with both, the bound nearer its end: the run stops when either is
reached, so the schedule ends where the run does. Budgeted training is best spent on a schedule
that decays to zero exactly when the budget ends (Li, Yumer & Ramanan, ICLR 2020): a schedule
counted in steps either decays too early or never does.
"""

from __future__ import annotations

import functools
import math

SCHEDULES = ("constant", "cosine", "linear")
MAX_SIGMA_REL = math.sqrt(1 / 12)  # the power-function EMA's widest profile (gamma = 0)


def progress(step: int, total_steps: int | None, seconds: float, budget_seconds: float) -> float:
    """The fraction of the run spent before ``step``: the larger of step / total_steps (when the
    run has a step bound) and seconds / budget_seconds (when it has a time budget), capped at 1."""
    parts = []
    if total_steps:
        parts.append(step / total_steps)
    if budget_seconds > 0:
        parts.append(seconds / budget_seconds)
    if not parts:
        raise ValueError("a run needs a step bound or a time budget to have progress")
    return min(1.0, max(parts))


def lr_factor(schedule: str, fraction: float, warmup_fraction: float = 0.0,
              step: int = 0, warmup_steps: int = 0, total_steps: int = 0) -> float:
    """Learning-rate multiplier at progress ``fraction``: a linear warm-up over the first
    ``warmup_steps`` steps or the first ``warmup_fraction`` of the run, then 'constant', 'cosine'
    (half a cosine to zero) or 'linear' (a straight line to zero) over the rest. The warm-up
    starts at 1/100 of the rate where it is counted in progress (its first step is at progress
    0) and at 1/warmup_steps where it is counted in steps; a warm-up in steps of a run bounded
    by ``total_steps`` alone ends at progress warmup_steps / total_steps, and the decay spans
    what follows (with a time budget the decay spans the whole budget)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; expected one of {SCHEDULES}")
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    if warmup_fraction and fraction < warmup_fraction:
        return max(0.01, fraction / warmup_fraction)
    start = warmup_fraction or (warmup_steps / total_steps if warmup_steps and total_steps
                                else 0.0)
    rest = min(1.0, max(0.0, (fraction - start) / (1.0 - start))) if start < 1 else 1.0
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * rest))
    if schedule == "linear":
        return 1.0 - rest
    return 1.0


def power_ema_sigma(gamma: float) -> float:
    """The relative standard deviation of the power-function EMA profile of exponent ``gamma``
    (Karras et al. 2024, "Analyzing and Improving the Training Dynamics of Diffusion Models",
    eq. 3): the width of the averaging window as a share of the run so far."""
    return math.sqrt((gamma + 1) / ((gamma + 2) ** 2 * (gamma + 3)))


@functools.cache
def power_ema_gamma(sigma_rel: float) -> float:
    """The exponent gamma >= 0 whose profile has relative width ``sigma_rel`` (EDM2's
    sigma_rel = 0.05 is gamma ~ 16.97, 0.10 is ~ 6.94): ``power_ema_sigma`` inverted by
    bisection (for gamma >= 0 it falls monotonically from 1/sqrt(12) ~ 0.289 towards 0)."""
    if not 0 < sigma_rel <= MAX_SIGMA_REL:
        raise ValueError(f"sigma_rel must be in (0, {MAX_SIGMA_REL:.3f}], got {sigma_rel}")
    lo, hi = 0.0, 1.0
    while power_ema_sigma(hi) > sigma_rel:
        hi *= 2
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if power_ema_sigma(mid) > sigma_rel else (lo, mid)
    return (lo + hi) / 2


def ema_decay(step: int, decay: float = 0.0, sigma_rel: float = 0.0) -> float:
    """The EMA decay used after optimizer step ``step`` (0-based): the power-function EMA's
    (1 - 1/t)^(gamma + 1) with t = step + 1 where ``sigma_rel`` > 0 (an average over the last
    ~sigma_rel of the run so far, however long it is: no warm-up is needed, and a short run is
    averaged as much as a long one, in proportion), else the fixed ``decay`` ramped in as
    min(decay, (1 + step) / (10 + step)) so that early on the average forgets the
    initialisation."""
    if sigma_rel > 0:
        t = step + 1
        return (1.0 - 1.0 / t) ** (power_ema_gamma(sigma_rel) + 1)
    return min(decay, (1 + step) / (10 + step))

