"""The worker's command line up to the point where it would import torch."""

from __future__ import annotations

import fcntl
import json
import logging
from pathlib import Path

import pytest
from vlmfleet import contract, datasets, families, worker
from vlmfleet.contract import load_slot
from vlmfleet.families import llava
from vlmfleet.faults import describe

BENCH = {
    "name": "POPE",
    "kind": "yorn",
    "dataset_type": "Y/N",
    "score_scale": 100,
    "smoke_shape": "yorn_pope",
}


@pytest.fixture(autouse=True)
def no_token_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine's own /run/secrets/eval.env never reaches a test."""
    monkeypatch.setattr(worker, "SECRET_ENV", tmp_path / "absent.env")


def write_slot(tmp_path: Path, **change: object) -> Path:
    slot_dir = tmp_path / "outputs" / "r1" / "h1" / "gpu0"
    slot_dir.mkdir(parents=True)
    data = {
        "run_id": "r1",
        "host": "h1",
        "slot": "gpu0",
        "device": "cuda",
        "smoke": False,
        "limit": 3,
        "judge": "exact_matching",
        "max_new_tokens": None,
        "min_new_tokens": None,
        "batch_size": 1,
        "units": [{"model": "llava_v1.5_7b", "family": "llava", "benchmarks": [BENCH]}],
    } | change
    path = slot_dir / "slot.json"
    path.write_text(json.dumps(data))
    return path


def test_bad_slot_file_exits_2_naming_the_value(tmp_path: Path, caplog) -> None:
    path = write_slot(tmp_path, device="gpu")
    assert worker.main(["--slot-file", str(path)]) == 2
    assert "device 'gpu' is not valid; valid: cuda, cpu" in caplog.text


def test_a_torn_slot_file_is_named_by_the_hosts_path_with_what_mends_it(
    tmp_path: Path, caplog, monkeypatch: pytest.MonkeyPatch
) -> None:
    inside = tmp_path / "workspace" / "outputs"
    path = inside / "r1" / "gpu-01" / "gpu0" / "slot.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"run_id": "r1", "ho')
    # The part of the contract that owns the layout (host_path reads it there).
    monkeypatch.setattr(contract.paths, "CONTAINER_OUTPUTS", str(inside))
    monkeypatch.setenv(contract.HOST_OUTPUTS_ENV, "/srv/vlm-eval/outputs")
    assert worker.main(["--slot-file", str(path)]) == 2
    assert "bad slot file: /srv/vlm-eval/outputs/r1/gpu-01/gpu0/slot.json: not valid JSON" in (
        caplog.text
    )
    assert "rerun eval.yml with the same run_id to write it again" in caplog.text


def test_bad_token_file_exits_2_without_showing_its_line(
    tmp_path: Path, caplog, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = tmp_path / "eval.env"
    token.write_text("hf_secret_without_key\n")
    monkeypatch.setattr(worker, "SECRET_ENV", token)
    path = write_slot(tmp_path)
    assert worker.main(["--slot-file", str(path)]) == 2
    assert f"bad token file: {token}: line 1: expected KEY=VALUE" in caplog.text
    assert "hf_secret" not in caplog.text


def test_second_worker_on_a_busy_slot_exits_2(tmp_path: Path, caplog) -> None:
    path = write_slot(tmp_path)
    with (path.parent / worker.LOCK_FILE).open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert worker.main(["--slot-file", str(path)]) == 2
    assert "another worker is already running slot" in caplog.text


@pytest.mark.parametrize(
    ("model_path", "folder"),
    [
        ("liuhaotian/llava-v1.5-7b", "llava-v1.5-7b-tiny"),
        ("liuhaotian/llava-v1.5-13b", "llava-v1.5-13b-tiny"),
        # LLaVA's builder takes its LLaVA path only when the folder name says "llava".
        ("Lin-Chen/ShareGPT4V-7B", "llava-ShareGPT4V-7B-tiny"),
    ],
)
def test_tiny_checkpoint_folder_names(model_path: str, folder: str) -> None:
    assert llava.tiny_name(model_path) == folder


def test_mute_exception_reason_says_where() -> None:
    def inner() -> None:
        raise NotImplementedError

    try:
        inner()
    except NotImplementedError as err:
        reason = describe(err)
    assert reason.startswith("NotImplementedError at test_worker_main.py:")
    assert reason.endswith("in inner")
    assert describe(ValueError("bad x")) == "ValueError: bad x"


def test_smoke_paths_follow_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("VLMFLEET_SMOKE_ROOT", raising=False)
    monkeypatch.setenv("HF_HOME", "/cache")
    assert families.smoke_root() == Path("/cache/smoke")
    monkeypatch.setenv("LMUData", str(tmp_path))
    slot = load_slot(write_slot(tmp_path, smoke=True))
    root = datasets.use_smoke_data_root(slot)
    assert root == tmp_path / "smoke" / "h1" / "gpu0" and root.is_dir()
    import os

    assert os.environ[datasets.LMU_ENV] == str(root)


def test_a_family_without_a_module_fails_its_combinations_naming_the_known_ones(
    tmp_path: Path,
) -> None:
    # No torch needed: the family is resolved before the stack is imported.
    units = [
        {
            "model": "MiniCPM-V-2_6",
            "family": "minicpm",
            "benchmarks": [BENCH, BENCH | {"name": "HallusionBench"}],
        }
    ]
    path = write_slot(tmp_path, units=units)
    assert worker.main(["--slot-file", str(path)]) == 1
    run_dir = path.parent.parent
    reasons = {
        b: json.loads((run_dir / "MiniCPM-V-2_6" / b / "status.json").read_text())["reason"]
        for b in ("POPE", "HallusionBench")
    }
    message = (
        "model family 'minicpm' has no module in this image (vlmfleet.families); "
        "known families: llava, internvl"
    )
    assert reasons == {"POPE": message, "HallusionBench": message}
    progress = json.loads((path.parent / "slot-progress.json").read_text())
    assert (progress["done"], progress["failed"], progress["state"]) == (2, 2, "finished")
    assert "skipped" not in progress
    # The slot's own log has the lines, and the lock is given back.
    assert message in (path.parent / "worker.log").read_text()
    with (path.parent / worker.LOCK_FILE).open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_the_token_file_is_loaded_when_there_is_one_and_named_without_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    caplog.set_level(logging.INFO)
    token = tmp_path / "eval.env"
    token.write_text("HF_TOKEN=hf_secret\n")
    monkeypatch.setattr(worker, "SECRET_ENV", token)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    units = [{"model": "m", "family": "nope", "benchmarks": [BENCH]}]
    assert worker.main(["--slot-file", str(write_slot(tmp_path, units=units))]) == 1
    import os

    assert os.environ["HF_TOKEN"] == "hf_secret"
    monkeypatch.delenv("HF_TOKEN")
    assert f"loaded HF_TOKEN from {token}" in caplog.text
    assert "hf_secret" not in caplog.text
