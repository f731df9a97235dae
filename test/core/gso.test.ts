/**
 * GSO for TCP/IPv4 and UDP (SKB_GSO_UDP_L4) (src/core/gso.ts), and the
 * GRO → GSO round trip: 40 segments aggregated by GRO and segmented again
 * are byte-identical to the originals; a fast-check property drives random
 * multi-flow segment streams (sizes, flags, order, head kinds, corruption)
 * through GRO then GSO and checks that exactly the original packets come
 * out and that nothing leaks.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { GRO_HELD, GRO_STAT_FLUSHED, GRO_STAT_HELD, GRO_STAT_MERGED, GRO_STAT_NORMAL, GRO_STAT_RECEIVED, GroList, groFlush, napiGroReceive } from "../../src/core/gro.js";
import {
  GSO_FAIL_MALFORMED,
  GSO_FAIL_MTU,
  GSO_FAIL_NOMEM,
  GSO_FAIL_NOT_GSO,
  GSO_FAIL_UNSUPPORTED,
  GSO_STAT_COPIED,
  GSO_STAT_SEGMENTS,
  GSO_STAT_ZEROCOPY,
  gsoSetZeroCopy,
  gsoStats,
  gsoStatsSnapshot,
  netGsoOk,
  SKB_GSO_DODGY,
  SKB_GSO_TCP_ECN,
  SKB_GSO_TCP_FIXEDID,
  SKB_GSO_TCPV4,
  SKB_GSO_TCPV6,
  SKB_GSO_UDP_L4,
  skbChecksumHelp,
  skbGsoSegment,
  skbGsoValidateNetworkLen,
  skbIsGso,
} from "../../src/core/gso.js";
import { NETIF_F_GSO_UDP_L4, NETIF_F_HW_CSUM, NETIF_F_SG, NETIF_F_TSO, NETIF_F_TSO_ECN } from "../../src/core/netdev.js";
import { allocPage, pageRefCount } from "../../src/mm/page-alloc.js";
import { kmemCacheAlloc, kmemCacheFree, kmemCacheInfo } from "../../src/mm/slab.js";
import { csumPartial, csumTcpudpMagic, ipFastCsum } from "../../src/net/checksum.js";
import {
  ETH_P_IP,
  IPPROTO_TCP,
  IPPROTO_UDP,
  TCP_FLAG_ACK,
  TCP_FLAG_CWR,
  TCP_FLAG_ECE,
  TCP_FLAG_FIN,
  TCP_FLAG_PSH,
  TCP_FLAG_RST,
  TCP_FLAG_SYN,
  TCP_FLAG_URG,
} from "../../src/net/proto.js";
import { skbFragList, skbFragPage, skbNrFrags, skbShinfo } from "../../src/skb/access.js";
import { allocSkb } from "../../src/skb/alloc.js";
import type { SkbCpu } from "../../src/skb/cpu.js";
import { skbAddRxFrag, skbPut, skbReserve } from "../../src/skb/data.js";
import { kfreeSkb } from "../../src/skb/free.js";
import {
  CHECKSUM_NONE,
  CHECKSUM_PARTIAL,
  MAX_SKB_FRAGS,
  NET_SKB_PAD,
  SHINFO_FRAG_LIST,
  SHINFO_GSO_SEGS,
  SHINFO_GSO_SIZE,
  SHINFO_GSO_TYPE,
  SKB_CSUM_OFFSET,
  SKB_CSUM_START,
  SKB_DATA,
  SKB_DEV,
  SKB_HEAD,
  SKB_DATA_LEN,
  SKB_IP_SUMMED,
  SKB_LEN,
  SKB_MAC_HEADER,
  SKB_NETWORK_HEADER,
  SKB_NEXT,
  SKB_PROTOCOL,
  SKB_TRANSPORT_HEADER,
  SKB_VLAN_PROTO,
  SKB_VLAN_TCI,
} from "../../src/skb/layout.js";
import { napiCacheSetEnabled, napiSkbCacheDrain } from "../../src/skb/napi-cache.js";
import { skbToBytes } from "../../src/skb/view.js";
import { assertNoLeaks, byteSource, PROFILES, type Profile } from "../support/skb.js";
import {
  deliver,
  ETH,
  freeUnlinked,
  get16,
  get32,
  type Mode,
  put16,
  put32,
  rx,
  type Seg,
  segFactory,
  setupGro as setup,
  TS_OPTS,
  take,
  tcpPacket,
} from "../support/tcp.js";

napiCacheSetEnabled(true);

// ---- environment ----------------------------------------------------------------------------

/** The segments of a list, in order. */
function list(cpu: SkbCpu, first: number): number[] {
  const out: number[] = [];
  for (let s = first; s !== 0; s = cpu.u32[(s + SKB_NEXT) >>> 2] as number) out.push(s);
  return out;
}

// ---- packets --------------------------------------------------------------------------------

/** Deterministic payload bytes for this file. */
const { bytes } = byteSource(98765);
// seq and the IP id wrap inside the 40-segment stream.
const { mkSeg, flow } = segFactory(
  { saddr: 0xc0a80001, daddr: 0xc0a80002, sport: 33000, dport: 80, seq: 0xfffff000, ack: 4242, win: 1000, id: 0xfff0 },
  bytes,
);

function udpPacket(saddr: number, daddr: number, id: number, payload: Uint8Array): Uint8Array {
  const tot = 28 + payload.length;
  const b = new Uint8Array(tot);
  b[0] = 0x45;
  put16(b, 2, tot);
  put16(b, 4, id);
  b[8] = 64;
  b[9] = IPPROTO_UDP;
  put32(b, 12, saddr);
  put32(b, 16, daddr);
  put16(b, 10, ipFastCsum(b, 0, 5));
  put16(b, 20, 5000);
  put16(b, 22, 6000);
  put16(b, 24, 8 + payload.length);
  b.set(payload, 28);
  const c = csumTcpudpMagic(saddr, daddr, 8 + payload.length, IPPROTO_UDP, csumPartial(b, 20, 8 + payload.length, 0));
  put16(b, 26, c === 0 ? 0xffff : c);
  return b;
}

/** Both checksums of an IPv4 TCP or UDP packet verify. */
function checksumsOk(b: Uint8Array): boolean {
  if (ipFastCsum(b, 0, 5) !== 0) return false;
  const l4 = b.length - 20;
  const proto = b[9] as number;
  if (proto === IPPROTO_UDP && get16(b, 26) === 0) return true;
  return csumTcpudpMagic(get32(b, 12), get32(b, 16), l4, proto, csumPartial(b, 20, l4, 0)) === 0;
}

/**
 * A TX-style GSO skb: headers (and `linearPay` payload bytes) in a kmalloc
 * head with the Ethernet header in the headroom, the rest of the payload in
 * 4 KiB pages as frags. Data at the IPv4 header unless `atMac`.
 */
function txSkb(
  cpu: SkbCpu,
  pkt: Uint8Array,
  o: { gsoSize: number; gsoType: number; linearPay?: number; linear?: number; atMac?: boolean },
): number {
  const hdr = pkt[9] === IPPROTO_TCP ? 20 + ((pkt[32] as number) >>> 4) * 4 : 28;
  const linear = o.linear ?? Math.min(pkt.length, hdr + (o.linearPay ?? pkt.length));
  const skb = allocSkb(cpu, NET_SKB_PAD + 14 + linear, 0);
  assert.notEqual(skb, 0);
  skbReserve(cpu, skb, NET_SKB_PAD + 14);
  const d = cpu.u32[(skb + SKB_DATA) >>> 2]!;
  cpu.u8.set(ETH, d - 14);
  cpu.u8.set(pkt.subarray(0, linear), skbPut(cpu, skb, linear));
  let at = linear;
  let i = 0;
  while (at < pkt.length) {
    const n = Math.min(3000, pkt.length - at);
    const page = allocPage(cpu.mem.pages);
    assert.notEqual(page, 0);
    cpu.u8.set(pkt.subarray(at, at + n), page + 100);
    skbAddRxFrag(cpu, skb, i++, page, 100, n, 4096);
    at += n;
  }
  const head = cpu.u32[(skb + SKB_HEAD) >>> 2]!;
  cpu.u16[(skb + SKB_MAC_HEADER) >>> 1] = d - 14 - head;
  cpu.u16[(skb + SKB_NETWORK_HEADER) >>> 1] = d - head;
  cpu.u16[(skb + SKB_TRANSPORT_HEADER) >>> 1] = d + 20 - head;
  cpu.u16[(skb + SKB_PROTOCOL) >>> 1] = ETH_P_IP;
  cpu.u8[skb + SKB_IP_SUMMED] = CHECKSUM_PARTIAL;
  const sh = skbShinfo(cpu, skb);
  cpu.u16[(sh + SHINFO_GSO_SIZE) >>> 1] = o.gsoSize;
  cpu.u32[(sh + SHINFO_GSO_TYPE) >>> 2] = o.gsoType;
  if (o.atMac) skbPushRaw(cpu, skb, 14);
  return skb;
}

function skbPushRaw(cpu: SkbCpu, skb: number, n: number): void {
  cpu.u32[(skb + SKB_DATA) >>> 2] = cpu.u32[(skb + SKB_DATA) >>> 2]! - n;
  cpu.u32[(skb + SKB_LEN) >>> 2] = cpu.u32[(skb + SKB_LEN) >>> 2]! + n;
}

/** Check the skb-level state every segment must have. */
function checkSegShape(cpu: SkbCpu, s: number, mtu: number): Uint8Array {
  const b = skbToBytes(cpu, s);
  assert.ok(b.length <= mtu, `segment of ${b.length} bytes exceeds MTU ${mtu}`);
  assert.equal(cpu.u8[s + SKB_IP_SUMMED], CHECKSUM_NONE);
  assert.equal(skbIsGso(cpu, s), false);
  const head = cpu.u32[(s + SKB_HEAD) >>> 2]!;
  const d = cpu.u32[(s + SKB_DATA) >>> 2]!;
  assert.equal(head + cpu.u16[(s + SKB_NETWORK_HEADER) >>> 1]!, d);
  assert.equal(head + cpu.u16[(s + SKB_TRANSPORT_HEADER) >>> 1]!, d + 20);
  assert.equal(head + cpu.u16[(s + SKB_MAC_HEADER) >>> 1]!, d - 14);
  assert.deepEqual([...cpu.u8.subarray(d - 14, d)], ETH, "MAC header copied in front");
  assert.ok(checksumsOk(b), "IPv4 and L4 checksums verify");
  return b;
}

// ---- tests ----------------------------------------------------------------------------------

for (const prof of PROFILES) for (const zc of [true, false]) {
  describe(`GRO → GSO round trip [${prof}, ${zc ? "zero-copy" : "copy"}]`, () => {
    test("40 segments merged by GRO, segmented to MTU 1500: byte-identical to the originals", () => {
      gsoSetZeroCopy(zc);
      const cpu = setup(prof);
      const gro = new GroList();
      const segs = flow(40);
      (segs[0] as Seg).flags |= TCP_FLAG_CWR;
      (segs[39] as Seg).flags |= TCP_FLAG_PSH | TCP_FLAG_FIN;
      const pkts = segs.map(tcpPacket);
      for (const p of pkts) napiGroReceive(cpu, gro, rx(cpu, p, { mode: "napi" }), deliver);
      const out = take();
      assert.equal(out.length, 1, "one aggregate, delivered on PSH");
      const agg = out[0] as number;
      assert.equal(cpu.u16[(skbShinfo(cpu, agg) + SHINFO_GSO_SEGS) >>> 1], 40);
      assert.equal(skbNrFrags(cpu, agg), MAX_SKB_FRAGS);
      assert.notEqual(skbFragList(cpu, agg), 0, "40 segments need the frag_list");
      assert.ok(skbGsoValidateNetworkLen(cpu, agg, 1500));
      assert.ok(!skbGsoValidateNetworkLen(cpu, agg, 1499));
      const before = gsoStats.slice();
      const first = skbGsoSegment(cpu, agg, 1500);
      assert.notEqual(first, 0);
      const segsOut = list(cpu, first);
      assert.equal(segsOut.length, 40);
      segsOut.forEach((s, i) => {
        const b = checkSegShape(cpu, s, 1500);
        assert.deepEqual(b, pkts[i], `segment ${i} differs from the original`);
      });
      assert.equal(gsoStats[GSO_STAT_SEGMENTS]! - before[GSO_STAT_SEGMENTS]!, 40);
      if (zc) {
        assert.equal(gsoStats[GSO_STAT_ZEROCOPY]! - before[GSO_STAT_ZEROCOPY]!, 40, "page-fragment payload is referenced");
        for (const s of segsOut) assert.equal(skbNrFrags(cpu, s), 1);
      } else {
        assert.equal(gsoStats[GSO_STAT_COPIED]! - before[GSO_STAT_COPIED]!, 40);
        for (const s of segsOut) assert.equal(skbNrFrags(cpu, s), 0);
      }
      freeUnlinked(cpu, segsOut);
      assertNoLeaks(cpu);
      gsoSetZeroCopy(true);
    });
  });
}

describe("GSO TCP", () => {
  test("flags, seq, ids, lengths: CWR on the first only, FIN/PSH on the last only", () => {
    const cpu = setup();
    const s = mkSeg({ flags: TCP_FLAG_ACK | TCP_FLAG_CWR | TCP_FLAG_ECE | TCP_FLAG_PSH | TCP_FLAG_FIN, payload: bytes(10000) });
    const pkt = tcpPacket(s);
    const skb = txSkb(cpu, pkt, { gsoSize: 1448, gsoType: SKB_GSO_TCPV4, linearPay: 700 });
    const segs = list(cpu, skbGsoSegment(cpu, skb, 1500));
    assert.equal(segs.length, 7);
    let off = 0;
    segs.forEach((x, i) => {
      const b = checkSegShape(cpu, x, 1500);
      const plen = b.length - 52;
      assert.equal(plen, i < 6 ? 1448 : 10000 - 6 * 1448);
      assert.equal(get32(b, 24), (s.seq + off) >>> 0);
      assert.equal(get16(b, 4), (s.id + i) & 0xffff);
      assert.equal(get16(b, 2), b.length);
      const fl = b[33] as number;
      assert.equal((fl & TCP_FLAG_CWR) !== 0, i === 0, "CWR");
      assert.equal((fl & TCP_FLAG_ECE) !== 0, true, "ECE everywhere");
      assert.equal((fl & (TCP_FLAG_PSH | TCP_FLAG_FIN)) !== 0, i === 6, "PSH/FIN");
      assert.deepEqual(b.subarray(52), s.payload.subarray(off, off + plen));
      assert.deepEqual(b.subarray(40, 52), Uint8Array.from(TS_OPTS));
      off += plen;
    });
    freeUnlinked(cpu, segs);
    assertNoLeaks(cpu);
  });

  test("SKB_GSO_TCP_FIXEDID keeps the IP id; gso_size too big for the MTU is cut to fit", () => {
    const cpu = setup();
    const s = mkSeg({ payload: bytes(6000) });
    const skb = txSkb(cpu, tcpPacket(s), { gsoSize: 4000, gsoType: SKB_GSO_TCPV4 | SKB_GSO_TCP_FIXEDID });
    assert.ok(!skbGsoValidateNetworkLen(cpu, skb, 1500));
    const segs = list(cpu, skbGsoSegment(cpu, skb, 1500));
    assert.equal(segs.length, 5, "mss 1448 = 1500 - 20 - 32");
    for (const x of segs) {
      const b = checkSegShape(cpu, x, 1500);
      assert.equal(get16(b, 4), s.id);
    }
    freeUnlinked(cpu, segs);
    assertNoLeaks(cpu);
  });

  test("data at the MAC header (transmit path): segments start at their MAC header", () => {
    const cpu = setup();
    const s = mkSeg({ payload: bytes(3000) });
    const pkt = tcpPacket(s);
    const skb = txSkb(cpu, pkt, { gsoSize: 1000, gsoType: SKB_GSO_TCPV4, atMac: true, linearPay: 0 });
    const segs = list(cpu, skbGsoSegment(cpu, skb, 1500));
    assert.equal(segs.length, 3);
    segs.forEach((x, i) => {
      const b = skbToBytes(cpu, x);
      assert.deepEqual([...b.subarray(0, 14)], ETH);
      const ip = b.subarray(14);
      assert.ok(checksumsOk(ip));
      assert.deepEqual(ip.subarray(52), s.payload.subarray(i * 1000, (i + 1) * 1000));
      const head = cpu.u32[(x + SKB_HEAD) >>> 2]!;
      const d = cpu.u32[(x + SKB_DATA) >>> 2]!;
      assert.equal(head + cpu.u16[(x + SKB_MAC_HEADER) >>> 1]!, d);
      assert.equal(head + cpu.u16[(x + SKB_NETWORK_HEADER) >>> 1]!, d + 14);
    });
    freeUnlinked(cpu, segs);
    assertNoLeaks(cpu);
  });

  test("headers partly in frags are pulled into the linear area first", () => {
    const cpu = setup();
    const s = mkSeg({ payload: bytes(4000) });
    const pkt = tcpPacket(s);
    const skb = txSkb(cpu, pkt, { gsoSize: 1448, gsoType: SKB_GSO_TCPV4, linear: 20 });
    assert.equal(skbToBytes(cpu, skb).length, pkt.length);
    const segs = list(cpu, skbGsoSegment(cpu, skb, 1500));
    assert.equal(segs.length, 3);
    segs.forEach((x, i) => {
      const b = checkSegShape(cpu, x, 1500);
      assert.deepEqual(b.subarray(52), s.payload.subarray(i * 1448, Math.min(4000, (i + 1) * 1448)));
    });
    freeUnlinked(cpu, segs);
    assertNoLeaks(cpu);
  });

  test("zero-copy segments hold their own page references", () => {
    const cpu = setup();
    const pkt = tcpPacket(mkSeg({ payload: bytes(9000) }));
    const skb = txSkb(cpu, pkt, { gsoSize: 1448, gsoType: SKB_GSO_TCPV4, linearPay: 0 });
    const pages = [0, 1, 2].map((i) => skbFragPage(cpu, skb, i));
    assert.deepEqual(pages.map((p) => pageRefCount(cpu.mem.pages, p)), [1, 1, 1]);
    const segs = list(cpu, skbGsoSegment(cpu, skb, 1500));
    // 3000-byte frags cut at 1448: pages are shared by 3, 3 and 2 or 3 segments.
    const refs = pages.map((p) => pageRefCount(cpu.mem.pages, p));
    const uses = pages.map((p) => segs.filter((s) => frags(cpu, s).some((f) => f === p)).length);
    assert.deepEqual(refs, uses, "one reference per segment using the page (the original's are gone)");
    freeUnlinked(cpu, segs);
    assertNoLeaks(cpu);
  });

  test("a segment spanning more than MAX_SKB_FRAGS pieces is copied; the next one is referenced", () => {
    const cpu = setup();
    const s = mkSeg({ payload: bytes(2 * 1448) });
    const pkt = tcpPacket(s);
    // Headers linear, 17 frags of 50 bytes, then a frag_list member with frags of 598 and 1448 bytes.
    const skb = allocSkb(cpu, NET_SKB_PAD + 52, 0);
    skbReserve(cpu, skb, NET_SKB_PAD);
    cpu.u8.set(pkt.subarray(0, 52), skbPut(cpu, skb, 52));
    let at = 52;
    const addFrag = (owner: number, i: number, n: number) => {
      const page = allocPage(cpu.mem.pages);
      assert.notEqual(page, 0);
      cpu.u8.set(pkt.subarray(at, at + n), page + 8);
      skbAddRxFrag(cpu, owner, i, page, 8, n, 4096);
      at += n;
    };
    for (let i = 0; i < MAX_SKB_FRAGS; i++) addFrag(skb, i, 50);
    const member = allocSkb(cpu, 0, 0);
    addFrag(member, 0, 598);
    addFrag(member, 1, 1448);
    cpu.u32[(skbShinfo(cpu, skb) + SHINFO_FRAG_LIST) >>> 2] = member;
    cpu.u32[(skb + SKB_LEN) >>> 2] = cpu.u32[(skb + SKB_LEN) >>> 2]! + 2046;
    cpu.u32[(skb + SKB_DATA_LEN) >>> 2] = cpu.u32[(skb + SKB_DATA_LEN) >>> 2]! + 2046;
    const head = cpu.u32[(skb + SKB_HEAD) >>> 2]!;
    const d = cpu.u32[(skb + SKB_DATA) >>> 2]!;
    cpu.u16[(skb + SKB_NETWORK_HEADER) >>> 1] = d - head;
    cpu.u16[(skb + SKB_PROTOCOL) >>> 1] = ETH_P_IP;
    const sh = skbShinfo(cpu, skb);
    cpu.u16[(sh + SHINFO_GSO_SIZE) >>> 1] = 1448;
    cpu.u32[(sh + SHINFO_GSO_TYPE) >>> 2] = SKB_GSO_TCPV4;
    assert.deepEqual(skbToBytes(cpu, skb), pkt);
    const before = gsoStats.slice();
    const segs = list(cpu, skbGsoSegment(cpu, skb, 1500));
    assert.equal(segs.length, 2);
    assert.equal(skbNrFrags(cpu, segs[0] as number), 0, "18 pieces: copied");
    assert.equal(skbNrFrags(cpu, segs[1] as number), 1, "1 piece: referenced");
    assert.equal(gsoStats[GSO_STAT_COPIED]! - before[GSO_STAT_COPIED]!, 1);
    assert.equal(gsoStats[GSO_STAT_ZEROCOPY]! - before[GSO_STAT_ZEROCOPY]!, 1);
    segs.forEach((x, i) => {
      const b = skbToBytes(cpu, x);
      assert.ok(checksumsOk(b));
      assert.deepEqual(b.subarray(52), s.payload.subarray(i * 1448, (i + 1) * 1448));
    });
    freeUnlinked(cpu, segs);
    assertNoLeaks(cpu);
  });
});

function frags(cpu: SkbCpu, skb: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < skbNrFrags(cpu, skb); i++) out.push(skbFragPage(cpu, skb, i));
  return out;
}

describe("GSO UDP (SKB_GSO_UDP_L4)", () => {
  test("every segment is a complete datagram of gso_size bytes with its own length and checksum", () => {
    const cpu = setup();
    const payload = bytes(5000);
    const pkt = udpPacket(0x01020304, 0x05060708, 77, payload);
    const skb = txSkb(cpu, pkt, { gsoSize: 1200, gsoType: SKB_GSO_UDP_L4, linearPay: 1000 });
    assert.ok(skbGsoValidateNetworkLen(cpu, skb, 1228));
    assert.ok(!skbGsoValidateNetworkLen(cpu, skb, 1227));
    const segs = list(cpu, skbGsoSegment(cpu, skb, 1500));
    assert.equal(segs.length, 5);
    segs.forEach((x, i) => {
      const b = checkSegShape(cpu, x, 1500);
      const n = i < 4 ? 1200 : 200;
      assert.deepEqual(b, udpPacket(0x01020304, 0x05060708, 77 + i, payload.subarray(i * 1200, i * 1200 + n)));
    });
    freeUnlinked(cpu, segs);
    assertNoLeaks(cpu);
  });

  test("a datagram larger than the MTU fails (GSO_FAIL_MTU); the skb stays the caller's", () => {
    const cpu = setup();
    const pkt = udpPacket(1, 2, 3, bytes(4000));
    const skb = txSkb(cpu, pkt, { gsoSize: 1600, gsoType: SKB_GSO_UDP_L4 });
    const f = gsoStats[GSO_FAIL_MTU]!;
    assert.equal(skbGsoSegment(cpu, skb, 1500), 0);
    assert.equal(gsoStats[GSO_FAIL_MTU]! - f, 1);
    assert.deepEqual(skbToBytes(cpu, skb), pkt);
    const segs = list(cpu, skbGsoSegment(cpu, skb, 0));
    assert.equal(segs.length, 3, "no MTU: 1600, 1600, 800");
    freeUnlinked(cpu, segs);
    assertNoLeaks(cpu);
  });
});

describe("GSO failures leave the skb to the caller", () => {
  test("not GSO, unsupported type, not IPv4, malformed headers", () => {
    const cpu = setup();
    const pkt = tcpPacket(mkSeg({ payload: bytes(3000) }));
    const cases: [number, (skb: number) => void][] = [
      [GSO_FAIL_NOT_GSO, (skb) => (cpu.u16[(skbShinfo(cpu, skb) + SHINFO_GSO_SIZE) >>> 1] = 0)],
      [GSO_FAIL_UNSUPPORTED, (skb) => (cpu.u32[(skbShinfo(cpu, skb) + SHINFO_GSO_TYPE) >>> 2] = SKB_GSO_TCPV6)],
      [GSO_FAIL_UNSUPPORTED, (skb) => (cpu.u32[(skbShinfo(cpu, skb) + SHINFO_GSO_TYPE) >>> 2] = SKB_GSO_UDP_L4)],
      [GSO_FAIL_UNSUPPORTED, (skb) => (cpu.u16[(skb + SKB_PROTOCOL) >>> 1] = 0x86dd)],
      [GSO_FAIL_MALFORMED, (skb) => (cpu.u8[cpu.u32[(skb + SKB_DATA) >>> 2]!] = 0x65)],
      [GSO_FAIL_MALFORMED, (skb) => (cpu.u8[cpu.u32[(skb + SKB_DATA) >>> 2]! + 32] = 0x30)],
    ];
    for (const [reason, spoil] of cases) {
      const skb = txSkb(cpu, pkt, { gsoSize: 1000, gsoType: SKB_GSO_TCPV4 });
      spoil(skb);
      const before = gsoStats[reason]!;
      const bytesBefore = skbToBytes(cpu, skb);
      assert.equal(skbGsoSegment(cpu, skb, 1500), 0);
      assert.equal(gsoStats[reason]! - before, 1);
      assert.deepEqual(skbToBytes(cpu, skb), bytesBefore);
      kfreeSkb(cpu, skb);
    }
    // Headers only, no payload.
    const hdrOnly = txSkb(cpu, tcpPacket(mkSeg({ payload: new Uint8Array(0) })), { gsoSize: 1000, gsoType: SKB_GSO_TCPV4 });
    assert.equal(skbGsoSegment(cpu, hdrOnly, 1500), 0);
    kfreeSkb(cpu, hdrOnly);
    assertNoLeaks(cpu);
  });

  for (const zc of [true, false]) {
    test(`out of memory half-way (${zc ? "zero-copy" : "copy"}): 0, built segments released, no drops counted`, () => {
      gsoSetZeroCopy(zc);
      const cpu = setup();
      const pkt = tcpPacket(mkSeg({ payload: bytes(14480) }));
      const skb = txSkb(cpu, pkt, { gsoSize: 1448, gsoType: SKB_GSO_TCPV4, linearPay: 0 });
      const pagesBefore = kmemCacheInfo(cpu.mem.pages.cache).activeObjs;
      napiSkbCacheDrain(cpu);
      // Leave 3 sk_buff shells in the slab.
      const hoard: number[] = [];
      const hc = cpu.headCache;
      while (kmemCacheInfo(hc).numObjs - kmemCacheInfo(hc).activeObjs > 3) hoard.push(kmemCacheAlloc(hc));
      const active = kmemCacheInfo(hc).activeObjs;
      const drops = cpu.drops.reduce((a, b) => a + b, 0);
      const nomem = gsoStats[GSO_FAIL_NOMEM]!;
      assert.equal(skbGsoSegment(cpu, skb, 1500), 0);
      assert.equal(gsoStats[GSO_FAIL_NOMEM]! - nomem, 1);
      assert.equal(kmemCacheInfo(hc).activeObjs, active, "the 3 segments built were released");
      assert.equal(cpu.drops.reduce((a, b) => a + b, 0), drops, "no drop accounting for the undo");
      assert.equal(kmemCacheInfo(cpu.mem.pages.cache).activeObjs, pagesBefore);
      assert.deepEqual(skbToBytes(cpu, skb), pkt, "the original is intact");
      for (const h of hoard) kmemCacheFree(hc, h);
      const segs = list(cpu, skbGsoSegment(cpu, skb, 1500));
      assert.equal(segs.length, 10);
      freeUnlinked(cpu, segs);
      assertNoLeaks(cpu);
      gsoSetZeroCopy(true);
    });
  }
});

describe("GSO helpers", () => {
  test("skbIsGso, skbGsoValidateNetworkLen (non-GSO: the network length), skbChecksumHelp", () => {
    const cpu = setup();
    const pkt = tcpPacket(mkSeg({ payload: bytes(600) }));
    const skb = rx(cpu, pkt, { mode: "kmalloc" });
    assert.equal(skbIsGso(cpu, skb), false);
    assert.ok(skbGsoValidateNetworkLen(cpu, skb, pkt.length));
    assert.ok(!skbGsoValidateNetworkLen(cpu, skb, pkt.length - 1));
    assert.equal(skbChecksumHelp(cpu, skb), 0, "not CHECKSUM_PARTIAL: nothing to do");
    // Turn it into a PARTIAL skb with the pseudo-header sum in the field.
    const d = cpu.u32[(skb + SKB_DATA) >>> 2]!;
    const head = cpu.u32[(skb + SKB_HEAD) >>> 2]!;
    const l4 = pkt.length - 20;
    const pseudo = ~csumTcpudpMagic(get32(pkt, 12), get32(pkt, 16), l4, IPPROTO_TCP, 0) & 0xffff;
    cpu.u8[d + 36] = pseudo >>> 8;
    cpu.u8[d + 37] = pseudo & 255;
    cpu.u8[skb + SKB_IP_SUMMED] = CHECKSUM_PARTIAL;
    cpu.u16[(skb + SKB_CSUM_START) >>> 1] = d + 20 - head;
    cpu.u16[(skb + SKB_CSUM_OFFSET) >>> 1] = 16;
    assert.equal(skbChecksumHelp(cpu, skb), 0);
    assert.deepEqual(skbToBytes(cpu, skb), pkt);
    assert.equal(cpu.u8[skb + SKB_IP_SUMMED], CHECKSUM_NONE);
    kfreeSkb(cpu, skb);
    assert.equal(typeof gsoStatsSnapshot().segments, "number");
    assertNoLeaks(cpu);
  });
});

// ---- property: GRO then GSO reproduces every packet --------------------------------------------

interface FlowSpec {
  mss: number;
  n: number;
  df: boolean;
  fixedId: boolean;
  vlan: number;
  dev: number;
  ts: boolean;
  sport: number;
  /** Every segment full-sized with no flags (long aggregates: 64 KiB and frag caps). */
  clean: boolean;
}
interface SegSpec {
  size: "mss" | "short" | "zero" | "big";
  flag: number;
  mode: Mode;
  corrupt: boolean;
  shortLen: number;
  bigBy: number;
}

const w = <T>(weight: number, arbitrary: fc.Arbitrary<T>) => ({ weight, arbitrary });
const flowArb: fc.Arbitrary<FlowSpec> = fc.record({
  mss: fc.oneof(w(1, fc.integer({ min: 1, max: 1438 })), w(1, fc.integer({ min: 1300, max: 1438 }))),
  n: fc.integer({ min: 1, max: 60 }),
  df: fc.boolean(),
  fixedId: fc.oneof(w(4, fc.constant(false)), w(1, fc.constant(true))),
  vlan: fc.integer({ min: -1, max: 3 }),
  dev: fc.integer({ min: 1, max: 2 }),
  ts: fc.boolean(),
  sport: fc.integer({ min: 1, max: 3 }),
  clean: fc.oneof(w(3, fc.constant(false)), w(1, fc.constant(true))),
});
const segArb: fc.Arbitrary<SegSpec> = fc.record({
  size: fc.oneof(
    w(30, fc.constant<SegSpec["size"]>("mss")),
    w(1, fc.constant<SegSpec["size"]>("short")),
    w(1, fc.constant<SegSpec["size"]>("zero")),
    w(1, fc.constant<SegSpec["size"]>("big")),
  ),
  flag: fc.oneof(
    w(60, fc.constant(0)),
    w(7, fc.constantFrom(TCP_FLAG_PSH, TCP_FLAG_FIN, TCP_FLAG_CWR, TCP_FLAG_SYN, TCP_FLAG_RST, TCP_FLAG_URG, TCP_FLAG_ECE)),
  ),
  mode: fc.constantFrom<Mode>("frag", "frag", "napi", "kmalloc", "frags"),
  corrupt: fc.oneof(w(40, fc.constant(false)), w(1, fc.constant(true))),
  shortLen: fc.integer({ min: 0, max: 1437 }),
  bigBy: fc.integer({ min: 1, max: 10 }),
});

interface Input {
  dev: number;
  vlan: number;
  pkt: Uint8Array;
  mode: Mode;
}

function buildStream(flows: FlowSpec[], specs: SegSpec[], order: number[], swaps: [number, number][], udp: number[]): Input[] {
  const queues: Input[][] = flows.map((f, fi) => {
    const q: Input[] = [];
    let seq = 1000 * fi;
    for (let j = 0; j < f.n; j++) {
      const spec = specs[(fi * 50 + j) % specs.length] as SegSpec;
      const sp: SegSpec = f.clean ? { ...spec, size: "mss", flag: 0, corrupt: false, mode: "frag" } : spec;
      const len = sp.size === "mss" ? f.mss : sp.size === "short" ? Math.min(sp.shortLen, f.mss - 1) : sp.size === "zero" ? 0 : f.mss + sp.bigBy;
      const seg: Seg = {
        ...mkSeg(),
        sport: 1000 + f.sport,
        seq,
        flags: TCP_FLAG_ACK | sp.flag,
        urg: sp.flag === TCP_FLAG_URG ? 1 : 0,
        id: f.fixedId ? 7 : (fi * 1000 + j) & 0xffff,
        df: f.df,
        opts: f.ts ? TS_OPTS : [],
        payload: bytes(len),
      };
      const pkt = tcpPacket(seg);
      if (sp.corrupt) pkt[pkt.length - 1] = (pkt[pkt.length - 1] as number) ^ 0x5a;
      q.push({ dev: f.dev, vlan: f.vlan, pkt, mode: sp.mode });
      seq = (seq + len) >>> 0;
    }
    return q;
  });
  const stream: Input[] = [];
  for (const o of order) {
    const live = queues.filter((q) => q.length > 0);
    if (live.length === 0) break;
    stream.push((live[o % live.length] as Input[]).shift() as Input);
  }
  for (const q of queues) stream.push(...q);
  for (const [a, b] of swaps) {
    if (stream.length < 2) break;
    const i = a % stream.length;
    const j = b % stream.length;
    const t = stream[i] as Input;
    stream[i] = stream[j] as Input;
    stream[j] = t;
  }
  udp.forEach((n, k) => {
    const at = (k * 37) % (stream.length + 1);
    stream.splice(at, 0, { dev: 1, vlan: -1, pkt: udpPacket(9, 10, k, bytes(n)), mode: "frag" });
  });
  return stream;
}

function key(dev: number, vlan: number, b: Uint8Array): string {
  return `${dev}/${vlan}/${Buffer.from(b).toString("hex")}`;
}

describe("GRO → GSO property", () => {
  test("random multi-flow streams come out as exactly the packets that went in, and nothing leaks", () => {
    fc.assert(
      fc.property(
        fc.array(flowArb, { minLength: 1, maxLength: 3 }),
        fc.array(segArb, { minLength: 150, maxLength: 150 }),
        fc.array(fc.nat(), { maxLength: 150 }),
        fc.array(fc.tuple(fc.nat(), fc.nat()), { maxLength: 6 }),
        fc.array(fc.integer({ min: 0, max: 300 }), { maxLength: 3 }),
        fc.record({
          profile: fc.constantFrom<Profile>("5.12", "6.19"),
          debug: fc.boolean(),
          zeroCopy: fc.boolean(),
          maxHeld: fc.oneof(w(2, fc.constant(8)), w(1, fc.integer({ min: 1, max: 8 }))),
          chain: fc.boolean(),
          flushEvery: fc.oneof(w(2, fc.constant(0)), w(1, fc.integer({ min: 1, max: 40 }))),
        }),
        (flows, specs, order, swaps, udp, cfg) => {
          gsoSetZeroCopy(cfg.zeroCopy);
          const cpu = setup(cfg.profile, cfg.debug);
          const gro = new GroList({ maxHeld: cfg.maxHeld, chainOnFragsFull: cfg.chain });
          const stream = buildStream(flows, specs, order, swaps, udp);
          stream.forEach((inp, k) => {
            napiGroReceive(cpu, gro, rx(cpu, inp.pkt, { mode: inp.mode, dev: inp.dev, vlan: inp.vlan }), deliver);
            if (cfg.flushEvery !== 0 && k % cfg.flushEvery === cfg.flushEvery - 1) groFlush(cpu, gro, true, deliver);
          });
          groFlush(cpu, gro, true, deliver);
          const st = gro.stats;
          assert.equal(st[GRO_STAT_RECEIVED], stream.length);
          assert.equal(st[GRO_STAT_RECEIVED], st[GRO_STAT_MERGED]! + st[GRO_STAT_HELD]! + st[GRO_STAT_NORMAL]!);
          assert.equal(st[GRO_STAT_FLUSHED], st[GRO_STAT_HELD]);
          const got: string[] = [];
          const all: number[] = [];
          for (const skb of take()) {
            const dev = cpu.u32[(skb + SKB_DEV) >>> 2]!;
            const vlan = cpu.u16[(skb + SKB_VLAN_PROTO) >>> 1] === 0 ? -1 : cpu.u16[(skb + SKB_VLAN_TCI) >>> 1]!;
            if (skbIsGso(cpu, skb)) {
              const segs = list(cpu, skbGsoSegment(cpu, skb, 1500));
              assert.ok(segs.length >= 2);
              for (const s of segs) {
                const b = checkSegShape(cpu, s, 1500);
                got.push(key(dev, vlan, b));
                all.push(s);
              }
            } else {
              got.push(key(dev, vlan, skbToBytes(cpu, skb)));
              all.push(skb);
            }
          }
          const want = stream.map((i) => key(i.dev, i.vlan, i.pkt));
          assert.deepEqual(got.sort(), want.sort());
          freeUnlinked(cpu, all);
          assertNoLeaks(cpu);
          gsoSetZeroCopy(true);
        },
      ),
      { numRuns: 100 },
    );
  });

  test("the GRO held skb of a lone flow is never GSO and passes GSO untouched", () => {
    const cpu = setup();
    const gro = new GroList();
    const skb = rx(cpu, tcpPacket(mkSeg()));
    assert.equal(napiGroReceive(cpu, gro, skb, deliver), GRO_HELD);
    groFlush(cpu, gro, true, deliver);
    assert.deepEqual(take(), [skb]);
    assert.equal(skbGsoSegment(cpu, skb, 1500), 0);
    kfreeSkb(cpu, skb);
    assertNoLeaks(cpu);
  });
});

describe("netGsoOk (net_gso_ok)", () => {
  test("TCPV4 needs NETIF_F_TSO, ECN needs TSO_ECN, UDP_L4 needs GSO_UDP_L4, DODGY needs nothing", () => {
    assert.equal(netGsoOk(0, SKB_GSO_TCPV4), false);
    assert.equal(netGsoOk(NETIF_F_TSO, SKB_GSO_TCPV4), true);
    assert.equal(netGsoOk(NETIF_F_TSO, SKB_GSO_TCPV4 | SKB_GSO_DODGY), true);
    assert.equal(netGsoOk(NETIF_F_TSO, SKB_GSO_TCPV4 | SKB_GSO_TCP_ECN), false);
    assert.equal(netGsoOk(NETIF_F_TSO | NETIF_F_TSO_ECN, SKB_GSO_TCPV4 | SKB_GSO_TCP_ECN), true);
    assert.equal(netGsoOk(NETIF_F_TSO, SKB_GSO_UDP_L4), false);
    assert.equal(netGsoOk(NETIF_F_GSO_UDP_L4, SKB_GSO_UDP_L4 | SKB_GSO_DODGY), true);
    assert.equal(netGsoOk(NETIF_F_TSO | NETIF_F_GSO_UDP_L4 | NETIF_F_TSO_ECN | NETIF_F_HW_CSUM | NETIF_F_SG, SKB_GSO_TCPV6), false, "no TSO6 feature exists here");
  });
});
