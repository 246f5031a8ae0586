"""The gRPC service ``tracklog.v1.Store``: protocol messages in, store calls, protocol messages out.

Requests are registered with no deserializer and parsed here, so that bytes which are not the
expected message get INVALID_ARGUMENT with a reason (grpc's own deserialization failure would be an
opaque INTERNAL). Store errors map to one status each; anything unexpected is logged with its
traceback here and reaches the caller as INTERNAL with a short message, never a stack trace.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message

from tracklog.v1 import records_pb2, store_pb2
from tracklog_server._entities import HistoryQuery, RunChanges, RunFilter, RunState, SystemQuery
from tracklog_server._errors import (
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    RunStateError,
    StoreConflictError,
    StoreError,
    StoreUnavailableError,
)
from tracklog_server._limits import MAX_FRAMES_PER_REQUEST, MAX_LONG_TEXT, MAX_TAGS
from tracklog_server._records import run_key
from tracklog_server._validate import check_text, loads_object
from tracklog_server.application import _get as _app_get
from tracklog_server.application import _heartbeat as _app_heartbeat
from tracklog_server.application import _identity as _app_identity
from tracklog_server.application import _ingest as _app_ingest
from tracklog_server.application import _runs as _app_runs
from tracklog_server.application._caller import ANONYMOUS
from tracklog_server.storage._store import AbstractStore

from . import _grpc_search
from ._convert import file_info, history_batch, output_lines, run_ref, run_view, system_batch

log = logging.getLogger(__name__)

SERVICE = "tracklog.v1.Store"
_SOURCES = {
    store_pb2.SOURCE_CLIENT: _app_ingest.Source.CLIENT,
    store_pb2.SOURCE_DAEMON: _app_ingest.Source.DAEMON,  # the daemon's own sequence of the run
}
M = TypeVar("M", bound=Message)

_VERDICTS = {
    _app_identity.Verdict.FREE: store_pb2.RUN_ID_FREE,
    _app_identity.Verdict.OWN: store_pb2.RUN_ID_OWN,
    _app_identity.Verdict.RESUMABLE: store_pb2.RUN_ID_RESUMABLE,
    _app_identity.Verdict.TAKEN: store_pb2.RUN_ID_TAKEN,
    _app_identity.Verdict.LIVE: store_pb2.RUN_ID_LIVE,
    _app_identity.Verdict.DELETED: store_pb2.RUN_ID_DELETED,
    _app_identity.Verdict.MISSING: store_pb2.RUN_ID_MISSING,
}

_STATUS: tuple[tuple[type[StoreError], grpc.StatusCode], ...] = (
    (InvalidInputError, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFoundError, grpc.StatusCode.NOT_FOUND),
    (PermissionDeniedError, grpc.StatusCode.PERMISSION_DENIED),
    (StoreUnavailableError, grpc.StatusCode.UNAVAILABLE),
    (StoreConflictError, grpc.StatusCode.ABORTED),
    (RunStateError, grpc.StatusCode.FAILED_PRECONDITION),
)


def _parse(cls: type[M], data: bytes) -> M:
    try:
        return cls.FromString(data)
    except DecodeError as exc:
        raise InvalidInputError(f"request is not a valid {cls.DESCRIPTOR.full_name}") from exc


def _abort(context: grpc.ServicerContext, exc: Exception) -> NoReturn:
    if isinstance(exc, StoreError):
        for cls, code in _STATUS:
            if isinstance(exc, cls):
                context.abort(code, str(exc))
        log.error("store error: %s", exc, exc_info=exc)
        context.abort(grpc.StatusCode.INTERNAL, str(exc))
    log.error("unexpected error in %s", SERVICE, exc_info=exc)
    context.abort(grpc.StatusCode.INTERNAL, "internal server error; see the server log")


class StoreService:
    """Implements the Store RPCs on an :class:`AbstractStore`."""

    def __init__(
        self,
        store: AbstractStore,
        *,
        version: str,
        http_url: Callable[[], str],
        heartbeat_timeout: float,
        gate: _app_ingest.IngestGate | None = None,
    ) -> None:
        self._store = store
        self._gate = gate
        self._version = version
        self._http_url = http_url
        self._heartbeat_timeout = heartbeat_timeout

    def handler(self) -> grpc.GenericRpcHandler[bytes, Message]:
        def unary(
            fn: Callable[[bytes, grpc.ServicerContext], Message],
        ) -> grpc.RpcMethodHandler[bytes, Message]:
            return grpc.unary_unary_rpc_method_handler(
                self._guard(fn), response_serializer=lambda m: m.SerializeToString()
            )

        def stream(
            fn: Callable[[bytes, grpc.ServicerContext], Iterator[Message]],
        ) -> grpc.RpcMethodHandler[bytes, Message]:
            return grpc.unary_stream_rpc_method_handler(
                self._guard_stream(fn), response_serializer=lambda m: m.SerializeToString()
            )

        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Ingest": unary(self.ingest),
                "Heartbeat": unary(self.heartbeat),
                "GetRun": unary(self.get_run),
                "ListRuns": unary(self.list_runs),
                "ServerInfo": unary(self.server_info),
                "History": stream(self.history),
                "SystemHistory": stream(self.system_history),
                "Logs": stream(self.logs),
                "ListFiles": unary(self.list_files),
                "GetFile": stream(self.get_file),
                "UpdateRun": unary(self.update_run),
                "DeleteRuns": unary(self.delete_runs),
                "StopRun": unary(self.stop_run),
                "UpdateRuns": unary(self.update_runs),
                "SearchRuns": unary(self.search_runs),
                "GroupRuns": unary(self.group_runs),
                "DescribeProject": unary(self.describe_project),
                "DeleteRunsByFilter": unary(self.delete_runs_by_filter),
                "CheckRunId": unary(self.check_run_id),
            },
        )

    @staticmethod
    def _guard(
        fn: Callable[[bytes, grpc.ServicerContext], Message],
    ) -> Callable[[bytes, grpc.ServicerContext], Message]:
        def call(request: bytes, context: grpc.ServicerContext) -> Message:
            try:
                return fn(request, context)
            except Exception as exc:
                _abort(context, exc)

        return call

    @staticmethod
    def _guard_stream(
        fn: Callable[[bytes, grpc.ServicerContext], Iterator[Message]],
    ) -> Callable[[bytes, grpc.ServicerContext], Iterator[Message]]:
        def call(request: bytes, context: grpc.ServicerContext) -> Iterator[Message]:
            try:
                yield from fn(request, context)
            except Exception as exc:
                _abort(context, exc)

        return call

    def ingest(self, data: bytes, _context: grpc.ServicerContext) -> store_pb2.IngestResponse:
        request = _parse(store_pb2.IngestRequest, data)
        key = run_key(request.ref)
        if len(request.frames) > MAX_FRAMES_PER_REQUEST:
            raise InvalidInputError(
                f"{len(request.frames)} frames in one request; the limit is {MAX_FRAMES_PER_REQUEST}"
            )
        frames = [(f.seq, f.record) for f in request.frames]
        source = _SOURCES.get(request.source)
        if source is None:
            raise InvalidInputError(f"unknown frame source {request.source}")
        result = _app_ingest.ingest(
            self._store, ANONYMOUS, key, frames,
            source=source, writer_token=request.writer_token, gate=self._gate,
        )  # fmt: skip
        return store_pb2.IngestResponse(
            accepted=result.accepted,
            applied_through=result.applied_through,
            refused=[store_pb2.RefusedRecord(seq=r.seq, reason=r.reason) for r in result.refused],
            stop_requested=result.stop_requested,
        )

    def heartbeat(self, data: bytes, _context: grpc.ServicerContext) -> store_pb2.HeartbeatResponse:
        request = _parse(store_pb2.HeartbeatRequest, data)
        stop = _app_heartbeat.heartbeat(self._store, ANONYMOUS, [run_key(ref) for ref in request.runs])
        return store_pb2.HeartbeatResponse(stop=[run_ref(key) for key in stop])

    def get_run(self, data: bytes, _context: grpc.ServicerContext) -> store_pb2.RunView:
        request = _parse(store_pb2.GetRunRequest, data)
        return run_view(_app_get.get_run(self._store, ANONYMOUS, run_key(request.ref)))

    def list_runs(self, data: bytes, _context: grpc.ServicerContext) -> store_pb2.ListRunsResponse:
        request = _parse(store_pb2.ListRunsRequest, data)
        try:
            offset = int(request.page_token) if request.page_token else 0
        except ValueError as exc:
            raise InvalidInputError("invalid page_token") from exc
        limit = request.limit
        runs = self._store.list_runs(
            RunFilter(
                entity=request.entity,
                project=request.project,
                state=_state_filter(request.filters_json),
                order=request.order or "-created_at",
                limit=limit + 1 if limit else 0,  # one more tells whether another page exists
                offset=max(0, offset),
            )
        )
        token = ""
        if limit and len(runs) > limit:
            runs = runs[:limit]
            token = str(offset + limit)
        return store_pb2.ListRunsResponse(runs=[run_view(r) for r in runs], next_page_token=token)

    def history(self, data: bytes, _context: grpc.ServicerContext) -> Iterator[records_pb2.HistoryBatch]:
        request = _parse(store_pb2.HistoryRequest, data)
        query = HistoryQuery(
            keys=tuple(request.keys),
            samples=request.samples,
            min_step=request.min_step,
            max_step=request.max_step or None,
            page_rows=request.page_rows,
        )
        for page in self._store.history(run_key(request.ref), query):
            yield history_batch(page)

    def system_history(
        self, data: bytes, _context: grpc.ServicerContext
    ) -> Iterator[records_pb2.SystemBatch]:
        request = _parse(store_pb2.SystemHistoryRequest, data)
        query = SystemQuery(keys=tuple(request.keys), samples=request.samples)
        for page in self._store.system_history(run_key(request.ref), query):
            yield system_batch(page)

    def logs(self, data: bytes, _context: grpc.ServicerContext) -> Iterator[records_pb2.OutputLines]:
        request = _parse(store_pb2.LogsRequest, data)
        for lines in self._store.logs(run_key(request.ref), request.offset, request.limit):
            yield output_lines(lines)

    def list_files(self, data: bytes, _context: grpc.ServicerContext) -> store_pb2.ListFilesResponse:
        request = _parse(store_pb2.ListFilesRequest, data)
        files = self._store.list_files(run_key(request.ref))
        return store_pb2.ListFilesResponse(files=[file_info(f) for f in files])

    def get_file(self, data: bytes, _context: grpc.ServicerContext) -> Iterator[records_pb2.FileChunk]:
        """The version's bytes as FileChunks, as they were sent: ``size`` in every chunk, ``last`` and
        ``sha256`` on the final one (an empty file is one empty last chunk)."""
        request = _parse(store_pb2.GetFileRequest, data)
        info, pieces = self._store.read_file(run_key(request.ref), request.name, request.version)
        offset = 0
        pending: bytes | None = None
        for piece in pieces:  # one piece behind, to know which one is last
            if pending is not None:
                yield records_pb2.FileChunk(
                    name=info.name, version=info.version, offset=offset, data=pending, size=info.size
                )
                offset += len(pending)
            pending = piece
        yield records_pb2.FileChunk(
            name=info.name,
            version=info.version,
            offset=offset,
            data=pending or b"",
            last=True,
            size=info.size,
            sha256=info.sha256,
        )

    def update_run(self, data: bytes, _context: grpc.ServicerContext) -> store_pb2.RunView:
        request = _parse(store_pb2.UpdateRunRequest, data)
        key, changes = run_key(request.ref), run_changes(request.changes)
        return run_view(_app_runs.update_run(self._store, ANONYMOUS, key, changes))

    def delete_runs(self, data: bytes, _context: grpc.ServicerContext) -> store_pb2.DeleteRunsResponse:
        request = _parse(store_pb2.DeleteRunsRequest, data)
        keys = [run_key(ref) for ref in request.refs]
        deleted = _app_runs.delete_runs(self._store, ANONYMOUS, keys, delete_files=request.delete_files)
        return store_pb2.DeleteRunsResponse(deleted=deleted)

    def update_runs(self, data: bytes, _context: grpc.ServicerContext) -> store_pb2.UpdateRunsResponse:
        request = _parse(store_pb2.UpdateRunsRequest, data)
        keys = [run_key(ref) for ref in request.refs]
        changes = run_changes(request.changes)
        updated = _app_runs.update_runs(self._store, _app_runs.ANONYMOUS, keys, changes)
        return store_pb2.UpdateRunsResponse(updated=updated)

    def stop_run(self, data: bytes, _context: grpc.ServicerContext) -> store_pb2.StopRunResponse:
        request = _parse(store_pb2.StopRunRequest, data)
        _app_runs.stop_run(self._store, ANONYMOUS, run_key(request.ref))
        return store_pb2.StopRunResponse()

    def search_runs(self, data: bytes, _context: grpc.ServicerContext) -> store_pb2.SearchRunsResponse:
        return _grpc_search.search_runs(self._store, _parse(store_pb2.SearchRunsRequest, data))

    def group_runs(self, data: bytes, _context: grpc.ServicerContext) -> store_pb2.GroupRunsResponse:
        return _grpc_search.group_runs(self._store, _parse(store_pb2.GroupRunsRequest, data))

    def describe_project(self, data: bytes, _context: grpc.ServicerContext) -> store_pb2.ProjectDescription:
        return _grpc_search.describe_project(self._store, _parse(store_pb2.DescribeProjectRequest, data))

    def delete_runs_by_filter(
        self, data: bytes, _context: grpc.ServicerContext
    ) -> store_pb2.DeleteRunsByFilterResponse:
        request = _parse(store_pb2.DeleteRunsByFilterRequest, data)
        return _grpc_search.delete_by_filter(self._store, request)

    def check_run_id(self, data: bytes, _context: grpc.ServicerContext) -> store_pb2.CheckRunIdResponse:
        request = _parse(store_pb2.CheckRunIdRequest, data)
        if request.resume not in ("", "allow", "must", "never"):
            raise InvalidInputError(
                f"resume must be '', 'allow', 'must' or 'never', not {request.resume[:20]!r}"
            )
        key = run_key(request.ref)
        result = _app_identity.check_run_id(self._store, ANONYMOUS, key, request.writer_token, request.resume)
        found = result.found
        return store_pb2.CheckRunIdResponse(
            verdict=_VERDICTS[result.verdict],
            message=result.message,
            last_step=found.last_step if found is not None else -1,
            name=found.name if found is not None else "",
            config_json=found.config_json if found is not None else "",
            project_runs=result.project_runs,
        )

    def server_info(self, data: bytes, _context: grpc.ServicerContext) -> store_pb2.ServerInfoResponse:
        _parse(store_pb2.ServerInfoRequest, data)
        return store_pb2.ServerInfoResponse(
            version=self._version, http_url=self._http_url(), heartbeat_timeout=self._heartbeat_timeout
        )


def _state_filter(filters_json: str) -> RunState | None:
    """Only ``{"state": "..."}`` is understood so far; other filters are refused rather than ignored,
    so a caller never takes an unfiltered list for a filtered one."""
    if not filters_json:
        return None
    try:
        filters: Any = json.loads(filters_json)
    except ValueError as exc:
        raise InvalidInputError("filters_json is not valid JSON") from exc
    if not isinstance(filters, dict):
        raise InvalidInputError("filters_json must be a JSON object")
    unsupported = sorted(set(filters) - {"state"})
    if unsupported:
        raise InvalidInputError(f"filters not supported yet: {', '.join(unsupported)}")
    state = filters.get("state")
    if state is None:
        return None
    try:
        return RunState(state)
    except ValueError as exc:
        raise InvalidInputError(f"unknown state {state!r}") from exc


def run_changes(msg: store_pb2.RunChanges) -> RunChanges:
    """The edit as the store takes it, checked by the rules ingest applies to the same fields."""
    if len(msg.add_tags) > MAX_TAGS or len(msg.remove_tags) > MAX_TAGS:
        raise InvalidInputError(f"more than {MAX_TAGS} tags in one edit")
    for tag in [*msg.add_tags, *msg.remove_tags]:
        if not tag:
            raise InvalidInputError("a tag is empty")
        check_text(tag, f"tag {tag[:40]!r}")
    config = loads_object(msg.config_json, "config_json")
    summary = loads_object(msg.summary_json, "summary_json")
    for what, keys in (
        ("config", [*config, *msg.config_removed]),
        ("summary", [*summary, *msg.summary_removed]),
    ):
        for k in keys:
            if not k:
                raise InvalidInputError(f"a {what} key is empty")
            check_text(k, f"{what} key {k[:40]!r}")
    return RunChanges(
        name=check_text(msg.name, "name") if msg.HasField("name") else None,
        notes=check_text(msg.notes, "notes", MAX_LONG_TEXT) if msg.HasField("notes") else None,
        group=check_text(msg.group, "group") if msg.HasField("group") else None,
        job_type=check_text(msg.job_type, "job_type") if msg.HasField("job_type") else None,
        add_tags=tuple(msg.add_tags),
        remove_tags=tuple(msg.remove_tags),
        config=config,
        config_removed=tuple(msg.config_removed),
        summary=summary,
        summary_removed=tuple(msg.summary_removed),
    )
