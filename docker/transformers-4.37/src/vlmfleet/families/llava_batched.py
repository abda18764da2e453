"""The llava family's batched engine: one queue of samples per slot, several per ``generate``.

At batch 1 a full-size LLaVA-1.5 decoding is bound by per-step
overhead rather than by the GPU (bench/README.md), so most of the GPU idles. The engine keeps
everything a user can see the same as VLMEvalKit's ``infer_data_job`` - each sample's message is
built as ``infer_data`` builds it, the prompt and image preprocessing are the wrapper's own,
decoding is greedy, and each benchmark's prediction file has ``infer_data_job``'s format and
path (``vlmfleet.predictions``), so ``dataset.evaluate`` runs unchanged - but decodes a batch
of samples at a time (left padding with an attention mask; LLaVA 1.2.2's
``prepare_inputs_labels_for_multimodal`` honours ``config.tokenizer_padding_side = "left"``).

A batch is decoded by ``llava_static`` (a static KV cache; on a GPU each step a CUDA graph
replay), which returns ``generate``'s tokens for the wrapper's greedy settings; settings it does
not reproduce (sampling, beams, a penalty) go to transformers' ``generate``. ``decoder_for``
picks once per slot, the log says which and why, and each benchmark's record names it
(``decoder``: ``static_cache_graph``, ``static_cache`` or ``generate``).

One queue for all of a unit's benchmarks (``generate_queue``): batches are not cut at benchmark
boundaries. The oldest benchmark's samples go first, shortest prompt first, and a batch its
last samples leave room in is filled with the next benchmarks' samples of the nearest lengths;
so padding stays small, and each benchmark is done, and handed back for its prediction file and
evaluation, as soon as its last sample is. A sample's answer never depends on its batch's
company (tests/e2e/test_batched_agreement.py).

Rows that share their image and the start of their prompt (MMBench's circular rotations of a
question: same image, hint and question, options rotated) are prefilled once a group
(``prefix_groups``: the rule; ``llava_prefill.prefill_shared``: the prefill): the group's prefix,
its image features included, once, and each member only its own suffix against the prefix's
cache. ``prepare_samples`` keys each sample (its images' content and its token ids up to just past
its last image), ``form_batch`` brings a sample's waiting rows of the same key into its batch
while there is room, so that the rotations meet, and names the batch's groups; the static
decoder's batches use them (``BatchPolicy.share_prefixes``; ``generate`` prefills every row
whole). A row's answer is the one it has alone (tests/e2e/test_batched_agreement.py); the log's
line for each batch says how many rows were prefilled in groups and how many prefix positions
that spared, and each benchmark's record counts its rows so answered (``samples_prefix_shared``).

Samples without an image go through the wrapper's own ``generate`` one at a time, when their
benchmark's last batched sample is done: LLaVA 1.2.2 consumes an image feature for every sample
of a batch, with or without an ``<image>`` token.

Batch sizes (``policy_for``): a number in the slot file is a fixed size; ``auto`` sizes each batch
on CUDA by the memory the slot has left for its prompt lengths (``batch_memory``), and uses a
fixed small size on a CPU. With the static decoder, ``auto`` sizes a batch for a *reserve* of
``batch_memory.RESERVE_TOKENS`` new tokens a row, not for ``max_new_tokens``, and hands the
decoder the batch's cache slots: a row whose answer outgrows them (after the ended rows' slots)
is *deferred* - the decoder stops it, and the engine decodes it again, from its prompt, in a
batch of deferred rows (``form_batch``), once no benchmark of the queue has other samples
pending or the deferred rows fill a batch sized for ``max_new_tokens``. That batch is sized for
the widest doubled window at which all the deferred rows fit (``BatchPolicy.tail_tokens``),
with its cache slots; a row that outgrows those too is deferred once more, to a batch sized for
``max_new_tokens`` without a slot limit. Its answer is the one it would have had (greedy tokens
never depend on a row's company). Rows still decoding when
their batch's reserve is spent are deferred too where they are at most half of it
(``llava_static.stragglers``): the long answers of a queue then decode together in a few
batches, where each would otherwise hold its own batch alone for hundreds of steps. Each
benchmark's record counts its deferred samples (``samples_deferred``), and the log's line for
each batch gives its sizing, reserve, window and deferred rows. The CPU work is kept off the
GPU's path: ``prepare_samples`` (prompts, tokens, image dumps) runs on any thread, and each
batch's tensors are made in a helper thread while the previous batch generates.

A batch that runs out of GPU memory is retried at half its size, and no later batch of the
unit is bigger: a benchmark fails for memory only when batch 1 does not fit. Each benchmark's
record says at which sizes its samples went and which sizes failed (``batch_sizes``,
``batch_size_used``, ``batch_retries``).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import queue
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from vlmfleet.contract import AUTO_BATCH, Slot, one_line
from vlmfleet.families import Answered, InferenceError, Queued, prefix_groups
from vlmfleet.families.batch_memory import (
    RESERVE_TOKENS,
    GpuMemory,
    ModelShape,
    cache_slots,
    largest_batch,
    slot_budget,
)
from vlmfleet.families.prefix_groups import PrefixGroup, ShareKey

if TYPE_CHECKING:  # llava_static imports torch: the engine imports it when it decodes
    from vlmfleet.families.llava_static import Greedy

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
    # Language-model positions of the prompt with its image features (what memory and padding
    # depend on), and its token ids when prepare_samples made them.
    positions: int = 0
    ids: Any = None
    # The benchmark (Queued.key) the sample belongs to.
    key: str = ""
    # Times deferred (its answer outgrew its batch's cache slots): once, it waits for a batch of
    # deferred rows (``BatchPolicy.tail_tokens``); twice, for one sized for max_new_tokens.
    deferred: int = 0
    # Samples of one key share their images and prompt start (prefix_groups.share_key): in one
    # batch they are prefilled as a group. None: never grouped.
    share_key: ShareKey | None = None


@dataclass(frozen=True)
class Sizing:
    """How a batch was sized: the rows the policy allowed for its ``longest`` prompt
    (``allowed``), each row sized for ``new_tokens`` new tokens - the reserve, or for a batch of
    deferred rows (``full``) a wider window (``BatchPolicy.tail_tokens``) - and the cache slots
    the decoder may hold (``slots``; None: no limit, sized for max_new_tokens)."""

    allowed: int
    longest: int
    new_tokens: int
    full: bool
    slots: int | None

    def describe(self, rows: int) -> str:
        """The batch's size and sizing, as the worker's line for it gives them."""
        head = f"batch of {rows}{' deferred rows' if self.full else ''}"
        if self.slots is not None:
            reserve = "" if self.full else " (reserve)"
            sized = f"+ {self.new_tokens} new tokens{reserve}, {self.slots} cache slots"
        else:
            sized = "+ max_new_tokens, no slot limit"
        return f"{head} (at most {self.allowed} rows of {self.longest} positions {sized})"


class Batch(list[Sample]):
    """A batch's samples in row order, how it was sized (``sizing``), and its rows that share a
    prefix, prefilled once a group (``groups``)."""

    sizing: Sizing | None = None
    groups: tuple[PrefixGroup, ...] = ()


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


def prompt_ids(model: Any, prompt: str) -> Any:
    """The prompt's token ids, an image placeholder where each image's features go."""
    from llava.constants import IMAGE_TOKEN_INDEX
    from llava.mm_utils import tokenizer_image_token

    return tokenizer_image_token(prompt, model.tokenizer, IMAGE_TOKEN_INDEX, return_tensors="pt")


def keyed_sample(model: Any, sample: Sample) -> Sample:
    """``sample`` with its token ids, its language-model positions and its share key."""
    from llava.constants import IMAGE_TOKEN_INDEX

    ids = prompt_ids(model, sample.prompt)
    positions = len(ids) + len(sample.images) * (image_positions(model) - 1)
    digest = prefix_groups.image_digest(sample.images)
    key = prefix_groups.share_key(digest, ids.tolist(), IMAGE_TOKEN_INDEX)
    return dataclasses.replace(sample, ids=ids, positions=positions, share_key=key)


def image_positions(model: Any) -> int:
    """Language-model positions one image's features take (the vision tower's patches)."""
    return int(model.model.get_vision_tower().num_patches)


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
    """One dataset's samples: with images (batched, shortest prompt first) and without (the
    wrapper's own generate, one at a time)."""

    with_images: list[Sample] = field(default_factory=list)
    text_only: list[tuple[Any, list[dict[str, Any]]]] = field(default_factory=list)


def prepare_samples(model: Any, dataset: Any) -> PreparedSamples:
    """Every sample's prompt, token ids and image paths, built as VLMEvalKit builds them (dumps
    images)."""
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
            prepared.with_images.append(keyed_sample(view, sample))
        else:
            prepared.text_only.append((line["index"], message))
    # Similar lengths together: less padding, and the order never changes an answer.
    prepared.with_images.sort(key=lambda s: s.positions)
    return prepared


@dataclass
class BatchInputs:
    input_ids: Any
    attention_mask: Any
    images: Any
    # Rows sharing a prefix, prefilled once a group (the static decoder's).
    groups: tuple[PrefixGroup, ...] = ()


def batch_inputs(
    model: Any, samples: Sequence[Sample], groups: Sequence[PrefixGroup] = ()
) -> BatchInputs:
    """Token ids (left-padded), attention mask and image tensor of a batch, on the CPU, and its
    ``groups``."""
    import torch

    from vlmfleet.families.llava_prefill import left_padded

    tok = model.tokenizer
    ids = [s.ids if s.ids is not None else prompt_ids(model, s.prompt) for s in samples]
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.unk_token_id
    input_ids, attention = left_padded([torch.as_tensor(x, dtype=torch.long) for x in ids], pad)
    # Images of all samples in sample order: LLaVA walks them with one counter over the batch.
    images = torch.cat([model.preprocess_images(s.images) for s in samples], dim=0)
    return BatchInputs(input_ids, attention, images, tuple(groups))


@dataclass(frozen=True)
class Decoder:
    """How a slot's batches are decoded (each benchmark's record names it): ``llava_static``'s
    decoder with the settings it read (``greedy``), or transformers' ``generate``."""

    name: str
    greedy: Greedy | None = None


GENERATE = Decoder("generate")


def decoder_for(model: Any) -> Decoder:
    """The static decoder (with CUDA graphs on a GPU) where it reproduces the wrapper's
    generation settings, else generate; the log says which, and why not the static one."""
    from vlmfleet.families import llava_static

    try:
        greedy = llava_static.greedy_for(model.model, model.kwargs)
    except llava_static.Unsupported as why:
        log.info("decoding with transformers' generate: %s", why)
        return GENERATE
    graph = str(model.device).startswith("cuda")
    decoder = Decoder("static_cache_graph" if graph else "static_cache", greedy)
    log.info("decoding with a static KV cache%s", " and CUDA graphs" if graph else "")
    return decoder


def generate_inputs(
    model: Any, inputs: BatchInputs, decoder: Decoder, sizing: Sizing | None = None
) -> list[str | None]:
    """One batch's greedy decoding on prepared inputs; answers in row order, None for a row
    the static decoder deferred (its answer outgrew ``sizing.slots``)."""
    import torch

    input_ids = inputs.input_ids.to(model.device)
    images = inputs.images.to(model.device)
    attention_mask = inputs.attention_mask.to(model.device)
    config = model.model.config
    before = getattr(config, "tokenizer_padding_side", "right")
    config.tokenizer_padding_side = "left"
    deferred: set[int] = set()
    try:
        with torch.inference_mode():
            if decoder.greedy is not None:
                from vlmfleet.families import llava_static

                tally = llava_static.Tally()
                slots = sizing.slots if sizing is not None else None
                output_ids = llava_static.generate(
                    model.model, input_ids, attention_mask, images, decoder.greedy,
                    tally=tally, cache_slots=slots, groups=inputs.groups,
                )  # fmt: skip
                log_batch(len(input_ids), sizing, output_ids.shape[1] - 1, tally)
                deferred = set(tally.deferred)
            else:
                # The wrapper's KeywordsStoppingCriteria(["</s>"]) fires exactly when a row's
                # last token is eos, which generate already handles per row (finished rows get
                # padding).
                output_ids = model.model.generate(
                    input_ids, images=images, attention_mask=attention_mask, **model.kwargs
                )
    finally:
        config.tokenizer_padding_side = before
    texts = model.tokenizer.batch_decode(output_ids, skip_special_tokens=True)
    return [None if row in deferred else t.strip() for row, t in enumerate(texts)]


def log_batch(rows: int, sizing: Sizing | None, new_tokens: int, tally: Any) -> None:
    """The worker's line for a static-decoder batch: its sizing, the rows prefilled in groups
    sharing a prefix and the positions that spared, where its time went on answers of unequal
    lengths (its longest answer, the row-steps on ended rows), its widest window and the rows
    it deferred."""
    log.info(
        "%s: %d rows prefilled in groups sharing a prefix (%d prefix positions spared), "
        "%d new tokens, window %d slots a row (%d cache slots at most), %d decode "
        "row-steps, %d on ended rows, %d compactions, %d deferred",
        sizing.describe(rows) if sizing is not None else f"batch of {rows} (fixed size)",
        tally.shared_rows,
        tally.shared_positions,
        new_tokens,
        tally.window,
        tally.slots,
        tally.row_steps,
        tally.ended_row_steps,
        tally.compactions,
        len(tally.deferred),
    )


def generate_batch(
    model: Any, samples: Sequence[Sample], decoder: Decoder = GENERATE
) -> list[str | None]:
    """One batch for ``samples`` (each with at least one image); answers in order."""
    return generate_inputs(model, batch_inputs(model, samples), decoder)


def is_out_of_memory(err: BaseException) -> bool:
    """torch's CUDA out-of-memory error, also where it led to another (a CUDA graph capture
    that ran out of memory fails again when the capture ends); torch is not imported for it."""
    torch = sys.modules.get("torch")
    oom = getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None)
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(oom, type) and isinstance(seen, oom):
            return True
        # torch raises a plain RuntimeError of this text from some allocators (cuBLAS
        # workspaces).
        if isinstance(seen, RuntimeError) and "CUDA out of memory" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def free_cuda_memory() -> None:
    """Hand the failed batch's cached blocks back before the smaller retry."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


# --- batch sizes ---------------------------------------------------------------------------

# ``auto`` on a CPU: batches there buy little, and a small one keeps the first answers quick.
CPU_BATCH_SIZE = 8
# ``auto`` on CUDA never goes past this many rows, whatever memory is left: beyond it the
# per-step overhead is already spread thin (bench/README.md) and padding only grows.
MAX_AUTO_BATCH = 64


@dataclass
class BatchPolicy:
    """How many rows the next batch may take. ``ceiling`` is the most (halved for the rest of
    the queue by an out-of-memory); with a ``shape``, the rows are also sized by the memory the
    ``budget`` callable says is left, for the batch's longest prompt and the new tokens a row:
    ``reserve`` (None: ``max_new_tokens``, nothing deferred), or for a batch of deferred rows
    the window ``tail_tokens`` picks. With ``share_prefixes`` (the static decoder's; off, every row
    is prefilled whole) a batch keeps the samples of one share key together where it has room,
    and names its groups."""

    ceiling: int
    shape: ModelShape | None = None
    budget: Callable[[], int] | None = None
    max_new_tokens: int = 0
    reserve: int | None = None
    share_prefixes: bool = True

    def new_tokens(self, full: bool) -> int:
        if full or self.reserve is None:
            return self.max_new_tokens
        return min(self.reserve, self.max_new_tokens) if self.max_new_tokens else self.reserve

    def rows_for(self, longest: int, budget: int | None, tokens: int) -> int:
        """Rows of ``longest`` positions, each sized for ``tokens`` new tokens."""
        if self.shape is None or budget is None:
            return self.ceiling
        return largest_batch(self.shape, budget, longest, tokens, self.ceiling)

    def tail_tokens(self, deferred: Sequence[Sample], budget: int | None) -> int:
        """New tokens a row of a batch of ``deferred`` rows is sized for: the widest of the
        windows doubling from the reserve's up to max_new_tokens at which all of them fit one
        batch, or the narrowest where none does; max_new_tokens where any of them was deferred
        from such a batch already, or where batches are not sized by memory. A batch sized for
        max_new_tokens holds few rows of a large model that shares its GPU, so the long answers
        beyond them went in a batch of their own; in a narrower window all of them decode
        together, the rows that end leave their slots to those that go on
        (``batch_memory.rows_that_fit``), and only a row that outgrows those is deferred
        again."""
        widest = self.new_tokens(full=True)
        if (
            self.reserve is None
            or self.shape is None
            or budget is None
            or not deferred
            or any(s.deferred > 1 for s in deferred)
        ):
            return widest
        longest = max(s.positions for s in deferred)
        windows = [widest]
        while windows[-1] // 2 > self.new_tokens(full=False):
            windows.append(windows[-1] // 2)
        fitting = (w for w in windows if self.rows_for(longest, budget, w) >= len(deferred))
        return next(fitting, windows[-1])

    def sizing(
        self, longest: int, budget: int | None, rows: int, tokens: int, full: bool
    ) -> Sizing:
        """How a batch of ``rows`` with this longest prompt is sized for ``tokens`` new tokens
        a row; its cache slots limited where it was sized for the reserve, or for a window of
        deferred rows narrower than max_new_tokens."""
        limited = self.reserve is not None and (not full or tokens < self.new_tokens(full=True))
        slots = cache_slots(rows, longest, tokens) if limited else None
        return Sizing(self.rows_for(longest, budget, tokens), longest, tokens, full, slots)


def model_shape(model: Any) -> ModelShape:
    """The language model's size as the sizing rule reads it, from its config and dtype."""
    config = model.model.config
    return ModelShape(
        layers=int(config.num_hidden_layers),
        hidden=int(config.hidden_size),
        heads=int(config.num_attention_heads),
        vocab=int(config.vocab_size),
        dtype_bytes=int(model.model.dtype.itemsize),
        image_positions=image_positions(model),
    )


def cuda_memory() -> list[GpuMemory]:
    """Each GPU this process sees, with the allocator's counts."""
    import torch

    out = []
    for i in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(i)
        out.append(
            GpuMemory(free, total, torch.cuda.memory_allocated(i), torch.cuda.memory_reserved(i))
        )
    return out


def policy_for(model: Any, slot: Slot, decoder: Decoder = GENERATE) -> BatchPolicy:
    """The slot's batch size: a fixed number, or ``auto`` (by memory on CUDA, small on a CPU);
    on CUDA sized for ``RESERVE_TOKENS`` new tokens where the static decoder keeps within a
    batch's cache slots, else for ``max_new_tokens``."""
    if slot.batch_size != AUTO_BATCH:
        return BatchPolicy(ceiling=check_batch_size(slot.batch_size))
    if slot.device != "cuda":
        return BatchPolicy(ceiling=CPU_BATCH_SIZE)
    return BatchPolicy(
        ceiling=MAX_AUTO_BATCH,
        shape=model_shape(model),
        budget=lambda: slot_budget(cuda_memory(), slot.shared_by),
        max_new_tokens=int(model.kwargs.get("max_new_tokens") or 0),
        reserve=RESERVE_TOKENS if decoder.greedy is not None else None,
    )


# --- the queue -----------------------------------------------------------------------------


@dataclass
class Job:
    """One benchmark in the queue: its samples not yet batched, its answers so far, and what its
    record says of the batches its samples went in."""

    queued: Queued
    pending: list[Sample]
    text_only: list[tuple[Any, list[dict[str, Any]]]]
    batched: int
    answers: dict[Any, str] = field(default_factory=dict)
    # Batch size -> samples of this benchmark that went at it.
    sizes: dict[int, int] = field(default_factory=dict)
    retries: list[dict[str, Any]] = field(default_factory=list)
    # Samples that went in a batch with another benchmark's samples.
    shared: int = 0
    error: BaseException | None = None
    # Samples whose answer outgrew their batch's cache slots, waiting for a batch sized for
    # max_new_tokens (shortest prompt first), and how many there were in all.
    deferred: list[Sample] = field(default_factory=list)
    deferrals: int = 0
    # Samples answered from a prefill of a group sharing its prefix.
    prefix_shared: int = 0

    @property
    def waiting(self) -> bool:
        return bool(self.pending or self.deferred)

    @property
    def finished(self) -> bool:
        return self.error is not None or (not self.waiting and self.answered == self.batched)

    @property
    def answered(self) -> int:
        return len(self.answers)

    def record(self) -> dict[str, Any]:
        used = max(self.sizes) if self.sizes else None
        return {
            "batch_sizes": {str(k): self.sizes[k] for k in sorted(self.sizes, reverse=True)},
            "batch_size_used": used,
            "batch_retries": list(self.retries),
            "samples_in_shared_batches": self.shared,
            "samples_deferred": self.deferrals,
            "samples_prefix_shared": self.prefix_shared,
        }


def new_job(queued: Queued) -> Job:
    prepared: PreparedSamples = queued.prepared
    samples = [dataclasses.replace(s, key=queued.key) for s in prepared.with_images]
    samples.sort(key=lambda s: s.positions)
    return Job(queued, samples, list(prepared.text_only), len(samples))


def form_batch(pool: list[Job], policy: BatchPolicy) -> Batch:
    """The next batch: the oldest benchmark's shortest pending samples, then, where they leave
    room, the other benchmarks' samples nearest in length; as many as the policy allows for
    the batch's longest prompt. Taken samples leave their jobs' ``pending``. Deferred samples
    go in batches of their own, the oldest benchmark's first, sized for the window
    ``BatchPolicy.tail_tokens`` picks: once no benchmark has samples pending, or once the
    deferred ones fill a batch sized for max_new_tokens. So the long answers of the whole queue
    decode together, not one by one as each benchmark ends. Where
    the policy shares prefixes, each sample taken brings the waiting samples of its share key
    while there is room (a group's rows meet in one batch, wherever the order put them), and
    the batch names its groups."""
    jobs = live_jobs(pool)
    budget = policy.budget() if policy.budget is not None else None
    pending = any(job.pending for job in jobs.values())
    deferred = any(job.deferred for job in jobs.values())
    full = deferred and (not pending or deferred_fill(jobs, policy, budget))
    queues = {key: job.deferred if full else job.pending for key, job in jobs.items()}
    head = next((job for job in jobs.values() if queues[job.queued.key]), None)
    if head is None:
        return Batch()
    if full:
        tokens = policy.tail_tokens([s for job in jobs.values() for s in job.deferred], budget)
    else:
        tokens = policy.new_tokens(full=False)
    batch = Batch()
    longest = 0
    taken: set[int] = set()  # id() of the samples in the batch
    sharing = waiting_by_share_key(queues) if policy.share_prefixes else {}

    def room(sample: Sample) -> bool:
        return len(batch) + 1 <= policy.rows_for(max(longest, sample.positions), budget, tokens)

    def take(sample: Sample) -> None:
        nonlocal longest
        queues[sample.key].remove(sample)
        longest = max(longest, sample.positions)
        batch.append(sample)
        taken.add(id(sample))

    def take_with_its_group(sample: Sample) -> bool:
        """``sample`` and the waiting samples of its share key, while there is room."""
        if not room(sample):
            return False
        take(sample)
        siblings = sharing.get(sample.share_key) if sample.share_key is not None else None
        for sibling in siblings or ():
            if id(sibling) in taken:
                continue
            if not room(sibling):
                break
            take(sibling)
        return True

    first = queues[head.queued.key]
    while first and take_with_its_group(first[0]):
        pass
    if not first and batch:
        target = batch[-1].positions
        others = sorted(
            (s for key, samples in queues.items() if samples is not first for s in samples),
            key=lambda s: abs(s.positions - target),
        )
        for sample in others:
            if id(sample) not in taken and not take_with_its_group(sample):
                break
    if not batch:
        # Nothing fits by the estimate: batch 1 is tried whatever it says.
        take(first[0])
    batch.sizing = policy.sizing(longest, budget, len(batch), tokens, full)
    batch.groups = batch_groups(batch) if policy.share_prefixes else ()
    return batch


def waiting_by_share_key(queues: dict[str, list[Sample]]) -> dict[ShareKey, list[Sample]]:
    """The waiting samples with a share key, by key, in queue order."""
    out: dict[ShareKey, list[Sample]] = {}
    for waiting in queues.values():
        for sample in waiting:
            if sample.share_key is not None:
                out.setdefault(sample.share_key, []).append(sample)
    return out


def batch_groups(batch: Sequence[Sample]) -> tuple[PrefixGroup, ...]:
    """The groups of a batch's rows sharing a prefix (``prefix_groups.find_groups``)."""
    keys = [s.share_key for s in batch]
    if sum(k is not None for k in keys) < 2:
        return ()
    ids = [token_ids(s) if s.share_key is not None else [] for s in batch]
    return tuple(prefix_groups.find_groups(keys, ids))


def token_ids(sample: Sample) -> list[int]:
    """A sample's prompt token ids as a list (prepare_samples keeps them as a tensor)."""
    ids = sample.ids
    return ids.tolist() if hasattr(ids, "tolist") else list(ids)


def deferred_fill(jobs: dict[str, Job], policy: BatchPolicy, budget: int | None) -> bool:
    """Whether the pool's deferred samples fill a batch sized for max_new_tokens."""
    deferred = [s for job in jobs.values() for s in job.deferred]
    longest = max((s.positions for s in deferred), default=0)
    return len(deferred) >= policy.rows_for(longest, budget, policy.new_tokens(full=True))


def live_jobs(pool: list[Job]) -> dict[str, Job]:
    """The pool's benchmarks that have not failed, by key: a failed one's samples still in a
    batch are dropped."""
    return {job.queued.key: job for job in pool if job.error is None}


def put_back(pool: list[Job], batch: Sequence[Sample]) -> None:
    jobs = live_jobs(pool)
    for sample in batch:
        job = jobs.get(sample.key)
        if job is not None:
            waiting = job.deferred if sample.deferred else job.pending
            waiting.append(sample)
            waiting.sort(key=lambda s: s.positions)


def finish_text_only(model: Any, job: Job) -> None:
    """A benchmark's samples without an image: the wrapper's own generate, one at a time."""
    if not job.text_only:
        return
    dataset = job.queued.dataset
    model.set_dump_image(dataset.dump_image)
    for index, message in job.text_only:
        job.answers[index] = model.generate(message=message, dataset=dataset.dataset_name)


def generate_queue(
    model: Any, slot: Slot, incoming: queue.Queue[Queued | None]
) -> Iterator[Answered]:
    """The family's ``generate_queue`` with the slot's batch policy."""
    check_model(model)
    decoder = decoder_for(model)
    return run_queue(model, incoming, policy_for(model, slot, decoder), decoder)


def run_queue(
    model: Any, incoming: queue.Queue[Queued | None], policy: BatchPolicy, decoder: Decoder
) -> Iterator[Answered]:
    """Answer every benchmark put on ``incoming`` (None ends it) as one queue of samples,
    yielding each as soon as its last sample is done (module docstring). The next batch's
    tensors are made on a helper thread while the current one generates."""
    # transformers' generate prefills every row whole.
    policy.share_prefixes = policy.share_prefixes and decoder.greedy is not None
    pool: list[Job] = []
    ended = False
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="vlmfleet-ahead") as maker:
        current: tuple[Batch, Future[BatchInputs]] | None = None
        while True:
            # New benchmarks join while at most one other than the oldest has samples left
            # (enough to fill its last batch), and beyond that while those waiting could not fill
            # a batch: small benchmarks share full batches. The worker's room bounds the memory.
            while not ended and admits(pool, policy):
                nothing_to_do = current is None and not any(job.waiting for job in pool)
                if nothing_to_do and any(job.finished for job in pool):
                    break  # hand the finished ones back before waiting for more
                try:
                    queued = incoming.get(block=nothing_to_do)
                except queue.Empty:
                    break
                if queued is None:
                    ended = True
                else:
                    pool.append(new_job(queued))
            for job in [job for job in pool if job.finished]:
                pool.remove(job)
                yield answered(model, job, decoder)
            if ended and not pool and current is None:
                return
            batch = form_batch(pool, policy)
            upcoming = (
                (batch, maker.submit(batch_inputs, model, batch, batch.groups)) if batch else None
            )
            if current is not None:
                generate_current(model, pool, policy, decoder, current, upcoming)
                if upcoming is not None and not upcoming[0]:
                    upcoming = None  # gone back to the queue after an out-of-memory
            current = upcoming


def admits(pool: list[Job], policy: BatchPolicy) -> bool:
    """Whether the queue takes the next benchmark in: fewer than two with samples left, or
    fewer samples left than the biggest batch."""
    pending = [job for job in pool if job.pending]
    return len(pending) < 2 or sum(len(job.pending) for job in pending) < policy.ceiling


def generate_current(
    model: Any,
    pool: list[Job],
    policy: BatchPolicy,
    decoder: Decoder,
    current: tuple[Batch, Future[BatchInputs]],
    upcoming: tuple[Batch, Future[BatchInputs]] | None,
) -> None:
    """Generate ``current`` and file its answers under their benchmarks, its deferred rows under
    their benchmarks' ``deferred``. Out of memory: it and
    ``upcoming`` go back to their queues (``upcoming``'s samples are cleared from it) and the
    policy's ceiling halves; at batch 1 its benchmark fails. Another error fails the benchmarks
    of the batch; the others go on."""
    batch, future = current
    jobs = live_jobs(pool)
    if not any(s.key in jobs for s in batch):
        future.cancel()
        return
    try:
        texts = generate_inputs(model, future.result(), decoder, batch.sizing)
    except Exception as err:
        involved = sorted({s.key for s in batch if s.key in jobs})
        if not is_out_of_memory(err):
            log.error("a batch of %s raised: %s", ", ".join(involved), err)
            for key in involved:
                jobs[key].error = err
            return
        failed = one_line(f"{type(err).__name__}: {err}", 200)
        retry = {"batch_size": len(batch), "error": failed}
        for key in involved:
            jobs[key].retries.append(retry)
        if len(batch) == 1:
            job = jobs[batch[0].key]
            tried = ", ".join(str(r["batch_size"]) for r in job.retries)
            job.error = InferenceError(
                f"out of GPU memory even at batch 1 (tried {tried}): {failed}",
                {**job.record(), "batch_size_used": None},
            )
        else:
            put_back(pool, batch)
        if upcoming is not None:
            upcoming[1].cancel()
            put_back(pool, upcoming[0])
            upcoming[0].clear()
        policy.ceiling = max(1, len(batch) // 2)
        log.warning(
            "out of GPU memory at batch %d, going on at %d at most: %s",
            len(batch),
            policy.ceiling,
            failed,
        )
        free_cuda_memory()
        return
    shared = len({s.key for s in batch}) > 1
    grouped = prefix_groups.grouped_rows(batch.groups)
    for row, (sample, text) in enumerate(zip(batch, texts, strict=True)):
        job = jobs.get(sample.key)
        if job is None:
            continue
        if text is None:
            job.deferred.append(dataclasses.replace(sample, deferred=sample.deferred + 1))
            job.deferred.sort(key=lambda s: s.positions)
            job.deferrals += not sample.deferred  # samples, not deferrals
            continue
        job.answers[sample.index] = text
        job.sizes[len(batch)] = job.sizes.get(len(batch), 0) + 1
        job.shared += shared
        job.prefix_shared += row in grouped


def answered(model: Any, job: Job, decoder: Decoder) -> Answered:
    """A finished job as the worker takes it: its text-only samples answered first."""
    key = job.queued.key
    if job.error is None:
        try:
            finish_text_only(model, job)
        except Exception as err:
            job.error = err
    if job.error is not None:
        record = job.error.record if isinstance(job.error, InferenceError) else job.record()
        answers: dict[Any, str] = {}
    else:
        log.info(
            "%s: %d samples batched (%s; %d prefilled in groups sharing a prefix; %d deferred "
            "past the reserve and batched again), %d without image one at a time",
            key,
            job.answered,
            ", ".join(f"{n} at batch {size}" for size, n in sorted(job.sizes.items(), reverse=True))
            or "-",
            job.prefix_shared,
            job.deferrals,
            len(job.text_only),
        )
        record, answers = job.record(), dict(job.answers)
    return Answered(key, answers, {**record, "decoder": decoder.name}, job.error)


# --- one benchmark at a time (the agreement tool, tests) --------------------------------------


def answer_all(
    model: Any, datasets: Sequence[tuple[str, Any, PreparedSamples]], policy: BatchPolicy
) -> dict[str, Answered]:
    """Every dataset's answers through one queue with the slot's decoder, by key; raises the
    first benchmark's error."""
    incoming: queue.Queue[Queued | None] = queue.Queue()
    for key, dataset, prepared in datasets:
        incoming.put(Queued(key, dataset, prepared))
    incoming.put(None)
    check_model(model)
    out = {a.key: a for a in run_queue(model, incoming, policy, decoder_for(model))}
    for answer in out.values():
        if answer.error is not None:
            raise answer.error
    return out


def infer_prepared(
    model: Any,
    work_dir: str,
    model_name: str,
    dataset: Any,
    prepared: PreparedSamples,
    batch_size: int,
    reserve: int | None = None,
) -> tuple[str, dict[str, Any]]:
    """One dataset at a fixed ``batch_size`` (each row given cache slots for ``reserve`` new
    tokens, if given): infer_data_job's file and the record's fields."""
    from vlmfleet.predictions import write_predictions

    policy = BatchPolicy(ceiling=check_batch_size(batch_size), reserve=reserve)
    done = answer_all(model, [(dataset.dataset_name, dataset, prepared)], policy)
    answer = done[dataset.dataset_name]
    return write_predictions(work_dir, model_name, dataset, answer.answers), answer.record
