/**
 * Packet accounting of `skb forward`: every frame that enters through a
 * physical device, and every packet the router makes, ends in exactly one
 * place — sent, dropped (counted by reason), consumed by ARP, merged into
 * another, or still held. {@link forwarderAccounting} gathers the terms from
 * the counters of a {@link Forwarder} and {@link forwardAccountingCheck}
 * checks the identity. Cold code (allocates its results).
 *
 * @module
 */

import { GRO_STAT_MERGED, groHeldCount } from "../core/gro.js";
import { RX_DROPPED, RX_MERGED, RX_PACKETS, TX_DROPPED, TX_PACKETS } from "../core/netdev.js";
import { pcapDevStats } from "../drivers/pcap-dev.js";
import { tapStats } from "../drivers/tap.js";
import { udpTunnelStats } from "../drivers/udp-tunnel.js";
import {
  ARP_IN_CONSUMED,
  ARP_OUT_REQUESTS,
  NEIGH_STAT_QUEUE_FAILED,
  NEIGH_STAT_QUEUE_FLUSHED,
  NEIGH_STAT_QUEUE_SENT,
  NEIGH_STAT_QUEUED,
  NEIGH_STAT_UNRES_DISCARDS,
  neighQueuedCount,
} from "../net/arp.js";
import type { Forwarder } from "./forward.js";
import { RT_FRAG_EXTRA, RT_GSO_EXTRA, RT_ICMP_SENT } from "./router.js";

// ---- packet accounting ------------------------------------------------------------------------

/** The identity {@link forwardAccountingCheck} verifies. */
export const FORWARD_ACCOUNTING_IDENTITY = "received + generated = transmitted + dropped + consumed + merged + held";

/** The terms of the identity, in packets (one skb is one packet, a GSO aggregate included). */
export interface ForwardAccountingTerms {
  /** Frames the physical devices took in: tap rxFrames, tunnel rxDatagrams, capture records read. */
  received: number;
  /** Packets the router made: ICMP errors, the extra packets of GSO and fragmentation, ARP requests. */
  generated: number;
  /** Packets the physical devices sent (TX_PACKETS; a VLAN child's go out as its parent's). */
  transmitted: number;
  /** RX_DROPPED + TX_DROPPED of every device (each drop is counted once, where it happened), plus capture records skipped. */
  dropped: number;
  /** ARP packets taken without an answer (learned from or not for us). */
  consumed: number;
  /** Packets absorbed into others: GRO merges and fragments taken by reassembly. */
  merged: number;
  /** Packets still waiting: ARP queues, GRO lists, delivery batches, tunnel RX rings. */
  held: number;
}

/** The accounting of a report: the terms, what they are made of, and whether the identity holds. */
export interface ForwardAccounting extends ForwardAccountingTerms {
  identity: string;
  /** The parts of every term by source (see {@link forwarderAccounting}). */
  detail: Record<string, number>;
  ok: boolean;
  /** Why not ok: the unbalanced identity, and driver or queue counters that disagree with each other. */
  problems: string[];
}

/**
 * Check the identity on `t` (pure; allocates the result). `problems` are
 * earlier findings (cross-checks of the counters) that also make it fail.
 */
export function forwardAccountingCheck(t: ForwardAccountingTerms, detail: Record<string, number> = {}, problems: readonly string[] = []): ForwardAccounting {
  const out = [...problems];
  const left = t.received + t.generated;
  const right = t.transmitted + t.dropped + t.consumed + t.merged + t.held;
  for (const [k, v] of Object.entries(t)) {
    if (!Number.isInteger(v) || v < 0) out.push(`${k} is ${v}, not a count`);
  }
  if (left !== right) {
    out.push(
      `received ${t.received} + generated ${t.generated} = ${left} but transmitted ${t.transmitted} + dropped ${t.dropped} + consumed ${t.consumed}` +
        ` + merged ${t.merged} + held ${t.held} = ${right} (${left > right ? `${left - right} packets unaccounted for` : `${right - left} packets counted twice`})`,
    );
  }
  return { identity: FORWARD_ACCOUNTING_IDENTITY, ...t, detail, ok: out.length === 0, problems: out };
}

/**
 * Gather the terms from the counters of `f` and check them (cold;
 * allocates). Every frame enters through a physical device and every skb
 * ends in exactly one of: sent by a physical device, dropped and counted on
 * a device, consumed by ARP, merged into another, still held — or it is an
 * extra packet the router generated.
 *
 * - received: per device, the driver's frame counter (tap `rxFrames` = skbs
 *   handed up + truncated/runt/bad-vnet-header/no-memory drops; a tunnel's
 *   `rxDatagrams` = skbs + its RX drops + its ring; a capture's records
 *   `read` = injected + skipped + nomem), cross-checked against RX_PACKETS
 *   and the driver's drop counters. VLAN children are not counted (their
 *   frames arrived on the parent).
 * - generated: `icmpSent` (errors made by the router; echo replies are the
 *   request turned around), `gsoExtra`, `fragExtra`, ARP `outRequests`
 *   (replies are the request turned around).
 * - transmitted: TX_PACKETS of the physical devices (a TAP that segments a
 *   GSO skb itself still sent one skb).
 * - dropped: RX_DROPPED + TX_DROPPED of all devices (drivers count their
 *   drops before an skb exists there too) + capture records skipped / nomem.
 * - consumed: ARP `inConsumed`.
 * - merged: GRO_STAT_MERGED of every port's GRO list + RX_MERGED (fragments
 *   queued for reassembly; those of a queue that expires or fails stay
 *   counted here, the last one is a counted drop).
 * - held: ARP queues, GRO lists, NAPI delivery batches, tunnel RX rings.
 *
 * The neighbour queue is checked on its own too: queued = sent + failed +
 * flushed + unresDiscards + still queued.
 */
export function forwarderAccounting(f: Forwarder): ForwardAccounting {
  const problems: string[] = [];
  let rxSkbs = 0;
  let frames = 0;
  let captureSkipped = 0;
  let txPackets = 0;
  let groMerged = 0;
  let groHeld = 0;
  let batchHeld = 0;
  let ringHeld = 0;
  for (const p of f.phys) {
    const d = p.dev;
    const rx = d.stats[RX_PACKETS] as number;
    rxSkbs += rx;
    txPackets += d.stats[TX_PACKETS] as number;
    if (p.cfg.type === "tap") {
      const s = tapStats(d);
      const pre = s.rxTruncated + s.rxRunt + s.rxBadVnetHdr + s.rxNomem;
      frames += s.rxFrames;
      if (s.rxFrames !== rx + pre) problems.push(`${d.name}: the tap read ${s.rxFrames} frames but handed up ${rx} skbs and dropped ${pre} before the stack`);
    } else if (p.cfg.type === "pcap") {
      const s = pcapDevStats(d);
      frames += s.read;
      captureSkipped += s.skipped + s.nomem;
      if (s.read !== s.injected + s.skipped + s.nomem || s.injected !== rx) {
        problems.push(`${d.name}: the capture read ${s.read} records, injected ${s.injected} (RX_PACKETS ${rx}), skipped ${s.skipped}, ${s.nomem} without memory`);
      }
    } else {
      const s = udpTunnelStats(d);
      const pre = s.rxBadHeader + s.rxWrongVni + s.rxOversize + s.rxRunt + s.rxRingFull + s.rxNomem + s.rxDown + s.rxPurged;
      frames += s.rxDatagrams;
      ringHeld += s.queued;
      if (s.rxDatagrams !== rx + pre + s.queued) {
        problems.push(`${d.name}: the tunnel received ${s.rxDatagrams} datagrams but handed up ${rx} skbs, dropped ${pre}, holds ${s.queued}`);
      }
    }
    if (p.gro !== null) {
      groMerged += p.gro.stats[GRO_STAT_MERGED] as number;
      groHeld += groHeldCount(p.gro);
    }
    batchHeld += p.napi.rxCount;
  }
  let deviceDrops = 0;
  let reassemblyMerged = 0;
  for (const d of f.ns.list()) {
    deviceDrops += (d.stats[RX_DROPPED] as number) + (d.stats[TX_DROPPED] as number);
    reassemblyMerged += d.stats[RX_MERGED] as number;
  }
  const rs = f.router.stats;
  const t = f.neigh;
  const ns = t.stats;
  const arpQueue = neighQueuedCount(t);
  const queued = ns[NEIGH_STAT_QUEUED] as number;
  const left = (ns[NEIGH_STAT_QUEUE_SENT] as number) + (ns[NEIGH_STAT_QUEUE_FAILED] as number) + (ns[NEIGH_STAT_QUEUE_FLUSHED] as number) + (ns[NEIGH_STAT_UNRES_DISCARDS] as number);
  if (queued !== left + arpQueue) {
    problems.push(`ARP queue: ${queued} packets queued but ${left} left it (sent, failed, flushed, discarded) and ${arpQueue} are still there`);
  }
  const detail = {
    rxSkbs,
    rxDriverDropped: frames - rxSkbs - ringHeld,
    icmpErrors: rs[RT_ICMP_SENT] as number,
    gsoExtra: rs[RT_GSO_EXTRA] as number,
    fragExtra: rs[RT_FRAG_EXTRA] as number,
    arpRequests: f.arpStats[ARP_OUT_REQUESTS] as number,
    deviceDrops,
    captureSkipped,
    groMerged,
    reassemblyMerged,
    arpQueue,
    groHeld,
    batchHeld,
    ringHeld,
    arpQueued: queued,
    arpQueueSent: ns[NEIGH_STAT_QUEUE_SENT] as number,
  };
  return forwardAccountingCheck(
    {
      received: frames,
      generated: detail.icmpErrors + detail.gsoExtra + detail.fragExtra + detail.arpRequests,
      transmitted: txPackets,
      dropped: deviceDrops + captureSkipped,
      consumed: f.arpStats[ARP_IN_CONSUMED] as number,
      merged: groMerged + reassemblyMerged,
      held: arpQueue + groHeld + batchHeld + ringHeld,
    },
    detail,
    problems,
  );
}

/** The accounting as one line, and a line per problem (cold). */
export function formatForwardAccounting(a: ForwardAccounting): string {
  const lines = [
    `accounting  ${a.ok ? "ok" : "FAILED"}: received ${a.received} + generated ${a.generated} = transmitted ${a.transmitted} + dropped ${a.dropped}` +
      ` + consumed ${a.consumed} + merged ${a.merged} + held ${a.held}`,
  ];
  for (const p of a.problems) lines.push(`  problem: ${p}`);
  return lines.join("\n");
}
