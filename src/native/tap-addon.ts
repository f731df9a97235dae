/**
 * Loader of the optional native TAP addon (`native/tap.cc`, built by
 * node-gyp at install into `build/Release/skbuff_tap.node`), in the style
 * of ws's optional `bufferutil`: the addon is loaded in try/catch the first
 * time something asks for it, and only a caller that actually needs a TAP
 * device gets an error — "native TAP support unavailable: <reason>".
 * Everything else in the package works without it.
 *
 * Reasons it can be unavailable: not Linux; `SKBUFF_NO_NATIVE=1` (the kill
 * switch, also for tests of the fallback); the build failed or was skipped
 * at install (no python3 / make / C++ compiler: the install script prints a
 * note and carries on).
 *
 * @module
 */

import { createRequire } from "node:module";

/** What `open` returns: the file descriptor and the interface name the kernel gave. */
export interface TapOpenResult {
  fd: number;
  name: string;
}

/** The readiness watch of one fd (a libuv `uv_poll_t`, level-triggered). */
export interface TapPollHandle {
  /** Watch for "readable" (idempotent). An active watch keeps the event loop alive. */
  start(): void;
  /** Stop watching (idempotent). */
  stop(): void;
  /** Release the handle (idempotent). */
  close(): void;
}

/** ABI constants, as compiled into the addon (linux/if_tun.h, errno.h). */
export interface TapConstants {
  IFF_TAP: number;
  IFF_NO_PI: number;
  IFF_VNET_HDR: number;
  IFF_MULTI_QUEUE: number;
  TUN_F_CSUM: number;
  TUN_F_TSO4: number;
  TUN_F_TSO6: number;
  TUN_F_TSO_ECN: number;
  TUN_F_UFO: number;
  TUN_F_USO4: number;
  TUN_F_USO6: number;
  EAGAIN: number;
  EIO: number;
  EINVAL: number;
  EBADFD: number;
  ENOBUFS: number;
  EMSGSIZE: number;
}

/**
 * The addon's API. Arena arguments are a `Uint8Array` over the whole
 * SharedArrayBuffer (`mem.arena.u8`): Node 20's Node-API has no accessor for
 * a SharedArrayBuffer itself, a typed array over one gives its data pointer.
 * Index arrays are caller-owned typed arrays, reused across calls: a burst
 * allocates nothing.
 */
export interface TapAddon {
  /**
   * Open /dev/net/tun and attach it to TAP interface `name` (created if
   * absent; "%d" lets the kernel number it) with IFF_TAP | IFF_NO_PI plus
   * `flags` (IFF_VNET_HDR, IFF_MULTI_QUEUE), non-blocking. Throws an Error
   * naming the device and the errno ("tap t0: TUNSETIFF: Operation not
   * permitted (need root or CAP_NET_ADMIN)"), with `errno` set.
   */
  open(name: string, flags: number): TapOpenResult;
  /** TUNSETOFFLOAD: which offloads (TUN_F_*) the kernel may use towards us. Needs IFF_VNET_HDR. */
  setOffload(fd: number, flags: number, name: string): void;
  /** TUNSETVNETHDRSZ (10 or 12) and TUNSETVNETLE. */
  setVnetHdrSize(fd: number, size: number, name: string): void;
  /**
   * Burst I/O for one queue, its tables bound once (see {@link TapIoHandle}):
   * `new TapIo(arena, rxOffsets, rxCaps, rxLens, txOffsets, txLens, txCounts, status)`.
   * Throws a TypeError for a wrong argument type.
   */
  TapIo: new (
    arena: Uint8Array,
    rxOffsets: Uint32Array,
    rxCaps: Uint32Array,
    rxLens: Uint32Array,
    txOffsets: Uint32Array,
    txLens: Uint32Array,
    txCounts: Uint32Array,
    status: Int32Array,
  ) => TapIoHandle;
  /** close(2). */
  close(fd: number): void;
  /** strerror(3) (cold). */
  strerror(errno: number): string;
  /** CPU time of the calling thread in ns (CLOCK_THREAD_CPUTIME_ID). */
  threadCpuNs(): number;
  /** A readiness watch on `fd`; `cb(status)` runs on the event loop when it is readable (status < 0: a libuv error). */
  TapPoll: new (fd: number, cb: (status: number) => void) => TapPollHandle;
  constants: TapConstants;
}

/**
 * One queue's burst I/O. Every iovec / piece is checked against the arena
 * before any I/O (a bad one throws a RangeError naming it, nothing is read or
 * written); `status[0]` gets 0 or the errno that stopped the burst.
 */
export interface TapIoHandle {
  /**
   * Read up to `max` frames into the arena: frame i with one readv over
   * rx iovecs `[i*segs, i*segs+segs)` of rxOffsets/rxCaps (a cap of 0 ends
   * the list). `rxLens[i]` gets what the read returned, min(frame, buffers):
   * a read that fills the buffers may have been cut. Returns the frame
   * count; 0 when nothing is waiting.
   */
  read(fd: number, max: number, segs: number): number;
  /**
   * Write `n` frames from the arena, one writev each: frame i (from
   * `frame0` in txCounts) is the next `txCounts[i]` pieces of
   * txOffsets/txLens (from `piece0`). Returns the frames written; stops at
   * the first one the kernel refuses.
   */
  write(fd: number, n: number, piece0: number, frame0: number): number;
  /**
   * Give queue `fd` a transmit thread (vhost-net's worker, in user space):
   * from now on `write` copies each frame into a ring of `ringBytes` and
   * returns at once; the thread writes them in order, one write(2) each,
   * and sleeps when the ring is empty (`write` wakes it only then). A full
   * ring makes `write` wait for room (TX_WRITER_ROOM_WAITS), as a direct
   * write would have taken that long; after `waitMs` (default 1000) without
   * room it stops with status ENOBUFS; a frame over half the ring stops it
   * with EMSGSIZE. A frame of 8 KiB or more that finds the ring idle is
   * written by `write` itself, from the arena (no copy; a refusal then
   * stops `write` with its errno, as without a writer). Frames the kernel refuses later are counted in `counters` (an
   * Int32Array over a SharedArrayBuffer, indices TX_WRITER_*), classed by
   * `kinds[i]` (0: a packet the core counted as `counted[i]` bytes, else a
   * software segment) of frame i of txCounts. The thread is named
   * `skbtx:<name>`. Throws when the queue already has one.
   */
  startWriter(fd: number, ringBytes: number, counted: Uint32Array, kinds: Uint8Array, counters: Int32Array, name: string, waitMs?: number): void;
  /** Write out what the ring holds, end the thread; `write` is direct again. Idempotent. */
  stopWriter(): void;
  /** Bytes queued and not yet written (0 without a writer). */
  writerPending(): number;
}

// Indices of a transmit thread's counters (TxWriter::Counter in native/tap.cc).
/** Frames the kernel refused, any kind (bumped after the others). */
export const TX_WRITER_REFUSED = 0;
/** Refused frames that were packets the core had counted as sent. */
export const TX_WRITER_REFUSED_PACKETS = 1;
/** The bytes the core counted for those. */
export const TX_WRITER_REFUSED_COUNTED = 2;
/** Refused software segments. */
export const TX_WRITER_REFUSED_SEGMENTS = 3;
/** Refused frame bytes (virtio header included). */
export const TX_WRITER_REFUSED_BYTES = 4;
/** Refusals by errno class: EAGAIN/ENOBUFS, EIO (kernel side down), any other. */
export const TX_WRITER_BUSY = 5;
export const TX_WRITER_CARRIER = 6;
export const TX_WRITER_OTHER = 7;
/** errno of the last refusal. */
export const TX_WRITER_LAST_ERRNO = 8;
/** Frames written. */
export const TX_WRITER_WRITTEN = 9;
/** Wake-ups of the sleeping thread, and its sleeps. */
export const TX_WRITER_KICKS = 10;
export const TX_WRITER_SLEEPS = 11;
/** Times `write` found the ring full and waited for room. */
export const TX_WRITER_ROOM_WAITS = 12;
/** Super-frames (>= 8 KiB) `write` made itself because the ring was idle (no copy, order kept). */
export const TX_WRITER_DIRECT = 13;
/** Length of the counters array. */
export const TX_WRITER_COUNTERS = 14;

/** Where node-gyp leaves the addon, relative to this file (dist/src/native/). */
const CANDIDATES = ["../../../build/Release/skbuff_tap.node", "../../../build/Debug/skbuff_tap.node"];

let addon: TapAddon | null = null;
let failure: string | null = null;
let tried = false;

function envKillSwitch(): boolean {
  const v = process.env.SKBUFF_NO_NATIVE;
  return v !== undefined && v !== "" && v !== "0" && v.toLowerCase() !== "false" && v.toLowerCase() !== "off";
}

function load(): void {
  tried = true;
  if (process.platform !== "linux") {
    failure = `TAP devices need Linux (this is ${process.platform})`;
    return;
  }
  if (envKillSwitch()) {
    failure = "disabled by SKBUFF_NO_NATIVE=1";
    return;
  }
  const req = createRequire(import.meta.url);
  const errors: string[] = [];
  for (const rel of CANDIDATES) {
    const path = new URL(rel, import.meta.url).pathname;
    try {
      const a = req(path) as TapAddon;
      if (typeof a.TapIo !== "function" || typeof a.TapPoll !== "function" || typeof a.TapIo.prototype.startWriter !== "function") {
        errors.push(`${path} is from an older build (no TapIo transmit thread): rebuild it (npm run build:native)`);
        continue;
      }
      addon = a;
      return;
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      errors.push(err.code === "MODULE_NOT_FOUND" ? `${path} not found` : `${path}: ${err.message}`);
    }
  }
  failure =
    `the addon did not load (${errors.join("; ")}); build it with \`npm rebuild skbuff\` ` +
    "(or `npm run install` in a checkout), which needs python3, make and a C++ compiler";
}

/** Is the native addon loadable? (Loads it on first call.) `reason` says why not. */
export function tapAddonStatus(): { available: true } | { available: false; reason: string } {
  if (!tried) load();
  return addon !== null ? { available: true } : { available: false, reason: failure as string };
}

/**
 * The addon, loading it on first use. Throws
 * `Error("native TAP support unavailable: <reason>")` when it cannot be had.
 */
export function tapAddon(): TapAddon {
  if (!tried) load();
  if (addon === null) throw new Error(`native TAP support unavailable: ${failure}`);
  return addon;
}
