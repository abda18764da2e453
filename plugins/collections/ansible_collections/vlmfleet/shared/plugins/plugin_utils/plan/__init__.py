"""The planner: hosts' GPU facts + catalogue + inputs -> work units. Pure; no I/O.

A slot is one GPU (or a group of GPUs on one host for a model bigger than one GPU whose family
can spread over several, catalogue_families' multi_gpu, or the CPU of a GPU-less host in smoke
mode). A host whose `eval_gpu_slots` is N > 1 runs N slots on each
GPU (or group), each counted with 1/N of its memory: worker processes that share a GPU fill
each other's gaps between kernels (bench/README.md). "auto" (the default) does so where a host
has fewer GPUs than the run has models and the shares hold them.

A unit is (host, slot, gpus, model, [benchmarks]); a slot runs its units one after the other in
one worker process, so each model is loaded once per slot. A benchmark can be split into shards
(contract.Shard: contiguous parts of its rows), each placed like a benchmark; the run merges
their predictions and evaluates them once. Balancing (``balance``): whole models placed longest
first on the least loaded slot that fits them, or single benchmarks (and shards) placed longest
first where each ends soonest, whichever run is shorter after single benchmarks move off the
busiest slot while that shortens it (a slot without that model pays the model's load there).
A benchmark costlier than the even share of the run is sharded, and the shards are made smaller
until the longest slot is within BALANCE of the even share: no benchmark bounds a fleet.

One module per concern: ``layout`` (slots per host and GPU, which slots each model fits),
``cost`` (the work left and the cost model), ``balance`` (placement and shards),
``slot_files`` (units and each host's slot files), ``merges`` (merging a sharded benchmark),
``containers`` (the run's container names, labels and consoles). This module is the face:
``plan`` and the filters' functions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ansible_collections.vlmfleet.shared.plugins.plugin_utils.plan.balance import (
    MIN_SHARD_ROWS,
    shard_and_balance,
)
from ansible_collections.vlmfleet.shared.plugins.plugin_utils.plan.containers import (
    eval_consoles,
    eval_container_env,
    eval_container_labels,
    eval_container_spec,
    eval_ended_containers,
    eval_prepare_container,
    eval_run_label,
    eval_slot_containers,
)
from ansible_collections.vlmfleet.shared.plugins.plugin_utils.plan.cost import (
    Combination,
    Work,
    benchmark_limits,
    combination_cost,
    even_share,
    work_to_plan,
)
from ansible_collections.vlmfleet.shared.plugins.plugin_utils.plan.layout import (
    EvalPlanError,
    model_candidates,
    plan_slots,
    slot_summaries,
)
from ansible_collections.vlmfleet.shared.plugins.plugin_utils.plan.merges import eval_merges
from ansible_collections.vlmfleet.shared.plugins.plugin_utils.plan.slot_files import (
    benchmark_entry,
    eval_host_units,
    eval_official_benchmarks,
    hub_repo,
    plan_units,
)

__all__ = [
    "MIN_SHARD_ROWS",
    "EvalPlanError",
    "benchmark_entry",
    "combination_cost",
    "eval_consoles",
    "eval_container_env",
    "eval_container_labels",
    "eval_container_spec",
    "eval_ended_containers",
    "eval_host_units",
    "eval_limits_text",
    "eval_merges",
    "eval_official_benchmarks",
    "eval_plan",
    "eval_prepare_container",
    "eval_run_label",
    "eval_slot_containers",
    "hosts_from_hostvars",
    "hub_repo",
    "plan",
]


def plan(
    hosts: Mapping[str, Mapping[str, Any]],
    catalogue: Mapping[str, Any],
    inputs: Mapping[str, Any],
    done: Iterable[Iterable[str]] = (),
    done_shards: Iterable[Iterable[Any]] = (),
) -> dict[str, Any]:
    """Plan the combinations of inputs' models x benchmarks that are not in `done`
    ((model, benchmark) pairs with an ok record: a resume), and of a sharded benchmark the
    shards not in `done_shards` ([model, benchmark, index, count] with an ok shard record: a
    benchmark keeps the shard count it was started with).

    hosts: {inventory_hostname: {gpu_facts_present, gpu_facts_gpus: [{index, memory_mib, ...}]}}
    in inventory order. Returns {"run_id", "smoke", "limit", "precision", "limits", "slots",
    "units", "done", "sharded", "estimated_cost"}; raises EvalPlanError.
    """
    if not hosts:
        raise EvalPlanError("no reachable host to run on: check the inventory and --limit")
    models_cat = catalogue["catalogue_models"]
    limits = benchmark_limits(inputs)
    work = work_to_plan(catalogue, inputs, limits, done, done_shards)
    slots = plan_slots(hosts, catalogue, inputs)
    candidates = model_candidates(work.models(), slots, hosts, catalogue, bool(inputs["smoke"]))
    even = even_share(work, models_cat, len(slots))
    counts, pieces = shard_and_balance(
        slots, work, candidates, models_cat, list(inputs["models"]), even
    )
    units = plan_units(slots, catalogue, inputs, limits, counts, pieces)
    return plan_json(inputs, limits, slots, units, work, counts)


def plan_json(
    inputs: Mapping[str, Any],
    limits: dict[str, int | None],
    slots: list[dict[str, Any]],
    units: list[dict[str, Any]],
    work: Work,
    counts: Mapping[Combination, int],
) -> dict[str, Any]:
    """The plan as plan.json holds it and the playbooks read it."""
    models, benchmarks = list(inputs["models"]), list(inputs["benchmarks"])
    return {
        "run_id": inputs["run_id"],
        "smoke": bool(inputs["smoke"]),
        "limit": inputs.get("limit"),
        "precision": inputs.get("precision"),
        # Each benchmark's sample limit (None: the whole benchmark): precision's choice, or the
        # run's limit.
        "limits": limits,
        "judge": inputs["judge"],
        "judge_model": inputs.get("judge_model"),
        "judge_base_url": inputs.get("judge_base_url"),
        "max_new_tokens": inputs["max_new_tokens"],
        "models": models,
        "benchmarks": benchmarks,
        "slots": slot_summaries(slots, inputs),
        "units": units,
        "done": [
            {"model": m, "benchmark": b} for m in models for b in benchmarks if (m, b) in work.done
        ],
        # The sharded benchmarks: their count and the shards an earlier attempt finished.
        "sharded": [
            {
                "model": m,
                "benchmark": b,
                "count": counts[(m, b)],
                "done": sorted(work.started.get((m, b), {}).get(counts[(m, b)], set())),
            }
            for m, b in work.pending
            if counts[(m, b)] > 1
        ],
        "model_loads": len(units),
        "estimated_cost": round(max((s["load"] for s in slots), default=0.0), 1),
    }


def hosts_from_hostvars(names: Iterable[str], hostvars: Mapping[str, Any]) -> dict[str, Any]:
    """The facts the planner reads, from Ansible's hostvars, in play order."""
    out = {}
    for name in names:
        hv = hostvars[name]
        out[name] = {
            "gpu_facts_present": bool(hv.get("gpu_facts_present", False)),
            "gpu_facts_gpus": list(hv.get("gpu_facts_gpus") or []),
        }
    return out


def eval_plan(
    names: Iterable[str],
    hostvars: Mapping[str, Any],
    catalogue: Mapping[str, Any],
    inputs: Mapping[str, Any],
    done: Iterable[Iterable[str]] = (),
    done_shards: Iterable[Iterable[Any]] = (),
) -> dict[str, Any]:
    """Filter form: {"error": message or None, "plan": plan or None}."""
    try:
        hosts = hosts_from_hostvars(names, hostvars)
        return {"error": None, "plan": plan(hosts, catalogue, inputs, done, done_shards)}
    except EvalPlanError as err:
        return {"error": str(err), "plan": None}


def eval_limits_text(plan_: Mapping[str, Any]) -> str:
    """The plan's sample limits for its printout: "POPE 381, MMStar 381, ...", "whole" for a
    benchmark without one."""
    return ", ".join(f"{b} {'whole' if n is None else n}" for b, n in plan_["limits"].items())
