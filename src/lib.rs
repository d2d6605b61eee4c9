//! mpass-guard: verify MPASSid ID tokens in Envoy and release to each service
//! provider only the attributes its contract allows.
//!
//! Everything except [`wasm`] is a pure core with no proxy-wasm types, so the
//! whole decision is testable natively.

pub mod alg;
pub mod claims;
pub mod contract;
pub mod error;
pub mod render;
