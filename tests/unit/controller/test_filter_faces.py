"""The filter plugins are faces that import the collection's code when first called: loading
them (which Ansible does for every task that uses any filter) imports neither numpy nor scipy,
and every filter they name is a function of the collection."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
FILTER_FILES = sorted((ROOT / "plugins" / "filter").glob("*.py"))


def filters_of(path: Path) -> dict:
    spec = importlib.util.spec_from_file_location(f"filter_{path.stem}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FilterModule().filters()


@pytest.mark.parametrize("path", FILTER_FILES, ids=lambda p: p.name)
def test_every_filter_names_a_function_of_the_collection(path: Path) -> None:
    faces = filters_of(path)
    assert faces
    for name, face in faces.items():
        assert callable(face.target()), name


LOAD_EVERY_FILTER = """
import importlib.util, sys
for i, path in enumerate(sys.argv[1:]):
    spec = importlib.util.spec_from_file_location(f"filter_{i}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.FilterModule().filters()
print(sorted({"numpy", "scipy"} & set(sys.modules)))
"""


def test_loading_the_filters_imports_no_numerical_library() -> None:
    out = subprocess.run(
        [sys.executable, "-c", LOAD_EVERY_FILTER, *map(str, FILTER_FILES)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        # Where ansible.cfg's collections_path has Ansible find the collection.
        env={**os.environ, "PYTHONPATH": str(ROOT / "plugins" / "collections")},
    )
    assert out.stdout.strip() == "[]", out.stdout


def test_a_face_calls_its_function() -> None:
    names = filters_of(ROOT / "plugins" / "filter" / "eval_inputs.py")["eval_input_names"]()
    assert "limit" in names and "eval_judge_model" in names
