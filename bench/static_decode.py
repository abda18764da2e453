"""The product's static decoder (``vlmfleet.families.llava_static``) against ``generate``.

    python bench/static_decode.py --check --checkpoint DIR [--device cpu] [--new-tokens 1 5 10 150]

checks that, on a batch of prompts of different lengths (left padding), the rows are
token-identical to ``model.generate``'s, eager and (on CUDA) with the graph, with eos banned
(``min_new_tokens`` = the count) and allowed (rows may end, and the loop stop, early); exit 1
names the rows that differ.
"""

from __future__ import annotations

import argparse
import json
from argparse import Namespace
from types import SimpleNamespace
from typing import Any

import torch

# --- the check ---------------------------------------------------------------------------

# Questions of different lengths, so that the batch is left-padded.
CHECK_QUESTIONS = (
    "What is the color of the shape?",
    "Is there a circle in the image? Please answer yes or no.",
    "How many objects are there?",
    "Which option is correct? Options: A. red B. green C. blue D. yellow Answer with the "
    "option's letter from the given choices directly.",
)
CHECK_IMAGES = (
    ((380, 300), (200, 40, 40)),
    ((224, 224), (40, 200, 40)),
    ((300, 500), (40, 40, 200)),
)


def disable_cudnn_sdpa() -> None:
    """SDPA without its cuDNN backend, for generate and this decoder alike: torch 2.1 has none,
    later ones pick it on Hopper, and it has had mask and graph-capture failures of its own."""
    if hasattr(torch.backends.cuda, "enable_cudnn_sdp"):
        torch.backends.cuda.enable_cudnn_sdp(False)


def load(checkpoint: str, device: str) -> tuple[Any, Any, Any]:
    """Tokenizer, model and image processor as the worker loads them (``llava_weights``), the
    model set for left-padded batches."""
    from vlmfleet.families.llava_weights import load_weights

    weights = load_weights(checkpoint, device)
    weights.model.config.tokenizer_padding_side = "left"
    return weights.tokenizer, weights.model, weights.image_processor


def left_padded_batch(
    tokenizer: Any, processor: Any, rows: list[torch.Tensor], images: list[Any], dtype: torch.dtype
) -> Any:
    """The worker's batch of token rows, one image each (llava_batched.batch_inputs: left
    padding, its pad id, the images in row order, preprocessed as DeviceLLaVA does)."""
    from llava.mm_utils import process_images
    from vlmfleet.families.llava_batched import Sample, batch_inputs

    def preprocess(batch: list[Any]) -> torch.Tensor:
        return process_images(batch, processor, Namespace(image_aspect_ratio="pad")).to(dtype)

    wrapper = SimpleNamespace(tokenizer=tokenizer, preprocess_images=preprocess)
    samples = [
        Sample(index=i, prompt="", images=[image], ids=ids)
        for i, (ids, image) in enumerate(zip(rows, images, strict=True))
    ]
    return batch_inputs(wrapper, samples)


def check_batch(tokenizer: Any, processor: Any, dtype: torch.dtype) -> Any:
    """The check's prompts as the worker builds them, one image each, left-padded."""
    from llava.constants import IMAGE_TOKEN_INDEX
    from llava.mm_utils import tokenizer_image_token
    from PIL import Image
    from vlmfleet.families.llava_wrapper import SYSTEM_PROMPT

    # DeviceLLaVA.generate_inner's prompt, concat_tilist's image placeholder in it.
    prompts = [f"{SYSTEM_PROMPT}USER:  <image> {q} ASSISTANT: " for q in CHECK_QUESTIONS]
    rows = [
        tokenizer_image_token(p, tokenizer, IMAGE_TOKEN_INDEX, return_tensors="pt") for p in prompts
    ]
    if len({len(r) for r in rows}) < len(rows):
        raise ValueError("the check's prompts must have different lengths to exercise padding")
    images = [Image.new("RGB", *CHECK_IMAGES[i % len(CHECK_IMAGES)]) for i in range(len(prompts))]
    return left_padded_batch(tokenizer, processor, rows, images, dtype)


def settings(new_tokens: int, min_new_tokens: int) -> dict[str, Any]:
    """The engine's generation settings (DeviceLLaVA's), at these lengths."""
    from vlmfleet.families.llava_wrapper import GENERATION_DEFAULTS

    return {**GENERATION_DEFAULTS, "max_new_tokens": new_tokens, "min_new_tokens": min_new_tokens}


def hf_generate(model: Any, inputs: Any, kwargs: dict[str, Any]) -> torch.Tensor:
    with torch.inference_mode():
        return model.generate(
            inputs.input_ids,
            images=inputs.images,
            attention_mask=inputs.attention_mask,
            **kwargs,
        )


def differing_rows(reference: torch.Tensor, tokens: torch.Tensor) -> list[int]:
    """Rows that differ; outputs of different widths differ in every row."""
    if reference.shape != tokens.shape:
        return list(range(len(reference)))
    same = (reference.cpu() == tokens.cpu()).all(dim=1)
    return [i for i, ok in enumerate(same.tolist()) if not ok]


def run_check(checkpoint: str, device: str, counts: list[int]) -> int:
    tokenizer, model, processor = load(checkpoint, device)
    inputs = check_batch(tokenizer, processor, model.dtype)
    inputs = SimpleNamespace(
        input_ids=inputs.input_ids.to(device),
        attention_mask=inputs.attention_mask.to(device),
        images=inputs.images.to(device),
    )
    from vlmfleet.families import llava_static

    eos = model.generation_config.eos_token_id
    modes = [False, True] if device == "cuda" else [False]
    failed = []
    lengths = inputs.attention_mask.sum(-1).tolist()
    print(json.dumps({"checkpoint": checkpoint, "device": device, "row_lengths": lengths}))
    for n in counts:
        # min_new_tokens == n is the bench's case (eos banned); 0 lets rows stop at eos.
        for min_new in sorted({n, 0}, reverse=True):
            kwargs = settings(n, min_new)
            reference = hf_generate(model, inputs, kwargs)
            greedy = llava_static.greedy_for(model, kwargs)
            for graph in modes:
                with torch.inference_mode():
                    tokens = llava_static.generate(
                        model,
                        inputs.input_ids,
                        inputs.attention_mask,
                        inputs.images,
                        greedy,
                        use_graph=graph,
                    )
                bad = differing_rows(reference, tokens)
                case = {"new_tokens": n, "min_new_tokens": min_new, "graph": graph}
                rows = len(reference)
                ended = int((reference == eos).any(dim=1).sum()) if eos is not None else 0
                tally = {
                    "rows_identical": rows - len(bad),
                    "rows": rows,
                    "rows_with_eos": ended,
                    "columns": [int(reference.shape[1]), int(tokens.shape[1])],
                }
                print(json.dumps({**case, **tally}))
                if bad:
                    failed.append(f"{case}: rows {bad} differ")
                    for i in bad:
                        print(f"  row {i}: generate {reference[i].tolist()}")
                        print(f"  row {i}: static   {tokens[i].tolist()}")
    if failed:
        print("FAIL: " + "; ".join(failed))
        return 1
    print("OK: every row token-identical to generate")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", required=True, help="compare with generate")
    p.add_argument("--checkpoint", required=True, help="a LLaVA checkpoint folder")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cuda")
    p.add_argument("--new-tokens", type=int, nargs="+", default=[1, 5, 10, 150])
    p.add_argument("--no-cudnn-sdpa", action="store_true", help="SDPA without cuDNN (cuda)")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda, but torch sees no CUDA device")
    if min(args.new_tokens) < 1:
        p.error("--new-tokens must be at least 1")
    if args.no_cudnn_sdpa:
        disable_cudnn_sdpa()
    return run_check(args.checkpoint, args.device, args.new_tokens)


if __name__ == "__main__":
    raise SystemExit(main())
