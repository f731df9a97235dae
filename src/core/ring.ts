/**
 * A wait-free single-producer / single-consumer ring of u32 handles (skb
 * offsets) in an arena region: how one CPU (worker) hands packets to
 * another. Every operation finishes in a bounded number of steps whatever
 * the other side does; nothing locks, nothing allocates on the packet path.
 *
 * Region layout (`ringRegionSpec(name, size)`, 64-byte aligned). `head` and
 * `tail` are free-running 32-bit counters (wrapping; `tail − head` is the
 * fill level), each on its own cache line so the two sides do not write the
 * same line:
 *
 * ```
 *  +0    head   i32  slots consumed so far        written by the consumer only
 *  +4    size   u32  slot count, a power of two   constant
 *  +8    magic  u32  "ring"                        constant
 *  +64   tail   i32  slots published so far        written by the producer only
 *  +128  pushed    f64  handles pushed              producer's counters
 *  +136  pushFull  f64  pushes that found too little room (short or zero push)
 *  +192  popped    f64  handles popped              consumer's counters
 *  +200  popEmpty  f64  pops that found the ring empty
 *  +256  slots  u32 × size, slot of counter c at c & (size − 1)
 * ```
 *
 * Publish order, in the style of padenot/ringbuf.js:
 *
 * ```
 *  producer                                    consumer
 *  h = Atomics.load(head)   (only when the      t = Atomics.load(tail)   (only when the
 *                            cached h says full)                          cached t says empty)
 *  slots[t .. t+k) = src    plain stores        dst = slots[h .. h+k)    plain loads
 *  Atomics.store(tail, t+k) publish ─────────►  (acquire: sees the slots)
 *  (acquire: slots free) ◄──────────────────── Atomics.store(head, h+k)  release the slots
 * ```
 *
 * `Atomics` operations are sequentially consistent, so the plain slot
 * stores before `Atomics.store(tail)` are visible to a consumer whose
 * `Atomics.load(tail)` returned that value, and the consumer's slot reads
 * are done before the producer can see the new `head` and overwrite them.
 * Each side keeps a cached copy of the other's counter in its handle and
 * refreshes it only when the ring looks full (producer) or empty (consumer),
 * so the common case touches no line the other side writes except the slots.
 *
 * A handle ({@link SkbRing}) belongs to one thread; the producer and the
 * consumer each attach their own. At most one thread pushes and one pops.
 *
 * @module
 */

import type { Arena, RegionSpec } from "../mm/arena.js";

const RING_MAGIC = 0x72696e67; // "ring"
/** Byte offset of `head` in the region. */
export const RING_HEAD = 0;
const RING_SIZE = 4;
const RING_MAGIC_OFF = 8;
/** Byte offset of `tail` in the region. */
export const RING_TAIL = 64;
const RING_PUSHED = 128;
const RING_PUSH_FULL = 136;
const RING_POPPED = 192;
const RING_POP_EMPTY = 200;
/** Byte offset of slot 0 in the region. */
export const RING_SLOTS = 256;
/** Largest ring: 2^24 slots (64 MiB). */
export const RING_MAX_SIZE = 1 << 24;

function checkSize(op: string, name: string, size: number): void {
  if (!Number.isInteger(size) || size < 1 || size > RING_MAX_SIZE || (size & (size - 1)) !== 0) {
    throw new RangeError(`${op}(${name}): size ${size} must be a power of two in 1..${RING_MAX_SIZE}`);
  }
}

/** The region to carve for a ring of `size` handles (pass it to `extraRegions` / `arenaCreate`). Cold. */
export function ringRegionSpec(name: string, size: number): RegionSpec {
  checkSize("ringRegionSpec", name, size);
  return { name, size: RING_SLOTS + size * 4, align: 64 };
}

/** One thread's handle on a ring. Fields are fixed at construction except the two cached counters. */
export class SkbRing {
  readonly name: string;
  /** Slot count (power of two). */
  readonly size: number;
  readonly mask: number;
  readonly i32: Int32Array;
  readonly u32: Uint32Array;
  readonly f64: Float64Array;
  /** i32 index of `head`. */
  readonly headIdx: number;
  /** i32 index of `tail`. */
  readonly tailIdx: number;
  /** u32 index of slot 0. */
  readonly slotIdx: number;
  /** f64 indices of the producer's counters. */
  readonly pushedIdx: number;
  readonly pushFullIdx: number;
  /** f64 indices of the consumer's counters. */
  readonly poppedIdx: number;
  readonly popEmptyIdx: number;
  /** Producer side: last `head` seen (never ahead of the real one). */
  cachedHead: number;
  /** Consumer side: last `tail` seen (never ahead of the real one). */
  cachedTail: number;

  /** Use {@link ringCreate} or {@link ringAttach}. */
  constructor(arena: Arena, name: string, offset: number, size: number) {
    this.name = name;
    this.size = size;
    this.mask = size - 1;
    this.i32 = arena.i32;
    this.u32 = arena.u32;
    this.f64 = arena.f64;
    this.headIdx = (offset + RING_HEAD) >>> 2;
    this.tailIdx = (offset + RING_TAIL) >>> 2;
    this.slotIdx = (offset + RING_SLOTS) >>> 2;
    this.pushedIdx = (offset + RING_PUSHED) >>> 3;
    this.pushFullIdx = (offset + RING_PUSH_FULL) >>> 3;
    this.poppedIdx = (offset + RING_POPPED) >>> 3;
    this.popEmptyIdx = (offset + RING_POP_EMPTY) >>> 3;
    this.cachedHead = Atomics.load(this.i32, this.headIdx);
    this.cachedTail = Atomics.load(this.i32, this.tailIdx);
  }
}

/**
 * Initialise the ring in region `name` (carved with {@link ringRegionSpec})
 * and return a handle: empty, counters zero. Call once, before any other
 * thread attaches. Cold; allocates the handle.
 */
export function ringCreate(arena: Arena, name: string): SkbRing {
  const r = arena.region(name);
  const size = (r.size - RING_SLOTS) >>> 2;
  if (r.size <= RING_SLOTS || (r.offset & 63) !== 0) {
    throw new RangeError(`ringCreate(${name}): region of ${r.size} bytes at ${r.offset} was not carved by ringRegionSpec`);
  }
  checkSize("ringCreate", name, size);
  arena.u8.fill(0, r.offset, r.offset + RING_SLOTS);
  arena.u32[(r.offset + RING_SIZE) >>> 2] = size;
  Atomics.store(arena.i32, (r.offset + RING_MAGIC_OFF) >>> 2, RING_MAGIC);
  return new SkbRing(arena, name, r.offset, size);
}

/** Map a ring another thread created (one handle per thread). Cold; allocates the handle. */
export function ringAttach(arena: Arena, name: string): SkbRing {
  const r = arena.region(name);
  if (r.size <= RING_SLOTS || Atomics.load(arena.i32, (r.offset + RING_MAGIC_OFF) >>> 2) !== RING_MAGIC) {
    throw new Error(`ringAttach(${name}): region is not an initialised ring (call ringCreate first)`);
  }
  const size = arena.u32[(r.offset + RING_SIZE) >>> 2] as number;
  checkSize("ringAttach", name, size);
  if (RING_SLOTS + size * 4 > r.size) throw new Error(`ringAttach(${name}): size ${size} does not fit its region`);
  return new SkbRing(arena, name, r.offset, size);
}

/**
 * Producer: push up to `n` handles from `src[off..off+n)`; returns how many
 * went in (fewer when the ring is short of room, 0 when full). One
 * `Atomics.store` per call, plus one `Atomics.load` of `head` only when the
 * cached copy says there is not enough room. Allocates nothing.
 */
export function ringPushBulk(r: SkbRing, src: Uint32Array, off: number, n: number): number {
  const i32 = r.i32;
  const tail = Atomics.load(i32, r.tailIdx);
  let room = r.size - ((tail - r.cachedHead) | 0);
  if (room < n) {
    r.cachedHead = Atomics.load(i32, r.headIdx);
    room = r.size - ((tail - r.cachedHead) | 0);
  }
  const k = Math.min(n, room);
  if (k < n) r.f64[r.pushFullIdx]++;
  if (k <= 0) return 0;
  const u32 = r.u32;
  const base = r.slotIdx;
  const mask = r.mask;
  for (let i = 0; i < k; i++) u32[base + ((tail + i) & mask)] = src[off + i] as number;
  Atomics.store(i32, r.tailIdx, (tail + k) | 0);
  r.f64[r.pushedIdx] += k;
  return k;
}

/** Producer: push one handle; false when the ring is full. Allocates nothing. */
export function ringPush(r: SkbRing, v: number): boolean {
  const i32 = r.i32;
  const tail = Atomics.load(i32, r.tailIdx);
  if (((tail - r.cachedHead) | 0) >= r.size) {
    r.cachedHead = Atomics.load(i32, r.headIdx);
    if (((tail - r.cachedHead) | 0) >= r.size) {
      r.f64[r.pushFullIdx]++;
      return false;
    }
  }
  r.u32[r.slotIdx + (tail & r.mask)] = v;
  Atomics.store(i32, r.tailIdx, (tail + 1) | 0);
  r.f64[r.pushedIdx]++;
  return true;
}

/**
 * Consumer: pop up to `n` handles into `dst[off..)`, oldest first; returns
 * how many (0 when empty, counted in popEmpty). One `Atomics.store` per
 * non-empty call, plus one `Atomics.load` of `tail` only when the cached
 * copy holds fewer than `n`. Allocates nothing.
 */
export function ringPopBulk(r: SkbRing, dst: Uint32Array, off: number, n: number): number {
  const i32 = r.i32;
  const head = Atomics.load(i32, r.headIdx);
  let avail = (r.cachedTail - head) | 0;
  if (avail < n) {
    r.cachedTail = Atomics.load(i32, r.tailIdx);
    avail = (r.cachedTail - head) | 0;
  }
  const k = Math.min(n, avail);
  if (k <= 0) {
    // n > 0 here means the tail was just re-read: the ring really is empty.
    if (n > 0) r.f64[r.popEmptyIdx]++;
    return 0;
  }
  const u32 = r.u32;
  const base = r.slotIdx;
  const mask = r.mask;
  for (let i = 0; i < k; i++) dst[off + i] = u32[base + ((head + i) & mask)] as number;
  Atomics.store(i32, r.headIdx, (head + k) | 0);
  r.f64[r.poppedIdx] += k;
  return k;
}

/** Consumer: pop one handle, or -1 when the ring is empty. Allocates nothing. */
export function ringPop(r: SkbRing): number {
  const i32 = r.i32;
  const head = Atomics.load(i32, r.headIdx);
  if (r.cachedTail === head) {
    r.cachedTail = Atomics.load(i32, r.tailIdx);
    if (r.cachedTail === head) {
      r.f64[r.popEmptyIdx]++;
      return -1;
    }
  }
  const v = r.u32[r.slotIdx + (head & r.mask)] as number;
  Atomics.store(i32, r.headIdx, (head + 1) | 0);
  r.f64[r.poppedIdx]++;
  return v;
}

/** Handles in the ring now (racy snapshot from either side). Allocates nothing. */
export function ringCount(r: SkbRing): number {
  return (Atomics.load(r.i32, r.tailIdx) - Atomics.load(r.i32, r.headIdx)) | 0;
}

/** Free slots now (racy snapshot). Allocates nothing. */
export function ringSpace(r: SkbRing): number {
  return r.size - ringCount(r);
}

/** Counters of a ring. */
export interface RingStats {
  name: string;
  size: number;
  /** Handles in the ring. */
  count: number;
  pushed: number;
  /** Push calls that could not push everything (ring full or short of room). */
  pushFull: number;
  popped: number;
  /** Pop calls that found the ring empty. */
  popEmpty: number;
}

/** Counter snapshot (allocates the result; exact once both sides stop). */
export function ringStats(r: SkbRing): RingStats {
  return {
    name: r.name,
    size: r.size,
    count: ringCount(r),
    pushed: r.f64[r.pushedIdx] as number,
    pushFull: r.f64[r.pushFullIdx] as number,
    popped: r.f64[r.poppedIdx] as number,
    popEmpty: r.f64[r.popEmptyIdx] as number,
  };
}
