/**
 * The Node-style baseline router of `skb bench`: on small runs every packet
 * arrives intact and NATed, replies find their inside host and port, counts
 * add up, and a corrupted frame is a counted drop, not a crash.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BASELINE_MACS, type BaselineResult, BaselineRouter, type Packet, runBaseline } from "../../src/bench/baseline.js";
import { buildFrame, type FrameSpec } from "../../src/drivers/frames.js";
import { flowSrcAddr, flowSrcPort, resolveTraffic, type TrafficOptions } from "../../src/drivers/traffic.js";
import { csumFold, csumPartial, csumTcpudpNofold } from "../../src/net/checksum.js";
import { ipv4 } from "../../src/net/proto.js";

const N = 3000;
const NAT = "192.0.2.77";

function run(t: TrafficOptions, extra: Partial<Parameters<typeof runBaseline>[0]> = {}): BaselineResult {
  return runBaseline({ traffic: resolveTraffic(t), packets: N, natAddr: NAT, warmup: 0, ...extra });
}

/** Invariants every run must satisfy. */
function checkCounts(r: BaselineResult): void {
  assert.equal(r.stalled, false);
  assert.equal(r.generated, r.delivered + r.dropped, "generated = delivered + dropped");
  assert.equal(r.replies, r.repliesDelivered + r.repliesDropped, "replies = delivered + dropped");
  assert.equal(r.sink.rx, r.delivered);
  assert.equal(r.sink.tx, r.replies);
  assert.equal(r.generator.tx, r.generated);
  assert.equal(r.generator.rx, r.repliesDelivered);
  const dropSum = Object.values(r.dropReasons).reduce((a, b) => a + (b ?? 0), 0);
  assert.equal(dropSum, r.dropped + r.repliesDropped, "every drop has a reason");
  assert.ok(r.seconds > 0 && r.mpps > 0 && r.gbps > 0 && r.nsPerPacket > 0);
  assert.ok(Number.isInteger(r.gcCount) && r.gcCount >= 0);
  assert.equal(typeof r.heapGrowthBytes, "number");
}

/** A clean run: nothing lost, nothing wrong, NAT visible, replies to the right flows. */
function checkClean(r: BaselineResult, flows: number): void {
  checkCounts(r);
  assert.equal(r.dropped, 0);
  assert.equal(r.repliesDropped, 0);
  assert.equal(r.delivered, r.generated);
  assert.equal(r.validationErrors, 0, JSON.stringify({ sink: r.sink, gen: r.generator }));
  assert.equal(r.sink.seqGaps, 0);
  assert.equal(r.conntrackEntries, flows);
  // The sink saw every flow from the NAT address, each on its own port.
  assert.equal(r.sink.peers.length, flows);
  const ports = new Set<string>();
  for (const p of r.sink.peers) {
    const [addr, port] = p.split(":");
    assert.equal(addr, NAT, `sink peer ${p} is not the NAT address`);
    ports.add(port as string);
  }
  assert.equal(ports.size, flows, "translated ports are distinct");
  assert.ok(r.replies > 0);
  assert.equal(
    r.generator.repliesPerFlow.reduce((a, b) => a + b, 0),
    r.repliesDelivered,
    "every reply was matched to its inside host and port",
  );
}

describe("baseline router (object + Buffer per packet)", () => {
  it("UDP 64 B: all delivered, NATed, replies every 16th datagram to the right host/port", () => {
    const r = run({ proto: "udp", size: 64 });
    checkClean(r, 64);
    assert.equal(r.generated, N);
    assert.equal(r.bytes, N * 64);
    assert.equal(r.sink.rxPayload, N * 18);
    // Flows are served round-robin: flow f sends ceil((N - f) / 64) datagrams.
    for (let f = 0; f < 64; f++) {
      const sent = Math.ceil((N - f) / 64);
      assert.equal(r.generator.repliesPerFlow[f], Math.floor(sent / 16), `replies of flow ${f}`);
    }
  });

  it("UDP 64 B, one flow per host: source ports kept when free", () => {
    const r = run({ proto: "udp", size: 64, flows: 8, insideHosts: 8, sportBase: 50000 }, { packets: 800 });
    checkClean(r, 8);
    // All 8 hosts use port 50000: the first keeps it, the others take the next free ones.
    const ports = r.sink.peers.map((p) => Number(p.split(":")[1])).sort((a, b) => a - b);
    assert.deepEqual(ports, [50000, 50001, 50002, 50003, 50004, 50005, 50006, 50007]);
  });

  it("TCP 1518: handshake, in-order data, ACKs back to every inside host", () => {
    const r = run({ proto: "tcp", size: 1518 });
    checkClean(r, 64);
    assert.equal(r.generator.synSent, 64);
    assert.equal(r.generator.established, 64);
    assert.equal(r.sink.conns, 64);
    assert.equal(r.generated, N + 128, "data + SYN + handshake ACK per flow");
    assert.equal(r.sink.rxPayload, N * 1460);
    assert.equal(r.sink.badSeq, 0);
    // SYN-ACK per flow, then an ACK per 2 segments (PSH every 44 never falls between).
    for (let f = 0; f < 64; f++) {
      const segs = Math.ceil((N - f) / 64);
      assert.equal(r.generator.repliesPerFlow[f], 1 + Math.floor(segs / 2), `replies of flow ${f}`);
    }
  });

  it("IMIX over UDP and TCP, tagged and untagged", () => {
    for (const proto of ["udp", "tcp"] as const) {
      for (const vlan of [10, 0]) {
        const r = run({ proto, size: "imix", vlan });
        checkClean(r, 64);
        // Bytes in memory: wire size - 4 (FCS) + 4 for the tag; 7:4:1 of 64/594/1518
        // over the data packets, 58-byte SYN and ACK per flow on top for TCP.
        const extra = vlan === 0 ? -4 : 0;
        const cycle = 7 * 64 + 4 * 594 + 1518 + 12 * extra;
        const handshake = proto === "tcp" ? 128 * (58 + extra) : 0;
        assert.equal(r.bytes, (N / 12) * cycle + handshake);
        const l4 = proto === "udp" ? 28 : 40;
        assert.equal(r.sink.rxPayload, (N / 12) * (7 * (64 - 18 - l4) + 4 * (594 - 18 - l4) + (1518 - 18 - l4)));
      }
    }
  });

  it("full vs sampled validation give the same verdicts", () => {
    const r = run({ proto: "tcp", size: 64 }, { fullValidation: false });
    checkClean(r, 64);
  });

  it("a corrupted IP header (TTL flipped) is dropped as a checksum error and counted", () => {
    const r = run({ proto: "udp", size: 64 }, { corruptAt: [100, 2000] });
    checkCounts(r);
    assert.equal(r.generated, N);
    assert.equal(r.dropped, 2);
    assert.equal(r.delivered, N - 2);
    assert.equal(r.dropReasons.ipCsum, 2);
    assert.equal(r.validationErrors, 0);
    assert.equal(r.sink.seqGaps, 2, "the sink notices the two missing datagrams");
  });

  it("a corrupted version/IHL byte is dropped as a bad header; a lost TCP segment is a gap", () => {
    const r = run({ proto: "tcp", size: 1518 }, { corruptAt: [500], corruptIpByte: 0 });
    checkCounts(r);
    assert.equal(r.dropped, 1);
    assert.equal(r.dropReasons.ipHeader, 1);
    assert.equal(r.validationErrors, 0);
    assert.equal(r.sink.seqGaps, 1);
  });

  it("rejects bad options", () => {
    const traffic = resolveTraffic({ proto: "udp", size: 64 });
    assert.throws(() => runBaseline({ traffic, packets: -1 }), RangeError);
    assert.throws(() => runBaseline({ traffic, packets: 10, batch: 0 }), RangeError);
    assert.throws(() => runBaseline({ traffic, packets: 10, corruptIpByte: 20 }), RangeError);
    assert.throws(() => runBaseline({ traffic, packets: 10, natAddr: "300.1.1.1" }), RangeError);
  });

  it("packets: 0 runs nothing (UDP) / only the handshake (TCP)", () => {
    const u = runBaseline({ traffic: resolveTraffic({ proto: "udp", size: 64 }), packets: 0, warmup: 0 });
    assert.equal(u.generated, 0);
    assert.equal(u.mpps, 0);
    const t = runBaseline({ traffic: resolveTraffic({ proto: "tcp", size: 64, flows: 4 }), packets: 0, warmup: 0 });
    checkCounts({ ...t, seconds: 1, mpps: 1, gbps: 1, nsPerPacket: 1 });
    assert.equal(t.generated, 8);
    assert.equal(t.generator.established, 4);
  });

  describe("BaselineRouter alone", () => {
    const t = resolveTraffic({ proto: "udp", size: 64 });
    const nat = ipv4(NAT);

    function frame(spec: Partial<FrameSpec>, dev: Packet["dev"]): Packet {
      const inside = dev === "inside";
      const { bytes } = buildFrame({
        srcMac: inside ? BASELINE_MACS.gen : BASELINE_MACS.sink,
        dstMac: inside ? BASELINE_MACS.routerIn : BASELINE_MACS.routerOut,
        vlan: inside ? t.vlan : 0,
        saddr: inside ? flowSrcAddr(t, 1) : t.server,
        daddr: inside ? t.server : nat,
        proto: 17,
        sport: inside ? flowSrcPort(t, 1) : t.serverPort,
        dport: inside ? t.serverPort : flowSrcPort(t, 1),
        frameSize: 64,
        flow: 1,
        ...spec,
      });
      const buf = Buffer.from(bytes);
      return { buf, len: buf.length, vlan: inside ? t.vlan : 0, dev };
    }

    function valid(buf: Buffer, ip: number): boolean {
      const ipLen = buf.readUInt16BE(ip + 2);
      const l4Len = ipLen - 20;
      if (csumFold(csumPartial(buf, ip, 20, 0)) !== 0) return false;
      const s = csumTcpudpNofold(buf.readUInt32BE(ip + 12), buf.readUInt32BE(ip + 16), l4Len, buf[ip + 9] as number, csumPartial(buf, ip + 20, l4Len, 0));
      return csumFold(s) === 0;
    }

    it("inside -> outside: untagged, MACs rewritten, TTL-1, masqueraded, checksums valid", () => {
      const r = new BaselineRouter(t, nat);
      const out = r.fromInside(frame({}, "inside"));
      assert.ok(out !== null);
      const b = out.buf;
      assert.equal(out.len, 60);
      assert.equal(b.length, 60);
      assert.equal(out.vlan, 0);
      assert.equal(out.dev, "outside");
      assert.deepEqual(b.subarray(0, 6), BASELINE_MACS.sink);
      assert.deepEqual(b.subarray(6, 12), BASELINE_MACS.routerOut);
      assert.equal(b.readUInt16BE(12), 0x0800);
      assert.equal(b[14 + 8], 63);
      assert.equal(b.readUInt32BE(14 + 12), nat);
      assert.equal(b.readUInt32BE(14 + 16), t.server);
      assert.ok(valid(b, 14));
      // Flow 1 is host 1 with port 40000; port 40000 is free, so it is kept.
      assert.equal(b.readUInt16BE(34), flowSrcPort(t, 1));
      assert.equal(r.conntrack.size, 2, "one entry under both directions' keys");

      // The reply goes back to host 1, tagged again.
      const back = r.fromOutside(frame({}, "outside"));
      assert.ok(back !== null);
      const c = back.buf;
      assert.equal(back.len, 64);
      assert.equal(back.vlan, t.vlan);
      assert.deepEqual(c.subarray(0, 6), BASELINE_MACS.gen);
      assert.deepEqual(c.subarray(6, 12), BASELINE_MACS.routerIn);
      assert.equal(c.readUInt16BE(12), 0x8100);
      assert.equal(c.readUInt16BE(14) & 0xfff, t.vlan);
      assert.equal(c.readUInt16BE(16), 0x0800);
      assert.equal(c[18 + 8], 63);
      assert.equal(c.readUInt32BE(18 + 16), flowSrcAddr(t, 1));
      assert.equal(c.readUInt16BE(18 + 22), flowSrcPort(t, 1));
      assert.ok(valid(c, 18));
    });

    it("drops with reasons: other host, wrong VLAN, TTL, no conntrack, bad checksum", () => {
      const r = new BaselineRouter(t, nat);
      const otherMac = frame({ dstMac: BASELINE_MACS.sink }, "inside");
      assert.equal(r.fromInside(otherMac), null);
      assert.equal(r.fromInside(frame({ vlan: t.vlan + 1 }, "inside")), null);
      const ttl1 = frame({}, "inside");
      ttl1.buf[18 + 8] = 1;
      ttl1.buf.writeUInt16BE(0, 18 + 10);
      ttl1.buf.writeUInt16BE(csumFold(csumPartial(ttl1.buf, 18, 20, 0)), 18 + 10);
      assert.equal(r.fromInside(ttl1), null);
      assert.equal(r.fromOutside(frame({}, "outside")), null);
      const bad = frame({}, "inside");
      bad.buf[18 + 4] ^= 1;
      assert.equal(r.fromInside(bad), null);
      assert.deepEqual(r.drops, { otherHost: 1, vlan: 1, ttl: 1, noConntrack: 1, ipCsum: 1 });
      assert.equal(r.droppedOut, 4);
      assert.equal(r.droppedIn, 1);
      assert.equal(r.conntrack.size, 0);
    });
  });
});
