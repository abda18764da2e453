"""The validation step's filters: faces over the project collection's plugin_utils
(input_table.py: the table of eval.yml's inputs; inputs.py: the checks), where the code lives."""

from __future__ import annotations

from typing import Any

from ansible_collections.vlmfleet.shared.plugins.plugin_utils.input_table import (
    eval_given_inputs,
    eval_input_names,
    eval_recorded_inputs,
)
from ansible_collections.vlmfleet.shared.plugins.plugin_utils.inputs import (
    eval_check_inputs,
    eval_stored_run,
)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "eval_check_inputs": eval_check_inputs,
            "eval_given_inputs": eval_given_inputs,
            "eval_input_names": eval_input_names,
            "eval_recorded_inputs": eval_recorded_inputs,
            "eval_stored_run": eval_stored_run,
        }
