//! `released_attributes` per controller through `Engine::handle`: an
//! attribute counts for the education provider of the user's permitted
//! role whose agreement releases it, controllers no contract names count as
//! `other`, and the labels never hold anything but configured OIDs, provider
//! ids and attribute aliases. Tokens minted at test time; the clock is fixed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use mpass_guard::alg::Alg;
use mpass_guard::config::Config;
use mpass_guard::engine::{Engine, Request};
use mpass_guard::mint;
use serde_json::{json, Map, Value};

mod common;
use common::{fixture_claims as fixture, jwks, key, ISS};

const NOW_S: i64 = 1_795_694_400;
const MANSIKKALA: &str = "1.2.246.562.10.00000000001";
const AANEKOSKI: &str = "1.2.246.562.10.00000000004";

fn engine() -> Engine {
    let cfg = json!({
        "issuers": [{
            "issuer": ISS,
            "local_jwks": {"inline_string": jwks(&[("rsa-a.pem", "rsa-a")])},
            "allowed_algorithms": ["RS256"]
        }],
        "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
        "providers": {
            "shop": {
                "audiences": ["studeo-webshop"],
                "match": {"path_prefixes": ["/shop/"]},
                "contract": {
                    "organisations": [MANSIKKALA, AANEKOSKI],
                    "release": {"role": {}, "education_provider_info": {}},
                    "agreements": {
                        MANSIKKALA: {"release": {"role": {}, "education_provider_info": {}}},
                        AANEKOSKI: {"release": {"education_provider_info": {}}}
                    },
                    "default_agreement": "deny"
                }
            },
            "open": {
                "audiences": ["studeo-webshop"],
                "match": {"path_prefixes": ["/open/"]},
                "contract": {"organisations": ["*"], "release": {"family_name": {}}}
            }
        }
    });
    let bytes = serde_json::to_vec(&cfg).unwrap();
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

fn per_controller(engine: &Engine, path: &str, claims: &Map<String, Value>) -> Vec<String> {
    let headers = vec![
        (":authority".to_owned(), "app.example.fi".to_owned()),
        (":path".to_owned(), path.to_owned()),
        (":method".to_owned(), "GET".to_owned()),
        (
            "authorization".to_owned(),
            format!("Bearer {}", token(claims)),
        ),
    ];
    let mut vm = engine.new_state();
    let req = Request::new(&headers, None);
    let outcome = engine.handle(&req, u64::try_from(NOW_S).unwrap() * 1000, &mut vm, false);
    let mut names: Vec<String> = vm
        .counter_names(&outcome)
        .into_iter()
        .filter(|n| n.starts_with("released_attributes."))
        .collect();
    names.sort();
    names
}

#[test]
fn an_attribute_counts_for_each_controller_whose_agreement_releases_it() {
    // A teacher in Mansikkala and a principal in Äänekoski.
    let names = per_controller(&engine(), "/shop/x", &fixture("teacher"));
    let m = "controller=1_2_246_562_10_00000000001";
    let a = "controller=1_2_246_562_10_00000000004";
    assert_eq!(
        names,
        [
            format!("released_attributes.stat_prefix=main.provider=shop.{m}.attribute=education_provider_info"),
            format!("released_attributes.stat_prefix=main.provider=shop.{m}.attribute=role"),
            format!("released_attributes.stat_prefix=main.provider=shop.{a}.attribute=education_provider_info"),
        ]
    );
}

#[test]
fn a_controller_no_contract_names_is_counted_as_other() {
    let mut claims = fixture("learner");
    claims.insert(
        "urn:mpass.id:role".into(),
        json!(["1.2.246.562.10.00000000077;30076;9F;Oppilas;1;1.2.246.562.10.00000000078;"]),
    );
    let names = per_controller(&engine(), "/open/x", &claims);
    assert_eq!(
        names,
        ["released_attributes.stat_prefix=main.provider=open.controller=other.attribute=family_name"]
    );
}

#[test]
fn a_named_controller_keeps_its_label_under_a_contract_for_every_organisation() {
    let names = per_controller(&engine(), "/open/x", &fixture("learner"));
    assert_eq!(
        names,
        ["released_attributes.stat_prefix=main.provider=open.controller=1_2_246_562_10_00000000001.attribute=family_name"]
    );
}
