//! Prints the filter's metadata encodings, one JSON object a line
//! (`{"case": .., "hex": ..}`), for `tests/e2e/test_metadata_encoding.py`,
//! which decodes them with the official protobuf runtime. The inputs are
//! fixed; the Python test knows them and checks what it decodes.

use mpass_guard::claims;
use mpass_guard::metadata::{
    declare_property_arguments, encode_struct, DecisionRecord, Outcome, Value, PROPERTY,
};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn print(case: &str, bytes: &[u8]) {
    println!("{}", serde_json::json!({ "case": case, "hex": hex(bytes) }));
}

fn main() {
    let roles = vec![
        "1.2.246.562.10.00000000001;30076;;Opettaja;2;1.2.246.562.10.11;".to_owned(),
        "1.2.246.562.10.00000000002;30077;;Rehtori;6;1.2.246.562.10.12;".to_owned(),
        "1.2.246.562.10.00000000003;30078;;Hallintohenkilö;3;1.2.246.562.10.13;".to_owned(),
    ];
    let emails = vec!["oppilas@example.fi".to_owned()];
    let mut allow = DecisionRecord::new(Outcome::Allow, "released");
    allow.provider = Some("studeo");
    allow.released = vec![claims::ROLE, "given_name"];
    allow.withheld = vec!["email", "never_releasable"];
    allow.contract_version = Some("2026-11");
    allow.subject = Some("p:4f2a");
    allow.issuer = Some("https://mpass-proxy.csc.fi");
    allow.kid = Some("k1");
    allow.alg = Some("RS256");
    allow.stripped_tokens = 1;
    // The e-mail value is offered too, but e-mail was withheld.
    allow.released_values = vec![(claims::ROLE, &roles), ("email", &emails)];
    print("allow", &allow.encode());

    let mut deny = DecisionRecord::new(Outcome::Deny, "organisation_not_permitted");
    deny.provider = Some("studeo");
    deny.status = Some(403);
    deny.withheld = vec![claims::ROLE];
    deny.released_values = vec![(claims::ROLE, &roles)];
    print("deny", &deny.encode());

    print(
        "unmatched",
        &DecisionRecord::new(Outcome::Unmatched, "no_provider").encode(),
    );

    let tree = encode_struct(&[
        ("unicode", Value::from("Äiti ja ö 🦀 中文")),
        ("empty_list", Value::List(vec![])),
        ("empty_struct", Value::Struct(vec![])),
        (
            "numbers",
            Value::List(vec![
                Value::Number(0.0),
                Value::Number(-1.5),
                Value::Number(1e300),
                Value::Number(65535.0),
            ]),
        ),
        (
            "flags",
            Value::List(vec![Value::Bool(true), Value::Bool(false), Value::Null]),
        ),
        (
            "nested",
            Value::Struct(vec![(
                "inner",
                Value::Struct(vec![("deep", Value::List(vec![Value::from("ü")]))]),
            )]),
        ),
        ("long", Value::from("x".repeat(300))),
    ]);
    print("tree", &tree);

    print("declare", &declare_property_arguments(PROPERTY, false));
    print(
        "declare_readonly",
        &declare_property_arguments(PROPERTY, true),
    );
}
