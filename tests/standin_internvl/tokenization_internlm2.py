"""STAND-IN for InternVL2's tokenization_internlm2.py (tests only, not InternLM2's tokenizer).

A character-level slow tokenizer under the real class name, so that AutoTokenizer loads it as
the remote code the hub repo's tokenizer_config.json names (auto_map). Its vocabulary file has
the real repo's name, tokenizer.model, but holds a JSON list of tokens: InternVL's special
tokens, then printable ASCII; any other character is <unk>.
"""

from __future__ import annotations

import json
import os
from typing import Any, ClassVar

from transformers import PreTrainedTokenizer

SPECIAL = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>"]
VOCAB = SPECIAL + ["\n", "\t"] + [chr(c) for c in range(32, 127)]


class InternLM2Tokenizer(PreTrainedTokenizer):
    vocab_files_names: ClassVar[dict[str, str]] = {"vocab_file": "tokenizer.model"}
    model_input_names: ClassVar[list[str]] = ["input_ids", "attention_mask"]

    def __init__(self, vocab_file: str, **kwargs: Any) -> None:
        with open(vocab_file, encoding="utf-8") as fh:
            self.tokens: list[str] = json.load(fh)
        self.ids = {t: i for i, t in enumerate(self.tokens)}
        kwargs.setdefault("unk_token", "<unk>")
        kwargs.setdefault("bos_token", "<s>")
        kwargs.setdefault("eos_token", "</s>")
        kwargs.setdefault("pad_token", "</s>")
        super().__init__(**kwargs)

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def get_vocab(self) -> dict[str, int]:
        return dict(self.ids)

    def _tokenize(self, text: str, **kwargs: Any) -> list[str]:
        return list(text)

    def _convert_token_to_id(self, token: str) -> int:
        return self.ids.get(token, self.ids["<unk>"])

    def _convert_id_to_token(self, index: int) -> str:
        return self.tokens[index]

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return "".join(tokens)

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None):
        path = os.path.join(save_directory, (filename_prefix or "") + "tokenizer.model")
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(self.tokens, fh)
        return (path,)
