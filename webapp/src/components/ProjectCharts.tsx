// The project page's charts: one chart per metric key, one line per visible run in the run's colour,
// with a legend. The series come downsampled by the server (each bucket keeps its min and max), so a
// run's Min and Max over a downsampled series are its true Min and Max: the key-based colours use them.
import { useEffect, useState } from "preact/hooks";
import { api } from "../api";
import type { Run, Series } from "../types";
import { Chart } from "./Chart";

export type RunSeries = Map<string, Record<string, Series>>;

const CONCURRENCY = 4;
const POINTS = 300;

/** History of `keys` for each run (downsampled to POINTS), fetched a few runs at a time. Each time
 * `tick` moves (the page's live poll), the series of the runs still running are fetched again. */
export function useRunsHistory(
  entity: string,
  project: string,
  runs: Run[],
  keys: string[],
  tick = 0,
): RunSeries {
  const [data, setData] = useState<RunSeries>(new Map());
  const ids = runs.map((r) => r.id).join("\n");
  const keyList = keys.join("\n");
  const running = runs.filter((r) => r.state === "running").map((r) => r.id);
  useEffect(() => {
    if (tick === 0 || keys.length === 0 || running.length === 0) return;
    const ctl = new AbortController();
    void Promise.all(
      running.map((id) =>
        api
          .history(entity, project, id, { keys, x: "_step", points: POINTS }, ctl.signal)
          .then((h) => [id, h.series] as const)
          .catch(() => null),
      ),
    ).then((fresh) => {
      if (ctl.signal.aborted) return;
      setData((old) => {
        const next = new Map(old);
        for (const got of fresh) if (got) next.set(got[0], got[1]);
        return next;
      });
    });
    return () => ctl.abort();
  }, [tick]);
  useEffect(() => {
    if (keys.length === 0 || runs.length === 0) {
      setData(new Map());
      return;
    }
    const ctl = new AbortController();
    const queue = [...runs];
    const out: RunSeries = new Map();
    let pending = 0;
    const worker = async () => {
      for (let run = queue.shift(); run; run = queue.shift()) {
        try {
          const h = await api.history(entity, project, run.id, { keys, x: "_step", points: POINTS }, ctl.signal);
          out.set(run.id, h.series);
        } catch {
          // A run deleted meanwhile, or a network error: its lines stay missing; the table still shows it.
          if (ctl.signal.aborted) return;
        }
        if (!ctl.signal.aborted && ++pending % CONCURRENCY === 0) setData(new Map(out));
      }
    };
    void Promise.all(Array.from({ length: CONCURRENCY }, worker)).then(() => {
      if (ctl.signal.aborted) return;
      setData(new Map(out));
      // scripts/bench waits for this before timing a sort or filter (the page is then at rest).
      document.body.dataset.historyLoadedAt = String(Math.round(performance.now()));
    });
    return () => ctl.abort();
  }, [entity, project, ids, keyList]);
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
