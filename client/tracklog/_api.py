"""``tracklog.Api``: reading runs back from the store server."""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeAlias, overload

import grpc

from tracklog import (
    _api_edit,
    _api_history,
    _api_runs,
    _api_settle,
    _history,
    _home,
    _launch,
    _metrics,
    _refs,
    _rules,
    _settings,
)
from tracklog._api_paths import parse_run_path
from tracklog._errors import CommError, NotFoundError, UsageError
from tracklog._tokens import page_url
from tracklog.v1 import daemon_pb2, daemon_pb2_grpc, records_pb2, store_pb2, store_pb2_grpc

STATE_NAMES = {
    records_pb2.RUN_STATE_RUNNING: "running",
    records_pb2.RUN_STATE_FINISHED: "finished",
    records_pb2.RUN_STATE_FAILED: "failed",
    records_pb2.RUN_STATE_KILLED: "killed",
    records_pb2.RUN_STATE_CRASHED: "crashed",
}


def translate(exc: grpc.RpcError, what: str) -> CommError:
    """The one place where gRPC errors from the store become the SDK's exceptions."""
    code = exc.code() if hasattr(exc, "code") else None
    detail = (exc.details() if hasattr(exc, "details") else str(exc)) or ""
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFoundError(in_context(what, detail))
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return CommError(f"{what}: the store server is not reachable ({detail})")
    return CommError(in_context(what, detail))


def in_context(what: str, detail: str) -> str:
    """``what: detail``, or the store's ``detail`` alone when it already names the runs ``what``
    names: "run e/p/x not found", not "run e/p/x: run e/p/x not found"."""
    subjects = [word for word in what.split() if "/" in word]
    if subjects and all(subject in detail for subject in subjects):
        return detail
    return f"{what}: {detail}"


def local_server(home: Path, timeout: float = 15.0) -> str:
    """The address of the daemon's embedded store server, starting the daemon if needed."""
    target = _launch.ensure_daemon(home, timeout=timeout)
    deadline = time.monotonic() + timeout
    with _launch.channel(target) as channel:
        stub = daemon_pb2_grpc.DaemonStub(channel)
        while True:
            try:
                status = stub.Status(
                    daemon_pb2.StatusRequest(), timeout=max(0.1, deadline - time.monotonic())
                )
            except grpc.RpcError as exc:
                raise translate(exc, "asking the tracklog daemon for its local store") from exc
            if status.local_server:
                return status.local_server
            if time.monotonic() >= deadline:
                raise CommError(f"the local store server did not start; see {home / 'server.log'}")
            time.sleep(0.05)  # the daemon is starting the store; poll its status


# What the bulk calls take: ApiRun objects or run paths (in any form ``Api.run`` takes), or one of them.
RunsArg: TypeAlias = "ApiRun | str | Iterable[ApiRun | str]"


class Api:
    """Queries a store server: ``server`` (host:port), else ``TRACKLOG_SERVER``, else the local one."""

    def __init__(
        self, server: str | None = None, *, timeout: float = 30.0, settle_timeout: float = 10.0
    ) -> None:
        if server:
            _settings.validate_server(server)
        address = server or _settings.configured_server(os.environ, _home.home())
        if not address:
            address = local_server(_home.home())
        self.server = address
        self.timeout = timeout
        # How long run() waits for this machine's daemon to finish sending a run that just ended.
        self.settle_timeout = settle_timeout
        self._channel = _launch.channel(address)
        self._stub = store_pb2_grpc.StoreStub(self._channel)
        self._http_url: str | None = None

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def http_url(self) -> str:
        if self._http_url is None:
            try:
                info = self._stub.ServerInfo(store_pb2.ServerInfoRequest(), timeout=self.timeout)
                self._http_url = info.http_url
            except grpc.RpcError:
                return ""
        return self._http_url

    def run(self, path: str) -> ApiRun:
        """One run by ``entity/project/id``, ``entity/project/runs/id``, ``project/id`` (the default
        entity) or its URL. A run that just ended on this machine comes back whole: this waits (at
        most ``settle_timeout`` seconds) for the local daemon to finish sending it to this store."""
        ref = parse_run_path(path)
        if not _api_settle.await_settled(_home.home(), ref, self.server, self.settle_timeout):
            warnings.warn(
                f"run {ref} ended on this machine but its daemon has not sent all of it to the store "
                f"within {self.settle_timeout:g}s; what is read now may be incomplete",
                RuntimeWarning,
                stacklevel=2,
            )
        return ApiRun(self, self._get(ref))

    def _get(self, ref: _refs.RunPath) -> store_pb2.RunView:
        request = store_pb2.GetRunRequest(
            ref=records_pb2.RunRef(entity=ref.entity, project=ref.project, id=ref.id)
        )
        try:
            return self._stub.GetRun(request, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise translate(exc, f"run {ref}") from exc

    def runs(
        self,
        path: str | None = None,
        filters: Mapping[str, Any] | None = None,
        order: str | None = "-created_at",
        per_page: int = 50,
        limit: int = 0,
    ) -> _api_runs.Runs:
        """Runs of ``entity/project`` (or ``project`` of the default entity) matching ``filters``
        (MongoDB-style, as wandb's), in ``order``: a lazy sequence fetched ``per_page`` runs at a
        time (``limit``: at most that many). Without a path, every project's runs, newest first."""
        if path:
            return _api_runs.Runs(self, path, filters, order, per_page, limit)
        request = store_pb2.ListRunsRequest(
            filters_json=json.dumps(filters or {}), order=order or "-created_at", limit=limit
        )
        out: list[ApiRun] = []
        while True:
            try:
                response = self._stub.ListRuns(request, timeout=self.timeout)
            except grpc.RpcError as exc:
                raise translate(exc, "listing runs of every project") from exc
            out.extend(ApiRun(self, view) for view in response.runs)
            if not response.next_page_token or (limit and len(out) >= limit):
                return _api_runs.LoadedRuns(self, out[:limit] if limit else out)
            request.page_token = response.next_page_token

    def project(self, path: str) -> _api_runs.Project:
        """``entity/project``: its run count and the config and summary keys its runs hold, with
        their types and numeric ranges."""
        return _api_runs.project(self, path)

    @overload
    def delete_runs(self, runs: Sequence[ApiRun | str], delete_files: bool = False) -> int: ...
    @overload
    def delete_runs(
        self, runs: str, delete_files: bool = False, *, filters: Mapping[str, Any], dry_run: bool = False
    ) -> list[str]: ...
    def delete_runs(
        self,
        runs: Sequence[ApiRun | str] | str,
        delete_files: bool = False,
        *,
        filters: Mapping[str, Any] | None = None,
        dry_run: bool = False,
    ) -> int | list[str]:
        """Deletes many runs (``ApiRun`` or ``entity/project/id``) in one call, all or nothing;
        returns how many. Their ids stay reserved, as with ``ApiRun.delete``.

        With ``filters``, ``runs`` is a project (``entity/project``) and its runs matching them are
        deleted; returns their paths. ``dry_run=True`` deletes nothing and returns what would go."""
        if filters is not None or dry_run:
            if not isinstance(runs, str):
                raise UsageError("delete_runs(filters=...) takes a project path, 'entity/project'")
            return _api_runs.delete_by_filter(
                self, runs, filters or {}, dry_run=dry_run, delete_files=delete_files
            )
        if isinstance(runs, str):
            raise UsageError("delete_runs() takes a list of runs, or a project path with filters=...")
        refs = _api_edit.run_refs(runs)
        request = store_pb2.DeleteRunsRequest(refs=refs, delete_files=delete_files)
        response = self._mutate("DeleteRuns", request, f"deleting {len(refs)} runs")
        return int(response.deleted)

    def tag_runs(self, runs: RunsArg, add: Sequence[str] = (), remove: Sequence[str] = ()) -> int:
        """Adds and removes tags on many runs (``ApiRun`` objects or run paths) in one call, all or
        nothing; returns how many runs. Tags merge as ``ApiRun.update()``'s do; the ``ApiRun``
        objects passed keep their snapshot (``load()`` refreshes them)."""
        return _api_edit.tag_runs(self, runs, add, remove)

    def move_runs(
        self,
        runs: ApiRun | str | Iterable[ApiRun | str],
        group: str | None = None,
        job_type: str | None = None,
    ) -> int:
        """Moves many runs to ``group`` (and/or ``job_type``; "" for none) in one call, all or
        nothing; returns how many runs."""
        return _api_edit.move_runs(self, runs, group, job_type)

    def _mutate(self, method: str, request: Any, what: str) -> Any:
        """A call that changes runs: a refusal of what was asked (bad input, a run that is not
        running) is the caller's UsageError; other failures as every other call's."""
        try:
            return getattr(self._stub, method)(request, timeout=self.timeout)
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION):
                raise UsageError(in_context(what, exc.details() or "")) from exc
            raise translate(exc, what) from exc

    def _history(self, request: store_pb2.HistoryRequest, what: str) -> Iterator[records_pb2.HistoryBatch]:
        return self._stream("History", request, what)

    def _stream(self, method: str, request: Any, what: str) -> Iterator[Any]:
        """A server-streaming call, with gRPC errors translated."""
        try:
            yield from getattr(self._stub, method)(request, timeout=self.timeout * 10)
        except grpc.RpcError as exc:
            raise translate(exc, what) from exc


def _as_text(doc: Any) -> dict[str, str]:
    """Each item of a config or summary as JSON text, to tell what changed (NaN equals NaN here)."""
    if not isinstance(doc, dict):
        raise UsageError(f"run.config and run.summary must be dicts, not {type(doc).__name__}")
    bad = [k for k in doc if not isinstance(k, str) or not k]
    if bad:
        raise UsageError(f"config and summary keys must be non-empty str, not {bad[0]!r}")
    try:
        return {k: _history.dumps(v) for k, v in doc.items()}
    except (TypeError, ValueError) as exc:
        raise UsageError(f"a config or summary value cannot be saved as JSON: {exc}") from exc


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if ts else ""


class ApiRun:
    """A run as the store holds it (a snapshot; ``load()`` refreshes it)."""

    def __init__(self, api: Api, view: store_pb2.RunView) -> None:
        self._api = api
        self._set(view)

    def _set(self, view: store_pb2.RunView) -> None:
        self._view = view
        self.entity, self.project, self.id = view.ref.entity, view.ref.project, view.ref.id
        self.name = view.name
        self.notes = view.notes
        self.tags = list(view.tags)
        self.group = view.group
        self.job_type = view.job_type
        self.state = STATE_NAMES.get(view.state, "unknown")
        self.exit_code = view.exit_code
        # define_metric()'s definitions travel in the config under a reserved key; not the user's.
        config = json.loads(view.config_json or "{}")
        self.metric_definitions = _metrics.from_config(config)
        # Editable: changes are saved by update() (or, as in wandb, summary.update() with no arguments).
        self.config: dict[str, Any] = _api_edit.RunDict(self, config)
        self.summary: dict[str, Any] = _api_edit.RunDict(self, json.loads(view.summary_json or "{}"))
        self.metrics = {m.key: {"last": m.last, "min": m.min, "max": m.max} for m in view.metrics}
        self.metadata: dict[str, Any] = json.loads(view.metadata_json or "{}")
        self.created_at = _iso(view.created_at)
        self.heartbeat_at = _iso(view.heartbeat_at)
        self.finished_at = _iso(view.finished_at)
        self.start_time = view.created_at
        self.history_rows = view.history_rows
        self.host = view.host
        self.runtime = view.runtime
        self.tracked_seconds = view.tracked_seconds
        self.rows_lost = view.rows_lost  # history rows known lost, see ``problems``
        self.problems = list(view.problems)  # what was lost or refused, and why
        # What the editable fields held when loaded: update() sends only what changed since, as
        # differences (tags added and removed, config and summary items set and removed), so that
        # the training process's own edits meanwhile are kept.
        # (The config and summary as loaded are read again from the view when update() needs them:
        # a page of runs is built without encoding every item of every run once more.)
        self._loaded_tags = list(self.tags)

    @property
    def path(self) -> str:
        return f"{self.entity}/{self.project}/{self.id}"

    @property
    def url(self) -> str:
        return page_url(self._api.http_url, f"{self.entity}/{self.project}/runs/{self.id}")

    def load(self) -> ApiRun:
        self._set(self._api._get(_refs.RunPath(self.entity, self.project, self.id)))
        return self

    def update(self) -> ApiRun:
        """Saves what changed since this run was loaded: ``name``, ``notes``, ``tags``, ``group``,
        ``job_type`` and items of ``config`` and ``summary``. Later writes win per field, whether from
        here or from the training process; tags merge per tag. Reloads the run; returns it."""
        view = self._view
        changes = store_pb2.RunChanges()
        for field in ("name", "notes", "group", "job_type"):
            value = getattr(self, field)
            if not isinstance(value, str):
                raise UsageError(f"run.{field} must be a str, not {type(value).__name__}")
            if value != getattr(view, field):
                setattr(changes, field, value)
        tags = self.tags
        if isinstance(tags, str) or not all(isinstance(t, str) for t in tags):
            raise UsageError("run.tags must be a list of str")
        for tag in tags:
            problem = "is empty" if not tag else _rules.text_problem(tag)
            if problem is not None:
                raise UsageError(f"tag {_rules.short(tag)} {problem}")
        changes.add_tags.extend(t for t in dict.fromkeys(tags) if t not in self._loaded_tags)
        changes.remove_tags.extend(t for t in self._loaded_tags if t not in tags)
        loaded_config = json.loads(view.config_json or "{}")
        _metrics.from_config(loaded_config)  # without the reserved key: update() keeps it
        for name, doc, loaded_doc, removed in (
            ("config", self.config, loaded_config, changes.config_removed),
            ("summary", self.summary, json.loads(view.summary_json or "{}"), changes.summary_removed),
        ):
            loaded = _as_text(loaded_doc)
            now = _as_text(doc)
            items = {k: doc[k] for k, text in now.items() if loaded.get(k) != text}
            if items:
                setattr(changes, f"{name}_json", _history.dumps(items))
            removed.extend(k for k in loaded if k not in now)
        request = store_pb2.UpdateRunRequest(ref=view.ref, changes=changes)
        self._set(self._api._mutate("UpdateRun", request, f"updating run {self.path}"))
        return self

    def delete(self, delete_files: bool = False) -> None:
        """Deletes the run from the store. Its id stays reserved in the project: reads of it say it
        was deleted, and a new run cannot take it. ``delete_files`` also drops its stored files."""
        request = store_pb2.DeleteRunsRequest(refs=[self._view.ref], delete_files=delete_files)
        self._api._mutate("DeleteRuns", request, f"deleting run {self.path}")

    def stop(self) -> None:
        """Asks the running run to stop: its training process gets KeyboardInterrupt within seconds
        and the run ends ``killed``. A run that is not running cannot be stopped (UsageError)."""
        request = store_pb2.StopRunRequest(ref=self._view.ref)
        self._api._mutate("StopRun", request, f"stopping run {self.path}")

    def history(
        self,
        samples: int | None = 500,
        keys: Sequence[str] | None = None,
        x_axis: str = "_step",
        pandas: bool = True,
        stream: str = "default",
    ) -> Any:
        """Up to ``samples`` rows, evenly spaced (first and last kept; None: every row), with
        ``_step``, ``_runtime``, ``_timestamp`` and the logged keys: a pandas DataFrame when pandas is
        installed and ``pandas`` is true, else a list of dicts. With ``keys``, only those keys, on rows
        where one of them has a value; ``x_axis`` (a logged key) keeps only rows that have it.
        ``stream="system"`` reads the system metrics instead (``_runtime``, ``_timestamp``,
        ``system/...``)."""
        return _api_history.history(self, samples, keys, x_axis, pandas, stream)

    def scan_history(
        self,
        keys: Sequence[str] | None = None,
        page_size: int = 1000,
        min_step: int | None = None,
        max_step: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every row in step order as dicts, fetched ``page_size`` rows at a time; with ``keys``,
        only rows that have all of them. ``min_step`` is inclusive, ``max_step`` exclusive."""
        return _api_history.scan_history(self, keys, page_size, min_step, max_step)

    def system_history(
        self, keys: Sequence[str] | None = None, samples: int | None = None
    ) -> list[dict[str, Any]]:
        """System metrics rows ``{"_timestamp", "_runtime", "system/...": value}``, oldest first."""
        rows: list[dict[str, Any]] = _api_history.history(self, samples, keys, pandas=False, stream="system")
        return rows

    def logs(self) -> list[str]:
        """The run's console output, one string per line, in order."""
        request = store_pb2.LogsRequest(ref=self._view.ref)
        return [
            line.text
            for page in self._api._stream("Logs", request, f"logs of {self.path}")
            for line in page.lines
        ]

    def files(self) -> list[ApiFile]:
        """The files stored with the run (the latest complete version of each)."""
        request = store_pb2.ListFilesRequest(ref=self._view.ref)
        try:
            response = self._api._stub.ListFiles(request, timeout=self._api.timeout)
        except grpc.RpcError as exc:
            raise translate(exc, f"files of {self.path}") from exc
        return [ApiFile(self, info) for info in response.files]

    def file(self, name: str) -> ApiFile:
        for found in self.files():
            if found.name == name:
                return found
        raise NotFoundError(f"run {self.path} has no file {name!r}")

    def __repr__(self) -> str:
        return f"<tracklog.ApiRun {self.path} ({self.state})>"

    def _repr_html_(self) -> str:
        """Jupyter's display of the run: its name, linked to its page, path, state and summary."""
        from tracklog import _notebook  # a few string functions; imports nothing

        return _notebook.run_html(
            kind="Run", name=self.name, path=self.path, state=self.state, url=self.url, summary=self.summary
        )


class ApiFile:
    """A file stored with a run: ``name``, ``size``, ``sha256``; ``download(root)`` fetches it."""

    def __init__(self, run: ApiRun, info: store_pb2.FileInfo) -> None:
        self._run = run
        self.name = info.name
        self.version = info.version
        self.size = info.size
        self.sha256 = info.sha256
        self.updated_at = _iso(info.updated_at)

    def download(self, root: str | os.PathLike[str] = ".", replace: bool = False) -> Path:
        """Writes the file under ``root`` (keeping its relative path); returns where. Refuses to
        overwrite an existing file unless ``replace``, and checks the sha256."""
        target = (Path(root) / self.name).resolve()
        if Path(root).resolve() not in target.parents:
            raise UsageError(f"file name {self.name!r} would escape {root}")
        if target.exists() and not replace:
            raise UsageError(f"{target} exists; pass replace=True to overwrite it")
        target.parent.mkdir(parents=True, exist_ok=True)
        request = store_pb2.GetFileRequest(ref=self._run._view.ref, name=self.name, version=self.version)
        digest = hashlib.sha256()
        tmp = target.with_name(target.name + ".part")
        with open(tmp, "wb") as f:
            for chunk in self._run._api._stream("GetFile", request, f"file {self.name} of {self._run.path}"):
                f.write(chunk.data)
                digest.update(chunk.data)
        if self.sha256 and digest.hexdigest() != self.sha256:
            tmp.unlink(missing_ok=True)
            raise CommError(f"file {self.name} arrived damaged (sha256 mismatch); try again")
        os.replace(tmp, target)
        return target

    def __repr__(self) -> str:
        return f"<tracklog.ApiFile {self.name} ({self.size} bytes)>"
