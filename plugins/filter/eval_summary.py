"""Status records -> summary.json, and which combinations a resumed run still owes.

Status records are the worker's status.json files (docs/architecture.md). The summary has one
entry per combination of the run (models x benchmarks): ok, failed or missing (no record).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

STATUSES = ("ok", "failed", "missing")
ENTRY_KEYS = (
    "status",
    "reason",
    "seconds",
    "samples",
    "scores",
    "primary_metric",
    "primary_score",
    "primary_scale",
    "scoring_note",
)


def read_records(run_dir: str) -> list[dict[str, Any]]:
    """Every status.json under a controller run directory (results/<run_id>/), host by host.
    A record that cannot be read is returned as a failed one naming the file, not dropped."""
    records = []
    root = Path(run_dir)
    if not root.is_dir():
        return records
    for path in sorted(root.glob("*/*/*/status.json")):
        host, model, bench = path.parts[-4:-1]
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as err:
            data = {"status": "failed", "reason": f"unreadable status record {path}: {err}"}
        data.setdefault("host", host)
        data.setdefault("model", model)
        data.setdefault("benchmark", bench)
        records.append(data)
    return records


def ok_combinations(records: Iterable[Mapping[str, Any]]) -> list[list[str]]:
    """Resume selection: the (model, benchmark) pairs that already have an ok record."""
    seen = {(r["model"], r["benchmark"]) for r in records if r.get("status") == "ok"}
    return [list(p) for p in sorted(seen)]


def pending_combinations(
    models: list[str], benchmarks: list[str], records: Iterable[Mapping[str, Any]]
) -> list[list[str]]:
    done = {tuple(p) for p in ok_combinations(records)}
    return [[m, b] for m in models for b in benchmarks if (m, b) not in done]


def summarize(
    plan: Mapping[str, Any],
    records: Iterable[Mapping[str, Any]],
    lost_hosts: Iterable[str] = (),
    slot_notes: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """One entry per combination of plan's models x benchmarks.

    An ok record wins wherever it was made (a resumed run may have moved a combination);
    otherwise the record of the host this attempt planned it on; otherwise missing, with the
    reason: its host was lost (unreachable or not collected) or the worker never wrote it
    (slot_notes: "host/slot" -> what its container said last, e.g. its exit code and log line).
    """
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
            ok = [r for r in recs if r.get("status") == "ok"]
            # Prefer the planned host's record; otherwise any, in a stable order.
            ok.sort(key=lambda r: (r.get("host") != host, str(r.get("host"))))
            mine = [r for r in recs if r.get("host") == host]
            record = ok[0] if ok else (mine[0] if mine else None)
            entry: dict[str, Any] = {
                "host": host,
                "slot": slot,
                "model": m,
                "benchmark": b,
                "status": "missing",
                "reason": None,
                "seconds": None,
                "samples": None,
                "scores": {},
                "primary_metric": None,
                "primary_score": None,
                "primary_scale": None,
                "scoring_note": None,
            }
            if record is not None:
                entry["host"] = record.get("host", host)
                entry["slot"] = record.get("slot", slot)
                for key in ENTRY_KEYS:
                    if key in record:
                        entry[key] = record[key]
                if entry["status"] not in STATUSES[:2]:
                    entry["reason"] = f"unknown status {entry['status']!r} in the record"
                    entry["status"] = "failed"
                entry["scores"] = entry["scores"] or {}
            elif host in lost:
                entry["reason"] = f"no status record: host {host} unreachable during the run"
            elif host is None:
                entry["reason"] = "no status record and not planned in this attempt"
            else:
                entry["reason"] = f"no status record: the worker on {host} {slot} did not reach it"
                if notes.get(f"{host}/{slot}"):
                    entry["reason"] += f" ({notes[f'{host}/{slot}']})"
            entries.append(entry)
    totals = {s: sum(1 for e in entries if e["status"] == s) for s in STATUSES}
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
            lines = (root / host / slot / "container.log").read_text(errors="replace").splitlines()
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
    return summarize(plan, read_records(run_dir), lost_hosts, read_slot_notes(run_dir, plan))


def eval_ok_combinations(records: Iterable[Mapping[str, Any]]) -> list[list[str]]:
    return ok_combinations(records)


def eval_controller_records(run_dir: str) -> list[dict[str, Any]]:
    return read_records(run_dir)


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
            "eval_ok_combinations": eval_ok_combinations,
            "eval_controller_records": eval_controller_records,
            "eval_lost_hosts": eval_lost_hosts,
            "eval_combination_line": combination_line,
        }
