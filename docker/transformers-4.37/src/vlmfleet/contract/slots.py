"""The slot file's schema: the planner builds it (`slot_file`), the run role only writes it,
the worker parses it (`parse_slot`)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ContractError
from .paths import SLOT_FILE
from .shards import SHARD_KEY, Shard, parse_shard

# Slot-file choices.
DEVICES = ("cuda", "cpu")
# A slot file's batch_size that is no number: the worker sizes each batch by the GPU memory the
# slot has left (a fixed small size on a CPU).
AUTO_BATCH = "auto"
# How answers are matched: VLMEvalKit's exact matching, or an OpenAI-compatible judge model
# (for the benchmarks whose VLMEvalKit evaluation asks one; the catalogue's kinds say which).
# EXACT_MATCHING is also the judge name VLMEvalKit's evaluate takes for its rules.
EXACT_MATCHING = "exact_matching"
JUDGES = (EXACT_MATCHING, "openai")
# Random weights never emit end-of-sequence on their own: a smoke run caps each answer at this
# many tokens unless the user sets max_new_tokens (the validation step and the worker both).
SMOKE_MAX_NEW_TOKENS = 16
# eval_gpu_slots: worker slots sharing each GPU, at most (the validation step's bound on a
# user's number and the planner's on its own choice).
MAX_GPU_SLOTS = 8
# The judge's key: its line in the host's token file (role eval_dirs writes it from
# eval_dirs_judge_api_key), never in a slot file, record or the container's environment.
JUDGE_KEY_ENV = "OPENAI_API_KEY"
# What a smoke unit loads: a known-answer checkpoint (vlmfleet.known_answer_checkpoints) or a
# tiny random one.
SMOKE_CHECKPOINTS = ("known-strong", "known-weak", "random")


@dataclass(frozen=True)
class Benchmark:
    name: str
    # The catalogue's kind, and what it declares: VLMEvalKit's dataset TYPE, what that type's
    # figures read when every question is right, and the smoke data's shape (vlmfleet.smoke_data).
    kind: str
    dataset_type: str
    score_scale: float
    smoke_shape: str
    # A custom benchmark's TSV md5 (the file the run ships to each host's LMUData); None for
    # VLMEvalKit's own datasets, which VLMEvalKit md5-checks itself.
    md5: str | None = None
    # How this benchmark's answers are matched: the slot's judge where VLMEvalKit's evaluation
    # of its kind asks one, else exact matching.
    judge: str = EXACT_MATCHING
    # A shard of the benchmark's rows, or None for the whole benchmark.
    shard: Shard | None = None
    # This benchmark's sample limit when it has its own (eval.yml's precision chooses one per
    # benchmark); None: the slot's limit.
    limit: int | None = None

    @property
    def label(self) -> str:
        """The benchmark's name, with its shard when it is one (logs, progress)."""
        return self.name if self.shard is None else f"{self.name}[{self.shard.name}]"


@dataclass(frozen=True)
class Unit:
    model: str
    family: str
    benchmarks: tuple[Benchmark, ...]
    # Smoke runs only.
    smoke_checkpoint: str = "random"
    # A custom model's checkpoint folder as the worker's container sees it; None for a
    # catalogue model, which its family resolves from VLMEvalKit's own entry.
    checkpoint: str | None = None
    # A catalogue model's hub repo (the catalogue's hf_repo): the family starts loading it
    # before VLMEvalKit's import, and checks VLMEvalKit's own entry names the same. None: the
    # path is VLMEvalKit's entry's, known only after the import.
    hf_repo: str | None = None


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
    # A fixed answer length, or None for VLMEvalKit's own generation settings.
    max_new_tokens: int | None = None
    # A floor on the answer length (the bench fixes the answer length with both).
    min_new_tokens: int | None = None
    # Samples per generate call: 1 is VLMEvalKit's own per-sample loop; AUTO_BATCH sizes them
    # by memory.
    batch_size: int | str = 1
    # Slots sharing this slot's GPUs (the planner's eval_gpu_slots): its share of their memory.
    shared_by: int = 1
    # The judge model and the OpenAI-compatible base URL it answers at (judge "openai" only).
    judge_model: str | None = None
    judge_base_url: str | None = None
    path: Path = field(default=Path(SLOT_FILE), compare=False)

    @property
    def slot_dir(self) -> Path:
        return self.path.parent

    @property
    def run_host_dir(self) -> Path:
        """outputs/<run_id>/<host>/: the slot file lives in outputs/<run_id>/<host>/<slot>/."""
        return self.path.parent.parent

    def combinations(self) -> list[tuple[Unit, Benchmark]]:
        return [(u, b) for u in self.units for b in u.benchmarks]

    def limit_of(self, bench: Benchmark) -> int | None:
        """The sample limit ``bench`` runs at: its own, else the slot's."""
        return bench.limit if bench.limit is not None else self.limit


def slot_file(
    *,
    run_id: str,
    host: str,
    slot: str,
    device: str,
    smoke: bool,
    limit: int | None,
    judge: str,
    max_new_tokens: int | None,
    batch_size: int | str,
    units: list[dict[str, Any]],
    min_new_tokens: int | None = None,
    judge_model: str | None = None,
    judge_base_url: str | None = None,
    shared_by: int = 1,
) -> dict[str, Any]:
    """A complete slot file, checked by the parser the worker uses (ContractError if not)."""
    data = {
        "run_id": run_id,
        "host": host,
        "slot": slot,
        "device": device,
        "smoke": smoke,
        "limit": limit,
        "judge": judge,
        "judge_model": judge_model,
        "judge_base_url": judge_base_url,
        "max_new_tokens": max_new_tokens,
        "min_new_tokens": min_new_tokens,
        "batch_size": batch_size,
        "shared_by": shared_by,
        "units": units,
    }
    parse_slot(data, Path(f"{host}/{slot}/{SLOT_FILE}"))
    return data


def official_benchmarks(slots: Iterable[Slot]) -> list[str]:
    """The benchmarks of real-mode slots that VLMEvalKit's own data serves (no custom file
    shipped: no md5), in order, once each: what a host's data preparation prepares."""
    names: dict[str, None] = {}
    for slot in slots:
        if slot.smoke:
            continue
        for unit in slot.units:
            for bench in unit.benchmarks:
                if bench.md5 is None:
                    names[bench.name] = None
    return list(names)


def slot_total(data: Any) -> int:
    """Combinations in a slot file's data (0 when it is not one)."""
    try:
        return len(parse_slot(data).combinations())
    except ContractError:
        return 0


def _need(data: Mapping[str, Any], key: str, types: Any, where: str) -> Any:
    if key not in data:
        raise ContractError(f"{where}: missing key {key!r}")
    value = data[key]
    allowed = types if isinstance(types, tuple) else (types,)
    # bool is an int subclass: never accept it where a number or string is meant.
    if isinstance(value, bool) and bool not in allowed:
        raise ContractError(f"{where}: {key!r} must not be a boolean, got {value!r}")
    if not isinstance(value, allowed):
        raise ContractError(f"{where}: {key!r} has the wrong type: {value!r}")
    return value


def _name(value: str, key: str, where: str) -> str:
    if not value or "/" in value or value in (".", "..") or value != value.strip():
        raise ContractError(f"{where}: {key!r} must be a plain non-empty name, got {value!r}")
    return value


def _choice(value: str, key: str, valid: tuple[str, ...], where: str) -> str:
    if value not in valid:
        raise ContractError(f"{where}: {key} {value!r} is not valid; valid: {', '.join(valid)}")
    return value


def _optional_count(data: Mapping[str, Any], key: str, where: str) -> int | None:
    value = _need(data, key, (int, type(None)), where)
    if value is not None and value < 1:
        raise ContractError(f"{where}: {key} must be a positive integer or null, got {value!r}")
    return value


SLOT_KEYS = (
    "run_id",
    "host",
    "slot",
    "device",
    "smoke",
    "limit",
    "judge",
    "judge_model",
    "judge_base_url",
    "max_new_tokens",
    "min_new_tokens",
    "batch_size",
    "shared_by",
    "units",
)
UNIT_KEYS = (
    "model",
    "family",
    "benchmarks",
    "smoke_checkpoint",
    "checkpoint",
    "hf_repo",
)
BENCHMARK_KEYS = (
    "name",
    "kind",
    "dataset_type",
    "score_scale",
    "smoke_shape",
    "md5",
    "judge",
    SHARD_KEY,
    "limit",
)


def _only(data: Mapping[str, Any], keys: tuple[str, ...], where: str) -> None:
    """A key the contract does not know is another format's: fail loudly, never ignore it."""
    unknown = [k for k in data if k not in keys]
    if unknown:
        raise ContractError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; valid: {', '.join(keys)}"
        )


def _optional_text(data: Mapping[str, Any], key: str, where: str) -> str | None:
    value = data.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise ContractError(f"{where}: {key!r} must be a non-empty string or absent, got {value!r}")
    return value


def _hub_repo(unit: Mapping[str, Any], where: str) -> str | None:
    """A unit's hf_repo: "owner/name", and never beside a custom checkpoint."""
    repo = _optional_text(unit, "hf_repo", where)
    if repo is None:
        return None
    if unit.get("checkpoint") is not None:
        raise ContractError(
            f"{where}: a unit has a custom checkpoint or a hub repo (hf_repo), not both; "
            f"got checkpoint {unit['checkpoint']!r} and hf_repo {repo!r}"
        )
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise ContractError(f"{where}: hf_repo must be a hub id owner/name, got {repo!r}")
    return repo


def _benchmark(data: Any, where: str) -> Benchmark:
    if not isinstance(data, dict):
        raise ContractError(f"{where} must be an object")
    _only(data, BENCHMARK_KEYS, where)
    scale = _need(data, "score_scale", (int, float), where)
    if scale <= 0:
        raise ContractError(f"{where}: score_scale must be positive, got {scale!r}")
    return Benchmark(
        name=_name(_need(data, "name", str, where), "name", where),
        kind=_name(_need(data, "kind", str, where), "kind", where),
        dataset_type=_need(data, "dataset_type", str, where),
        score_scale=float(scale),
        smoke_shape=_name(_need(data, "smoke_shape", str, where), "smoke_shape", where),
        md5=_optional_text(data, "md5", where),
        judge=_choice(data.get("judge", EXACT_MATCHING), "judge", JUDGES, where),
        shard=parse_shard(data[SHARD_KEY], where) if data.get(SHARD_KEY) is not None else None,
        limit=_optional_count(data, "limit", where) if "limit" in data else None,
    )


def _judge(data: Mapping[str, Any], judge: str, units: list[Unit], where: str) -> tuple[Any, Any]:
    """The judge model and base URL: both given for the judge "openai", neither otherwise; a
    benchmark's own judge is exact matching or the slot's."""
    model = _optional_text(data, "judge_model", where)
    base_url = _optional_text(data, "judge_base_url", where)
    if judge == EXACT_MATCHING and (model or base_url):
        raise ContractError(f"{where}: judge_model and judge_base_url apply to a judge model only")
    if judge != EXACT_MATCHING and not (model and base_url):
        raise ContractError(f"{where}: judge {judge!r} needs judge_model and judge_base_url")
    for unit in units:
        for bench in unit.benchmarks:
            if bench.judge not in (EXACT_MATCHING, judge):
                raise ContractError(
                    f"{where}: {unit.model}/{bench.name} has judge {bench.judge!r}, "
                    f"the slot's is {judge!r}"
                )
    return model, base_url


def _generation(data: Mapping[str, Any], where: str) -> tuple[Any, Any, Any]:
    """max_new_tokens, min_new_tokens and batch_size."""
    max_new = _optional_count(data, "max_new_tokens", where)
    # Optional: the bench fixes the answer length with both; the planner leaves it null.
    min_new = _optional_count(data, "min_new_tokens", where) if "min_new_tokens" in data else None
    if max_new is not None and min_new is not None and min_new > max_new:
        raise ContractError(f"{where}: min_new_tokens {min_new} exceeds max_new_tokens {max_new}")
    batch_size = _need(data, "batch_size", (int, str), where)
    if batch_size != AUTO_BATCH and (isinstance(batch_size, str) or batch_size < 1):
        raise ContractError(
            f"{where}: batch_size must be a positive integer or {AUTO_BATCH!r}, got {batch_size!r}"
        )
    return max_new, min_new, batch_size


def _unit_benchmarks(
    unit: Mapping[str, Any],
    model: str,
    uw: str,
    seen: set[tuple[str, str]],
    sharded: set[tuple[str, str]],
) -> tuple[Benchmark, ...]:
    """A unit's benchmarks; ``seen`` and ``sharded`` hold the slot's combinations so far."""
    benches_raw = _need(unit, "benchmarks", list, uw)
    if not benches_raw:
        raise ContractError(f"{uw}: benchmarks must list at least one benchmark")
    benches = []
    for j, raw in enumerate(benches_raw):
        bench = _benchmark(raw, f"{uw}.benchmarks[{j}]")
        # Several shards of one benchmark may share a slot; the whole one comes alone.
        key = (model, bench.label)
        whole = (model, bench.name)
        if key in seen or (bench.shard is None and whole in sharded) or whole in seen:
            raise ContractError(f"{uw}: combination {model}/{bench.label} is listed twice")
        if bench.shard is None:
            seen.add(whole)
        else:
            seen.add(key)
            sharded.add(whole)
        benches.append(bench)
    return tuple(benches)


def _units(data: Mapping[str, Any], where: str) -> tuple[Unit, ...]:
    units_raw = _need(data, "units", list, where)
    if not units_raw:
        raise ContractError(f"{where}: units must list at least one model")
    units = []
    seen: set[tuple[str, str]] = set()
    sharded: set[tuple[str, str]] = set()
    for i, unit in enumerate(units_raw):
        uw = f"{where}: units[{i}]"
        if not isinstance(unit, dict):
            raise ContractError(f"{uw} must be an object")
        _only(unit, UNIT_KEYS, uw)
        model = _name(_need(unit, "model", str, uw), "model", uw)
        units.append(
            Unit(
                model=model,
                family=_name(_need(unit, "family", str, uw), "family", uw),
                benchmarks=_unit_benchmarks(unit, model, uw, seen, sharded),
                smoke_checkpoint=_choice(
                    unit.get("smoke_checkpoint", "random"),
                    "smoke_checkpoint",
                    SMOKE_CHECKPOINTS,
                    uw,
                ),
                checkpoint=_optional_text(unit, "checkpoint", uw),
                hf_repo=_hub_repo(unit, uw),
            )
        )
    return tuple(units)


def parse_slot(data: Any, path: Path = Path(SLOT_FILE)) -> Slot:
    where = str(path)
    if not isinstance(data, dict):
        raise ContractError(f"{where}: top level must be an object")
    _only(data, SLOT_KEYS, where)
    max_new, min_new, batch_size = _generation(data, where)
    # Optional: slot files written before slots knew their share of a GPU.
    shared_by = _optional_count(data, "shared_by", where) if "shared_by" in data else None
    units = _units(data, where)
    judge = _choice(_need(data, "judge", str, where), "judge", JUDGES, where)
    judge_model, judge_base_url = _judge(data, judge, list(units), where)
    return Slot(
        run_id=_name(_need(data, "run_id", str, where), "run_id", where),
        host=_name(_need(data, "host", str, where), "host", where),
        slot=_name(_need(data, "slot", str, where), "slot", where),
        device=_choice(_need(data, "device", str, where), "device", DEVICES, where),
        smoke=_need(data, "smoke", bool, where),
        limit=_optional_count(data, "limit", where),
        judge=judge,
        judge_model=judge_model,
        judge_base_url=judge_base_url,
        units=units,
        max_new_tokens=max_new,
        min_new_tokens=min_new,
        batch_size=batch_size,
        shared_by=shared_by or 1,
        path=path,
    )


def load_slot(path: str | Path) -> Slot:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ContractError(f"cannot read slot file {path}: {err.strerror}") from err
    try:
        data = json.loads(text)
    except ValueError as err:
        raise ContractError(f"{path}: not valid JSON: {err}") from err
    return parse_slot(data, path.absolute())
