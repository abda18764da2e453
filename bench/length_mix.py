"""Answers of real lengths on random weights: today's decoder against ended rows leaving the batch.

    python3 bench/length_mix.py --checkpoint DIR [--rows 600] [--device cuda] --out mix.json

Random weights never stop on their own, so every earlier figure forced 10 tokens. Here each row
draws an answer length from its benchmark kind's mix (``MIX``) and the bench ends it there: a
wrapper around the decoder's step (this process only, never the product) turns the row's token
into eos once it has given its drawn count. Both arms decode the same rows in the same batches
(the engine's: each kind's rows by prompt length, 64 a batch, ``--batch``) with the product's
decoder (``llava_static.generate``, CUDA graphs on a GPU):

- ``today``: ended rows stay in the batch until its last row ends (``worth_compacting`` is
  replaced by "never" in this process), as the decoder did before rows could leave;
- ``compacting``: the product's decoder as it is.

Each arm reports its wall time, its decode row-steps and the share spent on rows that had
already ended, and the rows' tokens are compared between arms (random weights in float16 may
differ on near-ties when the batch changes size; the known-answer checks are the identity test).

The mix (answer tokens before eos; every row then gives eos):
- ``mcq`` (MMBench, SEEDBench, AI2D, ScienceQA, MMStar, BLINK, ...; "Answer with the option's
  letter"): 1 token (80%) or 2 (20%, a letter and a period);
- ``yes_no`` (POPE, HallusionBench): 1 token (90%) or 2 (10%);
- ``vqa`` (TextVQA, GQA, DocVQA, ChartQA, InfoVQA, OCRBench, VizWiz; "a single word or
  phrase"): 1-8 tokens, falling off with length;
- the tail: one row in each 100, of any kind, runs 256-1024 tokens (a model that does not stop,
  repeats, or describes instead of answering); spread evenly over that range so that a few
  hundred rows hold its whole span.
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import time
from pathlib import Path
from typing import Any

BATCH = 64
TAIL_EVERY = 100
TAIL_RANGE = (256, 1024)
# Answer tokens (before eos) and their weights, per kind; prompt text tokens (after the image).
MIX: dict[str, dict[str, Any]] = {
    "mcq": {"lengths": {1: 0.8, 2: 0.2}, "prompt": (80, 220)},
    "yes_no": {"lengths": {1: 0.9, 2: 0.1}, "prompt": (40, 70)},
    "vqa": {
        "lengths": {1: 0.35, 2: 0.25, 3: 0.15, 4: 0.1, 5: 0.06, 6: 0.04, 7: 0.03, 8: 0.02},
        "prompt": (40, 80),
    },
}
# Rows of each kind in the default matrix's 20 benchmarks (11 MCQ, 2 yes/no, 7 VQA).
KIND_SHARE = {"mcq": 11 / 20, "yes_no": 2 / 20, "vqa": 7 / 20}


def draw_rows(total: int, seed: int) -> list[dict[str, Any]]:
    """``total`` rows: kind, prompt text length and answer length; one in ``TAIL_EVERY`` is a
    tail row, their lengths evenly spaced over ``TAIL_RANGE`` in a shuffled order."""
    rng = random.Random(seed)
    rows = []
    for kind, share in KIND_SHARE.items():
        mix = MIX[kind]
        for _ in range(round(total * share)):
            length = rng.choices(list(mix["lengths"]), weights=list(mix["lengths"].values()))[0]
            rows.append({"kind": kind, "prompt": rng.randint(*mix["prompt"]), "answer": length})
    tails = max(1, len(rows) // TAIL_EVERY)
    low, high = TAIL_RANGE
    spans = [low + (high - low) * i // max(1, tails - 1) for i in range(tails)]
    rng.shuffle(spans)
    for row_index, span in zip(rng.sample(range(len(rows)), tails), spans, strict=True):
        rows[row_index]["answer"] = span
    return rows


def batches_of(rows: list[dict[str, Any]], size: int = BATCH) -> list[list[int]]:
    """The engine's batches: each kind's rows by prompt length, ``size`` at a time (the
    engine's largest; it sizes them down by the memory left, which this bench does not)."""
    out = []
    for kind in MIX:
        ours = [i for i, r in enumerate(rows) if r["kind"] == kind]
        ours.sort(key=lambda i: rows[i]["prompt"])
        out += [ours[i : i + size] for i in range(0, len(ours), size)]
    return out


def forced_ends(llava_static: Any, drawn: dict[str, Any]) -> None:
    """The bench's stopping rule, in this process: a row that has given its drawn count of
    tokens (``drawn["lengths"]``, by the batch's row index) gives eos next and ends."""
    step = llava_static.decode_step

    @functools.wraps(step)
    def ending(model: Any, state: Any, greedy: Any) -> Any:
        import torch

        tokens, unfinished = step(model, state, greedy)
        given = state.cache_pos - state.prompt_len + 1  # tokens before this one
        ends = (given >= drawn["lengths"].index_select(0, state.rows)) & unfinished.bool()
        tokens = torch.where(ends, greedy.eos_token_ids[0], tokens)
        return tokens, unfinished * (~ends).long()

    llava_static.decode_step = ending


def batch_tensors(
    tokenizer: Any, processor: Any, rows: list[dict[str, Any]], seed: int, dtype: Any
) -> Any:
    import torch
    from llava.constants import IMAGE_TOKEN_INDEX
    from PIL import Image
    from static_decode import left_padded_batch

    gen = torch.Generator().manual_seed(seed)
    vocab = min(30000, len(tokenizer))
    ids = []
    for row in rows:
        x = torch.randint(100, vocab, (6 + row["prompt"],), generator=gen, dtype=torch.long)
        x[5] = IMAGE_TOKEN_INDEX
        ids.append(x)
    image = Image.new("RGB", (380, 300), (120, 80, 40))
    return left_padded_batch(tokenizer, processor, ids, [image] * len(rows), dtype)


def run_arm(
    model: Any, prepared: list[Any], greedy: Any, drawn: dict[str, Any], device: str
) -> Any:
    """Every batch once; wall time, the tally and each batch's tokens (on the CPU)."""
    import torch
    from vlmfleet.families import llava_static

    tally = llava_static.Tally()
    outputs = []
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for inputs, lengths in prepared:
        drawn["lengths"] = lengths
        with torch.inference_mode():
            out = llava_static.generate(
                model, inputs.input_ids, inputs.attention_mask, inputs.images, greedy, tally=tally
            )
        outputs.append(out.cpu())
    sync()
    return time.perf_counter() - start, tally, outputs


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from static_decode import disable_cudnn_sdpa, load, settings
    from vlmfleet.families import llava_static

    disable_cudnn_sdpa()
    tokenizer, model, processor = load(args.checkpoint, args.device)
    rows = draw_rows(args.rows, args.seed)
    greedy = llava_static.greedy_for(model, settings(args.max_new_tokens, 0))
    if max(r["answer"] for r in rows) >= greedy.max_new_tokens:
        raise SystemExit("--max-new-tokens must exceed the longest drawn answer")
    if greedy.min_new_tokens or not greedy.eos_token_ids:
        raise SystemExit("the bench ends rows with eos: the settings must allow it")
    prepared = []
    for n, batch in enumerate(batches_of(rows, args.batch)):
        inputs = batch_tensors(
            tokenizer, processor, [rows[i] for i in batch], args.seed + n, model.dtype
        )
        for name in ("input_ids", "attention_mask", "images"):
            setattr(inputs, name, getattr(inputs, name).to(args.device))
        lengths = torch.tensor([rows[i]["answer"] for i in batch], device=args.device)
        prepared.append((inputs, lengths))
    drawn: dict[str, Any] = {}
    forced_ends(llava_static, drawn)
    rule = llava_static.worth_compacting
    run_arm(model, prepared[:1], greedy, drawn, args.device)  # warm-up: kernels, allocator
    arms = {}
    for name in args.arms:
        llava_static.worth_compacting = rule if name == "compacting" else (lambda *_: False)
        seconds, tally, outputs = run_arm(model, prepared, greedy, drawn, args.device)
        arms[name] = {"seconds": round(seconds, 2), "tally": tally, "outputs": outputs}
    llava_static.worth_compacting = rule
    return {"rows": rows, "batches": len(prepared), "arms": arms, "model": model}


def summary(args: argparse.Namespace, measured: dict[str, Any]) -> dict[str, Any]:
    rows, arms = measured["rows"], measured["arms"]
    eos = measured["model"].generation_config.eos_token_id
    result: dict[str, Any] = {
        "checkpoint": args.checkpoint,
        "device": args.device,
        "rows": len(rows),
        "batches": measured["batches"],
        "batch": args.batch,
        "mix": {
            "kinds": MIX,
            "kind_share": KIND_SHARE,
            "tail_every": TAIL_EVERY,
            "tail_range": TAIL_RANGE,
        },
        "answer_tokens": sum(r["answer"] for r in rows),
        "tail_rows": sorted(r["answer"] for r in rows if r["answer"] >= TAIL_RANGE[0]),
        "arms": {},
    }
    drawn = [rows[i]["answer"] for batch in batches_of(rows, args.batch) for i in batch]
    for name, arm in arms.items():
        tally = arm["tally"]
        # Each row's answer length: its tokens before its first eos (after bos).
        given = [answer_length(row, eos) for out in arm["outputs"] for row in out.tolist()]
        result["arms"][name] = {
            "seconds": arm["seconds"],
            "seconds_per_row": round(arm["seconds"] / len(rows), 4),
            "decode_row_steps": tally.row_steps,
            "ended_row_steps": tally.ended_row_steps,
            "ended_share": round(tally.ended_row_steps / max(1, tally.row_steps), 4),
            "compactions": tally.compactions,
            "rows_ending_at_drawn_length": sum(g == d for g, d in zip(given, drawn, strict=True)),
        }
    if {"today", "compacting"} <= set(arms):
        a, b = arms["today"], arms["compacting"]
        pairs = list(zip(a["outputs"], b["outputs"], strict=True))
        result["rows_identical_between_arms"] = sum(
            int((x == y).all(1).sum()) for x, y in pairs if x.shape == y.shape
        )
        result["batches_of_equal_width"] = sum(x.shape == y.shape for x, y in pairs)
        result["speedup"] = round(a["seconds"] / b["seconds"], 2)
    return result


def answer_length(row: list[int], eos: int) -> int:
    tokens = row[1:]
    return tokens.index(eos) if eos in tokens else len(tokens)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--rows", type=int, default=600)
    p.add_argument("--seed", type=int, default=28)
    p.add_argument("--batch", type=int, default=BATCH, help="rows a batch (the 13B: 32)")
    p.add_argument("--max-new-tokens", type=int, default=2048, help="as real runs allow")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cuda")
    p.add_argument("--arms", nargs="+", default=["today", "compacting"])
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    result = summary(args, measure(args))
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("mix", "tail_rows")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
