"""A slot's status records and progress (vlmfleet.slot_records.SlotRecords), without torch."""

from __future__ import annotations

import json
from pathlib import Path

from vlmfleet.contract import RECORD_KEYS, parse_slot, validate_record
from vlmfleet.slot_records import SlotRecords

BENCH = {"name": "POPE", "kind": "yorn", "dataset_type": "Y/N", "score_scale": 100}


def worker_for(tmp_path: Path, smoke: bool = False) -> SlotRecords:
    data = {
        "run_id": "r1",
        "host": "h",
        "slot": "gpu0",
        "device": "cuda",
        "smoke": smoke,
        "limit": None,
        "judge": "exact_matching",
        "max_new_tokens": None,
        "min_new_tokens": None,
        "batch_size": 1,
        "units": [
            {
                "model": "m",
                "family": "llava",
                "benchmarks": [
                    BENCH | {"smoke_shape": "yorn_pope"},
                    BENCH | {"name": "HallusionBench", "smoke_shape": "yorn_hallusion"},
                ],
            }
        ],
    }
    slot_dir = tmp_path / "outputs" / "r1" / "h" / "gpu0"
    slot_dir.mkdir(parents=True)
    return SlotRecords(parse_slot(data, slot_dir / "slot.json"))


def read(path: Path) -> dict:
    return json.loads(path.read_text())


def test_an_ok_record_follows_the_contract_and_counts_in_progress(tmp_path: Path) -> None:
    worker = worker_for(tmp_path, smoke=True)
    worker.record(
        "m",
        "POPE",
        "ok",
        "2026-01-01T00:00:00+00:00",
        1.23456,
        samples=10,
        scores={"Overall": 85.0},
        primary_metric="Overall",
        primary_score=85.0,
        primary_scale=100.0,
        extra={"predictions": 10},
    )
    worker.progress("m/HallusionBench")
    record = read(tmp_path / "outputs" / "r1" / "h" / "m" / "POPE" / "status.json")
    assert set(RECORD_KEYS) <= set(record) and validate_record(record) == []
    assert (record["seconds"], record["smoke"], record["predictions"]) == (1.235, True, 10)
    progress = read(tmp_path / "outputs" / "r1" / "h" / "gpu0" / "slot-progress.json")
    assert (progress["done"], progress["total"], progress["ok"], progress["failed"]) == (1, 2, 1, 0)
    assert progress["current"] == "m/HallusionBench" and progress["state"] == "running"


def test_figures_that_break_the_schema_fail_the_combination_with_the_reason(
    tmp_path: Path,
) -> None:
    worker = worker_for(tmp_path)
    worker.record(
        "m",
        "POPE",
        "ok",
        "t",
        0.5,
        scores={"Overall": 850.0},
        primary_metric="Overall",
        primary_score=850.0,
        primary_scale=100.0,
    )
    record = read(tmp_path / "outputs" / "r1" / "h" / "m" / "POPE" / "status.json")
    assert record["status"] == "failed"
    assert "primary_score 850.0 is not a number from 0 to 100" in record["reason"]
    assert (worker.ok, worker.failed) == (0, 1)


def test_a_unit_that_never_loaded_fails_every_benchmark_with_one_reason(tmp_path: Path) -> None:
    worker = worker_for(tmp_path)
    worker.fail_unit(worker.slot.units[0], "model load failed: OSError: no weights", "t", 0.0)
    run_dir = tmp_path / "outputs" / "r1" / "h" / "m"
    for bench in ("POPE", "HallusionBench"):
        record = read(run_dir / bench / "status.json")
        assert (record["status"], record["reason"]) == (
            "failed",
            "model load failed: OSError: no weights",
        )
    progress = read(tmp_path / "outputs" / "r1" / "h" / "gpu0" / "slot-progress.json")
    assert (progress["done"], progress["failed"]) == (2, 2)
