"""JSON routes of a run's charts: history and system metrics, downsampled on the server."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from tracklog_server._errors import InvalidInputError
from tracklog_server.application import _charts

from . import _web_models as m
from ._web_routes_runs import Caller, Key, Store

router = APIRouter(prefix="/api/v1/runs/{entity}/{project}/{run_id}", tags=["charts"])

Points = Annotated[int, Query(ge=_charts.MIN_POINTS, le=_charts.MAX_POINTS)]
Bound = Annotated[float | None, Query(allow_inf_nan=False)]


def _keys(text: str) -> list[str]:
    keys = [k for k in text.split(",") if k] if text else []
    if len(keys) > _charts.MAX_KEYS:
        raise InvalidInputError(f"{len(keys)} keys in one request; the limit is {_charts.MAX_KEYS}")
    return keys


def _chart(chart: _charts.Chart) -> dict[str, Any]:
    return {
        "x_key": chart.x_key,
        "series": {k: {"x": s.x, "y": s.y, "exact": s.exact} for k, s in chart.series.items()},
    }


@router.get("/history", response_model=m.ChartOut)
def history(
    store: Store,
    caller: Caller,
    key: Key,
    keys: Annotated[str, Query(max_length=100_000)] = "",
    x: Annotated[str, Query(pattern="^(_step|_timestamp|_runtime)$")] = "_step",
    points: Points = _charts.DEFAULT_POINTS,
    min: Bound = None,
    max: Bound = None,
) -> dict[str, Any]:
    """Per key (comma-separated; none: every numeric key) at most about ``points`` points against
    ``x``: each x bucket's minimum and maximum, or every point (``exact``) when they fit. ``min`` and
    ``max`` bound x (inclusive), for zooming."""
    chart = _charts.history_chart(store, caller, key, _keys(keys), x_key=x, points=points, lo=min, hi=max)
    return _chart(chart)


@router.get("/system", response_model=m.ChartOut)
def system(
    store: Store,
    caller: Caller,
    key: Key,
    keys: Annotated[str, Query(max_length=100_000)] = "",
    points: Points = _charts.DEFAULT_POINTS,
    min: Bound = None,
    max: Bound = None,
) -> dict[str, Any]:
    """System metrics against seconds since the run's start, downsampled as history is."""
    chart = _charts.system_chart(store, caller, key, _keys(keys), points=points, lo=min, hi=max)
    return _chart(chart)
