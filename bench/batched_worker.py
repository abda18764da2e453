"""The project's worker with batched inference and a chosen attention implementation.

    python bench/batched_worker.py --batch-size 10 [--attn sdpa|eager] --slot-file slot.json

With --batch-size 1 the worker runs exactly as ``python -m vlmfleet.worker`` (VLMEvalKit's own
per-sample loop), which is how the seed arm runs.

Runs ``vlmfleet.worker`` unchanged except that each combination's inference goes through
``vlmfleet.batched.infer_batched`` (the worker calls ``vlmeval.inference.infer_data_job`` by
module attribute, so replacing that attribute is the whole hook) until the slot file carries a
``batch_size`` field of its own (see bench/README.md for the worker patch).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any


def install(batch_size: int, attn: str | None) -> None:
    import vlmeval.inference as inference
    from vlmfleet.batched import check_batch_size, infer_batched

    check_batch_size(batch_size)
    if batch_size == 1:
        # VLMEvalKit's own loop, untouched (vlmeval is imported here all the same, so that both
        # arms' logs attribute import time alike: before the worker's "loading model" line).
        return

    def infer_data_job(model: Any, work_dir: str, model_name: str, dataset: Any, **_: Any) -> Any:
        infer_batched(model, work_dir, model_name, dataset, batch_size)
        return model

    inference.infer_data_job = infer_data_job
    if attn:
        import llava.model.builder as builder

        original = builder.load_pretrained_model

        def load_pretrained_model(*args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("attn_implementation", attn)
            return original(*args, **kwargs)

        builder.load_pretrained_model = load_pretrained_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--attn", choices=("sdpa", "eager"), default=None)
    args, rest = parser.parse_known_args(argv)
    from vlmfleet import worker

    # Before vlmeval's import configures the root logger, or the worker's INFO lines (model
    # loads, which the bench counts) are lost.
    logging.basicConfig(level=logging.INFO, format=worker.LOG_FORMAT, stream=sys.stderr)
    install(args.batch_size, args.attn)

    return worker.main(rest)


if __name__ == "__main__":
    sys.exit(main())
