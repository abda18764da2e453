"""The worker's command line up to the point where it would import torch."""

from __future__ import annotations

import fcntl
import json
from pathlib import Path

import pytest
from vlmfleet import worker


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
        "units": [{"model": "llava_v1.5_7b", "benchmarks": [{"name": "POPE", "kind": "yorn"}]}],
    } | change
    path = slot_dir / "slot.json"
    path.write_text(json.dumps(data))
    return path


def test_bad_slot_file_exits_2_naming_the_value(tmp_path: Path, caplog) -> None:
    path = write_slot(tmp_path, device="gpu")
    assert worker.main(["--slot-file", str(path)]) == 2
    assert "device 'gpu' is not valid; valid: cuda, cpu" in caplog.text


def test_missing_env_file_exits_2(tmp_path: Path, caplog) -> None:
    path = write_slot(tmp_path, env_file=str(tmp_path / "absent.env"))
    assert worker.main(["--slot-file", str(path)]) == 2
    assert "cannot read env_file" in caplog.text


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
    assert worker.tiny_name(model_path) == folder


def test_mute_exception_reason_says_where() -> None:
    def inner() -> None:
        raise NotImplementedError

    try:
        inner()
    except NotImplementedError as err:
        reason = worker.describe(err)
    assert reason.startswith("NotImplementedError at test_worker_main.py:")
    assert reason.endswith("in inner")
    assert worker.describe(ValueError("bad x")) == "ValueError: bad x"


def test_smoke_paths_follow_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("VLMFLEET_SMOKE_ROOT", raising=False)
    monkeypatch.setenv("HF_HOME", "/cache")
    assert worker.smoke_root() == Path("/cache/smoke")
    monkeypatch.setenv("LMUData", str(tmp_path))
    slot = worker.load_slot(write_slot(tmp_path, smoke=True))
    root = worker.use_smoke_data_root(slot)
    assert root == tmp_path / "smoke" / "h1" / "gpu0" and root.is_dir()
    import os

    assert os.environ[worker.LMU_ENV] == str(root)
