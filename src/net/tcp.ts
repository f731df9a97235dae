/**
 * TCP over IPv4 (net/ipv4/tcp_ipv4.c, include/net/tcp.h): header
 * accessors, flags, the receive-side header / checksum validation of
 * `tcp_v4_rcv`, checksum computation, and conntrack's table of valid flag
 * combinations.
 *
 * ```
 *  struct tcphdr (20 bytes + options, doff * 4 in all)
 *   0 source  2 dest  4 seq  8 ack_seq  12 doff:4 res:4  13 CWR ECE URG ACK PSH RST SYN FIN
 *  14 window  16 check  18 urg_ptr  20 options...
 * ```
 *
 * Like udp.ts the header is found through the transport header and the
 * addresses through the network header. Nothing here allocates JS objects.
 *
 * @module
 */

import { be16, be32, be32s, putBe16, skbDataPtr, skbNetworkHeader, skbTransportHeader } from "../skb/access.js";
import type { SkbCpu } from "../skb/cpu.js";
import { pskbMayPull } from "../skb/data.js";
import { SKB_DROP_REASON } from "../skb/drop-reason.js";
import { CHECKSUM_UNNECESSARY, SKB_IP_SUMMED, SKB_LEN } from "../skb/layout.js";
import { csumFold, csumTcpudpMagic, csumTcpudpNofold, skbChecksum } from "./checksum.js";
import { skbEnsureWritable } from "./ethernet.js";
import {
  IPH_DADDR,
  IPH_SADDR,
  IPPROTO_TCP,
  TCP_FLAG_ACK,
  TCP_FLAG_CWR,
  TCP_FLAG_ECE,
  TCP_FLAG_FIN,
  TCP_FLAG_PSH,
  TCP_FLAG_RST,
  TCP_FLAG_SYN,
  TCP_FLAG_URG,
  TCPH_ACK_SEQ,
  TCPH_CHECK,
  TCPH_DEST,
  TCPH_DOFF,
  TCPH_FLAGS,
  TCPH_MIN_LEN,
  TCPH_SEQ,
  TCPH_SOURCE,
  TCPH_URG_PTR,
  TCPH_WINDOW,
} from "./proto.js";

/** `tcp_hdr(skb)`: arena offset of the TCP header (the transport header). */
export function tcpHdr(cpu: SkbCpu, skb: number): number {
  return skbTransportHeader(cpu, skb);
}
/** `ntohs(th->source)`. */
export function tcpSource(u8: Uint8Array, th: number): number {
  return be16(u8, th + TCPH_SOURCE);
}
/** `ntohs(th->dest)`. */
export function tcpDest(u8: Uint8Array, th: number): number {
  return be16(u8, th + TCPH_DEST);
}
/** `ntohl(th->seq)` (unsigned). */
export function tcpSeq(u8: Uint8Array, th: number): number {
  return be32(u8, th + TCPH_SEQ);
}
/** `ntohl(th->ack_seq)` (unsigned). */
export function tcpAckSeq(u8: Uint8Array, th: number): number {
  return be32(u8, th + TCPH_ACK_SEQ);
}
/** `th->doff`: header length in 32-bit words. */
export function tcpDoff(u8: Uint8Array, th: number): number {
  return (u8[th + TCPH_DOFF] as number) >>> 4;
}
/** `__tcp_hdrlen`: header length in bytes (doff * 4). */
export function tcpHdrLen(u8: Uint8Array, th: number): number {
  return ((u8[th + TCPH_DOFF] as number) >>> 4) << 2;
}
/** `tcp_flag_byte(th)`: CWR ECE URG ACK PSH RST SYN FIN. */
export function tcpFlagByte(u8: Uint8Array, th: number): number {
  return u8[th + TCPH_FLAGS] as number;
}
/** `ntohs(th->window)`. */
export function tcpWindow(u8: Uint8Array, th: number): number {
  return be16(u8, th + TCPH_WINDOW);
}
/** `th->check` as stored. */
export function tcpCheck(u8: Uint8Array, th: number): number {
  return be16(u8, th + TCPH_CHECK);
}
/** `ntohs(th->urg_ptr)`. */
export function tcpUrgPtr(u8: Uint8Array, th: number): number {
  return be16(u8, th + TCPH_URG_PTR);
}

/** "FSRPAUEC" letters for a flag byte, e.g. "SA" for SYN|ACK (allocates; for logs). */
export function tcpFlagsString(flags: number): string {
  let s = "";
  if (flags & TCP_FLAG_FIN) s += "F";
  if (flags & TCP_FLAG_SYN) s += "S";
  if (flags & TCP_FLAG_RST) s += "R";
  if (flags & TCP_FLAG_PSH) s += "P";
  if (flags & TCP_FLAG_ACK) s += "A";
  if (flags & TCP_FLAG_URG) s += "U";
  if (flags & TCP_FLAG_ECE) s += "E";
  if (flags & TCP_FLAG_CWR) s += "C";
  return s;
}

/** nf_conntrack_proto_tcp.c's `tcp_valid_flags`, indexed by FIN|SYN|RST|ACK|URG. */
const TCP_VALID_FLAGS = new Uint8Array(0x40);
for (const f of [
  TCP_FLAG_SYN,
  TCP_FLAG_SYN | TCP_FLAG_URG,
  TCP_FLAG_SYN | TCP_FLAG_ACK,
  TCP_FLAG_RST,
  TCP_FLAG_RST | TCP_FLAG_ACK,
  TCP_FLAG_FIN | TCP_FLAG_ACK,
  TCP_FLAG_FIN | TCP_FLAG_ACK | TCP_FLAG_URG,
  TCP_FLAG_ACK,
  TCP_FLAG_ACK | TCP_FLAG_URG,
]) {
  TCP_VALID_FLAGS[f] = 1;
}

/**
 * conntrack's flag sanity check (`tcp_error`): the flag byte with PSH, ECE
 * and CWR ignored must be one of SYN, SYN|URG, SYN|ACK, RST, RST|ACK,
 * FIN|ACK, FIN|ACK|URG, ACK, ACK|URG.
 */
export function tcpValidFlags(flags: number): boolean {
  return TCP_VALID_FLAGS[flags & ~(TCP_FLAG_ECE | TCP_FLAG_CWR | TCP_FLAG_PSH) & 0x3f] === 1;
}

/** `tcp_v4_check`: fold the pseudo-header (saddr, daddr, len, TCP) onto `base` into the header value. */
export function tcpV4Check(len: number, saddr: number, daddr: number, base: number): number {
  return csumTcpudpMagic(saddr, daddr, len, IPPROTO_TCP, base);
}

/**
 * Verify the TCP checksum over the segment from the transport header to
 * the end of the skb (CHECKSUM_UNNECESSARY is trusted). True when valid.
 */
export function tcp4ChecksumValid(cpu: SkbCpu, skb: number): boolean {
  const u8 = cpu.u8;
  if ((u8[skb + SKB_IP_SUMMED] as number) === CHECKSUM_UNNECESSARY) return true;
  const th = skbTransportHeader(cpu, skb);
  const off = th - skbDataPtr(cpu, skb);
  const len = (cpu.u32[(skb + SKB_LEN) >>> 2] as number) - off;
  const iph = skbNetworkHeader(cpu, skb);
  const sum = skbChecksum(cpu, skb, off, len, 0);
  return csumFold(csumTcpudpNofold(be32s(u8, iph + IPH_SADDR), be32s(u8, iph + IPH_DADDR), len, IPPROTO_TCP, sum)) === 0;
}

/**
 * Compute and store the TCP checksum (`tcp_v4_send_check` in software) over
 * the segment from the transport header to the end of the skb, after making
 * the 20-byte header linear and private (`skb_ensure_writable`). Returns the
 * stored value, or -1 when that failed.
 */
export function tcp4SetChecksum(cpu: SkbCpu, skb: number): number {
  const u8 = cpu.u8;
  let off = skbTransportHeader(cpu, skb) - skbDataPtr(cpu, skb);
  if (skbEnsureWritable(cpu, skb, off + TCPH_MIN_LEN) !== 0) return -1;
  const th = skbTransportHeader(cpu, skb);
  off = th - skbDataPtr(cpu, skb);
  const len = (cpu.u32[(skb + SKB_LEN) >>> 2] as number) - off;
  const iph = skbNetworkHeader(cpu, skb);
  u8[th + TCPH_CHECK] = 0;
  u8[th + TCPH_CHECK + 1] = 0;
  const c = tcpV4Check(len, be32s(u8, iph + IPH_SADDR), be32s(u8, iph + IPH_DADDR), skbChecksum(cpu, skb, off, len, 0));
  putBe16(u8, th + TCPH_CHECK, c);
  return c;
}

/**
 * The validation at the top of `tcp_v4_rcv`: 20 header bytes pullable,
 * doff ≥ 5, doff*4 bytes pullable (and present), checksum valid. Returns 0,
 * PKT_TOO_SMALL, TCP_CSUM or NOMEM; the caller frees on non-zero.
 * Allocates no JS objects.
 */
export function tcp4RcvCore(cpu: SkbCpu, skb: number): number {
  const off = skbTransportHeader(cpu, skb) - skbDataPtr(cpu, skb);
  const have = (cpu.u32[(skb + SKB_LEN) >>> 2] as number) - off;
  if (have < TCPH_MIN_LEN) return SKB_DROP_REASON.PKT_TOO_SMALL;
  if (!pskbMayPull(cpu, skb, off + TCPH_MIN_LEN)) return SKB_DROP_REASON.NOMEM;
  const hl = tcpHdrLen(cpu.u8, skbTransportHeader(cpu, skb));
  if (hl < TCPH_MIN_LEN || hl > have) return SKB_DROP_REASON.PKT_TOO_SMALL;
  if (!pskbMayPull(cpu, skb, off + hl)) return SKB_DROP_REASON.NOMEM;
  return tcp4ChecksumValid(cpu, skb) ? 0 : SKB_DROP_REASON.TCP_CSUM;
}
