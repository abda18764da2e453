"""Every plugin's documentation blocks are the YAML that ansible-doc and ansible-lint read.

A block that does not parse leaves `ansible-doc` without the plugin's options and makes
ansible-lint print an error while still passing.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PLUGIN_FILES = sorted(
    path
    for folder in ("plugins/modules", "plugins/filter", "plugins/callback", "roles")
    for path in (ROOT / folder).rglob("*.py")
    if "DOCUMENTATION" in path.read_text()
)
BLOCKS = ("DOCUMENTATION", "EXAMPLES", "RETURN")


def documentation_blocks(path: Path) -> dict[str, str]:
    blocks = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            name = getattr(node.targets[0], "id", "")
            if name in BLOCKS:
                blocks[name] = node.value.value
    return blocks


@pytest.mark.parametrize("path", PLUGIN_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_documentation_blocks_are_yaml(path: Path) -> None:
    blocks = documentation_blocks(path)
    assert "DOCUMENTATION" in blocks
    for _name, text in blocks.items():
        yaml.safe_load(text)


def test_plugins_were_found() -> None:
    names = {path.name for path in PLUGIN_FILES}
    assert {"eval_slot_status.py", "eval_progress.py"} <= names
