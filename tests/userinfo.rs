//! Userinfo and login sessions through `Engine::handle`, with the fixed
//! clock: the call a session makes (once, coalesced), what its response
//! must pass (subject, content type, signature), how its attributes merge
//! with the ID token's, the replies to outages and refused access tokens,
//! and the browser's redirect and HTML pages on a `login` provider.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use mpass_guard::alg::Alg;
use mpass_guard::config::Config;
use mpass_guard::engine::{Decision, Engine, Outcome, Request, VmState, WaitFor};
use mpass_guard::mint;
use mpass_guard::userinfo::Response;
use serde_json::{json, Map, Value};

mod common;
use common::{fixture_claims, jwks, key, shop_contract, ISS};

/// 2026-11-26T12:00:00Z.
const NOW_S: i64 = 1_795_694_400;
const NOW_MS: u64 = 1_795_694_400_000;
const AT: &str = "opaque-access-token-1";

fn config_json(login: bool) -> Value {
    let mut provider = json!({
        "audiences": ["studeo-webshop"],
        "match": {"path_prefixes": ["/app/"]},
        "contract": shop_contract()
    });
    if login {
        provider["login"] = json!({"cookie_domain": "app.example.fi"});
    }
    json!({
        "issuers": [{
            "issuer": ISS,
            "local_jwks": {"inline_string": jwks(&[("rsa-a.pem", "rsa-a")])},
            "userinfo": {"endpoint": "https://op.example.fi/idp/userinfo", "cluster": "op"}
        }],
        "from_cookies": ["IdToken"],
        "providers": {"app": provider}
    })
}

fn engine(login: bool) -> Engine {
    let bytes = serde_json::to_vec(&config_json(login)).unwrap();
    Engine::new(Config::load(&bytes, &|_| None).unwrap())
}

/// The ID token of the code flow: who and for whom, no attributes.
fn id_claims() -> Map<String, Value> {
    let learner = fixture_claims("learner");
    ["iss", "aud", "sub", "nonce", "acr"]
        .iter()
        .map(|k| ((*k).to_owned(), learner[*k].clone()))
        .collect()
}

/// Userinfo's answer: the learner's attributes (and `sub`).
fn userinfo_claims() -> Map<String, Value> {
    let mut m = fixture_claims("learner");
    for k in ["iss", "aud", "nonce", "acr"] {
        m.remove(k);
    }
    m
}

fn sign(claims: &Map<String, Value>, key_file: &str) -> String {
    let payload = serde_json::to_vec(&Value::Object(claims.clone())).unwrap();
    mint::sign_compact(
        Alg::RS256,
        &key(key_file),
        &json!({"typ": "JWT", "kid": "rsa-a"}),
        &payload,
    )
    .unwrap()
}

fn id_token(claims: &Map<String, Value>, exp: i64) -> String {
    let mut c = claims.clone();
    c.insert("iat".into(), json!(NOW_S - 60));
    c.insert("exp".into(), json!(exp));
    sign(&c, "rsa-a.pem")
}

fn token() -> String {
    id_token(&id_claims(), NOW_S + 3600)
}

fn headers(token: &str, access: Option<&str>, accept: &str) -> Vec<(String, String)> {
    let mut cookie = format!("theme=dark; IdToken={token}");
    if let Some(a) = access {
        cookie.push_str(&format!("; BearerToken={a}; OauthHMAC=h"));
    }
    vec![
        (":authority".into(), "app.example.fi".into()),
        (":path".into(), "/app/page?tab=2".into()),
        (":method".into(), "GET".into()),
        ("accept".into(), accept.into()),
        ("cookie".into(), cookie),
        ("x-mpass-uid".into(), "spoofed".into()),
    ]
}

const BROWSER: &str = "text/html,application/xhtml+xml,*/*;q=0.8";
const API: &str = "application/json";

fn handle(
    engine: &Engine,
    vm: &mut VmState,
    h: &[(String, String)],
    now_ms: u64,
    resumed: bool,
) -> Outcome {
    engine.handle(&Request::new(h, None), now_ms, vm, resumed)
}

fn waits_for_userinfo(o: &Outcome) -> u64 {
    match &o.decision {
        Decision::Wait(WaitFor::Userinfo(key)) => *key,
        other => panic!("expected a userinfo wait, got {other:?}"),
    }
}

fn json_answer(claims: &Map<String, Value>) -> Response {
    Response::Answer {
        status: 200,
        content_type: Some("application/json".into()),
        body: serde_json::to_vec(claims).unwrap(),
    }
}

/// The upstream's headers after the decision.
fn upstream(o: &Outcome, mut h: Vec<(String, String)>) -> Vec<(String, String)> {
    assert!(
        matches!(o.decision, Decision::Forward { .. }),
        "{:?}",
        o.decision
    );
    o.decision.apply(&mut h);
    h
}

fn get<'a>(h: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    h.iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

fn response(o: &Outcome) -> &mpass_guard::engine::Response {
    o.decision.response().expect("a local reply")
}

/// A session through its first request: the wait, the one call, the
/// answer, the resumed decision.
fn first_request(
    engine: &Engine,
    vm: &mut VmState,
    h: &[(String, String)],
    answer: &Response,
) -> Outcome {
    let key = waits_for_userinfo(&handle(engine, vm, h, NOW_MS, false));
    let calls = vm.take_userinfo_calls();
    assert_eq!(calls.len(), 1);
    engine.userinfo_response(key, answer, NOW_MS + 20, vm);
    handle(engine, vm, h, NOW_MS + 20, true)
}

#[test]
fn the_upstream_gets_userinfo_attributes_and_never_the_access_token() {
    let engine = engine(false);
    let mut vm = engine.new_state();
    let t = token();
    let h = headers(&t, Some(AT), API);
    let wait = handle(&engine, &mut vm, &h, NOW_MS, false);
    let key = waits_for_userinfo(&wait);
    let calls = vm.take_userinfo_calls();
    assert_eq!(calls.len(), 1);
    let call_headers = calls[0].headers();
    assert!(call_headers.contains(&(":path", "/idp/userinfo")));
    assert!(call_headers.contains(&(":authority", "op.example.fi")));
    assert!(call_headers.contains(&("authorization", "Bearer opaque-access-token-1")));
    assert_eq!(calls[0].cluster, "op");
    assert_eq!(calls[0].timeout_ms, 2_000);
    assert!(
        !format!("{:?}", calls[0]).contains(AT),
        "the token is not in Debug"
    );
    assert_eq!(
        vm.counter_name(calls[0].counter).as_deref(),
        Some("userinfo_calls.stat_prefix=main.issuer=mpass-proxy-test_csc_fi")
    );

    engine.userinfo_response(key, &json_answer(&userinfo_claims()), NOW_MS + 20, &mut vm);
    let o = handle(&engine, &mut vm, &h, NOW_MS + 20, true);
    let up = upstream(&o, h.clone());
    assert_eq!(
        get(&up, "x-mpass-uid"),
        ["MPASSOID.391ea8eb34f1e27024ab1342603537bdbd494900"]
    );
    assert_eq!(get(&up, "x-shop-first-name"), ["Aino"]);
    assert_eq!(get(&up, "cookie"), ["theme=dark"]);
    let all = format!("{up:?}");
    assert!(!all.contains(AT) && !all.contains(&t) && !all.contains("OauthHMAC"));
}

#[test]
fn a_session_costs_one_call_however_many_requests_it_makes() {
    let engine = engine(false);
    let mut vm = engine.new_state();
    let h = headers(&token(), Some(AT), API);
    first_request(&engine, &mut vm, &h, &json_answer(&userinfo_claims()));
    for i in 0..20 {
        let o = handle(&engine, &mut vm, &h, NOW_MS + 1_000 * i, false);
        assert_eq!(get(&upstream(&o, h.clone()), "x-shop-first-name"), ["Aino"]);
    }
    assert!(vm.take_userinfo_calls().is_empty());
    // Another session (another ID token) makes its own call.
    let other = id_token(&id_claims(), NOW_S + 3000);
    let o = handle(
        &engine,
        &mut vm,
        &headers(&other, Some(AT), API),
        NOW_MS,
        false,
    );
    waits_for_userinfo(&o);
    assert_eq!(vm.take_userinfo_calls().len(), 1);
}

#[test]
fn the_result_is_kept_even_with_the_token_cache_off() {
    let mut cfg = config_json(false);
    cfg["token_cache"] = json!({"max_entries": 0});
    let engine = Engine::new(Config::load(&serde_json::to_vec(&cfg).unwrap(), &|_| None).unwrap());
    let mut vm = engine.new_state();
    let h = headers(&token(), Some(AT), API);
    first_request(&engine, &mut vm, &h, &json_answer(&userinfo_claims()));
    let o = handle(&engine, &mut vm, &h, NOW_MS + 5_000, false);
    assert_eq!(get(&upstream(&o, h.clone()), "x-shop-first-name"), ["Aino"]);
    assert!(vm.take_userinfo_calls().is_empty());
}

#[test]
fn concurrent_requests_of_one_session_wait_for_the_one_call() {
    let engine = engine(false);
    let mut vm = engine.new_state();
    let h = headers(&token(), Some(AT), API);
    let a = waits_for_userinfo(&handle(&engine, &mut vm, &h, NOW_MS, false));
    let b = waits_for_userinfo(&handle(&engine, &mut vm, &h, NOW_MS + 1, false));
    let c = waits_for_userinfo(&handle(&engine, &mut vm, &h, NOW_MS + 2, false));
    assert!(a == b && b == c);
    assert_eq!(vm.take_userinfo_calls().len(), 1);
    engine.userinfo_response(a, &json_answer(&userinfo_claims()), NOW_MS + 30, &mut vm);
    for _ in 0..3 {
        let o = handle(&engine, &mut vm, &h, NOW_MS + 30, true);
        assert_eq!(get(&upstream(&o, h.clone()), "x-shop-first-name"), ["Aino"]);
    }
    assert!(vm.take_userinfo_calls().is_empty());
}

#[test]
fn the_id_tokens_claims_win_and_userinfo_sets_no_registered_claim() {
    let engine = engine(false);
    let mut vm = engine.new_state();
    let mut id = id_claims();
    id.insert("given_name".into(), json!("FromToken"));
    let t = id_token(&id, NOW_S + 3600);
    let h = headers(&t, Some(AT), API);
    let mut ui = userinfo_claims();
    ui.insert("aud".into(), json!("someone-else"));
    let o = first_request(&engine, &mut vm, &h, &json_answer(&ui));
    // The audience is still the ID token's (else this would be 403).
    assert_eq!(
        get(&upstream(&o, h.clone()), "x-shop-first-name"),
        ["FromToken"]
    );
}

#[test]
fn a_userinfo_about_another_subject_is_a_502_and_releases_nothing() {
    let engine = engine(false);
    let mut vm = engine.new_state();
    let h = headers(&token(), Some(AT), API);
    let mut ui = userinfo_claims();
    ui.insert("sub".into(), json!("SOMEONE-ELSE"));
    let key = waits_for_userinfo(&handle(&engine, &mut vm, &h, NOW_MS, false));
    vm.take_userinfo_calls();
    let (counters, failure) = engine.userinfo_response(key, &json_answer(&ui), NOW_MS, &mut vm);
    assert_eq!(failure.map(|f| f.reason()), Some("userinfo_invalid"));
    let names: Vec<String> = counters
        .iter()
        .filter_map(|c| vm.counter_name(*c).map(|n| n.to_string()))
        .collect();
    assert_eq!(
        names,
        ["userinfo_failures.stat_prefix=main.issuer=mpass-proxy-test_csc_fi.reason=userinfo_invalid"]
    );
    let o = handle(&engine, &mut vm, &h, NOW_MS, true);
    let r = response(&o);
    assert_eq!(r.status, 502);
    assert_eq!(
        r.body,
        r#"{"error":"bad_gateway","reason":"userinfo_invalid"}"#
    );
    assert_eq!(o.audit.as_ref().unwrap().reason, "userinfo_invalid");
    assert!(vm.counter_names(&o).contains(
        &"decisions.stat_prefix=main.provider=app.outcome=deny.reason=userinfo_invalid".to_owned()
    ));
}

#[test]
fn a_signed_userinfo_must_verify_with_the_issuers_keys_and_name_the_issuer() {
    let jwt = |claims: &Map<String, Value>, key_file: &str| Response::Answer {
        status: 200,
        content_type: Some("application/jwt".into()),
        body: sign(claims, key_file).into_bytes(),
    };
    let mut good = userinfo_claims();
    good.insert("iss".into(), json!(ISS));
    good.insert("aud".into(), json!("studeo-webshop"));
    let mut wrong_iss = good.clone();
    wrong_iss.insert("iss".into(), json!("https://evil.example"));
    let mut wrong_aud = good.clone();
    wrong_aud.insert("aud".into(), json!("other-client"));
    let cases = [
        (jwt(&good, "rsa-a.pem"), Some(200)),
        (jwt(&userinfo_claims(), "rsa-a.pem"), Some(200)),
        (jwt(&good, "rsa-b.pem"), Some(502)),
        (jwt(&wrong_iss, "rsa-a.pem"), Some(502)),
        (jwt(&wrong_aud, "rsa-a.pem"), Some(502)),
    ];
    for (answer, status) in cases {
        let engine = engine(false);
        let mut vm = engine.new_state();
        let h = headers(&token(), Some(AT), API);
        let o = first_request(&engine, &mut vm, &h, &answer);
        let got = o.decision.response().map_or(200, |r| r.status);
        assert_eq!(Some(got), status);
    }
}

#[test]
fn an_outage_or_a_call_that_never_returns_is_503_with_retry_after() {
    let engine = engine(true);
    for answer in [
        Some(Response::Failed),
        Some(Response::Answer {
            status: 503,
            content_type: None,
            body: Vec::new(),
        }),
        None,
    ] {
        let mut vm = engine.new_state();
        // A browser too: an outage is not a reason to log in again.
        let h = headers(&token(), Some(AT), BROWSER);
        let key = waits_for_userinfo(&handle(&engine, &mut vm, &h, NOW_MS, false));
        vm.take_userinfo_calls();
        if let Some(a) = &answer {
            engine.userinfo_response(key, a, NOW_MS + 2_000, &mut vm);
        }
        // Resumed: by the answer, or by the deadline with no answer.
        let o = handle(&engine, &mut vm, &h, NOW_MS + 3_000, true);
        let r = response(&o);
        assert_eq!(r.status, 503, "{answer:?}");
        assert!(r.headers.contains(&("retry-after".into(), "5".into())));
        assert_eq!(o.audit.as_ref().unwrap().reason, "userinfo_unavailable");
        // The next request of the session tries again.
        waits_for_userinfo(&handle(&engine, &mut vm, &h, NOW_MS + 10_000, false));
        assert_eq!(vm.take_userinfo_calls().len(), 1);
    }
}

#[test]
fn a_refused_access_token_restarts_a_browser_login_and_is_401_for_an_api() {
    let engine = engine(true);
    let refused = Response::Answer {
        status: 401,
        content_type: Some("application/json".into()),
        body: br#"{"error":"invalid_token"}"#.to_vec(),
    };
    let mut vm = engine.new_state();
    let o = first_request(
        &engine,
        &mut vm,
        &headers(&token(), Some(AT), BROWSER),
        &refused,
    );
    let r = response(&o);
    assert_eq!(r.status, 302);
    let hdr = |name: &str| -> Vec<String> {
        r.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect()
    };
    assert_eq!(hdr("location"), ["/app/page?tab=2"]);
    assert_eq!(hdr("cache-control"), ["no-store"]);
    let cleared: Vec<String> = hdr("set-cookie")
        .iter()
        .filter(|c| c.contains("Max-Age=0"))
        .map(|c| c.split('=').next().unwrap().to_owned())
        .collect();
    for name in [
        "BearerToken",
        "IdToken",
        "RefreshToken",
        "OauthHMAC",
        "OauthExpires",
    ] {
        assert!(cleared.contains(&name.to_owned()), "{name} is cleared");
    }
    assert!(hdr("set-cookie")
        .iter()
        .all(|c| c.contains("; Path=/; Domain=app.example.fi;")));
    assert_eq!(o.audit.as_ref().unwrap().reason, "login_required");
    let names = vm.counter_names(&o);
    assert!(names.contains(&"login_restarts.stat_prefix=main.provider=app".to_owned()));

    let mut vm = engine.new_state();
    let o = first_request(
        &engine,
        &mut vm,
        &headers(&token(), Some(AT), API),
        &refused,
    );
    let r = response(&o);
    assert_eq!(r.status, 401);
    assert_eq!(
        r.body,
        r#"{"error":"invalid_token","reason":"userinfo_refused"}"#
    );
}

#[test]
fn without_an_access_token_no_call_is_made_and_the_session_is_refused() {
    let engine = engine(true);
    let mut vm = engine.new_state();
    let o = handle(
        &engine,
        &mut vm,
        &headers(&token(), None, API),
        NOW_MS,
        false,
    );
    assert_eq!(response(&o).status, 401);
    assert_eq!(o.audit.as_ref().unwrap().reason, "userinfo_refused");
    assert!(vm.take_userinfo_calls().is_empty());
    let o = handle(
        &engine,
        &mut vm,
        &headers(&token(), None, BROWSER),
        NOW_MS,
        false,
    );
    assert_eq!(response(&o).status, 302);
}

#[test]
fn an_expired_id_token_sends_a_browser_to_login_once_then_shows_a_page() {
    let engine = engine(true);
    let mut vm = engine.new_state();
    let expired = id_token(&id_claims(), NOW_S - 3600);
    let h = headers(&expired, Some(AT), BROWSER);
    let o = handle(&engine, &mut vm, &h, NOW_MS, false);
    assert_eq!(response(&o).status, 302);
    assert!(
        vm.take_userinfo_calls().is_empty(),
        "no call for a bad token"
    );
    // Back within the loop window with the marker: a page, not a loop.
    let mut again = h.clone();
    again[4].1.push_str("; MpassGuardLogin=1");
    let o = handle(&engine, &mut vm, &again, NOW_MS + 2_000, false);
    let r = response(&o);
    assert_eq!(r.status, 401);
    assert!(r
        .headers
        .contains(&("content-type".into(), "text/html; charset=utf-8".into())));
    assert!(r.body.contains("did not complete"));
    // An API client with the same expired token keeps the JSON 401.
    let o = handle(
        &engine,
        &mut vm,
        &headers(&expired, Some(AT), API),
        NOW_MS,
        false,
    );
    assert_eq!(
        response(&o).body,
        r#"{"error":"invalid_token","reason":"expired"}"#
    );
    // A POST is never redirected (its body would be lost).
    let mut post = h.clone();
    post[2].1 = "POST".into();
    let o = handle(&engine, &mut vm, &post, NOW_MS, false);
    assert_eq!(response(&o).status, 401);
}

#[test]
fn a_contract_refusal_shows_a_browser_a_page_without_claim_values() {
    let engine = engine(true);
    let mut vm = engine.new_state();
    let mut ui = userinfo_claims();
    ui.insert(
        "urn:mpass.id:role".into(),
        json!(["1.2.246.562.10.99999999999;1;9F;Oppilas;1;;"]),
    );
    ui.insert(
        "urn:mpass.id:educationProviderInfo".into(),
        json!(["1.2.246.562.10.99999999999;<b>Muu kunta</b>"]),
    );
    let o = first_request(
        &engine,
        &mut vm,
        &headers(&token(), Some(AT), BROWSER),
        &json_answer(&ui),
    );
    let r = response(&o);
    assert_eq!(r.status, 403);
    assert!(r.headers.contains(&(
        "content-security-policy".into(),
        "default-src 'none'".into()
    )));
    assert!(r.body.contains("organisation_not_permitted"));
    for value in ["Aino", "Muu kunta", "99999999999", "MPASSOID"] {
        assert!(!r.body.contains(value), "{value} is not on the page");
    }
    // The same refusal to an API client stays JSON.
    let mut vm = engine.new_state();
    let o = first_request(
        &engine,
        &mut vm,
        &headers(&token(), Some(AT), API),
        &json_answer(&ui),
    );
    assert_eq!(
        response(&o).body,
        r#"{"error":"contract_violation","reason":"organisation_not_permitted"}"#
    );
}

#[test]
fn the_loop_marker_and_a_header_access_token_never_reach_the_upstream() {
    let mut cfg = config_json(true);
    cfg["issuers"][0]["userinfo"]["access_token"] = json!({"header": "x-forwarded-access-token"});
    let engine = Engine::new(Config::load(&serde_json::to_vec(&cfg).unwrap(), &|_| None).unwrap());
    let mut vm = engine.new_state();
    let mut h = headers(&token(), None, BROWSER);
    h[4].1.push_str("; MpassGuardLogin=1");
    h.push(("x-forwarded-access-token".into(), AT.into()));
    let o = first_request(&engine, &mut vm, &h, &json_answer(&userinfo_claims()));
    let up = upstream(&o, h.clone());
    assert_eq!(get(&up, "cookie"), ["theme=dark"]);
    assert!(get(&up, "x-forwarded-access-token").is_empty());
    assert_eq!(get(&up, "x-shop-first-name"), ["Aino"]);
}

#[test]
fn an_id_token_in_the_access_tokens_header_is_not_an_access_token() {
    let mut cfg = config_json(false);
    cfg["issuers"][0]["userinfo"]["access_token"] = json!({"header": "authorization"});
    cfg["from_headers"] = json!([{"name": "authorization", "value_prefix": "Bearer "}]);
    let engine = Engine::new(Config::load(&serde_json::to_vec(&cfg).unwrap(), &|_| None).unwrap());
    let mut vm = engine.new_state();
    let t = token();
    let h = vec![
        (":authority".to_owned(), "app.example.fi".to_owned()),
        (":path".to_owned(), "/app/x".to_owned()),
        (":method".to_owned(), "GET".to_owned()),
        ("authorization".to_owned(), format!("Bearer {t}")),
    ];
    let o = handle(&engine, &mut vm, &h, NOW_MS, false);
    assert_eq!(response(&o).status, 401);
    assert_eq!(o.audit.as_ref().unwrap().reason, "userinfo_refused");
    assert!(vm.take_userinfo_calls().is_empty());
    // With the oauth2 filter's forwarded access token beside the cookie:
    // the call carries the access token, and the header never goes upstream.
    let h = {
        let mut h = headers(&t, None, API);
        h.push(("authorization".to_owned(), format!("Bearer {AT}")));
        h
    };
    let o = first_request(&engine, &mut vm, &h, &json_answer(&userinfo_claims()));
    let up = upstream(&o, h.clone());
    assert!(get(&up, "authorization").is_empty());
    assert_eq!(get(&up, "x-shop-first-name"), ["Aino"]);
}
