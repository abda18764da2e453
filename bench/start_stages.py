"""Where a slot's start goes, stage by stage, in one fresh process (as the worker starts):

    python3 bench/start_stages.py --checkpoint DIR [--device cuda] > stages.json

imports one after another (each stage's figure is what it adds to the ones before it), CUDA's
start, then the model load as the worker loads it (``llava_weights``). VLMEvalKit's own
subpackages are timed apart by ``python -X importtime`` (bench/device_length_mix.sh).
"""

from __future__ import annotations

import argparse
import importlib
import json
import time
from typing import Any

STAGES = (
    ("torch", "torch"),
    ("transformers (Llama)", "transformers.models.llama.modeling_llama"),
    ("llava", "llava.model.builder"),
    ("vlmeval", "vlmeval"),
    ("vlmfleet worker", "vlmfleet.worker"),
)


def stages(checkpoint: str, device: str) -> list[dict[str, Any]]:
    out = []
    for name, module in STAGES:
        start = time.perf_counter()
        importlib.import_module(module)
        out.append({"stage": f"import {name}", "seconds": round(time.perf_counter() - start, 2)})
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
    args = p.parse_args()
    start = time.perf_counter()
    result: dict[str, Any] = {"stages": stages(args.checkpoint, args.device)}
    result["total_seconds"] = round(time.perf_counter() - start, 2)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
