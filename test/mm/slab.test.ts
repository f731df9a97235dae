import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { type Arena, alignUp, arenaCreate, PAGE_SIZE } from "../../src/mm/arena.js";
import {
  type KmemCache,
  type KmemCacheOptions,
  kmemCacheActive,
  kmemCacheAlloc,
  kmemCacheAllocBulk,
  kmemCacheAttach,
  kmemCacheCalls,
  kmemCacheCreate,
  kmemCacheFree,
  kmemCacheFreeBulk,
  kmemCacheInfo,
  kmemCacheMarkCached,
  kmemCacheObjIndex,
  kmemCacheObjStart,
  kmemCacheObjState,
  OBJ_ALLOCATED,
  OBJ_CACHED,
  OBJ_FREE,
  POISON_FREE,
  type SlabInfo,
  slabRegionSize,
  slabRegionSpec,
} from "../../src/mm/slab.js";

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

/** A fresh arena holding one cache (plus a leading pad region so offsets are not trivial). */
function mkCache(o: KmemCacheOptions, id = 1): { arena: Arena; c: KmemCache } {
  const spec = slabRegionSpec(o);
  const size = alignUp(spec.size + 4 * PAGE_SIZE + Math.max(o.align ?? 0, 0), PAGE_SIZE);
  const arena = arenaCreate(size, [{ name: "pad", size: 100 }, spec]);
  return { arena, c: kmemCacheCreate(arena, id, o) };
}

function zeroInfo(c: KmemCache, over: Partial<SlabInfo>): SlabInfo {
  return {
    name: c.name,
    objSize: c.objSize,
    activeObjs: 0,
    numObjs: c.nrObjs,
    allocs: 0,
    frees: 0,
    allocBulkCalls: 0,
    allocBulkObjs: 0,
    freeBulkCalls: 0,
    freeBulkObjs: 0,
    allocFail: 0,
    bulkShort: 0,
    ...over,
  };
}

describe("slab: geometry", () => {
  test("slabRegionSize = page-aligned metadata + aligned objects", () => {
    assert.equal(slabRegionSize(100, 8), 4096 + 128 * 8);
    assert.equal(slabRegionSize(64, 1000), alignUp(128 + 5000, 4096) + 64 * 1000);
    assert.equal(slabRegionSize(192, 10, 64), 4096 + 1920);
    assert.equal(slabRegionSize(100, 4, 256), 4096 + 1024);
    assert.deepEqual(slabRegionSpec({ name: "x", size: 100, count: 8 }), {
      name: "slab:x",
      size: 4096 + 1024,
      align: 4096,
    });
  });

  test("a fresh cache hands objects out in address order, from objBase, objSize apart", () => {
    const { arena, c } = mkCache({ name: "order", size: 100, count: 8 });
    const r = arena.region("slab:order");
    assert.equal(c.objSize, 128);
    assert.equal(c.nrObjs, 8);
    assert.equal(c.objBase, r.offset + 4096);
    assert.equal(c.objEnd, c.objBase + 8 * 128);
    assert.equal(c.objBase % PAGE_SIZE, 0);
    const got: number[] = [];
    for (let i = 0; i < 8; i++) got.push(kmemCacheAlloc(c));
    assert.deepEqual(
      got,
      Array.from({ length: 8 }, (_, i) => c.objBase + i * 128),
    );
  });

  test("objects honour the requested alignment (64, 256, 1024)", () => {
    for (const align of [64, 256, 1024]) {
      const { c } = mkCache({ name: `al${align}`, size: 40, count: 20, align });
      assert.equal(c.objSize, align);
      for (let i = 0; i < 20; i++) {
        const o = kmemCacheAlloc(c);
        assert.equal(o % align, 0, `align ${align}: object ${hex(o)}`);
      }
    }
  });

  test("objects honour an alignment above the 4 KiB page (8192)", () => {
    const { c } = mkCache({ name: "al8k", size: 8192, count: 4, align: 8192 });
    for (let i = 0; i < 4; i++) {
      const o = kmemCacheAlloc(c);
      assert.equal(o % 8192, 0, `object ${i} at ${hex(o)} is not 8 KiB aligned (objBase ${hex(c.objBase)})`);
    }
  });

  test("kmemCacheObjIndex: object starts map to indices, anything else to -1 (power-of-two size)", () => {
    const { c } = mkCache({ name: "idx64", size: 64, count: 10 });
    assert.equal(c.objShift, 6);
    for (let i = 0; i < 10; i++) assert.equal(kmemCacheObjIndex(c, c.objBase + i * 64), i);
    assert.equal(kmemCacheObjIndex(c, c.objBase + 1), -1);
    assert.equal(kmemCacheObjIndex(c, c.objBase + 63), -1);
    assert.equal(kmemCacheObjIndex(c, c.objBase - 64), -1);
    assert.equal(kmemCacheObjIndex(c, c.objEnd), -1);
    assert.equal(kmemCacheObjIndex(c, 0), -1);
  });

  test("kmemCacheObjIndex / ObjStart with a non-power-of-two object size (192)", () => {
    const { c } = mkCache({ name: "idx192", size: 150, count: 10 });
    assert.equal(c.objSize, 192);
    assert.equal(c.objShift, -1);
    for (let i = 0; i < 10; i++) {
      const start = c.objBase + i * 192;
      assert.equal(kmemCacheObjIndex(c, start), i);
      assert.equal(kmemCacheObjIndex(c, start + 64), -1);
      assert.equal(kmemCacheObjStart(c, start), start);
      assert.equal(kmemCacheObjStart(c, start + 1), start);
      assert.equal(kmemCacheObjStart(c, start + 128), start);
      assert.equal(kmemCacheObjStart(c, start + 191), start);
    }
    assert.equal(kmemCacheObjIndex(c, c.objEnd - 192), 9);
    assert.equal(kmemCacheObjIndex(c, c.objEnd), -1);
  });

  test("kmemCacheObjStart with a power-of-two object size", () => {
    const { c } = mkCache({ name: "start4k", size: 4096, count: 3, align: 4096 });
    assert.equal(c.objShift, 12);
    assert.equal(kmemCacheObjStart(c, c.objBase + 4096 + 17), c.objBase + 4096);
    assert.equal(kmemCacheObjStart(c, c.objBase + 3 * 4096 - 1), c.objBase + 2 * 4096);
    assert.equal(kmemCacheObjStart(c, c.objBase), c.objBase);
  });

  test("kmemCacheCreate validates id, count and the carved region", () => {
    const o = { name: "v", size: 64, count: 4 };
    const arena = arenaCreate(65536, [slabRegionSpec(o), { name: "slab:tiny", size: 64 }]);
    assert.throws(() => kmemCacheCreate(arena, 0, o), { name: "RangeError", message: "kmemCacheCreate(v): id 0 not in 1..255" });
    assert.throws(() => kmemCacheCreate(arena, 256, o), {
      name: "RangeError",
      message: "kmemCacheCreate(v): id 256 not in 1..255",
    });
    assert.throws(() => kmemCacheCreate(arena, 1, { ...o, count: 0 }), {
      name: "RangeError",
      message: "kmemCacheCreate(v): count 0 must be a positive integer",
    });
    assert.throws(() => kmemCacheCreate(arena, 1, { ...o, count: 2.5 }), RangeError);
    assert.throws(() => kmemCacheCreate(arena, 1, { ...o, count: 20 }), {
      name: "RangeError",
      message: "kmemCacheCreate(v): region is 4.3 KiB, needs 5.3 KiB",
    });
    assert.throws(() => kmemCacheCreate(arena, 1, { name: "tiny", size: 64, count: 1 }), {
      name: "RangeError",
      message: "kmemCacheCreate(tiny): region is 64 B, needs 4.1 KiB",
    });
    assert.throws(() => kmemCacheCreate(arena, 1, { name: "absent", size: 64, count: 1 }), /no region 'slab:absent'/);
  });
});

describe("slab: single alloc/free", () => {
  test("LIFO: the object freed last is the next one allocated", () => {
    const { c } = mkCache({ name: "lifo", size: 64, count: 8 });
    const a = kmemCacheAlloc(c);
    const b = kmemCacheAlloc(c);
    const d = kmemCacheAlloc(c);
    assert.deepEqual([a, b, d], [c.objBase, c.objBase + 64, c.objBase + 128]);
    kmemCacheFree(c, a);
    assert.equal(kmemCacheAlloc(c), a);
    kmemCacheFree(c, b);
    kmemCacheFree(c, d);
    kmemCacheFree(c, a);
    assert.equal(kmemCacheAlloc(c), a);
    assert.equal(kmemCacheAlloc(c), d);
    assert.equal(kmemCacheAlloc(c), b);
    // then the untouched ones, in address order
    assert.equal(kmemCacheAlloc(c), c.objBase + 3 * 64);
  });

  test("exhaustion returns 0 (NULL), counts allocFail and never throws", () => {
    const { c } = mkCache({ name: "exh", size: 64, count: 4 });
    const objs = [kmemCacheAlloc(c), kmemCacheAlloc(c), kmemCacheAlloc(c), kmemCacheAlloc(c)];
    assert.ok(objs.every((o) => o !== 0));
    assert.equal(kmemCacheAlloc(c), 0);
    assert.equal(kmemCacheAlloc(c), 0);
    assert.equal(kmemCacheAlloc(c), 0);
    assert.deepEqual(kmemCacheInfo(c), zeroInfo(c, { activeObjs: 4, allocs: 4, allocFail: 3 }));
    kmemCacheFree(c, objs[2] as number);
    assert.equal(kmemCacheAlloc(c), objs[2]);
    assert.equal(kmemCacheAlloc(c), 0);
    assert.equal(kmemCacheInfo(c).allocFail, 4);
  });

  test("kmemCacheAttach maps the same shared cache: alloc on one handle, free on the other", () => {
    const o = { name: "shared", size: 64, count: 4 };
    const { arena, c } = mkCache(o, 17);
    const d = kmemCacheAttach(arena, 17, "shared");
    assert.notEqual(d, c);
    assert.equal(d.objBase, c.objBase);
    assert.equal(d.objSize, 64);
    assert.equal(d.nrObjs, 4);
    assert.equal(d.debug, false);
    assert.equal(d.partialBulk, false);
    const x = kmemCacheAlloc(c);
    assert.equal(kmemCacheActive(d), 1);
    kmemCacheFree(d, x);
    assert.equal(kmemCacheActive(c), 0);
    assert.equal(kmemCacheAlloc(d), x);
    assert.deepEqual(kmemCacheInfo(d), { ...kmemCacheInfo(c) });
    assert.deepEqual(kmemCacheInfo(c), zeroInfo(c, { activeObjs: 1, allocs: 2, frees: 1 }));
  });
});

describe("slab: bulk", () => {
  test("allocBulk hands out what successive single allocs would, at out[off..]", () => {
    const { c } = mkCache({ name: "bulk", size: 64, count: 16 });
    const out = new Uint32Array(12).fill(0xdeadbeef);
    assert.equal(kmemCacheAllocBulk(c, 8, out, 2), 8);
    assert.deepEqual(
      [...out],
      [0xdeadbeef, 0xdeadbeef, ...Array.from({ length: 8 }, (_, i) => c.objBase + i * 64), 0xdeadbeef, 0xdeadbeef],
    );
    // free bulk 4 of them: they come back LIFO (last in the list is on top)
    kmemCacheFreeBulk(c, 4, out, 2);
    assert.equal(kmemCacheAlloc(c), out[5]);
    assert.equal(kmemCacheAlloc(c), out[4]);
    const again = new Uint32Array(2);
    assert.equal(kmemCacheAllocBulk(c, 2, again, 0), 2);
    assert.deepEqual([...again], [out[3], out[2]]);
  });

  test("a bulk alloc of 0 or a negative count takes nothing and leaves the stack as it was", () => {
    const { c } = mkCache({ name: "bulk-neg", size: 64, count: 8 });
    const out = new Uint32Array(4);
    assert.equal(kmemCacheAllocBulk(c, 0, out, 0), 0);
    assert.equal(kmemCacheAllocBulk(c, -3, out, 0), 0);
    assert.equal(kmemCacheActive(c), 0);
    assert.equal(kmemCacheAllocBulk(c, 8, new Uint32Array(8), 0), 8);
  });

  test("bulk calls of every size 1..13 match single allocs and frees, object for object", () => {
    // The copies run four objects per turn plus a tail: every remainder is covered.
    for (let n = 1; n <= 13; n++) {
      const { c: a } = mkCache({ name: "bulk-n", size: 64, count: 32 });
      const { c: b } = mkCache({ name: "single-n", size: 64, count: 32 });
      const out = new Uint32Array(n + 2).fill(7);
      assert.equal(kmemCacheAllocBulk(a, n, out, 1), n);
      const singles = Array.from({ length: n }, () => kmemCacheAlloc(b));
      assert.deepEqual([...out.subarray(1, n + 1)].map((o) => o - a.objBase), singles.map((o) => o - b.objBase), `alloc n=${n}`);
      assert.equal(out[0], 7);
      assert.equal(out[n + 1], 7);
      kmemCacheFreeBulk(a, n, out, 1);
      for (const o of singles) kmemCacheFree(b, o);
      const x = Array.from({ length: n + 3 }, () => kmemCacheAlloc(a) - a.objBase);
      const y = Array.from({ length: n + 3 }, () => kmemCacheAlloc(b) - b.objBase);
      assert.deepEqual(x, y, `free n=${n}: the stacks agree afterwards`);
    }
  });

  test("all-or-nothing (default): a bulk alloc that cannot be fully served returns 0 and takes nothing", () => {
    const { c } = mkCache({ name: "aon", size: 64, count: 8 });
    for (let i = 0; i < 5; i++) kmemCacheAlloc(c);
    const out = new Uint32Array(4).fill(7);
    assert.equal(kmemCacheAllocBulk(c, 4, out, 0), 0);
    assert.deepEqual([...out], [7, 7, 7, 7]);
    assert.deepEqual(kmemCacheInfo(c), zeroInfo(c, { activeObjs: 5, allocs: 5, allocBulkCalls: 1, allocFail: 1 }));
    assert.equal(kmemCacheAllocBulk(c, 3, out, 0), 3);
    assert.deepEqual([...out], [c.objBase + 5 * 64, c.objBase + 6 * 64, c.objBase + 7 * 64, 7]);
    assert.equal(kmemCacheAllocBulk(c, 1, out, 0), 0);
    assert.deepEqual(
      kmemCacheInfo(c),
      zeroInfo(c, { activeObjs: 8, allocs: 5, allocBulkCalls: 3, allocBulkObjs: 3, allocFail: 2 }),
    );
  });

  test('"partial" bulkMode returns what is free and counts bulkShort', () => {
    const { c } = mkCache({ name: "part", size: 64, count: 8, bulkMode: "partial" });
    assert.equal(c.partialBulk, true);
    for (let i = 0; i < 5; i++) kmemCacheAlloc(c);
    const out = new Uint32Array(6).fill(9);
    assert.equal(kmemCacheAllocBulk(c, 6, out, 0), 3);
    assert.deepEqual([...out], [c.objBase + 5 * 64, c.objBase + 6 * 64, c.objBase + 7 * 64, 9, 9, 9]);
    assert.deepEqual(
      kmemCacheInfo(c),
      zeroInfo(c, { activeObjs: 8, allocs: 5, allocBulkCalls: 1, allocBulkObjs: 3, bulkShort: 1 }),
    );
    // nothing free at all: 0, counted as a failure, not as a short bulk
    assert.equal(kmemCacheAllocBulk(c, 2, out, 0), 0);
    assert.deepEqual(
      kmemCacheInfo(c),
      zeroInfo(c, { activeObjs: 8, allocs: 5, allocBulkCalls: 2, allocBulkObjs: 3, bulkShort: 1, allocFail: 1 }),
    );
  });

  test("zero=true zero-fills every object of the bulk and nothing else", () => {
    const { arena, c } = mkCache({ name: "zero", size: 100, count: 6 });
    const all = new Uint32Array(6);
    assert.equal(kmemCacheAllocBulk(c, 6, all, 0), 6);
    arena.u8.fill(0xa5, c.objBase, c.objEnd);
    kmemCacheFreeBulk(c, 6, all, 0); // top of stack is now all[5]
    const first = kmemCacheAlloc(c); // all[5], stays dirty
    const out = new Uint32Array(3);
    assert.equal(kmemCacheAllocBulk(c, 3, out, 0, true), 3);
    assert.deepEqual([...out], [all[4], all[3], all[2]]);
    for (const o of out) {
      assert.ok(arena.u8.subarray(o, o + c.objSize).every((b) => b === 0), `object ${hex(o)} not zeroed`);
    }
    for (const o of [first, all[0] as number, all[1] as number]) {
      assert.ok(arena.u8.subarray(o, o + c.objSize).every((b) => b === 0xa5), `object ${hex(o)} was touched`);
    }
    // without zero the contents are left as they are
    kmemCacheFreeBulk(c, 3, out, 0);
    arena.u8.fill(0x11, out[0] as number, (out[0] as number) + c.objSize);
    const again = new Uint32Array(3);
    assert.equal(kmemCacheAllocBulk(c, 3, again, 0, false), 3);
    assert.equal(again[2], out[0]);
    assert.equal(arena.u8[out[0] as number], 0x11);
  });

  test("alignments below 4 are rejected: objects are word-accessed (zeroing, poison checks)", () => {
    for (const align of [1, 2]) {
      const o = { name: `odd${align}`, size: 6, count: 8, align };
      const arena = arenaCreate(1 << 16, [slabRegionSpec(o)]);
      assert.throws(() => kmemCacheCreate(arena, 1, o), {
        name: "RangeError",
        message: `kmemCacheCreate(odd${align}): align ${align} must be a power of two in 4..1M (objects are word-accessed)`,
      });
    }
  });

  test("freeBulk with n = 0 does nothing", () => {
    const { c } = mkCache({ name: "fb0", size: 64, count: 4 });
    kmemCacheFreeBulk(c, 0, new Uint32Array(4), 0);
    assert.deepEqual(kmemCacheInfo(c), zeroInfo(c, {}));
  });

  test("statistics count single and bulk calls and objects exactly", () => {
    const { c } = mkCache({ name: "stats", size: 192, count: 32 });
    const buf = new Uint32Array(32);
    const singles = [kmemCacheAlloc(c), kmemCacheAlloc(c), kmemCacheAlloc(c)];
    assert.equal(kmemCacheAllocBulk(c, 10, buf, 0), 10);
    assert.equal(kmemCacheAllocBulk(c, 5, buf, 10), 5);
    kmemCacheFree(c, singles[0] as number);
    kmemCacheFreeBulk(c, 7, buf, 0);
    assert.equal(kmemCacheAllocBulk(c, 40, buf, 16), 0);
    assert.equal(kmemCacheAlloc(c), buf[6]); // top of the stack: last object of the bulk free
    assert.deepEqual(
      kmemCacheInfo(c),
      zeroInfo(c, {
        objSize: 192,
        activeObjs: 3 + 15 - 1 - 7 + 1,
        allocs: 4,
        frees: 1,
        allocBulkCalls: 3,
        allocBulkObjs: 15,
        freeBulkCalls: 1,
        freeBulkObjs: 7,
        allocFail: 1,
      }),
    );
    assert.equal(kmemCacheActive(c), 11);
    assert.equal(kmemCacheCalls(c), 4 + 1 + 3 + 1);
  });
});

describe("slab: debug mode", () => {
  const dbg = (name: string, count = 8, extra: Partial<KmemCacheOptions> = {}) =>
    mkCache({ name, size: 64, count, debug: true, ...extra });

  test("a debug cache starts poisoned and every object free; alloc marks allocated, free re-poisons", () => {
    const { arena, c } = dbg("poison");
    assert.equal(c.debug, true);
    assert.ok(arena.u8.subarray(c.objBase, c.objEnd).every((b) => b === POISON_FREE));
    assert.equal(POISON_FREE, 0x6b);
    assert.equal(kmemCacheObjState(c, c.objBase), OBJ_FREE);
    const o = kmemCacheAlloc(c);
    assert.equal(kmemCacheObjState(c, o), OBJ_ALLOCATED);
    arena.u8.fill(0x42, o, o + 64);
    kmemCacheFree(c, o);
    assert.equal(kmemCacheObjState(c, o), OBJ_FREE);
    assert.ok(arena.u8.subarray(o, o + 64).every((b) => b === POISON_FREE));
    assert.equal(kmemCacheObjState(c, o + 1), -1);
  });

  test("kmemCacheObjState is -1 without debug", () => {
    const { c } = mkCache({ name: "nodebug", size: 64, count: 2 });
    assert.equal(kmemCacheObjState(c, kmemCacheAlloc(c)), -1);
  });

  test("double free throws naming the object (hex) and the cache, and changes nothing", () => {
    const { c } = dbg("dfree");
    kmemCacheAlloc(c);
    const o = kmemCacheAlloc(c);
    kmemCacheFree(c, o);
    assert.throws(() => kmemCacheFree(c, o), {
      message: `kmemCacheFree(dfree): double free of object ${hex(o)}`,
    });
    assert.deepEqual(kmemCacheInfo(c), zeroInfo(c, { activeObjs: 1, allocs: 2, frees: 1 }));
    // the lock was released: the cache still works
    assert.equal(kmemCacheAlloc(c), o);
  });

  test("freeing a foreign pointer throws naming it", () => {
    const { c } = dbg("foreign");
    const o = kmemCacheAlloc(c);
    for (const bad of [o + 4, c.objEnd, c.objBase - 64, 4096]) {
      assert.throws(() => kmemCacheFree(c, bad), {
        message: `kmemCacheFree(foreign): ${hex(bad)} is not an object of this cache`,
      });
    }
    assert.equal(kmemCacheActive(c), 1);
  });

  test("write after free is detected on the next alloc of that object, naming the byte offset", () => {
    const { arena, c } = dbg("waf");
    const o = kmemCacheAlloc(c);
    kmemCacheFree(c, o);
    arena.u8[o + 5] = 0x99;
    assert.throws(() => kmemCacheAlloc(c), {
      message: `kmemCacheAlloc(waf): write after free in object ${hex(o)}: byte +5 is 0x99, expected poison 0x6b`,
    });
    // the lock is released afterwards
    const p = kmemCacheAlloc(c);
    assert.equal(p, c.objBase + 64);
  });

  test("write after free in the last byte is reported with its offset", () => {
    const { arena, c } = dbg("waf-last");
    const o = kmemCacheAlloc(c);
    kmemCacheFree(c, o);
    arena.u8[o + 63] = 0;
    assert.throws(() => kmemCacheAlloc(c), {
      message: `kmemCacheAlloc(waf-last): write after free in object ${hex(o)}: byte +63 is 0x0, expected poison 0x6b`,
    });
  });

  test("write after free is detected by a bulk alloc too", () => {
    const { arena, c } = dbg("waf-bulk");
    const out = new Uint32Array(4);
    assert.equal(kmemCacheAllocBulk(c, 4, out, 0), 4);
    kmemCacheFreeBulk(c, 4, out, 0);
    arena.u8[(out[1] as number) + 33] = 0x00;
    assert.throws(() => kmemCacheAllocBulk(c, 4, new Uint32Array(4), 0), {
      message: `kmemCacheAllocBulk(waf-bulk): write after free in object ${hex(out[1] as number)}: byte +33 is 0x0, expected poison 0x6b`,
    });
  });

  test("freeBulk with one bad object frees none of them", () => {
    const { c } = dbg("fb-bad");
    const out = new Uint32Array(4);
    assert.equal(kmemCacheAllocBulk(c, 4, out, 0), 4);
    kmemCacheFree(c, out[2] as number);
    assert.throws(() => kmemCacheFreeBulk(c, 4, out, 0), {
      message: `kmemCacheFreeBulk(fb-bad): double free of object ${hex(out[2] as number)}`,
    });
    assert.equal(kmemCacheActive(c), 3);
    for (const i of [0, 1, 3]) assert.equal(kmemCacheObjState(c, out[i] as number), OBJ_ALLOCATED);
    assert.deepEqual(kmemCacheInfo(c), zeroInfo(c, { activeObjs: 3, allocBulkCalls: 1, allocBulkObjs: 4, frees: 1 }));
    const foreign = new Uint32Array([out[0] as number, (out[1] as number) + 8]);
    assert.throws(() => kmemCacheFreeBulk(c, 2, foreign, 0), {
      message: `kmemCacheFreeBulk(fb-bad): ${hex((out[1] as number) + 8)} is not an object of this cache`,
    });
    assert.equal(kmemCacheObjState(c, out[0] as number), OBJ_ALLOCATED);
    assert.equal(kmemCacheActive(c), 3);
  });

  test("freeBulk listing the same live object twice is a double free (throws, frees none)", () => {
    const { c } = dbg("fb-dup");
    const a = kmemCacheAlloc(c);
    const b = kmemCacheAlloc(c);
    let err: unknown;
    try {
      kmemCacheFreeBulk(c, 3, new Uint32Array([a, b, a]), 0);
    } catch (e) {
      err = e;
    }
    const info = kmemCacheInfo(c);
    assert.ok(
      err instanceof Error,
      `no error; activeObjs is now ${info.activeObjs}, next three allocs: ${hex(kmemCacheAlloc(c))} ${hex(kmemCacheAlloc(c))} ${hex(kmemCacheAlloc(c))}`,
    );
    assert.equal(err.message, `kmemCacheFreeBulk(fb-dup): double free of object ${hex(a)} (twice in one bulk free)`);
    assert.equal(info.activeObjs, 2);
  });

  test("kmemCacheMarkCached transitions ALLOCATED <-> CACHED and rejects bad ones", () => {
    const { c } = dbg("napi");
    const o = kmemCacheAlloc(c);
    assert.equal(kmemCacheMarkCached(c, o, true), null);
    assert.equal(kmemCacheObjState(c, o), OBJ_CACHED);
    assert.equal(
      kmemCacheMarkCached(c, o, true),
      `napiSkbCachePut(napi): double free of skb ${hex(o)} (already cached)`,
    );
    assert.equal(kmemCacheObjState(c, o), OBJ_CACHED);
    // a cached head cannot be freed to the slab behind the cache's back
    assert.throws(() => kmemCacheFree(c, o), {
      message: `kmemCacheFree(napi): object ${hex(o)} is parked in a NAPI head cache`,
    });
    assert.throws(() => kmemCacheFreeBulk(c, 1, new Uint32Array([o]), 0), {
      message: `kmemCacheFreeBulk(napi): object ${hex(o)} is parked in a NAPI head cache`,
    });
    assert.equal(kmemCacheMarkCached(c, o, false), null);
    assert.equal(kmemCacheObjState(c, o), OBJ_ALLOCATED);
    kmemCacheFree(c, o);
    assert.equal(
      kmemCacheMarkCached(c, o, true),
      `napiSkbCachePut(napi): skb ${hex(o)} was already freed to the slab`,
    );
    assert.equal(kmemCacheObjState(c, o), OBJ_FREE);
    assert.equal(
      kmemCacheMarkCached(c, o + 3, true),
      `napiSkbCachePut(napi): ${hex(o + 3)} is not an object of this cache`,
    );
  });
});

// ---- model-based property test -----------------------------------------------

type Cmd =
  | { op: "alloc" }
  | { op: "free"; pick: number }
  | { op: "allocBulk"; n: number; zero: boolean }
  | { op: "freeBulk"; n: number; pick: number };

const cmdArb: fc.Arbitrary<Cmd> = fc.oneof(
  fc.constant<Cmd>({ op: "alloc" }),
  fc.record({ op: fc.constant("free" as const), pick: fc.nat() }),
  fc.record({ op: fc.constant("allocBulk" as const), n: fc.integer({ min: 1, max: 24 }), zero: fc.boolean() }),
  fc.record({ op: fc.constant("freeBulk" as const), n: fc.integer({ min: 1, max: 24 }), pick: fc.nat() }),
);

describe("slab: model-based property", () => {
  test("random alloc/free/allocBulk/freeBulk sequences agree with a Set model", () => {
    let run = 0;
    fc.assert(
      fc.property(
        fc.array(cmdArb, { minLength: 1, maxLength: 120 }),
        fc.integer({ min: 1, max: 40 }),
        fc.constantFrom<"all-or-nothing" | "partial">("all-or-nothing", "partial"),
        fc.boolean(),
        fc.constantFrom(64, 100, 192),
        (cmds, count, bulkMode, debug, size) => {
          const { arena, c } = mkCache({ name: `prop${run++ % 4}`, size, count, bulkMode, debug });
          const live = new Set<number>();
          const tag = new Map<number, number>();
          const stat = zeroInfo(c, {});
          const buf = new Uint32Array(32);
          let seq = 1;
          const take = (o: number) => {
            assert.notEqual(o, 0);
            assert.ok(o >= c.objBase && o < c.objEnd, `object ${hex(o)} outside the cache`);
            assert.ok(kmemCacheObjIndex(c, o) >= 0, `object ${hex(o)} is not an object start`);
            assert.ok(!live.has(o), `object ${hex(o)} handed out twice while live`);
            live.add(o);
            const t = seq++;
            arena.u32[o >>> 2] = t;
            arena.u32[(o + c.objSize - 4) >>> 2] = t ^ 0x5a5a5a5a;
            tag.set(o, t);
          };
          const release = (o: number) => {
            const t = tag.get(o) as number;
            assert.equal(arena.u32[o >>> 2], t, `tag of ${hex(o)} overwritten`);
            assert.equal(arena.u32[(o + c.objSize - 4) >>> 2], (t ^ 0x5a5a5a5a) >>> 0);
            live.delete(o);
            tag.delete(o);
          };
          for (const cmd of cmds) {
            const free = count - live.size;
            switch (cmd.op) {
              case "alloc": {
                const o = kmemCacheAlloc(c);
                if (free === 0) {
                  assert.equal(o, 0);
                  stat.allocFail++;
                } else {
                  take(o);
                  stat.allocs++;
                }
                break;
              }
              case "free": {
                if (live.size === 0) break;
                const o = [...live][cmd.pick % live.size] as number;
                release(o);
                kmemCacheFree(c, o);
                stat.frees++;
                // LIFO: the next allocation would be o again
                break;
              }
              case "allocBulk": {
                buf.fill(0xffffffff);
                const k = kmemCacheAllocBulk(c, cmd.n, buf, 1, cmd.zero);
                const expect = free >= cmd.n ? cmd.n : bulkMode === "partial" ? free : 0;
                assert.equal(k, expect, `allocBulk(${cmd.n}) with ${free} free (${bulkMode})`);
                assert.equal(buf[0], 0xffffffff);
                assert.equal(buf[k + 1], 0xffffffff);
                stat.allocBulkCalls++;
                stat.allocBulkObjs += k;
                if (k === 0) stat.allocFail++;
                else if (k < cmd.n) stat.bulkShort++;
                for (let i = 0; i < k; i++) {
                  const o = buf[1 + i] as number;
                  if (cmd.zero) {
                    assert.ok(arena.u8.subarray(o, o + c.objSize).every((b) => b === 0), `${hex(o)} not zeroed`);
                  }
                  take(o);
                }
                break;
              }
              case "freeBulk": {
                if (live.size === 0) break;
                const arr = [...live];
                const n = Math.min(cmd.n, arr.length);
                const start = cmd.pick % arr.length;
                for (let i = 0; i < n; i++) {
                  const o = arr[(start + i) % arr.length] as number;
                  release(o);
                  buf[3 + i] = o;
                }
                kmemCacheFreeBulk(c, n, buf, 3);
                stat.freeBulkCalls++;
                stat.freeBulkObjs += n;
                // LIFO: the last freed object is the next one allocated
                if (n > 0) {
                  const next = kmemCacheAlloc(c);
                  assert.equal(next, buf[3 + n - 1]);
                  take(next);
                  stat.allocs++;
                }
                break;
              }
            }
            assert.equal(kmemCacheActive(c), live.size);
          }
          stat.activeObjs = live.size;
          assert.deepEqual(kmemCacheInfo(c), stat);
          // drain: everything comes back, each object exactly once
          for (const o of [...live]) {
            release(o);
            kmemCacheFree(c, o);
          }
          assert.equal(kmemCacheActive(c), 0);
          const all = new Uint32Array(count);
          assert.equal(kmemCacheAllocBulk(c, count, all, 0), count);
          assert.equal(new Set(all).size, count);
          for (const o of all) assert.ok(kmemCacheObjIndex(c, o) >= 0);
        },
      ),
      { numRuns: 300 },
    );
  });
});
