"""The catalogue and the input checks that use it (plugin_utils/inputs.py)."""

from __future__ import annotations

import base64
import hashlib
import struct
import zlib
from pathlib import Path

import pytest
import yaml
from ansible_collections.vlmfleet.shared.plugins.plugin_utils.input_table import (
    eval_recorded_inputs,
)
from ansible_collections.vlmfleet.shared.plugins.plugin_utils.inputs import (
    EvalInputError,
    check_inputs,
    eval_check_inputs,
)

ROOT = Path(__file__).resolve().parents[3]
CATALOGUE = yaml.safe_load((ROOT / "playbooks/vars/catalogue.yml").read_text())
DEFAULT_BENCHMARKS = [
    "MMBench_DEV_EN",
    "TextVQA_VAL",
    "GQA_TestDev_Balanced",
    "MMMU_DEV_VAL",
    "DocVQA_VAL",
    "ChartQA_TEST",
    "InfoVQA_VAL",
    "OCRBench",
    "AI2D_TEST",
    "ScienceQA_VAL",
    "POPE",
    "HallusionBench",
    "MMStar",
    "RealWorldQA",
    "VisOnlyQA-VLMEvalKit",
    "VizWiz",
    "SEEDBench_IMG",
    "BLINK",
    "MMBench_DEV_KO",
    "SEEDBench_IMG_KO",
]
NOW = "20261127T020000Z"


def png_bytes() -> bytes:
    """A 1x1 grey PNG, made here (the test needs no imaging library)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00\x80"))
        + chunk(b"IEND", b"")
    )


# A custom benchmark's image as VLMEvalKit's TSVs hold it.
PNG = base64.b64encode(png_bytes()).decode()
# The embedded default inventory: one host, no variables of its own.
LOCALHOST = {"localhost": {}}


def check(hosts=LOCALHOST, **raw):
    return check_inputs(raw, CATALOGUE, NOW, None, hosts, list(hosts))


def test_catalogue_holds_the_default_models_and_benchmarks():
    for name in (
        "llava_v1.5_7b",
        "llava_v1.5_13b",
        "InternVL2-2B",
        "InternVL2-8B",
        "MiniCPM-V-2_6",
        "cogvlm-chat",
        "sharegpt4v_7b",
    ):
        model = CATALOGUE["catalogue_models"][name]
        assert model["gpu_memory_gib"] > 0 and model["load_cost"] > 0
        assert isinstance(model["gated"], bool)
    assert CATALOGUE["catalogue_default_benchmarks"] == DEFAULT_BENCHMARKS
    assert set(DEFAULT_BENCHMARKS) <= set(CATALOGUE["catalogue_benchmarks"])
    for bench in CATALOGUE["catalogue_benchmarks"].values():
        assert bench["kind"] in CATALOGUE["catalogue_kinds"]
        assert bench["samples"] > 0 and bench["cost_per_sample"] > 0
    assert CATALOGUE["catalogue_benchmarks"]["POPE"]["kind"] == "yorn"
    assert CATALOGUE["catalogue_benchmarks"]["TextVQA_VAL"]["kind"] == "vqa"


def test_defaults_reproduce_the_default_matrix():
    inputs = check()
    assert inputs["models"] == ["llava_v1.5_7b", "llava_v1.5_13b"]
    assert inputs["benchmarks"] == DEFAULT_BENCHMARKS
    assert inputs["limit"] is None and inputs["smoke"] is False
    assert inputs["run_id"] == NOW and inputs["resume"] is True and not inputs["resumed"]
    # The validation step owns every default.
    assert (inputs["batch_size"], inputs["max_new_tokens"], inputs["judge"]) == (
        "auto",
        None,
        "exact_matching",
    )
    assert inputs["hosts"] == {"localhost": {"gpu_slots": "auto", "batch_size": "auto"}}
    assert check(smoke="true")["max_new_tokens"] == 16
    assert check(smoke="true", max_new_tokens="4")["max_new_tokens"] == 4


def test_comma_strings_and_lists_are_accepted_and_deduplicated():
    inputs = check(
        models="llava_v1.5_13b, llava_v1.5_7b,llava_v1.5_13b", benchmarks=["POPE", "MMStar"]
    )
    assert inputs["models"] == ["llava_v1.5_13b", "llava_v1.5_7b"]
    assert inputs["benchmarks"] == ["POPE", "MMStar"]


@pytest.mark.parametrize(
    ("raw", "limit"), [("10", 10), (3, 3), ("", None), (None, None), ("none", None)]
)
def test_limit_values(raw, limit):
    assert check(limit=raw)["limit"] == limit


@pytest.mark.parametrize("raw", ["0", -1, "ten", "1.5", True, [3]])
def test_bad_limit_names_the_value(raw):
    with pytest.raises(EvalInputError) as err:
        check(limit=raw)
    assert "limit must be a positive integer" in str(err.value)
    assert f"got {raw!r}" in str(err.value)


# --- precision: each benchmark's limit from the interval it should have ----------------------

PRECISION_VALID = (
    "precision must be a number greater than 0 and at most 50 (points on the 0-100 scale: each "
    "benchmark's 95% interval half-width, which chooses its sample limit)"
)


def test_precision_chooses_each_benchmarks_limit_capped_by_its_size(tmp_path):
    two_rows = tsv(
        tmp_path / "m.tsv",
        ["index", "image", "question", "A", "B", "answer"],
        [["0", PNG, "What?", "x", "y", "A"], ["1", PNG, "What?", "x", "y", "B"]],
    )
    inputs = check(
        benchmarks="POPE,MMBench_DEV_EN,my_mcq",
        precision="5",
        custom_benchmarks={"my_mcq": {"kind": "mcq", "tsv": two_rows}},
    )
    # Wilson's worst case (p = 0.5) is within 5 points from 381 questions on; the custom
    # benchmark has 2 rows in its TSV.
    assert (inputs["precision"], inputs["limit"]) == (5.0, None)
    assert inputs["limits"] == {"POPE": 381, "MMBench_DEV_EN": 381, "my_mcq": 2}
    # At 2 points (2398 questions) the catalogue's smaller benchmarks run whole.
    assert check(benchmarks="POPE,RealWorldQA,HallusionBench", precision=2)["limits"] == {
        "POPE": 2398,
        "RealWorldQA": 765,
        "HallusionBench": 951,
    }
    assert check(precision="2.5")["precision"] == 2.5
    assert (check()["precision"], check()["limits"]) == (None, None)


@pytest.mark.parametrize("raw", [0, "0", -1, 51, "50.5", "abc", True, "nan", [5]])
def test_bad_precision_names_the_value_and_the_valid_range(raw):
    with pytest.raises(EvalInputError) as err:
        check(precision=raw)
    assert str(err.value) == f"{PRECISION_VALID}, got {raw!r}"


def test_precision_and_limit_together_is_one_error_naming_both():
    with pytest.raises(EvalInputError) as err:
        check(precision="5", limit="10")
    assert str(err.value) == (
        "precision=5 and limit=10 cannot be given together: precision chooses each "
        "benchmark's limit; give one of them"
    )


def test_a_resumed_run_keeps_its_precision():
    previous = PREVIOUS | {"limit": None, "precision": 5.0}
    inputs = check_inputs({"run_id": "r1"}, CATALOGUE, NOW, previous, LOCALHOST, ["localhost"])
    assert (inputs["precision"], inputs["limit"], inputs["limits"]) == (5.0, None, {"POPE": 381})
    assert check_inputs(
        {"run_id": "r1", "precision": "5"}, CATALOGUE, NOW, previous, LOCALHOST, ["localhost"]
    )["limits"] == {"POPE": 381}
    for raw, message in (
        ({"precision": "2"}, "precision=2.0 differs from run 'r1' which used precision=5.0"),
        ({"limit": "10"}, "limit=10 differs from run 'r1' which used limit=None"),
    ):
        with pytest.raises(EvalInputError) as err:
            check_inputs({"run_id": "r1", **raw}, CATALOGUE, NOW, previous, LOCALHOST, ["l"])
        assert message in str(err.value)
    # A run of a fixed limit is not resumed with a precision either.
    with pytest.raises(EvalInputError) as err:
        check_inputs({"run_id": "r1", "precision": 5}, CATALOGUE, NOW, PREVIOUS, LOCALHOST, [])
    assert "precision=5.0 differs from run 'r1' which used precision=None" in str(err.value)


def test_unknown_model_names_the_value_and_the_valid_ones():
    with pytest.raises(EvalInputError) as err:
        check(models="llava_v1.5_7b,gpt-4o")
    message = str(err.value)
    assert "'gpt-4o'" in message
    assert "valid models: llava_v1.5_7b, llava_v1.5_13b, sharegpt4v_7b" in message


def test_wrong_case_gets_a_hint():
    with pytest.raises(EvalInputError, match=r"'pope' \(did you mean 'POPE'\?\)"):
        check(benchmarks="pope")


def test_all_problems_in_one_message():
    with pytest.raises(EvalInputError) as err:
        check(models="nope", benchmarks="MMStar,nada", limit="0", smoke="maybe", run_id="../x")
    message = str(err.value)
    for part in (
        "'nope'",
        "'nada'",
        "limit",
        "smoke must be true or false, got 'maybe'",
        "run_id '../x'",
    ):
        assert part in message


@pytest.mark.parametrize("run_id", ["../etc", "a/b", "latest", ".hidden", "x" * 65, "a b"])
def test_unsafe_run_ids_are_refused(run_id):
    with pytest.raises(EvalInputError, match="run_id"):
        check(run_id=run_id)


@pytest.mark.parametrize("run_id", ["20261127T020000Z", "nightly-7b_v2.1"])
def test_safe_run_ids(run_id):
    assert check(run_id=run_id)["run_id"] == run_id


@pytest.mark.parametrize(
    ("raw", "value"), [("true", True), ("False", False), ("yes", True), (False, False)]
)
def test_smoke_booleans(raw, value):
    assert check(smoke=raw)["smoke"] is value


# run.json's inputs as a run of today records them (eval_recorded_inputs).
PREVIOUS = {
    "run_id": "r1",
    "models": ["llava_v1.5_7b"],
    "benchmarks": ["POPE"],
    "limit": 3,
    "precision": None,
    "smoke": True,
    "smoke_weights": "known",
    "max_new_tokens": 16,
    "judge": "exact_matching",
    "judge_model": None,
    "judge_base_url": None,
    "shard_rows": None,
}


def test_resume_takes_the_stored_inputs_when_not_given():
    inputs = check_inputs({"run_id": "r1"}, CATALOGUE, NOW, PREVIOUS, LOCALHOST, ["localhost"])
    assert inputs["resumed"] is True
    assert (inputs["models"], inputs["benchmarks"], inputs["limit"], inputs["smoke"]) == (
        ["llava_v1.5_7b"],
        ["POPE"],
        3,
        True,
    )


def test_resume_with_different_inputs_is_refused():
    with pytest.raises(EvalInputError, match=r"limit=5 differs from run 'r1' which used limit=3"):
        check_inputs(
            {"run_id": "r1", "limit": "5"}, CATALOGUE, NOW, PREVIOUS, LOCALHOST, ["localhost"]
        )


def resumed(previous: dict, **given: str) -> dict:
    """check_inputs for a resume of run r1 (stored inputs ``previous``) with ``given``."""
    return check_inputs(
        {"run_id": "r1", **given}, CATALOGUE, NOW, previous, LOCALHOST, ["localhost"]
    )


def test_resume_keeps_the_stored_shard_rows_unless_given_again():
    previous = PREVIOUS | {"shard_rows": 1, "max_new_tokens": 10}
    assert resumed(previous)["shard_rows"] == 1
    assert resumed(previous, shard_rows="4")["shard_rows"] == 4


def test_resume_holds_max_new_tokens_to_the_stored_run():
    previous = PREVIOUS | {"max_new_tokens": 10}
    assert resumed(previous)["max_new_tokens"] == 10
    with pytest.raises(
        EvalInputError,
        match=r"max_new_tokens=64 differs from run 'r1' which used max_new_tokens=10",
    ):
        resumed(previous, max_new_tokens="64")


def test_resume_holds_the_judge_to_the_stored_run():
    previous = PREVIOUS | {
        "smoke": False,
        "smoke_weights": None,
        "max_new_tokens": None,
        "judge": "openai",
        "judge_model": "gpt-4o-mini",
        "judge_base_url": "https://judge.example/v1",
    }
    kept = resumed(previous)
    assert (kept["judge"], kept["judge_model"], kept["judge_base_url"]) == (
        "openai",
        "gpt-4o-mini",
        "https://judge.example/v1",
    )
    with pytest.raises(
        EvalInputError,
        match=r"judge='exact_matching' differs from run 'r1' which used judge='openai'",
    ):
        resumed(previous, judge="exact_matching")


def test_a_run_recorded_before_an_input_was_resumes_with_its_default():
    # run.json of a run made before the judge, max_new_tokens and shard_rows were recorded.
    old = {k: PREVIOUS[k] for k in ("models", "benchmarks", "limit", "precision", "smoke")}
    inputs = resumed(old)
    assert (inputs["judge"], inputs["max_new_tokens"], inputs["shard_rows"]) == (
        "exact_matching",
        16,
        None,
    )


def test_run_json_records_what_a_resume_reads():
    inputs = check_inputs(
        {"run_id": "r1", "smoke": "true", "limit": "3", "shard_rows": "1"},
        CATALOGUE,
        NOW,
        None,
        LOCALHOST,
        ["localhost"],
    )
    recorded = eval_recorded_inputs(inputs)
    assert recorded["shard_rows"] == 1 and recorded["limit"] == 3
    assert "batch_size" not in recorded
    again = resumed(recorded)
    assert {k: again[k] for k in recorded} == recorded


def test_resume_false_refuses_an_existing_run():
    with pytest.raises(EvalInputError, match="run_id 'r1' already has results"):
        check_inputs(
            {"run_id": "r1", "resume": "false"}, CATALOGUE, NOW, PREVIOUS, LOCALHOST, ["localhost"]
        )


def test_smoke_weights_default_to_known_answer_and_are_checked():
    assert check(smoke="true")["smoke_weights"] == "known"
    assert check(smoke="true", smoke_weights="random")["smoke_weights"] == "random"
    assert check()["smoke_weights"] is None
    with pytest.raises(EvalInputError) as err:
        check(smoke="true", smoke_weights="trained")
    assert str(err.value) == "smoke_weights must be one of known, random, got 'trained'"
    with pytest.raises(EvalInputError) as err:
        check(smoke_weights="random")
    assert "smoke_weights=random applies to smoke runs only" in str(err.value)


def test_every_model_of_a_smoke_family_names_a_known_answer_checkpoint():
    models, families = CATALOGUE["catalogue_models"], CATALOGUE["catalogue_families"]
    assert models["llava_v1.5_13b"]["smoke_checkpoint"] == "known-strong"
    assert models["llava_v1.5_7b"]["smoke_checkpoint"] == "known-weak"
    for name, model in models.items():
        assert families[model["family"]]["smoke"] == ("smoke_checkpoint" in model), name


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"batch_size": "0"}, "batch_size must be 'auto' or a positive whole number"),
        ({"batch_size": True}, "batch_size must be 'auto' or a positive whole number"),
        ({"batch_size": "big"}, "batch_size must be 'auto' or a positive whole number"),
        ({"max_new_tokens": "-1"}, "max_new_tokens must be a positive whole number"),
        ({"shard_rows": "0"}, "shard_rows must be a positive whole number"),
        ({"shard_rows": "a few"}, "shard_rows must be a positive whole number"),
        (
            {"judge": "gpt-4o-mini"},
            "judge 'gpt-4o-mini' is not available; valid: exact_matching, openai",
        ),
        # Models this image refuses, in smoke runs too: test_models_this_image_cannot_run_...
    ],
)
def test_run_options_and_smoke_models_are_checked_up_front(raw, message):
    with pytest.raises(EvalInputError) as err:
        check(**raw)
    assert message in str(err.value)
    good = check(batch_size="4", max_new_tokens="16", judge="exact_matching", shard_rows="500")
    assert (good["batch_size"], good["max_new_tokens"], good["shard_rows"]) == (4, 16, 500)
    assert check()["shard_rows"] is None
    assert check(batch_size="Auto")["batch_size"] == "auto"


def test_a_judge_model_is_settled_with_its_defaults():
    judged = check(judge="openai")
    assert (judged["judge"], judged["judge_model"], judged["judge_base_url"]) == (
        "openai",
        "gpt-4o-mini",
        "https://api.openai.com/v1",
    )
    mine = check(
        judge="openai", judge_model="my-judge:7b", judge_base_url="http://10.0.0.5:8000/v1/"
    )
    assert (mine["judge_model"], mine["judge_base_url"]) == (
        "my-judge:7b",
        "http://10.0.0.5:8000/v1",
    )
    assert (check()["judge_model"], check()["judge_base_url"]) == (None, None)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"judge": "gpt4"},
            "judge 'gpt4' is not available; valid: exact_matching, openai",
        ),
        (
            {"judge_model": "gpt-4o"},
            "judge_model applies to judge=openai only; add -e judge=openai",
        ),
        (
            {"judge": "exact_matching", "judge_model": "m", "judge_base_url": "http://h/v1"},
            "judge_model and judge_base_url apply to judge=openai only",
        ),
        (
            {"judge": "openai", "judge_model": "Qwen/Qwen2.5-72B"},
            "judge_model 'Qwen/Qwen2.5-72B' is not usable: one word of letters",
        ),
        (
            {"judge": "openai", "judge_model": "deepseek"},
            "judge_model 'deepseek' is VLMEvalKit's name for a judge it reaches through "
            "another client",
        ),
        (
            {"judge": "openai", "judge_base_url": "judge.example:8000/v1"},
            "judge_base_url 'judge.example:8000/v1' is not usable: give an http:// or "
            "https:// URL with a host, e.g. https://api.openai.com/v1",
        ),
        (
            {"judge": "openai", "judge_base_url": "https://api.openai.com/v1/chat/completions"},
            "give the base URL, without /chat/completions (the judge appends it)",
        ),
        (
            {"judge": "openai", "judge_base_url": "https://h/v1?key=1"},
            "without a query or fragment",
        ),
    ],
)
def test_a_bad_judge_input_stops_in_the_validation_step(raw, message):
    with pytest.raises(EvalInputError) as err:
        check(**raw)
    assert message in str(err.value)


def test_a_judge_url_with_a_password_is_refused_without_showing_it():
    with pytest.raises(EvalInputError) as err:
        check(judge="openai", judge_base_url="https://me:sk-secret@judge.example/v1")
    assert "judge_base_url (a URL with credentials) is not usable: give" in str(err.value)
    assert "sk-secret" not in str(err.value)


@pytest.mark.parametrize(
    ("hosts", "raw", "message"),
    [
        (
            {"gpu-01": {"eval_gpu_slots": "two"}},
            {},
            "host 'gpu-01': eval_gpu_slots must be auto or a whole number from 1 to 8 "
            "(worker slots sharing each GPU), got 'two'",
        ),
        (
            {"gpu-01": {}, "gpu-02": {"eval_run_batch_size": 0}},
            {},
            "host 'gpu-02': eval_run_batch_size must be 'auto' or a positive whole number "
            "(samples per generate call; auto: sized by the GPU memory a slot has left), got 0",
        ),
        ({}, {"eval_hosts": "gpu-9*"}, "eval_hosts 'gpu-9*' matches no host of the inventory"),
    ],
)
def test_inventory_values_and_eval_hosts_are_inputs_too(hosts, raw, message):
    with pytest.raises(EvalInputError) as err:
        check(hosts=hosts, **raw)
    assert message in str(err.value)


def test_a_bad_batch_size_given_with_e_is_one_problem_not_one_per_host():
    # -e eval_run_batch_size=0 reaches every host's variables, as the inventory's would.
    hosts = {"a": {"eval_run_batch_size": "0"}, "b": {"eval_run_batch_size": "0"}}
    with pytest.raises(EvalInputError) as err:
        check(hosts=hosts)
    assert str(err.value) == (
        "hosts 'a', 'b': eval_run_batch_size must be 'auto' or a positive whole number "
        "(samples per generate call; auto: sized by the GPU memory a slot has left), got '0'"
    )


def test_a_hosts_own_batch_size_wins_over_the_default():
    inputs = check(hosts={"a": {}, "b": {"eval_run_batch_size": "32", "eval_gpu_slots": "2"}})
    assert inputs["hosts"] == {
        "a": {"gpu_slots": "auto", "batch_size": "auto"},
        "b": {"gpu_slots": 2, "batch_size": 32},
    }


RUNS_HERE = (
    "models this image runs: llava_v1.5_7b, llava_v1.5_13b, sharegpt4v_7b, InternVL2-2B, "
    "InternVL2-8B"
)


@pytest.mark.parametrize("smoke", [None, "true"])
@pytest.mark.parametrize(
    ("models", "message"),
    [
        (
            "MiniCPM-V-2_6",
            "model 'MiniCPM-V-2_6' (family minicpm) cannot run in this image: MiniCPM-V-2_6's "
            "hub code needs flash-attn and transformers >= 4.40; this image pins transformers "
            "4.37.2 (LLaVA 1.2.2 breaks on 4.38+) and excludes flash-attn by design; " + RUNS_HERE,
        ),
        (
            "cogvlm-chat",
            "model 'cogvlm-chat' (family cogvlm) cannot run in this image: CogVLM's hub code "
            "needs xformers, which this image's lock does not hold",
        ),
        (
            "CogVLM-7B",
            "model 'CogVLM-7B' is the original image's name for VLMEvalKit's 'cogvlm-chat' "
            "(THUDM/cogvlm-chat-hf): 17.6B parameters, a 7B Vicuna language model plus a 10B "
            "visual expert, not a 7B model, about 37 GiB (40 GB) of GPU memory in bfloat16; "
            "name it models=cogvlm-chat (which this image refuses: CogVLM's hub code needs "
            "xformers",
        ),
    ],
)
def test_models_this_image_cannot_run_are_refused_with_the_reason(models, message, smoke):
    with pytest.raises(EvalInputError) as err:
        check(models=models, **({"smoke": smoke} if smoke else {}))
    assert message in str(err.value)
    assert "smoke mode has no checkpoint" not in str(err.value)


def test_a_refusal_comes_with_the_other_problems_and_a_resume_is_held_to_it():
    with pytest.raises(EvalInputError) as err:
        check(models="cogvlm-chat,CogVLM-7B", limit="0")
    message = str(err.value)
    assert "'CogVLM-7B' is the original image's name" in message and "limit must be" in message
    with pytest.raises(EvalInputError, match=r"'MiniCPM-V-2_6' .* cannot run in this image"):
        check_inputs(
            {"run_id": "r1"},
            CATALOGUE,
            NOW,
            PREVIOUS | {"models": ["MiniCPM-V-2_6"]},
            LOCALHOST,
            ["localhost"],
        )


def test_a_smoke_run_of_a_family_without_smoke_checkpoints_is_refused():
    # InternVL2 runs in this image, but smoke mode has no checkpoint of its family.
    with pytest.raises(EvalInputError) as err:
        check_inputs(
            {"models": "InternVL2-2B,InternVL2-8B", "smoke": "true"},
            CATALOGUE,
            NOW,
            None,
            LOCALHOST,
            [],
        )
    assert str(err.value) == (
        "smoke mode has no checkpoint for 'InternVL2-2B' (family internvl), 'InternVL2-8B' "
        "(family internvl); families smoke runs can load: llava (models: llava_v1.5_7b, "
        "llava_v1.5_13b, sharegpt4v_7b)"
    )


def test_internvl2_models_pass_validation_in_a_real_run():
    inputs = check_inputs(
        {"models": ["InternVL2-2B", "InternVL2-8B"]}, CATALOGUE, NOW, None, LOCALHOST, []
    )
    assert inputs["models"] == ["InternVL2-2B", "InternVL2-8B"]


def test_every_family_the_image_runs_has_a_module_and_every_other_is_refused():
    from vlmfleet.families import FAMILIES

    families = CATALOGUE["catalogue_families"]
    assert set(FAMILIES) == {f for f, spec in families.items() if not spec.get("refused")}


def test_extra_repos_are_the_towers_and_tokenizers_each_model_loads():
    models = CATALOGUE["catalogue_models"]
    towers = {m: [r["repo"] for r in spec.get("extra_repos", [])] for m, spec in models.items()}
    assert towers["sharegpt4v_7b"] == ["Lin-Chen/ShareGPT4V-7B_Pretrained_vit-large336-l12"]
    assert (
        towers["llava_v1.5_7b"] == towers["llava_v1.5_13b"] == ["openai/clip-vit-large-patch14-336"]
    )
    for spec in models.values():
        for repo in spec.get("extra_repos", []):
            assert repo["disk_gib"] > 0 and repo["repo"].count("/") == 1


# --- custom models and benchmarks ---------------------------------------------------------

KNOWN_STRONG = ROOT / "docker" / "transformers-4.37" / "known_answer" / "llava-known-strong"


def tsv(path, header, rows):
    path.write_text("\n".join("\t".join(r) for r in [header, *rows]) + "\n")
    return str(path)


def test_custom_model_and_benchmark_join_the_catalogue(tmp_path):
    mcq = tsv(
        tmp_path / "m.tsv",
        ["index", "image", "question", "A", "B", "answer"],
        [["0", PNG, "What?", "x", "y", "A"], ["1", PNG, "What?", "x", "y", "B"]],
    )
    out = eval_check_inputs(
        {
            "models": "mine",
            "benchmarks": "my_mcq",
            "custom_models": {"mine": {"family": "llava", "checkpoint": str(KNOWN_STRONG)}},
            "custom_benchmarks": {"my_mcq": {"kind": "mcq", "tsv": mcq}},
        },
        CATALOGUE,
        NOW,
        None,
        {"localhost": {}},
        ["localhost"],
        ["localhost"],
    )
    assert out["error"] is None
    model = out["catalogue"]["catalogue_models"]["mine"]
    assert (model["family"], model["checkpoint"], model["custom"]) == (
        "llava",
        str(KNOWN_STRONG),
        True,
    )
    assert 0 < model["gpu_memory_gib"] < 1
    # Its load costs what a GiB of the catalogue's LLaVA models costs.
    llava = [m for m in CATALOGUE["catalogue_models"].values() if m["family"] == "llava"]
    per_gib = sum(m["load_cost"] for m in llava) / sum(m["disk_gib"] for m in llava)
    assert model["load_cost"] == pytest.approx(max(1.0, model["disk_gib"] * per_gib), abs=0.1)
    bench = out["catalogue"]["catalogue_benchmarks"]["my_mcq"]
    assert (bench["kind"], bench["samples"]) == ("mcq", 2)
    assert bench["md5"] == hashlib.md5(Path(mcq).read_bytes()).hexdigest()
    # The catalogue's own entries stay.
    assert "POPE" in out["catalogue"]["catalogue_benchmarks"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"custom_models": {"llava_v1.5_7b": {"family": "llava", "checkpoint": "/x"}}},
            "custom_models name 'llava_v1.5_7b' is a catalogue name",
        ),
        (
            {"custom_models": {"mine": {"family": "internvl", "checkpoint": str(KNOWN_STRONG)}}},
            "custom_models['mine']: family 'internvl' cannot load a checkpoint of your own; "
            "families that can: llava",
        ),
        (
            {"custom_models": {"mine": {"family": "llava", "checkpoint": "/nowhere"}}},
            "custom_models['mine']: checkpoint '/nowhere' is not a checkpoint folder",
        ),
        (
            {"custom_benchmarks": {"POPE": {"kind": "yorn", "tsv": "/x"}}},
            "custom_benchmarks name 'POPE' is a catalogue name",
        ),
        (
            {"custom_benchmarks": {"b": {"kind": "essay", "tsv": "/x"}}},
            "custom_benchmarks['b']: kind 'essay' is not valid; valid: mcq, yorn, vqa",
        ),
        (
            {"custom_benchmarks": {"b": {"kind": "mcq", "tsv": "/nowhere.tsv"}}},
            "custom_benchmarks['b']: tsv '/nowhere.tsv' is not a file on the controller",
        ),
    ],
)
def test_bad_custom_entries_name_the_value(raw, message):
    with pytest.raises(EvalInputError) as err:
        check(**raw)
    assert message in str(err.value)


def test_custom_tsvs_are_checked_for_what_vlmevalkits_scorers_read(tmp_path):
    no_options = tsv(
        tmp_path / "a.tsv", ["index", "image", "question", "answer"], [["0", PNG, "q", "A"]]
    )
    maybe = tsv(
        tmp_path / "b.tsv", ["index", "image", "question", "answer"], [["0", PNG, "q", "Maybe"]]
    )
    single = tsv(
        tmp_path / "c.tsv", ["index", "image", "question", "answer"], [["0", PNG, "q", "red"]]
    )
    cases = {
        "a": ("mcq", no_options, "lacks the columns A, B that VLMEvalKit's MCQ datasets read"),
        "b": ("yorn", maybe, "column answer: 'Maybe'; a yes/no benchmark's answers are Yes or No"),
        "c": ("vqa", single, "a single answer always scores 0"),
    }
    for name, (kind, path, message) in cases.items():
        with pytest.raises(EvalInputError) as err:
            check(custom_benchmarks={name: {"kind": kind, "tsv": path}})
        assert message in str(err.value), name


def test_custom_entries_are_for_real_runs(tmp_path):
    with pytest.raises(
        EvalInputError, match="custom_models and custom_benchmarks apply to real runs"
    ):
        check(
            smoke="true",
            custom_models={"mine": {"family": "llava", "checkpoint": str(KNOWN_STRONG)}},
        )


MCQ_HEADER = ["index", "question", "A", "B", "answer", "image"]


def mcq_rows(*images):
    return [[str(i), "What?", "x", "y", "A", image] for i, image in enumerate(images)]


def tsv_error(tmp_path, rows, header=MCQ_HEADER):
    path = tsv(tmp_path / "mine.tsv", header, rows)
    with pytest.raises(EvalInputError) as err:
        check(models="llava_v1.5_7b", benchmarks="mine", custom_benchmarks=MINE(path))
    return path, str(err.value)


def MINE(path):
    return {"mine": {"kind": "mcq", "tsv": path}}


IMAGE_VALID = (
    "an image is a base64-encoded PNG, JPEG, GIF, WebP, BMP or TIFF file (more than 64 "
    "characters), a list of them (['<base64>', '<base64>']), or the index of another row whose "
    "image it shares (at most 64 characters)"
)


def test_a_custom_tsv_row_whose_image_is_not_base64_is_named_with_its_line_and_column(tmp_path):
    path, message = tsv_error(tmp_path, mcq_rows(PNG, PNG[:40] + "!" + PNG[40:]))
    # One message: the file, the row (line and index), the column, what is wrong, what is valid;
    # and not a second "unknown benchmark 'mine'".
    assert message == (
        f"custom_benchmarks['mine']: {path} line 3 (index '1'), column image: is not base64: "
        "character 41 is '!' (base64 is A-Z, a-z, 0-9, '+' and '/', with '=' padding); "
        + IMAGE_VALID
    )


@pytest.mark.parametrize(
    ("images", "line", "problem"),
    [
        # VLMEvalKit's own decoder: "Incorrect padding", deep inside the worker.
        ((PNG, PNG[:-2]), 3, "is not base64 (Incorrect padding)"),
        (
            (
                base64.b64encode(b"hello world, this is a text file, not an image at all").decode(),
                PNG,
            ),
            2,
            "decodes to 53 bytes that are not an image (they begin b'hello wo')",
        ),
        ((PNG, ""), 3, "is empty (VLMEvalKit would drop the row)"),
        # VLMEvalKit's "AssertionError at image_base.py:168": a short value names no index.
        (
            (PNG, "7"),
            3,
            "'7' is read as a reference (VLMEvalKit reads a value of at most 64 characters as "
            "another row's index), and no row has that index",
        ),
        (
            ("2", PNG, "1"),
            2,
            "'2' refers to line 4, whose image is a reference itself, not resolved before this "
            "row; refer to the row that holds the image",
        ),
        ((PNG, str([PNG, "bm90IGFuIGltYWdlIGF0IGFsbA=="])), 3, "image 2 of the list decodes to"),
        ((PNG, "[" + PNG + ", nope]"), 3, "starts with '[' but is not a list of base64 images"),
    ],
)
def test_every_custom_tsv_image_is_decoded_up_front(tmp_path, images, line, problem):
    path, message = tsv_error(tmp_path, mcq_rows(*images))
    where = f"custom_benchmarks['mine']: {path} line {line} (index '{line - 2}'), column image: "
    assert message.startswith(where + problem), message
    assert message.endswith(IMAGE_VALID) and message.count("custom_benchmarks") == 1


def test_a_repeated_index_is_named(tmp_path):
    rows = mcq_rows(PNG, PNG, PNG)
    rows[2][0] = "0"
    path, message = tsv_error(tmp_path, rows)
    assert message == (
        f"custom_benchmarks['mine']: {path} line 4 (index '0'), column index: also the index of "
        "line 2; each row needs its own (VLMEvalKit keys images and answers by index)"
    )


def test_the_image_forms_vlmevalkit_reads_are_accepted(tmp_path):
    formats = {
        "gif": b"GIF89a" + bytes(60),
        "jpeg": b"\xff\xd8\xff\xe0" + bytes(60),
        "webp": b"RIFF\x00\x00\x00\x00WEBPVP8 " + bytes(60),
        "bmp": b"BM" + bytes(60),
    }
    images = [base64.b64encode(data).decode() for data in formats.values()]
    rows = mcq_rows(
        PNG,
        *images,
        # References to a row before and after, and to a reference resolved before it.
        "0",
        "8",
        "5",
        PNG,
        # Several images of one question.
        str([PNG, images[0]]),
    )
    # pandas reads a column of whole numbers as integers: '007' is row 7 for a reference.
    rows[7][0] = "007"
    path = tsv(tmp_path / "ok.tsv", MCQ_HEADER, rows)
    inputs = check(benchmarks="ok", custom_benchmarks={"ok": {"kind": "mcq", "tsv": path}})
    assert inputs["custom_benchmarks"]["ok"]["samples"] == len(rows)


def test_the_images_smoke_data_generators_write_are_accepted_in_every_shape(tmp_path):
    from vlmfleet.smoke_data import synthetic_rows, write_tsv

    for name, spec in CATALOGUE["catalogue_benchmarks"].items():
        kind = CATALOGUE["catalogue_kinds"][spec["kind"]]
        shape = spec.get("smoke_shape") or kind["smoke_shape"]
        rows = synthetic_rows(name, shape, 3)
        for row in rows:
            # Answers as a custom VQA benchmark needs them (checked before a row's image).
            if kind["dataset_type"] == "VQA":
                row["answer"] = str(["a"] * 4)
        path = tmp_path / f"{name}.tsv"
        write_tsv(path, rows)
        custom = {"c": {"kind": spec["kind"], "tsv": str(path)}}
        assert check(benchmarks="c", custom_benchmarks=custom)["custom_benchmarks"]["c"], shape


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {
                "models": "mine",
                "custom_models": {"mine": {"family": "llava", "checkpoint": "/nowhere"}},
            },
            "custom_models['mine']: checkpoint '/nowhere' is not a checkpoint folder on the "
            "controller (no config.json in it)",
        ),
        (
            {
                "benchmarks": "POPE,mine",
                "custom_benchmarks": {"mine": {"kind": "mcq", "tsv": "/nowhere.tsv"}},
            },
            "custom_benchmarks['mine']: tsv '/nowhere.tsv' is not a file on the controller",
        ),
    ],
)
def test_a_refused_custom_entry_named_in_the_run_is_one_message(raw, message):
    with pytest.raises(EvalInputError) as err:
        check(**raw)
    assert str(err.value) == message


def test_unknown_names_are_offered_only_the_models_this_image_runs():
    with pytest.raises(EvalInputError) as err:
        check(models="gpt-4o")
    assert str(err.value) == f"unknown model 'gpt-4o'; valid models: {RUNS_HERE.split(': ')[1]}"
    # A refused model named is still answered with its own reason, and the case hint knows it.
    with pytest.raises(EvalInputError, match=r"'MiniCPM-V-2_6' \(family minicpm\) cannot run"):
        check(models="MiniCPM-V-2_6")
    with pytest.raises(EvalInputError, match=r"'internvl2-2b' \(did you mean 'InternVL2-2B'\?\)"):
        check(models="internvl2-2b")
