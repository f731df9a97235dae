/**
 * Capture files: classic pcap and pcapng, read as streams and written
 * through buffered sinks. This module picks the format (`openCapture`
 * sniffs the magic, `createCaptureWriter` takes a format name) and computes
 * the summary behind `skb pcap info`.
 *
 * ```ts
 * const r = openCapture("in.pcapng");
 * for (let rec = r.next(); rec !== null; rec = r.next()) use(rec.buf, rec.offset, rec.caplen);
 * r.close();
 * ```
 *
 * Records are reused views into the reader's buffer (valid until the next
 * `next()`); a truncated or corrupt file throws {@link CaptureFormatError}
 * naming the file, the byte offset and the problem.
 *
 * @module
 */

import { statSync } from "node:fs";
import {
  type ByteOrder,
  type CaptureFormat,
  CaptureFormatError,
  type CaptureReader,
  type CaptureWriter,
  linkTypeName,
} from "./capture.js";
import { PCAP_MAGIC_MODIFIED, PCAP_MAGIC_NSEC, PCAP_MAGIC_USEC, PcapReader, PcapWriter } from "./pcap-classic.js";
import { BT_SHB, blockTypeName, PcapngReader, PcapngWriter } from "./pcapng.js";
import { FileSource, SOURCE_BUFFER_SIZE } from "./stream.js";
import { tsIso, tsresolName } from "./timestamp.js";

export * from "./capture.js";
export { DEFAULT_SNAPLEN, PcapReader, PcapWriter, type PcapWriterOptions } from "./pcap-classic.js";
export { PcapngReader, PcapngWriter, type PcapngWriterOptions, type PcapngInterfaceOptions, blockTypeName } from "./pcapng.js";
export { tsIso } from "./timestamp.js";

/** Options of {@link openCapture}. */
export interface OpenCaptureOptions {
  /** Initial read buffer (default 1 MiB); it grows only for a record larger than itself. */
  bufferSize?: number;
}

/** Open a capture file of either format for streaming (sniffs the magic). */
export function openCapture(file: string, o: OpenCaptureOptions = {}): CaptureReader {
  const src = new FileSource(file, o.bufferSize ?? SOURCE_BUFFER_SIZE);
  try {
    if (!src.ensure(4)) {
      throw new CaptureFormatError(file, 0, src.available() === 0 ? "empty file" : `only ${src.available()} bytes: too short for a capture`);
    }
    const v = src.view;
    const le = v.getUint32(src.lo, true);
    const be = v.getUint32(src.lo, false);
    if (le === BT_SHB) return new PcapngReader(src);
    if (le === PCAP_MAGIC_USEC || le === PCAP_MAGIC_NSEC || be === PCAP_MAGIC_USEC || be === PCAP_MAGIC_NSEC) return new PcapReader(src);
    if (le === PCAP_MAGIC_MODIFIED || be === PCAP_MAGIC_MODIFIED) {
      throw new CaptureFormatError(file, 0, "modified (Kuznetzov) pcap is not supported; convert it with `editcap -F pcap`");
    }
    if ((be >>> 16) === 0x1f8b) throw new CaptureFormatError(file, 0, "gzip-compressed; decompress it first");
    throw new CaptureFormatError(file, 0, `bad magic 0x${be.toString(16).padStart(8, "0")} (neither pcap nor pcapng)`);
  } catch (e) {
    src.close();
    throw e;
  }
}

/** Options of {@link createCaptureWriter}. */
export interface CaptureWriterOptions {
  format: CaptureFormat;
  byteOrder?: ByteOrder;
  resolution?: "us" | "ns";
  /** Classic pcap: snaplen of the file header (pcapng: per interface). */
  snaplen?: number;
  linkType?: number;
}

/** Create a writer of either format (classic pcap writes its header now, pcapng its SHB). */
export function createCaptureWriter(file: string, o: CaptureWriterOptions): CaptureWriter {
  if (o.format === "pcap") {
    return new PcapWriter(file, {
      ...(o.byteOrder ? { byteOrder: o.byteOrder } : {}),
      ...(o.resolution ? { resolution: o.resolution } : {}),
      ...(o.snaplen !== undefined ? { snaplen: o.snaplen } : {}),
      ...(o.linkType !== undefined ? { linkType: o.linkType } : {}),
    });
  }
  return new PcapngWriter(file, {
    ...(o.byteOrder ? { byteOrder: o.byteOrder } : {}),
    ...(o.resolution ? { resolution: o.resolution } : {}),
    userappl: "skbuff",
  });
}

/** A timestamp in a report. */
export interface TsReport {
  sec: number;
  nsec: number;
  iso: string;
}

/** What `skb pcap info` reports. */
export interface CaptureInfo {
  file: string;
  fileBytes: number;
  format: CaptureFormat | null;
  /** Byte order per section (classic pcap: one). */
  byteOrders: ByteOrder[];
  version: string | null;
  sections: number;
  /** Resolutions in use ("us", "ns", ...). */
  resolutions: string[];
  /** Link types in use, as "ETHERNET (1)". */
  linkTypes: string[];
  interfaces: {
    id: number;
    section: number;
    linkType: string;
    snaplen: number;
    name: string | null;
    description: string | null;
    resolution: string;
    packets: number;
    bytes: number;
  }[];
  packets: number;
  /** Captured bytes (sum of caplen) and bytes on the wire (sum of origlen). */
  bytes: number;
  origBytes: number;
  /** Records cut short by the snaplen (caplen < origlen). */
  snapped: number;
  first: TsReport | null;
  last: TsReport | null;
  durationSec: number | null;
  /** pcapng blocks skipped, by block type name. */
  skippedBlocks: Record<string, number>;
  /** Read buffer at the end (bounded: the file is streamed). */
  bufferBytes: number;
  /** Errors (a truncated or corrupt file): what was read before is still reported. */
  errors: string[];
}

function ts(sec: number, nsec: number): TsReport {
  return { sec, nsec, iso: tsIso(sec, nsec) };
}

/** Stream through `file` and summarise it. Format errors land in `errors`; I/O errors throw. */
export function captureInfo(file: string): CaptureInfo {
  const info: CaptureInfo = {
    file,
    fileBytes: 0,
    format: null,
    byteOrders: [],
    version: null,
    sections: 0,
    resolutions: [],
    linkTypes: [],
    interfaces: [],
    packets: 0,
    bytes: 0,
    origBytes: 0,
    snapped: 0,
    first: null,
    last: null,
    durationSec: null,
    skippedBlocks: {},
    bufferBytes: 0,
    errors: [],
  };
  info.fileBytes = statSync(file).size;
  let r: CaptureReader;
  try {
    r = openCapture(file);
  } catch (e) {
    if (e instanceof CaptureFormatError) {
      info.errors.push(e.message);
      return info;
    }
    throw e;
  }
  info.format = r.format;
  const perIf: { packets: number; bytes: number }[] = [];
  let fSec = 0;
  let fNsec = 0;
  let lSec = 0;
  let lNsec = 0;
  let minSec = Number.POSITIVE_INFINITY;
  let minNsec = 0;
  let maxSec = Number.NEGATIVE_INFINITY;
  let maxNsec = 0;
  try {
    for (let rec = r.next(); rec !== null; rec = r.next()) {
      if (info.packets === 0) {
        fSec = rec.tsSec;
        fNsec = rec.tsNsec;
      }
      lSec = rec.tsSec;
      lNsec = rec.tsNsec;
      if (rec.tsSec < minSec || (rec.tsSec === minSec && rec.tsNsec < minNsec)) {
        minSec = rec.tsSec;
        minNsec = rec.tsNsec;
      }
      if (rec.tsSec > maxSec || (rec.tsSec === maxSec && rec.tsNsec > maxNsec)) {
        maxSec = rec.tsSec;
        maxNsec = rec.tsNsec;
      }
      info.packets++;
      info.bytes += rec.caplen;
      info.origBytes += rec.origLen;
      if (rec.caplen < rec.origLen) info.snapped++;
      const p = (perIf[rec.ifIndex] ??= { packets: 0, bytes: 0 });
      p.packets++;
      p.bytes += rec.caplen;
    }
  } catch (e) {
    if (!(e instanceof CaptureFormatError)) {
      r.close();
      throw e;
    }
    info.errors.push(e.message);
  }
  info.bufferBytes = r.bufferSize();
  r.close();
  info.sections = r.sections.length;
  info.byteOrders = r.sections.map((s) => s.byteOrder);
  info.version = r.sections[0]?.version ?? null;
  info.interfaces = r.interfaces.map((i) => ({
    id: i.id,
    section: i.section,
    linkType: linkTypeName(i.linkType),
    snaplen: i.snaplen,
    name: i.name,
    description: i.description,
    resolution: tsresolName(i.tsresol),
    packets: perIf[i.id]?.packets ?? 0,
    bytes: perIf[i.id]?.bytes ?? 0,
  }));
  info.linkTypes = [...new Set(info.interfaces.map((i) => i.linkType))];
  info.resolutions = [...new Set(info.interfaces.map((i) => i.resolution))];
  for (const [t, n] of r.skippedBlocks) info.skippedBlocks[blockTypeName(t)] = n;
  if (info.packets > 0) {
    info.first = ts(fSec, fNsec);
    info.last = ts(lSec, lNsec);
    info.durationSec = maxSec - minSec + (maxNsec - minNsec) / 1e9;
  }
  return info;
}

/** Human-readable `skb pcap info` (cold). */
export function formatCaptureInfo(i: CaptureInfo): string {
  const lines: string[] = [];
  const kv = (k: string, v: string | number) => lines.push(`${`${k}:`.padEnd(20)}${v}`);
  kv("file", `${i.file} (${i.fileBytes} bytes)`);
  kv("format", i.format === null ? "unknown" : `${i.format} ${i.version ?? ""}`.trim());
  if (i.format !== null) {
    kv("byte order", [...new Set(i.byteOrders)].map((b) => (b === "le" ? "little-endian" : "big-endian")).join(", ") || "-");
    if (i.format === "pcapng") kv("sections", i.sections);
    kv("resolution", i.resolutions.join(", ") || "-");
    kv("link types", i.linkTypes.join(", ") || "-");
    kv("interfaces", i.interfaces.length);
    for (const f of i.interfaces) {
      const name = f.name !== null ? ` '${f.name}'` : "";
      lines.push(
        `  #${f.id}${name}: ${f.linkType}, snaplen ${f.snaplen}, ${f.resolution}` +
          `${i.format === "pcapng" ? `, section ${f.section}` : ""}, ${f.packets} packets, ${f.bytes} bytes`,
      );
    }
    kv("packets", i.packets);
    kv("bytes", `${i.bytes} captured, ${i.origBytes} on the wire${i.snapped > 0 ? ` (${i.snapped} packets cut by the snaplen)` : ""}`);
    kv("first packet", i.first === null ? "-" : i.first.iso);
    kv("last packet", i.last === null ? "-" : i.last.iso);
    kv("duration", i.durationSec === null ? "-" : `${i.durationSec.toFixed(9)} s`);
    const sk = Object.entries(i.skippedBlocks);
    if (sk.length > 0) kv("skipped blocks", sk.map(([k, n]) => `${k} ${n}`).join(", "));
  }
  kv("errors", i.errors.length === 0 ? "none" : i.errors.join("; "));
  return lines.join("\n");
}
