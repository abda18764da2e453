"""Why a combination has no status record, as the summary words it: a killed worker, the
combination it was running, a record a full disk kept from being written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ansible_collections.vlmfleet.shared.plugins.module_utils import contract
from ansible_collections.vlmfleet.shared.plugins.plugin_utils.summary import (
    eval_summary,
    exit_cause,
)

RUN = "r1"
BENCHMARKS = ["POPE", "MMStar", "OCRBench"]


def plan() -> dict:
    return {
        "run_id": RUN,
        "smoke": True,
        "limit": 1,
        "models": ["m7b"],
        "benchmarks": BENCHMARKS,
        "units": [
            {
                "host": "node-a",
                "slot": "cpu0",
                "model": "m7b",
                "benchmarks": [{"name": b} for b in BENCHMARKS],
            }
        ],
    }


def ok_record(bench: str) -> dict:
    return contract.make_record(
        run_id=RUN,
        host="node-a",
        slot="cpu0",
        model="m7b",
        benchmark=bench,
        status="ok",
        started_at="2026-12-01T00:00:00+00:00",
        seconds=1.0,
        smoke=True,
    )


def results(tmp_path: Path, state: dict, progress: dict | None, console: list[str]) -> Path:
    """results/<run_id>/ as collected: POPE's record, the slot's state, progress and console."""
    run = tmp_path / RUN
    host = run / "node-a"
    (host / "cpu0").mkdir(parents=True)
    contract.write_json_atomic(host / "m7b" / "POPE" / contract.STATUS_FILE, ok_record("POPE"))
    (host / "host.json").write_text(json.dumps({"slot_states": [{"slot": "cpu0", **state}]}))
    if progress is not None:
        (host / "cpu0" / contract.PROGRESS_FILE).write_text(json.dumps(progress))
    (host / "cpu0" / contract.CONTAINER_LOG).write_text("\n".join(console) + "\n")
    return run


def reasons(run: Path) -> dict[str, str]:
    summary = eval_summary(plan(), str(run))
    return {c["benchmark"]: c["reason"] for c in summary["combinations"] if c["status"] != "ok"}


@pytest.mark.parametrize(
    ("code", "oom", "cause"),
    [
        (137, False, "killed by SIGKILL (exit 137)"),
        (137, True, "killed by the kernel's out-of-memory killer (exit 137)"),
        (143, False, "stopped by SIGTERM (exit 143: docker stop, or its host shutting down)"),
        # A host that rebooted mid-run: Docker marks what was running 255, not a signal 127.
        (
            255,
            False,
            "ended by its host or Docker daemon restarting (exit 255: Docker found it running "
            "after the restart)",
        ),
        (130, False, "killed by SIGINT (exit 130)"),
        (1, False, None),
        (2, False, None),
        (0, False, None),
        (None, False, None),
    ],
)
def test_an_exit_status_names_the_signal_that_ended_the_worker(code, oom, cause) -> None:
    assert exit_cause(code, oom) == cause


def test_a_killed_worker_is_named_killed_and_its_combination_in_progress_as_running(
    tmp_path: Path,
) -> None:
    run = results(
        tmp_path,
        {"state": "exited", "exit_code": 137, "oom_killed": False},
        {"done": 1, "total": 3, "current": "m7b/MMStar", "state": "running"},
        ["2026-12-01 00:00:01,000 INFO vlmfleet.pipeline: ok m7b/POPE in 1.0 s: Overall=1.0"],
    )
    assert reasons(run) == {
        "MMStar": "no status record: was running when the worker on node-a cpu0 was killed by "
        "SIGKILL (exit 137)",
        "OCRBench": "no status record: the worker on node-a cpu0 was killed by SIGKILL (exit 137) "
        "before it reached it",
    }


def test_the_out_of_memory_killer_is_named(tmp_path: Path) -> None:
    run = results(
        tmp_path,
        {"state": "exited", "exit_code": 137, "oom_killed": True},
        {"done": 1, "total": 3, "current": "m7b/MMStar", "state": "running"},
        [],
    )
    assert reasons(run)["MMStar"] == (
        "no status record: was running when the worker on node-a cpu0 was killed by the kernel's "
        "out-of-memory killer (exit 137)"
    )


def test_a_record_a_full_disk_kept_from_being_written_is_missing_with_the_workers_reason(
    tmp_path: Path,
) -> None:
    full = "status record not written: disk full: /srv/vlm-eval/outputs/r1/node-a/m7b/{} on node-a"
    run = results(
        tmp_path,
        {"state": "exited", "exit_code": 1, "oom_killed": False},
        {"done": 3, "total": 3, "current": None, "state": "finished"},
        [
            "2026-12-01 00:00:00,000 ERROR vlmfleet.pipeline: disk too small for the worker's "
            "1048576 byte reserve: /srv/vlm-eval/outputs/r1/node-a/cpu0 has 4096 bytes free",
            "2026-12-01 00:00:02,000 ERROR vlmfleet.pipeline: "
            + contract.failed_line("m7b", "MMStar", full.format("MMStar") + ", 0 bytes free"),
            "2026-12-01 00:00:03,000 ERROR vlmfleet.pipeline: "
            + contract.failed_line("m7b", "OCRBench", full.format("OCRBench") + ", 0 bytes free"),
            "2026-12-01 00:00:03,000 INFO vlmfleet.pipeline: finished: 1 ok, 2 failed of 3",
        ],
    )
    assert reasons(run) == {
        "MMStar": full.format("MMStar") + ", 0 bytes free",
        "OCRBench": full.format("OCRBench") + ", 0 bytes free",
    }


def test_a_worker_that_exited_on_its_own_keeps_its_exit_and_last_line(tmp_path: Path) -> None:
    run = results(
        tmp_path,
        {"state": "exited", "exit_code": 2, "oom_killed": False},
        None,
        ["2026-12-01 00:00:00,000 ERROR vlmfleet.worker: bad slot file: x"],
    )
    assert reasons(run)["MMStar"] == (
        "no status record: the worker on node-a cpu0 did not reach it (container exited 2: "
        "2026-12-01 00:00:00,000 ERROR vlmfleet.worker: bad slot file: x)"
    )
