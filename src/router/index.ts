/**
 * The VLAN NAT router and its in-process test bed.
 * @module
 */
export * from "./router.js";
export * from "./scenario.js";
export * from "./forward.js";
export * from "./cache-ab.js";
