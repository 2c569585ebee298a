"""Summaries of a benchmark: mean ± std, average ranks (the VIFB leaderboard convention) and
paired significance tests against the best method.

* **Average rank** (VIFB, Zhang et al. CVPRW 2020, Sec. 4): per metric, the methods are ranked by
  their mean over the images (1 = best, in the metric's direction; ties share the mean of their
  ranks); a method's score is the mean of its ranks over the metrics. Lower is better.
* **Paired test**: per metric, the method with the best mean is compared with every other method
  over the images both have, by the Wilcoxon signed-rank test (``scipy.stats.wilcoxon``,
  two-sided; exact for small samples) or the paired t-test (``scipy.stats.ttest_rel``, what JCAE's
  Table 1 reports). A method whose p-value is at least ``alpha`` is *not significantly different*
  from the best. Identical values on every image give p = 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as _st

TESTS = ("wilcoxon", "t")


@dataclass(frozen=True)
class Summary:
    mean: float
    std: float  # population std over the images (as ivfuse eval)
    n: int


def summarise(values: list[float]) -> Summary:
    arr = np.asarray([v for v in values if math.isfinite(v)], dtype=np.float64)
    if arr.size == 0:
        return Summary(math.nan, math.nan, 0)
    return Summary(float(arr.mean()), float(arr.std()), int(arr.size))


def best_method(means: dict[str, float], higher_is_better: bool) -> str | None:
    """The method with the best finite mean (first in order on ties); ``None`` when none is finite."""
    finite = {m: v for m, v in means.items() if math.isfinite(v)}
    if not finite:
        return None
    return (max if higher_is_better else min)(finite, key=lambda m: finite[m])


def average_ranks(means: dict[str, dict[str, float]], higher: dict[str, bool]) -> dict[str, float]:
    """``means[method][metric]`` -> the mean rank of each method over the metrics.

    A metric where a method has no finite value ranks that method last; a metric where no method
    has a finite value is left out.
    """
    methods = list(means)
    ranks: dict[str, list[float]] = {m: [] for m in methods}
    for metric, up in higher.items():
        col = np.array([means[m].get(metric, math.nan) for m in methods], dtype=np.float64)
        if not np.isfinite(col).any():
            continue
        score = np.where(np.isfinite(col), -col if up else col, np.inf)
        r = _st.rankdata(score, method="average")
        for m, rv in zip(methods, r, strict=True):
            ranks[m].append(float(rv))
    return {m: (float(np.mean(v)) if v else math.nan) for m, v in ranks.items()}


def paired_p(x: list[float], y: list[float], test: str = "wilcoxon") -> float:
    """Two-sided p-value of the paired test of ``x`` against ``y`` (pairs with a NaN are dropped)."""
    if test not in TESTS:
        raise ValueError(f"unknown test {test!r}; choose one of {TESTS}")
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if a.size < 2:
        return math.nan
    d = a - b
    if np.all(d == 0):
        return 1.0
    if test == "t":
        if np.all(d == d[0]):  # constant non-zero difference: zero variance, infinitely significant
            return 0.0
        return float(_st.ttest_rel(a, b).pvalue)
    return float(_st.wilcoxon(a, b).pvalue)


def significance(
    per_image: dict[str, dict[str, float]], best: str, test: str = "wilcoxon"
) -> dict[str, float]:
    """``per_image[method][stem]`` -> p-value of each method against ``best`` (NaN for ``best``)."""
    ref = per_image[best]
    out: dict[str, float] = {}
    for m, vals in per_image.items():
        if m == best:
            out[m] = math.nan
            continue
        stems = [s for s in ref if s in vals]
        out[m] = paired_p([vals[s] for s in stems], [ref[s] for s in stems], test)
    return out
