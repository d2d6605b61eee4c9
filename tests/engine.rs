//! The whole decision through `Engine::handle`, table-driven: for each
//! provider contract and each sample claim set, the exact headers the
//! upstream gets, that the token and every spoofed identity header are
//! removed, the status and reason of a refusal, the audit record (with no
//! claim value in it) and the counters. Tokens are minted at test time from
//! `tests/keys`; the clock is fixed.

// An integration test is a test crate: a failed expectation should panic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use mpass_guard::alg::Alg;
use mpass_guard::claims;
use mpass_guard::config::Config;
use mpass_guard::engine::{Decision, Engine, Outcome, Request, VmState};
use mpass_guard::mint;
use mpass_guard::render;
use serde_json::{json, Map, Value};

mod common;
use common::{fixture_claims as fixture, jwks, key, shop_contract, with, ISS};

/// 2026-11-26T12:00:00Z.
const NOW_S: i64 = 1_795_694_400;
const PSEUDONYM_KEY: &str = "engine-test-pseudonym-key-0123456789";
const SPOOF: &str = "spoofed-by-client";

fn config_json() -> Value {
    let mut shop = shop_contract();
    shop["payload_header"] = json!("x-shop-claims");
    json!({
        "issuers": [{
            "issuer": ISS,
            "local_jwks": {"inline_string": jwks(&[("rsa-a.pem", "rsa-a")])},
            "allowed_algorithms": ["RS256"]
        }],
        "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
        "audit": {"pseudonym_key_env": "PSEUDONYM_KEY"},
        "providers": {
            "webshop": {
                "audiences": ["studeo-webshop"],
                "match": {"path_prefixes": ["/shop/"]},
                "contract": shop
            },
            "second": {
                "audiences": ["studeo-webshop"],
                "match": {"path_prefixes": ["/second/"]},
                "contract": {
                    "organisations": ["1.2.246.562.10.00000000004"],
                    "identifier_form": "both",
                    "release": {
                        "family_name": {},
                        "role": {},
                        "school_info": {},
                        "education_provider_info": {},
                        "learning_materials_charge": {"purpose": "invoicing learning materials"},
                        "original_issuer": {}
                    }
                }
            },
            "lms": {
                "audiences": ["legacy-lms"],
                "match": {"path_prefixes": ["/lms/"]},
                "contract": {
                    "organisations": ["00000"],
                    "identifier_form": "tk",
                    "release": {
                        "urn:mpass.id:uid": {},
                        "urn:oid:1.3.6.1.4.1.16161.1.1.27": {"purpose": "linking course results"},
                        "urn:mpass.id:role": {},
                        "urn:mpass.id:school": {},
                        "urn:mpass.id:schoolCode": {},
                        "urn:mpass.id:class": {},
                        "urn:mpass.id:municipality": {}
                    }
                }
            },
            "pilot": {
                "audiences": ["studeo-webshop"],
                "match": {"path_prefixes": ["/pilot/"]},
                "contract": {
                    "organisations": ["*"],
                    "allow_test_learner_id": true,
                    "release": {"uid": {}, "learner_id": {"purpose": "pilot enrolment"}}
                }
            },
            "gate": {
                "audiences": ["studeo-webshop"],
                "match": {"path_prefixes": ["/gate/"]}
            }
        }
    })
}

fn config() -> Config {
    let bytes = serde_json::to_vec(&config_json()).unwrap();
    let env = |name: &str| (name == "PSEUDONYM_KEY").then(|| PSEUDONYM_KEY.to_owned());
    Config::load(&bytes, &env).unwrap()
}

fn engine() -> Engine {
    Engine::new(config())
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

/// Identity headers a client tries to smuggle in, in odd spellings.
fn spoofed() -> Vec<(String, String)> {
    [
        "x-mpass-email",
        "X_Mpass_Uid",
        "x-shop-first-name",
        "X-Shop-Claims",
        "x-mpass-learner-id",
    ]
    .iter()
    .map(|n| ((*n).to_owned(), SPOOF.to_owned()))
    .collect()
}

fn handle(engine: &Engine, path: &str, token: Option<&str>) -> (Outcome, VmState) {
    let mut headers = vec![
        (":authority".to_owned(), "app.example.fi".to_owned()),
        (":path".to_owned(), path.to_owned()),
        (":method".to_owned(), "GET".to_owned()),
    ];
    if let Some(t) = token {
        headers.push(("authorization".to_owned(), format!("Bearer {t}")));
    }
    headers.extend(spoofed());
    let mut vm = engine.new_state();
    let req = Request {
        headers: &headers,
        route_name: None,
        raw: &[],
    };
    let d = engine.handle(&req, u64::try_from(NOW_S).unwrap() * 1000, &mut vm, false);
    (d, vm)
}

/// Every string a claim carries, and the `;`-separated parts of it: none of
/// them may appear in an audit line or a response body.
fn claim_strings(claims: &Map<String, Value>) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => {
                out.push(s.clone());
                out.extend(s.split(';').map(str::to_owned));
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for (name, v) in claims {
        // Protocol claims are not user attributes.
        if !claims::PROTOCOL_CLAIMS.contains(&name.as_str()) {
            walk(v, &mut out);
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

/// No claim value in `text`. Short values (a class level `9`, a flag `0`)
/// would match digits of a timestamp, so they are compared against whole
/// JSON strings instead of substrings.
fn assert_no_claim_value(text: &str, claims: &Map<String, Value>, what: &str) {
    let json_strings: Vec<String> = match serde_json::from_str::<Value>(text) {
        Ok(v) => {
            let mut out = Vec::new();
            fn walk(v: &Value, out: &mut Vec<String>) {
                match v {
                    Value::String(s) => out.push(s.clone()),
                    Value::Array(a) => a.iter().for_each(|i| walk(i, out)),
                    Value::Object(m) => m.iter().for_each(|(k, i)| {
                        out.push(k.clone());
                        walk(i, out)
                    }),
                    _ => {}
                }
            }
            walk(&v, &mut out);
            out
        }
        Err(_) => vec![text.to_owned()],
    };
    for value in claim_strings(claims) {
        if value.chars().count() >= 4 {
            assert!(
                !text.contains(&value),
                "{what} carries the claim value {value:?}: {text}"
            );
        } else {
            assert!(
                !json_strings.contains(&value),
                "{what} carries the claim value {value:?}: {text}"
            );
        }
    }
}

enum Expect {
    Allow {
        /// Exact `(header, value as sent)` list, in order, payload excluded.
        set: Vec<(&'static str, &'static str)>,
        /// The decoded payload header, when the contract has one.
        payload: Option<Value>,
        released: Vec<&'static str>,
        withheld: Vec<&'static str>,
    },
    Deny {
        status: u16,
        body: &'static str,
        reason: &'static str,
    },
}

struct Case {
    name: &'static str,
    provider: &'static str,
    path: &'static str,
    claims: Map<String, Value>,
    expect: Expect,
}

fn without(mut claims: Map<String, Value>, name: &str) -> Map<String, Value> {
    claims.remove(name);
    claims
}

const LEARNER_ID: &str = "urn:oid:1.3.6.1.4.1.16161.1.1.27";

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "the web shop never sees a learner's e-mail",
            provider: "webshop",
            path: "/shop/basket",
            claims: with(
                fixture("learner"),
                "email",
                json!("aino.savynen@example.fi"),
            ),
            expect: Expect::Allow {
                set: vec![
                    ("x-shop-first-name", "Aino"),
                    (
                        "x-mpass-uid",
                        "MPASSOID.391ea8eb34f1e27024ab1342603537bdbd494900",
                    ),
                ],
                payload: Some(json!({
                    "given_name": "Aino",
                    "urn:mpass.id:uid": "MPASSOID.391ea8eb34f1e27024ab1342603537bdbd494900"
                })),
                released: vec!["given_name", "urn:mpass.id:uid"],
                withheld: vec![
                    "sub",
                    "family_name",
                    "urn:mpass.id:nickname",
                    LEARNER_ID,
                    "urn:mpass.id:schoolInfo",
                    "urn:mpass.id:classLevel",
                    "urn:mpass.id:role",
                    "urn:mpass.id:educationProviderInfo",
                    "urn:mpass.id:originalIssuer",
                    "email",
                ],
            },
        },
        Case {
            name: "the web shop sees a staff member's e-mail",
            provider: "webshop",
            path: "/shop/basket",
            claims: fixture("staff"),
            expect: Expect::Allow {
                set: vec![
                    ("x-shop-first-name", "Maarit"),
                    (
                        "x-mpass-uid",
                        "MPASSOID.0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c",
                    ),
                    ("x-mpass-email", "maarit.nieminen%40testikunta.example.fi"),
                ],
                payload: Some(json!({
                    "given_name": "Maarit",
                    "urn:mpass.id:uid": "MPASSOID.0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c",
                    "email": "maarit.nieminen@testikunta.example.fi"
                })),
                released: vec!["given_name", "urn:mpass.id:uid", "email"],
                withheld: vec![
                    "sub",
                    "family_name",
                    LEARNER_ID,
                    "urn:mpass.id:role",
                    "urn:mpass.id:educationProviderInfo",
                    "email_verified",
                ],
            },
        },
        Case {
            name: "a Finnish given name is percent-encoded",
            provider: "webshop",
            path: "/shop/basket",
            claims: fixture("teacher"),
            expect: Expect::Allow {
                set: vec![
                    ("x-shop-first-name", "Pekka-%C3%84ij%C3%B6"),
                    (
                        "x-mpass-uid",
                        "MPASSOID.8d0c1a9f7e6b5a4c3d2e1f0a9b8c7d6e5f4a3b2c",
                    ),
                ],
                payload: Some(json!({
                    "given_name": "Pekka-Äijö",
                    "urn:mpass.id:uid": "MPASSOID.8d0c1a9f7e6b5a4c3d2e1f0a9b8c7d6e5f4a3b2c"
                })),
                released: vec!["given_name", "urn:mpass.id:uid"],
                withheld: vec![
                    "sub",
                    "family_name",
                    LEARNER_ID,
                    "urn:mpass.id:schoolInfo",
                    "urn:mpass.id:learningMaterialsCharge",
                    "urn:mpass.id:role",
                    "urn:mpass.id:educationProviderInfo",
                    "urn:mpass.id:originalIssuer",
                ],
            },
        },
        Case {
            name: "a provider permitted by one of two education providers sees only that one",
            provider: "second",
            path: "/second/materials",
            claims: fixture("teacher"),
            expect: Expect::Allow {
                set: vec![
                    ("x-mpass-family-name", "%C3%96hman"),
                    (
                        "x-mpass-school-info",
                        r#"["04647;\u00c4\u00e4nekosken testilukio","1.2.246.562.10.00000000005;\u00c4\u00e4nekosken testilukio"]"#,
                    ),
                    (
                        "x-mpass-learning-materials-charge",
                        r#"["0;04647","0;1.2.246.562.10.00000000005"]"#,
                    ),
                    (
                        "x-mpass-role",
                        r#"["1.2.246.562.10.00000000004;04647;;Rehtori;6;1.2.246.562.10.00000000005;1.2.246.562.10.00000000006"]"#,
                    ),
                    (
                        "x-mpass-education-provider-info",
                        r#"["1.2.246.562.10.00000000004;\u00c4\u00e4nekosken testikaupunki"]"#,
                    ),
                ],
                payload: None,
                released: vec![
                    "family_name",
                    "urn:mpass.id:schoolInfo",
                    "urn:mpass.id:learningMaterialsCharge",
                    "urn:mpass.id:role",
                    "urn:mpass.id:educationProviderInfo",
                ],
                withheld: vec![
                    "sub",
                    "given_name",
                    "urn:mpass.id:uid",
                    LEARNER_ID,
                    "urn:mpass.id:originalIssuer",
                ],
            },
        },
        Case {
            name: "a legacy 2019 token is mapped to current names and mpass_cid never leaves",
            provider: "lms",
            path: "/lms/course/1",
            claims: fixture("legacy"),
            expect: Expect::Allow {
                set: vec![
                    ("x-mpass-uid", "MPASSOID.53b1af17cb284998638b5"),
                    ("x-mpass-learner-id", "1.2.246.562.24.90000000001"),
                    ("x-mpass-role", r#"["Demoj\u00e4rvi;00000;9A;Oppilas"]"#),
                    ("x-mpass-group", "9A"),
                    ("x-mpass-school", "Demoj%C3%A4rven%20testikoulu"),
                    ("x-mpass-school-code", "00000"),
                    ("x-mpass-municipality", "Demoj%C3%A4rvi"),
                ],
                payload: None,
                released: vec![
                    "urn:mpass.id:uid",
                    LEARNER_ID,
                    "urn:mpass.id:role",
                    "urn:mpass.id:class",
                    "urn:mpass.id:school",
                    "urn:mpass.id:schoolCode",
                    "urn:mpass.id:municipality",
                ],
                withheld: vec![
                    "sub",
                    "given_name",
                    "family_name",
                    "urn:mpass.id:municipalityCode",
                    "never_releasable",
                ],
            },
        },
        Case {
            name: "a contract allowing test identities accepts a test learner number",
            provider: "pilot",
            path: "/pilot/start",
            claims: fixture("test-learner"),
            expect: Expect::Allow {
                set: vec![
                    (
                        "x-mpass-uid",
                        "MPASSOID.test0000000000000000000000000000000001",
                    ),
                    ("x-mpass-learner-id", "1.2.246.562.98.10000000001"),
                ],
                payload: None,
                released: vec!["urn:mpass.id:uid", LEARNER_ID],
                withheld: vec!["sub", "given_name", "family_name", "urn:mpass.id:role"],
            },
        },
        Case {
            name: "a provider without a contract is a pure gate and receives nothing",
            provider: "gate",
            path: "/gate/",
            claims: fixture("staff"),
            expect: Expect::Allow {
                set: vec![],
                payload: None,
                released: vec![],
                withheld: vec![
                    "sub",
                    "given_name",
                    "family_name",
                    "urn:mpass.id:uid",
                    LEARNER_ID,
                    "urn:mpass.id:role",
                    "urn:mpass.id:educationProviderInfo",
                    "email",
                    "email_verified",
                ],
            },
        },
        Case {
            name: "a test learner number is refused where the contract does not allow it",
            provider: "webshop",
            path: "/shop/basket",
            claims: fixture("test-learner"),
            expect: Expect::Deny {
                status: 403,
                body: r#"{"error":"contract_violation","reason":"test_identity_not_allowed"}"#,
                reason: "test_identity_not_allowed",
            },
        },
        Case {
            name: "a user from a non-permitted organisation is refused",
            provider: "webshop",
            path: "/shop/basket",
            claims: with(
                fixture("learner"),
                "urn:mpass.id:role",
                json!([
                    "1.2.246.562.10.00000000009;12345;9F;Oppilas;1;1.2.246.562.10.00000000008;"
                ]),
            ),
            expect: Expect::Deny {
                status: 403,
                body: r#"{"error":"contract_violation","reason":"organisation_not_permitted"}"#,
                reason: "organisation_not_permitted",
            },
        },
        Case {
            name: "a malformed learner number is refused",
            provider: "webshop",
            path: "/shop/basket",
            claims: with(fixture("learner"), LEARNER_ID, json!("1.2.246.562.24.1")),
            expect: Expect::Deny {
                status: 403,
                body: r#"{"error":"contract_violation","reason":"invalid_learner_id"}"#,
                reason: "invalid_learner_id",
            },
        },
        Case {
            name: "a missing required attribute is refused",
            provider: "webshop",
            path: "/shop/basket",
            claims: without(fixture("staff"), "urn:mpass.id:uid"),
            expect: Expect::Deny {
                status: 403,
                body: r#"{"error":"contract_violation","reason":"missing_required_attribute"}"#,
                reason: "missing_required_attribute",
            },
        },
        Case {
            name: "a token for another audience is forbidden before the contract",
            provider: "webshop",
            path: "/shop/basket",
            claims: fixture("legacy"),
            expect: Expect::Deny {
                status: 403,
                body: r#"{"error":"forbidden","reason":"audience_mismatch"}"#,
                reason: "audience_mismatch",
            },
        },
    ]
}

fn expected_counters(provider: &str, released: &[&str], withheld: &[&str]) -> Vec<String> {
    let alias = |n: &str| claims::lookup(n).map_or(n.to_owned(), |(a, _)| a.alias.to_owned());
    let mut out = vec![
        "spoofed_headers_removed.stat_prefix=main".to_owned(),
        "token_cache.stat_prefix=main.result=miss".to_owned(),
        // The token left its carrier (the Authorization header).
        "tokens_stripped.stat_prefix=main.carrier=header".to_owned(),
        format!("decisions.stat_prefix=main.provider={provider}.outcome=allow.reason=ok"),
    ];
    out.extend(released.iter().map(|a| {
        format!(
            "released.stat_prefix=main.provider={provider}.attribute={}",
            alias(a)
        )
    }));
    out.extend(withheld.iter().map(|a| {
        format!(
            "withheld.stat_prefix=main.provider={provider}.attribute={}",
            alias(a)
        )
    }));
    out
}

#[test]
fn every_contract_gives_its_upstream_exactly_what_it_allows_and_nothing_else() {
    let engine = engine();
    let config = config();
    for case in cases() {
        let name = case.name;
        let token = token(&case.claims);
        let (d, vm) = handle(&engine, case.path, Some(&token));
        let version = config
            .providers
            .iter()
            .find(|p| p.id == case.provider)
            .map(|p| p.contract.version().to_owned())
            .unwrap();

        // Spoofed identity headers are removed on every forwarded path; a
        // refused request never reaches the upstream at all.
        match &d.decision {
            Decision::Forward { remove, .. } => {
                for (spoof, _) in spoofed() {
                    assert!(
                        remove.contains(&spoof),
                        "{name}: {spoof} not removed: {remove:?}"
                    );
                }
            }
            Decision::Respond(_) => {}
            Decision::Wait(w) => panic!("{name}: parked for {w:?}"),
        }
        for (h, v) in d.decision.headers() {
            assert!(!v.contains(SPOOF), "{name}: {h} carries a spoofed value");
            assert!(render::is_safe_header_value(v), "{name}: {h}: {v:?}");
            assert!(!v.contains(&token), "{name}: the token is in {h}");
        }

        let audit = d.audit.clone().expect("an audit record");
        let audit_json: Value = serde_json::from_str(&audit.to_json(NOW_S)).unwrap();
        assert_no_claim_value(&audit.to_json(NOW_S), &case.claims, name);
        assert_eq!(audit_json["type"], "mpass_guard.audit", "{name}");
        assert_eq!(audit_json["provider"], case.provider, "{name}");
        assert_eq!(audit_json["contract_version"], version.as_str(), "{name}");
        // A verified token's subject is correlated by a keyed pseudonym,
        // also when it is refused for its audience or by the contract.
        let subject = audit_json["subject"].as_str().expect("a subject pseudonym");
        assert_eq!(subject.len(), 32, "{name}");
        assert!(subject.bytes().all(|b| b.is_ascii_hexdigit()), "{name}");

        match case.expect {
            Expect::Allow {
                set,
                payload,
                released,
                withheld,
            } => {
                assert!(
                    d.decision.response().is_none(),
                    "{name}: refused: {:?}",
                    d.decision.response()
                );
                assert!(
                    d.decision.removals().contains(&"authorization".to_owned()),
                    "{name}: token kept"
                );
                let (payload_set, got): (Vec<_>, Vec<_>) = d
                    .decision
                    .headers()
                    .partition(|(h, _)| *h == "x-shop-claims");
                assert_eq!(got, set, "{name}");
                match payload {
                    Some(p) => {
                        assert_eq!(payload_set.len(), 1, "{name}");
                        let decoded = render::decode_payload(payload_set[0].1).unwrap();
                        assert_eq!(Value::Object(decoded), p, "{name}");
                    }
                    None => assert!(payload_set.is_empty(), "{name}"),
                }
                assert_eq!(audit.released, released, "{name}");
                assert_eq!(audit.withheld, withheld, "{name}");
                assert_eq!(audit_json["decision"], "allow", "{name}");
                assert_eq!(audit_json["status"], 200, "{name}");
                assert_eq!(audit_json["reason"], "ok", "{name}");
                // The per-controller counters have their own tests
                // (tests/released_by_controller.rs).
                let names: Vec<String> = vm
                    .counter_names(&d)
                    .into_iter()
                    .filter(|n| !n.starts_with("released_attributes."))
                    .collect();
                assert_eq!(
                    names,
                    expected_counters(case.provider, &released, &withheld),
                    "{name}"
                );
            }
            Expect::Deny {
                status,
                body,
                reason,
            } => {
                let resp = d.decision.response().cloned().expect("a local reply");
                assert_eq!(resp.status, status, "{name}");
                assert_eq!(resp.body, body, "{name}");
                assert_no_claim_value(&resp.body, &case.claims, name);
                assert_eq!(
                    d.decision.headers().count(),
                    0,
                    "{name}: headers set on a refusal"
                );
                assert_eq!(audit_json["decision"], "deny", "{name}");
                assert_eq!(audit_json["status"], status, "{name}");
                assert_eq!(audit_json["reason"], reason, "{name}");
                assert_eq!(audit_json["released"], json!([]), "{name}");
                assert_eq!(
                    vm.counter_names(&d),
                    vec![
                        "spoofed_headers_removed.stat_prefix=main".to_owned(),
                        "token_cache.stat_prefix=main.result=miss".to_owned(),
                        format!(
                            "decisions.stat_prefix=main.provider={}.outcome=deny.reason={reason}",
                            case.provider
                        )
                    ],
                    "{name}"
                );
            }
        }
    }
}

#[test]
fn a_request_without_a_token_is_refused_with_a_bearer_challenge_and_no_subject() {
    let engine = engine();
    let (d, vm) = handle(&engine, "/shop/basket", None);
    let resp = d.decision.response().cloned().expect("a local reply");
    assert_eq!(resp.status, 401);
    assert_eq!(resp.body, r#"{"error":"missing_token"}"#);
    assert!(resp.headers.contains(&(
        "www-authenticate".to_owned(),
        r#"Bearer realm="mpass-guard""#.to_owned()
    )));
    let audit = d.audit.clone().expect("an audit record");
    assert_eq!(audit.reason, "missing_token");
    assert_eq!(audit.subject, None);
    assert!(vm.counter_names(&d).contains(
        &"decisions.stat_prefix=main.provider=webshop.outcome=deny.reason=missing_token".to_owned()
    ));
}

#[test]
fn the_same_token_gives_two_providers_different_releases() {
    let engine = engine();
    let token = token(&fixture("teacher"));
    let names = |d: &Outcome| {
        d.decision
            .headers()
            .map(|(h, _)| h.to_owned())
            .collect::<Vec<_>>()
    };
    let (shop, _) = handle(&engine, "/shop/x", Some(&token));
    let (second, _) = handle(&engine, "/second/x", Some(&token));
    assert_eq!(
        names(&shop),
        ["x-shop-first-name", "x-mpass-uid", "x-shop-claims"]
    );
    assert!(!names(&second)
        .iter()
        .any(|n| n == "x-mpass-uid" || n == "x-shop-first-name"));
    assert!(names(&second).contains(&"x-mpass-role".to_owned()));
}

#[test]
fn the_subject_pseudonym_is_stable_keyed_and_not_the_subject() {
    let engine = engine();
    let claims = fixture("staff");
    let a = handle(&engine, "/shop/x", Some(&token(&claims)))
        .0
        .audit
        .unwrap();
    let b = handle(&engine, "/gate/x", Some(&token(&claims)))
        .0
        .audit
        .unwrap();
    assert_eq!(
        a.subject, b.subject,
        "one person, one pseudonym across providers"
    );
    let sub = claims["sub"].as_str().unwrap();
    assert!(!a.to_json(NOW_S).contains(sub));
    let other = handle(&engine, "/shop/x", Some(&token(&fixture("teacher"))))
        .0
        .audit
        .unwrap();
    assert_ne!(a.subject, other.subject);
}

#[test]
fn an_unprotected_path_passes_but_spoofed_headers_are_still_removed() {
    let engine = engine();
    let (d, vm) = handle(&engine, "/public/info", None);
    assert!(
        d.decision.response().is_none() && d.audit.is_none() && d.decision.headers().count() == 0
    );
    assert_eq!(d.decision.removals().len(), spoofed().len());
    assert_eq!(
        vm.counter_names(&d),
        [
            "spoofed_headers_removed.stat_prefix=main",
            "unmatched.stat_prefix=main.action=strip"
        ]
    );
}

#[test]
fn the_decision_record_names_the_token_and_carries_only_released_roles_for_rbac() {
    let engine = engine();
    // The teacher holds role 2 in Mansikkala and 6 in Äänekoski; `second`
    // is permitted by Äänekoski only.
    let (d, _vm) = handle(&engine, "/second/page", Some(&token(&fixture("teacher"))));
    assert!(d.decision.response().is_none());
    let record = d.record();
    assert_eq!(record.provider, Some("second"));
    assert_eq!(record.decision.as_str(), "allow");
    assert_eq!((record.reason, record.status), ("ok", None));
    assert_eq!(record.issuer, Some(ISS));
    assert_eq!(record.kid, Some("rsa-a"));
    assert_eq!(record.alg, Some("RS256"));
    assert_eq!(record.stripped_tokens, 1);
    assert_eq!(record.subject.map(str::len), Some(32));
    let audit = d.audit.clone().unwrap();
    assert_eq!(record.released, audit.released);
    let attributes = record.attributes();
    assert_eq!(attributes.role_codes, ["6"]);
    assert_eq!(attributes.organisations, ["1.2.246.562.10.00000000004"]);
    assert_eq!(attributes.org_roles, ["1.2.246.562.10.00000000004:6"]);
}

#[test]
fn a_provider_that_releases_no_role_gives_rbac_no_roles() {
    let engine = engine();
    let (d, _vm) = handle(&engine, "/shop/basket", Some(&token(&fixture("teacher"))));
    let attributes = d.record().attributes();
    assert!(attributes.role_codes.is_empty() && attributes.org_roles.is_empty());
}

#[test]
fn refused_and_unmatched_requests_have_a_record_too() {
    let engine = engine();
    let (missing, _vm) = handle(&engine, "/shop/basket", None);
    let r = missing.record();
    assert_eq!(
        (r.provider, r.decision.as_str(), r.reason, r.status),
        (Some("webshop"), "deny", "missing_token", Some(401))
    );
    assert_eq!((r.issuer, r.kid, r.stripped_tokens), (None, None, 0));
    let (unmatched, _vm) = handle(&engine, "/public/info", None);
    let r = unmatched.record();
    assert_eq!(
        (r.provider, r.decision.as_str(), r.status),
        (None, "unmatched", None)
    );
}

#[test]
fn text_headers_move_utf8_values_without_keeping_a_raw_copy_and_keep_other_bytes_exactly() {
    use mpass_guard::engine::text_headers;
    let raw = vec![
        (":path".to_owned(), b"/shop/".to_vec()),
        (
            "x-name".to_owned(),
            "\u{c4}\u{e4}nekoski".as_bytes().to_vec(),
        ),
    ];
    let (headers, kept) = text_headers(raw);
    assert_eq!(
        headers,
        vec![
            (":path".to_owned(), "/shop/".to_owned()),
            ("x-name".to_owned(), "\u{c4}\u{e4}nekoski".to_owned()),
        ]
    );
    // Empty: the text values are the bytes (`Request::raw`).
    assert!(kept.is_empty());

    let raw = vec![
        (":path".to_owned(), b"/shop/".to_vec()),
        ("x-latin1".to_owned(), b"\xc4\xe4nekoski".to_vec()),
        ("x-after".to_owned(), b"ok".to_vec()),
    ];
    let (headers, kept) = text_headers(raw.clone());
    assert_eq!(headers[1].1, "\u{fffd}\u{fffd}nekoski");
    assert_eq!(headers[2], ("x-after".to_owned(), "ok".to_owned()));
    assert_eq!(kept, raw, "a value that is not UTF-8 keeps its bytes");
}
