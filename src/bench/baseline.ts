/**
 * The baseline of `skb bench`: the same VLAN + NAT router, generator and
 * sink, written the way a competent Node developer would write them first,
 * with no arena, no skb and no NAPI: an object and a `Buffer` per packet,
 * conntrack in a `Map` with string keys, state in plain objects.
 *
 * ```
 *  Generator ──(tagged VLAN frames)──> BaselineRouter.fromInside ──(SNAT)──> Sink
 *      ^                                                              │
 *      └──(re-tagged) BaselineRouter.fromOutside <──(reverse NAT)── replies ──┘
 * ```
 *
 * Everything runs in one thread, in batches of `batch` (32) frames: the
 * generator produces a batch, the router forwards it, the sink validates
 * each frame and answers some, the router reverse-NATs the answers and the
 * generator validates them. Nothing is in flight between batches.
 *
 * Per packet, what a Node developer would write:
 * - generator: a NEW `Buffer` per frame (`Buffer.allocUnsafe` + copy of a
 *   per-flow template built at setup), fields patched with `writeUInt16BE`/
 *   `writeUInt32BE` and their checksums updated incrementally (RFC 1624, the
 *   same work pktgen.ts does); a `Packet` object `{ buf, len, vlan, dev }`.
 *   UDP carries the stamp with a per-flow sequence; TCP does the handshake
 *   (SYN, SYN-ACK, ACK), then data with PSH every 44 segments.
 * - router: parses Ethernet / 802.1Q / IPv4 / TCP / UDP with `Buffer` read
 *   methods into a header object, validates the IPv4 header checksum,
 *   strips the VLAN tag IN PLACE (the MACs move 4 bytes up with
 *   `copyWithin`, the packet becomes a `subarray` view: no copy of the
 *   payload, as the kernel's `skb_vlan_untag` does), looks the flow up in a
 *   `Map` keyed by `${saddr}:${sport}->${daddr}:${dport}/${proto}` (both
 *   directions are keys of the same entry object), masquerades (source
 *   address := natAddr, source port kept unless the translated tuple is
 *   taken, else the next free port in 1024..65535), decrements the TTL,
 *   recomputes the 20-byte IPv4 header checksum and updates the L4
 *   checksum incrementally, rewrites the MACs from a neighbour `Map`.
 *   Replies are reverse-NATed and re-tagged into a NEW `Buffer` (4 bytes
 *   longer: a `Buffer` has no headroom).
 * - sink: validates like sink.ts (checksums, translated address, one stable
 *   translated port per flow, in-order sequence), answers with new Buffers:
 *   SYN-ACK to a SYN, an ACK every 2nd data segment and on PSH, a UDP reply
 *   to every n-th datagram of a flow. State in `Map`s of objects. One
 *   difference: a sequence number AHEAD of the expected one is counted as
 *   a gap (`seqGaps`: frames lost upstream, e.g. a router drop), not as a
 *   validation error; going backwards is `badSeq`.
 *
 * Figures: `mpps`/`gbps`/`nsPerPacket` are over the generated (forward)
 * frames, all of them (TCP handshake included), with the sink's replies
 * and their trip back through the router inside the same timed loop;
 * `routedMpps` counts both directions.
 *
 * Not in the baseline: GRO/GSO (every frame goes through the router on its
 * own), ICMP errors (TTL expiry / unreachable are silent drops), fragments
 * (dropped), IP options beyond parsing `ihl`, conntrack timeouts/expiry,
 * TCP window tracking, retransmission (a segment the router drops is a gap
 * the sink counts, never filled).
 *
 * @module
 */

import { GCProfiler } from "node:v8";
import { buildFrame, type FrameLayout, type FrameSpec } from "../drivers/frames.js";
import { PSH_EVERY, pktgenIsn } from "../drivers/pktgen.js";
import { sinkIsn } from "../drivers/sink.js";
import { flowSrcAddr, flowSrcPort, STAMP_MAGIC, type Traffic } from "../drivers/traffic.js";
import { csumFold, csumPartial, csumReplace2, csumReplace4, csumTcpudpNofold } from "../net/checksum.js";
import {
  ETH_P_8021Q,
  ETH_P_IP,
  IPPROTO_TCP,
  IPPROTO_UDP,
  ipv4,
  ipv4ToString,
  TCP_FLAG_ACK,
  TCP_FLAG_FIN,
  TCP_FLAG_PSH,
  TCP_FLAG_RST,
  TCP_FLAG_SYN,
  VLAN_VID_MASK,
} from "../net/proto.js";

// ---- options and result --------------------------------------------------------

/** Options of {@link runBaseline}. */
export interface BaselineOptions {
  traffic: Traffic;
  /** Data packets to generate (TCP handshake frames come on top, as with pktgen). */
  packets: number;
  /** Masquerade address (default 203.0.113.1). */
  natAddr?: string;
  /** Sink and generator verify every frame's checksums (true, default) or every 64th (benchmarks). */
  fullValidation?: boolean;
  /** Frames per generator batch (default 32). */
  batch?: number;
  /** Data packets of an untimed warm-up run on a separate pipeline (default min(packets, 20000)). */
  warmup?: number;
  /** Test hook: 0-based indices of data packets whose IP header gets a byte flipped after checksumming. */
  corruptAt?: readonly number[];
  /** Test hook: which IP header byte {@link corruptAt} flips (default 8, the TTL). */
  corruptIpByte?: number;
}

/** Why the router dropped a frame. */
export type BaselineDropReason =
  | "truncated"
  | "otherHost"
  | "vlan"
  | "notIpv4"
  | "ipHeader"
  | "ipCsum"
  | "fragment"
  | "ttl"
  | "proto"
  | "l4Header"
  | "noConntrack"
  | "noRoute"
  | "natPortsExhausted";

/** Sink counters. */
export interface BaselineSinkStats {
  rx: number;
  rxBytes: number;
  rxPayload: number;
  badCsum: number;
  badAddr: number;
  badSeq: number;
  badOther: number;
  /** Sequence gaps (frames lost upstream, e.g. router drops); not validation errors. */
  seqGaps: number;
  tx: number;
  conns: number;
}

/** Generator counters. */
export interface BaselineGenStats {
  tx: number;
  txBytes: number;
  txPayload: number;
  synSent: number;
  established: number;
  rx: number;
  rxBadCsum: number;
  rxBadAddr: number;
  rxBadOther: number;
}

/** What {@link runBaseline} measured (the timed run only). */
export interface BaselineResult {
  /** Data packets requested. */
  packets: number;
  /** Frames the generator produced (data + TCP handshake). */
  generated: number;
  /** Bytes of the generated frames as generated (headers + payload, VLAN tag, no FCS). */
  bytes: number;
  seconds: number;
  /** Million generated frames per second. */
  mpps: number;
  /** Gbit/s of generated frame bytes. */
  gbps: number;
  nsPerPacket: number;
  /** Million frames through the router per second, both directions. */
  routedMpps: number;
  /** GC events during the timed loop (v8.GCProfiler). */
  gcCount: number;
  /** Sum of their pauses, ms. */
  gcMs: number;
  /** heapUsed after minus before the timed loop (may be negative after a GC). */
  heapGrowthBytes: number;
  /** Generated frames that reached the sink. */
  delivered: number;
  /** Generated frames the router dropped. */
  dropped: number;
  /** Replies the sink produced. */
  replies: number;
  repliesDelivered: number;
  repliesDropped: number;
  /** Sink plus generator validation failures. */
  validationErrors: number;
  /** True when the generator could not make progress (e.g. no TCP flow got established). */
  stalled: boolean;
  dropReasons: Partial<Record<BaselineDropReason, number>>;
  /** Conntrack entries at the end. */
  conntrackEntries: number;
  sink: BaselineSinkStats & {
    /** The peers the sink saw, one per flow/connection, "addr:port" as the sink saw them. */
    peers: string[];
  };
  generator: BaselineGenStats & {
    /** Replies received per flow (validated: right inside address and port). */
    repliesPerFlow: number[];
  };
}

// ---- shared pieces -----------------------------------------------------------------

/** A frame on its way: what a Node developer passes around. */
export interface Packet {
  buf: Buffer;
  len: number;
  /** VLAN id the frame carries on the wire right now (0: untagged). */
  vlan: number;
  /** Which router port it arrives at / left. */
  dev: "inside" | "outside";
}

/** A frame template: bytes built at setup, copied per packet. */
interface Template {
  bytes: Buffer;
  layout: FrameLayout;
}

const GEN_MAC = Buffer.from([0x02, 0x00, 0x00, 0x00, 0x01, 0x01]);
const ROUTER_IN_MAC = Buffer.from([0x02, 0x00, 0x00, 0x00, 0x01, 0xfe]);
const ROUTER_OUT_MAC = Buffer.from([0x02, 0x00, 0x00, 0x00, 0x02, 0xfe]);
const SINK_MAC = Buffer.from([0x02, 0x00, 0x00, 0x00, 0x02, 0x01]);
/** The MAC addresses of the baseline's four ends (read-only by convention). */
export const BASELINE_MACS = { gen: GEN_MAC, routerIn: ROUTER_IN_MAC, routerOut: ROUTER_OUT_MAC, sink: SINK_MAC } as const;
/** The router's MACs as 48-bit numbers, for the destination check. */
const ROUTER_IN_MAC_NUM = ROUTER_IN_MAC.readUIntBE(0, 6);
const ROUTER_OUT_MAC_NUM = ROUTER_OUT_MAC.readUIntBE(0, 6);

function makeTemplate(spec: FrameSpec): Template {
  const { bytes, layout } = buildFrame(spec);
  return { bytes: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length), layout };
}

/** A fresh Buffer with the template's bytes. */
function copyOf(t: Template): Buffer {
  const buf = Buffer.allocUnsafe(t.bytes.length);
  t.bytes.copy(buf);
  return buf;
}

/** Verify the IPv4 header and UDP/TCP checksums of the packet at `ip`. */
function checksumsOk(buf: Buffer, ip: number, ipLen: number): boolean {
  const ihl = (buf[ip] & 0x0f) * 4;
  if (csumFold(csumPartial(buf, ip, ihl, 0)) !== 0) return false;
  const proto = buf[ip + 9];
  const l4 = ip + ihl;
  const l4Len = ipLen - ihl;
  if (proto === IPPROTO_UDP && buf.readUInt16BE(l4 + 6) === 0) return true;
  const saddr = buf.readUInt32BE(ip + 12);
  const daddr = buf.readUInt32BE(ip + 16);
  return csumFold(csumTcpudpNofold(saddr, daddr, l4Len, proto, csumPartial(buf, l4, l4Len, 0))) === 0;
}

/** Where the IP header starts in a frame (after an optional 802.1Q tag). */
function ipOffset(buf: Buffer): number {
  return buf.length >= 18 && buf.readUInt16BE(12) === ETH_P_8021Q ? 18 : 14;
}

// ---- the generator (inside hosts) --------------------------------------------------

type GenTcpState = "closed" | "syn-sent" | "established";

interface GenFlow {
  index: number;
  saddr: number;
  sport: number;
  ipId: number;
  udpSeq: number;
  state: GenTcpState;
  sndNxt: number;
  rcvNxt: number;
  segs: number;
  data: Template[];
  syn: Template | null;
  ack: Template | null;
  replies: number;
}

class Generator {
  readonly t: Traffic;
  readonly flows: GenFlow[] = [];
  readonly stats: BaselineGenStats = {
    tx: 0,
    txBytes: 0,
    txPayload: 0,
    synSent: 0,
    established: 0,
    rx: 0,
    rxBadCsum: 0,
    rxBadAddr: 0,
    rxBadOther: 0,
  };
  readonly fullValidation: boolean;
  readonly corruptAt: Set<number> | null;
  readonly corruptIpByte: number;
  remaining: number;
  dataSent = 0;
  nextFlow = 0;
  sizeCursor = 0;
  rxCount = 0;
  /** Flows that still have to send their SYN. */
  toOpen: GenFlow[] = [];
  /** Flows whose handshake ACK is due. */
  ackQueue: GenFlow[] = [];

  constructor(t: Traffic, packets: number, o: BaselineOptions) {
    this.t = t;
    this.remaining = packets;
    this.fullValidation = o.fullValidation ?? true;
    this.corruptAt = o.corruptAt !== undefined && o.corruptAt.length > 0 ? new Set(o.corruptAt) : null;
    this.corruptIpByte = o.corruptIpByte ?? 8;
    const tcp = t.protoNum === IPPROTO_TCP;
    for (let f = 0; f < t.flows; f++) {
      const base = {
        srcMac: GEN_MAC,
        dstMac: ROUTER_IN_MAC,
        vlan: t.vlan,
        saddr: flowSrcAddr(t, f),
        daddr: t.server,
        proto: t.protoNum,
        sport: flowSrcPort(t, f),
        dport: t.serverPort,
        flow: f,
      };
      const flow: GenFlow = {
        index: f,
        saddr: base.saddr,
        sport: base.sport,
        ipId: 0,
        udpSeq: 0,
        state: "closed",
        sndNxt: tcp ? pktgenIsn(f) : 0,
        rcvNxt: 0,
        segs: 0,
        data: t.sizes.map((size) => makeTemplate({ ...base, frameSize: size, tcpFlags: TCP_FLAG_ACK, seq: 0, ack: 0 })),
        syn: tcp ? makeTemplate({ ...base, frameSize: 58, tcpFlags: TCP_FLAG_SYN, seq: pktgenIsn(f), ack: 0 }) : null,
        ack: tcp ? makeTemplate({ ...base, frameSize: 58, tcpFlags: TCP_FLAG_ACK, seq: 0, ack: 0 }) : null,
        replies: 0,
      };
      this.flows.push(flow);
      if (tcp) this.toOpen.push(flow);
    }
  }

  /** Nothing left to send. */
  get done(): boolean {
    return this.remaining === 0 && this.ackQueue.length === 0 && this.toOpen.length === 0;
  }

  private packet(buf: Buffer): Packet {
    this.stats.tx++;
    this.stats.txBytes += buf.length;
    return { buf, len: buf.length, vlan: this.t.vlan, dev: "inside" };
  }

  /** Copy a template and give the copy the flow's next IP id. */
  private fromTemplate(flow: GenFlow, t: Template): Buffer {
    const buf = copyOf(t);
    const ip = t.layout.ipOff;
    const id = flow.ipId;
    flow.ipId = (id + 1) & 0xffff;
    buf.writeUInt16BE(id, ip + 4);
    csumReplace2(buf, ip + 10, 0, id);
    return buf;
  }

  private seqAck(flow: GenFlow, t: Template, seq: number, ack: number): Buffer {
    const buf = this.fromTemplate(flow, t);
    const th = t.layout.l4Off;
    buf.writeUInt32BE(seq, th + 4);
    csumReplace4(buf, th + 16, 0, seq);
    buf.writeUInt32BE(ack, th + 8);
    csumReplace4(buf, th + 16, 0, ack);
    return buf;
  }

  private udpData(flow: GenFlow, t: Template): Buffer {
    const buf = this.fromTemplate(flow, t);
    const L = t.layout;
    if (L.payloadLen >= 12) {
      const seq = flow.udpSeq;
      flow.udpSeq = (seq + 1) >>> 0;
      buf.writeUInt32BE(seq, L.payloadOff + 8);
      csumReplace4(buf, L.l4Off + 6, 0, seq);
      if (buf.readUInt16BE(L.l4Off + 6) === 0) buf.writeUInt16BE(0xffff, L.l4Off + 6);
    }
    return buf;
  }

  private tcpData(flow: GenFlow, t: Template): Buffer {
    const buf = this.seqAck(flow, t, flow.sndNxt, flow.rcvNxt);
    const th = t.layout.l4Off;
    flow.segs++;
    if (flow.segs % PSH_EVERY === 0) {
      const old = buf.readUInt16BE(th + 12);
      buf[th + 13] = TCP_FLAG_ACK | TCP_FLAG_PSH;
      csumReplace2(buf, th + 16, old, buf.readUInt16BE(th + 12));
    }
    flow.sndNxt = (flow.sndNxt + t.layout.payloadLen) >>> 0;
    return buf;
  }

  /** Up to `max` frames: handshake ACKs, then SYNs, then data. */
  nextBatch(max: number): Packet[] {
    const out: Packet[] = [];
    while (this.ackQueue.length > 0 && out.length < max) {
      const flow = this.ackQueue.shift() as GenFlow;
      const t = flow.ack as Template;
      out.push(this.packet(this.seqAck(flow, t, flow.sndNxt, flow.rcvNxt)));
    }
    while (this.toOpen.length > 0 && out.length < max) {
      const flow = this.toOpen.shift() as GenFlow;
      const t = flow.syn as Template;
      out.push(this.packet(this.fromTemplate(flow, t)));
      flow.sndNxt = (pktgenIsn(flow.index) + 1) >>> 0;
      flow.state = "syn-sent";
      this.stats.synSent++;
    }
    const udp = this.t.protoNum === IPPROTO_UDP;
    const nFlows = this.flows.length;
    const nSizes = this.t.sizes.length;
    while (out.length < max && this.remaining > 0) {
      const flow = this.flows[this.nextFlow] as GenFlow;
      this.nextFlow = (this.nextFlow + 1) % nFlows;
      const t = flow.data[this.sizeCursor] as Template;
      this.sizeCursor = (this.sizeCursor + 1) % nSizes;
      let buf: Buffer;
      if (udp) {
        buf = this.udpData(flow, t);
      } else {
        if (this.stats.established === 0) break;
        if (flow.state !== "established") continue;
        buf = this.tcpData(flow, t);
      }
      if (this.corruptAt?.has(this.dataSent)) buf[t.layout.ipOff + this.corruptIpByte] ^= 0xff;
      this.dataSent++;
      this.remaining--;
      this.stats.txPayload += t.layout.payloadLen;
      out.push(this.packet(buf));
    }
    return out;
  }

  /** A frame from the router: validate it like pktgen.ts does, and react. */
  receive(pkt: Packet): void {
    const buf = pkt.buf;
    const t = this.t;
    this.stats.rx++;
    const ip = ipOffset(buf);
    const vid = ip === 18 ? buf.readUInt16BE(14) & VLAN_VID_MASK : 0;
    const ipLen = buf.length - ip >= 20 ? buf.readUInt16BE(ip + 2) : 0;
    if (vid !== t.vlan || ipLen < 28 || ip + ipLen > buf.length) {
      this.stats.rxBadOther++;
      return;
    }
    if ((this.fullValidation || (this.rxCount++ & 63) === 0) && !checksumsOk(buf, ip, ipLen)) {
      this.stats.rxBadCsum++;
      return;
    }
    const l4 = ip + (buf[ip] & 0x0f) * 4;
    const daddr = buf.readUInt32BE(ip + 16);
    const dport = buf.readUInt16BE(l4 + 2);
    const host = (daddr - t.insideBase) >>> 0;
    const f = (dport - t.sportBase) * t.insideHosts + host;
    const flow = this.flows[f];
    if (
      host >= t.insideHosts ||
      dport < t.sportBase ||
      flow === undefined ||
      buf.readUInt32BE(ip + 12) !== t.server ||
      buf.readUInt16BE(l4) !== t.serverPort
    ) {
      this.stats.rxBadAddr++;
      return;
    }
    if (t.protoNum === IPPROTO_UDP) {
      if (ipLen >= 40 && buf.readUInt32BE(l4 + 8) === STAMP_MAGIC && buf.readUInt16BE(l4 + 12) !== f) {
        this.stats.rxBadAddr++;
        return;
      }
      flow.replies++;
      return;
    }
    const flags = buf[l4 + 13];
    if ((flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) === (TCP_FLAG_SYN | TCP_FLAG_ACK)) {
      if (flow.state === "syn-sent" && buf.readUInt32BE(l4 + 8) === flow.sndNxt) {
        flow.rcvNxt = (buf.readUInt32BE(l4 + 4) + 1) >>> 0;
        flow.state = "established";
        this.stats.established++;
        this.ackQueue.push(flow);
        flow.replies++;
      } else {
        this.stats.rxBadOther++;
      }
    } else if ((flags & TCP_FLAG_ACK) !== 0) {
      // An ACK must not acknowledge data we never sent.
      if (((buf.readUInt32BE(l4 + 8) - flow.sndNxt) | 0) > 0) this.stats.rxBadOther++;
      else flow.replies++;
    }
  }
}

// ---- the router ------------------------------------------------------------------------

/** Parsed IPv4 + L4 headers of a frame (offsets into its buffer). */
interface Headers {
  l3: number;
  ihl: number;
  ipLen: number;
  ttl: number;
  proto: number;
  saddr: number;
  daddr: number;
  l4: number;
  sport: number;
  dport: number;
  tcpFlags: number;
}

interface Tuple {
  saddr: number;
  sport: number;
  daddr: number;
  dport: number;
}

type ConnState = "new" | "syn-sent" | "syn-recv" | "established" | "fin" | "closed";

/** A conntrack entry: reachable under both directions' keys. */
interface Conn {
  proto: number;
  orig: Tuple;
  reply: Tuple;
  origKey: string;
  replyKey: string;
  state: ConnState;
  seenReply: boolean;
  origPackets: number;
  origBytes: number;
  replyPackets: number;
  replyBytes: number;
}

function tupleKey(saddr: number, sport: number, daddr: number, dport: number, proto: number): string {
  return `${saddr}:${sport}->${daddr}:${dport}/${proto}`;
}

/** Parse and validate the IPv4 header at `l3` and the L4 ports behind it. */
function parseIpv4(buf: Buffer, l3: number): Headers | BaselineDropReason {
  if (buf.length < l3 + 20) return "truncated";
  const vihl = buf[l3];
  const ihl = (vihl & 0x0f) * 4;
  if (vihl >> 4 !== 4 || ihl < 20 || buf.length < l3 + ihl) return "ipHeader";
  if (csumFold(csumPartial(buf, l3, ihl, 0)) !== 0) return "ipCsum";
  const ipLen = buf.readUInt16BE(l3 + 2);
  if (ipLen < ihl || l3 + ipLen > buf.length) return "ipHeader";
  if ((buf.readUInt16BE(l3 + 6) & 0x3fff) !== 0) return "fragment";
  const proto = buf[l3 + 9];
  if (proto !== IPPROTO_TCP && proto !== IPPROTO_UDP) return "proto";
  const l4 = l3 + ihl;
  if (ipLen - ihl < (proto === IPPROTO_TCP ? 20 : 8)) return "l4Header";
  return {
    l3,
    ihl,
    ipLen,
    ttl: buf[l3 + 8],
    proto,
    saddr: buf.readUInt32BE(l3 + 12),
    daddr: buf.readUInt32BE(l3 + 16),
    l4,
    sport: buf.readUInt16BE(l4),
    dport: buf.readUInt16BE(l4 + 2),
    tcpFlags: proto === IPPROTO_TCP ? buf[l4 + 13] : 0,
  };
}

/** Recompute the IPv4 header checksum. */
function setIpChecksum(buf: Buffer, l3: number, ihl: number): void {
  buf.writeUInt16BE(0, l3 + 10);
  buf.writeUInt16BE(csumFold(csumPartial(buf, l3, ihl, 0)), l3 + 10);
}

/** Offset of the L4 checksum, or -1 for a UDP datagram without one. */
function l4CsumOffset(buf: Buffer, h: Headers): number {
  if (h.proto === IPPROTO_TCP) return h.l4 + 16;
  return buf.readUInt16BE(h.l4 + 6) === 0 ? -1 : h.l4 + 6;
}

/** Rewrite address (at `addrOff`) and port (at `portOff`) with the L4 checksum updated incrementally. */
function natRewrite(buf: Buffer, h: Headers, addrOff: number, portOff: number, addr: number, port: number): void {
  const oldAddr = buf.readUInt32BE(addrOff);
  const oldPort = buf.readUInt16BE(portOff);
  const c = l4CsumOffset(buf, h);
  if (c >= 0) {
    if (oldAddr !== addr) csumReplace4(buf, c, oldAddr, addr);
    if (oldPort !== port) csumReplace2(buf, c, oldPort, port);
    if (h.proto === IPPROTO_UDP && buf.readUInt16BE(c) === 0) buf.writeUInt16BE(0xffff, c);
  }
  buf.writeUInt32BE(addr, addrOff);
  buf.writeUInt16BE(port, portOff);
}

/**
 * The router on its own (exported for unit tests): `fromInside` untags,
 * tracks and masquerades a frame from the inside VLAN, `fromOutside`
 * reverse-NATs and re-tags a frame from the outside; both return the packet
 * to send on, or null for a drop (counted in `drops` by reason).
 */
export class BaselineRouter {
  readonly insideVlan: number;
  readonly natAddr: number;
  readonly conntrack = new Map<string, Conn>();
  /** Static neighbour table: IPv4 address -> MAC. */
  readonly neighbours = new Map<number, Buffer>();
  readonly drops: Partial<Record<BaselineDropReason, number>> = {};
  droppedOut = 0;
  droppedIn = 0;

  constructor(t: Traffic, natAddr: number) {
    this.insideVlan = t.vlan;
    this.natAddr = natAddr;
    for (let h = 0; h < t.insideHosts; h++) this.neighbours.set((t.insideBase + h) >>> 0, GEN_MAC);
    this.neighbours.set(t.server, SINK_MAC);
  }

  private drop(reason: BaselineDropReason, outbound: boolean): null {
    this.drops[reason] = (this.drops[reason] ?? 0) + 1;
    if (outbound) this.droppedOut++;
    else this.droppedIn++;
    return null;
  }

  /** A free translated port for `h`: its own if free, else the next one (1024..65535). */
  private natPort(h: Headers): number {
    let port = h.sport;
    for (let tries = 0; tries < 65536 - 1024; tries++) {
      if (!this.conntrack.has(tupleKey(h.daddr, h.dport, this.natAddr, port, h.proto))) return port;
      port = port >= 65535 ? 1024 : port + 1;
    }
    return -1;
  }

  private track(ct: Conn, h: Headers, original: boolean): void {
    if (original) {
      ct.origPackets++;
      ct.origBytes += h.ipLen;
    } else {
      ct.replyPackets++;
      ct.replyBytes += h.ipLen;
      ct.seenReply = true;
    }
    if (h.proto !== IPPROTO_TCP) {
      if (ct.seenReply) ct.state = "established";
      return;
    }
    const fl = h.tcpFlags;
    if ((fl & TCP_FLAG_RST) !== 0) ct.state = "closed";
    else if ((fl & TCP_FLAG_FIN) !== 0) ct.state = "fin";
    else if ((fl & TCP_FLAG_SYN) !== 0) {
      if (original && (fl & TCP_FLAG_ACK) === 0) ct.state = "syn-sent";
      else if (!original && (fl & TCP_FLAG_ACK) !== 0 && ct.state === "syn-sent") ct.state = "syn-recv";
    } else if (original && ct.state === "syn-recv" && (fl & TCP_FLAG_ACK) !== 0) {
      ct.state = "established";
    }
  }

  /** Inside -> outside: untag, conntrack, masquerade, forward. */
  fromInside(pkt: Packet): Packet | null {
    let buf = pkt.buf;
    if (buf.length < 14) return this.drop("truncated", true);
    if (buf.readUIntBE(0, 6) !== ROUTER_IN_MAC_NUM) return this.drop("otherHost", true);
    let type = buf.readUInt16BE(12);
    let vlan = 0;
    if (type === ETH_P_8021Q) {
      if (buf.length < 18) return this.drop("truncated", true);
      vlan = buf.readUInt16BE(14) & VLAN_VID_MASK;
      type = buf.readUInt16BE(16);
      // Strip the tag: the MACs move over it, the frame becomes a view 4 bytes in.
      buf.copyWithin(4, 0, 12);
      buf = buf.subarray(4);
    }
    if (vlan !== this.insideVlan) return this.drop("vlan", true);
    if (type !== ETH_P_IP) return this.drop("notIpv4", true);
    const h = parseIpv4(buf, 14);
    if (typeof h === "string") return this.drop(h, true);
    if (h.ttl <= 1) return this.drop("ttl", true);
    const nextHop = this.neighbours.get(h.daddr);
    if (nextHop === undefined) return this.drop("noRoute", true);

    const key = tupleKey(h.saddr, h.sport, h.daddr, h.dport, h.proto);
    let ct = this.conntrack.get(key);
    if (ct === undefined) {
      const port = this.natPort(h);
      if (port < 0) return this.drop("natPortsExhausted", true);
      const orig = { saddr: h.saddr, sport: h.sport, daddr: h.daddr, dport: h.dport };
      const reply = { saddr: h.daddr, sport: h.dport, daddr: this.natAddr, dport: port };
      ct = {
        proto: h.proto,
        orig,
        reply,
        origKey: key,
        replyKey: tupleKey(reply.saddr, reply.sport, reply.daddr, reply.dport, h.proto),
        state: "new",
        seenReply: false,
        origPackets: 0,
        origBytes: 0,
        replyPackets: 0,
        replyBytes: 0,
      };
      this.conntrack.set(key, ct);
      this.conntrack.set(ct.replyKey, ct);
    } else if (ct.origKey !== key) {
      // Our own translated tuple arriving from the inside: not a flow of ours.
      return this.drop("noConntrack", true);
    }
    this.track(ct, h, true);

    // SNAT: source := natAddr:port (reply tuple's destination).
    natRewrite(buf, h, h.l3 + 12, h.l4, ct.reply.daddr, ct.reply.dport);
    buf[h.l3 + 8] = h.ttl - 1;
    setIpChecksum(buf, h.l3, h.ihl);
    nextHop.copy(buf, 0);
    ROUTER_OUT_MAC.copy(buf, 6);
    if (buf.length > 14 + h.ipLen) buf = buf.subarray(0, 14 + h.ipLen);
    pkt.buf = buf;
    pkt.len = buf.length;
    pkt.vlan = 0;
    pkt.dev = "outside";
    return pkt;
  }

  /** Outside -> inside: reverse NAT, tag, forward. */
  fromOutside(pkt: Packet): Packet | null {
    const buf = pkt.buf;
    if (buf.length < 14) return this.drop("truncated", false);
    if (buf.readUIntBE(0, 6) !== ROUTER_OUT_MAC_NUM) return this.drop("otherHost", false);
    const type = buf.readUInt16BE(12);
    if (type === ETH_P_8021Q) return this.drop("vlan", false);
    if (type !== ETH_P_IP) return this.drop("notIpv4", false);
    const h = parseIpv4(buf, 14);
    if (typeof h === "string") return this.drop(h, false);
    if (h.ttl <= 1) return this.drop("ttl", false);
    const key = tupleKey(h.saddr, h.sport, h.daddr, h.dport, h.proto);
    const ct = this.conntrack.get(key);
    if (ct === undefined || ct.replyKey !== key) return this.drop("noConntrack", false);
    const nextHop = this.neighbours.get(ct.orig.saddr);
    if (nextHop === undefined) return this.drop("noRoute", false);
    this.track(ct, h, false);

    // Reverse NAT: destination := the inside host and port.
    natRewrite(buf, h, h.l3 + 16, h.l4 + 2, ct.orig.saddr, ct.orig.sport);
    buf[h.l3 + 8] = h.ttl - 1;
    setIpChecksum(buf, h.l3, h.ihl);
    const frameLen = 14 + h.ipLen;
    let out: Buffer;
    if (this.insideVlan !== 0) {
      // A Buffer has no headroom: the tagged frame is a new one.
      out = Buffer.allocUnsafe(frameLen + 4);
      nextHop.copy(out, 0);
      ROUTER_IN_MAC.copy(out, 6);
      out.writeUInt16BE(ETH_P_8021Q, 12);
      out.writeUInt16BE(this.insideVlan, 14);
      buf.copy(out, 16, 12, frameLen);
    } else {
      out = buf.length > frameLen ? buf.subarray(0, frameLen) : buf;
      nextHop.copy(out, 0);
      ROUTER_IN_MAC.copy(out, 6);
    }
    pkt.buf = out;
    pkt.len = out.length;
    pkt.vlan = this.insideVlan;
    pkt.dev = "inside";
    return pkt;
  }
}

// ---- the sink (outside server) -------------------------------------------------------

interface UdpFlowState {
  peer: string;
  natPort: number;
  expect: number;
  received: number;
  reply: Template;
}

interface TcpConnState {
  index: number;
  peer: string;
  rcvNxt: number;
  unacked: number;
  synAck: Template;
  ack: Template;
}

class Sink {
  readonly t: Traffic;
  readonly natAddr: number;
  readonly fullValidation: boolean;
  readonly udpFlows = new Map<number, UdpFlowState>();
  readonly tcpConns = new Map<number, TcpConnState>();
  readonly stats: BaselineSinkStats = {
    rx: 0,
    rxBytes: 0,
    rxPayload: 0,
    badCsum: 0,
    badAddr: 0,
    badSeq: 0,
    badOther: 0,
    seqGaps: 0,
    tx: 0,
    conns: 0,
  };
  rxCount = 0;

  constructor(t: Traffic, natAddr: number, fullValidation: boolean) {
    this.t = t;
    this.natAddr = natAddr;
    this.fullValidation = fullValidation;
  }

  private template(dport: number, flags: number, flow: number): Template {
    return makeTemplate({
      srcMac: SINK_MAC,
      dstMac: ROUTER_OUT_MAC,
      vlan: 0,
      saddr: this.t.server,
      daddr: this.natAddr,
      proto: this.t.protoNum,
      sport: this.t.serverPort,
      dport,
      frameSize: this.t.protoNum === IPPROTO_UDP ? 64 : 58,
      tcpFlags: flags,
      seq: 0,
      ack: 0,
      flow,
    });
  }

  private reply(t: Template, id: number, tcp: boolean, seq: number, ack: number): Packet {
    const buf = copyOf(t);
    const ip = t.layout.ipOff;
    buf.writeUInt16BE(id, ip + 4);
    csumReplace2(buf, ip + 10, 0, id);
    if (tcp) {
      const th = t.layout.l4Off;
      buf.writeUInt32BE(seq, th + 4);
      csumReplace4(buf, th + 16, 0, seq);
      buf.writeUInt32BE(ack, th + 8);
      csumReplace4(buf, th + 16, 0, ack);
    }
    this.stats.tx++;
    return { buf, len: buf.length, vlan: 0, dev: "outside" };
  }

  /** Validate a frame from the router; return the answer, if any. */
  receive(pkt: Packet): Packet | null {
    const buf = pkt.buf;
    const st = this.stats;
    const t = this.t;
    st.rx++;
    st.rxBytes += pkt.len;
    const ip = ipOffset(buf);
    const ipLen = buf.length - ip >= 20 ? buf.readUInt16BE(ip + 2) : 0;
    if (ipLen < 28 || ip + ipLen > buf.length) {
      st.badOther++;
      return null;
    }
    if ((this.fullValidation || (this.rxCount++ & 63) === 0) && !checksumsOk(buf, ip, ipLen)) {
      st.badCsum++;
      return null;
    }
    const l4 = ip + (buf[ip] & 0x0f) * 4;
    const saddr = buf.readUInt32BE(ip + 12);
    const sport = buf.readUInt16BE(l4);
    if (saddr !== this.natAddr || buf.readUInt32BE(ip + 16) !== t.server || buf.readUInt16BE(l4 + 2) !== t.serverPort) {
      st.badAddr++;
      return null;
    }
    const id = buf.readUInt16BE(ip + 4);
    if (t.protoNum === IPPROTO_UDP) {
      const pay = l4 + 8;
      if (ipLen < 40 || buf.readUInt32BE(pay) !== STAMP_MAGIC) {
        st.badOther++;
        return null;
      }
      const f = buf.readUInt16BE(pay + 4);
      if (f >= t.flows) {
        st.badOther++;
        return null;
      }
      let flow = this.udpFlows.get(f);
      if (flow === undefined) {
        flow = { peer: `${ipv4ToString(saddr)}:${sport}`, natPort: sport, expect: 0, received: 0, reply: this.template(sport, 0, f) };
        this.udpFlows.set(f, flow);
      } else if (flow.natPort !== sport) {
        st.badAddr++;
      }
      const seq = buf.readUInt32BE(pay + 8);
      if (seq !== flow.expect) {
        if (((seq - flow.expect) | 0) > 0) st.seqGaps++;
        else st.badSeq++;
      }
      flow.expect = (seq + 1) >>> 0;
      st.rxPayload += ipLen - 28;
      flow.received++;
      if (t.udpReplyEvery !== 0 && flow.received % t.udpReplyEvery === 0) return this.reply(flow.reply, id, false, 0, 0);
      return null;
    }
    // TCP
    const flags = buf[l4 + 13];
    const doff = (buf[l4 + 12] >> 4) * 4;
    const seq = buf.readUInt32BE(l4 + 4);
    const payload = ipLen - (l4 - ip) - doff;
    let conn = this.tcpConns.get(sport);
    if ((flags & TCP_FLAG_SYN) !== 0) {
      if (conn === undefined) {
        if (this.tcpConns.size >= t.flows) {
          st.badOther++;
          return null;
        }
        const c = this.tcpConns.size;
        conn = {
          index: c,
          peer: `${ipv4ToString(saddr)}:${sport}`,
          rcvNxt: 0,
          unacked: 0,
          synAck: this.template(sport, TCP_FLAG_SYN | TCP_FLAG_ACK, c),
          ack: this.template(sport, TCP_FLAG_ACK, c),
        };
        this.tcpConns.set(sport, conn);
        st.conns++;
      }
      conn.rcvNxt = (seq + 1) >>> 0;
      return this.reply(conn.synAck, id, true, sinkIsn(conn.index), conn.rcvNxt);
    }
    if (conn === undefined || (flags & (TCP_FLAG_RST | TCP_FLAG_FIN)) !== 0) {
      if (conn === undefined) st.badAddr++;
      return null;
    }
    if (payload > 0) {
      if (seq !== conn.rcvNxt) {
        if (((seq - conn.rcvNxt) | 0) > 0) st.seqGaps++;
        else st.badSeq++;
      }
      conn.rcvNxt = (seq + payload) >>> 0;
      st.rxPayload += payload;
      conn.unacked++;
      if (conn.unacked >= 2 || (flags & TCP_FLAG_PSH) !== 0) {
        conn.unacked = 0;
        return this.reply(conn.ack, id, true, (sinkIsn(conn.index) + 1) >>> 0, conn.rcvNxt);
      }
    }
    return null;
  }

  peers(): string[] {
    const out: string[] = [];
    for (const f of this.udpFlows.values()) out.push(f.peer);
    for (const c of this.tcpConns.values()) out.push(c.peer);
    return out;
  }
}

// ---- the run -------------------------------------------------------------------------------

interface Pipeline {
  gen: Generator;
  router: BaselineRouter;
  sink: Sink;
  delivered: number;
  replies: number;
  repliesDelivered: number;
  stalled: boolean;
}

function pipelineCreate(t: Traffic, packets: number, natAddr: number, o: BaselineOptions): Pipeline {
  return {
    gen: new Generator(t, packets, o),
    router: new BaselineRouter(t, natAddr),
    sink: new Sink(t, natAddr, o.fullValidation ?? true),
    delivered: 0,
    replies: 0,
    repliesDelivered: 0,
    stalled: false,
  };
}

/** Run the pipeline until the generator has sent everything. */
function pipelineRun(p: Pipeline, batch: number): void {
  const { gen, router, sink } = p;
  while (!gen.done) {
    const burst = gen.nextBatch(batch);
    if (burst.length === 0) {
      p.stalled = true;
      return;
    }
    const toSink: Packet[] = [];
    for (const pkt of burst) {
      const out = router.fromInside(pkt);
      if (out !== null) toSink.push(out);
    }
    p.delivered += toSink.length;
    const replies: Packet[] = [];
    for (const pkt of toSink) {
      const r = sink.receive(pkt);
      if (r !== null) replies.push(r);
    }
    p.replies += replies.length;
    for (const r of replies) {
      const back = router.fromOutside(r);
      if (back !== null) {
        p.repliesDelivered++;
        gen.receive(back);
      }
    }
  }
}

/**
 * Run the baseline: an untimed warm-up on its own pipeline, then a fresh
 * pipeline (set up untimed) through `packets` data packets, timed, with GCs
 * counted by `v8.GCProfiler` around the loop.
 */
export function runBaseline(opts: BaselineOptions): BaselineResult {
  const t = opts.traffic;
  if (!Number.isInteger(opts.packets) || opts.packets < 0) throw new RangeError(`baseline: packets ${opts.packets} must be an integer >= 0`);
  const batch = opts.batch ?? 32;
  if (!Number.isInteger(batch) || batch < 1) throw new RangeError(`baseline: batch ${batch} must be an integer >= 1`);
  const byte = opts.corruptIpByte ?? 8;
  if (!Number.isInteger(byte) || byte < 0 || byte > 19) throw new RangeError(`baseline: corruptIpByte ${byte} must be 0..19`);
  const natAddr = ipv4(opts.natAddr ?? "203.0.113.1");
  const warmup = opts.warmup ?? Math.min(opts.packets, 20_000);
  if (!Number.isInteger(warmup) || warmup < 0) throw new RangeError(`baseline: warmup ${warmup} must be an integer >= 0`);
  if (warmup > 0) pipelineRun(pipelineCreate(t, warmup, natAddr, { ...opts, corruptAt: [] }), batch);

  const p = pipelineCreate(t, opts.packets, natAddr, opts);
  const prof = new GCProfiler();
  const heap0 = process.memoryUsage().heapUsed;
  prof.start();
  const t0 = process.hrtime.bigint();
  pipelineRun(p, batch);
  const ns = Number(process.hrtime.bigint() - t0);
  const gcs = prof.stop().statistics;
  const heap1 = process.memoryUsage().heapUsed;

  const g = p.gen.stats;
  const s = p.sink.stats;
  const seconds = ns / 1e9;
  const generated = g.tx;
  const per = (x: number) => (seconds > 0 ? x / seconds : 0);
  return {
    packets: opts.packets,
    generated,
    bytes: g.txBytes,
    seconds,
    mpps: per(generated) / 1e6,
    gbps: per(g.txBytes * 8) / 1e9,
    nsPerPacket: generated > 0 ? ns / generated : 0,
    routedMpps: per(generated + p.replies) / 1e6,
    gcCount: gcs.length,
    gcMs: gcs.reduce((a, e) => a + e.cost, 0) / 1000,
    heapGrowthBytes: heap1 - heap0,
    delivered: p.delivered,
    dropped: p.router.droppedOut,
    replies: p.replies,
    repliesDelivered: p.repliesDelivered,
    repliesDropped: p.router.droppedIn,
    validationErrors: s.badCsum + s.badAddr + s.badSeq + s.badOther + g.rxBadCsum + g.rxBadAddr + g.rxBadOther,
    stalled: p.stalled,
    dropReasons: { ...p.router.drops },
    conntrackEntries: new Set(p.router.conntrack.values()).size,
    sink: { ...s, peers: p.sink.peers() },
    generator: { ...g, repliesPerFlow: p.gen.flows.map((f) => f.replies) },
  };
}
