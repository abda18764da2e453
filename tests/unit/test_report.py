"""Reports of a run directory, on the fixture runs in tests/fixtures/results/."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import eval_report
import pytest
import yaml
from eval_report import build_reports, label_versions, load_references, main, write_reports
from eval_report_data import ReportError, compare_runs, load_run, percent

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "results"
CURRENT, PREVIOUS = "20261127T020000Z", "20261126T180000Z"
REFERENCES_FILE = Path(__file__).resolve().parents[2] / "playbooks/vars/reference_scores.yml"
# The seed benchmarks, from the catalogue (test_catalogue checks it against the seed list).
SEED_BENCHMARKS = yaml.safe_load(
    (Path(__file__).resolve().parents[2] / "playbooks/vars/catalogue.yml").read_text()
)["catalogue_default_benchmarks"]
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
    return build_reports(results / CURRENT, refs, compare_to=PREVIOUS, threshold=5)


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
    assert got == EXPECTED


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
    rows = {r[0]: r[1:] for r in table(files["report.md"], "Score scales")}
    assert rows["OCRBench"][:2] == ["Final Score", "0-3"]
    assert rows["MMBench_DEV_EN"][:2] == ["Overall", "0-1"]
    assert rows["POPE"][:2] == ["Overall", "0-100"]


def test_totals_times_and_failures(files: dict[str, str]) -> None:
    md = files["report.md"]
    assert table(md, "Totals") == [["ok", "8"], ["failed", "1"], ["missing", "1"], ["total", "10"]]
    # 7B: five combinations back to back on one GPU (30+37.5+45+52.5+60 s).
    # 13B: 148.5 s on gpu-01 in parallel with a 42 s failure on the CPU host.
    assert table(md, "Time per model") == [
        ["llava_v1.5_7b", "5", "5", "3m45s", "3m45s"],
        ["llava_v1.5_13b", "5", "3", "2m28s", "3m10s"],
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
    assert rows["llava_v1.5_13b"] == ["llava_v1.5_13b", "5", "3", "2m28s", "3m10s"]


def test_failure_log_paths_exist(files: dict[str, str], results: Path) -> None:
    failed, missing = table(files["report.md"], "Failures")
    assert "CUDA out of memory" in (results / CURRENT / failed[5]).read_text()
    # A combination the worker never reached points at the slot's console log.
    assert "Killed" in (results / CURRENT / missing[5]).read_text()


def test_smoke_is_labelled_everywhere(files: dict[str, str]) -> None:
    assert files["report.md"].startswith("# [SMOKE] ")
    assert "SMOKE RUN:" in files["report.md"]
    assert "<title>[SMOKE] " in files["report.html"]
    assert '<div class="smoke">SMOKE RUN:' in files["report.html"]
    assert json.loads(files["manifest.json"])["smoke"] is True


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
                             "seconds", "status", "primary", "primary_score", "smoke"]  # fmt: skip
    # 18 metric values over the 8 ok combinations, one bare row each for the failed and missing.
    assert len(rows) == 20
    pope = [r for r in rows if (r["model"], r["benchmark"]) == ("llava_v1.5_13b", "POPE")]
    assert {r["metric"]: r["value"] for r in pope} == {
        "Overall": "66.67", "acc": "66.67", "precision": "50.0"}  # fmt: skip
    assert [r["primary"] for r in pope] == ["true", "false", "false"]
    assert [r["primary_score"] for r in pope] == ["66.67", "", ""]
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
    assert m["compared_with"] == {"run_id": PREVIOUS, "threshold_points": 5.0}
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


def test_compare_flags_changes_beyond_threshold(results: Path) -> None:
    now, then = load_run(results / CURRENT), load_run(results / PREVIOUS)
    deltas = {(d.model, d.benchmark): d for d in compare_runs(now, then, 5)}
    assert deltas[("llava_v1.5_13b", "POPE")].delta == pytest.approx(33.34)
    assert deltas[("llava_v1.5_13b", "POPE")].flagged
    assert deltas[("llava_v1.5_7b", "OCRBench")].delta == pytest.approx(66.67)
    assert deltas[("llava_v1.5_7b", "OCRBench")].flagged
    assert deltas[("llava_v1.5_7b", "TextVQA_VAL")].delta == pytest.approx(-2.0)
    assert not deltas[("llava_v1.5_7b", "TextVQA_VAL")].flagged
    assert not deltas[("llava_v1.5_7b", "MMBench_DEV_EN")].flagged
    # Status changes are flagged whatever the scores.
    assert deltas[("llava_v1.5_13b", "OCRBench")].flagged
    assert deltas[("llava_v1.5_7b", "SEEDBench_IMG")].status_before == "failed"
    assert deltas[("llava_v1.5_7b", "SEEDBench_IMG")].flagged
    lower = {(d.model, d.benchmark): d for d in compare_runs(now, then, 1.5)}
    assert lower[("llava_v1.5_7b", "TextVQA_VAL")].flagged  # 7B TextVQA, -2 points
    with pytest.raises(ReportError, match="threshold"):
        compare_runs(now, then, -1)


def test_compare_section_in_report(files: dict[str, str], results: Path, refs: dict) -> None:
    rows = {
        (r[0], r[1]): r[2:] for r in table(files["report.md"], f"Comparison with run {PREVIOUS}")
    }
    assert rows[("llava_v1.5_13b", "POPE")] == ["33.33", "66.67", "+33.34", "CHANGED"]
    assert rows[("llava_v1.5_7b", "OCRBench")] == ["0.00", "66.67", "+66.67", "CHANGED"]
    assert rows[("llava_v1.5_7b", "TextVQA_VAL")] == ["2.00", "0.00", "-2.00", ""]
    assert rows[("llava_v1.5_13b", "SEEDBench_IMG")] == ["66.67", "missing", "", "CHANGED"]
    assert "5 of 10 combinations changed" in files["report.md"]
    assert "Comparison with run" not in build_reports(results / CURRENT, refs)["report.md"]


def test_compare_to_unknown_run_names_the_runs_there(results: Path, refs: dict) -> None:
    with pytest.raises(ReportError, match=f"'nope'.*runs there: {PREVIOUS}, {CURRENT}"):
        build_reports(results / CURRENT, refs, compare_to="nope")


def test_reference_map_covers_only_known_figures(refs: dict) -> None:
    figures, mapping = refs["reference_scores_figures"], refs["reference_scores_benchmark_map"]
    assert set(mapping) <= set(SEED_BENCHMARKS)
    for figure in figures.values():
        assert figure["source"] and figure["split"] and figure["name"]
        assert set(figure["scores"]) == {"llava_v1.5_7b", "llava_v1.5_13b"}
    assert {figures[f]["source"].split(",")[0] for f in mapping.values()} == {
        "LLaVA repository", "VLMEvalKit v0.1 results tables (Jan 2024)"}  # fmt: skip
    # The published figures, as ../shared/reference-scores.md gives them.
    assert figures[mapping["MMBench_DEV_EN"]]["scores"] == {"llava_v1.5_7b": 64.3,
                                                             "llava_v1.5_13b": 67.7}  # fmt: skip
    assert figures[mapping["SEEDBench_IMG"]]["scores"]["llava_v1.5_7b"] == 65.6
    assert figures[mapping["HallusionBench"]]["scores"]["llava_v1.5_13b"] == 46.7
    assert figures[mapping["ScienceQA_VAL"]]["scores"]["llava_v1.5_13b"] == 72.0


def test_reference_section_names_figure_and_source(files: dict[str, str]) -> None:
    rows = {(r[0], r[1]): r[2:] for r in table(files["report.md"],
                                                 "Comparison with published scores")}  # fmt: skip
    ours, published, delta, figure, source, split = rows[("llava_v1.5_7b", "MMBench_DEV_EN")]
    assert (ours, published, delta, figure) == ("33.33", "64.30", "-30.97", "MMBench")
    assert source.startswith("LLaVA repository, docs/MODEL_ZOO.md") and "dev" in split
    # SEEDBench_IMG compares with VLMEvalKit's image-only figure, not LLaVA's SEED (with video).
    assert rows[("llava_v1.5_7b", "SEEDBench_IMG")][1:4] == [
        "65.60", "+34.40", "SEEDBench_IMG"]  # fmt: skip
    assert rows[("llava_v1.5_13b", "SEEDBench_IMG")][0] == "no score"
    # OCRBench has no published LLaVA-1.5 figure in the sources: no row rather than a guess.
    assert not any(b == "OCRBench" for _m, b in rows)


def test_html_has_same_tables_and_embedded_heatmap(files: dict[str, str]) -> None:
    page = files["report.html"]
    assert 'src="data:image/png;base64,iVBORw0KGgo' in page
    assert "http://" not in page and "https://" not in page
    for cell in EXPECTED.values():
        assert f">{cell}</td>" in page
    assert "gpu-02/llava_v1.5_13b/OCRBench/worker.log" in page


def test_reports_are_deterministic(results: Path, refs: dict, files: dict[str, str]) -> None:
    again = build_reports(results / CURRENT, refs, compare_to=PREVIOUS, threshold=5)
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
