/**
 * pcap and pcapng files: readers, writers, replay through the router.
 * @module
 */
export * from "./capture.js";
export * from "./pcap-classic.js";
export * from "./pcap.js";
export * from "./pcapng.js";
export * from "./replay.js";
export * from "./stream.js";
export * from "./timestamp.js";
