"""The static decoder returns what ``generate`` returns, and refuses the settings it cannot.

Needs the image's stack (torch, LLaVA, VLMEvalKit): tests/e2e/test_stack_in_image.py runs it
there. On the CPU in float32, on the known-answer checkpoints (confident answers that end with
eos) and on the tiny random checkpoint (answers that run to the token limit), a batch of prompts
of different lengths (left padding) is decoded by both, and the outputs must be equal token for
token and in width: the loop stops where generate's stops, and a window that fills grows.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

STACK = all(importlib.util.find_spec(m) for m in ("torch", "llava", "vlmeval"))
pytestmark = pytest.mark.skipif(not STACK, reason="needs torch, llava and vlmeval (the image)")

QUESTIONS = (
    "What is the color of the shape?",
    "Is there a circle in the image? Please answer yes or no.",
    "How many objects are there?",
    "Which option is correct? Options: A. red B. green C. blue D. yellow Answer with the "
    "option's letter from the given choices directly.",
)


def greedy_kwargs(max_new: int, min_new: int = 0) -> dict[str, Any]:
    """DeviceLLaVA's generation settings at these lengths."""
    from vlmfleet.families.llava_wrapper import GENERATION_DEFAULTS

    return {**GENERATION_DEFAULTS, "max_new_tokens": max_new, "min_new_tokens": min_new}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from vlmfleet.known_answer_checkpoints import checkpoint_name, ensure_known_answer
    from vlmfleet.tiny_checkpoint import ensure_tiny_llava

    root = tmp_path_factory.mktemp("checkpoints")
    out = {s: ensure_known_answer(root / checkpoint_name(s), s) for s in ("strong", "weak")}
    out["random"] = ensure_tiny_llava(root / "llava-v1.5-7b-tiny")
    return out


@pytest.fixture(scope="module")
def models(checkpoints: dict[str, Path]) -> dict[str, Any]:
    from vlmfleet.families.llava_wrapper import DeviceLLaVA
    from vlmfleet.stack import seed_everything

    seed_everything()
    return {name: DeviceLLaVA(str(path), device="cpu") for name, path in checkpoints.items()}


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    from PIL import Image

    root = tmp_path_factory.mktemp("images")
    paths = []
    for i, (size, colour) in enumerate(
        [((380, 300), (200, 40, 40)), ((224, 224), (40, 200, 40)), ((300, 500), (40, 40, 200))]
    ):
        path = root / f"{i}.png"
        Image.new("RGB", size, colour).save(path)
        paths.append(str(path))
    return paths


def left_padded(model: Any, images: list[str]) -> Any:
    """The engine's batch of the questions, one image each (prompts of different lengths)."""
    from vlmfleet.families.llava_batched import batch_inputs, to_sample

    samples = [
        to_sample(
            model, i, [{"type": "image", "value": images[i % 3]}, {"type": "text", "value": q}]
        )
        for i, q in enumerate(QUESTIONS)
    ]
    inputs = batch_inputs(model, samples)
    assert len(set(inputs.attention_mask.sum(-1).tolist())) == len(QUESTIONS)
    return inputs


def both(
    model: Any, inputs: Any, kwargs: dict[str, Any], tally: Any = None, cache_slots: Any = None
) -> tuple[Any, Any]:
    import torch
    from vlmfleet.families import llava_static

    net = model.model
    net.config.tokenizer_padding_side = "left"
    args = (inputs.input_ids, inputs.attention_mask, inputs.images)
    with torch.inference_mode():
        reference = net.generate(
            inputs.input_ids, images=inputs.images, attention_mask=inputs.attention_mask, **kwargs
        )
        greedy = llava_static.greedy_for(net, kwargs)
        static = llava_static.generate(net, *args, greedy, tally=tally, cache_slots=cache_slots)
    return reference, static


@pytest.mark.parametrize(
    ("name", "max_new", "min_new"),
    [
        ("strong", 1, 0),
        ("strong", 16, 0),
        ("weak", 16, 0),
        ("strong", 12, 12),
        # Past the first window (64 generated slots) and the second (128): the cache grows.
        ("random", 150, 0),
        ("random", 150, 150),
        ("strong", 150, 150),
    ],
)
def test_the_static_decoder_returns_generates_tokens(
    models: dict[str, Any], images: list[str], name: str, max_new: int, min_new: int
) -> None:
    model = models[name]
    reference, static = both(model, left_padded(model, images), greedy_kwargs(max_new, min_new))
    assert static.shape == reference.shape
    assert static.tolist() == reference.tolist()


def test_the_loop_stops_where_generate_stops_once_every_row_has_ended(
    models: dict[str, Any], images: list[str]
) -> None:
    model = models["strong"]
    reference, static = both(model, left_padded(model, images), greedy_kwargs(150))
    eos = model.model.generation_config.eos_token_id
    # Trained answers are a few tokens: generate stopped long before the limit, with every row
    # ended by eos, and so did the static decoder.
    assert static.shape[1] == reference.shape[1] < 20
    assert all(eos in row for row in static.tolist())


def test_rows_that_end_leave_the_batch_and_the_rest_keep_generates_tokens(
    models: dict[str, Any], images: list[str]
) -> None:
    from vlmfleet.families.llava_static import Tally

    model = models["strong"]
    tally = Tally()
    reference, static = both(model, left_padded(model, images), greedy_kwargs(150), tally)
    eos = model.model.generation_config.eos_token_id
    ends = [row.index(eos) for row in reference.tolist()]
    # The trained answers end after different counts of tokens, so the batch shrank while its
    # longest answer went on; every row, the ones that left included, is generate's.
    assert len(set(ends)) > 1
    assert tally.compactions >= 1
    assert static.tolist() == reference.tolist()


def test_rows_that_outgrow_the_batchs_cache_slots_are_deferred_within_them(
    models: dict[str, Any], images: list[str]
) -> None:
    from vlmfleet.families.batch_memory import cache_slots
    from vlmfleet.families.llava_batched import image_positions
    from vlmfleet.families.llava_static import Tally

    model = models["random"]
    inputs = left_padded(model, images)
    prompt_len = inputs.input_ids.shape[1] + image_positions(model) - 1
    # Four rows given cache slots for 16 new tokens each; random weights answer to the limit.
    slots = cache_slots(4, prompt_len, 16)
    tally = Tally()
    reference, static = both(model, inputs, greedy_kwargs(150), tally, slots)
    # At each window's end every row is still decoding: those that fit the doubled window go
    # on, the last ones are deferred, and row 0 at least grows into their slots as far as 150
    # new tokens (the tiny checkpoint's prompts are short: 4 x 16 slots hold many tokens).
    assert tally.deferred and 0 not in tally.deferred
    assert tally.deferred == sorted(tally.deferred, reverse=True)
    assert tally.slots <= slots
    assert tally.window > slots // 4
    kept = [row for row in range(4) if row not in tally.deferred]
    assert static.shape == reference.shape
    assert static[kept].tolist() == reference[kept].tolist()
    # Without the tally there is nowhere to name deferred rows.
    with pytest.raises(ValueError, match="tally"):
        both(model, inputs, greedy_kwargs(8), None, slots)


@pytest.mark.parametrize(
    ("still_decoding", "stragglers"), [([1], True), ([0, 3], True), ([0, 1, 3], False)]
)
def test_stragglers_leave_together_when_the_reserves_window_is_full(
    models: dict[str, Any], images: list[str], still_decoding: list[int], stragglers: bool
) -> None:
    import torch
    from vlmfleet.families.batch_memory import cache_slots, rows_that_fit
    from vlmfleet.families.llava_static import (
        Tally,
        first_window,
        greedy_for,
        make_room,
        prefill,
        static_state,
        window_for,
    )

    net = models["random"].model
    net.config.tokenizer_padding_side = "left"
    inputs = left_padded(models["random"], images)
    greedy = greedy_for(net, greedy_kwargs(150))
    with torch.inference_mode():
        logits, cache, mask = prefill(net, inputs.input_ids, inputs.attention_mask, inputs.images)
        prompt_len = mask.shape[1]
        slots = cache_slots(4, prompt_len, 64)
        window = first_window(prompt_len, 4, greedy, slots)
        state = static_state(net, cache, mask, logits.argmax(-1), window)
        unfinished = torch.zeros(4, dtype=torch.long)
        unfinished[still_decoding] = 1
        state.unfinished.copy_(unfinished)
        tally = Tally()
        # The step whose token would be written past the reserve's window.
        column = window - prompt_len + 1
        going_on = make_room(net, state, column, greedy, slots, tally, given=4)
    if stragglers:
        # At most half of the batch still decoding: they all leave, to be decoded with the
        # long answers of other batches.
        assert tally.deferred == still_decoding and not going_on
        return
    # Three of four are the batch's work: they grow in place into the ended row's slots, as
    # many as the batch's cache slots hold in the doubled window (the rest deferred for room).
    wanted = window_for(prompt_len, 2 * (column - 1), greedy)
    keep, grown = rows_that_fit(3, wanted, window, slots)
    assert going_on and keep >= 1
    assert state.rows.tolist() == still_decoding[:keep] and state.window == grown > window
    assert tally.deferred == still_decoding[keep:]


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ({"num_beams": 2}, "num_beams"),
        ({"do_sample": True}, "do_sample"),
        ({"repetition_penalty": 1.3}, "repetition_penalty"),
        ({"stopping_criteria": []}, "stopping_criteria"),
        ({"max_new_tokens": None}, "max_new_tokens"),
    ],
)
def test_settings_it_does_not_reproduce_are_refused_by_name(
    models: dict[str, Any], setting: dict[str, Any], named: str
) -> None:
    from vlmfleet.families import llava_static

    kwargs = {**greedy_kwargs(8), **setting}
    with pytest.raises(llava_static.Unsupported, match=named):
        llava_static.greedy_for(models["strong"].model, kwargs)


def test_the_engine_decodes_with_the_static_cache_and_falls_back_to_generate(
    models: dict[str, Any],
) -> None:
    import copy

    from vlmfleet.families.llava_batched import GENERATE, decoder_for

    model = models["strong"]
    assert decoder_for(model).name == "static_cache"
    beams = copy.copy(model)
    beams.kwargs = {**model.kwargs, "num_beams": 2}
    assert decoder_for(beams) is GENERATE


# --- groups sharing a prefix ------------------------------------------------------------------

# MMBench-like: one question asked with its options rotated, one image (its copies in two
# files, as VLMEvalKit dumps each row's), beside rows of other images and a question of the
# same image that shares only the start of the prompt.
ROTATED = (
    "Question: Which colour is the shape? Options: A. red B. green C. blue D. yellow",
    "Question: Which colour is the shape? Options: A. green B. blue C. yellow D. red",
    "Question: Which colour is the shape? Options: A. blue B. yellow C. red D. green",
)


def grouped_samples(model: Any, images: list[str], tmp: Path) -> list[Any]:
    """The engine's samples, keyed for groups as prepare_samples keys them: three rotations
    of a question on one image (in two files of the same content), a question without options
    on that image, and one question each on two other images."""
    import shutil

    from vlmfleet.families.llava_batched import keyed_sample, to_sample

    copy = tmp / "copy-of-0.png"
    shutil.copy(images[0], copy)
    rows = [
        (images[1], QUESTIONS[0]),
        (images[0], ROTATED[0]),
        (str(copy), ROTATED[1]),
        (images[2], QUESTIONS[3]),
        (images[0], ROTATED[2]),
        (images[0], QUESTIONS[1]),
    ]
    return [
        keyed_sample(
            model,
            to_sample(model, i, [{"type": "image", "value": path}, {"type": "text", "value": q}]),
        )
        for i, (path, q) in enumerate(rows)
    ]


@pytest.mark.parametrize(
    ("name", "rows"),
    [
        ("random", [0, 1, 2, 3, 4, 5]),
        ("strong", [0, 1, 2, 3, 4, 5]),
        # Every row a member: no row of no group beside the group's prefix.
        ("random", [1, 2, 4]),
    ],
)
def test_a_grouped_prefill_gives_the_ungrouped_logits_and_tokens(
    models: dict[str, Any], images: list[str], tmp_path: Path, name: str, rows: list[int]
) -> None:
    import torch
    from vlmfleet.families import llava_prefill, llava_static
    from vlmfleet.families.llava_batched import batch_inputs, image_positions
    from vlmfleet.families.prefix_groups import find_groups

    model = models[name]
    samples = [grouped_samples(model, images, tmp_path)[row] for row in rows]
    groups = find_groups([s.share_key for s in samples], [s.ids.tolist() for s in samples])
    # The rotations are one group (the file copy included); the question of the same image
    # without options shares the image but not the text right after it, so it is no member.
    assert [g.rows for g in groups] == [tuple(rows.index(row) for row in (1, 2, 4))]
    inputs = batch_inputs(model, samples)
    net = model.model
    net.config.tokenizer_padding_side = "left"
    args = (inputs.input_ids, inputs.attention_mask, inputs.images)
    with torch.inference_mode():
        logits, _, mask = llava_prefill.prefill(net, *args)
        shared, _, shared_mask, saved = llava_prefill.prefill_shared(net, *args, groups)
        greedy = llava_static.greedy_for(net, greedy_kwargs(12))
        tally = llava_static.Tally()
        plain = llava_static.generate(net, *args, greedy)
        grouped = llava_static.generate(net, *args, greedy, tally=tally, groups=groups)
    # The same prompt positions, laid out alike; the image's and the prefix's positions of
    # two of the three members were not prefilled.
    assert shared_mask.tolist() == mask.tolist()
    prefix = groups[0].prefix + image_positions(model) - 1
    assert saved == 2 * prefix and tally.shared_positions == saved and tally.shared_rows == 3
    torch.testing.assert_close(shared, logits, rtol=1e-4, atol=1e-4)
    assert grouped.tolist() == plain.tolist()
