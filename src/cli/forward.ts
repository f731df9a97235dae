/**
 * `skb forward CONFIG.json [--workers N] [--stats SECONDS] [--json] [--until-idle]`:
 * run the router of src/router/forward.ts until SIGINT / SIGTERM (or, with
 * `--until-idle`, until every capture input is done), then print the final
 * report with its leak check. `--workers N` (N > 1) runs it on N worker
 * threads as N CPUs (src/smp/forward-cluster.ts).
 *
 * Exit codes: 0 stopped cleanly with no leak, 1 a leak or a runtime error,
 * 2 bad usage or an invalid configuration.
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  type ForwardConfig,
  ForwardConfigError,
  type ForwardStats,
  forwarderCreate,
  forwarderRun,
  formatForwardReport,
  formatForwardStats,
  loadForwardConfig,
} from "../router/forward.js";
import { type ForwardClusterReport, type ForwardClusterStats, forwardClusterCheck, forwardClusterRun } from "../smp/forward-cluster.js";
import { tapAddonStatus } from "../native/tap-addon.js";
import { UsageError } from "./main.js";

export const FORWARD_HELP = `skb forward — a long-running router from a JSON configuration

Usage:
  skb forward CONFIG.json [--workers N] [--stats SECONDS] [--json] [--until-idle] [--cache-ab MS]

  --workers N    run on N worker threads as N CPUs (default 1: this thread). Every
                 device must be a tap: each CPU opens its own queue of the multi-queue
                 TAP and owns a conntrack partition and a slice of the NAT ports; a
                 packet that the kernel queued to the wrong CPU is handed over on a ring
  --stats N      print per-device rx/tx/drops and the conntrack count every N seconds
  --json         stats and the final report as JSON lines
  --until-idle   stop once every pcap input has been read and nothing is in flight
  --cache-ab MS  the NAPI head cache A/B in this run: flip the cache switch every MS ms
                 (10..10000) and report the router thread's CPU per packet with the
                 cache on and off, over the sums and per (on, off) slice pair (--workers 1;
                 needs the native addon for the thread CPU clock)

SIGINT / SIGTERM stop the router: drain, close the devices, flush conntrack,
drain the caches, print the final report with a leak check (exit 0, or 1 if
anything leaked). An invalid configuration exits 2 naming the field.

Configuration:
  { "devices": [ {"name": "lan", "type": "pcap", "in": "lan.pcap", "out": "lan-out.pcap",
                  "address": "10.0.0.1/24"},
                 {"name": "wan", "type": "tap", "address": "198.51.100.1/24", "vnetHdr": false,
                  "vlans": [{"id": 10, "address": "10.10.0.1/16"}]},
                 {"name": "vx0", "type": "vxlan", "local": "127.0.0.1:4789", "remote": "127.0.0.1:4790", "vni": 42} ],
    "routes": [ {"prefix": "0.0.0.0/0", "via": "198.51.100.254", "dev": "wan"} ],
    "nat": {"outside": "wan"},
    "neighbours": [ {"address": "198.51.100.254", "mac": "02:aa:00:00:00:01", "dev": "wan"} ] }
  device types: tap {vnetHdr?, txThread? (default true: writes on a transmit thread)},
  vxlan {local, remote, vni, port?}, udp {local, remote, port?},
  pcap {in?, out?}; all take address "a.b.c.d/len", mac, mtu, vlans [{id, address}].
  Connected routes are added for every address; next hops are resolved by ARP
  (static neighbours are permanent entries).`;

const OPTIONS = {
  help: { type: "boolean", short: "h" },
  json: { type: "boolean" },
  stats: { type: "string" },
  "until-idle": { type: "boolean" },
  workers: { type: "string" },
  "cache-ab": { type: "string" },
} as const;

/** Run `skb forward ...` (argv after "forward"); resolves to the exit code. */
export async function runForwardCli(argv: string[], out: (s: string) => void, err: (s: string) => void): Promise<number> {
  let parsed: ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError(`forward: ${(e as Error).message}`);
  }
  const { values: v, positionals: pos } = parsed;
  if (v.help === true) {
    out(FORWARD_HELP);
    return 0;
  }
  if (pos.length === 0) throw new UsageError("forward: missing CONFIG.json");
  if (pos.length > 1) throw new UsageError(`forward: unexpected argument '${pos[1]}'`);
  let statsMs: number | undefined;
  if (v.stats !== undefined) {
    const n = Number(v.stats);
    if (!/^\d+(\.\d+)?$/.test(v.stats) || !(n > 0) || n > 86400) throw new UsageError(`--stats: '${v.stats}' is not a number of seconds in (0, 86400]`);
    statsMs = Math.round(n * 1000);
  }
  const json = v.json === true;
  let workers = 1;
  if (v.workers !== undefined) {
    if (!/^\d+$/.test(v.workers) || Number(v.workers) < 1 || Number(v.workers) > 64) throw new UsageError(`--workers: '${v.workers}' is not an integer 1..64`);
    workers = Number(v.workers);
  }
  if (workers > 1 && v["until-idle"] === true) throw new UsageError("--until-idle is for pcap inputs, which --workers > 1 cannot share");
  let cacheAbMs: number | undefined;
  if (v["cache-ab"] !== undefined) {
    const n = Number(v["cache-ab"]);
    if (!/^\d+$/.test(v["cache-ab"]) || n < 10 || n > 10_000) throw new UsageError(`--cache-ab: '${v["cache-ab"]}' is not an integer number of ms in 10..10000`);
    if (workers > 1) throw new UsageError("--cache-ab needs --workers 1 (the switch is per thread)");
    const addon = tapAddonStatus();
    if (!addon.available) throw new UsageError(`--cache-ab needs the native addon (its thread CPU clock): ${addon.reason}`);
    cacheAbMs = n;
  }
  let config: ReturnType<typeof loadForwardConfig>;
  try {
    config = loadForwardConfig(pos[0] as string);
    forwardClusterCheck(config, workers);
  } catch (e) {
    if (e instanceof ForwardConfigError) {
      err(`skb: ${e.message}`);
      return 2;
    }
    throw e;
  }
  if (workers > 1) return await withStopSignals(err, (signal) => runCluster(config, workers, json, statsMs, signal, out, err));
  let f: Awaited<ReturnType<typeof forwarderCreate>>;
  try {
    f = await forwarderCreate(config);
  } catch (e) {
    err(`skb: forward: ${(e as Error).message}`);
    return 1;
  }
  return await withStopSignals(err, async (signal) => {
    // Said once the signal handlers are in: a caller may stop us as soon as it reads this.
    err(`skb forward: running (${f.ns.list().map((d) => `${d.name}:${d.kind}`).join(", ")})`);
    const report = await forwarderRun(f, {
      signal,
      untilIdle: v["until-idle"] === true,
      ...(cacheAbMs !== undefined ? { cacheAbMs } : {}),
      ...(statsMs !== undefined
        ? { statsMs, onStats: (s: ForwardStats) => out(json ? JSON.stringify({ type: "stats", ...s }) : formatForwardStats(s)) }
        : {}),
    });
    out(json ? JSON.stringify({ type: "report", ...report }) : formatForwardReport(report));
    return report.ok ? 0 : 1;
  });
}

/** Run `body` with SIGINT / SIGTERM turned into an abort of its signal (said on stderr); the handlers go afterwards. */
async function withStopSignals(err: (s: string) => void, body: (signal: AbortSignal) => Promise<number>): Promise<number> {
  const ac = new AbortController();
  const onSignal = (sig: NodeJS.Signals): void => {
    err(`skb forward: ${sig}, stopping`);
    ac.abort();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  try {
    return await body(ac.signal);
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

async function runCluster(
  config: ForwardConfig,
  workers: number,
  json: boolean,
  statsMs: number | undefined,
  signal: AbortSignal,
  out: (s: string) => void,
  err: (s: string) => void,
): Promise<number> {
  let report: ForwardClusterReport;
  try {
    report = await forwardClusterRun(config, {
      workers,
      signal,
      onReady: (devs) => err(`skb forward: running on ${workers} CPUs (${devs.join(", ")})`),
      ...(statsMs !== undefined
        ? {
            statsMs,
            onStats: (s: ForwardClusterStats) =>
              out(
                json
                  ? JSON.stringify({ type: "stats", ...s })
                  : `${formatForwardStats(s)}\n  per CPU forwarded: ${s.perCpu.map((c) => `cpu${c.id} ${c.forwarded} (handed out ${c.handoff.handedOut ?? 0})`).join(", ")}`,
              ),
          }
        : {}),
    });
  } catch (e) {
    err(`skb: forward: ${(e as Error).message}`);
    return 1;
  }
  if (json) out(JSON.stringify({ type: "report", ...report }));
  else {
    out(formatForwardReport(report));
    out(
      `cpus        ${report.perCpu.map((c) => `cpu${c.id}: forwarded ${c.forwarded}, handed out ${c.handoff.handedOut ?? 0}, in ${c.handoff.handedIn ?? 0}`).join("; ")}`,
    );
    for (const p of report.problems) out(`problem     ${p}`);
  }
  return report.ok ? 0 : 1;
}
