/**
 * Building and allocating skbs (spec §2, §3): `__build_skb_around` and its
 * family, `__alloc_skb` with its FCLONE / RX / NAPI flags, and the
 * driver-facing `netdev_alloc_skb`, `napi_alloc_skb`, `napi_get_frags`.
 *
 * Where a head comes from:
 *
 * | entry point                   | shell from                      | data from                |
 * |-------------------------------|---------------------------------|--------------------------|
 * | buildSkb / __buildSkb         | slab (never the cache)          | caller                   |
 * | napiBuildSkb                  | NAPI cache (refill allowed)     | caller                   |
 * | allocSkb(NAPI)                | NAPI cache, NULL if it fails    | kmalloc / small-head     |
 * | allocSkb(0)                   | slab (6.19: cached shell first) | kmalloc / small-head     |
 * | allocSkb(FCLONE)              | fclone slab                     | kmalloc / small-head     |
 * | netdevAllocSkb                | slab                            | page frag, or allocSkb   |
 * | napiAllocSkb / napiGetFrags   | NAPI cache                      | page frag, or allocSkb   |
 *
 * @module
 */

import { kmallocSlab } from "../mm/kmalloc.js";
import { pageFragAlloc, pageFragFree } from "../mm/page-frag.js";
import { kmemCacheAlloc, kmemCacheFree, kmemCacheObjIndex } from "../mm/slab.js";
import { hex, SkbError, skbZeroHeadForBuild } from "./access.js";
import type { SkbCpu } from "./cpu.js";
import {
  FCLONE_REF,
  FCLONE_SKB2,
  GRO_MAX_HEAD,
  NET_IP_ALIGN,
  NET_SKB_PAD,
  NUMA_NO_NODE,
  SHINFO_DATAREF,
  SHINFO_SIZE,
  SKB_ALLOC_CPU,
  SKB_ALLOC_FCLONE,
  SKB_ALLOC_NAPI,
  SKB_DATA,
  SKB_DEV,
  SKB_END,
  SKB_FCLONE_CLONE,
  SKB_FCLONE_ORIG,
  SKB_FLAGS,
  SKB_HEAD,
  SKB_HEADER_UNSET,
  SKB_HEAD_OBJ_SIZE,
  SKB_MAC_HEADER,
  SKB_NAPI_ID,
  SKB_SMALL_HEAD_CACHE_SIZE,
  SKB_TAIL,
  SKB_TRANSPORT_HEADER,
  SKB_TRUESIZE,
  SKB_USERS,
  SKB_QUEUE_MAPPING,
  SKB_VLAN_TCI,
  SKB_NETWORK_HEADER,
  SKBF_FCLONE_SHIFT,
  SKBF_HEAD_FRAG,
  skbDataAlign,
  skbHeadAlign,
} from "./layout.js";
import { napiSkbCacheGet } from "./napi-cache.js";

/** The part of `struct napi_struct` the skb layer uses (the core layer's NAPI implements it). */
export interface NapiSkbOwner {
  /** Device index stamped on allocated skbs. */
  dev: number;
  /** NAPI id stamped by napiGetFrags. */
  napiId: number;
  /** The reusable frags-API skb (`napi->skb`), 0 when none. */
  skb: number;
}

/**
 * `__build_skb_around`: initialise a zeroed shell around `data` (`size`
 * bytes including the shared info at the end). Allocates nothing.
 */
export function __buildSkbAround(cpu: SkbCpu, skb: number, data: number, size: number): void {
  buildAround(cpu, skb, data, size, 0);
}

/**
 * __build_skb_around plus the flags byte in the same pass: `flags` lands in
 * the (zeroed) word holding queue_mapping | flags | active_extensions, so
 * head_frag costs no separate read-modify-write.
 */
function buildAround(cpu: SkbCpu, skb: number, data: number, size: number, flags: number): void {
  const u32 = cpu.u32;
  const w = skb >>> 2;
  const usable = size - SHINFO_BYTES;
  u32[w + W_TRUESIZE] = size + HEAD_OBJ_BYTES;
  u32[w + W_USERS] = 1;
  u32[w + W_HEAD] = data;
  u32[w + W_DATA] = data;
  u32[w + W_TAIL] = 0;
  u32[w + W_END] = usable;
  // Little-endian pairs of u16 fields (the shell was zeroed):
  // [vlan_tci | mac_header = ~0] and [network_header = 0 | transport_header = ~0].
  u32[w + W_VLAN_TCI_MAC] = 0xffff0000;
  u32[w + W_NET_TRANSPORT] = 0xffff0000;
  u32[w + W_ALLOC_CPU] = cpu.id;
  u32[w + W_FLAGS] = flags << 16;
  // Shared info: clear everything before dataref, then dataref = 1. Heads
  // are 8-byte aligned but for odd page fragments; that case is out of line
  // so the hot builder stays small enough for V8 to inline it whole.
  const sh = data + usable;
  if ((sh & 7) === 0) {
    const f = cpu.f64;
    const q = sh >>> 3;
    f[q] = 0;
    f[q + 1] = 0;
    f[q + 2] = 0;
    f[q + 3] = 0;
    u32[(sh >>> 2) + W_DATAREF] = 1;
  } else {
    zeroShinfoUnaligned(u32, sh);
  }
}

/** Shared info at a 4- but not 8-byte aligned offset: clear to dataref, dataref = 1. */
function zeroShinfoUnaligned(u32: Uint32Array, sh: number): void {
  const q = sh >>> 2;
  for (let i = 0; i < W_DATAREF; i++) u32[q + i] = 0;
  u32[q + W_DATAREF] = 1;
}

// Word indices (and the two sizes) buildAround uses. Each is a numeric
// literal, so the build writes its reads as literals (one add-immediate per
// store, and bytecode small enough for V8 to inline the builder whole);
// layout.ts's computed values are checked against them at load.
const W_TRUESIZE = 40;
const W_USERS = 41;
const W_HEAD = 38;
const W_DATA = 39;
const W_TAIL = 36;
const W_END = 37;
const W_VLAN_TCI_MAC = 27;
const W_NET_TRANSPORT = 26;
const W_ALLOC_CPU = 25;
const W_FLAGS = 24;
const W_DATAREF = 8;
const SHINFO_BYTES = 320;
const HEAD_OBJ_BYTES = 192;
if (
  W_TRUESIZE !== SKB_TRUESIZE >>> 2 ||
  W_USERS !== SKB_USERS >>> 2 ||
  W_HEAD !== SKB_HEAD >>> 2 ||
  W_DATA !== SKB_DATA >>> 2 ||
  W_TAIL !== SKB_TAIL >>> 2 ||
  W_END !== SKB_END >>> 2 ||
  W_VLAN_TCI_MAC !== SKB_VLAN_TCI >>> 2 ||
  W_NET_TRANSPORT !== SKB_NETWORK_HEADER >>> 2 ||
  W_ALLOC_CPU !== SKB_ALLOC_CPU >>> 2 ||
  W_FLAGS !== SKB_QUEUE_MAPPING >>> 2 ||
  W_DATAREF !== SHINFO_DATAREF >>> 2 ||
  SHINFO_BYTES !== SHINFO_SIZE ||
  HEAD_OBJ_BYTES !== SKB_HEAD_OBJ_SIZE
) {
  throw new Error("skb layout: buildAround's word indices are out of step with layout.ts");
}
if (
  SKB_MAC_HEADER !== SKB_VLAN_TCI + 2 ||
  SKB_FLAGS !== SKB_QUEUE_MAPPING + 2 ||
  (SKB_QUEUE_MAPPING & 3) !== 0 ||
  SKB_TRANSPORT_HEADER !== SKB_NETWORK_HEADER + 2 ||
  (SKB_VLAN_TCI & 3) !== 0 ||
  (SKB_NETWORK_HEADER & 3) !== 0 ||
  SHINFO_DATAREF !== 32 ||
  SKB_HEADER_UNSET !== 0xffff ||
  new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1
) {
  throw new Error("skb layout: __buildSkbAround assumes little-endian u16 pairs (vlan_tci|mac, network|transport)");
}

function checkBuildArgs(op: string, cpu: SkbCpu, data: number, fragSize: number): number {
  if (!Number.isInteger(data) || !Number.isInteger(fragSize) || data < 0 || fragSize < 0) {
    throw new RangeError(`${op}: data ${data} and fragSize ${fragSize} must be non-negative integers`);
  }
  if (fragSize === 0) {
    // kmalloc'ed head: discover the usable size (ksize); data must be an object start.
    const s = cpu.mm.cachesById[cpu.mm.pageOwner[data >>> 12] as number];
    if (s === undefined || data === 0 || kmemCacheObjIndex(s, data) < 0) {
      throw new RangeError(`${op}: data ${hex(data)} is not the start of a slab object; pass its fragSize`);
    }
    return s.objSize;
  }
  if (data === 0 || (data & 3) !== 0) throw new RangeError(`${op}: data ${hex(data)} must be a non-NULL 4-byte aligned offset`);
  if (fragSize < SHINFO_SIZE + 4 || (fragSize & 3) !== 0) {
    throw new RangeError(`${op}: fragSize ${fragSize} too small or unaligned (needs >= ${SHINFO_SIZE + 4}, multiple of 4, shared info included)`);
  }
  if (data + fragSize > cpu.arena.size) throw new RangeError(`${op}: data ${hex(data)} + ${fragSize} is past the arena`);
  return fragSize;
}

/** Validate builder arguments (debug mode, or fragSize 0 which needs a lookup); returns the buffer size. */
function buildSize(op: string, cpu: SkbCpu, data: number, fragSize: number): number {
  return fragSize === 0 || cpu.debug === true ? checkBuildArgs(op, cpu, data, fragSize) : fragSize;
}

/**
 * `__build_skb`: a slab shell around `data` (never the NAPI cache).
 * `fragSize` 0 means `data` is a kmalloc object whose size is discovered.
 * Returns 0 when the slab is exhausted; `data` is then still the caller's.
 * Like the kernel, arguments are trusted on the fast path; debug mode
 * (SKBUFF_DEBUG) checks them.
 */
export function __buildSkb(cpu: SkbCpu, data: number, fragSize: number): number {
  const size = buildSize("buildSkb", cpu, data, fragSize);
  const skb = kmemCacheAlloc(cpu.headCache);
  if (skb === 0) return 0;
  skbZeroHeadForBuild(cpu, skb);
  buildAround(cpu, skb, data, size, 0);
  return skb;
}

/** `build_skb`: like __buildSkb; a non-zero fragSize marks the head as a page fragment. */
export function buildSkb(cpu: SkbCpu, data: number, fragSize: number): number {
  const size = buildSize("buildSkb", cpu, data, fragSize);
  const skb = kmemCacheAlloc(cpu.headCache);
  if (skb === 0) return 0;
  skbZeroHeadForBuild(cpu, skb);
  buildAround(cpu, skb, data, size, fragSize !== 0 ? SKBF_HEAD_FRAG : 0);
  return skb;
}

/** `build_skb_around`: initialise a caller-supplied, already zeroed shell (0 in, 0 out). */
export function buildSkbAround(cpu: SkbCpu, skb: number, data: number, fragSize: number): number {
  if (skb === 0) return 0;
  const size = checkBuildArgs("buildSkbAround", cpu, data, fragSize);
  __buildSkbAround(cpu, skb, data, size);
  if (fragSize !== 0) cpu.u8[skb + SKB_FLAGS] = (cpu.u8[skb + SKB_FLAGS] as number) | SKBF_HEAD_FRAG;
  return skb;
}

/** `__napi_build_skb`: cached shell (refill allowed), zeroed to tail, built around data. */
export function __napiBuildSkb(cpu: SkbCpu, data: number, fragSize: number): number {
  const size = buildSize("napiBuildSkb", cpu, data, fragSize);
  const skb = napiSkbCacheGet(cpu, true);
  if (skb === 0) return 0;
  skbZeroHeadForBuild(cpu, skb);
  buildAround(cpu, skb, data, size, 0);
  return skb;
}

/**
 * `napi_build_skb`: the NAPI-context replacement for build_skb: the shell
 * comes from this CPU's head cache. Returns 0 when neither the cache nor a
 * refill could provide one; `data` then still belongs to the caller.
 * Arguments are trusted (debug mode checks them). Allocates no JS objects.
 */
export function napiBuildSkb(cpu: SkbCpu, data: number, fragSize: number): number {
  // buildSize written out: this builder is inlined into every driver's RX loop.
  const size = fragSize === 0 || cpu.debug === true ? checkBuildArgs("napiBuildSkb", cpu, data, fragSize) : fragSize;
  // napiSkbCacheGet's fast path written out (the pop; the rest is the same
  // call). An imported function costs, at every call V8 inlines, a load and
  // check of its module binding, which V8 cannot hoist out of a loop that
  // also makes calls it cannot see through (the refills' locked slab calls):
  // written out, a head costs ~9 % less per alloc+free pair and 2-10 % less
  // in bursts of 64 (bench alloc; two builds alternating in one process).
  const n = cpu.skbCount - 1;
  let skb: number;
  if (n >= 0 && cpu.cacheFast === true) {
    cpu.skbCount = n;
    skb = cpu.skbCache[n] as number;
  } else {
    skb = napiSkbCacheGet(cpu, true);
    if (skb === 0) return 0;
  }
  skbZeroHeadForBuild(cpu, skb);
  buildAround(cpu, skb, data, size, fragSize !== 0 ? SKBF_HEAD_FRAG : 0);
  return skb;
}

/**
 * `kmalloc_reserve`: a data buffer for `size` bytes plus shared info.
 * 5.12: kmalloc(SKB_DATA_ALIGN(size) + shinfo), real size = ksize. 6.19:
 * SKB_HEAD_ALIGN(size) from skb_small_head_cache when it fits, else the
 * rounded kmalloc class. Stores the usable object size in
 * `cpu.lastReserveSize`; returns 0 on failure.
 */
export function kmallocReserve(cpu: SkbCpu, size: number): number {
  const want = skbHeadAlign(size);
  if (cpu.profile.smallHeadCache && want <= SKB_SMALL_HEAD_CACHE_SIZE) {
    cpu.lastReserveSize = SKB_SMALL_HEAD_CACHE_SIZE;
    return kmemCacheAlloc(cpu.smallHeadCache);
  }
  const s = kmallocSlab(cpu.kmalloc, want);
  if (s === undefined) return 0;
  cpu.lastReserveSize = s.objSize;
  return kmemCacheAlloc(s);
}

/**
 * `__alloc_skb(size, gfp, flags, node)`: an skb with at least `size` bytes
 * of tailroom and no headroom. Flags: SKB_ALLOC_FCLONE (fast-clone pair),
 * SKB_ALLOC_RX, SKB_ALLOC_NAPI (shell from the NAPI cache; only without
 * FCLONE and on the local / any node; NULL when the cache cannot serve).
 * Returns 0 on any allocation failure. Allocates no JS objects.
 */
export function allocSkb(cpu: SkbCpu, size: number, flags = 0, node = NUMA_NO_NODE): number {
  if (!(size >= 0) || size > 0x7fffffff) throw new RangeError(`allocSkb: bad size ${size}`);
  const fclone = (flags & SKB_ALLOC_FCLONE) !== 0;
  const localNode = node === NUMA_NO_NODE || node === 0;
  let skb: number;
  if (fclone) {
    skb = kmemCacheAlloc(cpu.fcloneCache);
  } else if ((flags & SKB_ALLOC_NAPI) !== 0 && localNode) {
    skb = napiSkbCacheGet(cpu, true);
  } else {
    skb = 0;
    if (cpu.profile.allocConsumeOnly === true && localNode && cpu.irqsDisabled === false) skb = napiSkbCacheGet(cpu, false);
    if (skb === 0) skb = kmemCacheAlloc(cpu.headCache);
  }
  if (skb === 0) return 0;
  const data = kmallocReserve(cpu, skbDataAlign(size));
  if (data === 0) {
    // Back to the slab it nominally came from, even if it was a cached shell.
    kmemCacheFree(fclone ? cpu.fcloneCache : cpu.headCache, skb);
    return 0;
  }
  skbZeroHeadForBuild(cpu, skb);
  __buildSkbAround(cpu, skb, data, cpu.lastReserveSize);
  if (fclone) {
    cpu.u8[skb + SKB_FLAGS] = (cpu.u8[skb + SKB_FLAGS] as number) | (SKB_FCLONE_ORIG << SKBF_FCLONE_SHIFT);
    Atomics.store(cpu.i32, (skb + FCLONE_REF) >>> 2, 1);
    if (cpu.profile.presetFcloneCompanion) {
      cpu.u8[skb + FCLONE_SKB2 + SKB_FLAGS] = SKB_FCLONE_CLONE << SKBF_FCLONE_SHIFT;
    }
  }
  return skb;
}

/** `skb_reserve` without checks, for the builders below. */
function reserve(cpu: SkbCpu, skb: number, n: number): void {
  cpu.u32[(skb + SKB_DATA) >>> 2] = (cpu.u32[(skb + SKB_DATA) >>> 2] as number) + n;
  cpu.u32[(skb + SKB_TAIL) >>> 2] = (cpu.u32[(skb + SKB_TAIL) >>> 2] as number) + n;
}

/**
 * `__netdev_alloc_skb(dev, len)`: an RX skb with NET_SKB_PAD headroom.
 * Small (≤ profile threshold) and page-sized lengths use allocSkb(RX);
 * others a page fragment (netdev_alloc_cache when IRQs are off, else the
 * NAPI one) and a SLAB shell — never the NAPI head cache. 0 on failure.
 */
export function netdevAllocSkb(cpu: SkbCpu, dev: number, len: number): number {
  len += NET_SKB_PAD;
  let skb: number;
  if (len <= cpu.profile.smallAllocMax || len > cpu.profile.largeAllocMin) {
    skb = allocSkb(cpu, len, 0x02 /* SKB_ALLOC_RX */);
    if (skb === 0) return 0;
  } else {
    const sz = skbHeadAlign(len);
    const data = pageFragAlloc(cpu.irqsDisabled ? cpu.netdevFrag : cpu.napiFrag, sz);
    if (data === 0) return 0;
    skb = __buildSkb(cpu, data, sz);
    if (skb === 0) {
      pageFragFree(cpu.fragPages, data);
      return 0;
    }
    cpu.u8[skb + SKB_FLAGS] = (cpu.u8[skb + SKB_FLAGS] as number) | SKBF_HEAD_FRAG;
  }
  reserve(cpu, skb, NET_SKB_PAD);
  cpu.u32[(skb + SKB_DEV) >>> 2] = dev;
  return skb;
}

/**
 * `napi_alloc_skb(napi, len)`: an RX skb for NAPI context with
 * NET_SKB_PAD + NET_IP_ALIGN headroom whose shell ALWAYS comes from the NAPI
 * cache: small and page-sized lengths via allocSkb(RX | NAPI) with a kmalloc
 * head, others a page fragment from napi_alloc_cache. 0 on failure.
 */
export function napiAllocSkb(cpu: SkbCpu, napi: NapiSkbOwner, len: number): number {
  len += NET_SKB_PAD + NET_IP_ALIGN;
  let skb: number;
  if (len <= cpu.profile.smallAllocMax || len > cpu.profile.largeAllocMin) {
    skb = allocSkb(cpu, len, 0x02 | SKB_ALLOC_NAPI);
    if (skb === 0) return 0;
  } else {
    const sz = skbHeadAlign(len);
    const data = pageFragAlloc(cpu.napiFrag, sz);
    if (data === 0) return 0;
    skb = __napiBuildSkb(cpu, data, sz);
    if (skb === 0) {
      pageFragFree(cpu.fragPages, data);
      return 0;
    }
    cpu.u8[skb + SKB_FLAGS] = (cpu.u8[skb + SKB_FLAGS] as number) | SKBF_HEAD_FRAG;
  }
  reserve(cpu, skb, NET_SKB_PAD + NET_IP_ALIGN);
  cpu.u32[(skb + SKB_DEV) >>> 2] = napi.dev;
  return skb;
}

/**
 * `napi_get_frags`: the NAPI instance's reusable skb for the frags API;
 * allocated with napiAllocSkb(GRO_MAX_HEAD) (shell from the NAPI cache,
 * kmalloc head) when absent, and stamped with the NAPI id. 0 on failure.
 */
export function napiGetFrags(cpu: SkbCpu, napi: NapiSkbOwner): number {
  let skb = napi.skb;
  if (skb === 0) {
    skb = napiAllocSkb(cpu, napi, GRO_MAX_HEAD);
    if (skb !== 0) {
      napi.skb = skb;
      cpu.u32[(skb + SKB_NAPI_ID) >>> 2] = napi.napiId;
    }
  }
  return skb;
}

/** Throw for a builder misuse (exported for the object view). */
export function skbBuildError(op: string, skb: number, msg: string): SkbError {
  return new SkbError(op, skb, msg);
}
