"""The long-lived worker of one GPU slot (contract: docs/architecture.md).

    python -m vlmfleet.worker --slot-file /workspace/outputs/<run_id>/<host>/<slot>/slot.json

Loads each unit's model once through VLMEvalKit's model class, walks its benchmarks through
VLMEvalKit's dataset classes, inference and evaluation, and writes one atomic status record per
combination. Exit status: 0 every combination ok, 1 any failed, 2 bad slot file.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import random
import sys
import threading
import time
import traceback
import zlib
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlmfleet import records
from vlmfleet.scores import primary_score
from vlmfleet.selection import is_circular, select_positions
from vlmfleet.slotfile import Benchmark, Slot, SlotFileError, load_env_file, load_slot

log = logging.getLogger("vlmfleet.worker")
SEED = 0
# VLMEvalKit reads its data root from this variable, spelt this way.
LMU_ENV = "LMUData"
# Random weights never emit end-of-sequence on their own: smoke runs cap the answer length
# unless the slot file says otherwise (VLMEvalKit's LLaVA default is 2048 new tokens).
SMOKE_MAX_NEW_TOKENS = 16
# VLMEvalKit's dataset TYPE for each catalogue kind.
KIND_TYPES = {"mcq": "MCQ", "yorn": "Y/N", "vqa": "VQA"}


class CombinationError(RuntimeError):
    """A combination cannot run; the message is the status record's reason."""


def smoke_root() -> Path:
    """Where smoke checkpoints live: $VLMFLEET_SMOKE_ROOT, else $HF_HOME/smoke (/cache/smoke)."""
    if os.environ.get("VLMFLEET_SMOKE_ROOT"):
        return Path(os.environ["VLMFLEET_SMOKE_ROOT"])
    hf_home = os.environ.get("HF_HOME") or str(Path.home() / ".cache" / "huggingface")
    return Path(hf_home) / "smoke"


def lmu_root() -> Path:
    return Path(os.environ.get(LMU_ENV) or (Path.home() / "LMUData"))


def use_smoke_data_root(slot: Slot) -> Path:
    """Point VLMEvalKit at $LMUData/smoke/<host>/<slot>.

    Synthetic files never replace real ones, and slots running at once on one machine never
    write the same TSV or image cache file.
    """
    root = lmu_root() / "smoke" / slot.host / slot.slot
    root.mkdir(parents=True, exist_ok=True)
    os.environ[LMU_ENV] = str(root)
    return root


def tiny_name(model_path: str) -> str:
    """Folder of a model's tiny checkpoint; LLaVA's builder needs "llava" in the name."""
    base = Path(model_path.rstrip("/")).name
    name = f"{base}-tiny"
    return name if "llava" in name.lower() else f"llava-{name}"


def smoke_model_path(name: str, kwargs: dict[str, Any], smoke_checkpoint: str) -> Path:
    """The checkpoint a smoke unit loads, made ready under the smoke root."""
    if smoke_checkpoint.startswith("known-"):
        from vlmfleet.known_answer import checkpoint_name, ensure_known_answer

        skill = smoke_checkpoint.removeprefix("known-")
        return ensure_known_answer(smoke_root() / "models" / checkpoint_name(skill), skill)
    from vlmfleet.tiny_checkpoint import ensure_tiny_llava

    target = smoke_root() / "models" / tiny_name(kwargs.get("model_path", name))
    return ensure_tiny_llava(target, seed=zlib.crc32(name.encode()))


def import_stack() -> None:
    """Import torch and VLMEvalKit (which imports every dataset and model module), once and timed
    on its own: on an H100 machine this takes longer than loading a 7B model."""
    if "vlmeval.config" in sys.modules:
        return
    t0 = time.monotonic()
    # Slots sharing a GPU (eval_gpu_slots) each keep a caching allocator: without expandable
    # segments a 13B slot beside a 7B one ran out of memory on an H100 on multi-image benchmarks
    # (fragmentation). Must be set before torch initialises CUDA; a value given wins.
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    import torch  # noqa: F401
    import vlmeval.config  # noqa: F401

    log.info("imported torch and VLMEvalKit in %.1f s", time.monotonic() - t0)


def seed_everything(seed: int = SEED) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_model(name: str, slot: Slot, smoke_checkpoint: str = "random") -> Any:
    """Build VLMEvalKit's model object for ``name`` on the slot's device (in smoke mode, on
    the unit's known-answer or tiny random checkpoint)."""
    from vlmeval.config import supported_VLM
    from vlmeval.vlm import LLaVA

    from vlmfleet.model import DeviceLLaVA

    if name not in supported_VLM:
        raise CombinationError(f"model {name!r} is not a VLMEvalKit model name")
    factory = supported_VLM[name]
    cls = getattr(factory, "func", factory)
    kwargs = dict(getattr(factory, "keywords", {}) or {})
    is_llava = isinstance(cls, type) and issubclass(cls, LLaVA)
    max_new = slot.max_new_tokens or (SMOKE_MAX_NEW_TOKENS if slot.smoke else None)
    if max_new:
        kwargs["max_new_tokens"] = max_new
    if slot.min_new_tokens:
        kwargs["min_new_tokens"] = slot.min_new_tokens
    cls_name = getattr(cls, "__name__", str(cls))
    if slot.smoke:
        if not is_llava:
            raise CombinationError(
                f"smoke mode has tiny checkpoints only for models of VLMEvalKit's LLaVA class "
                f"(e.g. llava_v1.5_7b, llava_v1.5_13b); {name} uses {cls_name}"
            )
        kwargs["model_path"] = str(smoke_model_path(name, kwargs, smoke_checkpoint))
    if is_llava:
        kwargs.pop("device", None)
        return DeviceLLaVA(device=slot.device, **kwargs)
    if slot.device != "cuda":
        raise CombinationError(
            f"device {slot.device!r} runs only models of VLMEvalKit's LLaVA class; "
            f"{name} uses {cls_name} (valid device for it: cuda)"
        )
    return cls(**kwargs)


def attention_of(model: Any) -> str:
    """The attention implementation transformers chose for the language model, if it says."""
    config = getattr(getattr(model, "model", None), "config", None)
    return str(getattr(config, "_attn_implementation", None) or "default")


def _clean_scores(flat: dict[str, Any]) -> dict[str, float]:
    import math

    out = {}
    for key, value in flat.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(float(value)):
            out[str(key)] = float(value)
    return out


def use_synthetic_dataset(root: Path, name: str, kind: str, questions: int) -> str:
    """Write the synthetic ``root/<name>.tsv`` and make VLMEvalKit accept it; returns its md5.

    The dataset class md5-checks its TSV and downloads the real one on mismatch: the synthetic
    file's md5 is registered for this name, in this process only."""
    import vlmeval.dataset as vd

    from vlmfleet.smoke_data import write_dataset

    _, md5 = write_dataset(root, name, kind, questions)
    for cls in vd.DATASET_CLASSES:
        if name in cls.supported_datasets():
            if "DATASET_MD5" not in cls.__dict__:
                cls.DATASET_MD5 = {}
            cls.DATASET_MD5[name] = md5
            break
    return md5


def prepare_dataset(bench: Benchmark, slot: Slot) -> Any:
    """VLMEvalKit's dataset object for ``bench``, limited to the slot's sample limit."""
    import vlmeval.dataset as vd
    from vlmeval.dataset import build_dataset

    known = any(bench.name in cls.supported_datasets() for cls in vd.DATASET_CLASSES)
    if slot.smoke and not known:
        raise CombinationError(
            f"benchmark {bench.name!r} is not a VLMEvalKit dataset name; smoke mode synthesises "
            "data only for VLMEvalKit's registered datasets"
        )
    if slot.smoke:
        from vlmfleet.smoke_data import DEFAULT_QUESTIONS

        questions = max(DEFAULT_QUESTIONS, slot.limit or 0)
        use_synthetic_dataset(Path(os.environ[LMU_ENV]), bench.name, bench.kind, questions)
    elif not known:
        # VLMEvalKit would treat an unknown name as a custom dataset in $LMUData; say so
        # up front when that file is not there instead of failing deep inside evaluation.
        tsv = Path(os.environ.get(LMU_ENV) or lmu_root()) / f"{bench.name}.tsv"
        if not tsv.is_file():
            raise CombinationError(
                f"benchmark {bench.name!r} is neither a VLMEvalKit dataset nor a custom "
                f"dataset file {tsv}"
            )
    dataset = build_dataset(bench.name)
    if dataset is None:
        raise CombinationError(
            f"VLMEvalKit cannot build benchmark {bench.name!r} (unknown name or no data file "
            f"in {os.environ.get(LMU_ENV)})"
        )
    wanted = KIND_TYPES[bench.kind]
    got = getattr(dataset, "TYPE", None)
    if got != wanted:
        raise CombinationError(
            f"benchmark {bench.name} is of VLMEvalKit type {got!r}, but the catalogue says kind "
            f"{bench.kind!r} ({wanted!r})"
        )
    data = dataset.data
    g_index = list(data["g_index"]) if "g_index" in data else None
    circular = is_circular(bench.name)
    positions = select_positions(
        list(data["index"]), slot.limit, circular=circular, g_indices=g_index
    )
    dataset.data = data.iloc[positions]
    dataset.vlmfleet_questions = (
        len({int(i) % 1_000_000 for i in dataset.data["index"]}) if circular else len(dataset.data)
    )
    return dataset


@dataclass
class Combination:
    """One model x benchmark on its way through prepare, infer and evaluate."""

    model_name: str
    bench: Benchmark
    cdir: Path
    started: str
    t0: float
    handler: logging.Handler
    dataset: Any = None
    samples: Any = None  # vlmfleet.batched.PreparedSamples when batched
    error: BaseException | None = None
    pred_file: str = ""
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.model_name}/{self.bench.name}"


def batched_for(model: Any, slot: Slot) -> bool:
    """Batched generation exists for the LLaVA wrapper; other models keep VLMEvalKit's own
    per-sample loop, so a fleet-wide batch_size never fails them."""
    from vlmfleet.model import DeviceLLaVA

    return slot.batch_size > 1 and isinstance(model, DeviceLLaVA)


def prepare_combination(model: Any, combo: Combination, slot: Slot) -> None:
    """CPU work before the GPU's: the dataset, its sample selection and, batched, the prompts."""
    combo.dataset = prepare_dataset(combo.bench, slot)
    if batched_for(model, slot):
        from vlmfleet.batched import prepare_samples

        combo.samples = prepare_samples(model, combo.dataset)


def infer_combination(model: Any, combo: Combination, slot: Slot) -> None:
    """The GPU's part: every answer, written to VLMEvalKit's prediction file."""
    from vlmeval.inference import infer_data_job
    from vlmeval.smp.file import get_pred_file_path

    seed_everything()
    if combo.samples is not None:
        from vlmfleet.batched import infer_prepared

        infer_prepared(
            model, str(combo.cdir), combo.model_name, combo.dataset, combo.samples, slot.batch_size
        )
    else:
        infer_data_job(
            model, work_dir=str(combo.cdir), model_name=combo.model_name, dataset=combo.dataset
        )
    combo.pred_file = get_pred_file_path(
        str(combo.cdir), combo.model_name, combo.bench.name, use_env_format=True
    )


def open_question_note(data: Any, dataset_type: str, judge: str) -> str | None:
    """What exact matching cannot judge in an MCQ set: its open questions (rows without
    options, such as MMMU's), which VLMEvalKit turns into "the answer or Other Answers"."""
    if dataset_type != "MCQ" or judge != "exact_matching" or "A" not in data:
        return None
    import pandas as pd

    open_rows = int(sum(1 for a in data["A"] if pd.isna(a) or str(a) == ""))
    if not open_rows:
        return None
    return (
        f"{open_rows} of {len(data)} questions are open (no options): exact matching counts "
        "one right only when the answer's text appears in the prediction, so a paraphrase "
        "counts wrong; a judge model would score those"
    )


def evaluate_combination(combo: Combination, slot: Slot) -> dict[str, Any]:
    """VLMEvalKit's evaluation of the prediction file; returns the fields of an ok record."""
    from vlmeval.smp.status_report import flatten_summary_metrics

    dataset = combo.dataset
    raw = dataset.evaluate(combo.pred_file, model=slot.judge, nproc=1)
    scores = _clean_scores(flatten_summary_metrics(raw))
    if not scores:
        raise CombinationError(f"VLMEvalKit's evaluation of {combo.bench.name} returned no scores")
    # VLMEvalKit names each dataset's headline figure; some datasets derive it (AI2D's
    # "Overall Acc" is 100 x "split=none|Overall"), so it joins the scores under its own name.
    primary = _clean_scores(dataset.report_primary_metric(scores))
    primary_key = next(iter(primary), None)
    fields: dict[str, Any] = {"primary_metric": None}
    if primary_key is not None:
        scores.setdefault(primary_key, primary[primary_key])
        fields = primary_score(
            primary_key, scores[primary_key], dataset.TYPE, int(dataset.vlmfleet_questions)
        ).record_fields()
    note = open_question_note(dataset.data, dataset.TYPE, slot.judge)
    return {
        "samples": int(dataset.vlmfleet_questions),
        "scores": scores,
        **fields,
        "scoring_note": note,
        "extra": {
            "predictions": len(dataset.data),
            "prediction_file": Path(combo.pred_file).name,
        },
    }


# The combination each thread is working on: a combination's worker.log takes the log lines of
# whichever thread works on it at the time (prepare, infer and evaluate overlap).
_working_on = threading.local()


class ThisCombination(logging.Filter):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.combination = name

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(_working_on, "name", None) == self.combination


@contextmanager
def routed_to(combo: Combination) -> Iterator[None]:
    """Log lines of this thread go to ``combo``'s worker.log meanwhile."""
    _working_on.name = combo.name
    try:
        yield
    finally:
        _working_on.name = None


@contextmanager
def phase(combo: Combination, name: str) -> Iterator[None]:
    """One timed phase of ``combo``; an exception in it becomes the combination's error (one
    failure never stops the rest) and is logged to its worker.log."""
    t0 = time.monotonic()
    with routed_to(combo):
        try:
            yield
        except Exception as err:
            log.error("combination %s raised:\n%s", combo.name, traceback.format_exc())
            combo.error = err
        finally:
            combo.phases[name] = round(time.monotonic() - t0, 3)


class Worker:
    def __init__(self, slot: Slot) -> None:
        self.slot = slot
        self.run_host_dir = slot.run_host_dir
        self.total = len(slot.combinations())
        self.ok = self.failed = self.skipped = 0
        # Records and progress are written from the inference and the evaluation threads.
        self._lock = threading.RLock()
        self.generating: str | None = None

    def progress(self, current: str | None, state: str = "running") -> None:
        with self._lock:
            records.write_progress(
                self.slot.slot_dir,
                done=self.ok + self.failed + self.skipped,
                total=self.total,
                current=current,
                ok=self.ok,
                failed=self.failed,
                skipped=self.skipped,
                state=state,
            )

    def record(
        self, model: str, bench: str, status: str, started: str, seconds: float, **fields: Any
    ) -> None:
        record = records.make_record(
            run_id=self.slot.run_id,
            host=self.slot.host,
            slot=self.slot.slot,
            model=model,
            benchmark=bench,
            status=status,
            started_at=started,
            seconds=seconds,
            smoke=self.slot.smoke,
            **fields,
        )
        cdir = records.combo_dir(self.run_host_dir, model, bench)
        with self._lock:
            records.write_json_atomic(cdir / records.STATUS_FILE, record)
            if status == "ok":
                self.ok += 1
            else:
                self.failed += 1
        if status == "ok":
            log.info(
                "ok %s/%s in %.1f s: %s=%s",
                model,
                bench,
                seconds,
                record["primary_metric"],
                record["scores"].get(record["primary_metric"]),
            )
        else:
            log.error("failed %s/%s: %s", model, bench, record["reason"])

    def run(self) -> int:
        slot = self.slot
        pending, done = records.select_pending(
            self.run_host_dir, [(m, b.name) for m, b in slot.combinations()], smoke=slot.smoke
        )
        self.skipped = len(done)
        for model, bench in done:
            log.info("skipping %s/%s: ok record exists (resume)", model, bench)
        self.progress(None)
        pending_set = set(pending)
        if slot.smoke:
            use_smoke_data_root(slot)
        for unit in slot.units:
            benches = [b for b in unit.benchmarks if (unit.model, b.name) in pending_set]
            if not benches:
                continue
            started, t0 = records.now_iso(), time.monotonic()
            try:
                import_stack()
                log.info(
                    "loading model %s on %s%s",
                    unit.model,
                    slot.device,
                    f" (smoke: {unit.smoke_checkpoint} checkpoint)" if slot.smoke else "",
                )
                t_load = time.monotonic()
                seed_everything()
                model = load_model(unit.model, slot, unit.smoke_checkpoint)
            except Exception as err:  # every failure becomes a status record
                reason = f"model load failed: {describe(err)}"
                log.error("%s\n%s", reason, traceback.format_exc())
                for bench in benches:
                    self.record(
                        unit.model,
                        bench.name,
                        "failed",
                        started,
                        time.monotonic() - t0,
                        reason=reason,
                    )
                    self.progress(f"{unit.model}/{bench.name}")
                continue
            log.info(
                "loaded model %s in %.1f s (attention: %s)",
                unit.model,
                time.monotonic() - t_load,
                attention_of(model),
            )
            self.run_unit(model, unit.model, benches)
            del model
            gc.collect()
            _empty_cuda_cache()
        self.progress(None, state="finished")
        log.info(
            "finished: %d ok, %d failed, %d skipped (already ok) of %d",
            self.ok,
            self.failed,
            self.skipped,
            self.total,
        )
        return 0 if self.failed == 0 else 1

    def run_unit(self, model: Any, model_name: str, benches: list[Benchmark]) -> None:
        """All of a model's benchmarks as a pipeline: while the main thread generates one
        benchmark's answers, a thread prepares the next benchmark and another evaluates the
        previous, so the GPU waits on as little CPU work as possible."""
        with (
            ThreadPoolExecutor(1, thread_name_prefix="vlmfleet-prepare") as preparer,
            ThreadPoolExecutor(1, thread_name_prefix="vlmfleet-evaluate") as evaluator,
        ):
            evaluations: list[Future[None]] = []
            upcoming = preparer.submit(self.prepare_one, model, model_name, benches[0])
            for k in range(len(benches)):
                combo = upcoming.result()
                if k + 1 < len(benches):
                    # At most two evaluations behind: each holds its dataset in memory.
                    wait(evaluations[:-2])
                    upcoming = preparer.submit(self.prepare_one, model, model_name, benches[k + 1])
                if combo.error is None:
                    self.generating = combo.name
                    self.progress(combo.name)
                    with phase(combo, "infer"):
                        log.info("running %s (limit %s)", combo.name, self.slot.limit)
                        infer_combination(model, combo, self.slot)
                evaluations.append(evaluator.submit(self.finish_one, combo))
            for evaluation in evaluations:
                evaluation.result()

    def prepare_one(self, model: Any, model_name: str, bench: Benchmark) -> Combination:
        cdir = records.combo_dir(self.run_host_dir, model_name, bench.name)
        cdir.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(cdir / "worker.log", encoding="utf-8")
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler.addFilter(ThisCombination(f"{model_name}/{bench.name}"))
        logging.getLogger().addHandler(handler)
        combo = Combination(model_name, bench, cdir, records.now_iso(), time.monotonic(), handler)
        with phase(combo, "prepare"):
            seed_everything()
            prepare_combination(model, combo, self.slot)
        return combo

    def finish_one(self, combo: Combination) -> None:
        """Evaluate (unless an earlier phase failed) and write the status record."""
        try:
            fields: dict[str, Any] = {}
            if combo.error is None:
                with phase(combo, "evaluate"):
                    fields = evaluate_combination(combo, self.slot)
            phases = {"phase_seconds": dict(combo.phases)}
            if combo.error is None:
                status = "ok"
                fields["extra"].update(phases)
            else:
                status = "failed"
                fields = {"reason": describe(combo.error), "extra": phases}
            seconds = time.monotonic() - combo.t0
            with routed_to(combo):
                self.record(
                    combo.model_name, combo.bench.name, status, combo.started, seconds, **fields
                )
            # Progress names the combination generating now, not the one just evaluated.
            self.progress(self.generating or combo.name)
        finally:
            logging.getLogger().removeHandler(combo.handler)
            combo.handler.close()


def describe(err: BaseException) -> str:
    """One line for a status record: the exception, or where it came from when it is mute."""
    text = str(err).strip()
    if text:
        return f"{type(err).__name__}: {text}"
    frames = traceback.extract_tb(err.__traceback__)
    where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno} in {frames[-1].name}"
    return f"{type(err).__name__}{where if frames else ''}"


def _empty_cuda_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


LOCK_FILE = ".worker.lock"


def _lock_slot(slot: Slot) -> Any:
    """An exclusive lock on the slot directory, held until the process exits, or None.

    Two workers on one slot would write the same prediction files; the kernel drops the lock
    when a worker dies, so a killed worker never blocks the rerun that resumes it.
    """
    import fcntl

    fh = (slot.slot_dir / LOCK_FILE).open("a")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        return None
    return fh


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vlmfleet.worker", description=__doc__)
    parser.add_argument("--slot-file", required=True, type=Path, help="path of slot.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr)
    try:
        slot = load_slot(args.slot_file)
        keys = load_env_file(slot.env_file)
    except SlotFileError as err:
        log.error("bad slot file: %s", err)
        return 2
    lock = _lock_slot(slot)
    if lock is None:
        log.error(
            "bad slot file: another worker is already running slot %s (lock %s held)",
            slot.slot_dir,
            slot.slot_dir / LOCK_FILE,
        )
        return 2
    slot_log = logging.FileHandler(slot.slot_dir / "worker.log", encoding="utf-8")
    slot_log.setFormatter(logging.Formatter(LOG_FORMAT))
    logging.getLogger().addHandler(slot_log)
    if keys:
        # Names only: the values are secrets.
        log.info("loaded %s from env_file", ", ".join(keys))
    log.info(
        "slot %s/%s/%s: %d combinations, device %s, limit %s, smoke %s",
        slot.run_id,
        slot.host,
        slot.slot,
        len(slot.combinations()),
        slot.device,
        slot.limit,
        slot.smoke,
    )
    return Worker(slot).run()


if __name__ == "__main__":
    sys.exit(main())
