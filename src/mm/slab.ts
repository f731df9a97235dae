/**
 * Slab caches: fixed-size objects in an arena region, shared by all workers.
 *
 * Mirrors the kernel's `kmem_cache_*` API: single and bulk allocation and
 * free, NULL (0) on exhaustion, `/proc/slabinfo`-style statistics, and a debug
 * mode in the spirit of `slub_debug=FPZ` (poison, double-free and
 * write-after-free detection).
 *
 * Shared state (one region per cache, every worker maps it):
 *
 * ```
 *  region
 *  +0    header, 128 B
 *        +0  lock      i32   futex mutex (spinlock.ts) guarding all below
 *        +4  freeTop   u32   number of free objects on the stack
 *        +8  nrObjs    u32   constant
 *        +12 objSize   u32   constant
 *        +16 objBase   u32   constant, 4 KiB aligned
 *        +20 flags     u32   constant: bit 0 debug, bit 1 partial bulk
 *        +32 counters  f64 × 8 (see SlabStat), written under the lock
 *  +128  free stack  u32 × nrObjs   object offsets; top = stack[freeTop-1]
 *  ...   state       u8 × nrObjs    debug only: 0 free, 1 allocated, 2 cached
 *  ...   objects     objSize × nrObjs, from objBase
 * ```
 *
 * Every operation takes the lock once: a single alloc or free pays one
 * compare-exchange and one exchange; a bulk call pays them once for n
 * objects. That amortisation is exactly what the kernel's bulk API and the
 * NAPI head cache exploit. The free stack is LIFO, so a freed object is the
 * next one handed out (cache-hot), as in SLUB's per-CPU freelist.
 *
 * @module
 */

import { type Arena, alignUp, fmtBytes, PAGE_SHIFT, PAGE_SIZE, type RegionSpec } from "./arena.js";
import { spinLock, spinUnlock } from "./spinlock.js";

const HDR_LOCK = 0;
const HDR_FREE_TOP = 4;
const HDR_NR_OBJS = 8;
const HDR_OBJ_SIZE = 12;
const HDR_OBJ_BASE = 16;
const HDR_FLAGS = 20;
const HDR_COUNTERS = 32;
const HDR_SIZE = 128;

const FLAG_DEBUG = 1;
const FLAG_PARTIAL_BULK = 2;

/** Poison byte written over freed objects in debug mode (kernel POISON_FREE). */
export const POISON_FREE = 0x6b;
const POISON_WORD = 0x6b6b6b6b;

/** Debug state of an object. */
export const OBJ_FREE = 0;
/** Debug state: handed out by the slab. */
export const OBJ_ALLOCATED = 1;
/** Debug state: parked in a NAPI head cache (KASAN's "cached" poison). */
export const OBJ_CACHED = 2;
/** Debug state: inside a bulk free that is being checked. */
const OBJ_FREEING = 3;

/** Counter slots, in the order they sit in the shared header. */
const C_ALLOCS = 0;
const C_FREES = 1;
const C_ALLOC_BULK_CALLS = 2;
const C_ALLOC_BULK_OBJS = 3;
const C_FREE_BULK_CALLS = 4;
const C_FREE_BULK_OBJS = 5;
const C_ALLOC_FAIL = 6;
const C_BULK_SHORT = 7;

/** How a bulk allocation behaves when fewer objects are free than asked. */
export type BulkMode = "all-or-nothing" | "partial";

/** Options for {@link kmemCacheCreate}. */
export interface KmemCacheOptions {
  /** Cache name, e.g. `skbuff_head_cache`. */
  readonly name: string;
  /** Object size in bytes (rounded up to `align`). */
  readonly size: number;
  /** Number of objects the cache holds (its fixed capacity). */
  readonly count: number;
  /** Object alignment, a power of two; default 64 (SLAB_HWCACHE_ALIGN). */
  readonly align?: number;
  /** Poison objects and check double frees / writes after free. */
  readonly debug?: boolean;
  /**
   * `all-or-nothing` (default) behaves like SLUB: a bulk allocation that
   * cannot be fully served returns 0. `partial` returns what is free.
   */
  readonly bulkMode?: BulkMode;
}

/** `/proc/slabinfo`-style statistics of one cache. */
export interface SlabInfo {
  name: string;
  objSize: number;
  /** Objects currently handed out (includes heads parked in NAPI caches). */
  activeObjs: number;
  /** Capacity. */
  numObjs: number;
  allocs: number;
  frees: number;
  allocBulkCalls: number;
  allocBulkObjs: number;
  freeBulkCalls: number;
  freeBulkObjs: number;
  /** Allocations (single or bulk) that could not be served. */
  allocFail: number;
  /** Bulk allocations that returned fewer objects than asked (partial mode). */
  bulkShort: number;
}

/** Bytes of arena a cache of `count` objects of `size` bytes needs. */
export function slabRegionSize(size: number, count: number, align = 64): number {
  const objSize = alignUp(size, align);
  return metaSize(count, align) + objSize * count;
}

/** Header + free stack + state bytes, padded so objects start page- and `align`-aligned. */
function metaSize(count: number, align: number): number {
  return alignUp(HDR_SIZE + count * 4 + count, Math.max(PAGE_SIZE, align));
}

/** The region spec for a cache, to pass to `arenaCreate`. */
export function slabRegionSpec(o: KmemCacheOptions): RegionSpec {
  const align = o.align ?? 64;
  return { name: `slab:${o.name}`, size: slabRegionSize(o.size, o.count, align), align: Math.max(PAGE_SIZE, align) };
}

/**
 * One thread's handle on a shared slab cache. Every field is fixed at
 * construction; the hot functions below read them monomorphically.
 */
export class KmemCache {
  /** Small integer id, also written into the arena page-owner map. */
  readonly id: number;
  /** Cache name. */
  readonly name: string;
  /** Object size in bytes (aligned). */
  readonly objSize: number;
  /** log2(objSize) when it is a power of two, else -1. */
  readonly objShift: number;
  /** Capacity. */
  readonly nrObjs: number;
  /** Offset of the first object. */
  readonly objBase: number;
  /** Offset one past the last object. */
  readonly objEnd: number;
  /** Debug mode (shared: fixed at creation). */
  readonly debug: boolean;
  /** Bulk allocations may return fewer objects than asked. */
  readonly partialBulk: boolean;
  /** i32 index of the lock word. */
  readonly lockIdx: number;
  /** u32 index of freeTop. */
  readonly topIdx: number;
  /** u32 index of stack[0]. */
  readonly stackIdx: number;
  /** byte offset of the debug state map. */
  readonly stateOff: number;
  /** f64 index of the first counter. */
  readonly cntIdx: number;
  readonly u8: Uint8Array;
  readonly u32: Uint32Array;
  readonly i32: Int32Array;
  readonly f64: Float64Array;

  /** Map the cache whose region starts at `base`. Use kmemCacheCreate / kmemCacheAttach. */
  constructor(arena: Arena, id: number, name: string, base: number) {
    this.id = id;
    this.name = name;
    this.u8 = arena.u8;
    this.u32 = arena.u32;
    this.i32 = arena.i32;
    this.f64 = arena.f64;
    this.lockIdx = (base + HDR_LOCK) >>> 2;
    this.topIdx = (base + HDR_FREE_TOP) >>> 2;
    this.nrObjs = arena.u32[(base + HDR_NR_OBJS) >>> 2] as number;
    this.objSize = arena.u32[(base + HDR_OBJ_SIZE) >>> 2] as number;
    this.objBase = arena.u32[(base + HDR_OBJ_BASE) >>> 2] as number;
    const flags = arena.u32[(base + HDR_FLAGS) >>> 2] as number;
    this.debug = (flags & FLAG_DEBUG) !== 0;
    this.partialBulk = (flags & FLAG_PARTIAL_BULK) !== 0;
    this.objShift = (this.objSize & (this.objSize - 1)) === 0 ? Math.log2(this.objSize) : -1;
    this.objEnd = this.objBase + this.objSize * this.nrObjs;
    this.stackIdx = (base + HDR_SIZE) >>> 2;
    this.stateOff = base + HDR_SIZE + this.nrObjs * 4;
    this.cntIdx = (base + HDR_COUNTERS) >>> 3;
  }
}

/**
 * Create a cache in its region (`slabRegionSpec(o)` must have been carved),
 * fill its free stack and claim its pages in the page-owner map. Cold path;
 * call once, on the thread that created the arena.
 */
export function kmemCacheCreate(arena: Arena, id: number, o: KmemCacheOptions): KmemCache {
  if (id <= 0 || id > 255) throw new RangeError(`kmemCacheCreate(${o.name}): id ${id} not in 1..255`);
  const align = o.align ?? 64;
  if (!Number.isInteger(align) || align < 4 || (align & (align - 1)) !== 0 || align > 1 << 20) {
    throw new RangeError(`kmemCacheCreate(${o.name}): align ${align} must be a power of two in 4..1M (objects are word-accessed)`);
  }
  if (!Number.isInteger(o.size) || o.size < 1) {
    throw new RangeError(`kmemCacheCreate(${o.name}): size ${o.size} must be a positive integer`);
  }
  if (!Number.isInteger(o.count) || o.count < 1) {
    throw new RangeError(`kmemCacheCreate(${o.name}): count ${o.count} must be a positive integer`);
  }
  const r = arena.region(`slab:${o.name}`);
  const need = slabRegionSize(o.size, o.count, align);
  if (r.size < need) {
    throw new RangeError(`kmemCacheCreate(${o.name}): region is ${fmtBytes(r.size)}, needs ${fmtBytes(need)}`);
  }
  const base = r.offset;
  const objSize = alignUp(o.size, align);
  const objBase = base + metaSize(o.count, align);
  if (objBase % align !== 0) {
    throw new RangeError(`kmemCacheCreate(${o.name}): region at ${hex(base)} is not ${align}-aligned; carve it with slabRegionSpec`);
  }
  const u32 = arena.u32;
  u32[(base + HDR_NR_OBJS) >>> 2] = o.count;
  u32[(base + HDR_OBJ_SIZE) >>> 2] = objSize;
  u32[(base + HDR_OBJ_BASE) >>> 2] = objBase;
  u32[(base + HDR_FLAGS) >>> 2] = (o.debug ? FLAG_DEBUG : 0) | (o.bulkMode === "partial" ? FLAG_PARTIAL_BULK : 0);
  u32[(base + HDR_FREE_TOP) >>> 2] = o.count;
  const stackIdx = (base + HDR_SIZE) >>> 2;
  // Lowest addresses on top, so a fresh cache hands objects out in address order.
  for (let i = 0; i < o.count; i++) u32[stackIdx + i] = objBase + (o.count - 1 - i) * objSize;
  const objEnd = objBase + objSize * o.count;
  arena.pageOwner.fill(id, objBase >>> PAGE_SHIFT, (objEnd + PAGE_SIZE - 1) >>> PAGE_SHIFT);
  if (o.debug) arena.u8.fill(POISON_FREE, objBase, objEnd); // cold: the same truthiness as FLAG_DEBUG above
  return new KmemCache(arena, id, o.name, base);
}

/** Map an existing cache (created by another thread) by name. */
export function kmemCacheAttach(arena: Arena, id: number, name: string): KmemCache {
  return new KmemCache(arena, id, name, arena.region(`slab:${name}`).offset);
}

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

/** Object index of `obj`, or -1 if it is not an object start of this cache. */
export function kmemCacheObjIndex(s: KmemCache, obj: number): number {
  if (obj < s.objBase || obj >= s.objEnd) return -1;
  const rel = obj - s.objBase;
  const idx = s.objShift >= 0 ? rel >>> s.objShift : Math.floor(rel / s.objSize);
  return idx * s.objSize === rel ? idx : -1;
}

/** Start of the object that contains byte `addr` (the kernel's nearest_obj). */
export function kmemCacheObjStart(s: KmemCache, addr: number): number {
  const rel = addr - s.objBase;
  return s.objShift >= 0 ? s.objBase + ((rel >>> s.objShift) << s.objShift) : s.objBase + rel - (rel % s.objSize);
}

// ---- debug helpers (cold unless the cache was created with debug) ----------

function debugCheckFree(s: KmemCache, obj: number, op: string): string | null {
  const idx = kmemCacheObjIndex(s, obj);
  if (idx < 0) return `${op}(${s.name}): ${hex(obj)} is not an object of this cache`;
  const st = s.u8[s.stateOff + idx];
  if (st === OBJ_FREE) return `${op}(${s.name}): double free of object ${hex(obj)}`;
  if (st === OBJ_CACHED) return `${op}(${s.name}): object ${hex(obj)} is parked in a NAPI head cache`;
  if (st === OBJ_FREEING) return `${op}(${s.name}): double free of object ${hex(obj)} (twice in one bulk free)`;
  return null;
}

function debugOnFree(s: KmemCache, obj: number): void {
  s.u8[s.stateOff + kmemCacheObjIndex(s, obj)] = OBJ_FREE;
  s.u8.fill(POISON_FREE, obj, obj + s.objSize);
}

function debugCheckAlloc(s: KmemCache, obj: number, op: string): string | null {
  const w = obj >>> 2;
  const n = s.objSize >>> 2;
  for (let i = 0; i < n; i++) {
    if (s.u32[w + i] !== POISON_WORD) {
      let b = i * 4;
      while (s.u8[obj + b] === POISON_FREE) b++;
      return (
        `${op}(${s.name}): write after free in object ${hex(obj)}: byte +${b} is ` +
        `${hex(s.u8[obj + b] as number)}, expected poison ${hex(POISON_FREE)}`
      );
    }
  }
  s.u8[s.stateOff + kmemCacheObjIndex(s, obj)] = OBJ_ALLOCATED;
  return null;
}

// ---- the API ----------------------------------------------------------------

/**
 * Allocate one object (`kmem_cache_alloc`). Returns its offset, or 0 (NULL)
 * when the cache is exhausted (counted in `allocFail`; never throws except
 * for debug-mode corruption reports). Contents are unspecified. Allocates no
 * JS objects.
 */
export function kmemCacheAlloc(s: KmemCache): number {
  const u32 = s.u32;
  spinLock(s.i32, s.lockIdx);
  const top = u32[s.topIdx] as number;
  if (top === 0) {
    s.f64[s.cntIdx + C_ALLOC_FAIL]++;
    spinUnlock(s.i32, s.lockIdx);
    return 0;
  }
  const obj = u32[s.stackIdx + top - 1] as number;
  u32[s.topIdx] = top - 1;
  s.f64[s.cntIdx + C_ALLOCS]++;
  if (s.debug === true) {
    const err = debugCheckAlloc(s, obj, "kmemCacheAlloc");
    if (err !== null) {
      spinUnlock(s.i32, s.lockIdx);
      throw new Error(err);
    }
  }
  spinUnlock(s.i32, s.lockIdx);
  return obj;
}

/**
 * Free one object (`kmem_cache_free`). In debug mode a double free, a
 * foreign pointer or a free of a NAPI-cached head throws an error naming the
 * object and the cache. Allocates no JS objects.
 */
export function kmemCacheFree(s: KmemCache, obj: number): void {
  const u32 = s.u32;
  spinLock(s.i32, s.lockIdx);
  if (s.debug === true) {
    const err = debugCheckFree(s, obj, "kmemCacheFree");
    if (err !== null) {
      spinUnlock(s.i32, s.lockIdx);
      throw new Error(err);
    }
    debugOnFree(s, obj);
  }
  const top = u32[s.topIdx] as number;
  u32[s.stackIdx + top] = obj;
  u32[s.topIdx] = top + 1;
  s.f64[s.cntIdx + C_FREES]++;
  spinUnlock(s.i32, s.lockIdx);
}

/**
 * Allocate up to `n` objects in one locked section (`kmem_cache_alloc_bulk`),
 * writing their offsets to `out[off..]`. Returns how many were written: `n`
 * or 0 in `all-or-nothing` mode (like SLUB), anything in 0..n in `partial`
 * mode. With `zero`, objects are zero-filled (`__GFP_ZERO`). Allocates
 * nothing.
 */
export function kmemCacheAllocBulk(
  s: KmemCache,
  n: number,
  out: Uint32Array,
  off: number,
  zero = false,
): number {
  // A negative count is a caller bug; it must not move the stack top up.
  if (n <= 0) return 0;
  const u32 = s.u32;
  spinLock(s.i32, s.lockIdx);
  const top = u32[s.topIdx] as number;
  s.f64[s.cntIdx + C_ALLOC_BULK_CALLS]++;
  let k = n;
  if (top < n) {
    if (!s.partialBulk || top === 0) {
      s.f64[s.cntIdx + C_ALLOC_FAIL]++;
      spinUnlock(s.i32, s.lockIdx);
      return 0;
    }
    k = top;
    s.f64[s.cntIdx + C_BULK_SHORT]++;
  }
  const from = s.stackIdx + top - 1;
  copyDown(out, off, u32, from, k);
  u32[s.topIdx] = top - k;
  s.f64[s.cntIdx + C_ALLOC_BULK_OBJS] += k;
  if (s.debug === true) {
    for (let i = 0; i < k; i++) {
      const err = debugCheckAlloc(s, out[off + i] as number, "kmemCacheAllocBulk");
      if (err !== null) {
        spinUnlock(s.i32, s.lockIdx);
        throw new Error(err);
      }
    }
  }
  spinUnlock(s.i32, s.lockIdx);
  if (zero) {
    const w = s.objSize >>> 2;
    for (let i = 0; i < k; i++) {
      const o = (out[off + i] as number) >>> 2;
      u32.fill(0, o, o + w);
    }
  }
  return k;
}

/** dst[d + i] = src[s - i] for i < n (the free stack pops top first). Four per turn: half the loop overhead. */
function copyDown(dst: Uint32Array, d: number, src: Uint32Array, s: number, n: number): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    dst[d + i] = src[s - i] as number;
    dst[d + i + 1] = src[s - i - 1] as number;
    dst[d + i + 2] = src[s - i - 2] as number;
    dst[d + i + 3] = src[s - i - 3] as number;
  }
  for (; i < n; i++) dst[d + i] = src[s - i] as number;
}

/** dst[d + i] = src[s + i] for i < n, four per turn. */
function copyUp(dst: Uint32Array, d: number, src: Uint32Array, s: number, n: number): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    dst[d + i] = src[s + i] as number;
    dst[d + i + 1] = src[s + i + 1] as number;
    dst[d + i + 2] = src[s + i + 2] as number;
    dst[d + i + 3] = src[s + i + 3] as number;
  }
  for (; i < n; i++) dst[d + i] = src[s + i] as number;
}

/**
 * Free `n` objects listed at `objs[off..]` in one locked section
 * (`kmem_cache_free_bulk`). Debug mode checks each object first and frees
 * none if any is bad. Allocates nothing.
 */
export function kmemCacheFreeBulk(s: KmemCache, n: number, objs: Uint32Array, off: number): void {
  if (n <= 0) return;
  const u32 = s.u32;
  spinLock(s.i32, s.lockIdx);
  if (s.debug === true) {
    // Check each object and mark it "being freed", so a duplicate within
    // this call is caught too; on any error undo the marks and free nothing.
    for (let i = 0; i < n; i++) {
      const obj = objs[off + i] as number;
      const err = debugCheckFree(s, obj, "kmemCacheFreeBulk");
      if (err !== null) {
        for (let j = 0; j < i; j++) s.u8[s.stateOff + kmemCacheObjIndex(s, objs[off + j] as number)] = OBJ_ALLOCATED;
        spinUnlock(s.i32, s.lockIdx);
        throw new Error(err);
      }
      s.u8[s.stateOff + kmemCacheObjIndex(s, obj)] = OBJ_FREEING;
    }
    for (let i = 0; i < n; i++) debugOnFree(s, objs[off + i] as number);
  }
  const top = u32[s.topIdx] as number;
  const to = s.stackIdx + top;
  copyUp(u32, to, objs, off, n);
  u32[s.topIdx] = top + n;
  s.f64[s.cntIdx + C_FREE_BULK_CALLS]++;
  s.f64[s.cntIdx + C_FREE_BULK_OBJS] += n;
  spinUnlock(s.i32, s.lockIdx);
}

/** Objects currently allocated (a racy snapshot when other workers run). */
export function kmemCacheActive(s: KmemCache): number {
  return s.nrObjs - Atomics.load(s.i32, s.topIdx);
}

/** Statistics snapshot, taken under the lock. Allocates the result object. */
export function kmemCacheInfo(s: KmemCache): SlabInfo {
  spinLock(s.i32, s.lockIdx);
  const c = s.cntIdx;
  const f = s.f64;
  const info: SlabInfo = {
    name: s.name,
    objSize: s.objSize,
    activeObjs: s.nrObjs - (s.u32[s.topIdx] as number),
    numObjs: s.nrObjs,
    allocs: f[c + C_ALLOCS] as number,
    frees: f[c + C_FREES] as number,
    allocBulkCalls: f[c + C_ALLOC_BULK_CALLS] as number,
    allocBulkObjs: f[c + C_ALLOC_BULK_OBJS] as number,
    freeBulkCalls: f[c + C_FREE_BULK_CALLS] as number,
    freeBulkObjs: f[c + C_FREE_BULK_OBJS] as number,
    allocFail: f[c + C_ALLOC_FAIL] as number,
    bulkShort: f[c + C_BULK_SHORT] as number,
  };
  spinUnlock(s.i32, s.lockIdx);
  return info;
}

/** Total slab calls (single + bulk, alloc + free) so far. */
export function kmemCacheCalls(s: KmemCache): number {
  const c = s.cntIdx;
  const f = s.f64;
  return (
    (f[c + C_ALLOCS] as number) +
    (f[c + C_FREES] as number) +
    (f[c + C_ALLOC_BULK_CALLS] as number) +
    (f[c + C_FREE_BULK_CALLS] as number)
  );
}

/**
 * Debug state of `obj` (OBJ_FREE / OBJ_ALLOCATED / OBJ_CACHED), or -1 when
 * the cache is not in debug mode or `obj` is not one of its objects.
 */
export function kmemCacheObjState(s: KmemCache, obj: number): number {
  if (s.debug === false) return -1;
  const idx = kmemCacheObjIndex(s, obj);
  return idx < 0 ? -1 : (s.u8[s.stateOff + idx] as number);
}

/**
 * Debug mode: mark `obj` as parked in / taken from a NAPI head cache (the
 * kernel's KASAN mempool poison / unpoison). Returns an error text when the
 * transition is invalid (double free into the cache), else null.
 */
export function kmemCacheMarkCached(s: KmemCache, obj: number, cached: boolean): string | null {
  const idx = kmemCacheObjIndex(s, obj);
  if (idx < 0) return `napiSkbCachePut(${s.name}): ${hex(obj)} is not an object of this cache`;
  const at = s.stateOff + idx;
  const st = s.u8[at];
  if (cached) {
    if (st === OBJ_CACHED) return `napiSkbCachePut(${s.name}): double free of skb ${hex(obj)} (already cached)`;
    if (st === OBJ_FREE) return `napiSkbCachePut(${s.name}): skb ${hex(obj)} was already freed to the slab`;
    s.u8[at] = OBJ_CACHED;
  } else {
    if (st === OBJ_FREE) return `napiSkbCacheGet(${s.name}): skb ${hex(obj)} in the cache was freed to the slab`;
    s.u8[at] = OBJ_ALLOCATED;
  }
  return null;
}
