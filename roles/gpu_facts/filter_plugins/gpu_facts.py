"""Parse nvidia-smi output into the gpu_facts contract (see docs/architecture.md)."""

from __future__ import annotations

import re
from typing import Any

QUERY_FIELDS = ("index", "name", "memory.total", "uuid", "driver_version")
_CUDA_RE = re.compile(r"CUDA Version:\s*([0-9]+(?:\.[0-9]+)*)")


def parse_gpu_query(text: str) -> list[dict[str, Any]]:
    """Rows of `nvidia-smi --query-gpu=index,name,memory.total,uuid,driver_version
    --format=csv,noheader,nounits`, sorted by index. Raises ValueError on a malformed row,
    naming it, so a changed nvidia-smi format fails loudly instead of yielding zero GPUs."""
    gpus: list[dict[str, Any]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != len(QUERY_FIELDS):
            raise ValueError(
                f"unexpected nvidia-smi row {line!r}: want {len(QUERY_FIELDS)} fields "
                f"({', '.join(QUERY_FIELDS)})"
            )
        index, name, memory, uuid, driver = parts
        try:
            gpus.append(
                {
                    "index": int(index),
                    "name": name,
                    "memory_mib": int(float(memory)),
                    "uuid": uuid,
                    "driver_version": driver,
                }
            )
        except ValueError as exc:
            raise ValueError(f"unexpected nvidia-smi row {line!r}: {exc}") from exc
    return sorted(gpus, key=lambda g: g["index"])


def parse_cuda_version(text: str) -> str:
    """The 'CUDA Version: 12.4' of nvidia-smi's banner, or '' when absent."""
    match = _CUDA_RE.search(text or "")
    return match.group(1) if match else ""


def gpu_facts(query_stdout: str, query_rc: int, banner_stdout: str = "") -> dict[str, Any]:
    """The facts the role sets: present/count/gpus/driver/cuda."""
    gpus = parse_gpu_query(query_stdout) if query_rc == 0 else []
    driver = gpus[0]["driver_version"] if gpus else ""
    return {
        "gpu_facts_present": bool(gpus),
        "gpu_facts_count": len(gpus),
        "gpu_facts_gpus": [{k: v for k, v in g.items() if k != "driver_version"} for g in gpus],
        "gpu_facts_driver_version": driver,
        "gpu_facts_cuda_version": parse_cuda_version(banner_stdout) if gpus else "",
    }


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"gpu_facts_from_nvidia_smi": gpu_facts}
