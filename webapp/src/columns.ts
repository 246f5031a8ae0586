// The runs table's columns: the run's own fields, then one per config key and one per summary key of the
// project description. A column's id is the field name the server filters, sorts and groups by
// ("state", "config.lr", "summary.acc"), so the same id serves the table, the URL, the filter and the order.
import type { KeyType } from "./filter";
import { asNumber, formatDuration, formatTime, formatValue, valueAt } from "./format";
import type { JsonValue, KeyDescription, ProjectDescription, Run } from "./types";

export interface ColumnInfo {
  id: string;
  label: string;
  type: KeyType;
  /** Width in pixels (pinned columns need fixed widths for their sticky offsets). */
  width: number;
  value: (run: Run) => JsonValue | undefined;
  text: (run: Run) => string;
}

function field(
  id: string,
  label: string,
  type: KeyType,
  width: number,
  value: (r: Run) => JsonValue | undefined,
  text?: (r: Run) => string,
): ColumnInfo {
  return { id, label, type, width, value, text: text ?? ((r) => formatValue(value(r))) };
}

export const BASE_COLUMNS: ColumnInfo[] = [
  field("name", "Name", "string", 200, (r) => r.name),
  field("state", "State", "string", 90, (r) => r.state),
  field("created_at", "Created", "time", 150, (r) => r.created_at, (r) => formatTime(r.created_at)),
  field("runtime", "Runtime", "number", 90, (r) => r.runtime, (r) => formatDuration(r.runtime)),
  field("user", "User", "string", 100, (r) => r.user),
  field("host", "Host", "string", 110, (r) => r.host),
  field("tags", "Tags", "list", 140, (r) => r.tags, (r) => r.tags.join(", ")),
  field("notes", "Notes", "string", 160, (r) => r.notes),
  field("group", "Group", "string", 100, (r) => r.group),
  field("job_type", "Job type", "string", 100, (r) => r.job_type),
];

function keyType(k: KeyDescription): KeyType {
  return k.type === "number" || k.type === "string" || k.type === "bool" ? k.type : "other";
}

/** Every column of a project: the run fields, then config.*, then summary.* (as described). */
export function projectColumns(desc: ProjectDescription | null): ColumnInfo[] {
  const cols = [...BASE_COLUMNS];
  for (const k of desc?.config_keys ?? []) {
    cols.push(field(`config.${k.key}`, k.key, keyType(k), 110, (r) => valueAt(r.config, k.key)));
  }
  for (const k of desc?.summary_keys ?? []) {
    cols.push(field(`summary.${k.key}`, k.key, keyType(k), 110, (r) => valueAt(r.summary, k.key)));
  }
  return cols;
}

export function columnGroup(id: string): "run" | "config" | "summary" {
  if (id.startsWith("config.")) return "config";
  if (id.startsWith("summary.")) return "summary";
  return "run";
}

/** The key type of a column id, for the filter builder (undefined for a key the project lacks). */
export function typeLookup(cols: readonly ColumnInfo[]): (key: string) => KeyType | undefined {
  const types = new Map(cols.map((c) => [c.id, c.type]));
  return (key) => types.get(key);
}

/** A run's number for a key-based colour: config.<key> from the config, else a metric's summary. */
export function configNumber(run: Run, key: string): number | null {
  const v = asNumber(valueAt(run.config, key));
  return v !== null && Number.isFinite(v) ? v : null;
}
