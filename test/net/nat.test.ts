/**
 * Tests for masquerade NAT: both directions byte-exact against packets
 * built from scratch (so every incrementally updated checksum equals a full
 * recomputation), port and ICMP id collisions, port exhaustion, ICMP errors
 * with their embedded headers, null bindings, out-interface changes,
 * CHECKSUM_PARTIAL / CHECKSUM_COMPLETE, cloned skbs and generic protocols.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  conntrackStats,
  IP_CT_DIR_REPLY,
  IPS_DYING,
  IPS_SRC_NAT,
  IPS_SRC_NAT_DONE,
  NF_INET_POST_ROUTING,
  NF_INET_PRE_ROUTING,
  nfConntrackCheck,
  nfConntrackConfirm,
  nfConntrackCount,
  nfConntrackFlush,
  nfConntrackIn,
  nfCtStatus,
  nfCtTupleDaddr,
  nfCtTupleDport,
  nfCtUse,
  nfctEntry,
  skbNfct,
} from "../../src/net/conntrack.js";
import { NAT_STAT_ICMP_XLATE, nfNatCreate, nfNatIpv4, nfNatStats } from "../../src/net/nat.js";
import { skbClone } from "../../src/skb/clone.js";
import { SKB_DROP_REASON } from "../../src/skb/drop-reason.js";
import { consumeSkb, kfreeSkb } from "../../src/skb/free.js";
import { CHECKSUM_COMPLETE, CHECKSUM_PARTIAL, SKB_CSUM, SKB_DEV } from "../../src/skb/layout.js";
import {
  ACK,
  forward,
  get16,
  H1,
  H2,
  H3,
  HOP,
  hexdump,
  icmpError,
  IN_IF,
  IPPROTO_GRE,
  IPPROTO_ICMP,
  IPPROTO_TCP,
  ipv4,
  makeRouter,
  onesSum,
  OUT_IF,
  OUTSIDE,
  packetSkb,
  parse,
  pingPkt,
  R1,
  R2,
  type Router,
  SYN,
  send,
  skbPacket,
  tcpPkt,
  udpPkt,
} from "./packet-builder.js";

const SEC = 1000;

function accept(r: Router, pkt: Uint8Array, fromOutside: boolean) {
  const s = send(r, pkt, fromOutside);
  assert.equal(s.verdict, 0, `dropped with reason ${s.verdict}`);
  return s;
}

function assertBytes(got: Uint8Array, want: Uint8Array, what: string): void {
  assert.equal(hexdump(got), hexdump(want), what);
}

/** Table consistent, and empty once flushed (no skb kept a reference). */
function assertClean(r: Router): void {
  assert.deepEqual(nfConntrackCheck(r.ct), []);
  nfConntrackFlush(r.ct);
  assert.equal(nfConntrackCount(r.ct), 0);
}

/** The outside port (ICMP: id) an entry was mapped to. */
function mappedPort(r: Router, e: number): number {
  return nfCtTupleDport(r.ct, e, IP_CT_DIR_REPLY);
}

describe("nat: masquerade TCP and UDP", () => {
  test("TCP both directions byte-exact: source rewritten out, destination restored in", () => {
    const r = makeRouter();
    const data = new Uint8Array([1, 2, 3, 4, 5, 6, 7]);
    const out = accept(r, tcpPkt(H1, R1, { sport: 40000, dport: 80, flags: SYN, seq: 7 }), false);
    assertBytes(out.bytes, tcpPkt(OUTSIDE, R1, { sport: 40000, dport: 80, flags: SYN, seq: 7 }), "SYN leaves as outside:40000");
    const e = out.entry;
    assert.equal(nfCtStatus(r.ct, e) & (IPS_SRC_NAT | IPS_SRC_NAT_DONE), IPS_SRC_NAT | IPS_SRC_NAT_DONE);
    assert.equal(nfCtTupleDaddr(r.ct, e, IP_CT_DIR_REPLY), OUTSIDE);
    const back = accept(r, tcpPkt(R1, OUTSIDE, { sport: 80, dport: 40000, flags: SYN | ACK, seq: 99, ack: 8 }), true);
    assertBytes(back.bytes, tcpPkt(R1, H1, { sport: 80, dport: 40000, flags: SYN | ACK, seq: 99, ack: 8 }), "SYN/ACK arrives at H1:40000");
    const d = accept(r, tcpPkt(H1, R1, { sport: 40000, dport: 80, flags: ACK, seq: 8, ack: 100, payload: data }), false);
    assertBytes(d.bytes, tcpPkt(OUTSIDE, R1, { sport: 40000, dport: 80, flags: ACK, seq: 8, ack: 100, payload: data }), "data");
    const p = parse(d.bytes);
    assert.ok(p.ipCsumOk && p.l4CsumOk);
    assert.equal(nfNatStats(r.nat).mangled, 3);
    assertClean(r);
  });

  test("UDP byte-exact; checksum 0 stays 0; a checksum that becomes 0 is sent as 0xffff", () => {
    const r = makeRouter();
    const payload = new Uint8Array([0xde, 0xad, 0xbe, 0xef, 0x01]);
    let s = accept(r, udpPkt(H1, R1, { sport: 5353, dport: 53, payload }), false);
    assertBytes(s.bytes, udpPkt(OUTSIDE, R1, { sport: 5353, dport: 53, payload }), "UDP out");
    s = accept(r, udpPkt(R1, OUTSIDE, { sport: 53, dport: 5353, payload }), true);
    assertBytes(s.bytes, udpPkt(R1, H1, { sport: 53, dport: 5353, payload }), "UDP back");

    s = accept(r, udpPkt(H1, R1, { sport: 5354, dport: 53, payload, noCsum: true }), false);
    assert.equal(get16(s.bytes, 26), 0, "no checksum stays no checksum");
    assertBytes(s.bytes, udpPkt(OUTSIDE, R1, { sport: 5354, dport: 53, payload, noCsum: true }), "UDP without checksum");

    // Choose two payload bytes so the datagram as it leaves sums to 0xffff: its checksum computes to 0.
    const pl = new Uint8Array(4);
    const probe = udpPkt(OUTSIDE, R1, { sport: 5355, dport: 53, payload: pl, noCsum: true }).subarray(20);
    const pseudo = (OUTSIDE >>> 16) + (OUTSIDE & 0xffff) + (R1 >>> 16) + (R1 & 0xffff) + 17 + probe.length;
    const w = 0xffff - onesSum(probe, 0, probe.length, pseudo);
    pl[0] = w >>> 8;
    pl[1] = w & 0xff;
    const expect = udpPkt(OUTSIDE, R1, { sport: 5355, dport: 53, payload: pl });
    assert.equal(get16(expect, 26), 0xffff, "test setup: the checksum field is the mangled zero");
    s = accept(r, udpPkt(H1, R1, { sport: 5355, dport: 53, payload: pl }), false);
    assert.equal(get16(s.bytes, 26), 0xffff);
    assertBytes(s.bytes, expect, "checksum 0 sent as 0xffff");
    assert.ok(parse(s.bytes).l4CsumOk);
    assertClean(r);
  });

  test("two inside hosts, same source port: the second gets another port; replies reach the right host", () => {
    const r = makeRouter();
    const a = accept(r, udpPkt(H1, R1, { sport: 40000, dport: 53 }), false);
    const b = accept(r, udpPkt(H2, R1, { sport: 40000, dport: 53 }), false);
    assert.equal(mappedPort(r, a.entry), 40000, "first keeps its port");
    const pb = mappedPort(r, b.entry);
    assert.notEqual(pb, 40000);
    assert.ok(pb >= 1024 && pb <= 65535);
    assertBytes(b.bytes, udpPkt(OUTSIDE, R1, { sport: pb, dport: 53 }), "second host's packet");
    // A different destination does not collide: same port is fine there.
    const c = accept(r, udpPkt(H3, R2, { sport: 40000, dport: 53 }), false);
    assert.equal(mappedPort(r, c.entry), 40000, "tuple-unique, not port-unique");
    assertBytes(accept(r, udpPkt(R1, OUTSIDE, { sport: 53, dport: pb }), true).bytes, udpPkt(R1, H2, { sport: 53, dport: 40000 }), "to H2");
    assertBytes(accept(r, udpPkt(R1, OUTSIDE, { sport: 53, dport: 40000 }), true).bytes, udpPkt(R1, H1, { sport: 53, dport: 40000 }), "to H1");
    assert.equal(nfNatStats(r.nat).portRemapped, 1);
    assert.equal(nfNatStats(r.nat).portKept, 2);
    assertClean(r);
  });

  test("a tiny port range: original ports out of range are remapped into it, exhaustion drops NAT_NO_PORT", () => {
    const r = makeRouter({}, { portMin: 5000, portMax: 5003 });
    const hosts = [H1, H2, H3, 0x0a000005, 0x0a000006];
    const ports: number[] = [];
    for (let i = 0; i < 4; i++) {
      const s = accept(r, udpPkt(hosts[i] as number, R1, { sport: 40000, dport: 53 }), false);
      const p = mappedPort(r, s.entry);
      assert.ok(p >= 5000 && p <= 5003, `port ${p} in range`);
      assert.equal(parse(s.bytes).sport, p);
      ports.push(p);
    }
    assert.deepEqual([...ports].sort(), [5000, 5001, 5002, 5003]);
    const s = send(r, udpPkt(hosts[4] as number, R1, { sport: 40000, dport: 53 }), false);
    assert.equal(s.verdict, SKB_DROP_REASON.NAT_NO_PORT);
    assert.equal(r.cpu.drops[SKB_DROP_REASON.NAT_NO_PORT], 1);
    assert.equal(nfConntrackCount(r.ct), 4, "the failed flow left no entry");
    assert.equal(nfNatStats(r.nat).noPort, 1);
    // Once a mapping expires, the port is free again.
    r.now += 31 * SEC;
    const again = accept(r, udpPkt(hosts[4] as number, R1, { sport: 40000, dport: 53 }), false);
    assert.ok(mappedPort(r, again.entry) >= 5000);
    assertClean(r);
  });
});

describe("nat: ICMP", () => {
  test("an ICMP id slice (one CPU of several): ids outside it are remapped into it, replies restored", () => {
    const r = makeRouter({}, { icmpIdMin: 30000, icmpIdMax: 30001 });
    const a = accept(r, pingPkt(H1, R1, 8, 0x77, 1), false);
    const ida = parse(a.bytes).icmpId;
    assert.ok(ida === 30000 || ida === 30001, `id ${ida} in the slice`);
    const b = accept(r, pingPkt(H2, R1, 8, 0x77, 1), false);
    const idb = parse(b.bytes).icmpId;
    assert.ok((idb === 30000 || idb === 30001) && idb !== ida, `second id ${idb} is the other one`);
    assertBytes(accept(r, pingPkt(R1, OUTSIDE, 0, idb, 1), true).bytes, pingPkt(R1, H2, 0, 0x77, 1), "reply to H2");
    assert.equal(send(r, pingPkt(H3, R1, 8, 0x77, 1), false).verdict, SKB_DROP_REASON.NAT_NO_PORT, "the slice is used up");
    assert.throws(() => nfNatCreate({ outsideIfindex: 1, outsideAddr: OUTSIDE, icmpIdMin: 10, icmpIdMax: 5 }), /ICMP id range/);
    assert.throws(() => nfNatCreate({ outsideIfindex: 1, outsideAddr: OUTSIDE, icmpIdMax: 70000 }), /ICMP id range/);
    assertClean(r);
  });
  test("echo ids: kept when free, remapped on collision, restored on the replies", () => {
    const r = makeRouter();
    const a = accept(r, pingPkt(H1, R1, 8, 0x77, 1), false);
    assertBytes(a.bytes, pingPkt(OUTSIDE, R1, 8, 0x77, 1), "first ping keeps id");
    const b = accept(r, pingPkt(H2, R1, 8, 0x77, 1), false);
    const idb = mappedPort(r, b.entry) >>> 0;
    const pb = parse(b.bytes);
    assert.notEqual(pb.icmpId, 0x77);
    assertBytes(b.bytes, pingPkt(OUTSIDE, R1, 8, pb.icmpId, 1), "second ping gets another id");
    assert.equal(idb, 0, "reply tuple's dport is type << 8 | code = ECHOREPLY");
    assertBytes(accept(r, pingPkt(R1, OUTSIDE, 0, pb.icmpId, 1), true).bytes, pingPkt(R1, H2, 0, 0x77, 1), "reply to H2");
    assertBytes(accept(r, pingPkt(R1, OUTSIDE, 0, 0x77, 1), true).bytes, pingPkt(R1, H1, 0, 0x77, 1), "reply to H1");
    assertClean(r);
  });

  test("an error from the outside about a masqueraded UDP flow: outer and embedded headers translated", () => {
    const r = makeRouter();
    accept(r, udpPkt(H2, R1, { sport: 33434, dport: 33435 }), false); // takes outside:33434
    const orig = udpPkt(H1, R1, { sport: 33434, dport: 33435, payload: new Uint8Array([9, 9, 9]) });
    const out = accept(r, orig, false);
    const p = mappedPort(r, out.entry);
    assert.notEqual(p, 33434);
    // A hop answers the packet as it saw it (whole datagram quoted).
    const err = ipv4({ saddr: HOP, daddr: OUTSIDE, proto: IPPROTO_ICMP }, icmpError(11, 0, out.bytes));
    const s = accept(r, err, true);
    assertBytes(s.bytes, ipv4({ saddr: HOP, daddr: H1, proto: IPPROTO_ICMP }, icmpError(11, 0, orig)), "translated error");
    const q = parse(s.bytes);
    assert.ok(q.ipCsumOk && q.l4CsumOk && q.inner?.ipCsumOk && q.inner.l4CsumOk);
    assert.equal(r.nat.stats[NAT_STAT_ICMP_XLATE], 1);
    // The same from the destination itself (port unreachable).
    const unreach = ipv4({ saddr: R1, daddr: OUTSIDE, proto: IPPROTO_ICMP }, icmpError(3, 3, out.bytes));
    assertBytes(accept(r, unreach, true).bytes, ipv4({ saddr: R1, daddr: H1, proto: IPPROTO_ICMP }, icmpError(3, 3, orig)), "port unreachable");
    assertClean(r);
  });

  test("an error from an inside host about a reply: leaves with the outside address, embedded header re-masqueraded", () => {
    const r = makeRouter();
    accept(r, udpPkt(H2, R1, { sport: 5000, dport: 53 }), false);
    const e = accept(r, udpPkt(H1, R1, { sport: 5000, dport: 53 }), false).entry;
    const p = mappedPort(r, e);
    const replyOnWire = udpPkt(R1, OUTSIDE, { sport: 53, dport: p, payload: new Uint8Array([1, 2]) });
    const delivered = accept(r, replyOnWire, true);
    assertBytes(delivered.bytes, udpPkt(R1, H1, { sport: 53, dport: 5000, payload: new Uint8Array([1, 2]) }), "reply de-masqueraded");
    // H1's socket is gone: port unreachable quoting what H1 received.
    const err = ipv4({ saddr: H1, daddr: R1, proto: IPPROTO_ICMP }, icmpError(3, 3, delivered.bytes));
    const s = accept(r, err, false);
    assertBytes(s.bytes, ipv4({ saddr: OUTSIDE, daddr: R1, proto: IPPROTO_ICMP }, icmpError(3, 3, replyOnWire)), "error as R1 expects it");
    assertClean(r);
  });

  test("an error quoting only 8 bytes of TCP: port translated, TCP checksum untouched, ICMP checksum valid", () => {
    const r = makeRouter();
    accept(r, tcpPkt(H2, R1, { sport: 41000, dport: 443, flags: SYN }), false);
    const orig = tcpPkt(H1, R1, { sport: 41000, dport: 443, flags: SYN, seq: 5 });
    const out = accept(r, orig, false);
    assert.notEqual(parse(out.bytes).sport, 41000);
    const err = ipv4({ saddr: HOP, daddr: OUTSIDE, proto: IPPROTO_ICMP }, icmpError(3, 4, out.bytes.subarray(0, 28), 1400));
    const s = accept(r, err, true);
    const want = ipv4({ saddr: HOP, daddr: H1, proto: IPPROTO_ICMP }, icmpError(3, 4, orig.subarray(0, 28), 1400));
    assertBytes(s.bytes, want, "frag-needed with the original 28 bytes, MTU kept");
    assert.equal(get16(s.bytes, 20 + 4 + 2), 1400, "next-hop MTU untouched");
    assertClean(r);
  });

  test("time exceeded for a ping: the embedded echo id is translated", () => {
    const r = makeRouter();
    accept(r, pingPkt(H2, R1, 8, 0x99, 3), false);
    const orig = pingPkt(H1, R1, 8, 0x99, 3);
    const out = accept(r, orig, false);
    const err = ipv4({ saddr: HOP, daddr: OUTSIDE, proto: IPPROTO_ICMP }, icmpError(11, 0, out.bytes));
    const s = accept(r, err, true);
    assertBytes(s.bytes, ipv4({ saddr: HOP, daddr: H1, proto: IPPROTO_ICMP }, icmpError(11, 0, orig)), "ping quoted as sent");
    assertClean(r);
  });

  test("a redirect about a masqueraded flow is dropped", () => {
    const r = makeRouter();
    const out = accept(r, udpPkt(H1, R1, { sport: 1, dport: 2 }), false);
    const red = ipv4({ saddr: HOP, daddr: OUTSIDE, proto: IPPROTO_ICMP }, icmpError(5, 1, out.bytes, HOP));
    assert.equal(send(r, red, true).verdict, SKB_DROP_REASON.ICMP_INVALID);
    assertClean(r);
  });
});

describe("nat: bindings, interfaces, skb states", () => {
  /** Route a packet from the inside back out the inside interface. */
  function hairpin(r: Router, pkt: Uint8Array): { verdict: number; bytes: Uint8Array; entry: number } {
    const { cpu, ct, nat } = r;
    const skb = packetSkb(cpu, pkt, { dev: IN_IF });
    let v = nfConntrackIn(ct, cpu, skb, NF_INET_PRE_ROUTING, 0, r.now) === 0 ? ct.reason : 0;
    if (v === 0) v = nfNatIpv4(nat, cpu, skb, NF_INET_PRE_ROUTING, ct);
    cpu.u32[(skb + SKB_DEV) >>> 2] = IN_IF;
    if (v === 0) v = nfNatIpv4(nat, cpu, skb, NF_INET_POST_ROUTING, ct);
    if (v === 0) v = nfConntrackConfirm(ct, cpu, skb, r.now);
    const res = { verdict: v, bytes: skbPacket(cpu, skb), entry: nfctEntry(skbNfct(cpu, skb)) };
    kfreeSkb(cpu, skb);
    return res;
  }

  test("inside to inside: null binding, nothing rewritten", () => {
    const r = makeRouter();
    const pkt = udpPkt(H1, H2, { sport: 1000, dport: 2000 });
    const s = hairpin(r, pkt);
    assert.equal(s.verdict, 0);
    assertBytes(s.bytes, pkt, "unchanged");
    assert.equal(nfCtStatus(r.ct, s.entry) & (IPS_SRC_NAT | IPS_SRC_NAT_DONE), IPS_SRC_NAT_DONE);
    assert.equal(nfNatStats(r.nat).nullBinding, 2, "DST at PRE_ROUTING, SRC at POST_ROUTING");
    assertClean(r);
  });

  test("a new flow from the outside (no unsolicited policy) is not masqueraded", () => {
    const r = makeRouter();
    const { cpu, ct, nat } = r;
    const pkt = udpPkt(R1, OUTSIDE, { sport: 53, dport: 999 });
    const skb = packetSkb(cpu, pkt, { dev: OUT_IF });
    assert.ok(nfConntrackIn(ct, cpu, skb, NF_INET_PRE_ROUTING, 0, r.now) > 0);
    assert.equal(nfNatIpv4(nat, cpu, skb, NF_INET_PRE_ROUTING, ct), 0);
    cpu.u32[(skb + SKB_DEV) >>> 2] = IN_IF;
    assert.equal(nfNatIpv4(nat, cpu, skb, NF_INET_POST_ROUTING, ct), 0);
    assert.equal(nfConntrackConfirm(ct, cpu, skb, r.now), 0);
    assertBytes(skbPacket(cpu, skb), pkt, "unchanged");
    consumeSkb(cpu, skb);
    assertClean(r);
  });

  test("a masqueraded flow that changes out interface is killed and the packet dropped", () => {
    const r = makeRouter();
    const e = accept(r, udpPkt(H1, R1, { sport: 1234, dport: 53 }), false).entry;
    const s = hairpin(r, udpPkt(H1, R1, { sport: 1234, dport: 53 }));
    assert.equal(s.verdict, SKB_DROP_REASON.NETFILTER_DROP);
    assert.equal(s.entry, e);
    assert.equal(nfConntrackCount(r.ct), 0, "killed, freed with the skb");
    assert.equal(nfCtStatus(r.ct, e) & IPS_DYING, 0, "slot reset after free");
    assertClean(r);
  });

  test("untracked skbs pass unchanged", () => {
    const r = makeRouter();
    const pkt = udpPkt(H1, R1, { sport: 1, dport: 2 });
    const skb = packetSkb(r.cpu, pkt, { dev: OUT_IF });
    assert.equal(nfNatIpv4(r.nat, r.cpu, skb, NF_INET_POST_ROUTING, r.ct), 0);
    assertBytes(skbPacket(r.cpu, skb), pkt, "unchanged");
    consumeSkb(r.cpu, skb);
  });

  test("CHECKSUM_PARTIAL: only the pseudo-header part of the TCP checksum follows the address", () => {
    const r = makeRouter();
    accept(r, tcpPkt(H2, R1, { sport: 40000, dport: 80, flags: SYN }), false);
    const pkt = tcpPkt(H1, R1, { sport: 40000, dport: 80, flags: SYN });
    const pseudo = (a: number) => {
      let s2 = (a >>> 16) + (a & 0xffff) + (R1 >>> 16) + (R1 & 0xffff) + IPPROTO_TCP + 20;
      while (s2 > 0xffff) s2 = (s2 & 0xffff) + (s2 >>> 16);
      return s2;
    };
    pkt[36] = pseudo(H1) >>> 8;
    pkt[37] = pseudo(H1) & 0xff;
    const s = send(r, pkt, false, { ipSummed: CHECKSUM_PARTIAL });
    assert.equal(s.verdict, 0);
    const p = parse(s.bytes);
    assert.notEqual(p.sport, 40000, "port remapped");
    assert.equal(p.saddr, OUTSIDE);
    assert.equal(p.csum, pseudo(OUTSIDE), "field = folded pseudo-header sum of the new addresses");
    assert.ok(p.ipCsumOk);
    assertClean(r);
  });

  test("CHECKSUM_COMPLETE: skb->csum keeps covering the rewritten packet", () => {
    const r = makeRouter();
    const pkt = tcpPkt(H1, R1, { sport: 40000, dport: 80, flags: SYN });
    const skb = packetSkb(r.cpu, pkt, { ipSummed: CHECKSUM_COMPLETE });
    r.cpu.u32[(skb + SKB_CSUM) >>> 2] = onesSum(pkt);
    assert.equal(forward(r, skb, false), 0);
    const after = skbPacket(r.cpu, skb);
    assert.equal(parse(after).saddr, OUTSIDE);
    let c = r.cpu.u32[(skb + SKB_CSUM) >>> 2] as number;
    while (c > 0xffff) c = (c & 0xffff) + Math.floor(c / 0x10000);
    assert.equal(c % 0xffff, onesSum(after) % 0xffff);
    consumeSkb(r.cpu, skb);
    assertClean(r);
  });

  test("a cloned skb is unshared before rewriting: the clone keeps the original bytes", () => {
    const r = makeRouter();
    const { cpu, ct, nat } = r;
    const pkt = udpPkt(H1, R1, { sport: 7777, dport: 53 });
    const skb = packetSkb(cpu, pkt, { dev: IN_IF });
    assert.ok(nfConntrackIn(ct, cpu, skb, NF_INET_PRE_ROUTING, 0, r.now) > 0);
    const clone = skbClone(cpu, skb);
    assert.notEqual(clone, 0);
    const e = nfctEntry(skbNfct(cpu, clone));
    assert.equal(nfctEntry(skbNfct(cpu, skb)), e);
    assert.equal(nfCtUse(ct, e), 2, "the clone took its own reference (nf_conntrack_get hook)");
    cpu.u32[(skb + SKB_DEV) >>> 2] = OUT_IF;
    assert.equal(nfNatIpv4(nat, cpu, skb, NF_INET_POST_ROUTING, ct), 0);
    assert.equal(nfConntrackConfirm(ct, cpu, skb, r.now), 0);
    assertBytes(skbPacket(cpu, skb), udpPkt(OUTSIDE, R1, { sport: 7777, dport: 53 }), "rewritten");
    assertBytes(skbPacket(cpu, clone), pkt, "clone untouched");
    consumeSkb(cpu, clone);
    consumeSkb(cpu, skb);
    assertClean(r);
  });

  test("protocols without ports: address-only masquerade; a second host to the same peer cannot be mapped", () => {
    const r = makeRouter();
    const body = new Uint8Array([0, 0, 0x08, 0, 1, 2, 3, 4]);
    const s = accept(r, ipv4({ saddr: H1, daddr: R1, proto: IPPROTO_GRE }, body), false);
    assertBytes(s.bytes, ipv4({ saddr: OUTSIDE, daddr: R1, proto: IPPROTO_GRE }, body), "GRE out");
    assertBytes(
      accept(r, ipv4({ saddr: R1, daddr: OUTSIDE, proto: IPPROTO_GRE }, body), true).bytes,
      ipv4({ saddr: R1, daddr: H1, proto: IPPROTO_GRE }, body),
      "GRE back",
    );
    assert.equal(send(r, ipv4({ saddr: H2, daddr: R1, proto: IPPROTO_GRE }, body), false).verdict, SKB_DROP_REASON.NAT_NO_PORT);
    accept(r, ipv4({ saddr: H2, daddr: R2, proto: IPPROTO_GRE }, body), false);
    assertClean(r);
  });

  test("configuration errors are clear; stats object", () => {
    assert.throws(() => nfNatCreate({ outsideIfindex: 1, outsideAddr: OUTSIDE, portMin: 2000, portMax: 1000 }), /port range/);
    assert.throws(() => nfNatCreate({ outsideIfindex: 1, outsideAddr: -1 }), /outsideAddr/);
    const r = makeRouter();
    accept(r, udpPkt(H1, R1, { sport: 1, dport: 2 }), false);
    const st = nfNatStats(r.nat);
    assert.equal(st.masq, 1);
    assert.equal(st.nullBinding, 1);
    assert.equal(conntrackStats(r.ct).insert, 1);
    assertClean(r);
  });
});
