/**
 * cpumap: frames redirected from one CPU to another keep their bytes, get
 * heads built on the target CPU (in batches of 8 with bulk heads on), and
 * every page and head comes home — single-thread with two CPU contexts, and
 * across two worker threads.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { mmSlabInfo } from "../../src/mm/mm.js";
import { kmemCacheAllocBulk, kmemCacheFreeBulk, kmemCacheInfo } from "../../src/mm/slab.js";
import { SKB_DROP_REASON } from "../../src/skb/drop-reason.js";
import { pageFragCacheDrain } from "../../src/mm/page-frag.js";
import { skbToBytes } from "../../src/skb/view.js";
import { createSkbCpu, NAPI_STAT_BULK_GETS } from "../../src/skb/cpu.js";
import { napiConsumeSkb } from "../../src/skb/free.js";
import { createSkbMemory } from "../../src/skb/memory.js";
import { napiSkbCacheDrain } from "../../src/skb/napi-cache.js";
import { allocSkb } from "../../src/skb/alloc.js";
import {
  CPUMAP_BATCH,
  cpumapAttach,
  cpumapCreate,
  cpumapEnqueue,
  cpumapFlush,
  cpumapPoll,
  cpumapRegionSpecs,
} from "../../src/drivers/cpumap.js";
import { hostFrameSkb, hostPoolCreate, hostPoolDestroy, templateCreate, templateFree } from "../../src/drivers/host-common.js";
import { ipv4 } from "../../src/net/proto.js";
import { runCpumapBench } from "../../src/bench/cpumap.js";

/** Two CPUs in one thread joined by cpumap "a", a page pool and a UDP frame template on CPU 0; `done` checks nothing leaked. */
function bed(bulk: boolean, vlan: number) {
  const mem = createSkbMemory({ arenaSize: 16 << 20, maxCpus: 2, extraRegions: cpumapRegionSpecs("a", 64) });
  const a = createSkbCpu(mem, 0);
  const b = createSkbCpu(mem, 1);
  const prod = cpumapCreate(mem.arena, "a");
  const cons = cpumapAttach(mem.arena, "a");
  cons.bulk = bulk;
  const pool = hostPoolCreate(a);
  const t = templateCreate(a, {
    srcMac: new Uint8Array([2, 0, 0, 0, 0, 1]),
    dstMac: new Uint8Array([2, 0, 0, 0, 0, 2]),
    vlan,
    saddr: ipv4("10.10.0.2"),
    daddr: ipv4("198.51.100.10"),
    proto: 17,
    sport: 1,
    dport: 2,
    frameSize: 128,
  });
  const done = (): void => {
    templateFree(a, t);
    hostPoolDestroy(a, pool);
    for (const c of [a, b]) {
      napiSkbCacheDrain(c);
      pageFragCacheDrain(c.napiFrag);
    }
    assert.deepEqual(
      mmSlabInfo(mem.mm).filter((i) => i.activeObjs !== 0).map((i) => `${i.name}:${i.activeObjs}`),
      [],
    );
  };
  return { mem, a, b, prod, cons, pool, t, done };
}

describe("cpumap", () => {
  for (const bulk of [true, false]) {
    test(`two CPUs in one thread, bulk heads ${bulk ? "on" : "off"}: bytes intact, heads built on the target, nothing leaks`, () => {
      const { mem, a, b, prod, cons, pool, t, done } = bed(bulk, 10);
      const seen: Uint8Array[] = [];
      cons.recv = (cpu, skb) => {
        seen.push(skbToBytes(cpu, skb));
        napiConsumeSkb(cpu, skb, 64);
      };
      const want = [...a.u8.subarray(t.addr, t.addr + t.len)];
      for (let i = 0; i < 20; i++) assert.equal(cpumapEnqueue(a, prod, hostFrameSkb(a, pool, t)), true);
      cpumapFlush(a, prod);
      // Not a frame: a kmalloc head is refused and stays the caller's.
      const k = allocSkb(a, 100);
      assert.equal(cpumapEnqueue(a, prod, k), false);
      assert.equal(prod.notFrame, 1);
      napiConsumeSkb(a, k, 64);
      const bulk0 = b.stats[NAPI_STAT_BULK_GETS] as number;
      const slabBulk0 = kmemCacheInfo(mem.headCache).allocBulkCalls;
      assert.equal(cpumapPoll(b, cons, 64), 20);
      assert.equal(seen.length, 20);
      for (const f of seen) assert.deepEqual([...f], want);
      // One bulk call per batch of 8 either way: from the NAPI cache (6.15+) or from the head slab (≤ 6.14).
      assert.equal(cons.bulkCalls, Math.ceil(20 / CPUMAP_BATCH));
      assert.equal((b.stats[NAPI_STAT_BULK_GETS] as number) - bulk0, bulk ? 20 : 0);
      if (!bulk) assert.equal(kmemCacheInfo(mem.headCache).allocBulkCalls - slabBulk0, Math.ceil(20 / CPUMAP_BATCH), "kmem_cache_alloc_bulk per batch");
      done();
    });
  }

  test("bulk heads off (≤ 6.14): a head slab that cannot give the whole batch drops the whole batch (NOMEM), pages back, nothing leaks", () => {
    const { mem, a, b, prod, cons, pool, t, done } = bed(false, 0);
    let delivered = 0;
    cons.recv = (cpu, skb) => {
      delivered++;
      napiConsumeSkb(cpu, skb, 64);
    };
    for (let i = 0; i < CPUMAP_BATCH; i++) assert.equal(cpumapEnqueue(a, prod, hostFrameSkb(a, pool, t)), true);
    cpumapFlush(a, prod);
    // Leave the head slab CPUMAP_BATCH - 1 objects: one short of a batch.
    napiSkbCacheDrain(a);
    const free = kmemCacheInfo(mem.headCache).numObjs - kmemCacheInfo(mem.headCache).activeObjs;
    const hold = new Uint32Array(free);
    assert.equal(kmemCacheAllocBulk(mem.headCache, free - (CPUMAP_BATCH - 1), hold, 0), free - (CPUMAP_BATCH - 1));
    const nomem0 = b.drops[SKB_DROP_REASON.NOMEM] as number;
    assert.equal(cpumapPoll(b, cons, 64), CPUMAP_BATCH, "taken off the ring");
    assert.equal(delivered, 0, "none built: all or nothing");
    assert.equal(cons.noHeadDrops, CPUMAP_BATCH);
    assert.equal((b.drops[SKB_DROP_REASON.NOMEM] as number) - nomem0, CPUMAP_BATCH);
    kmemCacheFreeBulk(mem.headCache, free - (CPUMAP_BATCH - 1), hold, 0);
    done();
  });

  test("two worker threads: every frame crosses intact, 0 objects in use afterwards", async () => {
    const r = await runCpumapBench({ packets: 20_000, rounds: 1 });
    assert.deepEqual(r.accounting.problems, []);
    assert.equal(r.accounting.ok, true);
    assert.equal(r.received, 20_000 * 2 + 2 * 20_000);
    assert.deepEqual(r.results.map((x) => x.bulkHeads), ["off", "on"]);
  });
});
