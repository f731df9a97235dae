/**
 * skb forward's library side: configuration validation (exact messages) and
 * in-process runs from pcap inputs to pcap outputs: NAT, ARP replies for
 * our addresses, ARP requests for unresolved next hops whose packets wait
 * for the reply (and leave with the learned MAC once it comes), no leaks,
 * and every packet accounted for in the report.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import { createCaptureWriter } from "../../src/io/pcap.js";
import type { PcapDevPriv } from "../../src/drivers/pcap-dev.js";
import { ARP_OUT_REQUESTS, NEIGH_STAT_QUEUED } from "../../src/net/arp.js";
import {
  type ForwardReport,
  type Forwarder,
  FORWARD_ACCOUNTING_IDENTITY,
  ForwardConfigError,
  forwardAccountingCheck,
  forwarderCreate,
  forwarderDestroy,
  forwarderDrain,
  forwarderRun,
  forwarderTimers,
  formatForwardReport,
  parseForwardConfig,
} from "../../src/router/forward.js";
import { RT_ICMP_SENT } from "../../src/router/router.js";
import { readAll, tmp } from "../io/helpers.js";
import { ETH_P_IP, ethFrame, inetCsum, ip, ipv4Packet, pattern, PROTO_UDP, udpSegment } from "./helpers.js";

const LAN_MAC = "02:00:00:00:01:01";
const WAN_MAC = "02:00:00:00:02:01";
const HOST_MAC = Uint8Array.of(2, 0, 0, 0, 0, 0x10);
const GW_MAC = "02:00:00:00:00:fe";
/** 198.51.100.77: on the wan link, not configured; it answers ARP when a test gives it a wan input. */
const PEER_MAC = Uint8Array.of(2, 0, 0, 0, 0x77, 0x77);

/** The report's accounting must balance; its problems are the message when it does not. */
export function assertAccounted(rep: ForwardReport): void {
  assert.equal(rep.accounting.ok, true, `accounting: ${rep.accounting.problems.join("; ")}\n${JSON.stringify(rep.accounting)}`);
  assert.deepEqual(rep.accounting.problems, []);
}

function mac(s: string): Uint8Array {
  return Uint8Array.from(s.split(":").map((x) => parseInt(x, 16)));
}

function udpFrame(i: number, src: string, dst: string, sport: number, dport: number, dstMac: Uint8Array, srcMac: Uint8Array): Uint8Array {
  const s = ip(src);
  const d = ip(dst);
  const ipb = ipv4Packet({ saddr: s, daddr: d, proto: PROTO_UDP, payload: udpSegment(s, d, sport, dport, pattern(32, i)), id: i });
  return ethFrame(dstMac, srcMac, 0, ETH_P_IP, ipb);
}

function arpFrame(op: 1 | 2, senderMac: Uint8Array, sip: string, targetMac: Uint8Array | null, tip: string): Uint8Array {
  const f = new Uint8Array(42);
  if (op === 1 || targetMac === null) f.fill(0xff, 0, 6);
  else f.set(targetMac, 0);
  f.set(senderMac, 6);
  f[12] = 0x08;
  f[13] = 0x06;
  const a = 14;
  f.set([0, 1, 8, 0, 6, 4, 0, op], a);
  f.set(senderMac, a + 8);
  if (targetMac !== null) f.set(targetMac, a + 18);
  const s = ip(sip);
  const t = ip(tip);
  f.set([s >>> 24, (s >>> 16) & 255, (s >>> 8) & 255, s & 255], a + 14);
  f.set([t >>> 24, (t >>> 16) & 255, (t >>> 8) & 255, t & 255], a + 24);
  return f;
}

function arpRequest(senderMac: Uint8Array, sip: string, tip: string): Uint8Array {
  return arpFrame(1, senderMac, sip, null, tip);
}

function writePcap(file: string, frames: Uint8Array[]): void {
  const w = createCaptureWriter(file, { format: "pcap", resolution: "ns" });
  w.addInterface();
  frames.forEach((f, i) => {
    w.writePacket(0, 1_700_000_000, i * 1000, f, 0, f.length);
  });
  w.close();
}

function be32(b: Uint8Array, o: number): number {
  return (((b[o] as number) << 24) | ((b[o + 1] as number) << 16) | ((b[o + 2] as number) << 8) | (b[o + 3] as number)) >>> 0;
}

/** A config whose devices are both pcap files in `dir`. */
export function pcapConfig(dir: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    devices: [
      { name: "lan", type: "pcap", in: join(dir, "lan-in.pcap"), out: join(dir, "lan-out.pcap"), address: "10.0.0.1/24", mac: LAN_MAC },
      { name: "wan", type: "pcap", out: join(dir, "wan-out.pcap"), address: "198.51.100.1/24", mac: WAN_MAC },
    ],
    routes: [{ prefix: "0.0.0.0/0", via: "198.51.100.254", dev: "wan" }],
    nat: { outside: "wan" },
    neighbours: [{ address: "198.51.100.254", mac: GW_MAC, dev: "wan" }],
    ...extra,
  };
}

/** lan-in: an ARP request for the router, 10 UDP datagrams to the internet, 2 to an unresolved host on the wan link. */
export function writeLanInput(dir: string): void {
  const lan = mac(LAN_MAC);
  const frames: Uint8Array[] = [arpRequest(HOST_MAC, "10.0.0.2", "10.0.0.1")];
  for (let i = 0; i < 10; i++) frames.push(udpFrame(i, "10.0.0.2", "203.0.113.9", 40000 + (i % 2), 53, lan, HOST_MAC));
  for (let i = 0; i < 2; i++) frames.push(udpFrame(100 + i, "10.0.0.2", "198.51.100.77", 41000, 9, lan, HOST_MAC));
  writePcap(join(dir, "lan-in.pcap"), frames);
}

/**
 * wan-in: 198.51.100.77 answering the router's request. The pcap devices are
 * polled in creation order, so lan-in's datagrams (and the request they
 * cause) are routed before this reply is read.
 */
export function writeWanReply(dir: string): void {
  writePcap(join(dir, "wan-in.pcap"), [arpFrame(2, PEER_MAC, "198.51.100.77", mac(WAN_MAC), "198.51.100.1")]);
}

function configError(raw: unknown): string {
  try {
    parseForwardConfig(raw);
  } catch (e) {
    assert.ok(e instanceof ForwardConfigError, String(e));
    return e.message;
  }
  assert.fail("expected a configuration error");
}

describe("skb forward configuration", () => {
  const dev = (d: Record<string, unknown>) => ({ devices: [{ name: "a", type: "pcap", address: "10.0.0.1/24" }, d] });
  it("names the field of every error", () => {
    assert.equal(configError(dev({ name: "b", type: "tun" })), "config: devices[1].type: unknown type 'tun' (tap, vxlan, udp, pcap)");
    assert.equal(configError({}), "config: devices: expected a non-empty array of devices");
    assert.equal(configError(dev({ name: "a", type: "pcap" })), "config: devices[1].name: duplicate device name 'a'");
    assert.equal(configError(dev({ name: "b", type: "pcap", address: "10.0.0.300/24" })), "config: devices[1].address: '10.0.0.300' is not an IPv4 address");
    assert.equal(configError(dev({ name: "b", type: "pcap", address: "10.0.0.1" })), 'config: devices[1].address: expected "a.b.c.d/len", got "10.0.0.1"');
    assert.equal(configError(dev({ name: "b", type: "pcap", mtu: 10 })), "config: devices[1].mtu: expected an integer 68..65535, got 10");
    assert.equal(configError(dev({ name: "b", type: "pcap", mac: "01:00:5e:00:00:01" })), "config: devices[1].mac: '01:00:5e:00:00:01' is a multicast MAC address");
    assert.equal(configError(dev({ name: "b", type: "pcap", vni: 3 })), "config: devices[1].vni: unknown field (allowed: name, type, address, mac, mtu, vlans, in, out)");
    assert.equal(configError(dev({ name: "b", type: "vxlan", local: "127.0.0.1", remote: "127.0.0.1:4790" })), "config: devices[1].vni: required for vxlan (0..16777215)");
    assert.equal(configError(dev({ name: "b", type: "udp", local: "127.0.0.1", remote: "127.0.0.1" })), 'config: devices[1].port: required for udp (or give remote as "a.b.c.d:port")');
    assert.equal(configError(dev({ name: "b", type: "tap", vlans: [{ id: 4095, address: "10.1.0.1/24" }] })), "config: devices[1].vlans[0].id: expected an integer 1..4094, got 4095");
    assert.equal(configError(dev({ name: "b", type: "tap", txThread: "yes" })), 'config: devices[1].txThread: expected true or false, got "yes"');
    assert.equal(parseForwardConfig(dev({ name: "b", type: "tap", txThread: false })).devices[1]?.txThread, false);
    assert.equal(
      configError({ ...dev({ name: "b", type: "pcap" }), routes: [{ prefix: "10.9.0.1/16", dev: "a" }] }),
      "config: routes[0].prefix: '10.9.0.1/16' has host bits set (network is 10.9.0.0/16)",
    );
    assert.equal(
      configError({ ...dev({ name: "b", type: "pcap" }), routes: [{ prefix: "0.0.0.0/0", dev: "c" }] }),
      "config: routes[0].dev: unknown device 'c' (have: a, b)",
    );
    assert.equal(configError({ ...dev({ name: "b", type: "pcap" }), nat: { outside: "b" } }), "config: nat.outside: device 'b' has no address to masquerade to");
    assert.equal(
      configError({ ...dev({ name: "b", type: "pcap" }), neighbours: [{ address: "10.0.0.9", mac: "zz", dev: "a" }] }),
      "config: neighbours[0].mac: 'zz' is not a MAC address (aa:bb:cc:dd:ee:ff)",
    );
    assert.equal(configError({ ...dev({ name: "b", type: "pcap" }), route: [] }), "config: config.route: unknown field (allowed: devices, routes, nat, neighbours, conntrackMax, arenaSize)");
  });

  it("accepts VLAN children as route devices", () => {
    const c = parseForwardConfig({
      devices: [{ name: "eth0", type: "tap", vlans: [{ id: 10, address: "10.10.0.1/16" }] }],
      routes: [{ prefix: "10.20.0.0/16", via: "10.10.0.254", dev: "eth0.10" }],
    });
    assert.equal(c.routes[0]?.dev, "eth0.10");
  });
});

describe("skb forward in process: pcap in -> router -> pcap out", () => {
  it("masquerades, answers ARP, solicits unknown next hops, leaks nothing", async () => {
    const dir = tmp("skb-forward-");
    writeLanInput(dir);
    const f = await forwarderCreate(parseForwardConfig(pcapConfig(dir)));
    const rep = await forwarderRun(f, { untilIdle: true });
    assert.equal(rep.reason, "until");
    assert.ok(rep.ok, JSON.stringify(rep.leaks));
    assert.equal(rep.leaks.heads, 0);
    assert.equal(rep.leaks.pages, 0);
    const wan = readAll(join(dir, "wan-out.pcap"));
    const udpOut = wan.filter((r) => r.data[12] === 0x08 && r.data[13] === 0x00);
    assert.equal(udpOut.length, 10);
    for (const r of udpOut) {
      assert.deepEqual([...r.data.subarray(0, 6)], [...mac(GW_MAC)], "to the gateway's MAC");
      assert.deepEqual([...r.data.subarray(6, 12)], [...mac(WAN_MAC)], "from the wan MAC");
      assert.equal(be32(r.data, 26), ip("198.51.100.1"), "source masqueraded");
      assert.equal(be32(r.data, 30), ip("203.0.113.9"));
      assert.equal(r.data[22], 63, "TTL decremented");
    }
    // 198.51.100.77 is on the wan link with no neighbour entry: one ARP request; nothing
    // answers, so the datagrams wait on its entry until the router stops (NEIGH_DEAD).
    const arpOut = wan.filter((r) => r.data[12] === 0x08 && r.data[13] === 0x06);
    assert.equal(arpOut.length, 1);
    assert.equal(be32(arpOut[0]?.data as Uint8Array, 38), ip("198.51.100.77"));
    assert.equal(rep.dropsByReason.NEIGH_DEAD, 2);
    assert.equal(rep.dropsByReason.NEIGH_FAILED, undefined);
    assert.equal(rep.neigh.queued, 2);
    assert.equal(rep.neigh.queueFlushed, 2);
    assert.equal(rep.neigh.queuedNow, 0);
    // lan-out: the ARP reply to the host.
    const lan = readAll(join(dir, "lan-out.pcap"));
    assert.equal(lan.length, 1);
    const rp = lan[0]?.data as Uint8Array;
    assert.deepEqual([...rp.subarray(0, 6)], [...HOST_MAC]);
    assert.equal(rp[21], 2, "ARP reply");
    assert.deepEqual([...rp.subarray(22, 28)], [...mac(LAN_MAC)]);
    assert.equal(rep.arp.outReplies, 1);
    assert.equal(rep.arp.outRequests, 1);
    assert.equal(rep.stats.router.forwarded, 12);
    // Every packet accounted for, exactly.
    assertAccounted(rep);
    const a = rep.accounting;
    assert.deepEqual(
      [a.received, a.generated, a.transmitted, a.dropped, a.consumed, a.merged, a.held],
      [13, 1, 12, 2, 0, 0, 0],
      "13 frames + 1 request = 10 UDP + the request + the ARP reply sent, 2 dropped as NEIGH_DEAD",
    );
  });

  it("holds packets for an unresolved next hop and sends them, in order, once the ARP reply comes", async () => {
    const dir = tmp("skb-forward-arp-");
    writeLanInput(dir);
    writeWanReply(dir);
    const cfg = pcapConfig(dir) as { devices: Record<string, unknown>[] };
    (cfg.devices[1] as Record<string, unknown>).in = join(dir, "wan-in.pcap");
    const f = await forwarderCreate(parseForwardConfig(cfg));
    const rep = await forwarderRun(f, { untilIdle: true });
    assert.ok(rep.ok, JSON.stringify({ leaks: rep.leaks, accounting: rep.accounting }));
    assertAccounted(rep);
    const wan = readAll(join(dir, "wan-out.pcap"));
    const kinds = wan.map((r) => (r.data[13] === 0x06 ? "arp" : be32(r.data, 30) === ip("198.51.100.77") ? "peer" : "internet"));
    // The request goes out before the held datagrams, which follow the reply in their order.
    const req = kinds.indexOf("arp");
    assert.ok(req >= 0 && kinds.lastIndexOf("peer") > req && kinds.indexOf("peer") > req, kinds.join(" "));
    assert.equal(kinds.filter((k) => k === "arp").length, 1);
    const held = wan.filter((_r, i) => kinds[i] === "peer");
    assert.equal(held.length, 2);
    held.forEach((r, i) => {
      assert.deepEqual([...r.data.subarray(0, 6)], [...PEER_MAC], "to the MAC the reply taught");
      assert.deepEqual([...r.data.subarray(6, 12)], [...mac(WAN_MAC)]);
      assert.equal(be32(r.data, 26), ip("198.51.100.1"), "masqueraded");
      assert.equal((r.data[18] as number) * 256 + (r.data[19] as number), 100 + i, "in the order they came (IP id)");
    });
    assert.equal(rep.stats.router.forwarded, 12);
    for (const r of ["NEIGH_FAILED", "NEIGH_DEAD", "NEIGH_QUEUEFULL", "NEIGH_CREATEFAIL"]) assert.equal(rep.dropsByReason[r], undefined, r);
    assert.equal(rep.neigh.queued, 2);
    assert.equal(rep.neigh.queueSent, 2);
    assert.equal(rep.arp.inReplies, 1);
    assert.equal(rep.arp.inConsumed, 1);
    const a = rep.accounting;
    assert.deepEqual([a.received, a.generated, a.transmitted, a.dropped, a.consumed], [14, 1, 14, 0, 1], "nothing dropped: 12 UDP, the request and the ARP reply sent");
  });
});

const NO_LOOP = { runs: 0, packets: 0, sleeps: 0, wakeups: 0, irqRuns: 0, yields: 0, gcs: 0, heapAllocated: 0 };

/** A forwarder on pcapConfig with lan-in read and routed (no run loop: the test drives the clock). */
async function routedLanInput(dir: string): Promise<Forwarder> {
  writeLanInput(dir);
  const f = await forwarderCreate(parseForwardConfig(pcapConfig(dir)));
  forwarderDrain(f);
  return f;
}

describe("skb forward: ARP resolution that fails", () => {
  it("after mcast_solicit probes the held datagrams are dropped as NEIGH_FAILED, each answered by an ICMP host unreachable to the inside host", async () => {
    const dir = tmp("skb-forward-arp-fail-");
    const f = await routedLanInput(dir);
    assert.equal(f.neigh.qTotal, 2, "both datagrams to 198.51.100.77 wait");
    assert.equal(f.arpStats[ARP_OUT_REQUESTS], 1, "one request so far");
    const t0 = f.sd.jiffies;
    forwarderTimers(f, t0 + 1000);
    forwarderTimers(f, t0 + 2000);
    assert.equal(f.neigh.qTotal, 2);
    forwarderTimers(f, t0 + 3000);
    assert.equal(f.neigh.qTotal, 0);
    const rep = await forwarderDestroy(f, "test", NO_LOOP);
    assert.ok(rep.ok, JSON.stringify({ leaks: rep.leaks, accounting: rep.accounting }));
    assertAccounted(rep);
    assert.equal(rep.arp.outRequests, 3, "mcast_solicit = 3 requests");
    assert.equal(rep.neigh.resFailed, 1);
    assert.equal(rep.neigh.queueFailed, 2);
    assert.equal(rep.dropsByReason.NEIGH_FAILED, 2);
    assert.equal(rep.stats.router.icmpSent, 2);
    const a = rep.accounting;
    assert.deepEqual(
      [a.received, a.generated, a.transmitted, a.dropped, a.consumed, a.merged, a.held],
      [13, 5, 16, 2, 0, 0, 0],
      "13 frames + 3 requests + 2 ICMP = 10 UDP + 3 requests + the ARP reply + 2 ICMP sent, 2 dropped",
    );
    const wan = readAll(join(dir, "wan-out.pcap"));
    assert.equal(wan.filter((r) => r.data[13] === 0x06).length, 3);
    const lan = readAll(join(dir, "lan-out.pcap"));
    const icmp = lan.filter((r) => r.data[13] === 0x00);
    assert.equal(icmp.length, 2);
    for (const r of icmp) {
      const b = r.data;
      assert.deepEqual([...b.subarray(0, 6)], [...HOST_MAC]);
      assert.deepEqual([...b.subarray(6, 12)], [...mac(LAN_MAC)]);
      assert.equal(b[23], 1, "ICMP");
      assert.equal(inetCsum(b, 14, 34), 0, "IP header checksum");
      assert.equal(be32(b, 26), ip("198.51.100.1"), "from the address the datagrams were masqueraded to");
      assert.equal(be32(b, 30), ip("10.0.0.2"), "back to the inside host: de-masqueraded like a reply");
      assert.deepEqual([b[34], b[35]], [3, 1], "destination unreachable, host unreachable");
      assert.equal(inetCsum(b, 34, 14 + (b[16] as number) * 256 + (b[17] as number)), 0, "ICMP checksum");
      // The embedded datagram as the inside host sent it.
      assert.equal(be32(b, 54), ip("10.0.0.2"));
      assert.equal(be32(b, 58), ip("198.51.100.77"));
      assert.equal((b[62] as number) * 256 + (b[63] as number), 41000, "the host's own source port");
      assert.equal((b[64] as number) * 256 + (b[65] as number), 9);
    }
  });
});

describe("skb forward: the accounting check", () => {
  it(`checks ${FORWARD_ACCOUNTING_IDENTITY} and says how it is off`, () => {
    const good = { received: 13, generated: 5, transmitted: 16, dropped: 2, consumed: 0, merged: 0, held: 0 };
    const ok = forwardAccountingCheck(good);
    assert.equal(ok.ok, true);
    assert.deepEqual(ok.problems, []);
    assert.equal(ok.identity, FORWARD_ACCOUNTING_IDENTITY);
    const lost = forwardAccountingCheck({ ...good, transmitted: 15 });
    assert.equal(lost.ok, false);
    assert.deepEqual(lost.problems, [
      "received 13 + generated 5 = 18 but transmitted 15 + dropped 2 + consumed 0 + merged 0 + held 0 = 17 (1 packets unaccounted for)",
    ]);
    const twice = forwardAccountingCheck({ ...good, dropped: 4 });
    assert.match(twice.problems[0] as string, /\(2 packets counted twice\)$/);
    assert.equal(forwardAccountingCheck({ ...good, received: 14, held: 1 }).ok, true, "held balances it");
    const neg = forwardAccountingCheck({ ...good, received: 14, held: 1.5, transmitted: 15.5 });
    assert.equal(neg.ok, false);
    assert.deepEqual(neg.problems, ["transmitted is 15.5, not a count", "held is 1.5, not a count"]);
    const cross = forwardAccountingCheck(good, {}, ["lan: the capture read 3 records, injected 1 (RX_PACKETS 2), skipped 0, 0 without memory"]);
    assert.equal(cross.ok, false, "a cross-check problem fails it even when the sums balance");
  });

  it("a counter that is off makes the report fail: accounting FAILED with its problems, report not ok, leaks still none", async () => {
    const f = await routedLanInput(tmp("skb-forward-acct-"));
    // An ICMP error the router claims to have made but never sent, a packet the ARP
    // queue claims to have taken, a record the capture claims to have injected.
    f.router.stats[RT_ICMP_SENT] = (f.router.stats[RT_ICMP_SENT] as number) + 1;
    f.neigh.stats[NEIGH_STAT_QUEUED] = (f.neigh.stats[NEIGH_STAT_QUEUED] as number) + 1;
    const lan = f.phys[0]?.dev.priv as PcapDevPriv;
    lan.injected++;
    const rep = await forwarderDestroy(f, "test", NO_LOOP);
    assert.equal(rep.accounting.ok, false);
    assert.equal(rep.ok, false);
    assert.equal(rep.leaks.heads, 0, "no leak: only the accounting fails");
    const p = rep.accounting.problems;
    assert.equal(p.length, 3, p.join("\n"));
    assert.match(p[0] as string, /^lan: the capture read 13 records, injected 14 \(RX_PACKETS 13\), skipped 0, 0 without memory$/);
    assert.match(p[1] as string, /^ARP queue: 3 packets queued but 2 left it/);
    assert.match(p[2] as string, /^received 13 \+ generated 2 = 15 but transmitted 12 \+ dropped 2 .* = 14 \(1 packets unaccounted for\)$/);
    const text = formatForwardReport(rep);
    assert.match(text, /\naccounting {2}FAILED: received 13 \+ generated 2 = transmitted 12 \+ dropped 2 \+ consumed 0 \+ merged 0 \+ held 0\n/);
    assert.match(text, /\n {2}problem: ARP queue: /);
    assert.match(text, /\nleaks {7}none: 0 heads/);
  });
});
