/**
 * Devices, NAPI, GRO/GSO, RSS, rings and the event-loop driver.
 * @module
 */
export * from "./gro.js";
export * from "./gro-frags.js";
export * from "./gso.js";
export * from "./loop.js";
export * from "./napi.js";
export * from "./netdev.js";
export * from "./ring.js";
export * from "./rss.js";
