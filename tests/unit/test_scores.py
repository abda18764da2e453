"""vlmfleet.scores: VLMEvalKit's primary metrics on 0-100. The scales are the ones VLMEvalKit
reads on always-right answer sets in the image (tests/e2e/test_known_answers.py checks them)."""

from __future__ import annotations

import pytest
from vlmfleet.scores import ScoreError, primary_score


@pytest.mark.parametrize(
    ("metric", "value", "dataset_type", "questions", "score", "scale"),
    [
        ("split=dev|Overall", 0.7, "MCQ", 10, 70.0, 1.0),  # MCQ accuracy as a fraction
        ("Overall Acc", 70.0, "MCQ", 10, 70.0, 100.0),  # report_primary_metric's x100
        ("split=Overall|Overall", 85.0, "Y/N", 10, 85.0, 100.0),  # POPE F1 in percent
        ("Overall", 42.0, "VQA", 7, 42.0, 100.0),
        # OCRBench counts right answers: 7 of 10 is 70, not 0.7 (a fixed /1000) nor 0.7 (/10).
        ("Final Score", 7, "VQA", 10, 70.0, 10.0),
        ("Final Score Norm", 0.7, "VQA", 10, 70.0, 1.0),
        ("Final Score", 1000, "VQA", 1000, 100.0, 1000.0),
    ],
)
def test_primary_score_reads_each_scale(metric, value, dataset_type, questions, score, scale):
    got = primary_score(metric, value, dataset_type, questions)
    assert got.score == pytest.approx(score) and got.full_scale == scale
    assert got.record_fields() == {
        "primary_metric": metric,
        "primary_score": got.score,
        "primary_scale": scale,
    }


def test_unknown_scale_and_bad_values_are_named():
    with pytest.raises(ScoreError, match="no known scale for metric 'x' of VLMEvalKit type 'MT'"):
        primary_score("x", 1.0, "MT", 3)
    with pytest.raises(ScoreError, match="at least one question"):
        primary_score("Overall", 1.0, "VQA", 0)
    with pytest.raises(ScoreError, match="not a finite number"):
        primary_score("Overall", float("nan"), "VQA", 3)
