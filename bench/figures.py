"""The figures the suite reports, their budgets (DESIGN.md, "Performance budget") and the table."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

TRACKLOG = "tracklog"
WANDB = "wandb"
MLFLOW_FILE = "mlflow-file"
MLFLOW_SQLITE = "mlflow-sqlite"
TOOLS = (TRACKLOG, WANDB, MLFLOW_FILE, MLFLOW_SQLITE)
COMPETITORS = (WANDB, MLFLOW_FILE, MLFLOW_SQLITE)
COLUMN_TITLES = {
    TRACKLOG: "tracklog",
    WANDB: "wandb",
    MLFLOW_FILE: "MLflow file",
    MLFLOW_SQLITE: "MLflow sqlite",
}


@dataclass
class Figure:
    """One row of the table: samples per tool, reported as medians."""

    id: str
    label: str
    unit: str
    lower_is_better: bool = True
    budget_op: str = ""  # "<=" or ">="; empty: no budget
    budget: float = math.nan
    samples: dict[str, list[float]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)  # per tool, e.g. "N=5k"
    no_ratio: bool = False  # a ratio would mislead (e.g. of two slowdowns near 0%)

    def add(self, tool: str, value: float) -> None:
        self.samples.setdefault(tool, []).append(float(value))

    def median(self, tool: str) -> float:
        values = [v for v in self.samples.get(tool, []) if not math.isnan(v)]
        return statistics.median(values) if values else math.nan

    def ratio(self, tool: str) -> float:
        """How many times better tracklog is than ``tool`` on this figure (>1: tracklog is better)."""
        ours, theirs = self.median(TRACKLOG), self.median(tool)
        if math.isnan(ours) or math.isnan(theirs) or ours <= 0 or theirs <= 0:
            return math.nan
        return theirs / ours if self.lower_is_better else ours / theirs

    def verdict(self) -> str:
        if not self.budget_op:
            return ""
        value = self.median(TRACKLOG)
        if math.isnan(value):
            return "n/a"
        ok = value <= self.budget if self.budget_op == "<=" else value >= self.budget
        return "pass" if ok else "FAIL"

    def budget_text(self) -> str:
        return f"{self.budget_op} {fmt(self.budget, self.unit)}" if self.budget_op else ""

    def to_json(self) -> dict[str, Any]:
        tools: dict[str, Any] = {}
        for tool, values in self.samples.items():
            tools[tool] = {"median": self.median(tool), "samples": values}
            if tool != TRACKLOG:
                tools[tool]["tracklog_advantage"] = self.ratio(tool)
            if tool in self.notes:
                tools[tool]["note"] = self.notes[tool]
        out: dict[str, Any] = {"label": self.label, "unit": self.unit, "tools": tools}
        if self.budget_op:
            out.update(budget=f"{self.budget_op} {self.budget}", verdict=self.verdict())
        return out


def fmt(value: float, unit: str) -> str:
    """A number with its unit, about 3 significant digits."""
    if math.isnan(value):
        return "-"
    if unit in {"rows/s", "runs/s"}:
        if value >= 1e6:
            return f"{value / 1e6:.2f}M/s"
        if value >= 1e4:
            return f"{value / 1e3:.0f}k/s"
        return f"{value:,.0f}/s"
    if unit == "s":
        if abs(value) < 1:
            return f"{value * 1000:.3g} ms"
        return f"{value:.3g} s"
    if unit == "%":
        return f"{value:.2f}%" if abs(value) < 10 else f"{value:.0f}%"
    if unit in ("us", "MB"):
        shown = "µs" if unit == "us" else unit
        text = f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
        return f"{text} {shown}"
    return f"{value:.3g} {unit}"


def _ratio_text(ratio: float) -> str:
    if math.isnan(ratio):
        return ""
    return f"{ratio:,.0f}x" if ratio >= 100 else f"{ratio:.3g}x"


def table(figures: Iterable[Figure], tools: Iterable[str]) -> str:
    tools = list(tools)
    header = ["figure", *(COLUMN_TITLES[t] for t in tools)]
    if len(tools) > 1:
        header.append("vs best")
    header += ["budget", "result"]
    rows: list[list[str]] = []
    for fig in figures:
        if not any(fig.samples.get(t) for t in tools):
            continue
        cells = [fig.label]
        ratios = []
        for tool in tools:
            text = fmt(fig.median(tool), fig.unit)
            if not fig.samples.get(tool) and tool in fig.notes:
                text = fig.notes[tool]  # why there is no figure ("not shown in 60 s")
            if tool != TRACKLOG:
                ratio = fig.ratio(tool)
                if not math.isnan(ratio) and not fig.no_ratio:
                    ratios.append(ratio)
                    text += f" ({_ratio_text(ratio)})"
            cells.append(text)
        if len(tools) > 1:
            cells.append(_ratio_text(min(ratios)) if ratios else "")
        cells += [fig.budget_text(), fig.verdict()]
        rows.append(cells)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in rows)])
