"""The run's containers as the planner names and labels them: the slot containers the status
module polls, the preparation container, the labels a later attempt finds them by, the
consoles of those that ended, and what each container of a run is started with
(``eval_container_spec``: role eval_run's one container task)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from ansible_collections.vlmfleet.shared.plugins.module_utils import contract


def eval_slot_containers(slots: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    """[{slot, container}] of eval_host_units' slots, as eval_slot_status takes them."""
    return [{"slot": s["slot"], "container": s["container"]} for s in slots]


def eval_prepare_container(run_id: str, host: str) -> str:
    """The name of the host's one-shot data preparation container (vlmfleet.prepare_data)."""
    return contract.container_name(run_id, host, contract.PREPARE_SLOT)


def eval_container_labels(run_id: str, host: str, slot: str) -> dict[str, str]:
    """The labels of a run's container: a later attempt finds the run's containers by them."""
    return {contract.RUN_LABEL: run_id, contract.HOST_LABEL: host, contract.SLOT_LABEL: slot}


def eval_run_label(run_id: str, host: str | None = None) -> list[str]:
    """The label filters (docker ps --filter label=..., all of them) that find a run's
    containers, those of one inventory host when ``host`` is given."""
    found = [f"{contract.RUN_LABEL}={run_id}"]
    return found + ([f"{contract.HOST_LABEL}={host}"] if host else [])


def eval_ended_containers(found: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The run's containers that have ended, from docker_host_info's verbose list: {name, slot,
    created (epoch seconds)}; a running one is left to the attempt that waits on it."""
    out = []
    for c in found:
        if c.get("State") in contract.RUNNING_STATES:
            continue
        names = c.get("Names") or [c.get("Id", "")]
        out.append(
            {
                "name": str(names[0]).lstrip("/"),
                "slot": (c.get("Labels") or {}).get(contract.SLOT_LABEL) or "unlabelled",
                "created": int(c.get("Created") or 0),
            }
        )
    return out


def eval_consoles(read: Iterable[Mapping[str, Any]], earlier: bool) -> list[dict[str, Any]]:
    """The consoles read (`docker logs` of eval_ended_containers, one loop result each) that are
    to be saved: {name, slot, file, content}. This attempt's go to <slot>/container.log, which
    the summary reads; an earlier attempt's to <slot>/container-<created, UTC>.log beside it, so
    neither overwrites the other."""
    out = []
    for r in read:
        if r.get("rc") != 0:
            continue
        c = r["item"]
        stamp = datetime.fromtimestamp(c["created"], tz=UTC).strftime("%Y%m%dT%H%M%SZ")
        name = contract.CONTAINER_LOG
        if earlier:
            name = name.replace(".log", f"-{stamp}.log")
        out.append({"name": c["name"], "slot": c["slot"], "file": name, "content": r["stdout"]})
    return out


def eval_container_env(host_outputs: str) -> dict[str, str]:
    """A container's environment naming the host's path of its outputs mount, so that the
    worker's disk messages name a path the user can look at on the host."""
    return {contract.HOST_OUTPUTS_ENV: host_outputs}


# The host folders a run's containers mount, by the key role eval_run's container task gives
# each host path under: where the container sees it (the contract's paths) and whether it is
# read-only. The token file is mounted only where the host has one, never passed as environment.
CONTAINER_MOUNTS = {
    "cache": (contract.CONTAINER_CACHE, False),
    "data": (contract.CONTAINER_LMUDATA, False),
    "outputs": (contract.CONTAINER_OUTPUTS, False),
    "models": (contract.CONTAINER_MODELS, True),
    "secret": (contract.CONTAINER_SECRET_ENV, True),
}
# What each kind mounts: a worker loads weights (the cache) and custom checkpoints (models); the
# merge evaluates (a judge reads its key from the token file); the preparation only fills data.
_KIND_MOUNTS = {
    "worker": ("cache", "data", "outputs", "models", "secret"),
    contract.MERGE_SLOT: ("data", "outputs", "secret"),
    contract.PREPARE_SLOT: ("data", "outputs"),
}


def eval_container_spec(
    container: Mapping[str, Any], run_id: str, host: str, host_dirs: Mapping[str, str]
) -> dict[str, Any]:
    """What role eval_run's one container task starts, from the contract: {name, command, labels,
    env, mounts, device_requests, detach}. ``container``: a slot of eval_host_units (its worker,
    detached, on its GPUs when its device is cuda), {slot: contract.MERGE_SLOT} (the merge of
    the host's sharded benchmarks) or {slot: contract.PREPARE_SLOT, slots: [the host's slot
    names], source: data_source} (the data preparation); the merge and the preparation run
    to their end. ``host_dirs``: the host's path of each CONTAINER_MOUNTS key (secret only where
    the host has a token file)."""
    slot = str(container["slot"])
    kind = slot if slot in (contract.MERGE_SLOT, contract.PREPARE_SLOT) else "worker"
    if kind == "worker" and "device" not in container:
        raise ValueError(
            f"eval_container_spec: {slot!r} is neither a slot of eval_host_units (no device) nor "
            f"{contract.MERGE_SLOT!r} nor {contract.PREPARE_SLOT!r}"
        )
    run_dir = f"{contract.CONTAINER_OUTPUTS}/{run_id}/{host}"
    if kind == contract.PREPARE_SLOT:
        command = ["python", "-m", "vlmfleet.prepare_data", "--source", str(container["source"])]
        command += ["--record", f"{run_dir}/{contract.PREPARE_FILE}"]
        command += ["--host-path", host_dirs["data"]]
        command += [f"--slot-file={run_dir}/{s}/{contract.SLOT_FILE}" for s in container["slots"]]
    else:
        module = "vlmfleet.merge" if kind == contract.MERGE_SLOT else "vlmfleet.worker"
        command = ["python", "-m", module, "--slot-file", f"{run_dir}/{slot}/{contract.SLOT_FILE}"]
    mounts = [
        {
            "type": "bind",
            "source": host_dirs[key],
            "target": CONTAINER_MOUNTS[key][0],
            "read_only": CONTAINER_MOUNTS[key][1],
        }
        for key in _KIND_MOUNTS[kind]
        if key != "secret" or host_dirs.get("secret")
    ]
    gpus = container.get("gpus") or []
    cuda = kind == "worker" and container.get("device") == "cuda"
    return {
        "name": contract.container_name(run_id, host, slot),
        "command": command,
        "labels": eval_container_labels(run_id, host, slot),
        # The container's disk messages name the host's path of its outputs.
        "env": eval_container_env(host_dirs["outputs"]),
        "mounts": mounts,
        "device_requests": (
            [{"driver": "nvidia", "device_ids": [str(g) for g in gpus], "capabilities": [["gpu"]]}]
            if cuda
            else []
        ),
        "detach": kind == "worker",
    }
