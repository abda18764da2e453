"""The whole default matrix projected from a length-mix run, for 1 and 8 GPUs.

    python3 bench/mix_projection.py bench/results/h100-length-mix-7b.json \\
        --out bench/results/h100-length-mix-projection.json
    python3 bench/mix_projection.py --matrix RESULT.json [RESULT.json ...] --out OUT.json

With ``--matrix``: from seed-matrix runs with the length mix (bench/matrix_bench.py
``--decoder mix``, layout 1x2: both models in two slots of one GPU), each run's combinations
stage (from the first model loaded to the last combination done) over the rows one model
answered, times the catalogue's rows of the default matrix, is the whole matrix on one GPU;
G GPUs as below. Rough as well: at limit 10 each benchmark's own costs (its preparation and
evaluation, its last small batch) weigh more than in a whole run, so the figure is high.

Without it:

Each arm's seconds per row (the mix's rows, batches of 64, one process on one GPU) times the
catalogue's rows of the default matrix's 20 benchmarks, for the 7B; the 13B at ``--13b-factor``
times the 7B (the measured ratio of the two models' prefills, bench/README.md, where the 13B
run itself is missing). G GPUs take the total over G, times the planner's makespan over an even
share (1.02 in its last 8-GPU plan, h200-graph-projection.json). A rough figure: the mix's kind
shares are the benchmarks' count, not their rows, and two slots sharing a GPU are not modelled.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


# A record's samples are questions; the catalogue's are rows. The smoke data's MMBench questions
# have four options, so VLMEvalKit's circular evaluation asks each four times (the workers' logs:
# 40 samples batched at limit 10).
CIRCULAR_ROWS = {"MMBench_DEV_EN": 4, "MMBench_DEV_KO": 4}


def default_matrix_rows() -> int:
    """The rows one model answers in the default matrix (the catalogue's samples)."""
    catalogue = yaml.safe_load((ROOT / "playbooks/vars/catalogue.yml").read_text())
    default = catalogue["catalogue_default_benchmarks"]
    return sum(int(catalogue["catalogue_benchmarks"][name]["samples"]) for name in default)


def matrix_projection(
    results: list[Path], rows: int, gpus: list[int], spread: float
) -> dict[str, object]:
    """Each seed-matrix run's combinations stage per row of one model, scaled to ``rows``."""
    out: dict[str, object] = {"rows_per_model": rows, "runs": {}}
    for path in results:
        arm = json.loads(path.read_text())["arms"]["project_1x2"]
        models = {c["model"] for c in arm["combinations"]}
        answered = sum(
            int(c["samples"]) * CIRCULAR_ROWS.get(c["benchmark"], 1) for c in arm["combinations"]
        ) // len(models)
        per_row = arm["stage_s"]["combinations"] / answered
        out["runs"][path.name] = {
            "rows_per_model_answered": answered,
            "combinations_s": arm["stage_s"]["combinations"],
            "seconds_per_row_both_models": round(per_row, 4),
            **{
                f"{g}_gpus_h": round(rows * per_row / g * (spread if g > 1 else 1) / 3600, 2)
                for g in gpus
            },
        }
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mix", type=Path, nargs="?")
    p.add_argument("--matrix", type=Path, nargs="+", default=None)
    p.add_argument("--13b-factor", dest="factor_13b", type=float, default=2.0)
    p.add_argument("--spread", type=float, default=1.02, help="makespan over an even share")
    p.add_argument("--gpus", type=int, nargs="+", default=[1, 8])
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    rows = default_matrix_rows()
    if args.matrix:
        out = matrix_projection(args.matrix, rows, args.gpus, args.spread)
        args.out.write_text(json.dumps(out, indent=1) + "\n")
        print(json.dumps(out, indent=1))
        return 0
    mix = json.loads(args.mix.read_text())
    out = {"from": str(args.mix), "rows_per_model": rows, "factor_13b": args.factor_13b, "arms": {}}
    for name, arm in mix["arms"].items():
        per_row = arm["seconds"] / mix["rows"]
        total = rows * per_row * (1 + args.factor_13b)
        out["arms"][name] = {
            "seconds_per_row_7b": round(per_row, 4),
            **{
                f"{g}_gpus_h": round(total / g * (args.spread if g > 1 else 1) / 3600, 2)
                for g in args.gpus
            },
        }
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
