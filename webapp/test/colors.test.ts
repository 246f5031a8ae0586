import { describe, expect, it } from "vitest";
import { aggregate, bucketColor, bucketEdges, bucketOf, keyColoring, NO_VALUE_COLOR } from "../src/colors";

describe("key-based colour buckets", () => {
  it("split the range into equal buckets", () => {
    expect(bucketEdges([0, 10, 5], 4)).toEqual([0, 2.5, 5, 7.5, 10]);
  });

  it("clamp the bucket count to 2..8", () => {
    expect(bucketEdges([0, 1], 1)?.length).toBe(3);
    expect(bucketEdges([0, 1], 20)?.length).toBe(9);
  });

  it("put the top value in the last bucket and the bottom in the first", () => {
    const edges = [0, 2.5, 5, 7.5, 10];
    expect(bucketOf(0, edges)).toBe(0);
    expect(bucketOf(2.5, edges)).toBe(1);
    expect(bucketOf(9.99, edges)).toBe(3);
    expect(bucketOf(10, edges)).toBe(3);
    expect(bucketOf(null, edges)).toBeNull();
    expect(bucketOf(NaN, edges)).toBeNull();
  });

  it("give every run one bucket's colour and label each bucket with its range", () => {
    const values = new Map<string, number | null>([
      ["a", 0.1],
      ["b", 0.4],
      ["c", 0.9],
      ["d", null],
    ]);
    const { colorOf, legend } = keyColoring(values, 4);
    expect(legend.map((b) => b.label)).toEqual(["0.1 to 0.3", "0.3 to 0.5", "0.5 to 0.7", "0.7 to 0.9"]);
    expect(legend.map((b) => b.count)).toEqual([1, 1, 0, 1]);
    expect(colorOf.get("a")).toBe(bucketColor(0, 4));
    expect(colorOf.get("c")).toBe(bucketColor(3, 4));
    expect(colorOf.get("d")).toBe(NO_VALUE_COLOR);
  });

  it("use distinct colours for distinct buckets", () => {
    for (let n = 2; n <= 8; n++) {
      const colors = new Set(Array.from({ length: n }, (_, i) => bucketColor(i, n)));
      expect(colors.size).toBe(n);
    }
  });

  it("colour all runs in one bucket when every value is equal", () => {
    const { colorOf, legend } = keyColoring(new Map([["a", 1], ["b", 1]]), 3);
    expect(colorOf.get("a")).toBe(colorOf.get("b"));
    expect(legend[0]?.count).toBe(2);
  });
});

describe("a series' Latest, Min and Max", () => {
  it("skip missing and non-finite values", () => {
    const ys = [3, null, 1, NaN, 2];
    expect(aggregate(ys, "latest")).toBe(2);
    expect(aggregate(ys, "min")).toBe(1);
    expect(aggregate(ys, "max")).toBe(3);
    expect(aggregate([null], "max")).toBeNull();
  });
});
