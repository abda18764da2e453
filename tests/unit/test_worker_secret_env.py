"""The host's token file, as the worker loads it (vlmfleet.secret_env), without torch."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from vlmfleet.secret_env import SecretEnvError, load_env_file, parse_env_file


def test_env_file_parsing_and_loading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = "# token\nHF_TOKEN=hf_secret\nexport OTHER='quoted value'\n\n"
    assert parse_env_file(text) == {"HF_TOKEN": "hf_secret", "OTHER": "quoted value"}
    env = tmp_path / "eval.env"
    env.write_text(text)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("OTHER", raising=False)
    assert load_env_file(env) == ["HF_TOKEN", "OTHER"]
    assert os.environ["HF_TOKEN"] == "hf_secret"
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.delenv("OTHER")


def test_a_host_without_a_token_file_loads_nothing(tmp_path: Path) -> None:
    assert load_env_file(tmp_path / "absent.env") == []


def test_errors_never_echo_a_line(tmp_path: Path) -> None:
    with pytest.raises(SecretEnvError) as err:
        parse_env_file("hf_secret_without_key\n")
    assert "hf_secret" not in str(err.value)
    assert "line 1" in str(err.value)
    binary = tmp_path / "eval.env"
    binary.write_bytes(b"HF_TOKEN=hf_\xffsecret\n")
    with pytest.raises(SecretEnvError, match="not UTF-8 text") as err:
        load_env_file(binary)
    assert "secret" not in str(err.value).replace(str(binary), "")
