"""Always-right and always-wrong answers to benchmark rows, made from the answer key alone.

A right answer is what a perfect model says: the option letter, "Yes"/"No", or the gold answer
most humans gave. A wrong one names another option, flips yes and no, or says a word that
matches no gold answer under any of the published metrics (not equal to one, not containing
one, not within edit distance). Used by the unit tests and the in-image scoring script.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from scoring.published_metrics import Row, answers_of, index_key, is_open, options_of

# Said to open questions when wrong; the first that shares no text with any gold answer.
WRONG_WORDS = ("unknown", "zzzz", "qqqq")
KINDS = ("mcq", "yorn", "vqa")


def _gold(row: Row) -> list[str]:
    return answers_of(row, "answers" if "answers" in row else "answer")


def right_answer(kind: str, row: Row) -> str:
    if kind == "mcq":
        return _gold(row)[0] if is_open(row) else str(row["answer"]).strip()
    if kind == "yorn":
        return str(row["answer"]).strip()
    if kind == "vqa":
        return Counter(_gold(row)).most_common(1)[0][0]
    raise ValueError(f"kind {kind!r} is not valid; valid: {', '.join(KINDS)}")


def _unrelated_word(row: Row) -> str:
    gold = [a.lower() for a in _gold(row)]
    for word in WRONG_WORDS:
        if not any(word in a or a in word for a in gold):
            return word
    raise ValueError(f"every wrong word overlaps a gold answer of row {row['index']!r}")


def wrong_answer(kind: str, row: Row) -> str:
    if kind == "mcq" and not is_open(row):
        letters = list(options_of(row))
        right = str(row["answer"]).strip()
        return letters[(letters.index(right) + 1) % len(letters)]
    if kind == "yorn":
        return "No" if str(row["answer"]).strip() == "Yes" else "Yes"
    if kind in KINDS:
        return _unrelated_word(row)
    raise ValueError(f"kind {kind!r} is not valid; valid: {', '.join(KINDS)}")


def answer_set(kind: str, rows: Sequence[Row], *, right: bool) -> dict[str, str]:
    """``{str(index): answer}`` for every row: all right, or all wrong."""
    answer = right_answer if right else wrong_answer
    return {index_key(r["index"]): answer(kind, r) for r in rows}
