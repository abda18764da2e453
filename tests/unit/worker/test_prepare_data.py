"""The data preparation's pure parts: data_source/data_dir in the validation step, the
benchmarks a host prepares, the host lock, the md5 message, and what the summary says of the
combinations of a host whose preparation failed (the preparation itself runs in the image:
tests/e2e/test_prepare_data.py)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from ansible_collections.vlmfleet.shared.plugins.module_utils import contract
from ansible_collections.vlmfleet.shared.plugins.plugin_utils.inputs import eval_check_inputs
from ansible_collections.vlmfleet.shared.plugins.plugin_utils.plan import (
    eval_host_units,
    eval_official_benchmarks,
    eval_prepare_container,
)
from ansible_collections.vlmfleet.shared.plugins.plugin_utils.summary import eval_summary
from test_catalogue import CATALOGUE, NOW
from test_plan import H100, gpus, inputs, plan
from vlmfleet.prepare_data import host_lock, md5_mismatch, remote_size, room_problem


def check(**raw):
    return eval_check_inputs(
        raw, CATALOGUE, NOW, None, {"localhost": {}}, ["localhost"], ["localhost"]
    )


def test_download_is_the_default_and_needs_no_directory():
    out = check(benchmarks="POPE")
    assert out["error"] is None
    assert (out["inputs"]["data_source"], out["inputs"]["data_dir"]) == ("download", None)


def test_ship_takes_a_directory_holding_each_official_benchmark(tmp_path):
    for name in ("POPE", "MMStar"):
        (tmp_path / f"{name}.tsv").write_text("index\n")
    out = check(benchmarks="POPE,MMStar", data_source="ship", data_dir=str(tmp_path))
    assert out["error"] is None
    assert (out["inputs"]["data_source"], out["inputs"]["data_dir"]) == ("ship", str(tmp_path))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"data_source": "rsync"}, "data_source must be one of download, ship, got 'rsync'"),
        (
            {"data_source": "ship"},
            "data_source=ship needs data_dir: a directory on the controller holding "
            "<name>.tsv for each benchmark of the run",
        ),
        (
            {"data_source": "ship", "data_dir": "/nonexistent/dir"},
            "data_dir '/nonexistent/dir' is not a directory on the controller",
        ),
        ({"data_dir": "/tmp"}, "data_dir applies to data_source=ship only"),
        (
            {"data_source": "ship", "data_dir": "/tmp", "smoke": "true"},
            "data_source=ship applies to real runs",
        ),
    ],
)
def test_bad_data_inputs_stop_in_the_validation_step(raw, message):
    out = check(benchmarks="POPE", **raw)
    assert out["inputs"] is None
    assert message in out["error"], out["error"]


def test_ship_names_every_tsv_the_directory_lacks(tmp_path):
    (tmp_path / "MMStar.tsv").write_text("index\n")
    out = check(benchmarks="POPE,MMStar,BLINK", data_source="ship", data_dir=str(tmp_path))
    assert out["error"] == (
        f"data_dir {tmp_path} lacks POPE.tsv, BLINK.tsv (data_source=ship needs "
        "VLMEvalKit's TSV of each benchmark of the run)"
    )


def test_a_host_prepares_each_official_benchmark_once_and_no_custom_one():
    p = plan({"h": gpus(H100, H100)}, CATALOGUE, inputs(benchmarks=["MMStar", "POPE"]))
    slots = eval_host_units(p, "h")
    assert len(slots) >= 2  # two slots share the host's LMUData
    assert eval_official_benchmarks(slots) == ["MMStar", "POPE"]
    mine = {"name": "mine", "kind": "mcq", "dataset_type": "MCQ", "score_scale": 1.0,
            "smoke_shape": "plain_mcq", "md5": "0" * 32}  # fmt: skip
    unit = {"model": "m", "family": "llava", "benchmarks": [mine]}
    custom = contract.parse_slot(slots[0]["slot_file"] | {"units": [unit]})
    assert contract.official_benchmarks([custom]) == []
    smoke = contract.parse_slot(slots[0]["slot_file"] | {"smoke": True})
    assert contract.official_benchmarks([smoke]) == []
    assert eval_prepare_container("r1", "gpu 01") == "vlm-eval-r1-gpu_01-prepare"


def test_the_host_lock_makes_a_second_preparation_wait(tmp_path):
    held = threading.Event()
    release = threading.Event()

    def first():
        with host_lock(tmp_path):
            held.set()
            release.wait(5)

    thread = threading.Thread(target=first)
    thread.start()
    held.wait(5)
    threading.Timer(0.3, release.set).start()
    with host_lock(tmp_path) as times:
        pass
    thread.join()
    assert times["lock_waited_seconds"] >= 0.25
    assert (tmp_path / contract.PREPARE_LOCK).exists()


def test_an_md5_mismatch_names_both_md5s():
    tsv = Path("/workspace/LMUData/POPE.tsv")
    assert md5_mismatch("POPE", tsv, "a" * 32, "a" * 32, "shipped") is None
    # VLMEvalKit's table without an md5 for the name accepts any file, as VLMEvalKit does.
    assert md5_mismatch("POPE", tsv, "a" * 32, None, "shipped") is None
    assert md5_mismatch("POPE", tsv, "a" * 32, "b" * 32, "shipped") == (
        f"POPE: shipped {tsv} has md5 {'a' * 32}, VLMEvalKit's table says {'b' * 32}"
    )


def test_the_summary_says_data_not_prepared_for_the_hosts_combinations(tmp_path):
    p = plan({"a": gpus(H100), "b": gpus(H100)}, CATALOGUE, inputs(benchmarks=["POPE", "MMStar"]))
    failed, ok = sorted({u["host"] for u in p["units"]})
    error = "could not download POPE from https://x/POPE.tsv: URLError: <urlopen error -3>"
    contract.write_json_atomic(
        tmp_path / failed / contract.PREPARE_FILE,
        dict.fromkeys(contract.PREPARE_KEYS) | {"status": "failed", "error": error},
    )
    contract.write_json_atomic(
        tmp_path / ok / contract.PREPARE_FILE,
        dict.fromkeys(contract.PREPARE_KEYS) | {"status": "ok"},
    )
    s = eval_summary(p, str(tmp_path))
    reasons = {e["host"]: e["reason"] for e in s["combinations"]}
    assert reasons[failed] == f"data not prepared: {error}"
    assert "did not reach it" in reasons[ok]
    (tmp_path / ok / contract.PREPARE_FILE).write_text(json.dumps({"state": "?"}))
    assert contract.prepare_failure(tmp_path / ok) == (
        f"data not prepared: {tmp_path / ok / contract.PREPARE_FILE} is not a preparation record"
    )


def test_the_worker_refuses_an_official_benchmark_that_was_not_prepared(tmp_path, monkeypatch):
    from vlmfleet.datasets import DatasetError, check_prepared

    monkeypatch.setenv("LMUData", str(tmp_path))

    # A VLMEvalKit dataset class's md5 table.
    table = type("Table", (), {"DATASET_MD5": {"POPE": hashlib.md5(b"pope\n").hexdigest()}})

    with pytest.raises(DatasetError) as err:
        check_prepared(table, "POPE")
    assert str(err.value) == (
        "data for POPE not prepared on this host (eval.yml's preparation step): "
        f"no file {tmp_path / 'POPE.tsv'}"
    )
    (tmp_path / "POPE.tsv").write_bytes(b"other\n")
    with pytest.raises(DatasetError, match=r"has md5 \w+, VLMEvalKit's table says"):
        check_prepared(table, "POPE")
    (tmp_path / "POPE.tsv").write_bytes(b"pope\n")
    os.utime(tmp_path / "POPE.tsv", ns=(1, 1))  # a new file: the md5 is not the cached one
    check_prepared(table, "POPE")


class StandInDatasetServer(BaseHTTPRequestHandler):
    """A stand-in for VLMEvalKit's dataset server (unreachable from here): HEAD of /<bytes>.tsv
    answers that Content-Length, /nolength.tsv none, anything else 404."""

    def do_HEAD(self) -> None:
        stem = self.path.strip("/").removesuffix(".tsv")
        if not (stem.isdigit() or stem == "nolength"):
            self.send_error(404)
            return
        self.send_response(200)
        if stem.isdigit():
            self.send_header("Content-Length", stem)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def dataset_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), StandInDatasetServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_size_of_a_download_is_asked_of_its_server(dataset_server):
    assert remote_size(f"{dataset_server}/123456789.tsv") == 123456789
    # No length, a missing file, no server, or no URL at all: not counted, not an error.
    assert remote_size(f"{dataset_server}/nolength.tsv") is None
    assert remote_size(f"{dataset_server}/missing.tsv") is None
    assert remote_size("http://127.0.0.1:9/POPE.tsv", timeout=5) is None
    assert remote_size("POPE.tsv") is None


def test_downloads_the_disk_cannot_hold_are_refused_naming_path_free_and_need(tmp_path):
    free = shutil.disk_usage(tmp_path).free
    # Each TSV plus 3/4 of it for its images; MMStar's images are already there.
    (tmp_path / "images" / "MMStar").mkdir(parents=True)
    sizes = {"POPE": 4 * free, "MMStar": 2**30}
    problem = room_problem(sizes, tmp_path, "/srv/vlm-eval/LMUData")
    assert problem is not None
    shape = (
        r"not enough disk for the downloads: /srv/vlm-eval/LMUData has [0-9.]+ GiB \(([0-9]+) "
        r"bytes\) free, and POPE \(([0-9.]+) GiB\), MMStar \(1\.00 GiB\) with their images need "
        r"([0-9.]+) GiB; free space there, or ship the data \(data_source=ship\)"
    )
    match = re.fullmatch(shape, problem)
    assert match, problem
    # The free bytes at the time of the check, the need with POPE's images and not MMStar's.
    assert abs(int(match[1]) - free) < 2**30
    assert match[2] == f"{4 * free / 2**30:.2f}"
    assert match[3] == f"{(7 * free + 2**30) / 2**30:.2f}"
    assert room_problem({"POPE": 1000}, tmp_path, "x") is None
