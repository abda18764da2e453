"""Live progress of an evaluation run: one compact line per host per poll. The callback
plugin eval_progress (plugins/callback/eval_progress.py, its documentation) is this module's
CallbackModule."""

from __future__ import annotations

import atexit
import time
from datetime import datetime
from typing import Any

from ansible.plugins.callback import CallbackBase
from ansible_collections.vlmfleet.shared.plugins.module_utils.contract import RUNNING_STATES

MAX_SLOTS_SHOWN = 4
# Container states in which a slot still works (docker's names).


def format_duration(seconds: float | None) -> str:
    """Compact h/m/s: 45s, 5m02s, 1h03m."""
    if seconds is None or seconds < 0:
        return "--"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def eta_seconds(done: int, total: int, elapsed: float, seen_done: int = 0) -> float | None:
    """Time left at the rate so far; None until one combination has finished since the clock
    started (``seen_done`` were done before it)."""
    if total <= 0 or done >= total:
        return 0.0
    finished_here = done - seen_done
    if finished_here <= 0 or elapsed <= 0:
        return None
    return (total - done) * elapsed / finished_here


def parse_started(value: Any) -> float | None:
    """Epoch seconds of an ISO 8601 time (a trailing Z allowed), None if absent or bad."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _slot_text(slot: dict[str, Any]) -> str:
    name = str(slot.get("slot", "?"))
    done, total = _int(slot.get("done")), _int(slot.get("total"))
    if total and done >= total:
        return f"{name} done {done}/{total}"
    running = slot.get("state") in RUNNING_STATES
    state = str(slot.get("current") or "") if running else str(slot.get("state"))
    return f"{name} {done}/{total} {state}".rstrip()


def progress_line(
    host: str, progress: dict[str, Any], now: float, first_seen: float, first_done: int = 0
) -> str:
    """The line printed for one host. Elapsed and the rate count from `started_at` when the
    progress carries it, else from the first poll this controller saw (`first_seen`, when
    `first_done` combinations were already done)."""
    done, total = _int(progress.get("done")), _int(progress.get("total"))
    started = parse_started(progress.get("started_at"))
    elapsed = max(now - (started or first_seen), 0.0)
    eta = eta_seconds(done, total, elapsed, 0 if started else first_done)
    pct = f"{100 * done // total}%" if total else "-"
    parts = [f"eval {host}: {done}/{total} ({pct})", f"elapsed {format_duration(elapsed)}"]
    parts.append("finished" if total and done >= total else f"ETA {format_duration(eta)}")
    slots = [s for s in progress.get("slots") or [] if isinstance(s, dict)]
    if slots:
        shown = ", ".join(_slot_text(s) for s in slots[:MAX_SLOTS_SHOWN])
        more = len(slots) - MAX_SLOTS_SHOWN
        parts.append(shown + (f", +{more} slots" if more > 0 else ""))
    elif progress.get("current"):
        parts.append(f"now {progress['current']}")
    return " | ".join(parts)


def progress_items(result: dict[str, Any], default_host: str) -> list[tuple[str, dict[str, Any]]]:
    """(host, progress) pairs a task result carries; empty for every other task, and for a
    poll with nothing planned yet (eval.yml's resume check reads the host before any slot)."""
    raw = result.get("eval_progress") if isinstance(result, dict) else None
    items = raw if isinstance(raw, list) else [raw]
    out = []
    for item in items:
        if isinstance(item, dict) and "done" in item and _int(item.get("total")) > 0:
            out.append((str(item.get("host") or default_host), item))
    return out


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "eval_progress"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._first_seen: dict[str, tuple[float, int]] = {}
        self._clock = time.time
        # The hosts whose workers the last poll found running, until the play ends (its
        # stats): a play interrupted meanwhile (Ctrl-C) says only "User interrupted execution"
        # and runs nothing after it, so the note on what the workers do and what to do comes
        # from here, as the process exits.
        self._running: dict[str, str] = {}  # host -> run_id, while its last poll ran workers
        atexit.register(self.interrupted_note)

    def _show(self, result: Any) -> None:
        now = self._clock()
        for host, progress in progress_items(result._result, result._host.get_name()):
            first, first_done = self._first_seen.setdefault(host, (now, _int(progress["done"])))
            self._display.display(progress_line(host, progress, now, first, first_done))
            if result._result.get("finished") is False and progress.get("run_id"):
                self._running[host] = str(progress["run_id"])
            else:
                self._running.pop(host, None)

    def v2_playbook_on_stats(self, stats: Any) -> None:
        self._running.clear()

    def interrupted_note(self) -> None:
        """What a play that stopped while it polled running workers leaves: they run on."""
        if not self._running:
            return
        run = next(iter(self._running.values()))
        self._running.clear()
        self._display.display(
            f"eval.yml stopped while the workers of run {run} were running: they keep running "
            "on the hosts and write their results there. Once they have finished, rerun with "
            f"-e run_id={run}: it collects what they finished and runs only what is missing (a "
            "rerun while one of them runs is refused and changes nothing).",
            stderr=True,
        )

    def v2_runner_retry(self, result: Any) -> None:
        self._show(result)

    def v2_runner_on_ok(self, result: Any) -> None:
        self._show(result)

    def v2_runner_item_on_ok(self, result: Any) -> None:
        self._show(result)
