"""The llava family over a slot's GPUs: one model spread with accelerate's device map.

A slot of several GPUs (the planner's ``gpu0-1``, for a model bigger than one GPU) sees them as
cuda:0..n-1 inside its container. ``device_map`` places the model's layers over them with a
memory limit per GPU, computed on the model built on the meta device (no weights), so the same
placement can be checked without a GPU (tests/unit/worker/test_llava_spread.py).
``load_spread`` then
loads as LLaVA's own builder does (``llava.model.builder.load_pretrained_model``), which cannot
take such a map: it would hand it to the vision tower too. The vision tower and the projector's
inputs stay on cuda:0, where LLaVA gathers the image and text embeddings (``llava_arch`` moves
them to the model's first device); accelerate's hooks carry the hidden states between GPUs.

Imports torch; ``llava_wrapper`` imports this module only for a slot of several GPUs.
"""

from __future__ import annotations

from typing import Any

import torch

# The share of each GPU's free memory the weights may take; the rest is for activations, the KV
# cache and the allocator's slack at the slot's batch size.
WEIGHTS_SHARE = 0.8
DTYPE = torch.float16


def meta_model(config: Any) -> torch.nn.Module:
    """LLaVA-Llama built from ``config`` on the meta device: shapes, no memory. The vision
    tower is built as the real load builds it first (its config only, delay-loaded)."""
    from accelerate import init_empty_weights
    from llava.model import LlavaLlamaForCausalLM

    with init_empty_weights():
        return LlavaLlamaForCausalLM(config)


def device_map(model: torch.nn.Module, gpu_free_bytes: list[int]) -> dict[str, int]:
    """Module name -> GPU index for ``model`` over GPUs with ``gpu_free_bytes`` free, each
    holding at most WEIGHTS_SHARE of it; a decoder layer is never cut in two. Raises when a
    module would be left for the CPU or the disk: a slot's model runs on its GPUs only."""
    from accelerate import infer_auto_device_map

    max_memory = {i: int(free * WEIGHTS_SHARE) for i, free in enumerate(gpu_free_bytes)}
    placed = infer_auto_device_map(
        model,
        max_memory=max_memory,
        no_split_module_classes=list(model._no_split_modules or ["LlamaDecoderLayer"]),
        dtype=DTYPE,
    )
    left = [name for name, where in placed.items() if where not in max_memory]
    if left:
        raise RuntimeError(
            f"the model does not fit on {len(gpu_free_bytes)} GPUs at {WEIGHTS_SHARE:.0%} of "
            f"their free memory ({', '.join(f'{b / 2**30:.1f}' for b in gpu_free_bytes)} GiB "
            f"free): {len(left)} modules left over, from {left[0]}"
        )
    return {name: int(where) for name, where in placed.items()}


def load_spread(model_path: str) -> tuple[Any, Any, Any, int]:
    """(tokenizer, model, image_processor, context_len), as LLaVA's builder returns them, with
    the language model spread over every visible GPU and the vision tower on cuda:0."""
    from llava.constants import (
        DEFAULT_IM_END_TOKEN,
        DEFAULT_IM_START_TOKEN,
        DEFAULT_IMAGE_PATCH_TOKEN,
    )
    from llava.model import LlavaConfig, LlavaLlamaForCausalLM
    from transformers import AutoTokenizer

    config = LlavaConfig.from_pretrained(model_path)
    free = [torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count())]
    placement = device_map(meta_model(config), free)
    tokenizer = AutoTokenizer.from_pretrained(model_path, use_fast=False)
    model = LlavaLlamaForCausalLM.from_pretrained(
        model_path, low_cpu_mem_usage=True, torch_dtype=DTYPE, device_map=placement
    )
    # What the builder does after loading a llava checkpoint.
    if getattr(model.config, "mm_use_im_patch_token", True):
        tokenizer.add_tokens([DEFAULT_IMAGE_PATCH_TOKEN], special_tokens=True)
    if getattr(model.config, "mm_use_im_start_end", False):
        tokenizer.add_tokens([DEFAULT_IM_START_TOKEN, DEFAULT_IM_END_TOKEN], special_tokens=True)
    model.resize_token_embeddings(len(tokenizer))
    vision_tower = model.get_vision_tower()
    if not vision_tower.is_loaded:
        vision_tower.load_model(device_map="cuda:0")
    vision_tower.to(device="cuda:0", dtype=DTYPE)
    context_len = getattr(model.config, "max_sequence_length", 2048)
    return tokenizer, model, vision_tower.image_processor, context_len
