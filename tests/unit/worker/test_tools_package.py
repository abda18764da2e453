"""The image's runtime package holds what hosts run; the development tools (training of the
known-answer checkpoints, the agreement harness) are a package beside it that the image does
not ship (docker/transformers-4.37/tools, on PYTHONPATH where they run)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

CONTEXT = Path(__file__).resolve().parents[3] / "docker" / "transformers-4.37"
RUNTIME = CONTEXT / "src" / "vlmfleet"
TOOLS = CONTEXT / "tools" / "vlmfleet_tools"
TOOL_MODULES = ("vlmfleet_tools.agreement", "vlmfleet_tools.known_answer_training")


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_runtime_package_holds_no_tool_and_imports_none() -> None:
    assert not (RUNTIME / "agreement.py").exists()
    assert not (RUNTIME / "known_answer.py").exists()
    importers = [
        str(p.relative_to(CONTEXT))
        for p in [*RUNTIME.rglob("*.py"), CONTEXT / "selfcheck.py"]
        if any(m.split(".")[0] == "vlmfleet_tools" for m in _imported_modules(p))
    ]
    assert importers == []


def test_the_image_copies_the_runtime_package_and_not_the_tools() -> None:
    dockerfile = (CONTEXT / "Dockerfile").read_text(encoding="utf-8")
    copies = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("COPY ")]
    assert "src/" in copies
    assert not [c for c in copies if c.startswith("tools")]
    ignored = (CONTEXT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert "tools" in ignored


@pytest.mark.parametrize("name", TOOL_MODULES)
def test_a_tool_imports_beside_the_runtime_package_and_says_its_command(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    module = importlib.import_module(name)
    with pytest.raises(SystemExit) as done:
        module.main(["--help"])
    assert done.value.code == 0
    assert f"python -m {name}" in capsys.readouterr().out
