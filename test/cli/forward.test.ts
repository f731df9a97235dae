/**
 * `skb forward` through the real bin/skb.js in a child process: an invalid
 * configuration (exit 2, the field named), a pcap-in -> router -> pcap-out
 * run with --until-idle (NATed output, no leaks, every packet accounted
 * for, exit 0), stop by SIGINT and by SIGTERM (final report, no leaks,
 * accounting ok, exit 0), --stats JSON lines.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, it } from "node:test";
import { tapAddonStatus } from "../../src/native/tap-addon.js";
import { readAll, tmp } from "../io/helpers.js";
import { pcapConfig, writeLanInput } from "../router/forward.test.js";

const BIN = fileURLToPath(new URL("../../../bin/skb.js", import.meta.url));

function setup(extra: Record<string, unknown> = {}): { dir: string; cfg: string } {
  const dir = tmp("skb-cli-forward-");
  writeLanInput(dir);
  const cfg = join(dir, "cfg.json");
  writeFileSync(cfg, JSON.stringify(pcapConfig(dir, extra)));
  return { dir, cfg };
}

function runUntilSignal(args: string[], sig: NodeJS.Signals, extra: (out: string) => boolean = () => true): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [BIN, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    let sent = false;
    const check = (): void => {
      if (!sent && err.includes("skb forward: running") && extra(out)) {
        sent = true;
        // Give the loop a moment to read the capture input.
        setTimeout(() => c.kill(sig), 300);
      }
    };
    c.stdout.on("data", (d) => {
      out += d;
      check();
    });
    c.stderr.on("data", (d) => {
      err += d;
      check();
    });
    const t = setTimeout(() => {
      c.kill("SIGKILL");
      reject(new Error(`timeout; stderr: ${err}`));
    }, 30_000);
    c.on("close", (code) => {
      clearTimeout(t);
      resolve({ code, out, err });
    });
  });
}

describe("skb forward CLI", () => {
  it("rejects an invalid configuration with exit 2, naming the field", () => {
    const dir = tmp("skb-cli-forward-bad-");
    const cfg = join(dir, "bad.json");
    writeFileSync(cfg, JSON.stringify({ devices: [{ name: "a", type: "pcap" }, { name: "b", type: "tun" }] }));
    const r = spawnSync(process.execPath, [BIN, "forward", cfg], { encoding: "utf8" });
    assert.equal(r.status, 2);
    assert.equal(r.stderr.trim(), "skb: config: devices[1].type: unknown type 'tun' (tap, vxlan, udp, pcap)");
    writeFileSync(cfg, "{ not json");
    const r2 = spawnSync(process.execPath, [BIN, "forward", cfg], { encoding: "utf8" });
    assert.equal(r2.status, 2);
    assert.match(r2.stderr, /^skb: config: .*bad\.json: invalid JSON: /);
    const r3 = spawnSync(process.execPath, [BIN, "forward"], { encoding: "utf8" });
    assert.equal(r3.status, 2);
    assert.match(r3.stderr, /forward: missing CONFIG\.json/);
    const r4 = spawnSync(process.execPath, [BIN, "forward", cfg, "--cache-ab", "5"], { encoding: "utf8" });
    assert.equal(r4.status, 2);
    assert.match(r4.stderr, /--cache-ab: '5' is not an integer number of ms in 10\.\.10000/);
    const r5 = spawnSync(process.execPath, [BIN, "forward", cfg, "--cache-ab", "10", "--workers", "2"], { encoding: "utf8" });
    assert.equal(r5.status, 2);
    assert.match(r5.stderr, /--cache-ab needs --workers 1/);
  });

  it("--cache-ab 10: the report carries the cache A/B (slices on and off, packets, router-thread CPU); no leaks", { skip: tapAddonStatus().available ? false : "the native addon (thread CPU clock) is unavailable" }, async () => {
    const { cfg } = setup();
    const r = await runUntilSignal(["forward", cfg, "--json", "--cache-ab", "10"], "SIGINT");
    assert.equal(r.code, 0, r.err + r.out);
    const rep = JSON.parse(r.out.trim().split("\n").pop() as string);
    assert.equal(rep.type, "report");
    assert.equal(rep.ok, true);
    const ab = rep.cacheAb;
    assert.equal(ab.sliceMs, 10);
    assert.ok(ab.on.slices >= 1 && ab.off.slices >= 1, JSON.stringify(ab));
    assert.ok(Math.abs(ab.on.slices - ab.off.slices) <= 1, "the slices alternate");
    const rx = rep.stats.devices.reduce((a: number, d: { rx: number }) => a + d.rx, 0);
    assert.equal(ab.on.packets + ab.off.packets, rx, "every received packet is in one slice");
    assert.ok(ab.on.cpuNs > 0 && ab.off.cpuNs > 0);
  });

  it("--until-idle: pcap in -> router -> pcap out, NATed, no leaks, exit 0", () => {
    const { dir, cfg } = setup();
    const r = spawnSync(process.execPath, [BIN, "forward", cfg, "--until-idle", "--json"], { encoding: "utf8", timeout: 60_000 });
    assert.equal(r.status, 0, r.stderr + r.stdout);
    const rep = JSON.parse(r.stdout.trim().split("\n").pop() as string);
    assert.equal(rep.type, "report");
    assert.equal(rep.reason, "until");
    assert.equal(rep.accounting.ok, true, `accounting: ${rep.accounting.problems.join("; ")}`);
    assert.equal(rep.accounting.received + rep.accounting.generated, rep.accounting.transmitted + rep.accounting.dropped + rep.accounting.consumed);
    assert.equal(rep.ok, true);
    assert.equal(rep.leaks.heads, 0);
    assert.equal(rep.leaks.pages, 0);
    const ipOut = readAll(join(dir, "wan-out.pcap")).filter((x) => x.data[13] === 0x00);
    assert.equal(ipOut.length, 10);
    for (const x of ipOut) assert.deepEqual([...x.data.subarray(26, 30)], [198, 51, 100, 1]);
  });

  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    it(`${sig}: stops, drains, reports no leaks, exit 0`, async () => {
      const { dir, cfg } = setup();
      const r = await runUntilSignal(["forward", cfg], sig);
      assert.equal(r.code, 0, r.err + r.out);
      assert.match(r.err, new RegExp(`skb forward: ${sig}, stopping`));
      assert.match(r.out, /skb forward: stopped \(aborted\)/);
      assert.match(r.out, /leaks {7}none: 0 heads, 0 pages in use, conntrack entries 0/);
      assert.match(r.out, /\naccounting {2}ok: received 13 \+ generated 1 = transmitted 12 \+ dropped 2 \+ consumed 0 \+ merged 0 \+ held 0\n/, r.out);
      const ipOut = readAll(join(dir, "wan-out.pcap")).filter((x) => x.data[13] === 0x00);
      assert.equal(ipOut.length, 10);
    });
  }

  it("--stats --json prints JSON lines of per-device counters", async () => {
    const { cfg } = setup();
    const r = await runUntilSignal(["forward", cfg, "--stats", "0.1", "--json"], "SIGINT", (out) => out.includes('"type":"stats"'));
    assert.equal(r.code, 0, r.err);
    const lines = r.out.trim().split("\n").map((l) => JSON.parse(l));
    const stats = lines.filter((l) => l.type === "stats");
    assert.ok(stats.length >= 1);
    const lan = stats[stats.length - 1].devices.find((d: { name: string }) => d.name === "lan");
    assert.equal(lan.rx, 13);
    assert.equal(typeof stats[0].conntrack, "number");
    assert.equal(lines[lines.length - 1].type, "report");
  });
});
