/**
 * RSS: the Toeplitz hash against Microsoft's published verification vectors,
 * the symmetric key's symmetry, and the indirection table's spread.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { RSS_KEY_MSFT, RSS_KEY_SYMMETRIC, Rss, rssCreate, rssHash, rssQueueOf } from "../../src/core/rss.js";
import { ipv4 } from "../../src/net/proto.js";

describe("RSS Toeplitz hash", () => {
  // NDIS "Verifying the RSS Hash Calculation", IPv4 with TCP ports.
  const vectors: [string, number, string, number, number][] = [
    ["66.9.149.187", 2794, "161.142.100.80", 1766, 0x51ccc178],
    ["199.92.111.2", 14230, "65.69.140.83", 4739, 0xc626b0ea],
    ["24.19.198.95", 12898, "12.22.207.184", 38024, 0x5c2b394a],
    ["38.27.205.30", 48228, "209.142.163.6", 2217, 0xafc7327f],
    ["153.39.163.191", 44251, "202.188.127.2", 1303, 0x10e828a2],
  ];
  test("matches the Microsoft verification suite (IPv4 + ports)", () => {
    const r = new Rss(RSS_KEY_MSFT, 4);
    for (const [src, sport, dst, dport, want] of vectors) {
      assert.equal(rssHash(r, ipv4(src), ipv4(dst), sport, dport) >>> 0, want, `${src}:${sport} -> ${dst}:${dport}`);
    }
  });

  test("the symmetric key hashes both directions alike", () => {
    const r = rssCreate(8, RSS_KEY_SYMMETRIC);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 0xffffffff }), fc.nat(65535), fc.nat(65535), (a, b, p, q) => {
        assert.equal(rssHash(r, a, b, p, q), rssHash(r, b, a, q, p));
        assert.equal(rssQueueOf(r, a, b, p, q), rssQueueOf(r, b, a, q, p));
      }),
    );
  });

  test("signed and unsigned addresses hash the same", () => {
    const r = rssCreate(2);
    const a = ipv4("198.51.100.10");
    assert.equal(rssHash(r, a, 1, 2, 3), rssHash(r, a | 0, 1, 2, 3));
  });

  test("the indirection table spreads many flows over all queues", () => {
    const r = rssCreate(4, RSS_KEY_MSFT);
    const counts = [0, 0, 0, 0];
    for (let i = 0; i < 4000; i++) counts[rssQueueOf(r, ipv4("10.10.0.2") + (i % 200), ipv4("198.51.100.10"), 40000 + i, 5201)]! += 1;
    for (const c of counts) assert.ok(c > 700 && c < 1300, `uneven spread ${counts.join(",")}`);
  });

  test("bad parameters are clear errors", () => {
    assert.throws(() => new Rss([1, 2, 3], 2), /key of 3 bytes is too short/);
    assert.throws(() => rssCreate(0), /queues 0 must be 1\.\.255/);
    assert.throws(() => new Rss(RSS_KEY_MSFT, 2, 100), /table size 100 must be a power of two/);
  });
});
