/**
 * veth: a pair of devices where transmit on one end is NAPI receive on the
 * other (drivers/net/veth.c with its XDP/NAPI receive path).
 *
 * ```
 *   A.xmit(skb) ──> B.ring ──napiSchedule(B)──> B.poll:
 *     frame  : linear page-fragment skb  -> shell freed into A's CPU NAPI cache,
 *              the buffer crosses as a descriptor (like an xdp_frame)
 *     skb    : anything else (kmalloc head, frags, clone) crosses as is
 *   B.poll: frames in batches of VETH_XDP_BATCH (16): ONE napiSkbCacheGetBulk
 *           for the batch, buildSkbAround each, then the receive path
 * ```
 *
 * The ring holds VETH_RING_SIZE (256) descriptors in typed arrays; a full
 * ring makes transmit return NETDEV_TX_BUSY (counted as a FULL_RING drop).
 *
 * @module
 */

import { skbCloned } from "../skb/access.js";
import { buildSkbAround } from "../skb/alloc.js";
import type { SkbCpu } from "../skb/cpu.js";
import { SKB_DROP_REASON } from "../skb/drop-reason.js";
import { kfreeSkbReason, skbPagePut, skbReleaseHeadState } from "../skb/free.js";
import {
  CHECKSUM_PARTIAL,
  SHINFO_FRAG_LIST,
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
  SKB_TAIL,
  SKB_USERS,
  SKBF_FCLONE_MASK,
  SKBF_HEAD_FRAG,
  SKBF_PP_RECYCLE,
} from "../skb/layout.js";
import { napiSkbCacheGetBulk, napiSkbCachePut } from "../skb/napi-cache.js";
import {
  devCountRx,
  NETDEV_TX_BUSY,
  NETDEV_TX_OK,
  type NetDevice,
  type NetNamespace,
  NETIF_F_HW_CSUM,
  NETIF_F_SG,
  RX_DROPPED,
} from "../core/netdev.js";
import { type NapiStruct, napiCompleteDone, napiSchedule, netifNapiAdd, type Softnet } from "../core/napi.js";

/** Kernel VETH_RING_SIZE. */
export const VETH_RING_SIZE = 256;
/** Kernel VETH_XDP_BATCH. */
export const VETH_XDP_BATCH = 16;

/** What a veth end does with each received skb (eth_type_trans + GRO / delivery). */
export type VethRecvFn = (cpu: SkbCpu, napi: NapiStruct, skb: number) => void;

/** Private state of one veth end. */
export class VethPriv {
  peer: NetDevice | null = null;
  napi: NapiStruct | null = null;
  recv: VethRecvFn;
  /** Descriptor ring (this end's receive side). kind 0 = frame, 1 = skb. */
  readonly kind = new Uint8Array(VETH_RING_SIZE);
  readonly ptr = new Uint32Array(VETH_RING_SIZE);
  readonly off = new Uint32Array(VETH_RING_SIZE);
  readonly len = new Uint32Array(VETH_RING_SIZE);
  readonly size = new Uint32Array(VETH_RING_SIZE);
  readonly pp = new Uint8Array(VETH_RING_SIZE);
  /** ip_summed of the frame's skb (NONE or UNNECESSARY: veth keeps it, as __dev_forward_skb does). */
  readonly summed = new Uint8Array(VETH_RING_SIZE);
  prod = 0;
  cons = 0;
  /** Heads taken for one batch. */
  readonly batch = new Uint32Array(VETH_XDP_BATCH);
  /** Frames received, skbs received, bulk-get calls, frames dropped for want of heads. */
  framesRx = 0;
  skbsRx = 0;
  bulkCalls = 0;
  noHeadDrops = 0;

  constructor(recv: VethRecvFn) {
    this.recv = recv;
  }
}

function privOf(dev: NetDevice): VethPriv {
  return dev.priv as VethPriv;
}

/** Can this skb cross as a bare buffer (an xdp_frame)? */
function frameable(cpu: SkbCpu, skb: number): boolean {
  // A frame carries bytes only: a checksum left to the device must stay with its skb.
  if ((cpu.u8[skb + SKB_IP_SUMMED] as number) === CHECKSUM_PARTIAL) return false;
  const f = cpu.u8[skb + SKB_FLAGS] as number;
  if ((f & (SKBF_HEAD_FRAG | SKBF_FCLONE_MASK)) !== SKBF_HEAD_FRAG) return false;
  if ((cpu.u32[(skb + SKB_DATA_LEN) >>> 2] as number) !== 0) return false;
  if (Atomics.load(cpu.i32, (skb + SKB_USERS) >>> 2) !== 1 || skbCloned(cpu, skb)) return false;
  const sh = (cpu.u32[(skb + SKB_HEAD) >>> 2] as number) + (cpu.u32[(skb + SKB_END) >>> 2] as number);
  return (cpu.u8[sh + SHINFO_NR_FRAGS] as number) === 0 && (cpu.u32[(sh + SHINFO_FRAG_LIST) >>> 2] as number) === 0;
}

/** veth_xmit: queue on the peer's ring and schedule its NAPI. */
function vethXmit(cpu: SkbCpu, dev: NetDevice, skb: number): number {
  const peer = privOf(dev).peer as NetDevice;
  const rq = privOf(peer);
  if (peer.up === false) return NETDEV_TX_BUSY;
  if (rq.prod - rq.cons >= VETH_RING_SIZE) return NETDEV_TX_BUSY;
  const i = rq.prod & (VETH_RING_SIZE - 1);
  const u32 = cpu.u32;
  if (frameable(cpu, skb)) {
    const head = u32[(skb + SKB_HEAD) >>> 2] as number;
    rq.kind[i] = 0;
    rq.ptr[i] = head;
    rq.off[i] = (u32[(skb + SKB_DATA) >>> 2] as number) - head;
    rq.len[i] = u32[(skb + SKB_LEN) >>> 2] as number;
    rq.size[i] = (u32[(skb + SKB_END) >>> 2] as number) + SHINFO_SIZE;
    rq.pp[i] = (cpu.u8[skb + SKB_FLAGS] as number) & SKBF_PP_RECYCLE ? 1 : 0;
    rq.summed[i] = cpu.u8[skb + SKB_IP_SUMMED] as number;
    // The buffer now belongs to the frame: release the head state, cache the shell.
    skbReleaseHeadState(cpu, skb);
    napiSkbCachePut(cpu, skb);
  } else {
    rq.kind[i] = 1;
    rq.ptr[i] = skb;
  }
  rq.prod++;
  napiSchedule(rq.napi as NapiStruct);
  return NETDEV_TX_OK;
}

/** Build skbs for the next `m` descriptors (all frames) with ONE bulk head request. */
function vethXdpRcvBulk(cpu: SkbCpu, napi: NapiStruct, rq: VethPriv, m: number): void {
  const dev = napi.netdev;
  const got = napiSkbCacheGetBulk(cpu, rq.batch, 0, m);
  rq.bulkCalls++;
  const u32 = cpu.u32;
  for (let j = 0; j < m; j++) {
    const i = rq.cons & (VETH_RING_SIZE - 1);
    rq.cons++;
    if (j >= got) {
      // No head for this frame: give the buffer back and count the drop.
      skbPagePut(cpu, rq.ptr[i] as number, rq.pp[i] === 1);
      rq.noHeadDrops++;
      dev.stats[RX_DROPPED]++;
      dev.drops[SKB_DROP_REASON.NOMEM]++;
      cpu.drops[SKB_DROP_REASON.NOMEM]++;
      continue;
    }
    const skb = rq.batch[j] as number;
    buildSkbAround(cpu, skb, rq.ptr[i] as number, rq.size[i] as number);
    const off = rq.off[i] as number;
    const len = rq.len[i] as number;
    u32[(skb + SKB_DATA) >>> 2] = (rq.ptr[i] as number) + off;
    u32[(skb + SKB_TAIL) >>> 2] = off + len;
    u32[(skb + SKB_LEN) >>> 2] = len;
    u32[(skb + SKB_DEV) >>> 2] = dev.ifindex;
    if (rq.pp[i] === 1) cpu.u8[skb + SKB_FLAGS] = (cpu.u8[skb + SKB_FLAGS] as number) | SKBF_PP_RECYCLE;
    cpu.u8[skb + SKB_IP_SUMMED] = rq.summed[i] as number;
    rq.framesRx++;
    devCountRx(cpu, dev, skb, 0);
    rq.recv(cpu, napi, skb);
  }
}

/** veth's NAPI poll: up to `budget` descriptors, frames in bulk batches. */
function vethPoll(cpu: SkbCpu, napi: NapiStruct, budget: number): number {
  const rq = privOf(napi.netdev);
  let done = 0;
  while (done < budget && rq.cons !== rq.prod) {
    const i = rq.cons & (VETH_RING_SIZE - 1);
    if (rq.kind[i] === 1) {
      const skb = rq.ptr[i] as number;
      rq.cons++;
      cpu.u32[(skb + SKB_DEV) >>> 2] = napi.netdev.ifindex;
      rq.skbsRx++;
      devCountRx(cpu, napi.netdev, skb, 0);
      rq.recv(cpu, napi, skb);
      done++;
      continue;
    }
    // A run of frames, at most one batch and the remaining budget.
    let m = 1;
    const lim = Math.min(VETH_XDP_BATCH, budget - done, rq.prod - rq.cons);
    while (m < lim && rq.kind[(rq.cons + m) & (VETH_RING_SIZE - 1)] === 0) m++;
    vethXdpRcvBulk(cpu, napi, rq, m);
    done += m;
  }
  if (done < budget) napiCompleteDone(napi, done);
  return done;
}

/**
 * Create a veth pair `a` <-> `b` in `ns`, with NAPI on `sd`'s CPU. `recv`
 * is each end's receive path (eth_type_trans + GRO or delivery).
 */
export function vethCreatePair(
  ns: NetNamespace,
  sd: Softnet,
  a: string,
  b: string,
  recvA: VethRecvFn,
  recvB: VethRecvFn,
  mtu = 1500,
): [NetDevice, NetDevice] {
  const da = ns.register({ name: a, mtu, kind: "veth" });
  const db = ns.register({ name: b, mtu, kind: "veth" });
  const pa = new VethPriv(recvA);
  const pb = new VethPriv(recvB);
  pa.peer = db;
  pb.peer = da;
  da.priv = pa;
  db.priv = pb;
  da.xmit = vethXmit;
  db.xmit = vethXmit;
  // Like the kernel's veth: scatter-gather and checksum offload (the peer trusts CHECKSUM_PARTIAL).
  da.features = NETIF_F_SG | NETIF_F_HW_CSUM;
  db.features = NETIF_F_SG | NETIF_F_HW_CSUM;
  pa.napi = netifNapiAdd(sd, da, vethPoll);
  pb.napi = netifNapiAdd(sd, db, vethPoll);
  return [da, db];
}

/** Descriptors `dev` can still transmit before its peer's ring is full (BQL-like backpressure). */
export function vethTxRoom(dev: NetDevice): number {
  const rq = privOf(privOf(dev).peer as NetDevice);
  return VETH_RING_SIZE - (rq.prod - rq.cons);
}

/** The NAPI instance of a veth end. */
export function vethNapi(dev: NetDevice): NapiStruct {
  return privOf(dev).napi as NapiStruct;
}

/** veth counters of one end (allocates). */
export function vethStats(dev: NetDevice): { framesRx: number; skbsRx: number; bulkCalls: number; noHeadDrops: number; queued: number } {
  const p = privOf(dev);
  return { framesRx: p.framesRx, skbsRx: p.skbsRx, bulkCalls: p.bulkCalls, noHeadDrops: p.noHeadDrops, queued: p.prod - p.cons };
}

/** Free every descriptor still queued on `dev` (teardown). */
export function vethPurge(cpu: SkbCpu, dev: NetDevice): number {
  const rq = privOf(dev);
  let n = 0;
  while (rq.cons !== rq.prod) {
    const i = rq.cons & (VETH_RING_SIZE - 1);
    rq.cons++;
    if (rq.kind[i] === 1) {
      dev.stats[RX_DROPPED]++;
      dev.drops[SKB_DROP_REASON.DEV_READY]++;
      kfreeSkbReason(cpu, rq.ptr[i] as number, SKB_DROP_REASON.DEV_READY);
    } else {
      skbPagePut(cpu, rq.ptr[i] as number, rq.pp[i] === 1);
      dev.stats[RX_DROPPED]++;
      dev.drops[SKB_DROP_REASON.DEV_READY]++;
    }
    n++;
  }
  return n;
}

