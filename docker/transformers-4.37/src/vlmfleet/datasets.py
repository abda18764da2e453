"""VLMEvalKit's dataset object of a combination: its data root, its data and its sample limit.

A real run reads VLMEvalKit's own data under $LMUData, which the host's preparation step
(``vlmfleet.prepare_data``) fetched or received and md5-checked before any worker started: a
worker never downloads, it checks that an official benchmark's TSV is there with VLMEvalKit's
md5 before building the dataset (``check_prepared``). A smoke run points VLMEvalKit at a folder
of its own (``use_smoke_data_root``) and writes the benchmark's synthetic TSV there in the slot
file's ``smoke_shape`` (``vlmfleet.smoke_data``). VLMEvalKit's dataset classes md5-check their
TSV and download the real one on a mismatch, so the synthetic file's md5 is registered with the
dataset's class, in this process only (``use_synthetic_dataset``). The benchmark's VLMEvalKit
type is checked against the slot file's ``dataset_type`` before any data is written.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from vlmfleet.contract import Benchmark, Slot
from vlmfleet.question_scores import remember_images
from vlmfleet.selection import count_questions, is_circular, select_positions

# VLMEvalKit reads its data root from this variable, spelt this way.
LMU_ENV = "LMUData"


class DatasetError(RuntimeError):
    """A benchmark cannot be prepared; the message is the status record's reason."""


def lmu_root() -> Path:
    return Path(os.environ.get(LMU_ENV) or (Path.home() / "LMUData"))


def use_smoke_data_root(slot: Slot) -> Path:
    """Point VLMEvalKit at $LMUData/smoke/<host>/<slot>.

    Synthetic files never replace real ones, and slots running at once on one machine never
    write the same TSV or image cache file.
    """
    root = lmu_root() / "smoke" / slot.host / slot.slot
    root.mkdir(parents=True, exist_ok=True)
    os.environ[LMU_ENV] = str(root)
    return root


def dataset_class(name: str) -> type | None:
    """VLMEvalKit's dataset class that lists ``name``, or None (a custom dataset).

    The image's ``vlmeval.dataset`` (patches/patch_vlmeval_lazy.py) finds it in its index and
    imports that class's module only; its ``DATASET_CLASSES`` would import every dataset module.
    """
    import vlmeval.dataset as vd

    return vd.dataset_class(name)


def official_tsv(name: str) -> Path:
    """Where VLMEvalKit's dataset classes keep a registered benchmark's TSV (prepare_tsv:
    $LMUData/<dataset name>.tsv, whatever the download URL's file name)."""
    return lmu_root() / f"{name}.tsv"


def official_md5(cls: type, name: str) -> str | None:
    """VLMEvalKit's md5 for ``name`` (its class's DATASET_MD5), or None where its table has none
    (VLMEvalKit then accepts any file of that name)."""
    return (getattr(cls, "DATASET_MD5", None) or {}).get(name)


def official_url(cls: type, name: str) -> str:
    """Where VLMEvalKit downloads ``name`` from (load_data: DATASET_URL, else <name>.tsv)."""
    return (getattr(cls, "DATASET_URL", None) or {}).get(name) or f"{name}.tsv"


@functools.lru_cache(maxsize=64)
def _md5(path: str, size: int, mtime_ns: int) -> str:
    from vlmfleet.smoke_data import file_md5

    return file_md5(Path(path))


def tsv_md5(path: Path) -> str:
    """The file's md5, computed once per process for the same size and mtime (a slot checks
    the same multi-GB TSV for each of its models)."""
    st = path.stat()
    return _md5(str(path), st.st_size, st.st_mtime_ns)


def data_problem(cls: type, name: str) -> str | None:
    """Why $LMUData/<name>.tsv is not the file VLMEvalKit's table names, or None."""
    tsv = official_tsv(name)
    if not tsv.is_file():
        return f"no file {tsv}"
    want = official_md5(cls, name)
    if want is None:
        return None
    got = tsv_md5(tsv)
    if got != want:
        return f"{tsv} has md5 {got}, VLMEvalKit's table says {want}"
    return None


def check_prepared(cls: type, name: str) -> None:
    """A real run's official benchmark: its TSV must be there with VLMEvalKit's md5, else the
    combination fails (VLMEvalKit would download it again, in every slot at once)."""
    problem = data_problem(cls, name)
    if problem is not None:
        raise DatasetError(
            f"data for {name} not prepared on this host (eval.yml's preparation step): {problem}"
        )


def use_synthetic_dataset(root: Path, name: str, shape: str, questions: int) -> str:
    """Write the synthetic ``root/<name>.tsv`` in smoke shape ``shape`` and make VLMEvalKit
    accept it; returns its md5."""
    from vlmfleet.smoke_data import write_dataset

    _, md5 = write_dataset(root, name, shape, questions)
    cls = dataset_class(name)
    if cls is not None:
        # A table of the class's own: the classes that inherit DATASET_MD5 share their parent's.
        if "DATASET_MD5" not in cls.__dict__:
            cls.DATASET_MD5 = {}
        cls.DATASET_MD5[name] = md5
    return md5


# The dataset class whose evaluation a custom benchmark of each VLMEvalKit type gets.
CUSTOM_CLASSES = {"MCQ": "ImageMCQDataset", "Y/N": "ImageYORNDataset", "VQA": "ImageVQADataset"}
# Custom benchmarks this process registered with VLMEvalKit's classes: from then on their names
# are listed there, but they are still the user's files (the next unit of the slot runs them).
CUSTOM_REGISTERED: set[str] = set()


def use_custom_dataset(root: Path, bench: Benchmark) -> type:
    """Register the custom benchmark's TSV ``root/<name>.tsv`` with the VLMEvalKit class of its
    type, so that VLMEvalKit's own prompt and evaluation of that type run on it (VLMEvalKit's
    custom datasets cover MCQ only: its CustomVQADataset cannot evaluate). The file must be the
    one the run shipped: its md5 is the slot file's."""
    import vlmeval.dataset as vd

    from vlmfleet.smoke_data import file_md5

    tsv = root / f"{bench.name}.tsv"
    if not tsv.is_file():
        raise DatasetError(f"custom benchmark {bench.name}: no data file {tsv} on this host")
    got = file_md5(tsv)
    if got != bench.md5:
        raise DatasetError(
            f"custom benchmark {bench.name}: {tsv} has md5 {got}, not the shipped file's "
            f"{bench.md5}; rerun to ship it again"
        )
    if bench.dataset_type not in CUSTOM_CLASSES:
        raise DatasetError(
            f"custom benchmark {bench.name}: VLMEvalKit type {bench.dataset_type!r} has no "
            f"evaluation here; valid: {', '.join(CUSTOM_CLASSES)}"
        )
    cls = getattr(vd, CUSTOM_CLASSES[bench.dataset_type])
    # Tables of the class's own (subclasses share their parent's otherwise); the URL is never
    # fetched, since the file is there with the right md5.
    for table in ("DATASET_URL", "DATASET_MD5"):
        if table not in cls.__dict__:
            setattr(cls, table, dict(getattr(cls, table, {})))
    cls.DATASET_URL[bench.name] = tsv.as_uri()
    cls.DATASET_MD5[bench.name] = got
    CUSTOM_REGISTERED.add(bench.name)
    return cls


def check_type(bench: Benchmark, got: Any) -> None:
    if got != bench.dataset_type:
        raise DatasetError(
            f"benchmark {bench.name} is of VLMEvalKit type {got!r}, but the slot file says "
            f"{bench.dataset_type!r} (kind {bench.kind!r})"
        )


def prepare_dataset(bench: Benchmark, slot: Slot) -> Any:
    """VLMEvalKit's dataset object for ``bench``, limited to the slot's sample limit (and to
    its shard's part of those rows when it is a shard)."""
    from vlmeval.dataset import build_dataset

    cls = None if bench.name in CUSTOM_REGISTERED else dataset_class(bench.name)
    if slot.smoke and cls is None:
        raise DatasetError(
            f"benchmark {bench.name!r} is not a VLMEvalKit dataset name; smoke mode synthesises "
            "data only for VLMEvalKit's registered datasets"
        )
    if cls is not None:
        check_type(bench, getattr(cls, "TYPE", None))
    if slot.smoke:
        from vlmfleet.smoke_data import DEFAULT_QUESTIONS

        # One file whatever the limit (the known-answer checkpoints' training set at least):
        # a limit answers its first questions.
        questions = max(DEFAULT_QUESTIONS, slot.limit_of(bench) or 0)
        use_synthetic_dataset(lmu_root(), bench.name, bench.smoke_shape, questions)
    elif cls is None:
        if bench.md5 is None:
            raise DatasetError(
                f"benchmark {bench.name!r} is not a VLMEvalKit dataset name and no custom "
                "benchmark file was shipped for it (custom_benchmarks)"
            )
        cls = use_custom_dataset(lmu_root(), bench)
    elif bench.md5 is not None:
        raise DatasetError(
            f"custom benchmark {bench.name!r} has the name of a VLMEvalKit dataset, which "
            "VLMEvalKit would md5-check and download; give it another name"
        )
    else:
        check_prepared(cls, bench.name)
    dataset = build_dataset(bench.name)
    if dataset is None:
        raise DatasetError(
            f"VLMEvalKit cannot build benchmark {bench.name!r} (unknown name or no data file "
            f"in {lmu_root()})"
        )
    check_type(bench, getattr(dataset, "TYPE", None))
    data = dataset.data
    g_index = list(data["g_index"]) if "g_index" in data else None
    positions = select_positions(
        list(data["index"]),
        slot.limit_of(bench),
        circular=is_circular(bench.name),
        g_indices=g_index,
    )
    if bench.shard is not None:
        # A shard runs its part of the limited rows, in row order.
        part = bench.shard.positions(len(positions))
        positions = positions[part.start : part.stop]
    dataset.data = data.iloc[positions]
    remember_images(dataset)
    return dataset


def questions_of(dataset: Any) -> int:
    """Questions in a prepared dataset: a circular question counts once, however many
    rotations it has (the record's ``samples``)."""
    indices = list(dataset.data["index"])
    return count_questions(indices, circular=is_circular(dataset.dataset_name))
