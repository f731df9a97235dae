/**
 * The SPSC handle ring (src/core/ring.ts): a fast-check model test against
 * an array (bulk and single calls, short pushes and pops, counter
 * wraparound past 2^31 and 2^32, separate producer and consumer handles),
 * layout and argument checks, and two worker threads moving millions of
 * handles that must arrive exactly once, in order.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Worker } from "node:worker_threads";
import fc from "fast-check";
import {
  RING_HEAD,
  RING_SLOTS,
  RING_TAIL,
  ringAttach,
  ringCount,
  ringCreate,
  ringPop,
  ringPopBulk,
  ringPush,
  ringPushBulk,
  ringRegionSpec,
  ringSpace,
  ringStats,
} from "../../src/core/ring.js";
import { arenaCreate } from "../../src/mm/arena.js";
import { createSkbMemory } from "../../src/skb/memory.js";
import type { RingJob, RingResult } from "./ring-worker.js";

type Cmd =
  | { op: "push"; vals: number[] }
  | { op: "pop"; n: number }
  | { op: "push1"; v: number }
  | { op: "pop1" };

const cmdArb: fc.Arbitrary<Cmd> = fc.oneof(
  fc.record({ op: fc.constant("push" as const), vals: fc.array(fc.nat({ max: 0xffffffff }), { maxLength: 40 }) }),
  fc.record({ op: fc.constant("pop" as const), n: fc.nat({ max: 40 }) }),
  fc.record({ op: fc.constant("push1" as const), v: fc.nat({ max: 0xffffffff }) }),
  fc.record({ op: fc.constant("pop1" as const) }),
);

describe("SPSC ring against an array model", () => {
  test("fast-check: bulk and single push/pop, any size, counters starting anywhere (wraparound)", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(1, 2, 4, 8, 16, 32),
        fc.oneof(fc.nat({ max: 0xffffffff }), fc.constantFrom(0, 0x7ffffff0, 0xfffffff0, 0xffffffff)),
        fc.array(cmdArb, { maxLength: 120 }),
        (size, start, cmds) => {
          const arena = arenaCreate(16 << 10, [ringRegionSpec("r", size)]);
          ringCreate(arena, "r");
          const off = arena.region("r").offset;
          // Start both counters at `start` (as the producer and consumer would after 2^32 moves).
          arena.i32[(off + RING_HEAD) >>> 2] = start | 0;
          arena.i32[(off + RING_TAIL) >>> 2] = start | 0;
          const prod = ringAttach(arena, "r");
          const cons = ringAttach(arena, "r");
          const model: number[] = [];
          const st = { pushed: 0, pushFull: 0, popped: 0, popEmpty: 0 };
          const src = new Uint32Array(64);
          const dst = new Uint32Array(64).fill(0xdeadbeef);
          for (const c of cmds) {
            if (c.op === "push") {
              src.set(c.vals);
              const k = ringPushBulk(prod, src, 0, c.vals.length);
              const want = Math.min(c.vals.length, size - model.length);
              assert.equal(k, want);
              if (want < c.vals.length) st.pushFull++;
              st.pushed += k;
              model.push(...c.vals.slice(0, k));
            } else if (c.op === "pop") {
              const k = ringPopBulk(cons, dst, 3, c.n);
              const want = Math.min(c.n, model.length);
              assert.equal(k, want);
              if (model.length === 0 && c.n > 0) st.popEmpty++;
              st.popped += k;
              assert.deepEqual([...dst.subarray(3, 3 + k)], model.splice(0, k));
            } else if (c.op === "push1") {
              const ok = ringPush(prod, c.v);
              assert.equal(ok, model.length < size);
              if (ok) {
                model.push(c.v);
                st.pushed++;
              } else {
                st.pushFull++;
              }
            } else {
              const v = ringPop(cons);
              if (model.length === 0) {
                assert.equal(v, -1);
                st.popEmpty++;
              } else {
                assert.equal(v, model.shift());
                st.popped++;
              }
            }
            assert.equal(ringCount(prod), model.length);
            assert.equal(ringSpace(cons), size - model.length);
          }
          const s = ringStats(prod);
          assert.deepEqual(
            { pushed: s.pushed, pushFull: s.pushFull, popped: s.popped, popEmpty: s.popEmpty, count: s.count, size: s.size },
            { ...st, count: model.length, size },
          );
          assert.equal((Atomics.load(arena.i32, (off + RING_TAIL) >>> 2) - start) | 0, st.pushed | 0);
        },
      ),
      { numRuns: 400 },
    );
  });

  test("layout: head and tail on separate cache lines, slots 64-byte aligned", () => {
    assert.ok(RING_TAIL - RING_HEAD >= 64);
    assert.ok(RING_SLOTS - RING_TAIL >= 64);
    assert.equal(RING_SLOTS % 64, 0);
    const spec = ringRegionSpec("x", 1024);
    assert.equal(spec.size, RING_SLOTS + 4096);
    assert.equal(spec.align, 64);
  });

  test("sizes must be powers of two; attach needs an initialised ring", () => {
    assert.throws(() => ringRegionSpec("bad", 3), /ringRegionSpec\(bad\): size 3 must be a power of two/);
    assert.throws(() => ringRegionSpec("bad", 0), /power of two/);
    assert.throws(() => ringRegionSpec("bad", 1 << 25), /power of two/);
    const arena = arenaCreate(16 << 10, [ringRegionSpec("r", 8), { name: "odd", size: RING_SLOTS + 12 }]);
    assert.throws(() => ringAttach(arena, "r"), /ringAttach\(r\): region is not an initialised ring/);
    assert.throws(() => ringCreate(arena, "odd"), /ringCreate\(odd\): size 3 must be a power of two/);
    ringCreate(arena, "r");
    assert.equal(ringAttach(arena, "r").size, 8);
  });

  test("lives in SkbMemory via extraRegions", () => {
    const mem = createSkbMemory({ arenaSize: 8 << 20, extraRegions: [ringRegionSpec("ring:0>1", 512)] });
    const r = ringCreate(mem.arena, "ring:0>1");
    assert.equal(r.size, 512);
    assert.equal(ringPush(r, 42), true);
    assert.equal(ringPop(ringAttach(mem.arena, "ring:0>1")), 42);
  });
});

const WORKER_URL = new URL("./ring-worker.js", import.meta.url);

function runWorker(job: RingJob): Promise<RingResult> {
  return new Promise((resolve, reject) => {
    const w = new Worker(WORKER_URL, { workerData: job });
    let result: RingResult | undefined;
    w.on("message", (m: RingResult) => {
      result = m;
    });
    w.on("error", reject);
    w.on("exit", (code) => {
      if (code !== 0) reject(new Error(`${job.role} exited with code ${code}`));
      else if (result === undefined) reject(new Error(`${job.role} exited without a result`));
      else resolve(result);
    });
  });
}

async function pairRun(size: number, count: number, maxBulk: number): Promise<RingResult[]> {
  const arena = arenaCreate(1 << 20, [ringRegionSpec("spsc", size)]);
  const r = ringCreate(arena, "spsc");
  const start = new SharedArrayBuffer(8);
  const base = { arena: arena.describe(), ring: "spsc", count, maxBulk, start };
  const rs = await Promise.all([
    runWorker({ ...base, role: "producer", seed: 0x1234567 }),
    runWorker({ ...base, role: "consumer", seed: 0x7654321 }),
  ]);
  for (const x of rs) assert.deepEqual(x.errors, [], `${x.role} reported errors`);
  for (const x of rs) assert.equal(x.moved, count);
  const s = ringStats(r);
  assert.deepEqual([s.pushed, s.popped, s.count], [count, count, 0]);
  return rs;
}

describe("SPSC ring across two worker threads", { timeout: 120_000 }, () => {
  test("4M handles in random bulks (1..64) through a 256-slot ring arrive exactly once, in order", async () => {
    const rs = await pairRun(256, 4_000_000, 64);
    // Both sides must have met the other's edge: a full ring and an empty one.
    assert.ok(rs.some((x) => x.role === "producer" && x.short > 0) || rs.some((x) => x.role === "consumer" && x.short > 0));
  });

  test("a 2-slot ring: 300k handles, constant wraparound and full/empty edges", async () => {
    const rs = await pairRun(2, 300_000, 3);
    for (const x of rs) assert.ok(x.short > 0, `${x.role} never saw the edge`);
  });
});
