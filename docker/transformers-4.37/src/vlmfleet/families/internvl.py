"""The internvl family: InternVL2-2B and InternVL2-8B through VLMEvalKit's ``InternVLChat``.

Implements ``vlmfleet.families.Family``. The model object is ``DeviceInternVLChat``
(``internvl_wrapper``): VLMEvalKit's own class, so its prompts, dynamic tiling and generation
settings are VLMEvalKit's; it loads the hub repo's own code (``trust_remote_code``) only for
the repo the catalogue names, which VLMEvalKit's ``supported_VLM`` entry must name too. Answers
come from VLMEvalKit's per-sample loop (``batched`` is False): InternVL's ``chat`` answers one
sample per call. No smoke checkpoints exist for the family (the catalogue says so; the
validation step refuses a smoke run of it), so a smoke slot fails its load with that reason.

Importing this module imports no torch; ``load`` does.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Iterator
from typing import Any

from vlmfleet.contract import Slot, Unit
from vlmfleet.families import (
    Answered,
    FamilyError,
    Queued,
    generation_settings,
    vlmevalkit_entry,
)

NAME = "internvl"
log = logging.getLogger("vlmfleet.families.internvl")
# VLMEvalKit's InternVLChat version whose prompts and generation this family runs (InternVL2).
VERSION = "V2.0"
# InternVLChat arguments that leave its plain per-sample path (lmdeploy, best-of-N, chain of
# thought prompts): not run by this family.
UNSUPPORTED = (
    "use_lmdeploy",
    "best_of_n",
    "reward_model_path",
    "use_mpo_prompt",
    "cot_prompt_version",
)


def vlmevalkit_arguments(unit: Unit, slot: Slot) -> tuple[dict[str, Any], str]:
    """The wrapper's keyword arguments (VLMEvalKit's ``supported_VLM`` entry for the model, with
    the slot's generation settings) and the hub id it loads. FamilyError when the entry is not
    InternVLChat of version V2.0 on its plain path, or names another repo than the catalogue's
    ``hf_repo`` (the only repo whose code is trusted)."""
    from vlmeval.vlm import InternVLChat

    if unit.checkpoint is not None:
        raise FamilyError(f"model {unit.model}: family {NAME} loads no checkpoint of your own")
    kwargs = vlmevalkit_entry(unit.model, NAME, InternVLChat)
    hub_path = str(kwargs.pop("model_path", ""))
    version = kwargs.get("version")
    odd = [k for k in UNSUPPORTED if kwargs.get(k) not in (None, False, 1, "v1")]
    if version != VERSION or odd:
        raise FamilyError(
            f"model {unit.model}: VLMEvalKit's entry asks for InternVLChat version {version!r}"
            f"{' with ' + ', '.join(odd) if odd else ''}; family {NAME} runs version {VERSION} "
            "on VLMEvalKit's plain per-sample path only"
        )
    if unit.hf_repo is None or hub_path != unit.hf_repo:
        raise FamilyError(
            f"model {unit.model}: the catalogue's hf_repo {unit.hf_repo!r} is not the repo "
            f"VLMEvalKit loads for it ({hub_path!r}); only the catalogue's repos run hub code "
            "(trust_remote_code), so correct the catalogue entry"
        )
    for key in UNSUPPORTED:
        kwargs.pop(key, None)
    kwargs.update(generation_settings(slot))
    return kwargs, hub_path


def check_cache(model: str, repo: str) -> None:
    """With downloads off, FamilyError naming every file of ``repo`` the load reads (remote
    code, tokenizer, weights) that the Hugging Face cache lacks; online, the hub fills them."""
    from vlmfleet.families.hub_files import downloads_off, missing_files

    if not downloads_off():
        return
    missing = missing_files(repo)
    if missing:
        raise FamilyError(
            f"model {model}: downloads are off (HF_HUB_OFFLINE) and the Hugging Face cache "
            f"lacks these files of {repo}: {', '.join(missing)}"
        )


def load(unit: Unit, slot: Slot) -> Any:
    """``DeviceInternVLChat`` for ``unit.model``: VLMEvalKit's own arguments for it, the slot's
    device (spread over the slot's GPUs as VLMEvalKit spreads it) and generation settings."""
    from vlmfleet.stack import import_stack

    if slot.smoke:
        raise FamilyError(
            f"smoke mode has no checkpoint for {unit.model!r} (family {NAME}); "
            "run it with smoke=false"
        )
    import_stack()
    kwargs, hub_path = vlmevalkit_arguments(unit, slot)
    check_cache(unit.model, hub_path)
    from vlmfleet.families.internvl_wrapper import DeviceInternVLChat

    model = DeviceInternVLChat(hub_path, device=slot.device, **kwargs)
    placed = sorted({str(d) for d in (getattr(model.model, "hf_device_map", None) or {}).values()})
    log.info(
        "%s: hub code of %s, attention %s, %s on %s",
        unit.model,
        hub_path,
        model.attention,
        next(model.model.parameters()).dtype,
        f"GPUs {', '.join(placed)}" if placed else slot.device,
    )
    return model


def batched(model: Any, slot: Slot) -> bool:
    """Never: VLMEvalKit's per-sample loop answers (InternVL's ``chat`` takes one sample)."""
    return False


def prepare_samples(model: Any, dataset: Any) -> Any:
    raise FamilyError(f"family {NAME} has no batched engine")


def generate_queue(
    model: Any, slot: Slot, incoming: queue.Queue[Queued | None]
) -> Iterator[Answered]:
    raise FamilyError(f"family {NAME} has no batched engine")
