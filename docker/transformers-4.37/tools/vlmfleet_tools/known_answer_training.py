"""Training of the known-answer checkpoints (``vlmfleet.known_answer_checkpoints``).

A development tool, not part of the image: the checkpoints are trained once, committed under
docker/transformers-4.37/known_answer/ and copied into the image; hosts only load them. The
training is deterministic on the CPU: every example is a smoke-data row prompted as the worker
prompts it, with the answer its skill was taught (``known_answer_checkpoints.taught_examples``),
and the loss falls on the answer only.

    python -m vlmfleet_tools.known_answer_training OUT_ROOT   # OUT_ROOT/llava-known-{strong,weak}

(with docker/transformers-4.37/tools on PYTHONPATH beside the image's vlmfleet; how:
docker/transformers-4.37/README.md)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlmfleet.known_answer_checkpoints import (
    MARKER,
    SKILLS,
    Example,
    answered_right,
    checkpoint_name,
    taught_examples,
)
from vlmfleet.smoke_data import DEFAULT_QUESTIONS
from vlmfleet.tiny_checkpoint import VISION_SUBDIR

log = logging.getLogger("vlmfleet_tools.known_answer_training")

# Rows of every benchmark the checkpoints are trained on: the smoke data's whole set, so every
# limit up to it is answered from trained scenes.
TRAIN_QUESTIONS = DEFAULT_QUESTIONS
IMAGE_SIZE = 84
VOCAB_SIZE = 1200
SEED = 1234
STEPS = 3000
BATCH = 24
LEARNING_RATE = 5e-4


def _corpus(examples: list[Example]) -> list[str]:
    return [e.prompt.replace("<image>", " ") for e in examples] + [e.answer for e in examples]


def _train_tokenizer(lines: list[str], work: Path) -> Path:
    from vlmfleet.tiny_checkpoint import train_llama_tokenizer

    # Digits one by one: numbers the model has not seen still spell out.
    return train_llama_tokenizer(sorted(set(lines)), work, VOCAB_SIZE, split_digits=True)


def build_untrained(out_dir: Path, examples: list[Example]) -> Path:
    """The checkpoint's files with initial weights: vision tower, tokenizer, LLaVA config."""
    import torch
    from llava.model.language_model.llava_llama import LlavaLlamaForCausalLM
    from transformers import LlamaTokenizer
    from vlmfleet.tiny_checkpoint import build_vision_tower, llava15_config

    out_dir = Path(out_dir).absolute()
    vision_dir = out_dir / VISION_SUBDIR
    mm_hidden = build_vision_tower(vision_dir, SEED, hidden_size=64, image_size=IMAGE_SIZE)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = LlamaTokenizer(
            vocab_file=str(_train_tokenizer(_corpus(examples), Path(tmp))),
            legacy=False,
            model_max_length=2048,
        )
        tokenizer.pad_token = tokenizer.unk_token
        tokenizer.save_pretrained(out_dir)
    config = llava15_config(
        vision_dir,
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        layers=4,
        heads=4,
        mm_hidden_size=mm_hidden,
        max_positions=2048,
        context_len=2048,
    )
    torch.manual_seed(SEED)
    LlavaLlamaForCausalLM(config).save_pretrained(out_dir, safe_serialization=True)
    return out_dir


def _encode(model: Any, examples: list[Example]) -> list[tuple[list[int], list[int]]]:
    from llava.constants import IMAGE_TOKEN_INDEX
    from llava.mm_utils import tokenizer_image_token

    tok = model.tokenizer
    encoded = []
    for e in examples:
        prompt_ids = tokenizer_image_token(e.prompt, tok, IMAGE_TOKEN_INDEX)
        answer_ids = [*tok(e.answer, add_special_tokens=False).input_ids, tok.eos_token_id]
        encoded.append((prompt_ids, answer_ids))
    return encoded


def _batches(n: int, batch: int, rng: random.Random) -> Iterator[list[int]]:
    while True:
        order = list(range(n))
        rng.shuffle(order)
        for start in range(0, n - batch + 1, batch):
            yield order[start : start + batch]


@dataclass
class Layout:
    """One example's sequence as LLaVA builds it: text tokens, each image's features spliced in
    at its <image> token (llava_arch.prepare_inputs_labels_for_multimodal), answer last."""

    ids: list[int]  # token ids; 0 where an image feature goes
    image_slots: list[int]  # positions of the image features, image after image
    answer_start: int


def _layout(prompt_ids: list[int], answer_ids: list[int], patches: int) -> Layout:
    from llava.constants import IMAGE_TOKEN_INDEX

    ids: list[int] = []
    slots: list[int] = []
    for token in prompt_ids:
        if token == IMAGE_TOKEN_INDEX:
            slots.extend(range(len(ids), len(ids) + patches))
            ids.extend([0] * patches)
        else:
            ids.append(token)
    return Layout(ids + answer_ids, slots, len(ids))


def train(
    model: Any,
    examples: list[Example],
    steps: int = STEPS,
    lr: float = LEARNING_RATE,
    batch_size: int = BATCH,
) -> list[float]:
    """Train every weight on the examples' answers (prompt tokens carry no loss).

    The forward pass is LLaVA's, batched: the Llama runs on embeddings in which the projected
    vision features replace each <image> token, as LLaVA's own forward splices them (one
    tensor operation per batch instead of LLaVA's per-sample loop)."""
    import torch

    torch.manual_seed(SEED)
    rng = random.Random(SEED)
    net = model.model
    net.train()
    net.requires_grad_(True)
    tower = net.get_model().get_vision_tower()
    projector = net.get_model().mm_projector
    patches = (tower.config.image_size // tower.config.patch_size) ** 2
    layouts = [_layout(p, a, patches) for p, a in _encode(model, examples)]
    pixels = [model.preprocess_images(e.images) for e in examples]
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=steps, pct_start=0.1
    )
    embed = net.get_model().embed_tokens
    device = model.device
    losses = []
    t0 = time.monotonic()
    for step, batch in zip(range(steps), _batches(len(examples), batch_size, rng), strict=False):
        width = max(len(layouts[i].ids) for i in batch)
        input_ids = torch.zeros((len(batch), width), dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        rows, cols = [], []
        for r, i in enumerate(batch):
            lay = layouts[i]
            input_ids[r, : len(lay.ids)] = torch.tensor(lay.ids)
            labels[r, lay.answer_start : len(lay.ids)] = torch.tensor(lay.ids[lay.answer_start :])
            attention[r, : len(lay.ids)] = 1
            rows.extend([r] * len(lay.image_slots))
            cols.extend(lay.image_slots)
        images = torch.cat([pixels[i] for i in batch], dim=0).to(device)
        # Importing VLMEvalKit turns gradients off process-wide.
        with torch.enable_grad():
            hidden = tower.vision_tower(images, output_hidden_states=True)
            features = projector(tower.feature_select(hidden)).flatten(0, 1)
            embeds = embed(input_ids.to(device))
            slots = (torch.tensor(rows, device=device), torch.tensor(cols, device=device))
            embeds = embeds.index_put(slots, features)
            out = net(
                inputs_embeds=embeds,
                attention_mask=attention.to(device),
                labels=labels.to(device),
            )
            out.loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        schedule.step()
        losses.append(float(out.loss))
        if step % 100 == 0 or step == steps - 1:
            log.info(
                "step %d/%d loss %.4f (%.0f s)", step, steps, losses[-1], time.monotonic() - t0
            )
    net.eval()
    return losses


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def on_device(model: Any, device: str) -> Any:
    """The wrapper with its weights in float32 on ``device`` (cpu, or cuda to train faster)."""
    import torch

    model.device, model.dtype = torch.device(device), torch.float32
    model.model.to(device=model.device, dtype=torch.float32)
    return model


def build_known_answer(
    out_root: Path,
    skill: str,
    *,
    steps: int = STEPS,
    lr: float = LEARNING_RATE,
    batch_size: int = BATCH,
    device: str = "cpu",
    threads: int = 1,
) -> Path:
    """Train ``skill``'s checkpoint into ``out_root/llava-known-<skill>``; returns its path.

    Deterministic for one machine and software stack (fixed seeds, deterministic kernels);
    another stack trains a checkpoint of the same skill, not of the same bytes."""
    import torch
    from vlmfleet.families.llava_wrapper import DeviceLLaVA

    # A fixed thread count: a CPU's sums then come out the same whatever its number of cores.
    if device == "cpu":
        torch.set_num_threads(threads)
    # cuBLAS is deterministic only with a fixed workspace; set before CUDA starts.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # warn_only: an op without a deterministic CUDA kernel warns (in the log) instead of failing.
    torch.use_deterministic_algorithms(True, warn_only=True)
    out_dir = Path(out_root).absolute() / checkpoint_name(skill)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        staging = work / out_dir.name
        # Prompts depend only on the dataset classes and the wrapper's prompt format, not on
        # the weights: the tiny random checkpoint builds them.
        from vlmfleet.tiny_checkpoint import build_tiny_llava

        prompter = DeviceLLaVA(str(build_tiny_llava(work / "llava-question-builder")), device="cpu")
        examples = taught_examples(prompter, work / "LMUData", skill, TRAIN_QUESTIONS)
        del prompter
        build_untrained(staging, examples)
        model = on_device(DeviceLLaVA(str(staging), device="cpu"), device)
        losses = train(model, examples, steps, lr, batch_size)
        learned = answered_right(model, examples)
        log.info("answers as trained: %s", json.dumps(learned))
        net = model.model.to(device="cpu", dtype=torch.float16)
        net.save_pretrained(staging, safe_serialization=True)
        # LLaVA's builder loads the vision tower from its own folder (mm_vision_tower), not
        # from the checkpoint's weights: the trained tower must go there too.
        net.get_model().get_vision_tower().vision_tower.save_pretrained(
            staging / VISION_SUBDIR, safe_serialization=True
        )
        (staging / MARKER).write_text(
            json.dumps(
                {
                    "skill": skill,
                    "seed": SEED,
                    "steps": steps,
                    "learning_rate": lr,
                    "batch_size": batch_size,
                    "trained_on": device,
                    "cpu_threads": threads if device == "cpu" else None,
                    "torch": torch.__version__,
                    "train_questions": TRAIN_QUESTIONS,
                    "examples": len(examples),
                    "answered_as_trained": learned,
                    "final_loss": round(sum(losses[-20:]) / min(20, len(losses)), 6),
                    "vision_tower": "vision_tower",
                },
                indent=2,
            )
            + "\n",
            encoding="utf-8",
        )
        for path in staging.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staging), out_dir)
    # Shipped checkpoints name their tower relatively; ensure_known_answer makes it absolute
    # in the copy a worker loads (LLaVA's builder needs a path that exists).
    config_file = out_dir / "config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["mm_vision_tower"] = "vision_tower"
    config_file.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return out_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vlmfleet_tools.known_answer_training",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("out_root", type=Path, help="folder for llava-known-<skill>/")
    parser.add_argument("--skill", choices=SKILLS, action="append", help="default: both")
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--lr", type=float, default=LEARNING_RATE, help="peak learning rate")
    parser.add_argument("--batch", type=int, default=BATCH, help="examples per step")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (fixed: same sums)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    for skill in args.skill or SKILLS:
        path = build_known_answer(
            args.out_root,
            skill,
            steps=args.steps,
            lr=args.lr,
            batch_size=args.batch,
            device=args.device,
            threads=args.threads,
        )
        print(path, _sha256(path / "model.safetensors"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
