"""VLMEvalKit's own scores of always-right and always-wrong answers, inside the image.

Runs in the evaluation image (tests/e2e/test_known_answers.py starts it with the repository's
worker package mounted over the image's and tests/ on PYTHONPATH):

    python tests/e2e/in_image_scoring.py --questions 1 7 24 [--benchmarks POPE,OCRBench]

For each benchmark and question count: the worker's synthetic TSV of that many questions
(vlmfleet.datasets.use_synthetic_dataset), VLMEvalKit's dataset for it, and two prediction files
in VLMEvalKit's format (the dataset's rows without images, plus a prediction column) whose
answers are all right, all wrong (scoring.answer_sets) and what the known-answer checkpoints
were trained to say ("seen": vlmfleet.known_answer_checkpoints.right_answer, which the graded
VQA rows score between 0 and 1). Each file is scored by ``dataset.evaluate(file,
model="exact_matching", nproc=1)``, as the worker scores one, and by this repository's
published metrics read back from the same file. Prints one line per file: ``IN_IMAGE_SCORE
{json}`` with benchmark, questions, answers ("right"/"wrong"/"seen"), metric and value
(VLMEvalKit's primary key and raw value), scores (all flattened figures), published
(scoring.published_metrics.primary_score), published_questions (its per-question scores,
scoring.published_metrics.question_scores), vlmfleet_primary_score (or vlmfleet_error), and
the worker's question fields (vlmfleet.question_scores.question_fields: questions_file,
primary_interval, questions_note) with the questions file's lines.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

MARKER = "IN_IMAGE_SCORE "
ORACLE_MODEL = "oracle"


def default_benchmarks() -> dict[str, str]:
    from vlmfleet.known_answer_checkpoints import DEFAULT_BENCHMARKS

    return {name: bench.kind for name, bench in DEFAULT_BENCHMARKS.items()}


def prediction_file(dataset: Any, answers: dict[str, str], path: Path) -> Path:
    """VLMEvalKit's prediction file for ``dataset``: its rows without images, plus answers."""
    from scoring.published_metrics import index_key
    from vlmeval.smp import dump

    data = dataset.data.drop(columns=[c for c in ("image", "image_path") if c in dataset.data])
    data = data.copy()
    data["prediction"] = [answers[index_key(i)] for i in data["index"]]
    dump(data, str(path))
    return path


def vlmfleet_primary(metric: str, value: float, dataset: Any, questions: int) -> float | None:
    """The worker's primary score (vlmfleet.scores.primary_score) of VLMEvalKit's figure, or
    None while the worker package has no vlmfleet.scores."""
    try:
        scores_module = importlib.import_module("vlmfleet.scores")
    except ModuleNotFoundError:
        return None
    from vlmfleet.known_answer_checkpoints import DEFAULT_BENCHMARKS

    scale = DEFAULT_BENCHMARKS[dataset.dataset_name].score_scale
    result = scores_module.primary_score(
        metric=metric, value=value, score_scale=scale, questions=questions
    )
    return float(result.score)


ANSWER_SETS = ("right", "wrong", "seen")


def answers_for(kind: str, rows: list[dict[str, Any]], answers: str) -> dict[str, str]:
    """The prediction of each row by index: always right, always wrong, or as the known-answer
    strong checkpoint was trained to answer."""
    from scoring.answer_sets import answer_set
    from scoring.published_metrics import index_key
    from vlmfleet.known_answer_checkpoints import right_answer

    if answers == "seen":
        return {index_key(r["index"]): right_answer(kind, r) for r in rows}
    return answer_set(kind, rows, right=answers == "right")


def score_case(name: str, kind: str, questions: int, answers: str, work: Path) -> dict[str, Any]:
    from scoring.published_metrics import (
        primary_score,
        question_scores,
        read_predictions,
    )
    from vlmeval.dataset import build_dataset
    from vlmeval.smp.status_report import flatten_summary_metrics
    from vlmfleet.datasets import use_synthetic_dataset
    from vlmfleet.known_answer_checkpoints import DEFAULT_BENCHMARKS
    from vlmfleet.question_scores import question_fields
    from vlmfleet.smoke_data import synthetic_rows

    lmu = work / "LMUData"
    os.environ["LMUData"] = str(lmu)  # noqa: SIM112 (VLMEvalKit's name for its data root)
    shape = DEFAULT_BENCHMARKS[name].smoke_shape
    use_synthetic_dataset(lmu, name, shape, questions)
    dataset = build_dataset(name)
    rows = synthetic_rows(name, shape, questions)
    case_dir = work / f"{name}-{questions}-{answers}"
    case_dir.mkdir()
    pred = prediction_file(
        dataset, answers_for(kind, rows, answers), case_dir / f"{ORACLE_MODEL}_{name}.xlsx"
    )
    predicted = read_predictions(pred)
    published = primary_score(name, rows, predicted)
    result = dataset.evaluate(str(pred), model="exact_matching", nproc=1)
    flat = {
        k: float(v)
        for k, v in flatten_summary_metrics(result).items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }
    primary = dataset.report_primary_metric(flat)
    metric, value = next(iter(primary.items()), (None, None))
    record: dict[str, Any] = {
        "benchmark": name,
        "questions": questions,
        "answers": answers,
        "metric": metric,
        "value": value,
        "scores": flat,
        "published": published,
        "published_questions": question_scores(name, rows, predicted),
    }
    try:
        ours = vlmfleet_primary(metric, value, dataset, questions)
    except Exception as err:  # reported to the test, which fails on it
        record["vlmfleet_error"] = f"{type(err).__name__}: {err}"
        return record
    record["vlmfleet_primary_score"] = ours
    # As the worker: VLMEvalKit's evaluation has written its files beside the predictions.
    fields = question_fields(dataset, str(pred), "exact_matching", metric, ours)
    record.update(fields)
    if fields["questions_file"] is not None:
        text = (case_dir / fields["questions_file"]).read_text(encoding="utf-8")
        record["question_lines"] = [json.loads(x) for x in text.splitlines()]
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, nargs="+", default=[1, 7, 24])
    parser.add_argument("--benchmarks", default="", help="comma list; default: every default one")
    args = parser.parse_args(argv)
    kinds = default_benchmarks()
    names = [b for b in args.benchmarks.split(",") if b] or list(kinds)
    unknown = [b for b in names if b not in kinds]
    if unknown:
        parser.error(f"no synthetic data for {', '.join(unknown)}; known: {', '.join(kinds)}")
    with tempfile.TemporaryDirectory(prefix="in-image-scoring-") as tmp:
        for questions in args.questions:
            for name in names:
                for answers in ANSWER_SETS:
                    record = score_case(name, kinds[name], questions, answers, Path(tmp))
                    print(MARKER + json.dumps(record, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
