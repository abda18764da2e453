"""A prediction file's scores, as an ok status record carries them.

VLMEvalKit's own evaluation of the file (``dataset.evaluate``) gives the figures, flattened by
its ``flatten_summary_metrics``; its ``report_primary_metric`` names the headline one, which
``vlmfleet.scores`` puts on 0-100 with the benchmark's ``score_scale``. What exact matching
cannot judge is said in the record's ``scoring_note``. The questions VLMEvalKit scored go
beside the predictions, one line each, with the primary score's interval from them
(``vlmfleet.question_scores``).

A benchmark whose judge is "openai" is evaluated with VLMEvalKit's own judge (``build_judge``:
its OpenAIWrapper) at the slot's base URL, with the key the token file gave this process
(``contract.JUDGE_KEY_ENV``). VLMEvalKit falls back to exact matching, with a warning only,
when the judge does not answer its check; here that combination fails instead, so a score
always comes from the judge its record names.
"""

from __future__ import annotations

import math
import os
import threading
from pathlib import Path
from typing import Any

from vlmfleet.contract import (
    CONTAINER_SECRET_ENV,
    EXACT_MATCHING,
    JUDGE_KEY_ENV,
    PREDICTION_DIGEST_KEY,
    PREDICTION_FILE_KEY,
    Benchmark,
    Slot,
    file_sha256,
)
from vlmfleet.question_scores import question_fields
from vlmfleet.scores import primary_score

# VLMEvalKit's OpenAIWrapper posts to this path below the base URL.
CHAT_PATH = "/chat/completions"
# Whether each judge (model, URL) answered VLMEvalKit's check, asked once per process:
# evaluations run on several threads.
_answered: dict[tuple[str, str], bool] = {}
_answered_lock = threading.Lock()


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
    if dataset_type != "MCQ" or judge != EXACT_MATCHING or "A" not in data:
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


def judge_kwargs(bench: Benchmark, slot: Slot) -> dict[str, Any]:
    """What ``dataset.evaluate`` takes to match ``bench``'s answers: exact matching, or the
    slot's judge model with its URL and key (raises EvaluationError when there is no key)."""
    if bench.judge == EXACT_MATCHING:
        return {"model": EXACT_MATCHING}
    key = os.environ.get(JUDGE_KEY_ENV, "")
    if not key:
        raise EvaluationError(
            f"judge {bench.judge} ({slot.judge_model}) has no key: {CONTAINER_SECRET_ENV} holds "
            f"no {JUDGE_KEY_ENV}; set eval_dirs_judge_api_key and run ansible-playbook site.yml "
            "--tags eval_dirs"
        )
    return {
        "model": slot.judge_model,
        "api_base": f"{slot.judge_base_url}{CHAT_PATH}",
        "key": key,
    }


def check_judge(kwargs: dict[str, Any]) -> None:
    """Fail (EvaluationError) when the judge does not answer VLMEvalKit's own check
    (``BaseAPI.working``), asked once per judge and process."""
    if kwargs["model"] == EXACT_MATCHING:
        return
    from vlmeval.dataset.utils import build_judge

    judge = (kwargs["model"], kwargs["api_base"])
    with _answered_lock:
        if judge not in _answered:
            _answered[judge] = bool(build_judge(**kwargs).working())
    if not _answered[judge]:
        raise EvaluationError(
            f"judge {kwargs['model']} at {kwargs['api_base']} did not answer VLMEvalKit's check "
            "(a short chat completion); VLMEvalKit would fall back to exact matching, so this "
            "combination is not scored"
        )


def shard_fields(dataset: Any, pred_file: str, questions: int) -> dict[str, Any]:
    """The fields of a shard's ok record: its predictions are kept for the merge, which
    evaluates the whole benchmark once (a part's figures would not add up to the whole's), and
    its digest lets every later reader tell a damaged copy (contract.prediction_problems)."""
    return {
        "samples": questions,
        "extra": {
            "predictions": len(dataset.data),
            PREDICTION_FILE_KEY: Path(pred_file).name,
            PREDICTION_DIGEST_KEY: file_sha256(pred_file),
        },
    }


def evaluate(
    dataset: Any, pred_file: str, bench: Benchmark, slot: Slot, questions: int
) -> dict[str, Any]:
    """The fields of an ok record (``contract.make_record``'s keywords) for ``pred_file``."""
    from vlmeval.smp.status_report import flatten_summary_metrics

    kwargs = judge_kwargs(bench, slot)
    check_judge(kwargs)
    raw = dataset.evaluate(pred_file, nproc=1, **kwargs)
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
    questions_fields = question_fields(
        dataset, pred_file, kwargs["model"], primary_key, fields.get("primary_score")
    )
    return {
        "samples": questions,
        "scores": scores,
        **fields,
        **questions_fields,
        "scoring_note": open_question_note(dataset.data, bench.dataset_type, bench.judge),
        "extra": {
            "predictions": len(dataset.data),
            "prediction_file": Path(pred_file).name,
            # Which judge matched the answers (never its key).
            "judge": bench.judge,
            **({"judge_model": slot.judge_model} if bench.judge != EXACT_MATCHING else {}),
        },
    }
