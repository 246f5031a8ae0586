"""``tracklog.Settings``: the settings a script passes to ``init(settings=...)``, as wandb's.

The fields are those tracklog has; wandb's other settings (``start_method``, ``x_disable_stats``,
...) are accepted and kept in ``unsupported``, so a script written for wandb runs unchanged, and
``init()`` names them once in a warning. Arguments given to ``init()`` itself win over these, and
these over the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any


@dataclass(init=False)
class Settings:
    mode: str | None = None
    entity: str | None = None
    project: str | None = None
    run_id: str | None = None
    run_name: str | None = None
    run_notes: str | None = None
    run_tags: Sequence[str] | None = None
    run_group: str | None = None
    run_job_type: str | None = None
    root_dir: str | os.PathLike[str] | None = None
    resume: str | bool | None = None
    reinit: str | bool | None = None
    save_code: bool | None = None
    allow_val_change: bool | None = None
    silent: bool | None = None
    console: str | None = None  # "off" stops console capture; wandb's other values mean on
    server: str | None = None  # host:port of a store server (what TRACKLOG_SERVER sets)
    unsupported: dict[str, Any] = field(default_factory=dict)

    def __init__(self, **values: Any) -> None:
        known = {f.name for f in fields(self)} - {"unsupported"}
        for name in known:
            setattr(self, name, None)
        self.unsupported = {}
        for name, value in values.items():
            if name in known:
                setattr(self, name, value)
            else:
                self.unsupported[name] = value


def coerce(value: Settings | Mapping[str, Any] | None) -> Settings:
    """``init(settings=...)`` as a Settings: a Settings, a dict of the same names, or None."""
    if value is None:
        return Settings()
    if isinstance(value, Settings):
        return value
    if isinstance(value, Mapping):
        return Settings(**{str(k): v for k, v in value.items()})
    # A wandb.Settings (pydantic) or any object with the fields as attributes: take what is set.
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        items = dump(exclude_unset=True)
        if isinstance(items, Mapping):
            return Settings(**{str(k): v for k, v in items.items()})
    raise TypeError(f"init() settings must be a tracklog.Settings or a dict, got {type(value).__name__}")
