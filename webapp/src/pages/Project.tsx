// The project page (workspace): search, filter, group, the runs table, bulk actions and the charts of
// the visible runs. The view lives in the URL (viewstate.ts): every change rewrites the query string,
// and the page renders from it, so a copied URL opens the same view.
import type { RowSelectionState } from "@tanstack/table-core";
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { api } from "../api";
import { aggregate, keyColoring, runColor } from "../colors";
import { configNumber, projectColumns, typeLookup } from "../columns";
import { BulkBar } from "../components/BulkBar";
import { ErrorBanner, errorText } from "../components/common";
import { FilterBuilder } from "../components/FilterBuilder";
import { GroupsTable } from "../components/GroupsTable";
import { ProjectCharts, useRunsHistory } from "../components/ProjectCharts";
import { RunsTable } from "../components/RunsTable";
import { BucketLegend, ColorPanel, ColumnsPanel } from "../components/ViewPanels";
import { filterJson, type FilterJson } from "../filter";
import { asNumber } from "../format";
import { navigate, projectHref } from "../router";
import type { BulkAction, ProjectDescription, RunGroup, RunPage } from "../types";
import { orderedColumns, readView, sortOrder, writeView, type ViewState } from "../viewstate";

type Panel = "filter" | "columns" | "colors" | null;

// While a run shown is running, the page asks again this often: the table's states, runtimes and
// summaries, the project's keys, and the running runs' charts.
const LIVE_POLL_MS = 3000;

export function ProjectPage(props: { entity: string; project: string; search: string }) {
  const { entity, project } = props;
  const view = readView(props.search);
  const [desc, setDesc] = useState<ProjectDescription | null>(null);
  const [page, setPage] = useState<RunPage | null>(null);
  const [groups, setGroups] = useState<RunGroup[] | null>(null);
  const [cursors, setCursors] = useState<(string | null)[]>([null]);
  const [selected, setSelected] = useState<RowSelectionState>({});
  const [panel, setPanel] = useState<Panel>(null);
  const [error, setError] = useState<string | null>(null);
  const [reload, setReload] = useState(0);
  const [tick, setTick] = useState(0);
  // Runs requests answered while the page is live, and failed ones: the live poll's clock. (Not
  // counted otherwise: one more render of a large table after each answer delays its paint.)
  const [answers, setAnswers] = useState(0);
  const liveRef = useRef(false);
  const [searchDraft, setSearchDraft] = useState(view.search);

  const setView = (next: Partial<ViewState>) => {
    const q = writeView({ ...view, ...next });
    setCursors([null]);
    navigate(projectHref(entity, project) + (q ? `?${q}` : ""), true);
  };

  useEffect(() => {
    document.title = `${entity}/${project} · tracklog`;
    api
      .project(entity, project)
      .then(setDesc)
      .catch((exc) => setError(errorText(exc)));
  }, [entity, project, reload, tick]);

  const columns = useMemo(() => projectColumns(desc), [desc]);
  const typeOf = typeLookup(columns);
  let filter: FilterJson | null = null;
  let filterError: string | null = null;
  try {
    filter = filterJson(view.filter, typeOf);
  } catch (exc) {
    filterError = errorText(exc);
  }
  const filterKey = JSON.stringify(filter);
  const cursor = cursors[cursors.length - 1] ?? null;

  useEffect(() => {
    if (filterError) return;
    const ctl = new AbortController();
    const started = performance.now();
    api
      .runs(entity, project, { filter, order: view.order, search: view.search, perPage: view.perPage, cursor }, ctl.signal)
      .then((p) => {
        setPage(p);
        setError(null);
        // Read by scripts/bench: the last table request until its rows are painted, and when (ms since
        // the page's navigation began) rows were first shown.
        requestAnimationFrame(() => {
          const now = performance.now();
          document.body.dataset.tableMs = String(Math.round(now - started));
          document.body.dataset.tableShownAt ??= String(Math.round(now));
        });
      })
      .then(
        () => liveRef.current && setAnswers((n) => n + 1),
        (exc) => {
          if (ctl.signal.aborted) return;
          setError(errorText(exc));
          setAnswers((n) => n + 1);
        },
      );
    return () => ctl.abort();
  }, [entity, project, filterKey, view.order, view.search, view.perPage, cursor, reload, tick]);

  useEffect(() => {
    if (!view.group || filterError) {
      setGroups(null);
      return;
    }
    const ctl = new AbortController();
    api
      .groups(entity, project, view.group, filter, ctl.signal)
      .then((g) => setGroups(g.groups))
      .catch((exc) => ctl.signal.aborted || setError(errorText(exc)));
    return () => ctl.abort();
  }, [entity, project, view.group, filterKey, reload, tick]);

  const runs = page?.runs ?? [];
  const live = runs.some((r) => r.state === "running");
  liveRef.current = live;
  // The next look is due LIVE_POLL_MS after the last answer, a failed one too (a store restarting
  // must not end the page's updates), so requests never pile up behind a slow server.
  useEffect(() => {
    if (!live) return;
    const timer = window.setTimeout(() => setTick((n) => n + 1), LIVE_POLL_MS);
    return () => window.clearTimeout(timer);
  }, [live, answers]);
  const metricKeys = desc?.metric_keys ?? [];
  const history = useRunsHistory(entity, project, runs, metricKeys);

  const spec = view.color;
  const coloring = useMemo(() => {
    if (!spec) return null;
    const values = new Map<string, number | null>();
    for (const r of runs) {
      if (spec.key.startsWith("config.")) {
        values.set(r.id, configNumber(r, spec.key.slice("config.".length)));
      } else {
        // The store keeps each metric's last, min and max over the whole history; the charts' series
        // (downsampled keeping bucket extremes) stand in for a server that does not send them.
        const stats = r.metrics?.find((m) => m.key === spec.key);
        const s = history.get(r.id)?.[spec.key];
        const fromStats = stats ? asNumber(spec.agg === "latest" ? stats.last : stats[spec.agg]) : null;
        const v = fromStats !== null ? fromStats : s ? aggregate(s.y, spec.agg) : null;
        values.set(r.id, v !== null && Number.isFinite(v) ? v : null);
      }
    }
    return keyColoring(values, spec.buckets);
  }, [spec?.key, spec?.agg, spec?.buckets, runs, history]);
  const indexOf = new Map(runs.map((r, i) => [r.id, i]));
  const colorOf = (id: string) => coloring?.colorOf.get(id) ?? runColor(indexOf.get(id) ?? 0);

  const ordered = orderedColumns(
    columns.map((c) => c.id),
    view,
  );
  const byId = new Map(columns.map((c) => [c.id, c]));
  const orderedInfo = ordered.flatMap((id) => (byId.get(id) ? [byId.get(id)!] : []));
  const move = (id: string, target: number) => {
    const ids = ordered.filter((x) => x !== id);
    ids.splice(Math.max(0, Math.min(ids.length, target)), 0, id);
    setView({ columns: ids });
  };
  const selectedIds = Object.keys(selected).filter((id) => selected[id]);
  const bulk = async (a: BulkAction) => {
    try {
      await api.bulk(entity, project, selectedIds, a);
      if (a.action === "delete") setSelected({});
      setReload((n) => n + 1);
    } catch (exc) {
      setError(errorText(exc));
    }
  };
  const toggle = (p: Panel) => setPanel(panel === p ? null : p);

  return (
    <section class="project">
      <h1>
        <a href="/">{entity}</a> / {project}{" "}
        <span class="muted" data-testid="run-total">
          {page ? `${page.total} run${page.total === 1 ? "" : "s"}` : ""}
        </span>
      </h1>
      <ErrorBanner error={error ?? filterError} onClose={() => setError(null)} />
      <div class="toolbar">
        <input
          type="search"
          placeholder="Search names (or /regex/)"
          aria-label="search"
          value={searchDraft}
          onInput={(e) => setSearchDraft(e.currentTarget.value)}
          onKeyDown={(e) => e.key === "Enter" && setView({ search: searchDraft })}
          onBlur={() => searchDraft !== view.search && setView({ search: searchDraft })}
        />
        <button class={view.filter.conds.length ? "active" : ""} onClick={() => toggle("filter")}>
          Filter{view.filter.conds.length ? ` (${view.filter.conds.length})` : ""}
        </button>
        <label>
          Group{" "}
          <select
            aria-label="group by"
            value={view.group ?? ""}
            onChange={(e) => setView({ group: e.currentTarget.value || null })}
          >
            <option value="">(none)</option>
            {columns
              .filter((c) => c.id !== "name" && c.id !== "notes" && c.id !== "created_at")
              .map((c) => (
                <option value={c.id} key={c.id}>
                  {c.id}
                </option>
              ))}
          </select>
        </label>
        <button onClick={() => toggle("columns")}>Columns</button>
        <button class={view.color ? "active" : ""} onClick={() => toggle("colors")}>
          Colours
        </button>
      </div>
      {panel === "filter" && (
        <FilterBuilder columns={columns} value={view.filter} onApply={(m) => setView({ filter: m })} />
      )}
      {panel === "columns" && (
        <ColumnsPanel
          columns={orderedInfo}
          hidden={view.hidden}
          pinned={view.pinned}
          onToggle={(id) =>
            setView({ hidden: view.hidden.includes(id) ? view.hidden.filter((x) => x !== id) : [...view.hidden, id] })
          }
          onPin={(id, pin) => setView({ pinned: pin ? [...view.pinned, id] : view.pinned.filter((x) => x !== id) })}
          onMove={(id, d) => move(id, ordered.indexOf(id) + d)}
        />
      )}
      {panel === "colors" && (
        <ColorPanel
          metricKeys={metricKeys}
          configKeys={(desc?.config_keys ?? []).filter((k) => k.type === "number").map((k) => k.key)}
          value={view.color}
          onChange={(c) => setView({ color: c })}
        />
      )}
      {view.group && groups && (
        <GroupsTable
          by={view.group}
          groups={groups}
          onPick={(value) =>
            setView({
              group: null,
              filter: { join: "and", conds: [...view.filter.conds, { key: view.group ?? "", op: "=", value }] },
            })
          }
        />
      )}
      {selectedIds.length > 0 && <BulkBar count={selectedIds.length} onAction={bulk} onClear={() => setSelected({})} />}
      <RunsTable
        entity={entity}
        project={project}
        runs={runs}
        columns={orderedInfo}
        hidden={view.hidden}
        pinned={view.pinned}
        order={view.order}
        selected={selected}
        onSelect={setSelected}
        onSort={(field, dir) => setView({ order: sortOrder(field, dir) })}
        onPin={(id, pin) => setView({ pinned: pin ? [...view.pinned, id] : view.pinned.filter((x) => x !== id) })}
        onHide={(id) => setView({ hidden: [...view.hidden, id] })}
        onMove={(id, before) => move(id, ordered.filter((x) => x !== id).indexOf(before))}
        colorOf={colorOf}
      />
      <div class="pager">
        <button disabled={cursors.length <= 1} onClick={() => setCursors(cursors.slice(0, -1))}>
          ‹ Previous
        </button>
        <button disabled={!page?.next_cursor} onClick={() => page?.next_cursor && setCursors([...cursors, page.next_cursor])}>
          Next ›
        </button>
      </div>
      <h2>Charts</h2>
      {spec && coloring && <BucketLegend spec={spec} legend={coloring.legend} />}
      <ProjectCharts runs={runs} metricKeys={metricKeys} history={history} colorOf={colorOf} />
    </section>
  );
}
