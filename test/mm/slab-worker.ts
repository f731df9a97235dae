/**
 * Worker side of slab-workers.test.ts: attaches to a shared slab cache and
 * hammers it. Loaded from the compiled file (dist/test/mm/slab-worker.js).
 *
 * The test runner also picks this file up (it lives under test/); run as a
 * main script it does nothing.
 */
import { isMainThread, parentPort, workerData } from "node:worker_threads";
import { type ArenaDescription, arenaAttach } from "../../src/mm/arena.js";
import {
  type KmemCache,
  kmemCacheAlloc,
  kmemCacheAllocBulk,
  kmemCacheAttach,
  kmemCacheFree,
  kmemCacheFreeBulk,
  kmemCacheObjIndex,
} from "../../src/mm/slab.js";
import { attachSkbMemory, type SkbMemoryDescription } from "../../src/skb/memory.js";

/** Where the cache lives: a bare arena + cache name/id, or full skb memory (head cache). */
export type CacheRef =
  | { readonly arena: ArenaDescription; readonly cacheId: number; readonly cacheName: string }
  | { readonly skb: SkbMemoryDescription };

/** Many single and bulk alloc/free calls on objects this worker holds. */
export interface MixedJob {
  readonly kind: "mixed";
  readonly cache: CacheRef;
  readonly workerId: number;
  readonly seed: number;
  /** Slab calls to make. */
  readonly ops: number;
  /** Most objects held at once. */
  readonly hold: number;
  /** Largest bulk. */
  readonly maxBulk: number;
  /** Start barrier: Int32Array[0] counts arrivals, everyone waits for [1] = nWorkers. */
  readonly start: SharedArrayBuffer;
  readonly nWorkers: number;
}

/** Allocate objects and hand them to the peer through `out`; free what arrives on `in`. */
export interface HandoffJob {
  readonly kind: "handoff";
  readonly cache: CacheRef;
  readonly workerId: number;
  readonly peerId: number;
  readonly seed: number;
  /** Objects to produce (and, from the peer, to consume). */
  readonly objects: number;
  readonly maxBulk: number;
  readonly out: SharedArrayBuffer;
  readonly in: SharedArrayBuffer;
  readonly start: SharedArrayBuffer;
  readonly nWorkers: number;
}

export type SlabJob = MixedJob | HandoffJob;

/** What a worker reports when done. */
export interface SlabWorkerResult {
  workerId: number;
  /** Slab API calls made (single and bulk, alloc and free, including failed allocs). */
  calls: number;
  singleAllocs: number;
  singleFrees: number;
  bulkAllocCalls: number;
  bulkAllocObjs: number;
  bulkFreeCalls: number;
  bulkFreeObjs: number;
  /** Allocations (single or bulk) that returned 0. */
  allocFails: number;
  /** Bulk allocations that returned fewer than asked but more than 0. */
  bulkShort: number;
  produced: number;
  consumed: number;
  maxHeld: number;
  errors: string[];
}

/** Ring layout (Int32Array over a SharedArrayBuffer): head, tail, then slots. */
export const RING_HEAD = 0;
export const RING_TAIL = 16;
export const RING_SLOTS = 32;

/** Size in bytes of a ring of `cap` entries. */
export function ringBytes(cap: number): number {
  return (RING_SLOTS + cap) * 4;
}

function tagBase(workerId: number): number {
  return ((0xa5 << 24) | ((workerId & 0xff) << 16)) >>> 0;
}

function openCache(ref: CacheRef): KmemCache {
  if ("skb" in ref) return attachSkbMemory(ref.skb).headCache;
  return kmemCacheAttach(arenaAttach(ref.arena), ref.cacheId, ref.cacheName);
}

function barrier(sab: SharedArrayBuffer, n: number): void {
  const b = new Int32Array(sab);
  Atomics.add(b, 0, 1);
  while (Atomics.load(b, 0) < n) Atomics.wait(b, 0, Atomics.load(b, 0), 5);
  Atomics.notify(b, 0);
}

function newResult(workerId: number): SlabWorkerResult {
  return {
    workerId,
    calls: 0,
    singleAllocs: 0,
    singleFrees: 0,
    bulkAllocCalls: 0,
    bulkAllocObjs: 0,
    bulkFreeCalls: 0,
    bulkFreeObjs: 0,
    allocFails: 0,
    bulkShort: 0,
    produced: 0,
    consumed: 0,
    maxHeld: 0,
    errors: [],
  };
}

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

function runMixed(job: MixedJob): SlabWorkerResult {
  const c = openCache(job.cache);
  const res = newResult(job.workerId);
  const u32 = c.u32;
  const lastWord = (c.objSize - 4) >>> 2;
  const held = new Uint32Array(job.hold);
  const tags = new Uint32Array(job.hold);
  const buf = new Uint32Array(job.maxBulk);
  const base = tagBase(job.workerId);
  let n = 0;
  let seq = 0;
  let x = job.seed | 1;
  const rnd = (): number => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x >>> 0;
  };
  const fail = (msg: string): void => {
    if (res.errors.length < 20) res.errors.push(`worker ${job.workerId}: ${msg}`);
  };
  const take = (o: number, zeroed: boolean): void => {
    if (o < c.objBase || o >= c.objEnd || kmemCacheObjIndex(c, o) < 0) {
      fail(`got ${hex(o)}, not an object of ${c.name}`);
      return;
    }
    const w = o >>> 2;
    if (zeroed && (u32[w] !== 0 || u32[w + lastWord] !== 0)) fail(`bulk object ${hex(o)} not zeroed`);
    const t = (base | (seq++ & 0xffff)) >>> 0;
    u32[w] = t;
    u32[w + lastWord] = (t ^ o) >>> 0;
    held[n] = o;
    tags[n] = t;
    n++;
  };
  const check = (i: number): void => {
    const o = held[i] as number;
    const t = tags[i] as number;
    const w = o >>> 2;
    if (u32[w] !== t || u32[w + lastWord] !== (t ^ o) >>> 0) {
      fail(`object ${hex(o)} tag ${hex(u32[w] as number)}/${hex(u32[w + lastWord] as number)}, expected ${hex(t)}: another owner wrote it`);
    }
  };
  /** Remove held[i] (after checking its tag), returning the object. */
  const drop = (i: number): number => {
    check(i);
    const o = held[i] as number;
    n--;
    held[i] = held[n] as number;
    tags[i] = tags[n] as number;
    return o;
  };

  barrier(job.start, job.nWorkers);
  while (res.calls < job.ops && res.errors.length < 20) {
    if (n > 0) check(rnd() % n); // look at a random held object every step
    const r = rnd();
    // bias toward allocating when holding few, toward freeing when holding many
    const wantAlloc = (r & 0xff) >= (n * 256) / job.hold;
    const bulk = (r & 0x300) === 0x300; // 1 in 4 calls is a bulk call
    if (wantAlloc) {
      if (n >= job.hold) continue;
      if (bulk) {
        const want = Math.min(1 + ((r >>> 12) % job.maxBulk), job.hold - n);
        const zero = (r & 0x400) !== 0;
        const k = kmemCacheAllocBulk(c, want, buf, 0, zero);
        res.calls++;
        res.bulkAllocCalls++;
        res.bulkAllocObjs += k;
        if (k === 0) res.allocFails++;
        else if (k < want) res.bulkShort++;
        if (k > want) fail(`allocBulk(${want}) returned ${k}`);
        for (let i = 0; i < k; i++) take(buf[i] as number, zero);
      } else {
        const o = kmemCacheAlloc(c);
        res.calls++;
        if (o === 0) {
          res.allocFails++;
        } else {
          res.singleAllocs++;
          take(o, false);
        }
      }
      if (n > res.maxHeld) res.maxHeld = n;
    } else {
      if (n === 0) continue;
      if (bulk) {
        const k = Math.min(1 + ((r >>> 12) % job.maxBulk), n);
        for (let i = 0; i < k; i++) buf[i] = drop(rnd() % n);
        kmemCacheFreeBulk(c, k, buf, 0);
        res.calls++;
        res.bulkFreeCalls++;
        res.bulkFreeObjs += k;
      } else {
        kmemCacheFree(c, drop(rnd() % n));
        res.calls++;
        res.singleFrees++;
      }
    }
  }
  // give everything back
  while (n > 0) {
    const k = Math.min(n, job.maxBulk);
    for (let i = 0; i < k; i++) buf[i] = drop(n - 1);
    kmemCacheFreeBulk(c, k, buf, 0);
    res.calls++;
    res.bulkFreeCalls++;
    res.bulkFreeObjs += k;
  }
  return res;
}

function runHandoff(job: HandoffJob): SlabWorkerResult {
  const c = openCache(job.cache);
  const res = newResult(job.workerId);
  const u32 = c.u32;
  const lastWord = (c.objSize - 4) >>> 2;
  const out = new Int32Array(job.out);
  const inn = new Int32Array(job.in);
  const outCap = out.length - RING_SLOTS;
  const inCap = inn.length - RING_SLOTS;
  const buf = new Uint32Array(job.maxBulk);
  const myTag = tagBase(job.workerId);
  const peerTag = tagBase(job.peerId);
  let x = job.seed | 1;
  const rnd = (): number => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x >>> 0;
  };
  const fail = (msg: string): void => {
    if (res.errors.length < 20) res.errors.push(`worker ${job.workerId}: ${msg}`);
  };
  let outHead = 0; // produced so far (we are the only writer of out.head)
  let inTail = 0; // consumed so far (we are the only writer of in.tail)

  barrier(job.start, job.nWorkers);
  let stalledSince = 0;
  while ((res.produced < job.objects || res.consumed < job.objects) && res.errors.length < 20) {
    let progress = false;
    // produce
    if (res.produced < job.objects) {
      const space = outCap - (outHead - Atomics.load(out, RING_TAIL));
      const r = rnd();
      const want = Math.min(space, job.objects - res.produced, 1 + (r % job.maxBulk));
      if (want > 0) {
        let k: number;
        if ((r & 0x10000) !== 0) {
          k = kmemCacheAllocBulk(c, want, buf, 0);
          res.bulkAllocCalls++;
          res.bulkAllocObjs += k;
          if (k === 0) res.allocFails++;
          else if (k < want) res.bulkShort++;
        } else {
          const o = kmemCacheAlloc(c);
          if (o === 0) {
            k = 0;
            res.allocFails++;
          } else {
            k = 1;
            buf[0] = o;
            res.singleAllocs++;
          }
        }
        res.calls++;
        for (let i = 0; i < k; i++) {
          const o = buf[i] as number;
          if (kmemCacheObjIndex(c, o) < 0) fail(`got ${hex(o)}, not an object of ${c.name}`);
          const seq = res.produced + i;
          const w = o >>> 2;
          u32[w] = myTag;
          u32[w + 1] = seq;
          u32[w + lastWord] = (o ^ seq ^ myTag) >>> 0;
          Atomics.store(out, RING_SLOTS + ((outHead + i) % outCap), o | 0);
        }
        if (k > 0) {
          outHead += k;
          res.produced += k;
          Atomics.store(out, RING_HEAD, outHead);
          Atomics.notify(out, RING_HEAD);
          progress = true;
        }
      }
    }
    // consume
    const avail = Atomics.load(inn, RING_HEAD) - inTail;
    if (avail > 0) {
      const r = rnd();
      const k = Math.min(avail, 1 + (r % job.maxBulk));
      for (let i = 0; i < k; i++) {
        const o = Atomics.load(inn, RING_SLOTS + ((inTail + i) % inCap)) >>> 0;
        const seq = res.consumed + i;
        const w = o >>> 2;
        if (u32[w] !== peerTag || u32[w + 1] !== seq || u32[w + lastWord] !== (o ^ seq ^ peerTag) >>> 0) {
          fail(
            `object ${hex(o)} #${seq} from worker ${job.peerId} corrupted: ` +
              `${hex(u32[w] as number)} ${u32[w + 1]} ${hex(u32[w + lastWord] as number)}`,
          );
        }
        buf[i] = o;
      }
      if (k > 1 || (r & 0x20000) !== 0) {
        kmemCacheFreeBulk(c, k, buf, 0);
        res.bulkFreeCalls++;
        res.bulkFreeObjs += k;
      } else {
        kmemCacheFree(c, buf[0] as number);
        res.singleFrees++;
      }
      res.calls++;
      inTail += k;
      res.consumed += k;
      Atomics.store(inn, RING_TAIL, inTail);
      progress = true;
    }
    if (!progress) {
      // nothing to free and nothing could be produced: wait for the peer a little
      Atomics.wait(inn, RING_HEAD, Atomics.load(inn, RING_HEAD), 1);
      const now = Date.now();
      if (stalledSince === 0) stalledSince = now;
      else if (now - stalledSince > 10_000) {
        fail(`stalled 10 s: produced ${res.produced}, consumed ${res.consumed} (cache exhausted for good?)`);
        break;
      }
    } else {
      stalledSince = 0;
    }
  }
  return res;
}

if (!isMainThread && parentPort !== null && workerData !== null && typeof workerData === "object") {
  const job = workerData as SlabJob;
  let res: SlabWorkerResult;
  try {
    res = job.kind === "mixed" ? runMixed(job) : runHandoff(job);
  } catch (e) {
    res = newResult(job.workerId);
    res.errors.push(`worker ${job.workerId} threw: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
  }
  parentPort.postMessage(res);
}
