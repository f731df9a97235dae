/**
 * pcapng (draft-ietf-opsawg-pcapng): a sequence of blocks, each
 *
 * ```
 *   0 block type   4 block total length   8 body ...   options ...   total length again
 * ```
 *
 * grouped in sections that each start with a Section Header Block (SHB)
 * whose byte-order magic (0x1A2B3C4D) sets the byte order of the section.
 * Interface Description Blocks (IDB) declare interfaces (link type,
 * snaplen, `if_tsresol`, `if_tsoffset`, ...); packets come in Enhanced
 * (EPB), Simple (SPB) or obsolete (OPB) Packet Blocks. Every other block
 * type (name resolution, statistics, secrets, custom, ...) is skipped by its
 * length, its trailing length still checked.
 *
 * Options are `code:u16 length:u16 value` padded to 4 bytes and end with
 * `opt_endofopt` (or the end of the block).
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
import { DEFAULT_SNAPLEN } from "./pcap-classic.js";
import { FileSink, type FileSource } from "./stream.js";
import { type TsResolution, TSRES_NSEC, TSRES_USEC, tsresolFromByte, tsresolToByte, tsToUnits, type UnitsOut, unitsPerSecond, unitsToTs } from "./timestamp.js";

export const BT_SHB = 0x0a0d0d0a;
export const BT_IDB = 0x00000001;
export const BT_OPB = 0x00000002;
export const BT_SPB = 0x00000003;
export const BT_NRB = 0x00000004;
export const BT_ISB = 0x00000005;
export const BT_EPB = 0x00000006;
export const BT_DSB = 0x0000000a;
export const BT_SYSTEMD_JOURNAL = 0x00000009;
/** Custom blocks (copyable / not to be copied). */
export const BT_CB = 0x00000bad;
export const BT_CB_NOCOPY = 0x40000bad;
export const BYTE_ORDER_MAGIC = 0x1a2b3c4d;

export const OPT_ENDOFOPT = 0;
export const OPT_COMMENT = 1;
export const SHB_HARDWARE = 2;
export const SHB_OS = 3;
export const SHB_USERAPPL = 4;
export const IF_NAME = 2;
export const IF_DESCRIPTION = 3;
export const IF_TSRESOL = 9;
export const IF_FCSLEN = 13;
export const IF_TSOFFSET = 14;
export const EPB_FLAGS = 2;

/** Smallest legal total length per block type (header, fixed body, trailer). */
const MIN_LEN: Record<number, number> = { [BT_SHB]: 28, [BT_IDB]: 20, [BT_EPB]: 32, [BT_SPB]: 16, [BT_OPB]: 32 };

/** Names of block types for reports. */
export const BLOCK_TYPE_NAMES: Readonly<Record<number, string>> = Object.freeze({
  [BT_SHB]: "SHB",
  [BT_IDB]: "IDB",
  [BT_OPB]: "OPB",
  [BT_SPB]: "SPB",
  [BT_NRB]: "NRB",
  [BT_ISB]: "ISB",
  [BT_EPB]: "EPB",
  [BT_DSB]: "DSB",
  [BT_CB]: "CB",
  [BT_CB_NOCOPY]: "CB-nocopy",
  [BT_SYSTEMD_JOURNAL]: "systemd-journal",
});

/** "NRB", "ISB", or "0x00000123". */
export function blockTypeName(t: number): string {
  return BLOCK_TYPE_NAMES[t] ?? `0x${t.toString(16).padStart(8, "0")}`;
}

const utf8 = new TextDecoder();

const BLOCK_EOF = 0;
const BLOCK_PACKET = 1;
const BLOCK_OTHER = 2;

interface IfState extends CaptureInterface {
  perSec: number;
}

/** Streaming reader of a pcapng file. */
export class PcapngReader implements CaptureReader {
  readonly format: CaptureFormat = "pcapng";
  readonly file: string;
  readonly interfaces: CaptureInterface[] = [];
  readonly sections: CaptureSection[] = [];
  readonly skippedBlocks = new Map<number, number>();
  private readonly src: FileSource;
  private le = true;
  /** Interfaces of the current section, by local id. */
  private local: IfState[] = [];
  private readonly rec = new CaptureRecord();
  private count = 0;

  /** Check that `src` starts with a section header and read it. Throws CaptureFormatError. */
  constructor(src: FileSource) {
    this.src = src;
    this.file = src.file;
    if (!src.ensure(12)) {
      throw new CaptureFormatError(src.file, src.available(), `truncated pcapng section header: ${src.available()} of 28 bytes`);
    }
    const t = src.view.getUint32(src.lo, true);
    if (t !== BT_SHB) throw new CaptureFormatError(src.file, 0, `bad magic 0x${t.toString(16).padStart(8, "0")} (a pcapng file starts with a section header block)`);
    // The first section header now, so that byte order and version are known after opening.
    this.block();
  }

  private fail(offset: number, what: string): never {
    throw new CaptureFormatError(this.file, offset, what);
  }

  next(): CaptureRecord | null {
    for (;;) {
      const k = this.block();
      if (k === BLOCK_EOF) return null;
      if (k === BLOCK_PACKET) return this.rec;
    }
  }

  /** Read one block: BLOCK_EOF, BLOCK_PACKET (the record is filled) or BLOCK_OTHER. */
  private block(): number {
    const src = this.src;
    const start = src.pos();
    if (!src.ensure(8)) {
      if (src.available() === 0) return BLOCK_EOF;
      this.fail(start, `truncated block header: ${src.available()} of 8 bytes before the end of the file`);
    }
    const type = src.view.getUint32(src.lo, this.le);
    if (type === BT_SHB) {
      // The byte order of a section comes from its own header.
      if (!src.ensure(12)) this.fail(start, "truncated section header block");
      const m = src.view.getUint32(src.lo + 8, true);
      if (m === BYTE_ORDER_MAGIC) this.le = true;
      else if (src.view.getUint32(src.lo + 8, false) === BYTE_ORDER_MAGIC) this.le = false;
      else this.fail(start + 8, `bad byte-order magic 0x${m.toString(16).padStart(8, "0")} in section header`);
    }
    const le = this.le;
    const len = src.view.getUint32(src.lo + 4, le);
    if (len % 4 !== 0) this.fail(start + 4, `block length ${len} is not a multiple of 4 (${blockTypeName(type)})`);
    const min = MIN_LEN[type] ?? 12;
    if (len < min) this.fail(start + 4, `block length ${len} too small for a ${blockTypeName(type)} (minimum ${min})`);
    const known = type === BT_SHB || type === BT_IDB || type === BT_EPB || type === BT_SPB || type === BT_OPB;
    if (!known) {
      if (this.sections.length === 0) this.fail(start, "block before the first section header");
      src.skip(len - 4);
      const tailAt = src.pos();
      if (!src.ensure(4)) this.fail(start, `truncated ${blockTypeName(type)} block: length ${len} runs past the end of the file (${src.size} bytes)`);
      const tail = src.view.getUint32(src.lo, le);
      if (tail !== len) this.fail(tailAt, `block length mismatch: ${blockTypeName(type)} at byte ${start} starts with ${len} and ends with ${tail}`);
      src.consume(4);
      this.skippedBlocks.set(type, (this.skippedBlocks.get(type) ?? 0) + 1);
      return BLOCK_OTHER;
    }
    if (len > MAX_RECORD + 64) this.fail(start + 4, `absurd block length ${len} (${blockTypeName(type)}, limit ${MAX_RECORD + 64})`);
    if (!src.ensure(len)) {
      this.fail(start, `truncated ${blockTypeName(type)} block: length ${len} but only ${src.available()} bytes before the end of the file`);
    }
    const b = src.lo;
    const tail = src.view.getUint32(b + len - 4, le);
    if (tail !== len) this.fail(start + len - 4, `block length mismatch: ${blockTypeName(type)} at byte ${start} starts with ${len} and ends with ${tail}`);
    if (type !== BT_SHB && this.sections.length === 0) this.fail(start, "block before the first section header");
    let r: CaptureRecord | null = null;
    switch (type) {
      case BT_SHB:
        this.readShb(b, len, start);
        break;
      case BT_IDB:
        this.readIdb(b, len, start);
        break;
      case BT_EPB:
        r = this.readEpb(b, len, start);
        break;
      case BT_SPB:
        r = this.readSpb(b, len, start);
        break;
      default:
        r = this.readOpb(b, len, start);
        break;
    }
    src.consume(len);
    return r !== null ? BLOCK_PACKET : BLOCK_OTHER;
  }

  /**
   * Walk the options in buf[from, end): `fn(code, valueOffset, valueLen)` per
   * option; stops at opt_endofopt. Errors name the option's file offset.
   */
  private options(from: number, end: number, start: number, fn: (code: number, at: number, n: number) => void): void {
    const v = this.src.view;
    const le = this.le;
    const base = start - this.src.lo;
    let at = from;
    while (at + 4 <= end) {
      const code = v.getUint16(at, le);
      const n = v.getUint16(at + 2, le);
      if (code === OPT_ENDOFOPT) return;
      const padded = (n + 3) & ~3;
      if (at + 4 + padded > end) this.fail(base + at, `option ${code} of length ${n} overruns its block`);
      fn(code, at + 4, n);
      at += 4 + padded;
    }
    if (at !== end) this.fail(base + at, `${end - at} stray bytes after the options`);
  }

  private str(at: number, n: number): string {
    return utf8.decode(this.src.buf.subarray(at, at + n)).replace(/\0+$/, "");
  }

  private readShb(b: number, len: number, start: number): void {
    const v = this.src.view;
    const le = this.le;
    const major = v.getUint16(b + 12, le);
    const minor = v.getUint16(b + 14, le);
    if (major !== 1) this.fail(start + 12, `unsupported pcapng version ${major}.${minor} (expected 1.x)`);
    const sec: CaptureSection = {
      index: this.sections.length,
      byteOrder: le ? "le" : "be",
      offset: start,
      version: `${major}.${minor}`,
      hardware: null,
      os: null,
      userappl: null,
    };
    this.options(b + 24, b + len - 4, start, (code, at, n) => {
      if (code === SHB_HARDWARE) sec.hardware = this.str(at, n);
      else if (code === SHB_OS) sec.os = this.str(at, n);
      else if (code === SHB_USERAPPL) sec.userappl = this.str(at, n);
    });
    this.sections.push(sec);
    this.local = [];
  }

  private readIdb(b: number, len: number, start: number): void {
    const v = this.src.view;
    const le = this.le;
    const ifc: IfState = {
      id: this.interfaces.length,
      section: this.sections.length - 1,
      localId: this.local.length,
      linkType: v.getUint16(b + 8, le),
      snaplen: v.getUint32(b + 12, le),
      name: null,
      description: null,
      tsresol: TSRES_USEC,
      tsOffset: 0,
      fcsLen: -1,
      perSec: 1e6,
    };
    this.options(b + 16, b + len - 4, start, (code, at, n) => {
      if (code === IF_NAME) ifc.name = this.str(at, n);
      else if (code === IF_DESCRIPTION) ifc.description = this.str(at, n);
      else if (code === IF_TSRESOL) {
        if (n !== 1) this.fail(start + (at - b), `if_tsresol has length ${n} (expected 1)`);
        const r = tsresolFromByte(v.getUint8(at));
        if ((r.base === 10 && r.exp > 19) || (r.base === 2 && r.exp > 63)) this.fail(start + (at - b), `absurd if_tsresol 0x${v.getUint8(at).toString(16)}`);
        ifc.tsresol = r;
      } else if (code === IF_TSOFFSET) {
        if (n !== 8) this.fail(start + (at - b), `if_tsoffset has length ${n} (expected 8)`);
        ifc.tsOffset = Number(v.getBigInt64(at, le));
      } else if (code === IF_FCSLEN) {
        if (n === 1) ifc.fcsLen = v.getUint8(at);
      }
    });
    ifc.perSec = unitsPerSecond(ifc.tsresol);
    this.local.push(ifc);
    this.interfaces.push(ifc);
  }

  private iface(localId: number, at: number): IfState {
    const ifc = this.local[localId];
    if (ifc === undefined) this.fail(at, `packet refers to interface ${localId}, but its section declares ${this.local.length}`);
    return ifc;
  }

  /** Fill the record for a packet at buf[dataAt .. dataAt + caplen) (checks shared by EPB, OPB, SPB). */
  private fill(type: number, ifc: IfState, start: number, dataAt: number, caplen: number, origLen: number, room: number): CaptureRecord {
    if (caplen > room) this.fail(start + 20, `packet data (caplen ${caplen}) overruns its ${blockTypeName(type)} (${room} bytes of room)`);
    if (ifc.snaplen !== 0 && caplen > ifc.snaplen) this.fail(start + 20, `packet caplen ${caplen} exceeds snaplen ${ifc.snaplen} of interface ${ifc.localId}`);
    if (caplen > origLen) this.fail(start + 20, `packet caplen ${caplen} exceeds its original length ${origLen}`);
    const r = this.rec;
    r.ifIndex = ifc.id;
    r.linkType = ifc.linkType;
    r.caplen = caplen;
    r.origLen = origLen;
    r.buf = this.src.buf;
    r.offset = dataAt;
    r.fileOffset = start;
    r.index = this.count++;
    r.flags = 0;
    r.blockType = type;
    return r;
  }

  private stamp(ifc: IfState, hi: number, lo: number): void {
    const r = this.rec;
    unitsToTs(hi, lo, ifc.tsresol, ifc.perSec, r);
    r.tsSec += ifc.tsOffset;
  }

  /** pack_flags / epb_flags from the options at buf[from, end) (0 when absent), checked as {@link options} does. */
  private flagsOption(from: number, end: number, start: number): number {
    const v = this.src.view;
    const le = this.le;
    let flags = 0;
    let at = from;
    while (at + 4 <= end) {
      const code = v.getUint16(at, le);
      const n = v.getUint16(at + 2, le);
      if (code === OPT_ENDOFOPT) return flags;
      const padded = (n + 3) & ~3;
      if (at + 4 + padded > end) this.fail(start + (at - this.src.lo), `option ${code} of length ${n} overruns its block`);
      if (code === EPB_FLAGS && n === 4) flags = v.getUint32(at + 4, le);
      at += 4 + padded;
    }
    if (at !== end) this.fail(start + (at - this.src.lo), `${end - at} stray bytes after the options`);
    return flags;
  }

  private readEpb(b: number, len: number, start: number): CaptureRecord {
    const v = this.src.view;
    const le = this.le;
    const ifc = this.iface(v.getUint32(b + 8, le), start + 8);
    const caplen = v.getUint32(b + 20, le);
    const r = this.fill(BT_EPB, ifc, start, b + 28, caplen, v.getUint32(b + 24, le), len - 32);
    this.stamp(ifc, v.getUint32(b + 12, le), v.getUint32(b + 16, le));
    r.flags = this.flagsOption(b + 28 + ((caplen + 3) & ~3), b + len - 4, start);
    return r;
  }

  private readOpb(b: number, len: number, start: number): CaptureRecord {
    const v = this.src.view;
    const le = this.le;
    const ifc = this.iface(v.getUint16(b + 8, le), start + 8);
    const caplen = v.getUint32(b + 20, le);
    const r = this.fill(BT_OPB, ifc, start, b + 28, caplen, v.getUint32(b + 24, le), len - 32);
    this.stamp(ifc, v.getUint32(b + 12, le), v.getUint32(b + 16, le));
    r.flags = this.flagsOption(b + 28 + ((caplen + 3) & ~3), b + len - 4, start);
    return r;
  }

  private readSpb(b: number, len: number, start: number): CaptureRecord {
    const v = this.src.view;
    const ifc = this.iface(0, start);
    const origLen = v.getUint32(b + 8, this.le);
    // No caplen field: the data runs to the block's end, capped by the snaplen.
    let caplen = Math.min(origLen, len - 16);
    if (ifc.snaplen !== 0) caplen = Math.min(caplen, ifc.snaplen);
    const r = this.fill(BT_SPB, ifc, start, b + 12, caplen, origLen, len - 16);
    r.tsSec = 0;
    r.tsNsec = 0;
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

/** Options of a pcapng writer. */
export interface PcapngWriterOptions {
  /** Default "le". */
  byteOrder?: ByteOrder;
  /** Default resolution of interfaces: "us" (no if_tsresol option) or "ns". */
  resolution?: "us" | "ns";
  hardware?: string;
  os?: string;
  userappl?: string;
}

/** Interface options of the pcapng writer. */
export interface PcapngInterfaceOptions extends WriterInterfaceOptions {
  resolution?: "us" | "ns";
}

const enc = new TextEncoder();

/**
 * Streaming writer of a pcapng file: one section (SHB written at
 * creation), interfaces declared with {@link addInterface}, packets as EPBs
 * (with `epb_flags` when given).
 */
export class PcapngWriter implements CaptureWriter {
  readonly format: CaptureFormat = "pcapng";
  readonly file: string;
  readonly le: boolean;
  packets = 0;
  private readonly sink: FileSink;
  private readonly defaultRes: "us" | "ns";
  private readonly ifs: { snaplen: number; perSec: number }[] = [];
  private readonly units: UnitsOut = { hi: 0, lo: 0 };
  private take = 0;
  private pad = 0;
  private flags = 0;
  private total = 0;
  private open = false;

  constructor(file: string, o: PcapngWriterOptions = {}) {
    this.file = file;
    this.le = (o.byteOrder ?? "le") === "le";
    this.defaultRes = o.resolution ?? "us";
    this.sink = new FileSink(file);
    const opts: [number, Uint8Array][] = [];
    if (o.hardware !== undefined) opts.push([SHB_HARDWARE, enc.encode(o.hardware)]);
    if (o.os !== undefined) opts.push([SHB_OS, enc.encode(o.os)]);
    if (o.userappl !== undefined) opts.push([SHB_USERAPPL, enc.encode(o.userappl)]);
    const body = 16 + optionsLen(opts);
    const at = this.sink.reserve(12 + body);
    const v = this.sink.view;
    v.setUint32(at, BT_SHB, this.le);
    v.setUint32(at + 4, 12 + body, this.le);
    v.setUint32(at + 8, BYTE_ORDER_MAGIC, this.le);
    v.setUint16(at + 12, 1, this.le);
    v.setUint16(at + 14, 0, this.le);
    v.setBigInt64(at + 16, -1n, this.le);
    const end = this.putOptions(at + 24, opts);
    v.setUint32(end, 12 + body, this.le);
  }

  private putOptions(at: number, opts: [number, Uint8Array][]): number {
    if (opts.length === 0) return at;
    const v = this.sink.view;
    for (const [code, val] of opts) {
      v.setUint16(at, code, this.le);
      v.setUint16(at + 2, val.length, this.le);
      this.sink.buf.set(val, at + 4);
      const padded = (val.length + 3) & ~3;
      this.sink.buf.fill(0, at + 4 + val.length, at + 4 + padded);
      at += 4 + padded;
    }
    v.setUint32(at, 0, this.le); // opt_endofopt
    return at + 4;
  }

  addInterface(o: PcapngInterfaceOptions = {}): number {
    const snaplen = o.snaplen ?? DEFAULT_SNAPLEN;
    if (!Number.isInteger(snaplen) || snaplen < 0 || snaplen > MAX_RECORD) throw new RangeError(`PcapngWriter: snaplen ${snaplen} must be 0..${MAX_RECORD}`);
    const res: TsResolution = (o.resolution ?? this.defaultRes) === "ns" ? TSRES_NSEC : TSRES_USEC;
    const opts: [number, Uint8Array][] = [];
    if (o.name !== undefined) opts.push([IF_NAME, enc.encode(o.name)]);
    if (o.description !== undefined) opts.push([IF_DESCRIPTION, enc.encode(o.description)]);
    if (res !== TSRES_USEC) opts.push([IF_TSRESOL, Uint8Array.of(tsresolToByte(res))]);
    const total = 20 + optionsLen(opts);
    const at = this.sink.reserve(total);
    const v = this.sink.view;
    v.setUint32(at, BT_IDB, this.le);
    v.setUint32(at + 4, total, this.le);
    v.setUint16(at + 8, o.linkType ?? LINKTYPE_ETHERNET, this.le);
    v.setUint16(at + 10, 0, this.le);
    v.setUint32(at + 12, snaplen, this.le);
    const end = this.putOptions(at + 16, opts);
    v.setUint32(end, total, this.le);
    this.ifs.push({ snaplen, perSec: unitsPerSecond(res) });
    return this.ifs.length - 1;
  }

  writePacket(ifIndex: number, tsSec: number, tsNsec: number, src: Uint8Array, off: number, len: number, origLen = len, flags = 0): void {
    this.beginPacket(ifIndex, tsSec, tsNsec, len, origLen, flags);
    this.append(src, off, len);
    this.endPacket();
  }

  beginPacket(ifIndex: number, tsSec: number, tsNsec: number, len: number, origLen = len, flags = 0): void {
    if (this.open) throw new Error(`PcapngWriter ${this.file}: beginPacket inside a packet`);
    const ifc = this.ifs[ifIndex];
    if (ifc === undefined) throw new RangeError(`PcapngWriter ${this.file}: no interface ${ifIndex} (declared ${this.ifs.length})`);
    if (!(tsSec >= 0 && tsSec < 2 ** 32)) throw new RangeError(`PcapngWriter ${this.file}: timestamp ${tsSec} s out of range`);
    const caplen = ifc.snaplen !== 0 ? Math.min(len, ifc.snaplen) : len;
    const padded = (caplen + 3) & ~3;
    const optLen = flags !== 0 ? 12 : 0;
    const total = 32 + padded + optLen;
    tsToUnits(tsSec, tsNsec, ifc.perSec, this.units);
    const at = this.sink.reserve(28);
    const v = this.sink.view;
    v.setUint32(at, BT_EPB, this.le);
    v.setUint32(at + 4, total, this.le);
    v.setUint32(at + 8, ifIndex, this.le);
    v.setUint32(at + 12, this.units.hi, this.le);
    v.setUint32(at + 16, this.units.lo, this.le);
    v.setUint32(at + 20, caplen, this.le);
    v.setUint32(at + 24, Math.max(origLen, len), this.le);
    this.take = caplen;
    this.pad = padded - caplen;
    this.flags = flags;
    this.total = total;
    this.open = true;
  }

  append(src: Uint8Array, off: number, n: number): void {
    const k = Math.min(n, this.take);
    if (k > 0) this.sink.write(src, off, k);
    this.take -= k;
  }

  endPacket(): void {
    if (this.take !== 0) throw new Error(`PcapngWriter ${this.file}: packet ended ${this.take} bytes short`);
    this.sink.zeros(this.pad);
    const at = this.sink.reserve(this.flags !== 0 ? 12 + 4 : 4);
    const v = this.sink.view;
    let p = at;
    if (this.flags !== 0) {
      v.setUint16(p, EPB_FLAGS, this.le);
      v.setUint16(p + 2, 4, this.le);
      v.setUint32(p + 4, this.flags, this.le);
      v.setUint32(p + 8, 0, this.le); // opt_endofopt (code 0, length 0)
      p += 12;
    }
    v.setUint32(p, this.total, this.le);
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

function optionsLen(opts: [number, Uint8Array][]): number {
  if (opts.length === 0) return 0;
  let n = 4; // opt_endofopt
  for (const [, val] of opts) n += 4 + ((val.length + 3) & ~3);
  return n;
}
