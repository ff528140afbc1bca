"""Test-wide settings: one torch thread per process (the suite also runs worker pools, and
small tensors gain nothing from threads on a 2-core machine)."""
import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
