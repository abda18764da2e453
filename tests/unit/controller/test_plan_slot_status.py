"""plugins/modules/eval_slot_status.py run as Ansible runs it (JSON args in, JSON out, the
project collection's module_utils importable as Ansiballz bundles them), with a stand-in docker
client that answers `docker inspect` from a table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from ansible_collections.vlmfleet.shared.plugins.module_utils import contract

ROOT = Path(__file__).resolve().parents[3]
MODULE = ROOT / "plugins" / "modules" / "eval_slot_status.py"

STANDIN_DOCKER = """#!/bin/sh
# Stand-in for `docker inspect --type container NAME`: states come from $0.states
# (name, status, exit code, and OOMKilled when not false).
name="$4"
line=$(grep "^$name " "$0.states")
[ -n "$line" ] || { echo "Error: No such container: $name" >&2; exit 1; }
set -- $line
echo "[{\\"State\\": {\\"Status\\": \\"$2\\", \\"ExitCode\\": $3, \\"OOMKilled\\": ${4:-false},"
echo "\\"Error\\": \\"\\"}}]"
"""


def write(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def run_module(tmp_path: Path, args: dict) -> dict:
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    out = subprocess.run(
        [sys.executable, str(MODULE), str(args_file)],
        capture_output=True,
        text=True,
        check=False,
        env={"PYTHONPATH": str(ROOT / "plugins" / "collections")},
    )
    return json.loads(out.stdout)


@pytest.fixture
def host_dir(tmp_path: Path) -> Path:
    run = contract.host_run_dir(tmp_path, "r1", "gpu-01")
    bench = {"kind": "mcq", "dataset_type": "MCQ", "score_scale": 1, "smoke_shape": "plain_mcq"}
    units = [
        {
            "model": "m",
            "family": "llava",
            "benchmarks": [bench | {"name": "A"}, bench | {"name": "B"}],
        }
    ]
    for slot in ("gpu0", "gpu1"):  # gpu1 not started yet: its total comes from slot.json
        slot_file = contract.slot_file(
            run_id="r1", host="gpu-01", slot=slot, device="cuda", smoke=False, limit=None,
            judge="exact_matching", max_new_tokens=None, batch_size=8, units=units,
        )  # fmt: skip
        write(run / slot / "slot.json", slot_file)
    contract.write_progress(run / "gpu0", done=1, total=2, current="m/B")
    for bench_name, status in (("A", "ok"), ("C", "failed")):
        record = contract.make_record(
            run_id="r1", host="gpu-01", slot="gpu0", model="m", benchmark=bench_name,
            status=status, started_at=contract.now_iso(), seconds=1.0, smoke=False,
            reason=None if status == "ok" else "RuntimeError: boom",
        )  # fmt: skip
        write(contract.combo_dir(run, "m", bench_name) / "status.json", record)
    docker = tmp_path / "docker"
    docker.write_text(STANDIN_DOCKER)
    docker.chmod(0o755)
    return run


def test_progress_while_a_worker_runs(tmp_path: Path, host_dir: Path) -> None:
    (tmp_path / "docker.states").write_text("c0 running 0\nc1 exited 0\n")
    out = run_module(
        tmp_path,
        {
            "run_dir": str(host_dir),
            "docker_cli": str(tmp_path / "docker"),
            "slots": [{"slot": "gpu0", "container": "c0"}, {"slot": "gpu1", "container": "c1"}],
        },
    )
    assert out["finished"] is False
    progress = out["eval_progress"]
    assert (progress["done"], progress["total"], progress["failed"]) == (1, 4, 1)
    assert progress["current"] == "gpu0: m/B"
    assert [s["state"] for s in progress["slots"]] == ["running", "exited"]
    assert "records" not in out


def test_finished_when_no_container_runs_and_records_for_resume(
    tmp_path: Path, host_dir: Path
) -> None:
    (tmp_path / "docker.states").write_text("c0 exited 137 true\n")
    out = run_module(
        tmp_path,
        {
            "run_dir": str(host_dir),
            "docker_cli": str(tmp_path / "docker"),
            "records": True,
            "slots": [{"slot": "gpu0", "container": "c0"}, {"slot": "gpu1", "container": "gone"}],
        },
    )
    assert out["finished"] is True
    slots = out["eval_progress"]["slots"]
    assert (slots[0]["state"], slots[0]["exit_code"]) == ("exited", 137)
    # The kernel's out-of-memory killer ended it (Docker's State.OOMKilled).
    assert slots[0]["oom_killed"] is True
    assert slots[1]["state"] == "missing"
    assert sorted((r["benchmark"], r["status"]) for r in out["records"]) == [
        ("A", "ok"),
        ("C", "failed"),
    ]


def test_a_run_directory_that_does_not_exist_yet_has_no_records(tmp_path: Path) -> None:
    out = run_module(tmp_path, {"run_dir": str(tmp_path / "nowhere"), "records": True})
    assert out["records"] == [] and out["finished"] is True


@pytest.mark.parametrize(
    "progress", ['{"done": 1, "tot', '{"done": "one", "total": [2], "current": 5}', "[]"]
)
def test_a_damaged_progress_file_never_stops_the_poll(
    tmp_path: Path, host_dir: Path, progress: str
) -> None:
    """slot-progress.json is for the display; a torn or edited one (the worker rewrites it after
    each record) counts as no progress, its slot's total from slot.json, instead of a module
    traceback that would end the wait while the workers run on."""
    (host_dir / "gpu0" / contract.PROGRESS_FILE).write_text(progress)
    (tmp_path / "docker.states").write_text("c0 running 0\n")
    out = run_module(
        tmp_path,
        {
            "run_dir": str(host_dir),
            "docker_cli": str(tmp_path / "docker"),
            "slots": [{"slot": "gpu0", "container": "c0"}],
        },
    )
    assert out.get("failed") is not True, out
    (slot,) = out["eval_progress"]["slots"]
    assert (slot["done"], slot["total"], slot["state"]) == (0, 2, "running")
    assert out["finished"] is False
