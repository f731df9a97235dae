import { scenarioCreate, scenarioAccounting, scenarioDestroy } from "../../src/router/scenario.js";
import { buildFrame } from "../../src/drivers/frames.js";
import { sinkStats } from "../../src/drivers/sink.js";
import { pktgenStats } from "../../src/drivers/pktgen.js";
import { balance, dropsByReason, DF, ethFrame, icmpEcho, inject, ip, ipStr, ipv4Packet, parseFrame, pattern, pollIdle, PROTO_ICMP, PROTO_UDP, rd16, rd32, tap, udpSegment, MF } from "./helpers.js";

function mk(mtu = 1500, vlan = 10) {
  const s = scenarioCreate({ traffic: { proto: "udp", size: 64, vlan }, fullValidation: true, mtu });
  const g = tap(s.gen0);
  const k = tap(s.srv0);
  return { s, g, k };
}
function report(name: string, x: ReturnType<typeof mk>) {
  const { s, g, k } = x;
  console.log("==", name);
  console.log(" gen0 got", g.map((f) => { const p = parseFrame(f.bytes); return p.ipOff < 0 ? `len${f.bytes.length}` : `vlan${p.vlan} ${ipStr(rd32(f.bytes, p.ipOff + 12))}->${ipStr(rd32(f.bytes, p.ipOff + 16))} proto${f.bytes[p.ipOff + 9]} len${rd16(f.bytes, p.ipOff + 2)} icmp${f.bytes[p.ipOff + 20]}/${f.bytes[p.ipOff + 21]} nl${f.nonLinear}`; }));
  console.log(" srv0 got", k.map((f) => { const p = parseFrame(f.bytes); return p.ipOff < 0 ? `len${f.bytes.length}` : `${ipStr(rd32(f.bytes, p.ipOff + 12))}->${ipStr(rd32(f.bytes, p.ipOff + 16))} proto${f.bytes[p.ipOff + 9]} len${rd16(f.bytes, p.ipOff + 2)} fo${rd16(f.bytes, p.ipOff + 6).toString(16)} nl${f.nonLinear}`; }));
  console.log(" drops", JSON.stringify(dropsByReason(s)), "sink", JSON.stringify(sinkStats(s.sink)), "pg", JSON.stringify(pktgenStats(s.pktgen)));
  const a = scenarioAccounting(s);
  console.log(" acct", a.ok, a.problems, "balance", balance(s).detail);
  console.log(" destroy", JSON.stringify(scenarioDestroy(s)));
}
const H = ip("10.10.0.2"), SRV = ip("198.51.100.10"), NAT = ip("198.51.100.1");
{
  const x = mk();
  const f = buildFrame({ srcMac: x.s.gen0.mac, dstMac: x.s.in0.mac, vlan: 10, saddr: H, daddr: SRV, proto: 17, sport: 40000, dport: 5201, frameSize: 100 });
  const b = f.bytes; b[18 + 8] = 1; b[28] = 0; b[29] = 0; const c = (() => { let s = 0; for (let i = 18; i < 38; i += 2) s += (b[i]! << 8) | b[i + 1]!; while (s > 0xffff) s = (s & 0xffff) + (s >>> 16); return ~s & 0xffff; })(); b[28] = c >> 8; b[29] = c & 255;
  inject(x.s, x.s.gen0, b); pollIdle(x.s); report("ttl1", x);
}
{
  const x = mk();
  const pkt = ipv4Packet({ saddr: H, daddr: ip("203.0.113.5"), proto: PROTO_UDP, payload: udpSegment(H, ip("203.0.113.5"), 40000, 53, pattern(30)) });
  inject(x.s, x.s.gen0, ethFrame(x.s.in0.mac, x.s.gen0.mac, 10, 0x800, pkt)); pollIdle(x.s); report("noroute", x);
}
{
  const x = mk();
  const pkt = ipv4Packet({ saddr: H, daddr: ip("10.10.0.1"), proto: PROTO_ICMP, payload: icmpEcho(8, 7, 1, pattern(56)) });
  inject(x.s, x.s.gen0, ethFrame(x.s.in0.mac, x.s.gen0.mac, 10, 0x800, pkt)); pollIdle(x.s); report("ping", x);
}
{
  const x = mk(1400);
  const pkt = ipv4Packet({ saddr: H, daddr: SRV, proto: PROTO_UDP, flags: DF, payload: udpSegment(H, SRV, 40000, 5201, pattern(1472)) });
  inject(x.s, x.s.gen0, ethFrame(x.s.in0.mac, x.s.gen0.mac, 10, 0x800, pkt)); pollIdle(x.s); report("df", x);
}
{
  const x = mk(1400);
  const pkt = ipv4Packet({ saddr: H, daddr: SRV, proto: PROTO_UDP, flags: 0, payload: udpSegment(H, SRV, 40000, 5201, pattern(1472)) });
  inject(x.s, x.s.gen0, ethFrame(x.s.in0.mac, x.s.gen0.mac, 10, 0x800, pkt)); pollIdle(x.s); report("nodf", x);
}
{
  const x = mk();
  const pkt = ipv4Packet({ saddr: SRV, daddr: NAT, proto: PROTO_UDP, payload: udpSegment(SRV, NAT, 5201, 41234, pattern(30)) });
  inject(x.s, x.s.srv0, ethFrame(x.s.out0.mac, x.s.srv0.mac, 0, 0x800, pkt));
  const pkt2 = ipv4Packet({ saddr: SRV, daddr: H, proto: PROTO_UDP, payload: udpSegment(SRV, H, 5201, 40000, pattern(30)) });
  inject(x.s, x.s.srv0, ethFrame(x.s.out0.mac, x.s.srv0.mac, 0, 0x800, pkt2));
  pollIdle(x.s); report("unsolicited", x);
}
{
  const x = mk();
  const udp = udpSegment(H, SRV, 40000, 5201, pattern(992));
  const f1 = ipv4Packet({ saddr: H, daddr: SRV, proto: PROTO_UDP, id: 77, flags: MF, fragOffset: 0, payload: udp.subarray(0, 496) });
  const f2 = ipv4Packet({ saddr: H, daddr: SRV, proto: PROTO_UDP, id: 77, flags: 0, fragOffset: 496, payload: udp.subarray(496) });
  inject(x.s, x.s.gen0, ethFrame(x.s.in0.mac, x.s.gen0.mac, 10, 0x800, f1));
  inject(x.s, x.s.gen0, ethFrame(x.s.in0.mac, x.s.gen0.mac, 10, 0x800, f2));
  pollIdle(x.s); report("reasm", x);
}
