"""InternVL2-2B and -8B through the worker, offline, on the stand-in hub repos (in the image).

    python tests/e2e/in_image_internvl.py WORK_DIR

tests/e2e/test_internvl_offline.py runs it in the evaluation image without network. It lays
out a Hugging Face cache under WORK_DIR/hub as the hub lays it out, holding under the real repo
ids (OpenGVLab/InternVL2-2B, OpenGVLab/InternVL2-8B) a STAND-IN repo in InternVL2's on-disk
layout: config.json with auto_map, the remote-code modules (tests/standin_internvl: the
project's own small model, not InternVL's), the tokenizer files and safetensors weights (the
8B's in two shards with an index, as the hub's 8B). The stand-in answers from a table of
expected prompts (text and tile count) -> answers, written here from InternVL's published
prompt and tiling rules, right on some questions and wrong on others by design.

It writes two benchmarks of the user's own (custom benchmarks, real mode): a VQA one whose name
contains OCRBench (VLMEvalKit's InternVL tiles it up to 24 tiles) and an MCQ one (6 tiles), a
CPU slot file with both models, runs ``python -m vlmfleet.worker`` with HF_HUB_OFFLINE=1, and
computes the 8B's device map for two GPUs on the meta device. Prints one line
``IN_IMAGE_INTERNVL {json}`` with the worker's exit status, the status records, the
per-question records, the stand-in's trace and the device map.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

STANDIN = Path(__file__).resolve().parents[1] / "standin_internvl"
MARKER = "IN_IMAGE_INTERNVL "
REVISION = "0123456789abcdef0123456789abcdef01234567"
REPOS = {"InternVL2-2B": "OpenGVLab/InternVL2-2B", "InternVL2-8B": "OpenGVLab/InternVL2-8B"}
# A 4:3 picture of 1792x1344: InternVL's dynamic tiling cuts it 4x3 = 12 tiles (+1 thumbnail)
# when 24 tiles are allowed (OCRBench), 3x2 = 6 (+1) when 6 are (the default).
SIZE = (1792, 1344)
TILES = {"standin_OCRBench": 13, "standin_MCQ": 7}
TOKENS_PER_TILE = 4  # (448 / 112)^2 x 0.5^2: the stand-in's num_image_token
VQA_SUFFIX = "\nAnswer the question using a single word or phrase."
MCQ_SUFFIX = "\nAnswer with the option's letter from the given choices directly."
# (question, right answer, what the stand-in answers); VQA: 3 of 4 right, MCQ: 2 of 4.
VQA = [
    ("What word is on the sign?", "STOP", "STOP"),
    ("What number is written?", "42", "42"),
    ("What colour is the square?", "red", "blue"),
    ("What is the title?", "SALE", "SALE"),
]
MCQ = [
    ("How many circles are there?", ["1", "2", "3", "4"], "B", "B"),
    ("Which colour is the bar?", ["red", "green", "blue", "black"], "C", "A"),
    ("Which shape is largest?", ["circle", "square", "star", "triangle"], "D", "D"),
    ("Where is the dot?", ["left", "right", "top", "bottom"], "A", "C"),
]


def picture() -> str:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", SIZE, "white")
    ImageDraw.Draw(image).rectangle((200, 200, 900, 900), fill="red")
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def write_benchmarks(lmu: Path) -> dict[str, str]:
    """The two custom benchmarks' TSVs; their md5s."""
    import pandas as pd

    image = picture()
    # VQA answers as VQA data has them, ten annotators' (VLMEvalKit's VQA score counts the
    # other annotators who agree: one answer alone scores 0 even when matched).
    vqa = [
        {"index": i, "question": q, "answer": str([a] * 10), "image": image}
        for i, (q, a, _) in enumerate(VQA)
    ]
    mcq = [
        {
            "index": i,
            "question": q,
            **dict(zip("ABCD", opts, strict=True)),
            "answer": a,
            "image": image,
        }
        for i, (q, opts, a, _) in enumerate(MCQ)
    ]
    md5 = {}
    for name, rows in (("standin_OCRBench", vqa), ("standin_MCQ", mcq)):
        path = lmu / f"{name}.tsv"
        pd.DataFrame(rows).to_csv(path, sep="\t", index=False)
        md5[name] = hashlib.md5(path.read_bytes()).hexdigest()
    return md5


def expected_prompts() -> list[tuple[str, int, str]]:
    """(the question as VLMEvalKit's InternVLChat words it, its tiles, the stand-in's answer)."""
    out = [(q + VQA_SUFFIX, TILES["standin_OCRBench"], said) for q, _, said in VQA]
    for q, opts, _, said in MCQ:
        words = q + "".join(f"\n{k}. {v}" for k, v in zip("ABCD", opts, strict=True)) + MCQ_SUFFIX
        out.append((words, TILES["standin_MCQ"], said))
    return out


def query(system: str, question: str, tiles: int) -> str:
    """The internlm2-chat prompt InternVL2's chat() builds for one image of ``tiles`` tiles."""
    image = "<img>" + "<IMG_CONTEXT>" * TOKENS_PER_TILE * tiles + "</img>"
    return (
        f"<|im_start|>system\n{system}<|im_end|><|im_start|>user\n{image}\n{question}<|im_end|>"
        "<|im_start|>assistant\n"
    )


def standin_weights(folder: Path) -> dict[str, Any]:
    """The stand-in's config.json contents and its weights (state dict) with the answer table."""
    import torch

    sys.path.insert(0, str(STANDIN.parent))
    from standin_internvl.configuration_internvl_chat import InternVLChatConfig
    from standin_internvl.conversation import SYSTEM_MESSAGE
    from standin_internvl.modeling_internvl_chat import UNMATCHED, InternVLChatModel
    from standin_internvl.tokenization_internlm2 import VOCAB
    from transformers import AutoTokenizer

    # The tokenizer as the wrapper loads it: the remote code tokenizer_config.json names.
    tok = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=True, use_fast=False)
    rows = [
        (tok(query(SYSTEM_MESSAGE, q, t))["input_ids"], said) for q, t, said in expected_prompts()
    ]
    length = max(len(ids) for ids, _ in rows)
    answer_length = 1 + max(len(s) for s in [UNMATCHED, *(s for _, s in rows)])
    special = {"bos_token_id": VOCAB.index("<s>"), "eos_token_id": VOCAB.index("</s>")}
    # 32 decoder layers (as InternVL2-8B's language model) and a small vision model, so that
    # the two-GPU placement has layers to spread.
    llm = {"vocab_size": len(VOCAB), "num_hidden_layers": 32, "answer_rows": len(rows), **special}
    llm |= {"query_length": length, "answer_length": answer_length}
    config = InternVLChatConfig(vision_config={"hidden_size": 2}, llm_config=llm)
    model = InternVLChatModel(config)
    state = {k: torch.zeros_like(v) for k, v in model.state_dict().items()}
    vocab = len(VOCAB)
    state["language_model.model.tok_embeddings.weight"] = torch.eye(vocab)
    state["language_model.output.weight"] = torch.eye(vocab)
    state["mlp1.0.bias"][VOCAB.index("<IMG_CONTEXT>")] = 1.0
    end = VOCAB.index("<|im_end|>")
    answers = torch.full((len(rows) + 1, answer_length), end, dtype=torch.long)
    for r, (ids, said) in enumerate([*rows, ([], UNMATCHED)]):
        state["language_model.query_lengths"][r : r + 1] = len(ids) if ids else 0
        if ids:
            state["language_model.queries"][r, : len(ids)] = torch.tensor(ids)
        answers[r, : len(said)] = torch.tensor(tok(said)["input_ids"])
    state["language_model.answers"] = answers
    written = config.to_dict()
    # As InternVL2's own config.json: it asks for flash attention, which the hub code drops
    # where flash_attn does not import.
    written["vision_config"]["use_flash_attn"] = True
    written["llm_config"]["attn_implementation"] = "flash_attention_2"
    written["llm_config"]["architectures"] = ["InternLM2ForCausalLM"]
    written |= {
        "architectures": ["InternVLChatModel"],
        "torch_dtype": "bfloat16",
        "auto_map": {
            "AutoConfig": "configuration_internvl_chat.InternVLChatConfig",
            "AutoModel": "modeling_internvl_chat.InternVLChatModel",
            "AutoModelForCausalLM": "modeling_internvl_chat.InternVLChatModel",
        },
    }
    return {"config": written, "state": {k: v.contiguous() for k, v in state.items()}}


def tokenizer_files(folder: Path) -> None:
    from standin_internvl.tokenization_internlm2 import SPECIAL, VOCAB

    (folder / "tokenizer.model").write_text(json.dumps(VOCAB))
    extra = [t for t in SPECIAL if t not in ("<unk>", "<s>", "</s>")]
    specials = {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>", "pad_token": "</s>"}
    (folder / "special_tokens_map.json").write_text(
        json.dumps(specials | {"additional_special_tokens": extra})
    )
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            specials
            | {
                "additional_special_tokens": extra,
                "tokenizer_class": "InternLM2Tokenizer",
                "auto_map": {"AutoTokenizer": ["tokenization_internlm2.InternLM2Tokenizer", None]},
            }
        )
    )


def write_repo(hub: Path, repo: str, built: dict[str, Any], shards: int, source: Path) -> None:
    """The stand-in as the snapshot of ``repo`` at REVISION, refs/main naming it."""
    from safetensors.torch import save_file

    root = hub / f"models--{repo.replace('/', '--')}"
    snap = root / "snapshots" / REVISION
    snap.mkdir(parents=True)
    for f in source.iterdir():
        shutil.copy2(f, snap / f.name)
    (snap / "config.json").write_text(json.dumps(built["config"], indent=2))
    (snap / "generation_config.json").write_text(json.dumps({"_from_model_config": True}))
    state = built["state"]
    if shards == 1:
        save_file(state, str(snap / "model.safetensors"), metadata={"format": "pt"})
    else:
        keys = sorted(state)
        weight_map = {}
        for i in range(shards):
            name = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
            part = {k: state[k] for k in keys[i::shards]}
            save_file(part, str(snap / name), metadata={"format": "pt"})
            weight_map |= {k: name for k in part}
        total = sum(v.numel() * v.element_size() for v in state.values())
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (snap / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(REVISION)


def slot_file(work: Path, md5: dict[str, str]) -> Path:
    """A real-mode CPU slot of both models over the two custom benchmarks."""
    vqa = {"kind": "vqa", "dataset_type": "VQA", "score_scale": 100, "smoke_shape": "vqa_color"}
    mcq = {"kind": "mcq", "dataset_type": "MCQ", "score_scale": 1, "smoke_shape": "plain_mcq"}
    benches = [
        vqa | {"name": "standin_OCRBench", "md5": md5["standin_OCRBench"]},
        mcq | {"name": "standin_MCQ", "md5": md5["standin_MCQ"]},
    ]
    units = [
        {"model": m, "family": "internvl", "hf_repo": r, "benchmarks": benches}
        for m, r in REPOS.items()
    ]
    slot = {
        "run_id": "internvl",
        "host": "localhost",
        "slot": "cpu0",
        "device": "cpu",
        "smoke": False,
        "limit": None,
        "judge": "exact_matching",
        "max_new_tokens": 16,
        "min_new_tokens": None,
        "batch_size": 1,
        "units": units,
    }
    path = work / "outputs" / "internvl" / "localhost" / "cpu0" / "slot.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(slot, indent=2))
    return path


def two_gpu_map() -> dict[str, int]:
    """The 8B stand-in's placement over two 80 GB GPUs, on the meta device, offline."""
    import torch
    from vlmfleet.families.internvl_spread import device_map, hub_config, meta_model

    model = meta_model(hub_config(REPOS["InternVL2-8B"]), torch.bfloat16)
    return device_map(model, [80 * 2**30, 80 * 2**30], torch.bfloat16)


def cache_refusals(hub: Path) -> dict[str, str]:
    """The internvl family's cache check (downloads off) on a damaged 8B snapshot (a module
    reached only by a relative import, and one weight shard, deleted) and on a repo the cache
    does not hold: what the load says before it starts."""
    from vlmfleet.families import FamilyError
    from vlmfleet.families.internvl import check_cache

    snap = hub / f"models--{REPOS['InternVL2-8B'].replace('/', '--')}" / "snapshots" / REVISION
    (snap / "conversation.py").unlink()
    (snap / "model-00002-of-00002.safetensors").unlink()
    said = {}
    for model, repo in (("InternVL2-8B", REPOS["InternVL2-8B"]), ("x", "OpenGVLab/InternVL2-4B")):
        try:
            check_cache(model, repo)
            said[repo] = "no refusal"
        except FamilyError as err:
            said[repo] = str(err)
    return said


def entry_refusals() -> dict[str, str]:
    """What the family says of a unit whose catalogue repo is not VLMEvalKit's, and of a model
    VLMEvalKit builds with another class: the hub code is trusted for the catalogue's repo only."""
    from vlmfleet.contract import Slot, Unit
    from vlmfleet.families import FamilyError
    from vlmfleet.families.internvl import vlmevalkit_arguments

    slot = Slot("r", "h", "cpu0", "cpu", False, None, "exact_matching", ())
    said = {}
    for model, repo in (("InternVL2-2B", "someone/InternVL2-2B"), ("llava_v1.5_7b", None)):
        try:
            vlmevalkit_arguments(Unit(model, "internvl", (), hf_repo=repo), slot)
            said[model] = "no refusal"
        except FamilyError as err:
            said[model] = str(err)
    return said


def records(host_dir: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for status in sorted(host_dir.glob("*/*/status.json")):
        combo = status.parent
        questions = [
            json.loads(line)
            for q in sorted(combo.rglob("*_questions.jsonl"))
            for line in q.read_text().splitlines()
        ]
        key = f"{combo.parent.name}/{combo.name}"
        out[key] = {"status": json.loads(status.read_text()), "questions": questions}
    return out


def main(work_dir: str) -> int:
    work = Path(work_dir)
    hub, lmu, staged = work / "hub", work / "LMUData", work / "staged"
    for d in (hub, lmu, staged):
        d.mkdir(parents=True)
    trace = work / "trace.jsonl"
    env = {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HUB_CACHE": str(hub),
        "HF_HOME": str(work / "hf-home"),
        "LMUData": str(lmu),
        "STANDIN_INTERNVL_TRACE": str(trace),
    }
    # Before transformers and huggingface_hub are imported: they read these once.
    os.environ.update(env)
    for f in STANDIN.glob("*.py"):
        shutil.copy2(f, staged / f.name)
    sys.path.insert(0, str(STANDIN.parent))
    tokenizer_files(staged)
    built = standin_weights(staged)
    write_repo(hub, REPOS["InternVL2-2B"], built, 1, staged)
    write_repo(hub, REPOS["InternVL2-8B"], built, 2, staged)
    path = slot_file(work, write_benchmarks(lmu))
    proc = subprocess.run(
        [sys.executable, "-m", "vlmfleet.worker", "--slot-file", str(path)],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        check=False,
    )
    sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-12000:])
    line = {
        "worker_rc": proc.returncode,
        "worker_log": [s for s in proc.stderr.splitlines() if "vlmfleet" in s][-40:],
        "records": records(path.parent.parent),
        "trace": [json.loads(s) for s in trace.read_text().splitlines()] if trace.exists() else [],
        "device_map": two_gpu_map(),
        "cache_refusals": cache_refusals(hub),
        "entry_refusals": entry_refusals(),
    }
    print(MARKER + json.dumps(line, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
