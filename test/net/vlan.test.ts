/**
 * 802.1Q: untag on receive (bytes, headers, protocol, CHECKSUM_COMPLETE,
 * truncated tags, QinQ, clones), insertion on transmit, the out-of-band tag
 * helpers, a byte-exact round trip, and a fuzz pass.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { skbDataPtr, skbLen, skbMacHeader, skbNetworkHeader, skbProtocol } from "../../src/skb/access.js";
import { skbClone } from "../../src/skb/clone.js";
import { __skbPush } from "../../src/skb/data.js";
import { SKB_DROP_REASON } from "../../src/skb/drop-reason.js";
import { consumeSkb, kfreeSkbReason } from "../../src/skb/free.js";
import { CHECKSUM_COMPLETE, SKB_CSUM, SKB_IP_SUMMED, SKB_MAC_LEN } from "../../src/skb/layout.js";
import { csumFold, csumPartial } from "../../src/net/checksum.js";
import { ETH_P_802_2, ETH_P_802_3, ethTypeTrans } from "../../src/net/ethernet.js";
import { ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP } from "../../src/net/proto.js";
import {
  __vlanHwaccelClearTag,
  __vlanHwaccelPushInside,
  __vlanHwaccelPutTag,
  ethTypeVlan,
  skbVlanProto,
  skbVlanPush,
  skbVlanTagGet,
  skbVlanTagGetId,
  skbVlanTagGetPrio,
  skbVlanTagPresent,
  skbVlanUntag,
  vlanInsertTag,
  vlanInsertTagSetProto,
} from "../../src/net/vlan.js";
import {
  assertNoLeaks,
  bytesAt,
  ethFrame,
  lcgBytes,
  MAC_DEV,
  MAC_PEER,
  readPacket,
  setup,
  skbFromBytes,
  totalFreed,
  vlanFrame,
} from "./net-helpers.js";

const DEV = new Uint8Array(MAC_DEV);

describe("skbVlanUntag", () => {
  test("moves the tag out of band, the MAC addresses up, protocol to the inner type", () => {
    const cpu = setup();
    const payload = lcgBytes(50, 1);
    const frame = vlanFrame(MAC_DEV, MAC_PEER, ETH_P_8021Q, 0xa064, ETH_P_IP, payload); // PCP 5, VID 100
    const skb = skbFromBytes(cpu, frame);
    const start = skbDataPtr(cpu, skb);
    assert.equal(ethTypeTrans(cpu, skb, DEV, 0), 0);
    assert.equal(skbProtocol(cpu, skb), ETH_P_8021Q);
    assert.equal(skbVlanUntag(cpu, skb), 0);
    assert.ok(skbVlanTagPresent(cpu, skb));
    assert.equal(skbVlanProto(cpu, skb), ETH_P_8021Q);
    assert.equal(skbVlanTagGet(cpu, skb), 0xa064);
    assert.equal(skbVlanTagGetId(cpu, skb), 100);
    assert.equal(skbVlanTagGetPrio(cpu, skb), 5);
    assert.equal(skbProtocol(cpu, skb), ETH_P_IP);
    // Data, network header at the payload; the MAC header 4 bytes later, holding dst, src, inner type.
    assert.equal(skbDataPtr(cpu, skb), start + 18);
    assert.equal(skbNetworkHeader(cpu, skb), start + 18);
    assert.equal(skbMacHeader(cpu, skb), start + 4);
    assert.equal(cpu.u16[(skb + SKB_MAC_LEN) >>> 1], 14);
    assert.deepEqual(bytesAt(cpu, skbMacHeader(cpu, skb), 14), ethFrame(MAC_DEV, MAC_PEER, ETH_P_IP, []));
    assert.deepEqual(readPacket(cpu, skb), payload);
    consumeSkb(cpu, skb);
    assertNoLeaks(cpu);
  });

  test("round trip: untag, push the MAC header back, insert the tag → the original frame", () => {
    const cpu = setup();
    for (const [tpid, tci] of [
      [ETH_P_8021Q, 0x0001],
      [ETH_P_8021AD, 0xefff],
      [ETH_P_8021Q, 0],
    ] as const) {
      const frame = vlanFrame(MAC_PEER, MAC_DEV, tpid, tci, 0x86dd, lcgBytes(64, tci));
      const skb = skbFromBytes(cpu, frame, { headroom: 2 });
      assert.equal(ethTypeTrans(cpu, skb, DEV, 0), 0);
      assert.equal(skbVlanUntag(cpu, skb), 0);
      __skbPush(cpu, skb, skbDataPtr(cpu, skb) - skbMacHeader(cpu, skb));
      const proto = skbVlanProto(cpu, skb);
      const t = skbVlanTagGet(cpu, skb);
      __vlanHwaccelClearTag(cpu, skb);
      assert.ok(!skbVlanTagPresent(cpu, skb));
      assert.equal(vlanInsertTag(cpu, skb, proto, t), 0);
      assert.deepEqual(readPacket(cpu, skb), frame);
      assert.equal(skbMacHeader(cpu, skb), skbDataPtr(cpu, skb));
      consumeSkb(cpu, skb);
    }
    assertNoLeaks(cpu);
  });

  test("a header in page frags, and a cloned skb: clone bytes stay as received", () => {
    const cpu = setup();
    const payload = lcgBytes(200, 2);
    const frame = vlanFrame(MAC_DEV, MAC_PEER, ETH_P_8021Q, 7, ETH_P_IP, payload);
    const skb = skbFromBytes(cpu, frame, { linear: 14, fragSize: 3 });
    assert.equal(ethTypeTrans(cpu, skb, DEV, 0), 0);
    const clone = skbClone(cpu, skb);
    assert.equal(skbVlanUntag(cpu, skb), 0);
    assert.deepEqual(readPacket(cpu, skb), payload);
    assert.deepEqual(bytesAt(cpu, skbMacHeader(cpu, skb), 14), ethFrame(MAC_DEV, MAC_PEER, ETH_P_IP, []));
    assert.deepEqual(bytesAt(cpu, skbMacHeader(cpu, clone), 14), frame.slice(0, 14));
    assert.deepEqual(readPacket(cpu, clone), frame.slice(14));
    consumeSkb(cpu, skb);
    consumeSkb(cpu, clone);
    assertNoLeaks(cpu);
  });

  test("truncated tags are HDR_TRUNC and leave the skb alone", () => {
    const cpu = setup();
    for (let extra = 0; extra < 6; extra++) {
      const frame = [...MAC_DEV, ...MAC_PEER, 0x81, 0x00, ...lcgBytes(extra, extra)];
      const skb = skbFromBytes(cpu, frame);
      assert.equal(ethTypeTrans(cpu, skb, DEV, 0), 0);
      const d = skbDataPtr(cpu, skb);
      assert.equal(skbVlanUntag(cpu, skb), SKB_DROP_REASON.HDR_TRUNC);
      assert.equal(skbDataPtr(cpu, skb), d);
      assert.ok(!skbVlanTagPresent(cpu, skb));
      kfreeSkbReason(cpu, skb, SKB_DROP_REASON.HDR_TRUNC);
    }
    // The kernel wants tag + inner type + 2 bytes (it may peek at an LLC SAP): accepted.
    const skb = skbFromBytes(cpu, vlanFrame(MAC_DEV, MAC_PEER, ETH_P_8021Q, 9, ETH_P_IP, [1, 2]));
    assert.equal(ethTypeTrans(cpu, skb, DEV, 0), 0);
    assert.equal(skbVlanUntag(cpu, skb), 0);
    assert.equal(skbLen(cpu, skb), 2);
    consumeSkb(cpu, skb);
    assert.equal(cpu.drops[SKB_DROP_REASON.HDR_TRUNC], 6);
    assertNoLeaks(cpu);
  });

  test("QinQ: one tag per call; a present tag or a non-VLAN protocol is a no-op", () => {
    const cpu = setup();
    const inner = vlanFrame(MAC_DEV, MAC_PEER, ETH_P_8021Q, 20, ETH_P_IP, lcgBytes(30, 3)).slice(12);
    const frame = [...MAC_DEV, ...MAC_PEER, 0x88, 0xa8, 0x00, 0x0a, ...inner]; // S-tag 10, C-tag 20
    const skb = skbFromBytes(cpu, frame);
    assert.equal(ethTypeTrans(cpu, skb, DEV, 0), 0);
    assert.equal(skbVlanUntag(cpu, skb), 0);
    assert.equal(skbVlanProto(cpu, skb), ETH_P_8021AD);
    assert.equal(skbVlanTagGetId(cpu, skb), 10);
    assert.equal(skbProtocol(cpu, skb), ETH_P_8021Q);
    const before = readPacket(cpu, skb);
    assert.equal(skbVlanUntag(cpu, skb), 0, "tag present: left for another pass");
    assert.deepEqual(readPacket(cpu, skb), before);
    // The vlan device would clear the tag; then the next pass takes the C-tag.
    __vlanHwaccelClearTag(cpu, skb);
    assert.equal(skbVlanUntag(cpu, skb), 0);
    assert.equal(skbVlanTagGetId(cpu, skb), 20);
    assert.equal(skbProtocol(cpu, skb), ETH_P_IP);
    assert.deepEqual(readPacket(cpu, skb), lcgBytes(30, 3));
    assert.deepEqual(bytesAt(cpu, skbMacHeader(cpu, skb), 14), ethFrame(MAC_DEV, MAC_PEER, ETH_P_IP, []));
    consumeSkb(cpu, skb);
    const plain = skbFromBytes(cpu, ethFrame(MAC_DEV, MAC_PEER, ETH_P_IP, [1, 2, 3]));
    assert.equal(ethTypeTrans(cpu, plain, DEV, 0), 0);
    assert.equal(skbVlanUntag(cpu, plain), 0);
    assert.ok(!skbVlanTagPresent(cpu, plain));
    assert.deepEqual(readPacket(cpu, plain), [1, 2, 3]);
    consumeSkb(cpu, plain);
    assertNoLeaks(cpu);
  });

  test("802.3 inside a tag: raw IPX and LLC", () => {
    const cpu = setup();
    for (const [first, want] of [
      [[0xff, 0xff], ETH_P_802_3],
      [[0xaa, 0xaa], ETH_P_802_2],
    ] as const) {
      const skb = skbFromBytes(cpu, vlanFrame(MAC_DEV, MAC_PEER, ETH_P_8021Q, 5, 40, [...first, ...lcgBytes(38)]));
      assert.equal(ethTypeTrans(cpu, skb, DEV, 0), 0);
      assert.equal(skbVlanUntag(cpu, skb), 0);
      assert.equal(skbProtocol(cpu, skb), want);
      consumeSkb(cpu, skb);
    }
    assertNoLeaks(cpu);
  });

  test("CHECKSUM_COMPLETE: the tag's sum is subtracted", () => {
    const cpu = setup();
    const payload = lcgBytes(99, 4);
    const frame = vlanFrame(MAC_DEV, MAC_PEER, ETH_P_8021Q, 0x1234, ETH_P_IP, payload);
    const skb = skbFromBytes(cpu, frame);
    assert.equal(ethTypeTrans(cpu, skb, DEV, 0), 0);
    // A driver's CHECKSUM_COMPLETE covers what follows the Ethernet header.
    cpu.u8[skb + SKB_IP_SUMMED] = CHECKSUM_COMPLETE;
    cpu.u32[(skb + SKB_CSUM) >>> 2] = csumPartial(new Uint8Array(frame), 14, frame.length - 14, 0);
    assert.equal(skbVlanUntag(cpu, skb), 0);
    assert.equal(
      csumFold(cpu.u32[(skb + SKB_CSUM) >>> 2] as number),
      csumFold(csumPartial(new Uint8Array(frame), 18, frame.length - 18, 0)),
    );
    consumeSkb(cpu, skb);
    assertNoLeaks(cpu);
  });
});

describe("tag insertion and the out-of-band tag", () => {
  test("vlanInsertTag on a frame with no headroom expands the head", () => {
    const cpu = setup();
    const payload = lcgBytes(40, 5);
    const frame = ethFrame(MAC_PEER, MAC_DEV, ETH_P_IP, payload);
    const skb = skbFromBytes(cpu, frame, { headroom: 0 });
    assert.equal(vlanInsertTagSetProto(cpu, skb, ETH_P_8021Q, 0x0fff), 0);
    assert.deepEqual(readPacket(cpu, skb), vlanFrame(MAC_PEER, MAC_DEV, ETH_P_8021Q, 0x0fff, ETH_P_IP, payload));
    assert.equal(skbProtocol(cpu, skb), ETH_P_8021Q);
    consumeSkb(cpu, skb);
    assertNoLeaks(cpu);
  });

  test("__vlanHwaccelPushInside writes the out-of-band tag into the frame", () => {
    const cpu = setup();
    const payload = lcgBytes(40, 6);
    const skb = skbFromBytes(cpu, ethFrame(MAC_PEER, MAC_DEV, ETH_P_IP, payload));
    assert.equal(__vlanHwaccelPushInside(cpu, skb), 0, "no tag: no-op");
    __vlanHwaccelPutTag(cpu, skb, ETH_P_8021Q, 42);
    assert.equal(__vlanHwaccelPushInside(cpu, skb), 0);
    assert.ok(!skbVlanTagPresent(cpu, skb));
    assert.deepEqual(readPacket(cpu, skb), vlanFrame(MAC_PEER, MAC_DEV, ETH_P_8021Q, 42, ETH_P_IP, payload));
    consumeSkb(cpu, skb);
    assertNoLeaks(cpu);
  });

  test("skbVlanPush: the present tag goes inside, the new one out of band", () => {
    const cpu = setup();
    const payload = lcgBytes(30, 7);
    const skb = skbFromBytes(cpu, ethFrame(MAC_PEER, MAC_DEV, ETH_P_IP, payload));
    cpu.u16[(skb + 110) >>> 1] = 64; // mac header = data (headroom 64)
    cpu.u16[(skb + SKB_MAC_LEN) >>> 1] = 14;
    assert.equal(skbVlanPush(cpu, skb, ETH_P_8021Q, 100), 0);
    assert.deepEqual(readPacket(cpu, skb), ethFrame(MAC_PEER, MAC_DEV, ETH_P_IP, payload), "first push: out of band only");
    assert.equal(skbVlanPush(cpu, skb, ETH_P_8021AD, 200), 0);
    assert.deepEqual(readPacket(cpu, skb), vlanFrame(MAC_PEER, MAC_DEV, ETH_P_8021Q, 100, ETH_P_IP, payload));
    assert.equal(skbVlanProto(cpu, skb), ETH_P_8021AD);
    assert.equal(skbVlanTagGet(cpu, skb), 200);
    assert.equal(skbProtocol(cpu, skb), ETH_P_8021Q);
    assert.equal(cpu.u16[(skb + SKB_MAC_LEN) >>> 1], 18);
    // data not at the MAC header: -EINVAL
    cpu.u16[(skb + 110) >>> 1] = 0;
    assert.equal(skbVlanPush(cpu, skb, ETH_P_8021Q, 1), -22);
    consumeSkb(cpu, skb);
    assert.ok(ethTypeVlan(ETH_P_8021Q) && ethTypeVlan(ETH_P_8021AD) && !ethTypeVlan(ETH_P_IP));
    assertNoLeaks(cpu);
  });
});

describe("VLAN fuzz", () => {
  test("random tagged and mutated frames: never throw; accepted frames lose exactly the tag", () => {
    const cpu = setup();
    let frames = 0;
    fc.assert(
      fc.property(
        fc.constantFrom(ETH_P_8021Q, ETH_P_8021AD, ETH_P_IP, 0x0100),
        fc.uint8Array({ minLength: 0, maxLength: 40 }),
        fc.integer({ min: 0, max: 60 }),
        fc.integer({ min: 0, max: 40 }),
        (tpid, rest, linear, headroom) => {
          frames++;
          const frame = [...MAC_DEV, ...MAC_PEER, tpid >> 8, tpid & 255, ...rest];
          const skb = skbFromBytes(cpu, frame, { linear, fragSize: 5, headroom });
          assert.equal(ethTypeTrans(cpu, skb, DEV, 0), 0);
          const r = skbVlanUntag(cpu, skb);
          const isVlan = tpid === ETH_P_8021Q || tpid === ETH_P_8021AD;
          if (!isVlan) {
            assert.equal(r, 0);
            assert.deepEqual(readPacket(cpu, skb), [...rest]);
          } else if (rest.length < 6) {
            assert.equal(r, SKB_DROP_REASON.HDR_TRUNC);
          } else {
            assert.equal(r, 0);
            assert.equal(skbVlanTagGet(cpu, skb), (rest[0] as number) * 256 + (rest[1] as number));
            assert.deepEqual(readPacket(cpu, skb), [...rest.slice(4)]);
            assert.deepEqual(bytesAt(cpu, skbMacHeader(cpu, skb), 14), [...MAC_DEV, ...MAC_PEER, rest[2], rest[3]]);
          }
          kfreeSkbReason(cpu, skb, r === 0 ? SKB_DROP_REASON.CONSUMED : r);
        },
      ),
      { numRuns: 400 },
    );
    assert.equal(totalFreed(cpu), frames);
    assertNoLeaks(cpu);
  });
});
