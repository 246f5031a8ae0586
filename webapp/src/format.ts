// How values read on screen. All user text is rendered as text nodes by Preact (never as HTML).
import type { JsonValue } from "./types";

export function formatValue(v: JsonValue | undefined): string {
  if (v === undefined || v === null) return "";
  if (typeof v === "number") {
    if (Number.isInteger(v)) return String(v);
    const a = Math.abs(v);
    if (a !== 0 && (a < 1e-4 || a >= 1e9)) return v.toExponential(4);
    return String(Number(v.toPrecision(6)));
  }
  if (typeof v === "string") return v;
  if (typeof v === "boolean") return v ? "true" : "false";
  return JSON.stringify(v);
}

/** A JSON value as a number when it is one (including the server's "NaN"/"Infinity" strings). */
export function asNumber(v: JsonValue | undefined): number | null {
  if (typeof v === "number") return v;
  if (v === "NaN") return NaN;
  if (v === "Infinity") return Infinity;
  if (v === "-Infinity") return -Infinity;
  return null;
}

export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "";
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  if (h > 0) return `${h}h ${m}m ${sec}s`;
  if (m > 0) return `${m}m ${sec}s`;
  return `${sec}s`;
}

export function formatTime(iso: string | null | undefined): string {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const pad = (n: number) => String(n).padStart(2, "0");
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
  );
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(1)} ${units[i]}`;
}

/**
 * The value at a dotted key of a nested mapping: "a.b" is the flat key "a.b" when present, else a -> b
 * (config keys may themselves hold dots, and nested dicts are described with dots).
 */
export function valueAt(obj: Record<string, JsonValue> | null | undefined, key: string): JsonValue | undefined {
  if (!obj) return undefined;
  if (Object.prototype.hasOwnProperty.call(obj, key)) return obj[key];
  for (let i = key.indexOf("."); i !== -1; i = key.indexOf(".", i + 1)) {
    const head = key.slice(0, i);
    const child = Object.prototype.hasOwnProperty.call(obj, head) ? obj[head] : undefined;
    if (child && typeof child === "object" && !Array.isArray(child)) {
      const found = valueAt(child, key.slice(i + 1));
      if (found !== undefined) return found;
    }
  }
  return undefined;
}
