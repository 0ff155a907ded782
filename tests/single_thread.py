"""A fixture that runs torch on one thread: on a shared, oversubscribed CPU two threads were measured
15x slower than one (a V-probe fit: 36.6 s vs 2.5 s at load 12 on 2 cores)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
