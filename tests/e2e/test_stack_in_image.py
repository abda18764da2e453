"""The unit tests that need the image's stack (torch 2.1.2, LLaVA, VLMEvalKit) run inside it.

Outside the image they skip (the controller's venv has no torch); here they run in the built
image, as its container user, without network, against the repository's worker code: batched
answers equal VLMEvalKit's own loop, the worker's per-unit pipeline keeps records, logs and
failures per combination, and the image's lazy VLMEvalKit import answers as the original.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest import REPO

STACK_TESTS = (
    "tests/unit/worker/test_batched.py",
    "tests/unit/worker/test_llava_static.py",
    "tests/unit/worker/test_worker_pipeline.py",
    "tests/unit/worker/test_llava_spread.py",
    "tests/unit/worker/test_vlmeval_lazy.py",
)
# pytest and what it imports on Python 3.11: pure Python, so this venv's copies run in the image.
PYTEST_PACKAGES = ("pytest", "_pytest", "pluggy", "iniconfig", "packaging", "pygments", "py")


def pytest_site(target: Path) -> Path:
    target.mkdir()
    for name in PYTEST_PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            continue
        origin = Path(spec.origin)
        if origin.name == "__init__.py":
            shutil.copytree(origin.parent, target / name)
        else:
            shutil.copy2(origin, target / origin.name)
    return target


def test_stack_unit_tests_pass_inside_the_image(
    run_in_image: Callable[..., Any], tmp_path: Path
) -> None:
    site = pytest_site(tmp_path / "pytest-site")
    proc = run_in_image(
        "python",
        "-m",
        "pytest",
        "-q",
        "-rs",
        "-p",
        "no:cacheprovider",
        "--basetemp=/tmp/pytest",
        *STACK_TESTS,
        volumes=(f"{REPO}:/src:ro", f"{site}:/opt/pytest:ro"),
        env=("PYTHONPATH=/opt/pytest",),
        workdir="/src",
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    summary = out.strip().splitlines()[-1]
    passed = re.search(r"(\d+) passed", summary)
    # Every test ran: none of them skipped for want of the stack.
    assert passed and int(passed.group(1)) >= 20, summary
    assert "skipped" not in summary, summary
    print(f"\nin the image: {summary}")
