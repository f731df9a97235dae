/**
 * Smoke test of the defer-free benchmark (src/bench/defer.ts): a tiny run
 * finishes, both cases and payloads are reported, the on case defers every
 * free it does not have to do locally, the off case defers none, and
 * teardown finds nothing left allocated (runDeferBench throws otherwise).
 * Timings are not asserted.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { DEFER_CASES, DEFER_DATA, formatDeferBench, runDeferBench } from "../../src/bench/defer.js";

describe("bench defer", { timeout: 120_000 }, () => {
  test("a small run reports every case and payload, with consistent shares", async () => {
    const r = await runDeferBench({ packets: 4096, rounds: 2, ringSize: 256 });
    assert.equal(r.results.length, DEFER_CASES.length * DEFER_DATA.length);
    for (const x of r.results) {
      assert.equal(x.totalPackets, 2 * 4096);
      assert.ok(x.nsPerPkt > 0 && Number.isFinite(x.nsPerPkt));
      if (x.case === "defer-on") assert.ok(Math.abs(x.deferredPct + x.freedFullPct - 100) < 0.01, `${x.data}: shares add up`);
      else assert.deepEqual([x.deferredPct, x.freedFullPct, x.kicksPerMpkt], [0, 0, 0]);
    }
    assert.equal(r.ratios.length, DEFER_DATA.length);
    for (const q of r.ratios) {
      // Paired per round: the median lies within the rounds' range.
      assert.ok(q.minOffOverOn <= q.offOverOn && q.offOverOn <= q.maxOffOverOn, `${q.data}: ${JSON.stringify(q)}`);
      assert.ok(q.ofMedians > 0);
    }
    const text = formatDeferBench(r);
    assert.match(text, /defer-on +small-64/);
    assert.match(text, /defer-off +recvmsg-1000/, "the socket-reader workload is reported");
    assert.match(text, /defer-on +pp-1500/, "the page-pool RX workload is reported (its pages are in the leak check)");
    assert.match(text, /defer-off \/ defer-on/);
  });

  test("bad options are errors naming the flag", async () => {
    await assert.rejects(runDeferBench({ packets: 10 }), /--packets must be an integer >= 1024/);
    await assert.rejects(runDeferBench({ rounds: 0 }), /--rounds must be >= 1/);
  });
});
