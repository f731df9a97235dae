/**
 * The NAPI head cache A/B inside one running router (`skb forward
 * --cache-ab MS`): the cache switch flips every MS milliseconds while the
 * same traffic flows, and each slice is charged the router thread's own CPU
 * time (CLOCK_THREAD_CPUTIME_ID: the TAP transmit threads and the rest of
 * the process are not in it) and the packets its devices received. Slices
 * alternate on, off, on, off ...; each (on, off) pair gives one ratio of
 * CPU per packet, off ÷ on (> 1: the cache makes a packet cheaper), so a
 * machine that changes pace between slices shows as spread, not as bias.
 *
 * Separate router processes (bench e2e's two routers) cannot resolve this:
 * the head cache saves tens of ns of a ~6 µs packet, and iperf3 through
 * TAPs on a shared 2-CPU machine varies by ±10 % from run to run.
 *
 * Cold: one timer callback per slice; allocates there, not per packet.
 *
 * @module
 */

import { type NetNamespace, RX_PACKETS } from "../core/netdev.js";
import { tapAddon } from "../native/tap-addon.js";
import { napiCacheIsEnabled, napiCacheSetEnabled } from "../skb/napi-cache.js";

/** Slices with fewer packets than this are idle time: left out of the pairs (their sums still count). */
export const CACHE_AB_MIN_PACKETS = 200;

/** What {@link cacheAbStop} reports. */
export interface CacheAbResult {
  sliceMs: number;
  /** Per side: slices, packets received, router-thread CPU ns, ns per packet (null without packets). */
  on: CacheAbSide;
  off: CacheAbSide;
  /** off ns/packet ÷ on ns/packet over the sums (null when a side saw no packets). */
  ratio: number | null;
  /**
   * The same per (on, off) slice pair with at least CACHE_AB_MIN_PACKETS
   * packets each: count, range, and the geometric mean with its 95 %
   * confidence interval (mean of the log ratios ± 1.96 standard errors; null
   * under 2 pairs). Kept as running sums: a run of any length holds no list.
   */
  pairs: ({ n: number; min: number; max: number } & LogRatioStats) | null;
}

export interface CacheAbSide {
  slices: number;
  packets: number;
  cpuNs: number;
  nsPerPacket: number | null;
}

/** A running A/B (see {@link cacheAbStart}). */
export interface CacheAb {
  readonly sliceMs: number;
  timer: ReturnType<typeof setInterval> | null;
  /** The switch before the A/B, restored at the end. */
  readonly before: boolean;
  on: boolean;
  packets0: number;
  cpu0: number;
  readonly sum: { on: CacheAbSide; off: CacheAbSide };
  /** ns/packet of the last on slice (waiting for its off partner), or null. */
  pendingOn: number | null;
  /** The per-pair ratios, as running sums. */
  readonly ratios: LogRatios;
}

/** Running sums of ratios on a log scale (Welford): count, mean and M2 of the logs, range. */
export interface LogRatios {
  n: number;
  mean: number;
  m2: number;
  min: number;
  max: number;
}

/** Geometric mean of ratios and its 95 % confidence interval (normal approximation on the logs; null under 2). */
export interface LogRatioStats {
  geoMean: number;
  ci95: [number, number] | null;
}

export function logRatiosCreate(): LogRatios {
  return { n: 0, mean: 0, m2: 0, min: Number.POSITIVE_INFINITY, max: Number.NEGATIVE_INFINITY };
}

export function logRatiosAdd(a: LogRatios, r: number): void {
  const x = Math.log(r);
  a.n++;
  const d = x - a.mean;
  a.mean += d / a.n;
  a.m2 += d * (x - a.mean);
  if (r < a.min) a.min = r;
  if (r > a.max) a.max = r;
}

export function logRatiosStats(a: LogRatios): LogRatioStats {
  if (a.n < 2) return { geoMean: Math.exp(a.mean), ci95: null };
  const h = (1.96 * Math.sqrt(a.m2 / (a.n - 1))) / Math.sqrt(a.n);
  return { geoMean: Math.exp(a.mean), ci95: [Math.exp(a.mean - h), Math.exp(a.mean + h)] };
}

function rxPackets(ns: NetNamespace): number {
  let n = 0;
  for (const d of ns.list()) n += d.stats[RX_PACKETS] as number;
  return n;
}

function side(): CacheAbSide {
  return { slices: 0, packets: 0, cpuNs: 0, nsPerPacket: null };
}

/** Close the current slice: charge it to its side, pair it, flip the switch. */
function cacheAbSlice(ab: CacheAb, ns: NetNamespace, flip: boolean): void {
  const packets = rxPackets(ns);
  const cpu = tapAddon().threadCpuNs();
  const dp = packets - ab.packets0;
  const dc = cpu - ab.cpu0;
  const s = ab.on ? ab.sum.on : ab.sum.off;
  s.slices++;
  s.packets += dp;
  s.cpuNs += dc;
  const busy = dp >= CACHE_AB_MIN_PACKETS;
  if (ab.on) {
    ab.pendingOn = busy ? dc / dp : null;
  } else {
    if (ab.pendingOn !== null && busy) logRatiosAdd(ab.ratios, dc / dp / ab.pendingOn);
    ab.pendingOn = null;
  }
  if (flip) {
    ab.on = !ab.on;
    napiCacheSetEnabled(ab.on);
  }
  // Read last, so the flip's own cost is charged to the next slice of either side alike.
  ab.packets0 = rxPackets(ns);
  ab.cpu0 = tapAddon().threadCpuNs();
}

/**
 * Start flipping this thread's NAPI cache switch every `sliceMs` (10 ..
 * 10 000), cache on first. Needs the native addon (its thread CPU clock):
 * throws "native TAP support unavailable: ..." without it.
 */
export function cacheAbStart(ns: NetNamespace, sliceMs: number): CacheAb {
  if (!Number.isInteger(sliceMs) || sliceMs < 10 || sliceMs > 10_000) throw new RangeError(`cache A/B: slice ${sliceMs} ms out of range 10..10000`);
  const cpu0 = tapAddon().threadCpuNs();
  const ab: CacheAb = {
    sliceMs,
    timer: null,
    before: napiCacheIsEnabled(),
    on: true,
    packets0: rxPackets(ns),
    cpu0,
    sum: { on: side(), off: side() },
    pendingOn: null,
    ratios: logRatiosCreate(),
  };
  napiCacheSetEnabled(true);
  ab.timer = setInterval(() => cacheAbSlice(ab, ns, true), sliceMs);
  return ab;
}

/** Stop: close the last slice, restore the switch, report. */
export function cacheAbStop(ab: CacheAb, ns: NetNamespace): CacheAbResult {
  if (ab.timer !== null) {
    clearInterval(ab.timer);
    ab.timer = null;
    cacheAbSlice(ab, ns, false);
  }
  napiCacheSetEnabled(ab.before);
  for (const s of [ab.sum.on, ab.sum.off]) s.nsPerPacket = s.packets > 0 ? s.cpuNs / s.packets : null;
  const on = ab.sum.on.nsPerPacket;
  const off = ab.sum.off.nsPerPacket;
  const r = ab.ratios;
  return {
    sliceMs: ab.sliceMs,
    on: { ...ab.sum.on },
    off: { ...ab.sum.off },
    ratio: on !== null && off !== null && on > 0 ? off / on : null,
    pairs: r.n === 0 ? null : { n: r.n, min: r.min, max: r.max, ...logRatiosStats(r) },
  };
}

/** logRatiosStats of a list of ratios. */
export function logStats(r: readonly number[]): LogRatioStats {
  const a = logRatiosCreate();
  for (const x of r) logRatiosAdd(a, x);
  return logRatiosStats(a);
}

/** One report line (cold). */
export function formatCacheAb(r: CacheAbResult): string {
  const ns = (x: number | null): string => (x === null ? "-" : `${x.toFixed(0)} ns`);
  return (
    `cache A/B   router-thread CPU per packet, the cache switched every ${r.sliceMs} ms: on ${ns(r.on.nsPerPacket)} (${r.on.packets} packets, ${r.on.slices} slices), ` +
    `off ${ns(r.off.nsPerPacket)} (${r.off.packets}, ${r.off.slices}): off / on ${r.ratio === null ? "-" : `${r.ratio.toFixed(3)}×`}` +
    `${r.pairs === null ? "" : `, per slice pair: ${formatPairs(r.pairs)}`}`
  );
}

/** "geometric mean 1.011× (95 % CI 1.002–1.020), range 0.42–3.88, 533 pairs" (cold). */
export function formatPairs(p: NonNullable<CacheAbResult["pairs"]>): string {
  return (
    `geometric mean ${p.geoMean.toFixed(3)}×${p.ci95 === null ? "" : ` (95 % CI ${p.ci95[0].toFixed(3)}–${p.ci95[1].toFixed(3)})`}, ` +
    `range ${p.min.toFixed(2)}–${p.max.toFixed(2)}, ${p.n} pairs`
  );
}
