"""The planner's cost model: what a run still has to do (the combinations not done, the shards
an earlier attempt finished), each combination's rows and cost, and the even share of it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# A limit-less smoke run still only sees the worker's small synthetic datasets.
SMOKE_SAMPLES = 10

Combination = tuple[str, str]  # (model, benchmark)
# Resume: per combination, the shards done so far by shard count ({count: {index, ...}}).
Started = dict[Combination, dict[int, set[int]]]


@dataclass
class Work:
    """The combinations still to run, with their estimated rows and costs."""

    done: set[Combination]
    pending: list[Combination]
    cost: dict[Combination, float]
    rows: dict[Combination, int]
    started: Started
    # The user's cap on rows per shard (None: the planner shards only what bounds the run).
    shard_rows: int | None

    def models(self) -> list[str]:
        """The models with work left, in the order asked for."""
        return list(dict.fromkeys(m for m, _ in self.pending))


def benchmark_limits(inputs: Mapping[str, Any]) -> dict[str, int | None]:
    """Each benchmark's sample limit: the one precision chose for it (the validation step's
    ``limits``), else the run's ``limit`` (None: the whole benchmark)."""
    chosen = inputs.get("limits")
    return {b: inputs.get("limit") if chosen is None else chosen[b] for b in inputs["benchmarks"]}


def benchmark_rows(bench: Mapping[str, Any], limit: int | None, smoke: bool) -> int:
    """The rows a benchmark's combination runs, as the planner estimates them: the catalogue's
    count, or the limit (a smoke run's synthetic data is small)."""
    samples = int(bench["samples"])
    if smoke:
        samples = min(samples, SMOKE_SAMPLES)
    if limit is not None:
        samples = min(samples, limit)
    return samples


def combination_cost(
    model: Mapping[str, Any], bench: Mapping[str, Any], limit: int | None, smoke: bool
) -> float:
    rows = benchmark_rows(bench, limit, smoke)
    return rows * float(bench["cost_per_sample"]) * float(model["cost_factor"])


def started_shards(done_shards: Iterable[Iterable[Any]]) -> Started:
    """Resume: a benchmark's shards done so far fix its count; the done ones are not planned."""
    started: Started = {}
    for m, b, index, count in done_shards:
        started.setdefault((m, b), {}).setdefault(int(count), set()).add(int(index))
    return started


def work_to_plan(
    catalogue: Mapping[str, Any],
    inputs: Mapping[str, Any],
    limits: Mapping[str, int | None],
    done: Iterable[Iterable[str]],
    done_shards: Iterable[Iterable[Any]],
) -> Work:
    """The inputs' models x benchmarks less those ``done``, with their costs and rows."""
    models_cat, benches_cat = catalogue["catalogue_models"], catalogue["catalogue_benchmarks"]
    smoke = bool(inputs["smoke"])
    done_set = {tuple(d) for d in done}
    started = started_shards(done_shards)
    pending = [
        (m, b) for m in inputs["models"] for b in inputs["benchmarks"] if (m, b) not in done_set
    ]
    return Work(
        done=done_set,  # type: ignore[arg-type]
        pending=pending,
        cost={
            (m, b): combination_cost(models_cat[m], benches_cat[b], limits[b], smoke)
            for m, b in pending
        },
        rows={(m, b): benchmark_rows(benches_cat[b], limits[b], smoke) for m, b in pending},
        started=started,
        shard_rows=inputs.get("shard_rows"),
    )


def even_share(work: Work, models_cat: Mapping[str, Any], slot_count: int) -> float:
    """The work spread evenly over the slots: every combination and each model's load once."""
    loads = sum(float(models_cat[m]["load_cost"]) for m in work.models())
    return (sum(work.cost.values()) + loads) / max(1, slot_count)
