/**
 * Tests for the skb allocation API (spec §2, §3): allocSkb and its flags,
 * the buildSkb family, netdevAllocSkb, napiAllocSkb and napiGetFrags.
 *
 * Every test ends with a leak check: once everything is freed and the NAPI
 * and page-frag caches are drained, every slab and page allocator is empty.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { kmalloc } from "../../src/mm/kmalloc.js";
import { kfree, virtToCache } from "../../src/mm/mm.js";
import { allocPage, pageRefCount, putPage } from "../../src/mm/page-alloc.js";
import { kmemCacheAlloc, kmemCacheFree, kmemCacheInfo, kmemCacheObjIndex } from "../../src/mm/slab.js";
import {
  hex,
  skbDataref,
  skbDataPtr,
  skbEndOffset,
  skbFclone,
  skbFlag,
  skbHeadPtr,
  skbHeadroom,
  skbLen,
  skbShinfo,
  skbTailroom,
  skbUsers,
  skbZeroHead,
  skbZeroHeadForBuild,
} from "../../src/skb/access.js";
import {
  __buildSkb,
  allocSkb,
  buildSkb,
  buildSkbAround,
  type NapiSkbOwner,
  napiAllocSkb,
  napiBuildSkb,
  napiGetFrags,
  netdevAllocSkb,
} from "../../src/skb/alloc.js";
import {
  NAPI_STAT_GET_FAIL,
  napiCacheHits,
  NAPI_STAT_REFILLS,
  type SkbCpu,
} from "../../src/skb/cpu.js";
import { consumeSkb, kfreeSkb, napiConsumeSkb, napiSkbFreeStolenHead } from "../../src/skb/free.js";
import {
  FCLONE_REF,
  FCLONE_SKB2,
  GRO_MAX_HEAD,
  NUMA_NO_NODE,
  SHINFO_DATAREF,
  SKB_ALLOC_CPU,
  SKB_ALLOC_FCLONE,
  SKB_ALLOC_NAPI,
  SKB_ALLOC_RX,
  SKB_CB,
  SKB_DEV,
  SKB_FCLONE_CLONE,
  SKB_FCLONE_ORIG,
  SKB_FLAGS,
  SKB_MAC_HEADER,
  SKB_MARK,
  SKB_NAPI_ID,
  SKB_NETWORK_HEADER,
  SKB_TAIL,
  SKB_TRANSPORT_HEADER,
  SKB_TRUESIZE,
  SKBF_HEAD_FRAG,
} from "../../src/skb/layout.js";
import { napiCacheSetEnabled, napiSkbCacheDrain } from "../../src/skb/napi-cache.js";
import {
  active,
  assertNoLeaks,
  dataActive,
  gets,
  PROFILES,
  type Profile,
  primeCache,
  setup,
  u16,
  u32,
} from "../support/skb.js";

/** NAPI_SKB_CACHE_BULK per profile (spec §1.2). */
const BULK: Record<Profile, number> = { "5.12": 16, "6.19": 32 };

napiCacheSetEnabled(true);

function cacheName(cpu: SkbCpu, addr: number): string {
  const c = virtToCache(cpu.mm, addr);
  return c === undefined ? "none" : c.name;
}

/**
 * Expected head object size for allocSkb(size), computed by hand from the
 * spec (§3.2, §3.3): SKB_DATA_ALIGN(size) + 320 bytes of shared info, from
 * the 704-byte small-head cache in 6.19 when it fits, else the kmalloc class.
 */
const ALLOC_CASES: readonly { size: number; obj: Record<Profile, number>; cache: Record<Profile, string> }[] = [
  { size: 0, obj: { "5.12": 512, "6.19": 704 }, cache: { "5.12": "kmalloc-512", "6.19": "skbuff_small_head" } },
  { size: 1, obj: { "5.12": 512, "6.19": 704 }, cache: { "5.12": "kmalloc-512", "6.19": "skbuff_small_head" } },
  { size: 100, obj: { "5.12": 512, "6.19": 704 }, cache: { "5.12": "kmalloc-512", "6.19": "skbuff_small_head" } },
  { size: 192, obj: { "5.12": 512, "6.19": 704 }, cache: { "5.12": "kmalloc-512", "6.19": "skbuff_small_head" } },
  { size: 193, obj: { "5.12": 1024, "6.19": 704 }, cache: { "5.12": "kmalloc-1k", "6.19": "skbuff_small_head" } },
  { size: 384, obj: { "5.12": 1024, "6.19": 704 }, cache: { "5.12": "kmalloc-1k", "6.19": "skbuff_small_head" } },
  { size: 385, obj: { "5.12": 1024, "6.19": 1024 }, cache: { "5.12": "kmalloc-1k", "6.19": "kmalloc-1k" } },
  { size: 1000, obj: { "5.12": 2048, "6.19": 2048 }, cache: { "5.12": "kmalloc-2k", "6.19": "kmalloc-2k" } },
  { size: 3000, obj: { "5.12": 4096, "6.19": 4096 }, cache: { "5.12": "kmalloc-4k", "6.19": "kmalloc-4k" } },
  { size: 20000, obj: { "5.12": 32768, "6.19": 32768 }, cache: { "5.12": "kmalloc-32k", "6.19": "kmalloc-32k" } },
];

for (const p of PROFILES) for (const dbg of [true, false]) {
  describe(`allocSkb [${p}${dbg ? " slab-debug" : ""}]`, () => {
    test("result shape: len 0, no headroom, tailroom = object - shinfo, users 1, dataref 1, kmalloc head", () => {
      const cpu = setup(p, dbg);
      for (const c of ALLOC_CASES) {
        const skb = allocSkb(cpu, c.size);
        assert.notEqual(skb, 0, `size ${c.size}`);
        const what = `size ${c.size}`;
        assert.equal(cacheName(cpu, skb), "skbuff_head_cache", what);
        assert.equal(skbLen(cpu, skb), 0, what);
        assert.equal(skbHeadroom(cpu, skb), 0, what);
        assert.equal(skbDataPtr(cpu, skb), skbHeadPtr(cpu, skb), what);
        assert.equal(skbEndOffset(cpu, skb), c.obj[p] - 320, what);
        assert.equal(skbTailroom(cpu, skb), c.obj[p] - 320, what);
        assert.ok(skbTailroom(cpu, skb) >= c.size, what);
        assert.equal(u32(cpu, skb + SKB_TRUESIZE), c.obj[p] + 192, what);
        assert.equal(skbUsers(cpu, skb), 1, what);
        assert.equal(skbDataref(cpu, skb), 1, what);
        assert.equal(skbFlag(cpu, skb, SKBF_HEAD_FRAG), false, what);
        assert.equal(skbFclone(cpu, skb), 0, what);
        assert.equal(cacheName(cpu, skbHeadPtr(cpu, skb)), c.cache[p], what);
        assert.equal(u16(cpu, skb + SKB_MAC_HEADER), 0xffff, what);
        assert.equal(u16(cpu, skb + SKB_TRANSPORT_HEADER), 0xffff, what);
        assert.equal(u16(cpu, skb + SKB_NETWORK_HEADER), 0, what);
        kfreeSkb(cpu, skb);
      }
      assertNoLeaks(cpu);
    });

    test("records the allocating CPU in alloc_cpu", () => {
      const cpu = setup(p, dbg, {}, 5);
      const skb = allocSkb(cpu, 64);
      assert.equal(u16(cpu, skb + SKB_ALLOC_CPU), 5);
      kfreeSkb(cpu, skb);
      assertNoLeaks(cpu);
    });

    test("bad sizes throw RangeError naming the size", () => {
      const cpu = setup(p, dbg);
      assert.throws(() => allocSkb(cpu, -1), { name: "RangeError", message: /allocSkb: bad size -1/ });
      assert.throws(() => allocSkb(cpu, Number.NaN), { name: "RangeError", message: /allocSkb: bad size NaN/ });
      assert.throws(() => allocSkb(cpu, 0x80000000), { name: "RangeError", message: /bad size 2147483648/ });
      assertNoLeaks(cpu);
    });

    test("SKB_ALLOC_NAPI: shell from the NAPI cache, one bulk refill on an empty stack", () => {
      const cpu = setup(p, dbg);
      const bulk = BULK[p];
      const headBefore = kmemCacheInfo(cpu.headCache);
      const skb = allocSkb(cpu, 100, SKB_ALLOC_NAPI);
      assert.notEqual(skb, 0);
      assert.equal(cpu.skbCount, bulk - 1);
      assert.equal(cpu.skbCache[bulk - 1], skb, "the top of the refilled stack is handed out");
      assert.equal(gets(cpu), 1);
      assert.equal(cpu.stats[NAPI_STAT_REFILLS], 1);
      const headAfter = kmemCacheInfo(cpu.headCache);
      assert.equal(headAfter.allocBulkCalls - headBefore.allocBulkCalls, 1);
      assert.equal(headAfter.allocBulkObjs - headBefore.allocBulkObjs, bulk);
      assert.equal(headAfter.allocs - headBefore.allocs, 0, "no single slab allocation");
      assert.equal(headAfter.activeObjs, bulk, "the refill took exactly BULK heads");
      // Same shape as any allocSkb result.
      assert.equal(skbLen(cpu, skb), 0);
      assert.equal(skbUsers(cpu, skb), 1);
      assert.equal(skbDataref(cpu, skb), 1);
      // A second NAPI allocation is a hit.
      const skb2 = allocSkb(cpu, 100, SKB_ALLOC_NAPI);
      assert.equal(cpu.skbCache[bulk - 2], skb2);
      assert.equal(cpu.skbCount, bulk - 2);
      assert.equal(napiCacheHits(cpu), 1);
      assert.equal(cpu.stats[NAPI_STAT_REFILLS], 1);
      kfreeSkb(cpu, skb);
      kfreeSkb(cpu, skb2);
      assertNoLeaks(cpu);
    });

    test("SKB_ALLOC_NAPI with the local node (0 or NUMA_NO_NODE) uses the cache; a distant node skips it", () => {
      const cpu = setup(p, dbg);
      const bulk = BULK[p];
      const a = allocSkb(cpu, 100, SKB_ALLOC_NAPI, 0);
      assert.equal(cpu.skbCount, bulk - 1);
      const b = allocSkb(cpu, 100, SKB_ALLOC_NAPI, NUMA_NO_NODE);
      assert.equal(cpu.skbCount, bulk - 2);
      const gets0 = gets(cpu);
      const allocs = kmemCacheInfo(cpu.headCache).allocs;
      const c = allocSkb(cpu, 100, SKB_ALLOC_NAPI, 1);
      assert.notEqual(c, 0);
      assert.equal(cpu.skbCount, bulk - 2, "distant node: the cache is not touched");
      assert.equal(gets(cpu), gets0);
      assert.equal(kmemCacheInfo(cpu.headCache).allocs, allocs + 1, "one single slab allocation");
      for (const s of [a, b, c]) kfreeSkb(cpu, s);
      assertNoLeaks(cpu);
    });

    test("SKB_ALLOC_NAPI | SKB_ALLOC_FCLONE takes the fclone slab, not the cache", () => {
      const cpu = setup(p, dbg);
      const skb = allocSkb(cpu, 100, SKB_ALLOC_NAPI | SKB_ALLOC_FCLONE);
      assert.notEqual(skb, 0);
      assert.equal(gets(cpu), 0);
      assert.equal(cpu.skbCount, 0);
      assert.equal(cacheName(cpu, skb), "skbuff_fclone_cache");
      assert.equal(skbFclone(cpu, skb), SKB_FCLONE_ORIG);
      kfreeSkb(cpu, skb);
      assertNoLeaks(cpu);
    });

    test("SKB_ALLOC_NAPI returns 0 when the cache cannot refill (fewer heads than BULK), without a slab fallback", () => {
      const bulk = BULK[p];
      const cpu = setup(p, dbg, { heads: bulk + 4 });
      const held: number[] = [];
      for (let i = 0; i < 5; i++) held.push(allocSkb(cpu, 64));
      assert.ok(held.every((s) => s !== 0));
      assert.equal(cpu.mem.headCache.nrObjs - active(cpu.mem.headCache), bulk - 1);
      const data = dataActive(cpu);
      const gets0 = gets(cpu);
      const fails = cpu.stats[NAPI_STAT_GET_FAIL] as number;
      const before = kmemCacheInfo(cpu.headCache);
      assert.equal(allocSkb(cpu, 64, SKB_ALLOC_NAPI), 0);
      const after = kmemCacheInfo(cpu.headCache);
      assert.equal(gets(cpu), gets0 + 1);
      assert.equal(cpu.stats[NAPI_STAT_GET_FAIL], fails + 1);
      assert.equal(cpu.stats[NAPI_STAT_REFILLS], 1);
      assert.equal(after.allocBulkCalls - before.allocBulkCalls, 1, "one bulk refill attempt");
      assert.equal(after.allocs - before.allocs, 0, "no single-object fallback");
      assert.equal(after.allocFail - before.allocFail, 1);
      assert.equal(after.activeObjs, before.activeObjs);
      assert.equal(cpu.skbCount, 0);
      assert.equal(dataActive(cpu), data, "no data buffer was allocated");
      // A plain allocation still gets a single head from the slab.
      const plain = allocSkb(cpu, 64);
      assert.notEqual(plain, 0);
      held.push(plain);
      for (const s of held) kfreeSkb(cpu, s);
      assertNoLeaks(cpu);
    });

    test("flag 0 and SKB_ALLOC_RX with an empty cache: single slab allocation", () => {
      const cpu = setup(p, dbg);
      for (const flags of [0, SKB_ALLOC_RX]) {
        const before = kmemCacheInfo(cpu.headCache);
        const skb = allocSkb(cpu, 100, flags);
        const after = kmemCacheInfo(cpu.headCache);
        assert.equal(after.allocs - before.allocs, 1);
        assert.equal(after.allocBulkCalls - before.allocBulkCalls, 0);
        assert.equal(cpu.skbCount, 0);
        assert.equal(cpu.stats[NAPI_STAT_REFILLS], 0, "a non-NAPI allocation never refills the cache");
        kfreeSkb(cpu, skb);
      }
      // 6.19 asked the (empty) cache consume-only, twice; 5.12 never asks.
      assert.equal(gets(cpu), p === "6.19" ? 2 : 0);
      assert.equal(cpu.stats[NAPI_STAT_GET_FAIL], p === "6.19" ? 2 : 0);
      assertNoLeaks(cpu);
    });

    test("flag 0 with cached shells: 5.12 uses the slab, 6.19 pops a cached shell (consume-only)", () => {
      const cpu = setup(p, dbg);
      const n = primeCache(cpu);
      const top = cpu.skbCache[n - 1] as number;
      const before = kmemCacheInfo(cpu.headCache);
      const skb = allocSkb(cpu, 100);
      const after = kmemCacheInfo(cpu.headCache);
      if (p === "5.12") {
        assert.equal(cpu.skbCount, n);
        assert.equal(after.allocs - before.allocs, 1);
        assert.notEqual(skb, top);
      } else {
        assert.equal(skb, top, "the top cached shell");
        assert.equal(cpu.skbCount, n - 1);
        assert.equal(after.allocs - before.allocs, 0);
        assert.equal(after.allocBulkCalls - before.allocBulkCalls, 0);
      }
      assert.equal(cpu.stats[NAPI_STAT_REFILLS], 1, "only the priming refill");
      // The shell was fully rebuilt.
      assert.equal(skbUsers(cpu, skb), 1);
      assert.equal(skbDataref(cpu, skb), 1);
      assert.equal(skbLen(cpu, skb), 0);
      kfreeSkb(cpu, skb);
      assertNoLeaks(cpu);
    });

    test("flag 0 with cached shells but IRQs disabled or a distant node: slab even in 6.19", () => {
      const cpu = setup(p, dbg);
      const n = primeCache(cpu);
      cpu.irqsDisabled = true;
      const a = allocSkb(cpu, 100);
      cpu.irqsDisabled = false;
      assert.equal(cpu.skbCount, n);
      const b = allocSkb(cpu, 100, 0, 1);
      assert.equal(cpu.skbCount, n);
      assert.equal(cpu.skbCache.subarray(0, n).includes(a), false);
      assert.equal(cpu.skbCache.subarray(0, n).includes(b), false);
      kfreeSkb(cpu, a);
      kfreeSkb(cpu, b);
      assertNoLeaks(cpu);
    });

    test("data allocation failure frees the shell back to its slab and returns 0", () => {
      const cpu = setup(p, dbg);
      // Too large for kmalloc-32k.
      let before = kmemCacheInfo(cpu.headCache);
      assert.equal(allocSkb(cpu, 40000), 0);
      let after = kmemCacheInfo(cpu.headCache);
      assert.equal(after.activeObjs, before.activeObjs);
      assert.equal(after.frees - before.frees, 1, "the shell went back with one free");
      // FCLONE: the pair goes back to the fclone slab.
      const fcBefore = kmemCacheInfo(cpu.fcloneCache);
      assert.equal(allocSkb(cpu, 40000, SKB_ALLOC_FCLONE), 0);
      const fcAfter = kmemCacheInfo(cpu.fcloneCache);
      assert.equal(fcAfter.activeObjs, 0);
      assert.equal(fcAfter.allocs - fcBefore.allocs, 1);
      assert.equal(fcAfter.frees - fcBefore.frees, 1);
      // NAPI: the cached shell goes to the slab, not back into the cache.
      before = kmemCacheInfo(cpu.headCache);
      assert.equal(allocSkb(cpu, 40000, SKB_ALLOC_NAPI), 0);
      after = kmemCacheInfo(cpu.headCache);
      assert.equal(cpu.skbCount, BULK[p] - 1);
      assert.equal(after.activeObjs, BULK[p] - 1, "only the parked shells are still allocated");
      assert.equal(after.frees - before.frees, 1);
      assertNoLeaks(cpu);
    });

    test(`data allocation failure with cached shells: ${p === "6.19" ? "the popped cached shell goes to the slab" : "the slab shell goes back"}`, () => {
      const cpu = setup(p, dbg);
      const n = primeCache(cpu);
      const before = kmemCacheInfo(cpu.headCache);
      assert.equal(allocSkb(cpu, 40000), 0);
      const after = kmemCacheInfo(cpu.headCache);
      assert.equal(after.frees - before.frees, 1);
      if (p === "6.19") {
        assert.equal(cpu.skbCount, n - 1, "not pushed back into the cache");
        assert.equal(after.allocs - before.allocs, 0);
        assert.equal(after.activeObjs, before.activeObjs - 1);
      } else {
        assert.equal(cpu.skbCount, n);
        assert.equal(after.allocs - before.allocs, 1);
        assert.equal(after.activeObjs, before.activeObjs);
      }
      assertNoLeaks(cpu);
    });

    test("data allocation failure on an exhausted kmalloc class", () => {
      // 4 objects per kmalloc class and 4 small heads.
      const cpu = setup(p, dbg, { kmalloc: [4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4], smallHeads: 4 });
      const held: number[] = [];
      for (let i = 0; i < 4; i++) held.push(allocSkb(cpu, 100));
      assert.ok(held.every((s) => s !== 0));
      const headActive = active(cpu.headCache);
      assert.equal(allocSkb(cpu, 100), 0);
      assert.equal(active(cpu.headCache), headActive);
      for (const s of held) kfreeSkb(cpu, s);
      assertNoLeaks(cpu);
    });

    test("SKB_ALLOC_FCLONE: fclone slab object, ORIG, fclone_ref 1", () => {
      const cpu = setup(p, dbg);
      const skb = allocSkb(cpu, 100, SKB_ALLOC_FCLONE);
      assert.notEqual(skb, 0);
      assert.equal(cacheName(cpu, skb), "skbuff_fclone_cache");
      assert.ok(kmemCacheObjIndex(cpu.fcloneCache, skb) >= 0, "the original is the start of the pair");
      assert.equal(active(cpu.fcloneCache), 1);
      assert.equal(active(cpu.headCache), 0);
      assert.equal(skbFclone(cpu, skb), SKB_FCLONE_ORIG);
      assert.equal(Atomics.load(cpu.i32, (skb + FCLONE_REF) >>> 2), 1);
      assert.equal(skbUsers(cpu, skb), 1);
      assert.equal(skbDataref(cpu, skb), 1);
      kfreeSkb(cpu, skb);
      assertNoLeaks(cpu);
    });

    test(`fclone companion: ${p === "5.12" ? "preset to SKB_FCLONE_CLONE" : "left untouched"} by allocSkb`, () => {
      // No slab debug here: freed objects keep their bytes so the sentinel survives.
      const cpu = setup(p, dbg, { debug: false });
      const a = allocSkb(cpu, 100, SKB_ALLOC_FCLONE);
      cpu.u8[a + FCLONE_SKB2 + SKB_FLAGS] = 0x50; // fclone bits 0, other bits set
      kfreeSkb(cpu, a);
      const b = allocSkb(cpu, 100, SKB_ALLOC_FCLONE);
      assert.equal(b, a, "LIFO slab: the same pair comes back");
      if (p === "5.12") {
        assert.equal(skbFclone(cpu, b + FCLONE_SKB2), SKB_FCLONE_CLONE);
      } else {
        assert.equal(cpu.u8[b + FCLONE_SKB2 + SKB_FLAGS], 0x50);
      }
      assert.equal(skbFclone(cpu, b), SKB_FCLONE_ORIG);
      kfreeSkb(cpu, b);
      assertNoLeaks(cpu);
    });
  });

  describe(`buildSkb family [${p}${dbg ? " slab-debug" : ""}]`, () => {
    /** A 4 KiB page filled with 0xAA; the first 2048 bytes are the buffer. */
    function pageBuf(cpu: SkbCpu): number {
      const page = allocPage(cpu.mem.pages);
      assert.notEqual(page, 0);
      cpu.u8.fill(0xaa, page, page + 4096);
      return page;
    }

    function checkBuilt(cpu: SkbCpu, skb: number, data: number, size: number, headFrag: boolean): void {
      assert.equal(skbHeadPtr(cpu, skb), data);
      assert.equal(skbDataPtr(cpu, skb), data);
      assert.equal(skbLen(cpu, skb), 0);
      assert.equal(skbEndOffset(cpu, skb), size - 320);
      assert.equal(skbTailroom(cpu, skb), size - 320);
      assert.equal(u32(cpu, skb + SKB_TRUESIZE), size + 192);
      assert.equal(skbUsers(cpu, skb), 1);
      assert.equal(skbFlag(cpu, skb, SKBF_HEAD_FRAG), headFrag);
      assert.equal(u16(cpu, skb + SKB_MAC_HEADER), 0xffff);
      assert.equal(u16(cpu, skb + SKB_TRANSPORT_HEADER), 0xffff);
      assert.equal(u16(cpu, skb + SKB_NETWORK_HEADER), 0);
      assert.equal(u16(cpu, skb + SKB_ALLOC_CPU), cpu.id);
      // Shared info: the 32 bytes before dataref are cleared, dataref = 1,
      // destructor_arg and the frag array are left alone.
      const sh = skbShinfo(cpu, skb);
      assert.equal(sh, data + size - 320);
      assert.deepEqual(Array.from(cpu.u8.subarray(sh, sh + SHINFO_DATAREF)), new Array(SHINFO_DATAREF).fill(0));
      assert.equal(skbDataref(cpu, skb), 1);
      assert.ok(
        cpu.u8.subarray(sh + 36, sh + 320).every((b) => b === 0xaa),
        "bytes after dataref must not be cleared",
      );
    }

    test("buildSkb with a fragSize: head_frag set, slab shell, fields and shared info initialised", () => {
      const cpu = setup(p, dbg, {}, 2);
      const n = primeCache(cpu);
      const page = pageBuf(cpu);
      const headBefore = kmemCacheInfo(cpu.headCache);
      const skb = buildSkb(cpu, page, 2048);
      assert.notEqual(skb, 0);
      checkBuilt(cpu, skb, page, 2048, true);
      assert.equal(cpu.skbCount, n, "buildSkb never uses the NAPI cache");
      assert.equal(kmemCacheInfo(cpu.headCache).allocs - headBefore.allocs, 1);
      // Freeing releases the page fragment reference.
      kfreeSkb(cpu, skb);
      assertNoLeaks(cpu);
    });

    test("buildSkb with fragSize 0: kmalloc head, size from the object, head_frag clear", () => {
      const cpu = setup(p, dbg);
      const data = kmalloc(cpu.kmalloc, 1000);
      cpu.u8.fill(0xaa, data, data + 1024);
      const skb = buildSkb(cpu, data, 0);
      checkBuilt(cpu, skb, data, 1024, false);
      kfreeSkb(cpu, skb);
      assertNoLeaks(cpu);
    });

    test("__buildSkb never sets head_frag", () => {
      const cpu = setup(p, dbg);
      const page = pageBuf(cpu);
      const skb = __buildSkb(cpu, page, 2048);
      checkBuilt(cpu, skb, page, 2048, false);
      // Hand the head to the skb properly before freeing.
      cpu.u8[skb + SKB_FLAGS] = (cpu.u8[skb + SKB_FLAGS] as number) | SKBF_HEAD_FRAG;
      kfreeSkb(cpu, skb);
      assertNoLeaks(cpu);
    });

    test("buildSkb clears a dirty slab shell up to tail", () => {
      const cpu = setup(p, dbg, { debug: false });
      const dirty = kmemCacheAlloc(cpu.headCache);
      cpu.u8.fill(0x77, dirty, dirty + 192);
      kmemCacheFree(cpu.headCache, dirty);
      const page = pageBuf(cpu);
      const skb = buildSkb(cpu, page, 2048);
      assert.equal(skb, dirty);
      assert.equal(u32(cpu, skb + SKB_DEV), 0);
      assert.equal(u32(cpu, skb + SKB_MARK), 0);
      assert.ok(cpu.u8.subarray(skb + SKB_CB, skb + SKB_CB + 48).every((b) => b === 0));
      checkBuilt(cpu, skb, page, 2048, true);
      kfreeSkb(cpu, skb);
      assertNoLeaks(cpu);
    });

    test("buildSkbAround: initialises a caller-zeroed shell; 0 in, 0 out", () => {
      const cpu = setup(p, dbg);
      const shell = kmemCacheAlloc(cpu.headCache);
      skbZeroHead(cpu, shell);
      cpu.u32[(shell + SKB_MARK) >>> 2] = 0x1234; // the caller's business: not cleared
      const page = pageBuf(cpu);
      assert.equal(buildSkbAround(cpu, 0, page, 2048), 0);
      assert.equal(buildSkbAround(cpu, shell, page, 2048), shell);
      checkBuilt(cpu, shell, page, 2048, true);
      assert.equal(u32(cpu, shell + SKB_MARK), 0x1234);
      kfreeSkb(cpu, shell);
      // fragSize 0 around a kmalloc buffer: head_frag stays clear.
      const shell2 = kmemCacheAlloc(cpu.headCache);
      skbZeroHead(cpu, shell2);
      const data = kmalloc(cpu.kmalloc, 500);
      cpu.u8.fill(0xaa, data, data + 512);
      buildSkbAround(cpu, shell2, data, 0);
      checkBuilt(cpu, shell2, data, 512, false);
      kfreeSkb(cpu, shell2);
      assertNoLeaks(cpu);
    });

    test("skbZeroHeadForBuild + build: the same head below tail as skbZeroHead + build, from a dirty shell", () => {
      const cpu = setup(p, dbg);
      const page = pageBuf(cpu);
      const a = kmemCacheAlloc(cpu.headCache);
      const b = kmemCacheAlloc(cpu.headCache);
      for (const fill of [0xff, 0x5a]) {
        cpu.u8.fill(fill, a, a + SKB_TAIL);
        cpu.u8.fill(fill, b, b + SKB_TAIL);
        skbZeroHead(cpu, a);
        skbZeroHeadForBuild(cpu, b);
        // Bytes 96..111 are left to the builder: still dirty here.
        assert.ok(cpu.u8.subarray(b + 96, b + 112).every((x) => x === fill));
        assert.ok(cpu.u8.subarray(b, b + 96).every((x) => x === 0));
        assert.ok(cpu.u8.subarray(b + 112, b + SKB_TAIL).every((x) => x === 0));
        buildSkbAround(cpu, a, page, 2048);
        buildSkbAround(cpu, b, page, 2048);
        assert.deepEqual(Array.from(cpu.u8.subarray(b, b + SKB_TAIL)), Array.from(cpu.u8.subarray(a, a + SKB_TAIL)));
        checkBuilt(cpu, b, page, 2048, true);
      }
      kmemCacheFree(cpu.headCache, a);
      kmemCacheFree(cpu.headCache, b);
      putPage(cpu.mem.pages, page);
      assertNoLeaks(cpu);
    });

    test("napiBuildSkb: shell from the NAPI cache (refill on empty), zeroed to tail", () => {
      const cpu = setup(p, dbg);
      const bulk = BULK[p];
      const page = pageBuf(cpu);
      const skb = napiBuildSkb(cpu, page, 2048);
      assert.notEqual(skb, 0);
      assert.equal(gets(cpu), 1);
      assert.equal(cpu.stats[NAPI_STAT_REFILLS], 1);
      assert.equal(cpu.skbCount, bulk - 1);
      assert.equal(cpu.skbCache[bulk - 1], skb);
      checkBuilt(cpu, skb, page, 2048, true);
      // Dirty it and recycle it through the cache: the next napiBuildSkb gets
      // the same shell back, cleared up to tail.
      cpu.u32[(skb + SKB_MARK) >>> 2] = 0xdead;
      cpu.u32[(skb + SKB_DEV) >>> 2] = 7;
      cpu.u8.fill(0x33, skb + SKB_CB, skb + SKB_CB + 48);
      cpu.u32[(skb + SKB_NAPI_ID) >>> 2] = 99;
      napiConsumeSkb(cpu, skb, 64);
      assert.equal(cpu.skbCount, bulk);
      const data = kmalloc(cpu.kmalloc, 1000);
      cpu.u8.fill(0xaa, data, data + 1024);
      const again = napiBuildSkb(cpu, data, 0);
      assert.equal(again, skb, "LIFO: the shell just cached");
      assert.equal(napiCacheHits(cpu), 1);
      assert.equal(u32(cpu, again + SKB_MARK), 0);
      assert.equal(u32(cpu, again + SKB_DEV), 0);
      assert.equal(u32(cpu, again + SKB_NAPI_ID), 0);
      assert.ok(cpu.u8.subarray(again + SKB_CB, again + SKB_CB + 48).every((b) => b === 0));
      checkBuilt(cpu, again, data, 1024, false);
      consumeSkb(cpu, again);
      assertNoLeaks(cpu);
    });

    test("napiBuildSkb returns 0 when the cache cannot refill; data stays the caller's", () => {
      const bulk = BULK[p];
      const cpu = setup(p, dbg, { heads: bulk - 1 });
      const page = pageBuf(cpu);
      assert.equal(napiBuildSkb(cpu, page, 2048), 0);
      assert.equal(cpu.stats[NAPI_STAT_GET_FAIL], 1);
      assert.equal(pageRefCount(cpu.mem.pages, page), 1, "the page was not touched");
      putPage(cpu.mem.pages, page);
      assertNoLeaks(cpu);
    });

    test("buildSkb returns 0 when the head slab is exhausted; data stays the caller's", () => {
      const cpu = setup(p, dbg, { heads: 64 });
      const held: number[] = [];
      for (;;) {
        const s = kmemCacheAlloc(cpu.headCache);
        if (s === 0) break;
        held.push(s);
      }
      assert.equal(held.length, 64);
      const page = pageBuf(cpu);
      assert.equal(buildSkb(cpu, page, 2048), 0);
      assert.equal(__buildSkb(cpu, page, 2048), 0);
      assert.equal(pageRefCount(cpu.mem.pages, page), 1);
      putPage(cpu.mem.pages, page);
      for (const s of held) kmemCacheFree(cpu.headCache, s);
      assertNoLeaks(cpu);
    });

    test("a buffer at a 4- but not 8-byte aligned offset: shared info cleared and dataref set all the same", () => {
      const cpu = setup(p, dbg);
      const page = pageBuf(cpu);
      for (const fn of [buildSkb, __buildSkb, napiBuildSkb]) {
        cpu.u8.fill(0xaa, page, page + 4096);
        const data = page + 4; // shared info lands at data + 1728: 4 mod 8
        const skb = fn(cpu, data, 2048);
        assert.notEqual(skb, 0);
        checkBuilt(cpu, skb, data, 2048, fn !== __buildSkb);
        // Do not release the page through the skb: it is the test's.
        if (fn === napiBuildSkb) napiSkbFreeStolenHead(cpu, skb);
        else kmemCacheFree(cpu.headCache, skb);
      }
      putPage(cpu.mem.pages, page);
      napiSkbCacheDrain(cpu);
      assertNoLeaks(cpu);
    });

    test("bad arguments throw RangeError with clear text and take no shell (fragSize checks: slab-debug mode)", () => {
      // Like the kernel, the fast path trusts a non-zero fragSize; slab-debug
      // mode checks it. fragSize 0 (size lookup) and buildSkbAround always check.
      const cpu = setup(p, dbg);
      const page = pageBuf(cpu);
      const gets0 = gets(cpu);
      for (const fn of [buildSkb, __buildSkb, napiBuildSkb]) {
        if (dbg) {
          assert.throws(() => fn(cpu, 0, 2048), { name: "RangeError", message: /data 0x0 must be a non-NULL 4-byte aligned offset/ });
          assert.throws(() => fn(cpu, page + 2, 2048), {
            name: "RangeError",
            message: new RegExp(`data ${hex(page + 2)} must be a non-NULL 4-byte aligned`),
          });
          assert.throws(() => fn(cpu, page, 100), { name: "RangeError", message: /fragSize 100 too small or unaligned \(needs >= 324/ });
          assert.throws(() => fn(cpu, page, 2050), { name: "RangeError", message: /fragSize 2050 too small or unaligned/ });
          assert.throws(() => fn(cpu, cpu.arena.size - 1024, 2048), { name: "RangeError", message: /past the arena/ });
        }
        // fragSize 0 needs a slab object: the arena header page is none.
        assert.throws(() => fn(cpu, 0, 0), { name: "RangeError", message: /data 0x0 is not the start of a slab object; pass its fragSize/ });
        assert.throws(() => fn(cpu, 64, 0), { name: "RangeError", message: /data 0x40 is not the start of a slab object/ });
      }
      const shell = kmemCacheAlloc(cpu.headCache);
      skbZeroHead(cpu, shell);
      assert.throws(() => buildSkbAround(cpu, shell, page, 100), { name: "RangeError", message: /^buildSkbAround: fragSize 100/ });
      assert.throws(() => buildSkbAround(cpu, shell, page + 1, 2048), { name: "RangeError", message: /^buildSkbAround: data 0x[0-9a-f]+ must be/ });
      kmemCacheFree(cpu.headCache, shell);
      assert.equal(gets(cpu), gets0, "napiBuildSkb checks before taking a shell");
      assert.equal(active(cpu.headCache), 0, "no shell leaked");
      putPage(cpu.mem.pages, page);
      assertNoLeaks(cpu);
    });

    test("slab-debug: a non-integer fragSize (NaN) is rejected instead of writing at arena offset 0", { skip: !dbg && "arguments are checked in slab-debug mode only" }, () => {
      const cpu = setup(p, dbg);
      const page = pageBuf(cpu);
      const header = Array.from(cpu.u8.subarray(0, 64));
      let skb = 0;
      assert.throws(() => {
        skb = buildSkb(cpu, page, Number.NaN);
      }, RangeError);
      assert.deepEqual(Array.from(cpu.u8.subarray(0, 64)), header, "arena header overwritten");
      if (skb !== 0) kmemCacheFree(cpu.headCache, skb);
      putPage(cpu.mem.pages, page);
      assertNoLeaks(cpu);
    });

    test("slab-debug: fragSize 0 with a pointer inside (not at the start of) a kmalloc object is rejected", { skip: !dbg && "arguments are checked in slab-debug mode only" }, () => {
      // ksize() only means something for an object start; an interior pointer
      // would put the shared info past the end of the object.
      const cpu = setup(p, dbg);
      const data = kmalloc(cpu.kmalloc, 2048);
      let skb = 0;
      assert.throws(() => {
        skb = buildSkb(cpu, data + 64, 0);
      }, RangeError);
      if (skb !== 0) kmemCacheFree(cpu.headCache, skb);
      kfree(cpu.mm, data);
      assertNoLeaks(cpu);
    });
  });

  describe(`netdevAllocSkb [${p}${dbg ? " slab-debug" : ""}]`, () => {
    // Thresholds (spec §3.6): len + NET_SKB_PAD <= SKB_WITH_OVERHEAD(1024) = 704
    // (5.12) or SKB_WITH_OVERHEAD(704) = 384 (6.19) -> kmalloc path;
    // len + 64 > SKB_WITH_OVERHEAD(4096) = 3776 -> kmalloc path; else a page fragment.
    const smallMax = p === "5.12" ? 640 : 320;

    test("small length: kmalloc head, NET_SKB_PAD headroom, slab shell, dev set", () => {
      const cpu = setup(p, dbg);
      for (const len of [0, 100, smallMax]) {
        const skb = netdevAllocSkb(cpu, 3, len);
        assert.notEqual(skb, 0);
        const what = `len ${len}`;
        assert.equal(skbHeadroom(cpu, skb), 64, what);
        assert.equal(skbLen(cpu, skb), 0, what);
        assert.ok(skbTailroom(cpu, skb) >= len, what);
        assert.equal(skbFlag(cpu, skb, SKBF_HEAD_FRAG), false, what);
        assert.equal(u32(cpu, skb + SKB_DEV), 3, what);
        assert.equal(cacheName(cpu, skb), "skbuff_head_cache");
        assert.notEqual(cacheName(cpu, skbHeadPtr(cpu, skb)), "frag-pages", what);
        kfreeSkb(cpu, skb);
      }
      // Exact numbers for len 100: 164 bytes -> 512-byte kmalloc (5.12) / 704-byte small head (6.19).
      const skb = netdevAllocSkb(cpu, 3, 100);
      const obj = p === "5.12" ? 512 : 704;
      assert.equal(cacheName(cpu, skbHeadPtr(cpu, skb)), p === "5.12" ? "kmalloc-512" : "skbuff_small_head");
      assert.equal(skbTailroom(cpu, skb), obj - 320 - 64);
      assert.equal(u32(cpu, skb + SKB_TRUESIZE), obj + 192);
      kfreeSkb(cpu, skb);
      assert.equal(cpu.stats[NAPI_STAT_REFILLS], 0);
      assertNoLeaks(cpu);
    });

    test("mid length: page-fragment head (head_frag 1), slab shell even with cached shells", () => {
      const cpu = setup(p, dbg);
      const n = primeCache(cpu);
      const gets0 = gets(cpu);
      for (const len of [smallMax + 1, 1500, 3712]) {
        const what = `len ${len}`;
        const frags = cpu.napiFrag.fragsAllocated;
        const allocs = kmemCacheInfo(cpu.headCache).allocs;
        const skb = netdevAllocSkb(cpu, 4, len);
        assert.notEqual(skb, 0, what);
        assert.equal(skbFlag(cpu, skb, SKBF_HEAD_FRAG), true, what);
        assert.equal(cacheName(cpu, skbHeadPtr(cpu, skb)), "frag-pages", what);
        assert.equal(cpu.napiFrag.fragsAllocated, frags + 1, what);
        assert.equal(kmemCacheInfo(cpu.headCache).allocs, allocs + 1, `${what}: single slab shell`);
        assert.equal(cpu.skbCount, n, `${what}: NAPI cache untouched`);
        assert.equal(gets(cpu), gets0, what);
        assert.equal(skbHeadroom(cpu, skb), 64, what);
        assert.equal(u32(cpu, skb + SKB_DEV), 4, what);
        const sz = Math.ceil((len + 64) / 64) * 64 + 320;
        assert.equal(skbEndOffset(cpu, skb), sz - 320, what);
        assert.equal(skbTailroom(cpu, skb), sz - 320 - 64, what);
        assert.equal(u32(cpu, skb + SKB_TRUESIZE), sz + 192, what);
        kfreeSkb(cpu, skb);
      }
      // Exact numbers for 1500: SKB_HEAD_ALIGN(1564) = 1600 + 320 = 1920.
      const skb = netdevAllocSkb(cpu, 4, 1500);
      assert.equal(u32(cpu, skb + SKB_TRUESIZE), 2112);
      assert.equal(skbTailroom(cpu, skb), 1536);
      kfreeSkb(cpu, skb);
      assertNoLeaks(cpu);
    });

    test("mid length with IRQs disabled takes the fragment from netdev_alloc_cache", () => {
      const cpu = setup(p, dbg);
      cpu.irqsDisabled = true;
      const skb = netdevAllocSkb(cpu, 1, 1500);
      cpu.irqsDisabled = false;
      assert.equal(cpu.netdevFrag.fragsAllocated, 1);
      assert.equal(cpu.napiFrag.fragsAllocated, 0);
      assert.equal(skbFlag(cpu, skb, SKBF_HEAD_FRAG), true);
      kfreeSkb(cpu, skb);
      assertNoLeaks(cpu);
    });

    test("large length (> SKB_WITH_OVERHEAD(PAGE_SIZE)): kmalloc head", () => {
      const cpu = setup(p, dbg);
      const skb = netdevAllocSkb(cpu, 1, 3713);
      assert.equal(skbFlag(cpu, skb, SKBF_HEAD_FRAG), false);
      assert.equal(cacheName(cpu, skbHeadPtr(cpu, skb)), "kmalloc-8k");
      assert.equal(skbHeadroom(cpu, skb), 64);
      assert.equal(cpu.napiFrag.fragsAllocated, 0);
      kfreeSkb(cpu, skb);
      assertNoLeaks(cpu);
    });

    test(`small length with cached shells: ${p === "5.12" ? "slab shell" : "6.19 consume-only pops a cached shell"}`, () => {
      const cpu = setup(p, dbg);
      const n = primeCache(cpu);
      const top = cpu.skbCache[n - 1];
      const skb = netdevAllocSkb(cpu, 1, 100);
      if (p === "5.12") {
        assert.equal(cpu.skbCount, n);
        assert.notEqual(skb, top);
      } else {
        assert.equal(cpu.skbCount, n - 1);
        assert.equal(skb, top);
      }
      kfreeSkb(cpu, skb);
      assertNoLeaks(cpu);
    });

    test("fragment path with no page available returns 0 and takes no shell", () => {
      const cpu = setup(p, dbg);
      const pages: number[] = [];
      for (;;) {
        const pg = allocPage(cpu.mem.fragPages);
        if (pg === 0) break;
        pages.push(pg);
      }
      const heads = kmemCacheInfo(cpu.headCache);
      assert.equal(netdevAllocSkb(cpu, 1, 1500), 0);
      assert.equal(cpu.napiFrag.allocFail, 1);
      assert.equal(kmemCacheInfo(cpu.headCache).allocs, heads.allocs);
      assert.equal(active(cpu.headCache), heads.activeObjs);
      for (const pg of pages) putPage(cpu.mem.fragPages, pg);
      assertNoLeaks(cpu);
    });

    test("fragment path with no shell available returns 0 and frees the fragment", () => {
      const cpu = setup(p, dbg, { heads: 64 });
      // Exhaust the head slab: the fragment must be given back.
      const held: number[] = [];
      for (;;) {
        const s = kmemCacheAlloc(cpu.headCache);
        if (s === 0) break;
        held.push(s);
      }
      assert.equal(netdevAllocSkb(cpu, 1, 1500), 0);
      assert.equal(cpu.napiFrag.fragsAllocated, 1, "a fragment was taken");
      for (const s of held) kmemCacheFree(cpu.headCache, s);
      assertNoLeaks(cpu); // drains the frag cache: the page must be free again
    });
  });

  describe(`napiAllocSkb [${p}${dbg ? " slab-debug" : ""}]`, () => {
    const smallMax = p === "5.12" ? 640 : 320;

    test("every path takes the shell from the NAPI cache; NET_SKB_PAD headroom; dev set", () => {
      const cpu = setup(p, dbg);
      const bulk = BULK[p];
      const napi: NapiSkbOwner = { dev: 9, napiId: 0, skb: 0 };
      const cases = [
        { len: 100, frag: false },
        { len: smallMax, frag: false },
        { len: smallMax + 1, frag: true },
        { len: 1500, frag: true },
        { len: 3712, frag: true },
        { len: 3713, frag: false },
      ];
      const got: number[] = [];
      for (const [i, c] of cases.entries()) {
        const what = `len ${c.len}`;
        const slabAllocs = kmemCacheInfo(cpu.headCache).allocs;
        const skb = napiAllocSkb(cpu, napi, c.len);
        assert.notEqual(skb, 0, what);
        assert.equal(gets(cpu), i + 1, what);
        assert.equal(cpu.skbCount, bulk - 1 - i, what);
        assert.equal(cpu.skbCache[bulk - 1 - i], skb, what);
        assert.equal(kmemCacheInfo(cpu.headCache).allocs, slabAllocs, `${what}: no single slab allocation`);
        assert.equal(skbHeadroom(cpu, skb), 64, what);
        assert.equal(skbLen(cpu, skb), 0, what);
        assert.ok(skbTailroom(cpu, skb) >= c.len, what);
        assert.equal(u32(cpu, skb + SKB_DEV), 9, what);
        assert.equal(skbFlag(cpu, skb, SKBF_HEAD_FRAG), c.frag, what);
        assert.equal(cacheName(cpu, skbHeadPtr(cpu, skb)) === "frag-pages", c.frag, what);
        assert.equal(skbUsers(cpu, skb), 1, what);
        assert.equal(skbDataref(cpu, skb), 1, what);
        got.push(skb);
      }
      assert.equal(cpu.stats[NAPI_STAT_REFILLS], 1);
      assert.equal(napi.skb, 0, "napiAllocSkb does not store the skb in the napi");
      for (const s of got) napiConsumeSkb(cpu, s, 64);
      assertNoLeaks(cpu);
    });

    test("fragment path: exact sizes for len 1500", () => {
      const cpu = setup(p, dbg);
      const skb = napiAllocSkb(cpu, { dev: 1, napiId: 0, skb: 0 }, 1500);
      assert.equal(u32(cpu, skb + SKB_TRUESIZE), 1920 + 192);
      assert.equal(skbEndOffset(cpu, skb), 1600);
      assert.equal(skbTailroom(cpu, skb), 1536);
      kfreeSkb(cpu, skb);
      assertNoLeaks(cpu);
    });

    test("fragment path with no shell available: returns 0 and frees the fragment", () => {
      const bulk = BULK[p];
      const cpu = setup(p, dbg, { heads: bulk - 1 });
      assert.equal(napiAllocSkb(cpu, { dev: 1, napiId: 0, skb: 0 }, 1500), 0);
      assert.equal(cpu.napiFrag.fragsAllocated, 1);
      assert.equal(napiAllocSkb(cpu, { dev: 1, napiId: 0, skb: 0 }, 100), 0, "kmalloc path fails too");
      assertNoLeaks(cpu);
    });
  });

  describe(`napiGetFrags [${p}${dbg ? " slab-debug" : ""}]`, () => {
    test("allocates once (cache shell, kmalloc head), stamps the NAPI id, then returns the same skb", () => {
      const cpu = setup(p, dbg);
      const napi: NapiSkbOwner = { dev: 2, napiId: 0x2001, skb: 0 };
      const skb = napiGetFrags(cpu, napi);
      assert.notEqual(skb, 0);
      assert.equal(napi.skb, skb);
      assert.equal(u32(cpu, skb + SKB_NAPI_ID), 0x2001);
      assert.equal(u32(cpu, skb + SKB_DEV), 2);
      assert.equal(gets(cpu), 1, "shell from the NAPI cache");
      assert.equal(skbFlag(cpu, skb, SKBF_HEAD_FRAG), false);
      // GRO_MAX_HEAD + 64 = 368: kmalloc-1k in 5.12 (704 bytes needed), the small-head cache in 6.19.
      assert.equal(cacheName(cpu, skbHeadPtr(cpu, skb)), p === "5.12" ? "kmalloc-1k" : "skbuff_small_head");
      assert.equal(skbHeadroom(cpu, skb), 64);
      assert.equal(skbTailroom(cpu, skb), p === "5.12" ? 1024 - 320 - 64 : 704 - 320 - 64);
      assert.ok(skbTailroom(cpu, skb) >= GRO_MAX_HEAD);
      const slab = kmemCacheInfo(cpu.headCache).allocBulkCalls;
      assert.equal(napiGetFrags(cpu, napi), skb);
      assert.equal(napiGetFrags(cpu, napi), skb);
      assert.equal(gets(cpu), 1, "no further allocation");
      assert.equal(kmemCacheInfo(cpu.headCache).allocBulkCalls, slab);
      napi.skb = 0;
      napiConsumeSkb(cpu, skb, 64);
      assertNoLeaks(cpu);
    });

    test("returns 0 and leaves napi.skb empty when allocation fails", () => {
      const cpu = setup(p, dbg, { heads: BULK[p] - 1 });
      const napi: NapiSkbOwner = { dev: 2, napiId: 7, skb: 0 };
      assert.equal(napiGetFrags(cpu, napi), 0);
      assert.equal(napi.skb, 0);
      assertNoLeaks(cpu);
    });
  });
}
