"""Synthetic benchmark data in VLMEvalKit's TSV format, for smoke runs.

A smoke run writes rows shaped like a benchmark's real TSV (the columns its dataset class and
evaluator read), with deterministic images drawn with PIL (a few hundred pixels a side), so that
VLMEvalKit's own dataset classes, prompts and evaluators run unchanged. Which shape a benchmark
gets is the slot file's ``smoke_shape`` (the catalogue's, per benchmark or per kind): the keys
of ``GENERATORS``. A generator takes the benchmark's name, which seeds its random choices, and
a number of questions. Only Pillow and the standard library are used: the controller's unit
tests import this module.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import random
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from vlmfleet.selection import CIRCULAR_OFFSET

COLORS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (230, 200, 30),
    "purple": (140, 60, 170),
    "orange": (240, 140, 30),
}
# The figures a scene draws (a "smoke shape" is something else: a generator's name).
FIGURES = ("circle", "square", "triangle")
KO_COLORS = {
    "red": "빨간색",
    "green": "초록색",
    "blue": "파란색",
    "yellow": "노란색",
    "purple": "보라색",
    "orange": "주황색",
}
KO_FIGURES = {"circle": "원", "square": "사각형", "triangle": "삼각형"}
OCRBENCH_CATEGORIES = (
    "Regular Text Recognition",
    "Scene Text-centric VQA",
    "Doc-oriented VQA",
    "Key Information Extraction",
    "Digit String Recognition",
)
DEFAULT_QUESTIONS = 24

Row = dict[str, Any]
# A generator: (benchmark name, number of questions) -> rows.
Generator = Callable[[str, int], list[Row]]


def _rng(name: str, i: int) -> random.Random:
    return random.Random(zlib.crc32(f"{name}/{i}".encode()))


# Every benchmark's question i is about scene i: the benchmarks ask different questions of the
# same scenes (a known-answer model learns each scene once), and scene i never depends on how
# many questions a file has.
SCENE_KEY = "scene"


def draw_scene(i: int, *, variant: int = 0) -> tuple[bytes, dict[str, Any]]:
    """Scene i: a PNG with coloured shapes, a caption and a small bar chart; returns its facts."""
    rng = _rng(f"{SCENE_KEY}#img{variant}", i)
    width, height = rng.choice([(336, 252), (320, 320), (400, 300), (280, 360)])
    color = rng.choice(list(COLORS))
    shape = rng.choice(FIGURES)
    count = rng.randint(1, 4)
    word = rng.choice(["STOP", "EXIT", "OPEN", "SALE", "PARK", "TAXI"])
    number = rng.randint(10, 99)
    bars = [rng.randint(5, 60) for _ in range(3)]
    img = Image.new("RGB", (width, height), (245, 245, 240))
    draw = ImageDraw.Draw(img)
    for k in range(count):
        x0 = 15 + k * (width // 5)
        y0 = 30
        size = min(width // 6, 60)
        box = (x0, y0, x0 + size, y0 + size)
        fill = COLORS[color]
        if shape == "circle":
            draw.ellipse(box, fill=fill)
        elif shape == "square":
            draw.rectangle(box, fill=fill)
        else:
            draw.polygon([(x0, y0 + size), (x0 + size // 2, y0), (x0 + size, y0 + size)], fill=fill)
    # Large enough to stay legible when a model shrinks the scene to a few dozen pixels.
    font = ImageFont.load_default(size=height // 6)
    draw.text((15, height - 70), f"{word} {number}", fill=(0, 0, 0), font=font)
    base = height - 80
    for k, bar in enumerate(bars):
        x = width - 100 + k * 28
        draw.rectangle((x, base - bar, x + 18, base), fill=(90, 90, 90))
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    facts = {
        "color": color,
        "shape": shape,
        "count": count,
        "word": word,
        "number": number,
        "bars": bars,
    }
    return buf.getvalue(), facts


def _b64(png: bytes) -> str:
    return base64.b64encode(png).decode("ascii")


def _options(
    rng: random.Random, correct: str, pool: list[str], n: int = 4
) -> tuple[list[str], str]:
    others = [x for x in pool if x != correct]
    rng.shuffle(others)
    opts = [correct, *others[: n - 1]]
    rng.shuffle(opts)
    return opts, "ABCDE"[opts.index(correct)]


def _mcq_core(name: str, i: int, *, korean: bool = False, n_options: int = 4) -> Row:
    rng = _rng(name, i)
    png, facts = draw_scene(i)
    ask = rng.choice(["color", "shape", "count"])
    if ask == "color":
        pool, correct = list(COLORS), facts["color"]
        question = "What color are the shapes in the image?"
        if korean:
            pool = [KO_COLORS[c] for c in pool]
            correct = KO_COLORS[correct]
            question = "이미지 속 도형은 무슨 색입니까?"
    elif ask == "shape":
        pool, correct = [*FIGURES, "star", "hexagon"], facts["shape"]
        question = "Which shape is drawn in the image?"
        if korean:
            pool = [KO_FIGURES.get(s, s) for s in pool]
            correct = KO_FIGURES[correct]
            question = "이미지에 그려진 도형은 무엇입니까?"
    else:
        pool, correct = [str(k) for k in range(1, 7)], str(facts["count"])
        question = "How many shapes are there in the image?"
        if korean:
            question = "이미지에 도형이 몇 개 있습니까?"
    opts, answer = _options(rng, correct, pool, n_options)
    row: Row = {"index": i, "question": question, "answer": answer, "image": _b64(png)}
    for letter, opt in zip("ABCDE", opts, strict=False):
        row[letter] = opt
    row["category"] = f"{ask}_recognition"
    return row


def _rotate(row: Row, k: int, n_options: int) -> Row:
    """MMBench's circular copy k: options shifted by k, answer letter moved with them."""
    letters = "ABCDE"[:n_options]
    opts = [row[c] for c in letters]
    correct = row[row["answer"]]
    shifted = opts[k:] + opts[:k]
    new = dict(row)
    for c, opt in zip(letters, shifted, strict=True):
        new[c] = opt
    new["answer"] = letters[shifted.index(correct)]
    new["index"] = row["index"] + k * CIRCULAR_OFFSET
    # Real MMBench rows point at their main row's image by index instead of repeating it.
    new["image"] = str(row["index"])
    return new


def mmbench(*, korean: bool = False) -> Generator:
    """MMBench's circular layout: every question, then its three rotations."""

    def build(name: str, n: int) -> list[Row]:
        main = []
        for i in range(n):
            # VLMEvalKit caches MMBench images per index in one folder for all MMBench sets, so
            # the English and Korean sets must share their images (they do: scene i).
            row = _mcq_core(name, i, korean=korean)
            row["hint"] = (
                "" if i % 3 else ("힌트: 이미지를 보세요." if korean else "Look at the image.")
            )
            row["l2-category"] = "perception"
            row["split"] = "dev"
            main.append(row)
        # As in the real file: every question first, then the rotations.
        return main + [_rotate(r, k, 4) for k in (1, 2, 3) for r in main]

    return build


def plain_mcq(
    *,
    korean: bool = False,
    hint: bool = False,
    n_options: int = 4,
    extra: dict[str, Callable[[int], Any]] | None = None,
) -> Generator:
    def build(name: str, n: int) -> list[Row]:
        rows = []
        for i in range(n):
            row = _mcq_core(name, i, korean=korean, n_options=n_options)
            if hint:
                row["hint"] = "Context: a drawing." if i % 2 == 0 else ""
            for key, fn in (extra or {}).items():
                row[key] = fn(i)
            rows.append(row)
        return rows

    return build


def scienceqa(name: str, n: int) -> list[Row]:
    rows = plain_mcq(hint=True, extra={"split": lambda i: "val", "skills": lambda i: "shapes"})(
        name, n
    )
    # Some ScienceQA questions have fewer options: a missing D must stay missing.
    for i, row in enumerate(rows):
        if i % 4 == 3 and row["answer"] != "D":
            row["D"] = ""
    return rows


# Every MMMU_OPEN_EVERY-th MMMU question is open (no options), as MMMU has open questions.
MMMU_OPEN_EVERY = 4


def mmmu_open(name: str, i: int) -> Row:
    png, facts = draw_scene(i)
    return {
        "index": i,
        "question": "<image 1> How many shapes are there in the image? Answer with a number.",
        "answer": str(facts["count"]),
        "image": _b64(png),
        "category": "Math",
        "split": "dev" if i % 2 == 0 else "validation",
        "question_type": "open",
    }


def mmmu(name: str, n: int) -> list[Row]:
    rows = []
    for i in range(n):
        if i % MMMU_OPEN_EVERY == MMMU_OPEN_EVERY - 1:
            rows.append(mmmu_open(name, i))
            continue
        row = _mcq_core(name, i)
        row["split"] = "dev" if i % 2 == 0 else "validation"
        row["category"] = ["Art", "Math", "Physics"][i % 3]
        if i % 3 == 2:
            # Multi-image question: the images are referenced in the text as <image k>.
            png2, _ = draw_scene(i, variant=1)
            row["image"] = str([row["image"], _b64(png2)])
            row["question"] = "Compare <image 1> and <image 2>. " + row["question"]
        else:
            row["question"] = "<image 1> " + row["question"]
        row["question_type"] = "multiple-choice"
        rows.append(row)
    return rows


def blink(name: str, n: int) -> list[Row]:
    rows = []
    for i in range(n):
        row = _mcq_core(name, i)
        row["category"] = ["Counting", "Relative_Depth", "Multi-view_Reasoning"][i % 3]
        row["split"] = "val"
        if i % 2 == 1:
            png2, _ = draw_scene(i, variant=1)
            row["image"] = str([row["image"], _b64(png2)])
        rows.append(row)
    return rows


def yorn_pope(name: str, n: int) -> list[Row]:
    rows = []
    for i in range(n):
        rng = _rng(name, i)
        png, facts = draw_scene(i)
        present = rng.random() < 0.5
        shape = (
            facts["shape"] if present else rng.choice([s for s in FIGURES if s != facts["shape"]])
        )
        rows.append(
            {
                "index": i,
                "question": f"Is there a {shape} in the image?",
                "answer": "Yes" if present else "No",
                "category": ["adversarial", "popular", "random"][i % 3],
                "image": _b64(png),
            }
        )
    return rows


def yorn_hallusion(name: str, n: int) -> list[Row]:
    rows = []
    for i in range(n):
        rng = _rng(name, i)
        png, facts = draw_scene(i // 2)  # two questions per figure, as in the benchmark
        asked = rng.choice(list(COLORS))
        category = "VD" if i % 4 < 2 else "VS"
        subcat = ["illusion", "chart", "figure"][(i // 4) % 3]
        set_id, figure_id, question_id = i // 4, (i // 2) % 2, i % 2
        rows.append(
            {
                # Hallusion_rating reads set/figure/question ids from fields 3, 4, 5 of the index.
                "index": f"{category}_{subcat}_x_{set_id}_{figure_id}_{question_id}",
                "question": f"Are the shapes in the image {asked}?",
                "answer": "Yes" if asked == facts["color"] else "No",
                "category": category,
                "l2-category": subcat,
                "image": _b64(png),
            }
        )
    return rows


def _vqa_facts(name: str, i: int) -> tuple[random.Random, bytes, dict[str, Any]]:
    png, facts = draw_scene(i)
    return _rng(name, i), png, facts


# The column of a VQA row that says what its image shows, as the known-answer checkpoints were
# trained to say it (known_answer_checkpoints.right_answer). The human answers may give it less
# credit: rows graded by GRADES get partial or near-miss gold answers, so that a run's
# per-question scores take values between 0 and 1.
IMAGE_ANSWER = "image_answer"
# Row i of a graded VQA shape is of grade i % GRADES: 0 is the plain row, whose gold answers
# are what the image shows.
GRADES = 4


def vqa_votes(plain: list[str], seen: str, other: str, last: str, grade: int) -> list[str]:
    """Ten human answers: grade 0 the ``plain`` ones; grade k gives ``seen`` k times (VQA
    accuracy, averaged over the leave-one-out subsets: 0.3, 0.6, 0.9 for 1, 2, 3), ``other``
    most often (the answer most humans gave) and ``last`` once."""
    if grade == 0:
        return plain
    return [other] * (9 - grade) + [seen] * grade + [last]


def vqa_textvqa(name: str, n: int) -> list[Row]:
    rows = []
    for i in range(n):
        _, png, facts = _vqa_facts(name, i)
        seen = facts["word"].lower()
        plain = [seen] * 7 + [facts["word"]] * 2 + ["sign"]
        answers = vqa_votes(plain, seen, f"{seen} sign", "sign", i % GRADES)
        rows.append(
            {
                "index": i,
                "question": "What word is written in the image?",
                "answer": str(answers),
                IMAGE_ANSWER: seen,
                "image": _b64(png),
            }
        )
    return rows


def vqa_color(name: str, n: int) -> list[Row]:
    rows = []
    for i in range(n):
        _, png, facts = _vqa_facts(name, i)
        rows.append(
            {
                "index": i,
                "question": "What color are the shapes?",
                "answer": facts["color"],
                "image": _b64(png),
            }
        )
    return rows


# ChartQA's gold number relative to what the chart shows, by grade: equal, 4% above (within
# the 5% relaxed tolerance), 5.5% above (just outside it), 4% below (within it).
CHART_FACTORS = (1.0, 1.04, 1.055, 0.96)


def vqa_bar(name: str, n: int) -> list[Row]:
    """ChartQA's shape: a chart question, and the split its evaluator reports by."""
    rows = []
    for i in range(n):
        _, png, facts = _vqa_facts(name, i)
        seen = facts["bars"][0]
        factor = CHART_FACTORS[i % GRADES]
        rows.append(
            {
                "index": i,
                "question": "What is the value of the first bar?",
                "answer": str(seen) if factor == 1.0 else f"{seen * factor:.2f}",
                IMAGE_ANSWER: str(seen),
                "image": _b64(png),
                "split": "human" if i % 2 == 0 else "augmented",
            }
        )
    return rows


def doc_golds(seen: str, grade: int) -> list[str]:
    """DocVQA's gold answers for a number the image shows, by grade: the number itself; a
    near miss of one edit in three characters (ANLS 1 - 1/3) beside a far one; one of three
    edits in five (normalised distance 0.6, just past ANLS's 0.5 threshold: 0); both of those
    (the best of them counts)."""
    return [
        [seen, f"{seen}."],
        [f"${seen}", f"{seen} usd"],
        [f"{seen}.00"],
        [f"{seen}.00", f"{seen}%"],
    ][grade]


def vqa_doc(name: str, n: int) -> list[Row]:
    rows = []
    for i in range(n):
        _, png, facts = _vqa_facts(name, i)
        seen = str(facts["number"])
        rows.append(
            {
                "index": i,
                "question": "What number is printed next to the word?",
                "answer": str(doc_golds(seen, i % GRADES)),
                IMAGE_ANSWER: seen,
                "image": _b64(png),
            }
        )
    return rows


def vqa_ocrbench(name: str, n: int) -> list[Row]:
    rows = []
    for i in range(n):
        _, png, facts = _vqa_facts(name, i)
        rows.append(
            {
                "index": i,
                "question": "What is written in the image?",
                "answer": str([facts["word"], f"{facts['word']} {facts['number']}"]),
                "category": OCRBENCH_CATEGORIES[i % len(OCRBENCH_CATEGORIES)],
                "dataset": "synthetic",
                "image": _b64(png),
            }
        )
    return rows


def vqa_vizwiz(name: str, n: int) -> list[Row]:
    rows = []
    for i in range(n):
        _, png, facts = _vqa_facts(name, i)
        seen = facts["color"]
        plain = [seen] * 8 + ["unanswerable"] * 2
        answers = vqa_votes(plain, seen, f"{seen} shapes", "unanswerable", i % GRADES)
        # VizWiz's evaluator reads the list from `answers` (not `answer`).
        rows.append(
            {
                "index": i,
                "question": "What color is this?",
                "answers": str(answers),
                IMAGE_ANSWER: seen,
                "image": _b64(png),
            }
        )
    return rows


# Every smoke shape by name: the slot file's smoke_shape picks one. plain_mcq, yorn_pope and
# vqa_color are the kinds' own (catalogue_kinds); the others follow one benchmark's columns.
GENERATORS: dict[str, Generator] = {
    "plain_mcq": plain_mcq(),
    "plain_mcq_ko": plain_mcq(korean=True),
    "mmbench": mmbench(),
    "mmbench_ko": mmbench(korean=True),
    "scienceqa": scienceqa,
    "mmstar": plain_mcq(
        extra={"l2_category": lambda i: "coarse perception", "bench": lambda i: "synthetic"}
    ),
    "realworldqa": plain_mcq(n_options=3),
    "visonlyqa": plain_mcq(extra={"split": lambda i: "real", "category": lambda i: "geometry"}),
    "mmmu": mmmu,
    "blink": blink,
    "yorn_pope": yorn_pope,
    "yorn_hallusion": yorn_hallusion,
    "vqa_textvqa": vqa_textvqa,
    "vqa_color": vqa_color,
    "vqa_bar": vqa_bar,
    "vqa_doc": vqa_doc,
    "vqa_ocrbench": vqa_ocrbench,
    "vqa_vizwiz": vqa_vizwiz,
}


def generator(shape: str) -> Generator:
    if shape not in GENERATORS:
        raise ValueError(f"smoke shape {shape!r} is not valid; valid: {', '.join(GENERATORS)}")
    return GENERATORS[shape]


def synthetic_rows(name: str, shape: str, questions: int = DEFAULT_QUESTIONS) -> list[Row]:
    """Benchmark ``name``'s first ``questions`` synthetic questions in the smoke shape
    ``shape`` (a circular shape adds its rotations)."""
    build = generator(shape)
    if questions < 1:
        raise ValueError(f"questions must be positive, got {questions}")
    return build(name, questions)


def columns_of(rows: list[Row]) -> list[str]:
    cols: list[str] = []
    for row in rows:
        for key in row:
            if key not in cols:
                cols.append(key)
    # VLMEvalKit's own TSVs put the image last; keep index first.
    cols.sort(key=lambda c: (c != "index", c == "image"))
    return cols


def write_tsv(path: Path, rows: list[Row]) -> str:
    """Write rows as a VLMEvalKit TSV (atomically); return the file's md5."""
    cols = columns_of(rows)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(
            fh,
            fieldnames=cols,
            delimiter="\t",
            lineterminator="\n",
            quoting=csv.QUOTE_MINIMAL,
            restval="",
        )
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)
    return file_md5(path)


def file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_dataset(
    root: Path, name: str, shape: str, questions: int = DEFAULT_QUESTIONS
) -> tuple[Path, str]:
    """Write ``root/<name>.tsv`` in the smoke shape ``shape``; return (path, md5)."""
    path = Path(root) / f"{name}.tsv"
    rows = synthetic_rows(name, shape, questions)
    return path, write_tsv(path, rows)
