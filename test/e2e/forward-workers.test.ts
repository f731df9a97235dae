/**
 * End to end: `skb forward --workers 2` (two worker threads as two CPUs over
 * one arena, each on its own queue of two multi-queue TAPs with a vnet
 * header) routes and masquerades real traffic between two network
 * namespaces:
 *
 * ```
 *  netns client                 skb forward --workers 2              netns server
 *  10.10.0.2/16 ── TAP -in ──>  cpu0 | cpu1  NAT (ports split)  ── TAP -out ──>  198.51.100.10/24
 * ```
 *
 * ping, iperf3 TCP with 8 streams and UDP with 4 streams must pass, the
 * server must see the masqueraded address, and after SIGINT the merged
 * report must show every CPU stopped cleanly, nothing left on the hand-over
 * rings and no memory in use anywhere in the shared arena.
 *
 * Needs root, /dev/net/tun, the native TAP addon, `ip` and `iperf3`;
 * skipped with the reason otherwise. Everything is deleted in `finally`.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { deadline, iperf3Server, parseJsonOutput, run, sh, which } from "../../src/bench/proc.js";
import { TapTopology, tapTopologySkipReason } from "./topology.js";

const IP = which("ip");
const IPERF3 = which("iperf3");
const PING = which("ping");

const skip = tapTopologySkipReason({
  ip: { path: IP, pkg: "iproute2" },
  iperf3: { path: IPERF3, pkg: "iperf3" },
  ping: { path: PING, pkg: "iputils-ping" },
});
if (skip !== null) console.log(`# e2e forward --workers test skipped: ${skip}`);

// biome-ignore lint/suspicious/noExplicitAny: iperf3's and the router's JSON, read field by field
type Json = Record<string, any>;

const parseJson = (what: string, text: string): Json => parseJsonOutput<Json>(what, text);

async function iperf(nsServer: string, nsClient: string, args: string[]): Promise<{ client: Json; server: Json }> {
  const srv = await iperf3Server(IP as string, IPERF3 as string, nsServer, 40_000);
  const cli = await run(IP as string, ["netns", "exec", nsClient, IPERF3 as string, "-c", "198.51.100.10", "--json", ...args], 30_000);
  const s = await srv.done;
  assert.equal(cli.code, 0, `iperf3 ${args.join(" ")}: ${cli.stderr}${cli.stdout.slice(0, 2000)}`);
  const client = parseJson("iperf3 client", cli.stdout);
  const server = parseJson("iperf3 server", s.stdout);
  assert.equal(client.error, undefined, `iperf3 client: ${client.error}`);
  assert.equal(server.error, undefined, `iperf3 server: ${server.error}`);
  return { client, server };
}

describe("e2e: skb forward --workers 2 (multi-queue TAPs, NAT split over two CPUs)", { skip: skip ?? false }, () => {
  test("ping, iperf3 TCP ×8 and UDP ×4 pass; the merged report is clean", { timeout: 120_000 }, async () => {
    const t = new TapTopology(IP as string, "skbw", true);
    const { tapIn, nsClient: nsC, nsServer: nsS } = t;
    try {
      t.addNamespaces();
      const router = await t.startRouter(["--workers", "2", "--stats", "1", "--json"], "skb forward: running on 2 CPUs");
      // Two queues per TAP: one per CPU.
      const queues = sh(IP as string, ["-d", "link", "show", "dev", tapIn]);
      assert.match(queues, /multi_queue/, `the TAP is multi-queue: ${queues}`);
      t.attach();

      const ping = await run(IP as string, ["netns", "exec", nsC, PING as string, "-c", "5", "-i", "0.2", "-W", "2", "198.51.100.10"], 20_000);
      const got = /(\d+) received/.exec(ping.stdout);
      assert.ok(got !== null && Number(got[1]) >= 3, `ping through the router: ${ping.stdout}${ping.stderr}`);

      const tcp = await iperf(nsS, nsC, ["-t", "2", "-P", "8"]);
      assert.ok((tcp.client.end.sum_received.bytes as number) > 0);
      for (const c of tcp.server.start.connected as { remote_host: string }[]) assert.equal(c.remote_host, "198.51.100.1", "masqueraded");
      const udp = await iperf(nsS, nsC, ["-t", "2", "-u", "-b", "20M", "-P", "4"]);
      const ur = (udp.server.end.sum_received ?? udp.server.end.sum) as Json;
      assert.ok((ur.packets as number) > 0, `UDP received: ${JSON.stringify(udp.server.end)}`);
      console.log(
        `# workers 2: TCP ×8 ${((tcp.client.end.sum_received.bits_per_second as number) / 1e9).toFixed(2)} Gbit/s, ` +
          `UDP ×4 ${((ur.bits_per_second as number) / 1e6).toFixed(1)} Mbit/s, lost ${ur.lost_packets}`,
      );

      router.child.kill("SIGINT");
      const ex = await Promise.race([router.exited, deadline(20_000)]);
      assert.ok(ex !== null, `router did not exit within 20 s of SIGINT: ${router.err()}`);
      const lines = router.out().trim().split("\n").map((l) => parseJson("router line", l));
      const stats = lines.filter((l) => l.type === "stats");
      assert.ok(stats.length >= 1, "live stats while running");
      assert.equal(stats[0].workers, 2);
      const rep = lines[lines.length - 1] as Json;
      assert.equal(rep.type, "report");
      assert.equal(ex.code, 0, `exit ${ex.code}: problems ${JSON.stringify(rep.problems)} stderr ${router.err()}`);
      assert.equal(rep.ok, true, JSON.stringify(rep.problems));
      assert.deepEqual(rep.problems, []);
      assert.equal(rep.workers, 2);
      assert.equal(rep.perCpu.length, 2);
      for (const c of rep.perCpu as Json[]) {
        assert.equal(c.ok, true);
        assert.equal(c.leftover, 0, "nothing stranded on a hand-over ring");
      }
      assert.equal(rep.leaks.heads, 0);
      assert.equal(rep.leaks.pages, 0);
      assert.deepEqual(rep.leaks.slabsInUse, {});
      assert.equal(rep.leaks.conntrackEntries, 0);
      assert.equal(rep.accounting.ok, true, `accounting over both CPUs: ${JSON.stringify(rep.accounting)}`);
      assert.equal(rep.accounting.received + rep.accounting.generated, rep.accounting.transmitted + rep.accounting.dropped + rep.accounting.consumed + rep.accounting.merged + rep.accounting.held);
      assert.equal(rep.handoff.handedOut, rep.handoff.handedIn, "every packet handed out was taken in");
      // Handed-over skbs are sent (and freed) by their owner: deferred back to the CPU that allocated them.
      assert.equal(rep.handoff.deferPushed, rep.handoff.deferDrained + rep.handoff.deferLateFlushed, "every deferred skb was freed by its allocating CPU");
      const fwd = (rep.perCpu as Json[]).map((c) => c.forwarded as number);
      assert.equal(fwd[0] + fwd[1], rep.stats.router.forwarded);
      assert.ok(rep.stats.router.forwarded > 0);
      console.log(`# per CPU forwarded ${fwd.join(" / ")}, hand-over ${JSON.stringify(rep.handoff)}, drops ${JSON.stringify(rep.dropsByReason)}`);
    } finally {
      await t.cleanup();
    }
  });
});
