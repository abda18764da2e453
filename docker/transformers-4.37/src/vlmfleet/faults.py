"""A failure's cause in one line for a status record, and the disk reserve that lets the record
saying "disk full" be written on a disk with no byte left."""

from __future__ import annotations

import errno
import os
import shutil
import traceback
from pathlib import Path

from vlmfleet import contract


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
