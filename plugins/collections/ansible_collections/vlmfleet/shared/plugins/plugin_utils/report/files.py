"""Reports of a finished run: scores.csv, report.md, report.html, manifest.json.

Three ways in, one code path:
- Ansible filter `eval_report_files` (plugins/filter/eval_report.py; playbooks/report.yml
  writes what it returns);
- command line, to regenerate without Ansible or rerunning anything (report/__main__.py):
  `PYTHONPATH=plugins/collections python -m
  ansible_collections.vlmfleet.shared.plugins.plugin_utils.report results/<run_id>
  [--compare-to <run_id>]`;
- Python: `build_reports(run_dir, references, ...)`.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from ansible_collections.vlmfleet.shared.plugins.plugin_utils.report.data import (
    HOST_PROBLEM,
    Catalogue,
    Combo,
    ReportError,
    Run,
    compare_runs,
    load_run,
    model_times,
    percent,
    run_wall_seconds,
)
from ansible_collections.vlmfleet.shared.plugins.plugin_utils.report.render import (
    heatmap_png,
    render_html,
    render_markdown,
    sections,
)

# The project's root: this file is <root>/plugins/collections/ansible_collections/vlmfleet/
# shared/plugins/plugin_utils/report/files.py.
PROJECT = Path(__file__).resolve().parents[8]

DEFAULT_REFERENCES = PROJECT / "playbooks" / "vars" / "reference_scores.yml"
REPORT_FILES = ("scores.csv", "report.md", "report.html", "manifest.json")
CSV_COLUMNS = (
    "run",
    "host",
    "model",
    "benchmark",
    "metric",
    "value",
    "samples",
    "seconds",
    "status",
    "primary",
    # The primary metric on 0-100 (the worker's primary_score), on the primary row only, with
    # its 95% interval and how that was computed.
    "primary_score",
    "interval_low",
    "interval_high",
    "interval_method",
    # The combination's scored questions, relative to the run directory.
    "questions_file",
    # Smoke scores come from smoke checkpoints on synthetic data: the flag travels with every row.
    "smoke",
)
DEFAULT_CATALOGUE = PROJECT / "playbooks" / "vars" / "catalogue.yml"
# Package versions in image labels: the image's io.vlm-eval.versions.<package>, or the
# common <prefix>.<package>.version.
_VERSION_LABEL = re.compile(r"\.versions\.(?P<a>[A-Za-z0-9_-]+)$|\.(?P<b>[A-Za-z0-9_-]+)\.version$")


def scores_csv(run: Run) -> str:
    """Long form: one row per (combination, metric); a combination without scores still gets
    one row (empty metric) so failed and missing ones show up in a spreadsheet."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    smoke = "true" if run.smoke else "false"
    for c in run.combos:
        base = [run.run_id, c.host, c.model, c.benchmark]
        tail = [
            "" if c.samples is None else c.samples,
            "" if c.seconds is None else c.seconds,
            c.status,
        ]
        metrics = sorted(c.scores, key=lambda m: (m != c.primary_metric, m))
        questions = c.questions_file or ""
        if not metrics:
            writer.writerow([*base, "", "", *tail, "", "", "", "", "", questions, smoke])
        for metric in metrics:
            primary = metric == c.primary_metric
            score = percent(c) if primary else None
            writer.writerow(
                [
                    *base,
                    metric,
                    c.scores[metric],
                    *tail,
                    "true" if primary else "false",
                    "" if score is None else score,
                    *_interval_cells(c if score is not None else None),
                    questions,
                    smoke,
                ]
            )
    return buf.getvalue()


def _interval_cells(combo: Combo | None) -> list[Any]:
    """A primary row's interval_low, interval_high and interval_method (empty without one)."""
    if combo is None or combo.interval is None:
        return ["", "", ""]
    return [combo.interval["low"], combo.interval["high"], combo.interval["method"]]


def label_versions(labels: dict[str, str]) -> tuple[dict[str, str], str | None]:
    """Package versions and the lock file's sha256 named by the image's labels."""
    versions: dict[str, str] = {}
    lock = None
    for key, value in sorted(labels.items()):
        tokens = set(re.split(r"[./_:-]", key.lower()))
        if "lock" in tokens and tokens & {"sha256", "digest", "hash"}:
            lock = value
        elif match := _VERSION_LABEL.search(key):
            versions[match.group("a") or match.group("b")] = value
    return versions, lock


def _sha256(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def manifest(run: Run, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Provenance of the run: what produced these numbers."""
    extra = extra or {}
    hosts: dict[str, Any] = {}
    images: dict[str, dict[str, Any]] = {}
    for host, facts in run.hosts.items():
        # host.json as roles/eval_run/tasks/collect.yml writes it ({} for a host without one).
        gpus = facts.get("gpu_facts_gpus") or []
        names = list(dict.fromkeys(str(g["name"]) for g in gpus))
        image_id = facts.get("image_id")
        labels = facts.get("image_labels") or {}
        hosts[host] = {
            "gpu_count": len(gpus),
            "gpu_model": ", ".join(names) or None,
            "gpus": gpus,
            "driver": facts.get("gpu_facts_driver_version") or None,
            "cuda": facts.get("gpu_facts_cuda_version") or None,
            "image_id": image_id,
        }
        if facts.get(HOST_PROBLEM):
            hosts[host][HOST_PROBLEM] = facts[HOST_PROBLEM]
        if image_id:
            images.setdefault(image_id, {"id": image_id, "labels": labels, "hosts": []})
            images[image_id]["hosts"].append(host)
    image = next(iter(images.values()), {}) if len(images) == 1 else {}
    versions, lock = label_versions(image.get("labels", {})) if image else ({}, None)
    inputs = dict(run.info.get("inputs", {}))
    return {
        "run_id": run.run_id,
        "smoke": run.smoke,
        "inputs": inputs,
        "started_at": run.info.get("started_at"),
        "finished_at": run.info.get("finished_at"),
        "wall_seconds": run_wall_seconds(run),
        "image": image or {"ids": sorted(images), "note": "hosts ran different images"},
        "images": list(images.values()),
        "versions": versions,
        "lock_sha256": lock,
        "project_commit": run.info.get("project_commit") or extra.get("project_commit"),
        "ansible_version": run.info.get("ansible_version") or extra.get("ansible_version"),
        "hosts": hosts,
        "totals": run.totals(),
        "model_times": model_times(run),
        "files_sha256": {
            name: _sha256(run.run_dir / name) for name in ("plan.json", "summary.json", "run.json")
        },
    }


def load_references(path: str | Path = DEFAULT_REFERENCES) -> dict[str, Any]:
    import yaml

    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or "reference_scores_figures" not in data:
        raise ReportError(f"{path}: no reference_scores_figures")
    return data


def catalogue_facts(catalogue: dict[str, Any] | None) -> Catalogue:
    """What the report reads of catalogue.yml's catalogue_benchmarks ({name: {kind, metric}}),
    catalogue_kinds ({kind: {metric}}) and catalogue_models ({name: {verified_here}}); empty
    without them."""
    benchmarks = (catalogue or {}).get("catalogue_benchmarks") or {}
    kinds = (catalogue or {}).get("catalogue_kinds") or {}
    models = (catalogue or {}).get("catalogue_models") or {}
    specs = {str(n): b for n, b in benchmarks.items() if isinstance(b, dict)}
    return Catalogue(
        kinds={n: b["kind"] for n, b in specs.items() if isinstance(b.get("kind"), str)},
        metrics={n: b["metric"] for n, b in specs.items() if isinstance(b.get("metric"), str)},
        kind_metrics={
            str(k): v["metric"]
            for k, v in kinds.items()
            if isinstance(v, dict) and isinstance(v.get("metric"), str)
        },
        verified={
            str(m): " ".join(v["verified_here"].split())
            for m, v in models.items()
            if isinstance(v, dict) and isinstance(v.get("verified_here"), str)
        },
    )


def load_catalogue(path: str | Path = DEFAULT_CATALOGUE) -> dict[str, Any]:
    import yaml

    if not Path(path).is_file():
        return {}
    return yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}


def resolve_compare(run_dir: Path, compare_to: str | None) -> Path | None:
    """A run id (sibling of run_dir) or a path; error names the runs that exist."""
    if not compare_to:
        return None
    candidate = Path(compare_to)
    if not candidate.is_dir():
        candidate = run_dir.resolve().parent / compare_to
    if (candidate / "summary.json").is_file():
        return candidate
    runs = sorted(
        p.name
        for p in run_dir.resolve().parent.iterdir()
        if (p / "summary.json").is_file() and not p.is_symlink()
    )
    raise ReportError(
        f"compare_to {compare_to!r}: no run with a summary.json at {candidate}; "
        f"runs there: {', '.join(runs) or 'none'}"
    )


def build_reports(
    run_dir: str | Path,
    references: dict[str, Any],
    compare_to: str | None = None,
    extra: dict[str, Any] | None = None,
    catalogue: dict[str, Any] | None = None,
) -> dict[str, str]:
    """The four report files of a run directory, as {file name: content}. `catalogue` holds
    catalogue.yml's catalogue_benchmarks and catalogue_kinds (each benchmark's kind and the
    plain name of its primary metric); without it, catalogue.yml is read."""
    from_catalogue = catalogue_facts(load_catalogue() if catalogue is None else catalogue)
    run = load_run(run_dir, from_catalogue)
    facts = manifest(run, extra)
    comparison = None
    other_dir = resolve_compare(Path(run_dir), compare_to)
    if other_dir is not None:
        other = load_run(other_dir, from_catalogue)
        deltas = compare_runs(run, other)
        comparison = (other.run_id, deltas)
        facts["compared_with"] = {
            "run_id": other.run_id,
            "changed": sum(1 for d in deltas if d.flagged),
            "test": "paired on the questions both runs answered, Holm across each model's "
            "benchmarks, p < 0.05",
        }
    secs = sections(run, references, facts, comparison)
    return {
        "scores.csv": scores_csv(run),
        "report.md": render_markdown(run, secs),
        "report.html": render_html(run, secs, heatmap_png(run)),
        "manifest.json": json.dumps(facts, indent=2) + "\n",
    }


def write_reports(run_dir: str | Path, files: dict[str, str]) -> list[str]:
    """Write atomically, only files whose content changed; returns the names written."""
    written = []
    for name, content in files.items():
        target = Path(run_dir) / name
        if target.is_file() and target.read_text(encoding="utf-8") == content:
            continue
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{name}.")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(content)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
        written.append(name)
    return written


def eval_report_files(
    run_dir: str,
    references: dict[str, Any],
    compare_to: str | None = None,
    extra: dict[str, Any] | None = None,
    catalogue: dict[str, Any] | None = None,
) -> dict[str, str]:
    """Filter form, `run_dir | eval_report_files(references, compare_to, extra, catalogue)`:
    build_reports, a ReportError raised as Ansible's filter error."""
    try:
        return build_reports(run_dir, references, compare_to or None, extra, catalogue)
    except ReportError as exc:
        from ansible.errors import AnsibleFilterError

        raise AnsibleFilterError(f"eval_report_files: {exc}") from exc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Regenerate scores.csv, report.md, report.html and manifest.json of a run "
        "directory from its summary.json (nothing is rerun)."
    )
    parser.add_argument("run_dir", help="results/<run_id> (or results/latest)")
    parser.add_argument(
        "--compare-to",
        help="run id beside run_dir, or a run directory: CHANGED marks a difference that the "
        "paired test on the questions both runs answered finds (Holm-adjusted), or a status change",
    )
    parser.add_argument("--references", default=str(DEFAULT_REFERENCES))
    parser.add_argument(
        "--catalogue",
        default=str(DEFAULT_CATALOGUE),
        help="catalogue.yml, for each benchmark's kind and the plain name of its primary metric",
    )
    args = parser.parse_args(argv)
    try:
        files = build_reports(
            args.run_dir,
            load_references(args.references),
            args.compare_to,
            catalogue=load_catalogue(args.catalogue),
        )
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    written = write_reports(args.run_dir, files)
    for name in REPORT_FILES:
        state = "written" if name in written else "unchanged"
        print(f"{Path(args.run_dir) / name}: {state}")
    return 0
