"""The per-combination `docker exec` loop against the project's worker, on the same inputs.

    python bench/matrix_bench.py --device cpu  --out bench/results/cpu-tiny.json
    python bench/matrix_bench.py --device cuda --out bench/results/h100-fullsize.json

Arms (each on the same synthetic datasets, the same answer length, the same checkpoints):
- loop: for each model, for each benchmark, a fresh worker process on a one-combination slot
  file (one process and one model load per combination, VLMEvalKit's own per-sample loop: what
  one ``run.py --data B --model M`` per combination costs), models one after another.
- project: what ``eval.yml`` runs on this machine. The project's planner
  (the collection's plugin_utils/plan/) makes the slots of each ``--layouts`` GxS (G GPUs,
  ``eval_gpu_slots`` S), one worker per slot, all slots at once, each pinned to its GPUs (model
  loaded once per slot, batched generation at the product's ``eval_run_batch_size``, the next
  benchmark prepared and the previous evaluated while one generates).
- attn: the project's worker for one model and a few benchmarks with SDPA, then eager attention
  (``bench/attn_worker.py``).

Both arms run ``python -m vlmfleet.worker``, the image's worker: the loop arm with slot files of
one combination and ``batch_size`` 1 (VLMEvalKit's own per-sample loop), the project arm with the
planner's units.

Checkpoints come from the worker's smoke path ($VLMFLEET_SMOKE_ROOT/models/<name>-tiny): the tiny
random checkpoints on a CPU, or the full-size random ones bench/fullsize_checkpoint.py writes there.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

# The controller's Python is the project's collection (ansible.cfg's collections_path).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "plugins" / "collections"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "roles/gpu_facts/filter_plugins"))
import gpu_facts as smi_parser  # the gpu_facts role's nvidia-smi parser
from ansible_collections.vlmfleet.shared.plugins.module_utils import contract

# The project's validation step and planner (plugin_utils/inputs.py, plugin_utils/plan/).
from ansible_collections.vlmfleet.shared.plugins.plugin_utils import inputs as eval_inputs
from ansible_collections.vlmfleet.shared.plugins.plugin_utils import plan as eval_plan
from device_wheels import locked_versions  # the image's versions, from requirements.lock

REPO = Path(__file__).resolve().parent.parent
SRC = REPO / "docker" / "transformers-4.37" / "src"
CATALOGUE = REPO / "playbooks" / "vars" / "catalogue.yml"
# The default matrix: what eval.yml runs without -e models/benchmarks.
_DEFAULTS = yaml.safe_load(CATALOGUE.read_text(encoding="utf-8"))
MODELS = tuple(_DEFAULTS["catalogue_default_models"])
BENCHMARKS = list(_DEFAULTS["catalogue_default_benchmarks"])
# The loop arm's name in result files written before it was renamed.
OLD_ARM_NAMES = {"seed": "loop"}
# --decoder mix: VLMEvalKit's max_new_tokens for LLaVA, above the mix's longest answer.
MIX_MAX_NEW_TOKENS = 2048
# The --decoder choices whose answers end at the mix's lengths (bench/mix_worker.py).
MIX_DECODERS = ("mix", "mix-whole-prefill")
LOADED = re.compile(r"loaded model (\S+) in ([0-9.]+) s")
# The worker's log lines start with logging's asctime (local time, milliseconds after a comma).
STAMPED = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*?(loading model|loaded model)", re.M
)
PHASES = ("prepare", "infer", "predictions", "evaluate")


@functools.cache
def catalogue() -> dict[str, Any]:
    return yaml.safe_load(CATALOGUE.read_text(encoding="utf-8"))


def catalogue_kinds() -> dict[str, str]:
    return {name: b["kind"] for name, b in catalogue()["catalogue_benchmarks"].items()}


def write_slot(
    outputs: Path,
    run_id: str,
    slot: str,
    device: str,
    units: list[tuple[str, list[str]]],
    args: Any,
    batch_size: int | str,
    limit: int | None = None,
    shared_by: int = 1,
) -> Path:
    models = catalogue()["catalogue_models"]
    # A slot file as the planner builds one (vlmfleet.contract.slot_file), on the smoke path:
    # synthetic datasets and the checkpoints under $VLMFLEET_SMOKE_ROOT, a fixed answer length.
    data = contract.slot_file(
        run_id=run_id,
        host="bench",
        slot=slot,
        device=device,
        smoke=True,
        limit=limit or args.limit,
        judge=contract.EXACT_MATCHING,
        # The mix ends each answer with eos at its drawn length (bench/mix_worker.py): nothing
        # forced, and VLMEvalKit's LLaVA limit above the mix's longest tail.
        max_new_tokens=MIX_MAX_NEW_TOKENS if args.decoder in MIX_DECODERS else args.new_tokens,
        min_new_tokens=None if args.decoder in MIX_DECODERS else args.new_tokens,
        batch_size=batch_size,
        shared_by=shared_by,
        units=[
            {
                "model": m,
                "family": models[m]["family"],
                "benchmarks": [eval_plan.benchmark_entry(b, catalogue()) for b in benches],
                # Without the hub repo the path is VLMEvalKit's entry's, known only after its
                # import: nothing is read ahead (the start before the prefetch, to compare).
                **({} if args.load_after_import else eval_plan.hub_repo(models[m])),
            }
            for m, benches in units
        ],
    )
    path = outputs / run_id / "bench" / slot / "slot.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


class Sampler:
    """GPU utilisation every ``period`` seconds (nvidia-smi), or nothing on a CPU."""

    def __init__(self, gpu: bool, gpus: int = 1, period: float = 0.2) -> None:
        self.gpu = gpu and shutil.which("nvidia-smi") is not None
        self.gpus = gpus
        self.period = period
        # (epoch seconds, GPU index, utilisation %, memory MiB)
        self.samples: list[tuple[float, int, float, float]] = []
        self.proc: subprocess.Popen[str] | None = None
        self.thread: threading.Thread | None = None

    def __enter__(self) -> Sampler:
        if self.gpu:
            self.proc = subprocess.Popen(
                [
                    "nvidia-smi",
                    "--query-gpu=index,utilization.gpu,memory.used",
                    "--format=csv,noheader,nounits",
                    f"--loop-ms={int(self.period * 1000)}",
                    f"--id={','.join(str(i) for i in range(self.gpus))}",
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            self.thread = threading.Thread(target=self._read, daemon=True)
            self.thread.start()
        return self

    def _read(self) -> None:
        assert self.proc and self.proc.stdout
        for line in self.proc.stdout:
            try:
                index, util, mem = (float(x) for x in line.split(","))
            except ValueError:
                continue
            self.samples.append((time.time(), int(index), util, mem))

    def __exit__(self, *exc: object) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait()
        if self.thread:
            self.thread.join(timeout=2)

    def share(self, start: float = 0.0, end: float = float("inf")) -> float | None:
        """Mean utilisation over all sampled GPUs between two epoch times, 0-1."""
        utils = [u for t, _, u, _ in self.samples if start <= t < end]
        return round(sum(utils) / len(utils) / 100, 3) if utils else None

    def summary(self) -> dict[str, Any]:
        if not self.samples:
            return {}
        utils = [u for _, _, u, _ in self.samples]
        out: dict[str, Any] = {
            "gpu_busy_share": self.share(),
            "gpu_samples": len(utils),
            "gpu_sample_period_s": self.period,
            "gpu_share_of_samples_busy": round(sum(u > 0 for u in utils) / len(utils), 3),
            "gpu_memory_peak_mib": max(m for *_, m in self.samples),
        }
        if self.gpus > 1:
            out["gpu_busy_share_per_gpu"] = [
                round(sum(us) / len(us) / 100, 3) if us else None
                for us in ([u for _, i, u, _ in self.samples if i == g] for g in range(self.gpus))
            ]
        return out


def child_env(args: Any, threads: int | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["VLMFLEET_SMOKE_ROOT"] = str(args.checkpoints)
    env["LMUData"] = str(args.work / "LMUData")
    env["HF_HOME"] = str(args.work / "hf")
    env["TOKENIZERS_PARALLELISM"] = "false"
    env["PYTHONWARNINGS"] = "ignore"
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    if args.standins:
        env["VLMFLEET_BENCH_STANDINS"] = args.standins
    return env


def launch(args: Any, *target: str) -> list[str]:
    """The interpreter command for a module (-m NAME) or script, with stand-ins when asked."""
    if args.standins:
        return [args.python, str(REPO / "bench" / "standin_launch.py"), *target]
    return [args.python, *target]


def run_code(args: Any, code: str, *argv: str) -> subprocess.CompletedProcess[str]:
    script = args.work / "_snippet.py"
    script.write_text(code, encoding="utf-8")
    return subprocess.run(
        [*launch(args, str(script)), *argv],
        env=child_env(args, None),
        capture_output=True,
        text=True,
        check=False,
    )


PROCESS_WALL: list[float] = []


def run_procs(cmds: list[list[str]], env: dict[str, str], logs: list[Path]) -> list[int]:
    """Start all, wait for all; each one's wall time goes to PROCESS_WALL."""
    procs = []
    t0 = time.monotonic()
    for cmd, log in zip(cmds, logs, strict=True):
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("w", encoding="utf-8") as fh:
            procs.append(subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT))
    ends: dict[int, float] = {}
    while len(ends) < len(procs):
        for i, proc in enumerate(procs):
            if i not in ends and proc.poll() is not None:
                ends[i] = time.monotonic() - t0
        time.sleep(0.05)
    PROCESS_WALL.extend(round(ends[i], 2) for i in range(len(procs)))
    return [p.returncode for p in procs]


def collect(run_dir: Path) -> dict[str, Any]:
    """Counts and times from the worker's own records and logs."""
    statuses = [json.loads(p.read_text()) for p in sorted(run_dir.glob("*/*/status.json"))]
    loads = []
    for log in sorted(run_dir.glob("*/worker.log")):
        loads += [(m, float(s)) for m, s in LOADED.findall(log.read_text(errors="replace"))]
    ok = [s for s in statuses if s["status"] == "ok"]
    return {
        "combinations_ok": len(ok),
        "combinations_failed": len(statuses) - len(ok),
        "failures": [
            f"{s['model']}/{s['benchmark']}: {s['reason']}" for s in statuses if s not in ok
        ],
        "predictions": sum(s.get("extra", {}).get("predictions", s["samples"]) for s in ok),
        "questions": sum(s["samples"] for s in ok),
        "model_loads": len(loads),
        "model_load_s": round(sum(s for _, s in loads), 2),
        "combination_s": round(sum(s["seconds"] for s in statuses), 2),
        # Per combination, for bench/projection.py's calibration of the planner's cost model.
        "combinations": [
            {
                "model": s["model"],
                "benchmark": s["benchmark"],
                "status": s["status"],
                "samples": s["samples"],
                "seconds": s["seconds"],
                "infer_s": s.get("phase_seconds", {}).get("infer"),
                # With one queue per slot a benchmark's infer time overlaps its neighbours';
                # the slot and the finishing times order them (bench/projection.py).
                "slot": s["slot"],
                "finished_at": s["finished_at"],
                "batch_sizes": s.get("batch_sizes"),
                "samples_deferred": s.get("samples_deferred"),
                "samples_prefix_shared": s.get("samples_prefix_shared"),
            }
            for s in statuses
        ],
        # The worker's own phase times (they overlap: prepare and evaluate run beside infer).
        "phase_s": {
            phase: round(sum(s.get("phase_seconds", {}).get(phase, 0.0) for s in statuses), 2)
            for phase in PHASES
        },
    }


def load_window(run_dir: Path) -> tuple[float, float] | None:
    """Epoch times of the first "loading model" and the last "loaded model" line."""
    starts, ends = [], []
    for log in sorted(run_dir.glob("*/worker.log")):
        for stamp, what in STAMPED.findall(log.read_text(errors="replace")):
            when = dt.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
            (starts if what == "loading model" else ends).append(when)
    return (min(starts), max(ends)) if starts and ends else None


def timed_arm(
    name: str,
    cmds: list[list[str]],
    env: dict[str, str],
    logs: list[Path],
    args: Any,
    run_dir: Path,
    after_each: Callable[[int, float], None] | None = None,
    gpus: int = 1,
    sequential: bool = False,
) -> dict[str, Any]:
    PROCESS_WALL.clear()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with Sampler(args.device == "cuda", gpus) as sampler:
        t0, epoch0 = time.monotonic(), time.time()
        if sequential:
            codes = []
            for k, (cmd, log) in enumerate(zip(cmds, logs, strict=True)):
                codes += run_procs([cmd], env, [log])
                if after_each:
                    after_each(k + 1, time.monotonic() - t0)
        else:
            codes = run_procs(cmds, env, logs)
        wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result = {"arm": name, "wall_s": round(wall, 2), "exit_codes": sorted(set(codes))}
    result.update(collect(run_dir))
    result["processes"] = len(cmds)
    result["process_wall_s"] = list(PROCESS_WALL)
    # Per process: what is neither loading the model nor running combinations is interpreter
    # start, imports (vlmeval imports every dataset module) and teardown.
    result["startup_and_other_s"] = round(
        max(0.0, sum(PROCESS_WALL) - result["model_load_s"] - result["combination_s"]), 2
    )
    if result["predictions"]:
        result["seconds_per_sample"] = round(wall / result["predictions"], 4)
    result["cpu_s"] = round(cpu, 1)
    result["cpu_busy_share"] = round(cpu / wall / (os.cpu_count() or 1), 3)
    result.update(sampler.summary())
    window = load_window(run_dir)
    if sampler.samples and window and not sequential:
        # Where the GPU time goes: before any model load (interpreter start, imports), while
        # models load, and from the last model loaded to the end (the combinations). Processes
        # one after another (the loop arm) have no such stages.
        loads_from, loads_to = window
        result["gpu_busy_share_by_stage"] = {
            "start_and_imports": sampler.share(epoch0, loads_from),
            "model_loads": sampler.share(loads_from, loads_to),
            "combinations": sampler.share(loads_to),
        }
        result["stage_s"] = {
            "start_and_imports": round(loads_from - epoch0, 2),
            "model_loads": round(loads_to - loads_from, 2),
            "combinations": round(epoch0 + wall - loads_to, 2),
        }
    print(json.dumps(result), flush=True)
    return result


def loop_arm(args: Any, save_partial: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """One fresh worker process per combination, one after another (commands run in order).

    After each process the figures so far go to ``save_partial``: the whole arm takes about
    25 minutes on an H100, longer than one device call."""
    outputs = args.work / "outputs"
    run_dir = outputs / "loop" / "bench"
    shutil.rmtree(run_dir, ignore_errors=True)
    cmds, logs = [], []
    for model in args.models:
        for k, bench in enumerate(args.benchmarks):
            slot = write_slot(
                outputs, "loop", f"{model}-{k:02d}", args.device, [(model, [bench])], args, 1
            )
            cmds.append([*launch(args, "-m", "vlmfleet.worker"), "--slot-file", str(slot)])
            logs.append(slot.parent / "stdout.log")
    env = child_env(args, None)

    def partial(done: int, elapsed: float) -> None:
        so_far = {"arm": "loop", "partial": True, "processes_done": done}
        so_far |= {"processes": len(cmds), "wall_s_so_far": round(elapsed, 2)}
        so_far |= collect(run_dir)
        so_far["process_wall_s"] = list(PROCESS_WALL)
        print(json.dumps({k: so_far[k] for k in ("processes_done", "wall_s_so_far")}), flush=True)
        save_partial(so_far)

    return timed_arm("loop", cmds, env, logs, args, run_dir, partial, sequential=True)


def gpu_facts(args: Any, gpus: int) -> dict[str, Any]:
    """The planner's view of this machine, read as the gpu_facts role reads it: its first
    ``gpus`` GPUs, or none on a CPU."""
    if args.device == "cpu":
        return {"gpu_facts_present": False, "gpu_facts_gpus": []}
    query = subprocess.run(
        [
            "nvidia-smi",
            f"--query-gpu={','.join(smi_parser.QUERY_FIELDS)}",
            "--format=csv,noheader,nounits",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = smi_parser.parse_gpu_query(query)
    if len(found) < gpus:
        sys.exit(f"layout asks for {gpus} GPUs, nvidia-smi lists {len(found)}")
    return {"gpu_facts_present": True, "gpu_facts_gpus": found[:gpus]}


def evict_from_page_cache(folder: Path) -> int:
    """Bytes of the checkpoints under ``folder`` dropped from the page cache (no root needed
    for clean pages), so that the next load reads them from the disk, as a first run does."""
    from vlmfleet.prefetch import weight_files

    evicted = 0
    for path in weight_files(folder):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            evicted += os.fstat(fd).st_size
        finally:
            os.close(fd)
    return evicted


def project_arm(
    args: Any,
    name: str = "project",
    layout: tuple[int, int] = (1, 1),
    models: list[str] | None = None,
    benchmarks: list[str] | None = None,
    attn: str | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """What eval.yml runs on this machine: the planner's slots for ``layout`` (GPUs,
    eval_gpu_slots), one worker per slot, all slots at once, each pinned to its GPUs."""
    outputs = args.work / "outputs"
    run_dir = outputs / name / "bench"
    shutil.rmtree(run_dir, ignore_errors=True)
    models = models or args.models
    benchmarks = benchmarks or args.benchmarks
    limit = limit or args.limit
    gpus, per_gpu = layout
    # The inputs as eval.yml's validation step settles them, then its planner.
    host_vars = {"eval_gpu_slots": per_gpu, "eval_run_batch_size": args.batch_size}
    inputs = eval_inputs.check_inputs(
        {"models": models, "benchmarks": benchmarks, "limit": limit, "allow_cpu": True},
        catalogue(),
        name,
        hosts={"bench": host_vars},
        inventory=["bench"],
    )
    the_plan = eval_plan.plan({"bench": gpu_facts(args, gpus)}, catalogue(), inputs)
    cmds, logs = [], []
    slots = eval_plan.eval_host_units(the_plan, "bench")
    for slot in slots:
        units = [
            (u["model"], [b["name"] for b in u["benchmarks"]]) for u in slot["slot_file"]["units"]
        ]
        path = write_slot(
            outputs,
            name,
            slot["slot"],
            args.device,
            units,
            args,
            args.batch_size,
            limit,
            slot["slot_file"]["shared_by"],
        )
        if attn:
            worker = [str(REPO / "bench" / "attn_worker.py"), "--attn", attn]
        elif args.decoder == "generate":
            worker = [str(REPO / "bench" / "generate_worker.py")]
        elif args.decoder == "mix":
            worker = [str(REPO / "bench" / "mix_worker.py")]
        elif args.decoder == "whole-prefill":
            worker = [str(REPO / "bench" / "whole_prefill_worker.py")]
        elif args.decoder == "mix-whole-prefill":
            worker = [str(REPO / "bench" / "whole_prefill_worker.py"), "--mix"]
        else:
            worker = ["-m", "vlmfleet.worker"]
        cmd = [*launch(args, *worker), "--slot-file", str(path)]
        if slot["device"] == "cuda":
            # As the container's device request does: the worker sees its GPUs from cuda:0.
            cmd = ["env", f"CUDA_VISIBLE_DEVICES={','.join(map(str, slot['gpus']))}", *cmd]
        cmds.append(cmd)
        logs.append(path.parent / "stdout.log")
    threads = max(1, (os.cpu_count() or 1) // len(cmds)) if args.device == "cpu" else None
    if args.cold_weights:
        evicted = evict_from_page_cache(args.checkpoints)
        print(json.dumps({"arm": name, "evicted_gib": round(evicted / 2**30, 1)}), flush=True)
    result = timed_arm(name, cmds, child_env(args, threads), logs, args, run_dir, gpus=gpus)
    result.update(
        {
            "batch_size": args.batch_size,
            "gpus": gpus,
            "eval_gpu_slots": per_gpu,
            "plan": [
                {
                    "slot": s["slot"],
                    "gpus": s["gpus"],
                    "units": [
                        {"model": u["model"], "benchmarks": len(u["benchmarks"])}
                        for u in s["slot_file"]["units"]
                    ],
                }
                for s in slots
            ],
            "attn": attn or "auto",
            "limit": limit,
        }
    )
    return result


def versions(args: Any) -> dict[str, Any]:
    code = (
        "import json, sys, torch, transformers, tokenizers, accelerate, platform\n"
        "v = {'python': platform.python_version(), 'torch': torch.__version__,\n"
        " 'transformers': transformers.__version__, 'tokenizers': tokenizers.__version__,\n"
        " 'accelerate': accelerate.__version__, 'cuda': torch.version.cuda,\n"
        " 'gpu': torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}\n"
        "from importlib.metadata import PackageNotFoundError, version\n"
        f"lock = {json.dumps(locked_versions())}\n"
        "for d in ('ms-vlmeval', 'llava-torch', 'numpy', 'pandas'):\n"
        "    v[d] = version(d)\n"
        "def found(d):\n"
        "    try:\n"
        "        return version(d)\n"
        "    except PackageNotFoundError:\n"
        "        return None\n"
        "v['not_the_image_version'] = {d: {'image': w, 'here': found(d)}\n"
        "    for d, w in sorted(lock.items()) if found(d) != w}\n"
        "print(json.dumps(v))\n"
    )
    out = run_code(args, code)
    if out.returncode:
        sys.exit(f"version probe failed:\n{out.stderr[-3000:]}")
    found = json.loads(out.stdout.strip().splitlines()[-1])
    if args.standins:
        found["standins_for_absent_modules"] = args.standins.split(",")
    return found


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
    }
    with contextlib.suppress(OSError, StopIteration):
        info["cpu_model"] = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    info["memory_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    if shutil.which("nvidia-smi"):
        info["nvidia_smi"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    return info


def prepare(args: Any) -> None:
    """Checkpoints on disk and in the page cache before either arm is timed."""
    code = (
        "import sys, zlib\n"
        "from vlmfleet.families import smoke_root\n"
        "from vlmfleet.families.llava import tiny_name\n"
        "from vlmfleet.tiny_checkpoint import ensure_tiny_llava\n"
        "from vlmeval.config import supported_VLM\n"
        "for name in sys.argv[1:]:\n"
        "    path = supported_VLM[name].keywords['model_path']\n"
        "    target = smoke_root() / 'models' / tiny_name(path)\n"
        "    print(ensure_tiny_llava(target, seed=zlib.crc32(name.encode())))\n"
    )
    out = run_code(args, code, *args.models)
    if out.returncode:
        sys.exit(f"checkpoint preparation failed:\n{out.stderr[-3000:]}")
    for ckpt in out.stdout.split():
        for f in Path(ckpt).rglob("*.safetensors"):
            with f.open("rb") as fh:
                while fh.read(1 << 24):
                    pass
    print("checkpoints:", out.stdout.split(), flush=True)


def layout_arg(text: str) -> tuple[int, int]:
    """ "GxS" -> (G GPUs, S slots per GPU)."""
    m = re.fullmatch(r"([1-9][0-9]*)x([1-8])", text)
    if not m:
        raise argparse.ArgumentTypeError(
            f"{text!r}: a layout is GxS, G GPUs with S slots each (eval_gpu_slots 1-8), e.g. 2x1"
        )
    return int(m.group(1)), int(m.group(2))


def layout_name(layout: tuple[int, int]) -> str:
    return f"project_{layout[0]}x{layout[1]}"


def batch_size_arg(text: str) -> int | str:
    """--batch-size: "auto" or a positive whole number, as eval_run_batch_size takes it."""
    errors: list[str] = []
    value = eval_inputs.parse_batch_size(text, "--batch-size", errors)
    if errors or value is None:
        raise argparse.ArgumentTypeError("; ".join(errors) or "--batch-size needs a value")
    return value


def default_batch_size() -> int | str:
    """The product's default (the validation step's), so the project arms measure what eval.yml
    runs."""
    return eval_inputs.DEFAULT_BATCH_SIZE


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=("cpu", "cuda"), required=True)
    p.add_argument(
        "--arms",
        default="project,loop",
        help="comma list of project, loop (formerly seed), attn, scale, run in that order",
    )
    p.add_argument(
        "--scale-limits",
        nargs="+",
        type=int,
        default=[100],
        help="scale arm: the project arm again at these limits",
    )
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--benchmarks", nargs="+", default=BENCHMARKS)
    p.add_argument("--limit", type=int, default=10)
    p.add_argument("--new-tokens", type=int, default=10)
    p.add_argument(
        "--batch-size",
        type=batch_size_arg,
        default=default_batch_size(),
        help="samples per generate call in the project arms (default: eval_run_batch_size)",
    )
    p.add_argument(
        "--layouts",
        nargs="+",
        type=layout_arg,
        default=[(1, 1)],
        help="project arm: GxS = the planner's slots on G GPUs with eval_gpu_slots S, one arm each",
    )
    p.add_argument(
        "--scale-layouts",
        nargs="+",
        type=layout_arg,
        default=None,
        help="scale arm: the layouts to rerun at --scale-limits (default: --layouts)",
    )
    p.add_argument("--attn-benchmarks", nargs="+", default=BENCHMARKS[:4])
    p.add_argument("--work", type=Path, default=Path("/tmp/vlmfleet-bench"))
    p.add_argument(
        "--checkpoints", type=Path, default=None, help="VLMFLEET_SMOKE_ROOT (default WORK/ckpt)"
    )
    p.add_argument(
        "--load-after-import",
        action="store_true",
        help="slot files without hf_repo: no weight read during VLMEvalKit's import",
    )
    p.add_argument(
        "--decoder",
        choices=("product", "generate", "mix", "whole-prefill", "mix-whole-prefill"),
        default="product",
        help="project arms: the engine's own decoder choice, or generate for every batch "
        "(bench/generate_worker.py, the A/B of the static KV cache), or the product's with "
        "answers of the length mix instead of --new-tokens (bench/mix_worker.py), or the "
        "product's with every row prefilled whole, no group sharing a prefix "
        "(bench/whole_prefill_worker.py, the A/B of the shared prefixes), or both "
        "(mix-whole-prefill: that A/B at the mix's answer lengths)",
    )
    p.add_argument(
        "--cold-weights",
        action="store_true",
        help="drop the checkpoints from the page cache before each project arm",
    )
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--label", default="")
    p.add_argument(
        "--standins",
        default="",
        help="comma list of absent import-only modules to stand in (bench/standin_launch.py)",
    )
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    args.work = args.work.absolute()
    args.checkpoints = (args.checkpoints or args.work / "ckpt").absolute()
    kinds = catalogue_kinds()
    bad = [b for b in args.benchmarks if b not in kinds]
    if bad:
        p.error(f"benchmarks not in the catalogue: {', '.join(bad)}; valid: {', '.join(kinds)}")
    arms = [OLD_ARM_NAMES.get(a, a) for a in args.arms.split(",")]
    if set(arms) - {"loop", "project", "attn", "scale"}:
        p.error(f"--arms {args.arms!r}: valid arms are project, loop, attn, scale")
    for old in set(args.arms.split(",")) & set(OLD_ARM_NAMES):
        print(f"--arms: {old} is now called {OLD_ARM_NAMES[old]}", file=sys.stderr)
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    prepare(args)
    report: dict[str, Any] = {
        "label": args.label,
        "started_at": started,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine(),
        "versions": versions(args),
        "inputs": {
            "models": args.models,
            "benchmarks": args.benchmarks,
            "limit": args.limit,
            "new_tokens_per_answer": args.new_tokens,
            "data": "vlmfleet.smoke_data synthetic TSVs (VLMEvalKit format, PNG images "
            "280-400 px a side), the same files for every arm",
            "checkpoints": str(args.checkpoints),
            "model_load": "no read-ahead: path known after VLMEvalKit's import"
            if args.load_after_import
            else "weights read during VLMEvalKit's import (slot files with hf_repo)",
            "page_cache": "checkpoints dropped before each project arm"
            if args.cold_weights
            else "as the previous arm left it",
        },
        "arms": {},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save(arm: str | None = None, figures: dict[str, Any] | None = None) -> None:
        if arm:
            report["arms"][arm] = figures
        loop = report["arms"].get("loop")
        if loop and not loop.get("partial"):
            report["speedup_wall"] = {
                name: round(loop["wall_s"] / figures["wall_s"], 2)
                for name, figures in report["arms"].items()
                if name.startswith("project_") and figures.get("limit") == args.limit
            }
        # Written after every arm (and every loop process): a cut-off run keeps what it measured.
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    for arm in arms:
        if arm == "project":
            for layout in args.layouts:
                name = layout_name(layout)
                save(name, project_arm(args, name, layout))
        elif arm == "loop":
            save("loop", loop_arm(args, lambda so_far: save("loop", so_far)))
        elif arm == "attn":
            for attn in ("sdpa", "eager"):
                name = f"attn_{attn}"
                figures = project_arm(
                    args, name, (1, 1), args.models[:1], args.attn_benchmarks, attn
                )
                save(name, figures)
        elif arm == "scale":
            for limit in args.scale_limits:
                for layout in args.scale_layouts or args.layouts:
                    name = f"{layout_name(layout)}_limit{limit}"
                    save(name, project_arm(args, name, layout, limit=limit))
    print(json.dumps({"speedup_wall": report.get("speedup_wall")}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
