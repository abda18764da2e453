"""The planner (plugin_utils/plan/), its slot files, the summary and resume selection
(plugin_utils/summary.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from ansible_collections.vlmfleet.shared.plugins.module_utils import contract
from ansible_collections.vlmfleet.shared.plugins.plugin_utils.inputs import (
    DEFAULT_BATCH_SIZE,
    EvalInputError,
    check_hosts,
    check_inputs,
)
from ansible_collections.vlmfleet.shared.plugins.plugin_utils.plan import (
    EvalPlanError,
    eval_host_units,
    eval_limits_text,
    eval_merges,
)
from ansible_collections.vlmfleet.shared.plugins.plugin_utils.plan import plan as planner
from ansible_collections.vlmfleet.shared.plugins.plugin_utils.summary import (
    eval_controller_records,
    eval_done_combinations,
    summarize,
)
from vlmfleet.selection import count_questions, is_circular, select_positions

ROOT = Path(__file__).resolve().parents[3]
CATALOGUE = yaml.safe_load((ROOT / "playbooks/vars/catalogue.yml").read_text())
DEFAULT_MODELS = CATALOGUE["catalogue_default_models"]
DEFAULT_BENCHMARKS = CATALOGUE["catalogue_default_benchmarks"]
H100 = 81559
A10 = 23028  # 22.5 GiB
L4_16 = 16384


def gpus(*memory_mib):
    return {
        "gpu_facts_present": True,
        "gpu_facts_gpus": [
            {"index": i, "name": "NVIDIA test", "memory_mib": m, "uuid": f"GPU-{i}"}
            for i, m in enumerate(memory_mib)
        ],
    }


NO_GPU = {"gpu_facts_present": False, "gpu_facts_gpus": []}


def inputs(models=DEFAULT_MODELS, benchmarks=DEFAULT_BENCHMARKS, limit=10, smoke=False, **kw):
    """Inputs as the validation step settles them (its defaults included)."""
    return {
        "run_id": "r1",
        "models": list(models),
        "benchmarks": list(benchmarks),
        "limit": limit,
        "smoke": smoke,
        "batch_size": DEFAULT_BATCH_SIZE,
        "max_new_tokens": 16 if smoke else None,
        "judge": "exact_matching",
        **kw,
    }


def plan(fleet, catalogue, inp, done=()):
    """The planner after the validation step has checked each host's eval_gpu_slots and
    eval_run_batch_size (set in the fleet's facts here, as the inventory sets them)."""
    errors: list[str] = []
    hosts = check_hosts("all", fleet, list(fleet), inp["batch_size"], errors)
    if errors:
        raise EvalInputError("; ".join(errors))
    return planner(fleet, catalogue, inp | {"hosts": hosts}, done)


def combos(p):
    return sorted((u["model"], b["name"]) for u in p["units"] for b in u["benchmarks"])


def loads(p):
    return {(s["host"], s["slot"]): s["estimated_cost"] for s in p["slots"]}


def test_every_combination_planned_exactly_once_and_each_model_loaded_once_per_slot():
    p = plan({"gpu-01": gpus(H100, H100), "gpu-02": gpus(H100)}, CATALOGUE, inputs())
    assert combos(p) == sorted((m, b) for m in DEFAULT_MODELS for b in DEFAULT_BENCHMARKS)
    per_slot = [(u["host"], u["slot"], u["model"]) for u in p["units"]]
    assert len(per_slot) == len(set(per_slot))
    assert p["model_loads"] == len(p["units"])
    # gpu-02's one GPU is shared by two slots (eval_gpu_slots auto: fewer GPUs than models).
    assert sorted((s["host"], s["slot"]) for s in p["slots"]) == [
        ("gpu-01", "gpu0"),
        ("gpu-01", "gpu1"),
        ("gpu-02", "gpu0s0"),
        ("gpu-02", "gpu0s1"),
    ]
    for u in p["units"]:
        assert u["device"] == "cuda" and u["gpus"] == [int(u["slot"][3])]


def test_slots_are_balanced_longest_first():
    p = plan({"gpu-01": gpus(H100, H100, H100, H100)}, CATALOGUE, inputs(limit=None))
    costs = sorted(loads(p).values())
    # Whole benchmarks: a lot of work, so all four GPUs are used and within a third of each other.
    assert costs[0] > 0
    assert costs[-1] <= 1.34 * costs[0]
    # And better than the naive split of one model per GPU.
    assert p["estimated_cost"] < max(
        plan({"gpu-01": gpus(H100, H100)}, CATALOGUE, inputs(limit=None))["slots"][i][
            "estimated_cost"
        ]
        for i in range(2)
    )


def test_small_limit_does_not_scatter_model_loads():
    # With 3 samples per benchmark a model load costs more than all its benchmarks:
    # splitting a model over slots would only add loads.
    p = plan({"gpu-01": gpus(H100, H100)}, CATALOGUE, inputs(limit=3))
    assert p["model_loads"] == 2
    assert {u["slot"] for u in p["units"]} == {"gpu0", "gpu1"}


def test_model_goes_only_where_it_fits():
    fleet = {"small": gpus(A10), "big": gpus(H100)}
    p = plan(fleet, CATALOGUE, inputs())
    for u in p["units"]:
        if u["model"] == "llava_v1.5_13b":
            assert u["host"] == "big"
    # The 7B (15 GiB) fits the 22.5 GiB card, and it gets used.
    assert any(u["host"] == "small" for u in p["units"])


def test_model_bigger_than_one_gpu_gets_a_multi_gpu_slot():
    p = plan({"gpu-01": gpus(L4_16, L4_16, L4_16)}, CATALOGUE, inputs(models=["llava_v1.5_13b"]))
    assert [s["slot"] for s in p["slots"]] == ["gpu0-1", "gpu2"]
    assert {tuple(u["gpus"]) for u in p["units"]} == {(0, 1)}


def test_model_that_fits_nowhere_is_a_clear_error():
    with pytest.raises(EvalPlanError) as err:
        plan({"gpu-01": gpus(L4_16)}, CATALOGUE, inputs(models=["cogvlm-chat"]))
    message = str(err.value)
    assert "'cogvlm-chat' needs 37 GiB of GPU memory on one GPU" in message
    assert "largest GPU planned has 16 GiB" in message


def test_a_family_that_spreads_gets_a_multi_gpu_slot_and_one_that_cannot_never_does():
    # InternVL2-8B's 26 GiB (an estimate: 24 tiles without flash-attn) spreads over two A10s.
    p = plan({"gpu-01": gpus(A10, A10)}, CATALOGUE, inputs(models=["InternVL2-8B"]))
    assert {tuple(u["gpus"]) for u in p["units"]} == {(0, 1)}
    # MiniCPM-V's 18 GiB on two 16 GiB GPUs: VLMEvalKit's wrapper uses one GPU only.
    with pytest.raises(EvalPlanError) as err:
        plan({"gpu-01": gpus(L4_16, L4_16)}, CATALOGUE, inputs(models=["MiniCPM-V-2_6"]))
    assert str(err.value) == (
        "model 'MiniCPM-V-2_6' needs 18 GiB of GPU memory on one GPU: family minicpm cannot "
        "spread over several GPUs (VLMEvalKit's MiniCPM_V moves the whole model to one GPU "
        "(.cuda())), and the largest GPU planned has 16 GiB; families that spread: llava, "
        "internvl"
    )


def test_a_family_that_cannot_spread_takes_a_single_gpu_beside_a_grouped_one():
    catalogue = json.loads(json.dumps(CATALOGUE))
    catalogue["catalogue_models"]["MiniCPM-V-2_6"]["gpu_memory_gib"] = 14
    p = plan(
        {"gpu-01": gpus(L4_16, L4_16, L4_16)},
        catalogue,
        inputs(models=["llava_v1.5_13b", "MiniCPM-V-2_6"], benchmarks=["POPE"]),
    )
    where = {u["model"]: u["gpus"] for u in p["units"]}
    assert where == {"llava_v1.5_13b": [0, 1], "MiniCPM-V-2_6": [2]}
    # With every GPU grouped for the 13B there is no GPU left that it may use alone.
    with pytest.raises(EvalPlanError, match=r"every GPU here is grouped for a bigger model"):
        plan(
            {"gpu-01": gpus(L4_16, L4_16)},
            catalogue,
            inputs(models=["llava_v1.5_13b", "MiniCPM-V-2_6"], benchmarks=["POPE"]),
        )


def test_every_family_declares_what_the_planner_and_the_worker_need():
    for name, family in CATALOGUE["catalogue_families"].items():
        assert set(family["dtype"]) == set(family["devices"]), name
        assert isinstance(family["multi_gpu"], bool) and isinstance(family["batched"], bool)
        assert family["multi_gpu"] or family["single_gpu_reason"], name


def shared(facts, slots):
    return facts | {"eval_gpu_slots": slots}


def test_eval_gpu_slots_runs_both_models_side_by_side_on_one_gpu():
    # "2" as `-e eval_gpu_slots=2` gives it: extra vars arrive as strings.
    p = plan({"gpu-01": shared(gpus(H100), "2")}, CATALOGUE, inputs())
    assert [(s["slot"], s["gpus"], s["memory_gib"], s["shared_by"]) for s in p["slots"]] == [
        ("gpu0s0", [0], 39.8, 2),
        ("gpu0s1", [0], 39.8, 2),
    ]
    assert combos(p) == sorted((m, b) for m in DEFAULT_MODELS for b in DEFAULT_BENCHMARKS)
    # One model per slot, both slots busy at once: two loads, as with two GPUs.
    assert sorted((u["slot"], u["model"]) for u in p["units"]) == [
        ("gpu0s0", "llava_v1.5_13b"),
        ("gpu0s1", "llava_v1.5_7b"),
    ]
    assert all(u["gpus"] == [0] for u in p["units"])
    # Each worker knows it has half of the GPU's memory for its batches.
    slot_files = [s["slot_file"] for s in eval_host_units(p, "gpu-01")]
    assert [contract.parse_slot(f).shared_by for f in slot_files] == [2, 2]
    # "auto" (the default) shares it the same way: one GPU, two models.
    assert plan({"gpu-01": gpus(H100)}, CATALOGUE, inputs())["slots"] == p["slots"]
    # With 1, the one GPU runs the two models one after the other in one slot.
    alone = plan({"gpu-01": shared(gpus(H100), 1)}, CATALOGUE, inputs())
    assert [(s["slot"], s["shared_by"]) for s in alone["slots"]] == [("gpu0", 1)]
    assert [u["model"] for u in alone["units"]] == DEFAULT_MODELS


def test_eval_gpu_slots_is_per_host_and_counts_each_share_of_memory():
    fleet = {"big": shared(gpus(H100), 2), "small": shared(gpus(A10), 2)}
    # Half an H100 holds the 13B; half an A10 (11.2 GiB) holds neither model.
    p = plan(fleet, CATALOGUE, inputs(models=["llava_v1.5_13b"]))
    assert {u["host"] for u in p["units"]} == {"big"}
    with pytest.raises(EvalPlanError) as err:
        plan({"small": shared(gpus(A10), 2)}, CATALOGUE, inputs(models=["llava_v1.5_7b"]))
    message = str(err.value)
    assert "'llava_v1.5_7b' needs 15 GiB" in message
    assert "small gpu0s0 with 11.2 GiB" in message
    assert "fewer slots per GPU (eval_gpu_slots)" in message


def test_eval_gpu_slots_groups_gpus_when_a_share_is_too_small():
    p = plan({"gpu-01": shared(gpus(A10, A10), 2)}, CATALOGUE, inputs(models=["llava_v1.5_7b"]))
    assert [(s["slot"], s["gpus"], s["memory_gib"]) for s in p["slots"]] == [
        ("gpu0-1s0", [0, 1], 22.5),
        ("gpu0-1s1", [0, 1], 22.5),
    ]


def test_auto_eval_gpu_slots_shares_only_when_models_outnumber_gpus_and_fit():
    def layout(facts, models=DEFAULT_MODELS, **kw):
        p = plan({"h": facts}, CATALOGUE, inputs(models=models, **kw))
        return [s["slot"] for s in p["slots"]]

    for auto in ("auto", "", None):
        assert layout(shared(gpus(H100), auto)) == ["gpu0s0", "gpu0s1"]
    # As many GPUs as models: no sharing.
    assert layout(gpus(H100, H100)) == ["gpu0", "gpu1"]
    # One model: nothing to put beside it.
    assert layout(gpus(H100), models=["llava_v1.5_13b"]) == ["gpu0"]
    # Half of a 48 GB L40S (23.5 GiB) is short of the 13B with headroom (28 x 1.25 = 35 GiB).
    assert layout(gpus(46068)) == ["gpu0"]
    # Smoke checkpoints are tiny: any GPU is shared.
    assert layout(gpus(L4_16), smoke=True) == ["gpu0s0", "gpu0s1"]


@pytest.mark.parametrize("bad", [0, 9, "two", True, -1, "1.5"])
def test_bad_eval_gpu_slots_is_a_clear_error(bad):
    with pytest.raises(EvalInputError) as err:
        plan({"gpu-01": gpus(H100), "gpu-02": shared(gpus(H100), bad)}, CATALOGUE, inputs())
    assert str(err.value) == (
        f"host 'gpu-02': eval_gpu_slots must be auto or a whole number from 1 to 8 "
        f"(worker slots sharing each GPU), got {bad!r}"
    )


def test_host_without_gpu_is_an_error_outside_smoke_mode():
    with pytest.raises(EvalPlanError, match=r"host 'cpu-01' has no NVIDIA GPU.*smoke=true"):
        plan({"gpu-01": gpus(H100), "cpu-01": NO_GPU}, CATALOGUE, inputs())


def test_host_without_gpu_gets_one_cpu_slot_in_smoke_mode_or_when_allowed():
    for kw in ({"smoke": True}, {"allow_cpu": True}):
        p = plan({"cpu-01": NO_GPU, "cpu-02": NO_GPU}, CATALOGUE, inputs(**kw))
        assert [(s["host"], s["slot"], s["device"]) for s in p["slots"]] == [
            ("cpu-01", "cpu0", "cpu"),
            ("cpu-02", "cpu0", "cpu"),
        ]
        assert len(combos(p)) == 40


def test_smoke_ignores_gpu_memory():
    p = plan({"gpu-01": gpus(L4_16)}, CATALOGUE, inputs(models=["llava_v1.5_13b"], smoke=True))
    assert p["units"][0]["slot"] == "gpu0"


def test_no_hosts_is_an_error():
    # Every selected host unreachable: discovery left none to plan on.
    with pytest.raises(EvalPlanError, match="no reachable host"):
        planner({}, CATALOGUE, inputs() | {"hosts": {}})


def test_resume_plans_only_what_is_not_done():
    done = [["llava_v1.5_7b", b] for b in DEFAULT_BENCHMARKS[:15]]
    p = plan({"gpu-01": gpus(H100)}, CATALOGUE, inputs(), done)
    assert len(combos(p)) == 25
    assert len(p["done"]) == 15
    assert ("llava_v1.5_7b", DEFAULT_BENCHMARKS[0]) not in combos(p)


def test_a_judge_model_goes_to_the_benchmarks_vlmevalkit_lets_it_judge():
    judge = {"judge_model": "gpt-4o-mini", "judge_base_url": "http://judge.example:8000/v1"}
    p = plan({"a": gpus(H100)}, CATALOGUE, inputs(judge="openai", **judge))
    (s,) = eval_host_units(p, "a")[:1]
    slot = contract.parse_slot(s["slot_file"])
    assert (slot.judge, slot.judge_model, slot.judge_base_url) == ("openai", *judge.values())
    judged = {b.name: b.judge for u in slot.units for b in u.benchmarks}
    kinds = CATALOGUE["catalogue_kinds"]
    for name, by in judged.items():
        kind = kinds[CATALOGUE["catalogue_benchmarks"][name]["kind"]]
        assert by == ("openai" if kind["judged"] else "exact_matching"), name
    # MCQ and yes/no benchmarks are judged; VQA ones keep VLMEvalKit's rule-based metrics.
    assert judged["MMMU_DEV_VAL"] == judged["POPE"] == "openai"
    assert judged["TextVQA_VAL"] == "exact_matching"


def test_plan_is_deterministic_and_host_units_are_complete_slot_files():
    fleet = {"a": gpus(H100, H100), "b": gpus(H100) | {"eval_run_batch_size": "4"}}
    p1, p2 = plan(fleet, CATALOGUE, inputs()), plan(fleet, CATALOGUE, inputs())
    assert p1 == p2
    for host in fleet:
        for s in eval_host_units(p1, host):
            slot = contract.parse_slot(s["slot_file"])
            assert (slot.host, slot.slot, slot.run_id) == (host, s["slot"], "r1")
            assert s["container"] == f"vlm-eval-r1-{host}-{s['slot']}"
            assert slot.batch_size == (4 if host == "b" else DEFAULT_BATCH_SIZE)
            assert (slot.limit, slot.judge, slot.max_new_tokens) == (10, "exact_matching", None)
            for u in slot.units:
                assert u.family == "llava"
    units = [u for h in fleet for s in eval_host_units(p1, h) for u in s["slot_file"]["units"]]
    # What each benchmark's kind declares in the catalogue, the benchmark's own smoke shape first.
    pope = next(b for u in units for b in u["benchmarks"] if b["name"] == "POPE")
    assert pope == {
        "name": "POPE",
        "kind": "yorn",
        "dataset_type": "Y/N",
        "score_scale": 100.0,
        "smoke_shape": "yorn_pope",
        "judge": "exact_matching",
    }
    mmbench = next(b for u in units for b in u["benchmarks"] if b["name"] == "MMBench_DEV_EN")
    assert (mmbench["dataset_type"], mmbench["score_scale"], mmbench["smoke_shape"]) == (
        "MCQ",
        1.0,
        "mmbench",
    )


def test_a_cuda_only_family_is_never_planned_on_a_cpu_slot():
    with pytest.raises(EvalPlanError) as err:
        plan({"cpu-01": NO_GPU}, CATALOGUE, inputs(models=["InternVL2-2B"], allow_cpu=True))
    assert str(err.value) == (
        "model 'InternVL2-2B' (family internvl) runs only on cuda and no planned host has a "
        "GPU; families that run on the CPU: llava"
    )


def record(host, model, bench, status="ok", **kw):
    return {
        "run_id": "r1",
        "host": host,
        "slot": "gpu0",
        "model": model,
        "benchmark": bench,
        "status": status,
        "reason": None if status == "ok" else "RuntimeError: boom",
        "seconds": 1.5,
        "samples": 10,
        "scores": {"Overall": 0.5},
        "primary_metric": "Overall",
        "primary_score": 50.0,
        "primary_scale": 1.0,
        "scoring_note": None,
        "questions_file": None,
        "primary_interval": None,
        "questions_note": None,
        "smoke": False,
        "started_at": "2026-12-01T00:00:00+00:00",
        "finished_at": "2026-12-01T00:00:02+00:00",
        **kw,
    }


def small_plan():
    return plan(
        {"a": gpus(H100), "b": gpus(H100)},
        CATALOGUE,
        inputs(models=["llava_v1.5_7b", "llava_v1.5_13b"], benchmarks=["POPE", "MMStar"]),
    )


def test_summary_has_one_entry_per_combination_with_missing_detected():
    p = small_plan()
    where = {(u["model"], b["name"]): u["host"] for u in p["units"] for b in u["benchmarks"]}
    recs = [
        record(where[("llava_v1.5_7b", "POPE")], "llava_v1.5_7b", "POPE"),
        record(where[("llava_v1.5_7b", "MMStar")], "llava_v1.5_7b", "MMStar", "failed"),
    ]
    s = summarize(p, recs)
    assert s["totals"] == {"ok": 1, "failed": 1, "missing": 2, "total": 4}
    entry = {(e["model"], e["benchmark"]): e for e in s["combinations"]}
    assert entry[("llava_v1.5_7b", "MMStar")]["reason"] == "RuntimeError: boom"
    missing = entry[("llava_v1.5_13b", "POPE")]
    assert missing["status"] == "missing" and missing["host"] == where[("llava_v1.5_13b", "POPE")]
    assert "did not reach it" in missing["reason"]


def test_summary_names_a_lost_host():
    p = small_plan()
    lost = p["units"][0]["host"]
    s = summarize(p, [], lost_hosts=[lost])
    reasons = [e["reason"] for e in s["combinations"] if e["host"] == lost]
    assert reasons and all(f"host {lost} unreachable" in r for r in reasons)


def test_an_ok_record_from_an_earlier_attempt_on_another_host_counts():
    p = small_plan()
    recs = [record("elsewhere", m, b) for m in p["models"] for b in p["benchmarks"]]
    s = summarize(p, recs)
    assert s["totals"]["ok"] == 4
    assert {e["host"] for e in s["combinations"]} == {"elsewhere"}


def test_resume_selection_and_records_from_disk(tmp_path):
    for host, model, bench, status, kw in [
        ("a", "m1", "POPE", "ok", {}),
        ("a", "m1", "MMStar", "failed", {}),
        ("b", "m2", "POPE", "ok", {}),
        # A smoke result never stands in for a real one.
        ("b", "m3", "POPE", "ok", {"smoke": True}),
    ]:
        d = tmp_path / host / model / bench
        d.mkdir(parents=True)
        (d / "status.json").write_text(json.dumps(record(host, model, bench, status, **kw)))
    broken = tmp_path / "b" / "m2" / "MMStar"
    broken.mkdir(parents=True)
    (broken / "status.json").write_text("{not json")
    foreign = tmp_path / "b" / "m3" / "MMStar"
    foreign.mkdir(parents=True)
    (foreign / "status.json").write_text(json.dumps({"status": "ok", "score": 1}))
    recs = eval_controller_records(str(tmp_path))
    assert len(recs) == 6
    by = {(r["model"], r["benchmark"]): r for r in recs}
    assert by[("m2", "MMStar")]["status"] == "failed"
    assert "not readable JSON" in by[("m2", "MMStar")]["reason"]
    # A record of another format fails loudly, naming the file and what it lacks.
    assert by[("m3", "MMStar")]["status"] == "failed"
    assert (
        f"status record {foreign / 'status.json'} breaks the contract: missing key 'run_id'"
        in (by[("m3", "MMStar")]["reason"])
    )
    assert eval_done_combinations(recs, False) == [["m1", "POPE"], ["m2", "POPE"]]
    assert eval_done_combinations(recs, True) == [["m3", "POPE"]]


def test_missing_reason_carries_the_containers_last_words():
    p = small_plan()
    u = p["units"][0]
    s = summarize(p, [], slot_notes={f"{u['host']}/{u['slot']}": "container exited 1: No module"})
    reasons = {e["reason"] for e in s["combinations"] if e["host"] == u["host"]}
    assert any("container exited 1: No module" in r for r in reasons)


def test_smoke_units_name_the_checkpoint_they_load():
    def checkpoints(**kw):
        p = plan({"h": NO_GPU}, CATALOGUE, inputs(smoke=True, **kw))
        units = eval_host_units(p, "h")[0]["slot_file"]["units"]
        return {u["model"]: u["smoke_checkpoint"] for u in units}

    assert checkpoints() == {"llava_v1.5_7b": "known-weak", "llava_v1.5_13b": "known-strong"}
    assert checkpoints(smoke_weights="random") == {
        "llava_v1.5_7b": "random",
        "llava_v1.5_13b": "random",
    }
    real = plan({"h": gpus(H100)}, CATALOGUE, inputs())
    assert all(
        "smoke_checkpoint" not in u for u in eval_host_units(real, "h")[0]["slot_file"]["units"]
    )


def test_eval_gpu_slots_splits_a_cpu_host_too_and_custom_units_name_their_checkpoint():
    custom = CATALOGUE | {
        "catalogue_models": CATALOGUE["catalogue_models"]
        | {"mine": {"family": "llava", "gpu_memory_gib": 1, "load_cost": 1, "cost_factor": 1.0,
                    "custom": True}},
        "catalogue_benchmarks": CATALOGUE["catalogue_benchmarks"]
        | {"my_mcq": {"kind": "mcq", "samples": 12, "cost_per_sample": 1.0, "custom": True,
                      "md5": "0" * 32}},
    }  # fmt: skip
    fleet = {"cpu-01": NO_GPU | {"eval_gpu_slots": "2"}}
    p = plan(fleet, custom, inputs(models=["mine"], benchmarks=["my_mcq", "POPE"], allow_cpu=True))
    assert sorted(s["slot"] for s in p["slots"]) == ["cpu0s0", "cpu0s1"]
    units = [u for s in eval_host_units(p, "cpu-01") for u in s["slot_file"]["units"]]
    assert {u["checkpoint"] for u in units} == {"/models/mine"}
    benches = {b["name"]: b for u in units for b in u["benchmarks"]}
    assert benches["my_mcq"]["md5"] == "0" * 32 and "md5" not in benches["POPE"]
    # A custom model has no hub repo to load early: its checkpoint is its path.
    assert all("hf_repo" not in u for u in units)


MODELS = ("llava_v1.5_7b", "llava_v1.5_13b")


def test_catalogue_units_name_the_hub_repo_their_weights_load_from():
    for smoke in (False, True):
        p = plan({"h": gpus(H100)}, CATALOGUE, inputs(smoke=smoke))
        units = [u for s in eval_host_units(p, "h") for u in s["slot_file"]["units"]]
        repos = {m: CATALOGUE["catalogue_models"][m]["hf_repo"] for m in MODELS}
        assert {u["model"]: u["hf_repo"] for u in units} == repos


# --- precision: each benchmark at its own sample limit ----------------------------------------


def settled(**raw):
    """The inputs the validation step settles from these -e values."""
    return check_inputs({"run_id": "r1", **raw}, CATALOGUE, "r1", None, {"gpu-01": {}}, ["gpu-01"])


def slot_limits(p, host="gpu-01"):
    """(model, benchmark, shard index) -> the limit the worker's own parser reads from the
    host's slot files, and each slot file's run-wide limit."""
    out, run_wide = {}, set()
    for s in eval_host_units(p, host):
        slot = contract.parse_slot(s["slot_file"])
        run_wide.add(slot.limit)
        for unit, bench in slot.combinations():
            key = (unit.model, bench.name, bench.shard.index if bench.shard else None)
            out[key] = slot.limit_of(bench)
    return out, run_wide


def test_precision_runs_each_benchmark_at_its_own_limit_capped_by_its_size():
    inp = settled(models="llava_v1.5_7b", benchmarks="POPE,RealWorldQA,MMBench_DEV_EN", precision=2)
    p = plan({"gpu-01": gpus(H100)}, CATALOGUE, inp)
    # 2 points: 2398 questions in the worst case; RealWorldQA has 765.
    assert (p["limit"], p["precision"]) == (None, 2.0)
    assert p["limits"] == {"POPE": 2398, "RealWorldQA": 765, "MMBench_DEV_EN": 2398}
    assert eval_limits_text(p) == "POPE 2398, RealWorldQA 765, MMBench_DEV_EN 2398"
    limits, run_wide = slot_limits(p)
    assert run_wide == {None}
    assert limits == {
        ("llava_v1.5_7b", "POPE", None): 2398,
        ("llava_v1.5_7b", "RealWorldQA", None): 765,
        ("llava_v1.5_7b", "MMBench_DEV_EN", None): 2398,
    }


def test_precision_counts_mmbench_questions_with_all_their_rotations():
    p = plan({"gpu-01": gpus(H100)}, CATALOGUE, settled(benchmarks="MMBench_DEV_EN", precision=5))
    limits, _ = slot_limits(p)
    (limit,) = set(limits.values())
    # 500 questions of 4 rotations each (index, index + 1e6, ...), as VLMEvalKit lays them out.
    indices = [q + r * 1_000_000 for r in range(4) for q in range(500)]
    kept = select_positions(indices, limit, circular=is_circular("MMBench_DEV_EN"))
    assert count_questions([indices[i] for i in kept], circular=True) == limit == 381
    assert len(kept) == 4 * 381


def test_a_precision_plans_cost_is_each_benchmarks_own_rows():
    inp = settled(models="llava_v1.5_7b", benchmarks="POPE,RealWorldQA", precision=2)
    p = plan({"gpu-01": gpus(H100)}, CATALOGUE, inp)
    model, benches = (
        CATALOGUE["catalogue_models"]["llava_v1.5_7b"],
        CATALOGUE["catalogue_benchmarks"],
    )
    rows = (
        2398 * benches["POPE"]["cost_per_sample"] + 765 * benches["RealWorldQA"]["cost_per_sample"]
    )
    assert p["estimated_cost"] == round(model["load_cost"] + rows * model["cost_factor"], 1)
    # Far less than the whole benchmarks (POPE has 5127 rows).
    whole = plan(
        {"gpu-01": gpus(H100)},
        CATALOGUE,
        settled(models="llava_v1.5_7b", benchmarks="POPE,RealWorldQA"),
    )
    assert p["estimated_cost"] < whole["estimated_cost"] - 2000


def test_precision_shards_count_each_benchmarks_own_rows_and_merges_keep_its_limit():
    inp = settled(
        models="llava_v1.5_7b", benchmarks="POPE,RealWorldQA", precision=2, shard_rows=1000
    )
    p = plan({"gpu-01": gpus(H100, H100) | {"eval_gpu_slots": 1}}, CATALOGUE, inp)
    # POPE's 2398 rows in 3 shards of at most 1000 (its 5127 would take 6); RealWorldQA's 765 whole.
    assert [(s["benchmark"], s["count"]) for s in p["sharded"]] == [("POPE", 3)]
    limits, _ = slot_limits(p)
    assert sorted(limits.items()) == [
        (("llava_v1.5_7b", "POPE", 0), 2398),
        (("llava_v1.5_7b", "POPE", 1), 2398),
        (("llava_v1.5_7b", "POPE", 2), 2398),
        (("llava_v1.5_7b", "RealWorldQA", None), 765),
    ]
    # The merge reads POPE's limited rows again: its slot file carries the same limit.
    shards = [
        contract.make_record(
            run_id="r1",
            host="gpu-01",
            slot="gpu0",
            model="llava_v1.5_7b",
            benchmark="POPE",
            status="ok",
            started_at="t",
            seconds=1.0,
            smoke=False,
            samples=800,
            extra={"shard": {"index": i, "count": 3}},
        )
        for i in range(3)
    ]
    merge = contract.parse_slot(
        eval_merges(p, CATALOGUE, [], shards, ["gpu-01"])["gpu-01"]["slot_file"]
    )
    assert [(b.name, merge.limit_of(b)) for _, b in merge.combinations()] == [("POPE", 2398)]


def test_a_plain_limit_stays_the_slot_files_one_limit():
    p = plan({"gpu-01": gpus(H100)}, CATALOGUE, inputs(benchmarks=["POPE", "MMStar"], limit=10))
    assert (p["limit"], p["precision"], p["limits"]) == (10, None, {"POPE": 10, "MMStar": 10})
    assert all("limit" not in b for u in p["units"] for b in u["benchmarks"])
    limits, run_wide = slot_limits(p)
    assert run_wide == {10} and set(limits.values()) == {10}
    whole = plan({"gpu-01": gpus(H100)}, CATALOGUE, inputs(benchmarks=["POPE"], limit=None))
    assert whole["limits"] == {"POPE": None}


def test_summary_pools_each_model_over_the_benchmarks_with_intervals():
    # Two benchmarks with intervals 40..60 and 70..90 (half-widths 10, standard errors 10 / z):
    # the pooled mean is 65, its half-width z x sqrt(2 x (10 / z)^2) / 2 = 10 / sqrt(2).
    p = small_plan()
    where = {(u["model"], b["name"]): u["host"] for u in p["units"] for b in u["benchmarks"]}

    def scored(model, bench, score, low, high):
        interval = {"low": low, "high": high, "confidence": 0.95, "method": "Wilson"}
        interval |= {"statistic": "mean", "questions": 10, "clusters": 10}
        return record(
            where[(model, bench)], model, bench, primary_score=score, primary_interval=interval
        )

    recs = [
        scored("llava_v1.5_7b", "POPE", 50.0, 40.0, 60.0),
        scored("llava_v1.5_7b", "MMStar", 80.0, 70.0, 90.0),
        scored("llava_v1.5_13b", "POPE", 50.0, 40.0, 60.0),
    ]
    pooled = summarize(p, recs)["pooled"]
    seven = pooled["llava_v1.5_7b"]
    assert seven["left_out"] == []
    assert seven["figure"]["score"] == pytest.approx(65.0)
    assert seven["figure"]["low"] == pytest.approx(65.0 - 10 / math.sqrt(2), abs=1e-5)
    assert seven["figure"]["high"] == pytest.approx(65.0 + 10 / math.sqrt(2), abs=1e-5)
    assert seven["figure"]["benchmarks"] == 2
    # MMStar is missing for the 13B: left out, and said so.
    assert pooled["llava_v1.5_13b"]["left_out"] == ["MMStar"]
    assert pooled["llava_v1.5_13b"]["figure"]["benchmarks"] == 1
