"""Full-size LLaVA-1.5-7B / -13B checkpoints with random weights, built on the GPU machine.

    python bench/fullsize_checkpoint.py --root $VLMFLEET_SMOKE_ROOT llava_v1.5_7b llava_v1.5_13b

Weights cannot be downloaded there and speed does not depend on their values, so the published
architectures (Llama-2 7B/13B language model, CLIP ViT-L/14 at 336 px, 2-layer GELU projector)
are initialised on the GPU in float16 and saved as safetensors, in the real on-disk format, where
the worker's smoke path looks for a model's checkpoint (<root>/models/<name>-tiny, with
tiny_checkpoint's marker), so the unchanged worker loads them through LLaVA's real builder.

The tokenizer is a sentencepiece BPE trained here to exactly 32000 pieces (Llama-2's vocabulary
size), so every id a random model emits decodes.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

from vlmfleet.families.llava import tiny_name
from vlmfleet.tiny_checkpoint import (
    _CORPUS_WORDS,
    MARKER,
    VISION_SUBDIR,
    llava15_config,
    save_clip_image_processor,
)

VOCAB = 32000
# (VLMEvalKit model_path, hidden, intermediate, layers, heads): Llama-2 7B and 13B.
MODELS = {
    "llava_v1.5_7b": ("liuhaotian/llava-v1.5-7b", 4096, 11008, 32, 32),
    "llava_v1.5_13b": ("liuhaotian/llava-v1.5-13b", 5120, 13824, 40, 40),
}


def train_tokenizer(work: Path) -> Path:
    import sentencepiece as spm

    rng = random.Random(0)
    syllables = [a + b for a in "bcdfghjklmnprstvwz" for b in "aeiou"] + list("aeiou")
    words = sorted(
        {"".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))) for _ in range(120_000)}
    )
    rng.shuffle(words)
    lines = [_CORPUS_WORDS] * 20 + [" ".join(words[i : i + 12]) for i in range(0, len(words), 12)]
    corpus = work / "corpus.txt"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(work / "tokenizer"),
        vocab_size=VOCAB,
        model_type="bpe",
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        byte_fallback=True,
        character_coverage=1.0,
        minloglevel=2,
        num_threads=8,
    )
    return work / "tokenizer.model"


def build(name: str, root: Path, sp_model: Path) -> Path:
    import torch
    from llava.model.language_model.llava_llama import LlavaLlamaForCausalLM
    from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaTokenizer

    model_path, hidden, inter, layers, heads = MODELS[name]
    out = (root / "models" / tiny_name(model_path)).absolute()
    if (out / MARKER).is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    vision_dir = out / VISION_SUBDIR
    torch.manual_seed(0)
    vcfg = CLIPVisionConfig(
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=24,
        num_attention_heads=16,
        image_size=336,
        patch_size=14,
        projection_dim=768,
        hidden_act="quick_gelu",
    )
    with torch.device("cuda"):
        CLIPVisionModel(vcfg).half().save_pretrained(vision_dir, safe_serialization=True)
    save_clip_image_processor(vision_dir, 336)
    tokenizer = LlamaTokenizer(vocab_file=str(sp_model), legacy=False, model_max_length=2048)
    tokenizer.pad_token = tokenizer.unk_token
    tokenizer.save_pretrained(out)
    config = llava15_config(
        vision_dir,
        vocab_size=VOCAB,
        hidden_size=hidden,
        intermediate_size=inter,
        layers=layers,
        heads=heads,
        mm_hidden_size=1024,
        max_positions=4096,
        context_len=2048,
    )
    torch.set_default_dtype(torch.float16)
    try:
        with torch.device("cuda"):
            model = LlavaLlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(torch.float32)
    # The delay-loaded vision tower is not part of the language checkpoint, as in the real one.
    model.save_pretrained(out, safe_serialization=True, max_shard_size="10GB")
    del model
    torch.cuda.empty_cache()
    (out / MARKER).write_text(
        json.dumps({"fullsize": name, "vision_tower": VISION_SUBDIR, "weights": "random"}) + "\n",
        encoding="utf-8",
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="VLMFLEET_SMOKE_ROOT")
    parser.add_argument("models", nargs="+", choices=sorted(MODELS))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        sp_model = train_tokenizer(Path(tmp))
        for name in args.models:
            t0 = time.monotonic()
            path = build(name, args.root, sp_model)
            size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
            print(
                f"{name}: {path} {size / 1e9:.1f} GB in {time.monotonic() - t0:.0f} s", flush=True
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
