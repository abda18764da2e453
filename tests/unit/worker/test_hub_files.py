"""vlmfleet.families.hub_files: the files a remote-code repo's load reads, from its snapshot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from vlmfleet.families import hub_files


def snapshot(tmp_path: Path, shards: int) -> Path:
    """A snapshot laid out as InternVL2's: auto_map in config.json and tokenizer_config.json,
    a model module importing two others relatively (one of them importing a third)."""
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "auto_map": {
                    "AutoConfig": "configuration_internvl_chat.InternVLChatConfig",
                    "AutoModel": "modeling_internvl_chat.InternVLChatModel",
                }
            }
        )
    )
    (tmp_path / "tokenizer_config.json").write_text(
        json.dumps(
            {"auto_map": {"AutoTokenizer": ["tokenization_internlm2.InternLM2Tokenizer", None]}}
        )
    )
    (tmp_path / "modeling_internvl_chat.py").write_text(
        "from .conversation import get_conv_template\nfrom .modeling_intern_vit import X\n"
    )
    (tmp_path / "modeling_intern_vit.py").write_text("from .configuration_intern_vit import C\n")
    if shards:
        names = [f"model-{i:05d}-of-{shards:05d}.safetensors" for i in range(1, shards + 1)]
        index = {"weight_map": {f"w{i}": n for i, n in enumerate(names)}}
        (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    return tmp_path


def test_code_files_follow_auto_map_and_relative_imports(tmp_path: Path) -> None:
    assert hub_files.code_files(snapshot(tmp_path, 0)) == {
        "config.json",
        "tokenizer_config.json",
        "configuration_internvl_chat.py",
        "modeling_internvl_chat.py",
        "tokenization_internlm2.py",
        "conversation.py",
        "modeling_intern_vit.py",
        "configuration_intern_vit.py",
    }


def test_weight_files_are_the_index_and_its_shards_or_the_single_file(tmp_path: Path) -> None:
    single = tmp_path / "one"
    single.mkdir()
    assert hub_files.weight_files(snapshot(single, 0)) == {"model.safetensors"}
    sharded = tmp_path / "four"
    sharded.mkdir()
    assert hub_files.weight_files(snapshot(sharded, 4)) == {
        "model.safetensors.index.json",
        *(f"model-{i:05d}-of-00004.safetensors" for i in range(1, 5)),
    }


@pytest.mark.parametrize(
    ("env", "off"),
    [
        ({}, False),
        ({"HF_HUB_OFFLINE": "1"}, True),
        ({"TRANSFORMERS_OFFLINE": "true"}, True),
        ({"HF_HUB_OFFLINE": "0"}, False),
    ],
)
def test_downloads_are_off_as_the_hub_settings_say(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], off: bool
) -> None:
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert hub_files.downloads_off() is off
