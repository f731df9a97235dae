/**
 * Layouts of `struct sk_buff` and `struct skb_shared_info` in the arena, and
 * the size macros built on them. Field offsets are byte offsets from the
 * start of the struct; multi-byte fields are naturally aligned so they can be
 * read through `Uint16Array` / `Uint32Array` views.
 *
 * ```
 *  struct sk_buff (192-byte slab object, SLAB_HWCACHE_ALIGN)
 *   0 next       4 prev       8 dev        12 sk
 *  16 tstamp (f64)            24 cb[48] ...................... 71
 *  72 dst       76 destructor 80 nfct      84 len
 *  88 data_len  92 mac_len/hdr_len (u16 ×2)  96 queue_mapping (u16)
 *  98 flags (u8: cloned nohdr fclone:2 peeked head_frag pfmemalloc pp_recycle)
 *  99 active_extensions  100 alloc_cpu (u16)  102 -
 * 104 network_header 106 transport_header 108 vlan_tci 110 mac_header (u16 each)
 * 112 protocol 114 vlan_proto (u16)
 * 116 hash    120 mark      124 csum (csum_start u16 | csum_offset u16)
 * 128 napi_id 132 skb_iif   136 pkt_type 137 ip_summed 138 flags2
 * 139 csum_level            140 priority
 * ---------------------- zeroed by every builder up to here -------------
 * 144 tail (offset from head)  148 end (offset from head)
 * 152 head     156 data      160 truesize  164 users (i32, atomic)
 * 168 extensions             172..191 padding
 * ```
 *
 * ```
 *  struct skb_shared_info (320 bytes at head + end; the kernel's 64-bit size)
 *   0 flags  1 meta_len  2 nr_frags  3 tx_flags  4 gso_size (u16)  6 gso_segs (u16)
 *   8 frag_list   12 -   16 hwtstamps (8)   24 gso_type   28 tskey
 *  32 dataref (i32, atomic: low 16 bits whole-buffer refs, high 16 payload-only)
 *  36 -   40 destructor_arg   44 -
 *  48 frags[17] × 16: page (u32), page_offset (u32), size (u32), -
 * ```
 *
 * @module
 */

// ---- struct sk_buff ---------------------------------------------------------
export const SKB_NEXT = 0;
export const SKB_PREV = 4;
export const SKB_DEV = 8;
export const SKB_SK = 12;
export const SKB_TSTAMP = 16;
export const SKB_CB = 24;
/** Size of the control buffer (`cb[48]`). */
export const SKB_CB_SIZE = 48;
export const SKB_DST = 72;
export const SKB_DESTRUCTOR = 76;
export const SKB_NFCT = 80;
export const SKB_LEN = 84;
export const SKB_DATA_LEN = 88;
export const SKB_MAC_LEN = 92;
export const SKB_HDR_LEN = 94;
export const SKB_QUEUE_MAPPING = 96;
export const SKB_FLAGS = 98;
export const SKB_ACTIVE_EXTENSIONS = 99;
// Bytes 96..111 (two 8-byte words) hold exactly the fields every builder
// writes whole right after clearing the head (flags word, alloc_cpu, the
// three header offsets, vlan_tci), so the builders' clear skips them:
// skbZeroHeadForBuild.
export const SKB_ALLOC_CPU = 100;
export const SKB_NETWORK_HEADER = 104;
export const SKB_TRANSPORT_HEADER = 106;
export const SKB_VLAN_TCI = 108;
export const SKB_MAC_HEADER = 110;
export const SKB_PROTOCOL = 112;
export const SKB_VLAN_PROTO = 114;
export const SKB_HASH = 116;
export const SKB_MARK = 120;
export const SKB_CSUM = 124;
export const SKB_CSUM_START = 124;
export const SKB_CSUM_OFFSET = 126;
export const SKB_NAPI_ID = 128;
export const SKB_IIF = 132;
export const SKB_PKT_TYPE = 136;
export const SKB_IP_SUMMED = 137;
export const SKB_FLAGS2 = 138;
export const SKB_CSUM_LEVEL = 139;
export const SKB_PRIORITY = 140;
/**
 * Start of the header group skb_copy_header copies as one range (up to
 * SKB_TAIL): alloc_cpu, header offsets, vlan, protocol, hash, mark, csum,
 * napi_id, iif, pkt_type, ip_summed, flags2, csum_level, priority.
 */
export const SKB_HEADERS_START = 100;
/** First field not cleared by the builders (`offsetof(struct sk_buff, tail)`). */
export const SKB_TAIL = 144;
/** skbZeroHead clears exactly SKB_TAIL bytes as 8-byte words; keep them in step. */
export const SKB_ZERO_WORDS64 = SKB_TAIL / 8;
export const SKB_END = 148;
export const SKB_HEAD = 152;
export const SKB_DATA = 156;
export const SKB_TRUESIZE = 160;
export const SKB_USERS = 164;
export const SKB_EXTENSIONS = 168;
/** Bytes of struct sk_buff actually used. */
export const SKB_STRUCT_SIZE = 172;
/** Slab object size of skbuff_head_cache: SKB_DATA_ALIGN(sizeof(struct sk_buff)). */
export const SKB_HEAD_OBJ_SIZE = 192;

// flags byte (SKB_FLAGS)
export const SKBF_CLONED = 0x01;
export const SKBF_NOHDR = 0x02;
export const SKBF_FCLONE_MASK = 0x0c;
export const SKBF_FCLONE_SHIFT = 2;
export const SKBF_PEEKED = 0x10;
export const SKBF_HEAD_FRAG = 0x20;
export const SKBF_PFMEMALLOC = 0x40;
export const SKBF_PP_RECYCLE = 0x80;

// flags2 byte (SKB_FLAGS2)
export const SKBF2_SLOW_GRO = 0x01;
export const SKBF2_ENCAPSULATION = 0x02;
export const SKBF2_CSUM_VALID = 0x04;
export const SKBF2_L4_HASH = 0x08;
export const SKBF2_SW_HASH = 0x10;
export const SKBF2_OOO_OKAY = 0x20;

/** `skb->fclone` values. */
export const SKB_FCLONE_UNAVAILABLE = 0;
export const SKB_FCLONE_ORIG = 1;
export const SKB_FCLONE_CLONE = 2;

/** `skb->ip_summed` values. */
export const CHECKSUM_NONE = 0;
export const CHECKSUM_UNNECESSARY = 1;
export const CHECKSUM_COMPLETE = 2;
export const CHECKSUM_PARTIAL = 3;

/** `skb->pkt_type` values. */
export const PACKET_HOST = 0;
export const PACKET_BROADCAST = 1;
export const PACKET_MULTICAST = 2;
export const PACKET_OTHERHOST = 3;
export const PACKET_OUTGOING = 4;

/** Header offset meaning "not set" (`(typeof(skb->mac_header))~0U`). */
export const SKB_HEADER_UNSET = 0xffff;

// ---- struct sk_buff_fclones ---------------------------------------------------
/** Offset of the companion (`skb2`) inside an fclone object. */
export const FCLONE_SKB2 = SKB_HEAD_OBJ_SIZE;
/** Offset of `fclone_ref` (i32, atomic) inside an fclone object. */
export const FCLONE_REF = 2 * SKB_HEAD_OBJ_SIZE;
/** Slab object size of skbuff_fclone_cache. */
export const FCLONE_OBJ_SIZE = 448;

// ---- struct skb_shared_info -----------------------------------------------------
export const SHINFO_FLAGS = 0;
export const SHINFO_META_LEN = 1;
export const SHINFO_NR_FRAGS = 2;
export const SHINFO_TX_FLAGS = 3;
export const SHINFO_GSO_SIZE = 4;
export const SHINFO_GSO_SEGS = 6;
export const SHINFO_FRAG_LIST = 8;
export const SHINFO_HWTSTAMPS = 16;
export const SHINFO_GSO_TYPE = 24;
export const SHINFO_TSKEY = 28;
export const SHINFO_DATAREF = 32;
export const SHINFO_DESTRUCTOR_ARG = 40;
export const SHINFO_FRAGS = 48;
/** Size of one frag descriptor (`skb_frag_t`). */
export const FRAG_DESC_SIZE = 16;
export const FRAG_PAGE = 0;
export const FRAG_OFFSET = 4;
export const FRAG_SIZE = 8;
/** MAX_SKB_FRAGS with 4 KiB pages (and CONFIG_MAX_SKB_FRAGS default). */
export const MAX_SKB_FRAGS = 17;
/** sizeof(struct skb_shared_info), already a multiple of 64. */
export const SHINFO_SIZE = SHINFO_FRAGS + MAX_SKB_FRAGS * FRAG_DESC_SIZE;

export const SKB_DATAREF_SHIFT = 16;
export const SKB_DATAREF_MASK = 0xffff;

// ---- size macros ------------------------------------------------------------------
/** SMP_CACHE_BYTES: L1 line of x86-64 / arm64. */
export const SMP_CACHE_BYTES = 64;
/** Kernel PAGE_SIZE used by the size thresholds. */
export const KERNEL_PAGE_SIZE = 4096;
/** NET_SKB_PAD = max(32, L1_CACHE_BYTES) = 64. */
export const NET_SKB_PAD = 64;
/** NET_IP_ALIGN: 0 on x86 / arm64. */
export const NET_IP_ALIGN = 0;
/** MAX_HEADER = LL_MAX_HEADER (128) + 48 (tunnels), a common distribution config. */
export const MAX_HEADER = 176;
/** MAX_TCP_HEADER = L1_CACHE_ALIGN(128 + MAX_HEADER). */
export const MAX_TCP_HEADER = 320;
/** GRO_MAX_HEAD = MAX_HEADER + 128. */
export const GRO_MAX_HEAD = MAX_HEADER + 128;

/** Round up to SMP_CACHE_BYTES (`SKB_DATA_ALIGN`). */
export function skbDataAlign(x: number): number {
  return (x + SMP_CACHE_BYTES - 1) & ~(SMP_CACHE_BYTES - 1);
}
/** `SKB_WITH_OVERHEAD(x)`: usable bytes of an x-byte buffer once shared info is placed. */
export function skbWithOverhead(x: number): number {
  return x - SHINFO_SIZE;
}
/** `SKB_TRUESIZE(x)`. */
export function skbTruesize(x: number): number {
  return x + SKB_HEAD_OBJ_SIZE + SHINFO_SIZE;
}
/** `SKB_HEAD_ALIGN(x)` (6.3+): aligned data plus aligned shared info. */
export function skbHeadAlign(x: number): number {
  return skbDataAlign(x) + SHINFO_SIZE;
}
/**
 * SKB_SMALL_HEAD_SIZE (6.14+): SKB_HEAD_ALIGN(max(MAX_TCP_HEADER,
 * GRO_MAX_HEAD + NET_SKB_PAD + NET_IP_ALIGN)) = 704; not a power of two, so
 * it is also SKB_SMALL_HEAD_CACHE_SIZE.
 */
export const SKB_SMALL_HEAD_CACHE_SIZE = skbHeadAlign(
  Math.max(MAX_TCP_HEADER, GRO_MAX_HEAD + NET_SKB_PAD + NET_IP_ALIGN),
);

// ---- __alloc_skb flags --------------------------------------------------------------
export const SKB_ALLOC_FCLONE = 0x01;
export const SKB_ALLOC_RX = 0x02;
export const SKB_ALLOC_NAPI = 0x04;
/** "Any node" for allocSkb's node argument. */
export const NUMA_NO_NODE = -1;
