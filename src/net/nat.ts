/**
 * Masquerading NAT for IPv4 (`nf_nat` core + `MASQUERADE`), driven by the
 * conntrack entry an skb carries. The binding lives in the entry: SNAT
 * rewrites its reply tuple before it is confirmed, so replies find it.
 *
 * ```
 *  inside host H:p ──► router ──► outside   R:q        ct ORIGINAL  H:p -> R:q
 *                      POST_ROUTING (out = outside):   ct REPLY     R:q -> O:p'
 *                      SNAT  H:p  => O:p'  (masquerade, O = outsideAddr)
 *  outside R:q ──► router ──► inside
 *                      PRE_ROUTING: DNAT  O:p' => H:p  (de-masquerade, reply direction)
 * ```
 *
 * Hooks map to manip types as in the kernel (`HOOK2MANIP`): PRE_ROUTING
 * and LOCAL_OUT change destinations, POST_ROUTING and LOCAL_IN sources.
 * Every rewrite updates checksums incrementally (RFC 1624): the IPv4 header
 * checksum, the TCP/UDP checksum including the pseudo header (a UDP
 * checksum of 0 stays 0; one that becomes 0 is sent as 0xffff), the ICMP
 * checksum for echo ids. `skb->ip_summed` is honoured like
 * `inet_proto_csum_replace*`: CHECKSUM_PARTIAL updates only the pseudo-header
 * part, CHECKSUM_COMPLETE also adjusts `skb->csum`. ICMP errors about a
 * tracked connection get both their outer header and the embedded IP +
 * transport header translated, and their ICMP checksum recomputed
 * (`nf_nat_icmp_reply_translation`).
 *
 * NAT state needs no arena memory of its own: the per-thread {@link NfNat}
 * holds the configuration and counters. Nothing here allocates per packet.
 *
 * Left out: DNAT rules / port forwarding, NAT helpers (FTP, SIP), TCP
 * sequence adjustment, `--random-fully`, the kernel's 1..1023 source-port
 * class (ports are taken from portMin..portMax; an original port outside
 * that range is always remapped).
 *
 * @module
 */

import { skbCloned, skbDataPtr, skbDev, skbHeadlen, skbNetworkHeader, skbUsers } from "../skb/access.js";
import type { SkbCpu } from "../skb/cpu.js";
import { pskbExpandHead, pskbMayPull } from "../skb/data.js";
import { SKB_DROP_REASON } from "../skb/drop-reason.js";
import {
  CHECKSUM_COMPLETE,
  CHECKSUM_NONE,
  CHECKSUM_PARTIAL,
  SKB_CSUM,
  SKB_IP_SUMMED,
  SKB_NFCT,
} from "../skb/layout.js";
import { csumAdd, csumFold, csumReplace2, csumReplace4, skbChecksum } from "./checksum.js";
import {
  type Conntrack,
  CT_PROTO,
  CT_STATUS,
  CT_TUPLE_SIZE,
  IP_CT_IS_REPLY,
  IP_CT_NEW,
  IP_CT_RELATED,
  IP_CT_RELATED_REPLY,
  IPS_CONFIRMED,
  IPS_DST_NAT,
  IPS_DST_NAT_DONE,
  IPS_NAT_DONE_MASK,
  IPS_NAT_MASK,
  IPS_SRC_NAT,
  IPS_SRC_NAT_DONE,
  __nfConntrackFind,
  icmpInvertType,
  NF_INET_LOCAL_IN,
  NF_INET_POST_ROUTING,
  NFCT_INFO_BITS,
  NFCT_INFOMASK,
  nfCtEntry,
  nfCtHashTuple,
  nfCtKill,
} from "./conntrack.js";
import { CSUM_MANGLED_0, IP_OFFSET, IPH_MIN_LEN, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP } from "./proto.js";

/** `NF_NAT_MANIP_SRC`: rewrite the source. */
export const NF_NAT_MANIP_SRC = 0;
/** `NF_NAT_MANIP_DST`: rewrite the destination. */
export const NF_NAT_MANIP_DST = 1;
/** `NF_NAT_MAX_ATTEMPTS`: ports tried per round by the unique-tuple search. */
export const NF_NAT_MAX_ATTEMPTS = 128;

/** Counters of a {@link NfNat}. Masquerade bindings set up. */
export const NAT_STAT_MASQ = 0;
/** ... that kept the original port / id. */
export const NAT_STAT_PORT_KEPT = 1;
/** ... that had to search for another port / id. */
export const NAT_STAT_PORT_REMAPPED = 2;
/** New flows dropped: no free port (NAT_NO_PORT). */
export const NAT_STAT_NO_PORT = 3;
/** Null bindings (flows not leaving by the outside interface). */
export const NAT_STAT_NULL_BINDING = 4;
/** Packets rewritten. */
export const NAT_STAT_MANGLED = 5;
/** ICMP errors translated (outer and embedded header). */
export const NAT_STAT_ICMP_XLATE = 6;
/** Packets dropped for any other reason (unwritable, bad ICMP, out interface changed). */
export const NAT_STAT_DROP = 7;
/** Number of counters. */
export const NAT_STAT_MAX = 8;
/** Counter names, index order. */
export const NAT_STAT_NAMES = [
  "masq",
  "portKept",
  "portRemapped",
  "noPort",
  "nullBinding",
  "mangled",
  "icmpXlate",
  "drop",
] as const;

/** Masquerade configuration. */
export interface NatConfig {
  /** ifindex (skb->dev value) of the outside interface: flows leaving by it are masqueraded. */
  outsideIfindex: number;
  /** Outside address (host-order u32) the inside hosts hide behind. */
  outsideAddr: number;
  /** Lowest TCP/UDP source port to map to (default 1024). */
  portMin?: number;
  /** Highest (default 65535). */
  portMax?: number;
  /** ICMP echo identifiers to map to (default 0..65535; a CPU of several takes its own slice). */
  icmpIdMin?: number;
  icmpIdMax?: number;
}

/** One thread's NAT: configuration, last drop reason, counters. Fixed shape. */
export class NfNat {
  readonly outsideIfindex: number;
  /** outsideAddr as an int32 (the conntrack's tuple representation). */
  readonly outsideAddr: number;
  readonly portMin: number;
  readonly portMax: number;
  readonly icmpIdMin: number;
  readonly icmpIdMax: number;
  /** Counters, NAT_STAT_* indices. */
  readonly stats: Float64Array;
  /** SKB_DROP_REASON of the last failed call. */
  reason = 0;

  /** Use {@link nfNatCreate}. */
  constructor(c: NatConfig) {
    const min = c.portMin ?? 1024;
    const max = c.portMax ?? 65535;
    if (!Number.isInteger(min) || !Number.isInteger(max) || min < 1 || max > 65535 || min > max) {
      throw new RangeError(`nfNatCreate: port range ${min}-${max} is not within 1-65535`);
    }
    if (!Number.isInteger(c.outsideAddr) || c.outsideAddr < 0 || c.outsideAddr > 0xffffffff) {
      throw new RangeError(`nfNatCreate: outsideAddr ${c.outsideAddr} is not a host-order u32`);
    }
    this.outsideIfindex = c.outsideIfindex;
    this.outsideAddr = c.outsideAddr | 0;
    this.portMin = min;
    this.portMax = max;
    const imin = c.icmpIdMin ?? 0;
    const imax = c.icmpIdMax ?? 65535;
    if (!Number.isInteger(imin) || !Number.isInteger(imax) || imin < 0 || imax > 65535 || imin > imax) {
      throw new RangeError(`nfNatCreate: ICMP id range ${imin}-${imax} is not within 0-65535`);
    }
    this.icmpIdMin = imin;
    this.icmpIdMax = imax;
    this.stats = new Float64Array(NAT_STAT_MAX);
  }
}

/** Create a NAT context (cold). */
export function nfNatCreate(c: NatConfig): NfNat {
  return new NfNat(c);
}

/** Counters as a plain object (allocates). */
export function nfNatStats(nat: NfNat): Record<(typeof NAT_STAT_NAMES)[number], number> {
  const o = {} as Record<string, number>;
  NAT_STAT_NAMES.forEach((n, i) => {
    o[n] = nat.stats[i] as number;
  });
  return o as Record<(typeof NAT_STAT_NAMES)[number], number>;
}

// ---- byte access -----------------------------------------------------------------------------

function ld32(u8: Uint8Array, o: number): number {
  return ((u8[o] as number) << 24) | ((u8[o + 1] as number) << 16) | ((u8[o + 2] as number) << 8) | (u8[o + 3] as number);
}
function ld16(u8: Uint8Array, o: number): number {
  return ((u8[o] as number) << 8) | (u8[o + 1] as number);
}
function st32(u8: Uint8Array, o: number, v: number): void {
  u8[o] = v >>> 24;
  u8[o + 1] = v >>> 16;
  u8[o + 2] = v >>> 8;
  u8[o + 3] = v;
}
function st16(u8: Uint8Array, o: number, v: number): void {
  u8[o] = v >>> 8;
  u8[o + 1] = v;
}

// ---- checksum updates honouring ip_summed (inet_proto_csum_replace4/2) ---------------------------

/** A pseudo-header field (address) changed `from` -> `to`: update the L4 checksum at `off`. */
function l4CsumReplace4(cpu: SkbCpu, skb: number, summed: number, off: number, from: number, to: number): void {
  const u8 = cpu.u8;
  if (summed === CHECKSUM_PARTIAL) {
    // The field holds the uncomplemented pseudo-header sum: add (to - from) to it.
    const f = ld16(u8, off);
    let s = f + (~from >>> 16) + (~from & 0xffff) + (to >>> 16) + (to & 0xffff);
    s = (s & 0xffff) + (s >>> 16);
    s = (s & 0xffff) + (s >>> 16);
    st16(u8, off, s);
    return;
  }
  csumReplace4(u8, off, from, to);
  if (summed === CHECKSUM_COMPLETE) {
    // skb->csum = ~csum_partial({~from, to}, ~skb->csum)
    const i = (skb + SKB_CSUM) >>> 2;
    const c = cpu.u32[i] as number;
    cpu.u32[i] = ~csumAdd(csumAdd(~c >>> 0, ~from >>> 0), to >>> 0) >>> 0;
  }
}

/** A covered 16-bit field (port, id) changed: update the checksum at `off` (nothing for CHECKSUM_PARTIAL). */
function l4CsumReplace2(u8: Uint8Array, summed: number, off: number, from: number, to: number): void {
  if (summed !== CHECKSUM_PARTIAL) csumReplace2(u8, off, from, to);
}

// ---- packet rewriting --------------------------------------------------------------------------

/**
 * `nf_nat_ipv4_manip_pkt`: set the source (SRC) or destination (DST)
 * address and port (ICMP query: id) of the IPv4 header at `iph` and the
 * transport header behind it, fixing every checksum. `end` is where the
 * bytes that belong to this header end (the packet, or the ICMP message
 * for a header embedded in an ICMP error: `inner`, whose checksums are
 * always plain). A TCP header cut to 8 bytes (embedded) gets its port
 * changed but not its checksum, which lies beyond, as in the kernel.
 * The bytes must be linear and writable.
 */
function natManipPkt(
  cpu: SkbCpu,
  skb: number,
  iph: number,
  end: number,
  manip: number,
  addr: number,
  port: number,
  inner: boolean,
): void {
  const u8 = cpu.u8;
  const ihl = ((u8[iph] as number) & 15) << 2;
  const proto = u8[iph + 9] as number;
  const l4 = iph + ihl;
  const avail = end - l4;
  const addrOff = iph + (manip === NF_NAT_MANIP_SRC ? 12 : 16);
  const oldAddr = ld32(u8, addrOff);
  const summed = inner ? CHECKSUM_NONE : (u8[skb + SKB_IP_SUMMED] as number);
  const firstFrag = (ld16(u8, iph + 6) & IP_OFFSET) === 0;
  if (firstFrag && avail >= 8) {
    if (proto === IPPROTO_TCP || proto === IPPROTO_UDP) {
      const po = l4 + (manip === NF_NAT_MANIP_SRC ? 0 : 2);
      const oldPort = ld16(u8, po);
      if (proto === IPPROTO_TCP) {
        if (avail >= 20) {
          l4CsumReplace4(cpu, skb, summed, l4 + 16, oldAddr, addr);
          l4CsumReplace2(u8, summed, l4 + 16, oldPort, port);
        }
      } else if (ld16(u8, l4 + 6) !== 0 || summed === CHECKSUM_PARTIAL) {
        l4CsumReplace4(cpu, skb, summed, l4 + 6, oldAddr, addr);
        l4CsumReplace2(u8, summed, l4 + 6, oldPort, port);
        if (ld16(u8, l4 + 6) === 0) st16(u8, l4 + 6, CSUM_MANGLED_0);
      }
      st16(u8, po, port);
    } else if (proto === IPPROTO_ICMP && icmpInvertType(u8[l4] as number) >= 0) {
      // icmp_manip_pkt: queries carry an id; errors have nothing to change here.
      l4CsumReplace2(u8, summed, l4 + 2, ld16(u8, l4 + 4), port);
      st16(u8, l4 + 4, port);
    }
  }
  csumReplace4(u8, iph + 10, oldAddr, addr);
  st32(u8, addrOff, addr);
}

/**
 * `skb_ensure_writable` for `n` bytes from the network header: linear and
 * not shared with a clone. May move the head. False when impossible.
 */
function natWritable(cpu: SkbCpu, skb: number, n: number): boolean {
  const need = skbNetworkHeader(cpu, skb) - skbDataPtr(cpu, skb) + n;
  if (need > skbHeadlen(cpu, skb) && !pskbMayPull(cpu, skb, need)) return false;
  if (!skbCloned(cpu, skb)) return true;
  if (skbUsers(cpu, skb) !== 1) return false;
  return pskbExpandHead(cpu, skb, 0, 0) === 0;
}

function natDrop(nat: NfNat, reason: number): number {
  nat.reason = reason;
  nat.stats[NAT_STAT_DROP]++;
  return reason;
}

// ---- masquerade: choosing the outside port ----------------------------------------------------------

/**
 * `nf_nat_used_tuple`: is the tuple (saddr = outside, daddr, ports) taken,
 * i.e. is its inverse (the would-be reply tuple) already in the table?
 */
function usedTuple(ct: Conntrack, outside: number, d: number, replyPorts: number, proto: number): boolean {
  return __nfConntrackFind(ct, d, outside, replyPorts, proto) !== 0;
}

/**
 * `nf_nat_l4proto_unique_tuple`: a free key (port or ICMP id) in
 * `min .. min + range - 1`, starting at an offset hashed from the tuple,
 * trying at most NF_NAT_MAX_ATTEMPTS per round and halving the window with
 * a new offset each round (down to 16), as the kernel does. The candidate
 * reply ports word is `fixed << 16 | key` for TCP/UDP (fixed = the peer's
 * port) and `key << 16 | fixed` for ICMP (fixed = reply type << 8 | code).
 * Returns the key or -1.
 */
function uniqueKey(
  ct: Conntrack,
  out: number,
  s: number,
  d: number,
  proto: number,
  fixed: number,
  min: number,
  range: number,
): number {
  const icmp = proto === IPPROTO_ICMP;
  let attempts = Math.min(range, NF_NAT_MAX_ATTEMPTS);
  for (let round = 1; ; round++) {
    let off = (nfCtHashTuple(ct.seed ^ Math.imul(round, 0x9e3779b9), s, d, fixed, proto) >>> 0) % range;
    for (let i = 0; i < attempts; i++) {
      const key = min + off;
      if (!usedTuple(ct, out, d, icmp ? (key << 16) | fixed : (fixed << 16) | key, proto)) return key;
      off = off + 1 === range ? 0 : off + 1;
    }
    if (attempts >= range || attempts < 16) return -1;
    attempts >>= 1;
  }
}

/**
 * Masquerade `nf_nat_setup_info(ct, SRC)` on an unconfirmed entry: the
 * outside address and, for TCP/UDP, the original source port when it is in
 * range and free, else a searched one; ICMP echo ids likewise (0..65535).
 * Writes the reply tuple and IPS_SRC_NAT(_DONE). 0 or NAT_NO_PORT.
 */
function masqSetup(nat: NfNat, ct: Conntrack, base: number, proto: number): number {
  const i32 = ct.i32;
  const w = base >>> 2;
  const s = i32[w] as number;
  const d = i32[w + 1] as number;
  const ports = i32[w + 2] as number;
  const out = nat.outsideAddr;
  let rports = i32[w + 5] as number;
  let changed = out !== s;
  let kept = true;
  if (proto === IPPROTO_TCP || proto === IPPROTO_UDP || proto === IPPROTO_ICMP) {
    const icmp = proto === IPPROTO_ICMP;
    const key = ports >>> 16;
    const fixed = icmp ? rports & 0xffff : ports & 0xffff;
    const min = icmp ? nat.icmpIdMin : nat.portMin;
    const range = icmp ? nat.icmpIdMax - nat.icmpIdMin + 1 : nat.portMax - nat.portMin + 1;
    let k = key;
    if (key < min || key >= min + range || usedTuple(ct, out, d, icmp ? (key << 16) | fixed : (fixed << 16) | key, proto)) {
      k = uniqueKey(ct, out, s, d, proto, fixed, min, range);
      if (k < 0) {
        nat.stats[NAT_STAT_NO_PORT]++;
        nat.reason = SKB_DROP_REASON.NAT_NO_PORT;
        return nat.reason;
      }
      kept = k === key;
      changed = changed || !kept;
    }
    rports = icmp ? (k << 16) | fixed : (fixed << 16) | k;
  } else if (usedTuple(ct, out, d, rports, proto)) {
    // No ports to vary: a second inside host talking this protocol to the same peer cannot be told apart.
    nat.stats[NAT_STAT_NO_PORT]++;
    nat.reason = SKB_DROP_REASON.NAT_NO_PORT;
    return nat.reason;
  }
  i32[w + 4] = out;
  i32[w + 5] = rports;
  // Mapping onto itself (the router's own address and port) needs no rewriting.
  const bits = changed ? IPS_SRC_NAT_DONE | IPS_SRC_NAT : IPS_SRC_NAT_DONE;
  i32[w + 7] = (i32[w + 7] as number) | bits;
  nat.stats[NAT_STAT_MASQ]++;
  nat.stats[kept ? NAT_STAT_PORT_KEPT : NAT_STAT_PORT_REMAPPED]++;
  return 0;
}

// ---- the hook function ------------------------------------------------------------------------------------

/**
 * `nf_nat_ipv4_fn` for a masquerading router. Call at PRE_ROUTING (after
 * nfConntrackIn: de-masquerades replies) and at POST_ROUTING (before
 * nfConntrackConfirm: sets up masquerade for new flows whose out device,
 * `skb->dev`, is the outside interface, and rewrites their packets). Reads
 * the entry from `skb->_nfct`; untracked skbs pass unchanged. Returns 0
 * (accept) or a drop reason (also in `nat.reason`): NAT_NO_PORT, NOMEM
 * (headers not writable), ICMP_INVALID, NETFILTER_DROP (a masqueraded flow
 * changed out interface: the entry is killed, as nf_nat_oif_changed).
 * Allocates nothing.
 */
export function nfNatIpv4(nat: NfNat, cpu: SkbCpu, skb: number, hook: number, ct: Conntrack): number {
  const nfct = cpu.u32[(skb + SKB_NFCT) >>> 2] as number;
  if (nfct === 0) return 0;
  const e = nfct >>> NFCT_INFO_BITS;
  const ctinfo = nfct & NFCT_INFOMASK;
  const base = nfCtEntry(ct, e);
  const i32 = ct.i32;
  const u8 = cpu.u8;
  const manip = hook === NF_INET_POST_ROUTING || hook === NF_INET_LOCAL_IN ? NF_NAT_MANIP_SRC : NF_NAT_MANIP_DST;
  nat.reason = 0;
  if (ctinfo === IP_CT_RELATED || ctinfo === IP_CT_RELATED_REPLY) {
    if ((u8[skbNetworkHeader(cpu, skb) + 9] as number) === IPPROTO_ICMP) {
      return natIcmpReplyTranslation(nat, cpu, skb, ct, base, ctinfo, manip);
    }
    return 0;
  }
  const dir = ctinfo >= IP_CT_IS_REPLY ? 1 : 0;
  let st = i32[(base + CT_STATUS) >>> 2] as number;
  if (ctinfo === IP_CT_NEW) {
    const done = manip === NF_NAT_MANIP_SRC ? IPS_SRC_NAT_DONE : IPS_DST_NAT_DONE;
    if ((st & done) === 0) {
      if (manip === NF_NAT_MANIP_SRC && (st & IPS_CONFIRMED) === 0 && skbDev(cpu, skb) === nat.outsideIfindex) {
        const r = masqSetup(nat, ct, base, ct.u8[base + CT_PROTO] as number);
        if (r !== 0) return r;
      } else {
        // nf_nat_alloc_null_binding: decided, nothing to change.
        i32[(base + CT_STATUS) >>> 2] = st | done;
        nat.stats[NAT_STAT_NULL_BINDING]++;
      }
      st = i32[(base + CT_STATUS) >>> 2] as number;
    }
  }
  if (
    manip === NF_NAT_MANIP_SRC &&
    dir === 0 &&
    hook === NF_INET_POST_ROUTING &&
    (st & IPS_SRC_NAT) !== 0 &&
    skbDev(cpu, skb) !== nat.outsideIfindex
  ) {
    // nf_nat_oif_changed: the masqueraded flow now leaves elsewhere.
    nfCtKill(ct, e);
    return natDrop(nat, SKB_DROP_REASON.NETFILTER_DROP);
  }
  // nf_nat_packet: which manip applies to this direction.
  let bit = manip === NF_NAT_MANIP_SRC ? IPS_SRC_NAT : IPS_DST_NAT;
  if (dir !== 0) bit ^= IPS_NAT_MASK;
  if ((st & bit) === 0) return 0;

  // Target = inverse of the other direction's tuple.
  const t = (base + (1 - dir) * CT_TUPLE_SIZE) >>> 2;
  const proto = ct.u8[base + CT_PROTO] as number;
  const tports = i32[t + 2] as number;
  let addr: number;
  let port: number;
  if (manip === NF_NAT_MANIP_SRC) {
    addr = i32[t + 1] as number;
    port = proto === IPPROTO_ICMP ? tports >>> 16 : tports & 0xffff;
  } else {
    addr = i32[t] as number;
    port = tports >>> 16;
  }
  let iph = skbNetworkHeader(cpu, skb);
  const ihl = ((u8[iph] as number) & 15) << 2;
  const totLen = ld16(u8, iph + 2);
  const l4need = proto === IPPROTO_TCP ? 20 : proto === IPPROTO_UDP || proto === IPPROTO_ICMP ? 8 : 0;
  const need = Math.min(ihl + l4need, totLen);
  if (!natWritable(cpu, skb, need)) return natDrop(nat, SKB_DROP_REASON.NOMEM);
  iph = skbNetworkHeader(cpu, skb);
  natManipPkt(cpu, skb, iph, iph + totLen, manip, addr, port, false);
  nat.stats[NAT_STAT_MANGLED]++;
  return 0;
}

/**
 * `nf_nat_icmp_reply_translation`: an ICMP error about a NATed connection.
 * The embedded header is rewritten with the opposite manip to the other
 * direction's tuple (so it shows the packet as its sender knows it), the
 * ICMP checksum recomputed, then the outer header rewritten like a reply.
 */
function natIcmpReplyTranslation(
  nat: NfNat,
  cpu: SkbCpu,
  skb: number,
  ct: Conntrack,
  base: number,
  ctinfo: number,
  manip: number,
): number {
  const u8 = cpu.u8;
  const i32 = ct.i32;
  let iph = skbNetworkHeader(cpu, skb);
  const ihl = ((u8[iph] as number) & 15) << 2;
  const totLen = ld16(u8, iph + 2);
  const icmpLen = totLen - ihl;
  if (icmpLen < 8 + IPH_MIN_LEN) return natDrop(nat, SKB_DROP_REASON.ICMP_INVALID);
  if (!natWritable(cpu, skb, ihl + 8 + IPH_MIN_LEN)) return natDrop(nat, SKB_DROP_REASON.NOMEM);
  iph = skbNetworkHeader(cpu, skb);
  const innerIhl = ((u8[iph + ihl + 8] as number) & 15) << 2;
  const want = ihl + 8 + innerIhl + 20;
  if (innerIhl < IPH_MIN_LEN || !natWritable(cpu, skb, Math.min(want, totLen))) {
    return natDrop(nat, SKB_DROP_REASON.ICMP_INVALID);
  }
  iph = skbNetworkHeader(cpu, skb);
  const icmp = iph + ihl;
  const st = i32[(base + CT_STATUS) >>> 2] as number;
  if ((u8[icmp] as number) === 5) {
    // Redirects are only passed for connections NAT left alone.
    if ((st & IPS_NAT_DONE_MASK) !== IPS_NAT_DONE_MASK || (st & IPS_NAT_MASK) !== 0) {
      return natDrop(nat, SKB_DROP_REASON.ICMP_INVALID);
    }
  }
  const dir = ctinfo >= IP_CT_IS_REPLY ? 1 : 0;
  let bit = manip === NF_NAT_MANIP_SRC ? IPS_SRC_NAT : IPS_DST_NAT;
  if (dir !== 0) bit ^= IPS_NAT_MASK;
  if ((st & bit) === 0) return 0;
  // We rewrite the checksum from scratch below: do not launder a corrupt message.
  const summed = u8[skb + SKB_IP_SUMMED] as number;
  if (
    (summed === CHECKSUM_NONE || summed === CHECKSUM_COMPLETE) &&
    csumFold(skbChecksum(cpu, skb, icmp - skbDataPtr(cpu, skb), icmpLen, 0)) !== 0
  ) {
    return natDrop(nat, SKB_DROP_REASON.ICMP_INVALID);
  }

  const t = (base + (1 - dir) * CT_TUPLE_SIZE) >>> 2;
  const proto = ct.u8[base + CT_PROTO] as number;
  const tports = i32[t + 2] as number;
  // Embedded header: the opposite manip, target = tuplehash[!dir] itself.
  const inner = icmp + 8;
  if (manip === NF_NAT_MANIP_DST) {
    natManipPkt(cpu, skb, inner, icmp + icmpLen, NF_NAT_MANIP_SRC, i32[t] as number, tports >>> 16, true);
  } else {
    const p = proto === IPPROTO_ICMP ? tports >>> 16 : tports & 0xffff;
    natManipPkt(cpu, skb, inner, icmp + icmpLen, NF_NAT_MANIP_DST, i32[t + 1] as number, p, true);
  }
  if (summed !== CHECKSUM_PARTIAL) {
    u8[icmp + 2] = 0;
    u8[icmp + 3] = 0;
    st16(u8, icmp + 2, csumFold(skbChecksum(cpu, skb, icmp - skbDataPtr(cpu, skb), icmpLen, 0)));
  }
  if (summed === CHECKSUM_COMPLETE) u8[skb + SKB_IP_SUMMED] = CHECKSUM_NONE;
  // Outer header: like a reply to the (translated) embedded packet; an ICMP error has no id to change.
  const addrOff = iph + (manip === NF_NAT_MANIP_SRC ? 12 : 16);
  const addr = manip === NF_NAT_MANIP_SRC ? (i32[t + 1] as number) : (i32[t] as number);
  csumReplace4(u8, iph + 10, ld32(u8, addrOff), addr);
  st32(u8, addrOff, addr);
  nat.stats[NAT_STAT_ICMP_XLATE]++;
  return 0;
}
