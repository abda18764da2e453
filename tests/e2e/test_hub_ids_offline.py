"""sharegpt4v_7b and the LLaVA-1.5 models through their hub ids, offline.

The test lays out a Hugging Face cache as the hub does (hub/models--ORG--NAME/refs/main and
snapshots/<revision>/) holding the committed known-answer checkpoint under each model's repo id
and its vision tower under the tower's repo id (LLaVA's config names the tower by hub id:
openai/clip-vit-large-patch14-336 for LLaVA-1.5, Lin-Chen/ShareGPT4V-7B_Pretrained_vit-large336-l12
for ShareGPT4V, which LLaVA's builder loads separately with CLIPVisionModel.from_pretrained).
Then, in the image, without network and with HF_HUB_OFFLINE=1, the llava family's real loading
code (VLMEvalKit's supported_VLM entry -> DeviceLLaVA -> LLaVA's builder) loads each model by
its hub id on the CPU and answers one question: the same answer as the checkpoint loaded by path.
The repos a model loads are the catalogue's (hf_repo and extra_repos), so preflight's disk and
cache checks count what the load really reads.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from conftest import REPO

SHIPPED = REPO / "docker/transformers-4.37/known_answer/llava-known-weak"
SCRIPT = "tests/e2e/in_image_hub_load.py"
MARKER = "IN_IMAGE_HUB_LOAD "
REVISION = "0123456789abcdef0123456789abcdef01234567"
MODELS = ("sharegpt4v_7b", "llava_v1.5_7b", "llava_v1.5_13b")
CATALOGUE = yaml.safe_load((REPO / "playbooks/vars/catalogue.yml").read_text())


def hub_repo(hub: Path, repo_id: str, files: Path) -> Path:
    """``files``' plain files as the snapshot of ``repo_id`` at REVISION, refs/main naming it."""
    root = hub / f"models--{repo_id.replace('/', '--')}"
    snapshot = root / "snapshots" / REVISION
    snapshot.mkdir(parents=True)
    for f in files.iterdir():
        if f.is_file():
            shutil.copy2(f, snapshot / f.name)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(REVISION)
    return snapshot


def test_llava_family_models_load_by_hub_id_offline(
    run_in_image: Callable[..., Any], tmp_path: Path
) -> None:
    hub = tmp_path / "hub"
    models = CATALOGUE["catalogue_models"]
    towers = {}
    for name in MODELS:
        (tower,) = [r["repo"] for r in models[name]["extra_repos"]]
        towers[name] = tower
        if not (hub / f"models--{tower.replace('/', '--')}").exists():
            hub_repo(hub, tower, SHIPPED / "vision_tower")
        snapshot = hub_repo(hub, models[name]["hf_repo"], SHIPPED)
        config = json.loads((snapshot / "config.json").read_text())
        config["mm_vision_tower"] = tower
        (snapshot / "config.json").write_text(json.dumps(config, indent=2))
    local = tmp_path / "llava-known-weak"
    shutil.copytree(SHIPPED, local)
    config = json.loads((local / "config.json").read_text())
    config["mm_vision_tower"] = "/ckpt/llava-known-weak/vision_tower"
    (local / "config.json").write_text(json.dumps(config, indent=2))

    proc = run_in_image(
        "python",
        f"/src/{SCRIPT}",
        "--local",
        "/ckpt/llava-known-weak",
        *(f"{name}={models[name]['hf_repo']}" for name in MODELS),
        volumes=(
            f"{REPO / 'docker' / 'transformers-4.37' / 'src'}:/opt/vlm-image/src:ro",
            f"{REPO / 'tests'}:/src/tests:ro",
            f"{hub}:/hub:ro",
            f"{local}:/ckpt/llava-known-weak:ro",
        ),
        env=("HF_HUB_OFFLINE=1", "TRANSFORMERS_OFFLINE=1", "HF_HUB_CACHE=/hub", "HF_HOME=/tmp/hf"),
        timeout=600,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    lines = {
        r["model"]: r
        for r in (
            json.loads(line[len(MARKER) :])
            for line in proc.stdout.splitlines()
            if line.startswith(MARKER)
        )
    }
    assert set(lines) == {*MODELS, "local"}, out[-3000:]
    for name in MODELS:
        line = lines[name]
        # VLMEvalKit's own hub id, resolved from the cache, with the tower under its own id.
        assert line["model_path"] == models[name]["hf_repo"]
        assert line["name_or_path"] == models[name]["hf_repo"]
        assert line["tower"] == towers[name]
        assert line["snapshot"] == (
            f"/hub/models--{models[name]['hf_repo'].replace('/', '--')}/snapshots/{REVISION}"
            "/config.json"
        )
        # The hub id is known before VLMEvalKit is: its weights were read ahead from the cache.
        assert f"reading the weights of {name} (files: 1) while VLMEvalKit is imported" in out
        # The same weights answer the same as by path (greedy decoding).
        assert line["answer"] == lines["local"]["answer"], lines
    print(f"\nhub ids offline: {', '.join(MODELS)} answered {lines['local']['answer']!r}")
