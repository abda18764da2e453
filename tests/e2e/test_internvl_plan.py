"""InternVL2-2B and -8B named by a user: through validation and the planner on GPU hosts (a
stand-in nvidia-smi: two H100s, the first mostly in use), and refused with the catalogue's
reason on this machine's CPU-only hosts. Both runs stop before any container starts."""

from __future__ import annotations

import json
from pathlib import Path

from test_eval import HOSTS, STANDIN_NVIDIA_SMI, Fleet, stdout

MODELS = "InternVL2-2B,InternVL2-8B"


def test_internvl2_models_are_planned_on_gpu_hosts_and_refused_on_cpu_only_ones(
    fleet: Fleet, tmp_path: Path
) -> None:
    smi = tmp_path / "nvidia-smi"
    smi.write_text(STANDIN_NVIDIA_SMI)
    smi.chmod(0o755)
    containers_before = fleet.containers()
    run_id = "e2e-internvl-gpu"
    r = fleet.eval(
        run_id=run_id,
        models=MODELS,
        benchmarks="POPE,OCRBench",
        limit="2",
        gpu_facts_nvidia_smi=str(smi),
    )
    out = stdout(r)
    # Validation and the planner passed: the plan is written, every unit on a GPU slot.
    plan = json.loads((fleet.results / run_id / "plan.json").read_text())
    # Each model where the balance puts it (a model loads on a host only when needed there).
    assert {u["model"] for u in plan["units"]} == set(MODELS.split(","))
    assert {u["host"] for u in plan["units"]} <= set(HOSTS)
    for unit in plan["units"]:
        assert unit["device"] == "cuda" and unit["gpus"] and unit["family"] == "internvl"
        assert unit["hf_repo"] == f"OpenGVLab/{unit['model']}"
    # The 8B's 26 GiB (an estimate) is not planned on GPU 0's 11.3 GiB free... by preflight:
    # the run stops there (or at the missing nvidia runtime), before any container.
    assert r.rc != 0
    assert "not enough free GPU memory" in out or "Docker has no nvidia runtime" in out
    assert fleet.containers() == containers_before

    # This machine's hosts have no GPU: the catalogue's internvl runs on cuda only.
    r = fleet.eval(run_id="e2e-internvl-cpu", models=MODELS, benchmarks="POPE", allow_cpu="true")
    assert r.rc != 0
    assert (
        "model 'InternVL2-2B' (family internvl) runs only on cuda and no planned host has a "
        "GPU; families that run on the CPU: llava" in " ".join(stdout(r).split())
    )
    assert not (fleet.results / "e2e-internvl-cpu" / "plan.json").exists()
