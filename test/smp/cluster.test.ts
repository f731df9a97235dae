/**
 * The multi-core router: worker threads as CPUs over one shared arena. Every
 * worker balances its packets, nothing is left allocated once all have
 * stopped, and with the NAPI cache on no head goes through the shared slab.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { clusterRun, clusterStart, clusterStop } from "../../src/smp/cluster.js";

describe("multi-core router (workers as CPUs)", () => {
  for (const proto of ["udp", "tcp"] as const) {
    test(`2 workers, ${proto}: RSS spreads flows, packets flow on both, accounting and leaks ok`, async () => {
      const c = await clusterStart({ workers: 2, traffic: { proto, size: 64, flows: proto === "udp" ? 64 : 16 }, fullValidation: true });
      try {
        assert.equal(c.flowsPerWorker.length, 2);
        assert.equal(c.flowsPerWorker[0]! + c.flowsPerWorker[1]!, proto === "udp" ? 64 : 16);
        assert.ok(c.flowsPerWorker.every((n) => n > 0), `RSS left a worker without flows: ${c.flowsPerWorker}`);
        const on = await clusterRun(c, 0.2, true, 1024);
        assert.ok(on.packets > 0);
        assert.ok(on.perWorkerMpps.every((m) => m > 0), "both workers forward");
        // A fresh cache refills once per worker (16 heads in one bulk call); after
        // that every head freed on a CPU is reused there: no shared-slab calls.
        if (proto === "udp") assert.ok(on.slabCallsPerPacket < 0.001, `cache on: ~0 slab calls per packet, got ${on.slabCallsPerPacket}`);
        const off = await clusterRun(c, 0.2, false, 1024);
        assert.ok(off.slabCallsPerPacket > 4, `cache off: ~4.4 slab calls per packet, got ${off.slabCallsPerPacket}`);
      } finally {
        const stop = await clusterStop(c);
        assert.deepEqual(stop.problems, []);
        assert.equal(stop.ok, true);
      }
    });
  }

  test("bad worker counts are clear errors", async () => {
    await assert.rejects(clusterStart({ workers: 0, traffic: { proto: "udp", size: 64 } }), /workers 0 must be 1\.\.64/);
  });
});
