/**
 * Ethernet: MAC helpers, ethTypeTrans classification and header handling
 * (linear and paged headers), ethHeaderPush (headroom, clones), the skb
 * write-access helpers, and a fuzz pass of random frames.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import {
  skbCloned,
  skbDataPtr,
  skbHeadroom,
  skbLen,
  skbMacHeader,
  skbNetworkHeader,
  skbProtocol,
  skbTransportHeader,
} from "../../src/skb/access.js";
import { skbClone } from "../../src/skb/clone.js";
import { skbPull } from "../../src/skb/data.js";
import { SKB_DROP_REASON } from "../../src/skb/drop-reason.js";
import { consumeSkb, kfreeSkbReason } from "../../src/skb/free.js";
import {
  CHECKSUM_COMPLETE,
  PACKET_BROADCAST,
  PACKET_HOST,
  PACKET_MULTICAST,
  PACKET_OTHERHOST,
  SKB_CSUM,
  SKB_IP_SUMMED,
  SKB_MAC_LEN,
  SKB_PKT_TYPE,
} from "../../src/skb/layout.js";
import { csumFold, csumPartial } from "../../src/net/checksum.js";
import {
  ETH_BROADCAST_ADDR,
  ETH_P_802_2,
  ETH_P_802_3,
  etherAddrCopy,
  etherAddrEqual,
  ethHeaderPush,
  ethTypeTrans,
  isBroadcastEtherAddr,
  isMulticastEtherAddr,
  isValidEtherAddr,
  isZeroEtherAddr,
  LL_RESERVED_SPACE_ETH,
  LL_RESERVED_SPACE_VLAN,
  llReservedSpace,
  macFormat,
  macParse,
  macParseInto,
  pskbTrimRcsum,
  skbCow,
  skbEnsureWritable,
  skbPullRcsum,
} from "../../src/net/ethernet.js";
import { ETH_P_8021Q, ETH_P_IP } from "../../src/net/proto.js";
import {
  assertNoLeaks,
  bytesAt,
  ethFrame,
  lcgBytes,
  MAC_BCAST,
  MAC_DEV,
  MAC_PEER,
  readPacket,
  setup,
  skbFromBytes,
  totalFreed,
} from "./net-helpers.js";

const DEV = new Uint8Array(MAC_DEV);

describe("MAC addresses", () => {
  test("parse and format round-trip; bad strings rejected", () => {
    const m = macParse("02:AB:cd:0:1:ff");
    assert.deepEqual([...m], [0x02, 0xab, 0xcd, 0x00, 0x01, 0xff]);
    assert.equal(macFormat(m), "02:ab:cd:00:01:ff");
    assert.deepEqual([...macParse("aa-bb-cc-dd-ee-ff")], [0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff]);
    for (const bad of ["", "02:ab:cd:00:01", "02:ab:cd:00:01:ff:00", "02:ab:cd:00:01:fg", "002:ab:cd:00:01:ff"]) {
      assert.throws(() => macParse(bad), RangeError, bad);
    }
    const buf = new Uint8Array(10).fill(7);
    assert.equal(macParseInto("zz:00:00:00:00:00", buf, 2), false);
    assert.deepEqual([...buf], new Array(10).fill(7), "nothing written on failure");
    assert.equal(macParseInto("01:02:03:04:05:06", buf, 2), true);
    assert.deepEqual([...buf.subarray(2, 8)], [1, 2, 3, 4, 5, 6]);
    assert.equal(macFormat(buf, 2), "01:02:03:04:05:06");
  });

  test("classification, equality and copy at offsets", () => {
    const b = new Uint8Array([9, ...MAC_BCAST, ...MAC_DEV, 0x01, 0, 0x5e, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    assert.ok(isBroadcastEtherAddr(b, 1) && isMulticastEtherAddr(b, 1));
    assert.ok(!isBroadcastEtherAddr(b, 7) && !isMulticastEtherAddr(b, 7) && isValidEtherAddr(b, 7));
    assert.ok(isMulticastEtherAddr(b, 13) && !isBroadcastEtherAddr(b, 13) && !isValidEtherAddr(b, 13));
    assert.ok(isZeroEtherAddr(b, 19) && !isValidEtherAddr(b, 19));
    assert.ok(etherAddrEqual(b, 7, DEV, 0));
    assert.ok(!etherAddrEqual(b, 1, DEV, 0));
    etherAddrCopy(b, 19, DEV, 0);
    assert.deepEqual([...b.subarray(19, 25)], MAC_DEV);
    assert.ok(isBroadcastEtherAddr(ETH_BROADCAST_ADDR, 0));
    assert.equal(LL_RESERVED_SPACE_ETH, 16);
    assert.equal(LL_RESERVED_SPACE_VLAN, 32);
    assert.equal(llReservedSpace(14, 16), 32);
  });
});

describe("ethTypeTrans", () => {
  const payload = lcgBytes(46, 3);
  const cases: [string, number[], number][] = [
    ["to us", MAC_DEV, PACKET_HOST],
    ["broadcast", MAC_BCAST, PACKET_BROADCAST],
    ["multicast", [0x01, 0x00, 0x5e, 0x00, 0x00, 0x01], PACKET_MULTICAST],
    ["someone else", MAC_PEER, PACKET_OTHERHOST],
  ];
  for (const [name, dst, pt] of cases) {
    test(`pkt_type for a frame ${name}`, () => {
      const cpu = setup();
      const frame = ethFrame(dst, MAC_PEER, ETH_P_IP, payload);
      const skb = skbFromBytes(cpu, frame);
      const data0 = skbDataPtr(cpu, skb);
      assert.equal(ethTypeTrans(cpu, skb, DEV, 0), 0);
      assert.equal(cpu.u8[skb + SKB_PKT_TYPE], pt);
      assert.equal(skbProtocol(cpu, skb), ETH_P_IP);
      assert.equal(skbMacHeader(cpu, skb), data0);
      assert.equal(skbDataPtr(cpu, skb), data0 + 14);
      assert.equal(skbNetworkHeader(cpu, skb), data0 + 14);
      assert.equal(skbTransportHeader(cpu, skb), data0 + 14);
      assert.equal(cpu.u16[(skb + SKB_MAC_LEN) >>> 1], 14);
      assert.equal(skbLen(cpu, skb), 46);
      assert.deepEqual(readPacket(cpu, skb), payload);
      consumeSkb(cpu, skb);
      assertNoLeaks(cpu);
    });
  }

  test("802.3 length frames: raw IPX (0xFFFF) and 802.2 LLC", () => {
    const cpu = setup();
    const a = skbFromBytes(cpu, ethFrame(MAC_DEV, MAC_PEER, 46, [0xff, 0xff, ...lcgBytes(44)]));
    assert.equal(ethTypeTrans(cpu, a, DEV, 0), 0);
    assert.equal(skbProtocol(cpu, a), ETH_P_802_3);
    const b = skbFromBytes(cpu, ethFrame(MAC_DEV, MAC_PEER, 0x05ff, [0xaa, 0xaa, 3, ...lcgBytes(43)]));
    assert.equal(ethTypeTrans(cpu, b, DEV, 0), 0);
    assert.equal(skbProtocol(cpu, b), ETH_P_802_2);
    const c = skbFromBytes(cpu, ethFrame(MAC_DEV, MAC_PEER, 0, [0xff])); // one byte: no SAP to read
    assert.equal(ethTypeTrans(cpu, c, DEV, 0), 0);
    assert.equal(skbProtocol(cpu, c), ETH_P_802_2);
    // 0x0600 is the first EtherType value.
    const d = skbFromBytes(cpu, ethFrame(MAC_DEV, MAC_PEER, 0x0600, [0xff, 0xff]));
    assert.equal(ethTypeTrans(cpu, d, DEV, 0), 0);
    assert.equal(skbProtocol(cpu, d), 0x0600);
    for (const s of [a, b, c, d]) consumeSkb(cpu, s);
    assertNoLeaks(cpu);
  });

  test("runts are PKT_TOO_SMALL and untouched; a 14-byte frame is fine", () => {
    const cpu = setup();
    for (let n = 0; n < 14; n++) {
      const skb = skbFromBytes(cpu, lcgBytes(n, n));
      const d = skbDataPtr(cpu, skb);
      assert.equal(ethTypeTrans(cpu, skb, DEV, 0), SKB_DROP_REASON.PKT_TOO_SMALL);
      assert.equal(skbDataPtr(cpu, skb), d);
      assert.equal(skbLen(cpu, skb), n);
      kfreeSkbReason(cpu, skb, SKB_DROP_REASON.PKT_TOO_SMALL);
    }
    const skb = skbFromBytes(cpu, ethFrame(MAC_DEV, MAC_PEER, ETH_P_IP, []));
    assert.equal(ethTypeTrans(cpu, skb, DEV, 0), 0);
    assert.equal(skbLen(cpu, skb), 0);
    consumeSkb(cpu, skb);
    assert.equal(cpu.drops[SKB_DROP_REASON.PKT_TOO_SMALL], 14);
    assertNoLeaks(cpu);
  });

  test("a header split across page frags is pulled in first", () => {
    const cpu = setup();
    const payload = lcgBytes(300, 9);
    const frame = ethFrame(MAC_BCAST, MAC_PEER, 0x0806, payload);
    const skb = skbFromBytes(cpu, frame, { linear: 5, fragSize: 4 });
    assert.equal(ethTypeTrans(cpu, skb, DEV, 0), 0);
    assert.equal(skbProtocol(cpu, skb), 0x0806);
    assert.equal(cpu.u8[skb + SKB_PKT_TYPE], PACKET_BROADCAST);
    assert.deepEqual(bytesAt(cpu, skbMacHeader(cpu, skb), 14), frame.slice(0, 14));
    assert.deepEqual(readPacket(cpu, skb), payload);
    consumeSkb(cpu, skb);
    assertNoLeaks(cpu);
  });

  test("the device address may live in the arena", () => {
    const cpu = setup();
    const skb = skbFromBytes(cpu, ethFrame(MAC_DEV, MAC_PEER, ETH_P_IP, [1, 2]));
    // The frame's own source field is MAC_PEER: use it as "device address".
    const src = skbDataPtr(cpu, skb) + 6;
    assert.equal(ethTypeTrans(cpu, skb, cpu.u8, src), 0);
    assert.equal(cpu.u8[skb + SKB_PKT_TYPE], PACKET_OTHERHOST);
    consumeSkb(cpu, skb);
    assertNoLeaks(cpu);
  });
});

describe("ethHeaderPush", () => {
  test("writes dst, src, type in front of the payload", () => {
    const cpu = setup();
    const payload = lcgBytes(60, 4);
    const skb = skbFromBytes(cpu, payload, { headroom: 32 });
    assert.equal(ethHeaderPush(cpu, skb, DEV, 0, new Uint8Array(MAC_PEER), 0, ETH_P_IP), 0);
    assert.deepEqual(readPacket(cpu, skb), ethFrame(MAC_PEER, MAC_DEV, ETH_P_IP, payload));
    assert.equal(skbMacHeader(cpu, skb), skbDataPtr(cpu, skb));
    assert.equal(cpu.u16[(skb + SKB_MAC_LEN) >>> 1], 14);
    assert.equal(skbHeadroom(cpu, skb), 18);
    consumeSkb(cpu, skb);
    assertNoLeaks(cpu);
  });

  test("too little headroom: the head is expanded", () => {
    const cpu = setup();
    const payload = lcgBytes(100, 5);
    const skb = skbFromBytes(cpu, payload, { headroom: 3 });
    assert.equal(ethHeaderPush(cpu, skb, DEV, 0, ETH_BROADCAST_ADDR, 0, 0x86dd), 0);
    assert.deepEqual(readPacket(cpu, skb), ethFrame(MAC_BCAST, MAC_DEV, 0x86dd, payload));
    consumeSkb(cpu, skb);
    assertNoLeaks(cpu);
  });

  test("a cloned skb gets a private head; the clone's bytes do not change", () => {
    const cpu = setup();
    const payload = lcgBytes(80, 6);
    const skb = skbFromBytes(cpu, payload, { headroom: 64 });
    const clone = skbClone(cpu, skb);
    const headBefore = bytesAt(cpu, skbDataPtr(cpu, clone) - 14, 14 + 80);
    assert.equal(ethHeaderPush(cpu, skb, DEV, 0, new Uint8Array(MAC_PEER), 0, ETH_P_IP), 0);
    assert.ok(!skbCloned(cpu, skb));
    assert.deepEqual(bytesAt(cpu, skbDataPtr(cpu, clone) - 14, 14 + 80), headBefore);
    assert.deepEqual(readPacket(cpu, skb), ethFrame(MAC_PEER, MAC_DEV, ETH_P_IP, payload));
    consumeSkb(cpu, skb);
    consumeSkb(cpu, clone);
    assertNoLeaks(cpu);
  });
});

describe("skb write-access helpers", () => {
  test("skbCow / skbEnsureWritable unclone, grow headroom, and fail past the end", () => {
    const cpu = setup();
    const bytes = lcgBytes(200, 8);
    const skb = skbFromBytes(cpu, bytes, { headroom: 8, linear: 50 });
    const clone = skbClone(cpu, skb);
    assert.equal(skbEnsureWritable(cpu, skb, 120), 0);
    assert.ok(!skbCloned(cpu, skb));
    assert.deepEqual(readPacket(cpu, skb), bytes);
    assert.equal(skbEnsureWritable(cpu, skb, 201), -12);
    assert.equal(skbCow(cpu, skb, 100), 0);
    assert.ok(skbHeadroom(cpu, skb) >= 100);
    assert.deepEqual(readPacket(cpu, skb), bytes);
    assert.deepEqual(readPacket(cpu, clone), bytes);
    consumeSkb(cpu, skb);
    consumeSkb(cpu, clone);
    assertNoLeaks(cpu);
  });

  test("skbPullRcsum and pskbTrimRcsum keep CHECKSUM_COMPLETE equal to the sum of the bytes left", () => {
    const cpu = setup();
    const bytes = lcgBytes(301, 11);
    for (const linear of [301, 40]) {
      const skb = skbFromBytes(cpu, bytes, { linear, fragSize: 77 });
      cpu.u8[skb + SKB_IP_SUMMED] = CHECKSUM_COMPLETE;
      cpu.u32[(skb + SKB_CSUM) >>> 2] = csumPartial(new Uint8Array(bytes), 0, bytes.length, 0);
      skbPullRcsum(cpu, skb, 4);
      assert.equal(pskbTrimRcsum(cpu, skb, 201), 0); // odd length: the cut sits at an odd offset
      const left = new Uint8Array(bytes.slice(4, 205));
      assert.deepEqual(readPacket(cpu, skb), [...left]);
      assert.equal(csumFold(cpu.u32[(skb + SKB_CSUM) >>> 2] as number), csumFold(csumPartial(left, 0, left.length, 0)));
      consumeSkb(cpu, skb);
    }
    assertNoLeaks(cpu);
  });
});

describe("ethTypeTrans fuzz", () => {
  test("random and mutated frames: never throw, accepted or PKT_TOO_SMALL, nothing leaks", () => {
    const cpu = setup();
    const base = ethFrame(MAC_DEV, MAC_PEER, ETH_P_8021Q, lcgBytes(40, 2));
    let frames = 0;
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ minLength: 0, maxLength: 80 }),
          fc.tuple(fc.nat(base.length - 1), fc.integer({ min: 0, max: 255 }), fc.nat(base.length)).map(([i, v, cut]) => {
            const b = [...base];
            b[i] = v;
            return new Uint8Array(b.slice(0, cut));
          }),
        ),
        fc.integer({ min: 0, max: 80 }),
        (frame, linear) => {
          frames++;
          const skb = skbFromBytes(cpu, frame, { linear, fragSize: 7 });
          const r = ethTypeTrans(cpu, skb, DEV, 0);
          if (frame.length < 14) {
            assert.equal(r, SKB_DROP_REASON.PKT_TOO_SMALL);
            kfreeSkbReason(cpu, skb, r);
            return;
          }
          assert.equal(r, 0);
          assert.deepEqual(readPacket(cpu, skb), [...frame.slice(14)]);
          assert.deepEqual(bytesAt(cpu, skbMacHeader(cpu, skb), 14), [...frame.slice(0, 14)]);
          const t = (frame[12] as number) * 256 + (frame[13] as number);
          if (t >= 0x600) assert.equal(skbProtocol(cpu, skb), t);
          assert.ok(skbPull(cpu, skb, 0) !== 0);
          consumeSkb(cpu, skb);
        },
      ),
      { numRuns: 400 },
    );
    assert.equal(totalFreed(cpu), frames);
    assertNoLeaks(cpu);
  });
});
