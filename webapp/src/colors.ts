// Run colours. By default each run gets one colour of a categorical palette, by its place in the table.
// Key-based colours (as W&B's "Key-based colors"): the range of one key's values over the visible runs
// is split into N equal buckets (2 to 8); a run takes its bucket's colour, light for low values and dark
// for high, and the legend names each bucket's range. Runs without a numeric value are grey.

export const RUN_PALETTE = [
  "#1f77b4",
  "#ff7f0e",
  "#2ca02c",
  "#d62728",
  "#9467bd",
  "#8c564b",
  "#e377c2",
  "#17becf",
  "#bcbd22",
  "#7f7f7f",
  "#393b79",
  "#e7969c",
];

export const NO_VALUE_COLOR = "#b0b0b0";

export type Aggregate = "latest" | "min" | "max";

export interface ColorSpec {
  key: string;
  agg: Aggregate;
  buckets: number;
}

export const MIN_BUCKETS = 2;
export const MAX_BUCKETS = 8;

export function runColor(index: number): string {
  return RUN_PALETTE[index % RUN_PALETTE.length] ?? "#000";
}

// Sequential stops from light yellow to dark purple (magma-like), as the reference's example shows.
const STOPS: [number, number, number][] = [
  [252, 225, 130],
  [252, 165, 90],
  [234, 95, 94],
  [182, 54, 121],
  [113, 31, 129],
  [44, 17, 95],
];

function lerp(a: number, b: number, t: number): number {
  return Math.round(a + (b - a) * t);
}

/** The colour of bucket i of n, spread evenly over the sequential stops. */
export function bucketColor(i: number, n: number): string {
  const t = n <= 1 ? 1 : i / (n - 1);
  const pos = t * (STOPS.length - 1);
  const lo = Math.min(Math.floor(pos), STOPS.length - 2);
  const f = pos - lo;
  const a = STOPS[lo] ?? [0, 0, 0];
  const b = STOPS[lo + 1] ?? [0, 0, 0];
  const hex = (v: number) => v.toString(16).padStart(2, "0");
  return `#${hex(lerp(a[0], b[0], f))}${hex(lerp(a[1], b[1], f))}${hex(lerp(a[2], b[2], f))}`;
}

export function clampBuckets(n: number): number {
  if (!Number.isFinite(n)) return 4;
  return Math.max(MIN_BUCKETS, Math.min(MAX_BUCKETS, Math.round(n)));
}

/** n+1 edges splitting [min, max] of the finite values into n equal buckets; null without values. */
export function bucketEdges(values: readonly (number | null | undefined)[], n: number): number[] | null {
  const finite = values.filter((v): v is number => typeof v === "number" && Number.isFinite(v));
  if (finite.length === 0) return null;
  const k = clampBuckets(n);
  let min = Infinity;
  let max = -Infinity;
  for (const v of finite) {
    if (v < min) min = v;
    if (v > max) max = v;
  }
  const edges: number[] = [];
  for (let i = 0; i <= k; i++) edges.push(i === k ? max : min + ((max - min) * i) / k);
  return edges;
}

/** The bucket (0..n-1) of a value; the top edge belongs to the last bucket; null without a value. */
export function bucketOf(value: number | null | undefined, edges: readonly number[]): number | null {
  if (typeof value !== "number" || !Number.isFinite(value)) return null;
  const n = edges.length - 1;
  const min = edges[0] ?? 0;
  const max = edges[n] ?? 0;
  if (max === min) return 0;
  for (let i = 0; i < n; i++) {
    if (value < (edges[i + 1] ?? max)) return Math.max(0, i);
  }
  return n - 1;
}

export function formatEdge(v: number): string {
  if (Number.isInteger(v)) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(3);
  return String(Number(v.toPrecision(4)));
}

export interface LegendBucket {
  color: string;
  label: string;
  count: number;
}

export interface KeyColoring {
  colorOf: Map<string, string>;
  legend: LegendBucket[];
}

/**
 * Colours for runs by the value of one key: `values` maps run id -> the run's value for the key (already
 * aggregated: Latest, Min or Max). Each bucket's legend label is its range "lo to hi".
 */
export function keyColoring(values: ReadonlyMap<string, number | null>, buckets: number): KeyColoring {
  const edges = bucketEdges([...values.values()], buckets);
  const colorOf = new Map<string, string>();
  if (!edges) {
    for (const id of values.keys()) colorOf.set(id, NO_VALUE_COLOR);
    return { colorOf, legend: [] };
  }
  const n = edges.length - 1;
  const counts = new Array<number>(n).fill(0);
  for (const [id, v] of values) {
    const b = bucketOf(v, edges);
    if (b === null) {
      colorOf.set(id, NO_VALUE_COLOR);
    } else {
      colorOf.set(id, bucketColor(b, n));
      counts[b] = (counts[b] ?? 0) + 1;
    }
  }
  const legend = counts.map((count, i) => ({
    color: bucketColor(i, n),
    label: `${formatEdge(edges[i] ?? 0)} to ${formatEdge(edges[i + 1] ?? 0)}`,
    count,
  }));
  return { colorOf, legend };
}

/** Latest, Min or Max of a series' finite values (null when it has none). */
export function aggregate(ys: readonly (number | null)[], agg: Aggregate): number | null {
  let out: number | null = null;
  for (const y of ys) {
    if (typeof y !== "number" || !Number.isFinite(y)) continue;
    if (agg === "latest") out = y;
    else if (out === null || (agg === "min" ? y < out : y > out)) out = y;
  }
  return out;
}
