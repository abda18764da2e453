"""Which worker.log a log line goes to: the slot's, and the combination's its thread works on.

Within a unit, one thread prepares benchmark k+1 while the main thread generates k and another
evaluates k-1, and VLMEvalKit logs through its own loggers: a combination's worker.log takes the
lines of whichever thread works on that combination at the time, by a thread-local name rather
than by logger.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vlmfleet.contract import WORKER_LOG

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_FILE = WORKER_LOG

_working_on = threading.local()


class ThisCombination(logging.Filter):
    """Passes the lines of threads working on one combination ("model/benchmark")."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.combination = name

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(_working_on, "name", None) == self.combination


@contextmanager
def routed_to(combination: str) -> Iterator[None]:
    """Log lines of this thread go to ``combination``'s worker.log meanwhile."""
    _working_on.name = combination
    try:
        yield
    finally:
        _working_on.name = None


def file_handler(folder: Path, combination: str | None = None) -> logging.Handler:
    """A root-logger handler writing ``folder``/worker.log: every line, or, for a combination,
    the lines routed to it. The caller removes and closes it (``remove``)."""
    handler = logging.FileHandler(Path(folder) / LOG_FILE, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    if combination is not None:
        handler.addFilter(ThisCombination(combination))
    logging.getLogger().addHandler(handler)
    return handler


def remove(handler: logging.Handler) -> None:
    logging.getLogger().removeHandler(handler)
    handler.close()
