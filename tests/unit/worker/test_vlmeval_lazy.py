"""The image's lazy VLMEvalKit import (docker/transformers-4.37/patches/patch_vlmeval_lazy.py).

The patch refuses files it does not know everywhere; the rest needs the image's patched VLMEvalKit
(``tests/e2e/test_stack_in_image.py`` runs it inside the image): the index answers as the original
``vlmeval.dataset`` does for every dataset name, a slot imports only its benchmarks' dataset
modules, and the patch regenerates the build's files from a fresh original, then leaves them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]
PATCHES = REPO / "docker" / "transformers-4.37" / "patches"
SCRIPT = PATCHES / "patch_vlmeval_lazy.py"
WORKER_SRC = REPO / "docker" / "transformers-4.37" / "src"
PATCHED_IMAGE = importlib.util.find_spec("vlmeval") is not None
needs_image = pytest.mark.skipif(not PATCHED_IMAGE, reason="needs the image's VLMEvalKit")


def patch_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("patch_vlmeval_lazy", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_python(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """A fresh interpreter with the repository's worker code first on the path."""
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, (str(WORKER_SRC), os.environ.get("PYTHONPATH")))),
    )
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )


def installed_vlmeval() -> Path:
    spec = importlib.util.find_spec("vlmeval")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations)))


def test_patch_refuses_a_vlmeval_it_does_not_know(tmp_path: Path) -> None:
    package = tmp_path / "vlmeval"
    (package / "dataset").mkdir(parents=True)
    (package / "__init__.py").write_text("# another release\n")
    (package / "dataset" / "__init__.py").write_text("# another release\n")
    proc = run_python(str(SCRIPT), str(tmp_path))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    patch = patch_module()
    # One message naming the file, what it is and both hashes it may have.
    for part in (
        str(package / "__init__.py"),
        sha256(package / "__init__.py"),
        patch.PACKAGE_INIT_SHA256,
        patch.PATCHED_PACKAGE_INIT_SHA256,
    ):
        assert part in proc.stderr
    # Nothing was changed or added.
    assert sorted(p.name for p in (package / "dataset").iterdir()) == ["__init__.py"]
    assert (package / "__init__.py").read_text() == "# another release\n"


def fresh_original(site: Path) -> Path:
    """A copy of the image's VLMEvalKit in ``site`` with the original files back in place."""
    patch = patch_module()
    package = site / "vlmeval"
    shutil.copytree(installed_vlmeval(), package, ignore=shutil.ignore_patterns("__pycache__"))
    dataset = package / "dataset"
    (dataset / "_eager.py").rename(dataset / "__init__.py")
    (dataset / "_lazy_index.py").unlink()
    init = package / "__init__.py"
    init.write_text(init.read_text().replace(patch.LAZY_CLI, patch.CLI_IMPORT))
    assert sha256(init) == patch.PACKAGE_INIT_SHA256
    assert sha256(dataset / "__init__.py") == patch.DATASET_INIT_SHA256
    return package


@needs_image
def test_patch_makes_the_build_files_from_the_original_then_leaves_them(tmp_path: Path) -> None:
    site = tmp_path / "site"
    package = fresh_original(site)
    proc = run_python(str(SCRIPT), str(site), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count(": patched") == 2, proc.stdout
    installed = installed_vlmeval()
    # The same files as the image's build made, the index included (nothing in it drifts).
    files = ("__init__.py", "dataset/__init__.py", "dataset/_eager.py", "dataset/_lazy_index.py")
    for name in files:
        assert (package / name).read_bytes() == (installed / name).read_bytes(), name
    before = {name: (package / name).stat().st_mtime_ns for name in files}
    again = run_python(str(SCRIPT), str(site), cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count(": already patched") == 2, again.stdout
    assert {name: (package / name).stat().st_mtime_ns for name in files} == before


@needs_image
def test_patch_refuses_a_changed_or_half_patched_dataset_package(tmp_path: Path) -> None:
    patch = patch_module()
    site = tmp_path / "site"
    package = site / "vlmeval"
    installed = installed_vlmeval()
    (package / "dataset").mkdir(parents=True)
    shutil.copy2(installed / "__init__.py", package / "__init__.py")
    lazy = package / "dataset" / "__init__.py"
    lazy.write_bytes((installed / "dataset" / "__init__.py").read_bytes() + b"# changed\n")
    proc = run_python(str(SCRIPT), str(site), cwd=tmp_path)
    assert proc.returncode == 1
    for part in (
        str(lazy),
        sha256(lazy),
        patch.DATASET_INIT_SHA256,
        sha256(patch.LAZY_DATASET_INIT),
    ):
        assert part in proc.stderr
    # The lazy module without the original beside it.
    shutil.copy2(installed / "dataset" / "__init__.py", lazy)
    proc = run_python(str(SCRIPT), str(site), cwd=tmp_path)
    assert proc.returncode == 1
    assert f"{lazy} is patched but _eager.py or _lazy_index.py is missing" in proc.stderr


# Every listed dataset name answered by the lazy module in a fresh process: the classes first (by
# the index alone, but for the classes the original defines itself), then the types, those the
# original answers (a class without TYPE or MODALITY, or its own) last; and by the original.
LAZY_ANSWERS = """
import json, sys
import vlmeval.dataset as vd
from vlmeval.dataset import _lazy_index as index
own = {n for n, p in index.FIRST_CLASS.items() if index.CLASSES[p] not in index.IMPORTED}
classes = {n: vd.dataset_class(n) for n in index.FIRST_CLASS if n not in own}
by_index = "vlmeval.dataset._eager" not in sys.modules
def typed(c):
    return hasattr(c, "TYPE") and hasattr(c, "MODALITY")
answers, not_by_index = {}, []
for name in sorted(index.FIRST_CLASS, key=lambda n: n in own or not typed(classes[n])):
    if "vlmeval.dataset._eager" in sys.modules and name not in own and typed(classes[name]):
        not_by_index.append(name)
    cls = vd.dataset_class(name)
    types = [vd.DATASET_TYPE(name), vd.DATASET_MODALITY(name)]
    answers[name] = [cls.__module__, cls.__qualname__, *types]
out = {"answers": answers, "classes_by_index": by_index, "types_not_by_index": not_by_index}
json.dump(out, open(sys.argv[1], "w"))
"""
ORIGINAL_ANSWERS = """
import json, sys
import vlmeval.dataset._eager as original
answers = {}
for name in original.SUPPORTED_DATASETS:
    cls = next(c for c in original.DATASET_CLASSES if name in c.supported_datasets())
    types = [original.DATASET_TYPE(name), original.DATASET_MODALITY(name)]
    answers[name] = [cls.__module__, cls.__qualname__, *types]
index = __import__("vlmeval.dataset._lazy_index", fromlist=["_"])
tables = {
    "supported": set(index.FIRST_CLASS) == set(original.SUPPORTED_DATASETS),
    "video": set(index.VIDEO_SETTINGS) == set(original.supported_video_datasets),
}
json.dump({"answers": answers, "tables": tables}, open(sys.argv[1], "w"))
"""


def answers_of(code: str, out: Path) -> Any:
    proc = run_python("-c", code, str(out), cwd=out.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


@needs_image
def test_the_index_answers_as_the_original_for_every_dataset_name(tmp_path: Path) -> None:
    lazy = answers_of(LAZY_ANSWERS, tmp_path / "lazy.json")
    original = answers_of(ORIGINAL_ANSWERS, tmp_path / "original.json")
    assert original["tables"] == {"supported": True, "video": True}
    assert lazy["classes_by_index"]
    assert lazy["types_not_by_index"] == []
    assert lazy["answers"] == original["answers"]


# The other ways into the package: video_dataset_config first (as vlmeval.smp.status_report
# imports it), the aggregates, a star import, the CLI.
OTHER_WAYS = """
import sys
from vlmeval.dataset.video_dataset_config import supported_video_datasets
import vlmeval.dataset as vd
assert "vlmeval.dataset._eager" not in sys.modules
assert vd.supported_video_datasets is supported_video_datasets
assert len(vd.DATASET_CLASSES) > 200 and vd.ConcatDataset in vd.DATASET_CLASSES
assert vd.NPMM.__name__ == "NPMM" and isinstance(vd.NPMM, type)
names = {}
exec("from vlmeval.dataset import *", names)
assert set(vd.__all__) <= set(names), set(vd.__all__) - set(names)
import vlmeval
assert callable(vlmeval.cli) and "vlmeval.tools" in sys.modules
"""


@needs_image
def test_the_other_ways_into_the_package_work_as_in_the_original(tmp_path: Path) -> None:
    proc = run_python("-c", OTHER_WAYS, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]


# What a LLaVA slot of the default matrix imports: the stack, the worker's modules, and each
# benchmark's dataset built from synthetic data as a smoke run builds it.
SLOT_IMPORTS = """
import json, os, sys
from pathlib import Path
import yaml
root = Path(sys.argv[1])
os.environ["LMUData"] = str(root)
catalogue = yaml.safe_load(Path("playbooks/vars/catalogue.yml").read_text())
from vlmfleet import datasets, evaluation, pipeline, question_scores
from vlmfleet.families import llava_wrapper
from vlmfleet.stack import import_stack
import_stack()
from vlmeval.dataset import build_dataset
kinds = catalogue["catalogue_kinds"]
for name in catalogue["catalogue_default_benchmarks"]:
    bench = catalogue["catalogue_benchmarks"][name]
    shape = bench.get("smoke_shape") or kinds[bench["kind"]]["smoke_shape"]
    datasets.use_synthetic_dataset(root, name, shape, 10)
    assert datasets.dataset_class(name) is type(build_dataset(name)), name
loaded = sorted(m for m in sys.modules if m.startswith("vlmeval"))
json.dump(loaded, open(sys.argv[2], "w"))
"""


@needs_image
def test_a_slot_imports_only_its_benchmarks_dataset_modules(tmp_path: Path) -> None:
    out = tmp_path / "loaded.json"
    (tmp_path / "LMUData").mkdir()
    proc = run_python("-c", SLOT_IMPORTS, str(tmp_path / "LMUData"), str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded = set(json.loads(out.read_text()))
    dataset_modules = {m.split(".")[2] for m in loaded if m.startswith("vlmeval.dataset.")}
    # The default matrix's classes live in these four (and their helpers in utils).
    assert dataset_modules == {
        "_lazy_index",
        "image_base",
        "image_mcq",
        "image_vqa",
        "image_yorn",
        "utils",
    }, sorted(dataset_modules)
    assert "vlmeval.tools" not in loaded  # the CLI
