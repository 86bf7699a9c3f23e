"""rainsynth.fileio: atomic writes, PNG bytes, video extensions, HxW sizes and labels."""

from __future__ import annotations

import errno
import os

import cv2
import numpy as np
import pytest

from rainsynth.fileio import (
    TEMP_PREFIX,
    VIDEO_EXTENSIONS,
    atomic_file,
    atomic_folder,
    draw_label,
    encode_png,
    parse_size,
    write_atomic,
    write_png,
)

IMAGE = np.random.default_rng(0).integers(0, 256, (24, 40, 3), dtype=np.uint8)


def test_write_atomic_keeps_the_old_file_on_error(tmp_path, monkeypatch):
    target = tmp_path / "manifest.json"
    write_atomic(target, b"old")

    def broken_replace(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("os.replace", broken_replace)
    with pytest.raises(OSError):
        write_atomic(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def test_atomic_file_keeps_the_suffix_and_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "clip.mp4"
    with atomic_file(target) as temp:
        assert temp.parent == tmp_path and temp.suffix == ".mp4"
        assert temp.name.startswith(TEMP_PREFIX) and str(os.getpid()) in temp.name
        temp.write_bytes(b"video")
    assert target.read_bytes() == b"video"
    with pytest.raises(KeyError):
        with atomic_file(target) as temp:
            temp.write_bytes(b"half")
            raise KeyError("killed")
    assert target.read_bytes() == b"video" and os.listdir(tmp_path) == ["clip.mp4"]


def test_atomic_folder_appears_complete_or_not_at_all(tmp_path):
    target = tmp_path / "a" / "clip"
    with pytest.raises(OSError):
        with atomic_folder(target) as temp:
            (temp / "0001.png").write_bytes(b"x")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert os.listdir(tmp_path / "a") == []
    with atomic_folder(target) as temp:
        assert temp.name == f"{TEMP_PREFIX}clip-{os.getpid()}" and temp.is_dir()
        (temp / "0001.png").write_bytes(b"x")
        assert not target.exists()
    assert os.listdir(tmp_path / "a") == ["clip"] and (target / "0001.png").read_bytes() == b"x"


@pytest.mark.parametrize("compression", [None, 1, 6])
def test_png_bytes_are_opencvs_for_the_same_settings(tmp_path, compression):
    bgr = cv2.cvtColor(IMAGE, cv2.COLOR_RGB2BGR)
    flags = [] if compression is None else [cv2.IMWRITE_PNG_COMPRESSION, compression]
    cv2.imwrite(str(tmp_path / "cv2.png"), bgr, flags)
    assert encode_png(IMAGE, compression) == (tmp_path / "cv2.png").read_bytes()
    write_png(tmp_path / "ours.png", IMAGE, compression)
    assert (tmp_path / "ours.png").read_bytes() == (tmp_path / "cv2.png").read_bytes()
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "ours.png"))[..., ::-1], IMAGE)


def test_png_levels_differ_in_size():
    assert len(encode_png(IMAGE, 9)) <= len(encode_png(IMAGE, 0))


@pytest.mark.parametrize(
    ("text", "size"), [("256x448", (256, 448)), (" 96 X 160 ", (96, 160)), ("0x8", (0, 8))]
)
def test_parse_size_reads_height_by_width(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["big", "12", "256x", "-1x5", "2x3x4", "1.5x2"])
def test_parse_size_rejects_what_is_not_two_integers(text):
    with pytest.raises(ValueError, match="is not HEIGHTxWIDTH"):
        parse_size(text)


def test_video_extensions_cover_both_former_lists():
    assert set(VIDEO_EXTENSIONS) >= {".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v"}
    assert all(ext == ext.lower() and ext.startswith(".") for ext in VIDEO_EXTENSIONS)


def test_a_label_is_white_on_black_where_it_is_drawn():
    image = np.full((30, 80, 3), 128, np.uint8)
    draw_label(image, "rain", (4, 20), 0.5)
    changed = np.any(image != 128, axis=2)
    assert changed[5:25, :60].any() and not changed[:, 70:].any()
    assert image.max() == 255 and image.min() == 0
