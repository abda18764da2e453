"""The worker's per-unit pipeline: benchmarks prepared in order, answered as one queue, evaluated.

The helpers are checked everywhere; the whole-worker check needs the image's stack (torch, LLaVA,
VLMEvalKit: ``tests/e2e/test_stack_in_image.py`` runs it inside the image) and runs a slot of
tiny random LLaVA-1.5 checkpoints on the CPU.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import logging
import os
import queue
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from vlmfleet import faults, log_routing, pipeline, worker
from vlmfleet.contract import Benchmark, load_slot, validate_record
from vlmfleet.families import Answered, InferenceError, Queued
from vlmfleet.families.llava_batched import ahead

STACK = all(importlib.util.find_spec(m) for m in ("torch", "llava", "vlmeval"))
needs_stack = pytest.mark.skipif(not STACK, reason="needs torch, llava and vlmeval (the image)")


def records_of(model_dir: Path, benchmarks: list[str]) -> dict[str, dict]:
    """The status records the worker wrote for one model, by benchmark."""
    return {b: json.loads((model_dir / b / "status.json").read_text()) for b in benchmarks}


def test_ahead_keeps_order_and_works_one_item_ahead() -> None:
    started: list[int] = []
    seen: list[tuple[int, list[int]]] = []

    def work(x: int) -> int:
        started.append(x)
        return x * 10

    for item, result in ahead(range(4), work):
        # The next item's work starts on its own thread; wait for it (not for a fixed time).
        deadline = time.monotonic() + 10
        while len(started) < min(item + 2, 4) and time.monotonic() < deadline:
            time.sleep(0.01)
        seen.append((item, list(started)))
        assert result == item * 10
    # While item k is handled, item k+1 has already been worked on; never more.
    assert seen == [(0, [0, 1]), (1, [0, 1, 2]), (2, [0, 1, 2, 3]), (3, [0, 1, 2, 3])]


def test_ahead_raises_a_failed_item_in_its_place() -> None:
    def work(x: int) -> int:
        if x == 2:
            raise ValueError("item 2 is bad")
        return x

    got = []
    with pytest.raises(ValueError, match="item 2 is bad"):
        for item, _ in ahead(range(5), work):
            got.append(item)
    assert got == [0, 1]


def test_a_combination_log_takes_only_the_lines_of_threads_working_on_it(tmp_path: Path) -> None:
    combos = {
        name: pipeline.Combination(
            "m",
            Benchmark(name, "mcq", "MCQ", 1.0, "plain_mcq"),
            tmp_path,
            "t",
            0.0,
            logging.NullHandler(),
        )
        for name in ("A", "B")
    }
    handlers = {}
    for name in combos:
        handler = logging.FileHandler(tmp_path / f"{name}.log")
        handler.addFilter(log_routing.ThisCombination(f"m/{name}"))
        logging.getLogger().addHandler(handler)
        handlers[name] = handler
    log = logging.getLogger("vlmfleet.test")
    log.setLevel(logging.INFO)

    def phase(name: str, label: str) -> None:
        with pipeline.phase(combos[name], label):
            for i in range(20):
                log.warning("%s line %d", name, i)

    try:
        threads = [
            threading.Thread(target=phase, args=("A", "infer")),
            threading.Thread(target=phase, args=("B", "prepare")),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        log.warning("outside any combination")
    finally:
        for handler in handlers.values():
            logging.getLogger().removeHandler(handler)
            handler.close()
    for name in ("A", "B"):
        lines = (tmp_path / f"{name}.log").read_text().splitlines()
        assert lines == [f"{name} line {i}" for i in range(20)]
    assert set(combos["A"].phases) == {"infer"} and set(combos["B"].phases) == {"prepare"}


@needs_stack
def test_unit_pipeline_records_each_combination_and_keeps_going_past_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The worker's INFO lines, as its own logging.basicConfig gives them outside pytest.
    caplog.set_level(logging.INFO)
    monkeypatch.setenv("VLMFLEET_SMOKE_ROOT", str(tmp_path / "ckpt"))
    monkeypatch.setenv("LMUData", str(tmp_path / "LMUData"))
    slot_dir = tmp_path / "outputs" / "r1" / "h1" / "cpu0"
    slot_dir.mkdir(parents=True)
    mcq = {"kind": "mcq", "dataset_type": "MCQ", "score_scale": 1, "smoke_shape": "plain_mcq"}
    benches = [
        mcq | {"name": "MMBench_DEV_EN", "smoke_shape": "mmbench"},
        # A wrong type: this one fails while being prepared, beside the first one's inference.
        mcq | {"name": "POPE"},
        {
            "name": "TextVQA_VAL",
            "kind": "vqa",
            "dataset_type": "VQA",
            "score_scale": 100,
            "smoke_shape": "vqa_textvqa",
        },
        mcq | {"name": "AI2D_TEST"},
    ]
    slot_file = slot_dir / "slot.json"
    slot_file.write_text(
        json.dumps(
            {
                "run_id": "r1",
                "host": "h1",
                "slot": "cpu0",
                "device": "cpu",
                "smoke": True,
                "limit": 4,
                "judge": "exact_matching",
                "max_new_tokens": 4,
                "min_new_tokens": None,
                "batch_size": 3,
                "units": [{"model": "llava_v1.5_7b", "family": "llava", "benchmarks": benches}],
            }
        )
    )
    monkeypatch.setattr(worker, "SECRET_ENV", tmp_path / "absent.env")
    assert worker.main(["--slot-file", str(slot_file)]) == 1

    run_dir = tmp_path / "outputs" / "r1" / "h1"
    status = records_of(run_dir / "llava_v1.5_7b", [b["name"] for b in benches])
    assert {n: r["status"] for n, r in status.items()} == {
        "MMBench_DEV_EN": "ok",
        "POPE": "failed",
        "TextVQA_VAL": "ok",
        "AI2D_TEST": "ok",
    }
    assert status["POPE"]["reason"] == (
        "DatasetError: benchmark POPE is of VLMEvalKit type 'Y/N', but the slot file says "
        "'MCQ' (kind 'mcq')"
    )
    for name, record in status.items():
        expected = (
            {"prepare"} if name == "POPE" else {"prepare", "infer", "predictions", "evaluate"}
        )
        assert set(record["phase_seconds"]) == expected, name
        text = (run_dir / "llava_v1.5_7b" / name / "worker.log").read_text()
        named = set(re.findall(r"(?:running|ok|failed) (llava_v1\.5_7b/[\w.-]+)", text))
        assert named <= {f"llava_v1.5_7b/{name}"}, (name, named)
        if record["status"] == "ok":
            assert record["predictions"] >= 4 and record["samples"] == 4
            # The slot file's score_scale, but AI2D's derived "Overall Acc" is in percent.
            scale = {"MMBench_DEV_EN": 1.0, "TextVQA_VAL": 100.0, "AI2D_TEST": 100.0}[name]
            assert record["primary_scale"] == scale, (name, record["primary_metric"])
            assert f"ok llava_v1.5_7b/{name} in" in text
    progress = json.loads((slot_dir / "slot-progress.json").read_text())
    assert (progress["done"], progress["ok"], progress["failed"]) == (4, 3, 1)
    assert progress["state"] == "finished" and "skipped" not in progress


class FakeFamily:
    """A family whose engine answers every benchmark of its queue, runs out of GPU memory down
    to batch 8 for MMStar and never fits for AI2D_TEST; the prediction file of POPE meets a
    full disk. The rest of the worker (records, progress, reasons) is the real one, without the
    image's stack."""

    def __init__(self) -> None:
        self.queued: list[str] = []

    def load(self, unit: object, slot: object) -> object:
        return object()

    def batched(self, model: object, slot: object) -> bool:
        return True

    def prepare_samples(self, model: object, dataset: str) -> str:
        return dataset

    def generate_queue(
        self, model: object, slot: object, incoming: queue.Queue[Queued | None]
    ) -> Iterator[Answered]:
        while (item := incoming.get()) is not None:
            self.queued.append(item.key)
            oom = {"batch_size": 32, "error": "OutOfMemoryError: CUDA out of memory. (stand-in)"}
            if item.prepared == "AI2D_TEST":
                error = InferenceError(
                    "out of GPU memory even at batch 1 (tried 1)", {"batch_retries": [oom]}
                )
                yield Answered(item.key, {}, {"batch_retries": [oom]}, error)
                continue
            retries = [oom, {**oom, "batch_size": 16}] if item.prepared == "MMStar" else []
            record = {
                "batch_sizes": {"8": 2} if retries else {"32": 2},
                "batch_size_used": 8 if retries else 32,
                "batch_retries": retries,
            }
            yield Answered(item.key, {0: "A", 1: "B"}, record)


def test_disk_full_and_out_of_memory_are_named_in_the_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fam = FakeFamily()
    capped: list[int] = []

    def write_predictions(work_dir: str, model_name: str, dataset: str, answers: dict) -> str:
        pred = Path(work_dir) / f"{model_name}_{dataset}.xlsx"
        with pred.open("wb") as fh:
            fh.write(b"PK")
            if dataset == "POPE":
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(pred))
        return str(pred)

    for name, fake in {
        "family": lambda name: fam,
        "import_stack": lambda: None,
        "import_torch": lambda: None,
        "cap_gpu_share": lambda shared_by: capped.append(shared_by) or [0.49],
        "seed_everything": lambda: None,
        "empty_cuda_cache": lambda: None,
        "prepare_dataset": lambda bench, slot: bench.name,
        "questions_of": lambda dataset: 2,
        "write_predictions": write_predictions,
        "evaluate": lambda dataset, pred, bench, judge, questions: {
            "samples": questions,
            "scores": {"Overall": 0.5},
            "primary_metric": "Overall",
            "primary_score": 50.0,
            "primary_scale": 1.0,
            "extra": {"predictions": 2, "prediction_file": Path(pred).name},
        },
    }.items():
        monkeypatch.setattr(pipeline, name, fake)
    slot_dir = tmp_path / "outputs" / "r1" / "gpu-07" / "gpu0"
    slot_dir.mkdir(parents=True)
    mcq = {"kind": "mcq", "dataset_type": "MCQ", "score_scale": 1, "smoke_shape": "plain_mcq"}
    names = ["MMBench_DEV_EN", "MMStar", "POPE", "SEEDBench_IMG", "AI2D_TEST"]
    (slot_dir / "slot.json").write_text(
        json.dumps(
            {
                "run_id": "r1",
                "host": "gpu-07",
                "slot": "gpu0",
                "device": "cuda",
                "smoke": False,
                "limit": 2,
                "judge": "exact_matching",
                "max_new_tokens": None,
                "min_new_tokens": None,
                "batch_size": "auto",
                "shared_by": 2,
                "units": [
                    {
                        "model": "m7b",
                        "family": "fake",
                        "benchmarks": [mcq | {"name": n} for n in names],
                    }
                ],
            }
        )
    )
    assert pipeline.Worker(load_slot(slot_dir / "slot.json")).run() == 1
    # The slot shares its GPU with another: its allocator was capped at its share.
    assert capped == [2]

    # Every benchmark went through the one queue, in order.
    assert fam.queued == [f"m7b/{n}" for n in names]
    records = records_of(tmp_path / "outputs/r1/gpu-07/m7b", names)
    assert {n: r["status"] for n, r in records.items()} == {
        "MMBench_DEV_EN": "ok",
        "MMStar": "ok",
        "POPE": "failed",
        "SEEDBench_IMG": "ok",
        "AI2D_TEST": "failed",
    }
    pred = tmp_path / "outputs/r1/gpu-07/m7b/POPE/m7b_POPE.xlsx"
    free = shutil.disk_usage(tmp_path).free
    reason = records["POPE"]["reason"]
    got = re.fullmatch(rf"disk full: {re.escape(str(pred))} on gpu-07, (\d+) bytes free", reason)
    assert got, reason
    # The free space of that filesystem when the record was written (others write here too).
    assert abs(int(got.group(1)) - free) < 256 * 2**20
    assert [r["batch_size"] for r in records["MMStar"]["batch_retries"]] == [32, 16]
    assert records["MMStar"]["batch_size_used"] == 8
    assert records["MMStar"]["batch_sizes"] == {"8": 2}
    assert records["MMBench_DEV_EN"]["batch_retries"] == []
    assert records["MMBench_DEV_EN"]["batch_size_used"] == 32
    assert records["AI2D_TEST"]["reason"].startswith("InferenceError: out of GPU memory even at")
    assert records["AI2D_TEST"]["batch_retries"][0]["batch_size"] == 32
    assert set(records["SEEDBench_IMG"]["phase_seconds"]) == {
        "prepare",
        "infer",
        "predictions",
        "evaluate",
    }
    for record in records.values():
        assert validate_record(record) == []
    progress = json.loads((slot_dir / "slot-progress.json").read_text())
    assert (progress["done"], progress["ok"], progress["failed"]) == (5, 3, 2)


def test_an_error_on_a_filesystem_with_nothing_free_is_named_disk_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Seen in the image on a full tmpfs: xlsxwriter swallows ENOSPC and leaves an empty
    # prediction file, and the evaluation then fails reading it.
    err = ValueError("Excel file format cannot be determined, you must specify an engine manually.")
    assert faults.describe(err, "gpu-07", tmp_path).startswith("ValueError: Excel file format")
    monkeypatch.setattr(faults, "free_bytes", lambda path: 0)
    assert faults.describe(err, "gpu-07", tmp_path) == (
        f"disk full: {tmp_path} on gpu-07, 0 bytes free (ValueError: Excel file format cannot be "
        "determined, you must specify an engine manually.)"
    )


def test_an_earlier_attempts_files_are_cleared_before_a_combination_runs(tmp_path: Path) -> None:
    # A kill mid-write leaves a torn prediction file, which VLMEvalKit's inference would load.
    cdir = tmp_path / "llava_v1.5_7b" / "POPE"
    (cdir / "sub").mkdir(parents=True)
    (cdir / "llava_v1.5_7b_POPE.xlsx").write_bytes(b"PK\x03\x04torn")
    (cdir / "sub" / "partial.pkl").write_bytes(b"x")
    (cdir / "status.json").write_text("{}")
    pipeline.start_afresh(cdir)
    assert cdir.is_dir() and list(cdir.iterdir()) == []
    pipeline.start_afresh(tmp_path / "absent")  # a first attempt has no folder yet


def test_the_room_holds_many_small_benchmarks_and_few_big_ones() -> None:
    room = pipeline.Room(benchmarks=2, rows=100)
    taken: list[int] = []

    def prepare(sizes: list[int]) -> None:
        for rows in sizes:
            room.wait()
            room.take(rows)
            taken.append(rows)

    # Small ones: ten of 10 rows are all held at once (under 100 rows together).
    preparer = threading.Thread(target=prepare, args=([10] * 10,))
    preparer.start()
    preparer.join(timeout=5)
    assert not preparer.is_alive() and len(taken) == 10
    for _ in range(10):
        room.give(10)
    # Big ones: two at a time; the third waits until one is given back.
    taken.clear()
    preparer = threading.Thread(target=prepare, args=([500, 500, 500],))
    preparer.start()
    time.sleep(0.2)
    assert taken == [500, 500]
    room.give(500)
    preparer.join(timeout=5)
    assert taken == [500, 500, 500]
