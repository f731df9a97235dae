/**
 * Specification tests for the per-CPU NAPI skb head cache (kernel-spec.md
 * §1.3–1.5, §1.7, §4.2 and every item of §9), run against both reference
 * profiles: 5.12 (64 / bulk 16 / flush 32, keep 32) and 6.19 (128 / bulk 32 /
 * flush 32, keep 96).
 *
 * Every expected number below is written out from the spec, never read back
 * from the implementation, so a wrong constant or an extra slab call fails.
 */

import assert from "node:assert/strict";
import { afterEach, describe, test } from "node:test";

import { kmemCacheAlloc, kmemCacheAllocBulk, kmemCacheFree, kmemCacheInfo, kmemCacheObjState, OBJ_ALLOCATED, OBJ_CACHED, OBJ_FREE, type SlabInfo } from "../../src/mm/slab.js";
import { kfree, mmSlabInfo } from "../../src/mm/mm.js";
import { pageFragAlloc, pageFragCacheDrain, pageFragFree } from "../../src/mm/page-frag.js";
import { allocPage, pageRefCount, virtToHeadPage } from "../../src/mm/page-alloc.js";
import { kmalloc } from "../../src/mm/kmalloc.js";
import { createSkbMemory, type SkbMemory, type SkbMemoryConfig } from "../../src/skb/memory.js";
import { createSkbCpu, napiCacheStats, type SkbCpu } from "../../src/skb/cpu.js";
import {
  napiCacheIsEnabled,
  napiCacheSetEnabled,
  napiSkbCacheDrain,
  napiSkbCacheGet,
  napiSkbCacheGetBulk,
  napiSkbCachePut,
} from "../../src/skb/napi-cache.js";
import { napiProfile, PROFILE_5_12, PROFILE_6_19 } from "../../src/skb/profile.js";
import { allocSkb, buildSkb, napiAllocSkb, napiBuildSkb, napiGetFrags } from "../../src/skb/alloc.js";
import {
  __napiKfreeSkb,
  kfreeSkb,
  napiConsumeSkb,
  napiSkbFreeStolenHead,
  netTxAction,
  skbRegisterDestructor,
  skbSetDeferFree,
} from "../../src/skb/free.js";
import { skbClone } from "../../src/skb/clone.js";
import { napiReuseSkb } from "../../src/core/gro-frags.js";
import { skbAddRxFrag } from "../../src/skb/data.js";
import { hex, skbDataref, skbFclone, skbGet, skbHeadPtr, skbShinfo, skbUsers } from "../../src/skb/access.js";
import {
  NUMA_NO_NODE,
  SHINFO_DATAREF,
  SKB_ALLOC_CPU,
  SKB_ALLOC_FCLONE,
  SKB_ALLOC_NAPI,
  SKB_ALLOC_RX,
  SKB_DESTRUCTOR,
  SKB_DST,
  SKB_EXTENSIONS,
  SKB_FCLONE_CLONE,
  SKB_FCLONE_ORIG,
  SKB_FLAGS,
  SKB_FLAGS2,
  SKB_HEAD_OBJ_SIZE,
  SKB_MAC_HEADER,
  SKB_NETWORK_HEADER,
  SKB_SK,
  SKB_TAIL,
  SKB_TRANSPORT_HEADER,
  SKB_USERS,
  SKB_VLAN_TCI,
  SKBF_HEAD_FRAG,
  SKBF_PFMEMALLOC,
  SKBF2_SLOW_GRO,
  SKB_SMALL_HEAD_CACHE_SIZE,
  skbHeadAlign,
} from "../../src/skb/layout.js";

// ---- fixtures -------------------------------------------------------------------

interface Prof {
  readonly name: "5.12" | "6.19";
  readonly size: number;
  readonly bulk: number;
  readonly flush: number;
  readonly keep: number;
}

/** The two reference profiles of spec §1.7, written out. */
const PROFILES: readonly Prof[] = [
  { name: "5.12", size: 64, bulk: 16, flush: 32, keep: 32 },
  { name: "6.19", size: 128, bulk: 32, flush: 32, keep: 96 },
];

const ARENA = 16 << 20;
/** A page-fragment data buffer size (1 KiB of data + aligned shared info). */
const FRAG_SZ = skbHeadAlign(1024);

function mkMem(extra: SkbMemoryConfig = {}): SkbMemory {
  return createSkbMemory({ arenaSize: ARENA, debug: false, ...extra });
}

function mkCpu(mem: SkbMemory, p: Prof, id = 0): SkbCpu {
  return createSkbCpu(mem, id, { profile: p.name });
}

function head(mem: SkbMemory): SlabInfo {
  return kmemCacheInfo(mem.headCache);
}

/** A fresh page fragment for napiBuildSkb (the driver's RX buffer). */
function frag(cpu: SkbCpu): number {
  const d = pageFragAlloc(cpu.napiFrag, FRAG_SZ);
  assert.notEqual(d, 0, "test setup: page fragment allocation failed");
  return d;
}

/** napiBuildSkb around a fresh page fragment; asserts success. */
function build(cpu: SkbCpu): number {
  const skb = napiBuildSkb(cpu, frag(cpu), FRAG_SZ);
  assert.notEqual(skb, 0, "napiBuildSkb returned NULL");
  return skb;
}

/** Visible cache contents, bottom to top. */
function cacheOf(cpu: SkbCpu): number[] {
  return Array.from(cpu.skbCache.subarray(0, cpu.skbCount));
}

/** Take `n` single shells from the slab (for pushing into the cache by hand). */
function slabShells(mem: SkbMemory, n: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const s = kmemCacheAlloc(mem.headCache);
    assert.notEqual(s, 0, "test setup: head slab exhausted");
    out.push(s);
  }
  return out;
}

/** Exhaust the head slab, returning what was taken. */
function drainSlab(mem: SkbMemory): number[] {
  const out: number[] = [];
  for (;;) {
    const s = kmemCacheAlloc(mem.headCache);
    if (s === 0) return out;
    out.push(s);
  }
}

/** Take every free head, then give back all but `leave`, so exactly `leave` are free. */
function leaveFree(mem: SkbMemory, leave: number): number[] {
  const taken = drainSlab(mem);
  for (let i = 0; i < leave; i++) kmemCacheFree(mem.headCache, taken.pop() as number);
  return taken;
}

/** Release everything a test made and check no slab object leaked. */
function teardownNoLeak(mem: SkbMemory, cpus: SkbCpu[]): void {
  for (const cpu of cpus) {
    netTxAction(cpu);
    napiSkbCacheDrain(cpu);
    pageFragCacheDrain(cpu.napiFrag);
    pageFragCacheDrain(cpu.netdevFrag);
  }
  for (const info of mmSlabInfo(mem.mm)) assert.equal(info.activeObjs, 0, `slab ${info.name} leaked ${info.activeObjs} objects`);
}

type StatName = keyof ReturnType<typeof napiCacheStats>;

/** A NAPI cache counter by name (napiCacheStats). */
function stat(cpu: SkbCpu, name: StatName): number {
  return napiCacheStats(cpu)[name];
}

afterEach(() => {
  napiCacheSetEnabled(true);
  skbSetDeferFree(null);
});

// ---- profiles and sizes ------------------------------------------------------------

describe("napiProfile (spec §1.2, §1.7)", () => {
  test("reference profile constants", () => {
    assert.equal(PROFILE_5_12.cacheSize, 64);
    assert.equal(PROFILE_5_12.bulk, 16);
    assert.equal(PROFILE_5_12.flush, 32);
    assert.equal(PROFILE_6_19.cacheSize, 128);
    assert.equal(PROFILE_6_19.bulk, 32);
    assert.equal(PROFILE_6_19.flush, 32);
    assert.equal(PROFILE_5_12.allocConsumeOnly, false);
    assert.equal(PROFILE_6_19.allocConsumeOnly, true);
    assert.equal(PROFILE_5_12.alienDefer, false);
    assert.equal(PROFILE_6_19.alienDefer, true);
    // §9 item 12 / §4.6: skb_defer_max 64, 128 in 6.19.
    assert.equal(PROFILE_5_12.skbDeferMax, 64);
    assert.equal(PROFILE_6_19.skbDeferMax, 128);
    const mem = mkMem();
    for (const p of PROFILES) {
      const cpu = mkCpu(mem, p);
      assert.equal(cpu.cacheSize, p.size);
      assert.equal(cpu.bulk, p.bulk);
      assert.equal(cpu.keep, p.keep);
      assert.equal(cpu.skbCount, 0);
      assert.equal(cpu.skbCache.length, p.size);
    }
    // The default profile is 5.12 (the seed's behaviour).
    assert.equal(createSkbCpu(mem, 1).profile.name, "5.12");
  });

  test("rejects unknown names and bad sizes with a RangeError naming the problem", () => {
    for (const bad of ["5.15", "6.18", "", "latest", "5.12 "]) {
      assert.throws(() => napiProfile(bad), (e: unknown) => e instanceof RangeError && e.message.includes(`'${bad}'`));
      assert.throws(() => createSkbCpu(mkMemSmall(), 0, { profile: bad }), RangeError);
    }
    const badSizes: { cacheSize?: number; bulk?: number; flush?: number; skbDeferMax?: number }[] = [
      { cacheSize: 1 },
      { cacheSize: 0 },
      { cacheSize: -64 },
      { cacheSize: 64.5 },
      { cacheSize: Number.NaN },
      { bulk: 0 },
      { bulk: 65 },
      { bulk: 1.5 },
      { flush: 0 },
      { flush: 65 },
      { cacheSize: 8, bulk: 9 },
      { cacheSize: 8, flush: 9 },
      { skbDeferMax: 0 },
    ];
    for (const o of badSizes) {
      assert.throws(() => napiProfile("5.12", o), RangeError, JSON.stringify(o));
    }
    const named = (() => {
      try {
        napiProfile("6.19", { bulk: 0 });
        return "";
      } catch (e) {
        return (e as Error).message;
      }
    })();
    assert.match(named, /bulk/);
    assert.match(named, /6\.19/);
    // Valid overrides are applied on top of the profile.
    const o = napiProfile("6.19", { cacheSize: 8, bulk: 2, flush: 4 });
    assert.equal(o.cacheSize, 8);
    assert.equal(o.bulk, 2);
    assert.equal(o.flush, 4);
    assert.equal(o.allocConsumeOnly, true);
    // undefined overrides do not erase profile values.
    assert.equal(napiProfile("5.12", { bulk: undefined }).bulk, 16);
  });
});

function mkMemSmall(): SkbMemory {
  return createSkbMemory({ arenaSize: 4 << 20 });
}

// ---- per-profile behaviour -----------------------------------------------------------

for (const P of PROFILES) {
  describe(`NAPI head cache, ${P.name} profile (SIZE ${P.size}, BULK ${P.bulk}, keep ${P.keep})`, () => {
    test("§9.2/9.3: fresh CPU, first napiBuildSkb = ONE bulk request of BULK, BULK-1 left cached", () => {
      const mem = mkMem();
      const cpu = mkCpu(mem, P);
      const before = head(mem);
      const skb = build(cpu);
      const after = head(mem);
      assert.equal(after.allocBulkCalls - before.allocBulkCalls, 1);
      assert.equal(after.allocBulkObjs - before.allocBulkObjs, P.bulk);
      assert.equal(after.allocs - before.allocs, 0, "no single-object slab allocation");
      assert.equal(after.activeObjs - before.activeObjs, P.bulk);
      assert.equal(cpu.skbCount, P.bulk - 1);
      // The shell handed out is the top of the refilled stack.
      assert.equal(skb, cpu.skbCache[P.bulk - 1]);
      assert.ok(!cacheOf(cpu).includes(skb));
      assert.equal(stat(cpu, "gets"), 1);
      assert.equal(stat(cpu, "hits"), 0);
      assert.equal(stat(cpu, "refills"), 1);
      assert.equal(stat(cpu, "refillObjs"), P.bulk);
      assert.equal(stat(cpu, "slabCalls"), 1);
      kfreeSkb(cpu, skb);
      teardownNoLeak(mem, [cpu]);
    });

    test("§9.2: BULK-1 more builds empty the stack with no slab call; the next build refills with one bulk", () => {
      const mem = mkMem();
      const cpu = mkCpu(mem, P);
      const skbs = [build(cpu)];
      const refill1 = cacheOf(cpu);
      for (let i = 1; i < P.bulk; i++) {
        skbs.push(build(cpu));
        assert.equal(cpu.skbCount, P.bulk - 1 - i);
      }
      assert.equal(cpu.skbCount, 0);
      assert.equal(head(mem).allocBulkCalls, 1);
      assert.equal(head(mem).allocs, 0);
      // Pops come off the top: build i got index BULK-1-i.
      assert.deepEqual(skbs.slice(1), refill1.slice().reverse());
      // BULK+1-th build: another single bulk request.
      skbs.push(build(cpu));
      assert.equal(head(mem).allocBulkCalls, 2);
      assert.equal(head(mem).allocBulkObjs, 2 * P.bulk);
      assert.equal(cpu.skbCount, P.bulk - 1);
      assert.equal(new Set(skbs).size, skbs.length, "every build got a distinct shell");
      assert.equal(stat(cpu, "gets"), P.bulk + 1);
      assert.equal(stat(cpu, "hits"), P.bulk - 1);
      assert.equal(stat(cpu, "refills"), 2);
      assert.equal(stat(cpu, "refillObjs"), 2 * P.bulk);
      for (const s of skbs) kfreeSkb(cpu, s);
      teardownNoLeak(mem, [cpu]);
    });

    test("§1.3: refill only when the stack is empty, never a top-up", () => {
      const mem = mkMem();
      const cpu = mkCpu(mem, P);
      const [a] = slabShells(mem, 1) as [number];
      napiSkbCachePut(cpu, a);
      assert.equal(cpu.skbCount, 1);
      const b0 = head(mem).allocBulkCalls;
      // One entry: served without touching the slab.
      assert.equal(napiSkbCacheGet(cpu, true), a);
      assert.equal(head(mem).allocBulkCalls, b0);
      assert.equal(cpu.skbCount, 0);
      // Empty: now it refills.
      const s = napiSkbCacheGet(cpu, true);
      assert.notEqual(s, 0);
      assert.equal(head(mem).allocBulkCalls, b0 + 1);
      assert.equal(cpu.skbCount, P.bulk - 1);
      // With BULK-1 left, many gets do not refill until empty.
      const got = [s];
      for (let i = 0; i < P.bulk - 1; i++) got.push(napiSkbCacheGet(cpu, true));
      assert.equal(head(mem).allocBulkCalls, b0 + 1);
      assert.equal(cpu.skbCount, 0);
      napiSkbCachePut(cpu, a);
      for (const g of got) napiSkbCachePut(cpu, g);
      teardownNoLeak(mem, [cpu]);
    });

    test("§1.3 (6.19 alloc argument): a consume-only get on an empty stack returns 0 at once, no slab call", () => {
      const mem = mkMem();
      const cpu = mkCpu(mem, P);
      assert.equal(napiSkbCacheGet(cpu, false), 0);
      const i = head(mem);
      assert.equal(i.allocBulkCalls + i.allocs, 0);
      assert.equal(stat(cpu, "getFail"), 1);
      assert.equal(stat(cpu, "slabCalls"), 0);
      const [a] = slabShells(mem, 1) as [number];
      napiSkbCachePut(cpu, a);
      assert.equal(napiSkbCacheGet(cpu, false), a, "a non-empty stack still serves");
      assert.equal(napiSkbCacheGet(cpu, false), 0);
      assert.equal(head(mem).allocBulkCalls, 0);
      kmemCacheFree(mem.headCache, a);
      // napi_consume_skb(NULL, budget) is a no-op (6.19 checks it explicitly).
      napiConsumeSkb(cpu, 0, 64);
      napiConsumeSkb(cpu, 0, 0);
      assert.equal(stat(cpu, "puts"), 1);
      teardownNoLeak(mem, [cpu]);
    });

    test("§1.1: LIFO — the last shell put is the next one taken", () => {
      const mem = mkMem();
      const cpu = mkCpu(mem, P);
      const [a, b, c] = slabShells(mem, 3) as [number, number, number];
      napiSkbCachePut(cpu, a);
      napiSkbCachePut(cpu, b);
      napiSkbCachePut(cpu, c);
      assert.deepEqual(cacheOf(cpu), [a, b, c]);
      assert.equal(napiSkbCacheGet(cpu, true), c);
      napiSkbCachePut(cpu, c);
      assert.equal(napiSkbCacheGet(cpu, true), c);
      assert.equal(napiSkbCacheGet(cpu, true), b);
      assert.equal(napiSkbCacheGet(cpu, true), a);
      // Through the public paths: the consumed skb's shell is the next build's.
      const x = build(cpu);
      const y = build(cpu);
      napiConsumeSkb(cpu, x, 64);
      napiConsumeSkb(cpu, y, 64);
      assert.equal(build(cpu), y);
      const z = build(cpu);
      assert.equal(z, x);
      kfreeSkb(cpu, y);
      kfreeSkb(cpu, z);
      for (const s of [a, b, c]) kmemCacheFree(mem.headCache, s);
      teardownNoLeak(mem, [cpu]);
    });

    test(`§1.4/§9.3: the push that makes count == ${P.size} bulk-frees the TOP ${P.flush} (indices ${P.keep}..${P.size - 1}) in one call`, () => {
      const mem = mkMem({ debug: true });
      const cpu = mkCpu(mem, P);
      const h = slabShells(mem, P.size);
      const before = head(mem);
      for (let i = 0; i < P.size - 1; i++) napiSkbCachePut(cpu, h[i] as number);
      assert.equal(cpu.skbCount, P.size - 1);
      assert.equal(head(mem).freeBulkCalls, before.freeBulkCalls, "no flush before full");
      napiSkbCachePut(cpu, h[P.size - 1] as number);
      const after = head(mem);
      assert.equal(after.freeBulkCalls - before.freeBulkCalls, 1, "exactly one bulk free");
      assert.equal(after.freeBulkObjs - before.freeBulkObjs, P.flush);
      assert.equal(after.frees - before.frees, 0, "no single frees");
      assert.equal(before.activeObjs - after.activeObjs, P.flush);
      assert.equal(cpu.skbCount, P.keep);
      // The OLDER bottom part stays, in order...
      assert.deepEqual(cacheOf(cpu), h.slice(0, P.keep));
      // ...and the most recently pushed ones went back to the slab.
      for (let i = 0; i < P.size; i++) {
        const want = i < P.keep ? OBJ_CACHED : OBJ_FREE;
        assert.equal(kmemCacheObjState(mem.headCache, h[i] as number), want, `shell #${i} ${hex(h[i] as number)}`);
      }
      // The slab hands exactly those back next.
      const back = new Uint32Array(P.flush);
      assert.equal(kmemCacheAllocBulk(mem.headCache, P.flush, back, 0), P.flush);
      assert.deepEqual(Array.from(back).sort((x, y) => x - y), h.slice(P.keep).sort((x, y) => x - y));
      assert.equal(stat(cpu, "flushes"), 1);
      assert.equal(stat(cpu, "flushedObjs"), P.flush);
      assert.equal(stat(cpu, "puts"), P.size);
      // A second fill: again exactly one flush, again back to keep.
      for (let i = 0; i < P.flush - 1; i++) napiSkbCachePut(cpu, back[i] as number);
      assert.equal(cpu.skbCount, P.size - 1);
      assert.equal(head(mem).freeBulkCalls, after.freeBulkCalls);
      napiSkbCachePut(cpu, back[P.flush - 1] as number);
      assert.equal(cpu.skbCount, P.keep);
      assert.equal(head(mem).freeBulkCalls, after.freeBulkCalls + 1);
      assert.deepEqual(cacheOf(cpu), h.slice(0, P.keep));
      assert.equal(stat(cpu, "flushes"), 2);
      assert.equal(stat(cpu, "flushedObjs"), 2 * P.flush);
      teardownNoLeak(mem, [cpu]);
    });

    test("§1.4: napiConsumeSkb of SIZE built skbs flushes through the public path too", () => {
      const mem = mkMem();
      const cpu = mkCpu(mem, P);
      const skbs: number[] = [];
      for (let i = 0; i < P.size; i++) skbs.push(build(cpu));
      // SIZE builds from a fresh CPU: SIZE/BULK refills, stack empty.
      assert.equal(cpu.skbCount, 0);
      assert.equal(head(mem).allocBulkCalls, P.size / P.bulk);
      const fb = head(mem).freeBulkCalls;
      for (const s of skbs) napiConsumeSkb(cpu, s, 64);
      assert.equal(head(mem).freeBulkCalls, fb + 1);
      assert.equal(cpu.skbCount, P.keep);
      assert.deepEqual(cacheOf(cpu), skbs.slice(0, P.keep));
      assert.equal(head(mem).activeObjs, P.keep);
      teardownNoLeak(mem, [cpu]);
    });

    test("§1.3/§9.1: a short refill (partial bulk mode) is accepted as-is", () => {
      const mem = mkMem({ bulkMode: "partial", heads: 5 });
      const cpu = mkCpu(mem, P);
      const skbs = [build(cpu)];
      const i1 = head(mem);
      assert.equal(i1.allocBulkCalls, 1);
      assert.equal(i1.allocBulkObjs, 5);
      assert.equal(i1.bulkShort, 1);
      assert.equal(i1.allocs, 0);
      assert.equal(cpu.skbCount, 4);
      assert.equal(stat(cpu, "refillObjs"), 5);
      for (let i = 0; i < 4; i++) skbs.push(build(cpu));
      assert.equal(cpu.skbCount, 0);
      assert.equal(head(mem).allocBulkCalls, 1);
      // Slab is empty now: the next build fails, no fallback.
      const d = frag(cpu);
      assert.equal(napiBuildSkb(cpu, d, FRAG_SZ), 0);
      pageFragFree(cpu.fragPages, d);
      assert.equal(head(mem).allocBulkCalls, 2);
      assert.equal(head(mem).allocs, 0);
      // Give 2 back to the slab: a later refill takes exactly those 2.
      kfreeSkb(cpu, skbs.pop() as number);
      kfreeSkb(cpu, skbs.pop() as number);
      skbs.push(build(cpu));
      assert.equal(head(mem).allocBulkObjs, 7);
      assert.equal(cpu.skbCount, 1);
      for (const s of skbs) kfreeSkb(cpu, s);
      teardownNoLeak(mem, [cpu]);
    });

    test("§1.3 step 3: slab cannot serve the bulk -> get returns 0, napiBuildSkb / allocSkb(NAPI) return 0, no single-object fallback", () => {
      // all-or-nothing (SLUB) mode with BULK-1 free objects: the refill fails although the slab is not empty.
      const mem = mkMem({ heads: 4 * P.bulk });
      const cpu = mkCpu(mem, P);
      const taken = leaveFree(mem, P.bulk - 1);
      const b = head(mem);
      assert.equal(b.activeObjs, 4 * P.bulk - (P.bulk - 1));
      assert.equal(napiSkbCacheGet(cpu, true), 0);
      const d = frag(cpu);
      const page = virtToHeadPage(cpu.fragPages, d);
      const ref = pageRefCount(cpu.fragPages, page);
      assert.equal(napiBuildSkb(cpu, d, FRAG_SZ), 0);
      // data is still the caller's: untouched.
      assert.equal(pageRefCount(cpu.fragPages, page), ref);
      const km = mmSlabInfo(mem.mm).filter((i) => i.name.startsWith("kmalloc-") || i.name === "skbuff_small_head");
      const kmAllocs = km.reduce((a, i) => a + i.allocs, 0);
      assert.equal(allocSkb(cpu, 100, SKB_ALLOC_NAPI), 0);
      assert.equal(napiAllocSkb(cpu, { dev: 1, napiId: 1, skb: 0 }, 100), 0);
      const a = head(mem);
      assert.equal(a.allocs, b.allocs, "no single-object fallback");
      assert.equal(a.allocBulkCalls - b.allocBulkCalls, 4, "one bulk attempt per call");
      assert.equal(a.allocBulkObjs, b.allocBulkObjs);
      assert.equal(a.activeObjs, b.activeObjs);
      const kmAfter = mmSlabInfo(mem.mm)
        .filter((i) => i.name.startsWith("kmalloc-") || i.name === "skbuff_small_head")
        .reduce((x, i) => x + i.allocs, 0);
      assert.equal(kmAfter, kmAllocs, "no data buffer allocated when the head failed");
      assert.equal(cpu.skbCount, 0);
      assert.equal(stat(cpu, "gets"), 4);
      assert.equal(stat(cpu, "getFail"), 4);
      assert.equal(stat(cpu, "refills"), 4);
      assert.equal(stat(cpu, "refillObjs"), 0);
      // Partial mode with an empty slab: also 0.
      const mem2 = mkMem({ heads: 8, bulkMode: "partial" });
      const cpu2 = mkCpu(mem2, P);
      const all = drainSlab(mem2);
      assert.equal(napiSkbCacheGet(cpu2, true), 0);
      assert.equal(head(mem2).allocs, 8);
      for (const s of all) kmemCacheFree(mem2.headCache, s);
      pageFragFree(cpu.fragPages, d);
      for (const s of taken) kmemCacheFree(mem.headCache, s);
      teardownNoLeak(mem, [cpu]);
      teardownNoLeak(mem2, [cpu2]);
    });

    test("§1.3/§9.4: napiSkbCacheGet returns the shell NOT zeroed; napiBuildSkb zeroes exactly up to tail", () => {
      const mem = mkMem();
      const cpu = mkCpu(mem, P, 3);
      const [s] = slabShells(mem, 1) as [number];
      cpu.u8.fill(0xa5, s, s + SKB_HEAD_OBJ_SIZE);
      napiSkbCachePut(cpu, s);
      assert.equal(napiSkbCacheGet(cpu, true), s);
      for (let i = 0; i < SKB_HEAD_OBJ_SIZE; i++) assert.equal(cpu.u8[s + i], 0xa5, `byte +${i} was touched by the cache`);
      napiSkbCachePut(cpu, s);
      const skb = build(cpu);
      assert.equal(skb, s);
      // Fields __build_skb_around sets inside the zeroed area.
      const set = new Map<number, number>([
        [SKB_MAC_HEADER, 0xff],
        [SKB_MAC_HEADER + 1, 0xff],
        [SKB_TRANSPORT_HEADER, 0xff],
        [SKB_TRANSPORT_HEADER + 1, 0xff],
        [SKB_ALLOC_CPU, 3],
        [SKB_FLAGS, SKBF_HEAD_FRAG],
      ]);
      for (let i = 0; i < SKB_TAIL; i++) {
        assert.equal(cpu.u8[s + i], set.get(i) ?? 0, `byte +${i} below tail not cleared`);
      }
      assert.equal(cpu.u16[(s + SKB_NETWORK_HEADER) >>> 1], 0);
      assert.equal(cpu.u16[(s + SKB_VLAN_TCI) >>> 1], 0);
      assert.equal(skbFclone(cpu, s), 0, "a head from the cache is SKB_FCLONE_UNAVAILABLE");
      assert.equal(cpu.u8[s + SKB_FLAGS], SKBF_HEAD_FRAG);
      // Beyond `extensions` (172..191): only tail..end of the struct is set by the builder; padding untouched.
      for (let i = 172; i < SKB_HEAD_OBJ_SIZE; i++) assert.equal(cpu.u8[s + i], 0xa5, `byte +${i} above tail was cleared`);
      kfreeSkb(cpu, skb);
      teardownNoLeak(mem, [cpu]);
    });

    describe("§1.5 napiSkbCacheGetBulk", () => {
      test("served from the cache: zeroed shells, the top n in ascending index order, no slab call", () => {
        const mem = mkMem();
        const cpu = mkCpu(mem, P);
        const h = slabShells(mem, 6);
        for (const s of h) {
          cpu.u8.fill(0x5a, s, s + SKB_HEAD_OBJ_SIZE);
          napiSkbCachePut(cpu, s);
        }
        const b = head(mem);
        const out = new Uint32Array(8);
        assert.equal(napiSkbCacheGetBulk(cpu, out, 1, 4), 4);
        assert.deepEqual(Array.from(out.subarray(1, 5)), h.slice(2, 6));
        assert.equal(out[0], 0);
        assert.equal(out[5], 0);
        assert.deepEqual(cacheOf(cpu), h.slice(0, 2));
        const a = head(mem);
        assert.equal(a.allocBulkCalls, b.allocBulkCalls);
        assert.equal(a.allocs, b.allocs);
        for (let k = 1; k < 5; k++) {
          const s = out[k] as number;
          for (let i = 0; i < SKB_TAIL; i++) assert.equal(cpu.u8[s + i], 0, `shell ${k} byte +${i}`);
        }
        assert.equal(stat(cpu, "bulkGets"), 4);
        assert.equal(stat(cpu, "bulkDirect"), 0);
        assert.equal(stat(cpu, "refills"), 0);
        // Exactly count == n: still no slab call, stack empties.
        assert.equal(napiSkbCacheGetBulk(cpu, out, 0, 2), 2);
        assert.deepEqual(Array.from(out.subarray(0, 2)), h.slice(0, 2));
        assert.equal(head(mem).allocBulkCalls, b.allocBulkCalls);
        assert.equal(cpu.skbCount, 0);
        for (const s of h) kmemCacheFree(mem.headCache, s);
        teardownNoLeak(mem, [cpu]);
      });

      test("short: refills min(SIZE - count, BULK) first, then hands out the top n", () => {
        const mem = mkMem();
        const cpu = mkCpu(mem, P);
        const h = slabShells(mem, 3);
        for (const s of h) napiSkbCachePut(cpu, s);
        const b = head(mem);
        const out = new Uint32Array(8);
        assert.equal(napiSkbCacheGetBulk(cpu, out, 0, 8), 8);
        const a = head(mem);
        assert.equal(a.allocBulkCalls - b.allocBulkCalls, 1);
        assert.equal(a.allocBulkObjs - b.allocBulkObjs, P.bulk, "refill of min(SIZE-3, BULK) = BULK");
        assert.equal(cpu.skbCount, 3 + P.bulk - 8);
        // The raw stack still shows the refill: out = stack[count .. count+7].
        const stack = Array.from(cpu.skbCache.subarray(0, 3 + P.bulk));
        assert.deepEqual(stack.slice(0, 3), h);
        assert.deepEqual(Array.from(out), stack.slice(3 + P.bulk - 8));
        for (const s of out) for (let i = 0; i < SKB_TAIL; i++) assert.equal(cpu.u8[s + i], 0);
        assert.equal(stat(cpu, "refills"), 1);
        assert.equal(stat(cpu, "refillObjs"), P.bulk);
        assert.equal(stat(cpu, "bulkDirect"), 0);
        for (const s of out) kmemCacheFree(mem.headCache, s);
        teardownNoLeak(mem, [cpu]);
      });

      test("near full: the refill asks only for SIZE - count", () => {
        const mem = mkMem();
        const cpu = mkCpu(mem, P);
        const fill = P.size - 4;
        const h = slabShells(mem, fill);
        for (const s of h) napiSkbCachePut(cpu, s);
        assert.equal(cpu.skbCount, fill);
        const b = head(mem);
        const out = new Uint32Array(P.size);
        const n = fill + 2;
        assert.equal(napiSkbCacheGetBulk(cpu, out, 0, n), n);
        const a = head(mem);
        assert.equal(a.allocBulkObjs - b.allocBulkObjs, 4, "refill capped at SIZE - count");
        assert.equal(a.allocBulkCalls - b.allocBulkCalls, 1);
        assert.equal(cpu.skbCount, P.size - n);
        assert.deepEqual(Array.from(out.subarray(0, fill - (P.size - n))), h.slice(P.size - n));
        for (const s of out.subarray(0, n)) kmemCacheFree(mem.headCache, s);
        teardownNoLeak(mem, [cpu]);
      });

      test("still short after the refill: the rest is bulk-allocated DIRECTLY, zeroed, after the cached ones", () => {
        const mem = mkMem({ debug: false });
        const cpu = mkCpu(mem, P);
        // Dirty some free slab objects so a zeroed result is meaningful.
        const dirt = slabShells(mem, 3 * P.bulk);
        for (const s of dirt) cpu.u8.fill(0xee, s, s + SKB_HEAD_OBJ_SIZE);
        for (const s of dirt.reverse()) kmemCacheFree(mem.headCache, s);
        const [c0] = slabShells(mem, 1) as [number];
        napiSkbCachePut(cpu, c0);
        const n = P.bulk + 5;
        const b = head(mem);
        const out = new Uint32Array(n);
        assert.equal(napiSkbCacheGetBulk(cpu, out, 0, n), n);
        const a = head(mem);
        assert.equal(a.allocBulkCalls - b.allocBulkCalls, 2, "one refill + one direct bulk");
        assert.equal(a.allocBulkObjs - b.allocBulkObjs, P.bulk + 4);
        assert.equal(cpu.skbCount, 0);
        const stack = Array.from(cpu.skbCache.subarray(0, 1 + P.bulk));
        assert.equal(stack[0], c0);
        // Cached first (ascending index order), then the 4 direct ones.
        assert.deepEqual(Array.from(out.subarray(0, 1 + P.bulk)), stack);
        const direct = Array.from(out.subarray(1 + P.bulk));
        assert.equal(direct.length, 4);
        for (const s of direct) {
          assert.ok(!stack.includes(s));
          for (let i = 0; i < SKB_HEAD_OBJ_SIZE; i++) assert.equal(cpu.u8[s + i], 0, `direct shell ${hex(s)} byte +${i}`);
        }
        for (const s of out) for (let i = 0; i < SKB_TAIL; i++) assert.equal(cpu.u8[s + i], 0);
        assert.equal(new Set(out).size, n);
        assert.equal(stat(cpu, "bulkDirect"), 4);
        assert.equal(stat(cpu, "bulkGets"), n);
        for (const s of out) kmemCacheFree(mem.headCache, s);
        teardownNoLeak(mem, [cpu]);
      });

      test("partial return under memory pressure (all-or-nothing slab)", () => {
        const mem = mkMem({ heads: 4 * P.bulk });
        const cpu = mkCpu(mem, P);
        const h = slabShells(mem, 2);
        for (const s of h) napiSkbCachePut(cpu, s);
        // 10 free: the BULK refill fails, the direct 6 succeed -> full 8.
        const taken = leaveFree(mem, 10);
        const out = new Uint32Array(8);
        assert.equal(napiSkbCacheGetBulk(cpu, out, 0, 8), 8);
        assert.deepEqual(Array.from(out.subarray(0, 2)), h);
        assert.equal(head(mem).activeObjs, 4 * P.bulk - 4);
        assert.equal(cpu.skbCount, 0);
        // 3 free, 2 cached, n = 8: refill fails, direct 6 fails -> only the 2 cached.
        for (const s of out.subarray(2)) kmemCacheFree(mem.headCache, s);
        napiSkbCachePut(cpu, out[0] as number);
        napiSkbCachePut(cpu, out[1] as number);
        const more = leaveFree(mem, 3);
        const out2 = new Uint32Array(8);
        assert.equal(napiSkbCacheGetBulk(cpu, out2, 0, 8), 2);
        assert.deepEqual(Array.from(out2.subarray(0, 2)), h);
        assert.equal(out2[2], 0);
        assert.equal(cpu.skbCount, 0);
        // Nothing cached, nothing in the slab -> 0.
        kmemCacheFree(mem.headCache, out2[0] as number);
        kmemCacheFree(mem.headCache, out2[1] as number);
        const rest = leaveFree(mem, 0);
        assert.equal(napiSkbCacheGetBulk(cpu, out2, 0, 8), 0);
        for (const s of [...taken, ...more, ...rest]) kmemCacheFree(mem.headCache, s);
        teardownNoLeak(mem, [cpu]);
      });

      test("partial return under memory pressure (partial slab): refill short, direct short", () => {
        const mem = mkMem({ heads: 4 * P.bulk, bulkMode: "partial" });
        const cpu = mkCpu(mem, P);
        const h = slabShells(mem, 2);
        for (const s of h) napiSkbCachePut(cpu, s);
        const taken = leaveFree(mem, 3);
        const out = new Uint32Array(8);
        // refill gets 3 (count 5 < 8), direct gets 0 -> 5.
        assert.equal(napiSkbCacheGetBulk(cpu, out, 0, 8), 5);
        assert.equal(cpu.skbCount, 0);
        assert.deepEqual(Array.from(out.subarray(0, 2)), h);
        assert.equal(new Set(out.subarray(0, 5)).size, 5);
        assert.equal(stat(cpu, "refillObjs"), 3);
        assert.equal(stat(cpu, "bulkDirect"), 0);
        assert.equal(stat(cpu, "bulkGets"), 5);
        for (const s of [...taken, ...out.subarray(0, 5)]) kmemCacheFree(mem.headCache, s);
        teardownNoLeak(mem, [cpu]);
      });
    });

    describe("§4.2/§9.5 napiConsumeSkb", () => {
      test("budget 0, IRQs enabled: freed to the slab, the cache is not touched", () => {
        const mem = mkMem();
        const cpu = mkCpu(mem, P);
        const skb = build(cpu);
        const count = cpu.skbCount;
        const b = head(mem);
        napiConsumeSkb(cpu, skb, 0);
        const a = head(mem);
        assert.equal(a.frees - b.frees, 1);
        assert.equal(cpu.skbCount, count);
        assert.ok(!cacheOf(cpu).includes(skb));
        assert.equal(stat(cpu, "puts"), 0);
        assert.equal(cpu.completionQueue, 0);
        teardownNoLeak(mem, [cpu]);
      });

      test("budget 0, IRQs disabled (netpoll): completion queue, then netTxAction puts it in the cache", () => {
        const mem = mkMem();
        const cpu = mkCpu(mem, P);
        const s1 = build(cpu);
        const s2 = build(cpu);
        const count = cpu.skbCount;
        const b = head(mem);
        cpu.irqsDisabled = true;
        napiConsumeSkb(cpu, s1, 0);
        napiConsumeSkb(cpu, s2, 0);
        cpu.irqsDisabled = false;
        assert.equal(cpu.skbCount, count, "not cached directly");
        assert.equal(head(mem).frees, b.frees, "not freed to the slab either");
        assert.notEqual(cpu.completionQueue, 0);
        assert.equal(netTxAction(cpu), 2);
        assert.equal(cpu.completionQueue, 0);
        assert.equal(cpu.skbCount, count + 2);
        // Queue is LIFO (pushed at its head): s2 is put first, s1 ends on top.
        assert.deepEqual(cacheOf(cpu).slice(-2), [s2, s1]);
        assert.equal(head(mem).frees, b.frees);
        assert.equal(stat(cpu, "txCompleted"), 2);
        teardownNoLeak(mem, [cpu]);
      });

      test("budget > 0: released and cached; shared skbs only lose a reference", () => {
        const mem = mkMem();
        const cpu = mkCpu(mem, P);
        const skb = build(cpu);
        skbGet(cpu, skb);
        const count = cpu.skbCount;
        napiConsumeSkb(cpu, skb, 64);
        assert.equal(skbUsers(cpu, skb), 1);
        assert.equal(cpu.skbCount, count);
        skbGet(cpu, skb);
        napiConsumeSkb(cpu, skb, 0);
        assert.equal(skbUsers(cpu, skb), 1);
        cpu.irqsDisabled = true;
        skbGet(cpu, skb);
        napiConsumeSkb(cpu, skb, 0);
        cpu.irqsDisabled = false;
        assert.equal(cpu.completionQueue, 0);
        assert.equal(skbUsers(cpu, skb), 1);
        assert.equal(cpu.skbCount, count);
        napiConsumeSkb(cpu, skb, 64);
        assert.equal(cpu.skbCount, count + 1);
        assert.equal(cpu.skbCache[count], skb);
        teardownNoLeak(mem, [cpu]);
      });

      test("fast-clone skbs never enter the cache (direct, companion, and via the completion queue)", () => {
        const mem = mkMem();
        const cpu = mkCpu(mem, P);
        const fc = mem.fcloneCache;
        const count = cpu.skbCount;
        const o = allocSkb(cpu, 200, SKB_ALLOC_FCLONE);
        assert.notEqual(o, 0);
        assert.equal(skbFclone(cpu, o), SKB_FCLONE_ORIG);
        assert.equal(kmemCacheInfo(fc).activeObjs, 1);
        const c = skbClone(cpu, o);
        assert.equal(skbFclone(cpu, c), SKB_FCLONE_CLONE);
        assert.equal(skbDataref(cpu, o), 2);
        napiConsumeSkb(cpu, c, 64);
        assert.equal(cpu.skbCount, count);
        assert.equal(kmemCacheInfo(fc).activeObjs, 1);
        napiConsumeSkb(cpu, o, 64);
        assert.equal(cpu.skbCount, count);
        assert.equal(kmemCacheInfo(fc).activeObjs, 0);
        assert.equal(stat(cpu, "puts"), 0);
        // Through the completion queue.
        const o2 = allocSkb(cpu, 200, SKB_ALLOC_FCLONE | SKB_ALLOC_NAPI);
        assert.equal(skbFclone(cpu, o2), SKB_FCLONE_ORIG, "FCLONE wins over NAPI");
        cpu.irqsDisabled = true;
        napiConsumeSkb(cpu, o2, 0);
        cpu.irqsDisabled = false;
        assert.equal(netTxAction(cpu), 1);
        assert.equal(cpu.skbCount, count);
        assert.equal(kmemCacheInfo(fc).activeObjs, 0);
        assert.equal(stat(cpu, "puts"), 0);
        assert.equal(head(mem).activeObjs, 0, "fclones never touched the head cache");
        teardownNoLeak(mem, [cpu]);
      });

      test("a plain (slab) clone is a head shell: freed with budget it is cached; data follows dataref", () => {
        const mem = mkMem();
        const cpu = mkCpu(mem, P);
        const skb = build(cpu);
        const page = virtToHeadPage(cpu.fragPages, skbHeadPtr(cpu, skb));
        const allocs = head(mem).allocs;
        const c = skbClone(cpu, skb);
        assert.equal(head(mem).allocs, allocs + 1, "clones come from the slab, not the cache");
        assert.equal(skbDataref(cpu, skb), 2);
        const count = cpu.skbCount;
        const ref = pageRefCount(cpu.fragPages, page);
        napiConsumeSkb(cpu, skb, 64);
        assert.equal(cpu.skbCount, count + 1);
        assert.equal(skbDataref(cpu, c), 1);
        assert.equal(pageRefCount(cpu.fragPages, page), ref, "data still used by the clone");
        napiConsumeSkb(cpu, c, 64);
        assert.equal(cpu.skbCount, count + 2);
        assert.deepEqual(cacheOf(cpu).slice(-2), [skb, c]);
        assert.equal(pageRefCount(cpu.fragPages, page), ref - 1);
        teardownNoLeak(mem, [cpu]);
      });
    });

    describe("§3.2/§9.6 allocSkb and the cache", () => {
      test("SKB_ALLOC_NAPI takes a cached shell (refill allowed); without it 5.12 uses the slab, 6.19 pops a cached shell (consume only)", () => {
        const mem = mkMem();
        const cpu = mkCpu(mem, P);
        const a = allocSkb(cpu, 100, SKB_ALLOC_NAPI);
        assert.notEqual(a, 0);
        assert.equal(head(mem).allocBulkCalls, 1);
        assert.equal(cpu.skbCount, P.bulk - 1);
        const top = cpu.skbCache[P.bulk - 2] as number;
        const b0 = head(mem);
        const plain = allocSkb(cpu, 100, 0);
        assert.notEqual(plain, 0);
        const b1 = head(mem);
        if (P.name === "5.12") {
          assert.equal(b1.allocs - b0.allocs, 1, "5.12: slab");
          assert.equal(cpu.skbCount, P.bulk - 1);
          assert.notEqual(plain, top);
        } else {
          assert.equal(b1.allocs - b0.allocs, 0, "6.19: cached shell first");
          assert.equal(plain, top);
          assert.equal(cpu.skbCount, P.bulk - 2);
        }
        // RX flag alone behaves like 0.
        const rx = allocSkb(cpu, 100, SKB_ALLOC_RX);
        assert.notEqual(rx, 0);
        assert.equal(head(mem).allocs - b1.allocs, P.name === "5.12" ? 1 : 0);
        assert.equal(head(mem).allocBulkCalls, 1);
        for (const s of [a, plain, rx]) kfreeSkb(cpu, s);
        teardownNoLeak(mem, [cpu]);
      });

      test("without SKB_ALLOC_NAPI the cache is never refilled (6.19: empty -> slab single alloc)", () => {
        const mem = mkMem();
        const cpu = mkCpu(mem, P);
        const skbs: number[] = [];
        for (let i = 0; i < 5; i++) skbs.push(allocSkb(cpu, 64, 0));
        const i1 = head(mem);
        assert.equal(i1.allocBulkCalls, 0);
        assert.equal(i1.allocs, 5);
        assert.equal(cpu.skbCount, 0);
        if (P.name === "6.19") {
          assert.equal(stat(cpu, "gets"), 5);
          assert.equal(stat(cpu, "getFail"), 5);
          assert.equal(stat(cpu, "refills"), 0);
        } else {
          assert.equal(stat(cpu, "gets"), 0);
        }
        for (const s of skbs) kfreeSkb(cpu, s);
        teardownNoLeak(mem, [cpu]);
      });

      test("6.19 consume-only pop is skipped with IRQs disabled; node other than local always uses the slab (§9.9)", () => {
        const mem = mkMem();
        const cpu = mkCpu(mem, P);
        const [c1, c2] = slabShells(mem, 2) as [number, number];
        napiSkbCachePut(cpu, c1);
        napiSkbCachePut(cpu, c2);
        cpu.irqsDisabled = true;
        const x = allocSkb(cpu, 64, 0);
        cpu.irqsDisabled = false;
        assert.notEqual(x, c2);
        assert.equal(cpu.skbCount, 2);
        // Remote node: slab, even with SKB_ALLOC_NAPI.
        const y = allocSkb(cpu, 64, SKB_ALLOC_NAPI, 1);
        const z = allocSkb(cpu, 64, 0, 1);
        assert.equal(cpu.skbCount, 2);
        assert.ok(![y, z].includes(c2));
        // Explicit local node 0 and NUMA_NO_NODE: the cache.
        const l0 = allocSkb(cpu, 64, SKB_ALLOC_NAPI, 0);
        const l1 = allocSkb(cpu, 64, SKB_ALLOC_NAPI, NUMA_NO_NODE);
        assert.deepEqual([l0, l1], [c2, c1]);
        assert.equal(head(mem).allocBulkCalls, 0);
        for (const s of [x, y, z, l0, l1]) kfreeSkb(cpu, s);
        teardownNoLeak(mem, [cpu]);
      });

      test("§9.7: a cached head whose data allocation fails goes back to the SLAB, not the cache", () => {
        const mem = mkMem({ kmalloc: new Array(11).fill(1), smallHeads: 1 });
        const cpu = mkCpu(mem, P);
        const ok = allocSkb(cpu, 1000, SKB_ALLOC_NAPI);
        assert.notEqual(ok, 0);
        assert.equal(cpu.skbCount, P.bulk - 1);
        const victim = cpu.skbCache[P.bulk - 2] as number;
        const b = head(mem);
        assert.equal(allocSkb(cpu, 1000, SKB_ALLOC_NAPI), 0, "kmalloc-2048 exhausted");
        const a = head(mem);
        assert.equal(cpu.skbCount, P.bulk - 2, "the popped shell is not pushed back");
        assert.ok(!cacheOf(cpu).includes(victim));
        assert.equal(a.frees - b.frees, 1, "one single free to the slab");
        assert.equal(a.activeObjs, b.activeObjs - 1);
        assert.equal(stat(cpu, "puts"), 0);
        // The slab's LIFO hands that very shell out next.
        const again = kmemCacheAlloc(mem.headCache);
        assert.equal(again, victim);
        kmemCacheFree(mem.headCache, again);
        if (P.name === "6.19") {
          // Consume-only pop, then data failure: also back to the slab.
          const v2 = cpu.skbCache[cpu.skbCount - 1] as number;
          const f0 = head(mem).frees;
          assert.equal(allocSkb(cpu, 1000, 0), 0);
          assert.equal(cpu.skbCount, P.bulk - 3);
          assert.equal(head(mem).frees, f0 + 1);
          assert.equal(kmemCacheAlloc(mem.headCache), v2);
          kmemCacheFree(mem.headCache, v2);
        }
        // The napiAllocSkb small-length (kmalloc / small-head) path too: exhaust its class first.
        const hog = P.name === "5.12" ? kmalloc(mem.kmalloc, 512) : kmemCacheAlloc(mem.smallHeadCache);
        assert.notEqual(hog, 0);
        const c0 = cpu.skbCount;
        const top = cpu.skbCache[c0 - 1] as number;
        const f1 = head(mem).frees;
        assert.equal(napiAllocSkb(cpu, { dev: 1, napiId: 1, skb: 0 }, 100), 0);
        assert.equal(cpu.skbCount, c0 - 1);
        assert.equal(head(mem).frees, f1 + 1);
        assert.equal(kmemCacheAlloc(mem.headCache), top);
        kmemCacheFree(mem.headCache, top);
        if (P.name === "5.12") kfree(mem.mm, hog);
        else kmemCacheFree(mem.smallHeadCache, hog);
        kfreeSkb(cpu, ok);
        teardownNoLeak(mem, [cpu]);
      });

      test("§9.11: napiAllocSkb / napiGetFrags small lengths: kmalloc head (head_frag 0), shell from the cache", () => {
        const mem = mkMem();
        const cpu = mkCpu(mem, P);
        const napi = { dev: 7, napiId: 9, skb: 0 };
        const s = napiAllocSkb(cpu, napi, 100);
        assert.notEqual(s, 0);
        assert.equal(cpu.skbCount, P.bulk - 1);
        assert.equal(head(mem).allocs, 0);
        assert.equal(cpu.u8[s + SKB_FLAGS] & SKBF_HEAD_FRAG, 0);
        const owner = mem.mm.cachesById[mem.mm.pageOwner[skbHeadPtr(cpu, s) >>> 12] as number];
        assert.equal(owner?.name, P.name === "5.12" ? "kmalloc-512" : "skbuff_small_head");
        const g = napiGetFrags(cpu, napi);
        assert.equal(napi.skb, g);
        assert.equal(cpu.skbCount, P.bulk - 2);
        assert.equal(cpu.u8[g + SKB_FLAGS] & SKBF_HEAD_FRAG, 0);
        assert.equal(napiGetFrags(cpu, napi), g, "reused, no new shell");
        assert.equal(cpu.skbCount, P.bulk - 2);
        // A medium length: page-fragment head, shell still from the cache.
        const m = napiAllocSkb(cpu, napi, 1500);
        assert.equal(cpu.skbCount, P.bulk - 3);
        assert.equal(cpu.u8[m + SKB_FLAGS] & SKBF_HEAD_FRAG, SKBF_HEAD_FRAG);
        assert.equal(head(mem).allocs, 0);
        for (const x of [s, g, m]) napiConsumeSkb(cpu, x, 64);
        napi.skb = 0;
        assert.equal(cpu.skbCount, P.bulk);
        teardownNoLeak(mem, [cpu]);
      });
    });

    test("§9.8: GRO stolen head: the shell is cached, the data is not touched", () => {
      const mem = mkMem();
      const cpu = mkCpu(mem, P);
      const skb = build(cpu);
      const d = skbHeadPtr(cpu, skb);
      const pg = allocPage(mem.pages);
      skbAddRxFrag(cpu, skb, 0, pg, 0, 100, 4096);
      const page = virtToHeadPage(cpu.fragPages, d);
      const ref = pageRefCount(cpu.fragPages, page);
      const sh = skbShinfo(cpu, skb);
      cpu.u32[(skb + SKB_DST) >>> 2] = 0x1234;
      cpu.u32[(skb + SKB_EXTENSIONS) >>> 2] = 0x5678;
      const count = cpu.skbCount;
      const b = head(mem);
      napiSkbFreeStolenHead(cpu, skb);
      assert.equal(cpu.skbCount, count + 1);
      assert.equal(cpu.skbCache[count], skb);
      assert.equal(pageRefCount(cpu.fragPages, page), ref, "head page untouched");
      assert.equal(pageRefCount(mem.pages, pg), 1, "frag page untouched");
      assert.equal(cpu.i32[(sh + SHINFO_DATAREF) >>> 2], 1);
      assert.equal(head(mem).frees, b.frees);
      if (P.name === "5.12") {
        assert.equal(cpu.u32[(skb + SKB_DST) >>> 2], 0, "5.12: dst dropped");
        assert.equal(cpu.u32[(skb + SKB_EXTENSIONS) >>> 2], 0, "5.12: extensions dropped");
      }
      if (P.name === "6.19") {
        assert.equal(cpu.u32[(skb + SKB_DST) >>> 2], 0x1234, "6.19 without slow_gro: dst left alone");
      }
      // The merged-into skb owns the data now; release it as it would.
      pageFragFree(cpu.fragPages, d);
      pageFragFree(mem.pages, pg);
      // Non-stolen merged-free (receive path): fully released, then cached.
      const s2 = build(cpu);
      const page2 = virtToHeadPage(cpu.fragPages, skbHeadPtr(cpu, s2));
      const r2 = pageRefCount(cpu.fragPages, page2);
      const c2 = cpu.skbCount;
      __napiKfreeSkb(cpu, s2);
      assert.equal(cpu.skbCount, c2 + 1);
      assert.equal(cpu.skbCache[c2], s2);
      assert.equal(pageRefCount(cpu.fragPages, page2), r2 - 1);
      // Non-stolen merged-free on the frags path: recycled as napi->skb, not cached
      // (napi_reuse_skb; the whole napiGroFrags flow is in test/core/gro-frags.test.ts).
      const napi = { dev: 1, napiId: 1, skb: 0 };
      const f = napiGetFrags(cpu, napi);
      napi.skb = 0; // napi_gro_frags detached it
      const c3 = cpu.skbCount;
      const puts3 = napiCacheStats(cpu).puts;
      napiReuseSkb(cpu, napi, f);
      assert.equal(napi.skb, f, "frags path: napi->skb again");
      assert.equal(cpu.skbCount, c3, "frags path: not put into the cache");
      assert.equal(napiCacheStats(cpu).puts, puts3);
      napiConsumeSkb(cpu, f, 64);
      teardownNoLeak(mem, [cpu]);
    });

    test("§4.2: 6.19 stolen head with slow_gro runs the destructor once; 5.12 does not", () => {
      const mem = mkMem();
      const cpu = mkCpu(mem, P);
      let calls = 0;
      const id = skbRegisterDestructor(() => {
        calls++;
      });
      const skb = build(cpu);
      const d = skbHeadPtr(cpu, skb);
      cpu.u32[(skb + SKB_DESTRUCTOR) >>> 2] = id;
      cpu.u32[(skb + SKB_SK) >>> 2] = 0x40;
      cpu.u8[skb + SKB_FLAGS2] = SKBF2_SLOW_GRO;
      napiSkbFreeStolenHead(cpu, skb);
      assert.equal(calls, P.name === "6.19" ? 1 : 0);
      assert.equal(cpu.skbCache[cpu.skbCount - 1], skb);
      pageFragFree(cpu.fragPages, d);
      teardownNoLeak(mem, [cpu]);
    });

    test("§4.5/§9.10: no flush except on full — the cache persists across softirq-like work", () => {
      const mem = mkMem();
      const cpu = mkCpu(mem, P);
      const skbs: number[] = [];
      for (let i = 0; i < 10; i++) skbs.push(build(cpu));
      for (const s of skbs) napiConsumeSkb(cpu, s, 64);
      const snapshot = cacheOf(cpu);
      assert.equal(snapshot.length, P.bulk - 10 + 10);
      // An empty TX completion run, switching the cache off and on, and repeated
      // build/consume cycles do not drain or trim it.
      netTxAction(cpu);
      napiCacheSetEnabled(false);
      napiCacheSetEnabled(true);
      assert.deepEqual(cacheOf(cpu), snapshot);
      const fb = head(mem).freeBulkCalls;
      for (let round = 0; round < 1000; round++) {
        const s = build(cpu);
        napiConsumeSkb(cpu, s, 64);
      }
      assert.deepEqual(cacheOf(cpu), snapshot);
      assert.equal(head(mem).freeBulkCalls, fb);
      assert.equal(head(mem).allocBulkCalls, 1);
      assert.equal(stat(cpu, "flushes"), 0);
      teardownNoLeak(mem, [cpu]);
    });

    test("§9.9: no filtering of shells: a pfmemalloc-marked shell in the cache is handed out again", () => {
      const mem = mkMem();
      const cpu = mkCpu(mem, P);
      const skb = build(cpu);
      cpu.u8[skb + SKB_FLAGS] = (cpu.u8[skb + SKB_FLAGS] as number) | SKBF_PFMEMALLOC;
      napiConsumeSkb(cpu, skb, 64);
      const again = build(cpu);
      assert.equal(again, skb);
      assert.equal(cpu.u8[again + SKB_FLAGS] & SKBF_PFMEMALLOC, 0, "cleared by the builder's memset");
      kfreeSkb(cpu, again);
      teardownNoLeak(mem, [cpu]);
    });

    test("global switch off: napiBuildSkb takes ONE slab object, napiConsumeSkb frees to the slab; the cache is frozen", () => {
      const mem = mkMem();
      const cpu = mkCpu(mem, P);
      const kept = build(cpu); // cache now BULK-1
      const frozen = cacheOf(cpu);
      napiCacheSetEnabled(false);
      assert.equal(napiCacheIsEnabled(), false);
      const b = head(mem);
      const s = build(cpu);
      const a = head(mem);
      assert.equal(a.allocs - b.allocs, 1);
      assert.equal(a.allocBulkCalls, b.allocBulkCalls);
      assert.ok(!frozen.includes(s));
      napiConsumeSkb(cpu, s, 64);
      assert.equal(head(mem).frees - a.frees, 1);
      assert.deepEqual(cacheOf(cpu), frozen);
      // allocSkb(NAPI) too; and the 6.19 consume-only pop does not happen.
      const n = allocSkb(cpu, 64, SKB_ALLOC_NAPI);
      const p = allocSkb(cpu, 64, 0);
      assert.equal(head(mem).allocs - a.allocs, 2);
      assert.deepEqual(cacheOf(cpu), frozen);
      // getBulk: direct zeroed slab allocation.
      const out = new Uint32Array(4);
      assert.equal(napiSkbCacheGetBulk(cpu, out, 0, 4), 4);
      assert.deepEqual(cacheOf(cpu), frozen);
      for (const x of out) assert.ok(!frozen.includes(x));
      for (const x of out) kmemCacheFree(mem.headCache, x);
      // Completion queue → netTxAction: slab too.
      cpu.irqsDisabled = true;
      napiConsumeSkb(cpu, n, 0);
      cpu.irqsDisabled = false;
      const f = head(mem).frees;
      netTxAction(cpu);
      assert.equal(head(mem).frees, f + 1);
      assert.deepEqual(cacheOf(cpu), frozen);
      napiCacheSetEnabled(true);
      // Back on: the frozen cache serves again.
      const t = build(cpu);
      assert.equal(t, frozen[frozen.length - 1]);
      for (const x of [kept, p, t]) kfreeSkb(cpu, x);
      teardownNoLeak(mem, [cpu]);
    });

    test("counters are exact over a scripted sequence", () => {
      const mem = mkMem();
      const cpu = mkCpu(mem, P);
      const exp = { gets: 0, hits: 0, refills: 0, refillObjs: 0, fail: 0, puts: 0, flushes: 0, flushedObjs: 0, slab: 0 };
      const check = (where: string) => {
        assert.deepEqual(
          {
            gets: stat(cpu, "gets"),
            hits: stat(cpu, "hits"),
            refills: stat(cpu, "refills"),
            refillObjs: stat(cpu, "refillObjs"),
            fail: stat(cpu, "getFail"),
            puts: stat(cpu, "puts"),
            flushes: stat(cpu, "flushes"),
            flushedObjs: stat(cpu, "flushedObjs"),
            slab: stat(cpu, "slabCalls"),
          },
          exp,
          where,
        );
      };
      // 2*BULK + 3 builds: 3 refills.
      const live: number[] = [];
      for (let i = 0; i < 2 * P.bulk + 3; i++) live.push(build(cpu));
      Object.assign(exp, { gets: 2 * P.bulk + 3, hits: 2 * P.bulk + 3 - 3, refills: 3, refillObjs: 3 * P.bulk, slab: 3 });
      check("after builds");
      assert.equal(cpu.skbCount, P.bulk - 3);
      // Free them all with budget: count goes to BULK-3 + 2*BULK+3 = 3*BULK (< SIZE in both profiles).
      for (const s of live.splice(0)) napiConsumeSkb(cpu, s, 64);
      exp.puts += 2 * P.bulk + 3;
      check("after consumes");
      assert.equal(cpu.skbCount, 3 * P.bulk);
      // Fill it up to SIZE with slab shells: exactly one flush.
      for (const s of slabShells(mem, P.size - 3 * P.bulk)) napiSkbCachePut(cpu, s);
      exp.puts += P.size - 3 * P.bulk;
      exp.flushes++;
      exp.flushedObjs += P.flush;
      exp.slab++;
      check("after the flush");
      assert.equal(cpu.skbCount, P.keep);
      // Budget-0 frees don't count as puts.
      const x = build(cpu);
      exp.gets++;
      exp.hits++;
      napiConsumeSkb(cpu, x, 0);
      check("after budget-0 free");
      // Consume-only allocSkb on 6.19: a get, a hit.
      const y = allocSkb(cpu, 64, 0);
      if (P.name === "6.19") {
        exp.gets++;
        exp.hits++;
      }
      check("after allocSkb(0)");
      kfreeSkb(cpu, y);
      teardownNoLeak(mem, [cpu]);
    });

    test("§4.2/§9.12: 6.19 defers alien skbs to the allocating CPU, 5.12 caches them locally", () => {
      const mem = mkMem();
      const cpu0 = mkCpu(mem, P, 0);
      const cpu1 = mkCpu(mem, P, 1);
      let calls = 0;
      const id = skbRegisterDestructor(() => {
        calls++;
      });
      const deferred: [SkbCpu, number][] = [];
      skbSetDeferFree((c, s) => {
        deferred.push([c, s]);
      });
      const skb = build(cpu0);
      assert.equal(cpu0.u16[(skb + SKB_ALLOC_CPU) >>> 1], 0);
      cpu0.u32[(skb + SKB_DESTRUCTOR) >>> 2] = id;
      const c1 = cpu1.skbCount;
      napiConsumeSkb(cpu1, skb, 64);
      if (P.name === "6.19") {
        assert.equal(deferred.length, 1);
        assert.equal(deferred[0]?.[1], skb);
        assert.equal(cpu1.skbCount, c1, "not cached on the freeing CPU");
        assert.equal(stat(cpu1, "deferred"), 1);
        assert.equal(calls, 1, "head state released before deferral");
        // The owner drains with napi_consume_skb(skb, 1): into ITS cache.
        const c0 = cpu0.skbCount;
        napiConsumeSkb(cpu0, skb, 1);
        assert.equal(cpu0.skbCount, c0 + 1);
        assert.equal(cpu0.skbCache[c0], skb);
        assert.equal(calls, 1, "destructor ran exactly once");
      } else {
        assert.equal(deferred.length, 0);
        assert.equal(cpu1.skbCount, c1 + 1);
        assert.equal(cpu1.skbCache[c1], skb);
        assert.equal(calls, 1);
      }
      // Shared alien skb: only a reference is dropped, no deferral.
      const s2 = build(cpu0);
      skbGet(cpu0, s2);
      napiConsumeSkb(cpu1, s2, 64);
      assert.equal(skbUsers(cpu0, s2), 1);
      // Budget 0 with IRQs off on the alien CPU: no alien check, completion queue → cpu1's cache.
      const before = deferred.length;
      const c1b = cpu1.skbCount;
      cpu1.irqsDisabled = true;
      napiConsumeSkb(cpu1, s2, 0);
      cpu1.irqsDisabled = false;
      netTxAction(cpu1);
      assert.equal(deferred.length, before);
      assert.equal(cpu1.skbCount, c1b + 1);
      assert.equal(cpu1.skbCache[c1b], s2);
      // Without a deferral installed, 6.19 also caches locally.
      skbSetDeferFree(null);
      const s3 = build(cpu0);
      const c1c = cpu1.skbCount;
      napiConsumeSkb(cpu1, s3, 64);
      assert.equal(cpu1.skbCount, c1c + 1);
      teardownNoLeak(mem, [cpu0, cpu1]);
    });

    test("size overrides (cacheSize 8, bulk 2, flush 4) behave accordingly", () => {
      const mem = mkMem();
      const cpu = createSkbCpu(mem, 0, { profile: P.name, sizes: { cacheSize: 8, bulk: 2, flush: 4 } });
      assert.equal(cpu.cacheSize, 8);
      assert.equal(cpu.bulk, 2);
      assert.equal(cpu.keep, 4);
      const a = build(cpu);
      assert.equal(head(mem).allocBulkObjs, 2);
      assert.equal(cpu.skbCount, 1);
      const b = build(cpu);
      assert.equal(cpu.skbCount, 0);
      const c = build(cpu);
      assert.equal(head(mem).allocBulkCalls, 2);
      assert.equal(cpu.skbCount, 1);
      const h = slabShells(mem, 6);
      napiConsumeSkb(cpu, a, 64);
      napiConsumeSkb(cpu, b, 64);
      napiConsumeSkb(cpu, c, 64);
      assert.equal(cpu.skbCount, 4);
      for (let i = 0; i < 3; i++) napiSkbCachePut(cpu, h[i] as number);
      assert.equal(cpu.skbCount, 7);
      assert.equal(head(mem).freeBulkCalls, 0);
      const bottom = cacheOf(cpu).slice(0, 4);
      napiSkbCachePut(cpu, h[3] as number);
      assert.equal(cpu.skbCount, 4);
      assert.equal(head(mem).freeBulkCalls, 1);
      assert.equal(head(mem).freeBulkObjs, 4);
      assert.deepEqual(cacheOf(cpu), bottom);
      napiSkbCachePut(cpu, h[4] as number);
      napiSkbCachePut(cpu, h[5] as number);
      teardownNoLeak(mem, [cpu]);
    });

    test("debug mode: putting the same shell twice throws naming the skb, and it is not cached twice", () => {
      const mem = mkMem({ debug: true });
      const cpu = mkCpu(mem, P);
      const skb = build(cpu);
      napiConsumeSkb(cpu, skb, 64);
      const count = cpu.skbCount;
      assert.equal(kmemCacheObjState(mem.headCache, skb), OBJ_CACHED);
      assert.throws(
        () => napiSkbCachePut(cpu, skb),
        (e: unknown) => e instanceof Error && e.message.includes(hex(skb)) && /double free/.test(e.message),
      );
      assert.equal(cpu.skbCount, count);
      assert.equal(cacheOf(cpu).filter((x) => x === skb).length, 1);
      // A shell already back in the slab cannot be put either.
      const [s] = slabShells(mem, 1) as [number];
      kmemCacheFree(mem.headCache, s);
      assert.throws(() => napiSkbCachePut(cpu, s), (e: unknown) => e instanceof Error && e.message.includes(hex(s)));
      assert.equal(cpu.skbCount, count);
      // Freeing a cached shell to the slab is caught too.
      assert.throws(() => kmemCacheFree(mem.headCache, skb), /NAPI head cache/);
      // Popped shells are ALLOCATED again.
      const t = napiSkbCacheGet(cpu, true);
      assert.equal(t, skb);
      assert.equal(kmemCacheObjState(mem.headCache, t), OBJ_ALLOCATED);
      napiSkbCachePut(cpu, t);
      teardownNoLeak(mem, [cpu]);
    });
  });
}

// ---- things that are the same for both profiles --------------------------------------

describe("build helpers never use the cache", () => {
  test("buildSkb (and skbClone) take slab shells even when the cache is full of shells", () => {
    const mem = mkMem();
    const cpu = createSkbCpu(mem, 0, { profile: "6.19" });
    const [c] = slabShells(mem, 1) as [number];
    napiSkbCachePut(cpu, c);
    const d = kmalloc(mem.kmalloc, 512);
    const s = buildSkb(cpu, d, 0);
    assert.notEqual(s, c);
    assert.equal(cpu.skbCount, 1);
    assert.equal(cpu.u8[s + SKB_FLAGS] & SKBF_HEAD_FRAG, 0);
    const cl = skbClone(cpu, s);
    assert.notEqual(cl, c);
    assert.equal(cpu.skbCount, 1);
    // __users is an i32 at SKB_USERS: 1 each.
    assert.equal(cpu.i32[(s + SKB_USERS) >>> 2], 1);
    kfreeSkb(cpu, cl);
    kfreeSkb(cpu, s);
    teardownNoLeak(mem, [cpu]);
  });

  test("SKB_SMALL_HEAD_CACHE_SIZE is 704 (6.14+ small head)", () => {
    assert.equal(SKB_SMALL_HEAD_CACHE_SIZE, 704);
  });
});
