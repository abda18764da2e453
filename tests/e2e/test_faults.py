"""Faults a user meets between runs of one run id, end to end over test_eval's fleet (smoke
mode): a real Ctrl-C to ansible-playbook while workers run, then reruns of the same run id after
a record and a shard's prediction file were damaged on a host.

One run id serves every check: the interrupted run, the run that finishes it, and the run after
the damage; each rerun must finish only what is missing and lose nothing already produced.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO
from test_eval import HOSTS, INVENTORY, POLL, Fleet, docker, run_containers, stdout

pytestmark = pytest.mark.slow

RUN_ID = "e2e-faults"
MODEL = "llava_v1.5_7b"
# Every benchmark in two shards: shard records, their prediction files and merged records.
RUN = {
    "smoke": "true",
    "limit": "2",
    "shard_rows": "1",
    "models": MODEL,
    "benchmarks": "POPE,MMStar,OCRBench",
}


def interrupted_play(fleet: Fleet) -> tuple[int, str]:
    """eval.yml as a user starts it, stopped as Ctrl-C stops it (SIGINT to its process group)
    once a worker has written its first record."""
    extravars = {**RUN, "run_id": RUN_ID, "results_dir": str(fleet.results)}
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            str(REPO / "eval.yml"),
            "-i",
            str(INVENTORY),
            "-e",
            json.dumps(extravars | {"eval_run_poll_seconds": POLL}),
        ],
        cwd=REPO,
        env={**os.environ, **fleet.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline and proc.poll() is None:
        if any(True for h in HOSTS for _ in fleet.host_dir(h, RUN_ID).glob("**/status.json")):
            os.killpg(proc.pid, signal.SIGINT)
            break
        time.sleep(0.2)
    out, _ = proc.communicate(timeout=300)
    return proc.returncode, out


def records(root: Path) -> dict[str, dict[str, Any]]:
    """Every status record under a run directory (a host's or the controller's), by path."""
    return {
        str(p.relative_to(root)): json.loads(p.read_text())
        for p in sorted(root.glob("*/**/status.json"))
    }


def test_ctrl_c_a_host_restart_and_damaged_copies_then_reruns_of_the_same_run_id(
    fleet: Fleet,
) -> None:
    rc, out = interrupted_play(fleet)
    assert rc != 0, out[-3000:]
    # Ansible's own words say only that the user interrupted it; the note says the rest.
    words = " ".join(out.split())
    assert f"eval.yml stopped while the workers of run {RUN_ID} were running" in words, out[-3000:]
    assert f"rerun with -e run_id={RUN_ID}" in words
    workers = run_containers(RUN_ID)
    assert workers, "the workers stopped with the play: they must run on"
    # node-b goes down as a host shutting down takes its containers (SIGTERM, then SIGKILL);
    # node-a's worker runs to its end.
    for container in workers:
        name = docker("inspect", "--format", "{{.Name}}", container)
        if "node-b" in name:
            docker("stop", "--time", "2", container)
        else:
            docker("wait", container)
    finished = {
        path: r["finished_at"] for h in HOSTS for path, r in records(outputs(fleet, h)).items()
    }
    assert finished

    second = fleet.eval(run_id=RUN_ID)
    assert second.rc == 0, stdout(second)[-5000:]
    assert fleet.summary(RUN_ID)["totals"] == {"ok": 3, "failed": 0, "missing": 0, "total": 3}
    plan = json.loads((fleet.results / RUN_ID / "plan.json").read_text())
    replanned = {
        (b["name"], f"{b['shard']['index'] + 1}-of-{b['shard']['count']}")
        for u in plan["units"]
        for b in u["benchmarks"]
    }
    collected = records(fleet.results / RUN_ID)
    # What the workers finished before the interrupt and the stop was neither planned again
    # (on any host) nor rewritten; only what they had not finished ran.
    assert not replanned & {(p.split("/")[2], p.split("/")[4]) for p in finished}
    assert {p: collected[p]["finished_at"] for p in finished} == finished

    # Damage on the hosts after the collect: a merged record torn, a shard's predictions
    # truncated (as a full disk or a careless edit leaves them).
    pope = next(c for c in fleet.summary(RUN_ID)["combinations"] if c["benchmark"] == "POPE")
    record = Path(pope["host"]) / MODEL / "POPE" / "status.json"
    kept = (fleet.results / RUN_ID / record).read_bytes()
    (outputs(fleet, pope["host"]) / record).write_text('{"run_id": "e2e-fa')
    host, shard = next(
        (h, p)
        for h in HOSTS
        for p in sorted(outputs(fleet, h).glob(f"{h}/{MODEL}/MMStar/shards/*"))
    )
    name = json.loads((shard / "status.json").read_text())["prediction_file"]
    whole = (shard / name).read_bytes()
    (shard / name).write_bytes(whole[:64])

    third = fleet.eval(run_id=RUN_ID)
    assert third.rc == 0, stdout(third)[-5000:]
    # Nothing was lost: the controller's copies stand, and the hosts' were put back from them.
    assert fleet.summary(RUN_ID)["totals"]["ok"] == 3
    assert (fleet.results / RUN_ID / record).read_bytes() == kept
    assert (outputs(fleet, pope["host"]) / record).read_bytes() == kept
    on_controller = fleet.results / RUN_ID / shard.relative_to(outputs(fleet, host))
    assert (on_controller / name).read_bytes() == whole
    assert (shard / name).read_bytes() == whole
    assert json.loads((fleet.results / RUN_ID / "plan.json").read_text())["units"] == []

    # A torn run.json (the inputs a resume must match) stops the rerun in the validation step,
    # with one message, and nothing written.
    run_json = fleet.results / RUN_ID / "run.json"
    stored = run_json.read_bytes()
    run_json.write_bytes(stored[:40])
    before = {p.name: p.read_bytes() for p in (fleet.results / RUN_ID).glob("*.json")}
    refused = fleet.eval(run_id=RUN_ID)
    assert refused.rc != 0
    words = " ".join(stdout(refused).split())
    assert f"{run_json} cannot be read: not readable JSON" in words, words[-3000:]
    assert "put back a copy of run.json, or give a new run_id" in words
    assert {p.name: p.read_bytes() for p in (fleet.results / RUN_ID).glob("*.json")} == before
    run_json.write_bytes(stored)


def outputs(fleet: Fleet, host: str) -> Path:
    """outputs/<run_id>/ on ``host``: its folder <host>/ and the shards brought to merge."""
    return fleet.host_dir(host, RUN_ID).parent
