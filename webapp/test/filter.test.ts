import { describe, expect, it } from "vitest";
import { FilterError, filterJson, parseFilterModel, type FilterModel, type KeyType } from "../src/filter";

const types: Record<string, KeyType> = {
  state: "string",
  "config.lr": "number",
  "config.optimizer": "string",
  "config.amp": "bool",
  tags: "list",
};
const typeOf = (k: string) => types[k];

describe("the filter builder's JSON", () => {
  it("is null when there is no condition", () => {
    expect(filterJson({ join: "and", conds: [] }, typeOf)).toBeNull();
  });

  it("is the condition itself when there is one", () => {
    expect(filterJson({ join: "and", conds: [{ key: "state", op: "=", value: "finished" }] }, typeOf)).toEqual({
      state: { $eq: "finished" },
    });
  });

  it("maps every operator to its MongoDB form", () => {
    const ops = [
      ["=", "$eq"],
      ["!=", "$ne"],
      ["<", "$lt"],
      ["<=", "$lte"],
      [">", "$gt"],
      [">=", "$gte"],
    ] as const;
    for (const [op, mongo] of ops) {
      expect(filterJson({ join: "and", conds: [{ key: "config.lr", op, value: "0.1" }] }, typeOf)).toEqual({
        "config.lr": { [mongo]: 0.1 },
      });
    }
  });

  it("joins conditions with $and or $or", () => {
    const model: FilterModel = {
      join: "or",
      conds: [
        { key: "state", op: "=", value: "finished" },
        { key: "config.lr", op: "<", value: "0.1" },
      ],
    };
    expect(filterJson(model, typeOf)).toEqual({ $or: [{ state: { $eq: "finished" } }, { "config.lr": { $lt: 0.1 } }] });
    expect(filterJson({ ...model, join: "and" }, typeOf)).toHaveProperty("$and");
  });

  it("splits in / not in lists on commas and types each value", () => {
    expect(
      filterJson({ join: "and", conds: [{ key: "config.optimizer", op: "in", value: "adam, sgd" }] }, typeOf),
    ).toEqual({ "config.optimizer": { $in: ["adam", "sgd"] } });
    expect(filterJson({ join: "and", conds: [{ key: "config.lr", op: "not in", value: "1,2" }] }, typeOf)).toEqual({
      "config.lr": { $nin: [1, 2] },
    });
  });

  it("keeps a string key's digits a string", () => {
    expect(filterJson({ join: "and", conds: [{ key: "config.optimizer", op: "=", value: "1" }] }, typeOf)).toEqual({
      "config.optimizer": { $eq: "1" },
    });
  });

  it("reads tags = x as 'has the tag x'", () => {
    expect(filterJson({ join: "and", conds: [{ key: "tags", op: "=", value: "best" }] }, typeOf)).toEqual({
      tags: { $in: ["best"] },
    });
  });

  it("names the condition and the value when a number key gets text", () => {
    const model: FilterModel = {
      join: "and",
      conds: [
        { key: "state", op: "=", value: "x" },
        { key: "config.lr", op: "<", value: "fast" },
      ],
    };
    expect(() => filterJson(model, typeOf)).toThrow(FilterError);
    expect(() => filterJson(model, typeOf)).toThrow(/config.lr.*"fast" is not a number/);
  });

  it("refuses an ordering on a true/false key", () => {
    expect(() => filterJson({ join: "and", conds: [{ key: "config.amp", op: "<", value: "true" }] }, typeOf)).toThrow(
      /true or false/,
    );
  });
});

describe("a filter model read from a URL", () => {
  it("round-trips through JSON", () => {
    const model: FilterModel = { join: "or", conds: [{ key: "config.lr", op: "not in", value: "1, 2" }] };
    expect(parseFilterModel(JSON.stringify(model))).toEqual(model);
  });

  it("is empty when the text is not a model, never an exception", () => {
    for (const text of ["", "{", "[]", "null", '{"conds":[{"key":1}]}', '{"conds":[{"key":"a","op":"~","value":"b"}]}']) {
      expect(parseFilterModel(text).conds).toEqual([]);
    }
  });
});
