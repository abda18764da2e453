"""A slot's status records and progress: each combination's one atomic record (ok or failed,
with its reason), the counts, the slot-progress file, and the disk reserve given back when a
record meets a full disk. Written from the worker's inference and evaluation threads, and by
the merge."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from vlmfleet import contract
from vlmfleet.contract import Shard, Slot, Unit
from vlmfleet.faults import DISK_FULL, RESERVE_BYTES, describe, disk_full, on_host, reserve_space
from vlmfleet.secret_env import redact

log = logging.getLogger("vlmfleet.pipeline")


class SlotRecords:
    def __init__(self, slot: Slot) -> None:
        self.slot = slot
        self.total = len(slot.combinations())
        self.ok = self.failed = 0
        # Records and progress are written from the inference and the evaluation threads.
        self._lock = threading.RLock()
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

    def finish(self) -> int:
        """The slot's last progress, the reserve given back; 0 when every combination is ok."""
        self.progress(None, state="finished")
        if self._reserve is not None:
            self._reserve.unlink(missing_ok=True)
        log.info("finished: %d ok, %d failed of %d", self.ok, self.failed, self.total)
        return 0 if self.failed == 0 else 1
