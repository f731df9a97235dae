/**
 * GSO (generic segmentation offload) for TCP and UDP over IPv4
 * (`skb_gso_segment` → `inet_gso_segment` → `tcp4_gso_segment` /
 * `__udp_gso_segment` → `skb_segment`), plus the helpers the transmit path
 * uses to decide whether it must segment: `skbIsGso`,
 * `skbGsoValidateNetworkLen`, and `skbChecksumHelp` (resolve a
 * CHECKSUM_PARTIAL in software).
 *
 * ```
 *  GSO skb (data at MAC or IP header)                       segments (next-linked)
 *  +-----+-----+-----+---------------------------+           +-----+-----+-----+------+
 *  | eth | ip  | tcp | payload: linear, frags,   |   ---->   | eth | ip' | tcp'| mss  |  x ceil(payload / mss)
 *  +-----+-----+-----+ frag_list members ...     |           +-----+-----+-----+------+
 *                    +---------------------------+            headers copied;  payload referenced
 *                                                             as page frags (zero-copy) or copied
 * ```
 *
 * Per segment i of n (as the kernel):
 * - IPv4: `tot_len` of the segment, `id = id0 + i` (fixed when the skb is
 *   SKB_GSO_TCP_FIXEDID), header checksum recomputed;
 * - TCP: `seq = seq0 + i * mss`; CWR only on the first segment, FIN and PSH
 *   only on the last; checksum computed over pseudo header, header and
 *   payload;
 * - UDP (SKB_GSO_UDP_L4): every segment is a complete datagram of
 *   `gso_size` payload bytes (the last may be shorter), `len` and checksum
 *   computed (0 is sent as 0xffff).
 * Segments leave with `ip_summed = CHECKSUM_NONE`: every checksum is
 * already in the packet, so a software sink can verify them.
 *
 * Payload: the kernel's `skb_segment` references frag pages and copies
 * linear payload. Here a segment references its payload as page frags
 * (one page reference each) when every piece of it lives in a page (frags,
 * or the linear part of a page-fragment head, which is what GRO output is
 * made of), the copied pieces come first and at most MAX_SKB_FRAGS frags
 * are needed; otherwise the whole payload of that segment is copied into
 * its linear area. Pieces in page-pool pages (`pp_recycle`) are always
 * copied so that page-pool ownership never leaks into the segments.
 * `gsoSetZeroCopy(false)` copies everything.
 *
 * Ownership: on success the original skb is consumed (`consumeSkb`) and the
 * caller owns the returned list. On failure (0) nothing was consumed: the
 * original is still the caller's (free it or send it as is), and any
 * segment built before the failure has been released again without drop
 * accounting. The reason is counted in {@link gsoStats}.
 *
 * MTU: TCP segments are cut to `min(gso_size, mtu - ip - tcp header)` so
 * every segment fits (the kernel would instead IP-fragment or, with DF,
 * drop and send ICMP FRAG_NEEDED); UDP datagrams keep `gso_size` and a
 * datagram that does not fit fails with GSO_FAIL_MTU (the kernel's
 * `udp_send_skb` rejects such sends up front with -EINVAL). `mtu` 0 means
 * "no limit".
 *
 * The packet path allocates no JS objects: the payload piece table is a set
 * of module-level typed arrays (grown, cold, only past 1024 pieces).
 * Counters are per thread, i.e. per CPU in this design.
 *
 * @module
 */

import { csumTcpudpMagic, ipFastCsum, skbChecksum } from "../net/checksum.js";
import { NETIF_F_GSO_UDP_L4, NETIF_F_HW_CSUM, NETIF_F_TSO, NETIF_F_TSO_ECN } from "./netdev.js";
import { ETH_P_IP, IPPROTO_TCP, IPPROTO_UDP, TCP_FLAG_CWR, TCP_FLAG_FIN, TCP_FLAG_PSH } from "../net/proto.js";
import { pageRefAdd, virtToHeadPage } from "../mm/page-alloc.js";
import { be16, fragDesc, putBe16, putBe32, skbHeadlen, skbShinfo, be32s } from "../skb/access.js";
import { allocSkb } from "../skb/alloc.js";
import { skbCopyHeader } from "../skb/clone.js";
import type { SkbCpu } from "../skb/cpu.js";
import { __skbPut, pskbMayPull, skbReserve } from "../skb/data.js";
import { __kfreeSkb, consumeSkb } from "../skb/free.js";
import {
  CHECKSUM_NONE,
  CHECKSUM_PARTIAL,
  FRAG_OFFSET,
  FRAG_PAGE,
  FRAG_SIZE,
  MAX_SKB_FRAGS,
  NET_SKB_PAD,
  SHINFO_FRAG_LIST,
  SHINFO_GSO_SEGS,
  SHINFO_GSO_SIZE,
  SHINFO_GSO_TYPE,
  SHINFO_NR_FRAGS,
  SKB_CSUM_OFFSET,
  SKB_CSUM_START,
  SKB_DATA,
  SKB_DATA_LEN,
  SKB_FLAGS,
  SKB_HEAD,
  SKB_HEADER_UNSET,
  SKB_IP_SUMMED,
  SKB_LEN,
  SKB_MAC_HEADER,
  SKB_NETWORK_HEADER,
  SKB_NEXT,
  SKB_PROTOCOL,
  SKB_TRANSPORT_HEADER,
  SKB_TRUESIZE,
  SKBF_PP_RECYCLE,
} from "../skb/layout.js";


// ---- gso_type bits (include/linux/skbuff.h, 5.15–6.19 values) -----------------------
export const SKB_GSO_TCPV4 = 1 << 0;
export const SKB_GSO_DODGY = 1 << 1;
export const SKB_GSO_TCP_ECN = 1 << 2;
export const SKB_GSO_TCP_FIXEDID = 1 << 3;
export const SKB_GSO_TCPV6 = 1 << 4;
export const SKB_GSO_FCOE = 1 << 5;
export const SKB_GSO_GRE = 1 << 6;
export const SKB_GSO_GRE_CSUM = 1 << 7;
export const SKB_GSO_IPXIP4 = 1 << 8;
export const SKB_GSO_IPXIP6 = 1 << 9;
export const SKB_GSO_UDP_TUNNEL = 1 << 10;
export const SKB_GSO_UDP_TUNNEL_CSUM = 1 << 11;
export const SKB_GSO_PARTIAL = 1 << 12;
export const SKB_GSO_TUNNEL_REMCSUM = 1 << 13;
export const SKB_GSO_SCTP = 1 << 14;
export const SKB_GSO_ESP = 1 << 15;
/** Legacy UFO (IP-fragmented UDP); not segmented here. */
export const SKB_GSO_UDP = 1 << 16;
/** UDP segmentation: every segment a full datagram of gso_size bytes. */
export const SKB_GSO_UDP_L4 = 1 << 17;
export const SKB_GSO_FRAGLIST = 1 << 18;

/**
 * net_gso_ok: can a device with `features` take a GSO skb of `gsoType`
 * (SKB_GSO_* bits) whole? SKB_GSO_DODGY (header from an untrusted source,
 * re-checked by the receiver) needs no feature; any other type bit without a
 * matching feature means the skb is segmented in software first.
 */
export function netGsoOk(features: number, gsoType: number): boolean {
  let t = gsoType & ~SKB_GSO_DODGY;
  if ((t & SKB_GSO_TCPV4) !== 0) {
    if ((features & NETIF_F_TSO) === 0) return false;
    t &= ~SKB_GSO_TCPV4;
  }
  if ((t & SKB_GSO_TCP_ECN) !== 0) {
    if ((features & NETIF_F_TSO_ECN) === 0) return false;
    t &= ~SKB_GSO_TCP_ECN;
  }
  if ((t & SKB_GSO_UDP_L4) !== 0) {
    if ((features & NETIF_F_GSO_UDP_L4) === 0) return false;
    t &= ~SKB_GSO_UDP_L4;
  }
  return t === 0;
}

// ---- counters --------------------------------------------------------------------------
/** skbGsoSegment calls. */
export const GSO_STAT_CALLS = 0;
/** Segments produced. */
export const GSO_STAT_SEGMENTS = 1;
/** Segments whose payload references page frags. */
export const GSO_STAT_ZEROCOPY = 2;
/** Segments whose payload was copied. */
export const GSO_STAT_COPIED = 3;
/** Failure: the skb is not GSO (gso_size 0). */
export const GSO_FAIL_NOT_GSO = 4;
/** Failure: not IPv4, or a gso_type other than TCPV4 / UDP_L4. */
export const GSO_FAIL_UNSUPPORTED = 5;
/** Failure: headers missing, truncated or inconsistent, or no payload. */
export const GSO_FAIL_MALFORMED = 6;
/** Failure: a UDP datagram (or the TCP headers alone) does not fit the MTU. */
export const GSO_FAIL_MTU = 7;
/** Failure: out of memory (segment head or header pull). */
export const GSO_FAIL_NOMEM = 8;
/** Number of GSO counters. */
export const GSO_STAT_MAX = 9;
/** Counter names, index order. */
export const GSO_STAT_NAMES = [
  "calls",
  "segments",
  "zerocopy",
  "copied",
  "failNotGso",
  "failUnsupported",
  "failMalformed",
  "failMtu",
  "failNomem",
] as const;

/** GSO counters of this thread (GSO_STAT_* / GSO_FAIL_* indices). */
export const gsoStats = new Float64Array(GSO_STAT_MAX);

/** GSO counters as a plain object (allocates). */
export function gsoStatsSnapshot(): Record<(typeof GSO_STAT_NAMES)[number], number> {
  const o = {} as Record<string, number>;
  GSO_STAT_NAMES.forEach((n, i) => {
    o[n] = gsoStats[i] as number;
  });
  return o as Record<(typeof GSO_STAT_NAMES)[number], number>;
}

let zeroCopy = true;
/** Reference page-backed payload as frags (default) or copy every segment's payload. */
export function gsoSetZeroCopy(on: boolean): void {
  zeroCopy = on;
}

// ---- predicates -------------------------------------------------------------------------

/** `skb_is_gso`: the skb carries more than one segment's worth (gso_size set). */
export function skbIsGso(cpu: SkbCpu, skb: number): boolean {
  return (cpu.u16[(skbShinfo(cpu, skb) + SHINFO_GSO_SIZE) >>> 1] as number) !== 0;
}

/**
 * `skb_gso_validate_network_len`: would every segment's network-layer
 * length (IP header + L4 header + gso_size) fit in `mtu`? For a non-GSO skb
 * this is the plain network length (bytes from the network header on).
 * Reads the headers from the linear area; false when they are not there.
 */
export function skbGsoValidateNetworkLen(cpu: SkbCpu, skb: number, mtu: number): boolean {
  const u8 = cpu.u8;
  const head = cpu.u32[(skb + SKB_HEAD) >>> 2] as number;
  const d = cpu.u32[(skb + SKB_DATA) >>> 2] as number;
  const n = head + (cpu.u16[(skb + SKB_NETWORK_HEADER) >>> 1] as number);
  const linearEnd = d + skbHeadlen(cpu, skb);
  const sh = skbShinfo(cpu, skb);
  const gsoSize = cpu.u16[(sh + SHINFO_GSO_SIZE) >>> 1] as number;
  // Not GSO: the plain network length (from the network header when it is at or after data).
  if (gsoSize === 0) return (cpu.u32[(skb + SKB_LEN) >>> 2] as number) - (n >= d ? n - d : 0) <= mtu;
  if (n < d || n + 20 > linearEnd) return false;
  const iphl = ((u8[n] as number) & 15) * 4;
  const type = cpu.u32[(sh + SHINFO_GSO_TYPE) >>> 2] as number;
  let l4 = 0;
  if ((type & (SKB_GSO_TCPV4 | SKB_GSO_TCPV6)) !== 0) {
    if (n + iphl + 13 > linearEnd) return false;
    l4 = ((u8[n + iphl + 12] as number) >>> 4) * 4;
  } else if ((type & SKB_GSO_UDP_L4) !== 0) {
    l4 = 8;
  }
  return iphl + l4 + gsoSize <= mtu;
}

/**
 * Leave the L4 checksum to the device (`CHECKSUM_PARTIAL`): the field holds
 * the pseudo-header sum, `csum_start` / `csum_offset` say where the device
 * (or skbChecksumHelp) folds the rest in.
 */
function setPartial(cpu: SkbCpu, skb: number, l4: number, csumOffset: number, pseudo: number): void {
  putBe16(cpu.u8, l4 + csumOffset, pseudo);
  cpu.u8[skb + SKB_IP_SUMMED] = CHECKSUM_PARTIAL;
  cpu.u16[(skb + SKB_CSUM_START) >>> 1] = l4 - (cpu.u32[(skb + SKB_HEAD) >>> 2] as number);
  cpu.u16[(skb + SKB_CSUM_OFFSET) >>> 1] = csumOffset;
}

/** `skb_checksum_help` lives with the IPv4 output code; re-exported here where GSO users expect it. */
export { skbChecksumHelp } from "../net/ipv4.js";

// ---- payload piece table ----------------------------------------------------------------
//
// The payload of the skb to segment, in stream order, as (address, length,
// kind) pieces: the linear part after the headers, every frag, then every
// frag_list member's linear part and frags (recursively). kind is the
// page-allocator id of the page holding the piece (it can be referenced as
// a frag) or 0 (copy only: kmalloc memory, or a page-pool page).

let pieceCap = 1024;
let pAddr = new Uint32Array(pieceCap);
let pLen = new Uint32Array(pieceCap);
let pKind = new Uint8Array(pieceCap);
/** 1 when the piece belongs to a page-pool (`pp_recycle`) skb. */
let pPp = new Uint8Array(pieceCap);
let pCount = 0;

function growPieces(): void {
  // Cold: only for skbs made of more than `pieceCap` pieces.
  pieceCap *= 2;
  const a = new Uint32Array(pieceCap);
  const l = new Uint32Array(pieceCap);
  const k = new Uint8Array(pieceCap);
  const q = new Uint8Array(pieceCap);
  a.set(pAddr);
  l.set(pLen);
  k.set(pKind);
  q.set(pPp);
  pPp = q;
  pAddr = a;
  pLen = l;
  pKind = k;
}

function pushPiece(cpu: SkbCpu, addr: number, len: number, pp: boolean): void {
  if (len === 0) return;
  if (pCount === pieceCap) growPieces();
  let kind = 0;
  const owner = cpu.mm.pageOwner[addr >>> 12] as number;
  if (cpu.mm.pageAllocsById[owner] !== undefined) kind = owner;
  pAddr[pCount] = addr;
  pLen[pCount] = len;
  pKind[pCount] = kind;
  pPp[pCount] = pp ? 1 : 0;
  pCount++;
}

/** Append the pieces of `skb` starting `from` bytes into its data. */
function addPieces(cpu: SkbCpu, skb: number, from: number): void {
  const u8 = cpu.u8;
  const u32 = cpu.u32;
  const pp = ((u8[skb + SKB_FLAGS] as number) & SKBF_PP_RECYCLE) !== 0;
  const headlen = skbHeadlen(cpu, skb);
  if (from < headlen) {
    pushPiece(cpu, (u32[(skb + SKB_DATA) >>> 2] as number) + from, headlen - from, pp);
    from = 0;
  } else {
    from -= headlen;
  }
  const sh = skbShinfo(cpu, skb);
  const nr = u8[sh + SHINFO_NR_FRAGS] as number;
  for (let i = 0; i < nr; i++) {
    const fd = fragDesc(sh, i);
    const size = u32[(fd + FRAG_SIZE) >>> 2] as number;
    if (from >= size) {
      from -= size;
      continue;
    }
    pushPiece(cpu, (u32[(fd + FRAG_PAGE) >>> 2] as number) + (u32[(fd + FRAG_OFFSET) >>> 2] as number) + from, size - from, pp);
    from = 0;
  }
  for (let l = u32[(sh + SHINFO_FRAG_LIST) >>> 2] as number; l !== 0; l = u32[(l + SKB_NEXT) >>> 2] as number) {
    const llen = u32[(l + SKB_LEN) >>> 2] as number;
    if (from >= llen) {
      from -= llen;
      continue;
    }
    addPieces(cpu, l, from);
    from = 0;
  }
}

function fail(reason: number): number {
  gsoStats[reason]++;
  return 0;
}

/** Make the first `n` bytes linear; false when impossible (too short or no memory). */
function pull(cpu: SkbCpu, skb: number, n: number): boolean {
  return skbHeadlen(cpu, skb) >= n || pskbMayPull(cpu, skb, n);
}

/** Undo a partial segmentation: release the built segments without drop accounting. */
function freeSegs(cpu: SkbCpu, segs: number): void {
  while (segs !== 0) {
    const next = cpu.u32[(segs + SKB_NEXT) >>> 2] as number;
    cpu.u32[(segs + SKB_NEXT) >>> 2] = 0;
    __kfreeSkb(cpu, segs);
    segs = next;
  }
}

/**
 * `skb_gso_segment` for SKB_GSO_TCPV4 and SKB_GSO_UDP_L4 over IPv4: split
 * `skb` into a `next`-linked list of new skbs, each a complete packet whose
 * network length is at most `mtu` (0 = no limit), with checksums computed
 * (CHECKSUM_NONE). Segment heads come from the slab (`allocSkb`, the TX
 * path never uses the NAPI cache); their data pointer sits at the same
 * header as the original's (MAC or IP), with the MAC header, when set and
 * before the data, copied in front.
 *
 * Returns the first segment and consumes `skb`; or 0, leaving `skb` to the
 * caller (not GSO, unsupported type, malformed headers, a UDP datagram over
 * the MTU, or no memory; counted in {@link gsoStats}). Allocates no JS
 * objects.
 */
export function skbGsoSegment(cpu: SkbCpu, skb: number, mtu: number, features = 0): number {
  const hwCsum = (features & NETIF_F_HW_CSUM) !== 0;
  gsoStats[GSO_STAT_CALLS]++;
  const u8 = cpu.u8;
  const u16 = cpu.u16;
  const u32 = cpu.u32;
  let sh = skbShinfo(cpu, skb);
  const gsoSize = u16[(sh + SHINFO_GSO_SIZE) >>> 1] as number;
  const gsoType = u32[(sh + SHINFO_GSO_TYPE) >>> 2] as number;
  if (gsoSize === 0) return fail(GSO_FAIL_NOT_GSO);
  if ((u16[(skb + SKB_PROTOCOL) >>> 1] as number) !== ETH_P_IP) return fail(GSO_FAIL_UNSUPPORTED);
  let tcp: boolean;
  if ((gsoType & SKB_GSO_TCPV4) !== 0) tcp = true;
  else if ((gsoType & SKB_GSO_UDP_L4) !== 0) tcp = false;
  else return fail(GSO_FAIL_UNSUPPORTED);

  // Offsets relative to data survive a head reallocation by pskbMayPull.
  let head = u32[(skb + SKB_HEAD) >>> 2] as number;
  let d = u32[(skb + SKB_DATA) >>> 2] as number;
  const netRel = head + (u16[(skb + SKB_NETWORK_HEADER) >>> 1] as number) - d;
  const len = u32[(skb + SKB_LEN) >>> 2] as number;
  if (netRel < 0 || netRel > 128) return fail(GSO_FAIL_MALFORMED);
  if (len < netRel + 20) return fail(GSO_FAIL_MALFORMED);
  if (!pull(cpu, skb, netRel + 20)) return fail(GSO_FAIL_NOMEM);
  d = u32[(skb + SKB_DATA) >>> 2] as number;
  let n = d + netRel;
  const verIhl = u8[n] as number;
  const iphl = (verIhl & 15) * 4;
  if (verIhl >>> 4 !== 4 || iphl < 20) return fail(GSO_FAIL_MALFORMED);
  if ((u8[n + 9] as number) !== (tcp ? IPPROTO_TCP : IPPROTO_UDP)) return fail(GSO_FAIL_UNSUPPORTED);
  let l4 = 8;
  if (tcp) {
    if (len < netRel + iphl + 20) return fail(GSO_FAIL_MALFORMED);
    if (!pull(cpu, skb, netRel + iphl + 20)) return fail(GSO_FAIL_NOMEM);
    d = u32[(skb + SKB_DATA) >>> 2] as number;
    l4 = ((u8[d + netRel + iphl + 12] as number) >>> 4) * 4;
    if (l4 < 20) return fail(GSO_FAIL_MALFORMED);
  }
  const hdrRel = netRel + iphl + l4;
  if (len <= hdrRel) return fail(GSO_FAIL_MALFORMED);
  if (!pull(cpu, skb, hdrRel)) return fail(GSO_FAIL_NOMEM);
  head = u32[(skb + SKB_HEAD) >>> 2] as number;
  d = u32[(skb + SKB_DATA) >>> 2] as number;
  n = d + netRel;
  sh = skbShinfo(cpu, skb);

  let mss = gsoSize;
  if (mtu > 0) {
    const room = mtu - iphl - l4;
    if (tcp) {
      if (room <= 0) return fail(GSO_FAIL_MTU);
      if (room < mss) mss = room;
    } else if (room < mss) {
      return fail(GSO_FAIL_MTU);
    }
  }

  // MAC header bytes in front of data are copied too (the kernel's doffset).
  const macOff = u16[(skb + SKB_MAC_HEADER) >>> 1] as number;
  let pre = 0;
  if (macOff !== SKB_HEADER_UNSET && head + macOff < d && d - (head + macOff) <= 64) pre = d - (head + macOff);
  // A MAC header inside the copied headers keeps its place; one further back is not copied (unset).
  const macAtOrAfterData = macOff !== SKB_HEADER_UNSET && head + macOff >= d && head + macOff <= d + netRel;

  const payLen = len - hdrRel;
  const nsegs = Math.ceil(payLen / mss);
  pCount = 0;
  addPieces(cpu, skb, hdrRel);

  const t = n + iphl;
  const id0 = be16(u8, n + 4);
  const fixedId = (gsoType & SKB_GSO_TCP_FIXEDID) !== 0;
  const seq0 = tcp ? be32s(u8, t + 4) : 0;
  const flags0 = tcp ? (u8[t + 13] as number) : 0;
  const saddr = be32s(u8, n + 12);
  const daddr = be32s(u8, n + 16);
  const headroom = NET_SKB_PAD + pre;

  let first = 0;
  let prev = 0;
  let ci = 0; // piece cursor: index and offset within the piece
  let co = 0;
  let remaining = payLen;
  for (let i = 0; i < nsegs; i++) {
    const segLen = Math.min(remaining, mss);
    remaining -= segLen;
    // Can this segment reference its payload? Copy-only pieces must come
    // first (they go to the linear area) and the frags must fit.
    let zc = zeroCopy;
    let copyBytes = 0;
    if (zc) {
      let pi = ci;
      let po = co;
      let rem = segLen;
      let nfr = 0;
      while (rem > 0) {
        const avail = (pLen[pi] as number) - po;
        const take = Math.min(avail, rem);
        if ((pKind[pi] as number) === 0) {
          if (nfr !== 0) zc = false;
          copyBytes += take;
        } else if (++nfr > MAX_SKB_FRAGS) {
          zc = false;
        }
        rem -= take;
        po += take;
        if (po === (pLen[pi] as number)) {
          pi++;
          po = 0;
        }
      }
    }
    const linearPay = zc ? copyBytes : segLen;
    const nskb = allocSkb(cpu, headroom + hdrRel + linearPay, 0);
    if (nskb === 0) {
      freeSegs(cpu, first);
      return fail(GSO_FAIL_NOMEM);
    }
    skbReserve(cpu, nskb, headroom);
    const nd = __skbPut(cpu, nskb, hdrRel + linearPay);
    u8.copyWithin(nd - pre, d - pre, d + hdrRel);
    // Payload: copied pieces into the linear area, the rest as frags.
    const nsh = skbShinfo(cpu, nskb);
    let at = nd + hdrRel;
    let k = 0;
    let fragBytes = 0;
    let ppFrags = false;
    let rem = segLen;
    while (rem > 0) {
      const avail = (pLen[ci] as number) - co;
      const take = Math.min(avail, rem);
      const addr = (pAddr[ci] as number) + co;
      const kind = pKind[ci] as number;
      if (zc && kind !== 0) {
        const pa = cpu.mm.pageAllocsById[kind];
        if (pa === undefined) throw new Error(`skbGsoSegment: page allocator ${kind} vanished`);
        const page = virtToHeadPage(pa, addr);
        const fd = fragDesc(nsh, k++);
        u32[(fd + FRAG_PAGE) >>> 2] = page;
        u32[(fd + FRAG_OFFSET) >>> 2] = addr - page;
        u32[(fd + FRAG_SIZE) >>> 2] = take;
        pageRefAdd(pa, page, 1);
        fragBytes += take;
        if (pPp[ci] === 1) ppFrags = true;
      } else {
        u8.copyWithin(at, addr, addr + take);
        at += take;
      }
      rem -= take;
      co += take;
      if (co === (pLen[ci] as number)) {
        ci++;
        co = 0;
      }
    }
    if (k !== 0) {
      // Page-pool pages go back to their pool when the segment is freed
      // (skbPagePut checks each page's pool, so mixed frags are fine).
      if (ppFrags) u8[nskb + SKB_FLAGS] = (u8[nskb + SKB_FLAGS] as number) | SKBF_PP_RECYCLE;
      u8[nsh + SHINFO_NR_FRAGS] = k;
      u32[(nskb + SKB_LEN) >>> 2] = (u32[(nskb + SKB_LEN) >>> 2] as number) + fragBytes;
      u32[(nskb + SKB_DATA_LEN) >>> 2] = fragBytes;
      u32[(nskb + SKB_TRUESIZE) >>> 2] = (u32[(nskb + SKB_TRUESIZE) >>> 2] as number) + fragBytes;
      gsoStats[GSO_STAT_ZEROCOPY]++;
    } else {
      gsoStats[GSO_STAT_COPIED]++;
    }
    // skb fields: the original's header group, offsets shifted to the new headroom.
    skbCopyHeader(cpu, nskb, skb);
    const nhead = u32[(nskb + SKB_HEAD) >>> 2] as number;
    const nn = nd + netRel;
    const nt = nn + iphl;
    u16[(nskb + SKB_NETWORK_HEADER) >>> 1] = nn - nhead;
    u16[(nskb + SKB_TRANSPORT_HEADER) >>> 1] = nt - nhead;
    u16[(nskb + SKB_MAC_HEADER) >>> 1] = pre !== 0 ? nd - pre - nhead : macAtOrAfterData ? nd + (head + macOff - d) - nhead : SKB_HEADER_UNSET;
    u16[(nsh + SHINFO_GSO_SIZE) >>> 1] = 0;
    u16[(nsh + SHINFO_GSO_SEGS) >>> 1] = 0;
    u32[(nsh + SHINFO_GSO_TYPE) >>> 2] = 0;
    u8[nskb + SKB_IP_SUMMED] = CHECKSUM_NONE;
    u32[(nskb + SKB_CSUM_START) >>> 2] = 0;
    u32[(nskb + SKB_NEXT) >>> 2] = 0;
    // L4 header and checksum.
    const l4len = l4 + segLen;
    if (tcp) {
      putBe32(u8, nt + 4, (seq0 + i * mss) | 0);
      let fl = flags0;
      if (i !== 0) fl &= ~TCP_FLAG_CWR;
      if (i !== nsegs - 1) fl &= ~(TCP_FLAG_FIN | TCP_FLAG_PSH);
      u8[nt + 13] = fl;
      u8[nt + 16] = 0;
      u8[nt + 17] = 0;
      if (hwCsum) setPartial(cpu, nskb, nt, 16, ~csumTcpudpMagic(saddr, daddr, l4len, IPPROTO_TCP, 0) & 0xffff);
      else putBe16(u8, nt + 16, csumTcpudpMagic(saddr, daddr, l4len, IPPROTO_TCP, skbChecksum(cpu, nskb, netRel + iphl, l4len, 0)));
    } else {
      putBe16(u8, nt + 4, l4len);
      u8[nt + 6] = 0;
      u8[nt + 7] = 0;
      if (hwCsum) {
        setPartial(cpu, nskb, nt, 6, ~csumTcpudpMagic(saddr, daddr, l4len, IPPROTO_UDP, 0) & 0xffff);
      } else {
        const c = csumTcpudpMagic(saddr, daddr, l4len, IPPROTO_UDP, skbChecksum(cpu, nskb, netRel + iphl, l4len, 0));
        putBe16(u8, nt + 6, c === 0 ? 0xffff : c);
      }
    }
    // IPv4 header.
    putBe16(u8, nn + 2, iphl + l4len);
    putBe16(u8, nn + 4, fixedId ? id0 : (id0 + i) & 0xffff);
    u8[nn + 10] = 0;
    u8[nn + 11] = 0;
    putBe16(u8, nn + 10, ipFastCsum(u8, nn, iphl >>> 2));
    if (prev === 0) first = nskb;
    else u32[(prev + SKB_NEXT) >>> 2] = nskb;
    prev = nskb;
  }
  gsoStats[GSO_STAT_SEGMENTS] += nsegs;
  consumeSkb(cpu, skb);
  return first;
}
