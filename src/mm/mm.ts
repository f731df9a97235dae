/**
 * The memory system of one thread: the arena mapping plus every slab cache,
 * page allocator and page-pool ring mapped over it, indexed by cache id so
 * that an address alone finds its owner (`kfree`, `ksize`, page lookups).
 *
 * @module
 */

import type { Arena } from "./arena.js";
import { PAGE_SHIFT } from "./arena.js";
import { type Kmalloc, KMALLOC_SIZES } from "./kmalloc.js";
import type { PageAllocator } from "./page-alloc.js";
import type { PagePoolRings } from "./page-pool.js";
import { type KmemCache, kmemCacheFree, kmemCacheInfo, type SlabInfo } from "./slab.js";

/** A thread's view of all shared allocators. */
export class Mm {
  readonly arena: Arena;
  /** Slab caches by id (index 0 unused). */
  readonly cachesById: (KmemCache | undefined)[];
  /** Page allocators by the id of their page slab. */
  readonly pageAllocsById: (PageAllocator | undefined)[];
  readonly kmalloc: Kmalloc;
  readonly ppRings: PagePoolRings;
  readonly pageOwner: Uint8Array;

  /** Assemble from already created or attached parts. */
  constructor(arena: Arena, caches: readonly KmemCache[], pageAllocs: readonly PageAllocator[], km: Kmalloc, rings: PagePoolRings) {
    this.arena = arena;
    this.cachesById = new Array<KmemCache | undefined>(256).fill(undefined);
    this.pageAllocsById = new Array<PageAllocator | undefined>(256).fill(undefined);
    for (const c of caches) this.cachesById[c.id] = c;
    for (const c of km.caches) this.cachesById[c.id] = c;
    for (const p of pageAllocs) {
      this.cachesById[p.cache.id] = p.cache;
      this.pageAllocsById[p.cache.id] = p;
    }
    this.kmalloc = km;
    this.ppRings = rings;
    this.pageOwner = arena.pageOwner;
  }
}

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

/** The slab cache owning `addr`, or undefined. */
export function virtToCache(mm: Mm, addr: number): KmemCache | undefined {
  return mm.cachesById[mm.pageOwner[addr >>> PAGE_SHIFT] as number];
}

/** The page allocator owning `addr`; throws naming the address when none does. */
export function virtToPageAlloc(mm: Mm, addr: number, op: string): PageAllocator {
  const pa = mm.pageAllocsById[mm.pageOwner[addr >>> PAGE_SHIFT] as number];
  if (pa === undefined) throw new Error(`${op}: ${hex(addr)} is not inside a page`);
  return pa;
}

/**
 * Free a kmalloc'ed buffer (`kfree`). kfree(0) is a no-op, as in the kernel.
 * A pointer no kmalloc cache owns throws, naming it.
 */
export function kfree(mm: Mm, ptr: number): void {
  if (ptr === 0) return;
  const s = virtToCache(mm, ptr);
  if (s === undefined || mm.pageAllocsById[s.id] !== undefined || !s.name.startsWith("kmalloc-")) {
    throw new Error(`kfree: ${hex(ptr)} was not allocated by kmalloc${s ? ` (it belongs to ${s.name})` : ""}`);
  }
  kmemCacheFree(s, ptr);
}

/** Usable size of a kmalloc'ed buffer (`ksize`). */
export function ksize(mm: Mm, ptr: number): number {
  const s = virtToCache(mm, ptr);
  if (s === undefined) throw new Error(`ksize: ${hex(ptr)} was not allocated from a slab`);
  return s.objSize;
}

/** slabinfo of every cache, in id order (allocates). */
export function mmSlabInfo(mm: Mm): SlabInfo[] {
  const out: SlabInfo[] = [];
  for (const c of mm.cachesById) if (c !== undefined) out.push(kmemCacheInfo(c));
  return out;
}

/** Names of the kmalloc classes (for reports). */
export const KMALLOC_CLASS_SIZES = KMALLOC_SIZES;
