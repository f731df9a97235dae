/**
 * The sink: the outside server. It receives what the router sends out,
 * validates every frame (checksums, the translated source address, a stable
 * translated port per flow, in-order sequence numbers) and answers like a
 * server would: SYN-ACK to a SYN, an ACK every second data segment and on
 * PSH, and for UDP a reply to every n-th datagram of a flow. Replies are
 * built from its own page pool, so they cost what a real host's would.
 *
 * @module
 */

import { be16, be32, be32s, putBe16, putBe32 } from "../skb/access.js";
import type { SkbCpu } from "../skb/cpu.js";
import { napiConsumeSkb } from "../skb/free.js";
import { SKB_DATA, SKB_LEN } from "../skb/layout.js";
import { csumReplace2, csumReplace4 } from "../net/checksum.js";
import { ETH_P_8021Q, IPPROTO_UDP, TCP_FLAG_ACK, TCP_FLAG_FIN, TCP_FLAG_PSH, TCP_FLAG_RST, TCP_FLAG_SYN } from "../net/proto.js";
import type { PagePool } from "../mm/page-pool.js";
import { devQueueXmit, type NetDevice } from "../core/netdev.js";
import { type ArenaTemplate, hostFrameSkb, hostPoolCreate, hostPoolDestroy, hostChecksumsOk, templateCreate, templateFree } from "./host-common.js";
import { STAMP_MAGIC, type Traffic } from "./traffic.js";
import { vethTxRoom } from "./veth.js";

/** Server initial sequence number for connection slot c. */
export function sinkIsn(c: number): number {
  return (0x5000_0000 + c * 0x0010_0000) | 0;
}

/** Counter indices of {@link Sink.stats}. */
export const SK_RX = 0;
export const SK_RX_BYTES = 1;
export const SK_RX_PAYLOAD = 2;
export const SK_BAD_CSUM = 3;
export const SK_BAD_ADDR = 4;
export const SK_BAD_SEQ = 5;
export const SK_BAD_OTHER = 6;
export const SK_TX = 7;
export const SK_TX_FAIL = 8;
export const SK_CONNS = 9;
export const SK_STAT_MAX = 10;
export const SK_STAT_NAMES = [
  "rx",
  "rxBytes",
  "rxPayload",
  "badCsum",
  "badAddr",
  "badSeq",
  "badOther",
  "tx",
  "txFail",
  "conns",
] as const;

/** Options of the sink. */
export interface SinkOptions {
  /** The address the router masquerades to (expected source of everything). */
  natAddr: number;
  /** Router MAC on the sink's side (destination of replies). */
  routerMac: Uint8Array;
  /** Verify every frame's checksums (true) or every 64th (false: benchmarks). */
  fullValidation?: boolean;
}

/** The server of one CPU. */
export class Sink {
  readonly cpu: SkbCpu;
  readonly t: Traffic;
  readonly dev: NetDevice;
  readonly pool: PagePool;
  readonly natAddr: number;
  readonly routerMac: Uint8Array;
  readonly fullValidation: boolean;
  readonly stats = new Float64Array(SK_STAT_MAX);
  /** TCP: connection slot + 1 by translated source port (0 = none). */
  readonly connByPort = new Int32Array(65536);
  /** UDP: translated port by flow (0 = not seen), expected stamp sequence. */
  readonly natPort: Uint16Array;
  /** Sequence state as signed int32 (no heap numbers past 2^31). */
  readonly expect: Int32Array;
  /** Per connection (TCP) / flow (UDP) reply templates and counters. */
  readonly replyTmpl: (ArenaTemplate | undefined)[];
  readonly synAck: (ArenaTemplate | undefined)[];
  readonly rcvNxt: Int32Array;
  readonly unacked: Uint32Array;
  readonly rxPerFlow: Uint32Array;
  readonly connPort: Uint16Array;
  conns = 0;
  rxCount = 0;

  constructor(cpu: SkbCpu, t: Traffic, dev: NetDevice, pool: PagePool, o: SinkOptions) {
    this.cpu = cpu;
    this.t = t;
    this.dev = dev;
    this.pool = pool;
    this.natAddr = o.natAddr;
    this.routerMac = o.routerMac;
    this.fullValidation = o.fullValidation ?? true;
    this.natPort = new Uint16Array(t.flows);
    this.expect = new Int32Array(t.flows);
    this.replyTmpl = new Array<ArenaTemplate | undefined>(t.flows).fill(undefined);
    this.synAck = new Array<ArenaTemplate | undefined>(t.flows).fill(undefined);
    this.rcvNxt = new Int32Array(t.flows);
    this.unacked = new Uint32Array(t.flows);
    this.rxPerFlow = new Uint32Array(t.flows);
    this.connPort = new Uint16Array(t.flows);
  }
}

/** Create the sink on veth end `dev`. */
export function sinkCreate(cpu: SkbCpu, t: Traffic, dev: NetDevice, o: SinkOptions): Sink {
  return new Sink(cpu, t, dev, hostPoolCreate(cpu), o);
}

function reply(sk: Sink, cpu: SkbCpu, t: ArenaTemplate, id: number, seq: number, ack: number, tcp: boolean): void {
  if (vethTxRoom(sk.dev) <= 0) {
    sk.stats[SK_TX_FAIL]++;
    return;
  }
  const skb = hostFrameSkb(cpu, sk.pool, t);
  if (skb === 0) {
    sk.stats[SK_TX_FAIL]++;
    return;
  }
  const u8 = cpu.u8;
  const data = cpu.u32[(skb + SKB_DATA) >>> 2] as number;
  const L = t.layout;
  putBe16(u8, data + L.ipOff + 4, id);
  csumReplace2(u8, data + L.ipOff + 10, 0, id);
  if (tcp) {
    const th = data + L.l4Off;
    putBe32(u8, th + 4, seq);
    csumReplace4(u8, th + 16, 0, seq);
    putBe32(u8, th + 8, ack);
    csumReplace4(u8, th + 16, 0, ack);
  }
  sk.stats[SK_TX]++;
  devQueueXmit(cpu, sk.dev, skb);
}

function newTemplate(sk: Sink, cpu: SkbCpu, dport: number, flags: number, flow: number): ArenaTemplate {
  return templateCreate(cpu, {
    srcMac: sk.dev.mac,
    dstMac: sk.routerMac,
    vlan: 0,
    saddr: sk.t.server,
    daddr: sk.natAddr,
    proto: sk.t.protoNum,
    sport: sk.t.serverPort,
    dport,
    frameSize: sk.t.protoNum === IPPROTO_UDP ? 64 : 58,
    tcpFlags: flags,
    seq: 0,
    ack: 0,
    flow,
  });
}

/** The sink's receive hook: validate, answer, consume. */
export function sinkRecv(sk: Sink, cpu: SkbCpu, skb: number): void {
  const u8 = cpu.u8;
  const u32 = cpu.u32;
  const data = u32[(skb + SKB_DATA) >>> 2] as number;
  const len = u32[(skb + SKB_LEN) >>> 2] as number;
  sk.stats[SK_RX]++;
  sk.stats[SK_RX_BYTES] += len;
  let ip = data + 14;
  if (len >= 18 && be16(u8, data + 12) === ETH_P_8021Q) ip += 4;
  const ipLen = len - (ip - data) >= 20 ? be16(u8, ip + 2) : 0;
  if (ipLen < 28 || ip - data + ipLen > len) {
    sk.stats[SK_BAD_OTHER]++;
    napiConsumeSkb(cpu, skb, 1);
    return;
  }
  if ((sk.fullValidation || (sk.rxCount++ & 63) === 0) && !hostChecksumsOk(cpu, skb, ip - data, ipLen)) {
    sk.stats[SK_BAD_CSUM]++;
    napiConsumeSkb(cpu, skb, 1);
    return;
  }
  const t = sk.t;
  const l4 = ip + 20;
  const sport = be16(u8, l4);
  if (be32s(u8, ip + 12) !== (sk.natAddr | 0) || be32s(u8, ip + 16) !== (t.server | 0) || be16(u8, l4 + 2) !== t.serverPort) {
    sk.stats[SK_BAD_ADDR]++;
    napiConsumeSkb(cpu, skb, 1);
    return;
  }
  const id = be16(u8, ip + 4);
  if ((u8[ip + 9] as number) !== t.protoNum) {
    // Not this server's protocol (e.g. UDP at a TCP server): no state for it.
    sk.stats[SK_BAD_OTHER]++;
    napiConsumeSkb(cpu, skb, 1);
    return;
  }
  if (t.protoNum === IPPROTO_UDP) {
    const pay = l4 + 8;
    if (ipLen < 40 || be32(u8, pay) !== STAMP_MAGIC) {
      sk.stats[SK_BAD_OTHER]++;
      napiConsumeSkb(cpu, skb, 1);
      return;
    }
    const f = be16(u8, pay + 4);
    if (f >= t.flows) {
      sk.stats[SK_BAD_OTHER]++;
      napiConsumeSkb(cpu, skb, 1);
      return;
    }
    if (sk.natPort[f] === 0) {
      sk.natPort[f] = sport;
      sk.replyTmpl[f] = newTemplate(sk, cpu, sport, 0, f);
    } else if (sk.natPort[f] !== sport) {
      sk.stats[SK_BAD_ADDR]++;
    }
    const seq = be32s(u8, pay + 8);
    if (seq !== sk.expect[f]) sk.stats[SK_BAD_SEQ]++;
    sk.expect[f] = (seq + 1) | 0;
    sk.stats[SK_RX_PAYLOAD] += ipLen - 28;
    const n = (sk.rxPerFlow[f] = (sk.rxPerFlow[f] as number) + 1);
    napiConsumeSkb(cpu, skb, 1);
    if (t.udpReplyEvery !== 0 && n % t.udpReplyEvery === 0) reply(sk, cpu, sk.replyTmpl[f] as ArenaTemplate, id, 0, 0, false);
    return;
  }
  // TCP
  const flags = u8[l4 + 13] as number;
  const doff = ((u8[l4 + 12] as number) >>> 4) * 4;
  const seq = be32s(u8, l4 + 4);
  const payload = ipLen - 20 - doff;
  let c = (sk.connByPort[sport] as number) - 1;
  if ((flags & TCP_FLAG_SYN) !== 0) {
    if (c < 0) {
      if (sk.conns >= t.flows) {
        sk.stats[SK_BAD_OTHER]++;
        napiConsumeSkb(cpu, skb, 1);
        return;
      }
      c = sk.conns++;
      sk.connByPort[sport] = c + 1;
      sk.connPort[c] = sport;
      sk.synAck[c] = newTemplate(sk, cpu, sport, TCP_FLAG_SYN | TCP_FLAG_ACK, c);
      sk.replyTmpl[c] = newTemplate(sk, cpu, sport, TCP_FLAG_ACK, c);
      sk.stats[SK_CONNS]++;
    }
    sk.rcvNxt[c] = (seq + 1) | 0;
    napiConsumeSkb(cpu, skb, 1);
    reply(sk, cpu, sk.synAck[c] as ArenaTemplate, id, sinkIsn(c), sk.rcvNxt[c] as number, true);
    return;
  }
  if (c < 0 || (flags & (TCP_FLAG_RST | TCP_FLAG_FIN)) !== 0) {
    if (c < 0) sk.stats[SK_BAD_ADDR]++;
    napiConsumeSkb(cpu, skb, 1);
    return;
  }
  if (payload > 0) {
    if (seq !== sk.rcvNxt[c]) sk.stats[SK_BAD_SEQ]++;
    sk.rcvNxt[c] = (seq + payload) | 0;
    sk.stats[SK_RX_PAYLOAD] += payload;
    const un = (sk.unacked[c] = (sk.unacked[c] as number) + 1);
    napiConsumeSkb(cpu, skb, 1);
    if (un >= 2 || (flags & TCP_FLAG_PSH) !== 0) {
      sk.unacked[c] = 0;
      reply(sk, cpu, sk.replyTmpl[c] as ArenaTemplate, id, (sinkIsn(c) + 1) | 0, sk.rcvNxt[c] as number, true);
    }
    return;
  }
  napiConsumeSkb(cpu, skb, 1);
}

/** Counters as an object (allocates). */
export function sinkStats(sk: Sink): Record<(typeof SK_STAT_NAMES)[number], number> {
  const o = {} as Record<string, number>;
  SK_STAT_NAMES.forEach((n, i) => {
    o[n] = sk.stats[i] as number;
  });
  return o as Record<(typeof SK_STAT_NAMES)[number], number>;
}

/** Free templates and the pool (teardown). */
export function sinkDestroy(sk: Sink): void {
  for (const t of [...sk.replyTmpl, ...sk.synAck]) if (t !== undefined) templateFree(sk.cpu, t);
  hostPoolDestroy(sk.cpu, sk.pool);
}
