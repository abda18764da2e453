"""A combination's scored questions, as VLMEvalKit judged each one, and the primary score's
interval from them.

Beside the prediction file ``<stem>.<fmt>`` the worker writes ``<stem>`` +
``contract.QUESTIONS_SUFFIX``: one JSON line per question (lmms-eval's ``--log_samples``
convention), ``{"index", "cluster", "split", "prediction", "extracted", "answer", "score"}``,
``score`` on 0-1 in the primary metric's units. Every score is VLMEvalKit's own judgment of the
row (ms-vlmeval 0.0.20), read from the files its evaluation wrote or from its per-row
functions, never re-implemented:

- multiple choice (``ImageMCQDataset.evaluate_heuristic``, MMMU's class too): the eval record
  ``get_intermediate_file_path(pred, f"_{name_str}_result")``, whose ``hit`` is per row (per
  circular group for MMBench: ``mcq_circular_eval`` keeps the group's main row); the lines of
  the split the primary key names (``split=<s>|...``);
- yes/no (``ImageYORNDataset.evaluate``, ``vlmeval/dataset/image_yorn.py``): the file
  ``get_intermediate_file_path(pred, "_auxmatch")`` with ``extracted`` and ``score`` per row;
  POPE's primary is ``POPE_rating``'s F1 of "Yes" (statistic ``f1_yes``), the others a mean;
- VQA (``ImageVQADataset.evaluate_heuristic`` and ``VizWiz.evaluate``,
  ``vlmeval/dataset/image_vqa.py``): ``vqa_eval.process_line`` with the method the class picks
  by name, then ``vqa_eval.hit_calculate([result], name)[0]``;
- OCRBench (``OCRBench.evaluate``, no per-row function): the class's own evaluation of a
  one-row file in a temporary folder, whose "Final Score" is then 0 or 1.

Questions cluster where they are correlated: a circular MMBench group is one line; a
HallusionBench set (subcategory and set id of the index, both its figures and questions); a POPE
image (its rows share one picture; ``remember_images`` keeps each row's image digest before the
prediction file drops the images); every other row is its own cluster. The lines' statistic
(``vlmfleet.uncertainty.statistic_value``) must give back the record's primary score on the
spot, else the score gets no interval and ``questions_note`` says why.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlmfleet.contract import QUESTIONS_SUFFIX

log = logging.getLogger("vlmfleet.question_scores")

# How far the questions' statistic may be from the record's primary score (0-100): that score is
# rounded to 6 decimals (vlmfleet.scores).
TOLERANCE = 1e-6
# ImageMCQDataset.evaluate_heuristic names its eval record after the judge, with these renames
# (its local name_str_map).
JUDGE_FILE_NAMES = {"chatgpt-0125": "openai", "gpt-4-0125": "gpt4"}
# Where a dataset object keeps its rows' image digests (remember_images).
IMAGE_KEYS = "vlmfleet_image_keys"
_SPLIT_KEY = re.compile(r"split=([^|]*)\|")

Line = dict[str, Any]


@dataclass(frozen=True)
class Scored:
    """A combination's question lines, the statistic that gives its primary figure, and what
    kept them from giving it (None: nothing)."""

    lines: list[Line]
    statistic: str
    problem: str | None = None


# --- the rows ------------------------------------------------------------------------------


def index_text(value: Any) -> str:
    """A row index as text (42, 42.0 and "42" are one row)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def text_or_none(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value)


def as_score(value: Any) -> float:
    """A yes/no row's ``score`` (a boolean, which a file may give back as 0/1 or as text)."""
    if isinstance(value, str):
        return float(value.strip().lower() in ("true", "1", "1.0"))
    return float(bool(value))


def rows_of(frame: Any) -> list[dict[str, Any]]:
    return frame.to_dict("records")


def answers_by_index(dataset: Any, column: str = "answer") -> dict[str, str]:
    data = dataset.data
    if column not in data:
        return {}
    return {index_text(i): str(a) for i, a in zip(data["index"], data[column], strict=True)}


def line(
    row: dict[str, Any],
    *,
    cluster: str,
    answer: str,
    score: float,
    extracted: str | None = None,
    split: str | None = None,
) -> Line:
    return {
        "index": index_text(row["index"]),
        "cluster": cluster,
        "split": split,
        "prediction": str(row["prediction"]),
        "extracted": extracted,
        "answer": answer,
        "score": float(score),
    }


def _class_named(dataset: Any, name: str) -> bool:
    return any(c.__name__ == name for c in type(dataset).__mro__)


def _evaluates_as(dataset: Any, owner: str) -> bool:
    """Whether ``dataset``'s evaluate is VLMEvalKit's ``<owner>.evaluate`` (a subclass with an
    evaluation of its own writes other files)."""
    evaluate = getattr(type(dataset), "evaluate", None)
    return getattr(evaluate, "__qualname__", "") == f"{owner}.evaluate"


# --- multiple choice -----------------------------------------------------------------------


def mcq_record_path(pred_file: str, judge_model: str) -> str:
    from vlmeval.smp import get_intermediate_file_path

    name = JUDGE_FILE_NAMES.get(judge_model, judge_model)
    return get_intermediate_file_path(pred_file, f"_{name}_result")


def primary_split(primary_key: str) -> str | None:
    """The split a primary key reads ("split=validation|Overall" -> "validation"); None for
    every row (no split, or report_acc's "none" of data without a split column)."""
    match = _SPLIT_KEY.match(primary_key)
    if not match or match.group(1) == "none":
        return None
    return match.group(1)


def mcq_lines(dataset: Any, pred_file: str, judge_model: str, primary_key: str) -> Scored:
    """One line per row of the eval record (per circular group: its main row), ``hit`` as the
    score, the lines of the primary key's split."""
    from vlmeval.smp import load

    record = mcq_record_path(pred_file, judge_model)
    if not os.path.exists(record):
        return Scored([], "mean", f"VLMEvalKit wrote no eval record {Path(record).name}")
    answers = answers_by_index(dataset)
    wanted = primary_split(primary_key)
    lines = []
    for row in rows_of(load(record)):
        split = text_or_none(row.get("split"))
        if wanted is not None and split != wanted:
            continue
        index = index_text(row["index"])
        lines.append(
            line(row, cluster=index, answer=answers.get(index, str(row["answer"])),
                 score=float(row["hit"]), split=split)
        )  # fmt: skip
    return Scored(lines, "mean")


# --- yes / no ------------------------------------------------------------------------------


def yorn_statistic(name: str) -> str | None:
    """The statistic of the rating ImageYORNDataset.evaluate picks for ``name`` (its order of
    listinstr tests); None for ratings that are no statistic of the rows' scores (MME's
    per-image pairs, AMBER's and VSR's own)."""
    from vlmeval.smp import listinstr

    if listinstr(["MME"], name):
        return None
    if listinstr(["Hallusion"], name):
        return "mean"  # Hallusion_rating's aAcc
    if listinstr(["POPE"], name):
        return "f1_yes"  # POPE_rating's Overall
    if listinstr(["AMBER", "VSR-zeroshot"], name):
        return None
    return "mean"  # default_rating's Overall


def hallusion_set(row: dict[str, Any]) -> str:
    """A HallusionBench set: subcategory and set id (the index's field 3, as Hallusion_rating
    reads it), which holds both figures and all questions of the set."""
    return f"{row.get('l2-category')}_{str(row['index']).split('_')[3]}"


def remember_images(dataset: Any) -> None:
    """Keep a digest of each row's image on ``dataset`` (before the prediction file is written,
    which drops the images) where questions cluster by image: POPE asks several questions of
    each picture, and its TSV repeats the picture in each row."""
    from vlmeval.smp import listinstr

    data = dataset.data
    if not listinstr(["POPE"], dataset.dataset_name):
        return
    column = "image" if "image" in data else "image_path" if "image_path" in data else None
    if column is None:
        return
    keys = {
        index_text(i): hashlib.sha1(str(v).encode(), usedforsecurity=False).hexdigest()[:16]
        for i, v in zip(data["index"], data[column], strict=True)
    }
    setattr(dataset, IMAGE_KEYS, keys)


def yorn_cluster(dataset: Any, row: dict[str, Any]) -> str:
    index = index_text(row["index"])
    from vlmeval.smp import listinstr

    if listinstr(["Hallusion"], dataset.dataset_name):
        return hallusion_set(row)
    images = getattr(dataset, IMAGE_KEYS, None) or {}
    return images.get(index, index)


def yorn_lines(dataset: Any, pred_file: str) -> Scored:
    """One line per row of the auxmatch file: its ``extracted`` answer and ``score``."""
    from vlmeval.smp import get_intermediate_file_path, load

    statistic = yorn_statistic(dataset.dataset_name)
    if statistic is None:
        return Scored([], "mean", f"{dataset.dataset_name}'s rating is no statistic of its rows")
    storage = get_intermediate_file_path(pred_file, "_auxmatch")
    if not os.path.exists(storage):
        return Scored([], statistic, f"VLMEvalKit wrote no {Path(storage).name}")
    lines = [
        line(row, cluster=yorn_cluster(dataset, row), answer=str(row["answer"]),
             score=as_score(row["score"]), extracted=text_or_none(row.get("extracted")))
        for row in rows_of(load(storage))
    ]  # fmt: skip
    return Scored(lines, statistic)


# --- VQA -----------------------------------------------------------------------------------


def vqa_method(name: str) -> str:
    """The process_line method ImageVQADataset.evaluate_heuristic picks for ``name`` (its order
    of listinstr tests; VizWiz's evaluate and the default take vqa_score)."""
    from vlmeval.smp import listinstr

    if listinstr(["TextVQA"], name):
        return "vqa_score"
    if listinstr(["ChartQA"], name):
        return "relaxed_accuracy"
    if listinstr(["OCRVQA", "GQA"], name):
        return "accuracy"
    if listinstr(["DocVQA", "InfoVQA"], name):
        return "anls"
    return "vqa_score"


def vqa_lines(dataset: Any, pred_file: str, answer_column: str = "answer") -> Scored:
    """Each row scored by VLMEvalKit's process_line and hit_calculate, as the class scores it
    (VizWiz reads its human answers from ``answers``)."""
    from vlmeval.dataset.utils.vqa_eval import hit_calculate, process_line
    from vlmeval.smp import load

    name = dataset.dataset_name
    method = vqa_method(name)
    lines = []
    for row in rows_of(load(pred_file)):
        row["prediction"], row["answer"] = str(row["prediction"]), str(row[answer_column])
        result = process_line(row, method=method)
        score = float(hit_calculate([result], name)[0])
        index = index_text(row["index"])
        lines.append(
            line(row, cluster=index, answer=row["answer"], score=score,
                 split=text_or_none(row.get("split")))
        )  # fmt: skip
    return Scored(lines, "mean")


def ocrbench_lines(dataset: Any, pred_file: str) -> Scored:
    """Each row through OCRBench.evaluate on a file of that row alone: its "Final Score" is the
    row's hit."""
    from vlmeval.smp import dump, load

    lines = []
    with tempfile.TemporaryDirectory(prefix="vlm-ocrbench-row-") as tmp:
        frame = load(pred_file)
        for k in range(len(frame)):
            one = frame.iloc[k : k + 1]
            path = os.path.join(tmp, f"row{k}.pkl")
            dump(one, path)
            score = float(type(dataset).evaluate(path)["Final Score"])
            row = rows_of(one)[0]
            lines.append(
                line(row, cluster=index_text(row["index"]), answer=str(row["answer"]),
                     score=score)
            )  # fmt: skip
    return Scored(lines, "mean")


# --- one combination -----------------------------------------------------------------------


def scored_questions(dataset: Any, pred_file: str, judge_model: str, primary_key: str) -> Scored:
    """The question lines of ``pred_file``'s evaluation by VLMEvalKit, by the family of its
    dataset class."""
    name = type(dataset).__name__
    if _evaluates_as(dataset, "ImageMCQDataset"):
        return mcq_lines(dataset, pred_file, judge_model, primary_key)
    if _evaluates_as(dataset, "ImageYORNDataset"):
        return yorn_lines(dataset, pred_file)
    if _evaluates_as(dataset, "ImageVQADataset"):
        return vqa_lines(dataset, pred_file)
    if _evaluates_as(dataset, "VizWiz"):
        return vqa_lines(dataset, pred_file, answer_column="answers")
    if _evaluates_as(dataset, "OCRBench"):
        return ocrbench_lines(dataset, pred_file)
    return Scored([], "mean", f"VLMEvalKit's {name} keeps no per-question scores read here")


def questions_path(pred_file: str) -> Path:
    pred = Path(pred_file)
    return pred.with_name(pred.stem + QUESTIONS_SUFFIX)


def write_lines(path: Path, lines: Iterable[Line]) -> None:
    """The lines as JSON lines, written atomically."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        for item in lines:
            fh.write(json.dumps(item, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def mismatch(statistic: str, value: float, primary_key: str, primary: float) -> str | None:
    if abs(value - primary) <= TOLERANCE:
        return None
    return (
        f"the questions' {statistic} is {value:.6f} but VLMEvalKit's {primary_key} gives "
        f"{primary:.6f} (0-100)"
    )


def question_fields(
    dataset: Any,
    pred_file: str,
    judge_model: str,
    primary_key: str | None,
    primary: float | None,
) -> dict[str, Any]:
    """The record's questions_file, primary_interval and questions_note for ``pred_file``:
    the lines are written whenever there are any; the interval only when they give back
    ``primary`` (0-100). Never raises: a score without questions is still a score."""
    from vlmfleet.uncertainty import primary_interval, statistic_value

    fields: dict[str, Any] = {"questions_file": None, "primary_interval": None}
    try:
        if primary_key is None or primary is None:
            fields["questions_note"] = "no primary score, so no questions to give it"
            return fields
        found = scored_questions(dataset, pred_file, judge_model, primary_key)
        if found.lines:
            path = questions_path(pred_file)
            write_lines(path, found.lines)
            fields["questions_file"] = path.name
        problem = found.problem or (None if found.lines else "no scored questions")
        if problem is None:
            value = statistic_value(found.lines, found.statistic)
            problem = mismatch(found.statistic, value, primary_key, primary)
        if problem is None:
            fields["primary_interval"] = primary_interval(found.lines, found.statistic)
    except Exception as err:  # the combination keeps its score without an interval
        log.exception("per-question scores of %s failed", pred_file)
        problem = f"{type(err).__name__}: {err}"
    fields["questions_note"] = (
        None if problem is None else f"no interval: {problem}".replace("\n", " ")[:500]
    )
    return fields
