"""The decision rule of ``genlab compare``: estimates over seeds with confidence intervals, a
minimal meaningful effect per measure, equivalence, Holm's correction, and the seeds a question
needs. Pure statistics on lists of numbers (scipy.stats); nothing here knows about models.

A comparison of measure values ``a`` (one per seed of family A) and ``b`` (family B) asks whether
A is better than B by at least the measure's minimal meaningful effect delta. On the measure's
analysis scale (the values themselves, or their logarithms for a relative effect or a ratio) the
*improvement* g is mean(a) - mean(b), sign-flipped where lower is better, so that g > 0 favours A.
Its Welch t confidence interval (unequal variances; Welch 1947) at level 1 - alpha (95%) decides:

- *supported*: the interval lies above +delta (A better by at least the effect);
- *contradicted*: it lies below -delta (B better by at least the effect);
- *no meaningful difference*: it lies inside (-delta, +delta) (equivalence, as Schuirmann's two
  one-sided tests at alpha / 2 each);
- *undecided*: otherwise.

Each of these is a one-sided test at alpha / 2, and the three outcomes are disjoint, so whatever
the true difference, a part's verdict is false with probability at most alpha (at most two of the
three can be false at once). A part's p-value is twice the smallest of its three one-sided ones;
Holm's step-down correction (Holm 1979) across the parts of one report keeps the chance of any
false verdict in it at most alpha. ``tests/test_stats.py`` measures both by simulation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from scipy import stats as sps

ALPHA = 0.05
"""the chance of a false verdict that the rule allows per part, and per report after Holm"""
POWER = 0.8
"""the chance of settling a question that ``seeds_needed`` plans for (Cohen's convention)"""
MIN_SEEDS = 3
"""seeds per family below which no verdict is given: with two, a standard deviation rests on one
degree of freedom and the t interval is ~6 standard errors wide; a verdict would be a guess"""

SUPPORTED, CONTRADICTED, EQUIVALENT, UNDECIDED = (
    "supported", "contradicted", "no meaningful difference", "undecided")


@dataclass(frozen=True)
class Effect:
    """The smallest difference of a measure that a verdict may rest on, and why."""

    scale: Literal["absolute", "log"]
    """'absolute': differences of the values; 'log': differences of their logarithms (a ratio)"""
    size: float
    """delta on that scale (> 0)"""
    text: str
    """how a reader says it: '10% relative', 'ratio 1.25', '0.05 absolute'"""
    reason: str
    """why this size"""

    def transform(self, values: Sequence[float]) -> list[float]:
        if self.scale == "absolute":
            return [float(v) for v in values]
        if any(v <= 0 for v in values):
            raise ValueError(f"a {self.text} effect needs positive values, got {list(values)}")
        return [math.log(v) for v in values]


def relative(fraction: float, reason: str) -> Effect:
    """An effect of ``fraction`` relative difference (a ratio of 1 + fraction, tested on logs)."""
    return Effect("log", math.log1p(fraction), f"{fraction:.0%} relative", reason)


def ratio(factor: float, reason: str) -> Effect:
    """An effect of a ratio of ``factor`` (tested on logs: symmetric in which side is faster)."""
    return Effect("log", math.log(factor), f"ratio {factor:g}", reason)


def absolute(size: float, reason: str, unit: str = "") -> Effect:
    """An effect of ``size`` in the measure's own units."""
    return Effect("absolute", size, f"{size:g}{' ' + unit if unit else ''} absolute", reason)


@dataclass(frozen=True)
class Welch:
    """Welch's t for mean(a) - mean(b) with unequal variances."""

    mean_a: float
    mean_b: float
    sd_a: float
    sd_b: float
    n_a: int
    n_b: int
    diff: float
    """mean(a) - mean(b)"""
    se: float
    """its standard error, sqrt(sd_a^2 / n_a + sd_b^2 / n_b)"""
    df: float
    """Welch-Satterthwaite degrees of freedom (inf when both SDs are 0)"""
    t: float
    p: float
    """two-sided p-value of mean(a) = mean(b)"""


def _mean_sd(values: Sequence[float]) -> tuple[float, float]:
    n = len(values)
    mean = math.fsum(values) / n
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, sd


def welch(a: Sequence[float], b: Sequence[float]) -> Welch:
    """Welch's unequal-variances t statistic of mean(a) - mean(b): the same t, df and p as
    ``scipy.stats.ttest_ind(a, b, equal_var=False)``. Needs two values a side."""
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"Welch's t needs at least 2 values a side, got {len(a)} and {len(b)}")
    (ma, sa), (mb, sb) = _mean_sd(a), _mean_sd(b)
    va, vb = sa**2 / len(a), sb**2 / len(b)
    se = math.sqrt(va + vb)
    diff = ma - mb
    if se == 0:  # deterministic measures (FLOPs, NFE): the difference is exact
        t = 0.0 if diff == 0 else math.copysign(math.inf, diff)
        return Welch(ma, mb, sa, sb, len(a), len(b), diff, 0.0, math.inf, t,
                     1.0 if diff == 0 else 0.0)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    t = diff / se
    return Welch(ma, mb, sa, sb, len(a), len(b), diff, se, df, t, float(2 * sps.t.sf(abs(t), df)))


def _sf(x: float, df: float) -> float:
    """P(T > x) for Student's t with df degrees of freedom (the normal at df = inf)."""
    return float(sps.norm.sf(x) if math.isinf(df) else sps.t.sf(x, df))


def _ppf(q: float, df: float) -> float:
    return float(sps.norm.ppf(q) if math.isinf(df) else sps.t.ppf(q, df))


def interval(w: Welch, level: float, sign: float = 1.0) -> tuple[float, float]:
    """The two-sided ``level`` confidence interval of sign * (mean(a) - mean(b))."""
    half = 0.0 if w.se == 0 else _ppf(0.5 + level / 2, w.df) * w.se
    lo, hi = sign * w.diff - half, sign * w.diff + half
    return lo, hi


def hedges_g(w: Welch) -> float | None:
    """Standardised mean difference (a - b) / pooled SD with Hedges' small-sample correction
    J = 1 - 3 / (4 (n_a + n_b) - 9); None when both SDs are 0."""
    pooled = math.sqrt(((w.n_a - 1) * w.sd_a**2 + (w.n_b - 1) * w.sd_b**2) / (w.n_a + w.n_b - 2))
    if pooled == 0:
        return None
    return w.diff / pooled * (1 - 3 / (4 * (w.n_a + w.n_b) - 9))


@dataclass(frozen=True)
class Decision:
    """One comparison of family A against family B on one measure, before and after Holm."""

    improvement: float
    """g: how much A beats B on the analysis scale (log ratio for relative effects)"""
    ci: tuple[float, float]
    """the 1 - alpha (95%) Welch interval of g"""
    effect: float
    """delta on the same scale"""
    p: float
    """twice the smallest of the three one-sided p-values (supported, contradicted, equivalent)"""
    candidate: str
    """the verdict that p is for"""
    hedges_g: float | None
    welch: Welch
    sign: float
    """+1 where higher is better, -1 where lower is: g = sign * (mean(a) - mean(b))"""
    verdict: str = UNDECIDED
    """after Holm (``decide``): the candidate when its adjusted p <= alpha, else undecided"""
    p_holm: float | None = None
    ci_holm: tuple[float, float] | None = None
    """the interval at the level Holm's step applied to this part: 1 - alpha / (m - rank + 1)"""

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["welch"] = asdict(self.welch)
        return out


def compare(a: Sequence[float], b: Sequence[float], effect: Effect,
            better: Literal["lower", "higher"], alpha: float = ALPHA) -> Decision:
    """Whether A (values ``a``, one per seed) beats B by at least ``effect``; the verdict before
    correction for the other parts of the report (``decide`` applies Holm's)."""
    if better not in ("lower", "higher"):
        raise ValueError(f"better must be 'lower' or 'higher', got {better!r}")
    w = welch(effect.transform(a), effect.transform(b))
    sign = 1.0 if better == "higher" else -1.0
    g, delta = sign * w.diff, effect.size
    if w.se == 0:  # exact: the interval is a point
        p_sup, p_con = float(g <= delta), float(g >= -delta)
        p_eq = float(abs(g) >= delta)
    else:
        p_sup = _sf((g - delta) / w.se, w.df)            # H0: g <= delta
        p_con = _sf((-g - delta) / w.se, w.df)           # H0: g >= -delta
        p_eq = max(_sf((g + delta) / w.se, w.df),        # H0: g <= -delta
                   _sf((delta - g) / w.se, w.df))        # H0: g >= delta (TOST: both)
    candidates = {SUPPORTED: p_sup, CONTRADICTED: p_con, EQUIVALENT: p_eq}
    candidate = min(candidates, key=lambda k: candidates[k])
    p = min(1.0, 2 * candidates[candidate])
    verdict = candidate if p <= alpha else UNDECIDED
    return Decision(g, interval(w, 1 - alpha, sign), delta, p, candidate, hedges_g(w), w, sign,
                    verdict)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (Holm 1979): sorted ascending, the i-th (from 0) is
    multiplied by m - i and made non-decreasing; reject where adjusted <= alpha."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def decide(decisions: Sequence[Decision], alpha: float = ALPHA) -> list[Decision]:
    """The decisions of one report with Holm's correction across them: each keeps its candidate
    verdict where its adjusted p <= alpha, else is undecided; each gets the interval at the level
    its Holm step used."""
    from dataclasses import replace

    adjusted = holm([d.p for d in decisions])
    order = sorted(range(len(decisions)), key=lambda i: decisions[i].p)
    rank = {i: r for r, i in enumerate(order)}
    out = []
    for i, d in enumerate(decisions):
        level = 1 - alpha / (len(decisions) - rank[i])
        out.append(replace(d, verdict=d.candidate if adjusted[i] <= alpha else UNDECIDED,
                           p_holm=adjusted[i], ci_holm=interval(d.welch, level, d.sign)))
    return out


def seeds_needed(d: Decision, alpha: float = ALPHA, power: float = POWER,
                 most: int = 1000) -> int | None:
    """Seeds per family at which this comparison would be settled with probability ``power``,
    if the true difference and SDs were the observed ones (a standard power calculation on the
    noncentral t; unadjusted for Holm, which asks a few more): the 1 - alpha interval clearing
    +-delta when |g| > delta, else lying inside it. None when more than ``most`` would be needed
    (|g| at delta, or no spread to plan from)."""
    w, g, delta = d.welch, abs(d.improvement), d.effect
    variance = w.sd_a**2 + w.sd_b**2
    if variance == 0 or g == delta:
        return None

    def settles(n: int) -> bool:
        se = math.sqrt(variance / n)
        df = variance**2 / ((w.sd_a**4 + w.sd_b**4) / (n - 1))
        crit = _ppf(1 - alpha / 2, df)
        if g > delta:
            return float(sps.nct.sf(crit, df, (g - delta) / se)) >= power
        # equivalence: both one-sided tests must reject (a lower bound on TOST's power)
        both = (float(sps.nct.sf(crit, df, (delta - g) / se))
                + float(sps.nct.sf(crit, df, (delta + g) / se)) - 1)
        return both >= power

    if not settles(most):
        return None
    lo, hi = 2, most  # settles() grows with n: the smallest n that settles
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if settles(mid) else (mid + 1, hi)
    return max(lo, MIN_SEEDS)


def summarise(values: Sequence[float], level: float = 1 - ALPHA,
              floor: float | None = None) -> dict[str, Any]:
    """Mean, SD, n and the t interval of the mean of ``values`` (no interval below 2 values);
    ``floor``: the least value the measure can take (0 for a count), where the interval is cut."""
    mean, sd = _mean_sd(values)
    out: dict[str, Any] = {"mean": mean, "std": sd, "n": len(values)}
    if len(values) > 1:
        half = float(sps.t.ppf(0.5 + level / 2, len(values) - 1)) * sd / math.sqrt(len(values))
        low = mean - half if floor is None else max(floor, mean - half)
        out["ci"] = [low, mean + half]
    return out


def compare_rates(events_a: int, n_a: int, events_b: int, n_b: int,
                  alpha: float = ALPHA) -> Decision:
    """Whether A has fewer events (diverged runs) per run than B, by Fisher's exact test, one-sided
    each way at alpha / 2: supported (A fewer) or contradicted (B fewer), never 'no meaningful
    difference' (a few runs cannot show two rates equal). The effect is any difference that the
    test detects: at 5 seeds a side only 0 of 5 against 4 or 5 of 5 does."""
    table = [[events_a, n_a - events_a], [events_b, n_b - events_b]]
    p_sup = float(sps.fisher_exact(table, alternative="less").pvalue)
    p_con = float(sps.fisher_exact(table, alternative="greater").pvalue)
    candidate = SUPPORTED if p_sup <= p_con else CONTRADICTED
    p = min(1.0, 2 * min(p_sup, p_con))
    w = welch([1.0] * events_a + [0.0] * (n_a - events_a),
              [1.0] * events_b + [0.0] * (n_b - events_b))
    rate = events_b / n_b - events_a / n_a
    return Decision(rate, interval(w, 1 - alpha, -1.0), 0.0, p, candidate, None, w, -1.0,
                    candidate if p <= alpha else UNDECIDED)


def kl_divergence(counts: Sequence[float], reference: Sequence[float],
                  floor: float = 0.5) -> float:
    """KL(p || q) in nats between the histograms ``counts`` (p) and ``reference`` (q), each
    normalised; an empty reference bin gets ``floor`` counts so that the divergence stays finite
    (a sample class the real data never shows is then a large, finite cost)."""
    q = [max(float(c), floor) for c in reference]
    total_p, total_q = math.fsum(counts), math.fsum(q)
    return math.fsum(c / total_p * math.log((c / total_p) / (r / total_q))
                     for c, r in zip(counts, q) if c > 0)
