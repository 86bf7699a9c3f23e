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
    """`rainsynth train` flushes denormals for the whole process (derain.train.flush_denormals);
    tests that follow an in-process training in any order draw subnormal floats."""
    yield
    torch.set_flush_denormal(False)
