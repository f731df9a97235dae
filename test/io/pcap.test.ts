/**
 * Capture readers and writers (src/io): round trips in both formats, both
 * byte orders and both resolutions; hand-made pcapng with every block type
 * and option the reader must handle (several sections and interfaces,
 * if_tsresol, if_tsoffset, SPB, OPB, unknown blocks); truncated and corrupt
 * files whose errors name the file and the byte offset; streaming a large
 * file through a bounded buffer; `captureInfo`.
 */

import assert from "node:assert/strict";
import { statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import {
  CaptureFormatError,
  captureInfo,
  createCaptureWriter,
  formatCaptureInfo,
  openCapture,
  PcapngWriter,
  PcapWriter,
} from "../../src/io/pcap.js";
import {
  block,
  cat,
  epb,
  idb,
  opb,
  opts,
  pcapHeader,
  pcapRecord,
  readAll,
  shb,
  spb,
  str,
  tmp,
  u8v,
  u32v,
  u64v,
} from "./helpers.js";

/** Deterministic frame of `n` bytes, distinct per `seed`. */
function frame(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 13 + seed * 101 + 7) & 0xff;
  return b;
}

/** `fn` throws a CaptureFormatError for `file` at `offset` whose reason matches `re`. */
function assertFormatError(fn: () => unknown, file: string, offset: number, re: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof CaptureFormatError, `expected CaptureFormatError, got ${e}`);
    assert.equal(e.file, file);
    assert.equal(e.offset, offset, `offset in: ${e.message}`);
    assert.match(e.reason, re);
    assert.ok(e.message.startsWith(`${file}: byte ${offset}: `), e.message);
    return true;
  });
}

describe("round trips", () => {
  for (const format of ["pcap", "pcapng"] as const) {
    for (const byteOrder of ["le", "be"] as const) {
      for (const resolution of ["us", "ns"] as const) {
        test(`${format} ${byteOrder} ${resolution}`, () => {
          const file = join(tmp(), `rt.${format}`);
          const snaplen = 1000;
          const w = createCaptureWriter(file, { format, byteOrder, resolution, snaplen });
          const ifs = format === "pcapng" ? 3 : 1;
          for (let i = 0; i < ifs; i++) {
            if (w instanceof PcapngWriter) w.addInterface({ snaplen, name: `if${i}`, resolution: i === 1 ? "us" : resolution });
            else w.addInterface({ snaplen });
          }
          const sent: { ifIndex: number; sec: number; nsec: number; data: Uint8Array; flags: number }[] = [];
          for (let i = 0; i < 300; i++) {
            const len = 14 + ((i * 37) % 1400);
            const data = frame(len, i);
            const sec = 1_700_000_000 + i * 3 + (i === 299 ? 2 ** 31 : 0);
            const nsec = (i * 999_999_937) % 1_000_000_000;
            const ifIndex = i % ifs;
            const flags = format === "pcapng" && i % 5 === 0 ? 1 + (i % 2) : 0;
            if (i % 2 === 0) {
              w.writePacket(ifIndex, sec, nsec, data, 0, len, len, flags);
            } else {
              // In pieces, as the tap writes non-linear skbs.
              w.beginPacket(ifIndex, sec, nsec, len, len, flags);
              w.append(data, 0, 7);
              w.append(data, 7, len - 7);
              w.endPacket();
            }
            sent.push({ ifIndex, sec, nsec, data, flags });
          }
          w.close();
          assert.equal(w.packets, 300);
          const got = readAll(file);
          assert.equal(got.length, 300);
          for (let i = 0; i < 300; i++) {
            const s = sent[i]!;
            const g = got[i]!;
            const cap = Math.min(s.data.length, snaplen);
            assert.equal(g.ifIndex, s.ifIndex);
            assert.equal(g.linkType, 1);
            assert.equal(g.caplen, cap, `record ${i}`);
            assert.equal(g.origLen, s.data.length);
            assert.deepEqual(g.data, s.data.subarray(0, cap));
            assert.equal(g.tsSec, s.sec);
            const ifRes = format === "pcapng" && s.ifIndex === 1 ? "us" : resolution;
            assert.equal(g.tsNsec, ifRes === "ns" ? s.nsec : Math.floor(s.nsec / 1000) * 1000, `record ${i} ns`);
            assert.equal(g.flags, s.flags);
          }
          const r = openCapture(file);
          assert.equal(r.format, format);
          assert.equal(r.sections[0]!.byteOrder, byteOrder);
          assert.equal(r.interfaces.length, format === "pcap" ? 1 : 0, "pcapng interfaces appear as read");
          while (r.next() !== null);
          assert.equal(r.interfaces.length, ifs);
          assert.equal(r.interfaces[0]!.snaplen, snaplen);
          r.close();
        });
      }
    }
  }

  test("an empty capture (header only) reads as zero records", () => {
    const d = tmp();
    for (const format of ["pcap", "pcapng"] as const) {
      const f = join(d, `e.${format}`);
      createCaptureWriter(f, { format }).close();
      assert.deepEqual(readAll(f), []);
      const info = captureInfo(f);
      assert.equal(info.packets, 0);
      assert.deepEqual(info.errors, []);
      assert.equal(info.first, null);
    }
  });

  test("writers refuse misuse with clear errors", () => {
    const d = tmp();
    const p = new PcapWriter(join(d, "a.pcap"));
    p.addInterface();
    assert.throws(() => p.addInterface(), /classic pcap has one interface/);
    assert.throws(() => p.writePacket(1, 0, 0, new Uint8Array(20), 0, 20), /no interface 1/);
    assert.throws(() => p.writePacket(0, -1, 0, new Uint8Array(20), 0, 20), /out of range/);
    p.beginPacket(0, 1, 0, 10);
    p.append(new Uint8Array(4), 0, 4);
    assert.throws(() => p.endPacket(), /6 bytes short/);
    p.close();
    const n = new PcapngWriter(join(d, "a.pcapng"));
    assert.throws(() => n.writePacket(0, 0, 0, new Uint8Array(20), 0, 20), /no interface 0 \(declared 0\)/);
    n.close();
    assert.throws(() => new PcapWriter(join(d, "b.pcap"), { snaplen: 0 }), /snaplen 0/);
  });

  test("record buffers are reused: one record object, views valid until the next read", () => {
    const f = join(tmp(), "reuse.pcap");
    const w = createCaptureWriter(f, { format: "pcap" });
    for (let i = 0; i < 3; i++) w.writePacket(0, i, 0, frame(60, i), 0, 60);
    w.close();
    const r = openCapture(f);
    const a = r.next();
    const b = r.next();
    assert.equal(a, b, "the same record object");
    assert.equal(b!.index, 1);
    r.close();
  });
});

describe("pcapng blocks and options (hand-made)", () => {
  test("two sections of opposite byte order, SHB/IDB/EPB options, SPB, OPB, skipped blocks", () => {
    const f = join(tmp(), "mix.pcapng");
    const be = false;
    const le = true;
    const a = frame(60, 1);
    const b = frame(61, 2);
    const c = frame(62, 3);
    const d = frame(200, 4);
    const bytes = cat(
      // Section 0: big-endian.
      shb(be, [
        [2, str("test hardware")],
        [3, str("test os")],
        [4, str("hand-made")],
      ]),
      idb(be, 1, 0, [
        [2, str("eth0")],
        [3, str("first interface")],
        [9, u8v(9)], // if_tsresol 10^-9
        [13, u8v(4)], // if_fcslen
      ]),
      idb(be, 1, 100, [
        [9, u8v(0x94)], // 2^-20 s
        [14, u64v(1000n, be)], // if_tsoffset +1000 s
      ]),
      block(4, u8v(0, 0, 0, 0), be), // NRB (empty record list): skipped
      epb(be, 0, 1_700_000_000_123_456_789n, a, {
        options: [
          [1, str("a comment")],
          [2, u32v(0x1, be)], // epb_flags: inbound
          [4, u64v(7n, be)], // epb_dropcount
        ],
      }),
      epb(be, 1, (5n << 20n) + (1n << 19n), b), // 5.5 s at 2^-20, + 1000 s offset
      spb(be, 200, d), // SPB on interface 0 (snaplen 0 = whole)
      block(5, cat(u32v(0, be), u32v(0, be), u32v(0, be)), be), // ISB: skipped
      block(0x00000bad, cat(u32v(32473, be), str("custom!!")), be), // custom block
      block(0x12345678, u8v(1, 2, 3, 4, 5, 6, 7, 8), be), // unknown type
      // Section 1: little-endian, its own interfaces.
      shb(le),
      idb(le, 1, 65535), // default resolution: µs
      opb(le, 0, 1_700_000_001_500_000n, c, [[2, u32v(0x2, le)]]),
      // Options without opt_endofopt (the block just ends): accepted.
      epb(le, 0, 1_700_000_002_000_001n, a, { options: [[1, str("no end")]], optEnd: false }),
    );
    writeFileSync(f, bytes);
    const r = openCapture(f);
    const recs = [];
    for (let x = r.next(); x !== null; x = r.next()) {
      recs.push({ ifIndex: x.ifIndex, tsSec: x.tsSec, tsNsec: x.tsNsec, caplen: x.caplen, origLen: x.origLen, flags: x.flags, blockType: x.blockType, data: x.data.slice() });
    }
    r.close();
    assert.equal(recs.length, 5);
    assert.deepEqual(recs[0], { ifIndex: 0, tsSec: 1_700_000_000, tsNsec: 123_456_789, caplen: 60, origLen: 60, flags: 1, blockType: 6, data: a });
    assert.deepEqual(recs[1], { ifIndex: 1, tsSec: 1005, tsNsec: 500_000_000, caplen: 61, origLen: 61, flags: 0, blockType: 6, data: b });
    assert.deepEqual(recs[2], { ifIndex: 0, tsSec: 0, tsNsec: 0, caplen: 200, origLen: 200, flags: 0, blockType: 3, data: d });
    assert.deepEqual(recs[3], { ifIndex: 2, tsSec: 1_700_000_001, tsNsec: 500_000_000, caplen: 62, origLen: 62, flags: 2, blockType: 2, data: c });
    assert.deepEqual(recs[4]!.tsNsec, 1000);
    assert.equal(recs[4]!.ifIndex, 2);
    assert.equal(r.sections.length, 2);
    assert.deepEqual(
      r.sections.map((s) => [s.byteOrder, s.hardware, s.os, s.userappl]),
      [
        ["be", "test hardware", "test os", "hand-made"],
        ["le", null, null, null],
      ],
    );
    assert.deepEqual(
      r.interfaces.map((i) => [i.id, i.section, i.localId, i.name, i.snaplen, i.tsresol.base, i.tsresol.exp, i.tsOffset, i.fcsLen]),
      [
        [0, 0, 0, "eth0", 0, 10, 9, 0, 4],
        [1, 0, 1, null, 100, 2, 20, 1000, -1],
        [2, 1, 0, null, 65535, 10, 6, 0, -1],
      ],
    );
    assert.deepEqual([...r.skippedBlocks.entries()].sort((x, y) => x[0] - y[0]), [
      [4, 1],
      [5, 1],
      [0xbad, 1],
      [0x12345678, 1],
    ]);
    const info = captureInfo(f);
    assert.equal(info.packets, 5);
    assert.deepEqual(info.byteOrders, ["be", "le"]);
    assert.deepEqual(info.resolutions, ["ns", "2^-20 s", "us"]);
    assert.deepEqual(info.skippedBlocks, { NRB: 1, ISB: 1, CB: 1, "0x12345678": 1 });
    assert.deepEqual(info.errors, []);
    assert.match(formatCaptureInfo(info), /byte order:\s+big-endian, little-endian/);
  });

  test("SPB data is capped by the interface snaplen; other resolutions convert exactly", () => {
    const f = join(tmp(), "spb.pcapng");
    const le = true;
    writeFileSync(
      f,
      cat(
        shb(le),
        idb(le, 1, 64, [[9, u8v(3)]]), // ms, snaplen 64
        spb(le, 100, frame(64, 9)), // 100 on the wire, 64 captured
        epb(le, 0, 1_700_000_000_999n, frame(64, 1), { origLen: 90 }),
      ),
    );
    const recs = readAll(f);
    assert.equal(recs[0]!.caplen, 64);
    assert.equal(recs[0]!.origLen, 100);
    assert.deepEqual(recs[0]!.data, frame(64, 9));
    assert.equal(recs[1]!.tsSec, 1_700_000_000);
    assert.equal(recs[1]!.tsNsec, 999_000_000);
    assert.equal(captureInfo(f).snapped, 2);
  });

  test("a timestamp beyond 2^53 units (ns since 1970 in 2100) converts exactly", () => {
    const f = join(tmp(), "big.pcapng");
    const units = 4_102_444_800_987_654_321n; // 2100-01-01T00:00:00.987654321Z
    writeFileSync(f, cat(shb(true), idb(true, 1, 0, [[9, u8v(9)]]), epb(true, 0, units, frame(60, 0))));
    const [rec] = readAll(f);
    assert.equal(rec!.tsSec, 4_102_444_800);
    assert.equal(rec!.tsNsec, 987_654_321);
    assert.equal(captureInfo(f).first!.iso, "2100-01-01T00:00:00.987654321Z");
  });

  test("picosecond resolution takes the BigInt path, truncated to ns", () => {
    // 64 bits of picoseconds cover 213 days.
    const f = join(tmp(), "ps.pcapng");
    writeFileSync(f, cat(shb(true), idb(true, 1, 0, [[9, u8v(12)]]), epb(true, 0, 12_345_678_901_234_567_890n, frame(60, 0))));
    const [rec] = readAll(f);
    assert.equal(rec!.tsSec, 12_345_678);
    assert.equal(rec!.tsNsec, 901_234_567);
  });
});

describe("truncated and corrupt files name the file and the byte offset", () => {
  const d = tmp("skb-io-bad-");
  const good = pcapHeader();
  const rec = (i: number) => pcapRecord({ sec: i, frac: 0, data: frame(60, i) });
  const put = (name: string, bytes: Uint8Array) => {
    const f = join(d, name);
    writeFileSync(f, bytes);
    return f;
  };
  const readIt = (f: string) => () => readAll(f);

  test("classic pcap", () => {
    assertFormatError(readIt(put("empty.pcap", new Uint8Array(0))), join(d, "empty.pcap"), 0, /^empty file$/);
    assertFormatError(readIt(put("magic.pcap", u8v(1, 2, 3, 4, 5, 6, 7, 8))), join(d, "magic.pcap"), 0, /bad magic 0x01020304/);
    assertFormatError(readIt(put("gz.pcap", u8v(0x1f, 0x8b, 8, 0, 0, 0))), join(d, "gz.pcap"), 0, /gzip/);
    assertFormatError(readIt(put("kuz.pcap", u32v(0xa1b2cd34, true))), join(d, "kuz.pcap"), 0, /modified \(Kuznetzov\) pcap/);
    assertFormatError(readIt(put("hdr.pcap", good.subarray(0, 10))), join(d, "hdr.pcap"), 10, /truncated pcap file header: 10 of 24/);
    assertFormatError(readIt(put("ver.pcap", pcapHeader({ major: 3 }))), join(d, "ver.pcap"), 4, /unsupported pcap version 3\.4/);
    // Second record header cut after 5 bytes: offset = its start.
    const two = cat(good, rec(0), rec(1));
    assertFormatError(readIt(put("rechdr.pcap", two.subarray(0, 24 + 76 + 5))), join(d, "rechdr.pcap"), 100, /truncated record header: 5 of 16/);
    assertFormatError(readIt(put("recdata.pcap", two.subarray(0, 24 + 76 + 16 + 30))), join(d, "recdata.pcap"), 100, /truncated record: caplen 60 but only 30 bytes/);
    const bigcap = cat(good, rec(0), pcapRecord({ sec: 1, frac: 0, data: frame(60, 1), caplen: 70000, origLen: 70000 }));
    assertFormatError(readIt(put("snap.pcap", bigcap)), join(d, "snap.pcap"), 108, /record caplen 70000 exceeds snaplen 65535/);
    const absurd = cat(pcapHeader({ snaplen: 0 }), pcapRecord({ sec: 1, frac: 0, data: frame(60, 1), caplen: 0x7fffffff, origLen: 0x7fffffff }));
    assertFormatError(readIt(put("absurd.pcap", absurd)), join(d, "absurd.pcap"), 32, /absurd record caplen 2147483647/);
    const orig = cat(good, pcapRecord({ sec: 1, frac: 0, data: frame(60, 1), origLen: 50 }));
    assertFormatError(readIt(put("orig.pcap", orig)), join(d, "orig.pcap"), 32, /caplen 60 exceeds its original length 50/);
    // Big-endian files report the same way.
    const beTrunc = cat(pcapHeader({ le: false }), pcapRecord({ le: false, sec: 1, frac: 0, data: frame(60, 1) })).subarray(0, 24 + 16 + 59);
    assertFormatError(readIt(put("be.pcap", beTrunc)), join(d, "be.pcap"), 24, /truncated record: caplen 60 but only 59 bytes/);
  });

  test("records read before the error are delivered; info reports them and the error", () => {
    const f = put("partial.pcap", cat(good, rec(0), rec(1), rec(2)).subarray(0, 24 + 76 * 2 + 20));
    const r = openCapture(f);
    assert.notEqual(r.next(), null);
    assert.notEqual(r.next(), null);
    assert.throws(() => r.next(), /partial\.pcap: byte 176: truncated record: caplen 60 but only 4 bytes/);
    r.close();
    const info = captureInfo(f);
    assert.equal(info.packets, 2);
    assert.equal(info.errors.length, 1);
    assert.match(info.errors[0]!, /byte 176/);
  });

  test("pcapng", () => {
    const le = true;
    const head = cat(shb(le), idb(le, 1, 100));
    const at = head.length; // first block after the IDB
    const p = (name: string, ...blocks: Uint8Array[]) => put(name, cat(head, ...blocks));
    assertFormatError(readIt(put("noshb.pcapng", idb(le))), join(d, "noshb.pcapng"), 0, /bad magic/);
    const badBom = shb(le);
    badBom.set(u32v(0x11223344, true), 8);
    assertFormatError(readIt(put("bom.pcapng", badBom)), join(d, "bom.pcapng"), 8, /bad byte-order magic 0x11223344/);
    assertFormatError(readIt(put("ver.pcapng", shb(le, [], 2))), join(d, "ver.pcapng"), 12, /unsupported pcapng version 2\.0/);
    assertFormatError(
      readIt(p("tail.pcapng", block(6, new Uint8Array(24), le, { tailOverride: 40 }))),
      join(d, "tail.pcapng"),
      at + 32,
      /block length mismatch: EPB at byte 48 starts with 36 and ends with 40/,
    );
    assertFormatError(readIt(p("mod4.pcapng", block(6, new Uint8Array(24), le, { lenOverride: 34 }))), join(d, "mod4.pcapng"), at + 4, /not a multiple of 4/);
    assertFormatError(readIt(p("small.pcapng", block(6, new Uint8Array(4), le))), join(d, "small.pcapng"), at + 4, /block length 16 too small for a EPB \(minimum 32\)/);
    const e = epb(le, 0, 1n, frame(60, 0));
    assertFormatError(readIt(p("trunc.pcapng", e.subarray(0, 50))), join(d, "trunc.pcapng"), at, /truncated EPB block: length 92 but only 50 bytes/);
    assertFormatError(readIt(p("trunchdr.pcapng", e.subarray(0, 6))), join(d, "trunchdr.pcapng"), at, /truncated block header: 6 of 8/);
    assertFormatError(readIt(p("ifid.pcapng", epb(le, 3, 1n, frame(60, 0)))), join(d, "ifid.pcapng"), at + 8, /interface 3, but its section declares 1/);
    assertFormatError(
      readIt(p("overrun.pcapng", epb(le, 0, 1n, frame(60, 0), { caplen: 64 }))),
      join(d, "overrun.pcapng"),
      at + 20,
      /packet data \(caplen 64\) overruns its EPB \(60 bytes of room\)/,
    );
    assertFormatError(readIt(p("snap.pcapng", epb(le, 0, 1n, frame(120, 0)))), join(d, "snap.pcapng"), at + 20, /caplen 120 exceeds snaplen 100 of interface 0/);
    assertFormatError(
      readIt(p("orig.pcapng", epb(le, 0, 1n, frame(60, 0), { origLen: 10 }))),
      join(d, "orig.pcapng"),
      at + 20,
      /caplen 60 exceeds its original length 10/,
    );
    // An option whose length runs past the block: offset of the option.
    const badOpt = idb(le, 1, 0, [[2, str("eth0")]]);
    badOpt.set(new Uint8Array([0xff, 0]), 16 + 2); // if_name length 255
    assertFormatError(readIt(p("opt.pcapng", badOpt)), join(d, "opt.pcapng"), at + 16, /option 2 of length 255 overruns its block/);
    // The same inside an EPB's options (after 60 bytes of data at +28).
    const badEpbOpt = epb(le, 0, 1n, frame(60, 0), { options: [[2, u32v(1, le)]] });
    badEpbOpt.set(u8v(0x40, 0), 28 + 60 + 2); // epb_flags length 64
    assertFormatError(readIt(p("epbopt.pcapng", badEpbOpt)), join(d, "epbopt.pcapng"), at + 88, /option 2 of length 64 overruns its block/);
    const badRes = idb(le, 1, 0, [[9, u8v(9, 9)]]);
    assertFormatError(readIt(p("tsresol.pcapng", badRes)), join(d, "tsresol.pcapng"), at + 20, /if_tsresol has length 2/);
    // An unknown block is skipped by its length without being read, but must fit and match.
    assertFormatError(
      readIt(p("unk.pcapng", block(0x777, new Uint8Array(1000), le).subarray(0, 500))),
      join(d, "unk.pcapng"),
      at,
      /truncated 0x00000777 block: length 1012 runs past the end of the file/,
    );
    assertFormatError(
      readIt(p("unktail.pcapng", block(0x777, new Uint8Array(16), le, { tailOverride: 8 }))),
      join(d, "unktail.pcapng"),
      at + 24,
      /block length mismatch: 0x00000777 at byte 48 starts with 28 and ends with 8/,
    );
    // Absurd lengths do not make the reader allocate them.
    assertFormatError(readIt(p("huge.pcapng", block(6, new Uint8Array(24), le, { lenOverride: 0x7ffffffc }))), join(d, "huge.pcapng"), at + 4, /absurd block length/);
  });
});

describe("streaming", () => {
  test("200k packets stream through a bounded buffer", () => {
    const f = join(tmp(), "large.pcapng");
    const w = createCaptureWriter(f, { format: "pcapng", resolution: "ns" });
    w.addInterface();
    const N = 200_000;
    const pkt = frame(300, 5);
    for (let i = 0; i < N; i++) {
      pkt[0] = i & 0xff;
      pkt[1] = (i >>> 8) & 0xff;
      pkt[2] = i >>> 16;
      w.writePacket(0, 1_700_000_000 + Math.floor(i / 1000), (i % 1000) * 1_000_000, pkt, 0, 100 + (i % 200));
    }
    w.close();
    const size = statSync(f).size;
    assert.ok(size > 40 << 20, `file is ${size} bytes`);
    const before = process.memoryUsage();
    let peak = 0;
    const r = openCapture(f);
    let n = 0;
    let bytes = 0;
    for (let rec = r.next(); rec !== null; rec = r.next()) {
      const i = n;
      assert.equal(rec.caplen, 100 + (i % 200));
      if (rec.buf[rec.offset] !== (i & 0xff) || rec.buf[rec.offset + 2] !== i >>> 16) assert.fail(`record ${i} has the wrong bytes`);
      bytes += rec.caplen;
      if (++n % 20_000 === 0) {
        const m = process.memoryUsage();
        peak = Math.max(peak, m.arrayBuffers - before.arrayBuffers + (m.heapUsed - before.heapUsed));
      }
    }
    assert.equal(n, N);
    assert.equal(bytes, N * 100 + 200 * 199 * (N / 400));
    assert.ok(r.bufferSize() <= 1 << 20, `buffer grew to ${r.bufferSize()}`);
    r.close();
    assert.ok(peak < size / 4, `memory grew by ${peak} bytes while reading a ${size}-byte file`);
  });

  test("records straddling a tiny buffer, and one record larger than it (the buffer grows)", () => {
    const d = tmp();
    for (const format of ["pcap", "pcapng"] as const) {
      const f = join(d, `tiny.${format}`);
      const w = createCaptureWriter(f, { format });
      w.addInterface();
      const sizes = [60, 1000, 333, 5000, 17, 20000, 64, 4095, 4096, 4097];
      sizes.forEach((n, i) => {
        w.writePacket(0, i, 0, frame(n, i), 0, n);
      });
      w.close();
      const got = readAll(f, 4096);
      assert.deepEqual(
        got.map((g) => g.data),
        sizes.map((n, i) => frame(n, i)),
      );
      const r = openCapture(f, { bufferSize: 4096 });
      while (r.next() !== null);
      assert.ok(r.bufferSize() >= 20000 + 16 && r.bufferSize() <= 65536, `buffer ${r.bufferSize()}`);
      r.close();
    }
  });
});

describe("captureInfo", () => {
  test("format, byte order, resolution, link types, counts, first/last timestamps", () => {
    const f = join(tmp(), "info.pcap");
    const w = new PcapWriter(f, { byteOrder: "be", resolution: "ns", snaplen: 96, linkType: 1 });
    w.writePacket(0, 1_700_000_010, 5, frame(60, 0), 0, 60);
    w.writePacket(0, 1_700_000_000, 999_999_999, frame(120, 1), 0, 120);
    w.writePacket(0, 1_700_000_020, 1, frame(80, 2), 0, 80);
    w.close();
    const i = captureInfo(f);
    assert.equal(i.format, "pcap");
    assert.equal(i.version, "2.4");
    assert.deepEqual(i.byteOrders, ["be"]);
    assert.deepEqual(i.resolutions, ["ns"]);
    assert.deepEqual(i.linkTypes, ["ETHERNET (1)"]);
    assert.equal(i.packets, 3);
    assert.equal(i.bytes, 60 + 96 + 80);
    assert.equal(i.origBytes, 60 + 120 + 80);
    assert.equal(i.snapped, 1);
    assert.equal(i.first!.iso, "2023-11-14T22:13:30.000000005Z");
    assert.equal(i.last!.iso, "2023-11-14T22:13:40.000000001Z");
    // Duration spans the earliest to the latest, whatever the order.
    assert.ok(Math.abs(i.durationSec! - 19.000000002) < 1e-6);
    assert.equal(i.interfaces[0]!.snaplen, 96);
    assert.equal(i.fileBytes, statSync(f).size);
    const text = formatCaptureInfo(i);
    for (const re of [/format:\s+pcap 2\.4/, /byte order:\s+big-endian/, /resolution:\s+ns/, /packets:\s+3/, /1 packets cut by the snaplen/, /errors:\s+none/]) {
      assert.match(text, re);
    }
  });

  test("a non-Ethernet link type is reported, not refused", () => {
    const f = join(tmp(), "raw.pcap");
    writeFileSync(f, cat(pcapHeader({ linkType: 101 }), pcapRecord({ sec: 1, frac: 2, data: frame(40, 0) })));
    const i = captureInfo(f);
    assert.deepEqual(i.linkTypes, ["RAW (101)"]);
    assert.equal(i.packets, 1);
    assert.equal(readAll(f)[0]!.linkType, 101);
  });

  test("an option list in an IDB survives a round trip through opts()", () => {
    // Sanity of the hand-made option builder itself: padding and the end marker.
    const o = opts([[2, str("abcde")]], true);
    assert.equal(o.length, 4 + 8 + 4);
  });
});
