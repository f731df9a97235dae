/**
 * ICMP: the in-place echo reply byte by byte (with options, paged data,
 * clones, bad input), and icmpSend errors byte by byte (TTL expiry on the
 * forward path, fragmentation needed, the 576-byte cap) plus every case
 * where the kernel stays silent.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { skbDataPtr, skbLen, skbNetworkHeader, skbProtocol, skbTransportHeader } from "../../src/skb/access.js";
import { skbClone } from "../../src/skb/clone.js";
import { SKB_DROP_REASON } from "../../src/skb/drop-reason.js";
import { consumeSkb, kfreeSkbReason } from "../../src/skb/free.js";
import { PACKET_BROADCAST, SKB_DEV, SKB_PKT_TYPE } from "../../src/skb/layout.js";
import {
  ICMP_MIB_CSUMERRORS,
  ICMP_MIB_INECHOS,
  ICMP_MIB_INERRORS,
  ICMP_MIB_INMSGS,
  ICMP_MIB_OUTDESTUNREACHS,
  ICMP_MIB_OUTECHOREPS,
  ICMP_MIB_OUTMSGS,
  ICMP_MIB_OUTTIMEEXCDS,
  icmpIsError,
  icmpRcvEcho,
  icmpSend,
  icmpStatsCreate,
  skbByteAt,
} from "../../src/net/icmp.js";
import { ipDecreaseTtl, ipRcvCore, ipStatsCreate, ipTtl } from "../../src/net/ipv4.js";
import {
  ETH_P_IP,
  ICMP_DEST_UNREACH,
  ICMP_ECHO,
  ICMP_ECHOREPLY,
  ICMP_EXC_TTL,
  ICMP_FRAG_NEEDED,
  ICMP_PARAMETERPROB,
  ICMP_PORT_UNREACH,
  ICMP_TIME_EXCEEDED,
  IP_DF,
  IP_MF,
} from "../../src/net/proto.js";
import {
  assertNoLeaks,
  be16Bytes,
  be32Bytes,
  icmpMessage,
  ip,
  ipv4Packet,
  lcgBytes,
  readPacket,
  refCsum,
  setup,
  skbFromBytes,
  totalFreed,
  udpSegment,
} from "./net-helpers.js";

const ROUTER = ip("10.0.0.1");
const HOST = ip("10.0.0.2");
const FAR = ip("198.51.100.7");

/** An skb holding a datagram that passed ipRcvCore. */
function rxIp(cpu: ReturnType<typeof setup>, bytes: number[], shape: Parameters<typeof skbFromBytes>[2] = {}): number {
  const skb = skbFromBytes(cpu, bytes, shape);
  assert.equal(ipRcvCore(cpu, skb, ipStatsCreate()), 0);
  return skb;
}

/** The expected echo reply for a request (id read from the reply: it is freshly chosen). */
function expectedReply(req: number[], reqHl: number, id: number): number[] {
  const icmp = req.slice(reqHl);
  const reply = icmpMessage(ICMP_ECHOREPLY, icmp[1]!, (icmp[4]! << 24) | (icmp[5]! << 16) | (icmp[6]! << 8) | icmp[7]!, icmp.slice(8));
  return ipv4Packet({ src: ip(req.slice(16, 20).join(".")), dst: ip(req.slice(12, 16).join(".")), proto: 1, ttl: 64, tos: req[1]!, id }, reply);
}

describe("icmpRcvEcho", () => {
  test("echo request → reply in place, byte by byte", () => {
    const cpu = setup();
    const st = icmpStatsCreate();
    const req = ipv4Packet({ src: HOST, dst: ROUTER, proto: 1, ttl: 57, tos: 0x28, id: 0x1111, fragOff: IP_DF }, icmpMessage(ICMP_ECHO, 0, 0x12340001, lcgBytes(56, 1)));
    const skb = rxIp(cpu, req);
    assert.equal(icmpRcvEcho(cpu, skb, st), 0);
    const out = readPacket(cpu, skb);
    const id = out[4]! * 256 + out[5]!;
    assert.deepEqual(out, expectedReply(req, 20, id));
    // The incremental ICMP checksum equals a full recomputation.
    assert.equal(refCsum(out, 20), 0);
    assert.equal(skbNetworkHeader(cpu, skb), skbDataPtr(cpu, skb));
    assert.equal(skbTransportHeader(cpu, skb), skbDataPtr(cpu, skb) + 20);
    assert.equal(skbProtocol(cpu, skb), ETH_P_IP);
    assert.deepEqual([st[ICMP_MIB_INMSGS], st[ICMP_MIB_INECHOS], st[ICMP_MIB_OUTMSGS], st[ICMP_MIB_OUTECHOREPS]], [1, 1, 1, 1]);
    consumeSkb(cpu, skb);
    assertNoLeaks(cpu);
  });

  test("options are not echoed; odd-length data in page frags; data after a pull", () => {
    const cpu = setup();
    const st = icmpStatsCreate();
    const req = ipv4Packet({ src: HOST, dst: ROUTER, proto: 1, options: [7, 7, 4, 0, 0, 0, 0, 0] }, icmpMessage(ICMP_ECHO, 0, 0xabcd0007, lcgBytes(1001, 2)));
    const skb = rxIp(cpu, req, { linear: 40, fragSize: 300 });
    // As if the local-delivery path had pulled the IP header already.
    cpu.u32[(skb + 156) >>> 2] = skbDataPtr(cpu, skb) + 28;
    cpu.u32[(skb + 84) >>> 2] = skbLen(cpu, skb) - 28;
    assert.equal(icmpRcvEcho(cpu, skb, st), 0);
    const out = readPacket(cpu, skb);
    assert.equal(out.length, req.length - 8);
    assert.deepEqual(out, expectedReply(req, 28, out[4]! * 256 + out[5]!));
    consumeSkb(cpu, skb);
    assertNoLeaks(cpu);
  });

  test("a cloned request: the reply is built in a private copy", () => {
    const cpu = setup();
    const req = ipv4Packet({ src: HOST, dst: ROUTER, proto: 1 }, icmpMessage(ICMP_ECHO, 0, 1, lcgBytes(20, 3)));
    const skb = rxIp(cpu, req);
    const clone = skbClone(cpu, skb);
    assert.equal(icmpRcvEcho(cpu, skb, icmpStatsCreate()), 0);
    assert.deepEqual(readPacket(cpu, clone), req);
    assert.equal(readPacket(cpu, skb)[20], ICMP_ECHOREPLY);
    consumeSkb(cpu, skb);
    consumeSkb(cpu, clone);
    assertNoLeaks(cpu);
  });

  test("rejections and non-echo messages", () => {
    const cpu = setup();
    const st = icmpStatsCreate();
    const echo = icmpMessage(ICMP_ECHO, 0, 1, [1, 2, 3, 4]);
    const badSum = [...echo];
    badSum[2] ^= 1;
    const cases: [number[], number, ((skb: number) => void)?][] = [
      [ipv4Packet({ src: HOST, dst: ROUTER, proto: 1 }, echo.slice(0, 7)), SKB_DROP_REASON.PKT_TOO_SMALL],
      [ipv4Packet({ src: HOST, dst: ROUTER, proto: 1 }, badSum), SKB_DROP_REASON.ICMP_INVALID],
      [ipv4Packet({ src: HOST, dst: ROUTER, proto: 1 }, icmpMessage(ICMP_ECHOREPLY, 0, 1, [])), SKB_DROP_REASON.CONSUMED],
      [ipv4Packet({ src: HOST, dst: ROUTER, proto: 1 }, icmpMessage(ICMP_DEST_UNREACH, 3, 0, lcgBytes(28))), SKB_DROP_REASON.CONSUMED],
      [ipv4Packet({ src: HOST, dst: ROUTER, proto: 1 }, icmpMessage(99, 0, 0, [])), SKB_DROP_REASON.UNHANDLED_PROTO],
      [ipv4Packet({ src: HOST, dst: ip("10.0.0.255"), proto: 1 }, echo), SKB_DROP_REASON.ICMP_INVALID, (s) => {
        cpu.u8[s + SKB_PKT_TYPE] = PACKET_BROADCAST;
      }],
      [ipv4Packet({ src: HOST, dst: ip("224.0.0.1"), proto: 1 }, echo), SKB_DROP_REASON.ICMP_INVALID],
      [ipv4Packet({ src: HOST, dst: ip("255.255.255.255"), proto: 1 }, echo), SKB_DROP_REASON.ICMP_INVALID],
    ];
    for (const [pkt, reason, prep] of cases) {
      const skb = rxIp(cpu, pkt);
      prep?.(skb);
      assert.equal(icmpRcvEcho(cpu, skb, st), reason, `case ${cases.findIndex((c) => c[0] === pkt)}`);
      kfreeSkbReason(cpu, skb, reason);
    }
    assert.equal(st[ICMP_MIB_INMSGS], cases.length);
    assert.equal(st[ICMP_MIB_CSUMERRORS], 1);
    assert.equal(st[ICMP_MIB_INERRORS], 3);
    assert.equal(st[ICMP_MIB_OUTMSGS], 0);
    assertNoLeaks(cpu);
  });
});

/** Expected error message bytes, given the id the sender chose. */
function expectedError(orig: number[], type: number, code: number, info: number, from: number, id: number): number[] {
  const quote = orig.slice(0, Math.min(orig.length, 548));
  const tos = (orig[1]! & 0x1e) | 0xc0;
  return ipv4Packet({ src: from, dst: ip(orig.slice(12, 16).join(".")), proto: 1, ttl: 64, tos, id }, icmpMessage(type, code, info, quote));
}

describe("icmpSend", () => {
  test("forward path, TTL 1: time exceeded from the router, byte by byte", () => {
    const cpu = setup();
    const st = icmpStatsCreate();
    const pkt = ipv4Packet({ src: HOST, dst: FAR, proto: 17, ttl: 1, tos: 0xb8 }, udpSegment(HOST, FAR, 5000, 53, lcgBytes(40, 4)));
    const skb = rxIp(cpu, pkt);
    cpu.u32[(skb + SKB_DEV) >>> 2] = 3;
    const iph = skbNetworkHeader(cpu, skb);
    // ip_forward: if (ip_hdr(skb)->ttl <= 1) goto too_many_hops; (before any decrement)
    assert.ok(ipTtl(cpu.u8, iph) <= 1);
    const err = icmpSend(cpu, skb, ICMP_TIME_EXCEEDED, ICMP_EXC_TTL, 0, ROUTER, st);
    assert.ok(err > 0);
    const out = readPacket(cpu, err);
    assert.deepEqual(out, expectedError(pkt, ICMP_TIME_EXCEEDED, ICMP_EXC_TTL, 0, ROUTER, out[4]! * 256 + out[5]!));
    assert.equal(out[1], 0xd8, "RT_TOS(0xb8) | IPTOS_PREC_INTERNETCONTROL");
    assert.equal(skbNetworkHeader(cpu, err), skbDataPtr(cpu, err));
    assert.equal(skbTransportHeader(cpu, err), skbDataPtr(cpu, err) + 20);
    assert.equal(skbProtocol(cpu, err), ETH_P_IP);
    assert.equal(cpu.u32[(err + SKB_DEV) >>> 2], 3);
    assert.ok(skbDataPtr(cpu, err) - (cpu.u32[(err + 152) >>> 2] as number) >= 18 + 14, "room for Ethernet + VLAN");
    assert.deepEqual(readPacket(cpu, skb), pkt, "the offending packet is untouched");
    assert.deepEqual([st[ICMP_MIB_OUTMSGS], st[ICMP_MIB_OUTTIMEEXCDS]], [1, 1]);
    consumeSkb(cpu, err);
    consumeSkb(cpu, skb);
    assertNoLeaks(cpu);
  });

  test("fragmentation needed carries the MTU; big packets are quoted up to 576 bytes in all", () => {
    const cpu = setup();
    const st = icmpStatsCreate();
    const pkt = ipv4Packet({ src: HOST, dst: FAR, proto: 6, fragOff: IP_DF }, lcgBytes(1480, 5));
    const skb = rxIp(cpu, pkt, { linear: 100, fragSize: 512 });
    const err = icmpSend(cpu, skb, ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, 1400, ROUTER, st);
    const out = readPacket(cpu, err);
    assert.equal(out.length, 576);
    assert.deepEqual(out.slice(24, 28), [0, 0, ...be16Bytes(1400)]);
    assert.deepEqual(out, expectedError(pkt, ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, 1400, ROUTER, out[4]! * 256 + out[5]!));
    assert.equal(st[ICMP_MIB_OUTDESTUNREACHS], 1);
    consumeSkb(cpu, err);
    consumeSkb(cpu, skb);
    assertNoLeaks(cpu);
  });

  test("after a TTL decrement the quoted header is what the skb holds; parameter problem pointer", () => {
    const cpu = setup();
    const pkt = ipv4Packet({ src: HOST, dst: FAR, proto: 17, ttl: 9 }, lcgBytes(8, 6));
    const skb = rxIp(cpu, pkt);
    ipDecreaseTtl(cpu.u8, skbNetworkHeader(cpu, skb));
    const err = icmpSend(cpu, skb, ICMP_PARAMETERPROB, 0, 12 << 24, ROUTER);
    const out = readPacket(cpu, err);
    assert.deepEqual(out.slice(24, 28), be32Bytes(12 << 24));
    assert.equal(out[28 + 8], 8, "quoted TTL");
    assert.equal(refCsum(out.slice(28, 48)), 0, "the quoted header checksum is still valid");
    consumeSkb(cpu, err);
    consumeSkb(cpu, skb);
    assertNoLeaks(cpu);
  });

  test("an ICMP echo may be answered with an error; a non-error type keeps the TOS", () => {
    const cpu = setup();
    const pkt = ipv4Packet({ src: HOST, dst: FAR, proto: 1, tos: 0xff }, icmpMessage(ICMP_ECHO, 0, 5, [1, 2]));
    const skb = rxIp(cpu, pkt);
    const err = icmpSend(cpu, skb, ICMP_DEST_UNREACH, ICMP_PORT_UNREACH, 0, ROUTER);
    assert.ok(err > 0);
    const info = icmpSend(cpu, skb, 13 /* timestamp: not an error */, 0, 0, ROUTER);
    assert.equal(readPacket(cpu, info)[1], 0xff);
    consumeSkb(cpu, err);
    consumeSkb(cpu, info);
    consumeSkb(cpu, skb);
    assertNoLeaks(cpu);
  });

  test("silence: errors about errors, later fragments, broadcasts, bad sources, truncated ICMP", () => {
    const cpu = setup();
    const quiet: [string, number[], ((s: number) => void)?][] = [
      ["an ICMP error", ipv4Packet({ src: HOST, dst: FAR, proto: 1 }, icmpMessage(ICMP_DEST_UNREACH, 1, 0, lcgBytes(28)))],
      ["an unknown ICMP type", ipv4Packet({ src: HOST, dst: FAR, proto: 1 }, icmpMessage(200, 0, 0, []))],
      ["a truncated ICMP header", ipv4Packet({ src: HOST, dst: FAR, proto: 1 }, [])],
      ["a non-first fragment", ipv4Packet({ src: HOST, dst: FAR, proto: 17, fragOff: IP_MF | 10 }, lcgBytes(16))],
      ["a last fragment", ipv4Packet({ src: HOST, dst: FAR, proto: 17, fragOff: 10 }, lcgBytes(16))],
      ["a limited broadcast", ipv4Packet({ src: HOST, dst: 0xffffffff, proto: 17 }, lcgBytes(16))],
      ["a multicast", ipv4Packet({ src: HOST, dst: ip("239.1.1.1"), proto: 17 }, lcgBytes(16))],
      ["source 0.0.0.0", ipv4Packet({ src: 0, dst: FAR, proto: 17 }, lcgBytes(16))],
      ["a multicast source", ipv4Packet({ src: ip("224.1.1.1"), dst: FAR, proto: 17 }, lcgBytes(16))],
      ["a link-level broadcast", ipv4Packet({ src: HOST, dst: FAR, proto: 17 }, lcgBytes(16)), (s) => {
        cpu.u8[s + SKB_PKT_TYPE] = PACKET_BROADCAST;
      }],
    ];
    for (const [what, pkt, prep] of quiet) {
      const skb = rxIp(cpu, pkt);
      prep?.(skb);
      assert.equal(icmpSend(cpu, skb, ICMP_TIME_EXCEEDED, 0, 0, ROUTER), 0, what);
      consumeSkb(cpu, skb);
    }
    // The first fragment is answered.
    const first = rxIp(cpu, ipv4Packet({ src: HOST, dst: FAR, proto: 17, fragOff: IP_MF }, lcgBytes(16)));
    const e = icmpSend(cpu, first, ICMP_TIME_EXCEEDED, 0, 0, ROUTER);
    assert.ok(e > 0);
    consumeSkb(cpu, e);
    consumeSkb(cpu, first);
    assertNoLeaks(cpu);
  });

  test("icmpIsError and skbByteAt", () => {
    assert.deepEqual(
      Array.from({ length: 20 }, (_, t) => (icmpIsError(t) ? 1 : 0)),
      [0, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1],
    );
    const cpu = setup();
    const bytes = lcgBytes(50, 7);
    const skb = skbFromBytes(cpu, bytes, { linear: 10, fragSize: 7 });
    for (let i = 0; i < 50; i++) assert.equal(skbByteAt(cpu, skb, i), bytes[i]);
    assert.equal(skbByteAt(cpu, skb, 50), -1);
    const hb = skbByteAt(cpu, skb, -1);
    assert.ok(hb >= 0 && hb <= 255, "headroom bytes are readable");
    assert.equal(skbByteAt(cpu, skb, -65), -1, "before head");
    consumeSkb(cpu, skb);
    assertNoLeaks(cpu);
  });

  test("fuzz: random datagrams never make icmpSend or icmpRcvEcho throw", () => {
    const cpu = setup();
    let n = 0;
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 20, maxLength: 120 }), fc.integer({ min: 0, max: 120 }), fc.nat(20), (b, linear, type) => {
        const bytes = [...b];
        bytes[0] = 0x45;
        bytes[2] = 0;
        bytes[3] = bytes.length;
        bytes[9] = 1;
        bytes[10] = 0;
        bytes[11] = 0;
        const c = refCsum(bytes, 0, 20);
        bytes[10] = c >> 8;
        bytes[11] = c & 255;
        const skb = skbFromBytes(cpu, bytes, { linear, fragSize: 13 });
        n++;
        assert.equal(ipRcvCore(cpu, skb, ipStatsCreate()), 0);
        const e = icmpSend(cpu, skb, type, 0, 0, ROUTER);
        if (e !== 0) {
          n++;
          assert.ok(skbLen(cpu, e) <= 576);
          consumeSkb(cpu, e);
        }
        const r = icmpRcvEcho(cpu, skb, icmpStatsCreate());
        kfreeSkbReason(cpu, skb, r === 0 ? SKB_DROP_REASON.CONSUMED : r);
      }),
      { numRuns: 400 },
    );
    assert.equal(totalFreed(cpu), n);
    assertNoLeaks(cpu);
  });
});
