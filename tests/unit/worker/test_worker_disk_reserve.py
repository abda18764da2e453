"""The worker's disk reserve on a real full filesystem: a status record that says "disk full"
is written even when no byte is left. Outside tests/unit/worker/test_worker_pipeline.py because that
file also runs inside the image (tests/e2e/test_stack_in_image.py), as a user who cannot mount."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from vlmfleet import contract, faults
from vlmfleet.contract import load_slot, slot_file
from vlmfleet.slot_records import SlotRecords


def mount_tmpfs(where: Path, size: str) -> None:
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True
    )
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")


@pytest.fixture
def tiny_disk(tmp_path: Path):
    """A 2 MiB filesystem (tmpfs; mounting needs root, which CI is)."""
    where = tmp_path / "tiny"
    mount_tmpfs(where, "2m")
    yield where
    subprocess.run(["umount", str(where)], check=False)


@pytest.fixture
def smaller_than_the_reserve(tmp_path: Path):
    """A filesystem of half the worker's reserve."""
    where = tmp_path / "smaller"
    mount_tmpfs(where, f"{faults.RESERVE_BYTES // 2 // 1024}k")
    yield where
    subprocess.run(["umount", str(where)], check=False)


def make_worker(root: Path) -> SlotRecords:
    slot_dir = root / "outputs" / "r1" / "gpu-07" / "gpu0"
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
    return SlotRecords(load_slot(slot_dir / "slot.json"))


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
    worker = make_worker(tiny_disk)
    slot_dir = worker.slot.slot_dir
    assert (slot_dir / faults.RESERVE_FILE).stat().st_blocks * 512 >= faults.RESERVE_BYTES
    fill(tiny_disk)
    assert shutil.disk_usage(tiny_disk).free == 0
    full = OSError(errno.ENOSPC, "No space left on device", str(tiny_disk / "pred.xlsx"))
    reason = worker.describe(full)
    worker.record("m7b", "POPE", "failed", "2026-12-01T00:00:00Z", 1.0, reason=reason)
    record = json.loads((tiny_disk / "outputs/r1/gpu-07/m7b/POPE/status.json").read_text())
    assert record["status"] == "failed"
    assert record["reason"] == f"disk full: {tiny_disk / 'pred.xlsx'} on gpu-07, 0 bytes free"
    assert not (slot_dir / faults.RESERVE_FILE).exists()


def test_a_disk_too_small_for_the_reserve_is_named_on_the_console_and_in_the_records(
    smaller_than_the_reserve: Path, caplog: pytest.LogCaptureFixture
) -> None:
    disk = smaller_than_the_reserve
    with caplog.at_level(logging.INFO):
        worker = make_worker(disk)
    slot_dir = worker.slot.slot_dir
    assert not (slot_dir / faults.RESERVE_FILE).exists()
    free = shutil.disk_usage(disk).free
    assert (
        f"disk too small for the worker's {faults.RESERVE_BYTES} byte reserve: {slot_dir} has "
        f"{free} bytes free (No space left on device)" in caplog.text
    )

    # Full: no record can be written; the console line says why, and the summary reads it.
    fill(disk)
    caplog.clear()
    cdir = disk / "outputs/r1/gpu-07/m7b/POPE"
    full = OSError(errno.ENOSPC, "No space left on device", str(cdir / "pred.xlsx"))
    worker.record(
        "m7b", "POPE", "failed", "2026-12-01T00:00:00Z", 1.0, reason=worker.describe(full)
    )
    assert not (cdir / "status.json").exists()
    reasons = contract.failed_reasons(caplog.messages)
    assert reasons["m7b/POPE"].startswith(f"status record not written: disk full: {cdir}")
    assert reasons["m7b/POPE"].endswith(
        f"(disk too small for the worker's {faults.RESERVE_BYTES} byte reserve)"
    )

    # Once a record fits again, it says the disk was too small for the reserve.
    (disk / "filler").unlink()
    worker.record(
        "m7b", "POPE", "failed", "2026-12-01T00:00:00Z", 1.0, reason=worker.describe(full)
    )
    record = json.loads((cdir / "status.json").read_text())
    assert record["reason"].startswith(f"disk full: {cdir / 'pred.xlsx'} on gpu-07, ")
    assert record["reason"].endswith(
        f"bytes free (disk too small for the worker's {faults.RESERVE_BYTES} byte reserve)"
    )


def test_a_disk_message_names_the_hosts_path_of_the_outputs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(contract.HOST_OUTPUTS_ENV, "/srv/vlm-eval/outputs")
    inside = f"{contract.CONTAINER_OUTPUTS}/r1/gpu-07/m7b/POPE/pred.xlsx"
    full = OSError(errno.ENOSPC, "No space left on device", inside)
    assert faults.describe(full, "gpu-07").startswith(
        "disk full: /srv/vlm-eval/outputs/r1/gpu-07/m7b/POPE/pred.xlsx on gpu-07, "
    )
    # Only the outputs mount is the host's folder; other paths stay as the container has them.
    assert contract.host_path("/workspace/outputs-x/a", "/srv/o") == "/workspace/outputs-x/a"
    assert contract.host_path("/cache/a", "/srv/o") == "/cache/a"
    assert contract.host_path(inside, None) == inside


def test_the_console_line_of_a_failed_combination_reads_back_as_its_reason() -> None:
    line = "2026-12-01 00:00:00,000 ERROR vlmfleet.pipeline: " + contract.failed_line(
        "llava_v1.5_7b", "POPE", "status record not written: disk full: /srv/x on h, 0 bytes free"
    )
    assert contract.failed_reasons(["noise", line, "finished: 0 ok, 1 failed of 1"]) == {
        "llava_v1.5_7b/POPE": "status record not written: disk full: /srv/x on h, 0 bytes free"
    }
