"""The internvl family over a slot's GPUs: VLMEvalKit's split, computed where it can be seen.

VLMEvalKit's InternVLChat loads InternVL with ``device_map="auto"``: transformers then builds
the model empty, balances its size over every visible GPU (accelerate's
``get_balanced_memory``, from each GPU's free memory) and places its modules with
``infer_auto_device_map``, never cutting a module the hub code lists in ``_no_split_modules``
(InternVL2: the whole vision model, and each decoder layer). ``device_map`` makes that same
computation from the model built on the meta device and the GPUs' free bytes, so the placement
of a two-GPU slot can be computed and checked without GPUs; ``placement`` gives it to the load.

Imports torch; ``internvl_wrapper`` imports this module.
"""

from __future__ import annotations

from typing import Any

import torch


def hub_config(model_path: str) -> Any:
    """The hub repo's config (its remote code, trusted: a catalogue repo) with flash attention
    off in both halves, whichever field the hub code's version reads: InternLM2's code reads its
    config's ``attn_implementation``, transformers' own language models ``_attn_implementation``,
    and InternViT ``use_flash_attn``. This image has no flash-attn."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_path, trust_remote_code=True)
    config.llm_config.attn_implementation = "eager"
    config.llm_config._attn_implementation = "eager"
    config.vision_config.use_flash_attn = False
    return config


def meta_model(config: Any, dtype: torch.dtype) -> torch.nn.Module:
    """The hub model of ``config`` (``hub_config``) built on the meta device: shapes, no
    memory."""
    from accelerate import init_empty_weights
    from transformers import AutoModel

    with init_empty_weights():
        return AutoModel.from_config(
            config, trust_remote_code=True, torch_dtype=dtype, use_flash_attn=False
        )


def device_map(model: torch.nn.Module, gpu_free_bytes: list[int], dtype: torch.dtype) -> dict:
    """Module name -> GPU index, as transformers 4.37's ``device_map="auto"`` places ``model``
    over GPUs with ``gpu_free_bytes`` free. Raises when a module would be left for the CPU or
    the disk: a slot's model runs on its GPUs only."""
    from accelerate.utils import get_balanced_memory, infer_auto_device_map

    no_split = model._get_no_split_modules("auto")
    limits = dict(enumerate(gpu_free_bytes))
    balanced = get_balanced_memory(
        model, max_memory=limits, no_split_module_classes=no_split, dtype=dtype, low_zero=False
    )
    placed = infer_auto_device_map(
        model, max_memory=balanced, no_split_module_classes=no_split, dtype=dtype
    )
    left = [name for name, where in placed.items() if where not in limits]
    if left:
        free = ", ".join(f"{b / 2**30:.1f}" for b in gpu_free_bytes)
        raise RuntimeError(
            f"the model does not fit on {len(gpu_free_bytes)} GPUs ({free} GiB free): "
            f"{len(left)} modules left over, from {left[0]}"
        )
    return {name: int(where) for name, where in placed.items()}


def placement(config: Any, dtype: torch.dtype) -> dict[str, Any]:
    """The device map of the model of ``config`` over every GPU the slot sees."""
    free = [torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count())]
    return device_map(meta_model(config, dtype), free, dtype)
