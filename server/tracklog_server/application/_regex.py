"""Which ``$regex`` patterns a filter may use: a subset that Python's ``re`` (SQLite's REGEXP here)
and PostgreSQL's ``~`` read alike, without the shapes that backtrack without bound.

Python's parser reads the pattern (so a malformed one is refused with Python's own reason), then
its tree is walked against a list of allowed constructs: literals, ``.``, classes (``[a-z]``,
``\\d``, ``\\w``, ``\\s`` and their negations), groups, alternation, anchors ``^ $ \\A \\Z`` and
quantifiers up to ``{255}``. Refused: back-references, look-arounds, ``\\b`` (PostgreSQL reads it
as a backspace), inline flags, and repetition of anything that can itself repeat or branch, such as
``(a+)+`` or ``(a|aa)*``: the classic regex bombs. The store still bounds the time a query takes
(see ``storage._sql_search``).
"""

from __future__ import annotations

import importlib
import re
import sys
from typing import Any

from tracklog_server._errors import InvalidInputError

# The stdlib's own parser, exactly what ``re`` compiles: ``re._parser`` since 3.11 (the old names
# warn there), ``sre_parse`` on 3.10. Untyped either way (no stubs for the new names).
_NEW_NAMES = sys.version_info >= (3, 11)
sre_constants: Any = importlib.import_module("re._constants" if _NEW_NAMES else "sre_constants")
sre_parse: Any = importlib.import_module("re._parser" if _NEW_NAMES else "sre_parse")

MAX_PATTERN = 256  # characters
MAX_REPEAT_COUNT = 255  # PostgreSQL's RE_DUP_MAX
MAX_UNBOUNDED = 4  # quantifiers without an upper bound (each can multiply the backtracking)

_c = sre_constants
_POSSESSIVE_REPEAT = getattr(_c, "POSSESSIVE_REPEAT", object())  # 3.11+: a*+
_ALLOWED_AT = {_c.AT_BEGINNING, _c.AT_END, _c.AT_BEGINNING_STRING, _c.AT_END_STRING}
_ALLOWED_CATEGORIES = {
    _c.CATEGORY_DIGIT, _c.CATEGORY_NOT_DIGIT, _c.CATEGORY_WORD, _c.CATEGORY_NOT_WORD,
    _c.CATEGORY_SPACE, _c.CATEGORY_NOT_SPACE,
}  # fmt: skip
_ALLOWED_FLAGS = re.UNICODE  # set on every str pattern


def check_regex(pattern: str, where: str) -> None:
    """Returns when ``pattern`` is allowed; else InvalidInputError naming ``where`` and the reason."""
    if len(pattern) > MAX_PATTERN:
        raise InvalidInputError(f"{where}: $regex of {len(pattern)} characters; the limit is {MAX_PATTERN}")
    try:
        parsed = sre_parse.parse(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        raise InvalidInputError(f"{where}: $regex {pattern!r} is not a valid pattern ({exc})") from None
    if parsed.state.flags & ~_ALLOWED_FLAGS:
        raise InvalidInputError(f"{where}: $regex {pattern!r}: inline flags such as (?i) are not supported")
    walker = _Walker(pattern, where)
    walker.items(list(parsed))
    if walker.unbounded > MAX_UNBOUNDED:
        raise InvalidInputError(
            f"{where}: $regex {pattern!r} has {walker.unbounded} unbounded quantifiers (* + {{n,}}); "
            f"the limit is {MAX_UNBOUNDED}"
        )


class _Walker:
    def __init__(self, pattern: str, where: str) -> None:
        self.pattern = pattern
        self.where = where
        self.unbounded = 0

    def refuse(self, why: str) -> InvalidInputError:
        return InvalidInputError(f"{self.where}: $regex {self.pattern!r}: {why}")

    def items(self, items: list[tuple[Any, Any]], in_repeat: bool = False) -> None:
        for op, arg in items:
            self.item(op, arg, in_repeat)

    def item(self, op: Any, arg: Any, in_repeat: bool) -> None:
        if op in (_c.LITERAL, _c.NOT_LITERAL, _c.ANY):
            return
        if op is _c.IN:
            for sub_op, sub_arg in arg:
                if sub_op is _c.CATEGORY and sub_arg not in _ALLOWED_CATEGORIES:
                    raise self.refuse(f"the class {sub_arg} is not supported")
                if sub_op not in (_c.LITERAL, _c.RANGE, _c.NEGATE, _c.CATEGORY):
                    raise self.refuse(f"{sub_op} inside a character class is not supported")
            return
        if op is _c.AT:
            if arg not in _ALLOWED_AT:
                raise self.refuse(
                    "word boundaries (\\b, \\B) are not supported; PostgreSQL reads them otherwise"
                )
            return
        if op is _c.SUBPATTERN:
            _group, add_flags, del_flags, body = arg
            if add_flags or del_flags:
                raise self.refuse("inline flags such as (?i:...) are not supported")
            self.items(list(body), in_repeat)
            return
        if op is _c.BRANCH:
            if in_repeat:
                raise self.refuse(
                    "a repeated alternation such as (a|ab)* can backtrack without bound; "
                    "write it without the repetition"
                )
            for branch in arg[1]:
                self.items(list(branch), in_repeat)
            return
        if op in (_c.MAX_REPEAT, _c.MIN_REPEAT, _POSSESSIVE_REPEAT):
            low, high, body = arg
            if high is _c.MAXREPEAT:
                self.unbounded += 1
            elif high > MAX_REPEAT_COUNT or low > MAX_REPEAT_COUNT:
                raise self.refuse(f"a repetition count over {MAX_REPEAT_COUNT} is not supported")
            if op is _POSSESSIVE_REPEAT:
                raise self.refuse("possessive quantifiers are not supported")
            repeats = high is _c.MAXREPEAT or high > 1
            if in_repeat and repeats:
                raise self.refuse(
                    "a repetition inside a repetition such as (a+)+ can backtrack without bound; "
                    "write it with one quantifier"
                )
            self.items(list(body), in_repeat or repeats)
            return
        if op in (_c.GROUPREF, _c.GROUPREF_EXISTS):
            raise self.refuse("back-references are not supported")
        if op in (_c.ASSERT, _c.ASSERT_NOT):
            raise self.refuse("look-ahead and look-behind are not supported")
        raise self.refuse(f"{op} is not supported")
