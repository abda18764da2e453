"""Which of a run's containers a later task saves and removes, and where their consoles go."""

from __future__ import annotations

import pytest
from ansible_collections.vlmfleet.shared.plugins.plugin_utils.plan import (
    eval_consoles,
    eval_container_labels,
    eval_container_spec,
    eval_ended_containers,
    eval_run_label,
)
from vlmfleet import contract

HOST_DIRS = {
    "cache": "/srv/e/hf-cache",
    "data": "/srv/e/LMUData",
    "outputs": "/srv/e/outputs",
    "models": "/srv/e/models",
    "secret": "/srv/e/.env",
}


def test_a_runs_containers_on_a_host_are_found_by_their_labels() -> None:
    labels = eval_container_labels("r1", "node-a", "cpu0")
    wanted = eval_run_label("r1", "node-a")
    assert sorted(f"{k}={v}" for k, v in labels.items() if f"{k}={v}" in wanted) == sorted(wanted)
    assert eval_run_label("r1") == ["io.vlm-eval.run_id=r1"]


def test_ended_containers_are_saved_running_ones_left_to_their_attempt() -> None:
    found = [
        {"Names": ["/w0"], "State": "exited", "Created": 0, "Labels": {"io.vlm-eval.slot": "cpu0"}},
        {
            "Names": ["/w1"],
            "State": "running",
            "Created": 0,
            "Labels": {"io.vlm-eval.slot": "cpu1"},
        },
        {"Names": ["/w2"], "State": "dead", "Created": 60, "Labels": {"io.vlm-eval.slot": "cpu2"}},
    ]
    ended = eval_ended_containers(found)
    assert ended == [
        {"name": "w0", "slot": "cpu0", "created": 0},
        {"name": "w2", "slot": "cpu2", "created": 60},
    ]
    read = [{"rc": 0, "stdout": "log 0", "item": ended[0]}, {"rc": 1, "item": ended[1]}]
    # A console that could not be read is not saved, so its container is not removed.
    assert eval_consoles(read, earlier=False) == [
        {"name": "w0", "slot": "cpu0", "file": "container.log", "content": "log 0"}
    ]
    # An earlier attempt's console goes beside this attempt's, named by when it was created.
    assert eval_consoles(read, earlier=True)[0]["file"] == "container-19700101T000000Z.log"


def _targets(spec: dict) -> dict[str, tuple[str, bool]]:
    return {m["target"]: (m["source"], m["read_only"]) for m in spec["mounts"]}


def test_a_worker_container_is_its_slot_on_its_gpus_with_the_contracts_paths() -> None:
    slot = {"slot": "gpu1", "gpus": [1], "device": "cuda", "container": "ignored", "models": ["m"]}
    spec = eval_container_spec(slot, "r1", "node a", HOST_DIRS)
    assert spec["name"] == contract.container_name("r1", "node a", "gpu1")
    assert spec["command"] == [
        "python",
        "-m",
        "vlmfleet.worker",
        "--slot-file",
        f"{contract.CONTAINER_OUTPUTS}/r1/node a/gpu1/{contract.SLOT_FILE}",
    ]
    assert spec["detach"] is True
    assert spec["labels"] == eval_container_labels("r1", "node a", "gpu1")
    assert spec["env"] == {contract.HOST_OUTPUTS_ENV: "/srv/e/outputs"}
    assert _targets(spec) == {
        contract.CONTAINER_CACHE: ("/srv/e/hf-cache", False),
        contract.CONTAINER_LMUDATA: ("/srv/e/LMUData", False),
        contract.CONTAINER_OUTPUTS: ("/srv/e/outputs", False),
        contract.CONTAINER_MODELS: ("/srv/e/models", True),
        contract.CONTAINER_SECRET_ENV: ("/srv/e/.env", True),
    }
    assert spec["device_requests"] == [
        {"driver": "nvidia", "device_ids": ["1"], "capabilities": [["gpu"]]}
    ]
    # A CPU slot holds no GPU; a host without a token file mounts none.
    cpu = eval_container_spec(
        {"slot": "cpu0", "gpus": [], "device": "cpu"}, "r1", "h", HOST_DIRS | {"secret": None}
    )
    assert cpu["device_requests"] == []
    assert contract.CONTAINER_SECRET_ENV not in _targets(cpu)


def test_the_merge_and_the_preparation_run_to_their_end_without_gpus_or_weights() -> None:
    merge = eval_container_spec({"slot": contract.MERGE_SLOT}, "r1", "h", HOST_DIRS)
    assert merge["name"] == contract.container_name("r1", "h", contract.MERGE_SLOT)
    assert merge["command"][:3] == ["python", "-m", "vlmfleet.merge"]
    assert merge["command"][-1] == f"{contract.CONTAINER_OUTPUTS}/r1/h/merge/{contract.SLOT_FILE}"
    assert merge["detach"] is False and merge["device_requests"] == []
    assert set(_targets(merge)) == {
        contract.CONTAINER_LMUDATA,
        contract.CONTAINER_OUTPUTS,
        contract.CONTAINER_SECRET_ENV,
    }
    prepare = eval_container_spec(
        {"slot": contract.PREPARE_SLOT, "slots": ["gpu0", "gpu1"], "source": "ship"},
        "r1",
        "h",
        HOST_DIRS,
    )
    run_dir = f"{contract.CONTAINER_OUTPUTS}/r1/h"
    assert prepare["command"] == [
        "python",
        "-m",
        "vlmfleet.prepare_data",
        "--source",
        "ship",
        "--record",
        f"{run_dir}/{contract.PREPARE_FILE}",
        "--host-path",
        "/srv/e/LMUData",
        f"--slot-file={run_dir}/gpu0/{contract.SLOT_FILE}",
        f"--slot-file={run_dir}/gpu1/{contract.SLOT_FILE}",
    ]
    assert prepare["detach"] is False
    assert set(_targets(prepare)) == {contract.CONTAINER_LMUDATA, contract.CONTAINER_OUTPUTS}
    # A name that is no slot of the plan is refused, not started as a worker.
    with pytest.raises(ValueError, match="neither a slot"):
        eval_container_spec({"slot": "prepar"}, "r1", "h", HOST_DIRS)
