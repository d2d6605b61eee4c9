//! Times signature verification per algorithm: the filter's whole path
//! (`Untrusted::verify_with_key`: the dispatch, hashing + the check), and the
//! bare verifiers (`rsa_fast`, ring) on the same signature. Build for
//! wasm32-wasip1 and run with `node run.mjs`, so the numbers are V8's, as in
//! Envoy; a native build runs too.
//!
//! With a case filter starting `sign`, times the gateway's token signing
//! instead (`sign` for all three algorithms, `sign EdDSA` for one).
//!
//! Usage: crypto-bench [iterations-scale] [case-filter]

use std::hint::black_box;
use std::time::Instant;

use base64::Engine as _;
use mpass_guard::alg::Alg;
use mpass_guard::keys::{KeyMaterial, KeySet, VerifyingKey};
use mpass_guard::p256_fast::EcPublicKey;
use mpass_guard::rsa_fast::{Hash, Padding};
use mpass_guard::verify::Untrusted;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};

// (name, alg, JWKS, token, iterations), minted by build.rs.
include!(concat!(env!("OUT_DIR"), "/cases.rs"));

type Check<'a> = Box<dyn Fn() -> bool + 'a>;

/// Best and median µs per call over 5 rounds of `n` calls, after a warm-up
/// (at least n/4 calls and 1 s) that lets V8 tier the code up (Liftoff ->
/// TurboFan, compiled in the background: with 200 ms the first case still
/// ran ~50 % slow). The machine may be shared: the best round is the least
/// disturbed one.
///
/// With a third argument `cpu`, rounds are timed in process CPU time
/// (`CLOCK_PROCESS_CPUTIME_ID`; Node's WASI answers with `getrusage`)
/// instead of wall time: on a loaded machine the process then is not
/// charged for the time it waited for a core.
fn time(f: &dyn Fn() -> bool, n: u32) -> (f64, f64) {
    let warm = Instant::now();
    let mut calls = 0;
    while calls < n / 4 + 10 || warm.elapsed().as_millis() < 1000 {
        assert!(f());
        calls += 1;
    }
    let mut rounds: Vec<f64> = (0..5)
        .map(|_| {
            let start = now();
            for _ in 0..n {
                assert!(f());
            }
            (now() - start) * 1e6 / f64::from(n)
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    (rounds[0], rounds[2])
}

static CPU_CLOCK: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Seconds on the clock chosen for rounds (see [`time`]).
fn now() -> f64 {
    if CPU_CLOCK.load(std::sync::atomic::Ordering::Relaxed) {
        cpu_seconds()
    } else {
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_secs_f64()
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(3).is_some_and(|a| a == "cpu") {
        CPU_CLOCK.store(true, std::sync::atomic::Ordering::Relaxed);
        println!("rounds timed in process CPU time");
    }
    let scale: u32 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1);
    let filter = args.get(2).cloned().unwrap_or_default();
    if filter.starts_with("sign") {
        signing(scale, &filter);
        return;
    }
    println!("best (median) us per verify; 5 rounds of n after a warm-up");
    for &(name, alg, jwks, token, n) in CASES {
        if !name.contains(filter.as_str()) {
            continue;
        }
        let n = n * scale;
        let alg = Alg::from_name(alg).expect("alg");
        let t0 = Instant::now();
        let (set, _) = KeySet::parse(jwks.as_bytes(), &Alg::ALL).expect("jwks");
        let parse_us = t0.elapsed().as_secs_f64() * 1e6;
        let key: VerifyingKey = set.keys().first().expect("one key").clone();
        let dot = token.rfind('.').expect("jws");
        let msg = &token.as_bytes()[..dot];
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&token[dot + 1..])
            .expect("b64");
        let ec_setup = match &key.material {
            KeyMaterial::EcP256 { point, public } => ec_setup(point, public, msg, &sig),
            KeyMaterial::Ed25519 { public, .. } => ed_setup(public),
            _ => String::new(),
        };
        // `verify_with_key` consumes the token (it returns the `Verified`
        // one), so `filter` decodes it on every call too.
        let mut checks: Vec<(&str, Check<'_>)> = vec![(
            "filter",
            Box::new(|| {
                Untrusted::decode(black_box(token), 16 * 1024)
                    .and_then(|t| t.verify_with_key(black_box(&key)))
                    .is_ok()
            }),
        )];
        checks.extend(bare(alg, &key.material, msg, &sig));
        let mut line = format!("{name:<11}");
        for (label, f) in &checks {
            let (best, median) = time(f.as_ref(), n);
            line += &format!("  {label} {best:6.1} ({median:6.1})");
        }
        println!("{line}  n={n} jwks-parse={parse_us:.0}us{ec_setup}");
    }
}

/// The bare verifiers for this algorithm, on the same message and signature.
fn bare<'a>(
    alg: Alg,
    material: &'a KeyMaterial,
    msg: &'a [u8],
    sig: &'a [u8],
) -> Vec<(&'static str, Check<'a>)> {
    match material {
        KeyMaterial::Rsa { n, e, public } => {
            let (padding, hash, params) = match alg {
                Alg::RS256 => (
                    Padding::Pkcs1v15,
                    Hash::Sha256,
                    &signature::RSA_PKCS1_2048_8192_SHA256,
                ),
                Alg::RS384 => (
                    Padding::Pkcs1v15,
                    Hash::Sha384,
                    &signature::RSA_PKCS1_2048_8192_SHA384,
                ),
                Alg::RS512 => (
                    Padding::Pkcs1v15,
                    Hash::Sha512,
                    &signature::RSA_PKCS1_2048_8192_SHA512,
                ),
                Alg::PS256 => (
                    Padding::Pss,
                    Hash::Sha256,
                    &signature::RSA_PSS_2048_8192_SHA256,
                ),
                Alg::PS384 => (
                    Padding::Pss,
                    Hash::Sha384,
                    &signature::RSA_PSS_2048_8192_SHA384,
                ),
                _ => (
                    Padding::Pss,
                    Hash::Sha512,
                    &signature::RSA_PSS_2048_8192_SHA512,
                ),
            };
            vec![
                (
                    "rsa_fast",
                    Box::new(move || public.verify(padding, hash, msg, black_box(sig))),
                ),
                (
                    "ring",
                    Box::new(move || {
                        RsaPublicKeyComponents { n, e }
                            .verify(params, msg, black_box(sig))
                            .is_ok()
                    }),
                ),
            ]
        }
        KeyMaterial::EcP256 { point, public } => {
            use p256::ecdsa::signature::Verifier as _;
            let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(point).expect("p256 key");
            vec![
                (
                    "p256_fast",
                    Box::new(move || public.verify(msg, black_box(sig))),
                ),
                (
                    "ring",
                    Box::new(move || {
                        UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                            .verify(msg, black_box(sig))
                            .is_ok()
                    }),
                ),
                (
                    "p256",
                    Box::new(move || {
                        p256::ecdsa::Signature::from_slice(black_box(sig))
                            .is_ok_and(|s| vk.verify(msg, &s).is_ok())
                    }),
                ),
                (
                    "p256+key",
                    Box::new(move || {
                        let Ok(vk) = p256::ecdsa::VerifyingKey::from_sec1_bytes(point) else {
                            return false;
                        };
                        p256::ecdsa::Signature::from_slice(black_box(sig))
                            .is_ok_and(|s| vk.verify(msg, &s).is_ok())
                    }),
                ),
            ]
        }
        KeyMaterial::Ed25519 {
            public,
            precomputed,
        } => eddsa(public, precomputed, msg, sig),
    }
}

/// The one-time costs of `p256_fast`: the first verification with a fresh
/// key (builds the generator's table, once per VM, and the key's), then a
/// key's table alone (median of 5 new keys from the same point).
fn ec_setup(point: &[u8], public: &EcPublicKey, msg: &[u8], sig: &[u8]) -> String {
    let t0 = Instant::now();
    assert!(public.verify(msg, sig));
    let first_us = t0.elapsed().as_secs_f64() * 1e6;
    let mut tables: Vec<f64> = (0..5)
        .map(|_| {
            let t0 = Instant::now();
            let k = EcPublicKey::new(black_box(point)).expect("point");
            assert!(k.precompute());
            t0.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    tables.sort_by(f64::total_cmp);
    format!(
        " first-verify={first_us:.0}us key-table={:.0}us ({} bytes)",
        tables[2],
        mpass_guard::p256_fast::table_bytes(mpass_guard::p256_fast::Q_WINDOW)
    )
}

/// Times the gateway's signing (issue 13) per algorithm: `Gateway::sign` on
/// a typical minted claims object, the path the filter takes when it mints.
fn signing(scale: u32, filter: &str) {
    use mpass_guard::signing::{Gateway, GatewayConfig};
    let keys: [(&str, &str, &str, u32); 3] = [
        (
            "sign ES256",
            "ES256",
            include_str!("../../../tests/keys/ec-p256.pem"),
            200,
        ),
        (
            "sign EdDSA",
            "EdDSA",
            include_str!("../../../tests/keys/ed25519.pem"),
            200,
        ),
        (
            "sign RS256 2048",
            "RS256",
            include_str!("../../../tests/keys/rsa-a.pem"),
            20,
        ),
    ];
    let claims = serde_json::to_vec(&serde_json::json!({
        "iss": "https://gw.example", "aud": "client-a", "sub": "Hq3xYw0sB3J2m5Q0k0VYHk8m6gSDuSdzLZdXo7qNx4s",
        "iat": 1_795_694_400, "exp": 1_795_694_700, "jti": "9f2cKqJ3l0S1aVbQx8w4Zg",
        "contract_version": "3f2a9c1d", "given_name": "Maija", "family_name": "Meikäläinen",
        "urn:mpass.id:schoolCode": ["00001"], "urn:mpass.id:role": ["1.2.246.562.10.00000000001;00001;7A;1"],
    }))
    .expect("json");
    println!("best (median) us per signature; 5 rounds of n after a warm-up");
    for (name, alg, pem, n) in keys {
        if !name.contains(filter) {
            continue;
        }
        let wire: GatewayConfig = serde_json::from_value(serde_json::json!({
            "issuer": "https://gw.example",
            "keys": [{ "kid": "k", "alg": alg, "private_key_env": "KEY", "sign": true }],
        }))
        .expect("wire");
        let t0 = Instant::now();
        let gw = Gateway::compile(&wire, "gateway", &|_| Some(pem.to_owned())).expect("key");
        let load_us = t0.elapsed().as_secs_f64() * 1e6;
        let (best, median) = time(&|| gw.sign(black_box(&claims)).is_ok(), n * scale);
        println!(
            "{name:<16} {best:8.1} ({median:8.1})  n={} key-load={load_us:.0}us",
            n * scale
        );
        if name == "sign EdDSA" {
            minting(pem, n * scale);
        }
    }
}

/// The whole mint with EdDSA (`minted::SignedToken::mint`): pairwise `sub`
/// (HMAC-SHA256), the `jti` (16 bytes from WASI `random_get`), the claims
/// JSON, base64url and the signature.
fn minting(pem: &str, n: u32) {
    use mpass_guard::minted::{SignedToken, SignedTokenConfig, Source};
    use mpass_guard::signing::{Gateway, GatewayConfig};
    let wire: GatewayConfig = serde_json::from_value(serde_json::json!({
        "issuer": "https://gw.example", "pairwise_key_env": "PAIRWISE",
        "keys": [{ "kid": "k", "alg": "EdDSA", "private_key_env": "KEY", "sign": true }],
    }))
    .expect("wire");
    let env = |name: &str| {
        Some(if name == "KEY" {
            pem.to_owned()
        } else {
            "k".repeat(32)
        })
    };
    let gw = Gateway::compile(&wire, "gateway", &env).expect("gateway");
    let st = SignedToken::compile(
        &SignedTokenConfig::default(),
        "st",
        "studeo",
        "client-a",
        Some(&gw),
        &mut Vec::new(),
    )
    .expect("signed_token");
    let released = serde_json::json!({
        "given_name": "Maija", "family_name": "Meikäläinen", "urn:mpass.id:schoolCode": ["00001"],
        "urn:mpass.id:role": ["1.2.246.562.10.00000000001;00001;7A;1"],
    });
    let released = released.as_object().expect("object");
    let source = Source {
        issuer: "https://mpass-proxy.csc.fi",
        subject: "MPASSOID.c5fe0bd0dcb09e1e0d7e2f",
        exp: u64::MAX,
    };
    let (best, median) = time(
        &|| {
            st.mint(&gw, black_box(released), &source, "3f2a9c1d", 1_795_694_400)
                .is_ok()
        },
        n,
    );
    println!("{:<16} {best:8.1} ({median:8.1})  n={n}", "mint EdDSA");
}

/// EdDSA: `ed25519_fast` and ring, then the alternatives measured for it:
/// ed25519-dalek's `verify` (key decoded once), curve25519-dalek's
/// `vartime_double_scalar_mul_basepoint` (ring's algorithm, key decoded
/// once or on every call), its `VartimePrecomputedMultiscalarMul` with `B`
/// and `-A` as static points, and comb tables of other radices for `-A`;
/// and SHA-512 of `R || A || M` alone, ring's against the `sha2` crate.
fn eddsa<'a>(
    public: &'a [u8; 32],
    precomputed: &'a mpass_guard::ed25519_fast::Ed25519PublicKey,
    msg: &'a [u8],
    sig: &'a [u8],
) -> Vec<(&'static str, Check<'a>)> {
    use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, ED25519_BASEPOINT_TABLE};
    use curve25519_dalek::edwards::{
        CompressedEdwardsY, EdwardsBasepointTableRadix256, EdwardsBasepointTableRadix32,
        EdwardsBasepointTableRadix64, EdwardsPoint, VartimeEdwardsPrecomputation,
    };
    use curve25519_dalek::scalar::Scalar;
    use curve25519_dalek::traits::{BasepointTable as _, VartimePrecomputedMultiscalarMul as _};
    use sha2::{Digest as _, Sha512};

    let neg_a = -CompressedEdwardsY(*public).decompress().expect("point");
    let r: &'a [u8] = &sig[..32];
    let s_bytes: [u8; 32] = sig[32..].try_into().expect("64-byte signature");
    let h = move || {
        let mut d = Sha512::new();
        d.update(r);
        d.update(public);
        d.update(msg);
        Scalar::from_bytes_mod_order_wide(&d.finalize().into())
    };
    let s = move || Option::<Scalar>::from(Scalar::from_canonical_bytes(black_box(s_bytes)));
    let vk = ed25519_dalek::VerifyingKey::from_bytes(public).expect("ed25519-dalek key");
    let pre = VartimeEdwardsPrecomputation::new([ED25519_BASEPOINT_POINT, neg_a]);
    // Boxed one at a time: a radix-256 table is ~490 KB, half the stack.
    let t32 = boxed(|| EdwardsBasepointTableRadix32::create(&neg_a));
    let t64 = boxed(|| EdwardsBasepointTableRadix64::create(&neg_a));
    let b256 = boxed(|| EdwardsBasepointTableRadix256::create(&ED25519_BASEPOINT_POINT));
    let t256 = boxed(|| EdwardsBasepointTableRadix256::create(&neg_a));
    vec![
        (
            "ed25519_fast",
            Box::new(move || precomputed.verify(msg, black_box(sig))),
        ),
        (
            "ring",
            Box::new(move || {
                UnparsedPublicKey::new(&signature::ED25519, public)
                    .verify(msg, black_box(sig))
                    .is_ok()
            }),
        ),
        (
            "ed25519-dalek",
            Box::new(move || {
                use ed25519_dalek::Verifier as _;
                let sig = ed25519_dalek::Signature::from_slice(black_box(sig)).expect("sig");
                vk.verify(msg, &sig).is_ok()
            }),
        ),
        (
            "dalek-vartime",
            Box::new(move || {
                let Some(s) = s() else { return false };
                let p = EdwardsPoint::vartime_double_scalar_mul_basepoint(&h(), &neg_a, &s);
                p.compress().as_bytes() == r
            }),
        ),
        (
            "dalek-vartime+key",
            Box::new(move || {
                let Some(s) = s() else { return false };
                let Some(a) = CompressedEdwardsY(*black_box(public)).decompress() else {
                    return false;
                };
                let p = EdwardsPoint::vartime_double_scalar_mul_basepoint(&h(), &-a, &s);
                p.compress().as_bytes() == r
            }),
        ),
        (
            "dalek-precomp-straus",
            Box::new(move || {
                let Some(s) = s() else { return false };
                let p = pre.vartime_multiscalar_mul([s, h()]);
                p.compress().as_bytes() == r
            }),
        ),
        (
            "radix32",
            Box::new(move || {
                let Some(s) = s() else { return false };
                let p = ED25519_BASEPOINT_TABLE.mul_base(&s) + t32.mul_base(&h());
                p.compress().as_bytes() == r
            }),
        ),
        (
            "radix64",
            Box::new(move || {
                let Some(s) = s() else { return false };
                let p = ED25519_BASEPOINT_TABLE.mul_base(&s) + t64.mul_base(&h());
                p.compress().as_bytes() == r
            }),
        ),
        (
            "radix256(B,A)",
            Box::new(move || {
                let Some(s) = s() else { return false };
                let p = b256.mul_base(&s) + t256.mul_base(&h());
                p.compress().as_bytes() == r
            }),
        ),
        (
            "sha512-sha2",
            Box::new(move || {
                black_box(h());
                true
            }),
        ),
        (
            "sha512-ring",
            Box::new(move || {
                let mut d = ring::digest::Context::new(&ring::digest::SHA512);
                d.update(r);
                d.update(black_box(public));
                d.update(msg);
                black_box(d.finish());
                true
            }),
        ),
    ]
}

/// The one-time costs of an Ed25519 key: decoding it (`Ed25519PublicKey::new`,
/// at JWKS parse) and building its table of `-A` (on first use), medians of
/// 5 (on the clock of the rounds, see [`time`]), and the table's size.
fn ed_setup(public: &[u8; 32]) -> String {
    use mpass_guard::ed25519_fast::{Ed25519PublicKey, TABLE_BYTES};
    let median = |f: &dyn Fn() -> f64| {
        let mut t: Vec<f64> = (0..5).map(|_| f()).collect();
        t.sort_by(f64::total_cmp);
        t[2]
    };
    let decode = median(&|| {
        let t0 = now();
        let k = Ed25519PublicKey::new(*black_box(public));
        assert!(black_box(&k).is_point());
        (now() - t0) * 1e6
    });
    let table = median(&|| {
        let k = Ed25519PublicKey::new(*black_box(public));
        let t0 = now();
        assert!(k.precompute());
        (now() - t0) * 1e6
    });
    format!(" key-decode={decode:.1}us key-table={table:.0}us ({TABLE_BYTES} bytes)")
}

#[inline(never)]
fn boxed<T>(make: impl FnOnce() -> T) -> Box<T> {
    Box::new(make())
}

/// Process CPU time: WASI `clock_time_get(process_cputime_id)` in Wasm
/// (wasi-libc does not offer `CLOCK_PROCESS_CPUTIME_ID`), `clock_gettime`
/// natively.
#[cfg(target_arch = "wasm32")]
fn cpu_seconds() -> f64 {
    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    extern "C" {
        fn clock_time_get(id: u32, precision: u64, time: *mut u64) -> u16;
    }
    let mut ns = 0u64;
    // SAFETY: `ns` is a valid, writable u64; clock 2 is process_cputime_id.
    let errno = unsafe { clock_time_get(2, 1, &mut ns) };
    assert_eq!(errno, 0, "clock_time_get(process_cputime_id)");
    ns as f64 * 1e-9
}

#[cfg(not(target_arch = "wasm32"))]
fn cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID)");
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}
