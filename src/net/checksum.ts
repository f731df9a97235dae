/**
 * Internet checksums (RFC 1071) and incremental updates (RFC 1624) over
 * arena bytes, in the kernel's vocabulary.
 *
 * A "wsum" (`__wsum`) is a one's-complement partial sum of big-endian
 * 16-bit words. The kernel keeps it in 32 bits; here every function returns
 * it partly folded, below 2^17, which is the same value modulo 0xffff (all
 * that one's-complement arithmetic sees) and, unlike a value up to 2^32,
 * always a V8 small integer: no heap number per call on the packet path. A
 * "sum16" (`__sum16`) is the folded, complemented 16-bit value that goes in
 * a header. Addresses may be passed signed or unsigned. Nothing here
 * allocates.
 *
 * @module
 */

import type { SkbCpu } from "../skb/cpu.js";
import { fragDesc, skbHeadlen, skbShinfo } from "../skb/access.js";
import {
  FRAG_OFFSET,
  FRAG_PAGE,
  FRAG_SIZE,
  SHINFO_FRAG_LIST,
  SHINFO_NR_FRAGS,
  SKB_DATA,
  SKB_LEN,
  SKB_NEXT,
} from "../skb/layout.js";

/** Fold a non-negative sum below 2^53 to below 2^17 (same value modulo 0xffff). */
function fold32(s: number): number {
  if (s > 0x7fffffff) s = (s % 0x10000) + Math.floor(s / 0x10000);
  return ((s & 0xffff) + (s >>> 16)) | 0;
}

/**
 * `csum_partial`: add the bytes `u8[off .. off+len)` (as big-endian 16-bit
 * words; an odd trailing byte is the high half of a word) to `sum`.
 */
export function csumPartial(u8: Uint8Array, off: number, len: number, sum: number): number {
  let s = sum;
  const end = off + (len & ~1);
  let i = off;
  // Unrolled by 8 bytes; each add stays well below 2^53.
  for (; i + 8 <= end; i += 8) {
    s +=
      (((u8[i] as number) << 8) | (u8[i + 1] as number)) +
      (((u8[i + 2] as number) << 8) | (u8[i + 3] as number)) +
      (((u8[i + 4] as number) << 8) | (u8[i + 5] as number)) +
      (((u8[i + 6] as number) << 8) | (u8[i + 7] as number));
  }
  for (; i < end; i += 2) s += ((u8[i] as number) << 8) | (u8[i + 1] as number);
  if (len & 1) s += (u8[off + len - 1] as number) << 8;
  return fold32(s);
}

/** `csum_add`: one's-complement add of two wsums. */
export function csumAdd(a: number, b: number): number {
  return fold32(a + b);
}

/** `csum_sub`: a − b in one's complement (−b ≡ 0xffff − b folded). */
export function csumSub(a: number, b: number): number {
  return fold32(a + 0xffff - fold16(fold32(b)));
}

/**
 * `csum_block_add`: add `sum2`, computed over bytes that start at an odd
 * `offset` within the summed stream (its bytes are then byte-swapped).
 */
export function csumBlockAdd(sum: number, sum2: number, offset: number): number {
  if (offset & 1) {
    const f = fold16(sum2);
    sum2 = ((f & 0xff) << 8) | (f >>> 8);
  }
  return csumAdd(sum, sum2);
}

/** Fold a value below 2^32 to 16 bits (end-around carry). */
function fold16(s: number): number {
  s = (s & 0xffff) + (s >>> 16);
  s = (s & 0xffff) + (s >>> 16);
  return s;
}

/** `csum_fold`: fold a wsum to 16 bits and complement it (the header value). */
export function csumFold(sum: number): number {
  return ~fold16(fold32(sum)) & 0xffff;
}

/** `csum_unfold`: a header sum16 as a wsum. */
export function csumUnfold(sum16: number): number {
  return sum16 & 0xffff;
}

/** `ip_fast_csum`: the IPv4 header checksum of `ihl` 32-bit words at `iph` (0 means valid when verifying). */
export function ipFastCsum(u8: Uint8Array, iph: number, ihl: number): number {
  return csumFold(csumPartial(u8, iph, ihl * 4, 0));
}

/**
 * `csum_tcpudp_nofold`: the pseudo-header sum (saddr, daddr, proto, len)
 * added to `sum`. Addresses are host-order u32 values of the wire bytes.
 */
export function csumTcpudpNofold(saddr: number, daddr: number, len: number, proto: number, sum: number): number {
  return fold32(sum + (saddr >>> 16) + (saddr & 0xffff) + (daddr >>> 16) + (daddr & 0xffff) + proto + (len & 0xffff) + (len >>> 16));
}

/** `csum_tcpudp_magic`: folded pseudo-header checksum. */
export function csumTcpudpMagic(saddr: number, daddr: number, len: number, proto: number, sum: number): number {
  return csumFold(csumTcpudpNofold(saddr, daddr, len, proto, sum));
}

/**
 * `csum_replace2`: update the sum16 stored big-endian at `csumOff` after a
 * 16-bit field changed from `from` to `to` (RFC 1624 eqn. 3).
 */
export function csumReplace2(u8: Uint8Array, csumOff: number, from: number, to: number): void {
  const hc = ((u8[csumOff] as number) << 8) | (u8[csumOff + 1] as number);
  const s = (~hc & 0xffff) + (~from & 0xffff) + (to & 0xffff);
  const r = ~fold16(s) & 0xffff;
  u8[csumOff] = r >>> 8;
  u8[csumOff + 1] = r;
}

/** `csum_replace4`: as csumReplace2 for a 32-bit field (e.g. an IPv4 address). */
export function csumReplace4(u8: Uint8Array, csumOff: number, from: number, to: number): void {
  const hc = ((u8[csumOff] as number) << 8) | (u8[csumOff + 1] as number);
  const s = (~hc & 0xffff) + (~(from >>> 16) & 0xffff) + (~from & 0xffff) + (to >>> 16) + (to & 0xffff);
  const r = ~fold16(s) & 0xffff;
  u8[csumOff] = r >>> 8;
  u8[csumOff + 1] = r;
}

/**
 * `skb_checksum`: wsum of `len` packet bytes from `offset` (relative to
 * `skb->data`), over the linear part, frags and frag_list, added to `sum`.
 */
export function skbChecksum(cpu: SkbCpu, skb: number, offset: number, len: number, sum: number): number {
  const u8 = cpu.u8;
  const u32 = cpu.u32;
  const headlen = skbHeadlen(cpu, skb);
  let pos = 0; // bytes summed so far (for odd-offset rotation)
  let copy = headlen - offset;
  if (copy > 0) {
    if (copy > len) copy = len;
    sum = csumPartial(u8, (u32[(skb + SKB_DATA) >>> 2] as number) + offset, copy, sum);
    len -= copy;
    if (len === 0) return sum;
    offset += copy;
    pos = copy;
  }
  const sh = skbShinfo(cpu, skb);
  const nr = u8[sh + SHINFO_NR_FRAGS] as number;
  let start = headlen;
  for (let i = 0; i < nr; i++) {
    const d = fragDesc(sh, i);
    const end = start + (u32[(d + FRAG_SIZE) >>> 2] as number);
    copy = end - offset;
    if (copy > 0) {
      if (copy > len) copy = len;
      const src = (u32[(d + FRAG_PAGE) >>> 2] as number) + (u32[(d + FRAG_OFFSET) >>> 2] as number) + (offset - start);
      sum = csumBlockAdd(sum, csumPartial(u8, src, copy, 0), pos);
      len -= copy;
      if (len === 0) return sum;
      offset += copy;
      pos += copy;
    }
    start = end;
  }
  for (let l = u32[(sh + SHINFO_FRAG_LIST) >>> 2] as number; l !== 0; l = u32[(l + SKB_NEXT) >>> 2] as number) {
    const end = start + (u32[(l + SKB_LEN) >>> 2] as number);
    copy = end - offset;
    if (copy > 0) {
      if (copy > len) copy = len;
      sum = csumBlockAdd(sum, skbChecksum(cpu, l, offset - start, copy, 0), pos);
      len -= copy;
      if (len === 0) return sum;
      offset += copy;
      pos += copy;
    }
    start = end;
  }
  if (len !== 0) throw new RangeError(`skbChecksum: range runs ${len} bytes past the end of skb 0x${skb.toString(16)}`);
  return sum;
}
