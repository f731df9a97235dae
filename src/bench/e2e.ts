/**
 * `skb bench e2e`: real iperf3 traffic between two network namespaces,
 * routed and masqueraded three ways at once, measured in alternation:
 *
 * ```
 *                  ┌─ TAP ── skb forward (SKBUFF_NAPI_CACHE=off) ── TAP ─┐
 *  netns client ───┼─ TAP ── skb forward (NAPI cache on)          ── TAP ─┼─── netns server
 *                  └─ veth ── netns router (kernel ip_forward + nft masquerade) ── veth ─┘
 * ```
 *
 * Each path has its own pair of subnets, so the client picks the router by
 * the server address it connects to; the server sees each router's outside
 * address (NAT). The cache-off router runs with the environment variable
 * SKBUFF_NAPI_CACHE=off (`skb forward` has no --napi-cache option of its own;
 * the variable sets the same global switch at start).
 *
 * Tests: tcp1 (1 stream), tcp4 (-P 4), udp64 (-u -l 64 -b 0), udp1400
 * (-u -l 1400 -b 0). For every round and test the three routers run one
 * after the other. Everything (router processes, iperf3 servers, namespaces,
 * TAPs, veths) is removed in `finally`.
 *
 * @module
 */

import { type ChildProcess, execFileSync } from "node:child_process";
import { randomInt } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { tapAddonStatus } from "../native/tap-addon.js";
import { type CacheAbResult, formatPairs } from "../router/cache-ab.js";
import { pairedRatios } from "./stats.js";
import { deadline, type ForwardChild, ipDeleteAll, iperf3Server, linkExists, run, sh, startForward, waitFor, which } from "./proc.js";


export const E2E_TESTS = ["tcp1", "tcp4", "udp64", "udp1400"] as const;
export type E2eTest = (typeof E2E_TESTS)[number];

export interface E2eRow {
  router: "skbuff" | "kernel";
  /** NAPI head cache of the skbuff router; "-" for the kernel. */
  cache: "on" | "off" | "-";
  test: E2eTest;
  /** Rounds averaged. */
  rounds: number;
  /** Received goodput (server side), Gbit/s. */
  gbps: number;
  /** Received packets per second / 1000 (UDP; for TCP estimated from bytes / MSS-sized segments: null). */
  kpps: number | null;
  /** TCP retransmits (sender side); null for UDP. */
  retransmits: number | null;
  /** UDP loss in percent; null for TCP. */
  lossPercent: number | null;
  /** iperf3 cpu_utilization_percent: client (host_total) and server (remote_total). */
  cpuClient: number;
  cpuServer: number;
  /** CPU of the skb forward process during the test, percent of one CPU; null for the kernel. */
  cpuRouter: number | null;
  /** gbps / the kernel's gbps for the same test (means over the rounds). */
  ratioToKernel: number | null;
  /** The same ratio round by round (this router's and the kernel's runs of a round are seconds apart): median and range; null for the kernel. */
  ratioToKernelPerRound: { median: number; min: number; max: number } | null;
  /** Bytes received by the server, summed over rounds. */
  bytes: number;
}

export interface E2eResult {
  duration: number;
  rounds: number;
  results: E2eRow[];
  /** The NAPI cache A/B per test: the skbuff router with the cache on ÷ off (goodput), of the means and round by round. */
  cacheOnOff: { test: E2eTest; ratio: number | null; perRound: { median: number; min: number; max: number } | null }[];
  /**
   * The NAPI cache A/B inside one router, per test: `skb forward --cache-ab
   * E2E_CACHE_AB_MS` on a TAP pair of its own, the same iperf3 runs (one per round), the
   * router thread's CPU per packet with the cache on and off.
   */
  cacheAb: { test: E2eTest; result: CacheAbResult | null }[];
  /** Final reports of the skb forward processes: the cache-off and cache-on routers, then each test's A/B router (leak check). */
  routers: RouterReport[];
  notes: string[];
}

/** The final report of one skb forward process. */
export interface RouterReport {
  cache: "on" | "off" | "ab";
  ok: boolean | null;
  forwarded: number | null;
  packets: number | null;
  /** netRxAction runs (loop turns and readiness callbacks): packets / polls is the batch size. */
  polls: number | null;
  gcs: number | null;
  heapAllocated: number | null;
  exitCode: number | null;
  /** The A/B router's result (null for the others). */
  cacheAb: CacheAbResult | null;
}

export interface E2eOptions {
  duration: number;
  rounds: number;
  tests?: E2eTest[];
  log?: (s: string) => void;
}

/** A precondition failure: print the message, exit non-zero. */
export class E2eUnavailable extends Error {
  override name = "E2eUnavailable";
}

/**
 * Check the prerequisites; returns the tool paths. `install`: try
 * `apt-get install -y nftables` when nft is missing (logged).
 */
export function e2ePreflight(log: (s: string) => void, install = true): { ip: string; iperf3: string; nft: string; notes: string[] } {
  const notes: string[] = [];
  if (process.platform !== "linux") throw new E2eUnavailable(`skb bench e2e needs Linux (this is ${process.platform})`);
  if (typeof process.getuid !== "function" || process.getuid() !== 0) throw new E2eUnavailable("skb bench e2e needs root (network namespaces, TAP devices)");
  if (!existsSync("/dev/net/tun")) throw new E2eUnavailable("skb bench e2e: /dev/net/tun is absent (load the tun module)");
  const addon = tapAddonStatus();
  if (!addon.available) throw new E2eUnavailable(`skb bench e2e: the native TAP addon is unavailable: ${addon.reason} (build it: npm run build:native / node-gyp rebuild)`);
  const ip = which("ip");
  if (ip === null) throw new E2eUnavailable("skb bench e2e: the `ip` command is missing (apt-get install iproute2)");
  const iperf3 = which("iperf3");
  if (iperf3 === null) throw new E2eUnavailable("skb bench e2e: `iperf3` is missing (apt-get install iperf3)");
  if (which("ss") === null) throw new E2eUnavailable("skb bench e2e: `ss` is missing (apt-get install iproute2)");
  let nft = which("nft");
  if (nft === null && install && which("apt-get") !== null) {
    log("skb bench e2e: nft is missing, installing nftables with apt-get (for the kernel NAT reference)");
    try {
      execFileSync("apt-get", ["install", "-y", "nftables"], { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" }, timeout: 300_000 });
      notes.push("installed nftables with apt-get");
    } catch (e) {
      log(`skb bench e2e: apt-get install nftables failed: ${(e as Error).message.split("\n")[0]}`);
    }
    nft = which("nft");
  }
  if (nft === null) throw new E2eUnavailable("skb bench e2e: `nft` is missing (apt-get install nftables)");
  return { ip, iperf3, nft, notes };
}

interface Router extends ForwardChild {
  cache: "on" | "off" | "ab";
}

/** One skbuff router of the run: its cache mode ("ab": flipped every E2E_CACHE_AB_MS), TAP names, subnets 10.net.0.0/24 in and 198.51.out.0/24 out. */
interface RouterPlan {
  cache: "on" | "off" | "ab";
  tin: string;
  tout: string;
  net: number;
  out: number;
  args: string[];
}

/** The cache A/B router's slice, ms. */
export const E2E_CACHE_AB_MS = 10;

function startRouter(cfg: string, cache: "on" | "off" | "ab", args: string[]): Router {
  return { cache, ...startForward(cfg, ["--json", ...args], cache === "ab" ? {} : { SKBUFF_NAPI_CACHE: cache }) };
}

/** SIGINT a router and read its final report (the leak check; the cache A/B). */
async function routerDown(rt: Router): Promise<RouterReport> {
  rt.child.kill("SIGINT");
  const ex = await Promise.race([rt.exited, deadline(15_000)]);
  const r: RouterReport = {
    cache: rt.cache,
    ok: null,
    forwarded: null,
    packets: null,
    polls: null,
    gcs: null,
    heapAllocated: null,
    exitCode: ex === null ? null : ex.code,
    cacheAb: null,
  };
  const last = rt.out().trim().split("\n").pop() ?? "";
  try {
    const rep = JSON.parse(last) as Json;
    if (rep.type === "report") {
      r.ok = rep.ok === true;
      r.forwarded = (rep.stats?.router?.forwarded as number | undefined) ?? null;
      r.packets = (rep.loop?.packets as number | undefined) ?? null;
      r.polls = (rep.loop?.runs as number | undefined) ?? null;
      r.gcs = (rep.loop?.gcs as number | undefined) ?? null;
      r.heapAllocated = (rep.loop?.heapAllocated as number | undefined) ?? null;
      r.cacheAb = (rep.cacheAb as CacheAbResult | undefined) ?? null;
    }
  } catch {
    // no report
  }
  return r;
}

/**
 * Goodput of `num` ÷ `den` round by round (runs of one round are seconds
 * apart): median and range; rounds where the denominator moved nothing are
 * left out; null when the rounds do not pair up or none is left.
 */
function perRoundRatios(num: readonly Sample[], den: readonly Sample[]): { median: number; min: number; max: number } | null {
  if (num.length !== den.length) return null;
  const pairs = num.map((s, i) => [s.gbps, (den[i] as Sample).gbps] as const).filter(([a, b]) => a >= 0 && b > 0);
  return pairs.length === 0
    ? null
    : pairedRatios(
        pairs.map(([a]) => a),
        pairs.map(([, b]) => b),
      );
}

/** utime + stime of a process, seconds. */
function procCpuSeconds(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    const s = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) / 100; // fields 14, 15; USER_HZ 100
  } catch {
    return null;
  }
}

// biome-ignore lint/suspicious/noExplicitAny: iperf3's JSON, read field by field
type Json = Record<string, any>;

interface Sample {
  gbps: number;
  pps: number | null;
  retransmits: number | null;
  lossPercent: number | null;
  cpuClient: number;
  cpuServer: number;
  cpuRouter: number | null;
  bytes: number;
}

interface Path {
  router: "skbuff" | "kernel";
  cache: "on" | "off" | "-";
  server: string;
  pid: () => number | undefined;
}

/** Run the benchmark. Throws E2eUnavailable when a prerequisite is missing. */
export async function runE2eBench(o: E2eOptions): Promise<E2eResult> {
  const log = o.log ?? (() => {});
  const tools = e2ePreflight(log);
  const { ip: IP, iperf3: IPERF3 } = tools;
  const tests = o.tests ?? [...E2E_TESTS];
  const r = randomInt(0, 0xffffff).toString(16).padStart(6, "0");
  const nsC = `skbb-${r}-c`;
  const nsS = `skbb-${r}-s`;
  const nsR = `skbb-${r}-r`;
  const taps = { offIn: `skbb${r}fi`, offOut: `skbb${r}fo`, onIn: `skbb${r}ni`, onOut: `skbb${r}no` };
  const dir = mkdtempSync(join(tmpdir(), "skb-bench-e2e-"));
  const netns: string[] = [];
  const routers: Router[] = [];
  const servers: ChildProcess[] = [];
  const notes = [...tools.notes, "cache off: skb forward started with SKBUFF_NAPI_CACHE=off"];
  const tapNames: string[] = [];
  /** Routers still being wired (killed in `finally` if that fails). */
  const starting: Router[] = [];
  const nsx = (ns: string, args: string[]): string => sh(IP, ["netns", "exec", ns, ...args]);
  /** Start `skb forward` on a fresh TAP pair and wire its sides into the namespaces (the caller keeps the router). */
  const routerUp = async (p: RouterPlan): Promise<Router> => {
    const cfg = join(dir, `cfg-${p.tin}.json`);
    writeFileSync(
      cfg,
      JSON.stringify({
        devices: [
          { name: p.tin, type: "tap", address: `10.${p.net}.0.1/24`, vnetHdr: true },
          { name: p.tout, type: "tap", address: `198.51.${p.out}.1/24`, vnetHdr: true },
        ],
        routes: [],
        nat: { outside: p.tout },
        neighbours: [],
      }),
    );
    tapNames.push(p.tin, p.tout);
    const rt = startRouter(cfg, p.cache, p.args);
    starting.push(rt);
    await waitFor(
      () => rt.err().includes("skb forward: running") || rt.child.exitCode !== null,
      15_000,
      () => `skb forward (cache ${p.cache}) to start; stderr: ${rt.err()}`,
    );
    if (rt.child.exitCode !== null) throw new Error(`skb forward (cache ${p.cache}) exited early (${rt.child.exitCode}): ${rt.err()}${rt.out()}`);
    await waitFor(() => linkExists(IP, p.tin) && linkExists(IP, p.tout), 10_000, () => `${p.tin} / ${p.tout} to appear`);
    // The TAPs carry a vnet header: the namespaces keep checksum offload and
    // TSO on, so TCP crosses the router as 64 KiB super-frames both ways.
    const side = (ns: string, ifname: string, addr: string): void => {
      sh(IP, ["link", "set", ifname, "netns", ns]);
      sh(IP, ["-n", ns, "addr", "add", addr, "dev", ifname]);
      sh(IP, ["-n", ns, "link", "set", ifname, "up"]);
    };
    side(nsC, p.tin, `10.${p.net}.0.2/24`);
    side(nsS, p.tout, `198.51.${p.out}.10/24`);
    sh(IP, ["-n", nsC, "route", "add", `198.51.${p.out}.0/24`, "via", `10.${p.net}.0.1`, "dev", p.tin]);
    starting.splice(starting.indexOf(rt), 1);
    return rt;
  };
  try {
    for (const n of [nsC, nsS, nsR]) {
      sh(IP, ["netns", "add", n]);
      netns.push(n);
      sh(IP, ["-n", n, "link", "set", "lo", "up"]);
    }
    // ---- the two skbuff routers
    const plan: RouterPlan[] = [
      { cache: "off", tin: taps.offIn, tout: taps.offOut, net: 10, out: 100, args: [] },
      { cache: "on", tin: taps.onIn, tout: taps.onOut, net: 11, out: 101, args: [] },
    ];
    for (const p of plan) routers.push(await routerUp(p));
    // ---- the kernel router: veth pairs, ip_forward, nft masquerade
    const vC = `skbb${r}kc`;
    const vCR = `skbb${r}kC`;
    const vS = `skbb${r}ks`;
    const vSR = `skbb${r}kS`;
    sh(IP, ["link", "add", vC, "netns", nsC, "type", "veth", "peer", "name", vCR, "netns", nsR]);
    sh(IP, ["link", "add", vS, "netns", nsS, "type", "veth", "peer", "name", vSR, "netns", nsR]);
    const addrUp = (ns: string, dev: string, addr: string): void => {
      sh(IP, ["-n", ns, "addr", "add", addr, "dev", dev]);
      sh(IP, ["-n", ns, "link", "set", dev, "up"]);
    };
    addrUp(nsC, vC, "10.12.0.2/24");
    addrUp(nsR, vCR, "10.12.0.1/24");
    addrUp(nsR, vSR, "198.51.102.1/24");
    addrUp(nsS, vS, "198.51.102.10/24");
    sh(IP, ["-n", nsC, "route", "add", "198.51.102.0/24", "via", "10.12.0.1", "dev", vC]);
    nsx(nsR, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
    nsx(nsR, [tools.nft, "add table ip nat; add chain ip nat post { type nat hook postrouting priority 100 ; }; add rule ip nat post oifname " + vSR + " masquerade"]);

    const paths: Path[] = [
      { router: "skbuff", cache: "off", server: "198.51.100.10", pid: () => routers[0]?.child.pid },
      { router: "skbuff", cache: "on", server: "198.51.101.10", pid: () => routers[1]?.child.pid },
      { router: "kernel", cache: "-", server: "198.51.102.10", pid: () => undefined },
    ];

    const iperfServer = async (): Promise<{ done: Promise<{ code: number; stdout: string }> }> => {
      const srv = await iperf3Server(IP, IPERF3, nsS, (o.duration + 40) * 1000);
      servers.push(srv.child);
      return srv;
    };

    const measure = async (path: Path, test: E2eTest): Promise<Sample> => {
      const args = ["-c", path.server, "-t", String(o.duration), "--json"];
      if (test === "tcp4") args.push("-P", "4");
      if (test === "udp64") args.push("-u", "-l", "64", "-b", "0");
      if (test === "udp1400") args.push("-u", "-l", "1400", "-b", "0");
      const srv = await iperfServer();
      const cpu0 = procCpuSeconds(path.pid());
      const t0 = Date.now();
      const cli = await run(IP, ["netns", "exec", nsC, IPERF3, ...args], (o.duration + 20) * 1000);
      const elapsed = (Date.now() - t0) / 1000;
      const cpu1 = procCpuSeconds(path.pid());
      const sres = await Promise.race([srv.done, deadline(5_000)]);
      const what = `${path.router}${path.cache !== "-" ? ` cache ${path.cache}` : ""} ${test}`;
      let c: Json;
      try {
        c = JSON.parse(cli.stdout);
      } catch {
        throw new Error(`${what}: iperf3 client (exit ${cli.code}) printed no JSON: ${cli.stderr}${cli.stdout.slice(0, 2000)}`);
      }
      if (c.error !== undefined) throw new Error(`${what}: iperf3 client: ${c.error}`);
      const s: Json | null = sres !== null ? (() => { try { return JSON.parse(sres.stdout) as Json; } catch { return null; } })() : null;
      const cpu = c.end.cpu_utilization_percent ?? {};
      const cpuRouter = cpu0 !== null && cpu1 !== null && elapsed > 0 ? ((cpu1 - cpu0) / elapsed) * 100 : null;
      const secs = (c.end.sum_received?.seconds ?? c.end.sum?.seconds ?? o.duration) as number;
      if (test.startsWith("tcp")) {
        const recv = c.end.sum_received as { bytes: number; bits_per_second: number };
        return {
          gbps: recv.bits_per_second / 1e9,
          pps: null,
          retransmits: (c.end.sum_sent?.retransmits as number | undefined) ?? null,
          lossPercent: null,
          cpuClient: cpu.host_total ?? 0,
          cpuServer: cpu.remote_total ?? 0,
          cpuRouter,
          bytes: recv.bytes,
        };
      }
      // UDP: the server is the receiver; iperf3 3.12 puts the received counts in end.sum_received on the
      // server, older versions only in end.sum. Fall back to the client's view of the server's report.
      const sr = (s?.end?.sum_received ?? s?.end?.sum ?? c.end.sum) as { bytes: number; packets: number; lost_packets: number; lost_percent: number; bits_per_second: number; seconds: number };
      const sent = c.end.sum as { packets: number; lost_packets: number; lost_percent: number };
      const rsecs = sr.seconds > 0 ? sr.seconds : secs;
      const recvPackets = sr.packets - (sr.lost_packets ?? 0);
      const lossPercent = sent.packets > 0 ? Math.max(0, (1 - recvPackets / sent.packets) * 100) : (sr.lost_percent ?? 0);
      return {
        gbps: (sr.bytes * 8) / rsecs / 1e9,
        pps: recvPackets / rsecs,
        retransmits: null,
        lossPercent,
        cpuClient: cpu.host_total ?? 0,
        cpuServer: cpu.remote_total ?? 0,
        cpuRouter,
        bytes: sr.bytes,
      };
    };

    const samples = new Map<string, Sample[]>();
    const key = (p: Path, t: E2eTest): string => `${p.router}/${p.cache}/${t}`;
    for (let round = 1; round <= o.rounds; round++) {
      for (const t of tests) {
        // Alternate the order each round so no router always runs first.
        const order = round % 2 === 1 ? paths : [...paths].reverse();
        for (const p of order) {
          log(`round ${round}/${o.rounds}: ${t} via ${p.router}${p.cache !== "-" ? ` (cache ${p.cache})` : ""}`);
          const smp = await measure(p, t);
          const k = key(p, t);
          samples.set(k, [...(samples.get(k) ?? []), smp]);
        }
      }
    }

    const mean = (xs: (number | null)[]): number | null => {
      const v = xs.filter((x): x is number => x !== null);
      return v.length === 0 ? null : v.reduce((a, b) => a + b, 0) / v.length;
    };
    const results: E2eRow[] = [];
    for (const t of tests) {
      const kernSamples = samples.get(key(paths[2] as Path, t)) ?? [];
      const kern = mean(kernSamples.map((s) => s.gbps));
      for (const p of paths) {
        const ss = samples.get(key(p, t)) ?? [];
        const perRound = p.router === "kernel" ? null : perRoundRatios(ss, kernSamples);
        const gbps = mean(ss.map((s) => s.gbps)) ?? 0;
        const pps = mean(ss.map((s) => s.pps));
        const rtx = mean(ss.map((s) => s.retransmits));
        results.push({
          router: p.router,
          cache: p.cache,
          test: t,
          rounds: ss.length,
          gbps,
          kpps: pps === null ? null : pps / 1000,
          retransmits: rtx === null ? null : Math.round(rtx),
          lossPercent: mean(ss.map((s) => s.lossPercent)),
          cpuClient: mean(ss.map((s) => s.cpuClient)) ?? 0,
          cpuServer: mean(ss.map((s) => s.cpuServer)) ?? 0,
          cpuRouter: mean(ss.map((s) => s.cpuRouter)),
          ratioToKernel: kern !== null && kern > 0 ? gbps / kern : null,
          ratioToKernelPerRound: perRound,
          bytes: ss.reduce((a, s) => a + s.bytes, 0),
        });
      }
    }

    const cacheOnOff: E2eResult["cacheOnOff"] = tests.map((t) => {
      const on = samples.get(key(paths[1] as Path, t)) ?? [];
      const off = samples.get(key(paths[0] as Path, t)) ?? [];
      const mOn = mean(on.map((s) => s.gbps));
      const mOff = mean(off.map((s) => s.gbps));
      return { test: t, ratio: mOn !== null && mOff !== null && mOff > 0 ? mOn / mOff : null, perRound: perRoundRatios(on, off) };
    });

    // Stop the routers: their final reports carry the leak check.
    const reports: RouterReport[] = [];
    while (routers.length > 0) reports.push(await routerDown(routers.shift() as Router));

    // ---- the cache A/B inside one router, test by test: a fresh router each, the same runs.
    const cacheAb: E2eResult["cacheAb"] = [];
    for (const [i, t] of tests.entries()) {
      const rt = await routerUp({ cache: "ab", tin: `skbb${r}a${i}`, tout: `skbb${r}b${i}`, net: 13, out: 103, args: ["--cache-ab", String(E2E_CACHE_AB_MS)] });
      routers.push(rt);
      const path: Path = { router: "skbuff", cache: "on", server: "198.51.103.10", pid: () => rt.child.pid };
      for (let round = 1; round <= o.rounds; round++) {
        log(`cache A/B ${round}/${o.rounds}: ${t} via one router, the cache switched every ${E2E_CACHE_AB_MS} ms`);
        await measure(path, t);
      }
      const rep = await routerDown(rt);
      routers.length = 0;
      reports.push(rep);
      cacheAb.push({ test: t, result: rep.cacheAb });
    }
    return { duration: o.duration, rounds: o.rounds, results, cacheOnOff, cacheAb, routers: reports, notes };
  } finally {
    for (const c of servers) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
    for (const rt of [...routers, ...starting]) if (rt.child.exitCode === null && rt.child.signalCode === null) rt.child.kill("SIGKILL");
    for (const rt of [...routers, ...starting]) await Promise.race([rt.exited, deadline(5_000)]);
    ipDeleteAll(IP, "netns", netns);
    ipDeleteAll(IP, "link", tapNames);
    rmSync(dir, { recursive: true, force: true });
  }
}

const f = (x: number | null, d: number): string => (x === null ? "-" : x.toFixed(d));

/** The table. */
export function formatE2eBench(res: E2eResult): string {
  const head = ["router", "cache", "test", "Gbps", "kpps", "retrans", "loss %", "CPU cli/srv %", "router CPU %", "x kernel", "per round"];
  const rows = res.results.map((r) => [
    r.router,
    r.cache,
    r.test,
    f(r.gbps, 3),
    f(r.kpps, 1),
    r.retransmits === null ? "-" : String(r.retransmits),
    f(r.lossPercent, 2),
    `${r.cpuClient.toFixed(0)}/${r.cpuServer.toFixed(0)}`,
    f(r.cpuRouter, 0),
    r.ratioToKernel === null ? "-" : r.ratioToKernel.toFixed(3),
    r.ratioToKernelPerRound === null
      ? "-"
      : res.rounds === 1
        ? r.ratioToKernelPerRound.median.toFixed(3)
        : `${r.ratioToKernelPerRound.median.toFixed(3)} (${r.ratioToKernelPerRound.min.toFixed(2)}-${r.ratioToKernelPerRound.max.toFixed(2)})`,
  ]);
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] as string).length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i < 3 ? c.padEnd(w[i] as number) : c.padStart(w[i] as number))).join("  ");
  const out = [
    `skb bench e2e: iperf3 between two network namespaces, ${res.duration} s per test, ${res.rounds} round(s), routers alternating`,
    "",
    line(head),
    line(w.map((n) => "-".repeat(n))),
    ...rows.map(line),
    "",
    "NAPI head cache on / off (skbuff goodput, same run: of the means; per round: median and range):",
    ...res.cacheOnOff.map(
      (c) =>
        `  ${c.test.padEnd(8)} ${c.ratio === null ? "-" : `${c.ratio.toFixed(3)}×`}` +
        `${c.perRound === null ? "" : `   per round ${c.perRound.median.toFixed(3)}× (${c.perRound.min.toFixed(2)}–${c.perRound.max.toFixed(2)})`}`,
    ),
    "",
    `NAPI head cache A/B inside one router (skb forward --cache-ab ${E2E_CACHE_AB_MS}: the switch flips every ${E2E_CACHE_AB_MS} ms under the same traffic;`,
    "router-thread CPU per packet; off / on > 1: the cache makes a packet cheaper):",
    ...res.cacheAb.map((c) => {
      const a = c.result;
      if (a === null) return `  ${c.test.padEnd(8)} no result`;
      const ns = (x: number | null): string => (x === null ? "-" : `${x.toFixed(0)} ns`);
      return (
        `  ${c.test.padEnd(8)} on ${ns(a.on.nsPerPacket).padStart(8)}  off ${ns(a.off.nsPerPacket).padStart(8)}  off / on ${a.ratio === null ? "-" : `${a.ratio.toFixed(3)}×`}` +
        `${a.pairs === null ? "" : `   per slice pair: ${formatPairs(a.pairs)}`}`
      );
    }),
    "",
    ...res.routers.map(
      (r) =>
        `skb forward (cache ${r.cache}): exit ${r.exitCode}, forwarded ${r.forwarded ?? "?"}, ` +
        `${r.gcs ?? "?"} GCs over ${r.packets ?? "?"} packets polled` +
        `${r.polls && r.packets !== null ? ` in ${r.polls} polls (${(r.packets / r.polls).toFixed(1)} per poll)` : ""}` +
        `${r.heapAllocated !== null && r.packets ? ` (${(r.heapAllocated / r.packets).toFixed(1)} heap bytes allocated per packet)` : ""}, leak check ${r.ok === null ? "no report" : r.ok ? "ok" : "LEAKS"}`,
    ),
    ...res.notes.map((n) => `note: ${n}`),
  ];
  return out.join("\n");
}

/**
 * `skb bench e2e [--duration S] [--rounds N] [--cases tcp1,...] [--json]`
 * (the arguments after "bench e2e", already parsed by src/cli/main.ts).
 */
export async function runE2eCli(
  pos: string[],
  v: { duration?: string | undefined; rounds?: string | undefined; cases?: string | undefined; json?: boolean | undefined },
  out: (s: string) => void,
  err: (s: string) => void,
): Promise<number> {
  const { UsageError } = await import("../cli/main.js");
  if (pos.length > 0) throw new UsageError(`bench e2e: unexpected argument '${pos[0]}'`);
  let duration = 3;
  if (v.duration !== undefined) {
    duration = Number(v.duration);
    if (!/^\d+$/.test(v.duration) || !(duration >= 1) || duration > 600) throw new UsageError(`--duration: '${v.duration}' is not a whole number of seconds in [1, 600]`);
  }
  let rounds = 1;
  if (v.rounds !== undefined) {
    rounds = Number(v.rounds);
    if (!/^\d+$/.test(v.rounds) || rounds < 1 || rounds > 100) throw new UsageError(`--rounds: '${v.rounds}' is not a count in 1..100`);
  }
  let tests: E2eTest[] | undefined;
  if (v.cases !== undefined) {
    tests = v.cases.split(",").map((c) => {
      if (!(E2E_TESTS as readonly string[]).includes(c)) throw new UsageError(`--cases: unknown test '${c}' (one of ${E2E_TESTS.join(", ")})`);
      return c as E2eTest;
    });
  }
  const json = v.json === true;
  let res: E2eResult;
  try {
    res = await runE2eBench({ duration, rounds, ...(tests ? { tests } : {}), log: (s) => err(s) });
  } catch (e) {
    if (e instanceof E2eUnavailable) {
      err(e.message);
      return 1;
    }
    throw e;
  }
  out(json ? JSON.stringify(res, null, 2) : formatE2eBench(res));
  return res.routers.every((r) => r.ok === true && r.exitCode === 0) ? 0 : 1;
}
