"""Module-level calls on the current run, as wandb's: ``tracklog.log``, ``config``, ``summary``,
``save``, ``define_metric`` (``finish`` lives in ``_init``).

Each looks the current run up at call time, so ``tracklog.config`` taken before ``init()`` reaches
the run started later. With no run they raise UsageError naming ``tracklog.init()``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from tracklog import _lifecycle
from tracklog._errors import UsageError

if TYPE_CHECKING:
    import argparse

    from tracklog._config import Config, Summary
    from tracklog._metrics import MetricDefinition
    from tracklog._run import Run


def _current(what: str) -> Run:
    run = _lifecycle.current()
    if run is None:
        raise UsageError(f"tracklog.{what} needs a run: call tracklog.init() first")
    return run


def log(data: Mapping[str, Any], step: int | None = None, commit: bool | None = None) -> None:
    """``run.log`` on the current run."""
    _current("log()").log(data, step=step, commit=commit)


def save(
    glob_str: str | os.PathLike[str], base_path: str | os.PathLike[str] | None = None, policy: str = "live"
) -> None:
    """``run.save`` on the current run."""
    _current("save()").save(glob_str, base_path=base_path, policy=policy)


def define_metric(
    name: str,
    step_metric: str | None = None,
    step_sync: bool | None = None,
    hidden: bool | None = None,
    summary: str | None = None,
    goal: str | None = None,
    overwrite: bool | None = None,
) -> MetricDefinition:
    """``run.define_metric`` on the current run."""
    return _current("define_metric()").define_metric(
        name, step_metric=step_metric, step_sync=step_sync, hidden=hidden, summary=summary, goal=goal
    )


class _CurrentConfig:
    """``tracklog.config``: the current run's config (``tracklog.config.lr``, ``["lr"]``, update)."""

    __slots__ = ()

    @staticmethod
    def _config() -> Config:
        return _current("config").config

    def update(
        self,
        items: Mapping[str, Any] | argparse.Namespace | None = None,
        allow_val_change: bool | None = None,
        **kwargs: Any,
    ) -> None:
        self._config().update(items, allow_val_change=allow_val_change, **kwargs)

    def setdefaults(self, items: Mapping[str, Any]) -> None:
        self._config().setdefaults(items)

    def as_dict(self) -> dict[str, Any]:
        return self._config().as_dict()

    def get(self, key: str, default: Any = None) -> Any:
        return self._config().get(key, default)

    def keys(self) -> Any:
        return self._config().keys()

    def items(self) -> Any:
        return self._config().items()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._config(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._config(), name, value)

    def __getitem__(self, key: str) -> Any:
        return self._config()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._config()[key] = value

    def __contains__(self, key: object) -> bool:
        return key in self._config()

    def __iter__(self) -> Iterator[str]:
        return iter(self._config())

    def __len__(self) -> int:
        return len(self._config())

    def __repr__(self) -> str:
        run = _lifecycle.current()
        return repr(run.config) if run is not None else "<tracklog.config: no run; call tracklog.init()>"


class _CurrentSummary:
    """``tracklog.summary``: the current run's summary."""

    __slots__ = ()

    @staticmethod
    def _summary() -> Summary:
        return _current("summary").summary

    def update(self, items: Mapping[str, Any]) -> None:
        self._summary().update(items)

    def as_dict(self) -> dict[str, Any]:
        return self._summary().as_dict()

    def get(self, key: str, default: Any = None) -> Any:
        return self._summary().get(key, default)

    def keys(self) -> Any:
        return self._summary().keys()

    def items(self) -> Any:
        return self._summary().items()

    def __getitem__(self, key: str) -> Any:
        return self._summary()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._summary()[key] = value

    def __delitem__(self, key: str) -> None:
        del self._summary()[key]

    def __contains__(self, key: object) -> bool:
        return key in self._summary()

    def __iter__(self) -> Iterator[str]:
        return iter(self._summary())

    def __len__(self) -> int:
        return len(self._summary())

    def __repr__(self) -> str:
        run = _lifecycle.current()
        return repr(run.summary) if run is not None else "<tracklog.summary: no run; call tracklog.init()>"


config = _CurrentConfig()
summary = _CurrentSummary()
