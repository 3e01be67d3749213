"""Errors of the state layer."""

from schemas.errors import AlphaError


class StateError(AlphaError):
    """A state store cannot be opened, read or written."""


class StateVersionError(StateError):
    """Stored state has a version this code cannot read: migrate it, or restore from changelog."""
