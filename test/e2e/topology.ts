/**
 * The end-to-end tests' topology: `skb forward` routing with NAT between a
 * client and a server network namespace over two TAP devices.
 *
 * ```
 *  netns client                        skb forward                        netns server
 *  10.10.0.2/16  ── TAP in ──>  10.10.0.1/16  NAT  198.51.100.1/24  ── TAP out ──>  198.51.100.10/24
 * ```
 *
 * Use: create, then inside try: `addNamespaces()`, `startRouter(...)`,
 * `attach()`; in finally: `cleanup()` (kills the router if it still runs,
 * deletes what exists). Root only; only addresses inside the namespaces.
 */

import assert from "node:assert/strict";
import { randomInt } from "node:crypto";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { tapAddonStatus } from "../../src/native/tap-addon.js";
import { deadline, type ForwardChild, ipDeleteAll, linkExists, sh, startForward, waitFor } from "../../src/bench/proc.js";

/**
 * Why the topology cannot be built here, or null: Linux, root, /dev/net/tun,
 * the TAP addon, and each of `tools` (name → path from `which`, null when
 * missing; the value names the Debian package in the message).
 */
export function tapTopologySkipReason(tools: Record<string, { path: string | null; pkg: string }>): string | null {
  if (process.platform !== "linux") return `needs Linux (this is ${process.platform})`;
  if (typeof process.getuid !== "function" || process.getuid() !== 0) return "needs root (CAP_NET_ADMIN for TAP interfaces and network namespaces)";
  if (!existsSync("/dev/net/tun")) return "/dev/net/tun is absent (no tun module)";
  const addon = tapAddonStatus();
  if (!addon.available) return `native TAP addon unavailable: ${addon.reason}`;
  for (const [name, t] of Object.entries(tools)) if (t.path === null) return `\`${name}\` is not installed (apt-get install ${t.pkg})`;
  return null;
}

export const SERVER_ADDR = "198.51.100.10";
export const ROUTER_OUTSIDE_ADDR = "198.51.100.1";

export class TapTopology {
  readonly tapIn: string;
  readonly tapOut: string;
  readonly nsClient: string;
  readonly nsServer: string;
  readonly dir: string;
  readonly cfg: string;
  router: ForwardChild | null = null;
  private readonly netns: string[] = [];

  /** Names (`tag` plus a random suffix) and the router's config; nothing is created on the system yet. */
  constructor(
    readonly ip: string,
    tag: string,
    vnetHdr: boolean,
  ) {
    const r = randomInt(0, 0xffffff).toString(16).padStart(6, "0");
    this.tapIn = `${tag}-${r}-in`;
    this.tapOut = `${tag}-${r}-out`;
    this.nsClient = `${tag}-${r}-c`;
    this.nsServer = `${tag}-${r}-s`;
    this.dir = mkdtempSync(join(tmpdir(), `skb-e2e-${tag}-`));
    this.cfg = join(this.dir, "cfg.json");
    writeFileSync(
      this.cfg,
      JSON.stringify({
        devices: [
          { name: this.tapIn, type: "tap", address: "10.10.0.1/16", vnetHdr },
          { name: this.tapOut, type: "tap", address: `${ROUTER_OUTSIDE_ADDR}/24`, vnetHdr },
        ],
        routes: [],
        nat: { outside: this.tapOut },
        neighbours: [],
      }),
    );
  }

  /** The client and server namespaces, loopback up. */
  addNamespaces(): void {
    for (const n of [this.nsClient, this.nsServer]) {
      sh(this.ip, ["netns", "add", n]);
      this.netns.push(n);
      sh(this.ip, ["-n", n, "link", "set", "lo", "up"]);
    }
  }

  /** Start `skb forward CFG ...args`, wait for `ready` on its stderr and for both TAPs to exist. */
  async startRouter(args: string[], ready: string): Promise<ForwardChild> {
    const rt = startForward(this.cfg, args);
    this.router = rt;
    await waitFor(() => rt.err().includes(ready) || rt.child.exitCode !== null, 15_000, () => `the router to start; stderr: ${rt.err()}`);
    assert.equal(rt.child.exitCode, null, `router exited early: ${rt.err()}${rt.out()}`);
    await waitFor(
      () => linkExists(this.ip, this.tapIn) && linkExists(this.ip, this.tapOut),
      10_000,
      () => `${this.tapIn} / ${this.tapOut} to appear`,
    );
    return rt;
  }

  /** Move each TAP's kernel side into its namespace: address, up, default route via the router; `sideHook` runs after each. */
  attach(sideHook?: (ns: string, ifname: string) => void): void {
    const side = (ns: string, ifname: string, addr: string, gw: string): void => {
      sh(this.ip, ["link", "set", ifname, "netns", ns]);
      sh(this.ip, ["-n", ns, "addr", "add", addr, "dev", ifname]);
      sh(this.ip, ["-n", ns, "link", "set", ifname, "up"]);
      sh(this.ip, ["-n", ns, "route", "add", "default", "via", gw, "dev", ifname]);
      sideHook?.(ns, ifname);
    };
    side(this.nsClient, this.tapIn, "10.10.0.2/16", "10.10.0.1");
    side(this.nsServer, this.tapOut, `${SERVER_ADDR}/24`, ROUTER_OUTSIDE_ADDR);
  }

  /** Kill a router still running, delete the namespaces, TAPs and files that exist. */
  async cleanup(): Promise<void> {
    const rt = this.router;
    if (rt !== null && rt.child.exitCode === null && rt.child.signalCode === null) {
      rt.child.kill("SIGKILL");
      await Promise.race([rt.exited, deadline(5_000)]);
    }
    ipDeleteAll(this.ip, "netns", this.netns);
    ipDeleteAll(this.ip, "link", [this.tapIn, this.tapOut]);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
