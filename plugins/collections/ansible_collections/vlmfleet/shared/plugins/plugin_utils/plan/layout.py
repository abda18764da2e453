"""The planner's slot layout: which slots each host runs (one GPU, a group of GPUs for a model
bigger than one GPU, a share of a GPU, or the CPU) and which slots each model fits."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from ansible_collections.vlmfleet.shared.plugins.module_utils import contract

MIB_PER_GIB = 1024
# Activations, the KV cache and the allocator's slack beyond a model's catalogue figure (which is
# at batch 1): two LLaVA-1.5 slots (28 + 15 GiB) on an H100 peaked at 80 GB at batch 8.
AUTO_HEADROOM = 1.25


class EvalPlanError(ValueError):
    """No plan can satisfy the inputs; the message says why and what would."""


def gib(mib: float) -> float:
    return round(mib / MIB_PER_GIB, 1)


def gpu_slots(
    value: str | int, facts: Mapping[str, Any], need_gib: list[float], smoke: bool
) -> int:
    """How many worker slots share each GPU: the host's `eval_gpu_slots` as the validation
    step settled it. "auto" shares a GPU only where the host has fewer GPUs than the run has
    models, with as many slots as it takes to give each model its own (faster on an H100 than
    one slot a GPU: bench/README.md), and only while each
    share holds the biggest model with AUTO_HEADROOM to spare."""
    if value != "auto":
        return int(value)
    gpus = facts.get("gpu_facts_gpus") or []
    if not gpus or not need_gib:
        return 1
    smallest = min(int(g["memory_mib"]) for g in gpus) / MIB_PER_GIB
    wanted = min(contract.MAX_GPU_SLOTS, math.ceil(len(need_gib) / len(gpus)))
    for n in range(wanted, 1, -1):
        if smoke or smallest / n >= max(need_gib) * AUTO_HEADROOM:
            return n
    return 1


def host_slots(
    host: str,
    facts: Mapping[str, Any],
    need_gpus: int,
    smoke: bool,
    allow_cpu: bool,
    per_gpu: int = 1,
) -> list[dict[str, Any]]:
    """The slots of one host. need_gpus > 1 groups that many GPUs per slot (a model bigger
    than one GPU); leftover GPUs become single-GPU slots. per_gpu > 1 makes that many slots of
    each GPU (or group), named <gpu>s0, <gpu>s1..., each with its share of the memory."""
    gpus = sorted(facts.get("gpu_facts_gpus") or [], key=lambda g: int(g["index"]))
    if not facts.get("gpu_facts_present") or not gpus:
        if smoke or allow_cpu:
            # One slot unless eval_gpu_slots asks for more ("auto" gives 1): a CPU worker
            # already uses every core.
            cpu = {"host": host, "gpus": [], "device": "cpu", "memory_mib": None}
            if per_gpu == 1:
                return [cpu | {"slot": "cpu0", "shared_by": 1}]
            return [cpu | {"slot": f"cpu0s{k}", "shared_by": per_gpu} for k in range(per_gpu)]
        raise EvalPlanError(
            f"host {host!r} has no NVIDIA GPU (gpu_facts_present is false): run a smoke test "
            f"(-e smoke=true), allow CPU runs (-e allow_cpu=true), or leave the host out "
            f"(--limit '!{host}')"
        )
    size = max(1, need_gpus) if len(gpus) >= need_gpus else 1
    groups = []
    for start in range(0, len(gpus), size):
        group = gpus[start : start + size]
        # The remainder of a grouped host: single-GPU slots for the models that fit one.
        groups.extend([[g] for g in group] if len(group) < size else [group])
    slots = []
    for group in groups:
        whole = _gpu_slot(host, group)
        if per_gpu == 1:
            slots.append(whole)
            continue
        for k in range(per_gpu):
            slots.append(
                whole
                | {
                    "slot": f"{whole['slot']}s{k}",
                    "memory_mib": whole["memory_mib"] // per_gpu,
                    "shared_by": per_gpu,
                }
            )
    return slots


def _gpu_slot(host: str, group: list[Mapping[str, Any]]) -> dict[str, Any]:
    indexes = [int(g["index"]) for g in group]
    name = f"gpu{indexes[0]}" if len(indexes) == 1 else f"gpu{indexes[0]}-{indexes[-1]}"
    return {
        "host": host,
        "slot": name,
        "gpus": indexes,
        "device": "cuda",
        "memory_mib": sum(int(g["memory_mib"]) for g in group),
        "shared_by": 1,
    }


def gpus_needed(need_gib: float, gpus: list[Mapping[str, Any]], per_gpu: int = 1) -> int:
    """How many of this host's GPUs (the smallest one counted, its 1/per_gpu share) hold a
    model; 0: not enough."""
    if not gpus:
        return 0
    smallest = min(int(g["memory_mib"]) for g in gpus) / MIB_PER_GIB / per_gpu
    n = max(1, math.ceil(need_gib / smallest)) if smallest > 0 else 0
    return n if 0 < n <= len(gpus) else 0


def fits(slot: Mapping[str, Any], need_gib: float, smoke: bool, family: Mapping[str, Any]) -> bool:
    """Whether a model of ``family`` (its catalogue_families entry) needing ``need_gib`` can run
    in ``slot``: a device the family uses, one GPU unless the family can spread over several
    (multi_gpu), and the memory."""
    if slot["device"] not in family["devices"]:
        return False
    if len(slot["gpus"]) > 1 and not family["multi_gpu"]:
        return False
    if smoke or slot["device"] == "cpu":
        # Smoke checkpoints are tiny; CPU slots use host memory, which preflight checks.
        return True
    return slot["memory_mib"] / MIB_PER_GIB >= need_gib


def slot_gpus(hosts: Mapping[str, Mapping[str, Any]], slot: Mapping[str, Any]) -> list[Any]:
    """The GPU facts of a slot's GPUs."""
    facts = hosts[slot["host"]].get("gpu_facts_gpus") or []
    return [g for g in facts if int(g["index"]) in slot["gpus"]]


def plan_slots(
    hosts: Mapping[str, Mapping[str, Any]],
    catalogue: Mapping[str, Any],
    inputs: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """The run's slots, host by host: GPUs are grouped only where a requested model needs more
    than one of them and its family can spread over them."""
    models_cat, families = catalogue["catalogue_models"], catalogue["catalogue_families"]
    smoke = bool(inputs["smoke"])
    allow_cpu = bool(inputs.get("allow_cpu", False))
    models = list(inputs["models"])
    need_gib = [float(models_cat[m]["gpu_memory_gib"]) for m in models]
    spread_gib = [
        float(models_cat[m]["gpu_memory_gib"])
        for m in models
        if families[models_cat[m]["family"]]["multi_gpu"]
    ]
    slots: list[dict[str, Any]] = []
    for host, facts in hosts.items():
        gpus = facts.get("gpu_facts_gpus") or []
        per_gpu = gpu_slots(inputs["hosts"][host]["gpu_slots"], facts, need_gib, smoke)
        need = 1 if smoke else max([1, *(gpus_needed(n, gpus, per_gpu) for n in spread_gib)])
        slots.extend(host_slots(host, facts, need, smoke, allow_cpu, per_gpu))
    return slots


def model_candidates(
    models: Iterable[str],
    slots: list[dict[str, Any]],
    hosts: Mapping[str, Mapping[str, Any]],
    catalogue: Mapping[str, Any],
    smoke: bool,
) -> dict[str, list[dict[str, Any]]]:
    """The slots each model fits; raises EvalPlanError for a model that fits none, saying why
    and what would."""
    models_cat, families = catalogue["catalogue_models"], catalogue["catalogue_families"]
    candidates: dict[str, list[dict[str, Any]]] = {}
    for m in models:
        need = float(models_cat[m]["gpu_memory_gib"])
        family = families[models_cat[m]["family"]]
        candidates[m] = [s for s in slots if fits(s, need, smoke, family)]
        if not candidates[m]:
            raise EvalPlanError(_no_slot(m, slots, hosts, catalogue))
    return candidates


def _no_slot(
    m: str,
    slots: list[dict[str, Any]],
    hosts: Mapping[str, Mapping[str, Any]],
    catalogue: Mapping[str, Any],
) -> str:
    """Why model ``m`` fits no slot: no slot of a device its family uses, a model bigger than
    any one GPU (share) whose family cannot spread, or no slot with the memory."""
    models_cat, families = catalogue["catalogue_models"], catalogue["catalogue_families"]
    need = float(models_cat[m]["gpu_memory_gib"])
    family = families[models_cat[m]["family"]]
    devices = family["devices"]
    shared = any(s["shared_by"] > 1 for s in slots)
    if not any(s["device"] in devices for s in slots):
        able = [f for f, spec in families.items() if "cpu" in spec["devices"]]
        return (
            f"model {m!r} (family {models_cat[m]['family']}) runs only on "
            f"{', '.join(devices)} and no planned host has a GPU; families that run on the "
            f"CPU: {', '.join(able)}"
        )
    if not family["multi_gpu"]:
        single = [s for s in slots if len(s["gpus"]) <= 1 and s["device"] in devices]
        largest = max(
            (int(g["memory_mib"]) // s["shared_by"] for s in slots for g in slot_gpus(hosts, s)),
            default=0,
        )
        return (
            f"model {m!r} needs {need:g} GiB of GPU memory on one GPU: family "
            f"{models_cat[m]['family']} cannot spread over several GPUs "
            f"({family['single_gpu_reason']}), and the largest GPU "
            f"{'share ' if shared else ''}planned has "
            f"{gib(largest):g} GiB"
            + ("" if single else " (every GPU here is grouped for a bigger model)")
            + f"; families that spread: "
            f"{', '.join(f for f, spec in families.items() if spec['multi_gpu'])}"
        )
    biggest = max(slots, key=lambda s: s["memory_mib"] or 0)
    return (
        f"model {m!r} needs {need:g} GiB of GPU memory but no slot has that much: the "
        f"largest is {biggest['host']} {biggest['slot']} with "
        f"{gib(biggest['memory_mib'] or 0):g} GiB (GPUs of one host are combined only "
        f"when enough of them hold it); drop the model or add a bigger GPU"
        + (", or run fewer slots per GPU (eval_gpu_slots) so each gets more" if shared else "")
    )


def slot_summaries(slots: list[dict[str, Any]], inputs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """plan.json's slots: where each runs, its memory, batch size and estimated cost."""
    return [
        {
            "host": s["host"],
            "slot": s["slot"],
            "gpus": s["gpus"],
            "device": s["device"],
            "memory_gib": None if s["memory_mib"] is None else gib(s["memory_mib"]),
            "shared_by": s["shared_by"],
            "batch_size": inputs["hosts"][s["host"]]["batch_size"],
            "estimated_cost": round(s["load"], 1),
        }
        for s in slots
    ]
