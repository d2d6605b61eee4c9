//! The verified-token cache, through `Engine::handle`: what it may serve and
//! what must never be served from it.

// An integration test is a test crate: a failed expectation should panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mpass_guard::alg::Alg;
use mpass_guard::config::Config;
use mpass_guard::engine::{Engine, Outcome, Request, VmState};
use mpass_guard::jwks::{Fetched, Step, Target};
use mpass_guard::mint;
use serde_json::{json, Value};

mod common;
use common::{jwks, key, ISS};

const NOW: i64 = 1_800_000_000;

fn token(file: &str, kid: &str, exp: i64) -> String {
    let claims = json!({
        "iss": ISS, "aud": "shop", "sub": "S1", "iat": NOW - 10, "exp": exp,
        "given_name": "Aino", "urn:mpass.id:uid": "MPASSOID.1"
    });
    mint::sign_compact(
        Alg::RS256,
        &key(file),
        &json!({ "kid": kid }),
        claims.to_string().as_bytes(),
    )
    .unwrap()
}

fn engine(issuer: Value, max_entries: usize) -> Engine {
    let config = json!({
        "issuers": [issuer],
        "token_cache": { "max_entries": max_entries },
        "providers": { "shop": {
            "audiences": ["shop"],
            "match": { "path_prefixes": ["/"] },
            "contract": { "organisations": ["*"], "release": { "given_name": {}, "uid": {} } }
        }}
    });
    Engine::new(Config::load(config.to_string().as_bytes(), &|_| None).unwrap())
}

fn local_engine(max_entries: usize) -> Engine {
    engine(
        json!({ "issuer": ISS, "local_jwks": { "inline_string": jwks(&[("rsa-a.pem", "a")]) } }),
        max_entries,
    )
}

fn send(engine: &Engine, vm: &mut VmState, token: &str, now: i64) -> Outcome {
    send_as(engine, vm, token, now, false)
}

fn send_as(engine: &Engine, vm: &mut VmState, token: &str, now: i64, resumed: bool) -> Outcome {
    let headers = vec![
        (":authority".to_owned(), "shop.example".to_owned()),
        (":path".to_owned(), "/".to_owned()),
        ("authorization".to_owned(), format!("Bearer {token}")),
    ];
    let req = Request {
        headers: &headers,
        route_name: None,
        raw: &[],
    };
    engine.handle(&req, u64::try_from(now).unwrap() * 1000, vm, resumed)
}

/// The status the client would see; 0 while the request is parked.
fn status(d: &Outcome) -> u16 {
    match (d.decision.response(), d.decision.wait()) {
        (Some(r), _) => r.status,
        (None, Some(_)) => 0,
        (None, None) => 200,
    }
}

#[test]
fn a_second_request_with_the_same_token_is_answered_identically_from_the_cache() {
    let engine = local_engine(16);
    let mut vm = engine.new_state();
    let t = token("rsa-a.pem", "a", NOW + 600);
    let first = send(&engine, &mut vm, &t, NOW);
    assert_eq!(vm.cached_tokens(), 1);
    let second = send(&engine, &mut vm, &t, NOW + 1);
    assert_eq!(status(&first), 200);
    assert_eq!(
        first.decision.headers().count(),
        2,
        "the contract released its two attributes"
    );
    assert!(first.decision.headers().eq(second.decision.headers()));
    assert_eq!(first.decision.removals(), second.decision.removals());
    assert_eq!(vm.cached_tokens(), 1);
}

#[test]
fn a_forged_token_ending_like_a_cached_one_is_verified_not_served_from_the_cache() {
    let engine = local_engine(16);
    let mut vm = engine.new_state();
    let t = token("rsa-a.pem", "a", NOW + 600);
    assert_eq!(status(&send(&engine, &mut vm, &t, NOW)), 200);
    // Same header and signature (so the same cache key), another payload.
    let parts: Vec<&str> = t.split('.').collect();
    let other = token("rsa-a.pem", "a", NOW + 900);
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        other.split('.').nth(1).unwrap(),
        parts[2]
    );
    assert!(forged.ends_with(&t[t.len() - 64..]));
    let d = send(&engine, &mut vm, &forged, NOW + 1);
    assert_eq!(status(&d), 401);
    assert!(d
        .decision
        .response()
        .unwrap()
        .body
        .contains("bad_signature"));
    assert_eq!(d.decision.headers().count(), 0);
    // The genuine entry is still there and still answers.
    assert_eq!(vm.cached_tokens(), 1);
    assert_eq!(status(&send(&engine, &mut vm, &t, NOW + 2)), 200);
}

#[test]
fn a_cached_token_is_refused_once_it_expires() {
    let engine = local_engine(16);
    let mut vm = engine.new_state();
    let t = token("rsa-a.pem", "a", NOW + 100);
    assert_eq!(status(&send(&engine, &mut vm, &t, NOW)), 200);
    // Past exp plus the default 60 s skew.
    let late = send(&engine, &mut vm, &t, NOW + 161);
    assert_eq!(status(&late), 401);
    assert!(late.decision.response().unwrap().body.contains("expired"));
    assert!(
        late.decision.headers().count() == 0,
        "nothing released from a stale cache entry"
    );
    assert_eq!(vm.cached_tokens(), 0);
}

#[test]
fn a_flood_of_invalid_tokens_never_evicts_a_verified_one() {
    let engine = local_engine(2);
    let mut vm = engine.new_state();
    let good = token("rsa-a.pem", "a", NOW + 600);
    assert_eq!(status(&send(&engine, &mut vm, &good, NOW)), 200);
    let forged = token("rsa-b.pem", "a", NOW + 600);
    for i in 0..200 {
        let garbage = format!("{forged}{i}");
        assert_eq!(status(&send(&engine, &mut vm, &garbage, NOW)), 401);
    }
    assert_eq!(status(&send(&engine, &mut vm, &forged, NOW)), 401);
    assert_eq!(vm.cached_tokens(), 1, "only the verified token is held");
}

#[test]
fn a_disabled_cache_still_verifies_every_request() {
    let engine = local_engine(0);
    let mut vm = engine.new_state();
    let t = token("rsa-a.pem", "a", NOW + 600);
    assert_eq!(status(&send(&engine, &mut vm, &t, NOW)), 200);
    assert_eq!(status(&send(&engine, &mut vm, &t, NOW)), 200);
    assert_eq!(vm.cached_tokens(), 0);
}

#[test]
fn a_cached_token_stops_working_when_its_key_is_rotated_out() {
    let engine = engine(
        json!({
            "issuer": ISS,
            "remote_jwks": { "http_uri": { "uri": "https://keys.example/jwks", "cluster": "keys" } }
        }),
        16,
    );
    let mut vm = engine.new_state();
    let now_ms = u64::try_from(NOW).unwrap() * 1000;
    let step = Step::Jwks(Target::parse("https://keys.example/jwks").unwrap());
    let serve = |vm: &mut VmState, body: String, at: u64| {
        let (_, remote) = vm.keys.remote_mut().next().unwrap();
        assert!(remote.due(at).is_some());
        remote.on_fetched(
            at,
            &step,
            Fetched::Response {
                status: 200,
                body: body.into_bytes(),
            },
        );
    };
    serve(&mut vm, jwks(&[("rsa-a.pem", "a")]), now_ms);
    let t = token("rsa-a.pem", "a", NOW + 3600);
    assert_eq!(status(&send(&engine, &mut vm, &t, NOW)), 200);
    assert_eq!(vm.cached_tokens(), 1);

    // The issuer rotates: key "a" is gone after the next refresh.
    serve(&mut vm, jwks(&[("rsa-b.pem", "b")]), now_ms + 601_000);
    // The unknown kid first asks for one refetch (the request is parked)...
    let parked = send(&engine, &mut vm, &t, NOW + 602);
    assert_eq!(status(&parked), 0);
    assert!(parked.decision.headers().count() == 0);
    // ...and decided again after it, the token is refused.
    let after = send_as(&engine, &mut vm, &t, NOW + 602, true);
    assert_eq!(
        status(&after),
        401,
        "a token signed with a removed key is refused"
    );
    assert!(after
        .decision
        .response()
        .unwrap()
        .body
        .contains("unknown_key"));
    assert!(after.decision.headers().count() == 0);
}

/// Whether this decision was answered from the token cache.
fn was_hit(vm: &VmState, d: &Outcome) -> bool {
    vm.counter_names(d)
        .iter()
        .any(|n| n.starts_with("token_cache.") && n.ends_with("result=hit"))
}

#[test]
fn a_token_in_use_survives_a_burst_of_tokens_each_seen_once() {
    // A least-recently-used cache of 20 would have evicted `hot` after 20
    // new tokens; the token cache only lets tokens seen once churn.
    let engine = local_engine(20);
    let mut vm = engine.new_state();
    let hot = token("rsa-a.pem", "a", NOW + 600);
    let first = send(&engine, &mut vm, &hot, NOW);
    assert!(!was_hit(&vm, &first));
    let again = send(&engine, &mut vm, &hot, NOW);
    assert!(was_hit(&vm, &again));
    for i in 0..40 {
        let once = token("rsa-a.pem", "a", NOW + 601 + i);
        let d = send(&engine, &mut vm, &once, NOW);
        assert_eq!(status(&d), 200);
        assert!(!was_hit(&vm, &d));
    }
    assert_eq!(vm.cached_tokens(), 20);
    let d = send(&engine, &mut vm, &hot, NOW);
    assert_eq!(status(&d), 200);
    assert!(was_hit(&vm, &d), "the token in use was kept");
}
