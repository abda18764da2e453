"""Batched generation against VLMEvalKit's own batch-1 loop, on one checkpoint.

    python -m vlmfleet_tools.agreement --checkpoint DIR --device cpu --questions 24 --out FILE.json

A development tool, not part of the image: it runs beside the image's ``vlmfleet`` with
docker/transformers-4.37/tools on PYTHONPATH (docker/transformers-4.37/README.md).

For each benchmark of the default matrix
(``vlmfleet.known_answer_checkpoints.DEFAULT_BENCHMARKS``), the synthetic dataset of
``--questions`` questions is answered once by VLMEvalKit's per-sample loop
(``vlmeval.inference.infer_data_job``, the reference) and then by the llava family's batched
engine (``vlmfleet.families.llava_batched``) at each batch size in each batch order:

- ``product``: the order ``prepare_samples`` gives, similar prompt lengths together (what the
  worker runs);
- ``shuffled``: the same samples in a fixed pseudo-random order (``--shuffle-seed``), so that
  each batch mixes short and long prompts (more left padding);
- ``reversed``: the product's order backwards, so that batches fall on other boundaries.

Then all benchmarks go through one queue of the engine at each batch size above 1, as a
worker's unit runs them (a benchmark's last samples share a batch with the next benchmarks'),
and each benchmark's answers are compared with its reference (the report's ``queue``). With
``--reserve N`` the queue runs again with each batch given cache slots for N new tokens a row
(``BatchPolicy.reserve``; a small N makes answers outgrow them), so that rows are deferred and
decoded again in batches sized for ``max_new_tokens`` (the report's ``queue_reserve``, with the
deferred samples counted).

Rows that share their image and prompt start (MMBench's rotations of a question) are prefilled
as a group where they meet in a batch (``vlmfleet.families.prefix_groups``): at batch 1 never,
so the engine's own batch-1 run is also the ungrouped one; every comparison, queue run and the
total count the rows answered from such a prefill (``grouped_samples``), so that a report shows
the grouped prefill was compared, not only the plain one.

Both arms run the product's own code (the worker's seeding and synthetic data, the LLaVA
wrapper on the slot's device and dtype, ``infer_prepared``'s prediction file), each in its own
work folder, and the prediction files are compared row by row by ``index``. The JSON report
names the machine, the versions, the device and dtype and the checkpoint, and for every
benchmark, batch size and order the rows, the identical rows and each differing row.

With random weights every next-token distribution is nearly flat, so rounding differences from
padding would flip answers too and agreement says little; trained checkpoints
(``vlmfleet.known_answer_checkpoints``) answer with confident logits, as a real model does,
which is the case that matters. The report counts the reference answers that match the answer
key to show which of the two a checkpoint is.

Exit status: 0 every row identical, 1 some row differs, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("vlmfleet_tools.agreement")

ORDERS = ("product", "shuffled", "reversed")
BATCH_SIZES = (1, 8, 32)
SHUFFLE_SEED = 0
DEVICES = ("cpu", "cuda")
# Distributions whose versions decide the numbers (import names differ from some of these).
VERSIONED = (
    "torch",
    "transformers",
    "tokenizers",
    "accelerate",
    "llava-torch",
    "ms-vlmeval",
    "numpy",
    "pandas",
)
# The most differing rows the report lists per comparison; the counts are always complete.
MAX_LISTED = 50


def orders_at(size: int, orders: Sequence[str]) -> Sequence[str]:
    """The batch orders worth comparing at ``size``: every one, except at batch 1, where each
    sample is generated alone and no order can change an answer."""
    return orders if size > 1 else orders[:1]


class AgreementError(ValueError):
    """A bad argument; the message names it and the valid values."""


@dataclasses.dataclass(frozen=True)
class Settings:
    checkpoint: Path
    device: str
    benchmarks: tuple[str, ...]
    questions: int
    batch_sizes: tuple[int, ...]
    orders: tuple[str, ...]
    max_new_tokens: int
    shuffle_seed: int
    # New tokens a row's cache slots hold in the queue_reserve runs (None: no such runs).
    reserve: int | None = None


def check_settings(
    checkpoint: Path,
    device: str,
    benchmarks: Sequence[str] | None,
    questions: int,
    batch_sizes: Sequence[int],
    orders: Sequence[str],
    max_new_tokens: int,
    shuffle_seed: int,
) -> Settings:
    """Every argument checked before any work starts."""
    from vlmfleet.families.llava_batched import BatchingError, check_batch_size
    from vlmfleet.known_answer_checkpoints import DEFAULT_BENCHMARKS

    checkpoint = Path(checkpoint).absolute()
    if not (checkpoint / "config.json").is_file():
        raise AgreementError(f"checkpoint {checkpoint} has no config.json (not a checkpoint)")
    if device not in DEVICES:
        raise AgreementError(f"device {device!r} is not valid; valid: {', '.join(DEVICES)}")
    names = tuple(benchmarks) if benchmarks else tuple(DEFAULT_BENCHMARKS)
    unknown = [n for n in names if n not in DEFAULT_BENCHMARKS]
    if unknown:
        raise AgreementError(
            f"benchmark(s) {', '.join(unknown)} are not benchmarks of the default matrix; "
            f"valid: {', '.join(DEFAULT_BENCHMARKS)}"
        )
    if isinstance(questions, bool) or not isinstance(questions, int) or questions < 1:
        raise AgreementError(f"questions must be a positive integer, got {questions!r}")
    if (
        isinstance(max_new_tokens, bool)
        or not isinstance(max_new_tokens, int)
        or max_new_tokens < 1
    ):
        raise AgreementError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
    try:
        sizes = tuple(check_batch_size(b) for b in batch_sizes)
    except BatchingError as err:
        raise AgreementError(str(err)) from err
    bad = [o for o in orders if o not in ORDERS]
    if bad or not orders:
        raise AgreementError(f"order(s) {bad or '(none)'} not valid; valid: {', '.join(ORDERS)}")
    if not sizes:
        raise AgreementError("at least one batch size is needed")
    return Settings(
        checkpoint,
        device,
        names,
        questions,
        sizes,
        tuple(orders),
        max_new_tokens,
        shuffle_seed,
    )


def reorder(samples: Sequence[Any], order: str, seed: int) -> list[Any]:
    """``samples`` (in prepare_samples' order) in the batch order ``order``."""
    if order == "product":
        return list(samples)
    if order == "reversed":
        return list(reversed(samples))
    if order == "shuffled":
        shuffled = list(samples)
        random.Random(seed).shuffle(shuffled)
        return shuffled
    raise AgreementError(f"order {order!r} is not valid; valid: {', '.join(ORDERS)}")


def loadable_checkpoint(checkpoint: Path, work: Path) -> Path:
    """A copy of ``checkpoint`` in ``work`` that LLaVA's builder can load: its config names the
    vision tower by path, and the original may be read-only or carried from elsewhere."""
    from vlmfleet.tiny_checkpoint import ensure_copy

    # Same folder name: LLaVA's builder picks its model class from it.
    return ensure_copy(checkpoint, work / "checkpoint" / checkpoint.name)


def load_model(checkpoint: Path, device: str, max_new_tokens: int) -> Any:
    """The product's LLaVA wrapper on ``device``, seeded and capped as a smoke slot loads it."""
    from vlmfleet.families.llava_wrapper import DeviceLLaVA
    from vlmfleet.stack import seed_everything

    seed_everything()
    return DeviceLLaVA(str(checkpoint), device=device, max_new_tokens=max_new_tokens)


def read_predictions(pred_file: str) -> tuple[dict[str, str], Any]:
    """A prediction file's answers by ``str(index)``, and the file's rows."""
    from vlmeval.smp import load

    data = load(pred_file)
    return {str(i): str(p) for i, p in zip(data["index"], data["prediction"], strict=True)}, data


def reference_run(model: Any, model_name: str, name: str, work: Path) -> tuple[dict[str, str], Any]:
    """VLMEvalKit's batch-1 loop, seeded as the worker seeds it."""
    from vlmeval.dataset import build_dataset
    from vlmeval.inference import infer_data_job
    from vlmeval.smp.file import get_pred_file_path
    from vlmfleet.stack import seed_everything

    work.mkdir(parents=True)
    dataset = build_dataset(name)
    seed_everything()
    infer_data_job(model, work_dir=str(work), model_name=model_name, dataset=dataset)
    return read_predictions(get_pred_file_path(str(work), model_name, name, use_env_format=True))


def batched_run(
    model: Any, model_name: str, name: str, batch_size: int, order: str, seed: int, work: Path
) -> tuple[dict[str, str], dict[str, Any]]:
    """The llava family's batched engine at ``batch_size``, samples in the batch order ``order``:
    the answers by index and the benchmark's record."""
    from vlmeval.dataset import build_dataset
    from vlmfleet.families.llava_batched import infer_prepared, prepare_samples
    from vlmfleet.stack import seed_everything

    work.mkdir(parents=True)
    # A fresh dataset each run: inference writes its predictions into dataset.data.
    dataset = build_dataset(name)
    prepared = prepare_samples(model, dataset)
    prepared = dataclasses.replace(prepared, with_images=reorder(prepared.with_images, order, seed))
    seed_everything()
    pred_file, record = infer_prepared(model, str(work), model_name, dataset, prepared, batch_size)
    return read_predictions(pred_file)[0], record


def queue_run(
    model: Any,
    model_name: str,
    names: Sequence[str],
    batch_size: int,
    work: Path,
    reserve: int | None = None,
) -> dict[str, tuple[dict[str, str], dict[str, Any]]]:
    """Every benchmark through one queue of the llava engine at ``batch_size`` (with cache slots
    for ``reserve`` new tokens a row, if given), as a worker's unit runs them (batches cross
    benchmark boundaries): each benchmark's answers by index and its record."""
    from vlmeval.dataset import build_dataset
    from vlmfleet.families.llava_batched import BatchPolicy, answer_all, prepare_samples
    from vlmfleet.predictions import write_predictions
    from vlmfleet.stack import seed_everything

    work.mkdir(parents=True)
    datasets = {name: build_dataset(name) for name in names}
    prepared = [(n, d, prepare_samples(model, d)) for n, d in datasets.items()]
    seed_everything()
    done = answer_all(model, prepared, BatchPolicy(ceiling=batch_size, reserve=reserve))
    out = {}
    for name, dataset in datasets.items():
        pred_file = write_predictions(str(work), model_name, dataset, done[name].answers)
        out[name] = (read_predictions(pred_file)[0], done[name].record)
    return out


def compare(reference: dict[str, str], batched: dict[str, str]) -> dict[str, Any]:
    """Row by row by index; a row missing on either side counts as differing."""
    differing = [
        {"index": index, "reference": reference.get(index), "batched": batched.get(index)}
        for index in sorted(reference.keys() | batched.keys())
        if reference.get(index) != batched.get(index)
    ]
    rows = len(reference.keys() | batched.keys())
    return {
        "rows": rows,
        "identical": rows - len(differing),
        "differing": len(differing),
        "differing_rows": differing[:MAX_LISTED],
    }


def matches_key(kind: str, rows: Any, predictions: dict[str, str]) -> int:
    """Reference answers equal to the answer key's answer
    (``known_answer_checkpoints.right_answer``)."""
    from vlmfleet.known_answer_checkpoints import right_answer

    return sum(
        predictions[str(rows.iloc[i]["index"])] == right_answer(kind, rows.iloc[i])
        for i in range(len(rows))
    )


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in VERSIONED:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "absent"
    import torch

    out["torch_runtime"] = torch.__version__
    out["cuda"] = str(torch.version.cuda)
    return out


def _machine(device: str) -> dict[str, Any]:
    import torch

    machine = {
        "node": platform.node(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    if device == "cuda":
        machine["gpu"] = torch.cuda.get_device_name(0)
    return machine


def _checkpoint_facts(checkpoint: Path) -> dict[str, Any]:
    from vlmfleet import known_answer_checkpoints, tiny_checkpoint

    facts: dict[str, Any] = {"path": str(checkpoint), "name": checkpoint.name}
    weights = checkpoint / "model.safetensors"
    if weights.is_file():
        digest = hashlib.sha256()
        with weights.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        facts["model_safetensors_sha256"] = digest.hexdigest()
    for marker in (known_answer_checkpoints.MARKER, tiny_checkpoint.MARKER):
        if (checkpoint / marker).is_file():
            facts["marker"] = {marker: json.loads((checkpoint / marker).read_text("utf-8"))}
    return facts


def run_agreement(settings: Settings, work: Path) -> dict[str, Any]:
    """The report (see the module docstring); ``work`` holds data and prediction files."""
    from vlmfleet.datasets import LMU_ENV, use_synthetic_dataset
    from vlmfleet.families.llava_batched import decoder_for
    from vlmfleet.known_answer_checkpoints import DEFAULT_BENCHMARKS
    from vlmfleet.stack import import_stack

    lmu = work / "LMUData"
    lmu.mkdir(parents=True)
    os.environ[LMU_ENV] = str(lmu)
    import_stack()
    started = time.monotonic()
    model = load_model(
        loadable_checkpoint(settings.checkpoint, work), settings.device, settings.max_new_tokens
    )
    model_name = settings.checkpoint.name
    report: dict[str, Any] = {
        "what": "vlmfleet.families.llava_batched against vlmeval.inference.infer_data_job "
        "(batch 1)",
        "machine": _machine(settings.device),
        "versions": _versions(),
        "device": settings.device,
        "dtype": str(model.dtype).removeprefix("torch."),
        "attention": str(getattr(model.model.config, "_attn_implementation", None)),
        # How the engine decodes its batches on this device (llava_batched.decoder_for).
        "decoder": decoder_for(model).name,
        "checkpoint": _checkpoint_facts(settings.checkpoint),
        "questions": settings.questions,
        "max_new_tokens": settings.max_new_tokens,
        "batch_sizes": list(settings.batch_sizes),
        "orders": list(settings.orders),
        "shuffle_seed": settings.shuffle_seed,
        "benchmarks": {},
    }
    total_rows = total_identical = total_grouped = 0
    references: dict[str, dict[str, str]] = {}
    for name in settings.benchmarks:
        kind = DEFAULT_BENCHMARKS[name].kind
        bench_dir = work / "runs" / name
        use_synthetic_dataset(lmu, name, DEFAULT_BENCHMARKS[name].smoke_shape, settings.questions)
        t0 = time.monotonic()
        reference, rows = reference_run(model, model_name, name, bench_dir / "reference")
        references[name] = reference
        entry: dict[str, Any] = {
            "kind": kind,
            "rows": len(reference),
            "reference_seconds": round(time.monotonic() - t0, 3),
            "reference_matches_key": matches_key(kind, rows, reference),
            "batch_sizes": {},
        }
        for size in settings.batch_sizes:
            per_order: dict[str, Any] = {}
            for order in orders_at(size, settings.orders):
                t0 = time.monotonic()
                batched, record = batched_run(
                    model,
                    model_name,
                    name,
                    size,
                    order,
                    settings.shuffle_seed,
                    bench_dir / f"batch{size}-{order}",
                )
                result = compare(reference, batched)
                result["grouped_samples"] = record["samples_prefix_shared"]
                result["seconds"] = round(time.monotonic() - t0, 3)
                per_order[order] = result
                total_rows += result["rows"]
                total_identical += result["identical"]
                total_grouped += result["grouped_samples"]
            entry["batch_sizes"][str(size)] = per_order
        differing = sum(r["differing"] for o in entry["batch_sizes"].values() for r in o.values())
        log.info(
            "%s: %d rows, key matched by %d reference answers, %d differing batched rows",
            name,
            entry["rows"],
            entry["reference_matches_key"],
            differing,
        )
        report["benchmarks"][name] = entry
    report["queue"] = queue_agreement(model, model_name, settings, references, work / "queue")
    if settings.reserve is not None:
        report["queue_reserve"] = queue_agreement(
            model, model_name, settings, references, work / "queue-reserve", settings.reserve
        )
    report["total"] = {
        "comparisons": len(settings.benchmarks)
        * sum(len(orders_at(size, settings.orders)) for size in settings.batch_sizes),
        "rows": total_rows,
        "identical": total_identical,
        "differing": total_rows - total_identical,
        "agreement": round(total_identical / total_rows, 6) if total_rows else None,
        "grouped_samples": total_grouped,
    }
    report["seconds"] = round(time.monotonic() - started, 1)
    return report


def queue_agreement(
    model: Any,
    model_name: str,
    settings: Settings,
    references: dict[str, dict[str, str]],
    work: Path,
    reserve: int | None = None,
) -> dict[str, Any]:
    """All benchmarks as one queue at each batch size above 1 (each row given cache slots for
    ``reserve`` new tokens, if given), against the references."""
    out: dict[str, Any] = {}
    for size in (s for s in settings.batch_sizes if s > 1):
        t0 = time.monotonic()
        answers = queue_run(
            model, model_name, settings.benchmarks, size, work / f"batch{size}", reserve
        )
        per_bench = {}
        for name, (batched, record) in answers.items():
            per_bench[name] = compare(references[name], batched) | {
                "shared_samples": record["samples_in_shared_batches"],
                "deferred_samples": record.get("samples_deferred", 0),
                "grouped_samples": record["samples_prefix_shared"],
            }
        out[str(size)] = {
            "benchmarks": per_bench,
            "rows": sum(r["rows"] for r in per_bench.values()),
            "differing": sum(r["differing"] for r in per_bench.values()),
            "shared_samples": sum(r["shared_samples"] for r in per_bench.values()),
            "deferred_samples": sum(r["deferred_samples"] for r in per_bench.values()),
            "grouped_samples": sum(r["grouped_samples"] for r in per_bench.values()),
            "reserve": reserve,
            "seconds": round(time.monotonic() - t0, 3),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    from vlmfleet.contract import SMOKE_MAX_NEW_TOKENS, write_json_atomic
    from vlmfleet.log_routing import LOG_FORMAT

    parser = argparse.ArgumentParser(
        prog="python -m vlmfleet_tools.agreement", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--checkpoint", required=True, type=Path, help="LLaVA checkpoint folder")
    parser.add_argument("--device", default="cpu", help="cpu (float32) or cuda (float16)")
    parser.add_argument(
        "--questions", type=int, default=24, help="synthetic questions per benchmark"
    )
    parser.add_argument(
        "--benchmarks", nargs="+", help="default: every benchmark of the default matrix"
    )
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=list(BATCH_SIZES))
    parser.add_argument("--orders", nargs="+", default=list(ORDERS), help=", ".join(ORDERS))
    parser.add_argument("--shuffle-seed", type=int, default=SHUFFLE_SEED)
    parser.add_argument(
        "--max-new-tokens", type=int, default=SMOKE_MAX_NEW_TOKENS, help="as smoke runs cap it"
    )
    parser.add_argument(
        "--reserve",
        type=int,
        help="also run the queue with cache slots for this many new tokens a row (queue_reserve)",
    )
    parser.add_argument(
        "--work", type=Path, help="folder for data and predictions (default: a temporary one)"
    )
    parser.add_argument("--out", required=True, type=Path, help="the JSON report")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr)
    try:
        settings = check_settings(
            args.checkpoint,
            args.device,
            args.benchmarks,
            args.questions,
            args.batch_sizes,
            args.orders,
            args.max_new_tokens,
            args.shuffle_seed,
        )
        if args.reserve is not None and args.reserve < 1:
            raise AgreementError(f"reserve must be a positive integer, got {args.reserve!r}")
    except AgreementError as err:
        log.error("bad arguments: %s", err)
        return 2
    settings = dataclasses.replace(settings, reserve=args.reserve)
    if args.work is not None:
        args.work.mkdir(parents=True, exist_ok=True)
        if any(args.work.iterdir()):
            log.error("bad arguments: --work %s is not empty", args.work)
            return 2
        report = run_agreement(settings, args.work.absolute())
    else:
        with tempfile.TemporaryDirectory(prefix="vlmfleet-agreement-") as tmp:
            report = run_agreement(settings, Path(tmp))
    write_json_atomic(args.out, report)
    total = report["total"]
    print(
        f"agreement {total['identical']}/{total['rows']} rows identical "
        f"({100 * (total['agreement'] or 0):.2f}%) over {total['comparisons']} comparisons "
        f"({total['grouped_samples']} rows prefilled in groups sharing a prefix), "
        f"{settings.device} {report['dtype']}, decoder {report['decoder']}, "
        f"{settings.checkpoint.name}: {args.out}"
    )
    queues = [*report["queue"].values(), *report.get("queue_reserve", {}).values()]
    queue_differing = sum(q["differing"] for q in queues)
    return 0 if total["differing"] == 0 and queue_differing == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
