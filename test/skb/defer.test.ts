/**
 * Remote-CPU deferral (kernel-spec.md §4.2 6.19 alien path, §4.6
 * skb_attempt_defer_free / skb_defer_free_flush, §6.3 step 5, §9.12), on one
 * thread with two CPU contexts over one memory. Expected numbers come from
 * the spec: skb_defer_max 128 (6.19) / 64 (5.12 table), the kick when the
 * count before a push is max / 2, "free now" when the new count is ≥ max.
 */

import assert from "node:assert/strict";
import { afterEach, describe, test } from "node:test";
import { type NapiStruct, napiCompleteDone, napiSchedule, netifNapiAdd, netRxAction, Softnet } from "../../src/core/napi.js";
import { NetNamespace } from "../../src/core/netdev.js";
import { kmemCacheInfo } from "../../src/mm/slab.js";
import { mmSlabInfo } from "../../src/mm/mm.js";
import { skbUsers } from "../../src/skb/access.js";
import { allocSkb, type NapiSkbOwner, napiAllocSkb } from "../../src/skb/alloc.js";
import { createSkbCpu, NAPI_STAT_DEFERRED, type SkbCpu } from "../../src/skb/cpu.js";
import {
  skbAttemptDeferFree,
  skbDeferFreeFlush,
  skbDeferInstall,
  skbDeferKickSeq,
  skbDeferOnline,
  skbDeferPending,
  skbDeferSlotStats,
  skbDeferStats,
  skbDeferUninstall,
} from "../../src/skb/defer.js";
import { SKB_DROP_REASON } from "../../src/skb/drop-reason.js";
import { napiConsumeSkb, skbReleaseHeadState } from "../../src/skb/free.js";
import { SKB_ALLOC_CPU, SKB_ALLOC_FCLONE, SKB_DST, SKB_NEXT } from "../../src/skb/layout.js";
import { createSkbMemory, DEFER_SLOT_SIZE, type SkbMemory } from "../../src/skb/memory.js";
import { napiSkbCacheDrain } from "../../src/skb/napi-cache.js";
import type { ProfileOverrides } from "../../src/skb/profile.js";

const online: SkbCpu[] = [];

afterEach(() => {
  for (const c of online.splice(0)) skbDeferUninstall(c);
});

interface Pair {
  mem: SkbMemory;
  cpu0: SkbCpu;
  cpu1: SkbCpu;
  napi: NapiSkbOwner;
}

function pair(profile = "6.19", sizes: ProfileOverrides = {}, debug = false, install = true): Pair {
  const mem = createSkbMemory({ arenaSize: 16 << 20, debug });
  const cpu0 = createSkbCpu(mem, 0, { profile, sizes });
  const cpu1 = createSkbCpu(mem, 1, { profile, sizes });
  if (install) {
    skbDeferInstall(cpu0);
    skbDeferInstall(cpu1);
    online.push(cpu0, cpu1);
  }
  return { mem, cpu0, cpu1, napi: { dev: 1, napiId: 1, skb: 0 } };
}

/** The skbs on CPU `id`'s defer list, newest first (walks the arena as documented in defer.ts). */
function deferList(mem: SkbMemory, id: number): number[] {
  const out: number[] = [];
  let skb = Atomics.load(mem.arena.i32, (mem.deferBase + id * DEFER_SLOT_SIZE) >>> 2);
  while (skb !== 0 && out.length < 100_000) {
    out.push(skb);
    skb = mem.arena.u32[(skb + SKB_NEXT) >>> 2] as number;
  }
  return out;
}

function active(mem: SkbMemory, name: string): number {
  const i = mmSlabInfo(mem.mm).find((s) => s.name === name);
  assert.ok(i !== undefined, `no slab ${name}`);
  return i.activeObjs;
}

/** Drain every cache and check that no head, data buffer or page is left allocated. */
function assertNoLeak(p: Pair): void {
  napiSkbCacheDrain(p.cpu0);
  napiSkbCacheDrain(p.cpu1);
  for (const s of mmSlabInfo(p.mem.mm)) {
    if (s.name === "frag-pages" || s.name === "pages") continue;
    assert.equal(s.activeObjs, 0, `${s.name}: ${s.activeObjs} objects still allocated`);
  }
}

function consumed(cpu: SkbCpu): number {
  return cpu.drops[SKB_DROP_REASON.CONSUMED] as number;
}

describe("skb_attempt_defer_free via napi_consume_skb (6.19, §4.2 / §4.6)", () => {
  test("an skb built on cpu 0 and consumed on cpu 1 is deferred; cpu 0's flush caches the shell there", () => {
    const p = pair();
    const { mem, cpu0, cpu1, napi } = p;
    const skb = napiAllocSkb(cpu0, napi, 100);
    assert.notEqual(skb, 0);
    assert.equal(cpu0.u16[(skb + SKB_ALLOC_CPU) >>> 1], 0);
    const c0 = cpu0.skbCount;
    const c1 = cpu1.skbCount;
    const smallHeads = active(mem, "skbuff_small_head");
    assert.equal(smallHeads, 1);

    napiConsumeSkb(cpu1, skb, 64);
    assert.equal(cpu1.skbCount, c1, "cpu 1's cache is unchanged");
    assert.equal(cpu0.skbCount, c0, "nothing reaches cpu 0's cache before it drains");
    assert.equal(skbDeferPending(cpu0), 1);
    assert.deepEqual(deferList(mem, 0), [skb]);
    assert.deepEqual(deferList(mem, 1), []);
    assert.equal(skbUsers(cpu0, skb), 0, "a parked skb has no users");
    assert.equal(active(mem, "skbuff_small_head"), 1, "the data is freed by the owner, not by cpu 1");
    assert.equal(consumed(cpu1), 0);
    const s1 = skbDeferStats(cpu1);
    assert.deepEqual([s1.attempts, s1.deferred, s1.freedFull, s1.freedLocal, s1.kicks], [1, 1, 0, 0, 0]);
    assert.equal(cpu1.stats[NAPI_STAT_DEFERRED], 1);

    assert.equal(skbDeferFreeFlush(cpu0), 1);
    assert.equal(cpu0.skbCount, c0 + 1, "the shell went into the ALLOCATING cpu's cache");
    assert.equal(cpu0.skbCache[c0], skb);
    assert.equal(cpu1.skbCount, c1);
    assert.equal(skbDeferPending(cpu0), 0);
    assert.deepEqual(deferList(mem, 0), []);
    assert.equal(active(mem, "skbuff_small_head"), 0, "cpu 0 freed the data");
    assert.equal(consumed(cpu0), 1, "the drain counts the consume");
    const s0 = skbDeferSlotStats(mem, 0);
    assert.deepEqual([s0.drained, s0.flushes, s0.pending, s0.online], [1, 1, 0, true]);
    assert.equal(skbDeferFreeFlush(cpu0), 0, "an empty list drains nothing");
    assert.equal(skbDeferSlotStats(mem, 0).flushes, 1, "an empty drain is not counted");
    assertNoLeak(p);
  });

  test("several skbs: LIFO list through skb->next, all drained in one flush", () => {
    const p = pair();
    const { mem, cpu0, cpu1, napi } = p;
    const skbs = Array.from({ length: 10 }, () => napiAllocSkb(cpu0, napi, 64));
    for (const s of skbs) napiConsumeSkb(cpu1, s, 64);
    assert.deepEqual(deferList(mem, 0), [...skbs].reverse());
    assert.equal(skbDeferPending(cpu0), 10);
    const c0 = cpu0.skbCount;
    assert.equal(skbDeferFreeFlush(cpu0), 10);
    assert.equal(cpu0.skbCount, c0 + 10);
    // napi_consume_skb(skb, 1) in list order: the newest is pushed first.
    assert.deepEqual([...cpu0.skbCache.subarray(c0, c0 + 10)], [...skbs].reverse());
    assertNoLeak(p);
  });

  test("the kick: the push that finds count == skb_defer_max / 2 (64 of 128) bumps and notifies the kick word", () => {
    const p = pair();
    const { mem, cpu0, cpu1, napi } = p;
    assert.equal(cpu1.profile.skbDeferMax, 128);
    const seq0 = skbDeferKickSeq(cpu0);
    for (let i = 1; i <= 64; i++) napiConsumeSkb(cpu1, napiAllocSkb(cpu0, napi, 64), 64);
    assert.equal(skbDeferKickSeq(cpu0), seq0, "no kick before the list is half full");
    assert.equal(skbDeferStats(cpu1).kicks, 0);
    napiConsumeSkb(cpu1, napiAllocSkb(cpu0, napi, 64), 64); // count before = 64
    assert.equal(skbDeferKickSeq(cpu0), seq0 + 1);
    assert.equal(skbDeferStats(cpu1).kicks, 1);
    assert.equal(skbDeferSlotStats(mem, 0).kicksReceived, 1);
    for (let i = 66; i <= 127; i++) napiConsumeSkb(cpu1, napiAllocSkb(cpu0, napi, 64), 64);
    assert.equal(skbDeferKickSeq(cpu0), seq0 + 1, "one kick per fill");
    assert.equal(deferList(mem, 0).length, 127);
    skbDeferFreeFlush(cpu0);
    // After a drain the count starts again: the next fill kicks again.
    for (let i = 1; i <= 65; i++) napiConsumeSkb(cpu1, napiAllocSkb(cpu0, napi, 64), 64);
    assert.equal(skbDeferKickSeq(cpu0), seq0 + 2);
    skbDeferFreeFlush(cpu0);
    assertNoLeak(p);
  });

  test("a list at skb_defer_max: the freeing CPU frees into ITS OWN cache now (count not decremented)", () => {
    const p = pair();
    const { mem, cpu0, cpu1, napi } = p;
    for (let i = 0; i < 127; i++) napiConsumeSkb(cpu1, napiAllocSkb(cpu0, napi, 64), 64);
    assert.equal(deferList(mem, 0).length, 127);
    const c1 = cpu1.skbCount;
    const full = napiAllocSkb(cpu0, napi, 64);
    napiConsumeSkb(cpu1, full, 64); // new count 128 >= 128
    assert.equal(deferList(mem, 0).length, 127, "not pushed");
    assert.equal(cpu1.skbCount, c1 + 1);
    assert.equal(cpu1.skbCache[c1], full, "cached on the freeing CPU (kfree_skb_napi_cache)");
    assert.equal(skbDeferPending(cpu0), 128, "the count ran past the list (kernel: no decrement)");
    napiConsumeSkb(cpu1, napiAllocSkb(cpu0, napi, 64), 64);
    assert.equal(cpu1.skbCount, c1 + 2);
    assert.equal(skbDeferPending(cpu0), 129);
    const s1 = skbDeferStats(cpu1);
    assert.deepEqual([s1.attempts, s1.deferred, s1.freedFull, s1.freedLocal], [129, 127, 2, 0]);
    assert.equal(consumed(cpu1), 2, "a free-now is counted where it happens");

    assert.equal(skbDeferFreeFlush(cpu0), 127);
    assert.equal(consumed(cpu0), 127);
    assert.equal(skbDeferPending(cpu0), 0);
    napiConsumeSkb(cpu1, napiAllocSkb(cpu0, napi, 64), 64);
    assert.deepEqual([skbDeferPending(cpu0), deferList(mem, 0).length], [1, 1], "deferring again after the drain");
    skbDeferFreeFlush(cpu0);
    assertNoLeak(p);
  });

  test("skb_defer_max is a tunable: max 8 kicks at the 5th push and frees now from the 8th", () => {
    const p = pair("6.19", { skbDeferMax: 8 });
    const { mem, cpu0, cpu1, napi } = p;
    const kicks: number[] = [];
    for (let i = 1; i <= 9; i++) {
      napiConsumeSkb(cpu1, napiAllocSkb(cpu0, napi, 64), 64);
      kicks.push(skbDeferKickSeq(cpu0));
    }
    assert.deepEqual(kicks, [0, 0, 0, 0, 1, 1, 1, 1, 1]);
    assert.equal(deferList(mem, 0).length, 7);
    assert.equal(skbDeferStats(cpu1).freedFull, 2);
    assert.equal(skbDeferFreeFlush(cpu0), 7);
    assertNoLeak(p);
  });

  test("fclones are deferred too; the drain frees them to the fclone slab, never a cache", () => {
    const p = pair();
    const { mem, cpu0, cpu1 } = p;
    const f = allocSkb(cpu0, 200, SKB_ALLOC_FCLONE);
    assert.notEqual(f, 0);
    assert.equal(kmemCacheInfo(mem.fcloneCache).activeObjs, 1);
    const c0 = cpu0.skbCount;
    const c1 = cpu1.skbCount;
    napiConsumeSkb(cpu1, f, 64);
    assert.deepEqual(deferList(mem, 0), [f]);
    assert.equal(cpu1.skbCount, c1);
    assert.equal(skbDeferFreeFlush(cpu0), 1);
    assert.equal(kmemCacheInfo(mem.fcloneCache).activeObjs, 0, "back in the fclone slab");
    assert.equal(cpu0.skbCount, c0, "not in cpu 0's head cache");
    assertNoLeak(p);
  });

  test("fclone hitting a full list: __kfree_skb on the freeing CPU (fclone slab, not its cache)", () => {
    const p = pair("6.19", { skbDeferMax: 2 });
    const { mem, cpu0, cpu1 } = p;
    const a = allocSkb(cpu0, 200, SKB_ALLOC_FCLONE);
    const b = allocSkb(cpu0, 200, SKB_ALLOC_FCLONE);
    const c1 = cpu1.skbCount;
    napiConsumeSkb(cpu1, a, 64); // count 1: deferred
    napiConsumeSkb(cpu1, b, 64); // count 2 >= 2: freed now
    assert.deepEqual(deferList(mem, 0), [a]);
    assert.equal(kmemCacheInfo(mem.fcloneCache).activeObjs, 1, "b went straight back to the fclone slab");
    assert.equal(cpu1.skbCount, c1, "fclones never enter a NAPI cache");
    assert.equal(skbDeferStats(cpu1).freedFull, 1);
    skbDeferFreeFlush(cpu0);
    assertNoLeak(p);
  });

  test("5.12 profile: no alien deferral, the freeing CPU caches the shell locally", () => {
    const p = pair("5.12");
    const { mem, cpu0, cpu1, napi } = p;
    assert.equal(cpu0.profile.skbDeferMax, 64);
    const skb = napiAllocSkb(cpu0, napi, 64);
    const c1 = cpu1.skbCount;
    napiConsumeSkb(cpu1, skb, 64);
    assert.equal(cpu1.skbCount, c1 + 1);
    assert.equal(cpu1.skbCache[c1], skb);
    assert.equal(skbDeferPending(cpu0), 0);
    assert.deepEqual(deferList(mem, 0), []);
    assert.equal(cpu1.stats[NAPI_STAT_DEFERRED], 0);
    assertNoLeak(p);
  });

  test("no deferral to an offline CPU, to an out-of-range alloc_cpu, or of our own skb", () => {
    const p = pair();
    const { mem, cpu0, cpu1, napi } = p;
    // Own skb through skbAttemptDeferFree: into our cache at once.
    const own = napiAllocSkb(cpu1, napi, 64);
    skbReleaseHeadState(cpu1, own);
    const c1 = cpu1.skbCount;
    skbAttemptDeferFree(cpu1, own);
    assert.equal(cpu1.skbCount, c1 + 1);
    // alloc_cpu past maxCpus.
    const far = napiAllocSkb(cpu0, napi, 64);
    cpu0.u16[(far + SKB_ALLOC_CPU) >>> 1] = mem.config.maxCpus + 3;
    napiConsumeSkb(cpu1, far, 64);
    assert.equal(cpu1.skbCount, c1 + 2);
    // cpu 0 goes offline.
    skbDeferUninstall(cpu0);
    online.splice(online.indexOf(cpu0), 1);
    assert.equal(skbDeferOnline(mem, 0), false);
    napiConsumeSkb(cpu1, napiAllocSkb(cpu0, napi, 64), 64);
    assert.equal(cpu1.skbCount, c1 + 3);
    assert.deepEqual(deferList(mem, 0), []);
    const s1 = skbDeferStats(cpu1);
    assert.deepEqual([s1.attempts, s1.deferred, s1.freedLocal, s1.freedFull], [3, 0, 3, 0]);
    // cpu 2 never came online: same.
    const cpu2 = createSkbCpu(mem, 2, { profile: "6.19" });
    napiConsumeSkb(cpu1, napiAllocSkb(cpu2, napi, 64), 64);
    assert.equal(cpu1.skbCount, c1 + 4);
    napiSkbCacheDrain(cpu2);
    assertNoLeak(p);
  });

  test("a CPU id can be online once; uninstalling drains what is left", () => {
    const p = pair();
    const { mem, cpu0, cpu1, napi } = p;
    assert.throws(() => skbDeferInstall(createSkbCpu(mem, 0, { profile: "6.19" })), /cpu 0 is already online/);
    napiConsumeSkb(cpu1, napiAllocSkb(cpu0, napi, 64), 64);
    napiConsumeSkb(cpu1, napiAllocSkb(cpu0, napi, 64), 64);
    assert.equal(skbDeferUninstall(cpu0), 2);
    online.splice(online.indexOf(cpu0), 1);
    skbDeferInstall(cpu0);
    online.push(cpu0);
    assertNoLeak(p);
  });

  test("a second free of a parked skb throws (users 0) and leaves the list intact", () => {
    const p = pair();
    const { mem, cpu0, cpu1, napi } = p;
    const skb = napiAllocSkb(cpu0, napi, 64);
    napiConsumeSkb(cpu1, skb, 64);
    assert.throws(() => napiConsumeSkb(cpu1, skb, 64), /reference count is 0/);
    assert.deepEqual(deferList(mem, 0), [skb]);
    assert.equal(skbDeferFreeFlush(cpu0), 1);
    assertNoLeak(p);
  });

  test("debug mode: deferring an skb whose head state is not released throws and pushes nothing", () => {
    const p = pair("6.19", {}, true);
    const { mem, cpu0, cpu1, napi } = p;
    const skb = napiAllocSkb(cpu0, napi, 64);
    cpu0.u32[(skb + SKB_DST) >>> 2] = 0x1234;
    assert.throws(() => skbAttemptDeferFree(cpu1, skb), /head state not released \(dst 4660/);
    assert.deepEqual(deferList(mem, 0), []);
    cpu0.u32[(skb + SKB_DST) >>> 2] = 0;
    // Debug mode end to end: defer, drain, and the head is cached on cpu 0.
    napiConsumeSkb(cpu1, skb, 64);
    assert.throws(() => napiConsumeSkb(cpu1, skb, 64), /reference count is 0/);
    const c0 = cpu0.skbCount;
    assert.equal(skbDeferFreeFlush(cpu0), 1);
    assert.equal(cpu0.skbCount, c0 + 1);
    assertNoLeak(p);
  });
});

describe("net_rx_action drains at the top of every poll-loop iteration (§4.6, §6.3 step 5)", () => {
  function softnet(p: Pair, budget = 300) {
    const net = new NetNamespace();
    const sd = new Softnet(p.cpu0, net, { budget });
    return { net, sd };
  }

  /** cpu 1 frees `n` skbs that cpu 0 allocated. */
  function remoteFrees(p: Pair, napi: NapiSkbOwner, n: number): void {
    for (let i = 0; i < n; i++) napiConsumeSkb(p.cpu1, napiAllocSkb(p.cpu0, napi, 64), 64);
  }

  test("before each poll and once more when the list is empty", () => {
    const p = pair();
    const { mem, cpu0 } = p;
    const { net, sd } = softnet(p);
    const atEntry: number[] = [];
    const mk = (name: string, frees: number) =>
      netifNapiAdd(
        sd,
        net.register({ name }),
        (_cpu, n: NapiStruct) => {
          atEntry.push(deferList(mem, 0).length);
          remoteFrees(p, n, frees);
          napiCompleteDone(n, 0);
          return 0;
        },
        4,
      );
    const a = mk("dummy0", 3);
    const b = mk("dummy1", 5);
    remoteFrees(p, p.napi, 2);
    assert.equal(deferList(mem, 0).length, 2);
    napiSchedule(a);
    napiSchedule(b);
    netRxAction(sd);
    assert.deepEqual(atEntry, [0, 0], "each poll starts with a drained list");
    assert.deepEqual(deferList(mem, 0), [], "the last poll's frees were drained after it");
    const s = skbDeferSlotStats(mem, 0);
    assert.deepEqual([s.drained, s.flushes], [10, 3]);
    assert.equal(consumed(cpu0), 10);

    // Nothing scheduled: net_rx_action still drains (the kick's softirq).
    remoteFrees(p, p.napi, 4);
    assert.equal(netRxAction(sd), 0);
    assert.deepEqual(deferList(mem, 0), []);
    assert.equal(skbDeferSlotStats(mem, 0).drained, 14);
    assertNoLeak(p);
  });

  test("a run cut short by the budget leaves the newest frees for the next run's first iteration", () => {
    const p = pair();
    const { mem } = p;
    const { net, sd } = softnet(p, 4);
    const atEntry: number[] = [];
    let polls = 0;
    const n = netifNapiAdd(
      sd,
      net.register({ name: "dummy0" }),
      (_cpu, napi: NapiStruct, budget: number) => {
        atEntry.push(deferList(mem, 0).length);
        remoteFrees(p, napi, 2);
        if (++polls === 2) {
          napiCompleteDone(napi, 0);
          return 0;
        }
        return budget; // full weight: requeued, and the budget (4) is spent
      },
      4,
    );
    napiSchedule(n);
    netRxAction(sd);
    assert.equal(sd.timeSqueeze, 1);
    assert.equal(deferList(mem, 0).length, 2, "no drain after the budget break (kernel order)");
    netRxAction(sd);
    assert.deepEqual(atEntry, [0, 0]);
    assert.deepEqual(deferList(mem, 0), []);
    assertNoLeak(p);
  });

  test("without deferral installed the drain is a no-op (5.12 and uninstalled CPUs)", () => {
    const p = pair("5.12", {}, false, false);
    const { net, sd } = softnet(p);
    let polled = 0;
    const n = netifNapiAdd(sd, net.register({ name: "dummy0" }), (_c, napi: NapiStruct) => {
      polled++;
      napiCompleteDone(napi, 0);
      return 0;
    });
    napiSchedule(n);
    netRxAction(sd);
    assert.equal(polled, 1);
    assert.equal(skbDeferSlotStats(p.mem, 0).flushes, 0);
    assertNoLeak(p);
  });
});
