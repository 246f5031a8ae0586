// The app's routes, the wandb URL shapes: /, /<entity>/<project>, /<entity>/<project>/runs/<id>
// (and /<entity>/<project>/<id>, which the app rewrites to the runs/ form).
import { useEffect, useState } from "preact/hooks";

export type Route =
  | { page: "home" }
  | { page: "project"; entity: string; project: string }
  | { page: "run"; entity: string; project: string; id: string }
  | { page: "missing"; path: string };

function decode(part: string): string | null {
  try {
    return decodeURIComponent(part);
  } catch {
    return null;
  }
}

export function parseRoute(pathname: string): Route {
  const parts = pathname.split("/").filter((p) => p !== "");
  const decoded = parts.map(decode);
  if (decoded.some((p) => p === null)) return { page: "missing", path: pathname };
  const [a, b, c, d] = decoded as string[];
  if (parts.length === 0) return { page: "home" };
  if (parts.length === 2 && a && b) return { page: "project", entity: a, project: b };
  if (parts.length === 4 && a && b && c === "runs" && d) return { page: "run", entity: a, project: b, id: d };
  if (parts.length === 3 && a && b && c) return { page: "run", entity: a, project: b, id: c };
  return { page: "missing", path: pathname };
}

export function projectHref(entity: string, project: string): string {
  return `/${encodeURIComponent(entity)}/${encodeURIComponent(project)}`;
}

export function runHref(entity: string, project: string, id: string): string {
  return `${projectHref(entity, project)}/runs/${encodeURIComponent(id)}`;
}

const listeners = new Set<() => void>();

export function navigate(href: string, replace = false): void {
  if (replace) history.replaceState(null, "", href);
  else history.pushState(null, "", href);
  for (const l of listeners) l();
}

/** The current location, re-rendering on navigation (links, back/forward). */
export function useLocation(): { pathname: string; search: string } {
  const [loc, setLoc] = useState({ pathname: location.pathname, search: location.search });
  useEffect(() => {
    const update = () => setLoc({ pathname: location.pathname, search: location.search });
    listeners.add(update);
    window.addEventListener("popstate", update);
    return () => {
      listeners.delete(update);
      window.removeEventListener("popstate", update);
    };
  }, []);
  return loc;
}

/** A plain left click on an in-app link navigates without a page load; other clicks behave as links. */
export function onLinkClick(e: MouseEvent): void {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const a = (e.target as Element | null)?.closest?.("a");
  if (!a || a.target || a.hasAttribute("download")) return;
  const href = a.getAttribute("href");
  if (!href || !href.startsWith("/") || href.startsWith("/api/")) return;
  e.preventDefault();
  navigate(href);
}
