/**
 * Tests for the SkBuff object view: every getter reads the arena live,
 * bytes() walks linear data, frags and the frag_list (recursively), and
 * toJSON gives a plain summary.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { allocPage } from "../../src/mm/page-alloc.js";
import { hex, skbDataPtr, skbGet, skbHeadPtr, skbShinfo } from "../../src/skb/access.js";
import { allocSkb, netdevAllocSkb } from "../../src/skb/alloc.js";
import { skbClone } from "../../src/skb/clone.js";
import type { SkbCpu } from "../../src/skb/cpu.js";
import { skbAddRxFrag, skbPull, skbPut, skbReserve } from "../../src/skb/data.js";
import { kfreeSkb } from "../../src/skb/free.js";
import {
  SHINFO_FRAG_LIST,
  SKB_ALLOC_FCLONE,
  SKB_DATA_LEN,
  SKB_DEV,
  SKB_FCLONE_CLONE,
  SKB_FCLONE_ORIG,
  SKB_FLAGS,
  SKB_HASH,
  SKB_IP_SUMMED,
  SKB_LEN,
  SKB_MAC_HEADER,
  SKB_MARK,
  SKB_NAPI_ID,
  SKB_NETWORK_HEADER,
  SKB_NEXT,
  SKB_PROTOCOL,
  SKB_QUEUE_MAPPING,
  SKB_TRANSPORT_HEADER,
  SKB_TRUESIZE,
  SKB_VLAN_PROTO,
  SKB_VLAN_TCI,
  SKBF_PFMEMALLOC,
} from "../../src/skb/layout.js";
import { SkBuff, skbToBytes } from "../../src/skb/view.js";
import { assertNoLeaks, PROFILES, set16, set32, setup } from "../support/skb.js";

/** `n` bytes counting up from `from` (mod 256). */
function seq(from: number, n: number): number[] {
  return Array.from({ length: n }, (_, i) => (from + i) & 0xff);
}

/** An skb with `linear` bytes then one frag per entry of `frags` (values from `from`). */
function mk(cpu: SkbCpu, headroom: number, linear: number[], frags: number[][]): number {
  const skb = allocSkb(cpu, headroom + linear.length + 64);
  skbReserve(cpu, skb, headroom);
  cpu.u8.set(linear, skbPut(cpu, skb, linear.length));
  frags.forEach((f, i) => {
    const page = allocPage(cpu.mem.pages);
    cpu.u8.set(f, page + 200);
    skbAddRxFrag(cpu, skb, i, page, 200, f.length, 4096);
  });
  return skb;
}

function attach(cpu: SkbCpu, parent: number, members: number[]): void {
  set32(cpu, skbShinfo(cpu, parent) + SHINFO_FRAG_LIST, members[0] as number);
  let total = 0;
  members.forEach((m, i) => {
    set32(cpu, m + SKB_NEXT, members[i + 1] ?? 0);
    total += cpu.u32[(m + SKB_LEN) >>> 2] as number;
  });
  set32(cpu, parent + SKB_LEN, (cpu.u32[(parent + SKB_LEN) >>> 2] as number) + total);
  set32(cpu, parent + SKB_DATA_LEN, (cpu.u32[(parent + SKB_DATA_LEN) >>> 2] as number) + total);
}

for (const p of PROFILES) for (const dbg of [true, false]) {
  describe(`SkBuff view [${p}${dbg ? " slab-debug" : ""}]`, () => {
    test("constructor rejects NULL", () => {
      const cpu = setup(p, dbg);
      assert.throws(() => new SkBuff(cpu, 0), { name: "TypeError", message: "SkBuff: NULL skb" });
      assertNoLeaks(cpu);
    });

    test("getters read the fields of the skb", () => {
      const cpu = setup(p, dbg, {}, 3);
      const skb = mk(cpu, 32, seq(0, 40), [seq(100, 100), seq(7, 60)]);
      set16(cpu, skb + SKB_PROTOCOL, 0x0008);
      set16(cpu, skb + SKB_VLAN_PROTO, 0x0081);
      set16(cpu, skb + SKB_VLAN_TCI, 42);
      set16(cpu, skb + SKB_MAC_HEADER, 32);
      set16(cpu, skb + SKB_NETWORK_HEADER, 46);
      set16(cpu, skb + SKB_TRANSPORT_HEADER, 66);
      set32(cpu, skb + SKB_HASH, 0xdeadbeef);
      set32(cpu, skb + SKB_MARK, 0x77);
      cpu.u8[skb + SKB_IP_SUMMED] = 3;
      set16(cpu, skb + SKB_QUEUE_MAPPING, 5);
      set32(cpu, skb + SKB_NAPI_ID, 0x2002);
      set32(cpu, skb + SKB_DEV, 6);
      const v = new SkBuff(cpu, skb);
      assert.equal(v.cpu, cpu);
      assert.equal(v.skb, skb);
      assert.equal(v.len, 200);
      assert.equal(v.dataLen, 160);
      assert.equal(v.headlen, 40);
      assert.equal(v.headroom, 32);
      assert.equal(v.tailroom, 0, "non-linear");
      assert.equal(v.truesize, (cpu.u32[(skb + SKB_TRUESIZE) >>> 2] as number));
      assert.equal(v.truesize, (p === "5.12" ? 512 : 704) + 192 + 2 * 4096);
      assert.equal(v.users, 1);
      assert.equal(v.dataref, 1);
      assert.equal(v.cloned, false);
      assert.equal(v.fclone, 0);
      assert.equal(v.headFrag, false);
      assert.equal(v.pfmemalloc, false);
      assert.equal(v.nrFrags, 2);
      assert.equal(v.fragList, 0);
      assert.equal(v.dev, 6);
      assert.equal(v.protocol, 0x0008);
      assert.equal(v.vlanProto, 0x0081);
      assert.equal(v.vlanTci, 42);
      assert.equal(v.macHeader, 32);
      assert.equal(v.networkHeader, 46);
      assert.equal(v.transportHeader, 66);
      assert.equal(v.hash, 0xdeadbeef);
      assert.equal(v.mark, 0x77);
      assert.equal(v.ipSummed, 3);
      assert.equal(v.queueMapping, 5);
      assert.equal(v.napiId, 0x2002);
      assert.equal(v.allocCpu, 3);
      assert.equal(v.data, skbHeadPtr(cpu, skb) + 32);
      // protocol has a setter
      v.protocol = 0xdd86;
      assert.equal(cpu.u16[(skb + SKB_PROTOCOL) >>> 1], 0xdd86);
      cpu.u8[skb + SKB_FLAGS] = (cpu.u8[skb + SKB_FLAGS] as number) | SKBF_PFMEMALLOC;
      assert.equal(v.pfmemalloc, true);
      kfreeSkb(cpu, skb);
      assertNoLeaks(cpu);
    });

    test("getters are live and follow clones, fclones, references and page-fragment heads", () => {
      const cpu = setup(p, dbg);
      const skb = allocSkb(cpu, 100, SKB_ALLOC_FCLONE);
      const v = new SkBuff(cpu, skb);
      assert.equal(v.fclone, SKB_FCLONE_ORIG);
      assert.equal(v.len, 0);
      const tail = v.tailroom;
      skbPut(cpu, skb, 10);
      assert.equal(v.len, 10);
      assert.equal(v.tailroom, tail - 10);
      const c = skbClone(cpu, skb);
      const cv = new SkBuff(cpu, c);
      assert.equal(cv.fclone, SKB_FCLONE_CLONE);
      assert.equal(v.cloned, true);
      assert.equal(cv.cloned, true);
      assert.equal(v.dataref, 2);
      skbGet(cpu, skb);
      assert.equal(v.users, 2);
      kfreeSkb(cpu, skb);
      kfreeSkb(cpu, c);
      assert.equal(v.cloned, false, "dataref back to 1");
      kfreeSkb(cpu, skb);
      const f = netdevAllocSkb(cpu, 2, 1500);
      const fv = new SkBuff(cpu, f);
      assert.equal(fv.headFrag, true);
      assert.equal(fv.headroom, 64);
      assert.equal(fv.dev, 2);
      kfreeSkb(cpu, f);
      assertNoLeaks(cpu);
    });

    test("bytes(): linear + frags + frag_list (members with their own frags), a fresh copy", () => {
      const cpu = setup(p, dbg);
      const lin = seq(0, 40);
      const f0 = seq(50, 100);
      const f1 = seq(200, 30);
      const skb = mk(cpu, 16, lin, [f0, f1]);
      const m1 = mk(cpu, 0, seq(9, 20), [seq(33, 70)]);
      const m2 = mk(cpu, 8, seq(77, 5), []);
      const m3 = mk(cpu, 0, [], [seq(1, 3), seq(2, 4)]);
      attach(cpu, skb, [m1, m2, m3]);
      const expected = [...lin, ...f0, ...f1, ...seq(9, 20), ...seq(33, 70), ...seq(77, 5), ...seq(1, 3), ...seq(2, 4)];
      const v = new SkBuff(cpu, skb);
      assert.equal(v.fragList, m1);
      assert.equal(v.len, expected.length);
      const b = v.bytes();
      assert.ok(b instanceof Uint8Array);
      assert.deepEqual(Array.from(b), expected);
      assert.deepEqual(Array.from(skbToBytes(cpu, skb)), expected);
      // A copy, not a view of the arena.
      b[0] = 0xff;
      assert.equal(cpu.u8[skbDataPtr(cpu, skb)], 0);
      assert.notEqual(b.buffer, cpu.u8.buffer);
      // Reflects pulls.
      skbPull(cpu, skb, 10);
      assert.deepEqual(Array.from(v.bytes()), expected.slice(10));
      // Nested frag_list.
      const inner = mk(cpu, 0, seq(150, 6), []);
      const outer = mk(cpu, 0, seq(140, 2), []);
      attach(cpu, outer, [inner]);
      assert.deepEqual(Array.from(new SkBuff(cpu, outer).bytes()), [...seq(140, 2), ...seq(150, 6)]);
      kfreeSkb(cpu, outer);
      kfreeSkb(cpu, skb);
      assertNoLeaks(cpu);
    });

    test("bytes() of an empty skb is empty", () => {
      const cpu = setup(p, dbg);
      const skb = allocSkb(cpu, 0);
      assert.deepEqual(Array.from(new SkBuff(cpu, skb).bytes()), []);
      kfreeSkb(cpu, skb);
      assertNoLeaks(cpu);
    });

    test("toJSON: the exact summary, also through JSON.stringify", () => {
      const cpu = setup(p, dbg, {}, 1);
      const skb = mk(cpu, 64, seq(0, 20), [seq(0, 30)]);
      set16(cpu, skb + SKB_PROTOCOL, 0x0008);
      set16(cpu, skb + SKB_VLAN_TCI, 12);
      set32(cpu, skb + SKB_DEV, 4);
      const obj = p === "5.12" ? 512 : 704;
      const expected = {
        skb: hex(skb),
        len: 50,
        dataLen: 30,
        headroom: 64,
        tailroom: 0,
        truesize: obj + 192 + 4096,
        users: 1,
        dataref: 1,
        cloned: false,
        fclone: 0,
        headFrag: false,
        nrFrags: 1,
        protocol: 8,
        vlanTci: 12,
        dev: 4,
        allocCpu: 1,
      };
      const v = new SkBuff(cpu, skb);
      assert.deepEqual(v.toJSON(), expected);
      assert.deepEqual(JSON.parse(JSON.stringify(v)), expected);
      const c = skbClone(cpu, skb);
      assert.deepEqual(new SkBuff(cpu, c).toJSON(), { ...expected, skb: hex(c), dataref: 2, cloned: true, allocCpu: 1 });
      kfreeSkb(cpu, c);
      kfreeSkb(cpu, skb);
      assertNoLeaks(cpu);
    });
  });
}
