"""The one rule for what a run may hold: history keys, steps, int values and names. Stdlib only.

The SDK checks it at the call (``log()``, config, summary, name, notes, tags, group, job type), so that
a mistake raises where the user can fix it; the store server imports the same functions to check what
it ingests, so that whatever ``log()`` accepts the store keeps. Each ``*_problem`` function returns
why a value breaks the rule (a phrase to follow its name, e.g. "is empty"), or None when it is valid;
callers raise their own error type with it.

What the rule guards against, and why:

* History keys are 1-``MAX_KEY`` characters: at most 4 bytes each in UTF-8, so an index entry of the
  store's ``(run, key, step)`` index stays under PostgreSQL's b-tree limit (about 2.7 kB).
* ``_step``, ``_timestamp`` and ``_runtime`` are reserved: every row has them (the store keeps the row
  times as key ``_timestamp``, and readers add ``_step`` and ``_runtime``).
* Keys and names hold no NUL character (PostgreSQL's text types cannot store it) and no lone
  surrogate (not encodable as UTF-8, so protobuf cannot send it).
* Steps are 0 to ``MAX_STEP`` (2**63 - 2): they travel as int64, and the store reads rows below an
  exclusive upper bound that is an int64 too.
* int values are -(2**63) to 2**64 - 1 (what int64 and uint64 hold). Beyond +-2**53 they travel as
  JSON text, which Python reads and writes only up to a few thousand digits.

Strings inside values (a logged str, a config value) may hold any character: they travel as JSON
text with every non-ASCII character escaped, and come back exactly. The config and the explicit
summary, each merged, take at most ``MAX_DOC`` characters as JSON. A row's str and list values
take at most ``MAX_ROW_BYTES`` as JSON text, so that any row fits one spool frame (64 MiB), which is
also the largest record the store takes; the SDK cuts batches of such rows to fit.
"""

from __future__ import annotations

MAX_KEY = 256  # characters of a history (or summary) key
MAX_STEP = 2**63 - 2
MIN_INT = -(2**63)
MAX_INT = 2**64 - 1
RESERVED_KEYS = frozenset({"_step", "_timestamp", "_runtime"})
MAX_ROW_BYTES = 16 * 1024 * 1024  # JSON text of one row's str and list values
MAX_DOC = 16 * 1024 * 1024  # characters of the config, or of the explicit summary, as JSON (merged)


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored as a key or name: a NUL or a lone surrogate; else None."""
    if "\x00" in text:
        return f"contains a NUL character at position {text.index(chr(0))}"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            return f"contains a lone surrogate at position {exc.start} (not encodable as UTF-8)"
    return None


def key_problem(key: str) -> str | None:
    """Why ``key`` cannot be a history key, or None."""
    if not key:
        return "is empty"
    if len(key) > MAX_KEY:
        return f"is {len(key)} characters; the limit is {MAX_KEY}"
    if key in RESERVED_KEYS:
        return f"is reserved ({', '.join(sorted(RESERVED_KEYS))} name every row)"
    return text_problem(key)


def step_problem(step: int) -> str | None:
    """Why ``step`` cannot be a history step, or None."""
    if step < 0:
        return f"must be >= 0, got {step}"
    if step > MAX_STEP:
        return f"must be at most 2**63 - 2, got {step}"
    return None


def int_problem(value: int) -> str | None:
    """Why the int ``value`` cannot be kept exactly, or None."""
    if MIN_INT <= value <= MAX_INT:
        return None
    return f"is an int of {value.bit_length()} bits; the limit is -(2**63) to 2**64 - 1"


def short(text: str, limit: int = 40) -> str:
    """``text`` cut for an error message (a 2,000-character key is named by its start)."""
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}..."
