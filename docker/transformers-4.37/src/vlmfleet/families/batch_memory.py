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

The llava engine's static KV cache (``llava_static``) holds at most the KV cache counted here:
it grows in windows up to the prompt and ``max_new_tokens`` (rounded up to a few slots).

Standard library only: the planner's tests and the worker's import it without torch.
"""

from __future__ import annotations

from dataclasses import dataclass

MIB = 2**20
GIB = 2**30
# Hidden-state-wide tensors alive at once in a layer's prefill (the MLP's intermediate alone is
# ~2.7 hidden widths, twice: gate and up projections).
ACTIVATION_WIDTHS = 12
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


def batch_bytes(shape: ModelShape, rows: int, longest_prompt: int, max_new_tokens: int) -> int:
    """Peak bytes beyond the weights of one generate call of ``rows`` prompts left-padded to
    ``longest_prompt`` positions, each answer up to ``max_new_tokens``."""
    positions = longest_prompt + max_new_tokens
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
