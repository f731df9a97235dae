/**
 * 802.1Q / 802.1ad tags (include/linux/if_vlan.h, net/core/skbuff.c): the
 * "hardware accelerated" tag kept in `skb->vlan_proto` / `skb->vlan_tci`,
 * untagging on receive and tag insertion on transmit.
 *
 * ```
 *  tagged frame                                 after skbVlanUntag
 *   0 dest[6]  6 source[6]  12 TPID 0x8100       0 dest[6]  6 source[6]  12 inner type
 *  14 TCI: PCP:3 DEI:1 VID:12  16 inner type     14 payload ...
 *  18 payload ...                                skb->vlan_proto = TPID, vlan_tci = TCI
 * ```
 *
 * As in the kernel ≥ 6.1 a tag is present when `vlan_proto | vlan_tci` is
 * non-zero (`skb->vlan_all`). Nothing here allocates JS objects.
 *
 * @module
 */

import { be16, putBe16 } from "../skb/access.js";
import type { SkbCpu } from "../skb/cpu.js";
import { __skbPush, EINVAL, ENOMEM, pskbMayPull } from "../skb/data.js";
import { SKB_DROP_REASON } from "../skb/drop-reason.js";
import {
  SKB_DATA,
  SKB_HEAD,
  SKB_HEADER_UNSET,
  SKB_LEN,
  SKB_MAC_HEADER,
  SKB_MAC_LEN,
  SKB_NETWORK_HEADER,
  SKB_PROTOCOL,
  SKB_TRANSPORT_HEADER,
  SKB_VLAN_PROTO,
  SKB_VLAN_TCI,
} from "../skb/layout.js";
import { ETH_P_802_2, ETH_P_802_3, ETH_P_802_3_MIN, ETH_TLEN, skbCow, skbCowHead, skbPostpushRcsum, skbPullRcsum } from "./ethernet.js";
import { ETH_ALEN, ETH_HLEN, ETH_P_8021AD, ETH_P_8021Q, VLAN_HLEN, VLAN_PRIO_SHIFT, VLAN_VID_MASK } from "./proto.js";

/** `VLAN_PRIO_MASK`: the PCP bits of a TCI. */
export const VLAN_PRIO_MASK = 0xe000;
/** `VLAN_N_VID`: number of VLAN ids. */
export const VLAN_N_VID = 4096;

/** `eth_type_vlan`: an 802.1Q or 802.1ad TPID. */
export function ethTypeVlan(proto: number): boolean {
  return proto === ETH_P_8021Q || proto === ETH_P_8021AD;
}

/** `skb_vlan_tag_present`: the skb carries an out-of-band (hwaccel) tag. */
export function skbVlanTagPresent(cpu: SkbCpu, skb: number): boolean {
  return ((cpu.u16[(skb + SKB_VLAN_PROTO) >>> 1] as number) | (cpu.u16[(skb + SKB_VLAN_TCI) >>> 1] as number)) !== 0;
}
/** `skb_vlan_tag_get`: the whole TCI. */
export function skbVlanTagGet(cpu: SkbCpu, skb: number): number {
  return cpu.u16[(skb + SKB_VLAN_TCI) >>> 1] as number;
}
/** `skb_vlan_tag_get_id`: the 12-bit VLAN id. */
export function skbVlanTagGetId(cpu: SkbCpu, skb: number): number {
  return (cpu.u16[(skb + SKB_VLAN_TCI) >>> 1] as number) & VLAN_VID_MASK;
}
/** `skb_vlan_tag_get_prio`: the 3-bit PCP. */
export function skbVlanTagGetPrio(cpu: SkbCpu, skb: number): number {
  return ((cpu.u16[(skb + SKB_VLAN_TCI) >>> 1] as number) & VLAN_PRIO_MASK) >>> VLAN_PRIO_SHIFT;
}
/** `skb->vlan_proto` (0 when no tag). */
export function skbVlanProto(cpu: SkbCpu, skb: number): number {
  return cpu.u16[(skb + SKB_VLAN_PROTO) >>> 1] as number;
}
/** `__vlan_hwaccel_put_tag`: set the out-of-band tag. */
export function __vlanHwaccelPutTag(cpu: SkbCpu, skb: number, proto: number, tci: number): void {
  cpu.u16[(skb + SKB_VLAN_PROTO) >>> 1] = proto;
  cpu.u16[(skb + SKB_VLAN_TCI) >>> 1] = tci;
}
/** `__vlan_hwaccel_clear_tag`: drop the out-of-band tag. */
export function __vlanHwaccelClearTag(cpu: SkbCpu, skb: number): void {
  cpu.u16[(skb + SKB_VLAN_PROTO) >>> 1] = 0;
  cpu.u16[(skb + SKB_VLAN_TCI) >>> 1] = 0;
}

/**
 * `vlan_set_encap_proto`: skb->protocol from the encapsulated type of the
 * VLAN header at arena offset `vhdr` (802.3 length → raw-IPX or 802.2 as in
 * eth_type_trans; the two bytes after the header were made linear).
 */
function vlanSetEncapProto(cpu: SkbCpu, skb: number, vhdr: number): void {
  const u8 = cpu.u8;
  const proto = be16(u8, vhdr + 2);
  let p = proto;
  if (proto < ETH_P_802_3_MIN) p = be16(u8, vhdr + VLAN_HLEN) === 0xffff ? ETH_P_802_3 : ETH_P_802_2;
  cpu.u16[(skb + SKB_PROTOCOL) >>> 1] = p;
}

/**
 * `skb_vlan_untag`: on receive, after ethTypeTrans, move an in-band 802.1Q /
 * 802.1ad tag into `vlan_proto` / `vlan_tci` and remove it from the data: the
 * 4 tag bytes are pulled (CHECKSUM_COMPLETE kept right), the 12 MAC address
 * bytes are moved up over them (`skb_reorder_vlan_header`), the MAC header
 * follows, `protocol` becomes the inner EtherType and the network header,
 * transport header (if unset) and mac_len are reset.
 *
 * A no-op returning 0 when a tag is already present (one tag per pass, as in
 * the kernel) or `skb->protocol` is not a VLAN TPID. Returns HDR_TRUNC for a
 * truncated tag (fewer than 4 + 2 bytes after the Ethernet header; skb
 * untouched) and NOMEM when the header could not be made linear or private.
 * The caller frees on a non-zero return. The skb must not be shared.
 * Allocates no JS objects.
 */
export function skbVlanUntag(cpu: SkbCpu, skb: number): number {
  const u16 = cpu.u16;
  if (skbVlanTagPresent(cpu, skb)) return 0;
  const tpid = u16[(skb + SKB_PROTOCOL) >>> 1] as number;
  if (tpid !== ETH_P_8021Q && tpid !== ETH_P_8021AD) return 0;
  // We read the two bytes after the tag in vlanSetEncapProto.
  if ((cpu.u32[(skb + SKB_LEN) >>> 2] as number) < VLAN_HLEN + ETH_TLEN) return SKB_DROP_REASON.HDR_TRUNC;
  if (!pskbMayPull(cpu, skb, VLAN_HLEN + ETH_TLEN)) return SKB_DROP_REASON.NOMEM;
  const vhdr = cpu.u32[(skb + SKB_DATA) >>> 2] as number;
  __vlanHwaccelPutTag(cpu, skb, tpid, be16(cpu.u8, vhdr));
  skbPullRcsum(cpu, skb, VLAN_HLEN);
  vlanSetEncapProto(cpu, skb, vhdr);
  // skb_reorder_vlan_header: the MAC header is about to be rewritten, so the head must be private.
  if (skbCow(cpu, skb, 0) !== 0) return SKB_DROP_REASON.NOMEM;
  const head = cpu.u32[(skb + SKB_HEAD) >>> 2] as number;
  const dataOff = (cpu.u32[(skb + SKB_DATA) >>> 2] as number) - head;
  const macOff = u16[(skb + SKB_MAC_HEADER) >>> 1] as number;
  if (macOff !== SKB_HEADER_UNSET && macOff <= dataOff) {
    const macLen = dataOff - macOff;
    if (macLen > VLAN_HLEN + ETH_TLEN) {
      const mac = head + macOff;
      cpu.u8.copyWithin(mac + VLAN_HLEN, mac, mac + macLen - VLAN_HLEN - ETH_TLEN);
    }
    u16[(skb + SKB_MAC_HEADER) >>> 1] = macOff + VLAN_HLEN;
  }
  u16[(skb + SKB_NETWORK_HEADER) >>> 1] = dataOff;
  if ((u16[(skb + SKB_TRANSPORT_HEADER) >>> 1] as number) === SKB_HEADER_UNSET) u16[(skb + SKB_TRANSPORT_HEADER) >>> 1] = dataOff;
  // skb_reset_mac_len
  const m = u16[(skb + SKB_MAC_HEADER) >>> 1] as number;
  u16[(skb + SKB_MAC_LEN) >>> 1] = m === SKB_HEADER_UNSET || m > dataOff ? 0 : dataOff - m;
  return 0;
}

/**
 * `__vlan_insert_inner_tag`: insert a tag after the first `macLen - 2` bytes
 * of the frame (data must be at the MAC header): make the head private with
 * 4 bytes of headroom, push 4 bytes, move the MAC addresses down, write TPID
 * `proto` and `tci`. 0 or -ENOMEM.
 */
export function __vlanInsertInnerTag(cpu: SkbCpu, skb: number, proto: number, tci: number, macLen: number): number {
  if (skbCowHead(cpu, skb, VLAN_HLEN) !== 0) return -ENOMEM;
  const data = __skbPush(cpu, skb, VLAN_HLEN);
  const u8 = cpu.u8;
  if (macLen > ETH_TLEN) u8.copyWithin(data, data + VLAN_HLEN, data + VLAN_HLEN + macLen - ETH_TLEN);
  const m = cpu.u16[(skb + SKB_MAC_HEADER) >>> 1] as number;
  if (m !== SKB_HEADER_UNSET) cpu.u16[(skb + SKB_MAC_HEADER) >>> 1] = m - VLAN_HLEN;
  const veth = data + macLen - ETH_HLEN;
  if (macLen >= ETH_TLEN) {
    putBe16(u8, veth + 2 * ETH_ALEN, proto);
  } else {
    putBe16(u8, veth + 2 * ETH_ALEN + VLAN_HLEN, cpu.u16[(skb + SKB_PROTOCOL) >>> 1] as number);
  }
  putBe16(u8, veth + 2 * ETH_ALEN + 2, tci);
  return 0;
}

/**
 * `vlan_insert_tag` (transmit, in-band): insert TPID `proto` + `tci` after
 * the MAC addresses of the Ethernet header at skb->data, using headroom
 * (expanding the head if there is less than 4 bytes or it is shared).
 * `skb->protocol` is unchanged (see {@link vlanInsertTagSetProto}).
 * Returns 0 or -ENOMEM; unlike the kernel the skb is not freed on failure.
 */
export function vlanInsertTag(cpu: SkbCpu, skb: number, proto: number, tci: number): number {
  return __vlanInsertInnerTag(cpu, skb, proto, tci, ETH_HLEN);
}

/** `vlan_insert_tag_set_proto`: vlanInsertTag, then skb->protocol = TPID. 0 or -ENOMEM. */
export function vlanInsertTagSetProto(cpu: SkbCpu, skb: number, proto: number, tci: number): number {
  const r = __vlanInsertInnerTag(cpu, skb, proto, tci, ETH_HLEN);
  if (r === 0) cpu.u16[(skb + SKB_PROTOCOL) >>> 1] = proto;
  return r;
}

/**
 * `__vlan_hwaccel_push_inside`: turn the out-of-band tag into an in-band one
 * (for a device without VLAN TX offload): insert it, set protocol to its
 * TPID, clear the out-of-band tag. A no-op returning 0 without a tag.
 * 0 or -ENOMEM.
 */
export function __vlanHwaccelPushInside(cpu: SkbCpu, skb: number): number {
  if (!skbVlanTagPresent(cpu, skb)) return 0;
  const r = vlanInsertTagSetProto(cpu, skb, skbVlanProto(cpu, skb), skbVlanTagGet(cpu, skb));
  if (r === 0) __vlanHwaccelClearTag(cpu, skb);
  return r;
}

/**
 * `skb_vlan_push`: make (`proto`, `tci`) the outermost tag. Kernel
 * semantics: the new tag goes out-of-band; an existing out-of-band tag is
 * first pushed into the data (data must be at the MAC header, else -EINVAL),
 * with mac_len and CHECKSUM_COMPLETE adjusted. Use {@link vlanInsertTag} to
 * write a tag into the frame directly. 0, -EINVAL or -ENOMEM.
 */
export function skbVlanPush(cpu: SkbCpu, skb: number, proto: number, tci: number): number {
  if (skbVlanTagPresent(cpu, skb)) {
    const head = cpu.u32[(skb + SKB_HEAD) >>> 2] as number;
    const offset = (cpu.u32[(skb + SKB_DATA) >>> 2] as number) - head - (cpu.u16[(skb + SKB_MAC_HEADER) >>> 1] as number);
    if (offset !== 0) return -EINVAL;
    const macLen = cpu.u16[(skb + SKB_MAC_LEN) >>> 1] as number;
    const err = __vlanInsertInnerTag(cpu, skb, skbVlanProto(cpu, skb), skbVlanTagGet(cpu, skb), macLen === 0 ? ETH_HLEN : macLen);
    if (err !== 0) return err;
    cpu.u16[(skb + SKB_PROTOCOL) >>> 1] = skbVlanProto(cpu, skb);
    cpu.u16[(skb + SKB_MAC_LEN) >>> 1] = (macLen === 0 ? ETH_HLEN : macLen) + VLAN_HLEN;
    skbPostpushRcsum(cpu, skb, (cpu.u32[(skb + SKB_DATA) >>> 2] as number) + 2 * ETH_ALEN, VLAN_HLEN);
  }
  __vlanHwaccelPutTag(cpu, skb, proto, tci);
  return 0;
}
