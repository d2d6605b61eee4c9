//! Prints what `mpass_guard::registry` reads from two saved provisioning
//! bodies: the permissions of the given client ids, as JSON.
//!
//! ```text
//! registry_permissions IDENTITYPROVIDERS.json SERVICEPROVIDERS.json PHASE CLIENT_ID...
//! ```
//!
//! `PHASE` is `production`, `preproduction` or `testing`. Exit status 2 when
//! the arguments are wrong, 1 when the documents are refused (the reason on
//! stderr). The end-to-end tests use it to check that the parser reads what
//! their test management service serves.

use std::process::ExitCode;

use mpass_guard::registry::{Phase, Snapshot};
use serde_json::json;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [idps, sps, phase, client_ids @ ..] = args.as_slice() else {
        eprintln!("usage: registry_permissions IDPS_FILE SPS_FILE PHASE CLIENT_ID...");
        return ExitCode::from(2);
    };
    let Some(phase) = Phase::from_name(phase) else {
        eprintln!("unknown phase {phase:?}: production, preproduction or testing");
        return ExitCode::from(2);
    };
    let read = |path: &str| std::fs::read(path).map_err(|e| format!("{path}: {e}"));
    let snapshot = match (read(idps), read(sps)) {
        (Ok(i), Ok(s)) => Snapshot::parse(&i, &s, phase).map_err(|e| e.to_string()),
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    let snapshot = match snapshot {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let p = snapshot.permissions(client_ids);
    let out = json!({
        "identity_providers": snapshot.identity_providers.iter().map(|i| i.id).collect::<Vec<_>>(),
        "service_providers": snapshot.service_providers.iter().map(|s| s.id).collect::<Vec<_>>(),
        "found": p.found,
        "organisations": p.organisations.iter()
            .map(|o| json!({"organisation": o.organisation, "all_services": o.all_services}))
            .collect::<Vec<_>>(),
        "allow_test_learner_id": p.allow_test_learner_id,
        "duplicate_client_id": p.duplicate_client_id,
    });
    println!("{out}");
    ExitCode::SUCCESS
}
