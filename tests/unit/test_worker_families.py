"""The family registry (vlmfleet.families) and the llava family's torch-free parts."""

from __future__ import annotations

from pathlib import Path

import pytest
from vlmfleet import families
from vlmfleet.contract import Slot, Unit
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


class LoadStandIns:
    """Stand-ins for what the llava family's load reaches (VLMEvalKit's modules, LLaVA's
    builder, the wrapper), so its order of work shows without torch: the weights' load and
    VLMEvalKit's import each wait at a barrier for the other, which only a concurrent load
    passes."""

    ENTRY_PATH = "liuhaotian/llava-v1.5-7b"

    def __init__(self, monkeypatch: pytest.MonkeyPatch, overlap: bool) -> None:
        import functools
        import sys
        import threading
        import types

        from vlmfleet import stack

        self.calls: list[str] = []
        self.wrapped: dict[str, object] = {}
        barrier = threading.Barrier(2, timeout=10) if overlap else None

        class LLaVA:
            pass

        vlm = types.ModuleType("vlmeval.vlm")
        vlm.LLaVA = LLaVA  # type: ignore[attr-defined]
        config = types.ModuleType("vlmeval.config")
        config.supported_VLM = {  # type: ignore[attr-defined]
            "llava_v1.5_7b": functools.partial(LLaVA, model_path=self.ENTRY_PATH, temperature=0)
        }

        def import_stack() -> None:
            self.calls.append("import started")
            if barrier is not None:
                barrier.wait()
            monkeypatch.setitem(sys.modules, "vlmeval.vlm", vlm)
            monkeypatch.setitem(sys.modules, "vlmeval.config", config)
            self.calls.append("import done")

        def load_weights(path: str, device: str) -> str:
            self.calls.append(f"load {path} on {device}")
            if barrier is not None:
                barrier.wait()
            return f"weights of {path}"

        def device_llava(**kwargs: object) -> dict[str, object]:
            self.wrapped = kwargs
            return kwargs

        weights = types.ModuleType("vlmfleet.families.llava_weights")
        weights.load_weights = load_weights  # type: ignore[attr-defined]
        wrapper = types.ModuleType("vlmfleet.families.llava_wrapper")
        wrapper.DeviceLLaVA = device_llava  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "vlmfleet.families.llava_weights", weights)
        monkeypatch.setitem(sys.modules, "vlmfleet.families.llava_wrapper", wrapper)
        monkeypatch.setattr(families, "llava_weights", weights, raising=False)
        monkeypatch.setattr(families, "llava_wrapper", wrapper, raising=False)
        monkeypatch.setattr(stack, "import_stack", import_stack)
        monkeypatch.setattr(stack, "import_torch", lambda: None)


def unit(**change: object) -> Unit:
    return Unit(**({"model": "llava_v1.5_7b", "family": "llava", "benchmarks": ()} | change))


def test_the_weights_load_while_vlmevalkit_is_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = LoadStandIns(monkeypatch, overlap=True)
    repo = LoadStandIns.ENTRY_PATH
    model = family("llava").load(unit(hf_repo=repo), slot(max_new_tokens=8))
    assert sorted(seen.calls[:2]) == sorted(["import started", f"load {repo} on cuda"])
    # VLMEvalKit's own arguments for the model, the slot's settings, the weights loaded early.
    assert model == {
        "model_path": repo,
        "device": "cuda",
        "weights": f"weights of {repo}",
        "temperature": 0,
        "max_new_tokens": 8,
    }


def test_a_catalogue_repo_that_is_not_vlmevalkits_fails_the_load_naming_both(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    LoadStandIns(monkeypatch, overlap=True)
    with pytest.raises(FamilyError) as err:
        family("llava").load(unit(hf_repo="someone/llava-v1.5-7b"), slot())
    assert str(err.value) == (
        "model llava_v1.5_7b: the catalogue's hf_repo 'someone/llava-v1.5-7b' is not the repo "
        "VLMEvalKit loads for it ('liuhaotian/llava-v1.5-7b'); correct the catalogue entry"
    )


def test_without_a_hub_repo_the_model_loads_from_vlmevalkits_entry_after_its_import(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen = LoadStandIns(monkeypatch, overlap=False)
    model = family("llava").load(unit(), slot())
    assert seen.calls == ["import started", "import done"]
    # The wrapper loads the weights itself, from the path VLMEvalKit's entry names.
    assert model == {
        "model_path": LoadStandIns.ENTRY_PATH,
        "device": "cuda",
        "weights": None,
        "temperature": 0,
    }
