"""Batches sized by memory: the rule's figures for known model sizes and GPU shares."""

from __future__ import annotations

import pytest
from vlmfleet.families.batch_memory import (
    CONTEXT_RESERVE,
    GIB,
    HEADROOM,
    MIB,
    RESERVE_TOKENS,
    GpuMemory,
    ModelShape,
    allocator_share,
    batch_bytes,
    cache_positions,
    cache_slots,
    kv_bytes_per_token,
    largest_batch,
    rows_that_fit,
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
    # The KV cache alone: 660 positions (664 slots, a multiple of 8) at 0.5 MiB.
    assert one > 664 * MIB // 2
    assert batch_bytes(LLAVA_7B, 8, 650, 10) == 8 * one
    # 2698 positions are 2704 slots: 2040 more than 664.
    assert batch_bytes(LLAVA_7B, 1, 650, 2048) - one == 2040 * MIB // 2
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


def test_cache_slots_are_the_prompt_and_new_tokens_rounded_up_to_8() -> None:
    assert cache_positions(650, 10) == 664
    assert cache_positions(702, 64) == 768
    assert cache_positions(704, 64) == 768
    assert cache_positions(705, 64) == 776
    # A batch of 38 rows sized for the reserve at 702 positions.
    assert cache_slots(38, 702, RESERVE_TOKENS) == 38 * 768


def h100_half(weights_gib: int) -> int:
    """The budget of one of two slots on an H100 80GB, its model's weights loaded."""
    weights = weights_gib * GIB
    total = 80 * GIB
    gpu = GpuMemory(free=total - 2 * weights, total=total, allocated=weights, reserved=weights)
    return slot_budget([gpu], 2)


def test_the_reserve_sizes_batches_near_forced_short_answers_not_2048() -> None:
    # The seed matrix at limit 10 on one H100 (bench/README.md): two slots, the 7B (14 GB of
    # weights) in one and the 13B (26 GB) in the other; prompts of about 700 positions.
    budget_7b, budget_13b = h100_half(14), h100_half(26)
    rows = {
        (name, new): largest_batch(shape, budget, 702, new, ceiling=64)
        for name, shape, budget in (("7b", LLAVA_7B, budget_7b), ("13b", LLAVA_13B, budget_13b))
        for new in (10, RESERVE_TOKENS, 2048)
    }
    # VLMEvalKit's 2048 new tokens: 13 and 4 rows (as measured with the length mix); forced 10
    # tokens: 35 and 13 (measured 38-40 and 14-15, many prompts shorter than 702); the reserve
    # of 64: one row fewer than the forced 10, nearly three times the rows of 2048.
    assert rows == {
        ("7b", 10): 35,
        ("7b", RESERVE_TOKENS): 34,
        ("7b", 2048): 13,
        ("13b", 10): 13,
        ("13b", RESERVE_TOKENS): 12,
        ("13b", 2048): 4,
    }


def test_rows_still_decoding_grow_into_the_slots_of_the_batch() -> None:
    # A batch of 38 rows of 702 positions sized for the reserve: 38 x 768 slots.
    slots = cache_slots(38, 702, RESERVE_TOKENS)
    # One long answer left (the others ended): it doubles its window as far as 2048 new tokens.
    assert rows_that_fit(1, 832, 768, slots) == (1, 832)
    assert rows_that_fit(1, cache_positions(702, 2047), 1728, slots) == (1, 2752)
    # All 38 still decoding at the first window's end: 35 fit the doubled window of 832 slots
    # (38 x 768 // 832), the other 3 are deferred.
    assert rows_that_fit(38, 832, 768, slots) == (35, 832)
    # No limit (a batch sized for max_new_tokens): every row, the doubled window.
    assert rows_that_fit(38, 832, 768, None) == (38, 832)


def test_a_lone_row_takes_the_widest_window_that_fits_then_is_deferred() -> None:
    slots = cache_slots(1, 702, RESERVE_TOKENS)  # 768
    assert rows_that_fit(1, 832, 768, slots) == (0, 768)
    # Slots for 800 a row: not the doubled 896, but 800 is wider than 768.
    assert rows_that_fit(1, 896, 768, 800) == (1, 800)
    assert rows_that_fit(1, 896, 800, 805) == (0, 800)
