"""The contract's one error: a file of a run that does not follow it."""

from __future__ import annotations


class ContractError(ValueError):
    """A file of the run does not follow this contract; the message names the file and field."""
