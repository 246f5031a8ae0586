"""Terminal lines: ``tracklog: ...`` on stderr, as a wandb user expects them."""

from __future__ import annotations

import math
import os
import sys
from typing import TYPE_CHECKING, Any, TextIO

from tracklog._sparkline import sparkline

if TYPE_CHECKING:
    from tracklog._run import Run

PREFIX = "tracklog:"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return repr(value) if not math.isfinite(value) else f"{value:.5g}"
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def relative(path: str) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return rel if not rel.startswith("..") else path


class Printer:
    def __init__(self, stream: TextIO | None = None, *, quiet: bool = False) -> None:
        self._stream = stream
        self._quiet = quiet
        self._once: set[str] = set()

    def _write(self, text: str) -> None:
        stream = self._stream or sys.stderr
        try:
            stream.write(f"{PREFIX} {text}\n" if text else f"{PREFIX}\n")
            stream.flush()
        except (OSError, ValueError):  # a closed stderr must not break the training loop
            pass

    def line(self, text: str = "") -> None:
        if not self._quiet:
            self._write(text)

    def warn(self, text: str) -> None:
        self._write(f"WARNING {text}")

    def warn_once(self, key: str, text: str) -> None:
        if key not in self._once:
            self._once.add(key)
            self.warn(text)

    def opening(self, run: Run) -> None:
        if run.mode == "offline":
            self.line(f"Tracking run {run.name} offline ({run.path})")
            self.line(f"Run data is saved locally in {relative(run.dir)}")
            self.line(f"Run `tracklog sync {relative(run.dir)}` to send it to a server")
            return
        self.line(f"Tracking run {run.name} ({run.path})")
        if run.url:
            project = project_url(run.url)
            if project:
                self.line(f"View project at {project}")
            self.line(f"View run at {run.url}")
        self.line(f"Run data is saved locally in {relative(run.dir)}")

    def closing(self, run: Run, state: str, durable: bool, dropped: int) -> None:
        sender = run._sender
        if sender is None:
            return
        with sender.lock:
            series = {key: list(s.values) for key, s in sender.series.items()}
        summary = run.summary.as_dict()
        if dropped > 1:  # the first drop was already reported when it happened
            self.warn(f"{dropped} log() calls in all had a step below the current step and were dropped")
        if not durable:
            self.warn(
                f"some data of run {run.path} could not be handed to the tracklog daemon; "
                f"it was kept where possible in {relative(run.dir)} (see `tracklog sync`)"
            )
        history = {k: sparkline(v) for k, v in sorted(series.items()) if not k.startswith("_")}
        history = {k: v for k, v in history.items() if v}
        if history:
            self.line()
            self.line("Run history:")
            width = max(map(len, history))
            for key, spark in history.items():
                self.line(f"{key:>{width}} {spark}")
        shown = {k: v for k, v in sorted(summary.items()) if not k.startswith("_")}
        if shown:
            self.line()
            self.line("Run summary:")
            width = max(map(len, shown))
            for key, value in shown.items():
                self.line(f"{key:>{width}} {_fmt(value)}")
        self.line()
        if run.mode == "offline":
            self.line(f"Run {run.name} ({state}) is saved offline; send it with:")
            self.line(f"tracklog sync {relative(run.dir)}")
        elif run.url:
            self.line(f"View run {run.name} ({state}) at: {run.url}")
        else:
            self.line(f"Run {run.name} ({state}): {run.path}")
        self.line(f"Find logs at: {relative(run.dir)}")


def project_url(run_url: str) -> str:
    """The project's page for a run's page ``.../<entity>/<project>/runs/<id>[?query]`` (a query such
    as the local store's token is kept); "" when the URL has another shape."""
    base, sep, query = run_url.partition("?")
    head, runs, _ = base.rpartition("/runs/")
    return f"{head}{sep}{query}" if runs and head else ""
