/**
 * Ethernet (net/ethernet/eth.c, include/linux/etherdevice.h): MAC address
 * helpers, `eth_type_trans` on receive, `eth_header` on transmit, and the
 * skb write-access helpers (`skb_cow` & co) every protocol module needs
 * before it writes into a packet.
 *
 * ```
 *  struct ethhdr (14 bytes)
 *   0 h_dest[6]   6 h_source[6]   12 h_proto (be16)
 * ```
 *
 * A MAC address is 6 bytes somewhere in a `Uint8Array` — the arena
 * (`cpu.u8`, offset) or a device's own 6-byte array (offset 0) — so
 * comparing and copying never allocate. Only the string helpers
 * ({@link macParse}, {@link macFormat}) do, and they are for configuration.
 *
 * @module
 */

import {
  be16,
  putBe16,
  skbDataPtr,
  skbHeaderCloned,
  skbHeadlen,
  skbHeadroom,
  skbMacHeader,
} from "../skb/access.js";
import type { SkbCpu } from "../skb/cpu.js";
import { __skbPull, __skbPush, ENOMEM, pskbExpandHead, pskbMayPull, pskbTrim } from "../skb/data.js";
import { SKB_DROP_REASON } from "../skb/drop-reason.js";
import {
  CHECKSUM_COMPLETE,
  CHECKSUM_NONE,
  CHECKSUM_PARTIAL,
  NET_SKB_PAD,
  PACKET_BROADCAST,
  PACKET_HOST,
  PACKET_MULTICAST,
  PACKET_OTHERHOST,
  SKB_CSUM,
  SKB_CSUM_START,
  SKB_DATA,
  SKB_FLAGS,
  SKB_HEAD,
  SKB_HEADER_UNSET,
  SKB_IP_SUMMED,
  SKB_LEN,
  SKB_MAC_HEADER,
  SKB_MAC_LEN,
  SKB_NETWORK_HEADER,
  SKB_PKT_TYPE,
  SKB_PROTOCOL,
  SKB_TRANSPORT_HEADER,
  SKBF_CLONED,
  SHINFO_DATAREF,
  SKB_DATAREF_MASK,
  SKB_END,
} from "../skb/layout.js";
import { csumAdd, csumBlockAdd, csumPartial, csumSub, skbChecksum } from "./checksum.js";
import { ETH_ALEN, ETH_DEST, ETH_HLEN, ETH_PROTO, ETH_SOURCE, VLAN_ETH_HLEN } from "./proto.js";

/** `ETH_P_802_3`: "dummy" protocol of Novell raw 802.3 (IPX without LLC). */
export const ETH_P_802_3 = 0x0001;
/** `ETH_P_802_2`: 802.2 LLC frames (length field instead of an EtherType). */
export const ETH_P_802_2 = 0x0004;
/** `ETH_P_802_3_MIN`: values below are 802.3 lengths, not EtherTypes. */
export const ETH_P_802_3_MIN = 0x0600;
/** `ETH_TLEN`: bytes of the EtherType field. */
export const ETH_TLEN = 2;
/** `HH_DATA_MOD`: link-layer headers are reserved in 16-byte steps. */
export const HH_DATA_MOD = 16;

/** `LL_RESERVED_SPACE`: headroom to reserve for a device's link-layer header. */
export function llReservedSpace(hardHeaderLen: number, neededHeadroom = 0): number {
  return ((hardHeaderLen + neededHeadroom) & ~(HH_DATA_MOD - 1)) + HH_DATA_MOD;
}
/** LL_RESERVED_SPACE of a plain Ethernet device (16). */
export const LL_RESERVED_SPACE_ETH = llReservedSpace(ETH_HLEN);
/** LL_RESERVED_SPACE of an 802.1Q device (hard_header_len 18): 32. Locally built packets reserve this. */
export const LL_RESERVED_SPACE_VLAN = llReservedSpace(VLAN_ETH_HLEN);

/** ff:ff:ff:ff:ff:ff (the device's `broadcast`). Allocated once at load. */
export const ETH_BROADCAST_ADDR: Uint8Array = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);

// ---- MAC addresses -------------------------------------------------------------------

/** Parse "aa:bb:cc:dd:ee:ff" (or '-' separated) into a new 6-byte array. Cold: allocates; throws RangeError on bad input. */
export function macParse(s: string): Uint8Array {
  const out = new Uint8Array(ETH_ALEN);
  if (!macParseInto(s, out, 0)) throw new RangeError(`'${s}' is not a MAC address (expected aa:bb:cc:dd:ee:ff)`);
  return out;
}

/** Parse a MAC address string into `u8[off .. off+6)`; false (nothing written) on bad input. Allocates (string split). */
export function macParseInto(s: string, u8: Uint8Array, off: number): boolean {
  const p = s.split(/[:-]/);
  if (p.length !== ETH_ALEN) return false;
  for (const x of p) if (!/^[0-9a-fA-F]{1,2}$/.test(x)) return false;
  for (let i = 0; i < ETH_ALEN; i++) u8[off + i] = Number.parseInt(p[i] as string, 16);
  return true;
}

/** Format 6 bytes at `u8[off]` as "aa:bb:cc:dd:ee:ff". Allocates the string. */
export function macFormat(u8: Uint8Array, off = 0): string {
  let s = "";
  for (let i = 0; i < ETH_ALEN; i++) {
    const b = u8[off + i] as number;
    s += (i === 0 ? "" : ":") + (b < 16 ? "0" : "") + b.toString(16);
  }
  return s;
}

/** `ether_addr_copy`: copy 6 bytes. Allocates nothing. */
export function etherAddrCopy(dst: Uint8Array, dstOff: number, src: Uint8Array, srcOff: number): void {
  dst[dstOff] = src[srcOff] as number;
  dst[dstOff + 1] = src[srcOff + 1] as number;
  dst[dstOff + 2] = src[srcOff + 2] as number;
  dst[dstOff + 3] = src[srcOff + 3] as number;
  dst[dstOff + 4] = src[srcOff + 4] as number;
  dst[dstOff + 5] = src[srcOff + 5] as number;
}

/** `ether_addr_equal`: true when the 6 bytes match. Allocates nothing. */
export function etherAddrEqual(a: Uint8Array, aOff: number, b: Uint8Array, bOff: number): boolean {
  return (
    a[aOff] === b[bOff] &&
    a[aOff + 1] === b[bOff + 1] &&
    a[aOff + 2] === b[bOff + 2] &&
    a[aOff + 3] === b[bOff + 3] &&
    a[aOff + 4] === b[bOff + 4] &&
    a[aOff + 5] === b[bOff + 5]
  );
}

/** `is_multicast_ether_addr`: group bit (bit 0 of the first byte) set; broadcast included. */
export function isMulticastEtherAddr(u8: Uint8Array, off: number): boolean {
  return ((u8[off] as number) & 1) !== 0;
}

/** `is_broadcast_ether_addr`: ff:ff:ff:ff:ff:ff. */
export function isBroadcastEtherAddr(u8: Uint8Array, off: number): boolean {
  return (
    ((u8[off] as number) &
      (u8[off + 1] as number) &
      (u8[off + 2] as number) &
      (u8[off + 3] as number) &
      (u8[off + 4] as number) &
      (u8[off + 5] as number)) ===
    0xff
  );
}

/** `is_zero_ether_addr`: 00:00:00:00:00:00. */
export function isZeroEtherAddr(u8: Uint8Array, off: number): boolean {
  return (
    ((u8[off] as number) |
      (u8[off + 1] as number) |
      (u8[off + 2] as number) |
      (u8[off + 3] as number) |
      (u8[off + 4] as number) |
      (u8[off + 5] as number)) ===
    0
  );
}

/** `is_valid_ether_addr`: not multicast and not zero (a usable unicast station address). */
export function isValidEtherAddr(u8: Uint8Array, off: number): boolean {
  return !isMulticastEtherAddr(u8, off) && !isZeroEtherAddr(u8, off);
}

/** `is_local_ether_addr`: locally administered bit (0x02 of the first byte). */
export function isLocalEtherAddr(u8: Uint8Array, off: number): boolean {
  return ((u8[off] as number) & 2) !== 0;
}

/** `eth_broadcast_addr`: write ff:ff:ff:ff:ff:ff. */
export function ethBroadcastAddr(u8: Uint8Array, off: number): void {
  u8.fill(0xff, off, off + ETH_ALEN);
}

// ---- ethhdr ---------------------------------------------------------------------------

/** `eth_hdr(skb)`: arena offset of the Ethernet header (the MAC header). */
export function ethHdr(cpu: SkbCpu, skb: number): number {
  return skbMacHeader(cpu, skb);
}
/** `h_proto` of the Ethernet header at arena offset `eth`. */
export function ethHdrProto(u8: Uint8Array, eth: number): number {
  return be16(u8, eth + ETH_PROTO);
}
/** `eth_proto_is_802_3`: an EtherType (>= 0x0600), not an 802.3 length. */
export function ethProtoIs8023(proto: number): boolean {
  return proto >= ETH_P_802_3_MIN;
}

/**
 * `eth_type_trans` plus the receive-core bookkeeping that follows it: set the
 * MAC header, pull ETH_HLEN, classify `pkt_type` against the device address
 * (`devAddr[devAddrOff..+6)`: HOST, BROADCAST, MULTICAST or OTHERHOST), set
 * `skb->protocol` (the EtherType, or ETH_P_802_3 / ETH_P_802_2 for 802.3
 * length frames), reset the network header and, if unset, the transport
 * header, and set mac_len = 14 (`__netif_receive_skb_core`).
 *
 * Unlike the kernel, which trusts drivers, a runt is a drop: returns 0, or
 * PKT_TOO_SMALL (under 14 bytes; skb untouched) or NOMEM (could not make the
 * header linear). The caller frees on a non-zero return. Allocates no JS objects.
 */
export function ethTypeTrans(cpu: SkbCpu, skb: number, devAddr: Uint8Array, devAddrOff: number): number {
  const u32 = cpu.u32;
  const u8 = cpu.u8;
  const len = u32[(skb + SKB_LEN) >>> 2] as number;
  if (len < ETH_HLEN) return SKB_DROP_REASON.PKT_TOO_SMALL;
  if (skbHeadlen(cpu, skb) < ETH_HLEN && !pskbMayPull(cpu, skb, ETH_HLEN)) return SKB_DROP_REASON.NOMEM;
  const eth = u32[(skb + SKB_DATA) >>> 2] as number;
  const headOff = eth - (u32[(skb + SKB_HEAD) >>> 2] as number);
  cpu.u16[(skb + SKB_MAC_HEADER) >>> 1] = headOff;
  __skbPull(cpu, skb, ETH_HLEN);
  // eth_skb_pkt_type
  let pktType = PACKET_HOST;
  if (!etherAddrEqual(u8, eth + ETH_DEST, devAddr, devAddrOff)) {
    if (((u8[eth + ETH_DEST] as number) & 1) !== 0) {
      pktType = isBroadcastEtherAddr(u8, eth + ETH_DEST) ? PACKET_BROADCAST : PACKET_MULTICAST;
    } else {
      pktType = PACKET_OTHERHOST;
    }
  }
  u8[skb + SKB_PKT_TYPE] = pktType;
  let proto = be16(u8, eth + ETH_PROTO);
  if (proto < ETH_P_802_3_MIN) proto = llcProto(cpu, skb);
  cpu.u16[(skb + SKB_PROTOCOL) >>> 1] = proto;
  // __netif_receive_skb_core: network header = data, transport if unset, mac_len.
  const nh = headOff + ETH_HLEN;
  cpu.u16[(skb + SKB_NETWORK_HEADER) >>> 1] = nh;
  if ((cpu.u16[(skb + SKB_TRANSPORT_HEADER) >>> 1] as number) === SKB_HEADER_UNSET) {
    cpu.u16[(skb + SKB_TRANSPORT_HEADER) >>> 1] = nh;
  }
  cpu.u16[(skb + SKB_MAC_LEN) >>> 1] = ETH_HLEN;
  return 0;
}

/**
 * The 802.3 "length" case of eth_type_trans: Novell raw 802.3 (first two
 * payload bytes 0xFFFF) or real 802.2 LLC. Data must be past the MAC header.
 */
function llcProto(cpu: SkbCpu, skb: number): number {
  // skb_header_pointer(skb, 0, 2): linear fast case, else pull two bytes in.
  if (skbHeadlen(cpu, skb) < 2) {
    if ((cpu.u32[(skb + SKB_LEN) >>> 2] as number) < 2 || !pskbMayPull(cpu, skb, 2)) return ETH_P_802_2;
  }
  return be16(cpu.u8, skbDataPtr(cpu, skb)) === 0xffff ? ETH_P_802_3 : ETH_P_802_2;
}

/**
 * `eth_header` on transmit: make sure the head is private with ETH_HLEN of
 * headroom (`skb_cow_head`), push 14 bytes, write destination, source and
 * EtherType `proto`, and set the MAC header and mac_len. `src`/`dst` are
 * 6-byte addresses at the given offsets of any byte array (the arena or a
 * device's own). Returns 0 or -ENOMEM. Allocates no JS objects.
 */
export function ethHeaderPush(
  cpu: SkbCpu,
  skb: number,
  src: Uint8Array,
  srcOff: number,
  dst: Uint8Array,
  dstOff: number,
  proto: number,
): number {
  if (skbCowHead(cpu, skb, ETH_HLEN) !== 0) return -ENOMEM;
  const eth = __skbPush(cpu, skb, ETH_HLEN);
  const u8 = cpu.u8;
  etherAddrCopy(u8, eth + ETH_DEST, dst, dstOff);
  etherAddrCopy(u8, eth + ETH_SOURCE, src, srcOff);
  putBe16(u8, eth + ETH_PROTO, proto);
  cpu.u16[(skb + SKB_MAC_HEADER) >>> 1] = eth - (cpu.u32[(skb + SKB_HEAD) >>> 2] as number);
  cpu.u16[(skb + SKB_MAC_LEN) >>> 1] = ETH_HLEN;
  return 0;
}

// ---- skb write access (skb_cow and friends) ----------------------------------------------
// These are skbuff.h inlines the skb layer does not provide yet; they live
// here, at the bottom of the protocol stack, until they move to src/skb/data.ts.

/** `__skb_cow`: grow headroom to `headroom` (rounded to NET_SKB_PAD) and/or unclone. 0 or -ENOMEM. */
function __skbCow(cpu: SkbCpu, skb: number, headroom: number, cloned: boolean): number {
  const have = skbHeadroom(cpu, skb);
  const delta = headroom > have ? headroom - have : 0;
  if (delta !== 0 || cloned) {
    return pskbExpandHead(cpu, skb, (delta + NET_SKB_PAD - 1) & ~(NET_SKB_PAD - 1), 0);
  }
  return 0;
}

/** Data buffer shared with a clone (`skb_cloned`), inlined for the write paths. */
function dataCloned(cpu: SkbCpu, skb: number): boolean {
  if (((cpu.u8[skb + SKB_FLAGS] as number) & SKBF_CLONED) === 0) return false;
  const sh = (cpu.u32[(skb + SKB_HEAD) >>> 2] as number) + (cpu.u32[(skb + SKB_END) >>> 2] as number);
  return (Atomics.load(cpu.i32, (sh + SHINFO_DATAREF) >>> 2) & SKB_DATAREF_MASK) !== 1;
}

/**
 * `skb_cow`: make the whole head private (unclone) with at least `headroom`
 * bytes of headroom. 0 or -ENOMEM. The skb must not be shared (users == 1).
 * Allocates arena memory only when it must copy; never JS objects.
 */
export function skbCow(cpu: SkbCpu, skb: number, headroom: number): number {
  return __skbCow(cpu, skb, headroom, dataCloned(cpu, skb));
}

/** `skb_cow_head`: like skbCow but only the header area must be private (`skb_header_cloned`). 0 or -ENOMEM. */
export function skbCowHead(cpu: SkbCpu, skb: number, headroom: number): number {
  return __skbCow(cpu, skb, headroom, skbHeaderCloned(cpu, skb));
}

/**
 * `skb_ensure_writable`: the first `writeLen` bytes from data are linear and
 * private. 0, or -ENOMEM (also when `writeLen` exceeds the packet).
 */
export function skbEnsureWritable(cpu: SkbCpu, skb: number, writeLen: number): number {
  if (!pskbMayPull(cpu, skb, writeLen)) return -ENOMEM;
  if (!dataCloned(cpu, skb)) return 0;
  return pskbExpandHead(cpu, skb, 0, 0);
}

/**
 * `skb_postpull_rcsum`: keep a CHECKSUM_COMPLETE sum right after pulling
 * `len` bytes that started at arena offset `start`.
 */
export function skbPostpullRcsum(cpu: SkbCpu, skb: number, start: number, len: number): void {
  const s = cpu.u8[skb + SKB_IP_SUMMED] as number;
  if (s === CHECKSUM_COMPLETE) {
    const i = (skb + SKB_CSUM) >>> 2;
    cpu.u32[i] = csumSub(cpu.u32[i] as number, csumPartial(cpu.u8, start, len, 0));
  } else if (s === CHECKSUM_PARTIAL) {
    // skb_checksum_start_offset(skb) < 0: the checksummed region was pulled away.
    const start16 = cpu.u16[(skb + SKB_CSUM_START) >>> 1] as number;
    if (start16 < skbHeadroom(cpu, skb)) cpu.u8[skb + SKB_IP_SUMMED] = CHECKSUM_NONE;
  }
}

/** `skb_postpush_rcsum`: add `len` bytes pushed at arena offset `start` to a CHECKSUM_COMPLETE sum. */
export function skbPostpushRcsum(cpu: SkbCpu, skb: number, start: number, len: number): void {
  if ((cpu.u8[skb + SKB_IP_SUMMED] as number) === CHECKSUM_COMPLETE) {
    const i = (skb + SKB_CSUM) >>> 2;
    cpu.u32[i] = csumAdd(cpu.u32[i] as number, csumPartial(cpu.u8, start, len, 0));
  }
}

/** `skb_pull_rcsum`: pull `len` linear bytes keeping CHECKSUM_COMPLETE right; new data offset. Caller guarantees len <= headlen. */
export function skbPullRcsum(cpu: SkbCpu, skb: number, len: number): number {
  const start = cpu.u32[(skb + SKB_DATA) >>> 2] as number;
  const data = __skbPull(cpu, skb, len);
  skbPostpullRcsum(cpu, skb, start, len);
  return data;
}

/**
 * `pskb_trim_rcsum`: trim to `len` bytes; a CHECKSUM_COMPLETE sum has the
 * trimmed tail subtracted (`pskb_trim_rcsum_slow`). 0 or -ENOMEM.
 */
export function pskbTrimRcsum(cpu: SkbCpu, skb: number, len: number): number {
  const cur = cpu.u32[(skb + SKB_LEN) >>> 2] as number;
  if (len >= cur) return 0;
  if ((cpu.u8[skb + SKB_IP_SUMMED] as number) === CHECKSUM_COMPLETE) {
    // csum_block_sub(csum, skb_checksum(skb, len, cur - len, 0), len)
    const delta = skbChecksum(cpu, skb, len, cur - len, 0);
    const i = (skb + SKB_CSUM) >>> 2;
    cpu.u32[i] = csumBlockAdd(cpu.u32[i] as number, ~delta >>> 0, len);
  }
  return pskbTrim(cpu, skb, len);
}
