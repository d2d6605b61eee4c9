//! Property: whatever the token holds and whatever the contract says, the
//! upstream receives only headers the contract declares, only printable
//! ASCII, only values taken from the token, and never a never-releasable
//! claim.

// An integration test is a test crate: a failed expectation should panic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use mpass_guard::claims::{self, CATALOGUE, NEVER_RELEASABLE};
use mpass_guard::contract::{CompileContext, Contract, ContractConfig};
use mpass_guard::render;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// Marks values of never-releasable claims; no other generated value can
/// contain it (other strings use lowercase letters only).
const SECRET: &str = "SECRET";

const ORGS: &[&str] = &[
    "1.2.246.562.10.00000000001",
    "1.2.246.562.10.00000000002",
    "1.2.246.562.10.00000000004",
    "1.2.246.562.99.7",
    "30076",
    "04647",
    "00000",
];

fn org() -> impl Strategy<Value = String> {
    prop::sample::select(ORGS).prop_map(str::to_owned)
}

fn noise() -> impl Strategy<Value = String> {
    "[a-z0-9;.: \\-\\x{e4}\\x{f6}\\x{c5}\\x{1f600}\\r\\n\\x00\\t\\x7f\\x{85}\\x{2028}\"\\\\]{0,16}"
}

/// A string that is sometimes structured like an MPASSid value (so the
/// organisation filters have something to keep) and sometimes noise.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        noise(),
        (org(), org(), noise(), 0u8..9, org(), prop::bool::ANY).prop_map(
            |(p, tk, g, c, s, seven)| {
                if seven {
                    format!("{p};{tk};{g};Opettaja;{c};{s};")
                } else {
                    format!("{p};{tk};{g};Oppilas")
                }
            }
        ),
        (org(), noise()).prop_map(|(o, n)| format!("{o};{n}")),
        (0u8..3, org()).prop_map(|(f, o)| format!("{f};{o}")),
        org(),
        prop::sample::select(
            &[
                "1.2.246.562.24.20000000018",
                "1.2.246.562.98.1",
                "1.2.246.562.24.1",
            ][..]
        )
        .prop_map(str::to_owned),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => text().prop_map(Value::String),
        3 => prop::collection::vec(text(), 0..4).prop_map(|v| json!(v)),
        1 => prop::bool::ANY.prop_map(Value::Bool),
        1 => any::<i32>().prop_map(|n| json!(n)),
        1 => Just(Value::Null),
        1 => prop::collection::vec(prop_oneof![text().prop_map(Value::String), Just(json!(3))], 0..3)
            .prop_map(Value::Array),
    ]
}

fn known_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Vec::new();
    for a in CATALOGUE.iter() {
        names.push(a.name);
        names.push(a.alias);
        names.extend(a.legacy.iter().copied());
    }
    names.extend(["iss", "aud", "_comment", "favourite_colour"]);
    names
}

fn claims_map() -> impl Strategy<Value = Map<String, Value>> {
    let known = prop::collection::vec((prop::sample::select(known_names()), value()), 0..14);
    let secret = prop::collection::vec(
        (
            prop::sample::select(NEVER_RELEASABLE),
            prop::bool::ANY,
            "[a-z]{0,4}",
        ),
        0..4,
    );
    (known, secret).prop_map(|(known, secret)| {
        let mut m = Map::new();
        for (k, v) in known {
            m.insert(k.to_owned(), v);
        }
        for (k, as_array, tail) in secret {
            let v = format!("{SECRET}{tail}");
            m.insert(k.to_owned(), if as_array { json!([v]) } else { json!(v) });
        }
        m
    })
}

fn contract_json() -> impl Strategy<Value = Value> {
    let rule = (
        prop::option::of(prop::collection::vec(1i64..=6, 1..3)),
        prop::bool::ANY,
    );
    let release = prop::collection::btree_map(0usize..CATALOGUE.len(), (0usize..3, rule), 0..10);
    (
        prop_oneof![
            Just(vec!["*".to_owned()]),
            prop::collection::btree_set(org(), 1..3).prop_map(|s| s.into_iter().collect())
        ],
        prop::sample::select(&["oid", "tk", "both"][..]),
        prop::bool::ANY,
        release,
        prop::bool::ANY,
    )
        .prop_map(|(orgs, form, allow_test, release, payload)| {
            let mut rel = Map::new();
            for (i, (name_kind, (only_roles, custom_header))) in release {
                let a = &CATALOGUE[i];
                let name = match name_kind {
                    0 => a.name,
                    1 => a.alias,
                    _ => a.legacy.first().copied().unwrap_or(a.alias),
                };
                let mut r = Map::new();
                r.insert("purpose".into(), json!("testing"));
                if let Some(codes) = only_roles {
                    r.insert("only_roles".into(), json!(codes));
                }
                if custom_header {
                    r.insert("header".into(), json!(format!("x-custom-{i}")));
                }
                rel.insert(name.to_owned(), Value::Object(r));
            }
            let mut c = json!({
                "organisations": orgs,
                "identifier_form": form,
                "allow_test_learner_id": allow_test,
                "release": rel,
            });
            if payload {
                c["payload_header"] = json!("x-mpass-claims");
            }
            c
        })
}

/// Every string the token carries, at any depth.
fn token_strings(claims: &Map<String, Value>) -> Vec<String> {
    let mut out = Vec::new();
    for v in claims.values() {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Array(items) => {
                out.extend(items.iter().filter_map(|i| i.as_str().map(str::to_owned)))
            }
            _ => {}
        }
    }
    out
}

/// A released value is derived from the token: a token string, a boolean,
/// or a role string with some fields blanked.
fn derived(v: &str, from: &[String]) -> bool {
    if v == "true" || v == "false" || from.iter().any(|t| t == v) {
        return true;
    }
    let fields: Vec<&str> = v.split(';').collect();
    from.iter().any(|t| {
        let tf: Vec<&str> = t.split(';').collect();
        tf.len() == fields.len() && tf.iter().zip(&fields).all(|(a, b)| b.is_empty() || a == b)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn released_headers_are_declared_derived_from_the_token_and_never_secret(
        contract in contract_json(),
        claims in claims_map(),
    ) {
        let wire: ContractConfig = serde_json::from_value(contract).expect("wire format");
        let ctx = CompileContext { header_prefix: "x-mpass-", extra_never_release: &[] };
        let (contract, _) = Contract::compile(&wire, "providers.p.contract", &ctx).expect("compiles");
        let declared: Vec<&str> = contract.header_names().collect();
        let Ok(release) = contract.apply(&claims) else { return Ok(()) };
        let from = token_strings(&claims);

        let mut seen = Vec::new();
        for (name, value) in &release.headers {
            prop_assert!(declared.contains(&name.as_str()), "undeclared header {}", name);
            prop_assert!(!seen.contains(name), "header {} set twice", name);
            seen.push(name.clone());
            prop_assert!(render::is_safe_header_value(value), "unsafe value {:?}", value);
            let values: Vec<String> = if Some(name.as_str()) == wire.payload_header.as_deref() {
                let payload = render::decode_payload(value).expect("payload decodes");
                for k in payload.keys() {
                    prop_assert!(release.released.contains(&k.as_str()), "payload carries {}", k);
                }
                token_strings(&payload)
            } else if value.starts_with('[') {
                render::decode_multi(value).expect("multi decodes")
            } else {
                vec![render::decode_single(value).expect("single decodes")]
            };
            for v in values {
                prop_assert!(!v.contains(SECRET), "never-releasable value released");
                prop_assert!(derived(&v, &from), "value not from the token: {:?}", v);
            }
        }
        for name in &release.released {
            prop_assert!(!claims::is_never_releasable(name));
            prop_assert!(claims::lookup(name).is_some());
        }
    }
}
