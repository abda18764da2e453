"""Writes "your own benchmarks" for the real-mode tests, inside the image:

    python in_image_custom_tsvs.py OUT_DIR QUESTIONS NAME=DEFAULT_BENCHMARK ...

Each NAME.tsv holds the first QUESTIONS synthetic rows of DEFAULT_BENCHMARK, made by the image's
own smoke data generators: the questions the known-answer checkpoints were trained on, in
VLMEvalKit's TSV format.
"""

from __future__ import annotations

import sys
from pathlib import Path

from vlmfleet.known_answer_checkpoints import DEFAULT_BENCHMARKS
from vlmfleet.smoke_data import synthetic_rows, write_tsv


def main(out_dir: str, questions: str, *specs: str) -> None:
    for spec in specs:
        name, source = spec.split("=")
        rows = synthetic_rows(source, DEFAULT_BENCHMARKS[source].smoke_shape, int(questions))
        write_tsv(Path(out_dir) / f"{name}.tsv", rows)


if __name__ == "__main__":
    main(*sys.argv[1:])
