// A line chart on uPlot (canvas; draws a million points without trouble). Each series has its own x
// values; uPlot.join aligns them on the union of x values and the lines span the gaps. Dragging across
// the plot zooms: the parent is told the x range (onZoom) so it can fetch the exact points of that range;
// a double click zooms out (onZoom(null)).
import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

export interface ChartSeries {
  label: string;
  color: string;
  x: readonly number[];
  y: readonly (number | null)[];
}

export interface ChartProps {
  title: string;
  series: ChartSeries[];
  /** "time" draws x as wall-clock seconds since the epoch. */
  xKind: "number" | "time";
  xLabel: string;
  height?: number;
  /** The x range shown; null shows all the data. */
  range?: [number, number] | null;
  onZoom?: (range: [number, number] | null) => void;
  showLegend?: boolean;
}

function aligned(series: ChartSeries[]): uPlot.AlignedData {
  if (series.length === 0) return [[]];
  const tables = series.map((s) => [Array.from(s.x), Array.from(s.y)] as uPlot.AlignedData);
  if (tables.length === 1) return tables[0] as uPlot.AlignedData;
  return uPlot.join(tables);
}

function structureKey(p: ChartProps): string {
  return JSON.stringify([p.series.map((s) => [s.label, s.color]), p.xKind, p.xLabel, p.showLegend ?? false]);
}

export function Chart(props: ChartProps) {
  const host = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const built = useRef<string>("");
  const onZoom = useRef(props.onZoom);
  onZoom.current = props.onZoom;

  // Build the plot when the series' set changes; otherwise only hand it new data (keeps the canvas).
  useEffect(() => {
    const el = host.current;
    if (!el) return;
    const key = structureKey(props);
    const data = aligned(props.series);
    if (plot.current && built.current === key) {
      plot.current.setData(data, !props.range);
      if (props.range) plot.current.setScale("x", { min: props.range[0], max: props.range[1] });
      return;
    }
    plot.current?.destroy();
    built.current = key;
    const opts: uPlot.Options = {
      width: Math.max(200, el.clientWidth),
      height: props.height ?? 220,
      scales: { x: { time: props.xKind === "time" } },
      legend: { show: props.showLegend ?? false },
      cursor: { drag: { x: true, y: false, setScale: true } },
      axes: [{ label: props.xLabel, labelSize: 20, size: 40 }, { size: 60 }],
      series: [
        { label: props.xLabel },
        ...props.series.map((s) => ({ label: s.label, stroke: s.color, width: 1.5, spanGaps: true, points: { show: false } })),
      ],
      hooks: {
        // When a chart last finished drawing (ms since navigation began): scripts/bench reads it.
        draw: [
          () => {
            document.body.dataset.chartDrawnAt = String(Math.round(performance.now()));
          },
        ],
        setSelect: [
          (u: uPlot) => {
            if (u.select.width <= 0) return;
            const min = u.posToVal(u.select.left, "x");
            const max = u.posToVal(u.select.left + u.select.width, "x");
            onZoom.current?.([min, max]);
          },
        ],
      },
    };
    const u = new uPlot(opts, data, el);
    plot.current = u;
    if (props.range) u.setScale("x", { min: props.range[0], max: props.range[1] });
    u.over.addEventListener("dblclick", () => onZoom.current?.(null));
  });

  useEffect(() => {
    const el = host.current;
    if (!el) return;
    const observer = new ResizeObserver(() => {
      const u = plot.current;
      if (u && el.clientWidth > 0 && Math.abs(u.width - el.clientWidth) > 2) {
        u.setSize({ width: el.clientWidth, height: u.height });
      }
    });
    observer.observe(el);
    return () => {
      observer.disconnect();
      plot.current?.destroy();
      plot.current = null;
    };
  }, []);

  const points = props.series.reduce((n, s) => n + s.x.length, 0);
  return (
    <figure class="chart" data-testid="chart" data-title={props.title} data-points={points}>
      <figcaption>{props.title}</figcaption>
      <div ref={host} class="chart-canvas" />
    </figure>
  );
}
