"""A model's weight files read into the page cache on a thread, ahead of the model's load.

Importing VLMEvalKit and loading a model are both bound to the interpreter lock: a load on a
second thread slowed both down (bench/README.md). Reading a file is not: ``readinto`` lets the
lock go, so while the main thread imports, this thread moves the weights from the disk into the
page cache, and the load that follows reads them from memory. On a checkpoint already cached it
costs one pass over memory. Standard library only.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from types import TracebackType

log = logging.getLogger("vlmfleet.prefetch")
WEIGHT_SUFFIXES = (".safetensors", ".bin")
CHUNK_BYTES = 16 << 20


def weight_files(folder: Path) -> list[Path]:
    """The weight files under ``folder`` (a checkpoint, its vision tower's folder included)."""
    return sorted(p for p in folder.rglob("*") if p.suffix in WEIGHT_SUFFIXES and p.is_file())


def read_through(files: list[Path], stop: threading.Event) -> int:
    """Bytes of ``files`` read, in order, until they end or ``stop`` is set."""
    buffer = bytearray(CHUNK_BYTES)
    done = 0
    for path in files:
        try:
            with path.open("rb", buffering=0) as fh:
                while not stop.is_set() and (n := fh.readinto(buffer)):
                    done += n
        except OSError as err:
            # The load reads the file again and names the problem where it matters.
            log.warning("prefetch of %s stopped: %s", path, err)
    return done


class Prefetch:
    """``with Prefetch(folder):`` reads its weight files on a thread for the block's length."""

    def __init__(self, folder: Path | None) -> None:
        self.files = weight_files(folder) if folder is not None and folder.is_dir() else []
        self.stop = threading.Event()
        self.read = 0
        self.seconds = 0.0
        self._thread = threading.Thread(target=self._run, name="vlmfleet-prefetch", daemon=True)

    def _run(self) -> None:
        t0 = time.monotonic()
        self.read = read_through(self.files, self.stop)
        self.seconds = time.monotonic() - t0

    def __enter__(self) -> Prefetch:
        if self.files:
            self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        err: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop.set()
        if self.files:
            self._thread.join()
