"""InternVL2-2B and -8B through the worker, offline, to the model's boundary.

No InternVL weights or hub code can be fetched here. tests/e2e/in_image_internvl.py lays out,
under the real repo ids in a Hugging Face cache, a STAND-IN repo in InternVL2's on-disk layout
(config.json with auto_map, remote-code modules, tokenizer files, safetensors; the 8B's
sharded) whose remote code is the project's own small model (tests/standin_internvl), and runs
the real worker on a CPU slot with HF_HUB_OFFLINE=1: the internvl family's load (VLMEvalKit's
supported_VLM entry, transformers' AutoModel/AutoTokenizer with trust_remote_code from the
cache), VLMEvalKit's InternVLChat prompts, tiling and generation, its per-sample loop, scoring
and the per-question records. What runs is not InternVL's own code or weights: the stand-in
answers from a table of the prompts InternVL's published rules give (text and tile count), so
a wrong prompt or tile count shows as "unmatched" answers and lower scores.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from conftest import REPO

SCRIPT = "/src/tests/e2e/in_image_internvl.py"
MARKER = "IN_IMAGE_INTERNVL "
MODELS = ("InternVL2-2B", "InternVL2-8B")
# Known right answers: the stand-in is right on questions 0, 1, 3 of the VQA set and 0, 2 of
# the MCQ set (in_image_internvl.VQA / MCQ).
VQA_HITS = {"0": 1.0, "1": 1.0, "2": 0.0, "3": 1.0}
MCQ_HITS = {"0": 1.0, "1": 0.0, "2": 1.0, "3": 0.0}
VQA_SUFFIX = "\nAnswer the question using a single word or phrase."
MCQ_SUFFIX = "\nAnswer with the option's letter from the given choices directly."


@pytest.fixture(scope="module")
def offline_run(
    run_in_image: Callable[..., Any], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """One run of the in-image script for the module's tests."""
    work = tmp_path_factory.mktemp("internvl") / "work"
    work.mkdir()
    work.chmod(0o777)
    proc = run_in_image(
        "python",
        SCRIPT,
        "/work/run",
        volumes=(
            f"{REPO / 'docker' / 'transformers-4.37' / 'src'}:/opt/vlm-image/src:ro",
            f"{REPO / 'tests'}:/src/tests:ro",
            f"{work}:/work",
        ),
        timeout=600,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    (line,) = [s for s in proc.stdout.splitlines() if s.startswith(MARKER)]
    result = json.loads(line[len(MARKER) :])
    result["out"] = out
    return result


def test_internvl2_models_run_offline_through_the_worker_with_known_answers(
    offline_run: dict[str, Any],
) -> None:
    result = offline_run
    out = result["out"]
    assert result["worker_rc"] == 0, out[-6000:]
    for model in MODELS:
        # The hub code's flash-attention fallback was taken: eager attention, naive ViT.
        assert (
            f"{model}: hub code of OpenGVLab/{model}, attention eager (vision: naive), "
            "torch.float32 on cpu" in out
        )
        vqa = result["records"][f"{model}/standin_OCRBench"]
        mcq = result["records"][f"{model}/standin_MCQ"]
        assert vqa["status"]["status"] == mcq["status"]["status"] == "ok"
        # Scores against the known right answers: 3 of 4 VQA, 2 of 4 MCQ.
        assert vqa["status"]["primary_score"] == 75.0
        assert mcq["status"]["primary_score"] == 50.0
        assert {q["index"]: q["score"] for q in vqa["questions"]} == VQA_HITS
        assert {q["index"]: q["score"] for q in mcq["questions"]} == MCQ_HITS
        assert [q["prediction"] for q in vqa["questions"]] == ["STOP", "42", "blue", "SALE"]
    # One chat() call per question and model, VLMEvalKit's prompts and tiling: 24 tiles allowed
    # for a benchmark named like OCRBench (a 4:3 picture: 12 + thumbnail), 6 for an MCQ (6 + 1).
    trace = result["trace"]
    assert len(trace) == 2 * 8
    first_vqa, first_mcq = trace[0], trace[4]
    assert first_vqa["question"] == "<image>\nWhat word is on the sign?" + VQA_SUFFIX
    assert first_vqa["num_patches_list"] == [13] and first_vqa["pixel_shape"] == [13, 3, 448, 448]
    assert first_mcq["question"] == (
        "<image>\nHow many circles are there?\nA. 1\nB. 2\nC. 3\nD. 4" + MCQ_SUFFIX
    )
    assert first_mcq["num_patches_list"] == [7]
    # VLMEvalKit's generation settings with the slot's cap: greedy, 16 new tokens, stop at
    # the template's separator; the tiles in bfloat16, as VLMEvalKit casts them.
    for call in trace:
        settings = call["generation_config"]
        assert settings["do_sample"] is False and settings["max_new_tokens"] == 16
        assert settings["eos_token_id"] == 4  # <|im_end|> in the stand-in's vocabulary
        assert call["pixel_dtype"] == "torch.bfloat16"


def test_internvl2_8b_spreads_over_two_gpus_as_vlmevalkit_places_it(
    offline_run: dict[str, Any],
) -> None:
    """The 8B repo's model on the meta device over two 80 GiB GPUs, as transformers'
    device_map="auto" (VLMEvalKit's InternVLChat) balances it: both GPUs used, the vision model
    whole on the first (where VLMEvalKit puts the tiles), no decoder layer cut."""
    placed = offline_run["device_map"]
    assert set(placed.values()) == {0, 1}
    assert placed["vision_model"] == 0 and placed["language_model.model.tok_embeddings"] == 0
    layers = {k: v for k, v in placed.items() if k.startswith("language_model.model.layers.")}
    assert sorted(int(k.rsplit(".", 1)[1]) for k in layers) == list(range(32))
    # Layers in order: the first ones on GPU 0, the rest on GPU 1, each whole.
    order = [layers[f"language_model.model.layers.{i}"] for i in range(32)]
    assert order == sorted(order) and 0 < order.count(0) < 32
    assert placed["language_model.output"] == 1


def test_a_cache_missing_remote_code_or_weights_is_named_before_the_load(
    offline_run: dict[str, Any],
) -> None:
    """Downloads off: the family names every file the load would read that the cache lacks
    (here a module the model code imports relatively, and a weight shard), not only the first
    transformers would trip on."""
    said = offline_run["cache_refusals"]
    assert said["OpenGVLab/InternVL2-8B"] == (
        "model InternVL2-8B: downloads are off (HF_HUB_OFFLINE) and the Hugging Face cache "
        "lacks these files of OpenGVLab/InternVL2-8B: conversation.py, "
        "model-00002-of-00002.safetensors"
    )
    assert said["OpenGVLab/InternVL2-4B"].endswith("OpenGVLab/InternVL2-4B: config.json")


def test_hub_code_is_trusted_only_for_the_catalogue_repo_vlmevalkit_loads(
    offline_run: dict[str, Any],
) -> None:
    said = offline_run["entry_refusals"]
    assert said["InternVL2-2B"] == (
        "model InternVL2-2B: the catalogue's hf_repo 'someone/InternVL2-2B' is not the repo "
        "VLMEvalKit loads for it ('OpenGVLab/InternVL2-2B'); only the catalogue's repos run hub "
        "code (trust_remote_code), so correct the catalogue entry"
    )
    assert said["llava_v1.5_7b"] == (
        "model llava_v1.5_7b is listed in family internvl, but VLMEvalKit builds it with "
        "LLaVA, not its InternVLChat class"
    )
