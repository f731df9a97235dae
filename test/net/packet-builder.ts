/**
 * Test helper: build IPv4 / TCP / UDP / ICMP packets as bytes with correct
 * checksums, put them into skbs, and parse + verify packets back. The
 * checksum code here is a deliberately plain, independent RFC 1071
 * implementation (not src/net/checksum.ts), so tests compare the code under
 * test against a from-scratch computation.
 */

import {
  type Conntrack,
  type ConntrackOptions,
  conntrackCreate,
  conntrackDetach,
  conntrackRegionSpec,
  NF_CT_F_NO_NEW,
  NF_INET_POST_ROUTING,
  NF_INET_PRE_ROUTING,
  nfConntrackConfirm,
  nfConntrackIn,
  nfctEntry,
  nfctInfo,
  skbNfct,
} from "../../src/net/conntrack.js";
import { type NatConfig, type NfNat, nfNatCreate, nfNatIpv4 } from "../../src/net/nat.js";
import { skbNetworkHeader, skbResetNetworkHeader, skbSetProtocol, skbSetTransportHeader } from "../../src/skb/access.js";
import { allocSkb } from "../../src/skb/alloc.js";
import { createSkbCpu, type SkbCpu } from "../../src/skb/cpu.js";
import { skbPut, skbReserve } from "../../src/skb/data.js";
import { consumeSkb, kfreeSkbReason } from "../../src/skb/free.js";
import { SKB_DEV, SKB_IP_SUMMED } from "../../src/skb/layout.js";
import { createSkbMemory } from "../../src/skb/memory.js";

export const IPPROTO_ICMP = 1;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
export const IPPROTO_GRE = 47;

export const FIN = 0x01;
export const SYN = 0x02;
export const RST = 0x04;
export const PSH = 0x08;
export const ACK = 0x10;

/** Dotted quad to host-order u32. */
export function ip(a: string): number {
  const p = a.split(".").map(Number);
  return (((p[0] as number) << 24) | ((p[1] as number) << 16) | ((p[2] as number) << 8) | (p[3] as number)) >>> 0;
}

/** One's-complement sum of 16-bit big-endian words (odd byte padded), folded, not complemented. */
export function onesSum(bytes: Uint8Array, start = 0, end = bytes.length, init = 0): number {
  let s = init;
  for (let i = start; i < end; i += 2) {
    const hi = bytes[i] as number;
    const lo = i + 1 < end ? (bytes[i + 1] as number) : 0;
    s += (hi << 8) | lo;
  }
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
  return s;
}

function pseudoSum(saddr: number, daddr: number, proto: number, len: number): number {
  return (saddr >>> 16) + (saddr & 0xffff) + (daddr >>> 16) + (daddr & 0xffff) + proto + len;
}

/** Internet checksum (complemented) of a TCP/UDP segment with its pseudo header; the csum field must be 0. */
export function l4Checksum(saddr: number, daddr: number, proto: number, seg: Uint8Array): number {
  return ~onesSum(seg, 0, seg.length, pseudoSum(saddr, daddr, proto, seg.length)) & 0xffff;
}

function put16(b: Uint8Array, o: number, v: number): void {
  b[o] = (v >>> 8) & 0xff;
  b[o + 1] = v & 0xff;
}
function put32(b: Uint8Array, o: number, v: number): void {
  b[o] = (v >>> 24) & 0xff;
  b[o + 1] = (v >>> 16) & 0xff;
  b[o + 2] = (v >>> 8) & 0xff;
  b[o + 3] = v & 0xff;
}
export function get16(b: Uint8Array, o: number): number {
  return (((b[o] as number) << 8) | (b[o + 1] as number)) >>> 0;
}
export function get32(b: Uint8Array, o: number): number {
  return (((b[o] as number) << 24) | ((b[o + 1] as number) << 16) | ((b[o + 2] as number) << 8) | (b[o + 3] as number)) >>> 0;
}

export interface Ip4 {
  saddr: number;
  daddr: number;
  proto: number;
  ttl?: number;
  id?: number;
}

/** IPv4 header (20 bytes) + payload, with the header checksum. */
export function ipv4(h: Ip4, payload: Uint8Array): Uint8Array {
  const b = new Uint8Array(20 + payload.length);
  b[0] = 0x45;
  put16(b, 2, b.length);
  put16(b, 4, h.id ?? 0x1234);
  put16(b, 6, 0x4000); // DF
  b[8] = h.ttl ?? 64;
  b[9] = h.proto;
  put32(b, 12, h.saddr);
  put32(b, 16, h.daddr);
  put16(b, 10, ~onesSum(b, 0, 20) & 0xffff);
  b.set(payload, 20);
  return b;
}

export interface Tcp {
  sport: number;
  dport: number;
  flags: number;
  seq?: number;
  ack?: number;
  window?: number;
  payload?: Uint8Array;
}

/** TCP segment (20-byte header) with the checksum for saddr/daddr. */
export function tcp(saddr: number, daddr: number, t: Tcp): Uint8Array {
  const p = t.payload ?? new Uint8Array(0);
  const b = new Uint8Array(20 + p.length);
  put16(b, 0, t.sport);
  put16(b, 2, t.dport);
  put32(b, 4, t.seq ?? 1000);
  put32(b, 8, t.ack ?? 0);
  b[12] = 5 << 4;
  b[13] = t.flags;
  put16(b, 14, t.window ?? 65535);
  b.set(p, 20);
  put16(b, 16, l4Checksum(saddr, daddr, IPPROTO_TCP, b));
  return b;
}

export interface Udp {
  sport: number;
  dport: number;
  payload?: Uint8Array;
  /** Send with checksum 0 ("none"). */
  noCsum?: boolean;
}

/** UDP datagram with the checksum for saddr/daddr (0 computed -> 0xffff). */
export function udp(saddr: number, daddr: number, u: Udp): Uint8Array {
  const p = u.payload ?? new Uint8Array(0);
  const b = new Uint8Array(8 + p.length);
  put16(b, 0, u.sport);
  put16(b, 2, u.dport);
  put16(b, 4, b.length);
  b.set(p, 8);
  if (!u.noCsum) {
    const c = l4Checksum(saddr, daddr, IPPROTO_UDP, b);
    put16(b, 6, c === 0 ? 0xffff : c);
  }
  return b;
}

/** ICMP query (echo request 8 / reply 0 ...) with id, seq and checksum. */
export function icmpEcho(type: number, id: number, seq: number, payload: Uint8Array = new Uint8Array(0)): Uint8Array {
  const b = new Uint8Array(8 + payload.length);
  b[0] = type;
  put16(b, 4, id);
  put16(b, 6, seq);
  b.set(payload, 8);
  put16(b, 2, ~onesSum(b) & 0xffff);
  return b;
}

/** ICMP error (type/code) quoting `quote` (an IP header + start of its payload). */
export function icmpError(type: number, code: number, quote: Uint8Array, rest = 0): Uint8Array {
  const b = new Uint8Array(8 + quote.length);
  b[0] = type;
  b[1] = code;
  put32(b, 4, rest);
  b.set(quote, 8);
  put16(b, 2, ~onesSum(b) & 0xffff);
  return b;
}

export interface SkbOpts {
  /** skb->dev (ingress device). */
  dev?: number;
  /** skb->ip_summed. */
  ipSummed?: number;
}

/** An skb holding `pkt` (starting at the IPv4 header), network and transport headers set. */
export function packetSkb(cpu: SkbCpu, pkt: Uint8Array, o: SkbOpts = {}): number {
  const skb = allocSkb(cpu, pkt.length + 128);
  if (skb === 0) throw new Error("packetSkb: allocSkb failed");
  skbReserve(cpu, skb, 64);
  const at = skbPut(cpu, skb, pkt.length);
  cpu.u8.set(pkt, at);
  skbResetNetworkHeader(cpu, skb);
  skbSetTransportHeader(cpu, skb, ((pkt[0] as number) & 15) * 4);
  skbSetProtocol(cpu, skb, 0x0800);
  cpu.u32[(skb + SKB_DEV) >>> 2] = o.dev ?? 0;
  cpu.u8[skb + SKB_IP_SUMMED] = o.ipSummed ?? 0;
  return skb;
}

/** Copy of the IPv4 packet of an skb (network header .. tot_len). */
export function skbPacket(cpu: SkbCpu, skb: number): Uint8Array {
  const nh = skbNetworkHeader(cpu, skb);
  const len = get16(cpu.u8, nh + 2);
  return cpu.u8.slice(nh, nh + len);
}

/** A parsed packet with every checksum verified from scratch. */
export interface Parsed {
  saddr: number;
  daddr: number;
  proto: number;
  ihl: number;
  totLen: number;
  ipCsumOk: boolean;
  sport: number;
  dport: number;
  tcpFlags: number;
  /** TCP/UDP/ICMP checksum field. */
  csum: number;
  /** L4 checksum verifies (UDP with csum 0: true). Null when the L4 bytes are incomplete (quoted). */
  l4CsumOk: boolean | null;
  icmpType: number;
  icmpCode: number;
  icmpId: number;
  /** For ICMP errors: the quoted packet. */
  inner: Parsed | null;
}

/** Parse an IPv4 packet (or a quoted one: `quoted` allows a truncated L4 part). */
export function parse(b: Uint8Array, quoted = false): Parsed {
  const ihl = ((b[0] as number) & 15) * 4;
  const totLen = get16(b, 2);
  const proto = b[9] as number;
  const saddr = get32(b, 12);
  const daddr = get32(b, 16);
  const end = quoted ? b.length : totLen;
  const l4 = b.subarray(ihl, end);
  const complete = !quoted || totLen <= b.length;
  const r: Parsed = {
    saddr,
    daddr,
    proto,
    ihl,
    totLen,
    ipCsumOk: onesSum(b, 0, ihl) === 0xffff,
    sport: 0,
    dport: 0,
    tcpFlags: 0,
    csum: 0,
    l4CsumOk: null,
    icmpType: -1,
    icmpCode: -1,
    icmpId: -1,
    inner: null,
  };
  if (proto === IPPROTO_TCP || proto === IPPROTO_UDP) {
    r.sport = get16(l4, 0);
    r.dport = get16(l4, 2);
    if (proto === IPPROTO_TCP) {
      if (l4.length >= 20) {
        r.tcpFlags = l4[13] as number;
        r.csum = get16(l4, 16);
      }
    } else {
      r.csum = get16(l4, 6);
    }
    if (complete) {
      const ok = onesSum(l4, 0, l4.length, pseudoSum(saddr, daddr, proto, l4.length)) === 0xffff;
      r.l4CsumOk = proto === IPPROTO_UDP && r.csum === 0 ? true : ok;
    }
  } else if (proto === IPPROTO_ICMP) {
    r.icmpType = l4[0] as number;
    r.icmpCode = l4[1] as number;
    r.csum = get16(l4, 2);
    r.icmpId = get16(l4, 4);
    if (complete) r.l4CsumOk = onesSum(l4) === 0xffff;
    const t = r.icmpType;
    if ((t === 3 || t === 4 || t === 5 || t === 11 || t === 12) && l4.length >= 28) r.inner = parse(l4.subarray(8), true);
  }
  return r;
}

/** Parse the packet in an skb. */
export function parseSkb(cpu: SkbCpu, skb: number): Parsed {
  return parse(skbPacket(cpu, skb));
}

/** Hex dump (for assertion messages). */
export function hexdump(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join(" ");
}

// ---- a two-interface masquerading router around the code under test ----------------------------

/** Inside (VLAN) and outside interface indices. */
export const IN_IF = 1;
export const OUT_IF = 2;
/** Addresses used throughout. */
export const OUTSIDE = ip("203.0.113.1");
export const H1 = ip("10.0.0.2");
export const H2 = ip("10.0.0.3");
export const H3 = ip("10.0.0.4");
export const R1 = ip("198.51.100.7");
export const R2 = ip("198.51.100.8");
export const HOP = ip("192.0.2.254");

export interface Router {
  cpu: SkbCpu;
  ct: Conntrack;
  nat: NfNat;
  /** Fake clock (ms). */
  now: number;
}

/** Memory, CPU 0, a conntrack table (seeded) and a masquerading NAT. */
let lastRouter: Router | null = null;

export function makeRouter(ctOpts: ConntrackOptions = {}, natCfg: Partial<NatConfig> = {}): Router {
  // Let the previous router's arena go (the put-hook registry would keep it alive).
  if (lastRouter !== null) conntrackDetach(lastRouter.ct);
  const o: ConntrackOptions = { seed: 0x5eed, max: 1024, ...ctOpts };
  const mem = createSkbMemory({ arenaSize: 16 << 20, extraRegions: conntrackRegionSpec(o) });
  const cpu = createSkbCpu(mem, 0);
  const ct = conntrackCreate(mem.arena, o);
  const nat = nfNatCreate({ outsideIfindex: OUT_IF, outsideAddr: OUTSIDE, ...natCfg });
  lastRouter = { cpu, ct, nat, now: 1_000_000 };
  return lastRouter;
}

/**
 * The router's netfilter path for one skb: conntrack + DNAT at
 * PRE_ROUTING, SNAT + confirm at POST_ROUTING. Packets from the outside
 * may not create entries. Returns 0 (forwarded) or the drop reason; the
 * skb stays allocated.
 */
export function forward(r: Router, skb: number, fromOutside: boolean): number {
  const { cpu, ct, nat } = r;
  cpu.u32[(skb + SKB_DEV) >>> 2] = fromOutside ? OUT_IF : IN_IF;
  if (nfConntrackIn(ct, cpu, skb, NF_INET_PRE_ROUTING, fromOutside ? NF_CT_F_NO_NEW : 0, r.now) === 0) return ct.reason;
  let v = nfNatIpv4(nat, cpu, skb, NF_INET_PRE_ROUTING, ct);
  if (v !== 0) return v;
  cpu.u32[(skb + SKB_DEV) >>> 2] = fromOutside ? IN_IF : OUT_IF;
  v = nfNatIpv4(nat, cpu, skb, NF_INET_POST_ROUTING, ct);
  if (v !== 0) return v;
  return nfConntrackConfirm(ct, cpu, skb, r.now);
}

export interface Sent {
  verdict: number;
  /** The packet as it left (or as it was when dropped). */
  bytes: Uint8Array;
  /** Entry and ctinfo the skb carried at the end (0 / -1 when untracked). */
  entry: number;
  ctinfo: number;
}

/** Build an skb from `pkt`, forward it, record the result and free the skb (consumed or dropped). */
export function send(r: Router, pkt: Uint8Array, fromOutside: boolean, o: SkbOpts = {}): Sent {
  const skb = packetSkb(r.cpu, pkt, o);
  const verdict = forward(r, skb, fromOutside);
  const nfct = skbNfct(r.cpu, skb);
  const out: Sent = {
    verdict,
    bytes: skbPacket(r.cpu, skb),
    entry: nfct === 0 ? 0 : nfctEntry(nfct),
    ctinfo: nfct === 0 ? -1 : nfctInfo(nfct),
  };
  if (verdict === 0) consumeSkb(r.cpu, skb);
  else kfreeSkbReason(r.cpu, skb, verdict);
  return out;
}

/** TCP packet helper: IPv4 + TCP with correct checksums. */
export function tcpPkt(saddr: number, daddr: number, t: Tcp): Uint8Array {
  return ipv4({ saddr, daddr, proto: IPPROTO_TCP }, tcp(saddr, daddr, t));
}
/** UDP packet helper. */
export function udpPkt(saddr: number, daddr: number, u: Udp): Uint8Array {
  return ipv4({ saddr, daddr, proto: IPPROTO_UDP }, udp(saddr, daddr, u));
}
/** ICMP echo / reply packet helper. */
export function pingPkt(saddr: number, daddr: number, type: number, id: number, seq = 1): Uint8Array {
  return ipv4({ saddr, daddr, proto: IPPROTO_ICMP }, icmpEcho(type, id, seq));
}
