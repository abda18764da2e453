"""The gpu_facts role's nvidia-smi parser (roles/gpu_facts/filter_plugins)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[3] / "roles/gpu_facts/filter_plugins/gpu_facts.py"
_spec = importlib.util.spec_from_file_location("gpu_facts_filter", _PATH)
assert _spec and _spec.loader
gf = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gf)

QUERY = (
    "1, NVIDIA H100 80GB HBM3, 81559, GPU-bbbb, 550.54.15\n"
    "0, NVIDIA H100 80GB HBM3, 81559, GPU-aaaa, 550.54.15\n"
)
BANNER = "| NVIDIA-SMI 550.54.15    Driver Version: 550.54.15    CUDA Version: 12.4     |"


def test_two_gpus_sorted_with_driver_and_cuda() -> None:
    facts = gf.gpu_facts(QUERY, 0, BANNER)
    assert facts["gpu_facts_present"] is True
    assert facts["gpu_facts_count"] == 2
    assert facts["gpu_facts_gpus"][0] == {
        "index": 0,
        "name": "NVIDIA H100 80GB HBM3",
        "memory_mib": 81559,
        "uuid": "GPU-aaaa",
    }
    assert facts["gpu_facts_driver_version"] == "550.54.15"
    assert facts["gpu_facts_cuda_version"] == "12.4"


def test_absent_nvidia_smi_means_no_gpu() -> None:
    facts = gf.gpu_facts("", 2, "")
    assert facts == {
        "gpu_facts_present": False,
        "gpu_facts_count": 0,
        "gpu_facts_gpus": [],
        "gpu_facts_driver_version": "",
        "gpu_facts_cuda_version": "",
    }


def test_driver_error_output_is_not_parsed_as_gpus() -> None:
    msg = "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."
    assert gf.gpu_facts(msg, 9, "")["gpu_facts_present"] is False


def test_malformed_row_names_itself() -> None:
    with pytest.raises(ValueError, match="unexpected nvidia-smi row 'garbage'"):
        gf.parse_gpu_query("garbage\n")


def test_cuda_version_absent_is_empty() -> None:
    assert gf.parse_cuda_version("no banner here") == ""
