/**
 * Interoperability with Wireshark's tools, when installed (Debian packages
 * `tshark` and `wireshark-common`): what we write, `capinfos` and `tshark`
 * read back exactly; what `tshark`, `editcap`, `mergecap` and `text2pcap`
 * write, we read back exactly; and tshark decodes a replay's output as
 * correctly masqueraded packets with valid checksums. Without the tools
 * every test here is skipped with the reason.
 */

import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { createCaptureWriter, openCapture } from "../../src/io/pcap.js";
import { replayCapture } from "../../src/io/replay.js";
import { ETH_P_IP, ethFrame, ip, ipv4Packet, pattern, PROTO_TCP, PROTO_UDP, tcpSegment, udpSegment } from "../router/helpers.js";
import { cat, missingTools, readAll, type ReadRecord, tmp, tool } from "./helpers.js";

const MAC_A = Uint8Array.of(0x02, 0, 0, 0, 0xaa, 1);
const MAC_B = Uint8Array.of(0x02, 0, 0, 0, 0xbb, 2);

/** A mix of UDP and TCP frames of varied sizes. */
function frames(n: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    const s = ip("10.10.0.2") + (i % 4);
    const d = ip("198.51.100.10");
    const payload = pattern(10 + ((i * 97) % 1400), i);
    const l4 = i % 3 === 0 ? tcpSegment(s, d, 40000 + i, 80, 1000 + i, 0, 0x18, payload) : udpSegment(s, d, 40000 + i, 53, payload);
    out.push(ethFrame(MAC_B, MAC_A, 0, ETH_P_IP, ipv4Packet({ saddr: s, daddr: d, proto: i % 3 === 0 ? PROTO_TCP : PROTO_UDP, payload: l4, id: i })));
  }
  return out;
}

/** tshark's view: one row of tab-separated fields per frame. */
function tsharkFields(file: string, fields: string[], extra: string[] = []): string[][] {
  const outText = tool("tshark", ["-r", file, ...extra, "-T", "fields", "-E", "separator=/t", ...fields.flatMap((f) => ["-e", f])]);
  return outText
    .split("\n")
    .filter((l) => l.length > 0)
    .map((l) => l.split("\t"));
}

/** "1700000000.123456789" from seconds + nanoseconds. */
function epoch(sec: number, nsec: number): string {
  return `${sec}.${String(nsec).padStart(9, "0")}`;
}

/** A tool's epoch time ("1700000000.123456", digits per the file's resolution) to 9 fraction digits. */
function norm(s: string): string {
  const [a, b = ""] = s.split(".");
  return `${a}.${b.padEnd(9, "0")}`;
}

describe("Wireshark reads what we write", () => {
  const variants = [
    { format: "pcap", byteOrder: "le", resolution: "us", type: /^pcap$|Wireshark\/tcpdump\/\.\.\. - pcap/ },
    { format: "pcap", byteOrder: "be", resolution: "ns", type: /nanosecond pcap|nsecpcap/ },
    { format: "pcapng", byteOrder: "le", resolution: "ns", type: /pcapng/ },
    { format: "pcapng", byteOrder: "be", resolution: "us", type: /pcapng/ },
  ] as const;
  for (const v of variants) {
    test(`${v.format} ${v.byteOrder} ${v.resolution}: capinfos and tshark agree with every field`, (t) => {
      const why = missingTools("tshark", "capinfos");
      if (why !== null) {
        t.skip(why);
        return;
      }
      const f = join(tmp(), `ours.${v.format}`);
      const w = createCaptureWriter(f, { format: v.format, byteOrder: v.byteOrder, resolution: v.resolution, snaplen: 1000 });
      const ifs = v.format === "pcapng" ? 2 : 1;
      for (let i = 0; i < ifs; i++) w.addInterface({ name: `if${i}`, snaplen: 1000 });
      const fr = frames(50);
      const sec0 = 1_700_000_000;
      fr.forEach((x, i) => {
        w.writePacket(i % ifs, sec0 + i, (i * 123_456_789) % 1e9, x, 0, x.length, x.length, v.format === "pcapng" ? (i % 2) + 1 : 0);
      });
      w.close();
      const info = tool("capinfos", ["-T", "-M", "-c", "-t", "-E", "-a", "-e", "-S", "-r", f]).trim().split("\t");
      assert.match(info[1]!, v.type);
      assert.match(info[2]!, /^ether|Ethernet$/);
      assert.equal(info[3], "50");
      const res = v.resolution === "ns" ? (n: number) => n : (n: number) => Math.floor(n / 1000) * 1000;
      assert.equal(norm(info[4]!), epoch(sec0, res(0)));
      assert.equal(norm(info[5]!), epoch(sec0 + 49, res((49 * 123_456_789) % 1e9)));
      const rows = tsharkFields(f, ["frame.time_epoch", "frame.len", "frame.cap_len", "frame.interface_id", "frame.packet_flags_direction", "ip.id", "eth.src"]);
      assert.equal(rows.length, 50);
      rows.forEach((r, i) => {
        const x = fr[i]!;
        assert.equal(norm(r[0]!), epoch(sec0 + i, res((i * 123_456_789) % 1e9)), `frame ${i} time`);
        assert.equal(r[1], String(x.length));
        assert.equal(r[2], String(Math.min(x.length, 1000)));
        if (v.format === "pcapng") {
          assert.equal(r[3], String(i % 2));
          assert.equal(Number.parseInt(r[4]!, 16), (i % 2) + 1, `frame ${i} direction flags`);
        }
        if (x.length <= 1000) assert.equal(Number.parseInt(r[5]!, 16), i);
        assert.equal(r[6], "02:00:00:00:aa:01");
      });
    });
  }
});

describe("we read what Wireshark writes", () => {
  /** Our records against the frames and times written (all one interface). */
  function same(recs: ReadRecord[], fr: Uint8Array[], sec0: number, nsecOf: (i: number) => number): void {
    assert.equal(recs.length, fr.length);
    recs.forEach((r, i) => {
      assert.deepEqual(r.data, fr[i], `frame ${i}`);
      assert.equal(r.origLen, fr[i]!.length);
      assert.equal(r.tsSec, sec0 + i);
      assert.equal(r.tsNsec, nsecOf(i), `frame ${i} ns`);
    });
  }

  test("editcap conversions (pcapng, pcap, nsecpcap) and tshark -F pcapng -w", (t) => {
    const why = missingTools("tshark", "editcap");
    if (why !== null) {
      t.skip(why);
      return;
    }
    const d = tmp();
    const src = join(d, "src.pcap");
    const w = createCaptureWriter(src, { format: "pcap", resolution: "ns" });
    const fr = frames(40);
    fr.forEach((x, i) => {
      w.writePacket(0, 1_700_000_000 + i, i * 1_001_001, x, 0, x.length);
    });
    w.close();
    const ns = (i: number) => i * 1_001_001;
    const us = (i: number) => Math.floor((i * 1_001_001) / 1000) * 1000;
    for (const [fmt, nsecOf] of [
      ["pcapng", ns],
      ["pcap", us],
      ["nsecpcap", ns],
    ] as const) {
      const out = join(d, `editcap.${fmt}`);
      tool("editcap", ["-F", fmt, src, out]);
      same(readAll(out), fr, 1_700_000_000, nsecOf);
      const r = openCapture(out);
      assert.equal(r.format, fmt === "pcapng" ? "pcapng" : "pcap");
      r.close();
    }
    const tw = join(d, "tshark.pcapng");
    tool("tshark", ["-r", src, "-F", "pcapng", "-w", tw]);
    same(readAll(tw), fr, 1_700_000_000, ns);
    // tshark writes SHB options (os, application) and IDB options we parse and keep.
    const r = openCapture(tw);
    while (r.next() !== null);
    assert.ok(r.sections[0]!.userappl !== null, "shb_userappl read");
    r.close();
  });

  test("text2pcap from a hex dump, both formats", (t) => {
    const why = missingTools("text2pcap");
    if (why !== null) {
      t.skip(why);
      return;
    }
    const d = tmp();
    const fr = frames(12);
    let dump = "";
    fr.forEach((x, i) => {
      dump += `${1_700_000_000 + i}.${String(i * 25_000).padStart(6, "0")}\n`;
      for (let o = 0; o < x.length; o += 16) {
        dump += `${o.toString(16).padStart(6, "0")}  ${[...x.subarray(o, o + 16)].map((b) => b.toString(16).padStart(2, "0")).join(" ")}\n`;
      }
      dump += "\n";
    });
    const hex = join(d, "dump.txt");
    writeFileSync(hex, dump);
    for (const fmt of ["pcap", "pcapng"]) {
      const out = join(d, `t2p.${fmt}`);
      tool("text2pcap", ["-q", "-F", fmt, "-t", "%s.%f", hex, out]);
      same(readAll(out), fr, 1_700_000_000, (i) => i * 25_000_000);
    }
  });

  test("mergecap interfaces, and a file of two sections with opposite byte orders", (t) => {
    const why = missingTools("tshark", "mergecap", "editcap");
    if (why !== null) {
      t.skip(why);
      return;
    }
    const d = tmp();
    const fr = frames(30);
    const parts: string[] = [];
    for (const [k, lt] of [
      [0, 1],
      [1, 1],
    ] as const) {
      const f = join(d, `p${k}.pcapng`);
      const w = createCaptureWriter(f, { format: "pcapng", byteOrder: "le", resolution: "us" });
      w.addInterface({ name: `part${k}`, linkType: lt });
      for (let i = k; i < 30; i += 2) w.writePacket(0, 1_700_000_000 + i, 0, fr[i]!, 0, fr[i]!.length);
      w.close();
      parts.push(f);
    }
    const merged = join(d, "merged.pcapng");
    tool("mergecap", ["-w", merged, ...parts]);
    const recs = readAll(merged);
    assert.equal(recs.length, 30);
    recs.forEach((r, i) => {
      assert.deepEqual(r.data, fr[i], `merged in time order: frame ${i}`);
      assert.equal(r.ifIndex, i % 2, "one IDB per input");
    });
    // Two sections: tshark's little-endian file followed by our big-endian one.
    const be = join(d, "be.pcapng");
    const w = createCaptureWriter(be, { format: "pcapng", byteOrder: "be", resolution: "ns" });
    w.addInterface({ name: "big" });
    for (let i = 0; i < 5; i++) w.writePacket(0, 1_800_000_000 + i, 7, fr[i]!, 0, fr[i]!.length);
    w.close();
    const two = join(d, "two-sections.pcapng");
    writeFileSync(two, cat(readFileSync(merged), readFileSync(be)));
    const ours = readAll(two);
    const theirs = tsharkFields(two, ["frame.len", "frame.time_epoch", "frame.interface_id", "frame.interface_name"]);
    assert.equal(ours.length, 35);
    assert.equal(theirs.length, 35);
    const rd = openCapture(two);
    while (rd.next() !== null);
    rd.close();
    assert.deepEqual(
      rd.sections.map((x) => x.byteOrder),
      ["le", "be"],
    );
    ours.forEach((r, i) => {
      assert.equal(String(r.origLen), theirs[i]![0]);
      assert.equal(epoch(r.tsSec, r.tsNsec), norm(theirs[i]![1]!));
      // tshark numbers interfaces within their section; ours are global, with the local id kept.
      const ifc = rd.interfaces[r.ifIndex]!;
      assert.equal(String(ifc.localId), theirs[i]![2], `frame ${i}: interface`);
      assert.equal(ifc.section, i < 30 ? 0 : 1);
      // (tshark 4.0 names second-section frames after the first section's interfaces.)
      assert.equal(ifc.name, i < 30 ? theirs[i]![3] : "big");
    });
  });
});

describe("tshark decodes a replay", () => {
  test("outside frames are masqueraded with valid checksums; inside replies are VLAN 10", (t) => {
    const why = missingTools("tshark");
    if (why !== null) {
      t.skip(why);
      return;
    }
    const d = tmp();
    const input = join(d, "in.pcap");
    const w = createCaptureWriter(input, { format: "pcap" });
    const fr = frames(60);
    fr.forEach((x, i) => {
      w.writePacket(0, 1_700_000_000, i * 1000, x, 0, x.length);
    });
    w.close();
    // tshark agrees the input is inside traffic with good checksums.
    const inRows = tsharkFields(input, ["ip.src", "ip.checksum.status"], ["-o", "ip.check_checksum:TRUE"]);
    assert.ok(inRows.every((r) => r[0]!.startsWith("10.10.0.") && r[1] === "1"));
    for (const format of ["pcapng", "pcap"] as const) {
      const output = join(d, `out.${format}`);
      const r = replayCapture({ input, output, format });
      assert.ok(r.ok, JSON.stringify(r));
      const outFile = r.outputs.outside;
      const rows = tsharkFields(
        outFile,
        ["ip.src", "ip.dst", "ip.ttl", "ip.checksum.status", "udp.checksum.status", "tcp.checksum.status", "frame.interface_name"],
        ["-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE"],
      );
      const outside = format === "pcapng" ? rows.filter((x) => x[6] === "outside") : rows;
      assert.equal(outside.length, 60);
      for (const x of outside) {
        assert.equal(x[0], "198.51.100.1");
        assert.equal(x[1], "198.51.100.10");
        assert.equal(x[2], "63");
        assert.equal(x[3], "1", "IPv4 checksum good");
        assert.ok(x[4] === "1" || x[5] === "1", `L4 checksum good: ${x.join(" ")}`);
      }
    }
  });
});
