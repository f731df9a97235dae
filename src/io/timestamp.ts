/**
 * Capture timestamps. Records carry seconds and nanoseconds as two numbers;
 * files store either (seconds, fraction) (classic pcap, µs or ns) or one
 * 64-bit count of units (pcapng, unit = 10^-v or 2^-v s, `if_tsresol`).
 *
 * The conversions are exact without BigInt for every decimal resolution up
 * to 10^-9 and every binary one up to 2^-29 (long division in 16-bit
 * digits keeps every intermediate below 2^53); finer resolutions take a
 * BigInt path. Resolutions finer than 1 ns are truncated to ns.
 *
 * @module
 */

/** A timestamp resolution (`if_tsresol`): 10^-exp or 2^-exp seconds. */
export interface TsResolution {
  /** 10 or 2. */
  base: 10 | 2;
  exp: number;
}

export const TSRES_USEC: TsResolution = Object.freeze({ base: 10, exp: 6 });
export const TSRES_NSEC: TsResolution = Object.freeze({ base: 10, exp: 9 });

/** Decode the `if_tsresol` option byte. */
export function tsresolFromByte(b: number): TsResolution {
  return (b & 0x80) !== 0 ? { base: 2, exp: b & 0x7f } : { base: 10, exp: b & 0x7f };
}

/** Encode for `if_tsresol`. */
export function tsresolToByte(r: TsResolution): number {
  return r.base === 2 ? 0x80 | r.exp : r.exp;
}

/** "ns", "us", "ms", "s", "10^-12 s", "2^-20 s". */
export function tsresolName(r: TsResolution): string {
  if (r.base === 10) {
    const named: Record<number, string> = { 0: "s", 3: "ms", 6: "us", 9: "ns" };
    return named[r.exp] ?? `10^-${r.exp} s`;
  }
  return `2^-${r.exp} s`;
}

/** Units per second, when below 2^30 (else 0: use the BigInt path). */
export function unitsPerSecond(r: TsResolution): number {
  const v = r.base ** r.exp;
  return v < 2 ** 30 ? v : 0;
}

/** Where a conversion leaves its result (reused: no allocation). */
export interface TsOut {
  tsSec: number;
  tsNsec: number;
}

const P16 = 65536;
const P32 = 4294967296;

/**
 * 64-bit unit count (hi, lo: unsigned 32-bit halves) at resolution `r`
 * (with `perSec = unitsPerSecond(r)`) to seconds + nanoseconds in `out`.
 */
export function unitsToTs(hi: number, lo: number, r: TsResolution, perSec: number, out: TsOut): void {
  if (perSec === 0) {
    unitsToTsBig(hi, lo, r, out);
    return;
  }
  // Long division of the four 16-bit digits by perSec (< 2^30): every step < 2^46.
  let rem = 0;
  let q = 0;
  const digits0 = hi >>> 16;
  const digits1 = hi & 0xffff;
  const digits2 = lo >>> 16;
  const digits3 = lo & 0xffff;
  for (let i = 0; i < 4; i++) {
    const d = i === 0 ? digits0 : i === 1 ? digits1 : i === 2 ? digits2 : digits3;
    const cur = rem * P16 + d;
    const qd = Math.floor(cur / perSec);
    rem = cur - qd * perSec;
    q = q * P16 + qd;
  }
  out.tsSec = q;
  if (r.base === 10) {
    out.tsNsec = r.exp <= 9 ? rem * 10 ** (9 - r.exp) : Math.floor(rem / 10 ** (r.exp - 9));
  } else if (r.exp >= 9) {
    // rem * 1e9 / 2^exp = rem * 1953125 / 2^(exp-9); rem < 2^29 keeps it below 2^50.
    out.tsNsec = Math.floor((rem * 1953125) / 2 ** (r.exp - 9));
  } else {
    out.tsNsec = Math.floor((rem * 1e9) / 2 ** r.exp);
  }
}

function unitsToTsBig(hi: number, lo: number, r: TsResolution, out: TsOut): void {
  const units = (BigInt(hi) << 32n) | BigInt(lo);
  const per = BigInt(r.base) ** BigInt(r.exp);
  const sec = units / per;
  const rem = units - sec * per;
  out.tsSec = Number(sec);
  out.tsNsec = Number((rem * 1_000_000_000n) / per);
}

/** Where {@link tsToUnits} leaves the two 32-bit halves. */
export interface UnitsOut {
  hi: number;
  lo: number;
}

/**
 * Seconds + nanoseconds to a 64-bit unit count at `perSec` units per
 * second (a power of ten ≤ 10^9), truncating below the resolution. Exact:
 * products are split so that nothing reaches 2^53. `tsSec` must be below 2^32.
 */
export function tsToUnits(tsSec: number, tsNsec: number, perSec: number, out: UnitsOut): void {
  const frac = Math.floor(tsNsec / (1e9 / perSec));
  const sHi = Math.floor(tsSec / P16);
  const sLo = tsSec - sHi * P16;
  const a = sHi * perSec; // < 2^16 * 2^30
  const b = sLo * perSec + frac; // < 2^47
  const aHi = Math.floor(a / P16);
  const aLo = a - aHi * P16;
  const low = aLo * P16 + b; // < 2^48
  const carry = Math.floor(low / P32);
  out.hi = aHi + carry;
  out.lo = low - carry * P32;
}

/** ISO 8601 with nanoseconds, UTC: 2024-01-02T03:04:05.123456789Z (cold). */
export function tsIso(tsSec: number, tsNsec: number): string {
  const d = new Date(tsSec * 1000);
  if (Number.isNaN(d.getTime())) return `${tsSec}.${String(tsNsec).padStart(9, "0")}`;
  return `${d.toISOString().slice(0, 19)}.${String(tsNsec).padStart(9, "0")}Z`;
}
