"""The store server's exception tree.

Every failure that leaves the store layer is one of these. Database driver and SQLAlchemy errors are
translated once, at the store boundary (``raise ... from exc``), so callers (the gRPC service, the HTTP
pages, tests) never see ``sqlalchemy.exc`` types and map each class to one gRPC status.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy.exc


class StoreError(Exception):
    """Base class: the store could not do what was asked."""


class InvalidInputError(StoreError, ValueError):
    """The caller sent something the store refuses: an unparseable record, a bad run id, a value over a
    limit. Retrying the same input fails the same way (gRPC INVALID_ARGUMENT)."""


class DataRefusedError(InvalidInputError):
    """The database refused the data itself (PostgreSQL's NUL in text, an index entry over its size
    limit, a number out of range): the same data fails the same way, so it is never retried."""


class NotFoundError(StoreError, LookupError):
    """What was asked for does not exist (gRPC NOT_FOUND)."""


class RunNotFoundError(NotFoundError):
    """No run has this entity/project/id."""


class RunDeletedError(NotFoundError):
    """The run was deleted; its id stays reserved, so reads name the deletion, not a missing run."""


class RunStateError(StoreError):
    """The run is not in a state that allows this (stopping a run that is not running): gRPC
    FAILED_PRECONDITION. Retrying fails the same way until the run's state changes."""


class RunFileNotFoundError(NotFoundError):
    """The run has no such file, or no complete version of it (or not the version asked for)."""


class StoreUnavailableError(StoreError):
    """The database cannot be reached or is busy; retrying later may succeed (gRPC UNAVAILABLE)."""


class PermissionDeniedError(StoreError):
    """The caller may not do this: e.g. frames for a run sent without its writer's token (gRPC
    PERMISSION_DENIED). Resending the same request fails the same way."""


class StoreConflictError(StoreError):
    """A concurrent writer changed the same rows first (a unique constraint fired); the operation
    applied nothing and can be retried (gRPC ABORTED)."""


class SchemaError(StoreError):
    """The database schema cannot be brought to this version (e.g. it was made by a newer server)."""


@contextmanager
def translate_db_errors(action: str) -> Iterator[None]:
    """Maps ``sqlalchemy.exc`` errors raised inside the block to the tree above.

    ``action`` names what was being done ("ingest", "read run ...") so the message says where it failed
    without exposing SQL or parameters, which may hold user data.
    """
    try:
        yield
    except sqlalchemy.exc.SQLAlchemyError as exc:
        raise _translate(exc, action) from exc


# SQLSTATE classes that describe the data, not the database's state: 22 data exception (PostgreSQL's
# "text fields cannot contain NUL"), 54 program limit exceeded ("index row size exceeds maximum").
_DATA_SQLSTATE_CLASSES = frozenset({"22", "54"})


def _translate(exc: sqlalchemy.exc.SQLAlchemyError, action: str) -> StoreError:
    orig = getattr(exc, "orig", None)
    sqlstate = str(getattr(orig, "sqlstate", None) or "")
    if isinstance(exc, sqlalchemy.exc.DataError) or sqlstate[:2] in _DATA_SQLSTATE_CLASSES:
        return DataRefusedError(f"{action}: the database refused the data ({_first_line(orig)})")
    if isinstance(exc, sqlalchemy.exc.IntegrityError):
        return StoreConflictError(f"{action}: a concurrent change conflicted; retry")
    if isinstance(exc, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError):
        return StoreUnavailableError(f"{action}: database unavailable ({_first_line(orig)})")
    if isinstance(exc, sqlalchemy.exc.TimeoutError):
        return StoreUnavailableError(f"{action}: no database connection available in time")
    return StoreError(f"{action}: database error ({type(exc).__name__})")


def _first_line(orig: BaseException | None) -> str:
    text = str(orig) if orig is not None else "unknown error"
    return text.strip().splitlines()[0][:200] if text.strip() else type(orig).__name__
