"""Test helpers shipped with the package: a clock the test moves by hand (shared with the SDK and
the daemon: ``StoreServer(clock=...)``, ``SqlAlchemyStore(clock=...)``)."""

from __future__ import annotations

from tracklog.testing import FakeClock

__all__ = ["FakeClock"]
