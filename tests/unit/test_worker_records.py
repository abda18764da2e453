"""Status records, resume selection and slot progress of the worker, without torch."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from vlmfleet import records


def ok_record(model: str = "llava_v1.5_7b", bench: str = "POPE", smoke: bool = False) -> dict:
    return records.make_record(
        run_id="r1",
        host="h",
        slot="gpu0",
        model=model,
        benchmark=bench,
        status="ok",
        started_at=records.now_iso(),
        seconds=1.23456,
        smoke=smoke,
        samples=10,
        scores={"Overall": 70.0, "acc": 65.0},
        primary_metric="Overall",
    )


def test_record_has_every_contract_key() -> None:
    record = ok_record()
    assert set(records.REQUIRED_KEYS) <= set(record)
    assert record["seconds"] == 1.235 and record["reason"] is None
    assert records.validate_record(record) == []


def test_failed_record_needs_a_one_line_reason() -> None:
    with pytest.raises(ValueError, match="needs a reason"):
        records.make_record(
            run_id="r",
            host="h",
            slot="s",
            model="m",
            benchmark="b",
            status="failed",
            started_at="t",
            seconds=0,
            smoke=False,
        )
    record = records.make_record(
        run_id="r",
        host="h",
        slot="s",
        model="m",
        benchmark="b",
        status="failed",
        started_at="t",
        seconds=0,
        smoke=False,
        reason="RuntimeError: boom\n  at line 3\n",
    )
    assert record["reason"] == "RuntimeError: boom at line 3"


def test_bad_status_and_primary_metric_rejected() -> None:
    with pytest.raises(ValueError, match="status 'done' is not valid; valid: ok, failed"):
        records.make_record(
            run_id="r",
            host="h",
            slot="s",
            model="m",
            benchmark="b",
            status="done",
            started_at="t",
            seconds=0,
            smoke=False,
        )
    with pytest.raises(ValueError, match="primary_metric 'F1' is not among the scores"):
        records.make_record(
            run_id="r",
            host="h",
            slot="s",
            model="m",
            benchmark="b",
            status="ok",
            started_at="t",
            seconds=0,
            smoke=False,
            scores={"Overall": 1.0},
            primary_metric="F1",
        )


def test_atomic_write_leaves_old_file_when_serialisation_fails(tmp_path: Path) -> None:
    target = tmp_path / "m" / "b" / "status.json"
    records.write_json_atomic(target, ok_record())
    before = target.read_text()
    with pytest.raises(ValueError):
        records.write_json_atomic(target, {"seconds": float("nan")})
    assert target.read_text() == before
    assert os.listdir(target.parent) == ["status.json"]  # no temporary file left behind
    assert json.loads(before)["status"] == "ok"


def test_resume_selects_only_missing_failed_torn_or_other_mode(tmp_path: Path) -> None:
    combos = [("m1", "A"), ("m1", "B"), ("m1", "C"), ("m2", "A"), ("m2", "D")]
    records.write_json_atomic(
        records.combo_dir(tmp_path, "m1", "A") / "status.json", ok_record("m1", "A")
    )
    failed = ok_record("m1", "B") | {"status": "failed", "reason": "OOM"}
    records.write_json_atomic(records.combo_dir(tmp_path, "m1", "B") / "status.json", failed)
    torn = records.combo_dir(tmp_path, "m1", "C") / "status.json"
    torn.parent.mkdir(parents=True)
    torn.write_text('{"status": "ok", "mod')
    # A smoke result must not count as a real result of the same run id.
    records.write_json_atomic(
        records.combo_dir(tmp_path, "m2", "A") / "status.json", ok_record("m2", "A", smoke=True)
    )
    pending, done = records.select_pending(tmp_path, combos, smoke=False)
    assert done == [("m1", "A")]
    assert pending == [("m1", "B"), ("m1", "C"), ("m2", "A"), ("m2", "D")]
    pending, done = records.select_pending(tmp_path, combos, smoke=True)
    assert done == [("m2", "A")]


def test_progress_file(tmp_path: Path) -> None:
    records.write_progress(tmp_path, done=3, total=40, current="m/POPE", ok=2, failed=1)
    data = json.loads((tmp_path / "slot-progress.json").read_text())
    assert (data["done"], data["total"], data["current"]) == (3, 40, "m/POPE")
    assert data["updated_at"].endswith("+00:00")
