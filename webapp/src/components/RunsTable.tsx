// The runs table. TanStack Table holds the column model (order, visibility, pinning) and the row
// selection; sorting is the server's (manualSorting): a header's menu asks for an order and the page
// fetches the rows again. Pinned columns stick to the left after the selection box and the name.
import { getCoreRowModel, type ColumnDef, type RowSelectionState, type Updater } from "@tanstack/table-core";
import { useState } from "preact/hooks";
import type { ColumnInfo } from "../columns";
import { runHref } from "../router";
import { useTable } from "../table";
import type { Run } from "../types";
import { parseOrder } from "../viewstate";

export interface RunsTableProps {
  entity: string;
  project: string;
  runs: Run[];
  /** Every column, in display order; `hidden` are left out, `pinned` stick. */
  columns: ColumnInfo[];
  hidden: string[];
  pinned: string[];
  order: string;
  selected: RowSelectionState;
  onSelect: (s: RowSelectionState) => void;
  onSort: (field: string, dir: "asc" | "desc") => void;
  onPin: (id: string, pin: boolean) => void;
  onHide: (id: string) => void;
  onMove: (id: string, before: string) => void;
  colorOf: (runId: string) => string;
}

const SELECT = "__select";

export function RunsTable(p: RunsTableProps) {
  const [menu, setMenu] = useState<string | null>(null);
  const [dragging, setDragging] = useState<string | null>(null);
  const defs: ColumnDef<Run>[] = [
    { id: SELECT, size: 32, header: "", accessorFn: (r) => r.id },
    ...p.columns.map((c) => ({ id: c.id, header: c.label, size: c.width, accessorFn: (r: Run) => c.text(r) })),
  ];
  const byId = new Map(p.columns.map((c) => [c.id, c]));
  const visibility = Object.fromEntries(p.hidden.map((id) => [id, false]));
  const table = useTable<Run>({
    data: p.runs,
    columns: defs,
    getCoreRowModel: getCoreRowModel(),
    getRowId: (r) => r.id,
    manualSorting: true,
    enableRowSelection: true,
    state: {
      columnOrder: [SELECT, ...p.columns.map((c) => c.id)],
      columnVisibility: visibility,
      columnPinning: { left: [SELECT, "name", ...p.pinned.filter((id) => id !== "name")] },
      rowSelection: p.selected,
    },
    onRowSelectionChange: (u: Updater<RowSelectionState>) => p.onSelect(typeof u === "function" ? u(p.selected) : u),
  });
  const { field: sortField, dir } = parseOrder(p.order);
  const rows = table.getRowModel().rows;
  return (
    <div class="table-scroll" onClick={() => menu && setMenu(null)}>
      <table class="grid runs" data-testid="runs-table">
        <thead>
          {table.getHeaderGroups().map((hg) => (
            <tr key={hg.id}>
              {hg.headers.map((h) => {
                const id = h.column.id;
                const pinnedCol = h.column.getIsPinned() === "left";
                const style = {
                  width: `${h.column.getSize()}px`,
                  minWidth: `${h.column.getSize()}px`,
                  ...(pinnedCol ? { left: `${h.column.getStart("left")}px` } : {}),
                };
                if (id === SELECT) {
                  return (
                    <th key={id} class="pinned" style={style}>
                      <input
                        type="checkbox"
                        aria-label="select all runs"
                        checked={table.getIsAllRowsSelected()}
                        onChange={table.getToggleAllRowsSelectedHandler()}
                      />
                    </th>
                  );
                }
                const info = byId.get(id);
                return (
                  <th
                    key={id}
                    class={`${pinnedCol ? "pinned" : ""} ${dragging === id ? "dragging" : ""}`}
                    style={style}
                    data-col={id}
                    title={id}
                    draggable
                    onDragStart={(e) => {
                      setDragging(id);
                      e.dataTransfer?.setData("text/plain", id);
                    }}
                    onDragEnd={() => setDragging(null)}
                    onDragOver={(e) => e.preventDefault()}
                    onDrop={(e) => {
                      e.preventDefault();
                      const from = e.dataTransfer?.getData("text/plain");
                      if (from && from !== id) p.onMove(from, id);
                      setDragging(null);
                    }}
                  >
                    <span class="th-label" onClick={() => p.onSort(id, sortField === id && dir === "asc" ? "desc" : "asc")}>
                      {info?.label ?? id}
                      {sortField === id && <span class="sort-mark">{dir === "asc" ? " ▲" : " ▼"}</span>}
                    </span>
                    {info && id.includes(".") && <span class="th-kind">{id.split(".")[0]}</span>}
                    <button
                      class="kebab"
                      aria-label={`column menu ${id}`}
                      data-testid={`colmenu-${id}`}
                      onClick={(e) => {
                        e.stopPropagation();
                        setMenu(menu === id ? null : id);
                      }}
                    >
                      ⋮
                    </button>
                    {menu === id && (
                      <div class="menu" role="menu" onClick={(e) => e.stopPropagation()}>
                        <button role="menuitem" onClick={() => (setMenu(null), p.onSort(id, "asc"))}>
                          Sort asc
                        </button>
                        <button role="menuitem" onClick={() => (setMenu(null), p.onSort(id, "desc"))}>
                          Sort desc
                        </button>
                        {id !== "name" && (
                          <button role="menuitem" onClick={() => (setMenu(null), p.onPin(id, !pinnedCol))}>
                            {pinnedCol ? "Unpin column" : "Pin column"}
                          </button>
                        )}
                        {id !== "name" && (
                          <button role="menuitem" onClick={() => (setMenu(null), p.onHide(id))}>
                            Hide column
                          </button>
                        )}
                      </div>
                    )}
                  </th>
                );
              })}
            </tr>
          ))}
        </thead>
        <tbody>
          {rows.length === 0 && (
            <tr>
              <td colSpan={defs.length} class="muted">
                No runs match.
              </td>
            </tr>
          )}
          {rows.map((row) => (
            <tr key={row.id} data-run={row.id} class={row.getIsSelected() ? "selected" : ""}>
              {row.getVisibleCells().map((cell) => {
                const id = cell.column.id;
                const pinnedCol = cell.column.getIsPinned() === "left";
                const style = pinnedCol ? { left: `${cell.column.getStart("left")}px` } : undefined;
                const run = row.original;
                if (id === SELECT) {
                  return (
                    <td key={id} class="pinned" style={style}>
                      <input
                        type="checkbox"
                        aria-label={`select ${run.name}`}
                        checked={row.getIsSelected()}
                        onChange={row.getToggleSelectedHandler()}
                      />
                    </td>
                  );
                }
                if (id === "name") {
                  return (
                    <td key={id} class="pinned name" style={style} data-col={id}>
                      <span class="swatch" style={{ background: p.colorOf(run.id) }} />
                      <a href={runHref(p.entity, p.project, run.id)}>{run.name || run.id}</a>
                    </td>
                  );
                }
                if (id === "state") {
                  return (
                    <td key={id} data-col={id} class={pinnedCol ? "pinned" : ""} style={style}>
                      <span class={`state state-${run.state}`}>{run.state}</span>
                    </td>
                  );
                }
                const text = String(cell.getValue() ?? "");
                return (
                  <td key={id} data-col={id} class={pinnedCol ? "pinned" : ""} style={style} title={text}>
                    {text}
                  </td>
                );
              })}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
