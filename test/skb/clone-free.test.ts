/**
 * Tests for clones and copies (spec §5.2) and the free paths (spec §4):
 * skbClone with the fast-clone companion, skbCopy, pskbCopy, skbUnclone,
 * kfreeSkb / consumeSkb / kfreeSkbList, napiConsumeSkb and the completion
 * queue, napiSkbFreeStolenHead and destructors. Every test ends with a leak
 * check over every slab and page allocator.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { kmalloc } from "../../src/mm/kmalloc.js";
import { kfree, virtToCache } from "../../src/mm/mm.js";
import { allocPage, pageRefCount } from "../../src/mm/page-alloc.js";
import { kmemCacheInfo } from "../../src/mm/slab.js";
import {
  SkbError,
  skbCloned,
  skbDataLen,
  skbDataPtr,
  skbDataref,
  skbFclone,
  skbFlag,
  skbFragList,
  skbFragPage,
  skbGet,
  skbHeadlen,
  skbHeadPtr,
  skbHeadroom,
  skbLen,
  skbNrFrags,
  skbShared,
  skbShinfo,
  skbTailroom,
  skbUsers,
} from "../../src/skb/access.js";
import { allocSkb, buildSkb, netdevAllocSkb } from "../../src/skb/alloc.js";
import { __pskbCopyFclone, pskbCopy, skbClone, skbCopy, skbUnclone } from "../../src/skb/clone.js";
import {
  createSkbCpu,
  NAPI_STAT_DEFERRED,
  NAPI_STAT_TX_COMPLETED,
  type SkbCpu,
} from "../../src/skb/cpu.js";
import { skbAddRxFrag, skbPut, skbReserve } from "../../src/skb/data.js";
import { DROP_REASON_NAMES, SKB_DROP_REASON } from "../../src/skb/drop-reason.js";
import {
  consumeSkb,
  kfreeSkb,
  kfreeSkbList,
  kfreeSkbListReason,
  kfreeSkbReason,
  napiConsumeSkb,
  napiSkbFreeStolenHead,
  netTxAction,
  skbRegisterDestructor,
  skbSetDeferFree,
} from "../../src/skb/free.js";
import {
  FCLONE_REF,
  FCLONE_SKB2,
  SHINFO_FRAG_LIST,
  SKB_ALLOC_FCLONE,
  SKB_ALLOC_NAPI,
  SKB_CB,
  SKB_DATA_LEN,
  SKB_DESTRUCTOR,
  SKB_DEV,
  SKB_DST,
  SKB_EXTENSIONS,
  SKB_FCLONE_CLONE,
  SKB_FCLONE_ORIG,
  SKB_FLAGS2,
  SKB_HASH,
  SKB_IIF,
  SKB_LEN,
  SKB_MAC_HEADER,
  SKB_MARK,
  SKB_NETWORK_HEADER,
  SKB_NEXT,
  SKB_NFCT,
  SKB_PREV,
  SKB_PRIORITY,
  SKB_PROTOCOL,
  SKB_QUEUE_MAPPING,
  SKB_SK,
  SKB_TRANSPORT_HEADER,
  SKB_TRUESIZE,
  SKBF_CLONED,
  SKBF2_SLOW_GRO,
} from "../../src/skb/layout.js";
import type { SkbMemory, SkbMemoryConfig } from "../../src/skb/memory.js";
import { napiCacheSetEnabled } from "../../src/skb/napi-cache.js";
import {
  active,
  assertNoLeaks,
  byteSource,
  createMemory,
  dataActive,
  gets,
  hold,
  PROFILES,
  type Profile,
  primeCache,
  readPacket,
  refs,
  release,
  set16,
  set32,
  setup as setupCpu,
  u16,
  u32,
} from "../support/skb.js";

napiCacheSetEnabled(true);

/** Deterministic packet bytes for this file. */
const { randomBytes } = byteSource(777);

/** Destructor calls recorded by skb, shared by every test in this file. */
const destructorCalls: number[] = [];
const DTOR = skbRegisterDestructor((_cpu, skb) => {
  destructorCalls.push(skb);
});
function callsFor(skb: number): number {
  return destructorCalls.filter((s) => s === skb).length;
}

/** Fresh memory (it hands out the same addresses again), forgetting earlier destructor calls. */
function mkMem(debug: boolean, cfg: SkbMemoryConfig = {}): SkbMemory {
  destructorCalls.length = 0;
  return createMemory(debug, cfg);
}
/** The shared setup(), forgetting earlier destructor calls like {@link mkMem}. */
function setup(profile: Profile, debug: boolean, cfg: SkbMemoryConfig = {}): SkbCpu {
  destructorCalls.length = 0;
  return setupCpu(profile, debug, cfg);
}

function dropsTotal(cpu: SkbCpu): number {
  return cpu.drops.reduce((a, b) => a + b, 0);
}

interface Pkt {
  skb: number;
  bytes: number[];
  head: number[];
  pages: number[];
}

/** An skb with `headroom` + `linear` bytes, one page per frag, and optional linear frag_list members. */
function build(
  cpu: SkbCpu,
  o: { size?: number; flags?: number; headroom?: number; linear: number; frags?: number[]; fragList?: number[] },
): Pkt {
  const headroom = o.headroom ?? 0;
  const skb = allocSkb(cpu, o.size ?? headroom + o.linear, o.flags ?? 0);
  assert.notEqual(skb, 0);
  const head = randomBytes(headroom);
  cpu.u8.set(head, skbHeadPtr(cpu, skb));
  skbReserve(cpu, skb, headroom);
  const bytes = randomBytes(o.linear);
  cpu.u8.set(bytes, skbPut(cpu, skb, o.linear));
  const pages: number[] = [];
  (o.frags ?? []).forEach((size, i) => {
    const page = allocPage(cpu.mem.pages);
    const b = randomBytes(size);
    cpu.u8.set(b, page + 64);
    skbAddRxFrag(cpu, skb, i, page, 64, size, 4096);
    bytes.push(...b);
    pages.push(page);
  });
  if (o.fragList !== undefined && o.fragList.length > 0) {
    const members = o.fragList.map((n) => build(cpu, { linear: n }));
    const sh = skbShinfo(cpu, skb);
    set32(cpu, sh + SHINFO_FRAG_LIST, (members[0] as Pkt).skb);
    let total = 0;
    members.forEach((m, i) => {
      set32(cpu, m.skb + SKB_NEXT, members[i + 1]?.skb ?? 0);
      total += m.bytes.length;
      bytes.push(...m.bytes);
    });
    set32(cpu, skb + SKB_LEN, skbLen(cpu, skb) + total);
    set32(cpu, skb + SKB_DATA_LEN, skbDataLen(cpu, skb) + total);
  }
  assert.deepEqual(readPacket(cpu, skb), bytes);
  return { skb, bytes, head, pages };
}

for (const p of PROFILES) for (const dbg of [true, false]) {
  describe(`skbClone [${p}${dbg ? " slab-debug" : ""}]`, () => {
    test("plain skb: clone shell from the head slab (never the NAPI cache), data shared, dataref 2", () => {
      const cpu = setup(p, dbg);
      primeCache(cpu);
      const pkt = build(cpu, { headroom: 16, linear: 100, frags: [50] });
      const { skb } = pkt;
      // (6.19 may have taken the original's shell from the cache: consume-only.)
      const n = cpu.skbCount;
      const g = gets(cpu);
      set32(cpu, skb + SKB_MARK, 0xabc);
      set16(cpu, skb + SKB_PROTOCOL, 0x0008);
      set32(cpu, skb + SKB_PRIORITY, 6);
      cpu.u8.fill(0x5c, skb + SKB_CB, skb + SKB_CB + 48);
      set32(cpu, skb + SKB_SK, 77);
      set32(cpu, skb + SKB_DESTRUCTOR, DTOR);
      const before = kmemCacheInfo(cpu.headCache);
      const c = skbClone(cpu, skb);
      assert.notEqual(c, 0);
      assert.notEqual(c, skb);
      const after = kmemCacheInfo(cpu.headCache);
      assert.equal(after.allocs - before.allocs, 1, "one slab shell");
      assert.equal(virtToCache(cpu.mm, c)?.name, "skbuff_head_cache");
      assert.equal(cpu.skbCount, n, "the NAPI cache is not used for clones");
      assert.equal(gets(cpu), g);
      for (const s of [skb, c]) {
        assert.equal(skbFlag(cpu, s, SKBF_CLONED), true);
        assert.equal(skbCloned(cpu, s), true);
        assert.equal(skbDataref(cpu, s), 2);
      }
      assert.equal(skbHeadPtr(cpu, c), skbHeadPtr(cpu, skb));
      assert.equal(skbDataPtr(cpu, c), skbDataPtr(cpu, skb));
      assert.equal(skbLen(cpu, c), skbLen(cpu, skb));
      assert.equal(skbDataLen(cpu, c), 50);
      assert.equal(u32(cpu, c + SKB_TRUESIZE), u32(cpu, skb + SKB_TRUESIZE));
      assert.equal(skbUsers(cpu, c), 1);
      assert.equal(skbFclone(cpu, c), 0);
      assert.equal(u32(cpu, c + SKB_MARK), 0xabc);
      assert.equal(u16(cpu, c + SKB_PROTOCOL), 0x0008);
      assert.equal(u32(cpu, c + SKB_PRIORITY), 6);
      assert.ok(cpu.u8.subarray(c + SKB_CB, c + SKB_CB + 48).every((b) => b === 0x5c));
      assert.equal(u32(cpu, c + SKB_SK), 0, "clone has no socket");
      assert.equal(u32(cpu, c + SKB_DESTRUCTOR), 0, "clone has no destructor");
      assert.equal(u32(cpu, c + SKB_NEXT), 0);
      assert.equal(u32(cpu, c + SKB_PREV), 0);
      assert.deepEqual(readPacket(cpu, c), pkt.bytes);
      // A write through one is seen by the other: the data is shared.
      cpu.u8[skbDataPtr(cpu, c)] = (pkt.bytes[0] as number) ^ 0xff;
      assert.equal(cpu.u8[skbDataPtr(cpu, skb)], (pkt.bytes[0] as number) ^ 0xff);
      kfreeSkb(cpu, c);
      assert.equal(callsFor(c), 0);
      set32(cpu, skb + SKB_SK, 0);
      kfreeSkb(cpu, skb);
      assert.equal(callsFor(skb), 1);
      assertNoLeaks(cpu);
    });

    test("fclone fast path: the companion is used (fclone_ref 2); a second clone comes from the head slab", () => {
      const cpu = setup(p, dbg);
      const pkt = build(cpu, { flags: SKB_ALLOC_FCLONE, linear: 64 });
      const { skb } = pkt;
      const heads = kmemCacheInfo(cpu.headCache);
      const fcl = kmemCacheInfo(cpu.fcloneCache);
      const c1 = skbClone(cpu, skb);
      assert.equal(c1, skb + FCLONE_SKB2);
      assert.equal(Atomics.load(cpu.i32, (skb + FCLONE_REF) >>> 2), 2);
      assert.equal(skbFclone(cpu, c1), SKB_FCLONE_CLONE);
      assert.equal(skbFclone(cpu, skb), SKB_FCLONE_ORIG);
      assert.equal(kmemCacheInfo(cpu.headCache).allocs, heads.allocs, "no slab shell for the companion");
      assert.equal(kmemCacheInfo(cpu.fcloneCache).allocs, fcl.allocs);
      assert.equal(skbDataref(cpu, skb), 2);
      assert.deepEqual(readPacket(cpu, c1), pkt.bytes);
      const c2 = skbClone(cpu, skb);
      assert.equal(virtToCache(cpu.mm, c2)?.name, "skbuff_head_cache");
      assert.equal(kmemCacheInfo(cpu.headCache).allocs, heads.allocs + 1);
      assert.equal(skbFclone(cpu, c2), 0);
      assert.equal(Atomics.load(cpu.i32, (skb + FCLONE_REF) >>> 2), 2);
      // Cloning the companion also goes to the head slab.
      const c3 = skbClone(cpu, c1);
      assert.equal(virtToCache(cpu.mm, c3)?.name, "skbuff_head_cache");
      assert.equal(skbDataref(cpu, skb), 4);
      for (const s of [c3, c2, c1, skb]) kfreeSkb(cpu, s);
      assertNoLeaks(cpu);
    });

    test("a freed companion is reused by the next clone of the original", () => {
      const cpu = setup(p, dbg);
      const { skb } = build(cpu, { flags: SKB_ALLOC_FCLONE, linear: 64 });
      const c1 = skbClone(cpu, skb);
      kfreeSkb(cpu, c1);
      assert.equal(Atomics.load(cpu.i32, (skb + FCLONE_REF) >>> 2), 1);
      assert.equal(active(cpu.fcloneCache), 1, "the pair lives while the original does");
      assert.equal(skbDataref(cpu, skb), 1);
      const again = skbClone(cpu, skb);
      assert.equal(again, skb + FCLONE_SKB2);
      assert.equal(Atomics.load(cpu.i32, (skb + FCLONE_REF) >>> 2), 2);
      kfreeSkb(cpu, skb);
      assert.equal(active(cpu.fcloneCache), 1, "the companion still lives");
      kfreeSkb(cpu, again);
      assertNoLeaks(cpu);
    });
  });

  describe(`skbCopy / pskbCopy / skbUnclone [${p}${dbg ? " slab-debug" : ""}]`, () => {
    function decorate(cpu: SkbCpu, skb: number): void {
      set32(cpu, skb + SKB_MARK, 0x1234);
      set32(cpu, skb + SKB_HASH, 0xcafe);
      set16(cpu, skb + SKB_PROTOCOL, 0xdd86);
      set32(cpu, skb + SKB_PRIORITY, 3);
      set32(cpu, skb + SKB_DEV, 4);
      set32(cpu, skb + SKB_IIF, 9);
      cpu.u8.fill(0x42, skb + SKB_CB, skb + SKB_CB + 48);
      const hr = skbHeadroom(cpu, skb);
      set16(cpu, skb + SKB_MAC_HEADER, hr);
      set16(cpu, skb + SKB_NETWORK_HEADER, hr + 14);
      set16(cpu, skb + SKB_TRANSPORT_HEADER, hr + 34);
    }

    test("skbCopy: private linear copy with identical bytes and headroom, header copied", () => {
      const cpu = setup(p, dbg);
      const pkt = build(cpu, { size: 1000, headroom: 32, linear: 50, frags: [100, 20], fragList: [30, 10] });
      const { skb } = pkt;
      decorate(cpu, skb);
      hold(cpu, pkt.pages);
      const n = skbCopy(cpu, skb);
      assert.notEqual(n, 0);
      assert.notEqual(skbHeadPtr(cpu, n), skbHeadPtr(cpu, skb));
      assert.equal(skbLen(cpu, n), 210);
      assert.equal(skbDataLen(cpu, n), 0, "the copy is linear");
      assert.equal(skbNrFrags(cpu, n), 0);
      assert.equal(skbFragList(cpu, n), 0);
      assert.deepEqual(readPacket(cpu, n), pkt.bytes);
      assert.equal(skbHeadroom(cpu, n), 32);
      assert.deepEqual(Array.from(cpu.u8.subarray(skbHeadPtr(cpu, n), skbHeadPtr(cpu, n) + 32)), pkt.head);
      for (const s of [skb, n]) {
        assert.equal(skbDataref(cpu, s), 1);
        assert.equal(skbCloned(cpu, s), false);
        assert.equal(skbFlag(cpu, s, SKBF_CLONED), false);
        assert.equal(skbUsers(cpu, s), 1);
      }
      assert.equal(skbFclone(cpu, n), 0);
      assert.deepEqual(refs(cpu, pkt.pages), [2, 2], "no frag references taken");
      // Same headroom: header offsets (relative to head) are the same.
      assert.equal(u16(cpu, n + SKB_MAC_HEADER), 32);
      assert.equal(u16(cpu, n + SKB_NETWORK_HEADER), 46);
      assert.equal(u16(cpu, n + SKB_TRANSPORT_HEADER), 66);
      assert.equal(u32(cpu, n + SKB_MARK), 0x1234);
      assert.equal(u32(cpu, n + SKB_HASH), 0xcafe);
      assert.equal(u16(cpu, n + SKB_PROTOCOL), 0xdd86);
      assert.equal(u32(cpu, n + SKB_PRIORITY), 3);
      assert.equal(u32(cpu, n + SKB_DEV), 4);
      assert.equal(u32(cpu, n + SKB_IIF), 9);
      assert.ok(cpu.u8.subarray(n + SKB_CB, n + SKB_CB + 48).every((b) => b === 0x42));
      // Private: writing the copy leaves the original alone.
      cpu.u8.fill(0, skbDataPtr(cpu, n), skbDataPtr(cpu, n) + 210);
      assert.deepEqual(readPacket(cpu, skb), pkt.bytes);
      kfreeSkb(cpu, n);
      kfreeSkb(cpu, skb);
      release(cpu, pkt.pages);
      assertNoLeaks(cpu);
    });

    test("skbCopy copies queue_mapping (part of __copy_skb_header)", () => {
      const cpu = setup(p, dbg);
      const { skb } = build(cpu, { headroom: 16, linear: 40 });
      set16(cpu, skb + SKB_QUEUE_MAPPING, 5);
      const n = skbCopy(cpu, skb);
      assert.equal(u16(cpu, n + SKB_QUEUE_MAPPING), 5);
      kfreeSkb(cpu, n);
      kfreeSkb(cpu, skb);
      assertNoLeaks(cpu);
    });

    test("skbCopy keeps the tailroom (the kernel allocates skb_end_offset + data_len)", () => {
      const cpu = setup(p, dbg);
      const { skb } = build(cpu, { size: 1000, headroom: 64, linear: 100 });
      const tail = skbTailroom(cpu, skb);
      assert.equal(tail, 1728 - 164);
      const n = skbCopy(cpu, skb);
      assert.ok(skbTailroom(cpu, n) >= tail, `copy tailroom ${skbTailroom(cpu, n)} < original ${tail}`);
      kfreeSkb(cpu, n);
      kfreeSkb(cpu, skb);
      assertNoLeaks(cpu);
    });

    test("pskbCopy: private linear part, frags and frag_list shared by reference", () => {
      const cpu = setup(p, dbg);
      const pkt = build(cpu, { size: 500, headroom: 16, linear: 40, frags: [100, 50], fragList: [30] });
      const { skb } = pkt;
      decorate(cpu, skb);
      hold(cpu, pkt.pages);
      const l1 = skbFragList(cpu, skb);
      const n = pskbCopy(cpu, skb);
      assert.notEqual(n, 0);
      assert.notEqual(skbHeadPtr(cpu, n), skbHeadPtr(cpu, skb));
      assert.equal(skbHeadroom(cpu, n), 16);
      assert.equal(skbHeadlen(cpu, n), 40);
      assert.equal(skbLen(cpu, n), 220);
      assert.equal(skbDataLen(cpu, n), 180);
      assert.equal(skbNrFrags(cpu, n), 2);
      assert.equal(skbFragPage(cpu, n, 0), pkt.pages[0]);
      assert.equal(skbFragPage(cpu, n, 1), pkt.pages[1]);
      assert.equal(skbFragList(cpu, n), l1);
      assert.deepEqual(refs(cpu, pkt.pages), [3, 3], "one more page reference per frag");
      assert.equal(skbUsers(cpu, l1), 2, "the frag_list member gained a user");
      assert.deepEqual(readPacket(cpu, n), pkt.bytes);
      assert.equal(skbDataref(cpu, n), 1);
      assert.equal(skbDataref(cpu, skb), 1);
      assert.equal(skbCloned(cpu, skb), false);
      // truesize = the new head's + the shared data_len.
      const fresh = allocSkb(cpu, 56);
      assert.equal(u32(cpu, n + SKB_TRUESIZE), u32(cpu, fresh + SKB_TRUESIZE) + 180);
      kfreeSkb(cpu, fresh);
      assert.equal(u16(cpu, n + SKB_MAC_HEADER), 16);
      assert.equal(u32(cpu, n + SKB_MARK), 0x1234);
      kfreeSkb(cpu, n);
      assert.deepEqual(refs(cpu, pkt.pages), [2, 2]);
      assert.equal(skbUsers(cpu, l1), 1);
      assert.deepEqual(readPacket(cpu, skb), pkt.bytes);
      kfreeSkb(cpu, skb);
      assert.deepEqual(refs(cpu, pkt.pages), [1, 1]);
      release(cpu, pkt.pages);
      assertNoLeaks(cpu);
    });

    test("__pskbCopyFclone with more headroom: fclone original, header offsets shifted", () => {
      const cpu = setup(p, dbg);
      const pkt = build(cpu, { headroom: 16, linear: 40, frags: [60] });
      const { skb } = pkt;
      decorate(cpu, skb);
      const n = __pskbCopyFclone(cpu, skb, 48, true);
      assert.equal(virtToCache(cpu.mm, n)?.name, "skbuff_fclone_cache");
      assert.equal(skbFclone(cpu, n), SKB_FCLONE_ORIG);
      assert.equal(skbHeadroom(cpu, n), 48);
      assert.equal(u16(cpu, n + SKB_MAC_HEADER), 48);
      assert.equal(u16(cpu, n + SKB_NETWORK_HEADER), 62);
      assert.equal(u16(cpu, n + SKB_TRANSPORT_HEADER), 82);
      assert.deepEqual(readPacket(cpu, n), pkt.bytes);
      kfreeSkb(cpu, skb);
      assert.deepEqual(readPacket(cpu, n), pkt.bytes, "the frag survives the original");
      kfreeSkb(cpu, n);
      assertNoLeaks(cpu);
    });

    test("skbUnclone: a cloned skb gets a private head; an uncloned one is left alone", () => {
      const cpu = setup(p, dbg);
      const pkt = build(cpu, { size: 300, headroom: 8, linear: 60, frags: [40] });
      const { skb } = pkt;
      hold(cpu, pkt.pages);
      const head = skbHeadPtr(cpu, skb);
      assert.equal(skbUnclone(cpu, skb), 0);
      assert.equal(skbHeadPtr(cpu, skb), head, "not cloned: nothing to do");
      const c = skbClone(cpu, skb);
      assert.equal(skbUnclone(cpu, c), 0);
      assert.notEqual(skbHeadPtr(cpu, c), head);
      assert.equal(skbHeadroom(cpu, c), 8);
      assert.equal(skbDataref(cpu, c), 1);
      assert.equal(skbDataref(cpu, skb), 1);
      assert.equal(skbCloned(cpu, c), false);
      assert.equal(skbCloned(cpu, skb), false);
      assert.deepEqual(refs(cpu, pkt.pages), [3]);
      assert.deepEqual(readPacket(cpu, c), pkt.bytes);
      // The original's cloned flag is still set but its data is no longer shared: no reallocation.
      assert.equal(skbUnclone(cpu, skb), 0);
      assert.equal(skbHeadPtr(cpu, skb), head);
      kfreeSkb(cpu, c);
      kfreeSkb(cpu, skb);
      assert.deepEqual(refs(cpu, pkt.pages), [1]);
      release(cpu, pkt.pages);
      assertNoLeaks(cpu);
    });
  });

  describe(`kfreeSkb / consumeSkb [${p}${dbg ? " slab-debug" : ""}]`, () => {
    test("drop counters: kfreeSkb -> NOT_SPECIFIED, consumeSkb -> CONSUMED, kfreeSkbReason -> its reason", () => {
      const cpu = setup(p, dbg);
      assert.equal(cpu.drops.length, DROP_REASON_NAMES.length);
      const a = allocSkb(cpu, 100);
      const b = allocSkb(cpu, 100);
      const c = allocSkb(cpu, 100);
      const frees = kmemCacheInfo(cpu.headCache).frees;
      kfreeSkb(cpu, a);
      consumeSkb(cpu, b);
      kfreeSkbReason(cpu, c, SKB_DROP_REASON.NO_SOCKET);
      kfreeSkb(cpu, 0);
      consumeSkb(cpu, 0);
      kfreeSkbReason(cpu, 0, SKB_DROP_REASON.NOMEM);
      assert.equal(cpu.drops[SKB_DROP_REASON.NOT_SPECIFIED], 1);
      assert.equal(cpu.drops[SKB_DROP_REASON.CONSUMED], 1);
      assert.equal(cpu.drops[SKB_DROP_REASON.NO_SOCKET], 1);
      assert.equal(cpu.drops[SKB_DROP_REASON.NOMEM], 0);
      assert.equal(dropsTotal(cpu), 3);
      assert.equal(kmemCacheInfo(cpu.headCache).frees - frees, 3, "shells back to the slab");
      assertNoLeaks(cpu);
    });

    test("a shared skb only loses a reference", () => {
      const cpu = setup(p, dbg);
      const { skb } = build(cpu, { linear: 100 });
      assert.equal(skbGet(cpu, skb), skb);
      assert.equal(skbUsers(cpu, skb), 2);
      assert.equal(skbShared(cpu, skb), true);
      const data = dataActive(cpu);
      kfreeSkb(cpu, skb);
      assert.equal(skbUsers(cpu, skb), 1);
      assert.equal(skbShared(cpu, skb), false);
      assert.equal(dropsTotal(cpu), 0, "not freed, not counted");
      assert.equal(active(cpu.headCache), 1);
      assert.equal(dataActive(cpu), data);
      consumeSkb(cpu, skb);
      assert.equal(cpu.drops[SKB_DROP_REASON.CONSUMED], 1);
      assertNoLeaks(cpu);
    });

    test("clones: freeing one keeps the data, freeing both frees the head", () => {
      const cpu = setup(p, dbg);
      const pkt = build(cpu, { size: 500, linear: 100, frags: [80] });
      const { skb } = pkt;
      hold(cpu, pkt.pages);
      const c = skbClone(cpu, skb);
      assert.equal(dataActive(cpu), 1);
      kfreeSkb(cpu, skb);
      assert.equal(dataActive(cpu), 1, "head still used by the clone");
      assert.deepEqual(refs(cpu, pkt.pages), [2], "frags still used by the clone");
      assert.equal(skbDataref(cpu, c), 1);
      assert.deepEqual(readPacket(cpu, c), pkt.bytes);
      kfreeSkb(cpu, c);
      assert.equal(dataActive(cpu), 0);
      assert.deepEqual(refs(cpu, pkt.pages), [1]);
      release(cpu, pkt.pages);
      assertNoLeaks(cpu);
    });

    test("clones of a page-fragment head: the fragment is released once, by the last user", () => {
      const cpu = setup(p, dbg);
      const skb = netdevAllocSkb(cpu, 1, 1500);
      skbPut(cpu, skb, 1000);
      const c = skbClone(cpu, skb);
      const page = cpu.napiFrag.va;
      const before = pageRefCount(cpu.mem.fragPages, page);
      kfreeSkb(cpu, c);
      assert.equal(pageRefCount(cpu.mem.fragPages, page), before);
      kfreeSkb(cpu, skb);
      assert.equal(pageRefCount(cpu.mem.fragPages, page), before - 1);
      assertNoLeaks(cpu);
    });

    test("fclone pair: freed only when both halves are freed, in either order", () => {
      const cpu = setup(p, dbg);
      for (const origFirst of [true, false]) {
        const { skb } = build(cpu, { flags: SKB_ALLOC_FCLONE, linear: 64 });
        const c = skbClone(cpu, skb);
        assert.equal(active(cpu.fcloneCache), 1);
        kfreeSkb(cpu, origFirst ? skb : c);
        assert.equal(active(cpu.fcloneCache), 1);
        assert.equal(Atomics.load(cpu.i32, (skb + FCLONE_REF) >>> 2), 1);
        assert.equal(dataActive(cpu), 1);
        kfreeSkb(cpu, origFirst ? c : skb);
        assert.equal(active(cpu.fcloneCache), 0);
        assert.equal(dataActive(cpu), 0);
      }
      assert.equal(active(cpu.headCache), 0, "no head-slab shell involved");
      assertNoLeaks(cpu);
    });

    test("frag page references are released", () => {
      const cpu = setup(p, dbg);
      const pkt = build(cpu, { linear: 10, frags: [100, 200, 300] });
      hold(cpu, pkt.pages);
      assert.deepEqual(refs(cpu, pkt.pages), [2, 2, 2]);
      kfreeSkb(cpu, pkt.skb);
      assert.deepEqual(refs(cpu, pkt.pages), [1, 1, 1]);
      release(cpu, pkt.pages);
      assertNoLeaks(cpu);
    });

    test("the frag_list is freed with its owner", () => {
      const cpu = setup(p, dbg);
      const pkt = build(cpu, { linear: 10, fragList: [20, 30, 40] });
      assert.equal(active(cpu.headCache), 4);
      kfreeSkb(cpu, pkt.skb);
      assert.equal(active(cpu.headCache), 0);
      assertNoLeaks(cpu);
    });
  });

  describe(`kfreeSkbList [${p}${dbg ? " slab-debug" : ""}]`, () => {
    function chain(cpu: SkbCpu, skbs: number[]): number {
      skbs.forEach((s, i) => {
        set32(cpu, s + SKB_NEXT, skbs[i + 1] ?? 0);
      });
      return skbs[0] as number;
    }

    test(`frees every skb ${p === "6.19" ? "with bulk slab frees, 16 at a time" : "one by one"}`, () => {
      const cpu = setup(p, dbg);
      const skbs: number[] = [];
      for (let i = 0; i < 20; i++) skbs.push(allocSkb(cpu, 100));
      const before = kmemCacheInfo(cpu.headCache);
      kfreeSkbList(cpu, chain(cpu, skbs));
      const after = kmemCacheInfo(cpu.headCache);
      assert.equal(after.activeObjs, 0);
      assert.equal(cpu.drops[SKB_DROP_REASON.NOT_SPECIFIED], 20);
      if (p === "6.19") {
        assert.equal(after.freeBulkCalls - before.freeBulkCalls, 2);
        assert.equal(after.freeBulkObjs - before.freeBulkObjs, 20);
        assert.equal(after.frees - before.frees, 0);
      } else {
        assert.equal(after.freeBulkCalls - before.freeBulkCalls, 0);
        assert.equal(after.frees - before.frees, 20);
      }
      assert.equal(dataActive(cpu), 0);
      assertNoLeaks(cpu);
    });

    test("fclones are freed to their slab, shared members only lose a reference; reason counted", () => {
      const cpu = setup(p, dbg);
      const a = allocSkb(cpu, 100);
      const fc = allocSkb(cpu, 100, SKB_ALLOC_FCLONE);
      const shared = allocSkb(cpu, 100);
      skbGet(cpu, shared);
      const d = allocSkb(cpu, 100);
      const before = kmemCacheInfo(cpu.headCache);
      kfreeSkbListReason(cpu, chain(cpu, [a, fc, shared, d]), SKB_DROP_REASON.QDISC_DROP);
      const after = kmemCacheInfo(cpu.headCache);
      assert.equal(active(cpu.fcloneCache), 0);
      assert.equal(after.activeObjs, 1, "the shared skb lives");
      assert.equal(skbUsers(cpu, shared), 1);
      assert.equal(cpu.drops[SKB_DROP_REASON.QDISC_DROP], 3);
      if (p === "6.19") {
        assert.equal(after.freeBulkCalls - before.freeBulkCalls, 1);
        assert.equal(after.freeBulkObjs - before.freeBulkObjs, 2);
      } else {
        assert.equal(after.frees - before.frees, 2);
      }
      kfreeSkb(cpu, shared);
      assertNoLeaks(cpu);
    });
  });

  describe(`napiConsumeSkb and the completion queue [${p}${dbg ? " slab-debug" : ""}]`, () => {
    test("budget 0 with IRQs enabled: straight to the slab, the cache is not touched", () => {
      const cpu = setup(p, dbg);
      const n = primeCache(cpu);
      const skb = allocSkb(cpu, 100, SKB_ALLOC_NAPI);
      const frees = kmemCacheInfo(cpu.headCache).frees;
      napiConsumeSkb(cpu, skb, 0);
      assert.equal(cpu.skbCount, n - 1);
      assert.equal(kmemCacheInfo(cpu.headCache).frees - frees, 1);
      assert.equal(cpu.completionQueue, 0);
      assert.equal(cpu.drops[SKB_DROP_REASON.CONSUMED], 2, "the priming consume and this one");
      assert.equal(dataActive(cpu), 0);
      assertNoLeaks(cpu);
    });

    test("budget 0 with IRQs disabled: queued for netTxAction, which caches the shell (fclones to their slab)", () => {
      const cpu = setup(p, dbg);
      const a = build(cpu, { linear: 100 }).skb;
      const b = build(cpu, { linear: 100 }).skb;
      const fc = build(cpu, { flags: SKB_ALLOC_FCLONE, linear: 100 }).skb;
      const shared = build(cpu, { linear: 10 }).skb;
      skbGet(cpu, shared);
      set32(cpu, a + SKB_DESTRUCTOR, DTOR);
      const heads = active(cpu.headCache);
      const data = dataActive(cpu);
      cpu.irqsDisabled = true;
      for (const s of [a, b, fc, shared]) napiConsumeSkb(cpu, s, 0);
      cpu.irqsDisabled = false;
      assert.equal(skbUsers(cpu, shared), 1, "a shared skb only loses a reference");
      assert.equal(cpu.completionQueue, fc, "LIFO queue: the last one queued is first");
      assert.equal(u32(cpu, fc + SKB_NEXT), b);
      assert.equal(u32(cpu, b + SKB_NEXT), a);
      assert.equal(u32(cpu, a + SKB_NEXT), 0);
      assert.equal(active(cpu.headCache), heads, "nothing freed yet");
      assert.equal(dataActive(cpu), data);
      assert.equal(active(cpu.fcloneCache), 1);
      assert.equal(callsFor(a), 0, "head state not released yet");
      assert.equal(dropsTotal(cpu), 0);
      assert.equal(netTxAction(cpu), 3);
      assert.equal(cpu.completionQueue, 0);
      assert.equal(cpu.stats[NAPI_STAT_TX_COMPLETED], 3);
      assert.equal(cpu.drops[SKB_DROP_REASON.CONSUMED], 3);
      assert.equal(callsFor(a), 1);
      assert.equal(cpu.skbCount, 2, "both plain shells cached");
      assert.deepEqual(new Set(cpu.skbCache.subarray(0, 2)), new Set([a, b]));
      assert.equal(active(cpu.fcloneCache), 0, "the fclone went to its slab");
      assert.equal(dataActive(cpu), 1, "only the shared skb's data remains");
      assert.equal(netTxAction(cpu), 0);
      kfreeSkb(cpu, shared);
      assertNoLeaks(cpu);
    });

    test("budget > 0: plain shells are released and cached; fclones never enter the cache", () => {
      const cpu = setup(p, dbg);
      const pkt = build(cpu, { size: 500, linear: 100, frags: [50] });
      hold(cpu, pkt.pages);
      const heads = active(cpu.headCache);
      napiConsumeSkb(cpu, pkt.skb, 64);
      assert.equal(cpu.skbCount, 1);
      assert.equal(cpu.skbCache[0], pkt.skb);
      assert.equal(active(cpu.headCache), heads, "the shell stays allocated, parked in the cache");
      assert.equal(dataActive(cpu), 0, "its data was released");
      assert.deepEqual(refs(cpu, pkt.pages), [1]);
      assert.equal(cpu.drops[SKB_DROP_REASON.CONSUMED], 1);
      // fclone original, then a companion.
      const fc = build(cpu, { flags: SKB_ALLOC_FCLONE, linear: 10 }).skb;
      const comp = skbClone(cpu, fc);
      assert.equal(skbFclone(cpu, comp), SKB_FCLONE_CLONE);
      napiConsumeSkb(cpu, comp, 64);
      napiConsumeSkb(cpu, fc, 64);
      assert.equal(cpu.skbCount, 1, "no fclone half was cached");
      assert.ok(!cpu.skbCache.subarray(0, cpu.skbCount).includes(fc));
      assert.equal(active(cpu.fcloneCache), 0);
      assert.equal(cpu.drops[SKB_DROP_REASON.CONSUMED], 3);
      release(cpu, pkt.pages);
      assertNoLeaks(cpu);
    });

    test("budget > 0 on a shared skb only drops a reference", () => {
      const cpu = setup(p, dbg);
      const skb = allocSkb(cpu, 100);
      skbGet(cpu, skb);
      napiConsumeSkb(cpu, skb, 64);
      assert.equal(skbUsers(cpu, skb), 1);
      assert.equal(cpu.skbCount, 0);
      assert.equal(dropsTotal(cpu), 0);
      napiConsumeSkb(cpu, skb, 64);
      assert.equal(cpu.skbCount, 1);
      assertNoLeaks(cpu);
    });
  });

  describe(`napiSkbFreeStolenHead [${p}${dbg ? " slab-debug" : ""}]`, () => {
    test("caches the shell and leaves the data to its new owner", () => {
      const cpu = setup(p, dbg);
      const data = kmalloc(cpu.kmalloc, 1000);
      const skb = buildSkb(cpu, data, 0);
      skbPut(cpu, skb, 100);
      set32(cpu, skb + SKB_DST, 5);
      set32(cpu, skb + SKB_EXTENSIONS, 6);
      set32(cpu, skb + SKB_DESTRUCTOR, DTOR);
      const sh = skbShinfo(cpu, skb);
      const heads = active(cpu.headCache);
      const dataBefore = dataActive(cpu);
      napiSkbFreeStolenHead(cpu, skb);
      assert.equal(cpu.skbCount, 1);
      assert.equal(cpu.skbCache[0], skb);
      assert.equal(active(cpu.headCache), heads);
      assert.equal(dataActive(cpu), dataBefore, "data not freed");
      assert.equal(Atomics.load(cpu.i32, (sh + 32) >>> 2), 1, "dataref untouched");
      assert.equal(callsFor(skb), 0, "no slow_gro: the destructor is not run");
      if (p === "5.12") {
        assert.equal(u32(cpu, skb + SKB_DST), 0, "5.12 drops dst");
        assert.equal(u32(cpu, skb + SKB_EXTENSIONS), 0, "5.12 drops extensions");
      } else {
        assert.equal(u32(cpu, skb + SKB_DST), 5, "6.19 only cleans up when slow_gro is set");
      }
      assert.equal(dropsTotal(cpu), 0);
      kfree(cpu.mm, data);
      assertNoLeaks(cpu);
    });

    test(`slow_gro set: ${p === "5.12" ? "5.12 ignores it" : "6.19 resets ct, dst, ext and runs the destructor once"}`, () => {
      const cpu = setup(p, dbg);
      const data = kmalloc(cpu.kmalloc, 1000);
      const skb = buildSkb(cpu, data, 0);
      set32(cpu, skb + SKB_DST, 5);
      set32(cpu, skb + SKB_NFCT, 0); // no conntrack hook installed in this file
      set32(cpu, skb + SKB_EXTENSIONS, 6);
      set32(cpu, skb + SKB_DESTRUCTOR, DTOR);
      set32(cpu, skb + SKB_SK, 3);
      cpu.u8[skb + SKB_FLAGS2] = SKBF2_SLOW_GRO;
      napiSkbFreeStolenHead(cpu, skb);
      assert.equal(u32(cpu, skb + SKB_DST), 0);
      assert.equal(u32(cpu, skb + SKB_EXTENSIONS), 0);
      if (p === "6.19") {
        assert.equal(callsFor(skb), 1);
        assert.equal(u32(cpu, skb + SKB_DESTRUCTOR), 0);
        assert.equal(u32(cpu, skb + SKB_SK), 0);
        assert.equal((cpu.u8[skb + SKB_FLAGS2] as number) & SKBF2_SLOW_GRO, 0);
      } else {
        assert.equal(callsFor(skb), 0);
      }
      assert.equal(cpu.skbCount, 1);
      kfree(cpu.mm, data);
      assertNoLeaks(cpu);
    });

    test("an fclone throws SkbError and nothing is cached", () => {
      const cpu = setup(p, dbg);
      const skb = allocSkb(cpu, 100, SKB_ALLOC_FCLONE);
      assert.throws(
        () => napiSkbFreeStolenHead(cpu, skb),
        (e: unknown) => e instanceof SkbError && e.op === "napiSkbFreeStolenHead" && /fast-clone skbs never own a stealable head/.test(e.message),
      );
      assert.equal(cpu.skbCount, 0);
      const c = skbClone(cpu, skb);
      assert.throws(() => napiSkbFreeStolenHead(cpu, c), SkbError);
      assert.equal(cpu.skbCount, 0);
      kfreeSkb(cpu, c);
      kfreeSkb(cpu, skb);
      assertNoLeaks(cpu);
    });
  });

  describe(`destructors [${p}${dbg ? " slab-debug" : ""}]`, () => {
    test("run exactly once, on the last reference, not for clones", () => {
      const cpu = setup(p, dbg);
      const skb = allocSkb(cpu, 100);
      set32(cpu, skb + SKB_DESTRUCTOR, DTOR);
      skbGet(cpu, skb);
      const c = skbClone(cpu, skb);
      kfreeSkb(cpu, skb);
      assert.equal(callsFor(skb), 0, "still referenced");
      kfreeSkb(cpu, c);
      assert.equal(callsFor(skb), 0);
      assert.equal(callsFor(c), 0);
      kfreeSkb(cpu, skb);
      assert.equal(callsFor(skb), 1);
      assertNoLeaks(cpu);
    });

    test(`napiConsumeSkb runs it once; the cached shell ${p === "6.19" ? "has destructor and sk cleared" : "keeps destructor and sk (5.12)"}`, () => {
      const cpu = setup(p, dbg);
      const skb = allocSkb(cpu, 100);
      set32(cpu, skb + SKB_DESTRUCTOR, DTOR);
      set32(cpu, skb + SKB_SK, 11);
      napiConsumeSkb(cpu, skb, 64);
      assert.equal(callsFor(skb), 1);
      assert.equal(cpu.skbCache[cpu.skbCount - 1], skb);
      if (p === "6.19") {
        assert.equal(u32(cpu, skb + SKB_DESTRUCTOR), 0);
        assert.equal(u32(cpu, skb + SKB_SK), 0);
      } else {
        assert.equal(u32(cpu, skb + SKB_DESTRUCTOR), DTOR);
        assert.equal(u32(cpu, skb + SKB_SK), 11);
      }
      // Reusing the shell must not run the destructor again.
      const again = allocSkb(cpu, 100, SKB_ALLOC_NAPI);
      assert.equal(again, skb);
      kfreeSkb(cpu, again);
      assert.equal(callsFor(skb), 1);
      assertNoLeaks(cpu);
    });

    test(`an skb from another CPU ${p === "6.19" ? "is deferred after its head state is released; the owner does not run the destructor again" : "is cached locally (no alien deferral in 5.12)"}`, () => {
      const mem = mkMem(dbg);
      const cpu0 = createSkbCpu(mem, 0, { profile: p });
      const cpu1 = createSkbCpu(mem, 1, { profile: p });
      const deferred: number[] = [];
      skbSetDeferFree((_c, s) => {
        deferred.push(s);
      });
      try {
        const skb = allocSkb(cpu1, 100);
        set32(cpu1, skb + SKB_DESTRUCTOR, DTOR);
        napiConsumeSkb(cpu0, skb, 64);
        assert.equal(callsFor(skb), 1);
        if (p === "6.19") {
          assert.deepEqual(deferred, [skb]);
          assert.equal(cpu0.stats[NAPI_STAT_DEFERRED], 1);
          assert.equal(cpu0.skbCount, 0);
          // The allocating CPU drains its defer list with napiConsumeSkb(skb, 1).
          napiConsumeSkb(cpu1, skb, 1);
          assert.equal(callsFor(skb), 1, "the destructor ran exactly once");
          assert.equal(cpu1.skbCount, 1);
        } else {
          assert.deepEqual(deferred, []);
          assert.equal(cpu0.skbCount, 1);
        }
      } finally {
        skbSetDeferFree(null);
      }
      assertNoLeaks(cpu0, cpu1);
    });
  });
}
