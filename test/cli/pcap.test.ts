/**
 * `skb pcap info` and `skb pcap replay` through the real `bin/skb.js`
 * launcher in a child process: output, JSON shape, exit codes (0 ok, 1 a
 * corrupt capture or a failed run, 2 bad usage).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, it } from "node:test";
import { createCaptureWriter } from "../../src/io/pcap.js";
import { cat, pcapHeader, pcapRecord, readAll, tmp } from "../io/helpers.js";
import { ETH_P_IP, ethFrame, ip, ipv4Packet, pattern, PROTO_UDP, udpSegment } from "../router/helpers.js";

const BIN = fileURLToPath(new URL("../../../bin/skb.js", import.meta.url));

function skb(args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8", timeout: 120_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

function udp(i: number, src = "10.10.0.2"): Uint8Array {
  const s = ip(src);
  const d = ip("198.51.100.10");
  const ipb = ipv4Packet({ saddr: s, daddr: d, proto: PROTO_UDP, payload: udpSegment(s, d, 40000 + (i % 4), 53, pattern(40, i)), id: i });
  return ethFrame(Uint8Array.of(2, 0, 0, 0, 0, 9), Uint8Array.of(2, 0, 0, 0, 0, 8), 0, ETH_P_IP, ipb);
}

const dir = tmp("skb-cli-pcap-");
const input = join(dir, "in.pcapng");
{
  const w = createCaptureWriter(input, { format: "pcapng", resolution: "ns" });
  w.addInterface({ name: "lan" });
  for (let i = 0; i < 100; i++) {
    const f = udp(i);
    w.writePacket(0, 1_700_000_000 + Math.floor(i / 10), (i % 10) * 100_000_000, f, 0, f.length);
  }
  w.close();
}

describe("skb pcap", () => {
  it("help: skb --help lists pcap; skb pcap and skb pcap --help print the pcap usage", () => {
    const main = skb(["--help"]);
    assert.equal(main.code, 0);
    assert.match(main.out, /skb pcap info FILE/);
    assert.match(main.out, /skb pcap replay IN --out OUT/);
    for (const args of [["pcap"], ["pcap", "--help"], ["pcap", "help"]]) {
      const r = skb(args);
      assert.equal(r.code, 0, r.err);
      for (const w of ["skb pcap info FILE", "skb pcap replay IN --out OUT", "--direction inside|outside|auto", "--format pcap|pcapng", "--cache on|off"]) {
        assert.ok(r.out.includes(w), `pcap help lacks ${w}`);
      }
    }
  });

  it("info prints the summary; --json has the documented shape", () => {
    const t = skb(["pcap", "info", input]);
    assert.equal(t.code, 0, t.err);
    for (const re of [/format:\s+pcapng 1\.0/, /byte order:\s+little-endian/, /resolution:\s+ns/, /link types:\s+ETHERNET \(1\)/, /#0 'lan'/, /packets:\s+100/, /first packet:\s+2023-11-14T22:13:20\.000000000Z/, /last packet:\s+2023-11-14T22:13:29\.900000000Z/, /errors:\s+none/]) {
      assert.match(t.out, re);
    }
    const j = skb(["pcap", "info", input, "--json"]);
    assert.equal(j.code, 0, j.err);
    const info = JSON.parse(j.out);
    assert.equal(info.format, "pcapng");
    assert.deepEqual(info.byteOrders, ["le"]);
    assert.deepEqual(info.resolutions, ["ns"]);
    assert.deepEqual(info.linkTypes, ["ETHERNET (1)"]);
    assert.equal(info.packets, 100);
    assert.equal(info.bytes, 100 * 82);
    assert.equal(info.interfaces.length, 1);
    assert.equal(info.interfaces[0].name, "lan");
    assert.equal(info.first.sec, 1_700_000_000);
    assert.equal(info.last.nsec, 900_000_000);
    assert.deepEqual(info.errors, []);
  });

  it("info on a truncated or corrupt file exits 1 and names the file and the byte offset", () => {
    const f = join(dir, "cut.pcap");
    writeFileSync(f, cat(pcapHeader(), pcapRecord({ sec: 1, frac: 0, data: udp(0) }), pcapRecord({ sec: 2, frac: 0, data: udp(1) })).subarray(0, 24 + 98 + 16 + 10));
    const r = skb(["pcap", "info", f]);
    assert.equal(r.code, 1);
    assert.match(r.out, /packets:\s+1/);
    assert.ok(r.out.includes(`${f}: byte 122: truncated record: caplen 82 but only 10 bytes`), r.out);
    const j = JSON.parse(skb(["pcap", "info", f, "--json"]).out);
    assert.equal(j.packets, 1);
    assert.equal(j.errors.length, 1);
    const bad = join(dir, "bad.pcap");
    writeFileSync(bad, "this is not a capture file");
    const b = skb(["pcap", "info", bad]);
    assert.equal(b.code, 1);
    assert.ok(b.out.includes(`${bad}: byte 0: bad magic`), b.out);
    const missing = skb(["pcap", "info", join(dir, "nope.pcap")]);
    assert.equal(missing.code, 1);
    assert.match(missing.err, /ENOENT.*nope\.pcap/);
  });

  it("replay --json: counts, accounting and the output capture", () => {
    const out = join(dir, "out.pcapng");
    const r = skb(["pcap", "replay", input, "--out", out, "--json"]);
    assert.equal(r.code, 0, r.err);
    const j = JSON.parse(r.out);
    assert.equal(j.read, 100);
    assert.deepEqual(j.injected, { inside: 100, outside: 0, total: 100 });
    assert.deepEqual(j.skipped, {});
    assert.deepEqual(j.delivered, { inside: 0, outside: 100 });
    assert.deepEqual(j.drops, {});
    assert.equal(j.router.forwarded, 100);
    assert.equal(j.accounting.ok, true);
    assert.equal(j.leaks.ok, true);
    assert.equal(j.ok, true);
    assert.equal(j.outputFormat, "pcapng");
    const recs = readAll(out);
    assert.equal(recs.length, 100);
    assert.ok(recs.every((x) => x.ifIndex === 1));
  });

  it("replay text output; --format pcap writes -inside/-outside files; every option parses", () => {
    const out = join(dir, "split.pcap");
    const r = skb(["pcap", "replay", input, "-o", out, "--direction", "inside", "--cache", "off", "--vlan", "10", "--resolution", "us"]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /NAPI cache off/);
    assert.match(r.out, /read\s+100/);
    assert.match(r.out, /injected\s+100 \(inside 100, outside 0\)/);
    assert.match(r.out, /delivered\s+inside 0, outside 100/);
    assert.match(r.out, /accounting\s+ok/);
    assert.match(r.out, /leaks\s+none/);
    assert.ok(existsSync(join(dir, "split-inside.pcap")) && existsSync(join(dir, "split-outside.pcap")));
    assert.equal(readAll(join(dir, "split-outside.pcap")).length, 100);
    const fmt = skb(["pcap", "replay", input, "--out", join(dir, "x.bin"), "--format", "pcap", "--json"]);
    assert.equal(fmt.code, 0, fmt.err);
    assert.equal(JSON.parse(fmt.out).outputs.inside, join(dir, "x-inside.bin"));
  });

  it("replay of a capture cut short exits 1 with the error, after replaying what it could", () => {
    const f = join(dir, "cut2.pcap");
    writeFileSync(f, cat(pcapHeader(), ...[0, 1, 2].map((i) => pcapRecord({ sec: 1, frac: i, data: udp(i) }))).subarray(0, 24 + 98 * 3 - 1));
    const r = skb(["pcap", "replay", f, "--out", join(dir, "cut2-out.pcapng")]);
    assert.equal(r.code, 1);
    assert.match(r.out, /read\s+2/);
    assert.match(r.out, /delivered\s+inside 0, outside 2/);
    assert.ok(r.out.includes(`${f}: byte 220: truncated record: caplen 82 but only 81 bytes`), r.out);
    const bad = join(dir, "bad2.pcap");
    writeFileSync(bad, "garbage!");
    const b = skb(["pcap", "replay", bad, "--out", join(dir, "bad2-out.pcapng")]);
    assert.equal(b.code, 1);
    assert.ok(b.err.includes(`${bad}: byte 0: bad magic`), b.err);
  });

  it("bad usage exits 2 with a clear message", () => {
    const cases: [string[], RegExp][] = [
      [["pcap", "frob"], /pcap: unknown command 'frob'/],
      [["pcap", "info"], /pcap info: missing FILE/],
      [["pcap", "info", "a", "b"], /pcap info: unexpected argument 'b'/],
      [["pcap", "info", input, "--out", "x"], /pcap info: --out does not apply here/],
      [["pcap", "replay"], /pcap replay: missing input capture/],
      [["pcap", "replay", input], /--out OUT is required/],
      [["pcap", "replay", input, "--out", input], /--out must differ from the input/],
      [["pcap", "replay", input, "--out", "o", "--cache", "maybe"], /--cache: expected on or off, got 'maybe'/],
      [["pcap", "replay", input, "--out", "o", "--direction", "up"], /--direction: expected inside or outside or auto/],
      [["pcap", "replay", input, "--out", "o", "--format", "pcapx"], /--format: expected pcap or pcapng/],
      [["pcap", "replay", input, "--out", "o", "--vlan", "5000"], /--vlan: '5000' is not a VLAN id/],
      [["pcap", "replay", input, "--out", "o", "--resolution", "ms"], /--resolution: expected us or ns/],
      [["pcap", "replay", input, "--bogus"], /Unknown option '--bogus'/],
    ];
    for (const [args, re] of cases) {
      const r = skb(args);
      assert.equal(r.code, 2, `${args.join(" ")}: exit ${r.code}, stderr ${r.err}`);
      assert.match(r.err, re, args.join(" "));
    }
  });
});
