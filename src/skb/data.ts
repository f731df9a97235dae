/**
 * Data-area operations (spec §5.3): reserve, put, push, pull, trim, the
 * non-linear variants, head expansion, copying bytes out of any skb, and
 * adding RX page frags.
 *
 * ```
 *  head          data                 tail            end   shinfo
 *   |<-headroom->|<----- headlen ----->|<--tailroom-->|      |
 *   +------------+---------------------+--------------+------+----------+
 *   |            |  linear packet      |              | skb_shared_info |
 *   +------------+---------------------+--------------+------+----------+
 *                 + frags[0..nr_frags) + frag_list  = data_len bytes more
 * ```
 *
 * Checked operations throw an {@link SkbError} naming the skb, the length
 * and the room left (the kernel's skb_over_panic / skb_under_panic) and
 * leave the skb unchanged; `__`-prefixed twins do not check.
 *
 * @module
 */

import { pageRefAdd, virtToHeadPage } from "../mm/page-alloc.js";
import {
  fragDesc,
  hex,
  SkbError,
  skbCloned,
  skbDescribe,
  skbGet,
  skbHeadlen,
  skbShinfo,
  skbUsers,
} from "./access.js";
import type { SkbCpu } from "./cpu.js";
import { SKB_DROP_REASON } from "./drop-reason.js";
import { kmallocReserve } from "./alloc.js";
import { kfreeSkbList, kfreeSkbReason, skbFreeHead, skbPagePut, skbReleaseData } from "./free.js";
import {
  FRAG_OFFSET,
  FRAG_PAGE,
  FRAG_SIZE,
  MAX_SKB_FRAGS,
  SHINFO_DATAREF,
  SHINFO_FRAG_LIST,
  SHINFO_NR_FRAGS,
  SHINFO_SIZE,
  SKB_DATA,
  SKB_DATA_LEN,
  SKB_END,
  SKB_FLAGS,
  SKB_HDR_LEN,
  SKB_HEAD,
  SKB_HEADER_UNSET,
  SKB_LEN,
  SKB_MAC_HEADER,
  SKB_NETWORK_HEADER,
  SKB_NEXT,
  SKB_SK,
  SKB_TAIL,
  SKB_TRANSPORT_HEADER,
  SKB_TRUESIZE,
  SKBF_CLONED,
  SKBF_HEAD_FRAG,
  SKBF_NOHDR,
  SKBF_PP_RECYCLE,
  skbDataAlign,
} from "./layout.js";

/** ENOMEM, returned negated like the kernel. */
export const ENOMEM = 12;
/** EINVAL. */
export const EINVAL = 22;

/** `skb_reserve`: grow headroom of an empty skb by `len` bytes. Throws past end. */
export function skbReserve(cpu: SkbCpu, skb: number, len: number): void {
  const u32 = cpu.u32;
  const tail = u32[(skb + SKB_TAIL) >>> 2] as number;
  const end = u32[(skb + SKB_END) >>> 2] as number;
  if (len < 0 || tail + len > end) {
    throw new SkbError("skbReserve", skb, `cannot reserve ${len} bytes (tailroom ${end - tail})`);
  }
  u32[(skb + SKB_DATA) >>> 2] = (u32[(skb + SKB_DATA) >>> 2] as number) + len;
  u32[(skb + SKB_TAIL) >>> 2] = tail + len;
}

/**
 * `skb_put`: extend the linear data at the tail by `len`; returns the arena
 * offset of the old tail (where to write). Throws (skb_over_panic) past end,
 * and for non-linear skbs.
 */
export function skbPut(cpu: SkbCpu, skb: number, len: number): number {
  const u32 = cpu.u32;
  const tail = u32[(skb + SKB_TAIL) >>> 2] as number;
  const end = u32[(skb + SKB_END) >>> 2] as number;
  if ((u32[(skb + SKB_DATA_LEN) >>> 2] as number) !== 0) {
    throw new SkbError("skbPut", skb, `cannot put ${len} bytes: skb is non-linear (${skbDescribe(cpu, skb)})`);
  }
  if (len < 0 || tail + len > end) {
    throw new SkbError("skbPut", skb, `${len} bytes past tail (tailroom ${end - tail}; ${skbDescribe(cpu, skb)})`);
  }
  u32[(skb + SKB_TAIL) >>> 2] = tail + len;
  u32[(skb + SKB_LEN) >>> 2] = (u32[(skb + SKB_LEN) >>> 2] as number) + len;
  return (u32[(skb + SKB_HEAD) >>> 2] as number) + tail;
}

/** `__skb_put`: skbPut without the room check. */
export function __skbPut(cpu: SkbCpu, skb: number, len: number): number {
  const u32 = cpu.u32;
  const tail = u32[(skb + SKB_TAIL) >>> 2] as number;
  u32[(skb + SKB_TAIL) >>> 2] = tail + len;
  u32[(skb + SKB_LEN) >>> 2] = (u32[(skb + SKB_LEN) >>> 2] as number) + len;
  return (u32[(skb + SKB_HEAD) >>> 2] as number) + tail;
}

/** `skb_put_data`: put `len` bytes and copy them from arena offset `from`. */
export function skbPutData(cpu: SkbCpu, skb: number, from: number, len: number): number {
  const at = skbPut(cpu, skb, len);
  cpu.u8.copyWithin(at, from, from + len);
  return at;
}

/**
 * `skb_push`: prepend `len` bytes; returns the new data offset. Throws
 * (skb_under_panic) when the headroom is too small.
 */
export function skbPush(cpu: SkbCpu, skb: number, len: number): number {
  const u32 = cpu.u32;
  const data = u32[(skb + SKB_DATA) >>> 2] as number;
  const head = u32[(skb + SKB_HEAD) >>> 2] as number;
  if (len < 0 || data - len < head) {
    throw new SkbError("skbPush", skb, `${len} bytes before head (headroom ${data - head}; ${skbDescribe(cpu, skb)})`);
  }
  u32[(skb + SKB_DATA) >>> 2] = data - len;
  u32[(skb + SKB_LEN) >>> 2] = (u32[(skb + SKB_LEN) >>> 2] as number) + len;
  return data - len;
}

/** `__skb_push`: skbPush without the check. */
export function __skbPush(cpu: SkbCpu, skb: number, len: number): number {
  const u32 = cpu.u32;
  const data = (u32[(skb + SKB_DATA) >>> 2] as number) - len;
  u32[(skb + SKB_DATA) >>> 2] = data;
  u32[(skb + SKB_LEN) >>> 2] = (u32[(skb + SKB_LEN) >>> 2] as number) + len;
  return data;
}

/**
 * `__skb_pull`: remove `len` bytes from the start of the LINEAR data.
 * Throws if that would eat into the non-linear part (the kernel BUGs).
 */
export function __skbPull(cpu: SkbCpu, skb: number, len: number): number {
  const u32 = cpu.u32;
  const l = (u32[(skb + SKB_LEN) >>> 2] as number) - len;
  if (l < (u32[(skb + SKB_DATA_LEN) >>> 2] as number)) {
    throw new SkbError("skbPull", skb, `pulling ${len} bytes leaves len ${l} below data_len; use pskbMayPull first`);
  }
  u32[(skb + SKB_LEN) >>> 2] = l;
  const data = (u32[(skb + SKB_DATA) >>> 2] as number) + len;
  u32[(skb + SKB_DATA) >>> 2] = data;
  return data;
}

/** `skb_pull`: remove `len` bytes from the start; returns the new data offset, or 0 if `len > skb->len`. */
export function skbPull(cpu: SkbCpu, skb: number, len: number): number {
  if (len > (cpu.u32[(skb + SKB_LEN) >>> 2] as number) || len < 0) return 0;
  return __skbPull(cpu, skb, len);
}

/** `__skb_trim` / `skb_set_tail_pointer`: linear trim without checks. */
export function __skbTrim(cpu: SkbCpu, skb: number, len: number): void {
  const u32 = cpu.u32;
  u32[(skb + SKB_LEN) >>> 2] = len;
  u32[(skb + SKB_TAIL) >>> 2] = (u32[(skb + SKB_DATA) >>> 2] as number) - (u32[(skb + SKB_HEAD) >>> 2] as number) + len;
}

/** `skb_trim`: shorten a LINEAR skb to `len` bytes (no-op if already shorter). Throws on non-linear skbs. */
export function skbTrim(cpu: SkbCpu, skb: number, len: number): void {
  if ((cpu.u32[(skb + SKB_LEN) >>> 2] as number) <= len) return;
  if ((cpu.u32[(skb + SKB_DATA_LEN) >>> 2] as number) !== 0) {
    throw new SkbError("skbTrim", skb, `skb is non-linear (data_len ${cpu.u32[(skb + SKB_DATA_LEN) >>> 2]}); use pskbTrim`);
  }
  __skbTrim(cpu, skb, len);
}

/**
 * `skb_headers_offset_update`: shift the set header offsets by `off` after
 * the head moved (offsets are relative to head).
 */
function headersOffsetUpdate(cpu: SkbCpu, skb: number, off: number): void {
  const u16 = cpu.u16;
  const m = u16[(skb + SKB_MAC_HEADER) >>> 1] as number;
  if (m !== SKB_HEADER_UNSET) u16[(skb + SKB_MAC_HEADER) >>> 1] = m + off;
  u16[(skb + SKB_NETWORK_HEADER) >>> 1] = (u16[(skb + SKB_NETWORK_HEADER) >>> 1] as number) + off;
  const t = u16[(skb + SKB_TRANSPORT_HEADER) >>> 1] as number;
  if (t !== SKB_HEADER_UNSET) u16[(skb + SKB_TRANSPORT_HEADER) >>> 1] = t + off;
}

/**
 * `pskb_expand_head(skb, nhead, ntail)`: reallocate the head with `nhead`
 * more headroom and `ntail` more tailroom; afterwards the skb is not
 * cloned. The skb must not be shared. Returns 0 or -ENOMEM.
 */
export function pskbExpandHead(cpu: SkbCpu, skb: number, nhead: number, ntail: number): number {
  if (nhead < 0 || ntail < 0) throw new SkbError("pskbExpandHead", skb, `negative growth ${nhead}/${ntail}`);
  if (skbUsers(cpu, skb) !== 1) throw new SkbError("pskbExpandHead", skb, "skb is shared (users > 1)");
  const u32 = cpu.u32;
  const u8 = cpu.u8;
  const oldHead = u32[(skb + SKB_HEAD) >>> 2] as number;
  const oldEnd = u32[(skb + SKB_END) >>> 2] as number;
  const oldSh = oldHead + oldEnd;
  const size = skbDataAlign(oldEnd + nhead + ntail);
  const data = kmallocReserve(cpu, size);
  if (data === 0) return -ENOMEM;
  const newEnd = cpu.lastReserveSize - SHINFO_SIZE;
  // Copy the used head area [head, tail) and the shared info.
  const tail = u32[(skb + SKB_TAIL) >>> 2] as number;
  u8.copyWithin(data + nhead, oldHead, oldHead + tail);
  const newSh = data + newEnd;
  const nr = u8[oldSh + SHINFO_NR_FRAGS] as number;
  u8.copyWithin(newSh, oldSh, oldSh + SHINFO_SIZE);
  if (skbCloned(cpu, skb)) {
    // Others still use the old buffer: take our own refs on frags and the frag_list.
    for (let i = 0; i < nr; i++) {
      const page = u32[(fragDesc(oldSh, i) + FRAG_PAGE) >>> 2] as number;
      pageRefAdd(pageAllocOf(cpu, page), virtToHeadPage(pageAllocOf(cpu, page), page), 1);
    }
    for (let l = u32[(oldSh + SHINFO_FRAG_LIST) >>> 2] as number; l !== 0; l = u32[(l + SKB_NEXT) >>> 2] as number) {
      skbGet(cpu, l);
    }
    skbReleaseData(cpu, skb);
  } else {
    // We were the only user: frags moved with the shared info; free the old head.
    skbFreeHead(cpu, skb);
  }
  const off = nhead;
  const oldData = u32[(skb + SKB_DATA) >>> 2] as number;
  u32[(skb + SKB_HEAD) >>> 2] = data;
  u32[(skb + SKB_DATA) >>> 2] = data + (oldData - oldHead) + off;
  u32[(skb + SKB_TAIL) >>> 2] = tail + off;
  u32[(skb + SKB_END) >>> 2] = newEnd;
  headersOffsetUpdate(cpu, skb, off);
  u8[skb + SKB_FLAGS] = (u8[skb + SKB_FLAGS] as number) & ~(SKBF_CLONED | SKBF_NOHDR | SKBF_HEAD_FRAG);
  cpu.u16[(skb + SKB_HDR_LEN) >>> 1] = 0;
  Atomics.store(cpu.i32, (newSh + SHINFO_DATAREF) >>> 2, 1);
  if ((u32[(skb + SKB_SK) >>> 2] as number) === 0) {
    u32[(skb + SKB_TRUESIZE) >>> 2] = (u32[(skb + SKB_TRUESIZE) >>> 2] as number) + (newEnd - oldEnd);
  }
  return 0;
}

function pageAllocOf(cpu: SkbCpu, addr: number) {
  const pa = cpu.mm.pageAllocsById[cpu.mm.pageOwner[addr >>> 12] as number];
  if (pa === undefined) throw new Error(`skb: ${hex(addr)} is not inside a page`);
  return pa;
}

/** `skb_frag_ref`: take a page reference for frag `i`. */
export function skbFragRef(cpu: SkbCpu, skb: number, i: number): void {
  const page = cpu.u32[(fragDesc(skbShinfo(cpu, skb), i) + FRAG_PAGE) >>> 2] as number;
  const pa = pageAllocOf(cpu, page);
  pageRefAdd(pa, virtToHeadPage(pa, page), 1);
}

/**
 * `skb_copy_bits`: copy `len` bytes starting `offset` bytes into the packet
 * (negative offsets reach into the headroom) to arena offset `to`, walking
 * the linear area, frags and frag_list. Returns 0 or -EINVAL (-14 in the
 * kernel is -EFAULT) when the range is outside the packet.
 */
export function skbCopyBits(cpu: SkbCpu, skb: number, offset: number, to: number, len: number): number {
  const u32 = cpu.u32;
  const u8 = cpu.u8;
  if (offset > (u32[(skb + SKB_LEN) >>> 2] as number) - len) return -EINVAL;
  const data = u32[(skb + SKB_DATA) >>> 2] as number;
  const headlen = skbHeadlen(cpu, skb);
  let copy = headlen - offset;
  if (copy > 0) {
    if (copy > len) copy = len;
    u8.copyWithin(to, data + offset, data + offset + copy);
    len -= copy;
    if (len === 0) return 0;
    offset += copy;
    to += copy;
  }
  const sh = skbShinfo(cpu, skb);
  const nr = u8[sh + SHINFO_NR_FRAGS] as number;
  let start = headlen;
  for (let i = 0; i < nr; i++) {
    const d = fragDesc(sh, i);
    const fsize = u32[(d + FRAG_SIZE) >>> 2] as number;
    const end = start + fsize;
    copy = end - offset;
    if (copy > 0) {
      if (copy > len) copy = len;
      const src = (u32[(d + FRAG_PAGE) >>> 2] as number) + (u32[(d + FRAG_OFFSET) >>> 2] as number) + (offset - start);
      u8.copyWithin(to, src, src + copy);
      len -= copy;
      if (len === 0) return 0;
      offset += copy;
      to += copy;
    }
    start = end;
  }
  for (let l = u32[(sh + SHINFO_FRAG_LIST) >>> 2] as number; l !== 0; l = u32[(l + SKB_NEXT) >>> 2] as number) {
    const end = start + (u32[(l + SKB_LEN) >>> 2] as number);
    copy = end - offset;
    if (copy > 0) {
      if (copy > len) copy = len;
      if (skbCopyBits(cpu, l, offset - start, to, copy) !== 0) return -EINVAL;
      len -= copy;
      if (len === 0) return 0;
      offset += copy;
      to += copy;
    }
    start = end;
  }
  return len === 0 ? 0 : -EINVAL;
}

/**
 * `__pskb_pull_tail`: move `delta` bytes from frags / frag_list into the
 * linear area (expanding or uncloning the head first if needed). Returns the
 * new tail offset, or 0 on allocation failure.
 */
export function __pskbPullTail(cpu: SkbCpu, skb: number, delta: number): number {
  const u32 = cpu.u32;
  const u8 = cpu.u8;
  const eat0 = (u32[(skb + SKB_TAIL) >>> 2] as number) + delta - (u32[(skb + SKB_END) >>> 2] as number);
  if (eat0 > 0 || skbCloned(cpu, skb)) {
    if (pskbExpandHead(cpu, skb, 0, eat0 > 0 ? eat0 + 128 : 0) !== 0) return 0;
  }
  const tailPtr = (u32[(skb + SKB_HEAD) >>> 2] as number) + (u32[(skb + SKB_TAIL) >>> 2] as number);
  if (skbCopyBits(cpu, skb, skbHeadlen(cpu, skb), tailPtr, delta) !== 0) {
    throw new SkbError("pskbPullTail", skb, `cannot copy ${delta} bytes from the non-linear part`);
  }
  const sh = skbShinfo(cpu, skb);
  const nr = u8[sh + SHINFO_NR_FRAGS] as number;
  // How much must come out of the frag_list, after the frags?
  let eat = delta;
  for (let i = 0; i < nr && eat > 0; i++) eat -= Math.min(eat, u32[(fragDesc(sh, i) + FRAG_SIZE) >>> 2] as number);
  if (eat > 0) {
    // Eat from the frag_list: drop fully consumed members, trim the one we stop in.
    let list = u32[(sh + SHINFO_FRAG_LIST) >>> 2] as number;
    while (eat > 0 && list !== 0) {
      const llen = u32[(list + SKB_LEN) >>> 2] as number;
      if (llen <= eat) {
        eat -= llen;
        const next = u32[(list + SKB_NEXT) >>> 2] as number;
        u32[(list + SKB_NEXT) >>> 2] = 0;
        kfreeSkbReason(cpu, list, SKB_DROP_REASON.CONSUMED);
        list = next;
        continue;
      }
      if (skbUsers(cpu, list) !== 1 || skbCloned(cpu, list)) {
        // Not ours alone: make a private copy of the part we keep.
        const priv = pskbCopyForPull(cpu, list);
        if (priv === 0) return 0;
        u32[(priv + SKB_NEXT) >>> 2] = u32[(list + SKB_NEXT) >>> 2] as number;
        u32[(list + SKB_NEXT) >>> 2] = 0;
        kfreeSkbReason(cpu, list, SKB_DROP_REASON.CONSUMED);
        list = priv;
      }
      if (!pskbMayPull(cpu, list, eat)) return 0;
      __skbPull(cpu, list, eat);
      eat = 0;
    }
    u32[(sh + SHINFO_FRAG_LIST) >>> 2] = list;
  }
  // Drop or shorten the frags that were copied.
  eat = delta;
  let k = 0;
  for (let i = 0; i < nr; i++) {
    const d = fragDesc(sh, i);
    const size = u32[(d + FRAG_SIZE) >>> 2] as number;
    if (size <= eat) {
      unrefFrag(cpu, skb, d);
      eat -= size;
    } else {
      const kd = fragDesc(sh, k);
      if (kd !== d) u8.copyWithin(kd, d, d + 16);
      if (eat > 0) {
        u32[(kd + FRAG_OFFSET) >>> 2] = (u32[(kd + FRAG_OFFSET) >>> 2] as number) + eat;
        u32[(kd + FRAG_SIZE) >>> 2] = size - eat;
        eat = 0;
      }
      k++;
    }
  }
  u8[sh + SHINFO_NR_FRAGS] = k;
  u32[(skb + SKB_TAIL) >>> 2] = (u32[(skb + SKB_TAIL) >>> 2] as number) + delta;
  u32[(skb + SKB_DATA_LEN) >>> 2] = (u32[(skb + SKB_DATA_LEN) >>> 2] as number) - delta;
  return (u32[(skb + SKB_TAIL) >>> 2] as number) + (u32[(skb + SKB_HEAD) >>> 2] as number);
}

let copyHook: ((cpu: SkbCpu, skb: number) => number) | null = null;
/** Wiring from clone.ts (avoids an import cycle): private copy of a shared frag_list member. */
export function setPullCopyHook(fn: (cpu: SkbCpu, skb: number) => number): void {
  copyHook = fn;
}
function pskbCopyForPull(cpu: SkbCpu, skb: number): number {
  if (copyHook === null) throw new Error("pskbMayPull: clone module not loaded");
  return copyHook(cpu, skb);
}

function unrefFrag(cpu: SkbCpu, skb: number, d: number): void {
  skbPagePut(cpu, cpu.u32[(d + FRAG_PAGE) >>> 2] as number, ((cpu.u8[skb + SKB_FLAGS] as number) & SKBF_PP_RECYCLE) !== 0);
}

/**
 * `pskb_may_pull`: make sure the first `len` bytes are linear. True when
 * they already are or could be pulled in; false when `len > skb->len` or
 * memory ran out.
 */
export function pskbMayPull(cpu: SkbCpu, skb: number, len: number): boolean {
  const headlen = skbHeadlen(cpu, skb);
  if (len <= headlen) return true;
  if (len > (cpu.u32[(skb + SKB_LEN) >>> 2] as number)) return false;
  return __pskbPullTail(cpu, skb, len - headlen) !== 0;
}

/** `pskb_pull`: pull `len` bytes even from a non-linear skb; new data offset or 0. */
export function pskbPull(cpu: SkbCpu, skb: number, len: number): number {
  if (!pskbMayPull(cpu, skb, len)) return 0;
  return __skbPull(cpu, skb, len);
}

/**
 * `pskb_trim`: shorten any skb to `len` bytes, dropping frags and frag_list
 * members past it (uncloning first when the data is shared). Returns 0 or
 * -ENOMEM.
 */
export function pskbTrim(cpu: SkbCpu, skb: number, len: number): number {
  const u32 = cpu.u32;
  const u8 = cpu.u8;
  if (len >= (u32[(skb + SKB_LEN) >>> 2] as number)) return 0;
  if ((u32[(skb + SKB_DATA_LEN) >>> 2] as number) === 0) {
    __skbTrim(cpu, skb, len);
    return 0;
  }
  if (skbCloned(cpu, skb) && pskbExpandHead(cpu, skb, 0, 0) !== 0) return -ENOMEM;
  let offset = skbHeadlen(cpu, skb);
  const sh = skbShinfo(cpu, skb);
  const nr = u8[sh + SHINFO_NR_FRAGS] as number;
  let i = 0;
  let done = false;
  if (offset < len) {
    for (; i < nr; i++) {
      const d = fragDesc(sh, i);
      const end = offset + (u32[(d + FRAG_SIZE) >>> 2] as number);
      if (end < len) {
        offset = end;
        continue;
      }
      u32[(d + FRAG_SIZE) >>> 2] = len - offset;
      i++;
      done = true;
      break;
    }
  } else {
    done = true;
  }
  if (done) {
    // Cut lands in the head or a frag: drop every later frag and the whole frag_list.
    for (let j = i; j < nr; j++) unrefFrag(cpu, skb, fragDesc(sh, j));
    u8[sh + SHINFO_NR_FRAGS] = i;
    const fl = u32[(sh + SHINFO_FRAG_LIST) >>> 2] as number;
    if (fl !== 0) {
      u32[(sh + SHINFO_FRAG_LIST) >>> 2] = 0;
      kfreeSkbList(cpu, fl);
    }
  } else {
    // Cut lands inside the frag_list.
    let prev = 0;
    let frag = u32[(sh + SHINFO_FRAG_LIST) >>> 2] as number;
    while (frag !== 0) {
      const end = offset + (u32[(frag + SKB_LEN) >>> 2] as number);
      if (end < len) {
        offset = end;
        prev = frag;
        frag = u32[(frag + SKB_NEXT) >>> 2] as number;
        continue;
      }
      if (skbUsers(cpu, frag) !== 1 || skbCloned(cpu, frag)) {
        const priv = pskbCopyForPull(cpu, frag);
        if (priv === 0) return -ENOMEM;
        u32[(priv + SKB_NEXT) >>> 2] = u32[(frag + SKB_NEXT) >>> 2] as number;
        u32[(frag + SKB_NEXT) >>> 2] = 0;
        kfreeSkbReason(cpu, frag, SKB_DROP_REASON.CONSUMED);
        if (prev === 0) u32[(sh + SHINFO_FRAG_LIST) >>> 2] = priv;
        else u32[(prev + SKB_NEXT) >>> 2] = priv;
        frag = priv;
      }
      const rest = u32[(frag + SKB_NEXT) >>> 2] as number;
      if (rest !== 0) {
        u32[(frag + SKB_NEXT) >>> 2] = 0;
        kfreeSkbList(cpu, rest);
      }
      if (pskbTrim(cpu, frag, len - offset) !== 0) return -ENOMEM;
      break;
    }
  }
  const headlen = skbHeadlen(cpu, skb);
  const oldLen = u32[(skb + SKB_LEN) >>> 2] as number;
  if (len > headlen) {
    u32[(skb + SKB_DATA_LEN) >>> 2] = (u32[(skb + SKB_DATA_LEN) >>> 2] as number) - (oldLen - len);
    u32[(skb + SKB_LEN) >>> 2] = len;
  } else {
    u32[(skb + SKB_DATA_LEN) >>> 2] = 0;
    __skbTrim(cpu, skb, len);
  }
  return 0;
}

/**
 * `skb_add_rx_frag`: attach `size` bytes at `off` in `page` as frag `i`
 * (the skb takes over one page reference the caller holds) and account
 * `truesize`. Throws for `i` ≥ MAX_SKB_FRAGS.
 */
export function skbAddRxFrag(cpu: SkbCpu, skb: number, i: number, page: number, off: number, size: number, truesize: number): void {
  if (i < 0 || i >= MAX_SKB_FRAGS) {
    throw new SkbError("skbAddRxFrag", skb, `frag index ${i} out of range (MAX_SKB_FRAGS ${MAX_SKB_FRAGS})`);
  }
  const u32 = cpu.u32;
  const sh = skbShinfo(cpu, skb);
  const d = fragDesc(sh, i);
  u32[(d + FRAG_PAGE) >>> 2] = page;
  u32[(d + FRAG_OFFSET) >>> 2] = off;
  u32[(d + FRAG_SIZE) >>> 2] = size;
  if (i + 1 > (cpu.u8[sh + SHINFO_NR_FRAGS] as number)) cpu.u8[sh + SHINFO_NR_FRAGS] = i + 1;
  u32[(skb + SKB_LEN) >>> 2] = (u32[(skb + SKB_LEN) >>> 2] as number) + size;
  u32[(skb + SKB_DATA_LEN) >>> 2] = (u32[(skb + SKB_DATA_LEN) >>> 2] as number) + size;
  u32[(skb + SKB_TRUESIZE) >>> 2] = (u32[(skb + SKB_TRUESIZE) >>> 2] as number) + truesize;
}

