"""A collected run's scores checked against answers known in advance.

For every combination of a run's summary.json the expected primary score is computed from its
collected prediction file and the answer key by ``published_metrics``, independently of
VLMEvalKit: the smoke data's key (``vlmfleet.smoke_data``, regenerated here) for the default
benchmarks, the shipped TSV for custom ones. The tests import it; molecule's verify runs it on
a run over its two instances:

    python -m scoring.check_run RESULTS/RUN_ID --limit 4 --hosts vlm-lab-1,vlm-lab-2 \\
        [--custom ka_mcq=mcq:/path/ka_mcq.tsv ...]

It prints one line per combination and exits 1 when any is not ok, scores other than expected,
or a named host has none.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from scoring.published_metrics import (
    Predictions,
    Row,
    first_questions,
    index_key,
    mcq_accuracy,
    primary_score,
    read_predictions,
    vqa_accuracy,
    yes_no_accuracy,
)

REPO = Path(__file__).resolve().parents[2]
CATALOGUE = REPO / "playbooks" / "vars" / "catalogue.yml"
# The metric VLMEvalKit gives a custom benchmark of each kind.
CUSTOM_METRICS: dict[str, Callable[[Sequence[Row], Predictions], float]] = {
    "mcq": mcq_accuracy,
    "yorn": yes_no_accuracy,
    "vqa": vqa_accuracy,
}


@functools.cache
def smoke_shapes() -> dict[str, str]:
    """Default benchmark -> the smoke shape its synthetic rows have (the catalogue's)."""
    catalogue = yaml.safe_load(CATALOGUE.read_text())
    kinds = catalogue["catalogue_kinds"]
    return {
        name: entry.get("smoke_shape", kinds[entry["kind"]]["smoke_shape"])
        for name, entry in catalogue["catalogue_benchmarks"].items()
    }


def combination_dir(run_dir: Path, entry: dict[str, Any]) -> Path:
    return run_dir / entry["host"] / entry["model"] / entry["benchmark"]


def expected_smoke_score(run_dir: Path, entry: dict[str, Any], limit: int) -> tuple[dict, float]:
    """The collected record of an ok smoke combination and the published primary score of its
    prediction file, after checking that the file answers exactly the first ``limit``
    questions of the answer key."""
    from vlmfleet.smoke_data import DEFAULT_QUESTIONS, synthetic_rows

    where = combination_dir(run_dir, entry)
    record = json.loads((where / "status.json").read_text())
    name = entry["benchmark"]
    key = synthetic_rows(name, smoke_shapes()[name], max(DEFAULT_QUESTIONS, limit))
    predictions = read_predictions(where / record["prediction_file"])
    asked = {index_key(r["index"]) for r in first_questions(name, key, limit)}
    if set(predictions) != asked:
        raise AssertionError(
            f"{name}: predictions for rows {sorted(set(predictions) ^ asked)[:8]} differ from "
            f"the first {limit} questions"
        )
    return record, primary_score(name, key, predictions)


def tsv_rows(tsv: Path) -> list[dict[str, str]]:
    csv.field_size_limit(sys.maxsize)
    with tsv.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def expected_custom_score(
    run_dir: Path, entry: dict[str, Any], kind: str, tsv: Path
) -> tuple[dict, float]:
    """The collected record of an ok custom combination and its kind's published score of its
    prediction file against the shipped TSV."""
    where = combination_dir(run_dir, entry)
    record = json.loads((where / "status.json").read_text())
    predictions = read_predictions(where / Path(record["prediction_file"]).name)
    return record, CUSTOM_METRICS[kind](tsv_rows(tsv), predictions)


def check(
    run_dir: Path, limit: int, custom: dict[str, tuple[str, Path]], hosts: Sequence[str]
) -> list[str]:
    """One line per problem of the run (empty: every combination ok and as expected)."""
    if not (run_dir / "summary.json").is_file():
        return [f"{run_dir}: no summary.json (the run did not get that far)"]
    summary = json.loads((run_dir / "summary.json").read_text())
    problems = []
    seen_hosts = set()
    for entry in summary["combinations"]:
        what = f"{entry['host']} {entry['model']}/{entry['benchmark']}"
        if entry["status"] != "ok":
            problems.append(f"{what}: {entry['status']}: {entry.get('reason', '')}")
            continue
        seen_hosts.add(entry["host"])
        name = entry["benchmark"]
        if name in custom:
            _, expected = expected_custom_score(run_dir, entry, *custom[name])
        else:
            _, expected = expected_smoke_score(run_dir, entry, limit)
        shown = entry.get("primary_score")
        verdict = "as expected" if shown is not None and abs(shown - expected) < 1e-6 else "WRONG"
        print(f"{what}: primary score {shown!r}, expected {expected!r}: {verdict}")
        if verdict == "WRONG":
            problems.append(f"{what}: primary score {shown!r}, expected {expected!r}")
    problems += [f"{host}: no ok combination" for host in hosts if host not in seen_hosts]
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--limit", type=int, required=True)
    parser.add_argument("--hosts", default="", help="comma-separated hosts that must have run")
    parser.add_argument("--custom", action="append", default=[], metavar="NAME=KIND:TSV")
    args = parser.parse_args(argv)
    custom = {}
    for spec in args.custom:
        name, _, rest = spec.partition("=")
        kind, _, tsv = rest.partition(":")
        if kind not in CUSTOM_METRICS or not tsv:
            kinds = ", ".join(CUSTOM_METRICS)
            parser.error(f"--custom {spec!r}: want NAME=KIND:TSV, KIND one of {kinds}")
        custom[name] = (kind, Path(tsv))
    problems = check(args.run_dir, args.limit, custom, [h for h in args.hosts.split(",") if h])
    for problem in problems:
        print(f"PROBLEM {problem}")
    print(f"{args.run_dir.name}: {'ok' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
