/**
 * ARP for IPv4 over Ethernet (net/ipv4/arp.c) and the neighbour table it
 * fills (net/core/neighbour.c, the parts a router or a small host needs).
 *
 * ```
 *  struct arphdr + Ethernet/IPv4 body (28 bytes)
 *   0 ar_hrd (1 = ARPHRD_ETHER)   2 ar_pro (0x0800)   4 ar_hln (6)   5 ar_pln (4)   6 ar_op (1 request, 2 reply)
 *   8 ar_sha (6)   14 ar_sip (4)   18 ar_tha (6)   24 ar_tip (4)
 *
 *  neighbour states (NUD_*, kernel values) and what moves them:
 *   (none) ─neighEventSend─> INCOMPLETE ─reply─> REACHABLE ─reachable time─> STALE ─unused gc_staletime─> (gone)
 *                              │ mcast_solicit probes unanswered          ▲ request / unsolicited ARP seen
 *                              └──> FAILED ─gc──> (gone)                  └─ (STALE is still used for output)
 *   PERMANENT (static) entries never age and are never changed by ARP.
 *
 *  arp_queue of an INCOMPLETE entry i (packets waiting for its address),
 *  linked through skb->next, oldest first:
 *   qHead[i] ─> skb ─next─> skb ─next─> skb = qTail[i]   (its next is 0)
 *   qBytes[i] = Σ truesize ≤ unres_qlen_bytes (or one skb alone), qLen[i] = count
 *    full:       the oldest goes first (NEIGH_QUEUEFULL, unresDiscards)
 *    resolved:   every skb, in order, to ops.output with the new address (neigh_update)
 *    FAILED:     every skb to ops.errorReport (ICMP host unreachable + NEIGH_FAILED)
 *    removed:    every skb to ops.drop (NEIGH_DEAD)
 * ```
 *
 * The table lives in typed arrays (chained hash, fixed capacity =
 * gc_thresh3); lookups, updates, queueing and ARP receive allocate no JS
 * objects. The reachable time is `base_reachable_time` exactly (the kernel
 * randomises it to 0.5..1.5×); DELAY/PROBE unicast probing is not modelled
 * (a STALE entry stays usable until it is collected). Packets for an
 * unresolved next hop wait on the entry's queue ({@link __neighEventSend})
 * as the kernel's `arp_queue` does; what happens to them is the caller's
 * {@link NeighOps}, installed once with {@link neighTableSetOps}.
 *
 * This module knows nothing of net devices (the core layer sits above it):
 * callers pass the device's MAC, IPv4 address and ifindex ({@link ArpDev},
 * which a `NetDevice` satisfies) and transmit the skbs it returns.
 *
 * @module
 */

import { be16, be32s, putBe16, putBe32, skbDataPtr } from "../skb/access.js";
import { allocSkb } from "../skb/alloc.js";
import type { SkbCpu } from "../skb/cpu.js";
import { __skbPut, pskbMayPull, pskbTrim, skbReserve } from "../skb/data.js";
import { SKB_DROP_REASON } from "../skb/drop-reason.js";
import { PACKET_HOST, PACKET_OTHERHOST, SKB_DEV, SKB_LEN, SKB_NEXT, SKB_PKT_TYPE, SKB_PROTOCOL, SKB_TRUESIZE } from "../skb/layout.js";
import { ETH_BROADCAST_ADDR, etherAddrCopy, etherAddrEqual, ethHeaderPush, isMulticastEtherAddr, LL_RESERVED_SPACE_ETH, skbEnsureWritable } from "./ethernet.js";
import { ipv4IsLbcast, ipv4IsLoopback, ipv4IsMulticast } from "./ipv4.js";
import { ETH_ALEN, ETH_P_ARP, ETH_P_IP } from "./proto.js";

// ---- header ---------------------------------------------------------------------------------

/** `ARPHRD_ETHER`. */
export const ARPHRD_ETHER = 1;
/** `ARPOP_REQUEST`. */
export const ARPOP_REQUEST = 1;
/** `ARPOP_REPLY`. */
export const ARPOP_REPLY = 2;
/** Bytes of an Ethernet/IPv4 ARP packet (`arp_hdr_len` for Ethernet). */
export const ARP_HLEN = 28;
export const ARPH_HRD = 0;
export const ARPH_PRO = 2;
export const ARPH_HLN = 4;
export const ARPH_PLN = 5;
export const ARPH_OP = 6;
export const ARPH_SHA = 8;
export const ARPH_SIP = 14;
export const ARPH_THA = 18;
export const ARPH_TIP = 24;

/** ar_op of the ARP header at arena offset `arp`. */
export function arpOp(u8: Uint8Array, arp: number): number {
  return be16(u8, arp + ARPH_OP);
}
/** ar_sip as a signed int32. */
export function arpSip(u8: Uint8Array, arp: number): number {
  return be32s(u8, arp + ARPH_SIP);
}
/** ar_tip as a signed int32. */
export function arpTip(u8: Uint8Array, arp: number): number {
  return be32s(u8, arp + ARPH_TIP);
}

/** Write a whole Ethernet/IPv4 ARP body at `arp`. `tha` null writes zeros (a request's unknown target). */
export function arpWrite(
  u8: Uint8Array,
  arp: number,
  op: number,
  sha: Uint8Array,
  shaOff: number,
  sip: number,
  tha: Uint8Array | null,
  thaOff: number,
  tip: number,
): void {
  putBe16(u8, arp + ARPH_HRD, ARPHRD_ETHER);
  putBe16(u8, arp + ARPH_PRO, ETH_P_IP);
  u8[arp + ARPH_HLN] = ETH_ALEN;
  u8[arp + ARPH_PLN] = 4;
  putBe16(u8, arp + ARPH_OP, op);
  etherAddrCopy(u8, arp + ARPH_SHA, sha, shaOff);
  putBe32(u8, arp + ARPH_SIP, sip);
  if (tha !== null) etherAddrCopy(u8, arp + ARPH_THA, tha, thaOff);
  else u8.fill(0, arp + ARPH_THA, arp + ARPH_THA + ETH_ALEN);
  putBe32(u8, arp + ARPH_TIP, tip);
}

// ---- statistics -------------------------------------------------------------------------------

export const ARP_IN_REQUESTS = 0;
export const ARP_IN_REPLIES = 1;
/** Malformed or unusable ARP packets (bad header, wrong types, multicast / loopback addresses). */
export const ARP_IN_ERRORS = 2;
/** Requests for an address that is not ours (nothing to answer). */
export const ARP_IN_NOT_OURS = 3;
export const ARP_OUT_REQUESTS = 4;
export const ARP_OUT_REPLIES = 5;
/** Requests or replies that could not be built (no memory). */
export const ARP_OUT_ERRORS = 6;
/** Valid ARP packets taken without an answer (learned from or ignored): {@link arpRcv} returned CONSUMED. */
export const ARP_IN_CONSUMED = 7;
export const ARP_STAT_MAX = 8;
export const ARP_STAT_NAMES = ["inRequests", "inReplies", "inErrors", "inNotOurs", "outRequests", "outReplies", "outErrors", "inConsumed"] as const;

/** A zeroed ARP counter array. Allocates. */
export function arpStatsCreate(): Float64Array {
  return new Float64Array(ARP_STAT_MAX);
}

// ---- neighbour table ------------------------------------------------------------------------

/** NUD states (kernel values). */
export const NUD_NONE = 0x00;
export const NUD_INCOMPLETE = 0x01;
export const NUD_REACHABLE = 0x02;
export const NUD_STALE = 0x04;
export const NUD_DELAY = 0x08;
export const NUD_PROBE = 0x10;
export const NUD_FAILED = 0x20;
export const NUD_NOARP = 0x40;
export const NUD_PERMANENT = 0x80;
/** States whose link-layer address may be used for output. */
export const NUD_VALID = NUD_PERMANENT | NUD_NOARP | NUD_REACHABLE | NUD_PROBE | NUD_STALE | NUD_DELAY;

/** Counter indices of `NeighTable.stats` (`struct neigh_statistics`). */
export const NEIGH_STAT_ALLOCS = 0;
export const NEIGH_STAT_DESTROYS = 1;
export const NEIGH_STAT_LOOKUPS = 2;
export const NEIGH_STAT_HITS = 3;
/** Resolutions that failed (INCOMPLETE -> FAILED). */
export const NEIGH_STAT_RES_FAILED = 4;
/** Queued packets dropped because the entry's queue was full (NEIGH_QUEUEFULL; the kernel's unres_discards). */
export const NEIGH_STAT_UNRES_DISCARDS = 5;
/** Entries that could not be created: table full even after a forced GC. */
export const NEIGH_STAT_TABLE_FULLS = 6;
export const NEIGH_STAT_PERIODIC_GC_RUNS = 7;
export const NEIGH_STAT_FORCED_GC_RUNS = 8;
// Not in the kernel's neigh_statistics: where the packets of arp_queue went.
// queued = queueSent + queueFailed + queueFlushed + unresDiscards + (still queued).
/** Packets queued on an INCOMPLETE entry. */
export const NEIGH_STAT_QUEUED = 9;
/** Queued packets sent once their entry resolved. */
export const NEIGH_STAT_QUEUE_SENT = 10;
/** Queued packets handed to ops.errorReport because resolution failed (NEIGH_FAILED). */
export const NEIGH_STAT_QUEUE_FAILED = 11;
/** Queued packets dropped because their entry was removed (NEIGH_DEAD). */
export const NEIGH_STAT_QUEUE_FLUSHED = 12;
export const NEIGH_STAT_MAX = 13;
export const NEIGH_STAT_NAMES = [
  "allocs",
  "destroys",
  "lookups",
  "hits",
  "resFailed",
  "unresDiscards",
  "tableFulls",
  "periodicGcRuns",
  "forcedGcRuns",
  "queued",
  "queueSent",
  "queueFailed",
  "queueFlushed",
] as const;

/** `SK_WMEM_MAX`: the default `unres_qlen_bytes` (net.ipv4.neigh.default.unres_qlen_bytes), bytes of skb truesize. */
export const NEIGH_UNRES_QLEN_BYTES = 212_992;

/** Tunables (`neigh_parms` / `arp_tbl` defaults). Times in ms (jiffies at HZ = 1000). */
export interface NeighParms {
  /** Entries at most (gc_thresh3, default 1024). */
  max?: number;
  /** base_reachable_time (default 30 000). */
  baseReachableMs?: number;
  /** gc_staletime: unused STALE / FAILED entries are collected after this (default 60 000). */
  gcStaleMs?: number;
  /** retrans_time: between solicitations of an INCOMPLETE entry (default 1 000). */
  retransMs?: number;
  /** mcast_solicit: requests before INCOMPLETE becomes FAILED (default 3). */
  mcastSolicit?: number;
  /** arp_accept: create entries from unsolicited replies / gratuitous ARP (default false). */
  accept?: boolean;
  /** unres_qlen_bytes: truesize bytes an INCOMPLETE entry may queue (default {@link NEIGH_UNRES_QLEN_BYTES}). */
  unresQlenBytes?: number;
}

/**
 * What the table does with the packets it queued (`neigh->output` and
 * `neigh->ops->error_report`). Each call takes ownership of `skb` (its
 * `next` is 0). Called from {@link neighUpdate} / {@link arpRcv} (output),
 * {@link neighTimer} (errorReport) and queue overflow or entry removal
 * (drop), on the table's CPU; they may send packets and use the table.
 */
export interface NeighOps {
  /** The entry `i` resolved: add the link-layer header (MAC at `t.mac[i * 6]`) and transmit on `t.ifindex[i]`. */
  output(cpu: SkbCpu, t: NeighTable, i: number, skb: number): void;
  /** Resolution failed (`arp_error_report`): report it to the sender (ICMP host unreachable) and free with NEIGH_FAILED. */
  errorReport(cpu: SkbCpu, ifindex: number, skb: number): void;
  /** Free a packet the queue gives up with `reason` (NEIGH_QUEUEFULL, NEIGH_DEAD), counting it on `ifindex`. */
  drop(cpu: SkbCpu, ifindex: number, skb: number, reason: number): void;
}

/** A neighbour table (`struct neigh_table`), all entries in typed arrays. */
export class NeighTable {
  readonly max: number;
  readonly baseReachableMs: number;
  readonly gcStaleMs: number;
  readonly retransMs: number;
  readonly mcastSolicit: number;
  readonly accept: boolean;
  readonly unresQlenBytes: number;
  /** Per entry: ifindex, address (int32), state, probes sent, MAC (6 bytes at idx*6). */
  readonly ifindex: Int32Array;
  readonly addr: Int32Array;
  readonly state: Uint8Array;
  readonly probes: Uint8Array;
  readonly mac: Uint8Array;
  /** ms of the last state change (`updated`), the last reachability confirmation, the last use. */
  readonly updated: Float64Array;
  readonly confirmed: Float64Array;
  readonly used: Float64Array;
  /** Hash chains: bucket heads and next links (-1 ends); free entries are chained through `next`. */
  readonly buckets: Int32Array;
  readonly next: Int32Array;
  readonly hashMask: number;
  /** arp_queue per entry (see the module diagram): first and last skb (0 = empty), truesize bytes, packets. */
  readonly qHead: Uint32Array;
  readonly qTail: Uint32Array;
  readonly qBytes: Uint32Array;
  readonly qLen: Uint32Array;
  /** Packets queued on all entries now. */
  qTotal = 0;
  freeHead = 0;
  count = 0;
  readonly stats = new Float64Array(NEIGH_STAT_MAX);
  /** The CPU whose skbs the queues hold, and what to do with them ({@link neighTableSetOps}); null: no queueing. */
  cpu: SkbCpu | null = null;
  ops: NeighOps | null = null;

  /** Use {@link neighTableCreate}. */
  constructor(p: Required<NeighParms>) {
    this.max = p.max;
    this.baseReachableMs = p.baseReachableMs;
    this.gcStaleMs = p.gcStaleMs;
    this.retransMs = p.retransMs;
    this.mcastSolicit = p.mcastSolicit;
    this.accept = p.accept;
    this.unresQlenBytes = p.unresQlenBytes;
    const n = p.max;
    this.ifindex = new Int32Array(n);
    this.addr = new Int32Array(n);
    this.state = new Uint8Array(n);
    this.probes = new Uint8Array(n);
    this.mac = new Uint8Array(n * ETH_ALEN);
    this.updated = new Float64Array(n);
    this.confirmed = new Float64Array(n);
    this.used = new Float64Array(n);
    this.qHead = new Uint32Array(n);
    this.qTail = new Uint32Array(n);
    this.qBytes = new Uint32Array(n);
    this.qLen = new Uint32Array(n);
    let b = 1;
    while (b < n) b <<= 1;
    this.buckets = new Int32Array(b).fill(-1);
    this.hashMask = b - 1;
    this.next = new Int32Array(n);
    for (let i = 0; i < n; i++) this.next[i] = i + 1 < n ? i + 1 : -1;
  }
}

/** Create a neighbour table (cold). */
export function neighTableCreate(o: NeighParms = {}): NeighTable {
  const p: Required<NeighParms> = {
    max: o.max ?? 1024,
    baseReachableMs: o.baseReachableMs ?? 30_000,
    gcStaleMs: o.gcStaleMs ?? 60_000,
    retransMs: o.retransMs ?? 1_000,
    mcastSolicit: o.mcastSolicit ?? 3,
    accept: o.accept ?? false,
    unresQlenBytes: o.unresQlenBytes ?? NEIGH_UNRES_QLEN_BYTES,
  };
  for (const k of ["max", "baseReachableMs", "gcStaleMs", "retransMs", "mcastSolicit", "unresQlenBytes"] as const) {
    const v = p[k];
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`neighTableCreate: ${k} must be a positive integer, got ${v}`);
  }
  if (p.mcastSolicit > 255) throw new RangeError(`neighTableCreate: mcastSolicit ${p.mcastSolicit} exceeds 255`);
  return new NeighTable(p);
}

/** Install the queue's CPU and {@link NeighOps} (cold; once, before packets are queued). */
export function neighTableSetOps(t: NeighTable, cpu: SkbCpu, ops: NeighOps): void {
  if (t.qTotal !== 0 && t.cpu !== cpu) throw new Error(`neighTableSetOps: ${t.qTotal} packets are queued for another CPU`);
  t.cpu = cpu;
  t.ops = ops;
}

function neighHash(t: NeighTable, ifindex: number, addr: number): number {
  return (Math.imul(addr ^ Math.imul(ifindex, 0x27d4eb2d), 0x9e3779b1) >>> 16) & t.hashMask;
}

/** Entry index of (ifindex, addr) or -1, without counting or touching it. */
function find(t: NeighTable, ifindex: number, addr: number): number {
  addr |= 0;
  for (let i = t.buckets[neighHash(t, ifindex, addr)] as number; i !== -1; i = t.next[i] as number) {
    if (t.addr[i] === addr && t.ifindex[i] === ifindex) return i;
  }
  return -1;
}

/** `neigh_lookup`: the entry of `addr` (IPv4, any signedness) on `ifindex`, or -1. Counts lookups and hits. */
export function neighLookup(t: NeighTable, ifindex: number, addr: number): number {
  t.stats[NEIGH_STAT_LOOKUPS]++;
  const i = find(t, ifindex, addr);
  if (i !== -1) t.stats[NEIGH_STAT_HITS]++;
  return i;
}

function unlink(t: NeighTable, i: number): void {
  if ((t.qHead[i] as number) !== 0) queueRelease(t, i, Q_DEAD);
  const b = neighHash(t, t.ifindex[i] as number, t.addr[i] as number);
  let prev = -1;
  for (let j = t.buckets[b] as number; j !== -1; j = t.next[j] as number) {
    if (j === i) {
      if (prev === -1) t.buckets[b] = t.next[j] as number;
      else t.next[prev] = t.next[j] as number;
      break;
    }
    prev = j;
  }
  t.state[i] = NUD_NONE;
  t.next[i] = t.freeHead;
  t.freeHead = i;
  t.count--;
  t.stats[NEIGH_STAT_DESTROYS]++;
}

/**
 * `neigh_forced_gc`: free room by removing FAILED entries and unused STALE
 * ones (never PERMANENT, never INCOMPLETE). Returns entries removed.
 */
function forcedGc(t: NeighTable): number {
  t.stats[NEIGH_STAT_FORCED_GC_RUNS]++;
  let n = 0;
  for (let i = 0; i < t.max; i++) {
    const s = t.state[i] as number;
    if ((s & (NUD_FAILED | NUD_STALE)) !== 0) {
      unlink(t, i);
      n++;
    }
  }
  return n;
}

/** `neigh_create`: a new NUD_NONE entry, or -1 when the table is full even after a forced GC. */
function create(t: NeighTable, ifindex: number, addr: number, now: number): number {
  if (t.freeHead === -1 && forcedGc(t) === 0) {
    t.stats[NEIGH_STAT_TABLE_FULLS]++;
    return -1;
  }
  const i = t.freeHead;
  t.freeHead = t.next[i] as number;
  const b = neighHash(t, ifindex, addr | 0);
  t.ifindex[i] = ifindex;
  t.addr[i] = addr | 0;
  t.state[i] = NUD_NONE;
  t.probes[i] = 0;
  t.updated[i] = now;
  t.confirmed[i] = now;
  t.used[i] = now;
  t.next[i] = t.buckets[b] as number;
  t.buckets[b] = i;
  t.count++;
  t.stats[NEIGH_STAT_ALLOCS]++;
  return i;
}

/**
 * `neigh_update`: set the entry of (ifindex, addr) to `state` with the MAC
 * at `mac[macOff..+6)`, creating it when `create` is true. A PERMANENT (or
 * NOARP) entry is only changed by another PERMANENT update (the kernel's
 * NEIGH_UPDATE_F_ADMIN). When the new state is valid, the packets queued
 * on the entry are sent, oldest first, through `ops.output`. Returns the
 * entry index, or -1 (absent and not created, or the table is full).
 * Allocates nothing.
 */
export function neighUpdate(
  t: NeighTable,
  ifindex: number,
  addr: number,
  mac: Uint8Array,
  macOff: number,
  state: number,
  now: number,
  createIfMissing: boolean,
): number {
  let i = find(t, ifindex, addr);
  if (i === -1) {
    if (!createIfMissing) return -1;
    i = create(t, ifindex, addr, now);
    if (i === -1) return -1;
  }
  const old = t.state[i] as number;
  if ((old & (NUD_PERMANENT | NUD_NOARP)) !== 0 && (state & NUD_PERMANENT) === 0) return i;
  // Hearing from a valid neighbour with an unchanged address does not demote it (kernel: new = old).
  if (state === NUD_STALE && (old & NUD_VALID) !== 0 && etherAddrEqual(t.mac, i * ETH_ALEN, mac, macOff)) return i;
  etherAddrCopy(t.mac, i * ETH_ALEN, mac, macOff);
  t.state[i] = state;
  t.probes[i] = 0;
  t.updated[i] = now;
  if ((state & (NUD_REACHABLE | NUD_PERMANENT)) !== 0) t.confirmed[i] = now;
  // Resolved: what waited on arp_queue leaves now, in order, with this address.
  if ((state & NUD_VALID) !== 0 && (t.qHead[i] as number) !== 0) queueRelease(t, i, Q_OUTPUT);
  return i;
}

/** Add a static entry (`ip neigh add ... nud permanent`; cold). Returns its index (-1: table full). */
export function neighAddPermanent(t: NeighTable, ifindex: number, addr: number, mac: Uint8Array, now = 0): number {
  return neighUpdate(t, ifindex, addr, mac, 0, NUD_PERMANENT, now, true);
}

/** Remove the entry of (ifindex, addr), dropping its queued packets (NEIGH_DEAD). True when there was one. */
export function neighDelete(t: NeighTable, ifindex: number, addr: number): boolean {
  const i = find(t, ifindex, addr);
  if (i === -1) return false;
  unlink(t, i);
  return true;
}

/** Offset in `t.mac` of entry `i`'s link-layer address. */
export function neighMacOffset(i: number): number {
  return i * ETH_ALEN;
}

/**
 * The output fast path (`neigh_output` on a connected entry): the entry
 * whose MAC may be used to send to `addr` now, or -1 when there is none in
 * a valid state (the caller hands the packet to {@link __neighEventSend}).
 * A REACHABLE entry past its reachable time becomes STALE (still usable).
 * Marks the entry used. Allocates nothing.
 */
export function neighResolve(t: NeighTable, ifindex: number, addr: number, now: number): number {
  // The output path's lookup is __ipv4_neigh_lookup_noref: no lookups/hits counting.
  const i = find(t, ifindex, addr);
  if (i === -1) return -1;
  const st = t.state[i] as number;
  // PERMANENT / NOARP: nothing ages, nothing to note (the kernel's connected fast path).
  if ((st & (NUD_PERMANENT | NUD_NOARP)) !== 0) return i;
  if ((st & NUD_VALID) === 0) return -1;
  if (st === NUD_REACHABLE && now - (t.confirmed[i] as number) > t.baseReachableMs) {
    t.state[i] = NUD_STALE;
    t.updated[i] = now;
  }
  t.used[i] = now;
  return i;
}

/** `__neigh_event_send` outcomes. */
export const NEIGH_SEND_SOLICIT = 1;
export const NEIGH_SEND_WAIT = 0;
export const NEIGH_SEND_FULL = -1;
/** {@link __neighEventSend} only: the entry has a usable address; the skb was not taken (send it). */
export const NEIGH_SEND_VALID = 2;

/**
 * `__neigh_event_send`: an unresolved next hop is wanted. No entry (or a
 * NONE / FAILED one): it becomes INCOMPLETE with one probe counted and the
 * caller must send a request now (NEIGH_SEND_SOLICIT). Already INCOMPLETE:
 * NEIGH_SEND_WAIT (the timer retransmits). Valid: NEIGH_SEND_WAIT too
 * (nothing to do). Table full: NEIGH_SEND_FULL.
 */
export function neighEventSend(t: NeighTable, ifindex: number, addr: number, now: number): number {
  let i = find(t, ifindex, addr);
  if (i === -1) {
    i = create(t, ifindex, addr, now);
    if (i === -1) return NEIGH_SEND_FULL;
  }
  const s = t.state[i] as number;
  if (s !== NUD_NONE && s !== NUD_FAILED) return NEIGH_SEND_WAIT;
  startIncomplete(t, i, now);
  return NEIGH_SEND_SOLICIT;
}

/** NONE / FAILED -> INCOMPLETE with the first probe counted (the caller sends it). */
function startIncomplete(t: NeighTable, i: number, now: number): void {
  t.state[i] = NUD_INCOMPLETE;
  t.probes[i] = 1;
  t.updated[i] = now;
  t.used[i] = now;
}

/**
 * `__neigh_event_send` with a packet: `skb` (its next hop `addr` on
 * `ifindex` has no usable address) waits on the entry's arp_queue. A new,
 * NONE or FAILED entry becomes INCOMPLETE: NEIGH_SEND_SOLICIT, the caller
 * sends a request now; an INCOMPLETE one: NEIGH_SEND_WAIT (the timer
 * retransmits). Both took the skb. When the queued truesize would pass
 * unres_qlen_bytes the oldest packets are dropped first (`ops.drop`,
 * NEIGH_QUEUEFULL, unresDiscards); a packet bigger than the limit on its own
 * is still queued, alone. Not taken: NEIGH_SEND_FULL (no entry could be
 * made: the caller drops it, NEIGH_CREATEFAIL) and NEIGH_SEND_VALID (the
 * entry is usable: send it with {@link neighResolve}). Needs
 * {@link neighTableSetOps}. Allocates nothing.
 */
export function __neighEventSend(t: NeighTable, ifindex: number, addr: number, skb: number, now: number): number {
  const cpu = t.cpu;
  if (cpu === null || t.ops === null) throw new Error(`__neighEventSend: the neighbour table has no queue ops (neighTableSetOps) for skb 0x${skb.toString(16)}`);
  let i = find(t, ifindex, addr);
  if (i === -1) {
    i = create(t, ifindex, addr, now);
    if (i === -1) return NEIGH_SEND_FULL;
  }
  const s = t.state[i] as number;
  if ((s & NUD_VALID) !== 0) return NEIGH_SEND_VALID;
  let rc = NEIGH_SEND_WAIT;
  if (s !== NUD_INCOMPLETE) {
    startIncomplete(t, i, now);
    rc = NEIGH_SEND_SOLICIT;
  }
  queueTail(t, cpu, i, skb);
  return rc;
}

/** Append `skb` to entry i's queue, dropping the oldest while the bytes would pass the limit. */
function queueTail(t: NeighTable, cpu: SkbCpu, i: number, skb: number): void {
  const u32 = cpu.u32;
  const size = u32[(skb + SKB_TRUESIZE) >>> 2] as number;
  while ((t.qBytes[i] as number) + size > t.unresQlenBytes && (t.qHead[i] as number) !== 0) {
    const old = t.qHead[i] as number;
    const next = u32[(old + SKB_NEXT) >>> 2] as number;
    t.qHead[i] = next;
    if (next === 0) t.qTail[i] = 0;
    u32[(old + SKB_NEXT) >>> 2] = 0;
    t.qBytes[i] = (t.qBytes[i] as number) - (u32[(old + SKB_TRUESIZE) >>> 2] as number);
    t.qLen[i] = (t.qLen[i] as number) - 1;
    t.qTotal--;
    t.stats[NEIGH_STAT_UNRES_DISCARDS]++;
    (t.ops as NeighOps).drop(cpu, t.ifindex[i] as number, old, SKB_DROP_REASON.NEIGH_QUEUEFULL);
  }
  u32[(skb + SKB_NEXT) >>> 2] = 0;
  const tail = t.qTail[i] as number;
  if (tail === 0) t.qHead[i] = skb;
  else u32[(tail + SKB_NEXT) >>> 2] = skb;
  t.qTail[i] = skb;
  t.qBytes[i] = (t.qBytes[i] as number) + size;
  t.qLen[i] = (t.qLen[i] as number) + 1;
  t.qTotal++;
  t.stats[NEIGH_STAT_QUEUED]++;
}

/** Take entry i's whole queue off it (returns the first skb; the rest follow through next). */
function queueDetach(t: NeighTable, i: number): number {
  const head = t.qHead[i] as number;
  t.qTotal -= t.qLen[i] as number;
  t.qHead[i] = 0;
  t.qTail[i] = 0;
  t.qBytes[i] = 0;
  t.qLen[i] = 0;
  return head;
}

// What becomes of a detached queue (queueRelease).
const Q_OUTPUT = 0;
const Q_FAILED = 1;
const Q_DEAD = 2;

/**
 * Detach entry i's queue and hand every skb, oldest first, on: Q_OUTPUT to
 * ops.output (resolved), Q_FAILED to ops.errorReport (resolution failed),
 * Q_DEAD to ops.drop as NEIGH_DEAD (entry removed). The queue is detached
 * first, so an op that sends to this same neighbour starts a new queue.
 */
function queueRelease(t: NeighTable, i: number, how: number): void {
  const cpu = t.cpu as SkbCpu;
  const ops = t.ops as NeighOps;
  const u32 = cpu.u32;
  const ifindex = t.ifindex[i] as number;
  const stat = how === Q_OUTPUT ? NEIGH_STAT_QUEUE_SENT : how === Q_FAILED ? NEIGH_STAT_QUEUE_FAILED : NEIGH_STAT_QUEUE_FLUSHED;
  let skb = queueDetach(t, i);
  while (skb !== 0) {
    const next = u32[(skb + SKB_NEXT) >>> 2] as number;
    u32[(skb + SKB_NEXT) >>> 2] = 0;
    t.stats[stat]++;
    if (how === Q_OUTPUT) ops.output(cpu, t, i, skb);
    else if (how === Q_FAILED) ops.errorReport(cpu, ifindex, skb);
    else ops.drop(cpu, ifindex, skb, SKB_DROP_REASON.NEIGH_DEAD);
    skb = next;
  }
}

/**
 * `neigh_invalidate`: INCOMPLETE -> FAILED (resFailed); every queued skb
 * goes to ops.errorReport (see queueRelease).
 */
function neighInvalidate(t: NeighTable, i: number, now: number): void {
  t.state[i] = NUD_FAILED;
  t.updated[i] = now;
  t.stats[NEIGH_STAT_RES_FAILED]++;
  if ((t.qHead[i] as number) !== 0) queueRelease(t, i, Q_FAILED);
}

/** Packets waiting on all entries' queues now. */
export function neighQueuedCount(t: NeighTable): number {
  return t.qTotal;
}

/**
 * `neigh_flush_dev` / `neigh_ifdown`: remove every entry on `ifindex` (-1:
 * every device), PERMANENT ones too unless `keepPermanent`, dropping what
 * their queues hold (NEIGH_DEAD). Returns entries removed. Cold.
 */
export function neighTableFlush(t: NeighTable, ifindex = -1, keepPermanent = true): number {
  let n = 0;
  for (let i = 0; i < t.max; i++) {
    const s = t.state[i] as number;
    if (s === NUD_NONE || (ifindex !== -1 && t.ifindex[i] !== ifindex)) continue;
    if (keepPermanent && s === NUD_PERMANENT) continue;
    unlink(t, i);
    n++;
  }
  return n;
}

/**
 * The table's timers in one pass (`neigh_timer_handler` for every entry plus
 * `neigh_periodic_work`): REACHABLE past its reachable time becomes STALE;
 * INCOMPLETE past retrans_time is solicited again (`solicit(ifindex, addr)`,
 * which should send an ARP request) or, after mcast_solicit probes, becomes
 * FAILED (resFailed) and hands its queued packets to `ops.errorReport`;
 * STALE and FAILED entries unused for gc_staletime are removed. Returns
 * entries removed. Cold (a timer): may call back.
 */
export function neighTimer(t: NeighTable, now: number, solicit: ((ifindex: number, addr: number) => void) | null = null): number {
  t.stats[NEIGH_STAT_PERIODIC_GC_RUNS]++;
  let removed = 0;
  for (let i = 0; i < t.max; i++) {
    const s = t.state[i] as number;
    if (s === NUD_NONE || s === NUD_PERMANENT || s === NUD_NOARP) continue;
    if (s === NUD_REACHABLE) {
      if (now - (t.confirmed[i] as number) > t.baseReachableMs) {
        t.state[i] = NUD_STALE;
        t.updated[i] = now;
      }
    } else if (s === NUD_INCOMPLETE) {
      if (now - (t.updated[i] as number) >= t.retransMs) {
        if ((t.probes[i] as number) >= t.mcastSolicit) {
          neighInvalidate(t, i, now);
        } else {
          t.probes[i] = (t.probes[i] as number) + 1;
          t.updated[i] = now;
          if (solicit !== null) solicit(t.ifindex[i] as number, t.addr[i] as number);
        }
      }
      continue;
    }
    const s2 = t.state[i] as number;
    if ((s2 & (NUD_STALE | NUD_FAILED)) !== 0 && now - Math.max(t.used[i] as number, t.updated[i] as number) >= t.gcStaleMs) {
      unlink(t, i);
      removed++;
    }
  }
  return removed;
}

/** One entry as an object (cold; allocates). */
export interface NeighEntryInfo {
  ifindex: number;
  addr: number;
  state: number;
  mac: string;
  probes: number;
  /** Packets waiting on its queue. */
  queued: number;
}

/** Every entry (cold; allocates), like `ip neigh show`, in table order. */
export function neighDump(t: NeighTable): NeighEntryInfo[] {
  const out: NeighEntryInfo[] = [];
  for (let b = 0; b <= t.hashMask; b++) {
    for (let i = t.buckets[b] as number; i !== -1; i = t.next[i] as number) {
      const m = Array.from(t.mac.subarray(i * ETH_ALEN, i * ETH_ALEN + ETH_ALEN), (x) => x.toString(16).padStart(2, "0")).join(":");
      out.push({
        ifindex: t.ifindex[i] as number,
        addr: (t.addr[i] as number) >>> 0,
        state: t.state[i] as number,
        mac: m,
        probes: t.probes[i] as number,
        queued: t.qLen[i] as number,
      });
    }
  }
  return out;
}

/** Neighbour counters by name, the entry count and the packets queued now (allocates). */
export function neighStats(t: NeighTable): Record<(typeof NEIGH_STAT_NAMES)[number], number> & { entries: number; queuedNow: number } {
  const o = { entries: t.count, queuedNow: t.qTotal } as Record<string, number>;
  NEIGH_STAT_NAMES.forEach((n, i) => {
    o[n] = t.stats[i] as number;
  });
  return o as Record<(typeof NEIGH_STAT_NAMES)[number], number> & { entries: number; queuedNow: number };
}

// ---- ARP receive and send ----------------------------------------------------------------------

/** What ARP needs of a device: its MAC, IPv4 address (host order, 0 = none) and ifindex. */
export interface ArpDev {
  readonly mac: Uint8Array;
  readonly ipAddr: number;
  readonly ifindex: number;
}

/**
 * `arp_create`: a new skb holding an Ethernet header and an ARP packet
 * `op` from `srcHw` / `sip` to `tip`. `destHw` null sends to broadcast;
 * `targetHw` null leaves ar_tha zero (a request). Data, MAC header at the
 * Ethernet header; protocol ETH_P_ARP; dev = `ifindex`. No padding to 60
 * bytes (a NIC pads). Returns 0 when memory runs out.
 */
export function arpCreate(
  cpu: SkbCpu,
  op: number,
  ifindex: number,
  tip: number,
  sip: number,
  destHw: Uint8Array | null,
  destOff: number,
  srcHw: Uint8Array,
  targetHw: Uint8Array | null,
  targetOff: number,
): number {
  const skb = allocSkb(cpu, LL_RESERVED_SPACE_ETH + ARP_HLEN);
  if (skb === 0) return 0;
  skbReserve(cpu, skb, LL_RESERVED_SPACE_ETH);
  const arp = __skbPut(cpu, skb, ARP_HLEN);
  arpWrite(cpu.u8, arp, op, srcHw, 0, sip, targetHw, targetOff, tip);
  cpu.u32[(skb + SKB_DEV) >>> 2] = ifindex;
  cpu.u16[(skb + SKB_PROTOCOL) >>> 1] = ETH_P_ARP;
  if (destHw === null) ethHeaderPush(cpu, skb, srcHw, 0, ETH_BROADCAST_ADDR, 0, ETH_P_ARP);
  else ethHeaderPush(cpu, skb, srcHw, 0, destHw, destOff, ETH_P_ARP);
  return skb;
}

/**
 * Ask for `tip` on `dev` (`arp_solicit` behind `neigh_event_send`): when
 * the entry is new or FAILED it becomes INCOMPLETE and a broadcast request
 * from the device's address is returned for the caller to transmit;
 * otherwise (already asking, resolved, table full, no address, no memory)
 * 0. Later retransmissions come from {@link neighTimer}'s callback.
 */
export function arpSolicit(cpu: SkbCpu, dev: ArpDev, t: NeighTable, tip: number, stats: Float64Array, now: number): number {
  if (dev.ipAddr === 0) return 0;
  if (neighEventSend(t, dev.ifindex, tip, now) !== NEIGH_SEND_SOLICIT) return 0;
  return arpRequest(cpu, dev, tip, stats);
}

/** A broadcast request for `tip` from `dev` (a retransmission; no table change). 0 on no memory. */
export function arpRequest(cpu: SkbCpu, dev: ArpDev, tip: number, stats: Float64Array): number {
  const skb = arpCreate(cpu, ARPOP_REQUEST, dev.ifindex, tip, dev.ipAddr, null, 0, dev.mac, null, 0);
  if (skb === 0) {
    stats[ARP_OUT_ERRORS]++;
    return 0;
  }
  stats[ARP_OUT_REQUESTS]++;
  return skb;
}

/**
 * `arp_rcv` + `arp_process` for a host or router with one address per
 * device: `skb` has been through ethTypeTrans (data at the ARP header,
 * protocol ETH_P_ARP). Checks, like the kernel: not OTHERHOST, 28 bytes
 * pullable, hrd Ethernet, pro IPv4, hln 6, pln 4, op request or reply, the
 * target not multicast / loopback, the sender not multicast / broadcast,
 * the sender MAC not multicast.
 *
 * - A request for the device's address: the sender is learned (STALE, as
 *   `neigh_event_ns`) and the skb is turned into the reply in place (op 2,
 *   addresses swapped, our MAC, trimmed to 28 bytes, Ethernet header to the
 *   requester pushed). Returns 0: transmit it on the device.
 * - Anything else updates an existing entry for the sender (REACHABLE for
 *   a reply addressed to us, else STALE) — an entry that resolves sends its
 *   queued packets through `ops.output` before this returns —; new entries
 *   only from replies or gratuitous ARP when the table's `accept`
 *   (arp_accept) is set. Returns CONSUMED (inConsumed): the caller consumes
 *   the skb.
 *
 * Other returns are drop reasons (PKT_TOO_SMALL, L2_MALFORMED, OTHERHOST,
 * NOMEM) for the caller to free with. Counts in `stats`. Allocates no JS
 * objects and no skb.
 */
export function arpRcv(cpu: SkbCpu, skb: number, dev: ArpDev, t: NeighTable, stats: Float64Array, now: number): number {
  const u8 = cpu.u8;
  const pktType = u8[skb + SKB_PKT_TYPE] as number;
  if (pktType === PACKET_OTHERHOST) return SKB_DROP_REASON.OTHERHOST;
  if ((cpu.u32[(skb + SKB_LEN) >>> 2] as number) < ARP_HLEN) {
    stats[ARP_IN_ERRORS]++;
    return SKB_DROP_REASON.PKT_TOO_SMALL;
  }
  if (!pskbMayPull(cpu, skb, ARP_HLEN)) {
    stats[ARP_IN_ERRORS]++;
    return SKB_DROP_REASON.NOMEM;
  }
  let arp = skbDataPtr(cpu, skb);
  const op = be16(u8, arp + ARPH_OP);
  if (
    be16(u8, arp + ARPH_HRD) !== ARPHRD_ETHER ||
    be16(u8, arp + ARPH_PRO) !== ETH_P_IP ||
    u8[arp + ARPH_HLN] !== ETH_ALEN ||
    u8[arp + ARPH_PLN] !== 4 ||
    (op !== ARPOP_REQUEST && op !== ARPOP_REPLY)
  ) {
    stats[ARP_IN_ERRORS]++;
    return SKB_DROP_REASON.L2_MALFORMED;
  }
  const sip = be32s(u8, arp + ARPH_SIP);
  const tip = be32s(u8, arp + ARPH_TIP);
  if (ipv4IsMulticast(tip) || ipv4IsLoopback(tip) || ipv4IsMulticast(sip) || ipv4IsLbcast(sip) || isMulticastEtherAddr(u8, arp + ARPH_SHA)) {
    stats[ARP_IN_ERRORS]++;
    return SKB_DROP_REASON.L2_MALFORMED;
  }
  stats[op === ARPOP_REQUEST ? ARP_IN_REQUESTS : ARP_IN_REPLIES]++;
  const ours = dev.ipAddr !== 0 && tip === (dev.ipAddr | 0);
  if (op === ARPOP_REQUEST && ours) {
    // Duplicate address detection probes (sip 0) are answered but teach nothing.
    if (sip !== 0) neighUpdate(t, dev.ifindex, sip, u8, arp + ARPH_SHA, NUD_STALE, now, true);
    if (skbEnsureWritable(cpu, skb, ARP_HLEN) !== 0 || pskbTrim(cpu, skb, ARP_HLEN) !== 0) {
      stats[ARP_OUT_ERRORS]++;
      return SKB_DROP_REASON.NOMEM;
    }
    arp = skbDataPtr(cpu, skb);
    // ar_tha := requester (ar_sha), ar_tip := sip; ar_sha := us, ar_sip := tip.
    etherAddrCopy(u8, arp + ARPH_THA, u8, arp + ARPH_SHA);
    putBe32(u8, arp + ARPH_TIP, sip);
    etherAddrCopy(u8, arp + ARPH_SHA, dev.mac, 0);
    putBe32(u8, arp + ARPH_SIP, tip);
    putBe16(u8, arp + ARPH_OP, ARPOP_REPLY);
    cpu.u32[(skb + SKB_DEV) >>> 2] = dev.ifindex;
    if (ethHeaderPush(cpu, skb, dev.mac, 0, u8, arp + ARPH_THA, ETH_P_ARP) !== 0) {
      stats[ARP_OUT_ERRORS]++;
      return SKB_DROP_REASON.NOMEM;
    }
    stats[ARP_OUT_REPLIES]++;
    return 0;
  }
  if (op === ARPOP_REQUEST) stats[ARP_IN_NOT_OURS]++;
  if (sip !== 0) {
    const garp = sip === tip;
    const create = t.accept && (garp || op === ARPOP_REPLY);
    const state = op === ARPOP_REPLY && pktType === PACKET_HOST ? NUD_REACHABLE : NUD_STALE;
    neighUpdate(t, dev.ifindex, sip, u8, arp + ARPH_SHA, state, now, create);
  }
  stats[ARP_IN_CONSUMED]++;
  return SKB_DROP_REASON.CONSUMED;
}
