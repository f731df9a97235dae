import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { arenaCreate, PAGE_SHIFT } from "../../src/mm/arena.js";
import {
  KMALLOC_MAX_SIZE,
  KMALLOC_SIZES,
  kmalloc,
  kmallocAttach,
  kmallocCreate,
  kmallocName,
  kmallocRegionSpecs,
  kmallocSizeRoundup,
  kmallocSlab,
} from "../../src/mm/kmalloc.js";
import { kfree, ksize, mmSlabInfo, virtToCache, virtToPageAlloc } from "../../src/mm/mm.js";
import { allocPage } from "../../src/mm/page-alloc.js";
import { kmemCacheActive, kmemCacheAlloc, kmemCacheInfo } from "../../src/mm/slab.js";
import { createSkbMemory, ID_KMALLOC, type SkbMemory } from "../../src/skb/memory.js";

const COUNTS = [8, 8, 8, 8, 8, 8, 8, 4, 4, 2, 2];

function mem(debug = false): SkbMemory {
  return createSkbMemory({
    arenaSize: 4 << 20,
    heads: 64,
    fclones: 8,
    smallHeads: 16,
    kmalloc: COUNTS,
    fragPages: 2,
    pages: 16,
    maxPagePools: 2,
    ppRingSize: 16,
    maxCpus: 2,
    debug,
  });
}

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

/** Reference: smallest class >= size. */
function refClass(size: number): number {
  for (const c of KMALLOC_SIZES) if (c >= size) return c;
  return 0;
}

describe("kmalloc size classes", () => {
  test("the ladder is the kernel's, 64 B .. 32 KiB, with kernel cache names", () => {
    assert.deepEqual([...KMALLOC_SIZES], [64, 128, 192, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768]);
    assert.equal(KMALLOC_MAX_SIZE, 32768);
    assert.deepEqual(
      KMALLOC_SIZES.map(kmallocName),
      [
        "kmalloc-64",
        "kmalloc-128",
        "kmalloc-192",
        "kmalloc-256",
        "kmalloc-512",
        "kmalloc-1k",
        "kmalloc-2k",
        "kmalloc-4k",
        "kmalloc-8k",
        "kmalloc-16k",
        "kmalloc-32k",
      ],
    );
  });

  test("each class boundary selects that class; one byte more selects the next", () => {
    const m = mem();
    const km = m.kmalloc;
    KMALLOC_SIZES.forEach((size, i) => {
      const s = kmallocSlab(km, size);
      assert.equal(s, km.caches[i], `size ${size}`);
      assert.equal(s?.objSize, size);
      assert.equal(s?.name, kmallocName(size));
      if (i + 1 < KMALLOC_SIZES.length) {
        assert.equal(kmallocSlab(km, size + 1), km.caches[i + 1], `size ${size + 1}`);
      }
    });
    assert.equal(kmallocSlab(km, 1), km.caches[0]);
    assert.equal(kmallocSlab(km, 65)?.objSize, 128);
    assert.equal(kmallocSlab(km, 129)?.objSize, 192);
    assert.equal(kmallocSlab(km, 193)?.objSize, 256);
    assert.equal(kmallocSlab(km, 1500)?.objSize, 2048);
    assert.equal(kmallocSlab(km, 32767)?.objSize, 32768);
  });

  test("kmallocSizeRoundup is the smallest class >= size for every size 1..32768", () => {
    const km = mem().kmalloc;
    for (let size = 1; size <= KMALLOC_MAX_SIZE; size++) {
      const got = kmallocSizeRoundup(km, size);
      if (got !== refClass(size)) assert.equal(got, refClass(size), `kmallocSizeRoundup(${size})`);
    }
  });

  test("requests above 32768 (or <= 0) are not served: roundup 0, kmalloc 0, no cache", () => {
    const m = mem();
    const km = m.kmalloc;
    for (const size of [32769, 65536, 1 << 20]) {
      assert.equal(kmallocSlab(km, size), undefined);
      assert.equal(kmallocSizeRoundup(km, size), 0);
      assert.equal(kmalloc(km, size), 0);
    }
    assert.equal(kmallocSlab(km, 0), undefined);
    assert.equal(kmallocSlab(km, -5), undefined);
    // nothing was allocated or counted as a failure
    for (const c of km.caches) assert.deepEqual([kmemCacheInfo(c).allocs, kmemCacheInfo(c).allocFail], [0, 0]);
  });

  test("kmalloc allocates from the right class (property)", () => {
    const m = mem();
    const km = m.kmalloc;
    fc.assert(
      fc.property(fc.integer({ min: 1, max: KMALLOC_MAX_SIZE }), (size) => {
        const p = kmalloc(km, size);
        assert.notEqual(p, 0);
        const s = virtToCache(m.mm, p);
        assert.equal(s?.objSize, refClass(size));
        assert.equal(ksize(m.mm, p), refClass(size));
        assert.ok(ksize(m.mm, p) >= size);
        kfree(m.mm, p);
        assert.equal(kmemCacheActive(s!), 0);
      }),
      { numRuns: 500 },
    );
  });
});

describe("kfree / ksize", () => {
  test("kmalloc + kfree round trip, LIFO reuse, stats", () => {
    const m = mem();
    const p = kmalloc(m.kmalloc, 100);
    const q = kmalloc(m.kmalloc, 120);
    const c128 = m.kmalloc.caches[1]!;
    assert.equal(c128.id, ID_KMALLOC + 1);
    assert.deepEqual([p, q], [c128.objBase, c128.objBase + 128]);
    assert.equal(ksize(m.mm, p), 128);
    assert.equal(m.mm.pageOwner[p >>> PAGE_SHIFT], ID_KMALLOC + 1);
    kfree(m.mm, p);
    assert.equal(kmalloc(m.kmalloc, 128), p);
    kfree(m.mm, q);
    kfree(m.mm, p);
    const info = kmemCacheInfo(c128);
    assert.deepEqual([info.activeObjs, info.allocs, info.frees], [0, 3, 3]);
  });

  test("kmalloc returns 0 when its class is exhausted and counts allocFail", () => {
    const m = mem();
    const big: number[] = [];
    for (let i = 0; i < 2; i++) big.push(kmalloc(m.kmalloc, 20000));
    assert.ok(big.every((p) => p !== 0));
    assert.equal(kmalloc(m.kmalloc, 20000), 0);
    assert.equal(kmemCacheInfo(m.kmalloc.caches[10]!).allocFail, 1);
    // other classes are unaffected
    assert.notEqual(kmalloc(m.kmalloc, 10000), 0);
    for (const p of big) kfree(m.mm, p);
    assert.equal(kmalloc(m.kmalloc, 20000), big[1]);
  });

  test("kfree(0) is a no-op", () => {
    const m = mem();
    const before = mmSlabInfo(m.mm);
    kfree(m.mm, 0);
    assert.deepEqual(mmSlabInfo(m.mm), before);
  });

  test("kfree of a pointer kmalloc did not hand out throws naming it (and its owner)", () => {
    const m = mem();
    const head = kmemCacheAlloc(m.headCache);
    assert.throws(() => kfree(m.mm, head), {
      message: `kfree: ${hex(head)} was not allocated by kmalloc (it belongs to skbuff_head_cache)`,
    });
    const page = allocPage(m.pages);
    assert.throws(() => kfree(m.mm, page), {
      message: `kfree: ${hex(page)} was not allocated by kmalloc (it belongs to pages)`,
    });
    assert.throws(() => kfree(m.mm, 0x123), { message: "kfree: 0x123 was not allocated by kmalloc" });
    const rings = m.arena.region("pp-rings").offset;
    assert.throws(() => kfree(m.mm, rings), { message: `kfree: ${hex(rings)} was not allocated by kmalloc` });
    assert.throws(() => kfree(m.mm, m.arena.size + 64), {
      message: `kfree: ${hex(m.arena.size + 64)} was not allocated by kmalloc`,
    });
    // nothing was freed anywhere
    assert.equal(kmemCacheActive(m.headCache), 1);
    assert.equal(kmemCacheActive(m.pages.cache), 1);
  });

  test("debug mode: kfree of an interior pointer and double kfree throw", () => {
    const m = mem(true);
    const p = kmalloc(m.kmalloc, 300);
    assert.throws(() => kfree(m.mm, p + 8), {
      message: `kmemCacheFree(kmalloc-512): ${hex(p + 8)} is not an object of this cache`,
    });
    kfree(m.mm, p);
    assert.throws(() => kfree(m.mm, p), { message: `kmemCacheFree(kmalloc-512): double free of object ${hex(p)}` });
  });

  test("ksize reports the usable size of a slab object and throws outside slabs", () => {
    const m = mem();
    assert.equal(ksize(m.mm, kmalloc(m.kmalloc, 1)), 64);
    assert.equal(ksize(m.mm, kmalloc(m.kmalloc, 5000)), 8192);
    assert.equal(ksize(m.mm, kmemCacheAlloc(m.headCache)), m.headCache.objSize);
    assert.throws(() => ksize(m.mm, 0x40), { message: "ksize: 0x40 was not allocated from a slab" });
  });

  test("virtToPageAlloc finds the page allocator of a page address and throws otherwise", () => {
    const m = mem();
    const page = allocPage(m.pages);
    assert.equal(virtToPageAlloc(m.mm, page + 100, "op"), m.pages);
    const p = kmalloc(m.kmalloc, 64);
    assert.throws(() => virtToPageAlloc(m.mm, p, "skbFragRef"), { message: `skbFragRef: ${hex(p)} is not inside a page` });
  });
});

describe("kmalloc on a bare arena", () => {
  test("kmallocCreate / kmallocAttach over kmallocRegionSpecs", () => {
    const counts = [2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1];
    const arena = arenaCreate(1 << 20, kmallocRegionSpecs(counts));
    const km = kmallocCreate(arena, 20, counts);
    assert.deepEqual(
      km.caches.map((c) => [c.id, c.nrObjs, c.objSize]),
      KMALLOC_SIZES.map((s, i) => [20 + i, counts[i], s]),
    );
    const other = kmallocAttach(arena, 20);
    const p = kmalloc(km, 200);
    assert.equal(kmemCacheActive(other.caches[3]!), 1);
    assert.equal(kmalloc(other, 200), p + 256);
    assert.equal(kmalloc(other, 200), 0);
  });
});
