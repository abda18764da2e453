"""Batched generation equals VLMEvalKit's own batch-1 loop on a trained checkpoint, in the image.

``python -m vlmfleet_tools.agreement`` runs in the built image (CPU, float32, as its container
user, without network, against the repository's worker code, with the tools package the image
does not ship on PYTHONPATH) on the known-answer strong checkpoint, whose answers come from
confident logits, unlike random weights: every one of the 20 smoke benchmarks, batch sizes 1, 8
and 32, each in the product's, a shuffled and the reversed batch order, must give exactly the
reference's prediction on every row; and so must all 20 benchmarks answered as one queue at
batch 8 and 32, as a worker's unit answers them, where a benchmark's last samples share a batch
with the next benchmark's samples of the nearest prompt lengths. The queue runs again with each
batch given cache slots for only ``RESERVE`` new token a row (``--reserve``): the static cache's
first window is then 1 to 8 generated slots (rounded up to 8 slots), so it grows within the
batch's slots after the rows that ended leave, and a row that outgrows them would be deferred;
every answer must still be the reference's. (The trained answers, 1 to 3 tokens, do not outgrow
them: no row was deferred at 12 questions. That a deferred row's answer is the batch-1 loop's
is tests/unit/worker/test_batched.py's in-image test on random weights, whose answers run to
the token limit.)

MMBench's rows (EN and KO: each question and its 3 rotations of the options, one image) are
prefilled as groups sharing a prefix wherever they meet in a batch (batch 8 and 32, in every
order, and in the queues): the test asserts that they did, so that the grouped prefill cannot
pass vacuously, while the batch-1 runs, reference and engine, prefill every row whole. (The
rule is not MMBench's: rows of other benchmarks that share an image and their prompt's start,
the synthetic sets' scenes are shared, group too.)

12 questions a benchmark: fewer would make batch 32 the same single batch as batch 8 on every
benchmark but MMBench; at 12, batch 8 is a full and a partial batch, batch 32 one batch of
every sample, and MMBench's 48 rows (4 circular rotations) fill a batch of 32 and one of 16.
More questions buy no new batch shape and cost minutes on 2 cores.

    VLMFLEET_AGREEMENT_CHECKPOINT=/path/to/llava-known-strong \
        pytest tests/e2e/test_batched_agreement.py
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO

pytestmark = pytest.mark.slow

CHECKPOINT_ENV = "VLMFLEET_AGREEMENT_CHECKPOINT"
DEFAULT_CHECKPOINT = REPO / "docker" / "transformers-4.37" / "known_answer" / "llava-known-strong"
QUESTIONS = 12
BATCH_SIZES = ("1", "8", "32")
ORDERS = ("product", "shuffled", "reversed")
BENCHMARKS = 20
# Cache slots for 1 new token a row (rounded up to a multiple of 8 slots).
RESERVE = 1
# Benchmarks whose rows share an image and a prompt prefix (MMBench's circular rotations).
ROTATED = ("MMBench_DEV_EN", "MMBench_DEV_KO")


@pytest.fixture(scope="module")
def checkpoint() -> Path:
    path = Path(os.environ.get(CHECKPOINT_ENV) or DEFAULT_CHECKPOINT).absolute()
    assert (path / "config.json").is_file(), (
        f"known-answer checkpoint {path} is missing: it is committed under "
        "docker/transformers-4.37/known_answer/ (python -m "
        "vlmfleet_tools.known_answer_training rebuilds it)"
    )
    return path


def test_batched_predictions_equal_reference_at_every_batch_size_and_order(
    run_in_image: Callable[..., Any], checkpoint: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o777)  # written by the container's user
    inside = f"/checkpoint/{checkpoint.name}"
    proc = run_in_image(
        "python",
        "-m",
        "vlmfleet_tools.agreement",
        f"--checkpoint={inside}",
        "--device=cpu",
        f"--questions={QUESTIONS}",
        f"--reserve={RESERVE}",
        "--out=/out/agreement.json",
        volumes=(f"{REPO}:/src:ro", f"{checkpoint}:{inside}:ro", f"{out}:/out"),
        # The repository's worker code over the image's, and the tools (not in the image).
        env=("PYTHONPATH=/src/docker/transformers-4.37/src:/src/docker/transformers-4.37/tools",),
        workdir="/src",
        timeout=1800,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode in (0, 1), log[-6000:]
    report = json.loads((out / "agreement.json").read_text())
    assert report["device"] == "cpu"
    assert report["dtype"] == "float32"
    # The engine's own decoder on a CPU, the one compared here with VLMEvalKit's loop.
    assert report["decoder"] == "static_cache"
    assert report["checkpoint"]["name"] == checkpoint.name
    assert len(report["benchmarks"]) == BENCHMARKS
    differing = []
    for name, entry in report["benchmarks"].items():
        assert entry["rows"] >= QUESTIONS, name
        assert sorted(entry["batch_sizes"]) == sorted(BATCH_SIZES), name
        for size, orders in entry["batch_sizes"].items():
            assert sorted(orders) == sorted(ORDERS if size != "1" else ORDERS[:1]), (name, size)
            for order, result in orders.items():
                assert result["rows"] == entry["rows"], (name, size, order)
                # Rotations met in batches above 1 and were prefilled as groups; alone, no row
                # is. (Other benchmarks' rows of one image and prompt start group too.)
                grouped = result["grouped_samples"]
                if size == "1":
                    assert grouped == 0, (name, order, grouped)
                elif name in ROTATED:
                    assert grouped > 0, (name, size, order)
                differing += [
                    f"{name} batch {size} {order} index {row['index']}: "
                    f"reference {row['reference']!r}, batched {row['batched']!r}"
                    for row in result["differing_rows"]
                ]
    total = report["total"]
    assert total["comparisons"] == BENCHMARKS * (1 + (len(BATCH_SIZES) - 1) * len(ORDERS))
    assert total["differing"] == 0 and not differing, "\n".join(differing[:40])
    assert total["agreement"] == 1.0
    queue = report["queue"]
    assert sorted(queue) == sorted(s for s in BATCH_SIZES if s != "1")
    for size, run in queue.items():
        assert len(run["benchmarks"]) == BENCHMARKS, size
        # Batches did cross benchmark boundaries, and rotations were prefilled as groups.
        assert run["shared_samples"] > 0, size
        for name in ROTATED:
            assert run["benchmarks"][name]["grouped_samples"] > 0, (size, name)
        differing += queue_differences(f"queue batch {size}", run)
    assert not differing, "\n".join(differing[:40])
    reserved = report["queue_reserve"]
    assert sorted(reserved) == sorted(queue)
    for size, run in reserved.items():
        assert run["reserve"] == RESERVE and len(run["benchmarks"]) == BENCHMARKS, size
        # The trained answers (1-3 tokens) fit even these slots (a row's are rounded up to 8):
        # nothing is deferred, and every answer is the reference's. Deferral's own identity is
        # test_batched's in-image test, on weights whose answers outgrow the reserve.
        assert run["deferred_samples"] == 0, size
        assert run["grouped_samples"] > 0, size
        differing += queue_differences(f"queue batch {size} reserve {RESERVE}", run)
    assert not differing, "\n".join(differing[:40])
    assert proc.returncode == 0, log[-6000:]
    print(f"\n{proc.stdout.strip().splitlines()[-1]} in {report['seconds']} s")


def queue_differences(label: str, run: dict[str, Any]) -> list[str]:
    """One line per row of a queue run whose answer differs from the reference's."""
    return [
        f"{label} {name} index {row['index']}: "
        f"reference {row['reference']!r}, batched {row['batched']!r}"
        for name, result in run["benchmarks"].items()
        for row in result["differing_rows"]
    ]
