/**
 * The GRO frags API (spec §3.7, §4.4): drivers that receive into pages
 * (header split off, or the whole frame in frag 0) do not build an skb per
 * frame. They take the NAPI instance's one reusable skb with
 * `napiGetFrags`, attach the frame's pages with `skbAddRxFrag`, and call
 * {@link napiGroFrags}:
 *
 * ```
 *  napiGetFrags(napi)      napi->skb, or napiAllocSkb(GRO_MAX_HEAD) (shell from the NAPI cache)
 *  skbAddRxFrag(...)       the driver attaches the frame
 *  napiGroFrags(napi)      detach napi->skb, pull the Ethernet header from frag 0,
 *                          protocol = h_proto, devGroReceive, then napi_frags_finish:
 *     GRO_NORMAL / HELD    push the header back, eth_type_trans; NORMAL is delivered
 *     GRO_MERGED_FREE      stolen head -> napiSkbFreeStolenHead (NAPI cache);
 *                          otherwise napiReuseSkb: the emptied skb becomes napi->skb
 *                          again and the next napiGetFrags returns it — it does NOT
 *                          pass through the NAPI cache (spec §1 behaviour 8)
 *     GRO_MERGED / CONSUMED nothing
 * ```
 *
 * Deviation, deliberate: a frame too short for an Ethernet header (the
 * kernel's rate-limited "dropping impossible skb") has its frags released
 * before the skb is reused, so nothing stays attached to napi->skb, and it is
 * counted as a PKT_TOO_SMALL drop on the CPU (NOMEM when the header could
 * not be made linear).
 *
 * Nothing here allocates JS objects per packet.
 *
 * @module
 */

import { ethTypeTrans } from "../net/ethernet.js";
import { ETH_HLEN } from "../net/proto.js";
import { be16, skbHeadlen, skbShinfo } from "../skb/access.js";
import type { NapiSkbOwner } from "../skb/alloc.js";
import type { SkbCpu } from "../skb/cpu.js";
import { __skbPull, __skbPush, pskbMayPull, pskbTrim } from "../skb/data.js";
import { SKB_DROP_REASON } from "../skb/drop-reason.js";
import { consumeSkb, napiSkbFreeStolenHead, skbSlowGroRelease } from "../skb/free.js";
import {
  CHECKSUM_NONE,
  NET_IP_ALIGN,
  NET_SKB_PAD,
  PACKET_HOST,
  SHINFO_GSO_SIZE,
  SHINFO_GSO_TYPE,
  SHINFO_HWTSTAMPS,
  SKB_DATA,
  SKB_DEV,
  SKB_END,
  SKB_EXTENSIONS,
  SKB_FLAGS,
  SKB_FLAGS2,
  SKB_HEAD,
  SKB_IIF,
  SKB_IP_SUMMED,
  SKB_LEN,
  SKB_MAC_HEADER,
  SKB_PKT_TYPE,
  SKB_PROTOCOL,
  SKB_TAIL,
  SKB_TRUESIZE,
  SKB_VLAN_PROTO,
  SKB_VLAN_TCI,
  SKBF_PFMEMALLOC,
  SKBF2_ENCAPSULATION,
  SKBF2_SLOW_GRO,
  skbTruesize,
} from "../skb/layout.js";
import { devGroReceive, GRO_CONSUMED, GRO_HELD, GRO_MERGED_FREE, GRO_NORMAL, type GroDeliverFn, type GroList, NAPI_GRO_FREE_STOLEN_HEAD } from "./gro.js";

/**
 * `napi_reuse_skb`: make the frags skb `skb` (GRO took its frags, or the
 * frame was impossible) napi->skb again. A pfmemalloc skb is consumed
 * instead. Otherwise: the linear data is dropped, the headroom is exactly
 * NET_SKB_PAD + NET_IP_ALIGN again, the VLAN tag cleared, dev = the NAPI's
 * device, iif 0, pkt_type PACKET_HOST, encapsulation 0, gso_type 0. 5.12
 * also resets truesize to SKB_TRUESIZE(end) and drops extensions; 6.19 clears
 * gso_size, ip_summed (CHECKSUM_NONE) and the hardware timestamp, and only
 * when slow_gro is set orphans the skb and drops extensions and conntrack.
 * The shell does not pass through the NAPI cache. Allocates nothing.
 */
export function napiReuseSkb(cpu: SkbCpu, napi: NapiSkbOwner, skb: number): void {
  const u8 = cpu.u8;
  const u32 = cpu.u32;
  if (((u8[skb + SKB_FLAGS] as number) & SKBF_PFMEMALLOC) !== 0) {
    consumeSkb(cpu, skb);
    return;
  }
  __skbPull(cpu, skb, skbHeadlen(cpu, skb));
  // skb_reserve(NET_SKB_PAD + NET_IP_ALIGN - headroom): data == tail here.
  const room = NET_SKB_PAD + NET_IP_ALIGN;
  const head = u32[(skb + SKB_HEAD) >>> 2] as number;
  u32[(skb + SKB_DATA) >>> 2] = head + room;
  u32[(skb + SKB_TAIL) >>> 2] = room;
  cpu.u16[(skb + SKB_VLAN_PROTO) >>> 1] = 0;
  cpu.u16[(skb + SKB_VLAN_TCI) >>> 1] = 0;
  u32[(skb + SKB_DEV) >>> 2] = napi.dev;
  u32[(skb + SKB_IIF) >>> 2] = 0;
  u8[skb + SKB_PKT_TYPE] = PACKET_HOST;
  u8[skb + SKB_FLAGS2] = (u8[skb + SKB_FLAGS2] as number) & ~SKBF2_ENCAPSULATION;
  const sh = skbShinfo(cpu, skb);
  u32[(sh + SHINFO_GSO_TYPE) >>> 2] = 0;
  const p = cpu.profile;
  if (p.reuseResetsTruesize) u32[(skb + SKB_TRUESIZE) >>> 2] = skbTruesize(u32[(skb + SKB_END) >>> 2] as number);
  if (p.reuseClearsCsum) {
    cpu.u16[(sh + SHINFO_GSO_SIZE) >>> 1] = 0;
    u8[skb + SKB_IP_SUMMED] = CHECKSUM_NONE;
    cpu.f64[(sh + SHINFO_HWTSTAMPS) >>> 3] = 0;
  }
  if (p.slowGro === false) u32[(skb + SKB_EXTENSIONS) >>> 2] = 0; // skb_ext_reset
  else if (((u8[skb + SKB_FLAGS2] as number) & SKBF2_SLOW_GRO) !== 0) skbSlowGroRelease(cpu, skb);
  napi.skb = skb;
}

/**
 * `napi_gro_frags`: run GRO on the frags skb the driver filled (see the
 * module notes) and finish the verdict. The skb is detached from `napi`
 * first; `devMac` is the receiving device's address (eth_type_trans's
 * pkt_type). Returns the GRO verdict, GRO_CONSUMED for an impossible frame.
 * Throws when `napi` holds no skb (napiGetFrags was not called).
 */
export function napiGroFrags(cpu: SkbCpu, gro: GroList, napi: NapiSkbOwner, devMac: Uint8Array, deliver: GroDeliverFn): number {
  const skb = napi.skb;
  if (skb === 0) throw new Error("napiGroFrags: the NAPI instance holds no skb (call napiGetFrags and attach the frame first)");
  napi.skb = 0;
  // napi_frags_skb: mac header at data, the Ethernet header linear, then pulled.
  const u32 = cpu.u32;
  const data = u32[(skb + SKB_DATA) >>> 2] as number;
  cpu.u16[(skb + SKB_MAC_HEADER) >>> 1] = data - (u32[(skb + SKB_HEAD) >>> 2] as number);
  const short = (u32[(skb + SKB_LEN) >>> 2] as number) < ETH_HLEN;
  if (short || (skbHeadlen(cpu, skb) < ETH_HLEN && !pskbMayPull(cpu, skb, ETH_HLEN))) {
    cpu.drops[short ? SKB_DROP_REASON.PKT_TOO_SMALL : SKB_DROP_REASON.NOMEM]++;
    pskbTrim(cpu, skb, 0);
    napiReuseSkb(cpu, napi, skb);
    return GRO_CONSUMED;
  }
  const eth = u32[(skb + SKB_DATA) >>> 2] as number;
  __skbPull(cpu, skb, ETH_HLEN);
  cpu.u16[(skb + SKB_PROTOCOL) >>> 1] = be16(cpu.u8, eth + 12);
  const ret = devGroReceive(cpu, gro, skb, deliver);
  // napi_frags_finish
  if (ret === GRO_NORMAL || ret === GRO_HELD) {
    __skbPush(cpu, skb, ETH_HLEN);
    ethTypeTrans(cpu, skb, devMac, 0);
    if (ret === GRO_NORMAL) deliver(cpu, skb);
  } else if (ret === GRO_MERGED_FREE) {
    if (gro.free === NAPI_GRO_FREE_STOLEN_HEAD) napiSkbFreeStolenHead(cpu, skb);
    else napiReuseSkb(cpu, napi, skb);
  }
  return ret;
}
