#!/usr/bin/env node
// The `skb` command: a thin launcher for the compiled CLI.
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const main = new URL("../dist/src/cli/main.js", import.meta.url);
if (!existsSync(fileURLToPath(main))) {
  process.stderr.write("skb: the compiled CLI is missing (dist/src/cli/main.js); run `npm run build` first\n");
  process.exit(2);
}
const { runCli } = await import(main.href);
process.exitCode = await runCli(process.argv.slice(2));
