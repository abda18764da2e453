"""The reports' filter, eval_report_files: a face over the project collection's
plugin_utils/report (ansible_collections.vlmfleet.shared.plugins.plugin_utils.report), where
the code lives. Its command line:
`PYTHONPATH=plugins/collections python -m
ansible_collections.vlmfleet.shared.plugins.plugin_utils.report results/<run_id>`
(running this file with the same PYTHONPATH does the same)."""

from __future__ import annotations

import sys
from typing import Any

from ansible_collections.vlmfleet.shared.plugins.plugin_utils.filter_faces import lazy_filters


class FilterModule:
    """`run_dir | eval_report_files(references, compare_to, extra, catalogue)`, imported when
    first called (plugin_utils/filter_faces.py says why)."""

    def filters(self) -> dict[str, Any]:
        return lazy_filters("report", ("eval_report_files",))


if __name__ == "__main__":
    from ansible_collections.vlmfleet.shared.plugins.plugin_utils.report import main

    sys.exit(main())
