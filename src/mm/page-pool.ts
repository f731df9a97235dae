/**
 * Page pools for RX buffers (`struct page_pool`): a driver's private
 * recycling loop for whole pages.
 *
 * Allocation pops from a per-CPU alloc cache (plain memory of the owning
 * worker); when it is empty it is refilled from the pool's recycle ring,
 * then from the page allocator. A page returned on the owning CPU in NAPI
 * context goes straight back to the alloc cache ("direct" recycling);
 * returns from elsewhere go through the ring, which lives in the arena and is
 * guarded by a futex mutex because any worker may produce into it.
 *
 * ```
 *  rings region: one slot per pool id (1..maxPools)
 *  slot +0  lock   i32          +4  inUse  i32 (claimed with CAS)
 *       +8  prod   u32 (total)  +12 cons   u32 (total)
 *       +16 capacity u32       +20 remoteReturns i32 (Atomics)
 *       +64 entries u32 × capacity   FIFO, index = counter % capacity
 * ```
 *
 * Only whole pages are pooled (one RX buffer per page); `page_pool` frag
 * mode is not modelled.
 *
 * @module
 */

import type { Arena, RegionSpec } from "./arena.js";
import {
  allocPage,
  freePageNow,
  type PageAllocator,
  pagePoolId,
  pageRefCount,
  pageRefSubAndTest,
  pageSetPoolId,
} from "./page-alloc.js";
import { spinLock, spinUnlock } from "./spinlock.js";

/** Kernel PP_ALLOC_CACHE_SIZE. */
export const PP_ALLOC_CACHE_SIZE = 128;
/** Kernel PP_ALLOC_CACHE_REFILL. */
export const PP_ALLOC_CACHE_REFILL = 64;

const SLOT_LOCK = 0;
const SLOT_IN_USE = 4;
const SLOT_PROD = 8;
const SLOT_CONS = 12;
const SLOT_CAP = 16;
const SLOT_REMOTE_RETURNS = 20;
const SLOT_ENTRIES = 64;

/** Shared recycle rings of every page pool (one handle per thread). */
export class PagePoolRings {
  readonly base: number;
  readonly maxPools: number;
  readonly ringSize: number;
  readonly slotSize: number;
  readonly u32: Uint32Array;
  readonly i32: Int32Array;

  /** Map the rings region (see pagePoolRingsRegionSpec). */
  constructor(arena: Arena, maxPools: number, ringSize: number) {
    const r = arena.region("pp-rings");
    this.base = r.offset;
    this.maxPools = maxPools;
    this.ringSize = ringSize;
    this.slotSize = SLOT_ENTRIES + ringSize * 4;
    this.u32 = arena.u32;
    this.i32 = arena.i32;
  }
}

/** Region holding `maxPools` rings of `ringSize` entries. */
export function pagePoolRingsRegionSpec(maxPools: number, ringSize: number): RegionSpec {
  return { name: "pp-rings", size: maxPools * (SLOT_ENTRIES + ringSize * 4), align: 64 };
}

function slot(r: PagePoolRings, id: number): number {
  return r.base + (id - 1) * r.slotSize;
}

/** Push `page` into pool `id`'s ring; false when the ring is full. */
export function pagePoolRingProduce(r: PagePoolRings, id: number, page: number): boolean {
  const s = slot(r, id);
  const li = (s + SLOT_LOCK) >>> 2;
  spinLock(r.i32, li);
  const prod = r.u32[(s + SLOT_PROD) >>> 2] as number;
  const cons = r.u32[(s + SLOT_CONS) >>> 2] as number;
  const cap = r.u32[(s + SLOT_CAP) >>> 2] as number;
  if (prod - cons >= cap) {
    spinUnlock(r.i32, li);
    return false;
  }
  r.u32[((s + SLOT_ENTRIES) >>> 2) + (prod % cap)] = page;
  r.u32[(s + SLOT_PROD) >>> 2] = prod + 1;
  spinUnlock(r.i32, li);
  return true;
}

/** Move up to `n` pages from ring `id` into `out[off..]`; returns the count. */
export function pagePoolRingConsume(r: PagePoolRings, id: number, n: number, out: Uint32Array, off: number): number {
  const s = slot(r, id);
  const li = (s + SLOT_LOCK) >>> 2;
  spinLock(r.i32, li);
  const prod = r.u32[(s + SLOT_PROD) >>> 2] as number;
  let cons = r.u32[(s + SLOT_CONS) >>> 2] as number;
  const cap = r.u32[(s + SLOT_CAP) >>> 2] as number;
  const e = (s + SLOT_ENTRIES) >>> 2;
  let k = 0;
  while (k < n && cons !== prod) {
    out[off + k++] = r.u32[e + (cons % cap)] as number;
    cons++;
  }
  r.u32[(s + SLOT_CONS) >>> 2] = cons;
  spinUnlock(r.i32, li);
  return k;
}

/** Page-pool statistics (the kernel's `page_pool_stats`). */
export interface PagePoolStats {
  allocFast: number;
  allocSlow: number;
  allocRefill: number;
  allocEmpty: number;
  recycleCached: number;
  recycleRing: number;
  recycleRingFull: number;
  recycleReleased: number;
  /** Pages handed out and not yet returned. */
  inflight: number;
}

/** A page pool, owned by one CPU (worker); others may only return pages. */
export class PagePool {
  /** Pool id (1..maxPools), recorded on every page it hands out. */
  readonly id: number;
  readonly pa: PageAllocator;
  readonly rings: PagePoolRings;
  /** The alloc cache: owner-CPU memory only. */
  readonly cache: Uint32Array;
  count = 0;
  /** Owning CPU id. */
  readonly cpu: number;
  allocFast = 0;
  allocSlow = 0;
  allocRefill = 0;
  allocEmpty = 0;
  recycleCached = 0;
  recycleRing = 0;
  recycleRingFull = 0;
  recycleReleased = 0;
  /** Pages handed out. */
  hold = 0;
  /** Pages given back on this CPU. */
  release = 0;
  destroyed = false;

  /** Use pagePoolCreate. */
  constructor(id: number, pa: PageAllocator, rings: PagePoolRings, cpu: number) {
    this.id = id;
    this.pa = pa;
    this.rings = rings;
    this.cache = new Uint32Array(PP_ALLOC_CACHE_SIZE);
    this.cpu = cpu;
  }
}

/**
 * Create a pool for CPU `cpu`, claiming a free ring slot (`page_pool_create`).
 * Throws when every slot is taken.
 */
export function pagePoolCreate(pa: PageAllocator, rings: PagePoolRings, cpu: number): PagePool {
  for (let id = 1; id <= rings.maxPools; id++) {
    const s = slot(rings, id);
    if (Atomics.compareExchange(rings.i32, (s + SLOT_IN_USE) >>> 2, 0, 1) === 0) {
      rings.u32[(s + SLOT_PROD) >>> 2] = 0;
      rings.u32[(s + SLOT_CONS) >>> 2] = 0;
      rings.u32[(s + SLOT_CAP) >>> 2] = rings.ringSize;
      Atomics.store(rings.i32, (s + SLOT_REMOTE_RETURNS) >>> 2, 0);
      return new PagePool(id, pa, rings, cpu);
    }
  }
  throw new Error(`pagePoolCreate: all ${rings.maxPools} page-pool slots are in use (raise maxPagePools)`);
}

/** Take one page (`page_pool_dev_alloc_pages`); 0 when none is available. */
export function pagePoolAllocPage(pool: PagePool): number {
  if (pool.count > 0) {
    pool.allocFast++;
    pool.hold++;
    return pool.cache[--pool.count] as number;
  }
  const got = pagePoolRingConsume(pool.rings, pool.id, PP_ALLOC_CACHE_REFILL, pool.cache, 0);
  if (got > 0) {
    pool.allocRefill++;
    pool.count = got - 1;
    pool.hold++;
    return pool.cache[got - 1] as number;
  }
  pool.allocEmpty++;
  const page = allocPage(pool.pa);
  if (page === 0) return 0;
  pageSetPoolId(pool.pa, page, pool.id);
  pool.allocSlow++;
  pool.hold++;
  return page;
}

/**
 * Return a pool page (`page_pool_put_full_page`). If other references exist
 * only one is dropped. `allowDirect` means "NAPI context on the owning CPU":
 * the page then goes back to the alloc cache; otherwise into the ring; when
 * the ring is full the page is released to the page allocator.
 */
export function pagePoolPutPage(pool: PagePool, page: number, allowDirect: boolean): void {
  if (pageRefCount(pool.pa, page) !== 1) {
    // Someone else still holds it: drop our reference; last one frees.
    if (pageRefSubAndTest(pool.pa, page, 1)) freePageNow(pool.pa, page);
    pool.release++;
    pool.recycleReleased++;
    return;
  }
  pool.release++;
  if (allowDirect && !pool.destroyed && pool.count < PP_ALLOC_CACHE_SIZE) {
    pool.cache[pool.count++] = page;
    pool.recycleCached++;
    return;
  }
  if (!pool.destroyed && pagePoolRingProduce(pool.rings, pool.id, page)) {
    pool.recycleRing++;
    return;
  }
  pool.recycleRingFull++;
  pool.recycleReleased++;
  pageRefSubAndTest(pool.pa, page, 1);
  freePageNow(pool.pa, page);
}

/** Return a page from a CPU that does not own pool `id` (ring or release). */
export function pagePoolPutPageRemote(pa: PageAllocator, rings: PagePoolRings, page: number): void {
  const id = pagePoolId(pa, page);
  const s = slot(rings, id);
  Atomics.add(rings.i32, (s + SLOT_REMOTE_RETURNS) >>> 2, 1);
  // A destroyed pool's ring is never consumed again: free the page instead.
  // (A put racing with the destroy itself is not covered.)
  const alive = Atomics.load(rings.i32, (s + SLOT_IN_USE) >>> 2) === 1;
  if (alive && pageRefCount(pa, page) === 1 && pagePoolRingProduce(rings, id, page)) return;
  if (pageRefSubAndTest(pa, page, 1)) freePageNow(pa, page);
}

/** Statistics snapshot (allocates the result). */
export function pagePoolStats(pool: PagePool): PagePoolStats {
  return {
    allocFast: pool.allocFast,
    allocSlow: pool.allocSlow,
    allocRefill: pool.allocRefill,
    allocEmpty: pool.allocEmpty,
    recycleCached: pool.recycleCached,
    recycleRing: pool.recycleRing,
    recycleRingFull: pool.recycleRingFull,
    recycleReleased: pool.recycleReleased,
    inflight:
      pool.hold - pool.release - Atomics.load(pool.rings.i32, (slot(pool.rings, pool.id) + SLOT_REMOTE_RETURNS) >>> 2),
  };
}

/**
 * Destroy the pool (`page_pool_destroy`): free every cached and ringed page
 * and release the slot. Pages still in flight are freed by their last put.
 */
export function pagePoolDestroy(pool: PagePool): void {
  pool.destroyed = true;
  while (pool.count > 0) {
    const page = pool.cache[--pool.count] as number;
    pageRefSubAndTest(pool.pa, page, 1);
    freePageNow(pool.pa, page);
  }
  const tmp = new Uint32Array(64);
  for (;;) {
    const k = pagePoolRingConsume(pool.rings, pool.id, 64, tmp, 0);
    if (k === 0) break;
    for (let i = 0; i < k; i++) {
      pageRefSubAndTest(pool.pa, tmp[i] as number, 1);
      freePageNow(pool.pa, tmp[i] as number);
    }
  }
  const s = slot(pool.rings, pool.id);
  Atomics.store(pool.rings.i32, (s + SLOT_IN_USE) >>> 2, 0);
}
