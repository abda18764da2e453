"""The path layout of a run on a host and on the controller, the container's view of it, and
the names of a run's containers."""

from __future__ import annotations

import re
from pathlib import Path

from .shards import SHARDS_DIR, Shard

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

_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def host_run_dir(root: str | Path, run_id: str, host: str) -> Path:
    """outputs/<run_id>/<host>/ under a host's eval_dirs root."""
    return Path(root) / OUTPUTS_DIR / run_id / host


def combo_dir(run_host_dir: str | Path, model: str, benchmark: str) -> Path:
    return Path(run_host_dir) / model / benchmark


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
