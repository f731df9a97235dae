/**
 * One CPU of `skb forward --workers N` (start it from the compiled file,
 * dist/src/smp/forward-worker.js; src/smp/forward-cluster.ts does). It maps
 * the shared arena and builds a whole router of its own over it: its NAPI
 * cache and page-frag caches, its own queue of every TAP (IFF_MULTI_QUEUE),
 * its conntrack partition, its slices of the NAT ports and ICMP ids, its
 * neighbour table. The controller's messages:
 *
 * ```
 *  controller -> worker  { cmd: "stats" }     live counters
 *                        { cmd: "quiesce" }   stop handing packets over (shutdown, phase 1)
 *                        { cmd: "stop" }      drain, close, report (phase 2), exit
 *  worker -> controller  ready | stats | quiet | report | error
 * ```
 *
 * Hand-over: a packet another CPU owns (src/smp/forward-steer.ts) is pushed
 * on the single-producer/single-consumer ring from this CPU to the owner
 * (src/core/ring.ts; one ring per ordered pair, so every ring keeps one
 * producer and one consumer) and the owner's doorbell is rung: an int32 in
 * the arena, set 0 → 1 with compareExchange and then Atomics.notify. The
 * owner sleeps in the event loop, not in Atomics.wait (its TAP queues need
 * libuv): an Atomics.waitAsync on its doorbell schedules its hand-over NAPI
 * instance, which drains the rings with the normal receive handler. The
 * consumer clears the doorbell BEFORE it looks at the rings a last time, so
 * a push that races with it either is seen or sets the doorbell again.
 * A full ring drops the packet as CPU_BACKLOG (enqueue_to_backlog's reason).
 * ARP replies are copied to every other CPU (each has its own neighbour
 * table and may be waiting for the answer).
 *
 * @module
 */

import { parentPort, workerData } from "node:worker_threads";
import { devDropSkb, type NetDevice } from "../core/netdev.js";
import { type NapiStruct, napiCompleteDone, napiSchedule, netifNapiAdd } from "../core/napi.js";
import { raiseNetRxSoftirq } from "../core/loop.js";
import { ringAttach, ringCount, ringPopBulk, ringPush, type SkbRing } from "../core/ring.js";
import { type Forwarder, forwarderCreate, forwardRx, forwarderRun, forwarderStats } from "../router/forward.js";
import { ARPOP_REPLY } from "../net/arp.js";
import { ETH_P_ARP } from "../net/proto.js";
import { be16 } from "../skb/access.js";
import { skbCopy } from "../skb/clone.js";
import type { SkbCpu } from "../skb/cpu.js";
import { SKB_DROP_REASON } from "../skb/drop-reason.js";
import { SKB_DATA, SKB_DEV, SKB_PROTOCOL } from "../skb/layout.js";
import { skbDeferInstall, skbDeferKickIndex, skbDeferStats, skbDeferUninstall } from "../skb/defer.js";
import { attachSkbMemory } from "../skb/memory.js";
import { napiSkbCacheDrain } from "../skb/napi-cache.js";
import { SteerLayout, steerOwner } from "./forward-steer.js";
import { FWD_HANDOFF_STAT_NAMES, type ForwardWorkerConfig, type ForwardWorkerMessage, type ForwardWorkerReply, fwdRingName } from "./forward-protocol.js";

const cfg = workerData as ForwardWorkerConfig;
const port = parentPort;

function send(m: ForwardWorkerReply): void {
  port?.postMessage(m);
}

/** Atomics.waitAsync (Node 16+; typed only from lib es2024, newer than this project's target). */
const waitAsync = (Atomics as unknown as { waitAsync(a: Int32Array, i: number, v: number): { async: boolean; value: Promise<string> | string } }).waitAsync;

// Hand-over counters (FWD_HANDOFF_STAT_NAMES order).
const H_OUT = 0;
const H_IN = 1;
const H_DROP = 2;
const H_ARP_COPIES = 3;
const H_ARP_COPY_FAIL = 4;

async function main(): Promise<void> {
  const mem = attachSkbMemory(cfg.mem);
  const id = cfg.id;
  const n = cfg.workers;
  const f: Forwarder = await forwarderCreate(cfg.config, {
    mem,
    cpuId: id,
    conntrackName: cfg.conntrackName,
    natPorts: cfg.natPorts,
    natIcmpIds: cfg.natIcmpIds,
    tapMultiQueue: true,
    // 6.19: an skb freed on a CPU other than the one that allocated it (a
    // handed-over packet sent by its owner) goes back to its allocator's
    // defer list (skbAttemptDeferFree) and is freed there in bulk.
    profile: "6.19",
  });
  skbDeferInstall(f.cpu);
  const outside = f.router.outside;
  const layout = new SteerLayout(n, outside !== null ? outside.ifindex : -1, outside !== null ? outside.ipAddr : 0);
  const arena = mem.arena;
  const i32 = arena.i32;
  const bells = arena.region(cfg.bellRegion).offset >>> 2;
  const bellOf = (w: number): number => bells + w * 16;
  const out: (SkbRing | null)[] = [];
  const inc: SkbRing[] = [];
  for (let w = 0; w < n; w++) {
    out.push(w === id ? null : ringAttach(arena, fwdRingName(id, w)));
    if (w !== id) inc.push(ringAttach(arena, fwdRingName(w, id)));
  }
  const hstats = new Float64Array(FWD_HANDOFF_STAT_NAMES.length);
  let inHandoff = false;
  let steerOff = false;
  let stopped = false;

  const ring = (w: number): void => {
    const b = bellOf(w);
    if (Atomics.compareExchange(i32, b, 0, 1) === 0) Atomics.notify(i32, b);
  };
  const handOver = (cpu: SkbCpu, dev: NetDevice, skb: number, w: number): void => {
    if (ringPush(out[w] as SkbRing, skb)) {
      hstats[H_OUT]++;
      ring(w);
    } else {
      hstats[H_DROP]++;
      devDropSkb(cpu, dev, skb, SKB_DROP_REASON.CPU_BACKLOG, false);
    }
  };
  f.rxSteer = (cpu, dev, skb) => {
    if (inHandoff || steerOff) return false;
    const w = steerOwner(layout, cpu, skb);
    if (w >= 0 && w !== id) {
      handOver(cpu, dev, skb, w);
      return true;
    }
    if (w < 0 && (cpu.u16[(skb + SKB_PROTOCOL) >>> 1] as number) === ETH_P_ARP) {
      if (be16(cpu.u8, (cpu.u32[(skb + SKB_DATA) >>> 2] as number) + 6) === ARPOP_REPLY) {
        for (let o = 0; o < n; o++) {
          if (o === id) continue;
          const c = skbCopy(cpu, skb);
          if (c === 0) {
            hstats[H_ARP_COPY_FAIL]++;
            continue;
          }
          hstats[H_ARP_COPIES]++;
          handOver(cpu, dev, c, o);
        }
      }
    }
    return false;
  };

  // The hand-over NAPI instance: drains the incoming rings through the receive handler.
  const buf = new Uint32Array(64);
  let next = 0;
  const anyQueued = (): boolean => {
    for (const r of inc) if (ringCount(r) > 0) return true;
    return false;
  };
  const drain = (cpu: SkbCpu, budget: number): number => {
    let done = 0;
    inHandoff = true;
    try {
      // Round robin over the rings until the budget is used or a whole round gave nothing.
      for (let empty = 0; empty < inc.length && done < budget; ) {
        const r = inc[next] as SkbRing;
        next = (next + 1) % inc.length;
        const k = ringPopBulk(r, buf, 0, Math.min(buf.length, budget - done));
        for (let i = 0; i < k; i++) {
          const skb = buf[i] as number;
          const dev = f.ns.devices[cpu.u32[(skb + SKB_DEV) >>> 2] as number] as NetDevice;
          hstats[H_IN]++;
          forwardRx(f, cpu, dev, skb);
        }
        done += k;
        empty = k === 0 ? empty + 1 : 0;
      }
    } finally {
      inHandoff = false;
    }
    return done;
  };
  let armed = false;
  let napi: NapiStruct;
  const arm = (): void => {
    if (armed || stopped) return;
    armed = true;
    const r = waitAsync(i32, bellOf(id), 0);
    const fire = (): void => {
      armed = false;
      if (stopped) return;
      napiSchedule(napi);
      raiseNetRxSoftirq(f.sd);
    };
    if (!r.async) fire();
    else void (r.value as Promise<string>).then(fire);
  };
  const poll = (cpu: SkbCpu, nn: NapiStruct, budget: number): number => {
    let done = 0;
    for (;;) {
      done += drain(cpu, budget - done);
      if (done >= budget) return budget;
      Atomics.store(i32, bellOf(id), 0);
      if (!anyQueued()) break;
    }
    napiCompleteDone(nn, done);
    arm();
    return done;
  };
  napi = netifNapiAdd(f.sd, (f.phys[0] as { dev: NetDevice }).dev, poll, 64);
  arm();
  // A kick (the defer list reached skb_defer_max / 2) runs net_rx_action,
  // which drains the list at the top of every iteration.
  const kickIdx = skbDeferKickIndex(f.cpu);
  const armKick = (): void => {
    if (stopped) return;
    const r = waitAsync(i32, kickIdx, Atomics.load(i32, kickIdx));
    const fire = (): void => {
      if (stopped) return;
      napiSchedule(napi);
      raiseNetRxSoftirq(f.sd);
      armKick();
    };
    if (!r.async) fire();
    else void (r.value as Promise<string>).then(fire);
  };
  armKick();

  const ac = new AbortController();
  const handoffStats = (): Record<string, number> => {
    const o: Record<string, number> = {};
    FWD_HANDOFF_STAT_NAMES.forEach((k, i) => {
      o[k] = hstats[i] as number;
    });
    return o;
  };
  port?.on("message", (m: ForwardWorkerMessage) => {
    try {
      if (m.cmd === "stats") send({ type: "stats", id, stats: forwarderStats(f), handoff: handoffStats() });
      else if (m.cmd === "quiesce") {
        steerOff = true;
        send({ type: "quiet", id });
      } else if (m.cmd === "stop") {
        // Whatever other CPUs handed over before they went quiet is processed by the final drain.
        napiSchedule(napi);
        ac.abort();
      }
    } catch (e) {
      send({ type: "error", id, message: (e as Error).stack ?? String(e) });
    }
  });
  send({ type: "ready", id, devices: f.ns.list().map((d) => `${d.name}:${d.kind}`) });
  const report = await forwarderRun(f, { signal: ac.signal, sharedMemory: true });
  stopped = true;
  Atomics.store(i32, bellOf(id), 1);
  Atomics.notify(i32, bellOf(id));
  Atomics.add(i32, kickIdx, 1);
  Atomics.notify(i32, kickIdx);
  // Offline for deferral; what other CPUs deferred to us until now is freed
  // here (the controller flushes once more after every CPU has exited).
  skbDeferUninstall(f.cpu);
  napiSkbCacheDrain(f.cpu);
  let leftover = 0;
  for (const r of inc) leftover += ringCount(r);
  const d = skbDeferStats(f.cpu);
  const handoff = handoffStats();
  handoff.deferPushed = d.deferred;
  handoff.deferDrained = d.drained;
  handoff.deferFreedFull = d.freedFull;
  handoff.deferKicks = d.kicks;
  send({ type: "report", id, report, handoff, leftover });
  port?.close();
}

main().catch((e) => {
  send({ type: "error", id: cfg.id, message: (e as Error).stack ?? String(e) });
  port?.close();
});
