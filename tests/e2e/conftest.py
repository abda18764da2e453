"""Shared e2e fixtures: the repository, its project facts, and a playbook runner."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ansible_runner
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKER = "/usr/bin/docker"  # the distribution client; /usr/local/bin/docker lacks buildx


@pytest.fixture(scope="session")
def project() -> dict[str, Any]:
    """playbooks/vars/project.yml: image name/tag/context, container uid/gid/user."""
    return yaml.safe_load((REPO / "playbooks" / "vars" / "project.yml").read_text())


@pytest.fixture(scope="session")
def built_image(project: dict[str, Any]) -> str:
    """The image `make image` (tests/lab/build-image.sh) built; fails clearly when absent."""
    ref = f"{project['project_image_repository']}:{project['project_image_tag']}"
    found = subprocess.run([DOCKER, "image", "inspect", ref], capture_output=True, check=False)
    if found.returncode != 0:
        pytest.fail(f"image {ref} is missing: run `make image` first")
    return ref


def changed(runner: ansible_runner.Runner) -> int:
    return sum(runner.stats["changed"].values()) if runner.stats else -1


@pytest.fixture
def run_playbook(tmp_path: Path) -> Callable[..., ansible_runner.Runner]:
    """run_playbook(text, check=False, **extravars): a playbook written into tmp_path, run by
    real ansible-playbook (the one beside this interpreter) with the repository's ansible.cfg."""

    def run(text: str, check: bool = False, **extravars: Any) -> ansible_runner.Runner:
        playbook = tmp_path / "playbook.yml"
        playbook.write_text(text)
        return ansible_runner.run(
            # A fresh private data dir each run: ansible-runner keeps the last cmdline there.
            private_data_dir=tempfile.mkdtemp(dir=tmp_path),
            playbook=str(playbook),
            extravars=extravars,
            cmdline="--check" if check else None,
            envvars={
                "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
                "ANSIBLE_ROLES_PATH": str(REPO / "roles"),
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            },
            quiet=True,
        )

    return run
