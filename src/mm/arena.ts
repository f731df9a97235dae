/**
 * The arena: one SharedArrayBuffer that holds every byte of packet memory.
 *
 * A "pointer" is a byte offset into the arena. Offset 0 is NULL: the first
 * page (the arena header) is never handed out, like the kernel's zero page.
 *
 * ```
 *  0        4096                                                    size
 *  +--------+-----------+-----------+------- ... ------+-----------+
 *  | header | region A  | region B  |                  | (unused)  |
 *  +--------+-----------+-----------+------- ... ------+-----------+
 *  header: magic, size, region count (cold, read by `arenaDescribe`)
 * ```
 *
 * Regions are carved once, at creation; a region that does not fit is a
 * `RangeError` then, never a failure at packet time. Every worker that maps
 * the arena builds its own typed-array views over the same bytes
 * (`arenaAttach`). The page-owner map records, per 4 KiB arena page, which
 * slab cache owns it (the kernel's `virt_to_slab`), so `kfree` and
 * `virtToHeadPage` can find an object's cache from its address alone.
 *
 * @module
 */

/** Arena pages are 4 KiB, the kernel's PAGE_SIZE on x86-64 and arm64. */
export const PAGE_SHIFT = 12;
/** Size of one arena page in bytes. */
export const PAGE_SIZE = 1 << PAGE_SHIFT;
/** Largest arena: offsets must stay V8 small integers (no heap numbers on the hot path). */
export const ARENA_MAX_SIZE = 1 << 30;
/** Smallest arena that can hold the header and one region. */
export const ARENA_MIN_SIZE = 2 * PAGE_SIZE;

const ARENA_MAGIC = 0x736b6275; // "skbu"

/** A named, aligned range of the arena. */
export interface Region {
  /** Unique name, e.g. `slab:skbuff_head_cache`. */
  readonly name: string;
  /** Byte offset of the first byte. */
  readonly offset: number;
  /** Length in bytes. */
  readonly size: number;
}

/** A plain description of an arena, cloneable to a worker (`workerData`). */
export interface ArenaDescription {
  readonly sab: SharedArrayBuffer;
  readonly regions: readonly Region[];
  /** Offset of the page-owner map (one byte per arena page). */
  readonly pageOwnerOffset: number;
}

/**
 * A mapped arena: the shared memory plus this thread's views over it.
 * Creating one allocates (views, the region map); do it once per worker.
 */
export class Arena {
  /** The shared backing store. */
  readonly sab: SharedArrayBuffer;
  /** Total size in bytes. */
  readonly size: number;
  /** Byte view. */
  readonly u8: Uint8Array;
  /** 16-bit view (index = offset >> 1). */
  readonly u16: Uint16Array;
  /** 32-bit unsigned view (index = offset >> 2). */
  readonly u32: Uint32Array;
  /** 32-bit signed view, for `Atomics` (index = offset >> 2). */
  readonly i32: Int32Array;
  /** 64-bit float view, for exact counters (index = offset >> 3). */
  readonly f64: Float64Array;
  /** Unaligned and big-endian access (wire formats). */
  readonly dv: DataView;
  /** One byte per arena page: id of the slab cache owning it (0 = none). */
  readonly pageOwner: Uint8Array;
  /** Offset of the page-owner map. */
  readonly pageOwnerOffset: number;
  /** Carved regions, in address order. */
  readonly regions: readonly Region[];
  private readonly byName: Map<string, Region>;

  /** Map an existing arena; use {@link arenaCreate} or {@link arenaAttach}. */
  constructor(desc: ArenaDescription) {
    this.sab = desc.sab;
    this.size = desc.sab.byteLength;
    this.u8 = new Uint8Array(desc.sab);
    this.u16 = new Uint16Array(desc.sab, 0, this.size >>> 1);
    this.u32 = new Uint32Array(desc.sab, 0, this.size >>> 2);
    this.i32 = new Int32Array(desc.sab, 0, this.size >>> 2);
    this.f64 = new Float64Array(desc.sab, 0, this.size >>> 3);
    this.dv = new DataView(desc.sab);
    this.pageOwnerOffset = desc.pageOwnerOffset;
    this.pageOwner = new Uint8Array(desc.sab, desc.pageOwnerOffset, this.size >>> PAGE_SHIFT);
    this.regions = desc.regions;
    this.byName = new Map(desc.regions.map((r) => [r.name, r]));
  }

  /** The region called `name`; throws naming the known regions if absent. */
  region(name: string): Region {
    const r = this.byName.get(name);
    if (r === undefined) {
      throw new Error(`arena: no region '${name}' (have: ${[...this.byName.keys()].join(", ")})`);
    }
    return r;
  }

  /** True when a region called `name` exists. */
  hasRegion(name: string): boolean {
    return this.byName.has(name);
  }

  /** What a worker needs to map this arena (structured-cloneable). */
  describe(): ArenaDescription {
    return { sab: this.sab, regions: this.regions, pageOwnerOffset: this.pageOwnerOffset };
  }
}

/** A region to carve: size in bytes and alignment (a power of two). */
export interface RegionSpec {
  readonly name: string;
  readonly size: number;
  /** Alignment in bytes, a power of two; default 64 (one cache line). */
  readonly align?: number;
}

/** Round `x` up to a multiple of `a` (a power of two). */
export function alignUp(x: number, a: number): number {
  return (x + a - 1) & ~(a - 1);
}

function fmtBytes(n: number): string {
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(n % (1 << 20) === 0 ? 0 : 1)} MiB`;
  if (n >= 1 << 10) return `${(n / (1 << 10)).toFixed(n % (1 << 10) === 0 ? 0 : 1)} KiB`;
  return `${n} B`;
}

/**
 * Create an arena of `size` bytes and carve `specs` into it, in order.
 * Throws a `RangeError` naming the region when one does not fit, or when the
 * size is out of range. Allocates the SharedArrayBuffer (zero-filled).
 */
export function arenaCreate(size: number, specs: readonly RegionSpec[]): Arena {
  if (!Number.isInteger(size) || size < ARENA_MIN_SIZE || size > ARENA_MAX_SIZE) {
    throw new RangeError(
      `arenaCreate: size ${size} out of range (${fmtBytes(ARENA_MIN_SIZE)} .. ${fmtBytes(ARENA_MAX_SIZE)}, whole bytes)`,
    );
  }
  if (size % PAGE_SIZE !== 0) {
    throw new RangeError(`arenaCreate: size ${size} is not a multiple of the ${PAGE_SIZE}-byte page`);
  }
  const regions: Region[] = [];
  const seen = new Set<string>();
  // The page-owner map comes first, right after the header page.
  const ownerSize = size >>> PAGE_SHIFT;
  const pageOwnerOffset = PAGE_SIZE;
  let cursor = alignUp(pageOwnerOffset + ownerSize, 64);
  for (const spec of specs) {
    const align = spec.align ?? 64;
    if (!Number.isInteger(align) || align < 1 || align > ARENA_MAX_SIZE || (align & (align - 1)) !== 0) {
      throw new RangeError(`arenaCreate: region '${spec.name}' alignment ${align} is not a power of two`);
    }
    if (!Number.isInteger(spec.size) || spec.size <= 0) {
      throw new RangeError(`arenaCreate: region '${spec.name}' has invalid size ${spec.size}`);
    }
    if (seen.has(spec.name)) throw new RangeError(`arenaCreate: region '${spec.name}' defined twice`);
    seen.add(spec.name);
    const offset = alignUp(cursor, align);
    if (offset + spec.size > size) {
      const left = Math.max(0, size - offset);
      throw new RangeError(
        `arenaCreate: region '${spec.name}' (${fmtBytes(spec.size)}) does not fit: ` +
          `${fmtBytes(left)} left of ${fmtBytes(size)} after ${regions.length} regions; ` +
          `raise the arena size (--arena-size) or shrink the caches`,
      );
    }
    regions.push({ name: spec.name, offset, size: spec.size });
    cursor = offset + spec.size;
  }
  const sab = new SharedArrayBuffer(size);
  const arena = new Arena({ sab, regions, pageOwnerOffset });
  arena.u32[0] = ARENA_MAGIC;
  arena.u32[1] = size;
  arena.u32[2] = regions.length;
  return arena;
}

/** Map an arena created elsewhere (another worker) from its description. */
export function arenaAttach(desc: ArenaDescription): Arena {
  const arena = new Arena(desc);
  if (arena.u32[0] !== ARENA_MAGIC) {
    throw new Error("arenaAttach: shared buffer is not an skbuff arena (bad magic)");
  }
  return arena;
}

/** Bytes carved so far by `specs` at `size` (for sizing helpers). */
export function arenaBytesNeeded(specs: readonly RegionSpec[], size: number): number {
  let cursor = alignUp(PAGE_SIZE + (size >>> PAGE_SHIFT), 64);
  for (const s of specs) cursor = alignUp(cursor, s.align ?? 64) + s.size;
  return cursor;
}

/** Format a byte count for humans (cold path). */
export { fmtBytes };
