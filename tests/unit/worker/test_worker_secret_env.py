"""The host's token file, as the worker loads it (vlmfleet.secret_env), without torch."""

from __future__ import annotations

import logging
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


@pytest.fixture
def fresh_redaction(monkeypatch: pytest.MonkeyPatch):
    """The process's redaction as a fresh worker has it; the logging factory put back after."""
    from vlmfleet import secret_env

    monkeypatch.setattr(secret_env, "_secrets", [])
    factory = logging.getLogRecordFactory()
    yield secret_env
    logging.setLogRecordFactory(factory)


def test_loaded_secrets_never_reach_a_log_line_or_a_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_redaction, caplog
) -> None:
    key = "sk-stand-in-0123456789"
    env = tmp_path / "eval.env"
    env.write_text(f"HF_TOKEN=hf_secret\nOPENAI_API_KEY={key}\n")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert load_env_file(env) == ["HF_TOKEN", "OPENAI_API_KEY"]
    caplog.set_level(logging.INFO)
    # VLMEvalKit's OpenAIWrapper logs its key when it is built (vlmeval/api/gpt.py).
    logging.getLogger("vlmeval.api.gpt").info(f"Using API Base: http://x/v1; API Key: {key}")
    logging.getLogger("other").warning("headers %s", {"Authorization": f"Bearer {key}"})
    try:
        raise RuntimeError(f"request failed with {key} and hf_secret")
    except RuntimeError:
        logging.getLogger("other").exception("judge call")
    text = caplog.text + "".join(logging.Formatter().format(r) for r in caplog.records)
    assert key not in text and "hf_secret" not in text
    assert text.count(fresh_redaction.REDACTED) >= 4
    assert fresh_redaction.redact(f"Bearer {key}") == f"Bearer {fresh_redaction.REDACTED}"
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.delenv("OPENAI_API_KEY")
