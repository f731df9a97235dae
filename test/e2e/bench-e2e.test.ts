/**
 * Smoke test of `skb bench e2e --duration 1 --json` (the real bin/skb.js in
 * a child process): iperf3 through two `skb forward` routers (NAPI cache off
 * and on) and through the kernel's own NAT in a third namespace. Asserts the
 * JSON shape, that every skbuff row moved data and that both routers stopped
 * with a clean leak check.
 *
 * Needs root, /dev/net/tun, the native TAP addon, `ip`, `ss`, `iperf3` and
 * `nft` (nftables); skipped with the reason otherwise (the benchmark itself
 * would apt-get install nftables; the test does not). About 15-20 s.
 */

import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, test } from "node:test";
import { tapAddonStatus } from "../../src/native/tap-addon.js";

const BIN = fileURLToPath(new URL("../../../bin/skb.js", import.meta.url));

function has(cmd: string): boolean {
  try {
    return execFileSync("sh", ["-c", `command -v ${cmd}`], { encoding: "utf8" }).trim() !== "";
  } catch {
    return false;
  }
}

const skip: string | null = (() => {
  if (process.platform !== "linux") return `needs Linux (this is ${process.platform})`;
  if (typeof process.getuid !== "function" || process.getuid() !== 0) return "needs root (network namespaces, TAP devices)";
  if (!existsSync("/dev/net/tun")) return "/dev/net/tun is absent";
  const addon = tapAddonStatus();
  if (!addon.available) return `native TAP addon unavailable: ${addon.reason}`;
  for (const t of ["ip", "ss", "iperf3", "nft"]) if (!has(t)) return `\`${t}\` is not installed`;
  return null;
})();
if (skip !== null) console.log(`# bench e2e smoke test skipped: ${skip}`);

describe("skb bench e2e", { skip: skip ?? false }, () => {
  test("--duration 1 --json: every router/cache/test row, skbuff rows moved data, the cache A/B per test, no leaks", { timeout: 110_000 }, async () => {
    const res = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, [BIN, "bench", "e2e", "--duration", "1", "--json"], { encoding: "utf8", timeout: 100_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof (err as { code?: unknown }).code === "number" ? ((err as { code: number }).code as number) : 1;
        resolve({ code, stdout, stderr });
      });
    });
    assert.equal(res.code, 0, `exit ${res.code}: ${res.stderr}\n${res.stdout.slice(0, 3000)}`);
    // biome-ignore lint/suspicious/noExplicitAny: the benchmark's JSON, read field by field
    const j = JSON.parse(res.stdout) as Record<string, any>;
    assert.ok(Array.isArray(j.results));
    const tests = ["tcp1", "tcp4", "udp64", "udp1400"];
    const combos = [
      ["skbuff", "off"],
      ["skbuff", "on"],
      ["kernel", "-"],
    ];
    assert.equal(j.results.length, tests.length * combos.length);
    for (const t of tests) {
      for (const [router, cache] of combos) {
        // biome-ignore lint/suspicious/noExplicitAny: JSON row
        const row: any = j.results.find((x: { router: string; cache: string; test: string }) => x.router === router && x.cache === cache && x.test === t);
        assert.ok(row !== undefined, `missing row ${router}/${cache}/${t}`);
        for (const k of ["gbps", "cpuClient", "cpuServer", "bytes"]) assert.equal(typeof row[k], "number", `${router}/${cache}/${t}.${k}`);
        assert.ok(row.ratioToKernel === null || typeof row.ratioToKernel === "number");
        if (router === "kernel") assert.equal(row.ratioToKernelPerRound, null);
        else if (row.ratioToKernel !== null) {
          // One round: the per-round ratio is that round's, i.e. the same as the ratio of the means.
          assert.ok(Math.abs(row.ratioToKernelPerRound.median - row.ratioToKernel) < 1e-9, JSON.stringify(row));
        }
        if (t.startsWith("udp")) {
          assert.equal(typeof row.kpps, "number");
          assert.equal(typeof row.lossPercent, "number");
        } else {
          assert.equal(row.lossPercent, null);
        }
        if (router === "skbuff") {
          assert.ok(row.bytes > 0 && row.gbps > 0, `${router}/${cache}/${t} moved no data: ${JSON.stringify(row)}`);
          assert.equal(typeof row.cpuRouter, "number");
        }
      }
    }
    // The cache A/B, per test: on ÷ off of the means, and (one round) the same figure per round.
    assert.deepEqual(
      j.cacheOnOff.map((c: { test: string }) => c.test),
      tests,
    );
    for (const c of j.cacheOnOff) {
      const on = j.results.find((r: { router: string; cache: string; test: string }) => r.cache === "on" && r.test === c.test);
      const off = j.results.find((r: { router: string; cache: string; test: string }) => r.cache === "off" && r.test === c.test);
      assert.ok(Math.abs(c.ratio - on.gbps / off.gbps) < 1e-9, JSON.stringify(c));
      assert.ok(Math.abs(c.perRound.median - c.ratio) < 1e-9, JSON.stringify(c));
    }
    // The A/B inside one router, per test: both sides saw packets and CPU.
    assert.deepEqual(
      j.cacheAb.map((c: { test: string }) => c.test),
      tests,
    );
    for (const c of j.cacheAb) {
      const a = c.result;
      assert.ok(a !== null, `${c.test}: no A/B result`);
      assert.ok(a.on.packets > 0 && a.off.packets > 0 && a.on.cpuNs > 0 && a.off.cpuNs > 0, JSON.stringify(a));
      assert.ok(a.ratio > 0);
    }
    assert.equal(j.routers.length, 2 + tests.length);
    for (const r of j.routers) {
      assert.equal(r.exitCode, 0, JSON.stringify(r));
      assert.equal(r.ok, true, JSON.stringify(r));
      assert.ok(r.forwarded > 0);
    }
    console.log(`# ${j.results.map((r: { router: string; cache: string; test: string; gbps: number }) => `${r.router}/${r.cache}/${r.test} ${r.gbps.toFixed(3)}`).join(", ")}`);
  });
});
