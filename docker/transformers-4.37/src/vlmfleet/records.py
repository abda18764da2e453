"""Status records, resume selection and slot progress (contract: docs/architecture.md).

No torch or pandas imports: the controller's unit tests use this module directly.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

STATUS_FILE = "status.json"
PROGRESS_FILE = "slot-progress.json"
STATUSES = ("ok", "failed")
REQUIRED_KEYS = (
    "run_id",
    "host",
    "slot",
    "model",
    "benchmark",
    "status",
    "reason",
    "seconds",
    "samples",
    "scores",
    "primary_metric",
    "smoke",
    "started_at",
    "finished_at",
)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_json_atomic(path: Path, data: Any) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over the target."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=False, allow_nan=False)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def combo_dir(run_host_dir: Path, model: str, benchmark: str) -> Path:
    return Path(run_host_dir) / model / benchmark


def one_line(reason: str, limit: int = 500) -> str:
    text = " ".join(str(reason).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def make_record(
    *,
    run_id: str,
    host: str,
    slot: str,
    model: str,
    benchmark: str,
    status: str,
    started_at: str,
    seconds: float,
    smoke: bool,
    samples: int = 0,
    scores: dict[str, float] | None = None,
    primary_metric: str | None = None,
    primary_score: float | None = None,
    primary_scale: float | None = None,
    scoring_note: str | None = None,
    reason: str | None = None,
    finished_at: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    if status not in STATUSES:
        raise ValueError(f"status {status!r} is not valid; valid: {', '.join(STATUSES)}")
    if status == "failed" and not reason:
        raise ValueError("a failed record needs a reason")
    scores = dict(scores or {})
    if primary_metric is not None and primary_metric not in scores:
        raise ValueError(f"primary_metric {primary_metric!r} is not among the scores")
    record: dict[str, Any] = {
        "run_id": run_id,
        "host": host,
        "slot": slot,
        "model": model,
        "benchmark": benchmark,
        "status": status,
        "reason": one_line(reason) if reason else None,
        "seconds": round(float(seconds), 3),
        "samples": int(samples),
        "scores": scores,
        "primary_metric": primary_metric,
        # The primary metric on 0-100 and what it reads when every question is right
        # (vlmfleet.scores): readers never guess a benchmark's scale.
        "primary_score": primary_score,
        "primary_scale": primary_scale,
        "scoring_note": scoring_note,
        "smoke": bool(smoke),
        "started_at": started_at,
        "finished_at": finished_at or now_iso(),
    }
    if extra:
        for key, value in extra.items():
            record.setdefault(key, value)
    return record


def validate_record(record: Any) -> list[str]:
    """Problems with a status record (empty when it follows the contract)."""
    if not isinstance(record, dict):
        return ["record is not an object"]
    problems = [f"missing key {k!r}" for k in REQUIRED_KEYS if k not in record]
    if problems:
        return problems
    if record["status"] not in STATUSES:
        problems.append(f"status {record['status']!r} not in {STATUSES}")
    if record["status"] == "failed" and not record["reason"]:
        problems.append("failed record without reason")
    if not isinstance(record["scores"], dict):
        problems.append("scores is not an object")
    elif record["primary_metric"] is not None and record["primary_metric"] not in record["scores"]:
        problems.append("primary_metric not among scores")
    score = record.get("primary_score")
    if score is not None and (
        isinstance(score, bool) or not isinstance(score, int | float) or not 0 <= score <= 100
    ):
        problems.append(f"primary_score {score!r} is not a number from 0 to 100")
    if not isinstance(record["smoke"], bool):
        problems.append("smoke is not a boolean")
    return problems


def read_record(path: Path) -> dict[str, Any] | None:
    """The record at ``path``, or None when absent or unreadable (a torn or foreign file)."""
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def is_done(record: dict[str, Any] | None, *, smoke: bool) -> bool:
    """An ok record of the same mode: a smoke result never stands in for a real one."""
    return (
        record is not None
        and record.get("status") == "ok"
        and bool(record.get("smoke")) == bool(smoke)
        and not validate_record(record)
    )


def select_pending(
    run_host_dir: Path, combinations: list[tuple[str, str]], *, smoke: bool
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Split (model, benchmark) pairs into (to run, already ok), keeping the given order."""
    pending, done = [], []
    for model, bench in combinations:
        record = read_record(combo_dir(run_host_dir, model, bench) / STATUS_FILE)
        (done if is_done(record, smoke=smoke) else pending).append((model, bench))
    return pending, done


def write_progress(
    slot_dir: Path,
    *,
    done: int,
    total: int,
    current: str | None,
    ok: int = 0,
    failed: int = 0,
    skipped: int = 0,
    state: str = "running",
) -> None:
    write_json_atomic(
        Path(slot_dir) / PROGRESS_FILE,
        {
            "done": done,
            "total": total,
            "current": current,
            "ok": ok,
            "failed": failed,
            "skipped": skipped,
            "state": state,
            "updated_at": now_iso(),
        },
    )
