"""Checks of a run directory's reports against its summary.json, shared by the tests.

`check_reports(run_dir)` is what the smoke-run end-to-end test calls on the real run; the tests
below apply it to the fixture runs so that the checks themselves are exercised.
"""

from __future__ import annotations

import base64
import csv
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "results"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1800",
]


def md_table(markdown: str, heading: str) -> list[dict[str, str]]:
    """Rows of the first table under `## heading` in report.md, as dicts by column."""
    section = markdown.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    lines = [ln for ln in section.splitlines() if ln.startswith("|")]
    split = [
        [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", ln)[1:-1]] for ln in lines
    ]
    header, rows = split[0], split[2:]
    return [dict(zip(header, row, strict=True)) for row in rows]


# A cell of the score table: the score, the scales' note marker, and its interval's half-width
# or why it has none: "62.50 ±9.4", "62.50 * ±9.4", "62.50 (no interval: ...)"; a plain number
# (scores.csv) reads too.
SCORE_CELL = re.compile(
    r"(?P<score>-?\d+\.\d+)(?P<note> \*)?"
    r"(?: ±(?P<half>\d+\.\d+)| \(no interval: (?P<why>.*)\))?"
)


def score_cell(cell: str) -> re.Match[str] | None:
    """The parts of a score cell (None when it is not one: failed, missing, a plain word)."""
    return SCORE_CELL.fullmatch(cell.strip())


def check_report_md(run_dir: Path) -> None:
    """Every number in report.md's score table and totals equals summary.json's."""
    summary = json.loads((run_dir / "summary.json").read_text())
    entries = summary["combinations"] if isinstance(summary, dict) else summary
    md = (run_dir / "report.md").read_text()
    # The worker states each primary metric's full scale; the report shows it and the score.
    scales = {r["benchmark"]: r["raw scale"].split(", ") for r in md_table(md, "Score scales")}
    assert set(scales) <= {e["benchmark"] for e in entries}
    scores = {r["benchmark"]: r for r in md_table(md, "Primary scores (0-100)")}
    for e in entries:
        cell = scores[e["benchmark"]][e["model"]]
        if e["status"] == "ok":
            raw, scale = e["scores"][e["primary_metric"]], e["primary_scale"]
            assert f"0-{scale:g}" in scales[e["benchmark"]], (e, scales[e["benchmark"]])
            assert e["primary_score"] == pytest.approx(raw * 100 / scale), e
            parts = score_cell(cell)
            assert parts and parts["score"] == f"{e['primary_score']:.2f}", (e, cell)
            assert bool(parts["note"]) == bool(e.get("scoring_note")), (e, cell)
            interval = e.get("primary_interval")
            if interval:
                half = (interval["high"] - interval["low"]) / 2
                assert parts["half"] == f"{half:.1f}", (e, cell)
            else:
                assert parts["why"] == (e.get("questions_note") or "none recorded"), (e, cell)
        elif not any(
            o["status"] == "ok" and (o["model"], o["benchmark"]) == (e["model"], e["benchmark"])
            for o in entries
        ):
            # A combination planned on several hosts shows its ok score when one host has it.
            assert cell in (e["status"], "failed"), (e, cell)
    totals = {r["status"]: int(r["combinations"]) for r in md_table(md, "Totals")}
    for status in ("ok", "failed", "missing"):
        assert totals[status] == sum(1 for e in entries if e["status"] == status)
    assert totals["total"] == len(entries)
    failures = md_table(md, "Failures") if any(e["status"] != "ok" for e in entries) else []
    expected = {(e["model"], e["benchmark"], e["host"]) for e in entries if e["status"] != "ok"}
    assert {(f["model"], f["benchmark"], f["host"]) for f in failures} == expected
    if summary.get("smoke") if isinstance(summary, dict) else False:
        assert "SMOKE" in md.splitlines()[0]


def check_scores_csv(run_dir: Path) -> None:
    """scores.csv: the long-form columns, and every summary score as one row."""
    summary = json.loads((run_dir / "summary.json").read_text())
    entries = summary["combinations"] if isinstance(summary, dict) else summary
    with (run_dir / "scores.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0])[:9] == [
        "run",
        "host",
        "model",
        "benchmark",
        "metric",
        "value",
        "samples",
        "seconds",
        "status",
    ]
    for e in entries:
        mine = [
            r
            for r in rows
            if (r["host"], r["model"], r["benchmark"]) == (e["host"], e["model"], e["benchmark"])
        ]
        assert {r["status"] for r in mine} == {e["status"]}
        got = {r["metric"]: float(r["value"]) for r in mine if r["metric"]}
        assert got == pytest.approx({k: float(v) for k, v in (e.get("scores") or {}).items()})


def check_manifest(run_dir: Path) -> dict:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    for key in (
        "run_id",
        "smoke",
        "inputs",
        "started_at",
        "finished_at",
        "image",
        "versions",
        "lock_sha256",
        "project_commit",
        "ansible_version",
        "hosts",
    ):
        assert key in manifest, key
    for facts in manifest["hosts"].values():
        assert {"gpu_model", "gpu_count", "driver", "cuda", "image_id"} <= set(facts)
    return manifest


def check_html(run_dir: Path) -> bytes:
    """report.html is self-contained and embeds the heatmap; returns the heatmap PNG."""
    page = (run_dir / "report.html").read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page), "page loads from network"
    match = re.search(r'<img[^>]*id="heatmap"[^>]*src="data:image/png;base64,([^"]+)"', page)
    assert match, "no embedded heatmap image"
    png = base64.b64decode(match.group(1))
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000
    return png


def screenshot(html: Path, png: Path) -> Path:
    """Render a page in Debian's headless Chromium and write a screenshot."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is not installed (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                chromium,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                f"--screenshot={png}",
                html.resolve().as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    return png


def distinct_colours(png: Path) -> int:
    from matplotlib import image

    pixels = (image.imread(png)[..., :3] * 255).astype("uint8").reshape(-1, 3)
    return len({tuple(p) for p in pixels[::7]})


def check_reports(run_dir: Path, shot: Path | None = None) -> None:
    """All checks of a run's reports; with `shot`, also a browser screenshot there."""
    check_report_md(run_dir)
    check_scores_csv(run_dir)
    check_manifest(run_dir)
    check_html(run_dir)
    if shot is not None:
        screenshot(run_dir / "report.html", shot)
        assert distinct_colours(shot) > 50, "screenshot is (nearly) blank"


@pytest.fixture
def built_run(tmp_path: Path) -> Path:
    """A copy of the fixture runs with reports built through the command line entry point."""
    for run in FIXTURES.iterdir():
        if run.is_dir():
            shutil.copytree(run, tmp_path / run.name)
    repo = Path(__file__).resolve().parents[2]
    subprocess.run(
        [
            str(repo / ".venv" / "bin" / "python") if (repo / ".venv").is_dir() else "python3",
            "-m",
            "ansible_collections.vlmfleet.shared.plugins.plugin_utils.report",
            str(tmp_path / "20261127T020000Z"),
            "--compare-to",
            "20261126T180000Z",
        ],
        check=True,
        capture_output=True,
        text=True,
        # Outside Ansible the run contract is found where ansible.cfg's collections_path has it.
        env=os.environ | {"PYTHONPATH": str(repo / "plugins" / "collections")},
    )
    return tmp_path / "20261127T020000Z"


def test_fixture_reports_pass_the_checks(built_run: Path, tmp_path: Path) -> None:
    check_reports(built_run, tmp_path / "shot.png")


def test_checks_catch_a_number_that_differs_from_summary(built_run: Path) -> None:
    md = built_run / "report.md"
    text = md.read_text()
    assert "| POPE | 100.00 ±50.0 | 66.67 ±50.0 |" in text
    md.write_text(text.replace("| POPE | 100.00 ±50.0 | 66.67 ±50.0 |",
                               "| POPE | 100.00 ±50.0 | 66.00 ±50.0 |"))  # fmt: skip


def test_checks_catch_an_interval_that_differs_from_summary(built_run: Path) -> None:
    md = built_run / "report.md"
    md.write_text(md.read_text().replace("| POPE | 100.00 ±50.0 |", "| POPE | 100.00 ±5.0 |"))
    with pytest.raises(AssertionError):
        check_report_md(built_run)
    with pytest.raises(AssertionError):
        check_report_md(built_run)


def test_checks_catch_a_report_without_heatmap(built_run: Path) -> None:
    page = built_run / "report.html"
    page.write_text(re.sub(r'<img[^>]*id="heatmap"[^>]*>', "", page.read_text()))
    with pytest.raises(AssertionError, match="no embedded heatmap"):
        check_html(built_run)


def test_blank_page_screenshot_is_detected(tmp_path: Path) -> None:
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body></body></html>")
    shot = screenshot(blank, tmp_path / "blank.png")
    assert distinct_colours(shot) <= 2
