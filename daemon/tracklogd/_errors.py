"""The daemon's exception tree. gRPC and OS errors are translated into it once, at the boundary
where they occur (``raise ... from exc``), so callers handle tracklog errors, never transport ones."""

from __future__ import annotations

import grpc


class TracklogdError(Exception):
    """Base of every error the daemon package raises on purpose."""


class StoreError(TracklogdError):
    """A call to a store server failed. ``code`` is the gRPC status code (None when no RPC was made)."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.code = code


class StoreUnavailable(StoreError):
    """A transient failure (server down, deadline, overload): retrying later may succeed."""


class StoreRejected(StoreError):
    """The server refused the request for good (e.g. INVALID_ARGUMENT): resending cannot help."""


class SpoolUnusable(TracklogdError):
    """A spool cannot be read or written (missing, not a spool, no run start, disk error)."""


class DaemonError(TracklogdError):
    """The daemon could not be started, reached or stopped."""


class StreamRefused(TracklogdError):
    """The daemon ends a run stream with gRPC status ``code`` (a protocol error, a bad Attach, a
    spool it cannot write); the message is the reason the client sees."""

    def __init__(self, message: str, code: grpc.StatusCode) -> None:
        super().__init__(message)
        self.code = code
