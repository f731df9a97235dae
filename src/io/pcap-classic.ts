/**
 * Classic pcap (libpcap's format, draft-ietf-opsawg-pcap): a 24-byte file
 * header, then records of a 16-byte header and the captured bytes.
 *
 * ```
 *  file header                                 record header
 *   0 magic    a1b2c3d4 (µs) / a1b23c4d (ns)    0 ts_sec
 *   4 version  2.4                               4 ts_usec or ts_nsec
 *   8 thiszone, 12 sigfigs                       8 caplen   (bytes that follow)
 *  16 snaplen                                   12 origlen  (bytes on the wire)
 *  20 linktype (low 16 bits; bit 26 + 28..31: FCS length)
 * ```
 *
 * The magic, read in either byte order, gives the byte order of the whole
 * file. Reading streams through one buffer; writing goes through a buffered
 * sink.
 *
 * @module
 */

import {
  type ByteOrder,
  type CaptureFormat,
  CaptureFormatError,
  type CaptureInterface,
  type CaptureReader,
  CaptureRecord,
  type CaptureSection,
  type CaptureWriter,
  LINKTYPE_ETHERNET,
  MAX_RECORD,
  type WriterInterfaceOptions,
} from "./capture.js";
import { FileSink, type FileSource } from "./stream.js";
import { TSRES_NSEC, TSRES_USEC } from "./timestamp.js";

export const PCAP_MAGIC_USEC = 0xa1b2c3d4;
export const PCAP_MAGIC_NSEC = 0xa1b23c4d;
/** Alexey Kuznetzov's "modified" pcap (not supported, recognised for the message). */
export const PCAP_MAGIC_MODIFIED = 0xa1b2cd34;
export const PCAP_HEADER_LEN = 24;
export const PCAP_RECORD_HEADER_LEN = 16;
/** Default snaplen of writers (tcpdump's and Wireshark's). */
export const DEFAULT_SNAPLEN = 262144;

/** Streaming reader of a classic pcap file. */
export class PcapReader implements CaptureReader {
  readonly format: CaptureFormat = "pcap";
  readonly file: string;
  readonly interfaces: CaptureInterface[];
  readonly sections: CaptureSection[];
  readonly skippedBlocks = new Map<number, number>();
  readonly byteOrder: ByteOrder;
  readonly nsec: boolean;
  readonly snaplen: number;
  readonly linkType: number;
  readonly version: string;
  private readonly src: FileSource;
  private readonly le: boolean;
  private readonly rec = new CaptureRecord();
  private count = 0;

  /** Parse the file header of `src` (positioned at 0). Throws CaptureFormatError. */
  constructor(src: FileSource) {
    this.src = src;
    this.file = src.file;
    if (!src.ensure(PCAP_HEADER_LEN)) {
      throw new CaptureFormatError(src.file, src.available(), `truncated pcap file header: ${src.available()} of ${PCAP_HEADER_LEN} bytes`);
    }
    const v = src.view;
    const at = src.lo;
    const m = v.getUint32(at, true);
    if (m === PCAP_MAGIC_USEC || m === PCAP_MAGIC_NSEC) this.le = true;
    else if (v.getUint32(at, false) === PCAP_MAGIC_USEC || v.getUint32(at, false) === PCAP_MAGIC_NSEC) this.le = false;
    else throw new CaptureFormatError(src.file, 0, `bad magic 0x${m.toString(16).padStart(8, "0")} (not a classic pcap file)`);
    const le = this.le;
    this.byteOrder = le ? "le" : "be";
    this.nsec = v.getUint32(at, le) === PCAP_MAGIC_NSEC;
    const major = v.getUint16(at + 4, le);
    const minor = v.getUint16(at + 6, le);
    if (major !== 2) throw new CaptureFormatError(src.file, 4, `unsupported pcap version ${major}.${minor} (expected 2.x)`);
    this.version = `${major}.${minor}`;
    this.snaplen = v.getUint32(at + 16, le);
    const network = v.getUint32(at + 20, le);
    this.linkType = network & 0xffff;
    const fcsLen = (network & 0x04000000) !== 0 ? (network >>> 28) * 2 : -1;
    src.consume(PCAP_HEADER_LEN);
    this.interfaces = [
      {
        id: 0,
        section: 0,
        localId: 0,
        linkType: this.linkType,
        snaplen: this.snaplen,
        name: null,
        description: null,
        tsresol: this.nsec ? TSRES_NSEC : TSRES_USEC,
        tsOffset: 0,
        fcsLen,
      },
    ];
    this.sections = [{ index: 0, byteOrder: this.byteOrder, offset: 0, version: this.version, hardware: null, os: null, userappl: null }];
    this.rec.linkType = this.linkType;
  }

  next(): CaptureRecord | null {
    const src = this.src;
    const start = src.pos();
    if (!src.ensure(PCAP_RECORD_HEADER_LEN)) {
      const have = src.available();
      if (have === 0) return null;
      throw new CaptureFormatError(this.file, start, `truncated record header: ${have} of ${PCAP_RECORD_HEADER_LEN} bytes before the end of the file`);
    }
    const v = src.view;
    const at = src.lo;
    const le = this.le;
    const sec = v.getUint32(at, le);
    let frac = v.getUint32(at + 4, le);
    const caplen = v.getUint32(at + 8, le);
    const origLen = v.getUint32(at + 12, le);
    if (caplen > MAX_RECORD) throw new CaptureFormatError(this.file, start + 8, `absurd record caplen ${caplen} (limit ${MAX_RECORD})`);
    if (this.snaplen !== 0 && caplen > this.snaplen) {
      throw new CaptureFormatError(this.file, start + 8, `record caplen ${caplen} exceeds snaplen ${this.snaplen}`);
    }
    if (caplen > origLen) {
      throw new CaptureFormatError(this.file, start + 8, `record caplen ${caplen} exceeds its original length ${origLen}`);
    }
    if (!src.ensure(PCAP_RECORD_HEADER_LEN + caplen)) {
      throw new CaptureFormatError(
        this.file,
        start,
        `truncated record: caplen ${caplen} but only ${src.available() - PCAP_RECORD_HEADER_LEN} bytes before the end of the file`,
      );
    }
    const r = this.rec;
    // A fraction of a second past one second (seen in the wild): carry it.
    const perSec = this.nsec ? 1e9 : 1e6;
    let s = sec;
    if (frac >= perSec) {
      s += Math.floor(frac / perSec);
      frac %= perSec;
    }
    r.tsSec = s;
    r.tsNsec = this.nsec ? frac : frac * 1000;
    r.caplen = caplen;
    r.origLen = origLen;
    r.buf = src.buf;
    r.offset = src.lo + PCAP_RECORD_HEADER_LEN;
    r.fileOffset = start;
    r.index = this.count++;
    src.consume(PCAP_RECORD_HEADER_LEN + caplen);
    return r;
  }

  bufferSize(): number {
    return this.src.capacity();
  }

  fileSize(): number {
    return this.src.size;
  }

  close(): void {
    this.src.close();
  }
}

/** Options of a classic pcap writer. */
export interface PcapWriterOptions {
  /** Default "le". */
  byteOrder?: ByteOrder;
  /** Default "us". */
  resolution?: "us" | "ns";
  /** Default 262144. */
  snaplen?: number;
  /** Default 1 (Ethernet). */
  linkType?: number;
}

/** Streaming writer of a classic pcap file. The file header is written at creation. */
export class PcapWriter implements CaptureWriter {
  readonly format: CaptureFormat = "pcap";
  readonly file: string;
  readonly le: boolean;
  readonly nsec: boolean;
  readonly snaplen: number;
  readonly linkType: number;
  packets = 0;
  private readonly sink: FileSink;
  private declared = false;
  /** Bytes of the packet in progress still to take / to drop (over snaplen). */
  private take = 0;
  private open = false;

  constructor(file: string, o: PcapWriterOptions = {}) {
    this.file = file;
    this.le = (o.byteOrder ?? "le") === "le";
    this.nsec = (o.resolution ?? "us") === "ns";
    this.snaplen = o.snaplen ?? DEFAULT_SNAPLEN;
    this.linkType = o.linkType ?? LINKTYPE_ETHERNET;
    if (!Number.isInteger(this.snaplen) || this.snaplen < 1 || this.snaplen > MAX_RECORD) {
      throw new RangeError(`PcapWriter: snaplen ${this.snaplen} must be 1..${MAX_RECORD}`);
    }
    this.sink = new FileSink(file);
    const at = this.sink.reserve(PCAP_HEADER_LEN);
    const v = this.sink.view;
    v.setUint32(at, this.nsec ? PCAP_MAGIC_NSEC : PCAP_MAGIC_USEC, this.le);
    v.setUint16(at + 4, 2, this.le);
    v.setUint16(at + 6, 4, this.le);
    v.setInt32(at + 8, 0, this.le);
    v.setUint32(at + 12, 0, this.le);
    v.setUint32(at + 16, this.snaplen, this.le);
    v.setUint32(at + 20, this.linkType, this.le);
  }

  /** The one interface is the file header's; options must agree with it. */
  addInterface(o: WriterInterfaceOptions = {}): number {
    if (this.declared) throw new Error(`PcapWriter ${this.file}: classic pcap has one interface (use pcapng for more)`);
    if ((o.linkType ?? this.linkType) !== this.linkType || (o.snaplen ?? this.snaplen) !== this.snaplen) {
      throw new Error(`PcapWriter ${this.file}: the interface must match the file header (link type ${this.linkType}, snaplen ${this.snaplen})`);
    }
    this.declared = true;
    return 0;
  }

  writePacket(ifIndex: number, tsSec: number, tsNsec: number, src: Uint8Array, off: number, len: number, origLen = len): void {
    this.beginPacket(ifIndex, tsSec, tsNsec, len, origLen);
    this.append(src, off, len);
    this.endPacket();
  }

  beginPacket(ifIndex: number, tsSec: number, tsNsec: number, len: number, origLen = len): void {
    if (this.open) throw new Error(`PcapWriter ${this.file}: beginPacket inside a packet`);
    if (ifIndex !== 0) throw new RangeError(`PcapWriter ${this.file}: no interface ${ifIndex} (classic pcap has only 0)`);
    if (!(tsSec >= 0 && tsSec < 2 ** 32)) throw new RangeError(`PcapWriter ${this.file}: timestamp ${tsSec} s out of range`);
    const caplen = Math.min(len, this.snaplen);
    const at = this.sink.reserve(PCAP_RECORD_HEADER_LEN);
    const v = this.sink.view;
    v.setUint32(at, tsSec, this.le);
    v.setUint32(at + 4, this.nsec ? tsNsec : Math.floor(tsNsec / 1000), this.le);
    v.setUint32(at + 8, caplen, this.le);
    v.setUint32(at + 12, Math.max(origLen, len), this.le);
    this.take = caplen;
    this.open = true;
  }

  append(src: Uint8Array, off: number, n: number): void {
    const k = Math.min(n, this.take);
    if (k > 0) this.sink.write(src, off, k);
    this.take -= k;
  }

  endPacket(): void {
    if (this.take !== 0) throw new Error(`PcapWriter ${this.file}: packet ended ${this.take} bytes short`);
    this.open = false;
    this.packets++;
  }

  flush(): void {
    this.sink.flush();
  }

  close(): void {
    this.sink.close();
  }
}
