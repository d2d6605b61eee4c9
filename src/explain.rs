//! What `mpass-guard explain` prints: each provider's contract as a table
//! and, for a given set of claims, exactly what each provider's upstream
//! would receive.
//!
//! Pure: it takes a compiled [`Config`] and claims and returns text. The
//! release is computed by [`Contract::apply`](crate::contract::Contract::apply),
//! the very function the filter runs, so `explain` cannot drift from the
//! filter. It never verifies anything: claims from a token are decoded
//! without checking signature, issuer, times or audience, and the output
//! says so.

use std::fmt::Write as _;

use serde_json::{Map, Value};

use crate::config::{Config, Provider};
use crate::minted::{Carrier, Source, SubjectForm};
use crate::render;

/// Where the claims being explained came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimsSource {
    /// A JSON file of claims.
    File,
    /// A token decoded without verification.
    UnverifiedToken,
}

/// Names of the role codes, for the legend.
const ROLE_NAMES: [(u8, &str); 6] = [
    (1, "learner"),
    (2, "teacher"),
    (3, "administrative staff"),
    (4, "school secretary"),
    (5, "substitute teacher"),
    (6, "principal"),
];

/// Renders rows as a left-aligned text table indented by two spaces, with
/// a header row and a rule under it. Widths count characters, not bytes,
/// so Finnish names line up.
pub fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::from(" ");
        for (cell, w) in cells.zip(widths.iter()) {
            let pad = w.saturating_sub(cell.chars().count());
            let _ = write!(l, " {cell}{}", " ".repeat(pad + 1));
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut head.iter().copied());
    let rules: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    line(&mut rules.iter().map(String::as_str));
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// Makes a decoded claim value safe to print on a terminal: control
/// characters are shown escaped, everything else as is.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().collect()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn condition(only_roles: &[u8]) -> String {
    if only_roles.is_empty() {
        "any role".to_owned()
    } else {
        let codes: Vec<String> = only_roles.iter().map(u8::to_string).collect();
        format!("only roles {}", codes.join(","))
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// The contract of one provider.
fn contract_section(out: &mut String, p: &Provider) {
    let c = &p.contract;
    let _ = writeln!(out, "provider {} (contract version {})", p.id, c.version());
    let orgs = match c.organisations() {
        None => "* (every organisation)".to_owned(),
        Some(list) => list.join(", "),
    };
    let forward = if p.forward {
        "yes: the token is passed on (it carries every claim MPASSid sent)"
    } else {
        "no: the token is removed before the upstream"
    };
    let rows = [
        ("audiences", p.audiences.join(", ")),
        ("organisations", orgs),
        ("identifier form", c.identifier_form().as_str().to_owned()),
        (
            "test learner ids",
            if c.allows_test_learner_id() {
                "accepted (1.2.246.562.98.*)"
            } else {
                "refused (test_identity_not_allowed)"
            }
            .to_owned(),
        ),
        ("forward_token", forward.to_owned()),
        (
            "payload header",
            c.payload_header().unwrap_or("none").to_owned(),
        ),
        ("signed token", signed_token_row(p)),
        (
            "shadow contract",
            p.shadow.as_ref().map_or_else(
                || "none".to_owned(),
                |s| {
                    format!(
                        "version {} (evaluated on every request, never enforced)",
                        s.version()
                    )
                },
            ),
        ),
    ];
    for (k, v) in rows {
        let _ = writeln!(out, "  {k:<17} {v}");
    }
    let rules: Vec<Vec<String>> = c
        .rules()
        .map(|r| {
            vec![
                r.attribute.alias.to_owned(),
                r.attribute.name.to_owned(),
                r.header.to_owned(),
                if r.attribute.multi {
                    "multi (JSON array)"
                } else {
                    "single (percent-encoded)"
                }
                .to_owned(),
                yes_no(r.required).to_owned(),
                r.purpose.unwrap_or("-").to_owned(),
                condition(&r.only_roles),
            ]
        })
        .collect();
    if rules.is_empty() {
        out.push_str("  releases nothing (a pure gate)\n");
    } else {
        out.push('\n');
        out.push_str(&table(
            &[
                "attribute",
                "claim",
                "header",
                "encoding",
                "required",
                "purpose",
                "condition",
            ],
            &rules,
        ));
    }
    agreements_section(out, p);
}

/// The per-controller matrix of a contract with agreements: what each
/// controller lets this provider have of its users.
fn agreements_section(out: &mut String, p: &Provider) {
    let Some(agreements) = p.contract.agreements() else {
        return;
    };
    let default = match agreements.default() {
        crate::agreement::DefaultAgreement::Deny => "deny (nothing is released)",
        crate::agreement::DefaultAgreement::Contract => "the contract's release",
    };
    let _ = writeln!(
        out,
        "\n  per controller (agreements; controllers without one: {default}):"
    );
    let rows: Vec<Vec<String>> = crate::report::provider_rows(p, &p.contract)
        .iter()
        .map(|r| {
            vec![
                r.controller.label().to_owned(),
                r.attribute.alias.to_owned(),
                r.purpose.clone().unwrap_or_else(|| "-".to_owned()),
                r.condition(),
                if r.test_learner_ids {
                    "accepted"
                } else {
                    "refused"
                }
                .to_owned(),
            ]
        })
        .collect();
    out.push_str(&crate::report::render(
        &[
            "controller",
            "attribute",
            "purpose",
            "condition",
            "test learner ids",
        ],
        &rows,
        crate::report::Format::Text,
    ));
}

/// Where the signed token goes and what its `aud`, `sub` and lifetime are.
fn signed_token_row(p: &Provider) -> String {
    let Some(st) = &p.signed_token else {
        return "none".to_owned();
    };
    let (header, _) = st.header("<token>");
    let carrier = if *st.carrier() == Carrier::Authorization {
        "authorization: Bearer".to_owned()
    } else {
        header
    };
    let sub = match st.subject_form() {
        SubjectForm::Pairwise => "pairwise",
        SubjectForm::Original => "original",
    };
    format!(
        "{carrier} (aud {}, sub {sub}, lifetime {}s)",
        st.audience(),
        st.lifetime()
    )
}

/// The claims of the token this provider's upstream would get for a
/// release, at the sample's `iat` (the `jti` is random per mint and left out).
fn signed_token_lines(
    out: &mut String,
    config: &Config,
    p: &Provider,
    sample: &Map<String, Value>,
    released: Option<&Map<String, Value>>,
) {
    let (Some(st), Some(gateway)) = (&p.signed_token, &config.gateway) else {
        return;
    };
    let empty = Map::new();
    let exp = sample.get("exp").and_then(Value::as_u64);
    let now = sample
        .get("iat")
        .and_then(Value::as_u64)
        .or_else(|| exp.map(|e| e.saturating_sub(st.lifetime())))
        .unwrap_or(0);
    let source = Source {
        issuer: sample
            .get("iss")
            .and_then(Value::as_str)
            .unwrap_or_default(),
        subject: sample
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default(),
        exp: exp.unwrap_or(now.saturating_add(st.lifetime())),
    };
    let key = gateway.signing_key();
    let _ = write!(
        out,
        "  signed token ({} {}, kid {}), at the sample's iat, jti random per mint:\n    ",
        signed_token_row(p),
        key.alg().name(),
        key.kid()
    );
    match st.claims(
        gateway,
        released.unwrap_or(&empty),
        &source,
        p.contract.version(),
        now,
    ) {
        Ok((claims, _)) => {
            let json = serde_json::to_string(&claims).unwrap_or_default();
            let _ = writeln!(out, "{}", printable(&json));
        }
        Err(e) => {
            let _ = writeln!(out, "none: {e}; the filter would refuse the request");
        }
    }
}

fn audience_matches(claims: &Map<String, Value>, p: &Provider) -> bool {
    match claims.get("aud") {
        Some(Value::String(a)) => p.audiences.contains(a),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .any(|a| p.audiences.iter().any(|x| x == a)),
        _ => false,
    }
}

/// Reads a released header value back the documented way.
fn decoded(value: &str, payload: bool) -> String {
    if payload {
        return render::decode_payload(value)
            .and_then(|m| serde_json::to_string(&m).ok())
            .map_or_else(|| "(undecodable)".to_owned(), |s| printable(&s));
    }
    if value.starts_with('[') {
        return render::decode_multi(value)
            .and_then(|v| serde_json::to_string(&v).ok())
            .map_or_else(|| "(undecodable)".to_owned(), |s| printable(&s));
    }
    render::decode_single(value).map_or_else(|| "(undecodable)".to_owned(), |s| printable(&s))
}

/// What one provider's upstream gets for these claims.
fn release_section(out: &mut String, config: &Config, p: &Provider, claims: &Map<String, Value>) {
    out.push('\n');
    if !audience_matches(claims, p) {
        let _ = writeln!(
            out,
            "  note: aud is not one of this provider's audiences; the filter would answer 403 {{\"error\":\"forbidden\",\"reason\":\"audience_mismatch\"}} before the contract; the contract alone gives:"
        );
    }
    let enforced = p.contract.apply(claims);
    if let Some(candidate) = &p.shadow {
        let d = crate::shadow::evaluate(&enforced, candidate, claims);
        let names = |v: &[&str]| {
            if v.is_empty() {
                "-".to_owned()
            } else {
                v.join(", ")
            }
        };
        let _ = writeln!(
            out,
            "  shadow contract {}: would {} ({}); added: {}; removed: {}; changed: {}",
            d.contract_version,
            if d.allowed { "allow" } else { "deny" },
            d.reason,
            names(&d.added),
            names(&d.removed),
            names(&d.changed)
        );
    }
    match enforced {
        Err(denial) => {
            let _ = write!(
                out,
                "  decision: deny 403 {{\"error\":\"contract_violation\",\"reason\":\"{}\"}}",
                denial.reason
            );
            match denial.attribute {
                Some(a) => {
                    let _ = writeln!(out, " (attribute {a})");
                }
                None => out.push('\n'),
            }
            out.push_str("  the upstream receives nothing\n");
        }
        Ok(release) => {
            out.push_str("  decision: allow\n");
            let payload = p.contract.payload_header();
            let rows: Vec<Vec<String>> = release
                .headers
                .iter()
                .map(|(h, v)| {
                    vec![
                        h.clone(),
                        v.clone(),
                        decoded(v, Some(h.as_str()) == payload),
                    ]
                })
                .collect();
            if rows.is_empty() {
                out.push_str("  upstream headers: none\n");
            } else {
                out.push_str(
                    "  upstream headers (every other x-mpass-* or contract header is removed):\n",
                );
                out.push_str(&table(&["header", "value sent", "decoded"], &rows));
            }
            let list = |v: &[&str]| {
                if v.is_empty() {
                    "-".to_owned()
                } else {
                    v.join(", ")
                }
            };
            let _ = writeln!(out, "  released: {}", list(&release.released));
            let _ = writeln!(out, "  withheld: {}", list(&release.withheld));
            let _ = writeln!(
                out,
                "  token: {}",
                if p.forward { "forwarded" } else { "removed" }
            );
            signed_token_lines(out, config, p, claims, release.claims.as_ref());
        }
    }
}

/// The whole `explain` output. `only` restricts it to one provider id;
/// `claims` adds, per provider, what its upstream would receive.
pub fn explain(
    config: &Config,
    only: Option<&str>,
    claims: Option<(&Map<String, Value>, ClaimsSource)>,
) -> Result<String, String> {
    let providers: Vec<&Provider> = config
        .providers
        .iter()
        .filter(|p| only.is_none_or(|id| p.id == id))
        .collect();
    if providers.is_empty() {
        let ids: Vec<&str> = config.providers.iter().map(|p| p.id.as_str()).collect();
        return Err(format!(
            "no provider {:?}; the configuration has: {}",
            only.unwrap_or_default(),
            ids.join(", ")
        ));
    }
    let mut out = String::new();
    match claims {
        Some((_, ClaimsSource::UnverifiedToken)) => out.push_str(
            "claims: decoded from --token WITHOUT verification (signature, issuer, times and audience are not checked)\n\n",
        ),
        Some((_, ClaimsSource::File)) => {
            out.push_str("claims: read from --claims (not a token: nothing is verified)\n\n")
        }
        None => {}
    }
    for (i, p) in providers.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        contract_section(&mut out, p);
        if let Some((c, _)) = claims {
            release_section(&mut out, config, p, c);
        }
    }
    let legend: Vec<String> = ROLE_NAMES.iter().map(|(c, n)| format!("{c} {n}")).collect();
    let _ = write!(
        out,
        "\nrole codes: {}\nsingle values are percent-encoded UTF-8, multi values ASCII JSON arrays, the payload header base64url JSON (see docs/contracts.md)\n",
        legend.join(", ")
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config() -> Config {
        let key =
            crate::mint::load_pem(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys/rsa-a.pem"))
                .unwrap();
        let jwk =
            crate::mint::public_jwk(&key, Some("rsa-a"), Some(crate::alg::Alg::RS256)).unwrap();
        let cfg = json!({
            "issuers": [{"issuer": "https://mpass-proxy-test.csc.fi",
                         "local_jwks": {"inline_string": json!({"keys": [jwk]}).to_string()}}],
            "audit": {"pseudonym_key_env": "K"},
            "providers": {
                "shop": {
                    "audiences": ["studeo-webshop"],
                    "match": {"path_prefixes": ["/shop/"]},
                    "contract": {
                        "organisations": ["1.2.246.562.10.00000000001"],
                        "required": ["uid"],
                        "release": {
                            "uid": {},
                            "family_name": {},
                            "email": {"purpose": "payment receipts", "only_roles": [2, 3, 4, 5, 6]}
                        },
                        "payload_header": "x-shop-claims"
                    }
                },
                "gate": {"audiences": ["gate"], "match": {"path_prefixes": ["/gate/"]},
                         "contract": {"organisations": ["*"]}}
            }
        });
        let bytes = serde_json::to_vec(&cfg).unwrap_or_default();
        match Config::load(&bytes, &|_| Some("k".repeat(32))) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    fn claims(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn a_table_lines_up_finnish_names_by_character() {
        let t = table(
            &["a", "b"],
            &[
                vec!["Öhman".into(), "1".into()],
                vec!["x".into(), "2".into()],
            ],
        );
        assert_eq!(t, "  a      b\n  -----  -\n  Öhman  1\n  x      2\n");
    }

    #[test]
    fn the_contract_table_names_header_purpose_condition_and_required() {
        let out = explain(&config(), Some("shop"), None).unwrap_or_default();
        assert!(out.contains("provider shop (contract version "), "{out}");
        assert!(!out.contains("provider gate"), "{out}");
        let email = out
            .lines()
            .find(|l| l.trim_start().starts_with("email "))
            .unwrap_or_default();
        for part in [
            "x-mpass-email",
            "payment receipts",
            "only roles 2,3,4,5,6",
            " no ",
        ] {
            assert!(email.contains(part), "{part} missing in {email:?}");
        }
        let uid = out
            .lines()
            .find(|l| l.trim_start().starts_with("uid "))
            .unwrap_or_default();
        assert!(uid.contains(" yes ") && uid.contains("any role"), "{uid}");
        assert!(
            out.contains("organisations     1.2.246.562.10.00000000001"),
            "{out}"
        );
        assert!(out.contains("forward_token     no"), "{out}");
    }

    #[test]
    fn an_unknown_provider_is_an_error_listing_the_known_ones() {
        let err = explain(&config(), Some("nope"), None).unwrap_err();
        assert!(err.contains("gate, shop"), "{err}");
    }

    #[test]
    fn claims_show_the_exact_headers_or_the_denial_per_provider() {
        let c = claims(json!({
            "aud": "studeo-webshop",
            "urn:mpass.id:uid": "MPASSOID.1",
            "family_name": "Öhman",
            "email": "a@example.fi",
            "urn:mpass.id:role": ["1.2.246.562.10.00000000009;30076;9F;Oppilas;1;1.2.246.562.10.2;"]
        }));
        let out =
            explain(&config(), None, Some((&c, ClaimsSource::UnverifiedToken))).unwrap_or_default();
        assert!(out.contains("WITHOUT verification"), "{out}");
        assert!(out.contains(
            "decision: deny 403 {\"error\":\"contract_violation\",\"reason\":\"organisation_not_permitted\"}"
        ), "{out}");
        // The gate releases nothing, and its audience differs.
        assert!(out.contains("audience_mismatch"), "{out}");

        let c = claims(json!({
            "aud": "studeo-webshop",
            "urn:mpass.id:uid": "MPASSOID.1",
            "family_name": "Öhman",
            "email": "a@example.fi",
            "urn:mpass.id:role": ["1.2.246.562.10.00000000001;30076;9F;Oppilas;1;1.2.246.562.10.2;"]
        }));
        let out =
            explain(&config(), Some("shop"), Some((&c, ClaimsSource::File))).unwrap_or_default();
        assert!(out.contains("decision: allow"), "{out}");
        let family = out
            .lines()
            .find(|l| l.trim_start().starts_with("x-mpass-family-name "))
            .unwrap_or_default();
        assert!(
            family.contains(" %C3%96hman ") && family.ends_with(" Öhman"),
            "{out}"
        );
        assert!(
            !out.contains("a@example.fi"),
            "a learner's e-mail was shown: {out}"
        );
        assert!(out.contains("withheld: urn:mpass.id:role, email"), "{out}");
        let payload = out
            .lines()
            .find(|l| l.trim_start().starts_with("x-shop-claims "))
            .unwrap_or_default();
        assert!(
            payload.ends_with(r#"{"family_name":"Öhman","urn:mpass.id:uid":"MPASSOID.1"}"#),
            "{payload}"
        );
        assert!(!out.contains("audience_mismatch"), "{out}");
    }

    #[test]
    fn control_characters_in_decoded_values_are_escaped() {
        assert_eq!(printable("a\r\nb\0"), "a\\r\\nb\\u{0}");
    }
}
