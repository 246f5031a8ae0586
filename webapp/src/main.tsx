import { render } from "preact";
import { useEffect } from "preact/hooks";
import "./style.css";
import { HomePage } from "./pages/Home";
import { ProjectPage } from "./pages/Project";
import { RunPage } from "./pages/Run";
import { onLinkClick, parseRoute, runHref, useLocation } from "./router";

function App() {
  const loc = useLocation();
  const route = parseRoute(loc.pathname);
  useEffect(() => {
    // The embedded store's token arrives once as ?token=; the server has set its cookie by now, so the
    // address bar (and any URL copied from it) drops it.
    const q = new URLSearchParams(location.search);
    if (q.has("token")) {
      q.delete("token");
      const rest = q.toString();
      history.replaceState(null, "", location.pathname + (rest ? `?${rest}` : ""));
    }
    if (route.page === "run" && !loc.pathname.includes("/runs/")) {
      history.replaceState(null, "", runHref(route.entity, route.project, route.id));
    }
  }, [loc.pathname]);
  useEffect(() => {
    document.addEventListener("click", onLinkClick);
    return () => document.removeEventListener("click", onLinkClick);
  }, []);

  let page;
  if (route.page === "home") page = <HomePage />;
  else if (route.page === "project")
    page = <ProjectPage key={`${route.entity}/${route.project}`} entity={route.entity} project={route.project} search={loc.search} />;
  else if (route.page === "run")
    page = <RunPage key={`${route.entity}/${route.project}/${route.id}`} entity={route.entity} project={route.project} id={route.id} />;
  else page = <p class="error">No page at {route.path}.</p>;
  return (
    <>
      <header class="topbar">
        <a href="/" class="brand">
          tracklog
        </a>
      </header>
      <main>{page}</main>
    </>
  );
}

const root = document.getElementById("app");
if (root) render(<App />, root);
