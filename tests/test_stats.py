"""recbole_ext.stats against scipy and hand-computed values."""

import numpy as np
import pytest
from scipy import stats as sps

from recbole_ext import stats

A = np.array([0.31, 0.12, 0.55, 0.40, 0.08, 0.77, 0.26, 0.61, 0.19, 0.45])
B = np.array([0.25, 0.15, 0.41, 0.42, 0.02, 0.70, 0.20, 0.52, 0.21, 0.33])


def test_mean_ci_is_the_student_t_interval():
    got = stats.mean_ci([1.0, 2.0, 4.0])
    sd = np.std([1.0, 2.0, 4.0], ddof=1)
    half = sps.t.ppf(0.975, 2) * sd / np.sqrt(3)
    assert got.mean == pytest.approx(7 / 3) and got.sd == pytest.approx(sd) and got.n == 3
    assert (got.lo, got.hi) == pytest.approx((7 / 3 - half, 7 / 3 + half))
    lo, hi = sps.t.interval(0.95, 2, loc=7 / 3, scale=sps.sem([1.0, 2.0, 4.0]))
    assert (got.lo, got.hi) == pytest.approx((lo, hi))


def test_mean_ci_of_one_value_has_no_spread():
    got = stats.mean_ci([0.3])
    assert got.mean == 0.3 and got.n == 1 and np.isnan(got.sd) and np.isnan(got.lo)


def test_nan_input_is_refused():
    with pytest.raises(ValueError, match="NaN"):
        stats.mean_ci([0.1, float("nan")])


def test_paired_tests_match_scipy():
    t, p = stats.paired_ttest(A, B)
    ref = sps.ttest_rel(A, B)
    assert t == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue)
    w, pw = stats.wilcoxon_signed_rank(A, B)
    ref = sps.wilcoxon(A - B)
    assert w == pytest.approx(ref.statistic) and pw == pytest.approx(ref.pvalue)


def test_degenerate_differences_give_defined_p_values():
    assert stats.paired_ttest(A, A) == (0.0, 1.0)
    assert stats.wilcoxon_signed_rank(A, A) == (0.0, 1.0)
    t, p = stats.paired_ttest(np.full(4, 0.5), np.full(4, 0.25))
    assert t == np.inf and p == 0.0
    assert np.isnan(stats.cohens_dz(A, A))


def test_holm_on_a_worked_example():
    # p sorted 0.01, 0.02, 0.03, 0.04 (m = 4): 0.04, 0.06, 0.06 (monotone), 0.06 (monotone: max(0.04*1, 0.06))
    got = stats.holm([0.03, 0.01, 0.04, 0.02])
    assert got == pytest.approx([0.06, 0.04, 0.06, 0.06])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    got = stats.holm([0.01, float("nan")])
    assert got[0] == pytest.approx(0.01) and np.isnan(got[1])


def test_bootstrap_interval_is_seeded_and_covers_the_mean():
    diff = A - B
    lo, hi = stats.bootstrap_ci(diff, seed=3)
    assert (lo, hi) == stats.bootstrap_ci(diff, seed=3)
    assert lo < diff.mean() < hi
    ref = sps.bootstrap((diff,), np.mean, confidence_level=0.95, n_resamples=10000, method="percentile",
                        random_state=0).confidence_interval
    assert lo == pytest.approx(ref.low, abs=0.01) and hi == pytest.approx(ref.high, abs=0.01)


def test_paired_comparison_and_effect_size():
    got = stats.paired_comparison(A, B)
    d = A - B
    assert got["diff"] == pytest.approx(d.mean()) and got["n"] == 10
    assert got["dz"] == pytest.approx(d.mean() / d.std(ddof=1))
    with pytest.raises(ValueError, match="same length"):
        stats.paired_comparison(A, B[:5])
