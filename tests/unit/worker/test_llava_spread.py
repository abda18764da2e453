"""The device map a multi-GPU slot's worker uses for LLaVA-1.5-13B (vlmfleet.families.
llava_spread), computed on the full-size model built on the meta device: no weights, no GPU.

Needs the image's stack (torch, accelerate, LLaVA): it skips elsewhere and runs inside the
image through tests/e2e/test_stack_in_image.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("llava")

from vlmfleet.families import llava_spread

ROOT = Path(__file__).resolve().parents[3]
# Only the tower's config is read (the real load builds it delay-loaded too); any CLIP config.
TOWER = ROOT / "docker/transformers-4.37/known_answer/llava-known-weak/vision_tower"
MIB = 2**20
A10 = 23028 * MIB  # a "24 GB" GPU as nvidia-smi reports it
# liuhaotian/llava-v1.5-13b's config.json (the values that set the shapes).
LLAVA_13B = {
    "hidden_size": 5120,
    "num_hidden_layers": 40,
    "intermediate_size": 13824,
    "vocab_size": 32000,
    "num_attention_heads": 40,
    "num_key_value_heads": 40,
    "max_position_embeddings": 4096,
    "mm_hidden_size": 1024,
    "mm_projector_type": "mlp2x_gelu",
    "mm_vision_select_layer": -2,
    "mm_vision_select_feature": "patch",
    "mm_use_im_patch_token": False,
    "mm_use_im_start_end": False,
    "image_aspect_ratio": "pad",
    "torch_dtype": "float16",
}


@pytest.fixture(scope="module")
def model():
    from llava.model import LlavaConfig

    config = LlavaConfig(**LLAVA_13B, mm_vision_tower=str(TOWER))
    return llava_spread.meta_model(config)


def where(placement: dict[str, int], name: str) -> int | None:
    """The device of parameter ``name``: the longest prefix the map names."""
    for key in sorted(placement, key=len, reverse=True):
        if key == "" or name == key or name.startswith(key + "."):
            return placement[key]
    return None


def test_llava_13b_spreads_over_two_24_gb_gpus_with_every_layer_placed(model) -> None:
    params = dict(model.named_parameters())
    # The full-size model: about 13B parameters (the vision tower loads later, from its repo).
    assert 12.5e9 < sum(p.numel() for p in params.values()) < 13.5e9
    assert all(p.device.type == "meta" for p in params.values())

    placement = llava_spread.device_map(model, [A10, A10])

    assert set(placement.values()) == {0, 1}, placement
    devices = {name: where(placement, name) for name in params}
    assert all(d in (0, 1) for d in devices.values()), [n for n, d in devices.items() if d is None]
    for i in range(LLAVA_13B["num_hidden_layers"]):
        layer = {d for n, d in devices.items() if n.startswith(f"model.layers.{i}.")}
        assert len(layer) == 1, f"layer {i} cut over GPUs {layer}"
    # LLaVA gathers image and text embeddings on the model's first device.
    assert devices["model.embed_tokens.weight"] == 0
    gib = {
        gpu: sum(p.numel() * 2 for n, p in params.items() if devices[n] == gpu) / 2**30  # float16
        for gpu in (0, 1)
    }
    for gpu, used in gib.items():
        assert used <= A10 * llava_spread.WEIGHTS_SHARE / 2**30, (gpu, used)
    print(f"\n13B over 2 x 24 GB: GPU 0 {gib[0]:.1f} GiB, GPU 1 {gib[1]:.1f} GiB")


def test_a_model_too_big_for_the_slots_gpus_is_refused_not_put_on_the_cpu(model) -> None:
    with pytest.raises(RuntimeError, match=r"does not fit on 2 GPUs at 80% of their free memory"):
        llava_spread.device_map(model, [8 * 2**30, 8 * 2**30])
