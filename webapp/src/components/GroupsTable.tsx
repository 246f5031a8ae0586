// Runs grouped by one column: each value with its run count and, per numeric summary key, the group's
// min / mean / max (the server computes them over all matching runs, not only the page shown).
import { formatValue } from "../format";
import type { RunGroup } from "../types";

export function GroupsTable(props: { by: string; groups: RunGroup[]; onPick: (value: string) => void }) {
  const keys = [...new Set(props.groups.flatMap((g) => Object.keys(g.summary)))].sort();
  return (
    <div class="table-scroll">
      <table class="grid" data-testid="groups-table">
        <thead>
          <tr>
            <th>{props.by}</th>
            <th>Runs</th>
            {keys.map((k) => (
              <th key={k} title="min / mean / max">
                {k} (min / mean / max)
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {props.groups.map((g, i) => (
            <tr key={i} data-testid="group-row">
              <td>
                <button class="link" onClick={() => props.onPick(formatValue(g.value))}>
                  {g.value === null ? "(none)" : formatValue(g.value)}
                </button>
              </td>
              <td data-testid="group-count">{g.count}</td>
              {keys.map((k) => {
                const s = g.summary[k];
                return (
                  <td key={k}>
                    {s ? `${formatValue(s.min)} / ${formatValue(s.mean)} / ${formatValue(s.max)}` : ""}
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
