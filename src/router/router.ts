/**
 * The VLAN NAT router of the seed's benchmark, in one process:
 *
 * ```
 *  pktgen ── gen0 ═veth═ in0 ── in0.<vid> ─┐                 ┌─ out0 ═veth═ srv0 ── sink
 *   (inside hosts,                         │  route + conntrack  │                (outside server)
 *    page-pool frames)                     └── + masquerade NAT ─┘
 * ```
 *
 * Receive (per veth NAPI poll): `ethTypeTrans`, 802.1Q untag into the VLAN
 * child, GRO (TCP/IPv4) or the normal-delivery batch. The stack
 * (`routerIpRcv`): `ipRcvCore`, defragmentation, `nfConntrackIn`, NAT
 * PRE_ROUTING (de-masquerade replies), route lookup, TTL (ICMP time
 * exceeded), NAT POST_ROUTING (masquerade flows leaving by out0), conntrack
 * confirm, then output: GSO or IPv4 fragmentation down to the egress MTU
 * (ICMP frag-needed for DF), Ethernet header from the router's neighbour
 * table (static neighbours are PERMANENT entries; with `arpResolve`, as in
 * `skb forward`, other next hops are resolved by ARP with their packets
 * queued meanwhile), 802.1Q tag on the way into the inside VLAN,
 * `devQueueXmit`.
 *
 * Every drop is counted on the device that saw it, by reason.
 *
 * @module
 */

import { be32s, skbNetworkHeader, skbShinfo } from "../skb/access.js";
import type { SkbCpu } from "../skb/cpu.js";
import { SKB_DROP_REASON } from "../skb/drop-reason.js";
import { CHECKSUM_PARTIAL, PACKET_HOST, SHINFO_GSO_TYPE, SKB_DEV, SKB_IP_SUMMED, SKB_LEN, SKB_NEXT, SKB_PKT_TYPE, SKB_PROTOCOL } from "../skb/layout.js";
import { ethHeaderPush, ethTypeTrans } from "../net/ethernet.js";
import { skbVlanTagGetId, skbVlanTagPresent, skbVlanUntag, __vlanHwaccelClearTag, vlanInsertTag } from "../net/vlan.js";
import {
  ipDecreaseTtl,
  ipFragment,
  ipIsFragment,
  ipRcvCore,
  IPSTATS_MIB_FRAGFAILS,
  IPSTATS_MIB_INNOROUTES,
  IPSKB_IGNORE_DF,
  ipcbFlags,
  ipStatsCreate,
  skbChecksumHelp,
  ipTotLen,
  ipTtl,
} from "../net/ipv4.js";
import { fibNextHop, fibRouteOif, type FibTable, fibTableCreate, fibTableInsert, fibTableLookup } from "../net/route.js";
import { icmpRcvEcho, icmpSend, icmpStatsCreate } from "../net/icmp.js";
import { type IpFragQueues, ipDefrag, ipFragCreate, ipFragExpire } from "../net/ip-frag.js";
import {
  type Conntrack,
  NF_CT_F_NO_NEW,
  NF_INET_LOCAL_OUT,
  NF_INET_POST_ROUTING,
  NF_INET_PRE_ROUTING,
  nfConntrackConfirm,
  nfConntrackGcWork,
  nfConntrackIn,
} from "../net/conntrack.js";
import { type NfNat, nfNatIpv4 } from "../net/nat.js";
import {
  ETH_P_8021Q,
  ETH_P_IP,
  ICMP_DEST_UNREACH,
  ICMP_ECHO,
  ICMP_FRAG_NEEDED,
  ICMP_HOST_UNREACH,
  ICMP_NET_UNREACH,
  ICMP_TIME_EXCEEDED,
  ICMP_EXC_TTL,
  IPPROTO_ICMP,
  IP_DF,
  ipv4ToString,
} from "../net/proto.js";
import {
  __neighEventSend,
  arpRequest,
  arpStatsCreate,
  NEIGH_SEND_FULL,
  NEIGH_SEND_SOLICIT,
  NEIGH_SEND_VALID,
  neighAddPermanent,
  neighLookup,
  neighMacOffset,
  type NeighParms,
  neighResolve,
  type NeighTable,
  neighTableCreate,
  neighTableSetOps,
} from "../net/arp.js";
import { type GroList, groFlush, napiGroReceive } from "../core/gro.js";
import { netGsoOk, skbGsoSegment, skbGsoValidateNetworkLen, skbIsGso } from "../core/gso.js";
import {
  devDropSkb,
  devQueueXmit,
  type NetDevice,
  NETIF_F_HW_CSUM,
  type NetNamespace,
  RX_BYTES,
  RX_DROPPED,
  RX_MERGED,
  RX_PACKETS,
  TX_BYTES,
  TX_PACKETS,
} from "../core/netdev.js";
import { groNormalOne, type NapiStruct, type Softnet } from "../core/napi.js";

/** Router-level counters. */
export const RT_FORWARDED = 0;
export const RT_LOCAL = 1;
export const RT_ICMP_SENT = 2;
/** Packets GSO added: n - 1 for every aggregate cut into n segments. */
export const RT_GSO_EXTRA = 3;
/** Packets IPv4 fragmentation added: n - 1 for every datagram cut into n fragments. */
export const RT_FRAG_EXTRA = 4;
export const RT_STAT_MAX = 5;
export const RT_STAT_NAMES = ["forwarded", "local", "icmpSent", "gsoExtra", "fragExtra"] as const;

/** The router's state on one CPU. Created once by the scenario; fields fixed. */
export class Router {
  readonly cpu: SkbCpu;
  readonly ns: NetNamespace;
  readonly fib: FibTable;
  readonly ct: Conntrack;
  readonly nat: NfNat;
  readonly fq: IpFragQueues;
  readonly ipStats: Float64Array;
  readonly icmpStats: Float64Array;
  readonly stats = new Float64Array(RT_STAT_MAX);
  /**
   * The neighbour table (`arp_tbl`): static neighbours are PERMANENT
   * entries; with {@link Router.arpResolve} the others are resolved by ARP,
   * their packets queued on the entry meanwhile. Its queue ops are this
   * router's output, error report and drop.
   */
  readonly neigh: NeighTable;
  /** ARP counters (ARP_STAT_*): the requests this router sends, and whoever runs arpRcv for it. */
  readonly arpStats: Float64Array;
  /**
   * Resolve next hops missing from `neigh` by ARP (`skb forward`). false:
   * packets to them are dropped as NEIGH_FAILED (the in-process test bed,
   * whose hosts do not speak ARP, has every neighbour static).
   */
  arpResolve = false;
  /** The router's own addresses as signed int32 (refreshed by routerSetAddresses). */
  localAddrs = new Int32Array(0);
  /** The outside device (packets arriving there may not create flows). */
  outside: NetDevice | null = null;
  /** The softnet whose jiffies (ms, small integers) time conntrack. */
  readonly sd: Softnet;
  /** Reason of the last drop inside output (for the caller's accounting). */
  lastReason = 0;
  /** jiffies of the last timer run. */
  lastTimers = 0;

  constructor(cpu: SkbCpu, ns: NetNamespace, sd: Softnet, ct: Conntrack, nat: NfNat, neighParms: NeighParms = {}) {
    this.cpu = cpu;
    this.sd = sd;
    this.ns = ns;
    this.ct = ct;
    this.nat = nat;
    this.fib = fibTableCreate();
    this.ipStats = ipStatsCreate();
    this.fq = ipFragCreate({ clock: () => sd.jiffies, stats: this.ipStats });
    this.icmpStats = icmpStatsCreate();
    this.neigh = neighTableCreate({ accept: false, ...neighParms });
    this.arpStats = arpStatsCreate();
    const devs = ns.devices;
    neighTableSetOps(this.neigh, cpu, {
      output: (c, t, i, skb) => routerNeighXmit(this, c, devs[t.ifindex[i] as number] as NetDevice, skb, t.mac, neighMacOffset(i)),
      errorReport: (c, ifindex, skb) => routerNeighErrorReport(this, c, devs[ifindex] as NetDevice, skb),
      drop: (c, ifindex, skb, reason) => devDropSkb(c, devs[ifindex] as NetDevice, skb, reason, true),
    });
  }
}

/** Re-read the devices' IPv4 addresses into the local-address list (cold; after configuring addresses). */
export function routerSetAddresses(r: Router): void {
  r.localAddrs = Int32Array.from(r.ns.list().filter((d) => d.ipAddr !== 0).map((d) => d.ipAddr | 0));
}

/**
 * Add a static neighbour (`ip neigh add ... nud permanent`) on the device
 * the route to `addr` leaves by (cold; add the routes first). Throws when
 * no route leads there or the table is full.
 */
export function routerAddNeighbour(r: Router, addr: number, mac: Uint8Array): void {
  const rt = fibTableLookup(r.fib, addr | 0);
  if (rt < 0) throw new Error(`routerAddNeighbour: no route to ${ipv4ToString(addr >>> 0)}`);
  if (neighAddPermanent(r.neigh, fibRouteOif(r.fib, rt), addr, mac) < 0) {
    throw new Error(`routerAddNeighbour: the neighbour table is full (${r.neigh.max} entries) adding ${ipv4ToString(addr >>> 0)}`);
  }
}

/** Is there an entry for `addr` on the device the route to it leaves by (cold)? */
export function routerHasNeighbour(r: Router, addr: number): boolean {
  const rt = fibTableLookup(r.fib, addr | 0);
  return rt >= 0 && neighLookup(r.neigh, fibRouteOif(r.fib, rt), addr) >= 0;
}

/** Add a route (cold). */
export function routerAddRoute(r: Router, prefix: number, len: number, gateway: number, oif: NetDevice): void {
  fibTableInsert(r.fib, prefix, len, gateway, oif.ifindex);
}

/** A receive path for a physical (veth) end of the router: L2, VLAN, GRO. */
export interface RouterPort {
  napi: NapiStruct;
  gro: GroList | null;
  /** deliver to the stack: the normal-delivery batch of this NAPI. */
  deliver: (cpu: SkbCpu, skb: number) => void;
}

/** Create the per-port receive plumbing (cold): a deliver function bound once. */
export function routerPort(napi: NapiStruct, gro: GroList | null): RouterPort {
  const sd = napi.sd;
  const port: RouterPort = {
    napi,
    gro,
    deliver: (_cpu, skb) => groNormalOne(napi, skb),
  };
  if (gro !== null) {
    napi.groFlush = (cpu, _n, all) => {
      if (!all) gro.now = sd.jiffies;
      groFlush(cpu, gro, all, port.deliver);
    };
  }
  return port;
}

/**
 * Receive one frame on a router port (the veth recv hook): Ethernet, 802.1Q
 * into the VLAN child device, then GRO or the delivery batch. Drops are
 * counted on the receiving device.
 */
export function routerL2Recv(port: RouterPort, cpu: SkbCpu, dev: NetDevice, skb: number): void {
  let r = ethTypeTrans(cpu, skb, dev.mac, 0);
  if (r !== 0) {
    devDropSkb(cpu, dev, skb, r, false);
    return;
  }
  if ((cpu.u16[(skb + SKB_PROTOCOL) >>> 1] as number) === ETH_P_8021Q) {
    r = skbVlanUntag(cpu, skb);
    if (r !== 0) {
      devDropSkb(cpu, dev, skb, r, false);
      return;
    }
  }
  if (skbVlanTagPresent(cpu, skb)) {
    // vlan_do_receive: hand the frame to the VLAN child, tag consumed.
    const child = dev.vlanDevs[skbVlanTagGetId(cpu, skb)];
    if (child === undefined || child.up === false) {
      devDropSkb(cpu, dev, skb, SKB_DROP_REASON.VLAN_UNKNOWN, false);
      return;
    }
    __vlanHwaccelClearTag(cpu, skb);
    cpu.u32[(skb + SKB_DEV) >>> 2] = child.ifindex;
    child.stats[RX_PACKETS]++;
    child.stats[RX_BYTES] += cpu.u32[(skb + SKB_LEN) >>> 2] as number;
  }
  if (port.gro !== null) napiGroReceive(cpu, port.gro, skb, port.deliver);
  else groNormalOne(port.napi, skb);
}

/** How often (ms) the router's timers run: fragment-queue expiry and a conntrack GC slice. */
export const ROUTER_TIMER_MS = 100;
/** Conntrack entries examined per GC slice (nf_conntrack's GC is incremental too). */
export const CT_GC_BUDGET = 256;

/** The periodic work a kernel does from timers and workqueues. */
export function routerTimers(r: Router, cpu: SkbCpu): void {
  r.lastTimers = r.sd.jiffies;
  ipFragExpire(cpu, r.fq, r.sd.jiffies);
  nfConntrackGcWork(r.ct, r.sd.jiffies, CT_GC_BUDGET);
}

/** Drop helper for the stack: on the device the skb is on. */
function drop(r: Router, cpu: SkbCpu, dev: NetDevice, skb: number, reason: number): void {
  r.lastReason = reason;
  devDropSkb(cpu, dev, skb, reason, false);
}

/** Send an ICMP error about `skb` (which the caller still owns and will drop). */
function sendIcmp(r: Router, cpu: SkbCpu, dev: NetDevice, skb: number, type: number, code: number, info: number): void {
  const reply = icmpSend(cpu, skb, type, code, info, dev.ipAddr, r.icmpStats);
  if (reply === 0) return;
  r.stats[RT_ICMP_SENT]++;
  // Our own packet: it starts at POST_ROUTING-less output straight to its route.
  routeAndOutput(r, cpu, dev, reply, false);
}

/**
 * The IPv4 stack of the router (`ip_rcv` → `ip_forward` → `ip_output`), the
 * receive handler of every routed device.
 */
export function routerIpRcv(r: Router, cpu: SkbCpu, dev: NetDevice, skb: number): void {
  if (r.sd.jiffies - r.lastTimers >= ROUTER_TIMER_MS) routerTimers(r, cpu);
  if ((cpu.u16[(skb + SKB_PROTOCOL) >>> 1] as number) !== ETH_P_IP) {
    drop(r, cpu, dev, skb, SKB_DROP_REASON.UNHANDLED_PROTO);
    return;
  }
  let reason = ipRcvCore(cpu, skb, r.ipStats);
  if (reason !== 0) {
    drop(r, cpu, dev, skb, reason);
    return;
  }
  const u8 = cpu.u8;
  if (ipIsFragment(u8, skbNetworkHeader(cpu, skb))) {
    const whole = ipDefrag(cpu, r.fq, skb, r.sd.jiffies);
    if (whole === 0) {
      const why = r.fq.lastResult;
      if (why !== 0) {
        // ipDefrag consumed and freed it; count it here.
        dev.stats[RX_DROPPED]++;
        dev.drops[why]++;
      } else {
        dev.stats[RX_MERGED]++; // held for reassembly: becomes part of a later datagram
      }
      return;
    }
    skb = whole;
  }
  const now = r.sd.jiffies;
  // Only connections to the router itself may start on the outside.
  const fromOutside = dev === r.outside && !isLocal(r, be32s(cpu.u8, skbNetworkHeader(cpu, skb) + 16));
  if (nfConntrackIn(r.ct, cpu, skb, NF_INET_PRE_ROUTING, fromOutside ? NF_CT_F_NO_NEW : 0, now) === 0) {
    drop(r, cpu, dev, skb, r.ct.reason);
    return;
  }
  reason = nfNatIpv4(r.nat, cpu, skb, NF_INET_PRE_ROUTING, r.ct);
  if (reason !== 0) {
    drop(r, cpu, dev, skb, reason);
    return;
  }
  const iph = skbNetworkHeader(cpu, skb);
  const daddr = be32s(u8, iph + 16);
  if (isLocal(r, daddr)) {
    localDeliver(r, cpu, dev, skb);
    return;
  }
  // ip_forward
  if ((cpu.u8[skb + SKB_PKT_TYPE] as number) !== PACKET_HOST) {
    drop(r, cpu, dev, skb, SKB_DROP_REASON.OTHERHOST);
    return;
  }
  if (ipTtl(u8, iph) <= 1) {
    sendIcmp(r, cpu, dev, skb, ICMP_TIME_EXCEEDED, ICMP_EXC_TTL, 0);
    drop(r, cpu, dev, skb, SKB_DROP_REASON.IP_TTL_EXPIRED);
    return;
  }
  routeAndOutput(r, cpu, dev, skb, true);
}

/** Is `daddr` (signed int32) one of the router's own addresses? */
function isLocal(r: Router, daddr: number): boolean {
  const a = r.localAddrs;
  for (let i = 0; i < a.length; i++) if (a[i] === daddr) return true;
  return false;
}

/** ip_local_deliver: the router answers pings to its own addresses; anything else has no socket. */
function localDeliver(r: Router, cpu: SkbCpu, dev: NetDevice, skb: number): void {
  const u8 = cpu.u8;
  const iph = skbNetworkHeader(cpu, skb);
  r.stats[RT_LOCAL]++;
  if ((u8[iph + 9] as number) === IPPROTO_ICMP && (u8[iph + ((u8[iph] as number) & 15) * 4] as number) === ICMP_ECHO) {
    const rc = icmpRcvEcho(cpu, skb, r.icmpStats);
    if (rc !== 0) {
      drop(r, cpu, dev, skb, rc);
      return;
    }
    routeAndOutput(r, cpu, dev, skb, false);
    return;
  }
  drop(r, cpu, dev, skb, SKB_DROP_REASON.NO_SOCKET);
}

/**
 * Route `skb` (network header = data) and send it: TTL decrement when
 * forwarding, NAT POST_ROUTING + confirm, GSO / fragmentation, L2 output.
 */
function routeAndOutput(r: Router, cpu: SkbCpu, inDev: NetDevice, skb: number, forward: boolean): void {
  const u8 = cpu.u8;
  const iph = skbNetworkHeader(cpu, skb);
  const daddr = be32s(u8, iph + 16);
  const rt = fibTableLookup(r.fib, daddr);
  if (rt < 0) {
    if (forward) sendIcmp(r, cpu, inDev, skb, ICMP_DEST_UNREACH, ICMP_NET_UNREACH, 0);
    r.ipStats[IPSTATS_MIB_INNOROUTES]++;
    drop(r, cpu, inDev, skb, SKB_DROP_REASON.NO_ROUTE);
    return;
  }
  const odev = r.ns.devices[fibRouteOif(r.fib, rt)] as NetDevice;
  const mtu = odev.mtu;
  const gso = skbIsGso(cpu, skb);
  const tooBig = !gso && ipTotLen(u8, iph) > mtu;
  // ip_forward's ip_exceeds_mtu: DF packets that do not fit are refused
  // before TTL and NAT touch them (reassembled datagrams may be refragmented).
  if (forward && tooBig && ((u8[iph + 6] as number) << 8) & IP_DF && (ipcbFlags(cpu, skb) & IPSKB_IGNORE_DF) === 0) {
    sendIcmp(r, cpu, inDev, skb, ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, mtu);
    r.ipStats[IPSTATS_MIB_FRAGFAILS]++;
    drop(r, cpu, inDev, skb, SKB_DROP_REASON.PKT_TOO_BIG);
    return;
  }
  if (forward) ipDecreaseTtl(u8, iph);
  cpu.u32[(skb + SKB_DEV) >>> 2] = odev.ifindex;
  let reason = nfNatIpv4(r.nat, cpu, skb, NF_INET_POST_ROUTING, r.ct);
  if (reason === 0) reason = nfConntrackConfirm(r.ct, cpu, skb, r.sd.jiffies);
  if (reason !== 0) {
    drop(r, cpu, inDev, skb, reason);
    return;
  }
  if (forward) r.stats[RT_FORWARDED]++;
  const nexthop = fibNextHop(r.fib, rt, daddr) | 0;
  // ip_finish_output_gso + validate_xmit_skb: a GSO skb whose segments fit the
  // MTU goes to a device that can segment it (TSO/USO, e.g. a TAP with a vnet
  // header) whole; otherwise it is segmented here in software.
  if (!tooBig && (!gso || gsoPassThrough(cpu, odev, skb, mtu))) {
    l2Output(r, cpu, odev, skb, nexthop);
    return;
  }
  let segs: number;
  if (gso) {
    segs = skbGsoSegment(cpu, skb, mtu, odev.features);
    if (segs === 0) {
      drop(r, cpu, odev, skb, SKB_DROP_REASON.NOMEM);
      return;
    }
    // One skb in, n out: count the n - 1 extra packets for the accounting.
    for (let s = cpu.u32[(segs + SKB_NEXT) >>> 2] as number; s !== 0; s = cpu.u32[(s + SKB_NEXT) >>> 2] as number) {
      r.stats[RT_GSO_EXTRA]++;
    }
  } else {
    segs = ipFragment(cpu, skb, mtu, r.ipStats);
    if (segs <= 0) {
      drop(r, cpu, odev, skb, segs === 0 ? SKB_DROP_REASON.NOMEM : -segs);
      return;
    }
    for (let s = cpu.u32[(segs + SKB_NEXT) >>> 2] as number; s !== 0; s = cpu.u32[(s + SKB_NEXT) >>> 2] as number) {
      r.stats[RT_FRAG_EXTRA]++;
    }
  }
  while (segs !== 0) {
    const next = cpu.u32[(segs + SKB_NEXT) >>> 2] as number;
    cpu.u32[(segs + SKB_NEXT) >>> 2] = 0;
    cpu.u32[(segs + SKB_DEV) >>> 2] = odev.ifindex;
    l2Output(r, cpu, odev, segs, nexthop);
    segs = next;
  }
}

/** Can `odev` (or, for a VLAN child, its parent too) take GSO `skb` whole at this MTU? */
function gsoPassThrough(cpu: SkbCpu, odev: NetDevice, skb: number, mtu: number): boolean {
  const type = cpu.u32[(skbShinfo(cpu, skb) + SHINFO_GSO_TYPE) >>> 2] as number;
  const parent = odev.parent;
  const features = parent !== null ? odev.features & parent.features : odev.features;
  return netGsoOk(features, type) && skbGsoValidateNetworkLen(cpu, skb, mtu);
}

/** neigh_output + dev_queue_xmit: Ethernet header, 802.1Q tag for VLAN children, transmit. */
function l2Output(r: Router, cpu: SkbCpu, odev: NetDevice, skb: number, nexthop: number): void {
  // A device without checksum offload gets the checksum done in software first.
  if ((cpu.u8[skb + SKB_IP_SUMMED] as number) === CHECKSUM_PARTIAL && (odev.features & NETIF_F_HW_CSUM) === 0) {
    if (skbChecksumHelp(cpu, skb) !== 0) {
      drop(r, cpu, odev, skb, SKB_DROP_REASON.NOMEM);
      return;
    }
  }
  const t = r.neigh;
  const i = neighResolve(t, odev.ifindex, nexthop, r.sd.jiffies);
  if (i >= 0) routerNeighXmit(r, cpu, odev, skb, t.mac, neighMacOffset(i));
  else if (r.arpResolve === true) neighResolveOutput(r, cpu, odev, skb, nexthop | 0);
  else drop(r, cpu, odev, skb, SKB_DROP_REASON.NEIGH_FAILED);
}

/**
 * `neigh_resolve_output` for a next hop without a usable entry: queue `skb`
 * on its (new or INCOMPLETE) entry and send an ARP request from `odev`'s
 * address when resolution starts; a full table drops it (NEIGH_CREATEFAIL).
 */
function neighResolveOutput(r: Router, cpu: SkbCpu, odev: NetDevice, skb: number, nexthop: number): void {
  const t = r.neigh;
  const rc = __neighEventSend(t, odev.ifindex, nexthop, skb, r.sd.jiffies);
  if (rc === NEIGH_SEND_SOLICIT) {
    // arp_solicit (the request is ours: counted in the accounting's generated).
    const req = arpRequest(cpu, odev, nexthop, r.arpStats);
    if (req !== 0) l2Xmit(cpu, odev, req);
  } else if (rc === NEIGH_SEND_FULL) {
    devDropSkb(cpu, odev, skb, SKB_DROP_REASON.NEIGH_CREATEFAIL, true);
  } else if (rc === NEIGH_SEND_VALID) {
    // Became usable meanwhile: the skb was not taken.
    routerNeighXmit(r, cpu, odev, skb, t.mac, neighMacOffset(neighResolve(t, odev.ifindex, nexthop, r.sd.jiffies)));
  }
}

/**
 * The end of `neigh_output` once the next hop's MAC is known (`mac[macOff..+6)`):
 * Ethernet header, 802.1Q tag for a VLAN child, `dev_queue_xmit`. Takes
 * `skb` (network header = data); failures are counted drops on `odev`.
 */
export function routerNeighXmit(r: Router, cpu: SkbCpu, odev: NetDevice, skb: number, mac: Uint8Array, macOff: number): void {
  const rc = ethHeaderPush(cpu, skb, odev.mac, 0, mac, macOff, ETH_P_IP) !== 0 ? SKB_DROP_REASON.NOMEM : l2DevXmit(cpu, odev, skb);
  if (rc !== 0) drop(r, cpu, odev, skb, rc);
}

/** Send a frame whose Ethernet header is in place on `dev` (a VLAN child tags it); a failure is a TX drop on `dev`. */
export function l2Xmit(cpu: SkbCpu, dev: NetDevice, skb: number): void {
  const rc = l2DevXmit(cpu, dev, skb);
  if (rc !== 0) devDropSkb(cpu, dev, skb, rc, true);
}

/**
 * `dev_queue_xmit` of a frame whose Ethernet header is in place: on a VLAN
 * child, the 802.1Q tag goes in, the child counts it and its parent sends
 * it. Returns 0, or a drop reason with `skb` still the caller's to drop.
 */
export function l2DevXmit(cpu: SkbCpu, dev: NetDevice, skb: number): number {
  const parent = dev.parent;
  if (parent === null) {
    devQueueXmit(cpu, dev, skb);
    return 0;
  }
  if (vlanInsertTag(cpu, skb, ETH_P_8021Q, dev.vlanId) !== 0) return SKB_DROP_REASON.NOMEM;
  dev.stats[TX_PACKETS]++;
  dev.stats[TX_BYTES] += cpu.u32[(skb + SKB_LEN) >>> 2] as number;
  cpu.u32[(skb + SKB_DEV) >>> 2] = parent.ifindex;
  devQueueXmit(cpu, parent, skb);
  return 0;
}

/**
 * `arp_error_report`: the next hop of `skb` (queued for it on `odev`) could
 * not be resolved. Like `ipv4_link_failure` an ICMP host unreachable goes
 * back to the sender (when icmpSend would answer at all: not about an ICMP
 * error or a later fragment), then `skb` is dropped as NEIGH_FAILED (a TX
 * drop on `odev`). The error is made after NAT rewrote `skb`, so it passes
 * conntrack and NAT at LOCAL_OUT as the kernel's locally generated error
 * does: RELATED to the connection, a masqueraded flow's error is turned back
 * to the inside host, embedded header included. Counted in icmpSent.
 */
export function routerNeighErrorReport(r: Router, cpu: SkbCpu, odev: NetDevice, skb: number): void {
  const src = odev.ipAddr !== 0 ? odev.ipAddr : r.localAddrs.length > 0 ? (r.localAddrs[0] as number) : 0;
  const reply = src !== 0 ? icmpSend(cpu, skb, ICMP_DEST_UNREACH, ICMP_HOST_UNREACH, 0, src, r.icmpStats) : 0;
  r.lastReason = SKB_DROP_REASON.NEIGH_FAILED;
  devDropSkb(cpu, odev, skb, SKB_DROP_REASON.NEIGH_FAILED, true);
  if (reply === 0) return;
  r.stats[RT_ICMP_SENT]++;
  const now = r.sd.jiffies;
  if (nfConntrackIn(r.ct, cpu, reply, NF_INET_LOCAL_OUT, 0, now) === 0) {
    drop(r, cpu, odev, reply, r.ct.reason);
    return;
  }
  const reason = nfNatIpv4(r.nat, cpu, reply, NF_INET_LOCAL_OUT, r.ct);
  if (reason !== 0) {
    drop(r, cpu, odev, reply, reason);
    return;
  }
  // To ourselves (an error about a packet we sent from our own address): no socket takes it.
  if (isLocal(r, be32s(cpu.u8, skbNetworkHeader(cpu, reply) + 16))) {
    localDeliver(r, cpu, odev, reply);
    return;
  }
  routeAndOutput(r, cpu, odev, reply, false);
}

/** Make `child` an 802.1Q device `vid` on `parent` (cold). */
export function vlanDevAdd(ns: NetNamespace, parent: NetDevice, vid: number): NetDevice {
  if (!Number.isInteger(vid) || vid < 1 || vid > 4094) throw new RangeError(`vlan: id ${vid} must be 1..4094`);
  if (parent.vlanDevs[vid] !== undefined) throw new Error(`vlan: ${parent.name} already has VLAN ${vid}`);
  const child = ns.register({ name: `${parent.name}.${vid}`, mtu: parent.mtu, kind: "vlan" });
  child.mac.set(parent.mac);
  child.macHi = parent.macHi;
  child.macLo = parent.macLo;
  child.vlanId = vid;
  child.parent = parent;
  child.features = parent.features;
  parent.vlanDevs[vid] = child;
  return child;
}
