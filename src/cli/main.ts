/**
 * The `skb` command line.
 *
 * ```
 * skb bench [router] [--duration S] [--rounds N] [--cases udp64,...] [--svg FILE] [--no-baseline] [--json]
 * skb bench e2e [--duration S] [--rounds N] [--cases tcp1,...] [--json]
 * skb bench alloc [--ops N] [--rounds N] [--profile 5.12|6.19] [--cases a,b] [--json]
 * skb slabinfo [--arena-size SIZE] [--profile P] [--napi-cache on|off] [--packets N] [--json]
 * skb info [--json]
 * skb pcap info FILE [--json] | skb pcap replay IN --out OUT [...]   (src/cli/pcap.ts)
 * skb help | --help | --version
 * ```
 *
 * Exit codes: 0 success, 1 the command ran and failed (e.g. a leak), 2 bad
 * usage.
 *
 * @module
 */

import { readFileSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { ALLOC_CASES, type AllocCase, formatAllocBench, runAllocBench } from "../bench/alloc.js";
import { formatRouterBench, type RouterCase, routerBenchSvg, runRouterBench } from "../bench/router.js";
import { formatWorkersBench, runWorkersBench } from "../bench/workers.js";
import { formatCpumapBench, runCpumapBench } from "../bench/cpumap.js";
import { formatDeferBench, runDeferBench } from "../bench/defer.js";
import { runE2eCli } from "../bench/e2e.js";
import { fmtBytes } from "../mm/arena.js";
import { KMALLOC_SIZES } from "../mm/kmalloc.js";
import { kmemCacheInfo, type SlabInfo } from "../mm/slab.js";
import { mmSlabInfo } from "../mm/mm.js";
import { napiAllocSkb } from "../skb/alloc.js";
import { createSkbCpu, napiCacheStats } from "../skb/cpu.js";
import { skbPut } from "../skb/data.js";
import { napiConsumeSkb } from "../skb/free.js";
import {
  GRO_MAX_HEAD,
  MAX_SKB_FRAGS,
  NET_IP_ALIGN,
  NET_SKB_PAD,
  SHINFO_SIZE,
  SKB_HEAD_OBJ_SIZE,
  SKB_SMALL_HEAD_CACHE_SIZE,
  SKB_STRUCT_SIZE,
  SKB_TAIL,
  skbTruesize,
} from "../skb/layout.js";
import { createSkbMemory, DEFAULT_ARENA_SIZE } from "../skb/memory.js";
import { napiCacheSetEnabled, napiSkbCacheDrain } from "../skb/napi-cache.js";
import { PROFILE_5_12, PROFILE_6_19 } from "../skb/profile.js";
import { runForwardCli } from "./forward.js";
import { runPcapCli } from "./pcap.js";

/** A usage error: printed with the help hint, exit code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

const HELP = `skb — Linux-grade packet buffers for Node.js

Usage:
  skb bench [router] [options]   the seed's A/B: TCP and UDP through the in-process
                                 VLAN NAT router, NAPI head cache off vs on, plus
                                 an idiomatic-Node baseline (the default)
  skb bench cpumap [--packets N] redirect frames between two worker CPUs; heads built
                                 in bulk (8 per napiSkbCacheGetBulk) vs one by one
  skb bench defer [--packets N]  frees on a remote worker CPU: deferred to the
                                 allocating CPU (skbAttemptDeferFree) vs freed there;
                                 small-64, frag-1000, pp-1500 (page-pool RX) and
                                 recvmsg-1000 (a socket reader copying payloads)
  skb bench e2e [--duration S]   root: iperf3 tcp1/tcp4/udp64/udp1400 between two network
                                 namespaces through skb forward (TAPs + NAT, cache off
                                 and on) vs the kernel's own NAT (veth + nft masquerade);
                                 needs iperf3, ip, nft (--rounds N, --cases a,b, --json)
  skb bench alloc [options]      measure packet-head allocation: slab, slab bulk,
                                 the per-CPU NAPI head cache, JS objects, Buffers
  skb slabinfo [options]         carve an arena, push packets through the NAPI
                                 cache, print /proc/slabinfo-style statistics
  skb info [--json]              layouts, constants and kernel profiles
  skb pcap info FILE [--json]    summarise a pcap / pcapng capture
  skb pcap replay IN --out OUT   push a capture through the VLAN NAT router and
                                 record what leaves each side (skb pcap --help)
  skb forward CONFIG.json        run a router from a JSON config until SIGINT/SIGTERM
                                 (--workers N, --stats N, --json, --until-idle; skb forward --help)
  skb help [command]             this text

Common options:
  --profile 5.12|6.19            kernel behaviour profile (default 5.12, the seed's)
  --napi-cache on|off            the global NAPI head cache switch (default on;
                                 env SKBUFF_NAPI_CACHE)
  --arena-size SIZE              arena bytes, e.g. 64M, 256M (default 64M, max 1G)
  --json                         machine-readable output on stdout

bench router options:
  --duration S                   seconds per measured segment (default 0.5)
  --rounds N                     rounds, cache off/on alternating (default 5)
  --cases a,b,...                subset of: udp64, udp1518, udpimix, tcp64,
                                 tcp1518, tcpimix (default all)
  --no-baseline                  skip the idiomatic-Node baseline
  --svg FILE                     also write a bar chart of off / on / baseline
  --workers N[,M...]             run the router on N worker threads (CPUs) over one
                                 shared arena instead, e.g. --workers 1,2; with
                                 --cases taking one case (default udp64)

bench alloc options:
  --ops N                        alloc+free pairs per case per round (default 2000000)
  --rounds N                     rounds, cases alternating (default 5)
  --cases a,b,...                subset of: ${ALLOC_CASES.join(", ")}

slabinfo options:
  --packets N                    packets to allocate and free first (default 100000)

Environment:
  SKBUFF_DEBUG=1                 slab debug: poison, double-free and
                                 write-after-free checks
  SKBUFF_NAPI_CACHE=off          start with the NAPI head cache off

Exit status: 0 ok, 1 the run failed (accounting or a leak), 2 bad usage.`;

function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as {
      version: string;
    };
    return pkg.version;
  } catch {
    return "unknown";
  }
}

/** Parse a size like 64M, 1G, 65536. */
export function parseSize(s: string, flag: string): number {
  const m = /^(\d+)\s*([kKmMgG]?)(i?[bB])?$/.exec(s.trim());
  if (m === null) throw new UsageError(`${flag}: '${s}' is not a size (e.g. 64M, 1G, 65536)`);
  const mult = { "": 1, k: 1 << 10, m: 1 << 20, g: 1 << 30 }[(m[2] as string).toLowerCase()] as number;
  return Number(m[1]) * mult;
}

function parseIntFlag(s: string | undefined, flag: string, def: number, min: number): number {
  if (s === undefined) return def;
  if (!/^\d+$/.test(s)) throw new UsageError(`${flag}: '${s}' is not a whole number`);
  const v = Number(s);
  if (v < min) throw new UsageError(`${flag}: must be at least ${min}, got ${v}`);
  return v;
}

function parseProfile(s: string | undefined): string {
  const p = s ?? "5.12";
  if (p !== "5.12" && p !== "6.19") throw new UsageError(`--profile: unknown profile '${p}' (use 5.12 or 6.19)`);
  return p;
}

function parseOnOff(s: string | undefined, flag: string): boolean | undefined {
  if (s === undefined) return undefined;
  if (s === "on") return true;
  if (s === "off") return false;
  throw new UsageError(`${flag}: expected on or off, got '${s}'`);
}

const OPTIONS = {
  help: { type: "boolean", short: "h" },
  version: { type: "boolean", short: "V" },
  json: { type: "boolean" },
  profile: { type: "string" },
  "napi-cache": { type: "string" },
  "arena-size": { type: "string" },
  ops: { type: "string" },
  rounds: { type: "string" },
  cases: { type: "string" },
  packets: { type: "string" },
  duration: { type: "string" },
  svg: { type: "string" },
  "no-baseline": { type: "boolean" },
  workers: { type: "string" },
} as const;

/** Run the CLI with `argv` (without node and script); resolves to the exit code. */
export async function runCli(argv: string[], out: (s: string) => void = (s) => process.stdout.write(`${s}\n`)): Promise<number> {
  const err = (s: string) => process.stderr.write(`${s}\n`);
  try {
    // `skb pcap ...` has its own options (src/cli/pcap.ts).
    if (argv[0] === "pcap") return await runPcapCli(argv.slice(1), out, err);
    if (argv[0] === "forward") return await runForwardCli(argv.slice(1), out, err);
    let parsed: ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>;
    try {
      parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
    const { values: v, positionals: pos } = parsed;
    if (v.version === true) {
      out(`skb ${version()} (node ${process.version})`);
      return 0;
    }
    const cmd = pos[0] ?? "help";
    if (v.help === true || cmd === "help") {
      out(HELP);
      return 0;
    }
    const cacheSwitch = parseOnOff(v["napi-cache"], "--napi-cache");
    if (cacheSwitch !== undefined) napiCacheSetEnabled(cacheSwitch);
    switch (cmd) {
      case "bench":
        return await cmdBench(pos.slice(1), v, out, err);
      case "slabinfo":
        return cmdSlabinfo(pos.slice(1), v, out);
      case "info":
        return cmdInfo(pos.slice(1), v, out);
      default:
        throw new UsageError(`unknown command '${cmd}'`);
    }
  } catch (e) {
    if (e instanceof UsageError) {
      err(`skb: ${e.message}\nRun 'skb --help' for usage.`);
      return 2;
    }
    if (e instanceof RangeError) {
      err(`skb: ${e.message}`);
      return 2;
    }
    err(`skb: ${(e as Error).stack ?? String(e)}`);
    return 1;
  }
}

type Values = { [K in keyof typeof OPTIONS]?: (typeof OPTIONS)[K]["type"] extends "boolean" ? boolean : string };

async function cmdBench(pos: string[], v: Values, out: (s: string) => void, err: (s: string) => void): Promise<number> {
  const sub = pos[0] ?? "router";
  if (sub === "router") return await cmdBenchRouter(pos.slice(1), v, out, err);
  if (sub === "cpumap") return await cmdBenchCpumap(pos.slice(1), v, out, err);
  if (sub === "defer") return await cmdBenchDefer(pos.slice(1), v, out, err);
  if (sub === "e2e") return await runE2eCli(pos.slice(1), v, out, err);
  if (sub !== "alloc") throw new UsageError(`bench: unknown benchmark '${sub}' (available: router, alloc, cpumap, defer, e2e)`);
  if (pos.length > 1) throw new UsageError(`bench alloc: unexpected argument '${pos[1]}'`);
  if (v.duration !== undefined || v.svg !== undefined) throw new UsageError("bench alloc: --duration and --svg belong to the router benchmark");
  let cases: AllocCase[] | undefined;
  if (v.cases !== undefined) {
    cases = v.cases.split(",").map((c) => {
      if (!(ALLOC_CASES as readonly string[]).includes(c)) {
        throw new UsageError(`--cases: unknown case '${c}' (one of ${ALLOC_CASES.join(", ")})`);
      }
      return c as AllocCase;
    });
  }
  const ops = parseIntFlag(v.ops, "--ops", 2_000_000, 64);
  const rounds = parseIntFlag(v.rounds, "--rounds", 5, 1);
  const profile = parseProfile(v.profile);
  const tty = process.stderr.isTTY === true && v.json !== true;
  const res = await runAllocBench({
    ops,
    rounds,
    profile,
    ...(cases ? { cases } : {}),
    onRound: (r, n) => {
      if (tty) process.stderr.write(`\rround ${r}/${n}`);
    },
  });
  if (tty) err("");
  out(v.json === true ? JSON.stringify(res, null, 2) : formatAllocBench(res));
  return 0;
}

const ROUTER_CASE_NAMES: Record<string, RouterCase> = {
  udp64: { proto: "udp", size: 64 },
  udp1518: { proto: "udp", size: 1518 },
  udpimix: { proto: "udp", size: "imix" },
  tcp64: { proto: "tcp", size: 64 },
  tcp1518: { proto: "tcp", size: 1518 },
  tcpimix: { proto: "tcp", size: "imix" },
};

async function cmdBenchRouter(pos: string[], v: Values, out: (s: string) => void, err: (s: string) => void): Promise<number> {
  if (pos.length > 0) throw new UsageError(`bench: unexpected argument '${pos[0]}'`);
  if (v.workers !== undefined) return cmdBenchWorkers(v, out, err);
  if (v.ops !== undefined) throw new UsageError("bench router: --ops belongs to bench alloc; use --duration");
  let cases: RouterCase[] | undefined;
  if (v.cases !== undefined) {
    cases = v.cases.split(",").map((c) => {
      const k = ROUTER_CASE_NAMES[c];
      if (k === undefined) throw new UsageError(`--cases: unknown case '${c}' (one of ${Object.keys(ROUTER_CASE_NAMES).join(", ")})`);
      return k;
    });
  }
  let duration = 0.5;
  if (v.duration !== undefined) {
    duration = Number(v.duration);
    if (!/^\d+(\.\d+)?$/.test(v.duration) || !(duration > 0) || duration > 600) {
      throw new UsageError(`--duration: '${v.duration}' is not a number of seconds in (0, 600]`);
    }
  }
  const rounds = parseIntFlag(v.rounds, "--rounds", 5, 1);
  const profile = parseProfile(v.profile);
  const tty = process.stderr.isTTY === true && v.json !== true;
  const res = runRouterBench({
    ...(cases ? { cases } : {}),
    duration,
    rounds,
    profile,
    baseline: v["no-baseline"] !== true,
    onProgress: (label, r, n) => {
      if (tty) process.stderr.write(`\r${label}: round ${r}/${n}   `);
    },
  });
  if (tty) err("");
  if (v.svg !== undefined) {
    writeFileSync(v.svg, routerBenchSvg(res));
    if (v.json !== true) err(`chart written to ${v.svg}`);
  }
  out(v.json === true ? JSON.stringify(res, null, 2) : formatRouterBench(res));
  return res.accounting.ok ? 0 : 1;
}

async function cmdBenchCpumap(pos: string[], v: Values, out: (s: string) => void, err: (s: string) => void): Promise<number> {
  if (pos.length > 0) throw new UsageError(`bench cpumap: unexpected argument '${pos[0]}'`);
  const packets = parseIntFlag(v.packets, "--packets", 1_000_000, 64);
  const rounds = parseIntFlag(v.rounds, "--rounds", 5, 1);
  const tty = process.stderr.isTTY === true && v.json !== true;
  const res = await runCpumapBench({
    packets,
    rounds,
    onProgress: (r, n) => {
      if (tty) process.stderr.write(`\rround ${r}/${n}`);
    },
  });
  if (tty) err("");
  out(v.json === true ? JSON.stringify(res, null, 2) : formatCpumapBench(res));
  return res.accounting.ok ? 0 : 1;
}

async function cmdBenchDefer(pos: string[], v: Values, out: (s: string) => void, err: (s: string) => void): Promise<number> {
  if (pos.length > 0) throw new UsageError(`bench defer: unexpected argument '${pos[0]}'`);
  const packets = parseIntFlag(v.packets, "--packets", 1_000_000, 64);
  const rounds = parseIntFlag(v.rounds, "--rounds", 5, 1);
  const res = await runDeferBench({ packets, rounds });
  if (process.stderr.isTTY === true && v.json !== true) err("");
  out(v.json === true ? JSON.stringify(res, null, 2) : formatDeferBench(res));
  return 0;
}

async function cmdBenchWorkers(v: Values, out: (s: string) => void, err: (s: string) => void): Promise<number> {
  const list = (v.workers as string).split(",").map((x) => {
    if (!/^\d+$/.test(x) || Number(x) < 1 || Number(x) > 64) throw new UsageError(`--workers: '${x}' is not a worker count in 1..64`);
    return Number(x);
  });
  if (v.svg !== undefined || v["no-baseline"] === true) throw new UsageError("--workers: --svg and --no-baseline belong to the single-CPU router benchmark");
  let c: RouterCase = { proto: "udp", size: 64 };
  if (v.cases !== undefined) {
    const k = ROUTER_CASE_NAMES[v.cases];
    if (k === undefined) throw new UsageError(`--workers takes one case: --cases ${Object.keys(ROUTER_CASE_NAMES).join("|")}`);
    c = k;
  }
  let duration = 0.5;
  if (v.duration !== undefined) {
    duration = Number(v.duration);
    if (!/^\d+(\.\d+)?$/.test(v.duration) || !(duration > 0) || duration > 600) {
      throw new UsageError(`--duration: '${v.duration}' is not a number of seconds in (0, 600]`);
    }
  }
  const rounds = parseIntFlag(v.rounds, "--rounds", 5, 1);
  const tty = process.stderr.isTTY === true && v.json !== true;
  const res = await runWorkersBench({
    workers: list,
    proto: c.proto,
    size: c.size,
    duration,
    rounds,
    profile: parseProfile(v.profile),
    onProgress: (label, r, n) => {
      if (tty) process.stderr.write(`\r${label}: round ${r}/${n}   `);
    },
  });
  if (tty) err("");
  out(v.json === true ? JSON.stringify(res, null, 2) : formatWorkersBench(res));
  return res.accounting.ok ? 0 : 1;
}

function cmdSlabinfo(pos: string[], v: Values, out: (s: string) => void): number {
  if (pos.length > 0) throw new UsageError(`slabinfo: unexpected argument '${pos[0]}'`);
  const arenaSize = v["arena-size"] !== undefined ? parseSize(v["arena-size"], "--arena-size") : DEFAULT_ARENA_SIZE;
  const packets = parseIntFlag(v.packets, "--packets", 100_000, 0);
  const profile = parseProfile(v.profile);
  const mem = createSkbMemory({ arenaSize });
  const cpu = createSkbCpu(mem, 0, { profile });
  const napi = { dev: 1, napiId: 1, skb: 0 };
  // A NAPI-shaped workload: bursts of 64 receives, then their TX completions.
  const burst = new Uint32Array(64);
  let done = 0;
  let failed = 0;
  while (done < packets) {
    const n = Math.min(64, packets - done);
    for (let i = 0; i < n; i++) {
      const skb = napiAllocSkb(cpu, napi, 1500);
      burst[i] = skb;
      if (skb === 0) failed++;
      else skbPut(cpu, skb, 64 + (i % 1400));
    }
    for (let i = 0; i < n; i++) if (burst[i] !== 0) napiConsumeSkb(cpu, burst[i] as number, 64);
    done += n;
  }
  const cache = napiCacheStats(cpu);
  const before = mmSlabInfo(mem.mm);
  napiSkbCacheDrain(cpu);
  const leaked = kmemCacheInfo(mem.headCache).activeObjs;
  const result = {
    arenaSize,
    profile,
    packets,
    failed,
    napiCache: cache,
    slabs: before,
    headsInUseAfterDrain: leaked,
  };
  if (v.json === true) {
    out(JSON.stringify(result, null, 2));
  } else {
    out(`skb slabinfo — arena ${fmtBytes(arenaSize)}, profile ${profile}, ${packets} packets (${failed} allocation failures)`);
    out("");
    out(formatSlabinfo(before));
    out("");
    out(
      `napi cache: cached ${cache.cached}, gets ${cache.gets}, hits ${cache.hits}, refills ${cache.refills} ` +
        `(${cache.refillObjs} heads), puts ${cache.puts}, flushes ${cache.flushes} (${cache.flushedObjs} heads), slab calls ${cache.slabCalls}`,
    );
    out(`heads in use after draining the cache: ${leaked}`);
  }
  return leaked === 0 ? 0 : 1;
}

/** `/proc/slabinfo`-like table. */
export function formatSlabinfo(rows: SlabInfo[]): string {
  const head = ["name", "objsize", "active", "total", "allocs", "frees", "bulk-allocs", "bulk-objs", "bulk-frees", "bulk-objs", "fail"];
  const cells = rows.map((r) => [
    r.name,
    String(r.objSize),
    String(r.activeObjs),
    String(r.numObjs),
    String(r.allocs),
    String(r.frees),
    String(r.allocBulkCalls),
    String(r.allocBulkObjs),
    String(r.freeBulkCalls),
    String(r.freeBulkObjs),
    String(r.allocFail),
  ]);
  const w = head.map((h, i) => Math.max(h.length, ...cells.map((c) => (c[i] as string).length)));
  const line = (c: string[]) => c.map((x, i) => (i === 0 ? x.padEnd(w[i] as number) : x.padStart(w[i] as number))).join("  ");
  return [line(head), ...cells.map(line)].join("\n");
}

function cmdInfo(pos: string[], v: Values, out: (s: string) => void): number {
  if (pos.length > 0) throw new UsageError(`info: unexpected argument '${pos[0]}'`);
  const info = {
    version: version(),
    skb: {
      structBytes: SKB_STRUCT_SIZE,
      slabObjectBytes: SKB_HEAD_OBJ_SIZE,
      zeroedBytes: SKB_TAIL,
      sharedInfoBytes: SHINFO_SIZE,
      maxSkbFrags: MAX_SKB_FRAGS,
      netSkbPad: NET_SKB_PAD,
      netIpAlign: NET_IP_ALIGN,
      groMaxHead: GRO_MAX_HEAD,
      smallHeadCacheSize: SKB_SMALL_HEAD_CACHE_SIZE,
      truesizeOf2048: skbTruesize(2048 - SHINFO_SIZE),
    },
    kmallocClasses: KMALLOC_SIZES,
    profiles: { "5.12": PROFILE_5_12, "6.19": PROFILE_6_19 },
  };
  if (v.json === true) {
    out(JSON.stringify(info, null, 2));
    return 0;
  }
  const p = (x: typeof PROFILE_5_12) =>
    `  ${x.name}: NAPI_SKB_CACHE_SIZE ${x.cacheSize}, BULK ${x.bulk}, flush ${x.flush} (keep ${x.cacheSize - x.flush}), ` +
    `alloc consume-only ${x.allocConsumeOnly}, alien defer ${x.alienDefer}, small-head cache ${x.smallHeadCache}, ` +
    `napi_alloc_skb kmalloc path for len <= ${x.smallAllocMax} or > ${x.largeAllocMin}`;
  out(`skb ${info.version}`);
  out(`struct sk_buff: ${SKB_STRUCT_SIZE} bytes used, ${SKB_HEAD_OBJ_SIZE}-byte slab object, builders clear the first ${SKB_TAIL}`);
  out(`struct skb_shared_info: ${SHINFO_SIZE} bytes, MAX_SKB_FRAGS ${MAX_SKB_FRAGS}`);
  out(`NET_SKB_PAD ${NET_SKB_PAD}, NET_IP_ALIGN ${NET_IP_ALIGN}, GRO_MAX_HEAD ${GRO_MAX_HEAD}, SKB_SMALL_HEAD_CACHE_SIZE ${SKB_SMALL_HEAD_CACHE_SIZE}`);
  out(`kmalloc classes: ${KMALLOC_SIZES.join(" ")}`);
  out("profiles:");
  out(p(PROFILE_5_12));
  out(p(PROFILE_6_19));
  return 0;
}
