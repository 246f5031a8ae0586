// The run's Overview: every field of W&B's Overview section, with the description (notes) and tags
// editable in place, then the config and the summary.
import type { ComponentChildren } from "preact";
import { formatBytes, formatDuration, formatTime, formatValue } from "../format";
import type { JsonValue, Run } from "../types";
import { EditableText, TagEditor } from "./common";

function Row(props: { label: string; children: ComponentChildren }) {
  return (
    <tr data-field={props.label}>
      <th>{props.label}</th>
      <td>{props.children}</td>
    </tr>
  );
}

function text(v: JsonValue | undefined): string {
  return v === undefined || v === null ? "" : formatValue(v);
}

const BYTE_KEYS = new Set(["total", "used", "available", "free", "memory_total"]);

/** A hardware fact; byte counts (memory, disk) read as sizes. */
function hardwareText(v: JsonValue): string {
  if (v && typeof v === "object" && !Array.isArray(v)) {
    return Object.entries(v)
      .map(([k, x]) => `${k} ${typeof x === "number" && BYTE_KEYS.has(k) ? formatBytes(x) : text(x)}`)
      .join(", ");
  }
  return text(v);
}

function Hardware({ hw }: { hw: Record<string, JsonValue> | null | undefined }) {
  if (!hw || Object.keys(hw).length === 0) return <span class="muted">unknown</span>;
  return (
    <span>
      {Object.entries(hw).map(([k, v]) => (
        <span class="kv" key={k}>
          {k}: {hardwareText(v)}
        </span>
      ))}
    </span>
  );
}

export function KeyValues(props: { data: Record<string, JsonValue>; testid: string }) {
  const entries = Object.entries(props.data);
  if (entries.length === 0) return <p class="muted">None.</p>;
  return (
    <table class="grid kv-table" data-testid={props.testid}>
      <tbody>
        {entries
          .sort(([a], [b]) => a.localeCompare(b))
          .map(([k, v]) => (
            <tr key={k}>
              <th>{k}</th>
              <td>{text(v)}</td>
            </tr>
          ))}
      </tbody>
    </table>
  );
}

export function RunOverview(props: {
  run: Run;
  onNotes: (notes: string) => Promise<void>;
  onTags: (tags: string[]) => Promise<void>;
}) {
  const { run } = props;
  const m = run.metadata ?? {};
  const git = m.git ?? null;
  return (
    <div class="overview" data-testid="overview">
      <table class="grid fields">
        <tbody>
          <Row label="Author">{run.user ?? run.entity}</Row>
          <Row label="Command">
            <code>{text(m.command)}</code>
          </Row>
          <Row label="Description">
            <EditableText
              value={run.notes ?? ""}
              placeholder="Add a description…"
              multiline
              testid="notes"
              onSave={props.onNotes}
            />
          </Row>
          <Row label="Runtime">{formatDuration(run.runtime)}</Row>
          <Row label="Tracked hours">
            {run.tracked_hours === null ? "" : run.tracked_hours.toFixed(run.tracked_hours < 1 ? 4 : 2)}
          </Row>
          <Row label="Git repository">{text(git?.remote)}</Row>
          <Row label="Git state">
            <code>{text(git?.commit)}</code>
            {git?.diff ? (
              <details>
                <summary>diff ({git.diff.split("\n").length} lines)</summary>
                <pre class="diff">{git.diff}</pre>
              </details>
            ) : null}
          </Row>
          <Row label="Host name">{run.host ?? ""}</Row>
          <Row label="Name">{run.name}</Row>
          <Row label="OS">{text(m.os)}</Row>
          <Row label="Python executable">{text(m.executable as JsonValue | undefined)}</Row>
          <Row label="Python version">{text(m.python)}</Row>
          <Row label="Run path">
            <code>
              {run.entity}/{run.project}/{run.id}
            </code>
          </Row>
          <Row label="Start time">{formatTime(run.created_at)}</Row>
          <Row label="State">
            <span class={`state state-${run.state}`} data-testid="run-state">
              {run.state}
            </span>
          </Row>
          <Row label="System hardware">
            <Hardware hw={m.hardware} />
          </Row>
          <Row label="Tags">
            <TagEditor tags={run.tags} onChange={props.onTags} />
          </Row>
          <Row label="tracklog version">{text(m.tracklog_version)}</Row>
          <Row label="Group">{run.group ?? ""}</Row>
          <Row label="Job type">{run.job_type ?? ""}</Row>
          <Row label="Rows">
            {run.rows}
            {run.rows_lost > 0 && <span class="error"> ({run.rows_lost} lost)</span>}
          </Row>
          {run.problems.length > 0 && (
            <Row label="Problems">
              <ul class="problems">
                {run.problems.map((p, i) => (
                  <li key={i}>{p}</li>
                ))}
              </ul>
            </Row>
          )}
        </tbody>
      </table>
      <h3>Config</h3>
      <KeyValues data={run.config} testid="config" />
      <h3>Summary</h3>
      <KeyValues data={run.summary} testid="summary" />
    </div>
  );
}
