"""VLMEvalKit's InternVLChat on the slot's device (the internvl family's model object).

ms-vlmeval's ``vlmeval.vlm.InternVLChat`` loads the hub model with ``device_map="auto"`` and
``trust_remote_code=True`` in bfloat16 and sets its device to ``cuda``. ``DeviceInternVLChat``
is the same class, so its prompt building (``build_prompt``), dynamic tiling (``set_max_num``
and ``load_image``) and generation (``generate_v2`` with its generation settings) are inherited
unchanged; only the load is its own, for three reasons:

* the placement over the slot's GPUs is computed first (``internvl_spread.placement``, the
  same computation transformers makes for ``device_map="auto"``), so it can be checked on the
  meta device and is logged;
* flash attention is turned off before the hub code builds the model: in the config
  (``internvl_spread.hub_config``: every field a version of the hub code reads) and with
  ``use_flash_attn=False`` (InternVL2's own switch, as its model card documents), so the
  vision model builds its naive attention and the language model ``eager`` attention (the hub
  code has no SDPA path). The load then checks the loaded config says so, instead of trusting
  the hub code's import-time fallback;
* the device and dtype are parameters (bfloat16 on GPUs; float32 on the CPU, as the llava
  family). InternVL2's own ``chat`` moves its inputs with ``.cuda()``, so InternVL's real code
  runs on GPUs only, which is why the catalogue lists the family for ``cuda`` alone; the CPU
  path serves remote code that keeps its inputs on the model's device.

Only VLMEvalKit's plain path is supported (no lmdeploy, no best-of-N, no reward model): the
family refuses entries that ask for them (``vlmfleet.families.internvl``).

Imports torch and VLMEvalKit: ``vlmfleet.families.internvl`` imports it only when it loads.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import torch
from vlmeval.vlm import InternVLChat

from vlmfleet.families.internvl_spread import hub_config, placement

log = logging.getLogger("vlmfleet.families.internvl")

DTYPES = {"cuda": torch.bfloat16, "cpu": torch.float32}
# VLMEvalKit's InternVLChat generation settings, as its __init__ sets them (a model's own
# kwargs and the slot's settings override them).
GENERATION_DEFAULTS: dict[str, Any] = {"do_sample": False, "max_new_tokens": 4096, "top_p": None}
# What the hub code's attention is when flash-attn is off (InternVL2's InternVLChatModel).
EXPECTED_ATTENTION = "eager"


class AttentionError(RuntimeError):
    """The hub code built flash attention although it was asked not to."""


def llm_attention(config: Any) -> str | None:
    """The language model's attention as the field its code reads says: InternLM2's hub code
    reads ``attn_implementation``, transformers' own models ``_attn_implementation``."""
    llm = getattr(config, "llm_config", None)
    internlm2 = getattr(llm, "model_type", "") == "internlm2"
    return getattr(llm, "attn_implementation" if internlm2 else "_attn_implementation", None)


def attention_of(model: Any) -> str:
    """The language model's attention as the loaded InternVL config says, with the vision
    model's flash switch: e.g. ``eager (vision: naive)``."""
    flash_vit = getattr(getattr(model.config, "vision_config", None), "use_flash_attn", None)
    llm = llm_attention(model.config)
    return f"{llm or 'unknown'} (vision: {'flash' if flash_vit else 'naive'})"


def check_attention(model: Any) -> str:
    """The loaded model's attention; AttentionError when the hub code did not fall back."""
    flash_vit = getattr(getattr(model.config, "vision_config", None), "use_flash_attn", False)
    if llm_attention(model.config) != EXPECTED_ATTENTION or flash_vit:
        raise AttentionError(
            f"the hub code built {attention_of(model)} attention; this image has no flash-attn, "
            f"so {EXPECTED_ATTENTION} was expected (use_flash_attn=False)"
        )
    return attention_of(model)


class DeviceInternVLChat(InternVLChat):
    """vlmeval.vlm.InternVLChat with the device chosen by the caller."""

    def __init__(
        self,
        model_path: str,
        *,
        device: str = "cuda",
        version: str = "V2.0",
        use_custom_prompt: bool = True,
        **kwargs: Any,
    ) -> None:
        from transformers import AutoModel, AutoTokenizer

        # BaseModel and InternVLChat state, as InternVLChat.__init__ sets it on its plain path.
        self.dump_image_func = None
        self.use_lmdeploy = False
        self.cot_prompt_version = "v1"
        self.use_mpo_prompt = False
        self.use_cot = False
        self.use_postprocess = False
        self._use_custom_prompt = use_custom_prompt
        self.system_prompt = None
        self.cot_prompt = None
        self.model_path = model_path
        self.pattern, self.replacement = r"Image(\d+)", r"Image-\1"
        self.reverse_pattern, self.reverse_replacement = r"Image-(\d+)", r"Image\1"
        self.screen_parse = True
        self.version = version
        self.best_of_n = 1

        self.tokenizer = AutoTokenizer.from_pretrained(
            model_path, trust_remote_code=True, use_fast=False
        )
        dtype = DTYPES[device]
        config = hub_config(model_path)
        device_map = placement(config, dtype) if device == "cuda" else None
        self.model = AutoModel.from_pretrained(
            model_path,
            config=config,
            torch_dtype=dtype,
            trust_remote_code=True,
            low_cpu_mem_usage=True,
            use_flash_attn=False,
            device_map=device_map,
        ).eval()
        # InternVLChat moves the tiles to self.device: the first GPU holds the vision model.
        self.device = "cuda" if device == "cuda" else "cpu"
        self.attention = check_attention(self.model)
        self.kwargs = {**GENERATION_DEFAULTS, **kwargs}
        warnings.warn(
            f"Following kwargs received: {self.kwargs}, will use as generation config. ",
            stacklevel=2,
        )
