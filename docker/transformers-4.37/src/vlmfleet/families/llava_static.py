"""Greedy LLaVA decoding with a static KV cache; on CUDA each decode step is a CUDA graph replay.

transformers 4.37's Llama has no static cache (4.38's breaks LLaVA 1.2.2), so its ``generate``
grows a DynamicCache with ``torch.cat`` and launches every small kernel of a step from Python:
at the batch sizes the engine runs, a decode step costs several times the GPU's own time for it
(bench/README.md). ``generate`` here returns what ``model.generate`` returns for the same
greedy settings (``greedy_for`` says which, and refuses the rest):

- the prefill is transformers' own (``llava_prefill.prefill``: LLaVA's
  ``prepare_inputs_labels_for_multimodal``, then one forward as ``generate``'s first step);
  where rows share an image and a prompt prefix (``groups``, ``prefix_groups``),
  ``llava_prefill.prefill_shared`` prefills each group's prefix once and each member's suffix
  against its cache: the same logits and cache up to rounding, laid out as the plain prefill's;
- its cache is copied into buffers of fixed shape, a *window* of slots, and every later step is
  written from the model's modules with fixed shapes, so that one capture is replayed for each
  token; positions, masks and the eos rule are ``generate``'s, so the tokens are the same;
- when every row has ended the loop stops, as ``generate``'s does; a window that fills grows
  (its buffers copied into longer ones, the step captured again), so that a short answer never
  pays for attending over ``max_new_tokens`` empty slots;
- rows that have ended leave the batch (``worth_compacting`` says when): their cache rows are
  dropped and the step captured again at the smaller batch, so that one long answer does not
  keep a whole batch decoding. A row's tokens never depend on its company (its own cache,
  positions and mask go with it), as in any batch of the engine; its later columns are
  ``pad_token_id``, as ``generate`` writes them for an ended row;
- given the cache slots its batch was sized for (``cache_slots``: the engine sizes a batch for
  ``batch_memory.RESERVE_TOKENS`` new tokens a row, not ``max_new_tokens``), the cache never
  holds more: when the window must grow, ended rows leave first, and the rows still decoding
  grow into the slots they left; those that no longer fit are *deferred* (they leave the batch,
  ``Tally.deferred`` names them, and their output rows are not answers): the engine decodes them
  again, from their prompt, in a batch sized for ``max_new_tokens``. Greedy tokens of a row do
  not depend on its batch, so a deferred row's answer is the one it would have had here;
- in such a batch, the rows still decoding when the first window (the reserve's) is full are
  deferred as well when they are *stragglers*, at most half of the batch as given
  (``stragglers``): a long answer then does not decode alone in its batch, and the engine
  decodes the long answers of many batches together. Only the reserve's steps are decoded
  twice.

Imports torch and transformers' Llama: the batched engine imports this module when it decodes.
"""

from __future__ import annotations

import copy
import functools
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb, repeat_kv

from vlmfleet.families.batch_memory import (
    RESERVE_TOKENS,
    SLOT_ALIGNMENT,
    cache_positions,
    rows_that_fit,
)
from vlmfleet.families.llava_prefill import prefill, prefill_shared, untruncated
from vlmfleet.families.prefix_groups import PrefixGroup, grouped_rows

Step = Callable[[], tuple[torch.Tensor, torch.Tensor]]

# generate's logits processors and stopping rules with their inactive values: with any other
# value generate's next token is not the plain argmax (and eos rule) computed here.
INACTIVE_SETTINGS: dict[str, Any] = {
    "do_sample": False,
    "num_beams": 1,
    "num_beam_groups": 1,
    "penalty_alpha": None,
    "repetition_penalty": 1.0,
    "encoder_repetition_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "encoder_no_repeat_ngram_size": 0,
    "bad_words_ids": None,
    "force_words_ids": None,
    "constraints": None,
    "min_length": 0,
    "forced_bos_token_id": None,
    "forced_eos_token_id": None,
    "forced_decoder_ids": None,
    "suppress_tokens": None,
    "begin_suppress_tokens": None,
    "sequence_bias": None,
    "exponential_decay_length_penalty": None,
    "guidance_scale": None,
    "renormalize_logits": False,
    "diversity_penalty": 0.0,
    "max_time": None,
    "output_scores": False,
    "output_attentions": False,
    "output_hidden_states": False,
    "return_dict_in_generate": False,
    "use_cache": True,
}
# generate arguments that are not generation settings and change nothing here.
NEUTRAL_ARGUMENTS = frozenset({"images", "image_sizes"})
# Generated slots of the first window; each later window doubles them, up to max_new_tokens.
# The engine's batches are sized for this many (batch_memory.RESERVE_TOKENS); slots are
# allocated in multiples of batch_memory.SLOT_ALIGNMENT.
FIRST_WINDOW = RESERVE_TOKENS
# Ended rows leave the batch once at most half of its rows are still decoding, or once this many
# steps have passed with some ended row still in it: each compaction costs about one eager step
# (copying the cache, capturing the step again), so rows ending one by one in a short answer
# are not compacted at every step, and a long answer decodes alone after this many steps.
STRAGGLER_STEPS = 8


class Unsupported(ValueError):
    """The model or the generation settings are not ones this decoder reproduces."""


@dataclass(frozen=True)
class Greedy:
    """The settings of a greedy ``generate`` this decoder reproduces: its length limits, and its
    eos rule (eos banned until ``min_new_tokens`` are out, then a row that emitted one gets
    ``pad_token_id``); ``bos_token_id`` starts each output row, as ``generate`` starts it."""

    max_new_tokens: int
    min_new_tokens: int
    eos_token_ids: tuple[int, ...]
    pad_token_id: int
    bos_token_id: int


def greedy_for(model: Any, kwargs: dict[str, Any]) -> Greedy:
    """What ``model.generate(..., **kwargs)`` would decode with, or Unsupported saying why not."""
    config = model.config
    if getattr(config, "pretraining_tp", 1) != 1:
        raise Unsupported(f"pretraining_tp is {config.pretraining_tp}, not 1")
    if getattr(config, "rope_scaling", None) is not None:
        raise Unsupported(f"rope_scaling {config.rope_scaling!r} is not reproduced")
    placed = set((getattr(model, "hf_device_map", None) or {}).values())
    if len(placed) > 1:
        raise Unsupported(f"the model is spread over {len(placed)} devices")
    attention = {type(layer.self_attn).__name__ for layer in model.model.layers}
    if attention != {"LlamaSdpaAttention"}:
        raise Unsupported(f"attention is {', '.join(sorted(attention))}, not LlamaSdpaAttention")
    gen = copy.deepcopy(model.generation_config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rest = gen.update(**kwargs)
    unknown = sorted(set(rest) - NEUTRAL_ARGUMENTS)
    if unknown:
        raise Unsupported(f"generate arguments not reproduced: {', '.join(unknown)}")
    active = {
        name: getattr(gen, name, inactive)
        for name, inactive in INACTIVE_SETTINGS.items()
        if not is_inactive(getattr(gen, name, inactive), inactive)
    }
    if active:
        raise Unsupported(f"settings not reproduced: {active}")
    if not gen.max_new_tokens or gen.max_new_tokens < 1:
        raise Unsupported(f"max_new_tokens must be a positive count, got {gen.max_new_tokens!r}")
    eos = gen.eos_token_id
    eos_ids = tuple(eos) if isinstance(eos, list | tuple) else (() if eos is None else (eos,))
    pad = gen.pad_token_id if gen.pad_token_id is not None else (eos_ids or (None,))[0]
    if gen.bos_token_id is None:
        raise Unsupported("the generation config has no bos_token_id to start the output with")
    return Greedy(
        max_new_tokens=int(gen.max_new_tokens),
        min_new_tokens=int(gen.min_new_tokens or 0),
        eos_token_ids=tuple(int(e) for e in eos_ids),
        pad_token_id=int(pad) if pad is not None else 0,
        bos_token_id=int(gen.bos_token_id),
    )


def is_inactive(value: Any, inactive: Any) -> bool:
    """A setting at its inactive value; generate takes None for the default of each."""
    return value is None or value == inactive


@dataclass
class StaticState:
    """The decode step's inputs, all tensors of fixed shape: what a capture reads and writes.
    Slot ``s`` of the cache holds prompt position ``s`` below ``prompt_len``, else the token
    generated ``s - prompt_len`` steps after the prefill's; the window has ``len(slots)``."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    cos: torch.Tensor
    sin: torch.Tensor
    # [B] the token to feed, [1] the slot it goes to, [B] 1 while the row has not ended.
    tokens: torch.Tensor
    cache_pos: torch.Tensor
    unfinished: torch.Tensor
    # [B] position id minus slot, for generated slots: generate counts positions over the
    # attention mask (cumsum - 1), so a row's padding shifts its positions down.
    position_shift: torch.Tensor
    # [W] slot numbers; [B, W] slots a query may see once written (real prompt, generated).
    slots: torch.Tensor
    usable: torch.Tensor
    prompt_len: int
    # [B] each row's index in the batch as it was given: rows leave as they end.
    rows: torch.Tensor

    @property
    def window(self) -> int:
        return int(self.slots.shape[0])


def window_for(prompt_len: int, generated: int, greedy: Greedy) -> int:
    """Slots of a window for ``generated`` tokens after the prompt: the last of max_new_tokens
    is never fed back, so no window needs more than prompt_len + max_new_tokens - 1."""
    return cache_positions(prompt_len, min(generated, greedy.max_new_tokens - 1))


def first_window(prompt_len: int, rows: int, greedy: Greedy, cache_slots: int | None) -> int:
    """The first window: ``FIRST_WINDOW`` generated slots, or fewer where ``cache_slots`` (the
    batch's, None: no limit) hold fewer a row; ValueError where they hold no generated slot."""
    window = window_for(prompt_len, FIRST_WINDOW, greedy)
    if cache_slots is None:
        return window
    widest = cache_slots // rows // SLOT_ALIGNMENT * SLOT_ALIGNMENT
    if widest < window_for(prompt_len, 1, greedy):
        raise ValueError(
            f"{cache_slots} cache slots leave no generated slot to {rows} rows of {prompt_len}"
        )
    return min(window, widest)


def static_state(
    model: Any, cache: list[Any], mask: torch.Tensor, first: torch.Tensor, window: int
) -> StaticState:
    """The prefill's cache moved into buffers of ``window`` slots (``cache`` is emptied, so that
    ``grow`` releases each layer as soon as it is copied: the peak stays near one cache)."""
    batch, prompt_len = mask.shape
    device = mask.device
    state = StaticState(
        keys=[key for key, _ in cache],
        values=[value for _, value in cache],
        cos=mask.new_empty(0),
        sin=mask.new_empty(0),
        tokens=first.clone(),
        cache_pos=torch.full((1,), prompt_len, dtype=torch.long, device=device),
        unfinished=torch.ones(batch, dtype=torch.long, device=device),
        position_shift=mask.long().sum(-1) - prompt_len,
        slots=torch.arange(prompt_len, device=device),
        usable=mask.bool(),
        prompt_len=prompt_len,
        rows=torch.arange(batch, device=device),
    )
    cache.clear()
    grow(model, state, window)
    return state


def extended(buffer: torch.Tensor, window: int) -> torch.Tensor:
    """``buffer`` ([B, H, S, D]) copied into a contiguous one of ``window`` slots, the new
    slots zero: masked slots must hold numbers, since a masked NaN still poisons softmax."""
    out = buffer.new_empty((*buffer.shape[:2], window, buffer.shape[3]))
    held = buffer.shape[2]
    out[:, :, :held].copy_(buffer)
    out[:, :, held:].zero_()
    return out


def rotary_tables(model: Any, state: StaticState) -> None:
    """The cos and sin tables generate's rotary_emb hands out, covering the window."""
    probe = state.keys[0].new_empty(0)
    state.cos, state.sin = model.model.layers[0].self_attn.rotary_emb(probe, seq_len=state.window)


def grow(model: Any, state: StaticState, window: int) -> None:
    """The cache and masks extended to ``window`` slots, one layer at a time (each old layer is
    released once copied)."""
    for i in range(len(state.keys)):
        state.keys[i] = extended(state.keys[i], window)
        state.values[i] = extended(state.values[i], window)
    old = state.window
    opened = state.usable.new_ones((state.usable.shape[0], window - old))
    state.usable = torch.cat([state.usable, opened], dim=1)
    state.slots = torch.arange(window, device=state.slots.device)
    rotary_tables(model, state)


def choose(
    logits: torch.Tensor, generated: torch.Tensor, unfinished: torch.Tensor, greedy: Greedy
) -> tuple[torch.Tensor, torch.Tensor]:
    """greedy_search's next tokens from float logits ([B, V]) after ``generated`` tokens."""
    if not greedy.eos_token_ids:
        return logits.argmax(-1), unfinished
    banned = generated < greedy.min_new_tokens
    for eos in greedy.eos_token_ids:
        logits[:, eos].masked_fill_(banned, float("-inf"))
    tokens = logits.argmax(-1)
    tokens = tokens * unfinished + greedy.pad_token_id * (1 - unfinished)
    for eos in greedy.eos_token_ids:
        unfinished = unfinished * (tokens != eos)
    return tokens, unfinished


def attend(
    layer: Any,
    hidden: torch.Tensor,
    state: StaticState,
    index: int,
    positions: torch.Tensor,
    bias: torch.Tensor,
) -> torch.Tensor:
    """LlamaSdpaAttention for one new token, its key and value written into slot cache_pos."""
    attn = layer.self_attn
    batch = hidden.shape[0]
    q = attn.q_proj(hidden).view(batch, 1, attn.num_heads, attn.head_dim).transpose(1, 2)
    k = attn.k_proj(hidden).view(batch, 1, attn.num_key_value_heads, attn.head_dim)
    v = attn.v_proj(hidden).view(batch, 1, attn.num_key_value_heads, attn.head_dim)
    q, k = apply_rotary_pos_emb(q, k.transpose(1, 2), state.cos, state.sin, positions)
    state.keys[index].index_copy_(2, state.cache_pos, k)
    state.values[index].index_copy_(2, state.cache_pos, v.transpose(1, 2))
    keys = repeat_kv(state.keys[index], attn.num_key_value_groups)
    values = repeat_kv(state.values[index], attn.num_key_value_groups)
    # Contiguous inputs, as LlamaSdpaAttention makes them: torch 2.1's memory-efficient kernel
    # is wrong on non-contiguous ones with a mask.
    out = F.scaled_dot_product_attention(q.contiguous(), keys, values, attn_mask=bias)
    return attn.o_proj(out.transpose(1, 2).reshape(batch, 1, attn.hidden_size))


def decode_step(
    model: Any, state: StaticState, greedy: Greedy
) -> tuple[torch.Tensor, torch.Tensor]:
    """One token for every row from ``state`` alone: no host reads, no shape that changes."""
    positions = (state.position_shift + state.cache_pos).unsqueeze(1)
    seen = state.usable & (state.slots <= state.cache_pos)
    hidden = model.model.embed_tokens(state.tokens.unsqueeze(1))
    # generate's additive mask: the dtype's minimum where a key is hidden.
    bias = torch.zeros(seen.shape, dtype=hidden.dtype, device=hidden.device)
    bias.masked_fill_(~seen, torch.finfo(hidden.dtype).min)
    bias = bias[:, None, None, :]
    for index, layer in enumerate(model.model.layers):
        normed = layer.input_layernorm(hidden)
        hidden = hidden + attend(layer, normed, state, index, positions, bias)
        hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
    logits = model.lm_head(model.model.norm(hidden)).float()[:, -1, :]
    generated = state.cache_pos - state.prompt_len + 1
    return choose(logits, generated, state.unfinished, greedy)


def on_side_stream(step: Step) -> tuple[torch.Tensor, torch.Tensor]:
    """``step`` run once off the default stream, so that its lazy set-up (cuBLAS handles and
    workspaces, SDPA plans) happens before, not inside, a capture."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        out = step()
    torch.cuda.current_stream().wait_stream(side)
    return out


def captured(step: Step) -> Step:
    """``step`` recorded as a CUDA graph; each call replays it and returns its (static)
    outputs, which the next replay overwrites. Other threads' CUDA calls (none are expected)
    do not break the capture: only this thread's are checked."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, capture_error_mode="thread_local"):
        out = step()

    def replay() -> tuple[torch.Tensor, torch.Tensor]:
        graph.replay()
        return out

    return replay


def advance(state: StaticState, tokens: torch.Tensor, unfinished: torch.Tensor) -> None:
    """The next step's inputs, copied in place so a captured step reads them."""
    state.tokens.copy_(tokens)
    state.unfinished.copy_(unfinished)
    state.cache_pos.add_(1)


@dataclass
class Tally:
    """Decode row-steps of a ``generate`` call: every row decoded at every step after the
    prefill's (``row_steps``), those spent on rows that had already ended (``ended_row_steps``),
    how often rows left the batch (``compactions``), the rows deferred for want of cache slots
    (``deferred``: their indices in the batch as given; their output rows are not answers),
    the widest window (``window``, slots a row) and the most slots the cache held (``slots``), and
    what the prefill of groups sharing a prefix spared (``shared_rows``, ``shared_positions``)."""

    row_steps: int = 0
    ended_row_steps: int = 0
    compactions: int = 0
    deferred: list[int] = field(default_factory=list)
    window: int = 0
    slots: int = 0
    # Rows prefilled as members of a group sharing a prefix, and the language-model positions
    # they did not prefill (each group's prefix once instead of once a member).
    shared_rows: int = 0
    shared_positions: int = 0

    def held(self, rows: int, window: int) -> None:
        """The cache now holds ``rows`` rows of ``window`` slots."""
        self.window = max(self.window, window)
        self.slots = max(self.slots, rows * window)


def worth_compacting(live: int, rows: int, steps: int) -> bool:
    """Whether ``rows - live`` ended rows leave a batch of ``rows`` after ``steps`` steps at this
    size: once half have ended, or once ``STRAGGLER_STEPS`` have passed (module constants)."""
    return 0 < live < rows and (2 * live <= rows or steps >= STRAGGLER_STEPS)


def compact(state: StaticState, keep: torch.Tensor | None = None) -> None:
    """Only the rows ``keep`` (positions in ``state``; by default the rows still decoding) kept
    in ``state``, one layer's buffers at a time (each old one is released once copied, so the
    peak stays near one cache)."""
    if keep is None:
        keep = state.unfinished.nonzero().squeeze(1)
    for i in range(len(state.keys)):
        state.keys[i] = state.keys[i].index_select(0, keep)
        state.values[i] = state.values[i].index_select(0, keep)
    state.tokens = state.tokens.index_select(0, keep)
    state.unfinished = state.unfinished.index_select(0, keep)
    state.position_shift = state.position_shift.index_select(0, keep)
    state.usable = state.usable.index_select(0, keep)
    state.rows = state.rows.index_select(0, keep)


def stragglers(live: int, given: int) -> bool:
    """Whether ``live`` rows still decoding when a batch of ``given`` rows has spent its reserve
    are stragglers: at most half of it. They leave together (deferred), so that the engine
    decodes the long answers of many batches in one batch instead of each alone in its own."""
    return 2 * live <= given


def make_room(
    model: Any,
    state: StaticState,
    column: int,
    greedy: Greedy,
    cache_slots: int | None,
    tally: Tally,
    given: int | None = None,
) -> bool:
    """The window grown for column ``column``'s step: ended rows leave, and the rows still
    decoding get the doubled window as far as ``cache_slots`` allow (``rows_that_fit``); the
    rest are deferred (``tally.deferred``). With ``given`` (the rows of the batch as given, when
    the window its reserve sized is full: a batch with ``cache_slots``) the rows still decoding
    are all deferred where they are ``stragglers`` of it. False when no row is left to decode."""
    live = state.unfinished.nonzero().squeeze(1)
    wanted = window_for(state.prompt_len, 2 * (column - 1), greedy)
    keep, window = rows_that_fit(int(live.shape[0]), wanted, state.window, cache_slots)
    if given is not None and stragglers(int(live.shape[0]), given):
        keep = 0
    if keep < live.shape[0]:
        tally.deferred += state.rows.index_select(0, live[keep:]).tolist()
    if keep == 0:
        return False
    if keep < state.rows.shape[0]:
        compact(state, live[:keep])
        tally.compactions += 1
    grow(model, state, window)
    tally.held(keep, window)
    return True


def decode(
    model: Any,
    state: StaticState,
    out: torch.Tensor,
    greedy: Greedy,
    use_graph: bool,
    tally: Tally,
    cache_slots: int | None = None,
) -> int:
    """Columns 1.. of ``out`` from the decode steps, until every row has ended or been deferred,
    or the columns are full; returns how many columns were filled. Each window's or batch
    size's first step runs eagerly (with the graph: on a side stream, as the capture's warm-up),
    later ones replay its capture. Ended rows leave ``state`` (``worth_compacting``, and before
    the window grows: ``make_room``); ``out`` keeps every row. With ``cache_slots``, when the
    first window (the reserve's) is full, rows still decoding that are stragglers of the batch
    are deferred (``make_room``)."""
    step = functools.partial(decode_step, model, state, greedy)
    run: Step | None = None
    steps = 0  # at the batch's present size
    live = int(state.unfinished.sum())
    # The batch's rows as given, until its reserve's window (the first) is full.
    given = out.shape[0] if cache_slots is not None else None
    for column in range(1, out.shape[1]):
        if state.prompt_len + column - 1 >= state.window:
            run = None  # the captured step reads the old buffers
            rows = int(state.rows.shape[0])
            grown = make_room(model, state, column, greedy, cache_slots, tally, given)
            given = None
            if not grown:
                return column
            live = int(state.unfinished.sum())
            steps = steps if rows == state.rows.shape[0] else 0
        if run is not None:
            tokens, unfinished = run()
        elif use_graph:
            tokens, unfinished = on_side_stream(step)
            # Captured before this step's tokens are fed: a capture records, it runs nothing.
            run = captured(step) if column + 1 < out.shape[1] else None
        else:
            tokens, unfinished = step()
            run = step
        rows = int(state.rows.shape[0])
        tally.row_steps += rows
        tally.ended_row_steps += rows - live  # rows that had ended before this step
        out[:, column].index_copy_(0, state.rows, tokens)
        advance(state, tokens, unfinished)
        live = int(unfinished.sum())
        if live == 0:
            return column + 1
        steps += 1
        if column + 1 < out.shape[1] and worth_compacting(live, rows, steps):
            run = None  # the captured step reads the old buffers
            compact(state)
            tally.compactions += 1
            steps = 0
    return out.shape[1]


def generate(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    images: torch.Tensor,
    greedy: Greedy,
    *,
    use_graph: bool | None = None,
    tally: Tally | None = None,
    cache_slots: int | None = None,
    groups: Sequence[PrefixGroup] = (),
) -> torch.LongTensor:
    """``model.generate(input_ids, images=images, attention_mask=attention_mask, ...)``'s
    output for the settings ``greedy_for`` read: [B, 1 + n], ``bos_token_id`` first, then the
    n <= max_new_tokens new tokens, n as short as generate's (every row ended); a row after its
    eos is ``pad_token_id``. ``use_graph`` defaults to whether the inputs are on CUDA; a
    ``tally`` given is added this call's decode row-steps. With ``cache_slots`` (the batch's,
    ``batch_memory.cache_slots``) the cache never holds more, and rows that do not fit are
    deferred: ``tally`` (then required) names them, and their output rows are not answers.
    ``groups`` of rows sharing an image and a prompt prefix are prefilled by
    ``prefill_shared``."""
    on_cuda = input_ids.device.type == "cuda"
    use_graph = on_cuda if use_graph is None else use_graph
    if use_graph and not on_cuda:
        raise ValueError(f"use_graph needs a CUDA device; the inputs are on {input_ids.device}")
    if cache_slots is not None and tally is None:
        raise ValueError("cache_slots need a tally to name the rows deferred")
    tally = tally if tally is not None else Tally()
    with torch.no_grad():
        groups = untruncated(model, input_ids, attention_mask, groups)
        if groups:
            logits, cache, mask, saved = prefill_shared(
                model, input_ids, attention_mask, images, groups
            )
            tally.shared_rows += len(grouped_rows(groups))
            tally.shared_positions += saved
        else:
            logits, cache, mask = prefill(model, input_ids, attention_mask, images)
        batch = input_ids.shape[0]
        device = logits.device
        none_yet = torch.zeros(1, dtype=torch.long, device=device)
        unfinished = torch.ones(batch, dtype=torch.long, device=device)
        first, unfinished = choose(logits, none_yet, unfinished, greedy)
        # Padding where rows that left the batch are not written, as generate pads ended rows.
        out = torch.full(
            (batch, 1 + greedy.max_new_tokens), greedy.pad_token_id, dtype=torch.long, device=device
        )
        out[:, 0] = greedy.bos_token_id
        out[:, 1] = first
        if greedy.max_new_tokens == 1 or not bool(unfinished.any()):
            return out[:, :2]
        window = first_window(mask.shape[1], batch, greedy, cache_slots)
        state = static_state(model, cache, mask, first, window)
        state.unfinished.copy_(unfinished)
        tally.held(batch, window)
        filled = decode(model, state, out[:, 1:], greedy, use_graph, tally, cache_slots)
    return out[:, : 1 + filled]
