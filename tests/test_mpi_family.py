"""Generated factors under mpirun: the ranks share the boxes, the generator's gradients are summed.

    mpirun -n 3 python -m pytest --with-mpi -m mpi tests/test_mpi_family.py

Every rank generates the factors of its own boxes only; operators, data and
the loss are the same everywhere. 20 Adam steps in float64 equal serial
training.
"""
import dataclasses

import numpy as np
import pytest
import torch

from pddattn.family import fit
from pddattn.family_run import FamilySpec, members, new_model, pairs
from test_mpi import relative, world, worst
from tolerances import REORDERED, adam_steps

pytestmark = pytest.mark.mpi(min_size=1)
SPEC = FamilySpec(grid=(31, 31), box=8, operators=3, rank=4, width=8, depth=2, data="solve", samples=8, batch=4,
                  steps=20, lr=3e-3)


BLOCK = dataclasses.replace(SPEC, coarse_block="generated", coarse_rank=4)
RITZ = dataclasses.replace(SPEC, local="ritz")


def _trained(comm, spec=SPEC):
    problems = members(spec, range(1, spec.operators + 1))
    model = new_model(spec, problems[0], comm)
    ops = model.values([p.A for p in problems])
    fit(model, ops, pairs(spec, problems, seed=1), spec.steps, lr=spec.lr, batch=spec.batch, seed=0)
    return model, ops


@pytest.mark.parametrize("spec", [SPEC, BLOCK, RITZ], ids=["exact-coarse", "generated-coarse-block", "ritz"])
def test_training_with_the_boxes_shared_by_the_ranks_equals_serial(spec):
    """The generated coarse block's network is replicated: its gradient is every rank's own, not summed."""
    comm = world()
    shared, _ = _trained(comm, spec)
    serial, _ = _trained(None, spec)
    assert len(shared.own) < shared.decomposition.N or comm.Get_size() == 1
    error = max(relative(shared.state_dict()[k], serial.state_dict()[k]) for k in serial.state_dict())
    assert worst(error) <= adam_steps(SPEC.steps), error


def test_each_rank_generates_only_its_own_boxes_and_the_sum_is_the_operator():
    comm = world()
    shared, ops = _trained(comm)
    serial = new_model(SPEC, members(SPEC, [1])[0])
    serial.load_state_dict(shared.state_dict())
    with torch.no_grad():
        Q = shared.factors(ops[0])
        assert Q.shape[0] == len(np.array_split(np.arange(16), comm.Get_size())[comm.Get_rank()])
        x = torch.randn(serial.n, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        y, z = shared.matvec(x, ops[0]), serial.matvec(x, serial.values([members(SPEC, [1])[0].A])[0])
    assert worst(relative(y, z)) <= REORDERED  # the boxes' terms summed in another order


def test_more_ranks_than_boxes_is_one_line():
    comm = world()
    if comm.Get_size() < 3:
        pytest.skip("needs 3 ranks")
    spec = FamilySpec(grid=(15, 7), box=8, coarse="harmonic")  # 2 x 1 boxes
    with pytest.raises(ValueError, match="cannot be shared"):
        new_model(spec, members(spec, [1])[0], comm)
