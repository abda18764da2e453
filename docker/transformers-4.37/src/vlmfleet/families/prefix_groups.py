"""Rows of a batch that share their image and the start of their prompt: prefilled once.

MMBench asks each question up to four times, its options rotated (VLMEvalKit's circular
evaluation): the rows have the same image, and the same prompt up to the options. In LLaVA's
prompt the image's features (576 positions for LLaVA-1.5) stand where the image placeholder
is, near the start, so such rows share most of their prefill. The llava engine prefills a
group's shared prefix - the image's features included - once, and each member only its own
suffix against that prefix's cache (``llava_prefill.prefill_shared``).

The rule is general, not MMBench's: rows belong to one group where their images are the same
(by content: VLMEvalKit dumps each row's image to its own file) and their prompt token ids are
the same up to and including the first token after their last image; the group's prefix is the
members' longest common prefix of token ids, less at least one token each (a member's last
position's logits come from its own suffix). So every suffix is text alone, embedded without
LLaVA's splice of image features. (Rows that share only their image, their prompts differing
right after it, are not grouped, though their image's positions could be shared too: the key
keeps to rows whose prompts go on alike, as the rotations of a question do.)

Standard library only: the engine's queue and its tests use it without torch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ShareKey:
    """What rows must have in common to be grouped (``share_key``): a digest of their images
    and their first ``reach`` token ids, those up to the first after the last image."""

    digest: str
    reach: int


@dataclass(frozen=True)
class PrefixGroup:
    """Rows of a batch (indices, in batch order) prefilled as one group, and how many of their
    prompt token ids (an image placeholder counts as one) they share: their ``prefix``."""

    rows: tuple[int, ...]
    prefix: int


def image_digest(paths: Sequence[str]) -> str:
    """The images' content, as one hex digest (the same files under other names match)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as fh:
            file_digest = hashlib.sha256(fh.read()).hexdigest()
        digest.update(file_digest.encode())
    return digest.hexdigest()


def last_image(ids: Sequence[int], image_token: int) -> int | None:
    """The index of the last image placeholder in ``ids``, None without one."""
    for i in range(len(ids) - 1, -1, -1):
        if ids[i] == image_token:
            return i
    return None


def share_key(digest: str, ids: Sequence[int], image_token: int) -> ShareKey | None:
    """What rows must have in common to share a prefill: the same images (``digest``) and the
    same token ids up to and including the first after the last image placeholder. None where
    the prompt has no image, or nothing after that token (no suffix of its own)."""
    end = last_image(ids, image_token)
    if end is None or end + 2 >= len(ids):
        return None
    head = ",".join(str(i) for i in ids[: end + 2])
    return ShareKey(hashlib.sha256(f"{digest}|{head}".encode()).hexdigest(), end + 2)


def common_prefix(rows: Sequence[Sequence[int]]) -> int:
    """The length of the longest prefix every row of ``rows`` starts with."""
    shortest = min(len(r) for r in rows)
    for i in range(shortest):
        token = rows[0][i]
        if any(r[i] != token for r in rows[1:]):
            return i
    return shortest


def find_groups(keys: Sequence[ShareKey | None], ids: Sequence[Sequence[int]]) -> list[PrefixGroup]:
    """The groups of a batch's rows (``keys``: each row's ``share_key``, None: no group;
    ``ids``: its prompt token ids): rows of one key, two or more, sharing their longest common
    prefix less at least one token each, where that still reaches past their last image."""
    by_key: dict[ShareKey, list[int]] = {}
    for row, key in enumerate(keys):
        if key is not None:
            by_key.setdefault(key, []).append(row)
    groups = []
    for key, rows in by_key.items():
        if len(rows) < 2:
            continue
        members = [ids[row] for row in rows]
        prefix = min(common_prefix(members), min(len(m) for m in members) - 1)
        if prefix >= key.reach:
            groups.append(PrefixGroup(tuple(rows), prefix))
    return groups


def grouped_rows(groups: Sequence[PrefixGroup]) -> set[int]:
    """The rows of a batch prefilled as members of a group."""
    return {row for group in groups for row in group.rows}
