"""The process's machine-learning stack: torch and VLMEvalKit imported once, every RNG seeded.

Shared by the worker's pipeline and the agreement tool, which must seed and import exactly as
the worker does for their answers to be comparable.
"""

from __future__ import annotations

import logging
import os
import random
import sys
import time

log = logging.getLogger("vlmfleet.stack")
SEED = 0


def import_torch() -> None:
    """torch, with the allocator's settings in place before anything initialises CUDA."""
    # Slots sharing a GPU (eval_gpu_slots) each keep a caching allocator: without expandable
    # segments a 13B slot beside a 7B one ran out of memory on multi-image benchmarks
    # (fragmentation). Must be set before torch initialises CUDA; a value given wins.
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    import torch  # noqa: F401


def import_stack() -> None:
    """Import torch and VLMEvalKit's model table (``vlmeval.config``, which imports every model
    wrapper; the dataset modules come one by one as the benchmarks are prepared), once and timed
    on its own: on a GPU machine this takes seconds, so the llava family has its weights read
    ahead meanwhile."""
    if "vlmeval.config" in sys.modules:
        return
    t0 = time.monotonic()
    import_torch()
    import vlmeval.config  # noqa: F401

    log.info("imported torch and VLMEvalKit in %.1f s", time.monotonic() - t0)


def seed_everything(seed: int = SEED) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def cap_gpu_share(shared_by: int) -> list[float]:
    """Each visible GPU's allocator capped at one of ``shared_by`` slots' share of it
    (``batch_memory.allocator_share``); the fractions set, one per GPU (none without CUDA)."""
    import torch

    from vlmfleet.families.batch_memory import allocator_share

    fractions = []
    for index in range(torch.cuda.device_count()):
        fraction = allocator_share(torch.cuda.get_device_properties(index).total_memory, shared_by)
        torch.cuda.set_per_process_memory_fraction(fraction, index)
        fractions.append(fraction)
    return fractions


def empty_cuda_cache() -> None:
    """Hand a finished model's cached GPU memory back before the next model loads."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
