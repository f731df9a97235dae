/**
 * The skb layer: layouts, the skb API and the per-CPU NAPI head cache.
 * @module
 */
export * from "./access.js";
export * from "./alloc.js";
export * from "./clone.js";
export * from "./cpu.js";
export * from "./data.js";
export * from "./defer.js";
export * from "./drop-reason.js";
export * from "./free.js";
export * from "./layout.js";
export * from "./memory.js";
export * from "./napi-cache.js";
export * from "./profile.js";
export * from "./view.js";
