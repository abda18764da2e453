"""The llava family's batched engine: several samples per LLaVA ``generate`` call.

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

The CPU work is kept off the GPU's path: ``prepare_samples`` (prompts, image dumps) runs on any
thread, so the worker prepares the next benchmark while this one generates, and each batch's
tokens and image tensors are made in a helper thread while the previous batch generates.

A batch that runs out of GPU memory (another slot on the same GPU, a long prompt) is retried at
half the size, and the rest of the dataset goes at that size: the combination fails for memory
only when batch 1 does not fit. The retries go into the status record (``batch_retries``,
``batch_size_used``).
"""

from __future__ import annotations

import copy
import logging
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from vlmfleet.contract import one_line
from vlmfleet.families import Inference, InferenceError

log = logging.getLogger("vlmfleet.families.llava_batched")
T = TypeVar("T")
R = TypeVar("R")


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
    """The LLaVA wrapper interface batching relies on (llava_wrapper.DeviceLLaVA has it)."""
    needed = ("concat_tilist", "system_prompt", "tokenizer", "model", "preprocess_images", "kwargs")
    missing = [name for name in needed if not hasattr(model, name)]
    if missing:
        raise BatchingError(
            f"batched inference needs VLMEvalKit's LLaVA wrapper (DeviceLLaVA); "
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


def ahead(items: Iterable[T], work: Callable[[T], R]) -> Iterator[tuple[T, R]]:
    """``(item, work(item))`` in order, each ``work`` running in a helper thread while the
    caller still handles the previous item. An exception of ``work`` is raised here, in order."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="vlmfleet-ahead") as pool:
        pending: tuple[T, Future[R]] | None = None
        for item in items:
            future = pool.submit(work, item)
            if pending is not None:
                yield pending[0], pending[1].result()
            pending = (item, future)
        if pending is not None:
            yield pending[0], pending[1].result()


@dataclass
class PreparedSamples:
    """One dataset's samples: with images (batched, similar prompt lengths together) and
    without (the wrapper's own generate, one at a time)."""

    with_images: list[Sample] = field(default_factory=list)
    text_only: list[tuple[Any, list[dict[str, Any]]]] = field(default_factory=list)


def prepare_samples(model: Any, dataset: Any) -> PreparedSamples:
    """Every sample's prompt and image paths, built as VLMEvalKit builds them (dumps images)."""
    check_model(model)
    # A view with this dataset's image dumper: the wrapper keeps the dumper as state, and the
    # main thread may meanwhile be generating another dataset's answers with the same wrapper.
    view = copy.copy(model)
    view.set_dump_image(dataset.dump_image)
    prepared = PreparedSamples()
    data = dataset.data
    for i in range(len(data)):
        line = data.iloc[i]
        message = build_message(view, dataset, line)
        sample = to_sample(view, line["index"], message)
        if sample.images:
            prepared.with_images.append(sample)
        else:
            prepared.text_only.append((line["index"], message))
    # Similar lengths together: less padding, and the order never changes an answer.
    prepared.with_images.sort(key=lambda s: len(s.prompt))
    return prepared


@dataclass
class BatchInputs:
    input_ids: Any
    attention_mask: Any
    images: Any


def batch_inputs(model: Any, samples: Sequence[Sample]) -> BatchInputs:
    """Token ids (left-padded), attention mask and image tensor of a batch, on the CPU."""
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
    images = torch.cat([model.preprocess_images(s.images) for s in samples], dim=0)
    return BatchInputs(input_ids, attention, images)


def generate_inputs(model: Any, inputs: BatchInputs) -> list[str]:
    """One LLaVA generate on prepared batch inputs; answers in row order."""
    import torch

    config = model.model.config
    before = getattr(config, "tokenizer_padding_side", "right")
    config.tokenizer_padding_side = "left"
    try:
        with torch.inference_mode():
            # The wrapper's KeywordsStoppingCriteria(["</s>"]) fires exactly when a row's last
            # token is eos, which generate already handles per row (finished rows get padding).
            output_ids = model.model.generate(
                inputs.input_ids.to(model.device),
                images=inputs.images.to(model.device),
                attention_mask=inputs.attention_mask.to(model.device),
                **model.kwargs,
            )
    finally:
        config.tokenizer_padding_side = before
    texts = model.tokenizer.batch_decode(output_ids, skip_special_tokens=True)
    return [t.strip() for t in texts]


def generate_batch(model: Any, samples: Sequence[Sample]) -> list[str]:
    """One LLaVA generate for ``samples`` (each with at least one image); answers in order."""
    return generate_inputs(model, batch_inputs(model, samples))


def is_out_of_memory(err: BaseException) -> bool:
    """torch's CUDA out-of-memory error (torch is not imported for the check)."""
    torch = sys.modules.get("torch")
    oom = getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None)
    if isinstance(oom, type) and isinstance(err, oom):
        return True
    # torch raises a plain RuntimeError of this text from some allocators (cuBLAS workspaces).
    return isinstance(err, RuntimeError) and "CUDA out of memory" in str(err)


def free_cuda_memory() -> None:
    """Hand the failed batch's cached blocks back before the smaller retry."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


@dataclass
class Generated:
    answers: dict[Any, str]
    batch_size_used: int
    # One entry per batch size that ran out of memory: {"batch_size": n, "error": "..."}.
    retries: list[dict[str, Any]]


def generate_all(model: Any, samples: Sequence[Sample], batch_size: int) -> Generated:
    """Every sample's answer, ``batch_size`` at a time; out of GPU memory, the batch that failed
    and all after it go at half the size, down to 1. Out of memory at 1: InferenceError, with
    the retries in its ``record``."""
    answers: dict[Any, str] = {}
    retries: list[dict[str, Any]] = []
    size, done = batch_size, 0
    while done < len(samples):
        failed = None
        todo = ahead(batches(samples[done:], size), lambda b: batch_inputs(model, b))
        try:
            for batch, inputs in todo:
                for sample, text in zip(batch, generate_inputs(model, inputs), strict=True):
                    answers[sample.index] = text
                done += len(batch)
        except Exception as err:
            if not is_out_of_memory(err):
                raise
            failed = one_line(f"{type(err).__name__}: {err}", 200)
        finally:
            # Waits for the batch being made ahead; drops the failed batch's tensors.
            todo.close()
        if failed is not None:
            retries.append({"batch_size": size, "error": failed})
            if size == 1:
                tried = ", ".join(str(r["batch_size"]) for r in retries)
                raise InferenceError(
                    f"out of GPU memory even at batch 1 (tried {tried}): {failed}",
                    {"batch_size_used": None, "batch_retries": retries},
                )
            log.warning(
                "out of GPU memory at batch %d, retrying at %d: %s", size, size // 2, failed
            )
            size //= 2
            free_cuda_memory()
    return Generated(answers, size, retries)


def infer_prepared(
    model: Any,
    work_dir: str,
    model_name: str,
    dataset: Any,
    prepared: PreparedSamples,
    batch_size: int,
) -> Inference:
    """Generate every prepared sample's answer; write infer_data_job's file and return it with
    the batch sizes for the status record."""
    from vlmeval.smp import dump
    from vlmeval.smp.file import get_pred_file_path

    check_batch_size(batch_size)
    check_model(model)
    generated = generate_all(model, prepared.with_images, batch_size)
    answers = generated.answers
    if prepared.text_only:
        model.set_dump_image(dataset.dump_image)
    for index, message in prepared.text_only:
        answers[index] = model.generate(message=message, dataset=dataset.dataset_name)
    data = dataset.data
    log.info(
        "%s/%s: %d samples in batches of up to %d (%d without image, one at a time)",
        model_name,
        dataset.dataset_name,
        len(data),
        generated.batch_size_used,
        len(prepared.text_only),
    )
    # infer_data_job's result: the dataset rows with a prediction column, image column dropped.
    data["prediction"] = [str(answers[x]) for x in data["index"]]
    if "image" in data:
        data.pop("image")
    result_file = get_pred_file_path(
        work_dir, model_name, dataset.dataset_name, use_env_format=True
    )
    dump(data, result_file)
    return Inference(
        result_file,
        {"batch_size_used": generated.batch_size_used, "batch_retries": generated.retries},
    )


def infer_batched(model: Any, work_dir: str, model_name: str, dataset: Any, batch_size: int) -> str:
    """Infer every sample of ``dataset`` in batches; write and return infer_data_job's file."""
    prepared = prepare_samples(model, dataset)
    return infer_prepared(model, work_dir, model_name, dataset, prepared, batch_size).pred_file
