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
on which host, with how many bytes free (``describe``).
"""

from __future__ import annotations

import errno
import gc
import logging
import os
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
from vlmfleet.contract import Benchmark, Shard, Slot, Unit
from vlmfleet.datasets import prepare_dataset, questions_of, use_smoke_data_root
from vlmfleet.evaluation import evaluate, shard_fields
from vlmfleet.families import Answered, Family, FamilyError, InferenceError, Queued, family
from vlmfleet.predictions import write_predictions
from vlmfleet.secret_env import redact
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


def disk_full(err: BaseException | None) -> OSError | None:
    """The "no space left on device" error behind ``err``: itself, or what it was raised from
    (xlsxwriter and pandas wrap the OSError in their own errors)."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno == errno.ENOSPC:
            return err
        err = err.__cause__ or err.__context__
    return None


def free_bytes(path: str | Path) -> int | None:
    """Free bytes on the filesystem holding ``path`` (or its nearest existing folder)."""
    here = Path(path)
    for folder in (here, *here.parents):
        try:
            return shutil.disk_usage(folder).free
        except OSError:
            continue
    return None


def on_host(path: str | Path) -> str:
    """``path`` as the host names it (the container's outputs mount is the host's
    <eval_dirs_root>/outputs, which role eval_run passes in the environment)."""
    return contract.host_path(path, os.environ.get(contract.HOST_OUTPUTS_ENV))


DISK_FULL = "disk full"


def describe(err: BaseException, host: str = "", where: str | Path = "") -> str:
    """One line for a status record: the exception, or where it came from when it is mute. A
    full disk is named as such: the path being written (else ``where``) as the host names it, the
    host, bytes free."""
    full = disk_full(err)
    if full is not None:
        path = full.filename or where
        free = free_bytes(path) if path else None
        left = f"{free} bytes free" if free is not None else "free space unknown"
        shown = on_host(path) if path else "unknown path"
        return f"{DISK_FULL}: {shown} on {host or 'this host'}, {left}"
    text = str(err).strip()
    # Some writers swallow ENOSPC (xlsxwriter's close in a destructor leaves an empty file), and
    # the next step fails on the empty file: with nothing free where it worked, say so first.
    if where and free_bytes(where) == 0:
        cause = f"{type(err).__name__}: {text}" if text else type(err).__name__
        return f"{DISK_FULL}: {on_host(where)} on {host or 'this host'}, 0 bytes free ({cause})"
    if text:
        return f"{type(err).__name__}: {text}"
    frames = traceback.extract_tb(err.__traceback__)
    where_raised = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno} in {frames[-1].name}"
    return f"{type(err).__name__}{where_raised if frames else ''}"


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


# Space set aside in each slot directory when the worker starts, and given back when a status
# record meets a full disk: the record that says "disk full" is written even on a disk with no
# byte free, where the controller would otherwise see only a missing combination.
RESERVE_FILE = ".disk-reserve"
RESERVE_BYTES = 1 << 20


def reserve_space(folder: Path) -> tuple[Path | None, str | None]:
    """Allocate ``RESERVE_BYTES`` in ``folder`` (really allocated, not sparse): its path, or,
    when even that does not fit, why, naming the disk (a disk too small for the reserve loses
    the record of its first full write, so it is said before anything runs)."""
    path = folder / RESERVE_FILE
    try:
        with path.open("wb") as fh:
            os.posix_fallocate(fh.fileno(), 0, RESERVE_BYTES)
    except OSError as err:
        path.unlink(missing_ok=True)
        free = free_bytes(folder)
        left = f"{free} bytes free" if free is not None else "free space unknown"
        return None, (
            f"disk too small for the worker's {RESERVE_BYTES} byte reserve: {on_host(folder)} "
            f"has {left} ({err.strerror or err}); once it fills up, combinations may be left "
            "without a status record"
        )
    return path, None


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
        self.total = len(slot.combinations())
        self.ok = self.failed = 0
        # Records and progress are written from the inference and the evaluation threads.
        self._lock = threading.RLock()
        self.generating: str | None = None
        self._reserve, self._no_reserve = reserve_space(slot.slot_dir)
        if self._no_reserve:
            log.error("%s", self._no_reserve)

    def describe(self, err: BaseException, where: str | Path = "") -> str:
        text = describe(err, self.slot.host, where or self.slot.run_host_dir)
        if self._no_reserve and text.startswith(DISK_FULL):
            text += f" (disk too small for the worker's {RESERVE_BYTES} byte reserve)"
        return text

    def progress(self, current: str | None, state: str = "running") -> None:
        with self._lock:
            try:
                contract.write_progress(
                    self.slot.slot_dir,
                    done=self.ok + self.failed,
                    total=self.total,
                    current=current,
                    ok=self.ok,
                    failed=self.failed,
                    state=state,
                )
            except OSError as err:
                # Progress is for the controller's display; the records are what counts.
                log.error("cannot write slot progress: %s", self.describe(err, self.slot.slot_dir))

    def record(
        self,
        model: str,
        bench: str,
        status: str,
        started: str,
        seconds: float,
        shard: Shard | None = None,
        **fields: Any,
    ) -> None:
        where = {
            "run_id": self.slot.run_id,
            "host": self.slot.host,
            "slot": self.slot.slot,
            "model": model,
            "benchmark": bench,
            "started_at": started,
            "seconds": seconds,
            "smoke": self.slot.smoke,
        }
        # A shard's record says which shard it is, whatever else it carries.
        shard_extra = {contract.SHARD_KEY: shard.as_dict()} if shard else {}
        # And what stood behind the model name, for the reports: the smoke checkpoint, else the
        # custom folder or hub repo (None: VLMEvalKit's entry chose). The merge slot loads no
        # model, and its units do not say; its shards' records do.
        unit = next((u for u in self.slot.units if u.model == model), None)
        if unit is not None and self.slot.slot != contract.MERGE_SLOT:
            loaded = unit.smoke_checkpoint if self.slot.smoke else unit.checkpoint or unit.hf_repo
            shard_extra["checkpoint"] = loaded
        fields["extra"] = {**fields.get("extra", {}), **shard_extra}
        if fields.get("reason"):
            # A reason never quotes a secret of the token file (an error echoing a request).
            fields["reason"] = redact(fields["reason"])
        try:
            record = contract.make_record(status=status, **where, **fields)
        except contract.ContractError as err:
            # Figures that break the record's schema fail the combination, with the reason,
            # rather than leaving it without a record.
            log.error("%s", err)
            status = "failed"
            record = contract.make_record(
                status=status, reason=str(err), extra=shard_extra, **where
            )
        cdir = contract.result_dir(self.slot.run_host_dir, model, bench, shard)
        with self._lock:
            try:
                self.write_record(cdir, record)
            except OSError as err:
                # No record can say it (the controller sees the combination missing); the
                # container's console, kept by role eval_run, does, and the others go on.
                status = "failed"
                record["reason"] = f"status record not written: {self.describe(err, cdir)}"
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
            log.error("%s", contract.failed_line(model, bench, record["reason"]))

    def write_record(self, cdir: Path, record: dict[str, Any]) -> None:
        """The record, atomically; on a full disk, once more after giving back the reserve."""
        try:
            contract.write_json_atomic(cdir / contract.STATUS_FILE, record)
        except OSError as err:
            if disk_full(err) is None or self._reserve is None:
                raise
            log.error(
                "disk full; giving back %s to write the status record", on_host(self._reserve)
            )
            self._reserve.unlink(missing_ok=True)
            self._reserve = None
            contract.write_json_atomic(cdir / contract.STATUS_FILE, record)

    def fail_unit(self, unit: Unit, reason: str, started: str, t0: float) -> None:
        """Every benchmark of a unit whose model never loaded: failed, with one reason."""
        for bench in unit.benchmarks:
            self.record(
                unit.model,
                bench.name,
                "failed",
                started,
                time.monotonic() - t0,
                shard=bench.shard,
                reason=reason,
            )
            self.progress(f"{unit.model}/{bench.label}")

    def load_unit(self, unit: Unit) -> tuple[Family, Any] | None:
        """The unit's family and model, or None once every benchmark of it is recorded failed."""
        started, t0 = contract.now_iso(), time.monotonic()
        try:
            # Before the stack: a family this image lacks fails at once.
            fam = family(unit.family)
        except Exception as err:
            # The registry's own message names the known families.
            reason = str(err) if isinstance(err, FamilyError) else self.describe(err)
            log.error("%s", reason)
            self.fail_unit(unit, reason, started, t0)
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
            reason = f"model load failed: {self.describe(err)}"
            log.error("%s\n%s", reason, traceback.format_exc())
            self.fail_unit(unit, reason, started, t0)
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
        self.progress(None)
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
        self.progress(None, state="finished")
        if self._reserve is not None:
            self._reserve.unlink(missing_ok=True)
        log.info("finished: %d ok, %d failed of %d", self.ok, self.failed, self.total)
        return 0 if self.failed == 0 else 1

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
            self.progress(combo.name)
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
                        self.progress(combo.name)
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
                fields = {"reason": self.describe(combo.error, combo.cdir), "extra": extra}
            seconds = time.monotonic() - combo.t0
            with log_routing.routed_to(combo.name):
                self.record(
                    combo.model_name,
                    combo.bench.name,
                    status,
                    combo.started,
                    seconds,
                    shard=combo.bench.shard,
                    **fields,
                )
            # Progress names the combination generating now, not the one just evaluated.
            self.progress(self.generating)
        finally:
            log_routing.remove(combo.handler)
