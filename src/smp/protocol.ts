/**
 * Messages between the multi-core controller (main thread) and its worker
 * CPUs. Plain structured-cloneable objects; cold path only.
 *
 * @module
 */

import type { SkbMemoryDescription } from "../skb/memory.js";
import type { TrafficOptions } from "../drivers/traffic.js";

/** What a worker is started with (`workerData`). */
export interface WorkerConfig {
  mem: SkbMemoryDescription;
  id: number;
  workers: number;
  traffic: TrafficOptions;
  profile: string;
  fullValidation: boolean;
  conntrackName: string;
  conntrackMax: number;
  natPorts: [number, number];
  flows: number[];
}

/** Controller → worker. */
export type WorkerMessage = { cmd: "run"; seconds: number; cacheOn: boolean; chunk: number } | { cmd: "stop" };

/** Worker → controller. */
export type WorkerReply =
  | { type: "ready"; id: number; flows: number }
  | { type: "result"; id: number; packets: number; bytes: number; ns: number; gcCount: number }
  | { type: "stopped"; id: number; accountingOk: boolean; problems: string[]; conntrackEntries: number }
  | { type: "error"; id: number; message: string };
