"""Batched inference for VLMEvalKit's LLaVA models: several samples per ``generate`` call.

At batch 1 a full-size LLaVA-1.5 decodes at about 40 ms a token on an H100, bound by per-step
overhead rather than by the GPU (DESIGN.md), so most of the GPU idles. ``infer_batched`` is a
drop-in for ``vlmeval.inference.infer_data_job`` (single process) that keeps everything a user
can see the same - each sample's message is built as ``infer_data`` builds it, the prompt and
image preprocessing are the wrapper's own, decoding is greedy, and the prediction file has
``infer_data_job``'s format and path, so ``dataset.evaluate`` runs unchanged - but runs one
LLaVA ``generate`` per batch of samples (left padding with an attention mask; LLaVA 1.2.2's
``prepare_inputs_labels_for_multimodal`` honours ``config.tokenizer_padding_side = "left"``).

Samples without an image go through the wrapper's own ``generate`` one at a time: LLaVA 1.2.2
consumes an image feature for every sample of a batch, with or without an ``<image>`` token.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("vlmfleet.batched")


class BatchingError(ValueError):
    """The model or the batch size cannot be used for batched inference."""


@dataclass
class Sample:
    index: Any
    prompt: str
    images: list[str]


def check_batch_size(batch_size: Any) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise BatchingError(f"batch_size must be a positive integer, got {batch_size!r}")
    return batch_size


def check_model(model: Any) -> None:
    """The LLaVA wrapper interface batching relies on (vlmfleet.model.DeviceLLaVA has it)."""
    needed = ("concat_tilist", "system_prompt", "tokenizer", "model", "_images", "kwargs")
    missing = [name for name in needed if not hasattr(model, name)]
    if missing:
        raise BatchingError(
            f"batched inference needs VLMEvalKit's LLaVA wrapper (vlmfleet.model.DeviceLLaVA); "
            f"{type(model).__name__} lacks {', '.join(missing)} (use batch_size 1 for it)"
        )


def build_message(model: Any, dataset: Any, line: Any) -> list[dict[str, Any]]:
    """One sample's message, chosen and preprocessed as infer_data + BaseModel.generate do."""
    name = dataset.dataset_name
    if getattr(dataset, "force_use_dataset_prompt", False):
        struct = dataset.build_prompt(line)
    elif hasattr(model, "use_custom_prompt") and model.use_custom_prompt(name):
        struct = model.build_prompt(line, dataset=name)
    else:
        struct = dataset.build_prompt(line)
    kind = model.check_content(struct)
    if kind not in ("str", "dict", "liststr", "listdict"):
        raise BatchingError(f"invalid message type {kind!r} for sample {line['index']!r}")
    message = model.preproc_content(struct)
    for item in message:
        if item["type"] not in model.allowed_types:
            raise BatchingError(f"invalid input type {item['type']!r} in sample {line['index']!r}")
    return message


def to_sample(model: Any, index: Any, message: list[dict[str, Any]]) -> Sample:
    # The prompt of DeviceLLaVA.generate_inner (VLMEvalKit's LLaVA.generate_inner).
    content, images = model.concat_tilist(message)
    return Sample(index, model.system_prompt + "USER: " + content + " ASSISTANT: ", images)


def batches(samples: Sequence[Sample], batch_size: int) -> Iterator[list[Sample]]:
    for start in range(0, len(samples), batch_size):
        yield list(samples[start : start + batch_size])


def generate_batch(model: Any, samples: Sequence[Sample]) -> list[str]:
    """One LLaVA generate for ``samples`` (each with at least one image); answers in order."""
    import torch
    from llava.constants import IMAGE_TOKEN_INDEX
    from llava.mm_utils import tokenizer_image_token

    tok = model.tokenizer
    ids = [
        tokenizer_image_token(s.prompt, tok, IMAGE_TOKEN_INDEX, return_tensors="pt")
        for s in samples
    ]
    width = max(len(x) for x in ids)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.unk_token_id
    input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
    attention = torch.zeros((len(ids), width), dtype=torch.long)
    for row, x in enumerate(ids):
        input_ids[row, width - len(x) :] = x
        attention[row, width - len(x) :] = 1
    # Images of all samples in sample order: LLaVA walks them with one counter over the batch.
    images = torch.cat([model._images(s.images) for s in samples], dim=0)
    config = model.model.config
    before = getattr(config, "tokenizer_padding_side", "right")
    config.tokenizer_padding_side = "left"
    try:
        with torch.inference_mode():
            # The wrapper's KeywordsStoppingCriteria(["</s>"]) fires exactly when a row's last
            # token is eos, which generate already handles per row (finished rows get padding).
            output_ids = model.model.generate(
                input_ids.to(model.device),
                images=images,
                attention_mask=attention.to(model.device),
                **model.kwargs,
            )
    finally:
        config.tokenizer_padding_side = before
    texts = tok.batch_decode(output_ids, skip_special_tokens=True)
    return [t.strip() for t in texts]


def infer_batched(model: Any, work_dir: str, model_name: str, dataset: Any, batch_size: int) -> str:
    """Infer every sample of ``dataset`` in batches; write and return infer_data_job's file."""
    from vlmeval.smp import dump
    from vlmeval.smp.file import get_pred_file_path

    check_batch_size(batch_size)
    check_model(model)
    model.set_dump_image(dataset.dump_image)
    data = dataset.data
    with_images: list[Sample] = []
    text_only: list[tuple[Any, list[dict[str, Any]]]] = []
    for i in range(len(data)):
        line = data.iloc[i]
        message = build_message(model, dataset, line)
        sample = to_sample(model, line["index"], message)
        if sample.images:
            with_images.append(sample)
        else:
            text_only.append((line["index"], message))
    # Similar lengths together: less padding, and the order never changes an answer.
    with_images.sort(key=lambda s: len(s.prompt))
    answers: dict[Any, str] = {}
    for batch in batches(with_images, batch_size):
        for sample, text in zip(batch, generate_batch(model, batch), strict=True):
            answers[sample.index] = text
    for index, message in text_only:
        answers[index] = model.generate(message=message, dataset=dataset.dataset_name)
    log.info(
        "%s/%s: %d samples in batches of up to %d (%d without image, one at a time)",
        model_name,
        dataset.dataset_name,
        len(data),
        batch_size,
        len(text_only),
    )
    # infer_data_job's result: the dataset rows with a prediction column, image column dropped.
    data["prediction"] = [str(answers[x]) for x in data["index"]]
    if "image" in data:
        data.pop("image")
    result_file = get_pred_file_path(
        work_dir, model_name, dataset.dataset_name, use_env_format=True
    )
    dump(data, result_file)
    return result_file
