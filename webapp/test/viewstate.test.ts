import { describe, expect, it } from "vitest";
import { valueAt } from "../src/format";
import { parseRoute } from "../src/router";
import { DEFAULT_VIEW, orderedColumns, readView, writeView, type ViewState } from "../src/viewstate";

describe("the project view in the URL", () => {
  it("round-trips every choice", () => {
    const view: ViewState = {
      search: "/^res.*/",
      filter: { join: "or", conds: [{ key: "config.lr", op: "<", value: "0.1" }] },
      order: "+summary.acc",
      group: "config.optimizer",
      columns: ["name", "config.a,b", "state"],
      hidden: ["notes"],
      pinned: ["summary.acc"],
      color: { key: "loss", agg: "min", buckets: 4 },
      perPage: 100,
    };
    expect(readView(`?${writeView(view)}`)).toEqual(view);
  });

  it("leaves defaults out, so the default view has an empty query", () => {
    expect(writeView(DEFAULT_VIEW)).toBe("");
  });

  it("falls back field by field on a hand-edited URL", () => {
    const v = readView("?sort=&cols=notjson&buckets=99&color=acc&agg=median&per_page=-3");
    expect(v.order).toBe(DEFAULT_VIEW.order);
    expect(v.columns).toEqual([]);
    expect(v.color).toEqual({ key: "acc", agg: "latest", buckets: 8 });
    expect(v.perPage).toBe(DEFAULT_VIEW.perPage);
  });
});

describe("column order", () => {
  const all = ["name", "state", "created_at", "config.lr", "summary.acc"];
  it("keeps the name first, then pinned columns, then the rest in the chosen order", () => {
    expect(orderedColumns(all, { columns: ["config.lr", "state"], pinned: ["summary.acc"] })).toEqual([
      "name",
      "summary.acc",
      "config.lr",
      "state",
      "created_at",
    ]);
  });

  it("drops columns the project no longer has", () => {
    expect(orderedColumns(all, { columns: ["gone"], pinned: ["gone2"] })).toEqual(all);
  });
});

describe("routes", () => {
  it("follow the wandb URL shapes", () => {
    expect(parseRoute("/")).toEqual({ page: "home" });
    expect(parseRoute("/me/proj")).toEqual({ page: "project", entity: "me", project: "proj" });
    expect(parseRoute("/me/proj/runs/abc")).toEqual({ page: "run", entity: "me", project: "proj", id: "abc" });
    expect(parseRoute("/me/proj/abc")).toEqual({ page: "run", entity: "me", project: "proj", id: "abc" });
    expect(parseRoute("/a%20b/p")).toEqual({ page: "project", entity: "a b", project: "p" });
    expect(parseRoute("/a/b/c/d/e").page).toBe("missing");
    expect(parseRoute("/%E0%A4%A/p").page).toBe("missing");
  });
});

describe("a dotted key's value", () => {
  it("is the flat key when present, else the nested path", () => {
    expect(valueAt({ "a.b": 1, a: { b: 2 } }, "a.b")).toBe(1);
    expect(valueAt({ a: { b: { c: 3 } } }, "a.b.c")).toBe(3);
    expect(valueAt({ a: { "b.c": 4 } }, "a.b.c")).toBe(4);
    expect(valueAt({ a: 1 }, "a.b")).toBeUndefined();
  });
});
