// The run page: name (rename in place), state, the actions (stop while running, delete), and the tabs
// Overview, Charts, System, Logs, Files. While the run is running the page polls every POLL_MS, so
// new rows, log lines and the final state show without a reload (within 2 s).
import { useEffect, useState } from "preact/hooks";
import { api } from "../api";
import { DeleteDialog, EditableText, ErrorBanner, errorText } from "../components/common";
import { FilesView } from "../components/FilesView";
import { LogsView } from "../components/LogsView";
import { RunCharts, SystemCharts } from "../components/RunCharts";
import { RunOverview } from "../components/RunOverview";
import { navigate, projectHref } from "../router";
import type { ProjectDescription, Run } from "../types";

const POLL_MS = 1000;
const TABS = ["overview", "charts", "system", "logs", "files"] as const;
type Tab = (typeof TABS)[number];

function tabFromHash(): Tab {
  const h = location.hash.slice(1);
  return (TABS as readonly string[]).includes(h) ? (h as Tab) : "overview";
}

export function RunPage(props: { entity: string; project: string; id: string }) {
  const { entity, project, id } = props;
  const [run, setRun] = useState<Run | null>(null);
  // undefined while loading: the charts wait for it, so they ask for their keys once.
  const [desc, setDesc] = useState<ProjectDescription | null | undefined>(undefined);
  const [tab, setTab] = useState<Tab>(tabFromHash());
  const [tick, setTick] = useState(0);
  const [error, setError] = useState<string | null>(null);
  const [confirm, setConfirm] = useState(false);
  const [stopping, setStopping] = useState(false);

  useEffect(() => {
    api
      .run(entity, project, id)
      .then(setRun)
      .catch((exc) => setError(errorText(exc)));
    api
      .project(entity, project)
      .then(setDesc)
      .catch(() => setDesc(null));
  }, [entity, project, id]);

  useEffect(() => {
    if (run) document.title = `${run.name || run.id} · ${entity}/${project} · tracklog`;
  }, [run?.name]);

  // Live: poll the run while it runs; each answer moves `tick`, on which the tabs refetch their data.
  const live = run?.state === "running";
  useEffect(() => {
    if (!live) return;
    let stopped = false;
    let timer = 0;
    const poll = async () => {
      try {
        const r = await api.run(entity, project, id);
        if (stopped) return;
        setRun(r);
        setTick((t) => t + 1);
        if (r.state !== "running") return;
      } catch (exc) {
        if (!stopped) setError(errorText(exc));
      }
      if (!stopped) timer = window.setTimeout(() => void poll(), POLL_MS);
    };
    timer = window.setTimeout(() => void poll(), POLL_MS);
    return () => {
      stopped = true;
      window.clearTimeout(timer);
    };
  }, [live, entity, project, id]);

  const edit = async (fields: Parameters<typeof api.updateRun>[3]) => {
    try {
      setRun(await api.updateRun(entity, project, id, fields));
      setError(null);
    } catch (exc) {
      setError(errorText(exc));
      throw exc;
    }
  };
  const stop = async () => {
    setStopping(true);
    try {
      setRun(await api.stopRun(entity, project, id));
    } catch (exc) {
      setError(errorText(exc));
    } finally {
      setStopping(false);
    }
  };
  const remove = async (deleteFiles: boolean) => {
    setConfirm(false);
    try {
      await api.deleteRun(entity, project, id, deleteFiles);
      navigate(projectHref(entity, project));
    } catch (exc) {
      setError(errorText(exc));
    }
  };
  const choose = (t: Tab) => {
    setTab(t);
    history.replaceState(null, "", `${location.pathname}${location.search}#${t}`);
  };

  if (!run) {
    return (
      <section>
        <ErrorBanner error={error} />
        {!error && <p class="muted">Loading…</p>}
      </section>
    );
  }
  const metricKeys = desc?.metric_keys ?? Object.keys(run.summary).filter((k) => !k.startsWith("_"));
  const chartsReady = desc !== undefined;
  return (
    <section class="run">
      <p class="crumbs">
        <a href="/">{entity}</a> / <a href={projectHref(entity, project)}>{project}</a> / {run.id}
      </p>
      <h1 class="run-title">
        <EditableText
          value={run.name}
          placeholder="(unnamed)"
          testid="run-name"
          onSave={(name) => edit({ name })}
        />{" "}
        <span class={`state state-${run.state}`} data-testid="title-state">
          {run.state}
        </span>
        {live && <span class="live" title="updating live">● live</span>}
      </h1>
      <div class="actions">
        {run.state === "running" && (
          <button onClick={() => void stop()} disabled={stopping} data-testid="stop">
            {stopping ? "Stopping…" : "Stop run"}
          </button>
        )}
        <button class="danger" onClick={() => setConfirm(true)} data-testid="delete">
          Delete run
        </button>
      </div>
      <ErrorBanner error={error} onClose={() => setError(null)} />
      <nav class="tabs" role="tablist">
        {TABS.map((t) => (
          <button
            key={t}
            role="tab"
            aria-selected={tab === t}
            class={tab === t ? "active" : ""}
            onClick={() => choose(t)}
          >
            {t[0]?.toUpperCase() + t.slice(1)}
          </button>
        ))}
      </nav>
      {tab === "overview" && (
        <RunOverview run={run} onNotes={(notes) => edit({ notes })} onTags={(tags) => edit({ tags })} />
      )}
      {tab === "charts" && chartsReady && (
        <RunCharts entity={entity} project={project} id={id} keys={metricKeys} tick={tick} />
      )}
      {tab === "system" && <SystemCharts entity={entity} project={project} id={id} tick={tick} />}
      {tab === "logs" && <LogsView entity={entity} project={project} id={id} tick={tick} />}
      {tab === "files" && <FilesView entity={entity} project={project} id={id} tick={tick} />}
      {confirm && <DeleteDialog what={`run ${run.name || run.id}`} onConfirm={remove} onClose={() => setConfirm(false)} />}
    </section>
  );
}
