/**
 * The cpumap path on two worker CPUs: CPU 0 redirects UDP frames to CPU 1,
 * which builds their heads with ONE napiSkbCacheGetBulk per batch of 8
 * (bulk on, the 6.15+ kernel) or ONE zeroing kmemCacheAllocBulk from the
 * shared head slab per batch (bulk off, the ≤ 6.14 kthread), and frees
 * them (pages go home to CPU 0's pool through its ring). Rounds alternate
 * the two modes in one process. Also the test harness of the cpumap.
 *
 * @module
 */

import { cpuRoundTripLine, cpuRoundTripNs } from "./cpu-pingpong.js";
import { Worker } from "node:worker_threads";
import { mmSlabInfo } from "../mm/mm.js";
import { createSkbMemory } from "../skb/memory.js";
import { cpumapCreate, cpumapRegionSpecs } from "../drivers/cpumap.js";
import type { CpumapWorkerConfig } from "./cpumap-worker.js";
import { median, pairedRatios } from "./stats.js";

/** Options. */
export interface CpumapBenchOptions {
  packets?: number;
  rounds?: number;
  onProgress?: (round: number, rounds: number) => void;
}

/** One row (JSON). */
export interface CpumapBenchRow {
  bulkHeads: "on" | "off";
  mpps: number;
  nsPerPacket: number;
  gcCount: number;
  /**
   * off / on: the median over rounds of each round's two adjacent segments
   * (a change of the machine's cross-CPU latency mid-run hits both sides of
   * a pair), with the range and the ratio of the two medians.
   */
  ratio: number;
  minRatio: number;
  maxRatio: number;
  ratioOfMedians: number;
}

/** Result. */
export interface CpumapBenchResult {
  bench: "cpumap";
  packets: number;
  rounds: number;
  /** Cache-line round trip between two worker CPUs before and after the run, ns (see cpu-pingpong.ts). */
  cpuRoundTripNs: number[];
  results: CpumapBenchRow[];
  received: number;
  accounting: { ok: boolean; problems: string[] };
}

type Reply = { type: string; role?: string; ns?: number; gcCount?: number; received?: number; bad?: number; fullDrops?: number; noHeadDrops?: number; message?: string };

/** The next reply of `type` from `w`; rejects on an error reply or a worker error. Removes its listeners either way. */
function once(w: Worker, type: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const done = (): void => {
      w.off("message", onMsg);
      w.off("error", onErr);
    };
    const onErr = (e: Error): void => {
      done();
      reject(e);
    };
    const onMsg = (m: Reply): void => {
      if (m.type === "error") {
        done();
        reject(new Error(m.message));
      } else if (m.type === type) {
        done();
        resolve(m);
      }
    };
    w.on("message", onMsg);
    w.on("error", onErr);
  });
}


/** Run the cpumap benchmark (two workers, bulk heads on/off alternating). */
export async function runCpumapBench(o: CpumapBenchOptions = {}): Promise<CpumapBenchResult> {
  const packets = o.packets ?? 1_000_000;
  const rounds = o.rounds ?? 5;
  if (!Number.isInteger(packets) || packets < 64) throw new RangeError(`cpumap bench: packets ${packets} must be >= 64`);
  const cpuRoundTrip = await cpuRoundTripNs();
  const mem = createSkbMemory({ arenaSize: 64 << 20, maxCpus: 2, extraRegions: cpumapRegionSpecs("0to1", 2048) });
  cpumapCreate(mem.arena, "0to1");
  const mk = (role: "producer" | "consumer", cpu: number) => {
    const cfg: CpumapWorkerConfig = { mem: mem.describe(), role, cpu, map: "0to1" };
    const w = new Worker(new URL("./cpumap-worker.js", import.meta.url), { workerData: cfg });
    return w;
  };
  const consumer = mk("consumer", 1);
  const producer = mk("producer", 0);
  // Listen for the exits now: a worker may be gone before a later listener is attached.
  const exited = Promise.all([new Promise((r) => consumer.once("exit", r)), new Promise((r) => producer.once("exit", r))]);
  await Promise.all([once(consumer, "ready"), once(producer, "ready")]);
  const seg: { on: number[]; off: number[]; gcOn: number; gcOff: number } = { on: [], off: [], gcOn: 0, gcOff: 0 };
  const round = async (bulk: boolean, n: number) => {
    const c = once(consumer, "done");
    const p = once(producer, "done");
    consumer.postMessage({ cmd: "run", packets: n, bulk });
    producer.postMessage({ cmd: "run", packets: n, bulk });
    const [rc, rp] = await Promise.all([c, p]);
    return { ns: Math.max(rc.ns as number, rp.ns as number), gc: (rc.gcCount as number) + (rp.gcCount as number) };
  };
  await round(true, Math.min(packets, 100_000));
  await round(false, Math.min(packets, 100_000));
  for (let r = 0; r < rounds; r++) {
    for (const bulk of r % 2 === 0 ? [false, true] : [true, false]) {
      const x = await round(bulk, packets);
      (bulk ? seg.on : seg.off).push(x.ns / packets);
      if (bulk) seg.gcOn += x.gc;
      else seg.gcOff += x.gc;
    }
    o.onProgress?.(r + 1, rounds);
  }
  // Consumer first: every page is home before the producer destroys its pool.
  const sc = once(consumer, "stopped");
  consumer.postMessage({ cmd: "stop" });
  const cs = await sc;
  const sp = once(producer, "stopped");
  producer.postMessage({ cmd: "stop" });
  await sp;
  await exited;
  const problems: string[] = [];
  const expected = packets * rounds * 2 + 2 * Math.min(packets, 100_000);
  if (cs.received !== expected) problems.push(`consumer received ${cs.received} of ${expected} frames`);
  if ((cs.bad ?? 0) !== 0) problems.push(`${cs.bad} frames arrived damaged`);
  if ((cs.noHeadDrops ?? 0) !== 0) problems.push(`${cs.noHeadDrops} frames found no head`);
  for (const i of mmSlabInfo(mem.mm)) if (i.activeObjs !== 0) problems.push(`${i.name}: ${i.activeObjs} objects still in use`);
  const on = median(seg.on);
  const off = median(seg.off);
  const per = pairedRatios(seg.off, seg.on);
  const r3 = (v: number) => Math.round(v * 1000) / 1000;
  const row = (bulk: boolean, ns: number, gc: number): CpumapBenchRow => ({
    bulkHeads: bulk ? "on" : "off",
    mpps: Math.round((1000 / ns) * 1000) / 1000,
    nsPerPacket: Math.round(ns),
    gcCount: gc,
    ratio: r3(per.median),
    minRatio: r3(per.min),
    maxRatio: r3(per.max),
    ratioOfMedians: r3(off / on),
  });
  return {
    bench: "cpumap",
    packets,
    rounds,
    cpuRoundTripNs: [cpuRoundTrip, await cpuRoundTripNs()],
    results: [row(false, off, seg.gcOff), row(true, on, seg.gcOn)],
    received: cs.received as number,
    accounting: { ok: problems.length === 0, problems },
  };
}

/** Text table. */
export function formatCpumapBench(r: CpumapBenchResult): string {
  return [
    `skb bench cpumap — 2 worker CPUs, ${r.rounds} rounds × ${r.packets} frames per mode`,
    cpuRoundTripLine(r.cpuRoundTripNs),
    "",
    "bulk heads   Mpps  ns/pkt  GCs  speed-up (off ns / on ns, paired per round)",
    "----------  -----  ------  ---  --------------------------------------------",
    ...r.results.map(
      (x) =>
        `${x.bulkHeads.padEnd(10)}  ${x.mpps.toFixed(3).padStart(5)}  ${String(x.nsPerPacket).padStart(6)}  ${String(x.gcCount).padStart(3)}  ${x.bulkHeads === "on" ? `${x.ratio.toFixed(2)}× (rounds ${x.minRatio.toFixed(2)}–${x.maxRatio.toFixed(2)}; of medians ${x.ratioOfMedians.toFixed(2)}×)` : ""}`,
    ),
    "",
    r.accounting.ok ? `accounting: ok — all ${r.received} frames arrived intact; 0 objects in use` : `accounting: FAILED — ${r.accounting.problems.join("; ")}`,
  ].join("\n");
}
