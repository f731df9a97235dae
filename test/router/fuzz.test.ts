/**
 * Fuzzing the VLAN NAT router through its test bed: random byte frames and
 * valid frames with random mutations (bit flips, truncation, length fields
 * that lie, random 802.1Q / 802.1ad tags, random IP options and ihl,
 * random protocol numbers, fragments at random offsets, TTLs, MACs,
 * EtherTypes), injected on both sides (gen0: inside hosts, srv0: the
 * outside server) in random order, interleaved with valid pktgen traffic,
 * polling and clock jumps (fragment expiry, conntrack GC).
 *
 * Properties: nothing throws; after every poll and at the end, every frame
 * sent by a host is received by a host, counted as a drop by reason on
 * some device, merged into a reassembled datagram or still queued
 * (test/router/helpers.ts `balance`, which extends scenarioAccounting by
 * the router's RX_MERGED and fragmentation counters); the veth pairs
 * balance; per-reason drop counters add up; scenarioDestroy leaks nothing.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { RT_FORWARDED, RT_ICMP_SENT, RT_LOCAL } from "../../src/router/router.js";
import { flowSrcAddr, flowSrcPort } from "../../src/drivers/traffic.js";
import { type Scenario, scenarioAccounting, scenarioCreate, scenarioDestroy, scenarioHandshake, scenarioRun } from "../../src/router/scenario.js";
import {
  balance,
  DF,
  dropsByReason,
  ETH_P_8021Q,
  ETH_P_IP,
  ethFrame,
  fixIpCsum,
  icmpEcho,
  inetCsum,
  type InjectKind,
  inject,
  ip,
  ipv4Packet,
  MF,
  onesSum,
  parseFrame,
  pattern,
  pollIdle,
  PROTO_ICMP,
  PROTO_TCP,
  PROTO_UDP,
  rd16,
  rd32,
  tap,
  tcpSegment,
  udpSegment,
  wr16,
} from "./helpers.js";

const SERVER = ip("198.51.100.10");
const NAT = ip("198.51.100.1");
const ROUTER_IN = ip("10.10.0.1");
/** Inside sources: 10.10.0.2..5 are neighbours (4 inside hosts), .6/.7 are not. */
const INSIDE = [ip("10.10.0.2"), ip("10.10.0.3"), ip("10.10.0.4"), ip("10.10.0.5"), ip("10.10.0.6"), ip("10.10.0.7")];
/** Destinations from the inside: the server, the router's two addresses, no route, the outside subnet, another inside host, broadcast. */
const DESTS = [SERVER, SERVER, SERVER, NAT, ROUTER_IN, ip("203.0.113.5"), ip("198.51.100.77"), ip("10.10.0.3"), ip("255.255.255.255"), ip("224.0.0.1")];
/** Sources seen from the outside. */
const OUT_SRCS = [SERVER, SERVER, ip("198.51.100.20"), ip("203.0.113.9"), ip("10.10.0.2"), 0];
const OUT_DESTS = [NAT, NAT, NAT, ip("10.10.0.2"), ip("198.51.100.77"), ip("255.255.255.255")];

// ---- frame descriptions (materialized against a scenario) ---------------------------------

type Side = "in" | "out";

type Base =
  | { t: "udp"; src: number; dst: number; sport: number; dport: number; len: number; ttl: number; df: boolean; tos: number; id: number }
  | { t: "tcp"; src: number; dst: number; sport: number; dport: number; len: number; ttl: number; flags: number; seq: number; ack: number; id: number }
  | { t: "echo"; src: number; dst: number; type: number; code: number; len: number; ttl: number }
  | { t: "icmpErr"; src: number; dst: number; type: number; code: number; innerProto: number; innerSport: number; innerDport: number; innerLen: number }
  | { t: "frag"; src: number; dst: number; proto: number; id: number; off: number; mf: boolean; df: boolean; len: number; seed: number }
  | { t: "proto"; src: number; dst: number; proto: number; len: number; seed: number }
  /** A TCP segment of pktgen's flow `flow`, `k` segments of `len` past its next sequence number. */
  | { t: "stream"; flow: number; k: number; len: number; flags: number; sameId: boolean };

type Mut =
  | { m: "flip"; pos: number; bit: number }
  | { m: "trunc"; len: number }
  | { m: "totlen"; v: number }
  | { m: "vlan"; remove: boolean; tci: number; tpid: number; useOwn: boolean }
  | { m: "ihl"; ihl: number; opts: Uint8Array; adjustLen: boolean }
  | { m: "proto"; p: number }
  | { m: "frag"; off: number; mf: boolean; df: boolean }
  | { m: "ttl"; v: number }
  | { m: "dmac"; kind: number }
  | { m: "etype"; v: number }
  | { m: "l4len"; v: number }
  | { m: "pad"; n: number };

type Action =
  | { a: "raw"; side: Side; bytes: Uint8Array; routerMac: boolean; kind: InjectKind; headLen: number }
  | { a: "pkt"; side: Side; base: Base; muts: Mut[]; fixIp: boolean; fixL4: boolean; kind: InjectKind; headLen: number }
  | { a: "burst"; flow: number; len: number; segs: { kind: InjectKind; headLen: number; flags: number; muts: Mut[] }[]; sameId: boolean }
  | { a: "run"; n: number }
  | { a: "poll" }
  | { a: "advance"; ms: number };

function ipPacketOf(s: Scenario, b: Base): Uint8Array {
  switch (b.t) {
    case "udp":
      return ipv4Packet({
        saddr: b.src,
        daddr: b.dst,
        proto: PROTO_UDP,
        ttl: b.ttl,
        tos: b.tos,
        id: b.id,
        flags: b.df ? DF : 0,
        payload: udpSegment(b.src, b.dst, b.sport, b.dport, pattern(b.len, b.id)),
      });
    case "tcp":
      return ipv4Packet({
        saddr: b.src,
        daddr: b.dst,
        proto: PROTO_TCP,
        ttl: b.ttl,
        id: b.id,
        flags: DF,
        payload: tcpSegment(b.src, b.dst, b.sport, b.dport, b.seq, b.ack, b.flags, pattern(b.len, b.seq & 0xff)),
      });
    case "echo": {
      const e = icmpEcho(b.type, 0x77, 1, pattern(b.len));
      e[1] = b.code;
      e[2] = 0;
      e[3] = 0;
      wr16(e, 2, ~onesSum(e) & 0xffff);
      return ipv4Packet({ saddr: b.src, daddr: b.dst, proto: PROTO_ICMP, ttl: b.ttl, payload: e });
    }
    case "icmpErr": {
      // An ICMP error about a packet the inside sent out (as the server would see it after NAT).
      const innerL4 =
        b.innerProto === PROTO_TCP
          ? tcpSegment(b.dst, b.src, b.innerSport, b.innerDport, 1, 0, 0x10, new Uint8Array(0))
          : udpSegment(b.dst, b.src, b.innerSport, b.innerDport, pattern(b.innerLen));
      const inner = ipv4Packet({ saddr: b.dst, daddr: b.src, proto: b.innerProto, payload: innerL4 });
      const body = inner.subarray(0, Math.min(inner.length, 28 + b.innerLen));
      const icmp = new Uint8Array(8 + body.length);
      icmp[0] = b.type;
      icmp[1] = b.code;
      icmp.set(body, 8);
      wr16(icmp, 2, ~onesSum(icmp) & 0xffff);
      return ipv4Packet({ saddr: b.src, daddr: b.dst, proto: PROTO_ICMP, payload: icmp });
    }
    case "frag":
      return ipv4Packet({
        saddr: b.src,
        daddr: b.dst,
        proto: b.proto,
        id: b.id,
        flags: (b.mf ? MF : 0) | (b.df ? DF : 0),
        fragOffset: b.off * 8,
        payload: pattern(b.len, b.seed),
      });
    case "proto":
      return ipv4Packet({ saddr: b.src, daddr: b.dst, proto: b.proto, payload: pattern(b.len, b.seed) });
    case "stream": {
      const t = s.traffic;
      const f = b.flow % t.flows;
      const src = flowSrcAddr(t, f);
      const sport = flowSrcPort(t, f);
      const pg = s.pktgen;
      const seq = ((pg.sndNxt[f] as number) + b.k * b.len) >>> 0;
      const id = ((pg.ipId[f] as number) + (b.sameId ? 0 : b.k)) & 0xffff;
      return ipv4Packet({
        saddr: src,
        daddr: t.server,
        proto: PROTO_TCP,
        id,
        flags: DF,
        payload: tcpSegment(src, t.server, sport, t.serverPort, seq, pg.rcvNxt[f] as number, b.flags, pattern(b.len, seq & 0xff)),
      });
    }
  }
}

function concat(...parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function applyMut(s: Scenario, b: Uint8Array, m: Mut): Uint8Array {
  const p = parseFrame(b);
  const ipOff = p.ipOff;
  switch (m.m) {
    case "flip": {
      if (b.length === 0) return b;
      const c = b.slice();
      const i = m.pos % c.length;
      c[i] = (c[i] as number) ^ (1 << m.bit);
      return c;
    }
    case "trunc":
      return b.slice(0, m.len % (b.length + 1));
    case "totlen":
      if (ipOff < 0) return b;
      wr16(b, ipOff + 2, m.v);
      return b;
    case "vlan": {
      if (b.length < 14) return b;
      const tagged = rd16(b, 12) === ETH_P_8021Q || rd16(b, 12) === 0x88a8;
      const rest = b.subarray(tagged ? 16 : 12);
      if (m.remove) return concat(b.subarray(0, 12), rest);
      const tag = new Uint8Array(4);
      wr16(tag, 0, m.tpid);
      wr16(tag, 2, m.useOwn ? (m.tci & 0xf000) | (s.traffic.vlan === 0 ? 10 : s.traffic.vlan) : m.tci);
      return concat(b.subarray(0, 12), tag, rest);
    }
    case "ihl": {
      if (ipOff < 0) return b;
      const oldHl = ((b[ipOff] as number) & 15) * 4;
      if (oldHl < 20 || ipOff + oldHl > b.length) return b;
      const want = m.ihl * 4;
      const optLen = Math.max(0, want - 20);
      const opts = new Uint8Array(optLen);
      opts.set(m.opts.subarray(0, optLen));
      const c = concat(b.subarray(0, ipOff + 20), opts, b.subarray(ipOff + oldHl));
      c[ipOff] = ((c[ipOff] as number) & 0xf0) | m.ihl;
      if (m.adjustLen) wr16(c, ipOff + 2, rd16(c, ipOff + 2) + optLen - (oldHl - 20));
      return c;
    }
    case "proto":
      if (ipOff >= 0) b[ipOff + 9] = m.p;
      return b;
    case "frag":
      if (ipOff >= 0) wr16(b, ipOff + 6, (m.mf ? MF : 0) | (m.df ? DF : 0) | (m.off & 0x1fff));
      return b;
    case "ttl":
      if (ipOff >= 0) b[ipOff + 8] = m.v;
      return b;
    case "dmac":
      if (b.length >= 6) {
        if (m.kind === 0) b.fill(0xff, 0, 6);
        else if (m.kind === 1) b.set([0x01, 0x00, 0x5e, 0x00, 0x00, 0x01], 0);
        else b.set([0x02, 0x11, 0x22, 0x33, 0x44, m.kind & 0xff], 0);
      }
      return b;
    case "etype":
      if (b.length >= 14) wr16(b, rd16(b, 12) === ETH_P_8021Q && b.length >= 18 ? 16 : 12, m.v);
      return b;
    case "l4len": {
      if (ipOff < 0) return b;
      const hl = ((b[ipOff] as number) & 15) * 4;
      if (ipOff + hl + 6 <= b.length) wr16(b, ipOff + hl + 4, m.v);
      return b;
    }
    case "pad":
      return concat(b, new Uint8Array(m.n));
  }
}

/** Recompute the IPv4 header checksum when the header is there to checksum. */
function fixIp(b: Uint8Array): void {
  const p = parseFrame(b);
  if (p.ipOff < 0) return;
  const hl = ((b[p.ipOff] as number) & 15) * 4;
  if (hl >= 20 && p.ipOff + hl <= b.length) fixIpCsum(b, p.ipOff);
}

/** Recompute the UDP/TCP checksum of a complete, self-consistent datagram. */
function fixL4(b: Uint8Array): void {
  const p = parseFrame(b);
  if (p.ipOff < 0) return;
  const o = p.ipOff;
  const hl = ((b[o] as number) & 15) * 4;
  const tot = rd16(b, o + 2);
  const proto = b[o + 9] as number;
  if (hl < 20 || (rd16(b, o + 6) & (MF | 0x1fff)) !== 0 || o + tot > b.length || tot < hl) return;
  const seg = b.subarray(o + hl, o + tot);
  const at = proto === PROTO_UDP ? 6 : proto === PROTO_TCP ? 16 : -1;
  if (at < 0 || seg.length < at + 2) return;
  seg[at] = 0;
  seg[at + 1] = 0;
  const saddr = rd32(b, o + 12);
  const daddr = rd32(b, o + 16);
  const ps = (saddr >>> 16) + (saddr & 0xffff) + (daddr >>> 16) + (daddr & 0xffff) + proto + seg.length;
  let c = ~onesSum(seg, 0, seg.length, ps) & 0xffff;
  if (c === 0 && proto === PROTO_UDP) c = 0xffff;
  wr16(seg, at, c);
}

function materialize(s: Scenario, a: Extract<Action, { a: "pkt" }>): Uint8Array {
  const inside = a.side === "in";
  let b = ethFrame(inside ? s.in0.mac : s.out0.mac, inside ? s.gen0.mac : s.srv0.mac, inside ? s.traffic.vlan : 0, ETH_P_IP, ipPacketOf(s, a.base));
  for (const m of a.muts) b = applyMut(s, b, m);
  if (a.fixL4) fixL4(b);
  if (a.fixIp) fixIp(b);
  return b;
}

// ---- arbitraries -----------------------------------------------------------------------

const port = fc.oneof(fc.integer({ min: 40000, max: 40003 }), fc.constant(5201), fc.integer({ min: 0, max: 65535 }));

function baseArb(side: Side): fc.Arbitrary<Base> {
  const src = side === "in" ? fc.constantFrom(...INSIDE) : fc.constantFrom(...OUT_SRCS);
  const dst = side === "in" ? fc.constantFrom(...DESTS) : fc.constantFrom(...OUT_DESTS);
  const ttl = fc.constantFrom(0, 1, 2, 64, 64, 64, 64, 255);
  return fc.oneof(
    { weight: 4, arbitrary: fc.record({ t: fc.constant("udp" as const), src, dst, sport: port, dport: port, len: fc.oneof(fc.integer({ min: 0, max: 64 }), fc.integer({ min: 0, max: 1600 }), fc.integer({ min: 1350, max: 1480 })), ttl, df: fc.boolean(), tos: fc.integer({ min: 0, max: 255 }), id: fc.integer({ min: 0, max: 65535 }) }) },
    { weight: 3, arbitrary: fc.record({ t: fc.constant("tcp" as const), src, dst, sport: port, dport: port, len: fc.integer({ min: 0, max: 1460 }), ttl, flags: fc.integer({ min: 0, max: 255 }), seq: fc.integer({ min: 0, max: 0xffffffff }), ack: fc.integer({ min: 0, max: 0xffffffff }), id: fc.integer({ min: 0, max: 65535 }) }) },
    { weight: 2, arbitrary: fc.record({ t: fc.constant("echo" as const), src, dst, type: fc.constantFrom(8, 8, 0, 13, 3, 11, 200), code: fc.constantFrom(0, 0, 0, 1, 255), len: fc.oneof(fc.integer({ min: 0, max: 1500 }), fc.integer({ min: 1360, max: 1480 })), ttl }) },
    { weight: 2, arbitrary: fc.record({ t: fc.constant("icmpErr" as const), src, dst, type: fc.constantFrom(3, 11, 12, 4, 5), code: fc.integer({ min: 0, max: 15 }), innerProto: fc.constantFrom(PROTO_UDP, PROTO_TCP, PROTO_ICMP), innerSport: port, innerDport: port, innerLen: fc.integer({ min: 0, max: 64 }) }) },
    { weight: 3, arbitrary: fc.record({ t: fc.constant("frag" as const), src, dst, proto: fc.constantFrom(PROTO_UDP, PROTO_TCP, PROTO_ICMP, 47), id: fc.integer({ min: 0, max: 3 }), off: fc.oneof(fc.integer({ min: 0, max: 400 }), fc.integer({ min: 0, max: 8191 })), mf: fc.boolean(), df: fc.boolean(), len: fc.integer({ min: 0, max: 1480 }), seed: fc.integer({ min: 0, max: 255 }) }) },
    { weight: 1, arbitrary: fc.record({ t: fc.constant("proto" as const), src, dst, proto: fc.integer({ min: 0, max: 255 }), len: fc.integer({ min: 0, max: 200 }), seed: fc.integer({ min: 0, max: 255 }) }) },
    ...(side === "in"
      ? [{ weight: 2, arbitrary: fc.record({ t: fc.constant("stream" as const), flow: fc.integer({ min: 0, max: 3 }), k: fc.integer({ min: 0, max: 3 }), len: fc.constantFrom(1460, 1460, 536, 100, 0), flags: fc.constantFrom(0x10, 0x10, 0x18, 0x11, 0x12, 0x14, 0x90, 0x30), sameId: fc.boolean() }) }]
      : []),
  );
}

const mutArb: fc.Arbitrary<Mut> = fc.oneof(
  fc.record({ m: fc.constant("flip" as const), pos: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ m: fc.constant("trunc" as const), len: fc.nat() }),
  fc.record({ m: fc.constant("totlen" as const), v: fc.integer({ min: 0, max: 65535 }) }),
  fc.record({ m: fc.constant("vlan" as const), remove: fc.boolean(), tci: fc.integer({ min: 0, max: 65535 }), tpid: fc.constantFrom(ETH_P_8021Q, 0x88a8), useOwn: fc.boolean() }),
  fc.record({ m: fc.constant("ihl" as const), ihl: fc.integer({ min: 0, max: 15 }), opts: fc.uint8Array({ minLength: 40, maxLength: 40 }), adjustLen: fc.boolean() }),
  fc.record({ m: fc.constant("proto" as const), p: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ m: fc.constant("frag" as const), off: fc.integer({ min: 0, max: 8191 }), mf: fc.boolean(), df: fc.boolean() }),
  fc.record({ m: fc.constant("ttl" as const), v: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ m: fc.constant("dmac" as const), kind: fc.integer({ min: 0, max: 3 }) }),
  fc.record({ m: fc.constant("etype" as const), v: fc.oneof(fc.constantFrom(0x0806, 0x86dd, 0x0800, 0x8100, 0x88a8, 0x0001, 0x05ff), fc.integer({ min: 0, max: 0xffff })) }),
  fc.record({ m: fc.constant("l4len" as const), v: fc.integer({ min: 0, max: 65535 }) }),
  fc.record({ m: fc.constant("pad" as const), n: fc.integer({ min: 1, max: 64 }) }),
);

const kindArb = fc.constantFrom<InjectKind>("page", "page", "kmalloc", "frags");
const headLenArb = fc.oneof(fc.integer({ min: 0, max: 60 }), fc.constantFrom(14, 18, 34, 38, 42, 54, 58));
const sideArb = fc.constantFrom<Side>("in", "in", "out");

const pktArb: fc.Arbitrary<Action> = sideArb.chain((side) =>
  fc.record({
    a: fc.constant("pkt" as const),
    side: fc.constant(side),
    base: baseArb(side),
    muts: fc.oneof(fc.constant([] as Mut[]), fc.array(mutArb, { minLength: 1, maxLength: 3 })),
    fixIp: fc.constantFrom(true, true, true, false),
    fixL4: fc.boolean(),
    kind: kindArb,
    headLen: headLenArb,
  }),
);

const rawArb: fc.Arbitrary<Action> = fc.record({
  a: fc.constant("raw" as const),
  side: sideArb,
  bytes: fc.oneof(fc.uint8Array({ minLength: 0, maxLength: 80 }), fc.uint8Array({ minLength: 0, maxLength: 1600 })),
  routerMac: fc.boolean(),
  kind: kindArb,
  headLen: headLenArb,
});

const actionArb: fc.Arbitrary<Action> = fc.oneof(
  { weight: 8, arbitrary: pktArb },
  { weight: 3, arbitrary: rawArb },
  { weight: 2, arbitrary: fc.record({ a: fc.constant("run" as const), n: fc.integer({ min: 1, max: 48 }) }) },
  {
    weight: 2,
    arbitrary: fc.record({
      a: fc.constant("burst" as const),
      flow: fc.integer({ min: 0, max: 3 }),
      len: fc.constantFrom(1460, 1460, 536, 8),
      sameId: fc.boolean(),
      segs: fc.array(
        fc.record({
          kind: kindArb,
          headLen: headLenArb,
          flags: fc.constantFrom(0x10, 0x10, 0x10, 0x18, 0x11, 0x90, 0x30, 0x12),
          muts: fc.oneof({ weight: 4, arbitrary: fc.constant([] as Mut[]) }, { weight: 1, arbitrary: fc.array(mutArb, { minLength: 1, maxLength: 2 }) }),
        }),
        { minLength: 2, maxLength: 12 },
      ),
    }),
  },
  { weight: 2, arbitrary: fc.constant({ a: "poll" as const }) },
  { weight: 1, arbitrary: fc.record({ a: fc.constant("advance" as const), ms: fc.constantFrom(150, 5_000, 31_000, 200_000) }) },
);

interface BedCfg {
  proto: "udp" | "tcp";
  vlan: number;
  mtu: number;
  gro: boolean;
  profile: string;
}

const bedArb: fc.Arbitrary<BedCfg> = fc.record({
  proto: fc.constantFrom<"udp" | "tcp">("udp", "udp", "tcp"),
  vlan: fc.constantFrom(10, 10, 0),
  mtu: fc.constantFrom(1500, 1400),
  gro: fc.boolean(),
  profile: fc.constantFrom("5.12", "6.19"),
});

/** Multiply every numRuns (e.g. ROUTER_FUZZ_SCALE=20 for a long bug hunt). */
const SCALE = Math.max(1, Number(process.env.ROUTER_FUZZ_SCALE ?? "1") || 1);
/** Reached drop reasons and router counters over all runs (for a coverage sanity check). */
const seen = { drops: new Map<string, number>(), forwarded: 0, icmp: 0, fragExtra: 0, gsoExtra: 0, merged: 0, local: 0 };

// ---- the property ---------------------------------------------------------------------

function checkBalance(s: Scenario, where: string): void {
  const b = balance(s);
  assert.ok(b.reasonsOk, `${where}: per-reason drops do not add up to the dropped counters`);
  assert.ok(b.ok, `${where}: ${b.detail}`);
  assert.ok(scenarioAccounting(s).vethOk, `${where}: veth pairs out of balance`);
}

function runActions(cfg: BedCfg, actions: Action[]): void {
  const s = scenarioCreate({
    traffic: { proto: cfg.proto, size: "imix", flows: 4, insideHosts: 4, vlan: cfg.vlan, udpReplyEvery: 2 },
    profile: cfg.profile,
    gro: cfg.gro,
    mtu: cfg.mtu,
    fullValidation: true,
    arenaSize: 32 << 20,
    conntrackMax: 4096,
  });
  // TCP: open the flows before any fuzzing. The sink has one connection slot per
  // flow, and a fuzzed SYN to the server port may legitimately take one.
  if (cfg.proto === "tcp") scenarioHandshake(s);
  const gen = tap(s.gen0);
  const srv = tap(s.srv0);
  let i = 0;
  for (const a of actions) {
    i++;
    switch (a.a) {
      case "raw": {
        const b = a.bytes.slice();
        if (a.routerMac && b.length >= 6) b.set(a.side === "in" ? s.in0.mac : s.out0.mac, 0);
        inject(s, a.side === "in" ? s.gen0 : s.srv0, b, a.kind, a.headLen);
        break;
      }
      case "pkt":
        inject(s, a.side === "in" ? s.gen0 : s.srv0, materialize(s, a), a.kind, a.headLen);
        break;
      case "burst":
        // Consecutive segments of one pktgen flow, queued together so GRO sees them in one poll.
        a.segs.forEach((g, k) => {
          const p: Extract<Action, { a: "pkt" }> = {
            a: "pkt",
            side: "in",
            base: { t: "stream", flow: a.flow, k, len: a.len, flags: g.flags, sameId: a.sameId },
            muts: g.muts,
            fixIp: true,
            fixL4: true,
            kind: g.kind,
            headLen: g.headLen,
          };
          inject(s, s.gen0, materialize(s, p), g.kind, g.headLen);
        });
        break;
      case "run": {
        const r = scenarioRun(s, a.n);
        assert.equal(r.stalled, false, `action ${i}: valid traffic stalled`);
        checkBalance(s, `after action ${i} (run ${a.n})`);
        break;
      }
      case "poll":
        pollIdle(s);
        checkBalance(s, `after action ${i} (poll)`);
        break;
      case "advance":
        // Jump the softnet clock (jiffies = Date.now() - epoch): fragment queues and
        // conntrack entries age, the router's timers run at the next packet.
        (s.sd as unknown as { epoch: number }).epoch -= a.ms;
        break;
    }
  }
  pollIdle(s);
  checkBalance(s, "at the end");
  // What the router put on the wires: IPv4 with a valid header, within the MTU;
  // the outside sees only the NAT address, the inside only its own VLAN and prefix.
  for (const [side, frames] of [["srv0", srv], ["gen0", gen]] as const) {
    for (const f of frames) {
      const p = parseFrame(f.bytes);
      const what = `${side} frame ${Array.from(f.bytes.subarray(0, 48), (x) => x.toString(16).padStart(2, "0")).join("")}`;
      assert.equal(p.vlan, side === "srv0" ? 0 : s.traffic.vlan, `${what}: VLAN`);
      assert.ok(p.ipOff >= 0, `${what}: IPv4`);
      const hl = ((f.bytes[p.ipOff] as number) & 15) * 4;
      const tot = rd16(f.bytes, p.ipOff + 2);
      assert.ok(hl >= 20 && tot >= hl && p.ipOff + tot <= f.bytes.length, `${what}: header and length`);
      assert.equal(inetCsum(f.bytes, p.ipOff, p.ipOff + hl), 0, `${what}: header checksum`);
      assert.ok(tot <= (side === "srv0" ? s.out0.mtu : s.inside.mtu), `${what}: within the MTU`);
      if (side === "srv0") assert.equal(rd32(f.bytes, p.ipOff + 12), NAT, `${what}: source is the NAT address`);
      else assert.equal(rd32(f.bytes, p.ipOff + 16) >>> 16, 0x0a0a, `${what}: destination inside 10.10.0.0/16`);
    }
  }
  for (const [k, v] of Object.entries(dropsByReason(s))) seen.drops.set(k, (seen.drops.get(k) ?? 0) + v);
  const b = balance(s);
  seen.forwarded += s.router.stats[RT_FORWARDED] as number;
  seen.local += s.router.stats[RT_LOCAL] as number;
  seen.icmp += s.router.stats[RT_ICMP_SENT] as number;
  seen.fragExtra += b.fragExtra;
  seen.gsoExtra += b.gsoExtra;
  seen.merged += b.merged;
  const leaks = scenarioDestroy(s);
  assert.equal(leaks.headsInUse, 0, `heads in use: ${JSON.stringify(leaks)}`);
  assert.deepEqual(leaks.slabsInUse, {}, `slabs in use: ${JSON.stringify(leaks)}`);
  assert.equal(leaks.conntrackEntries, 0);
}

describe("router fuzz (fast-check)", () => {
  test("random and mutated frames on both sides, interleaved with valid traffic: no throw, every frame accounted for, no leaks", () => {
    fc.assert(
      fc.property(bedArb, fc.array(actionArb, { minLength: 1, maxLength: 30 }), (cfg, actions) => {
        runActions(cfg, actions);
      }),
      { numRuns: 450 * SCALE },
    );
  });

  test("pure random bytes (runts, garbage EtherTypes, stray MACs) on both sides", () => {
    fc.assert(
      fc.property(bedArb, fc.array(rawArb, { minLength: 1, maxLength: 40 }), (cfg, actions) => {
        runActions(cfg, [...actions, { a: "poll" }]);
      }),
      { numRuns: 150 * SCALE },
    );
  });

  test("fragment storms: random offsets, MF/DF, ids and sizes from both sides, with clock jumps", () => {
    const fragAction: fc.Arbitrary<Action> = sideArb.chain((side) =>
      fc.record({
        a: fc.constant("pkt" as const),
        side: fc.constant(side),
        base: fc.record({
          t: fc.constant("frag" as const),
          src: side === "in" ? fc.constantFrom(...INSIDE.slice(0, 2)) : fc.constant(SERVER),
          dst: side === "in" ? fc.constant(SERVER) : fc.constant(NAT),
          proto: fc.constantFrom(PROTO_UDP, PROTO_TCP, PROTO_ICMP),
          id: fc.integer({ min: 0, max: 2 }),
          off: fc.oneof(fc.integer({ min: 0, max: 16 }).map((x) => x * 62), fc.integer({ min: 0, max: 8191 })),
          mf: fc.boolean(),
          df: fc.boolean(),
          len: fc.oneof(fc.constantFrom(0, 8, 496, 1480), fc.integer({ min: 0, max: 1480 })),
          seed: fc.integer({ min: 0, max: 255 }),
        }),
        muts: fc.constant([] as Mut[]),
        fixIp: fc.constant(true),
        fixL4: fc.constant(false),
        kind: kindArb,
        headLen: headLenArb,
      }),
    );
    fc.assert(
      fc.property(
        bedArb,
        fc.array(
          fc.oneof(
            { weight: 10, arbitrary: fragAction },
            { weight: 1, arbitrary: fc.constant({ a: "poll" as const } as Action) },
            { weight: 1, arbitrary: fc.record({ a: fc.constant("advance" as const), ms: fc.constantFrom(31_000, 200) }) as fc.Arbitrary<Action> },
          ),
          { minLength: 1, maxLength: 60 },
        ),
        (cfg, actions) => {
          runActions(cfg, actions);
        },
      ),
      { numRuns: 150 * SCALE },
    );
  });

  test("the fuzzing reached the router's interesting paths", () => {
    // Sanity check of the generators (runs after the properties above, in file order).
    if (process.env.ROUTER_FUZZ_VERBOSE) console.log(seen);
    assert.ok(seen.forwarded > 0 && seen.local > 0 && seen.icmp > 0 && seen.fragExtra > 0 && seen.merged > 0);
    for (const r of ["IP_CSUM", "IP_INHDR", "PKT_TOO_SMALL", "VLAN_UNKNOWN", "OTHERHOST", "NO_ROUTE", "IP_TTL_EXPIRED", "CT_UNSOLICITED", "NO_SOCKET"]) {
      assert.ok((seen.drops.get(r) ?? 0) > 0, `no ${r} drop reached: ${JSON.stringify([...seen.drops])}`);
    }
  });
});
