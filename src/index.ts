/**
 * skbuff: Linux-grade packet buffers for TypeScript on Node.js.
 *
 * @example
 * ```ts
 * import { createSkbMemory, createSkbCpu, napiAllocSkb, skbPut, napiConsumeSkb } from "skbuff";
 * const mem = createSkbMemory({ arenaSize: 64 << 20 });
 * const cpu = createSkbCpu(mem, 0, { profile: "5.12" });
 * const napi = { dev: 1, napiId: 1, skb: 0 };
 * const skb = napiAllocSkb(cpu, napi, 1500);
 * const at = skbPut(cpu, skb, 64);          // arena offset to write 64 bytes at
 * cpu.u8.fill(0xab, at, at + 64);
 * napiConsumeSkb(cpu, skb, 64);             // shell goes back to the NAPI cache
 * ```
 * @module
 */
export * from "./mm/index.js";
export * from "./skb/index.js";
