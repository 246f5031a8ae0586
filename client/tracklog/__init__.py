"""tracklog: experiment tracking for machine-learning runs.

``run = tracklog.init(project=...)``, ``run.log({...})`` in the training loop, ``run.finish()``.
Records go to a per-machine daemon that keeps them durably and syncs them to a store server; read
them back with ``tracklog.Api()``.
"""

from __future__ import annotations

from tracklog._api import Api
from tracklog._errors import CommError, NotFoundError, TracklogError, UsageError
from tracklog._init import finish, init
from tracklog._run import Run

__version__ = "0.1.0"

run: Run | None = None
"""The current run between ``init()`` and its end."""

__all__ = [
    "Api",
    "CommError",
    "NotFoundError",
    "Run",
    "TracklogError",
    "UsageError",
    "__version__",
    "finish",
    "init",
    "run",
]
