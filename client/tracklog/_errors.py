"""The SDK's exception tree. Errors from grpc are translated into these once, at the boundary."""

from __future__ import annotations


class TracklogError(Exception):
    """Base of every error tracklog raises on purpose."""


class UsageError(TracklogError, ValueError):
    """A call that cannot work as written: a bad id, mode or path. The message says what to change."""


class CommError(TracklogError):
    """The daemon or the store server could not be reached or refused a request."""


class RunBusy(UsageError):
    """The run is being written by another live process: a run has one writer at a time (two
    processes with the same id would collide on the run's sequence and lose rows)."""


class NotFoundError(CommError, LookupError):
    """The store server has no such run."""
