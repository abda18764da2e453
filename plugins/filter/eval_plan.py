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
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from ansible_collections.vlmfleet.shared.plugins.module_utils import contract

MIB_PER_GIB = 1024
# A limit-less smoke run still only sees the worker's small synthetic datasets.
SMOKE_SAMPLES = 10
MAX_MOVES = 10_000
# Activations, the KV cache and the allocator's slack beyond a model's catalogue figure (which is
# at batch 1): two LLaVA-1.5 slots (28 + 15 GiB) on an H100 peaked at 80 GB at batch 8.
AUTO_HEADROOM = 1.25
# A shard pays a dataset preparation of its own, maybe a model load on its slot, and its part
# of the merge: a benchmark is never cut into parts smaller than this (unless shard_rows asks),
# so short runs (a sample limit) are not sharded at all.
MIN_SHARD_ROWS = 256
# The longest slot may exceed the work spread evenly over the slots by this factor before the
# planner makes the shards smaller (each halving of their size is one more round).
BALANCE = 1.05
MAX_SPLIT_ROUNDS = 10


class EvalPlanError(ValueError):
    """No plan can satisfy the inputs; the message says why and what would."""


def _gib(mib: float) -> float:
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


def _gpus(hosts: Mapping[str, Mapping[str, Any]], slot: Mapping[str, Any]) -> list[Any]:
    """The GPU facts of a slot's GPUs."""
    facts = hosts[slot["host"]].get("gpu_facts_gpus") or []
    return [g for g in facts if int(g["index"]) in slot["gpus"]]


def benchmark_limits(inputs: Mapping[str, Any]) -> dict[str, int | None]:
    """Each benchmark's sample limit: the one precision chose for it (the validation step's
    ``limits``), else the run's ``limit`` (None: the whole benchmark)."""
    chosen = inputs.get("limits")
    return {b: inputs.get("limit") if chosen is None else chosen[b] for b in inputs["benchmarks"]}


def own_limit(
    name: str, precision: float | None, limits: Mapping[str, int | None]
) -> dict[str, int | None]:
    """A benchmark's slot-file key ``limit`` (contract.Benchmark.limit) where precision chose
    it; nothing under the run's one ``limit``, which the slot file carries."""
    return {} if precision is None else {"limit": limits[name]}


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


def shard_count(
    rows: int, cost: float, piece_cap: float, shard_rows: int | None, slots: int
) -> int:
    """Into how many shards a benchmark's rows go: as many as shard_rows (the user's cap on
    rows per shard) asks, else enough to keep each shard's cost within piece_cap, never more
    than the slots that can run it nor parts smaller than MIN_SHARD_ROWS."""
    if shard_rows is not None:
        return max(1, math.ceil(rows / shard_rows))
    wanted = math.ceil(cost / piece_cap) if piece_cap > 0 else 1
    return max(1, min(wanted, slots, rows // MIN_SHARD_ROWS))


Piece = tuple[str, int | None]  # (benchmark, shard index or None for the whole benchmark)


def balance(
    slots: list[dict[str, Any]],
    pieces: Mapping[str, Mapping[Piece, float]],
    candidates: Mapping[str, list[dict[str, Any]]],
    models_cat: Mapping[str, Any],
    order: Mapping[str, int],
    models: list[str],
) -> float:
    """Place every piece (model -> {piece: cost}) on the slots; returns the longest slot's
    load. Two starts, each polished by moving single pieces off the busiest slot while that
    shortens the run: whole models longest first (fewest model loads), and single pieces
    longest first where each ends soonest (spreads shards); the shorter run wins, the first
    on a tie."""
    placements = []
    for start in ("models", "pieces"):
        for slot in slots:
            slot["load"] = 0.0
            slot["units"] = {}  # model -> [pieces]
        makespan = _balance_from(start, slots, pieces, candidates, models_cat, order, models)
        placements.append((makespan, [(s["load"], s["units"]) for s in slots]))
    (whole, by_model), (spread, by_piece) = placements
    makespan, best = (spread, by_piece) if spread < whole - 1e-9 else (whole, by_model)
    for slot, (load, units) in zip(slots, best, strict=True):
        slot["load"], slot["units"] = load, units
    return makespan


def _balance_from(
    start: str,
    slots: list[dict[str, Any]],
    pieces: Mapping[str, Mapping[Piece, float]],
    candidates: Mapping[str, list[dict[str, Any]]],
    models_cat: Mapping[str, Any],
    order: Mapping[str, int],
    models: list[str],
) -> float:
    def load_cost(m: str) -> float:
        return float(models_cat[m]["load_cost"])

    def key(s: Mapping[str, Any]) -> int:
        return order[s["host"] + "/" + s["slot"]]

    def model_cost(m: str) -> float:
        return load_cost(m) + sum(pieces[m].values())

    def finish(s: Mapping[str, Any], m: str, cost: float) -> float:
        return s["load"] + cost + (0 if m in s["units"] else load_cost(m))

    if start == "models":
        # Longest processing time first: each model whole on the least loaded slot.
        for m in sorted(pieces, key=lambda m: (-model_cost(m), models.index(m))):
            slot = min(candidates[m], key=lambda s: (s["load"], key(s)))
            slot["units"][m] = list(pieces[m])
            slot["load"] += model_cost(m)
    else:
        # Longest processing time first, piece by piece, each where it ends soonest.
        flat = [(c, m, p) for m, ps in pieces.items() for p, c in ps.items()]
        flat.sort(key=lambda x: (-x[0], models.index(x[1]), x[2][0], x[2][1] or 0))
        for c, m, p in flat:
            slot = min(candidates[m], key=lambda s: (finish(s, m, c), key(s)))
            slot["load"] = finish(slot, m, c)
            slot["units"].setdefault(m, []).append(p)

    # Then move single pieces off the busiest slot while the longest slot shrinks.
    for _ in range(MAX_MOVES):
        busiest = max(slots, key=lambda s: (s["load"], -key(s)))
        best = None
        for m, ps in busiest["units"].items():
            # The same slot is the best destination for every piece of one model: the one that
            # ends least loaded (its load, plus the model's load where it lacks the model).
            others = [d for d in candidates[m] if d is not busiest]
            if not others:
                continue
            dst = min(
                others,
                key=lambda d: (d["load"] + (0 if m in d["units"] else load_cost(m)), key(d)),
            )
            base = dst["load"] + (0 if m in dst["units"] else load_cost(m))
            for p in ps:
                src_after = busiest["load"] - pieces[m][p]
                if len(ps) == 1:
                    src_after -= load_cost(m)
                worst = max(src_after, base + pieces[m][p])
                if worst < busiest["load"] - 1e-9 and (best is None or worst < best[0]):
                    best = (worst, m, p, dst)
        if best is None:
            break
        _, m, p, dst = best
        busiest["units"][m].remove(p)
        busiest["load"] -= pieces[m][p]
        if not busiest["units"][m]:
            del busiest["units"][m]
            busiest["load"] -= load_cost(m)
        dst["units"].setdefault(m, []).append(p)
        dst["load"] += pieces[m][p] + (0 if len(dst["units"][m]) > 1 else load_cost(m))
    return max((s["load"] for s in slots), default=0.0)


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
    benches_cat = catalogue["catalogue_benchmarks"]
    smoke = bool(inputs["smoke"])
    allow_cpu = bool(inputs.get("allow_cpu", False))
    limit = inputs.get("limit")
    limits = benchmark_limits(inputs)
    done_set = {tuple(d) for d in done}
    shard_rows = inputs.get("shard_rows")
    # Resume: a benchmark's shards done so far fix its count; the done ones are not planned.
    started_shards: dict[tuple[str, str], dict[int, set[int]]] = {}
    for m, b, index, count in done_shards:
        started_shards.setdefault((m, b), {}).setdefault(int(count), set()).add(int(index))
    models = list(inputs["models"])
    benchmarks = list(inputs["benchmarks"])

    # Slot layout: group GPUs only where a requested model needs more than one of them and its
    # family can spread over them.
    families = catalogue["catalogue_families"]
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

    pending = [(m, b) for m in models for b in benchmarks if (m, b) not in done_set]
    cost = {
        (m, b): combination_cost(models_cat[m], benches_cat[b], limits[b], smoke)
        for m, b in pending
    }
    candidates: dict[str, list[dict[str, Any]]] = {}
    for m in dict.fromkeys(m for m, _ in pending):
        need = float(models_cat[m]["gpu_memory_gib"])
        family = families[models_cat[m]["family"]]
        devices = family["devices"]
        candidates[m] = [s for s in slots if fits(s, need, smoke, family)]
        if not candidates[m] and not any(s["device"] in devices for s in slots):
            able = [f for f, spec in families.items() if "cpu" in spec["devices"]]
            raise EvalPlanError(
                f"model {m!r} (family {models_cat[m]['family']}) runs only on "
                f"{', '.join(devices)} and no planned host has a GPU; families that run on the "
                f"CPU: {', '.join(able)}"
            )
        if not candidates[m] and not family["multi_gpu"]:
            single = [s for s in slots if len(s["gpus"]) <= 1 and s["device"] in devices]
            largest = max(
                (int(g["memory_mib"]) // s["shared_by"] for s in slots for g in _gpus(hosts, s)),
                default=0,
            )
            raise EvalPlanError(
                f"model {m!r} needs {need:g} GiB of GPU memory on one GPU: family "
                f"{models_cat[m]['family']} cannot spread over several GPUs "
                f"({family['single_gpu_reason']}), and the largest GPU "
                f"{'share ' if any(s['shared_by'] > 1 for s in slots) else ''}planned has "
                f"{_gib(largest):g} GiB"
                + ("" if single else " (every GPU here is grouped for a bigger model)")
                + f"; families that spread: "
                f"{', '.join(f for f, spec in families.items() if spec['multi_gpu'])}"
            )
        if not candidates[m]:
            biggest = max(slots, key=lambda s: s["memory_mib"] or 0)
            raise EvalPlanError(
                f"model {m!r} needs {need:g} GiB of GPU memory but no slot has that much: the "
                f"largest is {biggest['host']} {biggest['slot']} with "
                f"{_gib(biggest['memory_mib'] or 0):g} GiB (GPUs of one host are combined only "
                f"when enough of them hold it); drop the model or add a bigger GPU"
                + (
                    ", or run fewer slots per GPU (eval_gpu_slots) so each gets more"
                    if any(s["shared_by"] > 1 for s in slots)
                    else ""
                )
            )

    order = {s["host"] + "/" + s["slot"]: i for i, s in enumerate(slots)}
    rows = {(m, b): benchmark_rows(benches_cat[b], limits[b], smoke) for m, b in pending}
    # The work spread evenly: every combination and each model's load once.
    even = (sum(cost.values()) + sum(float(models_cat[m]["load_cost"]) for m in candidates)) / max(
        1, len(slots)
    )

    def counts_for(piece_cap: float) -> dict[tuple[str, str], int]:
        out = {}
        for mb in pending:
            started = started_shards.get(mb)
            if started:
                # The count with the most shards done; the others' records are left unused.
                out[mb] = max(started, key=lambda n: (len(started[n]), n))
            else:
                out[mb] = shard_count(
                    rows[mb], cost[mb], piece_cap, shard_rows, len(candidates[mb[0]])
                )
        return out

    def pieces_for(counts: Mapping[tuple[str, str], int]) -> dict[str, dict[Piece, float]]:
        out: dict[str, dict[Piece, float]] = {m: {} for m in candidates}
        for (m, b), n in counts.items():
            if n == 1:
                out[m][(b, None)] = cost[(m, b)]
                continue
            done_here = started_shards.get((m, b), {}).get(n, set())
            for i in range(n):
                if i not in done_here:
                    out[m][(b, i)] = cost[(m, b)] / n
        return {m: ps for m, ps in out.items() if ps}

    # A benchmark costlier than the even share is sharded first; the shards halve in size
    # while the plan is out of balance and halving still changes them.
    piece_cap = even
    counts = counts_for(piece_cap)
    for _ in range(MAX_SPLIT_ROUNDS):
        pieces = pieces_for(counts)
        makespan = balance(slots, pieces, candidates, models_cat, order, models)
        if shard_rows is not None or makespan <= BALANCE * even:
            break
        piece_cap /= 2
        finer = counts_for(piece_cap)
        if finer == counts:
            break
        counts = finer

    units = []
    for slot in slots:
        # Benchmarks in the order asked for, models in the order asked for: reproducible logs.
        container = contract.container_name(inputs["run_id"], slot["host"], slot["slot"])
        for m in sorted(slot["units"], key=models.index):
            ps = sorted(slot["units"][m], key=lambda p: (benchmarks.index(p[0]), p[1] or 0))
            units.append(
                {
                    "host": slot["host"],
                    "slot": slot["slot"],
                    "gpus": slot["gpus"],
                    "device": slot["device"],
                    "container": container,
                    "model": m,
                    "family": models_cat[m]["family"],
                    "benchmarks": [
                        benchmark_entry(b, catalogue, inputs["judge"])
                        | own_limit(b, inputs.get("precision"), limits)
                        | (
                            {}
                            if i is None
                            else {contract.SHARD_KEY: {"index": i, "count": counts[(m, b)]}}
                        )
                        for b, i in ps
                    ],
                    **smoke_checkpoint(models_cat[m], inputs),
                    **custom_checkpoint(m, models_cat[m]),
                    **hub_repo(models_cat[m]),
                    "estimated_cost": round(
                        float(models_cat[m]["load_cost"]) + sum(pieces[m][p] for p in ps), 1
                    ),
                }
            )
    out_slots = [
        {
            "host": s["host"],
            "slot": s["slot"],
            "gpus": s["gpus"],
            "device": s["device"],
            "memory_gib": None if s["memory_mib"] is None else _gib(s["memory_mib"]),
            "shared_by": s["shared_by"],
            "batch_size": inputs["hosts"][s["host"]]["batch_size"],
            "estimated_cost": round(s["load"], 1),
        }
        for s in slots
    ]
    return {
        "run_id": inputs["run_id"],
        "smoke": smoke,
        "limit": limit,
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
        "slots": out_slots,
        "units": units,
        "done": [
            {"model": m, "benchmark": b} for m in models for b in benchmarks if (m, b) in done_set
        ],
        # The sharded benchmarks: their count and the shards an earlier attempt finished.
        "sharded": [
            {
                "model": m,
                "benchmark": b,
                "count": counts[(m, b)],
                "done": sorted(started_shards.get((m, b), {}).get(counts[(m, b)], set())),
            }
            for m, b in pending
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
    smoke = bool(plan_["smoke"])
    able = list(hosts)
    done = {tuple(d) for d in contract.done_combinations(records, smoke=smoke)}
    shard_records = list(shard_records)
    models_cat = catalogue["catalogue_models"]
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
    out = {}
    for host, entry in per_host.items():
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
        out[host] = {
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
    return out


def eval_limits_text(plan_: Mapping[str, Any]) -> str:
    """The plan's sample limits for its printout: "POPE 381, MMStar 381, ...", "whole" for a
    benchmark without one."""
    return ", ".join(f"{b} {'whole' if n is None else n}" for b, n in plan_["limits"].items())


def eval_slot_containers(slots: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    """[{slot, container}] of eval_host_units' slots, as eval_slot_status takes them."""
    return [{"slot": s["slot"], "container": s["container"]} for s in slots]


def eval_prepare_container(run_id: str, host: str) -> str:
    """The name of the host's one-shot data preparation container (vlmfleet.prepare_data)."""
    return contract.container_name(run_id, host, contract.PREPARE_SLOT)


def eval_container_labels(run_id: str, host: str, slot: str) -> dict[str, str]:
    """The labels of a run's container: a later attempt finds the run's containers by them."""
    return {contract.RUN_LABEL: run_id, contract.HOST_LABEL: host, contract.SLOT_LABEL: slot}


def eval_run_label(run_id: str, host: str | None = None) -> list[str]:
    """The label filters (docker ps --filter label=..., all of them) that find a run's
    containers, those of one inventory host when ``host`` is given."""
    found = [f"{contract.RUN_LABEL}={run_id}"]
    return found + ([f"{contract.HOST_LABEL}={host}"] if host else [])


def eval_ended_containers(found: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The run's containers that have ended, from docker_host_info's verbose list: {name, slot,
    created (epoch seconds)}; a running one is left to the attempt that waits on it."""
    out = []
    for c in found:
        if c.get("State") in contract.RUNNING_STATES:
            continue
        names = c.get("Names") or [c.get("Id", "")]
        out.append(
            {
                "name": str(names[0]).lstrip("/"),
                "slot": (c.get("Labels") or {}).get(contract.SLOT_LABEL) or "unlabelled",
                "created": int(c.get("Created") or 0),
            }
        )
    return out


def eval_consoles(read: Iterable[Mapping[str, Any]], earlier: bool) -> list[dict[str, Any]]:
    """The consoles read (`docker logs` of eval_ended_containers, one loop result each) that are
    to be saved: {name, slot, file, content}. This attempt's go to <slot>/container.log, which
    the summary reads; an earlier attempt's to <slot>/container-<created, UTC>.log beside it, so
    neither overwrites the other."""
    out = []
    for r in read:
        if r.get("rc") != 0:
            continue
        c = r["item"]
        stamp = datetime.fromtimestamp(c["created"], tz=UTC).strftime("%Y%m%dT%H%M%SZ")
        name = contract.CONTAINER_LOG
        if earlier:
            name = name.replace(".log", f"-{stamp}.log")
        out.append({"name": c["name"], "slot": c["slot"], "file": name, "content": r["stdout"]})
    return out


def eval_container_env(host_outputs: str) -> dict[str, str]:
    """A container's environment naming the host's path of its outputs mount, so that the
    worker's disk messages name a path the user can look at on the host."""
    return {contract.HOST_OUTPUTS_ENV: host_outputs}


def eval_official_benchmarks(slots: Iterable[Mapping[str, Any]]) -> list[str]:
    """The benchmarks of eval_host_units' slots that VLMEvalKit's own data serves (no custom
    file shipped: no md5), in order, once each: what the preparation step prepares."""
    return contract.official_benchmarks(contract.parse_slot(s["slot_file"]) for s in slots)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "eval_plan": eval_plan,
            "eval_host_units": eval_host_units,
            "eval_slot_containers": eval_slot_containers,
            "eval_limits_text": eval_limits_text,
            "eval_merges": eval_merges,
            "eval_prepare_container": eval_prepare_container,
            "eval_official_benchmarks": eval_official_benchmarks,
            "eval_container_labels": eval_container_labels,
            "eval_run_label": eval_run_label,
            "eval_container_env": eval_container_env,
            "eval_ended_containers": eval_ended_containers,
            "eval_consoles": eval_consoles,
        }
