"""A sharded benchmark's predictions, merged in row order and evaluated once.

    python -m vlmfleet.merge --slot-file /workspace/outputs/<run_id>/<host>/merge/slot.json

The merge slot file (``contract.MERGE_SLOT``) lists the benchmarks whose shards are all done;
the controller brought the shards other hosts ran into outputs/<run_id>/<their host>/ here, so
every shard is read where ``contract.run_shard_records`` finds it. For each benchmark: its
whole dataset (the sample limit applied, as each shard applied it before taking its part), the
shards' prediction files concatenated in shard order, checked to be exactly the dataset's rows
in order, written as the benchmark's own prediction file and evaluated by VLMEvalKit's
evaluation (``vlmfleet.evaluation.evaluate``). Its status record is the benchmark's usual one,
with the shards listed (``contract.SHARDS_KEY``). Exit status: 0 every merge ok, 1 any failed,
2 bad slot file.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vlmfleet import contract, log_routing
from vlmfleet.contract import Benchmark, Slot
from vlmfleet.datasets import prepare_dataset, questions_of, use_smoke_data_root
from vlmfleet.evaluation import evaluate
from vlmfleet.slot_records import SlotRecords
from vlmfleet.worker import read_inputs

log = logging.getLogger("vlmfleet.merge")


class MergeError(RuntimeError):
    """The shards cannot be merged; the message is the status record's reason."""


def shard_list(shards: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """What the benchmark's record lists of its shards."""
    return [
        {
            **contract.record_shard(r).as_dict(),  # type: ignore[union-attr]
            "host": r["host"],
            "slot": r["slot"],
            "seconds": r["seconds"],
            "samples": r["samples"],
        }
        for r in shards
    ]


def clear_merge_output(cdir: Path) -> None:
    """An earlier merge attempt's files; the shards' folder stays."""
    if not cdir.is_dir():
        return
    for entry in cdir.iterdir():
        if entry.name == contract.SHARDS_DIR:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def merged_predictions(dataset: Any, shards: list[Mapping[str, Any]], run_dir: Path) -> Any:
    """The shards' predictions in shard order, which must be the dataset's rows in order."""
    import pandas as pd
    from vlmeval.smp import load

    frames = []
    for r in shards:
        shard = contract.record_shard(r)
        assert shard is not None
        folder = contract.shard_dir(run_dir / r["host"], r["model"], r["benchmark"], shard)
        path = folder / str(r.get("prediction_file") or "")
        if not path.is_file():
            raise MergeError(f"shard {shard.name} from {r['host']}: no prediction file {path}")
        try:
            frames.append(load(str(path)))
        except Exception as err:  # a torn xlsx or tsv: pandas' and zipfile's own errors
            raise MergeError(
                f"shard {shard.name} from {r['host']}: its predictions {path} cannot be read "
                f"({type(err).__name__}: {err}); remove that shard's folder and rerun with the "
                "same run_id to run it again"
            ) from err
    merged = pd.concat(frames, ignore_index=True)
    want = [str(i) for i in dataset.data["index"]]
    got = [str(i) for i in merged["index"]]
    if got != want:
        first = next(
            (k for k, (a, b) in enumerate(zip(got, want, strict=False)) if a != b),
            min(len(got), len(want)),
        )
        raise MergeError(
            f"the shards' predictions hold {len(got)} rows that are not the benchmark's "
            f"{len(want)} rows in order (first difference at row {first})"
        )
    return merged


def not_done(records: list[dict[str, Any]], model: str, benchmark: str) -> str:
    """Why the shards of model/benchmark cannot be merged here: each one's reason, where its
    record has one (a damaged prediction file, contract.prediction_problems)."""
    why = [
        f"{contract.record_shard(r).name}: {r['reason']}"  # type: ignore[union-attr]
        for r in records
        if (r["model"], r["benchmark"]) == (model, benchmark) and r["status"] != "ok"
    ]
    return f"not every shard of {model}/{benchmark} is done on this host's copy" + (
        f" ({'; '.join(why)})" if why else ""
    )


def merge_one(slot_records: SlotRecords, model: str, bench: Benchmark) -> None:
    slot = slot_records.slot
    started, t0 = contract.now_iso(), time.monotonic()
    cdir = contract.combo_dir(slot.run_host_dir, model, bench.name)
    clear_merge_output(cdir)
    cdir.mkdir(parents=True, exist_ok=True)
    name = f"{model}/{bench.name}"
    handler = log_routing.file_handler(cdir, name)
    shards: list[Mapping[str, Any]] = []
    try:
        with log_routing.routed_to(name):
            records = contract.run_shard_records(slot.run_host_dir.parent)
            found = contract.complete_shards(records, model, bench.name, smoke=slot.smoke)
            shards = found or []
            try:
                if found is None:
                    raise MergeError(not_done(records, model, bench.name))
                from vlmeval.smp import dump
                from vlmeval.smp.file import get_pred_file_path

                dataset = prepare_dataset(bench, slot)
                merged = merged_predictions(dataset, found, slot.run_host_dir.parent)
                pred_file = get_pred_file_path(str(cdir), model, bench.name, use_env_format=True)
                dump(merged, pred_file)
                fields = evaluate(dataset, pred_file, bench, slot, questions_of(dataset))
                status = "ok"
            except Exception as err:  # every failure becomes the benchmark's record
                log.exception("merge of %s failed", name)
                status, fields = "failed", {"reason": slot_records.describe(err, cdir), "extra": {}}
            merge_seconds = time.monotonic() - t0
            fields["extra"] |= {
                contract.SHARDS_KEY: shard_list(shards),
                "merge_seconds": round(merge_seconds, 3),
            }
            # The benchmark's time: its shards' (on whichever slots) and the merge's.
            seconds = merge_seconds + sum(float(r["seconds"]) for r in shards)
            slot_records.record(model, bench.name, status, started, seconds, **fields)
    finally:
        log_routing.remove(handler)


def run(slot: Slot) -> int:
    slot_records = SlotRecords(slot)
    if slot.smoke:
        use_smoke_data_root(slot)
    from vlmfleet.stack import import_stack

    import_stack()
    for unit, bench in slot.combinations():
        merge_one(slot_records, unit.model, bench)
    log.info(
        "merged: %d ok, %d failed of %d",
        slot_records.ok,
        slot_records.failed,
        slot_records.total,
    )
    return 0 if slot_records.failed == 0 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vlmfleet.merge", description=__doc__)
    parser.add_argument("--slot-file", required=True, type=Path, help="path of merge/slot.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=log_routing.LOG_FORMAT, stream=sys.stderr)
    # The token file too: a judged benchmark's evaluation needs the judge's key.
    started = read_inputs(args.slot_file)
    if started is None:
        return 2
    slot, _ = started
    if slot.slot != contract.MERGE_SLOT or any(b.shard for _, b in slot.combinations()):
        log.error("bad slot file: %s is not a merge slot file", args.slot_file)
        return 2
    return run(slot)


if __name__ == "__main__":
    sys.exit(main())
