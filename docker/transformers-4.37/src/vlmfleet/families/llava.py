"""The llava family: models of VLMEvalKit's ``LLaVA`` class (LLaVA-1.5 7B/13B, ShareGPT4V).

Implements ``vlmfleet.families.Family``. The model object is ``DeviceLLaVA`` (VLMEvalKit's
wrapper with the device as a parameter, ``llava_wrapper``), so one wrapper runs on a GPU and on
a CPU; batched generation is ``llava_batched``. In smoke mode a unit loads a known-answer
checkpoint (``vlmfleet.known_answer_checkpoints``) or a tiny random one
(``vlmfleet.tiny_checkpoint``), both in LLaVA-1.5's on-disk format, from under
``families.smoke_root()``.

Importing this module imports no torch; ``load`` does.
"""

from __future__ import annotations

import logging
import queue
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vlmfleet.contract import AUTO_BATCH, Slot, Unit
from vlmfleet.families import (
    Answered,
    FamilyError,
    Queued,
    custom_models_root,
    generation_settings,
    smoke_root,
    vlmevalkit_entry,
)

NAME = "llava"
log = logging.getLogger("vlmfleet.families.llava")


def tiny_name(model_path: str) -> str:
    """Folder of a model's tiny checkpoint; LLaVA's builder needs "llava" in the name."""
    base = Path(model_path.rstrip("/")).name
    name = f"{base}-tiny"
    return name if "llava" in name.lower() else f"llava-{name}"


def smoke_model_path(model: str, model_path: str, smoke_checkpoint: str) -> Path:
    """The checkpoint a smoke unit of ``model`` loads, made ready under the smoke root."""
    if smoke_checkpoint.startswith("known-"):
        from vlmfleet.known_answer_checkpoints import checkpoint_name, ensure_known_answer

        skill = smoke_checkpoint.removeprefix("known-")
        return ensure_known_answer(smoke_root() / "models" / checkpoint_name(skill), skill)
    from vlmfleet.tiny_checkpoint import ensure_tiny_llava

    target = smoke_root() / "models" / tiny_name(model_path)
    # Seeded by the model's name: two models of a smoke run get different random weights.
    return ensure_tiny_llava(target, seed=zlib.crc32(model.encode()))


def model_path(unit: Unit, slot: Slot, hub_path: str | None) -> str | None:
    """The folder or hub id the unit loads (a custom checkpoint's view, a smoke checkpoint, or
    ``hub_path``), made ready; None while it depends on a hub path not known yet."""
    if unit.checkpoint is not None:
        # A custom model: the user's own LLaVA-format checkpoint.
        from vlmfleet.tiny_checkpoint import linked_view

        return str(linked_view(Path(unit.checkpoint), custom_models_root() / f"llava-{unit.model}"))
    known = slot.smoke and unit.smoke_checkpoint.startswith("known-")
    if hub_path is None and not known:
        return None
    if slot.smoke:
        return str(smoke_model_path(unit.model, hub_path or unit.model, unit.smoke_checkpoint))
    return hub_path


def vlmevalkit_arguments(unit: Unit, slot: Slot) -> tuple[dict[str, Any], str | None]:
    """The wrapper's keyword arguments (VLMEvalKit's own for the model: its ``supported_VLM``
    entry, with the slot's generation settings) and the hub id that entry loads; a custom model
    has no entry, only the settings. FamilyError when the entry is not the LLaVA class, or
    names another repo than the slot file's ``hf_repo``."""
    if unit.checkpoint is not None:
        return generation_settings(slot), None
    from vlmeval.vlm import LLaVA

    kwargs = vlmevalkit_entry(unit.model, NAME, LLaVA)
    # DeviceLLaVA takes the device as its own argument.
    kwargs.pop("device", None)
    kwargs.update(generation_settings(slot))
    hub_path = str(kwargs.pop("model_path", unit.model))
    if unit.hf_repo is not None and hub_path != unit.hf_repo:
        raise FamilyError(
            f"model {unit.model}: the catalogue's hf_repo {unit.hf_repo!r} is not the repo "
            f"VLMEvalKit loads for it ({hub_path!r}); correct the catalogue entry"
        )
    return kwargs, hub_path


def weight_folder(path: str | None) -> Path | None:
    """The local folder of ``path``'s files: the folder itself, or a hub id's snapshot in the
    Hugging Face cache; None when it is not there (the load then fetches or fails)."""
    if path is None:
        return None
    if Path(path).is_dir():
        return Path(path)
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(path, "config.json")
    return Path(found).parent if isinstance(found, str) else None


def load(unit: Unit, slot: Slot) -> Any:
    """``DeviceLLaVA`` for ``unit.model`` with VLMEvalKit's own arguments for it, on the slot's
    device and with its generation settings. When the path is known without VLMEvalKit (a
    custom or smoke checkpoint, or the slot file's ``hf_repo``), the kernel reads its weight
    files into the page cache while VLMEvalKit is imported (``vlmfleet.prefetch``), and the
    load reads them from memory."""
    from vlmfleet.prefetch import Prefetch
    from vlmfleet.stack import import_stack

    early = model_path(unit, slot, unit.hf_repo)
    with Prefetch(weight_folder(early)) as reading:
        if reading.files:
            log.info(
                "reading the weights of %s (files: %d) while VLMEvalKit is imported",
                unit.model,
                len(reading.files),
            )
        if reading.skipped:
            log.info(
                "not reading ahead %d weight files of %s: more than half the available memory",
                reading.skipped,
                unit.model,
            )
        import_stack()
        kwargs, hub_path = vlmevalkit_arguments(unit, slot)
        path = early or model_path(unit, slot, hub_path)
        from vlmfleet.families.llava_wrapper import DeviceLLaVA

        model = DeviceLLaVA(model_path=str(path), device=slot.device, **kwargs)
    if reading.files:
        log.info(
            "read-ahead of %.1f GiB of %s asked in %.1f s",
            reading.read / 2**30,
            unit.model,
            reading.seconds,
        )
    return model


def batched(model: Any, slot: Slot) -> bool:
    """Batched unless the slot asks for one sample per call: every llava model is a
    DeviceLLaVA, which has the interface ``llava_batched`` needs."""
    return slot.batch_size == AUTO_BATCH or slot.batch_size > 1


def prepare_samples(model: Any, dataset: Any) -> Any:
    from vlmfleet.families.llava_batched import prepare_samples as prepare

    return prepare(model, dataset)


def generate_queue(
    model: Any, slot: Slot, incoming: queue.Queue[Queued | None]
) -> Iterator[Answered]:
    from vlmfleet.families.llava_batched import generate_queue as generate

    return generate(model, slot, incoming)
