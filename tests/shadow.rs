//! Shadow contracts through `Engine::handle`: the upstream gets exactly what
//! the enforced contract releases, while the audit line, the decision
//! record and the counters name what the shadow would change (names only,
//! never a value), and a warm request replays the cached comparison. Tokens
//! are minted at test time from `tests/keys`; the clock is fixed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use mpass_guard::alg::Alg;
use mpass_guard::config::Config;
use mpass_guard::engine::{Decision, Engine, Outcome, Request, VmState};
use mpass_guard::metadata::ShadowRecord;
use mpass_guard::mint;
use serde_json::{json, Map, Value};

mod common;
use common::{fixture_claims as fixture, jwks, key, shop_contract, ISS};

/// 2026-11-26T12:00:00Z.
const NOW_S: i64 = 1_795_694_400;

fn config_json(shadow: Value) -> Value {
    json!({
        "issuers": [{
            "issuer": ISS,
            "local_jwks": {"inline_string": jwks(&[("rsa-a.pem", "rsa-a")])},
            "allowed_algorithms": ["RS256"]
        }],
        "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
        "providers": {
            "webshop": {
                "audiences": ["studeo-webshop"],
                "match": {"path_prefixes": ["/shop/"]},
                "contract": shop_contract(),
                "shadow_contract": shadow
            }
        }
    })
}

/// The candidate: family name added, the first name dropped, a second
/// organisation permitted.
fn candidate() -> Value {
    json!({
        "organisations": ["1.2.246.562.10.00000000001", "1.2.246.562.10.00000000004"],
        "required": ["uid"],
        "release": {
            "uid": {},
            "family_name": {},
            "email": {"purpose": "payment receipts", "only_roles": [2, 3, 4, 5, 6]}
        }
    })
}

fn engine(shadow: Value) -> Engine {
    let bytes = serde_json::to_vec(&config_json(shadow)).unwrap();
    Engine::new(Config::load(&bytes, &|_| None).unwrap())
}

fn token(claims: &Map<String, Value>) -> String {
    let mut c = claims.clone();
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

fn handle(engine: &Engine, vm: &mut VmState, token: &str) -> (Outcome, Vec<(String, String)>) {
    let mut headers = vec![
        (":authority".to_owned(), "app.example.fi".to_owned()),
        (":path".to_owned(), "/shop/cart".to_owned()),
        (":method".to_owned(), "GET".to_owned()),
        ("authorization".to_owned(), format!("Bearer {token}")),
    ];
    let sent = headers.clone();
    let req = Request::new(&sent, None);
    let outcome = engine.handle(&req, u64::try_from(NOW_S).unwrap() * 1000, vm, false);
    outcome.decision.apply(&mut headers);
    (outcome, headers)
}

fn shadow_counters(vm: &VmState, outcome: &Outcome) -> Vec<String> {
    vm.counter_names(outcome)
        .into_iter()
        .filter(|n| n.starts_with("shadow_"))
        .collect()
}

fn audit_json(outcome: &Outcome) -> Value {
    serde_json::from_str(&outcome.audit.as_ref().unwrap().to_json(NOW_S)).unwrap()
}

#[test]
fn the_upstream_gets_only_what_the_enforced_contract_releases() {
    let engine = engine(candidate());
    let mut vm = engine.new_state();
    let claims = fixture("learner");
    let (outcome, headers) = handle(&engine, &mut vm, &token(&claims));
    assert!(matches!(outcome.decision, Decision::Forward { .. }));
    let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&"x-shop-first-name"), "{names:?}");
    assert!(names.contains(&"x-mpass-uid"), "{names:?}");
    assert!(
        !names.iter().any(|n| n.contains("family")),
        "the shadow's family name reached the upstream: {names:?}"
    );
}

#[test]
fn the_audit_line_names_what_the_shadow_would_add_and_remove_without_values() {
    let engine = engine(candidate());
    let mut vm = engine.new_state();
    let claims = fixture("learner");
    let (outcome, _) = handle(&engine, &mut vm, &token(&claims));
    let line = audit_json(&outcome);
    let shadow = &line["shadow"];
    assert_eq!(shadow["decision"], "allow");
    assert_eq!(shadow["reason"], "ok");
    assert_eq!(shadow["added"], json!(["family_name"]));
    assert_eq!(shadow["removed"], json!(["given_name"]));
    assert_eq!(shadow["changes"], json!(["added", "removed"]));
    let text = line.to_string();
    for value in ["Aino", "Sävynen", "MPASSOID.391ea8eb"] {
        assert!(!text.contains(value), "a claim value in the audit: {text}");
    }
    // The enforced decision is what it was.
    assert_eq!(line["decision"], "allow");
    assert_eq!(line["released"], json!(["given_name", "urn:mpass.id:uid"]));
}

#[test]
fn the_decision_record_carries_the_shadow_difference() {
    let engine = engine(candidate());
    let mut vm = engine.new_state();
    let (outcome, _) = handle(&engine, &mut vm, &token(&fixture("learner")));
    let record = outcome.record();
    let shadow: &ShadowRecord = record.shadow.as_ref().unwrap();
    assert_eq!(shadow.decision, "allow");
    assert_eq!(shadow.added, ["family_name"]);
    assert_eq!(shadow.removed, ["given_name"]);
    assert_eq!(shadow.changes, ["added", "removed"]);
}

#[test]
fn counters_count_the_evaluation_and_each_kind_of_difference() {
    let engine = engine(candidate());
    let mut vm = engine.new_state();
    let (outcome, _) = handle(&engine, &mut vm, &token(&fixture("learner")));
    assert_eq!(
        shadow_counters(&vm, &outcome),
        [
            "shadow_evaluations.stat_prefix=main.provider=webshop",
            "shadow_differences.stat_prefix=main.provider=webshop.change=added",
            "shadow_differences.stat_prefix=main.provider=webshop.change=removed",
        ]
    );
}

#[test]
fn a_refused_request_the_shadow_would_allow_is_recorded_as_would_allow() {
    // The teacher's second organisation ...04 alone: the enforced contract
    // permits ...01 only, the candidate both.
    let engine = engine(candidate());
    let mut vm = engine.new_state();
    let mut claims = fixture("teacher");
    claims.insert(
        "urn:mpass.id:role".into(),
        json!(["1.2.246.562.10.00000000004;04647;;Rehtori;6;1.2.246.562.10.00000000005;"]),
    );
    claims.insert(
        "urn:mpass.id:educationProviderInfo".into(),
        json!(["1.2.246.562.10.00000000004;Äänekosken testikaupunki"]),
    );
    let (outcome, headers) = handle(&engine, &mut vm, &token(&claims));
    let response = outcome.decision.response().expect("refused");
    assert_eq!(response.status, 403);
    assert!(!headers.iter().any(|(n, _)| n.starts_with("x-mpass")));
    let line = audit_json(&outcome);
    assert_eq!(line["decision"], "deny");
    assert_eq!(line["reason"], "organisation_not_permitted");
    assert_eq!(line["shadow"]["decision"], "allow");
    assert_eq!(line["shadow"]["changes"][0], "would_allow");
    assert!(shadow_counters(&vm, &outcome).contains(
        &"shadow_differences.stat_prefix=main.provider=webshop.change=would_allow".to_owned()
    ));
}

#[test]
fn a_shadow_that_agrees_counts_an_evaluation_and_no_difference() {
    let engine = engine(shop_contract());
    let mut vm = engine.new_state();
    let (outcome, _) = handle(&engine, &mut vm, &token(&fixture("learner")));
    assert_eq!(
        shadow_counters(&vm, &outcome),
        ["shadow_evaluations.stat_prefix=main.provider=webshop"]
    );
    assert_eq!(audit_json(&outcome)["shadow"]["changes"], json!([]));
}

#[test]
fn a_warm_request_replays_the_cached_comparison() {
    let engine = engine(candidate());
    let mut vm = engine.new_state();
    let t = token(&fixture("learner"));
    let (cold, _) = handle(&engine, &mut vm, &t);
    let (warm, _) = handle(&engine, &mut vm, &t);
    let names = vm.counter_names(&warm);
    assert!(names
        .iter()
        .any(|n| n.contains("token_cache") && n.ends_with("result=hit")));
    assert_eq!(shadow_counters(&vm, &warm), shadow_counters(&vm, &cold));
    // The same comparison, not a second one: one shared record.
    let (a, b) = (cold.audit.unwrap(), warm.audit.unwrap());
    assert!(std::rc::Rc::ptr_eq(
        a.shadow.as_ref().unwrap(),
        b.shadow.as_ref().unwrap()
    ));
}

#[test]
fn without_a_shadow_contract_nothing_is_compared() {
    let mut json = config_json(Value::Null);
    json["providers"]["webshop"]
        .as_object_mut()
        .unwrap()
        .remove("shadow_contract");
    let bytes = serde_json::to_vec(&json).unwrap();
    let engine = Engine::new(Config::load(&bytes, &|_| None).unwrap());
    let mut vm = engine.new_state();
    let (outcome, _) = handle(&engine, &mut vm, &token(&fixture("learner")));
    assert!(shadow_counters(&vm, &outcome).is_empty());
    assert!(audit_json(&outcome).get("shadow").is_none());
    assert!(outcome.record().shadow.is_none());
}

#[test]
fn a_bad_shadow_contract_is_refused_at_load_with_its_field_path() {
    let mut bad = candidate();
    bad["release"]["uid"] = json!({"purpos": "typo"});
    let bytes = serde_json::to_vec(&config_json(bad)).unwrap();
    let errors = Config::load(&bytes, &|_| None).unwrap_err();
    let first = errors.first().unwrap().to_string();
    assert!(
        first.starts_with("providers.webshop.shadow_contract.release.uid"),
        "{first}"
    );
}

#[test]
fn a_shadow_agreement_that_widens_the_shadow_is_refused_as_for_the_contract() {
    let mut bad = candidate();
    bad["agreements"] = json!({
        "1.2.246.562.10.00000000001": {"release": {"given_name": {}}}
    });
    bad["default_agreement"] = json!("deny");
    let bytes = serde_json::to_vec(&config_json(bad)).unwrap();
    let errors = Config::load(&bytes, &|_| None).unwrap_err();
    let first = errors.first().unwrap().to_string();
    assert!(
        first.starts_with("providers.webshop.shadow_contract.agreements"),
        "{first}"
    );
}
