//! Claim normalisation, role parsing and contract application over random
//! claim objects. Invariants: a contract emits only the headers it declares,
//! every value is printable ASCII, and nothing is both released and withheld.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mpass_guard::claims;
use mpass_guard::contract::{CompileContext, Contract, ContractConfig};
use mpass_guard::render::is_safe_header_value;
use serde_json::{json, Map, Value};

fn contracts() -> &'static [Contract] {
    static C: OnceLock<Vec<Contract>> = OnceLock::new();
    C.get_or_init(|| {
        let ctx = CompileContext {
            header_prefix: "x-mpass-",
            extra_never_release: &[],
        };
        [
            json!({
                "organisations": ["1.2.246.562.10.00000000001", "30076"],
                "required": ["uid"],
                "release": {
                    "uid": {},
                    "given_name": {"header": "x-shop-first-name"},
                    "email": {"purpose": "receipts", "only_roles": [2, 3, 4, 5, 6]},
                    "role": {},
                    "school_info": {},
                    "learner_id": {"purpose": "results"}
                },
                "payload_header": "x-mpass-payload"
            }),
            json!({
                "organisations": ["*"],
                "identifier_form": "tk",
                "allow_test_learner_id": true,
                "release": {
                    "urn:mpass.id:uid": {},
                    "urn:mpass.id:role": {},
                    "urn:mpass.id:schoolCode": {},
                    "urn:mpass.id:class": {},
                    "email_verified": {},
                    "class_level": {"purpose": "age-appropriate content"},
                    "learning_materials_charge": {"purpose": "invoicing"},
                    "education_provider_info": {},
                    "original_issuer": {}
                }
            }),
        ]
        .into_iter()
        .map(|w| {
            let wire: ContractConfig = serde_json::from_value(w).expect("contract json");
            Contract::compile(&wire, "contract", &ctx)
                .expect("contract compiles")
                .0
        })
        .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Some(role) = claims::parse_role(s) {
            assert!(role.code.is_none_or(|c| (1..=6).contains(&c)));
        }
        let _ = claims::classify_learner_id(s);
        let _ = claims::lookup(s);
    }
    let Ok(map) = serde_json::from_slice::<Map<String, Value>>(data) else {
        return;
    };
    let n = claims::normalise(&map);
    for attr in n.present() {
        assert!(n.get(attr).is_some());
    }
    if let Some(Value::Array(roles)) = map.get("urn:mpass.id:role") {
        for r in roles.iter().filter_map(Value::as_str) {
            let _ = claims::parse_role(r);
        }
    }
    for contract in contracts() {
        let declared: Vec<&str> = contract.header_names().collect();
        let Ok(release) = contract.apply(&map) else {
            continue;
        };
        assert_eq!(release, contract.apply_normalised(&n).expect("same claims"));
        for (name, value) in &release.headers {
            assert!(
                declared.contains(&name.as_str()),
                "undeclared header {name}"
            );
            assert!(is_safe_header_value(value), "unsafe value in {name}");
        }
        for a in &release.released {
            assert!(!release.withheld.contains(a), "{a} released and withheld");
        }
    }
});
