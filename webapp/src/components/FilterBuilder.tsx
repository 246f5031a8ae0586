// The filter builder: rows of (column, operator, value) joined by and/or. Edits stay a draft until
// Apply; Apply translates the draft to the server's filter JSON first, so a bad value is named here
// (which row, what was wrong) rather than sent.
import { useState } from "preact/hooks";
import type { ColumnInfo } from "../columns";
import { FILTER_OPS, FilterError, filterJson, type Condition, type FilterModel, type FilterOp } from "../filter";
import { typeLookup } from "../columns";

export function FilterBuilder(props: {
  columns: ColumnInfo[];
  value: FilterModel;
  onApply: (m: FilterModel) => void;
}) {
  const [draft, setDraft] = useState<FilterModel>(props.value);
  const [error, setError] = useState<string | null>(null);
  const typeOf = typeLookup(props.columns);
  const setCond = (i: number, c: Partial<Condition>) =>
    setDraft({ ...draft, conds: draft.conds.map((x, j) => (j === i ? { ...x, ...c } : x)) });
  const apply = () => {
    try {
      filterJson(draft, typeOf);
      setError(null);
      props.onApply(draft);
    } catch (exc) {
      setError(exc instanceof FilterError ? exc.message : String(exc));
    }
  };
  const filterable = props.columns.filter((c) => c.id !== "notes");
  return (
    <div class="panel" data-testid="filter-builder">
      {draft.conds.map((c, i) => (
        <div class="filter-row" key={i} data-testid="filter-row">
          {i === 0 ? (
            <span class="join">where</span>
          ) : i === 1 ? (
            <select
              class="join"
              aria-label="and/or"
              value={draft.join}
              onChange={(e) => setDraft({ ...draft, join: e.currentTarget.value === "or" ? "or" : "and" })}
            >
              <option value="and">and</option>
              <option value="or">or</option>
            </select>
          ) : (
            <span class="join">{draft.join}</span>
          )}
          <select aria-label="column" value={c.key} onChange={(e) => setCond(i, { key: e.currentTarget.value })}>
            {filterable.map((col) => (
              <option value={col.id} key={col.id}>
                {col.id}
              </option>
            ))}
          </select>
          <select
            aria-label="operator"
            value={c.op}
            onChange={(e) => setCond(i, { op: e.currentTarget.value as FilterOp })}
          >
            {FILTER_OPS.map((op) => (
              <option value={op} key={op}>
                {op}
              </option>
            ))}
          </select>
          <input
            type="text"
            aria-label="value"
            placeholder={c.op === "in" || c.op === "not in" ? "a, b, c" : "value"}
            value={c.value}
            onInput={(e) => setCond(i, { value: e.currentTarget.value })}
            onKeyDown={(e) => e.key === "Enter" && apply()}
          />
          <button
            class="link"
            aria-label="remove condition"
            onClick={() => setDraft({ ...draft, conds: draft.conds.filter((_, j) => j !== i) })}
          >
            ×
          </button>
        </div>
      ))}
      <div class="actions">
        <button
          onClick={() => setDraft({ ...draft, conds: [...draft.conds, { key: "state", op: "=", value: "" }] })}
        >
          + Add filter
        </button>
        <button class="primary" onClick={apply} data-testid="apply-filter">
          Apply
        </button>
        {draft.conds.length > 0 && (
          <button
            onClick={() => {
              setDraft({ join: "and", conds: [] });
              props.onApply({ join: "and", conds: [] });
            }}
          >
            Clear
          </button>
        )}
      </div>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
    </div>
  );
}
