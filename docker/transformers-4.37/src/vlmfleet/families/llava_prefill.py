"""LLaVA's prefill as ``generate``'s first step: whole rows, or groups sharing a prefix once.

``prefill`` is transformers' own (LLaVA's ``prepare_inputs_labels_for_multimodal``, then one
forward). Where rows of a batch share an image and a prompt prefix (``prefix_groups``: the
rule), ``prefill_shared`` prefills each group's prefix once, the image features spliced in, and
each member's suffix against its cache, positions going on from the prefix's: the same logits
and cache up to rounding, laid out as ``prefill``'s, so the static decoder (``llava_static``)
takes either.

Imports torch, LLaVA and transformers: the static decoder imports this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from llava.constants import IMAGE_TOKEN_INDEX
from transformers.cache_utils import DynamicCache

from vlmfleet.families.prefix_groups import PrefixGroup, grouped_rows


def prefill(
    model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, images: torch.Tensor
) -> tuple[torch.Tensor, list[Any], torch.Tensor]:
    """generate's first step: the last position's logits, the cache and the language model's
    attention mask (image features spliced in, LLaVA's own padding)."""
    _, _, mask, _, embeds, _ = model.prepare_inputs_labels_for_multimodal(
        input_ids, None, attention_mask, None, None, images
    )
    # prepare_inputs_for_generation's positions: padding gets 1, not a negative index.
    positions = mask.long().cumsum(-1) - 1
    positions.masked_fill_(mask == 0, 1)
    out = model(
        inputs_embeds=embeds,
        attention_mask=mask,
        position_ids=positions,
        use_cache=True,
        return_dict=True,
    )
    # A copy of the last row: a view would keep the whole [B, L, V] float tensor alive. A list
    # of the layers' (key, value), so that each can go once copied.
    return out.logits[:, -1, :].clone(), list(out.past_key_values), mask


# --- a prefill of groups sharing a prefix ------------------------------------------------------


@dataclass(frozen=True)
class PrefillUnit:
    """One row of the first prefill of ``prefill_shared``: a group's shared prefix, or a row of
    no group whole. ``rows``: the batch rows it stands for; ``ids``: its token ids."""

    rows: tuple[int, ...]
    ids: torch.Tensor

    @property
    def grouped(self) -> bool:
        return len(self.rows) > 1


def unpadded(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
    """Each row's token ids without its left padding."""
    return [ids[mask.bool()] for ids, mask in zip(input_ids, attention_mask, strict=True)]


def prefill_units(rows: list[torch.Tensor], groups: Sequence[PrefixGroup]) -> list[PrefillUnit]:
    """Each group's prefix (its first member's ids up to the prefix), then each row of no group."""
    units = [PrefillUnit(g.rows, rows[g.rows[0]][: g.prefix]) for g in groups]
    grouped = grouped_rows(groups)
    units += [PrefillUnit((row,), ids) for row, ids in enumerate(rows) if row not in grouped]
    return units


def left_padded(rows: Sequence[torch.Tensor], pad: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids of ``rows`` left-padded to the longest, and their attention mask."""
    width = max(len(r) for r in rows)
    device = rows[0].device
    ids = torch.full((len(rows), width), pad, dtype=torch.long, device=device)
    mask = torch.zeros((len(rows), width), dtype=torch.long, device=device)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = r
        mask[i, width - len(r) :] = 1
    return ids, mask


def unit_images(
    images: torch.Tensor, input_ids: torch.Tensor, units: Sequence[PrefillUnit], image_token: int
) -> torch.Tensor:
    """The images of each unit's first row, in unit order: LLaVA takes a batch's images in row
    order, as many a row as it has placeholders (a group's prefix holds all of its rows')."""
    counts = (input_ids == image_token).sum(-1).tolist()
    starts = [sum(counts[:row]) for row in range(len(counts))]
    firsts = [u.rows[0] for u in units]
    picked = [i for row in firsts for i in range(starts[row], starts[row] + counts[row])]
    return images.index_select(0, torch.tensor(picked, dtype=torch.long, device=images.device))


def suffix_prefill(
    model: Any,
    units: Sequence[PrefillUnit],
    cache: list[Any],
    mask: torch.Tensor,
    suffixes: Sequence[torch.Tensor],
) -> tuple[torch.Tensor, list[Any], torch.Tensor]:
    """Every group member's suffix prefilled against its group's prefix cache (the grouped
    units come first in ``cache`` and ``mask``, the first prefill's, with the image features
    spliced in): the members' last logits, their cache (the prefix's slots, then the suffix's)
    and its attention mask. Positions go on from the prefix's; a suffix query sees the whole
    prefix and the suffix up to itself (a 4D mask: the library's own assumes one left-padded
    sequence)."""
    members = [i for i, u in enumerate(units) if u.grouped for _ in u.rows]
    source = torch.tensor(members, dtype=torch.long, device=mask.device)
    # The widest prefix: the rows of no group may be wider, and their slots are not needed.
    prefix_width = int(mask.index_select(0, source).sum(-1).max())
    prefix_mask = mask[:, -prefix_width:].index_select(0, source)
    suffix_ids, suffix_mask = left_padded(suffixes)
    past = DynamicCache()
    for index, (key, value) in enumerate(cache):
        past.update(
            key[:, :, -prefix_width:].index_select(0, source),
            value[:, :, -prefix_width:].index_select(0, source),
            index,
        )
    positions = prefix_mask.sum(-1, keepdim=True) + suffix_mask.cumsum(-1) - 1
    positions.masked_fill_(suffix_mask == 0, 1)
    width = suffix_ids.shape[1]
    causal = torch.ones((width, width), dtype=torch.long, device=mask.device).tril()
    sees_prefix = prefix_mask[:, None, :].expand(-1, width, -1)
    sees_suffix = suffix_mask[:, None, :] * causal
    out = model(
        inputs_embeds=model.get_model().embed_tokens(suffix_ids),
        attention_mask=torch.cat([sees_prefix, sees_suffix], dim=-1)[:, None],
        position_ids=positions,
        past_key_values=past,
        use_cache=True,
        return_dict=True,
    )
    layers = list(zip(past.key_cache, past.value_cache, strict=True))
    past.key_cache.clear()
    past.value_cache.clear()
    return out.logits[:, -1, :].clone(), layers, torch.cat([prefix_mask, suffix_mask], dim=-1)


def right_aligned(mask: torch.Tensor, width: int) -> torch.Tensor:
    """[B, width] slot numbers that gather each row's usable slots (``mask``), in order, to the
    end of ``width`` slots; the slots before them gather slot 0's numbers, which the mask hides."""
    order = torch.argsort(mask.long(), dim=1, stable=True)
    if order.shape[1] < width:
        order = torch.cat([order.new_zeros((order.shape[0], width - order.shape[1])), order], 1)
    return order[:, -width:]


def gathered(buffer: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
    """``buffer`` ([B, H, S, D]) at ``slots`` ([B, W]): [B, H, W, D]."""
    index = slots[:, None, :, None].expand(-1, buffer.shape[1], -1, buffer.shape[3])
    return buffer.gather(2, index)


def merged_cache(
    member_cache: list[Any],
    member_slots: torch.Tensor,
    member_rows: torch.Tensor,
    unit_cache: list[Any],
    single: torch.Tensor,
    single_slots: torch.Tensor,
    single_rows: torch.Tensor,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The members' cache and the ungrouped rows' (the units ``single`` of the first prefill)
    as one, each row at its place in the batch (``member_rows``, ``single_rows``) with its
    slots right-aligned (``right_aligned``); one layer at a time, each source layer released
    as soon as it is merged, so that the peak stays near the two caches."""
    batch = int(member_rows.shape[0] + single_rows.shape[0])
    width = int(member_slots.shape[1])
    out = []
    while member_cache:
        members = member_cache.pop(0)
        units = unit_cache.pop(0)
        merged = []
        for member, unit in zip(members, units, strict=True):
            buffer = member.new_empty((batch, member.shape[1], width, member.shape[3]))
            buffer.index_copy_(0, member_rows, gathered(member, member_slots))
            buffer.index_copy_(0, single_rows, gathered(unit.index_select(0, single), single_slots))
            merged.append(buffer)
        del members, units, member, unit
        out.append((merged[0], merged[1]))
    return out


def untruncated(
    model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, groups: Sequence[PrefixGroup]
) -> list[PrefixGroup]:
    """The groups none of whose rows LLaVA truncates (``tokenizer_model_max_length``): it cuts a
    row's end, a suffix's, which a shared prefill cannot reproduce."""
    limit = getattr(model.config, "tokenizer_model_max_length", None)
    if limit is None:
        return list(groups)
    per_image = int(model.get_vision_tower().num_patches)
    placeholders = (input_ids == IMAGE_TOKEN_INDEX).sum(-1)
    lengths = (attention_mask.sum(-1) + placeholders * (per_image - 1)).tolist()
    return [g for g in groups if all(lengths[row] <= limit for row in g.rows)]


def prefill_shared(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    images: torch.Tensor,
    groups: Sequence[PrefixGroup],
) -> tuple[torch.Tensor, list[Any], torch.Tensor, int]:
    """``prefill``'s result for a batch whose ``groups`` share a prefix, and the language-model
    positions the groups' members did not prefill: each group's prefix, its image features
    included, is prefilled once, as one row beside the rows of no group; then every member's
    suffix against the prefix's cache (``suffix_prefill``). The cache and mask come laid out as
    ``prefill``'s: each row's positions right-aligned in the width of its longest row, so the
    decoder's window and cache slots are those of the ungrouped batch."""
    rows = unpadded(input_ids, attention_mask)
    units = prefill_units(rows, groups)
    unit_ids, unit_mask = left_padded([u.ids for u in units])
    pictures = unit_images(images, input_ids, units, IMAGE_TOKEN_INDEX)
    unit_logits, unit_cache, unit_language = prefill(model, unit_ids, unit_mask, pictures)
    prefix_lengths = unit_language.sum(-1)
    saved = sum((len(u.rows) - 1) * int(n) for u, n in zip(units, prefix_lengths, strict=True))
    suffixes = [rows[row][g.prefix :] for g in groups for row in g.rows]
    member_logits, member_cache, member_mask = suffix_prefill(
        model, units, unit_cache, unit_language, suffixes
    )
    device = input_ids.device

    def rows_tensor(rows: list[int]) -> torch.Tensor:
        return torch.tensor(rows, dtype=torch.long, device=device)

    single = rows_tensor([i for i, u in enumerate(units) if not u.grouped])
    single_mask = unit_language.index_select(0, single)
    # The batch rows of the members (in group order) and of the rows of no group.
    member_rows = rows_tensor([row for g in groups for row in g.rows])
    single_rows = rows_tensor([u.rows[0] for u in units if not u.grouped])
    lengths = torch.zeros(input_ids.shape[0], dtype=torch.long, device=device)
    lengths.index_copy_(0, member_rows, member_mask.sum(-1))
    lengths.index_copy_(0, single_rows, single_mask.sum(-1))
    width = int(lengths.max())
    cache = merged_cache(
        member_cache,
        right_aligned(member_mask, width),
        member_rows,
        unit_cache,
        single,
        right_aligned(single_mask, width),
        single_rows,
    )
    slots = torch.arange(width, device=device)
    mask = (slots >= width - lengths[:, None]).to(unit_language.dtype)
    logits = member_logits.new_empty((input_ids.shape[0], member_logits.shape[1]))
    logits.index_copy_(0, member_rows, member_logits)
    logits.index_copy_(0, single_rows, unit_logits.index_select(0, single))
    return logits, cache, mask, saved
