"""A judge model: VLMEvalKit's own OpenAI-compatible judge, against a STAND-IN server.

The stand-in (``StandInJudge``, stdlib http.server, started by this test) is not a model: it
answers /v1/chat/completions by rule, the same letter for every multiple-choice question and
"Yes" for every yes/no one, and records each request with its Authorization header. It listens
on the Docker bridge's gateway address, which a worker container on the default bridge (as role
eval_run starts them: no network named) reaches.

The slot file comes from the controller's own steps (validation, planner, ``eval_host_units``);
the worker runs in the evaluation image with this repository's worker code mounted over the
image's, started as role eval_run starts it (its user, ``--init``, the host directories, the
token file read-only at contract.CONTAINER_SECRET_ENV, no environment variable). Smoke mode's
tiny random checkpoint answers words no rule reads, so VLMEvalKit's evaluation asks the judge
about every question: the scores are then the judge's alone, computed here from the answer key.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible_collections.vlmfleet.shared.plugins.module_utils import contract
from ansible_collections.vlmfleet.shared.plugins.plugin_utils.inputs import check_inputs
from ansible_collections.vlmfleet.shared.plugins.plugin_utils.plan import eval_host_units, plan
from conftest import DOCKER, REPO
from scoring.check_run import tsv_rows

CATALOGUE = yaml.safe_load((REPO / "playbooks/vars/catalogue.yml").read_text())
HOST = "judge-host"
KEY = "sk-STANDIN-judge-key-5f0c2a9e71d4"
JUDGE_MODEL = "stand-in-judge"
MCQ_ANSWER = "A"
# Judged: an MCQ set and a yes/no set; a VQA set keeps exact matching and never asks.
BENCHMARKS = ("MMStar", "POPE", "TextVQA_VAL")
LIMIT = 4


class StandInJudge(ThreadingHTTPServer):
    """A STAND-IN for an OpenAI-compatible server: fixed answers by rule, every request kept."""

    def __init__(self, host: str) -> None:
        self.requests: list[dict[str, Any]] = []
        super().__init__((host, 0), _Handler)

    @property
    def base_url(self) -> str:
        return f"http://{self.server_address[0]}:{self.server_address[1]}/v1"


class _Handler(BaseHTTPRequestHandler):
    server: StandInJudge

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(
            {"path": self.path, "authorization": self.headers.get("Authorization"), "body": body}
        )
        if self.path != "/v1/chat/completions":
            self.send_error(404)
            return
        prompt = prompt_of(body)
        if "Yes, No" in prompt or "yes or no" in prompt.lower():
            answer = "Yes"
        elif "hello" in prompt.lower() and "Options" not in prompt:
            answer = "Hello, I am a stand-in."
        else:
            answer = MCQ_ANSWER
        out = json.dumps(
            {
                "id": "stand-in",
                "object": "chat.completion",
                "model": body.get("model"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}}],
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args: Any) -> None:
        pass


def prompt_of(body: dict[str, Any]) -> str:
    content = body["messages"][-1]["content"]
    if isinstance(content, list):
        return "\n".join(c.get("text", "") for c in content)
    return str(content)


def bridge_gateway() -> str:
    """The default bridge's gateway: IPAM's Gateway where Docker records one, else the first
    address of its subnet, which a fresh daemon's docker0 takes without recording it."""
    out = subprocess.run(
        [DOCKER, "network", "inspect", "bridge", "--format", "{{json (index .IPAM.Config 0)}}"],
        capture_output=True,
        text=True,
        check=True,
    )
    config = json.loads(out.stdout)
    if config.get("Gateway"):
        return str(config["Gateway"])
    return str(next(ipaddress.ip_network(config["Subnet"]).hosts()))


@pytest.fixture
def stand_in_judge() -> Iterator[StandInJudge]:
    server = StandInJudge(bridge_gateway())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def slot_file(base_url: str) -> dict[str, Any]:
    """The one slot of a GPU-less smoke run with the judge, as the controller builds it."""
    inputs = check_inputs(
        {
            "models": "llava_v1.5_7b",
            "benchmarks": ",".join(BENCHMARKS),
            "limit": str(LIMIT),
            "smoke": "true",
            "smoke_weights": "random",
            "judge": "openai",
            "judge_model": JUDGE_MODEL,
            "judge_base_url": base_url,
            "batch_size": "1",
        },
        CATALOGUE,
        "judge-run",
        None,
        {HOST: {}},
        [HOST],
    )
    facts = {HOST: {"gpu_facts_present": False, "gpu_facts_gpus": []}}
    (slot,) = eval_host_units(plan(facts, CATALOGUE, inputs), HOST)
    return slot["slot_file"]


def test_a_judge_model_scores_through_vlmevalkits_judge_with_the_key_kept_secret(
    built_image: str, project: dict[str, Any], stand_in_judge: StandInJudge, tmp_path: Path
) -> None:
    uid, gid = project["project_container_uid"], project["project_container_gid"]
    root = tmp_path / "eval-dirs"
    for sub in ("hf-cache", "LMUData", "outputs", "models"):
        (root / sub).mkdir(parents=True)
    data = slot_file(stand_in_judge.base_url)
    assert KEY not in json.dumps(data)
    slot_dir = root / "outputs" / "judge-run" / HOST / data["slot"]
    slot_dir.mkdir(parents=True)
    (slot_dir / contract.SLOT_FILE).write_text(json.dumps(data, indent=2))
    # The host's token file as role eval_dirs writes it (templates/env.j2): mode 0600.
    env = root / ".env"
    env.write_text(f"HF_TOKEN=\nOPENAI_API_KEY={KEY}\n")
    env.chmod(0o600)
    for path in [root, *root.rglob("*")]:
        os.chown(path, uid, gid)

    name = f"vlmfleet-e2e-judge-{os.getpid()}"
    src = REPO / "docker" / "transformers-4.37" / "src"
    run = [DOCKER, "run", "--detach", f"--name={name}", "--init", f"--user={uid}:{gid}"]
    run += [
        f"--volume={root / 'hf-cache'}:/cache",
        f"--volume={root / 'LMUData'}:/workspace/LMUData",
        f"--volume={root / 'outputs'}:/workspace/outputs",
        f"--volume={root / 'models'}:{contract.CONTAINER_MODELS}:ro",
        f"--volume={env}:{contract.CONTAINER_SECRET_ENV}:ro",
        f"--volume={src}:/opt/vlm-image/src:ro",
    ]
    command = ["python", "-m", "vlmfleet.worker", "--slot-file"]
    command.append(f"/workspace/outputs/judge-run/{HOST}/{data['slot']}/{contract.SLOT_FILE}")
    subprocess.run([*run, built_image, *command], check=True, capture_output=True, text=True)
    try:
        waited = subprocess.run(
            [DOCKER, "wait", name], capture_output=True, text=True, timeout=900, check=True
        )
        inspect = subprocess.run(
            [DOCKER, "inspect", name], capture_output=True, text=True, check=True
        ).stdout
        logs = subprocess.run([DOCKER, "logs", name], capture_output=True, text=True, check=True)
    finally:
        subprocess.run([DOCKER, "rm", "--force", name], capture_output=True, check=False)
    console = logs.stdout + logs.stderr
    assert waited.stdout.strip() == "0", console[-6000:]

    host_dir = root / "outputs" / "judge-run" / HOST
    records = {
        b: json.loads((host_dir / "llava_v1.5_7b" / b / contract.STATUS_FILE).read_text())
        for b in BENCHMARKS
    }
    assert {b: r["status"] for b, r in records.items()} == dict.fromkeys(BENCHMARKS, "ok")

    # (a) VLMEvalKit's client called the stand-in, with the key in its header, for the model.
    calls = stand_in_judge.requests
    assert calls, console[-3000:]
    assert {c["path"] for c in calls} == {"/v1/chat/completions"}
    assert {c["authorization"] for c in calls} == {f"Bearer {KEY}"}
    assert {c["body"]["model"] for c in calls} == {JUDGE_MODEL}

    # (b) Every question of a judged benchmark went to the judge (the premise: the random
    # checkpoint's words name no option and say neither yes nor no), so its score is the
    # judge's answers against the answer key; the VQA set asked nothing.
    smoke_dir = root / "LMUData" / "smoke" / HOST / data["slot"]
    prompts = [prompt_of(c["body"]) for c in calls]
    for bench in ("MMStar", "POPE"):
        rows = tsv_rows(smoke_dir / f"{bench}.tsv")[:LIMIT]
        for row in rows:
            assert any(row["question"] in p for p in prompts), (bench, row["question"])
        record = records[bench]
        assert (record["judge"], record["judge_model"]) == ("openai", JUDGE_MODEL)
        assert record["scoring_note"] is None
        right = [r["answer"] == (MCQ_ANSWER if bench == "MMStar" else "Yes") for r in rows]
        if bench == "MMStar":
            expected = 100 * sum(right) / len(rows)
        else:
            # POPE's primary figure is the F1 of "yes": every answer yes -> recall 1.
            precision = sum(right) / len(rows)
            expected = 100 * 2 * precision / (1 + precision) if precision else 0.0
        assert record["primary_score"] == pytest.approx(expected, abs=0.01), (bench, record)
    text_rows = tsv_rows(smoke_dir / "TextVQA_VAL.tsv")[:LIMIT]
    assert not any(r["question"] in p for r in text_rows for p in prompts)
    assert records["TextVQA_VAL"]["judge"] == "exact_matching"
    assert "judge_model" not in records["TextVQA_VAL"]

    # (c) The key is in no file of the results tree, not in the console, not in docker inspect.
    leaks = [
        str(p)
        for p in (root / "outputs").rglob("*")
        if p.is_file() and KEY.encode() in p.read_bytes()
    ]
    assert leaks == []
    assert KEY not in console
    assert KEY not in inspect
    assert "OPENAI_API_KEY" not in inspect
    # VLMEvalKit logs its client's key when it builds one: the worker's log has it redacted.
    assert "API Key: [secret]" in console
    slot_log = (slot_dir / contract.WORKER_LOG).read_text()
    assert "loaded HF_TOKEN, OPENAI_API_KEY from" in slot_log
    shutil.rmtree(root / "hf-cache", ignore_errors=True)
    print(
        f"\nstand-in judge: {len(calls)} requests; "
        + ", ".join(f"{b} {records[b]['primary_score']}" for b in BENCHMARKS)
    )
