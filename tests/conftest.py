"""Shared test set-up."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Tests use tiny tensors: one torch thread is faster than two and does not fight the other
    work on a small machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def keep_denormals():
    """`rainsynth train` flushes denormals for the whole process (derain.runtime.flush_denormals);
    tests that follow an in-process training in any order draw subnormal floats."""
    yield
    torch.set_flush_denormal(False)


# derain fixtures
from derain_helpers import TINY_MODEL, make_dataset  # noqa: E402

from derain.checkpoint import save_weights  # noqa: E402
from derain.model import build_model  # noqa: E402


@pytest.fixture
def tiny_model():
    """The tiny network (derain_helpers.TINY_MODEL) as seed 0 draws it, in training mode."""
    torch.manual_seed(0)
    return build_model(TINY_MODEL)


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    """The weights file of :func:`tiny_model` (iteration 0)."""
    torch.manual_seed(0)
    model = build_model(TINY_MODEL)
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    return save_weights(path, model.state_dict(), model.config.to_dict())


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """A tiny built dataset (derain_helpers.make_dataset's defaults), written once per session."""
    return make_dataset(tmp_path_factory.mktemp("data") / "tiny")
