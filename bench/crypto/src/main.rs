//! Times `Untrusted::verify_with_key` (jwt-compact plumbing + the signature
//! check) per algorithm. Build for wasm32-wasip1 and run with `node run.mjs`,
//! so the numbers are V8's, as in Envoy; a native build runs too.
//!
//! Usage: crypto-bench [iterations-scale] [case-filter]

use std::hint::black_box;
use std::time::Instant;

use mpass_guard::alg::Alg;
use mpass_guard::keys::{KeyMaterial, KeySet};
use mpass_guard::rsa_fast::{Hash, Padding};
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
        let raw = raw_rsa(name, &key.material, token);
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
        let raw_us = raw.map(|f| {
            let start = Instant::now();
            for _ in 0..n {
                assert!(f());
            }
            start.elapsed().as_secs_f64() * 1e6 / f64::from(n)
        });
        let raw_note = raw_us.map_or(String::new(), |r| format!(" [rsa_fast alone {r:.1}]"));
        println!(
            "{name:<11} best {us:>7.1} us/verify  median {median:>7.1}  5x{n} (jwks parse {parse_us:.0} us){raw_note}"
        );
    }
}

/// For RSA cases: a closure verifying with `rsa_fast` directly, without the
/// jwt-compact plumbing, to show what the plumbing costs.
fn raw_rsa<'a>(
    name: &str,
    material: &'a KeyMaterial,
    token: &'static str,
) -> Option<Box<dyn Fn() -> bool + 'a>> {
    use base64::Engine as _;
    let KeyMaterial::Rsa { public, .. } = material else {
        return None;
    };
    let (padding, hash) = match name.get(..5)? {
        "RS256" => (Padding::Pkcs1v15, Hash::Sha256),
        "RS384" => (Padding::Pkcs1v15, Hash::Sha384),
        "RS512" => (Padding::Pkcs1v15, Hash::Sha512),
        "PS256" => (Padding::Pss, Hash::Sha256),
        "PS384" => (Padding::Pss, Hash::Sha384),
        _ => (Padding::Pss, Hash::Sha512),
    };
    let dot = token.rfind('.')?;
    let msg = token.get(..dot)?.as_bytes();
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.get(dot + 1..)?)
        .ok()?;
    Some(Box::new(move || {
        public.verify(padding, hash, msg, black_box(&sig))
    }))
}
