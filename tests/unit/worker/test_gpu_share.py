"""A slot that shares its GPUs caps its allocator at its share of each (vlmfleet.stack).

No GPU here: a stand-in ``torch`` module (two GPUs of different sizes) records what the worker
asks of the allocator; the share itself is batch_memory's rule.
"""

from __future__ import annotations

import sys
import types

import pytest
from vlmfleet.families.batch_memory import GIB, allocator_share
from vlmfleet.stack import cap_gpu_share


def standin_torch(monkeypatch: pytest.MonkeyPatch, totals: list[int]) -> list[tuple[float, int]]:
    """A stand-in torch with ``totals`` bytes of GPUs; returns the fractions set, by GPU."""
    calls: list[tuple[float, int]] = []
    cuda = types.SimpleNamespace(
        device_count=lambda: len(totals),
        get_device_properties=lambda i: types.SimpleNamespace(total_memory=totals[i]),
        set_per_process_memory_fraction=lambda fraction, device: calls.append((fraction, device)),
    )
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=cuda))
    return calls


def test_each_gpu_of_a_shared_slot_is_capped_at_the_slots_share(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = standin_torch(monkeypatch, [141 * GIB, 80 * GIB])
    fractions = cap_gpu_share(2)
    assert calls == [(allocator_share(141 * GIB, 2), 0), (allocator_share(80 * GIB, 2), 1)]
    assert fractions == [fraction for fraction, _ in calls]
    assert fractions[1] == pytest.approx(39 / 80)


def test_without_a_gpu_nothing_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = standin_torch(monkeypatch, [])
    assert cap_gpu_share(2) == [] and calls == []
