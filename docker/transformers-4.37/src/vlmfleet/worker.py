"""The long-lived worker of one GPU slot (contract: vlmfleet.contract, docs/architecture.md).

    python -m vlmfleet.worker --slot-file /workspace/outputs/<run_id>/<host>/<slot>/slot.json

Runs every combination of the slot file (vlmfleet.pipeline): each unit's model is loaded once
by its family (vlmfleet.families), its benchmarks go through VLMEvalKit's dataset classes,
inference and evaluation, and each combination gets one atomic status record. Exit status: 0
every combination ok, 1 any failed, 2 bad slot file (also: another worker holds the slot, or
the token file is unreadable).
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import sys
from pathlib import Path
from typing import IO

from vlmfleet import contract, log_routing
from vlmfleet.contract import ContractError, Slot, load_slot
from vlmfleet.faults import on_host
from vlmfleet.pipeline import Worker
from vlmfleet.secret_env import SecretEnvError, load_env_file

log = logging.getLogger("vlmfleet.worker")
LOCK_FILE = ".worker.lock"
# The host's token file, mounted read-only only when the host has one.
SECRET_ENV = Path(contract.CONTAINER_SECRET_ENV)


def lock_slot(slot: Slot) -> IO[str] | None:
    """An exclusive lock on the slot directory, held until the process exits, or None.

    Two workers on one slot would write the same prediction files; the kernel drops the lock
    when a worker dies, so a killed worker never blocks the rerun that resumes it.
    """
    fh = (slot.slot_dir / LOCK_FILE).open("a")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        return None
    return fh


def read_inputs(slot_file: Path) -> tuple[Slot, list[str]] | None:
    """The slot file and the names the token file sets, or None once the reason ("bad slot
    file", "bad token file") is logged: the container's exit 2."""
    try:
        slot = load_slot(slot_file)
    except ContractError as err:
        # The file by the host's name (the user looks there), and what mends it: eval.yml
        # writes every slot file again before it starts a worker.
        shown = str(err).replace(str(slot_file), on_host(slot_file))
        log.error("bad slot file: %s; rerun eval.yml with the same run_id to write it again", shown)
        return None
    try:
        keys = load_env_file(SECRET_ENV)
    except SecretEnvError as err:
        log.error("bad token file: %s", err)
        return None
    return slot, keys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vlmfleet.worker", description=__doc__)
    parser.add_argument("--slot-file", required=True, type=Path, help="path of slot.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=log_routing.LOG_FORMAT, stream=sys.stderr)
    started = read_inputs(args.slot_file)
    if started is None:
        return 2
    slot, keys = started
    lock = lock_slot(slot)
    if lock is None:
        log.error(
            "bad slot file: another worker is already running slot %s (lock %s held)",
            slot.slot_dir,
            slot.slot_dir / LOCK_FILE,
        )
        return 2
    slot_log = log_routing.file_handler(slot.slot_dir)
    try:
        if keys:
            # Names only: the values are secrets.
            log.info("loaded %s from %s", ", ".join(keys), SECRET_ENV)
        log.info(
            "slot %s/%s/%s: %d combinations, device %s, limit %s, smoke %s, batch size %s",
            slot.run_id,
            slot.host,
            slot.slot,
            len(slot.combinations()),
            slot.device,
            slot.limit,
            slot.smoke,
            slot.batch_size,
        )
        return Worker(slot).run()
    finally:
        log_routing.remove(slot_log)
        lock.close()


if __name__ == "__main__":
    sys.exit(main())
