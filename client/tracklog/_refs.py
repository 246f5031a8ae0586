"""Run identity: ``entity/project/id`` parts, their validation and generation."""

from __future__ import annotations

import os
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass

_PART = re.compile(r"[A-Za-z0-9._-]{1,64}")
_ALPHABET = string.ascii_lowercase + string.digits
DEFAULT_PROJECT = "Uncategorized"


def validate_part(kind: str, value: object) -> str:
    """Returns ``value`` if it is a valid entity, project or run id, else raises ValueError naming it."""
    if not isinstance(value, str):
        raise TypeError(f"run {kind} must be a str, got {type(value).__name__}")
    if not _PART.fullmatch(value):
        raise ValueError(
            f"invalid run {kind} {value!r}: use 1-64 characters of letters, digits, '.', '_' and '-'"
        )
    return value


def generate_id() -> str:
    """8 characters of [a-z0-9], as wandb generates them."""
    return "".join(choice(_ALPHABET) for _ in range(8))


def choice(options: Sequence[str]) -> str:
    """One of ``options``, uniformly, from the OS's random source (what ``secrets.choice`` does).

    Drawn from ``os.urandom`` directly: ``secrets`` would add hmac, hashlib and random, about 5 ms,
    to ``import tracklog``. A draw at or above the largest multiple of ``len(options)`` is redrawn,
    so that no option is more likely than another.
    """
    n = len(options)
    limit = (1 << 32) - (1 << 32) % n
    while (draw := int.from_bytes(os.urandom(4), "little")) >= limit:
        pass
    return options[draw % n]


@dataclass(frozen=True, slots=True)
class RunPath:
    entity: str
    project: str
    id: str

    def __post_init__(self) -> None:
        validate_part("entity", self.entity)
        validate_part("project", self.project)
        validate_part("id", self.id)

    def __str__(self) -> str:
        return f"{self.entity}/{self.project}/{self.id}"

    @classmethod
    def parse(cls, path: str) -> RunPath:
        """Parses ``entity/project/id`` (also accepting ``.../runs/id`` as copied from a run URL)."""
        parts = [p for p in path.strip("/").split("/") if p]
        if len(parts) == 4 and parts[2] == "runs":
            parts = [parts[0], parts[1], parts[3]]
        if len(parts) != 3:
            raise ValueError(f"run path {path!r} must look like 'entity/project/id'")
        return cls(*parts)
