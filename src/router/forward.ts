/**
 * `skb forward`: a long-running router built from a JSON configuration —
 * real (TAP, VXLAN, raw UDP tunnel) or capture-file devices, 802.1Q
 * children, routes, ARP, conntrack and masquerade NAT on one CPU, driven by
 * {@link runNapiLoop} from Node's event loop.
 *
 * ```
 *  device recv hook ─> routerL2Recv (L2, VLAN, GRO) ─> rxHandler
 *     rxHandler: ARP ─> arpRcv (answer for our address, learn the sender;
 *                       a reply that resolves an entry sends what it queued)
 *                IPv4 ─> routerIpRcv (conntrack, NAT, route, TTL) ─> l2Output
 *     l2Output (router.arpResolve): the router's ARP table (static neighbours are PERMANENT)
 *        known next hop ─> routerNeighXmit
 *        unknown ─> __neighEventSend: queued on the INCOMPLETE entry (arp_queue,
 *                   unres_qlen_bytes; the oldest dropped as NEIGH_QUEUEFULL),
 *                   a broadcast request on the first packet
 *     timers (forwarderTimers): retransmit requests; after mcast_solicit probes
 *        the queue is reported (ICMP host unreachable, NEIGH_FAILED)
 * ```
 *
 * The final report carries the packet accounting of {@link forwarderAccounting}:
 * received + generated = transmitted + dropped + consumed + merged + held.
 *
 * @module
 */

import { readFileSync } from "node:fs";
import { GCProfiler, getHeapStatistics } from "node:v8";
import { type GroList, groFlush, groListCreate } from "../core/gro.js";
import { runNapiLoop } from "../core/loop.js";
import { type NapiStruct, netRxAction, Softnet } from "../core/napi.js";
import {
  devDropSkb,
  type NetDevice,
  NetNamespace,
  parseMac,
  RX_DROPPED,
  RX_PACKETS,
  TX_DROPPED,
  TX_PACKETS,
} from "../core/netdev.js";
import { pcapDevClose, pcapDevCreate, pcapDevInputDone, pcapDevNapi, pcapDevStats } from "../drivers/pcap-dev.js";
import { tapClose, tapCreate, tapNapi, tapStats } from "../drivers/tap.js";
import { udpTunnelClose, udpTunnelCreate, udpTunnelNapi } from "../drivers/udp-tunnel.js";
import { kmemCacheInfo } from "../mm/slab.js";
import { mmSlabInfo } from "../mm/mm.js";
import { pageFragCacheDrain } from "../mm/page-frag.js";
import {
  ARP_STAT_NAMES,
  arpRcv,
  arpRequest,
  neighAddPermanent,
  neighStats,
  type NeighTable,
  neighTableFlush,
  neighTimer,
} from "../net/arp.js";
import { conntrackCreate, conntrackRegionSpec, type Conntrack, nfConntrackCount, nfConntrackFlush } from "../net/conntrack.js";
import { ipFragDestroyAll } from "../net/ip-frag.js";
import { nfNatCreate, nfNatStats } from "../net/nat.js";
import { ipv4ToString } from "../net/proto.js";
import { createSkbCpu, type SkbCpu } from "../skb/cpu.js";
import { type ForwardAccounting, formatForwardAccounting, forwarderAccounting } from "./forward-accounting.js";
import { DROP_REASON_NAMES, SKB_DROP_REASON } from "../skb/drop-reason.js";
import { consumeSkb } from "../skb/free.js";
import { SKB_PROTOCOL } from "../skb/layout.js";
import { createSkbMemory, type SkbMemory } from "../skb/memory.js";
import { napiSkbCacheDrain } from "../skb/napi-cache.js";
import { type CacheAbResult, cacheAbStart, cacheAbStop, formatCacheAb } from "./cache-ab.js";
import {
  l2Xmit,
  Router,
  RT_STAT_NAMES,
  routerAddRoute,
  routerIpRcv,
  routerL2Recv,
  routerPort,
  type RouterPort,
  routerSetAddresses,
  routerTimers,
  vlanDevAdd,
} from "./router.js";

const ETH_P_ARP = 0x0806;

// ---- configuration ---------------------------------------------------------------------------

/** Device types of the configuration. */
export const FORWARD_DEVICE_TYPES = ["tap", "vxlan", "udp", "pcap"] as const;
export type ForwardDeviceType = (typeof FORWARD_DEVICE_TYPES)[number];

/** An address with its prefix length, host order. */
export interface Cidr {
  addr: number;
  len: number;
}

export interface ForwardVlanConfig {
  id: number;
  address: Cidr;
}

export interface ForwardDeviceConfig {
  name: string;
  type: ForwardDeviceType;
  address?: Cidr;
  mac?: string;
  mtu?: number;
  vlans: ForwardVlanConfig[];
  /** tap */
  vnetHdr?: boolean;
  /** tap: write through a transmit thread per queue (default true in skb forward). */
  txThread?: boolean;
  /** vxlan / udp: local bind address and port, remote address and port, VNI. */
  local?: { address: string; port?: number };
  remote?: { address: string; port?: number };
  vni?: number;
  port?: number;
  /** pcap */
  in?: string;
  out?: string;
}

export interface ForwardRouteConfig {
  prefix: Cidr;
  via: number;
  dev: string;
}

export interface ForwardNeighbourConfig {
  address: number;
  mac: string;
  dev: string;
}

/** A validated configuration. */
export interface ForwardConfig {
  devices: ForwardDeviceConfig[];
  routes: ForwardRouteConfig[];
  nat: { outside: string } | null;
  neighbours: ForwardNeighbourConfig[];
  conntrackMax: number;
  arenaSize: number;
}

/** A configuration error; the message names the field (`config: devices[1].type: ...`). */
export class ForwardConfigError extends Error {
  override name = "ForwardConfigError";
}

function fail(path: string, msg: string): never {
  throw new ForwardConfigError(`config: ${path}: ${msg}`);
}

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function checkKeys(o: Record<string, unknown>, path: string, allowed: readonly string[]): void {
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k)) fail(`${path}.${k}`, `unknown field (allowed: ${allowed.join(", ")})`);
  }
}

/**
 * An optional array of objects at `path` (`shape` names their fields in
 * errors): each entry must be an object with only `keys`; `fn` gets it and
 * its path. Absent (undefined) is an empty list.
 */
function eachEntry(v: unknown, path: string, shape: string, keys: readonly string[], fn: (o: Record<string, unknown>, p: string) => void): void {
  if (v === undefined) return;
  if (!Array.isArray(v)) fail(path, `expected an array of ${shape}`);
  v.forEach((e: unknown, i: number) => {
    const p = `${path}[${i}]`;
    if (!isObj(e)) fail(p, `expected an object ${shape}`);
    checkKeys(e, p, keys);
    fn(e, p);
  });
}

function parseIp(v: unknown, path: string): number {
  if (typeof v !== "string") fail(path, `expected an IPv4 address string, got ${JSON.stringify(v)}`);
  const p = v.split(".");
  if (p.length !== 4 || p.some((x) => !/^\d{1,3}$/.test(x) || Number(x) > 255)) fail(path, `'${v}' is not an IPv4 address`);
  return ((Number(p[0]) << 24) | (Number(p[1]) << 16) | (Number(p[2]) << 8) | Number(p[3])) >>> 0;
}

function parseCidr(v: unknown, path: string, network: boolean): Cidr {
  if (typeof v !== "string" || !v.includes("/")) fail(path, `expected "a.b.c.d/len", got ${JSON.stringify(v)}`);
  const [a, l] = v.split("/") as [string, string];
  const addr = parseIp(a, path);
  if (!/^\d{1,2}$/.test(l) || Number(l) > 32) fail(path, `prefix length '${l}' is not 0..32`);
  const len = Number(l);
  if (!network && (len < 1 || len > 30)) fail(path, `an interface address needs a prefix length 1..30, got ${len}`);
  const mask = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
  if (network && (addr & ~mask) >>> 0 !== 0) fail(path, `'${v}' has host bits set (network is ${ipv4ToString((addr & mask) >>> 0)}/${len})`);
  return { addr, len };
}

function parseInt_(v: unknown, path: string, min: number, max: number): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) fail(path, `expected an integer ${min}..${max}, got ${JSON.stringify(v)}`);
  return v;
}

function parseStr(v: unknown, path: string): string {
  if (typeof v !== "string" || v === "") fail(path, `expected a non-empty string, got ${JSON.stringify(v)}`);
  return v;
}

function parseMacStr(v: unknown, path: string): string {
  if (typeof v !== "string" || !/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(v)) fail(path, `'${String(v)}' is not a MAC address (aa:bb:cc:dd:ee:ff)`);
  if ((parseInt(v.slice(0, 2), 16) & 1) !== 0) fail(path, `'${v}' is a multicast MAC address`);
  return v.toLowerCase();
}

/** "a.b.c.d" or "a.b.c.d:port". */
function parseEndpoint(v: unknown, path: string): { address: string; port?: number } {
  if (typeof v !== "string") fail(path, `expected "a.b.c.d" or "a.b.c.d:port", got ${JSON.stringify(v)}`);
  const i = v.indexOf(":");
  const a = i < 0 ? v : v.slice(0, i);
  parseIp(a, path);
  if (i < 0) return { address: a };
  const ps = v.slice(i + 1);
  if (!/^\d{1,5}$/.test(ps) || Number(ps) > 65535) fail(path, `port '${ps}' is not 0..65535`);
  return { address: a, port: Number(ps) };
}

const DEVICE_COMMON = ["name", "type", "address", "mac", "mtu", "vlans"] as const;
const DEVICE_FIELDS: Record<ForwardDeviceType, readonly string[]> = {
  tap: [...DEVICE_COMMON, "vnetHdr", "txThread"],
  vxlan: [...DEVICE_COMMON, "local", "remote", "vni", "port"],
  udp: [...DEVICE_COMMON, "local", "remote", "port"],
  pcap: [...DEVICE_COMMON, "in", "out"],
};

/** Validate a parsed JSON configuration (cold). Throws {@link ForwardConfigError}. */
export function parseForwardConfig(raw: unknown): ForwardConfig {
  if (!isObj(raw)) fail("(top level)", "expected an object with devices, routes, nat, neighbours");
  checkKeys(raw, "config", ["devices", "routes", "nat", "neighbours", "conntrackMax", "arenaSize"]);
  if (!Array.isArray(raw.devices) || raw.devices.length === 0) fail("devices", "expected a non-empty array of devices");
  const names = new Set<string>();
  const l3 = new Map<string, boolean>(); // device name -> has an address
  const devices: ForwardDeviceConfig[] = [];
  raw.devices.forEach((d: unknown, i: number) => {
    const p = `devices[${i}]`;
    if (!isObj(d)) fail(p, "expected an object");
    const name = parseStr(d.name, `${p}.name`);
    if (name.length > 15) fail(`${p}.name`, `'${name}' is longer than 15 characters`);
    if (!/^[A-Za-z0-9_-]+$/.test(name)) fail(`${p}.name`, `'${name}' may only contain letters, digits, '_' and '-'`);
    if (names.has(name)) fail(`${p}.name`, `duplicate device name '${name}'`);
    names.add(name);
    if (typeof d.type !== "string" || !(FORWARD_DEVICE_TYPES as readonly string[]).includes(d.type)) {
      fail(`${p}.type`, `unknown type '${String(d.type)}' (${FORWARD_DEVICE_TYPES.join(", ")})`);
    }
    const type = d.type as ForwardDeviceType;
    checkKeys(d, p, DEVICE_FIELDS[type]);
    const dev: ForwardDeviceConfig = { name, type, vlans: [] };
    if (d.address !== undefined) dev.address = parseCidr(d.address, `${p}.address`, false);
    if (d.mac !== undefined) dev.mac = parseMacStr(d.mac, `${p}.mac`);
    if (d.mtu !== undefined) dev.mtu = parseInt_(d.mtu, `${p}.mtu`, 68, type === "tap" || type === "pcap" ? 65535 : 3800);
    l3.set(name, dev.address !== undefined);
    const ids = new Set<number>();
    eachEntry(d.vlans, `${p}.vlans`, "{id, address}", ["id", "address"], (v, vp) => {
      const id = parseInt_(v.id, `${vp}.id`, 1, 4094);
      if (ids.has(id)) fail(`${vp}.id`, `duplicate VLAN id ${id}`);
      ids.add(id);
      if (v.address === undefined) fail(`${vp}.address`, "required");
      dev.vlans.push({ id, address: parseCidr(v.address, `${vp}.address`, false) });
      l3.set(`${name}.${id}`, true);
      names.add(`${name}.${id}`);
    });
    if (type === "tap") {
      for (const k of ["vnetHdr", "txThread"] as const) {
        const v = d[k];
        if (v === undefined) continue;
        if (typeof v !== "boolean") fail(`${p}.${k}`, `expected true or false, got ${JSON.stringify(v)}`);
        dev[k] = v;
      }
    } else if (type === "vxlan" || type === "udp") {
      if (d.local === undefined) fail(`${p}.local`, "required (local address to bind, \"a.b.c.d\" or \"a.b.c.d:port\")");
      if (d.remote === undefined) fail(`${p}.remote`, "required (peer address, \"a.b.c.d\" or \"a.b.c.d:port\")");
      dev.local = parseEndpoint(d.local, `${p}.local`);
      dev.remote = parseEndpoint(d.remote, `${p}.remote`);
      if (d.port !== undefined) dev.port = parseInt_(d.port, `${p}.port`, 1, 65535);
      if (type === "vxlan") {
        if (d.vni === undefined) fail(`${p}.vni`, "required for vxlan (0..16777215)");
        dev.vni = parseInt_(d.vni, `${p}.vni`, 0, 0xffffff);
      } else if (dev.port === undefined && dev.remote.port === undefined) {
        fail(`${p}.port`, "required for udp (or give remote as \"a.b.c.d:port\")");
      }
    } else {
      if (d.in !== undefined) dev.in = parseStr(d.in, `${p}.in`);
      if (d.out !== undefined) dev.out = parseStr(d.out, `${p}.out`);
      if (dev.in !== undefined && dev.in === dev.out) fail(`${p}.out`, "must differ from in");
    }
    devices.push(dev);
  });
  const knownDev = (v: unknown, path: string): string => {
    const n = parseStr(v, path);
    if (!names.has(n)) fail(path, `unknown device '${n}' (have: ${[...names].join(", ")})`);
    return n;
  };
  const routes: ForwardRouteConfig[] = [];
  eachEntry(raw.routes, "routes", "{prefix, via?, dev}", ["prefix", "via", "dev"], (r, p) => {
    if (r.prefix === undefined) fail(`${p}.prefix`, "required");
    const prefix = parseCidr(r.prefix, `${p}.prefix`, true);
    const via = r.via !== undefined ? parseIp(r.via, `${p}.via`) : 0;
    if (r.dev === undefined) fail(`${p}.dev`, "required");
    const dev = knownDev(r.dev, `${p}.dev`);
    if (!l3.get(dev)) fail(`${p}.dev`, `device '${dev}' has no address (routes need an addressed device)`);
    if (routes.some((x) => x.prefix.addr === prefix.addr && x.prefix.len === prefix.len)) fail(`${p}.prefix`, "duplicate route");
    routes.push({ prefix, via, dev });
  });
  let nat: { outside: string } | null = null;
  if (raw.nat !== undefined) {
    if (!isObj(raw.nat)) fail("nat", "expected an object {outside}");
    checkKeys(raw.nat, "nat", ["outside"]);
    if (raw.nat.outside === undefined) fail("nat.outside", "required (the device to masquerade to)");
    const o = knownDev(raw.nat.outside, "nat.outside");
    if (!l3.get(o)) fail("nat.outside", `device '${o}' has no address to masquerade to`);
    nat = { outside: o };
  }
  const neighbours: ForwardNeighbourConfig[] = [];
  eachEntry(raw.neighbours, "neighbours", "{address, mac, dev}", ["address", "mac", "dev"], (n, p) => {
    neighbours.push({
      address: parseIp(n.address, `${p}.address`),
      mac: parseMacStr(n.mac, `${p}.mac`),
      dev: knownDev(n.dev, `${p}.dev`),
    });
  });
  const conntrackMax = raw.conntrackMax !== undefined ? parseInt_(raw.conntrackMax, "conntrackMax", 16, 1 << 22) : 65536;
  const arenaSize = raw.arenaSize !== undefined ? parseInt_(raw.arenaSize, "arenaSize", 16 << 20, 1 << 30) : 128 << 20;
  return { devices, routes, nat, neighbours, conntrackMax, arenaSize };
}

/** Read and validate a configuration file (cold). */
export function loadForwardConfig(file: string): ForwardConfig {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new ForwardConfigError(`config: ${file}: ${(e as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ForwardConfigError(`config: ${file}: invalid JSON: ${(e as Error).message}`);
  }
  return parseForwardConfig(raw);
}

// ---- the forwarder ---------------------------------------------------------------------------

/** One configured (physical) device of a forwarder: its config, device, NAPI instance, GRO list and router port. */
export interface PhysDev {
  cfg: ForwardDeviceConfig;
  dev: NetDevice;
  napi: NapiStruct;
  gro: GroList | null;
  port: RouterPort;
}

/** A built router: memory, CPU, devices, tables. */
export interface Forwarder {
  config: ForwardConfig;
  mem: SkbMemory;
  cpu: SkbCpu;
  ns: NetNamespace;
  sd: Softnet;
  router: Router;
  ct: Conntrack;
  neigh: NeighTable;
  arpStats: Float64Array;
  phys: PhysDev[];
  /** Devices with an address (physical and VLAN children). */
  l3: NetDevice[];
  /**
   * Multi-core hand-off, run first on every received packet: returns true
   * when it took the skb (queued to the CPU that owns its connection).
   * null on a single CPU.
   */
  rxSteer: ((cpu: SkbCpu, dev: NetDevice, skb: number) => boolean) | null;
}

/** How {@link forwarderCreate} builds one CPU's router (defaults: a single-CPU router owning its memory). */
export interface ForwarderCreateOptions {
  /** Shared memory (a worker CPU attaches to the controller's); default: created from the config. */
  mem?: SkbMemory;
  /** This CPU's id in `mem` (default 0). */
  cpuId?: number;
  /** The conntrack region of this CPU in `mem` (default: the unnamed one). */
  conntrackName?: string;
  /** This CPU's NAT port range (default the whole masquerade range). */
  natPorts?: readonly [number, number];
  /** This CPU's ICMP echo id range for NAT (default 0..65535). */
  natIcmpIds?: readonly [number, number];
  /** Open TAPs with IFF_MULTI_QUEUE so that every CPU attaches its own queue (default false). */
  tapMultiQueue?: boolean;
  /** NAPI cache profile of this CPU: "5.12" (default) or "6.19" (with deferral of alien skbs once skbDeferInstall ran). */
  profile?: "5.12" | "6.19";
}

/** Build the router from a validated configuration (cold; opens devices). */
export async function forwarderCreate(config: ForwardConfig, o: ForwarderCreateOptions = {}): Promise<Forwarder> {
  const mem = o.mem ?? createSkbMemory({ arenaSize: config.arenaSize, extraRegions: conntrackRegionSpec({ max: config.conntrackMax }) });
  const cpu = createSkbCpu(mem, o.cpuId ?? 0, { profile: o.profile ?? "5.12" });
  const ns = new NetNamespace();
  const sd = new Softnet(cpu, ns);
  const phys: PhysDev[] = [];
  const closeAll = async (): Promise<void> => {
    for (const p of phys) await closeDevice(cpu, p);
  };
  try {
    for (const c of config.devices) {
      const holder: { port: RouterPort | null; dev: NetDevice | null } = { port: null, dev: null };
      const recv = (cc: SkbCpu, _n: NapiStruct, skb: number): void => routerL2Recv(holder.port as RouterPort, cc, holder.dev as NetDevice, skb);
      let dev: NetDevice;
      let napi: NapiStruct;
      let gro = true;
      const common = { ...(c.mtu !== undefined ? { mtu: c.mtu } : {}), ...(c.mac !== undefined ? { mac: c.mac } : {}) };
      if (c.type === "tap") {
        dev = tapCreate(ns, sd, {
          name: c.name,
          ...common,
          ...(c.vnetHdr !== undefined ? { vnetHdr: c.vnetHdr } : {}),
          // The router's default: the NAPI thread does not wait for the kernel's delivery of each frame.
          txThread: c.txThread ?? true,
          ...(o.tapMultiQueue === true ? { multiQueue: true } : {}),
          recv,
        });
        napi = tapNapi(dev, 0);
      } else if (c.type === "vxlan" || c.type === "udp") {
        const l = c.local as { address: string; port?: number };
        const r = c.remote as { address: string; port?: number };
        const lp = l.port ?? c.port;
        const rp = r.port ?? c.port;
        dev = await udpTunnelCreate(ns, sd, {
          name: c.name,
          mode: c.type === "vxlan" ? "vxlan" : "raw",
          localAddress: l.address,
          remoteAddress: r.address,
          ...(lp !== undefined ? { localPort: lp } : {}),
          ...(rp !== undefined ? { remotePort: rp } : {}),
          ...(c.vni !== undefined ? { vni: c.vni } : {}),
          ...common,
          recv,
        });
        napi = udpTunnelNapi(dev);
      } else {
        dev = pcapDevCreate(ns, sd, { name: c.name, ...(c.in !== undefined ? { in: c.in } : {}), ...(c.out !== undefined ? { out: c.out } : {}), ...common, recv });
        napi = pcapDevNapi(dev);
        gro = false; // frame for frame: what enters a capture leaves as the same packets
      }
      const g = gro ? groListCreate({ napiId: napi.napiId }) : null;
      holder.dev = dev;
      holder.port = routerPort(napi, g);
      phys.push({ cfg: c, dev, napi, gro: g, port: holder.port });
    }
  } catch (e) {
    await closeAll();
    throw e;
  }
  const l3: NetDevice[] = [];
  for (const p of phys) {
    const c = p.cfg;
    if (c.address !== undefined) {
      p.dev.ipAddr = c.address.addr;
      p.dev.prefixLen = c.address.len;
      l3.push(p.dev);
    }
    for (const v of c.vlans) {
      const child = vlanDevAdd(ns, p.dev, v.id);
      child.ipAddr = v.address.addr;
      child.prefixLen = v.address.len;
      child.up = true;
      l3.push(child);
    }
    p.dev.up = true;
  }
  const ct = conntrackCreate(mem.arena, {
    max: config.conntrackMax,
    clock: () => sd.jiffies,
    ...(o.conntrackName !== undefined ? { name: o.conntrackName } : {}),
  });
  const outside = config.nat !== null ? ns.get(config.nat.outside) : null;
  const nat = nfNatCreate({
    outsideIfindex: outside !== null ? outside.ifindex : -1,
    outsideAddr: outside !== null ? outside.ipAddr : 0,
    ...(o.natPorts !== undefined ? { portMin: o.natPorts[0], portMax: o.natPorts[1] } : {}),
    ...(o.natIcmpIds !== undefined ? { icmpIdMin: o.natIcmpIds[0], icmpIdMax: o.natIcmpIds[1] } : {}),
  });
  const router = new Router(cpu, ns, sd, ct, nat);
  router.outside = outside;
  // Connected routes first (the kernel adds them with the address), then the configured ones.
  const have = new Set(config.routes.map((r) => `${r.prefix.addr}/${r.prefix.len}`));
  for (const d of l3) {
    const mask = (0xffffffff << (32 - d.prefixLen)) >>> 0;
    const net = (d.ipAddr & mask) >>> 0;
    if (have.has(`${net}/${d.prefixLen}`)) continue;
    have.add(`${net}/${d.prefixLen}`);
    routerAddRoute(router, net, d.prefixLen, 0, d);
  }
  for (const r of config.routes) routerAddRoute(router, r.prefix.addr, r.prefix.len, r.via, ns.get(r.dev));
  routerSetAddresses(router);
  // Next hops are resolved by ARP; configured neighbours are permanent entries.
  router.arpResolve = true;
  const neigh = router.neigh;
  for (const n of config.neighbours) neighAddPermanent(neigh, ns.get(n.dev).ifindex, n.address, parseMac(n.mac));
  const f: Forwarder = { config, mem, cpu, ns, sd, router, ct, neigh, arpStats: router.arpStats, phys, l3, rxSteer: null };
  const handler = (c: SkbCpu, d: NetDevice, skb: number): void => forwardRx(f, c, d, skb);
  for (const d of l3) d.rxHandler = handler;
  return f;
}

/** The receive handler of every addressed device: ARP to arpRcv, the rest to the IPv4 stack. */
export function forwardRx(f: Forwarder, cpu: SkbCpu, dev: NetDevice, skb: number): void {
  // Multi-core: a packet whose connection another CPU owns is handed to it.
  if (f.rxSteer?.(cpu, dev, skb) === true) return;
  if ((cpu.u16[(skb + SKB_PROTOCOL) >>> 1] as number) === ETH_P_ARP) {
    const rc = arpRcv(cpu, skb, dev, f.neigh, f.arpStats, f.sd.jiffies);
    if (rc === 0) l2Xmit(cpu, dev, skb);
    else if (rc === SKB_DROP_REASON.CONSUMED) consumeSkb(cpu, skb);
    else devDropSkb(cpu, dev, skb, rc, false);
    return;
  }
  routerIpRcv(f.router, cpu, dev, skb);
}

/**
 * The periodic work outside packet processing: router timers, ARP
 * retransmissions, resolution failures (their queued packets reported) and
 * GC. `now` (ms since the softnet's epoch) is the clock to run at.
 */
export function forwarderTimers(f: Forwarder, now: number = Date.now() - f.sd.epoch): void {
  f.sd.jiffies = now;
  routerTimers(f.router, f.cpu);
  neighTimer(f.neigh, f.sd.jiffies, (ifindex, addr) => {
    const dev = f.ns.devices[ifindex];
    if (dev === undefined || !dev.up) return;
    const req = arpRequest(f.cpu, dev, addr, f.arpStats);
    if (req !== 0) l2Xmit(f.cpu, dev, req);
  });
}

/** Have all capture inputs been read (true when there are none)? */
export function forwarderInputsDone(f: Forwarder): boolean {
  for (const p of f.phys) if (p.cfg.type === "pcap" && !pcapDevInputDone(p.dev)) return false;
  return true;
}

/** Poll until nothing is scheduled, flushing GRO (cold). */
export function forwarderDrain(f: Forwarder): void {
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < 100_000 && f.sd.count > 0; i++) netRxAction(f.sd);
    for (const p of f.phys) if (p.gro !== null) groFlush(f.cpu, p.gro, true, p.port.deliver);
  }
  for (let i = 0; i < 100_000 && f.sd.count > 0; i++) netRxAction(f.sd);
}

async function closeDevice(cpu: SkbCpu, p: { cfg: ForwardDeviceConfig; dev: NetDevice }): Promise<void> {
  if (p.cfg.type === "tap") tapClose(p.dev);
  else if (p.cfg.type === "pcap") pcapDevClose(cpu, p.dev);
  else await udpTunnelClose(p.dev);
}

/** Per-device counters. */
export interface ForwardDeviceStats {
  name: string;
  kind: string;
  rx: number;
  tx: number;
  drops: number;
}

/** Live counters (allocates; cold). */
export interface ForwardStats {
  time: string;
  devices: ForwardDeviceStats[];
  conntrack: number;
  neighbours: number;
  router: Record<string, number>;
}

export function forwarderStats(f: Forwarder): ForwardStats {
  const devices = f.ns.list().map((d) => ({
    name: d.name,
    kind: d.kind,
    rx: d.stats[RX_PACKETS] as number,
    tx: d.stats[TX_PACKETS] as number,
    drops: (d.stats[RX_DROPPED] as number) + (d.stats[TX_DROPPED] as number),
  }));
  const router: Record<string, number> = {};
  RT_STAT_NAMES.forEach((n, i) => {
    router[n] = f.router.stats[i] as number;
  });
  return { time: new Date().toISOString(), devices, conntrack: nfConntrackCount(f.ct), neighbours: f.neigh.count, router };
}

/** The stats as a table (cold). */
export function formatForwardStats(s: ForwardStats): string {
  const w = Math.max(6, ...s.devices.map((d) => d.name.length));
  const lines = [`${s.time}  conntrack ${s.conntrack}  neighbours ${s.neighbours}  forwarded ${s.router.forwarded ?? 0}`];
  lines.push(`  ${"device".padEnd(w)} ${"rx".padStart(10)} ${"tx".padStart(10)} ${"drops".padStart(10)}`);
  for (const d of s.devices) lines.push(`  ${d.name.padEnd(w)} ${String(d.rx).padStart(10)} ${String(d.tx).padStart(10)} ${String(d.drops).padStart(10)}`);
  return lines.join("\n");
}

export {
  FORWARD_ACCOUNTING_IDENTITY,
  type ForwardAccounting,
  type ForwardAccountingTerms,
  forwardAccountingCheck,
  forwarderAccounting,
  formatForwardAccounting,
} from "./forward-accounting.js";

/** The final report. */
export interface ForwardReport {
  reason: string;
  stats: ForwardStats;
  dropsByReason: Record<string, number>;
  arp: Record<string, number>;
  neigh: Record<string, number>;
  nat: Record<string, number>;
  pcap: Record<string, ReturnType<typeof pcapDevStats>>;
  /** TAP driver counters per TAP device (frames, GSO super-frames, checksum offload, errors). */
  tap: Record<string, ReturnType<typeof tapStats>>;
  /**
   * The NAPI loop's counters; the garbage collections V8 ran while it ran
   * (v8.GCProfiler) and the JS heap bytes allocated meanwhile (used heap
   * growth between collections, summed): with `packets`, what the packet
   * path allocates — event-loop plumbing (a promise per yield or sleep,
   * timers, stats) included.
   */
  loop: { runs: number; packets: number; sleeps: number; wakeups: number; irqRuns: number; yields: number; gcs: number; heapAllocated: number };
  leaks: { heads: number; pages: number; slabsInUse: Record<string, number>; conntrackEntries: number };
  /** Every packet accounted for ({@link forwarderAccounting}), taken after the last drain. */
  accounting: ForwardAccounting;
  /** No leak, no capture error, and (on a CPU of its own) the accounting balances. */
  ok: boolean;
  /** With `cacheAbMs`: the NAPI cache A/B inside this run. */
  cacheAb?: CacheAbResult;
}

/** Options of {@link forwarderRun}. */
export interface ForwardRunOptions {
  signal?: AbortSignal;
  /** Stop once every capture input has been read and nothing is in flight. */
  untilIdle?: boolean;
  /** Called every `statsMs` with the live counters. */
  onStats?: (s: ForwardStats) => void;
  statsMs?: number;
  /** Timer period (router timers, ARP) in ms (default 100). */
  timerMs?: number;
  /** Other CPUs share the memory: see {@link forwarderDestroy}. */
  sharedMemory?: boolean;
  /** Flip the NAPI cache switch every this many ms and report the A/B ({@link cacheAbStart}). */
  cacheAbMs?: number;
}

/**
 * Run the router until the signal aborts (or, with `untilIdle`, the inputs
 * are done), then drain, close the devices, flush conntrack, drain the
 * caches and check for leaks. Resolves with the final report.
 */
export async function forwarderRun(f: Forwarder, o: ForwardRunOptions = {}): Promise<ForwardReport> {
  const timer = setInterval(() => forwarderTimers(f), o.timerMs ?? 100);
  const statsTimer = o.onStats !== undefined && o.statsMs !== undefined ? setInterval(() => o.onStats?.(forwarderStats(f)), o.statsMs) : undefined;
  let res: Awaited<ReturnType<typeof runNapiLoop>>;
  const prof = new GCProfiler();
  const heap0 = getHeapStatistics().used_heap_size;
  prof.start();
  let gcs = 0;
  let heapAllocated = 0;
  const ab = o.cacheAbMs !== undefined ? cacheAbStart(f.ns, o.cacheAbMs) : null;
  let cacheAb: CacheAbResult | null = null;
  try {
    res = await runNapiLoop(f.sd, {
      ...(o.signal !== undefined ? { signal: o.signal } : {}),
      ...(o.untilIdle === true ? { until: () => forwarderInputsDone(f) && f.sd.count === 0 } : {}),
    });
  } finally {
    const st = prof.stop()?.statistics ?? [];
    gcs = st.length;
    // Allocated = what the used heap grew by between collections, plus since the last one.
    let prev = heap0;
    for (const e of st) {
      heapAllocated += Math.max(0, e.beforeGC.heapStatistics.usedHeapSize - prev);
      prev = e.afterGC.heapStatistics.usedHeapSize;
    }
    heapAllocated += Math.max(0, getHeapStatistics().used_heap_size - prev);
    clearInterval(timer);
    if (statsTimer !== undefined) clearInterval(statsTimer);
    if (ab !== null) cacheAb = cacheAbStop(ab, f.ns);
  }
  const report = await forwarderDestroy(
    f,
    res.reason,
    { runs: res.runs, packets: res.packets, sleeps: res.sleeps, wakeups: res.wakeups, irqRuns: res.irqRuns, yields: res.yields, gcs, heapAllocated },
    o.sharedMemory === true,
  );
  if (cacheAb !== null) report.cacheAb = cacheAb;
  return report;
}

/**
 * Tear down and report (cold): drain, close the devices, drain again, drop
 * what still waits for ARP (NEIGH_DEAD; the entries go as at `ifdown`),
 * account for every packet, flush conntrack and reassembly, drain the
 * caches, count what is still allocated. `sharedMemory`: other CPUs still
 * use the arena, so the slab, head and page counts are global and not this
 * CPU's to judge — `ok` then only covers what this CPU owns (conntrack,
 * captures), and not the accounting either (packets handed between CPUs
 * enter and leave without a device counter; the controller sums the terms);
 * the controller checks the memory once every CPU has stopped.
 */
export async function forwarderDestroy(f: Forwarder, reason: string, loop: ForwardReport["loop"], sharedMemory = false): Promise<ForwardReport> {
  forwarderDrain(f);
  const pcap: ForwardReport["pcap"] = {};
  for (const p of f.phys) if (p.cfg.type === "pcap") pcap[p.dev.name] = pcapDevStats(p.dev);
  const tap: ForwardReport["tap"] = {};
  for (const p of f.phys) if (p.cfg.type === "tap") tap[p.dev.name] = tapStats(p.dev);
  for (const p of f.phys) p.dev.up = false;
  for (const p of f.phys) await closeDevice(f.cpu, p);
  forwarderDrain(f);
  // Nothing will answer now: what waits for ARP is dropped (NEIGH_DEAD), counted on its device.
  neighTableFlush(f.neigh);
  const accounting = forwarderAccounting(f);
  const stats = forwarderStats(f);
  const dropsByReason: Record<string, number> = {};
  for (const d of f.ns.list()) {
    for (let r = 0; r < d.drops.length; r++) {
      const n = d.drops[r] as number;
      if (n !== 0) dropsByReason[DROP_REASON_NAMES[r] as string] = (dropsByReason[DROP_REASON_NAMES[r] as string] ?? 0) + n;
    }
  }
  const arp: Record<string, number> = {};
  ARP_STAT_NAMES.forEach((n, i) => {
    arp[n] = f.arpStats[i] as number;
  });
  ipFragDestroyAll(f.cpu, f.router.fq);
  nfConntrackFlush(f.ct);
  const conntrackEntries = nfConntrackCount(f.ct);
  napiSkbCacheDrain(f.cpu);
  pageFragCacheDrain(f.cpu.napiFrag);
  pageFragCacheDrain(f.cpu.netdevFrag);
  const slabsInUse: Record<string, number> = {};
  for (const i of mmSlabInfo(f.mem.mm)) if (i.activeObjs !== 0) slabsInUse[i.name] = i.activeObjs;
  const heads = kmemCacheInfo(f.mem.headCache).activeObjs;
  const pages = kmemCacheInfo(f.mem.pages.cache).activeObjs;
  const leaks = { heads, pages, slabsInUse, conntrackEntries };
  let pcapOk = true;
  for (const s of Object.values(pcap)) if (s.error !== null) pcapOk = false;
  return {
    reason,
    stats,
    dropsByReason,
    arp,
    neigh: neighStats(f.neigh),
    nat: nfNatStats(f.router.nat),
    pcap,
    tap,
    loop,
    leaks,
    accounting,
    ok:
      (sharedMemory || (heads === 0 && pages === 0 && Object.keys(slabsInUse).length === 0)) &&
      conntrackEntries === 0 &&
      pcapOk &&
      (sharedMemory || accounting.ok),
  };
}

/** The final report as text (cold). */
export function formatForwardReport(r: ForwardReport): string {
  const kv = (o: Record<string, number>): string => {
    const e = Object.entries(o).filter(([, v]) => v !== 0);
    return e.length === 0 ? "none" : e.map(([k, v]) => `${k} ${v}`).join(", ");
  };
  const lines = [`skb forward: stopped (${r.reason})`, formatForwardStats(r.stats)];
  lines.push(`drops       ${kv(r.dropsByReason)}`);
  lines.push(`arp         ${kv(r.arp)}`);
  lines.push(`neighbours  ${kv(r.neigh)}`);
  lines.push(`nat         ${kv(r.nat)}`);
  for (const [n, s] of Object.entries(r.tap)) {
    lines.push(
      `tap ${n}  rx ${s.rxFrames} frames (${s.rxGso} GSO), tx ${s.txFrames} frames (${s.txGso} GSO, ${s.txGsoSegmented} segmented in software)` +
        `, tx busy ${s.txBusy}, tx errors ${s.txErrors + s.txCarrier + s.txPrepFail}, rx errors ${s.rxErrors + s.rxTruncated + s.rxRunt + s.rxBadVnetHdr + s.rxNomem}` +
        (s.txThreadWritten + s.txThreadDirect > 0
          ? `; transmit thread: ${s.txThreadWritten} written, ${s.txThreadDirect} direct, ${s.txThreadKicks} wake-ups, ${s.txRingWaits} waits for room`
          : ""),
    );
  }
  for (const [n, s] of Object.entries(r.pcap)) {
    lines.push(`pcap ${n}  read ${s.read}, injected ${s.injected}, skipped ${s.skipped}, written ${s.written}${s.error !== null ? `, error: ${s.error}` : ""}`);
  }
  if (r.accounting !== undefined) lines.push(formatForwardAccounting(r.accounting));
  if (r.cacheAb !== undefined) lines.push(formatCacheAb(r.cacheAb));
  const l = r.leaks;
  const leaked = l.heads !== 0 || l.pages !== 0 || l.conntrackEntries !== 0 || Object.keys(l.slabsInUse).length > 0;
  lines.push(
    `leaks       ${leaked ? "FOUND" : "none"}: ${l.heads} heads, ${l.pages} pages in use, conntrack entries ${l.conntrackEntries}` +
      `${Object.keys(l.slabsInUse).length > 0 ? `, slabs in use ${kv(l.slabsInUse)}` : ""}`,
  );
  return lines.join("\n");
}
