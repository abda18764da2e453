"""Which rows of a benchmark a sample limit keeps. Pure Python (no pandas, no torch)."""

from __future__ import annotations

from collections.abc import Sequence

# VLMEvalKit evaluates these datasets circularly (ImageMCQDataset.evaluate_heuristic): each
# question appears several times with its options rotated, as rows index, index + 1e6, ...
# A question is only scored when every rotation of it was answered.
_CIRCULAR_MARKERS = ("mmbench", "ccbench", "circular", "mmcr")
CIRCULAR_OFFSET = 1_000_000


def is_circular(dataset_name: str) -> bool:
    lower = dataset_name.lower()
    return any(marker in lower for marker in _CIRCULAR_MARKERS)


def group_key(index: object, g_index: object | None = None) -> object:
    """The question a row belongs to: g_index when the data has it, else index mod 1e6."""
    if g_index is not None:
        return int(g_index)  # type: ignore[call-overload]
    return int(index) % CIRCULAR_OFFSET  # type: ignore[call-overload]


def select_positions(
    indices: Sequence[object],
    limit: int | None,
    *,
    circular: bool,
    g_indices: Sequence[object] | None = None,
) -> list[int]:
    """Row positions to keep: the first ``limit`` questions in file order.

    For circular datasets the first ``limit`` question groups are kept whole (all their
    rotations, wherever they sit in the file); otherwise the first ``limit`` rows.
    """
    if limit is not None and (isinstance(limit, bool) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    if limit is None:
        return list(range(len(indices)))
    if not circular:
        return list(range(min(limit, len(indices))))
    keys = [
        group_key(idx, None if g_indices is None else g_indices[pos])
        for pos, idx in enumerate(indices)
    ]
    chosen: list[object] = []
    chosen_set: set[object] = set()
    for key in keys:
        if key not in chosen_set:
            if len(chosen) == limit:
                continue
            chosen.append(key)
            chosen_set.add(key)
    return [pos for pos, key in enumerate(keys) if key in chosen_set]


def count_questions(indices: Sequence[object], *, circular: bool) -> int:
    if not circular:
        return len(indices)
    return len({group_key(idx) for idx in indices})
