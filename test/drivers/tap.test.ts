/**
 * TAP device tests.
 *
 * Without privileges: the virtio header conversions (both directions, no
 * kernel), the "unavailable" error of the kill switch, argument errors, and
 * an unprivileged child process getting the permission error.
 *
 * As root (skipped with the reason otherwise, or when /dev/net/tun, `ip` or
 * the addon is missing): real TAP interfaces moved into network namespaces
 * this test creates (the fds stay here), with link-local /30 addresses:
 * - ARP + ICMP both ways: the kernel ARPs and pings us, a tiny responder
 *   (hand-built ARP reply, icmpRcvEcho) answers, `ping -c 3` succeeds;
 * - two queues (IFF_MULTI_QUEUE) answer the same way;
 * - the readable fd schedules NAPI; one poll stops at its weight, reading in
 *   bursts of rxBurst; a frame that fills the RX buffers is a counted drop;
 * - vnet header: a UDP datagram from the namespace arrives with NEEDS_CSUM
 *   (CHECKSUM_PARTIAL at the UDP header) and its checksum completes right;
 *   a UDP_SEGMENT send arrives as one USO super-frame;
 * - a TAP-to-TAP bridge between two namespaces carries a TCP transfer:
 *   vnet both sides (TSO super-frames in, super-frames out, checksums left
 *   PARTIAL), and vnet in / plain out (software GSO + checksum help, the
 *   receiving kernel verifies every checksum). Byte counts and SHA-256 match.
 * Everything is deleted in `finally` (device fds closed, namespaces deleted).
 */

import assert from "node:assert/strict";
import { type ChildProcess, execFile, execFileSync, spawn } from "node:child_process";
import { randomInt } from "node:crypto";
import { chmodSync, closeSync, constants, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { describe, test } from "node:test";
import { runNapiLoop } from "../../src/core/loop.js";
import { napiCompleteDone, napiSchedule, netifNapiAdd, netRxAction, netRxActionUntilIdle, Softnet } from "../../src/core/napi.js";
import { devDropSkb, devQueueXmit, devStats, type NetDevice, NetNamespace, RX_DROPPED, RX_PACKETS } from "../../src/core/netdev.js";
import { hostChecksumsOk } from "../../src/drivers/host-common.js";
import {
  TAP_HEAD_CAP,
  TAP_RX_BAD_VNET_HDR,
  TAP_RX_FRAMES,
  TAP_RX_NOMEM,
  TAP_RX_RUNT,
  TAP_RX_TRUNCATED,
  type TapPriv,
  type TapRecvFn,
  TUN_F_CSUM,
  TUN_F_USO4,
  TUN_F_USO6,
  tapClose,
  tapCreate,
  tapInfo,
  tapNapi,
  tapStats,
} from "../../src/drivers/tap.js";
import {
  VIRTIO_NET_HDR_F_NEEDS_CSUM,
  VIRTIO_NET_HDR_GSO_TCPV4,
  VIRTIO_NET_HDR_GSO_UDP_L4,
  virtioNetHdrFromSkb,
  virtioNetHdrToSkb,
} from "../../src/drivers/virtio-net-hdr.js";
import {
  TX_WRITER_COUNTERS,
  TX_WRITER_DIRECT,
  TX_WRITER_KICKS,
  TX_WRITER_LAST_ERRNO,
  TX_WRITER_OTHER,
  TX_WRITER_REFUSED,
  TX_WRITER_REFUSED_BYTES,
  TX_WRITER_REFUSED_COUNTED,
  TX_WRITER_REFUSED_PACKETS,
  TX_WRITER_REFUSED_SEGMENTS,
  TX_WRITER_ROOM_WAITS,
  TX_WRITER_SLEEPS,
  TX_WRITER_WRITTEN,
  tapAddon,
  tapAddonStatus,
} from "../../src/native/tap-addon.js";
import { ethHeaderPush, ethTypeTrans } from "../../src/net/ethernet.js";
import { icmpRcvEcho, icmpStatsCreate } from "../../src/net/icmp.js";
import { ipRcvCore, ipStatsCreate } from "../../src/net/ipv4.js";
import { ETH_P_ARP, ETH_P_IP, IPPROTO_ICMP, IPPROTO_UDP } from "../../src/net/proto.js";
import { skbMacHeader, skbNetworkHeader } from "../../src/skb/access.js";
import { allocSkb } from "../../src/skb/alloc.js";
import { createSkbCpu, type SkbCpu } from "../../src/skb/cpu.js";
import { skbPut, skbReserve } from "../../src/skb/data.js";
import { SKB_DROP_REASON } from "../../src/skb/drop-reason.js";
import { consumeSkb, kfreeSkbReason } from "../../src/skb/free.js";
import {
  CHECKSUM_PARTIAL,
  CHECKSUM_UNNECESSARY,
  SHINFO_GSO_SEGS,
  SHINFO_GSO_SIZE,
  SHINFO_GSO_TYPE,
  SKB_CSUM_OFFSET,
  SKB_CSUM_START,
  SKB_DATA,
  SKB_END,
  SKB_HEAD,
  SKB_IP_SUMMED,
  SKB_LEN,
  SKB_PROTOCOL,
} from "../../src/skb/layout.js";
import { createSkbMemory } from "../../src/skb/memory.js";
import { gsoStatsSnapshot, SKB_GSO_DODGY, SKB_GSO_TCPV4, SKB_GSO_UDP_L4 } from "../../src/core/gso.js";
import { assertNoLeaks } from "../net/net-helpers.js";

// ---- prerequisites -----------------------------------------------------------------------------

function which(cmd: string): string | null {
  try {
    return execFileSync("sh", ["-c", `command -v ${cmd}`], { encoding: "utf8" }).trim() || null;
  } catch {
    return null;
  }
}

const IP = which("ip");
const addon = tapAddonStatus();
const isRoot = typeof process.getuid === "function" && process.getuid() === 0;

/** Why the kernel tests cannot run here, or null. */
const kernelSkip: string | null = (() => {
  if (process.platform !== "linux") return `TAP tests need Linux (this is ${process.platform})`;
  if (!addon.available) return `native TAP addon unavailable: ${addon.reason}`;
  if (!isRoot) return "TAP tests need root (CAP_NET_ADMIN to create interfaces and network namespaces)";
  if (!existsSync("/dev/net/tun")) return "/dev/net/tun is absent (no tun module)";
  if (IP === null) return "the `ip` command (iproute2) is not installed";
  if (which("ping") === null) return "`ping` (iputils-ping) is not installed";
  if (which("bash") === null) return "`bash` is not installed (its /dev/udp sends UDP from the namespace)";
  return null;
})();
if (kernelSkip !== null) console.log(`# tap kernel tests skipped: ${kernelSkip}`);

// ---- small helpers -------------------------------------------------------------------------------

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

/** Run a command, resolve with its exit code and output (never rejects). */
function run(
  cmd: string,
  args: string[],
  timeoutMs: number,
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { encoding: "utf8", timeout: timeoutMs, env }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === "number" ? ((err as { code: number }).code as number) : 1;
      resolve({ code, stdout, stderr });
    });
  });
}

function rand(): string {
  return randomInt(0, 0xffffff).toString(16).padStart(6, "0");
}

function ipv4(s: string): number {
  return s.split(".").reduce((a, b) => ((a << 8) | Number(b)) >>> 0, 0);
}

/** A fresh 64 MiB arena, CPU 0, a namespace of devices and its softnet. */
function world(): { cpu: SkbCpu; ns: NetNamespace; sd: Softnet } {
  const cpu = createSkbCpu(createSkbMemory({ arenaSize: 64 << 20 }), 0);
  const ns = new NetNamespace();
  return { cpu, ns, sd: new Softnet(cpu, ns) };
}

/** Run the NAPI loop while `body` runs; stop it after. */
async function withNapiLoop<T>(sd: Softnet, body: () => Promise<T>): Promise<T> {
  let stop = false;
  const loop = runNapiLoop(sd, { until: () => stop, idleCheckMs: 5 });
  try {
    return await body();
  } finally {
    stop = true;
    await loop;
  }
}

/** Network namespaces and children to clean up. */
class Cleanup {
  readonly netns: string[] = [];
  readonly devs: NetDevice[] = [];
  readonly children: ChildProcess[] = [];
  run(): void {
    for (const c of this.children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
    for (const d of this.devs) tapClose(d);
    for (const n of this.netns) {
      try {
        sh(IP as string, ["netns", "del", n]);
      } catch {
        // already gone
      }
    }
  }
}

/** Move TAP `ifname` into a new namespace and give the kernel side `addr`/30. */
function kernelSide(c: Cleanup, ifname: string, addr: string): string {
  const n = `skbt-${rand()}`;
  sh(IP as string, ["netns", "add", n]);
  c.netns.push(n);
  sh(IP as string, ["link", "set", ifname, "netns", n]);
  sh(IP as string, ["-n", n, "addr", "add", `${addr}/30`, "dev", ifname]);
  sh(IP as string, ["-n", n, "link", "set", "lo", "up"]);
  sh(IP as string, ["-n", n, "link", "set", ifname, "up"]);
  return n;
}

/** A random link-local /30: [network + 1, network + 2]. */
function linkLocal30(): [string, string] {
  const x = randomInt(1, 255);
  const y = 4 * randomInt(1, 63);
  return [`169.254.${x}.${y + 1}`, `169.254.${x}.${y + 2}`];
}

/** What the responder saw. */
interface Seen {
  arpRequests: number;
  arpReplies: number;
  echoRequests: number;
  echoReplies: number;
  udp: { summed: number; csumStartRel: number; csumOffset: number; checksumOk: boolean; len: number }[];
  gso: { type: number; size: number; segs: number; len: number }[];
  other: number;
}

/**
 * The tiny host on our side: answers ARP requests for `myIp` (a hand-built
 * reply in place) and ICMP echo requests (icmpRcvEcho), records UDP and
 * GSO frames, drops the rest (counted).
 */
function responder(myIp: number, seen: Seen): TapRecvFn {
  const ipStats = ipStatsCreate();
  const icmpStats = icmpStatsCreate();
  return (cpu, napi, skb) => {
    const dev = napi.netdev;
    const u8 = cpu.u8;
    const sh0 = (cpu.u32[(skb + SKB_HEAD) >>> 2] as number) + (cpu.u32[(skb + SKB_END) >>> 2] as number);
    const gsoSize = cpu.u16[(sh0 + SHINFO_GSO_SIZE) >>> 1] as number;
    if (gsoSize !== 0) {
      seen.gso.push({
        type: cpu.u32[(sh0 + SHINFO_GSO_TYPE) >>> 2] as number,
        size: gsoSize,
        segs: cpu.u16[(sh0 + SHINFO_GSO_SEGS) >>> 1] as number,
        len: cpu.u32[(skb + SKB_LEN) >>> 2] as number,
      });
    }
    let r = ethTypeTrans(cpu, skb, dev.mac, 0);
    if (r !== 0) {
      devDropSkb(cpu, dev, skb, r, false);
      return;
    }
    const peerMac = u8.slice(skbMacHeader(cpu, skb) + 6, skbMacHeader(cpu, skb) + 12);
    const proto = cpu.u16[(skb + SKB_PROTOCOL) >>> 1] as number;
    const d = cpu.u32[(skb + SKB_DATA) >>> 2] as number;
    if (proto === ETH_P_ARP) {
      const op = (u8[d + 6] as number) * 256 + (u8[d + 7] as number);
      const tpa = ((u8[d + 24] as number) << 24) | ((u8[d + 25] as number) << 16) | ((u8[d + 26] as number) << 8) | (u8[d + 27] as number);
      if (op !== 1 || tpa >>> 0 !== myIp) {
        seen.other++;
        consumeSkb(cpu, skb);
        return;
      }
      seen.arpRequests++;
      // Reply in place: op 2, target = the asker, sender = us.
      u8[d + 7] = 2;
      u8.copyWithin(d + 18, d + 8, d + 18);
      u8.set(dev.mac, d + 8);
      u8[d + 14] = myIp >>> 24;
      u8[d + 15] = (myIp >>> 16) & 0xff;
      u8[d + 16] = (myIp >>> 8) & 0xff;
      u8[d + 17] = myIp & 0xff;
      assert.equal(ethHeaderPush(cpu, skb, dev.mac, 0, peerMac, 0, ETH_P_ARP), 0);
      seen.arpReplies++;
      devQueueXmit(cpu, dev, skb);
      return;
    }
    if (proto !== ETH_P_IP) {
      seen.other++;
      devDropSkb(cpu, dev, skb, SKB_DROP_REASON.UNHANDLED_PROTO, false);
      return;
    }
    const summed = u8[skb + SKB_IP_SUMMED] as number;
    r = ipRcvCore(cpu, skb, ipStats);
    if (r !== 0) {
      devDropSkb(cpu, dev, skb, r, false);
      return;
    }
    const iph = skbNetworkHeader(cpu, skb);
    const l4 = u8[iph + 9] as number;
    if (l4 === IPPROTO_UDP) {
      const head = cpu.u32[(skb + SKB_HEAD) >>> 2] as number;
      const ipLen = cpu.u32[(skb + SKB_LEN) >>> 2] as number;
      seen.udp.push({
        summed,
        csumStartRel: (cpu.u16[(skb + SKB_CSUM_START) >>> 1] as number) - (skbMacHeader(cpu, skb) - head),
        csumOffset: cpu.u16[(skb + SKB_CSUM_OFFSET) >>> 1] as number,
        // Completes a PARTIAL checksum first (as the NIC would), then verifies IP + UDP checksums.
        checksumOk: gsoSize === 0 ? hostChecksumsOk(cpu, skb, 0, ipLen) : true,
        len: ipLen,
      });
      consumeSkb(cpu, skb);
      return;
    }
    if (l4 !== IPPROTO_ICMP || (u8[iph + 19] as number) !== (myIp & 0xff)) {
      seen.other++;
      consumeSkb(cpu, skb);
      return;
    }
    seen.echoRequests++;
    r = icmpRcvEcho(cpu, skb, icmpStats);
    if (r !== 0) {
      kfreeSkbReason(cpu, skb, r);
      return;
    }
    assert.equal(ethHeaderPush(cpu, skb, dev.mac, 0, peerMac, 0, ETH_P_IP), 0);
    seen.echoReplies++;
    devQueueXmit(cpu, dev, skb);
  };
}

function newSeen(): Seen {
  return { arpRequests: 0, arpReplies: 0, echoRequests: 0, echoReplies: 0, udp: [], gso: [], other: 0 };
}

/** Transmit `n` frames of `len` bytes (default 60) on `dev` inside one NAPI poll; `inPoll` runs after the xmits, before the poll ends. */
function sendInOnePoll(sd: Softnet, dev: NetDevice, n: number, inPoll: () => void = () => {}, len = 60): void {
  const napi = netifNapiAdd(sd, dev, (cc, nn) => {
    for (let i = 0; i < n; i++) {
      const skb = allocSkb(cc, len + 64);
      skbReserve(cc, skb, 16);
      const at = skbPut(cc, skb, len);
      cc.u8.fill(0xee, at, at + len);
      devQueueXmit(cc, dev, skb);
    }
    inPoll();
    napiCompleteDone(nn, 1);
    return 1;
  });
  napiSchedule(napi);
  netRxAction(sd);
}

/** rxFrames = RX_PACKETS + the drops before an skb existed (and bad virtio headers). */
function assertRxAccounting(dev: NetDevice): void {
  const p = dev.priv as TapPriv;
  const pre = p.stats[TAP_RX_TRUNCATED]! + p.stats[TAP_RX_RUNT]! + p.stats[TAP_RX_NOMEM]! + p.stats[TAP_RX_BAD_VNET_HDR]!;
  assert.equal(p.stats[TAP_RX_FRAMES], dev.stats[RX_PACKETS]! + pre, "tap rxFrames = RX_PACKETS + early drops");
  assert.ok(dev.stats[RX_DROPPED]! >= pre);
}

// ---- no privileges needed --------------------------------------------------------------------------

describe("tap: without privileges (virtio header, errors)", () => {
  test("from an skb and back: NEEDS_CSUM, TCPV4 GSO, hdr_len, DODGY, gso_segs", () => {
    const cpu = createSkbCpu(createSkbMemory({ arenaSize: 16 << 20 }), 0);
    // Ethernet + IPv4 + TCP (doff 8: 32-byte header) + 4000 bytes of payload, linear.
    const frameLen = 14 + 20 + 32 + 4000;
    const a = allocSkb(cpu, frameLen + 64);
    skbReserve(cpu, a, 64);
    const d = skbPut(cpu, a, frameLen);
    cpu.u8.fill(0, d, d + frameLen);
    cpu.u8[d + 12] = 0x08;
    cpu.u8[d + 14] = 0x45;
    cpu.u8[d + 14 + 9] = 6;
    cpu.u8[d + 34 + 12] = 8 << 4;
    const head = cpu.u32[(a + SKB_HEAD) >>> 2] as number;
    cpu.u8[a + SKB_IP_SUMMED] = CHECKSUM_PARTIAL;
    cpu.u16[(a + SKB_CSUM_START) >>> 1] = d - head + 34;
    cpu.u16[(a + SKB_CSUM_OFFSET) >>> 1] = 16;
    const sh = head + (cpu.u32[(a + SKB_END) >>> 2] as number);
    cpu.u16[(sh + SHINFO_GSO_SIZE) >>> 1] = 1448;
    cpu.u32[(sh + SHINFO_GSO_TYPE) >>> 2] = SKB_GSO_TCPV4;
    const hdr = allocSkb(cpu, 64);
    const h = cpu.u32[(hdr + SKB_DATA) >>> 2] as number;
    assert.equal(virtioNetHdrFromSkb(cpu, a, h, 12), 0);
    const le = (o: number) => (cpu.u8[h + o] as number) | ((cpu.u8[h + o + 1] as number) << 8);
    assert.equal(cpu.u8[h], VIRTIO_NET_HDR_F_NEEDS_CSUM);
    assert.equal(cpu.u8[h + 1], VIRTIO_NET_HDR_GSO_TCPV4);
    assert.equal(le(2), 34 + 32, "hdr_len: Ethernet + IP + TCP header");
    assert.equal(le(4), 1448);
    assert.equal(le(6), 34);
    assert.equal(le(8), 16);
    // And back onto a copy of the frame with no metadata.
    const b = allocSkb(cpu, frameLen + 64);
    skbReserve(cpu, b, 64);
    const db = skbPut(cpu, b, frameLen);
    cpu.u8.copyWithin(db, d, d + frameLen);
    assert.equal(virtioNetHdrToSkb(cpu, b, h), 0);
    const hb = cpu.u32[(b + SKB_HEAD) >>> 2] as number;
    const shb = hb + (cpu.u32[(b + SKB_END) >>> 2] as number);
    assert.equal(cpu.u8[b + SKB_IP_SUMMED], CHECKSUM_PARTIAL);
    assert.equal((cpu.u16[(b + SKB_CSUM_START) >>> 1] as number) - (db - hb), 34);
    assert.equal(cpu.u16[(b + SKB_CSUM_OFFSET) >>> 1], 16);
    assert.equal(cpu.u16[(shb + SHINFO_GSO_SIZE) >>> 1], 1448);
    assert.equal(cpu.u32[(shb + SHINFO_GSO_TYPE) >>> 2], SKB_GSO_TCPV4 | SKB_GSO_DODGY);
    assert.equal(cpu.u16[(shb + SHINFO_GSO_SEGS) >>> 1], Math.ceil(4000 / 1448));
    // Bad headers are TUN_ERROR: an unknown GSO type; csum_start past the frame; GSO without NEEDS_CSUM.
    cpu.u8[h + 1] = 0x42;
    assert.equal(virtioNetHdrToSkb(cpu, b, h), SKB_DROP_REASON.TUN_ERROR);
    cpu.u8[h + 1] = VIRTIO_NET_HDR_GSO_UDP_L4;
    cpu.u8[h + 6] = 0xff;
    cpu.u8[h + 7] = 0xff;
    assert.equal(virtioNetHdrToSkb(cpu, b, h), SKB_DROP_REASON.TUN_ERROR);
    cpu.u8[h + 6] = 34;
    cpu.u8[h + 7] = 0;
    cpu.u8[h] = 0;
    assert.equal(virtioNetHdrToSkb(cpu, b, h), SKB_DROP_REASON.TUN_ERROR);
    // DATA_VALID alone -> CHECKSUM_UNNECESSARY.
    cpu.u8.fill(0, h, h + 12);
    cpu.u8[h] = 2;
    const c = allocSkb(cpu, 128);
    skbPut(cpu, c, 60);
    assert.equal(virtioNetHdrToSkb(cpu, c, h), 0);
    assert.equal(cpu.u8[c + SKB_IP_SUMMED], CHECKSUM_UNNECESSARY);
    for (const s of [a, b, c, hdr]) consumeSkb(cpu, s);
    assertNoLeaks(cpu);
  });

  test("SKBUFF_NO_NATIVE=1: a clear 'native TAP support unavailable' error, only when a TAP is requested", async () => {
    const mod = new URL("../../src/drivers/tap.js", import.meta.url).href;
    const code = `
      const t = await import(${JSON.stringify(mod)});
      const { NetNamespace } = await import(${JSON.stringify(new URL("../../src/core/netdev.js", import.meta.url).href)});
      try { t.tapCreate(new NetNamespace(), null, { name: "skbtx", recv() {} }); console.log("created?!"); }
      catch (e) { console.log(e.message); }`;
    const r = await run(process.execPath, ["--input-type=module", "-e", code], 20_000, { ...process.env, SKBUFF_NO_NATIVE: "1" });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), "native TAP support unavailable: disabled by SKBUFF_NO_NATIVE=1");
  });

  test("argument errors name the device", { skip: addon.available ? false : `addon unavailable: ${(addon as { reason?: string }).reason}` }, () => {
    const { ns, sd } = world();
    assert.throws(() => tapCreate(ns, sd, { name: "x".repeat(16), recv() {} }), /tap 'x{16}': interface names are 1\.\.15 bytes/);
    assert.throws(() => tapCreate(ns, sd, { name: "skbt0", offload: TUN_F_CSUM, recv() {} }), /tapCreate\(skbt0\): offload needs vnetHdr/);
    assert.throws(() => tapCreate(ns, sd, { name: "skbt0", mtu: 40, recv() {} }), /tapCreate\(skbt0\): MTU 40 out of range/);
    assert.throws(() => tapCreate(ns, sd, { name: "skbt0", txThread: true, txRingBytes: 1024, recv() {} }), /tapCreate\(skbt0\): txRingBytes 1024 out of range 4096\.\./);
    assert.throws(
      () => tapCreate(ns, sd, { name: "skbt0", txThread: true, txRingBytes: 65536, vnetHdr: true, recv() {} }),
      /tapCreate\(skbt0\): txRingBytes 65536 is too small for frames of 65554 bytes \(a frame may take half the ring\)/,
    );
  });

  test("TapIo: wrong argument types throw TypeErrors; iovecs and pieces outside the arena or the tables throw RangeErrors before any I/O", { skip: addon.available ? false : `addon unavailable: ${(addon as { reason?: string }).reason}` }, () => {
    const a = tapAddon();
    const arena = new Uint8Array(new SharedArrayBuffer(4096));
    const u32 = (n: number) => new Uint32Array(n);
    const status = new Int32Array(1);
    assert.throws(() => new a.TapIo(new Uint16Array(16) as unknown as Uint8Array, u32(4), u32(4), u32(2), u32(4), u32(4), u32(2), status), {
      name: "TypeError",
      message: /TapIo: the arena must be a Uint8Array/,
    });
    assert.throws(() => new a.TapIo(arena, new Int32Array(4) as unknown as Uint32Array, u32(4), u32(2), u32(4), u32(4), u32(2), status), {
      name: "TypeError",
      message: /TapIo: rxOffsets must be a Uint32Array/,
    });
    assert.throws(() => new a.TapIo(arena, u32(4), u32(4), u32(2), u32(4), u32(4), u32(2), new Int32Array(0)), /status must be an Int32Array/);
    const rxOff = u32(4);
    const rxCap = u32(4).fill(100);
    const txOff = u32(4);
    const txLen = u32(4);
    const counts = u32(2);
    const io = new a.TapIo(arena, rxOff, rxCap, u32(2), txOff, txLen, counts, status);
    // fd 0 is never touched: validation comes first.
    rxOff[1] = 4090;
    assert.throws(() => io.read(0, 2, 2), /TapIo\.read: iovec 1 \[4090, \+100\) is outside the arena \(4096 bytes\)/);
    assert.throws(() => io.read(0, 3, 2), /do not fit the bound tables/);
    assert.throws(() => io.read(0, 1, 0), /segs 0 out of range/);
    counts[0] = 0;
    assert.throws(() => io.write(0, 1, 0, 0), /TapIo\.write: frame 0 has 0 pieces/);
    counts[0] = 5;
    assert.throws(() => io.write(0, 1, 0, 0), /the frames need 5 pieces, 4 are bound/);
    counts[0] = 1;
    txOff[0] = 4000;
    txLen[0] = 200;
    assert.throws(() => io.write(0, 1, 0, 0), /TapIo\.write: piece 0 \[4000, \+200\) is outside the arena/);
    assert.throws(() => io.write(0, 2, 0, 1), /outside the bound tables/);
  });

  test(
    "TapIo transmit thread: frames leave in order through a small ring (wrapping), one write(2) each; a full ring is waited on, and refused with ENOBUFS when it stays full; a frame over half the ring is refused with EMSGSIZE; refused frames are counted by kind",
    { skip: addon.available ? false : `addon unavailable: ${(addon as { reason?: string }).reason}` },
    async (t) => {
      const a = tapAddon();
      const arena = new Uint8Array(new SharedArrayBuffer(1 << 16));
      for (let i = 0; i < arena.length; i++) arena[i] = (i * 7 + (i >>> 8)) & 0xff;
      const txOff = new Uint32Array(8);
      const txLen = new Uint32Array(8);
      const counts = new Uint32Array(4);
      const counted = new Uint32Array(4);
      const kinds = new Uint8Array(4);
      const status = new Int32Array(1);
      const ctr = new Int32Array(new SharedArrayBuffer(TX_WRITER_COUNTERS * 4));
      const dir = mkdtempSync(join(tmpdir(), "skb-txw-"));
      t.after(() => rmSync(dir, { recursive: true, force: true }));
      const file = join(dir, "frames");
      const fd = openSync(file, "w");
      const io = new a.TapIo(arena, new Uint32Array(1), new Uint32Array(1), new Uint32Array(1), txOff, txLen, counts, status);
      assert.throws(() => io.startWriter(fd, 1000, counted, kinds, ctr, "t"), /ringBytes 1000 out of range 4096\.\./);
      assert.throws(() => io.startWriter(fd, 4096, counted, kinds, new Int32Array(new SharedArrayBuffer(8)), "t"), {
        name: "TypeError",
        message: /counters must be an Int32Array of length >= 14/,
      });
      assert.throws(() => io.startWriter(fd, 4096, counted, new Uint32Array(4) as unknown as Uint8Array, ctr, "t"), /kinds must be a Uint8Array/);
      io.startWriter(fd, 4096, counted, kinds, ctr, "t");
      assert.throws(() => io.startWriter(fd, 4096, counted, kinds, ctr, "t"), /already has a writer/);
      const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
      const drained = async (): Promise<void> => {
        for (let i = 0; i < 500 && io.writerPending() !== 0; i++) await sleep(2);
        assert.equal(io.writerPending(), 0, "the writer drained its ring");
      };
      // 60 frames of assorted sizes, each gathered from two pieces, posted one call at a time.
      const sizes = [100, 1500, 7, 900, 1200, 64, 1999];
      const expected: Uint8Array[] = [];
      let at = 0;
      for (let f = 0; f < 60; f++) {
        const len = sizes[f % sizes.length] as number;
        const first = len >>> 1;
        at = (at + 997) % (arena.length - 4096);
        txOff[0] = at;
        txLen[0] = first;
        txOff[1] = at + 2048;
        txLen[1] = len - first;
        counts[0] = 2;
        expected.push(arena.slice(at, at + first), arena.slice(at + 2048, at + 2048 + len - first));
        for (;;) {
          const n = io.write(fd, 1, 0, 0);
          if (n === 1) break;
          assert.equal(status[0], a.constants.ENOBUFS, "only a full ring refuses a frame that fits");
          await sleep(1);
        }
      }
      await drained();
      // One call, three 1500-byte frames, a drained 4096-byte ring: two fit, the call waits for room for the third.
      for (let i = 0; i < 3; i++) {
        txOff[i] = i * 1500;
        txLen[i] = 1500;
        counts[i] = 1;
      }
      const waits0 = Atomics.load(ctr, TX_WRITER_ROOM_WAITS);
      assert.equal(io.write(fd, 3, 0, 0), 3);
      assert.equal(status[0], 0);
      assert.equal(Atomics.load(ctr, TX_WRITER_ROOM_WAITS), waits0 + 1, "the third frame waited for room");
      expected.push(arena.slice(0, 1500), arena.slice(1500, 3000), arena.slice(3000, 4500));
      await drained();
      txLen[0] = 2041; // + 8 bytes of record header: over half of 4096
      assert.equal(io.write(fd, 1, 0, 0), 0);
      assert.equal(status[0], a.constants.EMSGSIZE);
      io.stopWriter();
      io.stopWriter();
      assert.equal(io.writerPending(), 0);
      closeSync(fd);
      assert.equal(Atomics.load(ctr, TX_WRITER_WRITTEN), 63);
      assert.equal(Atomics.load(ctr, TX_WRITER_REFUSED), 0);
      assert.ok(Atomics.load(ctr, TX_WRITER_SLEEPS) >= 1 && Atomics.load(ctr, TX_WRITER_KICKS) >= 1);
      const got = readFileSync(file);
      const want = Buffer.concat(expected);
      assert.equal(got.length, want.length);
      assert.ok(got.equals(want), "the file holds every frame, in order");

      // Super-frames (>= 8 KiB) that find the ring idle are written by the caller, from the arena;
      // behind a queued frame they take the ring, so the order holds.
      const file4 = join(dir, "frames4");
      const fd4 = openSync(file4, "w");
      const ctr4 = new Int32Array(new SharedArrayBuffer(TX_WRITER_COUNTERS * 4));
      const io4 = new a.TapIo(arena, new Uint32Array(1), new Uint32Array(1), new Uint32Array(1), txOff, txLen, counts, status);
      io4.startWriter(fd4, 1 << 16, counted, kinds, ctr4, "t4");
      txOff[0] = 100;
      txLen[0] = 9000;
      counts[0] = 1;
      assert.equal(io4.write(fd4, 1, 0, 0), 1);
      assert.equal(Atomics.load(ctr4, TX_WRITER_DIRECT), 1, "idle ring: written directly");
      assert.equal(io4.writerPending(), 0);
      txOff[0] = 20000;
      txLen[0] = 60;
      txOff[1] = 30000;
      txLen[1] = 9000;
      counts[1] = 1;
      assert.equal(io4.write(fd4, 2, 0, 0), 2);
      io4.stopWriter();
      closeSync(fd4);
      assert.equal(Atomics.load(ctr4, TX_WRITER_DIRECT), 1, "behind a queued frame, the super-frame took the ring");
      assert.equal(Atomics.load(ctr4, TX_WRITER_WRITTEN), 2);
      assert.ok(readFileSync(file4).equals(Buffer.concat([arena.slice(100, 9100), arena.slice(20000, 20060), arena.slice(30000, 39000)])));

      // A writer whose writes fail (a read-only fd: EBADF): refusals counted by kind.
      const ro = openSync(file, "r");
      const ctr2 = new Int32Array(new SharedArrayBuffer(TX_WRITER_COUNTERS * 4));
      const io2 = new a.TapIo(arena, new Uint32Array(1), new Uint32Array(1), new Uint32Array(1), txOff, txLen, counts, status);
      io2.startWriter(ro, 1 << 16, counted, kinds, ctr2, "t2");
      for (let i = 0; i < 3; i++) {
        txOff[i] = 100 * i;
        txLen[i] = 60 + i;
        counts[i] = 1;
      }
      counted[0] = 46;
      counted[1] = 47;
      kinds[2] = 1; // a software segment
      assert.equal(io2.write(ro, 3, 0, 0), 3);
      io2.stopWriter();
      closeSync(ro);
      assert.equal(Atomics.load(ctr2, TX_WRITER_REFUSED), 3);
      assert.equal(Atomics.load(ctr2, TX_WRITER_REFUSED_PACKETS), 2);
      assert.equal(Atomics.load(ctr2, TX_WRITER_REFUSED_COUNTED), 93);
      assert.equal(Atomics.load(ctr2, TX_WRITER_REFUSED_SEGMENTS), 1);
      assert.equal(Atomics.load(ctr2, TX_WRITER_REFUSED_BYTES), 183);
      assert.equal(Atomics.load(ctr2, TX_WRITER_OTHER), 3);
      assert.equal(Atomics.load(ctr2, TX_WRITER_LAST_ERRNO), 9, "EBADF");
      assert.equal(Atomics.load(ctr2, TX_WRITER_WRITTEN), 0);

      // A writer stuck in a write (a FIFO nobody reads: the pipe fills, write(2) blocks): a full ring
      // waits `waitMs`, then refuses with ENOBUFS; draining the FIFO lets the writer finish.
      const fifo = join(dir, "fifo");
      execFileSync("mkfifo", [fifo]);
      const rd = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
      const wr = openSync(fifo, "w");
      const ctr3 = new Int32Array(new SharedArrayBuffer(TX_WRITER_COUNTERS * 4));
      const io3 = new a.TapIo(arena, new Uint32Array(1), new Uint32Array(1), new Uint32Array(1), txOff, txLen, counts, status);
      io3.startWriter(wr, 8192, counted, kinds, ctr3, "t3", 50);
      txOff[0] = 0;
      txLen[0] = 2000;
      counts[0] = 1;
      let posted = 0;
      const t0 = Date.now();
      for (;;) {
        const n = io3.write(wr, 1, 0, 0);
        if (n === 0) break;
        posted++;
        assert.ok(posted < 200, "the pipe (64 KiB) and the ring (8 KiB) hold fewer than 200 frames of 2000 bytes");
      }
      assert.equal(status[0], a.constants.ENOBUFS);
      assert.ok(Date.now() - t0 >= 45, "the last write waited ~50 ms for room");
      assert.ok(Atomics.load(ctr3, TX_WRITER_ROOM_WAITS) >= 1);
      const buf = Buffer.alloc(1 << 16);
      let got3 = 0;
      for (let i = 0; i < 2000 && got3 < posted * 2000; i++) {
        try {
          got3 += readSync(rd, buf, 0, buf.length, null);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== "EAGAIN") throw e;
          await sleep(1);
        }
      }
      assert.equal(got3, posted * 2000, "every frame the ring took came out of the FIFO");
      io3.stopWriter();
      closeSync(wr);
      closeSync(rd);
      assert.equal(Atomics.load(ctr3, TX_WRITER_WRITTEN), posted);
    },
  );

  const setpriv = which("setpriv");
  test(
    "an unprivileged process gets the permission error, not a crash",
    { skip: kernelSkip ?? (setpriv === null ? "setpriv (util-linux) is not installed" : false) },
    async (t) => {
      // The unprivileged child may not be able to read the checkout (a 0700
      // directory): give it a world-readable copy of the loader and the addon
      // in the same relative layout (dist/src/native/ and build/Release/).
      const copy = mkdtempSync(join(tmpdir(), "skb-tap-nobody-"));
      chmodSync(copy, 0o755);
      const loader = join(copy, "dist", "src", "native", "tap-addon.js");
      const addon = join(copy, "build", "Release", "skbuff_tap.node");
      mkdirSync(dirname(loader), { recursive: true });
      mkdirSync(dirname(addon), { recursive: true });
      copyFileSync(fileURLToPath(new URL("../../src/native/tap-addon.js", import.meta.url)), loader);
      copyFileSync(fileURLToPath(new URL("../../../build/Release/skbuff_tap.node", import.meta.url)), addon);
      for (const d of [join(copy, "dist"), join(copy, "dist", "src"), dirname(loader), join(copy, "build"), dirname(addon)]) chmodSync(d, 0o755);
      t.after(() => rmSync(copy, { recursive: true, force: true }));
      const mod = pathToFileURL(loader).href;
      const name = `skbt${rand()}`;
      const code = `
        const { tapAddon } = await import(${JSON.stringify(mod)});
        try { tapAddon().open(${JSON.stringify(name)}, 0); console.log("opened?!"); }
        catch (e) { console.log(JSON.stringify({ message: e.message, errno: e.errno })); }`;
      const r = await run(
        setpriv as string,
        ["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", process.execPath, "--input-type=module", "-e", code],
        20_000,
      );
      assert.equal(r.code, 0, r.stderr);
      const out = JSON.parse(r.stdout.trim()) as { message: string; errno: number };
      console.log(`# as uid 65534: ${out.message}`);
      assert.match(
        out.message,
        new RegExp(`^tap ${name}: (open /dev/net/tun: Permission denied|TUNSETIFF: Operation not permitted) \\(need root or CAP_NET_ADMIN\\)$`),
      );
      assert.ok(out.errno === 1 || out.errno === 13);
    },
  );
});

// ---- with the kernel (root) ----------------------------------------------------------------------

describe("tap: frames to and from the kernel (root, network namespaces)", { skip: kernelSkip ?? false }, () => {
  for (const txThread of [false, true]) {
  test(`the kernel ARPs and pings us, we answer: ping -c 3 from the namespace succeeds${txThread ? " (transmit thread)" : ""}`, async () => {
    const { cpu, ns, sd } = world();
    const c = new Cleanup();
    const [kernelIp, ourIp] = linkLocal30();
    const seen = newSeen();
    try {
      const dev = tapCreate(ns, sd, { name: `skbt${rand()}`, mac: "02:5b:00:00:00:01", txThread, recv: responder(ipv4(ourIp), seen) });
      c.devs.push(dev);
      const ifname = tapInfo(dev).ifname;
      const n = kernelSide(c, ifname, kernelIp);
      const ping = await withNapiLoop(sd, () => run("ip", ["netns", "exec", n, "ping", "-c", "3", "-i", "0.2", "-W", "2", ourIp], 30_000));
      console.log(ping.stdout.replace(/^/gm, "# "));
      assert.equal(ping.code, 0, `ping failed: ${ping.stdout} ${ping.stderr}`);
      assert.match(ping.stdout, /3 packets transmitted, 3 received, 0% packet loss/);
      assert.ok(seen.arpRequests >= 1, "the kernel's ARP request reached us");
      assert.equal(seen.echoRequests, 3);
      assert.equal(seen.echoReplies, 3);
      const st = tapStats(dev);
      assert.ok(st.txFrames >= 4, "ARP reply + 3 echo replies written");
      assert.equal(st.txErrors + st.txCarrier + st.txBusy, 0);
      // The kernel side counted our frames.
      const link = JSON.parse(sh("ip", ["-n", n, "-s", "-j", "link", "show", "dev", ifname])) as { stats64: { rx: { packets: number } } }[];
      assert.ok((link[0] as { stats64: { rx: { packets: number } } }).stats64.rx.packets >= 4);
      assertRxAccounting(dev);
    } finally {
      c.run();
    }
    assertNoLeaks(cpu);
  });
  }

  test("frames sent in one poll leave in one burst; a write the kernel refuses (interface down: EIO) is a FULL_RING TX drop with TX_PACKETS taken back", () => {
    const { cpu, ns, sd } = world();
    const c = new Cleanup();
    try {
      const dev = tapCreate(ns, sd, { name: `skbt${rand()}`, recv() {} });
      c.devs.push(dev);
      const send = (n: number): void => {
        const bursts0 = tapStats(dev).txBursts;
        // Nothing was written yet: the batch waits for the end of this poll.
        sendInOnePoll(sd, dev, n, () => assert.equal(tapStats(dev).txBursts, bursts0));
      };
      // The kernel side is down: tun refuses every write with EIO.
      send(3);
      const st = tapStats(dev);
      const ds = devStats(dev);
      assert.equal(st.txCarrier, 3, JSON.stringify(st));
      assert.equal(st.txFrames, 0);
      assert.equal(st.txBursts, 3, "a refused frame ends a burst; the rest go on in the next");
      assert.equal(ds.txPackets, 0, "what was not written is not counted as sent");
      assert.equal(ds.txBytes, 0);
      assert.equal(ds.txDropped, 3);
      assert.equal(dev.drops[SKB_DROP_REASON.FULL_RING], 3);
      // Up (carrier on once the kernel side is up): the next poll's 4 frames go out in one burst.
      sh(IP as string, ["link", "set", tapInfo(dev).ifname, "up"]);
      send(4);
      const st2 = tapStats(dev);
      assert.equal(st2.txFrames, 4);
      assert.equal(st2.txBursts, 4, "3 refused bursts + 1 burst of 4 frames");
      assert.equal(devStats(dev).txPackets, 4);
    } finally {
      c.run();
    }
    assertNoLeaks(cpu);
  });

  test("with a transmit thread: frames reach the kernel; a write the kernel refuses later (interface down: EIO) is taken back from TX_PACKETS as a FULL_RING drop; close writes out what is queued", async () => {
    const { cpu, ns, sd } = world();
    const c = new Cleanup();
    try {
      const dev = tapCreate(ns, sd, { name: `skbt${rand()}`, txThread: true, recv() {} });
      c.devs.push(dev);
      assert.equal(tapInfo(dev).txRingBytes, 4 << 20);
      const send = (n: number): void => sendInOnePoll(sd, dev, n);
      const drained = async (): Promise<void> => {
        for (let i = 0; i < 500 && tapStats(dev).txThreadPendingBytes !== 0; i++) await new Promise((r) => setTimeout(r, 2));
        assert.equal(tapStats(dev).txThreadPendingBytes, 0);
      };
      // Down: the thread's writes fail with EIO after the core counted the frames as sent.
      send(3);
      await drained();
      const st = tapStats(dev);
      const ds = devStats(dev);
      assert.equal(st.txCarrier, 3, JSON.stringify(st));
      assert.equal(st.txFrames, 0);
      assert.equal(st.txBytes, 0);
      assert.equal(st.txThreadWritten, 0);
      assert.equal(st.lastTxErrno, 5, "EIO");
      assert.equal(ds.txPackets, 0, "what was not written is not counted as sent");
      assert.equal(ds.txBytes, 0);
      assert.equal(ds.txDropped, 3);
      assert.equal(dev.drops[SKB_DROP_REASON.FULL_RING], 3);
      // Up: 4 frames reach the kernel side (its RX counters), counted as sent.
      const ifname = tapInfo(dev).ifname;
      sh(IP as string, ["link", "set", ifname, "up"]);
      const rx0 = (JSON.parse(sh("ip", ["-s", "-j", "link", "show", "dev", ifname])) as { stats64: { rx: { packets: number } } }[])[0]?.stats64.rx.packets ?? 0;
      send(4);
      await drained();
      const st2 = tapStats(dev);
      assert.equal(st2.txFrames, 4);
      assert.equal(st2.txThreadWritten, 4);
      assert.equal(st2.txCarrier, 3);
      assert.equal(devStats(dev).txPackets, 4);
      const rx1 = (JSON.parse(sh("ip", ["-s", "-j", "link", "show", "dev", ifname])) as { stats64: { rx: { packets: number } } }[])[0]?.stats64.rx.packets ?? 0;
      assert.equal(rx1 - rx0, 4, "the kernel side received the 4 frames");
      // Frames still queued at close are written before the fd closes: close right after a send.
      send(50);
      tapClose(dev);
      const st3 = tapStats(dev);
      assert.equal(st3.txThreadWritten, 54, "close waited for the thread to write all 50");
      assert.equal(st3.txFrames, 54);
      assert.equal(devStats(dev).txPackets, 54);
    } finally {
      c.run();
    }
    assertNoLeaks(cpu);
  });

  test("with a transmit thread and a 4 KiB ring: a poll that sends more than the ring holds waits for room, drops nothing", async () => {
    const { cpu, ns, sd } = world();
    const c = new Cleanup();
    try {
      const dev = tapCreate(ns, sd, { name: `skbt${rand()}`, txThread: true, txRingBytes: 4096, recv() {} });
      c.devs.push(dev);
      sh(IP as string, ["link", "set", tapInfo(dev).ifname, "up"]);
      // Five 1500-byte frames (1508 ring bytes each) in one poll: at most two fit at a time.
      sendInOnePoll(sd, dev, 5, () => {}, 1500);
      for (let i = 0; i < 500 && tapStats(dev).txThreadPendingBytes !== 0; i++) await new Promise((r) => setTimeout(r, 2));
      const st = tapStats(dev);
      assert.equal(st.txFrames, 5, JSON.stringify(st));
      assert.equal(st.txThreadWritten, 5);
      assert.ok(st.txRingWaits >= 1, "the poll waited for room");
      assert.equal(st.txRingFull + st.txBusy + st.txCarrier + st.txErrors, 0);
      assert.equal(devStats(dev).txPackets, 5);
      assert.equal(devStats(dev).txDropped, 0);
    } finally {
      c.run();
    }
    assertNoLeaks(cpu);
  });

  test("IFF_MULTI_QUEUE: two queues, two fds, ping still answered", async () => {
    const { cpu, ns, sd } = world();
    const c = new Cleanup();
    const [kernelIp, ourIp] = linkLocal30();
    const seen = newSeen();
    try {
      const dev = tapCreate(ns, sd, { name: `skbt${rand()}`, queues: 2, recv: responder(ipv4(ourIp), seen) });
      c.devs.push(dev);
      const info = tapInfo(dev);
      assert.equal(info.queues, 2);
      assert.equal(new Set(info.fds).size, 2);
      const n = kernelSide(c, info.ifname, kernelIp);
      assert.match(sh("ip", ["-n", n, "-d", "link", "show", info.ifname]), /multi_queue/);
      const ping = await withNapiLoop(sd, () => run("ip", ["netns", "exec", n, "ping", "-c", "3", "-i", "0.2", "-W", "2", ourIp], 30_000));
      assert.equal(ping.code, 0, `ping failed: ${ping.stdout} ${ping.stderr}`);
      assert.equal(seen.echoReplies, 3);
      assertRxAccounting(dev);
    } finally {
      c.run();
    }
    assertNoLeaks(cpu);
  });

  test("IFF_VNET_HDR: UDP from the namespace arrives with NEEDS_CSUM; a UDP_SEGMENT send as one USO super-frame", async () => {
    const { cpu, ns, sd } = world();
    const c = new Cleanup();
    const [kernelIp, ourIp] = linkLocal30();
    const seen = newSeen();
    try {
      let dev: NetDevice;
      let uso = true;
      const name = `skbt${rand()}`;
      try {
        dev = tapCreate(ns, sd, { name, vnetHdr: true, offload: TUN_F_CSUM | TUN_F_USO4 | TUN_F_USO6, recv: responder(ipv4(ourIp), seen) });
      } catch (e) {
        // Kernels before 6.2 have no USO for tun (EINVAL): checksum offload only.
        if (!/TUNSETOFFLOAD/.test((e as Error).message)) throw e;
        uso = false;
        dev = tapCreate(ns, sd, { name, vnetHdr: true, offload: TUN_F_CSUM, recv: responder(ipv4(ourIp), seen) });
      }
      c.devs.push(dev);
      const n = kernelSide(c, tapInfo(dev).ifname, kernelIp);
      const py = which("python3");
      await withNapiLoop(sd, async () => {
        const r = await run("ip", ["netns", "exec", n, "bash", "-c", `printf 'hello from the kernel' > /dev/udp/${ourIp}/9999`], 10_000);
        assert.equal(r.code, 0, r.stderr);
        const until = Date.now() + 5000;
        while (seen.udp.length === 0 && Date.now() < until) await new Promise((res) => setTimeout(res, 10));
        if (uso && py !== null) {
          const script = `import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.setsockopt(socket.SOL_UDP,103,1000)\ns.sendto(b'u'*7500,('${ourIp}',9998))`;
          const u = await run("ip", ["netns", "exec", n, py, "-c", script], 20_000);
          assert.equal(u.code, 0, u.stderr);
          while (seen.gso.length === 0 && Date.now() < until + 5000) await new Promise((res) => setTimeout(res, 10));
        }
      });
      assert.ok(seen.arpReplies >= 1);
      const first = seen.udp[0];
      assert.ok(first !== undefined, "the UDP datagram arrived");
      console.log(`# UDP over vnet: ip_summed=${first.summed} csum_start=${first.csumStartRel} csum_offset=${first.csumOffset}`);
      assert.equal(first.summed, CHECKSUM_PARTIAL, "NEEDS_CSUM became CHECKSUM_PARTIAL");
      assert.equal(first.csumStartRel, 14 + 20, "csum_start at the UDP header");
      assert.equal(first.csumOffset, 6, "csum_offset: the UDP check field");
      assert.ok(first.checksumOk, "the completed checksum is right");
      assert.ok(tapStats(dev).rxCsumPartial >= 1);
      if (uso && py !== null) {
        const g = seen.gso[0];
        assert.ok(g !== undefined, "the USO super-frame arrived");
        console.log(`# USO super-frame: len=${g.len} gso_size=${g.size} gso_segs=${g.segs}`);
        assert.equal(g.type & SKB_GSO_UDP_L4, SKB_GSO_UDP_L4);
        assert.equal(g.size, 1000);
        assert.equal(g.segs, 8);
        assert.equal(g.len, 14 + 20 + 8 + 7500);
      }
      assertRxAccounting(dev);
    } finally {
      c.run();
    }
    assertNoLeaks(cpu);
  });

  test("readiness schedules NAPI; a poll stops at its budget, reading in bursts of rxBurst", async () => {
    const { cpu, ns, sd } = world();
    const c = new Cleanup();
    const [kernelIp, ourIp] = linkLocal30();
    const seen = newSeen();
    try {
      const mac = "02:5b:00:00:00:07";
      const dev = tapCreate(ns, sd, { name: `skbt${rand()}`, mac, weight: 8, rxBurst: 4, recv: responder(ipv4(ourIp), seen) });
      c.devs.push(dev);
      const ifname = tapInfo(dev).ifname;
      const n = kernelSide(c, ifname, kernelIp);
      // No ARP needed: a permanent neighbour entry for our side.
      sh("ip", ["-n", n, "neigh", "replace", ourIp, "lladdr", mac, "dev", ifname, "nud", "permanent"]);
      const napi = tapNapi(dev);
      const sent = 40;
      // The loop is not running: frames wait in the kernel's queue, the readiness callback only schedules.
      const r = await run("ip", ["netns", "exec", n, "bash", "-c", `for i in $(seq ${sent}); do printf x > /dev/udp/${ourIp}/9; done`], 20_000);
      assert.equal(r.code, 0, r.stderr);
      const until = Date.now() + 5000;
      while (sd.count === 0 && Date.now() < until) await new Promise((res) => setTimeout(res, 5));
      assert.equal(sd.count, 1, "the readable fd scheduled the TAP's NAPI");
      assert.ok(tapStats(dev).irqs >= 1);
      const before = tapStats(dev);
      netRxAction(sd);
      const after = tapStats(dev);
      assert.equal(napi.packets, 8, "one poll, one weight");
      assert.equal(after.rxFrames - before.rxFrames, 8);
      assert.equal(after.readBursts - before.readBursts, 2, "two bursts of rxBurst (4)");
      assert.equal(sd.count, 1, "a poll that used its weight stays scheduled");
      netRxActionUntilIdle(sd);
      assert.equal(sd.count, 0);
      assert.equal(seen.udp.length, sent, "every datagram arrived");
      assert.ok(seen.udp.every((u) => u.checksumOk && u.len === 20 + 8 + 1));
      assertRxAccounting(dev);
    } finally {
      c.run();
    }
    assertNoLeaks(cpu);
  });

  test("a frame longer than the RX buffers is a counted PKT_TOO_BIG drop, not a crash", async () => {
    const { cpu, ns, sd } = world();
    const c = new Cleanup();
    const [kernelIp, ourIp] = linkLocal30();
    const seen = newSeen();
    try {
      const mac = "02:5b:00:00:00:08";
      const dev = tapCreate(ns, sd, { name: `skbt${rand()}`, mac, recv: responder(ipv4(ourIp), seen) });
      c.devs.push(dev);
      const ifname = tapInfo(dev).ifname;
      assert.equal(tapInfo(dev).rxMaxFrame, TAP_HEAD_CAP - 1);
      const n = kernelSide(c, ifname, kernelIp);
      sh("ip", ["-n", n, "link", "set", "dev", ifname, "mtu", "9000"]);
      sh("ip", ["-n", n, "neigh", "replace", ourIp, "lladdr", mac, "dev", ifname, "nud", "permanent"]);
      await withNapiLoop(sd, async () => {
        const big = await run("ip", ["netns", "exec", n, "ping", "-c", "1", "-W", "1", "-M", "dont", "-s", "5000", ourIp], 10_000);
        assert.notEqual(big.code, 0, "no reply to a frame we could not take");
        const small = await run("ip", ["netns", "exec", n, "ping", "-c", "1", "-W", "2", ourIp], 10_000);
        assert.equal(small.code, 0, `the device still works: ${small.stdout}`);
      });
      const st = tapStats(dev);
      assert.equal(st.rxTruncated, 1);
      assert.equal(dev.drops[SKB_DROP_REASON.PKT_TOO_BIG], 1);
      assert.equal(seen.echoReplies, 1);
      assertRxAccounting(dev);
    } finally {
      c.run();
    }
    assertNoLeaks(cpu);
  });

  /** A TCP transfer from namespace A to namespace B through two TAPs bridged by us. */
  async function bridgeTransfer(vnetOut: boolean): Promise<void> {
    const { cpu, ns, sd } = world();
    const c = new Cleanup();
    const [ipA, ipB] = linkLocal30();
    const bytes = 16 << 20;
    try {
      let devA: NetDevice | null = null;
      let devB: NetDevice | null = null;
      devA = tapCreate(ns, sd, { name: `skbt${rand()}`, vnetHdr: true, recv: (cpu2, _n, skb) => devQueueXmit(cpu2, devB as NetDevice, skb) });
      c.devs.push(devA);
      devB = tapCreate(ns, sd, { name: `skbt${rand()}`, vnetHdr: vnetOut, recv: (cpu2, _n, skb) => devQueueXmit(cpu2, devA as NetDevice, skb) });
      c.devs.push(devB);
      const nA = kernelSide(c, tapInfo(devA).ifname, ipA);
      const nB = kernelSide(c, tapInfo(devB).ifname, ipB);
      const snmp = () => {
        const t = sh("ip", ["netns", "exec", nB, "cat", "/proc/net/snmp"]).split("\n").filter((l) => l.startsWith("Tcp:"));
        const keys = (t[0] as string).split(/\s+/);
        const vals = (t[1] as string).split(/\s+/);
        return Number(vals[keys.indexOf("InCsumErrors")]);
      };
      const csumErrors0 = snmp();
      const port = randomInt(20000, 60000);
      const server = `const net=require('net'),crypto=require('crypto');
        const srv=net.createServer(s=>{const h=crypto.createHash('sha256');let n=0;
          s.on('data',d=>{n+=d.length;h.update(d)});
          s.on('end',()=>{console.log(JSON.stringify({bytes:n,sha256:h.digest('hex')}));s.end();srv.close()})});
        srv.listen(${port},'${ipB}',()=>console.log('listening'));
        setTimeout(()=>{console.error('server timeout');process.exit(2)},60000).unref();`;
      const client = `const net=require('net'),crypto=require('crypto');
        const chunk=crypto.randomBytes(1<<20),N=${bytes >> 20},h=crypto.createHash('sha256');let i=0,t0=0;
        const s=net.connect(${port},'${ipB}',()=>{t0=Date.now();const w=()=>{while(i<N){h.update(chunk);i++;if(!s.write(chunk)){s.once('drain',w);return}}s.end()};w()});
        s.on('close',()=>console.log(JSON.stringify({bytes:N*chunk.length,sha256:h.digest('hex'),ms:Date.now()-t0})));
        s.on('error',e=>{console.error(e.message);process.exit(1)});
        setTimeout(()=>{console.error('client timeout');process.exit(2)},60000).unref();`;
      const spawnOut = (nsName: string, code: string): { child: ChildProcess; out: Promise<{ code: number; stdout: string; stderr: string }>; lines: string[] } => {
        const child = spawn("ip", ["netns", "exec", nsName, process.execPath, "-e", code], { stdio: ["ignore", "pipe", "pipe"] });
        c.children.push(child);
        const lines: string[] = [];
        let stdout = "";
        let stderr = "";
        child.stdout?.on("data", (b: Buffer) => {
          stdout += b.toString();
          lines.push(...b.toString().split("\n").filter((l) => l !== ""));
        });
        child.stderr?.on("data", (b: Buffer) => {
          stderr += b.toString();
        });
        const out = new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
          child.on("close", (code2) => resolve({ code: code2 ?? 1, stdout, stderr })),
        );
        return { child, out, lines };
      };
      const t0 = Date.now();
      const [srvRes, cliRes] = await withNapiLoop(sd, async () => {
        const srv = spawnOut(nB, server);
        const until = Date.now() + 10_000;
        while (!srv.lines.includes("listening") && Date.now() < until) await new Promise((res) => setTimeout(res, 10));
        assert.ok(srv.lines.includes("listening"), "server did not start");
        const cli = spawnOut(nA, client);
        return Promise.all([srv.out, cli.out]);
      });
      const ms = Date.now() - t0;
      const sa = tapStats(devA);
      const sb = tapStats(devB);
      console.log(
        `# ${bytes >> 20} MiB in ${ms} ms through the bridge (${vnetOut ? "vnet -> vnet" : "vnet -> plain"}): ` +
          `A rxGso=${sa.rxGso} rxCsumPartial=${sa.rxCsumPartial} rxFrames=${sa.rxFrames}; ` +
          `B txGso=${sb.txGso} txCsumPartial=${sb.txCsumPartial} txGsoSegmented=${sb.txGsoSegmented} txCsumHelp=${sb.txCsumHelp} txFrames=${sb.txFrames}`,
      );
      if (cliRes.code !== 0 || srvRes.code !== 0) console.log(`# A ${JSON.stringify(sa)}\n# B ${JSON.stringify(sb)}\n# A dev ${JSON.stringify(devStats(devA))}\n# B dev ${JSON.stringify(devStats(devB))}\n# gso ${JSON.stringify(gsoStatsSnapshot())} csumErrors ${snmp() - csumErrors0}`);
      assert.equal(cliRes.code, 0, cliRes.stderr);
      assert.equal(srvRes.code, 0, srvRes.stderr);
      const sent = JSON.parse(cliRes.stdout.trim()) as { bytes: number; sha256: string; ms: number };
      const got = JSON.parse(srvRes.stdout.trim().split("\n").pop() as string) as { bytes: number; sha256: string };
      assert.deepEqual(got, { bytes: sent.bytes, sha256: sent.sha256 }, "the receiver got exactly what was sent");
      console.log(`# transfer: ${sent.bytes} bytes in ${sent.ms} ms (connect to close)`);
      assert.ok(sa.rxGso > 0, "TSO super-frames came in from namespace A");
      if (vnetOut) {
        assert.ok(sb.txGso > 0, "super-frames went out to namespace B");
        assert.ok(sb.txCsumPartial > 0, "checksums left PARTIAL (NEEDS_CSUM)");
      } else {
        assert.ok(sb.txGsoSegmented > 0, "GSO skbs segmented in software");
        assert.equal(snmp() - csumErrors0, 0, "namespace B verified every TCP checksum");
      }
      for (const s of [sa, sb]) assert.equal(s.txErrors + s.txCarrier + s.txBusy + s.txPrepFail + s.rxErrors, 0);
      // What one poll forwards leaves in one writev burst per queue (xmit_more), not one call per frame.
      assert.ok(sb.txBursts < sb.txFrames, `frames batched: ${sb.txFrames} frames in ${sb.txBursts} bursts`);
      assertRxAccounting(devA);
      assertRxAccounting(devB);
    } finally {
      c.run();
    }
    assertNoLeaks(cpu);
  }

  test("TAP-to-TAP bridge, vnet both sides: TCP super-frames in and out, checksums left PARTIAL", () => bridgeTransfer(true));

  test("TAP-to-TAP bridge, vnet in, plain out: software GSO and checksums, verified by the receiving kernel", () => bridgeTransfer(false));
});
