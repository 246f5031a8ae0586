// TanStack Table (headless, framework-agnostic core) bound to Preact state, as its React adapter does:
// one table object per component, its options replaced on every render with the current state.
import {
  createTable,
  type RowData,
  type Table,
  type TableOptions,
  type TableOptionsResolved,
  type TableState,
} from "@tanstack/table-core";
import { useState } from "preact/hooks";

export function useTable<T extends RowData>(options: TableOptions<T>): Table<T> {
  const resolved: TableOptionsResolved<T> = {
    state: {},
    onStateChange: () => {},
    renderFallbackValue: null,
    ...options,
  };
  const [table] = useState(() => createTable<T>(resolved));
  const [state, setState] = useState<TableState>(() => table.initialState);
  table.setOptions((prev) => ({
    ...prev,
    ...options,
    state: { ...state, ...options.state },
    onStateChange: (updater) => {
      setState(updater);
      options.onStateChange?.(updater);
    },
  }));
  return table;
}
