/**
 * RSS (receive-side scaling): the Toeplitz hash over an IPv4 5-tuple and an
 * indirection table that maps hashes to RX queues — one queue per worker
 * ("CPU"), as a NIC spreads flows over its queues.
 *
 * ```
 *  input (big-endian, 12 bytes): saddr | daddr | sport | dport
 *  key (40 bytes)              : a sliding 32-bit window over the key
 *  hash = XOR of the windows at every set input bit
 *  queue = table[hash & (size - 1)]
 * ```
 *
 * The default key is the symmetric one (0x6d5a repeated): swapping source
 * and destination gives the same hash, so both directions of an un-NATed
 * flow land on the same queue. Masquerade changes the addresses, so the NAT
 * layer asks {@link rssQueueOf} when it chooses a port (see nat.ts's port
 * filter) to keep replies on the flow's worker.
 *
 * Computing a hash allocates nothing; the window table is built once.
 *
 * @module
 */

/** The symmetric Toeplitz key: 0x6d5a repeated (Woo and Park). */
export const RSS_KEY_SYMMETRIC: readonly number[] = Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? 0x6d : 0x5a));

/** Microsoft's verification key (the NDIS test vectors use it). */
export const RSS_KEY_MSFT: readonly number[] = [
  0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb,
  0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];

/** Default indirection table size (ETH_RSS_HASH... NICs commonly use 128). */
export const RSS_TABLE_SIZE = 128;

/** A Toeplitz hasher with its indirection table. */
export class Rss {
  /** For input byte position p (0..11) and byte value v: the XOR of the windows of its set bits. */
  readonly lut: Int32Array;
  /** Hash → queue. */
  readonly table: Uint8Array;
  readonly queues: number;

  /** Build from a 40-byte key and the queue count (table filled round-robin, like ethtool's default). */
  constructor(key: readonly number[], queues: number, tableSize = RSS_TABLE_SIZE) {
    if (key.length < 16) throw new RangeError(`rss: key of ${key.length} bytes is too short (need >= 16 for IPv4 4-tuples)`);
    if (!Number.isInteger(queues) || queues < 1 || queues > 255) throw new RangeError(`rss: queues ${queues} must be 1..255`);
    if (tableSize < 1 || (tableSize & (tableSize - 1)) !== 0) throw new RangeError(`rss: table size ${tableSize} must be a power of two`);
    this.queues = queues;
    this.table = new Uint8Array(tableSize);
    for (let i = 0; i < tableSize; i++) this.table[i] = i % queues;
    // window(i) = the 32 key bits starting at bit i.
    const bit = (i: number) => ((key[i >>> 3] as number) >>> (7 - (i & 7))) & 1;
    const window = (i: number) => {
      let w = 0;
      for (let b = 0; b < 32; b++) w = (w << 1) | bit(i + b);
      return w | 0;
    };
    this.lut = new Int32Array(12 * 256);
    for (let p = 0; p < 12; p++) {
      for (let v = 0; v < 256; v++) {
        let h = 0;
        for (let b = 0; b < 8; b++) if ((v >>> (7 - b)) & 1) h ^= window(p * 8 + b);
        this.lut[p * 256 + v] = h;
      }
    }
  }
}

/** Create an RSS context (symmetric key by default). */
export function rssCreate(queues: number, key: readonly number[] = RSS_KEY_SYMMETRIC): Rss {
  return new Rss(key, queues);
}

/**
 * Toeplitz hash of an IPv4 4-tuple (addresses as int32 or u32, ports 0..65535),
 * as a signed int32. Allocates nothing.
 */
export function rssHash(r: Rss, saddr: number, daddr: number, sport: number, dport: number): number {
  const t = r.lut;
  return (
    (t[(saddr >>> 24) & 255] as number) ^
    (t[256 + ((saddr >>> 16) & 255)] as number) ^
    (t[512 + ((saddr >>> 8) & 255)] as number) ^
    (t[768 + (saddr & 255)] as number) ^
    (t[1024 + ((daddr >>> 24) & 255)] as number) ^
    (t[1280 + ((daddr >>> 16) & 255)] as number) ^
    (t[1536 + ((daddr >>> 8) & 255)] as number) ^
    (t[1792 + (daddr & 255)] as number) ^
    (t[2048 + ((sport >>> 8) & 255)] as number) ^
    (t[2304 + (sport & 255)] as number) ^
    (t[2560 + ((dport >>> 8) & 255)] as number) ^
    (t[2816 + (dport & 255)] as number)
  );
}

/** The RX queue (worker) of a 4-tuple. */
export function rssQueueOf(r: Rss, saddr: number, daddr: number, sport: number, dport: number): number {
  return r.table[rssHash(r, saddr, daddr, sport, dport) & (r.table.length - 1)] as number;
}
