//! The filter's global allocator on wasm32: the `dlmalloc` crate (the Rust
//! port of Doug Lea's malloc that Rust's own `wasm32-unknown-unknown` std
//! uses), in place of wasi-libc's C dlmalloc that `wasm32-wasip1` gives Rust
//! by default.
//!
//! Same algorithm, so the same fragmentation behaviour, but compiled with
//! the filter under LTO: `alloc`/`dealloc` inline into their callers, free
//! gets the size from the `Layout`, and there is no call through
//! `__rust_alloc` -> `malloc`. In V8 (callgrind of the wasm profile driver
//! under Node, TurboFan code, instructions per decision) this cut cold RS256
//! by 6.6 % and the warm path by 38 %; talc, rlsf and lol_alloc were slower
//! or used more memory (numbers in the commit that chose it).
//!
//! A proxy-wasm VM runs on one thread and the filter is built without the
//! `atomics` target feature, so the crate's global lock compiles to nothing
//! (it asserts as much). Memory comes from `memory.grow`, 64 KiB pages, and
//! is never given back: Wasm memory cannot shrink.
//!
//! Natively (tests, the CLI) the system allocator stays.

#[global_allocator]
static ALLOC: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;
