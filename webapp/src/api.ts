// The one place the app talks to the server: every call goes to /api/v1 on the page's own origin, so
// the token cookie of the embedded store travels with it. Mutations carry X-Tracklog-Request, a header
// a cross-site form cannot send; the server refuses mutations without it.
import type {
  BulkAction,
  HistoryData,
  LogPage,
  ProjectDescription,
  ProjectSummary,
  Run,
  RunFile,
  RunGroup,
  RunPage,
} from "./types";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

const BASE = "/api/v1";

function enc(part: string): string {
  return encodeURIComponent(part);
}

export function runPath(entity: string, project: string, id: string): string {
  return `${BASE}/runs/${enc(entity)}/${enc(project)}/${enc(id)}`;
}

function projectPath(entity: string, project: string): string {
  return `${BASE}/projects/${enc(entity)}/${enc(project)}`;
}

function query(params: Record<string, string | number | null | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== null && v !== undefined && v !== "") q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

async function request<T>(method: string, url: string, body?: unknown, signal?: AbortSignal): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (method !== "GET") headers["X-Tracklog-Request"] = "1";
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const init: RequestInit = { method, headers, credentials: "same-origin" };
  if (body !== undefined) init.body = JSON.stringify(body);
  if (signal) init.signal = signal;
  let response: Response;
  try {
    response = await fetch(url, init);
  } catch (exc) {
    if (exc instanceof DOMException && exc.name === "AbortError") throw exc;
    throw new ApiError(0, `the server did not answer (${String(exc)})`);
  }
  const text = await response.text();
  let data: unknown = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    // A proxy's HTML error page: say what came back rather than a JSON parse error.
    throw new ApiError(response.status, `${response.status} ${response.statusText}: ${text.slice(0, 200)}`);
  }
  if (!response.ok) {
    const message =
      data && typeof data === "object" && "error" in data ? String((data as { error: unknown }).error) : text;
    throw new ApiError(response.status, message || `${response.status} ${response.statusText}`);
  }
  return data as T;
}

/** tracklog's own config key (define_metric's definitions). It stays in the run's config, as wandb
 * keeps `_wandb` there, and the app hides it from people as wandb's UI hides its own. */
export const RESERVED_CONFIG_KEY = "_tracklog";

function isReserved(key: string): boolean {
  return key === RESERVED_CONFIG_KEY || key.startsWith(RESERVED_CONFIG_KEY + ".");
}

function withoutReservedKeys(desc: ProjectDescription): ProjectDescription {
  return { ...desc, config_keys: desc.config_keys.filter((k) => !isReserved(k.key)) };
}

function withoutReservedConfig(run: Run): Run {
  if (!(RESERVED_CONFIG_KEY in run.config)) return run;
  const config = { ...run.config };
  delete config[RESERVED_CONFIG_KEY];
  return { ...run, config };
}

export interface RunQuery {
  filter: unknown | null;
  order: string;
  search: string;
  perPage: number;
  cursor?: string | null;
}

export const api = {
  projects: () => request<{ projects: ProjectSummary[] }>("GET", `${BASE}/projects`),
  project: async (entity: string, project: string) =>
    withoutReservedKeys(await request<ProjectDescription>("GET", projectPath(entity, project))),
  runs: (entity: string, project: string, q: RunQuery, signal?: AbortSignal) =>
    request<RunPage>(
      "GET",
      projectPath(entity, project) +
        "/runs" +
        query({
          filter: q.filter ? JSON.stringify(q.filter) : null,
          order: q.order,
          search: q.search,
          per_page: q.perPage,
          cursor: q.cursor ?? null,
        }),
      undefined,
      signal,
    ),
  groups: (entity: string, project: string, by: string, filter: unknown | null, signal?: AbortSignal) =>
    request<{ groups: RunGroup[] }>(
      "GET",
      projectPath(entity, project) + "/groups" + query({ by, filter: filter ? JSON.stringify(filter) : null }),
      undefined,
      signal,
    ),
  bulk: (entity: string, project: string, ids: string[], action: BulkAction) =>
    request<{ changed: number }>("POST", projectPath(entity, project) + "/runs/bulk", { ids, ...action }),
  run: async (entity: string, project: string, id: string, signal?: AbortSignal) =>
    withoutReservedConfig(await request<Run>("GET", runPath(entity, project, id), undefined, signal)),
  updateRun: (
    entity: string,
    project: string,
    id: string,
    fields: Partial<Pick<Run, "name" | "notes" | "tags" | "group" | "job_type">>,
  ) => request<Run>("PATCH", runPath(entity, project, id), fields).then(withoutReservedConfig),
  stopRun: (entity: string, project: string, id: string) =>
    request<Run>("POST", runPath(entity, project, id) + "/stop").then(withoutReservedConfig),
  deleteRun: (entity: string, project: string, id: string, deleteFiles: boolean) =>
    request<{ deleted: number }>("DELETE", runPath(entity, project, id) + query({ delete_files: String(deleteFiles) })),
  history: (
    entity: string,
    project: string,
    id: string,
    p: { keys: string[]; x: string; points: number; min?: number | null; max?: number | null },
    signal?: AbortSignal,
  ) =>
    request<HistoryData>(
      "GET",
      runPath(entity, project, id) +
        "/history" +
        query({ keys: p.keys.join(","), x: p.x, points: p.points, min: p.min ?? null, max: p.max ?? null }),
      undefined,
      signal,
    ),
  system: (entity: string, project: string, id: string, points: number, signal?: AbortSignal) =>
    request<HistoryData>("GET", runPath(entity, project, id) + "/system" + query({ points }), undefined, signal),
  logs: (entity: string, project: string, id: string, offset: number, limit: number, q: string, signal?: AbortSignal) =>
    request<LogPage>(
      "GET",
      runPath(entity, project, id) + "/logs" + query({ offset, limit, q }),
      undefined,
      signal,
    ),
  logsUrl: (entity: string, project: string, id: string) => runPath(entity, project, id) + "/logs.txt",
  files: (entity: string, project: string, id: string) =>
    request<{ files: RunFile[] }>("GET", runPath(entity, project, id) + "/files"),
  fileUrl: (entity: string, project: string, id: string, name: string, inline = false) =>
    runPath(entity, project, id) +
    "/files/" +
    name.split("/").map(enc).join("/") +
    (inline ? "?inline=1" : ""),
  fileText: async (entity: string, project: string, id: string, name: string): Promise<string> => {
    const response = await fetch(api.fileUrl(entity, project, id, name, true), {
      credentials: "same-origin",
      headers: { Range: "bytes=0-262143" },
    });
    if (!response.ok && response.status !== 206) throw new ApiError(response.status, await response.text());
    return response.text();
  },
};
