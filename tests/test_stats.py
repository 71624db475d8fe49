"""The benchmark's statistics (``etpo_agents.stats``) on hand-made numbers with known answers."""

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from etpo_agents.stats import frontier_value, holm_bonferroni, minimal_detectable_effect, paired_test, verdict

# Base at T = 1, 0.7, 0.5 (KL 0, 0.5, 1.5 nats/action): mean reward 0.4, 0.6, 0.65.
KL, REWARD = [1.5, 0.0, 0.5], [0.65, 0.4, 0.6]


def test_frontier_interpolates_between_points():
    assert frontier_value(0.0, KL, REWARD) == pytest.approx(0.4)
    assert frontier_value(0.25, KL, REWARD) == pytest.approx(0.5)  # halfway from (0, 0.4) to (0.5, 0.6)
    assert frontier_value(1.0, KL, REWARD) == pytest.approx(0.625)  # halfway from (0.5, 0.6) to (1.5, 0.65)


def test_frontier_is_flat_beyond_its_largest_kl_and_never_decreases():
    assert frontier_value(40.0, KL, REWARD) == pytest.approx(0.65)
    # A sharper point that scores worse (collapse) does not lower the frontier for larger budgets.
    assert frontier_value(3.0, [0.0, 1.0, 2.0], [0.4, 0.7, 0.5]) == pytest.approx(0.7)
    assert frontier_value(1.5, [0.0, 1.0, 2.0], [0.4, 0.7, 0.5]) == pytest.approx(0.7)  # interp gives 0.6


def test_paired_test_matches_hand_computation_and_scipy():
    agent, base = np.array([0.5, 0.7, 0.6, 0.8]), np.array([0.4, 0.5, 0.5, 0.5])
    result = paired_test(list(agent - base))  # differences 0.1, 0.2, 0.1, 0.3: mean 0.175
    sd = math.sqrt(((0.075**2) * 2 + 0.025**2 + 0.125**2) / 3)
    assert result.n == 4
    assert result.mean == pytest.approx(0.175)
    assert result.sd == pytest.approx(sd)
    assert result.cohen_dz == pytest.approx(0.175 / sd)
    t = 0.175 / (sd / 2)
    assert result.p_value == pytest.approx(2 * scipy_stats.t.sf(t, 3))
    assert result.p_value == pytest.approx(scipy_stats.ttest_rel(agent, base).pvalue)
    half = scipy_stats.t.ppf(0.975, 3) * sd / 2
    assert (result.ci_low, result.ci_high) == pytest.approx((0.175 - half, 0.175 + half))


def test_paired_test_needs_two_units_and_variance():
    one = paired_test([0.3])
    assert one.p_value is None and "needs >= 2" in one.note and verdict(one, None) == "undetermined"
    flat = paired_test([0.1, 0.1, 0.1])
    assert flat.p_value is None and "no seed variance" in flat.note
    assert paired_test([]).n == 0


def test_holm_bonferroni_by_hand():
    # sorted 0.01, 0.02, 0.04 with m = 3: 3*0.01 = 0.03, max(0.03, 2*0.02) = 0.04, max(0.04, 1*0.04) = 0.04
    assert holm_bonferroni([0.04, 0.01, None, 0.02]) == pytest.approx([0.04, 0.03, None, 0.04])
    # monotone step-down and capped at 1
    assert holm_bonferroni([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    assert holm_bonferroni([0.001, 0.9]) == pytest.approx([0.002, 0.9])


def test_minimal_detectable_effect_has_the_stated_power():
    sd, n = 0.2, 5
    mde = minimal_detectable_effect(sd, n)
    crit, nc = scipy_stats.t.ppf(0.975, n - 1), mde * math.sqrt(n) / sd
    power = scipy_stats.nct.sf(crit, n - 1, nc) + scipy_stats.nct.cdf(-crit, n - 1, nc)
    assert power == pytest.approx(0.8, abs=1e-6)
    # large n: the normal approximation (1.960 + 0.842) sd / sqrt(n)
    assert minimal_detectable_effect(1.0, 10_000) == pytest.approx(2.8016 / 100, rel=2e-3)
    assert math.isnan(minimal_detectable_effect(0.2, 1)) and minimal_detectable_effect(0.0, 5) == 0.0


def test_verdict_uses_the_adjusted_p_value():
    up, down = paired_test([0.1, 0.2, 0.1, 0.3]), paired_test([-0.1, -0.2, -0.1, -0.3])
    assert verdict(up, 0.01) == "above" and verdict(down, 0.01) == "below" and verdict(up, 0.2) == "on"
