"""Shared test fixtures. MPI tests are marked ``mpi`` (pytest-mpi) and are
skipped in the serial run; ``mpirun -n P python -m pytest --with-mpi -m mpi``
runs them."""
import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _float64_default():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
