"""The llava family's batched engine: same answers and prediction file as VLMEvalKit's own loop.

The pure checks run everywhere; the comparison needs the image's stack (torch, LLaVA,
VLMEvalKit) and builds a tiny random LLaVA-1.5 checkpoint on the CPU (float32, greedy).
"""

from __future__ import annotations

import importlib.util
import queue
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
from vlmfleet.families import InferenceError, Queued, llava_batched
from vlmfleet.families.llava_batched import (
    GENERATE,
    BatchingError,
    BatchPolicy,
    PreparedSamples,
    Sample,
    batches,
    check_batch_size,
    check_model,
    form_batch,
    new_job,
    run_queue,
)
from vlmfleet.known_answer_checkpoints import DEFAULT_BENCHMARKS

STACK = all(importlib.util.find_spec(m) for m in ("torch", "llava", "vlmeval"))
needs_stack = pytest.mark.skipif(not STACK, reason="needs torch, llava and vlmeval (the image)")


@pytest.mark.parametrize("bad", [0, -3, 2.0, "4", True, None])
def test_bad_batch_size_is_named(bad: object) -> None:
    with pytest.raises(BatchingError, match="batch_size must be a positive integer"):
        check_batch_size(bad)


def test_batches_keep_every_sample_once_in_order() -> None:
    samples = [Sample(i, f"p{i}", ["x.png"]) for i in range(7)]
    got = list(batches(samples, 3))
    assert [[s.index for s in b] for b in got] == [[0, 1, 2], [3, 4, 5], [6]]


def test_model_without_llava_interface_is_refused_with_its_name() -> None:
    with pytest.raises(BatchingError, match="SimpleNamespace lacks concat_tilist"):
        check_model(SimpleNamespace(model=None, tokenizer=None))


def queued(key: str, positions: list[int]) -> Queued:
    samples = [Sample(f"{key}{i}", "p", ["x.png"], positions=p) for i, p in enumerate(positions)]
    return Queued(key, None, PreparedSamples(with_images=samples))


def answer(samples: list[Sample]) -> list[str]:
    return [f"answer {s.index}" for s in samples]


def run(benchmarks: list[Queued], policy: BatchPolicy) -> dict[str, object]:
    incoming: queue.Queue[Queued | None] = queue.Queue()
    for q in benchmarks:
        incoming.put(q)
    incoming.put(None)
    return {a.key: a for a in run_queue(object(), incoming, policy, GENERATE)}


def test_a_benchmarks_last_samples_share_a_batch_with_the_next_nearest_in_length() -> None:
    pool = [new_job(queued("A", [30, 10, 20])), new_job(queued("B", [100, 25, 5, 60]))]
    policy = BatchPolicy(ceiling=2)
    got = []
    while batch := form_batch(pool, policy):
        got.append([s.index for s in batch])
    # A first, shortest first; A's last sample takes B's nearest in length (25) as company.
    assert got == [["A1", "A2"], ["A0", "B1"], ["B2", "B3"], ["B0"]]


def test_a_batch_is_sized_by_its_longest_prompt() -> None:
    per_row = {10: 1, 20: 2, 40: 4}
    policy = BatchPolicy(ceiling=8)
    # A stand-in rule: a budget of 4 units, a row of p positions costs p / 10.
    policy.rows_for = lambda longest, budget: min(8, 4 // per_row[longest])  # type: ignore
    pool = [new_job(queued("A", [10, 10, 10, 20, 20, 40]))]
    sizes = []
    while batch := form_batch(pool, policy):
        sizes.append(len(batch))
    assert sizes == [3, 2, 1]


def test_one_queue_answers_every_benchmark_and_says_where_samples_went(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[list[str]] = []

    def generate(model: object, inputs: list[Sample], decoder: object) -> list[str]:
        calls.append(sorted({s.key for s in inputs}))
        return answer(inputs)

    monkeypatch.setattr(llava_batched, "batch_inputs", lambda model, batch: list(batch))
    monkeypatch.setattr(llava_batched, "generate_inputs", generate)
    done = run([queued("A", [1, 2, 3]), queued("B", [1, 2, 3, 4, 5])], BatchPolicy(ceiling=2))
    assert list(done) == ["A", "B"]
    assert done["A"].answers == {f"A{i}": f"answer A{i}" for i in range(3)}
    assert done["B"].answers == {f"B{i}": f"answer B{i}" for i in range(5)}
    # One batch held samples of both benchmarks; no batch was cut at the boundary.
    assert calls.count(["A", "B"]) == 1 and len(calls) == 4
    assert done["A"].record["batch_sizes"] == {"2": 3}
    assert done["B"].record["samples_in_shared_batches"] == 1
    assert done["A"].record["decoder"] == "generate"


def test_small_benchmarks_waiting_in_the_queue_fill_one_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A small limit: six benchmarks of three samples each, all prepared before the first batch.
    calls: list[list[str]] = []

    def generate(model: object, inputs: list[Sample], decoder: object) -> list[str]:
        calls.append([s.index for s in inputs])
        return answer(inputs)

    monkeypatch.setattr(llava_batched, "batch_inputs", lambda model, batch: list(batch))
    monkeypatch.setattr(llava_batched, "generate_inputs", generate)
    done = run([queued(k, [1, 2, 3]) for k in "ABCDEF"], BatchPolicy(ceiling=8))
    assert list(done) == list("ABCDEF")
    # Full batches across benchmarks (not two benchmarks' six samples at a time).
    assert [len(c) for c in calls] == [8, 8, 2]
    assert calls[0][:3] == ["A0", "A1", "A2"]
    assert done["C"].record["batch_sizes"] == {"8": 3}


def test_a_failing_batch_fails_its_benchmarks_only(monkeypatch: pytest.MonkeyPatch) -> None:
    def generate(model: object, inputs: list[Sample], decoder: object) -> list[str]:
        if any(s.key == "B" for s in inputs):
            raise RuntimeError("CUDA error: device-side assert triggered")
        return answer(inputs)

    monkeypatch.setattr(llava_batched, "batch_inputs", lambda model, batch: list(batch))
    monkeypatch.setattr(llava_batched, "generate_inputs", generate)
    done = run(
        [queued("A", [1, 2]), queued("B", [1, 2]), queued("C", [1, 2])], BatchPolicy(ceiling=2)
    )
    assert done["A"].error is None and done["C"].error is None
    assert "device-side assert" in str(done["B"].error)
    assert len(done["C"].answers) == 2


def out_of_memory_type() -> type[BaseException]:
    """torch's CUDA out-of-memory error in the image; outside it (no torch) one of its name and
    text, which the engine recognises the way it recognises torch's plain RuntimeError."""
    if importlib.util.find_spec("torch"):
        import torch

        return torch.cuda.OutOfMemoryError

    class OutOfMemoryError(RuntimeError):
        pass

    return OutOfMemoryError


@pytest.fixture
def fits_at_most(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], list[int]]:
    """fits_at_most(n): generate raises CUDA out of memory for a batch of more than n samples;
    returns the batch sizes generate was called with."""
    oom = out_of_memory_type()

    def install(n: int) -> list[int]:
        calls: list[int] = []

        def generate(model: object, inputs: list[Sample], decoder: object) -> list[str]:
            calls.append(len(inputs))
            if len(inputs) > n:
                raise oom("CUDA out of memory. Tried to allocate 2.00 GiB (stand-in)")
            return answer(inputs)

        monkeypatch.setattr(llava_batched, "batch_inputs", lambda model, batch: list(batch))
        monkeypatch.setattr(llava_batched, "generate_inputs", generate)
        return calls

    return install


def test_out_of_memory_halves_the_batch_and_keeps_the_smaller_size(
    fits_at_most: Callable[[int], list[int]],
) -> None:
    calls = fits_at_most(2)
    got = run([queued("A", list(range(11)))], BatchPolicy(ceiling=8))["A"]
    # Every answer once, none lost with the failed batches.
    assert got.answers == {f"A{i}": f"answer A{i}" for i in range(11)}
    assert got.record["batch_size_used"] == 2
    assert got.record["batch_sizes"] == {"2": 10, "1": 1}
    retries = got.record["batch_retries"]
    assert [r["batch_size"] for r in retries] == [8, 4]
    assert all(r["error"].startswith("OutOfMemoryError: CUDA out of memory") for r in retries)
    # 8 and 4 fail once each; then the whole set at 2, never back up to 4.
    assert calls == [8, 4, 2, 2, 2, 2, 2, 1]


def test_out_of_memory_at_batch_1_fails_with_the_retries(
    fits_at_most: Callable[[int], list[int]],
) -> None:
    fits_at_most(0)
    got = run([queued("A", [1, 2, 3]), queued("B", [1])], BatchPolicy(ceiling=4))
    error = got["A"].error
    assert isinstance(error, InferenceError)
    assert "even at batch 1 (tried 4, 2, 1)" in str(error)
    assert got["A"].record["batch_size_used"] is None
    assert [r["batch_size"] for r in got["A"].record["batch_retries"]] == [4, 2, 1]


def test_other_errors_are_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def generate(model: object, inputs: list[Sample], decoder: object) -> list[str]:
        calls.append(len(inputs))
        raise RuntimeError("CUDA error: device-side assert triggered")

    monkeypatch.setattr(llava_batched, "batch_inputs", lambda model, batch: list(batch))
    monkeypatch.setattr(llava_batched, "generate_inputs", generate)
    got = run([queued("A", [1, 2, 3, 4])], BatchPolicy(ceiling=4))
    assert "device-side assert" in str(got["A"].error)
    assert calls == [4]


@pytest.fixture(scope="module")
def smoke_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("smoke")
    mp = pytest.MonkeyPatch()
    mp.setenv("VLMFLEET_SMOKE_ROOT", str(root / "ckpt"))
    mp.setenv("LMUData", str(root / "LMUData"))
    yield root
    mp.undo()


def _slot(tmp: Path, *, max_new: int, min_new: int | None) -> object:
    from vlmfleet.contract import Slot

    return Slot(
        run_id="t",
        host="h",
        slot="cpu0",
        device="cpu",
        smoke=True,
        limit=6,
        judge="exact_matching",
        units=(),
        max_new_tokens=max_new,
        min_new_tokens=min_new,
        path=tmp / "t" / "h" / "cpu0" / "slot.json",
    )


@needs_stack
@pytest.mark.parametrize("bench", ["MMBench_DEV_EN", "TextVQA_VAL", "POPE", "BLINK"])
@pytest.mark.parametrize("min_new", [None, 12])
def test_batched_file_equals_infer_data_job_file(
    smoke_env: Path, bench: str, min_new: int | None
) -> None:
    """Batch 4 writes the file VLMEvalKit's batch-1 loop writes, byte for byte in content."""
    from vlmeval.inference import infer_data_job
    from vlmeval.smp import load
    from vlmfleet.contract import Unit
    from vlmfleet.datasets import prepare_dataset, use_smoke_data_root
    from vlmfleet.families import llava
    from vlmfleet.families.llava_batched import infer_prepared, prepare_samples
    from vlmfleet.stack import seed_everything

    slot = _slot(smoke_env, max_new=12, min_new=min_new)
    use_smoke_data_root(slot)
    seed_everything()
    b = DEFAULT_BENCHMARKS[bench]
    model = llava.load(Unit("llava_v1.5_7b", "llava", (b,)), slot)
    ref_dir = smoke_env / f"ref-{bench}-{min_new}"
    new_dir = smoke_env / f"new-{bench}-{min_new}"
    ref_dir.mkdir()
    new_dir.mkdir()
    infer_data_job(model, work_dir=str(ref_dir), model_name="m", dataset=prepare_dataset(b, slot))
    dataset = prepare_dataset(b, slot)
    prepared = prepare_samples(model, dataset)
    new_file, _ = infer_prepared(model, str(new_dir), "m", dataset, prepared, 4)
    ref_files = sorted(p.name for p in ref_dir.iterdir())
    assert sorted(p.name for p in new_dir.iterdir()) == ref_files
    assert Path(new_file).name in ref_files
    ref = load(str(ref_dir / Path(new_file).name))
    new = load(new_file)
    assert list(new.columns) == list(ref.columns)
    assert len(new) >= 6
    assert list(new["index"]) == list(ref["index"])
    assert list(new["prediction"]) == list(ref["prediction"])
    if min_new:
        # Fixed answer length: no answer may stop early.
        assert all(len(p) > 0 for p in new["prediction"])
    # The file is one dataset.evaluate accepts.
    assert prepare_dataset(b, slot).evaluate(new_file, model="exact_matching", nproc=1) is not None


def test_an_error_raised_while_handling_an_out_of_memory_counts_as_one() -> None:
    from vlmfleet.families.llava_batched import is_out_of_memory

    oom = out_of_memory_type()
    try:
        try:
            raise oom("CUDA out of memory. Tried to allocate 2.00 GiB (stand-in)")
        except RuntimeError:
            # What ending a CUDA graph capture raises after an allocation inside it failed.
            raise RuntimeError("operation failed due to a previous error during capture")  # noqa: B904
    except RuntimeError as err:
        assert is_out_of_memory(err)
    assert not is_out_of_memory(RuntimeError("CUDA error: device-side assert triggered"))
