"""Load llava-family models by their hub ids, offline, inside the image.

Runs in the evaluation image (tests/e2e/test_hub_ids_offline.py starts it with an HF cache laid
out as the hub lays it out, HF_HUB_OFFLINE=1, no network, and the repository's worker package
mounted over the image's):

    python tests/e2e/in_image_hub_load.py --local /ckpt/llava-known-weak MODEL=HF_REPO...

Each MODEL (a catalogue name of the llava family) is loaded the way a real (non-smoke) CPU
slot loads it: ``vlmfleet.families.family("llava").load(unit, slot)``, its unit carrying the
catalogue's HF_REPO as the planner writes it, so the weights load while VLMEvalKit is imported,
VLMEvalKit's ``supported_VLM`` entry must name the same hub id, and LLaVA's builder resolves
it, and its vision tower, from the cache. The checkpoint at ``--local`` is loaded by path as
well. Each prints one line ``IN_IMAGE_HUB_LOAD {json}``: model, model_path (what VLMEvalKit
passed), name_or_path (what transformers loaded), tower (the vision tower's name), snapshot
(where the cache resolved the model's config.json) and answer (to one image and question,
greedy).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

MARKER = "IN_IMAGE_HUB_LOAD "
QUESTION = "What colour is the shape in the picture?"


def picture(folder: Path) -> str:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (336, 336), "white")
    ImageDraw.Draw(image).rectangle((80, 80, 250, 250), fill="red")
    path = folder / "red-square.png"
    image.save(path)
    return str(path)


def report(name: str, model_path: str, model: object, image: str) -> None:
    from huggingface_hub import try_to_load_from_cache

    answer = model.generate(  # type: ignore[attr-defined]
        [{"type": "image", "value": image}, {"type": "text", "value": QUESTION}]
    )
    net = model.model  # type: ignore[attr-defined]
    hub_id = not model_path.startswith("/")
    snapshot = try_to_load_from_cache(model_path, "config.json") if hub_id else None
    line = {
        "model": name,
        "model_path": model_path,
        "name_or_path": net.config._name_or_path,
        "tower": net.get_vision_tower().vision_tower_name,
        "snapshot": snapshot if isinstance(snapshot, str) else None,
        "answer": answer,
    }
    print(MARKER + json.dumps(line), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--local", required=True, help="the same checkpoint, by path")
    parser.add_argument("models", nargs="+", help="MODEL=HF_REPO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)

    from vlmeval.config import supported_VLM
    from vlmfleet.contract import Slot, Unit
    from vlmfleet.families import family
    from vlmfleet.families.llava_wrapper import DeviceLLaVA

    image = picture(Path(tempfile.mkdtemp()))
    for item in args.models:
        name, repo = item.split("=", 1)
        unit = Unit(model=name, family="llava", benchmarks=(), hf_repo=repo)
        slot = Slot(
            run_id="hub",
            host="localhost",
            slot="cpu0",
            device="cpu",
            smoke=False,
            limit=None,
            judge="exact_matching",
            units=(unit,),
            max_new_tokens=8,
        )
        model = family("llava").load(unit, slot)
        report(name, supported_VLM[name].keywords["model_path"], model, image)
    local = DeviceLLaVA(model_path=args.local, device="cpu", max_new_tokens=8)
    report("local", args.local, local, image)
    return 0


if __name__ == "__main__":
    sys.exit(main())
