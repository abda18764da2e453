#!/opt/venv/bin/python
"""vlm-verify: prove this image can do its job (run at build time and on every host).

Checks, each printed as one line; exit 0 only when all pass:
  versions   every package of requirements.lock is installed at exactly its locked version
  llava      LlavaLlamaForCausalLM imports (the patched llava/model/__init__.py surfaces errors)
  no-flash   flash_attn is not installed and transformers does not see it
  vlmeval    VLMEvalKit imports and registers the default matrix's models and benchmarks
  tiny-llava a tiny real-format LLaVA-1.5 checkpoint (random weights, built here) loads through
             llava.model.builder.load_pretrained_model, uses SDPA attention, generates on CPU
  dirs       (--quick and full) /cache and /workspace/outputs are writable by this user

--quick runs versions and dirs only (the HEALTHCHECK). The last line is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import metadata, util
from pathlib import Path

LOCK_FILE = Path(os.environ.get("VLM_LOCK_FILE", "/opt/vlm-image/requirements.lock"))
# The default matrix this image is promised to run (VLMEvalKit names): these models and the
# benchmarks of vlmfleet.known_answer_checkpoints.DEFAULT_BENCHMARKS (the image's one list of
# them, the known-answer checkpoints' training set); the project's catalogue may add more, and
# callers pass them with --model/--benchmark.
DEFAULT_MODELS = ("llava_v1.5_7b", "llava_v1.5_13b")


class CheckFailed(Exception):
    pass


def locked_versions(lock: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in lock.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "--")) and "==" in line:
            name, _, rest = line.partition("==")
            pins[name.strip()] = rest.split()[0].rstrip("\\").strip().split(";")[0]
    if not pins:
        raise CheckFailed(f"no pinned packages found in {lock}")
    return pins


def check_versions(expect: dict[str, str]) -> str:
    pins = locked_versions(LOCK_FILE)
    drift = {k: (v, pins.get(k)) for k, v in expect.items() if pins.get(k) != v}
    if drift:
        raise CheckFailed(f"expected versions differ from the lock (expected, locked): {drift}")
    wrong = []
    for name, want in sorted(pins.items()):
        try:
            got = metadata.version(name)
        except metadata.PackageNotFoundError:
            got = "missing"
        if got != want:
            wrong.append(f"{name} {got} (locked {want})")
    if wrong:
        raise CheckFailed("; ".join(wrong))
    import tokenizers
    import torch
    import torchvision
    import transformers

    runtime = {
        "torch": torch.__version__.split("+")[0],
        "torchvision": torchvision.__version__.split("+")[0],
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
    }
    bad = {k: v for k, v in runtime.items() if pins.get(k) != v}
    if bad:
        raise CheckFailed(f"imported versions differ from the lock: {bad}")
    return f"{len(pins)} packages as locked; " + ", ".join(f"{k} {v}" for k, v in runtime.items())


def check_llava() -> str:
    from llava.model import LlavaLlamaForCausalLM

    return f"{LlavaLlamaForCausalLM.__module__}.{LlavaLlamaForCausalLM.__name__}"


def check_no_flash() -> str:
    from transformers.utils import is_flash_attn_2_available

    if util.find_spec("flash_attn") is not None:
        raise CheckFailed("flash_attn is installed; this image must not ship it")
    if is_flash_attn_2_available():
        raise CheckFailed("transformers reports flash-attention 2 available")
    return "flash_attn absent"


def check_vlmeval(models: list[str], benchmarks: list[str]) -> str:
    from vlmeval.config import supported_VLM
    from vlmeval.dataset import SUPPORTED_DATASETS

    missing_m = [m for m in models if m not in supported_VLM]
    missing_b = [b for b in benchmarks if b not in SUPPORTED_DATASETS]
    if missing_m or missing_b:
        raise CheckFailed(
            f"not registered in VLMEvalKit: models {missing_m}, benchmarks {missing_b}"
        )
    return f"{metadata.version('ms-vlmeval')}: {len(models)} models, {len(benchmarks)} benchmarks"


def check_tiny_llava() -> str:
    import torch
    from llava.constants import IMAGE_TOKEN_INDEX
    from llava.mm_utils import process_images, tokenizer_image_token
    from llava.model.builder import load_pretrained_model
    from PIL import Image
    from vlmfleet.tiny_checkpoint import build_tiny_llava

    with tempfile.TemporaryDirectory(prefix="vlm-verify-") as tmp:
        ckpt = build_tiny_llava(Path(tmp) / "tiny-llava-v1.5", seed=0)
        t0 = time.monotonic()
        tokenizer, model, processor, _ = load_pretrained_model(
            str(ckpt), None, ckpt.name, device_map="cpu", device="cpu"
        )
        load_s = time.monotonic() - t0
        attn = model.config._attn_implementation
        layer_attn = type(model.get_model().layers[0].self_attn).__name__
        if attn != "sdpa" or "Sdpa" not in layer_attn:
            raise CheckFailed(f"Llama attention is {attn!r} ({layer_attn}), expected 'sdpa'")
        # The builder loads float16 even on CPU, where CLIP's conv has no Half kernel.
        model.to(torch.float32)
        model.get_vision_tower().to(torch.float32)
        image = Image.new("RGB", (80, 60), (200, 30, 30))
        images = process_images([image], processor, model.config).to(torch.float32)
        prompt = "USER: <image>\nWhat is the color of the shape? ASSISTANT:"
        ids = tokenizer_image_token(prompt, tokenizer, IMAGE_TOKEN_INDEX, return_tensors="pt")
        t0 = time.monotonic()
        with torch.inference_mode():
            out = model.generate(
                ids.unsqueeze(0),
                images=images,
                image_sizes=[image.size],
                do_sample=False,
                max_new_tokens=4,
                use_cache=True,
            )
        gen_s = time.monotonic() - t0
        if out.shape[-1] < 1:
            raise CheckFailed("generate returned no tokens")
    return f"loaded {load_s:.2f}s, generated {out.shape[-1]} tokens {gen_s:.2f}s, attention {attn}"


def check_known_answer() -> str:
    from vlmfleet.known_answer_checkpoints import SKILLS, spot_check

    return "; ".join(spot_check(skill) for skill in SKILLS)


def check_dirs() -> str:
    for d in (os.environ.get("HF_HOME", "/cache"), "/workspace/outputs"):
        if not os.access(d, os.W_OK):
            raise CheckFailed(f"{d} is not writable by uid {os.getuid()}")
    return f"writable by uid {os.getuid()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vlm-verify", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="versions and dirs only")
    parser.add_argument("--model", action="append", default=[], help="also require this model")
    parser.add_argument("--benchmark", action="append", default=[], help="also require this")
    parser.add_argument(
        "--expect",
        action="append",
        default=[],
        metavar="NAME=VERSION",
        help="also require this exact package version (the image labels' versions)",
    )
    parser.add_argument("--skip-dirs", action="store_true", help="at build time: no volumes yet")
    args = parser.parse_args(argv)

    expect = dict(item.split("=", 1) for item in args.expect if "=" in item)
    bad = [item for item in args.expect if "=" not in item]
    if bad:
        parser.error(f"--expect takes NAME=VERSION, got {bad}")
    checks: list[tuple[str, Callable[[], str]]] = [("versions", lambda: check_versions(expect))]
    if not args.quick:
        from vlmfleet.known_answer_checkpoints import DEFAULT_BENCHMARKS

        models = list(dict.fromkeys([*DEFAULT_MODELS, *args.model]))
        benchmarks = list(dict.fromkeys([*DEFAULT_BENCHMARKS, *args.benchmark]))
        checks += [
            ("llava", check_llava),
            ("no-flash", check_no_flash),
            ("vlmeval", lambda: check_vlmeval(models, benchmarks)),
            ("tiny-llava", check_tiny_llava),
            ("known-answer", check_known_answer),
        ]
    if not args.skip_dirs:
        checks.append(("dirs", check_dirs))

    results: dict[str, str] = {}
    failed: list[str] = []
    for name, fn in checks:
        start = time.monotonic()
        try:
            detail = fn()
            print(f"ok     {name} ({time.monotonic() - start:.1f}s): {detail}", flush=True)
            results[name] = "ok"
        except Exception as err:  # every failure is reported, then the exit code says it
            print(f"FAILED {name}: {type(err).__name__}: {err}", flush=True)
            results[name] = "failed"
            failed.append(name)
    print(json.dumps({"vlm_verify": "failed" if failed else "ok", "checks": results}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
