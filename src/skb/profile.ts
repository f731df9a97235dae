/**
 * Kernel behaviour profiles for the NAPI head cache and the allocation
 * paths around it (spec §1.7). `5.12` is the seed's series as merged (with
 * the 5.14 fclone fix applied: fclones never enter the cache); `6.19` is
 * mainline 6.19.
 *
 * @module
 */

import { KERNEL_PAGE_SIZE, SKB_SMALL_HEAD_CACHE_SIZE, skbWithOverhead } from "./layout.js";

/** Profile names. */
export type ProfileName = "5.12" | "6.19";

/** Everything that differs between kernel versions, as plain numbers and flags. */
export interface NapiProfile {
  readonly name: ProfileName;
  /** NAPI_SKB_CACHE_SIZE. */
  readonly cacheSize: number;
  /** NAPI_SKB_CACHE_BULK: heads requested by one refill of an empty stack. */
  readonly bulk: number;
  /** Heads bulk-freed when the stack becomes full (HALF in 5.12, FREE in 6.19). */
  readonly flush: number;
  /** 6.19: non-NAPI `__alloc_skb` pops cached heads (consume-only, no refill). */
  readonly allocConsumeOnly: boolean;
  /** 6.19: `napi_consume_skb` defers skbs allocated on another CPU to that CPU. */
  readonly alienDefer: boolean;
  /** 6.3+: small kmalloc heads come from skb_small_head_cache. */
  readonly smallHeadCache: boolean;
  /** Lengths up to this use the kmalloc path of {napi,netdev}_alloc_skb. */
  readonly smallAllocMax: number;
  /** Lengths above this use the kmalloc path too (SKB_WITH_OVERHEAD(PAGE_SIZE)). */
  readonly largeAllocMin: number;
  /** 5.12–5.19: `__alloc_skb` pre-sets the fclone companion to SKB_FCLONE_CLONE. */
  readonly presetFcloneCompanion: boolean;
  /** 5.15+: stolen-head and reuse paths only do dst/ct/ext work when slow_gro is set. */
  readonly slowGro: boolean;
  /** 6.19: skb_release_head_state clears destructor and sk (idempotent). */
  readonly idempotentHeadState: boolean;
  /** skb_defer_max (deferral arrived in 5.19; the 5.12 profile keeps the 6.x default). */
  readonly skbDeferMax: number;
  /** 6.3+: kfree_skb_list frees heads 16 at a time with one bulk call. */
  readonly bulkListFree: boolean;
  /** `napi_reuse_skb` resets truesize to SKB_TRUESIZE(end) (5.12; gone by 6.19). */
  readonly reuseResetsTruesize: boolean;
  /** `napi_reuse_skb` clears gso_size, ip_summed (CHECKSUM_NONE) and the hardware timestamp (6.19). */
  readonly reuseClearsCsum: boolean;
}

/** The seed's behaviour: 64 / 16 / 32. */
export const PROFILE_5_12: NapiProfile = Object.freeze({
  name: "5.12",
  cacheSize: 64,
  bulk: 16,
  flush: 32,
  allocConsumeOnly: false,
  alienDefer: false,
  smallHeadCache: false,
  smallAllocMax: skbWithOverhead(1024),
  largeAllocMin: skbWithOverhead(KERNEL_PAGE_SIZE),
  presetFcloneCompanion: true,
  slowGro: false,
  idempotentHeadState: false,
  skbDeferMax: 64,
  bulkListFree: false,
  reuseResetsTruesize: true,
  reuseClearsCsum: false,
});

/** Mainline 6.19: 128 / 32 / free 32 keeping 96. */
export const PROFILE_6_19: NapiProfile = Object.freeze({
  name: "6.19",
  cacheSize: 128,
  bulk: 32,
  flush: 32,
  allocConsumeOnly: true,
  alienDefer: true,
  smallHeadCache: true,
  smallAllocMax: skbWithOverhead(SKB_SMALL_HEAD_CACHE_SIZE),
  largeAllocMin: skbWithOverhead(KERNEL_PAGE_SIZE),
  presetFcloneCompanion: false,
  slowGro: true,
  idempotentHeadState: true,
  skbDeferMax: 128,
  bulkListFree: true,
  reuseResetsTruesize: false,
  reuseClearsCsum: true,
});

/** Size overrides accepted on top of a profile. */
export interface ProfileOverrides {
  readonly cacheSize?: number;
  readonly bulk?: number;
  readonly flush?: number;
  readonly skbDeferMax?: number;
}

/**
 * Resolve a profile by name with optional size overrides. Throws a clear
 * error for unknown names or inconsistent sizes.
 */
export function napiProfile(name: string = "5.12", o: ProfileOverrides = {}): NapiProfile {
  let base: NapiProfile;
  if (name === "5.12") base = PROFILE_5_12;
  else if (name === "6.19") base = PROFILE_6_19;
  else throw new RangeError(`napiProfile: unknown profile '${name}' (use 5.12 or 6.19)`);
  const p = { ...base, ...stripUndefined(o) };
  const check = (what: string, v: number, min: number, max: number) => {
    if (!Number.isInteger(v) || v < min || v > max) {
      throw new RangeError(`napiProfile(${name}): ${what} ${v} must be an integer in ${min}..${max}`);
    }
  };
  check("cacheSize", p.cacheSize, 2, 65536);
  check("bulk", p.bulk, 1, p.cacheSize);
  check("flush", p.flush, 1, p.cacheSize);
  check("skbDeferMax", p.skbDeferMax, 1, 1 << 20);
  return Object.freeze(p);
}

function stripUndefined(o: ProfileOverrides): ProfileOverrides {
  const r: Record<string, number> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) r[k] = v;
  return r;
}
