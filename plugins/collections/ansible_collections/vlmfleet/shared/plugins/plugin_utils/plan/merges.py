"""The planner's merges: a sharded benchmark whose shards are all done is merged and evaluated
once, on the host that ran most of its shards, from a merge slot file (contract.MERGE_SLOT)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ansible_collections.vlmfleet.shared.plugins.module_utils import contract
from ansible_collections.vlmfleet.shared.plugins.plugin_utils.plan.slot_files import (
    benchmark_entry,
    own_limit,
)


def eval_merges(
    plan_: Mapping[str, Any],
    catalogue: Mapping[str, Any],
    records: Iterable[Mapping[str, Any]],
    shard_records: Iterable[Mapping[str, Any]],
    hosts: Iterable[str],
) -> dict[str, dict[str, Any]]:
    """The merges the collected records call for: every benchmark of the plan's matrix without
    a done record of its own whose shards of one count are all done (contract.complete_shards),
    this attempt's or an earlier one's. Each goes to the host of ``hosts`` (collected, in play
    order) that ran most of its shards. Per merging host: {container, secret_env, slot_file (a
    merge slot file, contract.MERGE_SLOT), ship: [<host>/<model>/<benchmark>/shards/<k>-of-<n>
    folders other hosts ran, to bring from the controller]}."""
    per_host = merges_by_host(plan_, records, shard_records, hosts)
    return {host: merge_slot(plan_, catalogue, host, entry) for host, entry in per_host.items()}


def merges_by_host(
    plan_: Mapping[str, Any],
    records: Iterable[Mapping[str, Any]],
    shard_records: Iterable[Mapping[str, Any]],
    hosts: Iterable[str],
) -> dict[str, dict[str, Any]]:
    """Per merging host: {units: {model: [benchmark]}, ship: [shard folders other hosts ran]}."""
    smoke = bool(plan_["smoke"])
    able = list(hosts)
    done = {tuple(d) for d in contract.done_combinations(records, smoke=smoke)}
    shard_records = list(shard_records)
    per_host: dict[str, dict[str, Any]] = {}
    for m in plan_["models"]:
        for b in plan_["benchmarks"]:
            shards = contract.complete_shards(shard_records, m, b, smoke=smoke)
            if (m, b) in done or shards is None or not able:
                continue
            ran = [r["host"] for r in shards]
            host = max(able, key=lambda h: (ran.count(h), -able.index(h)))
            entry = per_host.setdefault(host, {"units": {}, "ship": []})
            entry["units"].setdefault(m, []).append(b)
            for r in shards:
                if r["host"] != host:
                    shard = contract.record_shard(r)
                    entry["ship"].append(
                        f"{r['host']}/{m}/{b}/{contract.SHARDS_DIR}/{shard.name}"  # type: ignore[union-attr]
                    )
    return per_host


def merge_slot(
    plan_: Mapping[str, Any], catalogue: Mapping[str, Any], host: str, entry: Mapping[str, Any]
) -> dict[str, Any]:
    """One host's merge: its container, the shard folders to ship and its merge slot file."""
    models_cat = catalogue["catalogue_models"]
    units = [
        {
            "model": m,
            "family": models_cat[m]["family"],
            "benchmarks": [
                benchmark_entry(b, catalogue, plan_["judge"])
                | own_limit(b, plan_.get("precision"), plan_["limits"])
                for b in bs
            ],
        }
        for m, bs in entry["units"].items()
    ]
    return {
        "container": contract.container_name(plan_["run_id"], host, contract.MERGE_SLOT),
        "secret_env": contract.CONTAINER_SECRET_ENV,
        "ship": entry["ship"],
        "slot_file": contract.slot_file(
            run_id=plan_["run_id"],
            host=host,
            slot=contract.MERGE_SLOT,
            # Evaluation is CPU work: the merge holds no GPU.
            device="cpu",
            smoke=plan_["smoke"],
            limit=plan_["limit"],
            judge=plan_["judge"],
            judge_model=plan_.get("judge_model"),
            judge_base_url=plan_.get("judge_base_url"),
            max_new_tokens=plan_["max_new_tokens"],
            batch_size=1,
            units=units,
        ),
    }
