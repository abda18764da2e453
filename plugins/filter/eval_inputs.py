"""The validation step's filters: faces over the project collection's plugin_utils
(input_table.py: the table of eval.yml's inputs; inputs.py: the checks), where the code lives;
each imports it when first called (plugin_utils/filter_faces.py says why)."""

from __future__ import annotations

from typing import Any

from ansible_collections.vlmfleet.shared.plugins.plugin_utils.filter_faces import lazy_filters


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return lazy_filters(
            "input_table", ("eval_given_inputs", "eval_input_names", "eval_recorded_inputs")
        ) | lazy_filters("inputs", ("eval_check_inputs", "eval_stored_run"))
