/**
 * IPv4 reassembly (net/ipv4/ip_fragment.c + inet_fragment.c), per CPU.
 *
 * Queues are keyed by (saddr, daddr, id, protocol) and live in preallocated
 * typed arrays: a bounded number of slots, a chained hash over them, and a
 * timer list ordered by deadline. Fragments are the skbs themselves, kept
 * as the kernel keeps them: a sorted list of *runs* (maximal chains of
 * adjacent fragments, linked through `FRAG_CB->next_frag`), so the common
 * in-order case appends in O(1).
 *
 * ```
 *  queue q ──firstRun──▶ [run 0..1480: skbA ─next_frag─▶ skbB] ──next_run──▶ [run 2960..: skbC] ...
 *          ──lastRunHead / tail (fragments_tail)──▶ last run / last fragment
 *  skb->cb[24..40): next_frag (u32)  frag_run_len (u32, run heads)  ip_defrag_offset (u32)  next_run (u32, run heads)
 *  timer list: qTimerPrev/Next, ascending deadline (creation + ipfrag_time, re-armed by reinit)
 * ```
 *
 * Kernel behaviour kept: the memory limit (`ipfrag_high_thresh`, 4 MiB of
 * truesize + per-queue overhead; above it every new fragment is refused,
 * the `ipfrag_low_thresh` evictor is gone since 4.17 so that value is only
 * kept for configuration parity), `ipfrag_time` (30 s; `now` in ms from the
 * caller, or an injectable clock), `ipfrag_max_dist` (64, per-source fragment counters), RFC 5722
 * overlap handling (an overlapping fragment destroys the whole queue;
 * a fragment wholly inside an existing run is a duplicate and only it is
 * dropped), the final-fragment consistency checks, ECN combination
 * (RFC 3168 5.3), the 65535-byte limit, DF / frag_max_size propagation.
 *
 * Result shape: the reassembled skb is the first fragment with the other
 * fragments chained on its `frag_list` (like the kernel; nothing is copied
 * and no JS object is created). Its data and network header are at the IP
 * header, tot_len / frag_off / checksum are rewritten, the transport header
 * follows the IP header; IPCB frag_max_size is the largest fragment and
 * IPCB flags carry IPSKB_IGNORE_DF (conntrack's `skb->ignore_df = 1`) and,
 * when the largest fragment had DF, IPSKB_FRAG_PMTU — so ipFragment
 * refragments it to at most frag_max_size, keeping DF.
 * Reach the payload with skbCopyBits / skbChecksum / pskbMayPull.
 *
 * Differences: no coalescing of fragment heads (`skb_try_coalesce`); the
 * timers are lazy (expired queues are reaped at the next ipDefrag or
 * ipFragExpire call, with the deadline semantics of the kernel's timer);
 * ICMP "fragment reassembly time exceeded" is left to an optional hook;
 * overlap / corrupt-queue kills drop the queued fragments as NOT_SPECIFIED
 * (the kernel counts them as consumed) and duplicates as NOT_SPECIFIED
 * (the kernel's DUP_FRAG is not in SKB_DROP_REASON). Not thread-safe: one
 * context per CPU, like the rest of the per-CPU state.
 *
 * @module
 */

import { be16, be32s, skbNetworkHeader } from "../skb/access.js";
import { skbUnclone } from "../skb/clone.js";
import type { SkbCpu } from "../skb/cpu.js";
import { __skbPush, pskbPull } from "../skb/data.js";
import { SKB_DROP_REASON } from "../skb/drop-reason.js";
import { kfreeSkbReason } from "../skb/free.js";
import {
  CHECKSUM_COMPLETE,
  CHECKSUM_NONE,
  CHECKSUM_UNNECESSARY,
  SHINFO_FRAG_LIST,
  SKB_CB,
  SKB_CSUM,
  SKB_DATA,
  SKB_DATA_LEN,
  SKB_DEV,
  SKB_END,
  SKB_HEAD,
  SKB_IP_SUMMED,
  SKB_LEN,
  SKB_NETWORK_HEADER,
  SKB_NEXT,
  SKB_TRANSPORT_HEADER,
  SKB_TRUESIZE,
} from "../skb/layout.js";
import { csumAdd } from "./checksum.js";
import { pskbTrimRcsum } from "./ethernet.js";
import {
  IPCB_FLAGS,
  IPCB_FRAG_MAX_SIZE,
  IPSKB_FRAG_PMTU,
  IPSKB_IGNORE_DF,
  IPSTATS_MIB_MAX,
  IPSTATS_MIB_REASM_OVERLAPS,
  IPSTATS_MIB_REASMFAILS,
  IPSTATS_MIB_REASMOKS,
  IPSTATS_MIB_REASMREQDS,
  IPSTATS_MIB_REASMTIMEOUT,
  ipSendCheck,
} from "./ipv4.js";
import { IP_DF, IP_MF, IP_OFFSET, IPH_DADDR, IPH_FRAG_OFF, IPH_ID, IPH_PROTOCOL, IPH_SADDR, IPH_TOS, IPH_TOT_LEN, IPH_VER_IHL } from "./proto.js";

/** `ipfrag_high_thresh` default: 4 MiB. */
export const IPFRAG_HIGH_THRESH = 4 * 1024 * 1024;
/** `ipfrag_low_thresh` default: 3 MiB (unused by the kernel's reassembly since 4.17; kept for parity). */
export const IPFRAG_LOW_THRESH = 3 * 1024 * 1024;
/** `ipfrag_time` default: 30 s, in ms. */
export const IPFRAG_TIME_MS = 30_000;
/** `ipfrag_max_dist` default. */
export const IPFRAG_MAX_DIST = 64;
/** Default number of queue slots per CPU. */
export const IPFRAG_MAX_QUEUES = 4096;
/** Memory charged per queue (`f->qsize` = sizeof(struct ipq), rounded to its slab size). */
export const IPQ_TRUESIZE = 192;

/** Per-fragment bookkeeping in skb->cb (after IPCB). */
export const FRAG_CB_NEXT_FRAG = SKB_CB + 24;
/** Bytes covered by the run this skb heads. */
export const FRAG_CB_RUN_LEN = SKB_CB + 28;
/** `skb->ip_defrag_offset`: payload offset of this fragment. */
export const FRAG_CB_OFFSET = SKB_CB + 32;
/** Next run (run heads only). */
export const FRAG_CB_NEXT_RUN = SKB_CB + 36;

/** `INET_FRAG_FIRST_IN`. */
export const INET_FRAG_FIRST_IN = 1;
/** `INET_FRAG_LAST_IN`. */
export const INET_FRAG_LAST_IN = 2;

/**
 * Drop reasons used for the kernel's outcomes that have no name of their own
 * in SKB_DROP_REASON (the kernel's DUP_FRAG, and its overlap / corrupt-queue
 * kills which it counts as consumed). One place to change them.
 */
const REASON_DUP = SKB_DROP_REASON.NOT_SPECIFIED;
const REASON_BAD_QUEUE = SKB_DROP_REASON.NOT_SPECIFIED;

/** `ip_frag_ecn_table`: OR of `1 << ecn` of all fragments → ECN bits to set, or 0xff = drop. */
const ECN_TABLE = new Uint8Array(16);
{
  const NOT_ECT = 1;
  const ECT_1 = 2;
  const ECT_0 = 4;
  const CE = 8;
  ECN_TABLE[CE | ECT_0] = 3;
  ECN_TABLE[CE | ECT_1] = 3;
  ECN_TABLE[CE | ECT_0 | ECT_1] = 3;
  for (const v of [CE, ECT_0, ECT_1, ECT_0 | ECT_1, CE | ECT_0, CE | ECT_1, CE | ECT_0 | ECT_1]) ECN_TABLE[NOT_ECT | v] = 0xff;
}

/** Options of a reassembly context (sysctl names in brackets). */
export interface IpFragOptions {
  /** [ipfrag_high_thresh] bytes of truesize + queue overhead above which fragments are refused. */
  highThresh?: number;
  /** [ipfrag_low_thresh] kept for parity; not used (as in the kernel since 4.17). */
  lowThresh?: number;
  /** [ipfrag_time] queue lifetime in ms. */
  timeoutMs?: number;
  /** [ipfrag_max_dist] 0 disables the check. */
  maxDist?: number;
  /** Queue slots (bounds concurrent datagrams in reassembly). */
  maxQueues?: number;
  /** Clock in ms used when ipDefrag / ipFragExpire get no `now` (default `Date.now`). Tests pass a fake one. */
  clock?: () => number;
  /** IPSTATS counters to update (ipStatsCreate); a private array when omitted. */
  stats?: Float64Array;
}

/** Called for a timed-out queue that holds its first fragment (to send ICMP_EXC_FRAGTIME); must not free or keep the skb. */
export type IpFragExpireHook = (cpu: SkbCpu, firstFragment: number) => void;

/** One CPU's reassembly state (`struct fqdir` + its queues). Fields fixed at construction. */
export class IpFragQueues {
  readonly highThresh: number;
  readonly lowThresh: number;
  readonly timeoutMs: number;
  readonly maxDist: number;
  readonly maxQueues: number;
  readonly clock: () => number;
  readonly stats: Float64Array;
  /** Optional ICMP hook for timeouts. */
  expireHook: IpFragExpireHook | null = null;
  /** Accounted memory (`frag_mem_limit`): queued truesize + IPQ_TRUESIZE per queue. */
  mem = 0;
  /** Queues in use. */
  nqueues = 0;
  /** Why the last ipDefrag returned 0: 0 = queued (waiting for more), else the drop reason. */
  lastResult = 0;
  // Queue slots.
  /** Addresses as int32 (same bits; avoids heap numbers for addresses >= 128.0.0.0). */
  readonly qSaddr: Int32Array;
  readonly qDaddr: Int32Array;
  readonly qId: Uint16Array;
  readonly qProto: Uint8Array;
  readonly qFlags: Uint8Array;
  readonly qEcn: Uint8Array;
  /** `q.len`: end of the datagram payload as known so far. */
  readonly qLen: Int32Array;
  /** `q.meat`: payload bytes queued. */
  readonly qMeat: Int32Array;
  readonly qMaxSize: Int32Array;
  readonly qMaxDfSize: Int32Array;
  readonly qIif: Uint32Array;
  readonly qDeadline: Float64Array;
  readonly qRid: Uint32Array;
  readonly qPeer: Int32Array;
  readonly qFirstRun: Uint32Array;
  readonly qLastRunHead: Uint32Array;
  readonly qTail: Uint32Array;
  /** Hash chain, or free-list link for free slots. */
  readonly qHashNext: Int32Array;
  readonly qTimerPrev: Int32Array;
  readonly qTimerNext: Int32Array;
  readonly bucket: Int32Array;
  readonly bucketMask: number;
  freeHead = 0;
  timerHead = -1;
  timerTail = -1;
  // Peers (`inet_peer`: per-source fragment counter for ipfrag_max_dist).
  readonly pAddr: Int32Array;
  readonly pRid: Uint32Array;
  readonly pRefs: Int32Array;
  readonly pNext: Int32Array;
  readonly pBucket: Int32Array;
  pFree = 0;

  /** Use {@link ipFragCreate}. */
  constructor(o: IpFragOptions) {
    this.highThresh = o.highThresh ?? IPFRAG_HIGH_THRESH;
    this.lowThresh = o.lowThresh ?? IPFRAG_LOW_THRESH;
    this.timeoutMs = o.timeoutMs ?? IPFRAG_TIME_MS;
    this.maxDist = o.maxDist ?? IPFRAG_MAX_DIST;
    const n = o.maxQueues ?? IPFRAG_MAX_QUEUES;
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`ipFragCreate: maxQueues ${n} must be a positive integer`);
    this.maxQueues = n;
    this.clock = o.clock ?? Date.now;
    this.stats = o.stats ?? new Float64Array(IPSTATS_MIB_MAX);
    this.qSaddr = new Int32Array(n);
    this.qDaddr = new Int32Array(n);
    this.qId = new Uint16Array(n);
    this.qProto = new Uint8Array(n);
    this.qFlags = new Uint8Array(n);
    this.qEcn = new Uint8Array(n);
    this.qLen = new Int32Array(n);
    this.qMeat = new Int32Array(n);
    this.qMaxSize = new Int32Array(n);
    this.qMaxDfSize = new Int32Array(n);
    this.qIif = new Uint32Array(n);
    this.qDeadline = new Float64Array(n);
    this.qRid = new Uint32Array(n);
    this.qPeer = new Int32Array(n);
    this.qFirstRun = new Uint32Array(n);
    this.qLastRunHead = new Uint32Array(n);
    this.qTail = new Uint32Array(n);
    this.qHashNext = new Int32Array(n);
    for (let i = 0; i < n; i++) this.qHashNext[i] = i + 1 < n ? i + 1 : -1;
    this.qTimerPrev = new Int32Array(n).fill(-1);
    this.qTimerNext = new Int32Array(n).fill(-1);
    let b = 16;
    while (b < n) b *= 2;
    this.bucket = new Int32Array(b).fill(-1);
    this.bucketMask = b - 1;
    this.pAddr = new Int32Array(n);
    this.pRid = new Uint32Array(n);
    this.pRefs = new Int32Array(n);
    this.pNext = new Int32Array(n);
    for (let i = 0; i < n; i++) this.pNext[i] = i + 1 < n ? i + 1 : -1;
    this.pBucket = new Int32Array(b).fill(-1);
  }
}

/** Create a reassembly context with kernel defaults. Allocates (setup). */
export function ipFragCreate(o: IpFragOptions = {}): IpFragQueues {
  return new IpFragQueues(o);
}

/** Queues currently in reassembly. */
export function ipFragQueueCount(fq: IpFragQueues): number {
  return fq.nqueues;
}
/** Accounted reassembly memory in bytes (`frag_mem_limit`). */
export function ipFragMem(fq: IpFragQueues): number {
  return fq.mem;
}

function keyHash(saddr: number, daddr: number, id: number, proto: number): number {
  let h = Math.imul(saddr ^ 0x9e3779b9, 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 15) ^ daddr, 0xc2b2ae35);
  h = Math.imul(h ^ (h >>> 13) ^ ((id << 8) | proto), 0x27d4eb2f);
  // int32, not uint32: a result >= 2^31 would be a heap number.
  return h ^ (h >>> 16);
}

function addrHash(a: number): number {
  const h = Math.imul(a ^ (a >>> 16), 0x45d9f3b);
  return h ^ (h >>> 16);
}

// ---- peers ------------------------------------------------------------------------------------

/** `inet_getpeer_v4`: find or create the counter of source `saddr`; -1 when the table is full. */
function peerGet(fq: IpFragQueues, saddr: number): number {
  const b = addrHash(saddr) & fq.bucketMask;
  for (let p = fq.pBucket[b] as number; p >= 0; p = fq.pNext[p] as number) {
    if (fq.pAddr[p] === saddr) {
      fq.pRefs[p] = (fq.pRefs[p] as number) + 1;
      return p;
    }
  }
  const p = fq.pFree;
  if (p < 0) return -1;
  fq.pFree = fq.pNext[p] as number;
  fq.pAddr[p] = saddr;
  fq.pRid[p] = 0;
  fq.pRefs[p] = 1;
  fq.pNext[p] = fq.pBucket[b] as number;
  fq.pBucket[b] = p;
  return p;
}

/** `inet_putpeer`: drop a reference; the last one frees the entry. */
function peerPut(fq: IpFragQueues, p: number): void {
  const r = (fq.pRefs[p] as number) - 1;
  fq.pRefs[p] = r;
  if (r > 0) return;
  const b = addrHash(fq.pAddr[p] as number) & fq.bucketMask;
  let prev = -1;
  for (let x = fq.pBucket[b] as number; x >= 0; x = fq.pNext[x] as number) {
    if (x === p) {
      if (prev < 0) fq.pBucket[b] = fq.pNext[p] as number;
      else fq.pNext[prev] = fq.pNext[p] as number;
      break;
    }
    prev = x;
  }
  fq.pNext[p] = fq.pFree;
  fq.pFree = p;
}

// ---- timers -------------------------------------------------------------------------------------

function timerUnlink(fq: IpFragQueues, q: number): void {
  const p = fq.qTimerPrev[q] as number;
  const n = fq.qTimerNext[q] as number;
  if (p >= 0) fq.qTimerNext[p] = n;
  else fq.timerHead = n;
  if (n >= 0) fq.qTimerPrev[n] = p;
  else fq.timerTail = p;
  fq.qTimerPrev[q] = -1;
  fq.qTimerNext[q] = -1;
}

/** `mod_timer`: (re)arm queue q at `deadline`, keeping the list sorted (O(1) for a monotonic clock). */
function timerArm(fq: IpFragQueues, q: number, deadline: number): void {
  fq.qDeadline[q] = deadline;
  let after = fq.timerTail;
  while (after >= 0 && (fq.qDeadline[after] as number) > deadline) after = fq.qTimerPrev[after] as number;
  const next = after >= 0 ? (fq.qTimerNext[after] as number) : fq.timerHead;
  fq.qTimerPrev[q] = after;
  fq.qTimerNext[q] = next;
  if (after >= 0) fq.qTimerNext[after] = q;
  else fq.timerHead = q;
  if (next >= 0) fq.qTimerPrev[next] = q;
  else fq.timerTail = q;
}

// ---- queue lifetime -------------------------------------------------------------------------------

/** Free every fragment of queue q with `reason`, subtracting their truesize (`inet_frag_queue_flush`). */
function queueFlush(cpu: SkbCpu, fq: IpFragQueues, q: number, reason: number): void {
  const u32 = cpu.u32;
  let run = fq.qFirstRun[q] as number;
  let sum = 0;
  while (run !== 0) {
    const nextRun = u32[(run + FRAG_CB_NEXT_RUN) >>> 2] as number;
    let f = run;
    while (f !== 0) {
      const next = u32[(f + FRAG_CB_NEXT_FRAG) >>> 2] as number;
      sum += u32[(f + SKB_TRUESIZE) >>> 2] as number;
      kfreeSkbReason(cpu, f, reason);
      f = next;
    }
    run = nextRun;
  }
  fq.mem -= sum;
  fq.qFirstRun[q] = 0;
  fq.qLastRunHead[q] = 0;
  fq.qTail[q] = 0;
}

/** Unhash queue q and return its slot (`inet_frag_kill` + `inet_frag_destroy` of an emptied queue). */
function queueFree(fq: IpFragQueues, q: number): void {
  const b = keyHash(fq.qSaddr[q] as number, fq.qDaddr[q] as number, fq.qId[q] as number, fq.qProto[q] as number) & fq.bucketMask;
  let prev = -1;
  for (let x = fq.bucket[b] as number; x >= 0; x = fq.qHashNext[x] as number) {
    if (x === q) {
      if (prev < 0) fq.bucket[b] = fq.qHashNext[q] as number;
      else fq.qHashNext[prev] = fq.qHashNext[q] as number;
      break;
    }
    prev = x;
  }
  timerUnlink(fq, q);
  const p = fq.qPeer[q] as number;
  if (p >= 0) peerPut(fq, p);
  fq.qPeer[q] = -1;
  fq.qHashNext[q] = fq.freeHead;
  fq.freeHead = q;
  fq.mem -= IPQ_TRUESIZE;
  fq.nqueues--;
}

/** Destroy queue q and drop its fragments with `reason`. */
function queueKill(cpu: SkbCpu, fq: IpFragQueues, q: number, reason: number): void {
  queueFlush(cpu, fq, q, reason);
  queueFree(fq, q);
}

/** `inet_frag_find` / `ip_find`: the queue for the key, created if absent; -1 when full. */
function queueFind(fq: IpFragQueues, saddr: number, daddr: number, id: number, proto: number, now: number): number {
  const b = keyHash(saddr, daddr, id, proto) & fq.bucketMask;
  for (let q = fq.bucket[b] as number; q >= 0; q = fq.qHashNext[q] as number) {
    if (fq.qSaddr[q] === saddr && fq.qDaddr[q] === daddr && fq.qId[q] === id && fq.qProto[q] === proto) return q;
  }
  const q = fq.freeHead;
  if (q < 0) return -1;
  fq.freeHead = fq.qHashNext[q] as number;
  fq.qSaddr[q] = saddr;
  fq.qDaddr[q] = daddr;
  fq.qId[q] = id;
  fq.qProto[q] = proto;
  fq.qFlags[q] = 0;
  fq.qEcn[q] = 0;
  fq.qLen[q] = 0;
  fq.qMeat[q] = 0;
  fq.qMaxSize[q] = 0;
  fq.qMaxDfSize[q] = 0;
  fq.qIif[q] = 0;
  fq.qFirstRun[q] = 0;
  fq.qLastRunHead[q] = 0;
  fq.qTail[q] = 0;
  const p = fq.maxDist !== 0 ? peerGet(fq, saddr) : -1;
  fq.qPeer[q] = p;
  fq.qRid[q] = p >= 0 ? (fq.pRid[p] as number) : 0;
  fq.qHashNext[q] = fq.bucket[b] as number;
  fq.bucket[b] = q;
  timerArm(fq, q, now + fq.timeoutMs);
  fq.mem += IPQ_TRUESIZE;
  fq.nqueues++;
  return q;
}

/**
 * `ip_expire` for every queue whose deadline has passed at `now` (default:
 * the context's clock; same time base as ipDefrag's): counts ReasmFails and ReasmTimeout, hands the first
 * fragment (if it arrived) to the expire hook, and drops every fragment as
 * IP_FRAG_TIMEOUT. Returns the number of queues expired. Called by ipDefrag
 * on entry; call it periodically too (it is the timer). Allocates nothing.
 */
export function ipFragExpire(cpu: SkbCpu, fq: IpFragQueues, now: number = fq.clock()): number {
  let n = 0;
  for (let q = fq.timerHead; q >= 0 && (fq.qDeadline[q] as number) <= now; q = fq.timerHead) {
    fq.stats[IPSTATS_MIB_REASMFAILS]++;
    fq.stats[IPSTATS_MIB_REASMTIMEOUT]++;
    const hook = fq.expireHook;
    if (hook !== null && ((fq.qFlags[q] as number) & INET_FRAG_FIRST_IN) !== 0) {
      const head = fq.qFirstRun[q] as number;
      if (head !== 0 && (cpu.u32[(head + FRAG_CB_OFFSET) >>> 2] as number) === 0) hook(cpu, head);
    }
    queueKill(cpu, fq, q, SKB_DROP_REASON.IP_FRAG_TIMEOUT);
    n++;
  }
  return n;
}

/** Drop every queue (teardown, `fqdir_exit`): fragments count as IP_FRAG_TIMEOUT; no statistics. */
export function ipFragDestroyAll(cpu: SkbCpu, fq: IpFragQueues): void {
  while (fq.timerHead >= 0) queueKill(cpu, fq, fq.timerHead, SKB_DROP_REASON.IP_FRAG_TIMEOUT);
}

// ---- insertion -----------------------------------------------------------------------------------

const IPFRAG_OK = 0;
const IPFRAG_DUP = 1;
const IPFRAG_OVERLAP = 2;

/** `inet_frag_queue_insert`: place `skb` (payload [offset, end)) among the runs of q. */
function queueInsert(cpu: SkbCpu, fq: IpFragQueues, q: number, skb: number, offset: number, end: number): number {
  const u32 = cpu.u32;
  const len = u32[(skb + SKB_LEN) >>> 2] as number;
  const last = fq.qTail[q] as number;
  if (last === 0) {
    fragrunInit(u32, skb, offset, len);
    fq.qFirstRun[q] = skb;
    fq.qLastRunHead[q] = skb;
    fq.qTail[q] = skb;
    return IPFRAG_OK;
  }
  const lastEnd = (u32[(last + FRAG_CB_OFFSET) >>> 2] as number) + (u32[(last + SKB_LEN) >>> 2] as number);
  if (lastEnd < end) {
    // The common case: skb goes to the end.
    if (offset < lastEnd) return IPFRAG_OVERLAP;
    fragrunInit(u32, skb, offset, len);
    if (offset === lastEnd) {
      // fragrun_append_to_last
      const lrh = fq.qLastRunHead[q] as number;
      u32[(lrh + FRAG_CB_RUN_LEN) >>> 2] = (u32[(lrh + FRAG_CB_RUN_LEN) >>> 2] as number) + len;
      u32[(last + FRAG_CB_NEXT_FRAG) >>> 2] = skb;
    } else {
      // fragrun_create at the end
      u32[((fq.qLastRunHead[q] as number) + FRAG_CB_NEXT_RUN) >>> 2] = skb;
      fq.qLastRunHead[q] = skb;
    }
    fq.qTail[q] = skb;
    return IPFRAG_OK;
  }
  // Out of order: find the gap among the sorted runs (skb cannot become the last).
  let prev = 0;
  let r = fq.qFirstRun[q] as number;
  while (r !== 0) {
    const ro = u32[(r + FRAG_CB_OFFSET) >>> 2] as number;
    const re = ro + (u32[(r + FRAG_CB_RUN_LEN) >>> 2] as number);
    if (end <= ro) break;
    if (offset >= re) {
      prev = r;
      r = u32[(r + FRAG_CB_NEXT_RUN) >>> 2] as number;
      continue;
    }
    return offset >= ro && end <= re ? IPFRAG_DUP : IPFRAG_OVERLAP;
  }
  fragrunInit(u32, skb, offset, len);
  u32[(skb + FRAG_CB_NEXT_RUN) >>> 2] = r;
  if (prev === 0) fq.qFirstRun[q] = skb;
  else u32[(prev + FRAG_CB_NEXT_RUN) >>> 2] = skb;
  return IPFRAG_OK;
}

/** `fragcb_clear` + the defrag offset: a one-fragment run. */
function fragrunInit(u32: Uint32Array, skb: number, offset: number, len: number): void {
  u32[(skb + FRAG_CB_NEXT_FRAG) >>> 2] = 0;
  u32[(skb + FRAG_CB_RUN_LEN) >>> 2] = len;
  u32[(skb + FRAG_CB_OFFSET) >>> 2] = offset;
  u32[(skb + FRAG_CB_NEXT_RUN) >>> 2] = 0;
  u32[(skb + SKB_NEXT) >>> 2] = 0;
}

// ---- ip_defrag -----------------------------------------------------------------------------------

/** Drop `skb` and record why ipDefrag returned 0. */
function dropSkb(cpu: SkbCpu, fq: IpFragQueues, skb: number, reason: number): number {
  kfreeSkbReason(cpu, skb, reason);
  fq.lastResult = reason;
  return 0;
}

/** `discard_qp`: kill the queue, count ReasmFails, drop `skb`. */
function discardQp(cpu: SkbCpu, fq: IpFragQueues, q: number, skb: number, reason: number): number {
  queueKill(cpu, fq, q, REASON_BAD_QUEUE);
  fq.stats[IPSTATS_MIB_REASMFAILS]++;
  return dropSkb(cpu, fq, skb, reason);
}

/**
 * `ip_defrag`: feed one IPv4 datagram (validated by ipRcvCore: network
 * header at an intact header, skb->data at or before it, skb->len ending at
 * tot_len; users == 1). A non-fragment is returned unchanged. A fragment is
 * always consumed: the reassembled datagram is returned when this fragment
 * completes it, otherwise 0 — the fragment was queued (`fq.lastResult` 0) or
 * dropped and counted under a reason (`fq.lastResult`):
 * IP_FRAG_MEMORY (over ipfrag_high_thresh, or no free queue slot),
 * NOT_SPECIFIED (duplicate; overlap — RFC 5722, the queue is destroyed —;
 * inconsistent end / zero-length fragment, also destroying the queue; bad
 * ECN mix), PKT_TOO_BIG (reassembled > 65535), NOMEM, IP_INHDR. Queued
 * fragments are dropped as IP_FRAG_TIMEOUT on expiry and IP_FRAG_TOO_FAR
 * when more than ipfrag_max_dist fragments from the same source arrived
 * since this queue's last one. Counts ReasmReqds, ReasmOKs, ReasmFails,
 * ReasmOverlaps.
 *
 * `now` (ms) is the time base of the deadlines; pass it (e.g. the softnet
 * jiffies of this poll) on the hot path — reading a clock (`Date.now`,
 * `performance.now`) boxes a double per call — or omit it to use the
 * context's clock. Use one time base for ipDefrag and ipFragExpire.
 * With `now` given, allocates no JS objects (arena memory only on unclone).
 */
export function ipDefrag(cpu: SkbCpu, fq: IpFragQueues, skb: number, now?: number): number {
  const u8 = cpu.u8;
  const iph = skbNetworkHeader(cpu, skb);
  const fo = be16(u8, iph + IPH_FRAG_OFF);
  if ((fo & (IP_MF | IP_OFFSET)) === 0) return skb;
  if (now === undefined) now = fq.clock();
  if (fq.timerHead >= 0 && (fq.qDeadline[fq.timerHead] as number) <= now) ipFragExpire(cpu, fq, now);
  fq.stats[IPSTATS_MIB_REASMREQDS]++;
  if (fq.mem > fq.highThresh) {
    fq.stats[IPSTATS_MIB_REASMFAILS]++;
    return dropSkb(cpu, fq, skb, SKB_DROP_REASON.IP_FRAG_MEMORY);
  }
  const saddr = be32s(u8, iph + IPH_SADDR);
  const daddr = be32s(u8, iph + IPH_DADDR);
  const q = queueFind(fq, saddr, daddr, be16(u8, iph + IPH_ID), u8[iph + IPH_PROTOCOL] as number, now);
  if (q < 0) {
    fq.stats[IPSTATS_MIB_REASMFAILS]++;
    return dropSkb(cpu, fq, skb, SKB_DROP_REASON.IP_FRAG_MEMORY);
  }
  // ip_frag_too_far → ip_frag_reinit
  const p = fq.qPeer[q] as number;
  if (p >= 0) {
    const start = fq.qRid[q] as number;
    const end = ((fq.pRid[p] as number) + 1) >>> 0;
    fq.pRid[p] = end;
    fq.qRid[q] = end;
    if ((fq.qTail[q] as number) !== 0 && ((end - start) >>> 0) > fq.maxDist) {
      fq.stats[IPSTATS_MIB_REASMFAILS]++;
      queueFlush(cpu, fq, q, SKB_DROP_REASON.IP_FRAG_TOO_FAR);
      fq.qFlags[q] = 0;
      fq.qLen[q] = 0;
      fq.qMeat[q] = 0;
      fq.qIif[q] = 0;
      fq.qEcn[q] = 0;
      timerUnlink(fq, q);
      timerArm(fq, q, now + fq.timeoutMs);
    }
  }
  return ipFragQueue(cpu, fq, q, skb);
}

/** `ip_frag_queue`: add the fragment to q; reassemble when complete. */
function ipFragQueue(cpu: SkbCpu, fq: IpFragQueues, q: number, skb: number): number {
  const u8 = cpu.u8;
  const u32 = cpu.u32;
  const iph = skbNetworkHeader(cpu, skb);
  const tos = u8[iph + IPH_TOS] as number;
  const ecn = 1 << (tos & 3);
  const fo = be16(u8, iph + IPH_FRAG_OFF);
  const offset = (fo & IP_OFFSET) << 3;
  const ihl = ((u8[iph + IPH_VER_IHL] as number) & 15) << 2;
  const nhOff = iph - (u32[(skb + SKB_DATA) >>> 2] as number);
  if (nhOff < 0 || ihl < 20) return dropSkb(cpu, fq, skb, SKB_DROP_REASON.IP_INHDR);
  let end = offset + (u32[(skb + SKB_LEN) >>> 2] as number) - nhOff - ihl;
  if (end < offset) return dropSkb(cpu, fq, skb, SKB_DROP_REASON.IP_INHDR);
  let flags = fq.qFlags[q] as number;
  if ((fo & IP_MF) === 0) {
    // The final fragment: nothing may lie beyond it, and it may not move.
    if (end < (fq.qLen[q] as number) || ((flags & INET_FRAG_LAST_IN) !== 0 && end !== fq.qLen[q])) {
      return discardQp(cpu, fq, q, skb, REASON_BAD_QUEUE);
    }
    flags |= INET_FRAG_LAST_IN;
    fq.qFlags[q] = flags;
    fq.qLen[q] = end;
  } else {
    if ((end & 7) !== 0) {
      end &= ~7;
      if ((u8[skb + SKB_IP_SUMMED] as number) !== CHECKSUM_UNNECESSARY) u8[skb + SKB_IP_SUMMED] = CHECKSUM_NONE;
    }
    if (end > (fq.qLen[q] as number)) {
      if ((flags & INET_FRAG_LAST_IN) !== 0) return discardQp(cpu, fq, q, skb, REASON_BAD_QUEUE);
      fq.qLen[q] = end;
    }
  }
  if (end === offset) return discardQp(cpu, fq, q, skb, REASON_BAD_QUEUE);
  if (pskbPull(cpu, skb, nhOff + ihl) === 0) return discardQp(cpu, fq, q, skb, SKB_DROP_REASON.NOMEM);
  if (pskbTrimRcsum(cpu, skb, end - offset) !== 0) return discardQp(cpu, fq, q, skb, SKB_DROP_REASON.NOMEM);
  const r = queueInsert(cpu, fq, q, skb, offset, end);
  if (r !== IPFRAG_OK) {
    if (r === IPFRAG_DUP) return dropSkb(cpu, fq, skb, REASON_DUP);
    fq.stats[IPSTATS_MIB_REASM_OVERLAPS]++;
    return discardQp(cpu, fq, q, skb, REASON_BAD_QUEUE);
  }
  const dev = u32[(skb + SKB_DEV) >>> 2] as number;
  if (dev !== 0) fq.qIif[q] = dev;
  const len = u32[(skb + SKB_LEN) >>> 2] as number;
  fq.qMeat[q] = (fq.qMeat[q] as number) + len;
  fq.qEcn[q] = (fq.qEcn[q] as number) | ecn;
  fq.mem += u32[(skb + SKB_TRUESIZE) >>> 2] as number;
  if (offset === 0) {
    flags |= INET_FRAG_FIRST_IN;
    fq.qFlags[q] = flags;
  }
  const fragsize = len + ihl;
  if (fragsize > (fq.qMaxSize[q] as number)) fq.qMaxSize[q] = fragsize;
  if ((fo & IP_DF) !== 0 && fragsize > (fq.qMaxDfSize[q] as number)) fq.qMaxDfSize[q] = fragsize;
  if (flags === (INET_FRAG_FIRST_IN | INET_FRAG_LAST_IN) && fq.qMeat[q] === fq.qLen[q]) return ipFragReasm(cpu, fq, q);
  fq.lastResult = 0;
  return 0;
}

/**
 * `ip_frag_reasm`: chain the fragments of a complete queue on the first
 * fragment's frag_list and fix its IP header. Destroys the queue. Returns
 * the datagram, or 0 when it had to be dropped (queue fragments dropped).
 */
function ipFragReasm(cpu: SkbCpu, fq: IpFragQueues, q: number): number {
  const u8 = cpu.u8;
  const u32 = cpu.u32;
  const ecn = ECN_TABLE[fq.qEcn[q] as number] as number;
  if (ecn === 0xff) return reasmFail(cpu, fq, q, SKB_DROP_REASON.NOT_SPECIFIED);
  const head = fq.qFirstRun[q] as number;
  // Head of list must not be cloned.
  const ts0 = u32[(head + SKB_TRUESIZE) >>> 2] as number;
  if (skbUnclone(cpu, head) !== 0) return reasmFail(cpu, fq, q, SKB_DROP_REASON.NOMEM);
  fq.mem += (u32[(head + SKB_TRUESIZE) >>> 2] as number) - ts0;
  const nh = skbNetworkHeader(cpu, head);
  const ihl = ((u8[nh + IPH_VER_IHL] as number) & 15) << 2;
  const totLen = ihl + (fq.qLen[q] as number);
  if (totLen > 65535) return reasmFail(cpu, fq, q, SKB_DROP_REASON.PKT_TOO_BIG);
  // inet_frag_reasm_prepare: append after any frag_list the head already has.
  let nextp = (u32[(head + SKB_HEAD) >>> 2] as number) + (u32[(head + SKB_END) >>> 2] as number) + SHINFO_FRAG_LIST;
  for (let l = u32[nextp >>> 2] as number; l !== 0; l = u32[(l + SKB_NEXT) >>> 2] as number) nextp = l + SKB_NEXT;
  // inet_frag_reasm_finish
  __skbPush(cpu, head, (u32[(head + SKB_DATA) >>> 2] as number) - nh);
  let sumTruesize = u32[(head + SKB_TRUESIZE) >>> 2] as number;
  let addLen = 0;
  let addTruesize = 0;
  let summed = u8[head + SKB_IP_SUMMED] as number;
  let csum = u32[(head + SKB_CSUM) >>> 2] as number;
  let run = head;
  let fp = u32[(head + FRAG_CB_NEXT_FRAG) >>> 2] as number;
  for (;;) {
    while (fp !== 0) {
      const nextFrag = u32[(fp + FRAG_CB_NEXT_FRAG) >>> 2] as number;
      const ts = u32[(fp + SKB_TRUESIZE) >>> 2] as number;
      sumTruesize += ts;
      const s = u8[fp + SKB_IP_SUMMED] as number;
      if (summed !== s) summed = CHECKSUM_NONE;
      else if (summed === CHECKSUM_COMPLETE) csum = csumAdd(csum, u32[(fp + SKB_CSUM) >>> 2] as number);
      u32[(fp + SKB_NEXT) >>> 2] = 0;
      u32[nextp >>> 2] = fp;
      nextp = fp + SKB_NEXT;
      addLen += u32[(fp + SKB_LEN) >>> 2] as number;
      addTruesize += ts;
      fp = nextFrag;
    }
    run = u32[(run + FRAG_CB_NEXT_RUN) >>> 2] as number;
    if (run === 0) break;
    fp = run;
  }
  u32[nextp >>> 2] = 0;
  fq.mem -= sumTruesize;
  u32[(head + SKB_LEN) >>> 2] = (u32[(head + SKB_LEN) >>> 2] as number) + addLen;
  u32[(head + SKB_DATA_LEN) >>> 2] = (u32[(head + SKB_DATA_LEN) >>> 2] as number) + addLen;
  u32[(head + SKB_TRUESIZE) >>> 2] = (u32[(head + SKB_TRUESIZE) >>> 2] as number) + addTruesize;
  u32[(head + SKB_NEXT) >>> 2] = 0;
  u8[head + SKB_IP_SUMMED] = summed;
  if (summed === CHECKSUM_COMPLETE) u32[(head + SKB_CSUM) >>> 2] = csum;
  if ((fq.qIif[q] as number) !== 0) u32[(head + SKB_DEV) >>> 2] = fq.qIif[q] as number;
  // The IP header of the whole datagram.
  const maxSize = fq.qMaxSize[q] as number;
  const maxDf = fq.qMaxDfSize[q] as number;
  cpu.u16[(head + IPCB_FRAG_MAX_SIZE) >>> 1] = Math.max(maxDf, maxSize);
  u8[nh + IPH_TOT_LEN] = totLen >>> 8;
  u8[nh + IPH_TOT_LEN + 1] = totLen;
  u8[nh + IPH_TOS] = (u8[nh + IPH_TOS] as number) | ecn;
  // skb->ignore_df = 1 as conntrack's defrag sets it: the router may refragment.
  cpu.u16[(head + IPCB_FLAGS) >>> 1] = (cpu.u16[(head + IPCB_FLAGS) >>> 1] as number) | IPSKB_IGNORE_DF;
  if (maxDf === maxSize) {
    cpu.u16[(head + IPCB_FLAGS) >>> 1] = (cpu.u16[(head + IPCB_FLAGS) >>> 1] as number) | IPSKB_FRAG_PMTU;
    u8[nh + IPH_FRAG_OFF] = IP_DF >>> 8;
  } else {
    u8[nh + IPH_FRAG_OFF] = 0;
  }
  u8[nh + IPH_FRAG_OFF + 1] = 0;
  ipSendCheck(u8, nh);
  const nhOff = cpu.u16[(head + SKB_NETWORK_HEADER) >>> 1] as number;
  cpu.u16[(head + SKB_TRANSPORT_HEADER) >>> 1] = nhOff + ihl;
  fq.stats[IPSTATS_MIB_REASMOKS]++;
  // The fragments now belong to head: empty and free the queue.
  fq.qFirstRun[q] = 0;
  fq.qLastRunHead[q] = 0;
  fq.qTail[q] = 0;
  queueFree(fq, q);
  fq.lastResult = 0;
  return head;
}

function reasmFail(cpu: SkbCpu, fq: IpFragQueues, q: number, reason: number): number {
  fq.stats[IPSTATS_MIB_REASMFAILS]++;
  queueKill(cpu, fq, q, reason);
  fq.lastResult = reason;
  return 0;
}
