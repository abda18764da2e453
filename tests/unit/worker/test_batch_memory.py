"""Batches sized by memory: the rule's figures for known model sizes and GPU shares."""

from __future__ import annotations

import pytest
from vlmfleet.families.batch_memory import (
    CONTEXT_RESERVE,
    GIB,
    HEADROOM,
    MIB,
    GpuMemory,
    ModelShape,
    allocator_share,
    batch_bytes,
    kv_bytes_per_token,
    largest_batch,
    slot_budget,
)

LLAVA_7B = ModelShape(
    layers=32, hidden=4096, heads=32, vocab=32000, dtype_bytes=2, image_positions=576
)
LLAVA_13B = ModelShape(
    layers=40, hidden=5120, heads=40, vocab=32000, dtype_bytes=2, image_positions=576
)


def test_kv_cache_per_token_of_known_sizes() -> None:
    assert kv_bytes_per_token(LLAVA_7B) == MIB // 2
    assert kv_bytes_per_token(LLAVA_13B) == 800 * 2**10
    # float32 (a CPU slot) doubles it.
    assert kv_bytes_per_token(ModelShape(32, 4096, 32, 32000, 4, 576)) == MIB


def test_batch_bytes_grow_with_rows_prompt_and_answer_length() -> None:
    one = batch_bytes(LLAVA_7B, 1, 650, 10)
    # The KV cache alone: 660 positions at 0.5 MiB.
    assert one > 660 * MIB // 2
    assert batch_bytes(LLAVA_7B, 8, 650, 10) == 8 * one
    assert batch_bytes(LLAVA_7B, 1, 650, 2048) - one == 2038 * MIB // 2
    assert batch_bytes(LLAVA_7B, 1, 1300, 10) > 2 * one
    assert batch_bytes(LLAVA_13B, 1, 650, 10) > one


def test_a_slot_gets_its_share_of_a_shared_gpu_less_its_weights() -> None:
    h200 = 141 * GIB
    weights = 14 * GIB
    alone = GpuMemory(free=h200 - weights, total=h200, allocated=weights, reserved=weights)
    assert slot_budget([alone], 1) == int((h200 - weights - CONTEXT_RESERVE) * HEADROOM)
    # Two slots on the GPU, the other one's model not loaded yet: half the GPU, not all that
    # is free now.
    half = slot_budget([alone], 2)
    assert half == int((h200 // 2 - weights - CONTEXT_RESERVE) * HEADROOM)
    # The other slot holds more than its half: what is free is the limit.
    crowded = GpuMemory(free=20 * GIB, total=h200, allocated=weights, reserved=weights)
    assert slot_budget([crowded], 2) == int((20 * GIB - CONTEXT_RESERVE) * HEADROOM)
    # This process's cached blocks are its own to reuse.
    cached = GpuMemory(free=20 * GIB, total=h200, allocated=weights, reserved=weights + 4 * GIB)
    assert slot_budget([cached], 2) == int((24 * GIB - CONTEXT_RESERVE) * HEADROOM)


def test_a_full_gpu_leaves_no_budget_and_batch_1_is_still_tried() -> None:
    full = GpuMemory(free=0, total=80 * GIB, allocated=70 * GIB, reserved=70 * GIB)
    assert slot_budget([full], 1) == 0
    assert largest_batch(LLAVA_7B, 0, 650, 10, ceiling=64) == 1


def test_a_slot_of_several_gpus_counts_each_of_them() -> None:
    gpu = GpuMemory(free=30 * GIB, total=80 * GIB, allocated=10 * GIB, reserved=10 * GIB)
    small = GpuMemory(free=10 * GIB, total=80 * GIB, allocated=10 * GIB, reserved=10 * GIB)
    assert slot_budget([gpu, small], 1) == 2 * slot_budget([small], 1)


def test_largest_batch_on_an_h200_share() -> None:
    h200 = 141 * GIB
    mem = GpuMemory(free=h200 - 14 * GIB, total=h200, allocated=14 * GIB, reserved=14 * GIB)
    budget = slot_budget([mem], 2)
    # About 0.42 GiB a row at 650 prompt positions and 10 new tokens.
    rows = largest_batch(LLAVA_7B, budget, 650, 10, ceiling=1024)
    assert budget // batch_bytes(LLAVA_7B, 1, 650, 10) == rows
    assert 80 <= rows <= 140
    assert largest_batch(LLAVA_7B, budget, 650, 10, ceiling=64) == 64
    # VLMEvalKit's own answer cap for LLaVA (2048 tokens) costs 1 GiB a row of KV cache.
    assert largest_batch(LLAVA_7B, budget, 650, 2048, ceiling=1024) < rows // 2


def test_shared_by_must_be_positive() -> None:
    gpu = GpuMemory(free=1, total=1, allocated=0, reserved=0)
    with pytest.raises(ValueError, match="shared_by"):
        slot_budget([gpu], 0)


def test_two_slots_on_an_h200_each_cap_their_allocator_below_half() -> None:
    total = 141 * GIB
    # Half of 141 GiB is 70.5 GiB, less the 1 GiB context reserve: 69.5 GiB of 141.
    assert allocator_share(total, 2) == pytest.approx(69.5 / 141)
    assert allocator_share(total, 1) == pytest.approx(140 / 141)
    # Caps and contexts together fit the GPU.
    assert 4 * (allocator_share(total, 4) * total + CONTEXT_RESERVE) == pytest.approx(total)


def test_a_share_smaller_than_the_context_reserve_is_zero() -> None:
    assert allocator_share(2 * GIB, 4) == 0.0


@pytest.mark.parametrize(("total", "shared_by", "named"), [(GIB, 0, "shared_by"), (0, 2, "total")])
def test_bad_share_arguments_are_named(total: int, shared_by: int, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        allocator_share(total, shared_by)
