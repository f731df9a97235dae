/**
 * Traffic description shared by the generator (pktgen) and the sink:
 * flows, frame sizes, addresses, and the payload stamp every generated packet
 * carries so the far end can validate it.
 *
 * Sizes are Ethernet frame sizes on the wire including the 4-byte FCS and
 * excluding any VLAN tag, like pktgen's: 64 is the minimum frame (60 bytes
 * in memory, 46-byte IP packet), 1518 the maximum (1500-byte IP packet).
 * IMIX is the classic 7:4:1 mix of 64, 594 and 1518.
 *
 * Payload stamp (first bytes of the L4 payload):
 * ```
 *  0  magic  u32  0x736b6231 ("skb1")
 *  4  flow   u16  flow index
 *  6  -      u16
 *  8  seq    u32  per-flow packet number (UDP) / unused (TCP: the TCP seq is checked)
 * ```
 * (A 64-byte UDP frame has 18 payload bytes; a 64-byte TCP frame only 6, so
 * TCP stamps nothing and the sink checks TCP sequence numbers instead.)
 *
 * @module
 */

import { ipv4 } from "../net/proto.js";

/** Stamp magic. */
export const STAMP_MAGIC = 0x736b6231;
/** Bytes of the stamp. */
export const STAMP_LEN = 12;

/** IMIX 7:4:1 frame sizes. */
export const IMIX: readonly number[] = [64, 64, 64, 64, 64, 64, 64, 594, 594, 594, 594, 1518];

/** Transport of a traffic description. */
export type TrafficProto = "udp" | "tcp";

/** A traffic description (cold; validated by {@link resolveTraffic}). */
export interface TrafficOptions {
  proto: TrafficProto;
  /** Frame size 64..1518, or "imix". */
  size: number | "imix";
  /** Number of flows (inside hosts × ports). */
  flows?: number;
  /** First inside host address; hosts are consecutive. */
  insideBase?: string;
  /** Number of distinct inside hosts (flows are spread over them). */
  insideHosts?: number;
  /** The outside server every flow talks to. */
  server?: string;
  /** Server port. */
  serverPort?: number;
  /** First source port used by inside hosts. */
  sportBase?: number;
  /** 802.1Q VLAN id on the inside, 0 for untagged. */
  vlan?: number;
  /** UDP: the sink replies to every n-th datagram of a flow (0 = never). */
  udpReplyEvery?: number;
}

/** Resolved, numeric traffic description. */
export interface Traffic {
  proto: TrafficProto;
  protoNum: number;
  sizes: readonly number[];
  sizeLabel: string;
  flows: number;
  insideBase: number;
  insideHosts: number;
  server: number;
  serverPort: number;
  sportBase: number;
  vlan: number;
  udpReplyEvery: number;
}

/** Validate and fill defaults; throws RangeError naming the bad field. */
export function resolveTraffic(o: TrafficOptions): Traffic {
  if (o.proto !== "udp" && o.proto !== "tcp") throw new RangeError(`traffic: proto must be udp or tcp, got '${o.proto}'`);
  let sizes: number[];
  let sizeLabel: string;
  if (o.size === "imix") {
    sizes = [...IMIX];
    sizeLabel = "imix";
  } else {
    if (!Number.isInteger(o.size) || o.size < 64 || o.size > 1518) {
      throw new RangeError(`traffic: frame size ${o.size} must be 64..1518 or imix`);
    }
    sizes = [o.size];
    sizeLabel = String(o.size);
  }
  const flows = o.flows ?? 64;
  if (!Number.isInteger(flows) || flows < 1 || flows > 65536) throw new RangeError(`traffic: flows ${flows} must be 1..65536`);
  const insideHosts = o.insideHosts ?? Math.min(flows, 16);
  if (!Number.isInteger(insideHosts) || insideHosts < 1 || insideHosts > 65536) {
    throw new RangeError(`traffic: insideHosts ${insideHosts} must be 1..65536`);
  }
  const vlan = o.vlan ?? 10;
  if (!Number.isInteger(vlan) || vlan < 0 || vlan > 4094) throw new RangeError(`traffic: vlan ${vlan} must be 0..4094`);
  const udpReplyEvery = o.udpReplyEvery ?? 16;
  if (!Number.isInteger(udpReplyEvery) || udpReplyEvery < 0) throw new RangeError("traffic: udpReplyEvery must be >= 0");
  return {
    proto: o.proto,
    protoNum: o.proto === "udp" ? 17 : 6,
    sizes,
    sizeLabel,
    flows,
    insideBase: ipv4(o.insideBase ?? "10.10.0.2"),
    insideHosts,
    server: ipv4(o.server ?? "198.51.100.10"),
    serverPort: o.serverPort ?? 5201,
    sportBase: o.sportBase ?? 40000,
    vlan,
    udpReplyEvery,
  };
}

/** Inside address of flow `f`. */
export function flowSrcAddr(t: Traffic, f: number): number {
  return (t.insideBase + (f % t.insideHosts)) >>> 0;
}

/** Inside source port of flow `f`. */
export function flowSrcPort(t: Traffic, f: number): number {
  return t.sportBase + Math.floor(f / t.insideHosts);
}
