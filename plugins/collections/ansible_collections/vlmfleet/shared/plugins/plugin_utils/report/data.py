"""Reads a run directory (results/<run_id>/) into one structure the reports render.

Pure Python, no Ansible: the filter plugin, the regenerate CLI and the tests share it.
Formats: docs/architecture.md (summary.json, status.json, plan.json, run.json, host.json).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ansible_collections.vlmfleet.shared.plugins.module_utils.contract import (
    CONTAINER_LOG,
    MERGE_SLOT,
    SHARDS_DIR,
    STATUS_FILE,
    WORKER_LOG,
    read_record,
)
from ansible_collections.vlmfleet.shared.plugins.module_utils.uncertainty import (
    ALPHA,
    UncertaintyError,
    detectable_difference,
    holm,
    paired_difference,
    pooled_interval,
    questions_of,
)

STATUSES = ("ok", "failed", "missing")
# Where a summary may keep its per-combination list; the engine writes "combinations".


class ReportError(ValueError):
    """A run directory that cannot be reported on; the message names what is wrong."""


@dataclass(frozen=True)
class Work:
    """One status record's stretch of its slot's time, and where its generation lay in it."""

    host: str
    slot: str
    started: datetime
    finished: datetime
    # Seconds from the start to the benchmark's entry into generation, and generation's own
    # (the record's phase_seconds prepare and infer); None when the record has no phase times.
    prepare: float | None
    infer: float | None
    # The batched engine answers a unit's benchmarks as one queue, so their generation phases
    # overlap; VLMEvalKit's own loop answers them one after another.
    batched: bool


@dataclass(frozen=True)
class Catalogue:
    """What the report takes from catalogue.yml: each benchmark's kind, and the plain name of
    its primary metric (the benchmark's own `metric`, else its kind's)."""

    kinds: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, str] = field(default_factory=dict)
    kind_metrics: dict[str, str] = field(default_factory=dict)
    # A model's `verified_here`: what ran in this project for it, where less than the model.
    verified: dict[str, str] = field(default_factory=dict)


@dataclass
class Combo:
    """One planned (host, model, benchmark) and what became of it."""

    host: str
    model: str
    benchmark: str
    status: str
    slot: str | None = None
    reason: str | None = None
    seconds: float | None = None
    samples: int | None = None
    scores: dict[str, float] = field(default_factory=dict)
    primary_metric: str | None = None
    kind: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    log_path: str | None = None
    # The worker's primary score on 0-100, and what its source metric reads when every
    # question is right (vlmfleet.scores): the report never guesses a scale.
    primary_score: float | None = None
    primary_scale: float | None = None
    # What the scorer could not judge, in the worker's words (e.g. open MMMU questions under
    # exact matching); shown beside the number.
    scoring_note: str | None = None
    # A sharded benchmark's shards, as summary.json lists them (index, count, host, slot,
    # status, seconds, samples, reason); empty for a benchmark run whole.
    shards: list[dict[str, Any]] = field(default_factory=list)
    # The scored questions (relative to the run directory), the primary score's interval
    # (contract.INTERVAL_KEYS, 0-100) and, without one, why not: the worker's words.
    questions_file: str | None = None
    interval: dict[str, Any] | None = None
    questions_note: str | None = None
    # What stood behind the model name, as the worker's record says (the smoke checkpoint,
    # the hub repo or a custom folder); None where the record does not say.
    checkpoint: str | None = None
    # The slot time its records took: its own record's, or a merged benchmark's shards'.
    work: list[Work] = field(default_factory=list)


@dataclass
class Run:
    """Everything the reports need from one run directory."""

    run_dir: Path
    run_id: str
    smoke: bool
    info: dict[str, Any]
    summary: dict[str, Any]
    plan: dict[str, Any]
    hosts: dict[str, dict[str, Any]]
    combos: list[Combo]
    models: list[str]
    benchmarks: list[str]
    catalogue: Catalogue = field(default_factory=Catalogue)
    # Scored questions read once per combination: several comparisons share them.
    _scored: dict[tuple[str, str, str], Scored] = field(default_factory=dict, repr=False)

    def combo(self, model: str, benchmark: str) -> Combo | None:
        """The combination of a model and benchmark; a failed one wins over a missing one."""
        found = [c for c in self.combos if c.model == model and c.benchmark == benchmark]
        if not found:
            return None
        order = {"ok": 0, "failed": 1, "missing": 2}
        return sorted(found, key=lambda c: order.get(c.status, 3))[0]

    def totals(self) -> dict[str, int]:
        counts = {s: sum(1 for c in self.combos if c.status == s) for s in STATUSES}
        counts["total"] = len(self.combos)
        return counts

    def metric_name(self, benchmark: str) -> str | None:
        """The plain name of a benchmark's primary metric, from the catalogue."""
        if benchmark in self.catalogue.metrics:
            return self.catalogue.metrics[benchmark]
        kinds = [c.kind for c in self.combos if c.benchmark == benchmark and c.kind]
        kind = self.catalogue.kinds.get(benchmark) or next(iter(kinds), None)
        return self.catalogue.kind_metrics.get(kind) if kind else None


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def _read_json(path: Path, required: bool = True) -> Any:
    if not path.is_file():
        if required:
            raise ReportError(f"{path}: missing; is this a run directory of results/?")
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path}: not valid JSON ({exc})") from exc


def _entries(summary: Any, path: Path) -> list[dict[str, Any]]:
    """summary.json's combinations, as plugin_utils/summary.py writes them."""
    if not isinstance(summary, dict) or not isinstance(summary.get("combinations"), list):
        raise ReportError(f"{path}: no list of combinations under 'combinations'")
    return summary["combinations"]


def _plan_kinds(plan: dict[str, Any]) -> dict[str, str]:
    kinds: dict[str, str] = {}
    for unit in plan.get("units", []) if isinstance(plan, dict) else []:
        for bench in unit.get("benchmarks", []):
            if isinstance(bench, dict) and bench.get("kind"):
                kinds[bench["name"]] = bench["kind"]
    return kinds


def _log_path(run_dir: Path, host: str, model: str, benchmark: str, slot: str | None) -> str | None:
    """The combination's own log; else its slot's (a worker that died before reaching the
    combination leaves only the slot's container log)."""
    dirs = [run_dir / host / model / benchmark]
    if slot:
        dirs.append(run_dir / host / slot)
    for directory in dirs:
        if not directory.is_dir():
            continue
        for name in (WORKER_LOG, CONTAINER_LOG):
            if (directory / name).is_file():
                return str((directory / name).relative_to(run_dir))
        logs = sorted(directory.glob("*.log"))
        if logs:
            return str(logs[0].relative_to(run_dir))
    return None


def _interval(raw: Any) -> dict[str, Any] | None:
    """A summary entry's primary_interval when its bounds are numbers, else None."""
    if not isinstance(raw, dict) or not (
        _is_number(raw.get("low")) and _is_number(raw.get("high"))
    ):
        return None
    return raw


def _work(record: dict[str, Any]) -> Work | None:
    """A record's stretch of slot time; None where it generated nothing: no times, the merge's
    (CPU work on no GPU, after its shards), phase times without generation, or a failure
    without phase times (a model that did not load)."""
    started, finished = parse_time(record.get("started_at")), parse_time(record.get("finished_at"))
    if started is None or finished is None or record.get("slot") in (None, MERGE_SLOT):
        return None
    phases = record.get("phase_seconds")
    infer = (phases or {}).get("infer")
    if phases is not None and not _is_number(infer):
        return None
    if phases is None and record.get("status") != "ok":
        return None
    return Work(
        host=str(record.get("host") or ""),
        slot=str(record["slot"]),
        started=started,
        finished=finished,
        prepare=float((phases or {}).get("prepare") or 0.0) if _is_number(infer) else None,
        infer=float(infer) if _is_number(infer) else None,
        batched="decoder" in record or "batch_sizes" in record,
    )


def _record(path: Path) -> dict[str, Any]:
    """A status record as the summary read it (contract.read_record): one that breaks the
    contract is a failed record naming why, so the report says what the summary says instead
    of stopping on it or showing its figures."""
    return read_record(path) if path.is_file() else {}


def _shard_records(root: Path, model: str, bench: str, shards: list[dict[str, Any]]) -> list[Any]:
    """The records of a benchmark's shards, each in the folder of the host that ran it."""
    out = []
    for s in shards:
        if s.get("host") and isinstance(s.get("index"), int) and isinstance(s.get("count"), int):
            name = f"{s['index'] + 1}-of-{s['count']}"
            path = root / s["host"] / model / bench / SHARDS_DIR / name / STATUS_FILE
            out.append(_record(path))
    return out


def _ordered(values: list[str], preferred: list[str]) -> list[str]:
    """The values in the order the run's inputs name them, then any others as first seen."""
    seen = [v for v in preferred if v in values]
    return seen + [v for v in dict.fromkeys(values) if v not in seen]


def _combo(root: Path, raw: dict[str, Any], summary_path: Path, kinds: dict[str, str]) -> Combo:
    """One summary entry, with what its status.json (and its shards') add."""
    missing = [k for k in ("host", "model", "benchmark", "status") if k not in raw]
    if missing:
        raise ReportError(f"{summary_path}: an entry lacks {', '.join(missing)}: {raw}")
    if raw["status"] not in STATUSES:
        raise ReportError(
            f"{summary_path}: status {raw['status']!r} of {raw['model']}/{raw['benchmark']}"
            f" is not one of {', '.join(STATUSES)}"
        )
    # A combination no attempt planned anywhere has no host (summary says so in reason).
    host, model, bench = raw["host"] or "", raw["model"], raw["benchmark"]
    record = _record(root / host / model / bench / STATUS_FILE) if host else {}
    scores = raw.get("scores") or {}
    slot = raw.get("slot") or record.get("slot")
    shards = list(raw.get("shards") or [])
    records = [record, *_shard_records(root, model, bench, shards)]
    return Combo(
        host=host,
        model=model,
        benchmark=bench,
        status=raw["status"],
        slot=slot,
        reason=raw.get("reason") or record.get("reason"),
        seconds=raw.get("seconds", record.get("seconds")),
        samples=raw.get("samples", record.get("samples")),
        scores={k: v for k, v in scores.items() if _is_number(v)},
        primary_metric=raw.get("primary_metric") or record.get("primary_metric"),
        kind=raw.get("kind") or kinds.get(bench),
        started_at=raw.get("started_at") or record.get("started_at"),
        finished_at=raw.get("finished_at") or record.get("finished_at"),
        log_path=_log_path(root, host, model, bench, slot) if host else None,
        primary_score=raw.get("primary_score"),
        primary_scale=raw.get("primary_scale"),
        scoring_note=raw.get("scoring_note"),
        shards=shards,
        questions_file=raw.get("questions_file"),
        interval=_interval(raw.get("primary_interval")),
        questions_note=raw.get("questions_note"),
        checkpoint=record.get("checkpoint"),
        work=[w for r in records if isinstance(r, dict) and (w := _work(r))],
    )


# What a host.json that cannot be used becomes: the reports say so on the host's line.
HOST_PROBLEM = "problem"


def _host_facts(path: Path) -> dict[str, Any]:
    """host.json (GPU facts and image provenance, roles/eval_run/tasks/collect.yml), {} when
    absent; one that is torn or of another shape is {"problem": why}: provenance unknown for
    that host, never a report lost for it."""
    if not path.is_file():
        return {}
    try:
        facts = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        return {HOST_PROBLEM: f"{path} is not readable JSON ({err})"}
    gpus = facts.get("gpu_facts_gpus") if isinstance(facts, dict) else None
    if (
        not isinstance(facts, dict)
        or not isinstance(gpus or [], list)
        or not all(isinstance(g, dict) and "name" in g for g in gpus or [])
        or not isinstance(facts.get("image_labels") or {}, dict)
        or not isinstance(facts.get("slot_states") or [], list)
    ):
        return {HOST_PROBLEM: f"{path} is not a host record of collect.yml's shape"}
    return facts


def load_run(run_dir: str | Path, catalogue: Catalogue | None = None) -> Run:
    """Load results/<run_id>/ into a Run; raises ReportError naming a missing or bad file.
    The catalogue's kinds cover benchmarks a resumed run's plan left out."""
    root = Path(run_dir)
    if not root.is_dir():
        raise ReportError(f"{root}: no such run directory")
    summary_path = root / "summary.json"
    summary = _read_json(summary_path)
    info = _read_json(root / "run.json", required=False)
    plan = _read_json(root / "plan.json", required=False)
    inputs = info.get("inputs", {}) if isinstance(info, dict) else {}
    catalogue = catalogue or Catalogue()
    kinds = {**catalogue.kinds, **_plan_kinds(plan)}
    combos = [_combo(root, raw, summary_path, kinds) for raw in _entries(summary, summary_path)]
    hosts = {}
    for host in sorted(
        {c.host for c in combos if c.host} | {p.parent.name for p in root.glob("*/host.json")}
    ):
        hosts[host] = _host_facts(root / host / "host.json")
    smoke = bool(inputs.get("smoke", summary.get("smoke") if isinstance(summary, dict) else False))
    run_id = (
        (summary.get("run_id") if isinstance(summary, dict) else None)
        or info.get("run_id")
        or inputs.get("run_id")
        or root.name
    )
    return Run(
        run_dir=root,
        run_id=str(run_id),
        smoke=smoke,
        info=info if isinstance(info, dict) else {},
        summary=summary if isinstance(summary, dict) else {"combinations": summary},
        plan=plan if isinstance(plan, dict) else {},
        hosts=hosts,
        combos=combos,
        models=_ordered([c.model for c in combos], list(inputs.get("models", []))),
        benchmarks=_ordered([c.benchmark for c in combos], list(inputs.get("benchmarks", []))),
        catalogue=catalogue,
    )


def percent(combo: Combo | None) -> float | None:
    """A combination's primary score on 0-100 as the worker recorded it, or None."""
    if combo is None or combo.status != "ok" or not _is_number(combo.primary_score):
        return None
    return round(float(combo.primary_score), 2)


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def slot_devices(run: Run, host: str, slot: str) -> list[str]:
    """The devices a slot held (plan.json's GPUs, "<host> GPU <i>"): slots that share a GPU
    name the same one; a CPU-only or unknown slot is one device of its own."""
    for unit in run.plan.get("units", []):
        if unit.get("host") == host and unit.get("slot") == slot:
            gpus = unit.get("gpus")
            if isinstance(gpus, list) and gpus:
                return [f"{host} GPU {g}" for g in gpus]
    return [f"{host} {slot}"]


def union_seconds(spans: list[tuple[float, float]]) -> float:
    """The length of the union of (start, end) spans: time covered twice counts once."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(spans):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def generation_spans(work: list[Work]) -> list[tuple[float, float]]:
    """One slot's generation, in seconds since the epoch: a batched benchmark generates from its
    entry into the queue (after its preparation) for its infer seconds, beside the others; in
    VLMEvalKit's loop each waits for the one before. A record without phase times counts its
    whole span. Every span stays inside its record's start and finish."""
    spans, free = [], float("-inf")
    for w in sorted(work, key=lambda w: (w.started, w.prepare or 0.0)):
        first, last = w.started.timestamp(), w.finished.timestamp()
        if w.infer is None:
            spans.append((first, last))
            continue
        start = first + (w.prepare or 0.0)
        if not w.batched:
            start = max(start, free)
        free = start + w.infer
        spans.append((min(start, last), min(free, last)))
    return spans


def model_times(run: Run) -> dict[str, dict[str, float | None]]:
    """Per model: wall seconds (first start to last finish over its combinations) and GPU
    seconds: for each device its slots held, the union of the model's generation spans on it
    (generation_spans), summed over the devices. Neither loads nor the preparation and
    evaluation beside generation count, and time two benchmarks shared counts once, so it never
    exceeds the wall time times the devices."""
    out: dict[str, dict[str, float | None]] = {}
    for model in run.models:
        combos = [c for c in run.combos if c.model == model]
        starts = [t for c in combos if (t := parse_time(c.started_at))]
        ends = [t for c in combos if (t := parse_time(c.finished_at))]
        wall = (max(ends) - min(starts)).total_seconds() if starts and ends else None
        slots: dict[tuple[str, str], list[Work]] = {}
        for w in (w for c in combos for w in c.work):
            slots.setdefault((w.host, w.slot), []).append(w)
        per_device: dict[str, list[tuple[float, float]]] = {}
        for (host, slot), work in slots.items():
            for device in slot_devices(run, host, slot):
                per_device.setdefault(device, []).extend(generation_spans(work))
        busy = sum(union_seconds(spans) for spans in per_device.values())
        out[model] = {"wall_seconds": wall, "gpu_seconds": round(busy, 1)}
    return out


def checkpoints(run: Run) -> dict[str, list[str]]:
    """Per model, what its records say stood behind its name (normally one checkpoint)."""
    return {
        model: list(
            dict.fromkeys(c.checkpoint for c in run.combos if c.model == model and c.checkpoint)
        )
        for model in run.models
    }


def run_wall_seconds(run: Run) -> float | None:
    start, end = parse_time(run.info.get("started_at")), parse_time(run.info.get("finished_at"))
    return (end - start).total_seconds() if start and end else None


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def half_width(interval: dict[str, Any]) -> float:
    """Points either side of a score that its interval spans, on average (Wilson's is not
    symmetric: the bounds themselves are shown beside it)."""
    return (float(interval["high"]) - float(interval["low"])) / 2


@dataclass(frozen=True)
class Scored:
    """A combination's scored questions and the statistic its primary score is of them, or why
    they cannot be compared."""

    lines: list[dict[str, Any]] | None
    statistic: str | None
    why_not: str | None = None


def _read_lines(path: Path) -> list[dict[str, Any]]:
    lines = []
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not text.strip():
            continue
        try:
            lines.append(json.loads(text))
        except json.JSONDecodeError as exc:
            raise ReportError(f"{path}: line {number} is not JSON ({exc})") from exc
    return lines


def _questions_file(run: Run, combo: Combo) -> Path | None:
    """The questions file of a combination: summary.json names it relative to the run; an
    entry that names only the file (the record's own form) is in the combination's folder."""
    name = combo.questions_file
    if not name:
        return None
    if "/" in name:
        return run.run_dir / name
    return run.run_dir / combo.host / combo.model / combo.benchmark / name


def _read_scored(run: Run, combo: Combo | None) -> Scored:
    if combo is None or combo.status != "ok":
        return Scored(None, None, f"{combo.status if combo else 'not planned'}, no score")
    if combo.interval is None:
        return Scored(None, None, f"no interval: {combo.questions_note or 'none recorded'}")
    path = _questions_file(run, combo)
    if path is None or not path.is_file():
        where = path.relative_to(run.run_dir) if path else "none named"
        return Scored(None, None, f"questions file not collected ({where})")
    try:
        lines = _read_lines(path)
        # Lines the statistics can use, or why not (an emptied or edited file): checked here,
        # once, so that no section of the report stops on them.
        questions_of(lines)
    except ReportError as exc:
        return Scored(None, None, str(exc))
    except (UncertaintyError, KeyError, TypeError, ValueError) as exc:
        shown = f"{type(exc).__name__}: {exc}" if isinstance(exc, KeyError) else str(exc)
        return Scored(None, None, f"{path}: {shown}")
    return Scored(lines, combo.interval.get("statistic"))


def scored(run: Run, model: str, benchmark: str) -> Scored:
    combo = run.combo(model, benchmark)
    key = (combo.host if combo else "", model, benchmark)
    if key not in run._scored:
        run._scored[key] = _read_scored(run, combo)
    return run._scored[key]


@dataclass
class Paired:
    """``a`` minus ``b`` on the questions both answered (uncertainty.paired_difference's
    result, points), or why there is no test; ``adjusted_p`` is Holm's over its family."""

    test: dict[str, Any] | None
    why_not: str | None = None
    adjusted_p: float | None = None

    @property
    def differs(self) -> bool:
        return self.adjusted_p is not None and self.adjusted_p < ALPHA


def paired(a: Scored, b: Scored, a_name: str, b_name: str) -> Paired:
    for name, side in ((a_name, a), (b_name, b)):
        if side.why_not:
            return Paired(None, f"{name}: {side.why_not}")
    if a.statistic != b.statistic:
        return Paired(None, f"{a_name} scores {a.statistic}, {b_name} {b.statistic}")
    try:
        return Paired(paired_difference(a.lines or [], b.lines or [], str(a.statistic)))
    except UncertaintyError as exc:
        return Paired(None, str(exc))


def adjust(family: list[Paired]) -> None:
    """Holm's adjustment over the tests of one family (those that ran)."""
    ran = [p for p in family if p.test is not None]
    for p, adjusted in zip(ran, holm([p.test["p_value"] for p in ran]), strict=True):
        p.adjusted_p = adjusted


@dataclass
class ModelPair:
    """One benchmark's comparison of a model with the run's first model."""

    benchmark: str
    model: str
    baseline: str
    paired: Paired


def model_comparisons(run: Run) -> list[ModelPair]:
    """Each model against the first, benchmark by benchmark; Holm across each pair's benchmarks."""
    if len(run.models) < 2:
        return []
    baseline, out = run.models[0], []
    for model in run.models[1:]:
        family = [
            ModelPair(
                bench,
                model,
                baseline,
                paired(scored(run, model, bench), scored(run, baseline, bench), model, baseline),
            )
            for bench in run.benchmarks
        ]
        adjust([pair.paired for pair in family])
        out += family
    return out


@dataclass
class Detectable:
    """The smallest difference (points) a paired comparison on a benchmark's questions finds
    at alpha 0.05 with power 0.8, and what it was worked out from."""

    benchmark: str
    points: float | None
    questions: int | None
    basis: str


def detectable_differences(run: Run, pairs: list[ModelPair]) -> list[Detectable]:
    """Per benchmark: from two models' observed disagreement where a comparison ran, else the
    worst case for its questions."""
    out = []
    for bench in run.benchmarks:
        tested = [p for p in pairs if p.benchmark == bench and p.paired.test is not None]
        if tested:
            test = tested[0].paired.test
            basis = f"observed: {tested[0].model} vs {tested[0].baseline}"
            out.append(Detectable(bench, test["detectable"], test["questions"], basis))
            continue
        lines = next(
            (s.lines for m in run.models if (s := scored(run, m, bench)).lines is not None), None
        )
        if lines is None:
            out.append(Detectable(bench, None, None, "no scored questions in this run"))
            continue
        questions = questions_of(lines)
        worst = "worst case: two runs that disagree on half the questions"
        out.append(Detectable(bench, detectable_difference(questions, None), len(lines), worst))
    return out


@dataclass
class Pooled:
    """A model's mean over the run's benchmarks that have intervals, with its interval
    (uncertainty.pooled_interval), and the benchmarks it leaves out."""

    model: str
    figure: dict[str, Any] | None
    left_out: list[str]


def pooled_figures(run: Run) -> list[Pooled]:
    out = []
    for model in run.models:
        figures, left_out = [], []
        for bench in run.benchmarks:
            combo = run.combo(model, bench)
            score = percent(combo)
            if score is None or combo is None or combo.interval is None:
                left_out.append(bench)
            else:
                figures.append((float(combo.primary_score), combo.interval))
        out.append(Pooled(model, pooled_interval(figures) if figures else None, left_out))
    return out


# An interval wider than this either side says too little to set a published figure against.
REFERENCE_HALF_WIDTH_LIMIT = 10.0


@dataclass
class RefComparison:
    model: str
    benchmark: str
    ours: float | None
    reference: float
    figure: str
    source: str
    split: str
    note: str | None
    interval: dict[str, Any] | None = None
    questions_note: str | None = None
    # Ours on the published definition where that is not our primary metric (reference file:
    # `ours`), what it is called; it has no interval of its own.
    derived: str | None = None
    # The primary score's interval: over the same questions, it says whether they can tell.
    primary_interval: dict[str, Any] | None = None
    # Why the published figure measures something else than ours (split or definition).
    not_comparable: str | None = None

    @property
    def delta(self) -> float | None:
        if self.ours is None or self.not_comparable:
            return None
        return round(self.ours - self.reference, 2)

    @property
    def reading(self) -> str:
        """What the published figure says against our interval."""
        if self.not_comparable:
            return f"not comparable: {self.not_comparable}"
        if self.ours is None:
            return "no score"
        if self.derived:
            # The primary's interval is over the same questions: too wide there, too wide here.
            if self.primary_interval and (
                half_width(self.primary_interval) > REFERENCE_HALF_WIDTH_LIMIT
            ):
                return "too few questions to tell"
            return "no interval: the worker's interval is of the primary metric, not of this mean"
        if self.interval is None:
            return f"no interval: {self.questions_note or 'none recorded'}"
        if half_width(self.interval) > REFERENCE_HALF_WIDTH_LIMIT:
            return "too few questions to tell"
        if self.interval["low"] <= self.reference <= self.interval["high"]:
            return "consistent"
        return "outside our interval"


def _derived(combo: Combo, ours: dict[str, Any]) -> tuple[float | None, str | None]:
    """Our figure on a published definition: the mean of `ours["mean_of"]`, keys of the
    record's scores on the primary metric's scale, on 0-100; else None and why not."""
    keys = list(ours.get("mean_of") or [])
    missing = [k for k in keys if k not in combo.scores]
    if not keys or missing:
        return None, (
            f"this run's scores have no {', '.join(missing or ['keys'])}, which the published "
            "definition needs"
        )
    if not _is_number(combo.primary_scale) or not combo.primary_scale:
        return None, "the record has no primary scale to put its figures on 0-100"
    mean = sum(float(combo.scores[k]) for k in keys) / len(keys)
    return round(mean / float(combo.primary_scale) * 100, 2), None


def compare_reference(
    combo: Combo | None, model: str, bench: str, figure: dict[str, Any], published: float
) -> RefComparison:
    """One model's score on a benchmark against a published figure, on the figure's definition
    (its `ours`) where that is not our primary metric, or marked not comparable."""
    score = percent(combo)
    row = RefComparison(
        model=model,
        benchmark=bench,
        ours=score,
        reference=float(published),
        figure=figure["name"],
        source=figure["source"],
        split=figure["split"],
        note=figure.get("note"),
        interval=combo.interval if combo is not None and score is not None else None,
        questions_note=combo.questions_note if combo else None,
        not_comparable=figure.get("not_comparable"),
    )
    ours = figure.get("ours")
    if row.not_comparable or not ours or combo is None or score is None:
        return row
    if list(ours.get("mean_of") or []) == [combo.primary_metric]:
        return row
    value, why_not = _derived(combo, ours)
    if why_not:
        row.not_comparable = why_not
        return row
    row.ours = value
    row.derived = ours.get("name") or f"mean of {', '.join(ours.get('mean_of') or [])}"
    row.primary_interval, row.interval = row.interval, None
    return row


def reference_comparisons(run: Run, references: dict[str, Any]) -> list[RefComparison]:
    """Our scores against the published figure mapped to each benchmark."""
    rows = []
    figures = references.get("reference_scores_figures", {})
    mapping = references.get("reference_scores_benchmark_map", {})
    for bench in run.benchmarks:
        figure_id = mapping.get(bench)
        if not figure_id:
            continue
        if figure_id not in figures:
            raise ReportError(f"reference map: {bench} -> {figure_id!r}, no such figure")
        figure = figures[figure_id]
        for model in run.models:
            published = figure.get("scores", {}).get(model)
            if published is not None:
                rows.append(
                    compare_reference(run.combo(model, bench), model, bench, figure, published)
                )
    return rows


@dataclass
class Delta:
    model: str
    benchmark: str
    before: float | None
    after: float | None
    status_before: str
    status_after: str
    # This run minus the other on the questions both answered.
    paired: Paired
    # Questions each run scored (its interval's count), to set beside those compared.
    questions_before: int | None = None
    questions_after: int | None = None

    @property
    def delta(self) -> float | None:
        if self.before is None or self.after is None:
            return None
        return round(self.after - self.before, 2)

    @property
    def status_changed(self) -> bool:
        return self.status_before != self.status_after

    @property
    def flagged(self) -> bool:
        return self.status_changed or self.paired.differs


def _questions(combo: Combo | None) -> int | None:
    if combo is None or combo.interval is None:
        return None
    return combo.interval.get("questions")


def compare_runs(run: Run, other: Run) -> list[Delta]:
    """Per model/benchmark in either run: the primary scores, and the paired test of this run
    against the other on the questions both answered, Holm-adjusted across each model's
    benchmarks; flagged where that test finds a difference or the status changed."""
    pairs = [(m, b) for m in run.models for b in run.benchmarks]
    pairs += [(m, b) for m in other.models for b in other.benchmarks if (m, b) not in pairs]
    out = []
    for model, bench in pairs:
        now, then = run.combo(model, bench), other.combo(model, bench)
        if now is None and then is None:
            continue
        out.append(
            Delta(
                model,
                bench,
                before=percent(then),
                after=percent(now),
                status_before=then.status if then else "not planned",
                status_after=now.status if now else "not planned",
                paired=paired(
                    scored(run, model, bench), scored(other, model, bench), "this run", other.run_id
                ),
                questions_before=_questions(then),
                questions_after=_questions(now),
            )
        )
    for model in dict.fromkeys(d.model for d in out):
        adjust([d.paired for d in out if d.model == model])
    return out
