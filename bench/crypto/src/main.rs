//! Times `Untrusted::verify_with_key` (jwt-compact plumbing + the signature
//! check) per algorithm. Build for wasm32-wasip1 and run with `node run.mjs`,
//! so the numbers are V8's, as in Envoy; a native build runs too.
//!
//! Usage: crypto-bench [iterations-scale] [case-filter]

use std::hint::black_box;
use std::time::Instant;

use mpass_guard::alg::Alg;
use mpass_guard::keys::KeySet;
use mpass_guard::verify::Untrusted;

// (name, JWKS, token, iterations), minted by build.rs.
include!(concat!(env!("OUT_DIR"), "/cases.rs"));

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let scale: u32 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1);
    let filter = args.get(2).cloned().unwrap_or_default();
    for &(name, jwks, token, n) in CASES {
        if !name.contains(filter.as_str()) {
            continue;
        }
        let n = n * scale;
        let t0 = Instant::now();
        let (set, _) = KeySet::parse(jwks.as_bytes(), &Alg::ALL).expect("jwks");
        let parse_us = t0.elapsed().as_secs_f64() * 1e6;
        let key = set.keys().first().expect("one key").clone();
        let token = Untrusted::decode(token, 16 * 1024).expect("decode");
        // Warm-up lets V8 tier the code up (Liftoff -> TurboFan).
        for _ in 0..n / 4 + 10 {
            assert!(token.verify_with_key(black_box(&key)).is_ok(), "{name}");
        }
        // The machine is shared: report the best of 5 rounds (and the median).
        let mut rounds: Vec<f64> = (0..5)
            .map(|_| {
                let start = Instant::now();
                for _ in 0..n {
                    assert!(token.verify_with_key(black_box(&key)).is_ok(), "{name}");
                }
                start.elapsed().as_secs_f64() * 1e6 / f64::from(n)
            })
            .collect();
        rounds.sort_by(f64::total_cmp);
        let (us, median) = (rounds[0], rounds[2]);
        println!(
            "{name:<11} best {us:>7.1} us/verify  median {median:>7.1}  5x{n} (jwks parse {parse_us:.0} us)"
        );
    }
}
