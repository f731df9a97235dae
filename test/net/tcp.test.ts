/**
 * TCP: a hand-computed SYN checksum, accessors and flags, conntrack's valid
 * flag table, tcp4RcvCore's header checks, and a property check against
 * the reference checksum over paged skbs.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { SKB_DROP_REASON } from "../../src/skb/drop-reason.js";
import { consumeSkb, kfreeSkbReason } from "../../src/skb/free.js";
import { ipRcvCore, ipStatsCreate } from "../../src/net/ipv4.js";
import {
  TCP_FLAG_ACK,
  TCP_FLAG_CWR,
  TCP_FLAG_ECE,
  TCP_FLAG_FIN,
  TCP_FLAG_PSH,
  TCP_FLAG_RST,
  TCP_FLAG_SYN,
  TCP_FLAG_URG,
} from "../../src/net/proto.js";
import {
  tcp4ChecksumValid,
  tcp4RcvCore,
  tcp4SetChecksum,
  tcpAckSeq,
  tcpCheck,
  tcpDest,
  tcpDoff,
  tcpFlagByte,
  tcpFlagsString,
  tcpHdr,
  tcpHdrLen,
  tcpSeq,
  tcpSource,
  tcpUrgPtr,
  tcpV4Check,
  tcpValidFlags,
  tcpWindow,
} from "../../src/net/tcp.js";
import { assertNoLeaks, ip, ipv4Packet, lcgBytes, setup, skbFromBytes, tcpSegment } from "./net-helpers.js";

const A = ip("10.0.0.1");
const B = ip("10.0.0.2");

function rx(cpu: ReturnType<typeof setup>, seg: number[], shape: Parameters<typeof skbFromBytes>[2] = {}): number {
  const skb = skbFromBytes(cpu, ipv4Packet({ src: A, dst: B, proto: 6 }, seg), shape);
  assert.equal(ipRcvCore(cpu, skb, ipStatsCreate()), 0);
  return skb;
}

describe("TCP", () => {
  test("hand-computed SYN 10.0.0.1:1234 → 10.0.0.2:80 (checksum 0x16b4; 0x96bd without ack/urg); accessors", () => {
    const cpu = setup();
    const seg = [0x04, 0xd2, 0, 80, 0, 0, 0, 1, 0x80, 0, 0, 2, 0x50, TCP_FLAG_SYN, 0xff, 0xff, 0, 0, 0, 7];
    const skb = rx(cpu, seg);
    // Words 04d2 0050 0000 0001 8000 0002 5002 ffff 0000 0007 = 0x1d52d; pseudo-header
    // 0a00 0001 0a00 0002 0006 0014 = 0x141d; total 0x1e94a → 0xe94b → ~ 0x16b4.
    assert.equal(tcp4SetChecksum(cpu, skb), 0x16b4);
    const th = tcpHdr(cpu, skb);
    const u8 = cpu.u8;
    assert.deepEqual(
      [tcpSource(u8, th), tcpDest(u8, th), tcpSeq(u8, th), tcpAckSeq(u8, th), tcpDoff(u8, th), tcpHdrLen(u8, th)],
      [1234, 80, 1, 0x80000002, 5, 20],
    );
    assert.deepEqual([tcpFlagByte(u8, th), tcpWindow(u8, th), tcpCheck(u8, th), tcpUrgPtr(u8, th)], [TCP_FLAG_SYN, 65535, 0x16b4, 7]);
    assert.ok(tcp4ChecksumValid(cpu, skb));
    assert.equal(tcpV4Check(20, A, B, 0x1d52d), 0x16b4);
    // Without ack and urg_ptr: 0x96bd.
    assert.equal(tcpV4Check(20, A, B, 0x04d2 + 0x0050 + 1 + 0x5002 + 0xffff), 0x96bd);
    assert.equal(tcp4RcvCore(cpu, skb), 0);
    consumeSkb(cpu, skb);
    assertNoLeaks(cpu);
  });

  test("tcp4RcvCore: truncated header, doff < 5, doff beyond the data, bad checksum", () => {
    const cpu = setup();
    const good = tcpSegment(A, B, 1, 2, 100, 200, TCP_FLAG_ACK, lcgBytes(10, 1), [2, 4, 5, 0xb4]);
    const cases: [number[], number][] = [
      [good.slice(0, 19), SKB_DROP_REASON.PKT_TOO_SMALL],
      [[...good.slice(0, 12), 0x40, ...good.slice(13)], SKB_DROP_REASON.PKT_TOO_SMALL],
      [[...good.slice(0, 12), 0xf0, ...good.slice(13)], SKB_DROP_REASON.PKT_TOO_SMALL],
      [[...good.slice(0, 30), good[30]! ^ 1, ...good.slice(31)], SKB_DROP_REASON.TCP_CSUM],
      [good, 0],
    ];
    for (const [seg, want] of cases) {
      const skb = rx(cpu, seg, { linear: 22, fragSize: 5 });
      assert.equal(tcp4RcvCore(cpu, skb), want);
      kfreeSkbReason(cpu, skb, want === 0 ? SKB_DROP_REASON.CONSUMED : want);
    }
    assertNoLeaks(cpu);
  });

  test("flags: conntrack's valid combinations, letters", () => {
    const valid = new Set([
      TCP_FLAG_SYN,
      TCP_FLAG_SYN | TCP_FLAG_URG,
      TCP_FLAG_SYN | TCP_FLAG_ACK,
      TCP_FLAG_RST,
      TCP_FLAG_RST | TCP_FLAG_ACK,
      TCP_FLAG_FIN | TCP_FLAG_ACK,
      TCP_FLAG_FIN | TCP_FLAG_ACK | TCP_FLAG_URG,
      TCP_FLAG_ACK,
      TCP_FLAG_ACK | TCP_FLAG_URG,
    ]);
    for (let f = 0; f < 256; f++) {
      const core = f & ~(TCP_FLAG_PSH | TCP_FLAG_ECE | TCP_FLAG_CWR);
      assert.equal(tcpValidFlags(f), valid.has(core), `flags 0x${f.toString(16)}`);
    }
    assert.ok(!tcpValidFlags(TCP_FLAG_SYN | TCP_FLAG_FIN));
    assert.ok(!tcpValidFlags(0));
    assert.equal(tcpFlagsString(TCP_FLAG_SYN | TCP_FLAG_ACK | TCP_FLAG_ECE | TCP_FLAG_CWR), "SAEC");
    assert.equal(tcpFlagsString(0xff), "FSRPAUEC");
  });

  test("property: set/verify agree with the reference over paged skbs", () => {
    const cpu = setup();
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 3000 }), fc.integer({ min: 20, max: 100 }), fc.nat(0xffffffff), (plen, linear, seq) => {
        const good = tcpSegment(A, B, 443, 50000, seq, 0, TCP_FLAG_ACK | TCP_FLAG_PSH, lcgBytes(plen, seq));
        const skb = rx(cpu, good.map((x, i) => (i === 16 || i === 17 ? 0 : x)), { linear, fragSize: 900 });
        assert.equal(tcp4SetChecksum(cpu, skb), good[16]! * 256 + good[17]!);
        assert.equal(tcp4RcvCore(cpu, skb), 0);
        consumeSkb(cpu, skb);
      }),
      { numRuns: 150 },
    );
    assertNoLeaks(cpu);
  });
});
