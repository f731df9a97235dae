/**
 * Field accessors for skbs in the arena: small functions V8 inlines, plus the
 * error constructors the checked operations use. An skb is a number: the
 * arena offset of its `struct sk_buff`.
 *
 * @module
 */

import type { SkbCpu } from "./cpu.js";
import {
  FRAG_DESC_SIZE,
  FRAG_OFFSET,
  FRAG_PAGE,
  FRAG_SIZE,
  SHINFO_DATAREF,
  SHINFO_FRAG_LIST,
  SHINFO_FRAGS,
  SHINFO_NR_FRAGS,
  SKB_DATA,
  SKB_DATA_LEN,
  SKB_DATAREF_MASK,
  SKB_DATAREF_SHIFT,
  SKB_DEV,
  SKB_END,
  SKB_FLAGS,
  SKB_HEAD,
  SKB_HEADER_UNSET,
  SKB_LEN,
  SKB_ALLOC_CPU,
  SKB_MAC_HEADER,
  SKB_NETWORK_HEADER,
  SKB_QUEUE_MAPPING,
  SKB_PROTOCOL,
  SKB_TRANSPORT_HEADER,
  SKB_TAIL,
  SKB_USERS,
  SKBF_CLONED,
  SKBF_FCLONE_MASK,
  SKBF_FCLONE_SHIFT,
  SKBF_NOHDR,
} from "./layout.js";

/** Hex rendering for error messages. */
export function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

/** `skb->len`. */
export function skbLen(cpu: SkbCpu, skb: number): number {
  return cpu.u32[(skb + SKB_LEN) >>> 2] as number;
}
/** `skb->data_len` (bytes in frags and frag_list). */
export function skbDataLen(cpu: SkbCpu, skb: number): number {
  return cpu.u32[(skb + SKB_DATA_LEN) >>> 2] as number;
}
/** `skb_headlen`: bytes in the linear area. */
export function skbHeadlen(cpu: SkbCpu, skb: number): number {
  return (cpu.u32[(skb + SKB_LEN) >>> 2] as number) - (cpu.u32[(skb + SKB_DATA_LEN) >>> 2] as number);
}
/** `skb->head` (arena offset of the buffer). */
export function skbHeadPtr(cpu: SkbCpu, skb: number): number {
  return cpu.u32[(skb + SKB_HEAD) >>> 2] as number;
}
/** `skb->data` (arena offset of the first packet byte). */
export function skbDataPtr(cpu: SkbCpu, skb: number): number {
  return cpu.u32[(skb + SKB_DATA) >>> 2] as number;
}
/** `skb_tail_pointer`. */
export function skbTailPtr(cpu: SkbCpu, skb: number): number {
  return (cpu.u32[(skb + SKB_HEAD) >>> 2] as number) + (cpu.u32[(skb + SKB_TAIL) >>> 2] as number);
}
/** `skb_end_pointer` = `skb_shinfo`. */
export function skbShinfo(cpu: SkbCpu, skb: number): number {
  return (cpu.u32[(skb + SKB_HEAD) >>> 2] as number) + (cpu.u32[(skb + SKB_END) >>> 2] as number);
}
/** `skb_headroom`. */
export function skbHeadroom(cpu: SkbCpu, skb: number): number {
  return (cpu.u32[(skb + SKB_DATA) >>> 2] as number) - (cpu.u32[(skb + SKB_HEAD) >>> 2] as number);
}
/** `skb_tailroom`: 0 for non-linear skbs. */
export function skbTailroom(cpu: SkbCpu, skb: number): number {
  if ((cpu.u32[(skb + SKB_DATA_LEN) >>> 2] as number) !== 0) return 0;
  return (cpu.u32[(skb + SKB_END) >>> 2] as number) - (cpu.u32[(skb + SKB_TAIL) >>> 2] as number);
}
/** `skb_end_offset`. */
export function skbEndOffset(cpu: SkbCpu, skb: number): number {
  return cpu.u32[(skb + SKB_END) >>> 2] as number;
}
/** `skb->fclone`. */
export function skbFclone(cpu: SkbCpu, skb: number): number {
  return ((cpu.u8[skb + SKB_FLAGS] as number) & SKBF_FCLONE_MASK) >>> SKBF_FCLONE_SHIFT;
}
/** Set `skb->fclone`. */
export function skbSetFclone(cpu: SkbCpu, skb: number, v: number): void {
  const f = cpu.u8[skb + SKB_FLAGS] as number;
  cpu.u8[skb + SKB_FLAGS] = (f & ~SKBF_FCLONE_MASK) | (v << SKBF_FCLONE_SHIFT);
}
/** Test a bit of the flags byte. */
export function skbFlag(cpu: SkbCpu, skb: number, bit: number): boolean {
  return ((cpu.u8[skb + SKB_FLAGS] as number) & bit) !== 0;
}
/** Set or clear a bit of the flags byte. */
export function skbSetFlag(cpu: SkbCpu, skb: number, bit: number, on: boolean): void {
  const f = cpu.u8[skb + SKB_FLAGS] as number;
  cpu.u8[skb + SKB_FLAGS] = on ? f | bit : f & ~bit;
}
/** `refcount_read(&skb->users)`. */
export function skbUsers(cpu: SkbCpu, skb: number): number {
  return Atomics.load(cpu.i32, (skb + SKB_USERS) >>> 2);
}
/** `skb_get`: take a reference. Returns the skb. */
export function skbGet(cpu: SkbCpu, skb: number): number {
  Atomics.add(cpu.i32, (skb + SKB_USERS) >>> 2, 1);
  return skb;
}
/** `skb_shared`: more than one user. */
export function skbShared(cpu: SkbCpu, skb: number): boolean {
  return Atomics.load(cpu.i32, (skb + SKB_USERS) >>> 2) !== 1;
}
/** `atomic_read(&shinfo->dataref)`. */
export function skbDataref(cpu: SkbCpu, skb: number): number {
  return Atomics.load(cpu.i32, (skbShinfo(cpu, skb) + SHINFO_DATAREF) >>> 2);
}
/** `skb_cloned`: the data buffer is shared with a clone. */
export function skbCloned(cpu: SkbCpu, skb: number): boolean {
  if (((cpu.u8[skb + SKB_FLAGS] as number) & SKBF_CLONED) === 0) return false;
  return (skbDataref(cpu, skb) & SKB_DATAREF_MASK) !== 1;
}
/** `skb_header_cloned`: the header part is shared. */
export function skbHeaderCloned(cpu: SkbCpu, skb: number): boolean {
  if (((cpu.u8[skb + SKB_FLAGS] as number) & SKBF_CLONED) === 0) return false;
  const d = skbDataref(cpu, skb);
  return (d & SKB_DATAREF_MASK) - (d >>> SKB_DATAREF_SHIFT) !== 1;
}
/** `__skb_header_release`: this skb will only touch payload from now on. */
export function skbHeaderRelease(cpu: SkbCpu, skb: number): void {
  skbSetFlag(cpu, skb, SKBF_NOHDR, true);
  Atomics.store(cpu.i32, (skbShinfo(cpu, skb) + SHINFO_DATAREF) >>> 2, 1 + (1 << SKB_DATAREF_SHIFT));
}
/** `skb_shinfo(skb)->nr_frags`. */
export function skbNrFrags(cpu: SkbCpu, skb: number): number {
  return cpu.u8[skbShinfo(cpu, skb) + SHINFO_NR_FRAGS] as number;
}
/** `skb_shinfo(skb)->frag_list`. */
export function skbFragList(cpu: SkbCpu, skb: number): number {
  return cpu.u32[(skbShinfo(cpu, skb) + SHINFO_FRAG_LIST) >>> 2] as number;
}
/** Byte offset of frag descriptor `i` of the skb whose shinfo is at `sh`. */
export function fragDesc(sh: number, i: number): number {
  return sh + SHINFO_FRAGS + i * FRAG_DESC_SIZE;
}
/** Page of frag `i`. */
export function skbFragPage(cpu: SkbCpu, skb: number, i: number): number {
  return cpu.u32[(fragDesc(skbShinfo(cpu, skb), i) + FRAG_PAGE) >>> 2] as number;
}
/** Offset into its page of frag `i`. */
export function skbFragOffset(cpu: SkbCpu, skb: number, i: number): number {
  return cpu.u32[(fragDesc(skbShinfo(cpu, skb), i) + FRAG_OFFSET) >>> 2] as number;
}
/** Size of frag `i`. */
export function skbFragSize(cpu: SkbCpu, skb: number, i: number): number {
  return cpu.u32[(fragDesc(skbShinfo(cpu, skb), i) + FRAG_SIZE) >>> 2] as number;
}
/** `skb->dev`. */
export function skbDev(cpu: SkbCpu, skb: number): number {
  return cpu.u32[(skb + SKB_DEV) >>> 2] as number;
}

/** Error for API misuse on an skb (the kernel would BUG or WARN). */
export class SkbError extends Error {
  /** The skb involved. */
  readonly skb: number;
  /** The operation, e.g. `skbPut`. */
  readonly op: string;
  constructor(op: string, skb: number, msg: string) {
    super(`${op}: ${msg} (skb ${hex(skb)})`);
    this.name = "SkbError";
    this.op = op;
    this.skb = skb;
  }
}

/** Describe an skb's pointers for panic messages (cold). */
export function skbDescribe(cpu: SkbCpu, skb: number): string {
  const u32 = cpu.u32;
  return (
    `len:${u32[(skb + SKB_LEN) >>> 2]} data_len:${u32[(skb + SKB_DATA_LEN) >>> 2]} ` +
    `head:${hex(u32[(skb + SKB_HEAD) >>> 2] as number)} data:${hex(u32[(skb + SKB_DATA) >>> 2] as number)} ` +
    `tail:${u32[(skb + SKB_TAIL) >>> 2]} end:${u32[(skb + SKB_END) >>> 2]} dev:${u32[(skb + SKB_DEV) >>> 2]}`
  );
}

/**
 * Clear an skb up to (not including) `tail`, as every builder does (the
 * kernel's `memset(skb, 0, offsetof(struct sk_buff, tail))`). 144 bytes as
 * 18 unrolled 8-byte stores: shells are 64-byte aligned, and this beats
 * `TypedArray.prototype.fill` on shared memory by about 3x.
 */
export function skbZeroHead(cpu: SkbCpu, skb: number): void {
  skbZeroHeadForBuild(cpu, skb);
  const f = cpu.f64;
  const b = skb >>> 3;
  f[b + 12] = 0;
  f[b + 13] = 0;
}

/**
 * skbZeroHead for a builder that writes bytes 96..111 whole right after it
 * (`buildAround`: the flags word, alloc_cpu, the three header offsets and
 * vlan_tci): clears the other 16 of the 18 words below `tail`. Two stores
 * less per packet head, the same state once the builder has run.
 */
export function skbZeroHeadForBuild(cpu: SkbCpu, skb: number): void {
  // `f[++b]` rather than `f[b + k]`: the same machine code, 17 bytes less
  // bytecode, which is what V8's inlining budget counts.
  const f = cpu.f64;
  let b = skb >>> 3;
  f[b] = 0;
  f[++b] = 0;
  f[++b] = 0;
  f[++b] = 0;
  f[++b] = 0;
  f[++b] = 0;
  f[++b] = 0;
  f[++b] = 0;
  f[++b] = 0;
  f[++b] = 0;
  f[++b] = 0;
  f[++b] = 0;
  b += 3;
  f[b] = 0;
  f[++b] = 0;
  f[++b] = 0;
  f[++b] = 0;
}
// The two skipped words are 12 and 13: bytes 96..111.
if (SKB_QUEUE_MAPPING !== 96 || SKB_ALLOC_CPU !== 100 || SKB_NETWORK_HEADER !== 104 || SKB_MAC_HEADER !== 110 || SKB_TAIL !== 144) {
  throw new Error("skb layout: skbZeroHeadForBuild's skipped words are out of step with layout.ts");
}

// ---- header offsets (offsets from head; SKB_HEADER_UNSET when not set) --------

/** `skb_mac_header`: arena offset of the MAC header. */
export function skbMacHeader(cpu: SkbCpu, skb: number): number {
  return (cpu.u32[(skb + SKB_HEAD) >>> 2] as number) + (cpu.u16[(skb + SKB_MAC_HEADER) >>> 1] as number);
}
/** `skb_network_header`: arena offset of the network header. */
export function skbNetworkHeader(cpu: SkbCpu, skb: number): number {
  return (cpu.u32[(skb + SKB_HEAD) >>> 2] as number) + (cpu.u16[(skb + SKB_NETWORK_HEADER) >>> 1] as number);
}
/** `skb_transport_header`: arena offset of the transport header. */
export function skbTransportHeader(cpu: SkbCpu, skb: number): number {
  return (cpu.u32[(skb + SKB_HEAD) >>> 2] as number) + (cpu.u16[(skb + SKB_TRANSPORT_HEADER) >>> 1] as number);
}
/** `skb_mac_header_was_set`. */
export function skbMacHeaderWasSet(cpu: SkbCpu, skb: number): boolean {
  return (cpu.u16[(skb + SKB_MAC_HEADER) >>> 1] as number) !== SKB_HEADER_UNSET;
}
/** `skb_transport_header_was_set`. */
export function skbTransportHeaderWasSet(cpu: SkbCpu, skb: number): boolean {
  return (cpu.u16[(skb + SKB_TRANSPORT_HEADER) >>> 1] as number) !== SKB_HEADER_UNSET;
}
/** `skb_reset_mac_header`: MAC header = data. */
export function skbResetMacHeader(cpu: SkbCpu, skb: number): void {
  cpu.u16[(skb + SKB_MAC_HEADER) >>> 1] = (cpu.u32[(skb + SKB_DATA) >>> 2] as number) - (cpu.u32[(skb + SKB_HEAD) >>> 2] as number);
}
/** `skb_reset_network_header`: network header = data. */
export function skbResetNetworkHeader(cpu: SkbCpu, skb: number): void {
  cpu.u16[(skb + SKB_NETWORK_HEADER) >>> 1] =
    (cpu.u32[(skb + SKB_DATA) >>> 2] as number) - (cpu.u32[(skb + SKB_HEAD) >>> 2] as number);
}
/** `skb_reset_transport_header`: transport header = data. */
export function skbResetTransportHeader(cpu: SkbCpu, skb: number): void {
  cpu.u16[(skb + SKB_TRANSPORT_HEADER) >>> 1] =
    (cpu.u32[(skb + SKB_DATA) >>> 2] as number) - (cpu.u32[(skb + SKB_HEAD) >>> 2] as number);
}
/** `skb_set_mac_header(skb, off)`: MAC header = data + off. */
export function skbSetMacHeader(cpu: SkbCpu, skb: number, off: number): void {
  cpu.u16[(skb + SKB_MAC_HEADER) >>> 1] =
    (cpu.u32[(skb + SKB_DATA) >>> 2] as number) - (cpu.u32[(skb + SKB_HEAD) >>> 2] as number) + off;
}
/** `skb_set_network_header(skb, off)`. */
export function skbSetNetworkHeader(cpu: SkbCpu, skb: number, off: number): void {
  cpu.u16[(skb + SKB_NETWORK_HEADER) >>> 1] =
    (cpu.u32[(skb + SKB_DATA) >>> 2] as number) - (cpu.u32[(skb + SKB_HEAD) >>> 2] as number) + off;
}
/** `skb_set_transport_header(skb, off)`. */
export function skbSetTransportHeader(cpu: SkbCpu, skb: number, off: number): void {
  cpu.u16[(skb + SKB_TRANSPORT_HEADER) >>> 1] =
    (cpu.u32[(skb + SKB_DATA) >>> 2] as number) - (cpu.u32[(skb + SKB_HEAD) >>> 2] as number) + off;
}
/** `skb->protocol` (host-order EtherType value, e.g. 0x0800). */
export function skbProtocol(cpu: SkbCpu, skb: number): number {
  return cpu.u16[(skb + SKB_PROTOCOL) >>> 1] as number;
}
/** Set `skb->protocol`. */
export function skbSetProtocol(cpu: SkbCpu, skb: number, proto: number): void {
  cpu.u16[(skb + SKB_PROTOCOL) >>> 1] = proto;
}

// ---- big-endian wire access on arena bytes ------------------------------------------

/** Read a big-endian u16 at arena offset `o`. */
export function be16(u8: Uint8Array, o: number): number {
  return ((u8[o] as number) << 8) | (u8[o + 1] as number);
}
/** Read a big-endian u32 at arena offset `o` (unsigned). */
export function be32(u8: Uint8Array, o: number): number {
  return (((u8[o] as number) << 24) | ((u8[o + 1] as number) << 16) | ((u8[o + 2] as number) << 8) | (u8[o + 3] as number)) >>> 0;
}
/**
 * Read a big-endian 32-bit value at `o` as a SIGNED int32. Use this on the
 * packet path: V8 keeps int32 values unboxed, while an unsigned value of
 * 2^31 or more that crosses a call boundary becomes a heap number (an
 * allocation per packet). Compare against `x | 0` constants.
 */
export function be32s(u8: Uint8Array, o: number): number {
  return ((u8[o] as number) << 24) | ((u8[o + 1] as number) << 16) | ((u8[o + 2] as number) << 8) | (u8[o + 3] as number);
}
/** Write a big-endian u16 at arena offset `o`. */
export function putBe16(u8: Uint8Array, o: number, v: number): void {
  u8[o] = v >>> 8;
  u8[o + 1] = v;
}
/** Write a big-endian u32 at arena offset `o`. */
export function putBe32(u8: Uint8Array, o: number, v: number): void {
  u8[o] = v >>> 24;
  u8[o + 1] = v >>> 16;
  u8[o + 2] = v >>> 8;
  u8[o + 3] = v;
}
