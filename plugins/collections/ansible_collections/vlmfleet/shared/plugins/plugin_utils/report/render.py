"""Renders a loaded run into report.md and a self-contained report.html.

Both are drawn from the same list of sections, so they carry the same numbers; the HTML adds
the heatmap as an inline base64 PNG (no network needed to view it).
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.vlmfleet.shared.plugins.module_utils.uncertainty import (
    worst_case_half_width,
)
from ansible_collections.vlmfleet.shared.plugins.plugin_utils.report.data import (
    REFERENCE_HALF_WIDTH_LIMIT,
    Combo,
    Delta,
    Detectable,
    ModelPair,
    Paired,
    Pooled,
    RefComparison,
    Run,
    checkpoints,
    detectable_differences,
    format_seconds,
    half_width,
    model_comparisons,
    model_times,
    percent,
    pooled_figures,
    reference_comparisons,
    run_wall_seconds,
)

# What a smoke checkpoint's name (contract.SMOKE_CHECKPOINTS) stands for, in the reports' words.
SMOKE_CHECKPOINT_WORDS = {
    "random": "tiny random-weight checkpoint",
    "known-strong": "known-answer checkpoint known-strong",
    "known-weak": "known-answer checkpoint known-weak",
}


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    # Optional CSS class per cell (same shape as rows): status colours in the HTML.
    classes: list[list[str]] | None = None


@dataclass
class Section:
    title: str
    paragraphs: list[str] = field(default_factory=list)
    table: Table | None = None
    heatmap: bool = False


def fmt(value: float | None) -> str:
    """A 0-100 score as the report prints it (two decimals, the precision of summary.json)."""
    return "" if value is None else f"{value:.2f}"


def fmt_delta(value: float | None) -> str:
    return "" if value is None else f"{value:+.2f}"


def fmt_bounds(interval: dict[str, Any]) -> str:
    """An interval's bounds, one decimal: finer says nothing at these widths."""
    return f"[{interval['low']:.1f}, {interval['high']:.1f}]"


def fmt_p(value: float | None) -> str:
    if value is None:
        return ""
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def score_text(combo: Combo, short: bool = False) -> str:
    """A primary score with its interval: "62.50 ±9.4" (half the interval's width), or with
    why it has none; a trailing * points at the scales' notes. `short`: the heatmap's."""
    value = fmt(percent(combo)) + (" *" if combo.scoring_note else "")
    # The heatmap's cells are narrow: the interval goes on a second line.
    gap = "\n" if short else " "
    if combo.interval is not None:
        return f"{value}{gap}±{half_width(combo.interval):.1f}"
    if short:
        return f"{value}{gap}(no interval)"
    return f"{value} (no interval: {combo.questions_note or 'none recorded'})"


def _cell(run: Run, model: str, bench: str, short: bool = False) -> tuple[str, str]:
    combo = run.combo(model, bench)
    if combo is None:
        return "not planned", "na"
    if combo.status != "ok":
        return combo.status, combo.status
    if percent(combo) is None:
        return "no score", "failed"
    return score_text(combo, short), "ok"


def limit_meaning(limit: Any) -> str:
    """The run's sample limit and the interval it allows a 0/1 score at worst."""
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        return "none (whole benchmark): each score's interval is its benchmark's own"
    return (
        f"{limit}: at {limit} questions a 0/1 score's 95% interval is about "
        f"±{worst_case_half_width(limit):.1f} points (the widest, at a score of 50; "
        "questions that come in groups widen it)"
    )


def precision_meaning(precision: float, plan: dict[str, Any]) -> str:
    """The limits that eval.yml's precision chose, and what they promise."""
    limits = plan.get("limits") or {}
    chosen = ", ".join(f"{b} {'whole' if n is None else n}" for b, n in limits.items())
    return (
        f"chosen for precision={precision:g}: each 95% interval at most ±{precision:g} points "
        f"for independent 0/1 questions at worst (questions that come in groups widen it): "
        f"{chosen or 'not in plan.json'}"
    )


def loaded(run: Run) -> str:
    """Per model, what stood behind its name, as its status records say: "llava_v1.5_7b:
    known-answer checkpoint known-weak; ..." (a real run's: the hub repo or custom folder)."""
    parts = []
    for model, names in checkpoints(run).items():
        words = [SMOKE_CHECKPOINT_WORDS.get(n, n) if run.smoke else n for n in names]
        parts.append(f"{model}: {', '.join(words) or 'checkpoint not named in its status records'}")
    return "; ".join(parts)


def smoke_banner(run: Run) -> str:
    return (
        f"SMOKE RUN on synthetic data ({loaded(run)}). The pipeline and the scoring ran for "
        "real; the scores say nothing about the models these names stand for."
    )


def _overview(run: Run) -> Section:
    inputs = run.info.get("inputs", {})
    totals = run.totals()
    limit = inputs.get("limit", run.summary.get("limit"))
    precision = inputs.get("precision", run.summary.get("precision"))
    lines = [
        f"Run {run.run_id}" + (" (SMOKE)" if run.smoke else ""),
        f"Models: {', '.join(run.models)}",
        f"Checkpoints: {loaded(run)}",
        f"Benchmarks: {', '.join(run.benchmarks)}",
        f"Sample limit per benchmark: {limit_meaning(limit)}"
        if precision is None
        else f"Sample limits per benchmark: {precision_meaning(precision, run.plan)}",
        f"Hosts: {', '.join(run.hosts) or 'n/a'}",
        f"Started {run.info.get('started_at', 'n/a')}, "
        f"finished {run.info.get('finished_at', 'n/a')}"
        f", wall time {format_seconds(run_wall_seconds(run))}",
        f"Combinations: {totals['ok']} ok, {totals['failed']} failed, {totals['missing']} missing"
        f" of {totals['total']}",
    ]
    for model in run.models:
        if model in run.catalogue.verified:
            lines.append(f"What backs {model} in this project: {run.catalogue.verified[model]}")
    if run.summary.get("model_loads") is not None:
        lines.append(f"Model loads: {run.summary['model_loads']}")
    if run.summary.get("lost_hosts"):
        lines.append(f"Hosts lost during the run: {', '.join(run.summary['lost_hosts'])}")
    return Section("Overview", paragraphs=lines)


def _scores(run: Run) -> Section:
    # Benchmarks down, models across: a matrix has many more benchmarks than models, and a
    # 20-column table does not fit a page.
    rows, classes = [], []
    for bench in run.benchmarks:
        cells = [_cell(run, m, bench) for m in run.models]
        rows.append([bench, *[c[0] for c in cells]])
        classes.append(["", *[c[1] for c in cells]])
    return Section(
        "Primary scores (0-100)",
        paragraphs=[
            "Each cell is the benchmark's primary metric, rescaled to 0-100 "
            "(see the scales below), ± half the width of its 95% interval (the bounds, which "
            "need not be symmetric, are under Score intervals); a failed or missing "
            "combination has no score."
        ],
        table=Table(["benchmark", *run.models], rows, classes),
        heatmap=True,
    )


def _intervals(run: Run) -> Section:
    rows = []
    for bench in run.benchmarks:
        for model in run.models:
            combo = run.combo(model, bench)
            if combo is None or percent(combo) is None:
                continue
            iv = combo.interval
            rows.append(
                [
                    bench,
                    model,
                    fmt(percent(combo)) + (f" {fmt_bounds(iv)}" if iv else ""),
                    iv["method"] if iv else f"no interval: {combo.questions_note or 'none'}",
                    str(iv["questions"]) if iv else "",
                    str(iv["clusters"]) if iv else "",
                ]
            )
    return Section(
        "Score intervals (95%)",
        paragraphs=[
            "Each score with its 95% interval, how it was computed and over how many "
            "questions in how many clusters (questions whose answers go together, such as "
            "one image's, count less than independent ones)."
        ],
        table=Table(
            ["benchmark", "model", "score [95% interval]", "method", "questions", "clusters"],
            rows,
        ),
    )


def _pooled_row(p: Pooled, total: int) -> list[str]:
    if p.figure is None:
        return [p.model, "", f"0 of {total}", "no benchmark score with an interval"]
    return [
        p.model,
        f"{p.figure['score']:.2f} ±{half_width(p.figure):.1f} {fmt_bounds(p.figure)}",
        f"{p.figure['benchmarks']} of {total}",
        ", ".join(p.left_out),
    ]


def _pooled(run: Run) -> Section:
    total = len(run.benchmarks)
    return Section(
        "Pooled score per model",
        paragraphs=[
            "The mean of a model's primary scores over the benchmarks whose scores have an "
            "interval, each benchmark weighing the same, with a 95% interval that takes the "
            "benchmarks as independent. Models pooled over different benchmarks are not "
            "comparable by this figure."
        ],
        table=Table(
            ["model", "pooled [95% interval]", "benchmarks", "left out"],
            [_pooled_row(p, total) for p in pooled_figures(run)],
        ),
    )


def verdict(test: Paired) -> str:
    if test.test is None:
        return f"no test: {test.why_not}"
    if test.differs:
        return "differs"
    # The detectable difference is a single test's; Holm asks more of each, so a difference
    # above it can still fall short: say what was not shown, not that there is none.
    return (
        "no difference shown at this limit "
        f"(one test alone detects {test.test['detectable']:.1f} points)"
    )


def _paired_cells(test: Paired) -> list[str]:
    """The difference with its interval, the questions, the p-value and Holm's."""
    t = test.test
    if t is None:
        return ["", "", "", ""]
    return [
        f"{t['difference']:+.1f} {fmt_bounds(t)}",
        str(t["questions"]),
        fmt_p(t["p_value"]),
        fmt_p(test.adjusted_p),
    ]


def _model_pairs(run: Run, pairs: list[ModelPair]) -> Section | None:
    if not pairs:
        return None
    rows, classes = [], []
    for pair in pairs:
        rows.append(
            [
                pair.benchmark,
                pair.model,
                pair.baseline,
                *_paired_cells(pair.paired),
                verdict(pair.paired),
            ]
        )
        classes.append(["", "", "", "", "", "", "", "flag" if pair.paired.differs else ""])
    return Section(
        "Model against model",
        paragraphs=[
            f"Each model minus {run.models[0]}, in points, on the questions both answered "
            "(matched by index): exact McNemar test for right/wrong questions one per cluster, "
            "else the interval of a paired cluster bootstrap and the p-value of the paired "
            "permutation test (exact; with few clusters the bootstrap's interval is too narrow, "
            "so the verdict follows the p-value); the p-value is Holm-adjusted across the "
            'benchmarks of each pair. "differs" only where the adjusted p-value is below '
            "0.05; otherwise no difference was shown, which is not the same as none."
        ],
        table=Table(
            [
                "benchmark",
                "model",
                "baseline",
                "difference [95% interval]",
                "questions",
                "p",
                "p (Holm)",
                "verdict",
            ],
            rows,
            classes,
        ),
    )


def _detectable_row(d: Detectable) -> list[str]:
    points = "" if d.points is None else f"{d.points:.1f}"
    return [d.benchmark, "" if d.questions is None else str(d.questions), points, d.basis]


def _detectable(run: Run, pairs: list[ModelPair]) -> Section:
    return Section(
        "Smallest detectable difference",
        paragraphs=[
            "Per benchmark, the smallest difference in points that a paired comparison on its "
            "questions finds (two-sided, alpha 0.05, power 0.8): from how often two of this "
            "run's models disagreed where two ran it, else the worst case for its questions. "
            "A larger limit lowers it."
        ],
        table=Table(
            ["benchmark", "questions", "smallest detectable (points)", "from"],
            [_detectable_row(d) for d in detectable_differences(run, pairs)],
        ),
    )


def _notes(run: Run, combos: list[Combo]) -> str:
    """Each scoring note once, after the models it holds for."""
    models: dict[str, list[str]] = {}
    for c in sorted(combos, key=lambda c: run.models.index(c.model)):
        if c.scoring_note and c.model not in models.get(c.scoring_note, []):
            models.setdefault(c.scoring_note, []).append(c.model)
    return "; ".join(f"{', '.join(ms)}: {note}" for note, ms in models.items())


def _scales(run: Run) -> Section:
    rows = []
    for bench in run.benchmarks:
        combos = [c for c in run.combos if c.benchmark == bench and percent(c) is not None]
        name = run.metric_name(bench) or "not in the catalogue"
        keys = sorted({c.primary_metric for c in combos if c.primary_metric})
        scales = sorted({f"0-{c.primary_scale:g}" for c in combos if c.primary_scale is not None})
        if not combos:
            rows.append([bench, name, "n/a", "n/a", "no score in this run"])
            continue
        rows.append([bench, name, ", ".join(keys), ", ".join(scales), _notes(run, combos)])
    return Section(
        "Score scales",
        paragraphs=[
            "Each benchmark's primary metric by name and by VLMEvalKit's key for it. VLMEvalKit "
            "reports some scores as fractions, some in percent and OCRBench as a count of right "
            "answers; the worker records each primary metric with the value it reads when "
            "every question is right, and the scores above are that ratio x 100. A * beside a "
            "score points at a note here on what the scorer could not judge."
        ],
        table=Table(["benchmark", "primary metric", "VLMEvalKit key", "raw scale", "notes"], rows),
    )


def _status(run: Run) -> Section:
    rows, classes = [], []
    for bench in run.benchmarks:
        row, cls = [bench], [""]
        for model in run.models:
            combo = run.combo(model, bench)
            row.append(f"{combo.status} ({combo.host or 'no host'})" if combo else "not planned")
            cls.append(combo.status if combo else "na")
        rows.append(row)
        classes.append(cls)
    return Section("Status matrix", table=Table(["benchmark", *run.models], rows, classes))


def _totals(run: Run) -> Section:
    totals = run.totals()
    rows = [[s, str(totals[s])] for s in ("ok", "failed", "missing", "total")]
    return Section(
        "Totals",
        table=Table(
            ["status", "combinations"],
            rows,
            [["ok", ""], ["failed", ""], ["missing", ""], ["", ""]],
        ),
    )


def _times(run: Run) -> Section:
    times = model_times(run)
    rows = []
    for model in run.models:
        combos = [c for c in run.combos if c.model == model]
        rows.append(
            [
                model,
                str(len(combos)),
                str(sum(1 for c in combos if c.status == "ok")),
                format_seconds(times[model]["wall_seconds"]),
                format_seconds(times[model]["gpu_seconds"]),
            ]
        )
    return Section(
        "Time per model",
        paragraphs=[
            "Wall time: first combination start to last finish of the model. "
            "GPU time: on each GPU the model's slots held, how long it was generating answers "
            "(the union of its benchmarks' generation phases: one batch may hold several "
            "benchmarks' questions, and that time counts once), summed over the GPUs; never "
            "more than the wall time times the GPUs. A CPU slot counts as one device. Model "
            "loading, data preparation and evaluation are not included (the worker runs them "
            "beside generation); an ok record without phase times (an older worker's) counts "
            "from its start to its finish."
        ],
        table=Table(["model", "combinations", "ok", "wall time", "GPU time"], rows),
    )


def _shards(run: Run) -> Section | None:
    """Each sharded benchmark's shards: where each ran and what became of it."""
    sharded = [c for c in run.combos if c.shards]
    if not sharded:
        return None
    rows, classes = [], []
    for c in sharded:
        for s in c.shards:
            rows.append(
                [
                    c.model,
                    c.benchmark,
                    f"{s['index'] + 1}-of-{s['count']}",
                    s.get("host") or "none",
                    s.get("slot") or "",
                    s["status"],
                    format_seconds(s.get("seconds")),
                ]
            )
            classes.append(["", "", "", "", "", s["status"], ""])
    return Section(
        "Sharded benchmarks",
        paragraphs=[
            "A sharded benchmark's rows ran in parts on several slots; their predictions were "
            "merged in row order and evaluated once (its scores above are the merge's)."
        ],
        table=Table(
            ["model", "benchmark", "shard", "host", "slot", "status", "time"], rows, classes
        ),
    )


def _failures(run: Run) -> Section:
    bad = [c for c in run.combos if c.status != "ok"]
    if not bad:
        return Section("Failures", paragraphs=["None: every planned combination is ok."])
    rows = [
        [
            c.model,
            c.benchmark,
            c.host or "none",
            c.status,
            c.reason or "no reason recorded",
            c.log_path or "no log collected",
        ]
        for c in bad
    ]
    classes = [["", "", "", c.status, "", ""] for c in bad]
    return Section(
        "Failures",
        paragraphs=["Log paths are relative to this run directory."],
        table=Table(["model", "benchmark", "host", "status", "reason", "log"], rows, classes),
    )


def _reference_row(r: RefComparison) -> list[str]:
    ours = "no score"
    if r.ours is not None:
        ours = fmt(r.ours) + (f" {fmt_bounds(r.interval)}" if r.interval else "")
        ours += f" ({r.derived})" if r.derived else ""
    # A gap inside an interval this wide means nothing: it is not shown.
    delta = "" if r.reading == "too few questions to tell" else fmt_delta(r.delta)
    split = r.split + (f" ({r.note})" if r.note else "")
    return [
        r.model,
        r.benchmark,
        ours,
        fmt(r.reference),
        delta,
        r.reading,
        r.figure,
        r.source,
        split,
    ]


def _references(run: Run, refs: list[RefComparison]) -> Section:
    paragraphs = [
        "Published LLaVA-1.5 figures; each row names the figure, its source and "
        "split. Prompts and answer readers differ from VLMEvalKit's, and a sample limit "
        "makes our score an estimate: a published figure inside our 95% interval reads "
        '"consistent", one outside it "outside our interval"; where the interval spans '
        f"more than ±{REFERENCE_HALF_WIDTH_LIMIT:g} points the run had too few questions to "
        "tell, and no gap is shown. Where the published figure is defined otherwise than "
        "our primary metric, ours is computed on its definition and named; where it was "
        'measured on another split or input, the row reads "not comparable" with the '
        "reason, and no gap is shown."
    ]
    if run.smoke:
        paragraphs.insert(
            0,
            f"SMOKE run on synthetic data ({loaded(run)}): the published figures are the real "
            "models' on the benchmarks' own data, so these gaps mean nothing.",
        )
    if not refs:
        paragraphs.append("No benchmark of this run has a published reference figure.")
        return Section("Comparison with published scores", paragraphs=paragraphs)
    return Section(
        "Comparison with published scores",
        paragraphs=paragraphs,
        table=Table(
            [
                "model",
                "benchmark",
                "ours [95% interval]",
                "published",
                "delta",
                "reading",
                "figure",
                "source",
                "split",
            ],
            [_reference_row(r) for r in refs],
        ),
    )


def _compared_questions(d: Delta, other_id: str) -> str:
    """The questions a comparison was made on, and each run's where the limits differ."""
    if d.paired.test is None:
        return ""
    common = d.paired.test["questions"]
    if d.questions_before == d.questions_after == common:
        return str(common)
    return (
        f"{common} in common ({d.questions_after} in this run, {d.questions_before} in {other_id})"
    )


def _compare_flag(d: Delta) -> str:
    if d.paired.differs:
        return "CHANGED"
    if d.status_changed:
        return "CHANGED (status)"
    return ""


def _compare_reading(d: Delta) -> str:
    if d.status_changed and d.paired.test is None:
        return f"status {d.status_before} -> {d.status_after}"
    return verdict(d.paired)


def _compare(other_id: str, deltas: list[Delta]) -> Section:
    rows, classes = [], []
    for d in deltas:
        rows.append(
            [
                d.model,
                d.benchmark,
                fmt(d.before) or d.status_before,
                fmt(d.after) or d.status_after,
                fmt_delta(d.delta),
                *_paired_cells(d.paired)[:1],
                _compared_questions(d, other_id),
                *_paired_cells(d.paired)[2:],
                _compare_reading(d),
                _compare_flag(d),
            ]
        )
        classes.append([""] * 10 + ["flag" if d.flagged else ""])
    flagged = sum(1 for d in deltas if d.flagged)
    return Section(
        f"Comparison with run {other_id}",
        paragraphs=[
            "Primary scores in points (0-100). Each combination both runs scored is tested on "
            "the questions both answered (matched by index; runs of different limits share "
            "only some): this run minus the other, exact McNemar for right/wrong questions one "
            "per cluster, else a paired cluster bootstrap's interval and a paired permutation "
            "test's p-value, Holm-adjusted across "
            "each model's benchmarks. CHANGED marks an adjusted p-value below 0.05 or a change "
            f"of status. {flagged} of {len(deltas)} combinations changed."
        ],
        table=Table(
            [
                "model",
                "benchmark",
                other_id,
                "this run",
                "delta",
                "paired difference [95%]",
                "questions",
                "p",
                "p (Holm)",
                "reading",
                "flag",
            ],
            rows,
            classes,
        ),
    )


def _provenance(manifest: dict[str, Any]) -> Section:
    image = manifest.get("image", {})
    versions = manifest.get("versions", {})
    lines = [
        f"Image {image.get('id') or 'n/a'}",
        "Versions: " + (", ".join(f"{k} {v}" for k, v in versions.items()) or "n/a"),
        f"Lock file sha256: {manifest.get('lock_sha256') or 'n/a'}",
        f"Project commit {manifest.get('project_commit') or 'n/a'}, "
        f"Ansible {manifest.get('ansible_version') or 'n/a'}",
    ]
    for host, facts in manifest.get("hosts", {}).items():
        if facts.get("problem"):
            lines.append(f"{host}: GPU facts and image unknown: {facts['problem']}")
        elif facts.get("gpu_count"):
            lines.append(
                f"{host}: {facts['gpu_count']} x {facts.get('gpu_model')}, driver "
                f"{facts.get('driver') or 'n/a'}, CUDA {facts.get('cuda') or 'n/a'}"
            )
        else:
            lines.append(f"{host}: no GPU (ran on CPU)")
    lines.append("Full record: manifest.json")
    return Section("Provenance", paragraphs=lines)


def sections(
    run: Run,
    references: dict[str, Any],
    manifest: dict[str, Any],
    comparison: tuple[str, list[Delta]] | None = None,
) -> list[Section]:
    pairs = model_comparisons(run)
    out = [
        _overview(run),
        _scores(run),
        _intervals(run),
        _pooled(run),
        *[s for s in (_model_pairs(run, pairs),) if s is not None],
        _detectable(run, pairs),
        _scales(run),
        _status(run),
        _totals(run),
        _times(run),
        *[s for s in (_shards(run),) if s is not None],
        _failures(run),
        _references(run, reference_comparisons(run, references)),
    ]
    if comparison:
        out.append(_compare(*comparison))
    out.append(_provenance(manifest))
    return out


def title(run: Run) -> str:
    return f"{'[SMOKE] ' if run.smoke else ''}LLaVA evaluation report: run {run.run_id}"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(run: Run, secs: list[Section]) -> str:
    lines = [f"# {title(run)}", ""]
    if run.smoke:
        lines += [f"> **{smoke_banner(run)}**", ""]
    for sec in secs:
        lines += [f"## {sec.title}", ""]
        if sec.title == "Overview" or sec.title == "Provenance":
            lines += [f"- {p}" for p in sec.paragraphs] + [""]
        else:
            lines += [*sec.paragraphs, ""] if sec.paragraphs else []
        if sec.heatmap:
            lines += ["(The heatmap of these scores is in report.html.)", ""]
        if sec.table:
            lines.append("| " + " | ".join(_md_escape(h) for h in sec.table.headers) + " |")
            lines.append("|" + "---|" * len(sec.table.headers))
            for row in sec.table.rows:
                lines.append("| " + " | ".join(_md_escape(c) for c in row) + " |")
            lines.append("")
    return "\n".join(lines)


def heatmap_png(run: Run) -> bytes:
    """Heatmap of the 0-100 primary scores (benchmarks down, models across), as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    models, benches = run.models, run.benchmarks
    values = np.full((len(benches), len(models)), np.nan)
    labels = [["" for _ in models] for _ in benches]
    for i, bench in enumerate(benches):
        for j, model in enumerate(models):
            value = percent(run.combo(model, bench))
            if value is not None:
                values[i, j] = value
            labels[i][j] = _cell(run, model, bench, short=True)[0]
    width = max(5.5, 1.7 * len(models) + 4.0)
    height = max(2.5, 0.36 * len(benches) + 1.8)
    fig, ax = plt.subplots(figsize=(width, height), dpi=100)
    cmap = matplotlib.colormaps["viridis"].copy()
    cmap.set_bad("#d9d9d9")
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=0, vmax=100, aspect="auto")
    ax.set_xticks(range(len(models)), labels=models, fontsize=9)
    ax.xaxis.tick_top()
    ax.set_yticks(range(len(benches)), labels=benches, fontsize=9)
    for i in range(len(benches)):
        for j in range(len(models)):
            dark = np.isnan(values[i, j]) or values[i, j] > 60
            ax.text(j, i, labels[i][j], ha="center", va="center", fontsize=9,
                    color="black" if dark else "white")  # fmt: skip
    ax.set_title(
        ("SMOKE RUN - " if run.smoke else "") + f"primary scores (0-100), run {run.run_id}",
        fontsize=11,
        color="#b00020" if run.smoke else "black",
        pad=28,
    )
    fig.colorbar(image, ax=ax, fraction=0.05, pad=0.03)
    fig.tight_layout()
    buf = io.BytesIO()
    # No Software/date metadata: the same run renders to the same bytes (idempotent reports).
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#1d1d1f;
background:#fff;max-width:1500px}
h1{font-size:1.6em;margin:0 0 12px}
h2{font-size:1.2em;margin:28px 0 8px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px;margin:6px 0}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.ok{background:#e6f4ea}td.failed{background:#fce8e6;color:#a50e0e}
td.missing{background:#fef7e0;color:#8a5a00}td.na{color:#888}td.flag{color:#a50e0e;font-weight:700}
.smoke{background:#b00020;color:#fff;font-weight:700;padding:12px 16px;border-radius:6px;
font-size:1.1em;margin:8px 0 16px}
ul{margin:4px 0;padding-left:20px}img.heatmap{max-width:100%;border:1px solid #ddd;margin:8px 0}
.pair{display:flex;flex-wrap:wrap;gap:24px;align-items:flex-start}
"""


def render_html(run: Run, secs: list[Section], png: bytes) -> str:
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title(run))}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{esc(title(run))}</h1>",
    ]
    if run.smoke:
        parts.append(f'<div class="smoke">{esc(smoke_banner(run))}</div>')
    for sec in secs:
        parts.append(f"<h2>{esc(sec.title)}</h2>")
        if sec.title in ("Overview", "Provenance"):
            parts.append("<ul>" + "".join(f"<li>{esc(p)}</li>" for p in sec.paragraphs) + "</ul>")
        else:
            parts += [f"<p>{esc(p)}</p>" for p in sec.paragraphs]
        if sec.heatmap:
            data = base64.b64encode(png).decode("ascii")
            parts.append(
                '<div class="pair"><img class="heatmap" id="heatmap" '
                f'alt="heatmap of primary scores" src="data:image/png;base64,{data}">'
            )
        if sec.table:
            tab = sec.table
            parts.append(
                "<table><thead><tr>"
                + "".join(f"<th>{esc(h)}</th>" for h in tab.headers)
                + "</tr></thead><tbody>"
            )
            for r, row in enumerate(tab.rows):
                cells = []
                for c, value in enumerate(row):
                    cls = tab.classes[r][c] if tab.classes else ""
                    attr = f' class="{cls}"' if cls else ""
                    cells.append(f"<td{attr}>{esc(value)}</td>")
                parts.append("<tr>" + "".join(cells) + "</tr>")
            parts.append("</tbody></table>")
        if sec.heatmap:
            parts.append("</div>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
