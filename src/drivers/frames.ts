/**
 * Frame templates: complete Ethernet (optionally 802.1Q) / IPv4 / UDP or TCP
 * frames with valid checksums, built once at setup into the arena so the
 * packet path only copies them and patches a few fields with incremental
 * checksum updates. Building allocates (cold); patching does not.
 *
 * @module
 */

import { csumFold, csumPartial, csumTcpudpNofold } from "../net/checksum.js";
import {
  ETH_P_8021Q,
  ETH_P_IP,
  IPDEFTTL,
  IPPROTO_TCP,
  IPPROTO_UDP,
  TCP_FLAG_ACK,
} from "../net/proto.js";
import { STAMP_LEN, STAMP_MAGIC } from "./traffic.js";

/** What a template is. */
export interface FrameSpec {
  srcMac: Uint8Array;
  dstMac: Uint8Array;
  /** 0 = untagged. */
  vlan: number;
  saddr: number;
  daddr: number;
  proto: number;
  sport: number;
  dport: number;
  /** Frame size on the wire with FCS, without VLAN tag (64..1518); or ipLen. */
  frameSize: number;
  /** TCP only. */
  tcpFlags?: number;
  seq?: number;
  ack?: number;
  /** Payload stamp: flow index (UDP). */
  flow?: number;
  /** IP id. */
  id?: number;
}

/** Layout facts of a built frame (offsets from the frame start). */
export interface FrameLayout {
  /** Bytes in memory. */
  len: number;
  ipOff: number;
  l4Off: number;
  payloadOff: number;
  payloadLen: number;
}

/** Offsets of the headers for a frame with/without VLAN tag. */
export function frameLayout(spec: Pick<FrameSpec, "vlan" | "proto" | "frameSize">): FrameLayout {
  const l2 = spec.vlan !== 0 ? 18 : 14;
  const ipLen = spec.frameSize - 18;
  const l4Len = spec.proto === IPPROTO_UDP ? 8 : 20;
  return {
    len: l2 + ipLen,
    ipOff: l2,
    l4Off: l2 + 20,
    payloadOff: l2 + 20 + l4Len,
    payloadLen: ipLen - 20 - l4Len,
  };
}

/** Build a frame into a new Uint8Array with every checksum valid (cold). */
export function buildFrame(spec: FrameSpec): { bytes: Uint8Array; layout: FrameLayout } {
  const L = frameLayout(spec);
  if (L.payloadLen < 0) throw new RangeError(`buildFrame: frame size ${spec.frameSize} too small for the headers`);
  const b = new Uint8Array(L.len);
  const dv = new DataView(b.buffer);
  b.set(spec.dstMac, 0);
  b.set(spec.srcMac, 6);
  if (spec.vlan !== 0) {
    dv.setUint16(12, ETH_P_8021Q);
    dv.setUint16(14, spec.vlan & 0x0fff);
    dv.setUint16(16, ETH_P_IP);
  } else {
    dv.setUint16(12, ETH_P_IP);
  }
  const ip = L.ipOff;
  const ipLen = L.len - ip;
  b[ip] = 0x45;
  dv.setUint16(ip + 2, ipLen);
  dv.setUint16(ip + 4, spec.id ?? 0);
  dv.setUint16(ip + 6, 0x4000); // DF, as Linux sets for TCP/UDP with PMTU discovery
  b[ip + 8] = IPDEFTTL;
  b[ip + 9] = spec.proto;
  dv.setUint32(ip + 12, spec.saddr);
  dv.setUint32(ip + 16, spec.daddr);
  dv.setUint16(ip + 10, csumFold(csumPartial(b, ip, 20, 0)));
  const l4 = L.l4Off;
  dv.setUint16(l4, spec.sport);
  dv.setUint16(l4 + 2, spec.dport);
  // Payload: a stamp (when it fits), then a deterministic byte pattern.
  for (let i = L.payloadOff; i < L.len; i++) b[i] = (i * 7 + 3) & 0xff;
  if (spec.proto === IPPROTO_UDP && L.payloadLen >= STAMP_LEN) {
    dv.setUint32(L.payloadOff, STAMP_MAGIC);
    dv.setUint16(L.payloadOff + 4, spec.flow ?? 0);
    dv.setUint16(L.payloadOff + 6, 0);
    dv.setUint32(L.payloadOff + 8, 0);
  }
  const l4Len = L.len - l4;
  if (spec.proto === IPPROTO_UDP) {
    dv.setUint16(l4 + 4, l4Len);
    dv.setUint16(l4 + 6, 0);
    let c = csumFold(csumTcpudpNofold(spec.saddr, spec.daddr, l4Len, IPPROTO_UDP, csumPartial(b, l4, l4Len, 0)));
    if (c === 0) c = 0xffff;
    dv.setUint16(l4 + 6, c);
  } else if (spec.proto === IPPROTO_TCP) {
    dv.setUint32(l4 + 4, spec.seq ?? 0);
    dv.setUint32(l4 + 8, spec.ack ?? 0);
    b[l4 + 12] = 5 << 4;
    b[l4 + 13] = spec.tcpFlags ?? TCP_FLAG_ACK;
    dv.setUint16(l4 + 14, 65535);
    dv.setUint16(l4 + 16, 0);
    dv.setUint16(l4 + 16, csumFold(csumTcpudpNofold(spec.saddr, spec.daddr, l4Len, IPPROTO_TCP, csumPartial(b, l4, l4Len, 0))));
  } else {
    throw new RangeError(`buildFrame: protocol ${spec.proto} not supported`);
  }
  return { bytes: b, layout: L };
}
