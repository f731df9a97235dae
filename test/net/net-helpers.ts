/**
 * Shared helpers for the protocol tests: memory setup and leak checks,
 * building skbs from byte arrays (linear, or with the tail split into page
 * frags so pskbMayPull has work to do), reading packets back, and reference
 * frame builders with an independent RFC 1071 checksum.
 */

import assert from "node:assert/strict";
import { mmSlabInfo } from "../../src/mm/mm.js";
import { allocPage } from "../../src/mm/page-alloc.js";
import { pageFragCacheDrain } from "../../src/mm/page-frag.js";
import {
  skbDataPtr,
  skbFragList,
  skbFragOffset,
  skbFragPage,
  skbFragSize,
  skbHeadlen,
  skbLen,
  skbNrFrags,
} from "../../src/skb/access.js";
import { allocSkb } from "../../src/skb/alloc.js";
import { createSkbCpu, type SkbCpu } from "../../src/skb/cpu.js";
import { skbAddRxFrag, skbPut, skbReserve } from "../../src/skb/data.js";
import { createSkbMemory, type SkbMemoryConfig } from "../../src/skb/memory.js";
import { napiCacheSetEnabled, napiSkbCacheDrain } from "../../src/skb/napi-cache.js";
import { SKB_NEXT } from "../../src/skb/layout.js";

napiCacheSetEnabled(true);

/** A fresh 16 MiB arena and CPU 0. */
export function setup(cfg: SkbMemoryConfig = {}, profile: "5.12" | "6.19" = "5.12"): SkbCpu {
  return createSkbCpu(createSkbMemory({ arenaSize: 16 << 20, ...cfg }), 0, { profile });
}

/** Every slab object and page back: the NAPI cache drained, page-frag caches drained. */
export function assertNoLeaks(cpu: SkbCpu): void {
  assert.equal(cpu.completionQueue, 0, "completion queue not empty");
  napiSkbCacheDrain(cpu);
  pageFragCacheDrain(cpu.napiFrag);
  pageFragCacheDrain(cpu.netdevFrag);
  const leaks = mmSlabInfo(cpu.mm)
    .filter((i) => i.activeObjs !== 0)
    .map((i) => `${i.name}: ${i.activeObjs}`);
  assert.deepEqual(leaks, [], "objects still allocated");
}

/** Sum of all per-reason free counters (every freed skb counts once). */
export function totalFreed(cpu: SkbCpu): number {
  let n = 0;
  for (const v of cpu.drops) n += v;
  return n;
}

/** Options for {@link skbFromBytes}. */
export interface SkbShape {
  /** Headroom to reserve (default 64). */
  headroom?: number;
  /** Bytes kept linear; the rest goes to page frags (default: all linear). */
  linear?: number;
  /** Maximum bytes per frag (default 1000). */
  fragSize?: number;
}

/** Build an skb holding `bytes`: `linear` of them in the head, the rest in page frags. */
export function skbFromBytes(cpu: SkbCpu, bytes: ArrayLike<number>, shape: SkbShape = {}): number {
  const headroom = shape.headroom ?? 64;
  const linear = Math.min(shape.linear ?? bytes.length, bytes.length);
  const skb = allocSkb(cpu, headroom + Math.max(linear, 1));
  assert.notEqual(skb, 0, "allocSkb failed");
  skbReserve(cpu, skb, headroom);
  const at = skbPut(cpu, skb, linear);
  for (let i = 0; i < linear; i++) cpu.u8[at + i] = bytes[i] as number;
  const fs = shape.fragSize ?? 1000;
  let i = linear;
  let f = 0;
  while (i < bytes.length) {
    // The 17th frag (MAX_SKB_FRAGS) takes whatever is left.
    const n = f === 16 ? bytes.length - i : Math.min(fs, bytes.length - i);
    assert.ok(n <= 4096 - 16, "skbFromBytes: too many bytes for 17 frags");
    const page = allocPage(cpu.mem.pages);
    assert.notEqual(page, 0, "allocPage failed");
    for (let k = 0; k < n; k++) cpu.u8[page + 16 + k] = bytes[i + k] as number;
    skbAddRxFrag(cpu, skb, f++, page, 16, n, 4096);
    i += n;
  }
  return skb;
}

/** Every packet byte from skb->data on: linear part, frags, frag_list (recursively). */
export function readPacket(cpu: SkbCpu, skb: number): number[] {
  const out: number[] = [];
  const d = skbDataPtr(cpu, skb);
  const hl = skbHeadlen(cpu, skb);
  for (let i = 0; i < hl; i++) out.push(cpu.u8[d + i] as number);
  for (let f = 0; f < skbNrFrags(cpu, skb); f++) {
    const a = skbFragPage(cpu, skb, f) + skbFragOffset(cpu, skb, f);
    for (let i = 0; i < skbFragSize(cpu, skb, f); i++) out.push(cpu.u8[a + i] as number);
  }
  for (let l = skbFragList(cpu, skb); l !== 0; l = cpu.u32[(l + SKB_NEXT) >>> 2] as number) out.push(...readPacket(cpu, l));
  assert.equal(out.length, skbLen(cpu, skb), "len does not match the bytes present");
  return out;
}

/** `len` bytes at an arena offset. */
export function bytesAt(cpu: SkbCpu, off: number, len: number): number[] {
  return Array.from(cpu.u8.subarray(off, off + len));
}

// ---- reference builders (independent of src/net) ----------------------------------------

/** RFC 1071 checksum of bytes[start, end) plus a partial `init`: the folded, complemented value. */
export function refCsum(bytes: ArrayLike<number>, start = 0, end = bytes.length, init = 0): number {
  let s = init;
  for (let i = start; i < end; i += 2) s += ((bytes[i] as number) << 8) + (i + 1 < end ? (bytes[i + 1] as number) : 0);
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
  return ~s & 0xffff;
}

/** Big-endian u16 / u32 pushers. */
export function be16Bytes(v: number): number[] {
  return [(v >>> 8) & 255, v & 255];
}
export function be32Bytes(v: number): number[] {
  return [(v >>> 24) & 255, (v >>> 16) & 255, (v >>> 8) & 255, v & 255];
}

/** Dotted quad to host-order u32. */
export function ip(a: string): number {
  const p = a.split(".").map(Number);
  return (((p[0] as number) << 24) | ((p[1] as number) << 16) | ((p[2] as number) << 8) | (p[3] as number)) >>> 0;
}

/** Fields of an IPv4 header for {@link ipv4Packet}. */
export interface Ip4 {
  src: number;
  dst: number;
  proto: number;
  ttl?: number;
  tos?: number;
  id?: number;
  /** Host-order frag_off field (flags | offset/8). */
  fragOff?: number;
  /** Option bytes (padded with zeros to a multiple of 4). */
  options?: number[];
  /** Override tot_len. */
  totLen?: number;
  /** Override the checksum. */
  check?: number;
}

/** An IPv4 datagram with a correct header checksum. */
export function ipv4Packet(h: Ip4, payload: number[]): number[] {
  const opts = [...(h.options ?? [])];
  while (opts.length % 4) opts.push(0);
  const hl = 20 + opts.length;
  const hdr = [
    0x40 | (hl >> 2),
    h.tos ?? 0,
    ...be16Bytes(h.totLen ?? hl + payload.length),
    ...be16Bytes(h.id ?? 0x1234),
    ...be16Bytes(h.fragOff ?? 0),
    h.ttl ?? 64,
    h.proto,
    0,
    0,
    ...be32Bytes(h.src),
    ...be32Bytes(h.dst),
    ...opts,
  ];
  const c = h.check ?? refCsum(hdr);
  hdr[10] = c >>> 8;
  hdr[11] = c & 255;
  return [...hdr, ...payload];
}

/** Pseudo-header partial sum (unfolded) for TCP/UDP. */
export function pseudoSum(src: number, dst: number, proto: number, len: number): number {
  return (src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff) + proto + len;
}

/** A UDP datagram (header + payload) with a correct checksum (0 → 0xffff) unless `check` is given. */
export function udpSegment(src: number, dst: number, sport: number, dport: number, payload: number[], check?: number): number[] {
  const len = 8 + payload.length;
  const seg = [...be16Bytes(sport), ...be16Bytes(dport), ...be16Bytes(len), 0, 0, ...payload];
  let c = check ?? refCsum(seg, 0, seg.length, pseudoSum(src, dst, 17, len));
  if (check === undefined && c === 0) c = 0xffff;
  seg[6] = c >>> 8;
  seg[7] = c & 255;
  return seg;
}

/** A TCP segment with a correct checksum. */
export function tcpSegment(
  src: number,
  dst: number,
  sport: number,
  dport: number,
  seq: number,
  ack: number,
  flags: number,
  payload: number[],
  options: number[] = [],
): number[] {
  const opts = [...options];
  while (opts.length % 4) opts.push(1);
  const hl = 20 + opts.length;
  const seg = [
    ...be16Bytes(sport),
    ...be16Bytes(dport),
    ...be32Bytes(seq),
    ...be32Bytes(ack),
    (hl / 4) << 4,
    flags,
    ...be16Bytes(65535),
    0,
    0,
    0,
    0,
    ...opts,
    ...payload,
  ];
  const c = refCsum(seg, 0, seg.length, pseudoSum(src, dst, 6, seg.length));
  seg[16] = c >>> 8;
  seg[17] = c & 255;
  return seg;
}

/** An ICMP message (type, code, rest-of-header word, data) with a correct checksum. */
export function icmpMessage(type: number, code: number, rest: number, data: number[]): number[] {
  const m = [type, code, 0, 0, ...be32Bytes(rest), ...data];
  const c = refCsum(m);
  m[2] = c >>> 8;
  m[3] = c & 255;
  return m;
}

/** An Ethernet frame. */
export function ethFrame(dst: number[], src: number[], type: number, payload: number[]): number[] {
  return [...dst, ...src, ...be16Bytes(type), ...payload];
}

/** An 802.1Q-tagged Ethernet frame. */
export function vlanFrame(dst: number[], src: number[], tpid: number, tci: number, type: number, payload: number[]): number[] {
  return [...dst, ...src, ...be16Bytes(tpid), ...be16Bytes(tci), ...be16Bytes(type), ...payload];
}

/** Deterministic bytes (an LCG). */
export function lcgBytes(n: number, seed = 1): number[] {
  let s = seed >>> 0;
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    out.push(s >>> 24);
  }
  return out;
}

export const MAC_DEV = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
export const MAC_PEER = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02];
export const MAC_BCAST = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
