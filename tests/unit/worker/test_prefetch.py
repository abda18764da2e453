"""vlmfleet.prefetch: a model's weight files read ahead of its load."""

from __future__ import annotations

import threading
from pathlib import Path

from vlmfleet.prefetch import Prefetch, available_memory, read_ahead, weight_files, within


def checkpoint(folder: Path) -> Path:
    (folder / "vision_tower").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "tokenizer.model").write_bytes(b"t" * 10)
    (folder / "pytorch_model-00001-of-00001.bin").write_bytes(b"b" * 700)
    (folder / "model.safetensors").write_bytes(b"s" * 5000)
    (folder / "vision_tower" / "model.safetensors").write_bytes(b"v" * 300)
    return folder


def test_the_weight_files_of_a_checkpoint_and_its_vision_tower_are_read(tmp_path: Path) -> None:
    folder = checkpoint(tmp_path / "llava-ckpt")
    assert [p.relative_to(folder).as_posix() for p in weight_files(folder)] == [
        "model.safetensors",
        "pytorch_model-00001-of-00001.bin",
        "vision_tower/model.safetensors",
    ]
    assert Prefetch(folder).files == weight_files(folder)
    assert read_ahead(weight_files(folder), threading.Event()) == 6000


def test_a_set_stop_ends_the_read_and_a_missing_folder_reads_nothing(tmp_path: Path) -> None:
    folder = checkpoint(tmp_path / "llava-ckpt")
    stop = threading.Event()
    stop.set()
    assert read_ahead(weight_files(folder), stop) == 0
    with Prefetch(tmp_path / "absent") as reading:
        assert reading.files == []
    with Prefetch(None) as reading:
        assert reading.files == []


def test_an_unreadable_file_is_skipped_and_the_rest_read(tmp_path: Path) -> None:
    folder = checkpoint(tmp_path / "llava-ckpt")
    (folder / "model.safetensors").unlink()
    (folder / "model.safetensors").symlink_to(tmp_path / "gone.safetensors")
    files = [folder / "model.safetensors", *weight_files(folder)]
    assert read_ahead(files, threading.Event()) == 1000


def test_only_what_fits_half_the_available_memory_is_read_ahead(tmp_path: Path) -> None:
    folder = checkpoint(tmp_path / "llava-ckpt")
    # model.safetensors (5000 bytes) first, then the .bin (700), then the tower's (300).
    assert [p.name for p in within(weight_files(folder), 5700)] == [
        "model.safetensors",
        "pytorch_model-00001-of-00001.bin",
    ]
    assert within(weight_files(folder), 4999) == []
    reading = Prefetch(folder, room=5000)
    assert [p.name for p in reading.files] == ["model.safetensors"] and reading.skipped == 2
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       131072000 kB\nMemAvailable:    2048 kB\n")
    assert available_memory(meminfo) == 2048 * 1024
    meminfo.write_text("MemTotal:       131072000 kB\n")
    assert available_memory(meminfo) is None
    assert available_memory(tmp_path / "absent") is None
