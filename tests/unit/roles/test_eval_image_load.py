"""The message plugins/modules/eval_image_load.py fails a load with (role eval_image)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_PATH = Path(__file__).resolve().parents[3] / "plugins/modules/eval_image_load.py"
_spec = importlib.util.spec_from_file_location("eval_image_load", _PATH)
assert _spec and _spec.loader
mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mod)

ARCHIVE = "/var/lib/vlm-eval/images/vlm-eval.tar"
ENOSPC = (
    "the Docker daemon says: Error processing tar file(exit status 1): "
    "write /usr/lib/x86_64-linux-gnu/libcudnn.so.8: no space left on device"
)
TARBALL = 6_871_947_674  # 6.4 GiB
NEEDED = int(TARBALL * 2.05)  # the role's rule for a tarball staged on another filesystem


def test_a_full_disk_names_the_space_the_need_and_what_to_do() -> None:
    message = mod.failure_message(ARCHIVE, ENOSPC, "/var/lib/docker", 3 * 2**30 + 2**29, NEEDED)
    assert message == (
        "could not load /var/lib/vlm-eval/images/vlm-eval.tar: the Docker daemon says: "
        "Error processing tar file(exit status 1): write /usr/lib/x86_64-linux-gnu/libcudnn.so.8: "
        "no space left on device. The disk under /var/lib/docker ran out of space: 3.5 GiB free "
        "there now; a load of this archive needs 13.1 GiB free there at its peak, and hosts "
        "whose Docker roots share one disk each need that much in turn, on top of the images "
        "loaded before theirs. Free space under /var/lib/docker, then run site.yml again"
    )


def test_below_a_gib_the_sizes_are_whole_mib() -> None:
    message = mod.failure_message(ARCHIVE, ENOSPC, "/d", 332 * 2**20 + 2**19 - 1, 460_140_441)
    assert "ran out of space: 332 MiB free there now" in message
    assert "needs 439 MiB free there at its peak" in message
    assert mod.size_text(2**30) == "1.0 GiB"
    assert mod.size_text(2**30 - 1) == "1024 MiB"
    assert mod.size_text(0) == "0 MiB"


def test_a_full_disk_whose_space_cannot_be_read_still_says_what_to_do() -> None:
    message = mod.failure_message(ARCHIVE, ENOSPC, "/var/lib/docker", None, NEEDED)
    assert (
        "The disk under /var/lib/docker ran out of space (its free space is unreadable here);"
        in message
    )
    assert "needs 13.1 GiB free there at its peak" in message
    assert message.endswith("Free space under /var/lib/docker, then run site.yml again")


def test_without_the_need_the_message_leaves_it_out() -> None:
    message = mod.failure_message(ARCHIVE, ENOSPC, "/var/lib/docker", 2**30)
    assert message.endswith(
        "no space left on device. The disk under /var/lib/docker ran out of space: 1.0 GiB "
        "free there now. Free space under /var/lib/docker, then run site.yml again"
    )


def test_other_errors_name_the_archive_and_the_daemons_words_only() -> None:
    cause = "the Docker daemon says: Error processing tar file(exit status 1): unexpected EOF"
    message = mod.failure_message(ARCHIVE, cause, "/var/lib/docker", 2**40, NEEDED)
    assert message == f"could not load {ARCHIVE}: {cause}"
