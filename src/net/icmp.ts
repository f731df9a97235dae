/**
 * ICMP for a router (net/ipv4/icmp.c): answering echo requests in place and
 * building error messages (`__icmp_send`) — time exceeded, destination
 * unreachable / fragmentation needed, parameter problem.
 *
 * ```
 *  struct icmphdr (8 bytes)
 *   0 type   1 code   2 checksum   4 un: echo {id, sequence} | gateway | frag {-, mtu}
 *
 *  error message = new IP header (20) + icmphdr (8) + the offending datagram
 *                  from its IP header on, up to 576 bytes in all (RFC 1812 4.3.2.3)
 * ```
 *
 * Counters are `ICMP_MIB_*` slots of a Float64Array ({@link icmpStatsCreate}).
 * Nothing on the packet path allocates JS objects; icmpSend allocates one
 * skb from the arena.
 *
 * @module
 */

import { be16, be32s, fragDesc, putBe16, putBe32, skbNetworkHeader, skbShinfo } from "../skb/access.js";
import { allocSkb } from "../skb/alloc.js";
import type { SkbCpu } from "../skb/cpu.js";
import { __skbPull, __skbPush, __skbPut, pskbMayPull, skbCopyBits, skbReserve } from "../skb/data.js";
import { SKB_DROP_REASON } from "../skb/drop-reason.js";
import { kfreeSkbReason } from "../skb/free.js";
import {
  CHECKSUM_UNNECESSARY,
  FRAG_OFFSET,
  FRAG_PAGE,
  FRAG_SIZE,
  PACKET_HOST,
  SHINFO_FRAG_LIST,
  SHINFO_NR_FRAGS,
  SKB_DATA,
  SKB_DATA_LEN,
  SKB_DEV,
  SKB_HEAD,
  SKB_IP_SUMMED,
  SKB_LEN,
  SKB_NETWORK_HEADER,
  SKB_NEXT,
  SKB_PKT_TYPE,
  SKB_PROTOCOL,
  SKB_TAIL,
  SKB_TRANSPORT_HEADER,
} from "../skb/layout.js";
import { csumFold, csumPartial, csumReplace2, skbChecksum } from "./checksum.js";
import { LL_RESERVED_SPACE_VLAN, skbEnsureWritable } from "./ethernet.js";
import { ipBuildHeader, ipSelectIdent, ipv4IsLbcast, ipv4IsMulticast, ipv4IsZeronet } from "./ipv4.js";
import {
  ETH_P_IP,
  ICMP_DEST_UNREACH,
  ICMP_ECHO,
  ICMP_ECHOREPLY,
  ICMP_PARAMETERPROB,
  ICMP_TIME_EXCEEDED,
  ICMPH_CHECKSUM,
  ICMPH_CODE,
  ICMPH_LEN,
  ICMPH_TYPE,
  IP_OFFSET,
  IPDEFTTL,
  IPH_DADDR,
  IPH_FRAG_OFF,
  IPH_MIN_LEN,
  IPH_PROTOCOL,
  IPH_SADDR,
  IPH_TOS,
  IPH_VER_IHL,
  IPPROTO_ICMP,
} from "./proto.js";

// ---- statistics (ICMP_MIB_*) --------------------------------------------------------------

/** `ICMP_MIB_INMSGS`. */
export const ICMP_MIB_INMSGS = 0;
/** `ICMP_MIB_INERRORS`. */
export const ICMP_MIB_INERRORS = 1;
/** `ICMP_MIB_CSUMERRORS`. */
export const ICMP_MIB_CSUMERRORS = 2;
/** InEchos. */
export const ICMP_MIB_INECHOS = 3;
/** `ICMP_MIB_OUTMSGS`. */
export const ICMP_MIB_OUTMSGS = 4;
/** `ICMP_MIB_OUTERRORS`: error messages that could not be built (no memory). */
export const ICMP_MIB_OUTERRORS = 5;
/** OutEchoReps. */
export const ICMP_MIB_OUTECHOREPS = 6;
/** OutDestUnreachs. */
export const ICMP_MIB_OUTDESTUNREACHS = 7;
/** OutTimeExcds. */
export const ICMP_MIB_OUTTIMEEXCDS = 8;
/** OutParmProbs. */
export const ICMP_MIB_OUTPARMPROBS = 9;
/** Number of ICMP counter slots. */
export const ICMP_MIB_MAX = 10;

/** SNMP names of the slots, index order. */
export const ICMP_STATS_NAMES = [
  "InMsgs",
  "InErrors",
  "InCsumErrors",
  "InEchos",
  "OutMsgs",
  "OutErrors",
  "OutEchoReps",
  "OutDestUnreachs",
  "OutTimeExcds",
  "OutParmProbs",
] as const;

/** A zeroed ICMP counter array (one per CPU). Allocates. */
export function icmpStatsCreate(): Float64Array {
  return new Float64Array(ICMP_MIB_MAX);
}

/** `NR_ICMP_TYPES`: highest ICMP type the kernel knows. */
export const NR_ICMP_TYPES = 18;

/**
 * `icmp_pointers[type].error` as a bit set: types 1-7, 9-12 are errors
 * (unknown types above NR_ICMP_TYPES are treated as errors too).
 */
const ICMP_ERROR_TYPES = (1 << 1) | (1 << 2) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12);

/** `icmp_is_err` / `icmp_pointers[type].error`: an ICMP error message type. */
export function icmpIsError(type: number): boolean {
  return type > NR_ICMP_TYPES || ((ICMP_ERROR_TYPES >>> type) & 1) !== 0;
}

/** RFC 1812 4.3.2.3 / the kernel's cap on an error message: 576 bytes. */
export const ICMP_ERROR_MAX = 576;
/** `IPTOS_PREC_INTERNETCONTROL`: precedence of error messages. */
export const IPTOS_PREC_INTERNETCONTROL = 0xc0;
/** `IPTOS_TOS_MASK` (`RT_TOS`). */
const IPTOS_TOS_MASK = 0x1e;

/** `icmp_hdr(skb)`: arena offset of the ICMP header (the transport header). */
export function icmpHdr(cpu: SkbCpu, skb: number): number {
  return (cpu.u32[(skb + SKB_HEAD) >>> 2] as number) + (cpu.u16[(skb + SKB_TRANSPORT_HEADER) >>> 1] as number);
}

/**
 * The byte at packet offset `off` (from skb->data; negative reaches the
 * headroom), walking frags and the frag_list (`skb_header_pointer` for one
 * byte). -1 when out of range. Allocates nothing.
 */
export function skbByteAt(cpu: SkbCpu, skb: number, off: number): number {
  const u32 = cpu.u32;
  const u8 = cpu.u8;
  const len = u32[(skb + SKB_LEN) >>> 2] as number;
  if (off >= len) return -1;
  const data = u32[(skb + SKB_DATA) >>> 2] as number;
  const headlen = len - (u32[(skb + SKB_DATA_LEN) >>> 2] as number);
  if (off < headlen) {
    if (data + off < (u32[(skb + SKB_HEAD) >>> 2] as number)) return -1;
    return u8[data + off] as number;
  }
  const sh = skbShinfo(cpu, skb);
  const nr = u8[sh + SHINFO_NR_FRAGS] as number;
  let start = headlen;
  for (let i = 0; i < nr; i++) {
    const d = fragDesc(sh, i);
    const end = start + (u32[(d + FRAG_SIZE) >>> 2] as number);
    if (off < end) return u8[(u32[(d + FRAG_PAGE) >>> 2] as number) + (u32[(d + FRAG_OFFSET) >>> 2] as number) + off - start] as number;
    start = end;
  }
  for (let l = u32[(sh + SHINFO_FRAG_LIST) >>> 2] as number; l !== 0; l = u32[(l + SKB_NEXT) >>> 2] as number) {
    const end = start + (u32[(l + SKB_LEN) >>> 2] as number);
    if (off < end) return skbByteAt(cpu, l, off - start);
    start = end;
  }
  return -1;
}

/**
 * ICMP receive for a router, in place: validate the ICMP message of the
 * datagram at the network header (ipRcvCore done, not a fragment) and, for
 * an echo request, turn the skb into the echo reply: a fresh 20-byte IP
 * header (options are not echoed), source and destination swapped, TTL 64,
 * new id, no DF, TOS kept; ICMP type 0 with id, sequence, code and data
 * kept and the checksum patched incrementally. skb->data and the network
 * header end at the new IP header, the transport header at the ICMP header.
 *
 * Returns 0 when the reply is ready to route back to the sender, or a reason
 * for the caller to free with: IP_INHDR (no linear IP header at the network
 * header), PKT_TOO_SMALL (under 8 ICMP bytes),
 * ICMP_INVALID (bad checksum; or an echo to a broadcast / multicast
 * address, ignored as with icmp_echo_ignore_broadcasts=1), UNHANDLED_PROTO
 * (type > NR_ICMP_TYPES), CONSUMED (any other well-formed message: nothing
 * for a router to do), NOMEM. The skb must not be shared. Counts InMsgs,
 * InErrors, InCsumErrors, InEchos, OutMsgs, OutEchoReps in `stats`.
 * Allocates no JS objects.
 */
export function icmpRcvEcho(cpu: SkbCpu, skb: number, stats: Float64Array): number {
  const u8 = cpu.u8;
  const u32 = cpu.u32;
  stats[ICMP_MIB_INMSGS]++;
  // Normalise: data at the network header (which must lie in the linear area).
  let nh = skbNetworkHeader(cpu, skb);
  const head = u32[(skb + SKB_HEAD) >>> 2] as number;
  if (nh < head || nh + IPH_MIN_LEN > head + (u32[(skb + SKB_TAIL) >>> 2] as number)) {
    stats[ICMP_MIB_INERRORS]++;
    return SKB_DROP_REASON.IP_INHDR;
  }
  const d0 = u32[(skb + SKB_DATA) >>> 2] as number;
  if (nh !== d0) __skbPush(cpu, skb, d0 - nh);
  const hl = ((u8[nh + IPH_VER_IHL] as number) & 15) << 2;
  const len = u32[(skb + SKB_LEN) >>> 2] as number;
  const icmpLen = len - hl;
  if (hl < IPH_MIN_LEN || icmpLen < ICMPH_LEN) {
    stats[ICMP_MIB_INERRORS]++;
    return SKB_DROP_REASON.PKT_TOO_SMALL;
  }
  if (!pskbMayPull(cpu, skb, hl + ICMPH_LEN)) {
    stats[ICMP_MIB_INERRORS]++;
    return SKB_DROP_REASON.NOMEM;
  }
  if ((u8[skb + SKB_IP_SUMMED] as number) !== CHECKSUM_UNNECESSARY && csumFold(skbChecksum(cpu, skb, hl, icmpLen, 0)) !== 0) {
    stats[ICMP_MIB_CSUMERRORS]++;
    stats[ICMP_MIB_INERRORS]++;
    return SKB_DROP_REASON.ICMP_INVALID;
  }
  nh = u32[(skb + SKB_DATA) >>> 2] as number;
  const type = u8[nh + hl + ICMPH_TYPE] as number;
  if (type > NR_ICMP_TYPES) {
    stats[ICMP_MIB_INERRORS]++;
    return SKB_DROP_REASON.UNHANDLED_PROTO;
  }
  if (type !== ICMP_ECHO) return SKB_DROP_REASON.CONSUMED;
  stats[ICMP_MIB_INECHOS]++;
  const daddr = be32s(u8, nh + IPH_DADDR);
  if ((u8[skb + SKB_PKT_TYPE] as number) !== PACKET_HOST || ipv4IsMulticast(daddr) || ipv4IsLbcast(daddr)) {
    return SKB_DROP_REASON.ICMP_INVALID;
  }
  if (skbEnsureWritable(cpu, skb, hl + ICMPH_LEN) !== 0) return SKB_DROP_REASON.NOMEM;
  nh = u32[(skb + SKB_DATA) >>> 2] as number;
  const saddr = be32s(u8, nh + IPH_SADDR);
  const tos = u8[nh + IPH_TOS] as number;
  const icmph = nh + hl;
  // Echo reply: type 0; code, id, sequence and data as received (icmp_echo copies the header).
  const code = u8[icmph + ICMPH_CODE] as number;
  u8[icmph + ICMPH_TYPE] = ICMP_ECHOREPLY;
  csumReplace2(u8, icmph + ICMPH_CHECKSUM, (ICMP_ECHO << 8) | code, (ICMP_ECHOREPLY << 8) | code);
  // A fresh option-less IP header right before the ICMP header.
  if (hl > IPH_MIN_LEN) __skbPull(cpu, skb, hl - IPH_MIN_LEN);
  const iph = icmph - IPH_MIN_LEN;
  ipBuildHeader(u8, iph, tos, IPH_MIN_LEN + icmpLen, ipSelectIdent(), 0, IPDEFTTL, IPPROTO_ICMP, daddr, saddr);
  const headOff = iph - (u32[(skb + SKB_HEAD) >>> 2] as number);
  cpu.u16[(skb + SKB_NETWORK_HEADER) >>> 1] = headOff;
  cpu.u16[(skb + SKB_TRANSPORT_HEADER) >>> 1] = headOff + IPH_MIN_LEN;
  cpu.u16[(skb + SKB_PROTOCOL) >>> 1] = ETH_P_IP;
  stats[ICMP_MIB_OUTMSGS]++;
  stats[ICMP_MIB_OUTECHOREPS]++;
  return 0;
}

/**
 * `__icmp_send`: build an ICMP error (or other message) about `skbIn`,
 * whose network header is a validated IPv4 header, for the caller to route
 * to the offending packet's source. `info` is the 32-bit rest-of-header
 * word, host order (e.g. the MTU for ICMP_FRAG_NEEDED, `pointer << 24` for a
 * parameter problem). `srcAddr` is the router address to send from.
 *
 * The new skb (allocSkb, LL_RESERVED_SPACE_VLAN headroom; data, network
 * header at the new IP header, transport header at the ICMP header,
 * protocol ETH_P_IP, dev of skbIn) holds: IP header (TOS = RT_TOS(tos) |
 * 0xc0 for errors, TTL 64, no DF, fresh id, saddr = srcAddr, daddr = the
 * offender's source), ICMP header, then as much of the offending datagram
 * from its IP header as fits in 576 bytes.
 *
 * Returns 0 (nothing sent; skbIn untouched either way) when the kernel would
 * not answer: the header is not linear, skbIn was not addressed to us at
 * link level (pkt_type ≠ HOST), its destination is multicast / broadcast or
 * its source is zero / multicast / broadcast, it is a non-first fragment,
 * or we would answer an ICMP error with an error; and when memory runs out
 * (OutErrors). No rate limiting. Allocates no JS objects.
 */
export function icmpSend(
  cpu: SkbCpu,
  skbIn: number,
  type: number,
  code: number,
  info: number,
  srcAddr: number,
  stats: Float64Array | null = null,
): number {
  const u8 = cpu.u8;
  const u32 = cpu.u32;
  const head = u32[(skbIn + SKB_HEAD) >>> 2] as number;
  const iph = skbNetworkHeader(cpu, skbIn);
  if (iph < head || iph + IPH_MIN_LEN > head + (u32[(skbIn + SKB_TAIL) >>> 2] as number)) return 0;
  if ((u8[skbIn + SKB_PKT_TYPE] as number) !== PACKET_HOST) return 0;
  const ihl = (u8[iph + IPH_VER_IHL] as number) & 15;
  if (ihl < 5) return 0;
  // int32 views of the addresses (same bits, never heap numbers).
  const daddr = be32s(u8, iph + IPH_DADDR);
  const saddr = be32s(u8, iph + IPH_SADDR);
  if (ipv4IsMulticast(daddr) || ipv4IsLbcast(daddr)) return 0;
  if (ipv4IsZeronet(saddr) || ipv4IsMulticast(saddr) || ipv4IsLbcast(saddr)) return 0;
  if ((be16(u8, iph + IPH_FRAG_OFF) & IP_OFFSET) !== 0) return 0;
  const nhOff = iph - (u32[(skbIn + SKB_DATA) >>> 2] as number);
  const isErr = icmpIsError(type);
  if (isErr && (u8[iph + IPH_PROTOCOL] as number) === IPPROTO_ICMP) {
    const inner = skbByteAt(cpu, skbIn, nhOff + (ihl << 2) + ICMPH_TYPE);
    if (inner < 0 || icmpIsError(inner)) return 0;
  }
  const room = ICMP_ERROR_MAX - IPH_MIN_LEN - ICMPH_LEN;
  let dataLen = (u32[(skbIn + SKB_LEN) >>> 2] as number) - nhOff;
  if (dataLen > room) dataLen = room;
  const skb = allocSkb(cpu, LL_RESERVED_SPACE_VLAN + IPH_MIN_LEN + ICMPH_LEN + dataLen);
  if (skb === 0) {
    if (stats !== null) stats[ICMP_MIB_OUTERRORS]++;
    return 0;
  }
  skbReserve(cpu, skb, LL_RESERVED_SPACE_VLAN);
  const nip = __skbPut(cpu, skb, IPH_MIN_LEN + ICMPH_LEN + dataLen);
  const icmph = nip + IPH_MIN_LEN;
  if (skbCopyBits(cpu, skbIn, nhOff, icmph + ICMPH_LEN, dataLen) !== 0) {
    kfreeSkbReason(cpu, skb, SKB_DROP_REASON.NOT_SPECIFIED);
    return 0;
  }
  u8[icmph + ICMPH_TYPE] = type;
  u8[icmph + ICMPH_CODE] = code;
  u8[icmph + ICMPH_CHECKSUM] = 0;
  u8[icmph + ICMPH_CHECKSUM + 1] = 0;
  putBe32(u8, icmph + 4, info);
  putBe16(u8, icmph + ICMPH_CHECKSUM, csumFold(csumPartial(u8, icmph, ICMPH_LEN + dataLen, 0)));
  const tos0 = u8[iph + IPH_TOS] as number;
  const tos = isErr ? (tos0 & IPTOS_TOS_MASK) | IPTOS_PREC_INTERNETCONTROL : tos0;
  ipBuildHeader(u8, nip, tos, IPH_MIN_LEN + ICMPH_LEN + dataLen, ipSelectIdent(), 0, IPDEFTTL, IPPROTO_ICMP, srcAddr, saddr);
  const nhHead = nip - (u32[(skb + SKB_HEAD) >>> 2] as number);
  cpu.u16[(skb + SKB_NETWORK_HEADER) >>> 1] = nhHead;
  cpu.u16[(skb + SKB_TRANSPORT_HEADER) >>> 1] = nhHead + IPH_MIN_LEN;
  cpu.u16[(skb + SKB_PROTOCOL) >>> 1] = ETH_P_IP;
  u32[(skb + SKB_DEV) >>> 2] = u32[(skbIn + SKB_DEV) >>> 2] as number;
  if (stats !== null) {
    stats[ICMP_MIB_OUTMSGS]++;
    if (type === ICMP_DEST_UNREACH) stats[ICMP_MIB_OUTDESTUNREACHS]++;
    else if (type === ICMP_TIME_EXCEEDED) stats[ICMP_MIB_OUTTIMEEXCDS]++;
    else if (type === ICMP_PARAMETERPROB) stats[ICMP_MIB_OUTPARMPROBS]++;
  }
  return skb;
}
