/**
 * The seed's test bed, built in one process: inside hosts (pktgen) on VLAN
 * 10, the VLAN NAT router, the outside server (sink), wired with veth pairs
 * and polled by one CPU's NAPI loop. `scenarioRun` pushes N packets through
 * and returns what happened; `scenarioAccounting` proves every packet is
 * accounted for; `scenarioDestroy` frees everything and reports leaks.
 *
 * ```
 *  inside hosts 10.10.0.2.. ── gen0 ═ in0 ─ in0.10 (10.10.0.1/16)
 *                                       router: masquerade to 198.51.100.1
 *  server 198.51.100.10 ────── srv0 ═ out0 (198.51.100.1/24)
 * ```
 *
 * @module
 */

import { kmemCacheInfo } from "../mm/slab.js";
import { mmSlabInfo } from "../mm/mm.js";
import { pageFragCacheDrain } from "../mm/page-frag.js";
import { createSkbCpu, type SkbCpu } from "../skb/cpu.js";
import { createSkbMemory, type SkbMemory } from "../skb/memory.js";
import { napiSkbCacheDrain } from "../skb/napi-cache.js";
import { conntrackCreate, conntrackRegionSpec, nfConntrackCount, nfConntrackFlush } from "../net/conntrack.js";
import { nfNatCreate } from "../net/nat.js";
import { ipFragDestroyAll } from "../net/ip-frag.js";
import { ipv4 } from "../net/proto.js";
import { GRO_STAT_MERGED, groListCreate, type GroList, groFlush } from "../core/gro.js";
import { type NetDevice, NetNamespace, RX_DROPPED, RX_MERGED, RX_PACKETS, TX_DROPPED, TX_PACKETS } from "../core/netdev.js";
import { napiSchedule, netRxAction, Softnet } from "../core/napi.js";
import { vethCreatePair, vethNapi, vethPurge, vethStats } from "../drivers/veth.js";
import { type Pktgen, pktgenCreate, pktgenDestroy, pktgenRecv, PG_RX, PG_TX } from "../drivers/pktgen.js";
import { type Sink, sinkCreate, sinkDestroy, sinkRecv, SK_RX, SK_TX } from "../drivers/sink.js";
import { flowSrcAddr, resolveTraffic, type Traffic, type TrafficOptions } from "../drivers/traffic.js";
import { Router, RT_FRAG_EXTRA, RT_GSO_EXTRA, RT_ICMP_SENT, routerAddNeighbour, routerAddRoute, routerSetAddresses, routerIpRcv, routerL2Recv, routerPort, type RouterPort, vlanDevAdd } from "./router.js";

/** Options of the scenario. */
export interface ScenarioOptions {
  traffic: TrafficOptions;
  /** Kernel profile of the NAPI cache (5.12 default). */
  profile?: string;
  /** GRO on the router's ports (default true). */
  gro?: boolean;
  /** Check every checksum at the hosts (default true; benchmarks sample 1/64). */
  fullValidation?: boolean;
  /** Arena size (default 256 MiB). */
  arenaSize?: number;
  /** nf_conntrack_max (default 65536). */
  conntrackMax?: number;
  /** Router MTU on both sides (default 1500). */
  mtu?: number;
  /** Run on existing shared memory (a worker) instead of creating an arena. */
  mem?: SkbMemory;
  /** CPU id on that memory (default 0). */
  cpuId?: number;
  /** Conntrack region name (the memory must carve it; default nf_conntrack). */
  conntrackName?: string;
  /** NAT source port range (default 1024-65535). */
  natPorts?: readonly [number, number];
  /** The flows this instance's pktgen sends (default all). */
  flows?: readonly number[];
}

/** The wired-up test bed. */
export interface Scenario {
  mem: SkbMemory;
  cpu: SkbCpu;
  ns: NetNamespace;
  sd: Softnet;
  traffic: Traffic;
  router: Router;
  gen0: NetDevice;
  in0: NetDevice;
  inside: NetDevice;
  out0: NetDevice;
  srv0: NetDevice;
  pktgen: Pktgen;
  sink: Sink;
  groIn: GroList | null;
  groOut: GroList | null;
  portIn: RouterPort;
  portOut: RouterPort;
}

/** Build the test bed (cold; allocates). */
export function scenarioCreate(o: ScenarioOptions): Scenario {
  const traffic = resolveTraffic(o.traffic);
  const ctMax = o.conntrackMax ?? 65536;
  const mem =
    o.mem ??
    createSkbMemory({
      arenaSize: o.arenaSize ?? 256 << 20,
      extraRegions: conntrackRegionSpec({ max: ctMax }),
    });
  const cpu = createSkbCpu(mem, o.cpuId ?? 0, { profile: o.profile ?? "5.12" });
  const ns = new NetNamespace();
  const sd = new Softnet(cpu, ns);
  const mtu = o.mtu ?? 1500;
  // Filled in once the objects exist; the receive hooks are bound once and read it.
  const box: { pg: Pktgen | null; sk: Sink | null; r: Router | null; pin: RouterPort | null; pout: RouterPort | null } = {
    pg: null,
    sk: null,
    r: null,
    pin: null,
    pout: null,
  };
  const [gen0, in0] = vethCreatePair(
    ns,
    sd,
    "gen0",
    "in0",
    (c, _n, skb) => pktgenRecv(box.pg as Pktgen, c, skb),
    (c, _n, skb) => routerL2Recv(box.pin as RouterPort, c, in0, skb),
    mtu + 4,
  );
  const [out0, srv0] = vethCreatePair(
    ns,
    sd,
    "out0",
    "srv0",
    (c, _n, skb) => routerL2Recv(box.pout as RouterPort, c, out0, skb),
    (c, _n, skb) => sinkRecv(box.sk as Sink, c, skb),
    mtu,
  );
  const inside = traffic.vlan !== 0 ? vlanDevAdd(ns, in0, traffic.vlan) : in0;
  inside.mtu = mtu;
  inside.ipAddr = ipv4("10.10.0.1");
  inside.prefixLen = 16;
  out0.ipAddr = ipv4("198.51.100.1");
  out0.prefixLen = 24;
  for (const d of [gen0, in0, inside, out0, srv0]) d.up = true;
  const ct = conntrackCreate(mem.arena, {
    max: ctMax,
    clock: () => sd.jiffies,
    ...(o.conntrackName !== undefined ? { name: o.conntrackName } : {}),
  });
  const nat = nfNatCreate({
    outsideIfindex: out0.ifindex,
    outsideAddr: out0.ipAddr,
    ...(o.natPorts !== undefined ? { portMin: o.natPorts[0], portMax: o.natPorts[1] } : {}),
  });
  const router = new Router(cpu, ns, sd, ct, nat);
  router.outside = out0;
  routerAddRoute(router, ipv4("10.10.0.0"), 16, 0, inside);
  routerAddRoute(router, ipv4("198.51.100.0"), 24, 0, out0);
  for (let h = 0; h < traffic.insideHosts; h++) routerAddNeighbour(router, flowSrcAddr(traffic, h), gen0.mac);
  routerAddNeighbour(router, traffic.server, srv0.mac);
  routerSetAddresses(router);
  const handler = (c: SkbCpu, d: NetDevice, skb: number) => routerIpRcv(router, c, d, skb);
  inside.rxHandler = handler;
  out0.rxHandler = handler;
  const useGro = o.gro ?? true;
  const groIn = useGro ? groListCreate({ napiId: vethNapi(in0).napiId }) : null;
  const groOut = useGro ? groListCreate({ napiId: vethNapi(out0).napiId }) : null;
  const portIn = routerPort(vethNapi(in0), groIn);
  const portOut = routerPort(vethNapi(out0), groOut);
  const pktgen = pktgenCreate(ns, sd, gen0, traffic, {
    routerMac: in0.mac,
    fullValidation: o.fullValidation ?? true,
    ...(o.flows !== undefined ? { flows: o.flows } : {}),
  });
  const sink = sinkCreate(cpu, traffic, srv0, {
    natAddr: out0.ipAddr,
    routerMac: out0.mac,
    fullValidation: o.fullValidation ?? true,
  });
  box.pg = pktgen;
  box.sk = sink;
  box.r = router;
  box.pin = portIn;
  box.pout = portOut;
  return { mem, cpu, ns, sd, traffic, router, gen0, in0, inside, out0, srv0, pktgen, sink, groIn, groOut, portIn, portOut };
}

/** Result of one run. */
export interface RunResult {
  packets: number;
  ns: number;
  stalled: boolean;
}

/**
 * Generate `packets` data packets and poll until every one has been
 * delivered, answered and consumed (or the pipeline stalls). For TCP the
 * handshake of every flow happens first (not counted in `packets`).
 */
export function scenarioRun(s: Scenario, packets: number): RunResult {
  const pg = s.pktgen;
  const sd = s.sd;
  if (s.traffic.proto === "tcp" && pg.established < pg.nActive) scenarioHandshake(s);
  pg.remaining += packets;
  const t0 = process.hrtime.bigint();
  let idle = 0;
  let stalled = false;
  while (pg.remaining > 0 || sd.count > 0) {
    if (pg.remaining > 0) napiSchedule(pg.napi);
    const done = netRxAction(sd);
    if (done === 0) {
      if (++idle > 1000) {
        stalled = true;
        break;
      }
    } else {
      idle = 0;
    }
  }
  flushAll(s);
  return { packets, ns: Number(process.hrtime.bigint() - t0), stalled };
}

/** Open every TCP flow (SYN, SYN-ACK, ACK through the router). */
export function scenarioHandshake(s: Scenario): void {
  const pg = s.pktgen;
  for (let i = 0; i < 10_000 && pg.established < pg.nActive; i++) {
    napiSchedule(pg.napi);
    while (s.sd.count > 0) netRxAction(s.sd);
  }
  if (pg.established < pg.nActive) {
    throw new Error(`scenario: only ${pg.established} of ${pg.nActive} TCP flows completed the handshake`);
  }
  // Deliver the handshake ACKs.
  napiSchedule(pg.napi);
  while (s.sd.count > 0) netRxAction(s.sd);
}

function flushAll(s: Scenario): void {
  for (let i = 0; i < 100 && s.sd.count > 0; i++) netRxAction(s.sd);
  if (s.groIn !== null) groFlush(s.cpu, s.groIn, true, s.portIn.deliver);
  if (s.groOut !== null) groFlush(s.cpu, s.groOut, true, s.portOut.deliver);
  for (let i = 0; i < 100 && s.sd.count > 0; i++) netRxAction(s.sd);
}

/** Packet accounting of a scenario: every packet sent is received or dropped somewhere. */
export interface Accounting {
  ok: boolean;
  /** Frames the hosts sent (pktgen + sink). */
  sent: number;
  /** Frames the hosts received. */
  received: number;
  /** Drops counted on devices, by device. */
  drops: Record<string, number>;
  /** Packets the router made: ICMP errors, plus the extra packets of GSO and fragmentation. */
  generated: number;
  /** Packets absorbed into others: GRO merges and fragments held for reassembly. */
  merged: number;
  /** Frames still queued on rings. */
  queued: number;
  /** veth pairs: tx on one end = rx + queued on the other. */
  vethOk: boolean;
  problems: string[];
}

/**
 * Check conservation: sent + generated = received + dropped + queued +
 * merged, where "generated" are packets the router made (ICMP errors, GSO
 * and fragmentation extras) and "merged" packets absorbed into others (GRO,
 * reassembly).
 */
export function scenarioAccounting(s: Scenario): Accounting {
  const problems: string[] = [];
  const sent = (s.pktgen.stats[PG_TX] as number) + (s.sink.stats[SK_TX] as number);
  const received = (s.pktgen.stats[PG_RX] as number) + (s.sink.stats[SK_RX] as number);
  const drops: Record<string, number> = {};
  let dropped = 0;
  for (const d of s.ns.list()) {
    const n = (d.stats[RX_DROPPED] as number) + (d.stats[TX_DROPPED] as number);
    if (n > 0) drops[d.name] = n;
    dropped += n;
  }
  let queued = 0;
  let vethOk = true;
  for (const [a, b] of [
    [s.gen0, s.in0],
    [s.in0, s.gen0],
    [s.out0, s.srv0],
    [s.srv0, s.out0],
  ] as const) {
    const q = vethStats(b).queued;
    queued += q;
    const noHead = vethStats(b).noHeadDrops;
    if ((a.stats[TX_PACKETS] as number) !== (b.stats[RX_PACKETS] as number) + q + noHead) {
      vethOk = false;
      problems.push(`${a.name} sent ${a.stats[TX_PACKETS]} but ${b.name} received ${b.stats[RX_PACKETS]} (+${q} queued, ${noHead} without heads)`);
    }
  }
  const rs = s.router.stats;
  const generated = (rs[RT_ICMP_SENT] as number) + (rs[RT_GSO_EXTRA] as number) + (rs[RT_FRAG_EXTRA] as number);
  let merged = 0;
  for (const g of [s.groIn, s.groOut]) if (g !== null) merged += g.stats[GRO_STAT_MERGED] as number;
  for (const d of s.ns.list()) merged += d.stats[RX_MERGED] as number;
  const balanced = sent + generated === received + dropped + queued + merged;
  if (!balanced) {
    problems.push(
      `sent ${sent} + generated ${generated} != received ${received} + dropped ${dropped} + queued ${queued} + merged ${merged}`,
    );
  }
  return { ok: vethOk && balanced, sent, received, drops, generated, merged, queued, vethOk, problems };
}

/** Leak report after teardown. */
export interface LeakReport {
  ok: boolean;
  headsInUse: number;
  slabsInUse: Record<string, number>;
  conntrackEntries: number;
}

/**
 * Tear the scenario down: purge rings, flush GRO, free host templates and
 * pools, drain the caches, flush conntrack; then (with `checkAll`, when no
 * other CPU shares the memory) report every slab object still in use
 * (should be none).
 */
export function scenarioDestroy(s: Scenario, checkAll = true): LeakReport {
  flushAll(s);
  for (const d of [s.gen0, s.in0, s.out0, s.srv0]) vethPurge(s.cpu, d);
  pktgenDestroy(s.pktgen);
  sinkDestroy(s.sink);
  ipFragDestroyAll(s.cpu, s.router.fq);
  nfConntrackFlush(s.router.ct);
  const conntrackEntries = nfConntrackCount(s.router.ct);
  napiSkbCacheDrain(s.cpu);
  pageFragCacheDrain(s.cpu.napiFrag);
  pageFragCacheDrain(s.cpu.netdevFrag);
  const slabsInUse: Record<string, number> = {};
  // With other CPUs still running on the same memory only they can judge the totals.
  if (checkAll) for (const i of mmSlabInfo(s.mem.mm)) if (i.activeObjs !== 0) slabsInUse[i.name] = i.activeObjs;
  const headsInUse = kmemCacheInfo(s.mem.headCache).activeObjs;
  return { ok: Object.keys(slabsInUse).length === 0 && conntrackEntries === 0, headsInUse, slabsInUse, conntrackEntries };
}
