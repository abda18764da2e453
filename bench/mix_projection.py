"""The whole default matrix projected from a length-mix run (bench/length_mix.py), for 1 and 8 GPUs.

    python3 bench/mix_projection.py bench/results/h100-length-mix-7b.json \\
        --out bench/results/h100-length-mix-projection.json

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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mix", type=Path)
    p.add_argument("--13b-factor", dest="factor_13b", type=float, default=2.0)
    p.add_argument("--spread", type=float, default=1.02, help="makespan over an even share")
    p.add_argument("--gpus", type=int, nargs="+", default=[1, 8])
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    mix = json.loads(args.mix.read_text())
    catalogue = yaml.safe_load((ROOT / "playbooks/vars/catalogue.yml").read_text())
    default = catalogue["catalogue_default_benchmarks"]
    rows = sum(int(catalogue["catalogue_benchmarks"][name]["samples"]) for name in default)
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
