"""Shared test set-up.

Without torch (a core install: no [derain] extra), the test files that import torch or derain
are not collected, and the rest run: the rendering and building half of the suite.
"""

import importlib.util
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from rainsynth_helpers import SMALL, rainsynth_build

HAS_TORCH = importlib.util.find_spec("torch") is not None
NEEDS_TORCH = re.compile(r"^(import torch|from torch|import derain|from derain)", re.M)


def pytest_ignore_collect(collection_path: Path, config) -> bool | None:
    """Leave out the test files that need torch when it is not installed."""
    if HAS_TORCH or collection_path.suffix != ".py":
        return None
    return bool(NEEDS_TORCH.search(collection_path.read_text())) or None


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Tests use tiny tensors: one torch thread is faster than two and does not fight the other
    work on a small machine."""
    if not HAS_TORCH:
        yield
        return
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def keep_denormals():
    """`rainsynth train` flushes denormals for the whole process (derain.runtime.flush_denormals);
    tests that follow an in-process training in any order draw subnormal floats."""
    yield
    if HAS_TORCH:
        import torch

        torch.set_flush_denormal(False)


# rainsynth fixtures


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> Path:
    """A tiny dataset written with the dataset writer (derain_helpers.make_dataset): train and
    test, heavy and light, 3 clips each of 4 frames of 48x64, exact flow stored."""
    from derain_helpers import make_dataset

    return make_dataset(tmp_path_factory.mktemp("data") / "tiny")


@pytest.fixture(scope="session")
def small_build(tmp_path_factory) -> Path:
    """rainsynth_helpers.SMALL built by `rainsynth build` in a new process, uninterrupted, one
    worker."""
    out = tmp_path_factory.mktemp("reference") / "data"
    rainsynth_build(*SMALL, "--workers", "1", "--quiet", out=out)
    return out


@pytest.fixture
def frame_folders(tmp_path) -> Path:
    """A `frames` source: 4 sequences (a, b, c, d) of 6 noise frames, 40x64 PNG."""
    rng = np.random.default_rng(0)
    root = tmp_path / "frames"
    for sequence in "abcd":
        (root / sequence).mkdir(parents=True)
        for t in range(1, 7):
            image = rng.integers(0, 256, (40, 64, 3), dtype=np.uint8)
            cv2.imwrite(str(root / sequence / f"{t:03d}.png"), image)
    return root


# derain fixtures


def _tiny_network():
    """The tiny network (derain_helpers.TINY_MODEL) as seed 0 draws it, in training mode."""
    import torch
    from derain_helpers import TINY_MODEL

    from derain.model import build_model

    torch.manual_seed(0)
    return build_model(TINY_MODEL)


@pytest.fixture
def tiny_model():
    """The tiny network (derain_helpers.TINY_MODEL) as seed 0 draws it, in training mode."""
    return _tiny_network()


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    """The weights file of :func:`tiny_model` (iteration 0)."""
    from derain.checkpoint import save_weights

    model = _tiny_network()
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    return save_weights(path, model.state_dict(), model.config.to_dict())
