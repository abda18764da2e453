"""Sharded benchmarks end to end: eval.yml over this machine's two inventory names (test_eval's
fleet), smoke mode with the known-answer checkpoints (real, checkable scores).

A benchmark split into shards (``shard_rows``) across both hosts must score exactly what the
same benchmark scores unsharded, with its shards listed; a rerun after one shard is lost runs
that shard only, and a benchmark whose shards are all done but not merged is merged without
running anything.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from test_eval import HOSTS, Fleet, stdout

pytestmark = pytest.mark.slow


MODEL = "llava_v1.5_7b"  # known-weak: right on some questions only, so scores discriminate
# A circular MCQ set (its rotations land in different shards) and a VQA set.
BENCHMARKS = ["MMBench_DEV_EN", "TextVQA_VAL"]
RUN = {"smoke": "true", "limit": "8", "models": MODEL, "benchmarks": ",".join(BENCHMARKS)}
# An image with this tree's worker, when the built one is older (tests/lab builds it).
IMAGE = (
    {"project_image_tag": os.environ["VLM_E2E_IMAGE_TAG"]}
    if "VLM_E2E_IMAGE_TAG" in os.environ
    else {}
)


def entries(fleet: Fleet, run_id: str) -> dict[str, dict[str, Any]]:
    return {c["benchmark"]: c for c in fleet.summary(run_id)["combinations"]}


def planned(fleet: Fleet, run_id: str) -> list[tuple[str, str, int | None]]:
    plan = json.loads((fleet.results / run_id / "plan.json").read_text())
    return sorted(
        (u["host"], b["name"], b.get("shard", {}).get("index"))
        for u in plan["units"]
        for b in u["benchmarks"]
    )


def questions(fleet: Fleet, run_id: str, entry: dict[str, Any]) -> tuple[list[Any], Any]:
    """The benchmark's scored questions (its questions file's lines) and its record's
    primary_interval, from the controller's results."""
    folder = fleet.results / run_id / entry["host"] / MODEL / entry["benchmark"]
    record = json.loads((folder / "status.json").read_text())
    assert record["questions_file"], record.get("questions_note")
    text = (folder / record["questions_file"]).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()], record["primary_interval"]


def shard_folder(root: Path, host: str, bench: str, name: str) -> Path:
    return root / host / MODEL / bench / "shards" / name


def forget(fleet: Fleet, run_id: str, host: str, relative: str) -> None:
    """Remove a record's folder or file on its host and in the controller's results, as if the
    host had died before writing it."""
    for root in (fleet.host_dir(host, run_id).parent, fleet.results / run_id):
        path = root / host / relative
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def test_a_benchmark_sharded_over_two_hosts_scores_as_unsharded_and_resumes_per_shard(
    fleet: Fleet,
) -> None:
    whole = fleet.eval(run_id="e2e-unsharded", **RUN, **IMAGE)
    assert whole.rc == 0, stdout(whole)[-5000:]
    assert all(i is None for _, _, i in planned(fleet, "e2e-unsharded"))

    run_id = "e2e-sharded"
    sharded = fleet.eval(run_id=run_id, shard_rows="4", **RUN, **IMAGE)
    assert sharded.rc == 0, stdout(sharded)[-5000:]
    plan = planned(fleet, run_id)
    # Each benchmark in shards, each shard planned once, and the shards spread over both hosts.
    for bench in BENCHMARKS:
        mine = [(h, i) for h, b, i in plan if b == bench]
        assert sorted(i for _, i in mine) == [0, 1], plan
    assert {h for h, _, _ in plan} == set(HOSTS)
    assert any(len({h for h, b, _ in plan if b == bench}) == 2 for bench in BENCHMARKS), plan

    got, want = entries(fleet, run_id), entries(fleet, "e2e-unsharded")
    for bench in BENCHMARKS:
        assert got[bench]["status"] == "ok", got[bench]
        # One evaluation of the merged predictions: the same figures as the unsharded run's.
        assert got[bench]["primary_score"] == want[bench]["primary_score"], bench
        assert got[bench]["scores"] == want[bench]["scores"], bench
        # The merge's questions, line for line, and so the same interval.
        assert questions(fleet, run_id, got[bench]) == questions(
            fleet, "e2e-unsharded", want[bench]
        ), bench
        assert got[bench]["samples"] == want[bench]["samples"] == 8
        assert got[bench]["slot"] == "merge"
        shards = got[bench]["shards"]
        assert [(s["index"], s["count"], s["status"]) for s in shards] == [
            (0, 2, "ok"),
            (1, 2, "ok"),
        ]
        assert {(s["host"], s["index"]) for s in shards} == {
            (h, i) for h, b, i in plan if b == bench
        }
        assert want[bench]["shards"] == []
    assert fleet.summary(run_id)["totals"] == {"ok": 2, "failed": 0, "missing": 0, "total": 2}
    report = (fleet.results / run_id / "report.md").read_text()
    assert "2-of-2" in report

    # Lose one shard of TextVQA_VAL (and its merge), and only the merge of MMBench_DEV_EN.
    vqa_shards = {s["index"]: s for s in got["TextVQA_VAL"]["shards"]}
    lost = vqa_shards[1]
    results = fleet.results / run_id
    kept = shard_folder(results, vqa_shards[0]["host"], "TextVQA_VAL", "1-of-2") / "status.json"
    kept_before = json.loads(kept.read_text())["finished_at"]
    mmb_shard_times = {
        s["index"]: json.loads(
            (
                shard_folder(results, s["host"], "MMBench_DEV_EN", f"{s['index'] + 1}-of-2")
                / "status.json"
            ).read_text()
        )["finished_at"]
        for s in got["MMBench_DEV_EN"]["shards"]
    }
    forget(fleet, run_id, lost["host"], f"{MODEL}/TextVQA_VAL/shards/2-of-2")
    for bench in BENCHMARKS:
        forget(fleet, run_id, got[bench]["host"], f"{MODEL}/{bench}/status.json")

    again = fleet.eval(run_id=run_id, **IMAGE)
    assert again.rc == 0, stdout(again)[-5000:]
    # Only the lost shard ran; the other benchmark was merged from its shards as they were.
    assert planned(fleet, run_id) == [(lost["host"], "TextVQA_VAL", 1)]
    assert json.loads(kept.read_text())["finished_at"] == kept_before
    after = entries(fleet, run_id)
    for s in after["MMBench_DEV_EN"]["shards"]:
        folder = shard_folder(results, s["host"], "MMBench_DEV_EN", f"{s['index'] + 1}-of-2")
        record = json.loads((folder / "status.json").read_text())
        assert record["finished_at"] == mmb_shard_times[s["index"]]
    for bench in BENCHMARKS:
        assert after[bench]["status"] == "ok", after[bench]
        assert after[bench]["scores"] == want[bench]["scores"], bench
        assert questions(fleet, run_id, after[bench]) == questions(
            fleet, "e2e-unsharded", want[bench]
        ), bench
