"""The known-answer checkpoints as hosts use them: where they ship, a worker's copy of one, what
each skill was taught to answer, and vlm-verify's spot check.

Random weights score 0 on everything, so no run of them can tell a right score from a wrong
one. These checkpoints are small LLaVA-1.5 models in the real on-disk format (the tiny
checkpoint's layout, with a larger Llama and vision tower), trained on the synthetic scenes of
``vlmfleet.smoke_data``: every prompt is built by VLMEvalKit's own dataset classes and the LLaVA
wrapper, exactly as the worker builds it (``taught_examples``), and the target is the answer the
row's image determines. Two skills:

- ``strong``: taught every row's right answer, so it is right on (nearly) every question;
- ``weak``: taught a wrong answer whenever a question asks to count or to read a number
  (``asks_a_number``), so it is right on a known part.

Scores of a run are then checkable: a test computes each benchmark's expected score from the
answer key and the predictions with its own arithmetic.

Training them is a tool, not part of the image (docker/transformers-4.37/tools/; how to run it:
docker/transformers-4.37/README.md):

    python -m vlmfleet_tools.known_answer_training OUT_ROOT   # OUT_ROOT/llava-known-{strong,weak}
"""

from __future__ import annotations

import ast
import os
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlmfleet.contract import Benchmark
from vlmfleet.smoke_data import IMAGE_ANSWER
from vlmfleet.tiny_checkpoint import KNOWN_ANSWER_MARKER as MARKER
from vlmfleet.tiny_checkpoint import ensure_copy

SKILLS = ("strong", "weak")
# The checkpoints ship beside the package: docker/transformers-4.37/known_answer/ in the
# repository, /opt/vlm-image/known_answer/ in the image.
SHIPPED_ROOT = Path(__file__).resolve().parents[2] / "known_answer"
# What the weak checkpoint says to an open question it is taught wrong: no scorer of an open
# benchmark counts it right.
WRONG_OPEN_ANSWER = "unknown"


# The checkpoints' training set: the default matrix's benchmarks as the catalogue declares them
# (name, kind, VLMEvalKit type, score scale, smoke shape; the image has no catalogue, and
# tests/unit/worker/test_smoke_data.py checks that the two agree). The order is the training data's
# order, part of how the shipped checkpoints were made. The agreement tool and the tests run
# the same list.
DEFAULT_BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark("MMBench_DEV_EN", "mcq", "MCQ", 1.0, "mmbench"),
        Benchmark("MMBench_DEV_KO", "mcq", "MCQ", 1.0, "mmbench_ko"),
        Benchmark("SEEDBench_IMG", "mcq", "MCQ", 1.0, "plain_mcq"),
        Benchmark("SEEDBench_IMG_KO", "mcq", "MCQ", 1.0, "plain_mcq_ko"),
        Benchmark("AI2D_TEST", "mcq", "MCQ", 1.0, "plain_mcq"),
        Benchmark("ScienceQA_VAL", "mcq", "MCQ", 1.0, "scienceqa"),
        Benchmark("MMStar", "mcq", "MCQ", 1.0, "mmstar"),
        Benchmark("RealWorldQA", "mcq", "MCQ", 1.0, "realworldqa"),
        Benchmark("VisOnlyQA-VLMEvalKit", "mcq", "MCQ", 1.0, "visonlyqa"),
        Benchmark("MMMU_DEV_VAL", "mcq", "MCQ", 1.0, "mmmu"),
        Benchmark("BLINK", "mcq", "MCQ", 1.0, "blink"),
        Benchmark("POPE", "yorn", "Y/N", 100.0, "yorn_pope"),
        Benchmark("HallusionBench", "yorn", "Y/N", 100.0, "yorn_hallusion"),
        Benchmark("TextVQA_VAL", "vqa", "VQA", 100.0, "vqa_textvqa"),
        Benchmark("GQA_TestDev_Balanced", "vqa", "VQA", 100.0, "vqa_color"),
        Benchmark("ChartQA_TEST", "vqa", "VQA", 100.0, "vqa_bar"),
        Benchmark("DocVQA_VAL", "vqa", "VQA", 100.0, "vqa_doc"),
        Benchmark("InfoVQA_VAL", "vqa", "VQA", 100.0, "vqa_doc"),
        Benchmark("OCRBench", "vqa", "VQA", 100.0, "vqa_ocrbench"),
        Benchmark("VizWiz", "vqa", "VQA", 100.0, "vqa_vizwiz"),
    )
}


def checkpoint_name(skill: str) -> str:
    """Folder name of a skill's checkpoint; LLaVA's builder needs "llava" in it."""
    if skill not in SKILLS:
        raise ValueError(f"known-answer skill {skill!r} is not valid; valid: {', '.join(SKILLS)}")
    return f"llava-known-{skill}"


def asks_a_number(kind: str, line: Any) -> bool:
    """Whether the row asks to count or to read a number (the weak checkpoint's blind spot)."""
    if kind == "mcq":
        question = str(line["question"])
        return "How many" in question or "몇 개" in question
    return kind == "vqa" and right_answer(kind, line).isdigit()


def ensure_known_answer(ckpt_dir: Path, skill: str) -> Path:
    """A writable copy of ``skill``'s shipped checkpoint at ``ckpt_dir`` (its config names the
    vision tower by absolute path, so a copy is relocated)."""
    shipped = SHIPPED_ROOT / checkpoint_name(skill)
    if not (shipped / MARKER).is_file():
        raise FileNotFoundError(
            f"known-answer checkpoint {shipped} is missing; build it with "
            f"python -m vlmfleet_tools.known_answer_training {SHIPPED_ROOT} "
            "(docker/transformers-4.37/README.md)"
        )
    return ensure_copy(shipped, ckpt_dir)


def is_taught_wrong(kind: str, line: Any, skill: str) -> bool:
    """Whether ``skill``'s checkpoint is trained on a wrong answer for this row: the strong one
    never, the weak one whenever the row asks to count or to read a number."""
    return skill == "weak" and asks_a_number(kind, line)


def _answer_list(text: str) -> list[str]:
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return [text]
    return [str(v) for v in value] if isinstance(value, list) else [text]


def right_answer(kind: str, line: Any) -> str:
    """The answer the row's image determines, as a model should say it."""
    if kind == "mcq" or kind == "yorn":
        return str(line["answer"])
    # A graded row's humans need not agree with the image (smoke_data.IMAGE_ANSWER).
    if IMAGE_ANSWER in line and str(line[IMAGE_ANSWER]) not in ("", "nan"):
        return str(line[IMAGE_ANSWER])
    # VizWiz keeps its ten answers under "answers"; the other VQA sets under "answer", one
    # string or a list written as a Python literal. The most common answer is the right one.
    raw = str(
        line["answers"] if "answers" in line and str(line["answers"]) != "nan" else line["answer"]
    )
    return Counter(_answer_list(raw)).most_common(1)[0][0]


def wrong_answer(kind: str, line: Any, options: list[str]) -> str:
    right = right_answer(kind, line)
    if kind == "yorn":
        return "No" if right == "Yes" else "Yes"
    if kind == "mcq" and right in options:
        return options[(options.index(right) + 1) % len(options)]
    return WRONG_OPEN_ANSWER


@dataclass
class Example:
    benchmark: str
    index: Any
    prompt: str
    images: list[str]
    answer: str


def _options(line: Any) -> list[str]:
    import pandas as pd

    return [c for c in "ABCDEFGH" if c in line and not pd.isna(line[c]) and str(line[c]) != ""]


def taught_examples(
    model: Any,
    lmu_root: Path,
    skill: str,
    questions: int,
    benchmarks: list[str] | None = None,
) -> list[Example]:
    """Each smoke benchmark's (default: every one's) first ``questions`` rows, prompted as the
    worker prompts them, with the answer ``skill``'s checkpoint is taught: its training set, and
    what the spot check asks."""
    from vlmeval.dataset import build_dataset

    from vlmfleet.datasets import LMU_ENV, use_synthetic_dataset
    from vlmfleet.families.llava_batched import build_message, to_sample

    os.environ[LMU_ENV] = str(lmu_root)
    examples = []
    for name, bench in DEFAULT_BENCHMARKS.items():
        if benchmarks is not None and name not in benchmarks:
            continue
        kind = bench.kind
        use_synthetic_dataset(lmu_root, name, bench.smoke_shape, questions)
        dataset = build_dataset(name)
        model.set_dump_image(dataset.dump_image)
        data = dataset.data
        for i in range(len(data)):
            line = data.iloc[i]
            sample = to_sample(model, line["index"], build_message(model, dataset, line))
            if is_taught_wrong(kind, line, skill):
                answer = wrong_answer(kind, line, _options(line))
            else:
                answer = right_answer(kind, line)
            examples.append(Example(name, line["index"], sample.prompt, sample.images, answer))
    return examples


def answered_right(model: Any, examples: list[Example], batch_size: int = 32) -> dict[str, float]:
    """Per benchmark, the share of examples whose greedy answer is exactly the trained one."""
    from vlmfleet.families.llava_batched import Sample, generate_batch

    # Trained answers are a few tokens: a cap keeps an unlearned (endless) answer short.
    model.kwargs["max_new_tokens"] = 16
    hits: dict[str, list[bool]] = {}
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        samples = [Sample(e.index, e.prompt, e.images) for e in chunk]
        for e, text in zip(chunk, generate_batch(model, samples), strict=True):
            hits.setdefault(e.benchmark, []).append(text == e.answer)
    return {name: sum(h) / len(h) for name, h in hits.items()}


# What the image's verify step asks each checkpoint: the strong one a benchmark answered from
# the image alone (one question text for every row), the weak one one it answers as trained.
SPOT_CHECKS = {"strong": "TextVQA_VAL", "weak": "SEEDBench_IMG"}


def spot_check(skill: str, questions: int = 4) -> str:
    """Load the shipped checkpoint of ``skill`` on the CPU and ask it ``questions`` questions of
    its SPOT_CHECKS benchmark; raises unless it answers each as trained (the image's verify)."""
    from vlmfleet.families.llava_wrapper import DeviceLLaVA

    benchmark = SPOT_CHECKS[skill]
    with tempfile.TemporaryDirectory(prefix="vlm-known-") as tmp:
        work = Path(tmp)
        model = DeviceLLaVA(
            str(ensure_known_answer(work / checkpoint_name(skill), skill)), device="cpu"
        )
        examples = taught_examples(model, work / "LMUData", skill, questions, [benchmark])
        right = answered_right(model, examples)[benchmark]
    if right < 1.0:
        raise RuntimeError(
            f"{checkpoint_name(skill)} answers {right:.0%} of {questions} {benchmark} questions "
            "as trained, not all: the shipped checkpoint does not fit the smoke data"
        )
    return f"{checkpoint_name(skill)}: {questions} of {questions} {benchmark} answers as trained"
