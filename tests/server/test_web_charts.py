"""Charts downsampled on the server: each bucket keeps its minimum and maximum, so spikes survive; a
range that fits comes back exact. The bucketing itself (property tests) and the endpoints."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracklog_server import RunKey, StoreServer
from tracklog_server.application._charts import downsample

from .helpers import RunWriter, history_record, start_record, system_record
from .web import Web

T0 = 1_700_000_000.0

values = st.floats(allow_nan=True, allow_infinity=True, width=64)


@st.composite
def series(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    ys = draw(st.lists(values, min_size=1, max_size=400))
    gaps = draw(st.lists(st.integers(0, 5), min_size=len(ys), max_size=len(ys)))
    x = np.cumsum(np.array(gaps, dtype=np.float64))
    return x, np.array(ys, dtype=np.float64)


@settings(max_examples=300, deadline=None)
@given(series(), st.integers(4, 100))
def test_downsampling_keeps_every_buckets_min_and_max_and_at_most_the_points_asked(
    data: tuple[np.ndarray, np.ndarray], points: int
) -> None:
    x, y = data
    dx, dy, exact = downsample(x, y, points)
    if len(x) <= points:
        assert exact
        assert np.array_equal(dx, x)
        assert np.array_equal(dy, y, equal_nan=True)
        return
    assert not exact
    assert len(dx) <= points
    assert np.all(np.diff(dx) >= 0)  # still in x order
    # Every point sent is a point of the series (x and y together).
    pairs = {(a, b if not math.isnan(b) else "nan") for a, b in zip(x.tolist(), y.tolist(), strict=True)}
    for a, b in zip(dx.tolist(), dy.tolist(), strict=True):
        assert (a, b if not math.isnan(b) else "nan") in pairs
    assert (dx[0], dx[-1]) == (x[0], x[-1])
    # The spikes: the series' extreme values survive, and so do each bucket's.
    finite = y[~np.isnan(y)]
    if len(finite):
        assert np.nanmax(dy) == finite.max()
        assert np.nanmin(dy) == finite.min()
    buckets = max(1, (points - 2) // 2)
    width = (x[-1] - x[0]) / buckets
    if width > 0:
        index = np.minimum(((x - x[0]) / width).astype(int), buckets - 1)
        kept = np.minimum(((dx - x[0]) / width).astype(int), buckets - 1)
        for b in np.unique(index):
            in_bucket = y[(index == b) & ~np.isnan(y)]
            if len(in_bucket) == 0:
                continue
            sent = dy[(kept == b) & ~np.isnan(dy)]
            # Points exactly on an edge may be counted in the neighbour: compare with both sides.
            near = dy[(np.abs(kept - b) <= 1) & ~np.isnan(dy)]
            assert in_bucket.max() in sent or in_bucket.max() in near
            assert in_bucket.min() in sent or in_bucket.min() in near


def test_one_spike_in_a_million_points_is_kept() -> None:
    x = np.arange(1_000_000, dtype=np.float64)
    y = np.sin(x / 1000.0)
    y[765_432] = 50.0
    y[123_456] = -50.0
    dx, dy, exact = downsample(x, y, 1000)
    assert not exact
    assert len(dx) <= 1000
    assert 765_432.0 in dx.tolist()
    assert 123_456.0 in dx.tolist()
    assert dy.max() == 50.0
    assert dy.min() == -50.0


@pytest.fixture
def server(db_url: str) -> Iterator[StoreServer]:
    srv = StoreServer(db_url, port=0, http_port=0)
    srv.start()
    yield srv
    srv.stop(grace=1)


@pytest.fixture
def web(server: StoreServer) -> Iterator[Web]:
    client = Web(server.http_url)
    yield client
    client.close()


def long_run(server: StoreServer, key: RunKey, rows: int = 20_000) -> None:
    writer = RunWriter(key)
    records = [start_record(key, start_time=T0)]
    for first in range(0, rows, 5000):
        batch = []
        for step in range(first, min(rows, first + 5000)):
            row: dict[str, object] = {"loss": 1.0 + math.sin(step / 100.0)}
            if step == 12_345:
                row["loss"] = 99.0  # a spike
            if step == 500:
                row["loss"] = math.nan
            if step % 2 == 0:
                row["acc"] = step / rows
            if step == 7:
                row["label"] = "text values are not charted"
            batch.append((step, row))
        records.append(history_record(batch, time0=T0))
    records.append(
        system_record([T0 + 10 * i for i in range(100)], {"system/cpu": [float(i % 7) for i in range(100)]})
    )
    server.store.ingest(key, writer.frames(*records))


def test_history_is_downsampled_per_key_keeping_the_spike(server: StoreServer, web: Web) -> None:
    long_run(server, RunKey("alice", "long", "r1"))
    chart = web.ok("/api/v1/runs/alice/long/r1/history?keys=loss,acc&points=400")
    assert chart["x_key"] == "_step"
    loss, acc = chart["series"]["loss"], chart["series"]["acc"]
    assert not loss["exact"]
    assert len(loss["x"]) <= 400
    assert len(acc["x"]) <= 400
    assert 99.0 in loss["y"]
    assert 12345.0 in loss["x"]
    assert (loss["x"][0], loss["x"][-1]) == (0.0, 19999.0)
    assert acc["x"][-1] == 19998.0  # acc is logged on even steps only
    every = web.ok("/api/v1/runs/alice/long/r1/history?points=400")
    assert set(every["series"]) == {"loss", "acc"}


def test_a_zoomed_range_that_fits_comes_back_exact_and_nan_as_null(server: StoreServer, web: Web) -> None:
    long_run(server, RunKey("alice", "long", "r2"))
    chart = web.ok("/api/v1/runs/alice/long/r2/history?keys=loss&points=1000&min=490&max=510")
    loss = chart["series"]["loss"]
    assert loss["exact"]
    assert loss["x"] == [float(s) for s in range(490, 511)]
    assert loss["y"][10] is None  # step 500 logged NaN: a gap in the line
    assert loss["y"][0] == pytest.approx(1.0 + math.sin(4.9))


def test_x_can_be_wall_time_or_runtime(server: StoreServer, web: Web) -> None:
    long_run(server, RunKey("alice", "long", "r3"), rows=100)
    by_time = web.ok("/api/v1/runs/alice/long/r3/history?keys=acc&x=_timestamp")
    by_runtime = web.ok("/api/v1/runs/alice/long/r3/history?keys=acc&x=_runtime")
    assert by_time["x_key"] == "_timestamp"
    times = by_time["series"]["acc"]["x"]
    assert len(times) == 50
    assert all(t >= T0 for t in times)
    assert by_runtime["series"]["acc"]["x"] == pytest.approx([t - T0 for t in times])
    window = web.ok(f"/api/v1/runs/alice/long/r3/history?keys=acc&x=_timestamp&min={times[5]}&max={times[9]}")
    assert window["series"]["acc"]["x"] == times[5:10]


def test_system_metrics_chart_against_seconds_since_start(server: StoreServer, web: Web) -> None:
    long_run(server, RunKey("alice", "long", "r4"), rows=10)
    chart = web.ok("/api/v1/runs/alice/long/r4/system?points=20")
    cpu = chart["series"]["system/cpu"]
    assert len(cpu["x"]) <= 20
    assert (cpu["x"][0], cpu["x"][-1]) == (0.0, 990.0)
    assert max(cpu["y"]) == 6.0
    assert min(cpu["y"]) == 0.0
    exact = web.ok("/api/v1/runs/alice/long/r4/system?points=1000&min=0&max=50")
    assert exact["series"]["system/cpu"] == {
        "x": [0.0, 10.0, 20.0, 30.0, 40.0, 50.0], "y": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0], "exact": True,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("points=3", "points"),
        ("points=1000000", "points"),
        ("x=_wall", "x"),
        ("min=5&max=1", "min (5) is above max (1)"),
        ("min=nan", "min"),
        ("keys=" + ",".join(f"k{i}" for i in range(101)), "limit is 100"),
    ],
)
def test_a_bad_chart_request_is_a_400_naming_it(
    server: StoreServer, web: Web, query: str, message: str
) -> None:
    long_run(server, RunKey("alice", "long", "bad"), rows=10)
    reply = web.get(f"/api/v1/runs/alice/long/bad/history?{query}")
    assert reply.status == 400
    assert message in reply.json["error"]
