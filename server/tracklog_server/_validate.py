"""Checks shared by the record decoders: text lengths, keys, JSON objects, times.

Each raises :class:`InvalidInputError` with a reason that names what was wrong, so the sender's
error says which field to fix. What the SDK checks too (history keys, steps, the characters of names
and keys) comes from the one rule both share, ``tracklog._rules``.
"""

from __future__ import annotations

import json
import math
from typing import Any

from tracklog import _rules

from ._errors import InvalidInputError
from ._limits import MAX_JSON_DOC, MAX_KEY_BYTES, MAX_SHORT_TEXT


def loads_object(text: str, what: str) -> dict[str, Any]:
    """A JSON object (NaN and Infinity allowed), or InvalidInputError naming ``what``."""
    if len(text) > MAX_JSON_DOC:
        raise InvalidInputError(f"{what} is {len(text)} characters; the limit is {MAX_JSON_DOC}")
    if not text:
        return {}
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InvalidInputError(f"{what} is not valid JSON") from exc
    if not isinstance(value, dict):
        raise InvalidInputError(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def check_write_time(value: float) -> float:
    """A record's write_time (unix seconds; 0: not given): finite and not negative."""
    if not math.isfinite(value) or value < 0:
        raise InvalidInputError(f"write_time must be a finite, non-negative unix time, not {value!r}")
    return value


def check_text(value: str, what: str, limit: int = MAX_SHORT_TEXT) -> str:
    """A name, tag, note, host or path kept in a text column: bounded, and without the characters
    the rule refuses (PostgreSQL's text cannot hold a NUL)."""
    if len(value) > limit:
        raise InvalidInputError(f"{what} is {len(value)} characters; the limit is {limit}")
    problem = _rules.text_problem(value)
    if problem is not None:
        raise InvalidInputError(f"{what} {_rules.short(value)} {problem}")
    return value


def check_history_key(key: str) -> str:
    """A logged key, by the SDK's own rule (``tracklog._rules.key_problem``)."""
    problem = _rules.key_problem(key)
    if problem is not None:
        raise InvalidInputError(f"history key {_rules.short(key)} {problem}")
    return key


def check_key(value: str, what: str) -> str:
    """A non-empty name stored in an index (a system metric key, a file name): bounded in bytes,
    because index entries are (PostgreSQL's b-tree refuses entries over ~2.7 kB)."""
    if not value:
        raise InvalidInputError(f"{what} is empty")
    problem = _rules.text_problem(value)
    if problem is not None:
        raise InvalidInputError(f"{what} {_rules.short(value)} {problem}")
    size = len(value.encode("utf-8"))
    if size > MAX_KEY_BYTES:
        raise InvalidInputError(f"{what} is {size} bytes in UTF-8; the limit is {MAX_KEY_BYTES}")
    return value


def check_time(value: float, what: str) -> float:
    """A finite, non-negative number of seconds (a unix time or a duration)."""
    if not math.isfinite(value) or value < 0:
        raise InvalidInputError(f"{what} must be a finite, non-negative number of seconds")
    return value
