/**
 * Wire constants shared by every protocol module: EtherTypes, IP protocol
 * numbers, header sizes and field offsets (bytes from the start of each
 * header). Values are the kernel's (include/uapi/linux/if_ether.h, in.h,
 * ip.h, tcp.h, udp.h, icmp.h).
 *
 * @module
 */

// ---- Ethernet / 802.1Q -------------------------------------------------------
export const ETH_ALEN = 6;
export const ETH_HLEN = 14;
export const ETH_ZLEN = 60;
export const ETH_DATA_LEN = 1500;
export const ETH_FRAME_LEN = 1514;
export const VLAN_HLEN = 4;
export const VLAN_ETH_HLEN = 18;
export const VLAN_VID_MASK = 0x0fff;
export const VLAN_PRIO_SHIFT = 13;
export const VLAN_CFI_MASK = 0x1000;
export const ETH_P_IP = 0x0800;
export const ETH_P_ARP = 0x0806;
export const ETH_P_8021Q = 0x8100;
export const ETH_P_8021AD = 0x88a8;
export const ETH_P_IPV6 = 0x86dd;
/** ethhdr field offsets. */
export const ETH_DEST = 0;
export const ETH_SOURCE = 6;
export const ETH_PROTO = 12;

// ---- IPv4 ----------------------------------------------------------------------
export const IPPROTO_ICMP = 1;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
/** iphdr field offsets. */
export const IPH_VER_IHL = 0;
export const IPH_TOS = 1;
export const IPH_TOT_LEN = 2;
export const IPH_ID = 4;
export const IPH_FRAG_OFF = 6;
export const IPH_TTL = 8;
export const IPH_PROTOCOL = 9;
export const IPH_CHECK = 10;
export const IPH_SADDR = 12;
export const IPH_DADDR = 16;
export const IPH_MIN_LEN = 20;
export const IP_CE = 0x8000;
export const IP_DF = 0x4000;
export const IP_MF = 0x2000;
export const IP_OFFSET = 0x1fff;
export const IPDEFTTL = 64;

// ---- UDP -----------------------------------------------------------------------------
export const UDPH_SOURCE = 0;
export const UDPH_DEST = 2;
export const UDPH_LEN = 4;
export const UDPH_CHECK = 6;
export const UDPH_LEN_BYTES = 8;
/** A computed UDP checksum of 0 is sent as 0xffff (RFC 768; CSUM_MANGLED_0). */
export const CSUM_MANGLED_0 = 0xffff;

// ---- TCP -------------------------------------------------------------------------------
export const TCPH_SOURCE = 0;
export const TCPH_DEST = 2;
export const TCPH_SEQ = 4;
export const TCPH_ACK_SEQ = 8;
/** Byte 12: data offset (high nibble); byte 13: flags. */
export const TCPH_DOFF = 12;
export const TCPH_FLAGS = 13;
export const TCPH_WINDOW = 14;
export const TCPH_CHECK = 16;
export const TCPH_URG_PTR = 18;
export const TCPH_MIN_LEN = 20;
export const TCP_FLAG_FIN = 0x01;
export const TCP_FLAG_SYN = 0x02;
export const TCP_FLAG_RST = 0x04;
export const TCP_FLAG_PSH = 0x08;
export const TCP_FLAG_ACK = 0x10;
export const TCP_FLAG_URG = 0x20;
export const TCP_FLAG_ECE = 0x40;
export const TCP_FLAG_CWR = 0x80;

// ---- ICMP ----------------------------------------------------------------------------------
export const ICMPH_TYPE = 0;
export const ICMPH_CODE = 1;
export const ICMPH_CHECKSUM = 2;
export const ICMPH_ID = 4;
export const ICMPH_SEQ = 6;
export const ICMPH_LEN = 8;
export const ICMP_ECHOREPLY = 0;
export const ICMP_DEST_UNREACH = 3;
export const ICMP_ECHO = 8;
export const ICMP_TIME_EXCEEDED = 11;
export const ICMP_PARAMETERPROB = 12;
export const ICMP_EXC_TTL = 0;
export const ICMP_EXC_FRAGTIME = 1;
export const ICMP_NET_UNREACH = 0;
export const ICMP_HOST_UNREACH = 1;
export const ICMP_PORT_UNREACH = 3;
export const ICMP_FRAG_NEEDED = 4;

/** IPv4 address a.b.c.d as a host-order u32 (cold helper). */
export function ipv4(a: string): number {
  const p = a.split(".");
  if (p.length !== 4 || p.some((x) => !/^\d{1,3}$/.test(x) || Number(x) > 255)) {
    throw new RangeError(`'${a}' is not an IPv4 address`);
  }
  return ((Number(p[0]) << 24) | (Number(p[1]) << 16) | (Number(p[2]) << 8) | Number(p[3])) >>> 0;
}

/** Host-order u32 to dotted quad (cold helper). */
export function ipv4ToString(a: number): string {
  return `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`;
}
