/**
 * `skb forward --workers N`: the router of src/router/forward.ts on N worker
 * threads as N CPUs over ONE shared arena.
 *
 * ```
 *  main thread: config, memory, rings, doorbells; stats and the final report (no packets)
 *    ├─ worker 0: queue 0 of every TAP, NAPI cache 0, conntrack partition 0, NAT ports/ICMP ids slice 0
 *    └─ worker 1: queue 1 of every TAP, ...                 partition 1, slice 1
 *  rings: one SPSC ring per ordered pair of CPUs for packets another CPU owns
 * ```
 *
 * The kernel spreads the TAPs' flows over the queues; each packet's owner is
 * fixed by src/smp/forward-steer.ts and a packet that arrived elsewhere is
 * handed over (src/smp/forward-worker.ts). Only TAP devices can be shared
 * this way (a capture file or a UDP socket has one reader): other device
 * types are refused with a clear error.
 *
 * Shutdown is two-phase so that no packet is stranded on a ring: every CPU
 * first stops handing packets over ("quiesce"), then each drains its
 * incoming rings, closes its queues and reports ("stop"). With every worker
 * gone the controller checks the whole arena for leaks.
 *
 * @module
 */

import { randomBytes } from "node:crypto";
import { Worker } from "node:worker_threads";
import { ringCreate, ringRegionSpec } from "../core/ring.js";
import { mmSlabInfo } from "../mm/mm.js";
import { kmemCacheInfo } from "../mm/slab.js";
import { conntrackRegionSpec } from "../net/conntrack.js";
import {
  type ForwardAccounting,
  type ForwardAccountingTerms,
  type ForwardConfig,
  ForwardConfigError,
  type ForwardReport,
  type ForwardStats,
  forwardAccountingCheck,
} from "../router/forward.js";
import { createSkbCpu } from "../skb/cpu.js";
import { skbDeferFreeFlush } from "../skb/defer.js";
import { createSkbMemory } from "../skb/memory.js";
import { napiSkbCacheDrain } from "../skb/napi-cache.js";
import { pageFragCacheDrain } from "../mm/page-frag.js";
import { type ForwardWorkerConfig, type ForwardWorkerMessage, type ForwardWorkerReply, fwdRingName } from "./forward-protocol.js";
import { SteerLayout, steerIcmpIdRange, steerPortRange } from "./forward-steer.js";

/** Handles per hand-over ring. */
export const FWD_RING_SIZE = 4096;

/** Options of {@link forwardClusterRun}. */
export interface ForwardClusterOptions {
  workers: number;
  signal?: AbortSignal;
  statsMs?: number;
  onStats?: (s: ForwardClusterStats) => void;
  /** Called once every worker is up, with what it opened. */
  onReady?: (devices: string[]) => void;
}

/** Live counters summed over the CPUs, plus each CPU's share. */
export interface ForwardClusterStats extends ForwardStats {
  workers: number;
  perCpu: { id: number; forwarded: number; handoff: Record<string, number> }[];
}

/** The final report: {@link ForwardReport} summed over the CPUs, the leak check over the whole arena. */
export interface ForwardClusterReport extends ForwardReport {
  workers: number;
  handoff: Record<string, number>;
  perCpu: { id: number; ok: boolean; forwarded: number; handoff: Record<string, number>; leftover: number }[];
  problems: string[];
}

/** Refuse what several CPUs cannot share (throws ForwardConfigError). */
export function forwardClusterCheck(config: ForwardConfig, workers: number): void {
  if (!Number.isInteger(workers) || workers < 1 || workers > 64) throw new ForwardConfigError(`--workers: ${workers} must be an integer 1..64`);
  if (workers === 1) return;
  config.devices.forEach((d, i) => {
    if (d.type !== "tap") {
      throw new ForwardConfigError(
        `config: devices[${i}] '${d.name}' is a ${d.type} device; with --workers ${workers} every device must be a tap ` +
          "(each CPU opens its own queue of a multi-queue TAP; a capture file or a UDP socket cannot be shared)",
      );
    }
  });
}

/** Sum `b` into `a`: numbers add, objects recurse, device lists merge by name. Cold. */
function sumInto(a: Record<string, unknown>, b: Record<string, unknown>): void {
  for (const [k, v] of Object.entries(b)) {
    const cur = a[k];
    if (typeof v === "number") a[k] = (typeof cur === "number" ? cur : 0) + v;
    else if (k === "devices" && Array.isArray(v)) {
      const list = (Array.isArray(cur) ? cur : []) as Record<string, unknown>[];
      for (const d of v as Record<string, unknown>[]) {
        const same = list.find((x) => x.name === d.name);
        if (same === undefined) list.push({ ...d });
        else sumInto(same, d);
      }
      a[k] = list;
    } else if (v !== null && typeof v === "object" && !Array.isArray(v)) {
      const o = (cur !== null && typeof cur === "object" ? cur : {}) as Record<string, unknown>;
      sumInto(o, v as Record<string, unknown>);
      a[k] = o;
    } else if (cur === undefined) a[k] = v;
  }
}

/**
 * Start N worker CPUs on the TAP devices of `config` and run until the
 * signal aborts; then shut down in two phases and resolve with the merged
 * report. Rejects (after stopping every worker) when a worker fails to start.
 */
export async function forwardClusterRun(config: ForwardConfig, o: ForwardClusterOptions): Promise<ForwardClusterReport> {
  const n = o.workers;
  forwardClusterCheck(config, n);
  // Every CPU registers the same devices in the same order (so ifindexes agree
  // across CPUs) with the same MAC: pick the MACs the config leaves open here.
  const cfg: ForwardConfig = {
    ...config,
    devices: config.devices.map((d) => {
      if (d.mac !== undefined) return d;
      const b = randomBytes(6);
      b[0] = ((b[0] as number) & 0xfe) | 0x02;
      return { ...d, mac: [...b].map((x) => x.toString(16).padStart(2, "0")).join(":") };
    }),
  };
  const ctNames = Array.from({ length: n }, (_, w) => `nf_conntrack_${w}`);
  const rings: string[] = [];
  for (let a = 0; a < n; a++) for (let b = 0; b < n; b++) if (a !== b) rings.push(fwdRingName(a, b));
  const bellRegion = "fwd_doorbells";
  const mem = createSkbMemory({
    arenaSize: Math.min(1 << 30, cfg.arenaSize * n),
    maxCpus: n,
    extraRegions: [
      ...ctNames.flatMap((name) => conntrackRegionSpec({ max: cfg.conntrackMax, name })),
      ...rings.map((r) => ringRegionSpec(r, FWD_RING_SIZE)),
      { name: bellRegion, size: n * 64, align: 64 },
    ],
  });
  for (const r of rings) ringCreate(mem.arena, r);
  const layout = new SteerLayout(n, -1, 0);
  const workers: Worker[] = [];
  const waiting = new Map<number, (m: ForwardWorkerReply) => void>();
  const errors: string[] = [];
  const exits: Promise<unknown>[] = [];
  const expect = (type: ForwardWorkerReply["type"]): Promise<ForwardWorkerReply[]> =>
    Promise.all(
      workers.map(
        (_, id) =>
          new Promise<ForwardWorkerReply>((resolve, reject) => {
            waiting.set(id, (m) => {
              if (m.type === "error") reject(new Error(`worker ${id}: ${m.message}`));
              else if (m.type === type) resolve(m);
              else reject(new Error(`worker ${id}: expected ${type}, got ${m.type}`));
            });
          }),
      ),
    );
  for (let w = 0; w < n; w++) {
    const wc: ForwardWorkerConfig = {
      mem: mem.describe(),
      config: cfg,
      id: w,
      workers: n,
      conntrackName: ctNames[w] as string,
      natPorts: steerPortRange(layout, w),
      natIcmpIds: steerIcmpIdRange(layout, w),
      bellRegion,
    };
    const worker = new Worker(new URL("./forward-worker.js", import.meta.url), { workerData: wc });
    exits.push(new Promise((r) => worker.once("exit", r)));
    worker.on("message", (m: ForwardWorkerReply) => {
      const h = waiting.get(m.id);
      if (h !== undefined) {
        waiting.delete(m.id);
        h(m);
      } else if (m.type === "error") errors.push(`worker ${m.id}: ${m.message}`);
    });
    worker.on("error", (e) => {
      const h = waiting.get(w);
      waiting.delete(w);
      if (h !== undefined) h({ type: "error", id: w, message: e.stack ?? String(e) });
      else errors.push(`worker ${w}: ${e.stack ?? String(e)}`);
    });
    workers.push(worker);
  }
  try {
    const ready = (await expect("ready")) as Extract<ForwardWorkerReply, { type: "ready" }>[];
    o.onReady?.((ready[0] as { devices: string[] }).devices);
  } catch (e) {
    await Promise.all(workers.map((w) => w.terminate()));
    throw e;
  }
  // ---- running: stats on request until the signal
  let statsTimer: NodeJS.Timeout | undefined;
  let statsBusy = false;
  if (o.statsMs !== undefined && o.onStats !== undefined) {
    const onStats = o.onStats;
    statsTimer = setInterval(() => {
      if (statsBusy) return;
      statsBusy = true;
      const got = expect("stats");
      for (const w of workers) w.postMessage({ cmd: "stats" } satisfies ForwardWorkerMessage);
      got
        .then((rs) => {
          const list = rs as Extract<ForwardWorkerReply, { type: "stats" }>[];
          const s = {} as Record<string, unknown>;
          for (const r of list) sumInto(s, r.stats as unknown as Record<string, unknown>);
          s.time = new Date().toISOString();
          onStats({
            ...(s as unknown as ForwardStats),
            workers: n,
            perCpu: list.map((r) => ({ id: r.id, forwarded: r.stats.router.forwarded ?? 0, handoff: r.handoff })),
          });
        })
        .catch((e: Error) => errors.push(e.message))
        .finally(() => {
          statsBusy = false;
        });
    }, o.statsMs);
  }
  await new Promise<void>((resolve) => {
    if (o.signal === undefined) return;
    if (o.signal.aborted) resolve();
    else o.signal.addEventListener("abort", () => resolve(), { once: true });
  });
  if (statsTimer !== undefined) clearInterval(statsTimer);
  // A stats round in flight is answered before the shutdown messages (one port, in order).
  while (statsBusy) await new Promise((r) => setTimeout(r, 5));
  // ---- phase 1: nobody hands packets over any more
  const quiet = expect("quiet");
  for (const w of workers) w.postMessage({ cmd: "quiesce" } satisfies ForwardWorkerMessage);
  await quiet;
  // ---- phase 2: drain, close, report
  const done = expect("report");
  for (const w of workers) w.postMessage({ cmd: "stop" } satisfies ForwardWorkerMessage);
  const reps = (await done) as Extract<ForwardWorkerReply, { type: "report" }>[];
  await Promise.all(exits);
  const merged = {} as Record<string, unknown>;
  const handoff = {} as Record<string, unknown>;
  for (const r of reps) {
    const { leaks: _l, ok: _ok, reason: _r, ...rest } = r.report;
    sumInto(merged, rest as unknown as Record<string, unknown>);
    sumInto(handoff, r.handoff);
  }
  (merged.stats as Record<string, unknown>).time = new Date().toISOString();
  const problems: string[] = [...errors];
  // Packet accounting over the whole router: a packet handed from one CPU to
  // another is received on the first and sent (or dropped) by the second, so
  // the hand-overs cancel in the sums; the ARP-reply copies are extra
  // packets (generated) that the other CPUs consume. Each CPU's own identity
  // does not hold alone, the sum must.
  const a = merged.accounting as ForwardAccounting;
  const terms: ForwardAccountingTerms = {
    received: a.received,
    generated: a.generated + ((handoff as Record<string, number>).arpCopies ?? 0),
    transmitted: a.transmitted,
    dropped: a.dropped,
    consumed: a.consumed,
    merged: a.merged,
    held: a.held + reps.reduce((t, r) => t + r.leftover, 0),
  };
  const acct = forwardAccountingCheck(terms, { ...a.detail, arpCopies: (handoff as Record<string, number>).arpCopies ?? 0 });
  merged.accounting = acct;
  for (const p of acct.problems) problems.push(`accounting: ${p}`);
  for (const r of reps) {
    if (!r.report.ok) problems.push(`worker ${r.id}: its report is not ok (conntrack ${r.report.leaks.conntrackEntries} left)`);
    if (r.leftover !== 0) problems.push(`worker ${r.id}: ${r.leftover} packets left on its hand-over rings`);
  }
  // A CPU may have deferred an skb to another just as that one went offline
  // (skbDeferUninstall's documented race): free what is left on every list.
  let lateDeferred = 0;
  for (let w = 0; w < n; w++) {
    const c = createSkbCpu(mem, w, { profile: "6.19" });
    lateDeferred += skbDeferFreeFlush(c);
    napiSkbCacheDrain(c);
    pageFragCacheDrain(c.napiFrag);
    pageFragCacheDrain(c.netdevFrag);
  }
  (handoff as Record<string, number>).deferLateFlushed = lateDeferred;
  const slabsInUse: Record<string, number> = {};
  for (const i of mmSlabInfo(mem.mm)) if (i.activeObjs !== 0) slabsInUse[i.name] = i.activeObjs;
  const heads = kmemCacheInfo(mem.headCache).activeObjs;
  const pages = kmemCacheInfo(mem.pages.cache).activeObjs;
  const conntrackEntries = reps.reduce((s, r) => s + r.report.leaks.conntrackEntries, 0);
  if (heads !== 0 || pages !== 0 || Object.keys(slabsInUse).length !== 0) {
    problems.push(`memory still in use with every CPU stopped: ${heads} heads, ${pages} pages, slabs ${JSON.stringify(slabsInUse)}`);
  }
  return {
    ...(merged as unknown as Omit<ForwardReport, "leaks" | "ok" | "reason">),
    reason: (reps[0] as { report: ForwardReport }).report.reason,
    leaks: { heads, pages, slabsInUse, conntrackEntries },
    ok: problems.length === 0,
    workers: n,
    handoff: handoff as Record<string, number>,
    perCpu: reps.map((r) => ({ id: r.id, ok: r.report.ok, forwarded: r.report.stats.router.forwarded ?? 0, handoff: r.handoff, leftover: r.leftover })),
    problems,
  };
}
