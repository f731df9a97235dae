/**
 * The UDP / VXLAN tunnel device (src/drivers/udp-tunnel.ts) driven by the
 * event-loop NAPI driver (src/core/loop.ts):
 *
 * 1. Loopback only (127.0.0.1): two tunnels exchange frames in raw and
 *    vxlan mode (linear and paged skbs, every size class), the wire format
 *    is checked with a plain dgram socket, bad datagrams (wrong VNI, no I
 *    flag, short header, runt, oversize) are counted drops, the RX ring and
 *    TX limits are counted, ARP + ping work through a tunnel to the test
 *    host, and close releases the sockets and leaves no skb head or page in
 *    use.
 * 2. Real Linux (root, `ip`, `ping`, vxlan support): a network namespace
 *    with a veth pair on link-local addresses and a kernel vxlan device
 *    (VNI 42) pointing at our tunnel; the kernel pings our host through it
 *    and runs a TCP exchange with our tiny TCP echo listener. Skipped with
 *    the reason when any requirement is missing.
 */

import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import dgram from "node:dgram";
import { describe, test } from "node:test";
import { promisify } from "node:util";
import { runNapiLoop } from "../../src/core/loop.js";
import { Softnet } from "../../src/core/napi.js";
import {
  devQueueXmit,
  type NetDevice,
  NetNamespace,
  RX_BYTES,
  RX_DELIVERED,
  RX_DROPPED,
  RX_PACKETS,
  TX_BYTES,
  TX_DROPPED,
  TX_PACKETS,
} from "../../src/core/netdev.js";
import {
  UDP_TUNNEL_MAX_MTU,
  type UdpTunnelOptions,
  udpTunnelAddress,
  udpTunnelClose,
  udpTunnelCreate,
  udpTunnelPool,
  udpTunnelSetRecv,
  udpTunnelSetRemote,
  udpTunnelStats,
  VXLAN_FLAG_I,
} from "../../src/drivers/udp-tunnel.js";
import { kmemCacheInfo } from "../../src/mm/slab.js";
import { pagePoolStats } from "../../src/mm/page-pool.js";
import { pageFragCacheDrain } from "../../src/mm/page-frag.js";
import { ipv4 } from "../../src/net/proto.js";
import { createSkbCpu, type SkbCpu } from "../../src/skb/cpu.js";
import { SKB_DROP_REASON } from "../../src/skb/drop-reason.js";
import { napiConsumeSkb } from "../../src/skb/free.js";
import { createSkbMemory, type SkbMemory } from "../../src/skb/memory.js";
import { napiSkbCacheDrain } from "../../src/skb/napi-cache.js";
import {
  assertNoLeaks,
  ethFrame,
  icmpMessage,
  ip,
  ipv4Packet,
  lcgBytes,
  readPacket,
  skbFromBytes,
} from "../net/net-helpers.js";
import { hostArpStats, type TunnelHost, tunnelHostCreate } from "./tunnel-host.js";

const pexec = promisify(execFile);

interface Env {
  mem: SkbMemory;
  cpu: SkbCpu;
  ns: NetNamespace;
  sd: Softnet;
}

function envCreate(): Env {
  const mem = createSkbMemory({ arenaSize: 16 << 20 });
  const cpu = createSkbCpu(mem, 0);
  const ns = new NetNamespace();
  return { mem, cpu, ns, sd: new Softnet(cpu, ns) };
}

/** A receive hook that keeps every frame's bytes and consumes the skb. */
function collector(): { frames: number[][]; recv: UdpTunnelOptions["recv"] } {
  const frames: number[][] = [];
  return {
    frames,
    recv: (cpu, _napi, skb) => {
      frames.push(readPacket(cpu, skb));
      napiConsumeSkb(cpu, skb, 64);
    },
  };
}

/** Two tunnels on 127.0.0.1 pointing at each other (ephemeral ports). */
async function pairCreate(
  e: Env,
  mode: "raw" | "vxlan",
  extra: Partial<UdpTunnelOptions> = {},
): Promise<{ a: NetDevice; b: NetDevice; ca: ReturnType<typeof collector>; cb: ReturnType<typeof collector> }> {
  const ca = collector();
  const cb = collector();
  const common = { mode, localAddress: "127.0.0.1", localPort: 0, remoteAddress: "127.0.0.1", remotePort: 9, vni: 42, ...extra };
  const a = await udpTunnelCreate(e.ns, e.sd, { ...common, name: "tuna", recv: ca.recv });
  const b = await udpTunnelCreate(e.ns, e.sd, { ...common, name: "tunb", recv: cb.recv });
  udpTunnelSetRemote(a, "127.0.0.1", udpTunnelAddress(b).port);
  udpTunnelSetRemote(b, "127.0.0.1", udpTunnelAddress(a).port);
  return { a, b, ca, cb };
}

/** Test frames: Ethernet header + deterministic payload, 60..1514 bytes. */
function testFrames(n: number, seed: number): number[][] {
  const sizes = [60, 64, 128, 512, 1000, 1400, 1514];
  const out: number[][] = [];
  for (let i = 0; i < n; i++) {
    const len = sizes[i % sizes.length] as number;
    out.push(ethFrame([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1], 0x88b5, lcgBytes(len - 14, seed + i)));
  }
  return out;
}

/** Every object back: tunnels closed, caches drained, no head, no page in use. */
function assertAllFree(e: Env): void {
  napiSkbCacheDrain(e.cpu);
  pageFragCacheDrain(e.cpu.napiFrag);
  pageFragCacheDrain(e.cpu.netdevFrag);
  assert.equal(kmemCacheInfo(e.mem.headCache).activeObjs, 0, "skb heads in use");
  assert.equal(kmemCacheInfo(e.mem.pages.cache).activeObjs, 0, "pages in use");
  assertNoLeaks(e.cpu);
}

async function waitFor(what: string, pred: () => boolean, ms = 3000): Promise<void> {
  const until = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** Send `frames` from `from` (every 5th as a paged skb) and run NAPI until `got` has them all. */
async function exchange(e: Env, from: NetDevice, frames: number[][], got: number[][], base: number): Promise<void> {
  frames.forEach((f, i) => {
    const skb = skbFromBytes(e.cpu, f, i % 5 === 4 ? { linear: 40, fragSize: 300 } : {});
    devQueueXmit(e.cpu, from, skb);
  });
  const r = await runNapiLoop(e.sd, { until: () => got.length >= base + frames.length, timeoutMs: 5000 });
  assert.equal(r.reason, "until", `only ${got.length - base} of ${frames.length} frames arrived`);
}

describe("udp tunnel over loopback", () => {
  for (const mode of ["raw", "vxlan"] as const) {
    test(`${mode}: two devices exchange frames both ways, counted on both sides`, async () => {
      const e = envCreate();
      const { a, b, ca, cb } = await pairCreate(e, mode);
      const fwd = testFrames(40, 1);
      const back = testFrames(25, 100);
      await exchange(e, a, fwd, cb.frames, 0);
      await exchange(e, b, back, ca.frames, 0);
      assert.deepEqual(cb.frames, fwd);
      assert.deepEqual(ca.frames, back);
      const bytes = (fs: number[][]) => fs.reduce((s, f) => s + f.length, 0);
      assert.equal(a.stats[TX_PACKETS], 40);
      assert.equal(a.stats[TX_BYTES], bytes(fwd));
      assert.equal(b.stats[RX_PACKETS], 40);
      assert.equal(b.stats[RX_BYTES], bytes(fwd));
      assert.equal(b.stats[RX_DELIVERED], 0, "the recv hook is the stack here (netifReceiveSkb not used)");
      assert.equal(a.stats[RX_PACKETS], 25);
      const sa = udpTunnelStats(a);
      const sb = udpTunnelStats(b);
      const hdr = mode === "vxlan" ? 8 : 0;
      assert.equal(sa.txDatagrams, 40);
      assert.equal(sa.txDatagramBytes, bytes(fwd) + 40 * hdr);
      assert.equal(sb.rxDatagrams, 40);
      assert.equal(sb.rxDatagramBytes, bytes(fwd) + 40 * hdr);
      assert.equal(a.stats[TX_DROPPED] + a.stats[RX_DROPPED] + b.stats[TX_DROPPED] + b.stats[RX_DROPPED], 0);
      // RX pages came from the device's page pool and went back to it.
      assert.equal(pagePoolStats(udpTunnelPool(b)).inflight, 0);
      await udpTunnelClose(a);
      await udpTunnelClose(b);
      assertAllFree(e);
    });
  }

  test("vxlan wire format: flags 0x08, VNI in bytes 4..6, then the frame; raw: the frame alone", async () => {
    const e = envCreate();
    const sniff = dgram.createSocket("udp4");
    await new Promise<void>((r) => sniff.bind(0, "127.0.0.1", () => r()));
    const got: Buffer[] = [];
    sniff.on("message", (m) => got.push(m));
    const port = sniff.address().port;
    const c = collector();
    const vx = await udpTunnelCreate(e.ns, e.sd, {
      name: "vx",
      mode: "vxlan",
      vni: 0xabcdef,
      localPort: 0,
      remoteAddress: "127.0.0.1",
      remotePort: port,
      recv: c.recv,
    });
    const raw = await udpTunnelCreate(e.ns, e.sd, { name: "raw", mode: "raw", localPort: 0, remoteAddress: "127.0.0.1", remotePort: port, recv: c.recv });
    const [f1, f2] = testFrames(2, 7) as [number[], number[]];
    devQueueXmit(e.cpu, vx, skbFromBytes(e.cpu, f1));
    await waitFor("vxlan datagram", () => got.length === 1);
    devQueueXmit(e.cpu, raw, skbFromBytes(e.cpu, f2, { linear: 20, fragSize: 100 }));
    await waitFor("raw datagram", () => got.length === 2);
    const [d1, d2] = got as [Buffer, Buffer];
    assert.deepEqual([...d1.subarray(0, 8)], [VXLAN_FLAG_I, 0, 0, 0, 0xab, 0xcd, 0xef, 0]);
    assert.deepEqual([...d1.subarray(8)], f1);
    assert.deepEqual([...d2], f2);
    sniff.close();
    await udpTunnelClose(vx);
    await udpTunnelClose(raw);
    assertAllFree(e);
  });

  test("vxlan receive: wrong VNI, missing I flag, short header, runt and oversize are counted drops", async () => {
    const e = envCreate();
    const c = collector();
    const dev = await udpTunnelCreate(e.ns, e.sd, { name: "vx", vni: 42, localPort: 0, remoteAddress: "127.0.0.1", remotePort: 9, recv: c.recv });
    const port = udpTunnelAddress(dev).port;
    const tx = dgram.createSocket("udp4");
    const frame = testFrames(1, 3)[0] as number[];
    const hdr = (flags: number, vni: number, rsvd = 0) => [flags, rsvd, rsvd, rsvd, (vni >>> 16) & 255, (vni >>> 8) & 255, vni & 255, rsvd];
    const datagrams: [string, number[]][] = [
      ["good", [...hdr(0x08, 42), ...frame]],
      ["good, reserved bits set (RFC 7348: ignored on receipt)", [...hdr(0x08 | 0x80, 42, 0xff), ...frame]],
      ["wrong VNI", [...hdr(0x08, 43), ...frame]],
      ["no I flag", [...hdr(0x00, 42), ...frame]],
      ["short header", [0x08, 0, 0, 0, 0]],
      ["empty", []],
      ["runt frame", [...hdr(0x08, 42), 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]],
      ["oversize frame", [...hdr(0x08, 42), ...ethFrame([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1], 0x88b5, lcgBytes(1600))]],
    ];
    for (const [, d] of datagrams) tx.send(Buffer.from(d), port, "127.0.0.1");
    await waitFor("all datagrams", () => udpTunnelStats(dev).rxDatagrams === datagrams.length);
    const r = await runNapiLoop(e.sd, { until: () => c.frames.length >= 2, timeoutMs: 3000 });
    assert.equal(r.reason, "until");
    assert.deepEqual(c.frames, [frame, frame]);
    const s = udpTunnelStats(dev);
    assert.equal(s.rxWrongVni, 1);
    assert.equal(s.rxBadHeader, 3, "no I flag, short header, empty");
    assert.equal(s.rxRunt, 1);
    assert.equal(s.rxOversize, 1);
    assert.equal(dev.stats[RX_PACKETS], 2);
    assert.equal(dev.stats[RX_DROPPED], 6);
    // rx datagrams = delivered + dropped (+ queued: none)
    assert.equal(s.rxDatagrams, (dev.stats[RX_PACKETS] as number) + (dev.stats[RX_DROPPED] as number) + s.queued);
    assert.equal(tunnelRxDrops(s), dev.stats[RX_DROPPED]);
    assert.equal(dev.drops[SKB_DROP_REASON.UNHANDLED_PROTO], 1);
    assert.equal(dev.drops[SKB_DROP_REASON.L2_MALFORMED], 3);
    assert.equal(dev.drops[SKB_DROP_REASON.PKT_TOO_SMALL], 1);
    assert.equal(dev.drops[SKB_DROP_REASON.PKT_TOO_BIG], 1);
    tx.close();
    await udpTunnelClose(dev);
    assertAllFree(e);
  });

  test("RX ring full is a counted drop; NAPI honours its weight and the loop yields when the budget runs out", async () => {
    const e = envCreate();
    e.sd.budget = 8;
    const c = collector();
    const dev = await udpTunnelCreate(e.ns, e.sd, {
      name: "raw",
      mode: "raw",
      localPort: 0,
      remoteAddress: "127.0.0.1",
      remotePort: 9,
      rxRingSize: 16,
      weight: 4,
      recv: c.recv,
    });
    const port = udpTunnelAddress(dev).port;
    const tx = dgram.createSocket("udp4");
    const frames = testFrames(40, 9);
    for (const f of frames) tx.send(Buffer.from(f), port, "127.0.0.1");
    await waitFor("40 datagrams", () => udpTunnelStats(dev).rxDatagrams === 40);
    let s = udpTunnelStats(dev);
    assert.equal(s.queued, 16);
    assert.equal(s.rxRingFull, 24);
    assert.equal(dev.drops[SKB_DROP_REASON.FULL_RING], 24);
    const r = await runNapiLoop(e.sd, { until: () => c.frames.length >= 16, timeoutMs: 3000 });
    assert.equal(r.reason, "until");
    assert.deepEqual(c.frames, frames.slice(0, 16));
    assert.ok(r.runs >= 2, `16 frames at budget 8 need at least two runs, got ${r.runs}`);
    assert.ok(r.yields >= 1, "the loop yields to the event loop between budget-limited runs");
    s = udpTunnelStats(dev);
    assert.equal(s.rxDatagrams, (dev.stats[RX_PACKETS] as number) + (dev.stats[RX_DROPPED] as number) + s.queued);
    tx.close();
    await udpTunnelClose(dev);
    assertAllFree(e);
  });

  test("transmit: oversize frames and a closed device are dropped and counted; the socket is released by close", async () => {
    const e = envCreate();
    const { a, b } = await pairCreate(e, "raw", { mtu: 1000 });
    const big = ethFrame([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1], 0x88b5, lcgBytes(1100));
    devQueueXmit(e.cpu, a, skbFromBytes(e.cpu, big));
    assert.equal(udpTunnelStats(a).txOversize, 1);
    assert.equal(a.stats[TX_DROPPED], 1);
    assert.equal(a.stats[TX_PACKETS], 0);
    const port = udpTunnelAddress(a).port;
    await udpTunnelClose(a);
    await udpTunnelClose(a); // idempotent
    assert.equal(a.up, false);
    devQueueXmit(e.cpu, a, skbFromBytes(e.cpu, testFrames(1, 1)[0] as number[]));
    assert.equal(a.stats[TX_DROPPED], 2);
    assert.equal(a.drops[SKB_DROP_REASON.DEV_READY], 1);
    // The port is free again: binding it exclusively works.
    const s = dgram.createSocket("udp4");
    await new Promise<void>((res, rej) => {
      s.once("error", rej);
      s.bind({ port, address: "127.0.0.1", exclusive: true }, () => res());
    });
    s.close();
    await udpTunnelClose(b);
    assertAllFree(e);
  });

  test("queued sends (libuv's path when the socket buffer is full) hold their Buffer: a burst beyond txSlots is TX busy, no frame is corrupted", async () => {
    const child = new URL("./udp-tunnel-queued-child.js", import.meta.url);
    const { stdout } = await pexec(process.execPath, ["--test-udp-no-try-send", child.pathname], {
      env: { ...process.env, SKBUFF_TUNNEL_CHILD: "1" },
      timeout: 20_000,
    });
    assert.deepEqual(JSON.parse(stdout), {
      txBusyAfterBurst: 3,
      txQueuedAfterBurst: 2,
      inFlightAfterBurst: 2,
      txPackets: 4,
      txDropped: 3,
      txQueued: 4,
      txSocketErrors: 0,
      intact: true,
      received: 4,
      headsInUse: 0,
      pagesInUse: 0,
    });
  });

  test("close purges frames still on the RX ring and frees their pages", async () => {
    const e = envCreate();
    const c = collector();
    const dev = await udpTunnelCreate(e.ns, e.sd, { name: "raw", mode: "raw", localPort: 0, remoteAddress: "127.0.0.1", remotePort: 9, recv: c.recv });
    const tx = dgram.createSocket("udp4");
    for (const f of testFrames(10, 2)) tx.send(Buffer.from(f), udpTunnelAddress(dev).port, "127.0.0.1");
    await waitFor("10 datagrams", () => udpTunnelStats(dev).queued === 10);
    await udpTunnelClose(dev);
    assert.equal(udpTunnelStats(dev).rxPurged, 10);
    assert.equal(dev.stats[RX_DROPPED], 10);
    assert.equal(c.frames.length, 0);
    tx.close();
    assertAllFree(e);
  });

  test("options are validated and a failed bind registers nothing", async () => {
    const e = envCreate();
    const recv = collector().recv;
    const base = { name: "t", localPort: 0, remoteAddress: "127.0.0.1", recv };
    await assert.rejects(udpTunnelCreate(e.ns, e.sd, { ...base, mode: "vxlan" }), /needs a vni/);
    await assert.rejects(udpTunnelCreate(e.ns, e.sd, { ...base, mode: "vxlan", vni: 1 << 24 }), /needs a vni/);
    await assert.rejects(udpTunnelCreate(e.ns, e.sd, { ...base, mode: "raw" }), /needs remotePort/);
    await assert.rejects(udpTunnelCreate(e.ns, e.sd, { ...base, vni: 1, remoteAddress: "localhost" }), /not an IPv4 address/);
    await assert.rejects(udpTunnelCreate(e.ns, e.sd, { ...base, vni: 1, mtu: UDP_TUNNEL_MAX_MTU + 1 }), /MTU/);
    await assert.rejects(udpTunnelCreate(e.ns, e.sd, { ...base, vni: 1, rxRingSize: 100 }), /power of two/);
    const first = await udpTunnelCreate(e.ns, e.sd, { ...base, vni: 1 });
    await assert.rejects(
      udpTunnelCreate(e.ns, e.sd, { ...base, name: "t2", vni: 1, localPort: udpTunnelAddress(first).port }),
      /bind 127\.0\.0\.1:\d+ failed/,
    );
    assert.deepEqual(
      e.ns.list().map((d) => d.name),
      ["t"],
    );
    await udpTunnelClose(first);
    assertAllFree(e);
  });

  test("ARP and ping to the test host through a vxlan tunnel", async () => {
    const e = envCreate();
    const c = collector();
    const { a, b } = await pairCreate(e, "vxlan");
    // b is the host 169.254.99.1; a is the "client" whose frames we build by hand.
    b.ipAddr = ipv4("169.254.99.1");
    const host = tunnelHostCreate(b, e.sd);
    udpTunnelSetRecv(b, host.recv);
    udpTunnelSetRecv(a, c.recv);
    const cMac = [2, 0, 0, 0, 0x99, 2];
    const bMac = [...b.mac];
    const cIp = ip("169.254.99.2");
    const hIp = ip("169.254.99.1");
    const be32 = (v: number) => [(v >>> 24) & 255, (v >>> 16) & 255, (v >>> 8) & 255, v & 255];
    const arpReq = ethFrame([255, 255, 255, 255, 255, 255], cMac, 0x0806, [0, 1, 8, 0, 6, 4, 0, 1, ...cMac, ...be32(cIp), 0, 0, 0, 0, 0, 0, ...be32(hIp)]);
    devQueueXmit(e.cpu, a, skbFromBytes(e.cpu, arpReq));
    await runNapiLoop(e.sd, { until: () => c.frames.length >= 1, timeoutMs: 3000 });
    assert.deepEqual(c.frames[0], ethFrame(cMac, bMac, 0x0806, [0, 1, 8, 0, 6, 4, 0, 2, ...bMac, ...be32(hIp), ...cMac, ...be32(cIp)]));
    const echo = icmpMessage(8, 0, (0x1234 << 16) | 1, lcgBytes(56, 5));
    const ping = ethFrame(bMac, cMac, 0x0800, ipv4Packet({ src: cIp, dst: hIp, proto: 1 }, echo));
    devQueueXmit(e.cpu, a, skbFromBytes(e.cpu, ping, { linear: 30, fragSize: 40 }));
    await runNapiLoop(e.sd, { until: () => c.frames.length >= 2, timeoutMs: 3000 });
    const reply = c.frames[1] as number[];
    assert.deepEqual(reply.slice(0, 12), [...cMac, ...bMac]);
    assert.deepEqual(reply.slice(14 + 12, 14 + 20), [...be32(hIp), ...be32(cIp)]);
    assert.equal(reply[14 + 20], 0, "ICMP echo reply");
    assert.deepEqual(reply.slice(14 + 20 + 4), echo.slice(4), "id, sequence and data echoed");
    assert.equal(hostArpStats(host).outReplies, 1);
    assert.equal(host.sent.icmp, 1);
    assert.equal(b.stats[RX_PACKETS], 2);
    assert.equal(b.stats[TX_PACKETS], 2);
    await udpTunnelClose(a);
    await udpTunnelClose(b);
    assertAllFree(e);
  });
});

// ---- real Linux -----------------------------------------------------------------------------

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

/** Why the Linux test cannot run here, or null. Probes vxlan in a throwaway namespace. */
function linuxSkipReason(): string | null {
  if (process.platform !== "linux") return "not Linux";
  if (typeof process.getuid !== "function" || process.getuid() !== 0) return "needs root (network namespaces, veth, vxlan)";
  for (const [bin, args] of [
    ["ip", ["-V"]],
    ["ping", ["-V"]],
  ] as const) {
    try {
      sh(bin, [...args]);
    } catch {
      return `'${bin}' is not available (apt: ${bin === "ip" ? "iproute2" : "iputils-ping"})`;
    }
  }
  const probe = `skbprobe-${randomBytes(3).toString("hex")}`;
  try {
    sh("ip", ["netns", "add", probe]);
  } catch (e) {
    return `cannot create a network namespace: ${(e as Error).message.split("\n")[0]}`;
  }
  try {
    sh("ip", ["-n", probe, "link", "add", "vxprobe", "type", "vxlan", "id", "1", "dstport", "4789", "local", "127.0.0.1"]);
  } catch (e) {
    return `the kernel has no vxlan support (built in or module): ${(e as Error).message.split("\n")[0]}`;
  } finally {
    try {
      sh("ip", ["netns", "del", probe]);
    } catch {
      // gone already
    }
  }
  return null;
}

const skipLinux = linuxSkipReason();
const haveEthtool = (() => {
  try {
    sh("ethtool", ["--version"]);
    return true;
  } catch {
    return false;
  }
})();

describe("udp tunnel against a Linux vxlan device", () => {
  test("the kernel pings our host through VXLAN (VNI 42) and runs a TCP echo exchange", { skip: skipLinux ?? false, timeout: 60_000 }, async (t) => {
    const id = randomBytes(3).toString("hex");
    const nsName = `skbtest-${id}`;
    const vRoot = `skv${id}r`;
    const vNs = `skv${id}n`;
    // Link-local only: the veth link is a /30 in 169.254.x.0/24 and the overlay another 169.254.y.0/24
    // (x, y never 169, the metadata-service range). Nothing is routed off the machine.
    const x = 1 + (randomBytes(1)[0] as number) % 160;
    let y = x + 1 + ((randomBytes(1)[0] as number) % 60);
    if (y === 169) y = 170;
    const linkRoot = `169.254.${x}.1`;
    const linkNs = `169.254.${x}.2`;
    const ovlHost = `169.254.${y}.1`;
    const ovlNs = `169.254.${y}.2`;
    const e = envCreate();
    const ac = new AbortController();
    let dev: NetDevice | null = null;
    let loop: Promise<unknown> | null = null;
    try {
      sh("ip", ["netns", "add", nsName]);
      sh("ip", ["link", "add", vRoot, "type", "veth", "peer", "name", vNs, "netns", nsName]);
      sh("ip", ["addr", "add", `${linkRoot}/30`, "dev", vRoot]);
      sh("ip", ["link", "set", vRoot, "up"]);
      sh("ip", ["-n", nsName, "link", "set", "lo", "up"]);
      sh("ip", ["-n", nsName, "addr", "add", `${linkNs}/30`, "dev", vNs]);
      sh("ip", ["-n", nsName, "link", "set", vNs, "up"]);
      // Our end first (a random high port, retried if taken), then the kernel's vxlan device on the same port.
      let d: NetDevice | null = null;
      let port = 0;
      let box: TunnelHost | null = null;
      for (let attempt = 0; d === null; attempt++) {
        port = 40000 + (randomBytes(2).readUInt16BE(0) % 20000);
        try {
          d = await udpTunnelCreate(e.ns, e.sd, {
            name: "vxlan42",
            mode: "vxlan",
            vni: 42,
            localAddress: linkRoot,
            localPort: port,
            remoteAddress: linkNs,
            remotePort: port,
            mac: "02:00:00:00:99:01",
            recv: (c, n, skb) => (box as TunnelHost).recv(c, n, skb),
          });
        } catch (err) {
          if (attempt >= 4) throw err;
        }
      }
      dev = d;
      d.ipAddr = ipv4(ovlHost);
      d.prefixLen = 24;
      const host = tunnelHostCreate(d, e.sd, 7777);
      box = host;
      sh("ip", ["-n", nsName, "link", "add", "vx0", "type", "vxlan", "id", "42", "remote", linkRoot, "local", linkNs, "dstport", String(port), "dev", vNs]);
      sh("ip", ["-n", nsName, "link", "set", "vx0", "address", "02:00:00:00:99:02"]);
      sh("ip", ["-n", nsName, "addr", "add", `${ovlNs}/24`, "dev", "vx0"]);
      sh("ip", ["-n", nsName, "link", "set", "vx0", "up"]);
      // vx0 offloads the inner TCP checksum (CHECKSUM_PARTIAL) and veth never completes it, so the
      // datagram our socket reads would carry a pseudo-header-only TCP checksum: make vx0 checksum in software.
      if (haveEthtool) sh("ip", ["netns", "exec", nsName, "ethtool", "-K", "vx0", "tx", "off"]);
      t.diagnostic(sh("ip", ["-n", nsName, "-d", "link", "show", "vx0"]).split("\n").slice(0, 3).join(" | "));
      loop = runNapiLoop(e.sd, { signal: ac.signal });

      await t.test("ping -c 3 from the namespace", async (st) => {
      const ping = await pexec("ip", ["netns", "exec", nsName, "ping", "-c", "3", "-i", "0.2", "-W", "2", ovlHost], { timeout: 20_000 });
      st.diagnostic(`ping output:\n${ping.stdout}`);
      assert.match(ping.stdout, /3 packets transmitted, 3 received, 0% packet loss/);
      assert.ok(hostArpStats(host).outReplies >= 1, "our host answered the kernel's ARP request");
      assert.ok(host.sent.icmp >= 3);
      st.diagnostic(`host sent ${JSON.stringify(host.sent)}`);
      });

      const noTcp = haveEthtool ? false : "ethtool is not installed (apt: ethtool): vx0's inner TCP checksum offload cannot be turned off, and veth delivers its datagrams with the TCP checksum unfinished";
      await t.test("TCP echo exchange with a node client in the namespace", { skip: noTcp }, async (st) => {

      const client = [
        "const net = require('node:net');",
        `const s = net.connect({ host: '${ovlHost}', port: 7777 }, () => s.end('hello through vxlan 42'));`,
        "let got = ''; s.setEncoding('utf8'); s.on('data', (d) => { got += d; });",
        "s.on('close', () => { console.log(JSON.stringify({ got })); });",
        "s.on('error', (e) => { console.error(e.message); process.exit(2); });",
        "setTimeout(() => { console.error('timeout'); process.exit(3); }, 10000).unref();",
      ].join("\n");
      const tcp = await pexec("ip", ["netns", "exec", nsName, process.execPath, "-e", client], { timeout: 20_000 }).catch((err: Error) => {
        throw new Error(`TCP client failed (host drops ${JSON.stringify(host.drops)}, sent ${JSON.stringify(host.sent)}): ${err.message}`);
      });
      st.diagnostic(`tcp client: ${tcp.stdout.trim()}`);
      assert.deepEqual(JSON.parse(tcp.stdout), { got: "hello through vxlan 42" });
      await waitFor("the TCP close", () => host.tcpData.length === 1);
      assert.deepEqual(host.tcpData, ["hello through vxlan 42"]);
      st.diagnostic(`TCP segments sent by our host: ${host.sent.tcp}`);
      });

      const s = udpTunnelStats(d);
      t.diagnostic(`tunnel: ${JSON.stringify(s)}; host drops ${JSON.stringify(host.drops)}`);
      assert.equal(s.rxBadHeader + s.rxWrongVni + s.rxOversize + s.txSocketErrors, 0);
      // Every datagram is a delivered frame or a counted drop; every delivered frame reached the host.
      assert.equal(s.rxDatagrams, (d.stats[RX_PACKETS] as number) + tunnelRxDrops(s) + s.queued);
      assert.equal(host.frames, d.stats[RX_PACKETS]);
    } finally {
      ac.abort();
      if (loop !== null) await loop;
      if (dev !== null) await udpTunnelClose(dev);
      for (const args of [
        ["link", "del", vRoot],
        ["netns", "del", nsName],
      ]) {
        try {
          sh("ip", args);
        } catch {
          // already gone
        }
      }
    }
    assert.throws(() => sh("ip", ["netns", "exec", nsName, "true"]), "the namespace is gone");
    assertAllFree(e);
  });
});

/** Datagrams the tunnel dropped before building an skb. */
function tunnelRxDrops(s: ReturnType<typeof udpTunnelStats>): number {
  return s.rxBadHeader + s.rxWrongVni + s.rxOversize + s.rxRunt + s.rxRingFull + s.rxNomem + s.rxDown + s.rxPurged;
}
