import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import {
  ARENA_MAX_SIZE,
  ARENA_MIN_SIZE,
  type Arena,
  alignUp,
  arenaAttach,
  arenaBytesNeeded,
  arenaCreate,
  fmtBytes,
  PAGE_SHIFT,
  PAGE_SIZE,
  type Region,
  type RegionSpec,
} from "../../src/mm/arena.js";
import { kmemCacheCreate, slabRegionSpec } from "../../src/mm/slab.js";

const ARENA_MAGIC = 0x736b6275;

describe("arena constants and helpers", () => {
  test("page and arena size constants have their documented values", () => {
    assert.equal(PAGE_SHIFT, 12);
    assert.equal(PAGE_SIZE, 4096);
    assert.equal(ARENA_MIN_SIZE, 8192);
    assert.equal(ARENA_MAX_SIZE, 1073741824);
  });

  test("alignUp rounds up to the next multiple of a power of two", () => {
    assert.equal(alignUp(0, 64), 0);
    assert.equal(alignUp(1, 64), 64);
    assert.equal(alignUp(64, 64), 64);
    assert.equal(alignUp(65, 64), 128);
    assert.equal(alignUp(4097, 4096), 8192);
    assert.equal(alignUp(13, 1), 13);
  });

  test("fmtBytes prints B, KiB and MiB", () => {
    assert.equal(fmtBytes(100), "100 B");
    assert.equal(fmtBytes(4096), "4 KiB");
    assert.equal(fmtBytes(12096), "11.8 KiB");
    assert.equal(fmtBytes(1 << 20), "1 MiB");
    assert.equal(fmtBytes(1 << 30), "1024 MiB");
  });
});

describe("arenaCreate: carving", () => {
  test("regions are carved in order, each aligned, after the header page and page-owner map", () => {
    const size = 64 * 1024;
    const arena = arenaCreate(size, [
      { name: "a", size: 100 },
      { name: "b", size: 5000, align: 4096 },
      { name: "c", size: 10, align: 8 },
      { name: "d", size: 64 },
    ]);
    // owner map: 16 bytes at 4096 -> first region at alignUp(4112, 64) = 4160
    assert.deepEqual(arena.regions, [
      { name: "a", offset: 4160, size: 100 },
      { name: "b", offset: 8192, size: 5000 },
      { name: "c", offset: 13192, size: 10 },
      { name: "d", offset: 13248, size: 64 },
    ]);
    assert.equal(arena.size, size);
    assert.equal(arena.sab.byteLength, size);
    assert.equal(arena.pageOwnerOffset, PAGE_SIZE);
    assert.equal(arena.pageOwner.length, size / PAGE_SIZE);
    assert.equal(arena.pageOwner.byteOffset, PAGE_SIZE);
  });

  test("header records magic, size and region count", () => {
    const arena = arenaCreate(3 * PAGE_SIZE, [
      { name: "x", size: 8 },
      { name: "y", size: 8 },
    ]);
    assert.equal(arena.u32[0], ARENA_MAGIC);
    assert.equal(arena.u32[1], 3 * PAGE_SIZE);
    assert.equal(arena.u32[2], 2);
  });

  test("views all map the same zero-filled bytes", () => {
    const arena = arenaCreate(ARENA_MIN_SIZE, [{ name: "r", size: 64 }]);
    const off = arena.region("r").offset;
    for (let i = off; i < off + 64; i++) assert.equal(arena.u8[i], 0);
    arena.u32[off >>> 2] = 0x01020304;
    assert.equal(arena.u8[off], 0x04);
    assert.equal(arena.u16[off >>> 1], 0x0304);
    assert.equal(arena.i32[off >>> 2], 0x01020304);
    assert.equal(arena.dv.getUint32(off, false), 0x04030201);
    arena.f64[(off + 8) >>> 3] = 1.5;
    assert.equal(arena.dv.getFloat64(off + 8, true), 1.5);
  });

  test("a region that fills the arena exactly fits; one more byte does not", () => {
    // 8 KiB arena: owner map is 2 bytes, region starts at 4160, 4032 bytes remain.
    const ok = arenaCreate(ARENA_MIN_SIZE, [{ name: "all", size: 4032 }]);
    assert.deepEqual(ok.regions, [{ name: "all", offset: 4160, size: 4032 }]);
    assert.throws(() => arenaCreate(ARENA_MIN_SIZE, [{ name: "all", size: 4033 }]), {
      name: "RangeError",
      message:
        "arenaCreate: region 'all' (3.9 KiB) does not fit: 3.9 KiB left of 8 KiB after 0 regions; " +
        "raise the arena size (--arena-size) or shrink the caches",
    });
  });

  test("region-does-not-fit error names the region, its size and what was left", () => {
    assert.throws(
      () =>
        arenaCreate(16384, [
          { name: "small", size: 100 },
          { name: "huge-region", size: 1 << 20 },
          { name: "never-reached", size: 8 },
        ]),
      {
        name: "RangeError",
        message:
          "arenaCreate: region 'huge-region' (1 MiB) does not fit: 11.8 KiB left of 16 KiB after 1 regions; " +
          "raise the arena size (--arena-size) or shrink the caches",
      },
    );
  });

  test("alignment pushing a region past the end is a does-not-fit error (0 B left)", () => {
    assert.throws(() => arenaCreate(ARENA_MIN_SIZE, [{ name: "far", size: 8, align: 8192 }]), {
      name: "RangeError",
      message: /^arenaCreate: region 'far' \(8 B\) does not fit: 0 B left of 8 KiB after 0 regions;/,
    });
  });

  test("offset 0 is never handed out and carving obeys its rules (property)", () => {
    const specArb = fc.record({
      size: fc.integer({ min: 1, max: 20000 }),
      alignLog: fc.option(fc.integer({ min: 0, max: 16 }), { nil: undefined }),
    });
    fc.assert(
      fc.property(fc.array(specArb, { minLength: 0, maxLength: 12 }), fc.integer({ min: 2, max: 64 }), (raw, pages) => {
        const size = pages * PAGE_SIZE;
        const specs: RegionSpec[] = raw.map((r, i) =>
          r.alignLog === undefined ? { name: `r${i}`, size: r.size } : { name: `r${i}`, size: r.size, align: 1 << r.alignLog },
        );
        let arena: Arena;
        try {
          arena = arenaCreate(size, specs);
        } catch (e) {
          assert.ok(e instanceof RangeError);
          assert.match((e as Error).message, /does not fit/);
          // it must really not fit
          assert.ok(arenaBytesNeeded(specs, size) > size);
          return;
        }
        assert.equal(arena.regions.length, specs.length);
        assert.ok(arenaBytesNeeded(specs, size) <= size);
        let prevEnd = PAGE_SIZE + (size >>> PAGE_SHIFT); // header page + owner map
        arena.regions.forEach((r, i) => {
          const spec = specs[i] as RegionSpec;
          assert.equal(r.name, spec.name);
          assert.equal(r.size, spec.size);
          assert.ok(r.offset >= PAGE_SIZE, `region ${r.name} at ${r.offset} inside the header page`);
          assert.ok(r.offset >= prevEnd, `region ${r.name} overlaps its predecessor`);
          assert.equal(r.offset % (spec.align ?? 64), 0);
          assert.ok(r.offset + r.size <= size);
          // tight packing: no more than align-1 bytes (or 63 after the owner map) of padding
          assert.ok(r.offset - prevEnd < Math.max(spec.align ?? 64, 64));
          prevEnd = r.offset + r.size;
        });
        if (specs.length > 0) assert.equal(arenaBytesNeeded(specs, size), prevEnd);
      }),
      { numRuns: 300 },
    );
  });
});

describe("arenaCreate: bad input", () => {
  test("sizes below 8 KiB, above 1 GiB or not whole bytes are RangeErrors", () => {
    for (const bad of [0, -4096, 4096, 8191, ARENA_MAX_SIZE + PAGE_SIZE, 2 ** 31, 2 ** 32, 8192.5, Number.NaN, Infinity]) {
      assert.throws(
        () => arenaCreate(bad, []),
        (e: unknown) => {
          assert.ok(e instanceof RangeError, `size ${bad}: ${String(e)}`);
          assert.equal(e.message, `arenaCreate: size ${bad} out of range (8 KiB .. 1024 MiB, whole bytes)`);
          return true;
        },
      );
    }
  });

  test("sizes that are not a multiple of 4096 are RangeErrors", () => {
    for (const bad of [8193, 12288 + 1, 12288 - 4, 65536 + 2048]) {
      assert.throws(() => arenaCreate(bad, []), {
        name: "RangeError",
        message: `arenaCreate: size ${bad} is not a multiple of the 4096-byte page`,
      });
    }
  });

  test("the boundary sizes 8 KiB and 1 GiB are accepted", () => {
    assert.equal(arenaCreate(ARENA_MIN_SIZE, []).size, ARENA_MIN_SIZE);
    const big = arenaCreate(ARENA_MAX_SIZE, [{ name: "last", size: 64 }]);
    assert.equal(big.size, ARENA_MAX_SIZE);
    assert.equal(big.pageOwner.length, ARENA_MAX_SIZE >>> PAGE_SHIFT);
    // owner map is 256 KiB at 4 KiB
    assert.equal(big.region("last").offset, PAGE_SIZE + (ARENA_MAX_SIZE >>> PAGE_SHIFT));
  });

  test("duplicate region names are a RangeError naming the region", () => {
    assert.throws(
      () =>
        arenaCreate(65536, [
          { name: "dup", size: 64 },
          { name: "other", size: 64 },
          { name: "dup", size: 128 },
        ]),
      { name: "RangeError", message: "arenaCreate: region 'dup' defined twice" },
    );
  });

  test("invalid region sizes are RangeErrors naming the region", () => {
    for (const bad of [0, -1, 1.5, Number.NaN]) {
      assert.throws(() => arenaCreate(65536, [{ name: "bad-size", size: bad }]), {
        name: "RangeError",
        message: `arenaCreate: region 'bad-size' has invalid size ${bad}`,
      });
    }
  });

  test("non-power-of-two integer alignments are RangeErrors naming the region", () => {
    for (const bad of [0, 3, 12, 100, -64]) {
      assert.throws(() => arenaCreate(65536, [{ name: "bad-align", size: 8, align: bad }]), {
        name: "RangeError",
        message: `arenaCreate: region 'bad-align' alignment ${bad} is not a power of two`,
      });
    }
  });

  // These slip through `(align & (align - 1)) === 0` because of ToInt32:
  // 0.5 overlaps the previous region, 2^31 gives a negative offset, 2^32 offset 0.
  for (const bad of [0.5, 2 ** 31, 2 ** 32]) {
    test(`alignment ${bad} is rejected (a RangeError, never an overlapping, negative or zero offset)`, () => {
      let carved: readonly Region[] | undefined;
      let err: unknown;
      try {
        carved = arenaCreate(65536, [
          { name: "a", size: 100 },
          { name: "weird-align", size: 64, align: bad },
        ]).regions;
      } catch (e) {
        err = e;
      }
      assert.ok(err instanceof RangeError, `align ${bad} accepted; carved ${JSON.stringify(carved)}`);
    });
  }
});

describe("Arena: lookup, attach and page owners", () => {
  test("region() returns the region; unknown names throw listing the known regions", () => {
    const arena = arenaCreate(65536, [
      { name: "slab:one", size: 64 },
      { name: "rings", size: 128 },
    ]);
    assert.deepEqual(arena.region("rings"), { name: "rings", offset: 4224, size: 128 });
    assert.equal(arena.hasRegion("slab:one"), true);
    assert.equal(arena.hasRegion("slab:two"), false);
    assert.throws(() => arena.region("slab:two"), {
      name: "Error",
      message: "arena: no region 'slab:two' (have: slab:one, rings)",
    });
  });

  test("arenaAttach maps the same memory from a description", () => {
    const arena = arenaCreate(65536, [{ name: "shared", size: 256 }]);
    const desc = arena.describe();
    assert.equal(desc.sab, arena.sab);
    assert.equal(desc.pageOwnerOffset, PAGE_SIZE);
    const other = arenaAttach(desc);
    assert.notEqual(other, arena);
    assert.deepEqual(other.regions, arena.regions);
    assert.deepEqual(other.region("shared"), arena.region("shared"));
    const off = arena.region("shared").offset;
    arena.u32[off >>> 2] = 0xcafebabe;
    assert.equal(other.u32[off >>> 2], 0xcafebabe);
    other.u8[off + 100] = 7;
    assert.equal(arena.u8[off + 100], 7);
    other.pageOwner[5] = 42;
    assert.equal(arena.pageOwner[5], 42);
  });

  test("arenaAttach refuses a buffer without the arena magic", () => {
    const sab = new SharedArrayBuffer(65536);
    assert.throws(() => arenaAttach({ sab, regions: [], pageOwnerOffset: PAGE_SIZE }), {
      message: "arenaAttach: shared buffer is not an skbuff arena (bad magic)",
    });
  });

  test("page-owner map marks exactly the object pages of each slab cache", () => {
    const a = { name: "cache-a", size: 256, count: 40 }; // 10 KiB of objects -> 3 pages
    const b = { name: "cache-b", size: 4096, count: 2 };
    const arena = arenaCreate(128 * 1024, [slabRegionSpec(a), { name: "gap", size: 64 }, slabRegionSpec(b)]);
    assert.equal(arena.pageOwner.reduce((s, x) => s + x, 0), 0, "fresh owner map is all zero");
    const ca = kmemCacheCreate(arena, 7, a);
    const cb = kmemCacheCreate(arena, 9, b);
    const owners = [...arena.pageOwner];
    const expected = owners.map(() => 0);
    for (let p = ca.objBase >>> PAGE_SHIFT; p < (ca.objEnd + PAGE_SIZE - 1) >>> PAGE_SHIFT; p++) expected[p] = 7;
    for (let p = cb.objBase >>> PAGE_SHIFT; p < cb.objEnd >>> PAGE_SHIFT; p++) expected[p] = 9;
    assert.deepEqual(owners, expected);
    assert.equal(owners[0], 0, "header page belongs to nobody");
    assert.equal(owners.filter((x) => x === 7).length, 3);
    assert.equal(owners.filter((x) => x === 9).length, 2);
    // the slab metadata page (header + free stack) is not owned
    assert.equal(arena.pageOwner[arena.region("slab:cache-a").offset >>> PAGE_SHIFT], 0);
  });
});
