"""A bounded, evenly thinned copy of a metric's values, and its sparkline for the closing lines."""

from __future__ import annotations

import math
from collections.abc import Sequence

_BARS = "▁▂▃▄▅▆▇█"
WIDTH = 40


class Series:
    """Keeps at most ``2 * width`` values: when full, every other value is dropped and the stride
    doubles, so the kept values stay evenly spaced over the whole run at O(1) cost per value."""

    __slots__ = ("_count", "_stride", "_width", "values")

    def __init__(self, width: int = WIDTH) -> None:
        self._width = width
        self._stride = 1
        self._count = 0
        self.values: list[float] = []

    def extend(self, values: Sequence[float]) -> None:
        # Kept: the values whose position in the whole series is a multiple of the stride. Slicing
        # picks them in C; halving keeps every other one, i.e. the multiples of the doubled stride.
        first = -self._count % self._stride
        self.values.extend(values[first :: self._stride])
        self._count += len(values)
        while len(self.values) >= 2 * self._width:
            self.values = self.values[::2]
            self._stride *= 2


def sparkline(values: list[float], width: int = WIDTH) -> str:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return ""
    if len(values) > width:
        step = len(values) / width
        values = [values[int(i * step)] for i in range(width)]
    low, high = min(finite), max(finite)
    span = high - low
    out = []
    for v in values:
        if not math.isfinite(v):
            out.append(" ")
        elif span == 0:
            out.append(_BARS[len(_BARS) // 2])
        else:
            out.append(_BARS[min(len(_BARS) - 1, int((v - low) / span * len(_BARS)))])
    return "".join(out)
