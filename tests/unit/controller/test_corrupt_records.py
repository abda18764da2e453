"""A status record damaged on disk (torn, emptied, edited, of another format or another
combination's): the summary and both reports name the file and what to do, the resume runs it
again, and nothing the record says is used (its figures, times or names may be what broke)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ansible_collections.vlmfleet.shared.plugins.module_utils import contract
from ansible_collections.vlmfleet.shared.plugins.plugin_utils.inputs import eval_stored_run
from ansible_collections.vlmfleet.shared.plugins.plugin_utils.report import (
    build_reports,
    load_references,
)
from ansible_collections.vlmfleet.shared.plugins.plugin_utils.summary import (
    eval_done_combinations,
    eval_records_to_restore,
    eval_summary,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "results"
RUN = "20261127T020000Z"
REFERENCES_FILE = Path(__file__).resolve().parents[3] / "playbooks/vars/reference_scores.yml"
MODELS = ["llava_v1.5_7b", "llava_v1.5_13b"]
BENCHMARKS = ["MMBench_DEV_EN", "POPE", "TextVQA_VAL", "OCRBench", "SEEDBench_IMG"]
RECORD = Path("gpu-01") / "llava_v1.5_7b" / "POPE" / contract.STATUS_FILE
ADVICE = "its result cannot be used: rerun with the same run_id to run it again"


def edit(key: str, value: Any) -> Callable[[str], str]:
    def change(text: str) -> str:
        return json.dumps({**json.loads(text), key: value})

    return change


# (what was done to POPE's ok record, what the reason must say)
DAMAGE = [
    (lambda text: text[:50], "not readable JSON"),
    (lambda text: "", "not readable JSON"),
    (lambda text: "[]", "record is not an object"),
    (edit("seconds", "abc"), "seconds 'abc' is not a number of seconds"),
    (edit("samples", None), "samples None is not a count"),
    (edit("started_at", 5), "started_at 5 is not a time"),
    (edit("host", None), "host is not a name"),
    (edit("slot", 3), "slot is not a name"),
    (edit("primary_scale", "x"), "primary_scale 'x' is not a number"),
    (edit("questions_file", "../../etc/passwd"), "questions_file '../../etc/passwd' is not"),
    (
        edit("model", "llava_v1.5_13b"),
        "it is the record of llava_v1.5_13b/POPE on gpu-01, not of its folder's "
        "llava_v1.5_7b/POPE on gpu-01",
    ),
]


@pytest.fixture
def run(tmp_path: Path) -> Path:
    shutil.copytree(FIXTURES / RUN, tmp_path / RUN)
    return tmp_path / RUN


def summarized(run: Path) -> dict[str, Any]:
    plan = json.loads((run / "plan.json").read_text())
    plan |= {"models": MODELS, "benchmarks": BENCHMARKS, "smoke": True, "limit": 3}
    summary = eval_summary(plan, str(run))
    (run / "summary.json").write_text(json.dumps(summary))
    return summary


@pytest.mark.parametrize(("damage", "problem"), DAMAGE)
def test_a_damaged_record_is_named_in_summary_and_report_and_run_again(
    run: Path, damage: Callable[[str], str], problem: str
) -> None:
    path = run / RECORD
    path.write_text(damage(path.read_text()))
    summary = summarized(run)
    entry = next(
        c
        for c in summary["combinations"]
        if (c["model"], c["benchmark"]) == ("llava_v1.5_7b", "POPE")
    )
    assert entry["status"] == "failed"
    assert entry["reason"].startswith(f"status record {path} breaks the contract: {problem}")
    assert entry["reason"].endswith(ADVICE)
    # None of its figures stand: no score, no seconds, no samples.
    assert (entry["primary_score"], entry["seconds"], entry["samples"]) == (None, None, None)
    # The reports are written, and say what the summary says (they stopped on a torn record).
    files = build_reports(run, load_references(REFERENCES_FILE))
    assert ADVICE in files["report.md"]
    assert ADVICE in files["report.html"]
    # The resume does not count it done.
    done = eval_done_combinations(contract.run_records(run), True)
    assert ["llava_v1.5_7b", "POPE"] not in done
    assert ["llava_v1.5_7b", "MMBench_DEV_EN"] in done


def test_every_record_the_worker_writes_passes_the_stricter_schema() -> None:
    """The fixture records are what workers wrote; none of them may start failing."""
    records = contract.run_records(FIXTURES / RUN)
    assert records
    assert [r["reason"] for r in records if "breaks the contract" in str(r["reason"])] == []


def test_a_record_damaged_on_the_host_is_put_back_from_the_controllers_copy(tmp_path: Path) -> None:
    """The resume skips it (the controller's copy is done), and the collect would bring the
    host's damaged copy over the good one: the result would be lost at the next summary."""
    controller = tmp_path / "results" / RUN
    shutil.copytree(FIXTURES / RUN, controller)
    host = tmp_path / "outputs" / RUN
    shutil.copytree(FIXTURES / RUN / "gpu-01", host / "gpu-01")
    (host / RECORD).write_text('{"status": "ok", "mod')
    host_records = contract.host_records(host / "gpu-01")
    assert eval_records_to_restore(host_records, str(controller), "gpu-01", True) == [
        "gpu-01/llava_v1.5_7b/POPE"
    ]
    # Nothing to put back where the controller's copy is damaged too (the rerun runs it), for
    # another host, or once the host's copy is whole again.
    assert eval_records_to_restore(host_records, str(controller), "gpu-02", True) == []
    (controller / RECORD).write_text("")
    assert eval_records_to_restore(host_records, str(controller), "gpu-01", True) == []
    shutil.copy(FIXTURES / RUN / RECORD, host / RECORD)
    shutil.copy(FIXTURES / RUN / RECORD, controller / RECORD)
    whole = contract.host_records(host / "gpu-01")
    assert eval_records_to_restore(whole, str(controller), "gpu-01", True) == []


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda text: "", "no scored questions"),
        (lambda text: '{"index": 1}\n', "KeyError: 'score'"),
        (lambda text: text + text, "a question index appears twice"),
    ],
)
def test_a_damaged_questions_file_is_named_and_the_reports_are_written(
    tmp_path: Path, damage: Callable[[str], str], problem: str
) -> None:
    """A questions file emptied or edited after its record was written stopped both reports
    ("UncertaintyError: no scored questions"), losing the scores that stand."""
    for run in (RUN, "20261126T180000Z"):
        shutil.copytree(FIXTURES / run, tmp_path / run)
    questions = tmp_path / RUN / "gpu-01" / "llava_v1.5_7b" / "POPE"
    questions /= "llava_v1.5_7b_POPE_questions.jsonl"
    questions.write_text(damage(questions.read_text()))
    files = build_reports(
        tmp_path / RUN, load_references(REFERENCES_FILE), compare_to="20261126T180000Z"
    )
    assert f"{questions}: {problem}" in files["report.md"]


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('{"inputs": {"models": ["llava', "not readable JSON (Unterminated string"),
        ("", "not readable JSON (Expecting value"),
        ('{"started_at": "t"}', "no 'inputs' object"),
    ],
)
def test_a_damaged_run_json_stops_the_resume_with_one_message(
    tmp_path: Path, text: str, why: str
) -> None:
    """The validation step read run.json with from_json inside a template: a torn one stopped
    the play with a template error naming neither the file nor what to do."""
    path = tmp_path / "run.json"
    path.write_text(text)
    stored = eval_stored_run(str(path))
    assert stored["run"] is None
    assert stored["error"].startswith(f"{path} cannot be read: {why}")
    assert stored["error"].endswith(
        "put back a copy of run.json, or give a new run_id (nothing of this run was changed)"
    )
    path.write_text('{"inputs": {"run_id": "r1"}, "started_at": "t"}')
    assert eval_stored_run(str(path)) == {
        "run": {"inputs": {"run_id": "r1"}, "started_at": "t"},
        "error": None,
    }


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"host": "gpu-01", "gpu', "is not readable JSON"),
        ("[]", "is not a host record of collect.yml's shape"),
        ('{"gpu_facts_gpus": "x", "image_labels": 3}', "is not a host record of collect.yml's"),
    ],
)
def test_a_damaged_host_json_leaves_that_hosts_provenance_unknown_not_the_report(
    run: Path, text: str, problem: str
) -> None:
    """host.json (GPU facts, image) is written by the collect; a torn one stopped both reports."""
    path = run / "gpu-01" / "host.json"
    path.write_text(text)
    files = build_reports(run, load_references(REFERENCES_FILE))
    assert f"gpu-01: GPU facts and image unknown: {path} {problem}" in files["report.md"]
    assert "gpu-02: " in files["report.md"]


def test_a_damaged_record_not_planned_in_this_attempt_is_named_not_missing(run: Path) -> None:
    """A resume that counted it done plans nothing for it; its record damaged since (the
    collect brought a damaged copy) read as 'missing: no status record and not planned in
    this attempt', hiding the file and its problem."""
    path = run / RECORD
    path.write_text("")
    plan = json.loads((run / "plan.json").read_text())
    plan |= {"models": MODELS, "benchmarks": BENCHMARKS, "smoke": True, "limit": 3, "units": []}
    summary = eval_summary(plan, str(run))
    entry = next(
        c
        for c in summary["combinations"]
        if (c["model"], c["benchmark"]) == ("llava_v1.5_7b", "POPE")
    )
    assert (entry["status"], entry["host"]) == ("failed", "gpu-01")
    assert entry["reason"].startswith(f"status record {path} breaks the contract")
