/**
 * IPv4 (net/ipv4/ip_input.c, ip_output.c, include/net/ip.h): header
 * accessors, receive validation (`ip_rcv_core`), TTL decrement with the
 * kernel's incremental checksum, header building, and fragmentation on
 * output (`ip_fragment` / `ip_do_fragment`, slow path).
 *
 * ```
 *  struct iphdr (20 bytes + options, ihl * 4 in all)
 *   0 version:4 ihl:4   1 tos   2 tot_len   4 id   6 frag_off (DF MF offset:13)
 *   8 ttl   9 protocol   10 check   12 saddr   16 daddr   20 options...
 *
 *  IPCB(skb) = struct inet_skb_parm at skb->cb[0..24)
 *   0 iif (u32)   4..15 options state (unused)   16 flags (u16)   18 frag_max_size (u16)
 *  ip-frag.ts keeps its per-fragment bookkeeping in cb[24..40).
 * ```
 *
 * Addresses are host-order u32 values of the wire bytes. Receive-path
 * functions return 0 (accepted) or a SKB_DROP_REASON code and never free:
 * the caller frees with `kfreeSkbReason(cpu, skb, reason)`. Counters are
 * `IPSTATS_MIB_*` slots of a Float64Array ({@link ipStatsCreate}). Nothing
 * on the packet path allocates JS objects.
 *
 * @module
 */

import { be16, be32, putBe16, putBe32, skbDataPtr, skbNetworkHeader } from "../skb/access.js";
import { allocSkb } from "../skb/alloc.js";
import { skbCopyHeader } from "../skb/clone.js";
import type { SkbCpu } from "../skb/cpu.js";
import { __skbPut, EINVAL, ENOMEM, pskbMayPull, skbCopyBits, skbReserve } from "../skb/data.js";
import { SKB_DROP_REASON } from "../skb/drop-reason.js";
import { consumeSkb, kfreeSkbListReason } from "../skb/free.js";
import {
  CHECKSUM_NONE,
  CHECKSUM_PARTIAL,
  PACKET_OTHERHOST,
  SKB_CB,
  SKB_CSUM_OFFSET,
  SKB_CSUM_START,
  SKB_DATA,
  SKB_HEAD,
  SKB_HEADER_UNSET,
  SKB_IIF,
  SKB_IP_SUMMED,
  SKB_LEN,
  SKB_MAC_HEADER,
  SKB_NETWORK_HEADER,
  SKB_NEXT,
  SKB_PKT_TYPE,
  SKB_TRANSPORT_HEADER,
} from "../skb/layout.js";
import { csumFold, ipFastCsum, skbChecksum } from "./checksum.js";
import { LL_RESERVED_SPACE_VLAN, pskbTrimRcsum, skbEnsureWritable } from "./ethernet.js";
import {
  CSUM_MANGLED_0,
  IP_DF,
  IP_MF,
  IP_OFFSET,
  IPH_CHECK,
  IPH_DADDR,
  IPH_FRAG_OFF,
  IPH_ID,
  IPH_MIN_LEN,
  IPH_PROTOCOL,
  IPH_SADDR,
  IPH_TOS,
  IPH_TOT_LEN,
  IPH_TTL,
  IPH_VER_IHL,
} from "./proto.js";

// ---- statistics (IPSTATS_MIB_*) -----------------------------------------------------------

/** `IPSTATS_MIB_INPKTS` (InReceives). */
export const IPSTATS_MIB_INPKTS = 0;
/** `IPSTATS_MIB_INOCTETS`. */
export const IPSTATS_MIB_INOCTETS = 1;
/** `IPSTATS_MIB_INHDRERRORS`. */
export const IPSTATS_MIB_INHDRERRORS = 2;
/** `IPSTATS_MIB_INTOOBIGERRORS`. */
export const IPSTATS_MIB_INTOOBIGERRORS = 3;
/** `IPSTATS_MIB_INNOROUTES`. */
export const IPSTATS_MIB_INNOROUTES = 4;
/** `IPSTATS_MIB_INADDRERRORS`. */
export const IPSTATS_MIB_INADDRERRORS = 5;
/** `IPSTATS_MIB_INUNKNOWNPROTOS`. */
export const IPSTATS_MIB_INUNKNOWNPROTOS = 6;
/** `IPSTATS_MIB_INTRUNCATEDPKTS`. */
export const IPSTATS_MIB_INTRUNCATEDPKTS = 7;
/** `IPSTATS_MIB_INDISCARDS`. */
export const IPSTATS_MIB_INDISCARDS = 8;
/** `IPSTATS_MIB_INDELIVERS`. */
export const IPSTATS_MIB_INDELIVERS = 9;
/** `IPSTATS_MIB_OUTFORWDATAGRAMS`. */
export const IPSTATS_MIB_OUTFORWDATAGRAMS = 10;
/** `IPSTATS_MIB_OUTREQUESTS`. */
export const IPSTATS_MIB_OUTREQUESTS = 11;
/** `IPSTATS_MIB_OUTDISCARDS`. */
export const IPSTATS_MIB_OUTDISCARDS = 12;
/** `IPSTATS_MIB_OUTNOROUTES`. */
export const IPSTATS_MIB_OUTNOROUTES = 13;
/** `IPSTATS_MIB_REASMTIMEOUT`. */
export const IPSTATS_MIB_REASMTIMEOUT = 14;
/** `IPSTATS_MIB_REASMREQDS`. */
export const IPSTATS_MIB_REASMREQDS = 15;
/** `IPSTATS_MIB_REASMOKS`. */
export const IPSTATS_MIB_REASMOKS = 16;
/** `IPSTATS_MIB_REASMFAILS`. */
export const IPSTATS_MIB_REASMFAILS = 17;
/** `IPSTATS_MIB_FRAGOKS`. */
export const IPSTATS_MIB_FRAGOKS = 18;
/** `IPSTATS_MIB_FRAGFAILS`. */
export const IPSTATS_MIB_FRAGFAILS = 19;
/** `IPSTATS_MIB_FRAGCREATES`. */
export const IPSTATS_MIB_FRAGCREATES = 20;
/** `IPSTATS_MIB_CSUMERRORS`. */
export const IPSTATS_MIB_CSUMERRORS = 21;
/** `IPSTATS_MIB_REASM_OVERLAPS`. */
export const IPSTATS_MIB_REASM_OVERLAPS = 22;
/** Number of IPSTATS slots. */
export const IPSTATS_MIB_MAX = 23;

/** SNMP names of the slots, index order (as in /proc/net/snmp and netstat). */
export const IPSTATS_NAMES = [
  "InReceives",
  "InOctets",
  "InHdrErrors",
  "InTooBigErrors",
  "InNoRoutes",
  "InAddrErrors",
  "InUnknownProtos",
  "InTruncatedPkts",
  "InDiscards",
  "InDelivers",
  "ForwDatagrams",
  "OutRequests",
  "OutDiscards",
  "OutNoRoutes",
  "ReasmTimeout",
  "ReasmReqds",
  "ReasmOKs",
  "ReasmFails",
  "FragOKs",
  "FragFails",
  "FragCreates",
  "InCsumErrors",
  "ReasmOverlaps",
] as const;

/** A zeroed IPSTATS counter array (one per CPU). Allocates. */
export function ipStatsCreate(): Float64Array {
  return new Float64Array(IPSTATS_MIB_MAX);
}

/** Counters as a name → value object (allocates; for reports). */
export function ipStatsSnapshot(st: Float64Array): Record<(typeof IPSTATS_NAMES)[number], number> {
  const o = {} as Record<string, number>;
  IPSTATS_NAMES.forEach((n, i) => {
    o[n] = st[i] as number;
  });
  return o as Record<(typeof IPSTATS_NAMES)[number], number>;
}

// ---- IPCB ------------------------------------------------------------------------------------

/** `IPCB(skb)->iif` (u32, skb offset). */
export const IPCB_IIF = SKB_CB;
/** `IPCB(skb)->flags` (u16, skb offset). */
export const IPCB_FLAGS = SKB_CB + 16;
/** `IPCB(skb)->frag_max_size` (u16, skb offset): largest fragment seen by reassembly. */
export const IPCB_FRAG_MAX_SIZE = SKB_CB + 18;
/** sizeof(struct inet_skb_parm) as laid out here. */
export const IPCB_SIZE = 24;
/** `IPSKB_FORWARDED`. */
export const IPSKB_FORWARDED = 0x01;
/** `IPSKB_FRAG_COMPLETE`. */
export const IPSKB_FRAG_COMPLETE = 0x08;
/** `IPSKB_FRAG_PMTU`: reassembled from DF fragments; refragment with DF. */
export const IPSKB_FRAG_PMTU = 0x40;
/**
 * Stand-in for `skb->ignore_df` (the skb layout has no bit for it): the
 * datagram may be fragmented despite DF. Set on reassembled datagrams, as
 * conntrack's defrag does (`nf_ct_ipv4_gather_frags`).
 */
export const IPSKB_IGNORE_DF = 0x8000;

/** `IPCB(skb)->frag_max_size`. */
export function ipcbFragMaxSize(cpu: SkbCpu, skb: number): number {
  return cpu.u16[(skb + IPCB_FRAG_MAX_SIZE) >>> 1] as number;
}
/** `IPCB(skb)->flags`. */
export function ipcbFlags(cpu: SkbCpu, skb: number): number {
  return cpu.u16[(skb + IPCB_FLAGS) >>> 1] as number;
}

// ---- header accessors (arena offset `iph` of the header) ---------------------------------

/** `ip_hdr(skb)`: arena offset of the IPv4 header (the network header). */
export function ipHdr(cpu: SkbCpu, skb: number): number {
  return skbNetworkHeader(cpu, skb);
}
/** `iph->version`. */
export function ipVersion(u8: Uint8Array, iph: number): number {
  return (u8[iph + IPH_VER_IHL] as number) >>> 4;
}
/** `iph->ihl` (32-bit words). */
export function ipIhl(u8: Uint8Array, iph: number): number {
  return (u8[iph + IPH_VER_IHL] as number) & 15;
}
/** `ip_hdrlen`: header length in bytes (ihl * 4). */
export function ipHdrLen(u8: Uint8Array, iph: number): number {
  return ((u8[iph + IPH_VER_IHL] as number) & 15) << 2;
}
/** `iph->tos`. */
export function ipTos(u8: Uint8Array, iph: number): number {
  return u8[iph + IPH_TOS] as number;
}
/** `ntohs(iph->tot_len)`. */
export function ipTotLen(u8: Uint8Array, iph: number): number {
  return be16(u8, iph + IPH_TOT_LEN);
}
/** `ntohs(iph->id)`. */
export function ipId(u8: Uint8Array, iph: number): number {
  return be16(u8, iph + IPH_ID);
}
/** `ntohs(iph->frag_off)`: flags and offset (8-byte units). */
export function ipFragOff(u8: Uint8Array, iph: number): number {
  return be16(u8, iph + IPH_FRAG_OFF);
}
/** `iph->ttl`. */
export function ipTtl(u8: Uint8Array, iph: number): number {
  return u8[iph + IPH_TTL] as number;
}
/** `iph->protocol`. */
export function ipProtocol(u8: Uint8Array, iph: number): number {
  return u8[iph + IPH_PROTOCOL] as number;
}
/** `iph->check` as stored (big-endian value). */
export function ipCheck(u8: Uint8Array, iph: number): number {
  return be16(u8, iph + IPH_CHECK);
}
/** `iph->saddr` (host-order u32). */
export function ipSaddr(u8: Uint8Array, iph: number): number {
  return be32(u8, iph + IPH_SADDR);
}
/** `iph->daddr` (host-order u32). */
export function ipDaddr(u8: Uint8Array, iph: number): number {
  return be32(u8, iph + IPH_DADDR);
}
/** `ip_is_fragment`: MF set or a non-zero offset. */
export function ipIsFragment(u8: Uint8Array, iph: number): boolean {
  return (be16(u8, iph + IPH_FRAG_OFF) & (IP_MF | IP_OFFSET)) !== 0;
}
/** `ip_send_check`: recompute the header checksum in place. */
export function ipSendCheck(u8: Uint8Array, iph: number): void {
  u8[iph + IPH_CHECK] = 0;
  u8[iph + IPH_CHECK + 1] = 0;
  putBe16(u8, iph + IPH_CHECK, ipFastCsum(u8, iph, (u8[iph + IPH_VER_IHL] as number) & 15));
}

// ---- address classes (include/linux/in.h) --------------------------------------------------

/** `ipv4_is_multicast`: 224.0.0.0/4. */
export function ipv4IsMulticast(a: number): boolean {
  return (a >>> 28) === 0xe;
}
/** `ipv4_is_lbcast`: 255.255.255.255. */
export function ipv4IsLbcast(a: number): boolean {
  return a >>> 0 === 0xffffffff;
}
/** `ipv4_is_zeronet`: 0.0.0.0/8. */
export function ipv4IsZeronet(a: number): boolean {
  return (a >>> 24) === 0;
}
/** `ipv4_is_loopback`: 127.0.0.0/8. */
export function ipv4IsLoopback(a: number): boolean {
  return (a >>> 24) === 127;
}

// ---- header building ---------------------------------------------------------------------------

let ipIdent = (Math.random() * 0x10000) >>> 0;

/**
 * `ip_select_ident` for datagrams without a socket: the next IP id of this
 * thread (a counter with a random start; the kernel hashes per destination).
 */
export function ipSelectIdent(): number {
  ipIdent = (ipIdent + 1) & 0xffff;
  return ipIdent;
}

/**
 * Write a 20-byte IPv4 header (no options) at arena offset `iph` and its
 * checksum. `fragOff` is the host-order frag_off field (flags | offset/8).
 */
export function ipBuildHeader(
  u8: Uint8Array,
  iph: number,
  tos: number,
  totLen: number,
  id: number,
  fragOff: number,
  ttl: number,
  protocol: number,
  saddr: number,
  daddr: number,
): void {
  u8[iph + IPH_VER_IHL] = 0x45;
  u8[iph + IPH_TOS] = tos;
  putBe16(u8, iph + IPH_TOT_LEN, totLen);
  putBe16(u8, iph + IPH_ID, id);
  putBe16(u8, iph + IPH_FRAG_OFF, fragOff);
  u8[iph + IPH_TTL] = ttl;
  u8[iph + IPH_PROTOCOL] = protocol;
  u8[iph + IPH_CHECK] = 0;
  u8[iph + IPH_CHECK + 1] = 0;
  putBe32(u8, iph + IPH_SADDR, saddr);
  putBe32(u8, iph + IPH_DADDR, daddr);
  putBe16(u8, iph + IPH_CHECK, ipFastCsum(u8, iph, 5));
}

/**
 * `ip_decrease_ttl`: decrement the TTL and patch the checksum exactly as the
 * kernel does (add htons(0x0100) with end-around carry; equal to
 * csumReplace2 of the ttl|protocol word for TTL ≥ 1). Returns the new TTL
 * (0 → 255 wraps like the u8 field). The header must be writable.
 */
export function ipDecreaseTtl(u8: Uint8Array, iph: number): number {
  let check = be16(u8, iph + IPH_CHECK);
  check += 0x0100;
  check = (check + (check >= 0xffff ? 1 : 0)) & 0xffff;
  putBe16(u8, iph + IPH_CHECK, check);
  const ttl = ((u8[iph + IPH_TTL] as number) - 1) & 0xff;
  u8[iph + IPH_TTL] = ttl;
  return ttl;
}

// ---- receive -------------------------------------------------------------------------------------

/**
 * `ip_rcv_core`: validate an IPv4 datagram at skb->data (after ethTypeTrans
 * / skbVlanUntag): not PACKET_OTHERHOST, header pullable, version 4, ihl ≥ 5,
 * ihl*4 pullable, header checksum, ihl*4 ≤ tot_len ≤ skb->len; link-layer
 * padding trimmed (`pskb_trim_rcsum`), network header = data, transport
 * header = data + ihl*4, IPCB cleared with iif = skb_iif.
 *
 * Returns 0 or OTHERHOST, IP_INHDR, IP_CSUM, PKT_TOO_SMALL, NOMEM, counting
 * InReceives/InOctets, InHdrErrors, InCsumErrors, InTruncatedPkts and
 * InDiscards in `stats` like the kernel. The caller frees on non-zero. The
 * skb must not be shared (the kernel's skb_share_check is the caller's).
 * Allocates no JS objects.
 */
export function ipRcvCore(cpu: SkbCpu, skb: number, stats: Float64Array): number {
  const u8 = cpu.u8;
  const u32 = cpu.u32;
  if ((u8[skb + SKB_PKT_TYPE] as number) === PACKET_OTHERHOST) return SKB_DROP_REASON.OTHERHOST;
  const len = u32[(skb + SKB_LEN) >>> 2] as number;
  stats[IPSTATS_MIB_INPKTS]++;
  stats[IPSTATS_MIB_INOCTETS] += len;
  if (!pskbMayPull(cpu, skb, IPH_MIN_LEN)) return inHdrError(stats, SKB_DROP_REASON.IP_INHDR);
  let iph = u32[(skb + SKB_DATA) >>> 2] as number;
  const vihl = u8[iph + IPH_VER_IHL] as number;
  const ihl = vihl & 15;
  if (ihl < 5 || vihl >>> 4 !== 4) return inHdrError(stats, SKB_DROP_REASON.IP_INHDR);
  const hl = ihl << 2;
  if (!pskbMayPull(cpu, skb, hl)) return inHdrError(stats, SKB_DROP_REASON.IP_INHDR);
  iph = u32[(skb + SKB_DATA) >>> 2] as number;
  if (ipFastCsum(u8, iph, ihl) !== 0) {
    stats[IPSTATS_MIB_CSUMERRORS]++;
    return inHdrError(stats, SKB_DROP_REASON.IP_CSUM);
  }
  const totLen = be16(u8, iph + IPH_TOT_LEN);
  if (len < totLen) {
    stats[IPSTATS_MIB_INTRUNCATEDPKTS]++;
    return SKB_DROP_REASON.PKT_TOO_SMALL;
  }
  if (totLen < hl) return inHdrError(stats, SKB_DROP_REASON.IP_INHDR);
  if (pskbTrimRcsum(cpu, skb, totLen) !== 0) {
    stats[IPSTATS_MIB_INDISCARDS]++;
    return SKB_DROP_REASON.NOMEM;
  }
  const nh = (u32[(skb + SKB_DATA) >>> 2] as number) - (u32[(skb + SKB_HEAD) >>> 2] as number);
  cpu.u16[(skb + SKB_NETWORK_HEADER) >>> 1] = nh;
  cpu.u16[(skb + SKB_TRANSPORT_HEADER) >>> 1] = nh + hl;
  // memset(IPCB(skb), 0, sizeof(struct inet_skb_parm)); IPCB(skb)->iif = skb->skb_iif
  const cb = (skb + SKB_CB) >>> 2;
  u32[cb] = u32[(skb + SKB_IIF) >>> 2] as number;
  u32[cb + 1] = 0;
  u32[cb + 2] = 0;
  u32[cb + 3] = 0;
  u32[cb + 4] = 0;
  u32[cb + 5] = 0;
  return 0;
}

function inHdrError(stats: Float64Array, reason: number): number {
  stats[IPSTATS_MIB_INHDRERRORS]++;
  return reason;
}

// ---- output helpers ------------------------------------------------------------------------------

/**
 * `skb_checksum_help`: resolve CHECKSUM_PARTIAL in software — sum from
 * csum_start to the end, store the folded value (0 as 0xffff) at
 * csum_start + csum_offset, mark CHECKSUM_NONE. 0 or -ENOMEM / -EINVAL.
 */
export function skbChecksumHelp(cpu: SkbCpu, skb: number): number {
  if ((cpu.u8[skb + SKB_IP_SUMMED] as number) !== CHECKSUM_PARTIAL) return 0;
  const headroom = skbDataPtr(cpu, skb) - (cpu.u32[(skb + SKB_HEAD) >>> 2] as number);
  const start = (cpu.u16[(skb + SKB_CSUM_START) >>> 1] as number) - headroom;
  const len = cpu.u32[(skb + SKB_LEN) >>> 2] as number;
  const where = start + (cpu.u16[(skb + SKB_CSUM_OFFSET) >>> 1] as number);
  if (start < 0 || where + 2 > len) return -EINVAL;
  if (skbEnsureWritable(cpu, skb, where + 2) !== 0) return -ENOMEM;
  const sum = csumFold(skbChecksum(cpu, skb, start, len - start, 0));
  putBe16(cpu.u8, skbDataPtr(cpu, skb) + where, sum === 0 ? CSUM_MANGLED_0 : sum);
  cpu.u8[skb + SKB_IP_SUMMED] = CHECKSUM_NONE;
  return 0;
}

/** IPOPT_COPIED: option must be copied into every fragment. */
const IPOPT_COPY = 0x80;
const IPOPT_END = 0;
const IPOPT_NOOP = 1;

/**
 * `ip_options_fragment`: overwrite the options that are not copied into
 * non-first fragments (copied bit clear) with NOPs, in the header at `iph`.
 */
export function ipOptionsFragment(u8: Uint8Array, iph: number): void {
  let l = (((u8[iph + IPH_VER_IHL] as number) & 15) << 2) - IPH_MIN_LEN;
  let p = iph + IPH_MIN_LEN;
  while (l > 0) {
    const t = u8[p] as number;
    if (t === IPOPT_END) return;
    if (t === IPOPT_NOOP) {
      l--;
      p++;
      continue;
    }
    if (l < 2) return;
    const optlen = u8[p + 1] as number;
    if (optlen < 2 || optlen > l) return;
    if ((t & IPOPT_COPY) === 0) u8.fill(IPOPT_NOOP, p, p + optlen);
    l -= optlen;
    p += optlen;
  }
}

/**
 * `ip_fragment` for a datagram at the skb's network header that is larger
 * than `mtu` (or carries a reassembly `frag_max_size`, which then caps the
 * fragment size as in the kernel).
 *
 * - fits (and no smaller frag_max_size): returns `skb` itself, untouched;
 * - DF set (unless IPSKB_IGNORE_DF, i.e. reassembled, and frag_max_size ≤
 *   mtu): counts FragFails and returns `-PKT_TOO_BIG`; the skb stays the
 *   caller's, who sends ICMP_FRAG_NEEDED (info = mtu) and frees it;
 * - otherwise the slow path of `ip_do_fragment`: returns the first of a
 *   `next`-linked list of new skbs (allocSkb, `llRs` bytes of headroom, the
 *   metadata of the original), each ≤ mtu bytes from the IP header, payload
 *   in multiples of 8 except the last, offsets / MF / tot_len / checksum set,
 *   non-copied options NOP-ed after the first, DF kept when the datagram
 *   was reassembled from DF fragments (IPSKB_FRAG_PMTU). The original is consumed.
 *   Counts FragCreates per fragment and FragOKs.
 *
 * Failures (`-MTU_EXCEEDED` when mtu leaves < 8 payload bytes, `-NOMEM`,
 * `-IP_INHDR` for an inconsistent header) count FragFails, free any
 * fragments already built and leave the original to the caller. A
 * CHECKSUM_PARTIAL original is resolved in software first. Allocates no JS
 * objects.
 */
export function ipFragment(cpu: SkbCpu, skb: number, mtu: number, stats: Float64Array, llRs = LL_RESERVED_SPACE_VLAN): number {
  const u8 = cpu.u8;
  const u32 = cpu.u32;
  const data = u32[(skb + SKB_DATA) >>> 2] as number;
  const nh = skbNetworkHeader(cpu, skb);
  const nhOff = nh - data;
  const total = (u32[(skb + SKB_LEN) >>> 2] as number) - nhOff;
  const fms = cpu.u16[(skb + IPCB_FRAG_MAX_SIZE) >>> 1] as number;
  let m = mtu;
  if (fms !== 0 && fms < m) m = fms;
  if (total <= m) return skb;
  const fragOff = be16(u8, nh + IPH_FRAG_OFF);
  const ipcbFl = cpu.u16[(skb + IPCB_FLAGS) >>> 1] as number;
  if ((fragOff & IP_DF) !== 0 && ((ipcbFl & IPSKB_IGNORE_DF) === 0 || fms > mtu)) {
    stats[IPSTATS_MIB_FRAGFAILS]++;
    return -SKB_DROP_REASON.PKT_TOO_BIG;
  }
  // Fragments of a datagram reassembled from DF fragments keep DF.
  const dfOut = (ipcbFl & IPSKB_FRAG_PMTU) !== 0 ? IP_DF : 0;
  const hlen = ((u8[nh + IPH_VER_IHL] as number) & 15) << 2;
  if (nhOff < 0 || hlen < IPH_MIN_LEN || total < hlen) {
    stats[IPSTATS_MIB_FRAGFAILS]++;
    return -SKB_DROP_REASON.IP_INHDR;
  }
  const space = m - hlen;
  if (space < 8) {
    stats[IPSTATS_MIB_FRAGFAILS]++;
    return -SKB_DROP_REASON.MTU_EXCEEDED;
  }
  if ((u8[skb + SKB_IP_SUMMED] as number) === CHECKSUM_PARTIAL && skbChecksumHelp(cpu, skb) !== 0) {
    stats[IPSTATS_MIB_FRAGFAILS]++;
    return -SKB_DROP_REASON.NOMEM;
  }
  // skbChecksumHelp may have moved the head: recompute the header position.
  const nhOff2 = skbNetworkHeader(cpu, skb) - (u32[(skb + SKB_DATA) >>> 2] as number);
  const firstOrig = (fragOff & IP_OFFSET) === 0;
  const notLast = (fragOff & IP_MF) !== 0;
  let left = total - hlen;
  let ptr = hlen;
  let offset = (fragOff & IP_OFFSET) << 3;
  let first = 0;
  let last = 0;
  while (left > 0) {
    let len = Math.min(left, space);
    if (len < left) len &= ~7;
    const s2 = allocSkb(cpu, len + hlen + llRs);
    if (s2 === 0) {
      kfreeSkbListReason(cpu, first, SKB_DROP_REASON.NOMEM);
      stats[IPSTATS_MIB_FRAGFAILS]++;
      return -SKB_DROP_REASON.NOMEM;
    }
    skbReserve(cpu, s2, llRs);
    const iph2 = __skbPut(cpu, s2, len + hlen);
    // ip_copy_metadata (header fields, cb incl. IPCB); headers are then set afresh.
    skbCopyHeader(cpu, s2, skb);
    const nh2 = iph2 - (u32[(s2 + SKB_HEAD) >>> 2] as number);
    cpu.u16[(s2 + IPCB_FRAG_MAX_SIZE) >>> 1] = 0; // ip_frag_ipcb copies the flags only
    cpu.u16[(s2 + SKB_MAC_HEADER) >>> 1] = SKB_HEADER_UNSET;
    cpu.u16[(s2 + SKB_NETWORK_HEADER) >>> 1] = nh2;
    cpu.u16[(s2 + SKB_TRANSPORT_HEADER) >>> 1] = nh2 + hlen;
    u8[s2 + SKB_IP_SUMMED] = CHECKSUM_NONE;
    if (skbCopyBits(cpu, skb, nhOff2, iph2, hlen) !== 0 || skbCopyBits(cpu, skb, nhOff2 + ptr, iph2 + hlen, len) !== 0) {
      kfreeSkbListReason(cpu, s2, SKB_DROP_REASON.IP_INHDR);
      kfreeSkbListReason(cpu, first, SKB_DROP_REASON.IP_INHDR);
      stats[IPSTATS_MIB_FRAGFAILS]++;
      return -SKB_DROP_REASON.IP_INHDR;
    }
    if (firstOrig && first !== 0 && hlen > IPH_MIN_LEN) ipOptionsFragment(u8, iph2);
    left -= len;
    putBe16(u8, iph2 + IPH_FRAG_OFF, (offset >>> 3) | dfOut | (left > 0 || notLast ? IP_MF : 0));
    putBe16(u8, iph2 + IPH_TOT_LEN, len + hlen);
    ipSendCheck(u8, iph2);
    if (last === 0) first = s2;
    else u32[(last + SKB_NEXT) >>> 2] = s2;
    last = s2;
    ptr += len;
    offset += len;
    stats[IPSTATS_MIB_FRAGCREATES]++;
  }
  consumeSkb(cpu, skb);
  stats[IPSTATS_MIB_FRAGOKS]++;
  return first;
}
