"""Preflight readings (plugins/filter/eval_preflight.py): free GPU memory against the slots,
gated models that need a token."""

from __future__ import annotations

from pathlib import Path

import yaml
from eval_preflight import gated_models, gpu_free_mib, model_repos, slots_short_of_memory

ROOT = Path(__file__).resolve().parents[2]
MODELS = yaml.safe_load((ROOT / "playbooks/vars/catalogue.yml").read_text())["catalogue_models"]
GIB = 1024


def slot(name, gpus, *models, device="cuda"):
    return {"slot": name, "gpus": gpus, "device": device, "models": list(models)}


def test_gpu_free_mib_reads_nvidia_smi_csv():
    assert gpu_free_mib("0, 70000, 81559\n1, 500, 81559\n\nbad line\n") == {0: 11559, 1: 81059}


def test_a_slot_needs_its_biggest_model_free():
    slots = [slot("gpu0", [0], "llava_v1.5_7b", "llava_v1.5_13b")]
    assert slots_short_of_memory(slots, {0: 30 * GIB}, MODELS) == []
    assert slots_short_of_memory(slots, {0: 20 * GIB}, MODELS) == [
        "gpu0 (GPU [0]): llava_v1.5_13b needs 28 GiB, 20.0 GiB free"
    ]


def test_slots_sharing_a_gpu_need_their_models_at_once():
    slots = [
        slot("gpu0s0", [0], "llava_v1.5_13b"),
        slot("gpu0s1", [0], "llava_v1.5_7b"),
        slot("gpu1s0", [1], "llava_v1.5_7b"),
        slot("gpu1s1", [1]),
    ]
    # 28 + 15 GiB on GPU 0: 40 GiB free is short although each model alone fits.
    assert slots_short_of_memory(slots, {0: 40 * GIB, 1: 16 * GIB}, MODELS) == [
        "gpu0s0, gpu0s1 (GPU [0]): llava_v1.5_13b + llava_v1.5_7b (one per slot, at once) "
        "need 43 GiB, 40.0 GiB free"
    ]
    assert slots_short_of_memory(slots, {0: 43 * GIB, 1: 16 * GIB}, MODELS) == []


def test_multi_gpu_slot_counts_its_gpus_together_and_a_missing_gpu_is_named():
    slots = [slot("gpu0-1", [0, 1], "llava_v1.5_13b")]
    assert slots_short_of_memory(slots, {0: 15 * GIB, 1: 15 * GIB}, MODELS) == []
    assert slots_short_of_memory(slots, {0: 15 * GIB}, MODELS) == [
        "gpu0-1: GPU [1] not reported by nvidia-smi"
    ]


def test_cpu_slots_and_smoke_runs_are_not_checked():
    assert (
        slots_short_of_memory([slot("cpu0", [], "llava_v1.5_13b", device="cpu")], {}, MODELS) == []
    )
    assert slots_short_of_memory([slot("gpu0", [0], "llava_v1.5_13b")], {0: 0}, MODELS, True) == []


def test_the_disk_check_counts_every_repo_a_model_loads_once():
    repos = model_repos(MODELS, ["sharegpt4v_7b", "llava_v1.5_7b", "llava_v1.5_13b"])
    assert [(r["repo"], r["models"]) for r in repos] == [
        ("Lin-Chen/ShareGPT4V-7B", ["sharegpt4v_7b"]),
        ("Lin-Chen/ShareGPT4V-7B_Pretrained_vit-large336-l12", ["sharegpt4v_7b"]),
        ("liuhaotian/llava-v1.5-7b", ["llava_v1.5_7b"]),
        # One CLIP tower for both LLaVA-1.5 sizes: counted once.
        ("openai/clip-vit-large-patch14-336", ["llava_v1.5_7b", "llava_v1.5_13b"]),
        ("liuhaotian/llava-v1.5-13b", ["llava_v1.5_13b"]),
    ]
    assert sum(r["disk_gib"] for r in repos) == 14 + 1.2 + 14 + 1.6 + 27


def test_gated_models_are_the_planned_ones_marked_gated_and_none_in_smoke_runs():
    # The seed catalogue has no gated model; a copy with two marked, as a user's would be.
    models = {**MODELS, "gated_b": {**MODELS["llava_v1.5_7b"], "gated": True}}
    models["llava_v1.5_13b"] = {**MODELS["llava_v1.5_13b"], "gated": True}
    slots = [
        slot("gpu0", [0], "gated_b", "llava_v1.5_7b"),
        slot("gpu1", [1], "llava_v1.5_13b", "gated_b"),
        slot("gpu2", [2]),
    ]
    assert gated_models(slots, models) == ["gated_b", "llava_v1.5_13b"]
    # Planned elsewhere only: not this host's concern.
    assert gated_models([slot("gpu0", [0], "llava_v1.5_7b")], models) == []
    # Smoke runs download nothing.
    assert gated_models(slots, models, smoke=True) == []
    assert gated_models(slots, MODELS) == []
