"""One slot's combinations, unit by unit, each model loaded once: prepare, infer, evaluate, record.

The slot file lists only the combinations still to run (the controller decides resume with
``contract.is_done``), so every combination of it runs and gets one atomic status record, ok or
failed: one failure never stops the rest. Within a unit a thread prepares the benchmarks one
after the other, the family's engine answers their samples as one queue (a batched family) or
VLMEvalKit's loop answers them benchmark by benchmark, and another thread writes each
benchmark's prediction file and evaluates it as soon as its answers are in (``Worker.run_unit``);
``slot-progress.json`` is rewritten after each record.
A shard of a benchmark (``Benchmark.shard``) is a combination whose dataset is its part of the
rows and whose finish keeps its predictions for the merge (``vlmfleet.merge``) instead of
evaluating them.

A failure's reason names its cause where the worker can tell it: a full disk says which path,
on which host, with how many bytes free (``vlmfleet.faults.describe``); each combination's record
is written through ``vlmfleet.slot_records.SlotRecords``.
"""

from __future__ import annotations

import gc
import logging
import queue
import shutil
import threading
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlmfleet import contract, log_routing
from vlmfleet.contract import Benchmark, Slot, Unit
from vlmfleet.datasets import prepare_dataset, questions_of, use_smoke_data_root
from vlmfleet.evaluation import evaluate, shard_fields
from vlmfleet.families import Answered, Family, FamilyError, InferenceError, Queued, family
from vlmfleet.predictions import write_predictions
from vlmfleet.slot_records import SlotRecords
from vlmfleet.stack import (
    cap_gpu_share,
    empty_cuda_cache,
    import_stack,
    import_torch,
    seed_everything,
)

log = logging.getLogger("vlmfleet.pipeline")


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
    questions: int = 0
    # The rows it holds in memory (its place in the unit's Room).
    rows: int = 0
    samples: Any = None  # the family's prepared samples when batched
    # The batched engine's answers by VLMEvalKit's index, written out before the evaluation.
    answers: dict[Any, str] | None = None
    # When it entered the engine's queue: its infer phase runs from there to its last answer.
    queued_at: float = 0.0
    error: BaseException | None = None
    pred_file: str = ""
    phases: dict[str, float] = field(default_factory=dict)
    # What the family's engine adds to the status record (e.g. batch sizes used and retried).
    inference: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.model_name}/{self.bench.label}"


@contextmanager
def phase(combo: Combination, name: str) -> Iterator[None]:
    """One timed phase of ``combo``; an exception in it becomes the combination's error (one
    failure never stops the rest) and is logged to its worker.log."""
    t0 = time.monotonic()
    with log_routing.routed_to(combo.name):
        try:
            yield
        except Exception as err:
            log.error("combination %s raised:\n%s", combo.name, traceback.format_exc())
            combo.error = err
        finally:
            combo.phases[name] = round(time.monotonic() - t0, 3)


def attention_of(model: Any) -> str:
    """The attention implementation transformers chose for the language model, if it says."""
    config = getattr(getattr(model, "model", None), "config", None)
    return str(getattr(config, "_attn_implementation", None) or "default")


def infer_one(model: Any, combo: Combination) -> None:
    """VLMEvalKit's own per-sample loop for a family that is not batched: its prediction file."""
    from vlmeval.inference import infer_data_job
    from vlmeval.smp.file import get_pred_file_path

    seed_everything()
    infer_data_job(
        model, work_dir=str(combo.cdir), model_name=combo.model_name, dataset=combo.dataset
    )
    combo.pred_file = get_pred_file_path(
        str(combo.cdir), combo.model_name, combo.bench.name, use_env_format=True
    )


# Benchmarks of a unit held in memory at once (being prepared, queued, generating, evaluated):
# each holds its dataset (its rows after the limit), and the engine needs the next ones' samples
# to fill the batch the one before leaves room in. IN_MEMORY of any size, more while their rows
# together stay under ROWS_IN_MEMORY: at a small limit a whole unit is prepared ahead, and its
# batches are full however small each benchmark is.
IN_MEMORY = 4
ROWS_IN_MEMORY = 1024


class Room:
    """The unit's benchmarks in memory: the preparer waits for room before preparing the next
    one, takes its place with the prepared rows, and the evaluator gives it back."""

    def __init__(self, benchmarks: int = IN_MEMORY, rows: int = ROWS_IN_MEMORY) -> None:
        self.benchmarks, self.rows = benchmarks, rows
        self.held, self.held_rows = 0, 0
        self._cond = threading.Condition()

    def wait(self) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self.held < self.benchmarks or self.held_rows < self.rows)

    def take(self, rows: int) -> None:
        with self._cond:
            self.held += 1
            self.held_rows += rows

    def give(self, rows: int) -> None:
        with self._cond:
            self.held -= 1
            self.held_rows -= rows
            self._cond.notify_all()


def start_afresh(cdir: Path) -> None:
    """Empty a combination's folder before its attempt. The slot file lists only combinations
    without an ok record (the controller decided), so what is there is an earlier attempt's: a
    prediction file torn by a kill, or VLMEvalKit's partial results, which its inference would
    otherwise pick up and fail on."""
    if not cdir.is_dir():
        return
    for entry in cdir.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


class Worker:
    def __init__(self, slot: Slot) -> None:
        self.slot = slot
        self.records = SlotRecords(slot)
        # The benchmark generating now, which the slot's progress names.
        self.generating: str | None = None

    def load_unit(self, unit: Unit) -> tuple[Family, Any] | None:
        """The unit's family and model, or None once every benchmark of it is recorded failed."""
        started, t0 = contract.now_iso(), time.monotonic()
        try:
            # Before the stack: a family this image lacks fails at once.
            fam = family(unit.family)
        except Exception as err:
            # The registry's own message names the known families.
            reason = str(err) if isinstance(err, FamilyError) else self.records.describe(err)
            log.error("%s", reason)
            self.records.fail_unit(unit, reason, started, t0)
            return None
        try:
            log.info(
                "loading model %s (family %s) on %s%s",
                unit.model,
                unit.family,
                self.slot.device,
                f" (smoke: {unit.smoke_checkpoint} checkpoint)" if self.slot.smoke else "",
            )
            t_load = time.monotonic()
            import_torch()
            if self.slot.device == "cuda" and self.slot.shared_by > 1:
                shares = cap_gpu_share(self.slot.shared_by)
                log.info(
                    "GPU memory: this slot's allocator holds at most %s of each GPU "
                    "(shared by %d slots)",
                    ", ".join(f"{share:.1%}" for share in shares),
                    self.slot.shared_by,
                )
            seed_everything()
            model = fam.load(unit, self.slot)
            # A family imports the stack itself (the llava family reads its weights ahead
            # meanwhile); the datasets need it whichever family ran.
            import_stack()
        except Exception as err:  # every failure becomes a status record
            reason = f"model load failed: {self.records.describe(err)}"
            log.error("%s\n%s", reason, traceback.format_exc())
            self.records.fail_unit(unit, reason, started, t0)
            return None
        log.info(
            "loaded model %s in %.1f s (attention: %s)",
            unit.model,
            time.monotonic() - t_load,
            attention_of(model),
        )
        return fam, model

    def run(self) -> int:
        """Every combination of the slot file; 0 when all are ok, 1 when any failed."""
        self.records.progress(None)
        if self.slot.smoke:
            use_smoke_data_root(self.slot)
        for unit in self.slot.units:
            loaded = self.load_unit(unit)
            if loaded is None:
                continue
            fam, model = loaded
            self.run_unit(model, fam, unit)
            # One model in memory at a time: the next unit loads after this one is freed.
            del model, loaded
            gc.collect()
            empty_cuda_cache()
        return self.records.finish()

    def run_unit(self, model: Any, fam: Family, unit: Unit) -> None:
        """All of a model's benchmarks: one thread prepares them in order, the main thread
        generates (the family's engine, one queue for all of them, or VLMEvalKit's loop one by
        one), and another thread writes each one's predictions and evaluates it as soon as its
        answers are in, so the GPU waits on as little CPU work as possible."""
        batched = fam.batched(model, self.slot)
        # Unbounded: the room bounds what is in memory, and the engine sees at once every
        # benchmark prepared while it generated.
        ready: queue.Queue[Combination | None] = queue.Queue()
        room = Room()
        with (
            ThreadPoolExecutor(1, thread_name_prefix="vlmfleet-prepare") as preparer,
            ThreadPoolExecutor(1, thread_name_prefix="vlmfleet-evaluate") as evaluator,
        ):

            def finish(combo: Combination) -> None:
                try:
                    self.finish_one(combo)
                finally:
                    room.give(combo.rows)

            def prepare_all() -> None:
                try:
                    for bench in unit.benchmarks:
                        room.wait()
                        combo = self.prepare_one(model, fam, unit.model, bench, batched)
                        # Its dataset's rows after the limit (none when it failed to load).
                        combo.rows = len(combo.dataset) if combo.dataset is not None else 0
                        room.take(combo.rows)
                        if combo.error is None:
                            ready.put(combo)
                        else:
                            # A benchmark that cannot be prepared is recorded at once.
                            evaluator.submit(finish, combo)
                finally:
                    ready.put(None)

            preparing = preparer.submit(prepare_all)
            if batched:
                self.generate_queued(model, fam, ready, lambda c: evaluator.submit(finish, c))
            else:
                self.infer_each(model, ready, lambda c: evaluator.submit(finish, c))
            preparing.result()

    def infer_each(self, model: Any, ready: queue.Queue[Combination | None], finish: Any) -> None:
        """VLMEvalKit's own loop, benchmark by benchmark, in the order they are prepared."""
        while (combo := ready.get()) is not None:
            self.generating = combo.name
            self.records.progress(combo.name)
            with phase(combo, "infer"):
                log.info("running %s (limit %s)", combo.name, self.slot.limit_of(combo.bench))
                infer_one(model, combo)
            finish(combo)

    def generate_queued(
        self, model: Any, fam: Family, ready: queue.Queue[Combination | None], finish: Any
    ) -> None:
        """The family's engine over every prepared benchmark as one queue; each benchmark goes to
        ``finish`` as soon as its last answer is in."""
        queued: dict[str, Combination] = {}
        incoming: queue.Queue[Queued | None] = queue.Queue()
        lock = threading.Lock()

        def feed() -> None:
            # Prepared benchmarks enter the engine's queue in order; their infer phase starts.
            while (combo := ready.get()) is not None:
                with lock:
                    queued[combo.name] = combo
                    if self.generating is None:
                        self.generating = combo.name
                        self.records.progress(combo.name)
                combo.queued_at = time.monotonic()
                with log_routing.routed_to(combo.name):
                    log.info("queued %s (limit %s)", combo.name, self.slot.limit_of(combo.bench))
                incoming.put(Queued(combo.name, combo.dataset, combo.samples))
            incoming.put(None)

        feeder = threading.Thread(target=feed, name="vlmfleet-feed", daemon=True)
        feeder.start()
        seed_everything()
        try:
            for done in fam.generate_queue(model, self.slot, incoming):
                with lock:
                    combo = queued.pop(done.key)
                    # Progress names the oldest benchmark still generating.
                    self.generating = next(iter(queued), None)
                self.take_answers(combo, done)
                finish(combo)
        except Exception as err:
            # The engine itself broke: every benchmark it had not answered, and every one still
            # to come, fails with its reason; the unit's other records stand.
            log.error("the batched engine raised:\n%s", traceback.format_exc())
            while incoming.get() is not None:
                pass
            feeder.join()
            for combo in queued.values():
                self.take_answers(combo, Answered(combo.name, {}, {}, err))
                finish(combo)
            queued.clear()
        feeder.join()

    def take_answers(self, combo: Combination, done: Answered) -> None:
        combo.phases["infer"] = round(time.monotonic() - combo.queued_at, 3)
        combo.inference = dict(done.record)
        if done.error is None:
            combo.answers = done.answers
            return
        with log_routing.routed_to(combo.name):
            log.error(
                "combination %s raised:\n%s",
                combo.name,
                "".join(traceback.format_exception(done.error)),
            )
        combo.error = done.error

    def prepare_one(
        self, model: Any, fam: Family, model_name: str, bench: Benchmark, batched: bool
    ) -> Combination:
        """CPU work before the GPU's: the dataset, its sample selection and, batched, the
        prompts."""
        cdir = contract.result_dir(self.slot.run_host_dir, model_name, bench.name, bench.shard)
        start_afresh(cdir)
        cdir.mkdir(parents=True, exist_ok=True)
        name = f"{model_name}/{bench.label}"
        handler = log_routing.file_handler(cdir, name)
        combo = Combination(model_name, bench, cdir, contract.now_iso(), time.monotonic(), handler)
        with phase(combo, "prepare"):
            seed_everything()
            combo.dataset = prepare_dataset(bench, self.slot)
            combo.questions = questions_of(combo.dataset)
            if batched:
                combo.samples = fam.prepare_samples(model, combo.dataset)
        return combo

    def finish_one(self, combo: Combination) -> None:
        """Evaluate (unless an earlier phase failed) and write the status record; a shard keeps
        its predictions for the merge instead."""
        try:
            fields: dict[str, Any] = {}
            if combo.error is None and combo.answers is not None:
                with phase(combo, "predictions"):
                    combo.pred_file = write_predictions(
                        str(combo.cdir), combo.model_name, combo.dataset, combo.answers
                    )
            if combo.error is None and combo.bench.shard is not None:
                fields = shard_fields(combo.dataset, combo.pred_file, combo.questions)
            elif combo.error is None:
                with phase(combo, "evaluate"):
                    fields = evaluate(
                        combo.dataset,
                        combo.pred_file,
                        combo.bench,
                        self.slot,
                        combo.questions,
                    )
            # An engine that gave up still says what it tried (InferenceError.record).
            tried = combo.error.record if isinstance(combo.error, InferenceError) else {}
            extra = {"phase_seconds": dict(combo.phases), **combo.inference, **tried}
            if combo.error is None:
                status = "ok"
                fields["extra"].update(extra)
            else:
                status = "failed"
                fields = {"reason": self.records.describe(combo.error, combo.cdir), "extra": extra}
            seconds = time.monotonic() - combo.t0
            with log_routing.routed_to(combo.name):
                self.records.record(
                    combo.model_name,
                    combo.bench.name,
                    status,
                    combo.started,
                    seconds,
                    shard=combo.bench.shard,
                    **fields,
                )
            # Progress names the combination generating now, not the one just evaluated.
            self.records.progress(self.generating)
        finally:
            log_routing.remove(combo.handler)
