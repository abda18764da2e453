"""A sharded benchmark: its parts, their names and how a part is written in a slot file."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .errors import ContractError

# A sharded benchmark: its rows (after the sample limit, in row order) split into ``count``
# contiguous parts; each part is a combination of its own, with a shard record in
# <model>/<benchmark>/shards/<index + 1>-of-<count>/. Once every shard of one count is ok, one
# host merges their predictions in row order and evaluates them once: its merge slot file
# (slot MERGE_SLOT, never a GPU slot's name) lists those benchmarks, its record is the
# benchmark's usual one, with the shards listed (SHARDS_KEY).
SHARDS_DIR = "shards"
MERGE_SLOT = "merge"
SHARD_KEY = "shard"
SHARDS_KEY = "shards"
_SHARD_NAME = re.compile(r"^([1-9][0-9]*)-of-([1-9][0-9]*)$")


@dataclass(frozen=True)
class Shard:
    """Part ``index`` (0-based) of ``count`` of a benchmark's rows."""

    index: int
    count: int

    @property
    def name(self) -> str:
        return f"{self.index + 1}-of-{self.count}"

    def positions(self, total: int) -> range:
        """Which of ``total`` rows (positions in row order) this shard runs: contiguous parts
        whose sizes differ by at most one, so the shards in index order are the rows in order."""
        return range(total * self.index // self.count, total * (self.index + 1) // self.count)

    def as_dict(self) -> dict[str, int]:
        return {"index": self.index, "count": self.count}


def parse_shard(data: Any, where: str) -> Shard:
    if not isinstance(data, dict) or set(data) != {"index", "count"}:
        raise ContractError(f"{where}: shard must be an object with index and count, got {data!r}")
    index, count = data["index"], data["count"]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (index, count)):
        raise ContractError(f"{where}: shard index and count must be integers, got {data!r}")
    if count < 2 or not 0 <= index < count:
        raise ContractError(
            f"{where}: shard needs count >= 2 and 0 <= index < count, got {index} of {count}"
        )
    return Shard(index, count)


def shard_from_name(name: str) -> Shard | None:
    """The shard a folder name <k>-of-<n> names, or None."""
    found = _SHARD_NAME.match(name)
    if not found or not 1 <= int(found[1]) <= int(found[2]) or int(found[2]) < 2:
        return None
    return Shard(int(found[1]) - 1, int(found[2]))
