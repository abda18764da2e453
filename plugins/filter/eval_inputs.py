"""The validation step's filter: a face over the project collection's plugin_utils/inputs.py
(ansible_collections.vlmfleet.shared.plugins.plugin_utils.inputs), where the code lives."""

from __future__ import annotations

from typing import Any

from ansible_collections.vlmfleet.shared.plugins.plugin_utils.inputs import (
    eval_check_inputs,
    eval_stored_run,
)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"eval_check_inputs": eval_check_inputs, "eval_stored_run": eval_stored_run}
