"""Where a slot's start goes, stage by stage, in one fresh process (as the worker starts):

    python3 bench/start_stages.py --checkpoint DIR [--device cuda] > stages.json

imports one after another (each stage's figure is what it adds to the ones before it), CUDA's
start, then the model load as the worker loads it (``llava_weights``). VLMEvalKit is imported as a
slot imports it: its model table (``vlmeval.config``, as ``vlmfleet.stack.import_stack``), then
the dataset class of each of the default matrix's benchmarks (``DATASET_TYPE``, which the
image's lazy ``vlmeval.dataset`` answers by importing that class's module, and the original by
its one import of every dataset module). With VLMEvalKit as released, its whole import falls in
the first of the two; with the image's patch (``patches/patch_vlmeval_lazy.py``, also applied to a
``pip install --target`` folder by naming it) the two add up to what is left of it. The result
says which it was (``vlmeval_lazy``) and how many dataset modules the imports left loaded.
VLMEvalKit's own subpackages are timed apart by ``python -X importtime``
(bench/device_length_mix.sh).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

CATALOGUE = Path(__file__).resolve().parent.parent / "playbooks" / "vars" / "catalogue.yml"


def default_benchmarks() -> list[str]:
    """The catalogue's ``catalogue_default_benchmarks`` (a plain YAML list, read without PyYAML,
    which the GPU machine's wheels may lack)."""
    names: list[str] = []
    lines = iter(CATALOGUE.read_text(encoding="utf-8").splitlines())
    for line in lines:
        if line.startswith("catalogue_default_benchmarks:"):
            for item in lines:
                if not item.startswith("  - "):
                    break
                names.append(item[4:].strip())
    if not names:
        raise SystemExit(f"no catalogue_default_benchmarks list in {CATALOGUE}")
    return names


def imported(module: str) -> Callable[[], None]:
    def step() -> None:
        importlib.import_module(module)

    return step


def dataset_classes(benchmarks: list[str]) -> Callable[[], None]:
    def look_up() -> None:
        from vlmeval.dataset import DATASET_TYPE

        for name in benchmarks:
            DATASET_TYPE(name)

    return look_up


def stages(checkpoint: str, device: str, benchmarks: list[str]) -> list[dict[str, Any]]:
    steps = (
        ("import torch", imported("torch")),
        ("import transformers (Llama)", imported("transformers.models.llama.modeling_llama")),
        ("import llava", imported("llava.model.builder")),
        ("import vlmeval.config (supported_VLM)", imported("vlmeval.config")),
        (f"vlmeval dataset classes ({len(benchmarks)} benchmarks)", dataset_classes(benchmarks)),
        ("import vlmfleet worker", imported("vlmfleet.worker")),
    )
    out = []
    for name, step in steps:
        start = time.perf_counter()
        step()
        out.append({"stage": name, "seconds": round(time.perf_counter() - start, 2)})
    import torch

    if device == "cuda":
        start = time.perf_counter()
        torch.zeros(1, device="cuda")
        out.append({"stage": "CUDA start", "seconds": round(time.perf_counter() - start, 2)})
    from vlmfleet.families.llava_weights import load_weights

    start = time.perf_counter()
    load_weights(checkpoint, device)
    if device == "cuda":
        torch.cuda.synchronize()
    out.append({"stage": "load", "seconds": round(time.perf_counter() - start, 2)})
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cuda")
    p.add_argument(
        "--benchmarks", nargs="+", default=None, help="default: the catalogue's default matrix"
    )
    args = p.parse_args()
    start = time.perf_counter()
    benchmarks = args.benchmarks or default_benchmarks()
    result: dict[str, Any] = {"stages": stages(args.checkpoint, args.device, benchmarks)}
    result["total_seconds"] = round(time.perf_counter() - start, 2)
    import vlmeval.dataset

    # The image's patched package answers dataset_class; the released one has no such name.
    result["vlmeval_lazy"] = "dataset_class" in vars(vlmeval.dataset)
    result["vlmeval_dataset_modules_loaded"] = sum(
        1 for m in sys.modules if m.startswith("vlmeval.dataset.")
    )
    result["torchvision_loaded"] = "torchvision" in sys.modules
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
