"""Synthetic benchmark TSVs: the columns VLMEvalKit's dataset classes and evaluators read."""

from __future__ import annotations

import ast
import base64
import csv
import io
from pathlib import Path

import pytest
import yaml
from PIL import Image
from vlmfleet import smoke_data
from vlmfleet.known_answer_checkpoints import DEFAULT_BENCHMARKS
from vlmfleet.selection import is_circular, select_positions

REPO = Path(__file__).resolve().parents[3]
DEFAULTS = sorted((b.name, b.kind, b.smoke_shape) for b in DEFAULT_BENCHMARKS.values())


def read_tsv(path: Path) -> list[dict[str, str]]:
    csv.field_size_limit(1 << 30)
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def images_of(row: dict[str, str], by_index: dict[str, dict[str, str]]) -> list[Image.Image]:
    value = row["image"]
    if len(value) <= 64:  # a reference to another row's image, as real MMBench does
        value = by_index[value]["image"]
    blobs = ast.literal_eval(value) if value.startswith("[") else [value]
    return [Image.open(io.BytesIO(base64.b64decode(b))) for b in blobs]


@pytest.mark.parametrize(("name", "kind", "shape"), DEFAULTS)
def test_every_default_benchmark_has_its_kind_columns(
    tmp_path: Path, name: str, kind: str, shape: str
) -> None:
    path, md5 = smoke_data.write_dataset(tmp_path, name, shape, questions=6)
    assert path == tmp_path / f"{name}.tsv"
    rows = read_tsv(path)
    by_index = {r["index"]: r for r in rows}
    assert len(by_index) == len(rows), "index must be unique"
    for row in rows:
        assert row["question"]
        for img in images_of(row, by_index):
            assert 200 <= img.width <= 500 and 200 <= img.height <= 500
        if kind == "mcq" and row.get("question_type") == "open":
            # MMMU's open questions: no options, the answer is the text itself.
            assert not row["A"] and row["answer"].isdigit(), row
        elif kind == "mcq":
            assert row["answer"] in "ABCDE" and row[row["answer"]], row
            assert row["A"] and row["B"]
        elif kind == "yorn":
            assert row["answer"] in ("Yes", "No")
        elif name == "VizWiz":
            assert isinstance(ast.literal_eval(row["answers"]), list)
        else:
            assert row["answer"]
    assert smoke_data.file_md5(path) == md5


def test_files_are_deterministic(tmp_path: Path) -> None:
    _, first = smoke_data.write_dataset(tmp_path / "a", "POPE", "yorn_pope")
    _, second = smoke_data.write_dataset(tmp_path / "b", "POPE", "yorn_pope")
    assert first == second


def test_mmbench_has_rotations_that_move_the_answer(tmp_path: Path) -> None:
    path, _ = smoke_data.write_dataset(tmp_path, "MMBench_DEV_EN", "mmbench", questions=4)
    rows = read_tsv(path)
    assert len(rows) == 16
    main, rot = rows[0], next(r for r in rows if r["index"] == str(1_000_000))
    assert main[main["answer"]] == rot[rot["answer"]]
    assert [main[c] for c in "ABCD"] != [rot[c] for c in "ABCD"]
    # A limit of 2 keeps 2 questions with all 4 rotations each.
    kept = select_positions([int(r["index"]) for r in rows], 2, circular=is_circular(path.stem))
    assert len(kept) == 8


def test_hallusion_index_has_set_figure_question_fields(tmp_path: Path) -> None:
    path, _ = smoke_data.write_dataset(tmp_path, "HallusionBench", "yorn_hallusion", questions=8)
    for row in read_tsv(path):
        parts = row["index"].split("_")
        assert len(parts) >= 6 and all(p.isdigit() for p in parts[3:6])
        assert row["category"] in ("VD", "VS") and row["l2-category"]


def test_multi_image_rows_exist_for_mmmu_and_blink(tmp_path: Path) -> None:
    for name, shape in (("MMMU_DEV_VAL", "mmmu"), ("BLINK", "blink")):
        path, _ = smoke_data.write_dataset(tmp_path, name, shape, questions=6)
        assert any(r["image"].startswith("[") for r in read_tsv(path)), name


@pytest.mark.parametrize(
    ("name", "shape"), [("SEEDBench_IMG_KO", "plain_mcq_ko"), ("MMBench_DEV_KO", "mmbench_ko")]
)
def test_korean_sets_are_korean(tmp_path: Path, name: str, shape: str) -> None:
    path, _ = smoke_data.write_dataset(tmp_path, name, shape, questions=3)
    assert all(any("\uac00" <= ch <= "\ud7a3" for ch in r["question"]) for r in read_tsv(path))


def test_any_benchmark_takes_a_shape_and_a_bad_shape_is_named(tmp_path: Path) -> None:
    path, _ = smoke_data.write_dataset(tmp_path, "MyVQA", "vqa_color", questions=2)
    assert len(read_tsv(path)) == 2
    with pytest.raises(ValueError, match="smoke shape 'caption' is not valid; valid: plain_mcq, "):
        smoke_data.synthetic_rows("X", "caption")
    with pytest.raises(ValueError, match="questions must be positive"):
        smoke_data.synthetic_rows("X", "plain_mcq", 0)


def test_the_default_benchmarks_are_the_catalogues() -> None:
    """known_answer_checkpoints.DEFAULT_BENCHMARKS (the image has no catalogue) and
    playbooks/vars/catalogue.yml declare the same default benchmarks, kinds, types, scales and
    smoke shapes."""
    catalogue = yaml.safe_load((REPO / "playbooks" / "vars" / "catalogue.yml").read_text())
    assert set(catalogue["catalogue_default_benchmarks"]) == set(DEFAULT_BENCHMARKS)
    kinds = catalogue["catalogue_kinds"]
    declared = {}
    for name in DEFAULT_BENCHMARKS:
        entry = catalogue["catalogue_benchmarks"][name]
        kind = kinds[entry["kind"]]
        declared[name] = (
            entry["kind"],
            kind["dataset_type"],
            float(kind["score_scale"]),
            entry.get("smoke_shape", kind["smoke_shape"]),
        )
    ours = {
        b.name: (b.kind, b.dataset_type, b.score_scale, b.smoke_shape)
        for b in DEFAULT_BENCHMARKS.values()
    }
    assert ours == declared


def test_every_shape_the_catalogue_names_has_a_generator() -> None:
    catalogue = yaml.safe_load((REPO / "playbooks" / "vars" / "catalogue.yml").read_text())
    named = {k["smoke_shape"] for k in catalogue["catalogue_kinds"].values()} | {
        b["smoke_shape"] for b in catalogue["catalogue_benchmarks"].values() if "smoke_shape" in b
    }
    assert named <= set(smoke_data.GENERATORS)
