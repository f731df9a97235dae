/**
 * A Linux TAP net device (drivers/net/tun.c seen from user space): frames
 * move between the kernel's TAP interface and this process's arena through
 * the native addon, with no copy through a JavaScript Buffer.
 *
 * ```
 *  receive ("IRQ" = the fd turned readable, libuv uv_poll_t; the watch is
 *           stopped, NAPI scheduled, the softirq raised):
 *    poll(budget):  refill: the slots the last burst used get fresh page-pool pages
 *                   readBurst: up to min(slots, budget left) frames, one readv each,
 *                              straight into the pages (vnet header into the headroom)
 *                   each frame: checks -> napiBuildSkb around the head page,
 *                              further pages as frags, virtio header -> csum / GSO
 *                              fields, dev, counters -> recv(cpu, napi, skb)   (like veth's)
 *                   less than budget: napiCompleteDone, re-arm the watch
 *
 *  transmit (xmit = ndo_start_xmit): one writev per frame, gathered straight
 *    from the arena: [virtio header] + linear part + page frags + frag_list
 *    members (no linearising), then napiConsumeSkb. With `txThread` (vhost-
 *    net's TX worker) the same gather is copied into the queue's ring in the
 *    one native call, the skbs are consumed at once, and a native thread
 *    makes the writes; what the kernel refuses there is taken back from the
 *    device counters at the next poll (txReconcile).
 *      vnet header : GSO skbs go out whole (super-frames) with gso_type /
 *                    gso_size / NEEDS_CSUM filled, the checksum left PARTIAL
 *      no header   : GSO skbs are segmented in software (skbGsoSegment) and
 *                    the segments written as one burst; CHECKSUM_PARTIAL is
 *                    completed in software (skbChecksumHelp)
 * ```
 *
 * RX slot layout (one slot = one frame; `segs` page-pool pages):
 *
 * ```
 *  head page (4096)                                                        frag pages (4096 each)
 *  +-----------+--------+----------------------------------+----------+  +------+  +------+
 *  | headroom  | virtio | frame: Ethernet ... (headCap =    | shinfo   |  | ...  |  | ...  |
 *  | 64 - hlen | header | 4096 - 64 - 320 = 3712 bytes)     | (320)    |  |      |  |      |
 *  +-----------+--------+----------------------------------+----------+  +------+  +------+
 *  iov[0] starts at page + NET_SKB_PAD - hlen, so skb->data = page + NET_SKB_PAD;
 *  iov[1..] are whole pages, used only by frames longer than headCap.
 *  A read returns min(frame, buffers): a read that fills a slot exactly is
 *  taken as cut (rxTruncated), so every slot keeps one spare byte.
 * ```
 *
 * `segs` is 1 unless frames can exceed one page: MTU over 3693, or TSO/USO
 * offload asked for (TUNSETOFFLOAD), when a 64 KiB super-frame needs the head
 * page and 16 frag pages. Pages a frame did not use stay posted for the next
 * read (virtio-net's "big packets" scheme), so a slot costs `segs` pages
 * while idle: 16 slots × 17 pages in TSO mode by default.
 *
 * Accounting: every frame read counts in `rxFrames`; it either becomes an
 * skb (`dev` RX_PACKETS, then delivered or dropped above) or is dropped here
 * by reason (truncated, runt, bad virtio header, no skb head):
 * `rxFrames = RX_PACKETS + rxTruncated + rxRunt + rxBadVnetHdr + rxNomem`.
 * A transmit the kernel refuses returns NETDEV_TX_BUSY (the core frees the
 * skb as a FULL_RING drop; the tap's counters keep the errno class), as the
 * UDP tunnel does.
 *
 * The virtio header and its skb conversions live in `virtio-net-hdr.ts`,
 * the native calls behind `native/tap-addon.ts`.
 *
 * Hot paths allocate no JS objects: index arrays are per device, the
 * native calls take them as typed arrays. Setup and teardown are cold.
 *
 * @module
 */

import { kfree } from "../mm/mm.js";
import { kmalloc } from "../mm/kmalloc.js";
import { type PagePool, pagePoolAllocPage, pagePoolPutPage } from "../mm/page-pool.js";
import { be16, skbHeadlen } from "../skb/access.js";
import { napiBuildSkb } from "../skb/alloc.js";
import type { SkbCpu } from "../skb/cpu.js";
import { __skbPut, skbAddRxFrag, skbReserve } from "../skb/data.js";
import { SKB_DROP_REASON } from "../skb/drop-reason.js";
import { kfreeSkbReason, napiConsumeSkb } from "../skb/free.js";
import {
  CHECKSUM_PARTIAL,
  CHECKSUM_UNNECESSARY,
  FRAG_DESC_SIZE,
  FRAG_OFFSET,
  FRAG_PAGE,
  FRAG_SIZE,
  MAX_SKB_FRAGS,
  NET_SKB_PAD,
  SHINFO_FRAG_LIST,
  SHINFO_FRAGS,
  SHINFO_GSO_SIZE,
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
  SKB_MAC_HEADER,
  SKB_NETWORK_HEADER,
  SKB_NEXT,
  SKB_PROTOCOL,
  SKB_QUEUE_MAPPING,
  SKBF_PP_RECYCLE,
} from "../skb/layout.js";
import { skbChecksumHelp } from "../net/ipv4.js";
import { ETH_HLEN, ETH_P_8021AD, ETH_P_8021Q, VLAN_ETH_HLEN } from "../net/proto.js";
import { __vlanHwaccelPushInside, skbVlanTagPresent } from "../net/vlan.js";
import { skbGsoSegment } from "../core/gso.js";
import {
  devCountRx,
  devDropSkb,
  NETDEV_TX_BUSY,
  NETDEV_TX_OK,
  type NetDevice,
  type NetNamespace,
  NETIF_F_GSO_UDP_L4,
  NETIF_F_HW_CSUM,
  NETIF_F_SG,
  NETIF_F_TSO,
  NETIF_F_TSO_ECN,
  RX_DROPPED,
  RX_ERRORS,
  TX_BYTES,
  TX_DROPPED,
  TX_ERRORS,
  TX_PACKETS,
} from "../core/netdev.js";
import {
  NAPI_POLL_WEIGHT,
  type NapiStruct,
  netdevTxScheduleFlush,
  napiCompleteDone,
  napiDisable,
  napiSchedule,
  netifNapiAdd,
  type Softnet,
} from "../core/napi.js";
import { netRxActionIrq } from "../core/loop.js";
import {
  TX_WRITER_BUSY,
  TX_WRITER_CARRIER,
  TX_WRITER_COUNTERS,
  TX_WRITER_DIRECT,
  TX_WRITER_KICKS,
  TX_WRITER_LAST_ERRNO,
  TX_WRITER_OTHER,
  TX_WRITER_REFUSED,
  TX_WRITER_REFUSED_BYTES,
  TX_WRITER_REFUSED_COUNTED,
  TX_WRITER_REFUSED_PACKETS,
  TX_WRITER_REFUSED_SEGMENTS,
  TX_WRITER_ROOM_WAITS,
  TX_WRITER_SLEEPS,
  TX_WRITER_WRITTEN,
  type TapAddon,
  tapAddon,
  type TapIoHandle,
  type TapPollHandle,
} from "../native/tap-addon.js";
import {
  VIRTIO_NET_HDR_F_NEEDS_CSUM,
  VIRTIO_NET_HDR_LEN,
  VIRTIO_NET_HDR_MRG_RXBUF_LEN,
  virtioNetGsoSetPartial,
  virtioNetHdrFromSkb,
  virtioNetHdrToSkb,
  VNET_HDR_FLAGS,
  VNET_HDR_GSO_TYPE,
} from "./virtio-net-hdr.js";
import { HOST_BUF_SIZE, hostPoolCreate, hostPoolDestroy } from "./host-common.js";

// ---- TUNSETIFF / TUNSETOFFLOAD values (include/uapi/linux/if_tun.h), ABI ------------------
export const IFF_TAP = 0x0002;
export const IFF_NO_PI = 0x1000;
export const IFF_VNET_HDR = 0x4000;
export const IFF_MULTI_QUEUE = 0x0100;
/** Offload: we can take frames whose checksum is left PARTIAL (NEEDS_CSUM). */
export const TUN_F_CSUM = 0x01;
export const TUN_F_TSO4 = 0x02;
export const TUN_F_TSO6 = 0x04;
export const TUN_F_TSO_ECN = 0x08;
export const TUN_F_UFO = 0x10;
/** USO for IPv4 / IPv6 (kernel 6.2+, and only the two together; otherwise TUNSETOFFLOAD fails with EINVAL). */
export const TUN_F_USO4 = 0x20;
export const TUN_F_USO6 = 0x40;
/** Default offload with a vnet header: checksum offload and TCP super-frames. */
export const TAP_OFFLOAD_DEFAULT = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN;
/** Offload bits that let the kernel hand us frames longer than the MTU. */
const TUN_F_GSO_ANY = TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_UFO | TUN_F_USO4 | TUN_F_USO6;

/** Frame bytes the head page of an RX slot holds (after NET_SKB_PAD, before the shared info). */
export const TAP_HEAD_CAP = HOST_BUF_SIZE - NET_SKB_PAD - SHINFO_SIZE;
/** Largest GSO frame the kernel hands a TAP (gso_max_size 65536) plus a VLAN Ethernet header. */
export const TAP_GSO_MAX_FRAME = 65536 + VLAN_ETH_HLEN;
/** Most pieces one transmitted frame may gather (UIO_MAXIOV). */
export const TAP_TX_MAX_PIECES = 1024;
/** Most frames one transmit burst carries (GSO segments written in software). */
export const TAP_TX_MAX_FRAMES = 256;

// ---- counters --------------------------------------------------------------------------------
export const TAP_RX_FRAMES = 0;
export const TAP_RX_BYTES = 1;
export const TAP_TX_FRAMES = 2;
export const TAP_TX_BYTES = 3;
/** Frame that filled the RX buffers: the kernel cut it (a read returns min(frame, buffers)). */
export const TAP_RX_TRUNCATED = 4;
/** Shorter than an Ethernet header (after the virtio header). */
export const TAP_RX_RUNT = 5;
/** Virtio header the device cannot honour (unknown GSO type, csum offsets out of the frame, GSO without NEEDS_CSUM). */
export const TAP_RX_BAD_VNET_HDR = 6;
/** No skb head for a frame read (the frame is dropped, its pages stay posted). */
export const TAP_RX_NOMEM = 7;
/** Polls that could post no buffer (page pool empty): frames wait in the kernel queue. */
export const TAP_RX_NO_BUFFERS = 8;
/** read errors other than EAGAIN (the queue stops: EBADFD = the interface is gone). */
export const TAP_RX_ERRORS = 9;
/** Received GSO super-frames (gso_size set). */
export const TAP_RX_GSO = 10;
/** Received with NEEDS_CSUM (CHECKSUM_PARTIAL). */
export const TAP_RX_CSUM_PARTIAL = 11;
/** Received with DATA_VALID (CHECKSUM_UNNECESSARY). */
export const TAP_RX_CSUM_VALID = 12;
/** Transmitted GSO super-frames. */
export const TAP_TX_GSO = 13;
/** Transmitted with NEEDS_CSUM. */
export const TAP_TX_CSUM_PARTIAL = 14;
/** CHECKSUM_PARTIAL completed in software before a write without vnet header. */
export const TAP_TX_CSUM_HELP = 15;
/** GSO skbs segmented in software (no vnet header). */
export const TAP_TX_GSO_SEGMENTED = 16;
/** Writes refused with EAGAIN. */
export const TAP_TX_BUSY = 17;
/** Writes refused with EIO: the kernel side of the interface is down. */
export const TAP_TX_CARRIER = 18;
/** Writes refused with another errno (EINVAL: the kernel rejected the frame or its virtio header). */
export const TAP_TX_ERRORS = 19;
/** Transmits the device could not prepare (checksum help, GSO, VLAN push, too many pieces, closed). */
export const TAP_TX_PREP_FAIL = 20;
/** Readiness callbacks ("interrupts"). */
export const TAP_IRQS = 21;
/** NAPI polls. */
export const TAP_POLLS = 22;
/** readBurst calls. */
export const TAP_READ_BURSTS = 23;
/** writev bursts (TX batches written; txFrames / txBursts is the frames per doorbell). */
export const TAP_TX_BURSTS = 24;
/** Frames refused because the transmit thread's ring stayed full (also counted in txBusy). */
export const TAP_TX_RING_FULL = 25;
export const TAP_STAT_MAX = 26;
export const TAP_STAT_NAMES = [
  "rxFrames",
  "rxBytes",
  "txFrames",
  "txBytes",
  "rxTruncated",
  "rxRunt",
  "rxBadVnetHdr",
  "rxNomem",
  "rxNoBuffers",
  "rxErrors",
  "rxGso",
  "rxCsumPartial",
  "rxCsumValid",
  "txGso",
  "txCsumPartial",
  "txCsumHelp",
  "txGsoSegmented",
  "txBusy",
  "txCarrier",
  "txErrors",
  "txPrepFail",
  "irqs",
  "polls",
  "readBursts",
  "txBursts",
  "txRingFull",
] as const;

/** What the device does with each received skb (eth_type_trans + the stack), as veth's recv. */
export type TapRecvFn = (cpu: SkbCpu, napi: NapiStruct, skb: number) => void;

/** Options of {@link tapCreate}. */
export interface TapOptions {
  /** Kernel interface name (1..15 bytes; "%d" lets the kernel number it). */
  name: string;
  /** Name of the device in `ns` (default: the kernel name). */
  devName?: string;
  /** Device MTU (default 1500): RX buffers take MTU + a VLAN Ethernet header; keep the kernel side's MTU the same. */
  mtu?: number;
  /** This end's MAC ("aa:bb:cc:dd:ee:ff"); the kernel interface has its own. */
  mac?: string;
  /** IFF_VNET_HDR: every frame carries a struct virtio_net_hdr (checksum offload, GSO). Default false. */
  vnetHdr?: boolean;
  /** TUNSETVNETHDRSZ: 10 (virtio_net_hdr, default) or 12 (virtio 1.0 / mrg_rxbuf). */
  vnetHdrSize?: number;
  /** TUNSETOFFLOAD bits (TUN_F_*); default TAP_OFFLOAD_DEFAULT with a vnet header, and needs one. */
  offload?: number;
  /** Queues: more than 1 opens the interface with IFF_MULTI_QUEUE, one fd and one NAPI per queue. */
  queues?: number;
  /**
   * Open with IFF_MULTI_QUEUE even for one queue, so that other threads or
   * processes (one per CPU) can attach their own queues to the same
   * interface by name. The kernel then spreads flows over the queues
   * (tun's automq: a flow goes to the queue that last wrote it). Default
   * false (true whenever queues > 1).
   */
  multiQueue?: boolean;
  /** RX slots per queue = most frames per readBurst (default 64, 16 when frames span pages). */
  rxBurst?: number;
  /** NAPI weight (default 64). */
  weight?: number;
  /**
   * Write through a transmit thread per queue (vhost-net's worker, in user
   * space; default false): each poll's batch is copied into the thread's
   * ring in one native call and the thread makes the write(2) calls, so the
   * NAPI thread does not wait for the kernel's delivery of every frame. A
   * full ring is waited on (txRingWaits: the back-pressure a direct write
   * applies); a frame still without room after 1 s is a FULL_RING drop
   * (txBusy, txRingFull). A frame the kernel refuses later is taken back
   * from TX_PACKETS at the next poll ({@link tapTxReconcile}). Costs one
   * copy per frame, but for super-frames (8 KiB and more) that find the
   * ring idle: those are written directly, as without the thread.
   */
  txThread?: boolean;
  /** Ring bytes of each transmit thread (default 4 MiB; 4 KiB .. 1 GiB; a frame may take half). */
  txRingBytes?: number;
  /** The receive path. */
  recv: TapRecvFn;
}

/** Default ring of a transmit thread: 64 super-frames of 64 KiB, or ~30 000 small frames. */
export const TAP_TX_RING_BYTES = 4 << 20;

/** One queue: an fd, its readiness watch, its NAPI and its RX slots. */
export class TapQueue {
  readonly index: number;
  readonly fd: number;
  readonly napi: NapiStruct;
  poller: TapPollHandle | null = null;
  /** The watch is started (the "interrupt" is enabled). */
  armed = false;
  /** A read failed with a persistent error: no more polling (see lastErrno). */
  broken = false;
  lastErrno = 0;
  /** Posted pages: slot i, segment k at i * segs + k (0 = none). */
  readonly slotPage: Uint32Array;
  /** Leading segments of slot i that may lack a page (0 = fully posted). */
  readonly slotNeed: Uint8Array;
  /** readv iovecs, same indexing as slotPage. */
  readonly iovOff: Uint32Array;
  readonly iovCap: Uint32Array;
  /** Lengths the kernel reported per slot. */
  readonly lens: Uint32Array;
  /** Burst I/O with this queue's RX and TX tables bound (set by tapCreate). */
  io: TapIoHandle | null = null;
  // ---- the TX batch (TxBatch): frames held until the poll that sent them ends
  txScheduled = false;
  /** Pieces of the held frames (gathers: virtio header, linear part, frags) and pieces per frame. */
  readonly txOff = new Uint32Array(TAP_TX_MAX_PIECES);
  readonly txLen = new Uint32Array(TAP_TX_MAX_PIECES);
  readonly txCounts = new Uint32Array(TAP_TX_MAX_FRAMES);
  /** The held skbs; TX_KIND_* of each; the length the core counted for a TX_KIND_PACKET. */
  readonly txSkbs = new Uint32Array(TAP_TX_MAX_FRAMES);
  readonly txKind = new Uint8Array(TAP_TX_MAX_FRAMES);
  readonly txCounted = new Uint32Array(TAP_TX_MAX_FRAMES);
  txFrames = 0;
  txPieces = 0;
  /** kmalloc'ed virtio headers, TAP_TX_HDR_SLOT bytes per held frame (0 without a vnet header; set by tapCreate). */
  txHdrs = 0;
  /** Set by tapCreate: writes the held frames. */
  txFlush: () => void = () => {};
  /** The transmit thread's counters (TX_WRITER_*, over a SharedArrayBuffer; null without a thread). */
  wCounters: Int32Array | null = null;
  /** Their values at the last reconcile. */
  readonly wSeen = new Int32Array(TX_WRITER_COUNTERS);

  /** Use {@link tapCreate}. */
  constructor(index: number, fd: number, napi: NapiStruct, slots: number, segs: number, hdrLen: number) {
    this.index = index;
    this.fd = fd;
    this.napi = napi;
    this.slotPage = new Uint32Array(slots * segs);
    this.slotNeed = new Uint8Array(slots).fill(segs);
    this.iovOff = new Uint32Array(slots * segs);
    this.iovCap = new Uint32Array(slots * segs);
    for (let i = 0; i < slots; i++) {
      this.iovCap[i * segs] = TAP_HEAD_CAP + hdrLen;
      for (let k = 1; k < segs; k++) this.iovCap[i * segs + k] = HOST_BUF_SIZE;
    }
    this.lens = new Uint32Array(slots);
  }
}

/** Private state of a TAP device. */
export class TapPriv {
  readonly addon: TapAddon;
  readonly cpu: SkbCpu;
  readonly dev: NetDevice;
  /** The kernel's interface name (as TUNSETIFF returned it). */
  readonly ifname: string;
  /** 0 without IFF_VNET_HDR, else the virtio header size. */
  readonly hdrLen: number;
  readonly offload: number;
  /** Pages per RX slot. */
  readonly segs: number;
  /** RX slots per queue. */
  readonly slots: number;
  /** Frame bytes (without the virtio header) the RX buffers of a slot hold; frames must be shorter. */
  readonly rxCap: number;
  readonly pool: PagePool;
  readonly queues: TapQueue[];
  recv: TapRecvFn;
  /** errno out-parameter of the native bursts. */
  readonly status = new Int32Array(1);
  readonly stats = new Float64Array(TAP_STAT_MAX);
  /** errno of the last refused write. */
  lastTxErrno = 0;
  /** Ring bytes of each queue's transmit thread (0: writes are made on this thread). */
  txRingBytes = 0;
  closed = false;

  /** Use {@link tapCreate}. */
  constructor(
    addon: TapAddon,
    cpu: SkbCpu,
    dev: NetDevice,
    ifname: string,
    hdrLen: number,
    offload: number,
    segs: number,
    slots: number,
    recv: TapRecvFn,
  ) {
    this.addon = addon;
    this.cpu = cpu;
    this.dev = dev;
    this.ifname = ifname;
    this.hdrLen = hdrLen;
    this.offload = offload;
    this.segs = segs;
    this.slots = slots;
    this.rxCap = TAP_HEAD_CAP + (segs - 1) * HOST_BUF_SIZE;
    this.recv = recv;
    this.queues = [];
    this.pool = hostPoolCreate(cpu);
  }
}

function privOf(dev: NetDevice): TapPriv {
  return dev.priv as TapPriv;
}

function queueOf(p: TapPriv, napi: NapiStruct): TapQueue {
  const qs = p.queues;
  for (let i = 1; i < qs.length; i++) if ((qs[i] as TapQueue).napi === napi) return qs[i] as TapQueue;
  return qs[0] as TapQueue;
}

// ---- receive ---------------------------------------------------------------------------------------

/** A receive drop before any skb exists: device and tap counters. */
function rxDropFrame(p: TapPriv, why: number, reason: number): void {
  p.stats[why]++;
  p.dev.stats[RX_DROPPED]++;
  p.dev.drops[reason]++;
}

/**
 * Post pages into slots 0..want-1 (only the segments a frame used since the
 * last refill). Returns how many leading slots are complete: fewer than
 * `want` when the page pool ran dry.
 */
function tapRxRefill(p: TapPriv, q: TapQueue, want: number): number {
  const segs = p.segs;
  const pad = NET_SKB_PAD - p.hdrLen;
  for (let i = 0; i < want; i++) {
    const need = q.slotNeed[i] as number;
    if (need === 0) continue;
    const base = i * segs;
    for (let k = 0; k < need; k++) {
      if ((q.slotPage[base + k] as number) !== 0) continue;
      const page = pagePoolAllocPage(p.pool);
      if (page === 0) return i;
      q.slotPage[base + k] = page;
      q.iovOff[base + k] = k === 0 ? page + pad : page;
    }
    q.slotNeed[i] = 0;
  }
  return want;
}

/** Turn slot `i` (a frame of `lens[i]` bytes read) into an skb for `recv`, or a counted drop. */
function tapRxFrame(cpu: SkbCpu, p: TapPriv, q: TapQueue, napi: NapiStruct, i: number): void {
  const dev = p.dev;
  const n = q.lens[i] as number;
  const hl = p.hdrLen;
  p.stats[TAP_RX_FRAMES]++;
  p.stats[TAP_RX_BYTES] += n;
  // Drops before an skb exists leave the slot's pages posted for the next read.
  // The kernel returns min(frame, buffers): a full buffer means the frame may have been cut.
  if (n >= p.rxCap + hl) {
    rxDropFrame(p, TAP_RX_TRUNCATED, SKB_DROP_REASON.PKT_TOO_BIG);
    return;
  }
  const flen = n - hl;
  if (flen < ETH_HLEN) {
    rxDropFrame(p, TAP_RX_RUNT, SKB_DROP_REASON.PKT_TOO_SMALL);
    return;
  }
  const base = i * p.segs;
  const page = q.slotPage[base] as number;
  const skb = napiBuildSkb(cpu, page, HOST_BUF_SIZE);
  if (skb === 0) {
    rxDropFrame(p, TAP_RX_NOMEM, SKB_DROP_REASON.NOMEM);
    return;
  }
  // The pages now belong to the skb (pp_recycle: freeing it returns them to the pool).
  cpu.u8[skb + SKB_FLAGS] = (cpu.u8[skb + SKB_FLAGS] as number) | SKBF_PP_RECYCLE;
  skbReserve(cpu, skb, NET_SKB_PAD);
  const h0 = Math.min(flen, TAP_HEAD_CAP);
  __skbPut(cpu, skb, h0);
  q.slotPage[base] = 0;
  let rest = flen - h0;
  let k = 1;
  while (rest > 0) {
    const sz = Math.min(rest, HOST_BUF_SIZE);
    skbAddRxFrag(cpu, skb, k - 1, q.slotPage[base + k] as number, 0, sz, HOST_BUF_SIZE);
    q.slotPage[base + k] = 0;
    rest -= sz;
    k++;
  }
  q.slotNeed[i] = k;
  cpu.u32[(skb + SKB_DEV) >>> 2] = dev.ifindex;
  cpu.u16[(skb + SKB_QUEUE_MAPPING) >>> 1] = q.index;
  if (hl !== 0) {
    const reason = virtioNetHdrToSkb(cpu, skb, page + NET_SKB_PAD - hl);
    if (reason !== 0) {
      p.stats[TAP_RX_BAD_VNET_HDR]++;
      devDropSkb(cpu, dev, skb, reason, false);
      return;
    }
    const summed = cpu.u8[skb + SKB_IP_SUMMED] as number;
    if (summed === CHECKSUM_PARTIAL) p.stats[TAP_RX_CSUM_PARTIAL]++;
    else if (summed === CHECKSUM_UNNECESSARY) p.stats[TAP_RX_CSUM_VALID]++;
    const sh = page + (cpu.u32[(skb + SKB_END) >>> 2] as number);
    if ((cpu.u16[(sh + SHINFO_GSO_SIZE) >>> 1] as number) !== 0) p.stats[TAP_RX_GSO]++;
  }
  devCountRx(cpu, dev, skb, q.index);
  p.recv(cpu, napi, skb);
}

/** The NAPI poll of one queue: refill, read bursts into the slots, build skbs, up to `budget` frames. */
function tapPoll(cpu: SkbCpu, napi: NapiStruct, budget: number): number {
  const p = privOf(napi.netdev);
  const q = queueOf(p, napi);
  p.stats[TAP_POLLS]++;
  txReconcile(p, q);
  let done = 0;
  while (done < budget && !q.broken) {
    let want = budget - done;
    if (want > p.slots) want = p.slots;
    const posted = tapRxRefill(p, q, want);
    if (posted === 0) {
      p.stats[TAP_RX_NO_BUFFERS]++;
      break;
    }
    p.stats[TAP_READ_BURSTS]++;
    const n = (q.io as TapIoHandle).read(q.fd, posted, p.segs);
    for (let i = 0; i < n; i++) tapRxFrame(cpu, p, q, napi, i);
    done += n;
    const err = p.status[0] as number;
    if (err !== 0) {
      // EBADFD (the interface was deleted), EFAULT, EINVAL: persistent; stop this queue.
      p.stats[TAP_RX_ERRORS]++;
      p.dev.stats[RX_ERRORS]++;
      q.lastErrno = err;
      q.broken = true;
      break;
    }
    if (n < posted) break;
  }
  if (done < budget) {
    napiCompleteDone(napi, done);
    if (!p.closed && !q.broken && q.poller !== null && !q.armed) {
      q.poller.start();
      q.armed = true;
    }
  }
  return done;
}

/** The readiness callback: the model's hard IRQ. Mask it, schedule NAPI, raise the softirq. */
function tapIrq(p: TapPriv, q: TapQueue, _status: number): void {
  p.stats[TAP_IRQS]++;
  if (q.poller !== null && q.armed) {
    q.poller.stop();
    q.armed = false;
  }
  if (p.closed) return;
  napiSchedule(q.napi);
  // Softirq on IRQ exit: a readable TAP is polled right here when the loop sleeps.
  netRxActionIrq(q.napi.sd);
}

// ---- transmit --------------------------------------------------------------------------------------

/** Append the pieces of `skb` (linear part, frags, frag_list members) from piece index `at`; -1 when they do not fit. */
function gatherSkb(cpu: SkbCpu, p: TapQueue, skb: number, at: number): number {
  const u32 = cpu.u32;
  const len = u32[(skb + SKB_LEN) >>> 2] as number;
  const headlen = len - (u32[(skb + SKB_DATA_LEN) >>> 2] as number);
  if (headlen > 0) {
    if (at >= TAP_TX_MAX_PIECES) return -1;
    p.txOff[at] = u32[(skb + SKB_DATA) >>> 2] as number;
    p.txLen[at] = headlen;
    at++;
  }
  const sh = (u32[(skb + SKB_HEAD) >>> 2] as number) + (u32[(skb + SKB_END) >>> 2] as number);
  const nr = cpu.u8[sh + SHINFO_NR_FRAGS] as number;
  if (at + nr > TAP_TX_MAX_PIECES) return -1;
  for (let f = 0; f < nr; f++) {
    const d = sh + SHINFO_FRAGS + f * FRAG_DESC_SIZE;
    p.txOff[at] = (u32[(d + FRAG_PAGE) >>> 2] as number) + (u32[(d + FRAG_OFFSET) >>> 2] as number);
    p.txLen[at] = u32[(d + FRAG_SIZE) >>> 2] as number;
    at++;
  }
  for (let l = u32[(sh + SHINFO_FRAG_LIST) >>> 2] as number; l !== 0; l = u32[(l + SKB_NEXT) >>> 2] as number) {
    at = gatherSkb(cpu, p, l, at);
    if (at < 0) return -1;
  }
  return at;
}

/** Count a refused write by errno class. */
function txRefused(p: TapPriv, err: number): void {
  p.lastTxErrno = err;
  const c = p.addon.constants;
  if (err === c.ENOBUFS) {
    // The transmit thread's ring stayed full (no room within its wait).
    p.stats[TAP_TX_BUSY]++;
    p.stats[TAP_TX_RING_FULL]++;
  } else if (err === c.EAGAIN) p.stats[TAP_TX_BUSY]++;
  else if (err === c.EIO) p.stats[TAP_TX_CARRIER]++;
  else p.stats[TAP_TX_ERRORS]++;
}

/**
 * Take `packets` refused packets (`bytes` as the core counted them) back
 * from TX_PACKETS / TX_BYTES, where devQueueXmit counted them (the device
 * and its queue-0 counters).
 */
function txUncount(dev: NetDevice, packets: number, bytes: number): void {
  dev.stats[TX_PACKETS] -= packets;
  dev.stats[TX_BYTES] -= bytes;
  dev.queueStats[TX_PACKETS] -= packets;
  dev.queueStats[TX_BYTES] -= bytes;
}

/** How far counter `i` of a transmit thread moved since the last look (32-bit, wrapping). */
function writerDelta(c: Int32Array, seen: Int32Array, i: number): number {
  const v = Atomics.load(c, i);
  const d = (v - (seen[i] as number)) >>> 0;
  seen[i] = v;
  return d;
}

/**
 * Take back what queue `q`'s transmit thread could not write: each frame
 * the kernel refused after the thread took it leaves TX_PACKETS / TX_BYTES
 * for a FULL_RING TX drop (a software segment: TX_ERROR), as a refusal
 * seen at once does in tapTxFlush. One atomic load when nothing was refused.
 */
function txReconcile(p: TapPriv, q: TapQueue): void {
  const c = q.wCounters;
  if (c === null) return;
  const seen = q.wSeen;
  if (Atomics.load(c, TX_WRITER_REFUSED) === seen[TX_WRITER_REFUSED]) return;
  writerDelta(c, seen, TX_WRITER_REFUSED);
  const dev = p.dev;
  const pk = writerDelta(c, seen, TX_WRITER_REFUSED_PACKETS);
  const sg = writerDelta(c, seen, TX_WRITER_REFUSED_SEGMENTS);
  txUncount(dev, pk, writerDelta(c, seen, TX_WRITER_REFUSED_COUNTED));
  dev.stats[TX_DROPPED] += pk;
  dev.drops[SKB_DROP_REASON.FULL_RING] += pk;
  dev.stats[TX_ERRORS] += sg;
  dev.drops[SKB_DROP_REASON.TX_ERROR] += sg;
  p.stats[TAP_TX_FRAMES] -= pk + sg;
  p.stats[TAP_TX_BYTES] -= writerDelta(c, seen, TX_WRITER_REFUSED_BYTES);
  p.stats[TAP_TX_BUSY] += writerDelta(c, seen, TX_WRITER_BUSY);
  p.stats[TAP_TX_CARRIER] += writerDelta(c, seen, TX_WRITER_CARRIER);
  p.stats[TAP_TX_ERRORS] += writerDelta(c, seen, TX_WRITER_OTHER);
  p.lastTxErrno = Atomics.load(c, TX_WRITER_LAST_ERRNO);
}

/**
 * Apply what the transmit threads of `dev` could not write to its counters
 * now (the poll does it anyway; tapStats and tapClose too). No-op without
 * threads.
 */
export function tapTxReconcile(dev: NetDevice): void {
  const p = privOf(dev);
  for (const q of p.queues) txReconcile(p, q);
}

/** The TX queue of `skb` (its queue_mapping, modulo the queues). */
function txQueue(cpu: SkbCpu, p: TapPriv, skb: number): TapQueue {
  const nq = p.queues.length;
  if (nq === 1) return p.queues[0] as TapQueue;
  return p.queues[(cpu.u16[(skb + SKB_QUEUE_MAPPING) >>> 1] as number) % nq] as TapQueue;
}

// What a held frame is, for the accounting of a refused write.
/** A packet the core counted as transmitted (TX_PACKETS): refused, it becomes a TX drop. */
const TX_KIND_PACKET = 0;
/** A segment of a software-segmented GSO skb (the core counted the original once): refused, a TX error. */
const TX_KIND_SEGMENT = 1;
/** Bytes of a held frame's virtio header slot. */
const TAP_TX_HDR_SLOT = 16;

/**
 * Hold `skb` in `q`'s TX batch behind the virtio header already written to
 * its slot (txHdrSlot, when the device has one). Returns false when its
 * pieces do not fit even an empty batch. May flush the batch first to make
 * room (the header moves to the new slot).
 */
function txHold(cpu: SkbCpu, p: TapPriv, q: TapQueue, skb: number, kind: number, counted: number): boolean {
  let at = q.txPieces;
  for (let attempt = 0; attempt < 2; attempt++) {
    if (q.txFrames < TAP_TX_MAX_FRAMES) {
      let a = at;
      if (p.hdrLen !== 0) {
        q.txOff[a] = q.txHdrs + q.txFrames * TAP_TX_HDR_SLOT;
        q.txLen[a++] = p.hdrLen;
      }
      const end = gatherSkb(cpu, q, skb, a);
      if (end >= 0) {
        const f = q.txFrames++;
        q.txCounts[f] = end - at;
        q.txSkbs[f] = skb;
        q.txKind[f] = kind;
        q.txCounted[f] = counted;
        q.txPieces = end;
        return true;
      }
    }
    if (q.txFrames === 0) return false;
    // Full: write what is held, then try once more from slot 0 — with this
    // frame's header, already in its slot, moved along.
    const hdr = txHdrSlot(q);
    tapTxFlush(cpu, p, q);
    if (p.hdrLen !== 0) cpu.u8.copyWithin(q.txHdrs, hdr, hdr + p.hdrLen);
    at = 0;
  }
  return false;
}

/** The header slot the next held frame of `q` uses (after any flush txHold may need: call txRoom first). */
function txHdrSlot(q: TapQueue): number {
  return q.txHdrs + q.txFrames * TAP_TX_HDR_SLOT;
}

/** Make sure one more frame fits the batch's frame table (its header slot is then txHdrSlot). */
function txRoom(cpu: SkbCpu, p: TapPriv, q: TapQueue): void {
  if (q.txFrames === TAP_TX_MAX_FRAMES) tapTxFlush(cpu, p, q);
}

/**
 * Write every frame `q` holds, as few writev bursts as the kernel allows,
 * then complete the written skbs (napiConsumeSkb). A frame the kernel
 * refuses is counted by errno class (txBusy / txCarrier / txErrors) and
 * dropped: a packet as the core's FULL_RING drop would have been (its
 * TX_PACKETS / TX_BYTES taken back), a software segment as TX_ERROR.
 */
function tapTxFlush(cpu: SkbCpu, p: TapPriv, q: TapQueue): void {
  const n = q.txFrames;
  if (n === 0) return;
  const u8 = cpu.u8;
  const u32 = cpu.u32;
  const hl = p.hdrLen;
  const dev = p.dev;
  let j = 0;
  let piece = 0;
  while (j < n) {
    const w = (q.io as TapIoHandle).write(q.fd, n - j, piece, j);
    p.stats[TAP_TX_BURSTS]++;
    for (let k = 0; k < w; k++, j++) {
      const skb = q.txSkbs[j] as number;
      p.stats[TAP_TX_FRAMES]++;
      p.stats[TAP_TX_BYTES] += (u32[(skb + SKB_LEN) >>> 2] as number) + hl;
      if (hl !== 0) {
        const h = q.txHdrs + j * TAP_TX_HDR_SLOT;
        if ((u8[h + VNET_HDR_GSO_TYPE] as number) !== 0) p.stats[TAP_TX_GSO]++;
        if (((u8[h + VNET_HDR_FLAGS] as number) & VIRTIO_NET_HDR_F_NEEDS_CSUM) !== 0) p.stats[TAP_TX_CSUM_PARTIAL]++;
      }
      piece += q.txCounts[j] as number;
      // The bytes are in the kernel: complete the skb (this CPU).
      napiConsumeSkb(cpu, skb, NAPI_POLL_WEIGHT);
    }
    if (j < n) {
      // Frame j was refused: count it, drop it, go on with the rest.
      txRefused(p, p.status[0] as number);
      const skb = q.txSkbs[j] as number;
      if (q.txKind[j] === TX_KIND_PACKET) {
        txUncount(dev, 1, q.txCounted[j] as number);
        devDropSkb(cpu, dev, skb, SKB_DROP_REASON.FULL_RING, true);
      } else {
        dev.stats[TX_ERRORS]++;
        dev.drops[SKB_DROP_REASON.TX_ERROR]++;
        kfreeSkbReason(cpu, skb, SKB_DROP_REASON.TX_ERROR);
      }
      piece += q.txCounts[j] as number;
      j++;
    }
  }
  q.txFrames = 0;
  q.txPieces = 0;
}

/**
 * Segment a GSO skb in software (no vnet header, or one whose checksums
 * cannot be left to the kernel) and hold the segments in the batch, each
 * behind an all-zero virtio header when the device has one. The original is
 * consumed by the segmentation (the core counts it as one transmitted
 * packet); a segment the kernel refuses is dropped as TX_ERROR (TX_ERRORS).
 */
function tapXmitSegmented(cpu: SkbCpu, p: TapPriv, skb: number, q: TapQueue): number {
  // skbGsoSegment works from skb->protocol and the network header: take them
  // from the frame itself (a bridged frame never went through eth_type_trans).
  const u8 = cpu.u8;
  const data = cpu.u32[(skb + SKB_DATA) >>> 2] as number;
  const headlen = skbHeadlen(cpu, skb);
  let off = ETH_HLEN;
  let proto = headlen >= ETH_HLEN ? be16(u8, data + 12) : 0;
  while ((proto === ETH_P_8021Q || proto === ETH_P_8021AD) && off + 4 <= headlen) {
    proto = be16(u8, data + off + 2);
    off += 4;
  }
  const rel = data - (cpu.u32[(skb + SKB_HEAD) >>> 2] as number);
  cpu.u16[(skb + SKB_PROTOCOL) >>> 1] = proto;
  cpu.u16[(skb + SKB_MAC_HEADER) >>> 1] = rel;
  cpu.u16[(skb + SKB_NETWORK_HEADER) >>> 1] = rel + off;
  const segs = skbGsoSegment(cpu, skb, p.dev.mtu);
  if (segs === 0) {
    p.stats[TAP_TX_PREP_FAIL]++;
    return NETDEV_TX_BUSY;
  }
  p.stats[TAP_TX_GSO_SEGMENTED]++;
  const u32 = cpu.u32;
  const hl = p.hdrLen;
  let s = segs;
  while (s !== 0) {
    const next = u32[(s + SKB_NEXT) >>> 2] as number;
    u32[(s + SKB_NEXT) >>> 2] = 0;
    txRoom(cpu, p, q);
    if (hl !== 0) u8.fill(0, txHdrSlot(q), txHdrSlot(q) + hl);
    if (!txHold(cpu, p, q, s, TX_KIND_SEGMENT, 0)) {
      // A segment with more pieces than one write takes: drop it.
      p.stats[TAP_TX_PREP_FAIL]++;
      p.dev.stats[TX_ERRORS]++;
      p.dev.drops[SKB_DROP_REASON.TX_ERROR]++;
      kfreeSkbReason(cpu, s, SKB_DROP_REASON.TX_ERROR);
    }
    s = next;
  }
  netdevTxScheduleFlush(q.napi.sd, q);
  return NETDEV_TX_OK;
}

/**
 * ndo_start_xmit: hold the frame in the queue's TX batch (virtio header
 * first when the device has one) and ask for the batch to be written when
 * the current poll ends — outside a poll at once (`xmit_more`: one doorbell
 * per burst). Written frames are completed with napiConsumeSkb. Returns
 * NETDEV_TX_BUSY (the core frees the skb as FULL_RING; the tap's counters
 * keep the cause) when the frame cannot be prepared; a write the kernel
 * refuses later is dropped the same way by tapTxFlush.
 */
function tapXmit(cpu: SkbCpu, dev: NetDevice, skb: number): number {
  const p = privOf(dev);
  if (p.closed) {
    p.stats[TAP_TX_PREP_FAIL]++;
    return NETDEV_TX_BUSY;
  }
  const u8 = cpu.u8;
  const u32 = cpu.u32;
  // What the core counts as sent (before the VLAN tag goes in).
  const counted = u32[(skb + SKB_LEN) >>> 2] as number;
  if (skbVlanTagPresent(cpu, skb) && __vlanHwaccelPushInside(cpu, skb) !== 0) {
    p.stats[TAP_TX_PREP_FAIL]++;
    return NETDEV_TX_BUSY;
  }
  const q = txQueue(cpu, p, skb);
  const sh = (u32[(skb + SKB_HEAD) >>> 2] as number) + (u32[(skb + SKB_END) >>> 2] as number);
  const gso = (cpu.u16[(sh + SHINFO_GSO_SIZE) >>> 1] as number) !== 0;
  if (p.hdrLen === 0) {
    if (gso) return tapXmitSegmented(cpu, p, skb, q);
    if ((u8[skb + SKB_IP_SUMMED] as number) === CHECKSUM_PARTIAL) {
      // Nobody downstream completes it: do it in software.
      p.stats[TAP_TX_CSUM_HELP]++;
      if (skbChecksumHelp(cpu, skb) !== 0) {
        p.stats[TAP_TX_PREP_FAIL]++;
        return NETDEV_TX_BUSY;
      }
    }
  } else {
    if (gso && (u8[skb + SKB_IP_SUMMED] as number) !== CHECKSUM_PARTIAL && !virtioNetGsoSetPartial(cpu, skb)) {
      // Cannot leave the checksums to the kernel: segment in software, full checksums.
      return tapXmitSegmented(cpu, p, skb, q);
    }
    txRoom(cpu, p, q);
    const hdr = txHdrSlot(q);
    if (virtioNetHdrFromSkb(cpu, skb, hdr, p.hdrLen) !== 0) {
      // A checksum start outside the frame, or a GSO type virtio cannot say.
      if (gso || skbChecksumHelp(cpu, skb) !== 0 || virtioNetHdrFromSkb(cpu, skb, hdr, p.hdrLen) !== 0) {
        p.stats[TAP_TX_PREP_FAIL]++;
        return NETDEV_TX_BUSY;
      }
      p.stats[TAP_TX_CSUM_HELP]++;
    }
  }
  if (!txHold(cpu, p, q, skb, TX_KIND_PACKET, counted)) {
    p.stats[TAP_TX_PREP_FAIL]++;
    return NETDEV_TX_BUSY;
  }
  netdevTxScheduleFlush(q.napi.sd, q);
  return NETDEV_TX_OK;
}

// ---- setup / teardown ------------------------------------------------------------------------------

function checkInt(name: string, what: string, v: number, lo: number, hi: number): number {
  if (!Number.isInteger(v) || v < lo || v > hi) throw new RangeError(`tapCreate(${name}): ${what} ${v} out of range ${lo}..${hi}`);
  return v;
}

/** Close fds and watches opened so far (cold, error and teardown paths). */
function closeQueues(addon: TapAddon, fds: readonly number[], polls: readonly (TapPollHandle | null)[]): void {
  for (const h of polls) h?.close();
  for (const fd of fds) {
    try {
      addon.close(fd);
    } catch {
      // already closed
    }
  }
}

/**
 * Create a TAP device: open the kernel interface `o.name` (creating it:
 * needs root or CAP_NET_ADMIN), register a device in `ns` with NAPI on
 * `sd`'s CPU, post RX buffers from a fresh page pool, arm the readiness
 * watch and bring the device up. The kernel side is configured as usual
 * (`ip link set <name> up`, addresses, or moved into a network namespace:
 * the fd stays ours). While the device is open its armed readiness watch
 * keeps the event loop alive, like a socket: {@link tapClose} releases it.
 * Throws "native TAP support unavailable: <reason>"
 * without the addon, and the addon's errors ("tap t0: TUNSETIFF: Operation
 * not permitted (need root or CAP_NET_ADMIN)"). Cold; allocates.
 */
export function tapCreate(ns: NetNamespace, sd: Softnet, o: TapOptions): NetDevice {
  const addon = tapAddon();
  const name = o.name;
  const vnet = o.vnetHdr === true;
  const hdrLen = vnet ? (o.vnetHdrSize ?? VIRTIO_NET_HDR_LEN) : 0;
  if (vnet && hdrLen !== VIRTIO_NET_HDR_LEN && hdrLen !== VIRTIO_NET_HDR_MRG_RXBUF_LEN) {
    throw new RangeError(`tapCreate(${name}): vnetHdrSize ${hdrLen} must be 10 or 12`);
  }
  const offload = o.offload ?? (vnet ? TAP_OFFLOAD_DEFAULT : 0);
  checkInt(name, "offload", offload, 0, 0x7f);
  if (offload !== 0 && !vnet) throw new RangeError(`tapCreate(${name}): offload needs vnetHdr: true (the kernel says what it offloaded in the virtio header)`);
  const mtu = checkInt(name, "MTU", o.mtu ?? 1500, 68, 65535);
  const nq = checkInt(name, "queues", o.queues ?? 1, 1, 256);
  const maxFrame = (offload & TUN_F_GSO_ANY) !== 0 ? Math.max(TAP_GSO_MAX_FRAME, mtu + VLAN_ETH_HLEN) : mtu + VLAN_ETH_HLEN;
  // One spare byte: a read that fills the buffers exactly may have been cut (see tapRxFrame).
  const segs = maxFrame < TAP_HEAD_CAP ? 1 : 1 + Math.ceil((maxFrame + 1 - TAP_HEAD_CAP) / HOST_BUF_SIZE);
  if (segs - 1 > MAX_SKB_FRAGS) throw new RangeError(`tapCreate(${name}): frames of ${maxFrame} bytes need more than MAX_SKB_FRAGS pages`);
  const slots = checkInt(name, "rxBurst", o.rxBurst ?? (segs > 1 ? 16 : 64), 1, 1024);
  const txThread = o.txThread === true;
  const txRingBytes = checkInt(name, "txRingBytes", o.txRingBytes ?? TAP_TX_RING_BYTES, 4096, 1 << 30);
  if (txThread && maxFrame + hdrLen + 8 > txRingBytes / 2) {
    throw new RangeError(`tapCreate(${name}): txRingBytes ${txRingBytes} is too small for frames of ${maxFrame} bytes (a frame may take half the ring)`);
  }
  const weight = checkInt(name, "weight", o.weight ?? NAPI_POLL_WEIGHT, 1, 65536);
  const c = addon.constants;
  const flags = (vnet ? c.IFF_VNET_HDR : 0) | (nq > 1 || o.multiQueue === true ? c.IFF_MULTI_QUEUE : 0);
  const fds: number[] = [];
  let ifname = name;
  try {
    for (let i = 0; i < nq; i++) {
      const r = addon.open(i === 0 ? name : ifname, flags);
      fds.push(r.fd);
      ifname = r.name;
      if (vnet) {
        addon.setVnetHdrSize(r.fd, hdrLen, ifname);
        addon.setOffload(r.fd, offload, ifname);
      }
    }
  } catch (e) {
    closeQueues(addon, fds, []);
    throw e;
  }
  let dev: NetDevice;
  try {
    dev = ns.register({ name: o.devName ?? ifname, mtu, kind: "tap", queues: nq, ...(o.mac !== undefined ? { mac: o.mac } : {}) });
  } catch (e) {
    closeQueues(addon, fds, []);
    throw e;
  }
  const p = new TapPriv(addon, sd.cpu, dev, ifname, hdrLen, offload, segs, slots, o.recv);
  dev.priv = p;
  dev.xmit = tapXmit;
  // We gather frags and frag lists; with a vnet header the kernel completes PARTIAL checksums.
  // With a vnet header the kernel takes TCP super-frames whole
  // (tun_get_user → virtio_net_hdr_to_skb) whatever TUNSETOFFLOAD said, which
  // only bounds what it sends us; UDP_L4 super-frames only on kernels that
  // know USO (6.2+), i.e. when TUNSETOFFLOAD accepted TUN_F_USO4.
  dev.features =
    NETIF_F_SG | (vnet ? NETIF_F_HW_CSUM | NETIF_F_TSO | NETIF_F_TSO_ECN | ((offload & TUN_F_USO4) !== 0 ? NETIF_F_GSO_UDP_L4 : 0) : 0);
  for (let i = 0; i < nq; i++) {
    const q = new TapQueue(i, fds[i] as number, netifNapiAdd(sd, dev, tapPoll, weight), slots, segs, hdrLen);
    q.io = new addon.TapIo(sd.cpu.u8, q.iovOff, q.iovCap, q.lens, q.txOff, q.txLen, q.txCounts, p.status);
    q.txFlush = () => tapTxFlush(p.cpu, p, q);
    p.queues.push(q);
  }
  try {
    if (txThread) {
      p.txRingBytes = txRingBytes;
      for (const q of p.queues) {
        q.wCounters = new Int32Array(new SharedArrayBuffer(TX_WRITER_COUNTERS * 4));
        (q.io as TapIoHandle).startWriter(q.fd, txRingBytes, q.txCounted, q.txKind, q.wCounters, ifname);
      }
    }
    if (vnet) {
      for (const q of p.queues) {
        q.txHdrs = kmalloc(sd.cpu.kmalloc, TAP_TX_MAX_FRAMES * TAP_TX_HDR_SLOT);
        if (q.txHdrs === 0) throw new Error(`tap ${ifname}: out of kmalloc memory for the transmit virtio headers`);
      }
    }
    for (const q of p.queues) {
      q.poller = new addon.TapPoll(q.fd, (status) => tapIrq(p, q, status));
      q.poller.start();
      q.armed = true;
    }
  } catch (e) {
    closeQueues(
      addon,
      fds,
      p.queues.map((q) => q.poller),
    );
    hostPoolDestroy(sd.cpu, p.pool);
    for (const q of p.queues) if (q.txHdrs !== 0) kfree(sd.cpu.mm, q.txHdrs);
    p.closed = true;
    throw e;
  }
  dev.up = true;
  return dev;
}

/**
 * Close the device (ndo_stop + close): take it down, stop NAPI and the
 * watches, close the fds (a non-persistent kernel interface disappears with
 * its last fd), give the posted RX pages back and destroy the page pool.
 * Pages still held by live skbs go back to the page allocator when those
 * skbs are freed. Idempotent.
 */
export function tapClose(dev: NetDevice): void {
  const p = privOf(dev);
  if (p.closed) return;
  // Frames the core already counted as sent go out before the queues close.
  for (const q of p.queues) tapTxFlush(p.cpu, p, q);
  // Transmit threads write out what they hold, end; what they could not write is taken back.
  for (const q of p.queues) {
    q.io?.stopWriter();
    txReconcile(p, q);
  }
  p.closed = true;
  dev.up = false;
  for (const q of p.queues) {
    napiDisable(q.napi);
    q.armed = false;
  }
  closeQueues(
    p.addon,
    p.queues.map((q) => q.fd),
    p.queues.map((q) => q.poller),
  );
  for (const q of p.queues) {
    q.poller = null;
    for (let k = 0; k < q.slotPage.length; k++) {
      const page = q.slotPage[k] as number;
      if (page !== 0) pagePoolPutPage(p.pool, page, true);
      q.slotPage[k] = 0;
    }
    q.slotNeed.fill(p.segs);
  }
  hostPoolDestroy(p.cpu, p.pool);
  for (const q of p.queues) {
    if (q.txHdrs !== 0) kfree(p.cpu.mm, q.txHdrs);
    q.txHdrs = 0;
  }
}

/** The NAPI instance of queue `queue` (default 0). */
export function tapNapi(dev: NetDevice, queue = 0): NapiStruct {
  const q = privOf(dev).queues[queue];
  if (q === undefined) throw new RangeError(`tapNapi(${dev.name}): no queue ${queue}`);
  return q.napi;
}

/** Replace the receive path (e.g. once the stack above exists). */
export function tapSetRecv(dev: NetDevice, recv: TapRecvFn): void {
  privOf(dev).recv = recv;
}

/** The page pool RX buffers come from (for stats). */
export function tapPool(dev: NetDevice): PagePool {
  return privOf(dev).pool;
}

/** Static facts of a TAP device (allocates). */
export function tapInfo(dev: NetDevice): {
  ifname: string;
  queues: number;
  fds: number[];
  vnetHdrLen: number;
  offload: number;
  segsPerSlot: number;
  rxSlots: number;
  rxMaxFrame: number;
  /** Ring bytes of each queue's transmit thread; 0 without (txThread false). */
  txRingBytes: number;
} {
  const p = privOf(dev);
  return {
    ifname: p.ifname,
    queues: p.queues.length,
    fds: p.queues.map((q) => q.fd),
    vnetHdrLen: p.hdrLen,
    offload: p.offload,
    segsPerSlot: p.segs,
    rxSlots: p.slots,
    rxMaxFrame: p.rxCap - 1,
    txRingBytes: p.txRingBytes,
  };
}

/** TAP counters by name, plus queue states (allocates). */
export function tapStats(dev: NetDevice): Record<(typeof TAP_STAT_NAMES)[number], number> & TapQueueStates {
  const p = privOf(dev);
  tapTxReconcile(dev);
  const o = {} as Record<string, number>;
  TAP_STAT_NAMES.forEach((n, i) => {
    o[n] = p.stats[i] as number;
  });
  o.brokenQueues = p.queues.filter((q) => q.broken).length;
  o.lastRxErrno = p.queues.reduce((a, q) => (q.lastErrno !== 0 ? q.lastErrno : a), 0);
  o.lastTxErrno = p.lastTxErrno;
  o.txThreadWritten = writerSum(p, TX_WRITER_WRITTEN);
  o.txThreadKicks = writerSum(p, TX_WRITER_KICKS);
  o.txThreadSleeps = writerSum(p, TX_WRITER_SLEEPS);
  o.txRingWaits = writerSum(p, TX_WRITER_ROOM_WAITS);
  o.txThreadDirect = writerSum(p, TX_WRITER_DIRECT);
  o.txThreadPendingBytes = p.closed ? 0 : p.queues.reduce((a, q) => a + (q.io as TapIoHandle).writerPending(), 0);
  return o as Record<(typeof TAP_STAT_NAMES)[number], number> & TapQueueStates;
}

/** Counter `i` of the transmit threads of `p`, summed over its queues (0 without threads). */
function writerSum(p: TapPriv, i: number): number {
  let n = 0;
  for (const q of p.queues) if (q.wCounters !== null) n += Atomics.load(q.wCounters, i) >>> 0;
  return n;
}

/** tapStats' fields beyond the counters. */
export interface TapQueueStates {
  brokenQueues: number;
  lastRxErrno: number;
  lastTxErrno: number;
  /** Transmit threads (txThread): frames written (32-bit, wrapping), wake-ups, sleeps, bytes queued now. */
  txThreadWritten: number;
  txThreadKicks: number;
  txThreadSleeps: number;
  txThreadPendingBytes: number;
  /** Times a full ring made the NAPI thread wait for room. */
  txRingWaits: number;
  /** Super-frames written by the NAPI thread itself because the ring was idle (no copy). */
  txThreadDirect: number;
}
