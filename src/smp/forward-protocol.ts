/**
 * Messages between `skb forward --workers N`'s controller (main thread) and
 * its worker CPUs. Plain structured-cloneable objects; cold path only.
 *
 * @module
 */

import type { ForwardConfig, ForwardReport, ForwardStats } from "../router/forward.js";
import type { SkbMemoryDescription } from "../skb/memory.js";

/** What a forward worker is started with (`workerData`). */
export interface ForwardWorkerConfig {
  mem: SkbMemoryDescription;
  config: ForwardConfig;
  id: number;
  workers: number;
  conntrackName: string;
  natPorts: [number, number];
  natIcmpIds: [number, number];
  /** Arena region of the doorbells (one int32 per CPU, 64 bytes apart). */
  bellRegion: string;
}

/** Hand-over counters of one CPU. */
export const FWD_HANDOFF_STAT_NAMES = ["handedOut", "handedIn", "ringFullDrops", "arpCopies", "arpCopyFailures"] as const;

/** Name of the ring from CPU `from` to CPU `to`. */
export function fwdRingName(from: number, to: number): string {
  return `fwd_ring_${from}_${to}`;
}

/** Controller → worker. */
export type ForwardWorkerMessage = { cmd: "stats" } | { cmd: "quiesce" } | { cmd: "stop" };

/** Worker → controller. */
export type ForwardWorkerReply =
  | { type: "ready"; id: number; devices: string[] }
  | { type: "stats"; id: number; stats: ForwardStats; handoff: Record<string, number> }
  | { type: "quiet"; id: number }
  | { type: "report"; id: number; report: ForwardReport; handoff: Record<string, number>; leftover: number }
  | { type: "error"; id: number; message: string };
