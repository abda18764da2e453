"""The project's worker with every row prefilled whole (the bench's A/B of the shared prefixes).

    python bench/whole_prefill_worker.py [--mix] --slot-file slot.json

The engine prefills the rows of a batch that share their image and prompt start (MMBench's
rotations) once a group (``llava_batched``, ``BatchPolicy.share_prefixes``); here every slot's
policy has ``share_prefixes`` off, as the engine had before, so batches are formed shortest
prompt first and each row is prefilled whole (each benchmark's record then counts no
``samples_prefix_shared``). With ``--mix`` the answers end at the length mix's lengths as
``bench/mix_worker.py`` ends them (the A/B at real answer lengths: a multiple-choice answer is 1-2
tokens, so a batch's time is mostly its prefill). Everything else is the product's worker.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any


def use_whole_prefills() -> None:
    from vlmfleet.families import llava_batched

    policy_for = llava_batched.policy_for

    def whole(model: Any, slot: Any, decoder: Any = llava_batched.GENERATE) -> Any:
        return dataclasses.replace(policy_for(model, slot, decoder), share_prefixes=False)

    llava_batched.policy_for = whole


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--mix" in argv:
        argv.remove("--mix")
        from mix_worker import use_mix

        use_mix()
    use_whole_prefills()
    from vlmfleet import worker

    return worker.main(argv)


if __name__ == "__main__":
    sys.exit(main())
