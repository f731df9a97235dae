/**
 * A capture-file device: a NetDevice whose receive side reads Ethernet
 * frames from a pcap / pcapng file and whose transmit side writes every
 * frame it is given to another capture. It makes `skb forward` testable
 * without privileges.
 *
 * ```
 *  in file ──> NAPI poll: captureFrameSkb (page-pool page, NAPI head) ──> recv hook (the router)
 *  router ──> devQueueXmit ──> xmit: captureWriteSkb to the out file, consume
 * ```
 *
 * Records that are not Ethernet, cut by the snaplen, runts or too big for
 * one skb are counted and skipped. Without an out file the device is a sink
 * (frames are counted and consumed).
 *
 * @module
 */

import { napiCompleteDone, type NapiStruct, napiSchedule, netifNapiAdd, type Softnet } from "../core/napi.js";
import { devCountRx, NETDEV_TX_OK, type NetDevice, type NetNamespace } from "../core/netdev.js";
import { type CaptureReader, type CaptureWriter, LINKTYPE_ETHERNET } from "../io/capture.js";
import { createCaptureWriter, openCapture } from "../io/pcap.js";
import { CAPTURE_FRAME_MAX, captureFrameSkb, captureWriteSkb } from "../io/replay.js";
import type { PagePool } from "../mm/page-pool.js";
import type { SkbCpu } from "../skb/cpu.js";
import { consumeSkb } from "../skb/free.js";
import { SKB_DEV } from "../skb/layout.js";
import { hostPoolCreate, hostPoolDestroy } from "./host-common.js";

/** The receive hook of a pcap device (the stack above it). */
export type PcapDevRecvFn = (cpu: SkbCpu, napi: NapiStruct, skb: number) => void;

/** Options of {@link pcapDevCreate}. */
export interface PcapDevOptions {
  name: string;
  /** Capture to read frames from (none: the device receives nothing). */
  in?: string;
  /** Capture to write transmitted frames to (format from the extension: .pcap classic, else pcapng). */
  out?: string;
  mtu?: number;
  mac?: string;
  recv: PcapDevRecvFn;
}

/** Private state of a pcap device. */
export class PcapDevPriv {
  reader: CaptureReader | null;
  writer: CaptureWriter | null;
  readonly pool: PagePool;
  napi: NapiStruct | null = null;
  recv: PcapDevRecvFn;
  /** The input is exhausted (or there is none). */
  eof: boolean;
  /** A format error that ended the input early. */
  error: string | null = null;
  read = 0;
  injected = 0;
  skipped = 0;
  nomem = 0;
  written = 0;

  constructor(reader: CaptureReader | null, writer: CaptureWriter | null, pool: PagePool, recv: PcapDevRecvFn) {
    this.reader = reader;
    this.writer = writer;
    this.pool = pool;
    this.recv = recv;
    this.eof = reader === null;
  }
}

function priv(dev: NetDevice): PcapDevPriv {
  if (!(dev.priv instanceof PcapDevPriv)) throw new Error(`pcap device: ${dev.name} is not a pcap device`);
  return dev.priv;
}

/** Create a pcap device and schedule its NAPI if it has input (cold). Throws on a bad input header or unwritable output. */
export function pcapDevCreate(ns: NetNamespace, sd: Softnet, o: PcapDevOptions): NetDevice {
  const reader = o.in !== undefined ? openCapture(o.in) : null;
  let writer: CaptureWriter | null = null;
  try {
    if (o.out !== undefined) {
      writer = createCaptureWriter(o.out, { format: o.out.toLowerCase().endsWith(".pcap") ? "pcap" : "pcapng", resolution: "ns" });
      writer.addInterface(writer.format === "pcapng" ? { name: o.name } : undefined);
    }
  } catch (e) {
    reader?.close();
    throw e;
  }
  const dev = ns.register({ name: o.name, kind: "pcap", ...(o.mtu !== undefined ? { mtu: o.mtu } : {}), ...(o.mac !== undefined ? { mac: o.mac } : {}) });
  const p = new PcapDevPriv(reader, writer, hostPoolCreate(sd.cpu), o.recv);
  dev.priv = p;
  dev.xmit = pcapDevXmit;
  p.napi = netifNapiAdd(sd, dev, (cpu, n, budget) => pcapDevPoll(dev, p, cpu, n, budget));
  dev.up = true;
  if (!p.eof) napiSchedule(p.napi);
  return dev;
}

const clock = { sec: 0, nsec: 0 };

function pcapDevXmit(cpu: SkbCpu, dev: NetDevice, skb: number): number {
  const p = dev.priv as PcapDevPriv;
  if (p.writer !== null) {
    const ms = Date.now();
    clock.sec = Math.floor(ms / 1000);
    clock.nsec = (ms % 1000) * 1_000_000;
    captureWriteSkb(cpu, skb, p.writer, 0, clock.sec, clock.nsec);
    p.written++;
  }
  consumeSkb(cpu, skb);
  return NETDEV_TX_OK;
}

function pcapDevPoll(dev: NetDevice, p: PcapDevPriv, cpu: SkbCpu, napi: NapiStruct, budget: number): number {
  let done = 0;
  while (done < budget && !p.eof) {
    let r: ReturnType<CaptureReader["next"]>;
    try {
      r = (p.reader as CaptureReader).next();
    } catch (e) {
      p.error = (e as Error).message;
      p.eof = true;
      break;
    }
    if (r === null) {
      p.eof = true;
      break;
    }
    p.read++;
    done++;
    if (r.linkType !== LINKTYPE_ETHERNET || r.caplen < r.origLen || r.caplen < 14 || r.caplen > CAPTURE_FRAME_MAX) {
      p.skipped++;
      continue;
    }
    const skb = captureFrameSkb(cpu, p.pool, r.buf, r.offset, r.caplen);
    if (skb === 0) {
      p.nomem++;
      continue;
    }
    cpu.u32[(skb + SKB_DEV) >>> 2] = dev.ifindex;
    devCountRx(cpu, dev, skb, 0);
    p.injected++;
    p.recv(cpu, napi, skb);
  }
  if (done < budget) napiCompleteDone(napi, done);
  return done;
}

/** The device's NAPI. */
export function pcapDevNapi(dev: NetDevice): NapiStruct {
  return priv(dev).napi as NapiStruct;
}

/** Has the input been read to its end (or is there none)? */
export function pcapDevInputDone(dev: NetDevice): boolean {
  return priv(dev).eof;
}

/** Counters of a pcap device (allocates). */
export function pcapDevStats(dev: NetDevice): { read: number; injected: number; skipped: number; nomem: number; written: number; error: string | null } {
  const p = priv(dev);
  return { read: p.read, injected: p.injected, skipped: p.skipped, nomem: p.nomem, written: p.written, error: p.error };
}

/** Stop reading, close the files and free the page pool (after the softnet has been drained). */
export function pcapDevClose(cpu: SkbCpu, dev: NetDevice): void {
  const p = priv(dev);
  p.eof = true;
  dev.up = false;
  p.reader?.close();
  p.reader = null;
  p.writer?.close();
  p.writer = null;
  hostPoolDestroy(cpu, p.pool);
}
