// Runs the profile driver, built for wasm32-wasip1, in Node's V8 with WASI.
// Under `node --prof` V8 logs the names of the Wasm functions it compiles, so
// `node --prof-process` can say where the filter's Wasm time goes (Envoy's
// V8 writes no symbol map). Same Rust code and ring build as the filter.
//
//   node --prof bench/wasm_profile.mjs DRIVER.wasm decide CONFIG TOKENS N
import { readFile } from "node:fs/promises";
import { WASI } from "node:wasi";
import { argv } from "node:process";

const [wasmPath, ...args] = argv.slice(2);
const wasi = new WASI({ version: "preview1", args: ["mpass-guard-profile", ...args],
                        env: process.env, preopens: { "/": "/" }, returnOnExit: true });
const module = await WebAssembly.compile(await readFile(wasmPath));
// The crate's proxy-wasm glue is linked too and imports Envoy's host
// functions; the driver never calls them, so stubs satisfy the linker.
const imports = wasi.getImportObject();
for (const imp of WebAssembly.Module.imports(module)) {
  if (imp.module !== "wasi_snapshot_preview1" && imp.kind === "function") {
    imports[imp.module] ??= {};
    imports[imp.module][imp.name] = () => 0;
  }
}
const instance = await WebAssembly.instantiate(module, imports);
// proxy-wasm's entry macro exports `_initialize` too, which WASI refuses
// next to `_start`; the driver is a command, so hide it.
const exports = Object.fromEntries(
  Object.entries(instance.exports).filter(([name]) => name !== "_initialize"));
wasi.start({ exports });
