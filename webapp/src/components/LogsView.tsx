// The Logs tab: the run's console output, virtualised (only the lines in view are in the DOM; pages of
// PAGE lines are fetched as they scroll into view), searchable on the server (q), downloadable whole.
// While the run is live (`tick` changes) the tail is fetched again and a view scrolled to the bottom
// follows it.
import { useEffect, useRef, useState } from "preact/hooks";
import { api } from "../api";
import type { LogLine } from "../types";
import { errorText } from "./common";

const PAGE = 500;
const LINE_H = 18;
const HEIGHT = 520;
const OVERSCAN = 30;

export function LogsView(props: { entity: string; project: string; id: string; tick: number }) {
  const { entity, project, id } = props;
  const [q, setQ] = useState("");
  const [draft, setDraft] = useState("");
  const [total, setTotal] = useState<number | null>(null);
  const [scrollTop, setScrollTop] = useState(0);
  const [, setVersion] = useState(0);
  const [error, setError] = useState<string | null>(null);
  const pages = useRef(new Map<number, LogLine[]>());
  const loading = useRef(new Set<number>());
  const box = useRef<HTMLDivElement>(null);
  const generation = useRef(0);

  const fetchPage = (i: number, force = false) => {
    if (!force && (pages.current.has(i) || loading.current.has(i))) return;
    loading.current.add(i);
    const gen = generation.current;
    api
      .logs(entity, project, id, i * PAGE, PAGE, q)
      .then((p) => {
        if (gen !== generation.current) return;
        pages.current.set(i, p.lines);
        setTotal(p.total);
        setError(null);
        setVersion((v) => v + 1);
      })
      .catch((exc) => gen === generation.current && setError(errorText(exc)))
      .finally(() => loading.current.delete(i));
  };

  useEffect(() => {
    generation.current++;
    pages.current.clear();
    loading.current.clear();
    setTotal(null);
    fetchPage(0, true);
  }, [entity, project, id, q]);

  useEffect(() => {
    if (props.tick === 0 || total === null) return;
    const el = box.current;
    const following = !!el && el.scrollTop + el.clientHeight >= el.scrollHeight - LINE_H * 2;
    const last = Math.max(0, Math.floor((total - 1) / PAGE));
    fetchPage(last, true);
    if (pages.current.get(last)?.length === PAGE) fetchPage(last + 1, true);
    if (following && el) requestAnimationFrame(() => (el.scrollTop = el.scrollHeight));
  }, [props.tick]);

  const count = total ?? 0;
  const first = Math.max(0, Math.floor(scrollTop / LINE_H) - OVERSCAN);
  const last = Math.min(count, Math.ceil((scrollTop + HEIGHT) / LINE_H) + OVERSCAN);
  const rows: { i: number; line: LogLine | undefined }[] = [];
  for (let i = first; i < last; i++) {
    const page = Math.floor(i / PAGE);
    if (!pages.current.has(page)) fetchPage(page);
    rows.push({ i, line: pages.current.get(page)?.[i % PAGE] });
  }
  return (
    <div data-testid="logs">
      <div class="toolbar">
        <input
          type="search"
          aria-label="search logs"
          placeholder="Search logs"
          value={draft}
          onInput={(e) => setDraft(e.currentTarget.value)}
          onKeyDown={(e) => e.key === "Enter" && setQ(draft)}
        />
        <button onClick={() => setQ(draft)}>Search</button>
        <span class="muted" data-testid="log-count">
          {total === null ? "" : `${total} line${total === 1 ? "" : "s"}${q ? ` matching "${q}"` : ""}`}
        </span>
        <a class="button" href={api.logsUrl(entity, project, id)} download>
          Download
        </a>
      </div>
      {error && <p class="error">{error}</p>}
      <div
        class="logbox"
        ref={box}
        style={{ height: `${HEIGHT}px` }}
        onScroll={(e) => setScrollTop(e.currentTarget.scrollTop)}
      >
        <div style={{ height: `${count * LINE_H}px`, position: "relative" }}>
          {rows.map(({ i, line }) => (
            <div
              key={i}
              class={`logline ${line?.stream === "stderr" ? "stderr" : ""}`}
              style={{ top: `${i * LINE_H}px`, height: `${LINE_H}px` }}
              data-testid="log-line"
            >
              <span class="lineno">{line ? line.n : ""}</span>
              {line ? line.text : "…"}
            </div>
          ))}
        </div>
      </div>
    </div>
  );
}
