/**
 * Page-fragment caches (`struct page_frag_cache`): carve small buffers out
 * of a per-CPU page with no atomic operation per fragment.
 *
 * The kernel's trick, reproduced: when a page is taken, its refcount is
 * raised by PAGE_FRAG_CACHE_MAX_SIZE at once and the cache keeps a private
 * `pagecntBias` of references it still holds. Handing out a fragment only
 * decrements the bias (plain per-CPU memory); freeing a fragment drops one
 * page reference (`putPage`, atomic, any worker). When the page is used up,
 * the cache gives back its unused bias; if that was the last reference
 * (every fragment already freed) the page is reused in place, otherwise a
 * new page is taken and the old one is freed by its last fragment.
 *
 * ```
 *  page (frag-pages, 32 KiB)        offset counts down
 *  +-------------------------------+-----+-----+-----+
 *  |            free               | f3  | f2  | f1  |
 *  +-------------------------------+-----+-----+-----+
 *  0                            offset               size
 * ```
 *
 * A cache is per-CPU state: one thread only.
 *
 * @module
 */

import {
  allocPage,
  freePageNow,
  type PageAllocator,
  pageRefAdd,
  pageRefSet,
  pageRefSubAndTest,
  virtToHeadPage,
} from "./page-alloc.js";

/** Kernel PAGE_FRAG_CACHE_MAX_SIZE: 32 KiB (order-3 pages). */
export const PAGE_FRAG_CACHE_MAX_SIZE = 32768;

/** One CPU's fragment cache (`struct page_frag_cache`). */
export class PageFragCache {
  /** The allocator the pages come from. */
  readonly pa: PageAllocator;
  /** Current page, 0 when none. */
  va = 0;
  /** Next fragment ends here (counts down). */
  offset = 0;
  /** References to the current page this cache still holds. */
  pagecntBias = 0;
  /** Pages taken from the allocator. */
  pagesTaken = 0;
  /** Pages reused in place (all fragments had been freed). */
  pagesReused = 0;
  /** Fragments handed out. */
  fragsAllocated = 0;
  /** Requests that could not be served (no page, or fragment too large). */
  allocFail = 0;

  /** A cache over `pa` (whose page size is the cache's size). */
  constructor(pa: PageAllocator) {
    this.pa = pa;
  }
}

function refill(nc: PageFragCache): boolean {
  const page = allocPage(nc.pa);
  if (page === 0) {
    nc.va = 0;
    return false;
  }
  // Even if we own all the fragments, keep a big bias so a fragment's free
  // never has to be told apart from the cache's own references.
  pageRefAdd(nc.pa, page, PAGE_FRAG_CACHE_MAX_SIZE);
  nc.pagecntBias = PAGE_FRAG_CACHE_MAX_SIZE + 1;
  nc.va = page;
  nc.offset = nc.pa.pageSize;
  nc.pagesTaken++;
  return true;
}

/**
 * Allocate a `fragsz`-byte fragment aligned to `align` (a power of two)
 * (`page_frag_alloc_align`). Returns its offset or 0 when no page is
 * available or `fragsz` exceeds the page size. Allocates no JS objects.
 */
export function pageFragAlloc(nc: PageFragCache, fragsz: number, align = 1): number {
  if (nc.va === 0 && !refill(nc)) {
    nc.allocFail++;
    return 0;
  }
  let offset = nc.offset - fragsz;
  if (offset < 0) {
    const page = nc.va;
    if (!pageRefSubAndTest(nc.pa, page, nc.pagecntBias)) {
      // Fragments still in flight own the old page; take a fresh one.
      if (!refill(nc)) {
        nc.allocFail++;
        return 0;
      }
    } else {
      // Every fragment came back: reuse the page in place.
      pageRefSet(nc.pa, page, PAGE_FRAG_CACHE_MAX_SIZE + 1);
      nc.pagecntBias = PAGE_FRAG_CACHE_MAX_SIZE + 1;
      nc.pagesReused++;
    }
    offset = nc.pa.pageSize - fragsz;
    if (offset < 0) {
      nc.allocFail++;
      return 0;
    }
  }
  nc.pagecntBias--;
  offset &= ~(align - 1);
  nc.offset = offset;
  nc.fragsAllocated++;
  return nc.va + offset;
}

/** Free a fragment (`page_frag_free`): drop one reference on its page. */
export function pageFragFree(pa: PageAllocator, addr: number): void {
  const page = virtToHeadPage(pa, addr);
  if (pageRefSubAndTest(pa, page, 1)) freePageNow(pa, page);
}

/** Give back the cache's page (`page_frag_cache_drain`), e.g. at CPU teardown. */
export function pageFragCacheDrain(nc: PageFragCache): void {
  if (nc.va === 0) return;
  if (pageRefSubAndTest(nc.pa, nc.va, nc.pagecntBias)) freePageNow(nc.pa, nc.va);
  nc.va = 0;
  nc.offset = 0;
  nc.pagecntBias = 0;
}
