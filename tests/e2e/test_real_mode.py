"""The real-mode path (smoke=false) end to end, offline: your own model and your own benchmarks.

"Your own model" is the committed known-answer strong checkpoint (docker/transformers-4.37/
known_answer/llava-known-strong, a LLaVA-1.5 checkpoint in the real on-disk format) given as a
custom model; "your own benchmarks" are TSVs in VLMEvalKit's format of each kind (multiple
choice, yes/no, VQA with annotators' answer lists) whose answers the checkpoint was trained to
give. eval.yml ships both from the controller to the host, once, before any worker starts; two
CPU slots of one host share them read-only. Each score is compared with this test's own
computation (tests/scoring/published_metrics.py) on the shipped TSV and the prediction files.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO
from scoring import published_metrics as pm
from scoring.check_run import tsv_rows
from test_eval import Fleet, docker, stdout

pytestmark = pytest.mark.slow

CHECKPOINT = REPO / "docker" / "transformers-4.37" / "known_answer" / "llava-known-strong"
HOST = "node-a"
RUN_ID = "real-ka"
QUESTIONS = 12
# Custom benchmark -> (kind, the default benchmark whose synthetic rows it holds: the questions the
# checkpoint was trained on, the metric VLMEvalKit gives a custom set of that kind).
BENCHMARKS: dict[str, tuple[str, str, Callable[..., float]]] = {
    "ka_mcq": ("mcq", "AI2D_TEST", pm.mcq_accuracy),
    "ka_yorn": ("yorn", "POPE", pm.yes_no_accuracy),
    "ka_vqa": ("vqa", "TextVQA_VAL", pm.vqa_accuracy),
}
WRITE_TSVS = "/src/tests/e2e/in_image_custom_tsvs.py"


def trained_answer(row: dict[str, str]) -> str:
    """What the checkpoint was taught to answer: a VQA row's image_answer (its key may hold
    it for only some annotators), else the key's answer."""
    return row.get("image_answer") or pm.answers_of(row)[0]


@pytest.fixture(scope="module")
def fleet(built_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    f = Fleet(tmp_path_factory.mktemp("real"))
    r = f.playbook("site.yml", tags="eval_dirs", extravars={"ansible_become": False})
    assert r.rc == 0, stdout(r)
    yield f
    containers = docker("ps", "-aq", "--filter", f"label=io.vlm-eval.run_id={RUN_ID}").split()
    if containers:
        docker("rm", "-f", *containers)


@pytest.fixture(scope="module")
def tsvs(run_in_image: Callable[..., Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The custom benchmarks' TSVs, written by the image's own smoke data generators (the
    images the checkpoint was trained on)."""
    out = tmp_path_factory.mktemp("tsvs")
    os.chown(out, 10001, 10001)
    done = run_in_image(
        "python",
        WRITE_TSVS,
        "/tsvs",
        str(QUESTIONS),
        *(f"{name}={source}" for name, (_, source, _) in BENCHMARKS.items()),
        volumes=(f"{out}:/tsvs", f"{REPO / 'tests'}:/src/tests:ro"),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def test_your_own_model_on_your_own_benchmarks_in_real_mode(fleet: Fleet, tsvs: Path) -> None:
    r = fleet.eval(
        run_id=RUN_ID,
        eval_hosts=HOST,
        smoke=False,
        allow_cpu=True,
        # Two slots on the one host: they share its custom data.
        eval_gpu_slots=2,
        max_new_tokens=16,
        models=["ka_strong"],
        benchmarks=list(BENCHMARKS),
        custom_models={"ka_strong": {"family": "llava", "checkpoint": str(CHECKPOINT)}},
        custom_benchmarks={
            name: {"kind": kind, "tsv": str(tsvs / f"{name}.tsv")}
            for name, (kind, _, _) in BENCHMARKS.items()
        },
    )
    out = stdout(r)
    assert r.rc == 0, out[-4000:]
    summary = fleet.summary(RUN_ID)
    assert summary["smoke"] is False
    assert summary["totals"] == {"ok": 3, "failed": 0, "missing": 0, "total": 3}

    plan = json.loads((fleet.results / RUN_ID / "plan.json").read_text())
    assert sorted({u["slot"] for u in plan["units"]}) == ["cpu0s0", "cpu0s1"]

    # Each benchmark's file is on the host once, read-only, byte for byte the controller's.
    lmu = fleet.root / "hosts" / HOST / "LMUData"
    for name in BENCHMARKS:
        shipped = lmu / f"{name}.tsv"
        assert shipped.read_bytes() == (tsvs / f"{name}.tsv").read_bytes()
        assert stat.S_IMODE(shipped.stat().st_mode) == 0o444
    assert not (lmu / "smoke").exists()

    for entry in summary["combinations"]:
        name = entry["benchmark"]
        metric = BENCHMARKS[name][2]
        record_dir = fleet.results / RUN_ID / entry["host"] / "ka_strong" / name
        record = json.loads((record_dir / "status.json").read_text())
        predictions = pm.read_predictions(record_dir / Path(record["prediction_file"]).name)
        expected = metric(tsv_rows(tsvs / f"{name}.tsv"), predictions)
        assert entry["primary_score"] == pytest.approx(expected, abs=1e-6), name
        assert record["samples"] == QUESTIONS
        # Decoded by the engine's static KV cache (a CPU slot: no CUDA graphs); the scores
        # checked above are its answers'.
        assert record["decoder"] == "static_cache", name
        # The checkpoint was trained to answer these (a VQA row's key may credit its trained
        # answer only in part); a broken real-mode path scores far below what they give.
        rows = tsv_rows(tsvs / f"{name}.tsv")
        trained = {pm.index_key(r["index"]): trained_answer(r) for r in rows[:QUESTIONS]}
        assert expected >= 0.9 * metric(rows[:QUESTIONS], trained), (name, expected)


def test_an_official_benchmark_is_prepared_before_any_worker_and_its_failure_named(
    fleet: Fleet,
) -> None:
    """smoke=false with VLMEvalKit's POPE and data_source=download: the host's preparation
    container lets VLMEvalKit fetch POPE.tsv, which this machine cannot reach (no benchmark
    mirror here), so the host's run stops there, naming POPE, its URL and the cause; no worker
    starts, and the summary says so for the combination."""
    run_id = "real-prep"
    r = fleet.eval(
        run_id=run_id,
        eval_hosts=HOST,
        smoke=False,
        allow_cpu=True,
        models=["ka_strong"],
        benchmarks=["POPE"],
        data_source="download",
        custom_models={"ka_strong": {"family": "llava", "checkpoint": str(CHECKPOINT)}},
    )
    out = stdout(r)
    assert r.rc != 0, out[-4000:]
    url = "https://opencompass.openxlab.space/utils/VLMEval/POPE.tsv"
    prefix = f"data not prepared: could not download POPE from {url}: "
    assert f"{HOST}: {prefix}" in out, out[-4000:]
    (entry,) = fleet.summary(run_id)["combinations"]
    assert entry["status"] == "missing" and entry["reason"].startswith(prefix), entry
    # No worker started: none wrote its progress file.
    host_dir = fleet.host_dir(HOST, run_id)
    assert not list(host_dir.glob("*/slot-progress.json"))
    assert json.loads((host_dir / "prepare.json").read_text())["status"] == "failed"
    print(f"\n{entry['reason'][:300]}")


def test_hub_weights_neither_cached_nor_downloadable_stop_preflight(fleet: Fleet) -> None:
    """smoke=false with llava_v1.5_7b by its hub id on a host whose Hugging Face cache lacks it
    and whose hub does not answer (HF_ENDPOINT in the host's .env: a port nothing listens on):
    preflight stops the run before any container starts, naming the host, the model, its repos
    and what to do, instead of the hub library's OSError at the model load."""
    run_id = "real-nohub"
    env = fleet.root / "hosts" / HOST / ".env"
    before = env.read_text()
    env.write_text(before + "HF_ENDPOINT=http://127.0.0.1:9\n")
    try:
        r = fleet.eval(
            run_id=run_id,
            eval_hosts=HOST,
            smoke=False,
            allow_cpu=True,
            models=["llava_v1.5_7b"],
            benchmarks=["POPE"],
        )
    finally:
        env.write_text(before)
    out = stdout(r)
    assert r.rc != 0, out[-4000:]
    assert (
        f"{HOST}: weights the planned models load are not in this host's Hugging Face cache, "
        f"and the hub, http://127.0.0.1:9, cannot be reached from {HOST} (<urlopen error "
    ) in out, out[-4000:]
    assert (
        "llava_v1.5_7b needs liuhaotian/llava-v1.5-7b, openai/clip-vit-large-patch14-336. Put "
        f"them in the cache at {fleet.root / 'hosts' / HOST}/hf-cache/hub "
    ) in out
    assert not docker("ps", "-aq", "--filter", f"label=io.vlm-eval.run_id={run_id}").split()
    assert not (fleet.host_dir(HOST, run_id) / "prepare.json").exists()
