/**
 * `struct virtio_net_hdr`, the per-frame header of a TAP opened with
 * IFF_VNET_HDR (and of virtio-net), and its conversion to and from the skb
 * metadata it stands for: checksum offload (NEEDS_CSUM ↔ CHECKSUM_PARTIAL
 * with csum_start / csum_offset, DATA_VALID → CHECKSUM_UNNECESSARY) and GSO
 * (gso_type / gso_size ↔ skb_shared_info). Mirrors the kernel's
 * include/linux/virtio_net.h helpers; the layout is
 * include/uapi/linux/virtio_net.h:
 *
 * ```
 *   0 flags (u8)   1 gso_type (u8)   2 hdr_len (le16)   4 gso_size (le16)
 *   6 csum_start (le16)   8 csum_offset (le16)
 *  [10 num_buffers (le16): virtio_net_hdr_mrg_rxbuf / virtio 1.0, 12 bytes]
 * ```
 *
 * Little-endian: a TAP device asks for TUNSETVNETLE (virtio 1.0), which is
 * also the legacy native order on every little-endian host. Nothing here
 * allocates.
 *
 * @module
 */

import { be16, be32s, putBe16, skbHeadlen } from "../skb/access.js";
import type { SkbCpu } from "../skb/cpu.js";
import { SKB_DROP_REASON } from "../skb/drop-reason.js";
import {
  CHECKSUM_PARTIAL,
  CHECKSUM_UNNECESSARY,
  SHINFO_GSO_SEGS,
  SHINFO_GSO_SIZE,
  SHINFO_GSO_TYPE,
  SKB_CSUM_OFFSET,
  SKB_CSUM_START,
  SKB_DATA,
  SKB_END,
  SKB_HEAD,
  SKB_IP_SUMMED,
  SKB_LEN,
  SKB_TRANSPORT_HEADER,
} from "../skb/layout.js";
import { csumTcpudpMagic } from "../net/checksum.js";
import { skbEnsureWritable } from "../net/ethernet.js";
import { ETH_HLEN, ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, IPPROTO_TCP, IPPROTO_UDP } from "../net/proto.js";
import { SKB_GSO_DODGY, SKB_GSO_TCP_ECN, SKB_GSO_TCPV4, SKB_GSO_TCPV6, SKB_GSO_UDP, SKB_GSO_UDP_L4 } from "../core/gso.js";

/** sizeof(struct virtio_net_hdr). */
export const VIRTIO_NET_HDR_LEN = 10;
/** sizeof(struct virtio_net_hdr_mrg_rxbuf) (and of virtio 1.0's virtio_net_hdr_v1). */
export const VIRTIO_NET_HDR_MRG_RXBUF_LEN = 12;
/** Offset of `flags` (u8). */
export const VNET_HDR_FLAGS = 0;
/** Offset of `gso_type` (u8). */
export const VNET_HDR_GSO_TYPE = 1;
/** Offset of `hdr_len` (le16): Ethernet + IP + L4 header bytes, a hint. */
export const VNET_HDR_HDR_LEN = 2;
/** Offset of `gso_size` (le16): payload bytes per segment. */
export const VNET_HDR_GSO_SIZE = 4;
/** Offset of `csum_start` (le16), from the start of the frame. */
export const VNET_HDR_CSUM_START = 6;
/** Offset of `csum_offset` (le16), from csum_start. */
export const VNET_HDR_CSUM_OFFSET = 8;
/** flags: use csum_start / csum_offset (the checksum is left to the receiver). */
export const VIRTIO_NET_HDR_F_NEEDS_CSUM = 1;
/** flags: the checksum was verified. */
export const VIRTIO_NET_HDR_F_DATA_VALID = 2;
/** gso_type: not a GSO frame. */
export const VIRTIO_NET_HDR_GSO_NONE = 0;
/** gso_type: TCP over IPv4 (TSO). */
export const VIRTIO_NET_HDR_GSO_TCPV4 = 1;
/** Legacy UFO (IP-fragmented UDP). */
export const VIRTIO_NET_HDR_GSO_UDP = 3;
/** gso_type: TCP over IPv6. */
export const VIRTIO_NET_HDR_GSO_TCPV6 = 4;
/** UDP segmentation (USO), 5.18+ uapi. */
export const VIRTIO_NET_HDR_GSO_UDP_L4 = 5;
/** gso_type bit: TCP with ECN (CWR on the first segment only). */
export const VIRTIO_NET_HDR_GSO_ECN = 0x80;

function u16le(u8: Uint8Array, o: number): number {
  return (u8[o] as number) | ((u8[o + 1] as number) << 8);
}

function putU16le(u8: Uint8Array, o: number, v: number): void {
  u8[o] = v & 0xff;
  u8[o + 1] = (v >>> 8) & 0xff;
}

/**
 * `virtio_net_hdr_to_skb`: apply the virtio header at arena offset `hdr` to
 * `skb` (data at the Ethernet header, the frame's bytes in it): NEEDS_CSUM →
 * CHECKSUM_PARTIAL with csum_start / csum_offset (checked to lie in the
 * linear part), DATA_VALID → CHECKSUM_UNNECESSARY, a GSO type with
 * gso_size → skb GSO fields (gso_type | SKB_GSO_DODGY, gso_size, gso_segs
 * from the payload after the L4 header; as in the kernel, a "GSO" frame
 * whose payload fits one segment stays a plain frame). Returns 0, or
 * TUN_ERROR for a header the device cannot honour. Allocates nothing.
 */
export function virtioNetHdrToSkb(cpu: SkbCpu, skb: number, hdr: number): number {
  const u8 = cpu.u8;
  const flags = u8[hdr + VNET_HDR_FLAGS] as number;
  const gt = u8[hdr + VNET_HDR_GSO_TYPE] as number;
  const len = cpu.u32[(skb + SKB_LEN) >>> 2] as number;
  const headlen = skbHeadlen(cpu, skb);
  const data = cpu.u32[(skb + SKB_DATA) >>> 2] as number;
  const cs = u16le(u8, hdr + VNET_HDR_CSUM_START);
  const co = u16le(u8, hdr + VNET_HDR_CSUM_OFFSET);
  if ((flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) !== 0) {
    if (cs + co + 2 > headlen) return SKB_DROP_REASON.TUN_ERROR;
    cpu.u8[skb + SKB_IP_SUMMED] = CHECKSUM_PARTIAL;
    // skb_partial_csum_set: csum_start, csum_offset, and the transport header there.
    const start = data - (cpu.u32[(skb + SKB_HEAD) >>> 2] as number) + cs;
    cpu.u16[(skb + SKB_CSUM_START) >>> 1] = start;
    cpu.u16[(skb + SKB_CSUM_OFFSET) >>> 1] = co;
    cpu.u16[(skb + SKB_TRANSPORT_HEADER) >>> 1] = start;
  } else if ((flags & VIRTIO_NET_HDR_F_DATA_VALID) !== 0) {
    cpu.u8[skb + SKB_IP_SUMMED] = CHECKSUM_UNNECESSARY;
  }
  if (gt === VIRTIO_NET_HDR_GSO_NONE) return 0;
  let type: number;
  let l4hl: number;
  switch (gt & ~VIRTIO_NET_HDR_GSO_ECN) {
    case VIRTIO_NET_HDR_GSO_TCPV4:
    case VIRTIO_NET_HDR_GSO_TCPV6:
      type = (gt & ~VIRTIO_NET_HDR_GSO_ECN) === VIRTIO_NET_HDR_GSO_TCPV4 ? SKB_GSO_TCPV4 : SKB_GSO_TCPV6;
      // TCP data offset, from the header NEEDS_CSUM points at.
      if (cs + 13 > headlen) return SKB_DROP_REASON.TUN_ERROR;
      l4hl = ((u8[data + cs + 12] as number) >>> 4) * 4;
      if (l4hl < 20) return SKB_DROP_REASON.TUN_ERROR;
      break;
    case VIRTIO_NET_HDR_GSO_UDP_L4:
      type = SKB_GSO_UDP_L4;
      l4hl = 8;
      break;
    case VIRTIO_NET_HDR_GSO_UDP:
      type = SKB_GSO_UDP;
      l4hl = 8;
      break;
    default:
      return SKB_DROP_REASON.TUN_ERROR;
  }
  const gsoSize = u16le(u8, hdr + VNET_HDR_GSO_SIZE);
  if (gsoSize === 0 || (flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) === 0) return SKB_DROP_REASON.TUN_ERROR;
  if ((gt & VIRTIO_NET_HDR_GSO_ECN) !== 0) type |= SKB_GSO_TCP_ECN;
  const payload = len - cs - l4hl;
  if (payload < 0) return SKB_DROP_REASON.TUN_ERROR;
  // Too small packets are not really GSO ones (virtio_net_hdr_to_skb).
  if (payload <= gsoSize) return 0;
  const sh = (cpu.u32[(skb + SKB_HEAD) >>> 2] as number) + (cpu.u32[(skb + SKB_END) >>> 2] as number);
  cpu.u16[(sh + SHINFO_GSO_SIZE) >>> 1] = gsoSize;
  cpu.u16[(sh + SHINFO_GSO_SEGS) >>> 1] = Math.ceil(payload / gsoSize);
  cpu.u32[(sh + SHINFO_GSO_TYPE) >>> 2] = type | SKB_GSO_DODGY;
  return 0;
}

/**
 * `virtio_net_hdr_from_skb`: write the virtio header for `skb` (data at the
 * Ethernet header) at arena offset `hdr`, `hdrLen` bytes (zeroed first):
 * GSO type / gso_size / hdr_len (Ethernet + IP + L4 header, when readable;
 * else the linear length, the kernel's hint) for a GSO skb, NEEDS_CSUM with
 * csum_start / csum_offset relative to the frame for CHECKSUM_PARTIAL.
 * Returns 0, or -EINVAL (-22) for a GSO type virtio cannot express or a
 * checksum start outside the frame. Allocates nothing.
 */
export function virtioNetHdrFromSkb(cpu: SkbCpu, skb: number, hdr: number, hdrLen: number): number {
  const u8 = cpu.u8;
  u8.fill(0, hdr, hdr + hdrLen);
  const head = cpu.u32[(skb + SKB_HEAD) >>> 2] as number;
  const data = cpu.u32[(skb + SKB_DATA) >>> 2] as number;
  const len = cpu.u32[(skb + SKB_LEN) >>> 2] as number;
  let cs = -1;
  if ((u8[skb + SKB_IP_SUMMED] as number) === CHECKSUM_PARTIAL) {
    cs = (cpu.u16[(skb + SKB_CSUM_START) >>> 1] as number) - (data - head);
    const co = cpu.u16[(skb + SKB_CSUM_OFFSET) >>> 1] as number;
    if (cs < 0 || cs + co + 2 > len) return -22;
    u8[hdr + VNET_HDR_FLAGS] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    putU16le(u8, hdr + VNET_HDR_CSUM_START, cs);
    putU16le(u8, hdr + VNET_HDR_CSUM_OFFSET, co);
  }
  const sh = head + (cpu.u32[(skb + SKB_END) >>> 2] as number);
  const gsoSize = cpu.u16[(sh + SHINFO_GSO_SIZE) >>> 1] as number;
  if (gsoSize === 0) return 0;
  const type = cpu.u32[(sh + SHINFO_GSO_TYPE) >>> 2] as number;
  let gt: number;
  let tcp = false;
  if ((type & SKB_GSO_TCPV4) !== 0) {
    gt = VIRTIO_NET_HDR_GSO_TCPV4;
    tcp = true;
  } else if ((type & SKB_GSO_TCPV6) !== 0) {
    gt = VIRTIO_NET_HDR_GSO_TCPV6;
    tcp = true;
  } else if ((type & SKB_GSO_UDP_L4) !== 0) {
    gt = VIRTIO_NET_HDR_GSO_UDP_L4;
  } else if ((type & SKB_GSO_UDP) !== 0) {
    gt = VIRTIO_NET_HDR_GSO_UDP;
  } else {
    return -22;
  }
  if ((type & SKB_GSO_TCP_ECN) !== 0) gt |= VIRTIO_NET_HDR_GSO_ECN;
  const headlen = skbHeadlen(cpu, skb);
  let hl = headlen;
  if (cs >= 0) {
    if (!tcp) hl = cs + 8;
    else if (cs + 13 <= headlen) hl = cs + ((u8[data + cs + 12] as number) >>> 4) * 4;
    if (hl > len) hl = headlen;
  }
  u8[hdr + VNET_HDR_GSO_TYPE] = gt;
  putU16le(u8, hdr + VNET_HDR_HDR_LEN, hl);
  putU16le(u8, hdr + VNET_HDR_GSO_SIZE, gsoSize);
  return 0;
}

/**
 * A GSO skb whose checksum is not left to the device (GRO output: the
 * first segment's checksum, CHECKSUM_UNNECESSARY) cannot go out as a
 * super-frame as is: the receiver fills in every segment's checksum from a
 * pseudo-header sum. Store that sum (Ethernet, 802.1Q tags, IPv4, TCP/UDP)
 * and make it CHECKSUM_PARTIAL, as `tcp4_gso_segment` does for such skbs.
 * False when the headers are not IPv4 TCP/UDP or cannot be made writable.
 */
export function virtioNetGsoSetPartial(cpu: SkbCpu, skb: number): boolean {
  const u8 = cpu.u8;
  const headlen = skbHeadlen(cpu, skb);
  let data = cpu.u32[(skb + SKB_DATA) >>> 2] as number;
  let off = ETH_HLEN;
  if (headlen < off + 20) return false;
  let proto = be16(u8, data + 12);
  while ((proto === ETH_P_8021Q || proto === ETH_P_8021AD) && off + 4 + 20 <= headlen) {
    proto = be16(u8, data + off + 2);
    off += 4;
  }
  if (proto !== ETH_P_IP) return false;
  const ihl = ((u8[data + off] as number) & 15) * 4;
  const l4proto = u8[data + off + 9] as number;
  const l4 = off + ihl;
  const co = l4proto === IPPROTO_TCP ? 16 : l4proto === IPPROTO_UDP ? 6 : -1;
  if (ihl < 20 || co < 0 || l4 + co + 2 > headlen) return false;
  if (skbEnsureWritable(cpu, skb, l4 + co + 2) !== 0) return false;
  data = cpu.u32[(skb + SKB_DATA) >>> 2] as number;
  const l4len = (cpu.u32[(skb + SKB_LEN) >>> 2] as number) - l4;
  const saddr = be32s(u8, data + off + 12);
  const daddr = be32s(u8, data + off + 16);
  putBe16(u8, data + l4 + co, ~csumTcpudpMagic(saddr, daddr, l4len, l4proto, 0) & 0xffff);
  u8[skb + SKB_IP_SUMMED] = CHECKSUM_PARTIAL;
  cpu.u16[(skb + SKB_CSUM_START) >>> 1] = data - (cpu.u32[(skb + SKB_HEAD) >>> 2] as number) + l4;
  cpu.u16[(skb + SKB_CSUM_OFFSET) >>> 1] = co;
  return true;
}

