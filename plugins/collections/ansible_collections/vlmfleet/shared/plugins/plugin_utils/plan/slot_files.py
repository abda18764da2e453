"""The planner's units and slot files: what each slot runs (models in order, each with its
benchmarks or shards and what the worker loads), and each host's slot files, written whole by
the worker's own contract (contract.slot_file) so that the run role only writes them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ansible_collections.vlmfleet.shared.plugins.module_utils import contract
from ansible_collections.vlmfleet.shared.plugins.plugin_utils.plan.balance import Piece, Pieces
from ansible_collections.vlmfleet.shared.plugins.plugin_utils.plan.cost import Combination


def benchmark_entry(
    name: str, catalogue: Mapping[str, Any], judge: str = contract.EXACT_MATCHING
) -> dict[str, Any]:
    """A benchmark as the slot file names it: its kind and what the kind declares (VLMEvalKit's
    dataset type, score scale, smoke data shape), the benchmark's own smoke shape first, and
    its judge: the run's where VLMEvalKit's evaluation of the kind asks one (``judged``)."""
    bench = catalogue["catalogue_benchmarks"][name]
    kind = catalogue["catalogue_kinds"][bench["kind"]]
    entry = {
        "name": name,
        "kind": bench["kind"],
        "dataset_type": kind["dataset_type"],
        "score_scale": float(kind["score_scale"]),
        "smoke_shape": bench.get("smoke_shape", kind["smoke_shape"]),
        "judge": judge if kind.get("judged") else contract.EXACT_MATCHING,
    }
    # A custom benchmark's file, shipped to the host: the worker checks it is that one.
    return entry | ({"md5": bench["md5"]} if bench.get("custom") else {})


def own_limit(
    name: str, precision: float | None, limits: Mapping[str, int | None]
) -> dict[str, int | None]:
    """A benchmark's slot-file key ``limit`` (contract.Benchmark.limit) where precision chose
    it; nothing under the run's one ``limit``, which the slot file carries."""
    return {} if precision is None else {"limit": limits[name]}


def custom_checkpoint(model: str, entry: Mapping[str, Any]) -> dict[str, str]:
    """A custom model's checkpoint as the worker's container sees it (slot.json's unit key
    checkpoint); nothing for a catalogue model."""
    if not entry.get("custom"):
        return {}
    return {"checkpoint": f"{contract.CONTAINER_MODELS}/{model}"}


def hub_repo(entry: Mapping[str, Any]) -> dict[str, str]:
    """A catalogue model's hub repo (slot.json's unit key hf_repo): what its family starts
    loading before VLMEvalKit's import. Nothing for a custom model."""
    if entry.get("custom") or not entry.get("hf_repo"):
        return {}
    return {"hf_repo": entry["hf_repo"]}


def smoke_checkpoint(model: Mapping[str, Any], inputs: Mapping[str, Any]) -> dict[str, str]:
    """What a smoke run's unit loads for this model (slot.json's unit key smoke_checkpoint):
    the catalogue's known-answer checkpoint with smoke_weights=known, else a tiny random one.
    Nothing outside smoke mode."""
    if not inputs["smoke"]:
        return {}
    if inputs.get("smoke_weights", "known") == "known" and model.get("smoke_checkpoint"):
        return {"smoke_checkpoint": model["smoke_checkpoint"]}
    return {"smoke_checkpoint": "random"}


def plan_units(
    slots: list[dict[str, Any]],
    catalogue: Mapping[str, Any],
    inputs: Mapping[str, Any],
    limits: Mapping[str, int | None],
    counts: Mapping[Combination, int],
    pieces: Pieces,
) -> list[dict[str, Any]]:
    """The balanced slots' units, slot by slot: models in the order asked for, each with its
    benchmarks (and shards) in the order asked for: reproducible logs."""
    models, benchmarks = list(inputs["models"]), list(inputs["benchmarks"])
    models_cat = catalogue["catalogue_models"]
    units = []
    for slot in slots:
        container = contract.container_name(inputs["run_id"], slot["host"], slot["slot"])
        for m in sorted(slot["units"], key=models.index):
            ps = sorted(slot["units"][m], key=lambda p: (benchmarks.index(p[0]), p[1] or 0))
            units.append(
                {k: slot[k] for k in ("host", "slot", "gpus", "device")}
                | {
                    "container": container,
                    "model": m,
                    "family": models_cat[m]["family"],
                    "benchmarks": unit_benchmarks(m, ps, catalogue, inputs, limits, counts),
                    **smoke_checkpoint(models_cat[m], inputs),
                    **custom_checkpoint(m, models_cat[m]),
                    **hub_repo(models_cat[m]),
                    "estimated_cost": round(
                        float(models_cat[m]["load_cost"]) + sum(pieces[m][p] for p in ps), 1
                    ),
                }
            )
    return units


def unit_benchmarks(
    model: str,
    ps: list[Piece],
    catalogue: Mapping[str, Any],
    inputs: Mapping[str, Any],
    limits: Mapping[str, int | None],
    counts: Mapping[Combination, int],
) -> list[dict[str, Any]]:
    """A unit's benchmarks as its slot file names them, a shard with its index and count."""
    return [
        benchmark_entry(b, catalogue, inputs["judge"])
        | own_limit(b, inputs.get("precision"), limits)
        | ({} if i is None else {contract.SHARD_KEY: {"index": i, "count": counts[(model, b)]}})
        for b, i in ps
    ]


def eval_host_units(plan_: Mapping[str, Any], host: str) -> list[dict[str, Any]]:
    """This host's slots: {slot, gpus, device, container, models, secret_env, models_mount,
    outputs_mount, slot_file}, each
    slot file complete (contract.slot_file) so that the run role only writes it."""
    slots: dict[str, dict[str, Any]] = {}
    batch = {s["slot"]: s["batch_size"] for s in plan_["slots"] if s["host"] == host}
    shared_by = {s["slot"]: s["shared_by"] for s in plan_["slots"] if s["host"] == host}
    for u in plan_["units"]:
        if u["host"] != host:
            continue
        s = slots.setdefault(
            u["slot"],
            {k: u[k] for k in ("slot", "gpus", "device", "container")} | {"units": []},
        )
        s["units"].append({k: u[k] for k in contract.UNIT_KEYS if k in u})
    out = []
    for s in slots.values():
        units = s.pop("units")
        s["models"] = [u["model"] for u in units]
        s["secret_env"] = contract.CONTAINER_SECRET_ENV
        s["models_mount"] = contract.CONTAINER_MODELS
        s["outputs_mount"] = contract.CONTAINER_OUTPUTS
        s["slot_file"] = contract.slot_file(
            run_id=plan_["run_id"],
            host=host,
            slot=s["slot"],
            device=s["device"],
            smoke=plan_["smoke"],
            limit=plan_["limit"],
            judge=plan_["judge"],
            judge_model=plan_.get("judge_model"),
            judge_base_url=plan_.get("judge_base_url"),
            max_new_tokens=plan_["max_new_tokens"],
            batch_size=batch[s["slot"]],
            shared_by=shared_by[s["slot"]],
            units=units,
        )
        out.append(s)
    return out


def eval_official_benchmarks(slots: Iterable[Mapping[str, Any]]) -> list[str]:
    """The benchmarks of eval_host_units' slots that VLMEvalKit's own data serves (no custom
    file shipped: no md5), in order, once each: what the preparation step prepares."""
    return contract.official_benchmarks(contract.parse_slot(s["slot_file"]) for s in slots)
