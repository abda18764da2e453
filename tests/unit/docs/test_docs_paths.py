"""The project's docs name only files that exist in the repository: each file path written in
README.md, docs/ and bench/README.md ends some file's path in the working tree, less what
setup, builds and runs write there (not `git ls-files`: a machine given the repository as an
archive has no git until the lab installs it)."""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
DOCS = (
    "README.md",
    "docs/architecture.md",
    "bench/README.md",
    "docker/transformers-4.37/README.md",
)
# A path-like word in backticks: folders and a file name with one of the project's suffixes.
PATH_RE = re.compile(r"`((?:[\w.-]+/)*[\w.-]+\.(?:py|yml|yaml|md|sh|cfg|toml|in|lock|json))`")
# Files a run, a build or a user writes, and files of the packages the image installs: the
# docs name them as what will be there.
WRITTEN = re.compile(
    r"(^|/)(status|slot|slot-progress|plan|run|summary|manifest|prepare|daemon|merge|"
    r"known_answer|scores|progress|results|selfcheck)[\w.-]*\.json$|\.env$|vault\.yml$|"
    r"(^|/)report\.(md|html)$|\.prepare\.lock$|^(llava|vlmeval|transformers)/|"
    r"<|\*|^results/|^outputs/|^/"
)


# What setup, builds, runs and tools write into the tree (.gitignore's), never named as ours.
WRITTEN_TOP = {".git", ".venv", ".lab", ".ansible", ".whl", "results"}
WRITTEN_ANYWHERE = {"__pycache__", ".pytest_cache", ".ruff_cache"}


@functools.cache
def project_files() -> list[str]:
    """The working tree's files, less what setup, builds and runs write (not walked into)."""
    files = []
    for folder, subfolders, names in os.walk(ROOT):
        here = Path(folder).relative_to(ROOT).parts
        subfolders[:] = [
            d
            for d in subfolders
            if d not in WRITTEN_ANYWHERE
            and not (not here and d in WRITTEN_TOP)
            and (*here, d) != ("bench", "work")
        ]
        files += ["/".join((*here, name)) for name in names]
    return files


@pytest.mark.parametrize("doc", DOCS)
def test_every_file_a_doc_names_exists(doc):
    files = project_files()
    named = set(PATH_RE.findall((ROOT / doc).read_text()))
    assert named, f"{doc}: no file paths found"
    missing = sorted(
        p
        for p in named
        if not WRITTEN.search(p) and not any(f == p or f.endswith("/" + p) for f in files)
    )
    assert not missing, f"{doc} names files that are not in the repository: {missing}"
