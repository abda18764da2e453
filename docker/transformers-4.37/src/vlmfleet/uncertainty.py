"""What a score can tell: 95% intervals, paired comparisons, detectable differences, and the
sample limit a precision asks for, all from a combination's scored questions.

The input is the per-question lines of ``contract.QUESTIONS_SUFFIX`` files (``index``,
``cluster``, ``answer``, ``extracted``, ``score`` on 0-1); the output is on 0-100, the scale of
``primary_score``. The worker computes a record's interval here and the controller its
comparisons (numpy and scipy, both in the image and in the controller's toolchain; no pandas,
no torch).

Intervals (``primary_interval``), by the statistic the primary metric is of its questions:

- ``mean`` (accuracy, VQA accuracy, ANLS, relaxed accuracy...): the Wilson score interval at
  the effective number of questions ``n_eff = p(1 - p) / V``, where ``V`` is the clustered
  variance of the mean (Miller, "Adding Error Bars to Evals", arXiv 2411.00640, eq. 4: the
  squared sums of each cluster's residuals, over n squared). For 0/1 scores, one question per
  cluster, ``n_eff = n`` and this is Wilson's interval itself: inside 0-100, and not a point at
  10 of 10 right, where the normal and Student t intervals collapse. Questions that come in
  groups (HallusionBench's sets, POPE's images) lower ``n_eff`` (Kish's design effect); graded
  scores that spread less than 0/1 raise it. When every question scored the same, ``V`` is 0
  and nothing measures the clustering: each cluster counts as one question.
- ``f1_yes`` (POPE's F1 of the "yes" answers, not a mean): a cluster bootstrap, percentile
  interval, with a fixed seed so that a report is reproducible.

Paired comparisons (``paired_difference``) of two runs on the questions both answered: the exact
McNemar test (the two-sided sign test on the discordant questions) for 0/1 scores one question
per cluster; otherwise the interval of a paired cluster bootstrap and the p-value of the paired
permutation test, whole clusters swapped between the runs (exact with few clusters, where a
bootstrap's p-value is too small); ``holm`` corrects p-values for the number of benchmarks
compared. ``detectable_difference`` is the smallest difference such a comparison
finds at alpha 0.05 with power 0.8; ``limit_for_precision`` the questions whose worst-case
interval is no wider than asked.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


def scipy_stats() -> Any:
    """scipy.stats, imported where a statistic is computed: Ansible imports every filter file
    of the project for each task that uses any filter, and scipy.stats is slow to import."""
    from scipy import stats

    return stats


CONFIDENCE = 0.95
# Significance and power of the comparisons the reports make and plan for.
ALPHA = 0.05
POWER = 0.8
BOOTSTRAP_RESAMPLES = 2000
# Random swaps of the permutation test when its 2^clusters are too many to enumerate.
PERMUTATIONS = 9999
# Every bootstrap starts from this seed: the same questions give the same interval.
BOOTSTRAP_SEED = 20241104
# The worst case of a 0/1 score: the widest interval for a number of questions.
WORST_CASE_P = 0.5
# The widest half-width a precision may ask for: an interval within 0-100 is never wider.
MAX_PRECISION = 50.0

Line = Mapping[str, Any]


class UncertaintyError(ValueError):
    """Questions that cannot give a statistic (none, or a statistic not known)."""


@dataclass(frozen=True)
class Questions:
    """One combination's scored questions as arrays, in their lines' order."""

    ids: tuple[str, ...]
    clusters: np.ndarray  # cluster number of each question, 0..n_clusters-1
    scores: np.ndarray  # 0..1
    truth_yes: np.ndarray  # the key says "Yes"
    said_yes: np.ndarray  # VLMEvalKit extracted "Yes"

    @property
    def n_clusters(self) -> int:
        return int(self.clusters.max()) + 1 if len(self.clusters) else 0

    @property
    def binary(self) -> bool:
        return bool(np.all((self.scores == 0) | (self.scores == 1)))

    @property
    def one_per_cluster(self) -> bool:
        return self.n_clusters == len(self.ids)


def questions_of(lines: Sequence[Line]) -> Questions:
    """The arrays of ``lines`` (an index twice, or a score outside 0-1, is refused)."""
    if not lines:
        raise UncertaintyError("no scored questions")
    ids = tuple(str(line["index"]) for line in lines)
    if len(set(ids)) != len(ids):
        raise UncertaintyError("a question index appears twice")
    scores = np.array([float(line["score"]) for line in lines])
    if not np.all((scores >= 0) & (scores <= 1)):
        raise UncertaintyError("a question score lies outside 0-1")
    _, clusters = np.unique([str(line["cluster"]) for line in lines], return_inverse=True)
    return Questions(
        ids=ids,
        clusters=clusters.astype(int),
        scores=scores,
        truth_yes=np.array([str(line.get("answer")) == "Yes" for line in lines]),
        said_yes=np.array([str(line.get("extracted")) == "Yes" for line in lines]),
    )


# --- the statistics ---------------------------------------------------------------------------


def f1_yes(truth_yes: np.ndarray, said_yes: np.ndarray, axis: int = -1) -> np.ndarray:
    """F1 of the "yes" class on 0-1, 0 without a true positive (VLMEvalKit's POPE_rating)."""
    return _f1_of_counts(
        np.sum(truth_yes & said_yes, axis=axis), np.sum(truth_yes != said_yes, axis=axis)
    )


def _value(q: Questions, statistic: str) -> float:
    if statistic == "mean":
        return float(np.mean(q.scores))
    if statistic == "f1_yes":
        return float(f1_yes(q.truth_yes, q.said_yes))
    raise UncertaintyError(f"statistic {statistic!r} is not one of mean, f1_yes")


def statistic_value(lines: Sequence[Line], statistic: str) -> float:
    """The primary figure the questions give, on 0-100."""
    return 100.0 * _value(questions_of(lines), statistic)


def clustered_variance(values: np.ndarray, clusters: np.ndarray) -> float:
    """Variance of the mean of ``values`` with correlated clusters (Miller's eq. 4)."""
    residual_sums = np.bincount(clusters, weights=values - values.mean())
    return float(np.sum(residual_sums**2) / len(values) ** 2)


def _z(confidence: float) -> float:
    return float(scipy_stats().norm.ppf(0.5 + confidence / 2))


def wilson(p: float, n: float, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson's score interval of a proportion ``p`` of ``n`` (n may be an effective, non-whole
    number of questions, which scipy's binomtest cannot take), on 0-1."""
    z = _z(confidence)
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(max(p * (1 - p), 0.0) / n + z * z / (4 * n * n))
    # All right or all wrong: the bound at the estimate is exact, not a rounding of it.
    low = 0.0 if p <= 0 else max(0.0, centre - half)
    high = 1.0 if p >= 1 else min(1.0, centre + half)
    return low, high


def effective_questions(q: Questions) -> float:
    """The independent 0/1 questions that would give the mean's clustered variance, at least
    the number of clusters (as if the answers within each cluster were all alike): a variance
    estimated from a few errors must not make a cluster worth less than one question."""
    p = float(np.mean(q.scores))
    variance = clustered_variance(q.scores, q.clusters)
    if variance <= 0 or p * (1 - p) <= 0:
        return float(q.n_clusters)
    return max(float(q.n_clusters), p * (1 - p) / variance)


def _interval(low: float, high: float, method: str, statistic: str, q: Questions, confidence):
    return {
        "low": round(100.0 * low, 6),
        "high": round(100.0 * high, 6),
        "confidence": confidence,
        "method": method,
        "statistic": statistic,
        "questions": len(q.ids),
        "clusters": q.n_clusters,
    }


def _f1_of_counts(tp: np.ndarray, wrong: np.ndarray) -> np.ndarray:
    """F1 of the "yes" class from true positives and errors (0 without a true positive)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(tp > 0, 2 * tp / (2 * tp + wrong), 0.0)


def _resampled(n_clusters: int, statistic: Any) -> np.ndarray:
    """The bootstrap distribution of ``statistic`` of the picked clusters (an array of cluster
    numbers, resamples along its last axis); one cluster has nothing to resample."""
    if n_clusters < 2:
        return np.atleast_1d(statistic(np.zeros(1, dtype=int)))
    result = scipy_stats().bootstrap(
        (np.arange(n_clusters),),
        statistic,
        vectorized=True,
        n_resamples=BOOTSTRAP_RESAMPLES,
        method="percentile",
        random_state=np.random.default_rng(BOOTSTRAP_SEED),
    )
    return np.asarray(result.bootstrap_distribution)


def _cluster_bootstrap(q: Questions, difference_of: Questions | None = None) -> np.ndarray:
    """The bootstrap distribution (0-1) of F1, or of F1(q) - F1(difference_of) on the same
    questions, resampling whole clusters."""

    def f1_of(picked: np.ndarray, run: Questions) -> np.ndarray:
        tp = _cluster_counts(run, run.truth_yes & run.said_yes)
        wrong = _cluster_counts(run, run.truth_yes != run.said_yes)
        return _f1_of_counts(tp[picked].sum(axis=-1), wrong[picked].sum(axis=-1))

    def statistic(picked: np.ndarray, axis: int = -1) -> np.ndarray:
        value = f1_of(picked, q)
        return value if difference_of is None else value - f1_of(picked, difference_of)

    return _resampled(q.n_clusters, statistic)


def _mean_bootstrap(d: np.ndarray, clusters: np.ndarray, n_clusters: int) -> np.ndarray:
    """The cluster bootstrap distribution of the mean of ``d``."""
    sums = np.bincount(clusters, weights=d, minlength=n_clusters)
    sizes = np.bincount(clusters, minlength=n_clusters).astype(float)

    def statistic(picked: np.ndarray, axis: int = -1) -> np.ndarray:
        return sums[picked].sum(axis=-1) / sizes[picked].sum(axis=-1)

    return _resampled(n_clusters, statistic)


def _percentiles(distribution: np.ndarray, confidence: float) -> tuple[float, float]:
    if distribution.size == 0:
        return math.nan, math.nan
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(distribution, [tail, 100 - tail])
    return float(low), float(high)


def primary_interval(
    lines: Sequence[Line], statistic: str, confidence: float = CONFIDENCE
) -> dict[str, Any]:
    """The primary figure's interval on 0-100 (``contract.INTERVAL_KEYS``)."""
    q = questions_of(lines)
    if statistic == "mean":
        p = float(np.mean(q.scores))
        low, high = wilson(p, effective_questions(q), confidence)
        method = "Wilson" if q.one_per_cluster else "Wilson, clustered (effective n)"
        return _interval(low, high, method, statistic, q, confidence)
    if statistic == "f1_yes":
        value = _value(q, statistic)
        distribution = _cluster_bootstrap(q) if q.n_clusters > 1 else np.array([value])
        low, high = _percentiles(distribution, confidence)
        if high - low == 0:
            # No error to resample (or one cluster, or too rare to reach the percentiles): a
            # point is not certainty; Wilson's interval at the clusters' number bounds what so
            # few can show.
            low, high = wilson(value, q.n_clusters, confidence)
            method = "Wilson at the clusters (the bootstrap saw no spread)"
            return _interval(low, high, method, statistic, q, confidence)
        # A percentile interval of a skewed statistic can miss its own estimate by rounding.
        low, high = min(low, value), max(high, value)
        return _interval(low, high, "cluster bootstrap (percentile)", statistic, q, confidence)
    raise UncertaintyError(f"statistic {statistic!r} is not one of mean, f1_yes")


# --- comparing two runs on the same questions ---------------------------------------------------


def matched(a_lines: Sequence[Line], b_lines: Sequence[Line]) -> tuple[Questions, Questions]:
    """The questions both runs answered, in ``a``'s order, with ``a``'s clusters for both."""
    by_id = {str(line["index"]): line for line in b_lines}
    a_kept = [line for line in a_lines if str(line["index"]) in by_id]
    if not a_kept:
        raise UncertaintyError("the two runs answered no question in common")
    b_kept = [{**by_id[str(line["index"])], "cluster": line["cluster"]} for line in a_kept]
    return questions_of(a_kept), questions_of(b_kept)


def mcnemar_exact(a_right: np.ndarray, b_right: np.ndarray) -> float:
    """Two-sided exact McNemar p-value: the sign test on the questions only one got right."""
    only_a = int(np.sum(a_right & ~b_right))
    only_b = int(np.sum(b_right & ~a_right))
    if only_a + only_b == 0:
        return 1.0
    return float(scipy_stats().binomtest(only_a, only_a + only_b, 0.5).pvalue)


def sign_test_interval(
    a_right: np.ndarray, b_right: np.ndarray, confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """The accuracy difference's interval (0-1) that agrees with the exact McNemar test: the
    Clopper-Pearson interval of the share of discordant questions ``a`` got right, given how
    many were discordant (m of n), as a difference m/n x (2 share - 1)."""
    only_a = int(np.sum(a_right & ~b_right))
    discordant = only_a + int(np.sum(b_right & ~a_right))
    if discordant == 0:
        return 0.0, 0.0
    share = scipy_stats().binomtest(only_a, discordant).proportion_ci(confidence, method="exact")
    scale = discordant / len(a_right)
    return scale * (2 * share.low - 1), scale * (2 * share.high - 1)


def permutation_p(a: Questions, b: Questions, statistic: str) -> float:
    """Two-sided p-value of "no difference" by the paired permutation test: under the null the
    two runs' answers of a cluster are exchangeable, so every swap of whole clusters between
    them is as likely (all 2^clusters swaps when few enough, scipy's exact enumeration). A
    bootstrap's own p-value is too small with few clusters; this one is exact."""
    n = a.n_clusters
    if n < 2:
        # One cluster: its single swap gives back the same difference, which proves nothing.
        return 1.0
    if statistic == "mean":
        a_sums = np.bincount(a.clusters, weights=a.scores, minlength=n)
        b_sums = np.bincount(a.clusters, weights=b.scores, minlength=n)

        def difference(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
            return (x.sum(axis=axis) - y.sum(axis=axis)) / len(a.ids)

        samples = (a_sums, b_sums)
    else:
        # Each side is a list of tags, one per cluster: c for a's answers of cluster c, n + c
        # for b's, so a swap moves a whole cluster's answers to the other side.
        tp = np.concatenate([_cluster_counts(q, q.truth_yes & q.said_yes) for q in (a, b)])
        wrong = np.concatenate([_cluster_counts(q, q.truth_yes != q.said_yes) for q in (a, b)])

        def f1_of(tags: np.ndarray, axis: int = -1) -> np.ndarray:
            return _f1_of_counts(tp[tags].sum(axis=axis), wrong[tags].sum(axis=axis))

        def difference(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
            return f1_of(x, axis) - f1_of(y, axis)

        samples = (np.arange(n), np.arange(n) + n)
    result = scipy_stats().permutation_test(
        samples,
        difference,
        permutation_type="samples",
        vectorized=True,
        n_resamples=PERMUTATIONS,
        random_state=np.random.default_rng(BOOTSTRAP_SEED),
    )
    return float(min(1.0, result.pvalue))


def _cluster_counts(q: Questions, hits: np.ndarray) -> np.ndarray:
    return np.bincount(q.clusters, weights=hits.astype(float), minlength=q.n_clusters)


def paired_difference(
    a_lines: Sequence[Line],
    b_lines: Sequence[Line],
    statistic: str,
    confidence: float = CONFIDENCE,
) -> dict[str, Any]:
    """``a`` minus ``b`` on the questions both answered, in points, with its interval and the
    p-value of "no difference"."""
    a, b = matched(a_lines, b_lines)
    difference = _value(a, statistic) - _value(b, statistic)
    out: dict[str, Any] = {
        "difference": round(100.0 * difference, 6),
        "questions": len(a.ids),
        "clusters": a.n_clusters,
        "discordant": int(np.sum(a.scores != b.scores)),
    }
    if statistic == "mean" and a.binary and b.binary and a.one_per_cluster:
        low, high = sign_test_interval(a.scores == 1, b.scores == 1, confidence)
        p_value = mcnemar_exact(a.scores == 1, b.scores == 1)
        method = "exact McNemar (sign test)"
    elif statistic == "mean":
        distribution = _mean_bootstrap(a.scores - b.scores, a.clusters, a.n_clusters)
        low, high = _percentiles(distribution, confidence)
        p_value = permutation_p(a, b, statistic)
        method = "paired cluster bootstrap; permutation test"
    elif statistic == "f1_yes":
        distribution = _cluster_bootstrap(a, difference_of=b)
        low, high = _percentiles(distribution, confidence)
        p_value = permutation_p(a, b, statistic)
        method = "paired cluster bootstrap; permutation test"
    else:
        raise UncertaintyError(f"statistic {statistic!r} is not one of mean, f1_yes")
    if out["discordant"] == 0:
        # Identical answers: no difference, and nothing to resample.
        low = high = 0.0
        p_value = 1.0
    elif a.n_clusters < 2 and not method.startswith("exact McNemar"):
        # One cluster: nothing measures the spread of the difference.
        low, high, p_value = -1.0, 1.0, 1.0
    out |= {
        "low": round(100.0 * min(low, difference), 6),
        "high": round(100.0 * max(high, difference), 6),
        "p_value": p_value,
        "method": method,
        "detectable": detectable_difference(a, b),
    }
    return out


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error across the benchmarks compared),
    in the order given."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


# --- planning precision -----------------------------------------------------------------------


def _detectable(standard_error: float) -> float:
    """Points: (z(1 - alpha/2) + z(power)) x the standard error of a mean paired difference."""
    z = _z(1 - ALPHA) + float(scipy_stats().norm.ppf(POWER))
    return round(100.0 * z * standard_error, 6)


def fewest_discordant() -> int:
    """The fewest discordant questions, all one way, at which the exact sign test finds a
    difference at ALPHA: no paired comparison detects less than that many questions' worth."""
    k = 1
    while scipy_stats().binomtest(k, k, 0.5).pvalue > ALPHA:
        k += 1
    return k


def detectable_difference(a: Questions, b: Questions | None = None) -> float:
    """The smallest difference (points) a paired comparison of these questions detects at alpha
    0.05 with power 0.8: (z(1 - alpha/2) + z(power)) x the standard error of the mean paired
    difference. With a second run, that standard error is the clustered one of the observed
    differences; alone, the stated worst case: two runs of a 0/1 score that disagree on half the
    questions, one question per cluster. Never less than ``fewest_discordant`` clusters of all
    (runs that agree on every question have not shown they could detect nothing smaller); 100
    when that is more than all of them: no difference is detectable."""
    floor = min(100.0, 100.0 * fewest_discordant() / a.n_clusters)
    if b is None:
        return min(100.0, max(_detectable(math.sqrt(WORST_CASE_P / a.n_clusters)), floor))
    variance = clustered_variance(a.scores - b.scores, a.clusters)
    return min(100.0, max(_detectable(math.sqrt(variance)), floor))


def worst_case_half_width(questions: int, confidence: float = CONFIDENCE) -> float:
    """Points: half the width of Wilson's interval of a 0/1 score at p = 0.5."""
    low, high = wilson(WORST_CASE_P, questions, confidence)
    return 100.0 * (high - low) / 2


def limit_for_precision(points: float, confidence: float = CONFIDENCE) -> int:
    """The fewest questions whose worst-case interval half-width is at most ``points``."""
    if (
        isinstance(points, bool)
        or not isinstance(points, int | float)
        or not 0 < points <= MAX_PRECISION
    ):
        raise UncertaintyError(
            f"precision must be a number of points in (0, {MAX_PRECISION:g}], got {points!r}"
        )
    z = _z(confidence)
    # The normal interval's n is an upper bound (Wilson's is narrower); step down from it.
    n = math.ceil((z * 50.0 / points) ** 2)
    while n > 1 and worst_case_half_width(n - 1, confidence) <= points:
        n -= 1
    return n


def pooled_interval(
    figures: Sequence[tuple[float, Mapping[str, Any]]], confidence: float = CONFIDENCE
) -> dict[str, Any]:
    """The mean of benchmark scores (0-100) with a normal interval, each benchmark's standard
    error read off its interval (half its width over z) and the benchmarks independent."""
    if not figures:
        raise UncertaintyError("no benchmark score with an interval to pool")
    z = _z(confidence)
    scores = np.array([score for score, _ in figures])
    errors = np.array([(iv["high"] - iv["low"]) / (2 * z) for _, iv in figures])
    mean = float(scores.mean())
    half = z * math.sqrt(float(np.sum(errors**2))) / len(figures)
    return {
        "score": round(mean, 6),
        "low": round(max(0.0, mean - half), 6),
        "high": round(min(100.0, mean + half), 6),
        "confidence": confidence,
        "benchmarks": len(figures),
    }
