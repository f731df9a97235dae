/**
 * GRO for TCP/IPv4 (src/core/gro.ts): real segments with valid checksums in
 * skbs whose heads are page fragments (stolen heads), kmalloc heads
 * (frag_list chaining) or header-only heads with payload frags (frags
 * moved); every flush rule; the held-flow limit; flow keys (VLAN, device,
 * MAC); malformed input; the NAPI cache and page-refcount effects. Every
 * test ends with a leak check over every allocator.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import {
  devGroReceive,
  GRO_CONSUMED,
  GRO_FLUSH_ACK,
  GRO_FLUSH_CALL,
  GRO_FLUSH_CWR,
  GRO_FLUSH_FIN,
  GRO_FLUSH_FLAGS,
  GRO_FLUSH_FRAGS,
  GRO_FLUSH_IP,
  GRO_FLUSH_IP_ID,
  GRO_FLUSH_MSS,
  GRO_FLUSH_NO_PAYLOAD,
  GRO_FLUSH_OLDEST,
  GRO_FLUSH_OOO,
  GRO_FLUSH_OPTIONS,
  GRO_FLUSH_PSH,
  GRO_FLUSH_RST,
  GRO_FLUSH_SHORT,
  GRO_FLUSH_SIZE,
  GRO_FLUSH_SYN,
  GRO_FLUSH_URG,
  GRO_HELD,
  GRO_MAX_SIZE,
  GRO_MERGED,
  GRO_MERGED_FREE,
  GRO_NORMAL,
  GRO_NORMAL_FLAGS,
  GRO_NORMAL_FRAGMENT,
  GRO_NORMAL_INELIGIBLE,
  GRO_NORMAL_IP_CSUM,
  GRO_NORMAL_IP_FLUSH,
  GRO_NORMAL_IP_HDR,
  GRO_NORMAL_NO_PAYLOAD,
  GRO_NORMAL_NOT_IP,
  GRO_NORMAL_NOT_TCP,
  GRO_NORMAL_TCP_CSUM,
  GRO_NORMAL_TCP_HDR,
  GRO_STAT_FLUSHED,
  GRO_STAT_FRAG_LIST,
  GRO_STAT_FRAGS_MOVED,
  GRO_STAT_HELD,
  GRO_STAT_MERGED,
  GRO_STAT_NAMES,
  GRO_STAT_NORMAL,
  GRO_STAT_RECEIVED,
  GRO_STAT_STOLEN_HEADS,
  GroList,
  groFlush,
  groStats,
  MAX_GRO_SKBS,
  NAPI_GRO_FREE,
  NAPI_GRO_FREE_STOLEN_HEAD,
  napiGroFlush,
  napiGroReceive,
  napiSkbFinish,
} from "../../src/core/gro.js";
import { SKB_GSO_TCP_ECN, SKB_GSO_TCP_FIXEDID, SKB_GSO_TCPV4, skbChecksumHelp, skbIsGso } from "../../src/core/gso.js";
import { pageRefCount, virtToHeadPage } from "../../src/mm/page-alloc.js";
import { pageFragAlloc } from "../../src/mm/page-frag.js";
import { kmemCacheInfo } from "../../src/mm/slab.js";
import { csumPartial, csumTcpudpMagic, ipFastCsum } from "../../src/net/checksum.js";
import { ETH_P_IP, IPPROTO_TCP, IPPROTO_UDP, TCP_FLAG_ACK, TCP_FLAG_CWR, TCP_FLAG_ECE, TCP_FLAG_FIN, TCP_FLAG_PSH, TCP_FLAG_RST, TCP_FLAG_SYN, TCP_FLAG_URG } from "../../src/net/proto.js";
import {
  skbDataref,
  skbFlag,
  skbFragList,
  skbHeadPtr,
  skbLen,
  skbNrFrags,
  skbShinfo,
} from "../../src/skb/access.js";
import { allocSkb } from "../../src/skb/alloc.js";
import { NAPI_STAT_PUTS, type SkbCpu } from "../../src/skb/cpu.js";
import { skbAddRxFrag, skbPull, skbPut, skbReserve } from "../../src/skb/data.js";
import { kfreeSkb } from "../../src/skb/free.js";
import {
  CHECKSUM_PARTIAL,
  CHECKSUM_UNNECESSARY,
  MAX_SKB_FRAGS,
  NET_SKB_PAD,
  SHINFO_GSO_SEGS,
  SHINFO_GSO_SIZE,
  SHINFO_GSO_TYPE,
  SKB_ALLOC_FCLONE,
  SKB_CSUM_OFFSET,
  SKB_CSUM_START,
  SKB_DEV,
  SKB_HEAD_OBJ_SIZE,
  SKB_IP_SUMMED,
  SKB_MAC_HEADER,
  SKB_NAPI_ID,
  SKB_NEXT,
  SKB_PROTOCOL,
  SKB_TRUESIZE,
  SKB_USERS,
  SKBF_HEAD_FRAG,
  SKBF_NOHDR,
  skbDataAlign,
} from "../../src/skb/layout.js";
import { napiCacheSetEnabled } from "../../src/skb/napi-cache.js";
import { skbToBytes } from "../../src/skb/view.js";
import { assertNoLeaks, byteSource, PROFILES, skbDataOff } from "../support/skb.js";
import {
  delivered,
  deliver,
  freeAll,
  get32,
  type Mode,
  NAPI,
  put16,
  type RxOpts,
  rx,
  type Seg,
  setupGro as setup,
  segFactory,
  take,
  tcpPacket,
} from "../support/tcp.js";

napiCacheSetEnabled(true);

// ---- packets --------------------------------------------------------------------------------

/** Deterministic payload bytes for this file. */
const { bytes } = byteSource(12345);
const { mkSeg, flow } = segFactory(
  { saddr: 0x0a000001, daddr: 0x0a000002, sport: 40000, dport: 5201, seq: 1000, ack: 777, win: 512, id: 100, tos: 0, ce: false },
  bytes,
);

function tcpCsumOk(b: Uint8Array): boolean {
  const ihl = ((b[0] as number) & 15) * 4;
  const l4 = b.length - ihl;
  return csumTcpudpMagic(get32(b, 12), get32(b, 16), l4, IPPROTO_TCP, csumPartial(b, ihl, l4, 0)) === 0;
}

/** The bytes GRO must produce for `segs` merged into one. */
function expectedMerged(segs: Seg[]): Uint8Array {
  const first = tcpPacket(segs[0] as Seg);
  const thl = ((first[32] as number) >>> 4) * 4;
  const total = 20 + thl + segs.reduce((a, s) => a + s.payload.length, 0);
  const out = new Uint8Array(total);
  out.set(first.subarray(0, 20 + thl));
  let at = 20 + thl;
  let fl = 0;
  for (const s of segs) {
    out.set(s.payload, at);
    at += s.payload.length;
    fl |= s.flags & (TCP_FLAG_FIN | TCP_FLAG_PSH);
  }
  out[33] = (out[33] as number) | fl;
  put16(out, 2, total);
  put16(out, 10, 0);
  put16(out, 10, ipFastCsum(out, 0, 5));
  return out;
}

/** Check one delivered aggregate: bytes (except the TCP checksum), GSO fields, checksums. */
function checkAggregate(cpu: SkbCpu, skb: number, segs: Seg[]): void {
  const exp = expectedMerged(segs);
  const got = skbToBytes(cpu, skb);
  assert.equal(got.length, exp.length);
  assert.equal(ipFastCsum(got, 0, 5), 0, "IPv4 header checksum");
  got[36] = exp[36] as number;
  got[37] = exp[37] as number;
  assert.deepEqual(got, exp);
  const sh = skbShinfo(cpu, skb);
  assert.equal(cpu.u16[(sh + SHINFO_GSO_SIZE) >>> 1], segs[0]?.payload.length);
  assert.equal(cpu.u16[(sh + SHINFO_GSO_SEGS) >>> 1], segs.length);
  assert.equal(cpu.u32[(sh + SHINFO_GSO_TYPE) >>> 2]! & SKB_GSO_TCPV4, SKB_GSO_TCPV4);
  assert.equal(cpu.u8[skb + SKB_IP_SUMMED], CHECKSUM_PARTIAL);
  assert.equal(cpu.u16[(skb + SKB_CSUM_START) >>> 1], skbDataOff(cpu, skb) + 20);
  assert.equal(cpu.u16[(skb + SKB_CSUM_OFFSET) >>> 1], 16);
  // The TCP field holds the pseudo-header sum; finishing it yields a valid checksum.
  assert.equal(skbChecksumHelp(cpu, skb), 0);
  assert.ok(tcpCsumOk(skbToBytes(cpu, skb)), "TCP checksum after skbChecksumHelp");
}

function feed(cpu: SkbCpu, gro: GroList, segs: Seg[], o: RxOpts = {}): number[] {
  return segs.map((s) => napiGroReceive(cpu, gro, rx(cpu, tcpPacket(s), o), deliver));
}

function stat(gro: GroList, i: number): number {
  return gro.stats[i] as number;
}

function pagesOf(cpu: SkbCpu, skbs: number[]): number[] {
  return [...new Set(skbs.map((s) => virtToHeadPage(cpu.fragPages, skbHeadPtr(cpu, s))))];
}
function refSum(cpu: SkbCpu, pages: number[]): number {
  return pages.reduce((a, p) => a + pageRefCount(cpu.fragPages, p), 0);
}

// ---- tests ----------------------------------------------------------------------------------

for (const prof of PROFILES) for (const dbg of [false, true]) {
  describe(`GRO merge paths [${prof}${dbg ? " slab-debug" : ""}]`, () => {
    test("page-fragment heads: N in-order segments become one skb, heads stolen, shells cached", () => {
      const cpu = setup(prof, dbg);
      const gro = new GroList({ napiId: 42 });
      const N = 12;
      const segs = flow(N);
      (segs[N - 1] as Seg).flags |= TCP_FLAG_PSH;
      const skbs = segs.map((s) => rx(cpu, tcpPacket(s), { mode: "napi" }));
      for (const s of skbs) assert.ok(skbFlag(cpu, s, SKBF_HEAD_FRAG), "napiAllocSkb(1514) has a page-fragment head");
      const truesizes = skbs.reduce((a, s) => a + cpu.u32[(s + SKB_TRUESIZE) >>> 2]!, 0);
      const pages = pagesOf(cpu, skbs);
      const refs0 = refSum(cpu, pages);
      const puts0 = cpu.stats[NAPI_STAT_PUTS]!;
      const verdicts = skbs.map((s) => napiGroReceive(cpu, gro, s, deliver));
      assert.deepEqual(verdicts, [GRO_HELD, ...new Array(N - 1).fill(GRO_MERGED_FREE)]);
      assert.equal(gro.free, NAPI_GRO_FREE_STOLEN_HEAD);
      const out = take();
      assert.deepEqual(out, [skbs[0]], "the first skb carries the aggregate, delivered on PSH");
      const p = out[0] as number;
      checkAggregate(cpu, p, segs);
      assert.ok(skbIsGso(cpu, p));
      assert.equal(cpu.u32[(skbShinfo(cpu, p) + SHINFO_GSO_TYPE) >>> 2], SKB_GSO_TCPV4, "incrementing ids: not FIXEDID");
      assert.equal(skbNrFrags(cpu, p), N - 1);
      assert.equal(skbFragList(cpu, p), 0);
      assert.equal(cpu.u32[(p + SKB_NAPI_ID) >>> 2], 42);
      assert.equal(cpu.u32[(p + SKB_TRUESIZE) >>> 2], truesizes - (N - 1) * SKB_HEAD_OBJ_SIZE, "stolen heads keep their truesize");
      assert.equal(cpu.stats[NAPI_STAT_PUTS]! - puts0, N - 1, "every stolen head's shell went to the NAPI cache");
      assert.equal(refSum(cpu, pages), refs0, "page references moved, none taken or dropped");
      assert.equal(stat(gro, GRO_STAT_STOLEN_HEADS), N - 1);
      assert.equal(stat(gro, GRO_STAT_MERGED), N - 1);
      assert.equal(stat(gro, GRO_STAT_HELD), 1);
      assert.equal(stat(gro, GRO_FLUSH_PSH), 1);
      assert.equal(gro.n, 0);
      kfreeSkb(cpu, p);
      assert.equal(refSum(cpu, pages), refs0 - N, "freeing the aggregate drops one reference per segment");
      assertNoLeaks(cpu);
    });

    test("header-only heads with payload frags: frags move, the rest is released (NAPI_GRO_FREE)", () => {
      const cpu = setup(prof, dbg);
      const gro = new GroList();
      const N = 6;
      const segs = flow(N, {}, 1000);
      const puts0 = cpu.stats[NAPI_STAT_PUTS]!;
      const v = feed(cpu, gro, segs, { mode: "frags" });
      assert.deepEqual(v, [GRO_HELD, ...new Array(N - 1).fill(GRO_MERGED_FREE)]);
      assert.equal(gro.free, NAPI_GRO_FREE);
      assert.equal(stat(gro, GRO_STAT_FRAGS_MOVED), N - 1);
      assert.equal(cpu.stats[NAPI_STAT_PUTS]! - puts0, N - 1, "released shells are cached");
      groFlush(cpu, gro, true, deliver);
      const out = take();
      assert.equal(out.length, 1);
      const p = out[0] as number;
      assert.equal(skbNrFrags(cpu, p), N);
      checkAggregate(cpu, p, segs);
      assert.equal(stat(gro, GRO_FLUSH_CALL), 1);
      kfreeSkb(cpu, p);
      assertNoLeaks(cpu);
    });

    test("fast-clone skbs that merged their frags go to __kfreeSkb, never into the cache", () => {
      const cpu = setup(prof, dbg);
      const gro = new GroList();
      const segs = flow(2, {}, 500);
      const p = rx(cpu, tcpPacket(segs[0] as Seg), { mode: "frags" });
      assert.equal(napiGroReceive(cpu, gro, p, deliver), GRO_HELD);
      // A fast-clone original with the same layout (headers linear, payload in a frag).
      const pkt = tcpPacket(segs[1] as Seg);
      const fc1 = allocSkb(cpu, NET_SKB_PAD + 86, SKB_ALLOC_FCLONE);
      skbReserve(cpu, fc1, NET_SKB_PAD);
      const frame = new Uint8Array(14 + 52);
      frame.set([2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 8, 0]);
      frame.set(pkt.subarray(0, 52), 14);
      cpu.u8.set(frame, skbPut(cpu, fc1, frame.length));
      const f = pageFragAlloc(cpu.napiFrag, skbDataAlign(500));
      cpu.u8.set(pkt.subarray(52), f);
      const page = virtToHeadPage(cpu.fragPages, f);
      skbAddRxFrag(cpu, fc1, 0, page, f - page, 500, 500);
      cpu.u16[(fc1 + SKB_MAC_HEADER) >>> 1] = skbDataOff(cpu, fc1);
      skbPull(cpu, fc1, 14);
      cpu.u16[(fc1 + SKB_PROTOCOL) >>> 1] = ETH_P_IP;
      cpu.u32[(fc1 + SKB_DEV) >>> 2] = NAPI.dev;
      const puts0 = cpu.stats[NAPI_STAT_PUTS]!;
      assert.equal(napiGroReceive(cpu, gro, fc1, deliver), GRO_MERGED_FREE);
      assert.equal(cpu.stats[NAPI_STAT_PUTS]! - puts0, 0, "fclone shell not cached");
      assert.equal(kmemCacheInfo(cpu.fcloneCache).activeObjs, 0, "fclone pair freed at once");
      groFlush(cpu, gro, true, deliver);
      const out = take();
      checkAggregate(cpu, out[0] as number, segs);
      freeAll(cpu, out);
      assertNoLeaks(cpu);
    });

    test("kmalloc heads are chained on frag_list with their headers pulled (GRO_MERGED)", () => {
      const cpu = setup(prof, dbg);
      const gro = new GroList();
      const N = 5;
      const segs = flow(N, {}, 300);
      const skbs = segs.map((s) => rx(cpu, tcpPacket(s), { mode: "kmalloc" }));
      const v = skbs.map((s) => napiGroReceive(cpu, gro, s, deliver));
      assert.deepEqual(v, [GRO_HELD, ...new Array(N - 1).fill(GRO_MERGED)]);
      assert.equal(stat(gro, GRO_STAT_FRAG_LIST), N - 1);
      groFlush(cpu, gro, true, deliver);
      const p = take()[0] as number;
      assert.equal(p, skbs[0]);
      assert.equal(skbFragList(cpu, p), skbs[1]);
      for (let i = 1; i < N; i++) {
        const s = skbs[i] as number;
        assert.equal(cpu.u32[(s + SKB_NEXT) >>> 2], i + 1 < N ? skbs[i + 1] : 0);
        assert.equal(skbLen(cpu, s), 300, "headers pulled");
        assert.ok(skbFlag(cpu, s, SKBF_NOHDR));
        assert.equal(skbDataref(cpu, s), 1 + (1 << 16), "__skb_header_release");
      }
      checkAggregate(cpu, p, segs);
      kfreeSkb(cpu, p);
      assertNoLeaks(cpu);
    });
  });
}

describe("GRO size limits", () => {
  test(`frag cap: after ${MAX_SKB_FRAGS} frags the next segment is chained and later payload fills ITS frags`, () => {
    const cpu = setup();
    const gro = new GroList();
    const N = 1 + MAX_SKB_FRAGS + 3;
    const segs = flow(N);
    const skbs = segs.map((s) => rx(cpu, tcpPacket(s)));
    const v = skbs.map((s) => napiGroReceive(cpu, gro, s, deliver));
    const chained = skbs[1 + MAX_SKB_FRAGS] as number;
    assert.equal(v[1 + MAX_SKB_FRAGS], GRO_MERGED, "frags full: the page-fragment skb itself is chained");
    assert.equal(v[N - 1], GRO_MERGED_FREE, "later heads are stolen into the chained skb");
    groFlush(cpu, gro, true, deliver);
    const p = take()[0] as number;
    assert.equal(skbNrFrags(cpu, p), MAX_SKB_FRAGS);
    assert.equal(skbFragList(cpu, p), chained);
    assert.equal(skbNrFrags(cpu, chained), 2);
    assert.equal(skbLen(cpu, chained), 3 * 1448);
    checkAggregate(cpu, p, segs);
    kfreeSkb(cpu, p);
    assertNoLeaks(cpu);
  });

  test("frag cap with chainOnFragsFull off: the aggregate is flushed (GRO_FLUSH_FRAGS)", () => {
    const cpu = setup();
    const gro = new GroList({ chainOnFragsFull: false });
    const N = 1 + MAX_SKB_FRAGS + 2;
    const segs = flow(N);
    const v = feed(cpu, gro, segs);
    assert.equal(v[1 + MAX_SKB_FRAGS], GRO_HELD, "the segment that did not fit starts a new aggregate");
    const first = take();
    assert.equal(first.length, 1);
    assert.equal(stat(gro, GRO_FLUSH_FRAGS), 1);
    checkAggregate(cpu, first[0] as number, segs.slice(0, 1 + MAX_SKB_FRAGS));
    assert.equal(skbNrFrags(cpu, first[0] as number), MAX_SKB_FRAGS);
    groFlush(cpu, gro, true, deliver);
    const second = take();
    checkAggregate(cpu, second[0] as number, segs.slice(1 + MAX_SKB_FRAGS));
    freeAll(cpu, [...first, ...second]);
    assertNoLeaks(cpu);
  });

  test("64 KiB cap: the segment that would reach GRO_MAX_SIZE flushes the aggregate and is held", () => {
    const cpu = setup();
    const gro = new GroList();
    const fit = Math.floor((GRO_MAX_SIZE - 1 - 52) / 1448); // 45 segments: 65212 bytes
    const segs = flow(fit + 1);
    const v = feed(cpu, gro, segs);
    assert.equal(v[fit], GRO_HELD);
    assert.equal(stat(gro, GRO_FLUSH_SIZE), 1);
    const out = take();
    assert.equal(out.length, 1);
    const p = out[0] as number;
    assert.equal(skbLen(cpu, p), 52 + fit * 1448);
    assert.ok(skbLen(cpu, p) < GRO_MAX_SIZE);
    checkAggregate(cpu, p, segs.slice(0, fit));
    groFlush(cpu, gro, true, deliver);
    const last = take();
    assert.equal(last.length, 1);
    assert.deepEqual(skbToBytes(cpu, last[0] as number), tcpPacket(segs[fit] as Seg), "a lone held segment is delivered unchanged");
    freeAll(cpu, [p, ...last]);
    assertNoLeaks(cpu);
  });
});

interface FlushCase {
  name: string;
  /** Change the third segment (two in-order segments are held as an aggregate first). */
  mutate: (s: Seg) => void;
  /** Verdict of the third segment. */
  verdict: number;
  /** Flush reason counted for the held aggregate. */
  reason: number;
  /** The third segment is part of the delivered aggregate (merged, then flushed). */
  mergedIn: boolean;
  /** GRO_NORMAL reason of the third segment, if passed up. */
  normal?: number;
}

const FLUSH_CASES: FlushCase[] = [
  { name: "PSH: merged, then delivered", mutate: (s) => (s.flags |= TCP_FLAG_PSH), verdict: GRO_MERGED_FREE, reason: GRO_FLUSH_PSH, mergedIn: true },
  { name: "FIN: merged, then delivered", mutate: (s) => (s.flags |= TCP_FLAG_FIN), verdict: GRO_MERGED_FREE, reason: GRO_FLUSH_FIN, mergedIn: true },
  {
    name: "short segment: merged, then delivered",
    mutate: (s) => (s.payload = bytes(700)),
    verdict: GRO_MERGED_FREE,
    reason: GRO_FLUSH_SHORT,
    mergedIn: true,
  },
  { name: "SYN", mutate: (s) => (s.flags |= TCP_FLAG_SYN), verdict: GRO_NORMAL, reason: GRO_FLUSH_SYN, mergedIn: false, normal: GRO_NORMAL_FLAGS },
  { name: "RST", mutate: (s) => (s.flags |= TCP_FLAG_RST), verdict: GRO_NORMAL, reason: GRO_FLUSH_RST, mergedIn: false, normal: GRO_NORMAL_FLAGS },
  {
    name: "URG",
    mutate: (s) => {
      s.flags |= TCP_FLAG_URG;
      s.urg = 5;
    },
    verdict: GRO_NORMAL,
    reason: GRO_FLUSH_URG,
    mergedIn: false,
    normal: GRO_NORMAL_FLAGS,
  },
  { name: "CWR: starts a new aggregate", mutate: (s) => (s.flags |= TCP_FLAG_CWR), verdict: GRO_HELD, reason: GRO_FLUSH_CWR, mergedIn: false },
  { name: "ECE differs", mutate: (s) => (s.flags |= TCP_FLAG_ECE), verdict: GRO_HELD, reason: GRO_FLUSH_FLAGS, mergedIn: false },
  { name: "window differs", mutate: (s) => (s.win = 1024), verdict: GRO_HELD, reason: GRO_FLUSH_FLAGS, mergedIn: false },
  { name: "out of order (seq gap)", mutate: (s) => (s.seq += 1448), verdict: GRO_HELD, reason: GRO_FLUSH_OOO, mergedIn: false },
  {
    name: "option bytes differ (timestamp)",
    mutate: (s) => (s.opts = [1, 1, 8, 10, 0, 0, 0x12, 0x35, 0, 0, 0x56, 0x78]),
    verdict: GRO_HELD,
    reason: GRO_FLUSH_OPTIONS,
    mergedIn: false,
  },
  { name: "option length differs", mutate: (s) => (s.opts = []), verdict: GRO_HELD, reason: GRO_FLUSH_FLAGS, mergedIn: false },
  { name: "ack differs", mutate: (s) => (s.ack += 1), verdict: GRO_HELD, reason: GRO_FLUSH_ACK, mergedIn: false },
  { name: "TTL differs", mutate: (s) => (s.ttl = 63), verdict: GRO_HELD, reason: GRO_FLUSH_IP, mergedIn: false },
  { name: "TOS differs", mutate: (s) => (s.tos = 4), verdict: GRO_HELD, reason: GRO_FLUSH_IP, mergedIn: false },
  { name: "DF differs", mutate: (s) => (s.df = false), verdict: GRO_HELD, reason: GRO_FLUSH_IP, mergedIn: false },
  { name: "IP id out of sequence", mutate: (s) => (s.id += 5), verdict: GRO_HELD, reason: GRO_FLUSH_IP_ID, mergedIn: false },
  { name: "bigger than the MSS", mutate: (s) => (s.payload = bytes(1449)), verdict: GRO_HELD, reason: GRO_FLUSH_MSS, mergedIn: false },
  {
    name: "pure ACK",
    mutate: (s) => (s.payload = new Uint8Array(0)),
    verdict: GRO_NORMAL,
    reason: GRO_FLUSH_NO_PAYLOAD,
    mergedIn: false,
    normal: GRO_NORMAL_NO_PAYLOAD,
  },
  {
    name: "CE bit set (IP flush of the new packet)",
    mutate: (s) => (s.ce = true),
    verdict: GRO_NORMAL,
    reason: GRO_FLUSH_IP,
    mergedIn: false,
    normal: GRO_NORMAL_IP_FLUSH,
  },
];

describe("GRO flush rules", () => {
  for (const c of FLUSH_CASES) {
    test(c.name, () => {
      const cpu = setup();
      const gro = new GroList();
      const segs = flow(3);
      c.mutate(segs[2] as Seg);
      const v = feed(cpu, gro, segs);
      assert.deepEqual(v.slice(0, 2), [GRO_HELD, GRO_MERGED_FREE]);
      assert.equal(v[2], c.verdict);
      assert.equal(stat(gro, c.reason), 1, `flush reason ${GRO_STAT_NAMES[c.reason]}`);
      assert.equal(stat(gro, GRO_STAT_FLUSHED), 1);
      if (c.normal !== undefined) assert.equal(stat(gro, c.normal), 1, `normal reason ${GRO_STAT_NAMES[c.normal]}`);
      const out = take();
      if (c.mergedIn) {
        assert.equal(out.length, 1);
        checkAggregate(cpu, out[0] as number, segs);
      } else {
        checkAggregate(cpu, out[0] as number, segs.slice(0, 2));
        if (c.verdict === GRO_NORMAL) {
          assert.equal(out.length, 2, "aggregate first, then the new skb");
          assert.deepEqual(skbToBytes(cpu, out[1] as number), tcpPacket(segs[2] as Seg));
        } else {
          assert.equal(out.length, 1);
          assert.equal(gro.n, 1, "the new segment is held as a new aggregate");
          groFlush(cpu, gro, true, deliver);
          const rest = take();
          assert.deepEqual(skbToBytes(cpu, rest[0] as number), tcpPacket(segs[2] as Seg));
          out.push(...rest);
        }
      }
      assert.equal(stat(gro, GRO_STAT_RECEIVED), stat(gro, GRO_STAT_MERGED) + stat(gro, GRO_STAT_HELD) + stat(gro, GRO_STAT_NORMAL));
      freeAll(cpu, out);
      assertNoLeaks(cpu);
    });
  }

  test("PSH/FIN/SYN/RST/URG segments without a held flow are passed up (GRO_NORMAL)", () => {
    const cpu = setup();
    const gro = new GroList();
    for (const f of [TCP_FLAG_PSH, TCP_FLAG_FIN, TCP_FLAG_SYN, TCP_FLAG_RST, TCP_FLAG_URG]) {
      const s = mkSeg({ flags: TCP_FLAG_ACK | f });
      assert.equal(napiGroReceive(cpu, gro, rx(cpu, tcpPacket(s)), deliver), GRO_NORMAL);
    }
    assert.equal(gro.n, 0);
    assert.equal(stat(gro, GRO_NORMAL_FLAGS), 5);
    freeAll(cpu, take());
    assertNoLeaks(cpu);
  });

  test("CWR on the first segment: aggregate with SKB_GSO_TCP_ECN; later segments without CWR merge", () => {
    const cpu = setup();
    const gro = new GroList();
    const segs = flow(4);
    (segs[0] as Seg).flags |= TCP_FLAG_CWR;
    const v = feed(cpu, gro, segs);
    assert.deepEqual(v, [GRO_HELD, GRO_MERGED_FREE, GRO_MERGED_FREE, GRO_MERGED_FREE]);
    groFlush(cpu, gro, true, deliver);
    const p = take()[0] as number;
    checkAggregate(cpu, p, segs);
    assert.equal(cpu.u32[(skbShinfo(cpu, p) + SHINFO_GSO_TYPE) >>> 2], SKB_GSO_TCPV4 | SKB_GSO_TCP_ECN);
    kfreeSkb(cpu, p);
    assertNoLeaks(cpu);
  });

  test("DF with fixed IP ids: merged as SKB_GSO_TCP_FIXEDID; without DF fixed ids flush", () => {
    const cpu = setup();
    const gro = new GroList();
    const segs = flow(4).map((s) => ({ ...s, id: 9 }));
    assert.deepEqual(feed(cpu, gro, segs), [GRO_HELD, GRO_MERGED_FREE, GRO_MERGED_FREE, GRO_MERGED_FREE]);
    groFlush(cpu, gro, true, deliver);
    const p = take()[0] as number;
    checkAggregate(cpu, p, segs);
    assert.equal(cpu.u32[(skbShinfo(cpu, p) + SHINFO_GSO_TYPE) >>> 2], SKB_GSO_TCPV4 | SKB_GSO_TCP_FIXEDID);
    kfreeSkb(cpu, p);
    const noDf = flow(2, { df: false }).map((s) => ({ ...s, id: 9 }));
    assert.deepEqual(feed(cpu, gro, noDf), [GRO_HELD, GRO_HELD]);
    assert.equal(stat(gro, GRO_FLUSH_IP_ID), 1);
    // An atomic flow that started incrementing must keep incrementing.
    const inc = flow(3, { sport: 1, id: 50 });
    (inc[2] as Seg).id = 51;
    assert.deepEqual(feed(cpu, gro, inc), [GRO_HELD, GRO_MERGED_FREE, GRO_HELD]);
    assert.equal(stat(gro, GRO_FLUSH_IP_ID), 2);
    groFlush(cpu, gro, true, deliver);
    freeAll(cpu, take());
    assertNoLeaks(cpu);
  });

  test("a bad TCP checksum is passed up without disturbing the held flow", () => {
    const cpu = setup();
    const gro = new GroList();
    const segs = flow(3);
    feed(cpu, gro, segs.slice(0, 2));
    const bad = tcpPacket(segs[2] as Seg);
    bad[60] = (bad[60] as number) ^ 0xff;
    assert.equal(napiGroReceive(cpu, gro, rx(cpu, bad), deliver), GRO_NORMAL);
    assert.equal(stat(gro, GRO_NORMAL_TCP_CSUM), 1);
    assert.equal(gro.n, 1, "the aggregate is still held");
    const out = take();
    assert.equal(out.length, 1);
    assert.deepEqual(skbToBytes(cpu, out[0] as number), bad);
    // A skb marked CHECKSUM_UNNECESSARY is not verified again.
    const trusted = rx(cpu, bad);
    cpu.u8[trusted + SKB_IP_SUMMED] = CHECKSUM_UNNECESSARY;
    assert.equal(napiGroReceive(cpu, gro, trusted, deliver), GRO_MERGED_FREE);
    groFlush(cpu, gro, true, deliver);
    freeAll(cpu, [...out, ...take()]);
    assertNoLeaks(cpu);
  });
});

describe("GRO flows", () => {
  test(`the ${MAX_GRO_SKBS + 1}th flow flushes the oldest; groFlush delivers oldest first`, () => {
    const cpu = setup();
    const gro = new GroList();
    const skbs: number[] = [];
    const pkts: Uint8Array[] = [];
    for (let f = 0; f <= MAX_GRO_SKBS; f++) {
      pkts.push(tcpPacket(mkSeg({ sport: 1000 + f })));
      const s = rx(cpu, pkts[f] as Uint8Array);
      skbs.push(s);
      assert.equal(napiGroReceive(cpu, gro, s, deliver), GRO_HELD);
      assert.equal(gro.n, Math.min(f + 1, MAX_GRO_SKBS));
    }
    assert.deepEqual(take(), [skbs[0]]);
    assert.equal(stat(gro, GRO_FLUSH_OLDEST), 1);
    const lone = skbs[0] as number;
    assert.equal(cpu.u16[(skbShinfo(cpu, lone) + SHINFO_GSO_SIZE) >>> 1], 0, "a single segment is not GSO");
    assert.equal(cpu.u8[lone + SKB_IP_SUMMED], CHECKSUM_UNNECESSARY, "verified in software on the way in");
    assert.deepEqual(skbToBytes(cpu, lone), pkts[0]);
    groFlush(cpu, gro, true, deliver);
    assert.deepEqual(take(), skbs.slice(1));
    assert.equal(gro.n, 0);
    freeAll(cpu, skbs);
    assertNoLeaks(cpu);
  });

  test("different VLAN tag, ingress device or MAC header: not merged", () => {
    const cpu = setup();
    const gro = new GroList();
    const segs = flow(2);
    for (const [a, b] of [
      [{ vlan: 10 }, { vlan: 11 }],
      [{ vlan: 10 }, {}],
      [{ dev: 3 }, { dev: 4 }],
      [{ mac: 2 }, { mac: 9 }],
    ] as [RxOpts, RxOpts][]) {
      assert.equal(napiGroReceive(cpu, gro, rx(cpu, tcpPacket(segs[0] as Seg), a), deliver), GRO_HELD);
      assert.equal(napiGroReceive(cpu, gro, rx(cpu, tcpPacket(segs[1] as Seg), b), deliver), GRO_HELD);
      assert.equal(gro.n, 2);
      groFlush(cpu, gro, true, deliver);
      freeAll(cpu, take());
    }
    // Same VLAN: merged.
    assert.deepEqual(feed(cpu, gro, segs, { vlan: 10 }), [GRO_HELD, GRO_MERGED_FREE]);
    groFlush(cpu, gro, true, deliver);
    freeAll(cpu, take());
    assertNoLeaks(cpu);
  });

  test("interleaved flows are aggregated separately", () => {
    const cpu = setup();
    const gro = new GroList();
    const a = flow(5, { sport: 1 });
    const b = flow(5, { sport: 2 });
    for (let i = 0; i < 5; i++) {
      napiGroReceive(cpu, gro, rx(cpu, tcpPacket(a[i] as Seg)), deliver);
      napiGroReceive(cpu, gro, rx(cpu, tcpPacket(b[i] as Seg), { mode: "kmalloc" }), deliver);
    }
    groFlush(cpu, gro, true, deliver);
    const out = take();
    assert.equal(out.length, 2);
    checkAggregate(cpu, out[0] as number, a);
    checkAggregate(cpu, out[1] as number, b);
    freeAll(cpu, out);
    assertNoLeaks(cpu);
  });

  test("groFlush(all = false) / napiGroFlush(flushOld) deliver only flows older than `now`", () => {
    const cpu = setup();
    const gro = new GroList();
    gro.now = 1;
    napiGroReceive(cpu, gro, rx(cpu, tcpPacket(mkSeg({ sport: 1 }))), deliver);
    gro.now = 2;
    napiGroReceive(cpu, gro, rx(cpu, tcpPacket(mkSeg({ sport: 2 }))), deliver);
    groFlush(cpu, gro, false, deliver);
    assert.equal(delivered.length, 1);
    assert.equal(gro.n, 1);
    napiGroFlush(cpu, gro, true, deliver);
    assert.equal(gro.n, 1, "held at the current tick: stays");
    gro.now = 3;
    napiGroFlush(cpu, gro, true, deliver);
    assert.equal(gro.n, 0);
    assert.equal(delivered.length, 2);
    freeAll(cpu, take());
    assertNoLeaks(cpu);
  });
});

describe("GRO input that is not aggregated", () => {
  function udpPacket(): Uint8Array {
    const b = tcpPacket(mkSeg({ payload: bytes(100), opts: [] }));
    b[9] = IPPROTO_UDP;
    put16(b, 10, 0);
    put16(b, 10, ipFastCsum(b, 0, 5));
    return b;
  }
  const cases: [string, () => Uint8Array, number][] = [
    ["bad IPv4 header checksum", () => {
      const b = tcpPacket(mkSeg());
      b[10] = (b[10] as number) ^ 1;
      return b;
    }, GRO_NORMAL_IP_CSUM],
    ["IPv4 options (ihl 6)", () => {
      const b = tcpPacket(mkSeg());
      b[0] = 0x46;
      return b;
    }, GRO_NORMAL_IP_HDR],
    ["IPv6 version nibble", () => {
      const b = tcpPacket(mkSeg());
      b[0] = 0x65;
      return b;
    }, GRO_NORMAL_IP_HDR],
    ["truncated IPv4 header", () => tcpPacket(mkSeg()).subarray(0, 12), GRO_NORMAL_IP_HDR],
    ["a fragment (MF)", () => {
      const b = tcpPacket(mkSeg());
      put16(b, 6, 0x2000);
      put16(b, 10, 0);
      put16(b, 10, ipFastCsum(b, 0, 5));
      return b;
    }, GRO_NORMAL_FRAGMENT],
    ["UDP", udpPacket, GRO_NORMAL_NOT_TCP],
    ["truncated TCP header", () => {
      const b = tcpPacket(mkSeg({ payload: new Uint8Array(0), opts: [] })).slice(0, 30);
      put16(b, 2, 30);
      put16(b, 10, 0);
      put16(b, 10, ipFastCsum(b, 0, 5));
      return b;
    }, GRO_NORMAL_TCP_HDR],
    ["TCP data offset < 5", () => {
      const b = tcpPacket(mkSeg());
      b[32] = 0x40;
      return b;
    }, GRO_NORMAL_TCP_HDR],
    ["tot_len shorter than the frame (padding)", () => {
      const s = mkSeg({ payload: bytes(4) });
      const b = tcpPacket(s);
      const padded = new Uint8Array(b.length + 6);
      padded.set(b);
      return padded;
    }, GRO_NORMAL_IP_FLUSH],
  ];
  for (const [name, mk, reason] of cases) {
    test(`${name}: GRO_NORMAL, counted, bytes untouched`, () => {
      const cpu = setup();
      const gro = new GroList();
      const pkt = mk();
      const skb = rx(cpu, pkt, { mode: "kmalloc" });
      assert.equal(napiGroReceive(cpu, gro, skb, deliver), GRO_NORMAL);
      assert.equal(stat(gro, reason), 1, GRO_STAT_NAMES[reason]);
      assert.deepEqual(take(), [skb]);
      assert.deepEqual(skbToBytes(cpu, skb), pkt);
      kfreeSkb(cpu, skb);
      assertNoLeaks(cpu);
    });
  }

  test("not ETH_P_IP, shared or already-GSO skbs are passed up", () => {
    const cpu = setup();
    const gro = new GroList();
    const a = rx(cpu, tcpPacket(mkSeg()));
    cpu.u16[(a + SKB_PROTOCOL) >>> 1] = 0x86dd;
    assert.equal(napiGroReceive(cpu, gro, a, deliver), GRO_NORMAL);
    assert.equal(stat(gro, GRO_NORMAL_NOT_IP), 1);
    const b = rx(cpu, tcpPacket(mkSeg()));
    cpu.u16[(skbShinfo(cpu, b) + SHINFO_GSO_SIZE) >>> 1] = 1000;
    assert.equal(napiGroReceive(cpu, gro, b, deliver), GRO_NORMAL);
    cpu.u16[(skbShinfo(cpu, b) + SHINFO_GSO_SIZE) >>> 1] = 0;
    const c = rx(cpu, tcpPacket(mkSeg()));
    cpu.i32[(c + SKB_USERS) >>> 2] = 2;
    assert.equal(napiGroReceive(cpu, gro, c, deliver), GRO_NORMAL);
    kfreeSkb(cpu, c);
    assert.equal(stat(gro, GRO_NORMAL_INELIGIBLE), 2);
    freeAll(cpu, take());
    assertNoLeaks(cpu);
  });

  test("fuzz: random bytes behind a valid or invalid IPv4 header never throw or leak", () => {
    const cpu = setup();
    const gro = new GroList();
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 0, maxLength: 200 }),
        fc.boolean(),
        fc.constantFrom<Mode>("frag", "kmalloc", "napi"),
        (raw, fixIp, mode) => {
          const b = new Uint8Array(Math.max(raw.length, 1));
          b.set(raw);
          if (fixIp && b.length >= 20) {
            b[0] = 0x45;
            b[9] = IPPROTO_TCP;
            put16(b, 2, b.length);
            put16(b, 6, 0);
            put16(b, 10, 0);
            put16(b, 10, ipFastCsum(b, 0, 5));
          }
          const v = napiGroReceive(cpu, gro, rx(cpu, b, { mode }), deliver);
          assert.ok(v === GRO_NORMAL || v === GRO_HELD || v === GRO_MERGED || v === GRO_MERGED_FREE);
          groFlush(cpu, gro, true, deliver);
          freeAll(cpu, take());
        },
      ),
      { numRuns: 300 },
    );
    assertNoLeaks(cpu);
  });
});

describe("napiSkbFinish", () => {
  test("GRO_NORMAL delivers; GRO_HELD / GRO_MERGED / GRO_CONSUMED leave the skb alone", () => {
    const cpu = setup();
    const gro = new GroList();
    const s = rx(cpu, tcpPacket(mkSeg()));
    for (const v of [GRO_HELD, GRO_MERGED, GRO_CONSUMED]) {
      assert.equal(napiSkbFinish(cpu, gro, s, v, deliver), v);
      assert.equal(take().length, 0);
    }
    assert.equal(napiSkbFinish(cpu, gro, s, GRO_NORMAL, deliver), GRO_NORMAL);
    assert.deepEqual(take(), [s]);
    kfreeSkb(cpu, s);
    assertNoLeaks(cpu);
  });

  test("devGroReceive alone leaves the merged-free skb to the caller; groStats snapshots counters", () => {
    const cpu = setup();
    const gro = new GroList();
    const segs = flow(2);
    devGroReceive(cpu, gro, rx(cpu, tcpPacket(segs[0] as Seg)), deliver);
    const s = rx(cpu, tcpPacket(segs[1] as Seg));
    assert.equal(devGroReceive(cpu, gro, s, deliver), GRO_MERGED_FREE);
    assert.equal(gro.free, NAPI_GRO_FREE_STOLEN_HEAD);
    const puts = cpu.stats[NAPI_STAT_PUTS]!;
    napiSkbFinish(cpu, gro, s, GRO_MERGED_FREE, deliver);
    assert.equal(cpu.stats[NAPI_STAT_PUTS]! - puts, 1);
    const st = groStats(gro);
    assert.equal(st.received, 2);
    assert.equal(st.merged, 1);
    assert.equal(st.heldNow, 1);
    groFlush(cpu, gro, true, deliver);
    freeAll(cpu, take());
    assertNoLeaks(cpu);
  });

  test("GroList rejects a bad maxHeld", () => {
    assert.throws(() => new GroList({ maxHeld: 0 }), /maxHeld 0/);
    assert.throws(() => new GroList({ maxHeld: 65 }), /maxHeld 65/);
    assert.equal(new GroList({ maxHeld: 2 }).maxHeld, 2);
  });
});
