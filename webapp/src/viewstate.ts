// The project page's view (search, filter, sort, grouping, columns, colours) and its URL form: every
// choice lives in the query string, so a copied URL opens the same view. Reading never throws: a hand-
// edited or truncated URL falls back, field by field, to the default.
import { clampBuckets, type Aggregate, type ColorSpec } from "./colors";
import { EMPTY_FILTER, parseFilterModel, type FilterModel } from "./filter";

export interface ViewState {
  search: string;
  filter: FilterModel;
  /** The server's order: a field with + or - (e.g. "-created_at", "+config.lr"). */
  order: string;
  group: string | null;
  /** Column ids in display order; columns not listed follow in their natural order. */
  columns: string[];
  hidden: string[];
  pinned: string[];
  color: ColorSpec | null;
  /** Runs per page of the table. */
  perPage: number;
}

export const DEFAULT_ORDER = "-created_at";

export const DEFAULT_VIEW: ViewState = {
  search: "",
  filter: EMPTY_FILTER,
  order: DEFAULT_ORDER,
  group: null,
  columns: [],
  hidden: [],
  pinned: [],
  color: null,
  perPage: 50,
};

function stringList(text: string | null): string[] {
  if (!text) return [];
  try {
    const raw: unknown = JSON.parse(text);
    return Array.isArray(raw) ? raw.filter((x): x is string => typeof x === "string") : [];
  } catch {
    return [];
  }
}

const ORDER_RE = /^[+-]?[^\s]+$/;

export function readView(search: string): ViewState {
  const q = new URLSearchParams(search);
  const order = q.get("sort");
  const colorKey = q.get("color");
  const agg = q.get("agg");
  const perPage = Number(q.get("per_page"));
  return {
    search: q.get("q") ?? "",
    filter: parseFilterModel(q.get("filter")),
    order: order && ORDER_RE.test(order) ? order : DEFAULT_ORDER,
    group: q.get("group") || null,
    columns: stringList(q.get("cols")),
    hidden: stringList(q.get("hide")),
    pinned: stringList(q.get("pin")),
    color: colorKey
      ? {
          key: colorKey,
          agg: agg === "min" || agg === "max" ? (agg as Aggregate) : "latest",
          buckets: clampBuckets(Number(q.get("buckets") ?? 4)),
        }
      : null,
    perPage: Number.isInteger(perPage) && perPage >= 10 && perPage <= 500 ? perPage : DEFAULT_VIEW.perPage,
  };
}

/** The query string of a view (without "?"); defaults are left out so URLs stay short. */
export function writeView(v: ViewState): string {
  const q = new URLSearchParams();
  if (v.search) q.set("q", v.search);
  if (v.filter.conds.length > 0) q.set("filter", JSON.stringify(v.filter));
  if (v.order !== DEFAULT_ORDER) q.set("sort", v.order);
  if (v.group) q.set("group", v.group);
  if (v.columns.length > 0) q.set("cols", JSON.stringify(v.columns));
  if (v.hidden.length > 0) q.set("hide", JSON.stringify(v.hidden));
  if (v.pinned.length > 0) q.set("pin", JSON.stringify(v.pinned));
  if (v.color) {
    q.set("color", v.color.key);
    q.set("agg", v.color.agg);
    q.set("buckets", String(v.color.buckets));
  }
  if (v.perPage !== DEFAULT_VIEW.perPage) q.set("per_page", String(v.perPage));
  return q.toString();
}

/** Column ids in display order: the view's order first (those that exist), then the rest as given. */
export function orderedColumns(all: readonly string[], v: Pick<ViewState, "columns" | "pinned">): string[] {
  const known = new Set(all);
  const seen = new Set<string>();
  const out: string[] = [];
  for (const id of [...v.columns, ...all]) {
    if (known.has(id) && !seen.has(id)) {
      seen.add(id);
      out.push(id);
    }
  }
  // Pinned columns sit right after the name, in pin order (as W&B pins them).
  const pinned = v.pinned.filter((id) => known.has(id) && id !== "name");
  const rest = out.filter((id) => id !== "name" && !pinned.includes(id));
  return known.has("name") ? ["name", ...pinned, ...rest] : [...pinned, ...rest];
}

/** The order string after a click on a column's sort: asc, then desc. */
export function sortOrder(field: string, dir: "asc" | "desc"): string {
  return `${dir === "asc" ? "+" : "-"}${field}`;
}

export function parseOrder(order: string): { field: string; dir: "asc" | "desc" } {
  if (order.startsWith("-")) return { field: order.slice(1), dir: "desc" };
  if (order.startsWith("+")) return { field: order.slice(1), dir: "asc" };
  return { field: order, dir: "asc" };
}
