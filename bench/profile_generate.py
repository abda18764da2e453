"""Where one batched LLaVA generate spends its GPU time: prefill against decode, and the top
CUDA kernels (torch.profiler), on a full-size checkpoint of the bench (random weights).

    python3 bench/profile_generate.py --out profile.json \\
        --checkpoint /tmp/vlmfleet-bench/ckpt/models/llava-v1.5-7b-tiny

The batch is built as the worker's engine builds it (llava_batched.batch_inputs: left padding,
an <image> token per prompt, the CLIP preprocessing of a real image size), so the figures are
the product's generate call's. Every row has --prompt-tokens tokens, or with
--min-prompt-tokens lengths spread evenly down to that (left padding, as the product's batches
have).

--static also times the product's static decoder (vlmfleet.families.llava_static) on the same
inputs, eager and with its decode steps as CUDA graphs, and counts the rows whose tokens equal
generate's.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any


def timed(fn: Any, repeat: int) -> float:
    import torch

    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / repeat


def row_lengths(batch: int, shortest: int, longest: int) -> list[int]:
    """``batch`` prompt lengths spread evenly from ``longest`` down to ``shortest``."""
    if batch == 1:
        return [longest]
    return [longest - (longest - shortest) * i // (batch - 1) for i in range(batch)]


def static_run(
    model: Any, inputs: Any, new_tokens: int, use_graph: bool, reference: Any
) -> dict[str, Any]:
    """The product's static decoder's timings on ``inputs`` (llava_static), as generate's are
    taken, and its agreement with ``reference`` (generate's output)."""
    import torch
    from static_decode import settings
    from vlmfleet.families import llava_static

    rows = inputs.input_ids.shape[0]

    def run(new: int) -> Any:
        greedy = llava_static.greedy_for(model, settings(new, new))
        with torch.inference_mode():
            return llava_static.generate(
                model,
                inputs.input_ids,
                inputs.attention_mask,
                inputs.images,
                greedy,
                use_graph=use_graph,
            )

    run(3)  # warm-up, as for generate
    torch.cuda.reset_peak_memory_stats()
    # 2 and 3 tokens too: with the graph, 2 is prefill and the warm-up step, 3 adds the capture
    # and one replay, so beyond 3 every token is a replay.
    took = {n: timed(lambda n=n: run(n), 3) for n in sorted({1, 2, 3, new_tokens})}
    tokens = run(new_tokens)
    one, full = took[1], took[new_tokens]
    return {
        "prefill_and_first_token_s": round(one, 4),
        "generate_s": round(full, 4),
        "generate_s_by_new_tokens": {str(n): round(t, 4) for n, t in took.items()},
        "decode_per_token_s": round((full - one) / max(1, new_tokens - 1), 5),
        "steady_per_token_s": (
            round((full - took[3]) / (new_tokens - 3), 5) if new_tokens > 3 else None
        ),
        "per_sample_ms": round(full / rows * 1000, 2),
        "rows_identical_to_generate": int((tokens == reference).all(dim=1).sum()),
        "rows": rows,
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--batch", type=int, nargs="+", default=[8, 32])
    p.add_argument("--prompt-tokens", type=int, default=80)
    p.add_argument("--min-prompt-tokens", type=int, help="shortest row (default: all equal)")
    p.add_argument("--new-tokens", type=int, default=10)
    p.add_argument("--static", action="store_true", help="also time llava_static, eager and graph")
    p.add_argument("--no-cudnn-sdpa", action="store_true", help="SDPA without its cuDNN backend")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    shortest = args.prompt_tokens if args.min_prompt_tokens is None else args.min_prompt_tokens
    # The image token goes at index 5 of every row.
    if not 6 <= shortest <= args.prompt_tokens:
        p.error(f"--min-prompt-tokens must be 6 to --prompt-tokens ({args.prompt_tokens})")
    if args.new_tokens < 1:
        p.error("--new-tokens must be at least 1")

    import torch
    from llava.constants import IMAGE_TOKEN_INDEX
    from PIL import Image
    from static_decode import disable_cudnn_sdpa, left_padded_batch
    from vlmfleet.families.llava_weights import load_weights

    if args.no_cudnn_sdpa:
        disable_cudnn_sdpa()
    weights = load_weights(args.checkpoint, "cuda")
    tokenizer, model, processor = weights.tokenizer, weights.model, weights.image_processor
    config = model.config
    config.tokenizer_padding_side = "left"
    result: dict[str, Any] = {
        "checkpoint": args.checkpoint,
        "attention": str(getattr(model.config, "_attn_implementation", "default")),
        "prompt_tokens": args.prompt_tokens,
        "min_prompt_tokens": shortest,
        "new_tokens": args.new_tokens,
        "cudnn_sdpa": not args.no_cudnn_sdpa,
        "runs": {},
    }
    image = Image.new("RGB", (380, 300), (120, 80, 40))
    for batch in args.batch:
        rows = []
        for length in row_lengths(batch, shortest, args.prompt_tokens):
            row = torch.randint(100, 30000, (length,), dtype=torch.long)
            row[5] = IMAGE_TOKEN_INDEX
            rows.append(row)
        inputs = left_padded_batch(tokenizer, processor, rows, [image] * batch, torch.float16)
        ids, mask = inputs.input_ids.cuda(), inputs.attention_mask.cuda()
        images = inputs.images.cuda()

        def generate(new: int, ids: Any = ids, mask: Any = mask, images: Any = images) -> Any:
            with torch.inference_mode():
                return model.generate(
                    ids,
                    images=images,
                    attention_mask=mask,
                    do_sample=False,
                    max_new_tokens=new,
                    min_new_tokens=new,
                    use_cache=True,
                )

        generate(2)  # warm-up: kernels chosen, allocator grown
        one = timed(lambda: generate(1), 3)
        full = timed(lambda: generate(args.new_tokens), 3)
        with torch.profiler.profile(
            activities=[torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
        ) as prof:
            generate(args.new_tokens)
            torch.cuda.synchronize()
        events = prof.key_averages()
        cuda_total = sum(e.self_device_time_total for e in events) / 1e6
        top = sorted(events, key=lambda e: e.self_device_time_total, reverse=True)[:12]
        result["runs"][str(batch)] = {
            "prefill_and_first_token_s": round(one, 4),
            "generate_s": round(full, 4),
            "decode_per_token_s": round((full - one) / max(1, args.new_tokens - 1), 5),
            "per_sample_ms": round(full / batch * 1000, 2),
            "profiled_cuda_busy_s": round(cuda_total, 4),
            "top_kernels": [
                {
                    "name": e.key[:90],
                    "cuda_s": round(e.self_device_time_total / 1e6, 4),
                    "calls": e.count,
                }
                for e in top
            ],
            "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1),
        }
        if args.static:
            # min_new_tokens == max_new_tokens: no row ends early, so no column is padding.
            reference = generate(args.new_tokens)
            on_gpu = SimpleNamespace(input_ids=ids, attention_mask=mask, images=images)
            for name, graph in (("static_eager", False), ("static_graph", True)):
                result["runs"][str(batch)][name] = static_run(
                    model, on_gpu, args.new_tokens, graph, reference
                )
        print(json.dumps({batch: result["runs"][str(batch)]}, indent=1)[:3000], flush=True)
    args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
