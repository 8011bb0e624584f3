import { describe, expect, it } from "vitest";
import { standardize, topFeatures } from "../src/lib/scoring";

const names = ["a", "b", "c", "d"];

describe("top contributing features", () => {
  it("ranks by |value x gradient| and keeps the sign", () => {
    const { method, top } = topFeatures([2, 10, -3, 0], names, 3, Float32Array.from([1, 0.01, 2, 5]));
    expect(method).toBe("grad-input");
    expect(top.map((t) => t.name)).toEqual(["c", "a", "b"]);
    expect(top[0]).toEqual({ index: 2, name: "c", value: -3, score: -6 });
    expect(top[1].score).toBe(2);
  });

  it("falls back to standardised values without a gradient", () => {
    const explain = { mean: [0, 0, Math.log1p(100), 0], std: [1, 10, 1, 1], log_mask: [false, false, true, false] };
    const { method, top } = topFeatures([3, 10, 100, -4], names, 2, null, explain);
    expect(method).toBe("z-score");
    expect(top.map((t) => t.name)).toEqual(["d", "a"]);
    expect(top[0].score).toBe(-4);
    expect(standardize(100, Math.log1p(100), 1, true)).toBeCloseTo(0);
  });

  it("uses raw magnitudes when nothing else is known, and names missing columns", () => {
    const { method, top } = topFeatures([1, -7, 3], ["x"], 2);
    expect(method).toBe("magnitude");
    expect(top.map((t) => t.name)).toEqual(["feature 1", "feature 2"]);
  });

  it("ignores a gradient of the wrong length and non-finite scores", () => {
    const { method, top } = topFeatures([Number.NaN, 1, 2], names, 3, [1, 1]);
    expect(method).toBe("magnitude");
    expect(top.map((t) => t.index)).toEqual([2, 1, 0]);
  });
});
