/**
 * The multi-thread proof: several worker threads share one slab cache in a
 * SharedArrayBuffer arena and do millions of single and bulk alloc/free
 * calls, tagging every object they hold. Two owners of one object, a lost or
 * duplicated free-stack entry, or a torn counter would show up as a bad tag,
 * a non-zero active count, a duplicate on the free stack or counters that
 * do not add up.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Worker } from "node:worker_threads";
import { type Arena, arenaCreate } from "../../src/mm/arena.js";
import {
  type BulkMode,
  type KmemCache,
  kmemCacheAllocBulk,
  kmemCacheCreate,
  kmemCacheFreeBulk,
  kmemCacheInfo,
  kmemCacheObjIndex,
  kmemCacheObjState,
  OBJ_FREE,
  POISON_FREE,
  type SlabInfo,
  slabRegionSpec,
} from "../../src/mm/slab.js";
import { createSkbMemory } from "../../src/skb/memory.js";
import { type CacheRef, type HandoffJob, type MixedJob, ringBytes, type SlabJob, type SlabWorkerResult } from "./slab-worker.js";

const WORKER_URL = new URL("./slab-worker.js", import.meta.url);

function runWorker(job: SlabJob): Promise<SlabWorkerResult> {
  return new Promise((resolve, reject) => {
    const w = new Worker(WORKER_URL, { workerData: job });
    let result: SlabWorkerResult | undefined;
    w.on("message", (m: SlabWorkerResult) => {
      result = m;
    });
    w.on("error", reject);
    w.on("exit", (code) => {
      if (code !== 0) reject(new Error(`worker ${job.workerId} exited with code ${code}`));
      else if (result === undefined) reject(new Error(`worker ${job.workerId} exited without a result`));
      else resolve(result);
    });
  });
}

function bareCache(name: string, size: number, count: number, bulkMode: BulkMode, debug: boolean) {
  const o = { name, size, count, bulkMode, debug };
  const spec = slabRegionSpec(o);
  const arena = arenaCreate(Math.ceil((spec.size + 4 * 4096) / 4096) * 4096, [spec]);
  const c = kmemCacheCreate(arena, 3, o);
  const ref: CacheRef = { arena: arena.describe(), cacheId: 3, cacheName: name };
  return { arena, c, ref };
}

function sum(rs: SlabWorkerResult[], k: keyof Omit<SlabWorkerResult, "errors">): number {
  return rs.reduce((s, r) => s + (r[k] as number), 0);
}

/** Every check that must hold once all workers are done. */
function checkAfter(arena: Arena, c: KmemCache, rs: SlabWorkerResult[]): SlabInfo {
  for (const r of rs) assert.deepEqual(r.errors, [], `worker ${r.workerId} reported errors`);
  const info = kmemCacheInfo(c);
  assert.equal(info.activeObjs, 0, "objects still allocated after every worker freed all it held");
  assert.equal(info.allocs, sum(rs, "singleAllocs"), "allocs");
  assert.equal(info.frees, sum(rs, "singleFrees"), "frees");
  assert.equal(info.allocBulkCalls, sum(rs, "bulkAllocCalls"), "allocBulkCalls");
  assert.equal(info.allocBulkObjs, sum(rs, "bulkAllocObjs"), "allocBulkObjs");
  assert.equal(info.freeBulkCalls, sum(rs, "bulkFreeCalls"), "freeBulkCalls");
  assert.equal(info.freeBulkObjs, sum(rs, "bulkFreeObjs"), "freeBulkObjs");
  assert.equal(info.allocFail, sum(rs, "allocFails"), "allocFail");
  assert.equal(info.bulkShort, sum(rs, "bulkShort"), "bulkShort");
  assert.equal(info.allocs + info.allocBulkObjs, info.frees + info.freeBulkObjs, "objects in = objects out");
  // the free stack holds every object exactly once
  const all = new Uint32Array(c.nrObjs);
  assert.equal(kmemCacheAllocBulk(c, c.nrObjs, all, 0), c.nrObjs);
  const seen = new Set<number>();
  for (const o of all) {
    assert.ok(kmemCacheObjIndex(c, o) >= 0, `free stack entry 0x${o.toString(16)} is not an object`);
    assert.ok(!seen.has(o), `object 0x${o.toString(16)} is on the free stack twice`);
    seen.add(o);
  }
  assert.equal(seen.size, c.nrObjs);
  kmemCacheFreeBulk(c, c.nrObjs, all, 0);
  if (c.debug) {
    for (const o of all) assert.equal(kmemCacheObjState(c, o), OBJ_FREE);
    const bytes = arena.u8.subarray(c.objBase, c.objEnd);
    assert.ok(bytes.every((b) => b === POISON_FREE), "a free object is not fully poisoned (write after free)");
  }
  return info;
}

function mixedJobs(ref: CacheRef, n: number, ops: number, hold: number, maxBulk: number): MixedJob[] {
  const start = new SharedArrayBuffer(8);
  return Array.from({ length: n }, (_, i) => ({
    kind: "mixed" as const,
    cache: ref,
    workerId: i + 1,
    seed: 0x9e3779b9 ^ ((i + 1) * 0x85ebca6b),
    ops,
    hold,
    maxBulk,
    start,
    nWorkers: n,
  }));
}

function handoffPair(ref: CacheRef, objects: number, ringCap: number, maxBulk: number): HandoffJob[] {
  const start = new SharedArrayBuffer(8);
  const ab = new SharedArrayBuffer(ringBytes(ringCap));
  const ba = new SharedArrayBuffer(ringBytes(ringCap));
  const base = { kind: "handoff" as const, cache: ref, objects, maxBulk, start, nWorkers: 2 };
  return [
    { ...base, workerId: 1, peerId: 2, seed: 12345, out: ab, in: ba },
    { ...base, workerId: 2, peerId: 1, seed: 67890, out: ba, in: ab },
  ];
}

let totalCalls = 0;

describe("slab under concurrent workers", { timeout: 120_000 }, () => {
  test("3 workers, 7.5M mixed single/bulk calls on one small cache (exhaustion included)", async () => {
    // 3 workers x 64 held > 120 objects: the cache runs dry under contention.
    const { arena, c, ref } = bareCache("mt-mixed", 64, 120, "all-or-nothing", false);
    const rs = await Promise.all(mixedJobs(ref, 3, 2_500_000, 64, 16).map(runWorker));
    const info = checkAfter(arena, c, rs);
    const calls = sum(rs, "calls");
    totalCalls += calls;
    assert.ok(calls >= 7_500_000, `only ${calls} calls`);
    assert.ok(info.allocs > 100_000 && info.allocBulkObjs > 100_000, "both single and bulk paths were used");
    assert.ok(info.allocFail > 0, "the cache never ran dry: exhaustion under contention not exercised");
    assert.ok(
      rs.every((r) => r.maxHeld > 0),
      "every worker held objects",
    );
  });

  test('2 workers, "partial" bulk mode: short bulks are counted exactly', async () => {
    const { arena, c, ref } = bareCache("mt-partial", 192, 100, "partial", false);
    const rs = await Promise.all(mixedJobs(ref, 2, 600_000, 64, 24).map(runWorker));
    const info = checkAfter(arena, c, rs);
    totalCalls += sum(rs, "calls");
    assert.ok(info.bulkShort > 0, "no short bulk happened");
  });

  test("debug mode (createSkbMemory head cache): 2 workers, no double free, no write after free", async () => {
    const mem = createSkbMemory({ arenaSize: 8 << 20, heads: 96, debug: true });
    assert.equal(mem.headCache.debug, true);
    const ref: CacheRef = { skb: mem.describe() };
    const rs = await Promise.all(mixedJobs(ref, 2, 300_000, 64, 16).map(runWorker));
    const info = checkAfter(mem.arena, mem.headCache, rs);
    totalCalls += sum(rs, "calls");
    assert.ok(info.allocFail > 0, "the head cache never ran dry");
  });

  test("handoff: each worker allocates and tags objects, the other one frees them (2M each way)", async () => {
    const { arena, c, ref } = bareCache("mt-handoff", 128, 200, "all-or-nothing", false);
    // 200 objects for two 512-entry rings: producers run the cache dry and wait for the consumer.
    const rs = await Promise.all(handoffPair(ref, 2_000_000, 512, 4).map(runWorker));
    const info = checkAfter(arena, c, rs);
    assert.ok(info.allocFail > 0, "the cache never ran dry");
    for (const r of rs) assert.deepEqual([r.produced, r.consumed], [2_000_000, 2_000_000]);
    totalCalls += sum(rs, "calls");
  });

  test("handoff in debug mode: cross-thread frees of tagged objects", async () => {
    const { arena, c, ref } = bareCache("mt-handoff-dbg", 64, 150, "all-or-nothing", true);
    const rs = await Promise.all(handoffPair(ref, 600_000, 256, 4).map(runWorker));
    const info = checkAfter(arena, c, rs);
    assert.ok(info.allocFail > 0, "the cache never ran dry");
    for (const r of rs) assert.deepEqual([r.produced, r.consumed], [600_000, 600_000]);
    totalCalls += sum(rs, "calls");
  });

  test("in total the workers made more than 4 million slab calls", () => {
    assert.ok(totalCalls >= 4_000_000, `${totalCalls} calls`);
  });
});
