/** The benchmarks' statistics (src/bench/stats.ts). */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { median, pairedRatios } from "../../src/bench/stats.js";

describe("bench stats", () => {
  test("median: middle value, mean of the two middle values, NaN when empty; the input is not reordered", () => {
    const a = [5, 1, 3];
    assert.equal(median(a), 3);
    assert.deepEqual(a, [5, 1, 3]);
    assert.equal(median([4, 1, 3, 2]), 2.5);
    assert.ok(Number.isNaN(median([])));
  });

  test("pairedRatios: per-round ratios, their median and range; mismatched rounds are an error", () => {
    assert.deepEqual(pairedRatios([2, 6, 9], [1, 2, 3]), { median: 3, min: 2, max: 3 });
    assert.throws(() => pairedRatios([1, 2], [1]), /2 numerators for 1 denominators/);
  });
});
