/**
 * `skb bench alloc`: what does one packet head cost?
 *
 * Every case does the same job per packet: get a head, initialise it for a
 * 2 KiB data buffer (the `__build_skb_around` field work: clear to `tail`,
 * pointers, truesize, users, header offsets, shared info), then free it.
 * Only where the head comes from differs:
 *
 * | case        | head from / to                                          |
 * |-------------|---------------------------------------------------------|
 * | slab        | `buildSkb` + `kfreeSkbmem`: one locked slab call each   |
 * | slab-bulk   | `kmemCacheAllocBulk` / `kmemCacheFreeBulk`, 16 (or 64) a call |
 * | napi-cache  | `napiBuildSkb` + `napiSkbFreeStolenHead`: per-CPU LIFO  |
 * | js-object   | `new` object with the same fields, dropped for the GC   |
 * | buffer      | `Buffer.allocUnsafe(256)` filled the same way, dropped  |
 *
 * Patterns: `pair` (alloc, free, repeat) and `burst64` (64 allocs, then 64
 * frees). Cases alternate inside every round, so drift hits them all alike.
 * GC events are counted per segment with `v8.GCProfiler` (started right
 * before, stopped right after); heap growth is `heapUsed` after minus
 * before each segment.
 *
 * @module
 */

import { GCProfiler } from "node:v8";
import { setImmediate as tick } from "node:timers/promises";
import { kmalloc } from "../mm/kmalloc.js";
import { kmemCacheAllocBulk, kmemCacheFreeBulk, kmemCacheInfo } from "../mm/slab.js";
import { skbZeroHeadForBuild } from "../skb/access.js";
import { __buildSkbAround, buildSkb, napiBuildSkb } from "../skb/alloc.js";
import { createSkbCpu, type SkbCpu } from "../skb/cpu.js";
import { kfreeSkbmem, napiSkbFreeStolenHead } from "../skb/free.js";
import { createSkbMemory } from "../skb/memory.js";
import { napiCacheIsEnabled, napiCacheSetEnabled, napiSkbCacheDrain } from "../skb/napi-cache.js";
import { median, pairedRatios } from "./stats.js";

/** Case names, in run order. */
export const ALLOC_CASES = ["slab", "slab-bulk", "napi-cache", "js-object", "buffer"] as const;
/** Pattern names. */
export const ALLOC_PATTERNS = ["pair", "burst64"] as const;
export type AllocCase = (typeof ALLOC_CASES)[number];
export type AllocPattern = (typeof ALLOC_PATTERNS)[number];

/** Options of the alloc benchmark. */
export interface AllocBenchOptions {
  /** Operations (alloc+free pairs) per case per round. */
  ops?: number;
  /** Rounds (each runs every case once). */
  rounds?: number;
  /** Kernel profile of the NAPI cache. */
  profile?: string;
  /** Cases to run (default all). */
  cases?: readonly AllocCase[];
  /** Called after each round (progress). */
  onRound?: (round: number, rounds: number) => void;
}

/** One row of the result. */
export interface AllocBenchRow {
  case: AllocCase;
  pattern: AllocPattern;
  /** Median ns per alloc+free. */
  nsPerOp: number;
  minNsPerOp: number;
  maxNsPerOp: number;
  /** Millions of alloc+free per second at the median. */
  mops: number;
  /** GC events over all rounds of this case. */
  gcCount: number;
  /** Total ops over all rounds. */
  totalOps: number;
  /** Median heapUsed growth per segment, bytes. */
  heapGrowth: number;
  /** Slab calls per op (head slab; 0 for JS cases). */
  slabCallsPerOp: number;
}

/** The whole result (the `--json` shape). */
export interface AllocBenchResult {
  bench: "alloc";
  profile: string;
  ops: number;
  rounds: number;
  node: string;
  results: AllocBenchRow[];
  /** value: ratio of the medians (the verdict); paired: the per-round ratios (median, range). */
  ratios: { name: string; value: number; target: string; met: boolean; paired: { median: number; min: number; max: number } }[];
}

/** The same fields a head carries, as a plain JS object (the js-object case). */
class JsSkb {
  next: JsSkb | null;
  prev: JsSkb | null;
  dev: number;
  sk: number;
  tstamp: number;
  dst: number;
  destructor: number;
  nfct: number;
  len: number;
  dataLen: number;
  macLen: number;
  hdrLen: number;
  queueMapping: number;
  flags: number;
  pktType: number;
  ipSummed: number;
  protocol: number;
  vlanProto: number;
  vlanTci: number;
  macHeader: number;
  networkHeader: number;
  transportHeader: number;
  hash: number;
  mark: number;
  csum: number;
  napiId: number;
  iif: number;
  allocCpu: number;
  priority: number;
  tail: number;
  end: number;
  head: Uint8Array;
  data: number;
  truesize: number;
  users: number;
  nrFrags: number;
  dataref: number;
  constructor(buf: Uint8Array, cpuId: number) {
    this.next = null;
    this.prev = null;
    this.dev = 0;
    this.sk = 0;
    this.tstamp = 0;
    this.dst = 0;
    this.destructor = 0;
    this.nfct = 0;
    this.len = 0;
    this.dataLen = 0;
    this.macLen = 0;
    this.hdrLen = 0;
    this.queueMapping = 0;
    this.flags = 0;
    this.pktType = 0;
    this.ipSummed = 0;
    this.protocol = 0;
    this.vlanProto = 0;
    this.vlanTci = 0;
    this.macHeader = 0xffff;
    this.networkHeader = 0;
    this.transportHeader = 0xffff;
    this.hash = 0;
    this.mark = 0;
    this.csum = 0;
    this.napiId = 0;
    this.iif = 0;
    this.allocCpu = cpuId;
    this.priority = 0;
    this.tail = 0;
    this.end = DATA_SIZE - 320;
    this.head = buf;
    this.data = 0;
    this.truesize = DATA_SIZE + 192;
    this.users = 1;
    this.nrFrags = 0;
    this.dataref = 1;
  }
}

const DATA_SIZE = 2048;

/** Fill a 256-byte Buffer as a head: clear to tail, then the same fields. */
function initBufferHead(b: Buffer, cpuId: number): void {
  b.fill(0, 0, 144);
  b.writeUInt32LE(0, 144); // tail
  b.writeUInt32LE(DATA_SIZE - 320, 148); // end
  b.writeUInt32LE(0, 152); // head (no arena here)
  b.writeUInt32LE(0, 156); // data
  b.writeUInt32LE(DATA_SIZE + 192, 160); // truesize
  b.writeUInt32LE(1, 164); // users
  b.writeUInt32LE(0xffff0000, 104);
  b.writeUInt32LE(0xffff0000, 108);
  b.writeUInt32LE(cpuId, 100);
}

interface Ctx {
  cpu: SkbCpu;
  data: number;
  handles: Uint32Array;
  objs: (JsSkb | null)[];
  bufs: (Buffer | null)[];
  buf: Uint8Array;
  /** Where the JS cases put what they read, so V8 keeps the work (a double from the start: see below). */
  sink: number;
}

type Segment = (ops: number, x: Ctx) => void;

// One function per case and pattern, so V8 optimises (and inlines into) each
// loop on its own instead of one large polymorphic switch.
const PAIR: Record<AllocCase, Segment> = {
  slab(ops, x) {
    const { cpu, data } = x;
    for (let i = 0; i < ops; i++) {
      const skb = buildSkb(cpu, data, DATA_SIZE);
      kfreeSkbmem(cpu, skb);
    }
  },
  "napi-cache"(ops, x) {
    const { cpu, data } = x;
    for (let i = 0; i < ops; i++) {
      const skb = napiBuildSkb(cpu, data, DATA_SIZE);
      napiSkbFreeStolenHead(cpu, skb);
    }
  },
  "slab-bulk"(ops, x) {
    // A pair at a time in steady state still moves heads 16 per slab call.
    const { cpu, data, handles } = x;
    const hc = cpu.headCache;
    for (let i = 0; i < ops; i += 16) {
      const k = kmemCacheAllocBulk(hc, 16, handles, 0);
      for (let j = 0; j < k; j++) {
        const skb = handles[j] as number;
        skbZeroHeadForBuild(cpu, skb);
        __buildSkbAround(cpu, skb, data, DATA_SIZE);
      }
      kmemCacheFreeBulk(hc, k, handles, 0);
    }
  },
  "js-object"(ops, x) {
    // The object escapes (as a packet handed down a pipeline does), and
    // dropping it is the free: the previous one becomes garbage.
    const objs = x.objs;
    for (let i = 0; i < ops; i++) {
      const o = new JsSkb(x.buf, x.cpu.id);
      objs[i & 63] = o;
      x.sink += o.users;
    }
    objs.fill(null);
  },
  buffer(ops, x) {
    const bufs = x.bufs;
    for (let i = 0; i < ops; i++) {
      const b = Buffer.allocUnsafe(256);
      initBufferHead(b, x.cpu.id);
      bufs[i & 63] = b;
      x.sink += b[164] as number;
    }
    bufs.fill(null);
  },
};

const BURST: Record<AllocCase, Segment> = {
  slab(ops, x) {
    const { cpu, data, handles } = x;
    for (let r = ops >>> 6; r > 0; r--) {
      for (let i = 0; i < 64; i++) handles[i] = buildSkb(cpu, data, DATA_SIZE);
      for (let i = 0; i < 64; i++) kfreeSkbmem(cpu, handles[i] as number);
    }
  },
  "napi-cache"(ops, x) {
    const { cpu, data, handles } = x;
    for (let r = ops >>> 6; r > 0; r--) {
      for (let i = 0; i < 64; i++) handles[i] = napiBuildSkb(cpu, data, DATA_SIZE);
      for (let i = 0; i < 64; i++) napiSkbFreeStolenHead(cpu, handles[i] as number);
    }
  },
  "slab-bulk"(ops, x) {
    const { cpu, data, handles } = x;
    const hc = cpu.headCache;
    for (let r = ops >>> 6; r > 0; r--) {
      const k = kmemCacheAllocBulk(hc, 64, handles, 0);
      for (let j = 0; j < k; j++) {
        const skb = handles[j] as number;
        skbZeroHeadForBuild(cpu, skb);
        __buildSkbAround(cpu, skb, data, DATA_SIZE);
      }
      kmemCacheFreeBulk(hc, k, handles, 0);
    }
  },
  "js-object"(ops, x) {
    const objs = x.objs;
    for (let r = ops >>> 6; r > 0; r--) {
      for (let i = 0; i < 64; i++) objs[i] = new JsSkb(x.buf, x.cpu.id);
      for (let i = 0; i < 64; i++) {
        x.sink += (objs[i] as JsSkb).users;
        objs[i] = null;
      }
    }
  },
  buffer(ops, x) {
    const bufs = x.bufs;
    for (let r = ops >>> 6; r > 0; r--) {
      for (let i = 0; i < 64; i++) {
        const b = Buffer.allocUnsafe(256);
        initBufferHead(b, x.cpu.id);
        bufs[i] = b;
      }
      for (let i = 0; i < 64; i++) {
        x.sink += (bufs[i] as Buffer)[164] as number;
        bufs[i] = null;
      }
    }
  },
};

/** Ops a segment really performs (burst64 rounds down to whole bursts). */
function opsDone(p: AllocPattern, ops: number): number {
  return p === "pair" ? ops : Math.max(1, ops >>> 6) * 64;
}

/** Run one case/pattern segment; returns elapsed ns. */
function runSegment(c: AllocCase, p: AllocPattern, ops: number, x: Ctx): number {
  const fn = (p === "pair" ? PAIR : BURST)[c];
  const t0 = process.hrtime.bigint();
  fn(p === "pair" ? ops : opsDone(p, ops), x);
  return Number(process.hrtime.bigint() - t0);
}


function slabCalls(cpu: SkbCpu): number {
  const i = kmemCacheInfo(cpu.headCache);
  return i.allocs + i.frees + i.allocBulkCalls + i.freeBulkCalls;
}

/**
 * Run the benchmark. Allocates its own arena; leaves the NAPI cache switch
 * as it found it.
 */
export async function runAllocBench(o: AllocBenchOptions = {}): Promise<AllocBenchResult> {
  const ops = o.ops ?? 2_000_000;
  const rounds = o.rounds ?? 5;
  const profile = o.profile ?? "5.12";
  const cases = o.cases ?? ALLOC_CASES;
  if (!Number.isInteger(ops) || ops < 64) throw new RangeError(`bench alloc: --ops must be an integer >= 64, got ${ops}`);
  if (!Number.isInteger(rounds) || rounds < 1) throw new RangeError(`bench alloc: --rounds must be >= 1, got ${rounds}`);
  const mem = createSkbMemory({ arenaSize: 16 << 20, debug: false });
  const cpu = createSkbCpu(mem, 0, { profile });
  const data = kmalloc(mem.kmalloc, DATA_SIZE);
  const x: Ctx = {
    cpu,
    data,
    handles: new Uint32Array(64),
    objs: new Array<JsSkb | null>(64).fill(null),
    bufs: new Array<Buffer | null>(64).fill(null),
    buf: new Uint8Array(DATA_SIZE),
    // A double from the start: when a Smi field outgrows 31 bits V8 changes
    // the object's map, and every case's optimised code that read `x`
    // deoptimises mid-run and is compiled again, differently each time.
    sink: 0.5,
  };
  const wasOn = napiCacheIsEnabled();
  napiCacheSetEnabled(true);
  const samples = new Map<string, { ns: number[]; gc: number; heap: number[]; calls: number; ops: number }>();
  const key = (c: string, p: string) => `${c}/${p}`;
  try {
    // Warm-up: let V8 optimise every segment before measuring — several
    // short calls each, so the measured calls enter a normally compiled
    // function rather than one known only as an on-stack-replaced loop.
    // One pattern at a time, with a turn of the event loop between them
    // (V8 installs background-compiled code there): each pattern's loops
    // are compiled from feedback of that pattern alone. Interleaved, the
    // pair loops were compiled either before or after the bursts had run
    // the cache's refill and flush, depending on background-compile timing,
    // and the napi-cache pair came out at ~17 or ~19 ns by process.
    for (const p of ALLOC_PATTERNS) {
      for (let w = 0; w < 4; w++) for (const c of cases) runSegment(c, p, Math.min(ops, 50_000), x);
      await tick();
      for (const c of cases) runSegment(c, p, Math.min(ops, 50_000), x);
      await tick();
    }
    for (let r = 0; r < rounds; r++) {
      for (const p of ALLOC_PATTERNS) {
        for (const c of cases) {
          const k = key(c, p);
          let s = samples.get(k);
          if (s === undefined) {
            s = { ns: [], gc: 0, heap: [], calls: 0, ops: 0 };
            samples.set(k, s);
          }
          await tick();
          const h0 = process.memoryUsage().heapUsed;
          const c0 = slabCalls(cpu);
          const prof = new GCProfiler();
          prof.start();
          const ns = runSegment(c, p, ops, x);
          const gcs = prof.stop().statistics.length;
          const h1 = process.memoryUsage().heapUsed;
          s.calls += slabCalls(cpu) - c0;
          s.gc += gcs;
          s.heap.push(h1 - h0);
          const done = opsDone(p, ops);
          s.ns.push(ns / done);
          s.ops += done;
        }
      }
      o.onRound?.(r + 1, rounds);
    }
  } finally {
    napiSkbCacheDrain(cpu);
    napiCacheSetEnabled(wasOn);
  }
  const results: AllocBenchRow[] = [];
  for (const p of ALLOC_PATTERNS) {
    for (const c of cases) {
      const s = samples.get(key(c, p));
      if (s === undefined) continue;
      const med = median(s.ns);
      results.push({
        case: c,
        pattern: p,
        nsPerOp: round2(med),
        minNsPerOp: round2(Math.min(...s.ns)),
        maxNsPerOp: round2(Math.max(...s.ns)),
        mops: round2(1000 / med),
        gcCount: s.gc,
        totalOps: s.ops,
        heapGrowth: Math.round(median(s.heap)),
        slabCallsPerOp: round4(s.calls / s.ops),
      });
    }
  }
  const ratios: AllocBenchResult["ratios"] = [];
  const addRatio = (name: string, p: AllocPattern, a: AllocCase, b: AllocCase, target: string, ok: (v: number) => boolean) => {
    const sa = samples.get(key(a, p));
    const sb = samples.get(key(b, p));
    if (sa === undefined || sb === undefined) return;
    // The headline is the ratio of the medians; the per-round pairs (the two
    // segments of a round run seconds apart at most) show how much of the
    // spread is the machine changing pace during the run.
    const v = round2(median(sa.ns) / median(sb.ns));
    const pr = pairedRatios(sa.ns, sb.ns);
    ratios.push({ name, value: v, target, met: ok(v), paired: { median: round2(pr.median), min: round2(pr.min), max: round2(pr.max) } });
  };
  addRatio("slab / napi-cache (pair)", "pair", "slab", "napi-cache", ">= 3", (v) => v >= 3);
  addRatio("slab / napi-cache (burst64)", "burst64", "slab", "napi-cache", ">= 2.5", (v) => v >= 2.5);
  addRatio("napi-cache / js-object (pair)", "pair", "napi-cache", "js-object", "<= 1.2", (v) => v <= 1.2);
  addRatio("buffer / napi-cache (pair)", "pair", "buffer", "napi-cache", "(info)", () => true);
  return { bench: "alloc", profile, ops, rounds, node: process.version, results, ratios };
}

function round2(v: number): number {
  return Math.round(v * 100) / 100;
}
function round4(v: number): number {
  return Math.round(v * 10000) / 10000;
}

/** Render the result as an aligned text table (what the CLI prints). */
export function formatAllocBench(r: AllocBenchResult): string {
  const head = ["case", "pattern", "ns/op", "min", "max", "Mops/s", "GCs", "heap Δ/seg", "slab calls/op"];
  const rows = r.results.map((x) => [
    x.case,
    x.pattern,
    x.nsPerOp.toFixed(2),
    x.minNsPerOp.toFixed(2),
    x.maxNsPerOp.toFixed(2),
    x.mops.toFixed(1),
    String(x.gcCount),
    fmtHeap(x.heapGrowth),
    x.slabCallsPerOp.toFixed(4),
  ]);
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] as string).length)));
  const line = (cells: string[]) => cells.map((c, i) => (i < 2 ? c.padEnd(w[i] as number) : c.padStart(w[i] as number))).join("  ");
  const out = [
    `skb bench alloc — profile ${r.profile}, ${r.rounds} rounds × ${r.ops} ops per case, Node ${r.node}`,
    "",
    line(head),
    line(w.map((n) => "-".repeat(n))),
    ...rows.map(line),
    "",
    "ratios (same run: of the medians; per round: median and range):",
    ...r.ratios.map(
      (q) =>
        `  ${q.name.padEnd(32)} ${q.value.toFixed(2)}×   target ${q.target}${q.target === "(info)" ? "" : q.met ? "  met" : "  NOT met"}` +
        `   per round ${q.paired.median.toFixed(2)}× (${q.paired.min.toFixed(2)}–${q.paired.max.toFixed(2)})`,
    ),
  ];
  return out.join("\n");
}

function fmtHeap(b: number): string {
  if (Math.abs(b) >= 1 << 20) return `${(b / (1 << 20)).toFixed(1)} MiB`;
  if (Math.abs(b) >= 1 << 10) return `${(b / (1 << 10)).toFixed(1)} KiB`;
  return `${b} B`;
}

