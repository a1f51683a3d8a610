"""Shared test fixtures. MPI tests are marked ``mpi`` (pytest-mpi) and are
skipped in the serial run; ``mpirun -n P python -m pytest --with-mpi -m mpi``
runs them."""
import getpass
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

_RANK_VARIABLES = ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "MV2_COMM_WORLD_RANK")


def pytest_configure(config):
    """Under mpirun, each rank its own --basetemp: pytest removes its base folder's old contents, and
    ranks sharing one deleted each other's tmp_path (seen at 4 ranks)."""
    rank = next((os.environ[v] for v in _RANK_VARIABLES if v in os.environ), None)
    if rank is not None and config.option.basetemp is None:
        job = os.getppid()  # the launcher's daemon: one per job on a node, shared by its ranks
        config.option.basetemp = str(Path(tempfile.gettempdir()) / f"pytest-of-{getpass.getuser()}" /
                                     f"mpi-{job}-rank{rank}")


@pytest.fixture(autouse=True)
def _float64_default():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
