"""The benchmark's interval statistics (unlearn_core/research/benchmarks/stats.py): numpy only, no models."""

import math

import numpy as np
import pytest

from unlearn_core.research.benchmarks import stats


def _binom_pmf(k, n, p):
    return math.comb(n, k) * p ** k * (1 - p) ** (n - k)


@pytest.mark.parametrize("n", [16, 48])
@pytest.mark.parametrize("p", [0.05, 0.3, 0.5, 0.9])
def test_clopper_pearson_covers_a_known_binomial_at_least_95_percent(n, p):
    # exact coverage: the probability of drawing a k whose interval contains p
    coverage = sum(_binom_pmf(k, n, p) for k in range(n + 1)
                   if stats.clopper_pearson(k, n)[0] <= p <= stats.clopper_pearson(k, n)[1])
    assert 0.95 <= coverage < 0.995


def test_clopper_pearson_known_values():
    assert stats.clopper_pearson(5, 10) == pytest.approx((0.187086, 0.812914), abs=1e-6)
    assert stats.clopper_pearson(3, 16) == pytest.approx((0.040474, 0.456457), abs=1e-6)
    assert stats.clopper_pearson(0, 16) == pytest.approx((0.0, 1 - 0.025 ** (1 / 16)), abs=1e-12)
    assert stats.clopper_pearson(16, 16) == pytest.approx((0.025 ** (1 / 16), 1.0), abs=1e-12)
    with pytest.raises(ValueError):
        stats.clopper_pearson(3, 2)


def test_clopper_pearson_matches_scipy_where_installed():
    beta = pytest.importorskip("scipy.stats").beta
    for k, n in [(1, 16), (7, 16), (15, 16), (40, 256), (200, 256)]:
        expected = (beta.ppf(0.025, k, n - k + 1), beta.ppf(0.975, k + 1, n - k))
        assert stats.clopper_pearson(k, n) == pytest.approx(expected, abs=1e-9)


def test_one_seed_gets_the_exact_interval():
    r = stats.rate_interval([[1, 0, 1, 1]])
    assert r["interval"] == "clopper-pearson" and r["mean"] == 0.75
    assert (r["lo"], r["hi"]) == stats.clopper_pearson(3, 4)


def test_a_rate_of_no_hits_over_seeds_is_not_certain_the_bootstrap_alone_would_be():
    """Every resample of all-zero outcomes is zero: the rate's interval falls back on the exact
    interval of the pooled images (0 of 48 -> [0, 0.074])."""
    for value in (0, 1):
        r = stats.rate_interval([[value] * 16] * 3)
        assert r["mean"] == value and (r["lo"], r["hi"]) == stats.clopper_pearson(16 * 3 * value, 48)
    assert stats.rate_interval([[0] * 16] * 3)["hi"] == pytest.approx(1 - 0.025 ** (1 / 48))
    # where the seeds disagree, the bootstrap's seed-to-seed spread is the wider one
    spread = stats.rate_interval([[0] * 16, [1] * 16, [0] * 8 + [1] * 8])
    assert (spread["lo"], spread["hi"]) != stats.clopper_pearson(24, 48)
    assert spread["lo"] <= stats.clopper_pearson(24, 48)[0] and spread["hi"] >= stats.clopper_pearson(24, 48)[1]


def test_bootstrap_of_a_constant_is_degenerate():
    assert set(stats.bootstrap_means([[0.25] * 5, [0.25] * 5, [0.25] * 5])) == {0.25}
    m = stats.mean_interval([12.5, 12.5, 12.5])
    assert m["mean"] == m["lo"] == m["hi"] == 12.5


def test_paired_difference_of_identical_data_is_zero_with_zero_width():
    rng = np.random.default_rng(1)
    a = [rng.integers(0, 2, 16) for _ in range(3)]
    d = stats.paired_difference(a, [x.copy() for x in a])
    assert d["mean"] == d["lo"] == d["hi"] == 0.0
    one = stats.paired_difference([[1, 0, 1]], [[1, 0, 1]])
    assert one["mean"] == one["lo"] == one["hi"] == 0.0


def test_paired_difference_cancels_what_both_share():
    # b differs from a in exactly one image of 32: the unpaired intervals overlap almost fully, the
    # paired difference is small and one-signed
    a = [[1] * 16 + [0] * 16]
    b = [[1] * 15 + [0] * 17]
    d = stats.paired_difference(a, b)
    assert d["mean"] == pytest.approx(1 / 32) and d["lo"] >= 0.0 and d["hi"] <= 0.125
    with pytest.raises(ValueError, match="same shape"):
        stats.paired_difference([[1, 0]], [[1]])


def test_the_bootstrap_resamples_training_seeds_not_only_images():
    # three seeds that disagree completely: pooling the 48 images as if independent would give a
    # narrow interval around 1/3; resampling seeds first lets a resample hold no or all disagreeing seeds
    hits = [[1] * 16, [0] * 16, [0] * 16]
    r = stats.rate_interval(hits)
    assert r["interval"].startswith("bootstrap") and r["mean"] == pytest.approx(1 / 3)
    assert r["lo"] == 0.0 and r["hi"] >= 2 / 3
    pooled = stats.clopper_pearson(16, 48)
    assert r["hi"] - r["lo"] > 2 * (pooled[1] - pooled[0])


def test_bootstrap_interval_of_agreeing_seeds_shrinks_with_more_images():
    rng = np.random.default_rng(0)
    small = stats.rate_interval([rng.random(16) < 0.5 for _ in range(3)])
    large = stats.rate_interval([rng.random(256) < 0.5 for _ in range(3)])
    assert small["lo"] < 0.5 < small["hi"] and large["lo"] < 0.5 < large["hi"]
    assert large["hi"] - large["lo"] < small["hi"] - small["lo"]


def test_bootstrap_is_deterministic_and_handles_unequal_lengths():
    hits = [[1, 0, 1], [0, 0, 1, 1, 1]]
    assert stats.rate_interval(hits) == stats.rate_interval(hits)
    r = stats.rate_interval(hits)
    assert r["images"] == 8 and r["mean"] == pytest.approx(5 / 8) and 0 <= r["lo"] <= r["mean"] <= r["hi"] <= 1


def test_rates_take_only_binary_outcomes():
    with pytest.raises(ValueError, match="0/1"):
        stats.rate_interval([[0.5, 1]])
    with pytest.raises(ValueError, match="at least one"):
        stats.rate_interval([[]])


def test_formatting():
    assert stats.fmt_interval({"mean": 0.125, "lo": 0.0312, "hi": 0.25}) == "0.125 [0.031, 0.250]"
    assert stats.fmt_difference({"mean": -0.02, "lo": -0.0625, "hi": 0.01}) == "-0.020 [-0.062, +0.010]"
    assert stats.fmt_interval(None) == "–"
