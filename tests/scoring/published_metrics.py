"""Expected primary scores of the default benchmarks, from each benchmark's published metric.

An oracle for the scores a run reports, written from the benchmarks' papers and official
evaluation scripts, not from VLMEvalKit: the standard library, and openpyxl to read prediction
files. Inputs:

- the answer key: rows in VLMEvalKit's TSV shape, such as those of
  ``vlmfleet.smoke_data.synthetic_rows(name, kind, questions)``, matched by ``index``;
- the predictions: ``{str(index): text}``, e.g. ``read_predictions(<model>_<benchmark>.xlsx)``.

``primary_score(benchmark, rows, predictions)`` scores the rows that have a prediction (a run
evaluates the first ``limit`` questions) with the metric ms-vlmeval 0.0.20 names primary for
that benchmark (``report_primary_metric`` of its dataset class over the flattened result), on
0-100. Each metric's docstring says which VLMEvalKit key that is, in which scale VLMEvalKit
reports it, and on which inputs VLMEvalKit's number departs from the published definition.

Free text is read the same way for every benchmark of a kind: ``named_option`` for multiple
choice, ``yes_no`` for yes/no questions, ``normalize_vqa_answer`` for VQA accuracy.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlmfleet.selection import CIRCULAR_OFFSET

Row = Mapping[str, Any]
Predictions = Mapping[str, str]

OPTION_LETTERS = "ABCDEFGHIJ"
HME_CATEGORY = "Handwritten Mathematical Expression Recognition"


# --- reading the key and the predictions -----------------------------------------------------


def index_key(value: Any) -> str:
    """An index as text, whichever way a file stored it (42, 42.0 and "42" are one row)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def answers_of(row: Row, field: str = "answer") -> list[str]:
    """A row's gold answers: one string, or a list written as a Python literal."""
    value = row[field]
    if isinstance(value, str) and value.lstrip().startswith("["):
        parsed = ast.literal_eval(value)
        if not isinstance(parsed, list):
            raise ValueError(f"answer {value!r} of row {row['index']!r} is not a list")
        return [str(a) for a in parsed]
    return [str(value)]


def options_of(row: Row) -> dict[str, str]:
    """Option letter -> option text, for the options the row has (an empty one is absent)."""
    out = {}
    for letter in OPTION_LETTERS:
        value = row.get(letter)
        if value is None or (isinstance(value, float) and value != value):  # NaN
            continue
        if str(value).strip():
            out[letter] = str(value)
    return out


def read_predictions(path: Path | str) -> dict[str, str]:
    """``{str(index): prediction}`` from VLMEvalKit's prediction file (xlsx, first sheet).

    Cells are read as VLMEvalKit reads them back (cached values, not formulas); an empty
    prediction is "". A file without ``index`` or ``prediction`` columns, or with an index
    twice, is refused."""
    from openpyxl import load_workbook

    book = load_workbook(path, read_only=True, data_only=True)
    try:
        lines = book.worksheets[0].iter_rows(values_only=True)
        header = ["" if h is None else str(h) for h in next(lines, ())]
        missing = [c for c in ("index", "prediction") if c not in header]
        if missing:
            raise ValueError(f"{path}: no column {', '.join(missing)} (columns: {header})")
        at_index, at_pred = header.index("index"), header.index("prediction")
        out: dict[str, str] = {}
        for values in lines:
            if not values or all(v is None for v in values):
                continue
            key = index_key(values[at_index])
            if key in out:
                raise ValueError(f"{path}: index {key} appears twice")
            out[key] = "" if values[at_pred] is None else str(values[at_pred])
        return out
    finally:
        book.close()


def _prediction(row: Row, predictions: Predictions) -> str:
    key = index_key(row["index"])
    if key not in predictions:
        raise ValueError(f"no prediction for row {key}")
    return predictions[key]


def _words(text: str) -> list[str]:
    """Runs of letters and digits (any script): punctuation, spaces and "_" separate."""
    return re.findall(r"[^\W_]+", text)


def _percent(hits: Sequence[float]) -> float:
    if not hits:
        raise ValueError("nothing to score")
    return 100.0 * sum(hits) / len(hits)


# --- multiple choice ----------------------------------------------------------------------


def named_option(prediction: str, options: Mapping[str, str]) -> str | None:
    """The option a free-text answer names, or None.

    MMBench's published matching (its paper, section 3: "heuristic matching" of the option
    label, then of the option content, before any LLM): the answer names option X when X is
    the only option letter standing alone as a word in it ("B", "(B)", "B. red", "my pick is B");
    failing any letter, when X's text is the only option text it contains (case-insensitive).
    Two letters, or two option texts, name nothing.

    VLMEvalKit's ``can_infer`` (exact_matching, no judge) differs on long answers: it ignores
    a lone letter unless it is among the answer's last four words ("B is right because the
    shape has three corners" names nothing there), matches option texts only in answers at
    most twice as long as all option texts together, and reads "Cannot determine the answer"
    and a lone "Z" as an explicit refusal. It splits words only at spaces and ``.()[],:;!*#{}``,
    so "B?" or "B/C" hold no letter for it."""
    letters = {w for w in _words(prediction) if w in options}
    if letters:
        return letters.pop() if len(letters) == 1 else None
    text = prediction.lower()
    named = [letter for letter, option in options.items() if option.lower() in text]
    return named[0] if len(named) == 1 else None


def is_open(row: Row) -> bool:
    """An open (free-answer) question: MMMU marks them ``question_type`` "open"; no options."""
    return str(row.get("question_type", "")).lower() == "open" or not options_of(row)


def open_answer_right(prediction: str, answers: Sequence[str]) -> bool:
    """MMMU's rule for open questions: right when a gold answer appears in the prediction
    (case-insensitive). MMMU's own script also compares numbers numerically; the synthetic
    answers and these checks need only the text rule."""
    said = prediction.lower()
    return any(a.strip().lower() in said for a in answers if a.strip())


def _mcq_right(row: Row, prediction: str) -> bool:
    if is_open(row):
        return open_answer_right(prediction, answers_of(row))
    return named_option(prediction, options_of(row)) == str(row["answer"]).strip()


def mcq_accuracy(rows: Sequence[Row], predictions: Predictions) -> float:
    """Accuracy: the share of questions whose prediction names the right option, x100.

    VLMEvalKit: ``report_acc`` gives "Overall" as a fraction (0-1), keyed "split=<s>|Overall"
    when the data has a split column; without one, ``report_primary_metric`` reports
    "Overall Acc", the same fraction x100."""
    return _percent([_mcq_right(r, _prediction(r, predictions)) for r in rows])


def circular_accuracy(rows: Sequence[Row], predictions: Predictions) -> float:
    """MMBench's CircularEval: a question counts as right only if the prediction of every
    circular copy (options rotated; rows index + k * 1e6) names the right option, x100.

    VLMEvalKit: "split=<s>|Overall", a fraction (0-1). Under exact matching a copy whose answer
    names no option fails its question, as here (with a judge, the judge would read it)."""
    groups: dict[int, list[bool]] = defaultdict(list)
    for r in rows:
        groups[int(r["index"]) % CIRCULAR_OFFSET].append(_mcq_right(r, _prediction(r, predictions)))
    return _percent([all(copies) for copies in groups.values()])


def mmmu_accuracy(rows: Sequence[Row], predictions: Predictions) -> float:
    """MMMU accuracy on the validation split (MMMU's published figures; its dev split is the
    few-shot set), or on the rows given when none is of the validation split, x100.
    Multiple-choice questions as ``named_option``; open ones as ``open_answer_right``.

    VLMEvalKit: MMMU_DEV_VAL reports "split=dev|Overall" and "split=validation|Overall"
    (fractions) and its primary-key choice prefers the validation split. Under exact matching
    it turns an open question into a two-option one (A = the answer text, B = "Other
    Answers", right answer A): a bare "A" counts as right, an answer containing the gold text
    but longer than twice the two options' text counts as wrong, and a prediction that
    contains "other answers" counts as B."""
    validation = [r for r in rows if str(r.get("split", "")) == "validation"]
    return mcq_accuracy(validation or rows, predictions)


# --- yes / no -----------------------------------------------------------------------------


def yes_no(prediction: str) -> str | None:
    """What a free-text answer says: "Yes" when "yes" is among its words and "no" is not, "No"
    the other way round, otherwise None (it says neither, or both). Case-insensitive."""
    words = {w.lower() for w in _words(prediction)}
    if ("yes" in words) != ("no" in words):
        return "Yes" if "yes" in words else "No"
    return None


def pope_f1(rows: Sequence[Row], predictions: Predictions) -> float:
    """POPE's headline metric: F1 of the "yes" class, x100: 2TP / (2TP + FP + FN).

    An answer that says neither yes nor no is not a "yes" (it counts like "no"). POPE's own
    script reads every answer without "no"/"not" in its first sentence as "yes"; VLMEvalKit
    and this function do not. With no true positive F1 is 0 (also when the key has no "yes"
    and every answer is right: 0/0, reported as 0 by VLMEvalKit too).

    VLMEvalKit: "split=Overall|Overall" (0-100) of ``POPE_rating``, which splits the category
    column at commas and counts a question once per category it names, also in Overall; the
    synthetic rows have one category each."""
    tp = fp = fn = 0
    for r in rows:
        truth = str(r["answer"]).strip() == "Yes"
        said = yes_no(_prediction(r, predictions)) == "Yes"
        tp += truth and said
        fp += said and not truth
        fn += truth and not said
    return 100.0 * 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def _yorn_right(row: Row, predictions: Predictions) -> bool:
    return bool(_yorn_question(row, _prediction(row, predictions)))


def yes_no_accuracy(rows: Sequence[Row], predictions: Predictions) -> float:
    """Accuracy of yes/no answers, x100: the share of questions whose prediction says the
    answer (``yes_no``).

    VLMEvalKit: "Overall" (0-100) of ``default_rating``, what a yes/no dataset without a
    rating of its own gets (custom benchmarks of kind yorn)."""
    return _percent([_yorn_right(r, predictions) for r in rows])


def hallusion_ids(row: Row) -> tuple[str, str, str, str, str]:
    """(category, subcategory, set_id, figure_id, question_id): the category columns, and the
    set/figure/question ids from fields 3, 4 and 5 of the index, as VLMEvalKit's TSV has them."""
    fields = str(row["index"]).split("_")
    if len(fields) < 6:
        raise ValueError(f"HallusionBench index {row['index']!r} lacks set/figure/question ids")
    return str(row["category"]), str(row["l2-category"]), fields[3], fields[4], fields[5]


def hallusion_aacc(rows: Sequence[Row], predictions: Predictions) -> float:
    """HallusionBench's "all accuracy" (aAcc): the share of questions answered right, x100.

    The primary metric: VLMEvalKit's ``Hallusion_rating`` reports aAcc, fAcc and qAcc (0-100)
    per split; "split=Overall|aAcc" sorts first among the "overall" keys."""
    return _percent([_yorn_right(r, predictions) for r in rows])


def hallusion_facc(rows: Sequence[Row], predictions: Predictions) -> float:
    """Figure accuracy (fAcc): figures all of whose questions are right, out of all figures,
    x100. A figure is (category, subcategory, set, figure); as in HallusionBench's script, a
    VS question's figure 0 (no image shown) is no figure.

    VLMEvalKit groups by subcategory, set and figure only (two categories' figures of the same
    ids merge) and keeps VS figure 0."""
    figures: dict[tuple[str, ...], list[bool]] = defaultdict(list)
    for r in rows:
        category, sub, set_id, figure_id, _ = hallusion_ids(r)
        if category == "VS" and figure_id == "0":
            continue
        figures[(category, sub, set_id, figure_id)].append(_yorn_right(r, predictions))
    return _percent([all(q) for q in figures.values()])


def hallusion_qacc(rows: Sequence[Row], predictions: Predictions) -> float:
    """Question-pair accuracy (qAcc): questions right on every figure they are asked of, out of
    all questions, x100. A question is (category, subcategory, set, question).

    VLMEvalKit groups by subcategory, set and question only, so a VD and a VS question of the
    same ids become one question."""
    pairs: dict[tuple[str, ...], list[bool]] = defaultdict(list)
    for r in rows:
        category, sub, set_id, _, question_id = hallusion_ids(r)
        pairs[(category, sub, set_id, question_id)].append(_yorn_right(r, predictions))
    return _percent([all(q) for q in pairs.values()])


# --- open answers -------------------------------------------------------------------------

_NUMBER_WORDS = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
_ARTICLES = {"a", "an", "the"}
# The official list restores many more; these are the common ones (both sides get the same).
_CONTRACTIONS = {
    w.replace("'", ""): w
    for w in (
        "ain't",
        "aren't",
        "can't",
        "couldn't",
        "didn't",
        "doesn't",
        "don't",
        "hadn't",
        "hasn't",
        "haven't",
        "isn't",
        "shouldn't",
        "that's",
        "there's",
        "they're",
        "wasn't",
        "weren't",
        "what's",
        "won't",
        "wouldn't",
        "you're",
    )
}
_PUNCTUATION = ';/[]"{}()=+\\_->@`,?!<'
_DIGIT_COMMA_DIGIT = re.compile(r"\d,\d")
# The VQA script's pattern, "(?!<=\d)(\.)(?!\d)", means to spare periods between digits but
# (a lookahead, not a lookbehind) spares only those before a digit: "3." loses its period.
_PERIOD = re.compile(r"\.(?!\d)")


def normalize_vqa_answer(text: str) -> str:
    """The VQA challenge's answer normalisation (as TextVQA's and VizWiz's evaluators apply
    it to answers and predictions alike): lower case; each punctuation mark is dropped where
    it touches a space (or anywhere when the text has a digit,digit comma) and else becomes a
    space; a period not followed by a digit is dropped; number words become digits; articles go;
    apostrophe-less contractions get their apostrophe; whitespace collapses."""
    text = text.replace("\n", " ").replace("\t", " ").strip().lower()
    dense = _DIGIT_COMMA_DIGIT.search(text) is not None
    out = text
    for mark in _PUNCTUATION:
        touching = f"{mark} " in text or f" {mark}" in text
        out = out.replace(mark, "" if touching or dense else " ")
    out = _PERIOD.sub("", out)
    words = [_NUMBER_WORDS.get(w, w) for w in out.split()]
    return " ".join(_CONTRACTIONS.get(w, w) for w in words if w not in _ARTICLES)


def vqa_accuracy(rows: Sequence[Row], predictions: Predictions) -> float:
    """VQA accuracy (TextVQA, VizWiz): per question, min(1, humans who gave the prediction / 3),
    averaged over the ten leave-one-out subsets of the human answers (the VQA challenge's
    definition), answers and prediction normalised by ``normalize_vqa_answer``; mean x100.
    The human answers are the row's ``answers`` (VizWiz) or ``answer`` list.

    VLMEvalKit: "Overall" (0-100), computed the same way, except that its normalisation keeps
    a period after a digit ("3." does not match "3" there, as it does in the VQA script)."""
    return _percent([vqa_question(r, _prediction(r, predictions)) for r in rows])


def vqa_question(row: Row, prediction: str) -> float:
    """One question's VQA accuracy (0-1): min(1, matching humans / 3) over the ten
    leave-one-out subsets of its human answers, averaged (see ``vqa_accuracy``)."""
    humans = [normalize_vqa_answer(a) for a in answers_of(row, _answers_field(row))]
    said = normalize_vqa_answer(prediction)
    subsets = [
        min(1.0, sum(h == said for j, h in enumerate(humans) if j != left_out) / 3)
        for left_out in range(len(humans))
    ]
    return sum(subsets) / len(subsets)


def _answers_field(row: Row) -> str:
    return "answers" if "answers" in row else "answer"


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions of one character each)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def _anls_text(text: str) -> str:
    return " ".join(text.lower().split())


def anls(rows: Sequence[Row], predictions: Predictions, threshold: float = 0.5) -> float:
    """ANLS (DocVQA, InfoVQA; Biten et al. 2019): per question the best over the gold answers
    of 1 - NL when the normalised Levenshtein distance NL = lev / max(len) is below the
    threshold (0.5), else 0; texts lower-cased with whitespace collapsed; mean x100.

    VLMEvalKit: "Overall" (0-100). It keeps 1 - NL when NL is exactly 0.5 (the published rule
    gives 0: "43" for "42" scores 0.5 there, 0 here), and divides by the lengths of the
    texts before whitespace is collapsed, so padding a prediction with spaces raises its
    score there."""
    return _percent([anls_question(r, _prediction(r, predictions), threshold) for r in rows])


def anls_question(row: Row, prediction: str, threshold: float = 0.5) -> float:
    """One question's ANLS (0-1): the best over its gold answers (see ``anls``)."""
    said = _anls_text(prediction)
    best = 0.0
    for answer in answers_of(row):
        gold = _anls_text(answer)
        longest = max(len(gold), len(said))
        nl = levenshtein(gold, said) / longest if longest else 0.0
        best = max(best, 1.0 - nl if nl < threshold else 0.0)
    return best


_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?%?")


def _as_number(text: str) -> float | None:
    text = text.strip()
    if not _NUMBER.fullmatch(text):
        return None
    if text.endswith("%"):
        return float(text[:-1]) / 100.0
    return float(text)


def relaxed_match(prediction: str, target: str, tolerance: float = 0.05) -> bool:
    """ChartQA's relaxed correctness: a numeric answer within 5% of the gold number (relative
    change), any other answer an exact (case-insensitive) match. "12%" reads as 0.12."""
    said, gold = _as_number(prediction), _as_number(target)
    if said is not None and gold is not None:
        if gold == 0:
            return said == 0
        return abs(said - gold) / abs(gold) <= tolerance
    return prediction.strip().lower() == target.strip().lower()


def relaxed_accuracy(rows: Sequence[Row], predictions: Predictions) -> float:
    """ChartQA relaxed accuracy: questions with a relaxed match to a gold answer, over all
    questions (human and augmented together), x100.

    VLMEvalKit: "Overall" (0-100), over all rows (its "human"/"augmented" keys are the
    splits). For a gold answer of 0 it wants the same text ("0.0" is wrong there), and Python's
    float() also reads "nan", "inf" and "1_000" as numbers."""
    return _percent([relaxed_question(r, _prediction(r, predictions)) for r in rows])


def relaxed_question(row: Row, prediction: str) -> float:
    """1 when the prediction is a relaxed match to a gold answer of the row, else 0."""
    return float(any(relaxed_match(prediction, a) for a in answers_of(row)))


def ocr_hit(prediction: str, answers: Sequence[str], category: str = "") -> bool:
    """OCRBench's rule: right when a gold answer is contained in the prediction; lower case,
    newlines as spaces, ends trimmed; for handwritten formulae (HME) every space goes and case
    counts."""
    if category == HME_CATEGORY:
        said = re.sub(r"\s", "", prediction)
        return any(re.sub(r"\s", "", a) in said for a in answers if a.strip())
    said = prediction.replace("\n", " ").lower()
    return any(a.replace("\n", " ").strip().lower() in said for a in answers if a.strip())


def ocrbench_accuracy(rows: Sequence[Row], predictions: Predictions) -> float:
    """OCRBench: hits out of the questions evaluated, x100 (the whole benchmark's "Final
    Score" is the same hit count out of its 1000 questions).

    VLMEvalKit: "Final Score", the raw hit count (0-N for N questions), and "Final Score
    Norm" = hits / 10, which is a percentage only for all 1000 questions. A category outside
    OCRBench's ten stops its evaluation (KeyError)."""
    return _percent([ocr_question(r, _prediction(r, predictions)) for r in rows])


def ocr_question(row: Row, prediction: str) -> float:
    return float(ocr_hit(prediction, answers_of(row), str(row.get("category", ""))))


def _gqa_text(text: str) -> str:
    return text.strip().lower().rstrip(".").strip()


def exact_match_accuracy(rows: Sequence[Row], predictions: Predictions) -> float:
    """GQA accuracy: predictions equal to the gold answer, x100, both lower-cased and trimmed,
    a trailing period dropped (LLaVA-1.5's conversion for the GQA evaluator, which then
    compares exactly).

    VLMEvalKit: "Overall" (0-100) with only trimming and lower case: "Red." is wrong there."""
    return _percent([exact_match_question(r, _prediction(r, predictions)) for r in rows])


def exact_match_question(row: Row, prediction: str) -> float:
    return float(any(_gqa_text(prediction) == _gqa_text(a) for a in answers_of(row)))


# --- the default benchmarks ---------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    """A benchmark's primary metric: what it is, the function, and how questions group."""

    name: str
    score: Callable[[Sequence[Row], Predictions], float]
    # One question's score (0-1) from its row and prediction, where the metric is a mean of
    # such scores or, for POPE's F1, where each question is right or wrong.
    question: Callable[[Row, str], float]
    # Scored per question over its circular copies (rows index + k * CIRCULAR_OFFSET).
    circular: bool = False


def _mcq_question(row: Row, prediction: str) -> float:
    return float(_mcq_right(row, prediction))


def _yorn_question(row: Row, prediction: str) -> float:
    return float(yes_no(prediction) == str(row["answer"]).strip())


_ACCURACY = Metric("accuracy", mcq_accuracy, _mcq_question)
_CIRCULAR = Metric("CircularEval accuracy", circular_accuracy, _mcq_question, circular=True)
PRIMARY: dict[str, Metric] = {
    "MMBench_DEV_EN": _CIRCULAR,
    "MMBench_DEV_KO": _CIRCULAR,
    "SEEDBench_IMG": _ACCURACY,
    "SEEDBench_IMG_KO": _ACCURACY,
    "AI2D_TEST": _ACCURACY,
    "ScienceQA_VAL": _ACCURACY,
    "MMStar": _ACCURACY,
    "RealWorldQA": _ACCURACY,
    "VisOnlyQA-VLMEvalKit": _ACCURACY,
    "BLINK": _ACCURACY,
    "MMMU_DEV_VAL": Metric("validation accuracy", mmmu_accuracy, _mcq_question),
    "POPE": Metric("F1", pope_f1, _yorn_question),
    "HallusionBench": Metric("aAcc", hallusion_aacc, _yorn_question),
    "TextVQA_VAL": Metric("VQA accuracy", vqa_accuracy, vqa_question),
    "VizWiz": Metric("VQA accuracy", vqa_accuracy, vqa_question),
    "DocVQA_VAL": Metric("ANLS", anls, anls_question),
    "InfoVQA_VAL": Metric("ANLS", anls, anls_question),
    "ChartQA_TEST": Metric("relaxed accuracy", relaxed_accuracy, relaxed_question),
    "OCRBench": Metric("accuracy", ocrbench_accuracy, ocr_question),
    "GQA_TestDev_Balanced": Metric(
        "exact-match accuracy", exact_match_accuracy, exact_match_question
    ),
}


def scored_rows(rows: Sequence[Row], predictions: Predictions, *, circular: bool) -> list[Row]:
    """The key's rows that a prediction file answers: the rows with a prediction or, circular,
    every copy of each question with a predicted copy. A prediction for a row the key lacks
    is refused."""
    keys = {index_key(r["index"]) for r in rows}
    unknown = sorted(set(predictions) - keys)
    if unknown:
        raise ValueError(f"predictions for rows the answer key lacks: {', '.join(unknown[:5])}")
    if not circular:
        chosen = [r for r in rows if index_key(r["index"]) in predictions]
    else:
        asked = {
            int(r["index"]) % CIRCULAR_OFFSET for r in rows if index_key(r["index"]) in predictions
        }
        chosen = [r for r in rows if int(r["index"]) % CIRCULAR_OFFSET in asked]
    if not chosen:
        raise ValueError("no prediction for any row of the answer key")
    return chosen


def first_questions(benchmark: str, rows: Sequence[Row], n: int) -> list[Row]:
    """The rows of the key's first ``n`` questions in file order, as a run with limit ``n``
    evaluates them: the first ``n`` rows, or, circular, every copy of the first ``n``
    questions."""
    if not PRIMARY[benchmark].circular:
        return list(rows[:n])
    groups = dict.fromkeys(int(r["index"]) % CIRCULAR_OFFSET for r in rows)
    wanted = set(list(groups)[:n])
    return [r for r in rows if int(r["index"]) % CIRCULAR_OFFSET in wanted]


def primary_score(benchmark: str, rows: Sequence[Row], predictions: Predictions) -> float:
    """The benchmark's primary score on 0-100 for the predicted rows of the answer key."""
    if benchmark not in PRIMARY:
        raise ValueError(f"no published metric for {benchmark!r}; known: {', '.join(PRIMARY)}")
    metric = PRIMARY[benchmark]
    return metric.score(scored_rows(rows, predictions, circular=metric.circular), predictions)


def question_scores(
    benchmark: str, rows: Sequence[Row], predictions: Predictions
) -> dict[str, float]:
    """Each predicted question's score (0-1) by the benchmark's published metric, by index: a
    circular question's (all its copies right) under its own index, the others by row."""
    metric = PRIMARY[benchmark]
    chosen = scored_rows(rows, predictions, circular=metric.circular)
    if not metric.circular:
        return {
            index_key(r["index"]): metric.question(r, _prediction(r, predictions)) for r in chosen
        }
    groups: dict[int, list[float]] = defaultdict(list)
    for r in chosen:
        groups[int(r["index"]) % CIRCULAR_OFFSET].append(
            metric.question(r, _prediction(r, predictions))
        )
    return {str(g): float(all(copies)) for g, copies in groups.items()}
