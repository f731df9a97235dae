/**
 * The build's constant-inlining transformer (scripts/build.mjs): numeric
 * module-level consts are written as literals where they are read, and
 * nowhere else; the emitted program behaves exactly as the source. Builds
 * small projects in a temporary directory with the real TypeScript.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { pathToFileURL } from "node:url";

interface BuildModule {
  build(configPath: string, inline?: boolean): { diagnostics: unknown[]; inlined: number };
}
// dist/test/build/ -> the repository's scripts/ (not compiled: it is the compiler).
const scripts = new URL("../../../scripts/build.mjs", import.meta.url);

function project(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), "skbuff-build-"));
  writeFileSync(
    join(dir, "tsconfig.json"),
    JSON.stringify({
      compilerOptions: { target: "ES2022", module: "NodeNext", moduleResolution: "NodeNext", strict: true, outDir: "out", rootDir: ".", types: [], verbatimModuleSyntax: true },
      include: ["*.ts"],
    }),
  );
  writeFileSync(join(dir, "package.json"), JSON.stringify({ type: "module" }));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

const LAYOUT = `
export const OFF_A = 156;
export const NEG = -3;
export const SHIFTED = 1 << 4;            // type number: left alone
export const NAME = "x";                  // not a number: left alone
export let MUTABLE = 7;                   // not const: left alone
export const TYPED: 3 = JSON.parse("4");  // a literal type but a computed value: left alone
`;
const USER = `
import { OFF_A, NEG, SHIFTED, MUTABLE, TYPED } from "./layout.js";
const LOCAL = 8;
export function f(a: Uint32Array, i: number): number {
  a[(i + OFF_A) >>> 2] = LOCAL;           // reads: inlined
  const o = { OFF_A, k: OFF_A };          // shorthand property stays a name; the value is inlined
  return a[(i + OFF_A) >>> 2]! + NEG + SHIFTED + MUTABLE + TYPED + o.OFF_A + o.k + \`\${LOCAL}\`.length;
}
export { OFF_A };
`;

describe("build: constant inlining", () => {
  test("numeric consts are inlined where read, with the name in a comment; everything else is left alone", async () => {
    const { build } = (await import(scripts.href)) as BuildModule;
    const dir = project({ "layout.ts": LAYOUT, "user.ts": USER });
    try {
      const r = build(join(dir, "tsconfig.json"));
      assert.deepEqual(r.diagnostics, []);
      const js = readFileSync(join(dir, "out", "user.js"), "utf8");
      assert.match(js, /a\[\(i \+ \(156\) \/\* OFF_A \*\/\) >>> 2\] = \(8\) \/\* LOCAL \*\//);
      assert.match(js, /\(-3\) \/\* NEG \*\//);
      assert.match(js, /SHIFTED \+ MUTABLE \+ TYPED/, "a computed const, a let and a literal-typed computed const are read by name");
      assert.match(js, /\{ OFF_A, k: \(156\) \/\* OFF_A \*\/ \}/, "shorthand keeps the binding");
      assert.match(js, /export \{ OFF_A \}/);
      assert.match(js, /import \{ OFF_A, NEG, SHIFTED, MUTABLE, TYPED \} from "\.\/layout\.js"/, "imports are kept (verbatimModuleSyntax)");
      assert.equal(r.inlined, 6);
      // Same behaviour as the source.
      const { f } = (await import(pathToFileURL(join(dir, "out", "user.js")).href)) as { f: (a: Uint32Array, i: number) => number };
      assert.equal(f(new Uint32Array(64), 4), 8 + -3 + 16 + 7 + 4 + 156 + 156 + 1);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("SKBUFF_INLINE_CONSTS=0 (inline false) emits plain tsc output", async () => {
    const { build } = (await import(scripts.href)) as BuildModule;
    const dir = project({ "layout.ts": LAYOUT, "user.ts": USER });
    try {
      const r = build(join(dir, "tsconfig.json"), false);
      assert.equal(r.inlined, 0);
      assert.doesNotMatch(readFileSync(join(dir, "out", "user.js"), "utf8"), /\/\* OFF_A \*\//);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("type errors are reported, not emitted silently", async () => {
    const { build } = (await import(scripts.href)) as BuildModule;
    const dir = project({ "bad.ts": "export const x: number = 'no';\n" });
    try {
      assert.ok(build(join(dir, "tsconfig.json")).diagnostics.length > 0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("this project's dist is built with it: layout offsets appear as literals", () => {
    const js = readFileSync(new URL("../../src/skb/free.js", import.meta.url), "utf8");
    assert.match(js, /\(164\) \/\* SKB_USERS \*\//);
  });
});
