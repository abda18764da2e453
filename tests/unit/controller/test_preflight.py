"""Preflight readings (plugin_utils/preflight.py): free GPU memory against the slots,
gated models that need a token."""

from __future__ import annotations

from pathlib import Path

import yaml
from ansible_collections.vlmfleet.shared.plugins.plugin_utils.preflight import (
    data_files,
    data_need,
    gated_models,
    gpu_free_mib,
    hub_settings,
    judged_benchmarks,
    model_repos,
    slots_short_of_memory,
    weights_unobtainable,
)

ROOT = Path(__file__).resolve().parents[3]
MODELS = yaml.safe_load((ROOT / "playbooks/vars/catalogue.yml").read_text())["catalogue_models"]
GIB = 1024


def slot(name, gpus, *models, device="cuda"):
    return {"slot": name, "gpus": gpus, "device": device, "models": list(models)}


def test_gpu_free_mib_reads_nvidia_smi_csv():
    assert gpu_free_mib("0, 70000, 81559\n1, 500, 81559\n\nbad line\n") == {0: 11559, 1: 81059}


def test_judged_benchmarks_are_those_not_exactly_matched_once_each():
    def unit(*judges):
        return {"benchmarks": [{"name": f"B{i}", "judge": j} for i, j in enumerate(judges)]}

    slots = [
        {"slot_file": {"units": [unit("exact_matching", "openai"), unit("openai", "openai")]}},
        {"slot_file": {"units": [unit("exact_matching", "exact_matching", "openai")]}},
    ]
    assert judged_benchmarks(slots) == ["B1", "B0", "B2"]
    assert judged_benchmarks([{"slot_file": {"units": [unit("exact_matching")]}}]) == []


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
    # The catalogue as shipped has no gated model; a copy with two marked, as a user's would be.
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


def data_slot(*benchmarks):
    return {"slot_file": {"units": [{"model": "llava_v1.5_7b", "benchmarks": list(benchmarks)}]}}


def test_the_disk_check_counts_shipped_data_by_size_and_leaves_downloads_to_the_preparation(
    tmp_path,
):
    custom = tmp_path / "mine.tsv"
    custom.write_bytes(b"x" * 4000)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "MMStar.tsv").write_bytes(b"y" * 8000)
    slots = [
        data_slot({"name": "mine", "md5": "0" * 32}, {"name": "MMStar"}),
        # A benchmark in two slots (shards, or two models) is one file on the host.
        data_slot({"name": "MMStar", "shard": {"index": 1, "count": 2}}),
    ]
    benchmarks = {"mine": {"tsv": str(custom), "custom": True}}
    shipped = data_files(slots, benchmarks, "ship", str(tmp_path / "data"))
    assert [(f["name"], f["src"], f["bytes"]) for f in shipped] == [
        ("mine", str(custom), 4000),
        ("MMStar", str(tmp_path / "data" / "MMStar.tsv"), 8000),
    ]
    assert shipped[1]["tsv"] == "LMUData/MMStar.tsv"
    assert shipped[1]["images"] == "LMUData/images/MMStar"
    # Nothing on the host yet: each TSV and its decoded images (3/4 of it).
    nothing = [
        {"item": p, "stat": {"exists": False}} for f in shipped for p in (f["tsv"], f["images"])
    ]
    need = data_need(shipped, nothing)
    assert need["gib"] == round((4000 + 3000 + 8000 + 6000) / 2**30, 3)
    assert need["counted"] == ["mine 0.00 GiB", "MMStar 0.00 GiB"] and need["unknown"] == []
    # mine is there with the same size and its images too; MMStar's TSV differs (shipped again).
    host = {
        "LMUData/mine.tsv": {"exists": True, "size": 4000},
        "LMUData/images/mine": {"exists": True},
        "LMUData/MMStar.tsv": {"exists": True, "size": 7999},
        "LMUData/images/MMStar": {"exists": True},
    }
    stats = [{"item": p, "stat": s} for p, s in host.items()]
    assert data_need(shipped, stats) == {
        "gib": round(8000 / 2**30, 3),
        "counted": ["MMStar 0.00 GiB"],
        "unknown": [],
    }
    # Downloaded by VLMEvalKit: no size here; named unless the host has it already.
    downloaded = data_files(slots, benchmarks, "download", None)
    assert [(f["name"], f["bytes"]) for f in downloaded] == [("mine", 4000), ("MMStar", None)]
    assert data_need(downloaded, nothing)["unknown"] == ["MMStar"]
    assert data_need(downloaded, stats)["unknown"] == []
    assert data_files(slots, benchmarks, "ship", str(tmp_path / "data"), smoke=True) == []


def test_a_gib_sized_tsv_is_counted_in_gib(tmp_path):
    big = tmp_path / "big.tsv"
    with big.open("wb") as fh:
        fh.truncate(3 * 2**30)  # sparse: the size is what counts
    files = data_files(
        [data_slot({"name": "big", "md5": "1" * 32})], {"big": {"tsv": str(big)}}, "download", None
    )
    need = data_need(files, [])
    assert need == {"gib": 5.25, "counted": ["big 5.25 GiB"], "unknown": []}


def stats(models, cached=()):
    """The registered stat loop over model_repos' paths, ``cached`` repos present."""
    return [
        {"item": repo, "stat": {"exists": repo["repo"] in cached}}
        for repo in model_repos(MODELS, models)
    ]


HUB = {"endpoint": "https://huggingface.co", "offline": None}
REFUSED = {
    "status": -1,
    "msg": "Status code was -1 and not [200]: Request failed: <urlopen error [Errno -2] Name or "
    "service not known>",
}


def test_hub_settings_are_read_from_env_lines_as_the_worker_reads_them():
    assert hub_settings([]) == HUB
    assert hub_settings(
        ['export HF_ENDPOINT="https://hf-mirror.example/"', "HF_HUB_OFFLINE=0"]
    ) == {"endpoint": "https://hf-mirror.example", "offline": None}
    # huggingface_hub's true words; transformers stops at TRANSFORMERS_OFFLINE on its own.
    assert hub_settings(["HF_HUB_OFFLINE=yes"])["offline"] == "HF_HUB_OFFLINE=yes"
    assert hub_settings(["HF_HUB_OFFLINE=0", "TRANSFORMERS_OFFLINE=1"])["offline"] == (
        "TRANSFORMERS_OFFLINE=1"
    )
    # The last line wins, as in the worker's environment.
    assert hub_settings(["HF_HUB_OFFLINE=1", "HF_HUB_OFFLINE=false"])["offline"] is None


def test_weights_neither_cached_nor_downloadable_stop_preflight_naming_each_model_and_repo():
    message = weights_unobtainable(
        stats(["llava_v1.5_7b", "llava_v1.5_13b"], cached=["liuhaotian/llava-v1.5-13b"]),
        HUB,
        REFUSED,
        "gpu-01",
        "/srv/vlm-eval",
    )
    assert message == (
        "gpu-01: weights the planned models load are not in this host's Hugging Face cache, "
        "and the hub, https://huggingface.co, cannot be reached from gpu-01 (<urlopen error "
        "[Errno -2] Name or service not known>): llava_v1.5_7b needs liuhaotian/llava-v1.5-7b, "
        "openai/clip-vit-large-patch14-336; llava_v1.5_13b needs "
        "openai/clip-vit-large-patch14-336. Put them in the "
        "cache at /srv/vlm-eval/hf-cache/hub (models--liuhaotian--llava-v1.5-7b, "
        "models--openai--clip-vit-large-patch14-336, as the hub's own download lays them out, "
        "e.g. huggingface-cli download on a machine that reaches the hub), let gpu-01 reach "
        "https://huggingface.co (or a mirror: HF_ENDPOINT in /srv/vlm-eval/.env), or ship a "
        "checkpoint of your own as a custom model (custom_models)"
    )


def test_offline_settings_stop_preflight_without_asking_the_hub_and_gated_repos_name_a_token():
    models = {**MODELS, "llava_v1.5_7b": {**MODELS["llava_v1.5_7b"], "gated": True}}
    message = weights_unobtainable(
        [{"item": r, "stat": {"exists": False}} for r in model_repos(models, ["llava_v1.5_7b"])],
        {"endpoint": "https://huggingface.co", "offline": "HF_HUB_OFFLINE=1"},
        None,
        "gpu-01",
        "/srv/vlm-eval",
    )
    assert (
        "cache, and /srv/vlm-eval/.env sets HF_HUB_OFFLINE=1, so the workers do not download: "
        "llava_v1.5_7b needs liuhaotian/llava-v1.5-7b, openai/clip-vit-large-patch14-336. "
    ) in message
    assert ", with a token for the gated liuhaotian/llava-v1.5-7b (eval_dirs_hf_token), " in (
        message
    )


def test_cached_weights_custom_checkpoints_and_a_hub_that_answers_pass():
    repos = ["liuhaotian/llava-v1.5-7b", "openai/clip-vit-large-patch14-336"]
    assert weights_unobtainable(stats(["llava_v1.5_7b"], repos), HUB, None, "h", "/r") is None
    # Any HTTP answer is the hub reached (auth and missing files are the download's to say).
    for status in (200, 302, 401, 404):
        answered = {"status": status, "msg": f"Status code was {status}"}
        assert weights_unobtainable(stats(["llava_v1.5_7b"]), HUB, answered, "h", "/r") is None
    # A custom model's checkpoint is shipped by the run, not downloaded.
    custom = {**MODELS, "mine": {"custom": True, "disk_gib": 0.01}}
    shipped = [{"item": r, "stat": {"exists": False}} for r in model_repos(custom, ["mine"])]
    assert weights_unobtainable(shipped, HUB, REFUSED, "h", "/r") is None
