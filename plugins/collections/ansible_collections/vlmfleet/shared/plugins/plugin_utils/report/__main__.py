"""Regenerate a run's reports without Ansible or rerunning anything:
``PYTHONPATH=plugins/collections python -m
ansible_collections.vlmfleet.shared.plugins.plugin_utils.report results/<run_id>
[--compare-to <run_id>]`` (``--help`` for the rest)."""

from __future__ import annotations

import sys

from ansible_collections.vlmfleet.shared.plugins.plugin_utils.report.files import main

sys.exit(main())
