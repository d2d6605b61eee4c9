//! Contracts whose organisations come from the MPASSid management service,
//! through `Engine::handle` with a fixed clock: the engine drives the pure
//! registry source as the glue does (`due`, then `registry_fetched` with
//! each document), so a request parks for the first snapshot, is released
//! under it, is refused once a new snapshot withdraws the permission (the
//! token cache included), keeps the last good snapshot until `max_stale`
//! and then answers 503 `registry_unavailable`. The documents are written
//! here from `shared/mpassid/MANAGEMENT-SERVICE.md`, not from real data.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use mpass_guard::alg::Alg;
use mpass_guard::config::Config;
use mpass_guard::engine::{Decision, Engine, Outcome, Request, VmState, WaitFor};
use mpass_guard::jwks::Fetched;
use mpass_guard::mint;
use serde_json::{json, Value};

mod common;
use common::{jwks, key, ISS};

/// 2026-11-26T12:00:00Z.
const NOW_S: i64 = 1_795_694_400;
const T0: u64 = NOW_S as u64 * 1000;

const TESTIKUNTA: &str = "1.2.246.562.10.99887766551";
const KAIKKIKUNTA: &str = "1.2.246.562.10.11111111111";
const POISTUNUT: &str = "1.2.246.562.10.22222222222";
const TESTIVAIHE: &str = "1.2.246.562.10.33333333333";
const STATIC_ORG: &str = "1.2.246.562.10.00000000004";

const CLIENT: &str = "oppimateriaali-prod";
const LIBRARY: &str = "kirjasto-app";
const DUPLICATE: &str = "kaksoispalvelu";
const SET_OPPI: i64 = 3_000_045;
const SET_KIRJASTO: i64 = 3_000_046;
const SET_MUU: i64 = 3_000_099;

fn config_json(allow_all: &[&str]) -> Value {
    json!({
        "issuers": [{
            "issuer": ISS,
            "local_jwks": {"inline_string": jwks(&[("rsa-a.pem", "rsa-a")])},
            "allowed_algorithms": ["RS256"]
        }],
        "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
        "registry": {
            "cluster": "mgmt",
            "base_uri": "http://127.0.0.1:8099/mpassid",
            "username_env": "MGMT_USER",
            "password_env": "MGMT_PASSWORD",
            "deployment_phase": "production",
            "refresh_interval": "60s",
            "timeout": "1s",
            "max_stale": "300s",
            "allow_all_services_for": allow_all
        },
        "providers": {
            "oppi": {
                "audiences": [CLIENT],
                "match": {"path_prefixes": ["/oppi/"]},
                "contract": {
                    "organisations_from": "registry",
                    "allow_test_learner_id": true,
                    "release": {"uid": {}, "learner_id": {"purpose": "linking course results"}}
                }
            },
            "kirjasto": {
                "audiences": [LIBRARY],
                "match": {"path_prefixes": ["/kirjasto/"]},
                "contract": {
                    "organisations_from": "both",
                    "organisations": [STATIC_ORG],
                    "allow_test_learner_id": true,
                    "release": {"uid": {}}
                }
            },
            "kaksois": {
                "audiences": [DUPLICATE],
                "match": {"path_prefixes": ["/kaksois/"]},
                "contract": {"organisations_from": "registry", "release": {"uid": {}}}
            },
            "static": {
                "audiences": [CLIENT],
                "match": {"path_prefixes": ["/static/"]},
                "contract": {"organisations": [STATIC_ORG], "release": {"uid": {}}}
            }
        }
    })
}

fn env(name: &str) -> Option<String> {
    match name {
        "MGMT_USER" => Some("mpass-guard".to_owned()),
        "MGMT_PASSWORD" => Some("registry-test-password".to_owned()),
        _ => None,
    }
}

fn load(json: &Value) -> Result<Config, String> {
    Config::load(&serde_json::to_vec(json).unwrap(), &env).map_err(|e| e.to_string())
}

fn engine_with(allow_all: &[&str]) -> Engine {
    Engine::new(load(&config_json(allow_all)).unwrap())
}

fn engine() -> Engine {
    engine_with(&[])
}

// ------------------------------------------------------------ documents

fn idp(id: i64, org: &str, sets: &[i64], phase: i64, active: bool) -> Value {
    json!({
        "id": id,
        "organization": {"oid": org, "name": "Kunta", "children": null, "ytunnus": null},
        "integrationSets": [],
        "permissions": sets.iter().map(|s| json!({"to": {"id": s, "integrations": []}, "lastUpdatedOn": "2026-03-02T14:05:11.208811"})).collect::<Vec<_>>(),
        "deploymentPhase": phase, "active": active,
        "configurationEntity": {"attributes": [], "idp": {"type": "wilma", "idpId": format!("wilma_{id}")}}
    })
}

/// `(sp id, client id, set, allowtestlearnerid)`; a set appears in full the
/// first time, then as a bare id (the API's quirk).
fn sps(list: &[(i64, &str, i64, &str)]) -> Vec<u8> {
    let mut seen = Vec::new();
    let items: Vec<Value> = list
        .iter()
        .map(|(id, client, set, test)| {
            let set_json = if seen.contains(set) {
                json!(set)
            } else {
                seen.push(*set);
                json!({"id": set, "deploymentPhase": 1, "active": true,
                       "configurationEntity": {"attributes": [], "set": {"type": "sp", "name": "s"}}})
            };
            json!({
                "id": id, "integrationSets": [set_json], "permissions": [],
                "deploymentPhase": 1, "active": true,
                "configurationEntity": {
                    "attributes": [{"type": "data", "name": "allowtestlearnerid", "content": test}],
                    "sp": {"type": "oidc", "name": client, "clientId": client,
                           "metadata": {"client_id": client}}
                }
            })
        })
        .collect();
    serde_json::to_vec(&json!({"serviceProviders": items})).unwrap()
}

fn default_sps() -> Vec<u8> {
    sps(&[
        (2_000_210, CLIENT, SET_OPPI, "true"),
        (2_000_212, LIBRARY, SET_KIRJASTO, "false"),
        (2_000_214, DUPLICATE, SET_MUU, "false"),
        (2_000_215, DUPLICATE, SET_KIRJASTO, "false"),
    ])
}

fn idps(items: &[Value]) -> Vec<u8> {
    serde_json::to_vec(&json!({"identityProviders": items})).unwrap()
}

/// Testikunta permits oppimateriaali and kirjasto (and so the duplicate's
/// second copy); Kaikkikunta permits "every service"; an inactive idp and
/// an idp of the testing phase permit oppimateriaali.
fn default_idps() -> Vec<u8> {
    idps(&[
        idp(
            1_000_123,
            TESTIKUNTA,
            &[SET_OPPI, SET_KIRJASTO, SET_MUU],
            1,
            true,
        ),
        idp(1_000_125, KAIKKIKUNTA, &[], 1, true),
        idp(1_000_126, POISTUNUT, &[SET_OPPI], 1, false),
        idp(4_000_001, TESTIVAIHE, &[SET_OPPI], 0, true),
    ])
}

/// One refresh as the glue runs it: both calls, their answers. Returns
/// the log messages and warnings of the refresh.
fn refresh(
    engine: &Engine,
    vm: &mut VmState,
    now: u64,
    idps: Option<Vec<u8>>,
    sps: Vec<u8>,
) -> (bool, Vec<String>) {
    let steps = vm
        .registry
        .as_mut()
        .unwrap()
        .due(now)
        .expect("a refresh is due");
    let first = match idps {
        Some(body) => Fetched::Response { status: 200, body },
        None => Fetched::Failed,
    };
    if let Some(event) = engine.registry_fetched(vm, now, &steps[0], first) {
        return (event.ok, event.warnings);
    }
    let event = engine
        .registry_fetched(
            vm,
            now,
            &steps[1],
            Fetched::Response {
                status: 200,
                body: sps,
            },
        )
        .expect("the second document ends the refresh");
    (event.ok, event.warnings)
}

// ------------------------------------------------------------ requests

fn token(aud: &str, org: &str, learner_id: &str) -> String {
    let claims = json!({
        "iss": ISS, "aud": aud, "sub": "REGISTRYTESTSUBJECT0000000000001",
        "iat": NOW_S - 60, "exp": NOW_S + 3600,
        "urn:mpass.id:uid": "MPASSOID.registrytest000000000000000000000001",
        "urn:oid:1.3.6.1.4.1.16161.1.1.27": learner_id,
        "urn:mpass.id:role": [format!("{org};30076;7A;Opettaja;2;1.2.246.562.10.00000000002;")]
    });
    mint::sign_compact(
        Alg::RS256,
        &key("rsa-a.pem"),
        &json!({"typ": "JWT", "kid": "rsa-a"}),
        &serde_json::to_vec(&claims).unwrap(),
    )
    .unwrap()
}

const REAL_LEARNER: &str = "1.2.246.562.24.33445566778";
const TEST_LEARNER: &str = "1.2.246.562.98.10000000001";

fn handle(
    engine: &Engine,
    vm: &mut VmState,
    path: &str,
    token: &str,
    now: u64,
    resumed: bool,
) -> Outcome {
    let headers = vec![
        (":authority".to_owned(), "app.example.fi".to_owned()),
        (":path".to_owned(), path.to_owned()),
        (":method".to_owned(), "GET".to_owned()),
        ("authorization".to_owned(), format!("Bearer {token}")),
    ];
    let req = Request {
        headers: &headers,
        route_name: None,
        raw: &[],
    };
    engine.handle(&req, now, vm, resumed)
}

/// The released header names, or the refusal's status and reason.
fn result(o: &Outcome) -> Result<Vec<String>, (u16, String)> {
    match &o.decision {
        Decision::Forward { .. } => Ok(o.decision.headers().map(|(n, _)| n.to_owned()).collect()),
        Decision::Respond(r) => Err((
            r.status,
            o.audit
                .as_ref()
                .map(|a| a.reason.to_owned())
                .unwrap_or_default(),
        )),
        Decision::Wait(w) => panic!("parked for {w:?}"),
    }
}

fn released(o: &Outcome) -> bool {
    matches!(o.decision, Decision::Forward { .. })
}

fn refused_for(o: &Outcome) -> Option<String> {
    result(o).err().map(|(_, r)| r)
}

/// A VM with the default snapshot loaded at `T0`.
fn loaded(engine: &Engine) -> VmState {
    let mut vm = engine.new_state();
    let (ok, _) = refresh(engine, &mut vm, T0, Some(default_idps()), default_sps());
    assert!(ok);
    vm
}

// ------------------------------------------------------------ tests

#[test]
fn a_request_before_the_first_snapshot_parks_and_is_released_under_it() {
    let engine = engine();
    let mut vm = engine.new_state();
    let t = token(CLIENT, TESTIKUNTA, REAL_LEARNER);
    let first = handle(&engine, &mut vm, "/oppi/x", &t, T0, false);
    assert_eq!(first.decision.wait(), Some(&WaitFor::Registry));
    let (ok, _) = refresh(
        &engine,
        &mut vm,
        T0 + 10,
        Some(default_idps()),
        default_sps(),
    );
    assert!(ok);
    let again = handle(&engine, &mut vm, "/oppi/x", &t, T0 + 10, true);
    let headers = result(&again).unwrap();
    assert!(headers.contains(&"x-mpass-uid".to_owned()), "{headers:?}");
}

#[test]
fn without_a_snapshot_after_the_wait_the_answer_is_503_registry_unavailable_with_retry_after() {
    let engine = engine();
    let mut vm = engine.new_state();
    let (ok, _) = refresh(&engine, &mut vm, T0, None, default_sps());
    assert!(!ok);
    let t = token(CLIENT, TESTIKUNTA, REAL_LEARNER);
    let o = handle(&engine, &mut vm, "/oppi/x", &t, T0 + 2_000, true);
    let Decision::Respond(r) = &o.decision else {
        panic!("not refused")
    };
    assert_eq!(r.status, 503);
    assert!(r
        .headers
        .iter()
        .any(|(n, v)| n == "retry-after" && v == "5"));
    assert!(r.body.contains("registry_unavailable"));
    assert_eq!(o.audit.as_ref().unwrap().reason, "registry_unavailable");
    // A static contract is not affected by the registry.
    let s = handle(
        &engine,
        &mut vm,
        "/static/x",
        &token(CLIENT, STATIC_ORG, REAL_LEARNER),
        T0,
        false,
    );
    assert!(released(&s));
}

#[test]
fn the_permitting_organisations_user_is_released_and_another_organisations_is_not() {
    let engine = engine();
    let mut vm = loaded(&engine);
    let ok = handle(
        &engine,
        &mut vm,
        "/oppi/x",
        &token(CLIENT, TESTIKUNTA, REAL_LEARNER),
        T0,
        false,
    );
    assert!(released(&ok));
    let other = handle(
        &engine,
        &mut vm,
        "/oppi/x",
        &token(CLIENT, STATIC_ORG, REAL_LEARNER),
        T0,
        false,
    );
    assert_eq!(
        refused_for(&other).as_deref(),
        Some("organisation_not_permitted")
    );
}

#[test]
fn a_permission_withdrawn_in_a_new_snapshot_refuses_the_next_request_even_from_the_token_cache() {
    let engine = engine();
    let mut vm = loaded(&engine);
    let t = token(CLIENT, TESTIKUNTA, REAL_LEARNER);
    assert!(released(&handle(
        &engine, &mut vm, "/oppi/x", &t, T0, false
    )));
    assert!(released(&handle(
        &engine,
        &mut vm,
        "/oppi/x",
        &t,
        T0 + 1_000,
        false
    )));
    assert_eq!(vm.cached_tokens(), 1);
    // Testikunta withdraws oppimateriaali.
    let withdrawn = idps(&[idp(1_000_123, TESTIKUNTA, &[SET_KIRJASTO], 1, true)]);
    let (ok, _) = refresh(
        &engine,
        &mut vm,
        T0 + 60_000,
        Some(withdrawn),
        default_sps(),
    );
    assert!(ok);
    let o = handle(&engine, &mut vm, "/oppi/x", &t, T0 + 60_001, false);
    assert_eq!(
        refused_for(&o).as_deref(),
        Some("organisation_not_permitted")
    );
    assert!(
        vm.counter_names(&o)
            .iter()
            .any(|n| n.starts_with("token_cache.") && n.ends_with("result=hit")),
        "the cached token was re-evaluated, not verified afresh: {:?}",
        vm.counter_names(&o)
    );
    // Permitted again: released again, without restart either.
    let (ok, _) = refresh(
        &engine,
        &mut vm,
        T0 + 120_000,
        Some(default_idps()),
        default_sps(),
    );
    assert!(ok);
    assert!(released(&handle(
        &engine,
        &mut vm,
        "/oppi/x",
        &t,
        T0 + 120_001,
        false
    )));
}

#[test]
fn the_last_good_snapshot_serves_through_an_outage_until_max_stale_then_503() {
    let engine = engine();
    let mut vm = loaded(&engine);
    let t = token(CLIENT, TESTIKUNTA, REAL_LEARNER);
    let (ok, _) = refresh(&engine, &mut vm, T0 + 60_000, None, default_sps());
    assert!(!ok);
    let o = handle(&engine, &mut vm, "/oppi/x", &t, T0 + 61_000, false);
    assert!(released(&o));
    assert!(vm
        .counter_names(&o)
        .contains(&"registry_stale.stat_prefix=main".to_owned()));
    // Past max_stale (300 s): refused at once, no second wait.
    let o = handle(&engine, &mut vm, "/oppi/x", &t, T0 + 300_001, false);
    assert_eq!(result(&o), Err((503, "registry_unavailable".to_owned())));
    // A good refresh ends it.
    let due_at = T0 + 300_002;
    let steps_due = vm.registry.as_mut().unwrap().due(due_at).is_some();
    assert!(steps_due, "a failed refresh is retried within the backoff");
}

#[test]
fn a_client_id_on_two_service_providers_is_refused_for_both_with_a_warning_naming_it() {
    let engine = engine();
    let mut vm = engine.new_state();
    let (ok, warnings) = refresh(&engine, &mut vm, T0, Some(default_idps()), default_sps());
    assert!(ok);
    assert!(
        warnings
            .iter()
            .any(|w| w.contains(DUPLICATE) && w.contains("more than one service provider")),
        "{warnings:?}"
    );
    let o = handle(
        &engine,
        &mut vm,
        "/kaksois/x",
        &token(DUPLICATE, TESTIKUNTA, REAL_LEARNER),
        T0,
        false,
    );
    assert_eq!(
        refused_for(&o).as_deref(),
        Some("organisation_not_permitted")
    );
}

#[test]
fn inactive_identity_providers_and_other_deployment_phases_permit_nothing() {
    let engine = engine();
    let mut vm = loaded(&engine);
    for org in [POISTUNUT, TESTIVAIHE] {
        let o = handle(
            &engine,
            &mut vm,
            "/oppi/x",
            &token(CLIENT, org, REAL_LEARNER),
            T0,
            false,
        );
        assert_eq!(
            refused_for(&o).as_deref(),
            Some("organisation_not_permitted"),
            "{org}"
        );
    }
}

#[test]
fn every_service_from_an_empty_permission_list_is_denied_unless_the_operator_opted_in() {
    let engine = engine();
    let mut vm = engine.new_state();
    let (_, warnings) = refresh(&engine, &mut vm, T0, Some(default_idps()), default_sps());
    assert!(
        warnings
            .iter()
            .any(|w| w.contains(KAIKKIKUNTA) && w.contains("allow_all_services_for")),
        "{warnings:?}"
    );
    let t = token(CLIENT, KAIKKIKUNTA, REAL_LEARNER);
    let o = handle(&engine, &mut vm, "/oppi/x", &t, T0, false);
    assert_eq!(
        refused_for(&o).as_deref(),
        Some("organisation_not_permitted")
    );

    let opted = engine_with(&[KAIKKIKUNTA]);
    let mut vm = loaded(&opted);
    assert!(released(&handle(&opted, &mut vm, "/oppi/x", &t, T0, false)));
}

#[test]
fn test_learner_numbers_need_both_the_contract_and_the_registry_the_stricter_wins() {
    let engine = engine();
    let mut vm = loaded(&engine);
    // oppimateriaali: contract true, registry "true".
    let o = handle(
        &engine,
        &mut vm,
        "/oppi/x",
        &token(CLIENT, TESTIKUNTA, TEST_LEARNER),
        T0,
        false,
    );
    assert!(released(&o));
    // kirjasto: contract true, registry "false".
    let o = handle(
        &engine,
        &mut vm,
        "/kirjasto/x",
        &token(LIBRARY, TESTIKUNTA, TEST_LEARNER),
        T0,
        false,
    );
    assert_eq!(
        refused_for(&o).as_deref(),
        Some("test_identity_not_allowed")
    );
    // kirjasto with a real learner number: released.
    let o = handle(
        &engine,
        &mut vm,
        "/kirjasto/x",
        &token(LIBRARY, TESTIKUNTA, REAL_LEARNER),
        T0,
        false,
    );
    assert!(released(&o));
}

#[test]
fn both_takes_the_static_list_and_the_registry_together() {
    let engine = engine();
    let mut vm = loaded(&engine);
    for org in [STATIC_ORG, TESTIKUNTA] {
        let o = handle(
            &engine,
            &mut vm,
            "/kirjasto/x",
            &token(LIBRARY, org, REAL_LEARNER),
            T0,
            false,
        );
        assert!(released(&o), "{org}: {:?}", result(&o));
    }
    let o = handle(
        &engine,
        &mut vm,
        "/kirjasto/x",
        &token(LIBRARY, KAIKKIKUNTA, REAL_LEARNER),
        T0,
        false,
    );
    assert_eq!(
        refused_for(&o).as_deref(),
        Some("organisation_not_permitted")
    );
}

#[test]
fn the_contract_version_in_the_audit_record_changes_with_the_permitting_organisations() {
    let engine = engine();
    let mut vm = loaded(&engine);
    let t = token(CLIENT, TESTIKUNTA, REAL_LEARNER);
    let before = handle(&engine, &mut vm, "/oppi/x", &t, T0, false)
        .audit
        .unwrap()
        .contract_version
        .clone();
    let more = idps(&[
        idp(1_000_123, TESTIKUNTA, &[SET_OPPI], 1, true),
        idp(1_000_129, STATIC_ORG, &[SET_OPPI], 1, true),
    ]);
    refresh(&engine, &mut vm, T0 + 60_000, Some(more), default_sps());
    let after = handle(&engine, &mut vm, "/oppi/x", &t, T0 + 60_001, false)
        .audit
        .unwrap()
        .contract_version
        .clone();
    assert_ne!(before, after);
}

// ------------------------------------------------------------ load-time checks

fn with_contract(contract: Value, registry: bool) -> Value {
    let mut c = config_json(&[]);
    c["providers"] = json!({"p": {"audiences": [CLIENT], "match": {"path_prefixes": ["/p/"]}, "contract": contract}});
    if !registry {
        c.as_object_mut().unwrap().remove("registry");
    }
    c
}

#[test]
fn organisations_from_registry_without_a_registry_is_refused_at_its_path() {
    let e = load(&with_contract(
        json!({"organisations_from": "registry"}),
        false,
    ))
    .unwrap_err();
    assert!(e.contains("providers.p.contract.organisations_from"), "{e}");
    assert!(e.contains("registry"), "{e}");
}

#[test]
fn every_organisation_cannot_be_combined_with_the_registry() {
    let e = load(&with_contract(
        json!({"organisations_from": "both", "organisations": ["*"]}),
        true,
    ))
    .unwrap_err();
    assert!(e.contains("providers.p.contract.organisations_from"), "{e}");
}

#[test]
fn a_static_list_is_required_for_static_and_both_and_refused_for_registry() {
    for from in ["static", "both"] {
        let e = load(&with_contract(json!({"organisations_from": from}), true)).unwrap_err();
        assert!(
            e.contains("providers.p.contract.organisations"),
            "{from}: {e}"
        );
    }
    let e = load(&with_contract(
        json!({"organisations_from": "registry", "organisations": [STATIC_ORG]}),
        true,
    ))
    .unwrap_err();
    assert!(e.contains("providers.p.contract.organisations:"), "{e}");
    assert!(e.contains("both"), "{e}");
}

#[test]
fn registry_credentials_come_from_the_vm_environment_and_a_missing_one_is_named() {
    let mut c = config_json(&[]);
    c["registry"]["password_env"] = json!("NOT_SET_ANYWHERE");
    let e = load(&c).unwrap_err();
    assert!(e.contains("registry.password_env"), "{e}");
    assert!(!e.contains("registry-test-password"));
}

#[test]
fn a_registry_no_contract_uses_is_a_warning() {
    let c = with_contract(json!({"organisations": [STATIC_ORG]}), true);
    let cfg = load(&c).unwrap();
    assert!(cfg
        .warnings
        .iter()
        .any(|w| w.path == "registry" && w.message.contains("for nothing")));
}

#[test]
fn releases_are_counted_under_the_registrys_organisations_as_controllers() {
    let engine = engine();
    let mut vm = loaded(&engine);
    let o = handle(
        &engine,
        &mut vm,
        "/oppi/x",
        &token(CLIENT, TESTIKUNTA, REAL_LEARNER),
        T0,
        false,
    );
    let names = vm.counter_names(&o);
    let label = TESTIKUNTA.replace('.', "_");
    assert!(
        names.iter().any(|n| n.starts_with("released_attributes.")
            && n.contains(&format!("controller={label}.attribute=uid"))),
        "{names:?}"
    );
}

#[test]
fn a_shadow_contract_from_the_registry_needs_the_registry_too() {
    let mut c = with_contract(json!({"organisations": [STATIC_ORG]}), false);
    c["providers"]["p"]["shadow_contract"] = json!({"organisations_from": "registry"});
    let e = load(&c).unwrap_err();
    assert!(
        e.contains("providers.p.shadow_contract.organisations_from"),
        "{e}"
    );
}
