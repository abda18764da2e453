"""The project's worker with answers of real lengths on random weights (``--decoder mix``).

    python bench/mix_worker.py --slot-file slot.json

Random weights never stop, so the matrix bench forced 10 tokens. Here every row the engine
decodes with its static decoder gets an answer length drawn from ``length_mix``'s mix (the row's
kind drawn by the seed matrix's kind shares, one row in ``TAIL_EVERY`` a tail row of 256-1024
tokens), and ``length_mix.forced_ends`` ends the row there with eos, in this process only. The
draw is the sample's own (seeded by ``VLMFLEET_BENCH_MIX_SEED``, its benchmark and its index),
not its batch's: a sample gets the same length whatever batch it lands in, so two versions of the
engine decode the same answers, and a row the engine decodes again (deferred) has the length it
had. The slot file must allow eos (no ``min_new_tokens``, ``max_new_tokens`` above the tail).
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
    """Each batch's samples named on its inputs (``batch_inputs``), and their drawn lengths
    handed to the decoder's stopping rule before the batch decodes (``generate_inputs``)."""
    import torch
    from length_mix import forced_ends
    from vlmfleet.families import llava_batched, llava_static

    drawn: dict[str, Any] = {}
    forced_ends(llava_static, drawn)
    batch_inputs = llava_batched.batch_inputs
    generate_inputs = llava_batched.generate_inputs

    @functools.wraps(batch_inputs)
    def naming(model: Any, samples: Any, *args: Any) -> Any:
        inputs = batch_inputs(model, samples, *args)
        inputs.mix_samples = [f"{s.key}:{s.index}" for s in samples]
        return inputs

    @functools.wraps(generate_inputs)
    def drawing(model: Any, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        lengths = [draw_length(random.Random(f"{SEED}:{name}")) for name in inputs.mix_samples]
        drawn["lengths"] = torch.tensor(lengths, device=model.device)
        return generate_inputs(model, inputs, *args, **kwargs)

    llava_batched.batch_inputs = naming
    llava_batched.generate_inputs = drawing


def use_gpu_of(gib: float) -> None:
    """Batches sized as on a GPU of ``gib`` GiB (``VLMFLEET_BENCH_GPU_GIB``; this process only):
    ``torch.cuda.mem_get_info``, which the engine's sizing reads (``llava_batched.cuda_memory``),
    reports that total and what would be free of it; the allocator is not capped. So a GPU of
    more memory (an H200) sizes the batches an H100 (80 GiB) would, where the deferred rows'
    batch depends on how many rows a batch sized for max_new_tokens holds."""
    import torch

    mem_get_info = torch.cuda.mem_get_info
    total = int(gib * 2**30)

    @functools.wraps(mem_get_info)
    def smaller(device: Any = None) -> tuple[int, int]:
        free, real = mem_get_info(device)
        return max(0, free - (real - total)), total

    torch.cuda.mem_get_info = smaller


def keep_ended_rows() -> None:
    """Ended rows stay in their batch until its last row ends (``VLMFLEET_BENCH_KEEP_ENDED_ROWS``;
    this process only), as ``length_mix``'s ``today`` arm has them: with an engine from before
    the reserve (batches sized for max_new_tokens), the decoder as it was when issue 28 was
    filed, before rows could leave a batch."""
    from vlmfleet.families import llava_static

    llava_static.worth_compacting = lambda live, rows, steps: False


def main(argv: list[str] | None = None) -> int:
    use_mix()
    if os.environ.get("VLMFLEET_BENCH_KEEP_ENDED_ROWS"):
        keep_ended_rows()
    if os.environ.get("VLMFLEET_BENCH_GPU_GIB"):
        use_gpu_of(float(os.environ["VLMFLEET_BENCH_GPU_GIB"]))
    from vlmfleet import worker

    return worker.main(argv)


if __name__ == "__main__":
    sys.exit(main())
