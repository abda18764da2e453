"""Live progress of an evaluation run: one compact line per host per poll. The code lives in
the project collection's plugin_utils/progress.py
(ansible_collections.vlmfleet.shared.plugins.plugin_utils.progress)."""

from __future__ import annotations

from ansible_collections.vlmfleet.shared.plugins.plugin_utils.progress import CallbackModule

DOCUMENTATION = """
name: eval_progress
type: aggregate
short_description: one line of evaluation progress per host per poll
description:
  - For task results that carry an C(eval_progress) dictionary (the polling task of eval.yml),
    prints one line per host on every poll and on the final result - combinations done/total,
    the combination running now per slot, elapsed time and an estimate of the time left from
    the rate so far. Other tasks print nothing.
  - C(eval_progress) is C({done, total, current, slots, started_at}) as the
    eval_slot_status module returns it; C(slots) is a list of C({slot, done, total, current,
    state}). A resumed run's slots count only the combinations still to run. Without
    C(started_at) (ISO 8601) the clock and the rate start at the first poll seen, so
    combinations finished before it do not make the estimate optimistic.
    A list of such dictionaries (each with C(host)) gives one line per host.
  - A play that stops while the last poll of some host found its workers running (Ctrl-C
    or a signal to ansible-playbook, after which Ansible prints only that the user interrupted
    it) ends with a note naming the run (C(eval_progress.run_id)), saying that its workers run
    on and that a rerun with the same run_id once they have finished collects them and runs
    only what is missing.
requirements:
  - enable it in ansible.cfg, C(callbacks_enabled = eval_progress)
"""

__all__ = ["DOCUMENTATION", "CallbackModule"]
