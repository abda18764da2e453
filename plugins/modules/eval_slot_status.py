#!/usr/bin/python
"""Ansible module: progress of a run's worker slots on one host (read-only)."""

from __future__ import annotations

import json
import os
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.vlmfleet.shared.plugins.module_utils.contract import (
    PROGRESS_FILE,
    RUNNING_STATES,
    SLOT_FILE,
    host_records,
    host_shard_records,
    read_json,
    slot_total,
)

DOCUMENTATION = r"""
---
module: eval_slot_status
short_description: Report the progress of eval.yml's worker containers on a host
description:
  - Reads each slot's C(slot-progress.json) (written by the worker after every combination)
    and the state of the slot's container, and sums them into C(eval_progress).
  - Optionally returns the host's status records (C(<run_dir>/<model>/<benchmark>/status.json)),
    which eval.yml uses to resume a run without redoing finished combinations.
  - Changes nothing; supports check mode.
options:
  run_dir:
    description: The host's run directory, C(<eval_dirs_root>/outputs/<run_id>/<host>).
    type: path
    required: true
  slots:
    description: The slots to report, each with its container name.
    type: list
    elements: dict
    default: []
    suboptions:
      slot:
        description: Slot name (a directory under I(run_dir)).
        type: str
        required: true
      container:
        description: Name of the slot's container; omitted means no container is looked up.
        type: str
  records:
    description: Also return the status records found under I(run_dir).
    type: bool
    default: false
  docker_cli:
    description: The docker client used to read container states.
    type: str
    default: docker
author: vlm-fleet
"""

EXAMPLES = r"""
- name: Wait for the workers
  eval_slot_status:
    run_dir: /srv/vlm-eval/outputs/20261127T020000Z/gpu-01
    slots:
      - {slot: gpu0, container: vlm-eval-20261127T020000Z-gpu-01-gpu0}
  register: poll
  until: poll.finished
  retries: 720
  delay: 10
"""

RETURN = r"""
finished:
  description: True when no slot's container is still running (created, running, restarting).
  type: bool
  returned: always
eval_progress:
  description: Progress over all slots of the host.
  type: dict
  returned: always
  contains:
    done: {description: Combinations finished (ok or failed), type: int}
    total: {description: Combinations planned on this host, type: int}
    failed: {description: Combinations whose record says failed, type: int}
    current: {description: "What runs now, C(slot: model/benchmark) joined by C(; )", type: str}
    started_at: {description: Earliest start of the slots' containers (ISO 8601) or null, type: str}
    slots:
      description: Per slot, C(slot), C(container), C(state) (running, exited, missing...),
        C(exit_code), C(oom_killed) (Docker's State.OOMKilled, true when the kernel's out-of-memory
        killer ended it), C(error), C(started_at), C(done), C(total), C(current), C(updated_at).
      type: list
      elements: dict
records:
  description: The status records under I(run_dir) (only with I(records=true)), and the shard
    records of sharded benchmarks (C(<model>/<benchmark>/shards/<k>-of-<n>/status.json), each
    with its C(shard)); one that breaks the contract comes back as a failed record naming the
    file and the problem.
  type: list
  elements: dict
  returned: when records is true
"""


def count(value: Any) -> int:
    """A count from a progress file: a non-negative whole number, else 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def container_state(module: AnsibleModule, docker: str, name: str) -> dict[str, Any]:
    """A container's state, exit_code, oom_killed, error and started_at; state 'missing' when it
    does not exist."""
    found: dict[str, Any] = {"state": "missing", "exit_code": None, "oom_killed": False}
    found |= {"error": "", "started_at": None}
    rc, out, err = module.run_command([docker, "inspect", "--type", "container", name])
    if rc != 0:
        if "no such" in (err + out).lower():
            return found
        return found | {"state": "unknown", "error": (err or out).strip()}
    try:
        state = json.loads(out)[0]["State"]
    except (ValueError, KeyError, IndexError, TypeError):
        return found | {"state": "unknown", "error": "unreadable docker inspect output"}
    started = state.get("StartedAt")
    # Docker's zero time means "never started".
    started = started if started and not started.startswith("0001-") else None
    return {
        "state": str(state.get("Status", "unknown")),
        "exit_code": state.get("ExitCode"),
        "oom_killed": bool(state.get("OOMKilled")),
        "error": str(state.get("Error") or ""),
        "started_at": started,
    }


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "run_dir": {"type": "path", "required": True},
            "slots": {
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": {
                    "slot": {"type": "str", "required": True},
                    "container": {"type": "str"},
                },
            },
            "records": {"type": "bool", "default": False},
            "docker_cli": {"type": "str", "default": "docker"},
        },
        supports_check_mode=True,
    )
    run_dir = module.params["run_dir"]
    docker = None
    if any(s.get("container") for s in module.params["slots"]):
        docker = module.get_bin_path(module.params["docker_cli"], required=True)

    slots_out = []
    for spec in module.params["slots"]:
        slot_dir = os.path.join(run_dir, spec["slot"])
        progress = read_json(os.path.join(slot_dir, PROGRESS_FILE))
        # For the display only: a torn or edited file counts as no progress, never a traceback
        # that would end the wait while the workers run on.
        progress = progress if isinstance(progress, dict) else {}
        progress = {
            "done": count(progress.get("done")),
            "total": count(progress.get("total")),
            "current": progress.get("current")
            if isinstance(progress.get("current"), str)
            else None,
            "updated_at": progress.get("updated_at"),
        }
        total = progress["total"] or slot_total(read_json(os.path.join(slot_dir, SLOT_FILE)))
        found: dict[str, Any] = {"state": "missing", "exit_code": None, "oom_killed": False}
        found |= {"error": "", "started_at": None}
        if spec.get("container") and docker:
            found = container_state(module, docker, spec["container"])
        slots_out.append(
            {
                "slot": spec["slot"],
                "container": spec.get("container"),
                **found,
                "done": int(progress.get("done") or 0),
                "total": int(total or 0),
                "current": progress.get("current") if found["state"] in RUNNING_STATES else None,
                "updated_at": progress.get("updated_at"),
            }
        )
    # A sharded benchmark's shard records (they carry their shard) beside the benchmarks' own.
    records = host_records(run_dir) + host_shard_records(run_dir)
    result: dict[str, Any] = {
        "changed": False,
        "finished": not any(s["state"] in RUNNING_STATES for s in slots_out),
        "eval_progress": {
            # outputs/<run_id>/<host>: the run the eval_progress callback names if the play is
            # interrupted while these workers run.
            "run_id": os.path.basename(os.path.dirname(os.path.normpath(run_dir))),
            "done": sum(s["done"] for s in slots_out),
            "total": sum(s["total"] for s in slots_out),
            "failed": sum(1 for r in records if r.get("status") == "failed"),
            "started_at": min(
                (s["started_at"] for s in slots_out if s["started_at"]), default=None
            ),
            "current": "; ".join(f"{s['slot']}: {s['current']}" for s in slots_out if s["current"]),
            "slots": slots_out,
        },
    }
    if module.params["records"]:
        result["records"] = records
    module.exit_json(**result)


if __name__ == "__main__":
    main()
