"""vlmfleet.question_scores without VLMEvalKit: the record fields from a combination's scored
questions (the file, the on-the-spot check against the primary score, the interval or the note
saying why there is none) and the small readers. The extraction from VLMEvalKit's files runs in
the image (tests/e2e/test_known_answers.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from vlmfleet import question_scores as qs
from vlmfleet.contract import INTERVAL_KEYS, QUESTIONS_SUFFIX, interval_problems


def lines_of(scores: list[float], answers: list[str] | None = None) -> list[qs.Line]:
    return [
        {
            "index": str(i),
            "cluster": str(i),
            "split": None,
            "prediction": "p",
            "extracted": None,
            "answer": (answers or ["a"] * len(scores))[i],
            "score": s,
        }
        for i, s in enumerate(scores)
    ]


@pytest.fixture
def pred_file(tmp_path: Path) -> str:
    path = tmp_path / "model_TextVQA_VAL.xlsx"
    path.write_bytes(b"")
    return str(path)


def fields_for(monkeypatch, pred_file: str, found: qs.Scored, primary: float | None) -> dict:
    monkeypatch.setattr(qs, "scored_questions", lambda *args: found)
    return qs.question_fields(object(), pred_file, "exact_matching", "Overall", primary)


def test_lines_that_give_the_primary_score_get_an_interval(monkeypatch, pred_file):
    lines = lines_of([1.0, 0.3, 0.6, 0.0])
    fields = fields_for(monkeypatch, pred_file, qs.Scored(lines, "mean"), 47.5)
    assert fields["questions_note"] is None
    assert fields["questions_file"] == "model_TextVQA_VAL" + QUESTIONS_SUFFIX
    interval = fields["primary_interval"]
    assert set(interval) == set(INTERVAL_KEYS) and interval["statistic"] == "mean"
    assert interval_problems(interval, 47.5) == []
    written = (Path(pred_file).parent / fields["questions_file"]).read_text().splitlines()
    assert [json.loads(x) for x in written] == lines


def test_a_mismatch_keeps_the_lines_and_names_both_figures(monkeypatch, pred_file):
    fields = fields_for(monkeypatch, pred_file, qs.Scored(lines_of([1.0, 0.0]), "mean"), 60.0)
    assert fields["primary_interval"] is None
    assert fields["questions_file"] is not None
    assert "50.000000" in fields["questions_note"] and "60.000000" in fields["questions_note"]


def test_a_rounded_primary_score_still_matches(monkeypatch, pred_file):
    # scores.primary_score rounds to 6 decimals: 2/3 x 100 reads 66.666667.
    found = qs.Scored(lines_of([1.0, 1.0, 0.0]), "mean")
    assert fields_for(monkeypatch, pred_file, found, 66.666667)["questions_note"] is None


def test_f1_of_yes_is_checked_as_pope_rates_it(monkeypatch, pred_file):
    lines = lines_of([1.0, 0.0, 1.0, 0.0], answers=["Yes", "Yes", "No", "No"])
    for line, said in zip(lines, ["Yes", "No", "No", "Yes"], strict=True):
        line["extracted"] = said
    # TP 1, FN 1, FP 1: F1 = 2 / 4.
    fields = fields_for(monkeypatch, pred_file, qs.Scored(lines, "f1_yes"), 50.0)
    assert fields["questions_note"] is None
    assert fields["primary_interval"]["statistic"] == "f1_yes"


def test_what_is_missing_is_said_and_never_raised(monkeypatch, pred_file):
    missing = qs.Scored([], "mean", "VLMEvalKit wrote no x_auxmatch.xlsx")
    fields = fields_for(monkeypatch, pred_file, missing, 50.0)
    assert fields == {
        "questions_file": None,
        "primary_interval": None,
        "questions_note": "no interval: VLMEvalKit wrote no x_auxmatch.xlsx",
    }

    def broken(*args):
        raise KeyError("hit")

    monkeypatch.setattr(qs, "scored_questions", broken)
    fields = qs.question_fields(object(), pred_file, "exact_matching", "Overall", 50.0)
    assert fields["primary_interval"] is None and "KeyError" in fields["questions_note"]
    no_primary = qs.question_fields(object(), pred_file, "exact_matching", None, None)
    assert no_primary["primary_interval"] is None and no_primary["questions_note"]


@pytest.mark.parametrize(
    ("key", "split"),
    [
        ("split=validation|Overall", "validation"),
        ("split=dev|Overall", "dev"),
        ("split=none|Overall", None),
        ("Overall Acc", None),
        ("Overall", None),
    ],
)
def test_primary_split(key, split):
    assert qs.primary_split(key) == split


def test_small_readers():
    assert qs.index_text(42.0) == qs.index_text("42") == qs.index_text(42) == "42"
    assert qs.text_or_none(float("nan")) is None and qs.text_or_none("dev") == "dev"
    assert [qs.as_score(v) for v in (True, False, 1, 0, "True", "False")] == [1, 0, 1, 0, 1, 0]
    row = {"index": "VD_chart_x_3_1_0", "l2-category": "chart"}
    assert qs.hallusion_set(row) == "chart_3"
    assert qs.questions_path("/w/m_POPE.xlsx") == Path("/w/m_POPE" + QUESTIONS_SUFFIX)
