"""Which of a run's containers a later task saves and removes, and where their consoles go."""

from __future__ import annotations

from eval_plan import eval_consoles, eval_container_labels, eval_ended_containers, eval_run_label


def test_a_runs_containers_on_a_host_are_found_by_their_labels() -> None:
    labels = eval_container_labels("r1", "node-a", "cpu0")
    wanted = eval_run_label("r1", "node-a")
    assert sorted(f"{k}={v}" for k, v in labels.items() if f"{k}={v}" in wanted) == sorted(wanted)
    assert eval_run_label("r1") == ["io.vlm-eval.run_id=r1"]


def test_ended_containers_are_saved_running_ones_left_to_their_attempt() -> None:
    found = [
        {"Names": ["/w0"], "State": "exited", "Created": 0, "Labels": {"io.vlm-eval.slot": "cpu0"}},
        {
            "Names": ["/w1"],
            "State": "running",
            "Created": 0,
            "Labels": {"io.vlm-eval.slot": "cpu1"},
        },
        {"Names": ["/w2"], "State": "dead", "Created": 60, "Labels": {"io.vlm-eval.slot": "cpu2"}},
    ]
    ended = eval_ended_containers(found)
    assert ended == [
        {"name": "w0", "slot": "cpu0", "created": 0},
        {"name": "w2", "slot": "cpu2", "created": 60},
    ]
    read = [{"rc": 0, "stdout": "log 0", "item": ended[0]}, {"rc": 1, "item": ended[1]}]
    # A console that could not be read is not saved, so its container is not removed.
    assert eval_consoles(read, earlier=False) == [
        {"name": "w0", "slot": "cpu0", "file": "container.log", "content": "log 0"}
    ]
    # An earlier attempt's console goes beside this attempt's, named by when it was created.
    assert eval_consoles(read, earlier=True)[0]["file"] == "container-19700101T000000Z.log"
