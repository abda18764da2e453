"""A model's weight files brought into the page cache by the kernel, ahead of the model's load.

Importing VLMEvalKit and loading a model are both bound to the interpreter lock: a load on a
second thread slowed both down (bench/README.md). Asking the kernel to read a file ahead
(``posix_fadvise(WILLNEED)``) is not: while the main thread imports, the kernel moves the weights
from the disk into the page cache, and the load that follows reads them from memory. Reading
them here instead copied every byte once more, and on a cached checkpoint slowed the imports
down. A file already cached costs nothing. Standard library only.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from types import TracebackType

log = logging.getLogger("vlmfleet.prefetch")
WEIGHT_SUFFIXES = (".safetensors", ".bin")
# Advised a slice at a time, so that a stop takes effect between slices.
CHUNK_BYTES = 1 << 30


def weight_files(folder: Path) -> list[Path]:
    """The weight files under ``folder`` (a checkpoint, its vision tower's folder included)."""
    return sorted(p for p in folder.rglob("*") if p.suffix in WEIGHT_SUFFIXES and p.is_file())


def available_memory(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """The kernel's estimate of the memory available without swapping (MemAvailable), or None
    where it gives none."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def within(files: list[Path], room: int | None) -> list[Path]:
    """The first of ``files`` whose sizes together fit ``room`` (all of them without a figure):
    pages read ahead beyond the memory would push out the ones read first before the load
    reached them, and the disk would read them twice."""
    if room is None:
        return files
    kept, total = [], 0
    for path in files:
        total += path.stat().st_size
        if total > room:
            break
        kept.append(path)
    return kept


def read_ahead(files: list[Path], stop: threading.Event) -> int:
    """Bytes of ``files`` the kernel was asked to read ahead, in order, until they end or
    ``stop`` is set."""
    done = 0
    for path in files:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as err:
            # The load opens the file again and names the problem where it matters.
            log.warning("no read-ahead of %s: %s", path, err)
            continue
        try:
            size = os.fstat(fd).st_size
            for offset in range(0, size, CHUNK_BYTES):
                if stop.is_set():
                    return done
                length = min(CHUNK_BYTES, size - offset)
                os.posix_fadvise(fd, offset, length, os.POSIX_FADV_WILLNEED)
                done += length
        finally:
            os.close(fd)
    return done


class Prefetch:
    """``with Prefetch(folder):`` has the kernel read its weight files ahead, from a thread, for
    the block's length."""

    def __init__(self, folder: Path | None, room: int | None = None) -> None:
        """``room``: the most bytes to read ahead; by default half the available memory, which
        a host's slots share."""
        found = weight_files(folder) if folder is not None and folder.is_dir() else []
        if room is None and (available := available_memory()) is not None:
            room = available // 2
        self.files = within(found, room)
        self.skipped = len(found) - len(self.files)
        self.stop = threading.Event()
        self.read = 0
        self.seconds = 0.0
        self._thread = threading.Thread(target=self._run, name="vlmfleet-prefetch", daemon=True)

    def _run(self) -> None:
        t0 = time.monotonic()
        self.read = read_ahead(self.files, self.stop)
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
