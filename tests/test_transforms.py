"""RandomVideoRain: types, dtypes and layouts round trip; reproducible draws, also in DataLoader
workers; p; the albumentations adapter."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader, Dataset

import rainsynth
from rainsynth.errors import ParamError
from rainsynth.transforms import RandomVideoRain

SHAPE = (3, 24, 40)


def clean_clip(dtype=np.uint8) -> np.ndarray:
    """(T, H, W, 3) mid-grey-ish noise clip."""
    frames = np.random.default_rng(1).integers(40, 200, (*SHAPE, 3), dtype=np.uint8)
    return frames if dtype == np.uint8 else (frames / 255).astype(dtype)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_numpy_keeps_type_dtype_and_shape(dtype):
    clip = clean_clip(dtype)
    rain = RandomVideoRain(seed=0)(clip)
    assert isinstance(rain, np.ndarray) and rain.dtype == dtype and rain.shape == clip.shape
    assert not np.array_equal(rain, clip)
    if dtype != np.uint8:
        assert 0.0 <= rain.min() and rain.max() <= 1.0


@pytest.mark.parametrize("layout", ["TCHW", "CTHW"])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.bfloat16])
def test_tensor_keeps_dtype_layout_and_device_and_matches_numpy(layout, dtype):
    clip = clean_clip()
    order = (0, 3, 1, 2) if layout == "TCHW" else (3, 0, 1, 2)
    tensor = torch.from_numpy(clip).permute(*order)
    tensor = tensor if dtype == torch.uint8 else (tensor / 255).to(dtype)
    rain = RandomVideoRain(seed=5, layout=layout)(tensor)
    assert rain.dtype == dtype and rain.shape == tensor.shape and rain.device == tensor.device
    assert rain.is_contiguous() == tensor.is_contiguous()
    assert RandomVideoRain(seed=5, layout=layout)(tensor.contiguous()).is_contiguous()
    expected = RandomVideoRain(seed=5)(clip if dtype == torch.uint8 else clip / np.float32(255))
    back = rain.permute(*np.argsort(order)).float().numpy()
    tolerance = {torch.uint8: 0, torch.float32: 0, torch.bfloat16: 1 / 128}[dtype]
    np.testing.assert_allclose(back, expected, atol=tolerance, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_tensor_on_cuda_comes_back_on_cuda():
    tensor = torch.rand(3, 3, 16, 16, device="cuda")
    assert RandomVideoRain(seed=0)(tensor).device == tensor.device


def test_same_seed_same_rain_and_each_call_new_rain():
    clip = clean_clip()
    first, second = RandomVideoRain(seed=7), RandomVideoRain(seed=7)
    a = [first(clip) for _ in range(3)]
    b = [second(clip) for _ in range(3)]
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], a[1]) and not np.array_equal(a[1], a[2])
    assert not np.array_equal(a[0], RandomVideoRain(seed=8)(clip))


def test_p_is_the_probability_of_rain():
    clip = clean_clip()
    assert RandomVideoRain(p=0.0, seed=0)(clip) is clip
    tensor = torch.zeros(3, 3, 8, 8)
    assert RandomVideoRain(p=0.0, seed=0)(tensor) is tensor
    half = RandomVideoRain(p=0.5, seed=0)
    rained = [half(clip) is not clip for _ in range(40)]
    assert 8 < sum(rained) < 32


def test_return_layers():
    rain, layers = RandomVideoRain(seed=0, return_layers=True)(clean_clip())
    assert set(layers) == {"S", "U", "beta", "A", "alpha", "M"}
    assert layers["S"].shape == (*SHAPE, 1) and layers["A"].shape == (SHAPE[0], 1, 1, 3)
    clip = clean_clip()
    assert RandomVideoRain(p=0.0, seed=0, return_layers=True)(clip) == (clip, {})


def test_presets_are_drawn_from_the_list():
    rain = RandomVideoRain(presets=("streaks",), seed=0, return_layers=True)
    for _ in range(3):
        _, layers = rain(clean_clip())
        assert not layers["U"].any() and not layers["alpha"].any()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"presets": "heavy"}, "non-empty sequence"),
        ({"presets": ()}, "non-empty sequence"),
        ({"presets": ("hail",)}, "unknown preset"),
        ({"p": 1.5}, "probability"),
        ({"seed": -1}, "non-negative"),
        ({"layout": "NCHW"}, "layout"),
    ],
)
def test_bad_arguments_say_what_is_allowed(kwargs, message):
    with pytest.raises(ParamError, match=message):
        RandomVideoRain(**kwargs)


def test_bad_clips_say_what_is_expected():
    with pytest.raises(
        ParamError, match=r"TCHW tensor with 3 channels, got shape \(3, 24, 40, 3\)"
    ):
        RandomVideoRain(seed=0)(torch.from_numpy(clean_clip()))
    with pytest.raises(ParamError, match=r"\(T, H, W, 3\)"):
        RandomVideoRain(seed=0)(clean_clip().transpose(0, 3, 1, 2))
    with pytest.raises(TypeError, match="numpy array or a torch tensor, got list"):
        RandomVideoRain(seed=0)([clean_clip()])


def test_seed_none_draws_a_fresh_seed():
    assert RandomVideoRain().seed != RandomVideoRain().seed


class Clips(Dataset):
    """8 copies of one clip, rained on by RandomVideoRain; also reports the render threads."""

    def __init__(self, transform: RandomVideoRain) -> None:
        self.transform = transform

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int):
        tensor = torch.from_numpy(clean_clip()).permute(0, 3, 1, 2)
        return self.transform(tensor), rainsynth.get_num_threads()


def run_loader(seed: int, threads: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    transform = RandomVideoRain(seed=3, worker_threads=threads)
    loader = DataLoader(Clips(transform), batch_size=2, num_workers=2, timeout=120)
    clips, threads = zip(*loader, strict=True)
    return torch.cat(clips), torch.cat(threads)


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_dataloader_workers_draw_their_own_reproducible_rain(monkeypatch):
    # compile before the workers fork, and leave a pool of 3 threads here that they must not reuse
    monkeypatch.setattr(rainsynth._jit, "_threads", 3)
    RandomVideoRain(seed=0)(clean_clip())
    monkeypatch.undo()
    here = rainsynth.get_num_threads()
    clips, threads = run_loader(0)
    again, more_threads = run_loader(0, threads=3)
    assert torch.equal(clips, again)
    assert (threads == 1).all() and (more_threads == 3).all()
    assert rainsynth.get_num_threads() == here
    # worker 0 renders items 0, 1 then 4, 5; worker 1 renders 2, 3 then 6, 7: all differ
    flat = clips.flatten(1)
    assert len({tuple(row.tolist()) for row in flat}) == len(flat)
    other, _ = run_loader(1)
    assert not torch.equal(clips, other)


@settings(max_examples=25, deadline=None)
@given(
    frames=st.integers(1, 3),
    height=st.integers(1, 19),
    width=st.integers(1, 19),
    uint8=st.booleans(),
    seed=st.integers(0, 2**32),
)
def test_odd_shapes(frames, height, width, uint8, seed):
    clip = np.full((frames, height, width, 3), 100, np.uint8)
    clip = clip if uint8 else clip / np.float32(255)
    rain = RandomVideoRain(seed=seed)(clip)
    assert rain.shape == clip.shape and rain.dtype == clip.dtype
    tensor = RandomVideoRain(seed=seed, layout="CTHW")(torch.from_numpy(clip).permute(3, 0, 1, 2))
    assert tensor.shape == (3, frames, height, width)


def test_numpy_use_never_imports_torch():
    code = (
        "import sys, numpy as np; from rainsynth.transforms import RandomVideoRain; "
        "RandomVideoRain(seed=0)(np.zeros((2, 8, 8, 3), np.uint8)); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_albumentations_replay_renders_the_same_rain():
    A = pytest.importorskip("albumentations")
    from rainsynth.albumentations_rain import AlbumentationsVideoRain

    clip = clean_clip()
    pipeline = A.ReplayCompose([AlbumentationsVideoRain(presets=("light", "heavy"))])
    pipeline.set_random_seed(0)
    out = pipeline(images=list(clip))
    rained = np.asarray(out["images"])
    assert rained.shape == clip.shape and rained.dtype == np.uint8
    assert not np.array_equal(rained, clip)
    params = out["replay"]["transforms"][0]["params"]
    assert params["preset"] in ("light", "heavy") and isinstance(params["seed"], int)
    replayed = A.ReplayCompose.replay(out["replay"], images=list(clip))["images"]
    np.testing.assert_array_equal(np.asarray(replayed), rained)
    second = np.asarray(pipeline(images=clip)["images"])
    assert not np.array_equal(second, rained)
    assert A.Compose([AlbumentationsVideoRain(p=0.0)])(images=clip)["images"] is not None
    single = pipeline(image=clip[0])["image"]
    assert single.shape == clip.shape[1:]
