//! The CLI's reports for controllers, run as the binary: the matrix
//! provider x controller x attribute, `--attribute`, `--controller`,
//! `--format text|json|csv|markdown`, `--diff OLD NEW [--claims ...]`, and
//! the shadow contract in `explain`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::{json, Value};

mod common;
use common::{jwks, ISS};

const CLI: &str = env!("CARGO_BIN_EXE_mpass-guard");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/claims/");
const MANSIKKALA: &str = "1.2.246.562.10.00000000001";
const AANEKOSKI: &str = "1.2.246.562.10.00000000004";
/// A purpose a CSV and a markdown table must both carry intact.
const AWKWARD: &str = "receipts, \"paid\" | orders";

fn config() -> Value {
    json!({
        "issuers": [{
            "issuer": ISS,
            "local_jwks": {"inline_string": jwks(&[("rsa-a.pem", "rsa-a")])}
        }],
        "audit": {"pseudonym_key_env": "MPASS_GUARD_CLI_TEST_KEY"},
        "providers": {
            "shop": {
                "audiences": ["studeo-webshop"],
                "match": {"path_prefixes": ["/shop/"]},
                "contract": {
                    "organisations": [MANSIKKALA, AANEKOSKI],
                    "required": ["uid"],
                    "release": {
                        "uid": {},
                        "given_name": {},
                        "email": {"purpose": AWKWARD, "only_roles": [2, 3, 4, 5, 6]}
                    },
                    "agreements": {
                        MANSIKKALA: {"release": {"uid": {}, "email": {"only_roles": [2]}}},
                        AANEKOSKI: {"release": {"uid": {}}}
                    },
                    "default_agreement": "deny"
                }
            },
            "materials": {
                "audiences": ["materials"],
                "match": {"path_prefixes": ["/materials/"]},
                "contract": {
                    "organisations": ["*"],
                    "release": {"family_name": {}, "learner_id": {"purpose": "course results"}}
                }
            }
        }
    })
}

/// The next version: Mansikkala gives the given name instead of e-mail,
/// the learner number's purpose is reworded.
fn next_config() -> Value {
    let mut c = config();
    c["providers"]["shop"]["contract"]["agreements"][MANSIKKALA] =
        json!({"release": {"uid": {}, "given_name": {}}});
    c["providers"]["materials"]["contract"]["release"]["learner_id"] =
        json!({"purpose": "linking course results"});
    c
}

fn write(name: &str, value: &Value) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mpass-guard-cli-reports-{}", std::process::id()));
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

/// Splits one RFC 4180 record (no line breaks inside fields here).
fn csv_record(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut field)),
            (c, _) => field.push(c),
        }
    }
    out.push(field);
    out
}

fn json_rows(args: &[&str]) -> Vec<Value> {
    let (code, out) = run(args);
    assert_eq!(code, 0, "{out}");
    let start = out.find('[').unwrap();
    serde_json::from_str::<Vec<Value>>(&out[start..]).unwrap()
}

#[test]
fn the_matrix_names_provider_controller_attribute_with_finnish_and_english_names() {
    let path = write("matrix.json", &config());
    let (code, out) = run(&["explain", path.to_str().unwrap(), "--matrix"]);
    assert_eq!(code, 0, "{out}");
    let learner = out
        .lines()
        .find(|l| l.contains(" learner_id "))
        .unwrap_or_default();
    for part in [
        "materials",
        "*",
        "oppijanumero",
        "national learner number",
        "course results",
    ] {
        assert!(learner.contains(part), "{part} missing in {learner:?}");
    }
    let email = out
        .lines()
        .find(|l| l.contains(" email "))
        .unwrap_or_default();
    assert!(
        email.contains(MANSIKKALA) && email.contains("only roles 2"),
        "{out}"
    );
    assert!(
        !out.lines()
            .any(|l| l.contains(AANEKOSKI) && l.contains("email")),
        "{out}"
    );
}

#[test]
fn by_attribute_lists_only_the_services_that_receive_it_and_why() {
    let path = write("by-attribute.json", &config());
    let rows = json_rows(&[
        "explain",
        path.to_str().unwrap(),
        "--attribute",
        "urn:oid:1.3.6.1.4.1.16161.1.1.27",
        "--format",
        "json",
    ]);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["provider"], "materials");
    assert_eq!(rows[0]["attribute"], "learner_id");
    assert_eq!(rows[0]["purpose"], "course results");
    assert_eq!(rows[0]["condition"], "any role");
    assert_eq!(rows[0]["name_fi"], "oppijanumero");
    let (code, out) = run(&[
        "explain",
        path.to_str().unwrap(),
        "--attribute",
        "shoe_size",
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("shoe_size"), "{out}");
}

#[test]
fn by_controller_shows_what_each_service_receives_of_its_users() {
    let path = write("by-controller.json", &config());
    let rows = json_rows(&[
        "explain",
        path.to_str().unwrap(),
        "--controller",
        AANEKOSKI,
        "--format",
        "json",
    ]);
    let got: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["provider"].as_str().unwrap().to_owned(),
                r["attribute"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("materials", "family_name"),
        ("materials", "learner_id"),
        ("shop", "uid"),
    ]
    .iter()
    .map(|(p, a)| ((*p).to_owned(), (*a).to_owned()))
    .collect();
    assert_eq!(got, want);
}

#[test]
fn csv_is_rfc_4180_with_awkward_purposes_quoted() {
    let path = write("csv.json", &config());
    let (code, out) = run(&["explain", path.to_str().unwrap(), "--format", "csv"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\r\n"), "CSV lines end in CRLF");
    let mut lines = out.split("\r\n").filter(|l| !l.is_empty());
    let head = csv_record(lines.next().unwrap());
    assert_eq!(head[0], "provider");
    let purpose = head.iter().position(|h| h == "purpose").unwrap();
    let email: Vec<String> = lines.map(csv_record).find(|r| r[2] == "email").unwrap();
    assert_eq!(email.len(), head.len());
    assert_eq!(email[purpose], AWKWARD);
    assert!(out.contains("\"receipts, \"\"paid\"\" | orders\""), "{out}");
}

#[test]
fn markdown_cells_are_escaped_so_every_row_has_the_same_columns() {
    let path = write("markdown.json", &config());
    let (code, out) = run(&["explain", path.to_str().unwrap(), "--format", "markdown"]);
    assert_eq!(code, 0, "{out}");
    let columns = |l: &str| l.replace("\\|", "").matches('|').count();
    let lines: Vec<&str> = out.lines().filter(|l| l.starts_with('|')).collect();
    assert!(lines.len() > 3, "{out}");
    assert!(
        lines.iter().all(|l| columns(l) == columns(lines[0])),
        "{out}"
    );
    assert!(out.contains("receipts, \"paid\" \\| orders"), "{out}");
}

#[test]
fn the_text_explain_shows_the_per_controller_agreements() {
    let path = write("text.json", &config());
    let (code, out) = run(&["explain", path.to_str().unwrap(), "--provider", "shop"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("per controller (agreements; controllers without one: deny"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains(MANSIKKALA) && l.contains("email") && l.contains("only roles 2")),
        "{out}"
    );
}

#[test]
fn diff_names_each_change_per_provider_controller_and_attribute() {
    let old = write("old.json", &config());
    let new = write("new.json", &next_config());
    let rows = json_rows(&[
        "explain",
        "--diff",
        old.to_str().unwrap(),
        new.to_str().unwrap(),
        "--format",
        "json",
    ]);
    let change = |provider: &str, attribute: &str| -> Vec<String> {
        rows.iter()
            .filter(|r| r["provider"] == provider && r["attribute"] == attribute)
            .map(|r| r["change"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(change("shop", "email"), ["no longer released"]);
    assert_eq!(change("shop", "given_name"), ["newly released"]);
    assert_eq!(change("materials", "learner_id"), ["purpose changed"]);
    assert!(change("shop", "uid").is_empty(), "{rows:?}");
    let purpose = rows
        .iter()
        .find(|r| r["attribute"] == "learner_id")
        .unwrap();
    assert_eq!(purpose["old"], "course results");
    assert_eq!(purpose["new"], "linking course results");
}

#[test]
fn diff_with_claims_shows_per_user_what_would_be_released_differently() {
    let old = write("old-users.json", &config());
    let new = write("new-users.json", &next_config());
    let learner = format!("{FIXTURES}learner-1.4.json");
    let staff = format!("{FIXTURES}staff-with-email-proposed.json");
    let (code, out) = run(&[
        "explain",
        "--diff",
        old.to_str().unwrap(),
        new.to_str().unwrap(),
        "--claims",
        &learner,
        "--claims",
        &staff,
    ]);
    assert_eq!(code, 0, "{out}");
    let row = out
        .lines()
        .find(|l| l.contains("learner-1.4.json"))
        .unwrap_or_default();
    assert!(row.contains("shop") && row.contains("given_name"), "{out}");
    // Names only: no claim value of the sample users.
    for value in ["Aino", "MPASSOID.391ea8eb"] {
        assert!(!out.contains(value), "{out}");
    }
}

#[test]
fn explain_shows_the_shadow_contract_and_what_it_would_change_for_claims() {
    let mut c = config();
    c["providers"]["materials"]["shadow_contract"] =
        json!({"organisations": ["*"], "release": {"family_name": {}}});
    let path = write("shadowed.json", &c);
    let learner = format!("{FIXTURES}learner-1.4.json");
    let (code, out) = run(&[
        "explain",
        path.to_str().unwrap(),
        "--provider",
        "materials",
        "--claims",
        &learner,
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("shadow contract   version "), "{out}");
    assert!(
        out.contains("would allow (ok); added: -; removed: urn:oid:1.3.6.1.4.1.16161.1.1.27"),
        "{out}"
    );
}

#[test]
fn a_report_format_with_claims_is_a_usage_error() {
    let path = write("usage.json", &config());
    let learner = format!("{FIXTURES}learner-1.4.json");
    let (code, out) = run(&[
        "explain",
        path.to_str().unwrap(),
        "--format",
        "csv",
        "--claims",
        &learner,
    ]);
    assert_eq!(code, 2, "{out}");
}
