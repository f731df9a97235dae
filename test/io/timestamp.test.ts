/**
 * Timestamp conversions (src/io/timestamp.ts) against a BigInt reference:
 * 64-bit unit counts at every resolution to seconds + nanoseconds, and back
 * at µs / ns, exact far beyond 2^53 units.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import {
  type TsOut,
  type TsResolution,
  tsIso,
  tsresolFromByte,
  tsresolName,
  tsresolToByte,
  tsToUnits,
  type UnitsOut,
  unitsPerSecond,
  unitsToTs,
} from "../../src/io/timestamp.js";

function reference(units: bigint, r: TsResolution): { sec: number; nsec: number } {
  const per = BigInt(r.base) ** BigInt(r.exp);
  return { sec: Number(units / per), nsec: Number(((units % per) * 1_000_000_000n) / per) };
}

describe("timestamps", () => {
  test("unitsToTs is exact for decimal and binary resolutions (property)", () => {
    const res = fc.oneof(
      fc.integer({ min: 0, max: 19 }).map((exp) => ({ base: 10 as const, exp })),
      fc.integer({ min: 0, max: 40 }).map((exp) => ({ base: 2 as const, exp })),
    );
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), res, (units, r) => {
        const out: TsOut = { tsSec: -1, tsNsec: -1 };
        unitsToTs(Number(units >> 32n), Number(units & 0xffffffffn), r, unitsPerSecond(r), out);
        const ref = reference(units, r);
        // Seconds above 2^53 cannot be exact as numbers: compare those approximately.
        if (ref.sec < 2 ** 53) assert.equal(out.tsSec, ref.sec);
        else assert.ok(Math.abs(out.tsSec - ref.sec) / ref.sec < 1e-12);
        assert.equal(out.tsNsec, ref.nsec);
      }),
      { numRuns: 5000 },
    );
  });

  test("tsToUnits round-trips through unitsToTs at µs and ns (property)", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 32 - 1 }), fc.integer({ min: 0, max: 999_999_999 }), fc.constantFrom(6, 9), (sec, nsec, exp) => {
        const r: TsResolution = { base: 10, exp };
        const per = unitsPerSecond(r);
        const u: UnitsOut = { hi: 0, lo: 0 };
        tsToUnits(sec, nsec, per, u);
        const units = (BigInt(u.hi) << 32n) | BigInt(u.lo);
        assert.equal(units, BigInt(sec) * BigInt(per) + BigInt(Math.floor(nsec / (1e9 / per))));
        const out: TsOut = { tsSec: 0, tsNsec: 0 };
        unitsToTs(u.hi, u.lo, r, per, out);
        assert.equal(out.tsSec, sec);
        assert.equal(out.tsNsec, exp === 9 ? nsec : Math.floor(nsec / 1000) * 1000);
      }),
      { numRuns: 5000 },
    );
  });

  test("if_tsresol bytes, names, ISO strings", () => {
    assert.deepEqual(tsresolFromByte(6), { base: 10, exp: 6 });
    assert.deepEqual(tsresolFromByte(0x94), { base: 2, exp: 20 });
    assert.equal(tsresolToByte({ base: 2, exp: 20 }), 0x94);
    assert.equal(tsresolToByte({ base: 10, exp: 9 }), 9);
    assert.deepEqual(
      [{ base: 10, exp: 6 } as const, { base: 10, exp: 9 } as const, { base: 10, exp: 12 } as const, { base: 2, exp: 20 } as const].map(tsresolName),
      ["us", "ns", "10^-12 s", "2^-20 s"],
    );
    assert.equal(unitsPerSecond({ base: 10, exp: 12 }), 0, "beyond 2^30: the BigInt path");
    assert.equal(tsIso(0, 1), "1970-01-01T00:00:00.000000001Z");
    assert.equal(tsIso(1_700_000_000, 123_456_789), "2023-11-14T22:13:20.123456789Z");
  });
});
