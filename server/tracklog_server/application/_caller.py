"""Who calls a use case. Every use case takes one, so that authorization (a later issue) has one
place to hang on; without auth every caller is the local user."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Caller:
    """Who calls. Without auth every caller is the local user; ``user`` is empty for anonymous."""

    user: str = ""


ANONYMOUS = Caller()
