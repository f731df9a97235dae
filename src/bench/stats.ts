/**
 * The few statistics the benchmarks report: medians, and A/B ratios paired
 * per round (each round runs A and B back to back, so a change of machine
 * speed mid-run hits both sides of a pair).
 *
 * @module
 */

/** Median of `a` (mean of the two middle values for an even count); NaN when empty. Allocates a sorted copy. */
export function median(a: readonly number[]): number {
  if (a.length === 0) return Number.NaN;
  const s = [...a].sort((x, y) => x - y);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

/** `num[i] / den[i]` for each round: median, min and max. Arrays must have the same length. */
export function pairedRatios(num: readonly number[], den: readonly number[]): { median: number; min: number; max: number } {
  if (num.length !== den.length) throw new RangeError(`pairedRatios: ${num.length} numerators for ${den.length} denominators`);
  const r = num.map((x, i) => x / (den[i] as number));
  return { median: median(r), min: Math.min(...r), max: Math.max(...r) };
}
