// The Columns panel (show/hide, pin, move every column at once) and the key-based colours panel.
import type { ColumnInfo } from "../columns";
import { MAX_BUCKETS, MIN_BUCKETS, type Aggregate, type ColorSpec, type LegendBucket } from "../colors";

export function ColumnsPanel(props: {
  columns: ColumnInfo[];
  hidden: string[];
  pinned: string[];
  onToggle: (id: string) => void;
  onPin: (id: string, pin: boolean) => void;
  onMove: (id: string, delta: -1 | 1) => void;
}) {
  return (
    <div class="panel columns-panel" data-testid="columns-panel">
      {props.columns.map((c) => {
        const shown = !props.hidden.includes(c.id);
        const pinned = props.pinned.includes(c.id);
        return (
          <div class="col-row" key={c.id}>
            <label>
              <input
                type="checkbox"
                checked={shown}
                disabled={c.id === "name"}
                aria-label={`show ${c.id}`}
                onChange={() => props.onToggle(c.id)}
              />{" "}
              {c.id}
            </label>
            {c.id !== "name" && (
              <span>
                <button class="link" aria-label={`pin ${c.id}`} onClick={() => props.onPin(c.id, !pinned)}>
                  {pinned ? "unpin" : "pin"}
                </button>
                <button class="link" aria-label={`move ${c.id} left`} onClick={() => props.onMove(c.id, -1)}>
                  ↑
                </button>
                <button class="link" aria-label={`move ${c.id} right`} onClick={() => props.onMove(c.id, 1)}>
                  ↓
                </button>
              </span>
            )}
          </div>
        );
      })}
    </div>
  );
}

export function ColorPanel(props: {
  metricKeys: string[];
  configKeys: string[];
  value: ColorSpec | null;
  onChange: (c: ColorSpec | null) => void;
}) {
  const v = props.value ?? { key: "", agg: "latest" as Aggregate, buckets: 4 };
  const isConfig = v.key.startsWith("config.");
  const set = (c: Partial<ColorSpec>) => {
    const next = { ...v, ...c };
    props.onChange(next.key ? next : null);
  };
  return (
    <div class="panel" data-testid="color-panel">
      <label>
        Key{" "}
        <select aria-label="colour key" value={v.key} onChange={(e) => set({ key: e.currentTarget.value })}>
          <option value="">(colour each run)</option>
          <optgroup label="Metrics">
            {props.metricKeys.map((k) => (
              <option value={k} key={k}>
                {k}
              </option>
            ))}
          </optgroup>
          <optgroup label="Config">
            {props.configKeys.map((k) => (
              <option value={`config.${k}`} key={k}>
                {k}
              </option>
            ))}
          </optgroup>
        </select>
      </label>{" "}
      <label>
        Y value{" "}
        <select
          aria-label="y value"
          value={v.agg}
          disabled={isConfig || !v.key}
          onChange={(e) => set({ agg: e.currentTarget.value as Aggregate })}
        >
          <option value="latest">Latest</option>
          <option value="min">Min</option>
          <option value="max">Max</option>
        </select>
      </label>{" "}
      <label>
        Buckets{" "}
        <input
          type="number"
          aria-label="buckets"
          min={MIN_BUCKETS}
          max={MAX_BUCKETS}
          value={v.buckets}
          disabled={!v.key}
          onChange={(e) => set({ buckets: Math.max(MIN_BUCKETS, Math.min(MAX_BUCKETS, Number(e.currentTarget.value) || 4)) })}
        />
      </label>
    </div>
  );
}

export function BucketLegend(props: { spec: ColorSpec; legend: LegendBucket[] }) {
  const what = props.spec.key.startsWith("config.")
    ? props.spec.key
    : `${props.spec.key} (${props.spec.agg === "latest" ? "Latest" : props.spec.agg === "min" ? "Min" : "Max"})`;
  return (
    <div class="legend buckets" data-testid="bucket-legend">
      <span class="muted">{what}:</span>
      {props.legend.length === 0 && <span class="muted"> no run has a number for this key</span>}
      {props.legend.map((b, i) => (
        <span class="legend-item" key={i} data-testid="bucket">
          <span class="swatch" style={{ background: b.color }} />
          <span class="bucket-label">{b.label}</span> <span class="muted">({b.count})</span>
        </span>
      ))}
    </div>
  );
}
