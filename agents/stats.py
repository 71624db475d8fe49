"""Statistics of the benchmark protocol (``benchmarks/compare.py``, ``docs/benchmark_protocol.md``): pure functions.

* The temperature frontier: the base model's (KL per action, score) points at several temperatures, read as a
  function of the KL budget (:func:`frontier_value`).
* Paired comparisons over units (dataset, seed): the difference of an agent's score and a reference's score in
  the same unit; a paired t-test is the one-sample t-test of those differences (:func:`paired_test`).
* Holm–Bonferroni adjusted p-values across all the comparisons made (:func:`holm_bonferroni`).
* The minimal detectable effect of a paired t-test with 80% power at α = 0.05 two-sided, from the measured
  standard deviation of the differences (:func:`minimal_detectable_effect`): what "no difference" can mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

ALPHA = 0.05
"""Two-sided significance level of every test and the level of the confidence intervals (95%)."""

POWER = 0.8
"""Power of the minimal detectable effect."""


def frontier_value(kl: float, frontier_kl: list[float], frontier_scores: list[float]) -> float:
    """The frontier's score at a KL budget ``kl``: the best score the base model reaches by sharpening alone (its
    temperature points) without paying more than ``kl`` nats per action.

    The points are joined piecewise-linearly in KL; the frontier at ``kl`` is the maximum of that line over
    [0, kl], i.e. ``max(interp(kl), max score of the points with KL <= kl)``, so it never decreases with the
    budget (a policy allowed more KL could sit at a lower-KL point). Beyond the largest measured KL it stays at
    the best score measured (flat: sharpening further is not credited with gains nobody measured); below the
    smallest KL (normally 0, the base at temperature 1) it is that point's score.

    Args:
        kl: KL(π_sample ‖ π_ref) per action of the policy compared, >= 0.
        frontier_kl: KL per action of the frontier's points (any order).
        frontier_scores: their scores (e.g. mean sampled reward), same order.

    Returns:
        The frontier's score at ``kl``.
    """
    if not frontier_kl or len(frontier_kl) != len(frontier_scores):
        raise ValueError(
            f"need as many frontier KLs as scores (>= 1), got {len(frontier_kl)} and {len(frontier_scores)}"
        )
    order = np.argsort(frontier_kl, kind="stable")
    xs, ys = np.asarray(frontier_kl, float)[order], np.asarray(frontier_scores, float)[order]
    line = float(np.interp(kl, xs, ys))  # flat outside [xs[0], xs[-1]]
    reached = ys[xs <= kl]
    return max(line, float(reached.max())) if len(reached) else line


@dataclass(frozen=True)
class PairedResult:
    """A paired comparison: differences d_i = agent_i − reference_i over n units.

    Attributes:
        n: number of paired units.
        mean: mean difference (the effect size in the metric's units).
        ci_low, ci_high: 95% Student-t confidence interval of the mean difference (NaN for n < 2).
        sd: standard deviation of the differences (ddof = 1; NaN for n < 2).
        cohen_dz: standardised effect mean / sd (NaN when sd is 0 or undefined).
        p_value: two-sided paired t-test p-value (None for n < 2 or when every difference is equal).
        mde: minimal detectable effect at 80% power, α = 0.05 two-sided, with this n and sd (NaN for n < 2).
        note: why there is no p-value, or empty.
    """

    n: int
    mean: float
    ci_low: float
    ci_high: float
    sd: float
    cohen_dz: float
    p_value: float | None
    mde: float
    note: str = ""


def paired_test(differences: list[float]) -> PairedResult:
    """Paired t-test of the differences agent − reference over units (the one-sample t-test of the differences).

    t = mean(d) / (sd(d) / sqrt(n)) with n − 1 degrees of freedom; the 95% CI is mean ± t_{0.975, n−1} sd / sqrt(n).
    """
    d = np.asarray([x for x in differences if x is not None and math.isfinite(x)], dtype=float)
    n = len(d)
    if n == 0:
        return PairedResult(0, math.nan, math.nan, math.nan, math.nan, math.nan, None, math.nan, "no paired units")
    mean = float(d.mean())
    if n < 2:
        return PairedResult(1, mean, math.nan, math.nan, math.nan, math.nan, None, math.nan,
                            "one paired unit: a test needs >= 2")  # fmt: skip
    sd = float(d.std(ddof=1)) if np.ptp(d) > 0 else 0.0  # equal values: exactly 0, not a rounding residue
    half = float(stats.t.ppf(1 - ALPHA / 2, n - 1) * sd / math.sqrt(n))
    mde = minimal_detectable_effect(sd, n)
    if sd == 0:
        return PairedResult(n, mean, mean, mean, 0.0, math.nan, None, mde,
                            "every paired difference is equal: no seed variance to test against")  # fmt: skip
    p_value = float(stats.ttest_1samp(d, 0.0).pvalue)
    return PairedResult(n, mean, mean - half, mean + half, sd, mean / sd, p_value, mde)


def holm_bonferroni(p_values: list[float | None]) -> list[float | None]:
    """Holm–Bonferroni adjusted p-values (step-down; controls the family-wise error rate at the level used).

    With the m finite p-values sorted ascending p_(1) <= ... <= p_(m): adjusted p_(i) = max_{j <= i}
    min(1, (m − j + 1) p_(j)). ``None`` entries (no test) are returned as ``None`` and do not count in m.
    Reject at level α exactly when the adjusted p-value is < α.
    """
    indexed = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    adjusted: list[float | None] = [None] * len(p_values)
    m, running = len(indexed), 0.0
    for rank, (p, i) in enumerate(indexed):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def minimal_detectable_effect(sd: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """Smallest true mean difference a two-sided paired t-test over ``n`` units detects with probability ``power``.

    Solves P(|T| > t_{1−α/2, n−1}) = power for δ, where T follows the noncentral t distribution with n − 1 degrees
    of freedom and noncentrality δ sqrt(n) / sd. For large n it approaches (z_{1−α/2} + z_{power}) sd / sqrt(n)
    (2.80 sd / sqrt(n) at the defaults).

    Returns:
        δ in the metric's units (0 when sd is 0; NaN for n < 2).
    """
    if n < 2 or not math.isfinite(sd):
        return math.nan
    if sd == 0:
        return 0.0
    df, crit = n - 1, stats.t.ppf(1 - alpha / 2, n - 1)

    def shortfall(delta: float) -> float:
        nc = delta * math.sqrt(n) / sd
        lower = stats.nct.cdf(-crit, df, nc)  # the wrong-sign tail: negligible, NaN in scipy for large nc
        return stats.nct.sf(crit, df, nc) + (lower if math.isfinite(lower) else 0.0) - power

    upper = 2.8 * sd / math.sqrt(n)  # the normal approximation; the t test needs more: double until enough power
    while shortfall(upper) < 0:
        upper *= 2
    return float(optimize.brentq(shortfall, 0.0, upper, xtol=1e-10 * sd))


def verdict(result: PairedResult, adjusted_p: float | None) -> str:
    """``above``, ``below`` or ``on`` the reference at the Holm-adjusted level α, or ``undetermined`` (no test)."""
    if adjusted_p is None:
        return "undetermined"
    if adjusted_p < ALPHA:
        return "above" if result.mean > 0 else "below"
    return "on"
