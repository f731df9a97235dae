/**
 * pktgen: the inside hosts. A traffic source attached to one end of a veth
 * pair, with its own NAPI instance: each poll writes up to `budget` frames
 * into page-pool pages (copy of a per-flow template plus incremental
 * checksum patches: IP id, UDP stamp sequence, TCP seq/ack), builds skbs
 * around them with `napiBuildSkb`, and transmits them. Transmission stops
 * when the peer's ring is full (backpressure), so nothing is dropped for
 * want of room. Replies arriving on the veth end are validated and consumed.
 *
 * TCP flows are real: SYN, then on the SYN-ACK (after the router's reverse
 * NAT) an ACK and data segments whose sequence numbers advance, PSH every
 * 44 segments (64 KiB), so GRO and conntrack see real TCP.
 *
 * @module
 */

import { be16, be32, be32s, putBe16, putBe32 } from "../skb/access.js";
import type { SkbCpu } from "../skb/cpu.js";
import { napiConsumeSkb } from "../skb/free.js";
import { SKB_DATA, SKB_LEN } from "../skb/layout.js";
import { csumReplace2, csumReplace4 } from "../net/checksum.js";
import { ETH_P_8021Q, IPPROTO_UDP, TCP_FLAG_ACK, TCP_FLAG_PSH, TCP_FLAG_SYN } from "../net/proto.js";
import type { PagePool } from "../mm/page-pool.js";
import { devQueueXmit, type NetDevice, type NetNamespace } from "../core/netdev.js";
import { type NapiStruct, napiCompleteDone, netifNapiAdd, type Softnet } from "../core/napi.js";
import {
  type ArenaTemplate,
  hostFrameSkb,
  hostPoolCreate,
  hostPoolDestroy,
  hostChecksumsOk,
  templateCreate,
  templateFree,
} from "./host-common.js";
import { flowSrcAddr, flowSrcPort, STAMP_MAGIC, type Traffic } from "./traffic.js";
import { vethTxRoom } from "./veth.js";

/** TCP flow states of the generator. */
const T_CLOSED = 0;
const T_SYN_SENT = 1;
const T_ESTABLISHED = 2;

/** Initial send sequence number of flow f (deterministic, spread out). */
export function pktgenIsn(f: number): number {
  return (0x1000_0000 + f * 0x0100_0000) >>> 0;
}

/** Segments between PSH flags (64 KiB of 1460-byte segments). */
export const PSH_EVERY = 44;

/** Counter indices of {@link Pktgen.stats}. */
export const PG_TX = 0;
export const PG_TX_BYTES = 1;
export const PG_ALLOC_FAIL = 2;
export const PG_RX = 3;
export const PG_RX_BAD_CSUM = 4;
export const PG_RX_BAD_ADDR = 5;
export const PG_RX_BAD_OTHER = 6;
export const PG_SYN_SENT = 7;
export const PG_ESTABLISHED = 8;
export const PG_TX_PAYLOAD = 9;
export const PG_STAT_MAX = 10;
export const PG_STAT_NAMES = [
  "tx",
  "txBytes",
  "allocFail",
  "rx",
  "rxBadCsum",
  "rxBadAddr",
  "rxBadOther",
  "synSent",
  "established",
  "txPayload",
] as const;

/** Options of the generator. */
export interface PktgenOptions {
  /** Router MAC (destination of every frame). */
  routerMac: Uint8Array;
  /** Verify every reply's checksums (true), or every 64th (false: benchmarks). */
  fullValidation?: boolean;
  /** The flows this generator owns (default: all); e.g. the flows RSS gives its worker. */
  flows?: readonly number[];
}

/** The generator of one CPU. */
export class Pktgen {
  readonly cpu: SkbCpu;
  readonly t: Traffic;
  readonly dev: NetDevice;
  readonly napi: NapiStruct;
  readonly pool: PagePool;
  readonly nSizes: number;
  /** Data templates, index f * nSizes + z. */
  readonly tmpl: ArenaTemplate[];
  /** TCP SYN / ACK templates per flow. */
  readonly syn: ArenaTemplate[];
  readonly pureAck: ArenaTemplate[];
  readonly stats = new Float64Array(PG_STAT_MAX);
  readonly ipId: Uint16Array;
  readonly seqNo: Uint32Array;
  readonly state: Uint8Array;
  /** TCP sequence state as signed int32 (no heap numbers when it passes 2^31). */
  readonly sndNxt: Int32Array;
  readonly rcvNxt: Int32Array;
  readonly segs: Uint32Array;
  /** Packets left to send (Infinity: until told to stop). */
  remaining = 0;
  nextFlow = 0;
  /** Flows this generator sends, and how many. */
  readonly active: Int32Array;
  readonly nActive: number;
  sizeCursor = 0;
  established = 0;
  /** Flows waiting to send their handshake ACK. */
  readonly ackPending: Uint32Array;
  ackHead = 0;
  ackTail = 0;
  readonly fullValidation: boolean;
  rxCount = 0;

  constructor(cpu: SkbCpu, t: Traffic, dev: NetDevice, napi: NapiStruct, pool: PagePool, o: PktgenOptions) {
    this.cpu = cpu;
    this.t = t;
    this.dev = dev;
    this.napi = napi;
    this.pool = pool;
    this.nSizes = t.sizes.length;
    this.fullValidation = o.fullValidation ?? true;
    this.ipId = new Uint16Array(t.flows);
    this.seqNo = new Uint32Array(t.flows);
    this.state = new Uint8Array(t.flows);
    this.sndNxt = new Int32Array(t.flows);
    this.rcvNxt = new Int32Array(t.flows);
    this.segs = new Uint32Array(t.flows);
    this.ackPending = new Uint32Array(t.flows + 1);
    const own = o.flows ?? Array.from({ length: t.flows }, (_, i) => i);
    for (const f of own) {
      if (!Number.isInteger(f) || f < 0 || f >= t.flows) throw new RangeError(`pktgen: flow ${f} not in 0..${t.flows - 1}`);
    }
    this.active = Int32Array.from(own);
    this.nActive = own.length;
    this.tmpl = [];
    this.syn = [];
    this.pureAck = [];
    const tcp = t.proto === "tcp";
    for (let f = 0; f < t.flows; f++) {
      const base = {
        srcMac: dev.mac,
        dstMac: o.routerMac,
        vlan: t.vlan,
        saddr: flowSrcAddr(t, f),
        daddr: t.server,
        proto: t.protoNum,
        sport: flowSrcPort(t, f),
        dport: t.serverPort,
        flow: f,
      };
      for (const size of t.sizes) {
        this.tmpl.push(templateCreate(cpu, { ...base, frameSize: size, tcpFlags: TCP_FLAG_ACK, seq: 0, ack: 0 }));
      }
      if (tcp) {
        this.syn.push(templateCreate(cpu, { ...base, frameSize: 58, tcpFlags: TCP_FLAG_SYN, seq: pktgenIsn(f), ack: 0 }));
        this.pureAck.push(templateCreate(cpu, { ...base, frameSize: 58, tcpFlags: TCP_FLAG_ACK, seq: 0, ack: 0 }));
        this.sndNxt[f] = pktgenIsn(f);
      }
    }
  }
}

/** Create a generator on veth end `dev` (its replies arrive there too). */
export function pktgenCreate(ns: NetNamespace, sd: Softnet, dev: NetDevice, t: Traffic, o: PktgenOptions): Pktgen {
  const ctl = ns.register({ name: `pktgen-${dev.name}`, kind: "pktgen" });
  ctl.up = true;
  const pool = hostPoolCreate(sd.cpu);
  let pg: Pktgen | null = null;
  const napi = netifNapiAdd(sd, ctl, (cpu, n, budget) => pktgenPoll(pg as Pktgen, cpu, n, budget));
  pg = new Pktgen(sd.cpu, t, dev, napi, pool, o);
  return pg;
}

/** Patch the IP id of a frame at `data` (template id 0) with its checksum. */
function patchIpId(u8: Uint8Array, ip: number, id: number): void {
  putBe16(u8, ip + 4, id);
  csumReplace2(u8, ip + 10, 0, id);
}

/** A frame from template `t` for flow `f` with its IP id patched; 0 when no page or head. */
function pgFrame(pg: Pktgen, cpu: SkbCpu, t: ArenaTemplate, f: number): number {
  const skb = hostFrameSkb(cpu, pg.pool, t);
  if (skb === 0) {
    pg.stats[PG_ALLOC_FAIL]++;
    return 0;
  }
  patchIpId(cpu.u8, (cpu.u32[(skb + SKB_DATA) >>> 2] as number) + t.layout.ipOff, pg.ipId[f]++ as number);
  return skb;
}

function finishSend(pg: Pktgen, cpu: SkbCpu, skb: number, t: ArenaTemplate): boolean {
  pg.stats[PG_TX]++;
  pg.stats[PG_TX_BYTES] += t.len;
  devQueueXmit(cpu, pg.dev, skb);
  return true;
}

function sendOne(pg: Pktgen, cpu: SkbCpu, t: ArenaTemplate, f: number): boolean {
  const skb = pgFrame(pg, cpu, t, f);
  return skb !== 0 && finishSend(pg, cpu, skb, t);
}

function sendUdp(pg: Pktgen, cpu: SkbCpu, f: number, z: number): boolean {
  const t = pg.tmpl[f * pg.nSizes + z] as ArenaTemplate;
  const skb = pgFrame(pg, cpu, t, f);
  if (skb === 0) return false;
  const u8 = cpu.u8;
  const data = cpu.u32[(skb + SKB_DATA) >>> 2] as number;
  const L = t.layout;
  if (L.payloadLen >= 12) {
    const seq = pg.seqNo[f]++ as number;
    putBe32(u8, data + L.payloadOff + 8, seq);
    csumReplace4(u8, data + L.l4Off + 6, 0, seq);
    if (be16(u8, data + L.l4Off + 6) === 0) putBe16(u8, data + L.l4Off + 6, 0xffff);
  }
  pg.stats[PG_TX_PAYLOAD] += L.payloadLen;
  return finishSend(pg, cpu, skb, t);
}

/** Write `seq` and `ack` into a template whose seq/ack are 0, with checksum deltas. */
function patchSeqAck(u8: Uint8Array, th: number, seq: number, ack: number): void {
  putBe32(u8, th + 4, seq);
  csumReplace4(u8, th + 16, 0, seq);
  putBe32(u8, th + 8, ack);
  csumReplace4(u8, th + 16, 0, ack);
}

function sendTcpData(pg: Pktgen, cpu: SkbCpu, f: number, z: number): boolean {
  const t = pg.tmpl[f * pg.nSizes + z] as ArenaTemplate;
  const skb = pgFrame(pg, cpu, t, f);
  if (skb === 0) return false;
  const u8 = cpu.u8;
  const L = t.layout;
  const th = (cpu.u32[(skb + SKB_DATA) >>> 2] as number) + L.l4Off;
  const seq = pg.sndNxt[f] as number;
  patchSeqAck(u8, th, seq, pg.rcvNxt[f] as number);
  const n = (pg.segs[f] = (pg.segs[f] as number) + 1);
  if (n % PSH_EVERY === 0) {
    const old = be16(u8, th + 12);
    u8[th + 13] = TCP_FLAG_ACK | TCP_FLAG_PSH;
    csumReplace2(u8, th + 16, old, be16(u8, th + 12));
  }
  pg.sndNxt[f] = (seq + L.payloadLen) | 0;
  pg.stats[PG_TX_PAYLOAD] += L.payloadLen;
  return finishSend(pg, cpu, skb, t);
}

function sendSeqAck(pg: Pktgen, cpu: SkbCpu, t: ArenaTemplate, f: number, seq: number, ack: number): boolean {
  const skb = pgFrame(pg, cpu, t, f);
  if (skb === 0) return false;
  patchSeqAck(cpu.u8, (cpu.u32[(skb + SKB_DATA) >>> 2] as number) + t.layout.l4Off, seq, ack);
  return finishSend(pg, cpu, skb, t);
}

/** NAPI poll of the generator: send up to `budget` frames. */
export function pktgenPoll(pg: Pktgen, cpu: SkbCpu, napi: NapiStruct, budget: number): number {
  let room = vethTxRoom(pg.dev);
  let done = 0;
  const t = pg.t;
  // Handshake ACKs first.
  while (pg.ackHead !== pg.ackTail && done < budget && room > 0) {
    const f = pg.ackPending[pg.ackHead] as number;
    if (!sendSeqAck(pg, cpu, pg.pureAck[f] as ArenaTemplate, f, pg.sndNxt[f] as number, pg.rcvNxt[f] as number)) break;
    pg.ackHead = (pg.ackHead + 1) % pg.ackPending.length;
    done++;
    room--;
  }
  if (t.proto === "tcp") {
    // Open every flow before data.
    for (let i = 0; i < pg.nActive && done < budget && room > 0; i++) {
      const f = pg.active[i] as number;
      if (pg.state[f] !== T_CLOSED) continue;
      if (!sendOne(pg, cpu, pg.syn[f] as ArenaTemplate, f)) break;
      pg.sndNxt[f] = (pktgenIsn(f) + 1) | 0;
      pg.state[f] = T_SYN_SENT;
      pg.stats[PG_SYN_SENT]++;
      done++;
      room--;
    }
  }
  const n = pg.nActive;
  while (done < budget && room > 0 && pg.remaining > 0 && n > 0) {
    const k = pg.nextFlow;
    pg.nextFlow = k + 1 === n ? 0 : k + 1;
    const f = pg.active[k] as number;
    const z = pg.sizeCursor;
    pg.sizeCursor = z + 1 === pg.nSizes ? 0 : z + 1;
    let ok: boolean;
    if (t.protoNum === IPPROTO_UDP) {
      ok = sendUdp(pg, cpu, f, z);
    } else {
      if (pg.established === 0) break;
      if (pg.state[f] !== T_ESTABLISHED) continue;
      ok = sendTcpData(pg, cpu, f, z);
    }
    if (!ok) break;
    pg.remaining--;
    done++;
    room--;
  }
  if (done < budget) napiCompleteDone(napi, done);
  return done;
}

/**
 * The receive side of the inside hosts (veth recv hook): validate a reply
 * and consume it. UDP replies must come back to the flow's inside address
 * and port; a SYN-ACK completes the handshake; checksums are verified on
 * every packet (or every 64th with fullValidation off).
 */
export function pktgenRecv(pg: Pktgen, cpu: SkbCpu, skb: number): void {
  const u8 = cpu.u8;
  const u32 = cpu.u32;
  const data = u32[(skb + SKB_DATA) >>> 2] as number;
  const len = u32[(skb + SKB_LEN) >>> 2] as number;
  pg.stats[PG_RX]++;
  let ip = data + 14;
  if (len >= 18 && be16(u8, data + 12) === ETH_P_8021Q) ip += 4;
  const ipLen = len - (ip - data) >= 20 ? be16(u8, ip + 2) : 0;
  if (ipLen < 28 || ip - data + ipLen > len) {
    pg.stats[PG_RX_BAD_OTHER]++;
    napiConsumeSkb(cpu, skb, 1);
    return;
  }
  if ((pg.fullValidation || (pg.rxCount++ & 63) === 0) && !hostChecksumsOk(cpu, skb, ip - data, ipLen)) {
    pg.stats[PG_RX_BAD_CSUM]++;
    napiConsumeSkb(cpu, skb, 1);
    return;
  }
  const t = pg.t;
  if ((u8[ip + 9] as number) !== t.protoNum) {
    // Not the protocol these hosts speak: no flow state for it.
    pg.stats[PG_RX_BAD_OTHER]++;
    napiConsumeSkb(cpu, skb, 1);
    return;
  }
  const daddr = be32s(u8, ip + 16);
  const l4 = ip + 20;
  const dport = be16(u8, l4 + 2);
  const host = (daddr - t.insideBase) >>> 0; // unsigned distance from the first inside host
  const f = (dport - t.sportBase) * t.insideHosts + host;
  if (host >= t.insideHosts || dport < t.sportBase || f >= t.flows || be32s(u8, ip + 12) !== (t.server | 0)) {
    pg.stats[PG_RX_BAD_ADDR]++;
    napiConsumeSkb(cpu, skb, 1);
    return;
  }
  if (t.protoNum === IPPROTO_UDP) {
    if (ipLen >= 40 && be32(u8, l4 + 8) === STAMP_MAGIC && be16(u8, l4 + 12) !== f) pg.stats[PG_RX_BAD_ADDR]++;
  } else {
    const flags = u8[l4 + 13] as number;
    if ((flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) === (TCP_FLAG_SYN | TCP_FLAG_ACK)) {
      if (pg.state[f] === T_SYN_SENT && be32s(u8, l4 + 8) === pg.sndNxt[f]) {
        pg.rcvNxt[f] = (be32s(u8, l4 + 4) + 1) | 0;
        pg.state[f] = T_ESTABLISHED;
        pg.established++;
        pg.stats[PG_ESTABLISHED]++;
        pg.ackPending[pg.ackTail] = f;
        pg.ackTail = (pg.ackTail + 1) % pg.ackPending.length;
      } else {
        pg.stats[PG_RX_BAD_OTHER]++;
      }
    } else if ((flags & TCP_FLAG_ACK) !== 0) {
      // An ACK must not acknowledge data we never sent.
      if (((be32s(u8, l4 + 8) - (pg.sndNxt[f] as number)) | 0) > 0) pg.stats[PG_RX_BAD_OTHER]++;
    }
  }
  napiConsumeSkb(cpu, skb, 1);
}

/** Counters as an object (allocates). */
export function pktgenStats(pg: Pktgen): Record<(typeof PG_STAT_NAMES)[number], number> {
  const o = {} as Record<string, number>;
  PG_STAT_NAMES.forEach((n, i) => {
    o[n] = pg.stats[i] as number;
  });
  return o as Record<(typeof PG_STAT_NAMES)[number], number>;
}

/** Free templates and the page pool (teardown). */
export function pktgenDestroy(pg: Pktgen): void {
  for (const t of [...pg.tmpl, ...pg.syn, ...pg.pureAck]) templateFree(pg.cpu, t);
  hostPoolDestroy(pg.cpu, pg.pool);
}
