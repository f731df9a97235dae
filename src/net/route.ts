/**
 * An IPv4 routing table (the FIB: net/ipv4/fib_trie.c's job) with
 * longest-prefix match.
 *
 * Shape: one open-addressing hash table keyed by (prefix, length) over all
 * prefix lengths, plus the list of lengths in use, longest first. A lookup
 * probes one slot run per length in use (typically a handful; at most 33)
 * and returns at the first hit, which is the longest match. Routes sharing a
 * (prefix, length) form a chain sorted by metric; the head (lowest metric,
 * the kernel's "priority") is what a lookup returns.
 *
 * ```
 *  slots (power of two, linear probing, backward-shift delete)
 *   slotKey[s] prefix   slotLen[s] length (255 = empty)   slotRoute[s] best route
 *  routes (indices; free list through rNext)
 *   rPrefix rLen rGateway rOif rMetric rNext (next in the same-prefix chain)
 *  lens[0..nLens) lengths in use, descending; lenCount[len] routes per length
 * ```
 *
 * Route indices are stable until the route is deleted. Lookups allocate
 * nothing; insert/delete are control-plane operations and may grow the
 * typed arrays (allocating).
 *
 * @module
 */

/** EINVAL (bad prefix / length), returned negated. */
const EINVAL = 22;
/** EEXIST (same prefix, length and metric already present). */
const EEXIST = 17;
/** ESRCH (no such route), as the kernel's fib_table_delete. */
const ESRCH = 3;

const EMPTY = 255;

/**
 * Netmask of each prefix length (index 0..32) as int32. Keys are int32
 * internally: the same bits as the u32 address, but never a heap number.
 */
const MASKS = new Int32Array(33);
for (let l = 1; l <= 32; l++) MASKS[l] = -1 << (32 - l);

/** `inet_make_mask`: the netmask of a prefix length (0..32), host order (u32). */
export function inetMakeMask(len: number): number {
  return (MASKS[len] as number) >>> 0;
}

/** An IPv4 routing table. Fields are typed arrays fixed per capacity; create with {@link fibTableCreate}. */
export class FibTable {
  /** Route slots in use. */
  count = 0;
  /** Route capacity (grows by doubling). */
  cap: number;
  rPrefix: Uint32Array;
  rLen: Uint8Array;
  rGateway: Uint32Array;
  rOif: Int32Array;
  rMetric: Uint32Array;
  /** Next route with the same prefix (metric order), or in the free list; -1 ends. */
  rNext: Int32Array;
  /** Head of the free route list. */
  freeHead = -1;
  /** Route slots handed out so far (high-water mark). */
  used = 0;
  /** Hash slots (power of two) and mask. */
  slotMask: number;
  /** Prefix keys as int32. */
  slotKey: Int32Array;
  slotLen: Uint8Array;
  slotRoute: Int32Array;
  /** Distinct (prefix, length) keys. */
  keys = 0;
  /** Routes per prefix length. */
  readonly lenCount = new Uint32Array(33);
  /** Prefix lengths in use, longest first. */
  readonly lens = new Uint8Array(33);
  /** Entries of `lens` in use. */
  nLens = 0;

  /** Use {@link fibTableCreate}. */
  constructor(capacity: number) {
    const cap = Math.max(8, capacity | 0);
    this.cap = cap;
    this.rPrefix = new Uint32Array(cap);
    this.rLen = new Uint8Array(cap);
    this.rGateway = new Uint32Array(cap);
    this.rOif = new Int32Array(cap);
    this.rMetric = new Uint32Array(cap);
    this.rNext = new Int32Array(cap).fill(-1);
    const slots = pow2AtLeast(cap * 2);
    this.slotMask = slots - 1;
    this.slotKey = new Int32Array(slots);
    this.slotLen = new Uint8Array(slots).fill(EMPTY);
    this.slotRoute = new Int32Array(slots).fill(-1);
  }
}

function pow2AtLeast(n: number): number {
  let p = 16;
  while (p < n) p *= 2;
  return p;
}

/** Create an empty table with room for `capacity` routes before it grows. Allocates. */
export function fibTableCreate(capacity = 256): FibTable {
  return new FibTable(capacity);
}

/** Hash of a (prefix, length) key. */
function slotHash(key: number, len: number): number {
  let h = Math.imul(key ^ Math.imul(len + 1, 0x9e3779b1), 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

/** Slot holding (key, len), or -1. */
function findSlot(t: FibTable, key: number, len: number): number {
  const mask = t.slotMask;
  let s = slotHash(key, len) & mask;
  for (;;) {
    const l = t.slotLen[s] as number;
    if (l === EMPTY) return -1;
    if (l === len && t.slotKey[s] === key) return s;
    s = (s + 1) & mask;
  }
}

/**
 * `fib_table_lookup`: the route for `daddr` with the longest matching
 * prefix (lowest metric among equal prefixes), as an index for the
 * accessors below, or -1 when nothing (not even a default route) matches.
 * Allocates nothing.
 */
export function fibTableLookup(t: FibTable, daddr: number): number {
  const lens = t.lens;
  const n = t.nLens;
  const mask = t.slotMask;
  const slotLen = t.slotLen;
  const slotKey = t.slotKey;
  for (let i = 0; i < n; i++) {
    const len = lens[i] as number;
    const key = daddr & (MASKS[len] as number);
    let s = slotHash(key, len) & mask;
    for (;;) {
      const l = slotLen[s] as number;
      if (l === EMPTY) break;
      if (l === len && slotKey[s] === key) return t.slotRoute[s] as number;
      s = (s + 1) & mask;
    }
  }
  return -1;
}

/** Gateway of route `r` (0: directly connected). */
export function fibRouteGateway(t: FibTable, r: number): number {
  return t.rGateway[r] as number;
}
/** Output interface index of route `r`. */
export function fibRouteOif(t: FibTable, r: number): number {
  return t.rOif[r] as number;
}
/** Metric (priority) of route `r`. */
export function fibRouteMetric(t: FibTable, r: number): number {
  return t.rMetric[r] as number;
}
/** Prefix of route `r` (host order). */
export function fibRoutePrefix(t: FibTable, r: number): number {
  return t.rPrefix[r] as number;
}
/** Prefix length of route `r`. */
export function fibRouteLen(t: FibTable, r: number): number {
  return t.rLen[r] as number;
}
/** `rt_nexthop`: the neighbour to send to — the gateway, or `daddr` itself on a connected route. */
export function fibNextHop(t: FibTable, r: number, daddr: number): number {
  const gw = t.rGateway[r] as number;
  return gw !== 0 ? gw : daddr >>> 0;
}
/** Number of routes. */
export function fibTableCount(t: FibTable): number {
  return t.count;
}

function growRoutes(t: FibTable): void {
  const cap = t.cap * 2;
  const prefix = new Uint32Array(cap);
  prefix.set(t.rPrefix);
  t.rPrefix = prefix;
  const len = new Uint8Array(cap);
  len.set(t.rLen);
  t.rLen = len;
  const gw = new Uint32Array(cap);
  gw.set(t.rGateway);
  t.rGateway = gw;
  const oif = new Int32Array(cap);
  oif.set(t.rOif);
  t.rOif = oif;
  const metric = new Uint32Array(cap);
  metric.set(t.rMetric);
  t.rMetric = metric;
  const next = new Int32Array(cap).fill(-1);
  next.set(t.rNext);
  t.rNext = next;
  t.cap = cap;
}

function growSlots(t: FibTable): void {
  const oldKey = t.slotKey;
  const oldLen = t.slotLen;
  const oldRoute = t.slotRoute;
  const slots = (t.slotMask + 1) * 2;
  t.slotMask = slots - 1;
  t.slotKey = new Int32Array(slots);
  t.slotLen = new Uint8Array(slots).fill(EMPTY);
  t.slotRoute = new Int32Array(slots).fill(-1);
  for (let s = 0; s < oldLen.length; s++) {
    const l = oldLen[s] as number;
    if (l === EMPTY) continue;
    const key = oldKey[s] as number;
    let d = slotHash(key, l) & t.slotMask;
    while ((t.slotLen[d] as number) !== EMPTY) d = (d + 1) & t.slotMask;
    t.slotKey[d] = key;
    t.slotLen[d] = l;
    t.slotRoute[d] = oldRoute[s] as number;
  }
}

function rebuildLens(t: FibTable): void {
  let n = 0;
  for (let l = 32; l >= 0; l--) if ((t.lenCount[l] as number) > 0) t.lens[n++] = l;
  t.nLens = n;
}

/**
 * `fib_table_insert`: add a route to `prefix/len` via `gateway` (0 for a
 * connected route) out of interface `oif`. `prefix` must have no host bits
 * set. Returns the route index, -EINVAL for a bad prefix or length, or
 * -EEXIST when a route with the same prefix, length and metric exists.
 * Control plane: may allocate when the table grows.
 */
export function fibTableInsert(t: FibTable, prefix: number, len: number, gateway: number, oif: number, metric = 0): number {
  if (!Number.isInteger(len) || len < 0 || len > 32) return -EINVAL;
  if (!Number.isInteger(prefix)) return -EINVAL;
  const key = prefix | 0;
  if ((key & ~(MASKS[len] as number)) !== 0) return -EINVAL;
  const met = metric >>> 0;
  let s = findSlot(t, key, len);
  if (s >= 0) {
    for (let r = t.slotRoute[s] as number; r >= 0; r = t.rNext[r] as number) if (t.rMetric[r] === met) return -EEXIST;
  }
  // Allocate a route slot.
  let r = t.freeHead;
  if (r >= 0) {
    t.freeHead = t.rNext[r] as number;
  } else {
    if (t.used === t.cap) growRoutes(t);
    r = t.used++;
  }
  t.rPrefix[r] = key >>> 0;
  t.rLen[r] = len;
  t.rGateway[r] = gateway >>> 0;
  t.rOif[r] = oif | 0;
  t.rMetric[r] = met;
  t.rNext[r] = -1;
  t.count++;
  const c = t.lenCount[len] as number;
  t.lenCount[len] = c + 1;
  if (c === 0) rebuildLens(t);
  if (s < 0) {
    if ((t.keys + 1) * 2 > t.slotMask + 1) growSlots(t);
    s = slotHash(key, len) & t.slotMask;
    while ((t.slotLen[s] as number) !== EMPTY) s = (s + 1) & t.slotMask;
    t.slotKey[s] = key;
    t.slotLen[s] = len;
    t.slotRoute[s] = r;
    t.keys++;
    return r;
  }
  // Insert into the chain by ascending metric.
  let prev = -1;
  let cur = t.slotRoute[s] as number;
  while (cur >= 0 && (t.rMetric[cur] as number) < met) {
    prev = cur;
    cur = t.rNext[cur] as number;
  }
  t.rNext[r] = cur;
  if (prev < 0) t.slotRoute[s] = r;
  else t.rNext[prev] = r;
  return r;
}

/**
 * `fib_table_delete`: remove the route to `prefix/len` with `metric`, or,
 * with metric -1 (default), the preferred (lowest-metric) one. Returns 0,
 * -EINVAL or -ESRCH. Control plane.
 */
export function fibTableDelete(t: FibTable, prefix: number, len: number, metric = -1): number {
  if (!Number.isInteger(len) || len < 0 || len > 32) return -EINVAL;
  const key = prefix | 0;
  const s = findSlot(t, key, len);
  if (s < 0) return -ESRCH;
  let prev = -1;
  let r = t.slotRoute[s] as number;
  if (metric >= 0) {
    const met = metric >>> 0;
    while (r >= 0 && t.rMetric[r] !== met) {
      prev = r;
      r = t.rNext[r] as number;
    }
    if (r < 0) return -ESRCH;
  }
  const next = t.rNext[r] as number;
  if (prev >= 0) t.rNext[prev] = next;
  else t.slotRoute[s] = next;
  // Free the route slot.
  t.rNext[r] = t.freeHead;
  t.freeHead = r;
  t.count--;
  const c = (t.lenCount[len] as number) - 1;
  t.lenCount[len] = c;
  if (c === 0) rebuildLens(t);
  if ((t.slotRoute[s] as number) < 0) removeSlot(t, s);
  return 0;
}

/** Remove hash slot `i` with backward-shift deletion (keeps probe runs unbroken). */
function removeSlot(t: FibTable, i: number): void {
  const mask = t.slotMask;
  let j = i;
  for (;;) {
    j = (j + 1) & mask;
    const l = t.slotLen[j] as number;
    if (l === EMPTY) break;
    const home = slotHash(t.slotKey[j] as number, l) & mask;
    // Entry j may stay if its home lies cyclically in (i, j].
    const stays = i <= j ? i < home && home <= j : i < home || home <= j;
    if (stays) continue;
    t.slotKey[i] = t.slotKey[j] as number;
    t.slotLen[i] = l;
    t.slotRoute[i] = t.slotRoute[j] as number;
    i = j;
  }
  t.slotLen[i] = EMPTY;
  t.slotRoute[i] = -1;
  t.keys--;
}

/** Remove every route. Control plane. */
export function fibTableFlush(t: FibTable): void {
  t.slotLen.fill(EMPTY);
  t.slotRoute.fill(-1);
  t.rNext.fill(-1);
  t.lenCount.fill(0);
  t.count = 0;
  t.keys = 0;
  t.used = 0;
  t.freeHead = -1;
  t.nLens = 0;
}

/** One route as a plain object (for dumps). */
export interface FibRoute {
  prefix: number;
  len: number;
  gateway: number;
  oif: number;
  metric: number;
}

/** Every route, longest prefix first, then by prefix and metric (allocates; `ip route show`). */
export function fibTableDump(t: FibTable): FibRoute[] {
  const out: FibRoute[] = [];
  for (let s = 0; s <= t.slotMask; s++) {
    if ((t.slotLen[s] as number) === EMPTY) continue;
    for (let r = t.slotRoute[s] as number; r >= 0; r = t.rNext[r] as number) {
      out.push({
        prefix: t.rPrefix[r] as number,
        len: t.rLen[r] as number,
        gateway: t.rGateway[r] as number,
        oif: t.rOif[r] as number,
        metric: t.rMetric[r] as number,
      });
    }
  }
  out.sort((a, b) => b.len - a.len || a.prefix - b.prefix || a.metric - b.metric);
  return out;
}
