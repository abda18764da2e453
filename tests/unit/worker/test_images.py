"""A damaged image in VLMEvalKit's image cache: named, with its cause, and removed so that the
rerun writes it again from the TSV (VLMEvalKit reused a torn file whose header it could read,
and PIL failed with "image file is truncated", naming no file)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image
from vlmfleet.images import DamagedImageError, open_rgb


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LMUData", str(tmp_path / "LMUData"))
    folder = tmp_path / "LMUData" / "images" / "POPE"
    folder.mkdir(parents=True)
    return folder


def test_a_whole_cached_image_opens(cache: Path) -> None:
    (cache / "0.png").write_bytes(png())
    assert open_rgb(str(cache / "0.png")).size == (64, 64)


def test_a_torn_cached_image_is_named_and_removed_for_the_rerun(cache: Path) -> None:
    whole = png()
    torn = cache / "0.png"
    torn.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DamagedImageError) as caught:
        open_rgb(str(torn))
    message = str(caught.value)
    assert message.startswith(f"cached image {torn} cannot be read (OSError: image file is ")
    assert "a rerun with the same run_id writes it again from the benchmark's TSV" in message
    assert not torn.exists()


def test_a_torn_image_outside_the_cache_is_named_and_kept(cache: Path, tmp_path: Path) -> None:
    whole = png()
    theirs = tmp_path / "benchmark-images" / "0.png"
    theirs.parent.mkdir()
    theirs.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DamagedImageError, match=f"image {theirs} cannot be read"):
        open_rgb(str(theirs))
    assert theirs.exists()
