/**
 * `SkBuff`: an object view of one skb for code at the edges (tests, the CLI,
 * debugging). Every getter reads the arena; nothing is cached. Creating a
 * view allocates a JS object, so the packet path never does: it passes the
 * numeric handle instead.
 *
 * @module
 */

import {
  hex,
  skbCloned,
  skbDataLen,
  skbDataPtr,
  fragDesc,
  skbDataref,
  skbFclone,
  skbFragList,
  skbHeadlen,
  skbHeadroom,
  skbNrFrags,
  skbShinfo,
  skbTailroom,
  skbUsers,
} from "./access.js";
import type { SkbCpu } from "./cpu.js";
import {
  FRAG_OFFSET,
  FRAG_PAGE,
  FRAG_SIZE,
  SHINFO_FRAG_LIST,
  SHINFO_NR_FRAGS,
  SKB_NEXT,
  SKB_ALLOC_CPU,
  SKB_DEV,
  SKB_FLAGS,
  SKB_HASH,
  SKB_IP_SUMMED,
  SKB_LEN,
  SKB_MAC_HEADER,
  SKB_MARK,
  SKB_NAPI_ID,
  SKB_NETWORK_HEADER,
  SKB_PROTOCOL,
  SKB_QUEUE_MAPPING,
  SKB_TRANSPORT_HEADER,
  SKB_TRUESIZE,
  SKB_VLAN_PROTO,
  SKB_VLAN_TCI,
  SKBF_HEAD_FRAG,
  SKBF_PFMEMALLOC,
} from "./layout.js";

/** A read-mostly object view of an skb. Allocates on creation and in `bytes()`. */
export class SkBuff {
  /** The CPU context used for access. */
  readonly cpu: SkbCpu;
  /** The skb handle (arena offset). */
  readonly skb: number;

  /** View `skb` through `cpu`. */
  constructor(cpu: SkbCpu, skb: number) {
    if (skb === 0) throw new TypeError("SkBuff: NULL skb");
    this.cpu = cpu;
    this.skb = skb;
  }
  get len(): number {
    return this.cpu.u32[(this.skb + SKB_LEN) >>> 2] as number;
  }
  get dataLen(): number {
    return skbDataLen(this.cpu, this.skb);
  }
  get headlen(): number {
    return skbHeadlen(this.cpu, this.skb);
  }
  get headroom(): number {
    return skbHeadroom(this.cpu, this.skb);
  }
  get tailroom(): number {
    return skbTailroom(this.cpu, this.skb);
  }
  get truesize(): number {
    return this.cpu.u32[(this.skb + SKB_TRUESIZE) >>> 2] as number;
  }
  get users(): number {
    return skbUsers(this.cpu, this.skb);
  }
  get dataref(): number {
    return skbDataref(this.cpu, this.skb);
  }
  get cloned(): boolean {
    return skbCloned(this.cpu, this.skb);
  }
  get fclone(): number {
    return skbFclone(this.cpu, this.skb);
  }
  get headFrag(): boolean {
    return ((this.cpu.u8[this.skb + SKB_FLAGS] as number) & SKBF_HEAD_FRAG) !== 0;
  }
  get pfmemalloc(): boolean {
    return ((this.cpu.u8[this.skb + SKB_FLAGS] as number) & SKBF_PFMEMALLOC) !== 0;
  }
  get nrFrags(): number {
    return skbNrFrags(this.cpu, this.skb);
  }
  get fragList(): number {
    return skbFragList(this.cpu, this.skb);
  }
  get dev(): number {
    return this.cpu.u32[(this.skb + SKB_DEV) >>> 2] as number;
  }
  get protocol(): number {
    return this.cpu.u16[(this.skb + SKB_PROTOCOL) >>> 1] as number;
  }
  set protocol(v: number) {
    this.cpu.u16[(this.skb + SKB_PROTOCOL) >>> 1] = v;
  }
  get vlanProto(): number {
    return this.cpu.u16[(this.skb + SKB_VLAN_PROTO) >>> 1] as number;
  }
  get vlanTci(): number {
    return this.cpu.u16[(this.skb + SKB_VLAN_TCI) >>> 1] as number;
  }
  get macHeader(): number {
    return this.cpu.u16[(this.skb + SKB_MAC_HEADER) >>> 1] as number;
  }
  get networkHeader(): number {
    return this.cpu.u16[(this.skb + SKB_NETWORK_HEADER) >>> 1] as number;
  }
  get transportHeader(): number {
    return this.cpu.u16[(this.skb + SKB_TRANSPORT_HEADER) >>> 1] as number;
  }
  get hash(): number {
    return this.cpu.u32[(this.skb + SKB_HASH) >>> 2] as number;
  }
  get mark(): number {
    return this.cpu.u32[(this.skb + SKB_MARK) >>> 2] as number;
  }
  get ipSummed(): number {
    return this.cpu.u8[this.skb + SKB_IP_SUMMED] as number;
  }
  get queueMapping(): number {
    return this.cpu.u16[(this.skb + SKB_QUEUE_MAPPING) >>> 1] as number;
  }
  get napiId(): number {
    return this.cpu.u32[(this.skb + SKB_NAPI_ID) >>> 2] as number;
  }
  get allocCpu(): number {
    return this.cpu.u16[(this.skb + SKB_ALLOC_CPU) >>> 1] as number;
  }
  /** Arena offset of the first packet byte. */
  get data(): number {
    return skbDataPtr(this.cpu, this.skb);
  }
  /** A fresh copy of the packet bytes (linear, frags and frag_list). Allocates. */
  bytes(): Uint8Array {
    return skbToBytes(this.cpu, this.skb);
  }
  /** Plain-object summary for logs and JSON. Allocates. */
  toJSON(): Record<string, number | boolean | string> {
    return {
      skb: hex(this.skb),
      len: this.len,
      dataLen: this.dataLen,
      headroom: this.headroom,
      tailroom: this.tailroom,
      truesize: this.truesize,
      users: this.users,
      dataref: this.dataref,
      cloned: this.cloned,
      fclone: this.fclone,
      headFrag: this.headFrag,
      nrFrags: this.nrFrags,
      protocol: this.protocol,
      vlanTci: this.vlanTci,
      dev: this.dev,
      allocCpu: this.allocCpu,
    };
  }
}

/** Copy every packet byte of `skb` into a new array (cold path; allocates). */
export function skbToBytes(cpu: SkbCpu, skb: number): Uint8Array {
  const u32 = cpu.u32;
  const u8 = cpu.u8;
  const out = new Uint8Array(u32[(skb + SKB_LEN) >>> 2] as number);
  const headlen = skbHeadlen(cpu, skb);
  const d = skbDataPtr(cpu, skb);
  out.set(u8.subarray(d, d + headlen), 0);
  let at = headlen;
  const sh = skbShinfo(cpu, skb);
  const nr = u8[sh + SHINFO_NR_FRAGS] as number;
  for (let i = 0; i < nr; i++) {
    const fd = fragDesc(sh, i);
    const src = (u32[(fd + FRAG_PAGE) >>> 2] as number) + (u32[(fd + FRAG_OFFSET) >>> 2] as number);
    const size = u32[(fd + FRAG_SIZE) >>> 2] as number;
    out.set(u8.subarray(src, src + size), at);
    at += size;
  }
  for (let l = u32[(sh + SHINFO_FRAG_LIST) >>> 2] as number; l !== 0; l = u32[(l + SKB_NEXT) >>> 2] as number) {
    const part = skbToBytes(cpu, l);
    out.set(part, at);
    at += part.length;
  }
  return out;
}
