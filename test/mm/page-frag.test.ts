import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { arenaCreate } from "../../src/mm/arena.js";
import {
  allocPage,
  type PageAllocator,
  pageAllocCreate,
  pageAllocRegionSpecs,
  pageRefCount,
  putPage,
} from "../../src/mm/page-alloc.js";
import {
  PAGE_FRAG_CACHE_MAX_SIZE,
  PageFragCache,
  pageFragAlloc,
  pageFragCacheDrain,
  pageFragFree,
} from "../../src/mm/page-frag.js";
import { kmemCacheActive, kmemCacheInfo } from "../../src/mm/slab.js";

const PS = 32768;
const BIAS = PAGE_FRAG_CACHE_MAX_SIZE + 1;

function mkPages(count: number): PageAllocator {
  const o = { name: "frag-pages", pageSize: PS, count };
  const arena = arenaCreate(count * PS + 2 * PS + 65536, [{ name: "pad", size: 64 }, ...pageAllocRegionSpecs(o)]);
  return pageAllocCreate(arena, 4, o);
}

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

describe("page frag cache", () => {
  test("PAGE_FRAG_CACHE_MAX_SIZE is 32 KiB", () => {
    assert.equal(PAGE_FRAG_CACHE_MAX_SIZE, 32768);
  });

  test("first alloc takes a page with refcount MAX_SIZE+1 and carves from its top", () => {
    const pa = mkPages(4);
    const nc = new PageFragCache(pa);
    assert.equal(nc.va, 0);
    const f = pageFragAlloc(nc, 100);
    const page = pa.cache.objBase;
    assert.equal(f, page + PS - 100);
    assert.equal(nc.va, page);
    assert.equal(pageRefCount(pa, page), BIAS);
    assert.equal(nc.pagecntBias, BIAS - 1);
    assert.equal(nc.offset, PS - 100);
    assert.deepEqual(
      [nc.pagesTaken, nc.pagesReused, nc.fragsAllocated, nc.allocFail],
      [1, 0, 1, 0],
    );
    assert.equal(kmemCacheActive(pa.cache), 1);
  });

  test("fragments come from the top of the page downward, back to back", () => {
    const pa = mkPages(4);
    const nc = new PageFragCache(pa);
    const sizes = [100, 200, 1, 4096, 7];
    let end = PS;
    for (const s of sizes) {
      const f = pageFragAlloc(nc, s);
      assert.equal(f - nc.va, end - s, `fragment of ${s}`);
      end -= s;
    }
    assert.equal(nc.fragsAllocated, 5);
    assert.equal(nc.pagecntBias, BIAS - 5);
    // no atomic per fragment: the page refcount did not move
    assert.equal(pageRefCount(pa, nc.va), BIAS);
  });

  test("alignment rounds the fragment start down to the alignment", () => {
    const pa = mkPages(4);
    const nc = new PageFragCache(pa);
    const page = pa.cache.objBase;
    assert.equal(pageFragAlloc(nc, 100, 64), page + 32640);
    assert.equal(pageFragAlloc(nc, 100, 64), page + 32512);
    assert.equal(pageFragAlloc(nc, 10, 1024), page + 31744);
    assert.equal(pageFragAlloc(nc, 1, 4096), page + 28672);
    assert.equal(pageFragAlloc(nc, 3), page + 28669);
    for (const a of [2, 8, 64, 256, 4096]) {
      const f = pageFragAlloc(nc, 33, a);
      assert.equal(f % a, 0, `align ${a}: ${hex(f)}`);
    }
  });

  test("alignment above 4 KiB gives an absolutely aligned fragment (align 8192, 16384)", () => {
    const pa = mkPages(4);
    const nc = new PageFragCache(pa);
    for (const a of [8192, 16384]) {
      const f = pageFragAlloc(nc, 100, a);
      assert.notEqual(f, 0);
      assert.equal(f % a, 0, `align ${a}: fragment ${hex(f)} in page ${hex(nc.va)}`);
    }
  });

  test("a fragment as large as the page is the whole page", () => {
    const pa = mkPages(4);
    const nc = new PageFragCache(pa);
    const f = pageFragAlloc(nc, PS);
    assert.equal(f, pa.cache.objBase);
    assert.equal(nc.offset, 0);
  });

  test("a page whose fragments were all freed is reused in place", () => {
    const pa = mkPages(4);
    const nc = new PageFragCache(pa);
    const frags = [pageFragAlloc(nc, 10000), pageFragAlloc(nc, 10000), pageFragAlloc(nc, 10000)];
    const page = nc.va;
    assert.deepEqual(frags, [page + 22768, page + 12768, page + 2768]);
    for (const f of frags) pageFragFree(pa, f);
    assert.equal(pageRefCount(pa, page), BIAS - 3);
    const g = pageFragAlloc(nc, 10000);
    assert.equal(nc.va, page);
    assert.equal(g, page + 22768);
    assert.deepEqual([nc.pagesTaken, nc.pagesReused, nc.fragsAllocated, nc.allocFail], [1, 1, 4, 0]);
    assert.equal(pageRefCount(pa, page), BIAS);
    assert.equal(nc.pagecntBias, BIAS - 1);
    assert.equal(kmemCacheActive(pa.cache), 1);
    assert.equal(kmemCacheInfo(pa.cache).frees, 0);
  });

  test("a page with fragments in flight is replaced, and freed by its last fragment", () => {
    const pa = mkPages(4);
    const nc = new PageFragCache(pa);
    const frags = [pageFragAlloc(nc, 10000), pageFragAlloc(nc, 10000), pageFragAlloc(nc, 10000)];
    const page = nc.va;
    pageFragFree(pa, frags[0] as number);
    pageFragFree(pa, frags[2] as number);
    const g = pageFragAlloc(nc, 10000);
    const page2 = nc.va;
    assert.notEqual(page2, page);
    assert.equal(page2, page + PS);
    assert.equal(g, page2 + 22768);
    assert.deepEqual([nc.pagesTaken, nc.pagesReused, nc.fragsAllocated], [2, 0, 4]);
    // only the one fragment in flight still holds the old page
    assert.equal(pageRefCount(pa, page), 1);
    assert.equal(kmemCacheActive(pa.cache), 2);
    // an interior address of the fragment finds its page
    pageFragFree(pa, (frags[1] as number) + 1234);
    assert.equal(kmemCacheActive(pa.cache), 1);
    assert.equal(pageRefCount(pa, page), 0);
    assert.equal(kmemCacheInfo(pa.cache).frees, 1);
    // the freed page is the next one the allocator hands out
    assert.equal(allocPage(pa), page);
  });

  test("freeing a fragment of a page that is already gone throws (refcount underflow)", () => {
    const pa = mkPages(4);
    const nc = new PageFragCache(pa);
    const f = pageFragAlloc(nc, 20000);
    const page = nc.va;
    pageFragAlloc(nc, 20000); // replaces the page; f alone holds it now
    pageFragFree(pa, f);
    assert.throws(() => pageFragFree(pa, f), {
      message: `putPage(frag-pages): page ${hex(page)} refcount 0 - 1 underflows`,
    });
  });

  test("fragsz larger than the page returns 0 and counts allocFail", () => {
    const pa = mkPages(4);
    const nc = new PageFragCache(pa);
    assert.equal(pageFragAlloc(nc, PS + 1), 0);
    assert.equal(nc.allocFail, 1);
    assert.equal(nc.fragsAllocated, 0);
    // the cache keeps its page and full bias; a fitting request still works
    assert.equal(kmemCacheActive(pa.cache), 1);
    assert.equal(pageRefCount(pa, nc.va), BIAS);
    assert.equal(pageFragAlloc(nc, 64), nc.va + PS - 64);
    // with a fragment in flight, an oversized request also fails
    assert.equal(pageFragAlloc(nc, 100000), 0);
    assert.equal(nc.allocFail, 2);
    assert.equal(nc.fragsAllocated, 1);
  });

  test("pageFragCacheDrain returns the page when no fragment is in flight", () => {
    const pa = mkPages(4);
    const nc = new PageFragCache(pa);
    const f = pageFragAlloc(nc, 500);
    pageFragFree(pa, f);
    assert.equal(kmemCacheActive(pa.cache), 1);
    pageFragCacheDrain(nc);
    assert.deepEqual([nc.va, nc.offset, nc.pagecntBias], [0, 0, 0]);
    assert.equal(kmemCacheActive(pa.cache), 0);
    pageFragCacheDrain(nc); // no page: no-op
    assert.equal(kmemCacheActive(pa.cache), 0);
    assert.equal(kmemCacheInfo(pa.cache).frees, 1);
  });

  test("pageFragCacheDrain with fragments in flight leaves the page to the last fragment", () => {
    const pa = mkPages(4);
    const nc = new PageFragCache(pa);
    const a = pageFragAlloc(nc, 500);
    const b = pageFragAlloc(nc, 500);
    const page = nc.va;
    pageFragCacheDrain(nc);
    assert.equal(nc.va, 0);
    assert.equal(pageRefCount(pa, page), 2);
    assert.equal(kmemCacheActive(pa.cache), 1);
    pageFragFree(pa, b);
    assert.equal(kmemCacheActive(pa.cache), 1);
    pageFragFree(pa, a);
    assert.equal(kmemCacheActive(pa.cache), 0);
    // the cache refills on the next alloc
    assert.equal(pageFragAlloc(nc, 8), page + PS - 8);
    assert.equal(nc.pagesTaken, 2);
  });

  test("page allocator exhaustion: pageFragAlloc returns 0 and counts allocFail", () => {
    const pa = mkPages(2);
    const p1 = allocPage(pa);
    const p2 = allocPage(pa);
    const nc = new PageFragCache(pa);
    assert.equal(pageFragAlloc(nc, 64), 0);
    assert.deepEqual([nc.va, nc.allocFail, nc.pagesTaken, nc.fragsAllocated], [0, 1, 0, 0]);
    putPage(pa, p2);
    assert.equal(pageFragAlloc(nc, 64), p2 + PS - 64);
    putPage(pa, p1);
  });

  test("exhaustion while replacing a page with fragments in flight returns 0, then recovers", () => {
    const pa = mkPages(1);
    const nc = new PageFragCache(pa);
    const f = pageFragAlloc(nc, 20000);
    const page = nc.va;
    assert.equal(pageFragAlloc(nc, 20000), 0);
    assert.deepEqual([nc.va, nc.allocFail, nc.pagesTaken], [0, 1, 1]);
    assert.equal(pageRefCount(pa, page), 1);
    pageFragFree(pa, f);
    assert.equal(kmemCacheActive(pa.cache), 0);
    assert.equal(pageFragAlloc(nc, 20000), page + PS - 20000);
    assert.equal(nc.pagesTaken, 2);
  });

  test("random alloc/free sequences: no overlap, aligned, refcounts exact, nothing leaks (property)", () => {
    type Cmd = { op: "alloc"; size: number; alignLog: number } | { op: "free"; pick: number };
    const cmdArb: fc.Arbitrary<Cmd> = fc.oneof(
      fc.record({
        op: fc.constant("alloc" as const),
        size: fc.oneof(fc.integer({ min: 1, max: 2048 }), fc.integer({ min: 1, max: PS + 100 })),
        alignLog: fc.integer({ min: 0, max: 12 }),
      }),
      fc.record({ op: fc.constant("free" as const), pick: fc.nat() }),
    );
    fc.assert(
      fc.property(fc.array(cmdArb, { maxLength: 150 }), fc.integer({ min: 1, max: 4 }), (cmds, npages) => {
        const pa = mkPages(npages);
        const nc = new PageFragCache(pa);
        const live = new Map<number, { page: number; size: number }>();
        let fails = 0;
        let allocated = 0;
        for (const cmd of cmds) {
          if (cmd.op === "alloc") {
            const align = 1 << cmd.alignLog;
            const f = pageFragAlloc(nc, cmd.size, align);
            if (f === 0) {
              fails++;
              assert.ok(cmd.size > PS || kmemCacheActive(pa.cache) === npages, "failed with pages to spare");
              continue;
            }
            allocated++;
            const page = nc.va;
            assert.ok(f >= page && f + cmd.size <= page + PS, `fragment ${hex(f)}+${cmd.size} outside page ${hex(page)}`);
            assert.equal((f - page) % align, 0);
            for (const [g, v] of live) {
              if (v.page !== page) continue;
              assert.ok(f + cmd.size <= g || g + v.size <= f, `fragment ${hex(f)} overlaps live ${hex(g)}`);
            }
            live.set(f, { page, size: cmd.size });
          } else if (live.size > 0) {
            const f = [...live.keys()][cmd.pick % live.size] as number;
            live.delete(f);
            pageFragFree(pa, f);
          }
          // refcount of each page = live fragments on it + the cache's bias if current
          const perPage = new Map<number, number>();
          for (const v of live.values()) perPage.set(v.page, (perPage.get(v.page) ?? 0) + 1);
          if (nc.va !== 0 && !perPage.has(nc.va)) perPage.set(nc.va, 0);
          for (const [page, n] of perPage) {
            assert.equal(pageRefCount(pa, page), n + (page === nc.va ? nc.pagecntBias : 0), `page ${hex(page)}`);
          }
          assert.equal(kmemCacheActive(pa.cache), perPage.size, "pages in use = pages with fragments or current");
        }
        assert.equal(nc.fragsAllocated, allocated);
        assert.equal(nc.allocFail, fails);
        for (const f of live.keys()) pageFragFree(pa, f);
        pageFragCacheDrain(nc);
        assert.equal(kmemCacheActive(pa.cache), 0);
      }),
      { numRuns: 300 },
    );
  });
});
