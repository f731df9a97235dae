/**
 * IPv4 reassembly: exact results (bytes, headers, frag_list shape, IPCB,
 * counters, memory accounting), every kernel rule — duplicates, RFC 5722
 * overlaps, last-fragment consistency, zero-length fragments, 65535 limit,
 * ECN, DF — the fake-clock timeout with its ICMP hook, the memory and
 * queue-slot limits, ipfrag_max_dist; property tests with random
 * fragmentation, order and duplication; and a fuzz pass of the whole receive
 * path (Ethernet → VLAN → IPv4 → reassembly) on random and mutated frames.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { skbCloned, skbDataPtr, skbFragList, skbLen, skbNetworkHeader, skbTransportHeader } from "../../src/skb/access.js";
import { skbClone } from "../../src/skb/clone.js";
import type { SkbCpu } from "../../src/skb/cpu.js";
import { SKB_DROP_REASON } from "../../src/skb/drop-reason.js";
import { consumeSkb, kfreeSkbListReason, kfreeSkbReason } from "../../src/skb/free.js";
import { SKB_DEV, SKB_NEXT, SKB_PROTOCOL } from "../../src/skb/layout.js";
import { ethTypeTrans } from "../../src/net/ethernet.js";
import { icmpSend } from "../../src/net/icmp.js";
import {
  IPFRAG_HIGH_THRESH,
  IPFRAG_TIME_MS,
  IPQ_TRUESIZE,
  ipDefrag,
  ipFragCreate,
  ipFragDestroyAll,
  ipFragExpire,
  ipFragMem,
  ipFragQueueCount,
  type IpFragQueues,
} from "../../src/net/ip-frag.js";
import {
  IPCB_FLAGS,
  IPCB_FRAG_MAX_SIZE,
  IPSKB_FRAG_PMTU,
  IPSKB_IGNORE_DF,
  IPSTATS_MIB_REASM_OVERLAPS,
  IPSTATS_MIB_REASMFAILS,
  IPSTATS_MIB_REASMOKS,
  IPSTATS_MIB_REASMREQDS,
  IPSTATS_MIB_REASMTIMEOUT,
  ipFragment,
  ipRcvCore,
  ipStatsCreate,
} from "../../src/net/ipv4.js";
import { ETH_P_8021Q, ETH_P_IP, ICMP_EXC_FRAGTIME, ICMP_TIME_EXCEEDED, IP_DF, IP_MF } from "../../src/net/proto.js";
import { skbVlanUntag } from "../../src/net/vlan.js";
import {
  assertNoLeaks,
  ethFrame,
  icmpMessage,
  ip,
  ipv4Packet,
  lcgBytes,
  MAC_DEV,
  MAC_PEER,
  readPacket,
  refCsum,
  setup,
  skbFromBytes,
  totalFreed,
  vlanFrame,
} from "./net-helpers.js";

const SRC = ip("192.0.2.10");
const DST = ip("198.51.100.20");

/** A fake clock. */
function fakeClock(): { now: number; fn: () => number } {
  const c = { now: 1000, fn: () => c.now };
  return c;
}

interface FragSpec {
  off: number;
  len: number;
  mf: boolean;
  df?: boolean;
  tos?: number;
  id?: number;
  src?: number;
}

/** One fragment of `payload` as wire bytes. */
function fragBytes(payload: number[], f: FragSpec, options: number[] = []): number[] {
  return ipv4Packet(
    {
      src: f.src ?? SRC,
      dst: DST,
      proto: 17,
      id: f.id ?? 0x5151,
      tos: f.tos ?? 0,
      ttl: 61,
      options,
      fragOff: (f.off >> 3) | (f.mf ? IP_MF : 0) | (f.df ? IP_DF : 0),
    },
    payload.slice(f.off, f.off + f.len),
  );
}

/** Receive bytes through ipRcvCore (must pass). */
function rx(cpu: SkbCpu, bytes: number[], shape: Parameters<typeof skbFromBytes>[2] = {}): number {
  const skb = skbFromBytes(cpu, bytes, shape);
  assert.equal(ipRcvCore(cpu, skb, ipStatsCreate()), 0);
  return skb;
}

/** Feed specs in order; returns the reassembled skb (or 0) after the last. */
function feed(cpu: SkbCpu, fq: IpFragQueues, payload: number[], specs: FragSpec[]): number {
  let r = 0;
  for (const f of specs) {
    assert.equal(r, 0, "completed early");
    r = ipDefrag(cpu, fq, rx(cpu, fragBytes(payload, f)));
  }
  return r;
}

function newFq(o: Parameters<typeof ipFragCreate>[0] = {}) {
  const clock = fakeClock();
  const stats = ipStatsCreate();
  const fq = ipFragCreate({ clock: clock.fn, stats, ...o });
  return { fq, clock, stats };
}

function frags(total: number, size: number): FragSpec[] {
  const out: FragSpec[] = [];
  for (let off = 0; off < total; off += size) out.push({ off, len: Math.min(size, total - off), mf: off + size < total });
  return out;
}

describe("ipDefrag: exact results", () => {
  test("three in-order fragments → the datagram, chained on the first fragment's frag_list", () => {
    const cpu = setup();
    const { fq, stats } = newFq();
    const payload = lcgBytes(3000, 1);
    const specs = frags(3000, 1200);
    const skbs = specs.map((f) => rx(cpu, fragBytes(payload, f)));
    assert.equal(ipDefrag(cpu, fq, skbs[0]!), 0);
    assert.equal(fq.lastResult, 0);
    assert.equal(ipFragQueueCount(fq), 1);
    assert.equal(ipDefrag(cpu, fq, skbs[1]!), 0);
    const r = ipDefrag(cpu, fq, skbs[2]!);
    assert.equal(r, skbs[0], "the head is the first fragment");
    const want = ipv4Packet({ src: SRC, dst: DST, proto: 17, id: 0x5151, ttl: 61 }, payload);
    assert.deepEqual(readPacket(cpu, r), want);
    assert.equal(skbLen(cpu, r), 3020);
    assert.equal(skbNetworkHeader(cpu, r), skbDataPtr(cpu, r));
    assert.equal(skbTransportHeader(cpu, r), skbDataPtr(cpu, r) + 20);
    // frag_list: fragment 2 then 3, next-linked.
    const fl = skbFragList(cpu, r);
    assert.equal(fl, skbs[1]);
    assert.equal(cpu.u32[(fl + SKB_NEXT) >>> 2], skbs[2]);
    assert.equal(cpu.u32[(skbs[2]! + SKB_NEXT) >>> 2], 0);
    assert.equal(cpu.u16[(r + IPCB_FRAG_MAX_SIZE) >>> 1], 1220);
    assert.equal(cpu.u16[(r + IPCB_FLAGS) >>> 1], IPSKB_IGNORE_DF);
    assert.deepEqual([stats[IPSTATS_MIB_REASMREQDS], stats[IPSTATS_MIB_REASMOKS], stats[IPSTATS_MIB_REASMFAILS]], [3, 1, 0]);
    assert.equal(ipFragQueueCount(fq), 0);
    assert.equal(ipFragMem(fq), 0);
    consumeSkb(cpu, r);
    assertNoLeaks(cpu);
  });

  test("a cloned first fragment: the head is uncloned before its frag_list is set; the clone keeps its bytes", () => {
    const cpu = setup();
    const { fq } = newFq();
    const payload = lcgBytes(40, 17);
    const first = rx(cpu, fragBytes(payload, { off: 0, len: 16, mf: true }));
    const clone = skbClone(cpu, first);
    const cloneBytes = readPacket(cpu, clone);
    assert.equal(ipDefrag(cpu, fq, first), 0);
    const r = ipDefrag(cpu, fq, rx(cpu, fragBytes(payload, { off: 16, len: 24, mf: false })));
    assert.equal(r, first);
    assert.ok(!skbCloned(cpu, r));
    assert.equal(skbFragList(cpu, clone), 0, "the clone's shared info is not the head's any more");
    assert.deepEqual(readPacket(cpu, clone), cloneBytes);
    assert.deepEqual(readPacket(cpu, r).slice(20), payload);
    assert.equal(ipFragMem(fq), 0);
    consumeSkb(cpu, r);
    consumeSkb(cpu, clone);
    assertNoLeaks(cpu);
  });

  test("non-fragments pass through untouched", () => {
    const cpu = setup();
    const { fq, stats } = newFq();
    const pkt = ipv4Packet({ src: SRC, dst: DST, proto: 6, fragOff: IP_DF }, lcgBytes(100));
    const skb = rx(cpu, pkt);
    assert.equal(ipDefrag(cpu, fq, skb), skb);
    assert.deepEqual(readPacket(cpu, skb), pkt);
    assert.equal(stats[IPSTATS_MIB_REASMREQDS], 0);
    consumeSkb(cpu, skb);
    assertNoLeaks(cpu);
  });

  test("reverse order, out-of-order middles, and a paged first fragment with IP options", () => {
    const cpu = setup();
    const { fq } = newFq();
    const payload = lcgBytes(5000, 2);
    const specs = frags(5000, 800);
    const order = [6, 2, 4, 0, 5, 1, 3];
    let r = 0;
    for (const i of order) {
      const opts = i === 0 ? [0x94, 4, 0, 0] : [];
      const skb = rx(cpu, fragBytes(payload, specs[i]!, opts), { linear: 30, fragSize: 300 });
      r = ipDefrag(cpu, fq, skb);
      if (i !== 3) assert.equal(r, 0);
    }
    assert.ok(r > 0);
    const out = readPacket(cpu, r);
    assert.equal(out.length, 24 + 5000);
    assert.deepEqual(out.slice(24), payload);
    assert.equal(out[0], 0x46);
    assert.equal(out[2]! * 256 + out[3]!, 5024);
    assert.equal(out[6]! * 256 + out[7]!, 0, "frag_off cleared");
    assert.equal(refCsum(out, 0, 24), 0);
    consumeSkb(cpu, r);
    assert.equal(ipFragMem(fq), 0);
    assertNoLeaks(cpu);
  });

  test("all fragments DF: DF kept, IPSKB_FRAG_PMTU; ipFragment then refragments to the original size", () => {
    const cpu = setup();
    const { fq } = newFq();
    const payload = lcgBytes(2000, 3);
    const specs = frags(2000, 504).map((f) => ({ ...f, df: true }));
    const r = feed(cpu, fq, payload, specs);
    const out = readPacket(cpu, r);
    assert.equal(out[6]! * 256 + out[7]!, IP_DF);
    assert.equal(cpu.u16[(r + IPCB_FLAGS) >>> 1], IPSKB_IGNORE_DF | IPSKB_FRAG_PMTU);
    assert.equal(cpu.u16[(r + IPCB_FRAG_MAX_SIZE) >>> 1], 524);
    cpu.u16[(r + SKB_PROTOCOL) >>> 1] = ETH_P_IP;
    // Forwarding with MTU 1500: frag_max_size caps the pieces at 524, DF on each.
    const st = ipStatsCreate();
    const first = ipFragment(cpu, r, 1500, st);
    const pieces: number[][] = [];
    for (let s = first; s !== 0; s = cpu.u32[(s + SKB_NEXT) >>> 2] as number) pieces.push(readPacket(cpu, s));
    assert.deepEqual(
      pieces.map((p) => [p.length, (p[6]! * 256 + p[7]!) & ~0x1fff]),
      [
        [524, IP_DF | IP_MF],
        [524, IP_DF | IP_MF],
        [524, IP_DF | IP_MF],
        [508, IP_DF],
      ],
    );
    assert.deepEqual(pieces.flatMap((p) => p.slice(20)), payload);
    kfreeSkbListReason(cpu, first, SKB_DROP_REASON.CONSUMED);
    assertNoLeaks(cpu);
  });

  test("one small DF fragment among bigger non-DF ones: no DF on the result", () => {
    const cpu = setup();
    const { fq } = newFq();
    const payload = lcgBytes(1008, 4);
    const r = feed(cpu, fq, payload, [
      { off: 0, len: 1000, mf: true },
      { off: 1000, len: 8, mf: false, df: true },
    ]);
    assert.equal(readPacket(cpu, r)[6], 0);
    assert.equal(cpu.u16[(r + IPCB_FLAGS) >>> 1], IPSKB_IGNORE_DF);
    consumeSkb(cpu, r);
    assertNoLeaks(cpu);
  });

  test("ECN: ECT(0) + CE → CE on the result; not-ECT + CE → dropped", () => {
    const cpu = setup();
    const { fq, stats } = newFq();
    const payload = lcgBytes(16, 5);
    const r = feed(cpu, fq, payload, [
      { off: 0, len: 8, mf: true, tos: 0x02 },
      { off: 8, len: 8, mf: false, tos: 0x03 },
    ]);
    assert.equal(readPacket(cpu, r)[1], 0x03);
    consumeSkb(cpu, r);
    const bad = feed(cpu, fq, payload, [
      { off: 0, len: 8, mf: true, tos: 0x00, id: 2 },
      { off: 8, len: 8, mf: false, tos: 0x03, id: 2 },
    ]);
    assert.equal(bad, 0);
    assert.equal(fq.lastResult, SKB_DROP_REASON.NOT_SPECIFIED);
    assert.equal(stats[IPSTATS_MIB_REASMFAILS], 1);
    assert.equal(ipFragQueueCount(fq), 0);
    assert.equal(ipFragMem(fq), 0);
    assertNoLeaks(cpu);
  });
});

describe("ipDefrag: kernel rules", () => {
  test("an exact duplicate, and a fragment inside an existing run, are dropped alone", () => {
    const cpu = setup();
    const { fq } = newFq();
    const payload = lcgBytes(48, 6);
    assert.equal(feed(cpu, fq, payload, [{ off: 0, len: 8, mf: true }, { off: 8, len: 16, mf: true }]), 0);
    const before = cpu.drops[SKB_DROP_REASON.NOT_SPECIFIED]!;
    assert.equal(ipDefrag(cpu, fq, rx(cpu, fragBytes(payload, { off: 0, len: 8, mf: true }))), 0);
    assert.equal(fq.lastResult, SKB_DROP_REASON.NOT_SPECIFIED);
    // [8,16) lies inside the run [0,24): a duplicate by the kernel's run rule.
    assert.equal(ipDefrag(cpu, fq, rx(cpu, fragBytes(payload, { off: 8, len: 8, mf: true }))), 0);
    assert.equal(cpu.drops[SKB_DROP_REASON.NOT_SPECIFIED], before + 2);
    assert.equal(ipFragQueueCount(fq), 1, "queue kept");
    const r = ipDefrag(cpu, fq, rx(cpu, fragBytes(payload, { off: 24, len: 24, mf: false })));
    assert.ok(r > 0);
    assert.deepEqual(readPacket(cpu, r).slice(20), payload);
    consumeSkb(cpu, r);
    assertNoLeaks(cpu);
  });

  test("RFC 5722: an overlapping fragment destroys the queue (at the end, and in the middle)", () => {
    const cpu = setup();
    const { fq, stats } = newFq();
    const payload = lcgBytes(64, 7);
    feed(cpu, fq, payload, [{ off: 0, len: 16, mf: true }]);
    assert.equal(ipDefrag(cpu, fq, rx(cpu, fragBytes(payload, { off: 8, len: 16, mf: true }))), 0);
    assert.equal(ipFragQueueCount(fq), 0);
    assert.equal(stats[IPSTATS_MIB_REASM_OVERLAPS], 1);
    assert.equal(stats[IPSTATS_MIB_REASMFAILS], 1);
    // Middle: runs [0,8) and [32,40); [8,40) fills the gap and overlaps the second run.
    feed(cpu, fq, payload, [{ off: 0, len: 8, mf: true, id: 9 }, { off: 32, len: 8, mf: true, id: 9 }]);
    assert.equal(ipFragQueueCount(fq), 1);
    assert.equal(ipDefrag(cpu, fq, rx(cpu, fragBytes(payload, { off: 8, len: 32, mf: true, id: 9 }))), 0);
    assert.equal(stats[IPSTATS_MIB_REASM_OVERLAPS], 2);
    assert.equal(ipFragQueueCount(fq), 0);
    assert.equal(ipFragMem(fq), 0);
    assertNoLeaks(cpu);
  });

  test("final fragment rules: a second, different end; data beyond the end; zero-length fragments", () => {
    const cpu = setup();
    const { fq, stats } = newFq();
    const payload = lcgBytes(200, 8);
    const cases: FragSpec[][] = [
      [{ off: 96, len: 8, mf: false }, { off: 96, len: 16, mf: false }],
      [{ off: 96, len: 8, mf: false }, { off: 104, len: 8, mf: true }],
      [{ off: 96, len: 8, mf: true }, { off: 8, len: 40, mf: false }],
      [{ off: 8, len: 7, mf: true }],
    ];
    cases.forEach((c, i) => {
      const r = feed(cpu, fq, payload, c.map((f) => ({ ...f, id: 100 + i })));
      assert.equal(r, 0);
      assert.equal(ipFragQueueCount(fq), 0, `case ${i}: queue destroyed`);
    });
    assert.equal(stats[IPSTATS_MIB_REASMFAILS], 4);
    assert.equal(ipFragMem(fq), 0);
    assertNoLeaks(cpu);
  });

  test("reassembled length above 65535 is dropped (PKT_TOO_BIG)", () => {
    const cpu = setup();
    const { fq } = newFq();
    // Offsets stop at 8191 * 8: the last fragment sits at 65472 and carries 100 bytes (20 + 65572 > 65535).
    const payload = lcgBytes(65572, 9);
    const specs = frags(65572, 8184);
    assert.equal(specs.at(-1)!.off, 65472);
    assert.equal(feed(cpu, fq, payload, specs), 0);
    assert.equal(fq.lastResult, SKB_DROP_REASON.PKT_TOO_BIG);
    assert.equal(ipFragQueueCount(fq), 0);
    assert.equal(ipFragMem(fq), 0);
    assert.equal(cpu.drops[SKB_DROP_REASON.PKT_TOO_BIG], specs.length);
    assertNoLeaks(cpu);
  });

  test("timeout: a fake clock, IP_FRAG_TIMEOUT drops, and the ICMP hook for a queue with its first fragment", () => {
    const cpu = setup();
    const { fq, clock, stats } = newFq();
    const payload = lcgBytes(100, 10);
    const first = fragBytes(payload, { off: 0, len: 48, mf: true, id: 1 });
    const sent: number[][] = [];
    fq.expireHook = (c, head) => {
      const e = icmpSend(c, head, ICMP_TIME_EXCEEDED, ICMP_EXC_FRAGTIME, 0, ip("198.51.100.1"));
      assert.ok(e > 0);
      sent.push(readPacket(c, e));
      consumeSkb(c, e);
    };
    const s1 = rx(cpu, first);
    cpu.u32[(s1 + SKB_DEV) >>> 2] = 4;
    assert.equal(ipDefrag(cpu, fq, s1), 0);
    clock.now += 10_000;
    feed(cpu, fq, payload, [{ off: 48, len: 8, mf: true, id: 2 }]); // a second queue, 10 s younger
    clock.now += IPFRAG_TIME_MS - 10_000 - 1;
    assert.equal(ipFragExpire(cpu, fq), 0);
    clock.now += 1;
    assert.equal(ipFragExpire(cpu, fq), 1, "exactly at the deadline");
    assert.equal(sent.length, 1);
    const msg = sent[0]!;
    assert.deepEqual(msg.slice(20, 28), [11, 1, msg[22]!, msg[23]!, 0, 0, 0, 0]);
    assert.deepEqual(msg.slice(28), first, "quotes the first fragment");
    assert.equal(refCsum(msg, 20), 0);
    // The second queue (no first fragment) expires lazily, on the next ipDefrag.
    clock.now += 10_000;
    const other = rx(cpu, ipv4Packet({ src: SRC, dst: DST, proto: 6 }, [1, 2, 3]));
    assert.equal(ipDefrag(cpu, fq, other), other, "not a fragment, no reaping");
    assert.equal(ipFragQueueCount(fq), 1);
    feed(cpu, fq, payload, [{ off: 0, len: 8, mf: true, id: 3 }]);
    assert.equal(sent.length, 1, "no ICMP without the first fragment");
    assert.equal(ipFragQueueCount(fq), 1);
    assert.equal(stats[IPSTATS_MIB_REASMTIMEOUT], 2);
    assert.equal(cpu.drops[SKB_DROP_REASON.IP_FRAG_TIMEOUT], 2);
    consumeSkb(cpu, other);
    ipFragDestroyAll(cpu, fq);
    assert.equal(ipFragMem(fq), 0);
    assertNoLeaks(cpu);
  });

  test("an explicit `now` (the caller's jiffies) replaces the clock", () => {
    const cpu = setup();
    const { fq } = newFq({ clock: () => {
      throw new Error("clock must not be read");
    } });
    const payload = lcgBytes(16, 16);
    assert.equal(ipDefrag(cpu, fq, rx(cpu, fragBytes(payload, { off: 0, len: 8, mf: true })), 100), 0);
    assert.equal(ipFragExpire(cpu, fq, 100 + IPFRAG_TIME_MS - 1), 0);
    const late = rx(cpu, fragBytes(payload, { off: 8, len: 8, mf: false }));
    assert.equal(ipDefrag(cpu, fq, late, 100 + IPFRAG_TIME_MS), 0, "the old queue expired first; this starts a new one");
    assert.equal(cpu.drops[SKB_DROP_REASON.IP_FRAG_TIMEOUT], 1);
    assert.equal(ipFragQueueCount(fq), 1);
    ipFragDestroyAll(cpu, fq);
    assertNoLeaks(cpu);
  });

  test("memory: above ipfrag_high_thresh every fragment is refused; accounting is truesize + queue overhead", () => {
    const cpu = setup();
    const { fq, stats } = newFq({ highThresh: 5000 });
    assert.equal(IPFRAG_HIGH_THRESH, 4 << 20);
    const payload = lcgBytes(64, 11);
    let expect = 0;
    let id = 0;
    while (ipFragMem(fq) <= 5000) {
      const skb = rx(cpu, fragBytes(payload, { off: 0, len: 8, mf: true, id: ++id }));
      const ts = cpu.u32[(skb + 160) >>> 2] as number;
      assert.equal(ipDefrag(cpu, fq, skb), 0);
      expect += ts + IPQ_TRUESIZE;
      assert.equal(ipFragMem(fq), expect);
    }
    const fails = stats[IPSTATS_MIB_REASMFAILS]!;
    // Even the completion of an existing queue is refused now.
    assert.equal(ipDefrag(cpu, fq, rx(cpu, fragBytes(payload, { off: 8, len: 8, mf: false, id: 1 }))), 0);
    assert.equal(fq.lastResult, SKB_DROP_REASON.IP_FRAG_MEMORY);
    assert.equal(stats[IPSTATS_MIB_REASMFAILS], fails + 1);
    ipFragDestroyAll(cpu, fq);
    assert.equal(ipFragMem(fq), 0);
    assert.equal(ipFragQueueCount(fq), 0);
    assertNoLeaks(cpu);
  });

  test("queue slots: when all are in use a new datagram is refused (IP_FRAG_MEMORY)", () => {
    const cpu = setup();
    const { fq } = newFq({ maxQueues: 2 });
    const payload = lcgBytes(16, 12);
    feed(cpu, fq, payload, [{ off: 0, len: 8, mf: true, id: 1 }]);
    feed(cpu, fq, payload, [{ off: 0, len: 8, mf: true, id: 2 }]);
    feed(cpu, fq, payload, [{ off: 0, len: 8, mf: true, id: 3 }]);
    assert.equal(fq.lastResult, SKB_DROP_REASON.IP_FRAG_MEMORY);
    const r = feed(cpu, fq, payload, [{ off: 8, len: 8, mf: false, id: 2 }]);
    assert.ok(r > 0, "existing queues still complete");
    consumeSkb(cpu, r);
    feed(cpu, fq, payload, [{ off: 0, len: 8, mf: true, id: 3 }]);
    assert.equal(fq.lastResult, 0, "a slot is free again");
    ipFragDestroyAll(cpu, fq);
    assertNoLeaks(cpu);
  });

  test("ipfrag_max_dist: a queue that missed too many fragments from its source is restarted", () => {
    const cpu = setup();
    const { fq, stats } = newFq({ maxDist: 3 });
    const payload = lcgBytes(24, 13);
    feed(cpu, fq, payload, [{ off: 0, len: 8, mf: true, id: 1 }]);
    // Two other fragments from the same source in between: within distance (end - start = 3).
    for (let i = 0; i < 2; i++) feed(cpu, fq, payload, [{ off: 0, len: 8, mf: true, id: 10 + i }]);
    feed(cpu, fq, payload, [{ off: 8, len: 8, mf: true, id: 1 }]);
    assert.equal(cpu.drops[SKB_DROP_REASON.IP_FRAG_TOO_FAR], 0);
    // ipfrag_max_dist (3) of them in between, plus one from another source that does not count: too far.
    for (let i = 0; i < 3; i++) feed(cpu, fq, payload, [{ off: 0, len: 8, mf: true, id: 20 + i }]);
    feed(cpu, fq, payload, [{ off: 0, len: 8, mf: true, id: 30, src: ip("203.0.113.1") }]);
    const fails = stats[IPSTATS_MIB_REASMFAILS]!;
    assert.equal(feed(cpu, fq, payload, [{ off: 16, len: 8, mf: false, id: 1 }]), 0, "restarted: only the last piece is queued");
    assert.equal(cpu.drops[SKB_DROP_REASON.IP_FRAG_TOO_FAR], 2);
    assert.equal(stats[IPSTATS_MIB_REASMFAILS], fails + 1);
    const r = feed(cpu, fq, payload, [{ off: 0, len: 8, mf: true, id: 1 }, { off: 8, len: 8, mf: true, id: 1 }]);
    assert.ok(r > 0);
    assert.deepEqual(readPacket(cpu, r).slice(20), payload);
    consumeSkb(cpu, r);
    ipFragDestroyAll(cpu, fq);
    assertNoLeaks(cpu);
  });
});

describe("ipDefrag properties", () => {
  test("any fragmentation (ipFragment), any order, duplicates: the original datagram, memory back to 0", () => {
    const cpu = setup();
    const { fq } = newFq();
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 9000 }),
        fc.integer({ min: 68, max: 1500 }),
        fc.infiniteStream(fc.nat()),
        fc.array(fc.nat(), { maxLength: 4 }),
        fc.integer({ min: 20, max: 400 }),
        (plen, mtu, rnd, dups, linear) => {
          const payload = lcgBytes(plen, plen ^ mtu);
          const orig = ipv4Packet({ src: SRC, dst: DST, proto: 17, id: plen & 0xffff, ttl: 33 }, payload);
          // Cut it with ipFragment, read the pieces back out as bytes.
          const big = rx(cpu, orig, { linear: Math.min(orig.length, 1000), fragSize: 2000 });
          const first = ipFragment(cpu, big, mtu, ipStatsCreate());
          const pieces: number[][] = [];
          for (let s = first; s !== 0; s = cpu.u32[(s + SKB_NEXT) >>> 2] as number) pieces.push(readPacket(cpu, s));
          kfreeSkbListReason(cpu, first, SKB_DROP_REASON.CONSUMED);
          // Shuffle, then add duplicates of pieces before the one that completes.
          const it = rnd[Symbol.iterator]();
          const order = pieces.map((_, i) => i);
          for (let i = order.length - 1; i > 0; i--) {
            const j = (it.next().value as number) % (i + 1);
            [order[i], order[j]] = [order[j]!, order[i]!];
          }
          const seq = [...order];
          for (const d of dups) if (seq.length > 1) seq.splice(1 + (d % (seq.length - 1)), 0, seq[d % (seq.length - 1)]!);
          let result = 0;
          const before = totalFreed(cpu);
          for (const i of seq) {
            assert.equal(result, 0);
            result = ipDefrag(cpu, fq, rx(cpu, pieces[i]!, { linear, fragSize: 333 }));
          }
          if (pieces.length === 1) {
            assert.deepEqual(readPacket(cpu, result), orig);
          } else {
            assert.ok(result > 0);
            assert.deepEqual(readPacket(cpu, result), orig);
          }
          assert.equal(ipFragQueueCount(fq), 0);
          assert.equal(ipFragMem(fq), 0);
          consumeSkb(cpu, result);
          assert.equal(totalFreed(cpu) - before, seq.length, "every fragment freed exactly once");
        },
      ),
      { numRuns: 150 },
    );
    assertNoLeaks(cpu);
  });

  test("fuzz: random fragment soup never throws; memory accounting stays exact; teardown frees all", () => {
    const cpu = setup();
    const { fq, clock } = newFq({ highThresh: 200_000, maxQueues: 16, maxDist: 8 });
    let fed = 0;
    let out = 0;
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            id: fc.integer({ min: 0, max: 5 }),
            off: fc.integer({ min: 0, max: 40 }).map((x) => x * 8),
            len: fc.integer({ min: 0, max: 120 }),
            mf: fc.boolean(),
            df: fc.boolean(),
            tos: fc.nat(3),
            src: fc.constantFrom(SRC, ip("203.0.113.9")),
            dt: fc.constantFrom(0, 0, 0, 1000, 31_000),
          }),
          { maxLength: 40 },
        ),
        (list) => {
          const payload = lcgBytes(512, 14);
          for (const f of list) {
            clock.now += f.dt;
            fed++;
            const r = ipDefrag(cpu, fq, rx(cpu, fragBytes(payload, f), { linear: 24, fragSize: 50 }));
            if (r !== 0) {
              out++;
              const p = readPacket(cpu, r);
              assert.equal(p.length, p[2]! * 256 + p[3]!);
              assert.equal(refCsum(p, 0, 20), 0);
              consumeSkb(cpu, r);
            }
          }
          // Memory = queued truesize + per-queue overhead, never negative.
          assert.ok(ipFragMem(fq) >= ipFragQueueCount(fq) * IPQ_TRUESIZE);
        },
      ),
      { numRuns: 200 },
    );
    ipFragDestroyAll(cpu, fq);
    assert.equal(ipFragMem(fq), 0);
    assert.equal(totalFreed(cpu), fed, `${fed} fragments in, ${out} datagrams out: each skb freed once`);
    assertNoLeaks(cpu);
  });
});

describe("receive path fuzz (Ethernet → VLAN → IPv4 → reassembly)", () => {
  test("random and mutated frames: never throw; each frame accepted or dropped with a reason; nothing leaks", () => {
    const cpu = setup();
    const { fq } = newFq({ maxQueues: 8 });
    const dev = new Uint8Array(MAC_DEV);
    const payload = lcgBytes(64, 15);
    const seeds: number[][] = [
      ethFrame(MAC_DEV, MAC_PEER, ETH_P_IP, ipv4Packet({ src: SRC, dst: DST, proto: 1 }, icmpMessage(8, 0, 1, [1, 2, 3]))),
      vlanFrame(MAC_DEV, MAC_PEER, ETH_P_8021Q, 5, ETH_P_IP, fragBytes(payload, { off: 0, len: 32, mf: true, id: 7 })),
      vlanFrame(MAC_DEV, MAC_PEER, ETH_P_8021Q, 5, ETH_P_IP, fragBytes(payload, { off: 32, len: 32, mf: false, id: 7 })),
      ethFrame(MAC_DEV, MAC_PEER, ETH_P_IP, fragBytes(payload, { off: 8, len: 16, mf: true, id: 8 })),
    ];
    const reasons = new Set<number>();
    let frames = 0;
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.uint8Array({ maxLength: 90 }).map((a) => [...a]),
            fc
              .tuple(fc.nat(seeds.length - 1), fc.array(fc.tuple(fc.nat(120), fc.nat(255)), { maxLength: 3 }), fc.nat(130))
              .map(([k, muts, cut]) => {
                const b = [...seeds[k]!];
                for (const [i, v] of muts) if (i < b.length) b[i] = v;
                return cut < b.length && cut % 3 === 0 ? b.slice(0, cut) : b;
              }),
          ),
          { maxLength: 12 },
        ),
        fc.integer({ min: 0, max: 100 }),
        (batch, linear) => {
          for (const frame of batch) {
            frames++;
            const skb = skbFromBytes(cpu, frame, { linear, fragSize: 17 });
            let r = ethTypeTrans(cpu, skb, dev, 0);
            if (r === 0) r = skbVlanUntag(cpu, skb);
            if (r === 0 && (cpu.u16[(skb + SKB_PROTOCOL) >>> 1] as number) !== ETH_P_IP) r = SKB_DROP_REASON.UNHANDLED_PROTO;
            if (r === 0) r = ipRcvCore(cpu, skb, ipStatsCreate());
            if (r !== 0) {
              reasons.add(r);
              kfreeSkbReason(cpu, skb, r);
              continue;
            }
            const d = ipDefrag(cpu, fq, skb);
            if (d !== 0) consumeSkb(cpu, d);
          }
        },
      ),
      { numRuns: 300 },
    );
    ipFragDestroyAll(cpu, fq);
    assert.equal(totalFreed(cpu), frames);
    assert.ok(reasons.size >= 3, `several drop reasons seen: ${[...reasons].join(",")}`);
    assertNoLeaks(cpu);
  });
});
