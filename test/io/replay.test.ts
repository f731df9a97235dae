/**
 * Captures in and out of the dataplane (src/io/replay.ts): frames into skbs
 * (page-pool page, or head + frags for big frames), skbs into captures
 * (linear, non-linear, CHECKSUM_PARTIAL), a tap on a running scenario, and
 * whole replays through the VLAN NAT router: UDP and TCP from the inside
 * come out masqueraded on the outside, replies from the outside come back
 * de-masqueraded and VLAN-tagged on the inside, oversized frames are
 * fragmented or answered with ICMP, unreplayable records are counted, and
 * every run balances its packet accounting and leaks nothing.
 */

import assert from "node:assert/strict";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { SK_BAD_CSUM, SK_RX } from "../../src/drivers/sink.js";
import { kmemCacheInfo } from "../../src/mm/slab.js";
import { pageFragCacheDrain } from "../../src/mm/page-frag.js";
import { createCaptureWriter, type CaptureWriter, openCapture } from "../../src/io/pcap.js";
import {
  CAPTURE_FRAME_MAX,
  CAPTURE_PAGE_FRAME_MAX,
  captureFrameSkb,
  captureTapCreate,
  captureWriteSkb,
  replayCapture,
  type ReplayOptions,
  type ReplayResult,
  replaySplitNames,
} from "../../src/io/replay.js";
import { hostPoolCreate, hostPoolDestroy } from "../../src/drivers/host-common.js";
import { scenarioAccounting, scenarioCreate, scenarioDestroy, scenarioRun } from "../../src/router/scenario.js";
import { createSkbCpu } from "../../src/skb/cpu.js";
import { kfreeSkb } from "../../src/skb/free.js";
import { CHECKSUM_PARTIAL, SKB_CSUM_OFFSET, SKB_CSUM_START, SKB_DATA_LEN, SKB_FLAGS, SKB_HEAD, SKB_DATA, SKB_IP_SUMMED, SKB_LEN, SKBF_PP_RECYCLE } from "../../src/skb/layout.js";
import { createSkbMemory } from "../../src/skb/memory.js";
import { napiCacheIsEnabled, napiSkbCacheDrain } from "../../src/skb/napi-cache.js";
import { skbToBytes } from "../../src/skb/view.js";
import {
  DF,
  ETH_P_IP,
  ethFrame,
  icmpEcho,
  inetCsum,
  ip,
  ipStr,
  ipv4Packet,
  l4Verify,
  parseFrame,
  pattern,
  PROTO_ICMP,
  PROTO_TCP,
  PROTO_UDP,
  rd16,
  rd32,
  tcpSegment,
  udpSegment,
} from "../router/helpers.js";
import { cat, pcapHeader, pcapRecord, readAll, type ReadRecord, tmp } from "./helpers.js";

const HOST_MAC = Uint8Array.of(0x02, 0xaa, 0, 0, 0, 1);
const OTHER_MAC = Uint8Array.of(0x02, 0xbb, 0, 0, 0, 2);
const SERVER = ip("198.51.100.10");
const NAT = ip("198.51.100.1");
const TCP_SYN = 0x02;
const TCP_ACK = 0x10;
const TCP_PSH = 0x08;

function udpFrame(saddr: number, daddr: number, sport: number, dport: number, payload: Uint8Array, o: { vlan?: number; id?: number; flags?: number } = {}): Uint8Array {
  const ipb = ipv4Packet({ saddr, daddr, proto: PROTO_UDP, payload: udpSegment(saddr, daddr, sport, dport, payload), id: o.id ?? 1, flags: o.flags ?? 0 });
  return ethFrame(OTHER_MAC, HOST_MAC, o.vlan ?? 0, ETH_P_IP, ipb);
}

function tcpFrame(saddr: number, daddr: number, sport: number, dport: number, seq: number, ack: number, flags: number, payload: Uint8Array): Uint8Array {
  const ipb = ipv4Packet({ saddr, daddr, proto: PROTO_TCP, payload: tcpSegment(saddr, daddr, sport, dport, seq, ack, flags, payload) });
  return ethFrame(OTHER_MAC, HOST_MAC, 0, ETH_P_IP, ipb);
}

/** Write frames (ts = base + i ms) as a capture. */
function writeCapture(file: string, frames: Uint8Array[], format: "pcap" | "pcapng" = "pcap"): void {
  const w = createCaptureWriter(file, { format, resolution: "ns" });
  w.addInterface();
  frames.forEach((f, i) => {
    w.writePacket(0, 1_700_000_000, i * 1_000_000, f, 0, f.length);
  });
  w.close();
}

/** Every IPv4 packet of a parsed record: the L3 bytes. */
function l3(r: ReadRecord): { vlan: number; ipb: Uint8Array } {
  const p = parseFrame(r.data);
  assert.ok(p.ipOff >= 0, "an IPv4 frame");
  return { vlan: p.vlan, ipb: r.data.subarray(p.ipOff) };
}

function checkValid(ipb: Uint8Array): void {
  assert.equal(inetCsum(ipb, 0, 20), 0, "IPv4 header checksum");
  const proto = ipb[9] as number;
  if (proto === PROTO_TCP || proto === PROTO_UDP) {
    const len = rd16(ipb, 2);
    const frag = rd16(ipb, 6) & 0x3fff;
    if (frag === 0) assert.equal(l4Verify(rd32(ipb, 12), rd32(ipb, 16), proto, ipb.subarray(20, len)), 0, "L4 checksum");
  }
}

function run(o: Partial<ReplayOptions> & { input: string; output: string }): ReplayResult {
  const r = replayCapture(o);
  assert.ok(r.accounting.ok, r.accounting.problems.join("; "));
  assert.ok(r.readBalanced, "read = injected + skipped");
  assert.ok(r.leaks.ok, JSON.stringify(r.leaks));
  assert.equal(r.stalled, false);
  return r;
}

describe("frames into skbs and skbs into captures", () => {
  test("captureFrameSkb: page-pool page up to a page, head + frags beyond, 0 past the limit", () => {
    const mem = createSkbMemory({ arenaSize: 32 << 20 });
    const cpu = createSkbCpu(mem, 0);
    const pool = hostPoolCreate(cpu);
    for (const n of [14, 60, 1514, CAPTURE_PAGE_FRAME_MAX, CAPTURE_PAGE_FRAME_MAX + 1, 9018, 65535, CAPTURE_FRAME_MAX]) {
      const bytes = pattern(n, n);
      const skb = captureFrameSkb(cpu, pool, bytes, 0, n);
      assert.notEqual(skb, 0, `${n} bytes`);
      assert.equal(cpu.u32[(skb + SKB_LEN) >>> 2], n);
      const linear = n <= CAPTURE_PAGE_FRAME_MAX;
      assert.equal(cpu.u32[(skb + SKB_DATA_LEN) >>> 2] === 0, linear, `${n}: linear`);
      assert.equal(((cpu.u8[skb + SKB_FLAGS] as number) & SKBF_PP_RECYCLE) !== 0, linear, `${n}: page-pool recycling`);
      assert.deepEqual(skbToBytes(cpu, skb), bytes);
      kfreeSkb(cpu, skb);
    }
    // An offset into a bigger buffer (as records are views into the reader's).
    const big = pattern(3000, 7);
    const skb = captureFrameSkb(cpu, pool, big, 1000, 100);
    assert.deepEqual(skbToBytes(cpu, skb), big.subarray(1000, 1100));
    kfreeSkb(cpu, skb);
    assert.equal(captureFrameSkb(cpu, pool, new Uint8Array(CAPTURE_FRAME_MAX + 1), 0, CAPTURE_FRAME_MAX + 1), 0);
    hostPoolDestroy(cpu, pool);
    napiSkbCacheDrain(cpu);
    pageFragCacheDrain(cpu.napiFrag);
    pageFragCacheDrain(cpu.netdevFrag);
    assert.equal(kmemCacheInfo(mem.headCache).activeObjs, 0, "no head leaked");
  });

  test("captureWriteSkb gathers frags and completes a CHECKSUM_PARTIAL checksum", () => {
    const mem = createSkbMemory({ arenaSize: 32 << 20 });
    const cpu = createSkbCpu(mem, 0);
    const pool = hostPoolCreate(cpu);
    const f = join(tmp(), "w.pcapng");
    const w = createCaptureWriter(f, { format: "pcapng" });
    w.addInterface();
    // A 9000-byte UDP frame (head + frags) whose UDP checksum is left to the device.
    const saddr = ip("10.0.0.1");
    const daddr = ip("10.0.0.2");
    const good = udpFrame(saddr, daddr, 1, 2, pattern(9000 - 42, 3));
    const partial = good.slice();
    // The device-offload form: the field holds the folded pseudo-header sum.
    const ulen = 9000 - 34;
    let ps = (saddr >>> 16) + (saddr & 0xffff) + (daddr >>> 16) + (daddr & 0xffff) + PROTO_UDP + ulen;
    while (ps > 0xffff) ps = (ps & 0xffff) + (ps >>> 16);
    partial[40] = ps >>> 8;
    partial[41] = ps & 0xff;
    const skb = captureFrameSkb(cpu, pool, partial, 0, partial.length);
    const headroom = (cpu.u32[(skb + SKB_DATA) >>> 2] as number) - (cpu.u32[(skb + SKB_HEAD) >>> 2] as number);
    cpu.u8[skb + SKB_IP_SUMMED] = CHECKSUM_PARTIAL;
    cpu.u16[(skb + SKB_CSUM_START) >>> 1] = headroom + 34;
    cpu.u16[(skb + SKB_CSUM_OFFSET) >>> 1] = 6;
    captureWriteSkb(cpu, skb, w, 0, 5, 6);
    kfreeSkb(cpu, skb);
    w.close();
    const [rec] = readAll(f);
    assert.equal(rec!.tsSec, 5);
    assert.deepEqual(rec!.data, good);
    hostPoolDestroy(cpu, pool);
  });

  test("a tap on a running scenario records what the sink receives and passes it on", () => {
    for (const proto of ["udp", "tcp"] as const) {
      const s = scenarioCreate({ traffic: { proto, size: "imix", flows: 8 }, arenaSize: 64 << 20 });
      const f = join(tmp(), `tap-${proto}.pcapng`);
      const w = createCaptureWriter(f, { format: "pcapng" });
      const clock = { tsSec: 1_700_000_000, tsNsec: 0 };
      const tap = captureTapCreate(s.srv0, w, w.addInterface({ name: "srv0" }), clock);
      scenarioRun(s, 2000);
      tap.remove();
      scenarioRun(s, 100); // not recorded
      w.close();
      const acc = scenarioAccounting(s);
      assert.ok(acc.ok, acc.problems.join("; "));
      assert.equal(s.sink.stats[SK_BAD_CSUM], 0, "the sink still validates every frame");
      const recs = readAll(f);
      assert.equal(recs.length, tap.packets);
      assert.ok(recs.length >= 2000, `${proto}: ${recs.length} frames`);
      assert.ok((s.sink.stats[SK_RX] as number) > recs.length, "frames after remove() are not recorded");
      for (const r of recs) {
        const { vlan, ipb } = l3(r);
        assert.equal(vlan, 0);
        assert.equal(ipStr(rd32(ipb, 12)), "198.51.100.1", "masqueraded");
        checkValid(ipb);
      }
      const leaks = scenarioDestroy(s);
      assert.ok(leaks.ok, JSON.stringify(leaks));
    }
  });

  test("captureTapCreate refuses a device that is not a veth end", () => {
    const s = scenarioCreate({ traffic: { proto: "udp", size: 64, flows: 1 }, arenaSize: 64 << 20 });
    const w = { addInterface: () => 0 } as unknown as CaptureWriter;
    assert.throws(() => captureTapCreate(s.inside, w, 0, { tsSec: 0, tsNsec: 0 }), /in0\.10 is not a veth end/);
    scenarioDestroy(s);
  });
});

describe("replay through the VLAN NAT router", () => {
  test("UDP and TCP from inside hosts leave the outside masqueraded; replies come back tagged to the inside", () => {
    const d = tmp();
    const input = join(d, "in.pcap");
    const output = join(d, "out.pcapng");
    const frames: Uint8Array[] = [];
    // Three hosts, two UDP flows each.
    for (let i = 0; i < 120; i++) {
      const h = i % 3;
      frames.push(udpFrame(ip("10.10.0.2") + h, SERVER, 40000 + (i % 2), 53, pattern(20 + i, i), { id: i }));
    }
    // A TCP connection from 10.10.1.7:50000 with its replies from the server to the NAT address.
    const c = ip("10.10.1.7");
    const isn = 1000;
    const sisn = 900000;
    frames.push(tcpFrame(c, SERVER, 50000, 80, isn, 0, TCP_SYN, new Uint8Array(0)));
    frames.push(tcpFrame(SERVER, NAT, 80, 50000, sisn, isn + 1, TCP_SYN | TCP_ACK, new Uint8Array(0)));
    frames.push(tcpFrame(c, SERVER, 50000, 80, isn + 1, sisn + 1, TCP_ACK, new Uint8Array(0)));
    let seq = isn + 1;
    for (let k = 0; k < 10; k++) {
      const p = pattern(1000, k);
      frames.push(tcpFrame(c, SERVER, 50000, 80, seq, sisn + 1, TCP_ACK | (k === 9 ? TCP_PSH : 0), p));
      seq += p.length;
    }
    frames.push(tcpFrame(SERVER, NAT, 80, 50000, sisn + 1, seq, TCP_ACK, new Uint8Array(0)));
    writeCapture(input, frames);
    const r = run({ input, output });
    assert.equal(r.read, frames.length);
    assert.deepEqual(r.skipped, {});
    assert.equal(r.injected.outside, 2, "the two server frames entered from the outside");
    assert.equal(r.injected.inside, frames.length - 2);
    assert.equal(r.delivered.inside, 2, "SYN-ACK and ACK reached the inside host");
    assert.deepEqual(r.drops, {});
    assert.deepEqual(r.neighbours.sort(), ["10.10.0.3", "10.10.0.4", "10.10.1.7"], "learned (10.10.0.2 is the scenario's own host)");
    const recs = readAll(output);
    const inside = recs.filter((x) => x.ifIndex === 0);
    const outside = recs.filter((x) => x.ifIndex === 1);
    assert.equal(inside.length, r.delivered.inside);
    assert.equal(outside.length, r.delivered.outside);
    // GRO may merge the TCP data and GSO cut it again: the payload bytes are what count.
    let udp = 0;
    let tcpPayload = 0;
    for (const x of outside) {
      assert.equal(x.flags, 2, "outbound");
      const { vlan, ipb } = l3(x);
      assert.equal(vlan, 0);
      checkValid(ipb);
      assert.equal(rd32(ipb, 12), NAT, "source masqueraded");
      assert.equal(rd32(ipb, 16), SERVER);
      assert.equal(ipb[8], 63, "TTL decremented");
      if (ipb[9] === PROTO_UDP) udp++;
      else tcpPayload += rd16(ipb, 2) - 40;
    }
    assert.equal(udp, 120);
    assert.equal(tcpPayload, 10_000);
    // UDP flows keep their ports unless two hosts clash on one: the first of each port keeps it.
    const sports = new Set(outside.filter((x) => l3(x).ipb[9] === PROTO_UDP).map((x) => rd16(l3(x).ipb, 20)));
    assert.equal(sports.size, 6, "six flows, six distinct translated ports");
    assert.ok(sports.has(40000) && sports.has(40001));
    for (const x of inside) {
      const { vlan, ipb } = l3(x);
      assert.equal(vlan, 10, "tagged into the inside VLAN");
      checkValid(ipb);
      assert.equal(rd32(ipb, 16), c, "de-masqueraded to the inside host");
      assert.equal(rd16(ipb, 22), 50000);
    }
    assert.equal(r.conntrackEntries, 7);
  });

  test("direction outside: unsolicited inbound traffic is dropped and counted", () => {
    const d = tmp();
    const input = join(d, "in.pcapng");
    const frames = [0, 1, 2].map((i) => udpFrame(SERVER, ip("10.10.0.2"), 53, 40000 + i, pattern(30, i)));
    frames.push(udpFrame(SERVER, NAT, 53, 40000, pattern(30, 3))); // to the router itself: no socket
    writeCapture(input, frames, "pcapng");
    const r = run({ input, output: join(d, "out.pcapng"), direction: "outside" });
    assert.equal(r.injected.outside, 4);
    assert.equal(r.delivered.inside + r.delivered.outside, 0);
    assert.deepEqual(r.drops, { CT_UNSOLICITED: 3, NO_SOCKET: 1 });
    assert.deepEqual(r.dropsByDevice, { out0: 4 });
  });

  test("direction inside forces every frame onto gen0; auto sends tagged frames inside", () => {
    const d = tmp();
    const input = join(d, "in.pcap");
    // From an address outside 10.10/16, tagged with VLAN 10: auto says inside (tag).
    writeCapture(input, [udpFrame(ip("192.0.2.5"), SERVER, 1234, 53, pattern(30, 0), { vlan: 10 }), udpFrame(ip("192.0.2.5"), SERVER, 1234, 53, pattern(30, 1))]);
    const auto = run({ input, output: join(d, "a.pcapng") });
    assert.deepEqual(auto.injected, { inside: 1, outside: 1, total: 2 });
    const forced = run({ input, output: join(d, "b.pcapng"), direction: "inside" });
    assert.deepEqual(forced.injected, { inside: 2, outside: 0, total: 2 });
    assert.equal(forced.delivered.outside, 2, "both forwarded and masqueraded");
  });

  test("oversized frames: fragmented without DF, ICMP frag-needed back to the inside with DF", () => {
    const d = tmp();
    const input = join(d, "in.pcap");
    const host = ip("10.10.0.9");
    const big = (flags: number, id: number) => udpFrame(host, SERVER, 7000, 9, pattern(8000, id), { flags, id });
    writeCapture(input, [big(0, 1), big(DF, 2)]);
    const output = join(d, "out.pcapng");
    const r = run({ input, output });
    assert.equal(r.router.icmpSent, 1);
    assert.ok(r.router.fragExtra >= 5, `fragExtra ${r.router.fragExtra}`);
    assert.deepEqual(r.drops, { PKT_TOO_BIG: 1 });
    const recs = readAll(output);
    const out = recs.filter((x) => x.ifIndex === 1);
    assert.equal(out.length, r.router.fragExtra + 1);
    let bytes = 0;
    for (const x of out) {
      const { ipb } = l3(x);
      checkValid(ipb);
      assert.ok(rd16(ipb, 2) <= 1500);
      bytes += rd16(ipb, 2) - 20;
    }
    assert.equal(bytes, 8008, "every byte of the datagram, in fragments");
    const icmp = recs.filter((x) => x.ifIndex === 0);
    assert.equal(icmp.length, 1);
    const { vlan, ipb } = l3(icmp[0]!);
    assert.equal(vlan, 10);
    assert.equal(ipb[9], PROTO_ICMP);
    assert.equal(ipb[20], 3, "destination unreachable");
    assert.equal(ipb[21], 4, "fragmentation needed");
    assert.equal(rd16(ipb, 26), 1500, "next-hop MTU");
    assert.equal(rd32(ipb, 16), host);
  });

  test("records that cannot be replayed are counted by reason, not crashes", () => {
    const d = tmp();
    const ok = udpFrame(ip("10.10.0.2"), SERVER, 1, 2, pattern(20, 0));
    const w = createCaptureWriter(join(d, "in.pcapng"), { format: "pcapng", resolution: "ns" });
    const eth = w.addInterface({ snaplen: 0 });
    const raw = w.addInterface({ linkType: 101 });
    const snap = w.addInterface({ snaplen: 40 });
    w.writePacket(eth, 1, 0, ok, 0, ok.length);
    w.writePacket(raw, 1, 0, ok, 14, ok.length - 14); // raw IP: not Ethernet
    w.writePacket(eth, 1, 0, ok, 0, 10); // runt
    w.writePacket(snap, 1, 0, ok, 0, ok.length); // cut by the snaplen
    const huge = new Uint8Array(CAPTURE_FRAME_MAX + 2);
    huge.set(ok);
    w.writePacket(eth, 1, 0, huge, 0, huge.length); // too big for one skb
    w.writePacket(eth, 1, 0, icmpFrame(), 0, icmpFrame().length); // ping to the router itself
    w.close();
    const r = run({ input: join(d, "in.pcapng"), output: join(d, "out.pcapng") });
    assert.equal(r.read, 6);
    assert.deepEqual(r.skipped, { linkType: 1, runt: 1, snapped: 1, tooBig: 1 });
    assert.equal(r.injected.total, 2);
    assert.equal(r.delivered.outside, 1);
    assert.equal(r.delivered.inside, 1, "the router answered the ping");
    const echo = readAll(join(d, "out.pcapng")).find((x) => x.ifIndex === 0)!;
    assert.equal(l3(echo).ipb[20], 0, "echo reply");
  });

  test("a capture cut short: what was read is replayed, the error is reported, ok is false", () => {
    const d = tmp();
    const frames = [0, 1, 2, 3].map((i) => udpFrame(ip("10.10.0.2"), SERVER, 5000, 53, pattern(30, i)));
    const bytes = cat(pcapHeader(), ...frames.map((f, i) => pcapRecord({ sec: 1, frac: i, data: f })));
    const input = join(d, "cut.pcap");
    writeFileSync(input, bytes.subarray(0, bytes.length - 10));
    const r = replayCapture({ input, output: join(d, "out.pcapng") });
    assert.equal(r.read, 3);
    assert.equal(r.delivered.outside, 3);
    assert.match(r.error ?? "", /cut\.pcap: byte \d+: truncated record/);
    assert.equal(r.ok, false);
    assert.ok(r.accounting.ok && r.leaks.ok, "the part that was replayed still balances");
  });

  test("pcap output: two files, -inside and -outside; --cache off is applied and restored", () => {
    const d = tmp();
    const input = join(d, "in.pcap");
    writeCapture(input, [udpFrame(ip("10.10.0.2"), SERVER, 5000, 53, pattern(30, 0))]);
    assert.deepEqual(replaySplitNames(join(d, "o.pcap")), { inside: join(d, "o-inside.pcap"), outside: join(d, "o-outside.pcap") });
    assert.deepEqual(replaySplitNames("o"), { inside: "o-inside", outside: "o-outside" });
    const before = napiCacheIsEnabled();
    const r = run({ input, output: join(d, "o.pcap"), cache: false });
    assert.equal(r.napiCache, false);
    assert.equal(napiCacheIsEnabled(), before, "switch restored");
    assert.equal(r.outputFormat, "pcap");
    assert.ok(existsSync(r.outputs.inside) && existsSync(r.outputs.outside));
    assert.equal(readAll(r.outputs.inside).length, 0);
    assert.equal(readAll(r.outputs.outside).length, 1);
    const rd = openCapture(r.outputs.outside);
    assert.equal(rd.format, "pcap");
    rd.close();
  });

  test("untagged inside (--vlan 0) and a bigger replay with the 6.19 profile", () => {
    const d = tmp();
    const input = join(d, "in.pcapng");
    const frames: Uint8Array[] = [];
    for (let i = 0; i < 3000; i++) frames.push(udpFrame(ip("10.10.0.2") + (i % 50), SERVER, 30000 + (i % 7), 53, pattern(18 + (i % 1400), i), { id: i }));
    writeCapture(input, frames, "pcapng");
    const r = run({ input, output: join(d, "out.pcapng"), vlan: 0, profile: "6.19" });
    assert.equal(r.delivered.outside, 3000);
    assert.equal(r.conntrackEntries, 350);
  });
});

/** An echo request from an inside host to the router's inside address. */
function icmpFrame(): Uint8Array {
  const src = ip("10.10.0.2");
  const ipb = ipv4Packet({ saddr: src, daddr: ip("10.10.0.1"), proto: PROTO_ICMP, payload: icmpEcho(8, 1, 1, pattern(16, 0)) });
  return ethFrame(OTHER_MAC, HOST_MAC, 0, ETH_P_IP, ipb);
}
