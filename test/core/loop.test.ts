/**
 * The event-loop NAPI driver (src/core/loop.ts) with a synthetic device
 * whose "interrupts" are timers: it sleeps without spending CPU, wakes on
 * raiseNetRxSoftirq, batches what one event-loop turn queued, keeps timers
 * and I/O running while a poll list never empties, and stops on until /
 * abort / timeout — also when a poll throws.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { napiLoopRunning, netRxActionIrq, raiseNetRxSoftirq, runNapiLoop } from "../../src/core/loop.js";
import { type NapiStruct, napiCompleteDone, napiSchedule, netifNapiAdd, Softnet } from "../../src/core/napi.js";
import { NetNamespace } from "../../src/core/netdev.js";
import { createSkbCpu } from "../../src/skb/cpu.js";
import { createSkbMemory } from "../../src/skb/memory.js";

interface Fake {
  sd: Softnet;
  napi: NapiStruct;
  /** Pending "packets" (numbers) and what each poll delivered. */
  queue: number[];
  delivered: number[];
  pollSizes: number[];
  /** Make poll throw once. */
  explode: boolean;
  /** Poll always reports a full weight of work (an endless source). */
  endless: boolean;
}

function fake(weight = 64): Fake {
  const cpu = createSkbCpu(createSkbMemory({ arenaSize: 4 << 20 }), 0);
  const ns = new NetNamespace();
  const sd = new Softnet(cpu, ns);
  const dev = ns.register({ name: "fake0" });
  const f = { sd, queue: [], delivered: [], pollSizes: [], explode: false, endless: false } as unknown as Fake;
  f.napi = netifNapiAdd(
    sd,
    dev,
    (_cpu, n, budget) => {
      if (f.explode) throw new Error("poll exploded");
      if (f.endless) return budget;
      let done = 0;
      while (done < budget && f.queue.length > 0) {
        f.delivered.push(f.queue.shift() as number);
        done++;
      }
      f.pollSizes.push(done);
      if (done < budget) napiCompleteDone(n, done);
      return done;
    },
    weight,
  );
  return f;
}

/** The device's interrupt: queue packets, schedule NAPI, raise the softirq. */
function irq(f: Fake, ...pkts: number[]): void {
  f.queue.push(...pkts);
  napiSchedule(f.napi);
  raiseNetRxSoftirq(f.sd);
}

describe("runNapiLoop", () => {
  test("idle, it sleeps: little CPU, few wakeups, and stops at its timeout", async () => {
    const f = fake();
    const c0 = process.cpuUsage();
    const t0 = Date.now();
    const r = await runNapiLoop(f.sd, { timeoutMs: 300, idleCheckMs: 50 });
    const cpu = process.cpuUsage(c0);
    assert.equal(r.reason, "timeout");
    assert.ok(Date.now() - t0 >= 290);
    assert.equal(r.runs, 0);
    assert.ok(r.sleeps <= 10, `${r.sleeps} sleeps in 300 ms at a 50 ms idle check`);
    // A busy-spinning loop would use ~300 ms of CPU here.
    assert.ok((cpu.user + cpu.system) / 1000 < 100, `idle loop used ${(cpu.user + cpu.system) / 1000} ms CPU`);
    assert.equal(napiLoopRunning(f.sd), false);
  });

  test("an interrupt wakes it at once, and one event-loop turn's packets are polled together", async () => {
    const f = fake();
    let t1 = 0;
    setTimeout(() => {
      t1 = Date.now();
      // Three interrupts in the same turn: one poll should take them all.
      irq(f, 1);
      irq(f, 2, 3);
      irq(f, 4);
    }, 30);
    const r = await runNapiLoop(f.sd, { until: () => f.delivered.length === 4, idleCheckMs: 5000, timeoutMs: 10_000 });
    assert.equal(r.reason, "until");
    assert.ok(Date.now() - t1 < 1000, "woken by the interrupt, not by the 5 s idle check");
    assert.deepEqual(f.delivered, [1, 2, 3, 4]);
    assert.deepEqual(f.pollSizes, [4]);
    assert.equal(r.wakeups, 1);
    assert.equal(r.packets, 4);
  });

  test("work scheduled before the loop starts is done without any wakeup; onRun sees every run", async () => {
    const f = fake(2);
    irq(f, 1, 2, 3, 4, 5);
    const seen: number[] = [];
    const r = await runNapiLoop(f.sd, { until: () => f.delivered.length === 5, onRun: (n) => seen.push(n) });
    assert.deepEqual(f.delivered, [1, 2, 3, 4, 5]);
    assert.equal(seen.reduce((a, b) => a + b, 0), 5);
    assert.equal(r.sleeps, 0);
  });

  test("an endless poll list does not starve timers: the loop yields between budget-limited runs", async () => {
    const f = fake();
    f.endless = true;
    let timerFired = false;
    setTimeout(() => {
      timerFired = true;
    }, 20);
    napiSchedule(f.napi);
    const r = await runNapiLoop(f.sd, { until: () => timerFired, timeoutMs: 5000 });
    assert.equal(r.reason, "until");
    assert.ok(r.yields >= 1);
    assert.ok(r.packets >= f.sd.budget, "it worked while waiting");
  });

  test("abort stops a sleeping loop at once", async () => {
    const f = fake();
    const ac = new AbortController();
    const t0 = Date.now();
    setTimeout(() => ac.abort(), 20);
    const r = await runNapiLoop(f.sd, { signal: ac.signal, idleCheckMs: 10_000 });
    assert.equal(r.reason, "aborted");
    assert.ok(Date.now() - t0 < 1000);
  });

  test("one loop per softnet; a throwing poll stops the loop and releases the softnet", async () => {
    const f = fake();
    const ac = new AbortController();
    const first = runNapiLoop(f.sd, { signal: ac.signal });
    assert.equal(napiLoopRunning(f.sd), true);
    await assert.rejects(runNapiLoop(f.sd), /already running/);
    ac.abort();
    await first;
    f.explode = true;
    setTimeout(() => irq(f, 1), 5);
    await assert.rejects(runNapiLoop(f.sd, { timeoutMs: 2000 }), /poll exploded/);
    assert.equal(napiLoopRunning(f.sd), false);
    await assert.rejects(runNapiLoop(f.sd, { idleCheckMs: 0 }), /idleCheckMs/);
  });

  test("netRxActionIrq: a sleeping loop polls on the interrupt's own stack (no wakeup); work past the budget, or a stop, hands over to the loop", async () => {
    const f = fake(2);
    const seenInIrq: number[][] = [];
    let stop = false;
    setTimeout(() => {
      f.queue.push(1);
      napiSchedule(f.napi);
      netRxActionIrq(f.sd);
      // Polled synchronously, inside the "interrupt".
      seenInIrq.push([...f.delivered]);
      setTimeout(() => {
        // More than one budget (weight 2, 5 packets, budget 300 → one run takes all; make the budget bite):
        f.sd.budget = 2;
        f.queue.push(2, 3, 4, 5);
        napiSchedule(f.napi);
        netRxActionIrq(f.sd);
        seenInIrq.push([...f.delivered]);
        setTimeout(() => {
          stop = true;
          f.queue.push(6);
          napiSchedule(f.napi);
          netRxActionIrq(f.sd);
        }, 20);
      }, 20);
    }, 20);
    const r = await runNapiLoop(f.sd, { until: () => stop && f.delivered.length === 6, idleCheckMs: 5000, timeoutMs: 10_000 });
    assert.equal(r.reason, "until");
    assert.deepEqual(seenInIrq, [[1], [1, 2, 3]], "the interrupt ran net_rx_action itself, up to its budget");
    assert.deepEqual(f.delivered, [1, 2, 3, 4, 5, 6]);
    assert.ok(r.irqRuns >= 3, `irq runs: ${r.irqRuns}`);
    assert.equal(r.wakeups, 2, "the loop was woken only for the work past the budget and for the stop");
    assert.equal(napiLoopRunning(f.sd), false);
  });

  test("netRxActionIrq while the loop is busy just raises (never nests netRxAction)", async () => {
    const f = fake();
    irq(f, 1);
    let nested = 0;
    const r = await runNapiLoop(f.sd, {
      until: () => f.delivered.length === 2,
      idleCheckMs: 5000,
      timeoutMs: 10_000,
      onRun: () => {
        if (f.delivered.length === 1 && nested === 0) {
          nested++;
          f.queue.push(2);
          napiSchedule(f.napi);
          netRxActionIrq(f.sd); // from inside the loop's own run: must not poll here
          assert.equal(f.delivered.length, 1);
        }
      },
    }).then((x) => x, (e) => e);
    assert.ok(!(r instanceof Error), String(r));
    assert.deepEqual(f.delivered, [1, 2]);
    assert.equal((r as { irqRuns: number }).irqRuns, 0);
  });

  test("raising with no loop running is harmless (the work stays scheduled)", () => {
    const f = fake();
    irq(f, 1);
    assert.equal(f.sd.count, 1);
  });
});
