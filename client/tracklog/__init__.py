"""tracklog: experiment tracking for machine-learning runs.

``run = tracklog.init(project=...)``, ``run.log({...})`` in the training loop, ``run.finish()``.
Records go to a per-machine daemon that keeps them durably and syncs them to a store server; read
them back with ``tracklog.Api()``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tracklog._errors import CommError, NotFoundError, TracklogError, UsageError
from tracklog._init import finish, init
from tracklog._metrics import MetricDefinition
from tracklog._module_api import config, define_metric, log, save, summary
from tracklog._run import Run
from tracklog._user_settings import Settings

if TYPE_CHECKING:
    from tracklog._api import Api

__version__ = "0.1.0"

run: Run | None = None
"""The current run between ``init()`` and its end."""


def __getattr__(name: str) -> Any:
    # ``Api`` (the query client, its store stubs and their imports) loads on first use: a training
    # script that only logs never pays for it in ``import tracklog``.
    if name == "Api":
        from tracklog._api import Api

        globals()["Api"] = Api
        return Api
    raise AttributeError(f"module 'tracklog' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), "Api"})


__all__ = [
    "Api",
    "CommError",
    "MetricDefinition",
    "NotFoundError",
    "Run",
    "Settings",
    "TracklogError",
    "UsageError",
    "__version__",
    "config",
    "define_metric",
    "finish",
    "init",
    "log",
    "run",
    "save",
    "summary",
]
