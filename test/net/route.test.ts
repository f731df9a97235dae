/**
 * Routing table: longest-prefix match, metrics, default route, errors,
 * growth, and a fast-check comparison against a brute-force model over
 * random insert / delete / lookup sequences.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import {
  fibNextHop,
  fibRouteGateway,
  fibRouteLen,
  fibRouteMetric,
  fibRouteOif,
  fibRoutePrefix,
  fibTableCount,
  fibTableCreate,
  fibTableDelete,
  fibTableDump,
  fibTableFlush,
  fibTableInsert,
  fibTableLookup,
  inetMakeMask,
} from "../../src/net/route.js";
import { ip } from "./net-helpers.js";

describe("fib table", () => {
  test("longest prefix wins; default route catches the rest; next hop", () => {
    const t = fibTableCreate(4);
    const def = fibTableInsert(t, 0, 0, ip("192.0.2.1"), 1);
    const r8 = fibTableInsert(t, ip("10.0.0.0"), 8, ip("10.255.255.254"), 2);
    const r24 = fibTableInsert(t, ip("10.1.2.0"), 24, 0, 3);
    const r32 = fibTableInsert(t, ip("10.1.2.3"), 32, ip("10.1.2.254"), 4);
    assert.ok(def >= 0 && r8 >= 0 && r24 >= 0 && r32 >= 0);
    assert.equal(fibTableLookup(t, ip("8.8.8.8")), def);
    assert.equal(fibTableLookup(t, ip("10.9.9.9")), r8);
    assert.equal(fibTableLookup(t, ip("10.1.2.200")), r24);
    assert.equal(fibTableLookup(t, ip("10.1.2.3")), r32);
    assert.equal(fibRouteOif(t, r24), 3);
    assert.equal(fibRouteGateway(t, r24), 0);
    assert.equal(fibNextHop(t, r24, ip("10.1.2.200")), ip("10.1.2.200"), "connected: the destination itself");
    assert.equal(fibNextHop(t, def, ip("8.8.8.8")), ip("192.0.2.1"));
    assert.equal(fibRoutePrefix(t, r8), ip("10.0.0.0"));
    assert.equal(fibRouteLen(t, r8), 8);
    assert.equal(fibTableDelete(t, 0, 0), 0);
    assert.equal(fibTableLookup(t, ip("8.8.8.8")), -1);
    assert.equal(fibTableCount(t), 3);
    assert.equal(inetMakeMask(0), 0);
    assert.equal(inetMakeMask(24), 0xffffff00);
    assert.equal(inetMakeMask(32), 0xffffffff);
  });

  test("metrics: the lowest wins; delete by metric or the preferred one", () => {
    const t = fibTableCreate();
    const a = fibTableInsert(t, ip("172.16.0.0"), 12, ip("1.1.1.1"), 1, 100);
    const b = fibTableInsert(t, ip("172.16.0.0"), 12, ip("2.2.2.2"), 2, 10);
    const c = fibTableInsert(t, ip("172.16.0.0"), 12, ip("3.3.3.3"), 3, 50);
    assert.equal(fibTableLookup(t, ip("172.20.1.1")), b);
    assert.equal(fibRouteMetric(t, b), 10);
    assert.equal(fibTableInsert(t, ip("172.16.0.0"), 12, 0, 9, 50), -17, "EEXIST");
    assert.equal(fibTableDelete(t, ip("172.16.0.0"), 12, 77), -3, "ESRCH");
    assert.equal(fibTableDelete(t, ip("172.16.0.0"), 12, 50), 0);
    assert.equal(fibTableLookup(t, ip("172.20.1.1")), b);
    assert.equal(fibTableDelete(t, ip("172.16.0.0"), 12), 0);
    assert.equal(fibTableLookup(t, ip("172.20.1.1")), a);
    assert.equal(fibTableDelete(t, ip("172.16.0.0"), 12), 0);
    assert.equal(fibTableLookup(t, ip("172.20.1.1")), -1);
    assert.equal(fibTableDelete(t, ip("172.16.0.0"), 12), -3);
    void c;
  });

  test("bad prefixes are -EINVAL", () => {
    const t = fibTableCreate();
    assert.equal(fibTableInsert(t, ip("10.0.0.1"), 24, 0, 1), -22, "host bits set");
    assert.equal(fibTableInsert(t, 0, 33, 0, 1), -22);
    assert.equal(fibTableInsert(t, 0, -1, 0, 1), -22);
    assert.equal(fibTableInsert(t, 0, 1.5, 0, 1), -22);
    assert.equal(fibTableDelete(t, 0, 40), -22);
    assert.equal(fibTableCount(t), 0);
  });

  test("grows past its capacity; dump and flush", () => {
    const t = fibTableCreate(8);
    for (let i = 0; i < 5000; i++) assert.ok(fibTableInsert(t, (i << 8) >>> 0, 24, i + 1, i) >= 0);
    assert.equal(fibTableCount(t), 5000);
    for (let i = 0; i < 5000; i++) {
      const r = fibTableLookup(t, ((i << 8) | 77) >>> 0);
      assert.equal(fibRouteGateway(t, r), i + 1);
    }
    const d = fibTableDump(t);
    assert.equal(d.length, 5000);
    assert.deepEqual(d[1], { prefix: 256, len: 24, gateway: 2, oif: 1, metric: 0 });
    fibTableFlush(t);
    assert.equal(fibTableCount(t), 0);
    assert.equal(fibTableLookup(t, 77), -1);
    assert.ok(fibTableInsert(t, 0, 0, 1, 1) >= 0);
    assert.equal(fibTableLookup(t, 77) >= 0, true);
  });

  test("property: random operations agree with a brute-force model", () => {
    type R = { prefix: number; len: number; gw: number; metric: number };
    const mask = (l: number) => (l === 0 ? 0 : (0xffffffff << (32 - l)) >>> 0);
    // Prefixes from a small pool so that overlaps, same-key chains and deletes all happen.
    const arbPrefix = fc
      .tuple(fc.constantFrom(0x0a000000, 0x0a010000, 0x0a010200, 0xc0a80000, 0x00000000, 0xffffff00), fc.integer({ min: 0, max: 32 }), fc.nat(255))
      .map(([base, len, x]) => ({ prefix: ((base | (x << 4) | (x & 3)) & mask(len)) >>> 0, len }));
    const arbOp = fc.oneof(
      fc.record({ op: fc.constant("add" as const), p: arbPrefix, metric: fc.nat(3), gw: fc.nat(1000) }),
      fc.record({ op: fc.constant("del" as const), p: arbPrefix, metric: fc.integer({ min: -1, max: 3 }) }),
      fc.record({ op: fc.constant("look" as const), addr: fc.oneof(fc.nat(0xffffffff), fc.constantFrom(0x0a010203, 0x0a0102ff, 0xc0a80001, 0, 0xffffffff)) }),
    );
    fc.assert(
      fc.property(fc.array(arbOp, { maxLength: 200 }), (ops) => {
        const t = fibTableCreate(4);
        const model: R[] = [];
        for (const o of ops) {
          if (o.op === "add") {
            const exists = model.some((r) => r.prefix === o.p.prefix && r.len === o.p.len && r.metric === o.metric);
            const got = fibTableInsert(t, o.p.prefix, o.p.len, o.gw, 0, o.metric);
            if (exists) assert.equal(got, -17);
            else {
              assert.ok(got >= 0);
              model.push({ prefix: o.p.prefix, len: o.p.len, gw: o.gw, metric: o.metric });
            }
          } else if (o.op === "del") {
            const same = model.filter((r) => r.prefix === o.p.prefix && r.len === o.p.len);
            const victim =
              o.metric < 0 ? same.sort((a, b) => a.metric - b.metric)[0] : same.find((r) => r.metric === o.metric);
            const got = fibTableDelete(t, o.p.prefix, o.p.len, o.metric);
            if (victim === undefined) assert.equal(got, -3);
            else {
              assert.equal(got, 0);
              model.splice(model.indexOf(victim), 1);
            }
          } else {
            const a = o.addr >>> 0;
            let best: R | undefined;
            for (const r of model) {
              if (((a & mask(r.len)) >>> 0) !== r.prefix) continue;
              if (best === undefined || r.len > best.len || (r.len === best.len && r.metric < best.metric)) best = r;
            }
            const got = fibTableLookup(t, a);
            if (best === undefined) assert.equal(got, -1);
            else {
              assert.ok(got >= 0);
              assert.equal(fibRouteGateway(t, got), best.gw);
              assert.equal(fibRouteLen(t, got), best.len);
              assert.equal(fibRouteMetric(t, got), best.metric);
            }
          }
          assert.equal(fibTableCount(t), model.length);
        }
        assert.equal(fibTableDump(t).length, model.length);
      }),
      { numRuns: 300 },
    );
  });

  test("lookups of random prefixes (every length) against brute force", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(0xffffffff), fc.integer({ min: 0, max: 32 })), { minLength: 1, maxLength: 300 }),
        fc.array(fc.nat(0xffffffff), { minLength: 1, maxLength: 50 }),
        (prefixes, addrs) => {
          const t = fibTableCreate(16);
          const mask = (l: number) => (l === 0 ? 0 : (0xffffffff << (32 - l)) >>> 0);
          const model = new Map<string, number>();
          prefixes.forEach(([p, l], i) => {
            const pr = (p & mask(l)) >>> 0;
            const k = `${pr}/${l}`;
            const r = fibTableInsert(t, pr, l, i + 1, 0);
            if (model.has(k)) assert.equal(r, -17);
            else model.set(k, i + 1);
          });
          // Also probe addresses inside the stored prefixes.
          for (const a0 of [...addrs, ...prefixes.map(([p]) => p)]) {
            const a = a0 >>> 0;
            let best = -1;
            let bestGw = 0;
            for (const [k, gw] of model) {
              const [ps, ls] = k.split("/");
              const l = Number(ls);
              if (((a & mask(l)) >>> 0) === Number(ps) && l > best) {
                best = l;
                bestGw = gw;
              }
            }
            const r = fibTableLookup(t, a);
            if (best < 0) assert.equal(r, -1);
            else assert.equal(fibRouteGateway(t, r), bestGw);
          }
        },
      ),
      { numRuns: 100 },
    );
  });
});
