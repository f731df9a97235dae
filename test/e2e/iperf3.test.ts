/**
 * End to end: `skb forward` (the real bin/skb.js in a child process) routes
 * and masquerades real iperf3 traffic between two network namespaces.
 *
 * ```
 *  netns client                  this machine (skb forward)                 netns server
 *  10.10.0.2/16  ── TAP -in ──>  10.10.0.1/16   NAT   198.51.100.1/24  ── TAP -out ──>  198.51.100.10/24
 * ```
 *
 * It runs twice: with plain TAPs (no vnet header: MTU-sized frames, the
 * kernel side's TX checksum offload turned off when ethtool is there) and
 * with vnet-header TAPs (checksum offload and TSO on: TCP crosses the router
 * as GSO super-frames both ways, which the router must forward whole). The
 * router opens both TAPs; the test waits for each interface to appear, moves
 * it into its namespace and configures the kernel side. iperf3 runs a TCP test and a UDP test (50 Mbit/s); both
 * must complete with bytes received, and the server must see the client as
 * 198.51.100.1 (masqueraded). SIGINT then stops the router, whose final
 * report must show no leaks and every packet accounted for (received +
 * generated = transmitted + dropped + consumed + merged + held), exit code 0.
 *
 * Needs root, /dev/net/tun, the native TAP addon, `ip` (iproute2) and
 * `iperf3`; skipped with the reason otherwise. `ethtool` is optional (used
 * to turn TX checksum offload off on the kernel side). Everything is
 * deleted in `finally`; only addresses inside the test's own namespaces are
 * used, nothing leaves the machine.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { deadline, iperf3Server, parseJsonOutput, run, sh, which } from "../../src/bench/proc.js";
import { TapTopology, tapTopologySkipReason } from "./topology.js";


// ---- prerequisites -----------------------------------------------------------------------------

const IP = which("ip");
const IPERF3 = which("iperf3");
const ETHTOOL = which("ethtool");

const skip = tapTopologySkipReason({
  ip: { path: IP, pkg: "iproute2" },
  iperf3: { path: IPERF3, pkg: "iperf3" },
});
if (skip !== null) console.log(`# e2e iperf3 test skipped: ${skip}`);

// ---- helpers -------------------------------------------------------------------------------------

const iperfServer = (netns: string) => iperf3Server(IP as string, IPERF3 as string, netns);

// biome-ignore lint/suspicious/noExplicitAny: iperf3's and the router's JSON, read field by field
type Json = Record<string, any>;

const parseJson = (what: string, text: string): Json => parseJsonOutput<Json>(what, text);

// ---- the test --------------------------------------------------------------------------------------

describe("e2e: iperf3 through skb forward (TAP + NAT between two network namespaces)", { skip: skip ?? false }, () => {
  for (const vnet of [false, true]) {
  test(`${vnet ? "vnet-header TAPs (TSO super-frames)" : "plain TAPs"}: TCP and UDP iperf3 complete, the server sees the NATed address, SIGINT reports no leaks`, { timeout: 90_000 }, async () => {
    const t = new TapTopology(IP as string, "skbe", vnet);
    const { tapIn, tapOut, nsClient, nsServer } = t;
    try {
      t.addNamespaces();
      const rt = await t.startRouter(["--stats", "1", "--json"], "skb forward: running");
      // Kernel sides; plain TAPs: the kernel completes checksums itself (TX checksum offload off).
      t.attach((ns, ifname) => {
        if (vnet || ETHTOOL === null) return;
        try {
          sh(IP as string, ["netns", "exec", ns, ETHTOOL, "-K", ifname, "tx", "off"]);
        } catch {
          // a plain TAP has no TX checksum offload to turn off
        }
      });

      // TCP.
      const tcpSrv = await iperfServer(nsServer);
      const tcpCli = await run(IP as string, ["netns", "exec", nsClient, IPERF3 as string, "-c", "198.51.100.10", "-t", "2", "--json"], 25_000);
      const tcpSrvRes = await tcpSrv.done;
      assert.equal(tcpCli.code, 0, `iperf3 TCP client failed: ${tcpCli.stderr}${tcpCli.stdout.slice(0, 3000)}\nrouter: ${rt.err()}${rt.out().slice(-3000)}`);
      assert.equal(tcpSrvRes.code, 0, `iperf3 TCP server failed: ${tcpSrvRes.stderr}${tcpSrvRes.stdout.slice(0, 3000)}`);
      const tc = parseJson("iperf3 TCP client", tcpCli.stdout);
      const ts = parseJson("iperf3 TCP server", tcpSrvRes.stdout);
      assert.equal(tc.error, undefined, `iperf3 TCP client: ${tc.error}\nrouter: ${rt.out().slice(-3000)}`);
      assert.equal(ts.error, undefined, `iperf3 TCP server: ${ts.error}`);
      const tcpBytes = tc.end.sum_received.bytes as number;
      const tcpBps = tc.end.sum_received.bits_per_second as number;
      assert.ok(tcpBytes > 0, `TCP: no bytes received: ${JSON.stringify(tc.end)}`);
      assert.ok((ts.end.sum_received.bytes as number) > 0, "TCP: the server received no bytes");
      assert.equal(ts.start.accepted_connection.host, "198.51.100.1", "TCP: the server should see the masqueraded address");
      for (const c of ts.start.connected as { remote_host: string }[]) assert.equal(c.remote_host, "198.51.100.1");
      console.log(`# iperf3 TCP: ${(tcpBps / 1e9).toFixed(3)} Gbit/s received, ${tcpBytes} bytes, retransmits ${tc.end.sum_sent.retransmits ?? "?"}`);

      // UDP.
      const udpSrv = await iperfServer(nsServer);
      const udpCli = await run(
        IP as string,
        ["netns", "exec", nsClient, IPERF3 as string, "-c", "198.51.100.10", "-u", "-b", "50M", "-t", "2", "--json"],
        25_000,
      );
      const udpSrvRes = await udpSrv.done;
      assert.equal(udpCli.code, 0, `iperf3 UDP client failed: ${udpCli.stderr}${udpCli.stdout.slice(0, 3000)}`);
      assert.equal(udpSrvRes.code, 0, `iperf3 UDP server failed: ${udpSrvRes.stderr}${udpSrvRes.stdout.slice(0, 3000)}`);
      const uc = parseJson("iperf3 UDP client", udpCli.stdout);
      const us = parseJson("iperf3 UDP server", udpSrvRes.stdout);
      assert.equal(uc.error, undefined, `iperf3 UDP client: ${uc.error}\nrouter: ${rt.out().slice(-3000)}`);
      assert.equal(us.error, undefined, `iperf3 UDP server: ${us.error}`);
      // The server is the receiver. iperf3 3.12 puts the received bytes in end.sum_received (its end.sum.bytes
      // stays 0 on the server); older versions only have end.sum.
      const udpRecv = (us.end.sum_received ?? us.end.sum) as { bytes: number; packets: number; lost_packets: number; lost_percent: number; bits_per_second: number };
      assert.ok(udpRecv.bytes > 0, `UDP: the server received no bytes: ${JSON.stringify(us.end)}`);
      assert.ok(udpRecv.packets > 0);
      assert.equal(us.start.accepted_connection.host, "198.51.100.1", "UDP: the server should see the masqueraded address");
      for (const c of us.start.connected as { remote_host: string }[]) assert.equal(c.remote_host, "198.51.100.1");
      console.log(
        `# iperf3 UDP 50M: ${(udpRecv.bits_per_second / 1e6).toFixed(1)} Mbit/s received, ${udpRecv.packets} packets, ` +
          `lost ${udpRecv.lost_packets} (${udpRecv.lost_percent.toFixed(3)}%), client sent ${uc.end.sum.bytes} bytes`,
      );

      // Stop the router: final report, no leaks, exit 0.
      rt.child.kill("SIGINT");
      const ex = await Promise.race([rt.exited, deadline(15_000)]);
      assert.ok(ex !== null, `router did not exit within 15 s of SIGINT; stderr: ${rt.err()}`);
      assert.equal(ex.code, 0, `router exit ${ex.code} (${ex.signal}); stderr: ${rt.err()}\nstdout tail: ${rt.out().slice(-4000)}`);
      assert.match(rt.err(), /skb forward: SIGINT, stopping/);
      const lines = rt.out().trim().split("\n").map((l) => parseJson("router output line", l));
      const stats = lines.filter((l) => l.type === "stats");
      assert.ok(stats.length >= 1, "expected --stats 1 JSON lines while iperf3 ran");
      const rep = lines[lines.length - 1] as Json;
      assert.equal(rep.type, "report");
      assert.equal(rep.reason, "aborted");
      assert.equal(rep.accounting.ok, true, `accounting: ${(rep.accounting.problems as string[]).join("; ")}\n${JSON.stringify(rep.accounting)}`);
      assert.equal(rep.ok, true, `leaks: ${JSON.stringify(rep.leaks)}`);
      assert.equal(rep.leaks.heads, 0);
      assert.equal(rep.leaks.pages, 0);
      assert.equal(rep.leaks.conntrackEntries, 0);
      assert.deepEqual(rep.leaks.slabsInUse, {});
      assert.ok((rep.stats.router.forwarded as number) > 0, `router forwarded nothing: ${JSON.stringify(rep.stats.router)}`);
      // GC and allocation figures of the run are reported (the packet path allocates nothing; the event-loop plumbing a little).
      assert.ok(Number.isInteger(rep.loop.gcs) && rep.loop.gcs >= 0, JSON.stringify(rep.loop));
      assert.ok(Number.isFinite(rep.loop.heapAllocated) && rep.loop.heapAllocated >= 0);
      console.log(`# loop: ${rep.loop.packets} packets polled, ${rep.loop.irqRuns} of ${rep.loop.runs} runs from the TAP interrupt, ${rep.loop.gcs} GCs, ${(rep.loop.heapAllocated / Math.max(1, rep.loop.packets)).toFixed(1)} heap bytes per packet`);
      const tin = rep.tap[tapIn] as Json;
      const tout = rep.tap[tapOut] as Json;
      assert.ok(tin !== undefined && tout !== undefined, `tap counters in the report: ${JSON.stringify(rep.tap)}`);
      if (vnet) {
        // The client's TSO super-frames came in whole and left whole, NATed (the kernel segments them).
        assert.ok((tin.rxGso as number) > 0, `no GSO super-frames received on ${tapIn}: ${JSON.stringify(tin)}`);
        assert.ok((tout.txGso as number) > 0, `no GSO super-frames sent on ${tapOut}: ${JSON.stringify(tout)}`);
        assert.equal(tout.txGsoSegmented, 0, "nothing segmented in software");
      } else {
        assert.equal(tin.rxGso, 0);
        assert.equal(tout.txGso, 0);
      }
      console.log(
        `# router: forwarded ${rep.stats.router.forwarded}, drops ${JSON.stringify(rep.dropsByReason)}, nat ${JSON.stringify(rep.nat)}, ` +
          `${tapIn} rx GSO ${tin.rxGso}, ${tapOut} tx GSO ${tout.txGso}`,
      );
      const a = rep.accounting as Json;
      console.log(
        `# accounting: received ${a.received} + generated ${a.generated} = transmitted ${a.transmitted} + dropped ${a.dropped} + consumed ${a.consumed}` +
          ` + merged ${a.merged} + held ${a.held}; ARP queued ${a.detail.arpQueued}, sent after resolution ${a.detail.arpQueueSent}`,
      );
    } finally {
      await t.cleanup();
    }
  });
  }
});
