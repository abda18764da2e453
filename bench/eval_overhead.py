"""eval.yml's own time on the controller: a two-combination smoke run (one model, two
benchmarks, limit 2) over the e2e inventory's two names for this machine, with Ansible's
profile_tasks callback, reported per play (from the callback's running clock), with the time
spent waiting on the worker apart.

    python bench/eval_overhead.py --out bench/results/cpu-eval-overhead.json [--tree DIR ...]

Each ``--tree`` is a checkout of the project (default: this one) timed on the same image, one
after another, ``--repeat`` times each; the image is whatever `make image` built last.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
INVENTORY = Path("tests/e2e/inventory-two-hosts/hosts.yml")
RUN = ("smoke=true", "limit=2", "models=llava_v1.5_7b", "benchmarks=POPE,MMStar")
PLAY_RE = re.compile(r"^PLAY \[(.+?)\] \*")
CLOCK_RE = re.compile(r"\(\d+:\d+:[\d.]+\)\s+(\d+):(\d+):([\d.]+) \*")
WAIT_RE = re.compile(r"^eval_run : Wait for the workers.*?([\d.]+)s$", re.M)


def playbook(tree: Path, root: Path, *args: str) -> str:
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(tree / "ansible.cfg"),
        "VLM_E2E_ROOT": str(root / "hosts"),
        "ANSIBLE_CALLBACKS_ENABLED": "eval_progress,ansible.posix.profile_tasks",
        "PROFILE_TASKS_TASK_OUTPUT_LIMIT": "200",
    }
    binary = Path(sys.executable).parent / "ansible-playbook"
    proc = subprocess.run(
        [str(binary), "-i", str(tree / INVENTORY), *args],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{args[0]} failed in {tree}:\n{proc.stdout[-3000:]}{proc.stderr}")
    return proc.stdout


def play_seconds(log: str) -> dict[str, float]:
    """Each play's seconds: from its first task's clock to the next play's (or the end)."""
    starts: list[tuple[str, float]] = []
    play = None
    last = 0.0
    for line in log.splitlines():
        if m := PLAY_RE.match(line):
            play = m.group(1)
        elif m := CLOCK_RE.search(line):
            last = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
            if play is not None:
                starts.append((play, last))
                play = None
    ends = [t for _, t in starts[1:]] + [last]
    return {name: round(end - start, 2) for (name, start), end in zip(starts, ends, strict=True)}


def time_tree(tree: Path, run: int) -> dict[str, object]:
    root = Path(tempfile.mkdtemp(prefix="eval-overhead-"))
    try:
        playbook(
            tree,
            root,
            "site.yml",
            "--tags=eval_dirs",
            "-e",
            "ansible_become=false",
            "-e",
            "eval_dirs_hf_token=hf_benchNotARealToken",
        )
        extra = [f"-e{kv}" for kv in RUN]
        started = time.monotonic()
        log = playbook(
            tree,
            root,
            "eval.yml",
            *extra,
            f"-erun_id=overhead-{run}",
            f"-eresults_dir={root / 'results'}",
            "-eeval_run_poll_seconds=2",
        )
        wall = time.monotonic() - started
    finally:
        shutil.rmtree(root, ignore_errors=True)
    plays = play_seconds(log)
    wait = WAIT_RE.search(log)
    return {
        "wall_s": round(wall, 2),
        "plays_s": plays,
        "worker_wait_s": float(wait.group(1)) if wait else None,
        "validation_s": next(iter(plays.values())) if plays else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", type=Path, help="a checkout to time")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    trees = [t.resolve() for t in (args.tree or [REPO])]
    report: dict[str, object] = {"run": list(RUN), "cpus": os.cpu_count(), "trees": {}}
    for tree in trees:
        commit = subprocess.run(
            ["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        runs = [time_tree(tree, i) for i in range(args.repeat)]
        report["trees"][commit or str(tree)] = runs  # type: ignore[index]
        for r in runs:
            print(
                f"{commit}: {r['wall_s']} s wall, validation {r['validation_s']} s, "
                f"worker wait {r['worker_wait_s']} s"
            )
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
