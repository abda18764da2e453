"""STAND-IN for InternVL2's modeling_internvl_chat.py (tests only, not InternVL's model).

The project's own small model, written to the interface VLMEvalKit's InternVLChat calls on the
real one: ``AutoModel.from_pretrained(..., trust_remote_code=True, use_flash_attn=...)`` builds
``InternVLChatModel``, whose ``chat(tokenizer, pixel_values, question, generation_config,
num_patches_list=..., verbose=...)`` builds the internlm2-chat prompt, puts ``num_image_token``
<IMG_CONTEXT> tokens per tile in place of <image>, and generates through transformers'
``generate`` from the input embeddings, the vision features in the image positions.

Where it differs from InternVL2 (so what tests through it do not prove about InternVL):
* it answers from a table in its weights: the language model reads the prompt's token ids
  back from one-hot embeddings and, when they equal a stored prompt exactly (text and the
  number of image tokens, i.e. of tiles), emits that row's answer; otherwise "unmatched";
  pixels are checked for shape only (3x448x448 tiles), their content is not looked at;
* ``chat`` keeps its inputs on the model's device (InternVL2's moves them with ``.cuda()``),
  and its vision embedding casts the tiles to its own dtype;
* when ``STANDIN_INTERNVL_TRACE`` names a file, each ``chat`` call appends what it was given
  (prompt, tiles, generation settings) as one JSON line.
The flash-attention switch behaves as InternVL2's: ``use_flash_attn`` is taken only where
flash_attn imports, else the vision model is naive and the language model ``eager``.
"""

from __future__ import annotations

import json
import os
from typing import Any, ClassVar

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput, CausalLMOutputWithPast

from .configuration_internvl_chat import InternLM2Config, InternVisionConfig, InternVLChatConfig
from .conversation import get_conv_template

try:
    import flash_attn  # noqa: F401

    has_flash_attn = True
except ImportError:
    has_flash_attn = False

UNMATCHED = "unmatched"


class InternVisionEncoderLayer(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.mlp = nn.Linear(hidden, hidden)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.mlp(h)


class InternVisionModel(PreTrainedModel):
    config_class = InternVisionConfig
    main_input_name = "pixel_values"
    _no_split_modules: ClassVar[list[str]] = ["InternVisionEncoderLayer"]

    def __init__(self, config: InternVisionConfig) -> None:
        super().__init__(config)
        self.patch_embedding = nn.Conv2d(
            3, config.hidden_size, config.patch_size, config.patch_size
        )
        self.layers = nn.ModuleList(
            InternVisionEncoderLayer(config.hidden_size) for _ in range(config.num_hidden_layers)
        )

    def forward(self, pixel_values: torch.Tensor, **kwargs: Any) -> BaseModelOutput:
        size = self.config.image_size
        if tuple(pixel_values.shape[1:]) != (3, size, size):
            raise ValueError(f"tiles must be 3x{size}x{size}, got {tuple(pixel_values.shape)}")
        h = self.patch_embedding(pixel_values.to(self.patch_embedding.weight.dtype))
        h = h.flatten(2).transpose(1, 2)
        for layer in self.layers:
            h = layer(h)
        return BaseModelOutput(last_hidden_state=h)


class InternLM2DecoderLayer(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.mix = nn.Linear(hidden, hidden, bias=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.mix(h)


class InternLM2Model(nn.Module):
    def __init__(self, config: InternLM2Config) -> None:
        super().__init__()
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(
            InternLM2DecoderLayer(config.hidden_size) for _ in range(config.num_hidden_layers)
        )


class InternLM2ForCausalLM(PreTrainedModel):
    config_class = InternLM2Config
    _no_split_modules: ClassVar[list[str]] = ["InternLM2DecoderLayer"]

    def __init__(self, config: InternLM2Config) -> None:
        super().__init__(config)
        self.model = InternLM2Model(config)
        self.output = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        rows, length = config.answer_rows, config.query_length
        self.register_buffer("queries", torch.zeros(rows, length, dtype=torch.long))
        self.register_buffer("query_lengths", torch.zeros(rows, dtype=torch.long))
        self.register_buffer(
            "answers", torch.zeros(rows + 1, config.answer_length, dtype=torch.long)
        )

    def get_input_embeddings(self) -> nn.Module:
        return self.model.tok_embeddings

    def prepare_inputs_for_generation(
        self, input_ids, past_key_values=None, attention_mask=None, inputs_embeds=None, **kwargs
    ):
        if past_key_values is not None:
            return {"input_ids": input_ids[:, -1:], "past_key_values": past_key_values}
        if inputs_embeds is not None:
            return {"inputs_embeds": inputs_embeds}
        return {"input_ids": input_ids}

    def row_of(self, ids: torch.Tensor) -> int:
        """The table row whose stored prompt is ``ids`` exactly; the last row (unmatched) else."""
        n = ids.shape[0]
        for row in range(self.queries.shape[0]):
            if int(self.query_lengths[row]) == n and torch.equal(self.queries[row, :n], ids.cpu()):
                return row
        return self.queries.shape[0]

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        position_ids=None,
        past_key_values=None,
        inputs_embeds=None,
        use_cache=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
    ) -> CausalLMOutputWithPast:
        h = inputs_embeds if inputs_embeds is not None else self.model.tok_embeddings(input_ids)
        for layer in self.model.layers:
            h = layer(h)
        if past_key_values is None:
            # Prefill: the embeddings are one-hot, so the prompt's token ids read back exactly.
            row, step = self.row_of(h[0].argmax(-1).cpu()), 0
        else:
            row, step = past_key_values
        token = self.answers[row, min(step, self.answers.shape[1] - 1)]
        logits = torch.full((h.shape[0], 1, self.config.vocab_size), -1e4, device=h.device)
        logits[:, :, token] = 0.0
        return CausalLMOutputWithPast(logits=logits, past_key_values=(row, step + 1))


class InternVLChatModel(PreTrainedModel):
    config_class = InternVLChatConfig
    main_input_name = "pixel_values"
    _no_split_modules: ClassVar[list[str]] = ["InternVisionModel", "InternLM2DecoderLayer"]

    def __init__(self, config: InternVLChatConfig, use_flash_attn: bool = True) -> None:
        super().__init__(config)
        # As InternVL2: flash attention only where flash_attn imports.
        use_flash_attn = use_flash_attn if has_flash_attn else False
        config.vision_config.use_flash_attn = bool(use_flash_attn)
        config.llm_config.attn_implementation = "flash_attention_2" if use_flash_attn else "eager"
        vision = config.vision_config
        self.num_image_token = int(
            (config.force_image_size // vision.patch_size) ** 2 * config.downsample_ratio**2
        )
        self.template = config.template
        self.vision_model = InternVisionModel(vision)
        self.language_model = InternLM2ForCausalLM(config.llm_config)
        shuffled = vision.hidden_size * int(1 / config.downsample_ratio) ** 2
        self.mlp1 = nn.Sequential(nn.Linear(shuffled, config.llm_config.hidden_size))
        self.img_context_token_id = None
        self.system_message = get_conv_template(self.template).system_message

    def extract_feature(self, pixel_values: torch.Tensor) -> torch.Tensor:
        h = self.vision_model(pixel_values=pixel_values).last_hidden_state
        n, tokens, c = h.shape
        side, scale = int(tokens**0.5), int(1 / self.config.downsample_ratio)
        h = h.reshape(n, side // scale, scale, side // scale, scale, c).permute(0, 1, 3, 2, 4, 5)
        return self.mlp1(h.reshape(n, -1, c * scale * scale))

    def chat(
        self,
        tokenizer,
        pixel_values,
        question,
        generation_config,
        history=None,
        return_history=False,
        num_patches_list=None,
        IMG_START_TOKEN="<img>",
        IMG_END_TOKEN="</img>",
        IMG_CONTEXT_TOKEN="<IMG_CONTEXT>",
        verbose=False,
    ):
        if history is None and pixel_values is not None and "<image>" not in question:
            question = "<image>\n" + question
        if num_patches_list is None:
            num_patches_list = [pixel_values.shape[0]] if pixel_values is not None else []
        assert pixel_values is None or len(pixel_values) == sum(num_patches_list)
        self.img_context_token_id = tokenizer.convert_tokens_to_ids(IMG_CONTEXT_TOKEN)
        template = get_conv_template(self.template)
        template.system_message = self.system_message
        template.append_message(template.roles[0], question)
        template.append_message(template.roles[1], None)
        query = template.get_prompt()
        for num_patches in num_patches_list:
            image_tokens = IMG_START_TOKEN + IMG_CONTEXT_TOKEN * self.num_image_token * num_patches
            query = query.replace("<image>", image_tokens + IMG_END_TOKEN, 1)
        inputs = tokenizer(query, return_tensors="pt")
        generation_config["eos_token_id"] = tokenizer.convert_tokens_to_ids(template.sep)
        trace(question, num_patches_list, pixel_values, generation_config, self.device)
        output = self.generate(
            pixel_values=pixel_values,
            input_ids=inputs["input_ids"].to(self.device),
            attention_mask=inputs["attention_mask"].to(self.device),
            **generation_config,
        )
        response = tokenizer.batch_decode(output, skip_special_tokens=True)[0]
        return response.split(template.sep)[0].strip()

    @torch.no_grad()
    def generate(self, pixel_values=None, input_ids=None, attention_mask=None, **generate_kwargs):
        embeds = self.language_model.get_input_embeddings()(input_ids)
        if pixel_values is not None:
            vit = self.extract_feature(pixel_values)
            b, n, c = embeds.shape
            embeds = embeds.reshape(b * n, c)
            selected = input_ids.reshape(b * n) == self.img_context_token_id
            assert selected.sum() != 0
            embeds[selected] = vit.reshape(-1, c).to(embeds.device, embeds.dtype)
            embeds = embeds.reshape(b, n, c)
        return self.language_model.generate(
            inputs_embeds=embeds, attention_mask=attention_mask, use_cache=True, **generate_kwargs
        )


def trace(question, num_patches_list, pixel_values, generation_config, device) -> None:
    path = os.environ.get("STANDIN_INTERNVL_TRACE")
    if not path:
        return
    line = {
        "question": question,
        "num_patches_list": list(num_patches_list),
        "pixel_shape": list(pixel_values.shape) if pixel_values is not None else None,
        "pixel_dtype": str(pixel_values.dtype) if pixel_values is not None else None,
        "generation_config": {k: v for k, v in generation_config.items()},
        "device": str(device),
    }
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(line, default=str) + "\n")
