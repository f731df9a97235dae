/**
 * Child-process helpers for the end-to-end benchmark and tests: find a tool,
 * run a command (sync or async, never rejecting), poll until a condition,
 * and start `skb forward` as a child with its output collected. Cold path.
 *
 * @module
 */

import { type ChildProcess, execFile, execFileSync, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

/** The `skb` launcher of this package. */
export const SKB_BIN = fileURLToPath(new URL("../../../bin/skb.js", import.meta.url));

/** Path of `cmd` on PATH, or null. */
export function which(cmd: string): string | null {
  try {
    return execFileSync("sh", ["-c", `command -v ${cmd}`], { encoding: "utf8" }).trim() || null;
  } catch {
    return null;
  }
}

/** Run a command synchronously; throws on a non-zero exit; returns stdout. */
export function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

/** Run a command; resolve with its exit code and output (never rejects). */
export function run(cmd: string, args: string[], timeoutMs: number): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { encoding: "utf8", timeout: timeoutMs, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === "number" ? ((err as { code: number }).code as number) : 1;
      resolve({ code, stdout, stderr });
    });
  });
}

/** Resolve after `ms`. */
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A timeout for Promise.race that does not keep the process alive. */
export const deadline = (ms: number): Promise<null> => new Promise((r) => setTimeout(() => r(null), ms).unref());

/** Poll `fn` every 50 ms until it is true; throw naming `what` after `ms`. */
export async function waitFor(fn: () => boolean, ms: number, what: () => string): Promise<void> {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what()}`);
    await sleep(50);
  }
}

/** Collect a child's stdout and stderr as they arrive; read them with the getters. */
function captureOutput(child: ChildProcess): { out: () => string; err: () => string } {
  let out = "";
  let err = "";
  child.stdout?.on("data", (d) => {
    out += d;
  });
  child.stderr?.on("data", (d) => {
    err += d;
  });
  return { out: () => out, err: () => err };
}

/** A `skb forward` child: output collected, exit awaited. */
export interface ForwardChild {
  child: ChildProcess;
  out: () => string;
  err: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Start `skb forward CFG ...extra` with `env` added to this process's
 * environment. SKBUFF_FORWARD_NODE_ARGS (space-separated) adds Node options
 * to the child, e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof` to profile the
 * router under a benchmark (NODE_OPTIONS refuses --cpu-prof). `netns`: run
 * it inside that network namespace.
 */
export function startForward(cfg: string, extra: string[] = [], env: Record<string, string> = {}, netns?: string): ForwardChild {
  const nodeArgs = (process.env.SKBUFF_FORWARD_NODE_ARGS ?? "").split(" ").filter((a) => a !== "");
  const argv = [...nodeArgs, SKB_BIN, "forward", cfg, ...extra];
  // In a network namespace: `ip netns exec NS node ...` (signals reach node: ip execs it).
  const [cmd, args] = netns === undefined ? [process.execPath, argv] : ["ip", ["netns", "exec", netns, process.execPath, ...argv]];
  const child = spawn(cmd, args, {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...env },
  });
  const { out, err } = captureOutput(child);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on("close", (code, signal) => resolve({ code, signal }));
  });
  return { child, out, err, exited };
}

/** Does network interface `ifname` exist (in namespace `netns`, default this one)? `ip` is the iproute2 binary. */
export function linkExists(ip: string, ifname: string, netns?: string): boolean {
  try {
    sh(ip, [...(netns !== undefined ? ["-n", netns] : []), "link", "show", "dev", ifname]);
    return true;
  } catch {
    return false;
  }
}

/** Delete each of `names` (namespaces with `netns`, links with `link`) that still exists; never throws. */
export function ipDeleteAll(ip: string, what: "netns" | "link", names: readonly string[]): void {
  for (const n of names) {
    if (what === "link" && !linkExists(ip, n)) continue;
    try {
      sh(ip, what === "netns" ? ["netns", "del", n] : ["link", "del", n]);
    } catch {
      // gone meanwhile
    }
  }
}

/**
 * Start `iperf3 -s -1 --json` in namespace `netns` and wait until it
 * listens on 5201 (or exits). `child` lets the caller kill it on cleanup;
 * `done` resolves when it exits (killed after `timeoutMs`). The completion is
 * wrapped in an object: an async function returning the bare promise would
 * adopt it (and wait for the server to exit).
 */
export async function iperf3Server(
  ip: string,
  iperf3: string,
  netns: string,
  timeoutMs = 60_000,
): Promise<{ child: ChildProcess; done: Promise<{ code: number; stdout: string; stderr: string }> }> {
  const child = spawn(ip, ["netns", "exec", netns, iperf3, "-s", "-1", "--json"], { stdio: ["ignore", "pipe", "pipe"] });
  const { out, err } = captureOutput(child);
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  timer.unref();
  const done = new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? 1, stdout: out(), stderr: err() });
    }),
  );
  const listening = (): boolean => {
    try {
      return sh(ip, ["netns", "exec", netns, "ss", "-Hltn", "sport = :5201"]).trim() !== "";
    } catch {
      return false;
    }
  };
  await waitFor(() => listening() || child.exitCode !== null, 5_000, () => `iperf3 -s to listen in ${netns}`);
  return { child, done };
}

/** Parse JSON output of `what`, or throw with the start of the text. */
export function parseJsonOutput<T = unknown>(what: string, s: string): T {
  try {
    return JSON.parse(s) as T;
  } catch (e) {
    throw new Error(`${what}: not JSON (${(e as Error).message}): ${s.slice(0, 2000)}`);
  }
}
