/**
 * `skb forward --workers`: which CPU owns a packet (src/smp/forward-steer.ts),
 * and the CLI's refusals (no root needed; the TAP run is in
 * test/e2e/forward-workers.test.ts).
 */

import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import fc from "fast-check";
import { run } from "../../src/bench/proc.js";
import { rssCreate, rssQueueOf } from "../../src/core/rss.js";
import { kfreeSkb } from "../../src/skb/free.js";
import { SKB_DEV, SKB_PROTOCOL } from "../../src/skb/layout.js";
import { SteerLayout, steerIcmpIdOwner, steerIcmpIdRange, steerOwner, steerPortOwner, steerPortRange } from "../../src/smp/forward-steer.js";
import { assertNoLeaks, icmpMessage, ip, ipv4Packet, setup, skbFromBytes, tcpSegment, udpSegment } from "../net/net-helpers.js";

const OUT_IF = 2;
const IN_IF = 1;
const OUT_ADDR = ip("198.51.100.1");
const HOST = ip("10.10.0.2");
const SERVER = ip("198.51.100.10");

function owner(l: SteerLayout, bytes: number[], ifindex: number, proto = 0x0800): number {
  const cpu = setup();
  const skb = skbFromBytes(cpu, bytes);
  cpu.u16[(skb + SKB_PROTOCOL) >>> 1] = proto;
  cpu.u32[(skb + SKB_DEV) >>> 2] = ifindex;
  const w = steerOwner(l, cpu, skb);
  kfreeSkb(cpu, skb);
  assertNoLeaks(cpu);
  return w;
}

describe("forward steering: port and id slices", () => {
  test("slices cover 1024..65535 and 0..65535 without gaps or overlap, and the owner functions invert them", () => {
    for (const n of [1, 2, 3, 4, 7, 64]) {
      const l = new SteerLayout(n, OUT_IF, OUT_ADDR);
      let next = 1024;
      let nextId = 0;
      for (let w = 0; w < n; w++) {
        const [a, b] = steerPortRange(l, w);
        assert.equal(a, next);
        assert.ok(b >= a);
        assert.equal(steerPortOwner(l, a), w);
        assert.equal(steerPortOwner(l, b), w);
        next = b + 1;
        const [c, d] = steerIcmpIdRange(l, w);
        assert.equal(c, nextId);
        assert.equal(steerIcmpIdOwner(l, c), w);
        assert.equal(steerIcmpIdOwner(l, d), w);
        nextId = d + 1;
      }
      assert.equal(next, 65536);
      assert.equal(nextId, 65536);
      assert.equal(steerPortOwner(l, 80), -1, "below the masquerade range: nobody's slice");
    }
  });
  test("bad worker counts are refused", () => {
    assert.throws(() => new SteerLayout(0, 1, 1), /1\.\.64/);
    assert.throws(() => new SteerLayout(65, 1, 1), /1\.\.64/);
  });
});

describe("forward steering: packet owners", () => {
  const l = new SteerLayout(4, OUT_IF, OUT_ADDR);
  const rss = rssCreate(4);
  test("inside TCP/UDP: the symmetric RSS queue of the 4-tuple, the same for the reverse direction", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 65535 }), fc.integer({ min: 1, max: 65535 }), fc.boolean(), (sp, dp, isTcp) => {
        const seg = (s: number, d: number, a: number, b: number): number[] =>
          isTcp ? tcpSegment(s, d, a, b, 1, 0, 0x02, []) : udpSegment(s, d, a, b, [1, 2, 3]);
        const fwd = owner(l, ipv4Packet({ src: HOST, dst: SERVER, proto: isTcp ? 6 : 17 }, seg(HOST, SERVER, sp, dp)), IN_IF);
        assert.equal(fwd, rssQueueOf(rss, HOST | 0, SERVER | 0, sp, dp));
        // An un-NATed reply (arriving elsewhere than the outside address) maps to the same CPU.
        const back = owner(l, ipv4Packet({ src: SERVER, dst: HOST, proto: isTcp ? 6 : 17 }, seg(SERVER, HOST, dp, sp)), OUT_IF);
        assert.equal(back, fwd);
      }),
      { numRuns: 60 },
    );
  });
  test("replies to the outside address: the CPU whose slice holds the destination port", () => {
    for (const port of [1024, 20000, 40000, 65535]) {
      const w = owner(l, ipv4Packet({ src: SERVER, dst: OUT_ADDR, proto: 17 }, udpSegment(SERVER, OUT_ADDR, 5201, port, [0])), OUT_IF);
      assert.equal(w, steerPortOwner(l, port));
      const t = owner(l, ipv4Packet({ src: SERVER, dst: OUT_ADDR, proto: 6 }, tcpSegment(SERVER, OUT_ADDR, 5201, port, 1, 1, 0x12, [])), OUT_IF);
      assert.equal(t, steerPortOwner(l, port));
    }
  });
  test("ICMP: echo replies by id slice, errors by the embedded source port or echo id", () => {
    for (const id of [0, 16383, 16384, 50000, 65535]) {
      const w = owner(l, ipv4Packet({ src: SERVER, dst: OUT_ADDR, proto: 1 }, icmpMessage(0, 0, (id << 16) | 1, [1, 2])), OUT_IF);
      assert.equal(w, steerIcmpIdOwner(l, id));
    }
    const inner = ipv4Packet({ src: OUT_ADDR, dst: SERVER, proto: 17 }, udpSegment(OUT_ADDR, SERVER, 45000, 53, [9, 9]));
    const err = owner(l, ipv4Packet({ src: SERVER, dst: OUT_ADDR, proto: 1 }, icmpMessage(3, 3, 0, inner.slice(0, 28))), OUT_IF);
    assert.equal(err, steerPortOwner(l, 45000));
    const innerEcho = ipv4Packet({ src: OUT_ADDR, dst: SERVER, proto: 1 }, icmpMessage(8, 0, (40000 << 16) | 7, []));
    const err2 = owner(l, ipv4Packet({ src: SERVER, dst: OUT_ADDR, proto: 1 }, icmpMessage(11, 0, 0, innerEcho.slice(0, 28))), OUT_IF);
    assert.equal(err2, steerIcmpIdOwner(l, 40000));
  });
  test("fragments hash on the addresses only; non-IPv4 and runts belong to the receiver", () => {
    const frag = ipv4Packet({ src: HOST, dst: SERVER, proto: 17, fragOff: 0x2000 }, udpSegment(HOST, SERVER, 1234, 80, [1]));
    assert.equal(owner(l, frag, IN_IF), rssQueueOf(rss, HOST | 0, SERVER | 0, 0, 0));
    const later = ipv4Packet({ src: HOST, dst: SERVER, proto: 17, fragOff: 3 }, [1, 2, 3, 4, 5, 6, 7, 8]);
    assert.equal(owner(l, later, IN_IF), rssQueueOf(rss, HOST | 0, SERVER | 0, 0, 0));
    assert.equal(owner(l, new Array(28).fill(0), IN_IF, 0x0806), -1);
    assert.equal(owner(l, [0x45, 0, 0, 10], IN_IF), -1);
  });
  test("one worker owns everything", () => {
    const one = new SteerLayout(1, OUT_IF, OUT_ADDR);
    assert.equal(owner(one, ipv4Packet({ src: HOST, dst: SERVER, proto: 17 }, udpSegment(HOST, SERVER, 1, 2, [])), IN_IF), 0);
  });
});

describe("skb forward --workers: refusals", () => {
  const bin = new URL("../../../bin/skb.js", import.meta.url).pathname;
  const dir = mkdtempSync(join(tmpdir(), "skb-fwd-workers-"));
  const pcapCfg = join(dir, "pcap.json");
  writeFileSync(pcapCfg, JSON.stringify({ devices: [{ name: "lan", type: "pcap", address: "10.0.0.1/24" }], routes: [], neighbours: [] }));
  test("a pcap device with --workers 2 exits 2 naming the device", async () => {
    const r = await run(process.execPath, [bin, "forward", pcapCfg, "--workers", "2"], 20_000);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /devices\[0\] 'lan' is a pcap device; with --workers 2 every device must be a tap/);
  });
  test("bad --workers values and --until-idle with workers are usage errors", async () => {
    for (const w of ["0", "65", "two", "1.5"]) {
      const r = await run(process.execPath, [bin, "forward", pcapCfg, "--workers", w], 20_000);
      assert.equal(r.code, 2, `--workers ${w}: ${r.stderr}`);
      assert.match(r.stderr, /--workers: '.*' is not an integer 1\.\.64/);
    }
    const r = await run(process.execPath, [bin, "forward", pcapCfg, "--workers", "2", "--until-idle"], 20_000);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--until-idle is for pcap inputs/);
  });
  test("--help documents --workers", async () => {
    const r = await run(process.execPath, [bin, "forward", "--help"], 20_000);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /--workers N/);
    rmSync(dir, { recursive: true, force: true });
  });
});
