"""roles/eval_image against this machine's Docker: build, pull (from a real registry started
here) and load (a docker save tarball), each idempotent and verified on the host."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import math
import re
import shutil
import socket
import subprocess
import tempfile
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

# One module, one worker (the Makefile's --dist loadfile): the role verifies every image in a
# container of one fixed name, so two of these tests at once would share it.
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
    require_current_tarball(built_image)
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


def require_current_tarball(built_image: str) -> None:
    """Fail unless `make image`'s tarball holds the built image: a load of an older one would
    also move the built image's tag back to it, under every test that runs after."""
    built_id = docker("image", "inspect", "--format", "{{.Id}}", built_image).stdout.strip()
    if not TARBALL.is_file() or TARBALL.with_suffix(".tar.id").read_text().strip() != built_id:
        pytest.fail(f"{TARBALL} is not {built_image} ({built_id}): run `make image` first")


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
    require_current_tarball(built_image)
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


# Load faults the daemon itself reports, from Docker daemons of the test's own (this machine's
# daemon and its images are left alone): a disk two hosts' Docker roots share filling up on the
# second load, and a damaged archive. The archive is the lab's small Debian image.
SMALL_IMAGE = "vlm-lab/debian12:latest"
DOCKERD = shutil.which("dockerd") or "/usr/sbin/dockerd"
FLEET_PLAYBOOK = """\
- name: eval_image on hosts that each have their own Docker daemon
  hosts: all
  gather_facts: false
  environment:
    DOCKER_HOST: "{{ docker_host }}"
  roles:
    - role: eval_image
"""
_load_module = importlib.util.spec_from_file_location(
    "eval_image_load", REPO / "plugins" / "modules" / "eval_image_load.py"
)
assert _load_module and _load_module.loader
eval_image_load = importlib.util.module_from_spec(_load_module)
_load_module.loader.exec_module(eval_image_load)


@contextlib.contextmanager
def mounted_tmpfs(where: Path, size_mib: int) -> Iterator[Path]:
    where.mkdir(parents=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs", str(where)], check=True
    )
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], check=False).returncode != 0:
            subprocess.run(["umount", "--lazy", str(where)], check=False)


@contextlib.contextmanager
def own_dockerd(name: str, data_root: Path, logs: Path) -> Iterator[str]:
    """A Docker daemon with its own data root, exec root, pid file and socket, and no network;
    yields its DOCKER_HOST and stops it when the block ends."""
    # Short paths: containerd's sockets under the exec root must fit a unix socket's 108 bytes.
    run = Path(tempfile.mkdtemp(prefix=f"vlm-dockerd-{name}-"))
    (run / "daemon.json").write_text("{}")  # not this machine's /etc/docker/daemon.json
    host = f"unix://{run}/docker.sock"
    log_path = logs / f"dockerd-{name}.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [
                # Its own network namespace: a daemon without a bridge deletes docker0, and this
                # machine's daemon runs every other test's containers on it.
                *("unshare", "--net"),
                DOCKERD,
                f"--config-file={run / 'daemon.json'}",
                f"--data-root={data_root}",
                f"--exec-root={run / 'exec'}",
                f"--pidfile={run / 'dockerd.pid'}",
                f"--host={host}",
                *("--bridge=none", "--iptables=false", "--ip6tables=false"),
                "--storage-driver=overlay2",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while docker("--host", host, "info", check=False).returncode != 0:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"dockerd {name} did not start: {log_path.read_text()[-3000:]}")
                time.sleep(0.5)
            yield host
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            shutil.rmtree(run, ignore_errors=True)


@pytest.fixture(scope="module")
def small_tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`docker save` of the lab's small Debian image."""
    if docker("image", "inspect", SMALL_IMAGE, check=False).returncode != 0:
        pytest.fail(f"{SMALL_IMAGE} is missing: run `make lab` first")
    path = tmp_path_factory.mktemp("small-image") / "debian12.tar"
    docker("save", "-o", str(path), SMALL_IMAGE)
    return path


def one_daemon_per_host(path: Path, hosts: list[str]) -> Path:
    """An inventory of this machine under one name per daemon (vlm-disk-1, -2, ...)."""
    names = {
        f"vlm-disk-{i}": {
            "ansible_connection": "local",
            "ansible_python_interpreter": "{{ ansible_playbook_python }}",
            "docker_host": host,
        }
        for i, host in enumerate(hosts, 1)
    }
    path.write_text(yaml.safe_dump({"all": {"hosts": names}}))
    return path


def by_host(runner: Any, task: str) -> dict[str, dict[str, Any]]:
    """A task's result per host, with its event (runner_on_ok, runner_on_failed, ...)."""
    return {
        e["event_data"]["host"]: {"event": e["event"], **e["event_data"]}
        for e in runner.events
        if e.get("event", "").startswith("runner_on_") and e["event_data"].get("task") == task
    }


@pytest.fixture
def two_daemons_on_one_small_disk(
    tmp_path: Path, small_tarball: Path
) -> Iterator[tuple[Path, list[str]]]:
    """Two daemons whose data roots lie on one tmpfs with room for one load's peak (the role's
    2.05x, so both pass its check) but not for a second beside the first one's image."""
    size_mib = math.ceil(small_tarball.stat().st_size * 2.5 / 2**20)
    with contextlib.ExitStack() as stack:
        disk = stack.enter_context(mounted_tmpfs(tmp_path / "shared-disk", size_mib))
        hosts = [
            stack.enter_context(own_dockerd(f"shared{i}", disk / f"docker-{i}", tmp_path))
            for i in (1, 2)
        ]
        yield disk, hosts


def test_a_second_load_that_fills_a_shared_disk_names_the_disk_its_space_and_the_need(
    run_playbook: Callable[..., Any],
    tmp_path: Path,
    small_tarball: Path,
    two_daemons_on_one_small_disk: tuple[Path, list[str]],
) -> None:
    disk, hosts = two_daemons_on_one_small_disk
    inventory = one_daemon_per_host(tmp_path / "hosts.yml", hosts)
    params = role_vars(
        "vlm-eval-e2e:shared-disk",
        eval_image_source="load",
        eval_image_tarball=str(small_tarball),
        eval_image_tarball_on_host=True,
        eval_image_load_throttle=1,
    )
    result = run_playbook(FLEET_PLAYBOOK, inventory=inventory, **params)
    out = result.stdout.read()
    assert result.rc != 0, out

    # Both hosts passed the check before the loads: the disk had room for either one alone.
    checks = by_host(result, "Refuse a load the host's disk cannot hold")
    assert {h: e["event"] for h, e in checks.items()} == {
        "vlm-disk-1": "runner_on_ok",
        "vlm-disk-2": "runner_on_ok",
    }, out
    loads = by_host(result, "Load the image")
    first, second = loads["vlm-disk-1"], loads["vlm-disk-2"]
    assert first["event"] == "runner_on_ok", out
    assert first["res"]["changed"] is True
    assert first["res"]["image_names"] == [SMALL_IMAGE]
    assert docker("--host", hosts[0], "image", "inspect", SMALL_IMAGE, check=False).returncode == 0
    # (vlm-disk-1 fails later, at the lock label a Debian base image lacks: not this test's.)

    assert second["event"] == "runner_on_failed", out
    message = second["res"]["msg"]
    print(message)
    root = disk / "docker-2"
    needed = int(small_tarball.stat().st_size * 2.05)
    assert message.startswith(f"could not load {small_tarball}: the Docker daemon says: "), message
    assert "no space left on device" in message
    found = re.search(
        rf"The disk under {re.escape(str(root))} ran out of space: (\d+) MiB free", message
    )
    assert found, message
    free_now = eval_image_load.free_bytes(str(root))
    assert abs(int(found[1]) - free_now / 2**20) <= 1, (message, free_now)
    assert int(found[1]) * 2**20 < needed
    assert (
        f"a load of this archive needs {eval_image_load.size_text(needed)} free there at its peak,"
        " and hosts whose Docker roots share one disk each need that much in turn" in message
    )
    assert message.endswith(f"Free space under {root}, then run site.yml again")
    assert "potentially corrupt" not in out
    assert docker("--host", hosts[1], "image", "inspect", SMALL_IMAGE, check=False).returncode != 0


@pytest.fixture
def one_daemon(tmp_path: Path, small_tarball: Path) -> Iterator[str]:
    size_mib = math.ceil(small_tarball.stat().st_size * 4 / 2**20)
    with contextlib.ExitStack() as stack:
        disk = stack.enter_context(mounted_tmpfs(tmp_path / "disk", size_mib))
        yield stack.enter_context(own_dockerd("damaged", disk / "docker", tmp_path))


def test_a_damaged_archive_names_the_archive_and_the_daemons_error(
    run_playbook: Callable[..., Any], tmp_path: Path, small_tarball: Path, one_daemon: str
) -> None:
    damaged = tmp_path / "damaged.tar"
    with small_tarball.open("rb") as whole, damaged.open("wb") as half:
        half.write(whole.read(small_tarball.stat().st_size // 2))
    inventory = one_daemon_per_host(tmp_path / "hosts.yml", [one_daemon])
    params = role_vars(
        "vlm-eval-e2e:damaged",
        eval_image_source="load",
        eval_image_tarball=str(damaged),
        eval_image_tarball_on_host=True,
    )
    result = run_playbook(FLEET_PLAYBOOK, inventory=inventory, **params)
    out = result.stdout.read()
    assert result.rc != 0, out
    load = by_host(result, "Load the image")["vlm-disk-1"]
    assert load["event"] == "runner_on_failed", out
    message = load["res"]["msg"]
    print(message)
    # The daemon's own words for a tar that ends mid-file.
    assert message.startswith(f"could not load {damaged}: the Docker daemon says: "), message
    assert message.endswith("unexpected EOF"), message
    assert "potentially corrupt" not in out
