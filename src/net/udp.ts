/**
 * UDP over IPv4 (net/ipv4/udp.c, include/net/udp.h): header accessors, the
 * receive-side length / checksum validation of `__udp4_lib_rcv`, and
 * checksum computation with RFC 768's zero rule.
 *
 * ```
 *  struct udphdr (8 bytes)
 *   0 source   2 dest   4 len (header + payload)   6 check (0 = no checksum)
 * ```
 *
 * The UDP header is found through the skb's transport header and the
 * addresses through its network header (both set by ipRcvCore), so these
 * work wherever skb->data points (at the IP header when forwarding, at the
 * UDP header on local delivery). Nothing here allocates JS objects.
 *
 * @module
 */

import { be16, be32s, putBe16, skbDataPtr, skbNetworkHeader, skbTransportHeader } from "../skb/access.js";
import type { SkbCpu } from "../skb/cpu.js";
import { pskbMayPull } from "../skb/data.js";
import { SKB_DROP_REASON } from "../skb/drop-reason.js";
import { CHECKSUM_UNNECESSARY, SKB_IP_SUMMED, SKB_LEN } from "../skb/layout.js";
import { csumFold, csumTcpudpMagic, csumTcpudpNofold, skbChecksum } from "./checksum.js";
import { pskbTrimRcsum, skbEnsureWritable } from "./ethernet.js";
import { CSUM_MANGLED_0, IPH_DADDR, IPH_SADDR, IPPROTO_UDP, UDPH_CHECK, UDPH_DEST, UDPH_LEN, UDPH_LEN_BYTES, UDPH_SOURCE } from "./proto.js";

/** `udp_hdr(skb)`: arena offset of the UDP header (the transport header). */
export function udpHdr(cpu: SkbCpu, skb: number): number {
  return skbTransportHeader(cpu, skb);
}
/** `ntohs(uh->source)`. */
export function udpSource(u8: Uint8Array, uh: number): number {
  return be16(u8, uh + UDPH_SOURCE);
}
/** `ntohs(uh->dest)`. */
export function udpDest(u8: Uint8Array, uh: number): number {
  return be16(u8, uh + UDPH_DEST);
}
/** `ntohs(uh->len)`: header + payload bytes. */
export function udpLen(u8: Uint8Array, uh: number): number {
  return be16(u8, uh + UDPH_LEN);
}
/** `uh->check` as stored (0: the sender computed none). */
export function udpCheck(u8: Uint8Array, uh: number): number {
  return be16(u8, uh + UDPH_CHECK);
}

/** `udp_v4_check`: fold the pseudo-header (saddr, daddr, len, UDP) onto `base` into the header value. */
export function udpV4Check(len: number, saddr: number, daddr: number, base: number): number {
  return csumTcpudpMagic(saddr, daddr, len, IPPROTO_UDP, base);
}

/**
 * Verify the checksum of the UDP datagram at the transport header
 * (`udp_lib_checksum_complete`), over `skb->len` minus the transport
 * offset. A zero check field means "none" and is valid; so is
 * CHECKSUM_UNNECESSARY. True when valid.
 */
export function udp4ChecksumValid(cpu: SkbCpu, skb: number): boolean {
  const u8 = cpu.u8;
  const uh = skbTransportHeader(cpu, skb);
  if (be16(u8, uh + UDPH_CHECK) === 0 || (u8[skb + SKB_IP_SUMMED] as number) === CHECKSUM_UNNECESSARY) return true;
  const off = uh - skbDataPtr(cpu, skb);
  const len = (cpu.u32[(skb + SKB_LEN) >>> 2] as number) - off;
  const iph = skbNetworkHeader(cpu, skb);
  const sum = skbChecksum(cpu, skb, off, len, 0);
  return csumFold(csumTcpudpNofold(be32s(u8, iph + IPH_SADDR), be32s(u8, iph + IPH_DADDR), len, IPPROTO_UDP, sum)) === 0;
}

/**
 * Compute and store the UDP checksum (`udp4_hwcsum` in software) over the
 * datagram from the transport header to the end of the skb; a computed 0 is
 * sent as 0xffff (CSUM_MANGLED_0) since 0 means "no checksum". The header
 * is made linear and private first (`skb_ensure_writable`). Returns the
 * stored value, or -1 when that failed (no memory / no header).
 */
export function udp4SetChecksum(cpu: SkbCpu, skb: number): number {
  const u8 = cpu.u8;
  let off = skbTransportHeader(cpu, skb) - skbDataPtr(cpu, skb);
  if (skbEnsureWritable(cpu, skb, off + UDPH_LEN_BYTES) !== 0) return -1;
  const uh = skbTransportHeader(cpu, skb);
  off = uh - skbDataPtr(cpu, skb);
  const len = (cpu.u32[(skb + SKB_LEN) >>> 2] as number) - off;
  const iph = skbNetworkHeader(cpu, skb);
  u8[uh + UDPH_CHECK] = 0;
  u8[uh + UDPH_CHECK + 1] = 0;
  let c = udpV4Check(len, be32s(u8, iph + IPH_SADDR), be32s(u8, iph + IPH_DADDR), skbChecksum(cpu, skb, off, len, 0));
  if (c === 0) c = CSUM_MANGLED_0;
  putBe16(u8, uh + UDPH_CHECK, c);
  return c;
}

/**
 * The validation at the top of `__udp4_lib_rcv`: the 8-byte header is
 * pullable, 8 ≤ uh->len ≤ bytes present (the skb is then trimmed to
 * transport offset + uh->len), and the checksum verifies (zero = none).
 * Returns 0, PKT_TOO_SMALL (short packet), UDP_CSUM, or NOMEM. The caller
 * frees on non-zero. Allocates no JS objects.
 */
export function udp4RcvCore(cpu: SkbCpu, skb: number): number {
  const u8 = cpu.u8;
  const off = skbTransportHeader(cpu, skb) - skbDataPtr(cpu, skb);
  const have = (cpu.u32[(skb + SKB_LEN) >>> 2] as number) - off;
  if (have < UDPH_LEN_BYTES) return SKB_DROP_REASON.PKT_TOO_SMALL;
  if (!pskbMayPull(cpu, skb, off + UDPH_LEN_BYTES)) return SKB_DROP_REASON.NOMEM;
  const ulen = be16(u8, skbTransportHeader(cpu, skb) + UDPH_LEN);
  if (ulen > have || ulen < UDPH_LEN_BYTES) return SKB_DROP_REASON.PKT_TOO_SMALL;
  if (pskbTrimRcsum(cpu, skb, off + ulen) !== 0) return SKB_DROP_REASON.NOMEM;
  return udp4ChecksumValid(cpu, skb) ? 0 : SKB_DROP_REASON.UDP_CSUM;
}
