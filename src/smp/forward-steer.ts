/**
 * Which CPU owns a packet of `skb forward --workers N`.
 *
 * Every CPU runs the whole router on its own queue of each multi-queue TAP,
 * with its own conntrack partition, its own slice of the masquerade port
 * range and its own slice of the ICMP echo identifiers. A connection must be
 * handled, in both directions, by the CPU whose partition holds it, so each
 * received packet is given an owner:
 *
 * - arriving on the NAT outside device for the outside address: the CPU whose
 *   port (or ICMP id) slice holds the destination port — the translated
 *   source port of the original direction, which that CPU chose. ICMP errors
 *   are owned through the embedded header (its source port / echo id).
 * - everything else: a symmetric Toeplitz hash (src/core/rss.ts, the
 *   symmetric key) of addresses and ports, so both directions of an
 *   un-NATed flow, and the original direction of a NATed one, agree.
 *   Fragments hash on the addresses only (later fragments carry no ports).
 * - not IPv4 (ARP): the CPU that received it (-1).
 *
 * The kernel's tun picks the queue by itself (a flow goes to the queue that
 * last wrote it, else by its hash), so most packets already arrive at their
 * owner; the rest are handed over on a ring (src/smp/forward-worker.ts).
 * Pure functions of the packet and the layout: the same on every CPU.
 *
 * @module
 */

import { type Rss, rssCreate, rssQueueOf } from "../core/rss.js";
import { be16, be32s, skbHeadlen } from "../skb/access.js";
import type { SkbCpu } from "../skb/cpu.js";
import { SKB_DATA, SKB_DEV, SKB_PROTOCOL } from "../skb/layout.js";
import {
  ETH_P_IP,
  ICMP_DEST_UNREACH,
  ICMP_ECHO,
  ICMP_ECHOREPLY,
  ICMP_PARAMETERPROB,
  ICMP_TIME_EXCEEDED,
  IP_MF,
  IP_OFFSET,
  IPPROTO_ICMP,
  IPPROTO_TCP,
  IPPROTO_UDP,
} from "../net/proto.js";

/** Lowest masquerade port (NfNat's default portMin). */
export const STEER_PORT_MIN = 1024;

/** The steering layout every CPU shares. Fixed shape. */
export class SteerLayout {
  readonly workers: number;
  readonly rss: Rss;
  /** ifindex of the NAT outside device (-1: no NAT). */
  readonly outsideIfindex: number;
  /** Outside address as an int32 (0: no NAT). */
  readonly outsideAddr: number;
  /** Ports per CPU slice (the last slice runs to 65535). */
  readonly portSpan: number;
  /** ICMP ids per CPU slice (the last slice runs to 65535). */
  readonly idSpan: number;

  constructor(workers: number, outsideIfindex: number, outsideAddr: number) {
    if (!Number.isInteger(workers) || workers < 1 || workers > 64) throw new RangeError(`steer: workers ${workers} must be 1..64`);
    this.workers = workers;
    this.rss = rssCreate(workers);
    this.outsideIfindex = outsideIfindex;
    this.outsideAddr = outsideAddr | 0;
    this.portSpan = Math.floor((65535 - STEER_PORT_MIN + 1) / workers);
    this.idSpan = Math.floor(65536 / workers);
  }
}

/** CPU `w`'s masquerade port slice [min, max]. */
export function steerPortRange(l: SteerLayout, w: number): [number, number] {
  const min = STEER_PORT_MIN + w * l.portSpan;
  return [min, w === l.workers - 1 ? 65535 : min + l.portSpan - 1];
}

/** CPU `w`'s ICMP echo id slice [min, max]. */
export function steerIcmpIdRange(l: SteerLayout, w: number): [number, number] {
  const min = w * l.idSpan;
  return [min, w === l.workers - 1 ? 65535 : min + l.idSpan - 1];
}

/** The CPU whose slice holds port `p`; -1 below the masquerade range. */
export function steerPortOwner(l: SteerLayout, p: number): number {
  if (p < STEER_PORT_MIN) return -1;
  const w = Math.floor((p - STEER_PORT_MIN) / l.portSpan);
  return w < l.workers ? w : l.workers - 1;
}

/** The CPU whose slice holds ICMP id `id`. */
export function steerIcmpIdOwner(l: SteerLayout, id: number): number {
  const w = Math.floor(id / l.idSpan);
  return w < l.workers ? w : l.workers - 1;
}

/** Owner through an ICMP error's embedded header (our translated packet going out); -1 when unknown. */
function icmpErrorOwner(l: SteerLayout, u8: Uint8Array, icmp: number, avail: number): number {
  const inner = icmp + 8;
  if (avail < 8 + 20) return -1;
  const ihl = ((u8[inner] as number) & 0x0f) * 4;
  if (ihl < 20 || avail < 8 + ihl + 8) return -1;
  const proto = u8[inner + 9] as number;
  const l4 = inner + ihl;
  if (proto === IPPROTO_TCP || proto === IPPROTO_UDP) return steerPortOwner(l, be16(u8, l4));
  if (proto === IPPROTO_ICMP && (u8[l4] as number) === ICMP_ECHO) return steerIcmpIdOwner(l, be16(u8, l4 + 4));
  return -1;
}

/**
 * The owner CPU of received `skb` (data at the network header, protocol
 * set, as a device's rx handler sees it), or -1 for "whoever received it".
 * Reads only the linear area; allocates nothing.
 */
export function steerOwner(l: SteerLayout, cpu: SkbCpu, skb: number): number {
  if (l.workers === 1) return 0;
  if ((cpu.u16[(skb + SKB_PROTOCOL) >>> 1] as number) !== ETH_P_IP) return -1;
  const u8 = cpu.u8;
  const avail = skbHeadlen(cpu, skb);
  if (avail < 20) return -1;
  const iph = cpu.u32[(skb + SKB_DATA) >>> 2] as number;
  const ihl = ((u8[iph] as number) & 0x0f) * 4;
  if (ihl < 20 || avail < ihl) return -1;
  const saddr = be32s(u8, iph + 12);
  const daddr = be32s(u8, iph + 16);
  const proto = u8[iph + 9] as number;
  const frag = (be16(u8, iph + 6) & (IP_MF | IP_OFFSET)) !== 0;
  if (frag) return rssQueueOf(l.rss, saddr, daddr, 0, 0);
  const t = iph + ihl;
  const tavail = avail - ihl;
  if ((cpu.u32[(skb + SKB_DEV) >>> 2] as number) === l.outsideIfindex && daddr === l.outsideAddr) {
    let w = -1;
    if ((proto === IPPROTO_TCP || proto === IPPROTO_UDP) && tavail >= 4) w = steerPortOwner(l, be16(u8, t + 2));
    else if (proto === IPPROTO_ICMP && tavail >= 8) {
      const type = u8[t] as number;
      if (type === ICMP_ECHOREPLY) w = steerIcmpIdOwner(l, be16(u8, t + 4));
      else if (type === ICMP_DEST_UNREACH || type === ICMP_TIME_EXCEEDED || type === ICMP_PARAMETERPROB) w = icmpErrorOwner(l, u8, t, tavail);
    }
    if (w >= 0) return w;
  }
  if ((proto === IPPROTO_TCP || proto === IPPROTO_UDP) && tavail >= 4) return rssQueueOf(l.rss, saddr, daddr, be16(u8, t), be16(u8, t + 2));
  if (proto === IPPROTO_ICMP && tavail >= 8) {
    const type = u8[t] as number;
    if (type === ICMP_ECHOREPLY || type === ICMP_ECHO) {
      const id = be16(u8, t + 4);
      return rssQueueOf(l.rss, saddr, daddr, id, id);
    }
  }
  return rssQueueOf(l.rss, saddr, daddr, 0, 0);
}
