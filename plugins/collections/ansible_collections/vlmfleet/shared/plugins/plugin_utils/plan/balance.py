"""The planner's balancing and shards: longest-job-first placement of whole models or single
pieces (benchmarks and shards) on the slots, polished by moving pieces off the busiest slot, and
the shard counts that keep the longest slot near the even share."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ansible_collections.vlmfleet.shared.plugins.plugin_utils.plan.cost import Combination, Work

MAX_MOVES = 10_000
# A shard pays a dataset preparation of its own, maybe a model load on its slot, and its part
# of the merge: a benchmark is never cut into parts smaller than this (unless shard_rows asks),
# so short runs (a sample limit) are not sharded at all.
MIN_SHARD_ROWS = 256
# The longest slot may exceed the work spread evenly over the slots by this factor before the
# planner makes the shards smaller (each halving of their size is one more round).
BALANCE = 1.05
MAX_SPLIT_ROUNDS = 10

Piece = tuple[str, int | None]  # (benchmark, shard index or None for the whole benchmark)
Pieces = dict[str, dict[Piece, float]]  # model -> {piece: cost}


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


def shard_counts(
    work: Work, piece_cap: float, candidates: Mapping[str, list[dict[str, Any]]]
) -> dict[Combination, int]:
    """Each pending combination's shard count (1: whole) for shards of at most ``piece_cap``;
    a benchmark an earlier attempt started keeps the count with the most shards done (the
    others' records are left unused)."""
    out = {}
    for mb in work.pending:
        started = work.started.get(mb)
        if started:
            out[mb] = max(started, key=lambda n: (len(started[n]), n))
        else:
            out[mb] = shard_count(
                work.rows[mb], work.cost[mb], piece_cap, work.shard_rows, len(candidates[mb[0]])
            )
    return out


def shard_pieces(
    counts: Mapping[Combination, int], work: Work, candidates: Mapping[str, Any]
) -> Pieces:
    """The pieces to place, per model: whole benchmarks, and the shards not done yet."""
    out: Pieces = {m: {} for m in candidates}
    for (m, b), n in counts.items():
        if n == 1:
            out[m][(b, None)] = work.cost[(m, b)]
            continue
        done_here = work.started.get((m, b), {}).get(n, set())
        for i in range(n):
            if i not in done_here:
                out[m][(b, i)] = work.cost[(m, b)] / n
    return {m: ps for m, ps in out.items() if ps}


def shard_and_balance(
    slots: list[dict[str, Any]],
    work: Work,
    candidates: Mapping[str, list[dict[str, Any]]],
    models_cat: Mapping[str, Any],
    models: list[str],
    even: float,
) -> tuple[dict[Combination, int], Pieces]:
    """Place the work on the slots (each slot's ``load`` and ``units``); returns the shard
    counts and the pieces placed. A benchmark costlier than the even share is sharded first;
    the shards halve in size while the plan is out of balance and halving still changes them."""
    order = {s["host"] + "/" + s["slot"]: i for i, s in enumerate(slots)}
    piece_cap = even
    counts = shard_counts(work, piece_cap, candidates)
    for _ in range(MAX_SPLIT_ROUNDS):
        pieces = shard_pieces(counts, work, candidates)
        makespan = balance(slots, pieces, candidates, models_cat, order, models)
        if work.shard_rows is not None or makespan <= BALANCE * even:
            break
        piece_cap /= 2
        finer = shard_counts(work, piece_cap, candidates)
        if finer == counts:
            break
        counts = finer
    return counts, pieces


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
