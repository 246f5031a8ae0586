"""What the integrations share: finding or starting the run, and config values a run accepts.

Imports nothing beyond the standard library and tracklog, so each integration pays only for its own
framework.
"""

from __future__ import annotations

import enum
import inspect
import os
from collections.abc import Mapping
from typing import Any

import tracklog

MAX_TEXT = 1000  # characters kept of a value stored as its text (a repr can be a whole model)


def start_run(run: tracklog.Run | None, init_kwargs: Mapping[str, Any]) -> tuple[tracklog.Run, bool]:
    """The run to log to, and whether the integration started it.

    ``run`` if given, else the process's current run (``tracklog.run``, as a script that called
    ``tracklog.init()`` itself expects), else a new one from ``tracklog.init(**init_kwargs)``.
    """
    if run is not None:
        return run, False
    if tracklog.run is not None:
        return tracklog.run, False
    return tracklog.init(**init_kwargs), True


def flat_config(items: Mapping[Any, Any], prefix: str = "") -> dict[str, Any]:
    """``items`` as flat config: nested mappings become ``a/b`` keys, every value JSON-able.

    Numbers, strings, booleans and None stay as they are; lists and tuples become lists of such
    values; enums their value; classes and functions their qualified name; paths their text; numpy
    and torch scalars a number. Anything else is kept as its text, cut at ``MAX_TEXT`` characters,
    so a framework's object in its arguments never makes ``config.update`` raise.
    """
    out: dict[str, Any] = {}
    for key, value in items.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flat_config(value, name + "/"))
        else:
            out[name] = config_value(value)
    return out


def config_value(value: Any) -> Any:
    """One JSON-able leaf value (see ``flat_config``)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value  # NaN and Inf included: config keeps them
    if isinstance(value, enum.Enum):
        return config_value(value.value)
    if isinstance(value, list | tuple):
        return [config_value(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if inspect.isclass(value) or inspect.isroutine(value):
        module, name = getattr(value, "__module__", None), getattr(value, "__qualname__", None)
        if name:
            return f"{module}.{name}" if module else str(name)
    item = getattr(value, "item", None)
    if callable(item) and type(value).__module__.startswith(("numpy", "torch")):
        try:
            return config_value(item())
        except (TypeError, ValueError, RuntimeError):  # an array or tensor of more than one element
            pass
    return str(value)[:MAX_TEXT]
