"""Statistics for comparing runs: confidence intervals, paired tests, multiple-comparison correction.

Pure functions on numpy arrays (layer 0: no RecBole, no torch), used by ``recbole_ext.compare`` (paired
per-user comparisons), the multi-seed summaries and the frontier tool.

* :func:`mean_ci` — mean, sample sd and the Student-t interval of a mean (seeds, users);
* :func:`bootstrap_ci` — percentile bootstrap interval of a mean (paired per-user differences);
* :func:`paired_ttest`, :func:`wilcoxon_signed_rank` — two-sided p-values of paired samples (scipy);
* :func:`holm` — Holm's step-down adjustment of a family of p-values;
* :func:`cohens_dz` — standardised mean of paired differences;
* :func:`paired_comparison` — all of the above for one pair of per-user vectors.

Degenerate inputs give defined answers, never a silent NaN where a number is expected: all differences zero
→ p = 1 (no evidence of a difference); a constant non-zero difference → p = 0 for the t-test (the sd is 0);
fewer than two values → sd and interval ``nan`` (there is no spread to report), said so in ``n``.
"""

from typing import NamedTuple

import numpy as np

DEFAULT_LEVEL = 0.95
DEFAULT_RESAMPLES = 10_000


class MeanCI(NamedTuple):
    mean: float
    sd: float
    lo: float
    hi: float
    n: int


def _vector(values, name="values"):
    arr = np.asarray(values, dtype=np.float64).ravel()
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} hold NaN or infinite entries: drop or fix them before computing statistics")
    return arr


def mean_ci(values, level=DEFAULT_LEVEL):
    """Mean, sample sd (ddof 1) and the two-sided Student-t ``level`` interval of the mean."""
    from scipy import stats

    arr = _vector(values)
    n = arr.size
    if n == 0:
        raise ValueError("mean_ci of no values")
    mean = float(arr.mean())
    if n < 2:
        return MeanCI(mean, float("nan"), float("nan"), float("nan"), n)
    sd = float(arr.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / np.sqrt(n)
    return MeanCI(mean, sd, mean - half, mean + half, n)


def bootstrap_ci(values, level=DEFAULT_LEVEL, n_resamples=DEFAULT_RESAMPLES, seed=0, chunk=1000):
    """Percentile bootstrap ``level`` interval of the mean of ``values`` (``(lo, hi)``); resamples drawn with
    ``numpy.random.default_rng(seed)`` in chunks (memory ``chunk × n``)."""
    arr = _vector(values)
    n = arr.size
    if n == 0:
        raise ValueError("bootstrap_ci of no values")
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    for start in range(0, n_resamples, chunk):
        stop = min(start + chunk, n_resamples)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = arr[idx].mean(axis=1)
    alpha = (1.0 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def paired_ttest(a, b):
    """``(t, p)`` of the two-sided paired t-test of ``a`` against ``b``."""
    from scipy import stats

    diff = _vector(a, "a") - _vector(b, "b")
    if diff.size < 2:
        return float("nan"), float("nan")
    if np.all(diff == diff[0]):
        if diff[0] == 0:
            return 0.0, 1.0
        return float(np.sign(diff[0]) * np.inf), 0.0
    result = stats.ttest_rel(_vector(a, "a"), _vector(b, "b"))
    return float(result.statistic), float(result.pvalue)


def wilcoxon_signed_rank(a, b):
    """``(W, p)`` of the two-sided Wilcoxon signed-rank test (zero differences dropped, as Wilcoxon's
    original procedure and scipy's default do); all differences zero → ``(0, 1)``."""
    from scipy import stats

    diff = _vector(a, "a") - _vector(b, "b")
    if diff.size == 0 or np.all(diff == 0):
        return 0.0, 1.0
    result = stats.wilcoxon(diff)
    return float(result.statistic), float(result.pvalue)


def holm(pvalues):
    """Holm–Bonferroni adjusted p-values (same order as given): ``p_(i) · (m − i + 1)`` in ascending order,
    made non-decreasing, capped at 1. NaN entries stay NaN and do not count in ``m``."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    m = valid.size
    if m == 0:
        return out
    order = valid[np.argsort(p[valid], kind="stable")]
    scaled = p[order] * (m - np.arange(m))
    out[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return out


def cohens_dz(a, b):
    """Effect size of paired samples: mean difference / sd of the differences (``nan`` when the sd is 0)."""
    diff = _vector(a, "a") - _vector(b, "b")
    if diff.size < 2:
        return float("nan")
    sd = diff.std(ddof=1)
    return float(diff.mean() / sd) if sd > 0 else float("nan")


def paired_comparison(a, b, level=DEFAULT_LEVEL, n_resamples=DEFAULT_RESAMPLES, seed=0):
    """Everything :mod:`recbole_ext.compare` reports for ``a`` vs ``b`` (paired per-user values):
    ``mean_a``, ``mean_b``, ``diff`` (mean of a − b), ``ci_lo``/``ci_hi`` (bootstrap), ``t``, ``p_t``,
    ``w``, ``p_wilcoxon``, ``dz``, ``n``."""
    a, b = _vector(a, "a"), _vector(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"paired samples must have the same length, got {a.size} and {b.size}")
    lo, hi = bootstrap_ci(a - b, level, n_resamples, seed)
    t, p_t = paired_ttest(a, b)
    w, p_w = wilcoxon_signed_rank(a, b)
    return {
        "n": int(a.size), "mean_a": float(a.mean()), "mean_b": float(b.mean()), "diff": float((a - b).mean()),
        "ci_lo": lo, "ci_hi": hi, "t": t, "p_t": p_t, "w": w, "p_wilcoxon": p_w, "dz": cohens_dz(a, b),
    }
