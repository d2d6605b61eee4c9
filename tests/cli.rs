//! The native CLI: `check` exit codes and warnings, `explain` output.

// An integration test is a test crate: a failed expectation should panic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;
use std::process::{Command, Output};

use mpass_guard::alg::Alg;
use mpass_guard::mint;
use serde_json::{json, Value};

const CLI: &str = env!("CARGO_BIN_EXE_mpass-guard");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/claims/");

fn key() -> mint::SigningKey {
    mint::load_pem(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys/rsa-a.pem")).unwrap()
}

fn config() -> Value {
    let jwk = mint::public_jwk(&key(), Some("rsa-a"), Some(Alg::RS256)).unwrap();
    json!({
        "issuers": [{
            "issuer": "https://mpass-proxy-test.csc.fi",
            "local_jwks": {"inline_string": json!({"keys": [jwk]}).to_string()}
        }],
        "audit": {"pseudonym_key_env": "MPASS_GUARD_CLI_TEST_KEY"},
        "providers": {
            "shop": {
                "audiences": ["studeo-webshop"],
                "match": {"path_prefixes": ["/shop/"]},
                "contract": {
                    "organisations": ["1.2.246.562.10.00000000001"],
                    "required": ["uid"],
                    "release": {
                        "uid": {},
                        "given_name": {"header": "x-shop-first-name"},
                        "email": {"purpose": "payment receipts", "only_roles": [2, 3, 4, 5, 6]}
                    }
                }
            },
            "materials": {
                "audiences": ["materials"],
                "match": {"path_prefixes": ["/materials/"]},
                "contract": {
                    "organisations": ["1.2.246.562.10.00000000004"],
                    "release": {"family_name": {}, "school_info": {}}
                }
            }
        }
    })
}

/// Writes `value` to a file of its own for this test.
fn write(name: &str, value: &Value) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mpass-guard-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec(value).unwrap()).unwrap();
    path
}

fn run(args: &[&str]) -> (i32, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(CLI)
        .args(args)
        .env("MPASS_GUARD_CLI_TEST_KEY", "k".repeat(32))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&stdout).into_owned() + &String::from_utf8_lossy(&stderr);
    (status.code().unwrap_or(-1), text)
}

/// Whether one line of `out` holds every part, in order.
fn has_row(out: &str, parts: &[&str]) -> bool {
    out.lines().any(|l| {
        let mut rest = l;
        parts.iter().all(|p| match rest.find(p) {
            Some(i) => {
                rest = &rest[i + p.len()..];
                true
            }
            None => false,
        })
    })
}

#[test]
fn check_accepts_a_valid_configuration_with_exit_0() {
    let path = write("valid.json", &config());
    let (code, out) = run(&["check", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok: 1 issuer(s), 2 provider(s)"), "{out}");
}

#[test]
fn check_prints_contract_warnings_and_still_exits_0() {
    let mut c = config();
    c["providers"]["shop"]["contract"]["release"]["email"] = json!({"purpose": "receipts"});
    c["providers"]["shop"]["contract"]["forward_token"] = json!(true);
    let path = write("warnings.json", &c);
    let (code, out) = run(&["check", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(
            "warning: providers.shop.contract.release.email: email is released to learners too"
        ),
        "{out}"
    );
    assert!(
        out.contains("warning: providers.shop.contract.forward_token: "),
        "{out}"
    );
}

#[test]
fn check_refuses_a_bad_contract_with_exit_1_naming_the_field() {
    let mut c = config();
    c["providers"]["shop"]["contract"]["release"]["mpass_cid"] = json!({});
    let path = write("never.json", &c);
    let (code, out) = run(&["check", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("providers.shop.contract.release.mpass_cid"),
        "{out}"
    );
    assert!(out.contains("never releasable"), "{out}");

    c = config();
    c["providers"]["shop"]["contract"]["release"]["learner_id"] = json!({});
    let path = write("purpose.json", &c);
    let (code, out) = run(&["check", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("needs a non-empty purpose"), "{out}");
}

#[test]
fn check_prints_every_independent_error_on_its_own_line() {
    let mut c = config();
    c["providers"]["shop"]["contract"]["release"]["mpass_cid"] = json!({});
    c["realm"] = json!("");
    c["max_token_bytes"] = json!(1);
    let path = write("many.json", &c);
    let (code, out) = run(&["check", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    let errors: Vec<&str> = out.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 3, "{out}");
    for path in [
        "max_token_bytes",
        "realm",
        "providers.shop.contract.release.mpass_cid",
    ] {
        assert!(
            errors
                .iter()
                .any(|l| l.starts_with(&format!("error: {path}: "))),
            "{path}: {out}"
        );
    }
}

#[test]
fn check_and_explain_exit_2_on_usage_errors() {
    assert_eq!(run(&["check"]).0, 2);
    assert_eq!(run(&["check", "a", "b"]).0, 2);
    assert_eq!(run(&["explain"]).0, 2);
    let path = write("usage.json", &config());
    let p = path.to_str().unwrap();
    let (code, out) = run(&["explain", p, "--provider", "nope"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("materials, shop"), "{out}");
    let claims = format!("{FIXTURES}learner-1.4.json");
    assert_eq!(
        run(&["explain", p, "--claims", &claims, "--token", "a.b.c"]).0,
        2
    );
    assert_eq!(run(&["explain", p, "--token", "not-a-token"]).0, 2);
}

#[test]
fn explain_refuses_a_bad_configuration_with_exit_1() {
    let mut c = config();
    c["providers"]["shop"]["contract"]["release"]["birthdate"] = json!({});
    let path = write("bad-explain.json", &c);
    let (code, out) = run(&["explain", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("providers.shop.contract.release.birthdate"),
        "{out}"
    );
}

#[test]
fn explain_prints_every_provider_contract_as_a_table() {
    let path = write("tables.json", &config());
    let (code, out) = run(&["explain", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("provider materials (contract version "),
        "{out}"
    );
    assert!(out.contains("provider shop (contract version "), "{out}");
    let row = |attr: &str| {
        out.lines()
            .find(|l| l.trim_start().starts_with(&format!("{attr} ")))
            .unwrap_or_else(|| panic!("no row for {attr}: {out}"))
            .to_owned()
    };
    let email = row("email");
    for part in ["x-mpass-email", "payment receipts", "only roles 2,3,4,5,6"] {
        assert!(email.contains(part), "{part}: {email}");
    }
    assert!(row("given_name").contains("x-shop-first-name"), "{out}");
    assert!(row("school_info").contains("multi (JSON array)"), "{out}");
    assert!(out.contains("identifier form   oid"), "{out}");
    assert!(
        out.contains("organisations     1.2.246.562.10.00000000004"),
        "{out}"
    );
}

#[test]
fn explain_with_claims_shows_the_headers_each_upstream_gets_or_the_denial() {
    let path = write("claims.json", &config());
    let claims = format!("{FIXTURES}teacher-two-providers-1.4.json");
    let (code, out) = run(&["explain", path.to_str().unwrap(), "--claims", &claims]);
    assert_eq!(code, 0, "{out}");
    assert!(
        has_row(
            &out,
            &["x-shop-first-name", "Pekka-%C3%84ij%C3%B6", "Pekka-Äijö"]
        ),
        "{out}"
    );
    assert!(
        has_row(&out, &["x-mpass-family-name", "%C3%96hman", "Öhman"]),
        "{out}"
    );
    // The default identifier form is OIDs only.
    assert!(
        has_row(
            &out,
            &[
                "x-mpass-school-info",
                r#"["1.2.246.562.10.00000000005;\u00c4\u00e4nekosken testilukio"]"#,
                r#"["1.2.246.562.10.00000000005;Äänekosken testilukio"]"#
            ]
        ),
        "{out}"
    );
    // The fixture's aud is the shop's, not the materials service's.
    assert!(out.contains("audience_mismatch"), "{out}");

    let claims = format!("{FIXTURES}test-learner-number.json");
    let (_, out) = run(&[
        "explain",
        path.to_str().unwrap(),
        "--claims",
        &claims,
        "--provider",
        "shop",
    ]);
    assert!(
        out.contains(r#"decision: deny 403 {"error":"contract_violation","reason":"test_identity_not_allowed"}"#),
        "{out}"
    );
}

#[test]
fn explain_decodes_a_token_without_verifying_it_and_says_so() {
    let path = write("token.json", &config());
    let claims = json!({
        "iss": "https://mpass-proxy-test.csc.fi",
        "aud": "studeo-webshop",
        "exp": 1,
        "urn:mpass.id:uid": "MPASSOID.x",
        "given_name": "Öhman",
        "urn:mpass.id:role": ["1.2.246.562.10.00000000001;30076;;Opettaja;2;1.2.246.562.10.2;"],
        "email": "o@example.fi"
    });
    // Signed with a key the configuration does not know, and long expired:
    // explain still shows what the contract would release.
    let other =
        mint::load_pem(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys/rsa-b.pem")).unwrap();
    let token = mint::sign_compact(
        Alg::RS256,
        &other,
        &json!({"kid": "rsa-b"}),
        &serde_json::to_vec(&claims).unwrap(),
    )
    .unwrap();
    let (code, out) = run(&[
        "explain",
        path.to_str().unwrap(),
        "--token",
        &token,
        "--provider",
        "shop",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("WITHOUT verification"), "{out}");
    assert!(
        has_row(&out, &["x-mpass-email", "o%40example.fi", "o@example.fi"]),
        "{out}"
    );
    assert!(
        out.contains("released: given_name, urn:mpass.id:uid, email"),
        "{out}"
    );
    assert!(!out.contains(&token), "the token was printed");
}
