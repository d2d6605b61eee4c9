//! Contracts applied to the sample MPASSid claim sets: the exact headers each
//! kind of service receives, the denials, and the load-time errors.

// An integration test is a test crate: a failed expectation should panic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use mpass_guard::contract::{reason, CompileContext, Contract, ContractConfig, Denial, Release};
use mpass_guard::render;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

mod common;
use common::{fixture, shop_contract, with};

const PATH: &str = "providers.studeo.contract";

fn compile_with(contract: Value, extra: &[String]) -> Result<(Contract, Vec<String>), String> {
    let wire: ContractConfig = serde_json::from_value(contract).map_err(|e| e.to_string())?;
    let ctx = CompileContext {
        header_prefix: "x-mpass-",
        extra_never_release: extra,
    };
    Contract::compile(&wire, PATH, &ctx).map_err(|e| e.to_string())
}

fn compile(contract: Value) -> Contract {
    compile_with(contract, &[]).expect("contract compiles").0
}

/// Headers decoded back to values: a JSON array header to its items, a
/// percent-encoded header to its single value.
fn decoded(release: &Release) -> BTreeMap<String, Vec<String>> {
    release
        .headers
        .iter()
        .map(|(name, value)| {
            assert!(render::is_safe_header_value(value), "{name}: {value:?}");
            let values = if value.starts_with('[') {
                render::decode_multi(value).expect("multi value decodes")
            } else {
                vec![render::decode_single(value).expect("single value decodes")]
            };
            (name.clone(), values)
        })
        .collect()
}

fn expect(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
    pairs
        .iter()
        .map(|(n, vs)| (n.to_string(), vs.iter().map(|v| v.to_string()).collect()))
        .collect()
}

fn webshop() -> Contract {
    compile(shop_contract())
}

fn second_provider_only(form: &str) -> Contract {
    compile(json!({
        "organisations": ["1.2.246.562.10.00000000004"],
        "identifier_form": form,
        "release": {
            "family_name": {},
            "role": {},
            "school_info": {},
            "education_provider_info": {},
            "learning_materials_charge": {"purpose": "invoicing learning materials"},
            "original_issuer": {}
        }
    }))
}

fn legacy_lms(organisations: &[&str], form: &str) -> Contract {
    compile(json!({
        "organisations": organisations,
        "identifier_form": form,
        "release": {
            "urn:mpass.id:uid": {},
            "urn:oid:1.3.6.1.4.1.16161.1.1.27": {"purpose": "linking course results"},
            "urn:mpass.id:role": {},
            "urn:mpass.id:school": {},
            "urn:mpass.id:schoolCode": {},
            "urn:mpass.id:class": {},
            "urn:mpass.id:municipality": {}
        }
    }))
}

#[test]
fn released_headers_are_exactly_what_each_contract_allows() {
    let teacher_rehtori =
        "1.2.246.562.10.00000000004;04647;;Rehtori;6;1.2.246.562.10.00000000005;1.2.246.562.10.00000000006";
    type Case = (
        &'static str,
        Contract,
        Map<String, Value>,
        BTreeMap<String, Vec<String>>,
    );
    let cases: Vec<Case> = vec![
        (
            "webshop never sees a learners email",
            webshop(),
            with(fixture("learner"), "email", json!("aino@example.fi")),
            expect(&[
                ("x-mpass-uid", &["MPASSOID.391ea8eb34f1e27024ab1342603537bdbd494900"]),
                ("x-shop-first-name", &["Aino"]),
            ]),
        ),
        (
            "webshop sees a staff members email",
            webshop(),
            fixture("staff"),
            expect(&[
                ("x-mpass-uid", &["MPASSOID.0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c"]),
                ("x-shop-first-name", &["Maarit"]),
                ("x-mpass-email", &["maarit.nieminen@testikunta.example.fi"]),
            ]),
        ),
        (
            "a provider permitted by one of two education providers sees only that organisation",
            second_provider_only("both"),
            fixture("teacher"),
            expect(&[
                ("x-mpass-family-name", &["Öhman"]),
                ("x-mpass-school-info", &[
                    "04647;Äänekosken testilukio",
                    "1.2.246.562.10.00000000005;Äänekosken testilukio",
                ]),
                ("x-mpass-learning-materials-charge", &["0;04647", "0;1.2.246.562.10.00000000005"]),
                ("x-mpass-role", &[teacher_rehtori]),
                ("x-mpass-education-provider-info", &["1.2.246.562.10.00000000004;Äänekosken testikaupunki"]),
            ]),
        ),
        (
            "the oid form drops tk codes and blanks them in roles",
            second_provider_only("oid"),
            fixture("teacher"),
            expect(&[
                ("x-mpass-family-name", &["Öhman"]),
                ("x-mpass-school-info", &["1.2.246.562.10.00000000005;Äänekosken testilukio"]),
                ("x-mpass-learning-materials-charge", &["0;1.2.246.562.10.00000000005"]),
                ("x-mpass-role", &[
                    "1.2.246.562.10.00000000004;;;Rehtori;6;1.2.246.562.10.00000000005;1.2.246.562.10.00000000006",
                ]),
                ("x-mpass-education-provider-info", &["1.2.246.562.10.00000000004;Äänekosken testikaupunki"]),
            ]),
        ),
        (
            "the tk form drops oids and blanks the school oid in roles",
            second_provider_only("tk"),
            fixture("teacher"),
            expect(&[
                ("x-mpass-family-name", &["Öhman"]),
                ("x-mpass-school-info", &["04647;Äänekosken testilukio"]),
                ("x-mpass-learning-materials-charge", &["0;04647"]),
                ("x-mpass-role", &["1.2.246.562.10.00000000004;04647;;Rehtori;6;;1.2.246.562.10.00000000006"]),
                ("x-mpass-education-provider-info", &["1.2.246.562.10.00000000004;Äänekosken testikaupunki"]),
            ]),
        ),
        (
            "a test learner is served where the contract allows test identities",
            compile(json!({"organisations": ["*"], "allow_test_learner_id": true, "release": {"uid": {}}})),
            fixture("test-learner"),
            expect(&[("x-mpass-uid", &["MPASSOID.test0000000000000000000000000000000001"])]),
        ),
        (
            "a legacy token serves a contract written with current names",
            legacy_lms(&["00000"], "tk"),
            fixture("legacy"),
            expect(&[
                ("x-mpass-uid", &["MPASSOID.53b1af17cb284998638b5"]),
                ("x-mpass-learner-id", &["1.2.246.562.24.90000000001"]),
                ("x-mpass-role", &["Demojärvi;00000;9A;Oppilas"]),
                ("x-mpass-group", &["9A"]),
                ("x-mpass-school", &["Demojärven testikoulu"]),
                ("x-mpass-school-code", &["00000"]),
                ("x-mpass-municipality", &["Demojärvi"]),
            ]),
        ),
        (
            "a legacy token under the oid form loses its tk school code",
            legacy_lms(&["*"], "oid"),
            fixture("legacy"),
            expect(&[
                ("x-mpass-uid", &["MPASSOID.53b1af17cb284998638b5"]),
                ("x-mpass-learner-id", &["1.2.246.562.24.90000000001"]),
                ("x-mpass-role", &["Demojärvi;;9A;Oppilas"]),
                ("x-mpass-group", &["9A"]),
                ("x-mpass-school", &["Demojärven testikoulu"]),
                ("x-mpass-municipality", &["Demojärvi"]),
            ]),
        ),
    ];
    for (name, contract, claims, want) in cases {
        let release = contract
            .apply(&claims)
            .unwrap_or_else(|d| panic!("{name}: denied {d:?}"));
        assert_eq!(decoded(&release), want, "{name}");
        let declared: Vec<&str> = contract.header_names().collect();
        for (h, _) in &release.headers {
            assert!(declared.contains(&h.as_str()), "{name}: undeclared {h}");
        }
    }
}

#[test]
fn requests_are_denied_for_the_stated_reason_only() {
    let denial = |reason, attribute| Denial { reason, attribute };
    let learner_id = Some("urn:oid:1.3.6.1.4.1.16161.1.1.27");
    let cases: Vec<(&str, Contract, Map<String, Value>, Denial)> = vec![
        (
            "a test learner is refused by default",
            compile(json!({"organisations": ["*"], "release": {"uid": {}}})),
            fixture("test-learner"),
            denial(reason::TEST_IDENTITY_NOT_ALLOWED, learner_id),
        ),
        (
            "a malformed learner number is refused even when not released",
            compile(json!({"organisations": ["*"], "release": {"uid": {}}})),
            with(
                fixture("learner"),
                "urn:oid:1.3.6.1.4.1.16161.1.1.27",
                json!("1.2.246.562.24.1"),
            ),
            denial(reason::INVALID_LEARNER_ID, learner_id),
        ),
        (
            "a learner number of the wrong type is malformed",
            compile(json!({"organisations": ["*"]})),
            with(
                fixture("learner"),
                "urn:oid:1.3.6.1.4.1.16161.1.1.27",
                json!(12345),
            ),
            denial(reason::INVALID_LEARNER_ID, learner_id),
        ),
        (
            "a learner of another education provider is not permitted",
            second_provider_only("both"),
            fixture("learner"),
            denial(reason::ORGANISATION_NOT_PERMITTED, None),
        ),
        (
            "a token without roles is not permitted unless organisations is a wildcard",
            webshop(),
            with(fixture("staff"), "urn:mpass.id:role", json!([])),
            denial(reason::ORGANISATION_NOT_PERMITTED, None),
        ),
        (
            "a missing required attribute is named",
            compile(json!({
                "organisations": ["30076"],
                "required": ["email"],
                "release": {"email": {"purpose": "payment receipts"}}
            })),
            fixture("learner"),
            denial(reason::MISSING_REQUIRED_ATTRIBUTE, Some("email")),
        ),
        (
            "a required attribute filtered away by the identifier form is missing",
            compile(json!({
                "organisations": ["*"],
                "identifier_form": "oid",
                "required": ["school_code"],
                "release": {"school_code": {}}
            })),
            fixture("legacy"),
            denial(
                reason::MISSING_REQUIRED_ATTRIBUTE,
                Some("urn:mpass.id:schoolCode"),
            ),
        ),
    ];
    for (name, contract, claims, want) in cases {
        assert_eq!(contract.apply(&claims), Err(want), "{name}");
    }
}

#[test]
fn empty_values_are_withheld_not_sent_as_empty_headers() {
    let contract =
        compile(json!({"organisations": ["*"], "release": {"uid": {}, "given_name": {}}}));
    let release = contract
        .apply(&with(fixture("learner"), "given_name", json!("")))
        .expect("released");
    assert_eq!(release.released, ["urn:mpass.id:uid"]);
    assert!(release.withheld.contains(&"given_name"));
}

#[test]
fn header_injection_in_a_claim_value_stays_inside_the_value() {
    let contract =
        compile(json!({"organisations": ["*"], "release": {"given_name": {}, "role": {}}}));
    let claims = with(
        with(
            fixture("learner"),
            "given_name",
            json!("Aino\r\nx-admin: 1\u{0}"),
        ),
        "urn:mpass.id:role",
        json!(["1.2.246.562.10.1;30076;9F\r\n;Oppilas;1;1.2.246.562.10.2;"]),
    );
    let release = contract.apply(&claims).expect("released");
    assert_eq!(release.headers.len(), 2);
    for (_, v) in &release.headers {
        assert!(!v.bytes().any(|b| b < 0x20 || b == 0x7f), "{v:?}");
    }
    assert_eq!(
        decoded(&release)["x-mpass-given-name"],
        ["Aino\r\nx-admin: 1\u{0}"]
    );
}

#[test]
fn legacy_crypt_id_is_never_released_and_is_reported_as_withheld() {
    let release = legacy_lms(&["*"], "both")
        .apply(&fixture("legacy"))
        .expect("released");
    for (_, v) in &release.headers {
        assert!(!v.contains("f0ba7691"), "{v}");
    }
    assert!(release.withheld.contains(&"never_releasable"));
    assert!(!release.released.iter().any(|n| n.contains("Crypt")));
}

#[test]
fn purposes_and_withheld_attributes_are_recorded_by_name() {
    let release = webshop().apply(&fixture("staff")).expect("released");
    // Catalogue order, not the order the contract was written in.
    assert_eq!(
        release.released,
        ["given_name", "urn:mpass.id:uid", "email"]
    );
    assert_eq!(release.purposes.len(), 1);
    assert_eq!(release.purposes[0].0, "email");
    assert_eq!(&*release.purposes[0].1, "payment receipts");
    assert!(release
        .withheld
        .contains(&"urn:oid:1.3.6.1.4.1.16161.1.1.27"));
    assert!(release.withheld.contains(&"email_verified"));
    assert!(release.withheld.contains(&"other"), "the _comment claim");
    assert!(!release.withheld.contains(&"iss"));
}

#[test]
fn the_payload_header_carries_only_released_claims() {
    let contract = compile(json!({
        "organisations": ["1.2.246.562.10.00000000004"],
        "release": {"family_name": {}, "role": {}, "email_verified": {}},
        "payload_header": "x-mpass-claims"
    }));
    let release = contract
        .apply(&with(fixture("teacher"), "email_verified", json!(true)))
        .expect("released");
    let (name, value) = release.headers.last().expect("payload header");
    assert_eq!(name, "x-mpass-claims");
    let payload = render::decode_payload(value).expect("payload decodes");
    assert_eq!(
        Value::Object(payload),
        json!({
            "family_name": "Öhman",
            "email_verified": true,
            "urn:mpass.id:role": ["1.2.246.562.10.00000000004;;;Rehtori;6;1.2.246.562.10.00000000005;1.2.246.562.10.00000000006"]
        })
    );
    assert_eq!(
        contract.header_names().collect::<Vec<_>>(),
        [
            "x-mpass-family-name",
            "x-mpass-role",
            "x-mpass-email-verified",
            "x-mpass-claims"
        ]
    );
}

#[test]
fn the_version_names_the_contract_not_its_spelling() {
    let a = compile(
        json!({"organisations": ["30076", "1.2.246.562.10.00000000001"], "release": {"uid": {}, "role": {}}}),
    );
    let b = compile(
        json!({"organisations": ["1.2.246.562.10.00000000001", "30076"], "release": {"urn:mpass.id:role": {}, "mpass_uid": {}}}),
    );
    let c = compile(json!({"organisations": ["30076"], "release": {"uid": {}, "role": {}}}));
    assert_eq!(a.version().len(), 16);
    assert!(a.version().bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(a.version(), b.version());
    assert_ne!(a.version(), c.version());
}

#[test]
fn forwarding_the_token_is_allowed_with_a_warning() {
    let (contract, warnings) = compile_with(
        json!({"organisations": ["*"], "release": {"uid": {}}, "forward_token": true}),
        &[],
    )
    .expect("compiles");
    assert!(contract.forwards_token());
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0].starts_with("providers.studeo.contract.forward_token: "),
        "{}",
        warnings[0]
    );
    let (contract, warnings) =
        compile_with(json!({"organisations": ["*"]}), &[]).expect("compiles");
    assert!(!contract.forwards_token());
    assert!(warnings.is_empty());
}

#[test]
fn bad_contracts_fail_at_load_naming_the_field_and_the_attribute() {
    let never = |name: &str| json!({"organisations": ["*"], "release": {name: {"purpose": "x"}}});
    let cases: Vec<(&str, Value, &[&str], &str)> = vec![
        (
            "a never-releasable attribute is refused naming provider and attribute",
            never("mpass_cid"),
            &[],
            "providers.studeo.contract.release.mpass_cid: attribute `mpass_cid` is never releasable (providers.studeo.contract)",
        ),
        ("the legacy crypt id under its current name", never("urn:mpass.id:legacyCryptId"), &[], "is never releasable"),
        ("the national id in any case", never("HETU"), &[], "is never releasable"),
        ("a birth date", never("birthdate"), &[], "is never releasable"),
        (
            "an operator extension bans a catalogue attribute under any of its names",
            never("urn:mpass.id:classLevel"),
            &["class_level"],
            "providers.studeo.contract.release[\"urn:mpass.id:classLevel\"]: attribute `urn:mpass.id:classLevel` is never releasable by operator policy",
        ),
        (
            "an operator extension bans a claim outside the catalogue",
            never("favourite_colour"),
            &["favourite_colour"],
            "release.favourite_colour: attribute `favourite_colour` is never releasable",
        ),
        ("an unknown attribute", never("shoe_size"), &[], "release.shoe_size: unknown attribute `shoe_size`"),
        (
            "a sensitive attribute without a purpose",
            json!({"organisations": ["*"], "release": {"learner_id": {}}}),
            &[],
            "providers.studeo.contract.release.learner_id: attribute `learner_id` is sensitive and needs a non-empty purpose",
        ),
        (
            "a sensitive attribute with a blank purpose",
            json!({"organisations": ["*"], "release": {"email": {"purpose": "  "}}}),
            &[],
            "release.email.purpose: purpose must not be empty",
        ),
        (
            "an uppercase header name",
            json!({"organisations": ["*"], "release": {"uid": {"header": "X-Uid"}}}),
            &[],
            "release.uid.header: header name `X-Uid` must be lowercase",
        ),
        (
            "a credential header",
            json!({"organisations": ["*"], "release": {"uid": {"header": "cookie"}}}),
            &[],
            "release.uid.header: `cookie` is a credential, hop-by-hop or proxy header",
        ),
        (
            "a pseudo-header",
            json!({"organisations": ["*"], "release": {"uid": {"header": ":authority"}}}),
            &[],
            "is a pseudo-header",
        ),
        (
            "a header injection attempt",
            json!({"organisations": ["*"], "release": {"uid": {"header": "x-a\r\nx-b"}}}),
            &[],
            "must be lowercase token characters",
        ),
        (
            "two attributes on one header",
            json!({"organisations": ["*"], "release": {"uid": {}, "sub": {"header": "x-mpass-uid"}}}),
            &[],
            "header `x-mpass-uid` is already used by providers.studeo.contract.release.",
        ),
        (
            "the payload header on an attribute header",
            json!({"organisations": ["*"], "release": {"uid": {}}, "payload_header": "x-mpass-uid"}),
            &[],
            "payload_header: header `x-mpass-uid` is already used",
        ),
        (
            "one attribute by alias and canonical name",
            json!({"organisations": ["*"], "release": {"uid": {}, "urn:mpass.id:uid": {}}}),
            &[],
            "is `urn:mpass.id:uid`, already released as `uid`",
        ),
        (
            "one attribute by legacy and alias name",
            json!({"organisations": ["*"], "release": {"mpass_role": {}, "role": {}}}),
            &[],
            "already released as `mpass_role`",
        ),
        (
            "a role code out of range",
            json!({"organisations": ["*"], "release": {"uid": {"only_roles": [2, 7]}}}),
            &[],
            "release.uid.only_roles[1]: role code 7 is not one of 1-6",
        ),
        (
            "an empty role condition",
            json!({"organisations": ["*"], "release": {"uid": {"only_roles": []}}}),
            &[],
            "release.uid.only_roles: must list at least one role code",
        ),
        ("no organisations", json!({"organisations": []}), &[], "contract.organisations: must list at least one"),
        (
            "a learner number as an organisation",
            json!({"organisations": ["1.2.246.562.24.20000000018"]}),
            &[],
            "contract.organisations[0]: must be an OPH organisation OID",
        ),
        ("a four-digit school code", json!({"organisations": ["*", "3007"]}), &[], "organisations[0]: \"*\" must be the only"),
        (
            "a required attribute that is not released",
            json!({"organisations": ["*"], "required": ["uid"], "release": {"sub": {}}}),
            &[],
            "contract.required[0]: required attribute `uid` is not in release",
        ),
        (
            "a required attribute that depends on roles",
            json!({"organisations": ["*"], "required": ["uid"], "release": {"uid": {"only_roles": [2]}}}),
            &[],
            "required attribute `uid` cannot have only_roles",
        ),
        ("an unknown contract field", json!({"organisations": ["*"], "releases": {}}), &[], "unknown field `releases`"),
        ("an unknown rule field", json!({"organisations": ["*"], "release": {"uid": {"purpse": "x"}}}), &[], "unknown field `purpse`"),
        ("an unknown identifier form", json!({"organisations": ["*"], "identifier_form": "OID"}), &[], "unknown variant `OID`"),
    ];
    for (name, contract, extra, want) in cases {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        match compile_with(contract, &extra) {
            Ok(_) => panic!("{name}: compiled"),
            Err(e) => assert!(e.contains(want), "{name}: {e}"),
        }
    }
}

#[test]
fn a_release_object_naming_an_attribute_twice_is_refused() {
    let text = r#"{"organisations": ["*"], "release": {"uid": {}, "uid": {"header": "x-other"}}}"#;
    let err = serde_json::from_str::<ContractConfig>(text).expect_err("duplicate refused");
    assert!(
        err.to_string().contains("attribute `uid` is listed twice"),
        "{err}"
    );
}

#[test]
fn releasing_email_to_learners_or_a_school_code_as_oid_is_warned_about() {
    let (_, warnings) = compile_with(
        json!({"organisations": ["*"], "release": {"email": {"purpose": "receipts"}}}),
        &[],
    )
    .expect("compiles");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0]
        .starts_with("providers.studeo.contract.release.email: email is released to learners too"));
    let (_, warnings) = compile_with(
        json!({"organisations": ["*"], "release": {"email": {"purpose": "r", "only_roles": [1, 2]}}}),
        &[],
    )
    .expect("compiles");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let (_, warnings) = compile_with(
        json!({"organisations": ["*"], "release": {"email": {"purpose": "r", "only_roles": [2, 6]}}}),
        &[],
    )
    .expect("compiles");
    assert!(warnings.is_empty(), "{warnings:?}");

    let (_, warnings) = compile_with(
        json!({"organisations": ["*"], "release": {"mpass_schoolCode": {}}}),
        &[],
    )
    .expect("compiles");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].starts_with("providers.studeo.contract.release.mpass_schoolCode: "));
    let (_, warnings) = compile_with(
        json!({"organisations": ["*"], "identifier_form": "tk", "release": {"school_code": {}}}),
        &[],
    )
    .expect("compiles");
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn email_verified_is_withheld_whenever_the_address_itself_is() {
    let shop = compile(json!({
        "organisations": ["*"],
        "release": {
            "uid": {},
            "email": {"purpose": "payment receipts", "only_roles": [2, 3, 4, 5, 6]},
            "email_verified": {}
        }
    }));
    let learner = with(
        with(fixture("learner"), "email", json!("aino@koulu.example.fi")),
        "email_verified",
        json!(true),
    );
    let release = shop.apply(&learner).unwrap();
    let names: Vec<&str> = release.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["x-mpass-uid"], "{names:?}");
    assert!(release.withheld.contains(&"email_verified"));
    assert!(release.withheld.contains(&"email"));

    let staff = fixture("staff");
    let release = shop.apply(&staff).unwrap();
    let names: Vec<&str> = release.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        names.contains(&"x-mpass-email") && names.contains(&"x-mpass-email-verified"),
        "{names:?}"
    );
}

#[test]
fn rbac_values_are_only_the_released_roles_and_provider_infos_of_permitted_organisations() {
    let release = second_provider_only("oid")
        .apply(&fixture("teacher"))
        .unwrap();
    let names: Vec<&str> = release.rbac_values.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        ["urn:mpass.id:role", "urn:mpass.id:educationProviderInfo"]
    );
    let values: Vec<&str> = release
        .rbac_values
        .iter()
        .flat_map(|(_, v)| v.iter().map(String::as_str))
        .collect();
    // The teacher's role in the organisation that did not permit the
    // service (…0001, code 2) is withheld from the upstream, so from the
    // metadata too; family name and schools never reach it.
    assert_eq!(
        values,
        [
            "1.2.246.562.10.00000000004;;;Rehtori;6;1.2.246.562.10.00000000005;1.2.246.562.10.00000000006",
            "1.2.246.562.10.00000000004;Äänekosken testikaupunki",
        ]
    );
    for (name, _) in &release.rbac_values {
        assert!(release.released.contains(name), "{name}");
    }
}
