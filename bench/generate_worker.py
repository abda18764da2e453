"""The project's worker with every batch decoded by transformers' ``generate`` (the bench's A/B
of the engine's static KV cache decoder).

    python bench/generate_worker.py --slot-file slot.json

The engine picks its decoder once per slot (``llava_batched.decoder_for``); here that choice is
always ``generate``, the decoder the engine used before the static cache, and each benchmark's
record says so (``decoder: generate``). Everything else is the product's worker.
"""

from __future__ import annotations

import sys
from typing import Any


def use_generate() -> None:
    from vlmfleet.families import llava_batched

    def decoder_for(model: Any) -> llava_batched.Decoder:
        return llava_batched.GENERATE

    llava_batched.decoder_for = decoder_for


def main(argv: list[str] | None = None) -> int:
    use_generate()
    from vlmfleet import worker

    return worker.main(argv)


if __name__ == "__main__":
    sys.exit(main())
