/**
 * Model-based test of the per-CPU NAPI head cache (kernel-spec.md §1, §4.2).
 *
 * fast-check generates random sequences of skb operations (builds, allocs,
 * clones, data-pointer moves, frags, frees by every path, bulk gets, raw slab
 * traffic, the global switch, IRQ state). Each op runs on the real code, then
 * on a small reference model that predicts:
 *
 * - the exact cache stack after the op (LIFO; refill of BULK only when empty;
 *   a short refill accepted; the push that fills it drops the TOP entries);
 * - which handles are live, cached or queued, and how many head, fclone,
 *   kmalloc and page objects the slabs must have handed out;
 * - every live skb's users, dataref, cloned flag, headroom / headlen /
 *   tailroom / data_len, and the page refcount of every frag page;
 * - the NAPI cache counters.
 *
 * The only things the model does not invent are the identities of fresh slab
 * objects: a refill's handles are read from the stack, a single allocation's
 * from the return value, and both are checked to be head objects that are
 * neither live nor cached.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";

import { KMALLOC_SIZES, kmalloc, kmallocName } from "../../src/mm/kmalloc.js";
import { kfree, mmSlabInfo } from "../../src/mm/mm.js";
import { allocPage, pageRefAdd, pageRefCount, virtToHeadPage } from "../../src/mm/page-alloc.js";
import { pageFragAlloc, pageFragCacheDrain, pageFragFree } from "../../src/mm/page-frag.js";
import {
  kmemCacheAllocBulk,
  kmemCacheFreeBulk,
  kmemCacheInfo,
  kmemCacheObjIndex,
  kmemCacheObjState,
  OBJ_ALLOCATED,
  OBJ_CACHED,
  type BulkMode,
} from "../../src/mm/slab.js";
import { skbDataLen, skbDataref, skbFclone, skbFlag, skbHeadlen, skbHeadPtr, skbHeadroom, skbLen, skbUsers, skbGet } from "../../src/skb/access.js";
import { allocSkb, buildSkbAround, napiAllocSkb, napiBuildSkb } from "../../src/skb/alloc.js";
import { skbClone } from "../../src/skb/clone.js";
import { createSkbCpu, napiCacheStats, type SkbCpu } from "../../src/skb/cpu.js";
import { skbAddRxFrag, skbPull, skbPush, skbPut } from "../../src/skb/data.js";
import { kfreeSkb, napiConsumeSkb, napiSkbFreeStolenHead, netTxAction, skbSetDeferFree } from "../../src/skb/free.js";
import {
  FCLONE_SKB2,
  MAX_SKB_FRAGS,
  NET_SKB_PAD,
  SHINFO_SIZE,
  SKB_END,
  SKB_FCLONE_CLONE,
  SKB_FCLONE_ORIG,
  SKB_FCLONE_UNAVAILABLE,
  SKB_SMALL_HEAD_CACHE_SIZE,
  SKB_TAIL,
  SKBF_CLONED,
  skbDataAlign,
  skbHeadAlign,
  skbWithOverhead,
} from "../../src/skb/layout.js";
import { createSkbMemory, type SkbMemory } from "../../src/skb/memory.js";
import { napiCacheSetEnabled, napiSkbCacheDrain, napiSkbCacheGetBulk } from "../../src/skb/napi-cache.js";

// ---- operations --------------------------------------------------------------------

type Op =
  | { k: "build"; kmalloc: boolean }
  | { k: "burst"; n: number }
  | { k: "napiAlloc"; len: number }
  | { k: "alloc"; size: number; flags: number; node: number; clone: boolean }
  | { k: "clone"; i: number }
  | { k: "get"; i: number }
  | { k: "put"; i: number; n: number }
  | { k: "push"; i: number; n: number }
  | { k: "pull"; i: number; n: number }
  | { k: "frag"; i: number; shared: number }
  | { k: "consume"; i: number; budget: number }
  | { k: "consumeAll" }
  | { k: "kfree"; i: number }
  | { k: "stolen"; i: number }
  | { k: "txAction" }
  | { k: "irqs"; on: boolean }
  | { k: "getBulk"; n: number; build: number }
  | { k: "slabBulk"; n: number; reverse: boolean }
  | { k: "toggle" };

function opArb(toggle: boolean): fc.Arbitrary<Op> {
  const w = <T>(weight: number, arbitrary: fc.Arbitrary<T>) => ({ weight, arbitrary });
  const i = fc.nat(1000);
  const arbs = [
    w(8, fc.record({ k: fc.constant("build" as const), kmalloc: fc.boolean() })),
    w(2, fc.record({ k: fc.constant("burst" as const), n: fc.integer({ min: 1, max: 64 }) })),
    w(4, fc.record({ k: fc.constant("napiAlloc" as const), len: fc.constantFrom(10, 200, 300, 600, 1500, 3000, 3800, 9000) })),
    w(
      4,
      fc.record({
        k: fc.constant("alloc" as const),
        size: fc.constantFrom(0, 64, 300, 700, 1500, 5000),
        flags: fc.constantFrom(0, 2, 4, 6, 1, 5),
        node: fc.constantFrom(-1, 0, 1),
        clone: fc.boolean(),
      }),
    ),
    w(4, fc.record({ k: fc.constant("clone" as const), i })),
    w(1, fc.record({ k: fc.constant("get" as const), i })),
    w(3, fc.record({ k: fc.constant("put" as const), i, n: fc.integer({ min: 0, max: 1200 }) })),
    w(2, fc.record({ k: fc.constant("push" as const), i, n: fc.integer({ min: 0, max: 80 }) })),
    w(2, fc.record({ k: fc.constant("pull" as const), i, n: fc.integer({ min: 0, max: 400 }) })),
    w(2, fc.record({ k: fc.constant("frag" as const), i, shared: fc.integer({ min: -1, max: 50 }) })),
    w(8, fc.record({ k: fc.constant("consume" as const), i, budget: fc.constantFrom(0, 64) })),
    w(1, fc.record({ k: fc.constant("consumeAll" as const) })),
    w(4, fc.record({ k: fc.constant("kfree" as const), i })),
    w(2, fc.record({ k: fc.constant("stolen" as const), i })),
    w(2, fc.record({ k: fc.constant("txAction" as const) })),
    w(2, fc.record({ k: fc.constant("irqs" as const), on: fc.boolean() })),
    w(2, fc.record({ k: fc.constant("getBulk" as const), n: fc.integer({ min: 1, max: 40 }), build: fc.nat(40) })),
    w(1, fc.record({ k: fc.constant("slabBulk" as const), n: fc.integer({ min: 1, max: 40 }), reverse: fc.boolean() })),
  ] as fc.WeightedArbitrary<Op>[];
  if (toggle) arbs.push(w(1, fc.record({ k: fc.constant("toggle" as const) })) as fc.WeightedArbitrary<Op>);
  return fc.oneof(...arbs);
}

// ---- the reference model ----------------------------------------------------------------

/** A data buffer shared by an skb and its clones. */
interface MData {
  dataref: number;
  /** Pages (from mem.pages) referenced by frags, one reference each. */
  frags: number[];
  /** Name of the slab cache a kmalloc / small head came from, or null for a page-fragment head. */
  km: string | null;
  /** Head address (for page checks of fragment heads). */
  head: number;
}

interface MPair {
  ref: number;
}

interface MSkb {
  h: number;
  kind: "head" | "orig" | "comp";
  pair: MPair | null;
  data: MData;
  users: number;
  cloned: boolean;
  headroom: number;
  headlen: number;
  tailroom: number;
  dataLen: number;
}

interface Stats {
  gets: number;
  hits: number;
  refills: number;
  refillObjs: number;
  getFail: number;
  puts: number;
  flushes: number;
  flushedObjs: number;
  slabCalls: number;
  bulkGets: number;
  bulkDirect: number;
  txCompleted: number;
}

/** "A fresh object from the slab": its identity is whatever the real code returned. */
const SLAB = -1;

interface Setup {
  readonly profile: "5.12" | "6.19";
  readonly sizes?: { cacheSize: number; bulk: number; flush: number };
  readonly mem: "roomy" | "tight";
  readonly bulkMode: BulkMode;
  readonly debug: boolean;
  readonly enabled: boolean;
  readonly toggle: boolean;
}

class Model {
  readonly size: number;
  readonly bulk: number;
  readonly keep: number;
  readonly consumeOnly: boolean;
  readonly smallMax: number;
  readonly headCap: number;
  readonly fcloneCap: number;
  readonly pageCap: number;
  readonly partial: boolean;
  readonly kmCap = new Map<string, number>();
  readonly kmUse = new Map<string, number>();
  enabled: boolean;
  irqs = false;
  cache: number[] = [];
  readonly live = new Map<number, MSkb>();
  queue: MSkb[] = [];
  readonly pairs = new Set<MPair>();
  readonly pages = new Map<number, number>();
  readonly st: Stats = {
    gets: 0,
    hits: 0,
    refills: 0,
    refillObjs: 0,
    getFail: 0,
    puts: 0,
    flushes: 0,
    flushedObjs: 0,
    slabCalls: 0,
    bulkGets: 0,
    bulkDirect: 0,
    txCompleted: 0,
  };
  /** Shells held by the harness inside one op (bulk results not yet built or freed). */
  held = 0;
  /** Coverage: how often interesting branches were taken (checked so the test cannot go vacuous). */
  readonly ev = { dataFail: 0, headFail: 0, shortRefill: 0, companion: 0, stolen: 0, txFreed: 0, throws: 0, bulkDirect: 0 };

  constructor(s: Setup, mem: SkbMemory) {
    const def = s.profile === "5.12" ? { cacheSize: 64, bulk: 16, flush: 32 } : { cacheSize: 128, bulk: 32, flush: 32 };
    const z = s.sizes ?? def;
    this.size = z.cacheSize;
    this.bulk = z.bulk;
    this.keep = z.cacheSize - z.flush;
    this.consumeOnly = s.profile === "6.19";
    this.smallMax = s.profile === "5.12" ? skbWithOverhead(1024) : skbWithOverhead(SKB_SMALL_HEAD_CACHE_SIZE);
    this.headCap = mem.config.heads;
    this.fcloneCap = mem.config.fclones;
    this.pageCap = mem.config.pages;
    this.partial = s.bulkMode === "partial";
    this.enabled = s.enabled;
    KMALLOC_SIZES.forEach((sz, i) => {
      this.kmCap.set(kmallocName(sz), mem.config.kmalloc[i] as number);
      this.kmUse.set(kmallocName(sz), 0);
    });
    this.kmCap.set("skbuff_small_head", mem.config.smallHeads);
    this.kmUse.set("skbuff_small_head", 0);
  }

  headShellsOut(): number {
    let n = this.cache.length + this.held;
    for (const s of this.live.values()) if (s.kind === "head") n++;
    for (const s of this.queue) if (s.kind === "head") n++;
    return n;
  }
  headFree(): number {
    return this.headCap - this.headShellsOut();
  }
  /** What kmemCacheAllocBulk(n) returns in this slab mode. */
  bulkRes(n: number): number {
    const free = this.headFree();
    if (free >= n) return n;
    return this.partial ? free : 0;
  }
  inUse(h: number): boolean {
    return this.live.has(h) || this.cache.includes(h) || this.queue.some((q) => q.h === h);
  }

  /** Data slab for an allocSkb of `size` (kmalloc_reserve). */
  dataCacheFor(size: number): { name: string; objSize: number } {
    const want = skbHeadAlign(skbDataAlign(size));
    if (this.consumeOnly && want <= SKB_SMALL_HEAD_CACHE_SIZE) return { name: "skbuff_small_head", objSize: SKB_SMALL_HEAD_CACHE_SIZE };
    const sz = KMALLOC_SIZES.find((c) => c >= want);
    if (sz === undefined) throw new Error(`model: no kmalloc class for ${want}`);
    return { name: kmallocName(sz), objSize: sz };
  }
  kmTake(name: string): boolean {
    const u = this.kmUse.get(name) as number;
    if (u >= (this.kmCap.get(name) as number)) return false;
    this.kmUse.set(name, u + 1);
    return true;
  }

  /** napi_skb_cache_get(alloc). `raw` is the real stack after the op (to adopt refills). */
  get(alloc: boolean, raw: Uint32Array, adopt: (h: number) => void): number {
    const st = this.st;
    st.gets++;
    if (!this.enabled) {
      if (!alloc) {
        st.getFail++;
        return 0;
      }
      st.slabCalls++;
      if (this.headFree() === 0) {
        st.getFail++;
        return 0;
      }
      return SLAB;
    }
    if (this.cache.length > 0) {
      st.hits++;
      return this.cache.pop() as number;
    }
    if (!alloc) {
      st.getFail++;
      return 0;
    }
    const k = this.bulkRes(this.bulk);
    if (k > 0 && k < this.bulk) this.ev.shortRefill++;
    st.slabCalls++;
    st.refills++;
    st.refillObjs += k;
    if (k === 0) {
      st.getFail++;
      return 0;
    }
    for (let i = 0; i < k; i++) {
      const h = raw[i] as number;
      adopt(h);
      this.cache.push(h);
    }
    return this.cache.pop() as number;
  }

  /** napi_skb_cache_put. */
  put(h: number): void {
    const st = this.st;
    st.puts++;
    if (!this.enabled) {
      st.slabCalls++;
      return;
    }
    this.cache.push(h);
    if (this.cache.length === this.size) {
      this.cache.splice(this.keep);
      st.flushes++;
      st.flushedObjs += this.size - this.keep;
      st.slabCalls++;
    }
  }

  releaseData(d: MData): void {
    d.dataref--;
    if (d.dataref > 0) return;
    for (const p of d.frags) {
      const r = (this.pages.get(p) as number) - 1;
      if (r === 0) this.pages.delete(p);
      else this.pages.set(p, r);
    }
    d.frags = [];
    if (d.km !== null) this.kmUse.set(d.km, (this.kmUse.get(d.km) as number) - 1);
  }

  /** kfree_skbmem: the shell (head: implicit by leaving `live`), or the fclone pair accounting. */
  freeMem(s: MSkb): void {
    if (s.pair === null) return;
    const p = s.pair;
    if (s.kind === "orig" && p.ref === 1) p.ref = 0;
    else p.ref--;
    if (p.ref === 0) this.pairs.delete(p);
  }

  /** __kfree_skb. */
  kfreeNow(s: MSkb): void {
    this.releaseData(s.data);
    this.freeMem(s);
  }

  /** __napi_kfree_skb: release and cache. */
  napiFree(s: MSkb): void {
    this.releaseData(s.data);
    this.put(s.h);
  }
}

// ---- the harness ----------------------------------------------------------------------

const FRAG_SZ = skbHeadAlign(1024);

interface World {
  mem: SkbMemory;
  cpu: SkbCpu;
  m: Model;
  debug: boolean;
}

function makeWorld(s: Setup): World {
  const bulk = s.sizes?.bulk ?? (s.profile === "5.12" ? 16 : 32);
  const mem =
    s.mem === "roomy"
      ? createSkbMemory({ arenaSize: 16 << 20, debug: s.debug, bulkMode: s.bulkMode })
      : createSkbMemory({
          arenaSize: 8 << 20,
          debug: s.debug,
          bulkMode: s.bulkMode,
          heads: 3 * bulk + 7,
          fclones: 4,
          smallHeads: 6,
          kmalloc: [4, 4, 4, 4, 6, 6, 6, 4, 3, 2, 2],
          fragPages: 64,
          pages: 24,
        });
  const cpu = createSkbCpu(mem, 0, s.sizes ? { profile: s.profile, sizes: s.sizes } : { profile: s.profile });
  napiCacheSetEnabled(s.enabled);
  return { mem, cpu, m: new Model(s, mem), debug: s.debug };
}

function isHead(w: World, h: number): boolean {
  return kmemCacheObjIndex(w.mem.headCache, h) >= 0;
}

/** Check a fresh slab handle before the model adopts it. */
function adoptFresh(w: World, h: number, what: string): void {
  assert.ok(h !== 0 && isHead(w, h), `${what}: ${h} is not a head-slab object`);
  assert.ok(!w.m.inUse(h), `${what}: handle 0x${h.toString(16)} handed out while live / cached / queued`);
}

function pick(m: Model, i: number): MSkb | undefined {
  if (m.live.size === 0) return undefined;
  const keys = [...m.live.keys()];
  return m.live.get(keys[i % keys.length] as number);
}

function newSkb(h: number, kind: MSkb["kind"], pair: MPair | null, data: MData, end: number, reserve: number): MSkb {
  return { h, kind, pair, data, users: 1, cloned: false, headroom: reserve, headlen: 0, tailroom: end - reserve, dataLen: 0 };
}

/** Resolve a model shell prediction against the real result; returns the handle. */
function resolveShell(w: World, predicted: number, real: number, what: string): number {
  if (predicted === SLAB) {
    adoptFresh(w, real, what);
    return real;
  }
  assert.equal(real, predicted, `${what}: expected shell 0x${predicted.toString(16)}, got 0x${real.toString(16)}`);
  return real;
}

/** allocSkb in the model; null = predicted failure. Resolution of the shell is left to the caller. */
function modelAllocSkb(w: World, size: number, flags: number, node: number): { shell: number; kind: MSkb["kind"]; km: string; objSize: number } | null {
  const m = w.m;
  const raw = w.cpu.skbCache;
  const adopt = (h: number) => adoptFresh(w, h, "allocSkb refill");
  const fcl = (flags & 1) !== 0;
  const local = node === -1 || node === 0;
  let shell: number;
  let kind: MSkb["kind"] = "head";
  if (fcl) {
    if (m.pairs.size >= m.fcloneCap) {
      m.ev.headFail++;
      return null;
    }
    shell = SLAB;
    kind = "orig";
  } else if ((flags & 4) !== 0 && local) {
    shell = m.get(true, raw, adopt);
    if (shell === 0) {
      m.ev.headFail++;
      return null;
    }
  } else {
    shell = 0;
    if (m.consumeOnly && local && !m.irqs) shell = m.get(false, raw, adopt);
    if (shell === 0) {
      if (m.headFree() === 0) return null;
      shell = SLAB;
    }
  }
  const dc = m.dataCacheFor(size);
  // A popped cached shell whose data fails goes to the slab: it simply is no longer tracked.
  if (!m.kmTake(dc.name)) {
    m.ev.dataFail++;
    return null;
  }
  return { shell, kind, km: dc.name, objSize: dc.objSize };
}

function step(w: World, op: Op): void {
  const { cpu, mem, m } = w;
  switch (op.k) {
    case "build":
    case "burst": {
      const n = op.k === "burst" ? op.n : 1;
      for (let j = 0; j < n; j++) {
        const useKm = op.k === "build" && op.kmalloc;
        let data: number;
        let size: number;
        if (useKm) {
          if (!m.kmTake("kmalloc-512")) return;
          data = kmalloc(mem.kmalloc, 512);
          assert.notEqual(data, 0, "harness kmalloc-512");
          size = 0;
        } else {
          data = pageFragAlloc(cpu.napiFrag, FRAG_SZ);
          if (data === 0) return;
          size = FRAG_SZ;
        }
        const r = napiBuildSkb(cpu, data, size);
        const pred = m.get(true, cpu.skbCache, (h) => adoptFresh(w, h, "napiBuildSkb refill"));
        if (pred === 0) {
          assert.equal(r, 0, "napiBuildSkb should fail");
          if (useKm) {
            kfree(mem.mm, data);
            m.kmUse.set("kmalloc-512", (m.kmUse.get("kmalloc-512") as number) - 1);
          } else pageFragFree(cpu.fragPages, data);
          continue;
        }
        const h = resolveShell(w, pred, r, "napiBuildSkb");
        const end = useKm ? 512 - SHINFO_SIZE : FRAG_SZ - SHINFO_SIZE;
        m.live.set(h, newSkb(h, "head", null, { dataref: 1, frags: [], km: useKm ? "kmalloc-512" : null, head: data }, end, 0));
      }
      return;
    }
    case "napiAlloc": {
      const L = op.len + NET_SKB_PAD;
      const napi = { dev: 3, napiId: 1, skb: 0 };
      if (L <= m.smallMax || L > skbWithOverhead(4096)) {
        const r = napiAllocSkb(cpu, napi, op.len);
        const p = modelAllocSkb(w, L, 2 | 4, -1);
        if (p === null) {
          assert.equal(r, 0, `napiAllocSkb(${op.len}) should fail`);
          return;
        }
        const h = resolveShell(w, p.shell, r, "napiAllocSkb kmalloc path");
        m.live.set(h, newSkb(h, "head", null, { dataref: 1, frags: [], km: p.km, head: skbHeadPtr(cpu, h) }, p.objSize - SHINFO_SIZE, NET_SKB_PAD));
        return;
      }
      const sz = skbHeadAlign(L);
      const r = napiAllocSkb(cpu, napi, op.len);
      const pred = m.get(true, cpu.skbCache, (h) => adoptFresh(w, h, "napiAllocSkb refill"));
      if (pred === 0) {
        assert.equal(r, 0, `napiAllocSkb(${op.len}) should fail`);
        return;
      }
      assert.notEqual(r, 0, "napiAllocSkb frag path: page fragment unexpectedly failed (test config too small?)");
      const h = resolveShell(w, pred, r, "napiAllocSkb frag path");
      m.live.set(h, newSkb(h, "head", null, { dataref: 1, frags: [], km: null, head: skbHeadPtr(cpu, h) }, sz - SHINFO_SIZE, NET_SKB_PAD));
      return;
    }
    case "alloc": {
      const r = allocSkb(cpu, op.size, op.flags, op.node);
      const p = modelAllocSkb(w, op.size, op.flags, op.node);
      if (p === null) {
        assert.equal(r, 0, `allocSkb(${op.size}, ${op.flags}, ${op.node}) should fail`);
        return;
      }
      let h: number;
      let pair: MPair | null = null;
      if (p.kind === "orig") {
        assert.ok(kmemCacheObjIndex(mem.fcloneCache, r) >= 0, "fclone skb from the fclone slab");
        h = r;
        pair = { ref: 1 };
        m.pairs.add(pair);
      } else {
        h = resolveShell(w, p.shell, r, `allocSkb(${op.size}, ${op.flags}, ${op.node})`);
      }
      m.live.set(h, newSkb(h, p.kind, pair, { dataref: 1, frags: [], km: p.km, head: skbHeadPtr(cpu, h) }, p.objSize - SHINFO_SIZE, 0));
      // Clone it right away (the fclone companion case is otherwise rare): it is the newest live skb.
      if (op.clone) step(w, { k: "clone", i: m.live.size - 1 });
      return;
    }
    case "clone": {
      const s = pick(m, op.i);
      if (s === undefined) return;
      const r = skbClone(cpu, s.h);
      let h: number;
      let kind: MSkb["kind"] = "head";
      if (s.kind === "orig" && s.pair !== null && s.pair.ref === 1) {
        h = s.h + FCLONE_SKB2;
        assert.equal(r, h, "clone of an unused fclone original uses the companion");
        s.pair.ref = 2;
        kind = "comp";
        m.ev.companion++;
      } else {
        if (m.headFree() === 0) {
          assert.equal(r, 0, "skbClone with an empty head slab");
          return;
        }
        adoptFresh(w, r, "skbClone");
        h = r;
      }
      s.data.dataref++;
      s.cloned = true;
      m.live.set(h, { ...s, h, kind, pair: kind === "comp" ? s.pair : null, users: 1, cloned: true });
      return;
    }
    case "get": {
      const s = pick(m, op.i);
      if (s === undefined) return;
      skbGet(cpu, s.h);
      s.users++;
      return;
    }
    case "put": {
      const s = pick(m, op.i);
      if (s === undefined) return;
      if (s.dataLen !== 0 || op.n > s.tailroom) {
        assert.throws(() => skbPut(cpu, s.h, op.n), /skbPut/);
        m.ev.throws++;
        return;
      }
      skbPut(cpu, s.h, op.n);
      s.tailroom -= op.n;
      s.headlen += op.n;
      return;
    }
    case "push": {
      const s = pick(m, op.i);
      if (s === undefined) return;
      if (op.n > s.headroom) {
        assert.throws(() => skbPush(cpu, s.h, op.n), /skbPush/);
        m.ev.throws++;
        return;
      }
      skbPush(cpu, s.h, op.n);
      s.headroom -= op.n;
      s.headlen += op.n;
      return;
    }
    case "pull": {
      const s = pick(m, op.i);
      if (s === undefined) return;
      if (op.n > s.headlen + s.dataLen) {
        assert.equal(skbPull(cpu, s.h, op.n), 0);
        return;
      }
      if (op.n > s.headlen) {
        assert.throws(() => skbPull(cpu, s.h, op.n), /skbPull/);
        m.ev.throws++;
        return;
      }
      assert.notEqual(skbPull(cpu, s.h, op.n), 0);
      s.headroom += op.n;
      s.headlen -= op.n;
      return;
    }
    case "frag": {
      const s = pick(m, op.i);
      if (s === undefined || s.data.dataref !== 1 || s.data.frags.length >= MAX_SKB_FRAGS) return;
      let page: number;
      if (op.shared >= 0 && m.pages.size > 0) {
        const keys = [...m.pages.keys()];
        page = keys[op.shared % keys.length] as number;
        pageRefAdd(mem.pages, page, 1);
        m.pages.set(page, (m.pages.get(page) as number) + 1);
      } else {
        if (m.pages.size >= m.pageCap) return;
        page = allocPage(mem.pages);
        assert.notEqual(page, 0, "page allocator");
        m.pages.set(page, 1);
      }
      skbAddRxFrag(cpu, s.h, s.data.frags.length, page, 0, 100, 4096);
      s.data.frags.push(page);
      // Frags belong to the shared info: every skb on this buffer sees them (only one here: dataref 1).
      s.dataLen += 100;
      return;
    }
    case "consume": {
      const s = pick(m, op.i);
      if (s === undefined) return;
      napiConsumeSkb(cpu, s.h, op.budget);
      consumeModel(m, s, op.budget);
      return;
    }
    case "consumeAll": {
      for (const h of [...m.live.keys()]) {
        const s = m.live.get(h) as MSkb;
        napiConsumeSkb(cpu, h, 64);
        consumeModel(m, s, 64);
      }
      return;
    }
    case "kfree": {
      const s = pick(m, op.i);
      if (s === undefined) return;
      kfreeSkb(cpu, s.h);
      if (s.users > 1) s.users--;
      else {
        m.live.delete(s.h);
        m.kfreeNow(s);
      }
      return;
    }
    case "stolen": {
      const s = pick(m, op.i);
      if (s === undefined || s.kind !== "head" || s.users !== 1 || s.data.dataref !== 1 || s.data.km !== null) return;
      const hp = virtToHeadPage(cpu.fragPages, s.data.head);
      const ref = pageRefCount(cpu.fragPages, hp);
      const fragRefs = s.data.frags.map((p) => pageRefCount(mem.pages, p));
      napiSkbFreeStolenHead(cpu, s.h);
      assert.equal(pageRefCount(cpu.fragPages, hp), ref, "stolen head: head page untouched");
      assert.deepEqual(
        s.data.frags.map((p) => pageRefCount(mem.pages, p)),
        fragRefs,
        "stolen head: frag pages untouched",
      );
      m.live.delete(s.h);
      m.put(s.h);
      m.ev.stolen++;
      // The skb that stole the head owns the data now; it frees it later.
      for (const p of s.data.frags) pageFragFree(mem.pages, p);
      pageFragFree(cpu.fragPages, s.data.head);
      m.releaseData(s.data);
      return;
    }
    case "txAction": {
      const n = netTxAction(cpu);
      assert.equal(n, m.queue.length, "netTxAction count");
      txModel(m);
      return;
    }
    case "irqs": {
      cpu.irqsDisabled = op.on;
      m.irqs = op.on;
      return;
    }
    case "toggle": {
      m.enabled = !m.enabled;
      napiCacheSetEnabled(m.enabled);
      return;
    }
    case "getBulk": {
      const out = new Uint32Array(op.n);
      const r = napiSkbCacheGetBulk(cpu, out, 0, op.n);
      const st = m.st;
      const fresh = (from: number, k: number, what: string) => {
        for (let j = from; j < from + k; j++) {
          adoptFresh(w, out[j] as number, what);
          m.held++;
        }
      };
      let total: number;
      if (!m.enabled) {
        const k = m.bulkRes(op.n);
        st.slabCalls++;
        st.bulkDirect += k;
        st.bulkGets += k;
        fresh(0, k, "getBulk (cache off)");
        total = k;
      } else {
        let count = m.cache.length;
        let direct = 0;
        if (count < op.n) {
          const want = Math.min(m.size - count, m.bulk);
          const got = want > 0 ? m.bulkRes(want) : 0;
          if (want > 0) {
            st.slabCalls++;
            st.refills++;
            st.refillObjs += got;
          }
          for (let j = 0; j < got; j++) {
            const h = cpu.skbCache[count + j] as number;
            adoptFresh(w, h, "getBulk refill");
            m.cache.push(h);
          }
          count += got;
          if (count < op.n) {
            direct = m.bulkRes(op.n - count);
            st.slabCalls++;
            st.bulkDirect += direct;
            if (direct > 0) m.ev.bulkDirect++;
            fresh(count, direct, "getBulk direct");
          }
        }
        const mm = Math.min(count, op.n);
        const taken = m.cache.splice(count - mm, mm);
        assert.deepEqual(Array.from(out.subarray(0, mm)), taken, "getBulk: cached shells, ascending index order");
        m.held += mm;
        st.bulkGets += mm + direct;
        total = mm + direct;
      }
      assert.equal(r, total, "napiSkbCacheGetBulk return");
      for (let j = 0; j < r; j++) {
        const s = out[j] as number;
        for (let b = 0; b < SKB_TAIL; b += 4) assert.equal(cpu.u32[(s + b) >>> 2], 0, `getBulk shell ${j} not zeroed at +${b}`);
      }
      // Build some of them (build_skb_around), give the rest back to the slab in one bulk.
      let built = 0;
      for (; built < Math.min(op.build, r); built++) {
        const data = pageFragAlloc(cpu.napiFrag, FRAG_SZ);
        if (data === 0) break;
        const h = out[built] as number;
        assert.equal(buildSkbAround(cpu, h, data, FRAG_SZ), h);
        m.held--;
        m.live.set(h, newSkb(h, "head", null, { dataref: 1, frags: [], km: null, head: data }, FRAG_SZ - SHINFO_SIZE, 0));
      }
      kmemCacheFreeBulk(mem.headCache, r - built, out, built);
      m.held -= r - built;
      assert.equal(m.held, 0);
      return;
    }
    case "slabBulk": {
      const buf = new Uint32Array(op.n);
      const k = kmemCacheAllocBulk(mem.headCache, op.n, buf, 0);
      assert.equal(k, m.bulkRes(op.n), "kmemCacheAllocBulk result");
      for (let j = 0; j < k; j++) adoptFresh(w, buf[j] as number, "kmemCacheAllocBulk");
      if (op.reverse) buf.subarray(0, k).reverse();
      kmemCacheFreeBulk(mem.headCache, k, buf, 0);
      return;
    }
  }
}

function consumeModel(m: Model, s: MSkb, budget: number): void {
  if (s.users > 1) {
    s.users--;
    return;
  }
  m.live.delete(s.h);
  if (budget === 0) {
    if (m.irqs) m.queue.push(s);
    else m.kfreeNow(s);
    return;
  }
  if (s.kind !== "head") m.kfreeNow(s);
  else m.napiFree(s);
}

function txModel(m: Model): void {
  const q = m.queue;
  m.queue = [];
  // The completion queue is pushed at its head: the last queued is freed first.
  for (let j = q.length - 1; j >= 0; j--) {
    const s = q[j] as MSkb;
    if (s.kind !== "head") m.kfreeNow(s);
    else m.napiFree(s);
  }
  m.st.txCompleted += q.length;
  m.ev.txFreed += q.length;
}

function checkInvariants(w: World, where: string): void {
  const { cpu, mem, m } = w;
  // The stack, exactly.
  assert.deepEqual(Array.from(cpu.skbCache.subarray(0, cpu.skbCount)), m.cache, `${where}: cache contents`);
  // No handle both live and cached; no duplicate in the stack.
  assert.equal(new Set(m.cache).size, m.cache.length, `${where}: duplicate in cache`);
  for (const h of m.cache) assert.ok(!m.live.has(h), `${where}: 0x${h.toString(16)} is live and cached`);
  // Slab accounting.
  assert.equal(kmemCacheInfo(mem.headCache).activeObjs, m.headShellsOut(), `${where}: head slab active = live heads + queued heads + cached`);
  assert.equal(kmemCacheInfo(mem.fcloneCache).activeObjs, m.pairs.size, `${where}: fclone pairs`);
  for (const c of [...mem.kmalloc.caches, mem.smallHeadCache]) {
    assert.equal(kmemCacheInfo(c).activeObjs, m.kmUse.get(c.name), `${where}: ${c.name} in use`);
  }
  // Pages used as frags.
  assert.equal(kmemCacheInfo(mem.pages.cache).activeObjs, m.pages.size, `${where}: frag pages allocated`);
  for (const [p, r] of m.pages) assert.equal(pageRefCount(mem.pages, p), r, `${where}: refcount of page 0x${p.toString(16)}`);
  // Every live skb.
  for (const s of m.live.values()) {
    const h = s.h;
    const tag = `${where}: skb 0x${h.toString(16)}`;
    assert.equal(skbUsers(cpu, h), s.users, `${tag} users`);
    assert.equal(skbDataref(cpu, h) & 0xffff, s.data.dataref, `${tag} dataref`);
    assert.equal(skbFlag(cpu, h, SKBF_CLONED), s.cloned, `${tag} cloned`);
    const fc0 = s.kind === "head" ? SKB_FCLONE_UNAVAILABLE : s.kind === "orig" ? SKB_FCLONE_ORIG : SKB_FCLONE_CLONE;
    assert.equal(skbFclone(cpu, h), fc0, `${tag} fclone`);
    assert.equal(skbHeadroom(cpu, h), s.headroom, `${tag} headroom`);
    assert.equal(skbHeadlen(cpu, h), s.headlen, `${tag} headlen`);
    assert.equal(skbLen(cpu, h), s.headlen + s.dataLen, `${tag} len`);
    assert.equal(skbDataLen(cpu, h), s.dataLen, `${tag} data_len`);
    assert.equal((cpu.u32[(h + SKB_END) >>> 2] as number) - (cpu.u32[(h + SKB_TAIL) >>> 2] as number), s.tailroom, `${tag} end - tail`);
    assert.equal(skbHeadPtr(cpu, h), s.data.head, `${tag} head`);
    if (s.data.km === null) {
      const pg = virtToHeadPage(cpu.fragPages, s.data.head);
      assert.ok(pageRefCount(cpu.fragPages, pg) >= 1, `${tag}: head page refcount`);
    }
    for (const p of s.data.frags) assert.ok(pageRefCount(mem.pages, p) >= 1, `${tag}: frag page refcount`);
    if (w.debug && s.kind === "head") assert.equal(kmemCacheObjState(mem.headCache, h), OBJ_ALLOCATED, `${tag} slab state`);
  }
  if (w.debug) for (const h of m.cache) assert.equal(kmemCacheObjState(mem.headCache, h), OBJ_CACHED, `${where}: cached 0x${h.toString(16)} slab state`);
  // Counters.
  const real = napiCacheStats(cpu);
  assert.deepEqual(
    {
      gets: real.gets,
      hits: real.hits,
      refills: real.refills,
      refillObjs: real.refillObjs,
      getFail: real.getFail,
      puts: real.puts,
      flushes: real.flushes,
      flushedObjs: real.flushedObjs,
      slabCalls: real.slabCalls,
      bulkGets: real.bulkGets,
      bulkDirect: real.bulkDirect,
      txCompleted: real.txCompleted,
    },
    m.st,
    `${where}: counters`,
  );
  assert.equal(cpu.skbCount <= m.size - 1, true, `${where}: the stack is never left full`);
}

/** Free everything, drain, and require every slab (and page allocator) to be empty. */
function teardown(w: World): void {
  const { cpu, mem, m } = w;
  for (const s of [...m.live.values()]) for (let u = 0; u < s.users; u++) kfreeSkb(cpu, s.h);
  netTxAction(cpu);
  napiSkbCacheDrain(cpu);
  assert.equal(cpu.skbCount, 0);
  pageFragCacheDrain(cpu.napiFrag);
  pageFragCacheDrain(cpu.netdevFrag);
  for (const info of mmSlabInfo(mem.mm)) assert.equal(info.activeObjs, 0, `after teardown: ${info.name} still has ${info.activeObjs} objects`);
}

type Coverage = Model["ev"] & { flushes: number; refills: number; getFail: number };

function runOps(setup: Setup, ops: Op[], cov?: Coverage): void {
  const w = makeWorld(setup);
  try {
    checkInvariants(w, "start");
    ops.forEach((op, n) => {
      step(w, op);
      checkInvariants(w, `op #${n} ${JSON.stringify(op)}`);
    });
    if (cov !== undefined) {
      for (const k of Object.keys(w.m.ev) as (keyof Model["ev"])[]) cov[k] += w.m.ev[k];
      cov.flushes += w.m.st.flushes;
      cov.refills += w.m.st.refills;
      cov.getFail += w.m.st.getFail;
    }
    teardown(w);
  } finally {
    napiCacheSetEnabled(true);
    w.cpu.irqsDisabled = false;
  }
}

// ---- the properties -----------------------------------------------------------------------

const SMALL = { cacheSize: 8, bulk: 3, flush: 5 };

/**
 * Each setup names the branches its runs must reach in total (coverage > 0),
 * so a generator change cannot quietly make the property vacuous.
 */
const SETUPS: { name: string; setup: Omit<Setup, "profile">; runs: number; maxOps: number; reach: (keyof Coverage)[] }[] = [
  {
    name: "roomy slab, cache on",
    setup: { mem: "roomy", bulkMode: "all-or-nothing", debug: false, enabled: true, toggle: false },
    runs: 40,
    maxOps: 150,
    reach: ["refills", "flushes", "stolen", "txFreed", "throws", "companion"],
  },
  {
    name: "tight partial slab, cache on",
    setup: { mem: "tight", bulkMode: "partial", debug: false, enabled: true, toggle: false },
    runs: 40,
    maxOps: 150,
    reach: ["refills", "shortRefill", "headFail", "getFail", "stolen", "txFreed"],
  },
  {
    name: "tight SLUB slab, debug, cache on",
    setup: { mem: "tight", bulkMode: "all-or-nothing", debug: true, enabled: true, toggle: false },
    runs: 25,
    maxOps: 120,
    reach: ["refills", "getFail", "stolen"],
  },
  {
    name: "small sizes 8/3/5, tight partial slab",
    setup: { sizes: SMALL, mem: "tight", bulkMode: "partial", debug: false, enabled: true, toggle: false },
    runs: 40,
    maxOps: 150,
    reach: ["flushes", "shortRefill", "headFail", "bulkDirect", "getFail"],
  },
  {
    name: "small sizes 8/3/5, debug, switch toggled",
    setup: { sizes: SMALL, mem: "tight", bulkMode: "all-or-nothing", debug: true, enabled: true, toggle: true },
    runs: 30,
    maxOps: 150,
    reach: ["flushes", "headFail", "getFail"],
  },
  {
    name: "switch OFF",
    setup: { mem: "roomy", bulkMode: "all-or-nothing", debug: false, enabled: false, toggle: false },
    runs: 25,
    maxOps: 120,
    reach: ["stolen", "txFreed", "companion"],
  },
  {
    name: "switch OFF, tight partial slab, toggled",
    setup: { mem: "tight", bulkMode: "partial", debug: false, enabled: false, toggle: true },
    runs: 25,
    maxOps: 150,
    reach: ["getFail", "stolen"],
  },
];

for (const profile of ["5.12", "6.19"] as const) {
  describe(`NAPI cache model, ${profile} profile`, () => {
    skbSetDeferFree(null);
    for (const c of SETUPS) {
      test(c.name, (t) => {
        const setup: Setup = { profile, ...c.setup };
        const cov: Coverage = { dataFail: 0, headFail: 0, shortRefill: 0, companion: 0, stolen: 0, txFreed: 0, throws: 0, bulkDirect: 0, flushes: 0, refills: 0, getFail: 0 };
        fc.assert(
          fc.property(fc.array(opArb(setup.toggle), { minLength: 10, maxLength: c.maxOps, size: "max" }), (ops) => {
            runOps(setup, ops, cov);
          }),
          { numRuns: c.runs },
        );
        t.diagnostic(`coverage ${JSON.stringify(cov)}`);
        for (const k of c.reach) assert.ok(cov[k] > 0, `generator never reached ${k}: ${JSON.stringify(cov)}`);
      });
    }

    test("a long fixed burst pattern reaches several flushes and refills", () => {
      const setup: Setup = { profile, mem: "roomy", bulkMode: "all-or-nothing", debug: true, enabled: true, toggle: false };
      const ops: Op[] = [];
      for (let r = 0; r < 6; r++) {
        ops.push({ k: "burst", n: 48 }, { k: "burst", n: 48 }, { k: "burst", n: 48 });
        ops.push({ k: "clone", i: r }, { k: "consume", i: 3, budget: 0 }, { k: "irqs", on: true }, { k: "consume", i: 5, budget: 0 });
        ops.push({ k: "irqs", on: false }, { k: "consumeAll" }, { k: "txAction" }, { k: "getBulk", n: 40, build: 7 });
      }
      const cov: Coverage = { dataFail: 0, headFail: 0, shortRefill: 0, companion: 0, stolen: 0, txFreed: 0, throws: 0, bulkDirect: 0, flushes: 0, refills: 0, getFail: 0 };
      runOps(setup, ops, cov);
      // 6 rounds of 144 builds then a full consume: at least one flush per round.
      assert.ok(cov.flushes >= 6, `flushes ${cov.flushes}`);
      assert.ok(cov.refills >= 6, `refills ${cov.refills}`);
      assert.equal(cov.txFreed, 6);
    });
  });
}
