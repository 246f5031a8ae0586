// The list of projects, newest activity first.
import { useEffect, useState } from "preact/hooks";
import { api } from "../api";
import { ErrorBanner, errorText } from "../components/common";
import { formatTime } from "../format";
import { projectHref } from "../router";
import type { ProjectSummary } from "../types";

export function HomePage() {
  const [projects, setProjects] = useState<ProjectSummary[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    document.title = "Projects · tracklog";
    api
      .projects()
      .then((r) => setProjects(r.projects))
      .catch((exc) => setError(errorText(exc)));
  }, []);
  return (
    <section>
      <h1>Projects</h1>
      <ErrorBanner error={error} />
      {projects === null && !error && <p class="muted">Loading…</p>}
      {projects && projects.length === 0 && <p class="muted">No runs yet: log one with tracklog.init().</p>}
      {projects && projects.length > 0 && (
        <table class="grid" data-testid="projects">
          <thead>
            <tr>
              <th>Project</th>
              <th>Runs</th>
              <th>Last run</th>
            </tr>
          </thead>
          <tbody>
            {projects.map((p) => (
              <tr key={`${p.entity}/${p.project}`}>
                <td>
                  <a href={projectHref(p.entity, p.project)}>
                    {p.entity}/{p.project}
                  </a>
                </td>
                <td>{p.run_count}</td>
                <td>{formatTime(p.last_run_at)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
