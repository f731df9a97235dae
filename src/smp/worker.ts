/**
 * Entry point of a worker thread that acts as one CPU of the multi-core
 * router (start it from the compiled file, dist/src/smp/worker.js). It maps
 * the shared arena, builds its own partition of the test bed (its own NAPI
 * cache, page-frag caches, NAPI contexts, devices, conntrack partition and
 * NAT port range, the flows RSS gives its queue) and then obeys the
 * controller's messages:
 *
 * ```
 *  controller -> worker   { cmd: "run", seconds, cacheOn }   measure one segment
 *                         { cmd: "stop" }                    tear down, report, exit
 *  worker -> controller   { type: "ready" } | { type: "result", ... }
 *                         { type: "stopped", ... } | { type: "error", message }
 * ```
 *
 * @module
 */

import { parentPort, workerData } from "node:worker_threads";
import { GCProfiler } from "node:v8";
import { attachSkbMemory } from "../skb/memory.js";
import { napiCacheSetEnabled } from "../skb/napi-cache.js";
import { PG_TX, PG_TX_BYTES } from "../drivers/pktgen.js";
import { type Scenario, scenarioAccounting, scenarioCreate, scenarioDestroy, scenarioRun } from "../router/scenario.js";
import type { WorkerConfig, WorkerMessage, WorkerReply } from "./protocol.js";

const cfg = workerData as WorkerConfig;
const port = parentPort;

function send(m: WorkerReply): void {
  port?.postMessage(m);
}

let s: Scenario | null = null;
try {
  const mem = attachSkbMemory(cfg.mem);
  s = scenarioCreate({
    mem,
    cpuId: cfg.id,
    traffic: cfg.traffic,
    profile: cfg.profile,
    fullValidation: cfg.fullValidation,
    conntrackName: cfg.conntrackName,
    conntrackMax: cfg.conntrackMax,
    natPorts: cfg.natPorts,
    flows: cfg.flows,
  });
  send({ type: "ready", id: cfg.id, flows: cfg.flows.length });
} catch (e) {
  send({ type: "error", id: cfg.id, message: (e as Error).stack ?? String(e) });
}

port?.on("message", (m: WorkerMessage) => {
  try {
    const sc = s as Scenario;
    if (m.cmd === "run") {
      napiCacheSetEnabled(m.cacheOn);
      const tx0 = sc.pktgen.stats[PG_TX] as number;
      const b0 = sc.pktgen.stats[PG_TX_BYTES] as number;
      const prof = new GCProfiler();
      prof.start();
      const limit = m.seconds * 1e9;
      let ns = 0;
      while (ns < limit) ns += scenarioRun(sc, m.chunk).ns;
      const gcCount = prof.stop().statistics.length;
      send({
        type: "result",
        id: cfg.id,
        packets: (sc.pktgen.stats[PG_TX] as number) - tx0,
        bytes: (sc.pktgen.stats[PG_TX_BYTES] as number) - b0,
        ns,
        gcCount,
      });
    } else if (m.cmd === "stop") {
      const a = scenarioAccounting(sc);
      const leaks = scenarioDestroy(sc, false);
      send({ type: "stopped", id: cfg.id, accountingOk: a.ok, problems: a.problems, conntrackEntries: leaks.conntrackEntries });
      port?.close();
    }
  } catch (e) {
    send({ type: "error", id: cfg.id, message: (e as Error).stack ?? String(e) });
  }
});
