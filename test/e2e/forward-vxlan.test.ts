/**
 * End to end: `skb forward` with a VXLAN device facing a real Linux vxlan
 * and a TAP facing a server, masquerading between them — the router itself
 * runs inside a network namespace of the test.
 *
 * ```
 *  netns client                                 netns router (skb forward)                      netns server
 *  vx0 10.20.0.2/24 (Linux vxlan, VNI 42)       vxlan device 10.20.0.1/24 (node:dgram, :4789)
 *   └ underlay veth 192.0.2.2 ──────────────────── veth 192.0.2.1          NAT   TAP 198.51.100.1 ─── 198.51.100.10
 * ```
 *
 * ping (to the router and through it), iperf3 TCP and UDP must pass, the
 * server must see the masqueraded address, and on SIGINT the router's report
 * must balance its packet accounting with no leaks.
 *
 * Needs root, /dev/net/tun, the TAP addon, `ip`, `iperf3`, `ping` and vxlan
 * support in the kernel; skipped with the reason otherwise.
 */

import assert from "node:assert/strict";
import { randomInt } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { deadline, type ForwardChild, ipDeleteAll, iperf3Server, linkExists, parseJsonOutput, run, sh, startForward, waitFor, which } from "../../src/bench/proc.js";
import { tapTopologySkipReason } from "./topology.js";

const IP = which("ip");
const IPERF3 = which("iperf3");
const PING = which("ping");
const ETHTOOL = which("ethtool");

/** Can this kernel make a vxlan device? Probed in a throwaway namespace. */
function vxlanSkipReason(): string | null {
  const probe = `skbvxp-${randomInt(0, 0xffffff).toString(16)}`;
  try {
    sh(IP as string, ["netns", "add", probe]);
    sh(IP as string, ["-n", probe, "link", "add", "vxprobe", "type", "vxlan", "id", "1", "dstport", "4789", "local", "127.0.0.1"]);
    return null;
  } catch (e) {
    return `the kernel has no vxlan support: ${(e as Error).message.split("\n")[0]}`;
  } finally {
    ipDeleteAll(IP as string, "netns", [probe]);
  }
}

const skip =
  tapTopologySkipReason({
    ip: { path: IP, pkg: "iproute2" },
    iperf3: { path: IPERF3, pkg: "iperf3" },
    ping: { path: PING, pkg: "iputils-ping" },
  }) ?? vxlanSkipReason();
if (skip !== null) console.log(`# e2e forward over vxlan test skipped: ${skip}`);

// biome-ignore lint/suspicious/noExplicitAny: iperf3's and the router's JSON, read field by field
type Json = Record<string, any>;

describe("e2e: skb forward between a Linux vxlan (VNI 42) and a TAP, with NAT", { skip: skip ?? false }, () => {
  test("ping, iperf3 TCP and UDP pass through the tunnel; the report balances with no leaks", { timeout: 90_000 }, async () => {
    const ip = IP as string;
    const r = randomInt(0, 0xffffff).toString(16).padStart(6, "0");
    const nsC = `skbx-${r}-c`;
    const nsR = `skbx-${r}-r`;
    const nsS = `skbx-${r}-s`;
    const vC = `skbx${r}c`;
    const vR = `skbx${r}r`;
    const tap = `skbx-${r}-t`;
    const dir = mkdtempSync(join(tmpdir(), "skb-e2e-vxlan-"));
    const netns: string[] = [];
    let rt: ForwardChild | null = null;
    try {
      for (const n of [nsC, nsR, nsS]) {
        sh(ip, ["netns", "add", n]);
        netns.push(n);
        sh(ip, ["-n", n, "link", "set", "lo", "up"]);
      }
      // Underlay: client <-> router.
      sh(ip, ["link", "add", vC, "netns", nsC, "type", "veth", "peer", "name", vR, "netns", nsR]);
      sh(ip, ["-n", nsC, "addr", "add", "192.0.2.2/24", "dev", vC]);
      sh(ip, ["-n", nsC, "link", "set", vC, "up"]);
      sh(ip, ["-n", nsR, "addr", "add", "192.0.2.1/24", "dev", vR]);
      sh(ip, ["-n", nsR, "link", "set", vR, "up"]);
      // The router: its VXLAN device listens on the underlay address, inside the router namespace.
      const cfg = join(dir, "cfg.json");
      writeFileSync(
        cfg,
        JSON.stringify({
          devices: [
            { name: "vx42", type: "vxlan", local: "192.0.2.1:4789", remote: "192.0.2.2:4789", vni: 42, mtu: 1450, address: "10.20.0.1/24" },
            { name: tap, type: "tap", address: "198.51.100.1/24", vnetHdr: true },
          ],
          routes: [],
          nat: { outside: tap },
          neighbours: [],
        }),
      );
      const router = startForward(cfg, ["--stats", "1", "--json"], {}, nsR);
      rt = router;
      await waitFor(() => router.err().includes("skb forward: running") || router.child.exitCode !== null, 15_000, () => `the router; stderr: ${router.err()}`);
      assert.equal(router.child.exitCode, null, `router exited early: ${router.err()}${router.out()}`);
      await waitFor(() => linkExists(ip, tap, nsR), 10_000, () => `${tap} to appear in ${nsR}`);
      sh(ip, ["-n", nsR, "link", "set", tap, "netns", nsS]);
      sh(ip, ["-n", nsS, "addr", "add", "198.51.100.10/24", "dev", tap]);
      sh(ip, ["-n", nsS, "link", "set", tap, "up"]);
      // The client's kernel vxlan towards the router (inner checksums done by the kernel: no offload
      // to a veth that would hand our UDP socket a partial inner checksum).
      sh(ip, ["-n", nsC, "link", "add", "vx0", "type", "vxlan", "id", "42", "remote", "192.0.2.1", "local", "192.0.2.2", "dstport", "4789", "dev", vC]);
      sh(ip, ["-n", nsC, "link", "set", "vx0", "mtu", "1450"]);
      sh(ip, ["-n", nsC, "addr", "add", "10.20.0.2/24", "dev", "vx0"]);
      sh(ip, ["-n", nsC, "link", "set", "vx0", "up"]);
      sh(ip, ["-n", nsC, "route", "add", "default", "via", "10.20.0.1", "dev", "vx0"]);
      if (ETHTOOL !== null) sh(ip, ["netns", "exec", nsC, ETHTOOL, "-K", "vx0", "tx", "off"]);

      const pingRouter = await run(ip, ["netns", "exec", nsC, PING as string, "-c", "3", "-i", "0.2", "-W", "2", "10.20.0.1"], 20_000);
      assert.match(pingRouter.stdout, /3 received/, `ping the router over vxlan: ${pingRouter.stdout}${pingRouter.stderr}`);
      const pingServer = await run(ip, ["netns", "exec", nsC, PING as string, "-c", "3", "-i", "0.2", "-W", "2", "198.51.100.10"], 20_000);
      assert.match(pingServer.stdout, /3 received/, `ping the server through the router: ${pingServer.stdout}${pingServer.stderr}`);

      const iperf = async (args: string[]): Promise<{ c: Json; s: Json }> => {
        const srv = await iperf3Server(ip, IPERF3 as string, nsS, 40_000);
        const cli = await run(ip, ["netns", "exec", nsC, IPERF3 as string, "-c", "198.51.100.10", "--json", "-t", "2", ...args], 30_000);
        const sres = await srv.done;
        assert.equal(cli.code, 0, `iperf3 ${args.join(" ")}: ${cli.stderr}${cli.stdout.slice(0, 2000)}\nrouter: ${router.out().slice(-2000)}`);
        const c = parseJsonOutput<Json>("iperf3 client", cli.stdout);
        const s = parseJsonOutput<Json>("iperf3 server", sres.stdout);
        assert.equal(c.error, undefined, `iperf3 client: ${c.error}`);
        assert.equal(s.start.accepted_connection.host, "198.51.100.1", "the server sees the masqueraded address");
        return { c, s };
      };
      const tcp = await iperf([]);
      assert.ok((tcp.c.end.sum_received.bytes as number) > 0);
      const udp = await iperf(["-u", "-b", "20M"]);
      const ur = (udp.s.end.sum_received ?? udp.s.end.sum) as Json;
      assert.ok((ur.packets as number) > 0);
      console.log(
        `# vxlan: TCP ${((tcp.c.end.sum_received.bits_per_second as number) / 1e6).toFixed(0)} Mbit/s, ` +
          `UDP 20M ${((ur.bits_per_second as number) / 1e6).toFixed(1)} Mbit/s, lost ${ur.lost_packets}`,
      );

      router.child.kill("SIGINT");
      const ex = await Promise.race([router.exited, deadline(15_000)]);
      assert.ok(ex !== null, `router did not exit within 15 s: ${router.err()}`);
      const lines = router.out().trim().split("\n").map((l) => parseJsonOutput<Json>("router line", l));
      const rep = lines[lines.length - 1] as Json;
      assert.equal(rep.type, "report");
      assert.equal(ex.code, 0, `exit ${ex.code}: ${JSON.stringify(rep.accounting?.problems)} ${JSON.stringify(rep.leaks)}`);
      assert.equal(rep.ok, true);
      assert.equal(rep.accounting.ok, true, JSON.stringify(rep.accounting));
      assert.equal(rep.leaks.heads, 0);
      assert.equal(rep.leaks.pages, 0);
      const vx = (rep.stats.devices as Json[]).find((d) => d.name === "vx42") as Json;
      assert.ok(vx.rx > 0 && vx.tx > 0, `the vxlan device carried traffic both ways: ${JSON.stringify(vx)}`);
      console.log(`# router: forwarded ${rep.stats.router.forwarded}, vx42 rx ${vx.rx} tx ${vx.tx}, drops ${JSON.stringify(rep.dropsByReason)}`);
    } finally {
      if (rt !== null && rt.child.exitCode === null && rt.child.signalCode === null) {
        rt.child.kill("SIGKILL");
        await Promise.race([rt.exited, deadline(5_000)]);
      }
      ipDeleteAll(ip, "netns", netns);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
