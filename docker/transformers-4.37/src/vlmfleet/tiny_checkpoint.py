"""A tiny LLaVA-1.5 checkpoint with random weights, in the real on-disk format.

Smoke runs and the image's verify step need a checkpoint that goes through the real
``llava.model.builder.load_pretrained_model`` without the Hugging Face hub: a tiny Llama
(LlavaLlamaForCausalLM config keys of LLaVA-1.5), a tiny CLIP vision tower in a subfolder, a
CLIP image processor config and a sentencepiece tokenizer trained here.

    python -m vlmfleet.tiny_checkpoint OUT_DIR        # OUT_DIR's name must contain "llava"
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

VISION_SUBDIR = "vision_tower"
# The vision tower's image size and the Llama's shape: small enough that a sample takes
# milliseconds on a CPU, big enough to exercise every code path (several patches, 2 layers).
IMAGE_SIZE = 56
PATCH_SIZE = 14
VOCAB_SIZE = 600
CONTEXT_LEN = 2048
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
MARKER = "vlmfleet-tiny.json"
KNOWN_ANSWER_MARKER = "vlmfleet-known-answer.json"

# Training text for the tokenizer: the words the prompts of the default matrix's benchmarks use,
# so that tokenisation is realistic (whole words) rather than byte fallback everywhere.
_CORPUS_WORDS = (
    "A chat between a curious human and an artificial intelligence assistant. The assistant "
    "gives helpful, detailed, and polite answers to the human's questions. USER: ASSISTANT: "
    "Answer with the option's letter from the given choices directly. Answer the question "
    "using a single word or phrase. Please answer yes or no. Is there a in the image? What is "
    "the color of the shape? How many objects are there? Which option is correct? Hint: "
    "Question: Options: A. B. C. D. red green blue yellow circle square triangle left right "
    "top bottom chart value year document text title number 0 1 2 3 4 5 6 7 8 9 yes no Yes No"
)


def _require_llava_name(out_dir: Path) -> None:
    if "llava" not in out_dir.name.lower():
        raise ValueError(
            f"tiny checkpoint folder {out_dir.name!r} must contain 'llava' in its name: "
            "LLaVA's builder takes its LLaVA path only for such names"
        )


def train_llama_tokenizer(lines: list[str], work: Path, vocab_size: int, **options: Any) -> Path:
    """A sentencepiece BPE model with Llama's special ids, trained on ``lines``; returns its
    path. ``options`` go to the trainer as they are (e.g. split_digits)."""
    import sentencepiece as spm

    corpus = work / "corpus.txt"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    prefix = work / "tokenizer"
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(prefix),
        vocab_size=vocab_size,
        model_type="bpe",
        # Llama's ids: unk 0, bos 1, eos 2, no pad; byte fallback so any text (Korean too)
        # encodes without unknown tokens.
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        byte_fallback=True,
        character_coverage=1.0,
        hard_vocab_limit=False,
        minloglevel=2,
        num_threads=1,
        **options,
    )
    return prefix.with_suffix(".model")


def _train_tokenizer(work: Path) -> Path:
    lines = [_CORPUS_WORDS] * 4 + [f"{w} {i}" for i, w in enumerate(_CORPUS_WORDS.split())]
    return train_llama_tokenizer(lines, work, VOCAB_SIZE)


def build_vision_tower(
    vision_dir: Path, seed: int, *, hidden_size: int = 32, image_size: int = IMAGE_SIZE
) -> int:
    """A random 3-layer CLIP vision tower (14-pixel patches) and its image processor in
    ``vision_dir``; returns its hidden size (LLaVA's mm_hidden_size)."""
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(seed)
    cfg = CLIPVisionConfig(
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=3,
        num_attention_heads=4,
        image_size=image_size,
        patch_size=PATCH_SIZE,
        projection_dim=hidden_size,
    )
    CLIPVisionModel(cfg).save_pretrained(vision_dir)
    save_clip_image_processor(vision_dir, image_size)
    return cfg.hidden_size


def save_clip_image_processor(vision_dir: Path, image_size: int) -> None:
    """CLIP's image processor settings (OpenAI's mean and std) for square images."""
    from transformers import CLIPImageProcessor

    CLIPImageProcessor(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
    ).save_pretrained(vision_dir)


def llava15_config(
    vision_dir: Path,
    *,
    vocab_size: int,
    hidden_size: int,
    intermediate_size: int,
    layers: int,
    heads: int,
    mm_hidden_size: int,
    max_positions: int,
    context_len: int,
) -> Any:
    """A LlavaConfig with the keys of LLaVA-1.5 and the values of liuhaotian/llava-v1.5-7b,
    for a Llama of the given shape and the vision tower in ``vision_dir``."""
    from llava.model.language_model.llava_llama import LlavaConfig

    return LlavaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_positions,
        rms_norm_eps=1e-5,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        tie_word_embeddings=False,
        torch_dtype="float16",
        use_cache=True,
        architectures=["LlavaLlamaForCausalLM"],
        mm_vision_tower=str(vision_dir),
        mm_projector_type="mlp2x_gelu",
        mm_hidden_size=mm_hidden_size,
        mm_vision_select_layer=-2,
        mm_vision_select_feature="patch",
        mm_patch_merge_type="flat",
        mm_use_im_start_end=False,
        mm_use_im_patch_token=False,
        image_aspect_ratio="pad",
        freeze_mm_mlp_adapter=False,
        tune_mm_mlp_adapter=False,
        mm_projector_lr=None,
        tokenizer_model_max_length=context_len,
        tokenizer_padding_side="right",
        use_mm_proj=True,
    )


def build_tiny_llava(out_dir: Path, *, seed: int = 0) -> Path:
    """Write a tiny random LLaVA-1.5 checkpoint to ``out_dir`` and return its absolute path."""
    import torch
    from llava.model.language_model.llava_llama import LlavaLlamaForCausalLM
    from transformers import LlamaTokenizer

    out_dir = Path(out_dir).absolute()
    _require_llava_name(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    vision_dir = out_dir / VISION_SUBDIR
    mm_hidden = build_vision_tower(vision_dir, seed)

    with tempfile.TemporaryDirectory() as tmp:
        sp_model = _train_tokenizer(Path(tmp))
        tokenizer = LlamaTokenizer(
            vocab_file=str(sp_model), legacy=False, model_max_length=CONTEXT_LEN
        )
        tokenizer.pad_token = tokenizer.unk_token
        tokenizer.save_pretrained(out_dir)

    config = llava15_config(
        vision_dir,
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        layers=2,
        heads=4,
        mm_hidden_size=mm_hidden,
        max_positions=CONTEXT_LEN,
        context_len=CONTEXT_LEN,
    )
    torch.manual_seed(seed)
    model = LlavaLlamaForCausalLM(config)
    # Real checkpoints are float16 on disk; the builder casts on load anyway.
    model.to(torch.float16).save_pretrained(out_dir, safe_serialization=True)
    (out_dir / MARKER).write_text(
        json.dumps({"seed": seed, "vision_tower": VISION_SUBDIR}, indent=2) + "\n",
        encoding="utf-8",
    )
    # safetensors writes 0600; the checkpoint is shared data (built by one user, read by the
    # container's user), so make it world-readable like a downloaded checkpoint.
    for path in out_dir.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return out_dir


def relocate(ckpt_dir: Path) -> bool:
    """Point ``mm_vision_tower`` at this folder's vision tower (after a move); True if changed."""
    ckpt_dir = Path(ckpt_dir).absolute()
    config_file = ckpt_dir / "config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    wanted = str(ckpt_dir / VISION_SUBDIR)
    if config.get("mm_vision_tower") == wanted:
        return False
    config["mm_vision_tower"] = wanted
    fd, tmp = tempfile.mkstemp(prefix=".config.", suffix=".tmp", dir=ckpt_dir)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(config, indent=2) + "\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, config_file)
    return True


def linked_view(source: Path, view: Path) -> Path:
    """``view``: a folder of links to every file of the checkpoint ``source`` (read-only, e.g.
    a custom model shipped to the host) but its own ``config.json``, in which a relative
    ``mm_vision_tower`` (a tower inside the checkpoint) is made absolute. LLaVA's builder reads
    the tower path as given, relative to the process's directory, and picks its LLaVA branch only
    for a folder whose name contains "llava": the caller names ``view`` accordingly."""
    source, view = Path(source).absolute(), Path(view).absolute()
    config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    tower = config.get("mm_vision_tower")
    if isinstance(tower, str) and not Path(tower).is_absolute() and (source / tower).is_dir():
        config["mm_vision_tower"] = str(view / tower)
    view.mkdir(parents=True, exist_ok=True)
    for entry in source.iterdir():
        link = view / entry.name
        if entry.name == "config.json":
            continue
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(entry)
    fd, tmp = tempfile.mkstemp(prefix=".config.", suffix=".tmp", dir=view)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(config, indent=2) + "\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, view / "config.json")
    return view


def is_checkpoint(ckpt_dir: Path) -> bool:
    """A complete tiny or known-answer checkpoint (each written with its marker last)."""
    markers = (MARKER, KNOWN_ANSWER_MARKER)
    return (Path(ckpt_dir) / "config.json").is_file() and any(
        (Path(ckpt_dir) / m).is_file() for m in markers
    )


def ensure_checkpoint(ckpt_dir: Path, build: Callable[[Path], Any]) -> Path:
    """``build(staging)`` the checkpoint unless ``ckpt_dir`` already holds one (marked by
    MARKER or known_answer_checkpoints.MARKER), then make its vision-tower path current."""
    ckpt_dir = Path(ckpt_dir).absolute()
    if is_checkpoint(ckpt_dir):
        relocate(ckpt_dir)
        return ckpt_dir
    _require_llava_name(ckpt_dir)
    # Build beside the target and rename, so a killed build never leaves a half checkpoint
    # that looks complete.
    ckpt_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{ckpt_dir.name}-", dir=ckpt_dir.parent))
    staging = tmp_dir / ckpt_dir.name
    try:
        build(staging)
        try:
            staging.replace(ckpt_dir)
        except OSError:
            # Another worker (a second slot on this host) finished the same build first.
            if not is_checkpoint(ckpt_dir):
                raise
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    relocate(ckpt_dir)
    return ckpt_dir


def ensure_copy(source: Path, ckpt_dir: Path) -> Path:
    """A writable copy of the checkpoint ``source`` at ``ckpt_dir``, its vision-tower path
    made current (a checkpoint names its tower by absolute path, which a move makes stale)."""

    def copy(staging: Path) -> None:
        shutil.copytree(source, staging)
        for path in staging.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)

    return ensure_checkpoint(ckpt_dir, copy)


def ensure_tiny_llava(ckpt_dir: Path, *, seed: int = 0) -> Path:
    """Build the checkpoint if it is not there yet, else make its vision-tower path current."""
    return ensure_checkpoint(ckpt_dir, lambda staging: build_tiny_llava(staging, seed=seed))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="folder; name must contain llava")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        _require_llava_name(args.out_dir)
    except ValueError as err:
        parser.error(str(err))
    path = build_tiny_llava(args.out_dir, seed=args.seed)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
