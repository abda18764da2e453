"""slot.json parsing and validation (docs/architecture.md), without torch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from vlmfleet.slotfile import SlotFileError, load_env_file, load_slot, parse_env_file, parse_slot


def good() -> dict:
    return {
        "run_id": "20261127T020000Z",
        "host": "gpu-01",
        "slot": "gpu0",
        "device": "cuda",
        "smoke": False,
        "limit": 10,
        "judge": "exact_matching",
        "env_file": "/run/secrets/eval.env",
        "units": [
            {
                "model": "llava_v1.5_7b",
                "benchmarks": [
                    {"name": "MMBench_DEV_EN", "kind": "mcq"},
                    {"name": "POPE", "kind": "yorn"},
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
    assert [(m, b.name) for m, b in slot.combinations()] == [
        ("llava_v1.5_7b", "MMBench_DEV_EN"),
        ("llava_v1.5_7b", "POPE"),
    ]
    # Combination directories live beside the slot directories, under outputs/<run>/<host>/.
    assert slot.run_host_dir == path.parent.parent
    assert slot.max_new_tokens is None
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
        ({"judge": "gpt-4"}, "judge 'gpt-4' is not valid; valid: exact_matching"),
        ({"units": []}, "units must list at least one model"),
        ({"run_id": "../x"}, "'run_id' must be a plain non-empty name"),
        ({"max_new_tokens": 0}, "max_new_tokens must be a positive integer or null, got 0"),
        ({"max_new_tokens": 4, "min_new_tokens": 8}, "min_new_tokens 8 exceeds max_new_tokens 4"),
        (
            {
                "units": [
                    {
                        "model": "m",
                        "smoke_checkpoint": "trained",
                        "benchmarks": [{"name": "POPE", "kind": "yorn"}],
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


def test_bad_kind_names_the_valid_ones() -> None:
    data = good()
    data["units"][0]["benchmarks"][1]["kind"] = "caption"
    with pytest.raises(SlotFileError, match=r"kind 'caption' is not valid; valid: mcq, yorn, vqa"):
        parse_slot(data)


def test_missing_key_is_named() -> None:
    data = good()
    del data["host"]
    with pytest.raises(SlotFileError, match="missing key 'host'"):
        parse_slot(data)


def test_duplicate_combination_rejected() -> None:
    data = good()
    data["units"].append(
        {"model": "llava_v1.5_7b", "benchmarks": [{"name": "POPE", "kind": "yorn"}]}
    )
    with pytest.raises(SlotFileError, match=r"llava_v1\.5_7b/POPE is listed twice"):
        parse_slot(data)


def test_unreadable_and_invalid_json(tmp_path: Path) -> None:
    with pytest.raises(SlotFileError, match="cannot read slot file"):
        load_slot(tmp_path / "nope.json")
    bad = tmp_path / "slot.json"
    bad.write_text("{not json")
    with pytest.raises(SlotFileError, match="not valid JSON"):
        load_slot(bad)


def test_env_file_parsing_and_loading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = "# token\nHF_TOKEN=hf_secret\nexport OTHER='quoted value'\n\n"
    assert parse_env_file(text) == {"HF_TOKEN": "hf_secret", "OTHER": "quoted value"}
    env = tmp_path / "eval.env"
    env.write_text(text)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    assert load_env_file(str(env)) == ["HF_TOKEN", "OTHER"]
    import os

    assert os.environ["HF_TOKEN"] == "hf_secret"
    monkeypatch.delenv("OTHER")


def test_env_file_error_never_echoes_the_line() -> None:
    with pytest.raises(SlotFileError) as err:
        parse_env_file("hf_secret_without_key\n")
    assert "hf_secret" not in str(err.value)
    assert "line 1" in str(err.value)
