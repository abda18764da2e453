"""How many samples one ``generate`` call can take in the GPU memory a slot has left.

The rule, for a decoder-only language model fed image features (LLaVA): a batch of ``n`` rows,
left-padded to its longest prompt of ``p`` positions (an image counts as the positions its
features take), generating up to ``m`` new tokens, needs beyond the weights

- the KV cache: ``n x (p + m) x 2 x layers x hidden x dtype bytes`` (keys and values of every
  layer for every position; 0.5 MiB a token for a 7B of 32 layers, hidden 4096, float16);
- the prefill's logits: ``n x p x vocab`` in the model's dtype and again in float32
  (transformers' Llama computes them for every prompt position, then widens them);
- the prefill's activations of one layer at a time: hidden-state-wide tensors
  (``ACTIVATION_WIDTHS`` of them: q, k, v, the MLP's intermediate, residuals) and the attention
  scores, ``heads x p x p`` in float32 (eager attention's softmax).

A slot's share of its GPU is the GPU's total over the slots sharing it, less what this process
already holds (the weights); the budget is the smaller of that and what the GPU has free now,
less a reserve for the CUDA context and the allocator's slack, times ``HEADROOM``. The worker
also caps its allocator at that share (``allocator_share``), so that one slot's cached blocks
cannot take the other's part. An estimate that is still too large is caught by the engine's
out-of-memory halving.

The llava engine's static KV cache (``llava_static``) holds at most the KV cache counted here.
It grows in windows of slots (``cache_positions``: the prompt and the tokens generated so far,
rounded up to ``SLOT_ALIGNMENT``), the first for ``RESERVE_TOKENS``, each next one doubled, up
to ``max_new_tokens``. So the engine sizes a batch for a *reserve* of ``RESERVE_TOKENS`` new
tokens a row, not for ``max_new_tokens`` (2048 in VLMEvalKit's LLaVA): short answers, nearly all
of them, never grow the cache past the first window, and 2048 would take a third of the rows
from every batch for nothing. The decoder gets the batch's cache slots (rows x slots a row,
``cache_slots``) and keeps within them: when the window must grow, the rows still decoding
share the slots that ended rows left (``rows_that_fit``), and those that do not fit are
deferred, to be decoded again with the other deferred rows (``llava_batched``'s
``BatchPolicy.tail_tokens``).

A batch whose rows share a prefix (``prefix_groups``) is prefilled in two forwards, each needing
less than the rule's prefill: one of the groups' prefixes beside the rows of no group (fewer rows,
none longer than the batch's longest), then the members' suffixes against copies of their
prefixes' cache (the suffix's positions only, for the logits, activations and scores). Its peak
is the KV cache of the members and of the first forward's rows together, at most the rule's
cache plus one prefix a group: at most the cache of half the batch's rows more (a group has two
rows or more), where the rule's logits, activations and scores of every prompt position, which
the two forwards no longer hold at once, weigh more for LLaVA-1.5's sizes (prompts of a few
hundred positions: logits alone are ``vocab x 6`` bytes a position against ``2 x layers x hidden
x 2`` for its keys and values). So the same sizing holds.

Standard library only: the planner's tests and the worker's import it without torch.
"""

from __future__ import annotations

from dataclasses import dataclass

MIB = 2**20
GIB = 2**30
# Hidden-state-wide tensors alive at once in a layer's prefill (the MLP's intermediate alone is
# ~2.7 hidden widths, twice: gate and up projections).
ACTIVATION_WIDTHS = 12
# The static decoder allocates its cache in multiples of this many slots (positions) a row: the
# attention mask's rows then meet the memory-efficient SDPA kernel's alignment.
SLOT_ALIGNMENT = 8
# New tokens a row of a batch is sized for (the static decoder's first window, which holds every
# answer of up to this many tokens): the multiple-choice, yes/no and short-phrase answers of the
# default matrix are 1-8 tokens. Longer answers take the slots of rows that ended, or are
# deferred (module docstring).
RESERVE_TOKENS = 64
# The CUDA context and cuBLAS workspaces are outside torch's allocator counts.
CONTEXT_RESERVE = 1 * GIB
HEADROOM = 0.85
FLOAT32_BYTES = 4


@dataclass(frozen=True)
class ModelShape:
    """What the rule needs of a model: its language model's size and an image's positions."""

    layers: int
    hidden: int
    heads: int
    vocab: int
    dtype_bytes: int
    # Language-model positions one image's features take (576 for LLaVA-1.5's CLIP-L/336).
    image_positions: int


@dataclass(frozen=True)
class GpuMemory:
    """One GPU as this process sees it (``torch.cuda.mem_get_info`` and the allocator's counts)."""

    free: int
    total: int
    # Held by this process's tensors (the weights) and by its allocator (tensors and cache).
    allocated: int
    reserved: int


def kv_bytes_per_token(shape: ModelShape) -> int:
    """Keys and values of every layer for one position."""
    return 2 * shape.layers * shape.hidden * shape.dtype_bytes


def cache_positions(longest_prompt: int, new_tokens: int) -> int:
    """Cache slots a row of the static decoder takes for ``longest_prompt`` positions and
    ``new_tokens`` generated ones: their sum rounded up to ``SLOT_ALIGNMENT``."""
    return -(-(longest_prompt + new_tokens) // SLOT_ALIGNMENT) * SLOT_ALIGNMENT


def batch_bytes(shape: ModelShape, rows: int, longest_prompt: int, max_new_tokens: int) -> int:
    """Peak bytes beyond the weights of one generate call of ``rows`` prompts left-padded to
    ``longest_prompt`` positions, each answer up to ``max_new_tokens`` (the KV cache for the
    static decoder's slots, ``cache_positions``)."""
    positions = cache_positions(longest_prompt, max_new_tokens)
    kv = rows * positions * kv_bytes_per_token(shape)
    logits = rows * longest_prompt * shape.vocab * (shape.dtype_bytes + FLOAT32_BYTES)
    hidden = rows * longest_prompt * shape.hidden * shape.dtype_bytes * ACTIVATION_WIDTHS
    scores = rows * shape.heads * longest_prompt * longest_prompt * FLOAT32_BYTES
    return kv + logits + hidden + scores


def slot_budget(gpus: list[GpuMemory], shared_by: int) -> int:
    """Bytes a slot's batches may take: per GPU, the smaller of its share left and what is free
    (this process's cached blocks count as free to it), less the reserve, times HEADROOM. A slot
    of several GPUs holds its model's layers, and so its KV cache, spread over them: the
    smallest GPU's budget times their number."""
    if not gpus:
        return 0
    if shared_by < 1:
        raise ValueError(f"shared_by must be a positive integer, got {shared_by!r}")
    budgets = []
    for gpu in gpus:
        share_left = gpu.total // shared_by - gpu.allocated
        free = gpu.free + (gpu.reserved - gpu.allocated)
        budgets.append(max(0, int((min(share_left, free) - CONTEXT_RESERVE) * HEADROOM)))
    return min(budgets) * len(gpus)


def allocator_share(total: int, shared_by: int) -> float:
    """The fraction of a GPU of ``total`` bytes that the allocator of one of ``shared_by``
    slots sharing it may hold: its equal part less the reserve for its CUDA context, which is
    outside the allocator. Capped so, a slot's cached blocks cannot crowd out the slot beside
    it (each frees its own cache before it fails), and the caps and contexts fit together."""
    if shared_by < 1:
        raise ValueError(f"shared_by must be a positive integer, got {shared_by!r}")
    if total <= 0:
        raise ValueError(f"a GPU's total memory must be positive, got {total!r}")
    return max(0.0, (total / shared_by - CONTEXT_RESERVE) / total)


def largest_batch(
    shape: ModelShape, budget: int, longest_prompt: int, max_new_tokens: int, ceiling: int
) -> int:
    """The most rows of ``longest_prompt`` positions that fit ``budget``, at most ``ceiling``
    and at least 1 (batch 1 is tried whatever the estimate: only the GPU can say no)."""
    per_row = batch_bytes(shape, 1, longest_prompt, max_new_tokens)
    return max(1, min(ceiling, budget // per_row))


def cache_slots(rows: int, longest_prompt: int, new_tokens: int) -> int:
    """The KV cache slots (rows x slots a row) a batch of ``rows`` prompts of ``longest_prompt``
    positions is given when sized for ``new_tokens`` each (``batch_bytes``'s KV cache): what the
    static decoder may hold at any step."""
    return rows * cache_positions(longest_prompt, new_tokens)


def rows_that_fit(live: int, wanted: int, window: int, slots: int | None) -> tuple[int, int]:
    """When the static decoder's window of ``window`` slots a row is full: how many of the
    ``live`` rows still decoding go on, and in what window, within ``slots`` cache slots (None:
    no limit). All of them in the ``wanted`` window (the doubled one) where they fit; else as
    many as fit in it (the rest are deferred); else, where not even one row fits it, one row in
    the widest aligned window that fits, if that is wider than ``window``; else none."""
    if slots is None or live * wanted <= slots:
        return live, wanted
    keep = min(live, slots // wanted)
    if keep >= 1:
        return keep, wanted
    widest = slots // SLOT_ALIGNMENT * SLOT_ALIGNMENT
    return (1, widest) if widest > window else (0, window)
