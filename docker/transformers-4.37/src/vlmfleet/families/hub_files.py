"""What a hub repo's load reads from the Hugging Face cache, named before the load starts.

A model with remote code (InternVL2) reads more than its weights: config.json, the modules its
``auto_map`` names (config.json's and tokenizer_config.json's) and the modules they import
relatively, and the weight files (model.safetensors, or the shards model.safetensors.index.json
lists). With downloads off (HF_HUB_OFFLINE), transformers stops at the first missing one with a
message about connectivity; ``missing_files`` lists every missing one of a cached snapshot, so
the load can name them all, with the repo, before any of it runs.

No torch, no transformers: huggingface_hub's cache lookup only.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

OFFLINE_WORDS = {"1", "ON", "YES", "TRUE"}
RELATIVE_IMPORT = re.compile(r"^\s*from\s+\.(\w+)\s+import\s", re.MULTILINE)


def downloads_off() -> bool:
    """Whether the worker's hub settings stop downloads (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE)."""
    return any(
        os.environ.get(k, "").upper() in OFFLINE_WORDS
        for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def snapshot_of(repo: str) -> Path | None:
    """The cached snapshot folder of ``repo`` (where its config.json is), or None."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, "config.json")
    return Path(found).parent if isinstance(found, str) else None


def auto_map_modules(config: dict) -> set[str]:
    """The module files an ``auto_map`` names ("module.Class", or [slow, fast] for tokenizers)."""
    names: set[str] = set()
    for value in (config.get("auto_map") or {}).values():
        for ref in value if isinstance(value, list) else [value]:
            if ref:
                names.add(ref.split("--")[-1].rsplit(".", 1)[0] + ".py")
    return names


def code_files(snapshot: Path) -> set[str]:
    """config.json, tokenizer_config.json when there, and every remote-code module they reach."""
    wanted = {"config.json"}
    todo: set[str] = set()
    for name in ("config.json", "tokenizer_config.json"):
        path = snapshot / name
        if path.is_file():
            wanted.add(name)
            todo |= auto_map_modules(json.loads(path.read_text(encoding="utf-8")))
    while todo:
        module = todo.pop()
        wanted.add(module)
        path = snapshot / module
        if path.is_file():
            found = {f"{m}.py" for m in RELATIVE_IMPORT.findall(path.read_text(encoding="utf-8"))}
            todo |= found - wanted
    return wanted


def weight_files(snapshot: Path) -> set[str]:
    index = snapshot / "model.safetensors.index.json"
    if index.is_file():
        shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        return {index.name, *shards}
    return {"model.safetensors"}


def missing_files(repo: str) -> list[str]:
    """The files of ``repo`` its load reads that the cache lacks (all of them, as
    "config.json", when the repo is not cached at all), sorted."""
    snapshot = snapshot_of(repo)
    if snapshot is None:
        return ["config.json"]
    return sorted(
        f for f in code_files(snapshot) | weight_files(snapshot) if not (snapshot / f).exists()
    )
