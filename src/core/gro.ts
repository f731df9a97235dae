/**
 * GRO (generic receive offload) for TCP over IPv4: `napi_gro_receive` →
 * `dev_gro_receive` → `inet_gro_receive` → `tcp4_gro_receive` /
 * `tcp_gro_receive` → `skb_gro_receive`, the completion
 * (`napi_gro_complete` → `inet_gro_complete` → `tcp4_gro_complete`) and the
 * verdict handling of `napi_skb_finish` (spec §3.7, §4.2–§4.4).
 *
 * ```
 *  GroList (one per NAPI instance, created once; per-flow keys in typed arrays)
 *  order: [ s3 | s0 | s5 | ... ]  oldest -> newest, at most maxHeld (MAX_GRO_SKBS = 8)
 *  slot:  skb  last  saddr daddr ports dev vlan mac  nextSeq count atomic age
 *
 *  held skb p (the first segment, data at its IPv4 header)
 *  +----+-----+-----------+  frags[0..16]: stolen heads / moved frags of later segments
 *  | ip | tcp | payload 1 |  frag_list -> lp (segment chained when frags ran out, or a
 *  +----+-----+-----------+               kmalloc head): later payload goes to lp's frags
 * ```
 *
 * A new skb (data at the IPv4 header, `protocol` ETH_P_IP, MAC header set,
 * VLAN tag already in `vlan_tci`) either
 * - merges into the held skb of its flow (same saddr, daddr, ports, ingress
 *   device, VLAN tag and MAC header; in order; same ack, TTL, TOS, DF, TCP
 *   flag word (flags other than CWR/FIN/PSH, data offset and window) and
 *   option bytes; IP id incrementing (or fixed when DF); payload ≤ the
 *   flow's MSS): GRO_MERGED or GRO_MERGED_FREE;
 * - is held as a new flow: GRO_HELD (the oldest held flow is delivered first
 *   when `maxHeld` are held);
 * - or is passed up unmerged: GRO_NORMAL (not IPv4/TCP, malformed, bad
 *   checksum, no payload, or carrying PSH/FIN/SYN/RST/URG without merging).
 * A held skb is delivered ("flushed") when a segment of its flow cannot be
 * merged (the new one is then handled as above), after merging a PSH, FIN
 * or short segment, when it would reach GRO_MAX_SIZE, when it is the oldest
 * of a full list, or by {@link groFlush}. Every decision is counted, by
 * reason, in `GroList.stats`.
 *
 * Merging (`skb_gro_receive`), by where the new skb's payload lives:
 * - only in frags (linear part = headers): the frags move to the held skb;
 *   the rest is released and its shell cached (NAPI_GRO_FREE);
 * - in a page-fragment head: the head is STOLEN, its payload becomes one
 *   frag (the page reference moves with it) followed by the skb's own
 *   frags; only the shell is left (NAPI_GRO_FREE_STOLEN_HEAD →
 *   `napiSkbFreeStolenHead`, straight into the NAPI cache);
 * - otherwise (kmalloc head), or when the held skb's frags are full: the
 *   skb itself, headers pulled, is chained on the held skb's frag_list
 *   (GRO_MERGED, nothing freed). This is `skb_gro_receive`'s "merge" path:
 *   unlike `skb_gro_receive_list` (fraglist GRO) the chained skb keeps no
 *   headers and later segments' payload is added to ITS frags. With
 *   `chainOnFragsFull: false` a full frag array flushes instead.
 *
 * Completion of an aggregate of more than one segment: IPv4 `tot_len` and
 * header checksum fixed; `gso_size` = MSS (the first segment's payload),
 * `gso_segs`, `gso_type` SKB_GSO_TCPV4 (| TCP_FIXEDID when the IP ids were
 * fixed, | TCP_ECN when CWR is set); PSH/FIN of merged segments are ORed
 * into the header. Like `tcp4_gro_complete`, the result is CHECKSUM_PARTIAL
 * with the TCP checksum field holding the pseudo-header sum and
 * `csum_start`/`csum_offset` pointing at it: every segment's checksum was
 * verified on the way in (CHECKSUM_NONE skbs in software, which marks them
 * CHECKSUM_UNNECESSARY), and PARTIAL lets a forwarding path hand the
 * aggregate to GSO/TSO without a second pass over 64 KiB; a local consumer
 * treats PARTIAL as verified, and `skbChecksumHelp` (gso.ts) fills the real
 * value in when needed. A single held segment is delivered unchanged
 * (`gso_size` 0, CHECKSUM_UNNECESSARY).
 *
 * Deviations from the kernel, on purpose: one list of `maxHeld` flows
 * instead of 8 hash buckets of 8 (the skb hash is not compared); skbs that
 * are shared, cloned, already GSO or carry a frag_list are passed up
 * (GRO_NORMAL) instead of being merged; CHECKSUM_COMPLETE is verified like
 * CHECKSUM_NONE; held skbs are not linked through `next`; GRO_NORMAL skbs
 * are delivered at once (the NAPI layer may batch in its `deliver`).
 *
 * Nothing here allocates JS objects per packet.
 *
 * @module
 */

import { csumReplace2, csumTcpudpMagic, ipFastCsum, skbChecksum } from "../net/checksum.js";
import {
  ETH_P_IP,
  IP_CE,
  IP_DF,
  IP_MF,
  IP_OFFSET,
  IPPROTO_TCP,
  TCP_FLAG_CWR,
  TCP_FLAG_FIN,
  TCP_FLAG_PSH,
  TCP_FLAG_RST,
  TCP_FLAG_SYN,
  TCP_FLAG_URG,
} from "../net/proto.js";
import { virtToHeadPage } from "../mm/page-alloc.js";
import { be16, fragDesc, putBe16, skbCloned, skbHeaderRelease, skbHeadlen, skbShinfo, be32s } from "../skb/access.js";
import type { SkbCpu } from "../skb/cpu.js";
import { __skbPull, pskbMayPull } from "../skb/data.js";
import { __kfreeSkb, __napiKfreeSkb, napiSkbFreeStolenHead } from "../skb/free.js";
import {
  CHECKSUM_PARTIAL,
  CHECKSUM_UNNECESSARY,
  FRAG_DESC_SIZE,
  FRAG_OFFSET,
  FRAG_PAGE,
  FRAG_SIZE,
  MAX_SKB_FRAGS,
  SHINFO_FRAG_LIST,
  SHINFO_GSO_SEGS,
  SHINFO_GSO_SIZE,
  SHINFO_GSO_TYPE,
  SHINFO_NR_FRAGS,
  SKB_CSUM_OFFSET,
  SKB_CSUM_START,
  SKB_DATA,
  SKB_DATA_LEN,
  SKB_DEV,
  SKB_END,
  SKB_FLAGS,
  SKB_HEAD,
  SKB_HEAD_OBJ_SIZE,
  SKB_HEADER_UNSET,
  SKB_IP_SUMMED,
  SKB_LEN,
  SKB_MAC_HEADER,
  SKB_NAPI_ID,
  SKB_NETWORK_HEADER,
  SKB_NEXT,
  SKB_PROTOCOL,
  SKB_TRANSPORT_HEADER,
  SKB_TRUESIZE,
  SKB_USERS,
  SKB_VLAN_PROTO,
  SKB_VLAN_TCI,
  SKBF_FCLONE_MASK,
  SKBF_HEAD_FRAG,
  SKBF_PP_RECYCLE,
  skbTruesize,
} from "../skb/layout.js";
import { SKB_GSO_TCP_ECN, SKB_GSO_TCP_FIXEDID, SKB_GSO_TCPV4 } from "./gso.js";


// ---- verdicts (enum gro_result) ----------------------------------------------------------
/** Merged into a held skb; the skb now belongs to it (frag_list chaining). */
export const GRO_MERGED = 0;
/** Merged; what is left of the skb must be freed (see `GroList.free`). */
export const GRO_MERGED_FREE = 1;
/** Held as the first segment of a new flow. */
export const GRO_HELD = 2;
/** Not aggregated: deliver it as it is. */
export const GRO_NORMAL = 3;
/** A protocol handler took it (not produced by the TCP path; handled by napiSkbFinish). */
export const GRO_CONSUMED = 4;

/** `NAPI_GRO_CB(skb)->free`: payload moved away as frags; release the rest. */
export const NAPI_GRO_FREE = 1;
/** `NAPI_GRO_CB(skb)->free`: the head buffer was adopted; only the shell is left. */
export const NAPI_GRO_FREE_STOLEN_HEAD = 2;

/** Held skbs per list (the kernel's per-bucket MAX_GRO_SKBS). */
export const MAX_GRO_SKBS = 8;
/** An aggregate stays below this many bytes (GRO_LEGACY_MAX_SIZE / GRO_MAX_SIZE, IPv4). */
export const GRO_MAX_SIZE = 65536;

/** Where delivered skbs go (`netif_receive_skb`); pass a function created once. */
export type GroDeliverFn = (cpu: SkbCpu, skb: number) => void;

// ---- counters (GroList.stats indices) -------------------------------------------------------
/** skbs offered to devGroReceive. */
export const GRO_STAT_RECEIVED = 0;
/** Verdicts GRO_MERGED + GRO_MERGED_FREE. */
export const GRO_STAT_MERGED = 1;
/** Merges that stole the skb's head (NAPI_GRO_FREE_STOLEN_HEAD). */
export const GRO_STAT_STOLEN_HEADS = 2;
/** Merges that moved the skb's frags (NAPI_GRO_FREE). */
export const GRO_STAT_FRAGS_MOVED = 3;
/** Merges that chained the skb on a frag_list (GRO_MERGED). */
export const GRO_STAT_FRAG_LIST = 4;
/** Verdicts GRO_HELD. */
export const GRO_STAT_HELD = 5;
/** Verdicts GRO_NORMAL. */
export const GRO_STAT_NORMAL = 6;
/** Held skbs delivered (any flush reason). */
export const GRO_STAT_FLUSHED = 7;
/** Held skbs delivered as aggregates of more than one segment. */
export const GRO_STAT_COALESCED = 8;
// Why a held skb was delivered.
/** Merged a PSH segment. */
export const GRO_FLUSH_PSH = 9;
/** Merged a FIN segment. */
export const GRO_FLUSH_FIN = 10;
/** Merged a segment shorter than the MSS (the last of a burst). */
export const GRO_FLUSH_SHORT = 11;
/** Next segment has SYN. */
export const GRO_FLUSH_SYN = 12;
/** Next segment has RST. */
export const GRO_FLUSH_RST = 13;
/** Next segment has URG. */
export const GRO_FLUSH_URG = 14;
/** Next segment has CWR (it starts a new aggregate). */
export const GRO_FLUSH_CWR = 15;
/** Other TCP flag-word differences: ECE, ACK, data offset, reserved bits, window. */
export const GRO_FLUSH_FLAGS = 16;
/** Different ack_seq. */
export const GRO_FLUSH_ACK = 17;
/** Different TCP option bytes. */
export const GRO_FLUSH_OPTIONS = 18;
/** IPv4 TTL / TOS / DF differ, or the new packet's tot_len / CE bit is off. */
export const GRO_FLUSH_IP = 19;
/** IPv4 id not in sequence (or not fixed for an atomic flow). */
export const GRO_FLUSH_IP_ID = 20;
/** Out of order: seq is not the held seq + held payload. */
export const GRO_FLUSH_OOO = 21;
/** Next segment is bigger than the flow's MSS. */
export const GRO_FLUSH_MSS = 22;
/** Next segment has no payload (a pure ACK). */
export const GRO_FLUSH_NO_PAYLOAD = 23;
/** The aggregate would reach GRO_MAX_SIZE (64 KiB). */
export const GRO_FLUSH_SIZE = 24;
/** MAX_SKB_FRAGS reached and chainOnFragsFull is off. */
export const GRO_FLUSH_FRAGS = 25;
/** Oldest of a full list, making room for a new flow. */
export const GRO_FLUSH_OLDEST = 26;
/** groFlush / napiGroFlush. */
export const GRO_FLUSH_CALL = 27;
/** page_pool ownership differs (pp_recycle). */
export const GRO_FLUSH_OTHER = 28;
// Why a new skb was passed up unmerged (GRO_NORMAL).
/** Not ETH_P_IP. */
export const GRO_NORMAL_NOT_IP = 29;
/** Shared, cloned, already GSO, or has a frag_list. */
export const GRO_NORMAL_INELIGIBLE = 30;
/** IPv4 header too short, options present (ihl ≠ 5), or version ≠ 4. */
export const GRO_NORMAL_IP_HDR = 31;
/** Bad IPv4 header checksum. */
export const GRO_NORMAL_IP_CSUM = 32;
/** An IPv4 fragment. */
export const GRO_NORMAL_FRAGMENT = 33;
/** Not TCP. */
export const GRO_NORMAL_NOT_TCP = 34;
/** TCP header truncated or data offset < 5. */
export const GRO_NORMAL_TCP_HDR = 35;
/** Bad TCP checksum (the stack will drop it). */
export const GRO_NORMAL_TCP_CSUM = 36;
/** Carries PSH/FIN/SYN/RST/URG and was not merged. */
export const GRO_NORMAL_FLAGS = 37;
/** No payload (pure ACK). */
export const GRO_NORMAL_NO_PAYLOAD = 38;
/** tot_len differs from the skb length (padding, truncation) or CE bit set. */
export const GRO_NORMAL_IP_FLUSH = 39;
/** Number of GRO counters. */
export const GRO_STAT_MAX = 40;

/** Counter names, index order. */
export const GRO_STAT_NAMES = [
  "received",
  "merged",
  "stolenHeads",
  "fragsMoved",
  "fragList",
  "held",
  "normal",
  "flushed",
  "coalesced",
  "flushPsh",
  "flushFin",
  "flushShort",
  "flushSyn",
  "flushRst",
  "flushUrg",
  "flushCwr",
  "flushFlags",
  "flushAck",
  "flushOptions",
  "flushIp",
  "flushIpId",
  "flushOoo",
  "flushMss",
  "flushNoPayload",
  "flushSize",
  "flushFrags",
  "flushOldest",
  "flushCall",
  "flushOther",
  "normalNotIp",
  "normalIneligible",
  "normalIpHdr",
  "normalIpCsum",
  "normalFragment",
  "normalNotTcp",
  "normalTcpHdr",
  "normalTcpCsum",
  "normalFlags",
  "normalNoPayload",
  "normalIpFlush",
] as const;
if (GRO_STAT_NAMES.length !== GRO_STAT_MAX) throw new Error("gro: GRO_STAT_NAMES out of step with GRO_STAT_MAX");

/** Options of a GRO list. */
export interface GroListOptions {
  /** NAPI id stamped on received skbs (0: leave them alone). */
  napiId?: number;
  /** Held flows at most (default MAX_GRO_SKBS = 8, range 1..64). */
  maxHeld?: number;
  /** When the held skb's frags are full, chain on frag_list as the kernel does (default true), or flush. */
  chainOnFragsFull?: boolean;
}

/**
 * The GRO state of one NAPI instance (`napi->gro_hash`, one list). Fields
 * are fixed at construction; per-flow state lives in typed arrays indexed
 * by slot. One CPU (thread) only.
 */
export class GroList {
  /** Held flows at most. */
  readonly maxHeld: number;
  /** Chain on frag_list when frags are full (kernel) instead of flushing. */
  readonly chainOnFragsFull: boolean;
  /** NAPI id stamped by napiGroReceive (0 = none). */
  napiId: number;
  /** The caller's clock (`jiffies`): held skbs record it; groFlush(all = false) delivers older ones. */
  now = 0;
  /** Held flows. */
  n = 0;
  /** `NAPI_GRO_CB(skb)->free` of the last devGroReceive (NAPI_GRO_FREE*, or 0). */
  free = 0;
  /** Slots, oldest first (order[0..n)). */
  readonly order: Uint8Array;
  /** Held skb per slot (0 = free slot). */
  readonly skb: Uint32Array;
  /** `NAPI_GRO_CB(p)->last`: where the next payload goes (p, or the last frag_list member). */
  readonly last: Uint32Array;
  /** Flow keys (32-bit words as int32): addresses, sport << 16 | dport, ingress device, vlan_proto << 16 | vlan_tci, MAC header length. */
  readonly saddr: Int32Array;
  readonly daddr: Int32Array;
  readonly ports: Int32Array;
  readonly dev: Uint32Array;
  readonly vlan: Int32Array;
  readonly macLen: Uint16Array;
  /** seq expected next (held seq + held payload). */
  readonly nextSeq: Int32Array;
  /** Segments merged so far (`NAPI_GRO_CB(p)->count`). */
  readonly count: Uint32Array;
  /** `NAPI_GRO_CB(p)->is_atomic`: DF set and IP ids (so far) fixed. */
  readonly atomic: Uint8Array;
  /** `now` when the flow was held. */
  readonly age: Float64Array;
  /** Counters, GRO_STAT_* / GRO_FLUSH_* / GRO_NORMAL_* indices. */
  readonly stats: Float64Array;

  /** A list for one NAPI instance (cold; allocates its arrays once). */
  constructor(o: GroListOptions = {}) {
    const max = o.maxHeld ?? MAX_GRO_SKBS;
    if (!Number.isInteger(max) || max < 1 || max > 64) throw new RangeError(`GroList: maxHeld ${max} must be an integer in 1..64`);
    this.maxHeld = max;
    this.chainOnFragsFull = o.chainOnFragsFull ?? true;
    this.napiId = o.napiId ?? 0;
    this.order = new Uint8Array(max);
    this.skb = new Uint32Array(max);
    this.last = new Uint32Array(max);
    this.saddr = new Int32Array(max);
    this.daddr = new Int32Array(max);
    this.ports = new Int32Array(max);
    this.dev = new Uint32Array(max);
    this.vlan = new Int32Array(max);
    this.macLen = new Uint16Array(max);
    this.nextSeq = new Int32Array(max);
    this.count = new Uint32Array(max);
    this.atomic = new Uint8Array(max);
    this.age = new Float64Array(max);
    this.stats = new Float64Array(GRO_STAT_MAX);
  }
}

/** Create a GRO list (same as `new GroList(o)`). */
export function groListCreate(o: GroListOptions = {}): GroList {
  return new GroList(o);
}

/** Held skbs right now. */
export function groHeldCount(gro: GroList): number {
  return gro.n;
}

/** Counters as a plain object (allocates). */
export function groStats(gro: GroList): Record<(typeof GRO_STAT_NAMES)[number], number> & { heldNow: number } {
  const o = { heldNow: gro.n } as Record<string, number>;
  GRO_STAT_NAMES.forEach((n, i) => {
    o[n] = gro.stats[i] as number;
  });
  return o as Record<(typeof GRO_STAT_NAMES)[number], number> & { heldNow: number };
}

// ---- receive ----------------------------------------------------------------------------------

function normal(gro: GroList, reason: number): number {
  gro.stats[GRO_STAT_NORMAL]++;
  gro.stats[reason]++;
  return GRO_NORMAL;
}

/** Make the first `n` bytes linear (`skb_gro_header_slow`). */
function pull(cpu: SkbCpu, skb: number, n: number): boolean {
  return skbHeadlen(cpu, skb) >= n || pskbMayPull(cpu, skb, n);
}

/** Same MAC header bytes (`compare_ether_header` / memcmp of mac_len bytes). */
function macEqual(cpu: SkbCpu, p: number, skb: number, len: number): boolean {
  if (len === 0) return true;
  const u8 = cpu.u8;
  const a = (cpu.u32[(p + SKB_HEAD) >>> 2] as number) + (cpu.u16[(p + SKB_MAC_HEADER) >>> 1] as number);
  const b = (cpu.u32[(skb + SKB_HEAD) >>> 2] as number) + (cpu.u16[(skb + SKB_MAC_HEADER) >>> 1] as number);
  for (let i = 0; i < len; i++) if (u8[a + i] !== u8[b + i]) return false;
  return true;
}

/**
 * `dev_gro_receive` for TCP/IPv4: classify `skb` against the held flows
 * and merge, hold or pass it. Held skbs that must go (the flow's aggregate
 * on a flush, or the oldest of a full list) are completed and handed to
 * `deliver` before this returns. Returns the verdict; for GRO_MERGED_FREE,
 * `gro.free` says what is left to free (napiSkbFinish does it). Never
 * throws on malformed packets: they come back as GRO_NORMAL.
 */
export function devGroReceive(cpu: SkbCpu, gro: GroList, skb: number, deliver: GroDeliverFn): number {
  const u8 = cpu.u8;
  const u16 = cpu.u16;
  const u32 = cpu.u32;
  const st = gro.stats;
  st[GRO_STAT_RECEIVED]++;
  gro.free = 0;
  if ((u16[(skb + SKB_PROTOCOL) >>> 1] as number) !== ETH_P_IP) return normal(gro, GRO_NORMAL_NOT_IP);
  const sh0 = skbShinfo(cpu, skb);
  if (
    Atomics.load(cpu.i32, (skb + SKB_USERS) >>> 2) !== 1 ||
    skbCloned(cpu, skb) ||
    (u32[(sh0 + SHINFO_FRAG_LIST) >>> 2] as number) !== 0 ||
    (u16[(sh0 + SHINFO_GSO_SIZE) >>> 1] as number) !== 0
  ) {
    return normal(gro, GRO_NORMAL_INELIGIBLE);
  }
  const len = u32[(skb + SKB_LEN) >>> 2] as number;

  // ---- inet_gro_receive: the IPv4 header ----
  if (len < 20 || !pull(cpu, skb, 20)) return normal(gro, GRO_NORMAL_IP_HDR);
  let d = u32[(skb + SKB_DATA) >>> 2] as number;
  if ((u8[d] as number) !== 0x45) return normal(gro, GRO_NORMAL_IP_HDR);
  const fragOff = be16(u8, d + 6);
  if ((fragOff & (IP_MF | IP_OFFSET)) !== 0) return normal(gro, GRO_NORMAL_FRAGMENT);
  if (ipFastCsum(u8, d, 5) !== 0) return normal(gro, GRO_NORMAL_IP_CSUM);
  if ((u8[d + 9] as number) !== IPPROTO_TCP) return normal(gro, GRO_NORMAL_NOT_TCP);
  // NAPI_GRO_CB(skb)->flush from the IP layer: tot_len must be the whole skb, no CE bit.
  const ipFlush = be16(u8, d + 2) !== len || (fragOff & IP_CE) !== 0;

  // ---- tcp_gro_receive: the TCP header ----
  if (len < 40 || !pull(cpu, skb, 40)) return normal(gro, GRO_NORMAL_TCP_HDR);
  d = u32[(skb + SKB_DATA) >>> 2] as number;
  const thlen = ((u8[d + 32] as number) >>> 4) * 4;
  if (thlen < 20 || len < 20 + thlen || !pull(cpu, skb, 20 + thlen)) return normal(gro, GRO_NORMAL_TCP_HDR);
  d = u32[(skb + SKB_DATA) >>> 2] as number;
  const t = d + 20;
  const head = u32[(skb + SKB_HEAD) >>> 2] as number;
  u16[(skb + SKB_NETWORK_HEADER) >>> 1] = d - head;
  u16[(skb + SKB_TRANSPORT_HEADER) >>> 1] = t - head;
  const saddr = be32s(u8, d + 12);
  const daddr = be32s(u8, d + 16);

  // tcp4_gro_receive: validate the checksum unless already flushing or known good.
  if (!ipFlush) {
    const summed = u8[skb + SKB_IP_SUMMED] as number;
    if (summed !== CHECKSUM_UNNECESSARY && summed !== CHECKSUM_PARTIAL) {
      if (csumTcpudpMagic(saddr, daddr, len - 20, IPPROTO_TCP, skbChecksum(cpu, skb, 20, len - 20, 0)) !== 0) {
        return normal(gro, GRO_NORMAL_TCP_CSUM);
      }
      u8[skb + SKB_IP_SUMMED] = CHECKSUM_UNNECESSARY;
    }
  }

  const plen = len - 20 - thlen;
  const flags = u8[t + 13] as number;
  const ports = be32s(u8, t);
  const dev = u32[(skb + SKB_DEV) >>> 2] as number;
  const vlan = ((u16[(skb + SKB_VLAN_PROTO) >>> 1] as number) << 16) | (u16[(skb + SKB_VLAN_TCI) >>> 1] as number);
  const macOff = u16[(skb + SKB_MAC_HEADER) >>> 1] as number;
  const macLen = macOff === SKB_HEADER_UNSET || macOff > d - head ? 0 : d - head - macOff;

  // gro_list_prepare + the flow match of inet/tcp_gro_receive, newest first.
  let slot = -1;
  for (let i = gro.n - 1; i >= 0; i--) {
    const s = gro.order[i] as number;
    if (
      gro.ports[s] === ports &&
      gro.saddr[s] === saddr &&
      gro.daddr[s] === daddr &&
      gro.dev[s] === dev &&
      gro.vlan[s] === vlan &&
      gro.macLen[s] === macLen &&
      macEqual(cpu, gro.skb[s] as number, skb, macLen)
    ) {
      slot = s;
      break;
    }
  }

  if (slot >= 0) {
    const p = gro.skb[slot] as number;
    const pd = u32[(p + SKB_DATA) >>> 2] as number;
    const pt = pd + 20;
    const cnt = gro.count[slot] as number;
    const mss = u16[(skbShinfo(cpu, p) + SHINFO_GSO_SIZE) >>> 1] as number;
    let reason = 0;
    // inet_gro_receive: everything but length, id and checksum must match.
    if (
      ipFlush ||
      u8[d + 8] !== u8[pd + 8] ||
      u8[d + 1] !== u8[pd + 1] ||
      ((fragOff ^ be16(u8, pd + 6)) & IP_DF) !== 0
    ) {
      reason = GRO_FLUSH_IP;
    }
    // tcp_gro_receive "found:".
    if (reason === 0) {
      const word = be32s(u8, t + 12);
      const diff = (word ^ be32s(u8, pt + 12)) & ~0x00890000; // all but CWR, PSH, FIN
      const dflags = (diff >>> 16) & 0xff;
      if ((flags & TCP_FLAG_CWR) !== 0) reason = GRO_FLUSH_CWR;
      else if ((dflags & TCP_FLAG_SYN) !== 0) reason = GRO_FLUSH_SYN;
      else if ((dflags & TCP_FLAG_RST) !== 0) reason = GRO_FLUSH_RST;
      else if ((dflags & TCP_FLAG_URG) !== 0) reason = GRO_FLUSH_URG;
      else if (diff !== 0) reason = GRO_FLUSH_FLAGS;
    }
    if (reason === 0 && be32s(u8, t + 8) !== be32s(u8, pt + 8)) reason = GRO_FLUSH_ACK;
    if (reason === 0) {
      // Same data offset (checked with the flag word): compare the option bytes.
      for (let i = 20; i < thlen; i++) {
        if (u8[t + i] !== u8[pt + i]) {
          reason = GRO_FLUSH_OPTIONS;
          break;
        }
      }
    }
    if (reason === 0 && (plen - 1) >>> 0 >= mss) reason = plen === 0 ? GRO_FLUSH_NO_PAYLOAD : GRO_FLUSH_MSS;
    if (reason === 0 && be32s(u8, t + 4) !== (gro.nextSeq[slot] as number)) reason = GRO_FLUSH_OOO;
    if (reason === 0) {
      // IP id (inet_gro_receive flush_id + the tcp_gro_receive atomic rule):
      // ids must increase by one per segment, or, for a DF flow, may stay
      // fixed; the second segment decides which. Checked after seq so that
      // reordering is counted as GRO_FLUSH_OOO.
      let flushId = (be16(u8, d + 4) - be16(u8, pd + 4)) & 0xffff;
      const atomic = (gro.atomic[slot] as number) !== 0;
      if (!atomic || (fragOff & IP_DF) === 0) flushId = ((flushId ^ cnt) & 0xffff) !== 0 ? 0xffff : 0;
      if (flushId !== 1 || cnt !== 1 || !atomic) {
        if (flushId !== 0) reason = GRO_FLUSH_IP_ID;
      } else {
        gro.atomic[slot] = 0;
      }
    }
    if (reason === 0 && ((u8[p + SKB_FLAGS] as number) & SKBF_PP_RECYCLE) !== ((u8[skb + SKB_FLAGS] as number) & SKBF_PP_RECYCLE)) {
      reason = GRO_FLUSH_OTHER;
    }
    if (reason === 0) reason = skbGroReceive(cpu, gro, slot, skb, 20 + thlen, plen);
    if (reason === 0) {
      // Merged. tcp_flag_word(th2) |= flags & (FIN | PSH).
      u8[pt + 13] = (u8[pt + 13] as number) | (flags & (TCP_FLAG_FIN | TCP_FLAG_PSH));
      gro.nextSeq[slot] = ((gro.nextSeq[slot] as number) + plen) | 0;
      st[GRO_STAT_MERGED]++;
      // out_check_final: deliver the aggregate now if this was its last segment.
      if ((flags & TCP_FLAG_PSH) !== 0) flushSlot(cpu, gro, slot, GRO_FLUSH_PSH, deliver);
      else if ((flags & TCP_FLAG_FIN) !== 0) flushSlot(cpu, gro, slot, GRO_FLUSH_FIN, deliver);
      else if (plen < mss) flushSlot(cpu, gro, slot, GRO_FLUSH_SHORT, deliver);
      return gro.free !== 0 ? GRO_MERGED_FREE : GRO_MERGED;
    }
    // Not mergeable: the held aggregate goes first, then the new skb is handled alone.
    flushSlot(cpu, gro, slot, reason, deliver);
  }

  // out_check_final with mss = 1, plus the IP layer's flush.
  if (plen === 0) return normal(gro, GRO_NORMAL_NO_PAYLOAD);
  if ((flags & (TCP_FLAG_URG | TCP_FLAG_PSH | TCP_FLAG_RST | TCP_FLAG_SYN | TCP_FLAG_FIN)) !== 0) {
    return normal(gro, GRO_NORMAL_FLAGS);
  }
  if (ipFlush) return normal(gro, GRO_NORMAL_IP_FLUSH);

  // Hold as a new flow.
  if (gro.n >= gro.maxHeld) flushSlot(cpu, gro, gro.order[0] as number, GRO_FLUSH_OLDEST, deliver);
  let s = 0;
  while ((gro.skb[s] as number) !== 0) s++;
  gro.skb[s] = skb;
  gro.last[s] = skb;
  gro.saddr[s] = saddr;
  gro.daddr[s] = daddr;
  gro.ports[s] = ports;
  gro.dev[s] = dev;
  gro.vlan[s] = vlan;
  gro.macLen[s] = macLen;
  gro.nextSeq[s] = (be32s(u8, t + 4) + plen) | 0;
  gro.count[s] = 1;
  gro.atomic[s] = (fragOff & IP_DF) !== 0 ? 1 : 0;
  gro.age[s] = gro.now;
  gro.order[gro.n++] = s;
  u16[(skbShinfo(cpu, skb) + SHINFO_GSO_SIZE) >>> 1] = plen;
  u32[(skb + SKB_NEXT) >>> 2] = 0;
  st[GRO_STAT_HELD]++;
  return GRO_HELD;
}

/**
 * `skb_gro_receive`: add the payload of `skb` (`plen` bytes after `offset`
 * header bytes, all linear) to the held skb in `slot`. Returns 0 when merged
 * (setting `gro.free`), or the flush reason when the aggregate cannot take
 * it (GRO_FLUSH_SIZE; GRO_FLUSH_FRAGS when chaining is off).
 */
function skbGroReceive(cpu: SkbCpu, gro: GroList, slot: number, skb: number, offset: number, plen: number): number {
  const u8 = cpu.u8;
  const u32 = cpu.u32;
  const p = gro.skb[slot] as number;
  if ((u32[(p + SKB_LEN) >>> 2] as number) + plen >= GRO_MAX_SIZE) return GRO_FLUSH_SIZE;
  const lp = gro.last[slot] as number;
  const pinfo = skbShinfo(cpu, lp);
  const skbinfo = skbShinfo(cpu, skb);
  const headlen = skbHeadlen(cpu, skb);
  const skbNr = u8[skbinfo + SHINFO_NR_FRAGS] as number;
  const pNr = u8[pinfo + SHINFO_NR_FRAGS] as number;
  const st = gro.stats;
  let delta = 0;
  let target = lp; // whose len / truesize grow besides p
  let chain = false;
  if (headlen <= offset) {
    // Payload only in frags (headlen == offset: the headers were pulled): move them.
    if (pNr + skbNr > MAX_SKB_FRAGS) {
      if (gro.chainOnFragsFull === false) return GRO_FLUSH_FRAGS;
      chain = true;
    } else {
      const src = fragDesc(skbinfo, 0);
      u8.copyWithin(fragDesc(pinfo, pNr), src, src + skbNr * FRAG_DESC_SIZE);
      u8[pinfo + SHINFO_NR_FRAGS] = pNr + skbNr;
      u8[skbinfo + SHINFO_NR_FRAGS] = 0;
      // All fragments' truesize: remove head size + sk_buff.
      const ts = u32[(skb + SKB_TRUESIZE) >>> 2] as number;
      const dataLen = u32[(skb + SKB_DATA_LEN) >>> 2] as number;
      delta = ts - skbTruesize(u32[(skb + SKB_END) >>> 2] as number);
      u32[(skb + SKB_TRUESIZE) >>> 2] = ts - dataLen;
      u32[(skb + SKB_LEN) >>> 2] = (u32[(skb + SKB_LEN) >>> 2] as number) - dataLen;
      u32[(skb + SKB_DATA_LEN) >>> 2] = 0;
      gro.free = NAPI_GRO_FREE;
      st[GRO_STAT_FRAGS_MOVED]++;
    }
  } else {
    const f = u8[skb + SKB_FLAGS] as number;
    const skbHead = u32[(skb + SKB_HEAD) >>> 2] as number;
    const pa = (f & SKBF_HEAD_FRAG) !== 0 && (f & SKBF_FCLONE_MASK) === 0 ? cpu.mm.pageAllocsById[cpu.mm.pageOwner[skbHead >>> 12] as number] : undefined;
    if (pa === undefined) {
      chain = true; // kmalloc head: nothing to steal
    } else if (pNr + 1 + skbNr > MAX_SKB_FRAGS) {
      if (gro.chainOnFragsFull === false) return GRO_FLUSH_FRAGS;
      chain = true;
    } else {
      // Steal the head: its payload becomes a frag; the page reference moves with it.
      const page = virtToHeadPage(pa, skbHead);
      const fd = fragDesc(pinfo, pNr);
      u32[(fd + FRAG_PAGE) >>> 2] = page;
      u32[(fd + FRAG_OFFSET) >>> 2] = (u32[(skb + SKB_DATA) >>> 2] as number) + offset - page;
      u32[(fd + FRAG_SIZE) >>> 2] = headlen - offset;
      if (skbNr !== 0) {
        const src = fragDesc(skbinfo, 0);
        u8.copyWithin(fd + FRAG_DESC_SIZE, src, src + skbNr * FRAG_DESC_SIZE);
      }
      u8[pinfo + SHINFO_NR_FRAGS] = pNr + 1 + skbNr;
      delta = (u32[(skb + SKB_TRUESIZE) >>> 2] as number) - SKB_HEAD_OBJ_SIZE;
      gro.free = NAPI_GRO_FREE_STOLEN_HEAD;
      st[GRO_STAT_STOLEN_HEADS]++;
    }
  }
  if (chain) {
    // "merge:": the skb itself, headers pulled, goes on the frag_list.
    delta = u32[(skb + SKB_TRUESIZE) >>> 2] as number;
    __skbPull(cpu, skb, offset);
    if (lp === p) u32[(skbShinfo(cpu, p) + SHINFO_FRAG_LIST) >>> 2] = skb;
    else u32[(lp + SKB_NEXT) >>> 2] = skb;
    u32[(skb + SKB_NEXT) >>> 2] = 0;
    gro.last[slot] = skb;
    skbHeaderRelease(cpu, skb);
    target = p;
    st[GRO_STAT_FRAG_LIST]++;
  }
  gro.count[slot] = (gro.count[slot] as number) + 1;
  addLen(cpu, p, plen, delta);
  if (target !== p) addLen(cpu, target, plen, delta);
  return 0;
}

function addLen(cpu: SkbCpu, skb: number, plen: number, truesize: number): void {
  const u32 = cpu.u32;
  u32[(skb + SKB_DATA_LEN) >>> 2] = (u32[(skb + SKB_DATA_LEN) >>> 2] as number) + plen;
  u32[(skb + SKB_LEN) >>> 2] = (u32[(skb + SKB_LEN) >>> 2] as number) + plen;
  u32[(skb + SKB_TRUESIZE) >>> 2] = (u32[(skb + SKB_TRUESIZE) >>> 2] as number) + truesize;
}

/** Remove `slot` from the list, complete its skb and deliver it. */
function flushSlot(cpu: SkbCpu, gro: GroList, slot: number, reason: number, deliver: GroDeliverFn): void {
  const order = gro.order;
  const n = gro.n;
  let i = 0;
  while ((order[i] as number) !== slot) i++;
  for (; i < n - 1; i++) order[i] = order[i + 1] as number;
  gro.n = n - 1;
  const p = gro.skb[slot] as number;
  const count = gro.count[slot] as number;
  const atomic = (gro.atomic[slot] as number) !== 0;
  gro.skb[slot] = 0;
  gro.last[slot] = 0;
  gro.stats[GRO_STAT_FLUSHED]++;
  gro.stats[reason]++;
  if (count > 1) gro.stats[GRO_STAT_COALESCED]++;
  napiGroComplete(cpu, p, count, atomic);
  deliver(cpu, p);
}

/**
 * `napi_gro_complete` + `inet_gro_complete` + `tcp4_gro_complete`: turn a
 * held skb into what the stack expects. One segment: `gso_size` back to 0,
 * nothing else. More: IPv4 tot_len and checksum, TCP checksum field = the
 * pseudo-header sum for CHECKSUM_PARTIAL, gso_segs / gso_type.
 */
function napiGroComplete(cpu: SkbCpu, p: number, count: number, atomic: boolean): void {
  const u8 = cpu.u8;
  const u16 = cpu.u16;
  const u32 = cpu.u32;
  const sh = skbShinfo(cpu, p);
  if (count === 1) {
    u16[(sh + SHINFO_GSO_SIZE) >>> 1] = 0;
    return;
  }
  const d = u32[(p + SKB_DATA) >>> 2] as number;
  const head = u32[(p + SKB_HEAD) >>> 2] as number;
  const len = u32[(p + SKB_LEN) >>> 2] as number;
  csumReplace2(u8, d + 10, be16(u8, d + 2), len);
  putBe16(u8, d + 2, len);
  const t = d + 20;
  putBe16(u8, t + 16, ~csumTcpudpMagic(be32s(u8, d + 12), be32s(u8, d + 16), len - 20, IPPROTO_TCP, 0) & 0xffff);
  u16[(p + SKB_CSUM_START) >>> 1] = t - head;
  u16[(p + SKB_CSUM_OFFSET) >>> 1] = 16;
  u8[p + SKB_IP_SUMMED] = CHECKSUM_PARTIAL;
  u16[(p + SKB_NETWORK_HEADER) >>> 1] = d - head;
  u16[(p + SKB_TRANSPORT_HEADER) >>> 1] = t - head;
  u16[(sh + SHINFO_GSO_SEGS) >>> 1] = count;
  let type = (u32[(sh + SHINFO_GSO_TYPE) >>> 2] as number) | SKB_GSO_TCPV4;
  if (atomic) type |= SKB_GSO_TCP_FIXEDID;
  if (((u8[t + 13] as number) & TCP_FLAG_CWR) !== 0) type |= SKB_GSO_TCP_ECN;
  u32[(sh + SHINFO_GSO_TYPE) >>> 2] = type;
}

/**
 * `napi_skb_finish` (spec §4.2): act on a verdict. GRO_NORMAL → deliver;
 * GRO_MERGED_FREE → a stolen head's shell goes to the NAPI cache
 * (`napiSkbFreeStolenHead`), otherwise the skb is released and its shell
 * cached (`__napiKfreeSkb`) — fast clones go to `__kfreeSkb` (the 5.14 fix);
 * GRO_HELD / GRO_MERGED / GRO_CONSUMED → nothing. Returns `ret`.
 */
export function napiSkbFinish(cpu: SkbCpu, gro: GroList, skb: number, ret: number, deliver: GroDeliverFn): number {
  if (ret === GRO_NORMAL) {
    deliver(cpu, skb);
  } else if (ret === GRO_MERGED_FREE) {
    if (gro.free === NAPI_GRO_FREE_STOLEN_HEAD) napiSkbFreeStolenHead(cpu, skb);
    else if (((cpu.u8[skb + SKB_FLAGS] as number) & SKBF_FCLONE_MASK) !== 0) __kfreeSkb(cpu, skb);
    else __napiKfreeSkb(cpu, skb);
  }
  return ret;
}

/**
 * `napi_gro_receive`: stamp the NAPI id, run GRO, finish the verdict.
 * Delivered skbs (this one on GRO_NORMAL, and held aggregates it flushed)
 * go to `deliver`. Returns the verdict. Allocates no JS objects.
 */
export function napiGroReceive(cpu: SkbCpu, gro: GroList, skb: number, deliver: GroDeliverFn): number {
  if (gro.napiId !== 0) cpu.u32[(skb + SKB_NAPI_ID) >>> 2] = gro.napiId;
  return napiSkbFinish(cpu, gro, skb, devGroReceive(cpu, gro, skb, deliver), deliver);
}

/**
 * Deliver held skbs, oldest first: all of them (`all`), or only those held
 * before the current `gro.now` (the kernel's flush_old at the end of a
 * full-budget poll). Counted as GRO_FLUSH_CALL.
 */
export function groFlush(cpu: SkbCpu, gro: GroList, all: boolean, deliver: GroDeliverFn): void {
  while (gro.n > 0) {
    const s = gro.order[0] as number;
    if (!all && gro.age[s] === gro.now) return;
    flushSlot(cpu, gro, s, GRO_FLUSH_CALL, deliver);
  }
}

/** `napi_gro_flush(napi, flush_old)`: groFlush with the kernel's argument sense. */
export function napiGroFlush(cpu: SkbCpu, gro: GroList, flushOld: boolean, deliver: GroDeliverFn): void {
  groFlush(cpu, gro, !flushOld, deliver);
}
