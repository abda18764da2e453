"""Status records -> summary.json, and which combinations a resumed run still owes.

Status records are the worker's status.json files (docs/architecture.md). The summary has one
entry per combination of the run (models x benchmarks): ok, failed or missing (no record). A
sharded benchmark's entry is its merged record's, and lists its shards (``shards``: index,
count, host, slot, status, seconds, reason); until it is merged, a failed shard fails it and a
shard without a record leaves it missing, named.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ansible_collections.vlmfleet.shared.plugins.module_utils.contract import (
    CONTAINER_LOG,
    PROGRESS_FILE,
    RESULT_KEYS,
    SHARD_KEY,
    SHARDS_KEY,
    STATUS_FILE,
    SUMMARY_STATUSES,
    Shard,
    combo_dir,
    done_combinations,
    done_shards,
    failed_reasons,
    is_done,
    prepare_failure,
    read_record,
    record_shard,
    result_dir,
    run_records,
    run_shard_records,
)
from ansible_collections.vlmfleet.shared.plugins.module_utils.uncertainty import (
    pooled_interval,
)


def shard_entries(
    plan: Mapping[str, Any],
    model: str,
    benchmark: str,
    record: Mapping[str, Any] | None,
    shard_records: list[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """A benchmark's shards: as its merged record lists them, else one per shard of the count
    this attempt planned (or the records have), each with its record's status or missing."""
    if record is not None and isinstance(record.get(SHARDS_KEY), list) and record[SHARDS_KEY]:
        return [dict(s, status="ok", reason=None) for s in record[SHARDS_KEY]]
    counts = [
        s["count"]
        for s in plan.get("sharded", [])
        if (s["model"], s["benchmark"]) == (model, benchmark)
    ]
    # Shard records always carry their shard (contract.read_record).
    counts = counts or sorted({r[SHARD_KEY]["count"] for r in shard_records}, reverse=True)
    if not counts:
        return []
    count = counts[0]
    placed = {}
    for u in plan["units"]:
        for b in u["benchmarks"]:
            if u["model"] == model and b["name"] == benchmark and b.get(SHARD_KEY):
                placed[b[SHARD_KEY]["index"]] = (u["host"], u["slot"])
    out = []
    for i in range(count):
        mine = [r for r in shard_records if record_shard(r) == Shard(i, count)]
        # An ok record wins wherever it ran; else the latest attempt's.
        mine.sort(key=lambda r: str(r.get("finished_at") or ""), reverse=True)
        mine.sort(key=lambda r: r["status"] != "ok")
        r = mine[0] if mine else None
        host, slot = (r["host"], r["slot"]) if r else placed.get(i, (None, None))
        out.append(
            {
                "index": i,
                "count": count,
                "host": host,
                "slot": slot,
                "status": r["status"] if r else "missing",
                "seconds": r["seconds"] if r else None,
                "samples": r["samples"] if r else None,
                "reason": r["reason"] if r else None,
            }
        )
    return out


def unmerged(shards: list[Mapping[str, Any]]) -> tuple[str, str]:
    """A sharded benchmark without its own record: its status and why."""
    failed = [s for s in shards if s["status"] == "failed"]
    if failed:
        first = failed[0]
        return "failed", (
            f"shard {first['index'] + 1}-of-{first['count']} on {first['host']} {first['slot']} "
            f"failed: {first['reason']}"
        )
    missing = [f"{s['index'] + 1}-of-{s['count']}" for s in shards if s["status"] != "ok"]
    if missing:
        return "missing", f"no record of shard(s) {', '.join(missing)}"
    return "missing", "every shard is done but they were not merged (a rerun merges them)"


def summarize(
    plan: Mapping[str, Any],
    records: Iterable[Mapping[str, Any]],
    lost_hosts: Iterable[str] = (),
    slot_notes: Mapping[str, Mapping[str, Any] | str] | None = None,
    not_prepared: Mapping[str, str] | None = None,
    shard_records: Iterable[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """One entry per combination of plan's models x benchmarks.

    An ok record wins wherever it was made (a resumed run may have moved a combination);
    otherwise the record of the host this attempt planned it on; otherwise missing, with the
    reason: its host was lost (unreachable or not collected) or the worker never wrote it
    (slot_notes: "host/slot" -> how its container ended, ``read_slot_notes``; ``missing_reason``
    words it), or its host's data preparation stopped the host's run (not_prepared: host ->
    "data not prepared: ..." from its prepare.json).
    """
    unprepared = not_prepared or {}
    notes = slot_notes or {}
    lost = set(lost_hosts)
    placed = {}
    for u in plan["units"]:
        for b in u["benchmarks"]:
            if not b.get(SHARD_KEY):
                placed[(u["model"], b["name"])] = (u["host"], u["slot"])
    by_combo: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for r in records:
        by_combo.setdefault((r["model"], r["benchmark"]), []).append(r)
    shards_of: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for r in shard_records:
        shards_of.setdefault((r["model"], r["benchmark"]), []).append(r)

    entries = []
    for m in plan["models"]:
        for b in plan["benchmarks"]:
            host, slot = placed.get((m, b), (None, None))
            recs = by_combo.get((m, b), [])
            ok = [r for r in recs if r["status"] == "ok"]
            # Prefer the planned host's record; otherwise any, in a stable order.
            ok.sort(key=lambda r: (r.get("host") != host, str(r.get("host"))))
            mine = [r for r in recs if r["host"] == host]
            # Not planned in this attempt (a resume counted it done): its record, whatever it
            # says (one damaged since reads as such, not as "no status record").
            mine = mine or (recs if host is None else [])
            record = ok[0] if ok else (mine[0] if mine else None)
            entry: dict[str, Any] = {"host": host, "slot": slot, "model": m, "benchmark": b}
            entry |= {k: None for k in RESULT_KEYS} | {"status": "missing", "scores": {}}
            entry["shards"] = shard_entries(plan, m, b, record, shards_of.get((m, b), []))
            if record is None and entry["shards"]:
                entry["status"], entry["reason"] = unmerged(entry["shards"])
            elif record is not None:
                # contract.read_record turned a record that breaks the contract into a failed one.
                entry |= {"host": record["host"], "slot": record["slot"] or slot}
                entry |= {k: record[k] for k in RESULT_KEYS}
                entry["questions_file"] = questions_path(record)
            elif host in lost:
                entry["reason"] = f"no status record: host {host} unreachable during the run"
            elif host is None:
                entry["reason"] = "no status record and not planned in this attempt"
            elif host in unprepared:
                entry["reason"] = unprepared[host]
            else:
                entry["reason"] = missing_reason(
                    host, slot, f"{m}/{b}", notes.get(f"{host}/{slot}")
                )
            entries.append(entry)
    totals = {s: sum(1 for e in entries if e["status"] == s) for s in SUMMARY_STATUSES}
    totals["total"] = len(entries)
    return {
        "run_id": plan["run_id"],
        "smoke": plan["smoke"],
        "limit": plan["limit"],
        "precision": plan.get("precision"),
        "limits": plan.get("limits"),
        "pooled": pooled_by_model(entries),
        "model_loads": plan.get("model_loads"),
        "lost_hosts": sorted(lost),
        "combinations": entries,
        "totals": totals,
    }


def pooled_by_model(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each model's mean over its benchmarks that have an interval, with the pooled interval
    (uncertainty.pooled_interval, null when none has one) and the benchmarks left out."""
    out: dict[str, dict[str, Any]] = {}
    for model in dict.fromkeys(e["model"] for e in entries):
        mine = [e for e in entries if e["model"] == model]
        figures = [
            (float(e["primary_score"]), e["primary_interval"])
            for e in mine
            if e["status"] == "ok" and e["primary_interval"] is not None
        ]
        counted = {e["benchmark"] for e in mine if e["status"] == "ok" and e["primary_interval"]}
        out[model] = {
            "figure": pooled_interval(figures) if figures else None,
            "left_out": [e["benchmark"] for e in mine if e["benchmark"] not in counted],
        }
    return out


def questions_path(record: Mapping[str, Any]) -> str | None:
    """A record's questions file relative to the run directory: the record names it inside its
    combination's folder, and the reports open it from results/<run_id>/."""
    name = record.get("questions_file")
    if not name:
        return None
    return str(combo_dir(record["host"], record["model"], record["benchmark"]) / name)


DAEMON_LOST_EXIT = 255


def exit_cause(exit_code: Any, oom_killed: bool = False) -> str | None:
    """What ended a worker's container, when a signal did: Docker's OOMKilled (the kernel's
    out-of-memory killer), else the signal of an exit status 128 + n (a docker kill is SIGKILL,
    137; a docker stop or a host shutting down SIGTERM, 143), or Docker's 255 for a container its
    daemon lost (a host reboot). None for an exit of the worker's own."""
    if not isinstance(exit_code, int) or exit_code == 0:
        return None
    if oom_killed:
        return f"killed by the kernel's out-of-memory killer (exit {exit_code})"
    if exit_code == DAEMON_LOST_EXIT:
        # What Docker records for a container that was running when its daemon went away: a
        # host that rebooted or lost power, or a dockerd restarted (the worker exits 0, 1 or 2).
        return (
            f"ended by its host or Docker daemon restarting (exit {exit_code}: Docker found it "
            "running after the restart)"
        )
    if exit_code <= 128:
        return None
    if exit_code - 128 == signal.SIGTERM:
        return f"stopped by SIGTERM (exit {exit_code}: docker stop, or its host shutting down)"
    try:
        name = signal.Signals(exit_code - 128).name
    except ValueError:
        name = f"signal {exit_code - 128}"
    return f"killed by {name} (exit {exit_code})"


def missing_reason(
    host: str, slot: str, combination: str, note: Mapping[str, Any] | str | None
) -> str:
    """Why the combination ``model/benchmark`` planned on ``host`` ``slot`` has no record, from
    how its worker ended (``read_slot_notes``; a plain string is a note as it stands): the reason
    the worker's console gave when it could not write the record (a full disk), a kill (the
    combination it was running, or one it never reached), or the exit and last console line."""
    base = f"no status record: the worker on {host} {slot}"
    if not isinstance(note, Mapping):
        return f"{base} did not reach it" + (f" ({note})" if note else "")
    failed = note.get("failed", {}).get(combination)
    if failed:
        return str(failed)
    killed = exit_cause(note.get("exit_code"), bool(note.get("oom_killed")))
    if killed and note.get("current") == combination:
        return f"no status record: was running when the worker on {host} {slot} was {killed}"
    if killed:
        return f"{base} was {killed} before it reached it"
    parts = [f"container exited {note['exit_code']}"] if note.get("exit_code") else []
    parts += [note["last_line"]] if note.get("last_line") else []
    return f"{base} did not reach it" + (f" ({': '.join(parts)})" if parts else "")


def read_slot_notes(run_dir: str, plan: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """ "host/slot" -> how the slot's container ended, for the slots of the plan: its exit code
    and whether the kernel's OOM killer ended it (host.json), the combination in progress when it
    stopped (slot-progress.json, while it still says running), and from its console
    (<host>/<slot>/container.log) the last line and the reasons of combinations it failed."""
    notes = {}
    root = Path(run_dir)
    for host, slot in dict.fromkeys((u["host"], u["slot"]) for u in plan["units"]):
        note: dict[str, Any] = {}
        try:
            info = json.loads((root / host / "host.json").read_text(encoding="utf-8"))
            state = next(s for s in info.get("slot_states", []) if s.get("slot") == slot)
            note["exit_code"] = state.get("exit_code")
            note["oom_killed"] = bool(state.get("oom_killed"))
        except (OSError, ValueError, StopIteration, AttributeError):
            pass
        try:
            progress = json.loads((root / host / slot / PROGRESS_FILE).read_text("utf-8"))
            if progress.get("state") == "running" and progress.get("current"):
                note["current"] = str(progress["current"])
        except (OSError, ValueError, AttributeError):
            pass
        try:
            lines = (root / host / slot / CONTAINER_LOG).read_text(errors="replace").splitlines()
            last = next((line.strip() for line in reversed(lines) if line.strip()), "")
            if last:
                note["last_line"] = last[:300]
            note["failed"] = failed_reasons(lines)
        except OSError:
            pass
        if note:
            notes[f"{host}/{slot}"] = note
    return notes


def eval_summary(
    plan: Mapping[str, Any], run_dir: str, lost_hosts: Iterable[str] = ()
) -> dict[str, Any]:
    """Filter form: reads the collected records of results/<run_id>/ on the controller."""
    hosts = dict.fromkeys(u["host"] for u in plan["units"])
    not_prepared = {h: why for h in hosts if (why := prepare_failure(Path(run_dir) / h))}
    return summarize(
        plan,
        run_records(run_dir),
        lost_hosts,
        read_slot_notes(run_dir, plan),
        not_prepared,
        run_shard_records(run_dir),
    )


def eval_done_combinations(records: Iterable[Mapping[str, Any]], smoke: bool) -> list[list[str]]:
    """Resume: the (model, benchmark) pairs with a record that contract.is_done accepts."""
    return done_combinations(records, smoke=smoke)


def eval_done_shards(records: Iterable[Mapping[str, Any]], smoke: bool) -> list[list[Any]]:
    """Resume: the shards [model, benchmark, index, count] with a record contract.is_done
    accepts."""
    return done_shards(records, smoke=smoke)


def eval_records_to_restore(
    host_records: Iterable[Mapping[str, Any]], run_dir: str, host: str, smoke: bool
) -> list[str]:
    """The result folders (<host>/<model>/<benchmark>[/shards/<k>-of-<n>], relative to the
    run directory) whose copy on ``host`` is not done while the controller's is: a record or
    prediction file damaged on the host after it was collected. The resume skips them (the
    controller's copy is done), so the host's copy must be put back before the collect, which
    would otherwise bring the damaged one over the good one."""
    out = []
    for r in host_records:
        if r.get("host") != host or is_done(r, smoke=smoke):
            continue
        folder = result_dir(host, r["model"], r["benchmark"], record_shard(r))
        kept = Path(run_dir) / folder / STATUS_FILE
        if kept.is_file() and is_done(read_record(kept), smoke=smoke):
            out.append(str(folder))
    return sorted(set(out))


def eval_controller_records(run_dir: str) -> list[dict[str, Any]]:
    return run_records(run_dir)


def eval_controller_shard_records(run_dir: str) -> list[dict[str, Any]]:
    return run_shard_records(run_dir)


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
