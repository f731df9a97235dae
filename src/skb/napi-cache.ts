/**
 * The per-CPU NAPI skb head cache: "skbuff heads bulking and reusing"
 * (Lobakin, Linux 5.12; spec §1).
 *
 * ```
 *  skbCache (LIFO, per CPU)            slab (skbuff_head_cache, shared)
 *  +----+----+-- ... --+----+
 *  | s0 | s1 |         |sN-1|  <- push (put) / pop (get) at skbCount
 *  +----+----+-- ... --+----+
 *  get on empty:  ONE kmemCacheAllocBulk(BULK)  -> s0..s(k-1), count = k
 *  put to full:   ONE kmemCacheFreeBulk(SIZE-keep) of the TOP entries, count = keep
 * ```
 *
 * Shells in the cache are bare (no data, no destructor) and are NOT zeroed:
 * every builder clears the shell up to `tail` on reuse. A global switch turns
 * the cache off (entry points then use the slab one object at a time), so the
 * seed's A/B runs in one process.
 *
 * @module
 */

import {
  kmemCacheAlloc,
  kmemCacheAllocBulk,
  kmemCacheFree,
  kmemCacheFreeBulk,
  kmemCacheMarkCached,
} from "../mm/slab.js";
import {
  NAPI_STAT_BULK_DIRECT,
  NAPI_STAT_BULK_GETS,
  NAPI_STAT_FLUSHED_OBJS,
  NAPI_STAT_FLUSHES,
  NAPI_STAT_GET_FAIL,
  NAPI_STAT_MISSES,
  NAPI_STAT_BULK_CACHED,
  NAPI_STAT_DRAINED,
  NAPI_STAT_PUTS_SLAB,
  NAPI_STAT_REFILL_SERVED,
  NAPI_STAT_PUTS,
  NAPI_STAT_REFILL_OBJS,
  NAPI_STAT_REFILLS,
  NAPI_STAT_SLAB_CALLS,
  type SkbCpu,
  skbCpuCacheSwitch,
  skbCpuSetCacheSwitch,
} from "./cpu.js";
import { skbZeroHead } from "./access.js";

/**
 * Turn the NAPI head cache on or off for this thread. When off, every
 * NAPI entry point takes heads from, and returns them to, the slab one at a
 * time (the pre-5.12 behaviour). Switching off does not drain the caches;
 * call {@link napiSkbCacheDrain} for that. Applies to the thread's existing
 * CPUs and to those created later. Initial value: env SKBUFF_NAPI_CACHE
 * (default on).
 */
export function napiCacheSetEnabled(on: boolean): void {
  skbCpuSetCacheSwitch(on);
}

/** Whether the NAPI head cache is on for this thread. */
export function napiCacheIsEnabled(): boolean {
  return skbCpuCacheSwitch();
}

/**
 * Take one shell (`napi_skb_cache_get`). When the stack is empty and `alloc`
 * is true, refill it with ONE bulk slab call of `bulk` heads (a short refill
 * is accepted as-is); when nothing comes back, return 0 — there is no
 * single-object fallback. With `alloc` false (6.19 consume-only callers) an
 * empty stack returns 0 at once. The shell is not zeroed. Allocates nothing.
 */
export function napiSkbCacheGet(cpu: SkbCpu, alloc: boolean): number {
  const n = cpu.skbCount - 1;
  if (n >= 0 && cpu.cacheFast === true) {
    // Fast path: pop the most recently freed (cache-hot) shell. No
    // bookkeeping: hits are derived (napiCacheHits).
    cpu.skbCount = n;
    return cpu.skbCache[n] as number;
  }
  return napiSkbCacheGetSlow(cpu, alloc);
}

function napiSkbCacheGetSlow(cpu: SkbCpu, alloc: boolean): number {
  const st = cpu.stats;
  if (!skbCpuCacheSwitch()) {
    st[NAPI_STAT_MISSES]++;
    if (!alloc) {
      st[NAPI_STAT_GET_FAIL]++;
      return 0;
    }
    st[NAPI_STAT_SLAB_CALLS]++;
    const skb = kmemCacheAlloc(cpu.headCache);
    if (skb === 0) st[NAPI_STAT_GET_FAIL]++;
    return skb;
  }
  let n = cpu.skbCount;
  if (n === 0) {
    st[NAPI_STAT_MISSES]++;
    if (!alloc) {
      st[NAPI_STAT_GET_FAIL]++;
      return 0;
    }
    n = kmemCacheAllocBulk(cpu.headCache, cpu.bulk, cpu.skbCache, 0);
    st[NAPI_STAT_SLAB_CALLS]++;
    st[NAPI_STAT_REFILLS]++;
    st[NAPI_STAT_REFILL_OBJS] += n;
    if (n === 0) {
      st[NAPI_STAT_GET_FAIL]++;
      return 0;
    }
    st[NAPI_STAT_REFILL_SERVED]++;
    if (cpu.debug === true) for (let i = 0; i < n; i++) kmemCacheMarkCached(cpu.headCache, cpu.skbCache[i] as number, true);
  }
  n--;
  cpu.skbCount = n;
  const skb = cpu.skbCache[n] as number;
  if (cpu.debug === true) kmemCacheMarkCached(cpu.headCache, skb, false);
  return skb;
}

/**
 * Push a released shell (`napi_skb_cache_put`). When the push makes the
 * stack full, the TOP `flush` entries (indices keep..SIZE-1, the most
 * recently freed) go back to the slab in ONE bulk call and `keep` stay. In
 * debug mode a shell already in a cache or already freed throws (KASAN's
 * bad-free report) and is not cached. Allocates nothing.
 */
export function napiSkbCachePut(cpu: SkbCpu, skb: number): void {
  const n = cpu.skbCount + 1;
  if (n < cpu.cacheSize && cpu.cacheFast === true) {
    // Fast path: push; the stack does not become full.
    cpu.skbCache[n - 1] = skb;
    cpu.skbCount = n;
    cpu.stats[NAPI_STAT_PUTS]++;
    return;
  }
  napiSkbCachePutSlow(cpu, skb);
}

function napiSkbCachePutSlow(cpu: SkbCpu, skb: number): void {
  const st = cpu.stats;
  st[NAPI_STAT_PUTS]++;
  if (!skbCpuCacheSwitch()) {
    st[NAPI_STAT_PUTS_SLAB]++;
    st[NAPI_STAT_SLAB_CALLS]++;
    kmemCacheFree(cpu.headCache, skb);
    return;
  }
  if (cpu.debug === true) {
    const err = kmemCacheMarkCached(cpu.headCache, skb, true);
    if (err !== null) throw new Error(err);
  }
  const cache = cpu.skbCache;
  cache[cpu.skbCount++] = skb;
  if (cpu.skbCount === cpu.cacheSize) {
    const keep = cpu.keep;
    const nr = cpu.cacheSize - keep;
    if (cpu.debug === true) for (let i = keep; i < cpu.cacheSize; i++) kmemCacheMarkCached(cpu.headCache, cache[i] as number, false);
    kmemCacheFreeBulk(cpu.headCache, nr, cache, keep);
    cpu.skbCount = keep;
    st[NAPI_STAT_SLAB_CALLS]++;
    st[NAPI_STAT_FLUSHES]++;
    st[NAPI_STAT_FLUSHED_OBJS] += nr;
  }
}

/**
 * Take up to `n` ZEROED shells into `out[off..]` (`napi_skb_cache_get_bulk`,
 * 6.15+): cached shells first (the top `m`, in ascending index order, each
 * cleared up to `tail`), refilling the stack once with
 * `min(SIZE - count, BULK)` when short, then bulk-allocating the remainder
 * directly from the slab, zero-filled. Returns how many were written; a
 * partial result is possible under memory pressure. Allocates nothing.
 */
export function napiSkbCacheGetBulk(cpu: SkbCpu, out: Uint32Array, off: number, n: number): number {
  const st = cpu.stats;
  if (!skbCpuCacheSwitch()) {
    st[NAPI_STAT_SLAB_CALLS]++;
    const k = kmemCacheAllocBulk(cpu.headCache, n, out, off, true);
    st[NAPI_STAT_BULK_DIRECT] += k;
    st[NAPI_STAT_BULK_GETS] += k;
    return k;
  }
  let count = cpu.skbCount;
  let direct = 0;
  if (count < n) {
    const want = Math.min(cpu.cacheSize - count, cpu.bulk);
    const got = want > 0 ? kmemCacheAllocBulk(cpu.headCache, want, cpu.skbCache, count) : 0;
    if (want > 0) {
      st[NAPI_STAT_SLAB_CALLS]++;
      st[NAPI_STAT_REFILLS]++;
      st[NAPI_STAT_REFILL_OBJS] += got;
    }
    if (cpu.debug === true) for (let i = 0; i < got; i++) kmemCacheMarkCached(cpu.headCache, cpu.skbCache[count + i] as number, true);
    count += got;
    if (count < n) {
      direct = kmemCacheAllocBulk(cpu.headCache, n - count, out, off + count, true);
      st[NAPI_STAT_SLAB_CALLS]++;
      st[NAPI_STAT_BULK_DIRECT] += direct;
    }
  }
  const m = Math.min(count, n);
  const base = count - m;
  const cache = cpu.skbCache;
  for (let i = 0; i < m; i++) {
    const skb = cache[base + i] as number;
    if (cpu.debug === true) kmemCacheMarkCached(cpu.headCache, skb, false);
    skbZeroHead(cpu, skb);
    out[off + i] = skb;
  }
  cpu.skbCount = base;
  st[NAPI_STAT_BULK_CACHED] += m;
  st[NAPI_STAT_BULK_GETS] += m + direct;
  return m + direct;
}

/**
 * Return every cached shell to the slab in one bulk call (CPU teardown, or
 * before a leak check). Not a kernel path: since 5.12 nothing flushes the
 * cache except a full stack.
 */
export function napiSkbCacheDrain(cpu: SkbCpu): void {
  const n = cpu.skbCount;
  if (n === 0) return;
  if (cpu.debug === true) for (let i = 0; i < n; i++) kmemCacheMarkCached(cpu.headCache, cpu.skbCache[i] as number, false);
  kmemCacheFreeBulk(cpu.headCache, n, cpu.skbCache, 0);
  cpu.stats[NAPI_STAT_DRAINED] += n;
  cpu.skbCount = 0;
}

