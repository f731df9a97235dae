/**
 * `skb pcap`: capture files.
 *
 * ```
 * skb pcap info FILE [--json]
 * skb pcap replay IN --out OUT [--cache on|off] [--direction inside|outside|auto]
 *                 [--format pcap|pcapng] [--vlan N] [--resolution us|ns] [--json]
 * ```
 *
 * Exit codes as the rest of the CLI: 0 success, 1 the command ran and failed
 * (a truncated or corrupt capture, an accounting error, a leak), 2 bad usage.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { captureInfo, CaptureFormatError, formatCaptureInfo } from "../io/pcap.js";
import { type ReplayResult, replayCapture } from "../io/replay.js";
import { UsageError } from "./main.js";

export const PCAP_HELP = `skb pcap — capture files (classic pcap and pcapng)

Usage:
  skb pcap info FILE [--json]
      format, byte order, timestamp resolution, link types, interfaces,
      packet count, bytes, first/last timestamps; a truncated or corrupt file
      is reported with the byte offset of the problem (exit 1)

  skb pcap replay IN --out OUT [options]
      push every frame of IN through the in-process VLAN NAT router and write
      what leaves each side. The router's hosts send and answer nothing.

replay options:
  --out OUT                      output capture (required)
  --format pcap|pcapng           pcapng (default unless OUT ends in .pcap): one
                                 file, interface 0 'inside' = frames the router
                                 sent into the inside VLAN, 1 'outside' = frames
                                 it sent to the outside; pcap: two files,
                                 OUT-inside.pcap and OUT-outside.pcap
  --direction inside|outside|auto
                                 where frames enter: inside = from the inside
                                 hosts (gen0), outside = from the outside (srv0);
                                 auto (default): 802.1Q-tagged frames and IPv4
                                 sources in the inside network (10.10.0.0/16)
                                 are inside, everything else outside
  --vlan N                       the router's inside VLAN (default 10, 0 =
                                 untagged); untagged inside frames get this tag
  --cache on|off                 NAPI head cache for the run (default on)
  --resolution us|ns             timestamp resolution of the output (default ns)
  --json                         machine-readable result on stdout

Replay details: unicast destination MACs are rewritten to the router port's;
IPv4 sources on the router's own links are learned as neighbours; anything
not on those links is routed to the outside server (198.51.100.10) as
gateway. Records that are not Ethernet, cut by the snaplen, shorter than an
Ethernet header or larger than one skb can hold are counted as skipped.
Output timestamps are the replay clock: the timestamp of the latest input
record read when the frame left the router.

Exit status: 0 ok, 1 a corrupt input or failed accounting/leak check, 2 bad usage.`;

const OPTIONS = {
  help: { type: "boolean", short: "h" },
  json: { type: "boolean" },
  out: { type: "string", short: "o" },
  cache: { type: "string" },
  direction: { type: "string" },
  format: { type: "string" },
  vlan: { type: "string" },
  resolution: { type: "string" },
} as const;

type Values = { [K in keyof typeof OPTIONS]?: (typeof OPTIONS)[K]["type"] extends "boolean" ? boolean : string };

function oneOf<T extends string>(v: string | undefined, flag: string, allowed: readonly T[]): T | undefined {
  if (v === undefined) return undefined;
  if (!(allowed as readonly string[]).includes(v)) throw new UsageError(`${flag}: expected ${allowed.join(" or ")}, got '${v}'`);
  return v as T;
}

function onlyFlags(v: Values, cmd: string, allowed: (keyof Values)[]): void {
  for (const k of Object.keys(v) as (keyof Values)[]) {
    if (v[k] !== undefined && !allowed.includes(k)) throw new UsageError(`pcap ${cmd}: --${k} does not apply here`);
  }
}

/**
 * Run `skb pcap ...` with `argv` after "pcap"; resolves to the exit code.
 * Throws UsageError for bad usage (the main CLI prints it, exit 2).
 */
export async function runPcapCli(argv: string[], out: (s: string) => void, err: (s: string) => void): Promise<number> {
  let parsed: ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError(`pcap: ${(e as Error).message}`);
  }
  const { values: v, positionals: pos } = parsed;
  const sub = pos[0] ?? "help";
  if (v.help === true || sub === "help") {
    out(PCAP_HELP);
    return 0;
  }
  try {
    switch (sub) {
      case "info":
        return cmdInfo(pos.slice(1), v, out);
      case "replay":
        return cmdReplay(pos.slice(1), v, out);
      default:
        throw new UsageError(`pcap: unknown command '${sub}' (available: info, replay)`);
    }
  } catch (e) {
    if (e instanceof CaptureFormatError) {
      err(`skb: ${e.message}`);
      return 1;
    }
    const code = (e as NodeJS.ErrnoException).code;
    if (typeof code === "string" && /^E[A-Z]+$/.test(code)) {
      err(`skb: ${(e as Error).message}`);
      return 1;
    }
    throw e;
  }
}

function cmdInfo(pos: string[], v: Values, out: (s: string) => void): number {
  onlyFlags(v, "info", ["json"]);
  if (pos.length === 0) throw new UsageError("pcap info: missing FILE");
  if (pos.length > 1) throw new UsageError(`pcap info: unexpected argument '${pos[1]}'`);
  const info = captureInfo(pos[0] as string);
  out(v.json === true ? JSON.stringify(info, null, 2) : formatCaptureInfo(info));
  return info.errors.length === 0 ? 0 : 1;
}

function cmdReplay(pos: string[], v: Values, out: (s: string) => void): number {
  if (pos.length === 0) throw new UsageError("pcap replay: missing input capture");
  if (pos.length > 1) throw new UsageError(`pcap replay: unexpected argument '${pos[1]}'`);
  if (v.out === undefined) throw new UsageError("pcap replay: --out OUT is required");
  const cache = oneOf(v.cache, "--cache", ["on", "off"] as const);
  const direction = oneOf(v.direction, "--direction", ["inside", "outside", "auto"] as const);
  const format = oneOf(v.format, "--format", ["pcap", "pcapng"] as const);
  const resolution = oneOf(v.resolution, "--resolution", ["us", "ns"] as const);
  let vlan: number | undefined;
  if (v.vlan !== undefined) {
    vlan = Number(v.vlan);
    if (!/^\d+$/.test(v.vlan) || vlan > 4094) throw new UsageError(`--vlan: '${v.vlan}' is not a VLAN id 0..4094`);
  }
  const input = pos[0] as string;
  if (input === v.out) throw new UsageError("pcap replay: --out must differ from the input");
  const res = replayCapture({
    input,
    output: v.out,
    ...(format !== undefined ? { format } : {}),
    ...(direction !== undefined ? { direction } : {}),
    ...(cache !== undefined ? { cache: cache === "on" } : {}),
    ...(vlan !== undefined ? { vlan } : {}),
    ...(resolution !== undefined ? { resolution } : {}),
  });
  out(v.json === true ? JSON.stringify(res, null, 2) : formatReplay(res));
  return res.ok ? 0 : 1;
}

function counts(o: Record<string, number>): string {
  const e = Object.entries(o);
  return e.length === 0 ? "none" : e.map(([k, n]) => `${k} ${n}`).join(", ");
}

/** Human-readable replay result (cold). */
export function formatReplay(r: ReplayResult): string {
  const outs = r.outputFormat === "pcapng" ? `${r.outputs.inside} (pcapng: interface 0 inside, 1 outside)` : `${r.outputs.inside}, ${r.outputs.outside}`;
  let skipped = 0;
  for (const n of Object.values(r.skipped)) skipped += n;
  let dropped = 0;
  for (const n of Object.values(r.drops)) dropped += n;
  const a = r.accounting;
  const lines = [
    `skb pcap replay — ${r.input} (${r.inputFormat}) -> ${outs}, NAPI cache ${r.napiCache ? "on" : "off"}`,
    `read        ${r.read}`,
    `injected    ${r.injected.total} (inside ${r.injected.inside}, outside ${r.injected.outside})`,
    `skipped     ${skipped}${skipped > 0 ? ` (${counts(r.skipped)})` : ""}`,
    `delivered   inside ${r.delivered.inside}, outside ${r.delivered.outside}`,
    `dropped     ${dropped}${dropped > 0 ? ` (${counts(r.drops)}; by device: ${counts(r.dropsByDevice)})` : ""}`,
    `router      ${counts(r.router)}; conntrack entries ${r.conntrackEntries}`,
    `accounting  ${a.ok && r.readBalanced ? "ok" : "FAILED"}: sent ${a.sent} + generated ${a.generated} = received ${a.received} + dropped ${dropped} + queued ${a.queued} + merged ${a.merged}` +
      `${r.readBalanced ? "" : "; read != injected + skipped"}${a.problems.length > 0 ? `; ${a.problems.join("; ")}` : ""}`,
    `leaks       ${r.leaks.ok ? "none" : `slabs in use ${counts(r.leaks.slabsInUse)}, conntrack entries ${r.leaks.conntrackEntries}`}`,
  ];
  if (r.stalled) lines.push("stalled     the pipeline stopped making progress");
  if (r.error !== null) lines.push(`error       ${r.error} (the input was replayed up to there)`);
  return lines.join("\n");
}
