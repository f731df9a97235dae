/**
 * Benchmark runner: `node dist/bench/alloc.js [--ops N] [--rounds N] [--profile P] [--json]`.
 * Same as `skb bench alloc`; kept here so every benchmark has a file in bench/.
 */
import { runCli } from "../src/cli/main.js";

process.exitCode = await runCli(["bench", "alloc", ...process.argv.slice(2)]);
