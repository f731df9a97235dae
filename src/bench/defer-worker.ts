/**
 * Worker side of the defer-free benchmark (src/bench/defer.ts): one CPU,
 * either the producer (allocates skbs with napiAllocSkb and hands them over
 * through an SPSC ring, drains its defer list at the top of every loop
 * iteration like net_rx_action) or the consumer (frees what arrives with
 * napiConsumeSkb(skb, 64)). Start it from the compiled file
 * (dist/src/bench/defer-worker.js).
 *
 * ```
 *  controller -> worker   { op: "run", defer, data, packets }   one measured segment
 *                         { op: "stop" }                         drain, report, exit
 *  worker -> controller   { type: "ready" } | { type: "segment", ... }
 *                         { type: "stopped" } | { type: "error", message }
 * ```
 *
 * Segment protocol over the shared control words: both sides install or
 * remove deferral, meet at a barrier, the producer stamps the start, the
 * consumer stamps the end after its last free and raises "done", the
 * producer drains what is left; both then empty their NAPI caches, so every
 * segment starts from the same state.
 *
 * @module
 */

import { parentPort, workerData } from "node:worker_threads";
import { ringAttach, ringPopBulk, ringPushBulk, ringSpace } from "../core/ring.js";
import { pageFragCacheDrain } from "../mm/page-frag.js";
import { kfree } from "../mm/mm.js";
import { kmalloc } from "../mm/kmalloc.js";
import { skbDataPtr, skbLen } from "../skb/access.js";
import { type NapiSkbOwner, napiAllocSkb } from "../skb/alloc.js";
import { createSkbCpu, NAPI_STAT_DEFERRED, type SkbCpu } from "../skb/cpu.js";
import { __skbPut } from "../skb/data.js";
import {
  skbAttemptDeferFree,
  skbDeferFreeFlush,
  skbDeferInstall,
  skbDeferKickSeq,
  skbDeferSlotStats,
  skbDeferUninstall,
  skbDeferWaitKick,
} from "../skb/defer.js";
import { napiConsumeSkb } from "../skb/free.js";
import { attachSkbMemory, type SkbMemoryDescription } from "../skb/memory.js";
import { napiSkbCacheDrain } from "../skb/napi-cache.js";

/** What the controller passes at start. */
export interface DeferBenchWorkerConfig {
  readonly mem: SkbMemoryDescription;
  readonly role: "producer" | "consumer";
  readonly cpu: number;
  readonly ring: string;
  readonly burst: number;
  /** Int32Array: [0] barrier arrivals, [1] consumer done. */
  readonly ctl: SharedArrayBuffer;
  /** skb_defer_max override (default: the 6.19 profile's 128). */
  readonly deferMax?: number;
}

/** One segment's command. */
export interface DeferBenchRun {
  readonly op: "run";
  readonly defer: boolean;
  /** Payload length: 64 → small-head slab data, 1000 → page-frag data. */
  readonly len: number;
  /**
   * The consumer is a socket reader (recvmsg): it copies each payload out to
   * a user buffer (skb_copy_datagram_iter) and frees in process context with
   * skbAttemptDeferFree (tcp_eat_recv_skb), instead of only freeing.
   */
  readonly recv: boolean;
  readonly packets: number;
}

/** What a worker reports per segment. */
export interface DeferBenchSegment {
  type: "segment";
  role: "producer" | "consumer";
  /** process.hrtime.bigint() as a number: producer's start / consumer's end. */
  t: number;
  /** Producer: skbs drained from its list. Consumer: deferral attempts / pushes / full-list frees / kicks. */
  drained: number;
  attempts: number;
  freedFull: number;
  /** Consumer: attempts freed on the spot because the target was offline (defer off). */
  freedLocal: number;
  kicks: number;
  casRetries: number;
  allocFails: number;
}

const BARRIER = 0;
const DONE = 1;

function hrnow(): number {
  return Number(process.hrtime.bigint());
}

/** Empty polls before a worker sleeps, and how long it sleeps (both cases alike). */
const SPIN = 1024;
const SLEEP_MS = 0.02;

/** Back off after a run of empty polls: spin first, then a short sleep. */
function backoff(ctl: Int32Array, idle: number): number {
  if (idle < SPIN) return idle + 1;
  Atomics.wait(ctl, 3, 0, SLEEP_MS);
  return 0;
}

function runProducer(cfg: DeferBenchWorkerConfig, cpu: SkbCpu, cmd: DeferBenchRun, ctl: Int32Array): DeferBenchSegment {
  const ring = ringAttach(cpu.arena, cfg.ring);
  const buf = new Uint32Array(cfg.burst);
  const napi: NapiSkbOwner = { dev: 1, napiId: 1, skb: 0 };
  const before = skbDeferSlotStats(cpu.mem, cpu.id);
  const n = cmd.packets;
  const len = cmd.len;
  let produced = 0;
  let allocFails = 0;
  let idle = 0;
  barrier(ctl);
  const t = hrnow();
  while (produced < n) {
    // The top of a net_rx_action iteration: one Atomics.load when nothing was deferred.
    skbDeferFreeFlush(cpu);
    let k = n - produced;
    if (k > buf.length) k = buf.length;
    const room = ringSpace(ring);
    if (k > room) k = room;
    let i = 0;
    for (; i < k; i++) {
      const skb = napiAllocSkb(cpu, napi, len);
      if (skb === 0) {
        allocFails++;
        break;
      }
      // The driver writes the frame: length and a first word of payload.
      const at = __skbPut(cpu, skb, len);
      cpu.u32[at >>> 2] = produced + i;
      buf[i] = skb;
    }
    if (i === 0) {
      // Ring full: keep polling (draining the list at the top of the loop);
      // after a while sleep until a half-full list kicks us.
      if (++idle > SPIN) {
        skbDeferWaitKick(cpu, skbDeferKickSeq(cpu), SLEEP_MS);
        idle = 0;
      }
      continue;
    }
    idle = 0;
    ringPushBulk(ring, buf, 0, i);
    produced += i;
  }
  // Everything the consumer deferred to us before it raised "done" is on the list now.
  while (Atomics.load(ctl, DONE) === 0) {
    if (skbDeferFreeFlush(cpu) === 0) idle = backoff(ctl, idle);
  }
  skbDeferFreeFlush(cpu);
  const after = skbDeferSlotStats(cpu.mem, cpu.id);
  return {
    type: "segment",
    role: "producer",
    t,
    drained: after.drained - before.drained,
    attempts: 0,
    freedFull: 0,
    freedLocal: 0,
    kicks: 0,
    casRetries: 0,
    allocFails,
  };
}

function runConsumer(cfg: DeferBenchWorkerConfig, cpu: SkbCpu, cmd: DeferBenchRun, ctl: Int32Array): DeferBenchSegment {
  const ring = ringAttach(cpu.arena, cfg.ring);
  const buf = new Uint32Array(cfg.burst);
  const before = skbDeferSlotStats(cpu.mem, cpu.id);
  const attempts0 = cpu.stats[NAPI_STAT_DEFERRED] as number;
  const n = cmd.packets;
  let consumed = 0;
  let idle = 0;
  // The reader's user buffer (recvmsg mode): arena memory, so the copy is
  // one copyWithin (memmove) and allocates no view per packet.
  const user = cmd.recv ? kmalloc(cpu.mem.kmalloc, 2048) : 0;
  if (cmd.recv && user === 0) throw new Error("defer bench: no memory for the reader's buffer");
  barrier(ctl);
  while (consumed < n) {
    skbDeferFreeFlush(cpu);
    const k = ringPopBulk(ring, buf, 0, buf.length);
    if (k === 0) {
      idle = backoff(ctl, idle);
      continue;
    }
    idle = 0;
    if (user === 0) {
      for (let i = 0; i < k; i++) napiConsumeSkb(cpu, buf[i] as number, 64);
    } else {
      const u8 = cpu.u8;
      for (let i = 0; i < k; i++) {
        const skb = buf[i] as number;
        const from = skbDataPtr(cpu, skb);
        u8.copyWithin(user, from, from + skbLen(cpu, skb));
        skbAttemptDeferFree(cpu, skb);
      }
    }
    consumed += k;
  }
  const t = hrnow();
  if (user !== 0) kfree(cpu.mm, user);
  Atomics.store(ctl, DONE, 1);
  const after = skbDeferSlotStats(cpu.mem, cpu.id);
  return {
    type: "segment",
    role: "consumer",
    t,
    drained: 0,
    attempts: (cpu.stats[NAPI_STAT_DEFERRED] as number) - attempts0,
    freedFull: after.freedFull - before.freedFull,
    freedLocal: after.freedLocal - before.freedLocal,
    kicks: after.kicks - before.kicks,
    casRetries: after.casRetries - before.casRetries,
    allocFails: 0,
  };
}

/** Two-party barrier on ctl[0]; the controller resets it before each segment. */
function barrier(ctl: Int32Array): void {
  Atomics.add(ctl, BARRIER, 1);
  while (Atomics.load(ctl, BARRIER) < 2) Atomics.wait(ctl, BARRIER, 1, 1);
  Atomics.notify(ctl, BARRIER);
}

const cfg = workerData as DeferBenchWorkerConfig | null;
const port = parentPort;
if (port !== null && cfg !== null && typeof cfg === "object" && "role" in cfg) {
  try {
    const mem = attachSkbMemory(cfg.mem);
    const cpu = createSkbCpu(mem, cfg.cpu, { profile: "6.19", sizes: { skbDeferMax: cfg.deferMax } });
    const ctl = new Int32Array(cfg.ctl);
    port.on("message", (m: DeferBenchRun | { op: "stop" }) => {
      try {
        if (m.op === "stop") {
          napiSkbCacheDrain(cpu);
          pageFragCacheDrain(cpu.napiFrag);
          port.postMessage({ type: "stopped" });
          port.close();
          return;
        }
        if (m.defer) skbDeferInstall(cpu);
        const seg = cfg.role === "producer" ? runProducer(cfg, cpu, m, ctl) : runConsumer(cfg, cpu, m, ctl);
        if (m.defer) skbDeferUninstall(cpu);
        // Same start for every segment: empty NAPI caches (heads back to the slab).
        napiSkbCacheDrain(cpu);
        port.postMessage(seg);
      } catch (e) {
        port.postMessage({ type: "error", message: e instanceof Error ? (e.stack ?? e.message) : String(e) });
      }
    });
    port.postMessage({ type: "ready" });
  } catch (e) {
    port.postMessage({ type: "error", message: e instanceof Error ? (e.stack ?? e.message) : String(e) });
  }
}
