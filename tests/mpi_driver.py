"""Run the pddattn CLI with one rank made to fail mid-training (for tests/test_mpirun.py).

    mpirun -n 3 python tests/mpi_driver.py FAIL_RANK FAIL_STEP -- pddattn train arguments...
"""
import sys

from mpi4py import MPI

import pddattn.train as train_module
from pddattn.cli import main

fail_rank, fail_step = int(sys.argv[1]), int(sys.argv[2])
real_step = train_module.train_step


def failing_step(model, optimizer, batch, step, cfg, layout):
    if MPI.COMM_WORLD.Get_rank() == fail_rank and step == fail_step:
        raise RuntimeError(f"injected failure on rank {fail_rank} at step {step}")
    return real_step(model, optimizer, batch, step, cfg, layout)


train_module.train_step = failing_step
sys.exit(main(sys.argv[sys.argv.index("--") + 1:]))
