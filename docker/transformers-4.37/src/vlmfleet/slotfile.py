"""Parse and validate slot.json (contract: docs/architecture.md). No torch imports here."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEVICES = ("cuda", "cpu")
KINDS = ("mcq", "yorn", "vqa")
JUDGES = ("exact_matching",)
# What a smoke unit loads: a known-answer checkpoint (vlmfleet.known_answer) or a tiny random one.
SMOKE_CHECKPOINTS = ("known-strong", "known-weak", "random")


class SlotFileError(ValueError):
    """The slot file is missing, unreadable or does not follow the contract."""


@dataclass(frozen=True)
class Benchmark:
    name: str
    kind: str


@dataclass(frozen=True)
class Unit:
    model: str
    benchmarks: tuple[Benchmark, ...]
    # Smoke runs only; a slot file without it means a tiny random checkpoint.
    smoke_checkpoint: str = "random"


@dataclass(frozen=True)
class Slot:
    run_id: str
    host: str
    slot: str
    device: str
    smoke: bool
    limit: int | None
    judge: str
    units: tuple[Unit, ...]
    env_file: str | None = None
    # Optional: a fixed answer length. Random weights never stop on their own, so smoke runs
    # and benchmarks cap generation; null keeps VLMEvalKit's own generation settings.
    max_new_tokens: int | None = None
    # Optional: a floor on the answer length (benchmarks fix the answer length with both).
    min_new_tokens: int | None = None
    # Optional: samples per generate call. 1 (default) is VLMEvalKit's own per-sample loop;
    # more goes through vlmfleet.batched (same prompts, same prediction file, one GPU call
    # per batch: batch 1 leaves an H100 mostly idle).
    batch_size: int = 1
    path: Path = field(default=Path("slot.json"), compare=False)

    @property
    def slot_dir(self) -> Path:
        return self.path.parent

    @property
    def run_host_dir(self) -> Path:
        """outputs/<run_id>/<host>/: the slot file lives in outputs/<run_id>/<host>/<slot>/."""
        return self.path.parent.parent

    def combinations(self) -> list[tuple[str, Benchmark]]:
        return [(u.model, b) for u in self.units for b in u.benchmarks]


def _need(data: dict[str, Any], key: str, types: type | tuple[type, ...], where: str) -> Any:
    if key not in data:
        raise SlotFileError(f"{where}: missing key {key!r}")
    value = data[key]
    # bool is an int subclass: never accept it where a number or string is meant.
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise SlotFileError(f"{where}: {key!r} must not be a boolean, got {value!r}")
    if not isinstance(value, types):
        raise SlotFileError(f"{where}: {key!r} has the wrong type: {value!r}")
    return value


def _name(value: str, key: str, where: str) -> str:
    if not value or "/" in value or value in (".", "..") or value != value.strip():
        raise SlotFileError(f"{where}: {key!r} must be a plain non-empty name, got {value!r}")
    return value


def _choice(value: str, key: str, valid: tuple[str, ...], where: str) -> str:
    if value not in valid:
        raise SlotFileError(f"{where}: {key} {value!r} is not valid; valid: {', '.join(valid)}")
    return value


def _optional_count(data: dict[str, Any], key: str, where: str) -> int | None:
    value = data.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise SlotFileError(f"{where}: {key} must be a positive integer or null, got {value!r}")
    return value


def parse_slot(data: Any, path: Path = Path("slot.json")) -> Slot:
    where = str(path)
    if not isinstance(data, dict):
        raise SlotFileError(f"{where}: top level must be an object")
    run_id = _name(_need(data, "run_id", str, where), "run_id", where)
    host = _name(_need(data, "host", str, where), "host", where)
    slot = _name(_need(data, "slot", str, where), "slot", where)
    device = _choice(_need(data, "device", str, where), "device", DEVICES, where)
    smoke = _need(data, "smoke", bool, where)
    limit = _need(data, "limit", (int, type(None)), where)
    if limit is not None and limit < 1:
        raise SlotFileError(f"{where}: limit must be a positive integer or null, got {limit!r}")
    judge = _choice(data.get("judge", "exact_matching"), "judge", JUDGES, where)
    env_file = data.get("env_file")
    if env_file is not None and not isinstance(env_file, str):
        raise SlotFileError(f"{where}: env_file must be a path string or null, got {env_file!r}")
    max_new = _optional_count(data, "max_new_tokens", where)
    min_new = _optional_count(data, "min_new_tokens", where)
    batch_size = _optional_count(data, "batch_size", where) or 1
    if max_new is not None and min_new is not None and min_new > max_new:
        raise SlotFileError(f"{where}: min_new_tokens {min_new} exceeds max_new_tokens {max_new}")
    units_raw = _need(data, "units", list, where)
    if not units_raw:
        raise SlotFileError(f"{where}: units must list at least one model")
    units = []
    seen: set[tuple[str, str]] = set()
    for i, unit in enumerate(units_raw):
        uw = f"{where}: units[{i}]"
        if not isinstance(unit, dict):
            raise SlotFileError(f"{uw} must be an object")
        model = _name(_need(unit, "model", str, uw), "model", uw)
        smoke_checkpoint = _choice(
            unit.get("smoke_checkpoint", "random"), "smoke_checkpoint", SMOKE_CHECKPOINTS, uw
        )
        benches_raw = _need(unit, "benchmarks", list, uw)
        if not benches_raw:
            raise SlotFileError(f"{uw}: benchmarks must list at least one benchmark")
        benches = []
        for j, bench in enumerate(benches_raw):
            bw = f"{uw}.benchmarks[{j}]"
            if not isinstance(bench, dict):
                raise SlotFileError(f"{bw} must be an object with name and kind")
            name = _name(_need(bench, "name", str, bw), "name", bw)
            kind = _choice(_need(bench, "kind", str, bw), "kind", KINDS, bw)
            if (model, name) in seen:
                raise SlotFileError(f"{bw}: combination {model}/{name} is listed twice")
            seen.add((model, name))
            benches.append(Benchmark(name, kind))
        units.append(Unit(model, tuple(benches), smoke_checkpoint))
    return Slot(
        run_id=run_id,
        host=host,
        slot=slot,
        device=device,
        smoke=smoke,
        limit=limit,
        judge=judge,
        units=tuple(units),
        env_file=env_file,
        max_new_tokens=max_new,
        min_new_tokens=min_new,
        batch_size=batch_size,
        path=path,
    )


def load_slot(path: Path) -> Slot:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise SlotFileError(f"cannot read slot file {path}: {err.strerror}") from err
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise SlotFileError(f"{path}: not valid JSON: {err}") from err
    return parse_slot(data, path.absolute())


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
            # Never echo the line: it may hold a secret.
            raise SlotFileError(f"env file line {lineno}: expected KEY=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key] = value
    return env


def load_env_file(path: str | None) -> list[str]:
    """Load the env file into this process's environment; return the key names set."""
    if not path:
        return []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise SlotFileError(f"cannot read env_file {path}: {err.strerror}") from err
    env = parse_env_file(text)
    os.environ.update(env)
    return sorted(env)
