/**
 * The VLAN NAT router (src/router/router.ts) in its test bed
 * (src/router/scenario.ts):
 *
 * 1. End to end: pktgen → gen0 ═ in0 → in0.10 → router → out0 ═ srv0 → sink
 *    with UDP and TCP, 64 / 1518 / imix, VLAN 10 and untagged, both kernel
 *    profiles, NAPI head cache on and off, full validation at the hosts;
 *    GRO merging TCP and GSO re-segmenting it to MSS-sized segments.
 * 2. Router behaviours with hand-made frames injected on gen0 / srv0:
 *    TTL expiry, no route, unknown VLAN, pings to the router, DF and
 *    fragmentation at a smaller MTU, unsolicited inbound traffic,
 *    reassembly of fragments from the inside.
 *
 * Every test checks packet conservation and, after scenarioDestroy, that
 * nothing leaked (no slab object in use, no skb head, no conntrack entry).
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { GRO_STAT_MERGED, groStats } from "../../src/core/gro.js";
import { SKB_GSO_TCPV4, skbGsoSegment, skbIsGso } from "../../src/core/gso.js";
import { NETDEV_TX_BUSY, NETDEV_TX_OK, NETIF_F_TSO, RX_DROPPED, TX_DROPPED } from "../../src/core/netdev.js";
import { skbShinfo } from "../../src/skb/access.js";
import { CHECKSUM_PARTIAL, SHINFO_GSO_SIZE, SHINFO_GSO_TYPE, SKB_IP_SUMMED, SKB_NEXT } from "../../src/skb/layout.js";
import { buildFrame } from "../../src/drivers/frames.js";
import { PG_RX_BAD_CSUM, pktgenStats } from "../../src/drivers/pktgen.js";
import { SK_BAD_CSUM, SK_RX, sinkStats } from "../../src/drivers/sink.js";
import { flowSrcAddr, flowSrcPort, type TrafficOptions } from "../../src/drivers/traffic.js";
import { nfConntrackCount } from "../../src/net/conntrack.js";
import {
  IPSTATS_MIB_FRAGCREATES,
  IPSTATS_MIB_FRAGOKS,
  IPSTATS_MIB_REASMOKS,
} from "../../src/net/ipv4.js";
import { NUD_PERMANENT, neighDump } from "../../src/net/arp.js";
import { RT_FRAG_EXTRA, RT_GSO_EXTRA, RT_ICMP_SENT, routerAddNeighbour, routerHasNeighbour } from "../../src/router/router.js";
import {
  type Scenario,
  type ScenarioOptions,
  scenarioAccounting,
  scenarioCreate,
  scenarioDestroy,
  scenarioRun,
} from "../../src/router/scenario.js";
import { napiCacheIsEnabled, napiCacheSetEnabled } from "../../src/skb/napi-cache.js";
import {
  balance,
  DF,
  devDrops,
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
  l4ChecksumOk,
  l4Verify,
  MF,
  parseFrame,
  pattern,
  pollIdle,
  PROTO_ICMP,
  PROTO_TCP,
  PROTO_UDP,
  rd16,
  rd32,
  type TappedFrame,
  tap,
  tcpSegment,
  udpSegment,
  wr16,
} from "./helpers.js";

const HOST = ip("10.10.0.2");
const HOST2 = ip("10.10.0.3");
const ROUTER_IN = ip("10.10.0.1");
const NAT = ip("198.51.100.1");
const SERVER = ip("198.51.100.10");
const ARENA = 64 << 20;

interface Bed {
  s: Scenario;
  /** Frames the inside hosts received (at gen0). */
  gen: TappedFrame[];
  /** Frames the outside server received (at srv0). */
  srv: TappedFrame[];
}

function bed(o: Partial<ScenarioOptions> & { traffic?: TrafficOptions } = {}): Bed {
  const s = scenarioCreate({
    traffic: o.traffic ?? { proto: "udp", size: 64, vlan: 10 },
    fullValidation: true,
    arenaSize: ARENA,
    ...(o.profile !== undefined ? { profile: o.profile } : {}),
    ...(o.mtu !== undefined ? { mtu: o.mtu } : {}),
    ...(o.gro !== undefined ? { gro: o.gro } : {}),
  });
  return { s, gen: tap(s.gen0), srv: tap(s.srv0) };
}

/** The teardown every test ends with: nothing leaked, conntrack empty. */
function destroyClean(s: Scenario): void {
  const leaks = scenarioDestroy(s);
  assert.equal(leaks.headsInUse, 0, `skb heads in use after destroy: ${JSON.stringify(leaks)}`);
  assert.deepEqual(leaks.slabsInUse, {}, "slab objects in use after destroy");
  assert.equal(leaks.conntrackEntries, 0, "conntrack entries after destroy");
  assert.equal(nfConntrackCount(s.router.ct), 0);
  assert.ok(leaks.ok);
}

function assertBalanced(s: Scenario): void {
  const b = balance(s);
  assert.ok(b.reasonsOk, "per-reason drop counters must add up to the dropped counters");
  assert.ok(b.ok, `packet conservation: ${b.detail}`);
  const a = scenarioAccounting(s);
  assert.ok(a.ok, `scenarioAccounting: ${a.problems.join("; ")}`);
}

function totalDrops(s: Scenario): number {
  let n = 0;
  for (const d of s.ns.list()) n += (d.stats[RX_DROPPED] as number) + (d.stats[TX_DROPPED] as number);
  return n;
}

/** An Ethernet frame from an inside host to the router (tagged with the scenario's VLAN). */
function fromInside(s: Scenario, ipPacket: Uint8Array, vlan = s.traffic.vlan): Uint8Array {
  return ethFrame(s.in0.mac, s.gen0.mac, vlan, ETH_P_IP, ipPacket);
}

/** An Ethernet frame from the outside server to the router. */
function fromOutside(s: Scenario, ipPacket: Uint8Array): Uint8Array {
  return ethFrame(s.out0.mac, s.srv0.mac, 0, ETH_P_IP, ipPacket);
}

/** The IPv4 packet of a frame (from its IP header to tot_len). */
function ipOf(f: TappedFrame | Uint8Array): Uint8Array {
  const b = f instanceof Uint8Array ? f : f.bytes;
  const p = parseFrame(b);
  assert.ok(p.ipOff >= 0, "frame carries IPv4");
  return b.subarray(p.ipOff, p.ipOff + rd16(b, p.ipOff + 2));
}

/** Check an ICMP message the router sent to an inside host and return its body (after the 8-byte ICMP header). */
function checkIcmpToInside(
  s: Scenario,
  f: TappedFrame,
  want: { type: number; code: number; src: number; dst: number; info?: number; ttl?: number },
): Uint8Array {
  const p = parseFrame(f.bytes);
  assert.equal(p.vlan, s.traffic.vlan, "ICMP leaves on the inside VLAN");
  assert.deepEqual(f.bytes.subarray(0, 6), s.gen0.mac, "to the inside host's MAC");
  assert.deepEqual(f.bytes.subarray(6, 12), s.in0.mac, "from the router's MAC");
  const ipb = ipOf(f);
  assert.equal(ipb[0], 0x45);
  assert.equal(inetCsum(ipb, 0, 20), 0, "IP header checksum");
  assert.equal(ipb[9], PROTO_ICMP);
  assert.equal(rd32(ipb, 12), want.src, "ICMP source");
  assert.equal(rd32(ipb, 16), want.dst, "ICMP destination");
  assert.equal(ipb[8], want.ttl ?? 64, "TTL (64: generated by the router)");
  const icmp = ipb.subarray(20);
  assert.equal(icmp[0], want.type, "ICMP type");
  assert.equal(icmp[1], want.code, "ICMP code");
  assert.equal(inetCsum(icmp), 0, "ICMP checksum");
  if (want.info !== undefined) assert.equal(rd32(icmp, 4), want.info, "ICMP rest-of-header");
  return icmp.subarray(8);
}

// ---------------------------------------------------------------------------------------------
// 1. End to end
// ---------------------------------------------------------------------------------------------

function withNapiCache<T>(on: boolean, fn: () => T): T {
  const prev = napiCacheIsEnabled();
  napiCacheSetEnabled(on);
  try {
    return fn();
  } finally {
    napiCacheSetEnabled(prev);
  }
}

function endToEnd(profile: string, proto: "udp" | "tcp", size: number | "imix", vlan: number): void {
  const PACKETS = 3000;
  const { s, gen, srv } = bed({ profile, traffic: { proto, size, vlan } });
  const t = s.traffic;
  const r = scenarioRun(s, PACKETS);
  assert.equal(r.stalled, false, "pipeline stalled");
  pollIdle(s);
  const sk = sinkStats(s.sink);
  const pg = pktgenStats(s.pktgen);
  const handshake = proto === "tcp" ? 2 * t.flows : 0; // SYN + ACK of every flow
  if (proto === "tcp") assert.equal(pg.established, t.flows, "every TCP flow established");
  // The sink got every packet, intact and in order.
  assert.equal(sk.rx, PACKETS + handshake, `sink rx ${JSON.stringify(sk)}`);
  assert.equal(pg.tx, PACKETS + handshake);
  assert.equal(sk.badCsum, 0);
  assert.equal(sk.badAddr, 0);
  assert.equal(sk.badSeq, 0);
  assert.equal(sk.badOther, 0);
  assert.equal(sk.rxPayload, pg.txPayload, "every payload byte arrived");
  // Every reply reached an inside host, intact.
  assert.ok(sk.tx > 0, "the sink answered");
  assert.equal(pg.rx, sk.tx, "every reply reached the inside");
  assert.equal(pg.rxBadCsum, 0);
  assert.equal(pg.rxBadAddr, 0);
  assert.equal(pg.rxBadOther, 0);
  // The outside saw only the NAT address, untagged, within the MTU.
  assert.equal(srv.length, sk.rx);
  for (const f of srv) {
    const p = parseFrame(f.bytes);
    assert.equal(p.vlan, 0);
    assert.equal(p.type, ETH_P_IP);
    const ipb = ipOf(f);
    assert.equal(rd32(ipb, 12), s.out0.ipAddr, "source is the NAT address");
    assert.equal(rd32(ipb, 16), t.server);
    assert.ok(ipb.length <= s.out0.mtu);
  }
  // Replies went to the right inside host and port (de-masqueraded), on the inside VLAN.
  const hostsSeen = new Set<number>();
  for (const f of gen) {
    const p = parseFrame(f.bytes);
    assert.equal(p.vlan, vlan, "replies carry the inside VLAN tag");
    const ipb = ipOf(f);
    assert.equal(rd32(ipb, 12), t.server);
    assert.equal(rd16(ipb, 20), t.serverPort);
    const daddr = rd32(ipb, 16);
    const dport = rd16(ipb, 22);
    const host = daddr - t.insideBase;
    assert.ok(host >= 0 && host < t.insideHosts, "reply to an inside host");
    const flow = (dport - t.sportBase) * t.insideHosts + host;
    assert.ok(flow >= 0 && flow < t.flows);
    assert.equal(daddr, flowSrcAddr(t, flow));
    assert.equal(dport, flowSrcPort(t, flow));
    if (proto === "udp") assert.equal(rd16(ipb, 28 + 4), flow, "the reply's stamp names the flow it answers");
    hostsSeen.add(daddr);
  }
  assert.equal(gen.length, pg.rx);
  assert.equal(hostsSeen.size, t.insideHosts, "every inside host got replies");
  // Nothing dropped, nothing queued, every packet accounted for.
  const a = scenarioAccounting(s);
  assert.ok(a.ok, a.problems.join("; "));
  assert.deepEqual(a.drops, {}, "no drops");
  assert.equal(a.queued, 0);
  assert.equal(s.router.stats[RT_ICMP_SENT], 0);
  assertBalanced(s);
  // One conntrack entry per flow while running; none after teardown.
  assert.equal(nfConntrackCount(s.router.ct), t.flows);
  destroyClean(s);
}

describe("router end to end (pktgen → router → sink and back)", () => {
  for (const profile of ["5.12", "6.19"]) {
    for (const cache of [true, false]) {
      for (const proto of ["udp", "tcp"] as const) {
        for (const size of [64, 1518, "imix"] as const) {
          for (const vlan of [10, 0]) {
            test(`${profile}, NAPI cache ${cache ? "on" : "off"}: ${proto} ${size} ${vlan === 0 ? "untagged" : `VLAN ${vlan}`}`, () => {
              withNapiCache(cache, () => endToEnd(profile, proto, size, vlan));
            });
          }
        }
      }
    }
  }

  for (const profile of ["5.12", "6.19"]) {
    for (const cache of [true, false]) {
      test(`${profile}, NAPI cache ${cache ? "on" : "off"}: GRO merges TCP 1518 and GSO re-segments it to in-order MSS segments`, () => {
        withNapiCache(cache, () => {
          // Few flows, so segments of one flow arrive back to back (GRO holds at most 8 flows).
          const { s, srv } = bed({ profile, traffic: { proto: "tcp", size: 1518, flows: 4, insideHosts: 4, vlan: 10 } });
          const r = scenarioRun(s, 3000);
          assert.equal(r.stalled, false);
          pollIdle(s);
          const g = groStats(s.groIn as NonNullable<typeof s.groIn>);
          assert.ok((s.groIn?.stats[GRO_STAT_MERGED] as number) > 1000, `GRO merged only ${g.merged}`);
          assert.ok((s.router.stats[RT_GSO_EXTRA] as number) > 1000, "the router segmented GRO aggregates");
          const sk = sinkStats(s.sink);
          assert.equal(sk.rx, 3000 + 8);
          assert.equal(sk.badSeq, 0);
          assert.equal(sk.badCsum, 0);
          // Every data segment at the sink: MSS sized, right checksums and payload, consecutive per flow.
          const MSS = 1460;
          const payloadBase = 18 + 40; // pktgen's template: VLAN frame, payload from offset 58
          const nextSeq = new Map<number, number>();
          const nextId = new Map<number, number>();
          let data = 0;
          let partial = 0;
          for (const f of srv) {
            const ipb = ipOf(f);
            assert.equal(inetCsum(ipb, 0, 20), 0);
            assert.equal(ipb[9], PROTO_TCP);
            assert.ok(l4ChecksumOk(ipb, f.partial), `TCP checksum of a segment (partial ${f.partial})`);
            if (f.partial) partial++;
            const tcp = ipb.subarray(20);
            const hl = ((tcp[12] as number) >>> 4) * 4;
            const payload = tcp.length - hl;
            if (payload === 0) continue;
            data++;
            assert.equal(payload, MSS, "GSO segment carries exactly one MSS");
            assert.equal(ipb.length, 1500);
            for (let j = 0; j < payload; j += 97) assert.equal(tcp[hl + j], ((payloadBase + j) * 7 + 3) & 0xff, "payload bytes intact");
            const port = rd16(tcp, 0);
            const seq = rd32(tcp, 4);
            const want = nextSeq.get(port);
            if (want !== undefined) assert.equal(seq, want, "segments in order, none missing");
            nextSeq.set(port, (seq + payload) >>> 0);
            const id = rd16(ipb, 4);
            const wantId = nextId.get(port);
            if (wantId !== undefined) assert.equal(id, wantId, "IP ids restored per segment");
            nextId.set(port, (id + 1) & 0xffff);
          }
          assert.ok(partial > 0, "GSO segments leave with the checksum offloaded to the veth");
          assert.equal(data, 3000);
          assert.equal(nextSeq.size, 4);
          assertBalanced(s);
          destroyClean(s);
        });
      });
    }
  }

  // ip_finish_output_gso / validate_xmit_skb: a device with NETIF_F_TSO gets
  // the GRO aggregate whole (as a TAP with a vnet header does); the router
  // segments only for devices without it or when a segment would exceed the MTU.
  for (const tso of [true, false]) {
    test(`GSO pass-through: ${tso ? "a TSO device gets TCP aggregates whole" : "without NETIF_F_TSO the router segments them"}`, () => {
      const { s, srv } = bed({ traffic: { proto: "tcp", size: 1518, flows: 4, insideHosts: 4, vlan: 10 } });
      const out = s.out0;
      if (tso) out.features |= NETIF_F_TSO;
      else out.features &= ~NETIF_F_TSO;
      srv.length = 0;
      // The device model: like a NIC with TSO, segment in "hardware" (skbGsoSegment) and hand the
      // segments on; record what the stack gave it.
      const orig = out.xmit;
      const seen = { gso: 0, plain: 0, bad: [] as string[] };
      out.xmit = (cpu, dev, skb) => {
        if (!skbIsGso(cpu, skb)) {
          seen.plain++;
          return orig(cpu, dev, skb);
        }
        seen.gso++;
        const sh = skbShinfo(cpu, skb);
        const gsoSize = cpu.u16[(sh + SHINFO_GSO_SIZE) >>> 1] as number;
        const type = cpu.u32[(sh + SHINFO_GSO_TYPE) >>> 2] as number;
        if (gsoSize !== 1460) seen.bad.push(`gso_size ${gsoSize}`);
        if ((type & SKB_GSO_TCPV4) === 0) seen.bad.push(`gso_type ${type}`);
        if ((cpu.u8[skb + SKB_IP_SUMMED] as number) !== CHECKSUM_PARTIAL) seen.bad.push("not CHECKSUM_PARTIAL");
        const segs = skbGsoSegment(cpu, skb, 1500, dev.features);
        if (segs === 0) return NETDEV_TX_BUSY;
        for (let g = segs; g !== 0; ) {
          const next = cpu.u32[(g + SKB_NEXT) >>> 2] as number;
          cpu.u32[(g + SKB_NEXT) >>> 2] = 0;
          orig(cpu, dev, g);
          g = next;
        }
        return NETDEV_TX_OK;
      };
      const r = scenarioRun(s, 2000);
      assert.equal(r.stalled, false);
      pollIdle(s);
      assert.deepEqual(seen.bad, []);
      if (tso) {
        assert.ok(seen.gso > 100, `aggregates reached the TSO device whole: ${seen.gso}`);
        assert.equal(s.router.stats[RT_GSO_EXTRA], 0, "the router segmented nothing");
      } else {
        assert.equal(seen.gso, 0, "no GSO skb reaches a device without TSO");
        assert.ok((s.router.stats[RT_GSO_EXTRA] as number) > 100, "the router segmented the aggregates itself");
      }
      const sk = sinkStats(s.sink);
      assert.equal(sk.badSeq + sk.badCsum + sk.badAddr + sk.badOther, 0, JSON.stringify(sk));
      assert.equal(sk.rx, 2000 + 8);
      destroyClean(s);
    });
  }

  test("static neighbours are PERMANENT entries on the route's device; an unknown next hop is NEIGH_FAILED without arpResolve", () => {
    const { s } = bed();
    const r = s.router;
    const server = neighDump(r.neigh).find((e) => e.addr >>> 0 === ip("198.51.100.10"));
    assert.ok(server !== undefined, JSON.stringify(neighDump(r.neigh)));
    assert.equal(server.state, NUD_PERMANENT);
    assert.equal(server.ifindex, s.out0.ifindex, "on the device the route to it leaves by");
    assert.equal(routerHasNeighbour(r, ip("198.51.100.10")), true);
    assert.equal(routerHasNeighbour(r, ip("198.51.100.77")), false);
    assert.throws(() => routerAddNeighbour(r, ip("192.0.2.1"), s.srv0.mac), /routerAddNeighbour: no route to 192\.0\.2\.1/);
    assert.equal(r.arpResolve, false);
    destroyClean(s);
  });

  test("GRO off: TCP 1518 is forwarded segment by segment, no GSO", () => {
    const { s } = bed({ gro: false, traffic: { proto: "tcp", size: 1518, flows: 4, insideHosts: 4, vlan: 10 } });
    assert.equal(s.groIn, null);
    const r = scenarioRun(s, 1000);
    assert.equal(r.stalled, false);
    assert.equal(s.router.stats[RT_GSO_EXTRA], 0);
    const sk = sinkStats(s.sink);
    assert.equal(sk.rx, 1000 + 8);
    assert.equal(sk.badSeq + sk.badCsum + sk.badAddr + sk.badOther, 0);
    assertBalanced(s);
    destroyClean(s);
  });
});

// ---------------------------------------------------------------------------------------------
// 2. Router behaviours with crafted frames
// ---------------------------------------------------------------------------------------------

/** A UDP datagram from inside host `src` to the server (optionally DF / TTL / size). */
function udpOut(o: { src?: number; dst?: number; sport?: number; dport?: number; len?: number; ttl?: number; flags?: number; id?: number }): Uint8Array {
  const src = o.src ?? HOST;
  const dst = o.dst ?? SERVER;
  return ipv4Packet({
    saddr: src,
    daddr: dst,
    proto: PROTO_UDP,
    ttl: o.ttl ?? 64,
    flags: o.flags ?? 0,
    id: o.id ?? 0x1234,
    payload: udpSegment(src, dst, o.sport ?? 40000, o.dport ?? 5201, pattern(o.len ?? 40)),
  });
}

describe("router behaviours (crafted frames)", () => {
  for (const vlan of [10, 0]) {
    const vl = vlan === 0 ? "untagged" : `VLAN ${vlan}`;

    test(`${vl}: TTL 1 → ICMP time exceeded quoting the original, IP_TTL_EXPIRED drop`, () => {
      const { s, gen, srv } = bed({ traffic: { proto: "udp", size: 64, vlan } });
      // A pktgen-style frame (frames.ts) with TTL patched to 1.
      const f = buildFrame({
        srcMac: s.gen0.mac,
        dstMac: s.in0.mac,
        vlan,
        saddr: HOST,
        daddr: SERVER,
        proto: PROTO_UDP,
        sport: 40000,
        dport: 5201,
        frameSize: 128,
        id: 77,
      });
      const b = f.bytes;
      b[f.layout.ipOff + 8] = 1;
      fixIpCsum(b, f.layout.ipOff);
      const original = b.slice(f.layout.ipOff);
      inject(s, s.gen0, b);
      pollIdle(s);
      assert.equal(srv.length, 0, "not forwarded");
      assert.equal(gen.length, 1, "the inside host got one ICMP message");
      const quoted = checkIcmpToInside(s, gen[0] as TappedFrame, { type: 11, code: 0, src: ROUTER_IN, dst: HOST, info: 0 });
      assert.deepEqual(quoted, original, "quotes the offending datagram as received (TTL 1)");
      assert.deepEqual(devDrops(s.inside), { IP_TTL_EXPIRED: 1 });
      assert.deepEqual(dropsByReason(s), { IP_TTL_EXPIRED: 1 });
      assert.equal(s.router.stats[RT_ICMP_SENT], 1);
      assertBalanced(s);
      destroyClean(s);
    });

    test(`${vl}: no route (203.0.113.5) → ICMP net unreachable, NO_ROUTE drop`, () => {
      const { s, gen, srv } = bed({ traffic: { proto: "udp", size: 64, vlan } });
      const pkt = udpOut({ dst: ip("203.0.113.5"), dport: 53 });
      inject(s, s.gen0, fromInside(s, pkt));
      pollIdle(s);
      assert.equal(srv.length, 0);
      assert.equal(gen.length, 1);
      const quoted = checkIcmpToInside(s, gen[0] as TappedFrame, { type: 3, code: 0, src: ROUTER_IN, dst: HOST, info: 0 });
      assert.deepEqual(quoted, pkt, "quotes the datagram, TTL not yet decremented");
      assert.deepEqual(devDrops(s.inside), { NO_ROUTE: 1 });
      assert.deepEqual(dropsByReason(s), { NO_ROUTE: 1 });
      assertBalanced(s);
      destroyClean(s);
    });

    test(`${vl}: ping 10.10.0.1 → echo reply with id, sequence and data intact`, () => {
      const { s, gen, srv } = bed({ traffic: { proto: "udp", size: 64, vlan } });
      const echo = icmpEcho(8, 0xbeef, 7, pattern(56, 3));
      inject(s, s.gen0, fromInside(s, ipv4Packet({ saddr: HOST, daddr: ROUTER_IN, proto: PROTO_ICMP, payload: echo, id: 5 })));
      pollIdle(s);
      assert.equal(srv.length, 0);
      assert.equal(gen.length, 1);
      const body = checkIcmpToInside(s, gen[0] as TappedFrame, { type: 0, code: 0, src: ROUTER_IN, dst: HOST });
      const icmp = ipOf(gen[0] as TappedFrame).subarray(20);
      assert.equal(rd16(icmp, 4), 0xbeef);
      assert.equal(rd16(icmp, 6), 7);
      assert.deepEqual(body, pattern(56, 3));
      assert.deepEqual(dropsByReason(s), {});
      assertBalanced(s);
      destroyClean(s);
    });

    test(`${vl}: unknown VLAN id → VLAN_UNKNOWN drop on in0`, () => {
      const { s, gen, srv } = bed({ traffic: { proto: "udp", size: 64, vlan } });
      const other = vlan === 0 ? 10 : 20;
      inject(s, s.gen0, fromInside(s, udpOut({}), other));
      inject(s, s.gen0, fromInside(s, udpOut({}), 4094));
      pollIdle(s);
      assert.equal(srv.length + gen.length, 0);
      assert.deepEqual(devDrops(s.in0), { VLAN_UNKNOWN: 2 });
      assert.deepEqual(dropsByReason(s), { VLAN_UNKNOWN: 2 });
      assertBalanced(s);
      destroyClean(s);
    });
  }

  test("untagged frame on the VLAN trunk (in0 has no IP handler) → UNHANDLED_PROTO drop on in0", () => {
    const { s, gen, srv } = bed();
    inject(s, s.gen0, fromInside(s, udpOut({}), 0));
    pollIdle(s);
    assert.equal(srv.length + gen.length, 0);
    assert.deepEqual(devDrops(s.in0), { UNHANDLED_PROTO: 1 });
    assertBalanced(s);
    destroyClean(s);
  });

  test("VLAN tag with priority bits set is still VLAN 10", () => {
    const { s, srv } = bed();
    inject(s, s.gen0, fromInside(s, udpOut({ len: 100 }), (5 << 13) | 10));
    pollIdle(s);
    assert.equal(srv.length, 1);
    assert.equal(rd32(ipOf(srv[0] as TappedFrame), 12), NAT);
    assertBalanced(s);
    destroyClean(s);
  });

  test("ping with TTL 1 to the router itself is answered (local delivery has no TTL check)", () => {
    const { s, gen } = bed();
    const echo = icmpEcho(8, 1, 1, pattern(16));
    inject(s, s.gen0, fromInside(s, ipv4Packet({ saddr: HOST, daddr: ROUTER_IN, proto: PROTO_ICMP, payload: echo, ttl: 1 })));
    pollIdle(s);
    assert.equal(gen.length, 1);
    checkIcmpToInside(s, gen[0] as TappedFrame, { type: 0, code: 0, src: ROUTER_IN, dst: HOST });
    assertBalanced(s);
    destroyClean(s);
  });

  test("ping the router's outside address from the inside → reply from 198.51.100.1", () => {
    const { s, gen, srv } = bed();
    const echo = icmpEcho(8, 9, 2, pattern(24));
    inject(s, s.gen0, fromInside(s, ipv4Packet({ saddr: HOST2, daddr: NAT, proto: PROTO_ICMP, payload: echo })));
    pollIdle(s);
    assert.equal(srv.length, 0);
    assert.equal(gen.length, 1);
    checkIcmpToInside(s, gen[0] as TappedFrame, { type: 0, code: 0, src: NAT, dst: HOST2 });
    assertBalanced(s);
    destroyClean(s);
  });

  test("ping the NAT address from the outside → echo reply to the server", () => {
    const { s, gen, srv } = bed();
    const echo = icmpEcho(8, 0x4242, 1, pattern(32));
    inject(s, s.srv0, fromOutside(s, ipv4Packet({ saddr: SERVER, daddr: NAT, proto: PROTO_ICMP, payload: echo })));
    pollIdle(s);
    assert.equal(gen.length, 0);
    assert.equal(srv.length, 1);
    const f = srv[0] as TappedFrame;
    assert.deepEqual(f.bytes.subarray(0, 6), s.srv0.mac);
    const ipb = ipOf(f);
    assert.equal(inetCsum(ipb, 0, 20), 0);
    assert.equal(rd32(ipb, 12), NAT);
    assert.equal(rd32(ipb, 16), SERVER);
    const icmp = ipb.subarray(20);
    assert.equal(icmp[0], 0);
    assert.equal(inetCsum(icmp), 0);
    assert.equal(rd16(icmp, 4), 0x4242);
    assert.deepEqual(icmp.subarray(8), pattern(32));
    assertBalanced(s);
    destroyClean(s);
  });

  test("MTU 1400, 1500-byte UDP with DF → ICMP frag-needed (code 4, MTU 1400) to the inside host, PKT_TOO_BIG drop", () => {
    const { s, gen, srv } = bed({ mtu: 1400 });
    const pkt = udpOut({ len: 1472, flags: DF });
    assert.equal(pkt.length, 1500);
    inject(s, s.gen0, fromInside(s, pkt));
    pollIdle(s);
    assert.equal(srv.length, 0, "not forwarded");
    assert.equal(dropsByReason(s).PKT_TOO_BIG, 1, `drops ${JSON.stringify(dropsByReason(s))}`);
    assert.equal(s.router.stats[RT_ICMP_SENT], 1, "an ICMP error was generated");
    // RFC 1191 / ip_forward: the error goes back to the sender, from the
    // inside address, quoting the datagram as the sender sent it.
    assert.equal(gen.length, 1, `the inside host got no ICMP frag-needed; drops: ${JSON.stringify(dropsByReason(s))}`);
    const quoted = checkIcmpToInside(s, gen[0] as TappedFrame, { type: 3, code: 4, src: ROUTER_IN, dst: HOST, info: 1400 });
    assert.equal(rd32(quoted, 12), HOST, "quoted source is the inside host, not the NAT address");
    assert.equal(rd16(quoted, 20), 40000, "quoted source port is the host's own");
    assert.deepEqual(dropsByReason(s), { PKT_TOO_BIG: 1 });
    assertBalanced(s);
    destroyClean(s);
  });

  test("MTU 1400, 1500-byte UDP without DF → two IPv4 fragments at srv0 that reassemble to the NATed datagram", () => {
    const { s, gen, srv } = bed({ mtu: 1400 });
    const payload = pattern(1472, 9);
    const pkt = ipv4Packet({ saddr: HOST, daddr: SERVER, proto: PROTO_UDP, id: 0x2222, payload: udpSegment(HOST, SERVER, 40000, 5201, payload) });
    inject(s, s.gen0, fromInside(s, pkt));
    pollIdle(s);
    assert.equal(gen.length, 0);
    assert.equal(srv.length, 2, "two fragments reach the server side");
    const frags = srv.map((f) => ipOf(f));
    let natPort = -1;
    const whole = new Uint8Array(1480);
    let covered = 0;
    for (const [i, fb] of frags.entries()) {
      assert.ok(fb.length <= 1400, "each fragment fits the MTU");
      assert.equal(inetCsum(fb, 0, 20), 0);
      assert.equal(rd32(fb, 12), NAT, "fragments carry the NAT address");
      assert.equal(rd32(fb, 16), SERVER);
      assert.equal(rd16(fb, 4), rd16(frags[0] as Uint8Array, 4), "same IP id");
      const fo = rd16(fb, 6);
      const off = (fo & 0x1fff) * 8;
      assert.equal((fo & MF) !== 0, i === 0, "MF on all but the last");
      assert.equal(fo & DF, 0);
      if (i === 0) {
        assert.equal(off, 0);
        assert.equal((fb.length - 20) % 8, 0, "non-last fragment payload is a multiple of 8");
        natPort = rd16(fb, 20);
      } else {
        assert.equal(off, (frags[0] as Uint8Array).length - 20);
      }
      whole.set(fb.subarray(20), off);
      covered += fb.length - 20;
    }
    assert.equal(covered, 1480);
    assert.equal(l4Verify(NAT, SERVER, PROTO_UDP, whole), 0, "the reassembled UDP checksum is valid for the NATed addresses");
    assert.equal(rd16(whole, 0), natPort);
    assert.equal(rd16(whole, 2), 5201);
    assert.deepEqual(whole.subarray(8), payload);
    assert.equal(s.router.stats[RT_FRAG_EXTRA], 1);
    assert.equal(s.router.ipStats[IPSTATS_MIB_FRAGOKS], 1);
    assert.equal(s.router.ipStats[IPSTATS_MIB_FRAGCREATES], 2);
    // The sink does not reassemble: it sees two frames, neither a valid UDP datagram on its own.
    assert.equal(s.sink.stats[SK_RX], 2);
    assert.equal(totalDrops(s), 0);
    assertBalanced(s);
    destroyClean(s);
  });

  test("unsolicited UDP from the outside to the NAT address (no mapping) is not forwarded: NO_SOCKET drop on out0", () => {
    const { s, gen, srv } = bed();
    // Open one real mapping first: 10.10.0.2:40000 → server.
    inject(s, s.gen0, fromInside(s, udpOut({ len: 20 })));
    pollIdle(s);
    assert.equal(srv.length, 1);
    const natPort = rd16(ipOf(srv[0] as TappedFrame), 20);
    // The server answers the mapping: reaches the inside host, de-masqueraded.
    inject(s, s.srv0, fromOutside(s, ipv4Packet({ saddr: SERVER, daddr: NAT, proto: PROTO_UDP, payload: udpSegment(SERVER, NAT, 5201, natPort, pattern(20)) })));
    // Unsolicited: another port on the NAT address.
    const stray = (natPort + 17) & 0xffff;
    inject(s, s.srv0, fromOutside(s, ipv4Packet({ saddr: SERVER, daddr: NAT, proto: PROTO_UDP, payload: udpSegment(SERVER, NAT, 5201, stray, pattern(20)) })));
    pollIdle(s);
    assert.equal(gen.length, 1, "only the solicited reply got in");
    const back = ipOf(gen[0] as TappedFrame);
    assert.equal(rd32(back, 16), HOST);
    assert.equal(rd16(back, 22), 40000);
    assert.equal(l4Verify(SERVER, HOST, PROTO_UDP, back.subarray(20)), 0);
    // Addressed to the router itself (new flows to the router are allowed from outside), no socket there.
    assert.deepEqual(devDrops(s.out0), { NO_SOCKET: 1 });
    assert.deepEqual(dropsByReason(s), { NO_SOCKET: 1 });
    assert.equal(nfConntrackCount(s.router.ct), 1, "the stray packet left no conntrack entry");
    assertBalanced(s);
    destroyClean(s);
  });

  test("unsolicited inbound through the router (to an inside host or another outside address) → CT_UNSOLICITED drop", () => {
    const { s, gen, srv } = bed();
    for (const dst of [HOST, ip("198.51.100.77"), ip("10.10.0.1") + 5]) {
      inject(s, s.srv0, fromOutside(s, ipv4Packet({ saddr: SERVER, daddr: dst, proto: PROTO_UDP, payload: udpSegment(SERVER, dst, 5201, 40000, pattern(20)) })));
    }
    const syn = tcpSegment(SERVER, HOST, 5201, 22, 1000, 0, 0x02, new Uint8Array(0));
    inject(s, s.srv0, fromOutside(s, ipv4Packet({ saddr: SERVER, daddr: HOST, proto: PROTO_TCP, payload: syn })));
    pollIdle(s);
    assert.equal(gen.length + srv.length, 0);
    assert.deepEqual(devDrops(s.out0), { CT_UNSOLICITED: 4 });
    assert.equal(nfConntrackCount(s.router.ct), 0);
    assertBalanced(s);
    destroyClean(s);
  });

  test("ping from the inside through the NAT: the request leaves from 198.51.100.1, the reply comes back to the host", () => {
    const { s, gen, srv } = bed();
    const data = pattern(40, 8);
    inject(s, s.gen0, fromInside(s, ipv4Packet({ saddr: HOST2, daddr: SERVER, proto: PROTO_ICMP, payload: icmpEcho(8, 0x1001, 3, data) })));
    pollIdle(s);
    assert.equal(srv.length, 1);
    const req = ipOf(srv[0] as TappedFrame);
    assert.equal(rd32(req, 12), NAT);
    assert.equal(req[8], 63, "TTL decremented");
    assert.equal(inetCsum(req.subarray(20)), 0, "ICMP checksum after the id rewrite");
    const natId = rd16(req, 24);
    // The server answers with the translated id.
    inject(s, s.srv0, fromOutside(s, ipv4Packet({ saddr: SERVER, daddr: NAT, proto: PROTO_ICMP, payload: icmpEcho(0, natId, 3, data) })));
    pollIdle(s);
    assert.equal(gen.length, 1);
    const body = checkIcmpToInside(s, gen[0] as TappedFrame, { type: 0, code: 0, src: SERVER, dst: HOST2, ttl: 63 });
    assert.equal(rd16(ipOf(gen[0] as TappedFrame), 24), 0x1001, "the host's own echo id");
    assert.deepEqual(body, data);
    assert.deepEqual(dropsByReason(s), {});
    assertBalanced(s);
    destroyClean(s);
  });

  test("an ICMP error from the outside about a masqueraded flow reaches the inside host, inner header translated back", () => {
    const { s, gen, srv } = bed();
    inject(s, s.gen0, fromInside(s, udpOut({ len: 20, sport: 40002 })));
    pollIdle(s);
    assert.equal(srv.length, 1);
    const sentOut = ipOf(srv[0] as TappedFrame);
    // The server's stack: port unreachable, quoting the IP header and 8 bytes.
    const icmp = new Uint8Array(8 + 28);
    icmp[0] = 3;
    icmp[1] = 3;
    icmp.set(sentOut.subarray(0, 28), 8);
    wr16(icmp, 2, inetCsum(icmp));
    inject(s, s.srv0, fromOutside(s, ipv4Packet({ saddr: SERVER, daddr: NAT, proto: PROTO_ICMP, payload: icmp })));
    pollIdle(s);
    assert.deepEqual(dropsByReason(s), {});
    assert.equal(gen.length, 1, "the error was forwarded to the inside");
    const back = ipOf(gen[0] as TappedFrame);
    assert.equal(parseFrame((gen[0] as TappedFrame).bytes).vlan, 10);
    assert.equal(inetCsum(back, 0, 20), 0);
    assert.equal(rd32(back, 12), SERVER);
    assert.equal(rd32(back, 16), HOST, "outer destination de-masqueraded");
    const e = back.subarray(20);
    assert.equal(e[0], 3);
    assert.equal(e[1], 3);
    assert.equal(inetCsum(e), 0, "ICMP checksum after translation");
    const inner = e.subarray(8);
    assert.equal(inetCsum(inner, 0, 20), 0, "inner IP checksum after translation");
    assert.equal(rd32(inner, 12), HOST, "inner source is the inside host again");
    assert.equal(rd32(inner, 16), SERVER);
    assert.equal(rd16(inner, 20), 40002, "inner source port translated back");
    assert.equal(rd16(inner, 22), 5201);
    assertBalanced(s);
    destroyClean(s);
  });

  for (const order of ["in order", "reversed"] as const) {
    test(`two fragments of one UDP datagram from the inside (${order}) are reassembled before conntrack: srv0 sees one datagram`, () => {
      const { s, gen, srv } = bed();
      const payload = pattern(992, 4);
      const udp = udpSegment(HOST, SERVER, 40000, 5201, payload);
      const f1 = ipv4Packet({ saddr: HOST, daddr: SERVER, proto: PROTO_UDP, id: 77, flags: MF, fragOffset: 0, payload: udp.subarray(0, 496) });
      const f2 = ipv4Packet({ saddr: HOST, daddr: SERVER, proto: PROTO_UDP, id: 77, fragOffset: 496, payload: udp.subarray(496) });
      const frames = [fromInside(s, f1), fromInside(s, f2)];
      if (order === "reversed") frames.reverse();
      for (const f of frames) inject(s, s.gen0, f);
      pollIdle(s);
      assert.equal(gen.length, 0);
      assert.equal(srv.length, 1, "one datagram at the server side");
      const d = ipOf(srv[0] as TappedFrame);
      assert.equal(d.length, 20 + 1000);
      assert.equal(inetCsum(d, 0, 20), 0);
      assert.equal(rd16(d, 6) & (MF | 0x1fff), 0, "not a fragment any more");
      assert.equal(rd32(d, 12), NAT);
      assert.equal(l4Verify(NAT, SERVER, PROTO_UDP, d.subarray(20)), 0, "UDP checksum valid over the whole datagram after NAT");
      assert.deepEqual(d.subarray(28), payload);
      assert.equal(s.router.ipStats[IPSTATS_MIB_REASMOKS], 1);
      assert.equal(nfConntrackCount(s.router.ct), 1, "one flow, one conntrack entry");
      assert.equal(s.sink.stats[SK_RX], 1, "the sink received one datagram");
      assert.equal(totalDrops(s), 0);
      assertBalanced(s);
      destroyClean(s);
    });
  }

  test("a reassembled datagram larger than the egress MTU is refragmented on the way out", () => {
    const { s, srv } = bed({ mtu: 1400 });
    const payload = pattern(2000, 6);
    const udp = udpSegment(HOST, SERVER, 40000, 5201, payload);
    // 1 304 + 704 bytes of fragment payload; the largest fragment (1324) fits the MTU.
    const parts = [udp.subarray(0, 1304), udp.subarray(1304)];
    inject(s, s.gen0, fromInside(s, ipv4Packet({ saddr: HOST, daddr: SERVER, proto: PROTO_UDP, id: 9, flags: MF, payload: parts[0] as Uint8Array })));
    inject(s, s.gen0, fromInside(s, ipv4Packet({ saddr: HOST, daddr: SERVER, proto: PROTO_UDP, id: 9, fragOffset: 1304, payload: parts[1] as Uint8Array })));
    pollIdle(s);
    assert.ok(srv.length >= 2);
    const whole = new Uint8Array(udp.length);
    let covered = 0;
    for (const f of srv) {
      const fb = ipOf(f);
      assert.ok(fb.length <= 1400);
      assert.equal(rd32(fb, 12), NAT);
      whole.set(fb.subarray(20), (rd16(fb, 6) & 0x1fff) * 8);
      covered += fb.length - 20;
    }
    assert.equal(covered, udp.length);
    assert.equal(l4Verify(NAT, SERVER, PROTO_UDP, whole), 0);
    assert.deepEqual(whole.subarray(8), payload);
    assertBalanced(s);
    destroyClean(s);
  });

  test("DF fragments that each fit the MTU but reassemble to more than it are refragmented (DF kept), not refused", () => {
    // ip_forward skips the MTU check for skb->ignore_df (conntrack defrag sets it) and
    // ip_fragment refragments up to frag_max_size; ipFragment implements exactly that
    // (IPSKB_IGNORE_DF / IPSKB_FRAG_PMTU) — if the router lets it.
    const { s, gen, srv } = bed({ mtu: 1400 });
    const udp = udpSegment(HOST, SERVER, 40000, 5201, pattern(2000, 2));
    inject(s, s.gen0, fromInside(s, ipv4Packet({ saddr: HOST, daddr: SERVER, proto: PROTO_UDP, id: 11, flags: DF | MF, payload: udp.subarray(0, 1304) })));
    inject(s, s.gen0, fromInside(s, ipv4Packet({ saddr: HOST, daddr: SERVER, proto: PROTO_UDP, id: 11, flags: DF, fragOffset: 1304, payload: udp.subarray(1304) })));
    pollIdle(s);
    assert.deepEqual(dropsByReason(s), {}, `nothing dropped (ICMPs to the inside: ${gen.length})`);
    assert.ok(srv.length >= 2);
    let covered = 0;
    for (const f of srv) {
      const fb = ipOf(f);
      assert.ok(fb.length <= 1324, "no fragment larger than the largest one received");
      assert.ok((rd16(fb, 6) & DF) !== 0, "DF kept (IPSKB_FRAG_PMTU)");
      covered += fb.length - 20;
    }
    assert.equal(covered, udp.length);
    assertBalanced(s);
    destroyClean(s);
  });

  test("the sink validates a reassembled (frag_list, non-linear) datagram without a false checksum error", () => {
    const { s, srv } = bed();
    const udp = udpSegment(HOST, SERVER, 40000, 5201, pattern(992, 4));
    inject(s, s.gen0, fromInside(s, ipv4Packet({ saddr: HOST, daddr: SERVER, proto: PROTO_UDP, id: 78, flags: MF, payload: udp.subarray(0, 496) })));
    inject(s, s.gen0, fromInside(s, ipv4Packet({ saddr: HOST, daddr: SERVER, proto: PROTO_UDP, id: 78, fragOffset: 496, payload: udp.subarray(496) })));
    pollIdle(s);
    assert.equal(srv.length, 1);
    const d = ipOf(srv[0] as TappedFrame);
    assert.equal(l4Verify(NAT, SERVER, PROTO_UDP, d.subarray(20)), 0, "the datagram on the wire is valid");
    // The datagram crosses the veth as an skb with a frag_list (nothing linearises it);
    // sinkRecv reads the checksum range as if it were linear.
    assert.equal((srv[0] as TappedFrame).nonLinear, true);
    assert.equal(s.sink.stats[SK_BAD_CSUM], 0, "sink flagged a valid (non-linear) datagram as a bad checksum");
    destroyClean(s);
  });

  test("scenarioAccounting balances across reassembly (2 fragments from the inside → 1 datagram)", () => {
    const { s } = bed();
    const udp = udpSegment(HOST, SERVER, 40000, 5201, pattern(496, 1));
    inject(s, s.gen0, fromInside(s, ipv4Packet({ saddr: HOST, daddr: SERVER, proto: PROTO_UDP, id: 5, flags: MF, payload: udp.subarray(0, 248) })));
    inject(s, s.gen0, fromInside(s, ipv4Packet({ saddr: HOST, daddr: SERVER, proto: PROTO_UDP, id: 5, fragOffset: 248, payload: udp.subarray(248) })));
    pollIdle(s);
    // 2 frames sent, 1 received, nothing dropped: the held fragment is counted as
    // RX_MERGED on in0.10, and the accounting must take it into account.
    assert.equal(s.sink.stats[SK_RX], 1);
    assert.equal(totalDrops(s), 0);
    assert.equal(balance(s).ok, true, balance(s).detail);
    assert.equal(balance(s).merged, 1);
    const a = scenarioAccounting(s);
    assert.ok(a.ok, `scenarioAccounting: ${a.problems.join("; ")}`);
    destroyClean(s);
  });

  test("scenarioAccounting balances across output fragmentation (1 datagram → 2 fragments)", () => {
    const { s } = bed({ mtu: 1400 });
    inject(s, s.gen0, fromInside(s, udpOut({ len: 1472, sport: 40001 })));
    pollIdle(s);
    // 1 frame sent, 2 received, nothing dropped: FragCreates − FragOKs = 1 extra packet,
    // which the accounting must count as generated by the router.
    assert.equal(s.sink.stats[SK_RX], 2);
    assert.equal(totalDrops(s), 0);
    assert.equal(balance(s).ok, true, balance(s).detail);
    assert.equal(balance(s).fragExtra, 1);
    const a = scenarioAccounting(s);
    assert.ok(a.ok, `scenarioAccounting: ${a.problems.join("; ")}`);
    destroyClean(s);
  });

  test("TCP test bed: a UDP datagram to the server port does not take one of the sink's TCP connection slots", () => {
    // sinkRecv parses every packet as the scenario's protocol without checking
    // iph->protocol: the UDP payload byte at TCP offset 13 (here 0xa6) reads as
    // SYN, the sink opens a "connection" for it, and the real handshake of the
    // last flow is refused (sink full) so scenarioRun throws.
    const { s } = bed({ traffic: { proto: "tcp", size: 64, flows: 4, insideHosts: 4, vlan: 10 } });
    const payload = pattern(6, 0);
    assert.equal((payload[5] as number) & 0x02, 0x02, "the byte read as TCP flags has SYN set");
    inject(s, s.gen0, fromInside(s, ipv4Packet({ saddr: HOST, daddr: SERVER, proto: PROTO_UDP, payload: udpSegment(HOST, SERVER, 0, 5201, payload) })));
    pollIdle(s);
    assert.doesNotThrow(() => scenarioRun(s, 100));
    assert.equal(s.pktgen.established, 4);
    assert.equal(sinkStats(s.sink).conns, 4, "only the four real TCP connections");
    assertBalanced(s);
    destroyClean(s);
  });

  test("non-linear frames (headers split into page frags) and kmalloc heads are handled like page-pool frames", () => {
    const { s, gen, srv } = bed();
    const cases: [InjectKind, number][] = [["page", 0], ["kmalloc", 0], ["frags", 0], ["frags", 14], ["frags", 18], ["frags", 30], ["frags", 45]];
    let n = 0;
    for (const [kind, headLen] of cases) {
      n++;
      const sport = 40100 + n;
      const udp = udpOut({ len: 700, sport });
      inject(s, s.gen0, fromInside(s, udp), kind, headLen);
      const echo = icmpEcho(8, 0x300 + n, n, pattern(300, n));
      inject(s, s.gen0, fromInside(s, ipv4Packet({ saddr: HOST, daddr: ROUTER_IN, proto: PROTO_ICMP, payload: echo })), kind, headLen);
      const expiring = udpOut({ len: 100, ttl: 1, sport });
      inject(s, s.gen0, fromInside(s, expiring), kind, headLen);
      pollIdle(s);
      const what = `${kind} head ${headLen}`;
      assert.equal(srv.length, n, `${what}: forwarded`);
      const out = ipOf(srv[n - 1] as TappedFrame);
      assert.equal(rd32(out, 12), NAT, what);
      assert.ok(l4ChecksumOk(out, (srv[n - 1] as TappedFrame).partial), `${what}: UDP checksum after NAT`);
      assert.deepEqual(out.subarray(28), udp.subarray(28), `${what}: payload`);
      assert.equal(gen.length, 2 * n, `${what}: echo reply and time exceeded`);
      const reply = checkIcmpToInside(s, gen[2 * n - 2] as TappedFrame, { type: 0, code: 0, src: ROUTER_IN, dst: HOST });
      assert.deepEqual(reply, pattern(300, n), `${what}: echo data`);
      const quoted = checkIcmpToInside(s, gen[2 * n - 1] as TappedFrame, { type: 11, code: 0, src: ROUTER_IN, dst: HOST, info: 0 });
      assert.deepEqual(quoted, expiring, `${what}: quoted datagram`);
    }
    assert.deepEqual(dropsByReason(s), { IP_TTL_EXPIRED: cases.length });
    assertBalanced(s);
    destroyClean(s);
  });

  test("checksum-corrupt and malformed IPv4 from the inside are dropped by reason, never forwarded", () => {
    const { s, gen, srv } = bed();
    const good = udpOut({});
    const badCsum = good.slice();
    badCsum[10] = (badCsum[10] as number) ^ 0xff;
    const badVer = good.slice();
    badVer[0] = 0x65;
    fixIpCsum(badVer, 0);
    const shortLen = good.slice();
    wr16(shortLen, 2, 200); // tot_len beyond the frame
    fixIpCsum(shortLen, 0);
    for (const p of [badCsum, badVer, shortLen]) inject(s, s.gen0, fromInside(s, p));
    // A runt Ethernet frame, and a truncated 802.1Q header.
    inject(s, s.gen0, new Uint8Array(10));
    const runtTag = new Uint8Array(16);
    runtTag.set(s.in0.mac, 0);
    wr16(runtTag, 12, ETH_P_8021Q);
    inject(s, s.gen0, runtTag, "kmalloc");
    pollIdle(s);
    assert.equal(gen.length + srv.length, 0);
    const d = dropsByReason(s);
    assert.equal(d.IP_CSUM, 1, JSON.stringify(d));
    assert.equal(d.IP_INHDR, 1, JSON.stringify(d));
    assert.equal(d.PKT_TOO_SMALL, 2, JSON.stringify(d));
    assert.equal(d.HDR_TRUNC, 1, JSON.stringify(d));
    assert.equal(s.pktgen.stats[PG_RX_BAD_CSUM], 0);
    assertBalanced(s);
    destroyClean(s);
  });
});
