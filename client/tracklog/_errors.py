"""The SDK's exception tree. Errors from grpc are translated into these once, at the boundary."""

from __future__ import annotations


class TracklogError(Exception):
    """Base of every error tracklog raises on purpose."""


class UsageError(TracklogError, ValueError):
    """A call that cannot work as written: a bad id, mode or path. The message says what to change."""


class CommError(TracklogError):
    """The daemon or the store server could not be reached or refused a request."""


class NotFoundError(CommError, LookupError):
    """The store server has no such run."""
