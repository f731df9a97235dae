/**
 * A net device that carries Ethernet frames over UDP (node:dgram): mode
 * "raw" (one datagram payload = one frame) or "vxlan" (RFC 7348, an 8-byte
 * header with the I flag and a 24-bit VNI; IANA port 4789), so it can talk
 * to a Linux `vxlan` device or to another process.
 *
 * ```
 *  receive ("IRQ" = the socket's 'message' event, then NAPI):
 *    datagram ─ vxlan: header valid? VNI ours? ─ no ─> counted drop (no skb exists yet)
 *             ─ frame length 14..maxFrame? ring room? page? ─ no ─> counted drop
 *             ─ copy into a page-pool page at NET_SKB_PAD ─> RX ring ─> napiSchedule + raiseNetRxSoftirq
 *    poll (budget): napiBuildSkb around each page (head from the NAPI cache),
 *                   pp_recycle, dev, counters ─> recv(cpu, napi, skb)   (like veth's recv)
 *
 *  transmit (xmit = ndo_start_xmit):
 *    skb (linear, frags, frag_list) ─ copy ─> a reusable Buffer after the VXLAN header
 *    ─ socket.send ─> napiConsumeSkb (head back into the NAPI cache)
 * ```
 *
 * Costs that Node imposes (and that no kernel driver has): node:dgram
 * allocates a Buffer and an `rinfo` object per received datagram and a
 * send request (plus a slice) per sent one, so this path is not
 * allocation-free like veth's. On top, each direction copies the frame once:
 * the received datagram into the arena page (one memcpy, about 0.1 µs for
 * 1500 bytes here) and the skb's bytes out of the arena into the transmit
 * Buffer (one memcpy per linear part / frag). Transmit Buffers are reused:
 * when libuv sends synchronously (the usual case) the same Buffer serves the
 * next frame at once; only when the kernel socket buffer is full and libuv
 * queues a send does that Buffer stay held until its callback, and the next
 * frame takes another of `txSlots` Buffers. With every Buffer held, xmit
 * returns NETDEV_TX_BUSY (a FULL_RING drop, counted as `txBusy`).
 *
 * Frames must fit one 4 KiB page-pool page: the MTU is limited to
 * {@link UDP_TUNNEL_MAX_MTU}; larger datagrams are `rxOversize` drops.
 *
 * @module
 */

import dgram from "node:dgram";
import { isIPv4 } from "node:net";
import { type PagePool, pagePoolAllocPage, pagePoolPutPage } from "../mm/page-pool.js";
import { napiBuildSkb } from "../skb/alloc.js";
import type { SkbCpu } from "../skb/cpu.js";
import { __skbPut, skbReserve } from "../skb/data.js";
import { SKB_DROP_REASON } from "../skb/drop-reason.js";
import { napiConsumeSkb } from "../skb/free.js";
import {
  CHECKSUM_NONE,
  CHECKSUM_PARTIAL,
  FRAG_DESC_SIZE,
  FRAG_OFFSET,
  FRAG_PAGE,
  FRAG_SIZE,
  NET_SKB_PAD,
  SHINFO_FRAG_LIST,
  SHINFO_FRAGS,
  SHINFO_NR_FRAGS,
  SHINFO_SIZE,
  SKB_DATA,
  SKB_DATA_LEN,
  SKB_DEV,
  SKB_END,
  SKB_FLAGS,
  SKB_HEAD,
  SKB_IP_SUMMED,
  SKB_LEN,
  SKB_NEXT,
  SKBF_PP_RECYCLE,
} from "../skb/layout.js";
import { skbChecksumHelp } from "../net/ipv4.js";
import { ETH_HLEN, VLAN_ETH_HLEN } from "../net/proto.js";
import {
  devCountRx,
  NETDEV_TX_BUSY,
  NETDEV_TX_OK,
  type NetDevice,
  type NetNamespace,
  NETIF_F_SG,
  RX_DROPPED,
  RX_ERRORS,
  TX_ERRORS,
} from "../core/netdev.js";
import {
  NAPI_POLL_WEIGHT,
  type NapiStruct,
  napiCompleteDone,
  napiDisable,
  napiSchedule,
  netifNapiAdd,
  type Softnet,
} from "../core/napi.js";
import { raiseNetRxSoftirq } from "../core/loop.js";
import { HOST_BUF_SIZE, hostPoolCreate, hostPoolDestroy } from "./host-common.js";

/** IANA VXLAN port (RFC 7348 §5). */
export const VXLAN_PORT = 4789;
/** VXLAN header length. */
export const VXLAN_HLEN = 8;
/** The I flag in the first header byte (`VXLAN_HF_VNI`): the VNI is valid. */
export const VXLAN_FLAG_I = 0x08;
/** Largest VNI (24 bits). */
export const VXLAN_VNI_MAX = 0xffffff;
/** Bytes of frame a 4 KiB RX page holds after NET_SKB_PAD and the shared info. */
export const UDP_TUNNEL_PAGE_ROOM = HOST_BUF_SIZE - NET_SKB_PAD - SHINFO_SIZE;
/** Largest MTU: a VLAN-tagged frame of this MTU still fits one page. */
export const UDP_TUNNEL_MAX_MTU = UDP_TUNNEL_PAGE_ROOM - VLAN_ETH_HLEN;
/** Default RX ring size (descriptors). */
export const UDP_TUNNEL_RING_SIZE = 512;
/** Default number of transmit Buffers. */
export const UDP_TUNNEL_TX_SLOTS = 16;

/** Counter indices of the tunnel's own statistics ({@link udpTunnelStats}). */
export const TUN_RX_DATAGRAMS = 0;
export const TUN_RX_DGRAM_BYTES = 1;
export const TUN_TX_DATAGRAMS = 2;
export const TUN_TX_DGRAM_BYTES = 3;
/** VXLAN: shorter than 8 bytes or the I flag clear. */
export const TUN_RX_BAD_HDR = 4;
/** VXLAN: a VNI other than ours. */
export const TUN_RX_WRONG_VNI = 5;
/** Frame longer than the device takes (MTU + VLAN Ethernet header, one page). */
export const TUN_RX_OVERSIZE = 6;
/** Frame shorter than an Ethernet header. */
export const TUN_RX_RUNT = 7;
/** RX ring full (NAPI not polled fast enough). */
export const TUN_RX_RING_FULL = 8;
/** No page-pool page, or no skb head in poll. */
export const TUN_RX_NOMEM = 9;
/** Datagrams that arrived while the device was down / closing. */
export const TUN_RX_DOWN = 10;
/** Socket 'error' events. */
export const TUN_SOCK_ERRORS = 11;
/** Sends that failed (callback error or a synchronous throw). */
export const TUN_TX_SOCK_ERRORS = 12;
/** Frames too long for a transmit Buffer. */
export const TUN_TX_OVERSIZE = 13;
/** Every transmit Buffer held by queued sends. */
export const TUN_TX_BUSY = 14;
/** Sends that libuv queued (socket buffer full at the time). */
export const TUN_TX_QUEUED = 15;
/** CHECKSUM_PARTIAL frames completed in software before sending. */
export const TUN_TX_CSUM_HELP = 16;
/** Frames freed from the RX ring at close. */
export const TUN_RX_PURGED = 17;
/** CHECKSUM_PARTIAL frames whose software checksum failed (no memory to make them writable). */
export const TUN_TX_CSUM_FAIL = 18;
export const TUN_STAT_MAX = 19;
export const TUN_STAT_NAMES = [
  "rxDatagrams",
  "rxDatagramBytes",
  "txDatagrams",
  "txDatagramBytes",
  "rxBadHeader",
  "rxWrongVni",
  "rxOversize",
  "rxRunt",
  "rxRingFull",
  "rxNomem",
  "rxDown",
  "socketErrors",
  "txSocketErrors",
  "txOversize",
  "txBusy",
  "txQueued",
  "txCsumHelp",
  "rxPurged",
  "txCsumFail",
] as const;

/**
 * Where each receive drop lands in `dev.drops` (the kernel's reasons; the
 * kernel's VXLAN_INVALID_HDR and VXLAN_VNI_NOT_FOUND are not in this
 * model's enum yet, so the nearest ones stand in, and the tunnel's own
 * counters keep the exact cause).
 */
const RX_DROP_REASON: Record<number, number> = {
  [TUN_RX_BAD_HDR]: SKB_DROP_REASON.L2_MALFORMED,
  [TUN_RX_WRONG_VNI]: SKB_DROP_REASON.UNHANDLED_PROTO,
  [TUN_RX_OVERSIZE]: SKB_DROP_REASON.PKT_TOO_BIG,
  [TUN_RX_RUNT]: SKB_DROP_REASON.PKT_TOO_SMALL,
  [TUN_RX_RING_FULL]: SKB_DROP_REASON.FULL_RING,
  [TUN_RX_NOMEM]: SKB_DROP_REASON.NOMEM,
  [TUN_RX_DOWN]: SKB_DROP_REASON.DEV_READY,
  [TUN_RX_PURGED]: SKB_DROP_REASON.DEV_READY,
};

/** Encapsulation. */
export type UdpTunnelMode = "raw" | "vxlan";

/** What the device does with each received skb (eth_type_trans + the stack), as veth's recv. */
export type UdpTunnelRecvFn = (cpu: SkbCpu, napi: NapiStruct, skb: number) => void;

/** Options of {@link udpTunnelCreate}. */
export interface UdpTunnelOptions {
  name: string;
  /** Encapsulation (default "vxlan"). */
  mode?: UdpTunnelMode;
  /** Address to bind (IPv4 literal, default "127.0.0.1"). */
  localAddress?: string;
  /** Port to bind (default 4789 for vxlan, 0 = any for raw). */
  localPort?: number;
  /** Peer address (IPv4 literal). */
  remoteAddress: string;
  /** Peer port (default 4789 for vxlan; required for raw). */
  remotePort?: number;
  /** VXLAN network identifier, 0..2^24-1 (required for vxlan). */
  vni?: number;
  /** Device MTU (default 1500, at most UDP_TUNNEL_MAX_MTU). */
  mtu?: number;
  /** Device MAC ("aa:bb:cc:dd:ee:ff"). */
  mac?: string;
  /** RX ring descriptors, a power of two (default 512). */
  rxRingSize?: number;
  /** Transmit Buffers (default 16). */
  txSlots?: number;
  /** NAPI weight (default 64). */
  weight?: number;
  /** Kernel socket receive buffer size in bytes (SO_RCVBUF; default: the system's). */
  recvBufferSize?: number;
  /** The receive path. */
  recv: UdpTunnelRecvFn;
}

/** Private state of a tunnel device. */
export class UdpTunnelPriv {
  readonly cpu: SkbCpu;
  readonly dev: NetDevice;
  readonly mode: UdpTunnelMode;
  /** 8 for vxlan, 0 for raw. */
  readonly hdrLen: number;
  readonly vni: number;
  remoteAddress: string;
  remotePort: number;
  readonly socket: dgram.Socket;
  readonly pool: PagePool;
  readonly napi: NapiStruct;
  recv: UdpTunnelRecvFn;
  /** Longest frame accepted and sent: MTU + a VLAN-tagged Ethernet header. */
  readonly maxFrame: number;
  /** The arena as a Buffer (copies in and out without per-packet views of the arena). */
  readonly arena: Buffer;
  /** RX ring: page and frame length per descriptor. */
  readonly ringPage: Uint32Array;
  readonly ringLen: Uint32Array;
  readonly ringMask: number;
  prod = 0;
  cons = 0;
  /** Transmit Buffers (header pre-written), their "held by a queued send" flags and pending callbacks. */
  readonly txBufs: Buffer[];
  readonly txHeld: Uint8Array;
  readonly txOutstanding: Int32Array;
  readonly txDone: ((err: Error | null) => void)[];
  txCur = 0;
  readonly stats = new Float64Array(TUN_STAT_MAX);
  localAddress = "";
  localPort = 0;
  closed = false;
  /** Last socket error (for reports). */
  lastError: Error | null = null;

  /** Use {@link udpTunnelCreate}. */
  constructor(
    cpu: SkbCpu,
    dev: NetDevice,
    sd: Softnet,
    o: UdpTunnelOptions,
    socket: dgram.Socket,
    mode: UdpTunnelMode,
    remotePort: number,
    vni: number,
  ) {
    this.cpu = cpu;
    this.dev = dev;
    this.mode = mode;
    this.hdrLen = mode === "vxlan" ? VXLAN_HLEN : 0;
    this.vni = vni;
    this.remoteAddress = o.remoteAddress;
    this.remotePort = remotePort;
    this.socket = socket;
    this.recv = o.recv;
    this.maxFrame = dev.mtu + VLAN_ETH_HLEN;
    const u8 = cpu.u8;
    this.arena = Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
    const ring = o.rxRingSize ?? UDP_TUNNEL_RING_SIZE;
    this.ringPage = new Uint32Array(ring);
    this.ringLen = new Uint32Array(ring);
    this.ringMask = ring - 1;
    const slots = o.txSlots ?? UDP_TUNNEL_TX_SLOTS;
    this.txBufs = [];
    this.txDone = [];
    this.txHeld = new Uint8Array(slots);
    this.txOutstanding = new Int32Array(slots);
    for (let i = 0; i < slots; i++) {
      const b = Buffer.alloc(this.hdrLen + this.maxFrame);
      if (mode === "vxlan") {
        // RFC 7348 §5: flags (I), 24 reserved bits, VNI, 8 reserved bits.
        b[0] = VXLAN_FLAG_I;
        b[4] = (vni >>> 16) & 0xff;
        b[5] = (vni >>> 8) & 0xff;
        b[6] = vni & 0xff;
      }
      this.txBufs.push(b);
      this.txDone.push((err) => this.sendDone(i, err));
    }
    this.pool = hostPoolCreate(cpu);
    this.napi = netifNapiAdd(sd, dev, udpTunnelPoll, o.weight ?? NAPI_POLL_WEIGHT);
  }

  /** Completion of one send that used Buffer `slot` (cold-ish: once per datagram). */
  private sendDone(slot: number, err: Error | null): void {
    if (err !== null) {
      this.stats[TUN_TX_SOCK_ERRORS]++;
      this.dev.stats[TX_ERRORS]++;
      this.lastError = err;
    }
    const left = (this.txOutstanding[slot] as number) - 1;
    this.txOutstanding[slot] = left;
    if (left === 0) this.txHeld[slot] = 0;
  }
}

function privOf(dev: NetDevice): UdpTunnelPriv {
  return dev.priv as UdpTunnelPriv;
}

/** A receive drop before any skb exists: device and tunnel counters. */
function rxDrop(p: UdpTunnelPriv, why: number): void {
  p.stats[why]++;
  const dev = p.dev;
  dev.stats[RX_DROPPED]++;
  dev.drops[RX_DROP_REASON[why] as number]++;
}

/**
 * The socket's 'message' handler: the model's hard IRQ. Validates the
 * encapsulation, copies the frame into a page-pool page, queues the page on
 * the RX ring and schedules NAPI. Builds no skb (that happens in poll, in
 * NAPI context).
 */
function udpTunnelRx(p: UdpTunnelPriv, msg: Buffer): void {
  const n = msg.length;
  p.stats[TUN_RX_DATAGRAMS]++;
  p.stats[TUN_RX_DGRAM_BYTES] += n;
  if (p.closed || !p.dev.up) {
    rxDrop(p, TUN_RX_DOWN);
    return;
  }
  const hl = p.hdrLen;
  if (hl !== 0) {
    // RFC 7348: the I flag must be set; the other flag bits and the reserved fields are ignored.
    if (n < VXLAN_HLEN || ((msg[0] as number) & VXLAN_FLAG_I) === 0) {
      rxDrop(p, TUN_RX_BAD_HDR);
      return;
    }
    if ((((msg[4] as number) << 16) | ((msg[5] as number) << 8) | (msg[6] as number)) !== p.vni) {
      rxDrop(p, TUN_RX_WRONG_VNI);
      return;
    }
  }
  const len = n - hl;
  if (len < ETH_HLEN) {
    rxDrop(p, TUN_RX_RUNT);
    return;
  }
  if (len > p.maxFrame) {
    rxDrop(p, TUN_RX_OVERSIZE);
    return;
  }
  if (p.prod - p.cons > p.ringMask) {
    rxDrop(p, TUN_RX_RING_FULL);
    return;
  }
  const page = pagePoolAllocPage(p.pool);
  if (page === 0) {
    rxDrop(p, TUN_RX_NOMEM);
    return;
  }
  msg.copy(p.arena, page + NET_SKB_PAD, hl, n);
  const i = p.prod & p.ringMask;
  p.ringPage[i] = page;
  p.ringLen[i] = len;
  p.prod++;
  napiSchedule(p.napi);
  raiseNetRxSoftirq(p.napi.sd);
}

/** NAPI poll: build an skb around each queued page (napiBuildSkb) and hand it to recv, up to `budget`. */
function udpTunnelPoll(cpu: SkbCpu, napi: NapiStruct, budget: number): number {
  const dev = napi.netdev;
  const p = privOf(dev);
  const u32 = cpu.u32;
  let done = 0;
  while (done < budget && p.cons !== p.prod) {
    const i = p.cons & p.ringMask;
    p.cons++;
    done++;
    const page = p.ringPage[i] as number;
    const skb = napiBuildSkb(cpu, page, HOST_BUF_SIZE);
    if (skb === 0) {
      pagePoolPutPage(p.pool, page, true);
      rxDrop(p, TUN_RX_NOMEM);
      continue;
    }
    cpu.u8[skb + SKB_FLAGS] = (cpu.u8[skb + SKB_FLAGS] as number) | SKBF_PP_RECYCLE;
    // The outer UDP checksum was checked by the host kernel; the inner packet's were not.
    cpu.u8[skb + SKB_IP_SUMMED] = CHECKSUM_NONE;
    skbReserve(cpu, skb, NET_SKB_PAD);
    __skbPut(cpu, skb, p.ringLen[i] as number);
    u32[(skb + SKB_DEV) >>> 2] = dev.ifindex;
    devCountRx(cpu, dev, skb, 0);
    p.recv(cpu, napi, skb);
  }
  if (done < budget) napiCompleteDone(napi, done);
  return done;
}

/** Copy `skb`'s bytes (linear part, frags, frag_list) into `out` at `at`. Returns bytes copied. */
function copySkbOut(p: UdpTunnelPriv, cpu: SkbCpu, skb: number, out: Buffer, at: number): number {
  const u32 = cpu.u32;
  const arena = p.arena;
  const len = u32[(skb + SKB_LEN) >>> 2] as number;
  const headlen = len - (u32[(skb + SKB_DATA_LEN) >>> 2] as number);
  const data = u32[(skb + SKB_DATA) >>> 2] as number;
  let pos = at;
  if (headlen > 0) pos += arena.copy(out, pos, data, data + headlen);
  const sh = (u32[(skb + SKB_HEAD) >>> 2] as number) + (u32[(skb + SKB_END) >>> 2] as number);
  const nr = cpu.u8[sh + SHINFO_NR_FRAGS] as number;
  for (let f = 0; f < nr; f++) {
    const d = sh + SHINFO_FRAGS + f * FRAG_DESC_SIZE;
    const a = (u32[(d + FRAG_PAGE) >>> 2] as number) + (u32[(d + FRAG_OFFSET) >>> 2] as number);
    pos += arena.copy(out, pos, a, a + (u32[(d + FRAG_SIZE) >>> 2] as number));
  }
  for (let l = u32[(sh + SHINFO_FRAG_LIST) >>> 2] as number; l !== 0; l = u32[(l + SKB_NEXT) >>> 2] as number) {
    pos += copySkbOut(p, cpu, l, out, pos);
  }
  return pos - at;
}

/**
 * ndo_start_xmit: copy the frame behind the (pre-written) VXLAN header of a
 * free transmit Buffer, send it, consume the skb. Returns NETDEV_TX_BUSY
 * (the core then drops the skb as FULL_RING; the tunnel's counters keep the
 * real cause) when the frame is too long, the device is closed, every
 * Buffer is held, or the send throws.
 */
function udpTunnelXmit(cpu: SkbCpu, dev: NetDevice, skb: number): number {
  const p = privOf(dev);
  if (p.closed) return NETDEV_TX_BUSY;
  const len = cpu.u32[(skb + SKB_LEN) >>> 2] as number;
  if (len > p.maxFrame) {
    p.stats[TUN_TX_OVERSIZE]++;
    return NETDEV_TX_BUSY;
  }
  let slot = p.txCur;
  if (p.txHeld[slot] !== 0) {
    const n = p.txHeld.length;
    let k = 1;
    while (k < n && p.txHeld[(slot + k) % n] !== 0) k++;
    if (k === n) {
      p.stats[TUN_TX_BUSY]++;
      return NETDEV_TX_BUSY;
    }
    slot = (slot + k) % n;
    p.txCur = slot;
  }
  if ((cpu.u8[skb + SKB_IP_SUMMED] as number) === CHECKSUM_PARTIAL) {
    // No checksum offload on a wire we write ourselves: finish it in software.
    p.stats[TUN_TX_CSUM_HELP]++;
    if (skbChecksumHelp(cpu, skb) !== 0) {
      p.stats[TUN_TX_CSUM_FAIL]++;
      return NETDEV_TX_BUSY;
    }
  }
  const buf = p.txBufs[slot] as Buffer;
  const total = p.hdrLen + copySkbOut(p, cpu, skb, buf, p.hdrLen);
  const sock = p.socket;
  const q0 = sock.getSendQueueCount();
  try {
    sock.send(buf, 0, total, p.remotePort, p.remoteAddress, p.txDone[slot]);
  } catch (e) {
    p.stats[TUN_TX_SOCK_ERRORS]++;
    p.lastError = e as Error;
    return NETDEV_TX_BUSY;
  }
  p.txOutstanding[slot]++;
  // libuv queued the send (socket buffer full): the Buffer stays referenced until the callback.
  if (sock.getSendQueueCount() > q0) {
    p.txHeld[slot] = 1;
    p.stats[TUN_TX_QUEUED]++;
  }
  p.stats[TUN_TX_DATAGRAMS]++;
  p.stats[TUN_TX_DGRAM_BYTES] += total;
  // The bytes are out of the arena: complete the skb now (TX completion in NAPI context, one CPU).
  napiConsumeSkb(cpu, skb, NAPI_POLL_WEIGHT);
  return NETDEV_TX_OK;
}

/** dgram's address lookup for IPv4 literals: synchronous, no DNS, no nextTick per send. */
function literalLookup(address: string, _family: unknown, cb: (err: Error | null, address: string, family: number) => void): void {
  cb(null, address, 4);
}

function closeQuietly(s: dgram.Socket): void {
  try {
    s.close();
  } catch {
    // already closed
  }
}

function checkPort(what: string, port: number, allowZero: boolean): void {
  if (!Number.isInteger(port) || port < (allowZero ? 0 : 1) || port > 65535) {
    throw new RangeError(`udpTunnel: ${what} ${port} out of range ${allowZero ? 0 : 1}..65535`);
  }
}

/**
 * Create a tunnel device in `ns` with NAPI on `sd`'s CPU, bind its UDP
 * socket, and bring it up (ndo_open). Rejects (registering nothing) when an
 * option is invalid or the bind fails.
 */
export async function udpTunnelCreate(ns: NetNamespace, sd: Softnet, o: UdpTunnelOptions): Promise<NetDevice> {
  const mode = o.mode ?? "vxlan";
  if (mode !== "raw" && mode !== "vxlan") throw new RangeError(`udpTunnelCreate(${o.name}): mode '${String(mode)}' is not raw or vxlan`);
  const localAddress = o.localAddress ?? "127.0.0.1";
  for (const [k, a] of [
    ["localAddress", localAddress],
    ["remoteAddress", o.remoteAddress],
  ] as const) {
    if (!isIPv4(a)) throw new RangeError(`udpTunnelCreate(${o.name}): ${k} '${a}' is not an IPv4 address`);
  }
  const localPort = o.localPort ?? (mode === "vxlan" ? VXLAN_PORT : 0);
  checkPort("localPort", localPort, true);
  if (mode === "raw" && o.remotePort === undefined) throw new RangeError(`udpTunnelCreate(${o.name}): raw mode needs remotePort`);
  const remotePort = o.remotePort ?? VXLAN_PORT;
  checkPort("remotePort", remotePort, false);
  let vni = 0;
  if (mode === "vxlan") {
    if (o.vni === undefined || !Number.isInteger(o.vni) || o.vni < 0 || o.vni > VXLAN_VNI_MAX) {
      throw new RangeError(`udpTunnelCreate(${o.name}): vxlan needs a vni in 0..${VXLAN_VNI_MAX}, got ${o.vni}`);
    }
    vni = o.vni;
  }
  const mtu = o.mtu ?? 1500;
  if (!Number.isInteger(mtu) || mtu < 68 || mtu > UDP_TUNNEL_MAX_MTU) {
    throw new RangeError(`udpTunnelCreate(${o.name}): MTU ${mtu} out of range 68..${UDP_TUNNEL_MAX_MTU} (a frame must fit one 4 KiB page)`);
  }
  const ring = o.rxRingSize ?? UDP_TUNNEL_RING_SIZE;
  if (!Number.isInteger(ring) || ring < 2 || (ring & (ring - 1)) !== 0) {
    throw new RangeError(`udpTunnelCreate(${o.name}): rxRingSize ${ring} must be a power of two >= 2`);
  }
  const slots = o.txSlots ?? UDP_TUNNEL_TX_SLOTS;
  if (!Number.isInteger(slots) || slots < 1) throw new RangeError(`udpTunnelCreate(${o.name}): txSlots ${slots} must be >= 1`);
  const socket = dgram.createSocket({
    type: "udp4",
    lookup: literalLookup as unknown as dgram.SocketOptions["lookup"],
    ...(o.recvBufferSize !== undefined ? { recvBufferSize: o.recvBufferSize } : {}),
  });
  await new Promise<void>((resolve, reject) => {
    const onError = (e: Error) => {
      closeQuietly(socket);
      reject(new Error(`udpTunnelCreate(${o.name}): bind ${localAddress}:${localPort} failed: ${e.message}`, { cause: e }));
    };
    socket.once("error", onError);
    socket.bind({ address: localAddress, port: localPort, exclusive: true }, () => {
      socket.off("error", onError);
      resolve();
    });
  });
  let dev: NetDevice;
  try {
    dev = ns.register({ name: o.name, mtu, kind: mode === "vxlan" ? "vxlan" : "udp-tunnel", ...(o.mac !== undefined ? { mac: o.mac } : {}) });
  } catch (e) {
    closeQuietly(socket);
    throw e;
  }
  const p = new UdpTunnelPriv(sd.cpu, dev, sd, o, socket, mode, remotePort, vni);
  const a = socket.address();
  p.localAddress = a.address;
  p.localPort = a.port;
  dev.priv = p;
  dev.xmit = udpTunnelXmit;
  // We can copy from frags and frag lists; checksums are done in software.
  dev.features = NETIF_F_SG;
  socket.on("message", (msg) => udpTunnelRx(p, msg));
  socket.on("error", (e) => {
    p.stats[TUN_SOCK_ERRORS]++;
    dev.stats[RX_ERRORS]++;
    p.lastError = e;
  });
  dev.up = true;
  return dev;
}

/** The bound local address and port (port 0 at create picks a free one). */
export function udpTunnelAddress(dev: NetDevice): { address: string; port: number } {
  const p = privOf(dev);
  return { address: p.localAddress, port: p.localPort };
}

/** Point the tunnel at another peer (cold; e.g. once the peer's port is known). */
export function udpTunnelSetRemote(dev: NetDevice, address: string, port: number): void {
  if (!isIPv4(address)) throw new RangeError(`udpTunnelSetRemote(${dev.name}): '${address}' is not an IPv4 address`);
  checkPort("remotePort", port, false);
  const p = privOf(dev);
  p.remoteAddress = address;
  p.remotePort = port;
}

/** The NAPI instance of a tunnel device. */
export function udpTunnelNapi(dev: NetDevice): NapiStruct {
  return privOf(dev).napi;
}

/** The page pool RX frames land in (for stats). */
export function udpTunnelPool(dev: NetDevice): PagePool {
  return privOf(dev).pool;
}

/** Replace the receive path (e.g. once the stack above exists). */
export function udpTunnelSetRecv(dev: NetDevice, recv: UdpTunnelRecvFn): void {
  privOf(dev).recv = recv;
}

/** Tunnel counters by name plus the RX ring fill and sends in flight (allocates). */
export function udpTunnelStats(dev: NetDevice): Record<(typeof TUN_STAT_NAMES)[number], number> & { queued: number; txInFlight: number } {
  const p = privOf(dev);
  const o = {} as Record<string, number>;
  TUN_STAT_NAMES.forEach((n, i) => {
    o[n] = p.stats[i] as number;
  });
  o.queued = p.prod - p.cons;
  o.txInFlight = p.txOutstanding.reduce((a, b) => a + b, 0);
  return o as Record<(typeof TUN_STAT_NAMES)[number], number> & { queued: number; txInFlight: number };
}

/** Free every frame still on the RX ring (counted as DEV_READY drops). Returns how many. */
export function udpTunnelPurge(dev: NetDevice): number {
  const p = privOf(dev);
  let n = 0;
  while (p.cons !== p.prod) {
    const i = p.cons & p.ringMask;
    p.cons++;
    pagePoolPutPage(p.pool, p.ringPage[i] as number, true);
    rxDrop(p, TUN_RX_PURGED);
    n++;
  }
  return n;
}

/**
 * Close the device (ndo_stop + socket close): take it down, stop NAPI, wait
 * (up to `drainMs`, default 1000) for sends in flight, close the socket,
 * purge the RX ring and destroy the page pool. Pages still held by live
 * skbs go back to the page allocator when those skbs are freed. Idempotent.
 */
export async function udpTunnelClose(dev: NetDevice, drainMs = 1000): Promise<void> {
  const p = privOf(dev);
  if (p.closed) return;
  p.closed = true;
  dev.up = false;
  napiDisable(p.napi);
  const until = Date.now() + drainMs;
  while (p.txOutstanding.some((c) => c !== 0) && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 1));
  }
  p.socket.removeAllListeners("message");
  await new Promise<void>((resolve) => p.socket.close(() => resolve()));
  udpTunnelPurge(dev);
  hostPoolDestroy(p.cpu, p.pool);
}
