/**
 * Tests for the data-area operations (spec §5.3): reserve, put, push, pull,
 * trim, the non-linear variants (pskbMayPull, pskbPull, pskbTrim),
 * skbCopyBits, skbAddRxFrag and pskbExpandHead. Packet contents are compared
 * byte by byte against what was written; every test ends with a leak check.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { kmalloc } from "../../src/mm/kmalloc.js";
import { kfree, virtToCache } from "../../src/mm/mm.js";
import { allocPage, pageRefCount, putPage } from "../../src/mm/page-alloc.js";
import { kmemCacheInfo } from "../../src/mm/slab.js";
import {
  hex,
  SkbError,
  skbCloned,
  skbDataLen,
  skbDataPtr,
  skbDataref,
  skbEndOffset,
  skbFlag,
  skbFragList,
  skbFragOffset,
  skbFragPage,
  skbFragSize,
  skbGet,
  skbHeadlen,
  skbHeadPtr,
  skbHeadroom,
  skbLen,
  skbNrFrags,
  skbShinfo,
  skbTailPtr,
  skbTailroom,
  skbUsers,
} from "../../src/skb/access.js";
import { allocSkb, netdevAllocSkb } from "../../src/skb/alloc.js";
import { skbClone } from "../../src/skb/clone.js";
import type { SkbCpu } from "../../src/skb/cpu.js";
import {
  __skbPull,
  __skbPush,
  __skbPut,
  EINVAL,
  pskbExpandHead,
  pskbMayPull,
  pskbPull,
  pskbTrim,
  skbAddRxFrag,
  skbCopyBits,
  skbPull,
  skbPush,
  skbPut,
  skbPutData,
  skbReserve,
  skbTrim,
} from "../../src/skb/data.js";
import { SKB_DROP_REASON } from "../../src/skb/drop-reason.js";
import { kfreeSkb } from "../../src/skb/free.js";
import {
  SHINFO_FRAG_LIST,
  SHINFO_SIZE,
  SKB_DATA_LEN,
  SKB_HEAD_OBJ_SIZE,
  SKB_LEN,
  SKB_MAC_HEADER,
  SKB_NETWORK_HEADER,
  SKB_NEXT,
  SKB_SK,
  SKB_TAIL,
  SKB_TRANSPORT_HEADER,
  SKB_TRUESIZE,
  SKBF_CLONED,
  SKBF_HEAD_FRAG,
} from "../../src/skb/layout.js";
import { napiCacheSetEnabled } from "../../src/skb/napi-cache.js";
import {
  assertNoLeaks,
  byteSource,
  dataActive,
  hold,
  PROFILES,
  readPacket,
  refs,
  release,
  setup,
  u16,
  u32,
} from "../support/skb.js";

napiCacheSetEnabled(true);

/** Deterministic packet bytes for this file. */
const { randomBytes } = byteSource(12345);

/** The skb struct and its shared info, for "unchanged after a throw" checks. */
function snapshot(cpu: SkbCpu, skb: number): number[] {
  const sh = skbShinfo(cpu, skb);
  return [...cpu.u8.subarray(skb, skb + SKB_HEAD_OBJ_SIZE), ...cpu.u8.subarray(sh, sh + SHINFO_SIZE)];
}

interface Spec {
  /** allocSkb size (default headroom + linear). */
  alloc?: number;
  headroom?: number;
  linear: number;
  frags?: number[];
  fragList?: Spec[];
}
interface Pkt {
  skb: number;
  /** Expected packet bytes. */
  bytes: number[];
  /** Headroom bytes as written. */
  head: number[];
  /** Pages of this skb's frags (not of the frag_list members). */
  pages: number[];
}

/** Build an skb: `headroom` random bytes, `linear` bytes, one page per frag (at offset 100 + 8 i), then a frag_list. */
function build(cpu: SkbCpu, s: Spec): Pkt {
  const headroom = s.headroom ?? 0;
  const skb = allocSkb(cpu, s.alloc ?? headroom + s.linear);
  assert.notEqual(skb, 0);
  const head = randomBytes(headroom);
  cpu.u8.set(head, skbHeadPtr(cpu, skb));
  skbReserve(cpu, skb, headroom);
  const lin = randomBytes(s.linear);
  cpu.u8.set(lin, skbPut(cpu, skb, s.linear));
  const bytes = [...lin];
  const pages: number[] = [];
  (s.frags ?? []).forEach((size, i) => {
    const page = allocPage(cpu.mem.pages);
    assert.notEqual(page, 0);
    const off = 100 + 8 * i;
    const b = randomBytes(size);
    cpu.u8.set(b, page + off);
    skbAddRxFrag(cpu, skb, i, page, off, size, 4096);
    bytes.push(...b);
    pages.push(page);
  });
  if (s.fragList !== undefined) {
    const members = s.fragList.map((m) => build(cpu, m));
    attachFragList(
      cpu,
      skb,
      members.map((m) => m.skb),
    );
    for (const m of members) bytes.push(...m.bytes);
  }
  assert.deepEqual(readPacket(cpu, skb), bytes);
  return { skb, bytes, head, pages };
}

/** Chain `members` as the frag_list of `parent`, accounting len, data_len and truesize. */
function attachFragList(cpu: SkbCpu, parent: number, members: number[]): void {
  const sh = skbShinfo(cpu, parent);
  assert.equal(u32(cpu, sh + SHINFO_FRAG_LIST), 0);
  cpu.u32[(sh + SHINFO_FRAG_LIST) >>> 2] = members[0] as number;
  let total = 0;
  let ts = 0;
  members.forEach((m, i) => {
    cpu.u32[(m + SKB_NEXT) >>> 2] = members[i + 1] ?? 0;
    total += skbLen(cpu, m);
    ts += u32(cpu, m + SKB_TRUESIZE);
  });
  cpu.u32[(parent + SKB_LEN) >>> 2] = skbLen(cpu, parent) + total;
  cpu.u32[(parent + SKB_DATA_LEN) >>> 2] = skbDataLen(cpu, parent) + total;
  cpu.u32[(parent + SKB_TRUESIZE) >>> 2] = u32(cpu, parent + SKB_TRUESIZE) + ts;
}

function expectSkbError(fn: () => unknown, op: string, skb: number, parts: (string | RegExp)[]): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof SkbError, `expected SkbError, got ${String(e)}`);
    assert.equal(e.name, "SkbError");
    assert.equal(e.op, op);
    assert.equal(e.skb, skb);
    assert.ok(e.message.includes(hex(skb)), `message names the skb: ${e.message}`);
    for (const p of parts) {
      if (typeof p === "string") assert.ok(e.message.includes(p), `message has "${p}": ${e.message}`);
      else assert.match(e.message, p);
    }
    return true;
  });
}

for (const p of PROFILES) for (const dbg of [true, false]) {
  describe(`linear operations [${p}${dbg ? " slab-debug" : ""}]`, () => {
    test("skbReserve moves data and tail; headroom/tailroom follow", () => {
      const cpu = setup(p, dbg);
      const skb = allocSkb(cpu, 1000); // 2048-byte head: end 1728
      assert.equal(skbEndOffset(cpu, skb), 1728);
      const head = skbHeadPtr(cpu, skb);
      skbReserve(cpu, skb, 64);
      assert.equal(skbHeadroom(cpu, skb), 64);
      assert.equal(skbTailroom(cpu, skb), 1664);
      assert.equal(skbDataPtr(cpu, skb), head + 64);
      assert.equal(skbTailPtr(cpu, skb), head + 64);
      assert.equal(skbLen(cpu, skb), 0);
      const before = snapshot(cpu, skb);
      expectSkbError(() => skbReserve(cpu, skb, 1665), "skbReserve", skb, ["cannot reserve 1665 bytes", "tailroom 1664"]);
      expectSkbError(() => skbReserve(cpu, skb, -1), "skbReserve", skb, ["cannot reserve -1 bytes"]);
      assert.deepEqual(snapshot(cpu, skb), before);
      skbReserve(cpu, skb, 1664);
      assert.equal(skbTailroom(cpu, skb), 0);
      kfreeSkb(cpu, skb);
      assertNoLeaks(cpu);
    });

    test("skbPut returns the old tail and grows len; past the tail it throws naming skb, length and tailroom", () => {
      const cpu = setup(p, dbg);
      const skb = allocSkb(cpu, 1000);
      skbReserve(cpu, skb, 64);
      const head = skbHeadPtr(cpu, skb);
      assert.equal(skbPut(cpu, skb, 100), head + 64);
      assert.equal(skbLen(cpu, skb), 100);
      assert.equal(skbTailroom(cpu, skb), 1564);
      assert.equal(skbPut(cpu, skb, 0), head + 164);
      let before = snapshot(cpu, skb);
      expectSkbError(() => skbPut(cpu, skb, 1565), "skbPut", skb, [/^skbPut: 1565 bytes past tail \(tailroom 1564;/, "len:100"]);
      expectSkbError(() => skbPut(cpu, skb, -1), "skbPut", skb, ["-1 bytes past tail"]);
      assert.deepEqual(snapshot(cpu, skb), before);
      // Exactly the tailroom fits.
      assert.equal(skbPut(cpu, skb, 1564), head + 164);
      assert.equal(skbTailroom(cpu, skb), 0);
      assert.equal(skbLen(cpu, skb), 1664);
      before = snapshot(cpu, skb);
      expectSkbError(() => skbPut(cpu, skb, 1), "skbPut", skb, ["1 bytes past tail", "tailroom 0"]);
      assert.deepEqual(snapshot(cpu, skb), before);
      kfreeSkb(cpu, skb);
      assertNoLeaks(cpu);
    });

    test("__skbPut and __skbPush do not check", () => {
      const cpu = setup(p, dbg);
      const skb = allocSkb(cpu, 100);
      const head = skbHeadPtr(cpu, skb);
      skbReserve(cpu, skb, 8);
      assert.equal(__skbPut(cpu, skb, 10), head + 8);
      assert.equal(__skbPush(cpu, skb, 8), head);
      assert.equal(skbLen(cpu, skb), 18);
      assert.equal(skbHeadroom(cpu, skb), 0);
      kfreeSkb(cpu, skb);
      assertNoLeaks(cpu);
    });

    test("skbPutData copies the bytes to the old tail", () => {
      const cpu = setup(p, dbg);
      const skb = allocSkb(cpu, 300);
      skbReserve(cpu, skb, 16);
      const src = kmalloc(cpu.kmalloc, 256);
      const b = randomBytes(200);
      cpu.u8.set(b, src);
      assert.equal(skbPutData(cpu, skb, src, 200), skbHeadPtr(cpu, skb) + 16);
      assert.equal(skbLen(cpu, skb), 200);
      assert.deepEqual(readPacket(cpu, skb), b);
      const before = snapshot(cpu, skb);
      expectSkbError(() => skbPutData(cpu, skb, src, 10000), "skbPut", skb, ["10000 bytes past tail"]);
      assert.deepEqual(snapshot(cpu, skb), before);
      kfree(cpu.mm, src);
      kfreeSkb(cpu, skb);
      assertNoLeaks(cpu);
    });

    test("skbPush prepends; before head it throws naming skb, length and headroom", () => {
      const cpu = setup(p, dbg);
      const skb = allocSkb(cpu, 200);
      skbReserve(cpu, skb, 32);
      skbPut(cpu, skb, 10);
      const head = skbHeadPtr(cpu, skb);
      assert.equal(skbPush(cpu, skb, 14), head + 18);
      assert.equal(skbLen(cpu, skb), 24);
      assert.equal(skbHeadroom(cpu, skb), 18);
      let before = snapshot(cpu, skb);
      expectSkbError(() => skbPush(cpu, skb, 19), "skbPush", skb, [/^skbPush: 19 bytes before head \(headroom 18;/]);
      expectSkbError(() => skbPush(cpu, skb, -2), "skbPush", skb, ["-2 bytes before head"]);
      assert.deepEqual(snapshot(cpu, skb), before);
      assert.equal(skbPush(cpu, skb, 18), head);
      assert.equal(skbHeadroom(cpu, skb), 0);
      before = snapshot(cpu, skb);
      expectSkbError(() => skbPush(cpu, skb, 1), "skbPush", skb, ["1 bytes before head", "headroom 0"]);
      assert.deepEqual(snapshot(cpu, skb), before);
      kfreeSkb(cpu, skb);
      assertNoLeaks(cpu);
    });

    test("skbPull removes bytes from the front; more than len returns 0 and changes nothing", () => {
      const cpu = setup(p, dbg);
      const { skb, bytes } = build(cpu, { headroom: 16, linear: 60 });
      const data = skbDataPtr(cpu, skb);
      assert.equal(skbPull(cpu, skb, 14), data + 14);
      assert.equal(skbLen(cpu, skb), 46);
      assert.equal(skbHeadroom(cpu, skb), 30);
      assert.deepEqual(readPacket(cpu, skb), bytes.slice(14));
      const before = snapshot(cpu, skb);
      assert.equal(skbPull(cpu, skb, 47), 0);
      assert.equal(skbPull(cpu, skb, -1), 0);
      assert.deepEqual(snapshot(cpu, skb), before);
      assert.equal(skbPull(cpu, skb, 46), data + 60);
      assert.equal(skbLen(cpu, skb), 0);
      kfreeSkb(cpu, skb);
      assertNoLeaks(cpu);
    });

    test("skbTrim shortens a linear skb; a longer length is a no-op", () => {
      const cpu = setup(p, dbg);
      const { skb, bytes } = build(cpu, { headroom: 16, linear: 100 });
      skbTrim(cpu, skb, 200);
      assert.equal(skbLen(cpu, skb), 100);
      skbTrim(cpu, skb, 40);
      assert.equal(skbLen(cpu, skb), 40);
      assert.equal(u32(cpu, skb + SKB_TAIL), 56);
      assert.equal(skbTailroom(cpu, skb), skbEndOffset(cpu, skb) - 56);
      assert.deepEqual(readPacket(cpu, skb), bytes.slice(0, 40));
      kfreeSkb(cpu, skb);
      assertNoLeaks(cpu);
    });
  });

  describe(`misuse on non-linear skbs [${p}${dbg ? " slab-debug" : ""}]`, () => {
    test("skbPut on a non-linear skb throws and changes nothing", () => {
      const cpu = setup(p, dbg);
      const { skb } = build(cpu, { alloc: 500, linear: 20, frags: [100] });
      assert.equal(skbTailroom(cpu, skb), 0, "non-linear skbs have no tailroom");
      const before = snapshot(cpu, skb);
      expectSkbError(() => skbPut(cpu, skb, 5), "skbPut", skb, ["cannot put 5 bytes: skb is non-linear"]);
      assert.deepEqual(snapshot(cpu, skb), before);
      kfreeSkb(cpu, skb);
      assertNoLeaks(cpu);
    });

    test("skbTrim on a non-linear skb throws and changes nothing", () => {
      const cpu = setup(p, dbg);
      const { skb } = build(cpu, { linear: 20, frags: [100] });
      const before = snapshot(cpu, skb);
      expectSkbError(() => skbTrim(cpu, skb, 50), "skbTrim", skb, ["skb is non-linear (data_len 100); use pskbTrim"]);
      assert.deepEqual(snapshot(cpu, skb), before);
      kfreeSkb(cpu, skb);
      assertNoLeaks(cpu);
    });

    test("__skbPull / skbPull into the non-linear part throw and change nothing", () => {
      const cpu = setup(p, dbg);
      const { skb, bytes } = build(cpu, { linear: 20, frags: [100] });
      const before = snapshot(cpu, skb);
      expectSkbError(() => __skbPull(cpu, skb, 21), "skbPull", skb, ["pulling 21 bytes leaves len 99 below data_len; use pskbMayPull first"]);
      expectSkbError(() => skbPull(cpu, skb, 50), "skbPull", skb, ["pulling 50 bytes"]);
      assert.deepEqual(snapshot(cpu, skb), before);
      // Pulling exactly the linear part is fine.
      assert.equal(__skbPull(cpu, skb, 20), skbHeadPtr(cpu, skb) + 20);
      assert.equal(skbHeadlen(cpu, skb), 0);
      assert.deepEqual(readPacket(cpu, skb), bytes.slice(20));
      kfreeSkb(cpu, skb);
      assertNoLeaks(cpu);
    });
  });

  describe(`skbAddRxFrag [${p}${dbg ? " slab-debug" : ""}]`, () => {
    test("fills frag i and accounts len, data_len and truesize", () => {
      const cpu = setup(p, dbg);
      const skb = allocSkb(cpu, 100);
      skbPut(cpu, skb, 10);
      const ts = u32(cpu, skb + SKB_TRUESIZE);
      const a = allocPage(cpu.mem.pages);
      const b = allocPage(cpu.mem.pages);
      skbAddRxFrag(cpu, skb, 0, a, 64, 1000, 2048);
      skbAddRxFrag(cpu, skb, 1, b, 0, 300, 4096);
      assert.equal(skbNrFrags(cpu, skb), 2);
      assert.equal(skbFragPage(cpu, skb, 0), a);
      assert.equal(skbFragOffset(cpu, skb, 0), 64);
      assert.equal(skbFragSize(cpu, skb, 0), 1000);
      assert.equal(skbFragPage(cpu, skb, 1), b);
      assert.equal(skbFragOffset(cpu, skb, 1), 0);
      assert.equal(skbFragSize(cpu, skb, 1), 300);
      assert.equal(skbLen(cpu, skb), 1310);
      assert.equal(skbDataLen(cpu, skb), 1300);
      assert.equal(skbHeadlen(cpu, skb), 10);
      assert.equal(u32(cpu, skb + SKB_TRUESIZE), ts + 2048 + 4096);
      assert.equal(pageRefCount(cpu.mem.pages, a), 1, "the skb took over the caller's reference");
      kfreeSkb(cpu, skb);
      assertNoLeaks(cpu);
    });

    test("index 16 is the last valid one; 17 and -1 throw and change nothing", () => {
      const cpu = setup(p, dbg);
      const skb = allocSkb(cpu, 100);
      const pages: number[] = [];
      for (let i = 0; i < 17; i++) {
        const pg = allocPage(cpu.mem.pages);
        pages.push(pg);
        skbAddRxFrag(cpu, skb, i, pg, 0, 10, 4096);
      }
      assert.equal(skbNrFrags(cpu, skb), 17);
      assert.equal(skbLen(cpu, skb), 170);
      const before = snapshot(cpu, skb);
      const extra = allocPage(cpu.mem.pages);
      expectSkbError(() => skbAddRxFrag(cpu, skb, 17, extra, 0, 10, 4096), "skbAddRxFrag", skb, [
        "frag index 17 out of range (MAX_SKB_FRAGS 17)",
      ]);
      expectSkbError(() => skbAddRxFrag(cpu, skb, -1, extra, 0, 10, 4096), "skbAddRxFrag", skb, ["frag index -1 out of range"]);
      assert.deepEqual(snapshot(cpu, skb), before);
      putPage(cpu.mem.pages, extra);
      kfreeSkb(cpu, skb);
      assertNoLeaks(cpu);
    });
  });

  describe(`skbCopyBits [${p}${dbg ? " slab-debug" : ""}]`, () => {
    test("copies any range across linear, frags and frag_list, and reaches into the headroom", () => {
      const cpu = setup(p, dbg);
      const pkt = build(cpu, {
        headroom: 16,
        linear: 30,
        frags: [100, 50],
        fragList: [{ linear: 40, frags: [60] }, { linear: 25 }, { linear: 0, frags: [33, 7] }],
      });
      const total = 30 + 150 + 100 + 25 + 40;
      assert.equal(skbLen(cpu, pkt.skb), total);
      const withHead = [...pkt.head, ...pkt.bytes];
      const buf = kmalloc(cpu.kmalloc, 1024);
      const ranges: [number, number][] = [
        [0, total],
        [0, 30],
        [29, 2],
        [30, 100],
        [129, 2],
        [130, 50],
        [179, 2],
        [180, 40],
        [219, 2],
        [220, 60],
        [279, 3],
        [280, 25],
        [305, 33],
        [338, 7],
        [total - 1, 1],
        [total, 0],
        [77, 200],
        [-16, 16],
        [-16, total + 16],
        [-3, 10],
      ];
      for (const [off, len] of ranges) {
        cpu.u8.fill(0xee, buf, buf + 1024);
        assert.equal(skbCopyBits(cpu, pkt.skb, off, buf, len), 0, `offset ${off} len ${len}`);
        assert.deepEqual(Array.from(cpu.u8.subarray(buf, buf + len)), withHead.slice(off + 16, off + 16 + len), `offset ${off} len ${len}`);
        assert.equal(cpu.u8[buf + len], 0xee, `offset ${off} len ${len}: wrote past the end`);
      }
      assert.equal(skbCopyBits(cpu, pkt.skb, 1, buf, total), -EINVAL);
      assert.equal(skbCopyBits(cpu, pkt.skb, total, buf, 1), -EINVAL);
      assert.equal(skbCopyBits(cpu, pkt.skb, 0, buf, total + 1), -EINVAL);
      kfree(cpu.mm, buf);
      kfreeSkb(cpu, pkt.skb);
      assertNoLeaks(cpu);
    });
  });

  describe(`pskbMayPull / pskbPull [${p}${dbg ? " slab-debug" : ""}]`, () => {
    test("already linear enough: true, nothing changes; longer than the packet: false, nothing changes", () => {
      const cpu = setup(p, dbg);
      const { skb } = build(cpu, { alloc: 1000, linear: 30, frags: [100, 50] });
      const before = snapshot(cpu, skb);
      assert.equal(pskbMayPull(cpu, skb, 0), true);
      assert.equal(pskbMayPull(cpu, skb, 30), true);
      assert.equal(pskbMayPull(cpu, skb, 181), false);
      assert.deepEqual(snapshot(cpu, skb), before);
      kfreeSkb(cpu, skb);
      assertNoLeaks(cpu);
    });

    test("pull part of frag 0: frag offset/size adjusted, bytes identical", () => {
      const cpu = setup(p, dbg);
      const pkt = build(cpu, { alloc: 1000, linear: 30, frags: [100, 50] });
      const { skb, pages } = pkt;
      hold(cpu, pages);
      const head = skbHeadPtr(cpu, skb);
      assert.equal(pskbMayPull(cpu, skb, 60), true);
      assert.equal(skbHeadPtr(cpu, skb), head, "enough tailroom: no reallocation");
      assert.equal(skbHeadlen(cpu, skb), 60);
      assert.equal(skbDataLen(cpu, skb), 120);
      assert.equal(skbLen(cpu, skb), 180);
      assert.equal(skbNrFrags(cpu, skb), 2);
      assert.equal(skbFragPage(cpu, skb, 0), pages[0]);
      assert.equal(skbFragOffset(cpu, skb, 0), 100 + 30);
      assert.equal(skbFragSize(cpu, skb, 0), 70);
      assert.equal(skbFragOffset(cpu, skb, 1), 108);
      assert.equal(skbFragSize(cpu, skb, 1), 50);
      assert.deepEqual(refs(cpu, pages), [2, 2]);
      assert.deepEqual(readPacket(cpu, skb), pkt.bytes);
      kfreeSkb(cpu, skb);
      assert.deepEqual(refs(cpu, pages), [1, 1]);
      release(cpu, pages);
      assertNoLeaks(cpu);
    });

    test("pull across frag 0: the consumed frag is dropped and its page reference released", () => {
      const cpu = setup(p, dbg);
      const pkt = build(cpu, { alloc: 1000, linear: 30, frags: [100, 50, 20] });
      const { skb, pages } = pkt;
      hold(cpu, pages);
      assert.equal(pskbMayPull(cpu, skb, 140), true);
      assert.equal(skbHeadlen(cpu, skb), 140);
      assert.equal(skbDataLen(cpu, skb), 60);
      assert.equal(skbNrFrags(cpu, skb), 2);
      assert.equal(skbFragPage(cpu, skb, 0), pages[1]);
      assert.equal(skbFragOffset(cpu, skb, 0), 108 + 10);
      assert.equal(skbFragSize(cpu, skb, 0), 40);
      assert.equal(skbFragPage(cpu, skb, 1), pages[2]);
      assert.equal(skbFragSize(cpu, skb, 1), 20);
      assert.deepEqual(refs(cpu, pages), [1, 2, 2]);
      assert.deepEqual(readPacket(cpu, skb), pkt.bytes);
      // Pull everything: linear.
      assert.equal(pskbMayPull(cpu, skb, 200), true);
      assert.equal(skbNrFrags(cpu, skb), 0);
      assert.equal(skbDataLen(cpu, skb), 0);
      assert.equal(skbHeadlen(cpu, skb), 200);
      assert.deepEqual(refs(cpu, pages), [1, 1, 1]);
      assert.deepEqual(readPacket(cpu, skb), pkt.bytes);
      assert.ok(skbTailroom(cpu, skb) > 0, "a linear skb again");
      kfreeSkb(cpu, skb);
      release(cpu, pages);
      assertNoLeaks(cpu);
    });

    test("pull that does not fit the head reallocates it, keeps headroom and frees the old head", () => {
      const cpu = setup(p, dbg);
      const pkt = build(cpu, { alloc: 0, headroom: 16, linear: 30, frags: [2000, 100] });
      const { skb } = pkt;
      const oldHead = skbHeadPtr(cpu, skb);
      const oldCache = virtToCache(cpu.mm, oldHead);
      assert.ok(oldCache !== undefined);
      const oldActive = kmemCacheInfo(oldCache).activeObjs;
      const oldEnd = skbEndOffset(cpu, skb);
      const ts = u32(cpu, skb + SKB_TRUESIZE);
      assert.equal(pskbMayPull(cpu, skb, 1000), true);
      assert.notEqual(skbHeadPtr(cpu, skb), oldHead);
      assert.equal(kmemCacheInfo(oldCache).activeObjs, oldActive - 1, "old head freed");
      assert.equal(skbHeadroom(cpu, skb), 16);
      assert.deepEqual(Array.from(cpu.u8.subarray(skbHeadPtr(cpu, skb), skbHeadPtr(cpu, skb) + 16)), pkt.head, "headroom copied");
      assert.equal(skbHeadlen(cpu, skb), 1000);
      assert.equal(skbNrFrags(cpu, skb), 2);
      assert.equal(skbFragSize(cpu, skb, 0), 1030);
      assert.deepEqual(readPacket(cpu, skb), pkt.bytes);
      assert.equal(u32(cpu, skb + SKB_TRUESIZE), ts + skbEndOffset(cpu, skb) - oldEnd);
      assert.equal(skbDataref(cpu, skb), 1);
      kfreeSkb(cpu, skb);
      assertNoLeaks(cpu);
    });

    test("pull into the frag_list: eaten members are consumed, the partly eaten one is pulled", () => {
      const cpu = setup(p, dbg);
      const pkt = build(cpu, {
        alloc: 1000,
        linear: 30,
        frags: [100],
        fragList: [{ linear: 40, frags: [60] }, { linear: 80 }, { linear: 10 }],
      });
      const { skb } = pkt;
      const l1 = skbFragList(cpu, skb);
      const l2 = u32(cpu, l1 + SKB_NEXT);
      const l3 = u32(cpu, l2 + SKB_NEXT);
      const consumed = cpu.drops[SKB_DROP_REASON.CONSUMED] as number;
      const heads = kmemCacheInfo(cpu.headCache).activeObjs;
      // 30 linear + 100 frag + 100 (all of l1) + 30 of l2.
      assert.equal(pskbMayPull(cpu, skb, 260), true);
      assert.equal(skbHeadlen(cpu, skb), 260);
      assert.equal(skbLen(cpu, skb), 320);
      assert.equal(skbDataLen(cpu, skb), 60);
      assert.equal(skbNrFrags(cpu, skb), 0);
      assert.equal(skbFragList(cpu, skb), l2, "l1 was dropped from the list");
      assert.equal(u32(cpu, l2 + SKB_NEXT), l3);
      assert.equal(skbLen(cpu, l2), 50);
      assert.equal(cpu.drops[SKB_DROP_REASON.CONSUMED], consumed + 1, "l1 was consumed");
      assert.equal(kmemCacheInfo(cpu.headCache).activeObjs, heads - 1);
      assert.deepEqual(readPacket(cpu, skb), pkt.bytes);
      kfreeSkb(cpu, skb);
      assertNoLeaks(cpu);
    });

    test("pull from a frag_list member shared with someone else copies it privately", () => {
      const cpu = setup(p, dbg);
      const pkt = build(cpu, { alloc: 1000, linear: 10, fragList: [{ linear: 50 }, { linear: 20 }] });
      const { skb } = pkt;
      const l1 = skbFragList(cpu, skb);
      const l1Bytes = readPacket(cpu, l1);
      skbGet(cpu, l1); // someone else holds l1
      assert.equal(pskbMayPull(cpu, skb, 30), true);
      assert.deepEqual(readPacket(cpu, skb), pkt.bytes);
      assert.notEqual(skbFragList(cpu, skb), l1, "a private copy replaced l1");
      assert.equal(skbUsers(cpu, l1), 1, "our reference on l1 was dropped");
      assert.deepEqual(readPacket(cpu, l1), l1Bytes, "the other holder's skb is untouched");
      kfreeSkb(cpu, l1);
      kfreeSkb(cpu, skb);
      assertNoLeaks(cpu);
    });

    test("pull on a clone makes its head private; the original is unchanged", () => {
      const cpu = setup(p, dbg);
      const pkt = build(cpu, { alloc: 1000, linear: 30, frags: [100, 50] });
      const { skb, pages } = pkt;
      hold(cpu, pages);
      const c = skbClone(cpu, skb);
      assert.equal(skbDataref(cpu, skb), 2);
      assert.equal(pskbMayPull(cpu, c, 40), true);
      assert.notEqual(skbHeadPtr(cpu, c), skbHeadPtr(cpu, skb));
      assert.equal(skbDataref(cpu, skb), 1);
      assert.equal(skbDataref(cpu, c), 1);
      assert.equal(skbCloned(cpu, c), false);
      assert.equal(skbFlag(cpu, c, SKBF_CLONED), false);
      assert.deepEqual(readPacket(cpu, c), pkt.bytes);
      assert.deepEqual(readPacket(cpu, skb), pkt.bytes);
      assert.equal(skbHeadlen(cpu, skb), 30);
      assert.equal(skbFragOffset(cpu, skb, 0), 100, "the original's frag is not shifted");
      assert.equal(skbFragSize(cpu, skb, 0), 100);
      assert.deepEqual(refs(cpu, pages), [3, 3], "both skbs now hold each page");
      kfreeSkb(cpu, c);
      assert.deepEqual(refs(cpu, pages), [2, 2]);
      kfreeSkb(cpu, skb);
      assert.deepEqual(refs(cpu, pages), [1, 1]);
      release(cpu, pages);
      assertNoLeaks(cpu);
    });

    test("pskbPull pulls through the frags and returns the new data pointer (0 when too long)", () => {
      const cpu = setup(p, dbg);
      const pkt = build(cpu, { alloc: 1000, linear: 20, frags: [100] });
      const { skb } = pkt;
      const data = skbDataPtr(cpu, skb);
      assert.equal(pskbPull(cpu, skb, 121), 0);
      assert.equal(skbLen(cpu, skb), 120);
      assert.equal(pskbPull(cpu, skb, 50), data + 50);
      assert.equal(skbLen(cpu, skb), 70);
      assert.equal(skbHeadlen(cpu, skb), 0);
      assert.equal(skbDataLen(cpu, skb), 70);
      assert.deepEqual(readPacket(cpu, skb), pkt.bytes.slice(50));
      kfreeSkb(cpu, skb);
      assertNoLeaks(cpu);
    });
  });

  describe(`pskbTrim [${p}${dbg ? " slab-debug" : ""}]`, () => {
    const spec: Spec = { alloc: 1000, headroom: 8, linear: 30, frags: [100, 50], fragList: [{ linear: 40, frags: [60] }, { linear: 25 }] };
    // Layout: [0,30) linear, [30,130) frag0, [130,180) frag1, [180,280) l1, [280,305) l2.

    test("linear skb and no-op lengths", () => {
      const cpu = setup(p, dbg);
      const lin = build(cpu, { headroom: 4, linear: 50 });
      assert.equal(pskbTrim(cpu, lin.skb, 50), 0);
      assert.equal(pskbTrim(cpu, lin.skb, 60), 0);
      assert.equal(skbLen(cpu, lin.skb), 50);
      assert.equal(pskbTrim(cpu, lin.skb, 20), 0);
      assert.equal(skbLen(cpu, lin.skb), 20);
      assert.equal(u32(cpu, lin.skb + SKB_TAIL), 24);
      assert.deepEqual(readPacket(cpu, lin.skb), lin.bytes.slice(0, 20));
      kfreeSkb(cpu, lin.skb);
      const pkt = build(cpu, spec);
      const before = snapshot(cpu, pkt.skb);
      assert.equal(pskbTrim(cpu, pkt.skb, 305), 0);
      assert.equal(pskbTrim(cpu, pkt.skb, 1000), 0);
      assert.deepEqual(snapshot(cpu, pkt.skb), before);
      kfreeSkb(cpu, pkt.skb);
      assertNoLeaks(cpu);
    });

    for (const cut of [0, 10, 30, 31, 100, 130, 150, 180, 181, 220, 280, 290, 304]) {
      test(`cut at ${cut}: bytes are the prefix, later frags and members are released`, () => {
        const cpu = setup(p, dbg);
        const pkt = build(cpu, spec);
        const { skb, pages } = pkt;
        hold(cpu, pages);
        const l1 = skbFragList(cpu, skb);
        const l1Pages = [skbFragPage(cpu, l1, 0)];
        hold(cpu, l1Pages);
        const consumedHeads = kmemCacheInfo(cpu.headCache).activeObjs;
        assert.equal(pskbTrim(cpu, skb, cut), 0);
        assert.equal(skbLen(cpu, skb), cut);
        assert.deepEqual(readPacket(cpu, skb), pkt.bytes.slice(0, cut));
        // Frags entirely past the cut are gone, the one it falls in is shortened.
        const expFrags = cut <= 30 ? 0 : cut <= 130 ? 1 : 2;
        assert.equal(skbNrFrags(cpu, skb), expFrags);
        if (expFrags >= 1) assert.equal(skbFragSize(cpu, skb, 0), Math.min(cut - 30, 100));
        if (expFrags === 2) assert.equal(skbFragSize(cpu, skb, 1), Math.min(cut - 130, 50));
        assert.deepEqual(refs(cpu, pages), [expFrags >= 1 ? 2 : 1, expFrags >= 2 ? 2 : 1]);
        // Members entirely past the cut are freed.
        const expMembers = cut <= 180 ? 0 : cut <= 280 ? 1 : 2;
        let n = 0;
        for (let l = skbFragList(cpu, skb); l !== 0; l = u32(cpu, l + SKB_NEXT)) n++;
        assert.equal(n, expMembers);
        assert.equal(kmemCacheInfo(cpu.headCache).activeObjs, consumedHeads - (2 - expMembers));
        // l1's own frag survives only if the cut lands in it or after l1.
        assert.equal(pageRefCount(cpu.mem.pages, l1Pages[0] as number), cut > 220 ? 2 : 1);
        if (cut <= 30) {
          assert.equal(skbDataLen(cpu, skb), 0, "linear again");
          assert.equal(u32(cpu, skb + SKB_TAIL), 8 + cut);
        } else {
          assert.equal(skbHeadlen(cpu, skb), 30);
          assert.equal(skbDataLen(cpu, skb), cut - 30);
        }
        kfreeSkb(cpu, skb);
        release(cpu, pages);
        release(cpu, l1Pages);
        assertNoLeaks(cpu);
      });
    }

    test("a cloned skb is uncloned first; the original keeps all its bytes", () => {
      const cpu = setup(p, dbg);
      const pkt = build(cpu, spec);
      const { skb } = pkt;
      const c = skbClone(cpu, skb);
      assert.equal(pskbTrim(cpu, c, 150), 0);
      assert.deepEqual(readPacket(cpu, c), pkt.bytes.slice(0, 150));
      assert.deepEqual(readPacket(cpu, skb), pkt.bytes);
      assert.equal(skbLen(cpu, skb), 305);
      assert.equal(skbNrFrags(cpu, skb), 2);
      assert.equal(skbFragSize(cpu, skb, 1), 50);
      assert.equal(skbDataref(cpu, skb), 1);
      assert.equal(skbDataref(cpu, c), 1);
      kfreeSkb(cpu, c);
      assert.deepEqual(readPacket(cpu, skb), pkt.bytes);
      kfreeSkb(cpu, skb);
      assertNoLeaks(cpu);
    });

    test("a cut inside a shared frag_list member trims a private copy", () => {
      const cpu = setup(p, dbg);
      const pkt = build(cpu, spec);
      const { skb } = pkt;
      const l1 = skbFragList(cpu, skb);
      const l1Bytes = readPacket(cpu, l1);
      skbGet(cpu, l1);
      assert.equal(pskbTrim(cpu, skb, 200), 0);
      assert.deepEqual(readPacket(cpu, skb), pkt.bytes.slice(0, 200));
      assert.notEqual(skbFragList(cpu, skb), l1);
      assert.equal(skbUsers(cpu, l1), 1);
      assert.deepEqual(readPacket(cpu, l1), l1Bytes, "the shared member is untouched");
      kfreeSkb(cpu, l1);
      kfreeSkb(cpu, skb);
      assertNoLeaks(cpu);
    });
    test("a cut inside a later shared member relinks the private copy after its predecessor", () => {
      const cpu = setup(p, dbg);
      const pkt = build(cpu, spec);
      const { skb } = pkt;
      const l1 = skbFragList(cpu, skb);
      const l2 = u32(cpu, l1 + SKB_NEXT);
      skbGet(cpu, l2);
      assert.equal(pskbTrim(cpu, skb, 290), 0);
      assert.deepEqual(readPacket(cpu, skb), pkt.bytes.slice(0, 290));
      assert.equal(skbFragList(cpu, skb), l1, "the first member is kept as is");
      const priv = u32(cpu, l1 + SKB_NEXT);
      assert.notEqual(priv, l2);
      assert.equal(skbLen(cpu, priv), 10);
      assert.equal(skbUsers(cpu, l2), 1);
      assert.equal(skbLen(cpu, l2), 25, "the shared member is untouched");
      kfreeSkb(cpu, l2);
      kfreeSkb(cpu, skb);
      assertNoLeaks(cpu);
    });
  });

  describe(`pskbExpandHead [${p}${dbg ? " slab-debug" : ""}]`, () => {
    test("grows head and tail room, copies headroom and data, shifts header offsets, accounts truesize", () => {
      const cpu = setup(p, dbg);
      const pkt = build(cpu, { alloc: 200, headroom: 20, linear: 60, frags: [100] });
      const { skb } = pkt;
      cpu.u16[(skb + SKB_MAC_HEADER) >>> 1] = 20;
      cpu.u16[(skb + SKB_NETWORK_HEADER) >>> 1] = 34;
      // transport header stays unset (0xFFFF)
      const oldHead = skbHeadPtr(cpu, skb);
      const oldEnd = skbEndOffset(cpu, skb);
      const ts = u32(cpu, skb + SKB_TRUESIZE);
      const data = dataActive(cpu);
      assert.equal(pskbExpandHead(cpu, skb, 32, 500), 0);
      assert.notEqual(skbHeadPtr(cpu, skb), oldHead);
      assert.equal(dataActive(cpu), data, "one head freed, one allocated");
      assert.equal(skbHeadroom(cpu, skb), 52);
      assert.ok(skbEndOffset(cpu, skb) >= oldEnd + 32 + 500);
      assert.equal(u16(cpu, skb + SKB_MAC_HEADER), 52);
      assert.equal(u16(cpu, skb + SKB_NETWORK_HEADER), 66);
      assert.equal(u16(cpu, skb + SKB_TRANSPORT_HEADER), 0xffff);
      assert.equal(u32(cpu, skb + SKB_TRUESIZE), ts + skbEndOffset(cpu, skb) - oldEnd);
      const h = skbHeadPtr(cpu, skb);
      assert.deepEqual(Array.from(cpu.u8.subarray(h + 32, h + 52)), pkt.head);
      assert.deepEqual(readPacket(cpu, skb), pkt.bytes);
      assert.equal(skbNrFrags(cpu, skb), 1);
      assert.equal(skbDataref(cpu, skb), 1);
      kfreeSkb(cpu, skb);
      assertNoLeaks(cpu);
    });

    test("truesize is not changed when the skb is owned by a socket", () => {
      const cpu = setup(p, dbg);
      const pkt = build(cpu, { alloc: 100, linear: 50 });
      const ts = u32(cpu, pkt.skb + SKB_TRUESIZE);
      cpu.u32[(pkt.skb + SKB_SK) >>> 2] = 1;
      assert.equal(pskbExpandHead(cpu, pkt.skb, 0, 1000), 0);
      assert.equal(u32(cpu, pkt.skb + SKB_TRUESIZE), ts);
      cpu.u32[(pkt.skb + SKB_SK) >>> 2] = 0;
      assert.deepEqual(readPacket(cpu, pkt.skb), pkt.bytes);
      kfreeSkb(cpu, pkt.skb);
      assertNoLeaks(cpu);
    });

    test("on a clone: private head, frag pages gain a reference, both dataref 1", () => {
      const cpu = setup(p, dbg);
      const pkt = build(cpu, { alloc: 200, linear: 60, frags: [100], fragList: [{ linear: 10 }] });
      const { skb, pages } = pkt;
      hold(cpu, pages);
      const l1 = skbFragList(cpu, skb);
      const c = skbClone(cpu, skb);
      assert.equal(pskbExpandHead(cpu, c, 0, 0), 0);
      assert.notEqual(skbHeadPtr(cpu, c), skbHeadPtr(cpu, skb));
      assert.equal(skbFlag(cpu, c, SKBF_CLONED), false);
      assert.equal(skbDataref(cpu, c), 1);
      assert.equal(skbDataref(cpu, skb), 1);
      assert.deepEqual(refs(cpu, pages), [3]);
      assert.equal(skbUsers(cpu, l1), 2, "the frag_list member is shared by both heads");
      assert.deepEqual(readPacket(cpu, c), pkt.bytes);
      assert.deepEqual(readPacket(cpu, skb), pkt.bytes);
      kfreeSkb(cpu, skb);
      assert.deepEqual(refs(cpu, pages), [2]);
      assert.equal(skbUsers(cpu, l1), 1);
      kfreeSkb(cpu, c);
      release(cpu, pages);
      assertNoLeaks(cpu);
    });

    test("a page-fragment head becomes a kmalloc head (head_frag cleared, fragment released)", () => {
      const cpu = setup(p, dbg);
      const skb = netdevAllocSkb(cpu, 1, 1500);
      assert.equal(skbFlag(cpu, skb, SKBF_HEAD_FRAG), true);
      const b = randomBytes(100);
      cpu.u8.set(b, skbPut(cpu, skb, 100));
      assert.equal(pskbExpandHead(cpu, skb, 0, 0), 0);
      assert.equal(skbFlag(cpu, skb, SKBF_HEAD_FRAG), false);
      assert.notEqual(virtToCache(cpu.mm, skbHeadPtr(cpu, skb))?.name, "frag-pages");
      assert.equal(skbHeadroom(cpu, skb), 64);
      assert.deepEqual(readPacket(cpu, skb), b);
      kfreeSkb(cpu, skb);
      assertNoLeaks(cpu);
    });

    test("shared skbs and negative growth throw", () => {
      const cpu = setup(p, dbg);
      const skb = allocSkb(cpu, 100);
      const before = snapshot(cpu, skb);
      expectSkbError(() => pskbExpandHead(cpu, skb, -1, 0), "pskbExpandHead", skb, ["negative growth -1/0"]);
      skbGet(cpu, skb);
      expectSkbError(() => pskbExpandHead(cpu, skb, 0, 0), "pskbExpandHead", skb, ["skb is shared (users > 1)"]);
      kfreeSkb(cpu, skb);
      assert.deepEqual(snapshot(cpu, skb), before);
      kfreeSkb(cpu, skb);
      assertNoLeaks(cpu);
    });

    test("returns -ENOMEM and leaves the skb intact when no head can be allocated", () => {
      const cpu = setup(p, dbg);
      const pkt = build(cpu, { alloc: 100, linear: 50 });
      const before = snapshot(cpu, pkt.skb);
      assert.equal(pskbExpandHead(cpu, pkt.skb, 0, 40000), -12);
      assert.deepEqual(snapshot(cpu, pkt.skb), before);
      assert.deepEqual(readPacket(cpu, pkt.skb), pkt.bytes);
      kfreeSkb(cpu, pkt.skb);
      assertNoLeaks(cpu);
    });
  });
}
