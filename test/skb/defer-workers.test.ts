/**
 * Remote-CPU deferral across real threads (kernel-spec.md §4.2 alien path,
 * §4.6): worker threads, each its own SkbCpu (profile 6.19, deferral
 * installed) over one shared memory. Producers allocate skbs and hand them
 * to consumers through SPSC rings; consumers free them with
 * napiConsumeSkb(skb, 64), which defers each one back to its allocating
 * CPU; owners drain with skbDeferFreeFlush or netRxAction. Millions of
 * packets per run. At the end every head, data buffer and page is back in
 * its slab, every deferral was drained exactly once, and the counters of
 * both sides agree.
 */

import assert from "node:assert/strict";
import { describe, type TestContext, test } from "node:test";
import { Worker } from "node:worker_threads";
import { ringAttach, ringCreate, ringRegionSpec, ringStats } from "../../src/core/ring.js";
import { mmSlabInfo } from "../../src/mm/mm.js";
import { skbDeferSlotStats } from "../../src/skb/defer.js";
import { createSkbMemory, type SkbMemory } from "../../src/skb/memory.js";
import type { ProfileOverrides } from "../../src/skb/profile.js";
import type { DeferAlloc, DeferJob, DeferResult } from "./defer-worker.js";

const WORKER_URL = new URL("./defer-worker.js", import.meta.url);

function runWorker(job: DeferJob): Promise<DeferResult> {
  return new Promise((resolve, reject) => {
    const w = new Worker(WORKER_URL, { workerData: job });
    let result: DeferResult | undefined;
    w.on("message", (m: DeferResult) => {
      result = m;
    });
    w.on("error", reject);
    w.on("exit", (code) => {
      if (code !== 0) reject(new Error(`cpu ${job.cpuId} exited with code ${code}`));
      else if (result === undefined) reject(new Error(`cpu ${job.cpuId} exited without a result`));
      else resolve(result);
    });
  });
}

/** A worker in a topology: which CPU, which rings it feeds, which it drains. */
interface Node {
  cpu: number;
  out: string[];
  in: { ring: string; peer: number }[];
}

interface Run {
  nodes: Node[];
  /** skbs per ring. */
  perRing: number;
  alloc: DeferAlloc;
  drain: "flush" | "net-rx-action";
  debug?: boolean;
  sizes?: ProfileOverrides;
  ringSize?: number;
  burst?: number;
  mode?: "stream" | "kick";
  rounds?: number;
}

/** Ring from CPU a to CPU b. */
function edge(a: number, b: number): string {
  return `ring:${a}>${b}`;
}

async function runTopology(t: TestContext, r: Run): Promise<{ mem: SkbMemory; rs: DeferResult[] }> {
  const rings = r.nodes.flatMap((n) => n.out);
  const ringSize = r.ringSize ?? 512;
  const mem = createSkbMemory({
    arenaSize: 64 << 20,
    maxCpus: 8,
    debug: r.debug ?? false,
    extraRegions: rings.map((n) => ringRegionSpec(n, ringSize)),
  });
  assert.equal(mem.headCache.debug, r.debug ?? false);
  for (const n of rings) ringCreate(mem.arena, n);
  const ctl = new SharedArrayBuffer(4 * (1 + r.nodes.length));
  const jobs: DeferJob[] = r.nodes.map((n, index) => ({
    mode: r.mode ?? "stream",
    mem: mem.describe(),
    cpuId: n.cpu,
    index,
    nWorkers: r.nodes.length,
    sizes: r.sizes ?? {},
    out: n.out,
    produce: r.perRing,
    in: n.in,
    consume: r.perRing,
    alloc: r.alloc,
    drain: r.drain,
    burst: r.burst ?? 32,
    ctl,
    rounds: r.rounds ?? 0,
  }));
  const rs = await Promise.all(jobs.map(runWorker));
  for (const x of rs) assert.deepEqual(x.errors, [], `cpu ${x.cpuId} reported errors`);
  for (const n of rings) {
    const s = ringStats(ringAttach(mem.arena, n));
    assert.deepEqual([s.pushed, s.popped, s.count], [r.perRing, r.perRing, 0], `ring ${n}`);
  }
  checkAccounting(mem, r, rs);
  for (const x of rs) {
    const d = x.defer;
    t.diagnostic(
      `cpu ${x.cpuId}: produced ${x.produced} consumed ${x.consumed} deferred ${d.deferred} freedFull ${d.freedFull} ` +
        `drained ${d.drained} in ${d.flushes} flushes, kicks ${d.kicks}, CAS retries ${d.casRetries}, ` +
        `cache refills ${x.cache.refills} flushes ${x.cache.flushes}, kick waits ok/early/timeout ${x.kickOk}/${x.kickNotEqual}/${x.kickTimeouts}`,
    );
  }
  return { mem, rs };
}

function sum(rs: DeferResult[], f: (x: DeferResult) => number): number {
  return rs.reduce((s, x) => s + f(x), 0);
}

/** Every packet, head and deferral is accounted for. */
function checkAccounting(mem: SkbMemory, r: Run, rs: DeferResult[]): void {
  const byCpu = new Map(rs.map((x) => [x.cpuId, x]));
  for (const n of r.nodes) {
    const x = byCpu.get(n.cpu) as DeferResult;
    assert.equal(x.produced, r.perRing * n.out.length, `cpu ${n.cpu} produced`);
    assert.equal(x.consumed, r.perRing * n.in.length, `cpu ${n.cpu} consumed`);
    const d = x.defer;
    // Every skb a CPU consumed was alien: one deferral attempt each, none "own".
    assert.equal(d.attempts, x.consumed, `cpu ${n.cpu}: attempts`);
    assert.equal(d.freedLocal, 0, `cpu ${n.cpu}: freedLocal`);
    assert.equal(d.deferred + d.freedFull, x.consumed, `cpu ${n.cpu}: deferred + freedFull`);
    // What entered this CPU's NAPI cache: its own skbs drained back, plus full-list frees.
    assert.equal(x.cache.puts, d.drained + d.freedFull, `cpu ${n.cpu}: cache puts = drained + freedFull`);
    // The arena's slot agrees with what the worker saw.
    const s = skbDeferSlotStats(mem, n.cpu);
    assert.deepEqual(
      [s.online, s.pending, s.drained, s.flushes, s.kicks, s.freedFull, s.freedLocal, s.casRetries],
      [false, 0, d.drained, d.flushes, d.kicks, d.freedFull, d.freedLocal, d.casRetries],
      `cpu ${n.cpu}: slot stats`,
    );
  }
  // Each owner drained exactly what its consumers pushed to it.
  for (const n of r.nodes) {
    const pushedToMe = r.nodes
      .filter((m) => m.in.some((i) => i.peer === n.cpu))
      .reduce((t, m) => {
        assert.equal(m.in.length, 1, "per-owner matching needs one input ring per consumer");
        return t + (byCpu.get(m.cpu) as DeferResult).defer.deferred;
      }, 0);
    assert.equal((byCpu.get(n.cpu) as DeferResult).defer.drained, pushedToMe, `cpu ${n.cpu}: drained = deferred to it`);
  }
  const total = sum(rs, (x) => x.consumed);
  assert.equal(sum(rs, (x) => x.consumedDrops), total, "each packet counted as consumed exactly once");
  assert.equal(sum(rs, (x) => x.defer.kicks), sum(rs, (x) => skbDeferSlotStats(mem, x.cpuId).kicksReceived), "kicks sent = received");
  // Nothing left allocated anywhere: heads, fclones, small heads, kmalloc, pages.
  for (const s of mmSlabInfo(mem.mm)) assert.equal(s.activeObjs, 0, `${s.name}: ${s.activeObjs} still allocated`);
}

const oneWay: Node[] = [
  { cpu: 0, out: [edge(0, 1)], in: [] },
  { cpu: 1, out: [], in: [{ ring: edge(0, 1), peer: 0 }] },
];

describe("defer-free across worker threads (6.19)", { timeout: 600_000 }, () => {
  test("A allocates (napiAllocSkb, small heads), B frees: 3M packets deferred back, A drains with skbDeferFreeFlush", async (t) => {
    const { rs } = await runTopology(t, { nodes: oneWay, perRing: 3_000_000, alloc: "alloc-small", drain: "flush" });
    const [a, b] = rs as [DeferResult, DeferResult];
    // How many fit on A's list depends on scheduling (a descheduled owner lets it fill up).
    assert.ok(b.defer.deferred > 0, "nothing was deferred");
    assert.ok(a.defer.flushes > 0);
    // The point of deferral: B's cache only ever saw full-list frees.
    assert.equal(b.cache.puts, b.defer.freedFull);
  });

  test("napiBuildSkb around page frags, drained at the top of netRxAction (driver poll allocates): 2M packets", async (t) => {
    const { rs } = await runTopology(t, { nodes: oneWay, perRing: 2_000_000, alloc: "build", drain: "net-rx-action" });
    assert.ok((rs[0] as DeferResult).defer.drained > 0);
  });

  test("debug allocator (poison, double-free and write-after-free checks): 1M page-frag napiAllocSkb packets", async (t) => {
    const { rs } = await runTopology(t, { nodes: oneWay, perRing: 1_000_000, alloc: "alloc-frag", drain: "flush", debug: true });
    assert.ok((rs[0] as DeferResult).defer.drained > 0);
  });

  test("both directions: each CPU allocates 1M and frees the other's 1M; the lists are pushed and drained concurrently", async (t) => {
    const nodes: Node[] = [
      { cpu: 0, out: [edge(0, 1)], in: [{ ring: edge(1, 0), peer: 1 }] },
      { cpu: 1, out: [edge(1, 0)], in: [{ ring: edge(0, 1), peer: 0 }] },
    ];
    await runTopology(t, { nodes, perRing: 1_000_000, alloc: "alloc-small", drain: "net-rx-action" });
  });

  test("fan-in to one list: A feeds B and C, both push onto A's list (CAS races), 1M each", async (t) => {
    const nodes: Node[] = [
      { cpu: 0, out: [edge(0, 1), edge(0, 2)], in: [] },
      { cpu: 1, out: [], in: [{ ring: edge(0, 1), peer: 0 }] },
      { cpu: 2, out: [], in: [{ ring: edge(0, 2), peer: 0 }] },
    ];
    const { rs } = await runTopology(t, { nodes, perRing: 1_000_000, alloc: "alloc-small", drain: "flush" });
    const a = rs[0] as DeferResult;
    assert.equal(a.defer.drained, (rs[1] as DeferResult).defer.deferred + (rs[2] as DeferResult).defer.deferred);
  });

  test("skb_defer_max 8: full lists make B free into its own cache; everything still accounted for (1M)", async (t) => {
    const { rs } = await runTopology(t, { nodes: oneWay, perRing: 1_000_000, alloc: "alloc-small", drain: "flush", sizes: { skbDeferMax: 8 } });
    const b = rs[1] as DeferResult;
    assert.ok(b.defer.freedFull > 0, "no list ever filled up");
    assert.ok(b.defer.kicks > 0, "no kick at max/2");
    assert.equal(b.cache.puts, b.defer.freedFull);
  });

  test("the kick wakes a sleeping owner: 3000 rounds of max/2 + 1 skbs, each drained after the wake-up", async (t) => {
    const { rs } = await runTopology(t, { nodes: oneWay, perRing: 3000 * 65, alloc: "alloc-small", drain: "flush", mode: "kick", rounds: 3000 });
    const [a, b] = rs as [DeferResult, DeferResult];
    assert.equal(a.kickTimeouts, 0, "a kick never arrived");
    assert.equal(a.badRounds, 0, "a wake-up found other than max/2 + 1 skbs on the list");
    assert.equal(a.kickOk + a.kickNotEqual, 3000);
    assert.ok(a.kickOk > 0, "the owner never actually slept until a kick");
    assert.equal(b.defer.kicks, 3000);
    assert.equal(a.defer.drained, 3000 * 65);
  });
});
