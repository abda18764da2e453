"""The family registry (vlmfleet.families) and the llava family's torch-free parts."""

from __future__ import annotations

from pathlib import Path

import pytest
from vlmfleet import families
from vlmfleet.contract import SMOKE_MAX_NEW_TOKENS, Slot, Unit
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


def test_internvl_resolves_to_its_module_answering_per_sample() -> None:
    internvl = family("internvl")
    for name in ("load", "batched", "prepare_samples", "generate_queue"):
        assert callable(getattr(internvl, name)), name
    # VLMEvalKit's per-sample loop answers, whatever batch size the slot asks for.
    assert internvl.batched(object(), slot(batch_size="auto")) is False


@pytest.mark.parametrize("name", ["minicpm", "cogvlm", "llava_batched", "internvl_wrapper"])
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
        ({"smoke": True}, {"max_new_tokens": SMOKE_MAX_NEW_TOKENS}),
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
    """Stand-ins for what the llava family's load reaches (VLMEvalKit's modules, the wrapper),
    so its order of work shows without torch; the weight files are read for real. With
    ``overlap`` the prefetch's read and VLMEvalKit's import each wait at a barrier for the
    other, which only a read running during the import passes."""

    ENTRY_PATH = "liuhaotian/llava-v1.5-7b"

    def __init__(self, monkeypatch: pytest.MonkeyPatch, overlap: bool) -> None:
        import functools
        import sys
        import threading
        import types

        from vlmfleet import prefetch, stack

        self.calls: list[str] = []
        self.read: list[list[str]] = []
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
            self.calls.append("import")
            if barrier is not None:
                barrier.wait()
            monkeypatch.setitem(sys.modules, "vlmeval.vlm", vlm)
            monkeypatch.setitem(sys.modules, "vlmeval.config", config)

        real_read = prefetch.read_ahead

        def read_ahead(files: list[Path], stop: threading.Event) -> int:
            self.read.append([f.name for f in files])
            if barrier is not None:
                barrier.wait()
            return real_read(files, stop)

        def device_llava(**kwargs: object) -> dict[str, object]:
            self.calls.append("load")
            return kwargs

        wrapper = types.ModuleType("vlmfleet.families.llava_wrapper")
        wrapper.DeviceLLaVA = device_llava  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "vlmfleet.families.llava_wrapper", wrapper)
        monkeypatch.setattr(families, "llava_wrapper", wrapper, raising=False)
        monkeypatch.setattr(stack, "import_stack", import_stack)
        monkeypatch.setattr(prefetch, "read_ahead", read_ahead)


def unit(**change: object) -> Unit:
    return Unit(**({"model": "llava_v1.5_7b", "family": "llava", "benchmarks": ()} | change))


def cached_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, repo: str) -> Path:
    """``repo``'s snapshot folder, found by a stand-in for huggingface_hub's cache lookup
    (``try_to_load_from_cache``; the real one runs in tests/e2e/test_hub_ids_offline.py)."""
    import sys
    import types

    snapshot = tmp_path / "hub" / f"models--{repo.replace('/', '--')}" / "snapshots" / "abc123"
    (snapshot / "vision_tower").mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (snapshot / "model-00001-of-00002.safetensors").write_bytes(b"w" * 3000)
    (snapshot / "model-00002-of-00002.safetensors").write_bytes(b"w" * 1000)
    (snapshot / "vision_tower" / "model.safetensors").write_bytes(b"v" * 500)
    hub = types.ModuleType("huggingface_hub")

    def try_to_load_from_cache(repo_id: str, filename: str) -> str | None:
        return str(snapshot / filename) if repo_id == repo else None

    hub.try_to_load_from_cache = try_to_load_from_cache  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "huggingface_hub", hub)
    return snapshot


def test_the_weight_files_are_read_while_vlmevalkit_is_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = LoadStandIns.ENTRY_PATH
    cached_repo(tmp_path, monkeypatch, repo)
    seen = LoadStandIns(monkeypatch, overlap=True)
    model = family("llava").load(unit(hf_repo=repo), slot(max_new_tokens=8))
    # Every weight file of the cached snapshot, the vision tower's included, and nothing else.
    assert seen.read == [
        [
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
            "model.safetensors",
        ]
    ]
    assert seen.calls == ["import", "load"]
    # VLMEvalKit's own arguments for the model, with the slot's settings.
    assert model == {
        "model_path": repo,
        "device": "cuda",
        "temperature": 0,
        "max_new_tokens": 8,
    }


def test_a_catalogue_repo_that_is_not_vlmevalkits_fails_the_load_naming_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cached_repo(tmp_path, monkeypatch, LoadStandIns.ENTRY_PATH)
    LoadStandIns(monkeypatch, overlap=False)
    with pytest.raises(FamilyError) as err:
        family("llava").load(unit(hf_repo="someone/llava-v1.5-7b"), slot())
    assert str(err.value) == (
        "model llava_v1.5_7b: the catalogue's hf_repo 'someone/llava-v1.5-7b' is not the repo "
        "VLMEvalKit loads for it ('liuhaotian/llava-v1.5-7b'); correct the catalogue entry"
    )


def test_without_a_hub_repo_the_model_loads_from_vlmevalkits_entry_after_its_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cached_repo(tmp_path, monkeypatch, LoadStandIns.ENTRY_PATH)
    seen = LoadStandIns(monkeypatch, overlap=False)
    model = family("llava").load(unit(), slot())
    # Nothing to read ahead: the path was VLMEvalKit's, known only after the import.
    assert seen.read == [] and seen.calls == ["import", "load"]
    assert model == {"model_path": LoadStandIns.ENTRY_PATH, "device": "cuda", "temperature": 0}
