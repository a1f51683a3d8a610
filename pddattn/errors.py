"""The error types every layer raises: one place, no imports (so any module may use them)."""
from __future__ import annotations

__all__ = ["CollectiveError", "ConfigurationError", "CheckpointError"]


class CollectiveError(ValueError):
    """An error every rank raises alike (decided from shared data), so all can exit cleanly."""


class ConfigurationError(CollectiveError):
    """A configuration that cannot run; raised identically on every rank."""


class CheckpointError(CollectiveError):
    """A checkpoint that cannot be written, read or used here (raised on every rank alike)."""
