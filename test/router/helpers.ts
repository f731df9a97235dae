/**
 * Test helpers for the VLAN NAT router scenario: an independent packet
 * builder (RFC 1071 checksums computed here, not with src/net/checksum.ts),
 * frame injection on a veth end (as pktgen / the sink transmit), taps on the
 * veth receive hooks (to see the exact bytes a host gets), polling until the
 * softnet is idle, and packet accounting that also covers IPv4 reassembly
 * (N fragments -> 1 datagram) and fragmentation (1 datagram -> N fragments).
 */

import { GRO_STAT_MERGED, groFlush } from "../../src/core/gro.js";
import { devQueueXmit, type NetDevice, RX_DROPPED, RX_MERGED, TX_DROPPED } from "../../src/core/netdev.js";
import { netRxAction } from "../../src/core/napi.js";
import { HOST_BUF_SIZE } from "../../src/drivers/host-common.js";
import { PG_RX, PG_TX } from "../../src/drivers/pktgen.js";
import { SK_RX, SK_TX } from "../../src/drivers/sink.js";
import { type VethPriv, vethStats, vethTxRoom } from "../../src/drivers/veth.js";
import { allocPage } from "../../src/mm/page-alloc.js";
import { pagePoolAllocPage, pagePoolPutPage } from "../../src/mm/page-pool.js";
import { skbByteAt } from "../../src/net/icmp.js";
import { IPSTATS_MIB_FRAGCREATES, IPSTATS_MIB_FRAGOKS } from "../../src/net/ipv4.js";
import { RT_FRAG_EXTRA, RT_GSO_EXTRA, RT_ICMP_SENT } from "../../src/router/router.js";
import { type Scenario, scenarioAccounting } from "../../src/router/scenario.js";
import { allocSkb, napiBuildSkb } from "../../src/skb/alloc.js";
import type { SkbCpu } from "../../src/skb/cpu.js";
import { __skbPut, skbAddRxFrag, skbPut, skbReserve } from "../../src/skb/data.js";
import { DROP_REASON_NAMES } from "../../src/skb/drop-reason.js";
import { CHECKSUM_PARTIAL, MAX_SKB_FRAGS, NET_SKB_PAD, SKB_DATA, SKB_DATA_LEN, SKB_FLAGS, SKB_IP_SUMMED, SKB_LEN, SKBF_PP_RECYCLE } from "../../src/skb/layout.js";

export const ETH_P_IP = 0x0800;
export const ETH_P_8021Q = 0x8100;
export const PROTO_ICMP = 1;
export const PROTO_TCP = 6;
export const PROTO_UDP = 17;
export const DF = 0x4000;
export const MF = 0x2000;

// ---- addresses -------------------------------------------------------------------------

/** Dotted quad to host-order u32. */
export function ip(a: string): number {
  const p = a.split(".").map(Number);
  return (((p[0] as number) << 24) | ((p[1] as number) << 16) | ((p[2] as number) << 8) | (p[3] as number)) >>> 0;
}

/** Host-order u32 to dotted quad. */
export function ipStr(a: number): string {
  return `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`;
}

// ---- bytes ------------------------------------------------------------------------------

export function rd16(b: Uint8Array, o: number): number {
  return (((b[o] as number) << 8) | (b[o + 1] as number)) >>> 0;
}
export function rd32(b: Uint8Array, o: number): number {
  return (((b[o] as number) << 24) | ((b[o + 1] as number) << 16) | ((b[o + 2] as number) << 8) | (b[o + 3] as number)) >>> 0;
}
export function wr16(b: Uint8Array, o: number, v: number): void {
  b[o] = (v >>> 8) & 0xff;
  b[o + 1] = v & 0xff;
}
export function wr32(b: Uint8Array, o: number, v: number): void {
  b[o] = (v >>> 24) & 0xff;
  b[o + 1] = (v >>> 16) & 0xff;
  b[o + 2] = (v >>> 8) & 0xff;
  b[o + 3] = v & 0xff;
}

/** One's-complement sum of big-endian 16-bit words (odd byte padded), folded, not complemented. */
export function onesSum(b: Uint8Array, start = 0, end = b.length, init = 0): number {
  let s = init;
  for (let i = start; i < end; i += 2) s += ((b[i] as number) << 8) | (i + 1 < end ? (b[i + 1] as number) : 0);
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
  return s;
}

/** Internet checksum (complemented) of b[start, end). */
export function inetCsum(b: Uint8Array, start = 0, end = b.length): number {
  return ~onesSum(b, start, end) & 0xffff;
}

function pseudo(saddr: number, daddr: number, proto: number, len: number): number {
  return (saddr >>> 16) + (saddr & 0xffff) + (daddr >>> 16) + (daddr & 0xffff) + proto + len;
}

/** TCP/UDP checksum over a segment whose checksum field is included as is (0 when the whole is valid). */
export function l4Verify(saddr: number, daddr: number, proto: number, seg: Uint8Array): number {
  return ~onesSum(seg, 0, seg.length, pseudo(saddr, daddr, proto, seg.length)) & 0xffff;
}

/**
 * The L4 (TCP/UDP) checksum of IPv4 packet `ipb` (20-byte header) is right:
 * complete and valid, or — for a CHECKSUM_PARTIAL skb, whose checksum the
 * receiving side of an offloading device completes — the field holds the
 * folded pseudo-header sum (`~csum_tcpudp_magic(.., 0)`).
 */
export function l4ChecksumOk(ipb: Uint8Array, partial: boolean): boolean {
  const proto = ipb[9] as number;
  const seg = ipb.subarray(20);
  const saddr = rd32(ipb, 12);
  const daddr = rd32(ipb, 16);
  if (!partial) return l4Verify(saddr, daddr, proto, seg) === 0;
  const at = proto === PROTO_TCP ? 16 : 6;
  return rd16(seg, at) === onesSum(new Uint8Array(0), 0, 0, pseudo(saddr, daddr, proto, seg.length));
}

// ---- packet building --------------------------------------------------------------------

/** A UDP datagram (header + payload) with a valid checksum. */
export function udpSegment(saddr: number, daddr: number, sport: number, dport: number, payload: Uint8Array): Uint8Array {
  const b = new Uint8Array(8 + payload.length);
  wr16(b, 0, sport);
  wr16(b, 2, dport);
  wr16(b, 4, b.length);
  b.set(payload, 8);
  let c = ~onesSum(b, 0, b.length, pseudo(saddr, daddr, PROTO_UDP, b.length)) & 0xffff;
  if (c === 0) c = 0xffff;
  wr16(b, 6, c);
  return b;
}

/** A TCP segment (20-byte header) with a valid checksum. */
export function tcpSegment(
  saddr: number,
  daddr: number,
  sport: number,
  dport: number,
  seq: number,
  ack: number,
  flags: number,
  payload: Uint8Array,
): Uint8Array {
  const b = new Uint8Array(20 + payload.length);
  wr16(b, 0, sport);
  wr16(b, 2, dport);
  wr32(b, 4, seq);
  wr32(b, 8, ack);
  b[12] = 5 << 4;
  b[13] = flags;
  wr16(b, 14, 65535);
  b.set(payload, 20);
  wr16(b, 16, ~onesSum(b, 0, b.length, pseudo(saddr, daddr, PROTO_TCP, b.length)) & 0xffff);
  return b;
}

/** An ICMP echo request (type 8) or reply (type 0) with a valid checksum. */
export function icmpEcho(type: number, id: number, seq: number, data: Uint8Array): Uint8Array {
  const b = new Uint8Array(8 + data.length);
  b[0] = type;
  wr16(b, 4, id);
  wr16(b, 6, seq);
  b.set(data, 8);
  wr16(b, 2, inetCsum(b));
  return b;
}

export interface Ipv4Spec {
  saddr: number;
  daddr: number;
  proto: number;
  /** Bytes after the header (transport header + payload, or a fragment of them). */
  payload: Uint8Array;
  ttl?: number;
  id?: number;
  tos?: number;
  /** DF / MF flags (host order, e.g. DF | MF). */
  flags?: number;
  /** Fragment offset in bytes (multiple of 8). */
  fragOffset?: number;
  /** IP options (padded to a multiple of 4 with END). */
  options?: Uint8Array;
}

/** An IPv4 packet with a valid header checksum. */
export function ipv4Packet(p: Ipv4Spec): Uint8Array {
  const optLen = p.options === undefined ? 0 : (p.options.length + 3) & ~3;
  const hl = 20 + optLen;
  const b = new Uint8Array(hl + p.payload.length);
  b[0] = 0x40 | (hl >>> 2);
  b[1] = p.tos ?? 0;
  wr16(b, 2, b.length);
  wr16(b, 4, p.id ?? 0);
  wr16(b, 6, (p.flags ?? 0) | ((p.fragOffset ?? 0) >>> 3));
  b[8] = p.ttl ?? 64;
  b[9] = p.proto;
  wr32(b, 12, p.saddr);
  wr32(b, 16, p.daddr);
  if (p.options !== undefined) b.set(p.options, 20);
  b.set(p.payload, hl);
  wr16(b, 10, inetCsum(b, 0, hl));
  return b;
}

/** Recompute the IPv4 header checksum of the header at b[off] in place. */
export function fixIpCsum(b: Uint8Array, off: number): void {
  const hl = ((b[off] as number) & 15) * 4;
  b[off + 10] = 0;
  b[off + 11] = 0;
  wr16(b, off + 10, inetCsum(b, off, off + hl));
}

/** An Ethernet frame, 802.1Q tagged when vlan ≠ 0 (tci = vlan, any PCP bits included). */
export function ethFrame(dst: Uint8Array, src: Uint8Array, vlan: number, type: number, payload: Uint8Array): Uint8Array {
  const l2 = vlan !== 0 ? 18 : 14;
  const b = new Uint8Array(l2 + payload.length);
  b.set(dst, 0);
  b.set(src, 6);
  if (vlan !== 0) {
    wr16(b, 12, ETH_P_8021Q);
    wr16(b, 14, vlan);
    wr16(b, 16, type);
  } else {
    wr16(b, 12, type);
  }
  b.set(payload, l2);
  return b;
}

/** Deterministic payload bytes. */
export function pattern(n: number, seed = 0): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 7 + 11) & 0xff;
  return b;
}

// ---- parsed view of a received frame ----------------------------------------------------

export interface ParsedFrame {
  bytes: Uint8Array;
  vlan: number;
  type: number;
  /** Offset of the L3 header in bytes (-1 when not IPv4 or too short). */
  ipOff: number;
}

/** Parse L2 of a frame: VLAN id (0 untagged), EtherType, IPv4 header offset. */
export function parseFrame(b: Uint8Array): ParsedFrame {
  if (b.length < 14) return { bytes: b, vlan: 0, type: -1, ipOff: -1 };
  let type = rd16(b, 12);
  let off = 14;
  let vlan = 0;
  if (type === ETH_P_8021Q && b.length >= 18) {
    vlan = rd16(b, 14) & 0x0fff;
    type = rd16(b, 16);
    off = 18;
  }
  const ipOff = type === ETH_P_IP && b.length >= off + 20 ? off : -1;
  return { bytes: b, vlan, type, ipOff };
}

// ---- scenario plumbing ------------------------------------------------------------------

/** A copy of the whole packet (linear part, frags and frag_list) of `skb`, from skb->data. */
export function skbBytes(cpu: SkbCpu, skb: number): Uint8Array {
  const len = cpu.u32[(skb + SKB_LEN) >>> 2] as number;
  const dataLen = cpu.u32[(skb + SKB_DATA_LEN) >>> 2] as number;
  const data = cpu.u32[(skb + SKB_DATA) >>> 2] as number;
  if (dataLen === 0) return cpu.u8.slice(data, data + len);
  const out = new Uint8Array(len);
  for (let i = 0; i < len; i++) out[i] = skbByteAt(cpu, skb, i);
  return out;
}

export interface TappedFrame {
  bytes: Uint8Array;
  /** The skb was non-linear when the host got it (frags / frag_list). */
  nonLinear: boolean;
  /** The L4 checksum was left to the device (CHECKSUM_PARTIAL: the field holds the pseudo-header sum). */
  partial: boolean;
}

/**
 * Record every frame a veth end receives (before its host's receive hook
 * runs): wraps the end's receive function. Returns the live list.
 */
export function tap(dev: NetDevice): TappedFrame[] {
  const p = dev.priv as VethPriv;
  const orig = p.recv;
  const frames: TappedFrame[] = [];
  p.recv = (cpu, napi, skb) => {
    frames.push({
      bytes: skbBytes(cpu, skb),
      nonLinear: (cpu.u32[(skb + SKB_DATA_LEN) >>> 2] as number) !== 0,
      partial: (cpu.u8[skb + SKB_IP_SUMMED] as number) === CHECKSUM_PARTIAL,
    });
    orig(cpu, napi, skb);
  };
  return frames;
}

/** Poll the scenario's softnet until nothing is scheduled and GRO holds nothing. */
export function pollIdle(s: Scenario): void {
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < 1_000_000 && s.sd.count > 0; i++) netRxAction(s.sd);
    if (s.groIn !== null) groFlush(s.cpu, s.groIn, true, s.portIn.deliver);
    if (s.groOut !== null) groFlush(s.cpu, s.groOut, true, s.portOut.deliver);
  }
  for (let i = 0; i < 1_000_000 && s.sd.count > 0; i++) netRxAction(s.sd);
}

/**
 * How the injected skb is built: a page-pool page (crosses the veth as a
 * frame), a kmalloc head (crosses as an skb), or a kmalloc head holding the
 * first `headLen` bytes with the rest in page frags (a non-linear skb, as a
 * header-split NIC builds; crosses as an skb).
 */
export type InjectKind = "page" | "kmalloc" | "frags";

/**
 * Transmit `bytes` (a whole Ethernet frame) on veth end `dev` (gen0: an
 * inside host; srv0: the outside server), as pktgen / the sink do, and
 * count it as sent by that host so scenarioAccounting covers it. Polls
 * first when the peer's ring is full.
 */
export function inject(s: Scenario, dev: NetDevice, bytes: Uint8Array, kind: InjectKind = "page", headLen = 64): void {
  const cpu = s.cpu;
  if (vethTxRoom(dev) <= 0) pollIdle(s);
  let skb = 0;
  if (kind === "page" && bytes.length <= HOST_BUF_SIZE - NET_SKB_PAD - 512) {
    const pool = dev === s.srv0 ? s.sink.pool : s.pktgen.pool;
    const page = pagePoolAllocPage(pool);
    if (page === 0) throw new Error("inject: no page-pool page");
    cpu.u8.set(bytes, page + NET_SKB_PAD);
    skb = napiBuildSkb(cpu, page, HOST_BUF_SIZE);
    if (skb === 0) {
      pagePoolPutPage(pool, page, true);
      throw new Error("inject: no skb head");
    }
    cpu.u8[skb + SKB_FLAGS] = (cpu.u8[skb + SKB_FLAGS] as number) | SKBF_PP_RECYCLE;
    skbReserve(cpu, skb, NET_SKB_PAD);
    __skbPut(cpu, skb, bytes.length);
  } else if (kind === "frags") {
    const head = Math.min(headLen, bytes.length);
    skb = allocSkb(cpu, head + NET_SKB_PAD);
    if (skb === 0) throw new Error("inject: allocSkb failed");
    skbReserve(cpu, skb, NET_SKB_PAD);
    cpu.u8.set(bytes.subarray(0, head), skbPut(cpu, skb, head));
    let i = 0;
    for (let off = head; off < bytes.length; i++) {
      // Frags of uneven sizes, the last one taking whatever is left.
      const n = i === MAX_SKB_FRAGS - 1 ? bytes.length - off : Math.min(bytes.length - off, 100 + ((i * 337) % 900));
      const page = allocPage(cpu.mem.pages);
      if (page === 0) throw new Error("inject: no page");
      cpu.u8.set(bytes.subarray(off, off + n), page + 128);
      skbAddRxFrag(cpu, skb, i, page, 128, n, 4096);
      off += n;
    }
  } else {
    skb = allocSkb(cpu, bytes.length + NET_SKB_PAD);
    if (skb === 0) throw new Error("inject: allocSkb failed");
    skbReserve(cpu, skb, NET_SKB_PAD);
    const at = skbPut(cpu, skb, bytes.length);
    cpu.u8.set(bytes, at);
  }
  if (dev === s.srv0) s.sink.stats[SK_TX]++;
  else s.pktgen.stats[PG_TX]++;
  devQueueXmit(cpu, dev, skb);
}

/** Drops by reason name, summed over every device of the scenario. */
export function dropsByReason(s: Scenario): Record<string, number> {
  const o: Record<string, number> = {};
  for (const d of s.ns.list()) {
    for (let r = 0; r < d.drops.length; r++) {
      const n = d.drops[r] as number;
      if (n !== 0) o[DROP_REASON_NAMES[r] as string] = (o[DROP_REASON_NAMES[r] as string] ?? 0) + n;
    }
  }
  return o;
}

/** Drops of `dev` by reason name. */
export function devDrops(dev: NetDevice): Record<string, number> {
  const o: Record<string, number> = {};
  for (let r = 0; r < dev.drops.length; r++) {
    const n = dev.drops[r] as number;
    if (n !== 0) o[DROP_REASON_NAMES[r] as string] = n;
  }
  return o;
}

export interface Balance {
  ok: boolean;
  /** sent + generated (ICMP errors, GSO and fragmentation extras). */
  lhs: number;
  /** received + dropped + queued + merged (GRO merges, fragments held for reassembly). */
  rhs: number;
  merged: number;
  fragExtra: number;
  gsoExtra: number;
  /** Sum of per-reason drop counters equals the RX/TX dropped counters on every device. */
  reasonsOk: boolean;
  /** The router's fragment counter agrees with IPSTATS (FragCreates − FragOKs). */
  fragCountersOk: boolean;
  detail: string;
}

/**
 * Packet conservation computed from the raw counters (an independent
 * cross-check of scenarioAccounting): every packet a host sent, plus every
 * packet the router made (ICMP errors; the n − 1 extra packets of each GSO
 * aggregate cut in n and each datagram fragmented in n, the latter taken
 * from IPSTATS FragCreates − FragOKs), is received by a host, dropped (by
 * reason) on some device, still queued on a ring, or merged into another
 * packet (GRO merges; fragments held for reassembly, RX_MERGED).
 */
export function balance(s: Scenario): Balance {
  const sent = (s.pktgen.stats[PG_TX] as number) + (s.sink.stats[SK_TX] as number);
  const received = (s.pktgen.stats[PG_RX] as number) + (s.sink.stats[SK_RX] as number);
  let merged = 0;
  let dropped = 0;
  let reasonsOk = true;
  for (const d of s.ns.list()) {
    merged += d.stats[RX_MERGED] as number;
    const n = (d.stats[RX_DROPPED] as number) + (d.stats[TX_DROPPED] as number);
    dropped += n;
    let byReason = 0;
    for (let r = 0; r < d.drops.length; r++) byReason += d.drops[r] as number;
    if (byReason !== n) reasonsOk = false;
  }
  for (const g of [s.groIn, s.groOut]) if (g !== null) merged += g.stats[GRO_STAT_MERGED] as number;
  let queued = 0;
  for (const d of [s.gen0, s.in0, s.out0, s.srv0]) queued += vethStats(d).queued;
  const st = s.router.ipStats;
  const fragExtra = (st[IPSTATS_MIB_FRAGCREATES] as number) - (st[IPSTATS_MIB_FRAGOKS] as number);
  const gsoExtra = s.router.stats[RT_GSO_EXTRA] as number;
  const icmp = s.router.stats[RT_ICMP_SENT] as number;
  const fragCountersOk = (s.router.stats[RT_FRAG_EXTRA] as number) === fragExtra;
  const lhs = sent + icmp + gsoExtra + fragExtra;
  const rhs = received + dropped + queued + merged;
  const a = scenarioAccounting(s);
  return {
    ok: lhs === rhs && a.vethOk && reasonsOk && fragCountersOk,
    lhs,
    rhs,
    merged,
    fragExtra,
    gsoExtra,
    reasonsOk,
    fragCountersOk,
    detail:
      `sent ${sent} + icmp ${icmp} + gsoExtra ${gsoExtra} + fragExtra ${fragExtra} = ${lhs} vs ` +
      `received ${received} + dropped ${dropped} + queued ${queued} + merged ${merged} = ${rhs}; ` +
      `reasonsOk ${reasonsOk} fragCountersOk ${fragCountersOk} vethOk ${a.vethOk} ${a.problems.join("; ")}`,
  };
}
