/**
 * The NAPI cache A/B inside one router (src/router/cache-ab.ts): the switch
 * flips every slice, cache on first; slices are charged the packets the
 * devices received and the thread's CPU; (on, off) pairs with enough
 * packets give ratios; stopping restores the switch. Needs the native addon
 * (the thread CPU clock); skipped with the reason without it.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { NetNamespace, RX_PACKETS } from "../../src/core/netdev.js";
import { tapAddonStatus } from "../../src/native/tap-addon.js";
import { CACHE_AB_MIN_PACKETS, cacheAbStart, cacheAbStop, formatCacheAb, logStats } from "../../src/router/cache-ab.js";
import { napiCacheIsEnabled, napiCacheSetEnabled } from "../../src/skb/napi-cache.js";

const skip = tapAddonStatus().available ? false : "the native addon (thread CPU clock) is unavailable";
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe("cache A/B inside one router", () => {
  test("slices alternate on, off, ...; every packet lands in one; busy pairs give ratios; the switch is restored", { skip }, async () => {
    const ns = new NetNamespace();
    const dev = ns.register({ name: "d0", kind: "test" });
    napiCacheSetEnabled(false);
    const ab = cacheAbStart(ns, 20);
    assert.equal(napiCacheIsEnabled(), true, "cache on first");
    const seen: boolean[] = [];
    let total = 0;
    for (let i = 0; i < 12; i++) {
      // Work while the slice runs: packets arrive and the thread spends CPU.
      const n = CACHE_AB_MIN_PACKETS + 50 * i;
      (dev.stats as Float64Array)[RX_PACKETS] = (dev.stats[RX_PACKETS] as number) + n;
      total += n;
      const t0 = Date.now();
      while (Date.now() - t0 < 5) Math.sqrt(t0);
      seen.push(napiCacheIsEnabled());
      await sleep(20);
    }
    const r = cacheAbStop(ab, ns);
    assert.equal(napiCacheIsEnabled(), false, "the switch is back where it was");
    assert.ok(seen.includes(true) && seen.includes(false), `the switch flipped: ${seen.join(",")}`);
    assert.equal(r.sliceMs, 20);
    assert.equal(r.on.packets + r.off.packets, total);
    assert.ok(Math.abs(r.on.slices - r.off.slices) <= 1);
    assert.ok(r.on.cpuNs > 0 && r.off.cpuNs > 0);
    assert.ok(r.on.nsPerPacket !== null && r.off.nsPerPacket !== null);
    assert.ok(Math.abs((r.ratio as number) - (r.off.nsPerPacket as number) / (r.on.nsPerPacket as number)) < 1e-12);
    assert.ok(r.pairs !== null && r.pairs.n >= 1, JSON.stringify(r));
    assert.match(formatCacheAb(r), /^cache A\/B {3}router-thread CPU per packet, the cache switched every 20 ms: on \d+ ns/);
    napiCacheSetEnabled(true);
  });

  test("idle slices (fewer than CACHE_AB_MIN_PACKETS) are counted but not paired", { skip }, async () => {
    const ns = new NetNamespace();
    ns.register({ name: "d0", kind: "test" });
    const ab = cacheAbStart(ns, 10);
    await sleep(60);
    const r = cacheAbStop(ab, ns);
    assert.equal(r.on.packets + r.off.packets, 0);
    assert.ok(r.on.slices + r.off.slices >= 2);
    assert.equal(r.on.nsPerPacket, null);
    assert.equal(r.ratio, null);
    assert.equal(r.pairs, null);
    assert.equal(napiCacheIsEnabled(), true);
  });

  test("bad slice lengths are RangeErrors", { skip }, () => {
    const ns = new NetNamespace();
    assert.throws(() => cacheAbStart(ns, 5), /cache A\/B: slice 5 ms out of range 10\.\.10000/);
    assert.throws(() => cacheAbStart(ns, 10.5), RangeError);
  });

  test("logStats: geometric mean and a 95 % interval that holds it; none for one ratio", () => {
    const s = logStats([1.1, 0.9, 1.05, 1.0, 0.98]);
    assert.ok(Math.abs(s.geoMean - Math.exp((Math.log(1.1) + Math.log(0.9) + Math.log(1.05) + Math.log(0.98)) / 5)) < 1e-12);
    const ci = s.ci95 as [number, number];
    assert.ok(ci[0] < s.geoMean && s.geoMean < ci[1]);
    assert.deepEqual(logStats([1.2]), { geoMean: 1.2, ci95: null });
    // Running sums: a long run (here 200 000 pairs, ~33 minutes of 10 ms slices) needs no list of them.
    const long = logStats(new Array<number>(200_000).fill(1.01));
    assert.ok(Math.abs(long.geoMean - 1.01) < 1e-9);
    assert.ok(long.ci95 !== null && Math.abs(long.ci95[0] - 1.01) < 1e-9 && Math.abs(long.ci95[1] - 1.01) < 1e-9);
  });
});
