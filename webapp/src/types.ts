// The JSON API's shapes (the server's contract, /api/v1). Values the server cannot express in JSON
// (NaN, +-Infinity) arrive as the strings "NaN", "Infinity", "-Infinity".

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

export interface ProjectSummary {
  entity: string;
  project: string;
  run_count: number;
  last_run_at: string | null;
}

export interface KeyDescription {
  key: string;
  type: "number" | "string" | "bool" | "other";
  min?: number | null;
  max?: number | null;
  values?: string[];
}

export interface ProjectDescription {
  entity: string;
  project: string;
  run_count: number;
  config_keys: KeyDescription[];
  summary_keys: KeyDescription[];
  metric_keys: string[];
  system_keys: string[];
}

export interface GitInfo {
  remote?: string | null;
  commit?: string | null;
  diff?: string | null;
}

export interface RunMetadata {
  command?: string | null;
  python?: string | null;
  os?: string | null;
  git?: GitInfo | null;
  hardware?: Record<string, JsonValue> | null;
  tracklog_version?: string | null;
  [key: string]: JsonValue | GitInfo | undefined;
}

/** Per metric key: its last, min and max over the whole history (kept by the store on ingest). */
export interface MetricStats {
  key: string;
  last: JsonValue;
  min: JsonValue;
  max: JsonValue;
  last_step: number | null;
}

export interface Run {
  entity: string;
  project: string;
  id: string;
  name: string;
  state: string;
  created_at: string | null;
  heartbeat_at: string | null;
  ended_at: string | null;
  runtime: number | null;
  tracked_hours: number | null;
  user: string | null;
  host: string | null;
  tags: string[];
  notes: string | null;
  group: string | null;
  job_type: string | null;
  config: Record<string, JsonValue>;
  summary: Record<string, JsonValue>;
  metadata: RunMetadata;
  metrics?: MetricStats[];
  rows: number;
  rows_lost: number;
  problems: string[];
  url: string;
}

export interface RunPage {
  runs: Run[];
  next_cursor: string | null;
  total: number;
}

export interface GroupStats {
  min: number | null;
  mean: number | null;
  max: number | null;
}

export interface RunGroup {
  value: JsonValue;
  count: number;
  summary: Record<string, GroupStats>;
}

export interface Series {
  x: number[];
  y: (number | null)[];
  exact: boolean;
}

export interface HistoryData {
  x_key: string;
  series: Record<string, Series>;
}

export interface LogLine {
  n: number;
  stream: "stdout" | "stderr";
  text: string;
  time: string;
}

export interface LogPage {
  lines: LogLine[];
  total: number;
}

export interface RunFile {
  name: string;
  size: number;
  updated_at: string | null;
  text: boolean;
}

export type BulkAction =
  | { action: "tag" | "untag"; tags: string[] }
  | { action: "group"; group: string }
  | { action: "delete"; delete_files: boolean };
