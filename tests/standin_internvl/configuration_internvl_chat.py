"""STAND-IN for InternVL2's configuration_internvl_chat.py (tests only, not InternVL's code).

The configuration classes of the project's small stand-in model (modeling_internvl_chat.py),
with the fields VLMEvalKit's InternVLChat and transformers' remote-code loading read from the
real ones: a chat config holding a vision config and a language model config.
"""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig


class InternVisionConfig(PretrainedConfig):
    model_type = "intern_vit_6b"

    def __init__(
        self,
        image_size: int = 448,
        patch_size: int = 112,
        hidden_size: int = 8,
        num_hidden_layers: int = 2,
        use_flash_attn: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.image_size = image_size
        self.patch_size = patch_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.use_flash_attn = use_flash_attn


class InternLM2Config(PretrainedConfig):
    model_type = "internlm2"

    def __init__(
        self,
        vocab_size: int = 128,
        num_hidden_layers: int = 4,
        attn_implementation: str = "eager",
        answer_rows: int = 1,
        query_length: int = 1,
        answer_length: int = 1,
        **kwargs: Any,
    ) -> None:
        # One-hot embeddings: the hidden size is the vocabulary's.
        self.vocab_size = vocab_size
        self.hidden_size = vocab_size
        self.num_hidden_layers = num_hidden_layers
        self.attn_implementation = attn_implementation
        # The answer table's shape (its contents are weights in model.safetensors).
        self.answer_rows = answer_rows
        self.query_length = query_length
        self.answer_length = answer_length
        super().__init__(**kwargs)


class InternVLChatConfig(PretrainedConfig):
    model_type = "internvl_chat"
    is_composition = True

    def __init__(
        self,
        vision_config: dict[str, Any] | None = None,
        llm_config: dict[str, Any] | None = None,
        template: str = "internlm2-chat",
        downsample_ratio: float = 0.5,
        force_image_size: int = 448,
        select_layer: int = -1,
        ps_version: str = "v2",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.vision_config = InternVisionConfig(**(vision_config or {}))
        self.llm_config = InternLM2Config(**(llm_config or {}))
        self.template = template
        self.downsample_ratio = downsample_ratio
        self.force_image_size = force_image_size
        self.select_layer = select_layer
        self.ps_version = ps_version

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["vision_config"] = self.vision_config.to_dict()
        out["llm_config"] = self.llm_config.to_dict()
        return out
