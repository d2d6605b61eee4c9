//! mpass-guard: verify MPASSid ID tokens in Envoy and release to each service
//! provider only the attributes its contract allows.
//!
//! Everything except the `wasm` glue is a pure core with no proxy-wasm types,
//! so the whole decision is testable natively.

pub mod agreement;
pub mod alg;
pub mod authority;
pub mod cache;
pub mod claims;
#[cfg(not(target_arch = "wasm32"))]
pub mod cli;
pub mod config;
pub mod contract;
#[cfg(not(target_arch = "wasm32"))]
pub mod drift;
pub mod ed25519_fast;
pub mod engine;
pub mod error;
#[cfg(not(target_arch = "wasm32"))]
pub mod explain;
pub mod extract;
pub mod few;
pub mod forward;
pub mod http;
pub mod jwks;
pub mod keys;
pub mod login;
pub mod metadata;
#[cfg(not(target_arch = "wasm32"))]
pub mod mint;
pub mod minted;
pub mod names;
pub mod p256_fast;
pub mod registry;
pub mod registry_source;
pub mod render;
#[cfg(not(target_arch = "wasm32"))]
pub mod report;
pub mod routing;
pub mod rsa_fast;
pub mod seal;
pub mod shadow;
pub mod shared_keys;
pub mod signing;
pub mod unique_map;
pub mod userinfo;
pub mod verify;

/// The crate version (`Cargo.toml`), as released and tagged `vX.Y.Z`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[cfg(target_arch = "wasm32")]
mod alloc;
#[cfg(target_arch = "wasm32")]
mod wasm;
#[cfg(target_arch = "wasm32")]
mod wasm_keys;
#[cfg(target_arch = "wasm32")]
mod wasm_record;
