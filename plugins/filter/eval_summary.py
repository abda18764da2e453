"""Status records -> summary.json, and which combinations a resumed run still owes.

Status records are the worker's status.json files (docs/architecture.md). The summary has one
entry per combination of the run (models x benchmarks): ok, failed or missing (no record).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ansible_collections.vlmfleet.shared.plugins.module_utils.contract import (
    CONTAINER_LOG,
    RESULT_KEYS,
    SUMMARY_STATUSES,
    done_combinations,
    prepare_failure,
    run_records,
)


def summarize(
    plan: Mapping[str, Any],
    records: Iterable[Mapping[str, Any]],
    lost_hosts: Iterable[str] = (),
    slot_notes: Mapping[str, str] | None = None,
    not_prepared: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """One entry per combination of plan's models x benchmarks.

    An ok record wins wherever it was made (a resumed run may have moved a combination);
    otherwise the record of the host this attempt planned it on; otherwise missing, with the
    reason: its host was lost (unreachable or not collected) or the worker never wrote it
    (slot_notes: "host/slot" -> what its container said last, e.g. its exit code and log line),
    or its host's data preparation stopped the host's run (not_prepared: host -> "data not
    prepared: ..." from its prepare.json).
    """
    unprepared = not_prepared or {}
    notes = slot_notes or {}
    lost = set(lost_hosts)
    placed = {}
    for u in plan["units"]:
        for b in u["benchmarks"]:
            placed[(u["model"], b["name"])] = (u["host"], u["slot"])
    by_combo: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for r in records:
        by_combo.setdefault((r["model"], r["benchmark"]), []).append(r)

    entries = []
    for m in plan["models"]:
        for b in plan["benchmarks"]:
            host, slot = placed.get((m, b), (None, None))
            recs = by_combo.get((m, b), [])
            ok = [r for r in recs if r["status"] == "ok"]
            # Prefer the planned host's record; otherwise any, in a stable order.
            ok.sort(key=lambda r: (r.get("host") != host, str(r.get("host"))))
            mine = [r for r in recs if r["host"] == host]
            record = ok[0] if ok else (mine[0] if mine else None)
            entry: dict[str, Any] = {"host": host, "slot": slot, "model": m, "benchmark": b}
            entry |= {k: None for k in RESULT_KEYS} | {"status": "missing", "scores": {}}
            if record is not None:
                # contract.read_record turned a record that breaks the contract into a failed one.
                entry |= {"host": record["host"], "slot": record["slot"] or slot}
                entry |= {k: record[k] for k in RESULT_KEYS}
            elif host in lost:
                entry["reason"] = f"no status record: host {host} unreachable during the run"
            elif host is None:
                entry["reason"] = "no status record and not planned in this attempt"
            elif host in unprepared:
                entry["reason"] = unprepared[host]
            else:
                entry["reason"] = f"no status record: the worker on {host} {slot} did not reach it"
                if notes.get(f"{host}/{slot}"):
                    entry["reason"] += f" ({notes[f'{host}/{slot}']})"
            entries.append(entry)
    totals = {s: sum(1 for e in entries if e["status"] == s) for s in SUMMARY_STATUSES}
    totals["total"] = len(entries)
    return {
        "run_id": plan["run_id"],
        "smoke": plan["smoke"],
        "limit": plan["limit"],
        "model_loads": plan.get("model_loads"),
        "lost_hosts": sorted(lost),
        "combinations": entries,
        "totals": totals,
    }


def read_slot_notes(run_dir: str, plan: Mapping[str, Any]) -> dict[str, str]:
    """ "host/slot" -> the container's exit code (host.json) and last console line
    (<host>/<slot>/container.log), for the slots of the plan."""
    notes = {}
    root = Path(run_dir)
    for host, slot in dict.fromkeys((u["host"], u["slot"]) for u in plan["units"]):
        parts = []
        try:
            info = json.loads((root / host / "host.json").read_text(encoding="utf-8"))
            state = next(s for s in info.get("slot_states", []) if s.get("slot") == slot)
            if state.get("exit_code") not in (None, 0):
                parts.append(f"container exited {state['exit_code']}")
        except (OSError, ValueError, StopIteration, AttributeError):
            pass
        try:
            lines = (root / host / slot / CONTAINER_LOG).read_text(errors="replace").splitlines()
            last = next((line.strip() for line in reversed(lines) if line.strip()), "")
            if last:
                parts.append(last[:300])
        except OSError:
            pass
        if parts:
            notes[f"{host}/{slot}"] = ": ".join(parts)
    return notes


def eval_summary(
    plan: Mapping[str, Any], run_dir: str, lost_hosts: Iterable[str] = ()
) -> dict[str, Any]:
    """Filter form: reads the collected records of results/<run_id>/ on the controller."""
    hosts = dict.fromkeys(u["host"] for u in plan["units"])
    not_prepared = {h: why for h in hosts if (why := prepare_failure(Path(run_dir) / h))}
    return summarize(
        plan, run_records(run_dir), lost_hosts, read_slot_notes(run_dir, plan), not_prepared
    )


def eval_done_combinations(records: Iterable[Mapping[str, Any]], smoke: bool) -> list[list[str]]:
    """Resume: the (model, benchmark) pairs with a record that contract.is_done accepts."""
    return done_combinations(records, smoke=smoke)


def eval_controller_records(run_dir: str) -> list[dict[str, Any]]:
    return run_records(run_dir)


def eval_lost_hosts(plan: Mapping[str, Any], hostvars: Mapping[str, Any]) -> list[str]:
    """Planned hosts whose run directory did not come back (no eval_run_collected fact)."""
    lost = []
    for host in dict.fromkeys(u["host"] for u in plan["units"]):
        hv = hostvars.get(host, {})
        if not hv.get("eval_run_collected", False):
            lost.append(host)
    return lost


def combination_line(entry: Mapping[str, Any]) -> str:
    """One line for a summary entry, as the verdict lists the ones that are not ok."""
    where = f" on {entry['host']} {entry.get('slot') or ''}".rstrip() if entry.get("host") else ""
    reason = f": {entry['reason']}" if entry.get("reason") else ""
    return f"{entry['model']}/{entry['benchmark']}{where} {entry['status']}{reason}"


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "eval_summary": eval_summary,
            "eval_done_combinations": eval_done_combinations,
            "eval_controller_records": eval_controller_records,
            "eval_lost_hosts": eval_lost_hosts,
            "eval_combination_line": combination_line,
        }
