/**
 * Remote-CPU deferral of skb frees: `skb_attempt_defer_free` and
 * `skb_defer_free_flush` (spec §4.6, 6.18+ semantics: lock-free per-target
 * lists). An skb freed on a CPU other than the one that allocated it is
 * pushed onto the allocating CPU's list; that CPU drains the list at the top
 * of every `net_rx_action` iteration with `napi_consume_skb(skb, 1)`, so the
 * shell lands in the ALLOCATING CPU's NAPI head cache and its data is freed
 * where it was allocated.
 *
 * One 64-byte slot (one cache line) per CPU in the arena's `defer` region,
 * slot `i` at `mem.deferBase + i * DEFER_SLOT_SIZE`:
 *
 * ```
 *  +0  head    i32  newest deferred skb (arena offset), 0 = empty
 *                   pushers: Atomics.compareExchange   owner: Atomics.exchange(0)
 *  +4  count   i32  defer_count: pushes since the owner's last drain
 *                   pushers: Atomics.add(1)            owner: Atomics.store(0)
 *  +8  kick    i32  kick generation; +1 and Atomics.notify by the pusher whose
 *                   push found count == skb_defer_max / 2 (wait on it to sleep)
 *  +12 online  i32  1 between skbDeferInstall and skbDeferUninstall
 *  +16 f64 × 6      counters of THIS slot's CPU, single writer, plain stores
 *                   (racy snapshot from other threads, exact once it stops):
 *                   +16 kicks      kicks this CPU sent
 *                   +24 freedFull  skbs this CPU freed itself: target list full
 *                   +32 freedLocal skbs this CPU freed itself: own skb, target
 *                                  offline or alloc_cpu out of range
 *                   +40 drained    skbs this CPU took off its own list
 *                   +48 flushes    drains that found a non-empty list
 *                   +56 casRetries pushes whose first CAS lost a race
 * ```
 *
 * The list is a Treiber stack linked through `skb->next` (the kernel's
 * llist). Publish order, pusher P and owner O:
 *
 * ```
 *  P: c = Atomics.add(count, 1)            c + 1 >= max -> free here, stop
 *  P: skb.users = 0                        (parked: a second free throws)
 *  P: old = Atomics.load(head)
 *  P: skb.next = old                       plain store, before the publish
 *  P: Atomics.compareExchange(head, old, skb) != old -> old = seen, retry
 *  P: c == max / 2 -> Atomics.add(kick, 1); Atomics.notify(kick)
 *
 *  O: Atomics.load(head) == 0 -> return    (the whole cost when empty)
 *  O: Atomics.store(count, 0)              (kernel order: reset, then take)
 *  O: list = Atomics.exchange(head, 0)     takes EVERY node at once
 *  O: for each: next = skb.next; skb.users = 1; napiConsumeSkb(skb, 1)
 * ```
 *
 * The CAS publishes `next` (sequentially consistent Atomics order every
 * plain write before them); the owner's exchange reads the last CAS of the
 * chain, so it sees every pusher's `next`. Nodes are never popped one by
 * one, so there is no ABA: a CAS that succeeds after the list was drained
 * and refilled links the new node to exactly the value `head` holds. The
 * count may run ahead of the list (a push racing the reset), which only
 * makes the list look fuller until the next drain, as in the kernel.
 *
 * Deviations, deliberate: the 6.19.9 zero-copy check (step 1 of §4.6) is
 * absent because the model has no zero-copy skbs; "offline" is a CPU that
 * never called {@link skbDeferInstall} or has uninstalled; a parked skb has
 * `users == 0` (the kernel leaves 1), so a double free of a deferred skb is
 * a thrown "reference count is 0" instead of list corruption; skbs freed at
 * once count as CONSUMED in `cpu.drops` (the kernel emits no tracepoint
 * there) so every packet is still accounted for.
 *
 * @module
 */

import { SkbError } from "./access.js";
import { NAPI_STAT_DEFERRED, type SkbCpu } from "./cpu.js";
import { SKB_DROP_REASON } from "./drop-reason.js";
import { __kfreeSkb, __napiKfreeSkb, napiConsumeSkb, skbSetDeferFree } from "./free.js";
import {
  SKB_ALLOC_CPU,
  SKB_DESTRUCTOR,
  SKB_DST,
  SKB_FLAGS,
  SKB_NEXT,
  SKB_NFCT,
  SKB_USERS,
  SKBF_FCLONE_MASK,
} from "./layout.js";
import { DEFER_SLOT_SIZE, type SkbMemory } from "./memory.js";

// i32 word offsets inside a slot.
const W_HEAD = 0;
const W_COUNT = 1;
const W_KICK = 2;
const W_ONLINE = 3;
// f64 offsets inside a slot (slot base >>> 3).
const F_KICKS = 2;
const F_FREED_FULL = 3;
const F_FREED_LOCAL = 4;
const F_DRAINED = 5;
const F_FLUSHES = 6;
const F_CAS_RETRIES = 7;

if (DEFER_SLOT_SIZE < 64) throw new Error(`defer: slots of ${DEFER_SLOT_SIZE} bytes cannot hold the 64-byte layout`);

/** i32 index of CPU `id`'s slot (its `head` word). */
function slotIdx(mem: SkbMemory, id: number): number {
  return (mem.deferBase + id * DEFER_SLOT_SIZE) >>> 2;
}

/** CPUs installed on this thread (the hook in free.ts is per thread, like this set). */
const installed = new Set<SkbCpu>();

/**
 * Bring `cpu` online for deferral (cold): other CPUs may
 * now push its skbs onto its list, and this thread's napiConsumeSkb defers
 * alien skbs (6.19 profile) through {@link skbAttemptDeferFree}. The CPU
 * must drain with {@link skbDeferFreeFlush} (netRxAction does, at the top of
 * every iteration). Throws when the id is already online (two contexts with
 * one id).
 */
export function skbDeferInstall(cpu: SkbCpu): void {
  const s = slotIdx(cpu.mem, cpu.id);
  if (Atomics.compareExchange(cpu.i32, s + W_ONLINE, 0, 1) !== 0) {
    throw new Error(`skbDeferInstall: cpu ${cpu.id} is already online (another SkbCpu with this id drains its defer list)`);
  }
  installed.add(cpu);
  skbSetDeferFree(deferFreeHook);
}

/**
 * Take `cpu` offline and drain its list; returns how many skbs were drained.
 * Pushers that read "online" just before may still push afterwards: call it
 * once no other CPU can free this CPU's skbs, or flush again after they stop.
 * The hook is removed when the thread's last CPU goes offline. A CPU this
 * thread did not install is only drained. Cold.
 */
export function skbDeferUninstall(cpu: SkbCpu): number {
  if (installed.delete(cpu)) {
    Atomics.store(cpu.i32, slotIdx(cpu.mem, cpu.id) + W_ONLINE, 0);
    if (installed.size === 0) skbSetDeferFree(null);
  }
  return skbDeferFreeFlush(cpu);
}

/** Whether CPU `id` of `mem` accepts deferred skbs (racy snapshot). */
export function skbDeferOnline(mem: SkbMemory, id: number): boolean {
  return Atomics.load(mem.arena.i32, slotIdx(mem, id) + W_ONLINE) === 1;
}

/**
 * `kfree_skb_napi_cache`: free an skb we own right here: fclones to their
 * slab, every other shell into THIS CPU's NAPI cache.
 */
function kfreeSkbNapiCache(cpu: SkbCpu, skb: number): void {
  cpu.drops[SKB_DROP_REASON.CONSUMED]++;
  if (((cpu.u8[skb + SKB_FLAGS] as number) & SKBF_FCLONE_MASK) !== 0) __kfreeSkb(cpu, skb);
  else __napiKfreeSkb(cpu, skb);
}

function deferCheck(cpu: SkbCpu, skb: number): void {
  const u32 = cpu.u32;
  const dst = u32[(skb + SKB_DST) >>> 2] as number;
  const d = u32[(skb + SKB_DESTRUCTOR) >>> 2] as number;
  const ct = u32[(skb + SKB_NFCT) >>> 2] as number;
  if (dst !== 0 || d !== 0 || ct !== 0) {
    throw new SkbError("skbAttemptDeferFree", skb, `head state not released (dst ${dst}, destructor ${d}, nfct ${ct})`);
  }
  const users = Atomics.load(cpu.i32, (skb + SKB_USERS) >>> 2);
  if (users !== 1) throw new SkbError("skbAttemptDeferFree", skb, `users is ${users}, expected the last reference (1)`);
}

function deferFreeHook(cpu: SkbCpu, skb: number): void {
  if (cpu.debug === true) deferCheck(cpu, skb);
  const target = cpu.u16[(skb + SKB_ALLOC_CPU) >>> 1] as number;
  const mem = cpu.mem;
  const mine = slotIdx(mem, cpu.id) >>> 1;
  if (target === cpu.id || target >= mem.config.maxCpus) {
    cpu.f64[mine + F_FREED_LOCAL]++;
    kfreeSkbNapiCache(cpu, skb);
    return;
  }
  const i32 = cpu.i32;
  const s = slotIdx(mem, target);
  if (Atomics.load(i32, s + W_ONLINE) === 0) {
    cpu.f64[mine + F_FREED_LOCAL]++;
    kfreeSkbNapiCache(cpu, skb);
    return;
  }
  const max = cpu.profile.skbDeferMax;
  const before = Atomics.add(i32, s + W_COUNT, 1);
  if (before + 1 >= max) {
    cpu.f64[mine + F_FREED_FULL]++;
    kfreeSkbNapiCache(cpu, skb);
    return;
  }
  // llist_add: link, then publish with one CAS (retried on a lost race).
  const u32 = cpu.u32;
  u32[(skb + SKB_USERS) >>> 2] = 0;
  let old = Atomics.load(i32, s + W_HEAD);
  for (;;) {
    if (old === skb) throw new SkbError("skbAttemptDeferFree", skb, `already on cpu ${target}'s defer list (double free)`);
    u32[(skb + SKB_NEXT) >>> 2] = old;
    const seen = Atomics.compareExchange(i32, s + W_HEAD, old, skb);
    if (seen === old) break;
    old = seen;
    cpu.f64[mine + F_CAS_RETRIES]++;
  }
  if (before === max >> 1) {
    // The kernel's IPI raising NET_RX_SOFTIRQ on the target.
    Atomics.add(i32, s + W_KICK, 1);
    Atomics.notify(i32, s + W_KICK);
    cpu.f64[mine + F_KICKS]++;
  }
}

/**
 * `skb_attempt_defer_free`: hand an skb whose last reference we hold, and
 * whose head state is released (dst, destructor, conntrack; checked in debug
 * mode), to the CPU that allocated it. Freed here instead (fclones to their
 * slab, others into this CPU's NAPI cache) when it is ours, its `alloc_cpu`
 * is out of range or offline, or that CPU's list already holds
 * `skb_defer_max − 1`. Counts NAPI_STAT_DEFERRED, like napiConsumeSkb's
 * alien path (which calls the same code). Allocates nothing.
 */
export function skbAttemptDeferFree(cpu: SkbCpu, skb: number): void {
  cpu.stats[NAPI_STAT_DEFERRED]++;
  deferFreeHook(cpu, skb);
}

/**
 * `skb_defer_free_flush`: free every skb other CPUs deferred to `cpu`, with
 * `napiConsumeSkb(skb, 1)`, so shells go into this CPU's NAPI cache (fclones
 * to their slab). Returns how many. An empty list costs one `Atomics.load`.
 * Allocates nothing.
 */
export function skbDeferFreeFlush(cpu: SkbCpu): number {
  const s = (cpu.mem.deferBase + cpu.id * DEFER_SLOT_SIZE) >>> 2;
  if (Atomics.load(cpu.i32, s) === 0) return 0;
  return deferFlush(cpu, s);
}

function deferFlush(cpu: SkbCpu, s: number): number {
  const i32 = cpu.i32;
  const u32 = cpu.u32;
  // Take the list first, then reset the count. The other order can strand
  // the list: a consumer preempted between the reset and the take lets
  // producers fill the list up to skb_defer_max again; the take empties it
  // but the count stays at the max, every later attempt frees locally, and
  // an empty list is never flushed (so never reset) again. This order can
  // only under-count (pushes that land between take and reset), by a
  // bounded amount that the next flush clears.
  let skb = Atomics.exchange(i32, s + W_HEAD, 0);
  Atomics.store(i32, s + W_COUNT, 0);
  // More nodes than shells exist means a cycle: fail loudly instead of spinning.
  const limit = cpu.headCache.nrObjs + 2 * cpu.fcloneCache.nrObjs;
  let n = 0;
  while (skb !== 0) {
    const next = u32[(skb + SKB_NEXT) >>> 2] as number;
    u32[(skb + SKB_USERS) >>> 2] = 1;
    napiConsumeSkb(cpu, skb, 1);
    skb = next;
    if (++n > limit) throw new Error(`skbDeferFreeFlush: cpu ${cpu.id}'s defer list has more than ${limit} nodes (corrupt list)`);
  }
  const f = s >>> 1;
  cpu.f64[f + F_DRAINED] += n;
  cpu.f64[f + F_FLUSHES]++;
  return n;
}

/** skbs on `cpu`'s list by its count word (racy; may run ahead of the list, §4.6). */
export function skbDeferPending(cpu: SkbCpu): number {
  return Atomics.load(cpu.i32, slotIdx(cpu.mem, cpu.id) + W_COUNT);
}

/** `cpu`'s kick generation: read it before looking for work, then {@link skbDeferWaitKick}. */
export function skbDeferKickSeq(cpu: SkbCpu): number {
  return Atomics.load(cpu.i32, slotIdx(cpu.mem, cpu.id) + W_KICK);
}

/**
 * The i32 index (into `cpu.i32`) of `cpu`'s kick word, for a thread that
 * cannot block in {@link skbDeferWaitKick} and waits with
 * `Atomics.waitAsync` from its event loop instead.
 */
export function skbDeferKickIndex(cpu: SkbCpu): number {
  return slotIdx(cpu.mem, cpu.id) + W_KICK;
}

/**
 * Sleep until a pusher kicks `cpu` (its list reached half of skb_defer_max)
 * or `timeoutMs` passes: `Atomics.wait` on the kick word while it still
 * equals `seen`. Returns `"ok"` (woken), `"not-equal"` (a kick came after
 * `seen` was read) or `"timed-out"`. Blocks the thread; allocates nothing.
 */
export function skbDeferWaitKick(cpu: SkbCpu, seen: number, timeoutMs: number): "ok" | "not-equal" | "timed-out" {
  return Atomics.wait(cpu.i32, slotIdx(cpu.mem, cpu.id) + W_KICK, seen, timeoutMs);
}

/** Counters of one CPU's defer slot, readable from any thread. */
export interface SkbDeferSlotStats {
  cpu: number;
  online: boolean;
  /** The list's count word (what the next push compares with skb_defer_max). */
  pending: number;
  /** Kicks this CPU received (its kick generation). */
  kicksReceived: number;
  /** Kicks this CPU sent to others. */
  kicks: number;
  /** skbs this CPU freed itself because the target's list was full. */
  freedFull: number;
  /** skbs this CPU freed itself: its own, target offline or alloc_cpu out of range. */
  freedLocal: number;
  /** skbs this CPU drained from its own list. */
  drained: number;
  /** Non-empty drains. */
  flushes: number;
  /** Lost push races (CAS retries). */
  casRetries: number;
}

/** Snapshot of CPU `id`'s slot (allocates the result; exact once that CPU and its pushers stop). */
export function skbDeferSlotStats(mem: SkbMemory, id: number): SkbDeferSlotStats {
  if (!Number.isInteger(id) || id < 0 || id >= mem.config.maxCpus) {
    throw new RangeError(`skbDeferSlotStats: cpu ${id} not in 0..${mem.config.maxCpus - 1}`);
  }
  const i32 = mem.arena.i32;
  const f64 = mem.arena.f64;
  const s = slotIdx(mem, id);
  const f = s >>> 1;
  return {
    cpu: id,
    online: Atomics.load(i32, s + W_ONLINE) === 1,
    pending: Atomics.load(i32, s + W_COUNT),
    kicksReceived: Atomics.load(i32, s + W_KICK),
    kicks: f64[f + F_KICKS] as number,
    freedFull: f64[f + F_FREED_FULL] as number,
    freedLocal: f64[f + F_FREED_LOCAL] as number,
    drained: f64[f + F_DRAINED] as number,
    flushes: f64[f + F_FLUSHES] as number,
    casRetries: f64[f + F_CAS_RETRIES] as number,
  };
}

/** Slot counters plus this thread's view of `cpu`'s attempts. */
export interface SkbDeferStats extends SkbDeferSlotStats {
  /** Deferral attempts on this CPU (NAPI_STAT_DEFERRED: napiConsumeSkb's alien path and skbAttemptDeferFree). */
  attempts: number;
  /** skbs this CPU pushed onto other CPUs' lists: attempts − freedFull − freedLocal. */
  deferred: number;
}

/**
 * Defer counters of `cpu` (allocates). Call on `cpu`'s own thread: `attempts`
 * comes from its local NAPI stats; the "pushed" count is derived from it so
 * a push writes no counter of its own.
 */
export function skbDeferStats(cpu: SkbCpu): SkbDeferStats {
  const s = skbDeferSlotStats(cpu.mem, cpu.id);
  const attempts = cpu.stats[NAPI_STAT_DEFERRED] as number;
  return { ...s, attempts, deferred: attempts - s.freedFull - s.freedLocal };
}
