"""The preflight filters: faces over the project collection's plugin_utils/preflight.py
(ansible_collections.vlmfleet.shared.plugins.plugin_utils.preflight), where the code lives;
each imports it when first called (plugin_utils/filter_faces.py says why)."""

from __future__ import annotations

from typing import Any

from ansible_collections.vlmfleet.shared.plugins.plugin_utils.filter_faces import lazy_filters


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return lazy_filters(
            "preflight",
            {
                "eval_gpu_free_mib": "gpu_free_mib",
                "eval_slots_short_of_memory": "slots_short_of_memory",
                "eval_judged_benchmarks": "judged_benchmarks",
                "eval_label_problems": "label_problems",
                "eval_model_repos": "model_repos",
                "eval_hub_settings": "hub_settings",
                "eval_weights_unobtainable": "weights_unobtainable",
                "eval_gated_models": "gated_models",
                "eval_data_files": "data_files",
                "eval_data_need": "data_need",
            },
        )
