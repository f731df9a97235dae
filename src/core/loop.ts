/**
 * The event-loop driver of one CPU's softnet: `ksoftirqd` for Node.
 *
 * NAPI here is polled by an explicit call (`netRxAction`). Devices whose
 * packets arrive from Node's event loop (UDP sockets, later TAP file
 * descriptors) schedule their NAPI from an event callback — the model's
 * hard IRQ — and then {@link raiseNetRxSoftirq}, which wakes the loop:
 *
 * ```
 *  socket 'message' ──> driver: copy into a page, napiSchedule(n), raiseNetRxSoftirq(sd)
 *                                                                     │ (resolves the loop's wait)
 *  runNapiLoop(sd):  ┌──────────────────────────────────────────────────┘
 *     loop: until() / abort / timeout?  -> stop
 *           sd.count > 0 ? netRxAction(sd)          (budget 300 / 2 ms)
 *                          still scheduled? setImmediate, again   (let I/O in, like ksoftirqd's cond_resched)
 *                        : sleep until raiseNetRxSoftirq or idleCheckMs passes
 *                          then one setImmediate, so every datagram of that
 *                          event-loop turn is queued before the poll (batching)
 * ```
 *
 * Idle, the loop is parked on a promise and a timer: no CPU is spent. The
 * wake path (one WeakMap lookup, one flag) allocates nothing; each sleep
 * allocates one promise and one timer (cold: once per idle period, not per
 * packet).
 *
 * @module
 */

import { netRxAction, type Softnet } from "./napi.js";

/** Wakers of the running loops, by softnet (one loop per softnet). */
const wakers = new WeakMap<Softnet, () => void>();

/**
 * `raise_softirq(NET_RX_SOFTIRQ)` from outside the loop: wake `sd`'s
 * {@link runNapiLoop} if it is sleeping. Call it after `napiSchedule` from
 * an event callback. Harmless when no loop runs (the work stays scheduled
 * for whoever calls netRxAction next). Allocates nothing.
 */
export function raiseNetRxSoftirq(sd: Softnet): void {
  const w = wakers.get(sd);
  if (w !== undefined) w();
}

/** Is a {@link runNapiLoop} running on `sd`? */
export function napiLoopRunning(sd: Softnet): boolean {
  return wakers.has(sd);
}

/** Options of {@link runNapiLoop}. */
export interface NapiLoopOptions {
  /** Stop when this returns true; checked before the loop sleeps and after every netRxAction. */
  until?: () => boolean;
  /** Stop when aborted (wakes a sleeping loop at once). */
  signal?: AbortSignal;
  /** Stop after this many milliseconds (default: never). */
  timeoutMs?: number;
  /** Longest sleep without an event before `until` is checked again, in ms (default 20). */
  idleCheckMs?: number;
  /** Called after every netRxAction with the packets it processed (router timers, stats). */
  onRun?: (processed: number) => void;
}

/** Why the loop stopped and what it did. */
export interface NapiLoopResult {
  reason: "until" | "aborted" | "timeout";
  /** netRxAction calls. */
  runs: number;
  /** Packets processed by them. */
  packets: number;
  /** Times the loop slept with nothing scheduled. */
  sleeps: number;
  /** Sleeps ended by raiseNetRxSoftirq (the rest ended by the idle check timer). */
  wakeups: number;
  /** Times the loop yielded to the event loop with work still scheduled (budget or time used up). */
  yields: number;
}

function immediate(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * Drive `sd`'s NAPI from Node's event loop until `until()` holds, the
 * signal aborts, or `timeoutMs` passes: run netRxAction while work is
 * scheduled (yielding to the event loop between runs so sockets and timers
 * are served), otherwise sleep until a device raises the softirq. One loop
 * per softnet at a time (a second one throws). Resolves with what it did;
 * rejects only if a poll or `until` threw (the loop is then stopped).
 */
export async function runNapiLoop(sd: Softnet, o: NapiLoopOptions = {}): Promise<NapiLoopResult> {
  if (wakers.has(sd)) throw new Error("runNapiLoop: a loop is already running on this softnet");
  const idleCheckMs = o.idleCheckMs ?? 20;
  if (!(idleCheckMs > 0)) throw new RangeError(`runNapiLoop: idleCheckMs must be > 0, got ${idleCheckMs}`);
  const until = o.until ?? (() => false);
  const signal = o.signal;
  const deadline = o.timeoutMs !== undefined ? Date.now() + o.timeoutMs : Number.POSITIVE_INFINITY;
  const res: NapiLoopResult = { reason: "until", runs: 0, packets: 0, sleeps: 0, wakeups: 0, yields: 0 };
  let raised = false;
  let wakeSleeper: (() => void) | null = null;
  const wake = (): void => {
    raised = true;
    if (wakeSleeper !== null) {
      const w = wakeSleeper;
      wakeSleeper = null;
      w();
    }
  };
  wakers.set(sd, wake);
  signal?.addEventListener("abort", wake);
  const stopReason = (): NapiLoopResult["reason"] | null => {
    if (signal?.aborted === true) return "aborted";
    if (until()) return "until";
    if (Date.now() >= deadline) return "timeout";
    return null;
  };
  try {
    for (;;) {
      const why = stopReason();
      if (why !== null) {
        res.reason = why;
        return res;
      }
      if (sd.count > 0) {
        raised = false;
        const n = netRxAction(sd);
        res.runs++;
        res.packets += n;
        if (o.onRun !== undefined) o.onRun(n);
        if (sd.count > 0) {
          // Budget or time used up: let the event loop run (I/O, timers), then poll again.
          res.yields++;
          await immediate();
        }
        continue;
      }
      if (raised) {
        // Raised while we were busy, but nothing is scheduled any more: nothing to do.
        raised = false;
        continue;
      }
      res.sleeps++;
      let timer: NodeJS.Timeout | undefined;
      const byEvent = await new Promise<boolean>((resolve) => {
        wakeSleeper = () => resolve(true);
        const ms = Math.max(1, Math.min(idleCheckMs, deadline - Date.now()));
        timer = setTimeout(() => {
          wakeSleeper = null;
          resolve(false);
        }, ms);
      });
      clearTimeout(timer);
      if (byEvent) {
        res.wakeups++;
        // Let the rest of this event-loop turn's I/O callbacks queue their packets first.
        await immediate();
      }
    }
  } finally {
    wakers.delete(sd);
    signal?.removeEventListener("abort", wake);
  }
}
