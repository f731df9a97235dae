/**
 * Worker side of ring.test.ts: one producer or one consumer of an SPSC ring
 * in a shared arena. Loaded from the compiled file (dist/test/core/ring-worker.js);
 * run as a main script (the test runner picks up files under test/) it does nothing.
 */
import { isMainThread, parentPort, workerData } from "node:worker_threads";
import { type ArenaDescription, arenaAttach } from "../../src/mm/arena.js";
import { ringAttach, ringPopBulk, ringPushBulk } from "../../src/core/ring.js";

/** What a ring worker does. */
export interface RingJob {
  readonly role: "producer" | "consumer";
  readonly arena: ArenaDescription;
  readonly ring: string;
  /** Handles to move: 1, 2, 3, ... count (0 never appears, so a zeroed slot is caught). */
  readonly count: number;
  /** Largest bulk per call; sizes vary 1..maxBulk. */
  readonly maxBulk: number;
  readonly seed: number;
  /** Int32Array: [0] start barrier. */
  readonly start: SharedArrayBuffer;
}

/** What a ring worker reports. */
export interface RingResult {
  role: string;
  moved: number;
  calls: number;
  /** Calls that moved fewer than asked (ring full / empty or short). */
  short: number;
  errors: string[];
}

function run(job: RingJob): RingResult {
  const arena = arenaAttach(job.arena);
  const r = ringAttach(arena, job.ring);
  const buf = new Uint32Array(job.maxBulk);
  const res: RingResult = { role: job.role, moved: 0, calls: 0, short: 0, errors: [] };
  let x = job.seed | 1;
  const b = new Int32Array(job.start);
  Atomics.add(b, 0, 1);
  while (Atomics.load(b, 0) < 2) Atomics.wait(b, 0, 1, 1);
  Atomics.notify(b, 0);
  let idle = 0;
  let next = 1;
  while (res.moved < job.count && res.errors.length < 10) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    const want = Math.min(1 + ((x >>> 0) % job.maxBulk), job.count - res.moved);
    let k: number;
    if (job.role === "producer") {
      for (let i = 0; i < want; i++) buf[i] = next + i;
      k = ringPushBulk(r, buf, 0, want);
      next += k;
    } else {
      k = ringPopBulk(r, buf, 0, want);
      for (let i = 0; i < k; i++) {
        const v = buf[i] as number;
        if (v !== next) {
          if (res.errors.length < 10) res.errors.push(`consumer: got ${v} at position ${next}, expected ${next}`);
          next = v;
        }
        next++;
      }
    }
    res.calls++;
    res.moved += k;
    if (k < want) res.short++;
    if (k === 0) {
      // Back off a little after a run of empty calls (2 cores shared by 2 workers and the runner).
      if (++idle > 64) {
        Atomics.wait(b, 1, 0, 0.05);
        idle = 0;
      }
    } else {
      idle = 0;
    }
  }
  return res;
}

if (!isMainThread && parentPort !== null && workerData !== null && typeof workerData === "object") {
  const job = workerData as RingJob;
  let res: RingResult;
  try {
    res = run(job);
  } catch (e) {
    res = { role: job.role, moved: 0, calls: 0, short: 0, errors: [`${job.role} threw: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`] };
  }
  parentPort.postMessage(res);
}
