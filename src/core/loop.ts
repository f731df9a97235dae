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
 * allocates one promise and one timer, each wake one more promise and an
 * Immediate. Devices that poll in bursts (TAP) use {@link netRxActionIrq}
 * instead: while the loop sleeps, their readiness callback runs
 * netRxAction on the spot (the kernel's softirq on IRQ exit), so steady
 * traffic allocates nothing per event; the sleep's timer just ends every
 * idleCheckMs and the loop parks again.
 *
 * @module
 */

import { netRxAction, type Softnet } from "./napi.js";

/** What a running loop offers its devices. */
interface LoopHooks {
  /** raise_softirq: wake the loop (it polls after this event-loop turn). */
  wake(): void;
  /** Softirq on IRQ exit: poll now, on the caller's stack, when the loop sleeps. */
  irq(): void;
}

/** The running loops, by softnet (one loop per softnet). */
const loops = new WeakMap<Softnet, LoopHooks>();

/**
 * `raise_softirq(NET_RX_SOFTIRQ)` from outside the loop: wake `sd`'s
 * {@link runNapiLoop} if it is sleeping. Call it after `napiSchedule` from
 * an event callback. Harmless when no loop runs (the work stays scheduled
 * for whoever calls netRxAction next). Allocates nothing.
 */
export function raiseNetRxSoftirq(sd: Softnet): void {
  const h = loops.get(sd);
  if (h !== undefined) h.wake();
}

/**
 * The softirq on IRQ exit (`irq_exit` → `do_softirq`): from a device's
 * readiness callback, after `napiSchedule`, run netRxAction right here when
 * `sd`'s loop is asleep — no promise, no timer, nothing allocated per
 * event. For devices whose poll reads a burst per readiness event (TAP);
 * sockets that raise once per datagram use {@link raiseNetRxSoftirq}, which
 * lets one event-loop turn's datagrams gather first. Inside netRxAction, or
 * while the loop is busy, it falls back to raising. Work left after the
 * budget wakes the loop (ksoftirqd) as usual.
 */
export function netRxActionIrq(sd: Softnet): void {
  const h = loops.get(sd);
  if (h !== undefined) h.irq();
}

/** Is a {@link runNapiLoop} running on `sd`? */
export function napiLoopRunning(sd: Softnet): boolean {
  return loops.has(sd);
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
  /** netRxAction runs made by netRxActionIrq from a device callback while the loop slept (included in `runs`). */
  irqRuns: number;
  /** Times the loop yielded to the event loop with work still scheduled (budget or time used up). */
  yields: number;
}

/**
 * Drive `sd`'s NAPI from Node's event loop until `until()` holds, the
 * signal aborts, or `timeoutMs` passes: run netRxAction while work is
 * scheduled (yielding to the event loop between runs so sockets and timers
 * are served), otherwise sleep until a device raises the softirq. One loop
 * per softnet at a time (a second one throws). Resolves with what it did;
 * rejects only if a poll or `until` threw (the loop is then stopped).
 *
 * A callback state machine rather than an async loop: a yield costs one
 * Immediate (no promise, no closure), a sleep one timer; nothing is
 * allocated per packet.
 */
export function runNapiLoop(sd: Softnet, o: NapiLoopOptions = {}): Promise<NapiLoopResult> {
  if (loops.has(sd)) return Promise.reject(new Error("runNapiLoop: a loop is already running on this softnet"));
  const idleCheckMs = o.idleCheckMs ?? 20;
  if (!(idleCheckMs > 0)) return Promise.reject(new RangeError(`runNapiLoop: idleCheckMs must be > 0, got ${idleCheckMs}`));
  const until = o.until ?? (() => false);
  const signal = o.signal;
  const onRun = o.onRun;
  const deadline = o.timeoutMs !== undefined ? Date.now() + o.timeoutMs : Number.POSITIVE_INFINITY;
  // Date.now() boxes its result: read the clock only when there is a deadline.
  const timed = deadline !== Number.POSITIVE_INFINITY;
  const res: NapiLoopResult = { reason: "until", runs: 0, packets: 0, sleeps: 0, wakeups: 0, irqRuns: 0, yields: 0 };
  return new Promise<NapiLoopResult>((resolve, reject) => {
    let sleeping = false;
    let scheduled = false;
    let done = false;
    let timer: NodeJS.Timeout | undefined;
    const stopReason = (): NapiLoopResult["reason"] | null => {
      if (signal?.aborted === true) return "aborted";
      if (until()) return "until";
      if (timed && Date.now() >= deadline) return "timeout";
      return null;
    };
    const finish = (err: unknown, why: NapiLoopResult["reason"]): void => {
      done = true;
      sleeping = false;
      if (timer !== undefined) clearTimeout(timer);
      loops.delete(sd);
      signal?.removeEventListener("abort", wake);
      if (err !== null) reject(err);
      else {
        res.reason = why;
        resolve(res);
      }
    };
    const run = (): void => {
      const n = netRxAction(sd);
      res.runs++;
      res.packets += n;
      if (onRun !== undefined) onRun(n);
    };
    // One turn of the loop: stop? poll while there is work (yielding between runs); sleep when idle.
    const step = (): void => {
      scheduled = false;
      if (done) return;
      try {
        let why = stopReason();
        if (why === null && sd.count > 0) {
          run();
          if (sd.count > 0) {
            // Budget or time used up: let the event loop run (I/O, timers), then poll again.
            res.yields++;
            schedule();
            return;
          }
          why = stopReason();
        }
        if (why !== null) {
          finish(null, why);
          return;
        }
        sleep();
      } catch (e) {
        finish(e, "until");
      }
    };
    const schedule = (): void => {
      if (!scheduled) {
        scheduled = true;
        setImmediate(step);
      }
    };
    const onIdleTimer = (): void => {
      timer = undefined;
      if (!sleeping) return;
      sleeping = false;
      step();
    };
    const sleep = (): void => {
      res.sleeps++;
      sleeping = true;
      const ms = timed ? Math.max(1, Math.min(idleCheckMs, deadline - Date.now())) : idleCheckMs;
      timer = setTimeout(onIdleTimer, ms);
    };
    // raise_softirq: end a sleep; the poll runs after this event-loop turn, so
    // every datagram the turn queues is polled in one batch.
    function wake(): void {
      if (!sleeping) return;
      sleeping = false;
      if (timer !== undefined) {
        clearTimeout(timer);
        timer = undefined;
      }
      res.wakeups++;
      schedule();
    }
    const irq = (): void => {
      // Only a sleeping loop is idle; busy (or already inside netRxAction), just raise.
      if (!sleeping || sd.inRxAction) {
        wake();
        return;
      }
      try {
        run();
        res.irqRuns++;
        // Work left (budget used up) or a reason to stop: the loop takes over.
        if (sd.count > 0 || stopReason() !== null) wake();
      } catch (e) {
        finish(e, "until");
      }
    };
    loops.set(sd, { wake, irq });
    signal?.addEventListener("abort", wake);
    step();
  });
}
