/**
 * Benchmark runner: `node dist/bench/defer.js [--packets N] [--rounds N] [--burst N] [--defer-max N] [--ring N] [--json]`.
 * Remote frees with defer-free on vs off on two worker CPUs (src/bench/defer.ts).
 * Not part of the `skb` CLI.
 */
import { parseArgs } from "node:util";
import { formatDeferBench, runDeferBench } from "../src/bench/defer.js";

const { values: v } = parseArgs({
  options: {
    packets: { type: "string" },
    rounds: { type: "string" },
    burst: { type: "string" },
    "defer-max": { type: "string" },
    ring: { type: "string" },
    json: { type: "boolean", default: false },
  },
});
const num = (s: string | undefined, flag: string): number | undefined => {
  if (s === undefined) return undefined;
  const n = Number(s);
  if (!Number.isInteger(n)) throw new RangeError(`bench defer: ${flag} must be an integer, got '${s}'`);
  return n;
};
const r = await runDeferBench({
  packets: num(v.packets, "--packets"),
  rounds: num(v.rounds, "--rounds"),
  burst: num(v.burst, "--burst"),
  deferMax: num(v["defer-max"], "--defer-max"),
  ringSize: num(v.ring, "--ring"),
  onRound: v.json ? undefined : (i, n) => process.stderr.write(`round ${i}/${n}\n`),
});
process.stdout.write(v.json ? `${JSON.stringify(r, null, 2)}\n` : `${formatDeferBench(r)}\n`);
