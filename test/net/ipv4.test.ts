/**
 * IPv4: ipRcvCore acceptance and every rejection (reason + counters),
 * ipDecreaseTtl against the kernel's arithmetic and csumReplace2,
 * ipBuildHeader bytes, ipFragment (exact offsets, DF, options, properties),
 * and a fuzz pass of random / mutated datagrams.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { skbDataPtr, skbLen, skbNetworkHeader, skbProtocol, skbTransportHeader } from "../../src/skb/access.js";
import { skbClone } from "../../src/skb/clone.js";
import { SKB_DROP_REASON } from "../../src/skb/drop-reason.js";
import { consumeSkb, kfreeSkbListReason, kfreeSkbReason } from "../../src/skb/free.js";
import {
  CHECKSUM_COMPLETE,
  CHECKSUM_PARTIAL,
  PACKET_OTHERHOST,
  SKB_CSUM,
  SKB_CSUM_OFFSET,
  SKB_CSUM_START,
  SKB_IIF,
  SKB_IP_SUMMED,
  SKB_NEXT,
  SKB_PKT_TYPE,
  SKB_PROTOCOL,
} from "../../src/skb/layout.js";
import { csumFold, csumPartial, csumReplace2, ipFastCsum } from "../../src/net/checksum.js";
import {
  IPCB_FRAG_MAX_SIZE,
  IPCB_IIF,
  IPSTATS_MIB_CSUMERRORS,
  IPSTATS_MIB_FRAGCREATES,
  IPSTATS_MIB_FRAGFAILS,
  IPSTATS_MIB_FRAGOKS,
  IPSTATS_MIB_INHDRERRORS,
  IPSTATS_MIB_INOCTETS,
  IPSTATS_MIB_INPKTS,
  IPSTATS_MIB_INTRUNCATEDPKTS,
  ipBuildHeader,
  ipDaddr,
  ipDecreaseTtl,
  ipFragment,
  ipFragOff,
  ipHdrLen,
  ipId,
  ipIsFragment,
  ipOptionsFragment,
  ipProtocol,
  ipRcvCore,
  ipSaddr,
  ipSelectIdent,
  ipStatsCreate,
  ipStatsSnapshot,
  ipTotLen,
  ipTtl,
  ipv4IsLbcast,
  ipv4IsLoopback,
  ipv4IsMulticast,
  ipv4IsZeronet,
  ipVersion,
} from "../../src/net/ipv4.js";
import { ETH_P_IP, IP_DF, IP_MF } from "../../src/net/proto.js";
import {
  assertNoLeaks,
  ip,
  ipv4Packet,
  lcgBytes,
  readPacket,
  refCsum,
  setup,
  skbFromBytes,
  totalFreed,
} from "./net-helpers.js";

/** The textbook header (checksum 0xb861) with 95 payload bytes. */
const KNOWN_HDR = [0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7];

describe("ipRcvCore", () => {
  test("accepts the textbook datagram, trims link padding, sets headers and IPCB", () => {
    const cpu = setup();
    const st = ipStatsCreate();
    assert.equal(refCsum(KNOWN_HDR), 0, "the reference header is valid");
    const pkt = [...KNOWN_HDR, ...lcgBytes(95, 1)];
    const skb = skbFromBytes(cpu, [...pkt, 0, 0, 0, 0, 0]); // 5 bytes of padding
    cpu.u32[(skb + SKB_IIF) >>> 2] = 7;
    cpu.u32[(skb + IPCB_IIF + 4) >>> 2] = 0xdeadbeef; // debris in cb
    const d = skbDataPtr(cpu, skb);
    assert.equal(ipRcvCore(cpu, skb, st), 0);
    assert.equal(skbLen(cpu, skb), 115);
    assert.equal(skbNetworkHeader(cpu, skb), d);
    assert.equal(skbTransportHeader(cpu, skb), d + 20);
    assert.equal(cpu.u32[(skb + IPCB_IIF) >>> 2], 7);
    assert.equal(cpu.u32[(skb + IPCB_IIF + 4) >>> 2], 0);
    assert.deepEqual(readPacket(cpu, skb), pkt);
    const u8 = cpu.u8;
    assert.equal(ipVersion(u8, d), 4);
    assert.equal(ipHdrLen(u8, d), 20);
    assert.equal(ipTotLen(u8, d), 115);
    assert.equal(ipId(u8, d), 0);
    assert.equal(ipFragOff(u8, d), IP_DF);
    assert.ok(!ipIsFragment(u8, d));
    assert.equal(ipTtl(u8, d), 64);
    assert.equal(ipProtocol(u8, d), 17);
    assert.equal(ipSaddr(u8, d), ip("192.168.0.1"));
    assert.equal(ipDaddr(u8, d), ip("192.168.0.199"));
    assert.equal(st[IPSTATS_MIB_INPKTS], 1);
    assert.equal(st[IPSTATS_MIB_INOCTETS], 120);
    consumeSkb(cpu, skb);
    assert.equal(ipStatsSnapshot(st).InReceives, 1);
    assertNoLeaks(cpu);
  });

  const bad: [string, () => number[], number, number | null][] = [
    ["19 bytes", () => KNOWN_HDR.slice(0, 19), SKB_DROP_REASON.IP_INHDR, IPSTATS_MIB_INHDRERRORS],
    ["version 6", () => ipv4Hdr({ ver: 6 }), SKB_DROP_REASON.IP_INHDR, IPSTATS_MIB_INHDRERRORS],
    ["ihl 4", () => ipv4Hdr({ ihl: 4 }), SKB_DROP_REASON.IP_INHDR, IPSTATS_MIB_INHDRERRORS],
    ["ihl 15 but 40 bytes", () => ipv4Hdr({ ihl: 15, len: 40 }), SKB_DROP_REASON.IP_INHDR, IPSTATS_MIB_INHDRERRORS],
    ["bad checksum", () => ipv4Hdr({ check: 0x1234 }), SKB_DROP_REASON.IP_CSUM, IPSTATS_MIB_CSUMERRORS],
    ["tot_len beyond the data", () => ipv4Hdr({ totLen: 101, len: 100 }), SKB_DROP_REASON.PKT_TOO_SMALL, IPSTATS_MIB_INTRUNCATEDPKTS],
    ["tot_len below ihl*4", () => ipv4Hdr({ totLen: 19 }), SKB_DROP_REASON.IP_INHDR, IPSTATS_MIB_INHDRERRORS],
    ["tot_len below ihl*4 with options", () => ipv4Hdr({ ihl: 6, totLen: 22 }), SKB_DROP_REASON.IP_INHDR, IPSTATS_MIB_INHDRERRORS],
  ];
  for (const [name, mk, reason, stat] of bad) {
    test(`rejects: ${name}`, () => {
      const cpu = setup();
      const st = ipStatsCreate();
      const skb = skbFromBytes(cpu, mk());
      assert.equal(ipRcvCore(cpu, skb, st), reason);
      if (stat !== null) assert.equal(st[stat], 1);
      if (reason === SKB_DROP_REASON.IP_CSUM) assert.equal(st[IPSTATS_MIB_INHDRERRORS], 1);
      assert.equal(st[IPSTATS_MIB_INPKTS], 1);
      kfreeSkbReason(cpu, skb, reason);
      assert.equal(cpu.drops[reason], 1);
      assertNoLeaks(cpu);
    });
  }

  test("PACKET_OTHERHOST is dropped before counting", () => {
    const cpu = setup();
    const st = ipStatsCreate();
    const skb = skbFromBytes(cpu, [...KNOWN_HDR, ...lcgBytes(95)]);
    cpu.u8[skb + SKB_PKT_TYPE] = PACKET_OTHERHOST;
    assert.equal(ipRcvCore(cpu, skb, st), SKB_DROP_REASON.OTHERHOST);
    assert.equal(st[IPSTATS_MIB_INPKTS], 0);
    kfreeSkbReason(cpu, skb, SKB_DROP_REASON.OTHERHOST);
    assertNoLeaks(cpu);
  });

  test("a header with options spread over page frags is pulled linear; padding in frags trimmed", () => {
    const cpu = setup();
    const st = ipStatsCreate();
    const pkt = ipv4Packet({ src: ip("10.0.0.1"), dst: ip("10.0.0.2"), proto: 6, options: [0x94, 4, 0, 0, 1, 1, 1, 0] }, lcgBytes(500, 2));
    const skb = skbFromBytes(cpu, [...pkt, ...lcgBytes(33, 3)], { linear: 10, fragSize: 9 });
    assert.equal(ipRcvCore(cpu, skb, st), 0);
    assert.equal(skbTransportHeader(cpu, skb) - skbNetworkHeader(cpu, skb), 28);
    assert.deepEqual(readPacket(cpu, skb), pkt);
    consumeSkb(cpu, skb);
    assertNoLeaks(cpu);
  });

  test("CHECKSUM_COMPLETE survives the padding trim", () => {
    const cpu = setup();
    const pkt = ipv4Packet({ src: 1, dst: 2, proto: 17 }, lcgBytes(41, 4));
    const all = [...pkt, 9, 9, 9];
    const skb = skbFromBytes(cpu, all);
    cpu.u8[skb + SKB_IP_SUMMED] = CHECKSUM_COMPLETE;
    cpu.u32[(skb + SKB_CSUM) >>> 2] = csumPartial(new Uint8Array(all), 0, all.length, 0);
    assert.equal(ipRcvCore(cpu, skb, ipStatsCreate()), 0);
    assert.equal(csumFold(cpu.u32[(skb + SKB_CSUM) >>> 2] as number), csumFold(csumPartial(new Uint8Array(pkt), 0, pkt.length, 0)));
    consumeSkb(cpu, skb);
    assertNoLeaks(cpu);
  });
});

/** A 20+ byte header for the rejection cases. */
function ipv4Hdr(o: { ver?: number; ihl?: number; totLen?: number; len?: number; check?: number }): number[] {
  const ihl = o.ihl ?? 5;
  const len = o.len ?? Math.max(ihl * 4, 20) + 8;
  const b = lcgBytes(len, 5);
  b[0] = ((o.ver ?? 4) << 4) | ihl;
  b[2] = (o.totLen ?? len) >> 8;
  b[3] = (o.totLen ?? len) & 255;
  b[6] = 0;
  b[7] = 0;
  b[10] = 0;
  b[11] = 0;
  const c = o.check ?? refCsum(b, 0, Math.max(ihl, 5) * 4);
  b[10] = c >> 8;
  b[11] = c & 255;
  return b;
}

describe("ipDecreaseTtl", () => {
  test("textbook header: TTL 64 → 63, check 0xb861 → 0xb961, still valid", () => {
    const u8 = new Uint8Array(KNOWN_HDR);
    assert.equal(ipDecreaseTtl(u8, 0), 63);
    assert.equal(u8[8], 63);
    assert.equal((u8[10] as number) * 256 + (u8[11] as number), 0xb961);
    assert.equal(ipFastCsum(u8, 0, 5), 0);
  });

  test("TTL 1 → 0 (the forward path's expiry), and the kernel's end-around carry at check 0xfeff", () => {
    const u8 = new Uint8Array(20);
    u8[8] = 1;
    u8[10] = 0xfe;
    u8[11] = 0xff;
    assert.equal(ipDecreaseTtl(u8, 0), 0);
    assert.equal((u8[10] as number) * 256 + (u8[11] as number), 0x0000);
    u8[8] = 0;
    assert.equal(ipDecreaseTtl(u8, 0), 255, "u8 wrap as in the kernel");
  });

  test("property: same bytes as csumReplace2 of the ttl|protocol word; the header stays valid", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 20, maxLength: 20 }), fc.integer({ min: 1, max: 255 }), (h, ttl) => {
        const a = new Uint8Array(h);
        a[0] = 0x45;
        a[8] = ttl;
        a[10] = 0;
        a[11] = 0;
        const c = ipFastCsum(a, 0, 5);
        a[10] = c >> 8;
        a[11] = c & 255;
        const b = new Uint8Array(a);
        assert.equal(ipDecreaseTtl(a, 0), ttl - 1);
        const proto = b[9] as number;
        b[8] = ttl - 1;
        csumReplace2(b, 10, (ttl << 8) | proto, ((ttl - 1) << 8) | proto);
        assert.deepEqual([...a], [...b]);
        assert.equal(ipFastCsum(a, 0, 5), 0);
      }),
      { numRuns: 2000 },
    );
  });
});

describe("header building and address classes", () => {
  test("ipBuildHeader writes the exact 20 bytes", () => {
    const u8 = new Uint8Array(24);
    ipBuildHeader(u8, 2, 0xc0, 56, 0xbeef, IP_DF, 64, 1, ip("10.1.2.3"), ip("192.0.2.9"));
    const want = [0x45, 0xc0, 0, 56, 0xbe, 0xef, 0x40, 0, 64, 1, 0, 0, 10, 1, 2, 3, 192, 0, 2, 9];
    const c = refCsum(want);
    want[10] = c >> 8;
    want[11] = c & 255;
    assert.deepEqual([...u8.subarray(2, 22)], want);
    const a = ipSelectIdent();
    assert.equal(ipSelectIdent(), (a + 1) & 0xffff);
  });

  test("address classes", () => {
    assert.ok(ipv4IsMulticast(ip("224.0.0.1")) && ipv4IsMulticast(ip("239.255.255.255")) && !ipv4IsMulticast(ip("240.0.0.0")));
    assert.ok(ipv4IsLbcast(ip("255.255.255.255")) && ipv4IsLbcast(-1) && !ipv4IsLbcast(ip("255.255.255.254")));
    assert.ok(ipv4IsZeronet(ip("0.1.2.3")) && !ipv4IsZeronet(ip("1.0.0.0")));
    assert.ok(ipv4IsLoopback(ip("127.0.0.53")) && !ipv4IsLoopback(ip("128.0.0.1")));
  });
});

/** An skb holding a datagram that passed ipRcvCore (network / transport headers set). */
function rxIp(cpu: ReturnType<typeof setup>, bytes: number[], shape: Parameters<typeof skbFromBytes>[2] = {}): number {
  const skb = skbFromBytes(cpu, bytes, shape);
  assert.equal(ipRcvCore(cpu, skb, ipStatsCreate()), 0);
  return skb;
}

/** Reassemble a fragment list by hand (independent of ip-frag.ts). */
function collect(cpu: ReturnType<typeof setup>, first: number): { skbs: number[]; pkts: number[][] } {
  const skbs: number[] = [];
  const pkts: number[][] = [];
  for (let s = first; s !== 0; s = cpu.u32[(s + SKB_NEXT) >>> 2] as number) {
    skbs.push(s);
    pkts.push(readPacket(cpu, s));
  }
  return { skbs, pkts };
}

describe("ipFragment", () => {
  test("4020-byte datagram, MTU 1500: 1480 + 1480 + 1040 at offsets 0, 185, 370", () => {
    const cpu = setup();
    const st = ipStatsCreate();
    const payload = lcgBytes(4000, 6);
    const pkt = ipv4Packet({ src: ip("10.0.0.1"), dst: ip("10.0.1.1"), proto: 17, id: 0x4242, ttl: 63, tos: 0x10 }, payload);
    const skb = skbFromBytes(cpu, pkt, { linear: 1000, fragSize: 1500 });
    assert.equal(ipRcvCore(cpu, skb, st), 0);
    cpu.u16[(skb + SKB_PROTOCOL) >>> 1] = ETH_P_IP;
    const first = ipFragment(cpu, skb, 1500, st);
    assert.ok(first > 0);
    const { skbs, pkts } = collect(cpu, first);
    assert.deepEqual(
      pkts.map((p) => p.length),
      [1500, 1500, 1060],
    );
    const want = [
      [0, IP_MF | 0],
      [1480, IP_MF | 185],
      [2960, 370],
    ];
    pkts.forEach((p, i) => {
      const [off, fo] = want[i] as [number, number];
      assert.equal(refCsum(p, 0, 20), 0, "header checksum");
      assert.equal(p[6]! * 256 + p[7]!, fo);
      assert.equal(p[2]! * 256 + p[3]!, p.length);
      assert.deepEqual(p.slice(0, 2), pkt.slice(0, 2));
      assert.deepEqual(p.slice(4, 6), [0x42, 0x42]);
      assert.deepEqual(p.slice(8, 10), pkt.slice(8, 10));
      assert.deepEqual(p.slice(12, 20), pkt.slice(12, 20));
      assert.deepEqual(p.slice(20), payload.slice(off, off + p.length - 20));
      const s = skbs[i] as number;
      assert.equal(skbNetworkHeader(cpu, s), skbDataPtr(cpu, s));
      assert.equal(skbTransportHeader(cpu, s), skbDataPtr(cpu, s) + 20);
      assert.equal(skbProtocol(cpu, s), ETH_P_IP);
      assert.ok(skbDataPtr(cpu, s) - cpu.u32[(s + 152) >>> 2]! >= 32, "link-layer headroom");
    });
    assert.equal(st[IPSTATS_MIB_FRAGCREATES], 3);
    assert.equal(st[IPSTATS_MIB_FRAGOKS], 1);
    assert.equal(cpu.drops[SKB_DROP_REASON.CONSUMED], 1, "the original is consumed");
    kfreeSkbListReason(cpu, first, SKB_DROP_REASON.CONSUMED);
    assertNoLeaks(cpu);
  });

  test("fits: the skb itself comes back; DF: -PKT_TOO_BIG and the skb stays the caller's", () => {
    const cpu = setup();
    const st = ipStatsCreate();
    const small = rxIp(cpu, ipv4Packet({ src: 1, dst: 2, proto: 17 }, lcgBytes(1480)));
    assert.equal(ipFragment(cpu, small, 1500, st), small);
    const df = rxIp(cpu, ipv4Packet({ src: 1, dst: 2, proto: 17, fragOff: IP_DF }, lcgBytes(1481)));
    assert.equal(ipFragment(cpu, df, 1500, st), -SKB_DROP_REASON.PKT_TOO_BIG);
    assert.equal(st[IPSTATS_MIB_FRAGFAILS], 1);
    const tiny = rxIp(cpu, ipv4Packet({ src: 1, dst: 2, proto: 17 }, lcgBytes(100)));
    assert.equal(ipFragment(cpu, tiny, 27, st), -SKB_DROP_REASON.MTU_EXCEEDED);
    for (const s of [small, df, tiny]) consumeSkb(cpu, s);
    assertNoLeaks(cpu);
  });

  test("refragmenting a middle fragment keeps MF on every piece; offsets continue", () => {
    const cpu = setup();
    const payload = lcgBytes(1000, 7);
    const pkt = ipv4Packet({ src: 1, dst: 2, proto: 17, fragOff: IP_MF | 100 }, payload);
    const skb = rxIp(cpu, pkt);
    const first = ipFragment(cpu, skb, 420, ipStatsCreate());
    const { pkts } = collect(cpu, first);
    assert.deepEqual(
      pkts.map((p) => p[6]! * 256 + p[7]!),
      [IP_MF | 100, IP_MF | 150, IP_MF | 200],
    );
    assert.deepEqual(pkts.flatMap((p) => p.slice(20)), payload);
    kfreeSkbListReason(cpu, first, SKB_DROP_REASON.CONSUMED);
    assertNoLeaks(cpu);
  });

  test("options: copied ones in every fragment, the others NOP-ed after the first", () => {
    const cpu = setup();
    // Record route (7, not copied), then router alert (0x94, copied), then END.
    const opts = [7, 7, 4, 0, 0, 0, 0, 0x94, 4, 0, 0, 0];
    const payload = lcgBytes(200, 8);
    const pkt = ipv4Packet({ src: 1, dst: 2, proto: 17, options: opts }, payload);
    const skb = rxIp(cpu, pkt);
    const first = ipFragment(cpu, skb, 32 + 96, ipStatsCreate());
    const { pkts } = collect(cpu, first);
    assert.equal(pkts.length, 3);
    assert.deepEqual(pkts[0]!.slice(20, 32), opts);
    for (const p of pkts.slice(1)) {
      assert.deepEqual(p.slice(20, 32), [1, 1, 1, 1, 1, 1, 1, 0x94, 4, 0, 0, 0]);
      assert.equal(refCsum(p, 0, 32), 0);
    }
    assert.deepEqual(pkts.flatMap((p) => p.slice(32)), payload);
    kfreeSkbListReason(cpu, first, SKB_DROP_REASON.CONSUMED);
    // ipOptionsFragment stops at a malformed length.
    const h = new Uint8Array([0x47, ...new Array(19).fill(0), 7, 1, 0x44, 0, 1, 1, 1, 1]);
    ipOptionsFragment(h, 0);
    assert.deepEqual([...h.subarray(20)], [7, 1, 0x44, 0, 1, 1, 1, 1]);
    assertNoLeaks(cpu);
  });

  test("frag_max_size from reassembly caps the fragment size; CHECKSUM_PARTIAL is resolved first", () => {
    const cpu = setup();
    const src = ip("10.0.0.1");
    const dst = ip("10.0.0.2");
    const payload = [0, 1, 0, 2, 0, 20 + 8 + 992, 0, 0, ...lcgBytes(992, 9)]; // a UDP header with check 0
    const pkt = ipv4Packet({ src, dst, proto: 17 }, payload);
    const skb = rxIp(cpu, pkt);
    cpu.u16[(skb + IPCB_FRAG_MAX_SIZE) >>> 1] = 500;
    cpu.u8[skb + SKB_IP_SUMMED] = CHECKSUM_PARTIAL;
    cpu.u16[(skb + SKB_CSUM_START) >>> 1] = 64 + 20;
    cpu.u16[(skb + SKB_CSUM_OFFSET) >>> 1] = 6;
    const first = ipFragment(cpu, skb, 1500, ipStatsCreate());
    const { skbs, pkts } = collect(cpu, first);
    assert.ok(pkts.every((p) => p.length <= 500));
    const all = pkts.flatMap((p) => p.slice(20));
    assert.equal(refCsum(all), 0, "the UDP bytes sum to 0xffff once the resolved checksum is in");
    for (const s of skbs) assert.equal(cpu.u16[(s + IPCB_FRAG_MAX_SIZE) >>> 1], 0);
    kfreeSkbListReason(cpu, first, SKB_DROP_REASON.CONSUMED);
    assertNoLeaks(cpu);
  });

  test("property: random sizes, MTUs and layouts — pieces ≤ MTU, 8-aligned, valid, concatenating to the payload", () => {
    const cpu = setup();
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 6000 }),
        fc.integer({ min: 68, max: 2000 }),
        fc.integer({ min: 0, max: 3 }).map((n) => n * 4),
        fc.integer({ min: 0, max: 200 }),
        fc.boolean(),
        (plen, mtu, optLen, linear, cloned) => {
          const payload = lcgBytes(plen, plen + mtu);
          const opts = optLen === 0 ? [] : [0x94, optLen, ...new Array(optLen - 2).fill(0)];
          const pkt = ipv4Packet({ src: 5, dst: 6, proto: 17, options: opts }, payload);
          const skb = rxIp(cpu, pkt, { linear: Math.max(linear, 20 + optLen), fragSize: 1400 });
          const clone = cloned ? skbClone(cpu, skb) : 0;
          const st = ipStatsCreate();
          const r = ipFragment(cpu, skb, mtu, st);
          const hl = 20 + optLen;
          if (pkt.length <= mtu) {
            assert.equal(r, skb);
            consumeSkb(cpu, skb);
          } else if (mtu - hl < 8) {
            assert.equal(r, -SKB_DROP_REASON.MTU_EXCEEDED);
            consumeSkb(cpu, skb);
          } else {
            const { pkts } = collect(cpu, r);
            let off = 0;
            pkts.forEach((p, i) => {
              assert.ok(p.length <= mtu);
              assert.equal(refCsum(p, 0, hl), 0);
              const fo = p[6]! * 256 + p[7]!;
              assert.equal((fo & 0x1fff) * 8, off);
              assert.equal((fo & IP_MF) !== 0, i < pkts.length - 1);
              if (i < pkts.length - 1) assert.equal((p.length - hl) % 8, 0);
              off += p.length - hl;
            });
            assert.deepEqual(pkts.flatMap((p) => p.slice(hl)), payload);
            assert.equal(st[IPSTATS_MIB_FRAGCREATES], pkts.length);
            kfreeSkbListReason(cpu, r, SKB_DROP_REASON.CONSUMED);
          }
          if (clone !== 0) {
            assert.deepEqual(readPacket(cpu, clone), pkt);
            consumeSkb(cpu, clone);
          }
        },
      ),
      { numRuns: 200 },
    );
    assertNoLeaks(cpu);
  });
});

describe("ipRcvCore fuzz", () => {
  test("random and mutated datagrams: never throw; accepted ones are consistent; every skb freed once", () => {
    const cpu = setup();
    const st = ipStatsCreate();
    const base = ipv4Packet({ src: ip("10.0.0.1"), dst: ip("10.0.0.2"), proto: 6, options: [1, 1, 1, 0] }, lcgBytes(60, 10));
    let frames = 0;
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ minLength: 0, maxLength: 100 }).map((a) => [...a]),
          fc
            .array(fc.tuple(fc.nat(base.length - 1), fc.integer({ min: 0, max: 255 })), { maxLength: 3 })
            .chain((muts) => fc.integer({ min: 0, max: base.length + 10 }).map((cut) => ({ muts, cut })))
            .map(({ muts, cut }) => {
              const b = [...base, ...lcgBytes(10, cut)];
              for (const [i, v] of muts) b[i] = v;
              return b.slice(0, cut);
            }),
        ),
        fc.integer({ min: 0, max: 100 }),
        (bytes, linear) => {
          frames++;
          const skb = skbFromBytes(cpu, bytes, { linear, fragSize: 11 });
          const r = ipRcvCore(cpu, skb, st);
          if (r === 0) {
            const iph = skbNetworkHeader(cpu, skb);
            assert.equal(ipVersion(cpu.u8, iph), 4);
            assert.ok(ipHdrLen(cpu.u8, iph) >= 20);
            assert.equal(ipFastCsum(cpu.u8, iph, ipHdrLen(cpu.u8, iph) / 4), 0);
            assert.equal(skbLen(cpu, skb), ipTotLen(cpu.u8, iph));
            assert.deepEqual(readPacket(cpu, skb), bytes.slice(0, ipTotLen(cpu.u8, iph)));
            consumeSkb(cpu, skb);
          } else {
            assert.ok(
              [SKB_DROP_REASON.IP_INHDR, SKB_DROP_REASON.IP_CSUM, SKB_DROP_REASON.PKT_TOO_SMALL].includes(r),
              `unexpected reason ${r}`,
            );
            kfreeSkbReason(cpu, skb, r);
          }
        },
      ),
      { numRuns: 600 },
    );
    assert.equal(totalFreed(cpu), frames);
    assert.equal(st[IPSTATS_MIB_INPKTS], frames);
    assertNoLeaks(cpu);
  });
});

