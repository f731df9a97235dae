/**
 * A tiny IPv4 host for the tunnel tests, sitting on one device's receive
 * hook: ARP (src/net/arp.ts: answers requests for the device's address,
 * learns neighbours), ICMP echo (src/net/icmp.ts icmpRcvEcho, answered in
 * place) and a minimal TCP echo listener on one port (handshake, in-order
 * data echoed back, FIN answered; no retransmission, no options, no window
 * management — enough for one short exchange over a lossless link).
 *
 * Every frame the device delivers ends as a reply sent or a counted drop on
 * the device (`rxDelivered = replies + drops` per frame, checked by tests).
 */

import { devDropSkb, devQueueXmit, type NetDevice } from "../../src/core/netdev.js";
import type { NapiStruct, Softnet } from "../../src/core/napi.js";
import {
  ARP_STAT_NAMES,
  arpRcv,
  arpSolicit,
  arpStatsCreate,
  type NeighTable,
  neighMacOffset,
  neighResolve,
  neighTableCreate,
} from "../../src/net/arp.js";
import { ethHeaderPush, ethTypeTrans } from "../../src/net/ethernet.js";
import { icmpRcvEcho, icmpStatsCreate } from "../../src/net/icmp.js";
import { ipRcvCore, ipStatsCreate } from "../../src/net/ipv4.js";
import { ETH_P_ARP, ETH_P_IP, IPPROTO_ICMP, IPPROTO_TCP } from "../../src/net/proto.js";
import { tcp4RcvCore } from "../../src/net/tcp.js";
import { be16, be32, be32s, skbDataPtr, skbNetworkHeader, skbResetNetworkHeader, skbTransportHeader } from "../../src/skb/access.js";
import { allocSkb } from "../../src/skb/alloc.js";
import type { SkbCpu } from "../../src/skb/cpu.js";
import { skbPut, skbReserve } from "../../src/skb/data.js";
import { SKB_DROP_REASON } from "../../src/skb/drop-reason.js";
import { consumeSkb } from "../../src/skb/free.js";
import { SKB_DEV, SKB_PROTOCOL } from "../../src/skb/layout.js";
import { ipv4Packet, readPacket, tcpSegment } from "../net/net-helpers.js";

const FIN = 0x01;
const SYN = 0x02;
const RST = 0x04;
const PSH = 0x08;
const ACK = 0x10;

/** One TCP connection of the echo listener. */
interface TcpConn {
  peer: number;
  port: number;
  rcvNxt: number;
  sndNxt: number;
  state: "established" | "last-ack" | "closed";
  received: number[];
}

/** The host's state and counters. */
export interface TunnelHost {
  dev: NetDevice;
  sd: Softnet;
  neigh: NeighTable;
  arpStats: Float64Array;
  icmpStats: Float64Array;
  ipStats: Float64Array;
  tcpPort: number;
  conns: Map<string, TcpConn>;
  /** Frames the device handed to the host. */
  frames: number;
  /** Replies transmitted (ARP, ICMP, TCP), and frames dropped here by reason name. */
  sent: { arp: number; icmp: number; tcp: number };
  drops: Record<string, number>;
  /** Bytes the TCP listener received, per finished or open connection. */
  tcpData: string[];
  recv: (cpu: SkbCpu, napi: NapiStruct, skb: number) => void;
}

/** Create the host on `dev` (which must have its ipAddr set). */
export function tunnelHostCreate(dev: NetDevice, sd: Softnet, tcpPort = 7777): TunnelHost {
  const h: TunnelHost = {
    dev,
    sd,
    neigh: neighTableCreate({ max: 64 }),
    arpStats: arpStatsCreate(),
    icmpStats: icmpStatsCreate(),
    ipStats: ipStatsCreate(),
    tcpPort,
    conns: new Map(),
    frames: 0,
    sent: { arp: 0, icmp: 0, tcp: 0 },
    drops: {},
    tcpData: [],
    recv: (cpu, _napi, skb) => hostRcv(h, cpu, skb),
  };
  return h;
}

/** ARP counters by name. */
export function hostArpStats(h: TunnelHost): Record<string, number> {
  return Object.fromEntries(ARP_STAT_NAMES.map((n, i) => [n, h.arpStats[i] as number]));
}

function drop(h: TunnelHost, cpu: SkbCpu, skb: number, reason: number, name: string): void {
  h.drops[name] = (h.drops[name] ?? 0) + 1;
  devDropSkb(cpu, h.dev, skb, reason, false);
}

function hostRcv(h: TunnelHost, cpu: SkbCpu, skb: number): void {
  const dev = h.dev;
  const now = h.sd.jiffies;
  h.frames++;
  let r = ethTypeTrans(cpu, skb, dev.mac, 0);
  if (r !== 0) {
    drop(h, cpu, skb, r, "eth");
    return;
  }
  const proto = cpu.u16[(skb + SKB_PROTOCOL) >>> 1] as number;
  if (proto === ETH_P_ARP) {
    r = arpRcv(cpu, skb, dev, h.neigh, h.arpStats, now);
    if (r === 0) {
      h.sent.arp++;
      devQueueXmit(cpu, dev, skb);
    } else if (r === SKB_DROP_REASON.CONSUMED) {
      consumeSkb(cpu, skb);
      h.drops.arpConsumed = (h.drops.arpConsumed ?? 0) + 1;
    } else {
      drop(h, cpu, skb, r, "arp");
    }
    return;
  }
  if (proto !== ETH_P_IP) {
    drop(h, cpu, skb, SKB_DROP_REASON.UNHANDLED_PROTO, `ethertype-0x${proto.toString(16)}`);
    return;
  }
  r = ipRcvCore(cpu, skb, h.ipStats);
  if (r !== 0) {
    drop(h, cpu, skb, r, "ip");
    return;
  }
  const u8 = cpu.u8;
  const iph = skbNetworkHeader(cpu, skb);
  if (be32s(u8, iph + 16) !== (dev.ipAddr | 0)) {
    drop(h, cpu, skb, SKB_DROP_REASON.OTHERHOST, "not-for-us");
    return;
  }
  const l4 = u8[iph + 9] as number;
  if (l4 === IPPROTO_ICMP) {
    r = icmpRcvEcho(cpu, skb, h.icmpStats);
    if (r !== 0) {
      drop(h, cpu, skb, r, "icmp");
      return;
    }
    // The reply's destination is the request's source: resolve it like ip_output would.
    if (ipOutput(h, cpu, skb)) h.sent.icmp++;
    return;
  }
  if (l4 === IPPROTO_TCP) {
    tcpRcv(h, cpu, skb);
    return;
  }
  drop(h, cpu, skb, SKB_DROP_REASON.NO_SOCKET, `ipproto-${l4}`);
}

/** Ethernet header from the neighbour table and transmit; on a miss solicit and drop. */
function ipOutput(h: TunnelHost, cpu: SkbCpu, skb: number): boolean {
  const dev = h.dev;
  const daddr = be32s(cpu.u8, skbNetworkHeader(cpu, skb) + 16);
  const n = neighResolve(h.neigh, dev.ifindex, daddr, h.sd.jiffies);
  if (n < 0) {
    const req = arpSolicit(cpu, dev, h.neigh, daddr, h.arpStats, h.sd.jiffies);
    if (req !== 0) devQueueXmit(cpu, dev, req);
    drop(h, cpu, skb, SKB_DROP_REASON.NEIGH_FAILED, "neigh");
    return false;
  }
  if (ethHeaderPush(cpu, skb, dev.mac, 0, h.neigh.mac, neighMacOffset(n), ETH_P_IP) !== 0) {
    drop(h, cpu, skb, SKB_DROP_REASON.NOMEM, "nomem");
    return false;
  }
  cpu.u32[(skb + SKB_DEV) >>> 2] = dev.ifindex;
  devQueueXmit(cpu, dev, skb);
  return true;
}

/** Send a TCP segment from the host (a fresh skb). */
function tcpSend(h: TunnelHost, cpu: SkbCpu, c: TcpConn, flags: number, payload: number[]): void {
  const src = h.dev.ipAddr >>> 0;
  const seg = tcpSegment(src, c.peer, h.tcpPort, c.port, c.sndNxt >>> 0, c.rcvNxt >>> 0, flags, payload);
  const pkt = ipv4Packet({ src, dst: c.peer, proto: IPPROTO_TCP, id: 0 }, seg);
  const skb = allocSkb(cpu, 64 + pkt.length);
  if (skb === 0) return;
  skbReserve(cpu, skb, 64);
  const at = skbPut(cpu, skb, pkt.length);
  cpu.u8.set(pkt, at);
  skbResetNetworkHeader(cpu, skb);
  if (ipOutput(h, cpu, skb)) h.sent.tcp++;
}

function tcpRcv(h: TunnelHost, cpu: SkbCpu, skb: number): void {
  const r = tcp4RcvCore(cpu, skb);
  if (r !== 0) {
    drop(h, cpu, skb, r, "tcp");
    return;
  }
  const u8 = cpu.u8;
  const iph = skbNetworkHeader(cpu, skb);
  const th = skbTransportHeader(cpu, skb);
  const saddr = be32(u8, iph + 12);
  const sport = be16(u8, th);
  const dport = be16(u8, th + 2);
  const seq = be32(u8, th + 4);
  const flags = u8[th + 13] as number;
  const hl = ((u8[th + 12] as number) >>> 4) * 4;
  const bytes = readPacket(cpu, skb);
  const data = skbDataPtr(cpu, skb);
  const payload = bytes.slice(th - data + hl, iph - data + be16(u8, iph + 2));
  consumeSkb(cpu, skb);
  if (dport !== h.tcpPort) {
    h.drops.tcpNoListener = (h.drops.tcpNoListener ?? 0) + 1;
    return;
  }
  const key = `${saddr}:${sport}`;
  let c = h.conns.get(key);
  if ((flags & RST) !== 0) {
    h.conns.delete(key);
    return;
  }
  if ((flags & SYN) !== 0 && (flags & ACK) === 0) {
    c = { peer: saddr, port: sport, rcvNxt: (seq + 1) >>> 0, sndNxt: 0x5eed0000, state: "established", received: [] };
    h.conns.set(key, c);
    tcpSend(h, cpu, c, SYN | ACK, []);
    c.sndNxt = (c.sndNxt + 1) >>> 0;
    return;
  }
  if (c === undefined) return;
  if (payload.length > 0) {
    if (seq === c.rcvNxt) {
      c.rcvNxt = (c.rcvNxt + payload.length) >>> 0;
      c.received.push(...payload);
      // Echo: one segment carrying the data back, acknowledging it.
      tcpSend(h, cpu, c, PSH | ACK, payload);
      c.sndNxt = (c.sndNxt + payload.length) >>> 0;
    } else {
      tcpSend(h, cpu, c, ACK, []);
    }
  }
  if ((flags & FIN) !== 0 && c.state === "established") {
    c.rcvNxt = (c.rcvNxt + 1) >>> 0;
    tcpSend(h, cpu, c, FIN | ACK, []);
    c.sndNxt = (c.sndNxt + 1) >>> 0;
    c.state = "last-ack";
    h.tcpData.push(Buffer.from(c.received).toString());
    return;
  }
  if (c.state === "last-ack" && (flags & ACK) !== 0 && payload.length === 0) {
    c.state = "closed";
    h.conns.delete(key);
  }
}
