"""Greedy LLaVA decoding with a static KV cache, and on CUDA its decode step as a CUDA graph.

transformers 4.37's Llama has no static cache (4.38's breaks LLaVA 1.2.2), so its ``generate``
grows a DynamicCache with ``torch.cat`` and launches every small kernel of a step from Python.
``generate_static`` is the bench's measure of what that costs: the prefill is transformers' own
(LLaVA's ``prepare_inputs_labels_for_multimodal``, then one forward as ``generate``'s first
step), the cache is copied into buffers of the final length, and every later step is written
here from the model's modules with fixed shapes, so that one capture can be replayed per token.
Positions, masks and the eos rule are those of ``generate``, so the tokens are the same.

    python bench/static_decode.py --check --checkpoint DIR [--device cpu] [--new-tokens 1 5 10]

checks that, on a batch of prompts of different lengths (left padding), the rows are
token-identical to ``model.generate``'s, eager and (on CUDA) with the graph; exit 1 names the
rows that differ.
"""

from __future__ import annotations

import argparse
import functools
import json
from argparse import Namespace
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb, repeat_kv

Step = Callable[[], tuple[torch.Tensor, torch.Tensor]]

# generate's logits processors and their inactive values: with any other value generate's
# scores are not the plain argmax (plus the eos rule) this decoder computes.
INACTIVE_PROCESSORS: dict[str, Any] = {
    "repetition_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "bad_words_ids": None,
    "min_length": 0,
    "forced_bos_token_id": None,
    "forced_eos_token_id": None,
    "suppress_tokens": None,
    "begin_suppress_tokens": None,
    "sequence_bias": None,
    "exponential_decay_length_penalty": None,
}


@dataclass(frozen=True)
class EosRule:
    """generate's greedy handling of eos: banned until ``min_new_tokens`` tokens are out
    (MinNewTokensLengthLogitsProcessor), then a row that emitted it gets ``pad_token_id``."""

    eos_token_id: int | None
    pad_token_id: int
    min_new_tokens: int


@dataclass
class StaticState:
    """The decode step's inputs, all tensors of fixed shape: what a capture reads and writes.
    Slot ``s`` of the cache holds prompt position ``s`` below ``prompt_len``, else the token
    generated ``s - prompt_len`` steps after the prefill's."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    cos: torch.Tensor
    sin: torch.Tensor
    # [B] the token to feed, [1] the slot it goes to, [B] 1 while the row has not emitted eos.
    tokens: torch.Tensor
    cache_pos: torch.Tensor
    unfinished: torch.Tensor
    # [B] position id minus slot, for generated slots: generate counts positions over the
    # attention mask (cumsum - 1), so a row's padding shifts its positions down.
    position_shift: torch.Tensor
    # [S] slot numbers; [B, S] slots a query may see once written (real prompt, generated).
    slots: torch.Tensor
    usable: torch.Tensor
    prompt_len: int


def check_supported(model: Any) -> None:
    """Refuse what the hand-written step does not reproduce, before any work."""
    config = model.config
    if getattr(config, "pretraining_tp", 1) != 1:
        raise ValueError(f"pretraining_tp must be 1, got {config.pretraining_tp}")
    if getattr(config, "rope_scaling", None) is not None:
        raise ValueError(f"rope_scaling is not supported, got {config.rope_scaling!r}")
    gen = model.generation_config
    active = {
        name: getattr(gen, name, inactive)
        for name, inactive in INACTIVE_PROCESSORS.items()
        if getattr(gen, name, inactive) not in (inactive, None)
    }
    if active:
        raise ValueError(f"generation_config sets logits processors not reproduced: {active}")


def prefill(
    model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, images: torch.Tensor
) -> tuple[torch.Tensor, Any, torch.Tensor]:
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
    # of the layers' (key, value), so static_state can let each go once copied.
    return out.logits[:, -1, :].clone(), list(out.past_key_values), mask


def static_state(
    model: Any, cache: list[Any], mask: torch.Tensor, first: torch.Tensor, new_tokens: int
) -> StaticState:
    """The prefill's cache moved into buffers long enough for every step (``cache`` is emptied:
    each layer is released as soon as it is copied, so the peak stays near one cache, not two)."""
    batch, prompt_len = mask.shape
    # A multiple of 8 slots: the attention mask's rows then meet the memory-efficient SDPA
    # kernel's alignment without a padded copy each step.
    length = -(-(prompt_len + new_tokens - 1) // 8) * 8
    keys, values = [], []
    for i in range(len(cache)):
        key, value = cache[i]
        shape = (*key.shape[:2], length, key.shape[3])
        keys.append(key.new_zeros(shape))
        values.append(value.new_zeros(shape))
        keys[i][:, :, :prompt_len].copy_(key)
        values[i][:, :, :prompt_len].copy_(value)
        cache[i] = None
    # The tables generate's rotary_emb hands out, grown once to cover every position.
    probe = keys[0].new_empty(0)
    cos, sin = model.model.layers[0].self_attn.rotary_emb(probe, seq_len=length)
    device = mask.device
    slots = torch.arange(length, device=device)
    usable = torch.ones((batch, length), dtype=torch.bool, device=device)
    usable[:, :prompt_len] = mask.bool()
    return StaticState(
        keys=keys,
        values=values,
        cos=cos,
        sin=sin,
        tokens=first.clone(),
        cache_pos=torch.full((1,), prompt_len, dtype=torch.long, device=device),
        unfinished=torch.ones(batch, dtype=torch.long, device=device),
        position_shift=mask.long().sum(-1) - prompt_len,
        slots=slots,
        usable=usable,
        prompt_len=prompt_len,
    )


def choose(
    logits: torch.Tensor, generated: torch.Tensor, unfinished: torch.Tensor, rule: EosRule
) -> tuple[torch.Tensor, torch.Tensor]:
    """greedy_search's next tokens from float logits ([B, V]) after ``generated`` tokens."""
    eos = rule.eos_token_id
    if eos is None:
        return logits.argmax(-1), unfinished
    logits[:, eos].masked_fill_(generated < rule.min_new_tokens, float("-inf"))
    tokens = logits.argmax(-1)
    tokens = tokens * unfinished + rule.pad_token_id * (1 - unfinished)
    return tokens, unfinished * (tokens != eos)


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
    out = F.scaled_dot_product_attention(q.contiguous(), keys, values, attn_mask=bias)
    return attn.o_proj(out.transpose(1, 2).reshape(batch, 1, attn.hidden_size))


def decode_step(model: Any, state: StaticState, rule: EosRule) -> tuple[torch.Tensor, torch.Tensor]:
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
    return choose(logits, generated, state.unfinished, rule)


def on_side_stream(step: Step) -> tuple[torch.Tensor, torch.Tensor]:
    """``step`` run once off the default stream, so that its lazy set-up (cuBLAS handles and
    workspaces, SDPA plans) happens before, not inside, the capture."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        out = step()
    torch.cuda.current_stream().wait_stream(side)
    return out


def captured(step: Step) -> Step:
    """``step`` recorded as a CUDA graph; each call replays it and returns its (static)
    outputs, which the next replay overwrites."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
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


def decode(step: Step, state: StaticState, out: torch.Tensor, use_graph: bool) -> None:
    """Columns 1.. of ``out`` from the decode steps. With the graph the first step is the
    warm-up and every later one a replay; eager and graph run the same ``step``."""
    run = step
    for column in range(1, out.shape[1]):
        tokens, unfinished = on_side_stream(step) if use_graph and column == 1 else run()
        out[:, column].copy_(tokens)
        advance(state, tokens, unfinished)
        if use_graph and column == 1 and out.shape[1] > 2:
            run = captured(step)


def generate_static(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    images: torch.Tensor,
    new_tokens: int,
    eos_token_id: int | None,
    use_graph: bool,
    *,
    min_new_tokens: int = 0,
    pad_token_id: int | None = None,
) -> torch.LongTensor:
    """``model.generate(input_ids, images=images, attention_mask=attention_mask,
    do_sample=False, max_new_tokens=new_tokens, min_new_tokens=min_new_tokens)``'s new tokens,
    [B, new_tokens]: always that many columns, a row after its eos (and every row, where
    generate stops early because all have one) filled with ``pad_token_id`` (default eos)."""
    if new_tokens < 1:
        raise ValueError(f"new_tokens must be at least 1, got {new_tokens}")
    if use_graph and input_ids.device.type != "cuda":
        raise ValueError(f"use_graph needs a CUDA device; the inputs are on {input_ids.device}")
    check_supported(model)
    pad = pad_token_id if pad_token_id is not None else eos_token_id
    rule = EosRule(eos_token_id, pad if pad is not None else 0, min_new_tokens)
    with torch.no_grad():
        logits, cache, mask = prefill(model, input_ids, attention_mask, images)
        batch = input_ids.shape[0]
        none_yet = torch.zeros(1, dtype=torch.long, device=logits.device)
        unfinished = torch.ones(batch, dtype=torch.long, device=logits.device)
        first, unfinished = choose(logits, none_yet, unfinished, rule)
        out = torch.empty((batch, new_tokens), dtype=torch.long, device=logits.device)
        out[:, 0] = first
        if new_tokens == 1:
            return out
        state = static_state(model, cache, mask, first, new_tokens)
        state.unfinished.copy_(unfinished)
        decode(functools.partial(decode_step, model, state, rule), state, out, use_graph)
    return out


# --- the check ---------------------------------------------------------------------------

# Questions of different lengths, so that the batch is left-padded.
CHECK_QUESTIONS = (
    "What is the color of the shape?",
    "Is there a circle in the image? Please answer yes or no.",
    "How many objects are there?",
    "Which option is correct? Options: A. red B. green C. blue D. yellow Answer with the "
    "option's letter from the given choices directly.",
)
CHECK_IMAGES = (
    ((380, 300), (200, 40, 40)),
    ((224, 224), (40, 200, 40)),
    ((300, 500), (40, 40, 200)),
)


def disable_cudnn_sdpa() -> None:
    """SDPA without its cuDNN backend, for generate and this decoder alike: torch 2.1 has none,
    later ones pick it on Hopper, and it has had mask and graph-capture failures of its own."""
    if hasattr(torch.backends.cuda, "enable_cudnn_sdp"):
        torch.backends.cuda.enable_cudnn_sdp(False)


def load(checkpoint: str, device: str) -> tuple[Any, Any, Any]:
    """Tokenizer, model and image processor as the worker loads them (``llava_weights``), the
    model set for left-padded batches."""
    from vlmfleet.families.llava_weights import load_weights

    weights = load_weights(checkpoint, device)
    weights.model.config.tokenizer_padding_side = "left"
    return weights.tokenizer, weights.model, weights.image_processor


def left_padded_batch(
    tokenizer: Any, processor: Any, rows: list[torch.Tensor], images: list[Any], dtype: torch.dtype
) -> Any:
    """The worker's batch of token rows, one image each (llava_batched.batch_inputs: left
    padding, its pad id, the images in row order, preprocessed as DeviceLLaVA does)."""
    from llava.mm_utils import process_images
    from vlmfleet.families.llava_batched import Sample, batch_inputs

    def preprocess(batch: list[Any]) -> torch.Tensor:
        return process_images(batch, processor, Namespace(image_aspect_ratio="pad")).to(dtype)

    wrapper = SimpleNamespace(tokenizer=tokenizer, preprocess_images=preprocess)
    samples = [
        Sample(index=i, prompt="", images=[image], ids=ids)
        for i, (ids, image) in enumerate(zip(rows, images, strict=True))
    ]
    return batch_inputs(wrapper, samples)


def check_batch(tokenizer: Any, processor: Any, dtype: torch.dtype) -> Any:
    """The check's prompts as the worker builds them, one image each, left-padded."""
    from llava.constants import IMAGE_TOKEN_INDEX
    from llava.mm_utils import tokenizer_image_token
    from PIL import Image
    from vlmfleet.families.llava_wrapper import SYSTEM_PROMPT

    # DeviceLLaVA.generate_inner's prompt, concat_tilist's image placeholder in it.
    prompts = [f"{SYSTEM_PROMPT}USER:  <image> {q} ASSISTANT: " for q in CHECK_QUESTIONS]
    rows = [
        tokenizer_image_token(p, tokenizer, IMAGE_TOKEN_INDEX, return_tensors="pt") for p in prompts
    ]
    if len({len(r) for r in rows}) < len(rows):
        raise ValueError("the check's prompts must have different lengths to exercise padding")
    images = [Image.new("RGB", *CHECK_IMAGES[i % len(CHECK_IMAGES)]) for i in range(len(prompts))]
    return left_padded_batch(tokenizer, processor, rows, images, dtype)


def generated_columns(output: torch.Tensor, new_tokens: int, pad: int) -> torch.Tensor:
    """The new tokens of LLaVA's ``generate``, [B, new_tokens]. Given inputs_embeds,
    transformers 4.37 starts its sequences with a bos column it never feeds the model; where
    every row ended early, the missing columns are padding."""
    new = output[:, 1:]
    return F.pad(new, (0, new_tokens - new.shape[1]), value=pad)


def hf_tokens(model: Any, inputs: Any, new_tokens: int, min_new_tokens: int, pad: int) -> Any:
    with torch.inference_mode():
        out = model.generate(
            inputs.input_ids,
            images=inputs.images,
            attention_mask=inputs.attention_mask,
            do_sample=False,
            max_new_tokens=new_tokens,
            min_new_tokens=min_new_tokens,
            pad_token_id=pad,
            use_cache=True,
        )
    return generated_columns(out, new_tokens, pad)


def differing_rows(reference: torch.Tensor, tokens: torch.Tensor) -> list[int]:
    same = (reference.cpu() == tokens.cpu()).all(dim=1)
    return [i for i, ok in enumerate(same.tolist()) if not ok]


def run_check(checkpoint: str, device: str, counts: list[int]) -> int:
    tokenizer, model, processor = load(checkpoint, device)
    inputs = check_batch(tokenizer, processor, model.dtype)
    inputs = SimpleNamespace(
        input_ids=inputs.input_ids.to(device),
        attention_mask=inputs.attention_mask.to(device),
        images=inputs.images.to(device),
    )
    eos = model.generation_config.eos_token_id
    pad = model.generation_config.pad_token_id
    pad = pad if pad is not None else eos
    modes = [False, True] if device == "cuda" else [False]
    failed = []
    lengths = inputs.attention_mask.sum(-1).tolist()
    print(json.dumps({"checkpoint": checkpoint, "device": device, "row_lengths": lengths}))
    for n in counts:
        # min_new_tokens == n is the bench's case (eos banned); 0 lets rows stop at eos.
        for min_new in sorted({n, 0}, reverse=True):
            reference = hf_tokens(model, inputs, n, min_new, pad)
            for graph in modes:
                tokens = generate_static(
                    model,
                    inputs.input_ids,
                    inputs.attention_mask,
                    inputs.images,
                    n,
                    eos,
                    graph,
                    min_new_tokens=min_new,
                    pad_token_id=pad,
                )
                bad = differing_rows(reference, tokens)
                case = {"new_tokens": n, "min_new_tokens": min_new, "graph": graph}
                rows = len(reference)
                ended = int((reference == eos).any(dim=1).sum()) if eos is not None else 0
                tally = {"rows_identical": rows - len(bad), "rows": rows, "rows_with_eos": ended}
                print(json.dumps({**case, **tally}))
                if bad:
                    failed.append(f"{case}: rows {bad} differ")
                    for i in bad:
                        print(f"  row {i}: generate {reference[i].tolist()}")
                        print(f"  row {i}: static   {tokens[i].tolist()}")
    if failed:
        print("FAIL: " + "; ".join(failed))
        return 1
    print("OK: every row token-identical to generate")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", required=True, help="compare with generate")
    p.add_argument("--checkpoint", required=True, help="a LLaVA checkpoint folder")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cuda")
    p.add_argument("--new-tokens", type=int, nargs="+", default=[1, 5, 10])
    p.add_argument("--no-cudnn-sdpa", action="store_true", help="SDPA without cuDNN (cuda)")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda, but torch sees no CUDA device")
    if min(args.new_tokens) < 1:
        p.error("--new-tokens must be at least 1")
    if args.no_cudnn_sdpa:
        disable_cudnn_sdpa()
    return run_check(args.checkpoint, args.device, args.new_tokens)


if __name__ == "__main__":
    raise SystemExit(main())
