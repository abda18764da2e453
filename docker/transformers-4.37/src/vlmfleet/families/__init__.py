"""Model families: the slot file's ``family`` of a unit names the module that loads its model.

One module per family, ``vlmfleet.families.<family>``, listed in ``FAMILIES``; each provides
the ``Family`` interface below. The worker's pipeline is the same for every family: it loads
the unit's model once (``load``), asks whether the family's batched engine generates its answers
(``batched``), and if so prepares each dataset's samples off the main thread
(``prepare_samples``) and hands them to the engine, which answers the samples of all of the
unit's benchmarks as one queue (``generate_queue``); otherwise VLMEvalKit's own per-sample loop
(``vlmeval.inference.infer_data_job``) runs, benchmark by benchmark.

Families the catalogue knows but this image has no module for (minicpm, cogvlm) are
refused by ``family``, naming the ones it has; the catalogue marks them ``refused``, so the
controller's validation step stops them, with the reason, before anything starts.
Importing this package imports no torch.
"""

from __future__ import annotations

import importlib
import os
import queue
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, cast

from vlmfleet.contract import SMOKE_MAX_NEW_TOKENS, Slot, Unit

# Family name -> module under vlmfleet.families. A new family: its module, and a line here.
FAMILIES = {"llava": "vlmfleet.families.llava", "internvl": "vlmfleet.families.internvl"}


class FamilyError(RuntimeError):
    """A unit's model cannot be loaded by its family; the message is the records' reason."""


class InferenceError(RuntimeError):
    """Inference gave up; ``record`` holds what it tried, for the status record's extras."""

    def __init__(self, message: str, record: dict[str, Any]) -> None:
        super().__init__(message)
        self.record = record


@dataclass(frozen=True)
class Queued:
    """One benchmark's prepared samples entering a slot's queue: ``key`` names it in the
    answers, ``dataset`` is VLMEvalKit's dataset object, ``prepared`` what ``prepare_samples``
    made of it."""

    key: str
    dataset: Any
    prepared: Any


@dataclass(frozen=True)
class Answered:
    """A benchmark whose last sample is done: every row's answer by VLMEvalKit's ``index``, or
    the error that stopped it; ``record`` holds the fields the engine adds to its status record
    (e.g. the llava engine's ``batch_sizes``, ``batch_size_used`` and ``batch_retries``)."""

    key: str
    answers: dict[Any, str]
    record: dict[str, Any] = field(default_factory=dict)
    error: BaseException | None = None


class Family(Protocol):
    """What a family module provides (module-level functions)."""

    def load(self, unit: Unit, slot: Slot) -> Any:
        """VLMEvalKit's model object for ``unit.model`` on ``slot.device``, with the slot's
        generation settings (``generation_settings``); in smoke mode on the unit's smoke
        checkpoint. Imports the stack itself (``vlmfleet.stack.import_stack``), so that what
        the load does not need is imported while it loads. Raises on failure (the worker
        records every benchmark of the unit failed)."""
        ...

    def batched(self, model: Any, slot: Slot) -> bool:
        """Whether ``model``'s answers go through the family's batched engine at
        ``slot.batch_size`` (False: VLMEvalKit's own per-sample loop, benchmark by benchmark)."""
        ...

    def prepare_samples(self, model: Any, dataset: Any) -> Any:
        """The CPU part of batched generation for ``dataset`` (prompts, images); safe on a
        thread other than the one generating. Called only when ``batched`` is True."""
        ...

    def generate_queue(
        self, model: Any, slot: Slot, incoming: queue.Queue[Queued | None]
    ) -> Iterator[Answered]:
        """Answer the samples of every benchmark put on ``incoming`` (None: no more) as one
        queue, batches crossing benchmark boundaries, and yield each benchmark as soon as its
        last sample is done. A benchmark's failure (its batch raised, or out of GPU memory at
        batch 1) is its ``Answered.error``; the others go on."""
        ...


def family(name: str) -> Family:
    """The module of family ``name``; FamilyError naming the known families if there is none."""
    if name not in FAMILIES:
        raise FamilyError(
            f"model family {name!r} has no module in this image (vlmfleet.families); "
            f"known families: {', '.join(FAMILIES)}"
        )
    module: ModuleType = importlib.import_module(FAMILIES[name])
    return cast(Family, module)


def generation_settings(slot: Slot) -> dict[str, int]:
    """The slot's caps on the answer length, as VLMEvalKit's model classes take them: nothing
    means the model class's own settings."""
    settings = {}
    max_new = slot.max_new_tokens or (SMOKE_MAX_NEW_TOKENS if slot.smoke else None)
    if max_new:
        settings["max_new_tokens"] = max_new
    if slot.min_new_tokens:
        settings["min_new_tokens"] = slot.min_new_tokens
    return settings


def vlmevalkit_entry(model: str, family_name: str, base: type) -> dict[str, Any]:
    """The keyword arguments of VLMEvalKit's ``supported_VLM`` entry for ``model``, which must
    build ``base`` (the VLMEvalKit class the family wraps) or a subclass of it."""
    from vlmeval.config import supported_VLM

    if model not in supported_VLM:
        raise FamilyError(f"model {model!r} is not a VLMEvalKit model name")
    factory = supported_VLM[model]
    cls = getattr(factory, "func", factory)
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise FamilyError(
            f"model {model} is listed in family {family_name}, but VLMEvalKit builds it with "
            f"{getattr(cls, '__name__', cls)}, not its {base.__name__} class"
        )
    return dict(getattr(factory, "keywords", {}) or {})


def custom_models_root() -> Path:
    """Where the worker keeps its views of custom checkpoints: $HF_HOME/custom-models."""
    hf_home = os.environ.get("HF_HOME") or str(Path.home() / ".cache" / "huggingface")
    return Path(hf_home) / "custom-models"


def smoke_root() -> Path:
    """Where smoke checkpoints live: $VLMFLEET_SMOKE_ROOT, else $HF_HOME/smoke (/cache/smoke)."""
    if os.environ.get("VLMFLEET_SMOKE_ROOT"):
        return Path(os.environ["VLMFLEET_SMOKE_ROOT"])
    hf_home = os.environ.get("HF_HOME") or str(Path.home() / ".cache" / "huggingface")
    return Path(hf_home) / "smoke"
