/**
 * How far apart are two worker CPUs? A cache-line ping-pong between two
 * worker threads: one stores a sequence number, the other waits for it and
 * answers on another cache line; the time per round trip is two cache-line
 * transfers between the cores the threads run on.
 *
 * Cross-CPU benchmarks (`skb bench cpumap`, `skb bench defer`) print it
 * first, because on a virtual machine it is a property of the run, not of
 * skbuff: on the 2-vCPU machine these benchmarks were measured on it is
 * ~100 ns in some runs and ~450 ns in others (the host places the vCPUs on
 * near or far cores), and every cross-CPU figure moves with it.
 *
 * This module is also the worker's script (started from the compiled file).
 *
 * @module
 */

import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";

interface PingPongJob {
  readonly pingpong: true;
  readonly side: 0 | 1;
  readonly sab: SharedArrayBuffer;
  readonly rounds: number;
}

/** i32 indices of the two sequence words, 64 bytes apart (separate cache lines). */
const PING = 0;
const PONG = 16;
/** Arrivals: each side counts itself in and spins until both are up, so neither times the other's start-up. */
const READY = 32;

/**
 * Median round-trip time in ns of `rounds` cache-line ping-pongs between
 * two fresh worker threads (3 samples). Takes ~0.1–0.5 s.
 */
export async function cpuRoundTripNs(rounds = 100_000): Promise<number> {
  const samples: number[] = [];
  for (let s = 0; s < 3; s++) {
    const sab = new SharedArrayBuffer(256);
    const run = (side: 0 | 1): Promise<number> =>
      new Promise((resolve, reject) => {
        const job: PingPongJob = { pingpong: true, side, sab, rounds };
        const w = new Worker(new URL(import.meta.url), { workerData: job });
        w.once("message", (ns: number) => resolve(ns));
        w.once("error", reject);
        w.once("exit", (code) => {
          if (code !== 0) reject(new Error(`cpu ping-pong worker exited with code ${code}`));
        });
      });
    const [a] = await Promise.all([run(0), run(1)]);
    samples.push(a);
  }
  samples.sort((x, y) => x - y);
  return Math.round(samples[1] as number);
}

/** The line cross-CPU benchmarks print: the round trip before and after the run. */
export function cpuRoundTripLine(ns: readonly number[]): string {
  return `cross-CPU cache-line round trip (two worker threads ping-ponging) before / after: ${ns.join(" / ")} ns; cross-CPU figures move with it`;
}

function side(job: PingPongJob): number {
  const i32 = new Int32Array(job.sab);
  Atomics.add(i32, READY, 1);
  // A partner that never starts must not leave this thread spinning forever.
  const deadline = Date.now() + 10_000;
  while (Atomics.load(i32, READY) < 2) {
    if (Date.now() > deadline) throw new Error("cpu ping-pong: the partner thread did not start within 10 s");
  }
  const n = job.rounds;
  const t0 = process.hrtime.bigint();
  if (job.side === 0) {
    for (let k = 1; k <= n; k++) {
      Atomics.store(i32, PING, k);
      while (Atomics.load(i32, PONG) !== k);
    }
  } else {
    for (let k = 1; k <= n; k++) {
      while (Atomics.load(i32, PING) !== k);
      Atomics.store(i32, PONG, k);
    }
  }
  return Number(process.hrtime.bigint() - t0) / n;
}

const job = workerData as PingPongJob | null;
if (!isMainThread && parentPort !== null && job !== null && typeof job === "object" && "pingpong" in job) {
  parentPort.postMessage(side(job));
}
