"""Reports of a run directory, on the fixture runs in tests/fixtures/results/."""

from __future__ import annotations

import csv
import html
import io
import json
import math
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import NormalDist

import pytest
import yaml
from ansible_collections.vlmfleet.shared.plugins.module_utils.uncertainty import primary_interval
from ansible_collections.vlmfleet.shared.plugins.plugin_utils import report as eval_report
from ansible_collections.vlmfleet.shared.plugins.plugin_utils.report import (
    build_reports,
    label_versions,
    load_references,
    main,
    write_reports,
)
from ansible_collections.vlmfleet.shared.plugins.plugin_utils.report.data import (
    ReportError,
    compare_runs,
    load_run,
    percent,
)
from ansible_collections.vlmfleet.shared.plugins.plugin_utils.summary import summarize

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "results"
CURRENT, PREVIOUS = "20261127T020000Z", "20261126T180000Z"
REFERENCES_FILE = Path(__file__).resolve().parents[3] / "playbooks/vars/reference_scores.yml"
CATALOGUE_FILE = Path(__file__).resolve().parents[3] / "playbooks/vars/catalogue.yml"
# The default benchmarks, from the catalogue (test_catalogue checks it against its own list).
DEFAULT_BENCHMARKS = yaml.safe_load(
    (Path(__file__).resolve().parents[3] / "playbooks/vars/catalogue.yml").read_text()
)["catalogue_default_benchmarks"]
Z = NormalDist().inv_cdf(0.975)


def wilson(right: float, n: int) -> tuple[float, float]:
    """Wilson's score interval (Wilson 1927) of right/n on 0-100, written out."""
    p = right / n
    centre = (p + Z * Z / (2 * n)) / (1 + Z * Z / n)
    half = Z / (1 + Z * Z / n) * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n))
    return 100 * max(0.0, centre - half), 100 * min(1.0, centre + half)


def plus_minus(right: float, n: int) -> str:
    low, high = wilson(right, n)
    return f"±{(high - low) / 2:.1f}"


def bounds(right: int, n: int) -> str:
    low, high = wilson(right, n)
    return f"[{low:.1f}, {high:.1f}]"


# The fixture's primary scores on 0-100, worked out by hand from the raw values VLMEvalKit
# writes: MCQ fractions x100, yes/no and VQA percent as is, OCRBench's hits of 3 questions.
EXPECTED = {
    ("llava_v1.5_7b", "MMBench_DEV_EN"): "33.33",
    ("llava_v1.5_7b", "POPE"): "100.00",
    ("llava_v1.5_7b", "TextVQA_VAL"): "0.00",
    ("llava_v1.5_7b", "OCRBench"): "66.67",
    ("llava_v1.5_7b", "SEEDBench_IMG"): "100.00",
    ("llava_v1.5_13b", "MMBench_DEV_EN"): "66.67",
    ("llava_v1.5_13b", "POPE"): "66.67",
    ("llava_v1.5_13b", "TextVQA_VAL"): "33.33",
    ("llava_v1.5_13b", "OCRBench"): "failed",
    ("llava_v1.5_13b", "SEEDBench_IMG"): "missing",
}
TEXTVQA_NOTE = "the questions' mean (30.00) does not give back VLMEvalKit's figure (33.33)"
# The cells as the table shows them: each score with half its interval's width. The right/wrong
# questions' intervals are Wilson's (k of 3 right); POPE's F1 is a cluster bootstrap over its 3
# questions, where at least 1 resample in 27 has no true "yes" (F1 0) and 1 in 27 only
# right ones (F1 100): its 95% interval is all of 0-100.
CELLS = {
    ("llava_v1.5_7b", "MMBench_DEV_EN"): f"33.33 {plus_minus(1, 3)}",
    ("llava_v1.5_7b", "POPE"): "100.00 ±50.0",
    ("llava_v1.5_7b", "TextVQA_VAL"): f"0.00 {plus_minus(0, 3)}",
    ("llava_v1.5_7b", "OCRBench"): f"66.67 {plus_minus(2, 3)}",
    ("llava_v1.5_7b", "SEEDBench_IMG"): f"100.00 {plus_minus(3, 3)}",
    ("llava_v1.5_13b", "MMBench_DEV_EN"): f"66.67 {plus_minus(2, 3)}",
    ("llava_v1.5_13b", "POPE"): "66.67 ±50.0",
    ("llava_v1.5_13b", "TextVQA_VAL"): f"33.33 (no interval: {TEXTVQA_NOTE})",
    ("llava_v1.5_13b", "OCRBench"): "failed",
    ("llava_v1.5_13b", "SEEDBench_IMG"): "missing",
}


@pytest.fixture
def results(tmp_path: Path) -> Path:
    for run in (CURRENT, PREVIOUS):
        shutil.copytree(FIXTURES / run, tmp_path / run)
    return tmp_path


@pytest.fixture(scope="module")
def refs() -> dict:
    return load_references(REFERENCES_FILE)


@pytest.fixture
def files(results: Path, refs: dict) -> dict[str, str]:
    return build_reports(results / CURRENT, refs, compare_to=PREVIOUS)


def table(markdown: str, heading: str) -> list[list[str]]:
    section = markdown.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = [ln for ln in section.splitlines() if ln.startswith("|")]
    return [[c.strip() for c in r.strip("|").split(" | ")] for r in rows[2:]]


def test_score_table_matches_hand_computed_scores(files: dict[str, str]) -> None:
    md = files["report.md"]
    header = md.split("## Primary scores (0-100)\n", 1)[1].split("| benchmark | ", 1)[1]
    models = header.split(" |\n", 1)[0].split(" | ")
    assert models == ["llava_v1.5_7b", "llava_v1.5_13b"]
    got = {}
    for row in table(md, "Primary scores (0-100)"):
        for model, cell in zip(models, row[1:], strict=True):
            got[(model, row[0])] = cell
    assert got == CELLS
    # The score itself is the summary's, to its two decimals.
    assert {k: v.split(" ")[0] for k, v in got.items()} == EXPECTED


def test_interval_table_shows_the_bounds(files: dict[str, str]) -> None:
    rows = {(r[0], r[1]): r[2:] for r in table(files["report.md"], "Score intervals (95%)")}
    assert rows[("MMBench_DEV_EN", "llava_v1.5_7b")] == [
        f"33.33 {bounds(1, 3)}", "Wilson", "3", "3"]  # fmt: skip
    assert rows[("SEEDBench_IMG", "llava_v1.5_7b")][0] == f"100.00 {bounds(3, 3)}"
    assert rows[("POPE", "llava_v1.5_13b")] == [
        "66.67 [0.0, 100.0]", "cluster bootstrap (percentile)", "3", "3"]  # fmt: skip
    assert rows[("TextVQA_VAL", "llava_v1.5_13b")] == [
        "33.33", f"no interval: {TEXTVQA_NOTE}", "", ""]  # fmt: skip
    # Failed and missing combinations have no score to bound.
    assert ("OCRBench", "llava_v1.5_13b") not in rows


def test_overview_says_what_the_limit_allows(files: dict[str, str]) -> None:
    # The widest interval 3 questions allow: Wilson's at a score of 50 (1.5 of 3 right).
    expected = (
        "- Sample limit per benchmark: 3: at 3 questions a 0/1 score's 95% interval is about "
        f"{plus_minus(1.5, 3)} points"
    )
    assert expected in files["report.md"]


def test_scores_are_the_workers_never_guessed(results: Path) -> None:
    run = load_run(results / CURRENT)
    ocr = run.combo("llava_v1.5_7b", "OCRBench")
    assert (ocr.primary_metric, ocr.scores["Final Score"], ocr.primary_scale) == (
        "Final Score",
        2,
        3,
    )
    assert percent(ocr) == pytest.approx(66.67)
    # The record's primary_score is what the report shows, whatever the raw value says.
    ocr.primary_score = 12.5
    assert percent(ocr) == 12.5
    # No primary_score (a record of an older worker): no number rather than a guess.
    ocr.primary_score = None
    assert percent(ocr) is None
    assert percent(run.combo("llava_v1.5_13b", "OCRBench")) is None  # failed


def test_scales_section_states_each_metric_and_its_full_scale(files: dict[str, str]) -> None:
    # The plain name (the catalogue's), VLMEvalKit's key and what it reads all right.
    rows = {r[0]: r[1:4] for r in table(files["report.md"], "Score scales")}
    assert rows == {
        "OCRBench": ["hits out of questions", "Final Score", "0-3"],
        "MMBench_DEV_EN": ["circular accuracy", "Overall", "0-1"],
        "POPE": ['F1 of "yes", pooled over all questions', "split=Overall\\|Overall", "0-100"],
        "TextVQA_VAL": ["VQA accuracy", "Overall", "0-100"],
        "SEEDBench_IMG": ["accuracy", "Overall", "0-1"],
    }


def test_scales_print_each_scoring_note_once(results: Path, refs: dict) -> None:
    summary_path = results / CURRENT / "summary.json"
    summary = json.loads(summary_path.read_text())
    note = "1 of 3 questions are open (no options): exact matching counts one right only ..."
    for entry in summary["combinations"]:
        if entry["benchmark"] == "MMBench_DEV_EN":
            entry["scoring_note"] = note
    summary_path.write_text(json.dumps(summary))
    md = build_reports(results / CURRENT, refs)["report.md"]
    notes = {r[0]: r[4] for r in table(md, "Score scales")}
    assert notes["MMBench_DEV_EN"] == f"llava_v1.5_7b, llava_v1.5_13b: {note}"
    assert md.count(note) == 1


def test_totals_times_and_failures(files: dict[str, str]) -> None:
    md = files["report.md"]
    assert table(md, "Totals") == [["ok", "8"], ["failed", "1"], ["missing", "1"], ["total", "10"]]
    # 7B: five combinations back to back on one GPU (30+37.5+45+52.5+60 s).
    # 13B: 148.5 s on gpu-01 in parallel with a 42 s failure on the CPU host; records without
    # phase times (an older worker's) count whole, but a failure without them generated nothing.
    assert table(md, "Time per model") == [
        ["llava_v1.5_7b", "5", "5", "3m45s", "3m45s"],
        ["llava_v1.5_13b", "5", "3", "2m28s", "2m28s"],
    ]
    assert table(md, "Failures") == [
        ["llava_v1.5_13b", "OCRBench", "gpu-02", "failed",
         "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB",
         "gpu-02/llava_v1.5_13b/OCRBench/worker.log"],
        ["llava_v1.5_13b", "SEEDBench_IMG", "gpu-02", "missing",
         "no status record: the worker on gpu-02 cpu0 did not reach it",
         "gpu-02/cpu0/container.log"],
    ]  # fmt: skip
    status = {r[0]: r[1:] for r in table(md, "Status matrix")}
    assert status["OCRBench"] == ["ok (gpu-01)", "failed (gpu-02)"]
    assert status["SEEDBench_IMG"] == ["ok (gpu-01)", "missing (gpu-02)"]


def test_gpu_time_counts_generation_when_records_have_phase_times(
    results: Path, refs: dict
) -> None:
    # The worker's records say how long generation took; preparation and evaluation ran beside
    # it, so only the infer phase is GPU time (the 7B ran on a one-GPU slot).
    for record_file in (results / CURRENT / "gpu-01" / "llava_v1.5_7b").glob("*/status.json"):
        record = json.loads(record_file.read_text())
        record["phase_seconds"] = {"prepare": 5.0, "infer": 12.0, "evaluate": 3.0}
        record_file.write_text(json.dumps(record))
    md = build_reports(results / CURRENT, refs)["report.md"]
    rows = {r[0]: r for r in table(md, "Time per model")}
    # Five combinations x 12 s; the wall time is unchanged; the 13B has no phase times.
    assert rows["llava_v1.5_7b"] == ["llava_v1.5_7b", "5", "5", "3m45s", "1m00s"]
    assert rows["llava_v1.5_13b"] == ["llava_v1.5_13b", "5", "3", "2m28s", "2m28s"]


def set_phases(record_file: Path, started: float, prepare: float, infer: float,
               finished: float, batched: bool) -> None:  # fmt: skip
    """A fixture record's times, seconds after the run's start, and its phase times."""
    base = datetime(2026, 11, 27, 2, 0, 0, tzinfo=UTC)
    record = json.loads(record_file.read_text())
    record["started_at"] = (base + timedelta(seconds=started)).isoformat()
    record["finished_at"] = (base + timedelta(seconds=finished)).isoformat()
    record["phase_seconds"] = {"prepare": prepare, "infer": infer, "evaluate": 2.0}
    if batched:
        record["decoder"] = "static_cache"
    record_file.write_text(json.dumps(record))
    summary_path = record_file.parents[3] / "summary.json"
    summary = json.loads(summary_path.read_text())
    for entry in summary["combinations"]:
        if (entry["model"], entry["benchmark"]) == (record["model"], record["benchmark"]):
            entry["started_at"], entry["finished_at"] = record["started_at"], record["finished_at"]
    summary_path.write_text(json.dumps(summary))


SEVEN_B = ["MMBench_DEV_EN", "POPE", "TextVQA_VAL", "OCRBench", "SEEDBench_IMG"]


@pytest.mark.parametrize(
    ("batched", "gpu_time"),
    [
        # One queue: benchmark i enters it at i + 1 s and generates for 10 + i s, so the spans
        # [1, 11], [2, 13], [3, 15], [4, 17], [5, 19] overlap; their union is [1, 19]: 18 s,
        # where their sum (60 s) would be more than the 21 s of wall time.
        (True, "18s"),
        # VLMEvalKit's loop: each waits for the one before, 10 + i s each: 60 s end to end.
        (False, "1m00s"),
    ],
)
def test_gpu_time_is_the_union_of_generation_on_each_gpu(
    results: Path, refs: dict, batched: bool, gpu_time: str
) -> None:
    combos = results / CURRENT / "gpu-01" / "llava_v1.5_7b"
    ends = (
        [2 * i + 11 for i in range(5)]
        if batched
        else [1 + sum(10 + j for j in range(i + 1)) for i in range(5)]
    )
    for i, bench in enumerate(SEVEN_B):
        set_phases(combos / bench / "status.json", i, 1.0, 10.0 + i, ends[i] + 2.0, batched)
    md = build_reports(results / CURRENT, refs)["report.md"]
    rows = {r[0]: r for r in table(md, "Time per model")}
    wall = "21s" if batched else "1m03s"
    assert rows["llava_v1.5_7b"] == ["llava_v1.5_7b", "5", "5", wall, gpu_time]
    assert "the union of its benchmarks' generation phases" in md


def test_gpu_time_counts_a_shared_gpu_once(results: Path, refs: dict) -> None:
    # Two slots sharing GPU 1 (eval_gpu_slots) run the 7B's benchmarks at the same time: the
    # GPU was busy for the longer of the two, not for both.
    plan_path = results / CURRENT / "plan.json"
    plan = json.loads(plan_path.read_text())
    plan["units"].append({**plan["units"][1], "slot": "gpu1s1", "benchmarks": []})
    plan_path.write_text(json.dumps(plan))
    combos = results / CURRENT / "gpu-01" / "llava_v1.5_7b"
    for i, bench in enumerate(SEVEN_B):
        set_phases(combos / bench / "status.json", 0, 0.0, 30.0, 31.0, batched=True)
        if i % 2:
            record = json.loads((combos / bench / "status.json").read_text())
            record["slot"] = "gpu1s1"
            (combos / bench / "status.json").write_text(json.dumps(record))
    rows = {r[0]: r for r in table(build_reports(results / CURRENT, refs)["report.md"],
                                   "Time per model")}  # fmt: skip
    assert rows["llava_v1.5_7b"][3:] == ["31s", "30s"]


def test_failure_log_paths_exist(files: dict[str, str], results: Path) -> None:
    failed, missing = table(files["report.md"], "Failures")
    assert "CUDA out of memory" in (results / CURRENT / failed[5]).read_text()
    # A combination the worker never reached points at the slot's console log.
    assert "Killed" in (results / CURRENT / missing[5]).read_text()


KNOWN = (
    "llava_v1.5_7b: known-answer checkpoint known-weak; "
    "llava_v1.5_13b: known-answer checkpoint known-strong"
)


def test_smoke_is_labelled_everywhere(files: dict[str, str]) -> None:
    assert files["report.md"].startswith("# [SMOKE] ")
    banner = (
        f"SMOKE RUN on synthetic data ({KNOWN}). The pipeline and the scoring ran for real; "
        "the scores say nothing about the models these names stand for."
    )
    assert f"> **{banner}**" in files["report.md"]
    assert "<title>[SMOKE] " in files["report.html"]
    assert f'<div class="smoke">{html.escape(banner)}</div>' in files["report.html"]
    assert json.loads(files["manifest.json"])["smoke"] is True
    # What stood behind each name, as the records say: not random weights.
    assert f"- Checkpoints: {KNOWN}" in files["report.md"]
    assert "random-weight" not in files["report.md"]
    section = files["report.md"].split("## Comparison with published scores\n", 1)[1]
    assert section.lstrip().startswith(f"SMOKE run on synthetic data ({KNOWN}): ")


def test_checkpoints_as_the_records_name_them(results: Path, refs: dict) -> None:
    for record_file in (results / CURRENT).glob("*/llava_v1.5_13b/*/status.json"):
        record = json.loads(record_file.read_text())
        record["checkpoint"] = "random"
        record_file.write_text(json.dumps(record))
    for record_file in (results / CURRENT).glob("*/llava_v1.5_7b/*/status.json"):
        record = json.loads(record_file.read_text())
        del record["checkpoint"]  # a worker older than the checkpoint key
        record_file.write_text(json.dumps(record))
    md = build_reports(results / CURRENT, refs)["report.md"]
    assert (
        "- Checkpoints: llava_v1.5_7b: checkpoint not named in its status records; "
        "llava_v1.5_13b: tiny random-weight checkpoint"
    ) in md


def test_real_run_names_the_hub_repo_behind_each_model(results: Path, refs: dict) -> None:
    repos = {"llava_v1.5_7b": "liuhaotian/llava-v1.5-7b", "llava_v1.5_13b": "/models/my-13b"}
    for record_file in (results / CURRENT).glob("*/*/*/status.json"):
        record = json.loads(record_file.read_text())
        record.update(smoke=False, checkpoint=repos[record["model"]])
        record_file.write_text(json.dumps(record))
    run_json = results / CURRENT / "run.json"
    info = json.loads(run_json.read_text())
    info["inputs"]["smoke"] = False
    run_json.write_text(json.dumps(info))
    md = build_reports(results / CURRENT, refs)["report.md"]
    assert (
        "- Checkpoints: llava_v1.5_7b: liuhaotian/llava-v1.5-7b; llava_v1.5_13b: /models/my-13b"
    ) in md


def test_real_run_has_no_smoke_label(results: Path, refs: dict) -> None:
    run_json = results / CURRENT / "run.json"
    info = json.loads(run_json.read_text())
    info["inputs"]["smoke"] = False
    run_json.write_text(json.dumps(info))
    out = build_reports(results / CURRENT, refs)
    assert "SMOKE" not in out["report.md"]
    assert "SMOKE" not in out["report.html"]


def test_scores_csv_long_form(files: dict[str, str]) -> None:
    rows = list(csv.DictReader(io.StringIO(files["scores.csv"])))
    assert list(rows[0]) == ["run", "host", "model", "benchmark", "metric", "value", "samples",
                             "seconds", "status", "primary", "primary_score", "interval_low",
                             "interval_high", "interval_method", "questions_file",
                             "smoke"]  # fmt: skip
    # 24 metric values over the 8 ok combinations, one bare row each for the failed and missing.
    assert len(rows) == 26
    pope = [r for r in rows if (r["model"], r["benchmark"]) == ("llava_v1.5_13b", "POPE")]
    assert {r["metric"]: r["value"] for r in pope} == {
        "split=Overall|Overall": "66.67", "split=Overall|acc": "66.67",
        "split=Overall|precision": "50.0", "split=adversarial|Overall": "100.0",
        "split=popular|Overall": "0.0", "split=random|Overall": "0.0"}  # fmt: skip
    assert [r["primary"] for r in pope] == ["true"] + ["false"] * 5
    assert [r["primary_score"] for r in pope] == ["66.67"] + [""] * 5
    # The interval on the primary row; the questions file on every row of the combination.
    assert [(r["interval_low"], r["interval_high"]) for r in pope] == [
        ("0.0", "100.0")] + [("", "")] * 5  # fmt: skip
    assert {r["interval_method"] for r in pope} == {"cluster bootstrap (percentile)", ""}
    assert {r["questions_file"] for r in pope} == {
        "gpu-01/llava_v1.5_13b/POPE/llava_v1.5_13b_POPE_questions.jsonl"}  # fmt: skip
    mmbench = next(r for r in rows if (r["model"], r["benchmark"], r["primary"]) == (
        "llava_v1.5_7b", "MMBench_DEV_EN", "true"))  # fmt: skip
    low, high = wilson(1, 3)
    assert float(mmbench["interval_low"]) == pytest.approx(low, abs=1e-5)
    assert float(mmbench["interval_high"]) == pytest.approx(high, abs=1e-5)
    assert mmbench["interval_method"] == "Wilson"
    textvqa = next(r for r in rows if (r["model"], r["benchmark"], r["primary"]) == (
        "llava_v1.5_13b", "TextVQA_VAL", "true"))  # fmt: skip
    assert (textvqa["interval_low"], textvqa["interval_method"]) == ("", "")
    assert {r["seconds"] for r in pope} == {"49.5"} and {r["samples"] for r in pope} == {"3"}
    missing = [r for r in rows if r["status"] == "missing"]
    assert len(missing) == 1 and missing[0]["metric"] == missing[0]["value"] == ""
    assert {r["run"] for r in rows} == {CURRENT}
    assert {r["smoke"] for r in rows} == {"true"}


def test_manifest_provenance(files: dict[str, str]) -> None:
    m = json.loads(files["manifest.json"])
    assert m["image"]["id"].startswith("sha256:9b1c7e2f")
    # The image's own labels (docker/transformers-4.37/Dockerfile: io.vlm-eval.versions.*).
    assert m["versions"] == {"torch": "2.1.2", "torchvision": "0.16.2", "transformers": "4.37.2",
                             "llava-torch": "1.2.2.post1", "ms-vlmeval": "0.0.20"}  # fmt: skip
    assert m["lock_sha256"].startswith("4f2a9c0d")
    assert m["project_commit"].startswith("08634b0")
    assert m["ansible_version"] == "2.19.14"
    assert m["inputs"]["limit"] == 3 and m["inputs"]["smoke"] is True
    assert m["inputs"]["models"] == ["llava_v1.5_7b", "llava_v1.5_13b"]
    assert (m["started_at"], m["finished_at"]) == ("2026-11-27T02:00:00Z", "2026-11-27T02:04:30Z")
    assert m["hosts"]["gpu-01"]["gpu_count"] == 2
    assert m["hosts"]["gpu-01"]["gpu_model"] == "NVIDIA H100 80GB HBM3"
    assert (m["hosts"]["gpu-01"]["driver"], m["hosts"]["gpu-01"]["cuda"]) == ("550.54.15", "12.4")
    assert m["hosts"]["gpu-02"]["gpu_count"] == 0
    assert m["compared_with"]["run_id"] == PREVIOUS and m["compared_with"]["changed"] == 3
    assert len(m["files_sha256"]["summary.json"]) == 64


def test_manifest_takes_commit_and_ansible_from_the_playbook_when_run_json_lacks_them(
    results: Path, refs: dict
) -> None:
    (results / CURRENT / "run.json").unlink()
    extra = {"ansible_version": "2.19.14", "project_commit": "abc123"}
    m = json.loads(build_reports(results / CURRENT, refs, extra=extra)["manifest.json"])
    assert (m["project_commit"], m["ansible_version"]) == ("abc123", "2.19.14")


def test_label_versions_reads_either_label_scheme() -> None:
    versions, lock = label_versions({
        "io.example.llava-torch.version": "1.2.2.post1",
        "io.example.torch.version": "2.1.2",
        "io.example.requirements-lock.sha256": "ff" * 32,
        "org.opencontainers.image.title": "vlm-eval",
    })  # fmt: skip
    assert versions == {"torch": "2.1.2", "llava-torch": "1.2.2.post1"}
    assert lock == "ff" * 32


def test_compare_marks_only_status_changes_at_three_questions(results: Path) -> None:
    now, then = load_run(results / CURRENT), load_run(results / PREVIOUS)
    deltas = {(d.model, d.benchmark): d for d in compare_runs(now, then)}
    # 7B OCRBench: 0 then 2 of the same 3 questions right. Exact McNemar: the two discordant
    # questions both went this run's way, two-sided P = 2 x C(2, 2) / 2^2 = 0.5.
    ocr = deltas[("llava_v1.5_7b", "OCRBench")]
    assert ocr.delta == pytest.approx(66.67)
    assert ocr.paired.test["p_value"] == pytest.approx(2 * math.comb(2, 2) / 2**2)
    assert ocr.paired.test["questions"] == 3 and ocr.paired.test["discordant"] == 2
    # Holm over the 7B's four tested benchmarks: the smallest p-value times 4, capped at 1.
    assert ocr.paired.adjusted_p == 1.0
    assert not ocr.flagged
    # The same answers: no difference, p = 1.
    same = deltas[("llava_v1.5_7b", "MMBench_DEV_EN")]
    assert (same.paired.test["difference"], same.paired.test["p_value"]) == (0.0, 1.0)
    assert not same.flagged
    # A combination without an interval is not tested, and says why.
    assert not deltas[("llava_v1.5_13b", "TextVQA_VAL")].flagged
    assert "no interval" in deltas[("llava_v1.5_13b", "TextVQA_VAL")].paired.why_not
    # Status changes are flagged whatever the scores.
    assert deltas[("llava_v1.5_13b", "OCRBench")].flagged
    assert deltas[("llava_v1.5_7b", "SEEDBench_IMG")].status_before == "failed"
    assert deltas[("llava_v1.5_7b", "SEEDBench_IMG")].flagged
    assert sorted(k for k, d in deltas.items() if d.flagged) == [
        ("llava_v1.5_13b", "OCRBench"), ("llava_v1.5_13b", "SEEDBench_IMG"),
        ("llava_v1.5_7b", "SEEDBench_IMG")]  # fmt: skip


def test_compare_section_in_report(files: dict[str, str], results: Path, refs: dict) -> None:
    rows = {
        (r[0], r[1]): r[2:] for r in table(files["report.md"], f"Comparison with run {PREVIOUS}")
    }
    ocr = rows[("llava_v1.5_7b", "OCRBench")]
    assert ocr[:3] == ["0.00", "66.67", "+66.67"]
    assert ocr[4:7] == ["3", "0.500", "1.000"]
    assert ocr[7].startswith("no difference shown at this limit (one test alone detects ")
    assert ocr[8] == ""
    assert rows[("llava_v1.5_13b", "SEEDBench_IMG")] == [
        "66.67", "missing", "", "", "", "", "",
        "status ok -> missing", "CHANGED (status)"]  # fmt: skip
    assert "3 of 10 combinations changed" in files["report.md"]
    assert "Comparison with run" not in build_reports(results / CURRENT, refs)["report.md"]


def test_compare_to_unknown_run_names_the_runs_there(results: Path, refs: dict) -> None:
    with pytest.raises(ReportError, match=f"'nope'.*runs there: {PREVIOUS}, {CURRENT}"):
        build_reports(results / CURRENT, refs, compare_to="nope")


def test_reference_map_covers_only_known_figures(refs: dict) -> None:
    figures, mapping = refs["reference_scores_figures"], refs["reference_scores_benchmark_map"]
    assert set(mapping) <= set(DEFAULT_BENCHMARKS)
    for figure in figures.values():
        assert figure["source"] and figure["split"] and figure["name"]
        assert set(figure["scores"]) == {"llava_v1.5_7b", "llava_v1.5_13b"}
    assert {figures[f]["source"].split(",")[0] for f in mapping.values()} == {
        "LLaVA repository", "VLMEvalKit v0.1 results tables (Jan 2024)"}  # fmt: skip
    # The published figures, as playbooks/vars/reference_scores.yml gives them with their sources.
    assert figures[mapping["MMBench_DEV_EN"]]["scores"] == {"llava_v1.5_7b": 64.3,
                                                             "llava_v1.5_13b": 67.7}  # fmt: skip
    assert figures[mapping["SEEDBench_IMG"]]["scores"]["llava_v1.5_7b"] == 65.6
    assert figures[mapping["HallusionBench"]]["scores"]["llava_v1.5_13b"] == 46.7
    assert figures[mapping["ScienceQA_VAL"]]["scores"]["llava_v1.5_13b"] == 72.0


def test_reference_section_names_figure_and_source(files: dict[str, str]) -> None:
    rows = {(r[0], r[1]): r[2:] for r in table(files["report.md"],
                                                 "Comparison with published scores")}  # fmt: skip
    ours, published, delta, reading, figure, source, split = rows[
        ("llava_v1.5_7b", "MMBench_DEV_EN")]  # fmt: skip
    # 3 questions: the interval spans far more than ±10 points, so no gap is shown.
    assert (ours, published, delta, reading, figure) == (
        f"33.33 {bounds(1, 3)}", "64.30", "", "too few questions to tell", "MMBench")  # fmt: skip
    assert source.startswith("LLaVA repository, docs/MODEL_ZOO.md") and "dev" in split
    # SEEDBench_IMG compares with VLMEvalKit's image-only figure, not LLaVA's SEED (with video).
    assert rows[("llava_v1.5_7b", "SEEDBench_IMG")][1:5] == [
        "65.60", "", "too few questions to tell", "SEEDBench_IMG"]  # fmt: skip
    assert rows[("llava_v1.5_13b", "SEEDBench_IMG")][0] == "no score"
    # LLaVA's TextVQA prompts held OCR tokens: ours is shown, no gap, and why.
    assert rows[("llava_v1.5_13b", "TextVQA_VAL")][:4] == [
        "33.33", "61.30", "",
        "not comparable: LLaVA's TextVQA evaluation puts the image's OCR tokens in the prompt "
        "(llava_textvqa_val_v051_ocr); VLMEvalKit's TextVQA_VAL asks without them"]  # fmt: skip
    # POPE's published F1 is the mean of its three splits' F1s: ours on that definition, from
    # the per-split F1s (7B: 100, 0 and 100), not the pooled F1 (100) of the score table.
    assert rows[("llava_v1.5_7b", "POPE")][:4] == [
        "66.67 (mean of the random, popular and adversarial splits' F1s)", "85.90", "",
        "too few questions to tell"]  # fmt: skip
    # OCRBench has no published LLaVA-1.5 figure in the sources: no row rather than a guess.
    assert not any(b == "OCRBench" for _m, b in rows)


def test_html_has_same_tables_and_embedded_heatmap(files: dict[str, str]) -> None:
    page = files["report.html"]
    assert 'src="data:image/png;base64,iVBORw0KGgo' in page
    assert "http://" not in page and "https://" not in page
    for cell in CELLS.values():
        assert f">{html.escape(cell)}</td>" in page
    assert "gpu-02/llava_v1.5_13b/OCRBench/worker.log" in page


def test_reports_are_deterministic(results: Path, refs: dict, files: dict[str, str]) -> None:
    again = build_reports(results / CURRENT, refs, compare_to=PREVIOUS)
    assert again == files


def test_reason_with_pipe_does_not_break_the_markdown_table(results: Path, refs: dict) -> None:
    summary_path = results / CURRENT / "summary.json"
    summary = json.loads(summary_path.read_text())
    failed = next(e for e in summary["combinations"] if e["status"] == "failed")
    failed["reason"] = "ValueError: a | b"
    summary_path.write_text(json.dumps(summary))
    md = build_reports(results / CURRENT, refs)["report.md"]
    assert "ValueError: a \\| b" in md


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: (d / "summary.json").unlink(), "summary.json: missing"),
        (lambda d: (d / "summary.json").write_text("{"), "not valid JSON"),
        (lambda d: (d / "summary.json").write_text('{"x": 1}'), "no list of combinations"),
        (
            lambda d: (d / "summary.json").write_text(
                '{"combinations": [{"host": "h", "model": "m", "benchmark": "b", '
                '"status": "done"}]}'
            ),
            "status 'done' of m/b is not one of ok, failed, missing",
        ),
    ],
)
def test_bad_run_directory_is_named(results: Path, refs: dict, mutate, message: str) -> None:
    mutate(results / CURRENT)
    with pytest.raises(ReportError, match=message):
        build_reports(results / CURRENT, refs)


def test_write_reports_only_rewrites_changed_files(results: Path, files: dict[str, str]) -> None:
    assert sorted(write_reports(results / CURRENT, files)) == sorted(eval_report.REPORT_FILES)
    assert write_reports(results / CURRENT, files) == []
    assert (results / CURRENT / "report.md").read_text() == files["report.md"]


def test_cli_regenerates_and_reports_errors(results: Path, capsys) -> None:
    assert main([str(results / CURRENT)]) == 0
    assert "report.html: written" in capsys.readouterr().out
    assert main([str(results / CURRENT)]) == 0
    assert "report.html: unchanged" in capsys.readouterr().out
    assert main([str(results / "nope")]) == 2
    assert "no such run directory" in capsys.readouterr().err


def test_reference_file_is_plain_yaml_for_ansible() -> None:
    data = yaml.safe_load(REFERENCES_FILE.read_text())
    assert set(data) == {"reference_scores_figures", "reference_scores_benchmark_map"}


def test_combination_no_attempt_planned_has_no_host(results: Path, refs: dict) -> None:
    summary_path = results / CURRENT / "summary.json"
    summary = json.loads(summary_path.read_text())
    entry = next(e for e in summary["combinations"] if e["status"] == "missing")
    entry.update(host=None, slot=None, reason="no status record and not planned in this attempt")
    summary_path.write_text(json.dumps(summary))
    md = build_reports(results / CURRENT, refs)["report.md"]
    assert "missing (no host)" in md
    assert ["llava_v1.5_13b", "SEEDBench_IMG", "none", "missing",
            "no status record and not planned in this attempt", "no log collected"] in table(
        md, "Failures")  # fmt: skip


def test_model_loads_in_overview(files: dict[str, str]) -> None:
    assert "- Model loads: 3" in files["report.md"]


# --- constructed runs: per-question outcomes with known answers ------------------------------

Z_POWER = NormalDist().inv_cdf(0.8)
N = 40


def exact_mcnemar(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar: the binomial sign test on the discordant questions (McNemar
    1947; the exact form, twice the smaller tail of Binomial(m, 1/2))."""
    m, k = only_a + only_b, min(only_a, only_b)
    return min(1.0, 2 * sum(math.comb(m, i) for i in range(k + 1)) / 2**m)


def detectable(differences: list[float]) -> float:
    """(z(0.975) + z(0.8)) x the standard error of a mean paired difference, one question per
    cluster: sqrt(sum of squared deviations) / n; never below the exact sign test's reach, the
    fewest discordant questions all one way with 2 / 2^k <= 0.05, out of n."""
    n = len(differences)
    mean = sum(differences) / n
    error = math.sqrt(sum((d - mean) ** 2 for d in differences)) / n
    fewest = next(k for k in range(1, 64) if 2 * 0.5**k <= 0.05)
    return min(100.0, max(100 * (Z + Z_POWER) * error, 100 * fewest / n))


def answers(n: int = N, wrong: range = range(5), taught_wrong: range = range(0)) -> list[int]:
    """Scores of n questions: wrong on `wrong` and on `taught_wrong`, right elsewhere."""
    return [0 if i in wrong or i in taught_wrong else 1 for i in range(n)]


def write_run(
    root: Path,
    run_id: str,
    scores: dict[str, dict[str, list[int]]],
    limit: int | None = N,
    notes: dict[tuple[str, str], str] | None = None,
) -> Path:
    """A run directory of ok combinations: scores[model][benchmark] is each question's score
    (question i has index "q<i>", its own cluster), with its questions file and the interval the
    worker records (or, for `notes`, none and the worker's why)."""
    run_dir = root / run_id
    models = list(scores)
    benchmarks = list(dict.fromkeys(b for per in scores.values() for b in per))
    entries = []
    for model, per in scores.items():
        for bench, outcome in per.items():
            lines = [
                {"index": f"q{i}", "cluster": f"q{i}", "split": None, "prediction": "A",
                 "extracted": "A", "answer": "A" if right else "B", "score": float(right)}
                for i, right in enumerate(outcome)
            ]  # fmt: skip
            relative = f"h1/{model}/{bench}/{model}_{bench}_questions.jsonl"
            (run_dir / relative).parent.mkdir(parents=True, exist_ok=True)
            (run_dir / relative).write_text("".join(json.dumps(line) + "\n" for line in lines))
            note = (notes or {}).get((model, bench))
            entries.append({
                "host": "h1", "slot": "gpu0", "model": model, "benchmark": bench, "status": "ok",
                "reason": None, "seconds": 1.0, "samples": len(outcome),
                "scores": {"Overall": sum(outcome) / len(outcome)}, "primary_metric": "Overall",
                "primary_score": round(100 * sum(outcome) / len(outcome), 6),
                "primary_scale": 1.0, "scoring_note": None, "questions_file": relative,
                "primary_interval": None if note else primary_interval(lines, "mean"),
                "questions_note": note, "shards": [],
            })  # fmt: skip
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "summary.json").write_text(json.dumps({
        "run_id": run_id, "smoke": False, "limit": limit, "combinations": entries}))  # fmt: skip
    (run_dir / "run.json").write_text(json.dumps({
        "run_id": run_id,
        "inputs": {"models": models, "benchmarks": benchmarks, "limit": limit, "smoke": False},
    }))  # fmt: skip
    return run_dir


def rows_by(markdown: str, heading: str, key: int = 1) -> dict[tuple[str, ...], list[str]]:
    return {tuple(r[:key]): r[key:] for r in table(markdown, heading)}


STRONG = {b: answers() for b in "ABCDE"}
# Taught wrong answers on C and D (15 questions the strong model gets right) and on 6 of E's.
WEAK = STRONG | {
    "C": answers(taught_wrong=range(10, 25)),
    "D": answers(taught_wrong=range(10, 25)),
    "E": answers(taught_wrong=range(10, 16)),
}


def test_weak_model_differs_where_taught_wrong_and_only_there(tmp_path: Path, refs: dict) -> None:
    run_dir = write_run(tmp_path, "pair", {"strong": STRONG, "weak": WEAK})
    md = build_reports(run_dir, refs)["report.md"]
    rows = rows_by(md, "Model against model")
    # Holm by hand: the p-values in order (C = D < E < A = B) times 5, 4, 3, 2, 1, kept monotone.
    p_c, p_e = exact_mcnemar(0, 15), exact_mcnemar(0, 6)
    holm_c, holm_e = min(1.0, 5 * p_c), min(1.0, max(5 * p_c, 3 * p_e))
    assert holm_c < 0.05 < holm_e and p_e < 0.05  # E differs alone, not among five
    # weak - strong on C: 15 of 40 discordant, all the strong model's way; the sign test's
    # interval is the Clopper-Pearson bound of 0 of 15 (1 - 0.025^(1/15)) turned into points.
    upper = 1 - 0.025 ** (1 / 15)
    for bench in "CD":
        assert rows[(bench,)] == [
            "weak", "strong", f"-37.5 [-37.5, {100 * 15 / 40 * (2 * upper - 1):.1f}]", "40",
            "<0.001", "<0.001", "differs"]  # fmt: skip
    e = rows[("E",)]
    assert e[3:6] == ["40", f"{p_e:.3f}", f"{holm_e:.3f}"]
    assert e[6] == (
        "no difference shown at this limit "
        f"(one test alone detects {detectable([-1.0] * 6 + [0.0] * 34):.1f} points)"
    )
    for bench in "AB":
        assert rows[(bench,)][2:] == [
            "+0.0 [0.0, 0.0]", "40", "1.000", "1.000",
            f"no difference shown at this limit (one test alone detects "
            f"{detectable([0.0] * 40):.1f} points)"]  # fmt: skip
    assert [b for (b,), r in rows.items() if r[-1] == "differs"] == ["C", "D"]
    # The smallest detectable difference per benchmark: from the two models' disagreement.
    found = rows_by(md, "Smallest detectable difference")
    assert found[("C",)] == [
        "40", f"{detectable([-1.0] * 15 + [0.0] * 25):.1f}",
        "observed: weak vs strong"]  # fmt: skip
    assert found[("A",)][1] == f"{detectable([0.0] * 40):.1f}"


def test_one_model_states_the_worst_case_and_no_model_table(tmp_path: Path, refs: dict) -> None:
    run_dir = write_run(tmp_path, "one", {"strong": {"A": answers(wrong=range(10))}})
    md = build_reports(run_dir, refs)["report.md"]
    assert "## Model against model" not in md
    # Alone: two runs that disagree on half the questions, d = +-1 on 20 of 40 -> sqrt(0.5/n).
    worst = 100 * (Z + Z_POWER) * math.sqrt(0.5 / N)
    assert rows_by(md, "Smallest detectable difference")[("A",)] == [
        "40", f"{worst:.1f}",
        "worst case: two runs that disagree on half the questions"]  # fmt: skip
    assert rows_by(md, "Primary scores (0-100)")[("A",)] == [f"75.00 {plus_minus(30, N)}"]
    assert rows_by(md, "Score intervals (95%)", 2)[("A", "strong")] == [
        f"75.00 {bounds(30, N)}", "Wilson", "40", "40"]  # fmt: skip
    assert f"at 40 questions a 0/1 score's 95% interval is about {plus_minus(20, N)} points" in md


def compare_rows(tmp_path: Path, refs: dict, before: dict, after: dict) -> tuple[str, dict]:
    write_run(tmp_path, "before", before)
    run_dir = write_run(tmp_path, "after", after, limit=len(next(iter(after.values()))["A"]))
    md = build_reports(run_dir, refs, compare_to="before")["report.md"]
    return md, rows_by(md, "Comparison with run before", 2)


def test_two_runs_of_identical_answers_mark_nothing_changed(tmp_path: Path, refs: dict) -> None:
    same = {"strong": STRONG, "weak": WEAK}
    md, rows = compare_rows(tmp_path, refs, same, same)
    assert len(rows) == 10 and {r[-1] for r in rows.values()} == {""}
    assert "0 of 10 combinations changed" in md
    assert rows[("weak", "C")][3:7] == ["+0.0 [0.0, 0.0]", "40", "1.000", "1.000"]


def test_compare_marks_changed_where_the_paired_test_finds_it(tmp_path: Path, refs: dict) -> None:
    # The same model, now taught wrong answers on C and D, rerun at 20 questions: compared on
    # the 20 both runs answered (10 of them now wrong on C and D).
    now = {b: v[:20] for b, v in WEAK.items()}
    md, rows = compare_rows(tmp_path, refs, {"m": STRONG}, {"m": now})
    p = exact_mcnemar(0, 10)
    assert min(1.0, 5 * p) < 0.05
    for bench in "CD":
        assert rows[("m", bench)][3:] == [
            "-50.0 [-50.0, " + f"{100 * 10 / 20 * (2 * (1 - 0.025 ** (1 / 10)) - 1):.1f}]",
            "20 in common (20 in this run, 40 in before)", f"{p:.3f}", f"{5 * p:.3f}",
            "differs", "CHANGED"]  # fmt: skip
    # E's six taught questions lie past the 20th: nothing to see on the questions compared.
    for bench in "ABE":
        assert rows[("m", bench)][-1] == ""
        assert rows[("m", bench)][-2].startswith("no difference shown at this limit")
    assert "2 of 5 combinations changed" in md


def test_references_read_against_the_interval(tmp_path: Path) -> None:
    wide = answers(n=20, wrong=range(5))
    run_dir = write_run(tmp_path, "refs", {"m": {
        "A": answers(n=200, wrong=range(50)), "B": answers(n=200, wrong=range(50)), "C": wide,
    }})  # fmt: skip
    figure = {"name": "F", "source": "S", "split": "val"}
    refs = {
        "reference_scores_figures": {
            "a": figure | {"scores": {"m": 72.0}},
            "b": figure | {"scores": {"m": 60.0}},
            "c": figure | {"scores": {"m": 40.0}},
        },
        "reference_scores_benchmark_map": {"A": "a", "B": "b", "C": "c"},
    }
    low, high = wilson(150, 200)
    assert low < 72.0 < high and low > 60.0 and (high - low) / 2 <= 10
    rows = rows_by(build_reports(run_dir, refs)["report.md"], "Comparison with published scores", 2)
    assert rows[("m", "A")][:4] == [f"75.00 {bounds(150, 200)}", "72.00", "+3.00", "consistent"]
    assert rows[("m", "B")][:4] == [
        f"75.00 {bounds(150, 200)}", "60.00", "+15.00", "outside our interval"]  # fmt: skip
    # 20 questions: wider than ±10 points, whatever the gap.
    assert rows[("m", "C")][:4] == [
        f"75.00 {bounds(15, 20)}", "40.00", "", "too few questions to tell"]  # fmt: skip


def test_references_on_the_published_definition_or_marked(tmp_path: Path, refs: dict) -> None:
    # Two models, 400 questions each of POPE (narrow intervals) and VizWiz.
    run_dir = write_run(tmp_path, "defs", {
        m: {"POPE": answers(n=400, wrong=range(40)), "VizWiz": answers(n=400, wrong=range(100))}
        for m in ("llava_v1.5_7b", "llava_v1.5_13b")
    })  # fmt: skip
    summary = json.loads((run_dir / "summary.json").read_text())
    splits = {"split=random|Overall": 92.0, "split=popular|Overall": 88.0,
              "split=adversarial|Overall": 83.0}  # fmt: skip
    for entry in summary["combinations"]:
        if entry["benchmark"] == "POPE":
            # As POPE_rating reports it: the pooled F1 (primary) and, here for the 7B only
            # (the 13B's first questions were all of one split), each split's F1.
            own = splits if entry["model"] == "llava_v1.5_7b" else {"split=random|Overall": 90.0}
            entry.update(primary_metric="split=Overall|Overall", primary_scale=100.0,
                         scores={"split=Overall|Overall": 90.0, **own})  # fmt: skip
    (run_dir / "summary.json").write_text(json.dumps(summary))
    rows = rows_by(build_reports(run_dir, refs)["report.md"], "Comparison with published scores", 2)
    # The published 85.9 is the mean of the three splits' F1s: ours the same, (92+88+83)/3,
    # with no interval of its own, and the gap shown.
    assert rows[("llava_v1.5_7b", "POPE")][:4] == [
        "87.67 (mean of the random, popular and adversarial splits' F1s)", "85.90", "+1.77",
        "no interval: the worker's interval is of the primary metric, not of this mean",
    ]  # fmt: skip
    # Without every split's F1 there is no figure of that definition: not comparable, no gap.
    assert rows[("llava_v1.5_13b", "POPE")][:4] == [
        f"90.00 {bounds(360, 400)}", "85.90", "",
        # (Markdown escapes VLMEvalKit's "|".)
        "not comparable: this run's scores have no split=popular\\|Overall, "
        "split=adversarial\\|Overall, which the published definition needs"]  # fmt: skip
    # VizWiz's published figure is of its test-dev split, ours of its validation split.
    assert rows[("llava_v1.5_7b", "VizWiz")][:4] == [
        f"75.00 {bounds(300, 400)}", "50.00", "",
        "not comparable: published on VizWiz's test-dev split, ours on its validation split",
    ]  # fmt: skip


def test_pooled_score_over_the_benchmarks_with_intervals(tmp_path: Path, refs: dict) -> None:
    run_dir = write_run(
        tmp_path, "pooled",
        {"m": {"A": answers(wrong=range(10)), "B": answers(wrong=range(20)), "C": answers()}},
        notes={("m", "C"): "the questions do not give back the figure"},
    )  # fmt: skip
    md = build_reports(run_dir, refs)["report.md"]
    # The mean of 75 and 50; each benchmark's standard error is its Wilson half-width over z,
    # the mean's the root of their squares' sum over 2, and its interval +-z of that.
    half = math.sqrt(sum(((h - lo) / 2) ** 2 for lo, h in (wilson(30, N), wilson(20, N)))) / 2
    assert rows_by(md, "Pooled score per model")[("m",)] == [
        f"62.50 ±{half:.1f} [{62.5 - half:.1f}, {62.5 + half:.1f}]", "2 of 3", "C"]  # fmt: skip
    assert rows_by(md, "Primary scores (0-100)")[("C",)] == [
        "87.50 (no interval: the questions do not give back the figure)"]  # fmt: skip


def test_summary_names_the_questions_file_from_the_run_directory() -> None:
    plan = {"run_id": "r", "smoke": False, "limit": 10, "models": ["m"], "benchmarks": ["B"],
            "units": [{"host": "h1", "slot": "gpu0", "model": "m",
                       "benchmarks": [{"name": "B"}]}]}  # fmt: skip
    record = {"run_id": "r", "host": "h1", "slot": "gpu0", "model": "m", "benchmark": "B",
              "status": "ok", "reason": None, "seconds": 1.0, "samples": 10,
              "scores": {"Overall": 0.5}, "primary_metric": "Overall", "primary_score": 50.0,
              "primary_scale": 1.0, "scoring_note": None, "questions_file": "m_B_questions.jsonl",
              "primary_interval": {"low": 23.7, "high": 76.3}, "questions_note": None}  # fmt: skip
    entry = summarize(plan, [record])["combinations"][0]
    assert entry["questions_file"] == "h1/m/B/m_B_questions.jsonl"
    assert entry["primary_interval"] == record["primary_interval"]


def test_the_threshold_option_is_gone(results: Path) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([str(results / CURRENT), "--threshold", "5"])
    assert exit_.value.code == 2


def test_overview_names_the_limits_a_precision_chose(results: Path, refs: dict) -> None:
    run_dir = results / CURRENT
    plan = json.loads((run_dir / "plan.json").read_text())
    plan["limits"] = {b: 381 for b in plan.get("benchmarks", [])} | {"POPE": 381, "OCRBench": None}
    (run_dir / "plan.json").write_text(json.dumps(plan))
    info = json.loads((run_dir / "run.json").read_text())
    info["inputs"] = {k: v for k, v in info["inputs"].items() if k != "limit"} | {"precision": 5}
    (run_dir / "run.json").write_text(json.dumps(info))
    md = build_reports(run_dir, refs)["report.md"]
    line = next(x for x in md.splitlines() if x.startswith("- Sample limits per benchmark:"))
    assert "precision=5" in line and "at most ±5 points" in line
    assert "POPE 381" in line and "OCRBench whole" in line


def test_a_model_backed_by_less_than_itself_says_so_in_the_overview(
    results: Path, refs: dict
) -> None:
    catalogue = yaml.safe_load(CATALOGUE_FILE.read_text())
    md = build_reports(results / CURRENT, refs, catalogue=catalogue)["report.md"]
    assert "What backs" not in md  # the LLaVA models carry no such note
    catalogue["catalogue_models"]["llava_v1.5_7b"]["verified_here"] = catalogue["catalogue_models"][
        "InternVL2-8B"
    ]["verified_here"]
    md = build_reports(results / CURRENT, refs, catalogue=catalogue)["report.md"]
    assert (
        "- What backs llava_v1.5_7b in this project: not InternVL's own code or weights: only "
        "a stand-in of its hub repo"
    ) in md
    assert "What backs llava_v1.5_13b" not in md
