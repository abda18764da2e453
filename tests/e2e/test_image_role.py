"""roles/eval_image against this machine's Docker: build, pull (from a real registry started
here) and load (a docker save tarball), each idempotent and verified on the host."""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import DOCKER, REPO, changed

pytestmark = pytest.mark.slow

CONTEXT = REPO / "docker" / "transformers-4.37"
LOCK_SHA = hashlib.sha256((CONTEXT / "requirements.lock").read_bytes()).hexdigest()
LAB_BASE = "vlm-lab/debian12-python:latest"
TARBALL = REPO / ".lab" / "images" / "vlm-eval.tar"
PLAYBOOK = """\
- name: eval_image under test
  hosts: localhost
  connection: local
  gather_facts: false
  roles:
    - role: eval_image
"""


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DOCKER, *args], capture_output=True, text=True, check=check)


def lock_label(ref: str) -> str | None:
    out = docker("image", "inspect", "--format", "{{json .Config.Labels}}", ref, check=False)
    if out.returncode != 0:
        return None
    return (json.loads(out.stdout) or {}).get("io.vlm-eval.lock.sha256", "")


def task_results(runner: Any, task: str) -> list[dict[str, Any]]:
    return [
        e["event_data"]
        for e in runner.events
        if e.get("event") in ("runner_on_ok", "runner_on_skipped", "runner_on_failed")
        and e["event_data"].get("task") == task
    ]


def verify_ran(runner: Any) -> bool:
    results = task_results(runner, "Run the image's verify command on the host")
    return any(not e.get("res", {}).get("skipped") for e in results)


@pytest.fixture
def target(request: pytest.FixtureRequest) -> Iterator[str]:
    """A throwaway name for the role's image; only this tag is removed afterwards."""
    ref = f"vlm-eval-e2e:{request.node.name.replace('_', '-')[:60]}"
    docker("rmi", ref, check=False)
    yield ref
    docker("rmi", ref, check=False)


def role_vars(ref: str, **more: Any) -> dict[str, Any]:
    repository, tag = ref.split(":")
    project = yaml.safe_load((REPO / "playbooks" / "vars" / "project.yml").read_text())
    return {
        "eval_image_repository": repository,
        "eval_image_tag": tag,
        "eval_image_context": str(CONTEXT),
        "eval_image_container_uid": project["project_container_uid"],
        "eval_image_container_gid": project["project_container_gid"],
        "eval_image_container_user": project["project_container_user"],
        # The interpreter here is the controller's venv, which has requests already.
        "eval_image_python_packages": [],
        **more,
    }


def test_build_replaces_a_stale_image_verifies_and_then_changes_nothing(
    run_playbook: Callable[..., Any], target: str, tmp_path: Path, built_image: str
) -> None:
    # A stale image under the target name (another lock label) must be replaced.
    docker("tag", LAB_BASE, target)
    params = role_vars(
        target,
        eval_image_source="build",
        eval_image_base_image=LAB_BASE,
        eval_image_ca_bundle="/etc/ssl/certs/ca-certificates.crt",
        eval_image_build_dir=str(tmp_path / "context"),
    )
    dry = run_playbook(PLAYBOOK, check=True, **params)
    assert dry.rc == 0, dry.stdout.read()
    assert lock_label(target) == "", "check mode replaced the image"
    assert changed(dry) > 0, "check mode did not report the rebuild"

    first = run_playbook(PLAYBOOK, **params)
    assert first.rc == 0, first.stdout.read()
    assert lock_label(target) == LOCK_SHA
    assert changed(first) > 0
    assert verify_ran(first), "the verify command did not run after the build"

    second = run_playbook(PLAYBOOK, **params)
    assert second.rc == 0, second.stdout.read()
    assert changed(second) == 0
    assert not verify_ran(second)


REGISTRY_USER, REGISTRY_PASSWORD = "e2e-puller", "e2e-Secret-7f3a"


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    """Debian's docker-registry (distribution) on a free 127.0.0.1 port with htpasswd auth;
    Docker treats 127.0.0.0/8 as an insecure registry, so plain HTTP needs no daemon change."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # the registry accepts bcrypt only; libxcrypt makes it

        hashed = crypt.crypt(REGISTRY_PASSWORD, crypt.mksalt(crypt.METHOD_BLOWFISH))
    (tmp_path / "htpasswd").write_text(f"{REGISTRY_USER}:{hashed}\n")
    config = tmp_path / "registry.yml"
    config.write_text(
        "version: 0.1\n"
        f"storage:\n  filesystem:\n    rootdirectory: {tmp_path / 'registry'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
        f"auth:\n  htpasswd:\n    realm: e2e\n    path: {tmp_path / 'htpasswd'}\n"
        "log:\n  level: warn\n"
    )
    log = (tmp_path / "registry.log").open("w")
    proc = subprocess.Popen(
        ["/usr/bin/docker-registry", "serve", str(config)], stdout=log, stderr=log
    )
    try:
        for _ in range(50):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1)
                break
            except urllib.error.HTTPError:  # 401: up, and asking for credentials
                break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail(f"registry did not start: {(tmp_path / 'registry.log').read_text()}")
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_pull_from_a_registry_verifies_and_then_changes_nothing(
    run_playbook: Callable[..., Any], target: str, registry: str, built_image: str
) -> None:
    # Pushed under the role's own name, so the default eval_image_pull_reference finds it:
    # `make image`'s tarball of the built image, by skopeo, whose gzip at level 1 on every core
    # takes a fraction of `docker push`'s single-threaded default (the registry stores what it
    # is sent; the role pulls it as from any registry).
    remote = f"{registry}/{target}"
    built_id = docker("image", "inspect", "--format", "{{.Id}}", built_image).stdout.strip()
    if not TARBALL.is_file() or TARBALL.with_suffix(".tar.id").read_text().strip() != built_id:
        pytest.fail(f"{TARBALL} is not {built_image} ({built_id}): run `make image` first")
    subprocess.run(
        [
            *("skopeo", "copy", "--dest-tls-verify=false", "--dest-compress-format", "gzip"),
            *("--dest-compress-level", "1", "--dest-creds", f"{REGISTRY_USER}:{REGISTRY_PASSWORD}"),
            f"docker-archive:{TARBALL}",
            f"docker://{remote}",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    # Only the registry has the image under that name: the role has to pull it, and it can
    # only do so by logging in with the credentials it was given.
    assert docker("image", "inspect", remote, check=False).returncode != 0
    params = role_vars(
        target,
        eval_image_source="pull",
        eval_image_registry=registry,
        eval_image_registry_username=REGISTRY_USER,
        eval_image_registry_password=REGISTRY_PASSWORD,
    )

    first = run_playbook(PLAYBOOK, **params)
    out = first.stdout.read()
    assert first.rc == 0, out
    assert lock_label(target) == LOCK_SHA
    assert verify_ran(first)
    assert REGISTRY_PASSWORD not in out, "the registry password was printed"
    docker_config = Path.home() / ".docker" / "config.json"
    if docker_config.is_file():
        assert registry not in docker_config.read_text(), "credentials left on the host"

    second = run_playbook(PLAYBOOK, **params)
    assert second.rc == 0, second.stdout.read()
    assert changed(second) == 0
    assert not verify_ran(second)
    docker("rmi", remote, check=False)


def load_vars(ref: str, staging: Path) -> dict[str, Any]:
    """The role's variables to load `make image`'s tarball, staged in ``staging``."""
    if not TARBALL.is_file():
        pytest.fail(f"{TARBALL} is missing: run `make image` first")
    return role_vars(
        ref,
        eval_image_source="load",
        eval_image_tarball=str(TARBALL),
        eval_image_tarball_dir=str(staging),
    )


def test_load_a_tarball_verifies_and_then_changes_nothing(
    run_playbook: Callable[..., Any], target: str, tmp_path: Path, built_image: str
) -> None:
    params = load_vars(target, tmp_path / "images")
    first = run_playbook(PLAYBOOK, **params)
    assert first.rc == 0, first.stdout.read()
    assert lock_label(target) == LOCK_SHA
    assert verify_ran(first)
    assert not any((tmp_path / "images").iterdir()), "the staged tarball was left on the host"

    second = run_playbook(PLAYBOOK, **params)
    assert second.rc == 0, second.stdout.read()
    assert changed(second) == 0


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"eval_image_source": "fetch"}, "fetch"),
        (
            {"eval_image_source": "load", "eval_image_tarball": "/nonexistent/x.tar"},
            "/nonexistent/x.tar",
        ),
        ({"eval_image_source": "pull"}, "eval_image_registry"),
    ],
)
def test_bad_input_is_refused_before_touching_docker(
    run_playbook: Callable[..., Any], target: str, params: dict[str, Any], message: str
) -> None:
    result = run_playbook(PLAYBOOK, **role_vars(target, **params))
    assert result.rc != 0
    out = result.stdout.read()
    assert message in out, out
    assert "Inspect the host's image" not in out


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 MiB filesystem (tmpfs), far too small for the image's tarball."""
    where = tmp_path / "small-disk"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(where)], check=True)
    yield where
    subprocess.run(["umount", str(where)], check=False)


def test_a_load_the_disk_cannot_hold_is_refused_naming_the_space(
    run_playbook: Callable[..., Any], target: str, small_disk: Path, built_image: str
) -> None:
    params = load_vars(target, small_disk / "images")
    result = run_playbook(PLAYBOOK, **params)
    out = result.stdout.read()
    assert result.rc != 0
    assert "localhost: not enough disk for the evaluation image: staging the tarball" in out, out
    assert f"free under {small_disk / 'images'}, which has 0.1 GiB free" in out, out
    # Refused before anything was copied or loaded.
    assert not any((small_disk / "images").iterdir())
    assert lock_label(target) is None
