/**
 * Protocols: checksums, Ethernet, 802.1Q, ARP, IPv4, routing, ICMP, UDP, TCP, fragments, conntrack and NAT.
 * @module
 */
export * from "./arp.js";
export * from "./checksum.js";
export * from "./conntrack.js";
export * from "./ethernet.js";
export * from "./icmp.js";
export * from "./ip-frag.js";
export * from "./ipv4.js";
export * from "./nat.js";
export * from "./proto.js";
export * from "./route.js";
export * from "./tcp.js";
export * from "./udp.js";
export * from "./vlan.js";
