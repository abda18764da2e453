"""playbooks/report.yml and the eval_progress callback, run by real ansible-playbook."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import ansible_runner
import pytest
from ansible_collections.vlmfleet.shared.plugins.plugin_utils.report import (
    build_reports,
    load_references,
)

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "results"
CURRENT, PREVIOUS = "20261127T020000Z", "20261126T180000Z"
FILES = ("scores.csv", "report.md", "report.html", "manifest.json")


@pytest.fixture
def results(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    for run in (CURRENT, PREVIOUS):
        shutil.copytree(FIXTURES / run, root / run)
    (root / "latest").symlink_to(CURRENT)
    return root


@pytest.fixture(autouse=True)
def _ansible_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # ansible-runner starts the ansible-playbook that sits beside this interpreter (.venv/bin).
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("ANSIBLE_CONFIG", str(REPO / "ansible.cfg"))


def run_report(tmp_path: Path, check: bool = False, **extravars: str):
    # A fresh private data dir each time: ansible-runner keeps the last cmdline (--check) there.
    return ansible_runner.run(
        private_data_dir=tempfile.mkdtemp(dir=tmp_path),
        playbook=str(REPO / "playbooks" / "report.yml"),
        extravars=extravars,
        cmdline="--check" if check else None,
        envvars={"ANSIBLE_CONFIG": str(REPO / "ansible.cfg")},
        quiet=True,
    )


def changed(runner) -> int:
    return sum(runner.stats["changed"].values()) if runner.stats else -1


def test_report_playbook_writes_the_reports_idempotently(results: Path, tmp_path: Path) -> None:
    run_dir = results / CURRENT
    dry = run_report(tmp_path, check=True, results_dir=str(results))
    assert dry.rc == 0, dry.stdout.read()
    assert not any((run_dir / f).exists() for f in FILES), "check mode wrote a report"

    first = run_report(tmp_path, results_dir=str(results), compare_to=PREVIOUS)
    assert first.rc == 0, first.stdout.read()
    assert changed(first) == 1  # the write task, once for all four files
    # Same bytes as the regenerate entry point (the playbook adds nothing of its own here
    # because run.json already names the commit and the Ansible version).
    expected = build_reports(run_dir, load_references(), compare_to=PREVIOUS)
    for name in FILES:
        assert (run_dir / name).read_text() == expected[name], name
    assert "## Comparison with run 20261126T180000Z" in (run_dir / "report.md").read_text()

    again = run_report(tmp_path, results_dir=str(results), compare_to=PREVIOUS)
    assert again.rc == 0 and changed(again) == 0


def test_report_playbook_fills_provenance_the_run_lacks(results: Path, tmp_path: Path) -> None:
    run_dir = results / PREVIOUS
    (run_dir / "run.json").unlink()
    runner = run_report(tmp_path, results_dir=str(results), run_id=PREVIOUS)
    assert runner.rc == 0, runner.stdout.read()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()  # fmt: skip
    assert manifest["project_commit"] == head
    assert manifest["ansible_version"].startswith("2.")


@pytest.mark.parametrize(
    ("extravars", "message"),
    [
        ({"run_id": "nope"}, f"runs there: {PREVIOUS}, {CURRENT}"),
        ({"run_id": "../etc"}, "run_id=../etc"),
        ({"compare_to": "nope"}, "compare_to=nope: no run with a summary.json"),
        # Gone: a fixed threshold gave way to the paired tests; a value given is refused.
        ({"compare_to": PREVIOUS, "compare_threshold": "5"}, "compare_threshold is gone"),
    ],
)
def test_bad_inputs_fail_with_a_message_and_write_nothing(
    results: Path, tmp_path: Path, extravars: dict[str, str], message: str
) -> None:
    runner = run_report(tmp_path, results_dir=str(results), **extravars)
    output = runner.stdout.read()
    assert runner.rc != 0
    assert message in " ".join(output.split()), output
    assert not any((results / CURRENT / f).exists() for f in FILES)


POLL_PLAYBOOK = """
- name: Stand-in for eval.yml's polling task
  hosts: localhost
  gather_facts: false
  tasks:
    - name: A task without progress
      ansible.builtin.debug:
        msg: nothing to see
    - name: Poll the workers
      ansible.builtin.debug:
        var: eval_progress
      vars:
        eval_progress: "{{ lookup('ansible.builtin.pipe', playbook_dir ~ '/poll.sh') | from_json }}"
      register: poll
      until: poll.eval_progress.done >= poll.eval_progress.total
      retries: 6
      delay: 1
"""
# Each call reports one more combination done: a stand-in for the workers' progress files.
POLL_SCRIPT = """#!/bin/sh
n=$(cat "$(dirname "$0")/n" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$(dirname "$0")/n"
printf '{"done": %d, "total": 4, "current": "llava_v1.5_7b/B%d", "slots": [{"slot": "gpu0",
 "done": %d, "total": 4, "current": "llava_v1.5_7b/B%d", "state": "running"}]}' $n $n $n $n
"""


def progress_lines(playbook: Path) -> list[str]:
    """The eval_progress callback's lines when real ansible-playbook runs ``playbook``."""
    env = dict(os.environ, ANSIBLE_CALLBACKS_ENABLED="eval_progress", ANSIBLE_NOCOLOR="1")
    out = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), str(playbook)],
        capture_output=True, text=True, env=env, timeout=120, check=True,
    ).stdout  # fmt: skip
    return [ln for ln in out.splitlines() if ln.startswith("eval ")]


def test_progress_callback_prints_one_line_per_poll(tmp_path: Path) -> None:
    (tmp_path / "pb.yml").write_text(POLL_PLAYBOOK)
    (tmp_path / "poll.sh").write_text(POLL_SCRIPT)
    (tmp_path / "poll.sh").chmod(0o755)
    lines = progress_lines(tmp_path / "pb.yml")
    # Three polls that retry and the final one; nothing for the task without progress.
    assert [ln.split(" | ")[0] for ln in lines] == [
        "eval localhost: 1/4 (25%)",
        "eval localhost: 2/4 (50%)",
        "eval localhost: 3/4 (75%)",
        "eval localhost: 4/4 (100%)",
    ]
    assert lines[0].endswith("ETA -- | gpu0 1/4 llava_v1.5_7b/B1")
    assert " | ETA " in lines[1] and "finished" in lines[3]


MODULE_PLAYBOOK = """
- name: eval.yml's poll, on slot directories without containers
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Wait for the workers
      eval_slot_status:
        run_dir: "{{ playbook_dir }}/run"
        slots: [{slot: gpu0}, {slot: gpu1}]
      register: eval_poll
"""


def test_progress_callback_reads_the_real_poll_module(tmp_path: Path) -> None:
    for slot, progress in (
        ("gpu0", {"done": 3, "total": 10, "current": "llava_v1.5_7b/POPE"}),
        ("gpu1", {"done": 10, "total": 10, "current": None}),
    ):
        (tmp_path / "run" / slot).mkdir(parents=True)
        (tmp_path / "run" / slot / "slot-progress.json").write_text(json.dumps(progress))
    (tmp_path / "pb.yml").write_text(MODULE_PLAYBOOK)
    lines = progress_lines(tmp_path / "pb.yml")
    # No container to ask about: gpu0 shows docker's "missing" state instead of its benchmark.
    assert lines == [
        "eval localhost: 13/20 (65%) | elapsed 0s | ETA -- | gpu0 3/10 missing, gpu1 done 10/10"
    ]
