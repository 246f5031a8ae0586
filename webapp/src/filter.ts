// The filter builder's model and its translation to the server's filter JSON (the MongoDB-style filter
// of the runs API: {"$and": [{"state": "finished"}, {"config.lr": {"$lt": 0.1}}]}). The model is what
// the URL keeps, so a shared view rebuilds the same rows in the builder; the JSON is derived from it.

export const FILTER_OPS = ["=", "!=", "<", "<=", ">", ">=", "in", "not in"] as const;
export type FilterOp = (typeof FILTER_OPS)[number];

export interface Condition {
  key: string;
  op: FilterOp;
  /** As the user typed it; for "in"/"not in" a comma-separated list. */
  value: string;
}

export interface FilterModel {
  join: "and" | "or";
  conds: Condition[];
}

export type KeyType = "number" | "string" | "bool" | "other" | "time" | "list";
export type FilterJson = Record<string, unknown>;

const MONGO_OP: Record<FilterOp, string> = {
  "=": "$eq",
  "!=": "$ne",
  "<": "$lt",
  "<=": "$lte",
  ">": "$gt",
  ">=": "$gte",
  in: "$in",
  "not in": "$nin",
};

export const EMPTY_FILTER: FilterModel = { join: "and", conds: [] };

export class FilterError extends Error {
  constructor(
    readonly index: number,
    message: string,
  ) {
    super(message);
    this.name = "FilterError";
  }
}

/** One typed value from the text the user typed, following the key's type when it is known. */
export function parseValue(text: string, type: KeyType | undefined, key: string, index: number): unknown {
  const t = text.trim();
  if (type === "number") {
    const n = Number(t);
    if (t === "" || !Number.isFinite(n)) {
      throw new FilterError(index, `${key} holds numbers: "${text}" is not a number`);
    }
    return n;
  }
  if (type === "bool") {
    if (t === "true") return true;
    if (t === "false") return false;
    throw new FilterError(index, `${key} holds true or false, not "${text}"`);
  }
  if (type === "string" || type === "time" || type === "list") return t;
  // Unknown type (a key the description does not list): a number when it reads as one.
  if (t !== "" && Number.isFinite(Number(t))) return Number(t);
  if (t === "true") return true;
  if (t === "false") return false;
  return t;
}

function isOrdering(op: FilterOp): boolean {
  return op === "<" || op === "<=" || op === ">" || op === ">=";
}

/** The server's filter JSON for one condition. Throws FilterError naming the condition. */
export function conditionJson(c: Condition, typeOf: (key: string) => KeyType | undefined, index = 0): FilterJson {
  if (!c.key) throw new FilterError(index, `condition ${index + 1} has no column`);
  const type = typeOf(c.key);
  if (type === "bool" && isOrdering(c.op)) {
    throw new FilterError(index, `${c.key} holds true or false: ${c.op} does not apply`);
  }
  let value: unknown;
  if (c.op === "in" || c.op === "not in") {
    const parts = c.value
      .split(",")
      .map((p) => p.trim())
      .filter((p) => p !== "");
    if (parts.length === 0) throw new FilterError(index, `${c.key} ${c.op}: give one value or more, comma-separated`);
    value = parts.map((p) => parseValue(p, type, c.key, index));
  } else {
    value = parseValue(c.value, type, c.key, index);
  }
  // Tags are a list on the server: "tags = x" means "has tag x".
  if (c.key === "tags" && (c.op === "=" || c.op === "!=")) {
    return { tags: { [c.op === "=" ? "$in" : "$nin"]: [value] } };
  }
  return { [c.key]: { [MONGO_OP[c.op]]: value } };
}

/** The filter JSON for the whole model, or null when it has no conditions (no filter). */
export function filterJson(model: FilterModel, typeOf: (key: string) => KeyType | undefined): FilterJson | null {
  const parts = model.conds.map((c, i) => conditionJson(c, typeOf, i));
  if (parts.length === 0) return null;
  if (parts.length === 1) return parts[0] ?? null;
  return { [model.join === "and" ? "$and" : "$or"]: parts };
}

/** The model from what a URL holds; anything malformed yields the empty filter, never an exception. */
export function parseFilterModel(text: string | null): FilterModel {
  if (!text) return EMPTY_FILTER;
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return EMPTY_FILTER;
  }
  if (!raw || typeof raw !== "object") return EMPTY_FILTER;
  const obj = raw as { join?: unknown; conds?: unknown };
  const join = obj.join === "or" ? "or" : "and";
  const conds: Condition[] = [];
  if (Array.isArray(obj.conds)) {
    for (const c of obj.conds as unknown[]) {
      if (!c || typeof c !== "object") continue;
      const { key, op, value } = c as { key?: unknown; op?: unknown; value?: unknown };
      if (typeof key !== "string" || typeof value !== "string") continue;
      if (!FILTER_OPS.includes(op as FilterOp)) continue;
      conds.push({ key, op: op as FilterOp, value });
    }
  }
  return { join, conds };
}
