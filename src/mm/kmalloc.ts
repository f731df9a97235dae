/**
 * kmalloc: general-purpose allocations served by a ladder of size-class
 * slab caches (`kmalloc-64` … `kmalloc-32k`), as in the kernel. Used for
 * kmalloc'ed skb data heads (`head_frag = 0`).
 *
 * `kfree` and `ksize` find the owning cache from the address through the
 * arena page-owner map (the kernel's `virt_to_slab`).
 *
 * @module
 */

import type { Arena, RegionSpec } from "./arena.js";
import { type KmemCache, kmemCacheAlloc, kmemCacheAttach, kmemCacheCreate, slabRegionSpec } from "./slab.js";

/** The size classes, in bytes (the kernel's kmalloc caches from 64 B up). */
export const KMALLOC_SIZES: readonly number[] = [
  64, 128, 192, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768,
];
/** Largest kmalloc request served. */
export const KMALLOC_MAX_SIZE = 32768;

/** Per-class object counts. */
export type KmallocCounts = readonly number[];

/** The kmalloc caches of one thread, plus a size → class lookup table. */
export class Kmalloc {
  /** One cache per size class, in KMALLOC_SIZES order. */
  readonly caches: readonly KmemCache[];
  /** `lookup[(size + 7) >> 3]` = class index. */
  readonly lookup: Uint8Array;

  /** Use kmallocCreate / kmallocAttach. */
  constructor(caches: readonly KmemCache[]) {
    this.caches = caches;
    this.lookup = new Uint8Array((KMALLOC_MAX_SIZE >>> 3) + 1);
    let c = 0;
    for (let i = 0; i < this.lookup.length; i++) {
      while ((KMALLOC_SIZES[c] as number) < i << 3) c++;
      this.lookup[i] = c;
    }
  }
}

/** Region specs for the kmalloc caches. */
export function kmallocRegionSpecs(counts: KmallocCounts, debug = false): RegionSpec[] {
  return KMALLOC_SIZES.map((size, i) =>
    slabRegionSpec({ name: kmallocName(size), size, count: counts[i] as number, debug }),
  );
}

/** Name of the cache for class `size`. */
export function kmallocName(size: number): string {
  return size >= 1024 ? `kmalloc-${size / 1024}k` : `kmalloc-${size}`;
}

/** Create the kmalloc caches with ids `firstId ..`. */
export function kmallocCreate(arena: Arena, firstId: number, counts: KmallocCounts, debug = false): Kmalloc {
  return new Kmalloc(
    KMALLOC_SIZES.map((size, i) =>
      kmemCacheCreate(arena, firstId + i, { name: kmallocName(size), size, count: counts[i] as number, debug }),
    ),
  );
}

/** Map the kmalloc caches created elsewhere. */
export function kmallocAttach(arena: Arena, firstId: number): Kmalloc {
  return new Kmalloc(KMALLOC_SIZES.map((size, i) => kmemCacheAttach(arena, firstId + i, kmallocName(size))));
}

/** The cache serving `size` bytes, or undefined when it exceeds KMALLOC_MAX_SIZE. */
export function kmallocSlab(km: Kmalloc, size: number): KmemCache | undefined {
  if (size > KMALLOC_MAX_SIZE || size <= 0) return undefined;
  return km.caches[km.lookup[(size + 7) >>> 3] as number];
}

/** Size actually provided for a `size`-byte request (`kmalloc_size_roundup`); 0 if too large. */
export function kmallocSizeRoundup(km: Kmalloc, size: number): number {
  const s = kmallocSlab(km, size);
  return s === undefined ? 0 : s.objSize;
}

/** Allocate `size` bytes (`kmalloc`); 0 when too large or exhausted. */
export function kmalloc(km: Kmalloc, size: number): number {
  const s = kmallocSlab(km, size);
  return s === undefined ? 0 : kmemCacheAlloc(s);
}
