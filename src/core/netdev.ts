/**
 * Network devices (`struct net_device`): identity, MTU, up/down, MAC and
 * IPv4 address, a transmit function (`ndo_start_xmit`), a receive handler
 * (what the stack does with a frame the device received), VLAN children,
 * and counters — per device, per queue, and drops by reason.
 *
 * Every packet is accounted for: a device counts what it received, passed
 * on and dropped. `devAccountingOk` checks `rx = delivered + dropped` at the
 * end of a run.
 *
 * @module
 */

import type { SkbCpu } from "../skb/cpu.js";
import { SKB_DROP_REASON, SKB_DROP_REASON_MAX } from "../skb/drop-reason.js";
import { kfreeSkbReason } from "../skb/free.js";
import { SKB_LEN } from "../skb/layout.js";

/** Device features (`netdev_features_t` bits used here). */
export const NETIF_F_SG = 1 << 0;
/** The device (or its peer) completes CHECKSUM_PARTIAL checksums. */
export const NETIF_F_HW_CSUM = 1 << 1;
/** TCP segmentation offload for IPv4 (NETIF_F_TSO): GSO TCPV4 skbs go to the device whole. */
export const NETIF_F_TSO = 1 << 2;
/** UDP segmentation offload (NETIF_F_GSO_UDP_L4): GSO UDP_L4 skbs go to the device whole. */
export const NETIF_F_GSO_UDP_L4 = 1 << 3;
/** TCP ECN segmentation (NETIF_F_TSO_ECN): needed with TSO for SKB_GSO_TCP_ECN skbs. */
export const NETIF_F_TSO_ECN = 1 << 4;

/** ndo_start_xmit return codes. */
export const NETDEV_TX_OK = 0;
export const NETDEV_TX_BUSY = 0x10;

/** Counter indices (`struct rtnl_link_stats64` names). */
export const RX_PACKETS = 0;
export const RX_BYTES = 1;
export const TX_PACKETS = 2;
export const TX_BYTES = 3;
export const RX_DROPPED = 4;
export const TX_DROPPED = 5;
export const RX_ERRORS = 6;
export const TX_ERRORS = 7;
/** Frames handed to the stack (delivered up) after receive. */
export const RX_DELIVERED = 8;
/** Frames the device received that became part of another (GRO merges). */
export const RX_MERGED = 9;
export const DEV_STAT_MAX = 10;
export const DEV_STAT_NAMES = [
  "rxPackets",
  "rxBytes",
  "txPackets",
  "txBytes",
  "rxDropped",
  "txDropped",
  "rxErrors",
  "txErrors",
  "rxDelivered",
  "rxMerged",
] as const;

/** Transmit: take ownership of `skb`; return NETDEV_TX_OK (or BUSY, caller keeps it). */
export type XmitFn = (cpu: SkbCpu, dev: NetDevice, skb: number) => number;
/** Receive handler: the stack above this device; takes ownership of `skb`. */
export type RxHandler = (cpu: SkbCpu, dev: NetDevice, skb: number) => void;

/** Options of a device. */
export interface NetDeviceOptions {
  name: string;
  mtu?: number;
  /** "aa:bb:cc:dd:ee:ff"; default a locally administered address from the ifindex. */
  mac?: string;
  /** Number of RX and TX queues (per-queue counters). */
  queues?: number;
  /** Kind, for reports ("veth", "vlan", "pktgen", ...). */
  kind?: string;
}

/** A network device. One object per device per thread, created at setup. */
export class NetDevice {
  readonly ifindex: number;
  readonly name: string;
  readonly kind: string;
  mtu: number;
  up = false;
  /** MAC address bytes. */
  readonly mac: Uint8Array;
  /** MAC as two integers for allocation-free compares: high 16 bits, low 32 bits. */
  macHi: number;
  macLo: number;
  /** NETIF_F_* feature bits. */
  features = 0;
  /** IPv4 address (host order) and prefix length; 0 when none. */
  ipAddr = 0;
  prefixLen = 0;
  /** Device counters, index = RX_PACKETS... */
  readonly stats: Float64Array;
  /** Per-queue counters: queue q's counter i at q * DEV_STAT_MAX + i. */
  readonly queueStats: Float64Array;
  readonly numQueues: number;
  /** Drops by reason (SKB_DROP_REASON codes), RX and TX together. */
  readonly drops: Float64Array;
  /** ndo_start_xmit. */
  xmit: XmitFn;
  /** What receives this device's frames. */
  rxHandler: RxHandler;
  /** 802.1Q: children by VLAN id (parent side). */
  readonly vlanDevs: (NetDevice | undefined)[];
  /** 802.1Q: this device's VLAN id and parent (child side; 0 / null otherwise). */
  vlanId = 0;
  parent: NetDevice | null = null;
  /** Driver-private state. */
  priv: unknown = null;

  /** Use {@link NetNamespace.register}. */
  constructor(ifindex: number, o: NetDeviceOptions) {
    this.ifindex = ifindex;
    this.name = o.name;
    this.kind = o.kind ?? "generic";
    this.mtu = o.mtu ?? 1500;
    this.mac = o.mac !== undefined ? parseMac(o.mac) : new Uint8Array([0x02, 0x00, 0x00, 0x00, ifindex >>> 8, ifindex & 0xff]);
    this.macHi = ((this.mac[0] as number) << 8) | (this.mac[1] as number);
    this.macLo = (((this.mac[2] as number) << 24) | ((this.mac[3] as number) << 16) | ((this.mac[4] as number) << 8) | (this.mac[5] as number)) >>> 0;
    this.numQueues = o.queues ?? 1;
    this.stats = new Float64Array(DEV_STAT_MAX);
    this.queueStats = new Float64Array(DEV_STAT_MAX * this.numQueues);
    this.drops = new Float64Array(SKB_DROP_REASON_MAX);
    this.xmit = xmitNoCarrier;
    this.rxHandler = rxUnhandled;
    this.vlanDevs = [];
  }
}

/** Parse "aa:bb:cc:dd:ee:ff" (cold). */
export function parseMac(s: string): Uint8Array {
  const p = s.split(":");
  if (p.length !== 6 || p.some((x) => !/^[0-9a-fA-F]{1,2}$/.test(x))) throw new RangeError(`'${s}' is not a MAC address`);
  return new Uint8Array(p.map((x) => Number.parseInt(x, 16)));
}

/** Format a MAC (cold). */
export function formatMac(m: Uint8Array): string {
  return [...m].map((b) => b.toString(16).padStart(2, "0")).join(":");
}

/**
 * Count a drop on `dev` and free the skb with that reason. One skb is one
 * packet here; packets GRO merged into it were counted as merged already.
 */
export function devDropSkb(cpu: SkbCpu, dev: NetDevice, skb: number, reason: number, tx: boolean): void {
  dev.stats[tx ? TX_DROPPED : RX_DROPPED]++;
  dev.drops[reason]++;
  kfreeSkbReason(cpu, skb, reason);
}

function xmitNoCarrier(cpu: SkbCpu, dev: NetDevice, skb: number): number {
  devDropSkb(cpu, dev, skb, SKB_DROP_REASON.DEV_READY, true);
  return NETDEV_TX_OK;
}

function rxUnhandled(cpu: SkbCpu, dev: NetDevice, skb: number): void {
  devDropSkb(cpu, dev, skb, SKB_DROP_REASON.UNHANDLED_PROTO, false);
}

/** Count a received frame (before the stack sees it). */
export function devCountRx(cpu: SkbCpu, dev: NetDevice, skb: number, queue: number): void {
  const len = cpu.u32[(skb + SKB_LEN) >>> 2] as number;
  dev.stats[RX_PACKETS]++;
  dev.stats[RX_BYTES] += len;
  const q = queue * DEV_STAT_MAX;
  dev.queueStats[q + RX_PACKETS]++;
  dev.queueStats[q + RX_BYTES] += len;
}

/**
 * `dev_queue_xmit`: transmit on `dev`. A device that is down drops with
 * DEV_READY. Returns NETDEV_TX_OK; the skb is always consumed.
 */
export function devQueueXmit(cpu: SkbCpu, dev: NetDevice, skb: number): number {
  if (dev.up === false) {
    devDropSkb(cpu, dev, skb, SKB_DROP_REASON.DEV_READY, true);
    return NETDEV_TX_OK;
  }
  const len = cpu.u32[(skb + SKB_LEN) >>> 2] as number;
  const rc = dev.xmit(cpu, dev, skb);
  if (rc === NETDEV_TX_OK) {
    dev.stats[TX_PACKETS]++;
    dev.stats[TX_BYTES] += len;
    dev.queueStats[TX_PACKETS]++;
    dev.queueStats[TX_BYTES] += len;
  } else {
    devDropSkb(cpu, dev, skb, SKB_DROP_REASON.FULL_RING, true);
  }
  return NETDEV_TX_OK;
}

/** The devices of one router instance, by ifindex (`struct net`). */
export class NetNamespace {
  readonly devices: (NetDevice | undefined)[] = [undefined];
  private readonly byName = new Map<string, NetDevice>();

  /** Create and register a device; names are unique. */
  register(o: NetDeviceOptions): NetDevice {
    if (this.byName.has(o.name)) throw new Error(`netdev: a device named '${o.name}' already exists`);
    if (o.mtu !== undefined && (!Number.isInteger(o.mtu) || o.mtu < 68 || o.mtu > 65535)) {
      throw new RangeError(`netdev ${o.name}: MTU ${o.mtu} out of range 68..65535`);
    }
    const dev = new NetDevice(this.devices.length, o);
    this.devices.push(dev);
    this.byName.set(o.name, dev);
    return dev;
  }

  /** Device by name; throws naming the known devices. */
  get(name: string): NetDevice {
    const d = this.byName.get(name);
    if (d === undefined) throw new Error(`netdev: no device '${name}' (have: ${[...this.byName.keys()].join(", ")})`);
    return d;
  }

  /** All registered devices in ifindex order (allocates). */
  list(): NetDevice[] {
    return this.devices.filter((d): d is NetDevice => d !== undefined);
  }
}

/** Device counters as a plain object (allocates). */
export function devStats(dev: NetDevice): Record<(typeof DEV_STAT_NAMES)[number], number> {
  const o = {} as Record<string, number>;
  DEV_STAT_NAMES.forEach((n, i) => {
    o[n] = dev.stats[i] as number;
  });
  return o as Record<(typeof DEV_STAT_NAMES)[number], number>;
}
