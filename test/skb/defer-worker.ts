/**
 * Worker side of defer-workers.test.ts: one CPU (its own SkbCpu over the
 * shared memory, profile 6.19, deferral installed) that allocates skbs and
 * hands them to peers through SPSC rings, frees the skbs peers hand to it
 * with napiConsumeSkb(skb, 64) — which defers them back to their allocating
 * CPU — and drains its own defer list (skbDeferFreeFlush, or netRxAction
 * whose loop drains at the top of every iteration). Loaded from the
 * compiled file; run as a main script (the test runner picks up files
 * under test/) it does nothing.
 */
import { isMainThread, parentPort, workerData } from "node:worker_threads";
import { type NapiStruct, napiCompleteDone, napiSchedule, netifNapiAdd, netRxAction, Softnet } from "../../src/core/napi.js";
import { NetNamespace } from "../../src/core/netdev.js";
import { ringAttach, ringPopBulk, ringPushBulk, ringSpace, type SkbRing } from "../../src/core/ring.js";
import { pageFragAlloc, pageFragCacheDrain, pageFragFree } from "../../src/mm/page-frag.js";
import { type NapiSkbOwner, napiAllocSkb, napiBuildSkb } from "../../src/skb/alloc.js";
import { createSkbCpu, napiCacheStats, type SkbCpu } from "../../src/skb/cpu.js";
import {
  type SkbDeferStats,
  skbDeferFreeFlush,
  skbDeferInstall,
  skbDeferKickSeq,
  skbDeferStats,
  skbDeferUninstall,
  skbDeferWaitKick,
} from "../../src/skb/defer.js";
import { SKB_DROP_REASON } from "../../src/skb/drop-reason.js";
import { napiConsumeSkb } from "../../src/skb/free.js";
import { skbPut } from "../../src/skb/data.js";
import { SKB_ALLOC_CPU, SKB_DATA, SKB_LEN } from "../../src/skb/layout.js";
import { attachSkbMemory, type SkbMemoryDescription } from "../../src/skb/memory.js";
import { napiSkbCacheDrain } from "../../src/skb/napi-cache.js";
import type { ProfileOverrides } from "../../src/skb/profile.js";

/** How the producer gets its skbs. */
export type DeferAlloc = "alloc-small" | "alloc-frag" | "build";

/** One worker's job. */
export interface DeferJob {
  readonly mode: "stream" | "kick";
  readonly mem: SkbMemoryDescription;
  readonly cpuId: number;
  /** Index of this worker's done flag in `ctl` (1 + index). */
  readonly index: number;
  readonly nWorkers: number;
  readonly sizes: ProfileOverrides;
  /** Rings this CPU produces into (round robin), `produce` skbs into EACH. */
  readonly out: readonly string[];
  readonly produce: number;
  /** Rings this CPU consumes from, with the CPU producing into each; `consume` skbs from EACH. */
  readonly in: readonly { readonly ring: string; readonly peer: number }[];
  readonly consume: number;
  readonly alloc: DeferAlloc;
  readonly drain: "flush" | "net-rx-action";
  readonly burst: number;
  /** Int32Array: [0] start barrier, [1 + i] worker i done. */
  readonly ctl: SharedArrayBuffer;
  /** kick mode: rounds of skb_defer_max / 2 + 1 skbs. */
  readonly rounds: number;
}

/** What a worker reports. */
export interface DeferResult {
  cpuId: number;
  produced: number;
  consumed: number;
  allocFails: number;
  defer: SkbDeferStats;
  /** Consumed packets counted on this CPU (drains + frees-now). */
  consumedDrops: number;
  /** napiCacheStats before the final cache drain. */
  cache: Record<string, number>;
  /** Drained by the final flush after every peer was done. */
  finalDrain: number;
  /** Idle waits on the kick word and how they ended. */
  kickOk: number;
  kickNotEqual: number;
  kickTimeouts: number;
  /** kick mode: skbs drained per round, if any round was not exactly max/2 + 1. */
  badRounds: number;
  errors: string[];
}

const DATA_SIZE = 2048;

function tagSkb(cpu: SkbCpu, skb: number, seq: number): void {
  const at = skbPut(cpu, skb, 8);
  cpu.arena.dv.setUint32(at, seq, true);
  cpu.arena.dv.setUint32(at + 4, cpu.id, true);
}

function allocOne(cpu: SkbCpu, napi: NapiSkbOwner, how: DeferAlloc): number {
  if (how === "alloc-small") return napiAllocSkb(cpu, napi, 64);
  if (how === "alloc-frag") return napiAllocSkb(cpu, napi, 1000);
  const data = pageFragAlloc(cpu.napiFrag, DATA_SIZE);
  if (data === 0) return 0;
  const skb = napiBuildSkb(cpu, data, DATA_SIZE);
  if (skb === 0) pageFragFree(cpu.fragPages, data);
  return skb;
}

function run(job: DeferJob): DeferResult {
  const mem = attachSkbMemory(job.mem);
  const cpu = createSkbCpu(mem, job.cpuId, { profile: "6.19", sizes: job.sizes });
  skbDeferInstall(cpu);
  const res: DeferResult = {
    cpuId: cpu.id,
    produced: 0,
    consumed: 0,
    allocFails: 0,
    defer: skbDeferStats(cpu),
    consumedDrops: 0,
    cache: {},
    finalDrain: 0,
    kickOk: 0,
    kickNotEqual: 0,
    kickTimeouts: 0,
    badRounds: 0,
    errors: [],
  };
  const fail = (m: string): void => {
    if (res.errors.length < 20) res.errors.push(`cpu ${cpu.id}: ${m}`);
  };
  const outs: SkbRing[] = job.out.map((n) => ringAttach(mem.arena, n));
  const ins: SkbRing[] = job.in.map((x) => ringAttach(mem.arena, x.ring));
  const peers = job.in.map((x) => x.peer);
  const outSeq = new Float64Array(outs.length);
  const inSeq = new Float64Array(ins.length);
  const buf = new Uint32Array(job.burst);
  const napiOwner: NapiSkbOwner = { dev: 1, napiId: 1, skb: 0 };
  const wantProduce = job.produce * outs.length;
  const wantConsume = job.consume * ins.length;
  const dv = cpu.arena.dv;
  const ctl = new Int32Array(job.ctl);
  let rr = 0;

  /** Allocate and hand over up to `max` skbs to the next ring in turn. */
  const produce = (max: number): number => {
    if (res.produced >= wantProduce) return 0;
    for (let tries = 0; tries < outs.length; tries++) {
      const i = rr;
      rr = (rr + 1) % outs.length;
      const r = outs[i] as SkbRing;
      const left = job.produce - (outSeq[i] as number);
      const k = Math.min(max, buf.length, left, ringSpace(r));
      if (k <= 0) continue;
      let n = 0;
      for (; n < k; n++) {
        const skb = allocOne(cpu, napiOwner, job.alloc);
        if (skb === 0) {
          res.allocFails++;
          break;
        }
        tagSkb(cpu, skb, (outSeq[i] as number) + n);
        buf[n] = skb;
      }
      if (n === 0) return 0;
      if (ringPushBulk(r, buf, 0, n) !== n) fail(`ring ${job.out[i]} refused ${n} skbs after reporting room`);
      outSeq[i] = (outSeq[i] as number) + n;
      res.produced += n;
      return n;
    }
    return 0;
  };

  /** Take up to `max` skbs from each input ring, check them, free them (→ deferred to their owner). */
  const consume = (max: number): number => {
    let total = 0;
    for (let i = 0; i < ins.length; i++) {
      const left = job.consume - (inSeq[i] as number);
      if (left <= 0) continue;
      const k = ringPopBulk(ins[i] as SkbRing, buf, 0, Math.min(max, buf.length, left));
      const peer = peers[i] as number;
      for (let j = 0; j < k; j++) {
        const skb = buf[j] as number;
        const seq = (inSeq[i] as number) + j;
        const at = cpu.u32[(skb + SKB_DATA) >>> 2] as number;
        const allocCpu = cpu.u16[(skb + SKB_ALLOC_CPU) >>> 1] as number;
        if (allocCpu !== peer || cpu.u32[(skb + SKB_LEN) >>> 2] !== 8 || dv.getUint32(at, true) !== seq || dv.getUint32(at + 4, true) !== peer) {
          fail(
            `skb 0x${skb.toString(16)} #${seq} from cpu ${peer}: alloc_cpu ${allocCpu}, len ${cpu.u32[(skb + SKB_LEN) >>> 2]}, ` +
              `tag ${dv.getUint32(at, true)}/${dv.getUint32(at + 4, true)}`,
          );
        }
        napiConsumeSkb(cpu, skb, 64);
      }
      inSeq[i] = (inSeq[i] as number) + k;
      res.consumed += k;
      total += k;
    }
    return total;
  };

  // net-rx-action mode: a dummy device whose NAPI poll is this CPU's "driver".
  const net = new NetNamespace();
  const sd = new Softnet(cpu, net);
  const napi = netifNapiAdd(
    sd,
    net.register({ name: `cpu${cpu.id}` }),
    (_c, n: NapiStruct, budget: number) => {
      const half = Math.min(job.burst, budget >> 1);
      const work = produce(half) + consume(half);
      if (work < budget) napiCompleteDone(n, work);
      return work;
    },
    64,
  );
  const drainOnce = (): number => {
    if (job.drain === "flush") return skbDeferFreeFlush(cpu);
    // Drains happen inside; nothing scheduled still runs one flush.
    netRxAction(sd);
    return 0;
  };

  // start barrier
  Atomics.add(ctl, 0, 1);
  while (Atomics.load(ctl, 0) < job.nWorkers) Atomics.wait(ctl, 0, Atomics.load(ctl, 0), 1);
  Atomics.notify(ctl, 0);

  let stalledSince = 0;
  const idleWait = (seen: number, ms: number): void => {
    const w = skbDeferWaitKick(cpu, seen, ms);
    if (w === "ok") res.kickOk++;
    else if (w === "not-equal") res.kickNotEqual++;
    else res.kickTimeouts++;
  };

  if (job.mode === "kick") {
    // Owner side: hand over max/2 + 1 skbs, sleep until the last push kicks us, drain them.
    const per = (cpu.profile.skbDeferMax >> 1) + 1;
    if (outs.length > 0) {
      for (let r = 0; r < job.rounds && res.errors.length === 0; r++) {
        const seen = skbDeferKickSeq(cpu);
        let sent = 0;
        while (sent < per) sent += produce(per - sent);
        idleWait(seen, 10_000);
        if (res.kickTimeouts > 0) {
          fail(`round ${r}: no kick within 10 s`);
          break;
        }
        const n = skbDeferFreeFlush(cpu);
        if (n !== per) res.badRounds++;
      }
    } else {
      while (res.consumed < wantConsume && res.errors.length === 0) {
        if (consume(job.burst) === 0) Atomics.wait(ctl, 0, Atomics.load(ctl, 0), 0.05);
      }
    }
  } else {
    while ((res.produced < wantProduce || res.consumed < wantConsume) && res.errors.length === 0) {
      const seen = skbDeferKickSeq(cpu);
      let work: number;
      if (job.drain === "flush") {
        work = skbDeferFreeFlush(cpu) + produce(job.burst) + consume(job.burst);
      } else {
        napiSchedule(napi);
        work = netRxAction(sd);
      }
      if (work === 0) {
        // Nothing to do: sleep until a peer's push kicks us (or 0.2 ms).
        idleWait(seen, 0.2);
        const now = Date.now();
        if (stalledSince === 0) stalledSince = now;
        else if (now - stalledSince > 20_000) {
          fail(`stalled 20 s: produced ${res.produced}/${wantProduce}, consumed ${res.consumed}/${wantConsume}`);
          break;
        }
      } else {
        stalledSince = 0;
      }
    }
  }

  // Done: every push of ours onto a peer's list happened before this store.
  Atomics.store(ctl, 1 + job.index, 1);
  Atomics.notify(ctl, 1 + job.index);
  for (;;) {
    let all = true;
    for (let i = 0; i < job.nWorkers; i++) if (Atomics.load(ctl, 1 + i) === 0) all = false;
    if (all) break;
    if (drainOnce() === 0) Atomics.wait(ctl, 1 + job.index, 1, 0.2);
  }
  // Every peer is done: this drain takes everything left.
  res.finalDrain = skbDeferFreeFlush(cpu);
  if (job.drain === "net-rx-action") netRxAction(sd);
  res.defer = skbDeferStats(cpu);
  res.consumedDrops = cpu.drops[SKB_DROP_REASON.CONSUMED] as number;
  res.cache = napiCacheStats(cpu);
  napiSkbCacheDrain(cpu);
  pageFragCacheDrain(cpu.napiFrag);
  pageFragCacheDrain(cpu.netdevFrag);
  const late = skbDeferUninstall(cpu);
  if (late !== 0) fail(`${late} skbs arrived on the defer list after every peer was done`);
  return res;
}

if (!isMainThread && parentPort !== null && workerData !== null && typeof workerData === "object") {
  const job = workerData as DeferJob;
  let res: DeferResult;
  try {
    res = run(job);
  } catch (e) {
    res = {
      cpuId: job.cpuId,
      produced: 0,
      consumed: 0,
      allocFails: 0,
      defer: {} as SkbDeferStats,
      consumedDrops: 0,
      cache: {},
      finalDrain: 0,
      kickOk: 0,
      kickNotEqual: 0,
      kickTimeouts: 0,
      badRounds: 0,
      errors: [`cpu ${job.cpuId} threw: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`],
    };
  }
  parentPort.postMessage(res);
}
