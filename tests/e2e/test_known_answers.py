"""Scores checked against answers known in advance.

Two parts, both in the real image:

- The smoke matrix (both default models, all 20 default benchmarks) at limits 3 and 24 (24 = the
  whole synthetic set), once per limit over this machine's two inventory names (the session's
  fleet). The limit-3 run is also the full smoke matrix's end-to-end check (both hosts, records,
  logs, the token, the reports in a browser). For every ok
  combination the expected primary score is computed from its collected prediction file and
  the answer key (vlmfleet.smoke_data) by tests/scoring/published_metrics, and summary.json's
  ``primary_score``, scores.csv's ``primary_score`` column, and the "Primary scores (0-100)"
  tables of report.md and report.html must show exactly that number (at the precision each
  shows).
- VLMEvalKit's own evaluation of always-right, always-wrong and known-answer ("seen")
  prediction files for every default benchmark at 1, 7 and 24 questions
  (tests/e2e/in_image_scoring.py in the image): its raw primary key and value must be the scale
  the worker's normalisation expects, and the worker's ``vlmfleet.scores.primary_score`` must
  turn them into 100, 0 and the published metric's score. The worker's questions file must be
  there, its lines' statistic must be that primary score, each line's score the published
  metric's score of that question, and the interval must reach 100 (always right) or 0 (always
  wrong).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible_collections.vlmfleet.shared.plugins.plugin_utils.report import (
    build_reports,
    load_references,
)
from conftest import REPO
from scoring.check_run import combination_dir, expected_smoke_score, smoke_shapes
from scoring.published_metrics import PRIMARY, question_scores, read_predictions
from test_eval import HOSTS, TOKEN, Fleet, docker, run_containers, stdout
from test_report_checks import check_reports, md_table, score_cell
from vlmfleet.smoke_data import DEFAULT_QUESTIONS, synthetic_rows

pytestmark = pytest.mark.slow


CATALOGUE = yaml.safe_load((REPO / "playbooks" / "vars" / "catalogue.yml").read_text())
MODELS = CATALOGUE["catalogue_default_models"]
BENCHMARKS = CATALOGUE["catalogue_default_benchmarks"]
# The smoke matrix's runs: a part of the synthetic set and the whole of it. The limit-3 run
# keeps its containers for the full matrix's check of what they were given.
LIMITS = (3, 24)
KEEP_CONTAINERS = {3: "true"}
# VLMEvalKit's own figures are checked, in the image, at these numbers of questions.
IN_IMAGE_QUESTIONS = (1, 7, 24)
SCORES_HEADING = "Primary scores (0-100)"


# --- showing a number -----------------------------------------------------------------------


def shown_as(text: str, expected: float) -> bool:
    """Whether a rendered number (at least one decimal) is ``expected`` rounded to the decimals
    it shows: within half a unit of its last digit. A report's score cell carries more after
    the number (test_report_checks.score_cell: "62.50 ±9.4", a " *" note marker, or why there
    is no interval); only the number is the score."""
    match = score_cell(text)
    if not match:
        return False
    score = match["score"]
    decimals = len(score.split(".")[1])
    return abs(float(score) - expected) <= 0.5 * 10**-decimals + 1e-9


def json_number_is(value: Any, expected: float) -> bool:
    """Whether a JSON number is ``expected`` to the decimals it carries, two at least (summary
    numbers are rounded to two decimals or more; 100.0 must not pass for 99.97)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    text = repr(float(value))
    decimals = len(text.split(".")[1]) if "." in text and "e" not in text else 15
    return abs(value - expected) <= max(0.5 * 10 ** -max(decimals, 2), 1e-9)


# --- reading report.html --------------------------------------------------------------------


class _HeadedTables(HTMLParser):
    """The first table under each <h2> of a page, as rows of cell texts."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._heading: str | None = None
        self._in_h2 = False
        self._table: list[list[str]] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "h2":
            self._in_h2, self._heading = True, ""
        elif tag == "table" and self._heading is not None and self._heading not in self.tables:
            self._table = []
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "h2":
            self._in_h2 = False
        elif tag in ("td", "th") and self._cell is not None and self._table is not None:
            self._table[-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table" and self._table is not None and self._heading is not None:
            self.tables[self._heading] = self._table
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._in_h2:
            self._heading = (self._heading or "") + data
        elif self._cell is not None:
            self._cell.append(data)


def html_table(page: str, heading: str) -> list[dict[str, str]]:
    """Rows of the first table under ``<h2>heading</h2>``, as dicts by column."""
    parser = _HeadedTables()
    parser.feed(page)
    if heading not in parser.tables:
        raise AssertionError(f"report.html has no table under {heading!r}")
    header, *rows = parser.tables[heading]
    return [dict(zip(header, row, strict=True)) for row in rows]


# --- one smoke run per limit ----------------------------------------------------------------


@dataclass
class Combination:
    host: str
    model: str
    benchmark: str
    entry: dict[str, Any]  # summary.json's
    record: dict[str, Any]  # the collected status.json
    expected: float  # published_metrics' primary score of its prediction file


@dataclass
class KnownRun:
    limit: int
    run_dir: Path
    summary: dict[str, Any]
    output: str
    rc: int
    wall: float
    # Where results/latest pointed right after this run (later runs move it).
    latest: Path
    ok: list[Combination] = field(default_factory=list)
    # (model, benchmark) -> why its prediction file could not be scored
    unscorable: dict[tuple[str, str], str] = field(default_factory=dict)


@pytest.fixture(scope="module")
def known_runs() -> dict[int, KnownRun]:
    """The module's runs by limit, each made (or found) once."""
    return {}


def known_run_at(fleet: Fleet, runs: dict[int, KnownRun], limit: int) -> KnownRun:
    if limit not in runs:
        runs[limit] = make_known_run(fleet, limit)
    return runs[limit]


@pytest.fixture(scope="module", params=LIMITS, ids=[f"limit{n}" for n in LIMITS])
def known_run(
    request: pytest.FixtureRequest, fleet: Fleet, known_runs: dict[int, KnownRun]
) -> KnownRun:
    return known_run_at(fleet, known_runs, request.param)


def make_known_run(fleet: Fleet, limit: int) -> KnownRun:
    run_id = f"e2e-known-answers-{limit}"
    started = time.monotonic()
    r = fleet.eval(
        smoke="true",
        limit=str(limit),
        run_id=run_id,
        eval_run_keep_containers=KEEP_CONTAINERS.get(limit, "false"),
    )
    wall = time.monotonic() - started
    out = stdout(r)
    run_dir = fleet.results / run_id
    if not (run_dir / "summary.json").is_file():
        pytest.fail(f"eval.yml wrote no summary:\n{out[-5000:]}")
    latest = (fleet.results / "latest").resolve()
    run = KnownRun(limit, run_dir, fleet.summary(run_id), out, r.rc, wall, latest)
    for entry in run.summary["combinations"]:
        if entry["status"] != "ok":
            continue
        try:
            record, expected = expected_smoke_score(run_dir, entry, limit)
        except (OSError, ValueError, KeyError, AssertionError) as err:
            run.unscorable[(entry["model"], entry["benchmark"])] = f"{type(err).__name__}: {err}"
            continue
        run.ok.append(
            Combination(entry["host"], entry["model"], entry["benchmark"], entry, record, expected)
        )
    return run


def describe(c: Combination, shown: Any) -> str:
    raw = c.record.get("scores", {}).get(c.record.get("primary_metric"))
    return (
        f"{c.model}/{c.benchmark}: published metric {PRIMARY[c.benchmark].name} gives "
        f"{c.expected!r}, shown {shown!r} (VLMEvalKit {c.record.get('primary_metric')!r} = {raw!r})"
    )


def test_smoke_full_matrix_over_two_hosts(
    fleet: Fleet, known_runs: dict[int, KnownRun], tmp_path: Path
) -> None:
    run = known_run_at(fleet, known_runs, 3)
    run_id, out, wall = run.run_dir.name, run.output, run.wall
    assert run.rc == 0, out[-5000:]

    summary = fleet.summary(run_id)
    assert summary["totals"] == {"ok": 40, "failed": 0, "missing": 0, "total": 40}
    assert summary["smoke"] is True and summary["limit"] == 3
    pairs = {(c["model"], c["benchmark"]) for c in summary["combinations"]}
    assert pairs == {
        (m, b)
        for m in CATALOGUE["catalogue_default_models"]
        for b in CATALOGUE["catalogue_default_benchmarks"]
    }
    plan = json.loads((fleet.results / run_id / "plan.json").read_text())
    # Both hosts work, and each model is loaded once per slot it runs on.
    assert {u["host"] for u in plan["units"]} == set(HOSTS)
    assert len({(u["host"], u["slot"], u["model"]) for u in plan["units"]}) == len(plan["units"])
    for c in summary["combinations"]:
        assert c["samples"] == 3, c
        record = fleet.results / run_id / c["host"] / c["model"] / c["benchmark"] / "status.json"
        status = json.loads(record.read_text())
        assert status["status"] == "ok" and status["smoke"] is True
        assert set(status["phase_seconds"]) == {"prepare", "infer", "predictions", "evaluate"}
        # A worker prepares the next benchmark and evaluates the previous while one generates;
        # each combination's log still holds its own lines and no other combination's.
        name = f"{c['model']}/{c['benchmark']}"
        log_text = (record.parent / "worker.log").read_text()
        assert f"ok {name} in" in log_text
        assert set(re.findall(r"(?:running|ok|failed) ([\w.-]+/[\w.-]+)", log_text)) == {name}
        # Results of the two hosts are kept apart: each record sits in its own host's tree.
        assert (fleet.host_dir(c["host"], run_id) / c["model"] / c["benchmark"]).is_dir()
    for host in HOSTS:
        info = json.loads((fleet.results / run_id / host / "host.json").read_text())
        assert info["image_labels"]["io.vlm-eval.versions.transformers"] == "4.37.2"
    assert run.latest == (fleet.results / run_id).resolve()
    stored = json.loads((fleet.results / run_id / "run.json").read_text())
    assert stored["finished_at"] and stored["inputs"]["limit"] == 3

    # The token reached the workers only as a mounted file.
    containers = run_containers(run_id)
    assert len(containers) == len({(u["host"], u["slot"]) for u in plan["units"]})
    for c in containers:
        assert TOKEN not in docker("inspect", c)
    assert TOKEN not in out
    assert not any(
        TOKEN in p.read_text(errors="replace")
        for p in (fleet.results / run_id).rglob("*")
        if p.is_file()
    )
    docker("rm", "-f", *containers)
    # The run's reports agree with its summary and render in a real browser.
    check_reports(fleet.results / run_id, tmp_path / "report.png")
    loads = len(plan["units"])
    print(f"\nsmoke 40 combinations, limit 3: {wall:.0f} s wall, {loads} model loads")


def test_the_matrix_runs_and_every_prediction_file_is_scored(known_run: KnownRun) -> None:
    totals = known_run.summary["totals"]
    failed = [
        f"{e['model']}/{e['benchmark']}: {e['status']} {e['reason']}"
        for e in known_run.summary["combinations"]
        if e["status"] != "ok"
    ]
    assert not failed, "\n".join(failed) + "\n" + known_run.output[-3000:]
    assert totals == {"ok": 40, "failed": 0, "missing": 0, "total": 40}
    assert known_run.summary["smoke"] is True and known_run.summary["limit"] == known_run.limit
    assert not known_run.unscorable, known_run.unscorable
    assert len(known_run.ok) == 40
    print(f"\nlimit {known_run.limit}: published primary scores")
    for c in known_run.ok:
        print(f"  {describe(c, c.entry.get('primary_score'))}")


def test_summary_primary_score_is_the_published_score(known_run: KnownRun) -> None:
    wrong = [
        describe(c, c.entry.get("primary_score", "<no primary_score>"))
        for c in known_run.ok
        if not json_number_is(c.entry.get("primary_score"), c.expected)
    ]
    assert not wrong, f"{len(wrong)} of {len(known_run.ok)}:\n" + "\n".join(wrong)


def test_scores_csv_shows_the_published_score(known_run: KnownRun) -> None:
    with (known_run.run_dir / "scores.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and "primary_score" in rows[0], (
        f"scores.csv has no primary_score column: {rows[:1]}"
    )
    wrong = []
    for c in known_run.ok:
        mine = [
            r["primary_score"]
            for r in rows
            if (r["host"], r["model"], r["benchmark"]) == (c.host, c.model, c.benchmark)
        ]
        cells = [v for v in mine if v != ""]
        if not cells or not all(shown_as(v, c.expected) for v in cells):
            wrong.append(describe(c, cells))
    assert not wrong, f"{len(wrong)} of {len(known_run.ok)}:\n" + "\n".join(wrong)


def _table_shows(table: list[dict[str, str]], known_run: KnownRun, source: str) -> None:
    by_benchmark = {row["benchmark"]: row for row in table}
    wrong = []
    for c in known_run.ok:
        cell = by_benchmark.get(c.benchmark, {}).get(c.model)
        if cell is None or not shown_as(cell, c.expected):
            wrong.append(describe(c, cell))
    assert not wrong, f"{source}: {len(wrong)} of {len(known_run.ok)}:\n" + "\n".join(wrong)


def test_report_md_shows_the_published_score(known_run: KnownRun) -> None:
    markdown = (known_run.run_dir / "report.md").read_text()
    _table_shows(md_table(markdown, SCORES_HEADING), known_run, "report.md")


def test_report_html_shows_the_published_score(known_run: KnownRun) -> None:
    page = (known_run.run_dir / "report.html").read_text()
    _table_shows(html_table(page, SCORES_HEADING), known_run, "report.html")


def test_questions_files_give_the_primary_score_and_the_published_question_scores(
    known_run: KnownRun,
) -> None:
    """Every ok combination's questions file: its lines' statistic is the record's primary
    score, each line's score the published metric's score of that question, and the record
    has an interval around its score."""
    wrong = []
    for c in known_run.ok:
        where = combination_dir(known_run.run_dir, c.entry)
        name = c.benchmark
        key = synthetic_rows(name, smoke_shapes()[name], max(DEFAULT_QUESTIONS, known_run.limit))
        predicted = read_predictions(where / c.record["prediction_file"])
        case = {
            "benchmark": name,
            "questions": known_run.limit,
            "answers": c.model,
            "questions_file": c.record.get("questions_file"),
            "questions_note": c.record.get("questions_note"),
            "primary_interval": c.record.get("primary_interval"),
            "vlmfleet_primary_score": c.record.get("primary_score"),
            "published_questions": question_scores(name, key, predicted),
        }
        if case["questions_file"]:
            text = (where / case["questions_file"]).read_text(encoding="utf-8")
            case["question_lines"] = [json.loads(x) for x in text.splitlines()]
        wrong += question_problems(case)
    assert not wrong, f"{len(wrong)} of {len(known_run.ok)}:\n" + "\n".join(wrong)


# --- VLMEvalKit's own scale, in the image ---------------------------------------------------

IN_IMAGE_SCRIPT = "tests/e2e/in_image_scoring.py"
IN_IMAGE_MARKER = "IN_IMAGE_SCORE "
# VLMEvalKit's primary key per benchmark (ms-vlmeval 0.0.20, exact matching, the synthetic
# data's splits) and what it reads when every question is right; always wrong reads 0.
FRACTION, PERCENT = 1.0, 100.0
RAW_PRIMARY: dict[str, tuple[str, float | None]] = {
    "MMBench_DEV_EN": ("split=dev|Overall", FRACTION),
    "MMBench_DEV_KO": ("split=dev|Overall", FRACTION),
    "ScienceQA_VAL": ("split=val|Overall", FRACTION),
    "VisOnlyQA-VLMEvalKit": ("split=real|Overall", FRACTION),
    "BLINK": ("split=val|Overall", FRACTION),
    # No split column: report_primary_metric derives "Overall Acc" = 100 x the fraction.
    "SEEDBench_IMG": ("Overall Acc", PERCENT),
    "SEEDBench_IMG_KO": ("Overall Acc", PERCENT),
    "AI2D_TEST": ("Overall Acc", PERCENT),
    "MMStar": ("Overall Acc", PERCENT),
    "RealWorldQA": ("Overall Acc", PERCENT),
    "POPE": ("split=Overall|Overall", PERCENT),  # F1
    "HallusionBench": ("split=Overall|aAcc", PERCENT),
    "TextVQA_VAL": ("Overall", PERCENT),
    "VizWiz": ("Overall", PERCENT),
    "DocVQA_VAL": ("Overall", PERCENT),
    "InfoVQA_VAL": ("Overall", PERCENT),
    "ChartQA_TEST": ("Overall", PERCENT),
    "GQA_TestDev_Balanced": ("Overall", PERCENT),
    # A hit count: all right reads the number of questions.
    "OCRBench": ("Final Score", None),
}


def raw_primary(benchmark: str, questions: int) -> tuple[str, float]:
    """VLMEvalKit's primary key and its all-right value for ``questions`` synthetic questions."""
    if benchmark == "MMMU_DEV_VAL":
        # Rows alternate dev/validation; the validation split wins once there is one.
        return ("split=validation|Overall" if questions > 1 else "split=dev|Overall", FRACTION)
    key, full = RAW_PRIMARY[benchmark]
    return key, float(questions) if full is None else full


# The statistic of its questions that each default benchmark's primary metric is.
F1_YES_BENCHMARKS = ("POPE",)


def statistic_of(benchmark: str, lines: list[dict[str, Any]]) -> float:
    """The primary figure (0-100) the question lines give, computed here: POPE's F1 of "Yes"
    (2TP / (2TP + FP + FN), 0 without a true positive), else the mean score."""
    if benchmark in F1_YES_BENCHMARKS:
        tp = sum(x["answer"] == "Yes" and x["extracted"] == "Yes" for x in lines)
        errors = sum((x["answer"] == "Yes") != (x["extracted"] == "Yes") for x in lines)
        return 100.0 * 2 * tp / (2 * tp + errors) if tp else 0.0
    return 100.0 * sum(x["score"] for x in lines) / len(lines)


def question_problems(r: dict[str, Any]) -> list[str]:
    """What is wrong with one in-image case's questions file, its statistic, its lines' scores
    against the published metric's, and its interval."""
    case = f"{r['benchmark']} n={r['questions']} {r['answers']}"
    lines = r.get("question_lines")
    if not r.get("questions_file") or not lines:
        return [f"{case}: no questions file ({r.get('questions_note')!r})"]
    problems = []
    if r.get("questions_note") is not None or r.get("primary_interval") is None:
        problems.append(f"{case}: no interval: {r.get('questions_note')!r}")
    figure = statistic_of(r["benchmark"], lines)
    if abs(figure - r["vlmfleet_primary_score"]) > 1e-6:
        problems.append(f"{case}: lines give {figure!r}, primary {r['vlmfleet_primary_score']!r}")
    published = r["published_questions"]
    differing = [
        f"{x['index']}: {x['score']!r} vs {published[x['index']]!r}"
        for x in lines
        if x["index"] in published and abs(x["score"] - published[x["index"]]) > 1e-9
    ]
    if differing:
        problems.append(f"{case}: line scores differ from the published: {differing[:5]}")
    if not {x["index"] for x in lines} <= set(published):
        problems.append(f"{case}: lines of questions not asked: {[x['index'] for x in lines]}")
    if r["benchmark"] != "MMMU_DEV_VAL" and len(lines) != len(published):
        problems.append(f"{case}: {len(lines)} lines for {len(published)} questions")
    interval = r.get("primary_interval") or {}
    if r["answers"] == "right" and interval.get("high") != pytest.approx(100.0):
        problems.append(f"{case}: interval {interval!r} does not reach 100")
    if r["answers"] == "wrong" and interval.get("low") != pytest.approx(0.0):
        problems.append(f"{case}: interval {interval!r} does not reach 0")
    return problems


def test_vlmevalkit_scales_of_right_and_wrong_answers(run_in_image: Callable[..., Any]) -> None:
    proc = run_in_image(
        "python",
        f"/src/{IN_IMAGE_SCRIPT}",
        "--questions",
        *[str(n) for n in IN_IMAGE_QUESTIONS],
        volumes=(
            f"{REPO / 'docker' / 'transformers-4.37' / 'src'}:/opt/vlm-image/src:ro",
            f"{REPO / 'tests'}:/src/tests:ro",
        ),
        env=("PYTHONPATH=/src/tests",),
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    records = [
        json.loads(line[len(IN_IMAGE_MARKER) :])
        for line in proc.stdout.splitlines()
        if line.startswith(IN_IMAGE_MARKER)
    ]
    assert {(r["benchmark"], r["questions"], r["answers"]) for r in records} == {
        (b, n, a)
        for b in BENCHMARKS
        for n in IN_IMAGE_QUESTIONS
        for a in ("right", "wrong", "seen")
    }
    # The worker's normalisation is there once its module is: then it must read 100 and 0.
    has_scores = importlib.util.find_spec("vlmfleet.scores") is not None
    print("\nVLMEvalKit's raw primary metric (exact matching), always right / wrong / seen:")
    wrong = []
    for r in sorted(records, key=lambda r: (BENCHMARKS.index(r["benchmark"]), r["questions"])):
        wrong += question_problems(r)
        if r["answers"] == "seen":
            # Graded: VLMEvalKit's figure is checked through the published metric's score.
            if r.get("vlmfleet_primary_score") != pytest.approx(r["published"], abs=1e-6):
                wrong.append(
                    f"{r['benchmark']} n={r['questions']} seen: vlmfleet.scores gives "
                    f"{r.get('vlmfleet_primary_score')!r}, published {r['published']!r}"
                )
            continue
        key, full = raw_primary(r["benchmark"], r["questions"])
        want = full if r["answers"] == "right" else 0.0
        percent = 100.0 if r["answers"] == "right" else 0.0
        print(
            f"  {r['benchmark']:22} n={r['questions']:<2} {r['answers']:5} {r['metric']!r} = "
            f"{r['value']!r} -> {r.get('vlmfleet_primary_score', r.get('vlmfleet_error'))!r}"
        )
        if (r["metric"], r["value"]) != (key, want):
            wrong.append(f"{r['benchmark']} n={r['questions']} {r['answers']}: {r['metric']!r}="
                         f"{r['value']!r}, expected {key!r}={want!r}")  # fmt: skip
        if r["published"] != percent:
            wrong.append(f"{r['benchmark']} n={r['questions']}: published {r['published']!r}")
        if "vlmfleet_error" in r:
            wrong.append(f"{r['benchmark']} n={r['questions']}: {r['vlmfleet_error']}")
        elif has_scores and r.get("vlmfleet_primary_score") != pytest.approx(percent):
            wrong.append(
                f"{r['benchmark']} n={r['questions']} {r['answers']}: vlmfleet.scores gives "
                f"{r.get('vlmfleet_primary_score')!r}, not {percent}"
            )
    assert not wrong, "\n".join(wrong)


# --- model against model ----------------------------------------------------------------------

PAIRS_HEADING = "Model against model"


def sign_test_p(only_a: int, only_b: int) -> float:
    """Two-sided exact binomial p of the discordant questions at 1/2: the probabilities of
    every split no likelier than the one seen."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    seen = math.comb(n, only_a)
    return min(1.0, sum(math.comb(n, k) for k in range(n + 1) if math.comb(n, k) <= seen) / 2**n)


def shown_p(text: str, expected: float) -> bool:
    return expected < 0.001 if text == "<0.001" else abs(float(text) - expected) <= 5e-4 + 1e-12


def questions_by_model(known_run: KnownRun) -> dict[tuple[str, str], list[dict[str, Any]]]:
    out = {}
    for c in known_run.ok:
        where = combination_dir(known_run.run_dir, c.entry)
        text = (where / c.record["questions_file"]).read_text(encoding="utf-8")
        out[(c.model, c.benchmark)] = [json.loads(x) for x in text.splitlines()]
    return out


def test_model_against_model_marks_only_what_the_answers_show(known_run: KnownRun) -> None:
    """The weak checkpoint (the first model, taught wrong answers to questions that ask for a
    number) against the strong one: no benchmark where both answered every question alike is
    marked; right/wrong benchmarks carry the exact sign test's p-value on their discordant
    questions; "differs" only where the Holm-adjusted p is below 0.05, in the direction the
    discordant questions go; and at the whole synthetic set the benchmarks where the weak
    checkpoint's wrong answers are too many for chance are marked."""
    weak, strong = MODELS[0], MODELS[1]
    rows = {
        r["benchmark"]: r
        for r in md_table((known_run.run_dir / "report.md").read_text(), PAIRS_HEADING)
    }
    lines = questions_by_model(known_run)
    wrong, marked = [], []
    for bench in BENCHMARKS:
        row = rows[bench]
        assert (row["model"], row["baseline"]) == (strong, weak), row
        a = {x["index"]: x for x in lines[(strong, bench)]}
        b = {x["index"]: x for x in lines[(weak, bench)]}
        common = [i for i in a if i in b]
        only_a = sum(a[i]["score"] > b[i]["score"] for i in common)
        only_b = sum(a[i]["score"] < b[i]["score"] for i in common)
        alike = all(a[i]["score"] == b[i]["score"] and a[i]["extracted"] == b[i]["extracted"]
                    for i in common)  # fmt: skip
        if row["questions"] != str(len(common)):
            wrong.append(f"{bench}: {row['questions']} questions shown, {len(common)} in common")
        if alike and row["verdict"] == "differs":
            wrong.append(f"{bench}: both answered alike, yet marked: {row}")
        binary = all(x["score"] in (0.0, 1.0) for x in (*a.values(), *b.values()))
        one_per_cluster = len({a[i]["cluster"] for i in common}) == len(common)
        if binary and one_per_cluster and bench not in F1_YES_BENCHMARKS:
            expected = sign_test_p(only_a, only_b)
            if not shown_p(row["p"], expected):
                wrong.append(f"{bench}: p {row['p']} shown, the exact sign test gives {expected}")
        holm = 0.0 if row["p (Holm)"] == "<0.001" else float(row["p (Holm)"])
        if (row["verdict"] == "differs") != (holm < 0.05):
            wrong.append(f"{bench}: verdict {row['verdict']!r} against Holm p {row['p (Holm)']}")
        if row["verdict"] == "differs":
            marked.append(bench)
            if not only_a > only_b:
                wrong.append(f"{bench}: marked, but the strong model won {only_a} to {only_b}")
    assert not wrong, "\n".join(wrong)
    print(f"\nlimit {known_run.limit}: marked {marked}")
    if known_run.limit == max(LIMITS):
        # Six or more discordant questions all one way are what the sign test needs at 0.05;
        # Holm across the 20 benchmarks asks for more, so at least the most lopsided is marked.
        assert marked, "no benchmark marked at the whole synthetic set"


def test_compare_to_a_run_of_the_same_checkpoints_marks_nothing(
    fleet: Fleet, known_runs: dict[int, KnownRun]
) -> None:
    """The same checkpoints answer the same questions alike, whatever the limit: the run at the
    largest limit compared with the one at the smallest, on the questions both answered, has no
    combination marked CHANGED, although the scores at two limits differ by more than the 5
    points a fixed threshold used to flag."""
    later = known_run_at(fleet, known_runs, max(LIMITS))
    other = known_run_at(fleet, known_runs, min(LIMITS)).run_dir
    markdown = build_reports(later.run_dir, load_references(), compare_to=other.name)["report.md"]
    rows = md_table(markdown, f"Comparison with run {other.name}")
    assert len(rows) == 40
    flagged = [r for r in rows if r["flag"]]
    assert not flagged, flagged
    common = {r["benchmark"]: r["questions"] for r in rows}
    assert common["POPE"].startswith(f"{min(LIMITS)} in common")
