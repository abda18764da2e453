"""Reports of a finished run (scores.csv, report.md, report.html, manifest.json): ``data``
reads a run directory, ``render`` draws report.md and report.html, ``files`` builds and writes
the four files (the filter eval_report_files and the command line,
``python -m ansible_collections.vlmfleet.shared.plugins.plugin_utils.report``). This module is
the face: what the filter, the command line and the tests use."""

from __future__ import annotations

from ansible_collections.vlmfleet.shared.plugins.plugin_utils.report.data import (
    ReportError,
    compare_runs,
    load_run,
    percent,
)
from ansible_collections.vlmfleet.shared.plugins.plugin_utils.report.files import (
    REPORT_FILES,
    build_reports,
    eval_report_files,
    label_versions,
    load_references,
    main,
    write_reports,
)

__all__ = [
    "REPORT_FILES",
    "ReportError",
    "build_reports",
    "compare_runs",
    "eval_report_files",
    "label_versions",
    "load_references",
    "load_run",
    "main",
    "percent",
    "write_reports",
]
