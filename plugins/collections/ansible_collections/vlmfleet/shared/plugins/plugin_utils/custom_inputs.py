"""The run's own models and benchmarks (custom_models, custom_benchmarks), checked on the
controller by eval.yml's validation step (plugin_utils/inputs.py) before any host is
touched: each problem is appended to ``errors`` naming the value and what would be valid.

Controller-only; in the project collection so that the validation filter imports it.
"""

from __future__ import annotations

import ast
import base64
import binascii
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
# Columns VLMEvalKit's datasets read, by VLMEvalKit type; an image is "image" or "image_path".
CUSTOM_COLUMNS = {"MCQ": ("index", "question", "answer", "A", "B"), "Y/N": ("index", "question",
                  "answer"), "VQA": ("index", "question", "answer")}  # fmt: skip
YES_NO = ("Yes", "No")
# VLMEvalKit scores a VQA benchmark without a metric of its own with the VQA score: per question
# min(1, other annotators who gave the prediction / 3), left-one-out over its answers. A question
# needs this many answers for a right prediction to score 1 (a single answer always scores 0).
VQA_MIN_ANSWERS = 4
# VLMEvalKit's ImageBaseDataset reads an image value this long or shorter as the index of the
# row whose image it shares (MMBench's circular copies), a longer one as base64 image data.
IMAGE_REF_MAX_CHARS = 64
# The formats a custom benchmark's images may have, told by the bytes their files begin with
# (WebP: RIFF....WEBP, in image_format): common ones that Pillow, which decodes them on the
# hosts, opens; read with the standard library, so the controller needs no imaging library.
IMAGE_MAGIC = {
    "PNG": (b"\x89PNG\r\n\x1a\n",),
    "JPEG": (b"\xff\xd8\xff",),
    "GIF": (b"GIF87a", b"GIF89a"),
    "BMP": (b"BM",),
    "TIFF": (b"II*\x00", b"MM\x00*"),
}
IMAGE_VALID = (
    "an image is a base64-encoded PNG, JPEG, GIF, WebP, BMP or TIFF file (more than "
    f"{IMAGE_REF_MAX_CHARS} characters), a list of them (['<base64>', '<base64>']), or the index "
    f"of another row whose image it shares (at most {IMAGE_REF_MAX_CHARS} characters)"
)
NOT_BASE64_RE = re.compile(r"[^A-Za-z0-9+/=]")
# pandas reads a column of whole numbers as integers.
INTEGER_RE = re.compile(r"^\s*[+-]?\d+\s*$")


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


def load_cost_per_gib(catalogue: Mapping[str, Any], family: str) -> float:
    """What loading a GiB of ``family``'s weights costs, as the catalogue's models of the family
    (else all of its models) load: a custom checkpoint is costed by its size alone."""
    models = list(catalogue["catalogue_models"].values())
    kin = [m for m in models if m.get("family") == family] or models
    return sum(float(m["load_cost"]) for m in kin) / sum(float(m["disk_gib"]) for m in kin)


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
            "load_cost": max(1.0, round(size * load_cost_per_gib(catalogue, family), 1)),
            "cost_factor": 1.0,
            "custom": True,
        }
    return out


def image_format(data: bytes) -> str | None:
    """The image format ``data`` begins with (IMAGE_MAGIC, WebP), or None."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return next(
        (name for name, magics in IMAGE_MAGIC.items() if data.startswith(magics)),
        None,
    )


def _base64_problem(text: str) -> tuple[bytes | None, str | None]:
    """(the decoded bytes, None), or (None, what is wrong with ``text`` as base64)."""
    try:
        return base64.b64decode(text, validate=True), None
    except binascii.Error as err:
        bad = NOT_BASE64_RE.search(text)
        if bad is None:
            return None, f"is not base64 ({err})"
        return None, (
            f"is not base64: character {bad.start() + 1} is {bad.group()!r} "
            "(base64 is A-Z, a-z, 0-9, '+' and '/', with '=' padding)"
        )


def image_problem(value: str) -> str | None:
    """What is wrong with ``value`` as an image VLMEvalKit decodes (one base64 image, or a
    list of them written as a Python list), or None. A value of at most IMAGE_REF_MAX_CHARS
    characters is a reference to another row, checked by image_reference_problem."""
    if value.startswith("[") and value.endswith("]"):
        try:
            images = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            images = None
        if not isinstance(images, list | tuple) or not images:
            return "starts with '[' but is not a list of base64 images"
        for n, image in enumerate(images, 1):
            problem = image_problem(str(image))
            if problem:
                return f"image {n} of the list {problem}"
        return None
    data, problem = _base64_problem(value)
    if data is None:
        return problem
    if image_format(data) is None:
        return f"decodes to {len(data)} bytes that are not an image (they begin {data[:8]!r})"
    return None


def _index_keys(indexes: list[str]) -> list[str]:
    """Each row's index as VLMEvalKit compares it: pandas reads an all-integer index column
    as integers ('007' is 7), any other as text."""
    if all(INTEGER_RE.match(i) for i in indexes):
        return [str(int(i)) for i in indexes]
    return indexes


def duplicate_index(indexes: list[str]) -> tuple[int, int] | None:
    """The first row whose index an earlier row has, as (row, that earlier row), or None:
    VLMEvalKit keys images and answers by index."""
    first: dict[str, int] = {}
    for row, key in enumerate(_index_keys(indexes)):
        if key in first:
            return row, first[key]
        first[key] = row
    return None


def image_reference_problem(
    indexes: list[str], lines: list[int], references: Mapping[int, str]
) -> tuple[int, str] | None:
    """The first row whose image is a reference VLMEvalKit cannot resolve, as (row, what is
    wrong), or None. ``indexes``, ``lines``: every row's index and line in file order, each
    index once; ``references``: row -> its image of at most IMAGE_REF_MAX_CHARS characters.
    As ImageBaseDataset.__init__ resolves them, in file order: a reference names another row's
    index, whose image is base64 image data or a reference resolved before (an earlier row's)."""
    rows = {key: row for row, key in enumerate(_index_keys(indexes))}
    for row in sorted(references):
        ref = references[row]
        target = rows.get(ref)
        if target is None:
            return row, (
                f"{ref!r} is read as a reference (VLMEvalKit reads a value of at most "
                f"{IMAGE_REF_MAX_CHARS} characters as another row's index), and no row has that "
                "index"
            )
        if target in references and target >= row:
            return row, (
                f"{ref!r} refers to line {lines[target]}, whose image is a reference itself, not "
                "resolved before this row; refer to the row that holds the image"
            )
    return None


def _md5(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, lambda: hashlib.md5(usedforsecurity=False)).hexdigest()


def _vqa_answers_ok(text: str) -> bool:
    try:
        answers = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return False
    return isinstance(answers, list) and len(answers) >= VQA_MIN_ANSWERS


def answer_problem(answer: str, dataset_type: str) -> str | None:
    """What is wrong with a row's answer for VLMEvalKit's scorer of ``dataset_type``, or None."""
    if dataset_type == "Y/N" and answer not in YES_NO:
        return f"{answer!r}; a yes/no benchmark's answers are {' or '.join(YES_NO)}"
    if dataset_type == "VQA" and not _vqa_answers_ok(answer):
        return (
            f"{answer[:80]!r}: VLMEvalKit scores a custom VQA benchmark with the VQA score, which "
            "needs each question's annotators' answers as a list of at least "
            f"{VQA_MIN_ANSWERS} (e.g. ['red', 'red', 'red', 'red']); a single answer always "
            "scores 0"
        )
    return None


def row_problem(
    fields: Mapping[str, str | None], dataset_type: str, image_column: bool
) -> tuple[str, str | None]:
    """(column, what is wrong with it) for a TSV row's answer and image, or (column, None);
    an image short enough to be a reference is left to image_reference_problem."""
    problem = answer_problem(fields.get("answer") or "", dataset_type)
    if problem or not image_column:
        return "answer", problem
    image = fields.get("image") or ""
    if not image:
        return "image", f"is empty (VLMEvalKit would drop the row); {IMAGE_VALID}"
    if len(image) > IMAGE_REF_MAX_CHARS and (problem := image_problem(image)):
        return "image", f"{problem}; {IMAGE_VALID}"
    return "image", None


def tsv_problem(path: Path, dataset_type: str) -> tuple[str | None, int]:
    """The first problem of a custom benchmark's TSV for VLMEvalKit's ``dataset_type``
    datasets and 0, or None and its number of rows. Rows are read one at a time (a TSV holds
    every image in base64), each image decoded in full."""
    csv.field_size_limit(sys.maxsize)
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        header = list(reader.fieldnames or [])
        missing = [c for c in CUSTOM_COLUMNS.get(dataset_type, ()) if c not in header]
        if "image" not in header and "image_path" not in header:
            missing.append("image (or image_path)")
        if missing:
            return f"{path} lacks the columns {', '.join(missing)} {_read_by(dataset_type)}", 0
        indexes: list[str] = []
        lines: list[int] = []
        references: dict[int, str] = {}
        for row, fields in enumerate(reader):
            indexes.append(fields.get("index") or "")
            lines.append(reader.line_num)
            column, problem = row_problem(fields, dataset_type, "image" in header)
            if problem:
                return f"{_row_at(path, lines[row], indexes[row])}, column {column}: {problem}", 0
            if "image" in header and len(fields["image"] or "") <= IMAGE_REF_MAX_CHARS:
                references[row] = fields["image"] or ""
    if not indexes:
        return f"{path} has no rows {_read_by(dataset_type)}", 0
    if (twice := duplicate_index(indexes)) is not None:
        row, earlier = twice
        return (
            f"{_row_at(path, lines[row], indexes[row])}, column index: also the index of line "
            f"{lines[earlier]}; each row needs its own (VLMEvalKit keys images and answers by "
            "index)"
        ), 0
    if (bad := image_reference_problem(indexes, lines, references)) is not None:
        row, problem = bad
        return (
            f"{_row_at(path, lines[row], indexes[row])}, column image: {problem}; {IMAGE_VALID}",
            0,
        )
    return None, len(indexes)


def _read_by(dataset_type: str) -> str:
    return f"that VLMEvalKit's {dataset_type} datasets read"


def _row_at(path: Path, line: int, index: str) -> str:
    return f"{path} line {line} (index {index!r})"


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
            problem, rows = tsv_problem(tsv, kinds[entry["kind"]]["dataset_type"])
        except (OSError, UnicodeDecodeError, csv.Error) as err:
            errors.append(f"custom_benchmarks[{name!r}]: {tsv} is not a readable TSV: {err}")
            continue
        if problem:
            errors.append(f"custom_benchmarks[{name!r}]: {problem}")
            continue
        out[name] = {
            "kind": entry["kind"],
            "tsv": str(tsv),
            "md5": _md5(tsv),
            "samples": rows,
            "cost_per_sample": 1.0,
            "custom": True,
        }
    return out
