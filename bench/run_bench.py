"""Wall time of the seed's per-combination loop against the project's worker, same inputs.

Arms (both run the real vlmfleet worker code, VLMEvalKit datasets, inference and evaluation):
  seed     one fresh process per (model, benchmark) that imports everything, loads the model and
           runs that one combination - what `docker exec ... run.py --data B --model M` per
           combination costs - models one after another;
  project  the project's way: one long-lived worker per slot that loads each model once;
           --slots N splits the models over N workers running at once (one per GPU, or CPU
           cores shared here).
Inputs are the smoke mode's synthetic datasets (deterministic, images a few hundred pixels a
side) and tiny random LLaVA-1.5 checkpoints; every answer is exactly --answer-tokens tokens
(min_new_tokens = max_new_tokens), since random weights never stop on their own.

    python bench/run_bench.py --python /path/to/python --src docker/transformers-4.37/src
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

SEED_BENCHMARKS = {
    "MMBench_DEV_EN": "mcq",
    "TextVQA_VAL": "vqa",
    "GQA_TestDev_Balanced": "vqa",
    "MMMU_DEV_VAL": "mcq",
    "DocVQA_VAL": "vqa",
    "ChartQA_TEST": "vqa",
    "InfoVQA_VAL": "vqa",
    "OCRBench": "vqa",
    "AI2D_TEST": "mcq",
    "ScienceQA_VAL": "mcq",
    "POPE": "yorn",
    "HallusionBench": "yorn",
    "MMStar": "mcq",
    "RealWorldQA": "mcq",
    "VisOnlyQA-VLMEvalKit": "mcq",
    "VizWiz": "vqa",
    "SEEDBench_IMG": "mcq",
    "BLINK": "mcq",
    "MMBench_DEV_KO": "mcq",
    "SEEDBench_IMG_KO": "mcq",
}
SEED_MODELS = ["llava_v1.5_7b", "llava_v1.5_13b"]
VERSIONS_SNIPPET = (
    "import json, importlib.metadata as m, torch;"
    "print(json.dumps({p: m.version(p) for p in ('torch', 'transformers', 'llava-torch',"
    " 'ms-vlmeval', 'tokenizers', 'accelerate')} | {'cuda': torch.cuda.is_available()}))"
)


def slot_doc(run_id: str, slot: str, units: list[tuple[str, list[str]]], args) -> dict:
    return {
        "run_id": run_id,
        "host": "bench",
        "slot": slot,
        "device": args.device,
        "smoke": True,
        "limit": args.limit,
        "judge": "exact_matching",
        "max_new_tokens": args.answer_tokens,
        "min_new_tokens": args.answer_tokens,
        "units": [
            {"model": m, "benchmarks": [{"name": b, "kind": SEED_BENCHMARKS[b]} for b in benches]}
            for m, benches in units
        ],
    }


def start_worker(args, run_dir: Path, run_id: str, slot: str, units, env) -> subprocess.Popen:
    slot_dir = run_dir / "outputs" / run_id / "bench" / slot
    slot_dir.mkdir(parents=True, exist_ok=True)
    (slot_dir / "slot.json").write_text(json.dumps(slot_doc(run_id, slot, units, args)))
    log = (slot_dir / "stdout.log").open("w")
    return subprocess.Popen(
        [args.python, "-m", "vlmfleet.worker", "--slot-file", str(slot_dir / "slot.json")],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def collect(run_dir: Path, run_id: str) -> dict:
    statuses = sorted((run_dir / "outputs" / run_id / "bench").glob("*/*/status.json"))
    recs = [json.loads(p.read_text()) for p in statuses]
    logs = list((run_dir / "outputs" / run_id / "bench").glob("*/worker.log"))
    loads = sum(p.read_text().count("INFO vlmfleet.worker: loading model") for p in logs)
    return {
        "combinations": len(recs),
        "ok": sum(r["status"] == "ok" for r in recs),
        "failed": [
            f"{r['model']}/{r['benchmark']}: {r['reason']}" for r in recs if r["status"] != "ok"
        ],
        "predictions": sum(r.get("predictions", 0) for r in recs),
        "samples": sum(r["samples"] for r in recs),
        "combination_seconds": round(sum(r["seconds"] for r in recs), 2),
        "model_loads": loads,
    }


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_arm(name: str, args, work: Path, env: dict) -> dict:
    run_dir = work / name
    shutil.rmtree(run_dir, ignore_errors=True)
    cpu0, t0 = children_cpu(), time.monotonic()
    if name == "seed":
        for model in args.models:
            for bench in args.benchmarks:
                # A fresh process and a fresh run directory per combination: nothing carries over.
                run_id = f"seed-{model}-{bench}"
                proc = start_worker(args, run_dir, run_id, "slot0", [(model, [bench])], env)
                proc.wait()
        run_ids = [f"seed-{m}-{b}" for m in args.models for b in args.benchmarks]
    else:
        groups = [args.models[i :: args.slots] for i in range(args.slots)]
        procs = [
            start_worker(
                args, run_dir, "project", f"slot{i}", [(m, args.benchmarks) for m in group], env
            )
            for i, group in enumerate(groups)
            if group
        ]
        for proc in procs:
            proc.wait()
        run_ids = ["project"]
    wall = time.monotonic() - t0
    cpu = children_cpu() - cpu0
    figures = {"wall_seconds": round(wall, 2), "cpu_seconds": round(cpu, 2)}
    totals: dict = {
        "combinations": 0,
        "ok": 0,
        "failed": [],
        "predictions": 0,
        "samples": 0,
        "combination_seconds": 0.0,
        "model_loads": 0,
    }
    for run_id in run_ids:
        part = collect(run_dir, run_id)
        for key in totals:
            totals[key] += part[key]
    figures |= totals
    cores = os.cpu_count() or 1
    figures["cpu_busy_share"] = round(cpu / (wall * cores), 3)
    figures["seconds_per_prediction"] = round(wall / max(1, figures["predictions"]), 4)
    figures["seconds_per_sample"] = round(wall / max(1, figures["samples"]), 4)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="interpreter with the image stack")
    parser.add_argument("--src", type=Path, default=Path("docker/transformers-4.37/src"))
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--answer-tokens", type=int, default=5)
    parser.add_argument("--slots", type=int, default=1)
    parser.add_argument("--models", nargs="+", default=SEED_MODELS)
    parser.add_argument(
        "--benchmarks",
        nargs="+",
        default=list(SEED_BENCHMARKS),
        choices=list(SEED_BENCHMARKS),
        metavar="BENCHMARK",
    )
    parser.add_argument(
        "--arms", nargs="+", default=["project", "seed"], choices=["project", "seed"]
    )
    parser.add_argument("--work", type=Path, default=Path("bench/work"))
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()

    work = args.work.absolute()
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(args.src.absolute())
    env["LMUData"] = str(work / "LMUData")
    # Shared smoke checkpoints: built once before timing, as real weights sit in the HF cache.
    env["VLMFLEET_SMOKE_ROOT"] = str(work / "smoke")
    Path(env["LMUData"]).mkdir(parents=True, exist_ok=True)
    warm = argparse.Namespace(**vars(args))
    warm.limit = 1
    run_arm(
        "seed",
        argparse.Namespace(**vars(warm) | {"benchmarks": args.benchmarks[:1]}),
        work / "warmup",
        env,
    )
    versions = json.loads(
        subprocess.run(
            [args.python, "-c", VERSIONS_SNIPPET],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    result = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "hostname": platform.node(),
            "cpu_count": os.cpu_count(),
            "processor": _cpu_model(),
            "platform": platform.platform(),
            "load_average_at_start": os.getloadavg(),
        },
        "versions": versions,
        "inputs": {
            "models": args.models,
            "benchmarks": args.benchmarks,
            "limit": args.limit,
            "answer_tokens": args.answer_tokens,
            "device": args.device,
            "slots": args.slots,
            "data": "vlmfleet smoke synthetic TSVs",
            "weights": "tiny random LLaVA-1.5 (vlmfleet.tiny_checkpoint)",
        },
        "arms": {},
    }
    for arm in args.arms:
        print(f"running arm {arm} ...", flush=True)
        result["arms"][arm] = run_arm(arm, args, work, env)
        print(json.dumps(result["arms"][arm]), flush=True)
    result["machine"]["load_average_at_end"] = os.getloadavg()
    if {"seed", "project"} <= set(result["arms"]):
        seed, proj = (
            result["arms"]["seed"]["wall_seconds"],
            result["arms"]["project"]["wall_seconds"],
        )
        result["speedup_seed_over_project"] = round(seed / proj, 2)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out / f"{stamp}-{args.device}-{platform.node()}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(out)
    return 0


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    sys.exit(main())
