/**
 * `skb bench --workers 1,2`: the router on N worker CPUs over one shared
 * arena (src/smp/cluster.ts), for each worker count the NAPI head cache off
 * and on alternating in every round. Reports aggregate Mpps, the scaling
 * against one worker, GCs and slab calls per packet. With several CPUs the
 * slab lock is contended, so this is where the per-CPU cache matters most.
 *
 * @module
 */

import type { TrafficProto } from "../drivers/traffic.js";
import { clusterRun, clusterStart, clusterStop } from "../smp/cluster.js";
import { median } from "./stats.js";

/** Options. */
export interface WorkersBenchOptions {
  workers: readonly number[];
  proto?: TrafficProto;
  size?: number | "imix";
  duration?: number;
  rounds?: number;
  profile?: string;
  onProgress?: (label: string, round: number, rounds: number) => void;
}

/** One row (JSON names are part of the interface). */
export interface WorkersBenchRow {
  workers: number;
  cache: "on" | "off";
  proto: TrafficProto;
  size: number | "imix";
  mpps: number;
  gbps: number;
  /** Mpps relative to the 1-worker row of the same cache mode (when measured). */
  scaling: number;
  gcCount: number;
  slabCallsPerPacket: number;
  perWorkerMpps: number[];
}

/** Result (`--json`). */
export interface WorkersBenchResult {
  bench: "workers";
  profile: string;
  rounds: number;
  duration: number;
  cpus: number;
  results: WorkersBenchRow[];
  accounting: { ok: boolean; problems: string[] };
}

const r3 = (v: number) => Math.round(v * 1000) / 1000;

/** Run the multi-worker benchmark. */
export async function runWorkersBench(o: WorkersBenchOptions): Promise<WorkersBenchResult> {
  const proto = o.proto ?? "udp";
  const size = o.size ?? 64;
  const duration = o.duration ?? 0.5;
  const rounds = o.rounds ?? 5;
  const profile = o.profile ?? "5.12";
  const results: WorkersBenchRow[] = [];
  const problems: string[] = [];
  const { availableParallelism } = await import("node:os");
  for (const n of o.workers) {
    const c = await clusterStart({
      workers: n,
      profile,
      traffic: { proto, size, flows: proto === "udp" ? 64 : 8 * n },
    });
    try {
      await clusterRun(c, Math.min(0.3, duration), true);
      await clusterRun(c, Math.min(0.3, duration), false);
      const seg: { on: Awaited<ReturnType<typeof clusterRun>>[]; off: Awaited<ReturnType<typeof clusterRun>>[] } = { on: [], off: [] };
      for (let r = 0; r < rounds; r++) {
        const order = r % 2 === 0 ? [false, true] : [true, false];
        for (const on of order) (on ? seg.on : seg.off).push(await clusterRun(c, duration, on));
        o.onProgress?.(`${n} worker${n > 1 ? "s" : ""}`, r + 1, rounds);
      }
      for (const mode of ["off", "on"] as const) {
        const list = mode === "on" ? seg.on : seg.off;
        results.push({
          workers: n,
          cache: mode,
          proto,
          size,
          mpps: r3(median(list.map((x) => x.mpps))),
          gbps: r3(median(list.map((x) => x.gbps))),
          scaling: 1,
          gcCount: list.reduce((k, x) => k + x.gcCount, 0),
          slabCallsPerPacket: Math.round(median(list.map((x) => x.slabCallsPerPacket)) * 1000) / 1000,
          perWorkerMpps: (list[list.length >> 1] as (typeof list)[number]).perWorkerMpps.map(r3),
        });
      }
    } finally {
      const stop = await clusterStop(c);
      if (!stop.ok) problems.push(...stop.problems.map((p) => `${n} workers: ${p}`));
    }
  }
  for (const row of results) {
    const one = results.find((x) => x.workers === 1 && x.cache === row.cache);
    if (one !== undefined) row.scaling = r3(row.mpps / one.mpps);
  }
  return {
    bench: "workers",
    profile,
    rounds,
    duration,
    cpus: availableParallelism(),
    results,
    accounting: { ok: problems.length === 0, problems },
  };
}

/** Text table. */
export function formatWorkersBench(r: WorkersBenchResult): string {
  const head = ["workers", "cache", "Mpps", "Gbps", "vs 1 worker", "GCs", "slab calls/pkt", "per worker Mpps"];
  const rows = r.results.map((x) => [
    String(x.workers),
    x.cache,
    x.mpps.toFixed(3),
    x.gbps.toFixed(3),
    `${x.scaling.toFixed(2)}×`,
    String(x.gcCount),
    x.slabCallsPerPacket.toFixed(3),
    x.perWorkerMpps.map((v) => v.toFixed(3)).join(" "),
  ]);
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] as string).length)));
  const line = (c: string[]) => c.map((x, i) => (i === 1 || i === 7 ? x.padEnd(w[i] as number) : x.padStart(w[i] as number))).join("  ");
  const first = r.results[0];
  return [
    `skb bench --workers — ${first ? `${first.proto} ${first.size}, ` : ""}profile ${r.profile}, ${r.rounds} rounds × ${r.duration} s per mode, ${r.cpus} CPUs`,
    "",
    line(head),
    line(w.map((n) => "-".repeat(n))),
    ...rows.map(line),
    "",
    r.accounting.ok
      ? "accounting: ok — every worker balanced its packets; 0 objects in use after all workers stopped"
      : `accounting: FAILED — ${r.accounting.problems.join("; ")}`,
  ].join("\n");
}
