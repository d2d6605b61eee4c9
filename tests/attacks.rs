//! Attacks whose answer is the core's: the whole decision (`Engine::handle`)
//! for hostile requests, without Envoy. The real-Envoy corpus is
//! `tests/e2e/test_attacks.py`; these pin the same rules natively, with a
//! fixed clock.

// An integration test is a test crate: a failed expectation should panic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use mpass_guard::alg::Alg;
use mpass_guard::config::{normalise_path, Config};
use mpass_guard::engine::{Decision, Engine, Outcome, Request};
use mpass_guard::mint::{load_pem, public_jwk, sign_raw};
use serde_json::json;

mod common;
use common::{key_path, ISS};

const NOW: i64 = 1_795_694_400;

fn engine() -> Engine {
    let rsa_a = load_pem(key_path("rsa-a.pem")).unwrap();
    let jwk = public_jwk(&rsa_a, Some("rsa-a"), Some(Alg::RS256)).unwrap();
    let config = json!({
        "issuers": [{
            "issuer": ISS,
            "local_jwks": {"inline_string": json!({"keys": [jwk]}).to_string()},
            "allowed_algorithms": ["RS256"],
        }],
        "from_cookies": ["id_token"],
        "from_params": ["id_token"],
        "providers": {
            "shop": {
                "audiences": ["shop"],
                "match": {"path_prefixes": ["/shop/"]},
                "contract": {
                    "organisations": ["*"],
                    "release": {"uid": {}},
                },
            },
        },
    });
    Engine::new(Config::load(config.to_string().as_bytes(), &|_| None).unwrap())
}

fn token(header: &str, payload: &str) -> String {
    sign_raw(
        Alg::RS256,
        &load_pem(key_path("rsa-a.pem")).unwrap(),
        header.as_bytes(),
        payload.as_bytes(),
    )
    .unwrap()
}

fn valid() -> String {
    let claims = json!({"iss": ISS, "aud": "shop", "sub": "s", "iat": NOW, "exp": NOW + 600,
                        "urn:mpass.id:uid": "MPASSOID.u"});
    token(r#"{"alg":"RS256","kid":"rsa-a"}"#, &claims.to_string())
}

fn decide(path: &str, headers: &[(&str, &str)]) -> Outcome {
    let mut all = vec![
        (":authority".to_owned(), "localhost".to_owned()),
        (":path".to_owned(), path.to_owned()),
    ];
    all.extend(
        headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned())),
    );
    let engine = engine();
    let mut vm = engine.new_state();
    let req = Request {
        headers: &all,
        route_name: None,
        raw: &[],
    };
    engine.handle(&req, NOW as u64 * 1000, &mut vm, false)
}

fn reason(d: &Outcome) -> String {
    let r = d.decision.response().expect("a local reply");
    let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    body.get("reason")
        .or_else(|| body.get("error"))
        .and_then(|v| v.as_str())
        .unwrap()
        .to_owned()
}

#[test]
fn paths_that_a_normalising_upstream_reads_as_the_protected_prefix_need_a_token() {
    for path in [
        "//shop/basket",
        "///shop//basket",
        "/public/../shop/basket",
        "/./shop/basket",
        "/public/%2e%2e/shop/basket",
        "/public%2F..%2Fshop/basket",
        "/public/%2E%2E%5Cshop/basket",
        "\\shop\\basket",
        "/shop/../public/info",
        "/%73hop/basket",
    ] {
        let d = decide(path, &[]);
        assert_eq!(d.decision.response().map(|r| r.status), Some(401), "{path}");
    }
    for path in ["/public/info", "/shopping", "/sho/p/"] {
        assert_eq!(decide(path, &[]).decision.response(), None, "{path}");
    }
}

#[test]
fn path_normalisation_for_matching_follows_rfc_3986() {
    let cases = [
        ("", "/"),
        ("/", "/"),
        ("//a///b/", "/a/b/"),
        ("/a/./b/../c", "/a/c"),
        ("/a/b/..", "/a/"),
        ("/../../a", "/a"),
        ("/a%2fb/%2E%2e/c", "/a/c"),
        ("/a%20b/%zz", "/a%20b/%zz"),
        ("/ä/ö", "/ä/ö"),
    ];
    for (raw, want) in cases {
        assert_eq!(normalise_path(raw), want, "{raw}");
    }
}

#[test]
fn a_valid_token_passes_and_is_removed_from_every_carrier() {
    let t = valid();
    let d = decide("/shop/x", &[("authorization", &format!("bEaReR   {t}"))]);
    assert_eq!(d.decision.response(), None);
    assert!(d.decision.removals().contains(&"authorization".to_owned()));
    let d = decide(&format!("/shop/x?a=1&id%5Ftoken={t}"), &[]);
    assert_eq!(d.decision.response(), None);
    assert!(d
        .decision
        .byte_headers()
        .contains(&(":path".to_owned(), b"/shop/x?a=1".to_vec())));
}

#[test]
fn the_token_in_two_places_is_ambiguous_even_when_equal() {
    let t = valid();
    let cases: Vec<(String, Vec<(&str, String)>)> = vec![
        (
            "/shop/x".into(),
            vec![
                ("authorization", format!("Bearer {t}")),
                ("cookie", format!("id_token={t}")),
            ],
        ),
        (
            "/shop/x".into(),
            vec![("cookie", format!("id_token={t}; id_token={t}"))],
        ),
        (format!("/shop/x?id_token={t}&id_token={t}"), vec![]),
        (format!("/shop/x?id_token={t}&id_token="), vec![]),
        (
            "/shop/x".into(),
            vec![("authorization", format!("Bearer {t}, Bearer {t}"))],
        ),
    ];
    for (path, headers) in cases {
        let h: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        assert_eq!(
            reason(&decide(&path, &h)),
            "ambiguous_token",
            "{path} {headers:?}"
        );
    }
}

#[test]
fn hostile_headers_and_payloads_get_their_reasons() {
    let now = format!(
        r#""iss":"{ISS}","aud":"shop","iat":{NOW},"exp":{}"#,
        NOW + 600
    );
    let cases = [
        (
            r#"{"alg":"none"}"#.to_owned(),
            format!("{{{now}}}"),
            "unsupported_algorithm",
        ),
        (
            r#"{"alg":"NONE"}"#.to_owned(),
            format!("{{{now}}}"),
            "unsupported_algorithm",
        ),
        (
            r#"{"kid":"rsa-a"}"#.to_owned(),
            format!("{{{now}}}"),
            "unsupported_algorithm",
        ),
        (
            r#"{"alg":"RS384","kid":"rsa-a"}"#.to_owned(),
            format!("{{{now}}}"),
            "algorithm_not_allowed",
        ),
        (
            r#"{"alg":"RS256","kid":"../rsa-a"}"#.to_owned(),
            format!("{{{now}}}"),
            "unknown_key",
        ),
        (
            format!(r#"{{"alg":"RS256","kid":"{}"}}"#, "k".repeat(10240)),
            format!("{{{now}}}"),
            "unknown_key",
        ),
        (
            r#"{"alg":"RS256","kid":7}"#.to_owned(),
            format!("{{{now}}}"),
            "malformed",
        ),
        (
            r#"{"alg":"RS256","crit":["x"]}"#.to_owned(),
            format!("{{{now}}}"),
            "unsupported_critical_header",
        ),
        (
            r#"{"alg":"RS256","kid":"rsa-a"}"#.to_owned(),
            format!(r#"{{{now},"iss":"https://evil.example"}}"#),
            "duplicate_claim",
        ),
        (
            r#"{"alg":"RS256","kid":"rsa-a"}"#.to_owned(),
            format!(r#"{{{now},"nbf":"1"}}"#),
            "invalid_claim",
        ),
        (
            r#"{"alg":"RS256","kid":"rsa-a"}"#.to_owned(),
            format!(r#"{{"iss":"{ISS}","aud":["shop",1],"exp":{}}}"#, NOW + 60),
            "invalid_claim",
        ),
        (
            r#"{"alg":"RS256","kid":"rsa-a"}"#.to_owned(),
            format!(r#"{{{now},"x":{}{}}}"#, "[".repeat(500), "]".repeat(500)),
            "malformed",
        ),
    ];
    for (header, payload, want) in cases {
        let t = token(&header, &payload);
        let d = decide("/shop/x", &[("authorization", &format!("Bearer {t}"))]);
        assert_eq!(reason(&d), want, "{header} {payload:.80}");
    }
}

#[test]
fn identity_headers_are_removed_in_every_spelling_on_every_path() {
    let spoofed = [
        "x-mpass-uid",
        "X-MPASS-UID",
        "X_Mpass_Uid",
        "x_mpass-uid",
        "x-mpass_payload",
    ];
    for path in ["/public", "/shop/x"] {
        let headers: Vec<(&str, &str)> = spoofed.iter().map(|n| (*n, "spoofed")).collect();
        let d = decide(path, &headers);
        match &d.decision {
            Decision::Forward { remove, .. } => {
                for name in spoofed {
                    assert!(remove.contains(&name.to_owned()), "{path} {name}");
                }
            }
            // Refused (no token): the request never reaches the upstream.
            Decision::Respond(r) => assert_eq!((path, r.status), ("/shop/x", 401)),
            Decision::Wait(w) => panic!("{path}: parked for {w:?}"),
        }
    }
}
