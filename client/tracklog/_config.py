"""``run.config`` and ``run.summary``: dict-like views whose changes become records of the run."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from tracklog import _history, _rules, _values
from tracklog._errors import UsageError
from tracklog.v1 import records_pb2

if TYPE_CHECKING:
    import argparse

Emit = Callable[[records_pb2.Record], None]
_RESERVED = "_tracklog"  # _metrics.RESERVED_CONFIG_KEY: the run's metric definitions, in its stored config


def _check_doc(what: str, doc: dict[str, Any]) -> None:
    """ValueError unless ``doc`` fits what the store keeps of a config or summary (``MAX_DOC``)."""
    size = len(_history.dumps(doc))
    if size > _rules.MAX_DOC:
        raise ValueError(f"the {what} would be {size} characters as JSON; the limit is {_rules.MAX_DOC}")


class Config:
    """The run's hyper-parameters: ``config.lr``, ``config["lr"]``, ``config.update({...})``.

    Every change is validated (JSON-encodable, NaN/Inf allowed) and sent as one ConfigUpdate record.
    As in wandb, a key keeps its value once set: changing it raises UsageError unless
    ``allow_val_change=True`` is passed (to ``update`` or to ``init``).
    """

    __slots__ = ("_allow_changes", "_emit", "_items")

    def __init__(self, emit: Emit | None = None, *, allow_val_change: bool = False) -> None:
        object.__setattr__(self, "_items", {})
        object.__setattr__(self, "_emit", emit)
        object.__setattr__(self, "_allow_changes", allow_val_change)

    def _bind(self, emit: Emit) -> None:
        object.__setattr__(self, "_emit", emit)

    def update(
        self,
        items: Mapping[str, Any] | argparse.Namespace | None = None,
        allow_val_change: bool | None = None,
        **kwargs: Any,
    ) -> None:
        """Sets config keys from ``items`` and ``kwargs``. ``allow_val_change=True`` lets a key that
        is set already take a new value (wandb's keyword: it is never stored as a key)."""
        # A Namespace exists only where argparse was imported: checked through sys.modules, so that
        # ``import tracklog`` does not import argparse for this one isinstance.
        argparse_module = sys.modules.get("argparse")
        if argparse_module is not None and isinstance(items, argparse_module.Namespace):
            items = vars(items)
        if items is not None and not isinstance(items, Mapping):
            raise TypeError(f"config must be a mapping or argparse.Namespace, got {type(items).__name__}")
        changes: dict[str, Any] = {}
        for key, value in {**(items or {}), **kwargs}.items():
            name = _values.check_config_key(key)
            if name == _RESERVED:
                raise ValueError(f"config key {name!r} is reserved: tracklog keeps define_metric() there")
            changes[name] = _values.config_value(name, value)
        # A key set again to the value it holds is no change: nothing to check, nothing to send.
        changes = {
            k: v
            for k, v in changes.items()
            if k not in self._items or _history.dumps(self._items[k]) != _history.dumps(v)
        }
        if not changes:
            return
        if not (allow_val_change or self._allow_changes):
            for name, value in changes.items():
                if name in self._items:
                    raise UsageError(
                        f"config key {name!r} is {self._items[name]!r} already; changing it to {value!r} "
                        "needs allow_val_change=True (config.update(..., allow_val_change=True) or "
                        "init(allow_val_change=True))"
                    )
        _check_doc("config", {**self._items, **changes})
        self._items.update(changes)
        if self._emit is not None:
            self._emit(
                records_pb2.Record(config=records_pb2.ConfigUpdate(items_json=_history.dumps(changes)))
            )

    def setdefaults(self, items: Mapping[str, Any]) -> None:
        """Sets the keys of ``items`` that are not set yet; the others keep their values."""
        self.update({k: v for k, v in items.items() if k not in self._items})

    def as_dict(self) -> dict[str, Any]:
        return json.loads(_history.dumps(self._items))  # type: ignore[no-any-return]

    def __getattr__(self, name: str) -> Any:
        try:
            return self._items[name]
        except KeyError:
            raise AttributeError(f"config has no key {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self.update({name: value})

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str, default: Any = None) -> Any:
        return self._items.get(key, default)

    def keys(self) -> Any:
        return self._items.keys()

    def items(self) -> Any:
        return self._items.items()

    def __repr__(self) -> str:
        return f"Config({self._items!r})"


class Summary:
    """The run's summary: the last logged value of each key unless set explicitly.

    ``summary["best"] = 0.97`` sends a SummaryUpdate; reads see explicit values first, then the last
    logged values, including rows still queued in this process.
    """

    __slots__ = ("_emit", "_explicit", "_logged")

    def __init__(self, emit: Emit, logged: Callable[[], dict[str, Any]]) -> None:
        self._emit = emit
        self._logged = logged
        self._explicit: dict[str, Any] = {}

    def update(self, items: Mapping[str, Any]) -> None:
        flat: dict[str, Any] = {}
        _values.flatten_into(flat, items, what="summary")
        _check_doc("summary", {**self._explicit, **flat})
        self._explicit.update(flat)
        self._emit(records_pb2.Record(summary=records_pb2.SummaryUpdate(items_json=_history.dumps(flat))))

    def as_dict(self) -> dict[str, Any]:
        return {**self._logged(), **self._explicit}

    def __getitem__(self, key: str) -> Any:
        return self.as_dict()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __delitem__(self, key: str) -> None:
        key = _values.check_key(key, "summary")
        self._explicit.pop(key, None)
        self._emit(records_pb2.Record(summary=records_pb2.SummaryUpdate(removed=[key])))

    def __contains__(self, key: object) -> bool:
        return key in self.as_dict()

    def __iter__(self) -> Iterator[str]:
        return iter(self.as_dict())

    def __len__(self) -> int:
        return len(self.as_dict())

    def get(self, key: str, default: Any = None) -> Any:
        return self.as_dict().get(key, default)

    def keys(self) -> Any:
        return self.as_dict().keys()

    def items(self) -> Any:
        return self.as_dict().items()

    def __repr__(self) -> str:
        return f"Summary({self.as_dict()!r})"
