"""vlmfleet.uncertainty: known answers. Every expected number is computed here from the published
definition (Wilson's score interval, Miller's clustered variance of arXiv 2411.00640 eq. 4, the
exact sign test, Holm's step-down procedure, the normal power formula), never by the module and
never copied from its output. The normal quantiles come from the standard library's NormalDist,
not from the module's scipy."""

from __future__ import annotations

import itertools
import math
import re
from fractions import Fraction
from statistics import NormalDist

import pytest
from scipy.stats import binomtest
from vlmfleet import uncertainty

Z95 = NormalDist().inv_cdf(0.975)
Z_POWER = NormalDist().inv_cdf(0.8)


# --- the published definitions, written out ----------------------------------------------------


def wilson_formula(p: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson (1927) in Newcombe's (1998) form: (2np + z^2 -+ z sqrt(z^2 + 4np(1-p))) / 2(n+z^2)."""
    root = z * math.sqrt(z * z + 4 * n * p * (1 - p))
    return (2 * n * p + z * z - root) / (2 * (n + z * z)), (2 * n * p + z * z + root) / (
        2 * (n + z * z)
    )


def miller_variance(values: list[float], clusters: list[object]) -> float:
    """Miller's eq. 4: the sum over clusters of (the cluster's summed residuals)^2, over n^2."""
    n = len(values)
    mean = sum(values) / n
    total = 0.0
    for cluster in dict.fromkeys(clusters):
        residual_sum = 0.0
        for value, its_cluster in zip(values, clusters, strict=True):
            if its_cluster == cluster:
                residual_sum += value - mean
        total += residual_sum**2
    return total / n**2


def sign_test_p(only_a: int, only_b: int) -> float:
    """Two-sided exact binomial test of only_a of only_a + only_b at 1/2, by scipy's definition
    (the probabilities of all outcomes no more likely than the observed one), exactly."""
    m = only_a + only_b
    observed = math.comb(m, only_a)
    as_unlikely = sum(math.comb(m, i) for i in range(m + 1) if math.comb(m, i) <= observed)
    return float(min(Fraction(1), Fraction(as_unlikely, 2**m)))


def holm_step_down(p_values: list[float]) -> list[float]:
    """Holm (1979): sort ascending; the j-th smallest (1-based) gets min(1, (m - j + 1) p_(j)),
    made monotone by taking the running maximum; reported in the original order."""
    m = len(p_values)
    ranked = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    for j in range(1, m + 1):
        candidates = [min(1.0, (m - k + 1) * p_values[ranked[k - 1]]) for k in range(1, j + 1)]
        adjusted[ranked[j - 1]] = max(candidates)
    return adjusted


def holm_rejects(p_values: list[float], alpha: float) -> set[int]:
    """Holm's procedure itself: reject the smallest while p_(j) <= alpha / (m - j + 1)."""
    m = len(p_values)
    rejected: set[int] = set()
    for j, i in enumerate(sorted(range(m), key=lambda i: p_values[i]), start=1):
        if p_values[i] > alpha / (m - j + 1):
            break
        rejected.add(i)
    return rejected


def lines_of(scores, clusters=None, start: int = 0) -> list[dict]:
    clusters = list(range(len(scores))) if clusters is None else clusters
    return [
        {"index": start + i, "cluster": c, "answer": "A", "extracted": "A", "score": s}
        for i, (s, c) in enumerate(zip(scores, clusters, strict=True))
    ]


def yes_no_lines(truth: list[str], said: list[str], clusters=None) -> list[dict]:
    clusters = list(range(len(truth))) if clusters is None else clusters
    return [
        {"index": i, "cluster": c, "answer": t, "extracted": s, "score": float(t == s)}
        for i, (t, s, c) in enumerate(zip(truth, said, clusters, strict=True))
    ]


def pair(only_a: int, only_b: int, both: int, neither: int) -> tuple[list[int], list[int]]:
    a = [1] * only_a + [0] * only_b + [1] * both + [0] * neither
    b = [0] * only_a + [1] * only_b + [1] * both + [0] * neither
    return a, b


# --- Wilson -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("k", "n"), [(0, 10), (10, 10), (5, 10), (7, 24), (1, 1), (3, 50)])
def test_wilson_matches_scipy_and_the_formula(k, n):
    low, high = uncertainty.wilson(k / n, n)
    reference = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    formula_low, formula_high = wilson_formula(k / n, n)
    assert low == pytest.approx(reference.low, abs=1e-12)
    assert high == pytest.approx(reference.high, abs=1e-12)
    assert low == pytest.approx(max(0.0, formula_low), abs=1e-12)
    assert high == pytest.approx(min(1.0, formula_high), abs=1e-12)
    # Within rounding (the module's 10 of 10 gives 1 - 2**-53, scipy pins it at 1.0 exactly).
    assert 0.0 <= low <= k / n + 1e-15 and k / n - 1e-15 <= high <= 1.0


def test_wilson_at_the_edges_is_not_a_point():
    low, high = uncertainty.wilson(1.0, 10)
    assert high == pytest.approx(1.0, abs=1e-12) and high <= 1.0
    assert low < 1.0
    assert low == pytest.approx(10 / (10 + Z95**2), abs=1e-12)  # Wilson's low at p = 1
    low, high = uncertainty.wilson(0.0, 10)
    assert low == pytest.approx(0.0, abs=1e-12) and low >= 0.0
    assert high == pytest.approx(Z95**2 / (10 + Z95**2), abs=1e-12)

    full = uncertainty.primary_interval(lines_of([1] * 10), "mean")
    assert full["high"] == 100.0
    assert full["low"] == pytest.approx(100 * 10 / (10 + Z95**2), abs=1e-5)
    assert full["low"] < 100.0
    none = uncertainty.primary_interval(lines_of([0] * 10), "mean")
    assert none["low"] == 0.0
    assert none["high"] == pytest.approx(100 * Z95**2 / (10 + Z95**2), abs=1e-5)


# --- primary_interval: mean ---------------------------------------------------------------------


@pytest.mark.parametrize(("k", "n"), [(0, 10), (10, 10), (5, 10), (7, 24), (1, 1), (13, 40)])
def test_unclustered_binary_mean_is_wilson(k, n):
    interval = uncertainty.primary_interval(lines_of([1] * k + [0] * (n - k)), "mean")
    low, high = wilson_formula(k / n, n)
    assert interval["low"] == pytest.approx(100 * max(0.0, low), abs=1e-5)
    assert interval["high"] == pytest.approx(100 * min(1.0, high), abs=1e-5)
    assert interval["questions"] == n and interval["clusters"] == n
    assert interval["statistic"] == "mean" and interval["confidence"] == 0.95


def clustered_expectation(scores: list[float], clusters: list[object]) -> tuple[float, float]:
    p = sum(scores) / len(scores)
    n_eff = p * (1 - p) / miller_variance(scores, clusters)
    low, high = wilson_formula(p, n_eff)
    return 100 * max(0.0, low), 100 * min(1.0, high)


CLUSTERED_CASES = [
    # Questions of a cluster agree: four sets of three.
    ([1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 0], ["s1"] * 3 + ["s2"] * 3 + ["s3"] * 3 + ["s4"] * 3),
    # Unequal cluster sizes, clusters named out of order.
    ([1, 0, 1, 1, 0, 0, 1, 0, 1, 1], ["b", "a", "b", "c", "a", "a", "c", "d", "d", "b"]),
    # Questions of a cluster disagree (pairs): the design effect is below 1.
    ([1, 0, 1, 0, 1, 0, 1, 1], [1, 1, 2, 2, 3, 3, 4, 4]),
]


@pytest.mark.parametrize(("scores", "clusters"), CLUSTERED_CASES)
def test_clustered_mean_uses_millers_effective_n(scores, clusters):
    interval = uncertainty.primary_interval(lines_of(scores, clusters), "mean")
    low, high = clustered_expectation(scores, clusters)
    assert interval["low"] == pytest.approx(low, abs=1e-5)
    assert interval["high"] == pytest.approx(high, abs=1e-5)
    assert interval["questions"] == len(scores)
    assert interval["clusters"] == len(set(clusters))


def test_agreeing_clusters_widen_the_interval():
    scores, clusters = CLUSTERED_CASES[0]
    clustered = uncertainty.primary_interval(lines_of(scores, clusters), "mean")
    alone = uncertainty.primary_interval(lines_of(scores), "mean")
    assert clustered["high"] - clustered["low"] > alone["high"] - alone["low"]
    assert clustered["low"] < alone["low"] and clustered["high"] > alone["high"]


@pytest.mark.parametrize(
    ("scores", "clusters"),
    [
        ([0.3, 0.6, 1.0], None),
        ([0.3, 0.6, 1.0, 0.6, 0.3, 1.0, 1.0, 0.0], [0, 0, 1, 1, 2, 2, 3, 3]),
    ],
)
def test_graded_scores_use_the_same_effective_n(scores, clusters):
    clusters = list(range(len(scores))) if clusters is None else clusters
    interval = uncertainty.primary_interval(lines_of(scores, clusters), "mean")
    low, high = clustered_expectation(scores, clusters)
    assert interval["low"] == pytest.approx(low, abs=1e-5)
    assert interval["high"] == pytest.approx(high, abs=1e-5)


@pytest.mark.parametrize(
    ("scores", "clusters"),
    [
        ([1.0] * 6, ["x", "x", "y", "y", "z", "z"]),
        ([0.0] * 5, [0, 0, 0, 1, 1]),
        ([0.5] * 4, [0, 0, 1, 1]),
        ([1.0] * 4, [0, 1, 2, 3]),
    ],
)
def test_all_same_scores_count_each_cluster_once(scores, clusters):
    interval = uncertainty.primary_interval(lines_of(scores, clusters), "mean")
    low, high = wilson_formula(scores[0], len(set(clusters)))
    assert interval["low"] == pytest.approx(100 * max(0.0, low), abs=1e-5)
    assert interval["high"] == pytest.approx(100 * min(1.0, high), abs=1e-5)


# --- f1_yes -------------------------------------------------------------------------------------

TRUTH = ["Yes", "Yes", "No", "Yes", "No", "No", "Yes", "No", "Yes", "Yes", "No", "No"]
SAID = ["Yes", "No", "Yes", "Yes", "No", "No", "Yes", "Yes", "No", "Yes", "No", "Yes"]


def f1_by_hand(truth: list[str], said: list[str]) -> float:
    tp = sum(t == "Yes" and s == "Yes" for t, s in zip(truth, said, strict=True))
    fp = sum(t != "Yes" and s == "Yes" for t, s in zip(truth, said, strict=True))
    fn = sum(t == "Yes" and s != "Yes" for t, s in zip(truth, said, strict=True))
    return 100 * 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def test_f1_yes_value_is_the_yes_class_f1():
    # TP 4, FP 3, FN 2: 8 / 13.
    assert f1_by_hand(TRUTH, SAID) == pytest.approx(100 * 8 / 13)
    got = uncertainty.statistic_value(yes_no_lines(TRUTH, SAID), "f1_yes")
    assert got == pytest.approx(f1_by_hand(TRUTH, SAID), abs=1e-9)
    # An answer VLMEvalKit could not read as Yes/No counts as not "yes".
    said = ["Unknown" if s == "Yes" and t == "Yes" else s for t, s in zip(TRUTH, SAID, strict=True)]
    said[0] = "Yes"
    got = uncertainty.statistic_value(yes_no_lines(TRUTH, said), "f1_yes")
    assert got == pytest.approx(f1_by_hand(TRUTH, said), abs=1e-9)


@pytest.mark.parametrize("clusters", [None, [i // 3 for i in range(len(TRUTH))]])
def test_f1_yes_bootstrap_interval(clusters):
    lines = yes_no_lines(TRUTH, SAID, clusters)
    estimate = f1_by_hand(TRUTH, SAID)
    first = uncertainty.primary_interval(lines, "f1_yes")
    second = uncertainty.primary_interval([dict(line) for line in lines], "f1_yes")
    assert first == second  # the fixed seed: the same questions, the same interval
    assert 0.0 <= first["low"] <= estimate <= first["high"] <= 100.0
    assert first["low"] < first["high"]
    assert first["statistic"] == "f1_yes"
    assert first["questions"] == len(TRUTH)
    assert first["clusters"] == (len(TRUTH) if clusters is None else len(set(clusters)))


@pytest.mark.parametrize("n", [4, 8, 16, 40])
def test_f1_yes_all_right_reaches_100(n):
    truth = ["Yes", "No"] * (n // 2)
    interval = uncertainty.primary_interval(yes_no_lines(truth, truth), "f1_yes")
    assert interval["high"] == 100.0
    assert 0.0 <= interval["low"] <= 100.0


@pytest.mark.parametrize("n", [6, 8, 10, 12])
def test_f1_yes_all_right_is_not_a_point(n):
    truth = ["Yes", "No"] * (n // 2)
    interval = uncertainty.primary_interval(yes_no_lines(truth, truth), "f1_yes")
    assert interval["low"] < 100.0


# --- paired_difference --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("only_a", "only_b", "both", "neither"),
    [(8, 1, 10, 11), (3, 2, 5, 0), (0, 4, 2, 2), (12, 5, 30, 3), (1, 0, 0, 0)],
)
def test_sign_test_p_value(only_a, only_b, both, neither):
    a, b = pair(only_a, only_b, both, neither)
    n = len(a)
    result = uncertainty.paired_difference(lines_of(a), lines_of(b), "mean")
    assert result["p_value"] == pytest.approx(sign_test_p(only_a, only_b), rel=1e-9)
    # scipy's two-sided definition, which the hand count follows.
    assert sign_test_p(only_a, only_b) == pytest.approx(
        binomtest(only_a, only_a + only_b, 0.5).pvalue, rel=1e-9
    )
    assert result["difference"] == pytest.approx(100 * (only_a - only_b) / n, abs=1e-5)
    assert result["questions"] == n and result["discordant"] == only_a + only_b
    assert result["low"] <= result["difference"] <= result["high"]


def test_sign_test_p_value_by_hand():
    # 8 of 9 discordant: 2 x (C(9,0) + C(9,1)) / 2^9 = 20 / 512.
    assert sign_test_p(8, 1) == pytest.approx(20 / 512)
    a, b = pair(8, 1, 10, 11)
    assert uncertainty.paired_difference(lines_of(a), lines_of(b), "mean")["p_value"] == (
        pytest.approx(20 / 512)
    )


def test_identical_answers_differ_by_nothing():
    scores = [1, 0, 1, 1, 0, 1, 0, 0, 1]
    result = uncertainty.paired_difference(lines_of(scores), lines_of(scores), "mean")
    assert result["difference"] == 0.0 and result["p_value"] == 1.0
    assert result["low"] == 0.0 and result["high"] == 0.0
    assert result["discordant"] == 0


def test_questions_are_matched_by_index():
    a = lines_of([1, 1, 1, 1, 1, 0, 0, 1, 0, 1])  # indices 0..9
    b = lines_of([0, 1, 0, 0, 1, 0, 1, 1, 1, 1], start=5)  # indices 5..14
    b.reverse()  # order does not matter, the index does
    result = uncertainty.paired_difference(a, b, "mean")
    # Common questions 5..9: a scores 0 0 1 0 1, b scores 0 1 0 0 1.
    assert result["questions"] == 5
    assert result["difference"] == pytest.approx(100 * ((2 / 5) - (2 / 5)), abs=1e-9)
    assert result["discordant"] == 2
    assert result["p_value"] == pytest.approx(sign_test_p(1, 1))


def test_no_common_question_is_refused():
    with pytest.raises(uncertainty.UncertaintyError, match="no question in common"):
        uncertainty.paired_difference(lines_of([1, 0]), lines_of([1, 0], start=10), "mean")


@pytest.mark.parametrize(
    ("only_a", "only_b", "both", "neither"),
    [
        (6, 0, 10, 4),  # p = 2/64 = 0.031
        (5, 0, 10, 5),  # p = 2/32 = 0.0625
        (8, 1, 10, 11),  # p = 20/512 = 0.039
        (7, 1, 10, 12),  # p = 18/256 = 0.070
        (1, 7, 3, 3),
        (2, 12, 20, 6),
        (4, 4, 4, 4),
    ],
)
def test_interval_agrees_with_the_p_value(only_a, only_b, both, neither):
    a, b = pair(only_a, only_b, both, neither)
    result = uncertainty.paired_difference(lines_of(a), lines_of(b), "mean")
    p = sign_test_p(only_a, only_b)
    assert result["p_value"] == pytest.approx(p, rel=1e-9)
    contains_zero = result["low"] <= 0.0 <= result["high"]
    assert contains_zero == (p >= 0.05)


# --- holm ---------------------------------------------------------------------------------------

HOLM_CASES = [
    [0.01, 0.04, 0.03, 0.005],
    [0.02, 0.02, 0.02],  # ties
    [0.001, 0.02, 0.02, 0.3, 0.02],  # ties in the middle
    [0.4, 0.45, 0.5, 0.01],  # clips at 1
    [0.3, 0.4, 0.5, 0.01],
    [0.6, 0.9],
    [0.2],
    [0.04, 0.001, 0.012, 0.5, 0.049, 0.0003],
    [],
]


@pytest.mark.parametrize("p_values", HOLM_CASES)
def test_holm_matches_the_step_down_procedure(p_values):
    got = uncertainty.holm(p_values)
    assert got == pytest.approx(holm_step_down(p_values), abs=1e-15)
    assert all(0.0 <= g <= 1.0 for g in got)
    assert all(g >= p for g, p in zip(got, p_values, strict=True))
    # The adjusted p-value is the smallest level at which Holm's procedure rejects.
    for alpha in (0.001, 0.01, 0.025, 0.05, 0.1, 0.5, 0.999):
        assert {i for i, g in enumerate(got) if g <= alpha} == holm_rejects(p_values, alpha)
    try:
        from statsmodels.stats.multitest import multipletests
    except ImportError:
        return
    if p_values:
        assert got == pytest.approx(list(multipletests(p_values, method="holm")[1]))


def test_holm_by_hand():
    # Sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1: 0.02, 0.03, 0.06, 0.04 -> running max 0.06.
    assert uncertainty.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # Sorted 0.01, 0.4, 0.45, 0.5 times 4, 3, 2, 1: 0.04, 1.2 -> 1, 0.9, 0.5 -> running max 1.
    assert uncertainty.holm([0.4, 0.45, 0.5, 0.01]) == pytest.approx([1.0, 1.0, 1.0, 0.04])
    # 0.04, 0.9, 0.8, 0.5 -> running max 0.9 (no clipping).
    assert uncertainty.holm([0.3, 0.4, 0.5, 0.01]) == pytest.approx([0.9, 0.9, 0.9, 0.04])


# --- detectable_difference ----------------------------------------------------------------------


DETECTABLE_CASES = [
    ([1, 1, 0, 1, 0, 1, 1, 0, 1, 1], [0, 1, 0, 1, 1, 1, 0, 0, 1, 0], None),
    (
        [1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 1, 1],
        [0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 1],
        [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3],
    ),
    (
        [0.3, 0.6, 1.0, 0.6, 0.0, 1.0],
        [0.6, 0.6, 0.3, 0.0, 1.0, 0.3],
        ["p", "p", "q", "r", "s", "s"],
    ),
    # Enough questions that the spread, not the sign test's floor, decides.
    ([i % 2 for i in range(100)], [1 - i % 2 if i < 30 else i % 2 for i in range(100)], None),
]


def detectable_of(a, b, clusters) -> tuple[float, float, float]:
    """The module's answer (alone and in paired_difference), and the clustered variance."""
    clusters = list(range(len(a))) if clusters is None else clusters
    differences = [x - y for x, y in zip(a, b, strict=True)]
    a_lines, b_lines = lines_of(a, clusters), lines_of(b, clusters)
    got = uncertainty.detectable_difference(
        uncertainty.questions_of(a_lines), uncertainty.questions_of(b_lines)
    )
    in_comparison = uncertainty.paired_difference(a_lines, b_lines, "mean")["detectable"]
    return got, in_comparison, miller_variance(differences, clusters)


def sign_test_floor(clusters: int) -> float:
    # The fewest discordant questions, all one way, whose two-sided exact p = 2 / 2^k is at
    # most 0.05, as a share of the clusters in points (at most all of them).
    k = next(k for k in range(1, 64) if 2 * 0.5**k <= 0.05)
    return min(100, 100 * k / clusters)


@pytest.mark.parametrize(("a", "b", "clusters"), DETECTABLE_CASES)
def test_detectable_difference_of_two_runs(a, b, clusters):
    got, in_comparison, variance = detectable_of(a, b, clusters)
    n_clusters = len(set(clusters or range(len(a))))
    expected = min(
        100, max((Z95 + Z_POWER) * math.sqrt(variance) * 100, sign_test_floor(n_clusters))
    )
    assert got == pytest.approx(expected, abs=1e-5)
    assert in_comparison == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ([1, 0, 1, 1, 0] * 8, [1, 0, 1, 1, 0] * 8),  # identical: V 0
        ([1, 0, 1, 1, 0] * 8, [0, 0, 1, 1, 0] + [1, 0, 1, 1, 0] * 7),  # one discordant
    ],
)
def test_runs_that_agree_detect_no_less_than_the_sign_test_can(a, b):
    got, _, _ = detectable_of(a, b, None)
    assert got == pytest.approx(sign_test_floor(len(a)), abs=1e-5)
    assert got == pytest.approx(15.0, abs=1e-5)  # 6 of 40 questions


@pytest.mark.parametrize(
    ("n", "clusters"), [(10, None), (100, None), (500, None), (12, [i // 4 for i in range(12)])]
)
def test_detectable_difference_alone_is_the_worst_case(n, clusters):
    clusters = list(range(n)) if clusters is None else clusters
    q = uncertainty.questions_of(lines_of([i % 2 for i in range(n)], clusters))
    c = len(set(clusters))
    expected = min(100, max((Z95 + Z_POWER) * math.sqrt(0.5 / c) * 100, sign_test_floor(c)))
    assert uncertainty.detectable_difference(q) == pytest.approx(expected, abs=1e-5)


# --- limit_for_precision ------------------------------------------------------------------------


def worst_case_half_width_by_hand(n: int) -> float:
    low, high = wilson_formula(0.5, n)
    return 100 * (high - low) / 2


@pytest.mark.parametrize("points", [1, 2.5, 5, 10, 30])
def test_limit_is_the_fewest_questions_precise_enough(points):
    n = uncertainty.limit_for_precision(points)
    assert isinstance(n, int) and n >= 1
    assert worst_case_half_width_by_hand(n) <= points
    assert n == 1 or worst_case_half_width_by_hand(n - 1) > points
    # Wilson at p = 1/2 has half-width z / (2 sqrt(n + z^2)): n >= (50 z / points)^2 - z^2.
    assert n == max(1, math.ceil((50 * Z95 / points) ** 2 - Z95**2))


@pytest.mark.parametrize("bad", [0, -1, 51, True, "5", math.nan, math.inf])
def test_bad_precision_is_named(bad):
    with pytest.raises(uncertainty.UncertaintyError, match=re.escape(repr(bad))):
        uncertainty.limit_for_precision(bad)


# --- pooled_interval ----------------------------------------------------------------------------


def pooled_by_hand(figures: list[tuple[float, dict]]) -> tuple[float, float, float]:
    b = len(figures)
    mean = sum(score for score, _ in figures) / b
    variance = sum(((iv["high"] - iv["low"]) / 2 / Z95) ** 2 for _, iv in figures)
    half = Z95 * math.sqrt(variance) / b
    return mean, max(0.0, mean - half), min(100.0, mean + half)


@pytest.mark.parametrize(
    "figures",
    [
        [(70.0, {"low": 65.0, "high": 75.0}), (40.0, {"low": 30.0, "high": 48.0})],
        [(55.5, {"low": 50.0, "high": 61.0})],
        # Near the top: clips at 100.
        [(99.0, {"low": 90.0, "high": 100.0}), (100.0, {"low": 70.0, "high": 100.0})],
        # Near the bottom: clips at 0.
        [(0.0, {"low": 0.0, "high": 40.0}), (2.0, {"low": 0.0, "high": 30.0})],
        [
            (80.0, {"low": 77.0, "high": 83.0}),
            (60.0, {"low": 52.0, "high": 67.0}),
            (33.3, {"low": 31.0, "high": 36.0}),
        ],
    ],
)
def test_pooled_interval(figures):
    got = uncertainty.pooled_interval(figures)
    mean, low, high = pooled_by_hand(figures)
    assert got["score"] == pytest.approx(mean, abs=1e-5)
    assert got["low"] == pytest.approx(low, abs=1e-5)
    assert got["high"] == pytest.approx(high, abs=1e-5)
    assert 0.0 <= got["low"] <= got["score"] <= got["high"] <= 100.0
    assert got["benchmarks"] == len(figures)


def test_pooled_interval_needs_a_figure():
    with pytest.raises(uncertainty.UncertaintyError):
        uncertainty.pooled_interval([])


def test_a_cluster_counts_at_least_as_one_question():
    # One cluster of ten wrong answers beside five right singletons: Miller's variance gives
    # n_eff = p(1-p)/V = (2/9) / (120/9/225) = 3.75, fewer than the 6 clusters; each cluster
    # still counts as one question, so the interval is Wilson's at 6.
    scores = [0] * 10 + [1] * 5
    clusters = ["big"] * 10 + [f"s{i}" for i in range(5)]
    interval = uncertainty.primary_interval(lines_of(scores, clusters), "mean")
    low, high = wilson_formula(1 / 3, 6)
    assert interval["low"] == pytest.approx(100 * low, abs=1e-5)
    assert interval["high"] == pytest.approx(100 * high, abs=1e-5)


def enumerated_permutation_p(a_clusters: list[list], b_clusters: list[list], statistic) -> float:
    """Two-sided p of the paired permutation test by enumeration: every way of swapping whole
    clusters' answers between the runs, the share whose |difference| is at least the
    observed's (the null distribution of a swap is symmetric about 0)."""
    observed = statistic(a_clusters, b_clusters)
    extreme = 0
    swaps = list(itertools.product((False, True), repeat=len(a_clusters)))
    for swap in swaps:
        x = [b if s else a for a, b, s in zip(a_clusters, b_clusters, swap, strict=True)]
        y = [a if s else b for a, b, s in zip(a_clusters, b_clusters, swap, strict=True)]
        extreme += abs(statistic(x, y)) >= abs(observed) - 1e-12
    return extreme / len(swaps)


def mean_difference(x: list[list], y: list[list]) -> float:
    n = sum(len(c) for c in x)
    return (sum(map(sum, x)) - sum(map(sum, y))) / n


def f1_difference(x: list[list], y: list[list]) -> float:
    def f1(clusters):
        pairs = [p for c in clusters for p in c]
        tp = sum(t and s for t, s in pairs)
        wrong = sum(t != s for t, s in pairs)
        return 2 * tp / (2 * tp + wrong) if tp else 0.0

    return f1(x) - f1(y)


def test_graded_clustered_comparison_takes_the_exact_permutation_p():
    a = [0.3, 0.6, 1.0, 1.0, 0.0, 0.6, 1.0, 0.9, 1.0, 0.6]
    b = [0.0, 0.6, 0.3, 1.0, 0.0, 0.0, 0.6, 0.9, 0.3, 0.0]
    clusters = [0, 0, 1, 1, 2, 3, 4, 5, 6, 7]
    groups = sorted(set(clusters))
    a_c = [[s for s, c in zip(a, clusters, strict=True) if c == g] for g in groups]
    b_c = [[s for s, c in zip(b, clusters, strict=True) if c == g] for g in groups]
    result = uncertainty.paired_difference(lines_of(a, clusters), lines_of(b, clusters), "mean")
    expected = enumerated_permutation_p(a_c, b_c, mean_difference)
    assert result["p_value"] == pytest.approx(expected, abs=1e-12)
    assert "permutation" in result["method"]


def test_f1_comparison_takes_the_exact_permutation_p():
    truth = ["Yes", "No", "Yes", "Yes", "No", "Yes", "No", "Yes", "Yes", "No", "Yes", "Yes"]
    a_said = list(truth)
    b_said = ["No", "No", "No", "Yes", "Yes", "No", "No", "No", "Yes", "No", "No", "Yes"]
    clusters = [0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 8]
    groups = sorted(set(clusters))

    def by_cluster(said):
        return [
            [
                (t == "Yes", s == "Yes")
                for t, s, c in zip(truth, said, clusters, strict=True)
                if c == g
            ]
            for g in groups
        ]

    a = yes_no_lines(truth, a_said, clusters)
    b = yes_no_lines(truth, b_said, clusters)
    result = uncertainty.paired_difference(a, b, "f1_yes")
    expected = enumerated_permutation_p(by_cluster(a_said), by_cluster(b_said), f1_difference)
    assert result["p_value"] == pytest.approx(expected, abs=1e-12)
    assert result["difference"] == pytest.approx(
        100 * f1_difference(by_cluster(a_said), by_cluster(b_said)), abs=1e-5
    )


@pytest.mark.parametrize(
    ("a", "b", "clusters", "statistic"),
    [
        ([1, 1, 0], [0, 0, 0], ["set"] * 3, "mean"),  # one HallusionBench set
        ([0.6, 0.3], [0.0, 0.3], ["one", "one"], "mean"),
        ([1.0], [0.3], None, "mean"),  # one graded question
    ],
)
def test_one_cluster_shows_no_difference(a, b, clusters, statistic):
    result = uncertainty.paired_difference(lines_of(a, clusters), lines_of(b, clusters), statistic)
    assert result["p_value"] == 1.0
    assert result["low"] <= result["difference"] <= result["high"]


def test_one_image_of_pope_shows_no_difference():
    truth = ["Yes", "No", "Yes"]
    a = yes_no_lines(truth, truth, ["img"] * 3)
    b = yes_no_lines(truth, ["No", "No", "No"], ["img"] * 3)
    result = uncertainty.paired_difference(a, b, "f1_yes")
    assert result["p_value"] == 1.0
    assert result["difference"] == pytest.approx(100.0)
