"""vlmfleet.scores: VLMEvalKit's primary metrics on 0-100, from the benchmark's score_scale (the
slot file's) and the metrics that count hits. The scales are the ones VLMEvalKit reads on
always-right answer sets in the image (tests/e2e/test_known_answers.py checks them)."""

from __future__ import annotations

import pytest
from vlmfleet.scores import ScoreError, primary_score


@pytest.mark.parametrize(
    ("metric", "value", "score_scale", "questions", "score", "scale"),
    [
        ("split=dev|Overall", 0.7, 1, 10, 70.0, 1.0),  # MCQ accuracy as a fraction
        ("Overall Acc", 70.0, 1, 10, 70.0, 100.0),  # report_primary_metric's x100
        ("split=Overall|Overall", 85.0, 100, 10, 85.0, 100.0),  # POPE F1 in percent
        ("Overall", 42.0, 100, 7, 42.0, 100.0),
        # OCRBench counts right answers: 7 of 10 is 70, not 0.7 (a fixed /1000) nor 0.7 (/10).
        ("Final Score", 7, 100, 10, 70.0, 10.0),
        ("Final Score Norm", 0.7, 100, 10, 70.0, 1.0),
        ("Final Score", 1000, 100, 1000, 100.0, 1000.0),
    ],
)
def test_primary_score_reads_each_scale(metric, value, score_scale, questions, score, scale):
    got = primary_score(metric, value, score_scale, questions)
    assert got.score == pytest.approx(score) and got.full_scale == scale
    assert got.record_fields() == {
        "primary_metric": metric,
        "primary_score": got.score,
        "primary_scale": scale,
    }


def test_bad_scale_and_bad_values_are_named():
    for bad in (0, -1.0, True, "100"):
        with pytest.raises(ScoreError, match="score_scale must be a positive number"):
            primary_score("x", 1.0, bad, 3)
    with pytest.raises(ScoreError, match="at least one question"):
        primary_score("Overall", 1.0, 100, 0)
    with pytest.raises(ScoreError, match="not a finite number"):
        primary_score("Overall", float("nan"), 100, 3)
