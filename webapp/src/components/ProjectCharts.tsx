// The project page's charts: one chart per metric key, one line per visible run in the run's colour,
// with a legend. The series come downsampled by the server (each bucket keeps its min and max), so a
// run's Min and Max over a downsampled series are its true Min and Max: the key-based colours use them.
import { useEffect, useRef, useState } from "preact/hooks";
import { api } from "../api";
import type { Run, Series } from "../types";
import { Chart } from "./Chart";

export type RunSeries = Map<string, Record<string, Series>>;

const CONCURRENCY = 4;
const POINTS = 300;

/** Fetches each run's history of `keys` with at most CONCURRENCY requests at once; `onSome` is called
 * every CONCURRENCY answers and at the end, with everything fetched so far. */
async function fetchHistories(
  entity: string,
  project: string,
  ids: string[],
  keys: string[],
  signal: AbortSignal,
  onSome: (got: RunSeries) => void,
): Promise<RunSeries> {
  const queue = [...ids];
  const out: RunSeries = new Map();
  let answered = 0;
  const worker = async () => {
    for (let id = queue.shift(); id !== undefined; id = queue.shift()) {
      try {
        const h = await api.history(entity, project, id, { keys, x: "_step", points: POINTS }, signal);
        out.set(id, h.series);
      } catch {
        // A run deleted meanwhile, or a network error: its lines stay as they were; the table still shows it.
        if (signal.aborted) return;
      }
      if (!signal.aborted && ++answered % CONCURRENCY === 0) onSome(out);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return out;
}

/** History of `keys` for each run (downsampled to POINTS), fetched a few runs at a time. Each new
 * answer for the runs (the page's live poll) fetches again the runs running now or in the answer
 * before (so a run that just finished gets its last points): a few at a time, and an answer that
 * finds the last refresh still going is skipped, so a slow server never gets a growing queue. */
export function useRunsHistory(entity: string, project: string, runs: Run[], keys: string[]): RunSeries {
  const [data, setData] = useState<RunSeries>(new Map());
  const ids = runs.map((r) => r.id).join("\n");
  const keyList = keys.join("\n");
  const loading = useRef(false);
  const refreshing = useRef(false);
  const wasRunning = useRef<Set<string>>(new Set());
  const life = useRef(new AbortController()); // aborted when the page goes
  useEffect(() => () => life.current.abort(), []);
  useEffect(() => {
    if (keys.length === 0 || runs.length === 0) {
      setData(new Map());
      return;
    }
    const ctl = new AbortController();
    loading.current = true;
    const merge = (got: RunSeries) => setData(new Map(got));
    void fetchHistories(entity, project, runs.map((r) => r.id), keys, ctl.signal, merge).then((out) => {
      if (ctl.signal.aborted) return;
      loading.current = false;
      setData(new Map(out));
      // scripts/bench waits for this before timing a sort or filter (the page is then at rest).
      document.body.dataset.historyLoadedAt = String(Math.round(performance.now()));
    });
    return () => {
      ctl.abort();
      loading.current = false;
    };
  }, [entity, project, ids, keyList]);
  useEffect(() => {
    const running = new Set(runs.filter((r) => r.state === "running").map((r) => r.id));
    const due = runs.map((r) => r.id).filter((id) => running.has(id) || wasRunning.current.has(id));
    if (keys.length === 0 || due.length === 0) {
      wasRunning.current = running;
      return;
    }
    // Busy: skipped, and the runs that were running stay due (one that ended meanwhile still gets
    // its last points from the next refresh).
    if (loading.current || refreshing.current) return;
    wasRunning.current = running;
    const signal = life.current.signal;
    refreshing.current = true;
    const merge = (got: RunSeries) =>
      setData((old) => {
        const next = new Map(old);
        for (const [id, series] of got) next.set(id, series);
        return next;
      });
    void fetchHistories(entity, project, due, keys, signal, merge).then((out) => {
      refreshing.current = false;
      if (!signal.aborted) merge(out);
    });
  }, [runs]);
  return data;
}

export function ProjectCharts(props: {
  runs: Run[];
  metricKeys: string[];
  history: RunSeries;
  colorOf: (id: string) => string;
}) {
  if (props.metricKeys.length === 0) return <p class="muted">No metrics logged yet.</p>;
  return (
    <div>
      <div class="legend" data-testid="run-legend">
        {props.runs.map((r) => (
          <span class="legend-item" key={r.id}>
            <span class="swatch" style={{ background: props.colorOf(r.id) }} />
            {r.name || r.id}
          </span>
        ))}
      </div>
      <div class="charts">
        {props.metricKeys.map((key) => (
          <Chart
            key={key}
            title={key}
            xKind="number"
            xLabel="Step"
            series={props.runs.flatMap((r) => {
              const s = props.history.get(r.id)?.[key];
              return s ? [{ label: r.name || r.id, color: props.colorOf(r.id), x: s.x, y: s.y }] : [];
            })}
          />
        ))}
      </div>
    </div>
  );
}
