/**
 * Tests for connection tracking: tuples in both directions, TCP states and
 * timeouts through handshake / data / FIN / RST, UDP unreplied vs assured,
 * ICMP, expiry (lazy and GC), early drop and a full table, unsolicited
 * packets, confirm clashes, skb reference counting, and a fast-check fuzz
 * run of the whole router path checking the table's invariants.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import {
  CT_STAT_NAMES,
  conntrackAttach,
  conntrackCreate,
  conntrackDetach,
  conntrackRegionSpec,
  conntrackStats,
  IP_CT_DIR_ORIGINAL,
  IP_CT_DIR_REPLY,
  IP_CT_ESTABLISHED,
  IP_CT_ESTABLISHED_REPLY,
  IP_CT_NEW,
  IPS_ASSURED,
  IPS_CONFIRMED,
  IPS_DYING,
  IPS_SEEN_REPLY,
  NF_CT_F_NO_NEW,
  NF_INET_POST_ROUTING,
  NF_INET_PRE_ROUTING,
  nfConntrackCheck,
  nfConntrackConfirm,
  nfConntrackCount,
  nfConntrackFindTuple,
  nfConntrackFlush,
  nfConntrackGcWork,
  nfConntrackIn,
  nfCtExpires,
  nfCtStatus,
  nfCtTcpState,
  nfCtTupleDaddr,
  nfCtTupleDport,
  nfCtTupleSaddr,
  nfCtTupleSport,
  nfCtUse,
  nfctEntry,
  skbNfct,
  TCP_CONNTRACK_CLOSE,
  TCP_CONNTRACK_CLOSE_WAIT,
  TCP_CONNTRACK_ESTABLISHED,
  TCP_CONNTRACK_FIN_WAIT,
  TCP_CONNTRACK_LAST_ACK,
  TCP_CONNTRACK_SYN_RECV,
  TCP_CONNTRACK_SYN_SENT,
  TCP_CONNTRACK_SYN_SENT2,
  TCP_CONNTRACK_TIME_WAIT,
  tcpConntrackTransition,
} from "../../src/net/conntrack.js";
import { NAT_STAT_ICMP_XLATE, NAT_STAT_PORT_REMAPPED, nfNatIpv4 } from "../../src/net/nat.js";
import { createSkbCpu } from "../../src/skb/cpu.js";
import { DROP_REASON_NAMES, SKB_DROP_REASON } from "../../src/skb/drop-reason.js";
import { consumeSkb, kfreeSkb, kfreeSkbReason } from "../../src/skb/free.js";
import { SKB_DEV } from "../../src/skb/layout.js";
import { createSkbMemory } from "../../src/skb/memory.js";
import {
  ACK,
  FIN,
  forward,
  H1,
  H2,
  HOP,
  icmpError,
  IN_IF,
  IPPROTO_GRE,
  IPPROTO_ICMP,
  IPPROTO_TCP,
  IPPROTO_UDP,
  ipv4,
  makeRouter,
  OUT_IF,
  OUTSIDE,
  packetSkb,
  parse,
  PSH,
  pingPkt,
  R1,
  R2,
  RST,
  type Router,
  SYN,
  send,
  skbPacket,
  tcp,
  tcpPkt,
  udp,
  udpPkt,
} from "./packet-builder.js";

const SEC = 1000;

function reasonName(r: number): string {
  return DROP_REASON_NAMES[r] ?? String(r);
}

/** The table's invariants hold and, after every skb was freed, nothing is left but hashed entries. */
function assertConsistent(r: Router): void {
  assert.deepEqual(nfConntrackCheck(r.ct), []);
}

/** Flush the table and check that it is empty (no entry leaked a reference). */
function assertEmptyAfterFlush(r: Router): void {
  nfConntrackFlush(r.ct);
  assert.equal(nfConntrackCount(r.ct), 0, "entries still referenced");
  assertConsistent(r);
}

function accept(r: Router, pkt: Uint8Array, fromOutside: boolean) {
  const s = send(r, pkt, fromOutside);
  assert.equal(s.verdict, 0, `dropped: ${reasonName(s.verdict)}`);
  return s;
}

describe("conntrack: table setup", () => {
  test("region spec sizes the table; create and attach share it", () => {
    const spec = conntrackRegionSpec({ max: 100, buckets: 50 });
    assert.equal(spec.length, 1);
    assert.equal(spec[0]?.name, "nf_conntrack");
    const mem = createSkbMemory({ arenaSize: 8 << 20, extraRegions: spec });
    const ct = conntrackCreate(mem.arena, { max: 100, buckets: 50, seed: 7 });
    assert.equal(ct.max, 100);
    assert.equal(ct.buckets, 64, "buckets round up to a power of two");
    const cpu = createSkbCpu(mem, 0);
    const skb = packetSkb(cpu, udpPkt(H1, R1, { sport: 1000, dport: 53 }));
    const e = nfConntrackIn(ct, cpu, skb, NF_INET_PRE_ROUTING, 0, 5000);
    assert.equal(nfConntrackConfirm(ct, cpu, skb, 5000), 0);
    const other = conntrackAttach(mem.arena);
    assert.equal(other.max, 100);
    assert.equal(nfConntrackFindTuple(other, H1, R1, 1000, 53, IPPROTO_UDP), (e << 1) | IP_CT_DIR_ORIGINAL);
    assert.equal(nfConntrackFindTuple(other, R1, H1, 53, 1000, IPPROTO_UDP), (e << 1) | IP_CT_DIR_REPLY);
    conntrackDetach(other);
    consumeSkb(cpu, skb);
    assert.equal(nfConntrackCount(ct), 1);
    nfConntrackFlush(ct);
    assert.equal(nfConntrackCount(ct), 0);
    assert.deepEqual(nfConntrackCheck(ct), []);
    conntrackDetach(ct);
  });

  test("bad geometry and missing regions are clear errors", () => {
    assert.throws(() => conntrackRegionSpec({ max: 0 }), /max must be/);
    assert.throws(() => conntrackRegionSpec({ max: 1.5 }), /max must be/);
    const mem = createSkbMemory({ arenaSize: 8 << 20, extraRegions: conntrackRegionSpec({ max: 10 }) });
    assert.throws(() => conntrackCreate(mem.arena, { max: 1000 }), /needs/);
    assert.throws(() => conntrackCreate(mem.arena, { name: "nope" }), /no region 'nope'/);
    assert.throws(() => conntrackCreate(mem.arena, { max: 10, timeouts: { udpUnreplied: 0 } }), /timeout slot/);
  });

  test("the transition table is the kernel's (spot checks)", () => {
    // tcp_conntracks[dir][index][state]; index: syn 0, synack 1, fin 2, ack 3, rst 4.
    assert.equal(tcpConntrackTransition(0, 0, 0), TCP_CONNTRACK_SYN_SENT);
    assert.equal(tcpConntrackTransition(1, 1, TCP_CONNTRACK_SYN_SENT), TCP_CONNTRACK_SYN_RECV);
    assert.equal(tcpConntrackTransition(0, 3, TCP_CONNTRACK_SYN_RECV), TCP_CONNTRACK_ESTABLISHED);
    assert.equal(tcpConntrackTransition(1, 3, TCP_CONNTRACK_SYN_RECV), TCP_CONNTRACK_SYN_RECV);
    assert.equal(tcpConntrackTransition(0, 2, TCP_CONNTRACK_ESTABLISHED), TCP_CONNTRACK_FIN_WAIT);
    assert.equal(tcpConntrackTransition(1, 3, TCP_CONNTRACK_FIN_WAIT), TCP_CONNTRACK_CLOSE_WAIT);
    assert.equal(tcpConntrackTransition(1, 2, TCP_CONNTRACK_CLOSE_WAIT), TCP_CONNTRACK_LAST_ACK);
    assert.equal(tcpConntrackTransition(0, 3, TCP_CONNTRACK_LAST_ACK), TCP_CONNTRACK_TIME_WAIT);
    assert.equal(tcpConntrackTransition(1, 4, TCP_CONNTRACK_ESTABLISHED), TCP_CONNTRACK_CLOSE);
    assert.equal(tcpConntrackTransition(1, 0, TCP_CONNTRACK_SYN_SENT), TCP_CONNTRACK_SYN_SENT2);
    assert.equal(tcpConntrackTransition(0, 1, TCP_CONNTRACK_SYN_SENT), 10, "SYN/ACK from the client is invalid");
    assert.equal(tcpConntrackTransition(0, 0, TCP_CONNTRACK_ESTABLISHED), 11, "SYN in ESTABLISHED is ignored");
  });
});

describe("conntrack: TCP", () => {
  /** One handshake H1:40000 -> R1:80 (masqueraded, port kept); returns the entry. */
  function handshake(r: Router): number {
    const e = accept(r, tcpPkt(H1, R1, { sport: 40000, dport: 80, flags: SYN, seq: 100 }), false).entry;
    accept(r, tcpPkt(R1, OUTSIDE, { sport: 80, dport: 40000, flags: SYN | ACK, seq: 5000, ack: 101 }), true);
    accept(r, tcpPkt(H1, R1, { sport: 40000, dport: 80, flags: ACK, seq: 101, ack: 5001 }), false);
    return e;
  }

  test("handshake, data, FIN close: every state and timeout; expiry then a new entry", () => {
    const r = makeRouter();
    const { ct } = r;
    const syn = tcpPkt(H1, R1, { sport: 40000, dport: 80, flags: SYN, seq: 100 });
    let s = accept(r, syn, false);
    const e = s.entry;
    assert.ok(e >= 1);
    assert.equal(s.ctinfo, IP_CT_NEW);
    assert.equal(nfCtTcpState(ct, e), TCP_CONNTRACK_SYN_SENT);
    assert.equal(nfCtExpires(ct, e, r.now), 120 * SEC);
    assert.ok(nfCtStatus(ct, e) & IPS_CONFIRMED);
    assert.equal(nfCtUse(ct, e), 1, "only the table holds it once the skb is freed");
    // Tuples: original as sent, reply towards the masquerade address.
    assert.equal(nfCtTupleSaddr(ct, e, IP_CT_DIR_ORIGINAL), H1);
    assert.equal(nfCtTupleDaddr(ct, e, IP_CT_DIR_ORIGINAL), R1);
    assert.equal(nfCtTupleSaddr(ct, e, IP_CT_DIR_REPLY), R1);
    assert.equal(nfCtTupleDaddr(ct, e, IP_CT_DIR_REPLY), OUTSIDE);
    assert.equal(nfCtTupleSport(ct, e, IP_CT_DIR_REPLY), 80);
    assert.equal(nfCtTupleDport(ct, e, IP_CT_DIR_REPLY), 40000);

    // A retransmitted SYN does not refresh the timeout.
    r.now += 1 * SEC;
    s = accept(r, syn, false);
    assert.equal(s.entry, e);
    assert.equal(s.ctinfo, IP_CT_NEW, "no reply seen yet");
    assert.equal(nfCtExpires(ct, e, r.now), 119 * SEC);

    s = accept(r, tcpPkt(R1, OUTSIDE, { sport: 80, dport: 40000, flags: SYN | ACK, seq: 5000, ack: 101 }), true);
    assert.equal(s.ctinfo, IP_CT_ESTABLISHED_REPLY);
    assert.equal(nfCtTcpState(ct, e), TCP_CONNTRACK_SYN_RECV);
    assert.equal(nfCtExpires(ct, e, r.now), 60 * SEC);
    assert.ok(nfCtStatus(ct, e) & IPS_SEEN_REPLY);
    assert.equal(nfCtStatus(ct, e) & IPS_ASSURED, 0);

    s = accept(r, tcpPkt(H1, R1, { sport: 40000, dport: 80, flags: ACK, seq: 101, ack: 5001 }), false);
    assert.equal(s.ctinfo, IP_CT_ESTABLISHED);
    assert.equal(nfCtTcpState(ct, e), TCP_CONNTRACK_ESTABLISHED);
    assert.ok(nfCtStatus(ct, e) & IPS_ASSURED, "assured after the handshake completes");
    assert.equal(nfCtExpires(ct, e, r.now), 5 * 24 * 3600 * SEC);

    r.now += 10 * SEC;
    const data = new Uint8Array(100).fill(7);
    accept(r, tcpPkt(H1, R1, { sport: 40000, dport: 80, flags: PSH | ACK, seq: 101, ack: 5001, payload: data }), false);
    accept(r, tcpPkt(R1, OUTSIDE, { sport: 80, dport: 40000, flags: PSH | ACK, seq: 5001, ack: 201, payload: data }), true);
    assert.equal(nfCtTcpState(ct, e), TCP_CONNTRACK_ESTABLISHED);

    accept(r, tcpPkt(H1, R1, { sport: 40000, dport: 80, flags: FIN | ACK, seq: 201, ack: 5101 }), false);
    assert.equal(nfCtTcpState(ct, e), TCP_CONNTRACK_FIN_WAIT);
    assert.equal(nfCtExpires(ct, e, r.now), 120 * SEC);
    accept(r, tcpPkt(R1, OUTSIDE, { sport: 80, dport: 40000, flags: ACK, seq: 5101, ack: 202 }), true);
    assert.equal(nfCtTcpState(ct, e), TCP_CONNTRACK_CLOSE_WAIT);
    assert.equal(nfCtExpires(ct, e, r.now), 60 * SEC);
    accept(r, tcpPkt(R1, OUTSIDE, { sport: 80, dport: 40000, flags: FIN | ACK, seq: 5101, ack: 202 }), true);
    assert.equal(nfCtTcpState(ct, e), TCP_CONNTRACK_LAST_ACK);
    assert.equal(nfCtExpires(ct, e, r.now), 30 * SEC);
    accept(r, tcpPkt(H1, R1, { sport: 40000, dport: 80, flags: ACK, seq: 202, ack: 5102 }), false);
    assert.equal(nfCtTcpState(ct, e), TCP_CONNTRACK_TIME_WAIT);
    assert.equal(nfCtExpires(ct, e, r.now), 120 * SEC);

    // Past TIME_WAIT: the next lookup expires the entry and the SYN makes a new one.
    r.now += 120 * SEC;
    const before = conntrackStats(ct);
    s = accept(r, syn, false);
    const after = conntrackStats(ct);
    assert.equal(after.expired - before.expired, 1);
    assert.equal(after.new - before.new, 1);
    assert.equal(nfCtTcpState(ct, s.entry), TCP_CONNTRACK_SYN_SENT);
    assert.equal(nfConntrackCount(ct), 1);
    assertConsistent(r);
    assertEmptyAfterFlush(r);
  });

  test("a SYN in TIME_WAIT reopens: the old entry is killed, a new one starts", () => {
    const r = makeRouter();
    const e = handshake(r);
    accept(r, tcpPkt(H1, R1, { sport: 40000, dport: 80, flags: FIN | ACK, seq: 101, ack: 5001 }), false);
    accept(r, tcpPkt(R1, OUTSIDE, { sport: 80, dport: 40000, flags: FIN | ACK, seq: 5001, ack: 102 }), true);
    assert.equal(nfCtTcpState(r.ct, e), TCP_CONNTRACK_LAST_ACK);
    accept(r, tcpPkt(H1, R1, { sport: 40000, dport: 80, flags: ACK, seq: 102, ack: 5002 }), false);
    assert.equal(nfCtTcpState(r.ct, e), TCP_CONNTRACK_TIME_WAIT);
    r.now += 5 * SEC;
    const s = accept(r, tcpPkt(H1, R1, { sport: 40000, dport: 80, flags: SYN, seq: 9000 }), false);
    assert.equal(nfCtTcpState(r.ct, s.entry), TCP_CONNTRACK_SYN_SENT);
    assert.equal(nfCtStatus(r.ct, s.entry) & IPS_SEEN_REPLY, 0, "a fresh entry");
    assert.equal(nfConntrackCount(r.ct), 1);
    assert.equal(conntrackStats(r.ct).new, 2);
    assertConsistent(r);
    assertEmptyAfterFlush(r);
  });

  test("RST closes an established connection with the 10 s CLOSE timeout", () => {
    const r = makeRouter();
    const e = handshake(r);
    accept(r, tcpPkt(R1, OUTSIDE, { sport: 80, dport: 40000, flags: RST | ACK, seq: 5001, ack: 101 }), true);
    assert.equal(nfCtTcpState(r.ct, e), TCP_CONNTRACK_CLOSE);
    assert.equal(nfCtExpires(r.ct, e, r.now), 10 * SEC);
    r.now += 10 * SEC - 1;
    assert.equal(nfConntrackGcWork(r.ct, r.now, 1000), 0);
    r.now += 1;
    assert.equal(nfConntrackGcWork(r.ct, r.now, 1000), 1);
    assert.equal(nfConntrackCount(r.ct), 0);
    assertConsistent(r);
  });

  test("RST as the only reply deletes the entry at once; the skb keeps it alive until freed", () => {
    const r = makeRouter();
    const e = accept(r, tcpPkt(H1, R1, { sport: 40001, dport: 81, flags: SYN }), false).entry;
    const skb = packetSkb(r.cpu, tcpPkt(R1, OUTSIDE, { sport: 81, dport: 40001, flags: RST | ACK, seq: 0, ack: 1001 }));
    assert.equal(forward(r, skb, true), 0, "the RST itself is forwarded (de-masqueraded)");
    assert.ok(nfCtStatus(r.ct, e) & IPS_DYING);
    assert.equal(nfConntrackFindTuple(r.ct, H1, R1, 40001, 81, IPPROTO_TCP), 0, "unhashed");
    assert.equal(nfConntrackCount(r.ct), 1, "still referenced by the skb");
    assert.equal(nfCtUse(r.ct, e), 1);
    consumeSkb(r.cpu, skb);
    assert.equal(nfConntrackCount(r.ct), 0);
    assertConsistent(r);
  });

  test("simultaneous open goes SYN_SENT2 -> SYN_RECV -> ESTABLISHED", () => {
    const r = makeRouter();
    const e = accept(r, tcpPkt(H1, R1, { sport: 40002, dport: 7000, flags: SYN }), false).entry;
    accept(r, tcpPkt(R1, OUTSIDE, { sport: 7000, dport: 40002, flags: SYN, seq: 77 }), true);
    assert.equal(nfCtTcpState(r.ct, e), TCP_CONNTRACK_SYN_SENT2);
    accept(r, tcpPkt(H1, R1, { sport: 40002, dport: 7000, flags: SYN | ACK, seq: 1000, ack: 78 }), false);
    assert.equal(nfCtTcpState(r.ct, e), TCP_CONNTRACK_SYN_RECV);
    accept(r, tcpPkt(R1, OUTSIDE, { sport: 7000, dport: 40002, flags: ACK, seq: 78, ack: 1001 }), true);
    assert.equal(nfCtTcpState(r.ct, e), TCP_CONNTRACK_ESTABLISHED);
    assert.ok(nfCtStatus(r.ct, e) & IPS_ASSURED);
    assertEmptyAfterFlush(r);
  });

  test("ignored and invalid packets", () => {
    const r = makeRouter();
    const e = handshake(r);
    const exp = nfCtExpires(r.ct, e, r.now);
    r.now += SEC;
    // SYN in ESTABLISHED: ignored (passed, no state change, no refresh).
    accept(r, tcpPkt(H1, R1, { sport: 40000, dport: 80, flags: SYN, seq: 1 }), false);
    assert.equal(nfCtTcpState(r.ct, e), TCP_CONNTRACK_ESTABLISHED);
    assert.equal(nfCtExpires(r.ct, e, r.now), exp - SEC);
    // SYN/ACK from the client in ESTABLISHED: invalid.
    let s = send(r, tcpPkt(H1, R1, { sport: 40000, dport: 80, flags: SYN | ACK }), false);
    assert.equal(s.verdict, SKB_DROP_REASON.CT_INVALID);
    assert.equal(s.entry, 0, "an invalid packet carries no entry");
    // Flag combinations the kernel rejects.
    s = send(r, tcpPkt(H2, R1, { sport: 1, dport: 2, flags: SYN | FIN }), false);
    assert.equal(s.verdict, SKB_DROP_REASON.TCP_FLAGS);
    s = send(r, tcpPkt(H2, R1, { sport: 1, dport: 2, flags: 0 }), false);
    assert.equal(s.verdict, SKB_DROP_REASON.TCP_FLAGS);
    // No entry: SYN/ACK and FIN cannot start a connection.
    s = send(r, tcpPkt(H2, R1, { sport: 3, dport: 4, flags: SYN | ACK }), false);
    assert.equal(s.verdict, SKB_DROP_REASON.CT_INVALID);
    s = send(r, tcpPkt(H2, R1, { sport: 3, dport: 4, flags: RST }), false);
    assert.equal(s.verdict, SKB_DROP_REASON.CT_INVALID);
    // ACK in SYN_SENT from the client: invalid, state kept.
    const e2 = accept(r, tcpPkt(H2, R2, { sport: 5555, dport: 443, flags: SYN }), false).entry;
    s = send(r, tcpPkt(H2, R2, { sport: 5555, dport: 443, flags: ACK }), false);
    assert.equal(s.verdict, SKB_DROP_REASON.CT_INVALID);
    assert.equal(nfCtTcpState(r.ct, e2), TCP_CONNTRACK_SYN_SENT);
    // Bad checksum.
    const bad = tcpPkt(H2, R2, { sport: 6, dport: 7, flags: SYN });
    bad[20 + 16] = (bad[20 + 16] as number) ^ 0x55;
    assert.equal(send(r, bad, false).verdict, SKB_DROP_REASON.TCP_CSUM);
    // Truncated: data offset beyond the segment.
    const trunc = tcpPkt(H2, R2, { sport: 6, dport: 7, flags: SYN });
    trunc[20 + 12] = 15 << 4;
    assert.equal(send(r, trunc, false).verdict, SKB_DROP_REASON.HDR_TRUNC);
    assert.equal(conntrackStats(r.ct).invalid, 8);
    assertConsistent(r);
    assertEmptyAfterFlush(r);
  });

  test("mid-stream pickup (loose): ESTABLISHED with the 300 s unacknowledged timeout; off when tcpLoose is false", () => {
    const r = makeRouter();
    const s = accept(r, tcpPkt(H1, R1, { sport: 33333, dport: 22, flags: ACK, seq: 1, ack: 1 }), false);
    assert.equal(nfCtTcpState(r.ct, s.entry), TCP_CONNTRACK_ESTABLISHED);
    assert.equal(nfCtExpires(r.ct, s.entry, r.now), 300 * SEC);
    assert.equal(nfCtStatus(r.ct, s.entry) & IPS_ASSURED, 0);
    // The reply marks SEEN_REPLY (after the state machine ran, as in the kernel); the next packet assures it.
    accept(r, tcpPkt(R1, OUTSIDE, { sport: 22, dport: 33333, flags: ACK, seq: 1, ack: 1 }), true);
    assert.ok(nfCtStatus(r.ct, s.entry) & IPS_SEEN_REPLY);
    assert.equal(nfCtStatus(r.ct, s.entry) & IPS_ASSURED, 0);
    assert.equal(nfCtExpires(r.ct, s.entry, r.now), 300 * SEC);
    accept(r, tcpPkt(H1, R1, { sport: 33333, dport: 22, flags: ACK, seq: 1, ack: 1 }), false);
    assert.ok(nfCtStatus(r.ct, s.entry) & IPS_ASSURED);
    assert.equal(nfCtExpires(r.ct, s.entry, r.now), 5 * 24 * 3600 * SEC);
    assertEmptyAfterFlush(r);
    const strict = makeRouter({ tcpLoose: false });
    assert.equal(send(strict, tcpPkt(H1, R1, { sport: 1, dport: 22, flags: ACK }), false).verdict, SKB_DROP_REASON.CT_INVALID);
  });

  test("checksum verification can be turned off (nf_conntrack_checksum=0)", () => {
    const r = makeRouter({ checksum: false });
    const bad = tcpPkt(H1, R1, { sport: 6, dport: 7, flags: SYN });
    bad[20 + 16] = (bad[20 + 16] as number) ^ 0x55;
    assert.equal(send(r, bad, false).verdict, 0);
    assertEmptyAfterFlush(r);
  });
});

describe("conntrack: UDP, ICMP, other protocols", () => {
  test("UDP unreplied: 30 s, then gone", () => {
    const r = makeRouter();
    const e = accept(r, udpPkt(H1, R1, { sport: 5000, dport: 53 }), false).entry;
    assert.equal(nfCtExpires(r.ct, e, r.now), 30 * SEC);
    r.now += 20 * SEC;
    accept(r, udpPkt(H1, R1, { sport: 5000, dport: 53 }), false);
    assert.equal(nfCtExpires(r.ct, e, r.now), 30 * SEC, "refreshed by each packet");
    r.now += 30 * SEC;
    assert.equal(nfConntrackGcWork(r.ct, r.now, 100), 1);
    assert.equal(nfConntrackCount(r.ct), 0);
    assert.equal(conntrackStats(r.ct).expired, 1);
    assertConsistent(r);
  });

  test("UDP replied: assured and 120 s once the flow is older than 2 s", () => {
    const r = makeRouter();
    const e = accept(r, udpPkt(H1, R1, { sport: 5001, dport: 123 }), false).entry;
    r.now += 500;
    const rep = accept(r, udpPkt(R1, OUTSIDE, { sport: 123, dport: 5001 }), true);
    assert.equal(rep.ctinfo, IP_CT_ESTABLISHED_REPLY);
    assert.ok(nfCtStatus(r.ct, e) & IPS_SEEN_REPLY);
    assert.equal(nfCtStatus(r.ct, e) & IPS_ASSURED, 0);
    assert.equal(nfCtExpires(r.ct, e, r.now), 30 * SEC);
    r.now += 1000;
    accept(r, udpPkt(H1, R1, { sport: 5001, dport: 123 }), false);
    assert.equal(nfCtStatus(r.ct, e) & IPS_ASSURED, 0, "still younger than 2 s");
    assert.equal(nfCtExpires(r.ct, e, r.now), 30 * SEC);
    r.now += 1000;
    const s = accept(r, udpPkt(H1, R1, { sport: 5001, dport: 123 }), false);
    assert.equal(s.ctinfo, IP_CT_ESTABLISHED);
    assert.ok(nfCtStatus(r.ct, e) & IPS_ASSURED);
    assert.equal(nfCtExpires(r.ct, e, r.now), 120 * SEC);
    r.now += 120 * SEC;
    // Lazy expiry: the next packet of the flow finds nothing and starts over.
    const again = accept(r, udpPkt(H1, R1, { sport: 5001, dport: 123 }), false);
    assert.equal(again.ctinfo, IP_CT_NEW);
    assert.equal(nfCtStatus(r.ct, again.entry) & IPS_SEEN_REPLY, 0);
    assert.equal(conntrackStats(r.ct).expired, 1);
    assertEmptyAfterFlush(r);
  });

  test("UDP malformed: bad checksum, bad length; checksum 0 is accepted", () => {
    const r = makeRouter();
    const bad = udpPkt(H1, R1, { sport: 1, dport: 2, payload: new Uint8Array([1, 2, 3]) });
    bad[27] = (bad[27] as number) ^ 1;
    assert.equal(send(r, bad, false).verdict, SKB_DROP_REASON.UDP_CSUM);
    const long = udpPkt(H1, R1, { sport: 1, dport: 2, payload: new Uint8Array([1, 2, 3]) });
    long[25] = 200;
    assert.equal(send(r, long, false).verdict, SKB_DROP_REASON.HDR_TRUNC);
    accept(r, udpPkt(H1, R1, { sport: 1, dport: 2, noCsum: true }), false);
    assertEmptyAfterFlush(r);
  });

  test("ICMP echo: 30 s; the reply matches; invalid ICMP is dropped", () => {
    const r = makeRouter();
    const e = accept(r, pingPkt(H1, R1, 8, 0x4242), false).entry;
    assert.equal(nfCtExpires(r.ct, e, r.now), 30 * SEC);
    assert.equal(nfCtTupleSport(r.ct, e, IP_CT_DIR_ORIGINAL), 0x4242);
    assert.equal(nfCtTupleDport(r.ct, e, IP_CT_DIR_ORIGINAL), 8 << 8);
    assert.equal(nfCtTupleDport(r.ct, e, IP_CT_DIR_REPLY), 0 << 8);
    const rep = accept(r, pingPkt(R1, OUTSIDE, 0, 0x4242), true);
    assert.equal(rep.entry, e);
    assert.equal(rep.ctinfo, IP_CT_ESTABLISHED_REPLY);
    // An echo request from the outside to the same id is not a reply.
    assert.equal(send(r, pingPkt(R1, OUTSIDE, 8, 0x4242), true).verdict, SKB_DROP_REASON.CT_UNSOLICITED);
    // An echo reply nobody asked for, router advertisements, unknown types.
    assert.equal(send(r, pingPkt(H1, R1, 0, 1), false).verdict, SKB_DROP_REASON.ICMP_INVALID);
    assert.equal(send(r, pingPkt(H1, R1, 9, 1), false).verdict, SKB_DROP_REASON.ICMP_INVALID);
    assert.equal(send(r, pingPkt(H1, R1, 42, 1), false).verdict, SKB_DROP_REASON.ICMP_INVALID);
    const badsum = pingPkt(H1, R1, 8, 7);
    badsum[22] = (badsum[22] as number) ^ 0xff;
    assert.equal(send(r, badsum, false).verdict, SKB_DROP_REASON.ICMP_INVALID);
    r.now += 30 * SEC;
    assert.equal(nfConntrackGcWork(r.ct, r.now, 100), 1);
    assertEmptyAfterFlush(r);
  });

  test("ICMP errors attach to the connection they quote (RELATED), unknown ones are invalid", () => {
    const r = makeRouter();
    const e = accept(r, udpPkt(H1, R1, { sport: 5002, dport: 33434 }), false).entry;
    const quoted = udpPkt(OUTSIDE, R1, { sport: 5002, dport: 33434 });
    const skb = packetSkb(r.cpu, ipv4({ saddr: HOP, daddr: OUTSIDE, proto: IPPROTO_ICMP }, icmpError(11, 0, quoted)), {
      dev: OUT_IF,
    });
    assert.equal(nfConntrackIn(r.ct, r.cpu, skb, NF_INET_PRE_ROUTING, NF_CT_F_NO_NEW, r.now), e);
    assert.equal(nfctEntry(skbNfct(r.cpu, skb)), e);
    assert.equal(skbNfct(r.cpu, skb) & 7, 4, "IP_CT_RELATED_REPLY");
    assert.equal(nfCtUse(r.ct, e), 2);
    kfreeSkb(r.cpu, skb);
    assert.equal(nfCtUse(r.ct, e), 1);
    const unknown = udpPkt(OUTSIDE, R1, { sport: 9999, dport: 33434 });
    const s = send(r, ipv4({ saddr: HOP, daddr: OUTSIDE, proto: IPPROTO_ICMP }, icmpError(3, 3, unknown)), true);
    assert.equal(s.verdict, SKB_DROP_REASON.CT_INVALID);
    const short = ipv4({ saddr: HOP, daddr: OUTSIDE, proto: IPPROTO_ICMP }, icmpError(3, 3, quoted.subarray(0, 24)));
    assert.equal(send(r, short, true).verdict, SKB_DROP_REASON.ICMP_INVALID);
    assertEmptyAfterFlush(r);
  });

  test("other protocols are tracked by addresses (generic, 600 s)", () => {
    const r = makeRouter();
    const gre = ipv4({ saddr: H1, daddr: R1, proto: IPPROTO_GRE }, new Uint8Array([0, 0, 0x08, 0]));
    const e = accept(r, gre, false).entry;
    assert.equal(nfCtExpires(r.ct, e, r.now), 600 * SEC);
    const back = ipv4({ saddr: R1, daddr: OUTSIDE, proto: IPPROTO_GRE }, new Uint8Array([0, 0, 0x08, 0]));
    assert.equal(accept(r, back, true).entry, e);
    assertEmptyAfterFlush(r);
  });

  test("unsolicited packets from the outside are dropped, replies pass", () => {
    const r = makeRouter();
    let s = send(r, udpPkt(R1, OUTSIDE, { sport: 53, dport: 5003 }), true);
    assert.equal(s.verdict, SKB_DROP_REASON.CT_UNSOLICITED);
    s = send(r, tcpPkt(R1, OUTSIDE, { sport: 1234, dport: 22, flags: SYN }), true);
    assert.equal(s.verdict, SKB_DROP_REASON.CT_UNSOLICITED);
    assert.equal(conntrackStats(r.ct).unsolicited, 2);
    assert.equal(nfConntrackCount(r.ct), 0);
    accept(r, udpPkt(H1, R1, { sport: 5003, dport: 53 }), false);
    accept(r, udpPkt(R1, OUTSIDE, { sport: 53, dport: 5003 }), true);
    // Without the policy the same packet starts a new flow (null NAT binding).
    const open = send(r, udpPkt(R2, OUTSIDE, { sport: 53, dport: 5004 }), false);
    assert.equal(open.verdict, 0);
    assertEmptyAfterFlush(r);
  });
});

describe("conntrack: table limits, expiry, references", () => {
  test("full table: early drop of a non-assured entry, then NF_CONNTRACK_FULL when all are assured", () => {
    const r = makeRouter({ max: 4, buckets: 4 });
    for (let i = 0; i < 4; i++) accept(r, udpPkt(H1, R1, { sport: 6000 + i, dport: 53 }), false);
    assert.equal(nfConntrackCount(r.ct), 4);
    // A fifth flow evicts one unreplied UDP entry.
    accept(r, udpPkt(H1, R1, { sport: 6004, dport: 53 }), false);
    assert.equal(nfConntrackCount(r.ct), 4);
    assert.equal(conntrackStats(r.ct).early_drop, 1);
    // Four assured TCP connections push out the rest.
    for (let i = 0; i < 4; i++) {
      const sp = 41000 + i;
      accept(r, tcpPkt(H1, R1, { sport: sp, dport: 80, flags: SYN }), false);
      accept(r, tcpPkt(R1, OUTSIDE, { sport: 80, dport: sp, flags: SYN | ACK, ack: 1001 }), true);
      const e = accept(r, tcpPkt(H1, R1, { sport: sp, dport: 80, flags: ACK, seq: 1001, ack: 1 }), false).entry;
      assert.ok(nfCtStatus(r.ct, e) & IPS_ASSURED);
    }
    assert.equal(conntrackStats(r.ct).early_drop, 5);
    const s = send(r, udpPkt(H2, R2, { sport: 1, dport: 2 }), false);
    assert.equal(s.verdict, SKB_DROP_REASON.NF_CONNTRACK_FULL);
    assert.equal(conntrackStats(r.ct).drop, 1);
    assert.equal(r.cpu.drops[SKB_DROP_REASON.NF_CONNTRACK_FULL], 1);
    // Existing connections still work.
    accept(r, tcpPkt(H1, R1, { sport: 41000, dport: 80, flags: ACK, seq: 1001, ack: 1 }), false);
    assertConsistent(r);
    assertEmptyAfterFlush(r);
  });

  test("an expired entry can be the only free slot once an skb lets go", () => {
    const r = makeRouter({ max: 1, buckets: 1 });
    const skb = packetSkb(r.cpu, udpPkt(H1, R1, { sport: 1, dport: 2 }));
    assert.equal(forward(r, skb, false), 0);
    r.now += 31 * SEC;
    assert.equal(nfConntrackGcWork(r.ct, r.now, 10), 1);
    // Dead but referenced: a new flow finds no slot.
    assert.equal(send(r, udpPkt(H2, R1, { sport: 1, dport: 2 }), false).verdict, SKB_DROP_REASON.NF_CONNTRACK_FULL);
    consumeSkb(r.cpu, skb);
    assert.equal(send(r, udpPkt(H2, R1, { sport: 1, dport: 2 }), false).verdict, 0);
    assertEmptyAfterFlush(r);
  });

  test("skb references: held entries survive expiry and are freed with the last skb", () => {
    const r = makeRouter();
    const a = packetSkb(r.cpu, udpPkt(H1, R1, { sport: 7000, dport: 9 }));
    assert.equal(forward(r, a, false), 0);
    const e = nfctEntry(skbNfct(r.cpu, a));
    const b = packetSkb(r.cpu, udpPkt(H1, R1, { sport: 7000, dport: 9 }));
    assert.equal(forward(r, b, false), 0);
    assert.equal(nfctEntry(skbNfct(r.cpu, b)), e);
    assert.equal(nfCtUse(r.ct, e), 3, "table + two skbs");
    r.now += 30 * SEC;
    assert.equal(nfConntrackGcWork(r.ct, r.now, 100), 1);
    assert.ok(nfCtStatus(r.ct, e) & IPS_DYING);
    assert.equal(nfConntrackCount(r.ct), 1);
    kfreeSkbReason(r.cpu, a, SKB_DROP_REASON.NOT_SPECIFIED);
    assert.equal(nfConntrackCount(r.ct), 1);
    consumeSkb(r.cpu, b);
    assert.equal(nfConntrackCount(r.ct), 0);
    assertConsistent(r);
  });

  test("an unconfirmed entry dies with its skb (dropped before POST_ROUTING)", () => {
    const r = makeRouter();
    const skb = packetSkb(r.cpu, udpPkt(H1, R1, { sport: 7001, dport: 9 }), { dev: IN_IF });
    const e = nfConntrackIn(r.ct, r.cpu, skb, NF_INET_PRE_ROUTING, 0, r.now);
    assert.ok(e >= 1);
    assert.equal(nfCtStatus(r.ct, e) & IPS_CONFIRMED, 0);
    assert.equal(nfConntrackFindTuple(r.ct, H1, R1, 7001, 9, IPPROTO_UDP), 0, "not hashed before confirm");
    assert.equal(nfConntrackCount(r.ct), 1);
    kfreeSkbReason(r.cpu, skb, SKB_DROP_REASON.NO_ROUTE);
    assert.equal(nfConntrackCount(r.ct), 0);
    assertConsistent(r);
  });

  test("incremental GC frees a bounded number at a time", () => {
    const r = makeRouter({ max: 256, buckets: 64 });
    for (let i = 0; i < 100; i++) accept(r, udpPkt(H1, R1, { sport: 10000 + i, dport: 53 }), false);
    r.now += 29 * SEC;
    assert.equal(nfConntrackGcWork(r.ct, r.now, 1000), 0, "nothing expired yet");
    r.now += SEC;
    let calls = 0;
    let freed = 0;
    while (nfConntrackCount(r.ct) > 0) {
      const n = nfConntrackGcWork(r.ct, r.now, 16);
      assert.ok(n <= 16, `freed ${n} with a budget of 16`);
      freed += n;
      calls++;
      assertConsistent(r);
      assert.ok(calls < 100);
    }
    assert.equal(freed, 100);
    assert.ok(calls >= 7, `took ${calls} calls`);
  });

  test("confirm clash: same UDP flow resolved onto the first entry; TCP insert fails", () => {
    const r = makeRouter();
    const { cpu, ct, nat } = r;
    const pipeline = (skb: number) => {
      cpu.u32[(skb + SKB_DEV) >>> 2] = IN_IF;
      assert.ok(nfConntrackIn(ct, cpu, skb, NF_INET_PRE_ROUTING, 0, r.now) > 0);
      assert.equal(nfNatIpv4(nat, cpu, skb, NF_INET_PRE_ROUTING, ct), 0);
      cpu.u32[(skb + SKB_DEV) >>> 2] = OUT_IF;
      assert.equal(nfNatIpv4(nat, cpu, skb, NF_INET_POST_ROUTING, ct), 0);
    };
    const u1 = packetSkb(cpu, udpPkt(H1, R1, { sport: 8000, dport: 53 }));
    const u2 = packetSkb(cpu, udpPkt(H1, R1, { sport: 8000, dport: 53 }));
    pipeline(u1);
    pipeline(u2);
    assert.equal(nfConntrackCount(ct), 2, "two unconfirmed entries");
    assert.equal(nfConntrackConfirm(ct, cpu, u1, r.now), 0);
    assert.equal(nfConntrackConfirm(ct, cpu, u2, r.now), 0);
    assert.equal(nfctEntry(skbNfct(cpu, u2)), nfctEntry(skbNfct(cpu, u1)));
    assert.equal(conntrackStats(ct).clash_resolve, 1);
    assert.equal(nfConntrackCount(ct), 1);
    consumeSkb(cpu, u1);
    consumeSkb(cpu, u2);
    const t1 = packetSkb(cpu, tcpPkt(H2, R1, { sport: 8001, dport: 80, flags: SYN }));
    const t2 = packetSkb(cpu, tcpPkt(H2, R1, { sport: 8001, dport: 80, flags: SYN }));
    pipeline(t1);
    pipeline(t2);
    assert.equal(nfConntrackConfirm(ct, cpu, t1, r.now), 0);
    assert.equal(nfConntrackConfirm(ct, cpu, t2, r.now), SKB_DROP_REASON.NETFILTER_DROP);
    assert.equal(conntrackStats(ct).insert_failed, 1);
    consumeSkb(cpu, t1);
    kfreeSkbReason(cpu, t2, SKB_DROP_REASON.NETFILTER_DROP);
    assert.equal(nfConntrackCount(ct), 2);
    assertEmptyAfterFlush(r);
  });

  test("stats names and object", () => {
    const r = makeRouter();
    const st = conntrackStats(r.ct);
    for (const n of CT_STAT_NAMES) assert.equal(st[n], 0);
    assert.equal(st.max, 1024);
    assert.equal(st.count, 0);
  });
});

// ---- fuzz: random and mutated packets through the whole router path ---------------------------------

const INSIDE = [H1, H2, 0x0a000005];
const REMOTE = [R1, R2];
const PORTS = [53, 80, 1024, 1025, 1026, 40000, 40001];

interface Ev {
  /** 0..5 packet, 6 gc, 7 release held skbs, 8 advance the clock. */
  kind: number;
  out: boolean;
  /** For packets from the outside (or ICMP errors from the inside): answer a packet seen earlier. */
  answer: boolean;
  pick: number;
  proto: number;
  a: number;
  b: number;
  sp: number;
  dp: number;
  flags: number;
  icmpType: number;
  /** -1 none, else a byte offset into the L4 part to overwrite. */
  mutate: number;
  mval: number;
  badCsum: boolean;
  hold: boolean;
  dt: number;
}

const evArb: fc.Arbitrary<Ev> = fc.record({
  kind: fc.integer({ min: 0, max: 8 }),
  out: fc.boolean(),
  answer: fc.boolean(),
  pick: fc.nat(),
  proto: fc.constantFrom(IPPROTO_TCP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDP, IPPROTO_ICMP, IPPROTO_GRE),
  a: fc.nat(),
  b: fc.nat(),
  sp: fc.nat(),
  dp: fc.nat(),
  flags: fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(SYN, SYN | ACK, ACK, PSH | ACK, FIN | ACK, RST, RST | ACK) },
    { weight: 1, arbitrary: fc.integer({ min: 0, max: 255 }) },
  ),
  icmpType: fc.constantFrom(0, 8, 8, 3, 11, 11, 5, 12, 13, 9, 30),
  mutate: fc.oneof({ weight: 6, arbitrary: fc.constant(-1) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 40 }) }),
  mval: fc.integer({ min: 0, max: 255 }),
  badCsum: fc.oneof({ weight: 8, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
  hold: fc.oneof({ weight: 4, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
  dt: fc.oneof(fc.integer({ min: 0, max: 3000 }), fc.integer({ min: 0, max: 200_000 })),
});

function pick<T>(xs: readonly T[], i: number): T {
  return xs[i % xs.length] as T;
}

/** The L4 part of a fresh packet s -> d described by `ev`. */
function freshL4(ev: Ev, s: number, d: number, sp: number, dp: number, quoteFrom: Uint8Array | null): Uint8Array {
  if (ev.proto === IPPROTO_TCP) return tcp(s, d, { sport: sp, dport: dp, flags: ev.flags, seq: ev.sp * 1000, ack: ev.dp * 1000 });
  if (ev.proto === IPPROTO_UDP) return udp(s, d, { sport: sp, dport: dp, payload: new Uint8Array(ev.sp % 5) });
  if (ev.proto === IPPROTO_ICMP) {
    const t = ev.icmpType;
    if (t === 3 || t === 11 || t === 5 || t === 12) {
      const q = quoteFrom ?? udpPkt(d, s, { sport: dp, dport: sp });
      // Quote the whole packet, or just the IP header + 8 bytes as most routers do.
      return icmpError(t, ev.dp % 4, ev.sp % 2 === 0 ? q : q.subarray(0, 28));
    }
    return pingPkt(s, d, t, sp).subarray(20);
  }
  return new Uint8Array([0, 0, 0x08, 0, ev.sp & 255, ev.dp & 255]);
}

/**
 * One fuzz packet: fresh, or an answer to a packet that left earlier (a
 * reply from the outside to a masqueraded one, or an ICMP error about it).
 * Returns [bytes, checksums intact].
 */
function fuzzPacket(ev: Ev, sentOut: readonly Uint8Array[], sentIn: readonly Uint8Array[]): [Uint8Array, boolean] {
  let pkt: Uint8Array;
  const seen = ev.out ? sentOut : sentIn;
  if (ev.answer && seen.length > 0) {
    const q = pick(seen, ev.pick);
    const p = parse(q);
    const t = ev.proto === IPPROTO_ICMP ? ev.icmpType : -1;
    if (t === 3 || t === 11 || t === 5 || t === 12) {
      // An ICMP error about q, sent back to q's source by its destination or a hop on the way.
      const from = ev.sp % 2 === 0 ? p.daddr : ev.out ? HOP : pick(INSIDE, ev.a);
      pkt = ipv4({ saddr: from, daddr: p.saddr, proto: IPPROTO_ICMP }, freshL4(ev, from, p.saddr, 0, 0, q));
    } else if (p.proto === IPPROTO_ICMP) {
      pkt = pingPkt(p.daddr, p.saddr, ev.sp % 3 === 0 ? 8 : 0, p.icmpId);
    } else {
      const e2: Ev = { ...ev, proto: p.proto };
      pkt = ipv4({ saddr: p.daddr, daddr: p.saddr, proto: p.proto }, freshL4(e2, p.daddr, p.saddr, p.dport, p.sport, null));
    }
  } else {
    const inside = pick(INSIDE, ev.a);
    const remote = pick(REMOTE, ev.b);
    const s = ev.out ? remote : inside;
    const d = ev.out ? OUTSIDE : remote;
    pkt = ipv4({ saddr: s, daddr: d, proto: ev.proto }, freshL4(ev, s, d, pick(PORTS, ev.sp), pick(PORTS, ev.dp), null));
  }
  let good = true;
  if (ev.mutate >= 0 && 20 + ev.mutate < pkt.length) {
    if (pkt[20 + ev.mutate] !== ev.mval) good = false;
    pkt[20 + ev.mutate] = ev.mval;
  }
  const proto = pkt[9] as number;
  if (ev.badCsum && proto !== IPPROTO_GRE) {
    const off = proto === IPPROTO_TCP ? 36 : proto === IPPROTO_UDP ? 26 : 22;
    if (off + 1 < pkt.length) {
      pkt[off] = (pkt[off] as number) ^ 0x10;
      good = false;
    }
  }
  return [pkt, good];
}

describe("conntrack: fuzz", () => {
  test("random and mutated TCP/UDP/ICMP packets: never throws, every packet accounted for, table consistent", () => {
    const totals = { forwarded: 0, dropped: 0, xlated: 0, remapped: 0, earlyDrop: 0, related: 0 };
    fc.assert(
      fc.property(fc.array(evArb, { minLength: 1, maxLength: 200, size: "large" }), fc.boolean(), (evs, small) => {
        const r = makeRouter({ max: small ? 8 : 64, buckets: small ? 4 : 32 }, { portMin: 1024, portMax: 1026 });
        const { cpu, ct } = r;
        const held: number[] = [];
        const sentOut: Uint8Array[] = [];
        const sentIn: Uint8Array[] = [];
        let forwarded = 0;
        let dropped = 0;
        let sent = 0;
        for (const ev of evs) {
          if (ev.kind <= 5) {
            const [pkt, good] = fuzzPacket(ev, sentOut, sentIn);
            const skb = packetSkb(cpu, pkt);
            sent++;
            const v = forward(r, skb, ev.out);
            assert.ok(Number.isInteger(v) && v >= 0 && v < DROP_REASON_NAMES.length, `verdict ${v}`);
            assert.notEqual(v, SKB_DROP_REASON.CONSUMED);
            if (v === 0) {
              forwarded++;
              const outBytes = skbPacket(cpu, skb);
              if (good) {
                const p = parse(outBytes);
                assert.ok(p.ipCsumOk, "IP checksum after NAT");
                if (p.l4CsumOk !== null) assert.ok(p.l4CsumOk, `L4 checksum after NAT (proto ${p.proto})`);
                if (p.inner !== null) {
                  assert.ok(p.inner.ipCsumOk, "embedded IP checksum after NAT");
                  if (p.inner.l4CsumOk !== null) assert.ok(p.inner.l4CsumOk, "embedded L4 checksum after NAT");
                }
                (ev.out ? sentIn : sentOut).push(outBytes);
                if (sentIn.length > 16) sentIn.shift();
                if (sentOut.length > 16) sentOut.shift();
              }
              if (ev.hold && held.length < 6) held.push(skb);
              else consumeSkb(cpu, skb);
            } else {
              dropped++;
              if (ev.hold && held.length < 6) held.push(skb);
              else kfreeSkbReason(cpu, skb, v);
            }
          } else if (ev.kind === 6) {
            nfConntrackGcWork(ct, r.now, 1 + (ev.sp % 20));
          } else if (ev.kind === 7) {
            for (const skb of held.splice(0)) kfreeSkb(cpu, skb);
          } else {
            r.now += ev.dt;
          }
          assert.deepEqual(nfConntrackCheck(ct), []);
        }
        // Every packet is accounted for: forwarded or dropped with a reason.
        assert.equal(forwarded + dropped, sent);
        totals.forwarded += forwarded;
        totals.dropped += dropped;
        totals.xlated += r.nat.stats[NAT_STAT_ICMP_XLATE] as number;
        totals.remapped += r.nat.stats[NAT_STAT_PORT_REMAPPED] as number;
        totals.earlyDrop += conntrackStats(ct).early_drop;
        totals.related += conntrackStats(ct).found;
        for (const skb of held.splice(0)) kfreeSkb(cpu, skb);
        // Everything expires: the GC empties the table (no leaked references).
        r.now += 6 * 24 * 3600 * SEC;
        for (let i = 0; i < 100 && nfConntrackCount(ct) > 0; i++) nfConntrackGcWork(ct, r.now, 64);
        assert.equal(nfConntrackCount(ct), 0);
        assert.deepEqual(nfConntrackCheck(ct), []);
        conntrackDetach(ct);
      }),
      { numRuns: 200 },
    );
    // The generator reaches the interesting paths.
    assert.ok(totals.forwarded > 500, `forwarded ${totals.forwarded}`);
    assert.ok(totals.xlated > 0, "no ICMP error was translated");
    assert.ok(totals.remapped > 0, "no port was remapped");
    assert.ok(totals.earlyDrop > 0, "no early drop");
    assert.ok(totals.related > 0, "no lookup hit");
  });
});
