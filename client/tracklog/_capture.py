"""What the sender thread adds to a run besides the script's own records: console output (also
written to ``output.log`` in the run directory), files saved with the run, and time accounting.

Queue items it understands: ``OutputChunk`` (lines from the console capture), ``SaveRequest``
(``run.save``) and ``END`` (the run is ending: send end/live files, output.log and the final Timing).
Everything runs on the sender thread; it never raises (a failure becomes one warning).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from tracklog import _files
from tracklog._console import Line
from tracklog.v1 import records_pb2

TIMING_INTERVAL = 30.0
# The sender thread wakes at least every 100 ms; a longer gap than this between two ticks means the
# process was suspended (SIGSTOP) or the machine slept, and does not count as tracked time.
SUSPEND_GAP = 2.0


@dataclass(frozen=True, slots=True)
class OutputChunk:
    lines: list[Line]


def _private_file(path: Path, flag: int) -> TextIO:
    """``path`` opened for writing text, created 0600 like the run's spool: the run's files are its
    user's alone (console output and config may hold secrets)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | flag, 0o600)
    return open(fd, "w", encoding="utf-8")


class _End:
    pass


END = _End()


class Capture:
    def __init__(
        self,
        run_dir: Path | None,
        *,
        warn: Callable[[str], None],
        start_wall: float,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        config: Callable[[], dict[str, object]] | None = None,
    ) -> None:
        self._run_dir = run_dir
        self._warn = warn
        self._files = _files.FileTracker()
        self._clock, self._wall = clock, wall
        self._start_wall = start_wall
        self._tracked = 0.0
        self._last_tick = clock()
        self._last_timing = self._last_tick
        self._last_live = self._last_tick
        self._output_log = run_dir / "output.log" if run_dir is not None else None
        self._wrote_output = False
        self._config = config

    # -- items from the queue -----------------------------------------------------------------------

    def expand(self, item: object) -> list[records_pb2.Record | _files.FileSend]:
        """The records ``item`` stands for; files as ``FileSend``, read later by the sender."""
        try:
            if isinstance(item, OutputChunk):
                return [self._output(item.lines)]
            if isinstance(item, _files.SaveRequest):
                return self._send(self._files.request(item))
            if item is END:
                return self._end()
        except Exception as exc:  # a broken file or disk must not stop the run's other records
            self._warn(f"could not record {type(item).__name__}: {exc!r}")
        return []

    def _output(self, lines: list[Line]) -> records_pb2.Record:
        if self._output_log is not None:
            try:
                with _private_file(self._output_log, os.O_APPEND) as f:
                    f.writelines(text + "\n" for _, _, text in lines)
                self._wrote_output = True
            except OSError as exc:
                self._output_log = None
                self._warn(f"cannot write output.log ({exc}); the console log is still recorded")
        record = records_pb2.Record()
        record.output.lines.extend(
            records_pb2.OutputLine(time=t, stream=stream, text=text)  # type: ignore[arg-type]
            for t, stream, text in lines
        )
        return record

    def _send(self, found: list[tuple[str, Path]]) -> list[records_pb2.Record | _files.FileSend]:
        return [_files.FileSend(name, self._files.next_version(name), path) for name, path in found]

    def _end(self) -> list[records_pb2.Record | _files.FileSend]:
        records = self._send(self._files.at_end())
        if self._run_dir is not None and self._wrote_output and self._output_log is not None:
            records.extend(self._send([("output.log", self._output_log)]))
        # metadata.json is the daemon's: it captures the metadata and saves it with the run itself.
        config = self._config() if self._config else {}
        if config and self._run_dir is not None:
            path = self._run_dir / "config.json"
            try:
                with _private_file(path, os.O_TRUNC) as f:
                    f.write(json.dumps(config, indent=2, allow_nan=True) + "\n")
                records.extend(self._send([("config.json", path)]))
            except OSError as exc:
                self._warn(f"cannot write config.json: {exc}")
        records.append(self.timing())
        return records

    # -- periodic -----------------------------------------------------------------------------------

    def tick(self) -> list[records_pb2.Record | _files.FileSend]:
        """Called every sender cycle: accounts time, re-sends changed live files, reports timing."""
        self.tick_time_only()
        now = self._last_tick
        out: list[records_pb2.Record | _files.FileSend] = []
        if now - self._last_live >= _files.LIVE_INTERVAL:
            self._last_live = now
            try:
                out.extend(self._send(self._files.changed()))
            except Exception as exc:
                self._warn(f"cannot check live files: {exc!r}")
        if now - self._last_timing >= TIMING_INTERVAL:
            self._last_timing = now
            out.append(self.timing())
        return out

    def timing(self) -> records_pb2.Record:
        self.tick_time_only()
        runtime = max(0.0, self._wall() - self._start_wall)
        return records_pb2.Record(
            timing=records_pb2.Timing(runtime=runtime, tracked_seconds=min(self._tracked, runtime))
        )

    def tick_time_only(self) -> None:
        now = self._clock()
        gap = now - self._last_tick
        self._last_tick = now
        if 0 <= gap <= SUSPEND_GAP:
            self._tracked += gap
