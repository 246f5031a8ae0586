"""The store's contract: what the gRPC service, the HTTP pages and the crash detector rely on.

Implementations return the plain entities of ``_entities`` and raise only the ``_errors`` tree.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence

from tracklog_server._entities import (
    FileInfo,
    HistoryPage,
    HistoryQuery,
    IngestResult,
    OutputLine,
    ProjectDescription,
    ProjectKey,
    ProjectSummary,
    Run,
    RunChanges,
    RunFilter,
    RunGroup,
    RunIdentity,
    RunKey,
    RunState,
    SystemPage,
    SystemQuery,
    SystemSnapshot,
)
from tracklog_server._filter_ast import Field, Node, Order, SortKey

from ._history_columns import Steps, Values


class AbstractStore(abc.ABC):
    @abc.abstractmethod
    def ingest(
        self, key: RunKey, frames: Sequence[tuple[int, bytes]], *, writer_token: str = ""
    ) -> IngestResult:
        """Applies ``(seq, serialized Record)`` frames of one run, at most once per seq.

        The run's writer is whoever created it: the store keeps the sha256 of ``writer_token`` from
        that ingest, and refuses later ingests with another token with PermissionDeniedError,
        applying nothing (a run created with no token accepts any writer).

        Frames at or below the run's last applied seq are skipped. Returns accepted=False, applying
        nothing, when the first new frame does not follow the last applied one (or the run is unknown
        and the frames do not start with a RunStart at seq 1). A record the store refuses (it cannot
        be decoded, breaks a rule, or the database refuses its data) costs only itself: its seq counts
        as applied, it is listed in ``refused`` and noted in the run's problems. Raises
        InvalidInputError, storing nothing, only when the seqs are not consecutive.
        """

    @abc.abstractmethod
    def ingest_daemon(
        self, key: RunKey, frames: Sequence[tuple[int, bytes]], *, writer_token: str = ""
    ) -> IngestResult:
        """Applies frames of the daemon's own sequence of a run (system metrics, metadata, captured
        files), all or nothing, at most once per seq; ``applied_through`` is the run's daemon seq.

        Returns accepted=False, applying nothing, while the run is unknown (its client's RunStart
        has not arrived: the daemon tries again later) or when the first new frame does not follow
        the last applied one. Raises InvalidInputError for any other kind of record, storing nothing,
        and PermissionDeniedError when ``writer_token`` is not the run's writer's (as ``ingest``).
        """

    @abc.abstractmethod
    def heartbeat(self, keys: Sequence[RunKey]) -> tuple[RunKey, ...]:
        """Marks the runs alive (a crashed run that has not finished runs again); unknown and finished
        runs are ignored. Returns the runs whose stop was requested."""

    def refresh_statistics(self) -> bool:
        """Brings the query planner's statistics of the searched tables up to date when a database
        needs it done (SQLite); True when it did something. A store without any: nothing to do."""
        return False

    @abc.abstractmethod
    def mark_crashed(self, timeout: float) -> int:
        """Marks running runs without a heartbeat for ``timeout`` seconds as crashed, in one statement
        (safe with several replicas). Returns how many runs changed."""

    @abc.abstractmethod
    def get_run(self, key: RunKey) -> Run:
        """The run, or RunNotFoundError."""

    @abc.abstractmethod
    def list_runs(self, run_filter: RunFilter) -> list[Run]:
        """Runs matching the filter, in its order."""

    @abc.abstractmethod
    def list_projects(self, entity: str = "") -> list[ProjectSummary]:
        """Projects (of ``entity``, empty: every entity) with runs that are not deleted, the most
        recently started first."""

    @abc.abstractmethod
    def project_series_keys(self, project: ProjectKey) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The numeric history keys and the system metric keys of the project's runs, each sorted."""

    @abc.abstractmethod
    def history(self, key: RunKey, query: HistoryQuery) -> Iterator[HistoryPage]:
        """Pages of complete history rows in ascending step order. RunNotFoundError is raised by the
        call itself, before any page is produced."""

    @abc.abstractmethod
    def history_columns(
        self, key: RunKey, keys: Sequence[str], min_step: int = 0, max_step: int | None = None
    ) -> dict[str, tuple[Steps, Values]]:
        """Per key (``_timestamp`` included) with numeric values in ``[min_step, max_step)``: its
        steps and values in ascending step order, read whole (for charts)."""

    @abc.abstractmethod
    def system_history(self, key: RunKey, query: SystemQuery) -> Iterator[SystemPage]:
        """Pages of system metric rows in ascending time (each row a reporting window). With keys,
        only rows of batches holding one of them, and only the keys the run has. RunNotFoundError is
        raised by the call itself, before any page is produced."""

    @abc.abstractmethod
    def latest_system_metrics(self, key: RunKey) -> SystemSnapshot | None:
        """The latest row of system metrics, or None when the run has none."""

    @abc.abstractmethod
    def logs(self, key: RunKey, offset: int = 0, limit: int = 0) -> Iterator[tuple[OutputLine, ...]]:
        """Console lines from ``offset`` (0-based), at most ``limit`` of them (0: all), in order, in
        pages. RunNotFoundError is raised by the call itself."""

    @abc.abstractmethod
    def list_files(self, key: RunKey) -> list[FileInfo]:
        """Per file name, sorted: its latest complete version, or its latest (incomplete) version when
        none is complete."""

    @abc.abstractmethod
    def read_file(self, key: RunKey, name: str, version: int = 0) -> tuple[FileInfo, Iterator[bytes]]:
        """A complete version of a file (0: the latest complete one) and its bytes, in order, in pieces
        that fit one message. RunNotFoundError or RunFileNotFoundError are raised by the call itself."""

    @abc.abstractmethod
    def update_run(self, key: RunKey, changes: RunChanges) -> Run:
        """Applies an edit from the API under the run's lock and returns the run after it. The edit
        counts as written at the store's clock: per field (per tag, per config and summary key) it
        wins unless the training process wrote the field later (its records carry their write time);
        tags are added and removed, never replaced. RunNotFoundError, RunDeletedError, InvalidInputError (the
        merged config or summary over its limit, too many tags) apply nothing."""

    @abc.abstractmethod
    def update_runs(self, keys: Sequence[RunKey], changes: RunChanges) -> int:
        """Applies the same edit to many runs in one transaction, all or nothing, as ``update_run``
        does to one; returns how many. An unknown or deleted run among ``keys``, or one the edit
        would take over a limit, fails the call, naming it."""

    @abc.abstractmethod
    def delete_runs(self, keys: Sequence[RunKey], delete_files: bool = False) -> int:
        """Deletes the runs, all or nothing, and returns how many. A deleted run keeps its row, so
        its id stays reserved: reads raise RunDeletedError, ingest for it PermissionDeniedError. Its
        history, metrics, system metrics and output are dropped; its files too with ``delete_files``.
        An unknown or already deleted run among ``keys`` fails the call (RunNotFoundError,
        RunDeletedError)."""

    @abc.abstractmethod
    def request_stop(self, key: RunKey, when: frozenset[RunState]) -> RunState:
        """Records a stop request if the run is in one of the states ``when`` and not finished, so
        that ``heartbeat`` answers it; returns the state the run was in either way."""

    @abc.abstractmethod
    def search_runs(
        self,
        project: ProjectKey,
        where: Node,
        order: Order,
        limit: int,
        after: SortKey | None = None,
        timeout: float = 10.0,
    ) -> tuple[list[tuple[Run, SortKey]], int]:
        """Up to ``limit`` runs of the project (deleted ones never) matching ``where``, in ``order``,
        strictly after ``after``, each with its sort key; and how many match in all. Past ``timeout``
        seconds the query stops with InvalidInputError."""

    @abc.abstractmethod
    def group_runs(
        self, project: ProjectKey, where: Node, by: Field, timeout: float = 10.0
    ) -> list[RunGroup]:
        """The matching runs grouped by their value of ``by`` (runs without it in a last group):
        counts and, per numeric summary key, min/mean/max. InvalidInputError past MAX_GROUPS groups."""

    @abc.abstractmethod
    def describe_project(self, project: ProjectKey) -> ProjectDescription:
        """The project's config and summary keys, with the types and ranges of their values."""

    @abc.abstractmethod
    def run_identity(self, key: RunKey) -> tuple[RunIdentity | None, int]:
        """The run's identity (None: no run has the id, deleted ones included) and how many runs its
        project holds (deleted ones included), for ``CheckRunId``."""

    @abc.abstractmethod
    def close(self) -> None:
        """Releases database connections."""
