"""The project's worker with answers of real lengths on random weights (``--decoder mix``).

    python bench/mix_worker.py --slot-file slot.json

Random weights never stop, so the matrix bench forced 10 tokens. Here every batch the engine
decodes with its static decoder gets, per row, an answer length drawn from ``length_mix``'s mix
(the row's kind drawn by the seed matrix's kind shares, one row in ``TAIL_EVERY`` a tail row of
256-1024 tokens), and ``length_mix.forced_ends`` ends the row there with eos, in this process
only. The slot file must allow eos (no ``min_new_tokens``, ``max_new_tokens`` above the tail).
Everything else is the product's worker.
"""

from __future__ import annotations

import functools
import os
import random
import sys
from typing import Any

SEED = int(os.environ.get("VLMFLEET_BENCH_MIX_SEED", "0"))


def draw_length(rng: random.Random) -> int:
    """One row's answer tokens before eos: a tail row, or a row of a kind drawn by share."""
    from length_mix import KIND_SHARE, MIX, TAIL_EVERY, TAIL_RANGE

    if rng.random() < 1 / TAIL_EVERY:
        return rng.randint(*TAIL_RANGE)
    kind = rng.choices(list(KIND_SHARE), weights=list(KIND_SHARE.values()))[0]
    lengths = MIX[kind]["lengths"]
    return rng.choices(list(lengths), weights=list(lengths.values()))[0]


def use_mix() -> None:
    import torch
    from length_mix import forced_ends
    from vlmfleet.families import llava_static

    rng = random.Random(SEED)
    drawn: dict[str, Any] = {}
    forced_ends(llava_static, drawn)
    generate = llava_static.generate

    @functools.wraps(generate)
    def drawing(model: Any, input_ids: Any, *args: Any, **kwargs: Any) -> Any:
        lengths = [draw_length(rng) for _ in range(int(input_ids.shape[0]))]
        drawn["lengths"] = torch.tensor(lengths, device=input_ids.device)
        return generate(model, input_ids, *args, **kwargs)

    llava_static.generate = drawing


def main(argv: list[str] | None = None) -> int:
    use_mix()
    from vlmfleet import worker

    return worker.main(argv)


if __name__ == "__main__":
    sys.exit(main())
