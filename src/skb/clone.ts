/**
 * Clones and copies (spec §5.2): `skb_clone` with the fast-clone companion,
 * `skb_copy` (everything linear and private) and `pskb_copy` (private
 * linear part, shared frags).
 *
 * @module
 */

import { kmemCacheAlloc } from "../mm/slab.js";
import { skbHeadlen, skbHeadroom, skbShinfo } from "./access.js";
import { allocSkb } from "./alloc.js";
import type { SkbCpu } from "./cpu.js";
import { pskbExpandHead, setPullCopyHook, skbCopyBits, skbFragRef, skbPut, skbReserve } from "./data.js";
import {
  FCLONE_REF,
  FCLONE_SKB2,
  SHINFO_DATAREF,
  SHINFO_FRAG_LIST,
  SHINFO_FRAGS,
  SHINFO_GSO_SEGS,
  SHINFO_GSO_SIZE,
  SHINFO_GSO_TYPE,
  SHINFO_NR_FRAGS,
  SKB_ALLOC_CPU,
  SKB_ALLOC_FCLONE,
  SKB_DATA,
  SKB_DST,
  SKB_END,
  SKB_NFCT,
  SKB_QUEUE_MAPPING,
  SKB_DATA_LEN,
  SKB_TRUESIZE,
  SKB_DESTRUCTOR,
  SKB_FCLONE_CLONE,
  SKB_FCLONE_ORIG,
  SKB_FLAGS,
  SKB_HDR_LEN,
  SKB_HEAD,
  SKB_HEADER_UNSET,
  SKB_LEN,
  SKB_MAC_HEADER,
  SKB_PKT_TYPE,
  SKB_PROTOCOL,
  SKB_NETWORK_HEADER,
  SKB_NEXT,
  SKB_PREV,
  SKB_SK,
  SKB_STRUCT_SIZE,
  SKB_TAIL,
  SKB_TRANSPORT_HEADER,
  SKB_USERS,
  SKBF_CLONED,
  SKBF_FCLONE_MASK,
  SKBF_FCLONE_SHIFT,
  SKBF_NOHDR,
  SKBF_PEEKED,
  SKB_DEV,
  SKB_CB,
  SKB_CB_SIZE,
  SKB_HEADERS_START,
  SKB_PRIORITY,
  SKB_IIF,
  SKB_TSTAMP,
  SKB_MARK,
  SKB_HASH,
} from "./layout.js";
import { skbGet } from "./access.js";
import { skbNfctGet } from "./free.js";

/**
 * `skb_clone`: a new shell sharing the data buffer. Uses the fast-clone
 * companion when this skb is an unused fclone original, else a slab shell
 * (never the NAPI cache). Returns 0 on allocation failure.
 */
export function skbClone(cpu: SkbCpu, skb: number): number {
  const u8 = cpu.u8;
  const i32 = cpu.i32;
  const fc = ((u8[skb + SKB_FLAGS] as number) & SKBF_FCLONE_MASK) >>> SKBF_FCLONE_SHIFT;
  let n: number;
  let nFclone: number;
  if (fc === SKB_FCLONE_ORIG && Atomics.load(i32, (skb + FCLONE_REF) >>> 2) === 1) {
    n = skb + FCLONE_SKB2;
    Atomics.store(i32, (skb + FCLONE_REF) >>> 2, 2);
    nFclone = SKB_FCLONE_CLONE;
  } else {
    n = kmemCacheAlloc(cpu.headCache);
    if (n === 0) return 0;
    nFclone = 0;
  }
  __skbClone(cpu, n, skb, nFclone);
  return n;
}

/** `__skb_clone`: copy the header into shell `n`, share the data (dataref + 1). */
function __skbClone(cpu: SkbCpu, n: number, skb: number, nFclone: number): void {
  const u32 = cpu.u32;
  const u8 = cpu.u8;
  u32.copyWithin(n >>> 2, skb >>> 2, (skb + SKB_STRUCT_SIZE) >>> 2);
  u32[(n + SKB_NEXT) >>> 2] = 0;
  u32[(n + SKB_PREV) >>> 2] = 0;
  u32[(n + SKB_SK) >>> 2] = 0;
  u32[(n + SKB_DESTRUCTOR) >>> 2] = 0;
  const f = u8[skb + SKB_FLAGS] as number;
  if ((f & SKBF_NOHDR) !== 0) cpu.u16[(n + SKB_HDR_LEN) >>> 1] = skbHeadroom(cpu, skb);
  // cloned = 1, nohdr = 0, peeked = 0, fclone = what the shell is.
  u8[n + SKB_FLAGS] =
    ((f | SKBF_CLONED) & ~(SKBF_NOHDR | SKBF_PEEKED | SKBF_FCLONE_MASK)) | (nFclone << SKBF_FCLONE_SHIFT);
  u32[(n + SKB_USERS) >>> 2] = 1;
  cpu.u16[(n + SKB_ALLOC_CPU) >>> 1] = cpu.id;
  const ct = u32[(n + SKB_NFCT) >>> 2] as number;
  if (ct !== 0) skbNfctGet(cpu, ct);
  Atomics.add(cpu.i32, (skbShinfo(cpu, skb) + SHINFO_DATAREF) >>> 2, 1);
  u8[skb + SKB_FLAGS] = (u8[skb + SKB_FLAGS] as number) | SKBF_CLONED;
}

// skbCopyHeader copies [SKB_HEADERS_START, SKB_TAIL) as one range: these must stay inside it.
for (const f of [SKB_PROTOCOL, SKB_PKT_TYPE, SKB_PRIORITY, SKB_IIF, SKB_MARK, SKB_HASH, SKB_MAC_HEADER, SKB_NETWORK_HEADER]) {
  if (f < SKB_HEADERS_START || f >= SKB_TAIL) throw new Error("skb layout: a header-group field lies outside skbCopyHeader's range");
}

/** `skb_copy_header`: header fields and GSO state from `old` to `n` (data pointers untouched). */
export function skbCopyHeader(cpu: SkbCpu, n: number, old: number): void {
  const u32 = cpu.u32;
  const u16 = cpu.u16;
  // __copy_skb_header: dev, tstamp, cb, dst, conntrack (+ref), queue_mapping,
  // priority, iif, the headers group.
  u32[(n + SKB_DEV) >>> 2] = u32[(old + SKB_DEV) >>> 2] as number;
  u32[(n + SKB_DST) >>> 2] = u32[(old + SKB_DST) >>> 2] as number;
  u16[(n + SKB_QUEUE_MAPPING) >>> 1] = u16[(old + SKB_QUEUE_MAPPING) >>> 1] as number;
  const ct = u32[(old + SKB_NFCT) >>> 2] as number;
  u32[(n + SKB_NFCT) >>> 2] = ct;
  if (ct !== 0) skbNfctGet(cpu, ct);
  u32.copyWithin((n + SKB_TSTAMP) >>> 2, (old + SKB_TSTAMP) >>> 2, (old + SKB_CB + SKB_CB_SIZE) >>> 2);
  // The header group up to tail, priority, iif, mark and hash included.
  u32.copyWithin((n + SKB_HEADERS_START) >>> 2, (old + SKB_HEADERS_START) >>> 2, (old + SKB_TAIL) >>> 2);
  u16[(n + SKB_ALLOC_CPU) >>> 1] = cpu.id;
  // Header offsets are relative to head: shift by the headroom difference.
  const off = skbHeadroom(cpu, n) - skbHeadroom(cpu, old);
  const m = u16[(old + SKB_MAC_HEADER) >>> 1] as number;
  u16[(n + SKB_MAC_HEADER) >>> 1] = m === SKB_HEADER_UNSET ? m : m + off;
  u16[(n + SKB_NETWORK_HEADER) >>> 1] = (u16[(old + SKB_NETWORK_HEADER) >>> 1] as number) + off;
  const t = u16[(old + SKB_TRANSPORT_HEADER) >>> 1] as number;
  u16[(n + SKB_TRANSPORT_HEADER) >>> 1] = t === SKB_HEADER_UNSET ? t : t + off;
  const so = skbShinfo(cpu, old);
  const sn = skbShinfo(cpu, n);
  u16[(sn + SHINFO_GSO_SIZE) >>> 1] = u16[(so + SHINFO_GSO_SIZE) >>> 1] as number;
  u16[(sn + SHINFO_GSO_SEGS) >>> 1] = u16[(so + SHINFO_GSO_SEGS) >>> 1] as number;
  u32[(sn + SHINFO_GSO_TYPE) >>> 2] = u32[(so + SHINFO_GSO_TYPE) >>> 2] as number;
}

/**
 * `skb_copy`: a fully private, LINEAR copy (headroom, data, frags and
 * frag_list flattened). Returns 0 on allocation failure.
 */
export function skbCopy(cpu: SkbCpu, skb: number): number {
  const headroom = skbHeadroom(cpu, skb);
  const len = cpu.u32[(skb + SKB_LEN) >>> 2] as number;
  // As the kernel: room for the whole old buffer plus the non-linear bytes.
  const n = allocSkb(cpu, (cpu.u32[(skb + SKB_END) >>> 2] as number) + (cpu.u32[(skb + SKB_DATA_LEN) >>> 2] as number), 0);
  if (n === 0) return 0;
  skbReserve(cpu, n, headroom);
  skbPut(cpu, n, len);
  const nHead = cpu.u32[(n + SKB_HEAD) >>> 2] as number;
  if (skbCopyBits(cpu, skb, -headroom, nHead, headroom + len) !== 0) {
    throw new Error("skbCopy: skb_copy_bits failed on a consistent skb");
  }
  skbCopyHeader(cpu, n, skb);
  return n;
}

/**
 * `__pskb_copy_fclone`: private copy of the linear part (with `headroom`
 * bytes of headroom), frags and frag_list shared by reference. `fclone`
 * asks for an fclone original. Returns 0 on allocation failure.
 */
export function __pskbCopyFclone(cpu: SkbCpu, skb: number, headroom: number, fclone: boolean): number {
  const u32 = cpu.u32;
  const headlen = skbHeadlen(cpu, skb);
  const n = allocSkb(cpu, headroom + headlen, fclone ? SKB_ALLOC_FCLONE : 0);
  if (n === 0) return 0;
  skbReserve(cpu, n, headroom);
  const at = skbPut(cpu, n, headlen);
  const data = u32[(skb + SKB_DATA) >>> 2] as number;
  cpu.u8.copyWithin(at, data, data + headlen);
  u32[(n + SKB_LEN) >>> 2] = u32[(skb + SKB_LEN) >>> 2] as number;
  u32[(n + SKB_DATA_LEN) >>> 2] = u32[(skb + SKB_DATA_LEN) >>> 2] as number;
  u32[(n + SKB_TRUESIZE) >>> 2] = (u32[(n + SKB_TRUESIZE) >>> 2] as number) + (u32[(skb + SKB_DATA_LEN) >>> 2] as number);
  const so = skbShinfo(cpu, skb);
  const sn = skbShinfo(cpu, n);
  const nr = cpu.u8[so + SHINFO_NR_FRAGS] as number;
  if (nr > 0) {
    cpu.u8.copyWithin(sn + SHINFO_FRAGS, so + SHINFO_FRAGS, so + SHINFO_FRAGS + nr * 16);
    cpu.u8[sn + SHINFO_NR_FRAGS] = nr;
    for (let i = 0; i < nr; i++) skbFragRef(cpu, n, i);
  }
  const fl = u32[(so + SHINFO_FRAG_LIST) >>> 2] as number;
  if (fl !== 0) {
    u32[(sn + SHINFO_FRAG_LIST) >>> 2] = fl;
    for (let l = fl; l !== 0; l = u32[(l + SKB_NEXT) >>> 2] as number) skbGet(cpu, l);
  }
  skbCopyHeader(cpu, n, skb);
  return n;
}

/** `pskb_copy`: __pskbCopyFclone with the source's headroom, no fclone. */
export function pskbCopy(cpu: SkbCpu, skb: number): number {
  return __pskbCopyFclone(cpu, skb, skbHeadroom(cpu, skb), false);
}

/** `skb_unclone`: make the data private if it is shared. 0 or -ENOMEM. */
export function skbUnclone(cpu: SkbCpu, skb: number): number {
  if (((cpu.u8[skb + SKB_FLAGS] as number) & SKBF_CLONED) === 0) return 0;
  const d = Atomics.load(cpu.i32, (skbShinfo(cpu, skb) + SHINFO_DATAREF) >>> 2) & 0xffff;
  if (d === 1) return 0;
  return pskbExpandHead(cpu, skb, 0, 0);
}

// pskbMayPull / pskbTrim need a private copy of shared frag_list members.
setPullCopyHook((cpu, skb) => pskbCopy(cpu, skb));



