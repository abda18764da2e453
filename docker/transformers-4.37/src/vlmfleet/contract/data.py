"""A real run's data preparation: where the TSVs come from, what they take on disk, and the
host's preparation record."""

from __future__ import annotations

from pathlib import Path

from .records import one_line, read_json

# A real run's data preparation (python -m vlmfleet.prepare_data), once per host before any
# worker starts: its record outputs/<run_id>/<host>/prepare.json, its exclusive lock
# $LMUData/.prepare.lock, and where the official benchmarks' TSVs come from (eval.yml's data_source:
# VLMEvalKit's own download, or shipped from the controller's data_dir).
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


# A prepare record's status and what a summary says of the combinations of a host it stopped.
PREPARE_STATUSES = ("ok", "failed")
NOT_PREPARED = "data not prepared"

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
