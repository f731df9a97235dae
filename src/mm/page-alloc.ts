/**
 * The page allocator: fixed-size pages (4 KiB, or 32 KiB "compound" pages
 * for page-frag caches) with a `struct page`-like metadata array.
 *
 * Pages themselves come from a slab cache whose object size is the page size
 * (so allocation, bulk and statistics are shared code). Per page, the arena
 * holds:
 *
 * ```
 *  meta region: i32 × 2 per page
 *  +0 refcount   (Atomics: frags of one page are freed by any worker)
 *  +4 pp         page_pool id that owns the page, 0 = none
 * ```
 *
 * @module
 */

import { type Arena, PAGE_SIZE, type RegionSpec } from "./arena.js";
import {
  type KmemCache,
  kmemCacheAlloc,
  kmemCacheAttach,
  kmemCacheCreate,
  kmemCacheFree,
  kmemCacheObjIndex,
  kmemCacheObjStart,
  slabRegionSpec,
} from "./slab.js";

/** Options for a page allocator. */
export interface PageAllocOptions {
  /** Name, e.g. `pages` or `frag-pages`. */
  readonly name: string;
  /** Page size in bytes: a power of two, at least 4096. */
  readonly pageSize: number;
  /** Number of pages. */
  readonly count: number;
  /** Debug mode for the underlying slab. */
  readonly debug?: boolean;
}

/** One thread's handle on a shared page allocator. */
export class PageAllocator {
  /** The slab that hands out whole pages. */
  readonly cache: KmemCache;
  /** Page size in bytes. */
  readonly pageSize: number;
  /** i32 index of page 0's metadata. */
  readonly metaIdx: number;
  readonly i32: Int32Array;

  /** Use pageAllocCreate / pageAllocAttach. */
  constructor(arena: Arena, cache: KmemCache, metaOffset: number) {
    this.cache = cache;
    this.pageSize = cache.objSize;
    this.metaIdx = metaOffset >>> 2;
    this.i32 = arena.i32;
  }
}

/** Regions a page allocator needs. */
export function pageAllocRegionSpecs(o: PageAllocOptions): RegionSpec[] {
  return [
    slabRegionSpec({ name: o.name, size: o.pageSize, count: o.count, align: o.pageSize }),
    { name: `pagemeta:${o.name}`, size: o.count * 8, align: 64 },
  ];
}

/** Create (cold, once) a page allocator in its carved regions. */
export function pageAllocCreate(arena: Arena, id: number, o: PageAllocOptions): PageAllocator {
  if (o.pageSize < PAGE_SIZE || (o.pageSize & (o.pageSize - 1)) !== 0) {
    throw new RangeError(`pageAllocCreate(${o.name}): page size ${o.pageSize} must be a power of two >= ${PAGE_SIZE}`);
  }
  const cache = kmemCacheCreate(arena, id, {
    name: o.name,
    size: o.pageSize,
    count: o.count,
    align: o.pageSize,
    debug: o.debug ?? false,
  });
  return new PageAllocator(arena, cache, arena.region(`pagemeta:${o.name}`).offset);
}

/** Map an existing page allocator by name. */
export function pageAllocAttach(arena: Arena, id: number, name: string): PageAllocator {
  return new PageAllocator(arena, kmemCacheAttach(arena, id, name), arena.region(`pagemeta:${name}`).offset);
}

/** Metadata index (i32) of `page`. */
function metaOf(pa: PageAllocator, page: number): number {
  return pa.metaIdx + (kmemCacheObjIndex(pa.cache, page) << 1);
}

/** Allocate one page with refcount 1 (`alloc_pages`); 0 when exhausted. */
export function allocPage(pa: PageAllocator): number {
  const page = kmemCacheAlloc(pa.cache);
  if (page === 0) return 0;
  const m = metaOf(pa, page);
  Atomics.store(pa.i32, m, 1);
  pa.i32[m + 1] = 0;
  return page;
}

/** The page containing byte `addr` (`virt_to_head_page`). */
export function virtToHeadPage(pa: PageAllocator, addr: number): number {
  return kmemCacheObjStart(pa.cache, addr);
}

/** Current reference count of `page`. */
export function pageRefCount(pa: PageAllocator, page: number): number {
  return Atomics.load(pa.i32, metaOf(pa, page));
}

/** Add `n` references to `page` (`page_ref_add`; `get_page` for n = 1). */
export function pageRefAdd(pa: PageAllocator, page: number, n: number): void {
  Atomics.add(pa.i32, metaOf(pa, page), n);
}

/** Set the reference count (`set_page_count`); only for pages this thread owns alone. */
export function pageRefSet(pa: PageAllocator, page: number, n: number): void {
  Atomics.store(pa.i32, metaOf(pa, page), n);
}

/**
 * Drop `n` references; returns true when that was the last (the caller then
 * owns the page and must reuse or free it) — `page_ref_sub_and_test`.
 * Throws when the count would go negative (a double put).
 */
export function pageRefSubAndTest(pa: PageAllocator, page: number, n: number): boolean {
  const old = Atomics.sub(pa.i32, metaOf(pa, page), n);
  if (old < n) {
    Atomics.add(pa.i32, metaOf(pa, page), n);
    throw new Error(`putPage(${pa.cache.name}): page 0x${page.toString(16)} refcount ${old} - ${n} underflows`);
  }
  return old === n;
}

/** Free a page whose refcount already reached 0 (`free_the_page`). */
export function freePageNow(pa: PageAllocator, page: number): void {
  pa.i32[metaOf(pa, page) + 1] = 0;
  kmemCacheFree(pa.cache, page);
}

/** Drop one reference and free the page at 0 (`put_page`). */
export function putPage(pa: PageAllocator, page: number): void {
  if (pageRefSubAndTest(pa, page, 1)) freePageNow(pa, page);
}

/** page_pool id recorded on `page` (0 = none). */
export function pagePoolId(pa: PageAllocator, page: number): number {
  return pa.i32[metaOf(pa, page) + 1] as number;
}

/** Record the owning page_pool of `page`. */
export function pageSetPoolId(pa: PageAllocator, page: number, id: number): void {
  pa.i32[metaOf(pa, page) + 1] = id;
}
