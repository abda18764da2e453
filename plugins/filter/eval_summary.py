"""The summary's and resume's filters: faces over the project collection's plugin_utils/summary.py
(ansible_collections.vlmfleet.shared.plugins.plugin_utils.summary), where the code lives; each
imports it when first called (plugin_utils/filter_faces.py says why)."""

from __future__ import annotations

from typing import Any

from ansible_collections.vlmfleet.shared.plugins.plugin_utils.filter_faces import lazy_filters


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return lazy_filters(
            "summary",
            {
                "eval_summary": "eval_summary",
                "eval_done_combinations": "eval_done_combinations",
                "eval_done_shards": "eval_done_shards",
                "eval_controller_shard_records": "eval_controller_shard_records",
                "eval_controller_records": "eval_controller_records",
                "eval_lost_hosts": "eval_lost_hosts",
                "eval_records_to_restore": "eval_records_to_restore",
                "eval_combination_line": "combination_line",
            },
        )
