"""STAND-IN for InternVL2's conversation.py (tests only): the internlm2-chat template's shape.

InternVL2's template wraps turns in <|im_start|>role ... <|im_end|> (separator style MPT); the
stand-in keeps that shape with a system message of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SYSTEM_MESSAGE = "You are the vlm-fleet InternVL stand-in."


@dataclass
class Conversation:
    system_message: str = SYSTEM_MESSAGE
    roles: tuple[str, str] = ("<|im_start|>user\n", "<|im_start|>assistant\n")
    sep: str = "<|im_end|>"
    messages: list[list[str | None]] = field(default_factory=list)

    def append_message(self, role: str, message: str | None) -> None:
        self.messages.append([role, message])

    def get_prompt(self) -> str:
        out = f"<|im_start|>system\n{self.system_message}{self.sep}"
        for role, message in self.messages:
            out += f"{role}{message}{self.sep}" if message else str(role)
        return out


def get_conv_template(name: str) -> Conversation:
    if name != "internlm2-chat":
        raise KeyError(f"the stand-in has the internlm2-chat template only, not {name!r}")
    return Conversation()
