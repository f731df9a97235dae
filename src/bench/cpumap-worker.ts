/**
 * Worker program of the cpumap benchmark and test (compiled entry:
 * dist/src/bench/cpumap-worker.js). Role "producer": CPU 0 writes UDP frames
 * into its page pool, builds skbs with napiBuildSkb and redirects them with
 * cpumapEnqueue/cpumapFlush. Role "consumer": CPU 1 builds the heads on its
 * side (bulk or one by one), validates the frame and frees it with
 * napiConsumeSkb (the page goes back to CPU 0's pool through its ring);
 * it sleeps on the doorbell when the ring is empty.
 *
 * Messages: { cmd: "run", packets, bulk } → { type: "done", packets, ns, gcCount, ... };
 * { cmd: "stop" } → { type: "stopped", ... } and exit.
 *
 * @module
 */

import { GCProfiler } from "node:v8";
import { parentPort, workerData } from "node:worker_threads";
import { pageFragCacheDrain } from "../mm/page-frag.js";
import { ringSpace } from "../core/ring.js";
import { createSkbCpu } from "../skb/cpu.js";
import { napiConsumeSkb } from "../skb/free.js";
import { attachSkbMemory, type SkbMemoryDescription } from "../skb/memory.js";
import { napiSkbCacheDrain } from "../skb/napi-cache.js";
import { SKB_DATA } from "../skb/layout.js";
import { be16 } from "../skb/access.js";
import { type Cpumap, cpumapAttach, cpumapEnqueue, cpumapFlush, cpumapPoll, cpumapWait, CPU_MAP_BULK_SIZE } from "../drivers/cpumap.js";
import { hostFrameSkb, hostPoolCreate, hostPoolDestroy, templateCreate, templateFree } from "../drivers/host-common.js";
import { ipv4 } from "../net/proto.js";

/** Start parameters. */
export interface CpumapWorkerConfig {
  mem: SkbMemoryDescription;
  role: "producer" | "consumer";
  cpu: number;
  map: string;
}

const cfg = workerData as CpumapWorkerConfig;
const mem = attachSkbMemory(cfg.mem);
const cpu = createSkbCpu(mem, cfg.cpu);
const m: Cpumap = cpumapAttach(mem.arena, cfg.map);
let received = 0;
let bad = 0;

if (cfg.role === "consumer") {
  m.recv = (c, skb) => {
    // The frame must be the IPv4/UDP frame the producer wrote.
    if (be16(c.u8, (c.u32[(skb + SKB_DATA) >>> 2] as number) + 12) !== 0x0800) bad++;
    received++;
    napiConsumeSkb(c, skb, 64);
  };
}

const pool = cfg.role === "producer" ? hostPoolCreate(cpu) : null;
const tmpl =
  cfg.role === "producer"
    ? templateCreate(cpu, {
        srcMac: new Uint8Array([2, 0, 0, 0, 0, 1]),
        dstMac: new Uint8Array([2, 0, 0, 0, 0, 2]),
        vlan: 0,
        saddr: ipv4("10.10.0.2"),
        daddr: ipv4("198.51.100.10"),
        proto: 17,
        sport: 40000,
        dport: 5201,
        frameSize: 64,
      })
    : null;

function produce(n: number): { sent: number; notFrame: number } {
  let sent = 0;
  while (sent < n) {
    // Backpressure: never stage more than the ring can take.
    if (ringSpace(m.ring) < CPU_MAP_BULK_SIZE) continue;
    const batch = Math.min(CPU_MAP_BULK_SIZE, n - sent);
    for (let i = 0; i < batch; i++) {
      const skb = hostFrameSkb(cpu, pool as NonNullable<typeof pool>, tmpl as NonNullable<typeof tmpl>);
      if (skb === 0) throw new Error("cpumap producer: out of pages or heads");
      if (!cpumapEnqueue(cpu, m, skb)) throw new Error("cpumap producer: frame not redirectable");
    }
    cpumapFlush(cpu, m);
    sent += batch;
  }
  return { sent, notFrame: m.notFrame };
}

function consume(target: number): void {
  while (received < target) {
    if (cpumapPoll(cpu, m, 64) === 0) cpumapWait(m, 1);
  }
}

parentPort?.on("message", (msg: { cmd: "run"; packets: number; bulk: boolean } | { cmd: "stop" }) => {
  try {
    if (msg.cmd === "run") {
      m.bulk = msg.bulk;
      const prof = new GCProfiler();
      prof.start();
      const t0 = process.hrtime.bigint();
      const start = received;
      if (cfg.role === "producer") produce(msg.packets);
      else consume(start + msg.packets);
      const ns = Number(process.hrtime.bigint() - t0);
      parentPort?.postMessage({ type: "done", role: cfg.role, packets: msg.packets, ns, gcCount: prof.stop().statistics.length, bad, bulkCalls: m.bulkCalls, wakeups: m.wakeups });
    } else {
      if (tmpl !== null) templateFree(cpu, tmpl);
      napiSkbCacheDrain(cpu);
      pageFragCacheDrain(cpu.napiFrag);
      // The controller stops the consumer first, so every page is back in the pool (or its ring).
      if (pool !== null) hostPoolDestroy(cpu, pool);
      parentPort?.postMessage({ type: "stopped", role: cfg.role, received, bad, fullDrops: m.fullDrops, noHeadDrops: m.noHeadDrops });
      parentPort?.close();
    }
  } catch (e) {
    parentPort?.postMessage({ type: "error", message: (e as Error).stack ?? String(e) });
  }
});
parentPort?.postMessage({ type: "ready", role: cfg.role });
