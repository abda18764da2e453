"""The llava family: models of VLMEvalKit's ``LLaVA`` class (LLaVA-1.5 7B/13B, ShareGPT4V).

Implements ``vlmfleet.families.Family``. The model object is ``DeviceLLaVA`` (VLMEvalKit's
wrapper with the device as a parameter, ``llava_wrapper``), so one wrapper runs on a GPU and on
a CPU; batched generation is ``llava_batched``. In smoke mode a unit loads a known-answer
checkpoint (``vlmfleet.known_answer``) or a tiny random one (``vlmfleet.tiny_checkpoint``),
both in LLaVA-1.5's on-disk format, from under ``families.smoke_root()``.

Importing this module imports no torch; ``load`` does.
"""

from __future__ import annotations

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
)

NAME = "llava"


def tiny_name(model_path: str) -> str:
    """Folder of a model's tiny checkpoint; LLaVA's builder needs "llava" in the name."""
    base = Path(model_path.rstrip("/")).name
    name = f"{base}-tiny"
    return name if "llava" in name.lower() else f"llava-{name}"


def smoke_model_path(model: str, model_path: str, smoke_checkpoint: str) -> Path:
    """The checkpoint a smoke unit of ``model`` loads, made ready under the smoke root."""
    if smoke_checkpoint.startswith("known-"):
        from vlmfleet.known_answer import checkpoint_name, ensure_known_answer

        skill = smoke_checkpoint.removeprefix("known-")
        return ensure_known_answer(smoke_root() / "models" / checkpoint_name(skill), skill)
    from vlmfleet.tiny_checkpoint import ensure_tiny_llava

    target = smoke_root() / "models" / tiny_name(model_path)
    # Seeded by the model's name: two models of a smoke run get different random weights.
    return ensure_tiny_llava(target, seed=zlib.crc32(model.encode()))


def load(unit: Unit, slot: Slot) -> Any:
    """``DeviceLLaVA`` for ``unit.model`` with VLMEvalKit's own arguments for it (its
    ``supported_VLM`` entry), on the slot's device and with its generation settings."""
    from vlmeval.config import supported_VLM
    from vlmeval.vlm import LLaVA

    from vlmfleet.families.llava_wrapper import DeviceLLaVA

    if unit.checkpoint is not None:
        # A custom model: the user's own LLaVA-format checkpoint, with LLaVA's defaults.
        from vlmfleet.tiny_checkpoint import linked_view

        view = linked_view(Path(unit.checkpoint), custom_models_root() / f"llava-{unit.model}")
        return DeviceLLaVA(model_path=str(view), device=slot.device, **generation_settings(slot))
    if unit.model not in supported_VLM:
        raise FamilyError(f"model {unit.model!r} is not a VLMEvalKit model name")
    factory = supported_VLM[unit.model]
    cls = getattr(factory, "func", factory)
    if not (isinstance(cls, type) and issubclass(cls, LLaVA)):
        raise FamilyError(
            f"model {unit.model} is listed in family {NAME}, but VLMEvalKit builds it with "
            f"{getattr(cls, '__name__', cls)}, not its LLaVA class"
        )
    kwargs = dict(getattr(factory, "keywords", {}) or {})
    # DeviceLLaVA takes the device as its own argument.
    kwargs.pop("device", None)
    kwargs.update(generation_settings(slot))
    if slot.smoke:
        default_path = kwargs.get("model_path", unit.model)
        kwargs["model_path"] = str(
            smoke_model_path(unit.model, default_path, unit.smoke_checkpoint)
        )
    return DeviceLLaVA(device=slot.device, **kwargs)


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
