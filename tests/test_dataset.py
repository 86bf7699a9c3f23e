"""The on-disk clip format: layer encoding, deterministic archives, atomic writes, the reader."""

from __future__ import annotations

import errno
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import rainsynth
from rainsynth import dataset
from rainsynth.dataset import DatasetClip, read_dataset
from rainsynth.errors import RainsynthError

SHAPE = (3, 24, 40)


def _rendered(seed: int = 0, preset: str = "heavy"):
    t, h, w = SHAPE
    rng = np.random.default_rng(seed)
    clean = rng.integers(0, 256, (t, h, w, 3), dtype=np.uint8)
    params = rainsynth.sample_params(preset, seed=seed, shape=SHAPE, clip=3)
    return clean, params, rainsynth.render(clean, params)


def _write(folder: Path, seed: int = 0, flow: bool = True):
    clean, params, clip = _rendered(seed)
    motion = np.random.default_rng(1).normal(size=(SHAPE[0] - 1, *SHAPE[1:], 2)).astype("f4")
    info = {"shape": list(SHAPE), "split": folder.parent.parent.name}
    dataset.write_clip(
        folder,
        rain=clip.rain,
        clean=clean,
        layers=clip.layers,
        params=params,
        flow=motion if flow else None,
        info=info,
    )
    return clean, params, clip, motion, info


layer_arrays = hnp.arrays(
    np.float32,
    st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 6), st.just(1)),
    elements=st.floats(0, 1, width=32),
)


@settings(max_examples=60, deadline=None)
@given(layer_arrays, st.booleans())
def test_layer_encoding_error_is_at_most_half_a_step(value, constant):
    if constant:
        value = np.full_like(value, value.flat[0])
    t = value.shape[0]
    layers = {name: value for name in dataset.QUANTISED}
    layers |= {"A": np.full((t, 1, 1, 3), 0.8, np.float32), "M": np.zeros((t, 1, 1, 3), "f4")}
    encoded = dataset.encode_layers(layers)
    decoded = dataset.decode_layers(encoded)
    step = (float(value.max()) - float(value.min())) / 255
    for name in dataset.QUANTISED:
        assert encoded[name].dtype == np.uint8
        assert decoded[name].dtype == np.float32 and decoded[name].shape == value.shape
        assert np.abs(decoded[name] - value).max() <= step / 2 + 1e-6
    for name in ("A", "M"):
        np.testing.assert_array_equal(decoded[name], layers[name])


def test_encode_layers_names_missing_layers():
    with pytest.raises(ValueError, match="alpha"):
        dataset.encode_layers({"S": np.zeros((1, 2, 2, 1), "f4")})


def test_npz_bytes_depend_only_on_the_arrays(tmp_path, monkeypatch):
    arrays = {"a": np.arange(12, dtype=np.uint8).reshape(3, 4), "b": np.ones(3, "f4")}
    dataset.write_npz(tmp_path / "one.npz", arrays)
    monkeypatch.setattr("time.time", lambda: 2.0e9)  # another date: must not reach the archive
    dataset.write_npz(tmp_path / "two.npz", arrays)
    assert (tmp_path / "one.npz").read_bytes() == (tmp_path / "two.npz").read_bytes()
    with zipfile.ZipFile(tmp_path / "one.npz") as archive:
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert {info.compress_type for info in archive.infolist()} == {zipfile.ZIP_DEFLATED}
    with np.load(tmp_path / "one.npz") as loaded:
        np.testing.assert_array_equal(loaded["a"], arrays["a"])


def test_clip_round_trip(tmp_path):
    folder = tmp_path / "train" / "heavy" / "clip"
    clean, params, clip, motion, info = _write(folder)
    assert sorted(p.name for p in folder.iterdir()) == [
        "clean",
        "clip.json",
        "flow.npz",
        "layers.npz",
        "params.json",
        "rain",
    ]
    (read,) = read_dataset(tmp_path)
    assert read == DatasetClip(tmp_path, "train", "heavy", "clip", *SHAPE)
    np.testing.assert_array_equal(read.clean(), clean / np.float32(255))
    np.testing.assert_array_equal(read.clean(slice(1, 3)), read.clean()[1:3])
    np.testing.assert_array_equal(read.rain(slice(2, None)), read.rain()[2:])
    rain = read.rain()
    assert rain.dtype == np.float32 and rain.shape == (*SHAPE, 3)
    assert np.abs(rain - clip.rain).max() <= 0.5 / 255 + 1e-6
    layers = read.layers()
    for name, value in clip.layers.items():
        assert layers[name].shape == value.shape and layers[name].dtype == np.float32
        span = float(value.max() - value.min())
        assert np.abs(layers[name] - value).max() <= span / 510 + 1e-6, name
    np.testing.assert_array_equal(read.flow(), motion)
    assert read.params() == params
    assert read.info() == info


def test_read_layers_invert_to_the_clean_frames(tmp_path):
    """Eq. 6 on what the reader returns recovers B where no drop occludes it."""
    _write(tmp_path / "train" / "heavy" / "clip")
    (clip,) = read_dataset(tmp_path)
    layers = clip.layers()
    estimate = rainsynth.invert(clip.rain(), layers)
    visible = np.broadcast_to(layers["alpha"] == 0, estimate.shape)
    clear = visible & np.broadcast_to(clip.rain() < 1, estimate.shape)  # not clipped at white
    error = np.abs(estimate - clip.clean())[clear]
    assert error.size > 0.3 * estimate.size
    assert np.median(error) < 2 / 255 and np.quantile(error, 0.99) < 8 / 255


def test_clip_without_flow_reads_none(tmp_path):
    _write(tmp_path / "test" / "heavy" / "clip", flow=False)
    (clip,) = read_dataset(tmp_path, split="test")
    assert clip.flow() is None


def test_disk_full_leaves_no_partial_clip(tmp_path, monkeypatch):
    calls = []
    write_bytes = Path.write_bytes

    def failing(self, data):
        calls.append(self)
        if len(calls) == 4:  # the fourth PNG: part of the clip is on disk already
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return write_bytes(self, data)

    monkeypatch.setattr(Path, "write_bytes", failing)
    with pytest.raises(OSError) as raised:
        _write(tmp_path / "train" / "heavy" / "clip")
    assert raised.value.errno == errno.ENOSPC
    assert len(calls) == 4
    assert list((tmp_path / "train" / "heavy").iterdir()) == []


def test_write_clip_refuses_to_replace_a_clip(tmp_path):
    folder = tmp_path / "train" / "heavy" / "clip"
    _write(folder)
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    with pytest.raises(OSError):
        _write(folder, seed=1)
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before
    assert [p.name for p in folder.parent.iterdir()] == ["clip"]


def test_reader_skips_temporary_folders_and_filters(tmp_path):
    _write(tmp_path / "train" / "heavy" / "a")
    _write(tmp_path / "test" / "heavy" / "b")
    stale = tmp_path / "train" / "heavy" / f"{dataset.TEMP_PREFIX}c-123"
    stale.mkdir()
    (stale / dataset.CLIP_FILE).write_text(json.dumps({"shape": list(SHAPE)}))
    assert [c.name for c in read_dataset(tmp_path)] == ["b", "a"]  # sorted: test < train
    assert [c.name for c in read_dataset(tmp_path, split="train")] == ["a"]
    assert [c.name for c in read_dataset(tmp_path, preset="heavy")] == ["b", "a"]
    assert dataset.remove_temp_folders(tmp_path) == [stale]
    assert not stale.exists()


def test_reader_errors_say_what_exists(tmp_path):
    with pytest.raises(RainsynthError, match="holds no dataset clips"):
        read_dataset(tmp_path)
    _write(tmp_path / "train" / "heavy" / "a")
    with pytest.raises(RainsynthError, match=r"no split 'val'; it has \['train'\]"):
        read_dataset(tmp_path, split="val")
    with pytest.raises(RainsynthError, match=r"no preset 'light'; it has \['heavy'\]"):
        read_dataset(tmp_path, preset="light")
    (tmp_path / "train" / "heavy" / "a" / "rain" / "0002.png").write_bytes(b"not a png")
    with pytest.raises(RainsynthError, match="0002.png"):
        read_dataset(tmp_path)[0].rain()


@pytest.mark.parametrize("shape", [(0, 3), (5,), (2, 3, 4, 3)])
def test_to_uint8_is_the_rounded_clipped_numpy_expression(shape):
    rng = np.random.default_rng(0)
    values = (rng.random(shape, dtype=np.float32) * 1.2 - 0.1).astype(np.float32)
    steps = np.arange(4 * 255 + 1, dtype=np.float32) / np.float32(4 * 255)  # exact halves too
    for x in (values, steps, np.nextafter(steps, 2), np.nextafter(steps, -1)):
        expected = np.rint(np.clip(x, 0.0, 1.0) * np.float32(255.0)).astype(np.uint8)
        np.testing.assert_array_equal(dataset.to_uint8(x), expected)


def test_a_physical_clip_round_trips_with_its_own_layers(tmp_path):
    """Splashes and drops on the lens are stored like S and read back; a pixel clip's archive
    has no such entries (its bytes are as before)."""
    t, h, w = SHAPE
    clean = np.random.default_rng(0).integers(0, 256, (t, h, w, 3), dtype=np.uint8)
    params = rainsynth.sample_params("storm", seed=1, shape=SHAPE)
    clip = rainsynth.render(clean, params)
    folder = tmp_path / "train" / "storm" / "0000"
    dataset.write_clip(folder, rain=clip.rain, clean=clean, layers=clip.layers, params=params,
                       flow=None, info={"shape": list(SHAPE), "split": "train"})  # fmt: skip
    (stored,) = read_dataset(tmp_path)
    assert stored.params() == params
    layers = stored.layers()
    assert set(layers) == set(clip.layers)
    for name, value in clip.layers.items():
        assert layers[name].shape == value.shape, name
        step = (float(value.max()) - float(value.min())) / 255
        assert np.abs(layers[name] - value).max() <= step / 2 + 1e-6, name
    _, _, pixel = _rendered()
    assert not set(dataset.PHYSICAL_LAYERS) & set(dataset.encode_layers(pixel.layers))
