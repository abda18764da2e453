"""The status records: statuses, the record's schema, its atomic write and strict read, the
one `is_done` rule a resume follows, a failed combination's console line, and the
slot-progress file."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import ContractError
from .paths import PROGRESS_FILE, STATUS_FILE
from .shards import SHARD_KEY, SHARDS_DIR, Shard, shard_from_name

# A combination's status in a record; a summary adds "missing" (no record came back).
RECORD_STATUSES = ("ok", "failed")
SUMMARY_STATUSES = (*RECORD_STATUSES, "missing")
# Docker's states of a container that has not ended.
RUNNING_STATES = ("created", "running", "restarting")

# The status record. A summary entry carries RESULT_KEYS of its record.
RESULT_KEYS = (
    "status",
    "reason",
    "seconds",
    "samples",
    "scores",
    "primary_metric",
    # The primary metric on 0-100 and what VLMEvalKit's figure reads when every question is
    # right (vlmfleet.scores): readers never guess a benchmark's scale.
    "primary_score",
    "primary_scale",
    "scoring_note",
    # The combination's scored questions (vlmfleet.question_scores): the file beside the
    # predictions, one JSON line per question; the primary score's 95% interval on 0-100
    # (vlmfleet.uncertainty, INTERVAL_KEYS); and, when the questions do not give back
    # VLMEvalKit's figure, why the score has no interval.
    "questions_file",
    "primary_interval",
    "questions_note",
)
# A primary_interval: its bounds on 0-100, how it was computed, over how many questions in how
# many clusters, and the statistic of the question scores the primary metric is ("mean" or
# "f1_yes", POPE's F1 of the "yes" answers).
INTERVAL_KEYS = (
    "low",
    "high",
    "confidence",
    "method",
    "statistic",
    "questions",
    "clusters",
)
QUESTION_STATISTICS = ("mean", "f1_yes")
QUESTIONS_SUFFIX = "_questions.jsonl"
RECORD_KEYS = (
    "run_id",
    "host",
    "slot",
    "model",
    "benchmark",
    *RESULT_KEYS,
    "smoke",
    "started_at",
    "finished_at",
)
REASON_MAX = 500


def now_iso() -> str:
    # datetime.UTC is Python 3.11+; the slot-status module runs on the hosts' Python.
    return datetime.now(timezone.utc).isoformat(timespec="seconds")  # noqa: UP017


def one_line(reason: str, limit: int = REASON_MAX) -> str:
    text = " ".join(str(reason).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def write_json_atomic(path: str | Path, data: Any) -> None:
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
    questions_file: str | None = None,
    primary_interval: dict[str, Any] | None = None,
    questions_note: str | None = None,
    reason: str | None = None,
    finished_at: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
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
        "scores": dict(scores or {}),
        "primary_metric": primary_metric,
        "primary_score": primary_score,
        "primary_scale": primary_scale,
        "scoring_note": scoring_note,
        "questions_file": questions_file,
        "primary_interval": primary_interval,
        "questions_note": questions_note,
        "smoke": bool(smoke),
        "started_at": started_at,
        "finished_at": finished_at or now_iso(),
    }
    for key, value in (extra or {}).items():
        record.setdefault(key, value)
    problems = validate_record(record)
    if problems:
        raise ContractError(f"status record for {model}/{benchmark}: {'; '.join(problems)}")
    return record


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def validate_record(record: Any) -> list[str]:
    """Problems with a status record (empty when it follows the contract)."""
    if not isinstance(record, dict):
        return ["record is not an object"]
    problems = [f"missing key {k!r}" for k in RECORD_KEYS if k not in record]
    if problems:
        return problems
    if record["status"] not in RECORD_STATUSES:
        problems.append(
            f"status {record['status']!r} is not valid; valid: {', '.join(RECORD_STATUSES)}"
        )
    if record["status"] == "failed" and not record["reason"]:
        problems.append("a failed record needs a reason")
    if not isinstance(record["scores"], dict):
        problems.append("scores is not an object")
    elif record["primary_metric"] is not None and record["primary_metric"] not in record["scores"]:
        problems.append(f"primary_metric {record['primary_metric']!r} is not among the scores")
    score = record["primary_score"]
    if score is not None and (not _is_number(score) or not 0 <= score <= 100):
        problems.append(f"primary_score {score!r} is not a number from 0 to 100")
    problems.extend(interval_problems(record["primary_interval"], score))
    if not isinstance(record["smoke"], bool):
        problems.append("smoke is not a boolean")
    problems.extend(field_problems(record))
    return problems


# The record's fields the summary and the reports use as they stand: a path, a figure, a time.
_TEXT_KEYS = ("run_id", "host", "slot", "model", "benchmark")
_OPTIONAL_TEXT_KEYS = ("reason", "scoring_note", "questions_note", "primary_metric")


def field_problems(record: Mapping[str, Any]) -> list[str]:
    """Fields of a record with the wrong type: each would otherwise stop the summary or the
    report (a name used as a path, a figure formatted, a time parsed) or show a wrong figure."""
    problems = [f"{k} is not a name" for k in _TEXT_KEYS if not isinstance(record[k], str)]
    problems += [
        f"{k} is not text"
        for k in _OPTIONAL_TEXT_KEYS
        if not isinstance(record[k], (str, type(None)))
    ]
    if not _is_number(record["seconds"]) or record["seconds"] < 0:
        problems.append(f"seconds {record['seconds']!r} is not a number of seconds")
    samples = record["samples"]
    if not (isinstance(samples, int) and not isinstance(samples, bool) and samples >= 0):
        problems.append(f"samples {samples!r} is not a count")
    scale = record["primary_scale"]
    if scale is not None and not _is_number(scale):
        problems.append(f"primary_scale {scale!r} is not a number")
    if isinstance(record["scores"], dict) and not all(
        _is_number(v) for v in record["scores"].values()
    ):
        problems.append("a score is not a number")
    name = record["questions_file"]
    if name is not None and (not isinstance(name, str) or Path(name).name != name or name == ".."):
        # The reports open it beside the record: a plain file name, never a path.
        problems.append(f"questions_file {name!r} is not a file name")
    # Text the reports parse as a time (an unparsable one shows as no time).
    problems += [
        f"{k} {record[k]!r} is not a time"
        for k in ("started_at", "finished_at")
        if not isinstance(record[k], str)
    ]
    return problems


def interval_problems(interval: Any, score: Any) -> list[str]:
    """Problems with a record's primary_interval (None is none: no interval)."""
    if interval is None:
        return []
    if not isinstance(interval, dict) or set(interval) != set(INTERVAL_KEYS):
        return [f"primary_interval must be an object of {', '.join(INTERVAL_KEYS)}"]
    low, high = interval["low"], interval["high"]
    if not (_is_number(low) and _is_number(high) and 0 <= low <= high <= 100):
        return [f"primary_interval {low!r}..{high!r} is not a range within 0..100"]
    if _is_number(score) and not low - 1e-6 <= score <= high + 1e-6:
        return [f"primary_score {score!r} lies outside its interval {low!r}..{high!r}"]
    if interval["statistic"] not in QUESTION_STATISTICS:
        known = ", ".join(QUESTION_STATISTICS)
        return [f"primary_interval statistic {interval['statistic']!r} is not one of {known}"]
    return []


def read_json(path: str | Path) -> Any:
    """The JSON at ``path``, or None when absent or unreadable (a torn or foreign file)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_record(path: str | Path) -> dict[str, Any]:
    """The status record at ``path``. One that is unreadable or breaks the contract comes back
    as a failed record naming the file and the problem, never silently dropped or repaired."""
    path = Path(path)
    shard = shard_from_name(path.parent.name) if path.parent.parent.name == SHARDS_DIR else None
    # A shard's record sits two folders below its benchmark's.
    host, model, benchmark = path.parts[-6:-3] if shard else path.parts[-4:-1]
    record = read_json(path)
    problems = validate_record(record) if record is not None else ["not readable JSON"]
    if shard is not None and not problems and record.get(SHARD_KEY) != shard.as_dict():
        problems = [f"its shard {record.get(SHARD_KEY)!r} is not its folder's {shard.name}"]
    if not problems:
        problems = identity_problems(record, host, model, benchmark)
    if not problems and shard is not None and record["status"] == "ok":
        problems = prediction_problems(record, path.parent)
    if not problems:
        return record
    # Nothing of a broken record is used: its figures, times or names may be what broke.
    slot = record.get("slot") if isinstance(record, dict) else None
    return {
        **{k: None for k in RECORD_KEYS},
        **({SHARD_KEY: shard.as_dict()} if shard else {}),
        "host": host,
        "slot": slot if isinstance(slot, str) else None,
        "model": model,
        "benchmark": benchmark,
        "status": "failed",
        "reason": one_line(
            # The problems shortened, so that what to do is never cut off.
            f"status record {path} breaks the contract: {one_line('; '.join(problems), 240)}; "
            "its result cannot be used: rerun with the same run_id to run it again"
        ),
        "scores": {},
        "smoke": bool(isinstance(record, dict) and record.get("smoke") is True),
    }


# A shard's ok record vouches for its prediction file, which the merge reads later, perhaps
# on another host after copies: the record holds the file's digest, and a file that no longer
# matches it makes the shard not done, so a rerun runs it again instead of merging a torn file.
PREDICTION_FILE_KEY = "prediction_file"
PREDICTION_DIGEST_KEY = "prediction_sha256"


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def prediction_problems(record: Mapping[str, Any], folder: Path) -> list[str]:
    """Why the prediction file a shard's ok record names beside it is not the one it wrote (a
    record of a worker before digests were recorded is taken as it stands)."""
    want = record.get(PREDICTION_DIGEST_KEY)
    if want is None:
        return []
    name = record.get(PREDICTION_FILE_KEY)
    if not isinstance(name, str) or Path(name).name != name:
        return [f"{PREDICTION_FILE_KEY} {name!r} is not a file name"]
    try:
        got = file_sha256(folder / name)
    except OSError as err:
        return [f"its predictions {folder / name} cannot be read ({err.strerror or err})"]
    if got != want:
        return [
            f"its predictions {folder / name} are not the file the shard wrote (their sha256 "
            "is not the recorded one: damaged or replaced)"
        ]
    return []


def identity_problems(
    record: Mapping[str, Any], host: str, model: str, benchmark: str
) -> list[str]:
    """A record in another combination's folder (copied or moved there) would stand for a
    result it is not."""
    named = (record["host"], record["model"], record["benchmark"])
    if named == (host, model, benchmark):
        return []
    return [
        f"it is the record of {named[1]}/{named[2]} on {named[0]}, not of its folder's "
        f"{model}/{benchmark} on {host}"
    ]


def host_records(run_host_dir: str | Path) -> list[dict[str, Any]]:
    """The status records of a host's outputs/<run_id>/<host>/ (<model>/<benchmark>/)."""
    return [read_record(p) for p in sorted(Path(run_host_dir).glob(f"*/*/{STATUS_FILE}"))]


def run_records(results_run_dir: str | Path) -> list[dict[str, Any]]:
    """The status records collected into the controller's results/<run_id>/ (<host>/...)."""
    return [read_record(p) for p in sorted(Path(results_run_dir).glob(f"*/*/*/{STATUS_FILE}"))]


def host_shard_records(run_host_dir: str | Path) -> list[dict[str, Any]]:
    """The shard records of a host's outputs/<run_id>/<host>/ (<model>/<benchmark>/shards/*/)."""
    pattern = f"*/*/{SHARDS_DIR}/*/{STATUS_FILE}"
    return [read_record(p) for p in sorted(Path(run_host_dir).glob(pattern))]


def run_shard_records(run_dir: str | Path) -> list[dict[str, Any]]:
    """The shard records of every host's folder in a run directory: the controller's
    results/<run_id>/, or a merging host's outputs/<run_id>/ (where the controller brings the
    shards other hosts ran)."""
    pattern = f"*/*/*/{SHARDS_DIR}/*/{STATUS_FILE}"
    return [read_record(p) for p in sorted(Path(run_dir).glob(pattern))]


def record_shard(record: Mapping[str, Any]) -> Shard | None:
    """The shard a record is of, or None for a benchmark's own record."""
    data = record.get(SHARD_KEY)
    return Shard(data["index"], data["count"]) if isinstance(data, dict) else None


def done_shards(records: Iterable[Mapping[str, Any]], *, smoke: bool) -> list[list[Any]]:
    """The shards a resumed run skips, [model, benchmark, index, count], sorted."""
    found = set()
    for r in records:
        shard = record_shard(r)
        if shard is not None and is_done(r, smoke=smoke):
            found.add((r["model"], r["benchmark"], shard.index, shard.count))
    return [list(d) for d in sorted(found)]


def complete_shards(
    records: Iterable[Mapping[str, Any]], model: str, benchmark: str, *, smoke: bool
) -> list[Mapping[str, Any]] | None:
    """The done records of every shard of one count of model/benchmark, in index order (what a
    merge concatenates), or None while any is not done. One per index, wherever it ran."""
    by_count: dict[int, dict[int, Mapping[str, Any]]] = {}
    for r in records:
        shard = record_shard(r)
        mine = r["model"] == model and r["benchmark"] == benchmark
        if mine and shard is not None and is_done(r, smoke=smoke):
            by_count.setdefault(shard.count, {}).setdefault(shard.index, r)
    for count in sorted(by_count):
        if len(by_count[count]) == count:
            return [by_count[count][i] for i in range(count)]
    return None


def is_done(record: Mapping[str, Any] | None, *, smoke: bool) -> bool:
    """A valid ok record of the same mode: a smoke result never stands in for a real one."""
    return (
        record is not None
        and record.get("status") == "ok"
        and record.get("smoke") is bool(smoke)
        and not validate_record(dict(record))
    )


def done_combinations(records: Iterable[Mapping[str, Any]], *, smoke: bool) -> list[list[str]]:
    """The (model, benchmark) pairs a resumed run skips, sorted: a benchmark's own record (a
    merged one for a sharded benchmark), never a shard's."""
    return [
        list(p)
        for p in sorted(
            {
                (r["model"], r["benchmark"])
                for r in records
                if record_shard(r) is None and is_done(r, smoke=smoke)
            }
        )
    ]


def failed_line(model: str, benchmark: str, reason: str) -> str:
    """The worker's console line for a failed combination. Where its status record could not be
    written (a full disk), the saved console is all that says why: the summary reads it back
    (``failed_reasons``)."""
    return f"{_FAILED}{model}/{benchmark}: {reason}"


_FAILED = "failed "
_FAILED_LINE = re.compile(r"(?:^|: )failed ([A-Za-z0-9_.-]+/[A-Za-z0-9_.\[\]-]+): (.+)$")


def failed_reasons(lines: Iterable[str]) -> dict[str, str]:
    """ "model/benchmark" -> the reason of its last ``failed_line`` among a console's lines."""
    found = {}
    for line in lines:
        match = _FAILED_LINE.search(line.rstrip())
        if match:
            found[match[1]] = match[2]
    return found


# --- slot-progress file --------------------------------------------------------------------


def write_progress(
    slot_dir: str | Path,
    *,
    done: int,
    total: int,
    current: str | None,
    ok: int = 0,
    failed: int = 0,
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
            "state": state,
            "updated_at": now_iso(),
        },
    )
