"""The rule that groups a batch's rows sharing an image and a prompt prefix (pure Python)."""

from __future__ import annotations

from pathlib import Path

from vlmfleet.families.prefix_groups import (
    PrefixGroup,
    ShareKey,
    common_prefix,
    find_groups,
    grouped_rows,
    image_digest,
    share_key,
)

IMAGE = -200
# System prompt, image, the hint and question, then options rotated, then the answer cue.
HEAD = [1, 11, 12, IMAGE, 21, 22, 23]
ROTATIONS = [[*HEAD, 31, 32, 33, 34, 9], [*HEAD, 32, 33, 34, 31, 9], [*HEAD, 33, 34, 31, 32, 9]]


def test_images_are_matched_by_content_not_by_file(tmp_path: Path) -> None:
    for name, content in (("a.png", b"red"), ("b.png", b"red"), ("c.png", b"blue")):
        (tmp_path / name).write_bytes(content)
    a, b, c = (str(tmp_path / n) for n in ("a.png", "b.png", "c.png"))
    assert image_digest([a]) == image_digest([b]) != image_digest([c])
    assert image_digest([a, c]) != image_digest([c, a])


def test_the_key_covers_the_images_and_the_tokens_up_to_the_first_after_the_last_image() -> None:
    key = share_key("img", ROTATIONS[0], IMAGE)
    assert key is not None and key.reach == 5
    assert share_key("img", ROTATIONS[1], IMAGE) == key
    assert share_key("other", ROTATIONS[1], IMAGE) != key
    # Another token right after the image: another key.
    assert share_key("img", [1, 11, 12, IMAGE, 29, 22, 9], IMAGE) != key
    # No image, or nothing after the first token past it: nothing to share.
    assert share_key("img", [1, 11, 12, 9], IMAGE) is None
    assert share_key("img", [1, 11, IMAGE, 21], IMAGE) is None
    # Two images: the key reaches past the last.
    two = share_key("img", [1, IMAGE, 5, IMAGE, 21, 22, 9], IMAGE)
    assert two is not None and two.reach == 5


def test_rows_of_one_key_share_their_longest_common_prefix() -> None:
    other = [1, 11, 12, IMAGE, 29, 22, 23, 9]
    rows = [ROTATIONS[0], other, ROTATIONS[1], [5, 6, 7], ROTATIONS[2]]
    keys = [share_key("img", r, IMAGE) if r != [5, 6, 7] else None for r in rows]
    groups = find_groups(keys, rows)
    # The rotations: their prefix is the head (options differ from the first one on).
    assert groups == [PrefixGroup((0, 2, 4), len(HEAD))]
    assert grouped_rows(groups) == {0, 2, 4}


def test_a_row_alone_or_a_prefix_that_would_swallow_a_row_is_no_group() -> None:
    key = share_key("img", ROTATIONS[0], IMAGE)
    assert find_groups([key, None], [ROTATIONS[0], ROTATIONS[1]]) == []
    # Identical prompts: each member keeps its last token as its own suffix.
    assert find_groups([key, key], [ROTATIONS[0], ROTATIONS[0]]) == [
        PrefixGroup((0, 1), len(ROTATIONS[0]) - 1)
    ]
    # One prompt the start of another: the shorter keeps its last token, and where that leaves
    # the prefix short of the first token after the image, there is no group.
    short = [*HEAD[:5], 40]
    assert find_groups([ShareKey("k", 5), ShareKey("k", 5)], [short, [*short, 41]]) == [
        PrefixGroup((0, 1), 5)
    ]
    assert find_groups([ShareKey("k", 5), ShareKey("k", 5)], [HEAD[:5], [*HEAD[:5], 41]]) == []


def test_common_prefix() -> None:
    assert common_prefix([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2
    assert common_prefix([[1, 2], [1, 2]]) == 2
    assert common_prefix([[3], [1, 2]]) == 0
