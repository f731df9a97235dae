/**
 * Shared helpers for the skb and GRO/GSO tests: memory and CPU setup, the
 * leak check, arena accessors, allocator counters, a deterministic byte
 * source, reading a packet back independently of the code under test, page
 * reference helpers and NAPI cache priming.
 */

import assert from "node:assert/strict";
import { pageRefAdd, pageRefCount, putPage } from "../../src/mm/page-alloc.js";
import { pageFragCacheDrain } from "../../src/mm/page-frag.js";
import { kmemCacheInfo } from "../../src/mm/slab.js";
import {
  skbDataPtr,
  skbFragList,
  skbFragOffset,
  skbFragPage,
  skbFragSize,
  skbHeadlen,
  skbLen,
  skbNrFrags,
} from "../../src/skb/access.js";
import { allocSkb } from "../../src/skb/alloc.js";
import { createSkbCpu, napiCacheStats, type SkbCpu } from "../../src/skb/cpu.js";
import { napiConsumeSkb } from "../../src/skb/free.js";
import { SKB_ALLOC_NAPI, SKB_DATA, SKB_HEAD, SKB_NEXT } from "../../src/skb/layout.js";
import { createSkbMemory, type SkbMemory, type SkbMemoryConfig } from "../../src/skb/memory.js";
import { napiSkbCacheDrain } from "../../src/skb/napi-cache.js";

// ---- environment ----------------------------------------------------------------------------

/** A kernel profile the skb code models. */
export type Profile = "5.12" | "6.19";
/** Every profile, for the per-profile test matrices. */
export const PROFILES: readonly Profile[] = ["5.12", "6.19"];

/** A fresh skb memory: an 8 MiB arena (unless `cfg.arenaSize` says otherwise), slab debug as given. */
export function createMemory(debug: boolean, cfg: SkbMemoryConfig = {}): SkbMemory {
  return createSkbMemory({ arenaSize: 8 << 20, debug, ...cfg });
}

/** A fresh memory (see {@link createMemory}) and CPU `id` of `profile` on it. */
export function setup(profile: Profile = "5.12", debug = false, cfg: SkbMemoryConfig = {}, id = 0): SkbCpu {
  return createSkbCpu(createMemory(debug, cfg), id, { profile });
}

/** Leak check: every completion queue empty, every CPU's caches drained, then every allocator of the (shared) memory empty. */
export function assertNoLeaks(...cpus: SkbCpu[]): void {
  for (const cpu of cpus) {
    assert.equal(cpu.completionQueue, 0, `cpu ${cpu.id}: completion queue not empty`);
    napiSkbCacheDrain(cpu);
    pageFragCacheDrain(cpu.napiFrag);
    pageFragCacheDrain(cpu.netdevFrag);
  }
  const m = (cpus[0] as SkbCpu).mem;
  const all = [m.headCache, m.fcloneCache, m.smallHeadCache, ...m.kmalloc.caches, m.fragPages.cache, m.pages.cache];
  const leaks = all.map((c) => kmemCacheInfo(c)).filter((i) => i.activeObjs !== 0).map((i) => `${i.name}: ${i.activeObjs}`);
  assert.deepEqual(leaks, [], "objects still allocated");
}

// ---- arena accessors ------------------------------------------------------------------------

/** The u16 at arena offset `off`. */
export function u16(cpu: SkbCpu, off: number): number {
  return cpu.u16[off >>> 1] as number;
}
/** The u32 at arena offset `off`. */
export function u32(cpu: SkbCpu, off: number): number {
  return cpu.u32[off >>> 2] as number;
}
/** Store the u16 `v` at arena offset `off`. */
export function set16(cpu: SkbCpu, off: number, v: number): void {
  cpu.u16[off >>> 1] = v;
}
/** Store the u32 `v` at arena offset `off`. */
export function set32(cpu: SkbCpu, off: number, v: number): void {
  cpu.u32[off >>> 2] = v;
}
/** Offset of skb->data from skb->head. */
export function skbDataOff(cpu: SkbCpu, skb: number): number {
  return cpu.u32[(skb + SKB_DATA) >>> 2]! - cpu.u32[(skb + SKB_HEAD) >>> 2]!;
}

// ---- counters -------------------------------------------------------------------------------

/** Objects in use in one slab cache. */
export function active(c: Parameters<typeof kmemCacheInfo>[0]): number {
  return kmemCacheInfo(c).activeObjs;
}
/** Data buffers in use: every kmalloc class plus the small-head cache. */
export function dataActive(cpu: SkbCpu): number {
  let n = active(cpu.smallHeadCache);
  for (const c of cpu.kmalloc.caches) n += active(c);
  return n;
}
/** NAPI cache gets so far (hits + misses). */
export function gets(cpu: SkbCpu): number {
  return napiCacheStats(cpu).gets;
}

/** Fill the NAPI cache with BULK shells through the public paths; returns the count. */
export function primeCache(cpu: SkbCpu): number {
  const s = allocSkb(cpu, 0, SKB_ALLOC_NAPI);
  assert.notEqual(s, 0);
  napiConsumeSkb(cpu, s, 64);
  assert.equal(cpu.skbCount, cpu.bulk);
  return cpu.skbCount;
}

// ---- packet bytes ---------------------------------------------------------------------------

/** A deterministic byte source seeded with `seed` (an LCG; no short period that could hide a shifted copy). */
export interface ByteSource {
  /** The next byte. */
  nextByte(): number;
  /** The next `n` bytes as an array. */
  randomBytes(n: number): number[];
  /** The next `n` bytes as a Uint8Array. */
  bytes(n: number): Uint8Array;
}

/** A {@link ByteSource} starting from `seed`; each test file keeps its own, so its sequence does not depend on other files. */
export function byteSource(seed: number): ByteSource {
  let state = seed >>> 0;
  const nextByte = (): number => {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    return state >>> 24;
  };
  return {
    nextByte,
    randomBytes(n: number): number[] {
      const out: number[] = [];
      for (let i = 0; i < n; i++) out.push(nextByte());
      return out;
    },
    bytes(n: number): Uint8Array {
      const b = new Uint8Array(n);
      for (let i = 0; i < n; i++) b[i] = nextByte();
      return b;
    },
  };
}

/** Every packet byte, read independently of the code under test: linear, frags, frag_list (recursively). */
export function readPacket(cpu: SkbCpu, skb: number): number[] {
  const out: number[] = [];
  const d = skbDataPtr(cpu, skb);
  for (let i = 0; i < skbHeadlen(cpu, skb); i++) out.push(cpu.u8[d + i] as number);
  for (let f = 0; f < skbNrFrags(cpu, skb); f++) {
    const a = skbFragPage(cpu, skb, f) + skbFragOffset(cpu, skb, f);
    for (let i = 0; i < skbFragSize(cpu, skb, f); i++) out.push(cpu.u8[a + i] as number);
  }
  for (let l = skbFragList(cpu, skb); l !== 0; l = u32(cpu, l + SKB_NEXT)) out.push(...readPacket(cpu, l));
  assert.equal(out.length, skbLen(cpu, skb), "len does not match the bytes present");
  return out;
}

// ---- page references ------------------------------------------------------------------------

/** Take an extra reference on each page (the test's own, to watch the skb's ones). */
export function hold(cpu: SkbCpu, pages: number[]): void {
  for (const p of pages) pageRefAdd(cpu.mem.pages, p, 1);
}
/** The reference count of each page. */
export function refs(cpu: SkbCpu, pages: number[]): number[] {
  return pages.map((p) => pageRefCount(cpu.mem.pages, p));
}
/** Drop one reference on each page (the ones taken with {@link hold}). */
export function release(cpu: SkbCpu, pages: number[]): void {
  for (const p of pages) putPage(cpu.mem.pages, p);
}
