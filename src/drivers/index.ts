/**
 * Drivers: veth, pktgen and sink hosts, cpumap, UDP/VXLAN tunnels, TAP.
 * @module
 */
export * from "./cpumap.js";
export * from "./frames.js";
export * from "./host-common.js";
export * from "./pcap-dev.js";
export * from "./pktgen.js";
export * from "./sink.js";
export * from "./tap.js";
export * from "./traffic.js";
export * from "./udp-tunnel.js";
export * from "./veth.js";
export * from "./virtio-net-hdr.js";
export {
  type TapAddon,
  type TapConstants,
  type TapIoHandle,
  type TapOpenResult,
  type TapPollHandle,
  tapAddon,
  tapAddonStatus,
} from "../native/tap-addon.js";
