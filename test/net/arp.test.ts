/**
 * ARP and the neighbour table (src/net/arp.ts): packets built and parsed
 * byte for byte, requests answered in place, learning rules (request for us
 * → STALE, reply → REACHABLE, arp_accept), every malformed case a counted
 * drop, neighbour states and timers (reachable → stale → collected,
 * incomplete → retransmit → failed), forced GC, permanent entries, the
 * hash table against a Map model, and arp_queue: packets held while ARP
 * resolves, sent in order on the reply, bounded by unres_qlen_bytes
 * (oldest dropped), reported on failure, dropped when the entry goes.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  __neighEventSend,
  ARP_HLEN,
  ARPOP_REPLY,
  ARPOP_REQUEST,
  type ArpDev,
  arpCreate,
  arpOp,
  arpRcv,
  arpSip,
  arpSolicit,
  arpStatsCreate,
  arpTip,
  ARP_IN_CONSUMED,
  ARP_IN_ERRORS,
  ARP_IN_NOT_OURS,
  ARP_IN_REPLIES,
  ARP_IN_REQUESTS,
  ARP_OUT_REPLIES,
  ARP_OUT_REQUESTS,
  NEIGH_SEND_FULL,
  NEIGH_SEND_SOLICIT,
  NEIGH_SEND_VALID,
  NEIGH_SEND_WAIT,
  NEIGH_STAT_FORCED_GC_RUNS,
  NEIGH_STAT_QUEUE_FAILED,
  NEIGH_STAT_QUEUE_FLUSHED,
  NEIGH_STAT_QUEUE_SENT,
  NEIGH_STAT_QUEUED,
  NEIGH_STAT_RES_FAILED,
  NEIGH_STAT_TABLE_FULLS,
  NEIGH_STAT_UNRES_DISCARDS,
  NEIGH_UNRES_QLEN_BYTES,
  neighAddPermanent,
  neighDelete,
  neighDump,
  neighEventSend,
  neighLookup,
  neighMacOffset,
  type NeighOps,
  neighQueuedCount,
  neighResolve,
  neighStats,
  type NeighTable,
  neighTableCreate,
  neighTableFlush,
  neighTableSetOps,
  neighTimer,
  neighUpdate,
  NUD_FAILED,
  NUD_INCOMPLETE,
  NUD_PERMANENT,
  NUD_REACHABLE,
  NUD_STALE,
} from "../../src/net/arp.js";
import { ethTypeTrans } from "../../src/net/ethernet.js";
import { skbDataPtr } from "../../src/skb/access.js";
import { allocSkb } from "../../src/skb/alloc.js";
import type { SkbCpu } from "../../src/skb/cpu.js";
import { SKB_DROP_REASON } from "../../src/skb/drop-reason.js";
import { consumeSkb, kfreeSkbReason } from "../../src/skb/free.js";
import { SKB_DEV, SKB_NEXT, SKB_PROTOCOL, SKB_TRUESIZE } from "../../src/skb/layout.js";
import { assertNoLeaks, be32Bytes, ethFrame, ip, MAC_BCAST, readPacket, setup, skbFromBytes } from "../net/net-helpers.js";

const DEV_MAC = [0x02, 0, 0, 0, 0x99, 0x01];
const PEER_MAC = [0x02, 0, 0, 0, 0x99, 0x02];
const OTHER_MAC = [0x02, 0, 0, 0, 0x99, 0x03];
const DEV_IP = ip("169.254.99.1");
const PEER_IP = ip("169.254.99.2");
const dev: ArpDev = { mac: new Uint8Array(DEV_MAC), ipAddr: DEV_IP, ifindex: 3 };

function arpBody(op: number, sha: number[], sip: number, tha: number[], tip: number, hrd = 1, pro = 0x0800, hln = 6, pln = 4): number[] {
  return [hrd >> 8, hrd & 255, pro >> 8, pro & 255, hln, pln, 0, op, ...sha, ...be32Bytes(sip), ...tha, ...be32Bytes(tip)];
}

/** An skb holding an Ethernet frame, through ethTypeTrans for `dev` (data at the ARP header). */
function rxSkb(cpu: SkbCpu, frame: number[], shape = {}): number {
  const skb = skbFromBytes(cpu, frame, shape);
  assert.equal(ethTypeTrans(cpu, skb, dev.mac, 0), 0);
  return skb;
}

function finish(cpu: SkbCpu, skb: number, r: number): void {
  if (r === 0 || r === SKB_DROP_REASON.CONSUMED) consumeSkb(cpu, skb);
  else kfreeSkbReason(cpu, skb, r);
}

describe("ARP packets", () => {
  test("arpCreate builds a broadcast request and a unicast reply byte for byte", () => {
    const cpu = setup();
    const req = arpCreate(cpu, ARPOP_REQUEST, 3, PEER_IP, DEV_IP, null, 0, dev.mac, null, 0);
    assert.deepEqual(readPacket(cpu, req), ethFrame(MAC_BCAST, DEV_MAC, 0x0806, arpBody(1, DEV_MAC, DEV_IP, [0, 0, 0, 0, 0, 0], PEER_IP)));
    assert.equal(cpu.u32[(req + SKB_DEV) >>> 2], 3);
    assert.equal(cpu.u16[(req + SKB_PROTOCOL) >>> 1], 0x0806);
    const peer = new Uint8Array(PEER_MAC);
    const rep = arpCreate(cpu, ARPOP_REPLY, 3, PEER_IP, DEV_IP, peer, 0, dev.mac, peer, 0);
    assert.deepEqual(readPacket(cpu, rep), ethFrame(PEER_MAC, DEV_MAC, 0x0806, arpBody(2, DEV_MAC, DEV_IP, PEER_MAC, PEER_IP)));
    const a = skbDataPtr(cpu, rep) + 14;
    assert.equal(arpOp(cpu.u8, a), ARPOP_REPLY);
    assert.equal(arpSip(cpu.u8, a) >>> 0, DEV_IP);
    assert.equal(arpTip(cpu.u8, a) >>> 0, PEER_IP);
    consumeSkb(cpu, req);
    consumeSkb(cpu, rep);
    assertNoLeaks(cpu);
  });

  for (const [name, shape] of [
    ["linear", {}],
    ["paged (header split across frags)", { linear: 20, fragSize: 10 }],
  ] as const) {
    test(`a request for our address becomes the reply in place (${name}), padding trimmed, sender learned STALE`, () => {
      const cpu = setup();
      const t = neighTableCreate();
      const st = arpStatsCreate();
      // 60-byte minimum frame: 18 bytes of padding after the ARP body.
      const frame = [...ethFrame(MAC_BCAST, PEER_MAC, 0x0806, arpBody(1, PEER_MAC, PEER_IP, [0, 0, 0, 0, 0, 0], DEV_IP)), ...new Array(18).fill(0)];
      const skb = rxSkb(cpu, frame, shape);
      assert.equal(arpRcv(cpu, skb, dev, t, st, 1000), 0);
      assert.deepEqual(readPacket(cpu, skb), ethFrame(PEER_MAC, DEV_MAC, 0x0806, arpBody(2, DEV_MAC, DEV_IP, PEER_MAC, PEER_IP)));
      assert.equal(cpu.u32[(skb + SKB_DEV) >>> 2], 3);
      const n = neighLookup(t, 3, PEER_IP);
      assert.notEqual(n, -1);
      assert.equal(t.state[n], NUD_STALE);
      assert.deepEqual([...t.mac.subarray(neighMacOffset(n), neighMacOffset(n) + 6)], PEER_MAC);
      assert.equal(st[ARP_IN_REQUESTS], 1);
      assert.equal(st[ARP_OUT_REPLIES], 1);
      consumeSkb(cpu, skb);
      assertNoLeaks(cpu);
    });
  }

  test("a duplicate-address probe (sender 0.0.0.0) is answered but teaches nothing", () => {
    const cpu = setup();
    const t = neighTableCreate();
    const st = arpStatsCreate();
    const skb = rxSkb(cpu, ethFrame(MAC_BCAST, PEER_MAC, 0x0806, arpBody(1, PEER_MAC, 0, [0, 0, 0, 0, 0, 0], DEV_IP)));
    assert.equal(arpRcv(cpu, skb, dev, t, st, 0), 0);
    assert.deepEqual(readPacket(cpu, skb), ethFrame(PEER_MAC, DEV_MAC, 0x0806, arpBody(2, DEV_MAC, DEV_IP, PEER_MAC, 0)));
    assert.equal(t.count, 0);
    consumeSkb(cpu, skb);
    assertNoLeaks(cpu);
  });

  test("requests for other addresses are consumed: known senders refreshed, unknown ones not learned", () => {
    const cpu = setup();
    const t = neighTableCreate();
    const st = arpStatsCreate();
    const other = ip("169.254.99.7");
    let skb = rxSkb(cpu, ethFrame(MAC_BCAST, PEER_MAC, 0x0806, arpBody(1, PEER_MAC, PEER_IP, [0, 0, 0, 0, 0, 0], other)));
    let r = arpRcv(cpu, skb, dev, t, st, 0);
    assert.equal(r, SKB_DROP_REASON.CONSUMED);
    finish(cpu, skb, r);
    assert.equal(t.count, 0, "no entry from a request not for us");
    assert.equal(st[ARP_IN_NOT_OURS], 1);
    assert.equal(st[ARP_IN_CONSUMED], 1);
    // A known neighbour that changed its MAC is updated (STALE with the new address).
    neighUpdate(t, 3, PEER_IP, new Uint8Array(PEER_MAC), 0, NUD_REACHABLE, 0, true);
    skb = rxSkb(cpu, ethFrame(MAC_BCAST, OTHER_MAC, 0x0806, arpBody(1, OTHER_MAC, PEER_IP, [0, 0, 0, 0, 0, 0], other)));
    r = arpRcv(cpu, skb, dev, t, st, 5);
    finish(cpu, skb, r);
    const n = neighLookup(t, 3, PEER_IP);
    assert.equal(t.state[n], NUD_STALE);
    assert.deepEqual([...t.mac.subarray(n * 6, n * 6 + 6)], OTHER_MAC);
    // Same MAC again: a REACHABLE entry is not demoted.
    neighUpdate(t, 3, PEER_IP, new Uint8Array(OTHER_MAC), 0, NUD_REACHABLE, 6, true);
    skb = rxSkb(cpu, ethFrame(MAC_BCAST, OTHER_MAC, 0x0806, arpBody(1, OTHER_MAC, PEER_IP, [0, 0, 0, 0, 0, 0], other)));
    finish(cpu, skb, arpRcv(cpu, skb, dev, t, st, 7));
    assert.equal(t.state[n], NUD_REACHABLE);
    assertNoLeaks(cpu);
  });

  test("replies: an INCOMPLETE entry becomes REACHABLE; unsolicited replies need arp_accept", () => {
    const cpu = setup();
    for (const accept of [false, true]) {
      const t = neighTableCreate({ accept });
      const st = arpStatsCreate();
      const req = arpSolicit(cpu, dev, t, PEER_IP, st, 100);
      assert.notEqual(req, 0);
      consumeSkb(cpu, req);
      assert.equal(st[ARP_OUT_REQUESTS], 1);
      assert.equal(arpSolicit(cpu, dev, t, PEER_IP, st, 101), 0, "already asking");
      let skb = rxSkb(cpu, ethFrame(DEV_MAC, PEER_MAC, 0x0806, arpBody(2, PEER_MAC, PEER_IP, DEV_MAC, DEV_IP)));
      finish(cpu, skb, arpRcv(cpu, skb, dev, t, st, 150));
      const n = neighLookup(t, 3, PEER_IP);
      assert.equal(t.state[n], NUD_REACHABLE);
      assert.equal(neighResolve(t, 3, PEER_IP, 200), n);
      // An unsolicited reply from a stranger.
      const stranger = ip("169.254.99.9");
      skb = rxSkb(cpu, ethFrame(DEV_MAC, OTHER_MAC, 0x0806, arpBody(2, OTHER_MAC, stranger, DEV_MAC, DEV_IP)));
      finish(cpu, skb, arpRcv(cpu, skb, dev, t, st, 300));
      assert.equal(neighLookup(t, 3, stranger) !== -1, accept);
      // Gratuitous ARP (sip == tip) from another stranger.
      const garp = ip("169.254.99.10");
      skb = rxSkb(cpu, ethFrame(MAC_BCAST, OTHER_MAC, 0x0806, arpBody(1, OTHER_MAC, garp, [0, 0, 0, 0, 0, 0], garp)));
      finish(cpu, skb, arpRcv(cpu, skb, dev, t, st, 300));
      assert.equal(neighLookup(t, 3, garp) !== -1, accept);
      if (accept) assert.equal(t.state[neighLookup(t, 3, garp)], NUD_STALE, "a broadcast ARP proves no reachability");
      assert.equal(st[ARP_IN_REPLIES], 2);
    }
    assertNoLeaks(cpu);
  });

  test("malformed and foreign ARP packets are drops with reasons, counted", () => {
    const cpu = setup();
    const t = neighTableCreate();
    const st = arpStatsCreate();
    const good = (o: Partial<{ op: number; sip: number; tip: number; sha: number[]; hrd: number; pro: number; hln: number; pln: number }>) =>
      arpBody(o.op ?? 1, o.sha ?? PEER_MAC, o.sip ?? PEER_IP, [0, 0, 0, 0, 0, 0], o.tip ?? DEV_IP, o.hrd, o.pro, o.hln, o.pln);
    const cases: [string, number[], number][] = [
      ["short", good({}).slice(0, 27), SKB_DROP_REASON.PKT_TOO_SMALL],
      ["hrd 6", good({ hrd: 6 }), SKB_DROP_REASON.L2_MALFORMED],
      ["pro IPv6", good({ pro: 0x86dd }), SKB_DROP_REASON.L2_MALFORMED],
      ["hln 8", good({ hln: 8 }), SKB_DROP_REASON.L2_MALFORMED],
      ["pln 16", good({ pln: 16 }), SKB_DROP_REASON.L2_MALFORMED],
      ["op 3 (RARP)", good({ op: 3 }), SKB_DROP_REASON.L2_MALFORMED],
      ["multicast target", good({ tip: ip("224.0.0.1") }), SKB_DROP_REASON.L2_MALFORMED],
      ["loopback target", good({ tip: ip("127.0.0.1") }), SKB_DROP_REASON.L2_MALFORMED],
      ["multicast sender", good({ sip: ip("239.1.1.1") }), SKB_DROP_REASON.L2_MALFORMED],
      ["broadcast sender", good({ sip: ip("255.255.255.255") }), SKB_DROP_REASON.L2_MALFORMED],
      ["multicast sender MAC", good({ sha: [0x01, 0, 0x5e, 0, 0, 1] }), SKB_DROP_REASON.L2_MALFORMED],
    ];
    for (const [name, body, want] of cases) {
      const skb = rxSkb(cpu, ethFrame(MAC_BCAST, PEER_MAC, 0x0806, body));
      const r = arpRcv(cpu, skb, dev, t, st, 0);
      assert.equal(r, want, name);
      finish(cpu, skb, r);
    }
    assert.equal(st[ARP_IN_ERRORS], cases.length);
    // A frame for another host's MAC (PACKET_OTHERHOST).
    const skb = rxSkb(cpu, ethFrame(OTHER_MAC, PEER_MAC, 0x0806, good({})));
    const r = arpRcv(cpu, skb, dev, t, st, 0);
    assert.equal(r, SKB_DROP_REASON.OTHERHOST);
    finish(cpu, skb, r);
    assert.equal(t.count, 0);
    assertNoLeaks(cpu);
  });

  test("a device without an address answers nothing and solicits nothing", () => {
    const cpu = setup();
    const t = neighTableCreate();
    const st = arpStatsCreate();
    const bare: ArpDev = { mac: dev.mac, ipAddr: 0, ifindex: 3 };
    const skb = rxSkb(cpu, ethFrame(MAC_BCAST, PEER_MAC, 0x0806, arpBody(1, PEER_MAC, PEER_IP, [0, 0, 0, 0, 0, 0], 0)));
    const r = arpRcv(cpu, skb, bare, t, st, 0);
    assert.equal(r, SKB_DROP_REASON.CONSUMED);
    finish(cpu, skb, r);
    assert.equal(arpSolicit(cpu, bare, t, PEER_IP, st, 0), 0);
    assertNoLeaks(cpu);
  });
});

describe("neighbour table", () => {
  const mac = new Uint8Array(PEER_MAC);

  test("REACHABLE turns STALE after base_reachable_time; unused STALE entries are collected after gc_staletime", () => {
    const t = neighTableCreate({ baseReachableMs: 30_000, gcStaleMs: 60_000 });
    const n = neighUpdate(t, 1, PEER_IP, mac, 0, NUD_REACHABLE, 0, true);
    assert.equal(neighResolve(t, 1, PEER_IP, 30_000), n);
    assert.equal(t.state[n], NUD_REACHABLE);
    assert.equal(neighResolve(t, 1, PEER_IP, 30_001), n, "stale entries are still used");
    assert.equal(t.state[n], NUD_STALE);
    assert.equal(neighTimer(t, 90_000), 0, "used at 30 001: not yet");
    assert.equal(neighTimer(t, 90_001), 1);
    assert.equal(neighLookup(t, 1, PEER_IP), -1);
    // The timer demotes REACHABLE too.
    const m = neighUpdate(t, 1, PEER_IP, mac, 0, NUD_REACHABLE, 100_000, true);
    neighTimer(t, 130_001);
    assert.equal(t.state[m], NUD_STALE);
    const s = neighStats(t);
    assert.equal(s.allocs, 2);
    assert.equal(s.destroys, 1);
    assert.equal(s.entries, 1);
  });

  test("INCOMPLETE: retransmits every retrans_time, FAILED after mcast_solicit probes, then collected", () => {
    const t = neighTableCreate({ retransMs: 1000, mcastSolicit: 3, gcStaleMs: 60_000 });
    assert.equal(neighEventSend(t, 1, PEER_IP, 0), NEIGH_SEND_SOLICIT);
    assert.equal(neighEventSend(t, 1, PEER_IP, 10), NEIGH_SEND_WAIT);
    assert.equal(neighResolve(t, 1, PEER_IP, 10), -1);
    assert.equal(t.stats[NEIGH_STAT_UNRES_DISCARDS], 0, "a miss alone discards nothing: only a full queue does");
    const asked: number[] = [];
    const solicit = (_i: number, a: number) => asked.push(a >>> 0);
    neighTimer(t, 999, solicit);
    assert.deepEqual(asked, []);
    neighTimer(t, 1000, solicit);
    neighTimer(t, 2000, solicit);
    assert.deepEqual(asked, [PEER_IP, PEER_IP]);
    const n = neighLookup(t, 1, PEER_IP);
    assert.equal(t.state[n], NUD_INCOMPLETE);
    neighTimer(t, 3000, solicit);
    assert.equal(t.state[n], NUD_FAILED);
    assert.equal(t.stats[NEIGH_STAT_RES_FAILED], 1);
    assert.equal(asked.length, 2);
    // A failed entry may be asked for again.
    assert.equal(neighEventSend(t, 1, PEER_IP, 3500), NEIGH_SEND_SOLICIT);
    neighTimer(t, 4500, solicit);
    neighTimer(t, 5500, solicit);
    neighTimer(t, 6500, solicit);
    assert.equal(t.state[n], NUD_FAILED);
    assert.equal(neighTimer(t, 6500 + 60_000), 1, "failed entries are collected");
    assert.equal(t.count, 0);
  });

  test("PERMANENT entries ignore ARP and timers; only an admin update changes them", () => {
    const cpu = setup();
    const t = neighTableCreate({ accept: true });
    const st = arpStatsCreate();
    const n = neighAddPermanent(t, 3, PEER_IP, mac);
    const skb = rxSkb(cpu, ethFrame(DEV_MAC, OTHER_MAC, 0x0806, arpBody(2, OTHER_MAC, PEER_IP, DEV_MAC, DEV_IP)));
    finish(cpu, skb, arpRcv(cpu, skb, dev, t, st, 0));
    assert.deepEqual([...t.mac.subarray(n * 6, n * 6 + 6)], PEER_MAC);
    neighTimer(t, 10_000_000);
    assert.equal(t.state[n], NUD_PERMANENT);
    assert.equal(neighResolve(t, 3, PEER_IP, 10_000_000), n);
    neighUpdate(t, 3, PEER_IP, new Uint8Array(OTHER_MAC), 0, NUD_PERMANENT, 0, false);
    assert.deepEqual([...t.mac.subarray(n * 6, n * 6 + 6)], OTHER_MAC);
    assert.equal(neighEventSend(t, 3, PEER_IP, 0), NEIGH_SEND_WAIT);
    assert.ok(neighDelete(t, 3, PEER_IP));
    assert.ok(!neighDelete(t, 3, PEER_IP));
    assertNoLeaks(cpu);
  });

  test("a full table collects STALE / FAILED entries first; when nothing can go, creation fails and is counted", () => {
    const t = neighTableCreate({ max: 4 });
    for (let i = 0; i < 3; i++) neighAddPermanent(t, 1, PEER_IP + i, mac);
    assert.notEqual(neighUpdate(t, 1, PEER_IP + 3, mac, 0, NUD_STALE, 0, true), -1);
    assert.notEqual(neighUpdate(t, 1, PEER_IP + 4, mac, 0, NUD_REACHABLE, 0, true), -1, "the stale entry made room");
    assert.equal(t.stats[NEIGH_STAT_FORCED_GC_RUNS], 1);
    assert.equal(neighLookup(t, 1, PEER_IP + 3), -1);
    assert.equal(neighUpdate(t, 1, PEER_IP + 5, mac, 0, NUD_REACHABLE, 0, true), -1);
    assert.equal(neighEventSend(t, 1, PEER_IP + 6, 0), NEIGH_SEND_FULL);
    assert.equal(t.stats[NEIGH_STAT_TABLE_FULLS], 2);
    assert.equal(t.count, 4);
  });

  test("the same address on two devices is two entries", () => {
    const t = neighTableCreate();
    const a = neighUpdate(t, 1, PEER_IP, mac, 0, NUD_REACHABLE, 0, true);
    const b = neighUpdate(t, 2, PEER_IP, new Uint8Array(OTHER_MAC), 0, NUD_REACHABLE, 0, true);
    assert.notEqual(a, b);
    assert.equal(neighLookup(t, 1, PEER_IP), a);
    assert.equal(neighLookup(t, 2, PEER_IP), b);
    assert.equal(neighLookup(t, 3, PEER_IP), -1);
    assert.deepEqual(
      neighDump(t)
        .map((e) => `${e.ifindex} ${e.mac}`)
        .sort(),
      ["1 02:00:00:00:99:02", "2 02:00:00:00:99:03"],
    );
  });

  test("random inserts and deletes agree with a Map model (hash chains, free list)", () => {
    const t = neighTableCreate({ max: 256 });
    const model = new Map<string, number>();
    let s = 12345;
    const rnd = (n: number) => {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      return (s >>> 8) % n;
    };
    for (let step = 0; step < 20_000; step++) {
      const ifi = 1 + rnd(3);
      const addr = (ip("10.0.0.0") + rnd(300)) >>> 0;
      const key = `${ifi}/${addr}`;
      if (rnd(3) === 0) {
        assert.equal(neighDelete(t, ifi, addr), model.delete(key));
      } else if (model.size < 256 || model.has(key)) {
        const m = new Uint8Array([2, 0, 0, ifi, (addr >>> 8) & 255, addr & 255]);
        const idx = neighUpdate(t, ifi, addr, m, 0, NUD_PERMANENT, step, true);
        assert.notEqual(idx, -1);
        model.set(key, idx);
      }
      if (step % 1000 === 0) {
        for (const [k, idx] of model) {
          const [i, a] = k.split("/").map(Number) as [number, number];
          assert.equal(neighLookup(t, i, a), idx, k);
        }
        assert.equal(t.count, model.size);
      }
    }
    assert.equal(neighDump(t).length, model.size);
  });

  test("parameters are validated", () => {
    assert.throws(() => neighTableCreate({ max: 0 }), /max/);
    assert.throws(() => neighTableCreate({ retransMs: 1.5 }), /retransMs/);
    assert.throws(() => neighTableCreate({ mcastSolicit: 300 }), /mcastSolicit/);
  });
});

describe("ARP output sizes", () => {
  test("a reply is 42 bytes and a request too (no padding: the NIC pads)", () => {
    const cpu = setup();
    const st = arpStatsCreate();
    const t = neighTableCreate();
    const req = arpSolicit(cpu, dev, t, PEER_IP, st, 0);
    assert.equal(readPacket(cpu, req).length, 14 + ARP_HLEN);
    consumeSkb(cpu, req);
    assertNoLeaks(cpu);
  });
});

/** What a table's queue ops were given, in call order; every skb is freed as the ops would. */
interface OpsLog {
  out: { i: number; skb: number; mac: number[] }[];
  failed: { ifindex: number; skb: number }[];
  dropped: { ifindex: number; skb: number; reason: number }[];
}

function recordingOps(log: OpsLog, onFail: (cpu: SkbCpu, ifindex: number, skb: number) => void = () => {}): NeighOps {
  return {
    output: (cpu, t, i, skb) => {
      assert.equal(cpu.u32[(skb + SKB_NEXT) >>> 2], 0, "handed over unlinked");
      log.out.push({ i, skb, mac: [...t.mac.subarray(neighMacOffset(i), neighMacOffset(i) + 6)] });
      consumeSkb(cpu, skb);
    },
    errorReport: (cpu, ifindex, skb) => {
      log.failed.push({ ifindex, skb });
      onFail(cpu, ifindex, skb);
      kfreeSkbReason(cpu, skb, SKB_DROP_REASON.NEIGH_FAILED);
    },
    drop: (cpu, ifindex, skb, reason) => {
      log.dropped.push({ ifindex, skb, reason });
      kfreeSkbReason(cpu, skb, reason);
    },
  };
}

function queueSetup(o: Parameters<typeof neighTableCreate>[0] = {}): { cpu: SkbCpu; t: NeighTable; log: OpsLog } {
  const cpu = setup();
  const t = neighTableCreate(o);
  const log: OpsLog = { out: [], failed: [], dropped: [] };
  neighTableSetOps(t, cpu, recordingOps(log));
  return { cpu, t, log };
}

/** The packets of arp_queue: queued = sent + failed + flushed + discarded + still queued. */
function assertQueueBalance(t: NeighTable): void {
  const s = t.stats;
  assert.equal(
    s[NEIGH_STAT_QUEUED],
    (s[NEIGH_STAT_QUEUE_SENT] as number) + (s[NEIGH_STAT_QUEUE_FAILED] as number) + (s[NEIGH_STAT_QUEUE_FLUSHED] as number) + (s[NEIGH_STAT_UNRES_DISCARDS] as number) + neighQueuedCount(t),
  );
}

function truesize(cpu: SkbCpu, skb: number): number {
  return cpu.u32[(skb + SKB_TRUESIZE) >>> 2] as number;
}

describe("arp_queue: packets wait while ARP resolves", () => {
  test("packets queue on the INCOMPLETE entry and leave in order, with the new MAC, when the reply arrives", () => {
    const { cpu, t, log } = queueSetup();
    const st = arpStatsCreate();
    const skbs = [0, 1, 2].map(() => allocSkb(cpu, 200));
    assert.equal(__neighEventSend(t, 3, PEER_IP, skbs[0] as number, 100), NEIGH_SEND_SOLICIT, "the first asks");
    assert.equal(__neighEventSend(t, 3, PEER_IP, skbs[1] as number, 110), NEIGH_SEND_WAIT);
    assert.equal(__neighEventSend(t, 3, PEER_IP, skbs[2] as number, 120), NEIGH_SEND_WAIT);
    const n = neighLookup(t, 3, PEER_IP);
    assert.equal(t.state[n], NUD_INCOMPLETE);
    assert.equal(t.qLen[n], 3);
    assert.equal(t.qBytes[n], 3 * truesize(cpu, skbs[0] as number));
    assert.equal(neighQueuedCount(t), 3);
    assert.equal(neighDump(t)[0]?.queued, 3);
    assert.equal(neighStats(t).queuedNow, 3);
    assert.equal(neighResolve(t, 3, PEER_IP, 130), -1, "not usable yet");
    assert.equal(log.out.length, 0);
    // The reply: arpRcv -> neighUpdate(REACHABLE) -> the queue goes out before arpRcv returns.
    const skb = rxSkb(cpu, ethFrame(DEV_MAC, PEER_MAC, 0x0806, arpBody(2, PEER_MAC, PEER_IP, DEV_MAC, DEV_IP)));
    finish(cpu, skb, arpRcv(cpu, skb, dev, t, st, 150));
    assert.equal(t.state[n], NUD_REACHABLE);
    assert.deepEqual(
      log.out.map((o) => o.skb),
      skbs,
      "oldest first",
    );
    for (const o of log.out) {
      assert.equal(o.i, n);
      assert.deepEqual(o.mac, PEER_MAC);
    }
    assert.equal(t.qLen[n], 0);
    assert.equal(t.qBytes[n], 0);
    assert.equal(neighQueuedCount(t), 0);
    assert.equal(t.stats[NEIGH_STAT_QUEUED], 3);
    assert.equal(t.stats[NEIGH_STAT_QUEUE_SENT], 3);
    // Resolved: nothing is taken any more.
    const late = allocSkb(cpu, 200);
    assert.equal(__neighEventSend(t, 3, PEER_IP, late, 160), NEIGH_SEND_VALID);
    assert.equal(neighQueuedCount(t), 0);
    assert.equal(neighResolve(t, 3, PEER_IP, 160), n);
    consumeSkb(cpu, late);
    assertQueueBalance(t);
    assertNoLeaks(cpu);
  });

  test("any update to a valid state sends the queue: a request from the neighbour (STALE) and an admin PERMANENT entry", () => {
    const { cpu, t, log } = queueSetup();
    const st = arpStatsCreate();
    const a = allocSkb(cpu, 100);
    __neighEventSend(t, 3, PEER_IP, a, 0);
    // The neighbour asks for us first: learned STALE, which is valid.
    const req = rxSkb(cpu, ethFrame(MAC_BCAST, PEER_MAC, 0x0806, arpBody(1, PEER_MAC, PEER_IP, [0, 0, 0, 0, 0, 0], DEV_IP)));
    assert.equal(arpRcv(cpu, req, dev, t, st, 5), 0);
    consumeSkb(cpu, req);
    assert.deepEqual(
      log.out.map((o) => o.skb),
      [a],
    );
    const peer2 = ip("169.254.99.20");
    const b = allocSkb(cpu, 100);
    __neighEventSend(t, 3, peer2, b, 10);
    neighAddPermanent(t, 3, peer2, new Uint8Array(OTHER_MAC), 11);
    assert.deepEqual(log.out[1], { i: neighLookup(t, 3, peer2), skb: b, mac: OTHER_MAC });
    assertQueueBalance(t);
    assertNoLeaks(cpu);
  });

  test("unres_qlen_bytes bounds the queue by truesize: the oldest packets are dropped first (NEIGH_QUEUEFULL, unresDiscards)", () => {
    const cpu0 = setup();
    const probe = allocSkb(cpu0, 300);
    const ts = truesize(cpu0, probe);
    consumeSkb(cpu0, probe);
    // Room for three packets of this size.
    const { cpu, t, log } = queueSetup({ unresQlenBytes: 3 * ts + ts / 2 });
    const skbs = [0, 1, 2, 3, 4].map(() => allocSkb(cpu, 300));
    for (const s of skbs) __neighEventSend(t, 3, PEER_IP, s, 0);
    const n = neighLookup(t, 3, PEER_IP);
    assert.equal(t.qLen[n], 3);
    assert.ok((t.qBytes[n] as number) <= t.unresQlenBytes);
    assert.deepEqual(log.dropped, [
      { ifindex: 3, skb: skbs[0], reason: SKB_DROP_REASON.NEIGH_QUEUEFULL },
      { ifindex: 3, skb: skbs[1], reason: SKB_DROP_REASON.NEIGH_QUEUEFULL },
    ]);
    assert.equal(t.stats[NEIGH_STAT_UNRES_DISCARDS], 2);
    assert.equal(cpu.drops[SKB_DROP_REASON.NEIGH_QUEUEFULL], 2);
    // A packet bigger than the whole limit empties the queue and waits alone.
    const big = allocSkb(cpu, 4 * ts);
    __neighEventSend(t, 3, PEER_IP, big, 1);
    assert.equal(t.qLen[n], 1);
    assert.equal(t.qHead[n], big);
    assert.equal(t.qTail[n], big);
    assert.equal(t.stats[NEIGH_STAT_UNRES_DISCARDS], 5);
    // The survivors leave on the reply.
    neighUpdate(t, 3, PEER_IP, new Uint8Array(PEER_MAC), 0, NUD_REACHABLE, 2, false);
    assert.deepEqual(
      log.out.map((o) => o.skb),
      [big],
    );
    assertQueueBalance(t);
    assertNoLeaks(cpu);
  });

  test("the default limit is SK_WMEM_MAX (212992 bytes of truesize)", () => {
    assert.equal(neighTableCreate().unresQlenBytes, NEIGH_UNRES_QLEN_BYTES);
    assert.equal(NEIGH_UNRES_QLEN_BYTES, 212_992);
    assert.throws(() => neighTableCreate({ unresQlenBytes: 0 }), /unresQlenBytes/);
  });

  test("resolution fails after mcast_solicit probes: every queued packet goes to errorReport in order; a new packet starts over", () => {
    const cpu = setup();
    const t = neighTableCreate({ retransMs: 1000, mcastSolicit: 3 });
    const log: OpsLog = { out: [], failed: [], dropped: [] };
    // Like the router's ICMP error, a report may send to the same neighbour again.
    const again: number[] = [];
    neighTableSetOps(
      t,
      cpu,
      recordingOps(log, (c, ifindex) => {
        const s = allocSkb(c, 100);
        again.push(s);
        assert.equal(__neighEventSend(t, ifindex, PEER_IP, s, 3000), again.length === 1 ? NEIGH_SEND_SOLICIT : NEIGH_SEND_WAIT);
      }),
    );
    const skbs = [0, 1].map(() => allocSkb(cpu, 100));
    for (const s of skbs) __neighEventSend(t, 3, PEER_IP, s, 0);
    const asked: number[] = [];
    const solicit = (_i: number, a: number) => asked.push(a >>> 0);
    neighTimer(t, 1000, solicit);
    neighTimer(t, 2000, solicit);
    assert.equal(log.failed.length, 0);
    neighTimer(t, 3000, solicit);
    assert.equal(asked.length, 2);
    assert.deepEqual(log.failed, [
      { ifindex: 3, skb: skbs[0] },
      { ifindex: 3, skb: skbs[1] },
    ]);
    assert.equal(t.stats[NEIGH_STAT_RES_FAILED], 1);
    assert.equal(t.stats[NEIGH_STAT_QUEUE_FAILED], 2);
    assert.equal(cpu.drops[SKB_DROP_REASON.NEIGH_FAILED], 2);
    // The reports' own packets started a new resolution; they wait on it, not reported twice.
    const n = neighLookup(t, 3, PEER_IP);
    assert.equal(t.state[n], NUD_INCOMPLETE);
    assert.equal(t.qLen[n], 2);
    assert.equal(t.qHead[n], again[0]);
    assertQueueBalance(t);
    // Teardown: the entry goes, its queue is dropped as NEIGH_DEAD.
    assert.equal(neighTableFlush(t), 1);
    assert.deepEqual(
      log.dropped.map((d) => [d.skb, d.reason]),
      again.map((s) => [s, SKB_DROP_REASON.NEIGH_DEAD]),
    );
    assert.equal(t.stats[NEIGH_STAT_QUEUE_FLUSHED], 2);
    assertQueueBalance(t);
    assertNoLeaks(cpu);
  });

  test("an entry removed with packets queued drops them as NEIGH_DEAD; flush keeps PERMANENT entries unless asked", () => {
    const { cpu, t, log } = queueSetup();
    const peer2 = ip("169.254.99.30");
    neighAddPermanent(t, 4, PEER_IP, new Uint8Array(PEER_MAC));
    const a = allocSkb(cpu, 64);
    const b = allocSkb(cpu, 64);
    const c = allocSkb(cpu, 64);
    __neighEventSend(t, 3, PEER_IP, a, 0);
    __neighEventSend(t, 3, peer2, b, 0);
    __neighEventSend(t, 5, peer2, c, 0);
    assert.ok(neighDelete(t, 3, PEER_IP));
    assert.deepEqual(log.dropped, [{ ifindex: 3, skb: a, reason: SKB_DROP_REASON.NEIGH_DEAD }]);
    assert.equal(neighTableFlush(t, 3), 1, "only device 3");
    assert.deepEqual(log.dropped[1], { ifindex: 3, skb: b, reason: SKB_DROP_REASON.NEIGH_DEAD });
    assert.equal(neighQueuedCount(t), 1);
    assert.equal(neighTableFlush(t), 1, "the PERMANENT entry stays");
    assert.notEqual(neighLookup(t, 4, PEER_IP), -1);
    assert.equal(neighTableFlush(t, -1, false), 1);
    assert.equal(t.count, 0);
    assert.equal(neighQueuedCount(t), 0);
    assert.equal(cpu.drops[SKB_DROP_REASON.NEIGH_DEAD], 3);
    assertQueueBalance(t);
    assertNoLeaks(cpu);
  });

  test("a full table takes no packet (NEIGH_SEND_FULL: the caller drops it); a table without ops refuses to queue", () => {
    const { cpu, t } = queueSetup({ max: 1 });
    neighAddPermanent(t, 3, PEER_IP, new Uint8Array(PEER_MAC));
    const s = allocSkb(cpu, 64);
    assert.equal(__neighEventSend(t, 3, ip("169.254.99.40"), s, 0), NEIGH_SEND_FULL);
    assert.equal(neighQueuedCount(t), 0);
    assert.equal(__neighEventSend(t, 3, PEER_IP, s, 0), NEIGH_SEND_VALID, "a PERMANENT entry is usable");
    const bare = neighTableCreate();
    assert.throws(() => __neighEventSend(bare, 3, PEER_IP, s, 0), /neighTableSetOps/);
    kfreeSkbReason(cpu, s, SKB_DROP_REASON.NEIGH_CREATEFAIL);
    assertNoLeaks(cpu);
  });
});
