/**
 * cpumap: redirect packets to another CPU (worker) as bare frames, and build
 * their heads there in batches (kernel/bpf/cpumap.c, spec §6.5).
 *
 * ```
 *  CPU A (producer)                                  CPU B (consumer, "kthread")
 *  cpumapEnqueue(skb):                               cpumapPoll(budget):
 *    write an xdp_frame into the headroom              pop up to CPUMAP_BATCH (8) frames
 *    free the shell into A's NAPI cache                ONE napiSkbCacheGetBulk(8)   (bulk on, 6.15+)
 *    stage the buffer address (8 per flush)            or ONE zeroing kmemCacheAllocBulk(8)
 *                                                      from the shared slab  (bulk off, ≤ 6.14)
 *  cpumapFlush(): ONE ring push of the batch,          buildSkbAround, hand to B's receive hook
 *    wake B if it sleeps                               empty ring: Atomics.wait on the doorbell
 * ```
 *
 * The frame descriptor lives in the buffer itself, in front of the packet,
 * like the kernel's `struct xdp_frame` (so the ring carries one u32 per
 * packet):
 *
 * ```
 *  head +0  len       u32   packet bytes
 *       +4  headroom  u32   data − head
 *       +8  frameSize u32   buffer size incl. shared info (frag_size)
 *       +12 flags     u32   bit 0 pp_recycle, bits 8..15 ip_summed
 *  head + headroom: the packet
 * ```
 *
 * The ring is single-producer / single-consumer: one cpumap entry per
 * (source CPU, target CPU) pair. Pages of page-pool frames go back to their
 * pool through its shared ring when the remote CPU frees them.
 *
 * @module
 */

import type { Arena, RegionSpec } from "../mm/arena.js";
import { buildSkbAround } from "../skb/alloc.js";
import { kmemCacheAllocBulk, kmemCacheFreeBulk } from "../mm/slab.js";
import type { SkbCpu } from "../skb/cpu.js";
import { SKB_DROP_REASON } from "../skb/drop-reason.js";
import { skbPagePut, skbReleaseHeadState } from "../skb/free.js";
import {
  CHECKSUM_PARTIAL,
  SHINFO_FRAG_LIST,
  SHINFO_NR_FRAGS,
  SHINFO_SIZE,
  SKB_DATA,
  SKB_DATA_LEN,
  SKB_END,
  SKB_FLAGS,
  SKB_HEAD,
  SKB_IP_SUMMED,
  SKB_LEN,
  SKB_TAIL,
  SKB_USERS,
  SKBF_FCLONE_MASK,
  SKBF_HEAD_FRAG,
  SKBF_PP_RECYCLE,
} from "../skb/layout.js";
import { napiSkbCacheGetBulk, napiSkbCachePut } from "../skb/napi-cache.js";
import { skbCloned } from "../skb/access.js";
import { ringAttach, ringCount, ringCreate, ringPopBulk, ringPushBulk, ringRegionSpec, type SkbRing } from "../core/ring.js";

/** Kernel CPUMAP_BATCH: frames built per round on the target CPU. */
export const CPUMAP_BATCH = 8;
/** Kernel CPU_MAP_BULK_SIZE: frames staged on the source CPU before one ring push. */
export const CPU_MAP_BULK_SIZE = 8;
/** Bytes of the in-buffer frame descriptor. */
export const XDP_FRAME_SIZE = 16;

const DOORBELL = 0; // i32 in the control block: bumps on every push that may wake the consumer
const SLEEPING = 4; // i32: 1 while the consumer waits

/** Regions of one cpumap entry: the ring and a 64-byte control block. */
export function cpumapRegionSpecs(name: string, size = 2048): RegionSpec[] {
  return [ringRegionSpec(`cpumap:${name}`, size), { name: `cpumapctl:${name}`, size: 64, align: 64 }];
}

/** Receive hook on the target CPU. */
export type CpumapRecvFn = (cpu: SkbCpu, skb: number) => void;

/** One side's handle on a cpumap entry (producer or consumer). */
export class Cpumap {
  readonly ring: SkbRing;
  readonly ctl: number;
  readonly i32: Int32Array;
  /** Producer: staged buffer addresses. Consumer: popped addresses. */
  readonly bq: Uint32Array;
  bqCount = 0;
  /** Consumer: heads for one batch. */
  readonly heads: Uint32Array;
  /**
   * Consumer: heads per batch from the NAPI cache with napiSkbCacheGetBulk
   * (true, 6.15+ `napi_skb_cache_get_bulk`) or from the shared head slab with
   * one zeroing kmemCacheAllocBulk (false, the ≤ 6.14 kthread's
   * `kmem_cache_alloc_bulk(__GFP_ZERO)`: all or nothing).
   */
  bulk = true;
  recv: CpumapRecvFn | null = null;
  /** Counters. */
  enqueued = 0;
  notFrame = 0;
  fullDrops = 0;
  received = 0;
  noHeadDrops = 0;
  bulkCalls = 0;
  wakeups = 0;

  constructor(arena: Arena, ring: SkbRing, ctl: number) {
    this.ring = ring;
    this.ctl = ctl;
    this.i32 = arena.i32;
    this.bq = new Uint32Array(Math.max(CPU_MAP_BULK_SIZE, CPUMAP_BATCH));
    this.heads = new Uint32Array(CPUMAP_BATCH);
  }
}

/** Initialise the entry (once, any thread) and return a handle. */
export function cpumapCreate(arena: Arena, name: string): Cpumap {
  const ctl = arena.region(`cpumapctl:${name}`).offset;
  arena.i32.fill(0, ctl >>> 2, (ctl + 64) >>> 2);
  return new Cpumap(arena, ringCreate(arena, `cpumap:${name}`), ctl);
}

/** Map an entry created elsewhere (each side attaches its own handle). */
export function cpumapAttach(arena: Arena, name: string): Cpumap {
  return new Cpumap(arena, ringAttach(arena, `cpumap:${name}`), arena.region(`cpumapctl:${name}`).offset);
}

/**
 * Producer: redirect `skb` to the entry's CPU. Linear page-fragment skbs
 * become frames (shell freed into this CPU's cache); anything else is
 * dropped as not redirectable (counted), as XDP_REDIRECT only takes frames.
 * Frames are staged and pushed 8 at a time; call cpumapFlush at the end of
 * the poll. Allocates nothing.
 */
export function cpumapEnqueue(cpu: SkbCpu, m: Cpumap, skb: number): boolean {
  const u8 = cpu.u8;
  const u32 = cpu.u32;
  const f = u8[skb + SKB_FLAGS] as number;
  const head = u32[(skb + SKB_HEAD) >>> 2] as number;
  const data = u32[(skb + SKB_DATA) >>> 2] as number;
  const sh = head + (u32[(skb + SKB_END) >>> 2] as number);
  if (
    (f & (SKBF_HEAD_FRAG | SKBF_FCLONE_MASK)) !== SKBF_HEAD_FRAG ||
    (u32[(skb + SKB_DATA_LEN) >>> 2] as number) !== 0 ||
    data - head < XDP_FRAME_SIZE ||
    (u8[skb + SKB_IP_SUMMED] as number) === CHECKSUM_PARTIAL ||
    Atomics.load(cpu.i32, (skb + SKB_USERS) >>> 2) !== 1 ||
    skbCloned(cpu, skb) ||
    (u8[sh + SHINFO_NR_FRAGS] as number) !== 0 ||
    (u32[(sh + SHINFO_FRAG_LIST) >>> 2] as number) !== 0
  ) {
    m.notFrame++;
    return false;
  }
  const w = head >>> 2;
  u32[w] = u32[(skb + SKB_LEN) >>> 2] as number;
  u32[w + 1] = data - head;
  u32[w + 2] = (u32[(skb + SKB_END) >>> 2] as number) + SHINFO_SIZE;
  u32[w + 3] = ((f & SKBF_PP_RECYCLE) !== 0 ? 1 : 0) | ((u8[skb + SKB_IP_SUMMED] as number) << 8);
  skbReleaseHeadState(cpu, skb);
  napiSkbCachePut(cpu, skb);
  m.bq[m.bqCount++] = head;
  m.enqueued++;
  if (m.bqCount === CPU_MAP_BULK_SIZE) cpumapFlush(cpu, m);
  return true;
}

/** Producer: push the staged frames (bq_flush_to_queue); frames that find no room are dropped and counted. */
export function cpumapFlush(cpu: SkbCpu, m: Cpumap): void {
  const n = m.bqCount;
  if (n === 0) return;
  m.bqCount = 0;
  const k = ringPushBulk(m.ring, m.bq, 0, n);
  for (let i = k; i < n; i++) {
    const head = m.bq[i] as number;
    skbPagePut(cpu, head, ((cpu.u32[(head + 12) >>> 2] as number) & 1) === 1);
    m.fullDrops++;
    cpu.drops[SKB_DROP_REASON.CPU_BACKLOG]++;
  }
  if (k > 0) {
    Atomics.add(m.i32, (m.ctl + DOORBELL) >>> 2, 1);
    if (Atomics.load(m.i32, (m.ctl + SLEEPING) >>> 2) === 1) Atomics.notify(m.i32, (m.ctl + DOORBELL) >>> 2, 1);
  }
}

/**
 * Consumer: build and deliver up to `budget` frames, CPUMAP_BATCH at a time.
 * Returns how many were taken off the ring. Allocates nothing.
 */
export function cpumapPoll(cpu: SkbCpu, m: Cpumap, budget: number): number {
  const u32 = cpu.u32;
  const recv = m.recv as CpumapRecvFn;
  let done = 0;
  while (done < budget) {
    const want = Math.min(CPUMAP_BATCH, budget - done);
    const n = ringPopBulk(m.ring, m.bq, 0, want);
    if (n === 0) break;
    done += n;
    let got: number;
    if (m.bulk) {
      got = napiSkbCacheGetBulk(cpu, m.heads, 0, n);
    } else {
      got = kmemCacheAllocBulk(cpu.headCache, n, m.heads, 0, true);
      // 6.14: anything short of all of them drops the whole batch.
      if (got !== n && got !== 0) {
        kmemCacheFreeBulk(cpu.headCache, got, m.heads, 0);
        got = 0;
      }
    }
    m.bulkCalls++;
    for (let i = 0; i < n; i++) {
      const head = m.bq[i] as number;
      const w = head >>> 2;
      const len = u32[w] as number;
      const headroom = u32[w + 1] as number;
      const size = u32[w + 2] as number;
      const flags = u32[w + 3] as number;
      const skb = i < got ? (m.heads[i] as number) : 0;
      if (skb !== 0) buildSkbAround(cpu, skb, head, size);
      if (skb === 0) {
        skbPagePut(cpu, head, (flags & 1) === 1);
        m.noHeadDrops++;
        cpu.drops[SKB_DROP_REASON.NOMEM]++;
        continue;
      }
      u32[(skb + SKB_DATA) >>> 2] = head + headroom;
      u32[(skb + SKB_TAIL) >>> 2] = headroom + len;
      u32[(skb + SKB_LEN) >>> 2] = len;
      if ((flags & 1) === 1) cpu.u8[skb + SKB_FLAGS] = (cpu.u8[skb + SKB_FLAGS] as number) | SKBF_PP_RECYCLE;
      cpu.u8[skb + SKB_IP_SUMMED] = (flags >>> 8) & 0xff;
      m.received++;
      recv(cpu, skb);
    }
  }
  return done;
}

/**
 * Consumer: sleep until the producer rings the doorbell or `timeoutMs`
 * passes (Atomics.wait; worker threads only). Returns immediately when
 * frames are already queued. Cold relative to the packet path.
 */
export function cpumapWait(m: Cpumap, timeoutMs: number): void {
  const bell = (m.ctl + DOORBELL) >>> 2;
  const seen = Atomics.load(m.i32, bell);
  Atomics.store(m.i32, (m.ctl + SLEEPING) >>> 2, 1);
  // Re-check after announcing the sleep: a push in between would otherwise be missed.
  if (ringCount(m.ring) === 0) Atomics.wait(m.i32, bell, seen, timeoutMs);
  Atomics.store(m.i32, (m.ctl + SLEEPING) >>> 2, 0);
  m.wakeups++;
}

