"""The planner's filters: faces over the project collection's plugin_utils/plan
(ansible_collections.vlmfleet.shared.plugins.plugin_utils.plan), where the code lives; each
imports it when first called (plugin_utils/filter_faces.py says why)."""

from __future__ import annotations

from typing import Any

from ansible_collections.vlmfleet.shared.plugins.plugin_utils.filter_faces import lazy_filters


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return lazy_filters(
            "plan",
            (
                "eval_plan",
                "eval_host_units",
                "eval_slot_containers",
                "eval_limits_text",
                "eval_merges",
                "eval_prepare_container",
                "eval_official_benchmarks",
                "eval_container_labels",
                "eval_run_label",
                "eval_container_env",
                "eval_container_spec",
                "eval_ended_containers",
                "eval_consoles",
            ),
        )
