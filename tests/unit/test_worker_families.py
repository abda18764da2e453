"""The family registry (vlmfleet.families) and the llava family's torch-free parts."""

from __future__ import annotations

from pathlib import Path

import pytest
from vlmfleet import families
from vlmfleet.contract import Slot
from vlmfleet.families import FamilyError, family, generation_settings


def slot(**change: object) -> Slot:
    base = {
        "run_id": "r",
        "host": "h",
        "slot": "gpu0",
        "device": "cuda",
        "smoke": False,
        "limit": None,
        "judge": "exact_matching",
        "units": (),
        "path": Path("outputs/r/h/gpu0/slot.json"),
    }
    return Slot(**(base | change))


def test_a_known_family_resolves_to_its_module_with_the_interface() -> None:
    llava = family("llava")
    for name in ("load", "batched", "prepare_samples", "generate_queue"):
        assert callable(getattr(llava, name)), name


@pytest.mark.parametrize("name", ["internvl", "minicpm", "cogvlm", "llava_batched"])
def test_an_unknown_family_names_the_known_ones(name: str) -> None:
    with pytest.raises(FamilyError) as err:
        family(name)
    assert str(err.value) == (
        f"model family {name!r} has no module in this image (vlmfleet.families); "
        f"known families: {', '.join(families.FAMILIES)}"
    )


def test_llava_batches_when_the_slot_asks_for_more_than_one_sample() -> None:
    llava = family("llava")
    assert llava.batched(object(), slot(batch_size=8)) is True
    assert llava.batched(object(), slot(batch_size=1)) is False
    assert llava.batched(object(), slot(batch_size="auto")) is True


@pytest.mark.parametrize(
    ("change", "settings"),
    [
        ({}, {}),  # VLMEvalKit's own generation settings
        # Random weights never stop: a smoke run caps the answer unless told otherwise.
        ({"smoke": True}, {"max_new_tokens": families.SMOKE_MAX_NEW_TOKENS}),
        ({"smoke": True, "max_new_tokens": 64}, {"max_new_tokens": 64}),
        (
            {"max_new_tokens": 8, "min_new_tokens": 8},
            {"max_new_tokens": 8, "min_new_tokens": 8},
        ),
    ],
)
def test_generation_settings_follow_the_slot(change: dict, settings: dict) -> None:
    assert generation_settings(slot(**change)) == settings
