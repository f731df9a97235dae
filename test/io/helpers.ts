/**
 * Test helpers for capture files: temp directories, hand-made classic pcap
 * and pcapng bytes (independent of src/io: every header is laid out here
 * from the specifications), reading a whole capture into plain objects, and
 * the Wireshark command-line tools when they are installed.
 */

import { spawnSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openCapture } from "../../src/io/pcap.js";

/** A fresh temp directory. */
export function tmp(prefix = "skb-io-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Concatenate byte arrays. */
export function cat(...parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Little helper writing integers in a chosen byte order. */
export class Bytes {
  readonly b: Uint8Array;
  readonly v: DataView;
  readonly le: boolean;
  constructor(n: number, le: boolean) {
    this.b = new Uint8Array(n);
    this.v = new DataView(this.b.buffer);
    this.le = le;
  }
  u16(o: number, x: number): this {
    this.v.setUint16(o, x, this.le);
    return this;
  }
  u32(o: number, x: number): this {
    this.v.setUint32(o, x >>> 0, this.le);
    return this;
  }
  set(o: number, src: Uint8Array): this {
    this.b.set(src, o);
    return this;
  }
}

// ---- classic pcap --------------------------------------------------------------------------

export function pcapHeader(o: { le?: boolean; nsec?: boolean; snaplen?: number; linkType?: number; major?: number } = {}): Uint8Array {
  const h = new Bytes(24, o.le ?? true);
  h.u32(0, o.nsec === true ? 0xa1b23c4d : 0xa1b2c3d4)
    .u16(4, o.major ?? 2)
    .u16(6, 4)
    .u32(16, o.snaplen ?? 65535)
    .u32(20, o.linkType ?? 1);
  return h.b;
}

export function pcapRecord(o: { le?: boolean; sec: number; frac: number; data: Uint8Array; caplen?: number; origLen?: number }): Uint8Array {
  const h = new Bytes(16 + o.data.length, o.le ?? true);
  h.u32(0, o.sec)
    .u32(4, o.frac)
    .u32(8, o.caplen ?? o.data.length)
    .u32(12, o.origLen ?? o.data.length)
    .set(16, o.data);
  return h.b;
}

// ---- pcapng -----------------------------------------------------------------------------

/** An option: code, value (padded here). */
export type Opt = [number, Uint8Array];

export const str = (s: string): Uint8Array => new TextEncoder().encode(s);
export const u8v = (...x: number[]): Uint8Array => Uint8Array.from(x);
export function u32v(x: number, le: boolean): Uint8Array {
  return new Bytes(4, le).u32(0, x).b;
}
export function u64v(x: bigint, le: boolean): Uint8Array {
  const b = new Bytes(8, le);
  b.v.setBigInt64(0, x, le);
  return b.b;
}

/** Options area (with opt_endofopt unless `end` is false). */
export function opts(list: Opt[], le: boolean, end = true): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const [code, val] of list) {
    const h = new Bytes(4 + ((val.length + 3) & ~3), le);
    h.u16(0, code).u16(2, val.length).set(4, val);
    parts.push(h.b);
  }
  if (end && list.length > 0) parts.push(new Uint8Array(4));
  return cat(...parts);
}

/** A whole block: type, total length, body, total length. `lenOverride` / `tailOverride` corrupt it. */
export function block(type: number, body: Uint8Array, le: boolean, o: { lenOverride?: number; tailOverride?: number } = {}): Uint8Array {
  const padded = (body.length + 3) & ~3;
  const total = 12 + padded;
  const b = new Bytes(total, le);
  b.u32(0, type)
    .u32(4, o.lenOverride ?? total)
    .set(8, body)
    .u32(total - 4, o.tailOverride ?? total);
  return b.b;
}

export function shb(le: boolean, options: Opt[] = [], major = 1): Uint8Array {
  const fixed = new Bytes(16, le);
  fixed.u32(0, 0x1a2b3c4d).u16(4, major).u16(6, 0);
  fixed.v.setBigInt64(8, -1n, le);
  return block(0x0a0d0d0a, cat(fixed.b, opts(options, le)), le);
}

export function idb(le: boolean, linkType = 1, snaplen = 0, options: Opt[] = []): Uint8Array {
  const fixed = new Bytes(8, le).u16(0, linkType).u32(4, snaplen);
  return block(1, cat(fixed.b, opts(options, le)), le);
}

/** EPB; `units` = 64-bit timestamp in the interface's resolution. */
export function epb(
  le: boolean,
  ifId: number,
  units: bigint,
  data: Uint8Array,
  o: { origLen?: number; caplen?: number; options?: Opt[]; optEnd?: boolean } = {},
): Uint8Array {
  const fixed = new Bytes(20, le)
    .u32(0, ifId)
    .u32(4, Number(units >> 32n))
    .u32(8, Number(units & 0xffffffffn))
    .u32(12, o.caplen ?? data.length)
    .u32(16, o.origLen ?? data.length);
  const padded = new Uint8Array((data.length + 3) & ~3);
  padded.set(data);
  return block(6, cat(fixed.b, padded, opts(o.options ?? [], le, o.optEnd ?? true)), le);
}

export function spb(le: boolean, origLen: number, data: Uint8Array): Uint8Array {
  const padded = new Uint8Array((data.length + 3) & ~3);
  padded.set(data);
  return block(3, cat(u32v(origLen, le), padded), le);
}

export function opb(le: boolean, ifId: number, units: bigint, data: Uint8Array, options: Opt[] = []): Uint8Array {
  const fixed = new Bytes(20, le)
    .u16(0, ifId)
    .u16(2, 0)
    .u32(4, Number(units >> 32n))
    .u32(8, Number(units & 0xffffffffn))
    .u32(12, data.length)
    .u32(16, data.length);
  const padded = new Uint8Array((data.length + 3) & ~3);
  padded.set(data);
  return block(2, cat(fixed.b, padded, opts(options, le)), le);
}

// ---- reading back --------------------------------------------------------------------------

export interface ReadRecord {
  ifIndex: number;
  linkType: number;
  tsSec: number;
  tsNsec: number;
  caplen: number;
  origLen: number;
  flags: number;
  data: Uint8Array;
}

/** Every record of a capture, copied. */
export function readAll(file: string, bufferSize?: number): ReadRecord[] {
  const r = openCapture(file, bufferSize !== undefined ? { bufferSize } : {});
  const out: ReadRecord[] = [];
  try {
    for (let rec = r.next(); rec !== null; rec = r.next()) {
      out.push({
        ifIndex: rec.ifIndex,
        linkType: rec.linkType,
        tsSec: rec.tsSec,
        tsNsec: rec.tsNsec,
        caplen: rec.caplen,
        origLen: rec.origLen,
        flags: rec.flags,
        data: rec.data.slice(),
      });
    }
  } finally {
    r.close();
  }
  return out;
}

// ---- Wireshark tools -------------------------------------------------------------------------

const toolCache = new Map<string, boolean>();

/** Is `tool` (tshark, capinfos, editcap, text2pcap, mergecap) on the PATH? */
export function haveTool(tool: string): boolean {
  let ok = toolCache.get(tool);
  if (ok === undefined) {
    const r = spawnSync(tool, ["--version"], { encoding: "utf8" });
    ok = r.error === undefined && r.status === 0;
    toolCache.set(tool, ok);
  }
  return ok;
}

/** Why a tool test skips (the Debian packages that provide the tools). */
export function missingTools(...tools: string[]): string | null {
  const missing = tools.filter((t) => !haveTool(t));
  if (missing.length === 0) return null;
  return `${missing.join(", ")} not installed: apt-get install tshark (tshark; capinfos, editcap, mergecap and text2pcap come with wireshark-common)`;
}

/** Run a tool; throws with its stderr when it fails. Returns stdout. */
export function tool(cmd: string, args: string[], input?: string): string {
  const r = spawnSync(cmd, args, { encoding: "utf8", input, maxBuffer: 256 << 20 });
  if (r.error !== undefined) throw r.error;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}
