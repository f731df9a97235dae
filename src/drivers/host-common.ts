/**
 * Pieces shared by the traffic generator and the sink: frame templates kept
 * in the arena, the per-packet copy-and-patch into a page-pool page, and the
 * skb built around it with `napiBuildSkb` (as a NIC driver's RX refill does).
 *
 * @module
 */

import { kfree } from "../mm/mm.js";
import { kmalloc } from "../mm/kmalloc.js";
import { type PagePool, pagePoolAllocPage, pagePoolCreate, pagePoolDestroy, pagePoolPutPage } from "../mm/page-pool.js";
import { __skbPut, skbReserve } from "../skb/data.js";
import { napiBuildSkb } from "../skb/alloc.js";
import type { SkbCpu } from "../skb/cpu.js";
import { CHECKSUM_PARTIAL, CHECKSUM_UNNECESSARY, NET_SKB_PAD, SKB_DATA, SKB_FLAGS, SKB_IP_SUMMED, SKBF_PP_RECYCLE } from "../skb/layout.js";
import { csumFold, csumPartial, csumTcpudpNofold, skbChecksum } from "../net/checksum.js";
import { skbChecksumHelp } from "../net/ipv4.js";
import { be32s } from "../skb/access.js";
import { buildFrame, type FrameLayout, type FrameSpec } from "./frames.js";

/** RX buffer size: one frame per 4 KiB page-pool page. */
export const HOST_BUF_SIZE = 4096;

/** A template copied into the arena (address + layout). */
export interface ArenaTemplate {
  addr: number;
  len: number;
  layout: FrameLayout;
}

/** Build a frame and store it in a kmalloc'ed arena buffer (cold). */
export function templateCreate(cpu: SkbCpu, spec: FrameSpec): ArenaTemplate {
  const { bytes, layout } = buildFrame(spec);
  const addr = kmalloc(cpu.kmalloc, bytes.length);
  if (addr === 0) throw new Error(`templateCreate: out of kmalloc memory for a ${bytes.length}-byte template`);
  cpu.u8.set(bytes, addr);
  return { addr, len: bytes.length, layout };
}

/** Free a template's buffer. */
export function templateFree(cpu: SkbCpu, t: ArenaTemplate): void {
  kfree(cpu.mm, t.addr);
}

/** A page pool owned by `cpu`, registered so skb frees recycle into it directly. */
export function hostPoolCreate(cpu: SkbCpu): PagePool {
  const pool = pagePoolCreate(cpu.mem.pages, cpu.mm.ppRings, cpu.id);
  cpu.pagePools[pool.id] = pool;
  return pool;
}

/** Tear a host pool down. */
export function hostPoolDestroy(cpu: SkbCpu, pool: PagePool): void {
  pagePoolDestroy(pool);
  cpu.pagePools[pool.id] = undefined;
}

/**
 * A NIC driver's RX buffer: a fresh page-pool page with an skb built around
 * it (head from the NAPI cache, `pp_recycle` set, NET_SKB_PAD reserved, no
 * data yet; the frame goes at skb->data, at most
 * HOST_BUF_SIZE - NET_SKB_PAD - SHINFO_SIZE bytes). Returns 0 when no page
 * or head was available (a page already taken goes back to the pool).
 * Allocates no JS objects.
 */
export function ppRxSkb(cpu: SkbCpu, pool: PagePool): number {
  const page = pagePoolAllocPage(pool);
  if (page === 0) return 0;
  const skb = napiBuildSkb(cpu, page, HOST_BUF_SIZE);
  if (skb === 0) {
    pagePoolPutPage(pool, page, true);
    return 0;
  }
  cpu.u8[skb + SKB_FLAGS] = (cpu.u8[skb + SKB_FLAGS] as number) | SKBF_PP_RECYCLE;
  skbReserve(cpu, skb, NET_SKB_PAD);
  return skb;
}

/**
 * Copy template `t` into a fresh page-pool page and build an skb around it
 * ({@link ppRxSkb}; CHECKSUM_UNNECESSARY: the template's checksums are
 * right and the patches keep them right). Returns the skb with data at the
 * frame start, or 0 when no page or head was available. Allocates no JS
 * objects.
 */
export function hostFrameSkb(cpu: SkbCpu, pool: PagePool, t: ArenaTemplate): number {
  const skb = ppRxSkb(cpu, pool);
  if (skb === 0) return 0;
  const data = cpu.u32[(skb + SKB_DATA) >>> 2] as number;
  cpu.u8.copyWithin(data, t.addr, t.addr + t.len);
  // A host's own packets carry checksums it computed: like a stack handing
  // veth a checksummed skb, the receiver need not verify them again.
  cpu.u8[skb + SKB_IP_SUMMED] = CHECKSUM_UNNECESSARY;
  __skbPut(cpu, skb, t.len);
  return skb;
}

/**
 * Verify the IPv4 header checksum and the UDP/TCP checksum of the packet in
 * `skb` whose IP header is `ipRel` bytes past skb->data, `ipLen` bytes long.
 * Works on non-linear skbs (GSO segments referencing page frags); a
 * CHECKSUM_PARTIAL skb (offloaded by the sender's device) has its checksum
 * completed first, as the receiving NIC would have. True when valid.
 */
export function hostChecksumsOk(cpu: SkbCpu, skb: number, ipRel: number, ipLen: number): boolean {
  const u8 = cpu.u8;
  const ip = (cpu.u32[(skb + SKB_DATA) >>> 2] as number) + ipRel;
  if (csumFold(csumPartial(u8, ip, 20, 0)) !== 0) return false;
  if ((u8[skb + SKB_IP_SUMMED] as number) === CHECKSUM_PARTIAL && skbChecksumHelp(cpu, skb) !== 0) return false;
  const proto = u8[ip + 9] as number;
  const l4 = ip + 20;
  if (proto === 17 && (((u8[l4 + 6] as number) << 8) | (u8[l4 + 7] as number)) === 0) return true;
  const l4Len = ipLen - 20;
  const sum = skbChecksum(cpu, skb, ipRel + 20, l4Len, 0);
  return csumFold(csumTcpudpNofold(be32s(u8, ip + 12), be32s(u8, ip + 16), l4Len, proto, sum)) === 0;
}
