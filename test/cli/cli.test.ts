/**
 * Every CLI command, once, on small inputs, through the real `bin/skb.js`
 * launcher in a child process: the main job must never break silently.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, it } from "node:test";

const BIN = fileURLToPath(new URL("../../../bin/skb.js", import.meta.url));

function skb(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    encoding: "utf8",
    env: { ...process.env, ...env },
    timeout: 120_000,
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe("skb CLI", () => {
  it("--help and help print usage with every command", () => {
    for (const args of [["--help"], ["help"], []]) {
      const r = skb(args);
      assert.equal(r.code, 0, r.err);
      for (const word of ["skb bench", "skb slabinfo", "skb info", "--napi-cache", "--profile"]) {
        assert.ok(r.out.includes(word), `help lacks ${word}`);
      }
    }
  });

  it("--version prints the package version", () => {
    const r = skb(["--version"]);
    assert.equal(r.code, 0);
    assert.match(r.out, /^skb \d+\.\d+\.\d+ \(node v\d+/);
  });

  it("info prints layouts and both profiles; --json parses", () => {
    const t = skb(["info"]);
    assert.equal(t.code, 0, t.err);
    assert.match(t.out, /NAPI_SKB_CACHE_SIZE 64, BULK 16, flush 32 \(keep 32\)/);
    assert.match(t.out, /NAPI_SKB_CACHE_SIZE 128, BULK 32, flush 32 \(keep 96\)/);
    const j = skb(["info", "--json"]);
    assert.equal(j.code, 0);
    const info = JSON.parse(j.out);
    assert.equal(info.skb.sharedInfoBytes, 320);
    assert.equal(info.profiles["6.19"].cacheSize, 128);
  });

  it("slabinfo pushes packets through the cache and reports no leak", () => {
    const r = skb(["slabinfo", "--packets", "5000", "--arena-size", "16M", "--json"]);
    assert.equal(r.code, 0, r.err);
    const j = JSON.parse(r.out);
    assert.equal(j.packets, 5000);
    assert.equal(j.failed, 0);
    assert.equal(j.headsInUseAfterDrain, 0);
    assert.equal(j.napiCache.gets, 5000);
    assert.equal(j.napiCache.puts, 5000);
    // 5.12: refills of 16 only when empty, flushes of 32 only when full.
    assert.equal(j.napiCache.refillObjs, j.napiCache.refills * 16);
    assert.equal(j.napiCache.flushedObjs, j.napiCache.flushes * 32);
    const text = skb(["slabinfo", "--packets", "100", "--profile", "6.19"]);
    assert.equal(text.code, 0, text.err);
    assert.match(text.out, /skbuff_head_cache\s+192/);
  });

  it("slabinfo with the cache off goes to the slab for every head", () => {
    const r = skb(["slabinfo", "--packets", "1000", "--napi-cache", "off", "--json"]);
    assert.equal(r.code, 0, r.err);
    const j = JSON.parse(r.out);
    assert.equal(j.napiCache.refills, 0);
    const head = j.slabs.find((s: { name: string }) => s.name === "skbuff_head_cache");
    assert.equal(head.allocs, 1000);
    assert.equal(head.frees, 1000);
  });

  it("bench alloc runs every case and pattern; --json has the documented shape", () => {
    const r = skb(["bench", "alloc", "--ops", "6400", "--rounds", "1", "--json"]);
    assert.equal(r.code, 0, r.err);
    const j = JSON.parse(r.out);
    assert.equal(j.results.length, 10);
    for (const row of j.results) {
      assert.ok(["slab", "slab-bulk", "napi-cache", "js-object", "buffer"].includes(row.case));
      assert.ok(["pair", "burst64"].includes(row.pattern));
      assert.equal(typeof row.nsPerOp, "number");
      assert.ok(row.nsPerOp > 0);
      assert.equal(typeof row.gcCount, "number");
    }
    const napi = j.results.find((x: { case: string; pattern: string }) => x.case === "napi-cache" && x.pattern === "pair");
    assert.equal(napi.slabCallsPerOp, 0);
    const slab = j.results.find((x: { case: string; pattern: string }) => x.case === "slab" && x.pattern === "pair");
    assert.equal(slab.slabCallsPerOp, 2);
    assert.ok(j.ratios.length >= 3);
    for (const q of j.ratios) {
      // Ratio of the medians, and the per-round ratios around it.
      assert.ok(q.value > 0 && q.paired.min <= q.paired.median && q.paired.median <= q.paired.max, JSON.stringify(q));
    }
  });

  it("bench alloc --cases prints only the chosen cases", () => {
    const r = skb(["bench", "alloc", "--ops", "640", "--rounds", "1", "--cases", "napi-cache,slab"]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /skb bench alloc — profile 5\.12/);
    assert.match(r.out, /napi-cache\s+pair/);
    assert.doesNotMatch(r.out, /js-object/);
  });

  it("bench (default: router) runs TCP and UDP cache off/on with a baseline; --json and --svg", () => {
    const svg = join(mkdtempSync(join(tmpdir(), "skb-cli-")), "bench.svg");
    const r = skb(["bench", "--cases", "udp64,tcp64", "--duration", "0.05", "--rounds", "1", "--json", "--svg", svg]);
    assert.equal(r.code, 0, r.err);
    const j = JSON.parse(r.out);
    assert.equal(j.bench, "router");
    assert.equal(j.results.length, 4);
    for (const row of j.results) {
      assert.ok(["udp", "tcp"].includes(row.proto));
      assert.equal(row.size, 64);
      assert.ok(["on", "off"].includes(row.cache));
      assert.ok(row.mpps > 0);
      assert.equal(typeof row.gcCount, "number");
    }
    const on = j.results.find((x: { proto: string; cache: string }) => x.proto === "udp" && x.cache === "on");
    const off = j.results.find((x: { proto: string; cache: string }) => x.proto === "udp" && x.cache === "off");
    assert.ok(on.cacheHits > 0, "cache on serves heads from the cache");
    assert.equal(off.cacheHits, 0, "cache off never hits");
    assert.ok(off.slabCallsPerPacket > on.slabCallsPerPacket);
    assert.equal(j.baseline.length, 2);
    assert.ok(j.baseline[0].mpps > 0);
    assert.deepEqual(j.accounting.ok, true);
    const chart = readFileSync(svg, "utf8");
    assert.match(chart, /^<svg /);
    assert.match(chart, /NAPI cache on/);
  });

  it("bench --workers runs the router on worker threads; --json has the documented shape", () => {
    const r = skb(["bench", "--workers", "1,2", "--duration", "0.05", "--rounds", "1", "--json"]);
    assert.equal(r.code, 0, r.err);
    const j = JSON.parse(r.out);
    assert.equal(j.bench, "workers");
    assert.deepEqual(
      j.results.map((x: { workers: number; cache: string }) => `${x.workers}/${x.cache}`),
      ["1/off", "1/on", "2/off", "2/on"],
    );
    for (const row of j.results) {
      assert.ok(row.mpps > 0);
      assert.equal(row.perWorkerMpps.length, row.workers);
    }
    assert.equal(j.accounting.ok, true);
  });

  it("bench cpumap redirects frames between two worker CPUs", () => {
    // 5 rounds: each measurement waits on both workers; listeners must not pile up (no MaxListenersExceededWarning).
    const r = skb(["bench", "cpumap", "--packets", "2000", "--rounds", "5", "--json"]);
    assert.equal(r.code, 0, r.err);
    assert.doesNotMatch(r.err, /Warning/, r.err);
    const j = JSON.parse(r.out);
    assert.equal(j.bench, "cpumap");
    assert.deepEqual(j.results.map((x: { bulkHeads: string }) => x.bulkHeads), ["off", "on"]);
    const on = j.results[1];
    assert.ok(on.minRatio <= on.ratio && on.ratio <= on.maxRatio && on.ratioOfMedians > 0, JSON.stringify(on));
    assert.equal(j.accounting.ok, true);
    assert.ok(j.cpuRoundTripNs.length === 2 && j.cpuRoundTripNs.every((ns: number) => ns > 0), "cross-CPU round trip before and after");
  });

  it("bench defer compares remote frees deferred vs freed in place", () => {
    const r = skb(["bench", "defer", "--packets", "20000", "--rounds", "1", "--json"]);
    assert.equal(r.code, 0, r.err);
    const j = JSON.parse(r.out);
    assert.ok(Array.isArray(j.results) && j.results.length > 0);
    assert.ok(j.cpuRoundTripNs.length === 2 && j.cpuRoundTripNs.every((ns: number) => ns > 0), "cross-CPU round trip before and after");
    const text = skb(["bench", "defer", "--packets", "2048", "--rounds", "1"]);
    assert.match(text.out, /cross-CPU cache-line round trip .* before \/ after: \d+ \/ \d+ ns/);
  });

  it("bad flags and commands exit 2 with a clear message", () => {
    const cases: [string[], RegExp][] = [
      [["frobnicate"], /unknown command 'frobnicate'/],
      [["bench", "nat"], /unknown benchmark 'nat'/],
      [["bench", "cpumap", "--packets", "10"], /--packets: must be at least 64/],
      [["bench", "--duration", "fast"], /--duration: 'fast' is not a number of seconds/],
      [["bench", "--cases", "udp65"], /unknown case 'udp65'/],
      [["bench", "alloc", "--svg", "x.svg"], /--duration and --svg belong to the router benchmark/],
      [["bench", "alloc", "--ops", "ten"], /--ops: 'ten' is not a whole number/],
      [["bench", "alloc", "--ops", "10"], /--ops: must be at least 64/],
      [["bench", "alloc", "--cases", "slab,nope"], /unknown case 'nope'/],
      [["bench", "--ops", "100"], /--ops belongs to bench alloc/],
      [["bench", "--profile", "4.19"], /unknown profile '4\.19'/],
      [["slabinfo", "--napi-cache", "maybe"], /--napi-cache: expected on or off/],
      [["slabinfo", "--arena-size", "lots"], /--arena-size: 'lots' is not a size/],
      [["slabinfo", "--arena-size", "2G"], /out of range/],
      [["slabinfo", "--arena-size", "64K"], /does not fit/],
      [["info", "--no-such-flag"], /Unknown option '--no-such-flag'/],
      [["bench", "--workers", "0"], /--workers: '0' is not a worker count/],
      [["bench", "--workers", "2", "--cases", "udp64,tcp64"], /--workers takes one case/],
    ];
    for (const [args, re] of cases) {
      const r = skb(args);
      assert.equal(r.code, 2, `${args.join(" ")}: exit ${r.code}, stderr ${r.err}`);
      assert.match(r.err, re, args.join(" "));
    }
  });
});
