//! The gateway-signed token (issue 13) through the configuration and the
//! engine: `gateway` and `contract.signed_token` are compiled and checked at
//! load (every refusal at its field path); an admitted request carries a
//! token whose claims are exactly the contract's release plus the
//! registered ones; the token is cached with the verified token and
//! re-minted only near its end; the gateway's JWKS and discovery document
//! are answered by the engine itself. Tokens are minted at test time from
//! `tests/keys`; the clock is fixed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use mpass_guard::alg::Alg;
use mpass_guard::config::{Config, ConfigErrors};
use mpass_guard::mint;
use serde_json::{json, Map, Value};

mod common;
use common::{fixture_claims, jwks, key, key_path, shop_contract, ISS};

/// 2026-11-26T12:00:00Z.
const NOW_S: u64 = 1_795_694_400;
const PAIRWISE: &str = "signed-token-test-pairwise-key-0123456789";

fn env(name: &str) -> Option<String> {
    match name {
        "ED_KEY" => std::fs::read_to_string(key_path("ed25519.pem")).ok(),
        "EC_KEY" => std::fs::read_to_string(key_path("ec-p256.pem")).ok(),
        "RSA_KEY" => std::fs::read_to_string(key_path("rsa-a.pem")).ok(),
        "PAIRWISE_KEY" => Some(PAIRWISE.to_owned()),
        "NOT_PEM" => Some("not a key at all".to_owned()),
        _ => None,
    }
}

fn config_json() -> Value {
    let mut shop = shop_contract();
    shop["signed_token"] = json!({});
    let mut lms = shop_contract();
    lms["signed_token"] =
        json!({ "header": "authorization", "sub": "original", "lifetime": "60s" });
    json!({
        "issuers": [{
            "issuer": ISS,
            "local_jwks": {"inline_string": jwks(&[("rsa-a.pem", "rsa-a")])},
            "allowed_algorithms": ["RS256"]
        }],
        "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
        "gateway": {
            "issuer": "https://gw.example.fi",
            "hosts": ["gw.example.fi"],
            "keys": [
                { "kid": "ed-2", "alg": "EdDSA", "private_key_env": "ED_KEY", "sign": true },
                { "kid": "ec-1", "alg": "ES256", "private_key_env": "EC_KEY" }
            ],
            "pairwise_key_env": "PAIRWISE_KEY"
        },
        "providers": {
            "webshop": {
                "audiences": ["studeo-webshop", "second-audience"],
                "match": {"path_prefixes": ["/shop/"]},
                "contract": shop
            },
            "lms": {
                "audiences": ["legacy-lms"],
                "match": {"path_prefixes": ["/lms/"]},
                "contract": lms
            },
            "plain": {
                "audiences": ["studeo-webshop"],
                "match": {"path_prefixes": ["/plain/"]},
                "contract": shop_contract()
            }
        }
    })
}

fn load(v: &Value) -> Result<Config, ConfigErrors> {
    Config::load(&serde_json::to_vec(v).unwrap(), &env)
}

/// Every error of a refused configuration, as `path: message` lines.
fn errors(v: &Value) -> Vec<String> {
    match load(v) {
        Ok(_) => vec!["<accepted>".to_owned()],
        Err(e) => e.all().iter().map(ToString::to_string).collect(),
    }
}

fn refused_at(v: &Value, path: &str, words: &str) {
    let errs = errors(v);
    assert!(
        errs.iter()
            .any(|e| e.starts_with(&format!("{path}: ")) && e.contains(words)),
        "{path} / {words}: {errs:?}"
    );
}

#[test]
fn a_gateway_and_signed_tokens_compile_per_provider() {
    let c = load(&config_json()).unwrap();
    let gw = c.gateway.as_ref().unwrap();
    assert_eq!(gw.issuer(), "https://gw.example.fi");
    assert_eq!(gw.signing_key().kid(), "ed-2");
    let by_id = |id: &str| c.providers.iter().find(|p| p.id == id).unwrap();
    let shop = by_id("webshop").signed_token.as_ref().unwrap();
    // `aud` is the provider's first audience.
    assert_eq!(shop.audience(), "studeo-webshop");
    assert_eq!(shop.lifetime(), 300);
    let lms = by_id("lms").signed_token.as_ref().unwrap();
    assert_eq!(lms.lifetime(), 60);
    assert_eq!(lms.audience(), "legacy-lms");
    assert!(by_id("plain").signed_token.is_none());
}

#[test]
fn an_original_subject_is_a_warning_at_its_path() {
    let c = load(&config_json()).unwrap();
    let w: Vec<String> = c.warnings.iter().map(ToString::to_string).collect();
    assert!(
        w.iter().any(
            |w| w.starts_with("providers.lms.contract.signed_token.sub: ") && w.contains("link")
        ),
        "{w:?}"
    );
    assert!(
        !w.iter().any(|w| w.starts_with("providers.webshop")),
        "{w:?}"
    );
}

#[test]
fn a_missing_or_malformed_key_is_refused_at_its_path() {
    let mut v = config_json();
    v["gateway"]["keys"][1]["private_key_env"] = json!("UNSET_KEY");
    refused_at(
        &v,
        "gateway.keys[1].private_key_env",
        "UNSET_KEY is not set",
    );
    let mut v = config_json();
    v["gateway"]["keys"][0]["private_key_env"] = json!("NOT_PEM");
    refused_at(&v, "gateway.keys[0].private_key_env", "not a PKCS#8 PEM");
    // The refused key's text never appears in the message.
    assert!(!errors(&v).iter().any(|e| e.contains("not a key at all")));
    // A key of another kind than its algorithm.
    let mut v = config_json();
    v["gateway"]["keys"][1]["private_key_env"] = json!("RSA_KEY");
    refused_at(&v, "gateway.keys[1].private_key_env", "P-256");
}

#[test]
fn a_refused_gateway_is_reported_once_not_again_per_provider() {
    let mut v = config_json();
    v["gateway"]["keys"][0]["private_key_env"] = json!("NOT_PEM");
    let errs = errors(&v);
    assert_eq!(errs.len(), 1, "{errs:?}");
}

#[test]
fn an_unsupported_algorithm_is_refused() {
    for alg in ["HS256", "PS256", "RS512", "none"] {
        let mut v = config_json();
        v["gateway"]["keys"][1]["alg"] = json!(alg);
        refused_at(&v, "gateway.keys[1].alg", "unsupported signing algorithm");
    }
}

#[test]
fn a_lifetime_above_the_limit_is_refused() {
    let mut v = config_json();
    v["providers"]["webshop"]["contract"]["signed_token"]["lifetime"] = json!("3601s");
    refused_at(
        &v,
        "providers.webshop.contract.signed_token.lifetime",
        "at most 3600s",
    );
}

#[test]
fn a_signed_token_without_a_gateway_block_is_refused() {
    let mut v = config_json();
    v.as_object_mut().unwrap().remove("gateway");
    refused_at(
        &v,
        "providers.webshop.contract.signed_token",
        "top-level `gateway`",
    );
}

#[test]
fn the_token_header_is_owned_and_cannot_clash_with_another_contract_header() {
    let mut v = config_json();
    v["providers"]["webshop"]["contract"]["signed_token"]["header"] = json!("x-shop-first-name");
    refused_at(
        &v,
        "providers.webshop.contract.signed_token.header",
        "already used",
    );
    let mut v = config_json();
    v["providers"]["webshop"]["contract"]["payload_header"] = json!("x-mpass-token");
    let errs = errors(&v);
    assert!(errs.iter().any(|e| e.contains("already used")), "{errs:?}");
    // Not a credential or proxy header, except `authorization` (Bearer).
    for bad in ["cookie", "x-forwarded-user", "X-Upper"] {
        let mut v = config_json();
        v["providers"]["webshop"]["contract"]["signed_token"]["header"] = json!(bad);
        refused_at(&v, "providers.webshop.contract.signed_token.header", "");
    }
    // The header cannot also carry the MPASSid token.
    let mut v = config_json();
    v["providers"]["webshop"]["contract"]["signed_token"]["header"] = json!("x-shop-token");
    v["from_headers"] = json!([{"name": "x-shop-token"}]);
    refused_at(&v, "from_headers[0].name", "identity header");
}

#[test]
fn replacing_authorization_while_forwarding_the_token_is_refused() {
    let mut v = config_json();
    v["providers"]["lms"]["contract"]["forward_token"] = json!(true);
    refused_at(
        &v,
        "providers.lms.contract.signed_token.header",
        "forward_token",
    );
}

#[test]
fn the_signed_token_settings_are_part_of_the_contract_version() {
    let c = load(&config_json()).unwrap();
    let version = |c: &Config, id: &str| {
        c.providers
            .iter()
            .find(|p| p.id == id)
            .unwrap()
            .contract
            .version()
            .to_owned()
    };
    // Same release, one with a signed token: different versions.
    assert_ne!(version(&c, "webshop"), version(&c, "plain"));
    let mut v = config_json();
    v["providers"]["webshop"]["contract"]["signed_token"]["lifetime"] = json!("120s");
    assert_ne!(
        version(&load(&v).unwrap(), "webshop"),
        version(&c, "webshop")
    );
}

/// An MPASSid token (RS256, `rsa-a`) for these claims, valid for an hour.
fn mpassid_token(claims: &Map<String, Value>, aud: &str) -> String {
    let mut c = claims.clone();
    c.insert("iss".into(), json!(ISS));
    c.insert("aud".into(), json!(aud));
    c.insert("iat".into(), json!(NOW_S - 60));
    c.insert("exp".into(), json!(NOW_S + 3600));
    let payload = serde_json::to_vec(&Value::Object(c)).unwrap();
    mint::sign_compact(
        Alg::RS256,
        &key("rsa-a.pem"),
        &json!({"typ": "JWT", "kid": "rsa-a"}),
        &payload,
    )
    .unwrap()
}

#[test]
fn the_release_carries_typed_claims_when_a_signed_token_is_set() {
    let c = load(&config_json()).unwrap();
    let staff = fixture_claims("staff");
    let by_id = |id: &str| c.providers.iter().find(|p| p.id == id).unwrap();
    let release = by_id("webshop").contract.apply(&staff).unwrap();
    let claims = release.claims.unwrap();
    let mut names: Vec<&str> = claims.keys().map(String::as_str).collect();
    names.sort_unstable();
    let mut released = release.released.clone();
    released.sort_unstable();
    assert_eq!(names, released);
    // Without payload header or signed token no map is built.
    assert!(by_id("plain")
        .contract
        .apply(&staff)
        .unwrap()
        .claims
        .is_none());
    let _ = mpassid_token(&staff, "studeo-webshop");
}

#[test]
fn explain_shows_the_minted_claims_for_a_sample() {
    use mpass_guard::explain::{explain, ClaimsSource};
    let c = load(&config_json()).unwrap();
    let mut sample = fixture_claims("staff");
    sample.insert("iss".into(), json!(ISS));
    sample.insert("aud".into(), json!("studeo-webshop"));
    sample.insert("iat".into(), json!(NOW_S));
    sample.insert("exp".into(), json!(NOW_S + 3600));
    let out = explain(&c, Some("webshop"), Some((&sample, ClaimsSource::File))).unwrap();
    assert!(
        out.contains(
            "signed token      x-mpass-token (aud studeo-webshop, sub pairwise, lifetime 300s)"
        ),
        "{out}"
    );
    let line = out
        .lines()
        .skip_while(|l| !l.contains("at the sample's iat"))
        .nth(1)
        .unwrap_or_else(|| panic!("{out}"));
    let claims: Map<String, Value> = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(claims["iss"], "https://gw.example.fi");
    assert_eq!(claims["aud"], "studeo-webshop");
    assert_eq!(claims["iat"], NOW_S);
    assert_eq!(claims["exp"], NOW_S + 300);
    let shop = c.providers.iter().find(|p| p.id == "webshop").unwrap();
    let release = shop.contract.apply(&sample).unwrap();
    let mut names: Vec<&str> = claims.keys().map(String::as_str).collect();
    names.sort_unstable();
    let mut expected: Vec<&str> = release.released.clone();
    expected.extend(["iss", "aud", "sub", "iat", "exp", "contract_version"]);
    expected.sort_unstable();
    assert_eq!(names, expected);
}

// ------------------------------------------------------------------ engine

use mpass_guard::engine::{Engine, Outcome, Request, VmState};
use mpass_guard::keys::KeySet;
use mpass_guard::signing::peek_claims;
use mpass_guard::verify::Untrusted;

fn engine() -> Engine {
    Engine::new(load(&config_json()).unwrap())
}

fn request(
    engine: &Engine,
    vm: &mut VmState,
    method: &str,
    authority: &str,
    path: &str,
    extra: &[(&str, &str)],
    now_s: u64,
) -> Outcome {
    let mut headers = vec![
        (":authority".to_owned(), authority.to_owned()),
        (":path".to_owned(), path.to_owned()),
        (":method".to_owned(), method.to_owned()),
    ];
    headers.extend(
        extra
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned())),
    );
    let req = Request {
        headers: &headers,
        route_name: None,
        raw: &[],
    };
    engine.handle(&req, now_s * 1000, vm, false)
}

fn staff_token() -> String {
    mpassid_token(&fixture_claims("staff"), "studeo-webshop")
}

fn get(engine: &Engine, vm: &mut VmState, path: &str, token: &str, now_s: u64) -> Outcome {
    let bearer = format!("Bearer {token}");
    request(
        engine,
        vm,
        "GET",
        "app.example.fi",
        path,
        &[("authorization", &bearer), ("x-mpass-token", "forged")],
        now_s,
    )
}

/// Every header the upstream gets, by name.
fn set_headers(d: &Outcome) -> Vec<(String, String)> {
    d.decision
        .headers()
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect()
}

fn minted_of(d: &Outcome, name: &str) -> String {
    assert!(d.decision.response().is_none(), "{:?}", d.decision);
    let values: Vec<String> = set_headers(d)
        .into_iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v)
        .collect();
    assert_eq!(values.len(), 1, "{values:?}");
    values[0].clone()
}

#[test]
fn an_admitted_request_carries_a_token_with_exactly_the_release_verifiable_with_the_jwks() {
    let e = engine();
    // The same configuration, for its contract and JWKS.
    let cfg = load(&config_json()).unwrap();
    let d = get(&e, &mut e.new_state(), "/shop/x", &staff_token(), NOW_S);
    let token = minted_of(&d, "x-mpass-token");
    // The client's copy of the header is removed first.
    let removed = d.decision.removals();
    assert!(removed.iter().any(|n| n == "x-mpass-token"), "{removed:?}");
    let claims = peek_claims(&token).unwrap();
    let shop = cfg.providers.iter().find(|p| p.id == "webshop").unwrap();
    let release = shop.contract.apply(&fixture_claims("staff")).unwrap();
    for (name, value) in release.claims.as_ref().unwrap() {
        assert_eq!(&claims[name], value, "{name}");
    }
    let extra: Vec<&String> = claims
        .keys()
        .filter(|k| !release.claims.as_ref().unwrap().contains_key(*k))
        .collect();
    assert_eq!(
        extra,
        ["aud", "contract_version", "exp", "iat", "iss", "jti", "sub"]
    );
    assert_eq!(claims["contract_version"], shop.contract.version());
    assert_ne!(claims["sub"], fixture_claims("staff")["sub"]);
    // Verified with the published JWKS by the filter's own verifier.
    let gw = cfg.gateway.as_ref().unwrap();
    let (set, _) = KeySet::parse(gw.jwks_json().as_bytes(), &[Alg::EdDSA, Alg::ES256]).unwrap();
    let (verified, _) = Untrusted::decode(&token, 16_384)
        .unwrap()
        .verify_with_keyset(&set)
        .unwrap();
    assert_eq!(verified.issuer(), Some("https://gw.example.fi"));
}

#[test]
fn the_minted_token_is_cached_with_the_verified_token_and_reminted_near_its_end() {
    let e = engine();
    let vm = &mut e.new_state();
    let t = staff_token();
    let first = minted_of(&get(&e, vm, "/shop/x", &t, NOW_S), "x-mpass-token");
    assert_eq!(
        minted_of(&get(&e, vm, "/shop/y", &t, NOW_S + 240), "x-mpass-token"),
        first
    );
    let later = minted_of(&get(&e, vm, "/shop/y", &t, NOW_S + 241), "x-mpass-token");
    assert_ne!(later, first);
    assert_eq!(peek_claims(&later).unwrap()["iat"], NOW_S + 241);
    // Another MPASSid token gets its own.
    let mut claims = fixture_claims("staff");
    claims.insert("nonce".into(), json!("another-login"));
    let other = mpassid_token(&claims, "studeo-webshop");
    assert_ne!(
        minted_of(
            &get(&e, vm, "/shop/y", &other, NOW_S + 241),
            "x-mpass-token"
        ),
        later
    );
}

#[test]
fn authorization_carries_a_bearer_token_replacing_the_clients() {
    let e = engine();
    let t = mpassid_token(&fixture_claims("staff"), "legacy-lms");
    let d = get(&e, &mut e.new_state(), "/lms/x", &t, NOW_S);
    let value = minted_of(&d, "authorization");
    let token = value.strip_prefix("Bearer ").unwrap();
    assert_ne!(token, t);
    let claims = peek_claims(token).unwrap();
    assert_eq!(claims["aud"], "legacy-lms");
    assert_eq!(claims["sub"], fixture_claims("staff")["sub"]);
    assert_eq!(claims["exp"], NOW_S + 60);
}

#[test]
fn a_provider_without_a_signed_token_gets_none() {
    let e = engine();
    let d = get(&e, &mut e.new_state(), "/plain/x", &staff_token(), NOW_S);
    assert!(d.decision.response().is_none());
    assert!(!set_headers(&d).iter().any(|(n, _)| n == "x-mpass-token"));
}

#[test]
fn the_gateway_answers_its_jwks_and_discovery_before_any_provider() {
    let e = engine();
    let cfg = load(&config_json()).unwrap();
    let gw = cfg.gateway.as_ref().unwrap();
    let vm = &mut e.new_state();
    for (method, path, body) in [
        ("GET", "/.well-known/mpass-guard/jwks.json", gw.jwks_json()),
        (
            "GET",
            "/.well-known/openid-configuration?x",
            gw.discovery_json(),
        ),
        ("HEAD", "/.well-known/mpass-guard/jwks.json", ""),
    ] {
        let d = request(&e, vm, method, "gw.example.fi", path, &[], NOW_S);
        let r = d
            .decision
            .response()
            .cloned()
            .unwrap_or_else(|| panic!("{method} {path}"));
        assert_eq!(r.status, 200);
        assert_eq!(r.body, body);
        assert!(r
            .headers
            .contains(&("cache-control".to_owned(), "public, max-age=300".to_owned())));
        assert!(d.audit.is_none());
    }
    // Another host or method: the request goes on as any other.
    let jwks = "/.well-known/mpass-guard/jwks.json";
    let d = request(&e, vm, "GET", "app.example.fi", jwks, &[], NOW_S);
    assert!(d.decision.response().is_none());
    let d = request(&e, vm, "POST", "gw.example.fi", jwks, &[], NOW_S);
    assert!(d.decision.response().is_none());
}

#[test]
fn a_token_too_close_to_its_end_for_a_minted_one_is_refused() {
    let e = engine();
    // Accepted within the 60 s clock skew, but already past its exp.
    let d = get(
        &e,
        &mut e.new_state(),
        "/shop/x",
        &staff_token(),
        NOW_S + 3630,
    );
    let r = d.decision.response().unwrap();
    assert_eq!(r.status, 401);
    assert!(r.body.contains("expired"), "{}", r.body);
}
