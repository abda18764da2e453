"""Shared e2e fixtures: the repository, its project facts, and a playbook runner."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
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


@pytest.fixture(scope="session")
def run_in_image(built_image: str, project: dict[str, Any]) -> Callable[..., Any]:
    """run_in_image(*command, volumes=(), env=(), workdir=None, timeout=1200): the command in
    a fresh container of the image, as its user, without network; returns the finished
    process (stdout and stderr captured). ``volumes``: "host:container[:ro]" strings;
    ``env``: "NAME=value" strings (bytecode is never written into the mounted tree)."""
    user = f"{project['project_container_uid']}:{project['project_container_gid']}"

    def run(
        *command: str,
        volumes: tuple[str, ...] = (),
        env: tuple[str, ...] = (),
        workdir: str | None = None,
        timeout: int = 1200,
    ) -> subprocess.CompletedProcess[str]:
        args = [DOCKER, "run", "--rm", f"--name=vlmfleet-e2e-{os.getpid()}-{next(_counter)}"]
        args += ["--network=none", f"--user={user}", "--env=PYTHONDONTWRITEBYTECODE=1"]
        args += [f"--volume={v}" for v in volumes] + [f"--env={e}" for e in env]
        args += [f"--workdir={workdir}"] if workdir else []
        return subprocess.run(
            [*args, built_image, *command],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    return run


_counter = itertools.count()


def changed(runner: ansible_runner.Runner) -> int:
    return sum(runner.stats["changed"].values()) if runner.stats else -1


@pytest.fixture
def run_playbook(tmp_path: Path) -> Callable[..., ansible_runner.Runner]:
    """run_playbook(text, check=False, inventory=None, **extravars): a playbook written into
    tmp_path, run by real ansible-playbook (the one beside this interpreter) with the
    repository's ansible.cfg, against ``inventory`` (a path) or ansible.cfg's."""

    def run(
        text: str, check: bool = False, inventory: Path | None = None, **extravars: Any
    ) -> ansible_runner.Runner:
        playbook = tmp_path / "playbook.yml"
        playbook.write_text(text)
        return ansible_runner.run(
            # A fresh private data dir each run: ansible-runner keeps the last cmdline there.
            private_data_dir=tempfile.mkdtemp(dir=tmp_path),
            playbook=str(playbook),
            inventory=str(inventory) if inventory else None,
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


@pytest.fixture(scope="session")
def fleet(built_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """This machine's two inventory names, provisioned once for the whole run: the modules that
    run eval.yml share it, so a run one of them made can serve another (test_known_answers reads
    test_eval's full smoke matrix instead of running it again)."""
    from test_eval import provisioned_fleet

    yield from provisioned_fleet(tmp_path_factory)
