/**
 * Memory management: arena, slab caches, kmalloc, pages, page frags and
 * page pools.
 * @module
 */
export * from "./arena.js";
export * from "./kmalloc.js";
export * from "./mm.js";
export * from "./page-alloc.js";
export * from "./page-frag.js";
export * from "./page-pool.js";
export * from "./slab.js";
export * from "./spinlock.js";
