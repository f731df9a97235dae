/**
 * Transmit batching (the xmit_more doorbell, src/core/napi.ts): a driver
 * batch scheduled inside netRxAction is flushed when the poll that filled it
 * ends; outside netRxAction, or with the flush list full, at once.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { napiCompleteDone, napiSchedule, netdevTxFlush, netdevTxScheduleFlush, netifNapiAdd, netRxAction, Softnet, TX_FLUSH_MAX, type TxBatch } from "../../src/core/napi.js";
import { NetNamespace } from "../../src/core/netdev.js";
import { createSkbCpu } from "../../src/skb/cpu.js";
import { createSkbMemory } from "../../src/skb/memory.js";

function world(): { sd: Softnet; ns: NetNamespace } {
  const cpu = createSkbCpu(createSkbMemory({ arenaSize: 8 << 20 }), 0);
  const ns = new NetNamespace();
  return { sd: new Softnet(cpu, ns), ns };
}

/** A batch that logs its flushes into `log`. */
function batch(name: string, log: string[]): TxBatch & { held: number } {
  const b = {
    txScheduled: false,
    held: 0,
    txFlush() {
      log.push(`${name}:${b.held}`);
      b.held = 0;
    },
  };
  return b;
}

describe("transmit batching (netdevTxScheduleFlush)", () => {
  test("outside netRxAction a scheduled batch is flushed at once", () => {
    const { sd } = world();
    const log: string[] = [];
    const b = batch("a", log);
    b.held = 3;
    netdevTxScheduleFlush(sd, b);
    assert.deepEqual(log, ["a:3"]);
    assert.equal(b.txScheduled, false);
    assert.equal(sd.txFlushCount, 0);
  });

  test("inside a poll: held until the poll returns, once per batch however many sends, before the next poll", () => {
    const { sd, ns } = world();
    const dev = ns.register({ name: "fake0" });
    const log: string[] = [];
    const a = batch("a", log);
    const b = batch("b", log);
    const p1 = netifNapiAdd(sd, dev, (_c, n) => {
      for (let i = 0; i < 5; i++) {
        a.held++;
        netdevTxScheduleFlush(sd, a);
      }
      b.held++;
      netdevTxScheduleFlush(sd, b);
      log.push("poll1 done");
      napiCompleteDone(n, 1);
      return 1;
    });
    const p2 = netifNapiAdd(sd, dev, (_c, n) => {
      log.push("poll2");
      a.held++;
      netdevTxScheduleFlush(sd, a);
      napiCompleteDone(n, 1);
      return 1;
    });
    napiSchedule(p1);
    napiSchedule(p2);
    netRxAction(sd);
    assert.deepEqual(log, ["poll1 done", "a:5", "b:1", "poll2", "a:1"]);
    assert.equal(sd.inRxAction, false);
    assert.equal(sd.txFlushCount, 0);
  });

  test("a flush that schedules another batch gets it flushed in the same round", () => {
    const { sd } = world();
    const log: string[] = [];
    const second = batch("second", log);
    const first = {
      txScheduled: false,
      txFlush() {
        log.push("first");
        second.held = 2;
        netdevTxScheduleFlush(sd, second);
      },
    };
    sd.inRxAction = true;
    netdevTxScheduleFlush(sd, first);
    assert.deepEqual(log, []);
    netdevTxFlush(sd);
    assert.deepEqual(log, ["first", "second:2"]);
    sd.inRxAction = false;
  });

  test("with the flush list full, a further batch is flushed on the spot", () => {
    const { sd } = world();
    const log: string[] = [];
    sd.inRxAction = true;
    const bs = Array.from({ length: TX_FLUSH_MAX + 1 }, (_, i) => batch(`b${i}`, log));
    for (const b of bs) {
      b.held = 1;
      netdevTxScheduleFlush(sd, b);
    }
    assert.deepEqual(log, [`b${TX_FLUSH_MAX}:1`], "only the one that did not fit went at once");
    netdevTxFlush(sd);
    assert.equal(log.length, TX_FLUSH_MAX + 1);
    sd.inRxAction = false;
  });
});
