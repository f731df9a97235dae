/**
 * Freeing skbs: reference drops, head-state and data release (dataref- and
 * page-refcount-correct), the shell free to the right slab, and the NAPI
 * paths that feed the head cache (spec §4).
 *
 * ```
 *  kfreeSkb / consumeSkb ── skbUnref ── __kfreeSkb ── skbReleaseAll ── kfreeSkbmem ── slab
 *  napiConsumeSkb(b>0) ──── skbUnref ── fclone? ──yes── __kfreeSkb
 *                                        └─no── skbReleaseAll ── napiSkbCachePut ── cache
 *  napiConsumeSkb(0) ── devConsumeSkbAny ── IRQs off? ─yes─ completion queue ─ netTxAction ─ cache
 *                                             └─no── consumeSkb ── slab
 *  napiSkbFreeStolenHead ── (dst/ext/ct) ── napiSkbCachePut       (data belongs to another skb)
 * ```
 *
 * @module
 */

import { kmemCacheFree, kmemCacheFreeBulk } from "../mm/slab.js";
import { virtToCache } from "../mm/mm.js";
import { freePageNow, pagePoolId, pageRefSubAndTest, virtToHeadPage } from "../mm/page-alloc.js";
import { pagePoolPutPage, pagePoolPutPageRemote } from "../mm/page-pool.js";
import { hex, SkbError, skbShinfo } from "./access.js";
import { NAPI_STAT_DEFERRED, NAPI_STAT_PUTS, NAPI_STAT_TX_COMPLETED, type SkbCpu } from "./cpu.js";
import { SKB_DROP_REASON } from "./drop-reason.js";
import {
  FCLONE_REF,
  FCLONE_SKB2,
  FRAG_DESC_SIZE,
  FRAG_PAGE,
  SHINFO_DATAREF,
  SHINFO_FRAG_LIST,
  SHINFO_FRAGS,
  SHINFO_NR_FRAGS,
  SKB_ALLOC_CPU,
  SKB_DATAREF_SHIFT,
  SKB_DESTRUCTOR,
  SKB_DST,
  SKB_EXTENSIONS,
  SKB_FCLONE_CLONE,
  SKB_FCLONE_ORIG,
  SKB_FCLONE_UNAVAILABLE,
  SKB_FLAGS,
  SKB_FLAGS2,
  SKB_HEAD,
  SKB_NEXT,
  SKB_NFCT,
  SKB_SK,
  SKB_USERS,
  SKBF_CLONED,
  SKBF_FCLONE_MASK,
  SKBF_FCLONE_SHIFT,
  SKBF_HEAD_FRAG,
  SKBF_NOHDR,
  SKBF_PP_RECYCLE,
  SKBF2_SLOW_GRO,
} from "./layout.js";
import { napiSkbCachePut } from "./napi-cache.js";

/** KFREE_SKB_BULK_SIZE (6.3+). */
export const KFREE_SKB_BULK_SIZE = 16;
/** Nesting levels of frag_list frees that still batch. */
export const LIST_FREE_MAX_DEPTH = 4;

/** A destructor: called once when the skb's head state is released. */
export type SkbDestructor = (cpu: SkbCpu, skb: number) => void;

const destructors: SkbDestructor[] = [() => {}];
let nfctPut: ((cpu: SkbCpu, nfct: number) => void) | null = null;
let nfctGet: ((cpu: SkbCpu, nfct: number) => void) | null = null;
let deferFree: ((cpu: SkbCpu, skb: number) => void) | null = null;

/**
 * Register a destructor; the returned id goes in `skb->destructor`. Ids are
 * per thread: register in the same order on every worker.
 */
export function skbRegisterDestructor(fn: SkbDestructor): number {
  destructors.push(fn);
  return destructors.length - 1;
}

/** Install the conntrack reference drop (`nf_conntrack_put`), used by the netfilter layer. */
export function skbSetNfctPut(fn: ((cpu: SkbCpu, nfct: number) => void) | null): void {
  nfctPut = fn;
}

/** Install the conntrack reference take (`nf_conntrack_get`), used when clones and copies share `_nfct`. */
export function skbSetNfctGet(fn: ((cpu: SkbCpu, nfct: number) => void) | null): void {
  nfctGet = fn;
}

/** Take a conntrack reference for a new holder of `nfct` (no-op without a netfilter layer). */
export function skbNfctGet(cpu: SkbCpu, nfct: number): void {
  if (nfctGet !== null) nfctGet(cpu, nfct);
}

/**
 * Install the remote-CPU deferral (`skb_attempt_defer_free`) used by the 6.19
 * profile for skbs allocated on another CPU. Without one, such skbs are
 * cached locally (the 5.12 behaviour).
 */
export function skbSetDeferFree(fn: ((cpu: SkbCpu, skb: number) => void) | null): void {
  deferFree = fn;
}

/**
 * `skb_unref`: true when the caller dropped the last reference. The common
 * `users == 1` case writes nothing (no atomic RMW), as in the kernel.
 */
export function skbUnref(cpu: SkbCpu, skb: number): boolean {
  const i = (skb + SKB_USERS) >>> 2;
  const users = Atomics.load(cpu.i32, i);
  if (users === 1) return true;
  if (users <= 0) throw new SkbError("skbUnref", skb, `reference count is ${users} (use after free?)`);
  return Atomics.sub(cpu.i32, i, 1) === 1;
}

/**
 * `skb_release_head_state`: drop dst, run the destructor, drop conntrack and
 * extensions. 6.19 profile: clears destructor and sk so it may run twice.
 */
export function skbReleaseHeadState(cpu: SkbCpu, skb: number): void {
  const u32 = cpu.u32;
  u32[(skb + SKB_DST) >>> 2] = 0;
  const d = u32[(skb + SKB_DESTRUCTOR) >>> 2] as number;
  if (d !== 0) {
    const fn = destructors[d];
    if (fn === undefined) throw new SkbError("skbReleaseHeadState", skb, `unknown destructor id ${d}`);
    fn(cpu, skb);
    if (cpu.profile.idempotentHeadState) {
      u32[(skb + SKB_DESTRUCTOR) >>> 2] = 0;
      u32[(skb + SKB_SK) >>> 2] = 0;
    }
  }
  const ct = u32[(skb + SKB_NFCT) >>> 2] as number;
  if (ct !== 0) {
    if (nfctPut !== null) nfctPut(cpu, ct);
    u32[(skb + SKB_NFCT) >>> 2] = 0;
  }
  u32[(skb + SKB_EXTENSIONS) >>> 2] = 0;
}

/** Drop one page reference of a frag or head page (`skb_frag_unref` / `skb_page_unref`), page-pool aware. */
export function skbPagePut(cpu: SkbCpu, addr: number, ppRecycle: boolean): void {
  const pa = cpu.mm.pageAllocsById[cpu.mm.pageOwner[addr >>> 12] as number];
  if (pa === undefined) throw new Error(`skbReleaseData: ${hex(addr)} is not inside a page`);
  const page = virtToHeadPage(pa, addr);
  if (ppRecycle) {
    const id = pagePoolId(pa, page);
    if (id !== 0) {
      const pool = cpu.pagePools[id];
      if (pool !== undefined) pagePoolPutPage(pool, page, true);
      else pagePoolPutPageRemote(pa, cpu.mm.ppRings, page);
      return;
    }
  }
  if (pageRefSubAndTest(pa, page, 1)) freePageNow(pa, page);
}

/** `skb_free_head`: free the data buffer (page fragment, pool page or kmalloc object). */
export function skbFreeHead(cpu: SkbCpu, skb: number): void {
  const head = cpu.u32[(skb + SKB_HEAD) >>> 2] as number;
  const f = cpu.u8[skb + SKB_FLAGS] as number;
  if ((f & SKBF_HEAD_FRAG) !== 0) {
    skbPagePut(cpu, head, (f & SKBF_PP_RECYCLE) !== 0);
    return;
  }
  const s = virtToCache(cpu.mm, head);
  if (s === undefined) throw new SkbError("skbFreeHead", skb, `head ${hex(head)} was not allocated from a slab`);
  kmemCacheFree(s, head);
}

/**
 * `skb_release_data`: drop this skb's reference to its data buffer; the last
 * reference unrefs every frag page, frees the frag_list and the head.
 */
export function skbReleaseData(cpu: SkbCpu, skb: number, reason: number = SKB_DROP_REASON.CONSUMED): void {
  const f = cpu.u8[skb + SKB_FLAGS] as number;
  const sh = skbShinfo(cpu, skb);
  if ((f & SKBF_CLONED) !== 0) {
    const dec = (f & SKBF_NOHDR) !== 0 ? (1 << SKB_DATAREF_SHIFT) + 1 : 1;
    if (Atomics.sub(cpu.i32, (sh + SHINFO_DATAREF) >>> 2, dec) !== dec) {
      cpu.u8[skb + SKB_FLAGS] = (cpu.u8[skb + SKB_FLAGS] as number) & ~SKBF_PP_RECYCLE;
      return;
    }
  }
  const pp = (f & SKBF_PP_RECYCLE) !== 0;
  const nr = cpu.u8[sh + SHINFO_NR_FRAGS] as number;
  for (let i = 0; i < nr; i++) skbPagePut(cpu, cpu.u32[(sh + SHINFO_FRAGS + i * FRAG_DESC_SIZE + FRAG_PAGE) >>> 2] as number, pp);
  const fl = cpu.u32[(sh + SHINFO_FRAG_LIST) >>> 2] as number;
  // The frag_list members share the parent's fate (skb_drop_fraglist passes the reason on).
  if (fl !== 0) kfreeSkbListReason(cpu, fl, reason);
  skbFreeHead(cpu, skb);
  cpu.u8[skb + SKB_FLAGS] = (cpu.u8[skb + SKB_FLAGS] as number) & ~SKBF_PP_RECYCLE;
}

/** `skb_release_all`: head state, then data if there is a head (frag_list members freed with `reason`). */
export function skbReleaseAll(cpu: SkbCpu, skb: number, reason: number = SKB_DROP_REASON.CONSUMED): void {
  skbReleaseHeadState(cpu, skb);
  if ((cpu.u32[(skb + SKB_HEAD) >>> 2] as number) !== 0) skbReleaseData(cpu, skb, reason);
}

/** `kfree_skbmem`: free the shell to the slab it came from (fclone-pair aware). */
export function kfreeSkbmem(cpu: SkbCpu, skb: number): void {
  const fc = ((cpu.u8[skb + SKB_FLAGS] as number) & SKBF_FCLONE_MASK) >>> SKBF_FCLONE_SHIFT;
  if (fc === SKB_FCLONE_UNAVAILABLE) {
    kmemCacheFree(cpu.headCache, skb);
    return;
  }
  let pair: number;
  if (fc === SKB_FCLONE_ORIG) {
    pair = skb;
    if (Atomics.load(cpu.i32, (pair + FCLONE_REF) >>> 2) === 1) {
      kmemCacheFree(cpu.fcloneCache, pair);
      return;
    }
  } else if (fc === SKB_FCLONE_CLONE) {
    pair = skb - FCLONE_SKB2;
  } else {
    throw new SkbError("kfreeSkbmem", skb, `corrupt fclone state ${fc}`);
  }
  if (Atomics.sub(cpu.i32, (pair + FCLONE_REF) >>> 2, 1) === 1) kmemCacheFree(cpu.fcloneCache, pair);
}

/** `__kfree_skb`: release everything and free the shell; no refcount check. */
export function __kfreeSkb(cpu: SkbCpu, skb: number, reason: number = SKB_DROP_REASON.CONSUMED): void {
  skbReleaseAll(cpu, skb, reason);
  kfreeSkbmem(cpu, skb);
}

/**
 * `kfree_skb_reason`: drop a reference; on the last one free the skb and
 * count it under `reason` (a SKB_DROP_REASON code). kfreeSkb(0) is a no-op.
 */
export function kfreeSkbReason(cpu: SkbCpu, skb: number, reason: number): void {
  if (skb === 0 || !skbUnref(cpu, skb)) return;
  cpu.drops[reason]++;
  __kfreeSkb(cpu, skb, reason);
}

/** `kfree_skb`: drop (reason NOT_SPECIFIED). */
export function kfreeSkb(cpu: SkbCpu, skb: number): void {
  kfreeSkbReason(cpu, skb, SKB_DROP_REASON.NOT_SPECIFIED);
}

/** `consume_skb`: free a packet that was delivered, not dropped. */
export function consumeSkb(cpu: SkbCpu, skb: number): void {
  if (skb === 0 || !skbUnref(cpu, skb)) return;
  cpu.drops[SKB_DROP_REASON.CONSUMED]++;
  __kfreeSkb(cpu, skb);
}

/** `__napi_kfree_skb` (`__kfree_skb_defer` in 5.12): release and cache the shell. Caller guarantees last ref, no fclone. */
export function __napiKfreeSkb(cpu: SkbCpu, skb: number): void {
  skbReleaseAll(cpu, skb);
  napiSkbCachePut(cpu, skb);
}

/**
 * `kfree_skb_list_reason`: drop a `next`-linked chain. The 6.19 profile
 * batches non-fclone shells 16 at a time into one bulk slab free (6.3+);
 * the 5.12 profile frees one by one.
 */
export function kfreeSkbListReason(cpu: SkbCpu, segs: number, reason: number): void {
  // Each nesting level (a frag_list member's own frag_list) gets its own
  // 16-slot window of the per-CPU scratch; past the last window, free singly.
  const depth = cpu.listFreeDepth;
  const bulk = cpu.profile.bulkListFree && depth < LIST_FREE_MAX_DEPTH;
  const arr = cpu.listScratch;
  const base = depth * KFREE_SKB_BULK_SIZE;
  cpu.listFreeDepth = depth + 1;
  let n = 0;
  try {
    while (segs !== 0) {
      const next = cpu.u32[(segs + SKB_NEXT) >>> 2] as number;
      if (skbUnref(cpu, segs)) {
        cpu.drops[reason]++;
        if (!bulk || ((cpu.u8[segs + SKB_FLAGS] as number) & SKBF_FCLONE_MASK) !== 0) {
          __kfreeSkb(cpu, segs, reason);
        } else {
          skbReleaseAll(cpu, segs, reason);
          arr[base + n++] = segs;
          if (n === KFREE_SKB_BULK_SIZE) {
            kmemCacheFreeBulk(cpu.headCache, n, arr, base);
            n = 0;
          }
        }
      }
      segs = next;
    }
    if (n > 0) kmemCacheFreeBulk(cpu.headCache, n, arr, base);
  } finally {
    cpu.listFreeDepth = depth;
  }
}

/** `kfree_skb_list`. */
export function kfreeSkbList(cpu: SkbCpu, segs: number): void {
  kfreeSkbListReason(cpu, segs, SKB_DROP_REASON.NOT_SPECIFIED);
}

/**
 * `dev_consume_skb_irq` / `dev_kfree_skb_irq`: drop a reference; on the last
 * one queue the skb on this CPU's completion queue for netTxAction.
 */
export function devConsumeSkbIrq(cpu: SkbCpu, skb: number): void {
  if (skb === 0 || !skbUnref(cpu, skb)) return;
  cpu.u32[(skb + SKB_NEXT) >>> 2] = cpu.completionQueue;
  cpu.completionQueue = skb;
}

/** `dev_consume_skb_any`: the IRQ path when IRQs are off, else consumeSkb (slab). */
export function devConsumeSkbAny(cpu: SkbCpu, skb: number): void {
  if (cpu.irqsDisabled === true) devConsumeSkbIrq(cpu, skb);
  else consumeSkb(cpu, skb);
}

/**
 * The completion-queue half of `net_tx_action`: free every queued skb;
 * fclones to their slab, every other shell into this CPU's NAPI cache.
 * Returns how many were freed.
 */
export function netTxAction(cpu: SkbCpu): number {
  let clist = cpu.completionQueue;
  cpu.completionQueue = 0;
  let n = 0;
  while (clist !== 0) {
    const skb = clist;
    clist = cpu.u32[(skb + SKB_NEXT) >>> 2] as number;
    cpu.drops[SKB_DROP_REASON.CONSUMED]++;
    if (((cpu.u8[skb + SKB_FLAGS] as number) & SKBF_FCLONE_MASK) !== 0) __kfreeSkb(cpu, skb);
    else __napiKfreeSkb(cpu, skb);
    n++;
  }
  cpu.stats[NAPI_STAT_TX_COMPLETED] += n;
  return n;
}

/**
 * `napi_consume_skb(skb, budget)`: the main feeder of the head cache.
 * Budget 0 means "not in NAPI context" (netpoll) and takes
 * devConsumeSkbAny. Otherwise: drop a reference; on the last one fclones go
 * to their slab and every other shell is released and cached. 6.19 profile:
 * an unshared skb allocated on another CPU is deferred to that CPU when a
 * deferral is installed.
 */
export function napiConsumeSkb(cpu: SkbCpu, skb: number, budget: number): void {
  if (budget === 0 || skb === 0) {
    devConsumeSkbAny(cpu, skb);
    return;
  }
  if (
    cpu.profile.alienDefer &&
    deferFree !== null &&
    (cpu.u16[(skb + SKB_ALLOC_CPU) >>> 1] as number) !== cpu.id &&
    Atomics.load(cpu.i32, (skb + SKB_USERS) >>> 2) === 1
  ) {
    skbReleaseHeadState(cpu, skb);
    cpu.stats[NAPI_STAT_DEFERRED]++;
    deferFree(cpu, skb);
    return;
  }
  if (!skbUnref(cpu, skb)) return;
  cpu.drops[SKB_DROP_REASON.CONSUMED]++;
  if (((cpu.u8[skb + SKB_FLAGS] as number) & SKBF_FCLONE_MASK) !== 0) {
    __kfreeSkb(cpu, skb);
    return;
  }
  skbReleaseAll(cpu, skb);
  napiSkbCachePut(cpu, skb);
}

function stolenHeadFcloneError(skb: number): never {
  throw new SkbError("napiSkbFreeStolenHead", skb, "fast-clone skbs never own a stealable head");
}

/**
 * `napi_skb_free_stolen_head`: GRO merged this skb's head into another skb,
 * so only the shell is left: drop dst / extensions (5.12; 6.19 only when
 * slow_gro is set, then also conntrack and the destructor) and cache it. The
 * data is not touched. An fclone here is misuse and throws.
 */
export function napiSkbFreeStolenHead(cpu: SkbCpu, skb: number): void {
  // The rare cases (an fclone, slow_gro set) share one out-of-line call, so
  // this stays small enough to be inlined into GRO and driver loops.
  const u8 = cpu.u8;
  if ((((u8[skb + SKB_FLAGS] as number) & SKBF_FCLONE_MASK) | ((u8[skb + SKB_FLAGS2] as number) & SKBF2_SLOW_GRO)) !== 0) {
    stolenHeadSlow(cpu, skb);
    return;
  }
  if (cpu.slowGro === false) {
    // 5.12: drop dst and extensions; 5.15+ does that only with slow_gro.
    const w = skb >>> 2;
    const u32 = cpu.u32;
    u32[w + W_DST] = 0;
    u32[w + W_EXTENSIONS] = 0;
  }
  // napiSkbCachePut's fast path written out (the push), as napiBuildSkb
  // writes out the pop: see there.
  const n = cpu.skbCount + 1;
  if (n < cpu.cacheSize && cpu.cacheFast === true) {
    cpu.skbCache[n - 1] = skb;
    cpu.skbCount = n;
    cpu.stats[NAPI_STAT_PUTS]++;
    return;
  }
  napiSkbCachePut(cpu, skb);
}

/** napiSkbFreeStolenHead for an fclone (misuse: throws) or an skb with slow_gro set. */
function stolenHeadSlow(cpu: SkbCpu, skb: number): void {
  if (((cpu.u8[skb + SKB_FLAGS] as number) & SKBF_FCLONE_MASK) !== 0) stolenHeadFcloneError(skb);
  cpu.u32[(skb + SKB_DST) >>> 2] = 0;
  // 5.12 drops extensions; 6.19 (slow_gro set) also conntrack and the destructor.
  if (cpu.slowGro === false) cpu.u32[(skb + SKB_EXTENSIONS) >>> 2] = 0;
  else skbSlowGroRelease(cpu, skb);
  napiSkbCachePut(cpu, skb);
}

/** Word indices napiSkbFreeStolenHead uses (numeric literals, inlined by the build; checked at load). */
const W_DST = 18;
const W_EXTENSIONS = 42;
if (W_DST !== SKB_DST >>> 2 || W_EXTENSIONS !== SKB_EXTENSIONS >>> 2) {
  throw new Error("skb layout: napiSkbFreeStolenHead's word indices are out of step with layout.ts");
}

/**
 * The slow_gro part of the 5.15+ stolen-head and reuse paths: drop
 * conntrack (`nf_reset_ct`) and extensions (`skb_ext_reset`), orphan the
 * skb (run its destructor, clear destructor and sk), clear slow_gro.
 */
export function skbSlowGroRelease(cpu: SkbCpu, skb: number): void {
  const u32 = cpu.u32;
  const ct = u32[(skb + SKB_NFCT) >>> 2] as number;
  if (ct !== 0 && nfctPut !== null) nfctPut(cpu, ct);
  u32[(skb + SKB_NFCT) >>> 2] = 0;
  u32[(skb + SKB_EXTENSIONS) >>> 2] = 0;
  const d = u32[(skb + SKB_DESTRUCTOR) >>> 2] as number;
  if (d !== 0) {
    (destructors[d] as SkbDestructor)(cpu, skb);
    u32[(skb + SKB_DESTRUCTOR) >>> 2] = 0;
    u32[(skb + SKB_SK) >>> 2] = 0;
  }
  cpu.u8[skb + SKB_FLAGS2] = (cpu.u8[skb + SKB_FLAGS2] as number) & ~SKBF2_SLOW_GRO;
}

