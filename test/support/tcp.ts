/**
 * Shared helpers for the GRO and GSO tests: TCP/IPv4 segments with valid
 * checksums, big-endian byte access, RX skbs as a driver leaves them, the
 * deliver callback that collects what the stack hands up, and freeing.
 */

import assert from "node:assert/strict";
import { virtToHeadPage } from "../../src/mm/page-alloc.js";
import { pageFragAlloc } from "../../src/mm/page-frag.js";
import { csumPartial, csumTcpudpMagic, ipFastCsum } from "../../src/net/checksum.js";
import { ETH_P_IP, IPPROTO_TCP, TCP_FLAG_ACK } from "../../src/net/proto.js";
import { allocSkb, type NapiSkbOwner, napiAllocSkb, napiBuildSkb } from "../../src/skb/alloc.js";
import type { SkbCpu } from "../../src/skb/cpu.js";
import { skbAddRxFrag, skbPull, skbPut, skbReserve } from "../../src/skb/data.js";
import { kfreeSkb } from "../../src/skb/free.js";
import {
  NET_SKB_PAD,
  SKB_ALLOC_NAPI,
  SKB_ALLOC_RX,
  SKB_DEV,
  SKB_MAC_HEADER,
  SKB_NEXT,
  SKB_PROTOCOL,
  SKB_VLAN_PROTO,
  SKB_VLAN_TCI,
  skbDataAlign,
  skbHeadAlign,
} from "../../src/skb/layout.js";
import { type Profile, setup, skbDataOff } from "./skb.js";

// ---- environment ----------------------------------------------------------------------------

/** {@link setup} with the 16 MiB arena the GRO/GSO tests use. */
export function setupGro(profile: Profile = "5.12", debug = false): SkbCpu {
  return setup(profile, debug, { arenaSize: 16 << 20 });
}

/** The NAPI instance the RX skbs are allocated for (device 3). */
export const NAPI: NapiSkbOwner = { dev: 3, napiId: 0, skb: 0 };

/** Delivered skbs of the current test, not yet taken (the deliver function is created once). */
export const delivered: number[] = [];
/** The deliver callback for GRO: records each skb handed up. */
export function deliver(_cpu: SkbCpu, skb: number): void {
  delivered.push(skb);
}
/** The skbs delivered since the last call, in order. */
export function take(): number[] {
  return delivered.splice(0, delivered.length);
}

/** kfreeSkb each skb. */
export function freeAll(cpu: SkbCpu, skbs: number[]): void {
  for (const s of skbs) kfreeSkb(cpu, s);
}
/** Clear each skb's next pointer (they may still be chained, as GSO output is), then kfreeSkb it. */
export function freeUnlinked(cpu: SkbCpu, skbs: number[]): void {
  for (const s of skbs) {
    cpu.u32[(s + SKB_NEXT) >>> 2] = 0;
    kfreeSkb(cpu, s);
  }
}

// ---- bytes ----------------------------------------------------------------------------------

/** Store the big-endian u16 `v` at `b[o]`. */
export function put16(b: Uint8Array, o: number, v: number): void {
  b[o] = (v >>> 8) & 255;
  b[o + 1] = v & 255;
}
/** Store the big-endian u32 `v` at `b[o]`. */
export function put32(b: Uint8Array, o: number, v: number): void {
  b[o] = v >>> 24;
  b[o + 1] = (v >>> 16) & 255;
  b[o + 2] = (v >>> 8) & 255;
  b[o + 3] = v & 255;
}
/** The big-endian u16 at `b[o]`. */
export function get16(b: Uint8Array, o: number): number {
  return ((b[o] as number) << 8) | (b[o + 1] as number);
}
/** The big-endian u32 at `b[o]`. */
export function get32(b: Uint8Array, o: number): number {
  return (((b[o] as number) << 24) | ((b[o + 1] as number) << 16) | ((b[o + 2] as number) << 8) | (b[o + 3] as number)) >>> 0;
}

// ---- segments -------------------------------------------------------------------------------

/** One TCP/IPv4 segment: IPv4 and TCP header fields, options and payload. */
export interface Seg {
  saddr: number;
  daddr: number;
  sport: number;
  dport: number;
  seq: number;
  ack: number;
  flags: number;
  win: number;
  urg: number;
  id: number;
  ttl: number;
  /** IPv4 TOS byte (default 0). */
  tos?: number;
  df: boolean;
  /** ECN CE, written as the reserved IPv4 flag bit (default false). */
  ce?: boolean;
  opts: number[];
  payload: Uint8Array;
}

/** TCP timestamp option (NOP NOP TS), 12 bytes. */
export const TS_OPTS = [1, 1, 8, 10, 0, 0, 0x12, 0x34, 0, 0, 0x56, 0x78];

/** The fields a test file picks for its flow; the rest of a {@link Seg} has common defaults. */
export type FlowFields = Pick<Seg, "saddr" | "daddr" | "sport" | "dport" | "seq" | "ack" | "win" | "id"> & Partial<Seg>;

/** Segment makers for one test file: its flow's fields and its payload byte source. */
export interface SegFactory {
  /** One segment: the defaults, a fresh 1448-byte payload, then `o` on top. */
  mkSeg(o?: Partial<Seg>): Seg;
  /** `n` in-order segments of one flow: seq and IP id advance, payloads random. */
  flow(n: number, o?: Partial<Seg>, size?: number): Seg[];
}

/** A {@link SegFactory} for `fields` (flags ACK, urg 0, TTL 64, DF, {@link TS_OPTS} unless given), payloads from `bytes`. */
export function segFactory(fields: FlowFields, bytes: (n: number) => Uint8Array): SegFactory {
  const defaults = { flags: TCP_FLAG_ACK, urg: 0, ttl: 64, df: true, opts: TS_OPTS, ...fields };
  const mkSeg = (o: Partial<Seg> = {}): Seg => ({ ...defaults, payload: bytes(1448), ...o });
  const flow = (n: number, o: Partial<Seg> = {}, size = 1448): Seg[] => {
    const out: Seg[] = [];
    const base = mkSeg(o);
    let seq = base.seq;
    for (let i = 0; i < n; i++) {
      out.push({ ...base, seq, id: (base.id + i) & 0xffff, payload: bytes(size) });
      seq = (seq + size) >>> 0;
    }
    return out;
  };
  return { mkSeg, flow };
}

/** The IPv4 packet of a segment, checksums valid. */
export function tcpPacket(s: Seg): Uint8Array {
  const thl = 20 + s.opts.length;
  const tot = 20 + thl + s.payload.length;
  const b = new Uint8Array(tot);
  b[0] = 0x45;
  b[1] = s.tos ?? 0;
  put16(b, 2, tot);
  put16(b, 4, s.id);
  put16(b, 6, (s.df ? 0x4000 : 0) | (s.ce ? 0x8000 : 0));
  b[8] = s.ttl;
  b[9] = IPPROTO_TCP;
  put32(b, 12, s.saddr);
  put32(b, 16, s.daddr);
  put16(b, 10, ipFastCsum(b, 0, 5));
  put16(b, 20, s.sport);
  put16(b, 22, s.dport);
  put32(b, 24, s.seq);
  put32(b, 28, s.ack);
  b[32] = (thl / 4) << 4;
  b[33] = s.flags;
  put16(b, 34, s.win);
  put16(b, 38, s.urg);
  b.set(s.opts, 40);
  b.set(s.payload, 20 + thl);
  put16(b, 36, csumTcpudpMagic(s.saddr, s.daddr, thl + s.payload.length, IPPROTO_TCP, csumPartial(b, 20, thl + s.payload.length, 0)));
  return b;
}

// ---- RX skbs --------------------------------------------------------------------------------

/** How an RX skb holds its data (see {@link rx}). */
export type Mode = "napi" | "frag" | "kmalloc" | "frags";

/** Options for {@link rx}. */
export interface RxOpts {
  /** Head kind (default "frag"). */
  mode?: Mode;
  /** Receiving device (default NAPI.dev). */
  dev?: number;
  /** VLAN tag; none when absent or negative. */
  vlan?: number;
  /** Last byte of the source MAC address (default 2). */
  mac?: number;
}

/** The Ethernet header of every RX frame: 02:00:00:00:00:01 <- 02:00:00:00:00:02, IPv4. */
export const ETH = [2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 8, 0];

/**
 * An RX skb as a driver + eth_type_trans leave it: Ethernet header in front
 * (mac header set), data at the IPv4 header, protocol ETH_P_IP.
 * napi: napiAllocSkb; frag: page-fragment head (pageFragAlloc +
 * napiBuildSkb); kmalloc: kmalloc head; frags: headers linear, payload in a
 * page frag.
 */
export function rx(cpu: SkbCpu, pkt: Uint8Array, o: RxOpts = {}): number {
  const mode = o.mode ?? "frag";
  const frame = new Uint8Array(14 + pkt.length);
  frame.set(ETH);
  if (o.mac !== undefined) frame[11] = o.mac;
  frame.set(pkt, 14);
  let skb: number;
  let linear = frame.length;
  if (mode === "napi") {
    skb = napiAllocSkb(cpu, NAPI, frame.length);
  } else if (mode === "frag") {
    const sz = skbHeadAlign(NET_SKB_PAD + frame.length);
    const data = pageFragAlloc(cpu.napiFrag, sz);
    assert.notEqual(data, 0);
    skb = napiBuildSkb(cpu, data, sz);
    skbReserve(cpu, skb, NET_SKB_PAD);
  } else {
    if (mode === "frags") linear = Math.min(frame.length, 14 + 20 + ((pkt[32] ?? 0x50) >>> 4) * 4);
    skb = allocSkb(cpu, NET_SKB_PAD + linear, SKB_ALLOC_RX | SKB_ALLOC_NAPI);
    if (skb !== 0) skbReserve(cpu, skb, NET_SKB_PAD);
  }
  assert.notEqual(skb, 0);
  cpu.u8.set(frame.subarray(0, linear), skbPut(cpu, skb, linear));
  if (linear < frame.length) {
    const n = frame.length - linear;
    const f = pageFragAlloc(cpu.napiFrag, skbDataAlign(n)); // napi_alloc_frag rounds with SKB_DATA_ALIGN
    assert.notEqual(f, 0);
    cpu.u8.set(frame.subarray(linear), f);
    const page = virtToHeadPage(cpu.fragPages, f);
    skbAddRxFrag(cpu, skb, 0, page, f - page, n, n);
  }
  // eth_type_trans
  cpu.u16[(skb + SKB_MAC_HEADER) >>> 1] = skbDataOff(cpu, skb);
  skbPull(cpu, skb, 14);
  cpu.u16[(skb + SKB_PROTOCOL) >>> 1] = ETH_P_IP;
  cpu.u32[(skb + SKB_DEV) >>> 2] = o.dev ?? NAPI.dev;
  if (o.vlan !== undefined && o.vlan >= 0) {
    cpu.u16[(skb + SKB_VLAN_PROTO) >>> 1] = 0x8100;
    cpu.u16[(skb + SKB_VLAN_TCI) >>> 1] = o.vlan;
  }
  return skb;
}
