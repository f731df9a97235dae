/**
 * A three-state futex-style mutex on one `Int32Array` word of the arena.
 *
 * Shared by every worker that maps the arena. States: 0 unlocked, 1 locked,
 * 2 locked with waiters. The uncontended path is one compare-exchange to lock
 * and one exchange to unlock; a contended locker sleeps in `Atomics.wait` and
 * the unlocker wakes one sleeper (Drepper, "Futexes Are Tricky", mutex #2).
 *
 * Memory ordering: `Atomics` operations are sequentially consistent, so every
 * plain read or write made while holding the lock happens-before the next
 * holder's reads (the unlock exchange is a release, the lock CAS an acquire).
 * That is what lets slab free stacks and counters be plain typed-array
 * accesses inside the critical section.
 *
 * @module
 */

/** Acquire the lock at `i32[idx]`. Allocates nothing. */
export function spinLock(i32: Int32Array, idx: number): void {
  if (Atomics.compareExchange(i32, idx, 0, 1) === 0) return;
  spinLockSlow(i32, idx);
}

function spinLockSlow(i32: Int32Array, idx: number): void {
  // Spin a little first: critical sections here are tens of nanoseconds.
  for (let i = 0; i < 64; i++) {
    if (Atomics.load(i32, idx) === 0 && Atomics.compareExchange(i32, idx, 0, 1) === 0) return;
  }
  let c = Atomics.exchange(i32, idx, 2);
  while (c !== 0) {
    Atomics.wait(i32, idx, 2, 1);
    c = Atomics.exchange(i32, idx, 2);
  }
}

/** Release the lock at `i32[idx]`, waking one waiter if any. Allocates nothing. */
export function spinUnlock(i32: Int32Array, idx: number): void {
  if (Atomics.exchange(i32, idx, 0) === 2) Atomics.notify(i32, idx, 1);
}
