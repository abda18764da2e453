"""The worker's disk reserve on a real full filesystem: a status record that says "disk full"
is written even when no byte is left. Outside tests/unit/test_worker_pipeline.py because that
file also runs inside the image (tests/e2e/test_stack_in_image.py), as a user who cannot mount."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from vlmfleet import pipeline
from vlmfleet.contract import load_slot, slot_file


@pytest.fixture
def tiny_disk(tmp_path: Path):
    """A 2 MiB filesystem (tmpfs; mounting needs root, which CI is)."""
    where = tmp_path / "tiny"
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)], capture_output=True
    )
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield where
    subprocess.run(["umount", str(where)], check=False)


def fill(folder: Path) -> None:
    """Write until the filesystem holding ``folder`` has no byte left."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as err:
        assert err.errno == errno.ENOSPC
    finally:
        os.close(fd)


def test_a_disk_with_no_byte_free_still_gets_the_record_that_says_so(tiny_disk: Path) -> None:
    slot_dir = tiny_disk / "outputs" / "r1" / "gpu-07" / "gpu0"
    slot_dir.mkdir(parents=True)
    pope = {"name": "POPE", "kind": "yorn", "dataset_type": "Y/N", "score_scale": 100}
    made = slot_file(
        run_id="r1",
        host="gpu-07",
        slot="gpu0",
        device="cuda",
        smoke=False,
        limit=2,
        judge="exact_matching",
        max_new_tokens=None,
        batch_size=8,
        units=[{"model": "m7b", "family": "fake", "benchmarks": [pope | {"smoke_shape": "pope"}]}],
    )
    (slot_dir / "slot.json").write_text(json.dumps(made))
    worker = pipeline.Worker(load_slot(slot_dir / "slot.json"))
    assert (slot_dir / pipeline.RESERVE_FILE).stat().st_blocks * 512 >= pipeline.RESERVE_BYTES
    fill(tiny_disk)
    assert shutil.disk_usage(tiny_disk).free == 0
    full = OSError(errno.ENOSPC, "No space left on device", str(tiny_disk / "pred.xlsx"))
    reason = worker.describe(full)
    worker.record("m7b", "POPE", "failed", "2026-12-01T00:00:00Z", 1.0, reason=reason)
    record = json.loads((tiny_disk / "outputs/r1/gpu-07/m7b/POPE/status.json").read_text())
    assert record["status"] == "failed"
    assert record["reason"] == f"disk full: {tiny_disk / 'pred.xlsx'} on gpu-07, 0 bytes free"
    assert not (slot_dir / pipeline.RESERVE_FILE).exists()
