"""The llava family's batched engine: same answers and prediction file as VLMEvalKit's own loop.

The pure checks run everywhere; the comparison needs the image's stack (torch, LLaVA,
VLMEvalKit) and builds a tiny random LLaVA-1.5 checkpoint on the CPU (float32, greedy).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import queue
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from vlmfleet.families import InferenceError, Queued, llava_batched
from vlmfleet.families.batch_memory import (
    ModelShape,
    batch_bytes,
    cache_positions,
    cache_slots,
    largest_batch,
)
from vlmfleet.families.llava_batched import (
    GENERATE,
    Batch,
    BatchingError,
    BatchPolicy,
    Decoder,
    Job,
    PreparedSamples,
    Sample,
    batches,
    check_batch_size,
    check_model,
    form_batch,
    new_job,
    run_queue,
)
from vlmfleet.families.prefix_groups import PrefixGroup, share_key
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
    policy.rows_for = lambda longest, budget, tokens: min(8, 4 // per_row[longest])  # type: ignore
    pool = [new_job(queued("A", [10, 10, 10, 20, 20, 40]))]
    sizes = []
    while batch := form_batch(pool, policy):
        sizes.append(len(batch))
    assert sizes == [3, 2, 1]


def stand_in_generate(
    monkeypatch: pytest.MonkeyPatch, generate: Callable[..., list[Any]], as_list: bool = True
) -> None:
    """The engine's batches go to ``generate`` as its samples (a list, or the Batch itself)
    instead of model inputs."""
    monkeypatch.setattr(
        llava_batched,
        "batch_inputs",
        (lambda model, batch, groups=(): list(batch))
        if as_list
        else (lambda model, batch, groups=(): batch),
    )
    monkeypatch.setattr(llava_batched, "generate_inputs", generate)


def test_one_queue_answers_every_benchmark_and_says_where_samples_went(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[list[str]] = []

    def generate(
        model: object, inputs: list[Sample], decoder: object, sizing: object = None
    ) -> list[str]:
        calls.append(sorted({s.key for s in inputs}))
        return answer(inputs)

    stand_in_generate(monkeypatch, generate)
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

    def generate(
        model: object, inputs: list[Sample], decoder: object, sizing: object = None
    ) -> list[str]:
        calls.append([s.index for s in inputs])
        return answer(inputs)

    stand_in_generate(monkeypatch, generate)
    done = run([queued(k, [1, 2, 3]) for k in "ABCDEF"], BatchPolicy(ceiling=8))
    assert list(done) == list("ABCDEF")
    # Full batches across benchmarks (not two benchmarks' six samples at a time).
    assert [len(c) for c in calls] == [8, 8, 2]
    assert calls[0][:3] == ["A0", "A1", "A2"]
    assert done["C"].record["batch_sizes"] == {"8": 3}


def test_a_failing_batch_fails_its_benchmarks_only(monkeypatch: pytest.MonkeyPatch) -> None:
    def generate(
        model: object, inputs: list[Sample], decoder: object, sizing: object = None
    ) -> list[str]:
        if any(s.key == "B" for s in inputs):
            raise RuntimeError("CUDA error: device-side assert triggered")
        return answer(inputs)

    stand_in_generate(monkeypatch, generate)
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

        def generate(
            model: object, inputs: list[Sample], decoder: object, sizing: object = None
        ) -> list[str]:
            calls.append(len(inputs))
            if len(inputs) > n:
                raise oom("CUDA out of memory. Tried to allocate 2.00 GiB (stand-in)")
            return answer(inputs)

        stand_in_generate(monkeypatch, generate)
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

    def generate(
        model: object, inputs: list[Sample], decoder: object, sizing: object = None
    ) -> list[str]:
        calls.append(len(inputs))
        raise RuntimeError("CUDA error: device-side assert triggered")

    stand_in_generate(monkeypatch, generate)
    got = run([queued("A", [1, 2, 3, 4])], BatchPolicy(ceiling=4))
    assert "device-side assert" in str(got["A"].error)
    assert calls == [4]


LLAVA_7B = ModelShape(
    layers=32, hidden=4096, heads=32, vocab=32000, dtype_bytes=2, image_positions=576
)
BUDGET = 30 * 2**30


def sized_policy() -> BatchPolicy:
    """auto on CUDA for the 7B with 30 GiB left: reserve 64, max_new_tokens 2048."""
    return BatchPolicy(
        ceiling=64, shape=LLAVA_7B, budget=lambda: BUDGET, max_new_tokens=2048, reserve=64
    )


def test_batches_are_sized_for_the_reserve_and_deferred_rows_for_max_new_tokens() -> None:
    job = new_job(queued("A", [702] * 60))
    policy = sized_policy()
    batch = form_batch([job], policy)
    rows = largest_batch(LLAVA_7B, BUDGET, 702, 64, ceiling=64)
    # 48 rows (50 for 10 new tokens, 18 for 2048).
    assert len(batch) == rows == 48
    assert batch.sizing is not None and not batch.sizing.full
    assert (batch.sizing.allowed, batch.sizing.new_tokens) == (48, 64)
    # The decoder may hold the KV cache the batch was sized for, and no more.
    assert batch.sizing.slots == cache_slots(48, 702, 64) == 48 * 768
    # Deferred samples wait while their benchmark has others pending ...
    job.deferred = [dataclasses.replace(s, deferred=True) for s in batch[:3]]
    second = form_batch([job], policy)
    assert len(second) == 12 and not any(s.deferred for s in second)
    # ... then go in a batch of their own, sized for max_new_tokens, without a slot limit.
    third = form_batch([job], policy)
    assert [s.index for s in third] == ["A0", "A1", "A2"]
    assert third.sizing is not None and third.sizing.full and third.sizing.slots is None
    assert third.sizing.allowed == largest_batch(LLAVA_7B, BUDGET, 702, 2048, ceiling=64) == 18
    # The worker's line for each batch says so.
    assert third.sizing.describe(3) == (
        "batch of 3 deferred rows (at most 18 rows of 702 positions + max_new_tokens, "
        "no slot limit)"
    )
    assert batch.sizing.describe(48) == (
        "batch of 48 (at most 48 rows of 702 positions + 64 new tokens (reserve), "
        "36864 cache slots)"
    )


def test_deferred_rows_fill_a_full_size_batch_before_their_benchmark_is_done() -> None:
    job = new_job(queued("A", [702] * 40))
    job.deferred = [dataclasses.replace(s, deferred=True) for s in job.pending[:18]]
    # 18 deferred rows fill a batch sized for 2048 new tokens: they go first.
    batch = form_batch([job], sized_policy())
    assert len(batch) == 18 and all(s.deferred for s in batch)
    # 17 would wait.
    job = new_job(queued("A", [702] * 40))
    job.deferred = [dataclasses.replace(s, deferred=True) for s in job.pending[:17]]
    assert not any(s.deferred for s in form_batch([job], sized_policy()))


def test_deferred_rows_wait_for_every_benchmarks_pending_samples_then_go_together() -> None:
    a = new_job(queued("A", [702] * 4))
    b = new_job(queued("B", [702] * 4))
    a.pending, a.deferred = [], [dataclasses.replace(s, deferred=True) for s in a.pending[:1]]
    b.deferred = [dataclasses.replace(s, deferred=True) for s in b.pending[:1]]
    b.pending = b.pending[1:]
    # A has only its long answer left, B still has samples pending: B's go first ...
    first = form_batch([a, b], sized_policy())
    assert [s.index for s in first] == ["B1", "B2", "B3"]
    # ... then A's and B's long answers share one batch sized for max_new_tokens.
    second = form_batch([a, b], sized_policy())
    assert [s.index for s in second] == ["A0", "B0"]
    assert second.sizing is not None and second.sizing.full


def test_a_deferred_row_is_answered_again_in_a_full_size_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Stand-in decoder: samples named "long" outgrow a batch's cache slots (None), unless the
    # batch has no slot limit (sized for max_new_tokens).
    calls: list[tuple[list[str], Batch]] = []

    def generate(model: object, inputs: Batch, decoder: object, sizing: object = None) -> list:
        calls.append(([s.index for s in inputs], inputs))
        limited = inputs.sizing is not None and inputs.sizing.slots is not None
        return [None if limited and "long" in s.index else f"answer {s.index}" for s in inputs]

    stand_in_generate(monkeypatch, generate, as_list=False)
    a = queued("A", [700, 702, 704, 706])
    a.prepared.with_images[1].index = "A-long"
    b = queued("B", [700, 701])
    done = run([a, b], BatchPolicy(ceiling=3, reserve=64))
    assert done["A"].answers == {i: f"answer {i}" for i in ("A0", "A-long", "A2", "A3")}
    assert done["A"].record["samples_deferred"] == 1
    assert done["B"].record["samples_deferred"] == 0
    # A's first batch deferred A-long; it went again alone, sized for max_new_tokens, once A
    # had nothing else pending, and B came after.
    assert [c[0] for c in calls] == [["A0", "A-long", "A2"], ["A3", "B1", "B0"], ["A-long"]]
    assert calls[2][1].sizing.full and calls[2][1].sizing.slots is None
    assert calls[0][1].sizing.slots == 3 * cache_positions(704, 64)
    # Counted once, at the size it was answered at.
    assert done["A"].record["batch_sizes"] == {"3": 3, "1": 1}


def test_deferred_rows_that_a_max_new_tokens_batch_cannot_hold_share_a_narrower_window() -> None:
    # 20 rows of 702 positions deferred: 18 fit a batch sized for 2048 new tokens, 27 for 1024
    # (a row: 1728 cache positions of 0.5 MiB, 134.8 MB of logits, 69.0 MB of activations and
    # 63.1 MB of scores, 1.17 GB in all, in 30 GiB).
    assert largest_batch(LLAVA_7B, BUDGET, 702, 2048, ceiling=64) == 18
    assert largest_batch(LLAVA_7B, BUDGET, 702, 1024, ceiling=64) == 27
    job = new_job(queued("A", [702] * 20))
    job.pending, job.deferred = [], [dataclasses.replace(s, deferred=1) for s in job.pending]
    batch = form_batch([job], sized_policy())
    # All 20 together, sized for 1024 new tokens a row, with their cache slots: no 19th and
    # 20th long answers left to decode in a batch of their own.
    assert len(batch) == 20 and batch.sizing is not None and batch.sizing.full
    assert (batch.sizing.allowed, batch.sizing.new_tokens) == (27, 1024)
    assert batch.sizing.slots == cache_slots(20, 702, 1024)
    assert batch.sizing.describe(20) == (
        f"batch of 20 deferred rows (at most 27 rows of 702 positions + 1024 new tokens, "
        f"{cache_slots(20, 702, 1024)} cache slots)"
    )


def test_a_row_deferred_from_a_batch_of_deferred_rows_goes_in_one_sized_for_max_new_tokens() -> (
    None
):
    job = new_job(queued("A", [702] * 20))
    job.pending, job.deferred = [], [dataclasses.replace(s, deferred=1) for s in job.pending]
    job.deferred[0] = dataclasses.replace(job.deferred[0], index="A-again", deferred=2)
    batch = form_batch([job], sized_policy())
    # One row deferred twice: the batch is sized for 2048 new tokens without a slot limit, so
    # nothing in it is deferred a third time.
    assert "A-again" in [s.index for s in batch]
    assert batch.sizing is not None and batch.sizing.full and batch.sizing.slots is None
    assert (len(batch), batch.sizing.new_tokens) == (18, 2048)


def test_long_answers_go_to_a_narrower_window_together_and_only_the_longest_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Stand-in decoder: a row needing more new tokens than its batch was sized for is deferred,
    # unless the batch has no slot limit.
    needs = {"A-long": 500, "A-longest": 2000}
    calls: list[tuple[list[str], int, int | None]] = []

    def generate(model: object, inputs: Batch, decoder: object, sizing: object = None) -> list:
        assert inputs.sizing is not None
        calls.append(([s.index for s in inputs], inputs.sizing.new_tokens, inputs.sizing.slots))
        limited = inputs.sizing.slots is not None
        return [
            None if limited and needs.get(s.index, 1) > inputs.sizing.new_tokens else s.index
            for s in inputs
        ]

    stand_in_generate(monkeypatch, generate, as_list=False)
    a = queued("A", [702, 702, 702])
    a.prepared.with_images[1].index = "A-long"
    a.prepared.with_images[2].index = "A-longest"
    # A budget for 4 rows at the reserve, 2 at 1024 new tokens, 1 at 2048.
    budget = int(2.5 * 2**30)
    fits = [largest_batch(LLAVA_7B, budget, 702, n, ceiling=64) for n in (64, 1024, 2048)]
    assert fits == [4, 2, 1]
    policy = BatchPolicy(
        ceiling=64, shape=LLAVA_7B, budget=lambda: budget, max_new_tokens=2048, reserve=64
    )
    done = run([a], policy)
    assert done["A"].answers == {i: i for i in ("A0", "A-long", "A-longest")}
    assert calls == [
        (["A0", "A-long", "A-longest"], 64, cache_slots(3, 702, 64)),
        # Both long answers together, in the widest window that holds both ...
        (["A-long", "A-longest"], 1024, cache_slots(2, 702, 1024)),
        # ... and only the one that outgrew it again, without a slot limit.
        (["A-longest"], 2048, None),
    ]
    # Samples deferred, not deferrals.
    assert done["A"].record["samples_deferred"] == 2
    assert done["A"].record["batch_sizes"] == {"3": 1, "2": 1, "1": 1}


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


def batch_4_and_batch_1_loop(
    smoke_env: Path,
    bench: str,
    tag: str,
    min_new: int | None,
    policy: Callable[[PreparedSamples], BatchPolicy] | None = None,
    **engine: Any,
) -> tuple[Path, Path, dict[str, Any], Callable[[], Any]]:
    """The tiny 7B's prediction files of one benchmark (answers up to 12 new tokens):
    VLMEvalKit's batch-1 loop (``infer_data_job``) in one folder, the engine at batch 4
    (``engine``: its other arguments; or the queue with the batch ``policy`` made for the
    prepared samples) in another. Returns the engine's file, the loop's folder, the engine's
    record and a maker of the prepared dataset."""
    from vlmeval.inference import infer_data_job
    from vlmfleet.contract import Unit
    from vlmfleet.datasets import prepare_dataset, use_smoke_data_root
    from vlmfleet.families import llava
    from vlmfleet.families.llava_batched import answer_all, infer_prepared, prepare_samples
    from vlmfleet.predictions import write_predictions
    from vlmfleet.stack import seed_everything

    slot = _slot(smoke_env, max_new=12, min_new=min_new)
    use_smoke_data_root(slot)
    seed_everything()
    b = DEFAULT_BENCHMARKS[bench]
    model = llava.load(Unit("llava_v1.5_7b", "llava", (b,)), slot)
    ref_dir = smoke_env / f"ref-{tag}"
    new_dir = smoke_env / f"new-{tag}"
    ref_dir.mkdir()
    new_dir.mkdir()
    infer_data_job(model, work_dir=str(ref_dir), model_name="m", dataset=prepare_dataset(b, slot))
    dataset = prepare_dataset(b, slot)
    prepared = prepare_samples(model, dataset)
    if policy is None:
        new_file, record = infer_prepared(model, str(new_dir), "m", dataset, prepared, 4, **engine)
    else:
        done = answer_all(model, [(b.name, dataset, prepared)], policy(prepared))[b.name]
        new_file, record = write_predictions(str(new_dir), "m", dataset, done.answers), done.record
    return Path(new_file), ref_dir, record, lambda: prepare_dataset(b, slot)


@needs_stack
@pytest.mark.parametrize("bench", ["MMBench_DEV_EN", "TextVQA_VAL", "POPE", "BLINK"])
@pytest.mark.parametrize("min_new", [None, 12])
def test_batched_file_equals_infer_data_job_file(
    smoke_env: Path, bench: str, min_new: int | None
) -> None:
    """Batch 4 writes the file VLMEvalKit's batch-1 loop writes, byte for byte in content."""
    from vlmeval.smp import load

    new_file, ref_dir, _, dataset = batch_4_and_batch_1_loop(
        smoke_env, bench, f"{bench}-{min_new}", min_new
    )
    ref_files = sorted(p.name for p in ref_dir.iterdir())
    assert sorted(p.name for p in new_file.parent.iterdir()) == ref_files
    assert new_file.name in ref_files
    ref = load(str(ref_dir / new_file.name))
    new = load(str(new_file))
    assert list(new.columns) == list(ref.columns)
    assert len(new) >= 6
    assert list(new["index"]) == list(ref["index"])
    assert list(new["prediction"]) == list(ref["prediction"])
    if min_new:
        # Fixed answer length: no answer may stop early.
        assert all(len(p) > 0 for p in new["prediction"])
    # The file is one dataset.evaluate accepts.
    assert dataset().evaluate(str(new_file), model="exact_matching", nproc=1) is not None


@needs_stack
@pytest.mark.parametrize("bench", ["TextVQA_VAL", "MMBench_DEV_EN"])
def test_answers_that_outgrow_the_reserve_are_deferred_and_equal_the_batch_1_loops(
    smoke_env: Path, bench: str
) -> None:
    """Random weights answer to the token limit (12): each batch of 4 sized for a reserve of 2
    new tokens a row runs out of cache slots, rows are deferred and decoded again in a batch
    sized for 12, and the file is still the one VLMEvalKit's batch-1 loop writes."""
    from vlmeval.smp import load

    new_file, ref_dir, record, _ = batch_4_and_batch_1_loop(
        smoke_env, bench, f"reserve-{bench}", None, reserve=2
    )
    ref = load(str(ref_dir / new_file.name))
    new = load(str(new_file))
    assert record["samples_deferred"] >= 1
    assert list(new["index"]) == list(ref["index"])
    assert list(new["prediction"]) == list(ref["prediction"])


# A stand-in for the model's size in the sizing rule only: keys and values of 100 layers, 200
# bytes a position, and nothing else, so that a row's bytes follow its cache positions and a
# few new tokens more change how many rows fit (the tiny checkpoint's logits would hide them).
CACHE_ONLY = ModelShape(layers=100, hidden=1, heads=0, vocab=0, dtype_bytes=1, image_positions=576)


@needs_stack
def test_deferred_rows_in_a_narrower_window_and_deferred_again_equal_the_batch_1_loops(
    smoke_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sized by memory for a reserve of 2 new tokens a row (4 rows a batch at most), random
    answers run to 12 tokens and rows are deferred. MMBench's rows (its rotations) are enough
    for more of them to wait than a batch sized for 12 holds: they decode together in a
    narrower window with its cache slots, those that outgrow it are deferred again and decoded
    for 12 without a slot limit, and the file is still the one VLMEvalKit's batch-1 loop
    writes."""
    bench = "MMBench_DEV_EN"
    from vlmeval.smp import load

    sizings: list[Any] = []
    generate_inputs = llava_batched.generate_inputs

    def recording(model: Any, inputs: Any, decoder: Any, sizing: Any = None) -> Any:
        sizings.append(sizing)
        return generate_inputs(model, inputs, decoder, sizing)

    monkeypatch.setattr(llava_batched, "generate_inputs", recording)

    def policy(prepared: PreparedSamples) -> BatchPolicy:
        longest = max(s.positions for s in prepared.with_images)
        budget = 4 * batch_bytes(CACHE_ONLY, 1, longest, 2)
        return BatchPolicy(
            ceiling=4, shape=CACHE_ONLY, budget=lambda: budget, max_new_tokens=12, reserve=2
        )

    new_file, ref_dir, record, _ = batch_4_and_batch_1_loop(
        smoke_env, bench, f"tail-{bench}", None, policy
    )
    tails = [z for z in sizings if z.full and z.slots is not None]
    assert tails and all(z.new_tokens < 12 for z in tails), sizings
    assert any(z.full and z.slots is None for z in sizings), sizings
    assert record["samples_deferred"] >= 1
    ref = load(str(ref_dir / new_file.name))
    new = load(str(new_file))
    assert list(new["index"]) == list(ref["index"])
    assert list(new["prediction"]) == list(ref["prediction"])


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


# --- groups sharing a prefix ----------------------------------------------------------------

IMAGE = -200


def rotations(key: str, question: int, positions: list[int]) -> list[Sample]:
    """A question's rows with its options rotated: one image, one prompt start (token ids
    1, image, the question's two tokens), options of their own."""
    head = [1, IMAGE, 50 + question, 60 + question]
    return [
        Sample(
            f"{key}q{question}r{r}",
            "p",
            ["x.png"],
            positions=p,
            ids=[*head, 100 + r, 9],
            share_key=share_key(f"image {question}", [*head, 100 + r, 9], IMAGE),
        )
        for r, p in enumerate(positions)
    ]


def rotated_job(key: str) -> Job:
    # Two questions whose rotations interleave by length: shortest first would mix them.
    samples = rotations(key, 0, [10, 12, 14, 16]) + rotations(key, 1, [11, 13, 15, 17])
    return new_job(Queued(key, None, PreparedSamples(with_images=samples)))


def test_a_batch_keeps_a_groups_rows_together_and_names_the_group() -> None:
    pool = [rotated_job("A")]
    first = form_batch(pool, BatchPolicy(ceiling=4))
    assert [s.index for s in first] == ["Aq0r0", "Aq0r1", "Aq0r2", "Aq0r3"]
    assert first.groups == (PrefixGroup((0, 1, 2, 3), 4),)
    second = form_batch(pool, BatchPolicy(ceiling=4))
    assert [s.index for s in second] == ["Aq1r0", "Aq1r1", "Aq1r2", "Aq1r3"]
    # Where the batch has no room for the whole group, it takes what fits.
    pool = [rotated_job("A")]
    small = form_batch(pool, BatchPolicy(ceiling=3))
    assert [s.index for s in small] == ["Aq0r0", "Aq0r1", "Aq0r2"]
    assert small.groups == (PrefixGroup((0, 1, 2), 4),)


def test_without_sharing_a_batch_takes_the_shortest_and_names_no_group() -> None:
    pool = [rotated_job("A")]
    batch = form_batch(pool, BatchPolicy(ceiling=4, share_prefixes=False))
    assert [s.positions for s in batch] == [10, 11, 12, 13]
    assert batch.groups == ()


def test_the_record_counts_the_samples_prefilled_in_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    batches: list[Batch] = []

    def generate(model: object, inputs: Batch, decoder: object, sizing: object = None) -> list:
        batches.append(inputs)
        return answer(inputs)

    stand_in_generate(monkeypatch, generate, as_list=False)
    incoming: queue.Queue[Queued | None] = queue.Queue()
    incoming.put(rotated_job("A").queued)
    incoming.put(None)
    static = Decoder("static_cache", greedy=SimpleNamespace())  # type: ignore[arg-type]
    (done,) = run_queue(object(), incoming, BatchPolicy(ceiling=3), static)
    # Batches of 3: three rows of each question, then their fourth rows, of two questions
    # (no group).
    assert [len(g.rows) for b in batches for g in b.groups] == [3, 3]
    assert [len(b) for b in batches] == [3, 3, 2]
    assert done.record["samples_prefix_shared"] == 6
    # transformers' generate prefills rows whole: no group is formed for it.
    incoming.put(rotated_job("B").queued)
    incoming.put(None)
    (plain,) = run_queue(object(), incoming, BatchPolicy(ceiling=3), GENERATE)
    assert plain.record["samples_prefix_shared"] == 0


def test_a_sample_taken_as_another_benchmarks_company_brings_its_group() -> None:
    pool = [new_job(queued("A", [10])), rotated_job("B")]
    batch = form_batch(pool, BatchPolicy(ceiling=4))
    # A's last sample, then B's nearest in length (q0r0, 10) with the rest of its group, not
    # q1r0 (11), the next nearest.
    assert [s.index for s in batch] == ["A0", "Bq0r0", "Bq0r1", "Bq0r2"]
    assert batch.groups == (PrefixGroup((1, 2, 3), 4),)
    assert [s.index for s in pool[1].pending] == ["Bq1r0", "Bq1r1", "Bq1r2", "Bq0r3", "Bq1r3"]
