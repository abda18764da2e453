"""The host's token file (contract.CONTAINER_SECRET_ENV), read into the worker's environment.

The run role mounts the host's ``.env`` there read-only when the host has one, so a worker loads
it when it exists and carries on without it otherwise. The file's values are secrets: no
message of this module ever shows a line of it, only key names and line numbers; and once
loaded, ``redact`` takes them out of every log line of the process (VLMEvalKit's OpenAI client
logs its key when it is built) and of every reason a status record gives.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable
from pathlib import Path

REDACTED = "[secret]"
_secrets: list[str] = []
_lock = threading.Lock()


class SecretEnvError(ValueError):
    """The token file is unreadable or not KEY=VALUE lines; the message never quotes it."""


def parse_env_file(text: str) -> dict[str, str]:
    """KEY=VALUE lines (optional 'export ', quotes, comments), as docker's --env-file reads."""
    env: dict[str, str] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise SecretEnvError(f"line {lineno}: expected KEY=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key] = value
    return env


def load_env_file(path: str | Path) -> list[str]:
    """Load the file at ``path`` into this process's environment, if it exists; return the key
    names set (none when there is no file)."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) else "not UTF-8 text"
        raise SecretEnvError(f"cannot read {path}: {reason}") from err
    try:
        env = parse_env_file(text)
    except SecretEnvError as err:
        raise SecretEnvError(f"{path}: {err}") from None
    os.environ.update(env)
    redact_in_logs(env.values())
    return sorted(env)


def redact(text: str) -> str:
    """``text`` with every loaded secret value replaced by REDACTED."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def redact_in_logs(secrets: Iterable[str]) -> None:
    """Take ``secrets`` out of every log record this process makes from now on, whichever
    logger or handler it goes to: the record factory formats the message (and the traceback)
    and redacts it before any handler sees it."""
    with _lock:
        new = [v for v in secrets if v and v not in _secrets]
        if not new:
            return
        first = not _secrets
        # Longest first, so a secret that contains another is replaced whole.
        _secrets[:] = sorted([*_secrets, *new], key=len, reverse=True)
    if first:
        make = logging.getLogRecordFactory()
        formatter = logging.Formatter()

        def factory(*args: object, **kwargs: object) -> logging.LogRecord:
            record = make(*args, **kwargs)
            record.msg, record.args = redact(record.getMessage()), ()
            if record.exc_info:
                record.exc_text = redact(formatter.formatException(record.exc_info))
            if record.stack_info:
                record.stack_info = redact(record.stack_info)
            return record

        logging.setLogRecordFactory(factory)
