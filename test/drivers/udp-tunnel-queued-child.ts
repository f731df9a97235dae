/**
 * Child process of the udp-tunnel tests, run with `node
 * --test-udp-no-try-send` so libuv queues every send (as it does when the
 * kernel socket buffer is full): transmit Buffers must stay held until
 * their send completes, a burst beyond `txSlots` is TX busy, and no frame
 * is corrupted by a Buffer reused too early. Prints one JSON line. Runs
 * only with SKBUFF_TUNNEL_CHILD=1.
 */

import { runNapiLoop } from "../../src/core/loop.js";
import { Softnet } from "../../src/core/napi.js";
import { devQueueXmit, NetNamespace, TX_DROPPED, TX_PACKETS } from "../../src/core/netdev.js";
import { udpTunnelAddress, udpTunnelClose, udpTunnelCreate, udpTunnelSetRemote, udpTunnelStats } from "../../src/drivers/udp-tunnel.js";
import { kmemCacheInfo } from "../../src/mm/slab.js";
import { createSkbCpu } from "../../src/skb/cpu.js";
import { napiConsumeSkb } from "../../src/skb/free.js";
import { createSkbMemory } from "../../src/skb/memory.js";
import { napiSkbCacheDrain } from "../../src/skb/napi-cache.js";
import { ethFrame, lcgBytes, readPacket, skbFromBytes } from "../net/net-helpers.js";

async function main(): Promise<void> {
  const mem = createSkbMemory({ arenaSize: 16 << 20 });
  const cpu = createSkbCpu(mem, 0);
  const ns = new NetNamespace();
  const sd = new Softnet(cpu, ns);
  const got: number[][] = [];
  const base = { mode: "raw" as const, localPort: 0, remoteAddress: "127.0.0.1", remotePort: 9 };
  const a = await udpTunnelCreate(ns, sd, { ...base, name: "a", txSlots: 2, recv: (c, _n, skb) => napiConsumeSkb(c, skb, 64) });
  const b = await udpTunnelCreate(ns, sd, {
    ...base,
    name: "b",
    recv: (c, _n, skb) => {
      got.push(readPacket(c, skb));
      napiConsumeSkb(c, skb, 64);
    },
  });
  udpTunnelSetRemote(a, "127.0.0.1", udpTunnelAddress(b).port);
  const frames = Array.from({ length: 7 }, (_, i) => ethFrame([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1], 0x88b5, lcgBytes(100 + i * 50, i)));
  // Burst 1: five frames in one synchronous run; only two Buffers exist and both stay held.
  for (let i = 0; i < 5; i++) devQueueXmit(cpu, a, skbFromBytes(cpu, frames[i] as number[]));
  const afterBurst = udpTunnelStats(a);
  await runNapiLoop(sd, { until: () => got.length >= 2 && udpTunnelStats(a).txInFlight === 0, timeoutMs: 3000 });
  // Burst 2: the Buffers are free again.
  devQueueXmit(cpu, a, skbFromBytes(cpu, frames[5] as number[]));
  devQueueXmit(cpu, a, skbFromBytes(cpu, frames[6] as number[]));
  await runNapiLoop(sd, { until: () => got.length >= 4, timeoutMs: 3000 });
  const final = udpTunnelStats(a);
  await udpTunnelClose(a);
  await udpTunnelClose(b);
  napiSkbCacheDrain(cpu);
  const expect = [frames[0], frames[1], frames[5], frames[6]];
  console.log(
    JSON.stringify({
      txBusyAfterBurst: afterBurst.txBusy,
      txQueuedAfterBurst: afterBurst.txQueued,
      inFlightAfterBurst: afterBurst.txInFlight,
      txPackets: a.stats[TX_PACKETS],
      txDropped: a.stats[TX_DROPPED],
      txQueued: final.txQueued,
      txSocketErrors: final.txSocketErrors,
      intact: JSON.stringify(got) === JSON.stringify(expect),
      received: got.length,
      headsInUse: kmemCacheInfo(mem.headCache).activeObjs,
      pagesInUse: kmemCacheInfo(mem.pages.cache).activeObjs,
    }),
  );
}

// Only as the tests' child process (the test runner also loads every file under test/).
if (process.env.SKBUFF_TUNNEL_CHILD === "1") await main();
