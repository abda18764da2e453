"""Whole benchmarks projected from a bench run, by the planner's own cost model.

The planner (the collection's plugin_utils/plan/) balances slots by a cost of rows x the benchmark's
``cost_per_sample`` x the model's ``cost_factor`` (playbooks/vars/catalogue.yml). A bench run
long enough to time whole batches (e.g. limit 1000 on four benchmarks of different kinds)
calibrates it: seconds per cost unit, from the slots' time on samples; each benchmark that
followed another in its slot is then checked against the cost the model gives it. The
planner then plans the whole default matrix (no limit, the catalogue's row counts) on G GPUs of
the bench's kind, and its makespan, in calibrated seconds, is the projection; the plan also
says how close the makespan comes to total work / slots.

    python3 bench/projection.py bench/results/h200-long.json --gpus 1 8 \\
        --out bench/results/h200-projection.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import sys
from pathlib import Path
from typing import Any

import matrix_bench as bench  # the bench's own view of the planner and the catalogue


def costed(arm: dict[str, Any], catalogue: dict[str, Any]) -> list[dict[str, Any]]:
    """Each ok combination with the planner's cost for its rows."""
    models = catalogue["catalogue_models"]
    benchmarks = catalogue["catalogue_benchmarks"]
    rows = [
        c
        | {
            "cost": bench.eval_plan.combination_cost(
                models[c["model"]], benchmarks[c["benchmark"]], c["samples"], smoke=False
            )
        }
        for c in arm["combinations"]
        if c["status"] == "ok"
    ]
    if not rows:
        sys.exit("the arm has no ok combination to calibrate on")
    return rows


def seconds_per_cost_unit(arm: dict[str, Any], rows: list[dict[str, Any]]) -> float:
    """The slots' time on samples (their processes' wall, less the start and the model loads)
    over the planner's cost of those samples. With one queue per slot a benchmark's own time
    overlaps its neighbours', so the slots' totals are what is measured whole."""
    slots = len(arm["process_wall_s"])
    work = (
        sum(arm["process_wall_s"])
        - slots * arm["stage_s"]["start_and_imports"]
        - arm["model_load_s"]
    )
    return work / sum(r["cost"] for r in rows)


def benchmark_checks(rows: list[dict[str, Any]], per_unit: float) -> list[dict[str, Any]]:
    """Measured against modelled seconds for each benchmark that followed another of the same
    model in its slot: the time between the two finishing (the queue answers the oldest
    benchmark first, so that is the later one's own share)."""
    checks = []
    ordered = sorted(rows, key=lambda r: (r["slot"], r["finished_at"]))
    for before, this in itertools.pairwise(ordered):
        if (before["slot"], before["model"]) != (this["slot"], this["model"]):
            continue
        took = (
            dt.datetime.fromisoformat(this["finished_at"])
            - dt.datetime.fromisoformat(before["finished_at"])
        ).total_seconds()
        modelled = this["cost"] * per_unit
        checks.append(
            {
                "slot": this["slot"],
                "model": this["model"],
                "benchmark": this["benchmark"],
                "samples": this["samples"],
                "measured_s": took,
                "modelled_s": round(modelled, 1),
                "measured_over_modelled": round(took / modelled, 2),
            }
        )
    return checks


def gpu_facts(nvidia_smi: str, gpus: int) -> dict[str, Any]:
    """The planner's view of ``gpus`` GPUs like the bench's one (its nvidia-smi line)."""
    name, memory, driver = (p.strip() for p in nvidia_smi.split(","))
    line = f"{name}, {memory.split()[0]}, GPU-projection, {driver}"
    found = [bench.smi_parser.parse_gpu_query(f"{i}, {line}")[0] for i in range(gpus)]
    return {"gpu_facts_present": True, "gpu_facts_gpus": found}


def plan_whole_matrix(nvidia_smi: str, gpus: int) -> dict[str, Any]:
    catalogue = bench.catalogue()
    inputs = bench.eval_inputs.check_inputs(
        {"limit": None}, catalogue, "projection", hosts={"bench": {}}, inventory=["bench"]
    )
    return bench.eval_plan.plan({"bench": gpu_facts(nvidia_smi, gpus)}, catalogue, inputs)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("result", type=Path, help="a bench JSON with a long arm")
    p.add_argument("--arm", help="the arm to calibrate on (default: the one with most samples)")
    p.add_argument("--gpus", type=int, nargs="+", default=[1, 8])
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    result = json.loads(args.result.read_text())
    arms = result["arms"]
    name = args.arm or max(arms, key=lambda a: arms[a].get("questions", 0))
    arm = arms[name]
    rows = costed(arm, bench.catalogue())
    per_unit = seconds_per_cost_unit(arm, rows)
    checks = benchmark_checks(rows, per_unit)
    out: dict[str, Any] = {
        "calibrated_on": {"result": args.result.name, "arm": name, "combinations": rows},
        "seconds_per_cost_unit": round(per_unit, 5),
        "benchmark_checks": checks,
        "projections": {},
    }
    for gpus in args.gpus:
        plan = plan_whole_matrix(result["machine"]["nvidia_smi"], gpus)
        slots = {u["slot"] for u in plan["units"]}
        work = sum(u["estimated_cost"] for u in plan["units"])
        makespan = plan["estimated_cost"]
        out["projections"][f"{gpus}_gpus"] = {
            "slots": len(slots),
            "sharded_benchmarks": len(plan.get("sharded", [])),
            "makespan_s": round(makespan * per_unit, 1),
            "makespan_h": round(makespan * per_unit / 3600, 2),
            "total_work_over_slots_s": round(work / len(slots) * per_unit, 1),
            "makespan_over_even_share": round(makespan / (work / len(slots)), 3),
        }
    text = json.dumps(out, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(json.dumps({k: v for k, v in out.items() if k != "calibrated_on"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
