/**
 * Captures in and out of the dataplane: frames from a capture become skbs
 * that enter the VLAN NAT router through a veth end, and a tap on a veth end
 * records what the router sends out into a capture writer.
 *
 * ```
 *  capture ──> injector NAPI poll ──> gen0 (inside hosts)  ═veth═ in0 ─ in0.10 ┐
 *   (reader)    captureFrameSkb        srv0 (outside)      ═veth═ out0 ────────┤ router
 *                                                                              │
 *  writer  <── tap on gen0: what the router sends into the inside  <───────────┤
 *          <── tap on srv0: what the router sends to the outside   <───────────┘
 * ```
 *
 * The injector is a NAPI driver like pktgen: each poll reads up to `budget`
 * records, copies each frame into a page-pool page (a 128-byte head plus
 * page frags for frames over a page) with `napiBuildSkb`, and transmits it
 * on gen0 or srv0, stopping while the peer's ring is full. Frames enter in
 * capture order; when the side changes, the injector waits until nothing is
 * in flight, so a reply never overtakes its request. Records it cannot
 * replay (link type other than Ethernet, runts, frames cut by the snaplen,
 * frames too big for one skb) are counted, not injected.
 *
 * During a replay the taps replace the hosts' receive hooks, so pktgen and
 * the sink never see a frame and never answer; the hosts' counters still
 * count what the capture sent and what came back, so the scenario's packet
 * accounting holds unchanged.
 *
 * @module
 */

import { extname } from "node:path";
import { groFlush } from "../core/gro.js";
import { devQueueXmit, type NetDevice, RX_DROPPED, TX_DROPPED } from "../core/netdev.js";
import { napiCompleteDone, type NapiStruct, napiSchedule, netifNapiAdd, netRxAction } from "../core/napi.js";
import { HOST_BUF_SIZE, hostPoolCreate, hostPoolDestroy, ppRxSkb } from "../drivers/host-common.js";
import { PG_RX, PG_TX } from "../drivers/pktgen.js";
import { SK_RX, SK_TX } from "../drivers/sink.js";
import { VethPriv, type VethRecvFn, vethTxRoom } from "../drivers/veth.js";
import { allocPage } from "../mm/page-alloc.js";
import type { PagePool } from "../mm/page-pool.js";
import { nfConntrackCount } from "../net/conntrack.js";
import { skbChecksumHelp } from "../net/ipv4.js";
import { ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ipv4ToString } from "../net/proto.js";
import { skbVlanTagGet, skbVlanTagPresent, skbVlanProto, vlanInsertTag } from "../net/vlan.js";
import { routerAddNeighbour, routerAddRoute, routerHasNeighbour, RT_STAT_NAMES } from "../router/router.js";
import { type Accounting, type LeakReport, type Scenario, scenarioAccounting, scenarioCreate, scenarioDestroy } from "../router/scenario.js";
import { be16, be32, fragDesc, skbHeadlen, skbShinfo } from "../skb/access.js";
import { netdevAllocSkb } from "../skb/alloc.js";
import type { SkbCpu } from "../skb/cpu.js";
import { __skbPut, skbPut, skbAddRxFrag } from "../skb/data.js";
import { DROP_REASON_NAMES } from "../skb/drop-reason.js";
import { kfreeSkb, napiConsumeSkb } from "../skb/free.js";
import {
  CHECKSUM_PARTIAL,
  FRAG_OFFSET,
  FRAG_PAGE,
  FRAG_SIZE,
  MAX_SKB_FRAGS,
  NET_SKB_PAD,
  SHINFO_FRAG_LIST,
  SHINFO_NR_FRAGS,
  SHINFO_SIZE,
  SKB_DATA,
  SKB_DEV,
  SKB_IP_SUMMED,
  SKB_LEN,
  SKB_NEXT,
} from "../skb/layout.js";
import { napiCacheIsEnabled, napiCacheSetEnabled } from "../skb/napi-cache.js";
import {
  type CaptureFormat,
  type CaptureReader,
  type CaptureRecord,
  type CaptureWriter,
  EPB_FLAG_OUTBOUND,
  LINKTYPE_ETHERNET,
} from "./capture.js";
import { createCaptureWriter, openCapture } from "./pcap.js";
import type { TsOut } from "./timestamp.js";

// ---- frames into skbs ----------------------------------------------------------------------

/** Largest frame copied into one 4 KiB page-pool page (NET_SKB_PAD headroom, shared info at the end). */
export const CAPTURE_PAGE_FRAME_MAX = HOST_BUF_SIZE - NET_SKB_PAD - SHINFO_SIZE;
/** Linear bytes of a frame too big for one page; the rest goes into page frags. */
export const CAPTURE_HEAD_LEN = 128;
/** Largest frame injected at all: the head plus MAX_SKB_FRAGS full pages. */
export const CAPTURE_FRAME_MAX = CAPTURE_HEAD_LEN + MAX_SKB_FRAGS * 4096;

/**
 * Turn `len` frame bytes at `src[off]` into an skb (data = the frame's first
 * byte, CHECKSUM_NONE). Up to {@link CAPTURE_PAGE_FRAME_MAX} bytes: a page
 * from `pool` with the shell from the NAPI cache (`napiBuildSkb`, recycled
 * into the pool on free) — call it in NAPI context, as a driver's RX refill
 * would. Larger frames: `netdevAllocSkb` for the first 128 bytes and 4 KiB
 * pages as frags for the rest (what a header-split NIC builds). Returns 0
 * when memory ran out or the frame exceeds {@link CAPTURE_FRAME_MAX}.
 */
export function captureFrameSkb(cpu: SkbCpu, pool: PagePool, src: Uint8Array, off: number, len: number): number {
  if (len <= CAPTURE_PAGE_FRAME_MAX) {
    const skb = ppRxSkb(cpu, pool);
    if (skb === 0) return 0;
    cpu.u8.set(src.subarray(off, off + len), cpu.u32[(skb + SKB_DATA) >>> 2] as number);
    __skbPut(cpu, skb, len);
    return skb;
  }
  if (len > CAPTURE_FRAME_MAX) return 0;
  const skb = netdevAllocSkb(cpu, 0, CAPTURE_HEAD_LEN);
  if (skb === 0) return 0;
  cpu.u8.set(src.subarray(off, off + CAPTURE_HEAD_LEN), skbPut(cpu, skb, CAPTURE_HEAD_LEN));
  let at = CAPTURE_HEAD_LEN;
  for (let i = 0; at < len; i++) {
    const n = Math.min(4096, len - at);
    const page = allocPage(cpu.mem.pages);
    if (page === 0) {
      kfreeSkb(cpu, skb);
      return 0;
    }
    cpu.u8.set(src.subarray(off + at, off + at + n), page);
    skbAddRxFrag(cpu, skb, i, page, 0, n, 4096);
    at += n;
  }
  return skb;
}

// ---- skbs into captures --------------------------------------------------------------------

/** Append the part of `n` bytes at arena `addr` (packet offsets [pos, pos + n)) that falls in [from, to); returns pos + n. */
function appendPiece(w: CaptureWriter, u8: Uint8Array, addr: number, n: number, pos: number, from: number, to: number): number {
  const s = Math.max(from, pos);
  const e = Math.min(to, pos + n);
  if (s < e) w.append(u8, addr + (s - pos), e - s);
  return pos + n;
}

/** Append packet bytes [from, to) of `skb` (linear part, frags, frag_list) to the writer's open packet. */
function appendSkbRange(cpu: SkbCpu, skb: number, w: CaptureWriter, from: number, to: number): void {
  const u8 = cpu.u8;
  const u32 = cpu.u32;
  let pos = appendPiece(w, u8, u32[(skb + SKB_DATA) >>> 2] as number, skbHeadlen(cpu, skb), 0, from, to);
  const sh = skbShinfo(cpu, skb);
  const nr = u8[sh + SHINFO_NR_FRAGS] as number;
  for (let i = 0; i < nr && pos < to; i++) {
    const d = fragDesc(sh, i);
    const addr = (u32[(d + FRAG_PAGE) >>> 2] as number) + (u32[(d + FRAG_OFFSET) >>> 2] as number);
    pos = appendPiece(w, u8, addr, u32[(d + FRAG_SIZE) >>> 2] as number, pos, from, to);
  }
  for (let l = u32[(sh + SHINFO_FRAG_LIST) >>> 2] as number; l !== 0 && pos < to; l = u32[(l + SKB_NEXT) >>> 2] as number) {
    const n = u32[(l + SKB_LEN) >>> 2] as number;
    const s = Math.max(from, pos);
    const e = Math.min(to, pos + n);
    if (s < e) appendSkbRange(cpu, l, w, s - pos, e - pos);
    pos += n;
  }
}

const vlanScratch = new Uint8Array(4);

/**
 * Write `skb` (data = the Ethernet header) as one packet: a checksum left
 * to the device (CHECKSUM_PARTIAL) is completed first, as the NIC would on
 * the wire; an out-of-band VLAN tag is written in-band after the MAC
 * addresses; non-linear data is gathered from frags and the frag_list.
 */
export function captureWriteSkb(cpu: SkbCpu, skb: number, w: CaptureWriter, ifIndex: number, tsSec: number, tsNsec: number, flags = 0): void {
  if ((cpu.u8[skb + SKB_IP_SUMMED] as number) === CHECKSUM_PARTIAL) skbChecksumHelp(cpu, skb);
  const len = cpu.u32[(skb + SKB_LEN) >>> 2] as number;
  if (skbVlanTagPresent(cpu, skb) && len >= 12) {
    const proto = skbVlanProto(cpu, skb);
    const tci = skbVlanTagGet(cpu, skb);
    vlanScratch[0] = proto >>> 8;
    vlanScratch[1] = proto & 0xff;
    vlanScratch[2] = tci >>> 8;
    vlanScratch[3] = tci & 0xff;
    w.beginPacket(ifIndex, tsSec, tsNsec, len + 4, len + 4, flags);
    appendSkbRange(cpu, skb, w, 0, 12);
    w.append(vlanScratch, 0, 4);
    appendSkbRange(cpu, skb, w, 12, len);
  } else {
    w.beginPacket(ifIndex, tsSec, tsNsec, len, len, flags);
    appendSkbRange(cpu, skb, w, 0, len);
  }
  w.endPacket();
}

/** A tap on a veth end: every frame it receives is written to a capture. */
export interface CaptureTap {
  readonly dev: NetDevice;
  readonly writer: CaptureWriter;
  readonly ifIndex: number;
  packets: number;
  bytes: number;
  /** Put the original receive hook back. */
  remove(): void;
}

/**
 * Record every frame veth end `dev` receives into `writer` (interface
 * `ifIndex`, timestamps read from `clock` at each frame, pcapng `flags`),
 * then hand it to `then` — or, when `then` is null, to the end's original
 * receive hook (its host). Cold; the hook itself allocates nothing but a
 * view per linear piece written.
 */
export function captureTapCreate(
  dev: NetDevice,
  writer: CaptureWriter,
  ifIndex: number,
  clock: TsOut,
  then: VethRecvFn | null = null,
  flags = 0,
): CaptureTap {
  if (!(dev.priv instanceof VethPriv)) throw new Error(`captureTapCreate: ${dev.name} is not a veth end`);
  const p = dev.priv;
  const orig = p.recv;
  const next = then ?? orig;
  const tap: CaptureTap = {
    dev,
    writer,
    ifIndex,
    packets: 0,
    bytes: 0,
    remove: () => {
      p.recv = orig;
    },
  };
  p.recv = (cpu, napi, skb) => {
    tap.packets++;
    tap.bytes += cpu.u32[(skb + SKB_LEN) >>> 2] as number;
    captureWriteSkb(cpu, skb, writer, ifIndex, clock.tsSec, clock.tsNsec, flags);
    next(cpu, napi, skb);
  };
  return tap;
}

// ---- the injector ---------------------------------------------------------------------------

/** Counter indices of {@link CaptureInjector.stats}. */
export const INJ_READ = 0;
export const INJ_INSIDE = 1;
export const INJ_OUTSIDE = 2;
export const INJ_SKIP_LINKTYPE = 3;
export const INJ_SKIP_RUNT = 4;
export const INJ_SKIP_SNAPPED = 5;
export const INJ_SKIP_TOO_BIG = 6;
export const INJ_SKIP_NOMEM = 7;
export const INJ_STAT_MAX = 8;
/** Names of the skip counters (INJ_SKIP_LINKTYPE ...), for reports. */
export const INJ_SKIP_NAMES = ["linkType", "runt", "snapped", "tooBig", "nomem"] as const;

/** Which router side frames enter. */
export type ReplayDirection = "inside" | "outside" | "auto";

/** Options of the injector. */
export interface CaptureInjectorOptions {
  /** Default "auto": 802.1Q/802.1ad-tagged frames and IPv4 sources inside the inside network go to gen0, the rest to srv0. */
  direction?: ReplayDirection;
  /** Write the router port's MAC as destination of unicast frames (default true), as a switch in front of it would deliver them. */
  rewriteMac?: boolean;
  /** Teach the router's neighbour table (as PERMANENT entries) the source of each IPv4 frame on its own link (default true). */
  learnNeighbours?: boolean;
}

/** A NAPI driver that feeds a capture into the scenario (one per replay). */
export class CaptureInjector {
  readonly s: Scenario;
  readonly reader: CaptureReader;
  readonly pool: PagePool;
  readonly napi: NapiStruct;
  readonly stats = new Float64Array(INJ_STAT_MAX);
  readonly direction: ReplayDirection;
  readonly rewriteMac: boolean;
  readonly learn: boolean;
  /** IPv4 sources already considered for learning, and those learned (in order). */
  readonly seen = new Set<number>();
  readonly learned: number[] = [];
  /** Timestamp of the latest record read: the replay's clock, read by the taps. */
  readonly clock: TsOut = { tsSec: 0, tsNsec: 0 };
  /** The reader has nothing more (end of file or an error). */
  eof = false;
  /** A format error that ended the reading. */
  error: Error | null = null;
  /** A record waiting for ring room, and the side it goes to (0 inside, 1 outside). */
  pending: CaptureRecord | null = null;
  pendingSide = 0;
  /** Side of the last frame injected (-1: none yet). */
  lastSide = -1;
  /** The inside network (from the inside device): address and mask, as unsigned ints. */
  readonly insideNet: number;
  readonly insideMask: number;
  readonly outsideNet: number;
  readonly outsideMask: number;
  /** Untagged inside frames get this 802.1Q tag (0 = none). */
  readonly insideVlan: number;

  constructor(s: Scenario, reader: CaptureReader, o: CaptureInjectorOptions, pool: PagePool, napi: NapiStruct) {
    this.s = s;
    this.reader = reader;
    this.pool = pool;
    this.napi = napi;
    this.direction = o.direction ?? "auto";
    this.rewriteMac = o.rewriteMac ?? true;
    this.learn = o.learnNeighbours ?? true;
    const mask = (len: number) => (len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0);
    this.insideMask = mask(s.inside.prefixLen);
    this.insideNet = (s.inside.ipAddr & this.insideMask) >>> 0;
    this.outsideMask = mask(s.out0.prefixLen);
    this.outsideNet = (s.out0.ipAddr & this.outsideMask) >>> 0;
    this.insideVlan = s.inside.vlanId;
  }
}

/** Create the injector for scenario `s`: a control device "pcap-replay" with its NAPI and page pool (cold). */
export function captureInjectorCreate(s: Scenario, reader: CaptureReader, o: CaptureInjectorOptions = {}): CaptureInjector {
  const ctl = s.ns.register({ name: "pcap-replay", kind: "pcap" });
  ctl.up = true;
  const pool = hostPoolCreate(s.cpu);
  let inj: CaptureInjector | null = null;
  const napi = netifNapiAdd(s.sd, ctl, (cpu, n, budget) => captureInjectorPoll(inj as CaptureInjector, cpu, n, budget));
  inj = new CaptureInjector(s, reader, o, pool, napi);
  return inj;
}

/** Free the injector's page pool (after the scenario has been torn down or drained). */
export function captureInjectorDestroy(inj: CaptureInjector): void {
  hostPoolDestroy(inj.s.cpu, inj.pool);
}

/** Which side a record enters: 0 inside, 1 outside, or -1 after counting why it is skipped. */
function classify(inj: CaptureInjector, r: CaptureRecord): number {
  const st = inj.stats;
  if (r.linkType !== LINKTYPE_ETHERNET) {
    st[INJ_SKIP_LINKTYPE]++;
    return -1;
  }
  if (r.caplen < r.origLen) {
    st[INJ_SKIP_SNAPPED]++;
    return -1;
  }
  if (r.caplen < 14) {
    st[INJ_SKIP_RUNT]++;
    return -1;
  }
  if (r.caplen > CAPTURE_FRAME_MAX) {
    st[INJ_SKIP_TOO_BIG]++;
    return -1;
  }
  if (inj.direction === "inside") return 0;
  if (inj.direction === "outside") return 1;
  const b = r.buf;
  const o = r.offset;
  const type = be16(b, o + 12);
  if (type === ETH_P_8021Q || type === ETH_P_8021AD) return 0;
  if (type === ETH_P_IP && r.caplen >= 34 && ((be32(b, o + 26) & inj.insideMask) >>> 0) === inj.insideNet) return 0;
  return 1;
}

/** The NAPI poll of the injector: up to `budget` records, while the veth rings have room. */
export function captureInjectorPoll(inj: CaptureInjector, cpu: SkbCpu, napi: NapiStruct, budget: number): number {
  const s = inj.s;
  let done = 0;
  while (done < budget) {
    let r = inj.pending;
    let side = inj.pendingSide;
    if (r === null) {
      if (inj.eof) break;
      try {
        r = inj.reader.next();
      } catch (e) {
        inj.error = e as Error;
        inj.eof = true;
        break;
      }
      if (r === null) {
        inj.eof = true;
        break;
      }
      inj.stats[INJ_READ]++;
      inj.clock.tsSec = r.tsSec;
      inj.clock.tsNsec = r.tsNsec;
      side = classify(inj, r);
      if (side < 0) {
        done++;
        continue;
      }
    }
    const dev = side === 0 ? s.gen0 : s.srv0;
    // Backpressure (ring full), or a change of side while frames are in flight
    // (a reply must not overtake its request): keep the record (the reader's
    // buffer stays valid) for a later poll.
    if (vethTxRoom(dev) <= 0 || (side !== inj.lastSide && s.sd.count > 0)) {
      inj.pending = r;
      inj.pendingSide = side;
      break;
    }
    inj.pending = null;
    inj.lastSide = side;
    if (!injectOne(inj, cpu, r, side, dev)) inj.stats[INJ_SKIP_NOMEM]++;
    done++;
  }
  if (done < budget) napiCompleteDone(napi, done);
  return done;
}

function injectOne(inj: CaptureInjector, cpu: SkbCpu, r: CaptureRecord, side: number, dev: NetDevice): boolean {
  const s = inj.s;
  const skb = captureFrameSkb(cpu, inj.pool, r.buf, r.offset, r.caplen);
  if (skb === 0) return false;
  const u8 = cpu.u8;
  cpu.u32[(skb + SKB_DEV) >>> 2] = dev.ifindex;
  let data = cpu.u32[(skb + SKB_DATA) >>> 2] as number;
  let type = be16(u8, data + 12);
  const tagged = type === ETH_P_8021Q || type === ETH_P_8021AD;
  if (side === 0 && !tagged && inj.insideVlan !== 0) {
    // The inside hosts sit on an access port of the router's VLAN: tag it.
    if (vlanInsertTag(cpu, skb, ETH_P_8021Q, inj.insideVlan) !== 0) {
      kfreeSkb(cpu, skb);
      return false;
    }
    data = cpu.u32[(skb + SKB_DATA) >>> 2] as number;
  }
  if (inj.rewriteMac && ((u8[data] as number) & 1) === 0) u8.set(side === 0 ? s.in0.mac : s.out0.mac, data);
  if (inj.learn) {
    let l3 = data + 14;
    type = be16(u8, data + 12);
    if (type === ETH_P_8021Q || type === ETH_P_8021AD) {
      type = be16(u8, data + 16);
      l3 += 4;
    }
    const len = cpu.u32[(skb + SKB_LEN) >>> 2] as number;
    if (type === ETH_P_IP && l3 + 20 <= data + Math.min(len, skbHeadlen(cpu, skb))) learnNeighbour(inj, be32(u8, l3 + 12), side);
  }
  if (side === 0) {
    inj.stats[INJ_INSIDE]++;
    s.pktgen.stats[PG_TX]++;
  } else {
    inj.stats[INJ_OUTSIDE]++;
    s.sink.stats[SK_TX]++;
  }
  devQueueXmit(cpu, dev, skb);
  return true;
}

/** A host on the router's own link is reachable at the veth end the capture speaks for. */
function learnNeighbour(inj: CaptureInjector, saddr: number, side: number): void {
  if (inj.seen.has(saddr | 0)) return;
  inj.seen.add(saddr | 0);
  const r = inj.s.router;
  if (routerHasNeighbour(r, saddr)) return;
  let mac: Uint8Array | null = null;
  if (side === 0 && ((saddr & inj.insideMask) >>> 0) === inj.insideNet && saddr !== inj.s.inside.ipAddr) mac = inj.s.gen0.mac;
  else if (side === 1 && ((saddr & inj.outsideMask) >>> 0) === inj.outsideNet && saddr !== inj.s.out0.ipAddr) mac = inj.s.srv0.mac;
  if (mac === null || r.neigh.count >= r.neigh.max) return; // a full table: packets to it are dropped (NEIGH_FAILED)
  routerAddNeighbour(r, saddr, mac);
  inj.learned.push(saddr | 0);
}

/** Injector counters as an object (allocates). */
export function captureInjectorStats(inj: CaptureInjector): { read: number; inside: number; outside: number; skipped: Record<string, number> } {
  const skipped: Record<string, number> = {};
  INJ_SKIP_NAMES.forEach((n, i) => {
    const v = inj.stats[INJ_SKIP_LINKTYPE + i] as number;
    if (v !== 0) skipped[n] = v;
  });
  return { read: inj.stats[INJ_READ] as number, inside: inj.stats[INJ_INSIDE] as number, outside: inj.stats[INJ_OUTSIDE] as number, skipped };
}

// ---- a whole replay --------------------------------------------------------------------------

/** Options of {@link replayCapture}. */
export interface ReplayOptions {
  input: string;
  /**
   * Output. pcapng: this one file, interface 0 = what the router sent into
   * the inside (seen at gen0), 1 = what it sent to the outside (at srv0).
   * pcap: two files, `OUT` with `-inside` / `-outside` before the extension.
   */
  output: string;
  /** Default: "pcap" for a `.pcap` output, else "pcapng". */
  format?: CaptureFormat;
  direction?: ReplayDirection;
  /** NAPI head cache switch for the run (default: unchanged). */
  cache?: boolean;
  /** Inside VLAN of the router (default 10, the scenario's; 0 = untagged inside). */
  vlan?: number;
  rewriteMac?: boolean;
  /** Timestamp resolution of the output (default "ns"). */
  resolution?: "us" | "ns";
  /** Arena bytes (default 64 MiB). */
  arenaSize?: number;
  /** Kernel profile (default 5.12). */
  profile?: string;
}

/** What a replay did. */
export interface ReplayResult {
  input: string;
  inputFormat: CaptureFormat;
  outputFormat: CaptureFormat;
  outputs: { inside: string; outside: string };
  napiCache: boolean;
  /** Records read from the input. */
  read: number;
  injected: { inside: number; outside: number; total: number };
  /** Records not injected, by reason (linkType, runt, snapped, tooBig, nomem). */
  skipped: Record<string, number>;
  /** Frames the router sent out of each side (written to the output). */
  delivered: { inside: number; outside: number };
  /** Drops in the dataplane, by reason, and by device. */
  drops: Record<string, number>;
  dropsByDevice: Record<string, number>;
  router: Record<(typeof RT_STAT_NAMES)[number], number>;
  /** Conntrack entries at the end of the run. */
  conntrackEntries: number;
  /** Router neighbours learned from the capture. */
  neighbours: string[];
  accounting: Accounting;
  /** read = injected + skipped. */
  readBalanced: boolean;
  stalled: boolean;
  leaks: LeakReport;
  /** A format error that cut the input short (what came before was replayed). */
  error: string | null;
  ok: boolean;
}

/** `OUT` → `OUT-inside` / `OUT-outside`, before the extension. */
export function replaySplitNames(output: string): { inside: string; outside: string } {
  const ext = extname(output);
  const stem = ext === "" ? output : output.slice(0, -ext.length);
  return { inside: `${stem}-inside${ext}`, outside: `${stem}-outside${ext}` };
}

/** Drain the softnet and GRO until nothing is left in flight. */
function drain(s: Scenario): void {
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < 1_000_000 && s.sd.count > 0; i++) netRxAction(s.sd);
    if (s.groIn !== null) groFlush(s.cpu, s.groIn, true, s.portIn.deliver);
    if (s.groOut !== null) groFlush(s.cpu, s.groOut, true, s.portOut.deliver);
  }
  for (let i = 0; i < 1_000_000 && s.sd.count > 0; i++) netRxAction(s.sd);
}

/**
 * Push every frame of `input` through the VLAN NAT router and write what
 * leaves each side (cold setup; the per-frame path is the injector's NAPI
 * poll). The hosts send nothing of their own and answer nothing. A format
 * error in the input ends the reading; the result carries it.
 * Throws CaptureFormatError only when the file header itself is bad.
 */
export function replayCapture(o: ReplayOptions): ReplayResult {
  const reader = openCapture(o.input);
  const prevCache = napiCacheIsEnabled();
  if (o.cache !== undefined) napiCacheSetEnabled(o.cache);
  const format: CaptureFormat = o.format ?? (extname(o.output).toLowerCase() === ".pcap" ? "pcap" : "pcapng");
  const resolution = o.resolution ?? "ns";
  let s: Scenario | null = null;
  const writers: CaptureWriter[] = [];
  try {
    s = scenarioCreate({
      traffic: { proto: "udp", size: 64, flows: 1, insideHosts: 1, vlan: o.vlan ?? 10, udpReplyEvery: 0 },
      arenaSize: o.arenaSize ?? 64 << 20,
      ...(o.profile !== undefined ? { profile: o.profile } : {}),
    });
    const sc = s;
    // Anything not on the two links goes out through the server, the outside's gateway.
    routerAddRoute(sc.router, 0, 0, sc.traffic.server, sc.out0);
    let outputs: { inside: string; outside: string };
    let wIn: CaptureWriter;
    let wOut: CaptureWriter;
    let ifIn = 0;
    let ifOut = 0;
    if (format === "pcapng") {
      outputs = { inside: o.output, outside: o.output };
      wIn = wOut = createCaptureWriter(o.output, { format, resolution });
      writers.push(wIn);
      ifIn = wIn.addInterface({ name: "inside", description: `router inside (${sc.gen0.name}, VLAN ${sc.inside.vlanId})` });
      ifOut = wIn.addInterface({ name: "outside", description: `router outside (${sc.srv0.name})` });
    } else {
      outputs = replaySplitNames(o.output);
      wIn = createCaptureWriter(outputs.inside, { format, resolution });
      writers.push(wIn);
      wOut = createCaptureWriter(outputs.outside, { format, resolution });
      writers.push(wOut);
      wIn.addInterface();
      wOut.addInterface();
    }
    const inj = captureInjectorCreate(sc, reader, {
      ...(o.direction !== undefined ? { direction: o.direction } : {}),
      ...(o.rewriteMac !== undefined ? { rewriteMac: o.rewriteMac } : {}),
    });
    const flags = format === "pcapng" ? EPB_FLAG_OUTBOUND : 0;
    captureTapCreate(sc.gen0, wIn, ifIn, inj.clock, (cpu, _n, skb) => {
      sc.pktgen.stats[PG_RX]++;
      napiConsumeSkb(cpu, skb, 1);
    }, flags);
    captureTapCreate(sc.srv0, wOut, ifOut, inj.clock, (cpu, _n, skb) => {
      sc.sink.stats[SK_RX]++;
      napiConsumeSkb(cpu, skb, 1);
    }, flags);

    let idle = 0;
    let stalled = false;
    while (!inj.eof || inj.pending !== null || sc.sd.count > 0) {
      if (!inj.eof || inj.pending !== null) napiSchedule(inj.napi);
      if (netRxAction(sc.sd) === 0) {
        if (++idle > 1000) {
          stalled = true;
          break;
        }
      } else {
        idle = 0;
      }
    }
    drain(sc);

    const accounting = scenarioAccounting(sc);
    const st = captureInjectorStats(inj);
    const drops: Record<string, number> = {};
    const dropsByDevice: Record<string, number> = {};
    for (const d of sc.ns.list()) {
      for (let r = 0; r < d.drops.length; r++) {
        const n = d.drops[r] as number;
        if (n !== 0) drops[DROP_REASON_NAMES[r] as string] = (drops[DROP_REASON_NAMES[r] as string] ?? 0) + n;
      }
      const n = (d.stats[RX_DROPPED] as number) + (d.stats[TX_DROPPED] as number);
      if (n !== 0) dropsByDevice[d.name] = n;
    }
    const router = {} as Record<(typeof RT_STAT_NAMES)[number], number>;
    RT_STAT_NAMES.forEach((n, i) => {
      router[n] = sc.router.stats[i] as number;
    });
    const neighbours = inj.learned.map((k) => ipv4ToString(k >>> 0));
    const conntrackEntries = nfConntrackCount(sc.router.ct);
    let skippedTotal = 0;
    for (const v of Object.values(st.skipped)) skippedTotal += v;
    const readBalanced = st.read === st.inside + st.outside + skippedTotal;
    for (const w of writers.splice(0)) w.close();
    // The injector's pool first: its cached pages would otherwise count as in use.
    captureInjectorDestroy(inj);
    const leaks = scenarioDestroy(sc);
    s = null;
    const error = inj.error === null ? null : inj.error.message;
    return {
      input: o.input,
      inputFormat: reader.format,
      outputFormat: format,
      outputs,
      napiCache: napiCacheIsEnabled(),
      read: st.read,
      injected: { inside: st.inside, outside: st.outside, total: st.inside + st.outside },
      skipped: st.skipped,
      delivered: { inside: sc.pktgen.stats[PG_RX] as number, outside: sc.sink.stats[SK_RX] as number },
      drops,
      dropsByDevice,
      router,
      conntrackEntries,
      neighbours,
      accounting,
      readBalanced,
      stalled,
      leaks,
      error,
      ok: accounting.ok && readBalanced && !stalled && leaks.ok && error === null,
    };
  } finally {
    for (const w of writers) w.close();
    if (s !== null) scenarioDestroy(s);
    reader.close();
    napiCacheSetEnabled(prevCache);
  }
}
