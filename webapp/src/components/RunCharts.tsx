// A run's metric charts (against step, wall time or relative time) and its system-metric charts.
// The server sends at most POINTS points per series (downsampled keeping each bucket's min and max);
// a drag-zoom on any chart asks for that x range again, which the server answers with the exact points
// when they fit. A double click zooms out. `tick` changes while the run is live: the charts refetch.
import { useEffect, useRef, useState } from "preact/hooks";
import { api } from "../api";
import type { HistoryData } from "../types";
import { Chart } from "./Chart";
import { errorText } from "./common";

const POINTS = 1000;
const X_AXES = [
  { key: "_step", label: "Step" },
  { key: "_timestamp", label: "Wall time" },
  { key: "_runtime", label: "Relative time (s)" },
] as const;
type XKey = (typeof X_AXES)[number]["key"];

export function RunCharts(props: { entity: string; project: string; id: string; keys: string[]; tick: number }) {
  const [x, setX] = useState<XKey>("_step");
  const [range, setRange] = useState<[number, number] | null>(null);
  const [data, setData] = useState<HistoryData | null>(null);
  const [error, setError] = useState<string | null>(null);
  const keys = props.keys.join(",");
  // One request at a time: a new choice (keys, x axis, zoom) cancels the one in flight; a live tick
  // is skipped while one is in flight, so a slow answer (a long run) is never cancelled by the poll.
  const inFlight = useRef<AbortController | null>(null);
  const load = (cancel: boolean) => {
    if (props.keys.length === 0) return;
    if (inFlight.current && !cancel) return;
    inFlight.current?.abort();
    const ctl = new AbortController();
    inFlight.current = ctl;
    const started = performance.now();
    api
      .history(
        props.entity,
        props.project,
        props.id,
        { keys: props.keys, x, points: POINTS, min: range?.[0] ?? null, max: range?.[1] ?? null },
        ctl.signal,
      )
      .then((h) => {
        setData(h);
        setError(null);
        // Read by scripts/bench: the request until the charts are painted, and when (ms since the
        // page's navigation began) they were first shown.
        requestAnimationFrame(() => {
          const now = performance.now();
          document.body.dataset.chartsMs = String(Math.round(now - started));
          document.body.dataset.chartsShownAt ??= String(Math.round(now));
        });
      })
      .catch((exc) => ctl.signal.aborted || setError(errorText(exc)))
      .finally(() => {
        if (inFlight.current === ctl) inFlight.current = null;
      });
  };
  useEffect(() => {
    load(true);
  }, [props.entity, props.project, props.id, keys, x, range?.[0], range?.[1]]);
  useEffect(() => {
    if (props.tick > 0 && !range) load(false);
  }, [props.tick]);
  useEffect(() => () => inFlight.current?.abort(), []);

  const label = X_AXES.find((a) => a.key === x)?.label ?? x;
  const shown = props.keys.filter((k) => (data?.series[k]?.x.length ?? 0) > 0);
  return (
    <div data-testid="run-charts">
      <div class="toolbar">
        <label>
          X axis{" "}
          <select
            aria-label="x axis"
            value={x}
            onChange={(e) => {
              setRange(null);
              setX(e.currentTarget.value as XKey);
            }}
          >
            {X_AXES.map((a) => (
              <option value={a.key} key={a.key}>
                {a.label}
              </option>
            ))}
          </select>
        </label>
        {range && (
          <span data-testid="zoom-range">
            zoomed to {range[0].toPrecision(6)} – {range[1].toPrecision(6)}{" "}
            <button class="link" onClick={() => setRange(null)}>
              reset zoom
            </button>
          </span>
        )}
        <span class="muted">Drag across a chart to zoom; double-click to zoom out.</span>
      </div>
      {error && <p class="error">{error}</p>}
      {data && shown.length === 0 && <p class="muted">No metrics logged.</p>}
      <div class="charts">
        {shown.map((k) => {
          const s = data?.series[k];
          if (!s) return null;
          return (
            <Chart
              key={`${k}-${x}`}
              title={s.exact ? k : `${k} (downsampled)`}
              xKind={x === "_timestamp" ? "time" : "number"}
              xLabel={label}
              series={[{ label: k, color: "#1f77b4", x: s.x, y: s.y }]}
              range={range}
              onZoom={setRange}
              showLegend
            />
          );
        })}
      </div>
    </div>
  );
}

export function SystemCharts(props: { entity: string; project: string; id: string; tick: number }) {
  const [data, setData] = useState<HistoryData | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    const ctl = new AbortController();
    api
      .system(props.entity, props.project, props.id, 500, ctl.signal)
      .then((d) => {
        setData(d);
        setError(null);
      })
      .catch((exc) => ctl.signal.aborted || setError(errorText(exc)));
    return () => ctl.abort();
  }, [props.entity, props.project, props.id, props.tick]);
  const keys = Object.keys(data?.series ?? {})
    .filter((k) => (data?.series[k]?.x.length ?? 0) > 0)
    .sort();
  return (
    <div data-testid="system-charts">
      {error && <p class="error">{error}</p>}
      {data && keys.length === 0 && <p class="muted">No system metrics recorded.</p>}
      <div class="charts">
        {keys.map((k) => {
          const s = data?.series[k];
          return s ? (
            <Chart
              key={k}
              title={k}
              xKind="number"
              xLabel="Seconds since start"
              series={[{ label: k, color: "#2ca02c", x: s.x, y: s.y }]}
              showLegend
            />
          ) : null;
        })}
      </div>
    </div>
  );
}
