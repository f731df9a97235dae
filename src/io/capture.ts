/**
 * What the capture readers and writers share: the record a reader hands
 * out (one object per reader, reused), interface descriptions, the format
 * error (naming file, byte offset and what is wrong), and the reader and
 * writer interfaces both formats implement.
 *
 * @module
 */

import type { TsResolution } from "./timestamp.js";

/** LINKTYPE_ETHERNET. */
export const LINKTYPE_ETHERNET = 1;

/** Names of common link types (for reports). */
export const LINKTYPE_NAMES: Readonly<Record<number, string>> = Object.freeze({
  0: "NULL",
  1: "ETHERNET",
  101: "RAW",
  105: "IEEE802_11",
  113: "LINUX_SLL",
  127: "IEEE802_11_RADIOTAP",
  228: "IPV4",
  229: "IPV6",
  276: "LINUX_SLL2",
});

/** "ETHERNET (1)", "LINKTYPE_147 (147)". */
export function linkTypeName(lt: number): string {
  return `${LINKTYPE_NAMES[lt] ?? `LINKTYPE_${lt}`} (${lt})`;
}

/** Capture file formats. */
export type CaptureFormat = "pcap" | "pcapng";
/** Byte orders. */
export type ByteOrder = "le" | "be";

/** The largest record or block a reader accepts before calling it absurd (16 MiB). */
export const MAX_RECORD = 16 << 20;

/**
 * A truncated or corrupt capture: the message names the file, the byte
 * offset and what is wrong, e.g.
 * `cap.pcap: byte 1040: record caplen 70000 exceeds snaplen 65535`.
 */
export class CaptureFormatError extends Error {
  override name = "CaptureFormatError";
  readonly file: string;
  readonly offset: number;
  readonly reason: string;

  constructor(file: string, offset: number, reason: string) {
    super(`${file}: byte ${offset}: ${reason}`);
    this.file = file;
    this.offset = offset;
    this.reason = reason;
  }
}

/** One interface of a capture (classic pcap has exactly one). */
export interface CaptureInterface {
  /** Index over the whole file (pcapng: in order of the IDBs across sections). */
  id: number;
  /** pcapng section (0 for classic pcap). */
  section: number;
  /** Index inside its section (what EPBs refer to). */
  localId: number;
  linkType: number;
  /** 0 = unlimited. */
  snaplen: number;
  name: string | null;
  description: string | null;
  tsresol: TsResolution;
  /** `if_tsoffset`: seconds added to every timestamp. */
  tsOffset: number;
  /** FCS bytes at the end of each frame, -1 when unknown. */
  fcsLen: number;
}

/** A pcapng section header (classic pcap: one pseudo-section). */
export interface CaptureSection {
  index: number;
  byteOrder: ByteOrder;
  /** File offset of the section header. */
  offset: number;
  version: string;
  hardware: string | null;
  os: string | null;
  userappl: string | null;
}

/**
 * One packet record. A reader owns exactly one and refills it on every
 * `next()`: the bytes (`buf[offset .. offset + caplen)`) are valid until
 * the next call.
 */
export class CaptureRecord {
  /** Interface id (see {@link CaptureInterface.id}). */
  ifIndex = 0;
  linkType = LINKTYPE_ETHERNET;
  tsSec = 0;
  tsNsec = 0;
  caplen = 0;
  origLen = 0;
  /** The reader's buffer; the frame starts at `offset`. */
  buf: Uint8Array = new Uint8Array(0);
  offset = 0;
  /** File offset of the record header (classic) or block (pcapng). */
  fileOffset = 0;
  /** Number of this record in the file, from 0. */
  index = -1;
  /** pcapng `epb_flags` / `pack_flags` (0 when absent). */
  flags = 0;
  /** pcapng block type that carried it (0 for classic pcap). */
  blockType = 0;

  /** The frame bytes (a view; allocates the view). */
  get data(): Uint8Array {
    return this.buf.subarray(this.offset, this.offset + this.caplen);
  }
}

/** A streaming capture reader. */
export interface CaptureReader {
  readonly format: CaptureFormat;
  readonly file: string;
  /** Interfaces seen so far (pcapng adds them as their blocks are read). */
  readonly interfaces: CaptureInterface[];
  readonly sections: CaptureSection[];
  /** Non-packet blocks skipped, by block type (pcapng). */
  readonly skippedBlocks: Map<number, number>;
  /** The next packet, or null at the end. Throws CaptureFormatError. */
  next(): CaptureRecord | null;
  /** Bytes of read buffer in use (stays bounded while streaming). */
  bufferSize(): number;
  /** Size of the file when it was opened. */
  fileSize(): number;
  close(): void;
}

/** Options of an interface a writer declares. */
export interface WriterInterfaceOptions {
  linkType?: number;
  /** Default 262144. */
  snaplen?: number;
  name?: string;
  description?: string;
}

/** pcapng `epb_flags` direction bits. */
export const EPB_FLAG_INBOUND = 1;
export const EPB_FLAG_OUTBOUND = 2;

/** A streaming capture writer. */
export interface CaptureWriter {
  readonly format: CaptureFormat;
  readonly file: string;
  /** Declare an interface; returns its id. Classic pcap allows one (the file header's). */
  addInterface(o?: WriterInterfaceOptions): number;
  /** Write one packet: `len` bytes of `src` from `off` (truncated to snaplen). */
  writePacket(ifIndex: number, tsSec: number, tsNsec: number, src: Uint8Array, off: number, len: number, origLen?: number, flags?: number): void;
  /** Start a packet of `len` bytes given in pieces by {@link append}; finish with {@link endPacket}. */
  beginPacket(ifIndex: number, tsSec: number, tsNsec: number, len: number, origLen?: number, flags?: number): void;
  append(src: Uint8Array, off: number, n: number): void;
  endPacket(): void;
  /** Packets written. */
  readonly packets: number;
  flush(): void;
  close(): void;
}
