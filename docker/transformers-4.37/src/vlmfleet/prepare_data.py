"""A host's official benchmark data, prepared once before its workers start (real runs).

    python -m vlmfleet.prepare_data --source download|ship \\
        --slot-file /workspace/outputs/<run_id>/<host>/<slot>/slot.json [--slot-file ...] \\
        --record /workspace/outputs/<run_id>/<host>/prepare.json

Every slot of a host reads one $LMUData. Under an exclusive flock on $LMUData/.prepare.lock
(``contract.PREPARE_LOCK``; a second preparation on the host waits for the first), for each
official benchmark the slot files list (custom ones are shipped and checked by role eval_run):

- ``download``: VLMEvalKit's own dataset class is constructed, which fetches the TSV where it is
  missing or its md5 is not the class's ``DATASET_MD5``; the file is then checked against that md5
  (VLMEvalKit's download does not check what it fetched);
- ``ship``: role eval_run has copied the controller's ``data_dir/<name>.tsv`` here; it is
  checked against the class's md5 first, then the class is constructed (no download: the file is
  the one VLMEvalKit expects), which also writes VLMEvalKit's ``<name>_local.tsv`` of a big TSV
  here rather than in every slot at once.

Before any download, the sizes of the files to be downloaded are asked of their server (HEAD,
Content-Length) and counted with their images (``contract.data_bytes``) against the free space
under $LMUData: a disk that cannot hold them fails every benchmark at once, naming the path, the
free and the needed bytes, with nothing downloaded. A server that gives no size is not counted.

Then the TSV (and its ``_local.tsv``) is made read-only (0444). The record says what was
prepared, or which benchmarks failed and why; the last line on stderr is that outcome. Exit
status: 0 prepared, 1 a benchmark could not be prepared, 2 a bad slot file.
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import shutil
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vlmfleet import contract
from vlmfleet.contract import ContractError, load_slot

log = logging.getLogger("vlmfleet.prepare_data")
READ_ONLY = 0o444
BYTES_PER_GIB = 2**30
# Asked under the host lock, once per missing file: a server that never answers holds it briefly.
SIZE_TIMEOUT_SECONDS = 10


class PrepareError(RuntimeError):
    """One benchmark cannot be prepared; the message names it and the cause."""


def md5_mismatch(name: str, tsv: Path, got: str, want: str | None, how: str) -> str | None:
    """The message when ``got`` is not VLMEvalKit's md5 ``want`` (None: its table has none)."""
    if want is None or got == want:
        return None
    return f"{name}: {how} {tsv} has md5 {got}, VLMEvalKit's table says {want}"


@contextmanager
def host_lock(root: Path) -> Iterator[dict[str, float]]:
    """An exclusive flock on ``root/.prepare.lock``, waited for; yields its times (epoch
    seconds), released when the block ends (or by the kernel when the process dies)."""
    root.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    with (root / contract.PREPARE_LOCK).open("a") as fh:
        start = time.time()
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for %s: another preparation holds it", root / contract.PREPARE_LOCK)
            fcntl.flock(fh, fcntl.LOCK_EX)
        times["lock_acquired_at"] = time.time()
        times["lock_waited_seconds"] = round(times["lock_acquired_at"] - start, 3)
        try:
            yield times
        finally:
            times["lock_released_at"] = time.time()
            fcntl.flock(fh, fcntl.LOCK_UN)


class _Warnings(logging.Handler):
    """What VLMEvalKit's download_file logs before it raises 'Failed to download URL'."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def construct(cls: type, name: str) -> tuple[Any, list[str]]:
    """VLMEvalKit's dataset object for ``name`` (its class's own load: download where needed,
    md5 check, _local.tsv) and the warnings logged meanwhile."""
    handler = _Warnings()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        return cls(dataset=name), handler.messages
    except Exception as err:
        err.add_note("\n".join(handler.messages))
        raise
    finally:
        root.removeHandler(handler)


def remote_size(url: str, timeout: float = SIZE_TIMEOUT_SECONDS) -> int | None:
    """The Content-Length a server answers a HEAD of ``url`` with; None when there is no URL, no
    answer or no length."""
    if not url.startswith(("http://", "https://")):
        return None
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, method="HEAD"), timeout=timeout
        ) as r:
            length = r.headers.get("Content-Length", "")
    except (OSError, ValueError) as err:
        log.info(
            "no size for %s (%s: %s): its download is not counted ahead",
            url,
            type(err).__name__,
            err,
        )
        return None
    return int(length) if length.isdigit() else None


def room_problem(sizes: dict[str, int], root: Path, shown_as: str) -> str | None:
    """Why the disk under ``root`` cannot hold the downloads of ``sizes`` ({name: TSV bytes})
    with their images, or None."""
    need = sum(
        contract.data_bytes(size, False, (root / contract.LMU_IMAGES_DIR / name).is_dir())
        for name, size in sizes.items()
    )
    free = shutil.disk_usage(root).free
    if need <= free:
        return None
    files = ", ".join(f"{name} ({size / BYTES_PER_GIB:.2f} GiB)" for name, size in sizes.items())
    return (
        f"not enough disk for the downloads: {shown_as} has {free / BYTES_PER_GIB:.2f} GiB "
        f"({free} bytes) free, and {files} with their images need {need / BYTES_PER_GIB:.2f} GiB; "
        "free space there, or ship the data (data_source=ship)"
    )


def is_the_expected(tsv: Path, want: str | None) -> bool:
    """Whether ``tsv`` is there and the file VLMEvalKit's table names (any file where its table
    has no md5): otherwise VLMEvalKit's load downloads it."""
    from vlmfleet.datasets import tsv_md5

    return tsv.is_file() and (want is None or tsv_md5(tsv) == want)


def download_sizes(names: list[str]) -> dict[str, int]:
    """{name: bytes} of the benchmarks of ``names`` that VLMEvalKit would download (no TSV, or
    not the md5 its table names) and whose server says how big they are."""
    from vlmfleet.datasets import dataset_class, official_md5, official_tsv, official_url

    sizes = {}
    for name in names:
        cls = dataset_class(name)
        if cls is None or is_the_expected(official_tsv(name), official_md5(cls, name)):
            continue
        size = remote_size(official_url(cls, name))
        if size is not None:
            sizes[name] = size
    return sizes


def prepare_one(name: str, source: str) -> dict[str, Any]:
    """Fetch or check one official benchmark's TSV (the lock held); raises PrepareError."""
    from vlmfleet.datasets import dataset_class, official_md5, official_tsv, official_url, tsv_md5

    cls = dataset_class(name)
    if cls is None:
        raise PrepareError(f"{name}: not a VLMEvalKit dataset name, and no custom file shipped")
    tsv, want, url = official_tsv(name), official_md5(cls, name), official_url(cls, name)
    fetched = False
    if source == "ship":
        if not tsv.is_file():
            raise PrepareError(f"{name}: the shipped file {tsv} is not there")
        if problem := md5_mismatch(name, tsv, tsv_md5(tsv), want, "shipped"):
            raise PrepareError(problem)
    else:
        if tsv.is_file() and not is_the_expected(tsv, want):
            # Read-only from an earlier preparation: VLMEvalKit's download writes over it.
            log.info("%s: %s has md5 %s, not %s: download again", name, tsv, tsv_md5(tsv), want)
            tsv.unlink()
        fetched = not tsv.is_file()
    try:
        construct(cls, name)
    except Exception as err:
        cause = " ".join([*getattr(err, "__notes__", []), f"{type(err).__name__}: {err}"]).strip()
        if fetched and not tsv.is_file():
            raise PrepareError(f"could not download {name} from {url}: {cause}") from err
        raise PrepareError(f"{name}: VLMEvalKit cannot load {tsv}: {cause}") from err
    got = tsv_md5(tsv)
    if problem := md5_mismatch(name, tsv, got, want, "downloaded" if fetched else "present"):
        raise PrepareError(problem)
    for path in (tsv, tsv.with_name(f"{name}_local.tsv")):
        if path.exists():
            path.chmod(READ_ONLY)
    log.info("%s: %s md5 %s (%s)", name, tsv, got, "downloaded" if fetched else "already there")
    return {"name": name, "path": str(tsv), "md5": got, "fetched": fetched}


def prepare(
    names: list[str], source: str, root: Path, shown_as: str | None = None
) -> dict[str, Any]:
    """Every benchmark of ``names`` under the host lock; a failed one does not stop the rest
    (one record names them all). Downloads the disk cannot hold stop them all, before any
    (``shown_as``: how messages name ``root``, e.g. its path on the host)."""
    record: dict[str, Any] = dict.fromkeys(contract.PREPARE_KEYS)
    record |= {"source": source, "benchmarks": [], "started_at": contract.now_iso()}
    problems = []
    with host_lock(root) as times:
        sizes = download_sizes(names) if source == "download" else {}
        full = room_problem(sizes, root, shown_as or str(root)) if sizes else None
        if full is not None:
            log.error("%s", full)
            problems.append(full)
        else:
            for name in names:
                try:
                    record["benchmarks"].append(prepare_one(name, source))
                except PrepareError as err:
                    log.error("%s", err)
                    problems.append(str(err))
    record |= times
    record["status"] = "failed" if problems else "ok"
    record["error"] = contract.one_line("; ".join(problems), 2000) if problems else None
    record["finished_at"] = contract.now_iso()
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vlmfleet.prepare_data", description=__doc__)
    parser.add_argument("--source", required=True, choices=contract.DATA_SOURCES)
    parser.add_argument("--slot-file", required=True, action="append", type=Path)
    parser.add_argument("--record", type=Path, help="where the preparation record goes")
    parser.add_argument("--host-path", help="$LMUData's path on the host, for messages")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        slots = [load_slot(p) for p in args.slot_file]
    except ContractError as err:
        print(f"{contract.NOT_PREPARED}: bad slot file: {err}", file=sys.stderr)
        return 2
    from vlmfleet.datasets import lmu_root

    names = contract.official_benchmarks(slots)
    record = prepare(names, args.source, lmu_root(), args.host_path)
    if args.record is not None:
        contract.write_json_atomic(args.record, record)
    if record["status"] != "ok":
        print(f"{contract.NOT_PREPARED}: {record['error']}", file=sys.stderr)
        return 1
    done = ", ".join(names) or "no official benchmark"
    print(f"data prepared ({args.source}): {done} in {lmu_root()}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
