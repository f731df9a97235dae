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
import { ringAttach, ringCount, ringPopBulk, ringPushBulk, ringSpace } from "../core/ring.js";
import { pageFragCacheDrain } from "../mm/page-frag.js";
import { kfree } from "../mm/mm.js";
import { kmalloc } from "../mm/kmalloc.js";
import { skbDataPtr, skbLen } from "../skb/access.js";
import { type NapiSkbOwner, napiAllocSkb } from "../skb/alloc.js";
import { hostPoolCreate, hostPoolDestroy, ppRxSkb } from "../drivers/host-common.js";
import { createSkbCpu, NAPI_STAT_DEFERRED, type SkbCpu } from "../skb/cpu.js";
import { __skbPut } from "../skb/data.js";
import {
  skbAttemptDeferFree,
  skbDeferFreeFlush,
  skbDeferInstall,
  skbDeferSlotStats,
  skbDeferUninstall,
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
  /** Int32Array: [0] barrier arrivals, [1] consumer done, [2..5] doorbells and sleeping flags, [6] nap word. */
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
  /**
   * The producer is a NIC driver with a page pool: each frame is a whole
   * pool page (napiBuildSkb around it, pp_recycle set), so a free on the
   * pool's CPU recycles the page directly and a free elsewhere goes through
   * the pool's locked recycle ring.
   */
  readonly pool: boolean;
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
/** Consumer's doorbell (bumped by the producer after a push while the consumer sleeps) and its sleeping flag. */
const CBELL = 2;
const CSLEEP = 3;
/** Producer's doorbell (bumped by the consumer after a pop while the producer sleeps on a full ring) and its flag. */
const PBELL = 4;
const PSLEEP = 5;
/** Word the drain loop naps on (never notified). */
const NAP = 6;

function hrnow(): number {
  return Number(process.hrtime.bigint());
}

/** Empty polls before a worker sleeps (both cases alike). */
const SPIN = 1024;
/** Longest sleep; a doorbell normally ends it first. */
const SLEEP_MS = 1;

/** Back off after a run of empty polls: spin first, then a short nap (the producer's drain loop only). */
function backoff(ctl: Int32Array, idle: number): number {
  if (idle < SPIN) return idle + 1;
  Atomics.wait(ctl, NAP, 0, 0.02);
  return 0;
}

/**
 * Sleep on doorbell `bell` until the other side rings it, unless `ready()`
 * turns true once the flag is up (a ring between the last poll and the
 * flag would otherwise be missed): flag, read the bell, re-check, wait.
 */
function sleepOn(ctl: Int32Array, bell: number, flag: number, ready: () => boolean): void {
  Atomics.store(ctl, flag, 1);
  const seen = Atomics.load(ctl, bell);
  if (!ready()) Atomics.wait(ctl, bell, seen, SLEEP_MS);
  Atomics.store(ctl, flag, 0);
}

/** Ring the other side's doorbell if it sleeps. */
function ring(ctl: Int32Array, bell: number, flag: number): void {
  if (Atomics.load(ctl, flag) === 1) {
    Atomics.add(ctl, bell, 1);
    Atomics.notify(ctl, bell);
  }
}

function runProducer(cfg: DeferBenchWorkerConfig, cpu: SkbCpu, cmd: DeferBenchRun, ctl: Int32Array): DeferBenchSegment {
  const hand = ringAttach(cpu.arena, cfg.ring);
  const hasRoom = () => ringSpace(hand) > 0;
  const buf = new Uint32Array(cfg.burst);
  const napi: NapiSkbOwner = { dev: 1, napiId: 1, skb: 0 };
  const before = skbDeferSlotStats(cpu.mem, cpu.id);
  const n = cmd.packets;
  const len = cmd.len;
  let produced = 0;
  let allocFails = 0;
  let idle = 0;
  // A fresh pool per segment, so every segment starts from the same state.
  const pool = cmd.pool ? hostPoolCreate(cpu) : null;
  barrier(ctl);
  const t = hrnow();
  while (produced < n) {
    // The top of a net_rx_action iteration: one Atomics.load when nothing was deferred.
    skbDeferFreeFlush(cpu);
    let k = n - produced;
    if (k > buf.length) k = buf.length;
    const room = ringSpace(hand);
    if (k > room) k = room;
    let i = 0;
    for (; i < k; i++) {
      const skb = pool === null ? napiAllocSkb(cpu, napi, len) : ppRxSkb(cpu, pool);
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
      // after a while sleep until the consumer makes room.
      if (++idle > SPIN) {
        sleepOn(ctl, PBELL, PSLEEP, hasRoom);
        idle = 0;
      }
      continue;
    }
    idle = 0;
    ringPushBulk(hand, buf, 0, i);
    produced += i;
    ring(ctl, CBELL, CSLEEP);
  }
  // Everything the consumer deferred to us before it raised "done" is on the list now.
  while (Atomics.load(ctl, DONE) === 0) {
    if (skbDeferFreeFlush(cpu) === 0) idle = backoff(ctl, idle);
  }
  skbDeferFreeFlush(cpu);
  if (pool !== null) hostPoolDestroy(cpu, pool);
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
  const hand = ringAttach(cpu.arena, cfg.ring);
  const hasFrames = () => ringCount(hand) > 0;
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
    const k = ringPopBulk(hand, buf, 0, buf.length);
    if (k === 0) {
      if (++idle > SPIN) {
        sleepOn(ctl, CBELL, CSLEEP, hasFrames);
        idle = 0;
      }
      continue;
    }
    idle = 0;
    ring(ctl, PBELL, PSLEEP);
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
