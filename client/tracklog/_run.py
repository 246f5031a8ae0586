"""``Run``: what ``tracklog.init()`` returns. ``log()`` is the hot path: validate, stamp, enqueue."""

from __future__ import annotations

import operator
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from tracklog import _files, _metrics, _rules, _settings, _values
from tracklog._capture import END
from tracklog._config import Config, Summary
from tracklog._console import Console
from tracklog._sender import BATCH_ROWS, Sender
from tracklog._terminal import Printer
from tracklog.v1 import records_pb2

RUNNING = records_pb2.RUN_STATE_RUNNING
FINISHED = records_pb2.RUN_STATE_FINISHED
FAILED = records_pb2.RUN_STATE_FAILED
KILLED = records_pb2.RUN_STATE_KILLED
STATE_NAMES: dict[int, str] = {FINISHED: "finished", FAILED: "failed", KILLED: "killed"}
_EDITS = frozenset({"update", "config", "summary"})  # records that carry a write_time

_now = time.time
_MIN_INT, _MAX_INT = _rules.MIN_INT, _rules.MAX_INT
# From this step on, log() always takes the checked path. Counting from below it to past MAX_STEP
# one row at a time would take 2**62 calls, so below it the fast path needs no step check.
_GUARDED_STEPS = 2**62


class Run:
    """One tracked run. ``log()`` may be called from several threads: each call's row gets its own
    step, in the order the calls took ``_lock``."""

    def __init__(
        self,
        settings: _settings.Settings,
        *,
        name: str,
        notes: str,
        tags: tuple[str, ...],
        group: str,
        job_type: str,
        config: Config,
        run_dir: Path,
        sender: Sender | None,
        printer: Printer,
        start_time: float,
        step: int = 0,
    ) -> None:
        self._settings = settings
        self._name, self._notes, self._tags = name, notes, tags
        self._group, self._job_type = group, job_type
        self._run_dir = run_dir
        self._sender = sender
        self._printer = printer
        self._start_time = start_time
        self._step = step
        self._pending: dict[str, Any] | None = None  # the row being accumulated with commit=False
        # Guards _step, _pending and the order of rows in the queue (log() from several threads).
        self._lock = threading.Lock()
        # History keys that passed the rule (``_rules.key_problem``): the fast path takes only these.
        self._known: set[str] = set()
        self._dropped = 0
        self._finished = False
        self._ending = False  # _end is running (on some thread)
        self._console: Console | None = None
        self._metrics: _metrics.Metrics | None = None  # set by the first define_metric()
        self._on_finished: list[Callable[[], None]] = []  # run when the run ends finished
        self._last_edit = 0.0  # write_time of the latest edit record (see _emit)
        self.config = config
        self.summary = Summary(self._emit, self._logged_summary)
        if sender is None:  # disabled: every call returns at once
            self._queue = None
            self.log = self._log_disabled  # type: ignore[method-assign]
        else:
            self._queue = sender.queue
            config._bind(self._emit)

    # -- the hot path -------------------------------------------------------------------------------

    def log(self, data: Mapping[str, Any], step: int | None = None, commit: bool | None = None) -> None:
        """Records ``data`` at the current step. Safe to call from several threads.

        ``commit=False`` accumulates into the current row; ``step=s`` moves to step ``s`` (a step below
        the current one is dropped with a warning). Raises TypeError for a non-mapping, a non-str key or
        an unsupported value, and ValueError for what the store would refuse (an empty, overlong or
        reserved key, a NUL, a step or int out of range), naming the key; nothing of that call is
        recorded then.
        """
        # Fast path: a plain dict of keys already checked (``_known``: one set lookup each) to
        # float/int values, committed at the next step. ``_lock`` makes stamping the step and queueing
        # the row one step, so rows from several threads get distinct steps in queue order. No I/O.
        if step is None and commit is None and type(data) is dict:
            known = self._known
            for key, value in data.items():
                if key not in known or (
                    type(value) is not float and (type(value) is not int or not _MIN_INT <= value <= _MAX_INT)
                ):
                    break
            else:
                row = data.copy()
                with self._lock:
                    if self._pending is None:
                        queue = self._queue
                        queue.append((self._step, _now(), row))  # type: ignore[union-attr]
                        self._step += 1
                        # Wakes the sender once per batch, not on every call while it catches up
                        # (Event.set takes a lock); it also wakes by itself every FLUSH_INTERVAL.
                        if len(queue) == BATCH_ROWS:  # type: ignore[arg-type]
                            self._sender.wake.set()  # type: ignore[union-attr]
                        return
        self._log_slow(data, step, commit)

    def _log_slow(self, data: Mapping[str, Any], step: int | None, commit: bool | None) -> None:
        if self._finished:
            self._printer.warn_once("log-after-finish", "log() after finish() is ignored")
            return
        if not isinstance(data, Mapping):
            raise TypeError(f"log() takes a mapping such as a dict, got {type(data).__name__}")
        # Everything is checked before any state changes: a refused call records nothing.
        row: dict[str, Any] = {}
        _values.flatten_into(row, data)
        _values.check_row_size(row)
        if step is not None:
            if isinstance(step, bool):
                raise TypeError("log() step must be an int, got bool")
            step = operator.index(step)
            problem = _rules.step_problem(step)
            if problem is not None:
                raise ValueError(f"log() step {problem}")
            metrics = self._metrics
            step_metric = metrics.step_metric_of(row) if metrics is not None and row else None
            if step_metric is not None:
                # Every key is defined against a step metric: ``step`` is the framework's own step,
                # kept as that metric's value; the row goes at the run's next step, never dropped.
                row.setdefault(step_metric, step)
                step = None
        with self._lock:
            if step is None and self._step > _rules.MAX_STEP:
                raise ValueError("log() has no step left: the last one, 2**63 - 2, is used")
            if step is not None:
                if step < self._step:
                    self._drop(step)
                    return
                if step > self._step:
                    if self._pending is not None:
                        self._commit()
                    self._step = step
                self._merge(row)
                if commit:
                    self._commit()
            else:
                self._merge(row)
                if commit is not False:
                    self._commit()
            metrics = self._metrics
            self._known.update(row if metrics is None else [k for k in row if not metrics.tracks(k)])
            if self._step >= _GUARDED_STEPS:
                # So close to the end of int64 the fast path could count past it: every call checks.
                self.log = self._log_slow_guarded  # type: ignore[method-assign]

    def _log_slow_guarded(
        self, data: Mapping[str, Any], step: int | None = None, commit: bool | None = None
    ) -> None:
        self._log_slow(data, step, commit)

    def _merge(self, row: dict[str, Any]) -> None:
        if self._pending is None:
            self._pending = row
        else:
            self._pending.update(row)

    def _commit(self) -> None:
        """Queues the pending row at the current step. The caller holds ``_lock``."""
        row, self._pending = self._pending or {}, None
        metrics = self._metrics
        if metrics is not None:
            metrics.prepare(row)
        self._queue.append((self._step, _now(), row))  # type: ignore[union-attr]
        self._step += 1
        if metrics is not None:
            record = metrics.due()
            if record is not None:
                self._emit(record)

    def _drop(self, step: int) -> None:
        """Counts a row below the current step. The caller holds ``_lock``."""
        self._dropped += 1
        if self._dropped == 1:
            self._printer.warn(
                f"log() at step {step} is below the current step {self._step}; the data is dropped "
                "(steps only move forward; later drops are counted and reported at finish)"
            )

    def define_metric(
        self,
        name: str,
        step_metric: str | None = None,
        step_sync: bool | None = None,
        hidden: bool | None = None,
        summary: str | None = None,
        goal: str | None = None,
        overwrite: bool | None = None,
    ) -> _metrics.MetricDefinition:
        """Customises how keys matching ``name`` (a key, or a glob such as ``"val/*"``) are summarised
        and stepped: ``summary`` "min", "max", "mean", "first", "last", "best" (with ``goal``),
        "none", or several joined by commas; ``step_metric`` a key logged as these keys' x axis
        (``step_sync``: filled in from its last value when a row lacks it; and ``log(d, step=s)``
        of such keys keeps ``s`` as its value instead of dropping a step that goes backwards).
        The definition is stored with the run (``ApiRun.metric_definitions``)."""
        definition = _metrics.parse(name, step_metric, step_sync, hidden, summary, goal)
        with self._lock:
            metrics = self._metrics
            if metrics is None:
                metrics = _metrics.Metrics(self._emit)
            metrics.add(definition)
            self._metrics = metrics
            # Keys it covers leave the fast path from now on.
            self._known = {k for k in self._known if not metrics.tracks(k)}
            self._emit(metrics.stored())
        return definition

    def _restore_metrics(
        self, definitions: list[_metrics.MetricDefinition], rows: Iterable[dict[str, Any]]
    ) -> None:
        """A resumed run's definitions, as its config stored them, and the aggregates of the rows it
        logged before (so that a minimum spans the whole run). Called before the run logs."""
        metrics = _metrics.Metrics(self._emit)
        for definition in definitions:
            metrics.add(definition)
        for row in rows:
            metrics.prepare({k: v for k, v in row.items() if not k.startswith("_")})
        # Left due: the first row committed sends the whole run's summaries (an interrupted run
        # may not have sent its last ones).
        self._metrics = metrics

    def save(
        self,
        glob_str: str | os.PathLike[str],
        base_path: str | os.PathLike[str] | None = None,
        policy: str = "live",
    ) -> None:
        """Stores files matching ``glob_str`` with the run, named relative to ``base_path`` (default:
        the pattern's directory). ``policy``: "now", "end" or "live" (now, on every change, and at
        the end). Files are read and sent by the background thread, never on this one."""
        if policy not in _files.POLICIES:
            raise ValueError(f"save() policy must be one of {', '.join(_files.POLICIES)}; got {policy!r}")
        pattern = os.path.abspath(os.fspath(glob_str))
        base = os.path.abspath(os.fspath(base_path)) if base_path is not None else os.path.dirname(pattern)
        if not pattern.startswith(base.rstrip(os.sep) + os.sep):
            raise ValueError(f"save() pattern {os.fspath(glob_str)!r} is not inside base_path {base!r}")
        if self._queue is not None and not self._finished:
            self._queue.append(_files.SaveRequest(pattern, base, policy))

    def _disown(self) -> None:
        """In a forked child: this process does not own the run; log() warns once and drops."""
        self._finished = True
        self._sender = None
        self._queue = None
        self.log = self._log_in_child  # type: ignore[method-assign]
        if self._console is not None:
            self._console.disown()
            self._console = None

    def _log_in_child(
        self, data: Mapping[str, Any], step: int | None = None, commit: bool | None = None
    ) -> None:
        self._printer.warn_once("fork", "log() in a forked child process is ignored; log from the parent")

    def _log_disabled(
        self, data: Mapping[str, Any], step: int | None = None, commit: bool | None = None
    ) -> None:
        return None

    # -- records ------------------------------------------------------------------------------------

    def _emit(self, record: records_pb2.Record) -> None:
        if self._queue is not None and not self._finished:
            kind = record.WhichOneof("kind")
            if kind in _EDITS:
                # When the change was made: the store lets the later write of a field win, whether
                # it came from here or from the API, however late this record reaches it. Never
                # earlier than this run's previous edit, so a clock stepped back cannot reorder them.
                self._last_edit = max(_now(), self._last_edit)
                getattr(record, kind).write_time = self._last_edit
            self._queue.append(record)

    def _logged_summary(self) -> dict[str, Any]:
        if self._sender is None:
            return {}
        with self._sender.lock:
            values = dict(self._sender.last_values)
            queued = list(self._queue or ())
        for item in queued:
            if type(item) is tuple:
                values.update(item[2])
        with self._lock:
            if self._pending:
                values.update(self._pending)
            if self._metrics is not None:
                self._metrics.overlay(values)
        return values

    # -- attributes ---------------------------------------------------------------------------------

    @property
    def id(self) -> str:
        return self._settings.run_id

    @property
    def entity(self) -> str:
        return self._settings.entity

    @property
    def project(self) -> str:
        return self._settings.project

    @property
    def path(self) -> str:
        return f"{self.entity}/{self.project}/{self.id}"

    @property
    def url(self) -> str:
        """The run's web page, once the daemon knows the store server's address (else empty)."""
        if self._sender is None:
            return ""
        return self._sender.transport.url

    @property
    def dir(self) -> str:
        return str(self._run_dir)

    @property
    def mode(self) -> str:
        return self._settings.mode

    @property
    def step(self) -> int:
        return self._step

    @property
    def start_time(self) -> float:
        return self._start_time

    @property
    def name(self) -> str:
        return self._name

    @name.setter
    def name(self, value: str) -> None:
        self._name = _settings.validate_name(value)
        self._emit(records_pb2.Record(update=records_pb2.RunUpdate(name=self._name)))

    @property
    def notes(self) -> str:
        return self._notes

    @notes.setter
    def notes(self, value: str) -> None:
        self._notes = _settings.validate_text("notes", value, _settings.MAX_NOTES)
        self._emit(records_pb2.Record(update=records_pb2.RunUpdate(notes=self._notes)))

    @property
    def tags(self) -> tuple[str, ...]:
        return self._tags

    @tags.setter
    def tags(self, value: tuple[str, ...] | list[str]) -> None:
        self._tags = _settings.validate_tags(value)
        tags = records_pb2.StringList(values=self._tags)
        self._emit(records_pb2.Record(update=records_pb2.RunUpdate(tags=tags)))

    @property
    def group(self) -> str:
        return self._group

    @property
    def job_type(self) -> str:
        return self._job_type

    # -- the end ------------------------------------------------------------------------------------

    def finish(self, exit_code: int | None = None) -> None:
        """Ends the run: ``finished`` for exit code 0 or None, ``failed`` otherwise. Idempotent."""
        state = FINISHED if not exit_code else FAILED
        self._end(state, exit_code or 0)

    def _end(
        self, state: int, exit_code: int, reason: str = "", timeout: float = 60.0, *, prompt: bool = False
    ) -> None:
        """Ends the run once, within about ``timeout`` seconds (``prompt``: the process is being
        terminated, so no wait for the daemon's metadata). Never raises into the training script:
        a failure here becomes one warning (the daemon then records the run as crashed)."""
        if self._finished or self._ending:
            return
        from tracklog import _lifecycle  # the current-run registry; imported late to avoid a cycle

        self._ending = True
        with _lifecycle.ending(self):  # a SIGTERM meanwhile waits for this end, then ends the process
            try:
                self._end_run(state, exit_code, reason, timeout, prompt)
            except Exception as exc:
                self._finished = True
                self._printer.warn(f"could not end the run ({exc!r}); it may be recorded as crashed")
            finally:
                self._ending = False

    def _end_run(self, state: int, exit_code: int, reason: str, timeout: float, prompt: bool) -> None:
        # Bounded: a SIGTERM ends the run on another thread while the interrupted main thread may
        # hold the lock (inside log()); then the row being accumulated is left out, not waited for.
        # The fast path of log() takes only keys in ``_known``: emptied here (under the lock that
        # orders rows), every later log() goes the slow way, which says the run has finished.
        if self._lock.acquire(timeout=min(timeout, 2.0)):
            try:
                self._known.clear()
                if self._pending is not None:
                    self._commit()
                if self._metrics is not None:
                    record = self._metrics.flush()  # the defined summaries, before the Finish
                    if record is not None:
                        self._emit(record)
            finally:
                self._lock.release()
        else:
            self._known.clear()
        from tracklog import _lifecycle  # the current-run registry; imported late to avoid a cycle

        _lifecycle.forget(self)
        sender = self._sender
        if sender is None:
            self._finished = True
            return
        if self._console is not None and not prompt:
            # Its last lines go into the queue before the end. Not when terminated: the signal
            # handler may have interrupted a print() holding the console's lock.
            self._console.stop()
            self._console = None
        end = records_pb2.Finish(state=state, exit_code=exit_code, end_time=_now(), reason=reason)  # type: ignore[arg-type]
        self._finished = True
        # The sender queues END and the Finish itself, behind everything else and after its last
        # periodic tick: nothing can follow the Finish.
        durable = sender.close(timeout=timeout, closing=(END, records_pb2.Record(finish=end)), prompt=prompt)
        self._printer.closing(self, STATE_NAMES.get(state, "finished"), durable, self._dropped)
        if state == FINISHED:
            for callback in self._on_finished:
                callback()

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        from tracklog import _lifecycle

        state, code = _lifecycle.outcome(exc)
        self._end(state, code, reason=_lifecycle.describe(exc))

    def __repr__(self) -> str:
        return f"<tracklog.Run {self.path} name={self._name!r}>"

    def _repr_html_(self) -> str:
        """Jupyter's display of the run: its name, linked to its page, path, state and summary."""
        from tracklog import _notebook  # a few string functions; imports nothing

        state = "ended" if self._finished else "running"
        if self.mode != "online":
            state += f", {self.mode}"
        summary = self.summary.as_dict()
        return _notebook.run_html(
            kind="Run", name=self._name, path=self.path, state=state, url=self.url, summary=summary
        )
