// Runs the wasm32-wasip1 crypto bench in Node's V8 (the engine Envoy embeds).
//   cargo build --release --target wasm32-wasip1   (in bench/crypto)
//   node run.mjs [iterations-scale] [alg-filter]
import { readFile } from 'node:fs/promises';
import { WASI } from 'node:wasi';
import { argv } from 'node:process';

const path = new URL('./target/wasm32-wasip1/release/crypto-bench.wasm', import.meta.url);
const wasi = new WASI({ version: 'preview1', args: ['crypto-bench', ...argv.slice(2)], env: {} });
const module = await WebAssembly.compile(await readFile(path));
// The library's proxy-wasm glue imports host functions from "env"; the bench
// never calls them, so stubs that throw are enough to instantiate.
const env = {};
for (const imp of WebAssembly.Module.imports(module)) {
  if (imp.module === 'env') env[imp.name] = () => { throw new Error(`host call ${imp.name}`); };
}
const instance = await WebAssembly.instantiate(module, { ...wasi.getImportObject(), env });
// The library also exports proxy-wasm's `_initialize`, which a command module
// must not have for WASI.start: hand it only what a command needs.
const { _start, memory } = instance.exports;
wasi.start({ exports: { _start, memory } });
