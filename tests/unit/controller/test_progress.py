"""The eval_progress callback's line format and time-left estimate (no playbook run)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from ansible_collections.vlmfleet.shared.plugins.plugin_utils.progress import (
    CallbackModule,
    eta_seconds,
    format_duration,
    parse_started,
    progress_items,
    progress_line,
)

T0 = datetime(2026, 11, 27, 2, 0, 0, tzinfo=UTC).timestamp()
PROGRESS = {
    "done": 12,
    "total": 40,
    "current": "llava_v1.5_7b/POPE",
    "started_at": "2026-11-27T02:00:00Z",
    "slots": [
        {"host": "gpu-01", "slot": "gpu0", "done": 5, "total": 20,
         "current": "llava_v1.5_7b/POPE", "state": "running"},
        {"host": "gpu-01", "slot": "gpu1", "done": 7, "total": 20,
         "current": "llava_v1.5_13b/GQA_TestDev_Balanced", "state": "running"},
    ],
}  # fmt: skip


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "--"), (-1, "--"), (0, "0s"), (59.4, "59s"), (60, "1m00s"), (302, "5m02s"),
     (3600, "1h00m"), (3780, "1h03m")],
)  # fmt: skip
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


def test_eta_from_rate_so_far() -> None:
    # 12 of 40 in 300 s: 25 s each, 28 left.
    assert eta_seconds(12, 40, 300) == pytest.approx(700)
    assert eta_seconds(0, 40, 300) is None  # no rate yet
    assert eta_seconds(40, 40, 300) == 0.0
    assert eta_seconds(3, 0, 10) == 0.0


def test_eta_counts_only_what_finished_since_the_clock_started() -> None:
    # 10 were done when the controller first saw the host; 2 more in 100 s: 50 s each.
    assert eta_seconds(12, 40, 100, seen_done=10) == pytest.approx(1400)
    assert eta_seconds(10, 40, 100, seen_done=10) is None


def test_line_shows_counts_elapsed_eta_and_slots() -> None:
    line = progress_line("gpu-01", PROGRESS, now=T0 + 300, first_seen=T0 + 250)
    assert line == (
        "eval gpu-01: 12/40 (30%) | elapsed 5m00s | ETA 11m40s | "
        "gpu0 5/20 llava_v1.5_7b/POPE, gpu1 7/20 llava_v1.5_13b/GQA_TestDev_Balanced"
    )
    assert "\n" not in line


def test_line_without_started_at_counts_from_first_sight() -> None:
    progress = {"done": 1, "total": 4, "current": "m/b"}
    assert progress_line("h", progress, now=1000.0, first_seen=940.0) == (
        "eval h: 1/4 (25%) | elapsed 1m00s | ETA 3m00s | now m/b"
    )
    assert "ETA --" in progress_line("h", {"done": 0, "total": 4}, 1000.0, 940.0)


def test_finished_and_stopped_slots() -> None:
    progress = {
        "done": 20,
        "total": 20,
        "slots": [
            {"slot": "gpu0", "done": 10, "total": 10, "state": "exited"},
            {"slot": "gpu1", "done": 10, "total": 10, "state": "exited"},
        ],
    }
    line = progress_line("h", progress, now=T0 + 60, first_seen=T0)
    assert line.endswith("| finished | gpu0 done 10/10, gpu1 done 10/10")
    slot = {"slot": "gpu0", "done": 3, "total": 10, "state": "exited", "current": "m/b"}
    crashed = {"done": 3, "total": 10, "slots": [slot]}
    assert progress_line("h", crashed, T0 + 60, T0).endswith("gpu0 3/10 exited")


def test_many_slots_stay_on_one_short_line() -> None:
    slots = [{"slot": f"gpu{i}", "done": 1, "total": 5, "current": "llava_v1.5_13b/MMStar",
              "state": "running"} for i in range(8)]  # fmt: skip
    line = progress_line("h", {"done": 8, "total": 40, "slots": slots}, T0 + 60, T0)
    assert line.count("gpu") == 4 and line.endswith(", +4 slots")
    assert len(line) < 220


def test_parse_started() -> None:
    assert parse_started("2026-11-27T02:00:00Z") == T0
    assert parse_started("yesterday") is None
    assert parse_started(None) is None


def test_only_results_with_eval_progress_count() -> None:
    assert progress_items({"changed": False, "stdout": "x"}, "h") == []
    assert progress_items({"eval_progress": {"done": 1}}, "h") == []
    # eval.yml's resume check calls the poll module before any slot exists: 0/0, no line.
    assert progress_items({"eval_progress": {"done": 0, "total": 0, "slots": []}}, "h") == []
    assert progress_items({"eval_progress": PROGRESS}, "gpu-01") == [("gpu-01", PROGRESS)]
    many = [{"host": "a", "done": 1, "total": 2}, {"host": "b", "done": 0, "total": 2}]
    assert [h for h, _ in progress_items({"eval_progress": many}, "localhost")] == ["a", "b"]


class _Host:
    def __init__(self, name: str) -> None:
        self.name = name

    def get_name(self) -> str:
        return self.name


class _Result:
    """Stand-in for Ansible's TaskResult: the two attributes the callback reads."""

    def __init__(self, host: str, result: dict) -> None:
        self._host = _Host(host)
        self._result = result


class _Display:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def display(self, msg: str, **_kwargs: object) -> None:
        self.lines.append(msg)


def test_callback_prints_one_line_per_host_per_poll_and_nothing_else() -> None:
    cb = CallbackModule()
    cb._display = _Display()
    clock = iter([T0 + 100, T0 + 130, T0 + 160])
    cb._clock = lambda: next(clock)
    cb.v2_runner_retry(_Result("gpu-01", {"eval_progress": PROGRESS, "attempts": 1}))
    cb.v2_runner_on_ok(_Result("gpu-02", {"changed": False, "msg": "unrelated task"}))
    many = [{"host": "gpu-01", "done": 13, "total": 40}, {"host": "gpu-02", "done": 2, "total": 8}]
    cb.v2_runner_retry(_Result("localhost", {"eval_progress": many}))
    lines = cb._display.lines
    assert len(lines) == 3
    assert lines[0].startswith("eval gpu-01: 12/40 (30%) | elapsed 1m40s")
    assert lines[1].startswith("eval gpu-01: 13/40")
    # gpu-02 first seen at the third poll: no elapsed time yet, so no rate and no ETA.
    assert lines[2] == "eval gpu-02: 2/8 (25%) | elapsed 0s | ETA --"


def test_line_from_eval_slot_status_output() -> None:
    # What the eval_slot_status module returns: container states, no started_at.
    progress = {
        "done": 7,
        "total": 20,
        "failed": 1,
        "current": "gpu0: llava_v1.5_7b/POPE",
        "slots": [
            {"slot": "gpu0", "state": "running", "done": 4, "total": 10,
             "current": "llava_v1.5_7b/POPE"},
            {"slot": "gpu1", "state": "exited", "exit_code": 137, "done": 3, "total": 10,
             "current": None},
        ],
    }  # fmt: skip
    line = progress_line("gpu-01", progress, now=T0 + 120, first_seen=T0, first_done=5)
    # 2 finished in the 120 s since the first poll: 60 s each for the 13 left.
    assert line == (
        "eval gpu-01: 7/20 (35%) | elapsed 2m00s | ETA 13m00s | "
        "gpu0 4/10 llava_v1.5_7b/POPE, gpu1 3/10 exited"
    )


def test_resumed_run_without_started_at_is_not_optimistic() -> None:
    # 30 of 40 were ok before the rerun: at the first poll nothing is known about the rate.
    first = progress_line("h", {"done": 30, "total": 40}, now=T0, first_seen=T0, first_done=30)
    assert "ETA --" in first
    later = progress_line("h", {"done": 31, "total": 40}, now=T0 + 50, first_seen=T0,
                          first_done=30)  # fmt: skip
    assert "ETA 7m30s" in later  # 9 left at 50 s each, not at 31 per 50 s


def test_callback_keeps_the_first_poll_as_baseline() -> None:
    cb = CallbackModule()
    cb._display = _Display()
    clock = iter([T0, T0 + 50])
    cb._clock = lambda: next(clock)
    cb.v2_runner_retry(_Result("h", {"eval_progress": {"done": 30, "total": 40}}))
    cb.v2_runner_retry(_Result("h", {"eval_progress": {"done": 31, "total": 40}}))
    assert cb._display.lines[1] == "eval h: 31/40 (77%) | elapsed 50s | ETA 7m30s"


def test_a_play_stopped_while_workers_run_says_they_run_on_and_how_to_resume() -> None:
    """Ctrl-C on ansible-playbook prints only "User interrupted execution"; the callback says
    what became of the workers (as the process exits) and how to finish the run."""
    cb = CallbackModule()
    cb._display = _Display()
    cb.v2_runner_retry(
        _Result("gpu-01", {"eval_progress": PROGRESS | {"run_id": "r7"}, "finished": False})
    )
    cb.interrupted_note()
    note = cb._display.lines[-1]
    assert note.startswith("eval.yml stopped while the workers of run r7 were running")
    assert "rerun with -e run_id=r7" in note
    # Once: atexit calls it again.
    cb.interrupted_note()
    assert cb._display.lines[-1] == note and len(cb._display.lines) == 2


def test_a_play_that_ended_leaves_no_note() -> None:
    cb = CallbackModule()
    cb._display = _Display()
    running = {"eval_progress": PROGRESS | {"run_id": "r7"}, "finished": False}
    cb.v2_runner_retry(_Result("gpu-01", running))
    cb.v2_playbook_on_stats(None)
    cb.interrupted_note()
    assert len(cb._display.lines) == 1
    # Nor one stopped after its workers finished (in the collect or the report).
    cb.v2_runner_retry(_Result("gpu-01", running))
    cb.v2_runner_on_ok(_Result("gpu-01", running | {"finished": True}))
    cb.interrupted_note()
    assert len(cb._display.lines) == 3
