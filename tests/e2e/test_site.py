"""site.yml against the embedded default inventory (this machine, no GPU), through
ansible-runner: provisions, skips the NVIDIA roles with one line, changes nothing on a second
run or in check mode, and fails clearly where the user asked for a GPU."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import ansible_runner
import pytest
from conftest import DOCKER

# site.yml may restart this machine's Docker Engine, under every other test's containers.
pytestmark = pytest.mark.serial

REPO = Path(__file__).resolve().parents[2]
SKIP_LINE = (
    "localhost: no NVIDIA GPU (nvidia-smi not installed): "
    "skipping nvidia_driver and nvidia_container_toolkit"
)


def run_site(tmp_path: Path, *cmdline: str) -> tuple[ansible_runner.Runner, str]:
    runner = ansible_runner.run(
        private_data_dir=tempfile.mkdtemp(dir=tmp_path),
        project_dir=str(REPO),
        playbook=str(REPO / "site.yml"),
        inventory=str(REPO / "inventory" / "localhost" / "hosts.yml"),
        cmdline=" ".join(cmdline) or None,
        envvars={
            "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        },
        quiet=True,
    )
    return runner, runner.stdout.read()


def messages(runner: ansible_runner.Runner, task: str) -> list[str]:
    """The msg of every host result of the task named `task` (debug/fail output, unwrapped)."""
    return [
        e["event_data"]["res"].get("msg", "")
        for e in runner.events
        if e.get("event", "").startswith("runner_on_")
        and e.get("event_data", {}).get("task") == task
        and "res" in e["event_data"]
    ]


def changed(runner: ansible_runner.Runner) -> int:
    return sum(runner.stats["changed"].values())


@pytest.fixture(scope="module")
def converged(tmp_path_factory: pytest.TempPathFactory) -> tuple[ansible_runner.Runner, str]:
    if os.path.exists("/proc/driver/nvidia/version"):
        pytest.skip("this test covers hosts without an NVIDIA GPU")
    return run_site(tmp_path_factory.mktemp("site"))


def test_site_converges_and_skips_nvidia_roles_with_one_line(converged) -> None:
    runner, out = converged
    assert runner.rc == 0, out[-3000:]
    lines = messages(runner, "Report the GPU facts")
    assert len(lines) == 1 and lines[0].startswith(SKIP_LINE), lines
    # The NVIDIA roles ran no install task on this host.
    assert "nvidia_container_toolkit : Install the NVIDIA Container Toolkit" not in out
    assert "nvidia_driver : Install the driver packages" not in out
    env = Path("/srv/vlm-eval/.env")
    assert env.stat().st_mode & 0o777 == 0o600
    assert (Path("/srv/vlm-eval/outputs").stat().st_mode & 0o7777) == 0o2775


def test_second_run_changes_nothing(converged, tmp_path: Path) -> None:
    runner, out = run_site(tmp_path)
    assert runner.rc == 0, out[-3000:]
    assert changed(runner) == 0, out[-5000:]


def test_check_mode_is_clean(converged, tmp_path: Path) -> None:
    runner, out = run_site(tmp_path, "--check", "--diff")
    assert runner.rc == 0, out[-3000:]
    assert changed(runner) == 0, out[-5000:]


def test_required_gpu_fails_naming_the_host(converged, tmp_path: Path) -> None:
    runner, out = run_site(tmp_path, "-e", "gpu_facts_required=true")
    assert runner.rc != 0
    failure = messages(runner, "Fail when a GPU is required")
    assert failure and failure[0].startswith(
        "localhost: gpu_facts_required is true but no NVIDIA GPU answered"
    ), out[-3000:]


def test_bad_input_is_refused_before_changes(converged, tmp_path: Path) -> None:
    runner, out = run_site(tmp_path, "-e", "docker_engine_source=snap")
    assert runner.rc != 0
    assert "docker_engine_source" in out and "snap" in out
    assert "distribution" in out and "docker" in out
    assert changed(runner) == 0


VALIDATE = """
- name: GPU validation alone
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Validate
      ansible.builtin.include_role:
        name: nvidia_container_toolkit
        tasks_from: validate
      vars:
        nvidia_container_toolkit_validation_image: "{image}"
    - name: Pending
      ansible.builtin.debug:
        msg: "pending={{{{ nvidia_container_toolkit_validation_pending }}}}"
"""


def test_gpu_validation_uses_the_image_on_the_host_and_never_pulls(
    built_image: str, run_playbook: Any
) -> None:
    """The validation site.yml runs after the toolkit (and again after role eval_image): with an
    image the host lacks it waits, saying so, and pulls nothing; with the evaluation image it
    runs nvidia-smi in it, which on this GPU-less machine fails with Docker's own message."""
    absent = f"vlm-eval:e2e-absent-{os.getpid()}"
    r = run_playbook(VALIDATE.format(image=absent))
    assert r.rc == 0, r.stdout.read()[-3000:]
    (said,) = messages(r, "Say why GPU containers are not validated now")
    assert said == (
        f"localhost: GPU containers not validated yet: image {absent} is not on this host (the "
        "validation never pulls); role eval_image puts it there and site.yml validates after it"
    )
    assert messages(r, "Pending") == ["pending=True"]
    inspect = subprocess.run([DOCKER, "image", "inspect", absent], capture_output=True, check=False)
    assert inspect.returncode != 0

    r = run_playbook(VALIDATE.format(image=built_image))
    if os.path.exists("/proc/driver/nvidia/version"):
        assert r.rc == 0 and messages(r, "Pending") == ["pending=False"]
        return
    assert r.rc != 0
    (failed,) = messages(r, "Fail with the driver's message when containers cannot see the GPUs")
    assert failed.startswith(
        f"localhost: 'docker run --gpus all {built_image} nvidia-smi' failed (rc 125):"
    ), failed
    # Docker's answer on a host without the nvidia runtime; nothing was looked up in a registry.
    assert "could not select device driver" in failed, failed
    assert "Unable to find image" not in failed and "pull" not in failed.lower(), failed
