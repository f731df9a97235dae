/**
 * Per-CPU skb state: the NAPI head cache (`struct napi_alloc_cache`), the two
 * page-frag caches, the TX completion queue, drop-reason and cache counters.
 *
 * A CPU is a thread (the main thread or a worker). Everything here is plain
 * memory touched only by that thread, which is what makes the head cache
 * lock-free: the kernel relies on "BH disabled on this CPU" for the same
 * guarantee. Every skb function takes the CPU as its first argument.
 *
 * @module
 */

import type { Arena } from "../mm/arena.js";
import type { Kmalloc } from "../mm/kmalloc.js";
import type { Mm } from "../mm/mm.js";
import type { PageAllocator } from "../mm/page-alloc.js";
import { PageFragCache } from "../mm/page-frag.js";
import type { PagePool } from "../mm/page-pool.js";
import type { KmemCache } from "../mm/slab.js";
import { SKB_DROP_REASON_MAX } from "./drop-reason.js";
import type { SkbMemory } from "./memory.js";
import { type NapiProfile, napiProfile, type ProfileOverrides } from "./profile.js";

/**
 * Indices into {@link SkbCpu.stats}. The fast paths of the cache keep ONE
 * counter (puts into the stack); hits are derived from the stack's own
 * conservation law by {@link napiCacheHits}, so a pop costs no bookkeeping.
 */
/** Gets that found the stack empty (or the cache off). */
export const NAPI_STAT_MISSES = 0;
/** Refills whose first head served the get that triggered them. */
export const NAPI_STAT_REFILL_SERVED = 1;
/** Refills of an empty stack (one bulk slab call each). */
export const NAPI_STAT_REFILLS = 2;
/** Heads obtained by refills. */
export const NAPI_STAT_REFILL_OBJS = 3;
/** Gets that returned NULL (refill gave nothing, or consume-only on empty). */
export const NAPI_STAT_GET_FAIL = 4;
/** Heads pushed onto the stack. */
export const NAPI_STAT_PUTS = 5;
/** Flushes of a full stack (one bulk slab call each). */
export const NAPI_STAT_FLUSHES = 6;
/** Heads handed back by flushes. */
export const NAPI_STAT_FLUSHED_OBJS = 7;
/** Slab calls made on behalf of the NAPI entry points (cache or, when off, direct). */
export const NAPI_STAT_SLAB_CALLS = 8;
/** Heads served by napiSkbCacheGetBulk. */
export const NAPI_STAT_BULK_GETS = 9;
/** Heads bulk-allocated directly (zeroed) by napiSkbCacheGetBulk. */
export const NAPI_STAT_BULK_DIRECT = 10;
/** Skbs deferred to their allocating CPU. */
export const NAPI_STAT_DEFERRED = 11;
/** Skbs freed via the completion queue in netTxAction. */
export const NAPI_STAT_TX_COMPLETED = 12;
/** Frees that went straight to the slab because the cache was off. */
export const NAPI_STAT_PUTS_SLAB = 13;
/** Heads napiSkbCacheGetBulk took from the stack. */
export const NAPI_STAT_BULK_CACHED = 14;
/** Heads napiSkbCacheDrain returned to the slab. */
export const NAPI_STAT_DRAINED = 15;
/** Number of napi stats. */
export const NAPI_STAT_MAX = 16;

/** Names of the napi stats, index order. */
export const NAPI_STAT_NAMES = [
  "misses",
  "refillServed",
  "refills",
  "refillObjs",
  "getFail",
  "puts",
  "flushes",
  "flushedObjs",
  "slabCalls",
  "bulkGets",
  "bulkDirect",
  "deferred",
  "txCompleted",
  "putsSlab",
  "bulkCached",
  "drained",
] as const;

/**
 * Gets served from a non-empty stack, derived by conservation: everything
 * that entered the stack (refilled heads, pushes) minus everything that left
 * it other than by a hit (refill-served gets, flushes, drains, bulk gets)
 * minus what is still there.
 */
export function napiCacheHits(cpu: SkbCpu): number {
  const s = cpu.stats;
  return (
    (s[NAPI_STAT_REFILL_OBJS] as number) +
    (s[NAPI_STAT_PUTS] as number) -
    (s[NAPI_STAT_PUTS_SLAB] as number) -
    (s[NAPI_STAT_REFILL_SERVED] as number) -
    (s[NAPI_STAT_FLUSHED_OBJS] as number) -
    (s[NAPI_STAT_DRAINED] as number) -
    (s[NAPI_STAT_BULK_CACHED] as number) -
    cpu.skbCount
  );
}

/** Options of a CPU context. */
export interface SkbCpuOptions {
  /** Kernel profile: `5.12` (default) or `6.19`. */
  profile?: string;
  /** Size overrides on top of the profile. */
  sizes?: ProfileOverrides;
}

function envCacheDefault(): boolean {
  const v = process.env.SKBUFF_NAPI_CACHE;
  if (v === undefined || v === "") return true;
  const l = v.toLowerCase();
  return !(l === "0" || l === "off" || l === "false" || l === "no");
}

/**
 * The NAPI cache switch of this thread (initially env SKBUFF_NAPI_CACHE,
 * default on) and the CPUs it governs. Each CPU keeps `cacheFast` = switch
 * on and not debug, so the cache's fast paths test one field of the CPU
 * they already hold instead of a module variable (a context load and a hole
 * check in V8) and the debug flag.
 */
let napiCacheSwitch = envCacheDefault();
const switchCpus: WeakRef<SkbCpu>[] = [];

/** The NAPI cache switch of this thread (use napiCacheIsEnabled). */
export function skbCpuCacheSwitch(): boolean {
  return napiCacheSwitch;
}

/** Set this thread's NAPI cache switch and update every live CPU of the thread (use napiCacheSetEnabled). Cold. */
export function skbCpuSetCacheSwitch(on: boolean): void {
  napiCacheSwitch = on;
  for (const r of switchCpus) {
    const cpu = r.deref();
    if (cpu !== undefined) cpu.cacheFast = on && !cpu.debug;
  }
}

function registerSwitchCpu(cpu: SkbCpu): void {
  if (switchCpus.length >= 64) {
    let k = 0;
    for (const r of switchCpus) if (r.deref() !== undefined) switchCpus[k++] = r;
    switchCpus.length = k;
  }
  switchCpus.push(new WeakRef(cpu));
}

/** One CPU's skb context. Fields are fixed at construction (stable shape). */
export class SkbCpu {
  /** CPU id (0-based); recorded as `alloc_cpu` on skbs built here. */
  readonly id: number;
  readonly mem: SkbMemory;
  readonly mm: Mm;
  readonly arena: Arena;
  readonly u8: Uint8Array;
  readonly u16: Uint16Array;
  readonly u32: Uint32Array;
  readonly i32: Int32Array;
  readonly f64: Float64Array;
  /** Arena size in bytes (bounds checks). */
  readonly arenaSize: number;
  readonly headCache: KmemCache;
  readonly fcloneCache: KmemCache;
  readonly smallHeadCache: KmemCache;
  readonly kmalloc: Kmalloc;
  readonly fragPages: PageAllocator;
  readonly profile: NapiProfile;
  /** NAPI_SKB_CACHE_SIZE in force. */
  readonly cacheSize: number;
  /** Refill size. */
  readonly bulk: number;
  /** Entries kept after a flush (SIZE − flush). */
  readonly keep: number;
  /** napi_alloc_cache.skb_cache: the LIFO stack of free shells. */
  readonly skbCache: Uint32Array;
  /** napi_alloc_cache.skb_count. */
  skbCount = 0;
  /** napi_alloc_cache.page: fragments for NAPI-context allocations. */
  readonly napiFrag: PageFragCache;
  /** netdev_alloc_cache: fragments for hard-IRQ / IRQs-off allocations. */
  readonly netdevFrag: PageFragCache;
  /** softnet_data.completion_queue: skbs freed with IRQs off, drained by netTxAction. */
  completionQueue = 0;
  /** True while the caller models "hard IRQ or IRQs disabled" (netpoll). */
  irqsDisabled = false;
  /** Debug mode (slab debug): checks cached-head state. */
  readonly debug: boolean;
  /** The cache's fast paths may run: the thread's switch is on and this is not a debug CPU. */
  cacheFast: boolean;
  /** Profile flag copied for the hot stolen-head path. */
  readonly slowGro: boolean;
  /** NAPI cache counters, NAPI_STAT_* indices. */
  readonly stats: Float64Array;
  /** Freed packets by drop reason (index CONSUMED counts consumes). */
  readonly drops: Float64Array;
  /** Page pools this CPU owns, by pool id. */
  readonly pagePools: (PagePool | undefined)[];
  /** Scratch for napiSkbCacheGetBulk / list frees (avoid per-call arrays). */
  readonly scratch: Uint32Array;
  /** Size returned by the last kmalloc-reserve (avoids a result object). */
  lastReserveSize = 0;
  /** kfreeSkbList batching windows (16 × nesting depth). */
  readonly listScratch: Uint32Array;
  /** Current kfreeSkbList nesting depth. */
  listFreeDepth = 0;

  /** Use {@link createSkbCpu}. */
  constructor(mem: SkbMemory, id: number, profile: NapiProfile) {
    if (!Number.isInteger(id) || id < 0 || id >= mem.config.maxCpus) {
      throw new RangeError(`createSkbCpu: cpu id ${id} not in 0..${mem.config.maxCpus - 1} (memory maxCpus)`);
    }
    this.id = id;
    this.mem = mem;
    this.mm = mem.mm;
    this.arena = mem.arena;
    this.u8 = mem.arena.u8;
    this.u16 = mem.arena.u16;
    this.u32 = mem.arena.u32;
    this.i32 = mem.arena.i32;
    this.f64 = mem.arena.f64;
    this.arenaSize = mem.arena.size;
    this.headCache = mem.headCache;
    this.fcloneCache = mem.fcloneCache;
    this.smallHeadCache = mem.smallHeadCache;
    this.kmalloc = mem.kmalloc;
    this.fragPages = mem.fragPages;
    this.profile = profile;
    this.cacheSize = profile.cacheSize;
    this.bulk = profile.bulk;
    this.keep = profile.cacheSize - profile.flush;
    this.skbCache = new Uint32Array(profile.cacheSize);
    this.napiFrag = new PageFragCache(mem.fragPages);
    this.netdevFrag = new PageFragCache(mem.fragPages);
    this.debug = mem.config.debug;
    this.cacheFast = napiCacheSwitch && !this.debug;
    this.slowGro = profile.slowGro;
    this.stats = new Float64Array(NAPI_STAT_MAX);
    this.drops = new Float64Array(SKB_DROP_REASON_MAX);
    this.pagePools = new Array<PagePool | undefined>(mem.config.maxPagePools + 1).fill(undefined);
    this.scratch = new Uint32Array(Math.max(64, profile.cacheSize));
    this.listScratch = new Uint32Array(16 * 4);
    registerSwitchCpu(this);
  }
}

/** Create CPU `id`'s context over `mem` with a kernel profile. */
export function createSkbCpu(mem: SkbMemory, id: number, o: SkbCpuOptions = {}): SkbCpu {
  return new SkbCpu(mem, id, napiProfile(o.profile ?? "5.12", o.sizes ?? {}));
}

/** NAPI cache counters as a plain object (allocates). */
export function napiCacheStats(
  cpu: SkbCpu,
): Record<(typeof NAPI_STAT_NAMES)[number], number> & { cached: number; gets: number; hits: number } {
  const o = { cached: cpu.skbCount } as Record<string, number>;
  NAPI_STAT_NAMES.forEach((n, i) => {
    o[n] = cpu.stats[i] as number;
  });
  // Every get is either a hit (stack non-empty) or a miss.
  o.hits = napiCacheHits(cpu);
  o.gets = o.hits + (cpu.stats[NAPI_STAT_MISSES] as number);
  return o as Record<(typeof NAPI_STAT_NAMES)[number], number> & { cached: number; gets: number; hits: number };
}
