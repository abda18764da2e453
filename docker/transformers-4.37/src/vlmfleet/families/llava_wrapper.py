"""VLMEvalKit's LLaVA wrapper on any device (the llava family's model object).

ms-vlmeval's ``vlmeval.vlm.LLaVA`` moves the model and every input to CUDA in float16
unconditionally. ``DeviceLLaVA`` is the same class (prompting, message handling and
generation settings are inherited) with the device and dtype as parameters, so the same wrapper
runs on a GPU and on a CPU; the weights are loaded by ``llava_weights``, which says where and
in which dtype.

Imports torch and VLMEvalKit: ``vlmfleet.families.llava`` imports this module only when it
loads a model.
"""

from __future__ import annotations

import os.path as osp
import warnings
from argparse import Namespace
from typing import Any

import torch
from vlmeval.vlm import LLaVA

from vlmfleet.families.llava_weights import load_weights
from vlmfleet.images import open_rgb

# VLMEvalKit's LLaVA system prompt, as its LLaVA.__init__ sets it.
SYSTEM_PROMPT = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions. "
)
# VLMEvalKit's LLaVA generation settings, as its LLaVA.__init__ sets them (a model's own
# kwargs override them).
GENERATION_DEFAULTS: dict[str, Any] = {
    "do_sample": False,
    "temperature": 0,
    "max_new_tokens": 2048,
    "top_p": None,
    "num_beams": 1,
    "use_cache": True,
}


class DeviceLLaVA(LLaVA):
    """vlmeval.vlm.LLaVA with the device chosen by the caller."""

    def __init__(
        self,
        model_path: str = "liuhaotian/llava_v1.5_7b",
        *,
        device: str = "cuda",
        **kwargs: Any,
    ) -> None:
        # BaseModel state (dump_image_func) that LLaVA.__init__ never sets up itself.
        self.dump_image_func = None
        assert osp.exists(model_path) or len(model_path.split("/")) == 2, model_path
        self.system_prompt = SYSTEM_PROMPT
        self.stop_str = "</s>"
        weights = load_weights(model_path, device)
        self.device, self.dtype = weights.device, weights.dtype
        self.tokenizer, self.model = weights.tokenizer, weights.model
        self.image_processor, self.context_len = weights.image_processor, weights.context_len
        self.conv_mode = "llava_v1"
        self.kwargs = {**GENERATION_DEFAULTS, **kwargs}
        warnings.warn(
            f"Following kwargs received: {self.kwargs}, will use as generation config. ",
            stacklevel=2,
        )

    def preprocess_images(self, paths: list[str]) -> torch.Tensor:
        """The images as the model takes them, still on the CPU (safe off the main thread)."""
        from llava.mm_utils import process_images

        images = [open_rgb(p) for p in paths]
        args = Namespace(image_aspect_ratio="pad")
        return process_images(images, self.image_processor, args).to(dtype=self.dtype)

    def _images(self, paths: list[str]) -> torch.Tensor | None:
        if not paths:
            return None
        return self.preprocess_images(paths).to(self.device)

    def _generate(self, prompt: str, image_tensor: torch.Tensor | None) -> str:
        from llava.constants import IMAGE_TOKEN_INDEX
        from llava.mm_utils import KeywordsStoppingCriteria, tokenizer_image_token

        input_ids = (
            tokenizer_image_token(prompt, self.tokenizer, IMAGE_TOKEN_INDEX, return_tensors="pt")
            .unsqueeze(0)
            .to(self.device)
        )
        stopping = KeywordsStoppingCriteria([self.stop_str], self.tokenizer, input_ids)
        with torch.inference_mode():
            output_ids = self.model.generate(
                input_ids, images=image_tensor, stopping_criteria=[stopping], **self.kwargs
            )
        return self.tokenizer.batch_decode(output_ids, skip_special_tokens=True)[0].strip()

    def generate_inner(self, message, dataset=None):
        content, images = self.concat_tilist(message)
        prompt = self.system_prompt + "USER: " + content + " ASSISTANT: "
        return self._generate(prompt, self._images(images))

    def chat_inner(self, message, dataset=None):
        prompt = self.system_prompt
        images: list[str] = []
        for utter in message:
            prompt += "USER: " if utter["role"] == "user" else "ASSISTANT: "
            content, images_sub = self.concat_tilist(utter["content"])
            prompt += content
            images.extend(images_sub)
            prompt += " " if utter["role"] == "user" else self.stop_str
        assert message[-1]["role"] == "user", message
        prompt += "ASSISTANT: "
        return self._generate(prompt, self._images(images))
