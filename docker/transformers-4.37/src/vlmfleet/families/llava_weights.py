"""A LLaVA checkpoint's tokenizer, model and image processor on a device: LLaVA's own builder.

``DeviceLLaVA`` loads its weights with this. Imports torch and LLaVA, never VLMEvalKit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from llava.mm_utils import get_model_name_from_path
from llava.model.builder import load_pretrained_model


@dataclass(frozen=True)
class Weights:
    """What LLaVA's builder returns, on the device and in the dtype the wrapper generates in."""

    tokenizer: Any
    model: Any
    image_processor: Any
    context_len: int
    device: torch.device
    dtype: torch.dtype


def torch_device(device: str) -> tuple[torch.device, torch.dtype]:
    if device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' requested but torch sees no CUDA device")
        return torch.device("cuda:0"), torch.float16
    if device == "cpu":
        return torch.device("cpu"), torch.float32
    raise ValueError(f"device {device!r} is not valid; valid: cuda, cpu")


def builder_name(model_path: str) -> str:
    """The name LLaVA's builder picks the model class by (it must read "llava")."""
    if model_path == "Lin-Chen/ShareGPT4V-7B":
        return "llava-v1.5-7b"
    if model_path == "Lin-Chen/ShareGPT4V-13B":
        return "llava-v1.5-13b"
    return get_model_name_from_path(model_path)


def load_weights(model_path: str, device: str) -> Weights:
    """``model_path`` (a hub id or a folder) on ``device``: cuda:0 in float16 (a slot of several
    GPUs spreads it over them, ``llava_spread``), or the CPU in float32 (CPU kernels such as
    CLIP's convolution have no float16 implementation in torch 2.1)."""
    on, dtype = torch_device(device)
    if device == "cuda" and torch.cuda.device_count() > 1:
        from vlmfleet.families.llava_spread import load_spread

        tokenizer, model, processor, context_len = load_spread(model_path)
    else:
        # Straight onto the GPU: VLMEvalKit's wrapper loads on the CPU and copies over, which
        # costs a second pass over every weight. A CPU slot loads float16 on the CPU, then
        # widens.
        tokenizer, model, processor, context_len = load_pretrained_model(
            model_path=model_path,
            model_base=None,
            model_name=builder_name(model_path),
            device_map=str(on),
        )
        model = model.to(device=on, dtype=dtype)
    model.eval()
    return Weights(tokenizer, model, processor, context_len, on, dtype)
