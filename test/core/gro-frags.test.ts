/**
 * The GRO frags API (src/core/gro-frags.ts; spec §3.7, §4.4 and behaviour
 * 8 of §9): a driver fills napi->skb from napiGetFrags with a whole frame in
 * frag 0 and calls napiGroFrags. Held and normal skbs come back with the
 * Ethernet header consumed by eth_type_trans; merged frags skbs are recycled
 * as napi->skb (napiReuseSkb) without passing through the NAPI cache, with
 * the 5.12 and 6.19 field resets; impossible frames are counted and reused;
 * pfmemalloc skbs are consumed. Every test ends with a leak check.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { napiGroFrags, napiReuseSkb } from "../../src/core/gro-frags.js";
import { GRO_CONSUMED, GRO_HELD, GRO_MERGED_FREE, GRO_NORMAL, GroList, groFlush } from "../../src/core/gro.js";
import { virtToHeadPage } from "../../src/mm/page-alloc.js";
import { pageFragAlloc } from "../../src/mm/page-frag.js";
import { ETH_P_IP, IPPROTO_UDP } from "../../src/net/proto.js";
import { skbHeadroom, skbHeadlen, skbLen, skbNrFrags, skbShinfo } from "../../src/skb/access.js";
import { type NapiSkbOwner, napiGetFrags } from "../../src/skb/alloc.js";
import { NAPI_STAT_PUTS, napiCacheHits, type SkbCpu } from "../../src/skb/cpu.js";
import { skbAddRxFrag } from "../../src/skb/data.js";
import { SKB_DROP_REASON } from "../../src/skb/drop-reason.js";
import { kfreeSkb } from "../../src/skb/free.js";
import {
  CHECKSUM_NONE,
  CHECKSUM_UNNECESSARY,
  NET_IP_ALIGN,
  NET_SKB_PAD,
  PACKET_HOST,
  PACKET_OTHERHOST,
  SHINFO_GSO_SIZE,
  SHINFO_GSO_TYPE,
  SKB_DEV,
  SKB_END,
  SKB_EXTENSIONS,
  SKB_FLAGS,
  SKB_IIF,
  SKB_IP_SUMMED,
  SKB_NAPI_ID,
  SKB_PKT_TYPE,
  SKB_PROTOCOL,
  SKB_TRUESIZE,
  SKB_VLAN_TCI,
  SKBF_PFMEMALLOC,
  skbDataAlign,
  skbTruesize,
} from "../../src/skb/layout.js";
import { napiCacheSetEnabled } from "../../src/skb/napi-cache.js";
import { skbToBytes } from "../../src/skb/view.js";
import { assertNoLeaks, byteSource, PROFILES } from "../support/skb.js";
import { deliver, ETH, put16, type Seg, segFactory, setupGro as setup, take, tcpPacket } from "../support/tcp.js";

napiCacheSetEnabled(true);

const { bytes } = byteSource(777);
const { flow } = segFactory({ saddr: 0x0a000001, daddr: 0x0a000002, sport: 40001, dport: 5201, seq: 5000, ack: 1, win: 512, id: 7 }, bytes);

/** The receiving device's address: ETH's destination (02:00:00:00:00:01). */
const DEV_MAC = new Uint8Array(ETH.slice(0, 6));

function napiOf(): NapiSkbOwner {
  return { dev: 5, napiId: 0x2001, skb: 0 };
}

/** What a page-receiving driver does: napiGetFrags, the whole frame into frag 0. */
function fillFrags(cpu: SkbCpu, napi: NapiSkbOwner, frame: Uint8Array): number {
  const skb = napiGetFrags(cpu, napi);
  assert.notEqual(skb, 0);
  const f = pageFragAlloc(cpu.napiFrag, skbDataAlign(frame.length));
  assert.notEqual(f, 0);
  cpu.u8.set(frame, f);
  const page = virtToHeadPage(cpu.fragPages, f);
  skbAddRxFrag(cpu, skb, skbNrFrags(cpu, skb), page, f - page, frame.length, frame.length);
  cpu.u8[skb + SKB_IP_SUMMED] = CHECKSUM_UNNECESSARY; // the NIC checked it
  return skb;
}

function ethFrame(pkt: Uint8Array, dst = ETH.slice(0, 6)): Uint8Array {
  const f = new Uint8Array(14 + pkt.length);
  f.set(ETH);
  f.set(dst, 0);
  f.set(pkt, 14);
  return f;
}

function udpPacket(len: number): Uint8Array {
  const b = new Uint8Array(28 + len);
  b[0] = 0x45;
  put16(b, 2, b.length);
  b[8] = 64;
  b[9] = IPPROTO_UDP;
  b.set([10, 0, 0, 1, 10, 0, 0, 2], 12);
  put16(b, 24, 8 + len);
  return b;
}

for (const prof of PROFILES) {
  describe(`napiGroFrags [${prof}]`, () => {
    test("a flow through the frags API: held, then merged; each merged skb becomes napi->skb again, never cached", () => {
      const cpu = setup(prof);
      const gro = new GroList();
      const napi = napiOf();
      const N = 5;
      const segs = flow(N, {}, 1000);
      // First segment: a new flow, held. napi->skb was detached and not replaced.
      const first = fillFrags(cpu, napi, ethFrame(tcpPacket(segs[0] as Seg)));
      assert.equal(cpu.u32[(first + SKB_NAPI_ID) >>> 2], napi.napiId, "napiGetFrags marked the NAPI id");
      assert.equal(napiGroFrags(cpu, gro, napi, DEV_MAC, deliver), GRO_HELD);
      assert.equal(napi.skb, 0, "the held skb left the NAPI instance");
      assert.equal(cpu.u16[(first + SKB_PROTOCOL) >>> 1], ETH_P_IP);
      assert.equal(cpu.u8[first + SKB_PKT_TYPE], PACKET_HOST, "eth_type_trans ran on the held skb");
      // The next segments: one fresh skb (from the NAPI cache), then the same one over and over.
      let reused = 0;
      for (let i = 1; i < N; i++) {
        const puts0 = cpu.stats[NAPI_STAT_PUTS] as number;
        const hits0 = napiCacheHits(cpu);
        const skb = fillFrags(cpu, napi, ethFrame(tcpPacket(segs[i] as Seg)));
        if (i === 1) reused = skb;
        else {
          assert.equal(skb, reused, "napiGetFrags returns the reused skb");
          assert.equal(napiCacheHits(cpu), hits0, "no head taken from the cache");
        }
        assert.equal(napiGroFrags(cpu, gro, napi, DEV_MAC, deliver), GRO_MERGED_FREE);
        assert.equal(napi.skb, skb, "napi_reuse_skb: napi->skb again");
        assert.equal(cpu.stats[NAPI_STAT_PUTS] as number, puts0, "not put into the NAPI cache");
        // The reset state (spec §4.4).
        assert.equal(skbLen(cpu, skb), 0);
        assert.equal(skbHeadlen(cpu, skb), 0);
        assert.equal(skbNrFrags(cpu, skb), 0, "the frags moved into the held skb");
        assert.equal(skbHeadroom(cpu, skb), NET_SKB_PAD + NET_IP_ALIGN);
        assert.equal(cpu.u32[(skb + SKB_DEV) >>> 2], napi.dev);
        assert.equal(cpu.u32[(skb + SKB_IIF) >>> 2], 0);
        assert.equal(cpu.u8[skb + SKB_PKT_TYPE], PACKET_HOST);
        assert.equal(cpu.u32[(skbShinfo(cpu, skb) + SHINFO_GSO_TYPE) >>> 2], 0);
        const ts = cpu.u32[(skb + SKB_TRUESIZE) >>> 2] as number;
        if (prof === "5.12") assert.equal(ts, skbTruesize(cpu.u32[(skb + SKB_END) >>> 2] as number), "5.12 resets truesize");
        else {
          assert.equal(cpu.u8[skb + SKB_IP_SUMMED], CHECKSUM_NONE, "6.19 clears ip_summed");
          assert.equal(cpu.u16[(skbShinfo(cpu, skb) + SHINFO_GSO_SIZE) >>> 1], 0, "6.19 clears gso_size");
        }
      }
      groFlush(cpu, gro, true, deliver);
      const out = take();
      assert.deepEqual(out, [first]);
      assert.equal(skbLen(cpu, first), 20 + 32 + N * 1000, "one aggregate with every payload");
      assert.equal(skbNrFrags(cpu, first), N);
      kfreeSkb(cpu, first);
      kfreeSkb(cpu, napi.skb); // a driver tearing its NAPI down frees napi->skb
      assertNoLeaks(cpu);
    });

    test("not for GRO: GRO_NORMAL, delivered with the Ethernet header consumed and pkt_type set", () => {
      const cpu = setup(prof);
      const gro = new GroList();
      const napi = napiOf();
      const skb = fillFrags(cpu, napi, ethFrame(udpPacket(100), [2, 0, 0, 0, 0, 9]));
      assert.equal(napiGroFrags(cpu, gro, napi, DEV_MAC, deliver), GRO_NORMAL);
      assert.deepEqual(take(), [skb]);
      assert.equal(napi.skb, 0);
      assert.equal(cpu.u16[(skb + SKB_PROTOCOL) >>> 1], ETH_P_IP);
      assert.equal(cpu.u8[skb + SKB_PKT_TYPE], PACKET_OTHERHOST, "another host's unicast address");
      assert.equal(skbLen(cpu, skb), 28 + 100, "data at the IPv4 header");
      assert.deepEqual(skbToBytes(cpu, skb).subarray(0, 1), new Uint8Array([0x45]));
      kfreeSkb(cpu, skb);
      assertNoLeaks(cpu);
    });

    test("an impossible frame (under 14 bytes): counted PKT_TOO_SMALL, frags released, the skb reused", () => {
      const cpu = setup(prof);
      const gro = new GroList();
      const napi = napiOf();
      const drops0 = cpu.drops[SKB_DROP_REASON.PKT_TOO_SMALL] as number;
      const skb = fillFrags(cpu, napi, new Uint8Array(10));
      assert.equal(napiGroFrags(cpu, gro, napi, DEV_MAC, deliver), GRO_CONSUMED);
      assert.equal(cpu.drops[SKB_DROP_REASON.PKT_TOO_SMALL], drops0 + 1);
      assert.equal(napi.skb, skb);
      assert.equal(skbNrFrags(cpu, skb), 0);
      assert.equal(skbLen(cpu, skb), 0);
      assert.deepEqual(take(), []);
      kfreeSkb(cpu, napi.skb);
      assertNoLeaks(cpu);
    });

    test("napiReuseSkb: a pfmemalloc skb is consumed instead; the VLAN tag and extensions are cleared", () => {
      const cpu = setup(prof);
      const napi = napiOf();
      const a = napiGetFrags(cpu, napi);
      napi.skb = 0;
      cpu.u16[(a + SKB_VLAN_TCI) >>> 1] = 42;
      cpu.u32[(a + SKB_EXTENSIONS) >>> 2] = 0; // none attached (a non-zero value is an extension handle)
      napiReuseSkb(cpu, napi, a);
      assert.equal(napi.skb, a);
      assert.equal(cpu.u16[(a + SKB_VLAN_TCI) >>> 1], 0);
      napi.skb = 0;
      cpu.u8[a + SKB_FLAGS] = (cpu.u8[a + SKB_FLAGS] as number) | SKBF_PFMEMALLOC;
      napiReuseSkb(cpu, napi, a);
      assert.equal(napi.skb, 0, "pfmemalloc: consumed, not reused");
      assertNoLeaks(cpu);
    });

    test("napiGroFrags without napiGetFrags is a clear error", () => {
      const cpu = setup(prof);
      assert.throws(() => napiGroFrags(cpu, new GroList(), napiOf(), DEV_MAC, deliver), /holds no skb \(call napiGetFrags/);
      assertNoLeaks(cpu);
    });
  });
}
