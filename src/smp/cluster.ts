/**
 * The multi-core router: N worker threads as N CPUs over ONE shared arena.
 *
 * ```
 *  main thread (control, aggregation; no packets)
 *    │ createSkbMemory(maxCpus N, one conntrack region per CPU)
 *    ├─ worker 0: NAPI cache 0, frag caches, veths, router partition 0, pktgen(flows RSS → 0), sink
 *    └─ worker 1: NAPI cache 1, ...                  router partition 1, pktgen(flows RSS → 1), sink
 *  shared by all: the slab caches (one lock each), page allocators, kmalloc
 * ```
 *
 * Flows are placed by RSS: the Toeplitz hash of each flow's 4-tuple picks
 * the RX queue, one queue per worker, as a multi-queue NIC would. Each CPU
 * owns the conntrack partition and the NAT port range of its queue; the
 * reply direction is steered back to the owner by its NAT port range (the
 * hand-off rule a port-range flow-director filter implements), so no
 * connection state is ever touched by two CPUs. What the CPUs do share is
 * the allocator: every head they take from, or give back to, the slab goes
 * through the same lock — which is exactly the cost the per-CPU NAPI head
 * cache removes.
 *
 * @module
 */

import { Worker } from "node:worker_threads";
import { mmSlabInfo } from "../mm/mm.js";
import { kmemCacheInfo } from "../mm/slab.js";
import { conntrackRegionSpec } from "../net/conntrack.js";
import { resolveTraffic, flowSrcAddr, flowSrcPort, type TrafficOptions } from "../drivers/traffic.js";
import { createSkbMemory, type SkbMemory } from "../skb/memory.js";
import { rssCreate, rssQueueOf } from "../core/rss.js";
import type { WorkerConfig, WorkerMessage, WorkerReply } from "./protocol.js";

/** Options of a cluster. */
export interface ClusterOptions {
  workers: number;
  traffic: TrafficOptions;
  profile?: string;
  fullValidation?: boolean;
  /** Arena bytes per worker (default 192 MiB). */
  arenaPerWorker?: number;
  /** Conntrack entries per worker (default 16384). */
  conntrackMax?: number;
}

/** A running cluster. */
export interface Cluster {
  mem: SkbMemory;
  workers: Worker[];
  flowsPerWorker: number[];
  pending: Map<number, (m: WorkerReply) => void>;
  errors: string[];
  /** Resolves when every worker has exited (listened for from the start). */
  exited: Promise<unknown>;
}

/** One aggregated measurement. */
export interface ClusterResult {
  workers: number;
  packets: number;
  seconds: number;
  mpps: number;
  gbps: number;
  gcCount: number;
  slabCallsPerPacket: number;
  perWorkerMpps: number[];
}

function waitAll(c: Cluster, type: WorkerReply["type"]): Promise<WorkerReply[]> {
  return Promise.all(
    c.workers.map(
      (_, id) =>
        new Promise<WorkerReply>((resolve, reject) => {
          c.pending.set(id, (m) => {
            if (m.type === "error") reject(new Error(`worker ${id}: ${m.message}`));
            else if (m.type === type) resolve(m);
            else reject(new Error(`worker ${id}: expected ${type}, got ${m.type}`));
          });
        }),
    ),
  );
}

function headSlabCalls(mem: SkbMemory): number {
  const i = kmemCacheInfo(mem.headCache);
  return i.allocs + i.frees + i.allocBulkCalls + i.freeBulkCalls;
}

/** Start `workers` worker CPUs on a fresh shared arena; resolves when all are ready. */
export async function clusterStart(o: ClusterOptions): Promise<Cluster> {
  const n = o.workers;
  if (!Number.isInteger(n) || n < 1 || n > 64) throw new RangeError(`cluster: workers ${n} must be 1..64`);
  const traffic = resolveTraffic(o.traffic);
  const ctMax = o.conntrackMax ?? 16384;
  const names = Array.from({ length: n }, (_, w) => `nf_conntrack_${w}`);
  const mem = createSkbMemory({
    arenaSize: Math.min(1 << 30, (o.arenaPerWorker ?? 192 << 20) * n),
    maxCpus: n,
    extraRegions: names.flatMap((name) => conntrackRegionSpec({ max: ctMax, name })),
  });
  // RSS places every flow on a queue (= worker); NAT port ranges split evenly.
  const rss = rssCreate(n);
  const flows: number[][] = Array.from({ length: n }, () => []);
  for (let f = 0; f < traffic.flows; f++) {
    const q = rssQueueOf(rss, flowSrcAddr(traffic, f), traffic.server, flowSrcPort(traffic, f), traffic.serverPort);
    (flows[q] as number[]).push(f);
  }
  const span = Math.floor((65535 - 1024 + 1) / n);
  const c: Cluster = {
    mem,
    workers: [],
    flowsPerWorker: flows.map((f) => f.length),
    pending: new Map(),
    errors: [],
    exited: Promise.resolve(),
  };
  const exits: Promise<unknown>[] = [];
  for (let w = 0; w < n; w++) {
    const cfg: WorkerConfig = {
      mem: mem.describe(),
      id: w,
      workers: n,
      traffic: o.traffic,
      profile: o.profile ?? "5.12",
      fullValidation: o.fullValidation ?? false,
      conntrackName: names[w] as string,
      conntrackMax: ctMax,
      natPorts: [1024 + w * span, w === n - 1 ? 65535 : 1024 + (w + 1) * span - 1],
      flows: flows[w] as number[],
    };
    const worker = new Worker(new URL("./worker.js", import.meta.url), { workerData: cfg });
    exits.push(new Promise((r) => worker.once("exit", r)));
    worker.on("message", (m: WorkerReply) => {
      const h = c.pending.get(m.id);
      if (h !== undefined) {
        c.pending.delete(m.id);
        h(m);
      } else if (m.type === "error") {
        c.errors.push(m.message);
      }
    });
    worker.on("error", (e) => {
      const h = c.pending.get(w);
      c.pending.delete(w);
      if (h !== undefined) h({ type: "error", id: w, message: e.stack ?? String(e) });
      else c.errors.push(String(e));
    });
    c.workers.push(worker);
  }
  c.exited = Promise.all(exits);
  try {
    await waitAll(c, "ready");
  } catch (e) {
    await Promise.all(c.workers.map((w) => w.terminate()));
    throw e;
  }
  return c;
}

/** Run every worker for `seconds` with the cache on or off, at the same time. */
export async function clusterRun(c: Cluster, seconds: number, cacheOn: boolean, chunk = 4096): Promise<ClusterResult> {
  // Slab calls are counted here, once, on the shared counters (workers would each see the total).
  const calls0 = headSlabCalls(c.mem);
  const done = waitAll(c, "result");
  const m: WorkerMessage = { cmd: "run", seconds, cacheOn, chunk };
  for (const w of c.workers) w.postMessage(m);
  const rs = (await done) as Extract<WorkerReply, { type: "result" }>[];
  const packets = rs.reduce((n, r) => n + r.packets, 0);
  const bytes = rs.reduce((n, r) => n + r.bytes, 0);
  const ns = Math.max(...rs.map((r) => r.ns));
  return {
    workers: c.workers.length,
    packets,
    seconds: ns / 1e9,
    mpps: packets / (ns / 1e9) / 1e6,
    gbps: (bytes * 8) / ns,
    gcCount: rs.reduce((n, r) => n + r.gcCount, 0),
    slabCallsPerPacket: (headSlabCalls(c.mem) - calls0) / Math.max(1, packets),
    perWorkerMpps: rs.map((r) => r.packets / (r.ns / 1e9) / 1e6),
  };
}

/** Stop every worker; then, with the whole arena quiet, check that nothing is left in use. */
export async function clusterStop(c: Cluster): Promise<{ ok: boolean; problems: string[] }> {
  const done = waitAll(c, "stopped");
  for (const w of c.workers) w.postMessage({ cmd: "stop" } satisfies WorkerMessage);
  const rs = (await done) as Extract<WorkerReply, { type: "stopped" }>[];
  await c.exited;
  const problems = rs.flatMap((r) => r.problems.map((p) => `worker ${r.id}: ${p}`));
  for (const r of rs) if (r.conntrackEntries !== 0) problems.push(`worker ${r.id}: ${r.conntrackEntries} conntrack entries left`);
  for (const i of mmSlabInfo(c.mem.mm)) if (i.activeObjs !== 0) problems.push(`${i.name}: ${i.activeObjs} objects still in use`);
  problems.push(...c.errors);
  return { ok: problems.length === 0 && rs.every((r) => r.accountingOk), problems };
}
