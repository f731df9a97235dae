import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { alignUp, arenaCreate } from "../../src/mm/arena.js";
import {
  type PageAllocator,
  pageAllocCreate,
  pageAllocRegionSpecs,
  pagePoolId,
  pageRefAdd,
  pageRefCount,
  putPage,
} from "../../src/mm/page-alloc.js";
import {
  PP_ALLOC_CACHE_REFILL,
  PP_ALLOC_CACHE_SIZE,
  type PagePool,
  PagePoolRings,
  type PagePoolStats,
  pagePoolAllocPage,
  pagePoolCreate,
  pagePoolDestroy,
  pagePoolPutPage,
  pagePoolPutPageRemote,
  pagePoolRingConsume,
  pagePoolRingProduce,
  pagePoolRingsRegionSpec,
  pagePoolStats,
} from "../../src/mm/page-pool.js";
import { kmemCacheActive, kmemCacheInfo } from "../../src/mm/slab.js";

interface Env {
  pa: PageAllocator;
  rings: PagePoolRings;
}

function mkEnv(pages: number, maxPools = 2, ringSize = 4): Env {
  const o = { name: "pages", pageSize: 4096, count: pages };
  const arena = arenaCreate(alignUp(pages * 4096 + 65536 + maxPools * (64 + ringSize * 4), 4096), [
    ...pageAllocRegionSpecs(o),
    pagePoolRingsRegionSpec(maxPools, ringSize),
  ]);
  const pa = pageAllocCreate(arena, 5, o);
  return { pa, rings: new PagePoolRings(arena, maxPools, ringSize) };
}

const active = (e: Env) => kmemCacheActive(e.pa.cache);

function stats(over: Partial<PagePoolStats>): PagePoolStats {
  return {
    allocFast: 0,
    allocSlow: 0,
    allocRefill: 0,
    allocEmpty: 0,
    recycleCached: 0,
    recycleRing: 0,
    recycleRingFull: 0,
    recycleReleased: 0,
    inflight: 0,
    ...over,
  };
}

function allocN(pool: PagePool, n: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const p = pagePoolAllocPage(pool);
    assert.notEqual(p, 0);
    out.push(p);
  }
  return out;
}

describe("page pool: slots", () => {
  test("constants are the kernel's", () => {
    assert.equal(PP_ALLOC_CACHE_SIZE, 128);
    assert.equal(PP_ALLOC_CACHE_REFILL, 64);
  });

  test("pools claim ring slots 1..maxPools; one more throws a clear error; destroy frees the slot", () => {
    const e = mkEnv(8, 2);
    const a = pagePoolCreate(e.pa, e.rings, 0);
    const b = pagePoolCreate(e.pa, e.rings, 1);
    assert.deepEqual([a.id, b.id, a.cpu, b.cpu], [1, 2, 0, 1]);
    assert.throws(() => pagePoolCreate(e.pa, e.rings, 2), {
      message: "pagePoolCreate: all 2 page-pool slots are in use (raise maxPagePools)",
    });
    pagePoolDestroy(a);
    const c = pagePoolCreate(e.pa, e.rings, 3);
    assert.equal(c.id, 1);
    assert.deepEqual(pagePoolStats(c), stats({}));
  });
});

describe("page pool: alloc paths", () => {
  test("slow path: an empty pool takes a page from the allocator and tags it with its id", () => {
    const e = mkEnv(8);
    const pool = pagePoolCreate(e.pa, e.rings, 0);
    pagePoolCreate(e.pa, e.rings, 1); // id 2, unused
    const p = pagePoolAllocPage(pool);
    assert.equal(p, e.pa.cache.objBase);
    assert.equal(pagePoolId(e.pa, p), 1);
    assert.equal(pageRefCount(e.pa, p), 1);
    assert.equal(active(e), 1);
    assert.deepEqual(pagePoolStats(pool), stats({ allocSlow: 1, allocEmpty: 1, inflight: 1 }));
  });

  test("direct recycle goes to the alloc cache and the next alloc is a fast one (same page)", () => {
    const e = mkEnv(8);
    const pool = pagePoolCreate(e.pa, e.rings, 0);
    const p = pagePoolAllocPage(pool);
    pagePoolPutPage(pool, p, true);
    assert.equal(pool.count, 1);
    assert.equal(active(e), 1, "a recycled page stays allocated");
    assert.deepEqual(pagePoolStats(pool), stats({ allocSlow: 1, allocEmpty: 1, recycleCached: 1 }));
    assert.equal(pagePoolAllocPage(pool), p);
    assert.deepEqual(
      pagePoolStats(pool),
      stats({ allocSlow: 1, allocEmpty: 1, recycleCached: 1, allocFast: 1, inflight: 1 }),
    );
    assert.equal(kmemCacheInfo(e.pa.cache).allocs, 1);
  });

  test("non-direct recycle goes through the ring; alloc refills the cache from it", () => {
    const e = mkEnv(8);
    const pool = pagePoolCreate(e.pa, e.rings, 0);
    const [p0, p1, p2] = allocN(pool, 3) as [number, number, number];
    for (const p of [p0, p1, p2]) pagePoolPutPage(pool, p, false);
    assert.equal(pool.count, 0);
    assert.deepEqual(pagePoolStats(pool), stats({ allocSlow: 3, allocEmpty: 3, recycleRing: 3 }));
    // refill moves p0, p1, p2 into the cache and hands out the last one
    assert.equal(pagePoolAllocPage(pool), p2);
    assert.equal(pool.count, 2);
    assert.equal(pagePoolAllocPage(pool), p1);
    assert.equal(pagePoolAllocPage(pool), p0);
    assert.deepEqual(
      pagePoolStats(pool),
      stats({ allocSlow: 3, allocEmpty: 3, recycleRing: 3, allocRefill: 1, allocFast: 2, inflight: 3 }),
    );
    assert.equal(active(e), 3);
    assert.equal(kmemCacheInfo(e.pa.cache).allocs, 3);
  });

  test("a full ring releases the page to the allocator", () => {
    const e = mkEnv(8, 2, 4);
    const pool = pagePoolCreate(e.pa, e.rings, 0);
    const pages = allocN(pool, 6);
    for (const p of pages) pagePoolPutPage(pool, p, false);
    assert.deepEqual(
      pagePoolStats(pool),
      stats({ allocSlow: 6, allocEmpty: 6, recycleRing: 4, recycleRingFull: 2, recycleReleased: 2 }),
    );
    assert.equal(active(e), 4);
    assert.equal(pageRefCount(e.pa, pages[4] as number), 0);
    assert.equal(pageRefCount(e.pa, pages[5] as number), 0);
    assert.equal(pagePoolId(e.pa, pages[5] as number), 0);
    assert.equal(pageRefCount(e.pa, pages[3] as number), 1);
  });

  test("direct recycle with a full alloc cache (128) spills into the ring", () => {
    const e = mkEnv(140, 2, 16);
    const pool = pagePoolCreate(e.pa, e.rings, 0);
    const pages = allocN(pool, 130);
    for (const p of pages) pagePoolPutPage(pool, p, true);
    assert.equal(pool.count, 128);
    assert.deepEqual(
      pagePoolStats(pool),
      stats({ allocSlow: 130, allocEmpty: 130, recycleCached: 128, recycleRing: 2 }),
    );
    assert.equal(active(e), 130);
  });

  test("a page with another reference is not recycled: put drops one reference only", () => {
    const e = mkEnv(8);
    const pool = pagePoolCreate(e.pa, e.rings, 0);
    const p = pagePoolAllocPage(pool);
    pageRefAdd(e.pa, p, 1); // e.g. an skb clone still points at it
    pagePoolPutPage(pool, p, true);
    assert.equal(pool.count, 0);
    assert.equal(pageRefCount(e.pa, p), 1);
    assert.equal(active(e), 1);
    assert.deepEqual(pagePoolStats(pool), stats({ allocSlow: 1, allocEmpty: 1, recycleReleased: 1 }));
    putPage(e.pa, p);
    assert.equal(active(e), 0);
  });

  test("allocator exhaustion: alloc returns 0 and nothing is counted in flight", () => {
    const e = mkEnv(2);
    const pool = pagePoolCreate(e.pa, e.rings, 0);
    allocN(pool, 2);
    assert.equal(pagePoolAllocPage(pool), 0);
    assert.deepEqual(pagePoolStats(pool), stats({ allocSlow: 2, allocEmpty: 3, inflight: 2 }));
  });
});

describe("page pool: remote returns", () => {
  test("pagePoolPutPageRemote puts the page into the owner's ring and counts it", () => {
    const e = mkEnv(8);
    const other = pagePoolCreate(e.pa, e.rings, 0);
    const pool = pagePoolCreate(e.pa, e.rings, 1);
    const [a, b] = allocN(pool, 2) as [number, number];
    pagePoolPutPageRemote(e.pa, e.rings, a);
    assert.deepEqual(pagePoolStats(pool), stats({ allocSlow: 2, allocEmpty: 2, inflight: 1 }));
    assert.deepEqual(pagePoolStats(other), stats({}));
    assert.equal(active(e), 2);
    // the owner gets it back through a refill
    assert.equal(pagePoolAllocPage(pool), a);
    assert.equal(pool.allocRefill, 1);
    // with another reference held, a remote put only drops a reference
    pageRefAdd(e.pa, b, 1);
    pagePoolPutPageRemote(e.pa, e.rings, b);
    assert.equal(pageRefCount(e.pa, b), 1);
    const tmp = new Uint32Array(4);
    assert.equal(pagePoolRingConsume(e.rings, pool.id, 4, tmp, 0), 0);
    putPage(e.pa, b);
    assert.equal(active(e), 1);
  });

  test("a remote put into a full ring releases the page", () => {
    const e = mkEnv(8, 1, 2);
    const pool = pagePoolCreate(e.pa, e.rings, 0);
    const pages = allocN(pool, 3);
    for (const p of pages) pagePoolPutPageRemote(e.pa, e.rings, p);
    assert.equal(active(e), 2);
    assert.equal(pageRefCount(e.pa, pages[2] as number), 0);
    assert.equal(pagePoolStats(pool).inflight, 0);
  });
});

describe("page pool: destroy", () => {
  test("pagePoolDestroy frees cached and ringed pages; in-flight pages are freed by their put", () => {
    const e = mkEnv(16);
    const pool = pagePoolCreate(e.pa, e.rings, 0);
    const pages = allocN(pool, 10);
    for (const p of pages.slice(0, 4)) pagePoolPutPage(pool, p, true);
    for (const p of pages.slice(4, 7)) pagePoolPutPage(pool, p, false);
    assert.equal(active(e), 10);
    pagePoolDestroy(pool);
    assert.equal(pool.destroyed, true);
    assert.equal(pool.count, 0);
    assert.equal(active(e), 3);
    for (const p of pages.slice(0, 7)) assert.equal(pageRefCount(e.pa, p), 0);
    // the remaining in-flight pages are released by their (local) put, even "direct"
    pagePoolPutPage(pool, pages[7] as number, true);
    pagePoolPutPage(pool, pages[8] as number, false);
    pagePoolPutPage(pool, pages[9] as number, true);
    assert.equal(active(e), 0);
    assert.equal(kmemCacheInfo(e.pa.cache).frees, 10);
  });

  test("a remote put of an in-flight page after destroy frees the page", () => {
    const e = mkEnv(8);
    const pool = pagePoolCreate(e.pa, e.rings, 0);
    const p = pagePoolAllocPage(pool);
    pagePoolDestroy(pool);
    pagePoolPutPageRemote(e.pa, e.rings, p);
    const leaked = active(e);
    // a new pool reusing slot 1 must not see (or lose) the old pool's page
    const next = pagePoolCreate(e.pa, e.rings, 0);
    assert.equal(next.id, 1);
    pagePoolDestroy(next);
    assert.equal(leaked, 0, "page left allocated (stuck in the dead pool's ring)");
    assert.equal(active(e), 0);
  });
});

describe("page pool: rings", () => {
  test("ring is FIFO, bounded by its capacity, and wraps around", () => {
    const e = mkEnv(4, 2, 4);
    pagePoolCreate(e.pa, e.rings, 0); // initialises slot 1 (capacity 4)
    const out = new Uint32Array(8);
    for (let i = 1; i <= 4; i++) assert.equal(pagePoolRingProduce(e.rings, 1, i * 0x1000), true);
    assert.equal(pagePoolRingProduce(e.rings, 1, 0x5000), false);
    assert.equal(pagePoolRingConsume(e.rings, 1, 3, out, 1), 3);
    assert.deepEqual([...out.subarray(0, 5)], [0, 0x1000, 0x2000, 0x3000, 0]);
    for (let i = 6; i <= 8; i++) assert.equal(pagePoolRingProduce(e.rings, 1, i * 0x1000), true);
    assert.equal(pagePoolRingProduce(e.rings, 1, 0x9000), false);
    out.fill(0);
    assert.equal(pagePoolRingConsume(e.rings, 1, 8, out, 0), 4);
    assert.deepEqual([...out.subarray(0, 5)], [0x4000, 0x6000, 0x7000, 0x8000, 0]);
    assert.equal(pagePoolRingConsume(e.rings, 1, 8, out, 0), 0);
  });
});
