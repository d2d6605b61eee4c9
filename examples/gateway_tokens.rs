//! Mints gateway-signed tokens (issue 13) with `signing` and `minted` for
//! `tests/e2e/test_signed_token_verifiers.py`, which serves the printed
//! discovery documents and JWKS over HTTP and hands the tokens to two
//! independent verifiers (jose, PyJWT). Test tooling, not a product CLI.
//!
//!   cargo run --example gateway_tokens -- BASE_URL
//!
//! Prints one JSON object: `sites` (per name: `issuer`, `discovery_path`,
//! `discovery`, `jwks_path`, `jwks`) and `tokens` (per name: `site`, `aud`,
//! `token`). Keys are the test keys under `tests/keys/`.

use std::time::{SystemTime, UNIX_EPOCH};

use mpass_guard::minted::{SignedToken, SignedTokenConfig, Source};
use mpass_guard::signing::{Gateway, GatewayConfig};
use serde_json::{json, Map, Value};

/// The VM environment of the example: the committed test keys, a fresh
/// Ed25519 key (`FRESH_ED_KEY`, the successor in the rotation) and a pairwise key.
fn key_env(name: &str) -> Option<String> {
    let file = match name {
        "EC_KEY" => "ec-p256.pem",
        "ED_KEY" => "ed25519.pem",
        "RSA_KEY" => "rsa-a.pem",
        "FRESH_ED_KEY" => return FRESH_ED_KEY.with(|k| k.clone()),
        "PAIRWISE_KEY" => return Some("an example pairwise key, 32+ bytes long".into()),
        _ => return None,
    };
    std::fs::read_to_string(format!("{}/tests/keys/{file}", env!("CARGO_MANIFEST_DIR"))).ok()
}

thread_local! {
    static FRESH_ED_KEY: Option<String> = fresh_ed25519_pem();
}

fn fresh_ed25519_pem() -> Option<String> {
    use base64::Engine as _;
    let der =
        ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).ok()?;
    let body = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    Some(format!(
        "-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n"
    ))
}

fn gateway(issuer: &str, jwks_path: &str, keys: Value) -> Result<Gateway, String> {
    let wire: GatewayConfig = serde_json::from_value(json!({
        "issuer": issuer, "jwks_path": jwks_path, "keys": keys, "pairwise_key_env": "PAIRWISE_KEY",
    }))
    .map_err(|e| e.to_string())?;
    Gateway::compile(&wire, "gateway", &key_env).map_err(|e| e.to_string())
}

fn key(kid: &str, alg: &str, var: &str, sign: bool) -> Value {
    json!({ "kid": kid, "alg": alg, "private_key_env": var, "sign": sign })
}

fn site(gw: &Gateway) -> Result<Value, String> {
    let parse = |s: &str| serde_json::from_str::<Value>(s).map_err(|e| e.to_string());
    Ok(json!({
        "issuer": gw.issuer(),
        "discovery_path": gw.discovery_path(),
        "discovery": parse(gw.discovery_json())?,
        "jwks_path": gw.jwks_path(),
        "jwks": parse(gw.jwks_json())?,
    }))
}

fn mint(gw: &Gateway, provider: &str, now: u64, exp: u64) -> Result<(String, String), String> {
    let audience = format!("{provider}-client");
    let mut warnings = Vec::new();
    let st = SignedToken::compile(
        &SignedTokenConfig::default(),
        "signed_token",
        provider,
        &audience,
        Some(gw),
        &mut warnings,
    )
    .map_err(|e| e.to_string())?;
    let released: Map<String, Value> = json!({
        "given_name": "Maija",
        "urn:mpass.id:schoolCode": ["00001"],
    })
    .as_object()
    .cloned()
    .unwrap_or_default();
    let source = Source {
        issuer: "https://mpass-proxy.csc.fi",
        subject: "MPASSOID.c5fe0bd0dcb09e1e0d7e2f",
        exp,
    };
    let m = st
        .mint(gw, &released, &source, "example-contract-v1", now)
        .map_err(|e| e.to_string())?;
    Ok((audience, m.token))
}

fn run() -> Result<Value, String> {
    let base = std::env::args()
        .nth(1)
        .ok_or("usage: gateway_tokens BASE_URL")?;
    let base = base.trim_end_matches('/');
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();

    let mut sites = Map::new();
    let mut tokens = Map::new();
    let mut add_token = |name: &str, site: &str, (aud, token): (String, String)| {
        tokens.insert(
            name.into(),
            json!({ "site": site, "aud": aud, "token": token }),
        );
    };

    for (name, alg, var) in [
        ("es256", "ES256", "EC_KEY"),
        ("eddsa", "EdDSA", "ED_KEY"),
        ("rs256", "RS256", "RSA_KEY"),
    ] {
        let gw = gateway(
            &format!("{base}/{name}"),
            &format!("/{name}/jwks.json"),
            json!([key(&format!("{name}-1"), alg, var, true)]),
        )?;
        sites.insert(name.into(), site(&gw)?);
        add_token(name, name, mint(&gw, "studeo", now, now + 3600)?);
        if name == "eddsa" {
            add_token("eddsa-shop", name, mint(&gw, "shop", now, now + 3600)?);
            // Minted 20 minutes ago from an MPASSid token that expired 10 minutes ago.
            add_token(
                "eddsa-expired",
                name,
                mint(&gw, "studeo", now - 1200, now - 600)?,
            );
        }
    }

    // Rotation at one issuer, both keys EdDSA (so only the key set
    // changes): the old key signs; then a new key signs while the old one
    // stays published; then the old one is gone.
    let issuer = format!("{base}/rot");
    let old = key("rot-old", "EdDSA", "ED_KEY", true);
    let before = gateway(&issuer, "/rot/jwks.json", json!([old]))?;
    let during = gateway(
        &issuer,
        "/rot/jwks.json",
        json!([
            key("rot-new", "EdDSA", "FRESH_ED_KEY", true),
            key("rot-old", "EdDSA", "ED_KEY", false)
        ]),
    )?;
    let after = gateway(
        &issuer,
        "/rot/jwks.json",
        json!([key("rot-new", "EdDSA", "FRESH_ED_KEY", true)]),
    )?;
    sites.insert("rot-before".into(), site(&before)?);
    sites.insert("rot-during".into(), site(&during)?);
    sites.insert("rot-after".into(), site(&after)?);
    add_token(
        "rot-old",
        "rot-before",
        mint(&before, "studeo", now, now + 3600)?,
    );
    add_token(
        "rot-new",
        "rot-during",
        mint(&during, "studeo", now, now + 3600)?,
    );

    Ok(json!({ "sites": sites, "tokens": tokens }))
}

fn main() {
    match run() {
        Ok(v) => println!("{v}"),
        Err(e) => {
            eprintln!("gateway_tokens: {e}");
            std::process::exit(1);
        }
    }
}
