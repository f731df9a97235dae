/**
 * Packet memory: one arena carved into the caches the skb layer needs, with
 * sizes from a config (defaults scale with the arena size).
 *
 * ```
 *  id  cache / allocator        object size
 *   1  skbuff_head_cache        192   sk_buff shells (the NAPI cache's slab)
 *   2  skbuff_fclone_cache      448   sk_buff_fclones pairs
 *   3  skbuff_small_head        704   6.3+ small kmalloc heads
 *   4  frag-pages             32768   page_frag_cache pages (order 3)
 *   5  pages                   4096   page-pool RX pages (order 0)
 *  10+ kmalloc-64 .. kmalloc-32k
 * ```
 *
 * Also carved: page-pool recycle rings and per-CPU defer lists.
 *
 * @module
 */

import { type Arena, type ArenaDescription, arenaAttach, arenaCreate, type RegionSpec } from "../mm/arena.js";
import {
  KMALLOC_SIZES,
  type Kmalloc,
  kmallocAttach,
  kmallocCreate,
  kmallocRegionSpecs,
} from "../mm/kmalloc.js";
import { Mm } from "../mm/mm.js";
import { type PageAllocator, pageAllocAttach, pageAllocCreate, pageAllocRegionSpecs } from "../mm/page-alloc.js";
import { PAGE_FRAG_CACHE_MAX_SIZE } from "../mm/page-frag.js";
import { PagePoolRings, pagePoolRingsRegionSpec } from "../mm/page-pool.js";
import {
  type BulkMode,
  type KmemCache,
  kmemCacheAttach,
  kmemCacheCreate,
  slabRegionSpec,
} from "../mm/slab.js";
import { FCLONE_OBJ_SIZE, SKB_HEAD_OBJ_SIZE, SKB_SMALL_HEAD_CACHE_SIZE } from "./layout.js";

/** Cache ids. */
export const ID_HEAD = 1;
export const ID_FCLONE = 2;
export const ID_SMALL_HEAD = 3;
export const ID_FRAG_PAGES = 4;
export const ID_PAGES = 5;
export const ID_KMALLOC = 10;

/** Default arena size: 64 MiB. */
export const DEFAULT_ARENA_SIZE = 64 << 20;

/** Bytes per per-CPU defer-list slot. */
const DEFER_SLOT = 64;

/** Memory configuration; omitted counts scale with `arenaSize`. */
export interface SkbMemoryConfig {
  /** Arena size in bytes (default 64 MiB, max 1 GiB, multiple of 4 KiB). */
  arenaSize?: number;
  /** sk_buff shells in skbuff_head_cache. */
  heads?: number;
  /** fclone pairs. */
  fclones?: number;
  /** skb_small_head_cache objects. */
  smallHeads?: number;
  /** Objects per kmalloc class, KMALLOC_SIZES order. */
  kmalloc?: readonly number[];
  /** 32 KiB pages for page-frag caches. */
  fragPages?: number;
  /** 4 KiB pages for page pools. */
  pages?: number;
  /** Page-pool slots. */
  maxPagePools?: number;
  /** Entries per page-pool recycle ring. */
  ppRingSize?: number;
  /** CPUs (workers) that may map this memory. */
  maxCpus?: number;
  /** Slab debug mode (poison, double free, write after free). Default: env SKBUFF_DEBUG. */
  debug?: boolean;
  /** Slab bulk-allocation behaviour under shortage. */
  bulkMode?: BulkMode;
  /** More regions to carve (tables of the layers above, e.g. conntrack). */
  extraRegions?: readonly RegionSpec[];
}

/** Fully resolved configuration (what was actually carved). */
export interface ResolvedMemoryConfig {
  arenaSize: number;
  heads: number;
  fclones: number;
  smallHeads: number;
  kmalloc: number[];
  fragPages: number;
  pages: number;
  maxPagePools: number;
  ppRingSize: number;
  maxCpus: number;
  debug: boolean;
  bulkMode: BulkMode;
  extraRegions: RegionSpec[];
}

const BASE_KMALLOC = [2048, 2048, 1024, 2048, 2048, 4096, 4096, 1024, 256, 64, 32];

/** True when the environment asks for debug mode (`SKBUFF_DEBUG=1`). */
export function envDebug(): boolean {
  const v = process.env.SKBUFF_DEBUG;
  return v !== undefined && v !== "" && v !== "0" && v.toLowerCase() !== "off" && v.toLowerCase() !== "false";
}

/** Resolve defaults; throws on nonsense values. */
export function resolveMemoryConfig(c: SkbMemoryConfig = {}): ResolvedMemoryConfig {
  const arenaSize = c.arenaSize ?? DEFAULT_ARENA_SIZE;
  const scale = arenaSize / DEFAULT_ARENA_SIZE;
  const sc = (base: number, min: number) => Math.max(min, Math.floor(base * scale));
  const r: ResolvedMemoryConfig = {
    arenaSize,
    heads: c.heads ?? sc(16384, 64),
    fclones: c.fclones ?? sc(4096, 8),
    smallHeads: c.smallHeads ?? sc(8192, 16),
    kmalloc: c.kmalloc ? [...c.kmalloc] : BASE_KMALLOC.map((b) => sc(b, 4)),
    fragPages: c.fragPages ?? sc(256, 2),
    pages: c.pages ?? sc(4096, 16),
    maxPagePools: c.maxPagePools ?? 16,
    ppRingSize: c.ppRingSize ?? 1024,
    maxCpus: c.maxCpus ?? 16,
    debug: c.debug ?? envDebug(),
    bulkMode: c.bulkMode ?? "all-or-nothing",
    extraRegions: c.extraRegions ? c.extraRegions.map((r) => ({ ...r })) : [],
  };
  if (r.kmalloc.length !== KMALLOC_SIZES.length) {
    throw new RangeError(`memory config: kmalloc needs ${KMALLOC_SIZES.length} counts (one per class), got ${r.kmalloc.length}`);
  }
  for (const [k, v] of Object.entries(r)) {
    if (typeof v === "number" && (!Number.isInteger(v) || v < 1)) {
      throw new RangeError(`memory config: ${k} must be a positive integer, got ${v}`);
    }
  }
  if (r.maxCpus > 255) throw new RangeError(`memory config: maxCpus ${r.maxCpus} exceeds 255`);
  return r;
}

function regionSpecs(r: ResolvedMemoryConfig): RegionSpec[] {
  return [
    slabRegionSpec({ name: "skbuff_head_cache", size: SKB_HEAD_OBJ_SIZE, count: r.heads }),
    slabRegionSpec({ name: "skbuff_fclone_cache", size: FCLONE_OBJ_SIZE, count: r.fclones }),
    slabRegionSpec({ name: "skbuff_small_head", size: SKB_SMALL_HEAD_CACHE_SIZE, count: r.smallHeads }),
    ...pageAllocRegionSpecs({ name: "frag-pages", pageSize: PAGE_FRAG_CACHE_MAX_SIZE, count: r.fragPages }),
    ...pageAllocRegionSpecs({ name: "pages", pageSize: 4096, count: r.pages }),
    ...kmallocRegionSpecs(r.kmalloc),
    pagePoolRingsRegionSpec(r.maxPagePools, r.ppRingSize),
    { name: "defer", size: r.maxCpus * DEFER_SLOT, align: 64 },
    { name: "config", size: 4096, align: 64 },
    ...r.extraRegions,
  ];
}

/** Description handed to workers (structured-cloneable). */
export interface SkbMemoryDescription {
  readonly arena: ArenaDescription;
  readonly config: ResolvedMemoryConfig;
}

/** All shared packet memory as seen from one thread. */
export class SkbMemory {
  readonly arena: Arena;
  readonly mm: Mm;
  readonly config: ResolvedMemoryConfig;
  readonly headCache: KmemCache;
  readonly fcloneCache: KmemCache;
  readonly smallHeadCache: KmemCache;
  readonly fragPages: PageAllocator;
  readonly pages: PageAllocator;
  readonly kmalloc: Kmalloc;
  /** Byte offset of the per-CPU defer-list slots. */
  readonly deferBase: number;

  /** Use createSkbMemory / attachSkbMemory. */
  constructor(
    arena: Arena,
    config: ResolvedMemoryConfig,
    caches: [KmemCache, KmemCache, KmemCache],
    pas: [PageAllocator, PageAllocator],
    km: Kmalloc,
  ) {
    this.arena = arena;
    this.config = config;
    [this.headCache, this.fcloneCache, this.smallHeadCache] = caches;
    [this.fragPages, this.pages] = pas;
    this.kmalloc = km;
    const rings = new PagePoolRings(arena, config.maxPagePools, config.ppRingSize);
    this.mm = new Mm(arena, caches, pas, km, rings);
    this.deferBase = arena.region("defer").offset;
  }

  /** What a worker needs to attach. */
  describe(): SkbMemoryDescription {
    return { arena: this.arena.describe(), config: this.config };
  }
}

/** Bytes per defer slot (for the defer-list module). */
export const DEFER_SLOT_SIZE = DEFER_SLOT;

/**
 * Create the arena and every cache. Throws a `RangeError` naming the region
 * when the configuration does not fit the arena size.
 */
export function createSkbMemory(c: SkbMemoryConfig = {}): SkbMemory {
  const r = resolveMemoryConfig(c);
  const arena = arenaCreate(r.arenaSize, regionSpecs(r));
  const d = r.debug;
  const bm = r.bulkMode;
  const head = kmemCacheCreate(arena, ID_HEAD, {
    name: "skbuff_head_cache",
    size: SKB_HEAD_OBJ_SIZE,
    count: r.heads,
    debug: d,
    bulkMode: bm,
  });
  const fclone = kmemCacheCreate(arena, ID_FCLONE, {
    name: "skbuff_fclone_cache",
    size: FCLONE_OBJ_SIZE,
    count: r.fclones,
    debug: d,
    bulkMode: bm,
  });
  const small = kmemCacheCreate(arena, ID_SMALL_HEAD, {
    name: "skbuff_small_head",
    size: SKB_SMALL_HEAD_CACHE_SIZE,
    count: r.smallHeads,
    debug: d,
  });
  const frag = pageAllocCreate(arena, ID_FRAG_PAGES, {
    name: "frag-pages",
    pageSize: PAGE_FRAG_CACHE_MAX_SIZE,
    count: r.fragPages,
  });
  const pages = pageAllocCreate(arena, ID_PAGES, { name: "pages", pageSize: 4096, count: r.pages });
  const km = kmallocCreate(arena, ID_KMALLOC, r.kmalloc, d);
  return new SkbMemory(arena, r, [head, fclone, small], [frag, pages], km);
}

/** Map memory created by another thread. */
export function attachSkbMemory(desc: SkbMemoryDescription): SkbMemory {
  const arena = arenaAttach(desc.arena);
  const head = kmemCacheAttach(arena, ID_HEAD, "skbuff_head_cache");
  const fclone = kmemCacheAttach(arena, ID_FCLONE, "skbuff_fclone_cache");
  const small = kmemCacheAttach(arena, ID_SMALL_HEAD, "skbuff_small_head");
  const frag = pageAllocAttach(arena, ID_FRAG_PAGES, "frag-pages");
  const pages = pageAllocAttach(arena, ID_PAGES, "pages");
  const km = kmallocAttach(arena, ID_KMALLOC);
  return new SkbMemory(arena, desc.config, [head, fclone, small], [frag, pages], km);
}
