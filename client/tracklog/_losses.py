"""What the training process could not keep: counted, told once on the terminal, sent to the run.

The sender drops data in two cases only: a row or record that cannot be encoded (the rest of its
batch goes on), and new rows while it holds more than its memory cap for a daemon that does not
acknowledge them. Neither is silent: the first drop of each kind is one terminal warning, the totals
are printed at finish, and each loss becomes a ``RecordsDropped`` record in the run's own stream
(placed where the data went missing), so the store counts it in the run's ``rows_lost``/problems.
"""

from __future__ import annotations

from collections.abc import Callable

from tracklog.v1 import records_pb2

MAX_REASON = 500  # characters of a RecordsDropped reason


def _text(reason: str) -> str:
    # A reason may quote the bad input (a lone surrogate in a key): keep it valid UTF-8 for protobuf.
    return reason.encode("utf-8", "backslashreplace").decode("utf-8")[:MAX_REASON]


class Losses:
    def __init__(self, warn: Callable[[str], None]) -> None:
        self._warn = warn
        self.rows = 0  # totals for the closing lines
        self.records = 0
        self._rows = 0  # not yet reported to the run
        self._records = 0
        self._reasons: list[str] = []
        self._warned: set[str] = set()

    def drop(self, *, rows: int = 0, records: int = 0, reason: str, kind: str, warning: str) -> None:
        """Counts a loss; ``warning`` goes to the terminal the first time a ``kind`` of loss happens."""
        self.rows += rows
        self.records += records
        self._rows += rows
        self._records += records
        if reason not in self._reasons and len(self._reasons) < 5:
            self._reasons.append(reason)
        if kind not in self._warned:
            self._warned.add(kind)
            self._warn(warning)

    @property
    def unreported(self) -> bool:
        return bool(self._rows or self._records)

    def report(self) -> records_pb2.Record | None:
        """A RecordsDropped for what was lost since the last report (None if nothing was)."""
        if not self.unreported:
            return None
        dropped = records_pb2.RecordsDropped(
            rows=self._rows, records=self._records, reason=_text("; ".join(self._reasons))
        )
        self._rows = self._records = 0
        self._reasons = []
        return records_pb2.Record(dropped=dropped)

    def closing_line(self) -> str | None:
        if not (self.rows or self.records):
            return None
        return (
            f"{self.rows} history rows and {self.records} other records of this run were dropped "
            "(see the warnings above); the run's page counts them"
        )
