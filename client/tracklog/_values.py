"""Validation and normalisation of what ``Run.log`` and ``config`` accept (the slow path).

``Run.log`` handles the common case (str keys, float/int values) inline; anything else comes here:
nested mappings flatten to ``a/b`` keys, numpy and torch scalars become Python numbers, and values of
unsupported types raise TypeError naming the key and the type before anything is recorded. Keys and
int values follow the rule the store applies (``_rules``): what passes here, the store keeps.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from tracklog import _rules
from tracklog._history import dumps

MAX_KEY = _rules.MAX_KEY
MAX_TEXT = 64 * 1024  # a str value, or the JSON of a list value
_JSON_SCALARS = (str, bool, type(None))


def _scalar(value: Any) -> Any:
    """A numpy/torch scalar (or 0-d array / 1-element tensor) as a Python number, else ``value``."""
    if type(value).__module__.startswith(("numpy", "torch")) and hasattr(value, "item"):
        # torch tensors count elements with numel(); numpy arrays and scalars have a size attribute.
        numel = value.numel() if hasattr(value, "numel") else getattr(value, "size", None)
        if numel == 1:
            return value.item()
    return value


def check_key(key: object, what: str = "log()") -> str:
    """``key`` if it is a valid history key, else TypeError/ValueError naming it."""
    if not isinstance(key, str):
        raise TypeError(f"{what} keys must be str; got key {key!r} of type {type(key).__name__}")
    problem = _rules.key_problem(key)
    if problem is not None:
        raise ValueError(f"{what} key {_rules.short(key)} {problem}")
    return str(key)  # a str subclass (numpy.str_) becomes a plain str


def normalise(key: str, value: Any) -> Any:
    """A loggable form of ``value`` or TypeError naming ``key`` and the type."""
    kind = type(value)
    if kind is float or kind is bool or value is None:
        return value
    if kind is int:
        problem = _rules.int_problem(value)
        if problem is not None:
            raise ValueError(f"log() value for key {_rules.short(key)} {problem}")
        return value
    if kind is str:
        if len(value) > MAX_TEXT:
            raise ValueError(
                f"log() value for key {key!r} is {len(value)} characters; the limit is {MAX_TEXT}"
            )
        return value
    converted = _scalar(value)
    if converted is not value:
        return normalise(key, converted)
    if isinstance(value, float | int):  # subclasses such as numpy.float64 or IntEnum
        return float(value) if isinstance(value, float) else normalise(key, int(value))
    if isinstance(value, list | tuple):
        items = [normalise(f"{key}[{i}]", v) for i, v in enumerate(value)]
        if any(isinstance(v, list | dict) for v in items):
            raise TypeError(
                f"log() value for key {key!r}: only flat lists of numbers and strings are supported"
            )
        size = len(json.dumps(items))
        if size > MAX_TEXT:
            raise ValueError(
                f"log() value for key {key!r} is a list of {len(items)} items, {size} characters as "
                f"JSON; the limit is {MAX_TEXT}"
            )
        return items
    raise TypeError(
        f"log() value for key {key!r} has unsupported type {kind.__module__}.{kind.__qualname__}"
        if kind.__module__ != "builtins"
        else f"log() value for key {key!r} has unsupported type {kind.__name__}"
    )


def check_row_size(row: Mapping[str, Any]) -> None:
    """ValueError naming the largest value if the row's str and list values take over
    ``MAX_ROW_BYTES`` as JSON text. A str character takes at most 12 bytes there (an escaped
    surrogate pair), so a str is measured exactly only when that bound is over the limit."""
    bound = 0
    for value in row.values():
        if type(value) is str:
            bound += 12 * len(value) + 2
        elif type(value) is list:
            bound += len(dumps(value))
    if bound <= _rules.MAX_ROW_BYTES:
        return
    sizes = {k: len(dumps(v)) for k, v in row.items() if type(v) is str or type(v) is list}
    total = sum(sizes.values())
    if total > _rules.MAX_ROW_BYTES:
        largest = max(sizes, key=sizes.__getitem__)
        raise ValueError(
            f"log() row is {total} bytes of JSON text (the largest, key {_rules.short(largest)}, "
            f"{sizes[largest]}); the limit is {_rules.MAX_ROW_BYTES}"
        )


def flatten_into(out: dict[str, Any], data: Mapping[Any, Any], prefix: str = "", what: str = "log()") -> None:
    """Validates ``data`` and writes its flattened, normalised items into ``out``. Each flattened
    key (``a/b``) is checked whole, since that is the key the store receives."""
    for key, value in data.items():
        if not isinstance(key, str):
            check_key(key, what)  # raises TypeError naming it
        if isinstance(value, Mapping):
            nested = f"{prefix}{key}/"
            if len(nested) >= _rules.MAX_KEY:
                # Every key below would be over the limit: refuse before recursing, so that a very
                # deep or cyclic dict is a clear ValueError, not a RecursionError.
                raise ValueError(
                    f"{what} key {_rules.short(nested)}... is nested too deep: a flattened key "
                    f"would be over {_rules.MAX_KEY} characters"
                )
            flatten_into(out, value, nested, what)
        else:
            name = check_key(prefix + key, what)
            if name in out:  # "a/b" given as such and through {"a": {"b": ...}}: which one is meant?
                raise ValueError(
                    f"{what} key {_rules.short(name)} is given twice in one call (as a flattened key and "
                    "through nested dicts); give it once"
                )
            out[name] = normalise(name, value)


def check_config_key(key: object) -> str:
    """A config key (at any depth) as a str: no NUL, no lone surrogate; else an error naming it."""
    if not isinstance(key, str):
        raise TypeError(f"config keys must be str; got key {key!r} of type {type(key).__name__}")
    problem = _rules.text_problem(key)
    if problem is not None:
        raise ValueError(f"config key {_rules.short(key)} {problem}")
    return str(key)


def config_value(key: str, value: Any) -> Any:
    """A JSON-encodable form of a config value, or TypeError naming the key."""
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            name = k if isinstance(k, str) else str(k)  # JSON object keys are strings
            out[check_config_key(name)] = config_value(f"{key}.{name}", v)
        return out
    if isinstance(value, list | tuple):
        return [config_value(f"{key}[{i}]", v) for i, v in enumerate(value)]
    value = _scalar(value)
    if isinstance(value, int) and not isinstance(value, bool):
        problem = _rules.int_problem(value)
        if problem is not None:
            raise ValueError(f"config value for key {_rules.short(key)} {problem}")
    if value is None or isinstance(value, str | bool | int | float):
        return value  # NaN and Infinity included: the JSON encoding keeps them
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"config value for key {key!r} has unsupported type {type(value).__name__}")
