"""The contract between the controller and the workers: one owner for each fact of a run.

What lives here, and nowhere else:
- the path layout of a run on a host and on the controller;
- the statuses a combination can have, the status record's schema, and the one ``is_done`` rule
  that decides what a resumed run skips (on the controller, before anything runs);
- the slot file's schema: the planner builds it (``slot_file``), the run role only writes it,
  the worker parses it (``parse_slot``);
- the slot-progress file the worker writes and the slot-status module reads.

Imported by the worker in the image (``vlmfleet.contract``) and, through the project's
collection (``ansible_collections.vlmfleet.shared.plugins.module_utils.contract``, a link to this
file), by the slot-status module, the planner, summary and report filters. Standard library
only, and Python 3.9 syntax at run time: the slot-status module runs on the fleet's own Python.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

# Path layout. On a host, under the eval_dirs root:
#   outputs/<run_id>/<host>/<slot>/slot.json, slot-progress.json (container.log: on the controller)
#   outputs/<run_id>/<host>/<model>/<benchmark>/status.json and VLMEvalKit's files
#   outputs/<run_id>/<host>/<model>/<benchmark>/shards/<k>-of-<n>/status.json and its predictions
#   outputs/<run_id>/<host>/merge/slot.json: the benchmarks whose shards this host merges
# On the controller, results/<run_id>/ holds each host's <host>/ folder as collected.
OUTPUTS_DIR = "outputs"
SLOT_FILE = "slot.json"
PROGRESS_FILE = "slot-progress.json"
STATUS_FILE = "status.json"
CONTAINER_LOG = "container.log"
# Each combination's own log, beside its status record.
WORKER_LOG = "worker.log"
# Where the worker's container finds the host's token file, mounted read-only when the host has
# one (the run role mounts it here, the worker reads it; never an environment variable).
CONTAINER_SECRET_ENV = "/run/secrets/eval.env"
# Where the worker's container finds the host's custom checkpoints (read-only), one folder each.
CONTAINER_MODELS = "/models"
# Where a container sees the host's <eval_dirs_root>/outputs, and the variable of its environment
# that holds the host's own path of that folder (role eval_run sets it from the mount's source),
# so that a message about the disk names a path the user can look at on the host.
CONTAINER_OUTPUTS = "/workspace/outputs"
HOST_OUTPUTS_ENV = "VLMFLEET_HOST_OUTPUTS"
# Where a container sees the host's LMUData (the benchmarks' data; the image's $LMUData) and its
# Hugging Face cache (the image's $HF_HOME), both set in the Dockerfile's ENV.
CONTAINER_LMUDATA = "/workspace/LMUData"
CONTAINER_CACHE = "/cache"
# The labels of every container of a run (role eval_run sets them; a later attempt finds the
# run's containers on a host by the first two).
RUN_LABEL = "io.vlm-eval.run_id"
HOST_LABEL = "io.vlm-eval.host"
SLOT_LABEL = "io.vlm-eval.slot"
# A real run's data preparation (python -m vlmfleet.prepare_data), once per host before any
# worker starts: its record outputs/<run_id>/<host>/prepare.json, its exclusive lock
# $LMUData/.prepare.lock, and where the official benchmarks' TSVs come from (eval_data_source:
# VLMEvalKit's own download, or shipped from the controller's eval_data_dir).
PREPARE_FILE = "prepare.json"
PREPARE_LOCK = ".prepare.lock"
# The preparation container's name: container_name(run_id, host, PREPARE_SLOT) (no slot is
# named so: slots are gpuN, gpuN-M, gpuNsK, cpuN).
PREPARE_SLOT = "prepare"
DATA_SOURCES = ("download", "ship")
# What a benchmark's data takes on a host's disk, counted before anything is written (preflight
# for the files a run ships, the preparation for what VLMEvalKit downloads): the TSV, plus the
# images VLMEvalKit decodes from its base64 column into $LMUData/images/<name>/ (base64 holds
# 4 bytes for every 3, so they are at most 3/4 of the TSV).
LMU_IMAGES_DIR = "images"
IMAGE_BYTES_PER_TSV_BYTE = 0.75


def data_bytes(tsv_bytes: int, tsv_present: bool, images_present: bool) -> int:
    """The bytes a benchmark whose TSV holds ``tsv_bytes`` still needs on a host: the TSV unless
    it is there, its images unless their folder is."""
    need = 0 if tsv_present else tsv_bytes
    if not images_present:
        need += int(tsv_bytes * IMAGE_BYTES_PER_TSV_BYTE)
    return need


# A sharded benchmark: its rows (after the sample limit, in row order) split into ``count``
# contiguous parts; each part is a combination of its own, with a shard record in
# <model>/<benchmark>/shards/<index + 1>-of-<count>/. Once every shard of one count is ok, one
# host merges their predictions in row order and evaluates them once: its merge slot file
# (slot MERGE_SLOT, never a GPU slot's name) lists those benchmarks, its record is the
# benchmark's usual one, with the shards listed (SHARDS_KEY).
SHARDS_DIR = "shards"
MERGE_SLOT = "merge"
SHARD_KEY = "shard"
SHARDS_KEY = "shards"
_SHARD_NAME = re.compile(r"^([1-9][0-9]*)-of-([1-9][0-9]*)$")
# A prepare record's status and what a summary says of the combinations of a host it stopped.
PREPARE_STATUSES = ("ok", "failed")
NOT_PREPARED = "data not prepared"

# A combination's status in a record; a summary adds "missing" (no record came back).
RECORD_STATUSES = ("ok", "failed")
SUMMARY_STATUSES = (*RECORD_STATUSES, "missing")
# Docker's states of a container that has not ended.
RUNNING_STATES = ("created", "running", "restarting")

# Slot-file choices.
DEVICES = ("cuda", "cpu")
# A slot file's batch_size that is no number: the worker sizes each batch by the GPU memory the
# slot has left (a fixed small size on a CPU).
AUTO_BATCH = "auto"
# How answers are matched: VLMEvalKit's exact matching, or an OpenAI-compatible judge model
# (for the benchmarks whose VLMEvalKit evaluation asks one; the catalogue's kinds say which).
# EXACT_MATCHING is also the judge name VLMEvalKit's evaluate takes for its rules.
EXACT_MATCHING = "exact_matching"
JUDGES = (EXACT_MATCHING, "openai")
# Random weights never emit end-of-sequence on their own: a smoke run caps each answer at this
# many tokens unless the user sets max_new_tokens (the validation step and the worker both).
SMOKE_MAX_NEW_TOKENS = 16
# eval_gpu_slots: worker slots sharing each GPU, at most (the validation step's bound on a
# user's number and the planner's on its own choice).
MAX_GPU_SLOTS = 8
# The judge's key: its line in the host's token file (role eval_dirs writes it from
# eval_dirs_judge_api_key), never in a slot file, record or the container's environment.
JUDGE_KEY_ENV = "OPENAI_API_KEY"
# What a smoke unit loads: a known-answer checkpoint (vlmfleet.known_answer_checkpoints) or a
# tiny random one.
SMOKE_CHECKPOINTS = ("known-strong", "known-weak", "random")

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
INTERVAL_KEYS = ("low", "high", "confidence", "method", "statistic", "questions", "clusters")
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

_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


class ContractError(ValueError):
    """A file of the run does not follow this contract; the message names the file and field."""


# --- path layout ---------------------------------------------------------------------------


def host_run_dir(root: str | Path, run_id: str, host: str) -> Path:
    """outputs/<run_id>/<host>/ under a host's eval_dirs root."""
    return Path(root) / OUTPUTS_DIR / run_id / host


def combo_dir(run_host_dir: str | Path, model: str, benchmark: str) -> Path:
    return Path(run_host_dir) / model / benchmark


@dataclass(frozen=True)
class Shard:
    """Part ``index`` (0-based) of ``count`` of a benchmark's rows."""

    index: int
    count: int

    @property
    def name(self) -> str:
        return f"{self.index + 1}-of-{self.count}"

    def positions(self, total: int) -> range:
        """Which of ``total`` rows (positions in row order) this shard runs: contiguous parts
        whose sizes differ by at most one, so the shards in index order are the rows in order."""
        return range(total * self.index // self.count, total * (self.index + 1) // self.count)

    def as_dict(self) -> dict[str, int]:
        return {"index": self.index, "count": self.count}


def parse_shard(data: Any, where: str) -> Shard:
    if not isinstance(data, dict) or set(data) != {"index", "count"}:
        raise ContractError(f"{where}: shard must be an object with index and count, got {data!r}")
    index, count = data["index"], data["count"]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (index, count)):
        raise ContractError(f"{where}: shard index and count must be integers, got {data!r}")
    if count < 2 or not 0 <= index < count:
        raise ContractError(
            f"{where}: shard needs count >= 2 and 0 <= index < count, got {index} of {count}"
        )
    return Shard(index, count)


def shard_from_name(name: str) -> Shard | None:
    """The shard a folder name <k>-of-<n> names, or None."""
    found = _SHARD_NAME.match(name)
    if not found or not 1 <= int(found[1]) <= int(found[2]) or int(found[2]) < 2:
        return None
    return Shard(int(found[1]) - 1, int(found[2]))


def shard_dir(run_host_dir: str | Path, model: str, benchmark: str, shard: Shard) -> Path:
    return combo_dir(run_host_dir, model, benchmark) / SHARDS_DIR / shard.name


def result_dir(run_host_dir: str | Path, model: str, benchmark: str, shard: Shard | None) -> Path:
    """Where a combination's record and files go: its shard's folder, or the benchmark's."""
    if shard is None:
        return combo_dir(run_host_dir, model, benchmark)
    return shard_dir(run_host_dir, model, benchmark, shard)


def host_path(path: str | Path, host_outputs: str | None) -> str:
    """``path`` as the host sees it: under CONTAINER_OUTPUTS, the host's outputs folder instead
    (``host_outputs``, unknown when None: the path stays the container's)."""
    text = str(path)
    if not host_outputs or not (
        text == CONTAINER_OUTPUTS or text.startswith(CONTAINER_OUTPUTS + "/")
    ):
        return text
    return host_outputs.rstrip("/") + text[len(CONTAINER_OUTPUTS) :]


def container_name(run_id: str, host: str, slot: str) -> str:
    """vlm-eval-<run_id>-<host>-<slot>: Docker allows [A-Za-z0-9_.-] only."""
    return "-".join(("vlm-eval", run_id, _NAME_UNSAFE.sub("_", host), slot))


# --- records -------------------------------------------------------------------------------


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
        return [
            f"primary_interval statistic {interval['statistic']!r} is not one of "
            f"{', '.join(QUESTION_STATISTICS)}"
        ]
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


# --- data preparation record -----------------------------------------------------------------

# prepare.json: status (PREPARE_STATUSES), source (DATA_SOURCES), benchmarks ([{name, path, md5,
# fetched}] of those prepared), error (one line naming each benchmark and its cause, or null),
# lock_waited_seconds, lock_acquired_at / lock_released_at (epoch seconds), started_at,
# finished_at.
PREPARE_KEYS = (
    "status",
    "source",
    "benchmarks",
    "error",
    "lock_waited_seconds",
    "lock_acquired_at",
    "lock_released_at",
    "started_at",
    "finished_at",
)


def prepare_failure(run_host_dir: str | Path) -> str | None:
    """Why a host's data preparation stopped its run ("data not prepared: ..."), or None when
    it has no record (smoke runs, earlier attempts) or its record says ok."""
    path = Path(run_host_dir) / PREPARE_FILE
    if not path.exists():
        return None
    record = read_json(path)
    if not isinstance(record, dict) or record.get("status") not in PREPARE_STATUSES:
        return one_line(f"{NOT_PREPARED}: {path} is not a preparation record")
    if record["status"] == "ok":
        return None
    return one_line(f"{NOT_PREPARED}: {record.get('error') or 'no reason recorded'}")


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


# --- slot file -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Benchmark:
    name: str
    # The catalogue's kind, and what it declares: VLMEvalKit's dataset TYPE, what that type's
    # figures read when every question is right, and the smoke data's shape (vlmfleet.smoke_data).
    kind: str
    dataset_type: str
    score_scale: float
    smoke_shape: str
    # A custom benchmark's TSV md5 (the file the run ships to each host's LMUData); None for
    # VLMEvalKit's own datasets, which VLMEvalKit md5-checks itself.
    md5: str | None = None
    # How this benchmark's answers are matched: the slot's judge where VLMEvalKit's evaluation
    # of its kind asks one, else exact matching.
    judge: str = EXACT_MATCHING
    # A shard of the benchmark's rows, or None for the whole benchmark.
    shard: Shard | None = None
    # This benchmark's sample limit when it has its own (eval.yml's precision chooses one per
    # benchmark); None: the slot's limit.
    limit: int | None = None

    @property
    def label(self) -> str:
        """The benchmark's name, with its shard when it is one (logs, progress)."""
        return self.name if self.shard is None else f"{self.name}[{self.shard.name}]"


@dataclass(frozen=True)
class Unit:
    model: str
    family: str
    benchmarks: tuple[Benchmark, ...]
    # Smoke runs only.
    smoke_checkpoint: str = "random"
    # A custom model's checkpoint folder as the worker's container sees it; None for a
    # catalogue model, which its family resolves from VLMEvalKit's own entry.
    checkpoint: str | None = None
    # A catalogue model's hub repo (the catalogue's hf_repo): the family starts loading it
    # before VLMEvalKit's import, and checks VLMEvalKit's own entry names the same. None: the
    # path is VLMEvalKit's entry's, known only after the import.
    hf_repo: str | None = None


@dataclass(frozen=True)
class Slot:
    run_id: str
    host: str
    slot: str
    device: str
    smoke: bool
    limit: int | None
    judge: str
    units: tuple[Unit, ...]
    # A fixed answer length, or None for VLMEvalKit's own generation settings.
    max_new_tokens: int | None = None
    # A floor on the answer length (the bench fixes the answer length with both).
    min_new_tokens: int | None = None
    # Samples per generate call: 1 is VLMEvalKit's own per-sample loop; AUTO_BATCH sizes them
    # by memory.
    batch_size: int | str = 1
    # Slots sharing this slot's GPUs (the planner's eval_gpu_slots): its share of their memory.
    shared_by: int = 1
    # The judge model and the OpenAI-compatible base URL it answers at (judge "openai" only).
    judge_model: str | None = None
    judge_base_url: str | None = None
    path: Path = field(default=Path(SLOT_FILE), compare=False)

    @property
    def slot_dir(self) -> Path:
        return self.path.parent

    @property
    def run_host_dir(self) -> Path:
        """outputs/<run_id>/<host>/: the slot file lives in outputs/<run_id>/<host>/<slot>/."""
        return self.path.parent.parent

    def combinations(self) -> list[tuple[Unit, Benchmark]]:
        return [(u, b) for u in self.units for b in u.benchmarks]

    def limit_of(self, bench: Benchmark) -> int | None:
        """The sample limit ``bench`` runs at: its own, else the slot's."""
        return bench.limit if bench.limit is not None else self.limit


def slot_file(
    *,
    run_id: str,
    host: str,
    slot: str,
    device: str,
    smoke: bool,
    limit: int | None,
    judge: str,
    max_new_tokens: int | None,
    batch_size: int | str,
    units: list[dict[str, Any]],
    min_new_tokens: int | None = None,
    judge_model: str | None = None,
    judge_base_url: str | None = None,
    shared_by: int = 1,
) -> dict[str, Any]:
    """A complete slot file, checked by the parser the worker uses (ContractError if not)."""
    data = {
        "run_id": run_id,
        "host": host,
        "slot": slot,
        "device": device,
        "smoke": smoke,
        "limit": limit,
        "judge": judge,
        "judge_model": judge_model,
        "judge_base_url": judge_base_url,
        "max_new_tokens": max_new_tokens,
        "min_new_tokens": min_new_tokens,
        "batch_size": batch_size,
        "shared_by": shared_by,
        "units": units,
    }
    parse_slot(data, Path(f"{host}/{slot}/{SLOT_FILE}"))
    return data


def official_benchmarks(slots: Iterable[Slot]) -> list[str]:
    """The benchmarks of real-mode slots that VLMEvalKit's own data serves (no custom file
    shipped: no md5), in order, once each: what a host's data preparation prepares."""
    names: dict[str, None] = {}
    for slot in slots:
        if slot.smoke:
            continue
        for unit in slot.units:
            for bench in unit.benchmarks:
                if bench.md5 is None:
                    names[bench.name] = None
    return list(names)


def slot_total(data: Any) -> int:
    """Combinations in a slot file's data (0 when it is not one)."""
    try:
        return len(parse_slot(data).combinations())
    except ContractError:
        return 0


def _need(data: Mapping[str, Any], key: str, types: Any, where: str) -> Any:
    if key not in data:
        raise ContractError(f"{where}: missing key {key!r}")
    value = data[key]
    allowed = types if isinstance(types, tuple) else (types,)
    # bool is an int subclass: never accept it where a number or string is meant.
    if isinstance(value, bool) and bool not in allowed:
        raise ContractError(f"{where}: {key!r} must not be a boolean, got {value!r}")
    if not isinstance(value, allowed):
        raise ContractError(f"{where}: {key!r} has the wrong type: {value!r}")
    return value


def _name(value: str, key: str, where: str) -> str:
    if not value or "/" in value or value in (".", "..") or value != value.strip():
        raise ContractError(f"{where}: {key!r} must be a plain non-empty name, got {value!r}")
    return value


def _choice(value: str, key: str, valid: tuple[str, ...], where: str) -> str:
    if value not in valid:
        raise ContractError(f"{where}: {key} {value!r} is not valid; valid: {', '.join(valid)}")
    return value


def _optional_count(data: Mapping[str, Any], key: str, where: str) -> int | None:
    value = _need(data, key, (int, type(None)), where)
    if value is not None and value < 1:
        raise ContractError(f"{where}: {key} must be a positive integer or null, got {value!r}")
    return value


SLOT_KEYS = (
    "run_id",
    "host",
    "slot",
    "device",
    "smoke",
    "limit",
    "judge",
    "judge_model",
    "judge_base_url",
    "max_new_tokens",
    "min_new_tokens",
    "batch_size",
    "shared_by",
    "units",
)
UNIT_KEYS = ("model", "family", "benchmarks", "smoke_checkpoint", "checkpoint", "hf_repo")
BENCHMARK_KEYS = (
    "name",
    "kind",
    "dataset_type",
    "score_scale",
    "smoke_shape",
    "md5",
    "judge",
    SHARD_KEY,
    "limit",
)


def _only(data: Mapping[str, Any], keys: tuple[str, ...], where: str) -> None:
    """A key the contract does not know is another format's: fail loudly, never ignore it."""
    unknown = [k for k in data if k not in keys]
    if unknown:
        raise ContractError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; valid: {', '.join(keys)}"
        )


def _optional_text(data: Mapping[str, Any], key: str, where: str) -> str | None:
    value = data.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise ContractError(f"{where}: {key!r} must be a non-empty string or absent, got {value!r}")
    return value


def _hub_repo(unit: Mapping[str, Any], where: str) -> str | None:
    """A unit's hf_repo: "owner/name", and never beside a custom checkpoint."""
    repo = _optional_text(unit, "hf_repo", where)
    if repo is None:
        return None
    if unit.get("checkpoint") is not None:
        raise ContractError(
            f"{where}: a unit has a custom checkpoint or a hub repo (hf_repo), not both; "
            f"got checkpoint {unit['checkpoint']!r} and hf_repo {repo!r}"
        )
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise ContractError(f"{where}: hf_repo must be a hub id owner/name, got {repo!r}")
    return repo


def _benchmark(data: Any, where: str) -> Benchmark:
    if not isinstance(data, dict):
        raise ContractError(f"{where} must be an object")
    _only(data, BENCHMARK_KEYS, where)
    scale = _need(data, "score_scale", (int, float), where)
    if scale <= 0:
        raise ContractError(f"{where}: score_scale must be positive, got {scale!r}")
    return Benchmark(
        name=_name(_need(data, "name", str, where), "name", where),
        kind=_name(_need(data, "kind", str, where), "kind", where),
        dataset_type=_need(data, "dataset_type", str, where),
        score_scale=float(scale),
        smoke_shape=_name(_need(data, "smoke_shape", str, where), "smoke_shape", where),
        md5=_optional_text(data, "md5", where),
        judge=_choice(data.get("judge", EXACT_MATCHING), "judge", JUDGES, where),
        shard=parse_shard(data[SHARD_KEY], where) if data.get(SHARD_KEY) is not None else None,
        limit=_optional_count(data, "limit", where) if "limit" in data else None,
    )


def _judge(data: Mapping[str, Any], judge: str, units: list[Unit], where: str) -> tuple[Any, Any]:
    """The judge model and base URL: both given for the judge "openai", neither otherwise; a
    benchmark's own judge is exact matching or the slot's."""
    model = _optional_text(data, "judge_model", where)
    base_url = _optional_text(data, "judge_base_url", where)
    if judge == EXACT_MATCHING and (model or base_url):
        raise ContractError(f"{where}: judge_model and judge_base_url apply to a judge model only")
    if judge != EXACT_MATCHING and not (model and base_url):
        raise ContractError(f"{where}: judge {judge!r} needs judge_model and judge_base_url")
    for unit in units:
        for bench in unit.benchmarks:
            if bench.judge not in (EXACT_MATCHING, judge):
                raise ContractError(
                    f"{where}: {unit.model}/{bench.name} has judge {bench.judge!r}, "
                    f"the slot's is {judge!r}"
                )
    return model, base_url


def parse_slot(data: Any, path: Path = Path(SLOT_FILE)) -> Slot:
    where = str(path)
    if not isinstance(data, dict):
        raise ContractError(f"{where}: top level must be an object")
    _only(data, SLOT_KEYS, where)
    max_new = _optional_count(data, "max_new_tokens", where)
    # Optional: the bench fixes the answer length with both; the planner leaves it null.
    min_new = _optional_count(data, "min_new_tokens", where) if "min_new_tokens" in data else None
    if max_new is not None and min_new is not None and min_new > max_new:
        raise ContractError(f"{where}: min_new_tokens {min_new} exceeds max_new_tokens {max_new}")
    batch_size = _need(data, "batch_size", (int, str), where)
    if batch_size != AUTO_BATCH and (isinstance(batch_size, str) or batch_size < 1):
        raise ContractError(
            f"{where}: batch_size must be a positive integer or {AUTO_BATCH!r}, got {batch_size!r}"
        )
    # Optional: slot files written before slots knew their share of a GPU.
    shared_by = _optional_count(data, "shared_by", where) if "shared_by" in data else None
    units_raw = _need(data, "units", list, where)
    if not units_raw:
        raise ContractError(f"{where}: units must list at least one model")
    units = []
    seen: set[tuple[str, str]] = set()
    sharded: set[tuple[str, str]] = set()
    for i, unit in enumerate(units_raw):
        uw = f"{where}: units[{i}]"
        if not isinstance(unit, dict):
            raise ContractError(f"{uw} must be an object")
        _only(unit, UNIT_KEYS, uw)
        model = _name(_need(unit, "model", str, uw), "model", uw)
        benches_raw = _need(unit, "benchmarks", list, uw)
        if not benches_raw:
            raise ContractError(f"{uw}: benchmarks must list at least one benchmark")
        benches = []
        for j, raw in enumerate(benches_raw):
            bench = _benchmark(raw, f"{uw}.benchmarks[{j}]")
            # Several shards of one benchmark may share a slot; the whole one comes alone.
            key = (model, bench.label)
            whole = (model, bench.name)
            if key in seen or (bench.shard is None and whole in sharded) or whole in seen:
                raise ContractError(f"{uw}: combination {model}/{bench.label} is listed twice")
            if bench.shard is None:
                seen.add(whole)
            else:
                seen.add(key)
                sharded.add(whole)
            benches.append(bench)
        units.append(
            Unit(
                model=model,
                family=_name(_need(unit, "family", str, uw), "family", uw),
                benchmarks=tuple(benches),
                smoke_checkpoint=_choice(
                    unit.get("smoke_checkpoint", "random"),
                    "smoke_checkpoint",
                    SMOKE_CHECKPOINTS,
                    uw,
                ),
                checkpoint=_optional_text(unit, "checkpoint", uw),
                hf_repo=_hub_repo(unit, uw),
            )
        )
    limit = _optional_count(data, "limit", where)
    judge = _choice(_need(data, "judge", str, where), "judge", JUDGES, where)
    judge_model, judge_base_url = _judge(data, judge, units, where)
    return Slot(
        run_id=_name(_need(data, "run_id", str, where), "run_id", where),
        host=_name(_need(data, "host", str, where), "host", where),
        slot=_name(_need(data, "slot", str, where), "slot", where),
        device=_choice(_need(data, "device", str, where), "device", DEVICES, where),
        smoke=_need(data, "smoke", bool, where),
        limit=limit,
        judge=judge,
        judge_model=judge_model,
        judge_base_url=judge_base_url,
        units=tuple(units),
        max_new_tokens=max_new,
        min_new_tokens=min_new,
        batch_size=batch_size,
        shared_by=shared_by or 1,
        path=path,
    )


def load_slot(path: str | Path) -> Slot:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ContractError(f"cannot read slot file {path}: {err.strerror}") from err
    try:
        data = json.loads(text)
    except ValueError as err:
        raise ContractError(f"{path}: not valid JSON: {err}") from err
    return parse_slot(data, path.absolute())
