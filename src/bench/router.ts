/**
 * `skb bench` (router): the seed's A/B. Traffic from pktgen through the VLAN
 * NAT router to the sink and back, TCP and UDP, 64 B, 1518 B and IMIX, with
 * the NAPI head cache off and on, alternating inside every round in one
 * process; plus a baseline row: the same router written the idiomatic Node
 * way (an object and a Buffer per packet), same traffic, same run.
 *
 * Per case and mode: Mpps, Gbps (frame bytes sent by the generator), ns per
 * packet, on/off ratio, GC count (v8.GCProfiler), slab calls per packet,
 * NAPI cache hits/refills/flushes, drops by reason. After every case the
 * packet accounting (sent + generated = received + dropped + queued) must
 * hold and teardown must find 0 heads and 0 pages in use, or the bench
 * fails.
 *
 * @module
 */

import { GCProfiler } from "node:v8";
import { kmemCacheInfo } from "../mm/slab.js";
import { NAPI_STAT_FLUSHES, NAPI_STAT_REFILLS, napiCacheHits } from "../skb/cpu.js";
import { DROP_REASON_NAMES } from "../skb/drop-reason.js";
import { napiCacheIsEnabled, napiCacheSetEnabled } from "../skb/napi-cache.js";
import { PG_TX, PG_TX_BYTES } from "../drivers/pktgen.js";
import { resolveTraffic, type TrafficOptions, type TrafficProto } from "../drivers/traffic.js";
import { type Scenario, scenarioAccounting, scenarioCreate, scenarioDestroy, scenarioRun } from "../router/scenario.js";
import { type BaselineResult, runBaseline } from "./baseline.js";
import { renderBarChart } from "./svg.js";
import { median } from "./stats.js";

/** One case of the matrix. */
export interface RouterCase {
  proto: TrafficProto;
  size: number | "imix";
}

/** The default matrix: TCP and UDP × 64, 1518, IMIX. */
export const ROUTER_CASES: readonly RouterCase[] = [
  { proto: "udp", size: 64 },
  { proto: "udp", size: 1518 },
  { proto: "udp", size: "imix" },
  { proto: "tcp", size: 64 },
  { proto: "tcp", size: 1518 },
  { proto: "tcp", size: "imix" },
];

/** Options of the router benchmark. */
export interface RouterBenchOptions {
  cases?: readonly RouterCase[];
  /** Seconds per measured segment (default 0.5). */
  duration?: number;
  /** Rounds, each running off and on once (default 5). */
  rounds?: number;
  profile?: string;
  /** Flows: UDP default 64, TCP default 4 (like iperf3 -P 4). */
  udpFlows?: number;
  tcpFlows?: number;
  /** Run the idiomatic-Node baseline too (default true). */
  baseline?: boolean;
  /** Progress callback (case label, round, rounds). */
  onProgress?: (label: string, round: number, rounds: number) => void;
}

/** One result row (JSON names are part of the interface). */
export interface RouterBenchRow {
  proto: TrafficProto;
  size: number | "imix";
  cache: "on" | "off";
  mpps: number;
  gbps: number;
  nsPerPacket: number;
  /** on/off Mpps ratio (same on both rows of a case). */
  ratio: number;
  mppsMin: number;
  mppsMax: number;
  gcCount: number;
  packets: number;
  slabCallsPerPacket: number;
  cacheHits: number;
  cacheRefills: number;
  cacheFlushes: number;
  drops: Record<string, number>;
}

/** The whole result (the `--json` shape). */
export interface RouterBenchResult {
  bench: "router";
  profile: string;
  rounds: number;
  duration: number;
  node: string;
  results: RouterBenchRow[];
  baseline: (BaselineResult & { proto: TrafficProto; size: number | "imix"; ratioOnToBaseline: number })[];
  accounting: { ok: boolean; cases: { proto: TrafficProto; size: number | "imix"; ok: boolean; leaksOk: boolean; problems: string[] }[] };
}

function label(c: RouterCase): string {
  return `${c.proto} ${c.size}`;
}


interface Seg {
  mpps: number;
  gbps: number;
  packets: number;
  gc: number;
  slabCalls: number;
  hits: number;
  refills: number;
  flushes: number;
}

function headSlabCalls(s: Scenario): number {
  const i = kmemCacheInfo(s.mem.headCache);
  return i.allocs + i.frees + i.allocBulkCalls + i.freeBulkCalls;
}

/** Run one measured segment of about `seconds` with the cache on or off. */
function segment(s: Scenario, on: boolean, seconds: number, chunk: number): Seg {
  napiCacheSetEnabled(on);
  const st = s.cpu.stats;
  const pg = s.pktgen;
  const tx0 = pg.stats[PG_TX] as number;
  const b0 = pg.stats[PG_TX_BYTES] as number;
  const c0 = headSlabCalls(s);
  const h0 = napiCacheHits(s.cpu);
  const r0 = st[NAPI_STAT_REFILLS] as number;
  const f0 = st[NAPI_STAT_FLUSHES] as number;
  const prof = new GCProfiler();
  prof.start();
  const limit = seconds * 1e9;
  let ns = 0;
  while (ns < limit) ns += scenarioRun(s, chunk).ns;
  const gc = prof.stop().statistics.length;
  const packets = (pg.stats[PG_TX] as number) - tx0;
  const bytes = (pg.stats[PG_TX_BYTES] as number) - b0;
  return {
    mpps: packets / (ns / 1e9) / 1e6,
    gbps: (bytes * 8) / ns,
    packets,
    gc,
    slabCalls: headSlabCalls(s) - c0,
    hits: napiCacheHits(s.cpu) - h0,
    refills: (st[NAPI_STAT_REFILLS] as number) - r0,
    flushes: (st[NAPI_STAT_FLUSHES] as number) - f0,
  };
}

function dropsOf(s: Scenario): Record<string, number> {
  const out: Record<string, number> = {};
  for (const d of s.ns.list()) {
    d.drops.forEach((n, i) => {
      if (n > 0) {
        const k = `${d.name}:${DROP_REASON_NAMES[i]}`;
        out[k] = (out[k] ?? 0) + n;
      }
    });
  }
  return out;
}

const r2 = (v: number) => Math.round(v * 1000) / 1000;

/** Run the router benchmark. */
export function runRouterBench(o: RouterBenchOptions = {}): RouterBenchResult {
  const cases = o.cases ?? ROUTER_CASES;
  const duration = o.duration ?? 0.5;
  const rounds = o.rounds ?? 5;
  const profile = o.profile ?? "5.12";
  if (!(duration > 0) || duration > 600) throw new RangeError(`bench: --duration must be in (0, 600] seconds, got ${duration}`);
  if (!Number.isInteger(rounds) || rounds < 1) throw new RangeError(`bench: --rounds must be a positive integer, got ${rounds}`);
  const wasOn = napiCacheIsEnabled();
  const results: RouterBenchRow[] = [];
  const baseline: RouterBenchResult["baseline"] = [];
  const acct: RouterBenchResult["accounting"]["cases"] = [];
  try {
    for (const c of cases) {
      const flows = c.proto === "udp" ? (o.udpFlows ?? 64) : (o.tcpFlows ?? 4);
      const traffic: TrafficOptions = { proto: c.proto, size: c.size, flows };
      const s = scenarioCreate({ traffic, profile, fullValidation: false });
      const chunk = 4096;
      // Warm-up: both modes, so neither is measured cold.
      segment(s, true, Math.min(0.2, duration), chunk);
      segment(s, false, Math.min(0.2, duration), chunk);
      const segs: { on: Seg[]; off: Seg[] } = { on: [], off: [] };
      const base: BaselineResult[] = [];
      for (let r = 0; r < rounds; r++) {
        // Alternate which mode goes first, so drift does not favour one.
        const order = r % 2 === 0 ? [false, true] : [true, false];
        for (const on of order) (on ? segs.on : segs.off).push(segment(s, on, duration, chunk));
        if (o.baseline ?? true) {
          const pk = Math.max(2000, Math.round(median(segs.off.map((x) => x.mpps)) * 1e6 * duration * 0.5));
          base.push(runBaseline({ traffic: resolveTraffic(traffic), packets: pk, fullValidation: false }));
        }
        o.onProgress?.(label(c), r + 1, rounds);
      }
      const a = scenarioAccounting(s);
      const drops = dropsOf(s);
      const leaks = scenarioDestroy(s);
      acct.push({ proto: c.proto, size: c.size, ok: a.ok, leaksOk: leaks.ok, problems: [...a.problems, ...(leaks.ok ? [] : [`leak: ${JSON.stringify(leaks.slabsInUse)}`])] });
      const onMpps = median(segs.on.map((x) => x.mpps));
      const offMpps = median(segs.off.map((x) => x.mpps));
      for (const mode of ["off", "on"] as const) {
        const list = mode === "on" ? segs.on : segs.off;
        const mpps = median(list.map((x) => x.mpps));
        const packets = list.reduce((n, x) => n + x.packets, 0);
        results.push({
          proto: c.proto,
          size: c.size,
          cache: mode,
          mpps: r2(mpps),
          gbps: r2(median(list.map((x) => x.gbps))),
          nsPerPacket: Math.round(1000 / mpps),
          ratio: r2(onMpps / offMpps),
          mppsMin: r2(Math.min(...list.map((x) => x.mpps))),
          mppsMax: r2(Math.max(...list.map((x) => x.mpps))),
          gcCount: list.reduce((n, x) => n + x.gc, 0),
          packets,
          slabCallsPerPacket: Math.round((list.reduce((n, x) => n + x.slabCalls, 0) / packets) * 10000) / 10000,
          cacheHits: list.reduce((n, x) => n + x.hits, 0),
          cacheRefills: list.reduce((n, x) => n + x.refills, 0),
          cacheFlushes: list.reduce((n, x) => n + x.flushes, 0),
          drops,
        });
      }
      if (base.length > 0) {
        const mid = [...base].sort((x, y) => x.mpps - y.mpps)[base.length >> 1] as BaselineResult;
        baseline.push({ ...mid, proto: c.proto, size: c.size, ratioOnToBaseline: r2(onMpps / mid.mpps) });
      }
    }
  } finally {
    napiCacheSetEnabled(wasOn);
  }
  const ok = acct.every((x) => x.ok && x.leaksOk);
  return { bench: "router", profile, rounds, duration, node: process.version, results, baseline, accounting: { ok, cases: acct } };
}

/** Render the result as text tables. */
export function formatRouterBench(r: RouterBenchResult): string {
  const head = ["case", "cache", "Mpps", "Gbps", "ns/pkt", "on/off", "GCs", "slab calls/pkt", "hits", "refills", "flushes"];
  const rows = r.results.map((x) => [
    `${x.proto} ${x.size}`,
    x.cache,
    x.mpps.toFixed(3),
    x.gbps.toFixed(3),
    String(x.nsPerPacket),
    x.cache === "on" ? `${x.ratio.toFixed(3)}×` : "",
    String(x.gcCount),
    x.slabCallsPerPacket.toFixed(4),
    String(x.cacheHits),
    String(x.cacheRefills),
    String(x.cacheFlushes),
  ]);
  const table = (h: string[], body: string[][]) => {
    const w = h.map((t, i) => Math.max(t.length, ...body.map((b) => (b[i] as string).length)));
    const line = (c: string[]) => c.map((x, i) => (i < 2 ? x.padEnd(w[i] as number) : x.padStart(w[i] as number))).join("  ");
    return [line(h), line(w.map((n) => "-".repeat(n))), ...body.map(line)].join("\n");
  };
  const out = [
    `skb bench — VLAN NAT router, profile ${r.profile}, ${r.rounds} rounds × ${r.duration} s per mode, Node ${r.node}`,
    "",
    table(head, rows),
  ];
  if (r.baseline.length > 0) {
    out.push("", "baseline (an object and a Buffer per packet, same traffic):", "");
    out.push(
      table(
        ["case", "", "Mpps", "GCs", "cache on / baseline"],
        r.baseline.map((b) => [`${b.proto} ${b.size}`, "", b.mpps.toFixed(3), String(b.gcCount), `${b.ratioOnToBaseline.toFixed(2)}×`]),
      ),
    );
  }
  const drops = r.results.filter((x) => x.cache === "on" && Object.keys(x.drops).length > 0);
  out.push("");
  if (drops.length === 0) out.push("drops: none");
  else for (const d of drops) out.push(`drops ${d.proto} ${d.size}: ${JSON.stringify(d.drops)}`);
  out.push(
    r.accounting.ok
      ? "accounting: ok — every packet received or dropped by reason; 0 heads, 0 pages in use after teardown"
      : `accounting: FAILED — ${r.accounting.cases.flatMap((c) => c.problems).join("; ")}`,
  );
  return out.join("\n");
}

/** The on/off/baseline Mpps chart. */
export function routerBenchSvg(r: RouterBenchResult): string {
  const cases = [...new Set(r.results.map((x) => `${x.proto} ${x.size}`))];
  const series = ["baseline (Buffer per packet)", "NAPI cache off", "NAPI cache on"];
  return renderBarChart({
    title: `skb bench: VLAN NAT router, Mpps (profile ${r.profile}, Node ${r.node})`,
    unit: "Mpps",
    series,
    groups: cases.map((label) => {
      const off = r.results.find((x) => `${x.proto} ${x.size}` === label && x.cache === "off")?.mpps ?? Number.NaN;
      const on = r.results.find((x) => `${x.proto} ${x.size}` === label && x.cache === "on")?.mpps ?? Number.NaN;
      const base = r.baseline.find((x) => `${x.proto} ${x.size}` === label)?.mpps ?? Number.NaN;
      return { label, values: [base, off, on] };
    }),
  });
}
