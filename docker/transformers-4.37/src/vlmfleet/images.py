"""Images as a family opens them for the model.

VLMEvalKit decodes each row's base64 image from the benchmark's TSV into its image cache,
$LMUData/images/<benchmark>/, once, and reuses a cached file whose header it can read. A file
torn while it was written (a worker killed, a disk filled) keeps its header, so it is reused and
the model's image loading fails with PIL's "image file is truncated", naming no file. Here that
failure names the file and its cause, and removes a torn cache file, which VLMEvalKit writes
again from the TSV on the rerun.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlmfleet.datasets import lmu_root

CACHE_DIR = "images"


class DamagedImageError(OSError):
    """An image the model cannot read; the message names the file and what to do."""


def in_image_cache(path: str | Path) -> bool:
    """Whether ``path`` is one of VLMEvalKit's cached images (derived from a TSV, so safe to
    remove), not a file a benchmark points at."""
    cache = (lmu_root() / CACHE_DIR).resolve()
    return Path(path).resolve().is_relative_to(cache)


def open_rgb(path: str) -> Any:
    """The image at ``path``, fully decoded, in RGB."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, SyntaxError, ValueError) as err:  # PIL's errors for a torn or foreign file
        cause = f"{type(err).__name__}: {err}"
        if not in_image_cache(path):
            raise DamagedImageError(f"image {path} cannot be read ({cause})") from err
        Path(path).unlink(missing_ok=True)
        raise DamagedImageError(
            f"cached image {path} cannot be read ({cause}): VLMEvalKit's copy of the benchmark's "
            "image was damaged (a worker stopped or a disk filled while writing it); it was "
            "removed, and a rerun with the same run_id writes it again from the benchmark's TSV"
        ) from err
