"""The project's worker with LLaVA's attention implementation forced (the bench's attn arm).

    python bench/attn_worker.py --attn eager --slot-file slot.json

transformers 4.37 picks SDPA for Llama by itself; LLaVA's builder passes extra keyword arguments
on to ``from_pretrained``, so setting ``attn_implementation`` there is the whole hook.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def force_attention(attn: str) -> None:
    import llava.model.builder as builder

    original = builder.load_pretrained_model

    def load_pretrained_model(*args: Any, **kwargs: Any) -> Any:
        kwargs["attn_implementation"] = attn
        return original(*args, **kwargs)

    builder.load_pretrained_model = load_pretrained_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attn", choices=("sdpa", "eager"), required=True)
    args, rest = parser.parse_known_args(argv)
    force_attention(args.attn)
    from vlmfleet import worker

    return worker.main(rest)


if __name__ == "__main__":
    sys.exit(main())
