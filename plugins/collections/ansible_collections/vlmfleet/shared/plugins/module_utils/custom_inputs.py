"""The run's own models and benchmarks (custom_models, custom_benchmarks), checked on the
controller by eval.yml's validation step (plugins/filter/eval_inputs.py) before any host is
touched: each problem is appended to ``errors`` naming the value and what would be valid.

Controller-only; in the project collection so that the validation filter imports it.
"""

from __future__ import annotations

import ast
import csv
import hashlib
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

# Custom models and benchmarks: names safe as directory names, never a catalogue name.
CUSTOM_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# A custom model's GPU memory when not given: its weights' size with this much to spare.
CUSTOM_MEMORY_FACTOR = 1.2
# The catalogue's cost unit for a model load: a 7B LLaVA-1.5 (14 GiB) loads at 127.
LOAD_COST_PER_GIB = 127 / 14
# Columns VLMEvalKit's datasets read, by VLMEvalKit type; an image is "image" or "image_path".
CUSTOM_COLUMNS = {"MCQ": ("index", "question", "answer", "A", "B"), "Y/N": ("index", "question",
                  "answer"), "VQA": ("index", "question", "answer")}  # fmt: skip
YES_NO = ("Yes", "No")
# VLMEvalKit scores a VQA benchmark without a metric of its own with the VQA score: per question
# min(1, other annotators who gave the prediction / 3), left-one-out over its answers. A question
# needs this many answers for a right prediction to score 1 (a single answer always scores 0).
VQA_MIN_ANSWERS = 4


def _custom_name(name: Any, what: str, taken: Iterable[str], errors: list[str]) -> bool:
    if not isinstance(name, str) or not CUSTOM_NAME_RE.match(name):
        errors.append(
            f"{what} name {name!r} is not usable: 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
        return False
    if name in taken:
        errors.append(
            f"{what} name {name!r} is a catalogue name; give your own {what.split('_')[1][:-1]} "
            "another name"
        )
        return False
    return True


def _custom_entries(raw: Any, what: str, errors: list[str]) -> Mapping[str, Any]:
    """custom_models / custom_benchmarks as given: a mapping of names to entries, or unset."""
    if raw in (None, "", {}):
        return {}
    if not isinstance(raw, Mapping):
        errors.append(f"{what} must be a mapping of names to entries, got {raw!r}")
        return {}
    return raw


def _folder_gib(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**30


def check_custom_models(
    raw: Any, catalogue: Mapping[str, Any], errors: list[str]
) -> dict[str, dict[str, Any]]:
    """custom_models: {name: {family, checkpoint (a folder on the controller, shipped to the
    hosts that run it), gpu_memory_gib (optional)}} -> catalogue entries."""
    families = catalogue["catalogue_families"]
    able = [f for f, spec in families.items() if spec.get("custom_checkpoint")]
    out = {}
    for name, entry in _custom_entries(raw, "custom_models", errors).items():
        if not _custom_name(name, "custom_models", catalogue["catalogue_models"], errors):
            continue
        if not isinstance(entry, Mapping):
            errors.append(f"custom_models[{name!r}] must be a mapping, got {entry!r}")
            continue
        family = entry.get("family")
        if family not in able:
            errors.append(
                f"custom_models[{name!r}]: family {family!r} cannot load a checkpoint of your "
                f"own; families that can: {', '.join(able)}"
            )
            continue
        checkpoint = Path(str(entry.get("checkpoint") or "")).expanduser().absolute()
        if not entry.get("checkpoint") or not (checkpoint / "config.json").is_file():
            errors.append(
                f"custom_models[{name!r}]: checkpoint {entry.get('checkpoint')!r} is not a "
                "checkpoint folder on the controller (no config.json in it)"
            )
            continue
        size = _folder_gib(checkpoint)
        memory = entry.get("gpu_memory_gib", round(max(size * CUSTOM_MEMORY_FACTOR, 0.1), 1))
        if isinstance(memory, bool) or not isinstance(memory, int | float) or memory <= 0:
            errors.append(
                f"custom_models[{name!r}]: gpu_memory_gib must be a positive number, got {memory!r}"
            )
            continue
        out[name] = {
            "family": family,
            "checkpoint": str(checkpoint),
            "hf_repo": None,
            "params_b": None,
            "gpu_memory_gib": float(memory),
            "disk_gib": round(size, 3),
            "gated": False,
            "load_cost": max(1.0, round(size * LOAD_COST_PER_GIB, 1)),
            "cost_factor": 1.0,
            "custom": True,
        }
    return out


def _tsv_facts(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """A TSV's header and rows (VLMEvalKit's TSVs hold base64 images: fields can be large)."""
    csv.field_size_limit(sys.maxsize)
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def _vqa_answers_ok(text: str) -> bool:
    try:
        answers = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return False
    return isinstance(answers, list) and len(answers) >= VQA_MIN_ANSWERS


def check_custom_benchmarks(
    raw: Any, catalogue: Mapping[str, Any], errors: list[str]
) -> dict[str, dict[str, Any]]:
    """custom_benchmarks: {name: {kind, tsv (a file on the controller in VLMEvalKit's TSV
    format, shipped to each host's LMUData)}} -> catalogue entries with the file's md5."""
    kinds = catalogue["catalogue_kinds"]
    out = {}
    for name, entry in _custom_entries(raw, "custom_benchmarks", errors).items():
        if not _custom_name(name, "custom_benchmarks", catalogue["catalogue_benchmarks"], errors):
            continue
        if not isinstance(entry, Mapping) or entry.get("kind") not in kinds:
            kind = entry.get("kind") if isinstance(entry, Mapping) else entry
            errors.append(
                f"custom_benchmarks[{name!r}]: kind {kind!r} is not valid; valid: "
                f"{', '.join(kinds)}"
            )
            continue
        tsv = Path(str(entry.get("tsv") or "")).expanduser().absolute()
        if not entry.get("tsv") or not tsv.is_file():
            errors.append(
                f"custom_benchmarks[{name!r}]: tsv {entry.get('tsv')!r} is not a file on the "
                "controller"
            )
            continue
        try:
            header, rows = _tsv_facts(tsv)
        except (OSError, UnicodeDecodeError, csv.Error) as err:
            errors.append(f"custom_benchmarks[{name!r}]: {tsv} is not a readable TSV: {err}")
            continue
        dataset_type = kinds[entry["kind"]]["dataset_type"]
        missing = [c for c in CUSTOM_COLUMNS.get(dataset_type, ()) if c not in header]
        if "image" not in header and "image_path" not in header:
            missing.append("image (or image_path)")
        if missing or not rows:
            errors.append(
                f"custom_benchmarks[{name!r}]: {tsv} lacks "
                + (f"the columns {', '.join(missing)}" if missing else "rows")
                + f" that VLMEvalKit's {dataset_type} datasets read"
            )
            continue
        if dataset_type == "Y/N" and any(r["answer"] not in YES_NO for r in rows):
            bad = next(r["answer"] for r in rows if r["answer"] not in YES_NO)
            errors.append(
                f"custom_benchmarks[{name!r}]: answer {bad!r} in {tsv}; a yes/no benchmark's "
                f"answers are {' or '.join(YES_NO)}"
            )
            continue
        if dataset_type == "VQA":
            bad = next((r for r in rows if not _vqa_answers_ok(r["answer"])), None)
            if bad is not None:
                errors.append(
                    f"custom_benchmarks[{name!r}]: answer {bad['answer'][:80]!r} (index "
                    f"{bad['index']}) in {tsv}: VLMEvalKit scores a custom VQA benchmark with the "
                    f"VQA score, which needs each question's annotators' answers as a list of at "
                    f"least {VQA_MIN_ANSWERS} (e.g. ['red', 'red', 'red', 'red']); a single answer "
                    "always scores 0"
                )
                continue
        out[name] = {
            "kind": entry["kind"],
            "tsv": str(tsv),
            "md5": hashlib.md5(tsv.read_bytes(), usedforsecurity=False).hexdigest(),
            "samples": len(rows),
            "cost_per_sample": 1.0,
            "custom": True,
        }
    return out
