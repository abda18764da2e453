"""Sharded benchmarks: the contract's shard identity and done rule, the planner's shards and
their balance, the merges the collected records call for, and the summary's shard lists."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ansible_collections.vlmfleet.shared.plugins.module_utils import contract
from ansible_collections.vlmfleet.shared.plugins.plugin_utils.inputs import check_hosts
from ansible_collections.vlmfleet.shared.plugins.plugin_utils.plan import (
    MIN_SHARD_ROWS,
    combination_cost,
    eval_host_units,
    eval_merges,
)
from ansible_collections.vlmfleet.shared.plugins.plugin_utils.plan import plan as planner
from ansible_collections.vlmfleet.shared.plugins.plugin_utils.summary import (
    eval_done_combinations,
    eval_done_shards,
    summarize,
)
from test_plan import CATALOGUE, DEFAULT_BENCHMARKS, DEFAULT_MODELS, H100, gpus, inputs
from vlmfleet.slot_records import SlotRecords

MODELS = CATALOGUE["catalogue_models"]
BENCHES = CATALOGUE["catalogue_benchmarks"]


def fleet_of(slots: int) -> dict:
    """``slots`` H100s, eight to a host (one slot each: as many GPUs as models or more)."""
    hosts = {}
    for h in range(0, slots, 8):
        hosts[f"gpu-{h // 8:02d}"] = gpus(*[H100] * min(8, slots - h)) | {"eval_gpu_slots": 1}
    return hosts


def plan(fleet: dict, catalogue: dict, inp: dict, done_shards=()) -> dict:
    """The planner after the validation step settled each host's slots and batch size."""
    hosts = check_hosts("all", fleet, list(fleet), inp["batch_size"], [])
    return planner(fleet, catalogue, inp | {"hosts": hosts}, (), done_shards)


def total_work(models=DEFAULT_MODELS, benchmarks=DEFAULT_BENCHMARKS, limit=None) -> float:
    """Every combination's cost and each model's load once."""
    work = sum(
        combination_cost(MODELS[m], BENCHES[b], limit, False) for m in models for b in benchmarks
    )
    return work + sum(float(MODELS[m]["load_cost"]) for m in models)


def pieces(p: dict) -> list[tuple[str, str, int | None, int | None]]:
    return sorted(
        (
            u["model"],
            b["name"],
            b.get("shard", {}).get("index"),
            b.get("shard", {}).get("count"),
        )
        for u in p["units"]
        for b in u["benchmarks"]
    )


# --- planner ---------------------------------------------------------------------------------


@pytest.mark.parametrize("slots", [1, 2, 8, 16, 32])
def test_whole_default_matrix_makespan_is_within_ten_percent_of_the_even_share(slots: int) -> None:
    p = plan(fleet_of(slots), CATALOGUE, inputs(limit=None))
    assert len(p["slots"]) == slots
    even = total_work() / slots
    assert p["estimated_cost"] <= 1.1 * even
    # No benchmark bounds the run: on 32 slots SEEDBench_IMG on the 13B alone is about twice the
    # share.
    seed_13b = combination_cost(MODELS["llava_v1.5_13b"], BENCHES["SEEDBench_IMG"], None, False)
    if slots == 32:
        assert seed_13b > 1.9 * even and p["estimated_cost"] < seed_13b / 1.5
    # Every row of every combination is planned exactly once: the shards of a benchmark are
    # 0..count-1 of one count.
    got: dict[tuple[str, str], list[tuple[int | None, int | None]]] = {}
    for m, b, index, count in pieces(p):
        got.setdefault((m, b), []).append((index, count))
    assert set(got) == {(m, b) for m in DEFAULT_MODELS for b in DEFAULT_BENCHMARKS}
    for parts in got.values():
        count = parts[0][1]
        assert parts == ([(None, None)] if count is None else [(i, count) for i in range(count)])


def test_one_slot_and_short_runs_are_not_sharded() -> None:
    assert plan(fleet_of(1), CATALOGUE, inputs(limit=None))["sharded"] == []
    # limit 10 on 16 slots: fewer rows than a shard's minimum.
    p = plan(fleet_of(16), CATALOGUE, inputs(limit=10))
    assert p["sharded"] == [] and all(i is None for _, _, i, _ in pieces(p))
    assert MIN_SHARD_ROWS > 10


def test_shard_rows_caps_the_rows_of_every_shard_and_the_slot_files_carry_the_shards() -> None:
    p = plan(fleet_of(2), CATALOGUE, inputs(benchmarks=["POPE", "MMStar"], limit=10, shard_rows=4))
    # 10 rows, at most 4 a shard: 3 shards each, spread over both slots.
    assert {(s["model"], s["benchmark"], s["count"]) for s in p["sharded"]} == {
        (m, b, 3) for m in DEFAULT_MODELS for b in ("POPE", "MMStar")
    }
    assert len(pieces(p)) == 12
    for host in {u["host"] for u in p["units"]}:
        for slot in eval_host_units(p, host):
            parsed = contract.parse_slot(slot["slot_file"])
            assert all(b.shard is not None for _, b in parsed.combinations())


def test_resume_plans_only_the_shards_not_done_and_keeps_their_count() -> None:
    first = plan(fleet_of(2), CATALOGUE, inputs(benchmarks=["POPE"], limit=10, shard_rows=5))
    assert {s["count"] for s in first["sharded"]} == {2}
    done = [["llava_v1.5_7b", "POPE", 0, 2]]
    # The rerun asks for smaller shards; the started benchmark keeps its count.
    again = plan(
        fleet_of(2),
        CATALOGUE,
        inputs(benchmarks=["POPE"], limit=10, shard_rows=2),
        done_shards=done,
    )
    mine = [x for x in pieces(again) if x[0] == "llava_v1.5_7b"]
    assert mine == [("llava_v1.5_7b", "POPE", 1, 2)]
    assert {"model": "llava_v1.5_7b", "benchmark": "POPE", "count": 2, "done": [0]} in again[
        "sharded"
    ]
    # All shards done: nothing of it to run (the merge stage merges it).
    done.append(["llava_v1.5_7b", "POPE", 1, 2])
    rest = plan(fleet_of(2), CATALOGUE, inputs(benchmarks=["POPE"], limit=10), done_shards=done)
    assert all(m != "llava_v1.5_7b" for m, *_ in pieces(rest))


# --- contract --------------------------------------------------------------------------------


@pytest.mark.parametrize("total", [0, 1, 7, 10, 14233])
@pytest.mark.parametrize("count", [2, 3, 16])
def test_shards_in_index_order_are_the_rows_in_order(total: int, count: int) -> None:
    rows = [r for i in range(count) for r in contract.Shard(i, count).positions(total)]
    assert rows == list(range(total))


def bench_entry(**extra):
    return {
        "name": "POPE",
        "kind": "yorn",
        "dataset_type": "Y/N",
        "score_scale": 100,
        "smoke_shape": "yorn_pope",
    } | extra


def slot_data(benchmarks):
    return contract.slot_file(
        run_id="r1",
        host="h",
        slot="gpu0",
        device="cpu",
        smoke=True,
        limit=10,
        judge="exact_matching",
        max_new_tokens=16,
        batch_size=1,
        units=[{"model": "m", "family": "llava", "benchmarks": benchmarks}],
    )


def test_a_slot_file_takes_several_shards_of_a_benchmark_but_never_one_twice_or_beside_it() -> None:
    s0, s1 = (
        bench_entry(shard={"index": 0, "count": 2}),
        bench_entry(shard={"index": 1, "count": 2}),
    )
    assert [b.label for _, b in contract.parse_slot(slot_data([s0, s1])).combinations()] == [
        "POPE[1-of-2]",
        "POPE[2-of-2]",
    ]
    for bad in ([s0, s0], [s0, bench_entry()], [bench_entry(), s1]):
        with pytest.raises(contract.ContractError, match="listed twice"):
            slot_data(bad)
    for shard in ({"index": 2, "count": 2}, {"index": 0, "count": 1}, {"index": "0", "count": 2}):
        with pytest.raises(contract.ContractError, match="shard"):
            slot_data([bench_entry(shard=shard)])


def write_shard(run_dir: Path, host: str, index: int, count: int, status: str = "ok") -> None:
    """A shard record as the worker writes it (Worker.record of a shard combination)."""
    slot = contract.parse_slot(
        slot_data([bench_entry(shard={"index": index, "count": count})]),
        run_dir / host / "gpu0" / contract.SLOT_FILE,
    )
    slot = contract.Slot(**{**slot.__dict__, "host": host})
    fields = {"samples": 5} if status == "ok" else {"reason": "boom"}
    SlotRecords(slot).record(
        "m", "POPE", status, "t", 1.5, shard=contract.Shard(index, count), **fields
    )


def test_shard_records_sit_in_their_folder_and_count_as_shards_only(tmp_path: Path) -> None:
    write_shard(tmp_path, "a", 0, 2)
    path = tmp_path / "a" / "m" / "POPE" / "shards" / "1-of-2" / "status.json"
    assert json.loads(path.read_text())["shard"] == {"index": 0, "count": 2}
    records = contract.run_shard_records(tmp_path)
    assert [(r["host"], r["model"], r["benchmark"]) for r in records] == [("a", "m", "POPE")]
    # A shard is never its benchmark's record: no resume skips the benchmark for it.
    assert contract.run_records(tmp_path) == []
    assert eval_done_combinations(records, True) == []
    assert eval_done_shards(records, True) == [["m", "POPE", 0, 2]]
    assert contract.complete_shards(records, "m", "POPE", smoke=True) is None
    write_shard(tmp_path, "b", 1, 2)
    done = contract.complete_shards(contract.run_shard_records(tmp_path), "m", "POPE", smoke=True)
    assert [(r["host"], r["shard"]["index"]) for r in done] == [("a", 0), ("b", 1)]
    # A real run never takes a smoke run's shards.
    assert (
        contract.complete_shards(contract.run_shard_records(tmp_path), "m", "POPE", smoke=False)
        is None
    )


def test_a_shard_record_in_the_wrong_folder_is_a_failed_record(tmp_path: Path) -> None:
    write_shard(tmp_path, "a", 0, 2)
    folder = tmp_path / "a" / "m" / "POPE" / "shards"
    (folder / "1-of-2").rename(folder / "2-of-2")
    (record,) = contract.run_shard_records(tmp_path)
    assert record["status"] == "failed" and "2-of-2" in record["reason"]
    assert record["shard"] == {"index": 1, "count": 2}


# --- merges and summary ------------------------------------------------------------------------


def sharded_plan() -> dict:
    return plan(
        {"a": gpus(H100) | {"eval_gpu_slots": 1}, "b": gpus(H100) | {"eval_gpu_slots": 1}},
        CATALOGUE,
        inputs(models=["llava_v1.5_7b"], benchmarks=["POPE"], limit=10, smoke=True, shard_rows=4),
    )


def shard_records(statuses: dict[tuple[str, int], str], count: int = 3) -> list[dict]:
    out = []
    for (host, index), status in statuses.items():
        record = contract.make_record(
            run_id="r1",
            host=host,
            slot="gpu0",
            model="llava_v1.5_7b",
            benchmark="POPE",
            status=status,
            started_at="t",
            seconds=2.0,
            smoke=True,
            samples=3,
            reason=None if status == "ok" else "out of memory",
            extra={"shard": {"index": index, "count": count}},
        )
        out.append(record)
    return out


def merged_record(host: str, **more: Any) -> dict[str, Any]:
    """The status record a merge on ``host`` writes for the sharded POPE of llava_v1.5_7b."""
    return contract.make_record(
        run_id="r1",
        host=host,
        slot="merge",
        model="llava_v1.5_7b",
        benchmark="POPE",
        status="ok",
        started_at="t",
        seconds=7.0,
        smoke=True,
        **more,
    )


def test_a_benchmark_is_merged_once_all_its_shards_are_done_on_the_host_that_ran_most() -> None:
    p = sharded_plan()
    assert p["sharded"][0]["count"] == 3
    some = shard_records({("a", 0): "ok", ("b", 1): "ok"})
    assert eval_merges(p, CATALOGUE, [], some, ["a", "b"]) == {}
    every = some + shard_records({("b", 2): "ok"})
    merges = eval_merges(p, CATALOGUE, [], every, ["a", "b"])
    assert list(merges) == ["b"]
    assert merges["b"]["ship"] == ["a/llava_v1.5_7b/POPE/shards/1-of-3"]
    merge_slot = contract.parse_slot(merges["b"]["slot_file"])
    assert merge_slot.slot == contract.MERGE_SLOT
    assert [(u.model, b.name, b.shard) for u, b in merge_slot.combinations()] == [
        ("llava_v1.5_7b", "POPE", None)
    ]
    # Host b lost: a gets it, with b's shards brought from the controller.
    assert eval_merges(p, CATALOGUE, [], every, ["a"])["a"]["ship"] == [
        "b/llava_v1.5_7b/POPE/shards/2-of-3",
        "b/llava_v1.5_7b/POPE/shards/3-of-3",
    ]
    merged = merged_record("b")
    assert eval_merges(p, CATALOGUE, [merged], every, ["a", "b"]) == {}


def test_summary_lists_a_benchmarks_shards_and_names_the_one_that_failed() -> None:
    p = sharded_plan()
    records = shard_records({("a", 0): "ok", ("b", 1): "failed"})
    (entry,) = summarize(p, [], shard_records=records)["combinations"]
    assert entry["status"] == "failed"
    assert entry["reason"] == "shard 2-of-3 on b gpu0 failed: out of memory"
    assert [(s["index"], s["status"]) for s in entry["shards"]] == [
        (0, "ok"),
        (1, "failed"),
        (2, "missing"),
    ]
    (entry,) = summarize(p, [], shard_records=records[:1])["combinations"]
    assert entry["status"] == "missing" and "2-of-3, 3-of-3" in entry["reason"]
    listed = [
        {"index": i, "count": 3, "host": "a", "slot": "gpu0", "seconds": 2.0, "samples": 3}
        for i in range(3)
    ]
    merged = merged_record("a", samples=10, extra={"shards": listed})
    summary = summarize(p, [merged], shard_records=records)
    (entry,) = summary["combinations"]
    assert entry["status"] == "ok" and (entry["host"], entry["slot"]) == ("a", "merge")
    assert [s["index"] for s in entry["shards"]] == [0, 1, 2]
    assert summary["totals"]["ok"] == 1


def test_a_shard_whose_predictions_were_damaged_is_not_done_and_is_named(tmp_path: Path) -> None:
    """The merge would read a torn prediction file (and fail at every rerun, the shard being
    done): the record's digest makes the shard not done, so a rerun runs it again."""
    from types import SimpleNamespace

    from vlmfleet.evaluation import shard_fields

    slot = contract.parse_slot(
        slot_data([bench_entry(shard={"index": 0, "count": 2})]),
        tmp_path / "a" / "gpu0" / contract.SLOT_FILE,
    )
    slot = contract.Slot(**{**slot.__dict__, "host": "a"})
    folder = contract.shard_dir(tmp_path / "a", "m", "POPE", contract.Shard(0, 2))
    folder.mkdir(parents=True)
    pred = folder / "m_POPE.xlsx"
    pred.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 8)
    fields = shard_fields(SimpleNamespace(data=[1, 2]), str(pred), 2)
    SlotRecords(slot).record("m", "POPE", "ok", "t", 1.5, shard=contract.Shard(0, 2), **fields)
    assert eval_done_shards(contract.run_shard_records(tmp_path), True) == [["m", "POPE", 0, 2]]

    pred.write_bytes(pred.read_bytes()[:100])
    (record,) = contract.run_shard_records(tmp_path)
    assert record["status"] == "failed"
    assert f"its predictions {pred} are not the file the shard wrote" in record["reason"]
    assert record["reason"].endswith("rerun with the same run_id to run it again")
    assert eval_done_shards([record], True) == []
    pred.unlink()
    (record,) = contract.run_shard_records(tmp_path)
    assert f"its predictions {pred} cannot be read" in record["reason"]
    # A merge that finds it so names the shard and why, not only "not every shard is done".
    from vlmfleet.merge import not_done

    why = not_done(contract.run_shard_records(tmp_path), "m", "POPE")
    assert why.startswith("not every shard of m/POPE is done on this host's copy (1-of-2: ")
    assert f"its predictions {pred} cannot be read" in why
