/**
 * Drop reasons (`enum skb_drop_reason`): every freed-but-not-consumed packet
 * is counted under one of these, per CPU. Names are the kernel's without the
 * `SKB_DROP_REASON_` prefix.
 *
 * @module
 */

/** Reason names, index = reason code. */
export const DROP_REASON_NAMES = [
  "NOT_DROPPED_YET",
  "CONSUMED",
  "NOT_SPECIFIED",
  "NO_SOCKET",
  "PKT_TOO_SMALL",
  "PKT_TOO_BIG",
  "TCP_CSUM",
  "UDP_CSUM",
  "IP_CSUM",
  "IP_INHDR",
  "IP_RPFILTER",
  "IP_INADDRERRORS",
  "IP_NOPROTO",
  "IP_TTL_EXPIRED",
  "IP_FRAG_TIMEOUT",
  "IP_FRAG_TOO_FAR",
  "OTHERHOST",
  "NETFILTER_DROP",
  "NF_CONNTRACK_FULL",
  "NAT_NO_PORT",
  "NO_ROUTE",
  "UNHANDLED_PROTO",
  "VLAN_FILTER",
  "MAC_INVALID",
  "DEV_READY",
  "FULL_RING",
  "NOMEM",
  "CPU_BACKLOG",
  "QDISC_DROP",
  "MTU_EXCEEDED",
  "GRO_FLUSH",
  "NEIGH_FAILED",
  "TUN_ERROR",
  "PCAP_MALFORMED",
  "HDR_TRUNC",
  "IP_INVALID_SOURCE",
  "IP_FRAG_MEMORY",
  "CT_INVALID",
  "CT_UNSOLICITED",
  "TCP_FLAGS",
  "ICMP_INVALID",
  "VLAN_UNKNOWN",
  "L2_MALFORMED",
  "TX_ERROR",
  // Neighbour output (net/core/neighbour.c): no entry could be created, the
  // INCOMPLETE entry's queue overflowed (the oldest packet goes), the entry
  // was removed with packets still queued.
  "NEIGH_CREATEFAIL",
  "NEIGH_QUEUEFULL",
  "NEIGH_DEAD",
] as const;

/** A drop-reason name. */
export type DropReasonName = (typeof DROP_REASON_NAMES)[number];

/** Drop-reason codes by name. */
export const SKB_DROP_REASON: Readonly<Record<DropReasonName, number>> = Object.freeze(
  Object.fromEntries(DROP_REASON_NAMES.map((n, i) => [n, i])) as Record<DropReasonName, number>,
);

/** Number of reasons (size of per-CPU counter arrays). */
export const SKB_DROP_REASON_MAX = DROP_REASON_NAMES.length;
