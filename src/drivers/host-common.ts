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
import { NET_SKB_PAD, SKB_FLAGS, SKBF_PP_RECYCLE } from "../skb/layout.js";
import { csumFold, csumPartial, csumTcpudpNofold } from "../net/checksum.js";
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
 * Copy template `t` into a fresh page-pool page and build an skb around it
 * (head from the NAPI cache, `pp_recycle` set). Returns the skb with data at
 * the frame start, or 0 when no page or head was available. Allocates no JS
 * objects.
 */
export function hostFrameSkb(cpu: SkbCpu, pool: PagePool, t: ArenaTemplate): number {
  const page = pagePoolAllocPage(pool);
  if (page === 0) return 0;
  const data = page + NET_SKB_PAD;
  cpu.u8.copyWithin(data, t.addr, t.addr + t.len);
  const skb = napiBuildSkb(cpu, page, HOST_BUF_SIZE);
  if (skb === 0) {
    pagePoolPutPage(pool, page, true);
    return 0;
  }
  cpu.u8[skb + SKB_FLAGS] = (cpu.u8[skb + SKB_FLAGS] as number) | SKBF_PP_RECYCLE;
  skbReserve(cpu, skb, NET_SKB_PAD);
  __skbPut(cpu, skb, t.len);
  return skb;
}

/**
 * Verify the IPv4 header checksum and the UDP/TCP checksum of a packet whose
 * IP header is at `ip` with total length `ipLen` (all linear). True when valid.
 */
export function l3l4ChecksumsOk(u8: Uint8Array, ip: number, ipLen: number): boolean {
  if (csumFold(csumPartial(u8, ip, 20, 0)) !== 0) return false;
  const proto = u8[ip + 9] as number;
  const l4 = ip + 20;
  const l4Len = ipLen - 20;
  if (proto === 17 && (((u8[l4 + 6] as number) << 8) | (u8[l4 + 7] as number)) === 0) return true;
  const saddr = (((u8[ip + 12] as number) << 24) | ((u8[ip + 13] as number) << 16) | ((u8[ip + 14] as number) << 8) | (u8[ip + 15] as number)) >>> 0;
  const daddr = (((u8[ip + 16] as number) << 24) | ((u8[ip + 17] as number) << 16) | ((u8[ip + 18] as number) << 8) | (u8[ip + 19] as number)) >>> 0;
  return csumFold(csumTcpudpNofold(saddr, daddr, l4Len, proto, csumPartial(u8, l4, l4Len, 0))) === 0;
}
