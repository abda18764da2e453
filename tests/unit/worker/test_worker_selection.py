"""The sample limit: first N questions, circular groups kept whole."""

from __future__ import annotations

import pytest
from vlmfleet.selection import is_circular, select_positions


def test_plain_limit_takes_first_rows_in_file_order() -> None:
    assert select_positions([5, 3, 9, 1], 2, circular=False) == [0, 1]
    assert select_positions([5, 3], 10, circular=False) == [0, 1]
    assert select_positions([5, 3, 9], None, circular=False) == [0, 1, 2]


def test_circular_limit_keeps_every_rotation_of_the_first_questions() -> None:
    # MMBench layout: all questions first, then rotations at index + k * 1e6.
    main = [10, 11, 12, 13]
    indices = main + [i + 1_000_000 for i in main] + [i + 2_000_000 for i in main]
    kept = [indices[p] for p in select_positions(indices, 2, circular=True)]
    assert sorted(kept) == [10, 11, 1_000_010, 1_000_011, 2_000_010, 2_000_011]


def test_circular_with_explicit_g_index() -> None:
    indices = [1, 2, 3, 4]
    g_index = [1, 1, 3, 3]
    assert select_positions(indices, 1, circular=True, g_indices=g_index) == [0, 1]


def test_bad_limit() -> None:
    with pytest.raises(ValueError, match="limit must be a positive integer"):
        select_positions([1], 0, circular=False)


@pytest.mark.parametrize(
    ("name", "circular"),
    [
        ("MMBench_DEV_EN", True),
        ("MMBench_DEV_KO", True),
        ("BLINK_circular", True),
        ("SEEDBench_IMG", False),
        ("POPE", False),
    ],
)
def test_which_datasets_are_circular(name: str, circular: bool) -> None:
    assert is_circular(name) is circular
