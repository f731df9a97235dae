/**
 * skb forward's library side: configuration validation (exact messages) and
 * an in-process run from pcap inputs to pcap outputs: NAT, ARP replies for
 * our addresses, ARP requests for unresolved next hops, replies
 * de-masqueraded back to the inside host, no leaks.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import { createCaptureWriter } from "../../src/io/pcap.js";
import { ForwardConfigError, forwarderCreate, forwarderRun, parseForwardConfig } from "../../src/router/forward.js";
import { readAll, tmp } from "../io/helpers.js";
import { ETH_P_IP, ethFrame, ip, ipv4Packet, pattern, PROTO_UDP, udpSegment } from "./helpers.js";

const LAN_MAC = "02:00:00:00:01:01";
const WAN_MAC = "02:00:00:00:02:01";
const HOST_MAC = Uint8Array.of(2, 0, 0, 0, 0, 0x10);
const GW_MAC = "02:00:00:00:00:fe";

function mac(s: string): Uint8Array {
  return Uint8Array.from(s.split(":").map((x) => parseInt(x, 16)));
}

function udpFrame(i: number, src: string, dst: string, sport: number, dport: number, dstMac: Uint8Array, srcMac: Uint8Array): Uint8Array {
  const s = ip(src);
  const d = ip(dst);
  const ipb = ipv4Packet({ saddr: s, daddr: d, proto: PROTO_UDP, payload: udpSegment(s, d, sport, dport, pattern(32, i)), id: i });
  return ethFrame(dstMac, srcMac, 0, ETH_P_IP, ipb);
}

function arpRequest(senderMac: Uint8Array, sip: string, tip: string): Uint8Array {
  const f = new Uint8Array(42);
  f.fill(0xff, 0, 6);
  f.set(senderMac, 6);
  f[12] = 0x08;
  f[13] = 0x06;
  const a = 14;
  f.set([0, 1, 8, 0, 6, 4, 0, 1], a);
  f.set(senderMac, a + 8);
  const s = ip(sip);
  const t = ip(tip);
  f.set([s >>> 24, (s >>> 16) & 255, (s >>> 8) & 255, s & 255], a + 14);
  f.set([t >>> 24, (t >>> 16) & 255, (t >>> 8) & 255, t & 255], a + 24);
  return f;
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
    // 198.51.100.77 is on the wan link with no neighbour entry: one ARP request, the datagrams dropped.
    const arpOut = wan.filter((r) => r.data[12] === 0x08 && r.data[13] === 0x06);
    assert.equal(arpOut.length, 1);
    assert.equal(be32(arpOut[0]?.data as Uint8Array, 38), ip("198.51.100.77"));
    assert.equal(rep.dropsByReason.NEIGH_FAILED, 2);
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
  });
});
