"""A prediction file's scores, as an ok status record carries them.

VLMEvalKit's own evaluation of the file (``dataset.evaluate``) gives the figures, flattened by
its ``flatten_summary_metrics``; its ``report_primary_metric`` names the headline one, which
``vlmfleet.scores`` puts on 0-100 with the benchmark's ``score_scale``. What exact matching
cannot judge is said in the record's ``scoring_note``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from vlmfleet.contract import Benchmark
from vlmfleet.scores import primary_score


class EvaluationError(RuntimeError):
    """An evaluation without usable figures; the message is the status record's reason."""


def clean_scores(flat: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of VLMEvalKit's flattened figures (a record holds no NaN)."""
    out = {}
    for key, value in flat.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(float(value)):
            out[str(key)] = float(value)
    return out


def open_question_note(data: Any, dataset_type: str, judge: str) -> str | None:
    """What exact matching cannot judge in an MCQ set: its open questions (rows without
    options, such as MMMU's), which VLMEvalKit turns into "the answer or Other Answers"."""
    if dataset_type != "MCQ" or judge != "exact_matching" or "A" not in data:
        return None
    import pandas as pd

    open_rows = int(sum(1 for a in data["A"] if pd.isna(a) or str(a) == ""))
    if not open_rows:
        return None
    return (
        f"{open_rows} of {len(data)} questions are open (no options): exact matching counts "
        "one right only when the answer's text appears in the prediction, so a paraphrase "
        "counts wrong; a judge model would score those"
    )


def evaluate(
    dataset: Any, pred_file: str, bench: Benchmark, judge: str, questions: int
) -> dict[str, Any]:
    """The fields of an ok record (``contract.make_record``'s keywords) for ``pred_file``."""
    from vlmeval.smp.status_report import flatten_summary_metrics

    raw = dataset.evaluate(pred_file, model=judge, nproc=1)
    scores = clean_scores(flatten_summary_metrics(raw))
    if not scores:
        raise EvaluationError(f"VLMEvalKit's evaluation of {bench.name} returned no scores")
    # Some datasets derive their headline figure (AI2D's "Overall Acc" is 100 x
    # "split=none|Overall"), so it joins the scores under its own name.
    primary = clean_scores(dataset.report_primary_metric(scores))
    primary_key = next(iter(primary), None)
    fields: dict[str, Any] = {"primary_metric": None}
    if primary_key is not None:
        scores.setdefault(primary_key, primary[primary_key])
        fields = primary_score(
            primary_key, scores[primary_key], bench.score_scale, questions
        ).record_fields()
    return {
        "samples": questions,
        "scores": scores,
        **fields,
        "scoring_note": open_question_note(dataset.data, bench.dataset_type, judge),
        "extra": {
            "predictions": len(dataset.data),
            "prediction_file": Path(pred_file).name,
        },
    }
