/**
 * Connection tracking (`nf_conntrack`) for IPv4: TCP, UDP, ICMP and a
 * generic fallback for other protocols. The whole table lives in one arena
 * region, so workers can map it; lookups return numbers (entry indices and
 * tuple-hash ids), and the packet path allocates no JavaScript objects.
 *
 * ```
 *  region "nf_conntrack" (64-byte aligned)
 *  +--------------------+------------------+-------------------+----------------------------+
 *  | header (512 B)     | buckets          | free stack        | entries (max + 1) x 64 B   |
 *  | magic max buckets  | u32 x nBuckets   | u32 x max         | entry 0 is NULL, never used|
 *  | count freeTop seed | head tuple-hash  | free entry        |                            |
 *  | gc cursor, flags   | id, 0 = empty    | indices; top at   |                            |
 *  | timeouts (i32 ms)  |                  | header.freeTop    |                            |
 *  | stats (f64)        |                  |                   |                            |
 *  +--------------------+------------------+-------------------+----------------------------+
 * ```
 *
 * ```
 *  struct nf_conn (64 bytes, entry e at entries + e * 64)
 *   0 tuple[ORIGINAL]: saddr (i32)  4 daddr (i32)  8 ports (i32: sport << 16 | dport)
 *  12 tuple[REPLY]:    saddr        16 daddr       20 ports
 *  24 protonum (u8)  25 tcp.state (u8)  26 tcp.last_index (u8)  27 tcp.last_dir (u8)
 *  28 status (IPS_* bits)
 *  32 timeout: expiry in ms as a wrapping i32 (confirmed) or the relative timeout (unconfirmed)
 *  36 use: reference count (i32, Atomics): one per skb holding _nfct, one for the hash table
 *  40 hnnode next of tuplehash[ORIGINAL]   44 next of tuplehash[REPLY]   (tuple-hash ids)
 *  48 bucket of tuplehash[ORIGINAL]        52 bucket of tuplehash[REPLY]
 *  56 per protocol: tcp.last_end (seq) | udp.stream_ts (ms)
 *  60 tcp.seen[0].flags (u8)  61 tcp.seen[1].flags (u8)  62 tcp.last_flags (u8)  63 -
 * ```
 *
 * A tuple is `(saddr, daddr, ports, protonum)`. For ICMP the ports word is
 * `id << 16 | type << 8 | code` (the kernel keeps the echo id in the source
 * half and type/code in the destination half), for protocols without ports
 * it is 0. A tuple-hash id is `entry << 1 | direction`; buckets chain
 * tuple-hash ids through the `next` words, like `hlist_nulls`.
 *
 * The skb layer calls back through skbSetNfctPut / skbSetNfctGet (installed
 * by conntrackCreate / conntrackAttach) when an skb holding `_nfct` is freed
 * or cloned.
 *
 * Life of an entry (the kernel's, in outline):
 *
 * ```
 *  nfConntrackIn: no match ─► alloc (early_drop if full) ─► unconfirmed, use = 1 (the skb)
 *  nfConntrackConfirm (after POST_ROUTING NAT): hash both tuples, CONFIRMED, use += 1 (table)
 *  nfConntrackIn: match ─► use += 1, skb->_nfct = entry << 3 | ctinfo
 *  skb freed ─► put hook ─► use -= 1; 0 ─► slot back on the free stack, count -= 1
 *  expiry (lazy on lookup, nfConntrackGcWork), early_drop, TCP RST/reopen ─► unhash, DYING, drop table ref
 * ```
 *
 * Concurrency: safe for ONE writer thread (the one calling nfConntrackIn,
 * nfConntrackConfirm, the NAT and the GC), which is also where skbs holding
 * entries must be freed. `use` is already updated with `Atomics`. For several
 * writers the following would also need `Atomics` or a lock: the bucket heads
 * and `next` words (a per-bucket lock, as the kernel's
 * `nf_conntrack_locks`), the free stack and `count` (a lock like the slab's),
 * `status` (Atomics.or: several CPUs set SEEN_REPLY / ASSURED), `timeout`
 * (Atomics.store), the per-protocol TCP state (the kernel's `ct->lock`), and
 * the stats (per-CPU slots instead of shared f64 counters).
 *
 * Left out: TCP window tracking (`tcp_in_window`: sequence/ack windows,
 * window scaling, SACK, retransmission counting, the RST sequence check), so
 * the conntrack behaves as with `nf_conntrack_tcp_no_window_check = 1`;
 * expectations and helpers; zones; events; accounting; the GC's
 * early-drop-under-pressure of assured TCP entries in closing states.
 *
 * Deviations: `max` is also the number of entry slots, so an entry that was
 * evicted or expired but is still held by an skb keeps its slot until the
 * skb is freed (the kernel may briefly exceed nf_conntrack_max instead);
 * `buckets` is rounded up to a power of two; the hash is a seeded murmur3
 * mix, not siphash.
 *
 * @module
 */

import type { Arena, RegionSpec } from "../mm/arena.js";
import { skbDataPtr, skbHeadlen, skbLen, skbNetworkHeader } from "../skb/access.js";
import type { SkbCpu } from "../skb/cpu.js";
import { pskbMayPull } from "../skb/data.js";
import { SKB_DROP_REASON } from "../skb/drop-reason.js";
import { skbSetNfctGet, skbSetNfctPut } from "../skb/free.js";
import { CHECKSUM_COMPLETE, CHECKSUM_NONE, SKB_IP_SUMMED, SKB_NFCT } from "../skb/layout.js";
import { csumFold, csumTcpudpMagic, skbChecksum } from "./checksum.js";
import {
  ICMP_DEST_UNREACH,
  ICMP_PARAMETERPROB,
  ICMP_TIME_EXCEEDED,
  IP_MF,
  IP_OFFSET,
  IPH_MIN_LEN,
  IPPROTO_ICMP,
  IPPROTO_TCP,
  IPPROTO_UDP,
  TCP_FLAG_ACK,
  TCP_FLAG_CWR,
  TCP_FLAG_ECE,
  TCP_FLAG_FIN,
  TCP_FLAG_PSH,
  TCP_FLAG_RST,
  TCP_FLAG_SYN,
} from "./proto.js";

// ---- netfilter hooks, directions, ctinfo, status ---------------------------------

/** `NF_INET_PRE_ROUTING`: after receive, before routing. */
export const NF_INET_PRE_ROUTING = 0;
/** `NF_INET_LOCAL_IN`: delivered to this host. */
export const NF_INET_LOCAL_IN = 1;
/** `NF_INET_FORWARD`. */
export const NF_INET_FORWARD = 2;
/** `NF_INET_LOCAL_OUT`: sent by this host. */
export const NF_INET_LOCAL_OUT = 3;
/** `NF_INET_POST_ROUTING`: after routing, before transmit. */
export const NF_INET_POST_ROUTING = 4;

/** `IP_CT_DIR_ORIGINAL`. */
export const IP_CT_DIR_ORIGINAL = 0;
/** `IP_CT_DIR_REPLY`. */
export const IP_CT_DIR_REPLY = 1;

/** `enum ip_conntrack_info`: part of an established connection, original direction. */
export const IP_CT_ESTABLISHED = 0;
/** Related to a connection (an ICMP error about it), original direction. */
export const IP_CT_RELATED = 1;
/** Starts a new connection (original direction, no reply seen yet). */
export const IP_CT_NEW = 2;
/** Added to the above for reply-direction packets. */
export const IP_CT_IS_REPLY = 3;
/** Established, reply direction. */
export const IP_CT_ESTABLISHED_REPLY = IP_CT_ESTABLISHED + IP_CT_IS_REPLY;
/** Related, reply direction. */
export const IP_CT_RELATED_REPLY = IP_CT_RELATED + IP_CT_IS_REPLY;
/** `skb->_nfct` = entry << NFCT_INFO_BITS | ctinfo (the kernel's NFCT_INFOMASK bits). */
export const NFCT_INFO_BITS = 3;
/** `NFCT_INFOMASK`. */
export const NFCT_INFOMASK = 7;

/** `IPS_EXPECTED` (unused: no expectations). */
export const IPS_EXPECTED = 1 << 0;
/** `IPS_SEEN_REPLY`: packets seen in both directions. */
export const IPS_SEEN_REPLY = 1 << 1;
/** `IPS_ASSURED`: never early-dropped. */
export const IPS_ASSURED = 1 << 2;
/** `IPS_CONFIRMED`: in the hash table. */
export const IPS_CONFIRMED = 1 << 3;
/** `IPS_SRC_NAT`: the original direction's source is rewritten. */
export const IPS_SRC_NAT = 1 << 4;
/** `IPS_DST_NAT`: the original direction's destination is rewritten. */
export const IPS_DST_NAT = 1 << 5;
/** `IPS_NAT_MASK`. */
export const IPS_NAT_MASK = IPS_SRC_NAT | IPS_DST_NAT;
/** `IPS_SRC_NAT_DONE`: source NAT decided (maybe a null binding). */
export const IPS_SRC_NAT_DONE = 1 << 7;
/** `IPS_DST_NAT_DONE`: destination NAT decided. */
export const IPS_DST_NAT_DONE = 1 << 8;
/** `IPS_NAT_DONE_MASK`. */
export const IPS_NAT_DONE_MASK = IPS_SRC_NAT_DONE | IPS_DST_NAT_DONE;
/** `IPS_DYING`: unhashed, freed when the last skb lets go. */
export const IPS_DYING = 1 << 9;
/** `IPS_FIXED_TIMEOUT`: packets do not refresh the timeout. */
export const IPS_FIXED_TIMEOUT = 1 << 10;

/** Flag for {@link nfConntrackIn}: create no new entry (unsolicited packets are dropped as CT_UNSOLICITED). */
export const NF_CT_F_NO_NEW = 1;

// ---- TCP states and timeouts --------------------------------------------------------

/** `enum tcp_conntrack`. */
export const TCP_CONNTRACK_NONE = 0;
export const TCP_CONNTRACK_SYN_SENT = 1;
export const TCP_CONNTRACK_SYN_RECV = 2;
export const TCP_CONNTRACK_ESTABLISHED = 3;
export const TCP_CONNTRACK_FIN_WAIT = 4;
export const TCP_CONNTRACK_CLOSE_WAIT = 5;
export const TCP_CONNTRACK_LAST_ACK = 6;
export const TCP_CONNTRACK_TIME_WAIT = 7;
export const TCP_CONNTRACK_CLOSE = 8;
/** Simultaneous open: SYN seen from the reply direction too. */
export const TCP_CONNTRACK_SYN_SENT2 = 9;
/** Invalid transition (`sIV`). */
export const TCP_CONNTRACK_MAX = 10;
/** Ignored packet (`sIG`). */
export const TCP_CONNTRACK_IGNORE = 11;
/** Timeout slot: too many retransmissions. */
export const TCP_CONNTRACK_RETRANS = 12;
/** Timeout slot: unacknowledged data / mid-stream pickup without reply. */
export const TCP_CONNTRACK_UNACK = 13;

/** State names, index = state (for printing; cold). */
export const TCP_CONNTRACK_NAMES = [
  "NONE",
  "SYN_SENT",
  "SYN_RECV",
  "ESTABLISHED",
  "FIN_WAIT",
  "CLOSE_WAIT",
  "LAST_ACK",
  "TIME_WAIT",
  "CLOSE",
  "SYN_SENT2",
] as const;

/** Timeout slots after the TCP ones. */
export const CT_TIMEOUT_UDP_UNREPLIED = 14;
export const CT_TIMEOUT_UDP_REPLIED = 15;
export const CT_TIMEOUT_ICMP = 16;
export const CT_TIMEOUT_GENERIC = 17;
/** Number of timeout slots. */
export const CT_TIMEOUT_MAX = 18;

const SECS = 1000;
const MINS = 60 * SECS;
const DAYS = 24 * 60 * MINS;

/** Timeouts in ms; every field optional, defaults are the kernel's. */
export interface ConntrackTimeouts {
  tcpSynSent?: number;
  tcpSynRecv?: number;
  tcpEstablished?: number;
  tcpFinWait?: number;
  tcpCloseWait?: number;
  tcpLastAck?: number;
  tcpTimeWait?: number;
  tcpClose?: number;
  tcpSynSent2?: number;
  tcpRetrans?: number;
  tcpUnack?: number;
  udpUnreplied?: number;
  udpReplied?: number;
  icmp?: number;
  generic?: number;
}

/** The kernel's default timeouts (ms), by slot. */
function defaultTimeouts(t: ConntrackTimeouts): Int32Array {
  const a = new Int32Array(CT_TIMEOUT_MAX);
  a[TCP_CONNTRACK_SYN_SENT] = t.tcpSynSent ?? 2 * MINS;
  // timeouts[0] is "new", the same as SYN_SENT (nf_conntrack_tcp_init_net).
  a[TCP_CONNTRACK_NONE] = a[TCP_CONNTRACK_SYN_SENT] as number;
  a[TCP_CONNTRACK_SYN_RECV] = t.tcpSynRecv ?? 60 * SECS;
  a[TCP_CONNTRACK_ESTABLISHED] = t.tcpEstablished ?? 5 * DAYS;
  a[TCP_CONNTRACK_FIN_WAIT] = t.tcpFinWait ?? 2 * MINS;
  a[TCP_CONNTRACK_CLOSE_WAIT] = t.tcpCloseWait ?? 60 * SECS;
  a[TCP_CONNTRACK_LAST_ACK] = t.tcpLastAck ?? 30 * SECS;
  a[TCP_CONNTRACK_TIME_WAIT] = t.tcpTimeWait ?? 2 * MINS;
  a[TCP_CONNTRACK_CLOSE] = t.tcpClose ?? 10 * SECS;
  a[TCP_CONNTRACK_SYN_SENT2] = t.tcpSynSent2 ?? 2 * MINS;
  a[TCP_CONNTRACK_RETRANS] = t.tcpRetrans ?? 5 * MINS;
  a[TCP_CONNTRACK_UNACK] = t.tcpUnack ?? 5 * MINS;
  a[CT_TIMEOUT_UDP_UNREPLIED] = t.udpUnreplied ?? 30 * SECS;
  a[CT_TIMEOUT_UDP_REPLIED] = t.udpReplied ?? 120 * SECS;
  a[CT_TIMEOUT_ICMP] = t.icmp ?? 30 * SECS;
  a[CT_TIMEOUT_GENERIC] = t.generic ?? 600 * SECS;
  for (let i = 0; i < CT_TIMEOUT_MAX; i++) {
    if (i === TCP_CONNTRACK_MAX || i === TCP_CONNTRACK_IGNORE) continue; // not states: no timeout
    const v = a[i] as number;
    // Expiry is a wrapping 32-bit ms stamp: timeouts must stay below 2^31 ms (24.8 days).
    if (!Number.isInteger(v) || v < 1 || v > 0x3fffffff) {
      throw new RangeError(`conntrack: timeout slot ${i} must be an integer in 1..${0x3fffffff} ms, got ${v}`);
    }
  }
  return a;
}

// ---- statistics ---------------------------------------------------------------------------

/** Stats slots (`struct ip_conntrack_stat`). Lookups that found an entry. */
export const CT_STAT_FOUND = 0;
/** Entries created. */
export const CT_STAT_NEW = 1;
/** Packets found invalid (malformed, bad checksum, invalid TCP transition, ...). */
export const CT_STAT_INVALID = 2;
/** Confirms that failed (tuple already in the table, or the entry died). */
export const CT_STAT_INSERT_FAILED = 3;
/** Packets dropped because no entry could be allocated (table full). */
export const CT_STAT_DROP = 4;
/** Non-assured entries evicted to make room. */
export const CT_STAT_EARLY_DROP = 5;
/** Entries removed because their timeout passed (lazily or by GC). */
export const CT_STAT_EXPIRED = 6;
/** Hash chain entries looked at by lookups. */
export const CT_STAT_SEARCHED = 7;
/** Confirm clashes resolved by switching the skb to the existing entry. */
export const CT_STAT_CLASH_RESOLVE = 8;
/** Entries inserted (confirmed). */
export const CT_STAT_INSERT = 9;
/** Unsolicited packets dropped (no entry and no new entries allowed). */
export const CT_STAT_UNSOLICITED = 10;
/** Number of stats slots. */
export const CT_STAT_MAX = 11;
/** Stats names, index order. */
export const CT_STAT_NAMES = [
  "found",
  "new",
  "invalid",
  "insert_failed",
  "drop",
  "early_drop",
  "expired",
  "searched",
  "clash_resolve",
  "insert",
  "unsolicited",
] as const;

// ---- region and entry layout -----------------------------------------------------------------

const CT_MAGIC = 0x6e666374; // "nfct"
const H_MAGIC = 0;
const H_MAX = 4;
const H_BUCKETS = 8;
const H_COUNT = 12;
const H_FREE_TOP = 16;
const H_SEED = 20;
const H_GC_CURSOR = 24;
const H_FLAGS = 28;
const H_TIMEOUTS = 64;
const H_STATS = 192;
const HEADER_SIZE = 512;
const HF_CHECKSUM = 1;
const HF_TCP_LOOSE = 2;

/** Size of one entry (`struct nf_conn` here). */
export const CT_ENTRY_SIZE = 64;
/** Entry field offsets (bytes). Tuple of direction `dir` starts at `dir * CT_TUPLE_SIZE`. */
export const CT_TUPLE_SIZE = 12;
export const CT_T_SADDR = 0;
export const CT_T_DADDR = 4;
export const CT_T_PORTS = 8;
export const CT_PROTO = 24;
export const CT_TCP_STATE = 25;
export const CT_TCP_LAST_INDEX = 26;
export const CT_TCP_LAST_DIR = 27;
export const CT_STATUS = 28;
export const CT_TIMEOUT = 32;
export const CT_USE = 36;
export const CT_HNEXT = 40;
export const CT_BUCKET = 48;
export const CT_PROTO_A = 56;
export const CT_TCP_SEEN_FLAGS = 60;
export const CT_TCP_LAST_FLAGS = 62;

/** Largest nf_conntrack_max: `entry << 3 | ctinfo` must stay a small integer. */
export const CT_MAX_LIMIT = 1 << 24;
/** Default nf_conntrack_max. */
export const CT_DEFAULT_MAX = 65536;
/** `NF_CT_EVICTION_RANGE`: buckets early_drop looks at. */
export const NF_CT_EVICTION_RANGE = 8;

/** Options of a conntrack table. */
export interface ConntrackOptions {
  /** `nf_conntrack_max` (default 65536); also the number of entry slots carved. */
  max?: number;
  /** `nf_conntrack_buckets`, rounded up to a power of two (default: max rounded up). */
  buckets?: number;
  /** Region name (default `nf_conntrack`). */
  name?: string;
  /** `nf_conntrack_checksum`: verify L4 checksums at PRE_ROUTING (default true). */
  checksum?: boolean;
  /** `nf_conntrack_tcp_loose`: pick up TCP connections mid-stream (default true). */
  tcpLoose?: boolean;
  /** Timeouts in ms (defaults: the kernel's). */
  timeouts?: ConntrackTimeouts;
  /** Hash seed (`nf_conntrack_hash_rnd`); default random. */
  seed?: number;
  /** Clock in ms for callers that do not pass `now` themselves (default Date.now). */
  clock?: () => number;
}

function roundPow2(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

function resolveGeometry(o: ConntrackOptions): { name: string; max: number; buckets: number; size: number } {
  const name = o.name ?? "nf_conntrack";
  const max = o.max ?? CT_DEFAULT_MAX;
  if (!Number.isInteger(max) || max < 1 || max > CT_MAX_LIMIT) {
    throw new RangeError(`conntrack: max must be an integer in 1..${CT_MAX_LIMIT}, got ${max}`);
  }
  const b = o.buckets ?? max;
  if (!Number.isInteger(b) || b < 1 || b > CT_MAX_LIMIT) {
    throw new RangeError(`conntrack: buckets must be an integer in 1..${CT_MAX_LIMIT}, got ${b}`);
  }
  const buckets = roundPow2(b);
  return { name, max, buckets, size: regionSize(max, buckets) };
}

function freeStackOffset(buckets: number): number {
  return HEADER_SIZE + buckets * 4;
}
function entriesOffset(max: number, buckets: number): number {
  return (freeStackOffset(buckets) + max * 4 + 63) & ~63;
}
function regionSize(max: number, buckets: number): number {
  return entriesOffset(max, buckets) + (max + 1) * CT_ENTRY_SIZE;
}

/**
 * The arena region(s) a table with these options needs; pass them as
 * `extraRegions` to createSkbMemory (cold).
 */
export function conntrackRegionSpec(o: ConntrackOptions = {}): RegionSpec[] {
  const g = resolveGeometry(o);
  return [{ name: g.name, size: g.size, align: 64 }];
}

/**
 * One thread's handle on a conntrack table. Every field is fixed at
 * construction except `reason` (the drop reason of the last failed call)
 * and `now32` (the last clock value seen, for lookups made by NAT).
 */
export class Conntrack {
  readonly arena: Arena;
  readonly sab: SharedArrayBuffer;
  readonly name: string;
  /** Byte offset of the region. */
  readonly base: number;
  readonly u8: Uint8Array;
  readonly i32: Int32Array;
  readonly f64: Float64Array;
  /** nf_conntrack_max (= entry slots). */
  readonly max: number;
  /** nf_conntrack_buckets (a power of two). */
  readonly buckets: number;
  readonly mask: number;
  /** i32 index of bucket 0. */
  readonly bucketIdx: number;
  /** i32 index of free-stack slot 0. */
  readonly freeIdx: number;
  /** Byte offset of entry 0. */
  readonly entries: number;
  readonly seed: number;
  /** f64 index of stats slot 0. */
  readonly statIdx: number;
  /** Timeouts (ms) by slot: a per-thread copy of the header's. */
  readonly timeouts: Int32Array;
  readonly checksum: boolean;
  readonly tcpLoose: boolean;
  readonly clock: () => number;
  /** SKB_DROP_REASON of the last call that returned 0 / a failure. */
  reason = 0;
  /** Clock (ms, as int32) of the last call that was given one. */
  now32 = 0;

  /** Use {@link conntrackCreate} or {@link conntrackAttach}. */
  constructor(arena: Arena, name: string, clock: () => number) {
    const r = arena.region(name);
    this.arena = arena;
    this.sab = arena.sab;
    this.name = name;
    this.base = r.offset;
    this.u8 = arena.u8;
    this.i32 = arena.i32;
    this.f64 = arena.f64;
    const h = r.offset >>> 2;
    if (arena.i32[h + (H_MAGIC >>> 2)] !== CT_MAGIC) {
      throw new Error(`conntrack: region '${name}' is not an initialised conntrack table (bad magic)`);
    }
    this.max = arena.i32[h + (H_MAX >>> 2)] as number;
    this.buckets = arena.i32[h + (H_BUCKETS >>> 2)] as number;
    this.mask = this.buckets - 1;
    if (regionSize(this.max, this.buckets) > r.size) {
      throw new Error(`conntrack: region '${name}' (${r.size} B) too small for max ${this.max}, buckets ${this.buckets}`);
    }
    this.bucketIdx = (r.offset + HEADER_SIZE) >>> 2;
    this.freeIdx = (r.offset + freeStackOffset(this.buckets)) >>> 2;
    this.entries = r.offset + entriesOffset(this.max, this.buckets);
    this.seed = arena.i32[h + (H_SEED >>> 2)] as number;
    this.statIdx = (r.offset + H_STATS) >>> 3;
    this.timeouts = arena.i32.slice(h + (H_TIMEOUTS >>> 2), h + (H_TIMEOUTS >>> 2) + CT_TIMEOUT_MAX);
    const flags = arena.i32[h + (H_FLAGS >>> 2)] as number;
    this.checksum = (flags & HF_CHECKSUM) !== 0;
    this.tcpLoose = (flags & HF_TCP_LOOSE) !== 0;
    this.clock = clock;
  }
}

// The skb free path knows only the nfct value and the CPU: find the table by arena.
const tables: Conntrack[] = [];

function register(ct: Conntrack): void {
  tables.push(ct);
  skbSetNfctPut(nfConntrackSkbPut);
  skbSetNfctGet(nfConntrackSkbGet);
}

function tableOf(cpu: SkbCpu, nfct: number): Conntrack {
  const sab = cpu.arena.sab;
  for (let i = 0; i < tables.length; i++) {
    const t = tables[i] as Conntrack;
    if (t.sab === sab) return t;
  }
  throw new Error(`conntrack: skb holds conntrack ${nfct >>> NFCT_INFO_BITS} but no table is attached to this arena`);
}

/**
 * Carve-time initialisation of the table in its region (already in the
 * arena: see {@link conntrackRegionSpec}), and install the skb put hook.
 * Cold; allocates the handle.
 */
export function conntrackCreate(arena: Arena, o: ConntrackOptions = {}): Conntrack {
  const g = resolveGeometry(o);
  const r = arena.region(g.name);
  if (r.size < g.size) {
    throw new RangeError(`conntrackCreate: region '${g.name}' has ${r.size} B, needs ${g.size} (pass conntrackRegionSpec(opts) with the same opts)`);
  }
  const timeouts = defaultTimeouts(o.timeouts ?? {});
  arena.u8.fill(0, r.offset, r.offset + g.size);
  const i32 = arena.i32;
  const h = r.offset >>> 2;
  i32[h + (H_MAX >>> 2)] = g.max;
  i32[h + (H_BUCKETS >>> 2)] = g.buckets;
  i32[h + (H_COUNT >>> 2)] = 0;
  i32[h + (H_FREE_TOP >>> 2)] = g.max;
  i32[h + (H_SEED >>> 2)] = o.seed !== undefined ? o.seed | 0 : (Math.random() * 0x100000000) | 0;
  i32[h + (H_GC_CURSOR >>> 2)] = 0;
  i32[h + (H_FLAGS >>> 2)] = (o.checksum === false ? 0 : HF_CHECKSUM) | (o.tcpLoose === false ? 0 : HF_TCP_LOOSE);
  i32.set(timeouts, h + (H_TIMEOUTS >>> 2));
  // Free stack: popping from the top hands out 1, 2, 3, ...
  const fs = (r.offset + freeStackOffset(g.buckets)) >>> 2;
  for (let i = 0; i < g.max; i++) i32[fs + i] = g.max - i;
  Atomics.store(i32, h + (H_MAGIC >>> 2), CT_MAGIC);
  const ct = new Conntrack(arena, g.name, o.clock ?? Date.now);
  register(ct);
  return ct;
}

/** Map a table created by another thread (same arena); installs the put hook. Cold. */
export function conntrackAttach(arena: Arena, o: Pick<ConntrackOptions, "name" | "clock"> = {}): Conntrack {
  const ct = new Conntrack(arena, o.name ?? "nf_conntrack", o.clock ?? Date.now);
  register(ct);
  return ct;
}

/**
 * Forget a handle (teardown): the put hook keeps every attached handle, and
 * so its arena, reachable. Skbs holding its entries must be freed first
 * unless another handle on the same arena stays attached.
 */
export function conntrackDetach(ct: Conntrack): void {
  const i = tables.indexOf(ct);
  if (i >= 0) tables.splice(i, 1);
}

// ---- small helpers -----------------------------------------------------------------------------

/** Big-endian u32 as an int32 (no heap numbers). */
function ld32(u8: Uint8Array, o: number): number {
  return ((u8[o] as number) << 24) | ((u8[o + 1] as number) << 16) | ((u8[o + 2] as number) << 8) | (u8[o + 3] as number);
}
function ld16(u8: Uint8Array, o: number): number {
  return ((u8[o] as number) << 8) | (u8[o + 1] as number);
}

/** Arena offset of entry `e`. */
export function nfCtEntry(ct: Conntrack, e: number): number {
  return ct.entries + e * CT_ENTRY_SIZE;
}

function stat(ct: Conntrack, i: number): void {
  ct.f64[ct.statIdx + i]++;
}

function hdr(ct: Conntrack, off: number): number {
  return (ct.base + off) >>> 2;
}

/** Entries allocated (`nf_conntrack_count`): hashed, unconfirmed and dying-but-referenced. */
export function nfConntrackCount(ct: Conntrack): number {
  return ct.i32[hdr(ct, H_COUNT)] as number;
}

function mix(h: number, k: number): number {
  k = Math.imul(k, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, 0x1b873593);
  h ^= k;
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

/** `hash_conntrack_raw`: a seeded 32-bit hash of the tuple (murmur3 mixing). */
export function nfCtHashTuple(seed: number, s: number, d: number, ports: number, proto: number): number {
  let h = seed ^ proto;
  h = mix(h, s);
  h = mix(h, d);
  h = mix(h, ports);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h;
}

function isExpired(ct: Conntrack, base: number, now32: number): boolean {
  // nf_ct_is_expired: (s32)(ct->timeout - nfct_time_stamp) <= 0
  return (((ct.i32[(base + CT_TIMEOUT) >>> 2] as number) - now32) | 0) <= 0;
}

/** ICMP type of the reply to a query type, or -1 (`invmap` in nf_conntrack_proto_icmp.c). */
export function icmpInvertType(t: number): number {
  switch (t) {
    case 8:
      return 0;
    case 0:
      return 8;
    case 13:
      return 14;
    case 14:
      return 13;
    case 15:
      return 16;
    case 16:
      return 15;
    case 17:
      return 18;
    case 18:
      return 17;
    default:
      return -1;
  }
}

/** ICMP types that may start a connection (`valid_new`): echo, timestamp, info, address mask requests. */
function icmpValidNew(t: number): boolean {
  return t === 8 || t === 13 || t === 15 || t === 17;
}

/** ICMP errors that carry the header of the packet they are about. */
function icmpIsError(t: number): boolean {
  return t === ICMP_DEST_UNREACH || t === 4 || t === 5 || t === ICMP_TIME_EXCEEDED || t === ICMP_PARAMETERPROB;
}

/** Ports word of the inverse tuple (`nf_ct_invert_tuple`), or -1 when it has none (ICMP without inverse). */
export function nfCtInvertPorts(proto: number, ports: number): number {
  if (proto === IPPROTO_TCP || proto === IPPROTO_UDP) return ((ports & 0xffff) << 16) | (ports >>> 16);
  if (proto === IPPROTO_ICMP) {
    const t = icmpInvertType((ports >>> 8) & 0xff);
    if (t < 0) return -1;
    return (ports & ~0xff00) | (t << 8);
  }
  return ports;
}

// ---- hash table -----------------------------------------------------------------------------------

function hashLink(ct: Conntrack, e: number, dir: number): void {
  const i32 = ct.i32;
  const base = nfCtEntry(ct, e);
  const t = (base + dir * CT_TUPLE_SIZE) >>> 2;
  const b =
    nfCtHashTuple(ct.seed, i32[t] as number, i32[t + 1] as number, i32[t + 2] as number, ct.u8[base + CT_PROTO] as number) &
    ct.mask;
  i32[(base + CT_BUCKET + dir * 4) >>> 2] = b;
  i32[(base + CT_HNEXT + dir * 4) >>> 2] = i32[ct.bucketIdx + b] as number;
  i32[ct.bucketIdx + b] = (e << 1) | dir;
}

function hashUnlink(ct: Conntrack, e: number, dir: number): void {
  const i32 = ct.i32;
  const base = nfCtEntry(ct, e);
  const node = (e << 1) | dir;
  const next = i32[(base + CT_HNEXT + dir * 4) >>> 2] as number;
  let slot = ct.bucketIdx + (i32[(base + CT_BUCKET + dir * 4) >>> 2] as number);
  for (let n = i32[slot] as number; n !== 0; n = i32[slot] as number) {
    if (n === node) {
      i32[slot] = next;
      i32[(base + CT_HNEXT + dir * 4) >>> 2] = 0;
      return;
    }
    slot = (nfCtEntry(ct, n >>> 1) + CT_HNEXT + (n & 1) * 4) >>> 2;
  }
  throw new Error(`conntrack: entry ${e} dir ${dir} missing from its bucket (table corrupt)`);
}

/**
 * `____nf_conntrack_find`: the tuple-hash id (`entry << 1 | dir`) whose
 * tuple equals the given one, or 0. Expired entries met on the way are
 * deleted (lazy expiry, as the kernel's lookup does). Values are int32.
 */
export function __nfConntrackFind(ct: Conntrack, s: number, d: number, ports: number, proto: number): number {
  const i32 = ct.i32;
  const u8 = ct.u8;
  const slot = ct.bucketIdx + (nfCtHashTuple(ct.seed, s, d, ports, proto) & ct.mask);
  const now32 = ct.now32;
  restart: for (;;) {
    let n = i32[slot] as number;
    while (n !== 0) {
      const e = n >>> 1;
      const dir = n & 1;
      const base = ct.entries + e * CT_ENTRY_SIZE;
      ct.f64[ct.statIdx + CT_STAT_SEARCHED]++;
      if (isExpired(ct, base, now32)) {
        nfCtGcExpired(ct, e);
        continue restart;
      }
      const t = (base + dir * CT_TUPLE_SIZE) >>> 2;
      if (i32[t] === s && i32[t + 1] === d && i32[t + 2] === ports && u8[base + CT_PROTO] === proto) return n;
      n = i32[(base + CT_HNEXT + dir * 4) >>> 2] as number;
    }
    return 0;
  }
}

/** Lookup without side effects (no lazy expiry, no stats): for checks and tests. */
function findQuiet(ct: Conntrack, s: number, d: number, ports: number, proto: number): number {
  const i32 = ct.i32;
  let n = i32[ct.bucketIdx + (nfCtHashTuple(ct.seed, s, d, ports, proto) & ct.mask)] as number;
  while (n !== 0) {
    const base = nfCtEntry(ct, n >>> 1);
    const t = (base + (n & 1) * CT_TUPLE_SIZE) >>> 2;
    if (i32[t] === s && i32[t + 1] === d && i32[t + 2] === ports && ct.u8[base + CT_PROTO] === proto) return n;
    n = i32[(base + CT_HNEXT + (n & 1) * 4) >>> 2] as number;
  }
  return 0;
}

/**
 * Find a tuple (host-order u32 addresses; for ICMP `sport` is the id and
 * `dport` is `type << 8 | code`): tuple-hash id `entry << 1 | dir`, or 0.
 * No lazy expiry. Entry = id >>> 1, direction = id & 1.
 */
export function nfConntrackFindTuple(
  ct: Conntrack,
  saddr: number,
  daddr: number,
  sport: number,
  dport: number,
  proto: number,
): number {
  return findQuiet(ct, saddr | 0, daddr | 0, ((sport & 0xffff) << 16) | (dport & 0xffff), proto);
}

// ---- entry lifetime ------------------------------------------------------------------------------

function nfCtFree(ct: Conntrack, e: number): void {
  const i32 = ct.i32;
  const base = nfCtEntry(ct, e);
  i32[(base + CT_STATUS) >>> 2] = 0;
  const top = hdr(ct, H_FREE_TOP);
  const n = i32[top] as number;
  i32[ct.freeIdx + n] = e;
  i32[top] = n + 1;
  i32[hdr(ct, H_COUNT)] = (i32[hdr(ct, H_COUNT)] as number) - 1;
}

/** `nf_ct_put`: drop one reference; the last one frees the entry (which is unhashed by then). */
export function nfCtPut(ct: Conntrack, e: number): void {
  const base = nfCtEntry(ct, e);
  const left = Atomics.sub(ct.i32, (base + CT_USE) >>> 2, 1) - 1;
  if (left > 0) return;
  if (left < 0 || e < 1 || e > ct.max) {
    throw new Error(`nfCtPut: conntrack entry ${e} reference count went to ${left} (double put, or a clone without nf_conntrack_get)`);
  }
  nfCtFree(ct, e);
}

/** `nf_conntrack_get`: take one more reference (e.g. for an skb clone that copied `_nfct`). */
export function nfCtGet(ct: Conntrack, e: number): void {
  Atomics.add(ct.i32, (nfCtEntry(ct, e) + CT_USE) >>> 2, 1);
}

/**
 * The skb put hook installed with skbSetNfctPut (`nf_conntrack_put`): drop
 * the reference an skb's `_nfct` holds. Finds the table by the CPU's arena.
 */
export function nfConntrackSkbPut(cpu: SkbCpu, nfct: number): void {
  nfCtPut(tableOf(cpu, nfct), nfct >>> NFCT_INFO_BITS);
}

/**
 * The skb get hook installed with skbSetNfctGet (`nf_conntrack_get`): a
 * clone or copy now holds `_nfct` too.
 */
export function nfConntrackSkbGet(cpu: SkbCpu, nfct: number): void {
  nfCtGet(tableOf(cpu, nfct), nfct >>> NFCT_INFO_BITS);
}

/**
 * `nf_ct_delete` / `nf_ct_kill`: unhash the entry and drop the table's
 * reference; skbs still holding it keep it alive until they are freed.
 * False when it was already dying.
 */
export function nfCtKill(ct: Conntrack, e: number): boolean {
  const i32 = ct.i32;
  const base = nfCtEntry(ct, e);
  const st = i32[(base + CT_STATUS) >>> 2] as number;
  if ((st & IPS_DYING) !== 0 || (i32[(base + CT_USE) >>> 2] as number) <= 0) return false;
  i32[(base + CT_STATUS) >>> 2] = st | IPS_DYING;
  if ((st & IPS_CONFIRMED) !== 0) {
    hashUnlink(ct, e, IP_CT_DIR_ORIGINAL);
    hashUnlink(ct, e, IP_CT_DIR_REPLY);
    nfCtPut(ct, e);
  }
  return true;
}

function nfCtGcExpired(ct: Conntrack, e: number): void {
  if (nfCtKill(ct, e)) stat(ct, CT_STAT_EXPIRED);
}

/**
 * `early_drop`: evict non-assured entries from up to NF_CT_EVICTION_RANGE
 * buckets starting at `b` until a slot is free. True when one is.
 */
function earlyDrop(ct: Conntrack, b: number): boolean {
  const i32 = ct.i32;
  const top = hdr(ct, H_FREE_TOP);
  for (let k = 0; k < NF_CT_EVICTION_RANGE && k < ct.buckets; k++) {
    const slot = ct.bucketIdx + ((b + k) & ct.mask);
    restart: for (;;) {
      let n = i32[slot] as number;
      while (n !== 0) {
        const e = n >>> 1;
        const base = nfCtEntry(ct, e);
        if (isExpired(ct, base, ct.now32)) {
          nfCtGcExpired(ct, e);
          if ((i32[top] as number) > 0) return true;
          continue restart;
        }
        if (((i32[(base + CT_STATUS) >>> 2] as number) & IPS_ASSURED) === 0) {
          nfCtKill(ct, e);
          stat(ct, CT_STAT_EARLY_DROP);
          if ((i32[top] as number) > 0) return true;
          continue restart;
        }
        n = i32[(base + CT_HNEXT + (n & 1) * 4) >>> 2] as number;
      }
      break;
    }
  }
  return (i32[top] as number) > 0;
}

/** `__nf_conntrack_alloc`: a fresh unconfirmed entry with use = 1, or 0 when the table is full. */
function nfCtAlloc(ct: Conntrack, s: number, d: number, ports: number, rports: number, proto: number): number {
  const i32 = ct.i32;
  const top = hdr(ct, H_FREE_TOP);
  if ((i32[top] as number) === 0) {
    const b = nfCtHashTuple(ct.seed, s, d, ports, proto) & ct.mask;
    if (!earlyDrop(ct, b)) return 0;
  }
  const n = (i32[top] as number) - 1;
  i32[top] = n;
  const e = i32[ct.freeIdx + n] as number;
  i32[hdr(ct, H_COUNT)] = (i32[hdr(ct, H_COUNT)] as number) + 1;
  const base = nfCtEntry(ct, e);
  const w = base >>> 2;
  i32[w] = s;
  i32[w + 1] = d;
  i32[w + 2] = ports;
  i32[w + 3] = d;
  i32[w + 4] = s;
  i32[w + 5] = rports;
  const u8 = ct.u8;
  u8[base + CT_PROTO] = proto;
  u8[base + CT_TCP_STATE] = TCP_CONNTRACK_NONE;
  u8[base + CT_TCP_LAST_INDEX] = 0;
  u8[base + CT_TCP_LAST_DIR] = 0;
  i32[w + 7] = 0; // status
  i32[w + 8] = 0; // timeout
  Atomics.store(i32, w + 9, 1); // use: the skb's reference
  i32[w + 10] = 0;
  i32[w + 11] = 0;
  i32[w + 12] = 0;
  i32[w + 13] = 0;
  i32[w + 14] = 0;
  i32[w + 15] = 0;
  return e;
}

/** `nf_ct_refresh`: set the timeout (relative until confirmed, like the kernel). */
function refresh(ct: Conntrack, base: number, timeout: number, now32: number): void {
  const st = ct.i32[(base + CT_STATUS) >>> 2] as number;
  if ((st & IPS_FIXED_TIMEOUT) !== 0) return;
  ct.i32[(base + CT_TIMEOUT) >>> 2] = (st & IPS_CONFIRMED) !== 0 ? (now32 + timeout) | 0 : timeout;
}

function setStatus(ct: Conntrack, base: number, bits: number): void {
  const i = (base + CT_STATUS) >>> 2;
  ct.i32[i] = (ct.i32[i] as number) | bits;
}

// ---- TCP --------------------------------------------------------------------------------------------

const TCP_SYN_SET = 0;
const TCP_SYNACK_SET = 1;
const TCP_FIN_SET = 2;
const TCP_ACK_SET = 3;
const TCP_RST_SET = 4;
const TCP_NONE_SET = 5;

/** `IP_CT_TCP_FLAG_CLOSE_INIT`: this side sent the first FIN. */
const TCP_FLAG_CLOSE_INIT = 0x04;
/** `IP_CT_TCP_SIMULTANEOUS_OPEN` (last_flags). */
const TCP_SIMULTANEOUS_OPEN = 0x04;
/** `IP_CT_EXP_CHALLENGE_ACK` (last_flags). */
const TCP_EXP_CHALLENGE_ACK = 0x40;

const sNO = TCP_CONNTRACK_NONE;
const sSS = TCP_CONNTRACK_SYN_SENT;
const sSR = TCP_CONNTRACK_SYN_RECV;
const sES = TCP_CONNTRACK_ESTABLISHED;
const sFW = TCP_CONNTRACK_FIN_WAIT;
const sCW = TCP_CONNTRACK_CLOSE_WAIT;
const sLA = TCP_CONNTRACK_LAST_ACK;
const sTW = TCP_CONNTRACK_TIME_WAIT;
const sCL = TCP_CONNTRACK_CLOSE;
const sS2 = TCP_CONNTRACK_SYN_SENT2;
const sIV = TCP_CONNTRACK_MAX;
const sIG = TCP_CONNTRACK_IGNORE;

/**
 * `tcp_conntracks[dir][index][state]` of nf_conntrack_proto_tcp.c, flattened
 * as `(dir * 6 + index) * 10 + state`. Columns: sNO sSS sSR sES sFW sCW sLA sTW sCL sS2.
 */
const TCP_CONNTRACKS = Uint8Array.of(
  // ORIGINAL
  /* syn    */ sSS, sSS, sIG, sIG, sIG, sIG, sIG, sSS, sSS, sS2,
  /* synack */ sIV, sIV, sSR, sIV, sIV, sIV, sIV, sIV, sIV, sSR,
  /* fin    */ sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV,
  /* ack    */ sES, sIV, sES, sES, sCW, sCW, sTW, sTW, sCL, sIV,
  /* rst    */ sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL,
  /* none   */ sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV,
  // REPLY
  /* syn    */ sIV, sS2, sIV, sIV, sIV, sIV, sIV, sSS, sIV, sS2,
  /* synack */ sIV, sSR, sIG, sIG, sIG, sIG, sIG, sIG, sIG, sSR,
  /* fin    */ sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV,
  /* ack    */ sIV, sIG, sSR, sES, sCW, sCW, sTW, sTW, sCL, sIG,
  /* rst    */ sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL,
  /* none   */ sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV,
);

/** The kernel's transition: new state for a packet of class `index` in direction `dir` at `state`. */
export function tcpConntrackTransition(dir: number, index: number, state: number): number {
  return TCP_CONNTRACKS[(dir * 6 + index) * 10 + state] as number;
}

/** `tcp_valid_flags`: FIN/SYN/RST/ACK/URG combinations allowed (PSH, ECE, CWR always are). */
const TCP_VALID_FLAGS = (() => {
  const t = new Uint8Array(64);
  const S = TCP_FLAG_SYN;
  const A = TCP_FLAG_ACK;
  const F = TCP_FLAG_FIN;
  const R = TCP_FLAG_RST;
  const U = 0x20;
  for (const f of [S, S | U, S | A, R, R | A, F | A, F | A | U, A, A | U]) t[f] = 1;
  return t;
})();

/** `get_conntrack_index`: the packet's class in the transition table. */
export function tcpConntrackIndex(flags: number): number {
  if ((flags & TCP_FLAG_RST) !== 0) return TCP_RST_SET;
  if ((flags & TCP_FLAG_SYN) !== 0) return (flags & TCP_FLAG_ACK) !== 0 ? TCP_SYNACK_SET : TCP_SYN_SET;
  if ((flags & TCP_FLAG_FIN) !== 0) return TCP_FIN_SET;
  if ((flags & TCP_FLAG_ACK) !== 0) return TCP_ACK_SET;
  return TCP_NONE_SET;
}

const V_ACCEPT = 0;
const V_INVALID = 1;
const V_REPEAT = 2;

/**
 * `nf_conntrack_tcp_packet` without tcp_in_window: the state machine, the
 * ignore / resync / reopen / simultaneous-open / challenge-ACK special
 * cases, ASSURED and the timeout choice. `end` is seq + payload + SYN + FIN.
 */
function tcpPacket(
  ct: Conntrack,
  e: number,
  dir: number,
  flags: number,
  ackSeq: number,
  end: number,
  now32: number,
): number {
  const u8 = ct.u8;
  const base = nfCtEntry(ct, e);
  const T = ct.timeouts;
  const index = tcpConntrackIndex(flags);
  let oldState = u8[base + CT_TCP_STATE] as number;
  let newState = TCP_CONNTRACKS[(dir * 6 + index) * 10 + oldState] as number;
  const lastIndex = u8[base + CT_TCP_LAST_INDEX] as number;
  const lastDir = u8[base + CT_TCP_LAST_DIR] as number;
  const lastFlags = u8[base + CT_TCP_LAST_FLAGS] as number;
  switch (newState) {
    case TCP_CONNTRACK_SYN_SENT:
    case TCP_CONNTRACK_IGNORE: {
      if (newState === TCP_CONNTRACK_SYN_SENT) {
        if (oldState < TCP_CONNTRACK_TIME_WAIT) break;
        const seen = (u8[base + CT_TCP_SEEN_FLAGS] as number) | (u8[base + CT_TCP_SEEN_FLAGS + 1] as number);
        if ((seen & TCP_FLAG_CLOSE_INIT) !== 0 || (lastDir === dir && lastIndex === TCP_RST_SET)) {
          // Reopen of a closed / aborted connection: delete it and look up again.
          nfCtKill(ct, e);
          return V_REPEAT;
        }
      }
      if (index === TCP_SYNACK_SET && lastIndex === TCP_SYN_SET && lastDir !== dir && ackSeq === (ct.i32[(base + CT_PROTO_A) >>> 2] as number)) {
        // b) This SYN/ACK answers a SYN we ignored: client and server are in sync, we get in sync.
        oldState = TCP_CONNTRACK_SYN_SENT;
        newState = TCP_CONNTRACK_SYN_RECV;
        u8[base + CT_TCP_LAST_FLAGS] = lastFlags & ~TCP_EXP_CHALLENGE_ACK;
        break;
      }
      u8[base + CT_TCP_LAST_INDEX] = index;
      u8[base + CT_TCP_LAST_DIR] = dir;
      ct.i32[(base + CT_PROTO_A) >>> 2] = end;
      if (index === TCP_SYN_SET && dir === IP_CT_DIR_ORIGINAL) {
        // a) SYN in ORIGINAL: remember whether a challenge ACK may follow (LAST_ACK).
        u8[base + CT_TCP_LAST_FLAGS] = oldState === TCP_CONNTRACK_LAST_ACK ? TCP_EXP_CHALLENGE_ACK : 0;
      }
      return V_ACCEPT; // ignored: no state change, no refresh
    }
    case TCP_CONNTRACK_MAX:
      ct.reason = SKB_DROP_REASON.CT_INVALID;
      return V_INVALID;
    case TCP_CONNTRACK_TIME_WAIT:
      if (
        oldState === TCP_CONNTRACK_LAST_ACK &&
        index === TCP_ACK_SET &&
        lastDir !== dir &&
        lastIndex === TCP_SYN_SET &&
        (lastFlags & TCP_EXP_CHALLENGE_ACK) !== 0
      ) {
        // RFC 5961 challenge ACK to a spurious SYN: not the ACK of the last FIN.
        u8[base + CT_TCP_LAST_FLAGS] = lastFlags & ~TCP_EXP_CHALLENGE_ACK;
        return V_ACCEPT;
      }
      break;
    case TCP_CONNTRACK_SYN_SENT2:
      u8[base + CT_TCP_LAST_FLAGS] = lastFlags | TCP_SIMULTANEOUS_OPEN;
      break;
    case TCP_CONNTRACK_SYN_RECV:
      if (dir === IP_CT_DIR_REPLY && index === TCP_ACK_SET && (lastFlags & TCP_SIMULTANEOUS_OPEN) !== 0) {
        newState = TCP_CONNTRACK_ESTABLISHED;
      }
      break;
    default:
      // CLOSE by RST: the kernel validates the RST sequence against the
      // window here; without window tracking every RST is in window.
      break;
  }
  // in_window:
  u8[base + CT_TCP_LAST_INDEX] = index;
  u8[base + CT_TCP_LAST_DIR] = dir;
  u8[base + CT_TCP_STATE] = newState;
  if (oldState !== newState && newState === TCP_CONNTRACK_FIN_WAIT) {
    u8[base + CT_TCP_SEEN_FLAGS + dir] = (u8[base + CT_TCP_SEEN_FLAGS + dir] as number) | TCP_FLAG_CLOSE_INIT;
  }
  let timeout = index === TCP_RST_SET ? (T[TCP_CONNTRACK_CLOSE] as number) : (T[newState] as number);
  const st = ct.i32[(base + CT_STATUS) >>> 2] as number;
  if ((st & IPS_SEEN_REPLY) === 0) {
    if (index === TCP_RST_SET) {
      // The only reply is a RST: no connection, delete at once (nf_ct_kill_acct).
      nfCtKill(ct, e);
      return V_ACCEPT;
    }
    // Do not renew the timeout on SYN retransmits (port reuse could keep the entry alive).
    if (index === TCP_SYN_SET && oldState === TCP_CONNTRACK_SYN_SENT) return V_ACCEPT;
    // Mid-stream pickup without a reply: avoid the 5-day ESTABLISHED timeout.
    if (newState === TCP_CONNTRACK_ESTABLISHED && timeout > (T[TCP_CONNTRACK_UNACK] as number)) {
      timeout = T[TCP_CONNTRACK_UNACK] as number;
    }
  } else if (
    (st & IPS_ASSURED) === 0 &&
    (oldState === TCP_CONNTRACK_SYN_RECV || oldState === TCP_CONNTRACK_ESTABLISHED) &&
    newState === TCP_CONNTRACK_ESTABLISHED
  ) {
    setStatus(ct, base, IPS_ASSURED);
  }
  refresh(ct, base, timeout, now32);
  return V_ACCEPT;
}

// ---- nf_conntrack_in ---------------------------------------------------------------------------------

function ctDrop(ct: Conntrack, reason: number): number {
  ct.reason = reason;
  stat(ct, CT_STAT_INVALID);
  return 0;
}

/** Make `n` bytes from the network header linear; false when the packet is shorter. May move the head. */
function mayPullNet(cpu: SkbCpu, skb: number, n: number): boolean {
  const need = skbNetworkHeader(cpu, skb) - skbDataPtr(cpu, skb) + n;
  if (need <= skbHeadlen(cpu, skb)) return true;
  return pskbMayPull(cpu, skb, need);
}

/** L4 checksum of `len` bytes at arena offset `l4` folds to zero (with the pseudo header for TCP/UDP). */
function l4ChecksumOk(cpu: SkbCpu, skb: number, l4: number, len: number, proto: number, s: number, d: number): boolean {
  const sum = skbChecksum(cpu, skb, l4 - skbDataPtr(cpu, skb), len, 0);
  if (proto === IPPROTO_ICMP) return csumFold(sum) === 0;
  return csumTcpudpMagic(s, d, len, proto, sum) === 0;
}

/**
 * Attach entry `e` to the skb with `ctinfo` (the skb's reference is
 * already counted).
 */
function setNfct(cpu: SkbCpu, skb: number, e: number, ctinfo: number): void {
  cpu.u32[(skb + SKB_NFCT) >>> 2] = (e << NFCT_INFO_BITS) | ctinfo;
}

/**
 * ICMP error (`nf_conntrack_inet_error`): find the connection of the
 * embedded header and attach it as RELATED / RELATED_REPLY. Returns the
 * entry or 0 with `ct.reason`.
 */
function icmpErrorIn(ct: Conntrack, cpu: SkbCpu, skb: number, icmpLen: number): number {
  const u8 = cpu.u8;
  if (icmpLen < 8 + IPH_MIN_LEN + 8) return ctDrop(ct, SKB_DROP_REASON.ICMP_INVALID);
  let iph = skbNetworkHeader(cpu, skb);
  const ihl = ((u8[iph] as number) & 15) << 2;
  if (!mayPullNet(cpu, skb, ihl + 8 + IPH_MIN_LEN)) return ctDrop(ct, SKB_DROP_REASON.HDR_TRUNC);
  iph = skbNetworkHeader(cpu, skb);
  let inner = iph + ihl + 8;
  const innerIhl = ((u8[inner] as number) & 15) << 2;
  if ((u8[inner] as number) >>> 4 !== 4 || innerIhl < IPH_MIN_LEN || icmpLen < 8 + innerIhl + 8) {
    return ctDrop(ct, SKB_DROP_REASON.ICMP_INVALID);
  }
  if (!mayPullNet(cpu, skb, ihl + 8 + innerIhl + 8)) return ctDrop(ct, SKB_DROP_REASON.HDR_TRUNC);
  iph = skbNetworkHeader(cpu, skb);
  inner = iph + ihl + 8;
  // Only the first fragment of the embedded packet has its transport header.
  if ((ld16(u8, inner + 6) & IP_OFFSET) !== 0) return ctDrop(ct, SKB_DROP_REASON.ICMP_INVALID);
  const proto = u8[inner + 9] as number;
  const is = ld32(u8, inner + 12);
  const id = ld32(u8, inner + 16);
  const l4 = inner + innerIhl;
  let ports: number;
  if (proto === IPPROTO_TCP || proto === IPPROTO_UDP) {
    ports = ld32(u8, l4);
  } else if (proto === IPPROTO_ICMP) {
    const t = u8[l4] as number;
    // An error about an error is not tracked; queries only.
    if (icmpInvertType(t) < 0) return ctDrop(ct, SKB_DROP_REASON.ICMP_INVALID);
    ports = (ld16(u8, l4 + 4) << 16) | (t << 8) | (u8[l4 + 1] as number);
  } else {
    ports = 0;
  }
  const rports = nfCtInvertPorts(proto, ports);
  const h = __nfConntrackFind(ct, id, is, rports, proto);
  if (h === 0) return ctDrop(ct, SKB_DROP_REASON.CT_INVALID);
  const e = h >>> 1;
  const dir = h & 1;
  // The error must go to where the embedded packet came from.
  const base = nfCtEntry(ct, e);
  if (ld32(u8, iph + 16) !== (ct.i32[(base + dir * CT_TUPLE_SIZE + CT_T_DADDR) >>> 2] as number)) {
    return ctDrop(ct, SKB_DROP_REASON.CT_INVALID);
  }
  stat(ct, CT_STAT_FOUND);
  nfCtGet(ct, e);
  setNfct(cpu, skb, e, dir === IP_CT_DIR_REPLY ? IP_CT_RELATED_REPLY : IP_CT_RELATED);
  return e;
}

/**
 * `nf_conntrack_in`: track an IPv4 packet whose network header is set and
 * valid (no fragments). Finds or creates its entry, runs the protocol state
 * machine, and sets `skb->_nfct` = entry << 3 | ctinfo (taking a
 * reference the skb's free drops). Returns the entry (>= 1), or 0 with
 * `ct.reason` set (the caller drops the skb with it). `hook` is
 * NF_INET_PRE_ROUTING or NF_INET_LOCAL_OUT (checksums are verified at
 * PRE_ROUTING only); `flags` may hold NF_CT_F_NO_NEW (packets from the
 * outside: no new entries, unsolicited packets dropped as CT_UNSOLICITED).
 * `now` is the clock in ms. An skb already tracked returns its entry.
 * Allocates nothing.
 */
export function nfConntrackIn(ct: Conntrack, cpu: SkbCpu, skb: number, hook: number, flags: number, now: number): number {
  const old = cpu.u32[(skb + SKB_NFCT) >>> 2] as number;
  if (old !== 0) return old >>> NFCT_INFO_BITS;
  const u8 = cpu.u8;
  const now32 = now | 0;
  ct.now32 = now32;
  ct.reason = 0;

  // ---- the IPv4 header (validated upstream; re-check what we rely on)
  if (!mayPullNet(cpu, skb, IPH_MIN_LEN)) return ctDrop(ct, SKB_DROP_REASON.HDR_TRUNC);
  let iph = skbNetworkHeader(cpu, skb);
  const vihl = u8[iph] as number;
  const ihl = (vihl & 15) << 2;
  const totLen = ld16(u8, iph + 2);
  if (vihl >>> 4 !== 4 || ihl < IPH_MIN_LEN || totLen < ihl || iph - skbDataPtr(cpu, skb) + totLen > skbLen(cpu, skb)) {
    return ctDrop(ct, SKB_DROP_REASON.IP_INHDR);
  }
  if ((ld16(u8, iph + 6) & (IP_MF | IP_OFFSET)) !== 0) return ctDrop(ct, SKB_DROP_REASON.CT_INVALID);
  const proto = u8[iph + 9] as number;
  const l4len = totLen - ihl;
  // nf_ip_checksum: only CHECKSUM_NONE / COMPLETE packets are verified (PARTIAL ones were made locally, UNNECESSARY ones by the NIC).
  const summed = u8[skb + SKB_IP_SUMMED] as number;
  const verify = hook === NF_INET_PRE_ROUTING && ct.checksum && (summed === CHECKSUM_NONE || summed === CHECKSUM_COMPLETE);

  // ---- the transport header: tuple ports and protocol checks (tcp_error, udp_error, icmp_error)
  let ports = 0;
  let rports = 0;
  let tcpFlags = 0;
  let ackSeq = 0;
  let end = 0;
  if (proto === IPPROTO_TCP) {
    if (l4len < 20 || !mayPullNet(cpu, skb, ihl + 20)) return ctDrop(ct, SKB_DROP_REASON.HDR_TRUNC);
    iph = skbNetworkHeader(cpu, skb);
    const th = iph + ihl;
    const doff = ((u8[th + 12] as number) >>> 4) << 2;
    if (doff < 20 || doff > l4len) return ctDrop(ct, SKB_DROP_REASON.HDR_TRUNC);
    tcpFlags = u8[th + 13] as number;
    if ((TCP_VALID_FLAGS[tcpFlags & ~(TCP_FLAG_ECE | TCP_FLAG_CWR | TCP_FLAG_PSH)] as number) === 0) {
      return ctDrop(ct, SKB_DROP_REASON.TCP_FLAGS);
    }
    if (verify && !l4ChecksumOk(cpu, skb, th, l4len, proto, ld32(u8, iph + 12), ld32(u8, iph + 16))) {
      return ctDrop(ct, SKB_DROP_REASON.TCP_CSUM);
    }
    ports = ld32(u8, th);
    rports = ((ports & 0xffff) << 16) | (ports >>> 16);
    ackSeq = ld32(u8, th + 8);
    end =
      (ld32(u8, th + 4) +
        (l4len - doff) +
        ((tcpFlags & TCP_FLAG_SYN) !== 0 ? 1 : 0) +
        ((tcpFlags & TCP_FLAG_FIN) !== 0 ? 1 : 0)) |
      0;
  } else if (proto === IPPROTO_UDP) {
    if (l4len < 8 || !mayPullNet(cpu, skb, ihl + 8)) return ctDrop(ct, SKB_DROP_REASON.HDR_TRUNC);
    iph = skbNetworkHeader(cpu, skb);
    const uh = iph + ihl;
    const ulen = ld16(u8, uh + 4);
    if (ulen > l4len || ulen < 8) return ctDrop(ct, SKB_DROP_REASON.HDR_TRUNC);
    if (verify && ld16(u8, uh + 6) !== 0 && !l4ChecksumOk(cpu, skb, uh, ulen, proto, ld32(u8, iph + 12), ld32(u8, iph + 16))) {
      return ctDrop(ct, SKB_DROP_REASON.UDP_CSUM);
    }
    ports = ld32(u8, uh);
    rports = ((ports & 0xffff) << 16) | (ports >>> 16);
  } else if (proto === IPPROTO_ICMP) {
    if (l4len < 8 || !mayPullNet(cpu, skb, ihl + 8)) return ctDrop(ct, SKB_DROP_REASON.HDR_TRUNC);
    iph = skbNetworkHeader(cpu, skb);
    const ic = iph + ihl;
    const type = u8[ic] as number;
    if (type > 18) return ctDrop(ct, SKB_DROP_REASON.ICMP_INVALID);
    if (verify && !l4ChecksumOk(cpu, skb, ic, l4len, proto, 0, 0)) return ctDrop(ct, SKB_DROP_REASON.ICMP_INVALID);
    if (icmpIsError(type)) return icmpErrorIn(ct, cpu, skb, l4len);
    const inv = icmpInvertType(type);
    if (inv < 0) return ctDrop(ct, SKB_DROP_REASON.ICMP_INVALID);
    ports = (ld16(u8, ic + 4) << 16) | (type << 8) | (u8[ic + 1] as number);
    rports = (ports & ~0xff00) | (inv << 8);
  }
  const s = ld32(u8, iph + 12);
  const d = ld32(u8, iph + 16);

  // ---- resolve_normal_ct: find, or create an unconfirmed entry; run the protocol.
  for (let attempt = 0; attempt < 2; attempt++) {
    const h = __nfConntrackFind(ct, s, d, ports, proto);
    let e: number;
    let dir: number;
    let isNew = false;
    if (h === 0) {
      if ((flags & NF_CT_F_NO_NEW) !== 0) {
        ct.reason = SKB_DROP_REASON.CT_UNSOLICITED;
        stat(ct, CT_STAT_UNSOLICITED);
        return 0;
      }
      // The protocol's "new" check (tcp_new / icmp valid_new) before allocating.
      if (proto === IPPROTO_TCP) {
        const st = TCP_CONNTRACKS[tcpConntrackIndex(tcpFlags) * 10 + sNO] as number;
        if (st >= TCP_CONNTRACK_MAX || (st !== TCP_CONNTRACK_SYN_SENT && !ct.tcpLoose)) {
          return ctDrop(ct, SKB_DROP_REASON.CT_INVALID);
        }
      } else if (proto === IPPROTO_ICMP && !icmpValidNew((ports >>> 8) & 0xff)) {
        return ctDrop(ct, SKB_DROP_REASON.ICMP_INVALID);
      }
      e = nfCtAlloc(ct, s, d, ports, rports, proto);
      if (e === 0) {
        ct.reason = SKB_DROP_REASON.NF_CONNTRACK_FULL;
        stat(ct, CT_STAT_DROP);
        return 0;
      }
      stat(ct, CT_STAT_NEW);
      if (proto === IPPROTO_TCP) u8[nfCtEntry(ct, e) + CT_TCP_LAST_INDEX] = TCP_NONE_SET;
      else if (proto === IPPROTO_UDP) ct.i32[(nfCtEntry(ct, e) + CT_PROTO_A) >>> 2] = (now32 + 2 * SECS) | 0;
      dir = IP_CT_DIR_ORIGINAL;
      isNew = true;
      setNfct(cpu, skb, e, IP_CT_NEW);
    } else {
      e = h >>> 1;
      dir = h & 1;
      stat(ct, CT_STAT_FOUND);
      nfCtGet(ct, e);
      const seen = ((ct.i32[(nfCtEntry(ct, e) + CT_STATUS) >>> 2] as number) & IPS_SEEN_REPLY) !== 0;
      setNfct(cpu, skb, e, dir === IP_CT_DIR_REPLY ? IP_CT_ESTABLISHED_REPLY : seen ? IP_CT_ESTABLISHED : IP_CT_NEW);
    }
    const base = nfCtEntry(ct, e);
    let v = V_ACCEPT;
    if (proto === IPPROTO_TCP) {
      v = tcpPacket(ct, e, dir, tcpFlags, ackSeq, end, now32);
    } else if (proto === IPPROTO_UDP) {
      // nf_conntrack_udp_packet: a stream once replied and older than 2 s.
      const st = ct.i32[(base + CT_STATUS) >>> 2] as number;
      if ((st & IPS_SEEN_REPLY) !== 0) {
        let extra = ct.timeouts[CT_TIMEOUT_UDP_UNREPLIED] as number;
        let stream = false;
        if ((((ct.i32[(base + CT_PROTO_A) >>> 2] as number) - now32) | 0) < 0) {
          extra = ct.timeouts[CT_TIMEOUT_UDP_REPLIED] as number;
          stream = (st & IPS_ASSURED) === 0;
        }
        refresh(ct, base, extra, now32);
        if (stream) setStatus(ct, base, IPS_ASSURED);
      } else {
        refresh(ct, base, ct.timeouts[CT_TIMEOUT_UDP_UNREPLIED] as number, now32);
      }
    } else if (proto === IPPROTO_ICMP) {
      refresh(ct, base, ct.timeouts[CT_TIMEOUT_ICMP] as number, now32);
    } else {
      refresh(ct, base, ct.timeouts[CT_TIMEOUT_GENERIC] as number, now32);
    }
    if (v === V_ACCEPT) {
      if (dir === IP_CT_DIR_REPLY) setStatus(ct, base, IPS_SEEN_REPLY);
      return e;
    }
    // Invalid or repeat: the skb lets go of the entry (freeing it if it was new).
    cpu.u32[(skb + SKB_NFCT) >>> 2] = 0;
    nfCtPut(ct, e);
    if (v === V_INVALID) return ctDrop(ct, ct.reason);
    if (isNew) break;
  }
  return ctDrop(ct, SKB_DROP_REASON.CT_INVALID);
}

/**
 * `__nf_conntrack_confirm`: insert the skb's new entry into the hash table
 * (both directions) once the packet has passed POST_ROUTING (after NAT chose
 * the reply tuple). A clash with an identical UDP/ICMP/other flow is
 * resolved by moving the skb to the existing entry (`nf_ct_resolve_clash`);
 * any other clash, or a dying entry, counts insert_failed and returns
 * NETFILTER_DROP. Returns 0 (accept) or a drop reason. Untracked skbs,
 * reply-direction and already confirmed entries return 0.
 */
export function nfConntrackConfirm(ct: Conntrack, cpu: SkbCpu, skb: number, now: number): number {
  const nfct = cpu.u32[(skb + SKB_NFCT) >>> 2] as number;
  if (nfct === 0) return 0;
  const e = nfct >>> NFCT_INFO_BITS;
  const i32 = ct.i32;
  const base = nfCtEntry(ct, e);
  const st = i32[(base + CT_STATUS) >>> 2] as number;
  if ((st & IPS_CONFIRMED) !== 0 || (nfct & NFCT_INFOMASK) >= IP_CT_IS_REPLY) return 0;
  const now32 = now | 0;
  ct.now32 = now32;
  if ((st & IPS_DYING) !== 0) {
    stat(ct, CT_STAT_INSERT_FAILED);
    ct.reason = SKB_DROP_REASON.NETFILTER_DROP;
    return ct.reason;
  }
  const w = base >>> 2;
  const proto = ct.u8[base + CT_PROTO] as number;
  const ho = __nfConntrackFind(ct, i32[w] as number, i32[w + 1] as number, i32[w + 2] as number, proto);
  if (ho !== 0) {
    const other = ho >>> 1;
    const ob = nfCtEntry(ct, other) >>> 2;
    if (
      proto !== IPPROTO_TCP &&
      (ho & 1) === IP_CT_DIR_ORIGINAL &&
      i32[ob + 3] === i32[w + 3] &&
      i32[ob + 4] === i32[w + 4] &&
      i32[ob + 5] === i32[w + 5]
    ) {
      // Same flow, same NAT: the skb continues with the entry already in the table.
      nfCtGet(ct, other);
      const seen = ((i32[ob + 7] as number) & IPS_SEEN_REPLY) !== 0;
      setNfct(cpu, skb, other, seen ? IP_CT_ESTABLISHED : IP_CT_NEW);
      nfCtPut(ct, e);
      stat(ct, CT_STAT_CLASH_RESOLVE);
      return 0;
    }
    stat(ct, CT_STAT_INSERT_FAILED);
    ct.reason = SKB_DROP_REASON.NETFILTER_DROP;
    return ct.reason;
  }
  if (__nfConntrackFind(ct, i32[w + 3] as number, i32[w + 4] as number, i32[w + 5] as number, proto) !== 0) {
    stat(ct, CT_STAT_INSERT_FAILED);
    ct.reason = SKB_DROP_REASON.NETFILTER_DROP;
    return ct.reason;
  }
  // The relative timeout becomes an expiry stamp; the table takes its reference.
  i32[w + 8] = (now32 + (i32[w + 8] as number)) | 0;
  i32[w + 7] = st | IPS_CONFIRMED;
  nfCtGet(ct, e);
  hashLink(ct, e, IP_CT_DIR_ORIGINAL);
  hashLink(ct, e, IP_CT_DIR_REPLY);
  stat(ct, CT_STAT_INSERT);
  return 0;
}

/**
 * `gc_worker`, incrementally: walk whole buckets from where the last call
 * stopped, deleting expired entries, until `budget` entries were examined,
 * `budget` were removed (then the walk resumes in the same bucket next
 * time), or every bucket was visited once. Returns how many expired entries
 * were removed (at most `budget`). Allocates nothing.
 */
export function nfConntrackGcWork(ct: Conntrack, now: number, budget: number): number {
  const i32 = ct.i32;
  const now32 = now | 0;
  ct.now32 = now32;
  const cur = hdr(ct, H_GC_CURSOR);
  let b = i32[cur] as number;
  let examined = 0;
  let removed = 0;
  walk: for (let k = 0; k < ct.buckets && examined < budget; k++) {
    const slot = ct.bucketIdx + b;
    restart: for (;;) {
      let n = i32[slot] as number;
      while (n !== 0) {
        examined++;
        const e = n >>> 1;
        const base = nfCtEntry(ct, e);
        if (isExpired(ct, base, now32)) {
          if (removed >= budget) break walk;
          nfCtGcExpired(ct, e);
          removed++;
          continue restart;
        }
        n = i32[(base + CT_HNEXT + (n & 1) * 4) >>> 2] as number;
      }
      break;
    }
    b = (b + 1) & ct.mask;
  }
  i32[cur] = b;
  return removed;
}

/** Delete every hashed entry (teardown); referenced ones die with their skbs. Returns how many. Cold. */
export function nfConntrackFlush(ct: Conntrack): number {
  let n = 0;
  for (let e = 1; e <= ct.max; e++) {
    const base = nfCtEntry(ct, e);
    if ((ct.i32[(base + CT_USE) >>> 2] as number) > 0 && ((ct.i32[(base + CT_STATUS) >>> 2] as number) & IPS_CONFIRMED) !== 0) {
      if (nfCtKill(ct, e)) n++;
    }
  }
  return n;
}

// ---- accessors (cheap, for NAT, the CLI and tests) -----------------------------------------------------

/** Entry of an `skb->_nfct` value. */
export function nfctEntry(nfct: number): number {
  return nfct >>> NFCT_INFO_BITS;
}
/** ctinfo of an `skb->_nfct` value. */
export function nfctInfo(nfct: number): number {
  return nfct & NFCT_INFOMASK;
}
/** `skb->_nfct`. */
export function skbNfct(cpu: SkbCpu, skb: number): number {
  return cpu.u32[(skb + SKB_NFCT) >>> 2] as number;
}
/** `ct->status`. */
export function nfCtStatus(ct: Conntrack, e: number): number {
  return ct.i32[(nfCtEntry(ct, e) + CT_STATUS) >>> 2] as number;
}
/** `ct->proto.tcp.state`. */
export function nfCtTcpState(ct: Conntrack, e: number): number {
  return ct.u8[nfCtEntry(ct, e) + CT_TCP_STATE] as number;
}
/** Protocol number of the entry. */
export function nfCtProtonum(ct: Conntrack, e: number): number {
  return ct.u8[nfCtEntry(ct, e) + CT_PROTO] as number;
}
/** Reference count. */
export function nfCtUse(ct: Conntrack, e: number): number {
  return Atomics.load(ct.i32, (nfCtEntry(ct, e) + CT_USE) >>> 2);
}
/** `nf_ct_expires`: ms left (confirmed entries; 0 when expired), or the pending timeout of an unconfirmed one. */
export function nfCtExpires(ct: Conntrack, e: number, now: number): number {
  const base = nfCtEntry(ct, e);
  const t = ct.i32[(base + CT_TIMEOUT) >>> 2] as number;
  if ((nfCtStatus(ct, e) & IPS_CONFIRMED) === 0) return t;
  return Math.max((t - (now | 0)) | 0, 0);
}
/** Source address of the tuple of direction `dir` (host-order u32). */
export function nfCtTupleSaddr(ct: Conntrack, e: number, dir: number): number {
  return (ct.i32[(nfCtEntry(ct, e) + dir * CT_TUPLE_SIZE + CT_T_SADDR) >>> 2] as number) >>> 0;
}
/** Destination address of the tuple of direction `dir` (host-order u32). */
export function nfCtTupleDaddr(ct: Conntrack, e: number, dir: number): number {
  return (ct.i32[(nfCtEntry(ct, e) + dir * CT_TUPLE_SIZE + CT_T_DADDR) >>> 2] as number) >>> 0;
}
/** Source port (ICMP: id) of the tuple of direction `dir`. */
export function nfCtTupleSport(ct: Conntrack, e: number, dir: number): number {
  return (ct.i32[(nfCtEntry(ct, e) + dir * CT_TUPLE_SIZE + CT_T_PORTS) >>> 2] as number) >>> 16;
}
/** Destination port (ICMP: type << 8 | code) of the tuple of direction `dir`. */
export function nfCtTupleDport(ct: Conntrack, e: number, dir: number): number {
  return (ct.i32[(nfCtEntry(ct, e) + dir * CT_TUPLE_SIZE + CT_T_PORTS) >>> 2] as number) & 0xffff;
}

/** Counters as a plain object, plus `count` and `max` (allocates). */
export function conntrackStats(ct: Conntrack): Record<(typeof CT_STAT_NAMES)[number] | "count" | "max", number> {
  const o = { count: nfConntrackCount(ct), max: ct.max } as Record<string, number>;
  CT_STAT_NAMES.forEach((n, i) => {
    o[n] = ct.f64[ct.statIdx + i] as number;
  });
  return o as Record<(typeof CT_STAT_NAMES)[number] | "count" | "max", number>;
}

/** Live entries (use > 0), ascending (allocates; cold). */
export function nfConntrackEntries(ct: Conntrack): number[] {
  const out: number[] = [];
  for (let e = 1; e <= ct.max; e++) if ((ct.i32[(nfCtEntry(ct, e) + CT_USE) >>> 2] as number) > 0) out.push(e);
  return out;
}

/**
 * Check the table's invariants and return the problems found (empty when
 * consistent): count = live entries = max - free; the free stack holds
 * distinct free slots; every hashed node is a live, confirmed, non-dying
 * entry in the bucket its tuple hashes to, linked once; every confirmed
 * live entry is findable in both directions. Cold; allocates.
 */
export function nfConntrackCheck(ct: Conntrack): string[] {
  const errs: string[] = [];
  const i32 = ct.i32;
  const count = nfConntrackCount(ct);
  const freeTop = i32[hdr(ct, H_FREE_TOP)] as number;
  let live = 0;
  for (let e = 1; e <= ct.max; e++) if ((i32[(nfCtEntry(ct, e) + CT_USE) >>> 2] as number) > 0) live++;
  if (count !== live) errs.push(`count ${count} != live entries ${live}`);
  if (count + freeTop !== ct.max) errs.push(`count ${count} + free ${freeTop} != max ${ct.max}`);
  const onFree = new Set<number>();
  for (let i = 0; i < freeTop; i++) {
    const e = i32[ct.freeIdx + i] as number;
    if (e < 1 || e > ct.max || onFree.has(e)) errs.push(`free stack slot ${i}: bad or duplicate entry ${e}`);
    else if ((i32[(nfCtEntry(ct, e) + CT_USE) >>> 2] as number) !== 0) errs.push(`free entry ${e} has use != 0`);
    onFree.add(e);
  }
  const seen = new Set<number>();
  for (let b = 0; b < ct.buckets; b++) {
    let guard = 0;
    for (let n = i32[ct.bucketIdx + b] as number; n !== 0; ) {
      const e = n >>> 1;
      const dir = n & 1;
      if (e < 1 || e > ct.max) {
        errs.push(`bucket ${b}: bad node ${n}`);
        break;
      }
      const base = nfCtEntry(ct, e);
      const st = i32[(base + CT_STATUS) >>> 2] as number;
      if (seen.has(n)) errs.push(`node ${n} linked twice`);
      seen.add(n);
      if ((i32[(base + CT_USE) >>> 2] as number) < 1) errs.push(`hashed entry ${e} has use < 1`);
      if ((st & IPS_CONFIRMED) === 0 || (st & IPS_DYING) !== 0) errs.push(`hashed entry ${e} status ${st.toString(16)}`);
      const t = (base + dir * CT_TUPLE_SIZE) >>> 2;
      const hb =
        nfCtHashTuple(ct.seed, i32[t] as number, i32[t + 1] as number, i32[t + 2] as number, ct.u8[base + CT_PROTO] as number) & ct.mask;
      if (hb !== b || (i32[(base + CT_BUCKET + dir * 4) >>> 2] as number) !== b) errs.push(`node ${n} in bucket ${b}, hashes to ${hb}`);
      n = i32[(base + CT_HNEXT + dir * 4) >>> 2] as number;
      if (++guard > 2 * ct.max) {
        errs.push(`bucket ${b}: cycle`);
        break;
      }
    }
  }
  for (let e = 1; e <= ct.max; e++) {
    const base = nfCtEntry(ct, e);
    if ((i32[(base + CT_USE) >>> 2] as number) < 1) continue;
    const st = i32[(base + CT_STATUS) >>> 2] as number;
    if ((st & IPS_CONFIRMED) === 0 || (st & IPS_DYING) !== 0) continue;
    const p = ct.u8[base + CT_PROTO] as number;
    for (let dir = 0; dir < 2; dir++) {
      const t = (base + dir * CT_TUPLE_SIZE) >>> 2;
      const h = findQuiet(ct, i32[t] as number, i32[t + 1] as number, i32[t + 2] as number, p);
      if (h !== ((e << 1) | dir)) errs.push(`entry ${e} dir ${dir}: lookup gives ${h}`);
    }
    if ((i32[(base + CT_USE) >>> 2] as number) < 1) errs.push(`confirmed entry ${e} without table reference`);
  }
  return errs;
}
