"""The host's data preparation (python -m vlmfleet.prepare_data) in the built image, offline.

The repository's worker package is mounted over the image's, on an LMUData of the test's own,
as the container user, without network: two preparations at once on one LMUData take turns on
$LMUData/.prepare.lock; a shipped TSV whose md5 is not VLMEvalKit's fails naming both md5s; a
download without network fails naming the benchmark, its URL and the cause; a prepared TSV ends
read-only (0444).

VLMEvalKit's real benchmark files cannot be had here, so a "shipped official" TSV passes the
md5 check only because the test registers that file's own md5 in VLMEvalKit's class table, in
the container's process only (tests/e2e/in_image_prepare.py); the failing cases use VLMEvalKit's
own table.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ansible_collections.vlmfleet.shared.plugins.module_utils import contract
from conftest import REPO

SRC = REPO / "docker" / "transformers-4.37" / "src"
DRIVER = "/src/tests/e2e/in_image_prepare.py"
UID_GID = (10001, 10001)
# An official MCQ benchmark and an official yes/no one (VLMEvalKit's names and URLs).
MCQ = {"name": "MMStar", "kind": "mcq", "dataset_type": "MCQ", "score_scale": 1.0,
       "smoke_shape": "mmstar"}  # fmt: skip
YORN = {"name": "POPE", "kind": "yorn", "dataset_type": "Y/N", "score_scale": 100.0,
        "smoke_shape": "yorn_pope"}  # fmt: skip
POPE_URL = "https://opencompass.openxlab.space/utils/VLMEval/POPE.tsv"


@pytest.fixture
def host(tmp_path: Path) -> dict[str, Path]:
    """An eval_dirs root of the test's own, owned by the container user."""
    root = tmp_path / "root"
    dirs = {"root": root, "lmu": root / "LMUData", "out": root / "outputs" / "r1" / "h1"}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    for path in (root, *root.rglob("*")):
        os.chown(path, *UID_GID)
    return dirs


def write_slot(host: dict[str, Path], slot: str, benchmarks: list[dict[str, Any]]) -> str:
    data = contract.slot_file(
        run_id="r1", host="h1", slot=slot, device="cuda", smoke=False, limit=None,
        judge="exact_matching", max_new_tokens=None, batch_size=8,
        units=[{"model": "llava_v1.5_7b", "family": "llava", "benchmarks": benchmarks}],
    )  # fmt: skip
    path = host["out"] / slot / contract.SLOT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    for p in (path.parent, path):
        os.chown(p, *UID_GID)
    return f"/workspace/outputs/r1/h1/{slot}/{contract.SLOT_FILE}"


def mcq_tsv(path: Path, rows: int) -> str:
    """A TSV in the shape of VLMEvalKit's MCQ files (base64 images); returns its md5."""
    image = base64.b64encode(os.urandom(30_000)).decode()
    lines = ["index\tquestion\tA\tB\tanswer\tcategory\timage"]
    lines += [f"{i}\tWhich one?\tyes\tno\tA\tc\t{image}" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    os.chown(path, *UID_GID)
    path.chmod(0o444)
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def prepare(
    run_in_image: Callable[..., Any], host: dict[str, Path], script: str
) -> tuple[int, str]:
    proc = run_in_image(
        "sh",
        "-c",
        script,
        volumes=(
            f"{SRC}:/opt/vlm-image/src:ro",
            f"{REPO / 'tests'}:/src/tests:ro",
            f"{host['lmu']}:/workspace/LMUData",
            f"{host['root'] / 'outputs'}:/workspace/outputs",
        ),
        timeout=600,
    )
    return proc.returncode, proc.stdout + proc.stderr


def record(host: dict[str, Path], name: str) -> dict[str, Any]:
    return json.loads((host["out"] / name).read_text())


def test_two_preparations_take_turns_and_leave_the_tsv_read_only(
    run_in_image: Callable[..., Any], host: dict[str, Path]
) -> None:
    md5 = mcq_tsv(host["lmu"] / "MMStar.tsv", rows=400)
    slot = write_slot(host, "gpu0", [MCQ])
    one = f"python {DRIVER} --register MMStar={md5} -- --source ship --slot-file {slot}"
    rc, out = prepare(
        run_in_image,
        host,
        f"{one} --record /workspace/outputs/r1/h1/a.json & "
        f"{one} --record /workspace/outputs/r1/h1/b.json & wait",
    )
    assert rc == 0, out[-4000:]
    a, b = record(host, "a.json"), record(host, "b.json")
    assert a["status"] == b["status"] == "ok", (a, b)
    first, second = sorted((a, b), key=lambda r: r["lock_acquired_at"])
    # The second took the lock only once the first had let it go, and waited for it.
    assert second["lock_acquired_at"] >= first["lock_released_at"], (first, second)
    assert second["lock_waited_seconds"] > 0.5, second
    assert "another preparation holds it" in out
    assert first["benchmarks"] == [
        {"name": "MMStar", "path": "/workspace/LMUData/MMStar.tsv", "md5": md5, "fetched": False}
    ]
    mode = stat.S_IMODE((host["lmu"] / "MMStar.tsv").stat().st_mode)
    assert mode == 0o444, oct(mode)
    print(f"\nlock: second waited {second['lock_waited_seconds']} s; TSV mode {oct(mode)}")


def test_a_shipped_tsv_with_another_md5_fails_naming_both(
    run_in_image: Callable[..., Any], host: dict[str, Path]
) -> None:
    got = mcq_tsv(host["lmu"] / "MMStar.tsv", rows=3)
    slot = write_slot(host, "gpu0", [MCQ])
    rec = "/workspace/outputs/r1/h1/prepare.json"
    rc, out = prepare(
        run_in_image, host, f"python -m vlmfleet.prepare_data --source ship --slot-file {slot} "
        f"--record {rec}"
    )  # fmt: skip
    assert rc == 1, out[-4000:]
    want = "e1ecd2140806c1b1bbf54b43372efb9e"  # VLMEvalKit 0.0.20's MMStar md5
    line = out.strip().splitlines()[-1]
    assert line == (
        f"data not prepared: MMStar: shipped /workspace/LMUData/MMStar.tsv has md5 {got}, "
        f"VLMEvalKit's table says {want}"
    ), out[-3000:]
    assert contract.prepare_failure(host["out"]) == line
    print(f"\n{line}")


def test_a_download_without_network_fails_naming_benchmark_url_and_cause(
    run_in_image: Callable[..., Any], host: dict[str, Path]
) -> None:
    mcq_tsv(host["lmu"] / "MMStar.tsv", rows=3)
    shutil.rmtree(host["lmu"] / "images", ignore_errors=True)
    slot0 = write_slot(host, "gpu0", [YORN])
    slot1 = write_slot(host, "gpu1", [YORN, MCQ])
    rc, out = prepare(
        run_in_image, host, f"python -m vlmfleet.prepare_data --source download "
        f"--slot-file {slot0} --slot-file {slot1} --record /workspace/outputs/r1/h1/prepare.json"
    )  # fmt: skip
    assert rc == 1, out[-4000:]
    line = out.strip().splitlines()[-1]
    assert line.startswith(f"data not prepared: could not download POPE from {POPE_URL}: "), line
    # The cause: the network error VLMEvalKit's download logged, not only "Failed to download".
    assert "URLError" in line, line
    # MMStar's file is not VLMEvalKit's either: it is downloaded again, which fails too.
    assert "could not download MMStar" in line, line
    rec = record(host, "prepare.json")
    assert rec["status"] == "failed" and rec["benchmarks"] == [], rec
    assert not (host["lmu"] / "POPE.tsv").exists()
    print(f"\n{line[:300]}")
