"""slot.json as the worker reads it (vlmfleet.contract.load_slot), without torch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from vlmfleet.contract import ContractError as SlotFileError
from vlmfleet.contract import load_slot, parse_slot

POPE = {
    "name": "POPE",
    "kind": "yorn",
    "dataset_type": "Y/N",
    "score_scale": 100,
    "smoke_shape": "yorn_pope",
}


def good() -> dict:
    return {
        "run_id": "20261127T020000Z",
        "host": "gpu-01",
        "slot": "gpu0",
        "device": "cuda",
        "smoke": False,
        "limit": 10,
        "judge": "exact_matching",
        "max_new_tokens": None,
        "min_new_tokens": None,
        "batch_size": 8,
        "units": [
            {
                "model": "llava_v1.5_7b",
                "family": "llava",
                "benchmarks": [
                    {
                        "name": "MMBench_DEV_EN",
                        "kind": "mcq",
                        "dataset_type": "MCQ",
                        "score_scale": 1,
                        "smoke_shape": "mmbench",
                    },
                    dict(POPE),
                ],
            }
        ],
    }


def test_contract_example_parses(tmp_path: Path) -> None:
    path = tmp_path / "r" / "gpu-01" / "gpu0" / "slot.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(good()))
    slot = load_slot(path)
    assert slot.limit == 10 and slot.device == "cuda" and not slot.smoke
    assert [(u.model, b.name) for u, b in slot.combinations()] == [
        ("llava_v1.5_7b", "MMBench_DEV_EN"),
        ("llava_v1.5_7b", "POPE"),
    ]
    # Combination directories live beside the slot directories, under outputs/<run>/<host>/.
    assert slot.run_host_dir == path.parent.parent
    assert slot.max_new_tokens is None and slot.batch_size == 8
    # What the worker needs of each benchmark comes with it.
    pope = slot.units[0].benchmarks[1]
    assert (pope.dataset_type, pope.score_scale, pope.smoke_shape) == ("Y/N", 100.0, "yorn_pope")
    assert slot.units[0].family == "llava"
    # A unit without smoke_checkpoint loads a tiny random checkpoint in smoke mode.
    assert slot.units[0].smoke_checkpoint == "random"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"device": "tpu"}, "device 'tpu' is not valid; valid: cuda, cpu"),
        ({"limit": 0}, "limit must be a positive integer or null, got 0"),
        ({"limit": "10"}, "'limit' has the wrong type"),
        ({"limit": True}, "'limit' must not be a boolean"),
        ({"smoke": "yes"}, "'smoke' has the wrong type"),
        ({"judge": "gpt-4"}, "judge 'gpt-4' is not valid; valid: exact_matching, openai"),
        ({"judge": "openai"}, "judge 'openai' needs judge_model and judge_base_url"),
        (
            {"judge_model": "gpt-4o-mini", "judge_base_url": "http://h/v1"},
            "judge_model and judge_base_url apply to a judge model only",
        ),
        ({"units": []}, "units must list at least one model"),
        ({"run_id": "../x"}, "'run_id' must be a plain non-empty name"),
        ({"max_new_tokens": 0}, "max_new_tokens must be a positive integer or null, got 0"),
        ({"max_new_tokens": 4, "min_new_tokens": 8}, "min_new_tokens 8 exceeds max_new_tokens 4"),
        (
            {
                "units": [
                    {
                        "model": "m",
                        "family": "llava",
                        "smoke_checkpoint": "trained",
                        "benchmarks": [POPE],
                    }
                ]
            },
            "smoke_checkpoint 'trained' is not valid; valid: known-strong, known-weak, random",
        ),
    ],
)
def test_bad_values_are_named(change: dict, message: str) -> None:
    data = good() | change
    with pytest.raises(SlotFileError) as err:
        parse_slot(data)
    assert message in str(err.value)


def with_unit(**keys: object) -> dict:
    data = good()
    data["units"][0].update(keys)
    return data


def test_a_unit_names_the_hub_repo_its_family_loads_before_vlmevalkits_import() -> None:
    slot = parse_slot(with_unit(hf_repo="liuhaotian/llava-v1.5-7b"))
    assert slot.units[0].hf_repo == "liuhaotian/llava-v1.5-7b"
    assert parse_slot(good()).units[0].hf_repo is None


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"hf_repo": "llava-v1.5-7b"}, "hf_repo must be a hub id owner/name, got 'llava-v1.5-7b'"),
        ({"hf_repo": "a/b/c"}, "hf_repo must be a hub id owner/name, got 'a/b/c'"),
        ({"hf_repo": ""}, "'hf_repo' must be a non-empty string or absent, got ''"),
        (
            {"hf_repo": "liuhaotian/llava-v1.5-7b", "checkpoint": "/models/mine"},
            "a unit has a custom checkpoint or a hub repo (hf_repo), not both; got checkpoint "
            "'/models/mine' and hf_repo 'liuhaotian/llava-v1.5-7b'",
        ),
    ],
)
def test_a_bad_hub_repo_is_named(keys: dict, message: str) -> None:
    with pytest.raises(SlotFileError) as err:
        parse_slot(with_unit(**keys))
    assert message in str(err.value)


def test_a_benchmark_without_what_the_worker_needs_is_refused() -> None:
    data = good()
    del data["units"][0]["benchmarks"][1]["smoke_shape"]
    with pytest.raises(SlotFileError, match=r"benchmarks\[1\]: missing key 'smoke_shape'"):
        parse_slot(data)
    data = good()
    del data["units"][0]["family"]
    with pytest.raises(SlotFileError, match=r"units\[0\]: missing key 'family'"):
        parse_slot(data)


def test_missing_key_is_named() -> None:
    data = good()
    del data["host"]
    with pytest.raises(SlotFileError, match="missing key 'host'"):
        parse_slot(data)


def test_duplicate_combination_rejected() -> None:
    data = good()
    data["units"].append({"model": "llava_v1.5_7b", "family": "llava", "benchmarks": [POPE]})
    with pytest.raises(SlotFileError, match=r"llava_v1\.5_7b/POPE is listed twice"):
        parse_slot(data)


def test_unreadable_and_invalid_json(tmp_path: Path) -> None:
    with pytest.raises(SlotFileError, match="cannot read slot file"):
        load_slot(tmp_path / "nope.json")
    bad = tmp_path / "slot.json"
    bad.write_text("{not json")
    with pytest.raises(SlotFileError, match="not valid JSON"):
        load_slot(bad)


def test_a_judge_model_and_the_benchmarks_it_judges() -> None:
    data = good() | {
        "judge": "openai",
        "judge_model": "gpt-4o-mini",
        "judge_base_url": "http://judge.example:8000/v1",
    }
    data["units"][0]["benchmarks"][1]["judge"] = "openai"
    slot = parse_slot(data)
    assert (slot.judge, slot.judge_model, slot.judge_base_url) == (
        "openai",
        "gpt-4o-mini",
        "http://judge.example:8000/v1",
    )
    # A benchmark without its own judge is matched exactly.
    assert [b.judge for b in slot.units[0].benchmarks] == ["exact_matching", "openai"]
    # A benchmark cannot name a judge the slot has no model for.
    plain = good()
    plain["units"][0]["benchmarks"][1]["judge"] = "openai"
    with pytest.raises(
        SlotFileError, match="POPE has judge 'openai', the slot's is 'exact_matching'"
    ):
        parse_slot(plain)
    # The slot file has no key for the judge's key: a key there is another format's.
    with pytest.raises(SlotFileError, match="unknown key"):
        parse_slot(data | {"judge_api_key": "sk-x"})
