"""Where one batched LLaVA generate spends its GPU time: prefill against decode, and the top
CUDA kernels (torch.profiler), on a full-size checkpoint of the bench (random weights).

    python3 bench/profile_generate.py --out profile.json \\
        --checkpoint /tmp/vlmfleet-bench/ckpt/models/llava-v1.5-7b-tiny

The batch is built as the worker's engine builds it (llava_batched.batch_inputs: left padding,
an <image> token per prompt, the CLIP preprocessing of a real image size), so the figures are
the product's generate call's.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any


def timed(fn: Any, repeat: int) -> float:
    import torch

    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / repeat


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--batch", type=int, nargs="+", default=[8, 32])
    p.add_argument("--prompt-tokens", type=int, default=80)
    p.add_argument("--new-tokens", type=int, default=10)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()

    import torch
    from llava.constants import IMAGE_TOKEN_INDEX
    from llava.mm_utils import process_images
    from llava.model.builder import load_pretrained_model
    from PIL import Image

    _, model, processor, _ = load_pretrained_model(
        args.checkpoint, None, "llava-v1.5-7b", device_map="cuda", torch_dtype=torch.float16
    )
    model.eval()
    config = model.config
    config.tokenizer_padding_side = "left"
    result: dict[str, Any] = {
        "checkpoint": args.checkpoint,
        "attention": str(getattr(model.config, "_attn_implementation", "default")),
        "prompt_tokens": args.prompt_tokens,
        "new_tokens": args.new_tokens,
        "runs": {},
    }
    image = Image.new("RGB", (380, 300), (120, 80, 40))
    for batch in args.batch:
        ids = torch.randint(100, 30000, (batch, args.prompt_tokens), dtype=torch.long)
        ids[:, 5] = IMAGE_TOKEN_INDEX
        mask = torch.ones_like(ids)
        images = process_images([image] * batch, processor, config).to("cuda", torch.float16)
        ids, mask = ids.cuda(), mask.cuda()

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
        print(json.dumps({batch: result["runs"][str(batch)]}, indent=1)[:3000], flush=True)
    args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
