/**
 * UDP: a hand-computed checksum, the zero rules (0 = none, computed 0 sent
 * as 0xffff), verification over paged data, udp4RcvCore's length checks,
 * and a property check against the reference checksum.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { skbLen } from "../../src/skb/access.js";
import { SKB_DROP_REASON } from "../../src/skb/drop-reason.js";
import { consumeSkb, kfreeSkbReason } from "../../src/skb/free.js";
import { CHECKSUM_UNNECESSARY, SKB_IP_SUMMED } from "../../src/skb/layout.js";
import { ipRcvCore, ipStatsCreate } from "../../src/net/ipv4.js";
import {
  udp4ChecksumValid,
  udp4RcvCore,
  udp4SetChecksum,
  udpCheck,
  udpDest,
  udpHdr,
  udpLen,
  udpSource,
  udpV4Check,
} from "../../src/net/udp.js";
import { assertNoLeaks, ip, ipv4Packet, lcgBytes, readPacket, setup, skbFromBytes, udpSegment } from "./net-helpers.js";

const A = ip("10.0.0.1");
const B = ip("10.0.0.2");

function rx(cpu: ReturnType<typeof setup>, seg: number[], shape: Parameters<typeof skbFromBytes>[2] = {}, totLen?: number): number {
  const pkt = ipv4Packet({ src: A, dst: B, proto: 17, ...(totLen !== undefined ? { totLen } : {}) }, seg);
  const skb = skbFromBytes(cpu, pkt, shape);
  assert.equal(ipRcvCore(cpu, skb, ipStatsCreate()), 0);
  return skb;
}

describe("UDP checksums", () => {
  test("hand-computed: 10.0.0.1:1 → 10.0.0.2:2, empty payload, checksum 0xebd8", () => {
    const cpu = setup();
    const seg = [0, 1, 0, 2, 0, 8, 0, 0];
    const skb = rx(cpu, seg);
    assert.equal(udp4SetChecksum(cpu, skb), 0xebd8);
    const uh = udpHdr(cpu, skb);
    assert.deepEqual([udpSource(cpu.u8, uh), udpDest(cpu.u8, uh), udpLen(cpu.u8, uh), udpCheck(cpu.u8, uh)], [1, 2, 8, 0xebd8]);
    assert.ok(udp4ChecksumValid(cpu, skb));
    assert.equal(udpV4Check(8, A, B, 0x000b), 0xebd8);
    cpu.u8[uh + 7] ^= 1;
    assert.ok(!udp4ChecksumValid(cpu, skb));
    consumeSkb(cpu, skb);
    assertNoLeaks(cpu);
  });

  test("a computed 0 is sent as 0xffff, which verifies; a zero field means no checksum", () => {
    const cpu = setup();
    const seg = [0, 1, 0, 2, 0, 10, 0, 0, 0xeb, 0xd4]; // payload chosen so the sum is 0xffff
    const skb = rx(cpu, seg);
    assert.equal(udp4SetChecksum(cpu, skb), 0xffff);
    assert.ok(udp4ChecksumValid(cpu, skb));
    assert.equal(udp4RcvCore(cpu, skb), 0);
    consumeSkb(cpu, skb);
    const none = rx(cpu, [0, 1, 0, 2, 0, 12, 0, 0, 1, 2, 3, 4]);
    assert.ok(udp4ChecksumValid(cpu, none), "check 0: not computed by the sender");
    assert.equal(udp4RcvCore(cpu, none), 0);
    consumeSkb(cpu, none);
    assertNoLeaks(cpu);
  });

  test("property: set/verify agree with the reference over linear and paged skbs", () => {
    const cpu = setup();
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 3000 }), fc.integer({ min: 20, max: 200 }), fc.nat(0xffff), (plen, linear, port) => {
        const good = udpSegment(A, B, port, 53, lcgBytes(plen, plen));
        const skb = rx(cpu, good.map((x, i) => (i === 6 || i === 7 ? 0 : x)), { linear, fragSize: 700 });
        const c = udp4SetChecksum(cpu, skb);
        assert.equal(c, good[6]! * 256 + good[7]!);
        assert.equal(udp4RcvCore(cpu, skb), 0);
        consumeSkb(cpu, skb);
      }),
      { numRuns: 150 },
    );
    assertNoLeaks(cpu);
  });
});

describe("udp4RcvCore", () => {
  test("short packets, bad lengths, trimming to uh->len, checksum errors", () => {
    const cpu = setup();
    const good = udpSegment(A, B, 7, 9, lcgBytes(20, 1));
    // uh->len below 8, above the data, or fewer than 8 bytes: PKT_TOO_SMALL.
    for (const seg of [good.slice(0, 7), [...good.slice(0, 4), 0, 7, ...good.slice(6)], [...good.slice(0, 4), 0, 29, ...good.slice(6)]]) {
      const skb = rx(cpu, seg);
      assert.equal(udp4RcvCore(cpu, skb), SKB_DROP_REASON.PKT_TOO_SMALL);
      kfreeSkbReason(cpu, skb, SKB_DROP_REASON.PKT_TOO_SMALL);
    }
    // IP says 30 bytes of UDP, UDP says 28: trimmed to 28, checksum over 28.
    const padded = rx(cpu, [...good, 0xaa, 0xbb]);
    assert.equal(udp4RcvCore(cpu, padded), 0);
    assert.equal(skbLen(cpu, padded), 20 + 28);
    assert.deepEqual(readPacket(cpu, padded).slice(20), good);
    consumeSkb(cpu, padded);
    const bad = [...good];
    bad[12] ^= 0x40;
    const b = rx(cpu, bad, { linear: 24, fragSize: 3 });
    assert.equal(udp4RcvCore(cpu, b), SKB_DROP_REASON.UDP_CSUM);
    cpu.u8[b + SKB_IP_SUMMED] = CHECKSUM_UNNECESSARY;
    assert.equal(udp4RcvCore(cpu, b), 0, "CHECKSUM_UNNECESSARY is trusted");
    kfreeSkbReason(cpu, b, SKB_DROP_REASON.UDP_CSUM);
    assertNoLeaks(cpu);
  });
});
