/**
 * NAPI: per-device polling with budgets (spec §6).
 *
 * ```
 *  napiSchedule(n) ──> softnet.pollList (FIFO ring of NAPI instances)
 *  netRxAction(sd):  budget = netdev_budget (300), deadline = now + netdev_budget_usecs (2 ms)
 *      loop: skbDeferFreeFlush(cpu)                           (drain remote frees, §4.6)
 *            n = first on list; work = n.poll(n, weight)    (weight 64)
 *            work == weight -> GRO flush of old packets, deliver batch, requeue at tail
 *            budget <= 0 or past deadline -> time_squeeze++, stop (rest stays scheduled)
 *  napiCompleteDone(n, work): GRO flush, deliver the normal-delivery batch, leave the list
 * ```
 *
 * The normal-delivery batch (`napi->rx_list`, `gro_normal_batch` = 8) links
 * skbs through their `next` field: no arrays per packet. Delivery hands each
 * skb to its device's receive handler (`netif_receive_skb`).
 *
 * @module
 */

import type { NapiSkbOwner } from "../skb/alloc.js";
import type { SkbCpu } from "../skb/cpu.js";
import { SKB_DEV, SKB_NEXT } from "../skb/layout.js";
import { SKB_DROP_REASON } from "../skb/drop-reason.js";
import { kfreeSkbReason } from "../skb/free.js";
import { skbDeferFreeFlush } from "../skb/defer.js";
import type { NetDevice, NetNamespace } from "./netdev.js";
import { RX_DELIVERED } from "./netdev.js";

/** NAPI_POLL_WEIGHT. */
export const NAPI_POLL_WEIGHT = 64;
/** netdev_budget default. */
export const NETDEV_BUDGET = 300;
/** netdev_budget_usecs default: two jiffies at HZ=1000. */
export const NETDEV_BUDGET_USECS = 2000;
/** gro_normal_batch default. */
export const GRO_NORMAL_BATCH = 8;

/** NAPI state bits. */
export const NAPI_STATE_SCHED = 1;
export const NAPI_STATE_DISABLE = 2;

/** A driver's poll function: process up to `budget` packets, return how many. */
export type NapiPollFn = (cpu: SkbCpu, napi: NapiStruct, budget: number) => number;
/** GRO flush hook: deliver held packets (all, or only old ones). */
export type GroFlushFn = (cpu: SkbCpu, napi: NapiStruct, all: boolean) => void;

/** `struct napi_struct`. Created once per device per CPU. */
export class NapiStruct implements NapiSkbOwner {
  /** ifindex of the device (stamped on skbs). */
  dev: number;
  napiId: number;
  /** napi_get_frags' reusable skb. */
  skb = 0;
  weight: number;
  state = 0;
  readonly poll: NapiPollFn;
  readonly netdev: NetDevice;
  readonly sd: Softnet;
  /** GRO flush (set by the GRO layer when the device uses GRO); a no-op when nothing is held. */
  groFlush: GroFlushFn | null = null;
  /** Normal-delivery batch: head, tail and count of an skb list linked by `next`. */
  rxHead = 0;
  rxTail = 0;
  rxCount = 0;
  /** Polls and packets, for reports. */
  polls = 0;
  packets = 0;

  /** Use {@link netifNapiAdd}. */
  constructor(sd: Softnet, netdev: NetDevice, poll: NapiPollFn, weight: number, napiId: number) {
    this.sd = sd;
    this.netdev = netdev;
    this.dev = netdev.ifindex;
    this.poll = poll;
    this.weight = weight;
    this.napiId = napiId;
  }
}

/** Tunables of net_rx_action (sysctls). */
export interface SoftnetOptions {
  budget?: number;
  budgetUsecs?: number;
  groNormalBatch?: number;
}

/** Per-CPU softnet state (`struct softnet_data`): the poll list and counters. */
export class Softnet {
  readonly cpu: SkbCpu;
  readonly net: NetNamespace;
  budget: number;
  budgetUsecs: number;
  groNormalBatch: number;
  /** Poll list as a ring of NAPI instances (fixed capacity). */
  readonly pollList: (NapiStruct | null)[];
  head = 0;
  count = 0;
  /** net_rx_action runs, packets processed, and runs cut short by budget or time. */
  runs = 0;
  processed = 0;
  timeSqueeze = 0;
  /**
   * Milliseconds since this softnet was created, refreshed at every
   * net_rx_action (HZ = 1000 jiffies). Small integers: V8 keeps them
   * unboxed, so per-packet code (conntrack timestamps, GRO ages) reads
   * this instead of calling Date.now().
   */
  jiffies = 0;
  readonly epoch: number = Date.now();
  /** Inside netRxAction: drivers may batch transmits until the poll ends (see netdevTxScheduleFlush). */
  inRxAction = false;
  /** Transmit batches to flush when the current poll ends (fixed capacity, TX_FLUSH_MAX). */
  readonly txFlushList: (TxBatch | null)[] = new Array<TxBatch | null>(TX_FLUSH_MAX).fill(null);
  txFlushCount = 0;
  private nextNapiId = 1;

  /** Softnet of `cpu` over the devices of `net`. */
  constructor(cpu: SkbCpu, net: NetNamespace, o: SoftnetOptions = {}) {
    this.cpu = cpu;
    this.net = net;
    this.budget = o.budget ?? NETDEV_BUDGET;
    this.budgetUsecs = o.budgetUsecs ?? NETDEV_BUDGET_USECS;
    this.groNormalBatch = o.groNormalBatch ?? GRO_NORMAL_BATCH;
    for (const [k, v] of [
      ["budget", this.budget],
      ["budgetUsecs", this.budgetUsecs],
      ["groNormalBatch", this.groNormalBatch],
    ] as const) {
      if (!Number.isInteger(v) || v < 1) throw new RangeError(`softnet: ${k} must be a positive integer, got ${v}`);
    }
    this.pollList = new Array<NapiStruct | null>(256).fill(null);
  }

  /** Allocate a NAPI id (cold). */
  allocNapiId(): number {
    return this.nextNapiId++;
  }
}

/** `netif_napi_add`: a NAPI instance for `dev` on this CPU (enabled, not scheduled). */
export function netifNapiAdd(sd: Softnet, dev: NetDevice, poll: NapiPollFn, weight = NAPI_POLL_WEIGHT): NapiStruct {
  if (!Number.isInteger(weight) || weight < 1) throw new RangeError(`netifNapiAdd(${dev.name}): weight ${weight} must be >= 1`);
  return new NapiStruct(sd, dev, poll, weight, sd.allocNapiId());
}

function listAdd(sd: Softnet, n: NapiStruct): void {
  const cap = sd.pollList.length;
  if (sd.count === cap) throw new Error("napiSchedule: poll list overflow (more than 256 NAPI instances on one CPU)");
  sd.pollList[(sd.head + sd.count) % cap] = n;
  sd.count++;
}

/** `napi_schedule`: put `n` on its CPU's poll list unless already scheduled. */
export function napiSchedule(n: NapiStruct): void {
  if ((n.state & (NAPI_STATE_SCHED | NAPI_STATE_DISABLE)) !== 0) return;
  n.state |= NAPI_STATE_SCHED;
  listAdd(n.sd, n);
}

/** `napi_disable`: stop scheduling `n` (takes effect after its current poll). */
export function napiDisable(n: NapiStruct): void {
  n.state |= NAPI_STATE_DISABLE;
}

/** `napi_enable`. */
export function napiEnable(n: NapiStruct): void {
  n.state &= ~NAPI_STATE_DISABLE;
}

/**
 * `netif_receive_skb`: hand `skb` to its device's receive handler. An skb
 * whose device no longer exists is dropped (DEV_READY) and counted on the CPU.
 */
export function netifReceiveSkb(sd: Softnet, skb: number): void {
  const cpu = sd.cpu;
  const dev = sd.net.devices[cpu.u32[(skb + SKB_DEV) >>> 2] as number];
  if (dev === undefined) {
    kfreeSkbReason(cpu, skb, SKB_DROP_REASON.DEV_READY);
    return;
  }
  dev.stats[RX_DELIVERED]++;
  dev.rxHandler(cpu, dev, skb);
}

/** `gro_normal_one`: queue a packet for batched delivery; deliver at the batch size. */
export function groNormalOne(n: NapiStruct, skb: number): void {
  const cpu = n.sd.cpu;
  cpu.u32[(skb + SKB_NEXT) >>> 2] = 0;
  if (n.rxCount === 0) n.rxHead = skb;
  else cpu.u32[(n.rxTail + SKB_NEXT) >>> 2] = skb;
  n.rxTail = skb;
  if (++n.rxCount >= n.sd.groNormalBatch) groNormalList(n);
}

/** `gro_normal_list`: deliver the batch (`netif_receive_skb_list_internal`). */
export function groNormalList(n: NapiStruct): void {
  if (n.rxCount === 0) return;
  const cpu = n.sd.cpu;
  let skb = n.rxHead;
  n.rxHead = 0;
  n.rxTail = 0;
  n.rxCount = 0;
  while (skb !== 0) {
    const next = cpu.u32[(skb + SKB_NEXT) >>> 2] as number;
    cpu.u32[(skb + SKB_NEXT) >>> 2] = 0;
    netifReceiveSkb(n.sd, skb);
    skb = next;
  }
}

/**
 * `napi_complete_done`: the driver did less than its weight. Flush GRO,
 * deliver the batch, leave the poll list. Returns false when the instance
 * must not re-arm (disabled).
 */
export function napiCompleteDone(n: NapiStruct, _work: number): boolean {
  if (n.groFlush !== null) n.groFlush(n.sd.cpu, n, true);
  groNormalList(n);
  n.state &= ~NAPI_STATE_SCHED;
  return (n.state & NAPI_STATE_DISABLE) === 0;
}

/**
 * The time limit is kept in jiffies with HZ = 1000, i.e. Date.now()
 * milliseconds, like the kernel's `time_limit = jiffies +
 * usecs_to_jiffies(netdev_budget_usecs)`. (performance.now() allocates in
 * Node 20; Date.now() does not.)
 */
function usecsToJiffies(us: number): number {
  return Math.max(1, Math.ceil(us / 1000));
}

/**
 * `net_rx_action`: poll scheduled NAPI instances until the list is empty,
 * the budget is spent, or the time limit passes. Instances that used their
 * whole weight go to the tail and are polled in a later run (the kernel
 * re-raises the softirq). Returns packets processed.
 */
export function netRxAction(sd: Softnet): number {
  // Date.now() returns a boxed number: read the clock every 8th run only
  // (a few ms of staleness at most, like a coarse jiffies tick).
  if ((sd.runs & 7) === 0) sd.jiffies = Date.now() - sd.epoch;
  const timeLimit = sd.jiffies + usecsToJiffies(sd.budgetUsecs);
  let polls = 0;
  let budget = sd.budget;
  let total = 0;
  sd.runs++;
  const cap = sd.pollList.length;
  // Instances polled in this run that asked to be polled again go to the tail.
  let toPoll = sd.count;
  sd.inRxAction = true;
  for (;;) {
    // skb_defer_free_flush (5.19+, 909876500251): at the top of EVERY
    // iteration, before each poll and once more when nothing is left to
    // poll. One Atomics.load when no other CPU deferred anything.
    skbDeferFreeFlush(sd.cpu);
    if (sd.count === 0 || toPoll === 0) break;
    const n = sd.pollList[sd.head] as NapiStruct;
    sd.pollList[sd.head] = null;
    sd.head = (sd.head + 1) % cap;
    sd.count--;
    toPoll--;
    const work = napiPoll(n);
    // The poll's transmits go out now, in one burst per device queue.
    if (sd.txFlushCount !== 0) netdevTxFlush(sd);
    budget -= work;
    total += work;
    // The time limit is checked every 4th poll (see above); the budget always.
    if (budget <= 0 || ((++polls & 3) === 0 && (sd.jiffies = Date.now() - sd.epoch) >= timeLimit)) {
      sd.timeSqueeze++;
      break;
    }
  }
  sd.inRxAction = false;
  if (sd.txFlushCount !== 0) netdevTxFlush(sd);
  sd.processed += total;
  return total;
}

/** `__napi_poll`: one poll of `n`, requeueing it when it used its whole weight. */
function napiPoll(n: NapiStruct): number {
  n.polls++;
  if ((n.state & NAPI_STATE_DISABLE) !== 0) {
    napiCompleteDone(n, 0);
    return 0;
  }
  const work = n.poll(n.sd.cpu, n, n.weight);
  n.packets += work;
  if (work < n.weight) {
    // The driver completed (or must now): make sure it left the list.
    if ((n.state & NAPI_STATE_SCHED) !== 0) napiCompleteDone(n, work);
    return work;
  }
  // Full weight: flush GRO's packets, deliver the batch, poll again later.
  if (n.groFlush !== null) n.groFlush(n.sd.cpu, n, false);
  groNormalList(n);
  listAdd(n.sd, n);
  return work;
}

// ---- transmit batching (the xmit_more doorbell) ---------------------------------------------------

/** Most transmit batches one softnet tracks at once; more are flushed on the spot. */
export const TX_FLUSH_MAX = 64;

/**
 * A driver queue that holds transmitted frames until the poll that sent
 * them ends, then hands them to the hardware in one go — the kernel's
 * `xmit_more`: the doorbell is rung once per burst, not per packet.
 */
export interface TxBatch {
  /** Set while on a softnet's flush list. */
  txScheduled: boolean;
  /** Hand everything held to the device now. */
  txFlush(): void;
}

/**
 * Ask for `b` to be flushed when the current poll ends. Outside
 * netRxAction (timers, setup) — or with the list full — it is flushed at
 * once, so a frame is never held past the code that sent it.
 */
export function netdevTxScheduleFlush(sd: Softnet, b: TxBatch): void {
  if (b.txScheduled === true) return;
  if (sd.inRxAction === false || sd.txFlushCount === TX_FLUSH_MAX) {
    b.txFlush();
    return;
  }
  b.txScheduled = true;
  sd.txFlushList[sd.txFlushCount++] = b;
}

/** Flush every scheduled batch (netRxAction does, after each poll). */
export function netdevTxFlush(sd: Softnet): void {
  const l = sd.txFlushList;
  // A flush may schedule again (a completion that transmits): loop on the count.
  for (let i = 0; i < sd.txFlushCount; i++) {
    const b = l[i] as TxBatch;
    l[i] = null;
    b.txScheduled = false;
    b.txFlush();
  }
  sd.txFlushCount = 0;
}

/** Run net_rx_action until nothing is scheduled (tests, benchmarks). */
export function netRxActionUntilIdle(sd: Softnet, maxRuns = 1_000_000): number {
  let total = 0;
  for (let i = 0; i < maxRuns && sd.count > 0; i++) total += netRxAction(sd);
  return total;
}

