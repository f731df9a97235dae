/**
 * Defer-free micro-benchmark: what does it cost to free skbs on another
 * CPU, with remote-CPU deferral (spec §4.2 6.19 alien path + §4.6) on and
 * off?
 *
 * Two worker CPUs over one arena, profile 6.19 on both. CPU 0 allocates
 * skbs with `napiAllocSkb` (shell from its NAPI cache; data from the
 * small-head slab for 64 B, from its page-frag cache for 1000 B) and hands
 * them to CPU 1 through an SPSC ring; CPU 1 frees them with
 * `napiConsumeSkb(skb, 64)`.
 *
 * | case      | where CPU 1's frees go                                                  |
 * |-----------|-------------------------------------------------------------------------|
 * | defer-on  | pushed onto CPU 0's lock-free list; CPU 0 drains it at the top of every |
 * |           | loop iteration into ITS cache and frees the data where it was allocated |
 * | defer-off | CPU 1's own NAPI cache (flushed to the slab 32 at a time) and the data  |
 * |           | freed on CPU 1 (the 5.12 way); CPU 0's cache refills from the slab      |
 *
 * `pp-1500` is a NIC driver's RX: every frame is a whole page-pool page
 * (napiBuildSkb around it, pp_recycle). Freed on CPU 1 the page goes back
 * through the pool's locked recycle ring; deferred, CPU 0 frees it in NAPI
 * context and the page recycles straight into the pool's alloc cache (the
 * kernel's napi_pp_put_page with napi_safe), which is what deferral buys a
 * page-pool driver.
 *
 * `recvmsg-1000` makes CPU 1 a socket reader, the case
 * deferral was written for (commit 68822bdf76f1: frees moved out of
 * recvmsg to the CPU that allocated the skb): it copies every 1000-byte
 * payload to a user buffer (skb_copy_datagram_iter) and frees in process
 * context with `skbAttemptDeferFree` (tcp_eat_recv_skb), which falls back to
 * `kfree_skb_napi_cache` when deferral is off.
 *
 * Time per packet is from the producer's start to the consumer's last free
 * (`process.hrtime.bigint`, one monotonic clock for both threads). Cases
 * alternate inside every round; every segment starts with empty NAPI caches.
 * Results are printed, not asserted: `skb bench defer [--packets N]
 * [--rounds N] [--json]`. When the consumer only frees, the producer is the
 * pipeline's bottleneck, so work that deferral moves back to it (the frees)
 * shows up as time even when the total work is the same; and with one
 * shared slab (no per-CPU freelists, unlike SLUB) freeing where an object
 * was allocated buys no locality here. When the consumer is the slower side
 * (recvmsg), taking the frees off it is what deferral buys.
 *
 * Idle sides spin 1024 polls, then sleep on a doorbell the other side rings
 * (consumer: after a push; producer on a full ring: after a pop).
 *
 * @module
 */

import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import { ringCreate, ringRegionSpec } from "../core/ring.js";
import { mmSlabInfo } from "../mm/mm.js";
import { createSkbMemory, type SkbMemory } from "../skb/memory.js";
import { cpuRoundTripLine, cpuRoundTripNs } from "./cpu-pingpong.js";
import type { DeferBenchRun, DeferBenchSegment, DeferBenchWorkerConfig } from "./defer-worker.js";
import { median, pairedRatios } from "./stats.js";

/** Case names, in run order within a round. */
export const DEFER_CASES = ["defer-on", "defer-off"] as const;
export type DeferCase = (typeof DEFER_CASES)[number];
/**
 * Workloads: 64 B (small-head slab data) and 1000 B (page-frag data) freed
 * as soon as they arrive, and the 1000 B payload read by a socket reader
 * (recvmsg: copy to a user buffer, then skbAttemptDeferFree in process
 * context), the case deferral was written for.
 */
export const DEFER_DATA = [
  { name: "small-64", len: 64, recv: false, pool: false },
  { name: "frag-1000", len: 1000, recv: false, pool: false },
  { name: "pp-1500", len: 1500, recv: false, pool: true },
  { name: "recvmsg-1000", len: 1000, recv: true, pool: false },
] as const;

/** Options of the defer benchmark. */
export interface DeferBenchOptions {
  /** Packets per segment (default 1M). */
  packets?: number;
  /** Rounds; each runs every case and payload once (default 5). */
  rounds?: number;
  /** Handles per ring push / pop (default 32). */
  burst?: number;
  /** Ring slots (default 1024). */
  ringSize?: number;
  /** skb_defer_max (default: the 6.19 profile's 128). */
  deferMax?: number;
  /** Called after each round. */
  onRound?: (round: number, rounds: number) => void;
}

/** One row (case × payload), the `--json` shape. */
export interface DeferBenchRow {
  case: DeferCase;
  data: string;
  /** Median ns per packet (alloc on CPU 0 + hand-over + free on CPU 1, pipelined). */
  nsPerPkt: number;
  minNsPerPkt: number;
  maxNsPerPkt: number;
  /** Millions of packets per second at the median. */
  mpps: number;
  /** Slab calls (every cache, both CPUs) per packet. */
  slabCallsPerPkt: number;
  /** Share of CPU 1's frees pushed onto CPU 0's list (0 when off). */
  deferredPct: number;
  /** Share of CPU 1's frees done locally because CPU 0's list was full. */
  freedFullPct: number;
  /** Kicks per million packets. */
  kicksPerMpkt: number;
  /** Lost push races in total. */
  casRetries: number;
  totalPackets: number;
}

/** The whole result. */
export interface DeferBenchResult {
  bench: "defer";
  profile: "6.19";
  packets: number;
  rounds: number;
  burst: number;
  ringSize: number;
  deferMax: number;
  node: string;
  cpus: number;
  /** Cache-line round trip between two worker CPUs before and after the run, ns (see cpu-pingpong.ts). */
  cpuRoundTripNs: number[];
  results: DeferBenchRow[];
  /**
   * defer-off ns / defer-on ns per workload (> 1: deferral is faster):
   * median, min and max over rounds of the ratio of each round's two
   * adjacent segments, and the ratio of the two medians.
   */
  ratios: { data: string; offOverOn: number; minOffOverOn: number; maxOffOverOn: number; ofMedians: number }[];
}

type Reply = DeferBenchSegment | { type: "ready" } | { type: "stopped" } | { type: "error"; message: string };

function next(w: Worker, type: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const onMsg = (m: Reply) => {
      if (m.type === "error") {
        w.off("message", onMsg);
        reject(new Error(`defer bench worker: ${(m as { message: string }).message}`));
      } else if (m.type === type) {
        w.off("message", onMsg);
        resolve(m);
      }
    };
    w.on("message", onMsg);
  });
}

function slabCalls(mem: SkbMemory): number {
  let n = 0;
  for (const s of mmSlabInfo(mem.mm)) n += s.allocs + s.frees + s.allocBulkCalls + s.freeBulkCalls;
  return n;
}


function round2(v: number): number {
  return Math.round(v * 100) / 100;
}

/**
 * Run the benchmark: two workers, both cases and payloads alternating in
 * every round. Throws if a worker fails or if heads or pages are left
 * allocated at the end. Allocates its own arena.
 */
export async function runDeferBench(o: DeferBenchOptions = {}): Promise<DeferBenchResult> {
  const packets = o.packets ?? 1_000_000;
  const rounds = o.rounds ?? 5;
  const burst = o.burst ?? 32;
  const ringSize = o.ringSize ?? 1024;
  if (!Number.isInteger(packets) || packets < 1024) throw new RangeError(`bench defer: --packets must be an integer >= 1024, got ${packets}`);
  if (!Number.isInteger(rounds) || rounds < 1) throw new RangeError(`bench defer: --rounds must be >= 1, got ${rounds}`);
  if (!Number.isInteger(burst) || burst < 1 || burst > ringSize) throw new RangeError(`bench defer: burst ${burst} must be in 1..${ringSize}`);
  const cpuRoundTrip = await cpuRoundTripNs();
  const ring = "bench:0>1";
  const mem = createSkbMemory({ arenaSize: 64 << 20, maxCpus: 2, debug: false, extraRegions: [ringRegionSpec(ring, ringSize)] });
  ringCreate(mem.arena, ring);
  const ctlSab = new SharedArrayBuffer(32);
  const ctl = new Int32Array(ctlSab);
  const mk = (role: "producer" | "consumer", cpu: number): Worker => {
    const cfg: DeferBenchWorkerConfig = { mem: mem.describe(), role, cpu, ring, burst, ctl: ctlSab, deferMax: o.deferMax };
    return new Worker(new URL("./defer-worker.js", import.meta.url), { workerData: cfg });
  };
  const prod = mk("producer", 0);
  const cons = mk("consumer", 1);
  const exited = Promise.all([new Promise((r) => prod.once("exit", r)), new Promise((r) => cons.once("exit", r))]);
  const samples = new Map<string, { ns: number[]; calls: number; pkts: number; attempts: number; full: number; local: number; kicks: number; cas: number; drained: number }>();
  try {
    await Promise.all([next(prod, "ready"), next(cons, "ready")]);
    const segment = async (c: DeferCase, d: (typeof DEFER_DATA)[number], n: number) => {
      Atomics.store(ctl, 0, 0);
      Atomics.store(ctl, 1, 0);
      const cmd: DeferBenchRun = { op: "run", defer: c === "defer-on", len: d.len, recv: d.recv, pool: d.pool, packets: n };
      const c0 = slabCalls(mem);
      const pp = next(prod, "segment");
      const cp = next(cons, "segment");
      prod.postMessage(cmd);
      cons.postMessage(cmd);
      const [p, q] = (await Promise.all([pp, cp])) as [DeferBenchSegment, DeferBenchSegment];
      return { ns: (q.t - p.t) / n, calls: slabCalls(mem) - c0, p, q };
    };
    // Warm-up: let V8 optimise both loops in both modes.
    for (const d of DEFER_DATA) for (const c of DEFER_CASES) await segment(c, d, Math.min(packets, 200_000));
    for (let r = 0; r < rounds; r++) {
      for (const d of DEFER_DATA) {
        // Alternate which case goes first, so drift and warm caches favour neither.
        const order = r % 2 === 0 ? DEFER_CASES : [...DEFER_CASES].reverse();
        for (const c of order) {
          const key = `${c}/${d.name}`;
          let s = samples.get(key);
          if (s === undefined) {
            s = { ns: [], calls: 0, pkts: 0, attempts: 0, full: 0, local: 0, kicks: 0, cas: 0, drained: 0 };
            samples.set(key, s);
          }
          const x = await segment(c, d, packets);
          s.ns.push(x.ns);
          s.calls += x.calls;
          s.pkts += packets;
          s.attempts += x.q.attempts;
          s.full += x.q.freedFull;
          s.local += x.q.freedLocal;
          s.kicks += x.q.kicks;
          s.cas += x.q.casRetries;
          s.drained += x.p.drained;
        }
      }
      o.onRound?.(r + 1, rounds);
    }
  } finally {
    prod.postMessage({ op: "stop" });
    cons.postMessage({ op: "stop" });
    await exited;
  }
  const left = mmSlabInfo(mem.mm).filter((s) => s.activeObjs !== 0);
  if (left.length > 0) {
    throw new Error(`bench defer: objects left allocated after teardown: ${left.map((s) => `${s.name} ${s.activeObjs}`).join(", ")}`);
  }
  const results: DeferBenchRow[] = [];
  for (const d of DEFER_DATA) {
    for (const c of DEFER_CASES) {
      const s = samples.get(`${c}/${d.name}`);
      if (s === undefined) continue;
      const med = median(s.ns);
      results.push({
        case: c,
        data: d.name,
        nsPerPkt: round2(med),
        minNsPerPkt: round2(Math.min(...s.ns)),
        maxNsPerPkt: round2(Math.max(...s.ns)),
        mpps: round2(1000 / med),
        slabCallsPerPkt: Math.round((s.calls / s.pkts) * 10000) / 10000,
        deferredPct: round2((100 * (s.attempts - s.full - s.local)) / s.pkts),
        freedFullPct: round2((100 * s.full) / s.pkts),
        kicksPerMpkt: round2((s.kicks * 1e6) / s.pkts),
        casRetries: s.cas,
        totalPackets: s.pkts,
      });
    }
  }
  // Paired: off / on of the two adjacent segments of each round, so a change
  // of the machine's cross-CPU latency mid-run hits both sides of a pair.
  const ratios = DEFER_DATA.map((d) => {
    const on = samples.get(`defer-on/${d.name}`)?.ns ?? [];
    const off = samples.get(`defer-off/${d.name}`)?.ns ?? [];
    const per = pairedRatios(off, on);
    return {
      data: d.name,
      offOverOn: round2(per.median),
      minOffOverOn: round2(per.min),
      maxOffOverOn: round2(per.max),
      ofMedians: round2(median(off) / median(on)),
    };
  });
  return {
    bench: "defer",
    profile: "6.19",
    packets,
    rounds,
    burst,
    ringSize,
    deferMax: o.deferMax ?? 128,
    node: process.version,
    cpus: availableParallelism(),
    cpuRoundTripNs: [cpuRoundTrip, await cpuRoundTripNs()],
    results,
    ratios,
  };
}

/** Render the result as an aligned text table. */
export function formatDeferBench(r: DeferBenchResult): string {
  const head = ["case", "data", "ns/pkt", "min", "max", "Mpps", "slab calls/pkt", "deferred %", "list full %", "kicks/Mpkt", "CAS retries"];
  const rows = r.results.map((x) => [
    x.case,
    x.data,
    x.nsPerPkt.toFixed(2),
    x.minNsPerPkt.toFixed(2),
    x.maxNsPerPkt.toFixed(2),
    x.mpps.toFixed(2),
    x.slabCallsPerPkt.toFixed(4),
    x.deferredPct.toFixed(1),
    x.freedFullPct.toFixed(1),
    x.kicksPerMpkt.toFixed(0),
    String(x.casRetries),
  ]);
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] as string).length)));
  const line = (cells: string[]) => cells.map((c, i) => (i < 2 ? c.padEnd(w[i] as number) : c.padStart(w[i] as number))).join("  ");
  return [
    `bench defer — profile ${r.profile}, 2 worker CPUs (${r.cpus} available), ${r.rounds} rounds × ${r.packets} packets per case, ` +
      `burst ${r.burst}, ring ${r.ringSize}, skb_defer_max ${r.deferMax}, Node ${r.node}`,
    cpuRoundTripLine(r.cpuRoundTripNs),
    "",
    line(head),
    line(w.map((n) => "-".repeat(n))),
    ...rows.map(line),
    "",
    "defer-off / defer-on, paired per round (> 1 means deferral is faster): median (min–max); ratio of medians",
    ...r.ratios.map(
      (q) =>
        `  ${q.data.padEnd(12)} ${q.offOverOn.toFixed(2)}× (${q.minOffOverOn.toFixed(2)}–${q.maxOffOverOn.toFixed(2)}); ${q.ofMedians.toFixed(2)}×`,
    ),
  ].join("\n");
}
