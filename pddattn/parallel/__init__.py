"""MPI parallelism: communicator layout, differentiable communication, distributed operator.

Importing this package does not import mpi4py; the layout and operator do,
when they are built over a communicator.
"""
from ..errors import ConfigurationError
from .layout import Layout, SerialLayout, block_range, check_distribution, make_layout

__all__ = ["ConfigurationError", "Layout", "SerialLayout", "block_range", "check_distribution", "make_layout"]
