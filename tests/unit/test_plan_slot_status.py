"""plugins/modules/eval_slot_status.py run as Ansible runs it (JSON args in, JSON out), with a
stand-in docker client that answers `docker inspect` from a table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

MODULE = Path(__file__).resolve().parents[2] / "plugins" / "modules" / "eval_slot_status.py"

STANDIN_DOCKER = """#!/bin/sh
# Stand-in for `docker inspect --type container NAME`: states come from $0.states.
name="$4"
line=$(grep "^$name " "$0.states")
[ -n "$line" ] || { echo "Error: No such container: $name" >&2; exit 1; }
set -- $line
echo "[{\\"State\\": {\\"Status\\": \\"$2\\", \\"ExitCode\\": $3, \\"Error\\": \\"\\"}}]"
"""


def write(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def run_module(tmp_path: Path, args: dict) -> dict:
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    out = subprocess.run(
        [sys.executable, str(MODULE), str(args_file)], capture_output=True, text=True, check=False
    )
    return json.loads(out.stdout)


@pytest.fixture
def host_dir(tmp_path: Path) -> Path:
    run = tmp_path / "outputs" / "r1" / "gpu-01"
    slot_units = {"units": [{"model": "m", "benchmarks": [{"name": "A"}, {"name": "B"}]}]}
    write(run / "gpu0" / "slot.json", slot_units)
    write(run / "gpu0" / "slot-progress.json", {"done": 1, "total": 2, "current": "m/B"})
    write(run / "gpu1" / "slot.json", slot_units)  # not started yet: total from slot.json
    write(run / "m" / "A" / "status.json", {"status": "ok", "model": "m", "benchmark": "A"})
    write(run / "m" / "C" / "status.json", {"status": "failed", "model": "m", "benchmark": "C"})
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
    (tmp_path / "docker.states").write_text("c0 exited 137\n")
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
    assert slots[1]["state"] == "missing"
    assert sorted((r["benchmark"], r["status"]) for r in out["records"]) == [
        ("A", "ok"),
        ("C", "failed"),
    ]


def test_a_run_directory_that_does_not_exist_yet_has_no_records(tmp_path: Path) -> None:
    out = run_module(tmp_path, {"run_dir": str(tmp_path / "nowhere"), "records": True})
    assert out["records"] == [] and out["finished"] is True
