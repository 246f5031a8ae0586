"""Entities to protocol messages, shared by the gRPC service and the HTTP JSON API."""

from __future__ import annotations

from tracklog.v1 import records_pb2, store_pb2
from tracklog_server._capture_records import STREAM_CODES
from tracklog_server._entities import FileInfo, HistoryPage, OutputLine, Run, RunKey, RunState, SystemPage

STATES = {
    RunState.RUNNING: records_pb2.RUN_STATE_RUNNING,
    RunState.FINISHED: records_pb2.RUN_STATE_FINISHED,
    RunState.FAILED: records_pb2.RUN_STATE_FAILED,
    RunState.KILLED: records_pb2.RUN_STATE_KILLED,
    RunState.CRASHED: records_pb2.RUN_STATE_CRASHED,
}


def run_ref(key: RunKey) -> records_pb2.RunRef:
    return records_pb2.RunRef(entity=key.entity, project=key.project, id=key.id)


def run_view(run: Run) -> store_pb2.RunView:
    return store_pb2.RunView(
        ref=run_ref(run.key),
        name=run.name,
        notes=run.notes,
        tags=run.tags,
        group=run.group,
        job_type=run.job_type,
        state=STATES[run.state],
        exit_code=run.exit_code,
        config_json=run.config_json,
        summary_json=run.summary_json,
        metrics=[
            store_pb2.MetricSummary(key=m.key, last=m.last, min=m.min, max=m.max, last_step=m.last_step)
            for m in run.metrics
        ],
        created_at=run.created_at,
        heartbeat_at=run.heartbeat_at,
        finished_at=run.finished_at,
        history_rows=run.history_rows,
        last_step=run.last_step,
        metadata_json=run.metadata_json,
        host=run.host,
        run_dir=run.run_dir,
        last_seq=run.last_seq,
        runtime=run.runtime,
        tracked_seconds=run.tracked_seconds,
        rows_lost=run.rows_lost,
        problems=run.problems,
        daemon_seq=run.daemon_seq,
    )


def history_batch(page: HistoryPage) -> records_pb2.HistoryBatch:
    batch = records_pb2.HistoryBatch(steps=page.steps, timestamps=page.timestamps)
    for col in page.columns:
        batch.columns.add(
            key=col.key, type=col.type, steps=col.steps, values=col.values, json_values=col.json_values
        )
    return batch


def system_batch(page: SystemPage) -> records_pb2.SystemBatch:
    return records_pb2.SystemBatch(
        timestamps=page.timestamps,
        series=[records_pb2.SystemSeries(key=s.key, values=s.values) for s in page.series],
    )


def output_lines(lines: tuple[OutputLine, ...]) -> records_pb2.OutputLines:
    return records_pb2.OutputLines(
        lines=[
            records_pb2.OutputLine(time=line.time, stream=STREAM_CODES[line.stream], text=line.text)
            for line in lines
        ]
    )


def file_info(info: FileInfo) -> store_pb2.FileInfo:
    return store_pb2.FileInfo(
        name=info.name,
        version=info.version,
        size=info.size,
        sha256=info.sha256,
        updated_at=info.updated_at,
        complete=info.complete,
    )
