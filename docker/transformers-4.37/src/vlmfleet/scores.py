"""A combination's primary score on 0-100, from VLMEvalKit's own figures.

VLMEvalKit reports each benchmark in its own scale: its MCQ evaluators give accuracy as a
fraction, yes/no and VQA evaluators give percentages, and OCRBench counts hits (its "Final
Score" is a number of right answers, and "Final Score Norm" divides that count by 10, which
is a percentage only for the full 1000-question set). The slot file gives each benchmark's
``score_scale`` (what its dataset type's figures read when every question is right, from the
catalogue); the metrics that count hits are facts of VLMEvalKit's metrics and are kept here.
The worker knows which metric it read and how many questions were evaluated, so it records the
scale beside the value and the report never guesses. No torch imports: the controller's tests
import this module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Metrics counted in right answers, whose full scale is the number of questions evaluated.
HIT_COUNT_METRICS = ("Final Score",)
# Metrics that VLMEvalKit derives as a hit count divided by this (OCRBench's 1000 questions / 100).
HIT_COUNT_DIVISORS = {"Final Score Norm": 10.0}
# Metrics in percent whatever the dataset type (ms-vlmeval 0.0.20's report_primary_metric
# derives "Overall Acc" as 100 x the fraction).
PERCENT_METRICS = ("Overall Acc",)


class ScoreError(ValueError):
    """A primary metric that cannot be put on 0-100."""


@dataclass(frozen=True)
class PrimaryScore:
    metric: str  # VLMEvalKit's key, as in the record's scores
    value: float  # VLMEvalKit's figure, in its own scale
    full_scale: float  # what that figure reads when every question is right
    score: float  # value / full_scale x 100

    def record_fields(self) -> dict[str, object]:
        return {
            "primary_metric": self.metric,
            "primary_score": self.score,
            "primary_scale": self.full_scale,
        }


def full_scale(metric: str, score_scale: float, questions: int) -> float:
    """What ``metric`` reads when all ``questions`` are right; ``score_scale`` is what the
    benchmark's other figures read then (the slot file's)."""
    if metric in HIT_COUNT_METRICS:
        return float(questions)
    if metric in HIT_COUNT_DIVISORS:
        return questions / HIT_COUNT_DIVISORS[metric]
    if metric in PERCENT_METRICS:
        return 100.0
    if (
        isinstance(score_scale, bool)
        or not isinstance(score_scale, int | float)
        or score_scale <= 0
    ):
        raise ScoreError(f"score_scale must be a positive number, got {score_scale!r}")
    return float(score_scale)


def primary_score(metric: str, value: float, score_scale: float, questions: int) -> PrimaryScore:
    """VLMEvalKit's ``value`` of ``metric`` over ``questions`` questions, on 0-100."""
    if questions < 1:
        raise ScoreError(f"a primary score needs at least one question, got {questions}")
    if not math.isfinite(value):
        raise ScoreError(f"primary metric {metric!r} is not a finite number: {value!r}")
    scale = full_scale(metric, score_scale, questions)
    return PrimaryScore(metric, float(value), scale, round(value / scale * 100.0, 6))
