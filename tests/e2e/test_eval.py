"""eval.yml end to end, in the real image, over two inventory names for this machine
(tests/e2e/inventory-two-hosts/hosts.yml, each with its own eval_dirs_root).

Smoke mode: tiny random checkpoints and synthetic datasets made by the worker, on CPU; the
orchestration, image, worker and VLMEvalKit code are the real ones.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ansible_runner
import pytest
import yaml
from conftest import DOCKER, REPO

pytestmark = pytest.mark.slow

INVENTORY = REPO / "tests" / "e2e" / "inventory-two-hosts" / "hosts.yml"
HOSTS = ("node-a", "node-b")
CATALOGUE = yaml.safe_load((REPO / "playbooks" / "vars" / "catalogue.yml").read_text())
# A stand-in token: it must never show up in output, results or docker inspect.
TOKEN = "hf_e2eNotARealToken0123456789"
POLL = "2"
# Stands for a custom benchmark TSV whose second row's image is not base64 (written per test).
BAD_TSV = "<bad.tsv>"


class Fleet:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.results = root / "results"
        self.env = {
            "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
            "ANSIBLE_ROLES_PATH": str(REPO / "roles"),
            "VLM_E2E_ROOT": str(root / "hosts"),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        }

    def playbook(self, name: str, inventory: Path = INVENTORY, **kw: Any) -> ansible_runner.Runner:
        return ansible_runner.run(
            private_data_dir=tempfile.mkdtemp(dir=self.root),
            project_dir=str(REPO),
            playbook=str(REPO / name),
            inventory=str(inventory),
            envvars=self.env,
            quiet=True,
            **kw,
        )

    def eval(self, inventory: Path = INVENTORY, **extravars: Any) -> ansible_runner.Runner:
        extravars.setdefault("results_dir", str(self.results))
        extravars.setdefault("eval_run_poll_seconds", POLL)
        return self.playbook("eval.yml", inventory=inventory, extravars=extravars)

    def host_dir(self, host: str, run_id: str) -> Path:
        return self.root / "hosts" / host / "outputs" / run_id / host

    def summary(self, run_id: str) -> dict[str, Any]:
        return json.loads((self.results / run_id / "summary.json").read_text())

    def containers(self) -> list[str]:
        """This fleet's run containers (their mounts are under its root): the other e2e
        worker's fleet starts and removes its own meanwhile."""
        labelled = docker("ps", "-aq", "--filter", "label=io.vlm-eval.run_id").split()
        return [c for c in labelled if str(self.root) in docker("inspect", c)]


def stdout(runner: ansible_runner.Runner) -> str:
    return runner.stdout.read()


def provisioned_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Both inventory names provisioned with role eval_dirs (site.yml's eval_dirs tag); the
    session's one `fleet` (conftest.py)."""
    f = Fleet(tmp_path_factory.mktemp("eval"))
    r = f.playbook(
        "site.yml",
        tags="eval_dirs",
        # Root here already; site.yml's become would need sudo, which this machine lacks.
        extravars={"ansible_become": False, "eval_dirs_hf_token": TOKEN},
    )
    assert r.rc == 0, stdout(r)
    yield f
    if mine := f.containers():
        docker("rm", "-f", *mine)


def docker(*args: str) -> str:
    return subprocess.run([DOCKER, *args], capture_output=True, text=True, check=False).stdout


def run_containers(run_id: str) -> list[str]:
    return docker("ps", "-aq", "--filter", f"label=io.vlm-eval.run_id={run_id}").split()


def tree_digest(path: Path) -> dict[str, str]:
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        if p.is_file()
        else "dir"
        for p in sorted(path.rglob("*"))
    }


def test_resume_after_the_worker_is_killed(fleet: Fleet, built_image: str) -> None:
    run_id = "e2e-resume"
    benchmarks = "POPE,MMStar,OCRBench,AI2D_TEST,HallusionBench,TextVQA_VAL"
    killed: list[str] = []

    def kill_after_first_record() -> None:
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            done = [
                p for host in HOSTS for p in fleet.host_dir(host, run_id).glob("*/*/status.json")
            ]
            if done:
                ids = run_containers(run_id)
                docker("kill", *ids)
                killed.extend(ids)
                return
            time.sleep(0.2)

    killer = threading.Thread(target=kill_after_first_record, daemon=True)
    killer.start()
    first = fleet.eval(
        smoke="true", limit="3", run_id=run_id, models="llava_v1.5_7b", benchmarks=benchmarks
    )
    killer.join(timeout=5)
    assert killed, "no status record appeared; the worker never finished a combination"
    assert first.rc != 0, "the killed run must fail: combinations are missing"
    before = fleet.summary(run_id)
    assert 0 < before["totals"]["ok"] < 6, before["totals"]
    # Each unfinished combination names the kill; the one a worker was on says it was running.
    missing = [c for c in before["combinations"] if c["status"] == "missing"]
    assert missing and all("killed by SIGKILL (exit 137)" in c["reason"] for c in missing)
    # Whether a worker was inside a combination at the kill depends on when it landed (it may
    # be between two): at most one per slot says it was running, every other one was not reached.
    running = [
        (c["host"], c["slot"]) for c in missing if "was running when the worker" in c["reason"]
    ]
    assert len(running) == len(set(running)), [c["reason"] for c in missing]
    assert all(
        "was running when the worker" in c["reason"] or "before it reached it" in c["reason"]
        for c in missing
    ), [c["reason"] for c in missing]
    assert not any("did not reach it" in c["reason"] for c in missing)
    # The consoles are on the controller and the containers gone.
    for slot in {(c["host"], c["slot"]) for c in before["combinations"]}:
        assert (fleet.results / run_id / slot[0] / slot[1] / "container.log").stat().st_size
    assert run_containers(run_id) == []

    # A worker of the run still running (as after an interrupted play): the rerun is refused
    # before it writes anything; once that worker has ended, the rerun keeps its console and
    # removes its container.
    written = {n: (fleet.results / run_id / n).read_bytes() for n in ("plan.json", "run.json")}
    label = f"--label=io.vlm-eval.run_id={run_id}"
    orphan = docker(
        "run", "-d", "--init", label, "--label=io.vlm-eval.host=node-a",
        "--label=io.vlm-eval.slot=cpu9", "--entrypoint=sh", built_image,
        "-c", "echo orphan console; exec sleep 300",
    ).strip()  # fmt: skip
    refused = fleet.eval(run_id=run_id)
    assert refused.rc != 0
    assert f"of run {run_id} still running" in " ".join(stdout(refused).split())
    assert {n: (fleet.results / run_id / n).read_bytes() for n in written} == written
    docker("kill", orphan)
    finished_before = {
        (c["model"], c["benchmark"]): json.loads(
            (
                fleet.results / run_id / c["host"] / c["model"] / c["benchmark"] / "status.json"
            ).read_text()
        )["finished_at"]
        for c in before["combinations"]
        if c["status"] == "ok"
    }

    # Same run_id, no other input: the stored inputs are reused.
    second = fleet.eval(run_id=run_id)
    assert second.rc == 0, stdout(second)[-5000:]
    after = fleet.summary(run_id)
    assert after["totals"] == {"ok": 6, "failed": 0, "missing": 0, "total": 6}
    assert run_containers(run_id) == []
    kept = list((fleet.results / run_id / "node-a" / "cpu9").glob("container-*.log"))
    assert kept and kept[0].read_text().strip() == "orphan console"
    plan = json.loads((fleet.results / run_id / "plan.json").read_text())
    replanned = {(u["model"], b["name"]) for u in plan["units"] for b in u["benchmarks"]}
    assert not replanned & set(finished_before), "finished combinations were planned again"
    for c in after["combinations"]:
        if (c["model"], c["benchmark"]) in finished_before:
            record = fleet.results / run_id / c["host"] / c["model"] / c["benchmark"]
            status = json.loads((record / "status.json").read_text())
            assert status["finished_at"] == finished_before[(c["model"], c["benchmark"])]


@pytest.mark.parametrize(
    ("extravars", "message"),
    [
        ({"models": "llava_v1.5_7b,gpt-4o"}, "unknown model 'gpt-4o'; valid models: llava_v1.5_7b"),
        ({"benchmarks": "POPE,MMBench"}, "unknown benchmark 'MMBench'; valid benchmarks:"),
        ({"limit": "0"}, "limit must be a positive integer"),
        ({"run_id": "../../etc"}, "run_id '../../etc' is not usable"),
        ({"smoke": "perhaps"}, "smoke must be true or false, got 'perhaps'"),
        ({"run_id": "existing", "resume": "false"}, "run_id 'existing' already has results"),
        ({"run_id": "existing", "limit": "7"}, "limit=7 differs from run 'existing'"),
        (
            {"eval_run_batch_size": "0"},
            "eval_run_batch_size must be 'auto' or a positive whole number",
        ),
        ({"max_new_tokens": "-1"}, "max_new_tokens must be a positive whole number"),
        ({"judge": "gpt-4o-mini"}, "judge 'gpt-4o-mini' is not available"),
        (
            {"models": "InternVL2-2B", "smoke": "true"},
            "smoke mode has no checkpoint for 'InternVL2-2B' (family internvl)",
        ),
        (
            {"models": "MiniCPM-V-2_6", "smoke": "true"},
            "model 'MiniCPM-V-2_6' (family minicpm) cannot run in this image",
        ),
        (
            {"models": "MiniCPM-V-2_6"},
            "MiniCPM-V-2_6's hub code needs flash-attn and transformers >= 4.40; this image "
            "pins transformers 4.37.2 (LLaVA 1.2.2 breaks on 4.38+) and excludes flash-attn by "
            "design; models this image runs: llava_v1.5_7b, llava_v1.5_13b, sharegpt4v_7b",
        ),
        (
            {"models": "cogvlm-chat"},
            "model 'cogvlm-chat' (family cogvlm) cannot run in this image: CogVLM's hub code "
            "needs xformers, which this image's lock does not hold",
        ),
        (
            {"models": "CogVLM-7B"},
            "model 'CogVLM-7B' is the original image's name for VLMEvalKit's 'cogvlm-chat' "
            "(THUDM/cogvlm-chat-hf): 17.6B parameters",
        ),
        ({"results_dir": "/proc/x"}, "results_dir /proc/x cannot be used"),
        # The report step would find these only after the whole matrix.
        ({"compare_to": "nosuchrun"}, "compare_to=nosuchrun: no run with a summary.json"),
        ({"compare_threshold": "5"}, "compare_threshold is gone"),
        ({"precision": "0"}, "precision must be a number greater than 0 and at most 50"),
        ({"precision": "5", "limit": "10"}, "precision=5 and limit=10 cannot be given together"),
        # VLMEvalKit would stop on the host at "Incorrect padding", naming neither row nor column.
        (
            {"benchmarks": "mine", "custom_benchmarks": {"mine": {"kind": "mcq", "tsv": BAD_TSV}}},
            "bad.tsv line 3 (index '1'), column image: is not base64 (Incorrect padding); an "
            "image is a base64-encoded PNG, JPEG, GIF, WebP, BMP or TIFF file",
        ),
        # One message: naming the refused entry in models is not a second, unknown-model one.
        (
            {"models": "mine", "custom_models": {"mine": {"family": "llava", "checkpoint": "/x"}}},
            "custom_models['mine']: checkpoint '/x' is not a checkpoint folder on the controller",
        ),
    ],
)
def test_bad_inputs_stop_before_anything_runs(
    fleet: Fleet, tmp_path: Path, extravars: dict[str, Any], message: str
) -> None:
    bad_tsv = tmp_path / "bad.tsv"
    image = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(64)).decode()
    rows = [("0", image), ("1", image[:-2])]
    bad_tsv.write_text(
        "index\tquestion\tA\tB\tanswer\timage\n"
        + "".join(f"{i}\tWhat?\tx\ty\tA\t{img}\n" for i, img in rows)
    )
    extravars = json.loads(json.dumps(extravars).replace(BAD_TSV, str(bad_tsv)))
    results = tmp_path / "results"
    existing = results / "existing"
    existing.mkdir(parents=True)
    (existing / "run.json").write_text(
        json.dumps(
            {
                "run_id": "existing",
                "started_at": "2026-11-27T00:00:00Z",
                "inputs": {
                    "models": ["llava_v1.5_7b"],
                    "benchmarks": ["POPE"],
                    "limit": 3,
                    "smoke": True,
                    "run_id": "existing",
                },
            }
        )
    )
    (existing / "summary.json").write_text("{}")
    before = tree_digest(results)
    containers_before = fleet.containers()
    r = fleet.eval(**{"results_dir": str(results), **extravars})
    out = stdout(r)
    assert r.rc != 0
    assert message in out
    assert "unknown model 'mine'" not in out and "unknown benchmark 'mine'" not in out
    # Stopped in the validation step: no later play of eval.yml started.
    plays = {e["event_data"]["play"] for e in r.events if e.get("event_data", {}).get("play")}
    assert plays == {"Validate the evaluation inputs"}, plays
    # Stopped on the controller: no inventory host was contacted, nothing written or started.
    hosts_touched = {e["event_data"].get("host") for e in r.events if e.get("event_data")}
    assert not hosts_touched & set(HOSTS)
    assert tree_digest(results) == before
    assert fleet.containers() == containers_before


STANDIN_NVIDIA_SMI = """#!/bin/sh
# Stand-in for nvidia-smi on this GPU-less machine: two H100s, the first one mostly in use.
case "$*" in
  *--query-gpu=index,name,memory.total,uuid,driver_version*)
    echo "0, NVIDIA H100 80GB HBM3, 81559, GPU-0000, 550.54.15"
    echo "1, NVIDIA H100 80GB HBM3, 81559, GPU-0001, 550.54.15" ;;
  *--query-gpu=index,memory.used,memory.total*)
    echo "0, 70000, 81559"
    echo "1, 500, 81559" ;;
  "") echo "| NVIDIA-SMI 550.54.15    Driver Version: 550.54.15    CUDA Version: 12.4 |" ;;
  *) exit 2 ;;
esac
"""


@pytest.mark.parametrize(
    ("gpu_slots", "slot_names"),
    [(None, ("gpu0", "gpu1")), ("2", ("gpu0s0", "gpu0s1", "gpu1s0", "gpu1s1"))],
)
def test_gpu_hosts_are_planned_per_gpu_and_preflight_stops_a_busy_gpu(
    fleet: Fleet, tmp_path: Path, gpu_slots: str | None, slot_names: tuple[str, ...]
) -> None:
    smi = tmp_path / "nvidia-smi"
    smi.write_text(STANDIN_NVIDIA_SMI)
    smi.chmod(0o755)
    run_id = f"e2e-gpu-preflight-{gpu_slots or 1}"
    containers_before = fleet.containers()
    shared = {"eval_gpu_slots": gpu_slots} if gpu_slots else {}
    r = fleet.eval(
        run_id=run_id,
        models="llava_v1.5_7b,llava_v1.5_13b",
        benchmarks="POPE,MMStar",
        limit="2",
        gpu_facts_nvidia_smi=str(smi),
        **shared,
    )
    out = stdout(r)
    assert r.rc != 0
    plan = json.loads((fleet.results / run_id / "plan.json").read_text())
    # Two hosts x two GPUs: single-GPU slots (two on each GPU with eval_gpu_slots=2), each
    # model loaded once per slot it uses.
    assert sorted((s["host"], s["slot"]) for s in plan["slots"]) == [
        (h, g) for h in HOSTS for g in slot_names
    ]
    assert all(u["device"] == "cuda" and u["gpus"] == [int(u["slot"][3])] for u in plan["units"])
    busy = [u for u in plan["units"] if u["gpus"] == [0]]
    if busy:
        # 81559 - 70000 MiB = 11.3 GiB free: less than either model needs.
        assert "not enough free GPU memory" in out
        assert "GiB free" in out
    else:
        assert "Docker has no nvidia runtime" in out
    # Stopped in preflight: no container started, no worker ran, no summary.
    assert fleet.containers() == containers_before
    assert not (fleet.results / run_id / "summary.json").exists()


# Role eval_run's preflight stage alone on localhost, with the planner's slot shape: the shipped
# catalogue has no gated model and no custom benchmark, and eval.yml takes no catalogue override,
# so the catalogue entries are given to the role here, as eval.yml would pass them.
PREFLIGHT = """
- name: Preflight one host
  hosts: localhost
  gather_facts: false
  vars_files: [{repo}/playbooks/vars/project.yml]
  tasks:
    - name: Preflight stage
      ansible.builtin.include_role:
        name: eval_run
        tasks_from: preflight
      vars:
        eval_run_run_id: e2e-{run_id}
        eval_run_slots:
          - {{slot: cpu0, gpus: [], device: cpu, container: vlm-eval-e2e-{run_id}-localhost-cpu0,
             models: [llava_v1.5_7b], secret_env: /run/secrets/eval.env,
             slot_file: {{units: [{{model: llava_v1.5_7b, benchmarks: [{benchmark}]}}]}}}}
        eval_run_dirs_root: "{root}"
        eval_run_image: "{{{{ project_image_repository }}}}:{{{{ project_image_tag }}}}"
        eval_run_uid: "{{{{ project_container_uid }}}}"
        eval_run_gid: "{{{{ project_container_gid }}}}"
        eval_run_min_free_gib: 0
        eval_run_benchmarks: {benchmarks}
        eval_run_models:
          llava_v1.5_7b:
            {{hf_repo: liuhaotian/llava-v1.5-7b, gated: {gated}, disk_gib: 0, gpu_memory_gib: 15}}
"""
GATED_PREFLIGHT = dict(
    run_id="gated", benchmark="{name: POPE, judge: exact_matching}", benchmarks="{}", gated="true"
)


@contextmanager
def standin_hub() -> Iterator[str]:
    """A stand-in for the Hugging Face hub's endpoint: an HTTP server on this machine that
    answers every request (preflight only asks whether the hub answers)."""

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@pytest.mark.parametrize(
    ("env_file", "smoke", "message"),
    [
        (None, False, "is missing or unreadable"),
        ("# written by role eval_dirs\nHF_TOKEN=\n", False, "holds no HF_TOKEN"),
        (f"HF_TOKEN={TOKEN}\n", False, None),
        (None, True, None),
    ],
)
def test_preflight_stops_a_gated_model_without_a_token(
    built_image: str,
    run_playbook: Any,
    tmp_path: Path,
    env_file: str | None,
    smoke: bool,
    message: str | None,
) -> None:
    root = tmp_path / "srv"
    for sub in ("hf-cache", "LMUData", "outputs"):
        (root / sub).mkdir(parents=True)
    with standin_hub() as hub:
        if env_file is not None:
            # The weights are not cached, so preflight asks whether the hub answers: a stand-in
            # one on this machine (the real hub cannot be reached from here) says it does.
            (root / ".env").write_text(env_file + f"HF_ENDPOINT={hub}\n")
            (root / ".env").chmod(0o600)
        play = PREFLIGHT.format(repo=REPO, root=root, **GATED_PREFLIGHT)
        r = run_playbook(play, eval_run_smoke=smoke)
    out = stdout(r)
    assert TOKEN not in out
    if message is None:
        assert r.rc == 0, out[-3000:]
        return
    assert r.rc != 0
    assert (
        f"localhost: llava_v1.5_7b is gated on the Hugging Face hub, and {root}/.env {message}; "
        "set eval_dirs_hf_token (from Ansible Vault) for this host" in " ".join(out.split())
    ), out[-3000:]
    # Stopped at the token, before the image and everything after it was looked at.
    tasks = [e["event_data"].get("task") for e in r.events if e["event"] == "runner_on_ok"]
    assert "Read the evaluation image" not in tasks


@pytest.fixture
def small_root(tmp_path: Path) -> Iterator[Path]:
    """An eval_dirs root on a 64 MiB filesystem (tmpfs), provisioned (its three directories)."""
    root = tmp_path / "srv"
    root.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(root)], check=True)
    for sub in ("hf-cache", "LMUData", "outputs"):
        (root / sub).mkdir()
    yield root
    subprocess.run(["umount", str(root)], check=False)


def test_preflight_counts_the_data_a_run_ships_against_the_free_disk(
    built_image: str, run_playbook: Any, tmp_path: Path, small_root: Path
) -> None:
    # 40 MiB of TSV (sparse: its size is what counts) and 30 MiB of images to come: 64 MiB free.
    tsv = tmp_path / "mine.tsv"
    tsv.touch()
    os.truncate(tsv, 40 * 2**20)
    # The model's weights are in the cache already: the data is all that is new.
    (small_root / "hf-cache/hub/models--liuhaotian--llava-v1.5-7b").mkdir(parents=True)
    play = PREFLIGHT.format(
        repo=REPO,
        root=small_root,
        run_id="data",
        benchmark='{name: mine, md5: "' + "0" * 32 + '", judge: exact_matching}',
        benchmarks=f'{{mine: {{kind: mcq, tsv: "{tsv}", custom: true}}}}',
        gated="false",
    )
    r = run_playbook(play)
    out = " ".join(stdout(r).split())
    assert r.rc != 0
    assert (
        f"localhost: 0.06 GiB free on {small_root}, this run needs about 0.07 GiB: weights none "
        "new (0 GiB), data mine 0.07 GiB (0.068 GiB), and 0 GiB of headroom for outputs and logs"
    ) in out, out[-3000:]
    # The file already on the host, at the size the run ships: only its images are to come.
    there = small_root / "LMUData" / "mine.tsv"
    there.touch()
    os.truncate(there, 40 * 2**20)
    r = run_playbook(play)
    assert r.rc == 0, stdout(r)[-3000:]


def test_a_full_outputs_disk_is_named_with_the_hosts_path(fleet: Fleet, project: Any) -> None:
    """node-a's outputs on a filesystem smaller than the worker's disk reserve."""
    run_id = "e2e-disk-full"
    outputs = fleet.root / "hosts" / "node-a" / "outputs"
    owner = f"uid={project['project_container_uid']},gid={project['project_container_gid']}"
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size=48k,mode=2775,{owner}", "tmpfs", str(outputs)],
        check=True,
    )
    try:
        r = fleet.eval(
            smoke="true",
            limit="1",
            run_id=run_id,
            models="llava_v1.5_7b",
            benchmarks="POPE,MMStar",
            eval_hosts="node-a",
        )
    finally:
        subprocess.run(["umount", str(outputs)], check=False)
    out = stdout(r)
    assert r.rc != 0, out[-3000:]
    host_dir = outputs / run_id / "node-a"
    console = (fleet.results / run_id / "node-a" / "cpu0" / "container.log").read_text()
    assert (
        f"disk too small for the worker's 1048576 byte reserve: {host_dir}/cpu0 has " in console
    ), console[-3000:]
    # What fitted is ok; every other combination names the full disk by the host's path.
    lost = [c for c in fleet.summary(run_id)["combinations"] if c["status"] != "ok"]
    assert lost
    for c in lost:
        assert f"disk full: {host_dir}/" in c["reason"], c
        assert "(disk too small for the worker's 1048576 byte reserve)" in c["reason"], c


SSHD = Path("/usr/sbin/sshd")


class SshHost:
    """A second 'host' reached over real SSH (an sshd of this test on 127.0.0.1), so the test
    can make it unreachable mid-run by stopping that sshd, and bring it back."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "sshd"
        self.dir.mkdir()
        for key in ("host_key", "client_key"):
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.dir / key)],
                check=True,
            )
        (self.dir / "authorized_keys").write_text((self.dir / "client_key.pub").read_text())
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        (self.dir / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {self.dir / 'host_key'}\n"
            f"AuthorizedKeysFile {self.dir / 'authorized_keys'}\n"
            "PermitRootLogin prohibit-password\n"
            f"PidFile {self.dir / 'sshd.pid'}\nStrictModes no\nUsePAM no\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        self.proc = subprocess.Popen(
            [str(SSHD), "-D", "-e", "-f", str(self.dir / "sshd_config")],
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for _ in range(50):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        raise RuntimeError("the test's sshd did not start")

    def stop(self) -> None:
        """The host drops off the network: listener and open sessions go."""
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def inventory(self, fleet: Fleet) -> Path:
        path = self.dir / "hosts.yml"
        hosts = fleet.root / "hosts"
        path.write_text(
            yaml.safe_dump(
                {
                    "all": {
                        "hosts": {
                            "node-a": {
                                "ansible_connection": "local",
                                "ansible_python_interpreter": sys.executable,
                                "eval_dirs_root": str(hosts / "node-a"),
                            },
                            "node-ssh": {
                                "ansible_connection": "ssh",
                                "ansible_host": "127.0.0.1",
                                "ansible_port": self.port,
                                "ansible_user": "root",
                                "ansible_ssh_private_key_file": str(self.dir / "client_key"),
                                # One connection per task, so a stopped sshd shows at once.
                                "ansible_ssh_args": "-o ControlMaster=no -o ConnectTimeout=5 "
                                "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
                                "ansible_python_interpreter": sys.executable,
                                "eval_dirs_root": str(hosts / "node-ssh"),
                            },
                        }
                    }
                }
            )
        )
        return path


@pytest.mark.skipif(not SSHD.exists(), reason="needs openssh-server (sshd) for a second host")
def test_host_lost_mid_run_leaves_the_others_and_a_rerun_finishes_it(fleet: Fleet) -> None:
    ssh = SshHost(fleet.root)
    ssh.start()
    try:
        inventory = ssh.inventory(fleet)
        r = fleet.playbook(
            "site.yml",
            inventory=inventory,
            tags="eval_dirs",
            extravars={"ansible_become": False, "eval_dirs_hf_token": TOKEN},
        )
        assert r.rc == 0, stdout(r)
        run_id = "e2e-lost-host"
        lost_dir = fleet.root / "hosts" / "node-ssh" / "outputs" / run_id / "node-ssh"
        stopped = threading.Event()

        def drop_host_once_its_worker_runs() -> None:
            deadline = time.monotonic() + 900
            while time.monotonic() < deadline:
                started = docker(
                    "ps",
                    "-q",
                    "--filter",
                    f"label=io.vlm-eval.run_id={run_id}",
                    "--filter",
                    "name=node-ssh",
                )
                if started.strip() and list(lost_dir.glob("*/slot.json")):
                    ssh.stop()
                    stopped.set()
                    return
                time.sleep(0.2)

        dropper = threading.Thread(target=drop_host_once_its_worker_runs, daemon=True)
        dropper.start()
        first = fleet.eval(
            inventory=inventory,
            smoke="true",
            limit="2",
            run_id=run_id,
            models="llava_v1.5_7b",
            benchmarks="POPE,MMStar,OCRBench,AI2D_TEST",
        )
        dropper.join(timeout=5)
        assert stopped.is_set(), "node-ssh never got work: the plan did not use both hosts"
        assert first.rc != 0
        summary = fleet.summary(run_id)
        by_host = {}
        for c in summary["combinations"]:
            by_host.setdefault(c["host"], []).append(c)
        # node-a finished its share although node-ssh went away mid-run.
        assert by_host["node-a"] and all(c["status"] == "ok" for c in by_host["node-a"])
        assert by_host["node-ssh"]
        for c in by_host["node-ssh"]:
            assert c["status"] == "missing"
            assert "host node-ssh unreachable" in c["reason"]
        assert summary["lost_hosts"] == ["node-ssh"]

        # The host comes back; its worker may have finished meanwhile. Same run_id again.
        for c in run_containers(run_id):
            docker("wait", c)
        ssh.start()
        second = fleet.eval(inventory=inventory, run_id=run_id)
        assert second.rc == 0, stdout(second)[-5000:]
        after = fleet.summary(run_id)
        assert after["totals"] == {"ok": 4, "failed": 0, "missing": 0, "total": 4}
        assert {c["host"] for c in after["combinations"]} == {"node-a", "node-ssh"}
    finally:
        ssh.stop()
