//! Drift between the configuration's contracts and a saved registry
//! snapshot: what `mpass-guard check --registry FILE` lists.
//!
//! For each provider, its contract's static `organisations` and
//! `allow_test_learner_id` are compared with what the management service
//! permits for the provider's `audiences`, after mpass-guard's own rules
//! ([`registry_source::effective`]): "all services" counts only for
//! organisations in `allow_all_services_for`, a duplicated client id permits
//! nothing. Reported:
//!
//! - organisations permitted in the registry but not in the contract, and
//!   the reverse (contract entries that are school codes cannot be compared
//!   and are listed apart);
//! - organisations that permit every service, and whether that is accepted;
//! - a contract test-learner setting that disagrees with the registry's;
//! - audiences the registry does not know, and client ids registered twice;
//! - a contract that permits every organisation (`["*"]`).
//!
//! # The saved snapshot (`FILE`)
//!
//! Either one JSON file holding both response bodies as they came:
//!
//! ```json
//! {"identityproviders": {"identityProviders": [...]},
//!  "serviceproviders": {"serviceProviders": [...]}}
//! ```
//!
//! or a directory with the two bodies saved as `identityproviders.json` and
//! `serviceproviders.json`, each saved with e.g.
//! `curl -u USER $BASE/api/v2/provisioning/identityproviders -o identityproviders.json`. Bodies are kept byte for byte, so the
//! registry's quirks (a `type` member written twice) are read as the filter
//! reads them.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::claims::is_organisation_oid;
use crate::contract::Contract;
use crate::registry::Snapshot;
use crate::registry_source::effective;

/// The file names of a saved snapshot directory.
pub const IDENTITY_PROVIDERS_FILE: &str = "identityproviders.json";
/// See [`IDENTITY_PROVIDERS_FILE`].
pub const SERVICE_PROVIDERS_FILE: &str = "serviceproviders.json";

/// One provider of the configuration, as the comparison needs it.
#[derive(Debug, Clone, Copy)]
pub struct ProviderInput<'a> {
    pub id: &'a str,
    pub audiences: &'a [String],
    pub contract: &'a Contract,
}

/// An organisation whose registry permissions are empty ("all services").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AllServices {
    pub organisation: String,
    /// Whether `allow_all_services_for` lists it (then it counts as permitted).
    pub accepted: bool,
}

/// The two test-learner settings, when they disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TestLearnerDrift {
    pub contract: bool,
    pub registry: bool,
}

/// The drift of one provider.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProviderDrift {
    pub provider: String,
    pub audiences: Vec<String>,
    /// Permitted in the registry, not listed in the contract.
    pub only_in_registry: Vec<String>,
    /// Listed in the contract, not permitted in the registry.
    pub only_in_contract: Vec<String>,
    /// Contract entries that are school codes, not comparable with the
    /// registry's organisations.
    pub not_comparable: Vec<String>,
    /// The contract is `["*"]`: every organisation, whatever the registry says.
    pub contract_permits_every_organisation: bool,
    /// Controllers with an agreement in the contract that the registry does
    /// not permit (their agreement cannot take effect in registry mode).
    pub agreements_not_permitted: Vec<String>,
    pub all_services: Vec<AllServices>,
    pub test_learner_id: Option<TestLearnerDrift>,
    /// Audiences no active service provider of the phase has.
    pub client_ids_not_found: Vec<String>,
    /// Client ids on more than one active service provider.
    pub duplicate_client_ids: Vec<String>,
}

impl ProviderDrift {
    /// True when anything differs or is doubtful. An accepted "all
    /// services" is shown but is not drift: the operator chose it.
    pub fn has_drift(&self) -> bool {
        !(self.only_in_registry.is_empty()
            && self.only_in_contract.is_empty()
            && self.not_comparable.is_empty()
            && !self.contract_permits_every_organisation
            && self.agreements_not_permitted.is_empty()
            && self.all_services.iter().all(|a| a.accepted)
            && self.test_learner_id.is_none()
            && self.client_ids_not_found.is_empty()
            && self.duplicate_client_ids.is_empty())
    }
}

/// The drift of every provider, in configuration order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DriftReport {
    pub providers: Vec<ProviderDrift>,
}

/// Compares each provider's contract with the snapshot.
pub fn compare(
    providers: &[ProviderInput<'_>],
    snapshot: &Snapshot,
    allow_all_services_for: &BTreeSet<String>,
) -> DriftReport {
    DriftReport {
        providers: providers
            .iter()
            .map(|p| compare_one(p, snapshot, allow_all_services_for))
            .collect(),
    }
}

fn compare_one(
    p: &ProviderInput<'_>,
    snapshot: &Snapshot,
    allow_all_services_for: &BTreeSet<String>,
) -> ProviderDrift {
    let raw = snapshot.permissions(p.audiences);
    let permitted = effective(&raw, allow_all_services_for);
    let mut out = ProviderDrift {
        provider: p.id.to_owned(),
        audiences: p.audiences.to_vec(),
        duplicate_client_ids: raw.duplicate_client_id.clone(),
        ..ProviderDrift::default()
    };
    out.client_ids_not_found = p
        .audiences
        .iter()
        .filter(|a| !snapshot.permissions(std::slice::from_ref(a)).found)
        .cloned()
        .collect();
    out.all_services = raw
        .organisations
        .iter()
        .filter(|o| o.all_services)
        .map(|o| AllServices {
            organisation: o.organisation.clone(),
            accepted: allow_all_services_for.contains(&o.organisation),
        })
        .collect();
    match p.contract.organisations() {
        None => {
            out.contract_permits_every_organisation = true;
        }
        Some(listed) => {
            let (oids, codes): (Vec<&str>, Vec<&str>) =
                listed.into_iter().partition(|o| is_organisation_oid(o));
            let contract: BTreeSet<&str> = oids.into_iter().collect();
            out.not_comparable = codes.into_iter().map(str::to_owned).collect();
            // A contract that takes organisations from the registry has no
            // drift there: what the registry permits is what it enforces.
            if !p.contract.organisations_from().uses_registry() {
                out.only_in_registry = permitted
                    .organisations
                    .iter()
                    .filter(|o| !contract.contains(o.as_str()))
                    .cloned()
                    .collect();
            }
            out.only_in_contract = contract
                .iter()
                .filter(|o| !permitted.organisations.contains(**o))
                .map(|o| (*o).to_owned())
                .collect();
        }
    }
    if let Some(agreements) = p.contract.agreements() {
        out.agreements_not_permitted = agreements
            .iter()
            .map(|(oid, _)| oid)
            .filter(|oid| !permitted.organisations.contains(*oid))
            .map(str::to_owned)
            .collect();
    }
    if raw.found && p.contract.allows_test_learner_id() != permitted.allow_test_learner_id {
        out.test_learner_id = Some(TestLearnerDrift {
            contract: p.contract.allows_test_learner_id(),
            registry: permitted.allow_test_learner_id,
        });
    }
    out
}

impl DriftReport {
    /// True when any provider drifts.
    pub fn has_drift(&self) -> bool {
        self.providers.iter().any(ProviderDrift::has_drift)
    }

    /// The report as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The report for people: one block per provider.
    pub fn render_text(&self) -> String {
        let mut s = String::new();
        for p in &self.providers {
            let _ = writeln!(
                s,
                "provider {} (client ids: {})",
                p.provider,
                p.audiences.join(", ")
            );
            if !p.has_drift() {
                s.push_str("  in step with the registry\n");
            }
            list(
                &mut s,
                "permitted in the registry, missing from the contract",
                &p.only_in_registry,
            );
            list(
                &mut s,
                "in the contract, not permitted in the registry",
                &p.only_in_contract,
            );
            list(
                &mut s,
                "school codes in the contract, not comparable with the registry",
                &p.not_comparable,
            );
            if p.contract_permits_every_organisation {
                s.push_str(
                    "  the contract permits every organisation (\"*\"), whatever the registry says\n",
                );
            }
            list(
                &mut s,
                "agreements with controllers the registry does not permit",
                &p.agreements_not_permitted,
            );
            for a in &p.all_services {
                let _ = writeln!(
                    s,
                    "  {} permits every service (empty permissions): {}",
                    a.organisation,
                    if a.accepted {
                        "accepted (allow_all_services_for)"
                    } else {
                        "not a permission in mpass-guard unless listed in allow_all_services_for"
                    }
                );
            }
            if let Some(t) = p.test_learner_id {
                let _ = writeln!(
                    s,
                    "  test learner numbers: the contract says {}, the registry (allowtestlearnerid) says {}",
                    t.contract, t.registry
                );
            }
            list(
                &mut s,
                "client ids not found in the registry",
                &p.client_ids_not_found,
            );
            list(
                &mut s,
                "client ids on more than one service provider (nothing permitted)",
                &p.duplicate_client_ids,
            );
        }
        let drifting = self.providers.iter().filter(|p| p.has_drift()).count();
        let _ = writeln!(
            s,
            "{drifting} of {} provider(s) drift from the registry",
            self.providers.len()
        );
        s
    }
}

fn list(s: &mut String, title: &str, items: &[String]) {
    if !items.is_empty() {
        let _ = writeln!(s, "  {title}: {}", items.join(", "));
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Saved<'a> {
    #[serde(borrow)]
    identityproviders: &'a RawValue,
    #[serde(borrow)]
    serviceproviders: &'a RawValue,
}

/// Splits a saved snapshot file into the two bodies, kept byte for byte.
pub fn split_saved(bytes: &[u8]) -> Result<(Vec<u8>, Vec<u8>), String> {
    let saved: Saved<'_> = serde_json::from_slice(bytes).map_err(|e| {
        format!("not a saved registry snapshot ({{\"identityproviders\": ..., \"serviceproviders\": ...}}): {e}")
    })?;
    Ok((
        saved.identityproviders.get().as_bytes().to_vec(),
        saved.serviceproviders.get().as_bytes().to_vec(),
    ))
}

/// Reads a saved snapshot: a JSON file (see [`split_saved`]) or a directory
/// holding [`IDENTITY_PROVIDERS_FILE`] and [`SERVICE_PROVIDERS_FILE`].
pub fn read_saved(path: &Path) -> Result<(Vec<u8>, Vec<u8>), String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    if path.is_dir() {
        Ok((
            read(&path.join(IDENTITY_PROVIDERS_FILE))?,
            read(&path.join(SERVICE_PROVIDERS_FILE))?,
        ))
    } else {
        split_saved(&read(path)?).map_err(|e| format!("{}: {e}", path.display()))
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;
    use crate::contract::{CompileContext, ContractConfig};
    use crate::registry::Phase;
    use serde_json::json;

    const TESTIKUNTA: &str = "1.2.246.562.10.99887766551";
    const KAIKKIKUNTA: &str = "1.2.246.562.10.11111111111";
    const MUU: &str = "1.2.246.562.10.44444444444";
    const VANHA: &str = "1.2.246.562.10.55555555555";

    const IDPS: &str = r#"{"identityProviders": [
     {"id": 1000123, "organization": {"oid": "1.2.246.562.10.99887766551"},
      "permissions": [{"to": {"id": 3000045, "integrations": [{"type": "oidc", "clientId": "oppimateriaali"}]}}],
      "deploymentPhase": 1, "active": true,
      "configurationEntity": {"attributes": [], "idp": {"type": "wilma", "type": "wilma"}}},
     {"id": 1000124, "organization": {"oid": "1.2.246.562.10.11111111111"},
      "permissions": [], "deploymentPhase": 1, "active": true,
      "configurationEntity": {"attributes": [], "idp": {"type": "azure", "type": "azure"}}},
     {"id": 1000126, "organization": {"oid": "1.2.246.562.10.44444444444"},
      "permissions": [{"to": {"id": 3000099}}], "deploymentPhase": 1, "active": true,
      "configurationEntity": {"idp": {"type": "wilma", "type": "wilma"}}}]}"#;

    const SPS: &str = r#"{"serviceProviders": [
     {"id": 2000210, "integrationSets": [{"id": 3000045, "configurationEntity": {"attributes": [], "set": {"type": "sp"}}}],
      "deploymentPhase": 1, "active": true,
      "configurationEntity": {"attributes": [{"type": "data", "name": "allowtestlearnerid", "content": "true"}],
       "sp": {"type": "oidc", "type": "oidc", "clientId": "oppimateriaali"}}},
     {"id": 2000211, "integrationSets": [{"id": 3000099, "configurationEntity": {"attributes": [], "set": {"type": "sp"}}}],
      "deploymentPhase": 1, "active": true,
      "configurationEntity": {"attributes": [], "sp": {"type": "oidc", "type": "oidc", "clientId": "other"}}},
     {"id": 2000212, "integrationSets": [3000099], "deploymentPhase": 1, "active": true,
      "configurationEntity": {"attributes": [], "sp": {"type": "oidc", "type": "oidc", "clientId": "other"}}}]}"#;

    fn snapshot() -> Snapshot {
        Snapshot::parse(IDPS.as_bytes(), SPS.as_bytes(), Phase::Production).unwrap()
    }

    fn contract(v: serde_json::Value) -> Contract {
        let wire: ContractConfig = serde_json::from_value(v).unwrap();
        Contract::compile(
            &wire,
            "c",
            &CompileContext {
                header_prefix: "x-mpass-",
                extra_never_release: &[],
            },
        )
        .unwrap()
        .0
    }

    fn drift(audiences: &[&str], c: serde_json::Value, allow_all: &[&str]) -> ProviderDrift {
        let audiences: Vec<String> = audiences.iter().map(|s| (*s).to_owned()).collect();
        let contract = contract(c);
        let allow: BTreeSet<String> = allow_all.iter().map(|s| (*s).to_owned()).collect();
        let report = compare(
            &[ProviderInput {
                id: "shop",
                audiences: &audiences,
                contract: &contract,
            }],
            &snapshot(),
            &allow,
        );
        report.providers.into_iter().next().unwrap()
    }

    #[test]
    fn a_contract_in_step_with_the_registry_has_no_drift() {
        let d = drift(
            &["oppimateriaali"],
            json!({"organisations": [TESTIKUNTA, KAIKKIKUNTA], "allow_test_learner_id": true}),
            &[KAIKKIKUNTA],
        );
        assert!(!d.has_drift(), "{d:?}");
        let text = DriftReport { providers: vec![d] }.render_text();
        assert!(text.contains("in step with the registry"), "{text}");
        assert!(text.contains("0 of 1"), "{text}");
        assert!(text.contains("accepted (allow_all_services_for)"), "{text}");
    }

    #[test]
    fn organisations_missing_on_either_side_are_listed() {
        let d = drift(
            &["oppimateriaali"],
            json!({"organisations": [VANHA, "30076"], "allow_test_learner_id": true}),
            &[],
        );
        assert_eq!(d.only_in_registry, [TESTIKUNTA]);
        assert_eq!(d.only_in_contract, [VANHA]);
        assert_eq!(d.not_comparable, ["30076"]);
        let text = DriftReport { providers: vec![d] }.render_text();
        assert!(
            text.contains(&format!(
                "permitted in the registry, missing from the contract: {TESTIKUNTA}"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "in the contract, not permitted in the registry: {VANHA}"
            )),
            "{text}"
        );
        assert!(text.contains("1 of 1"), "{text}");
    }

    #[test]
    fn all_services_organisations_are_named_and_count_only_when_accepted() {
        let refused = drift(
            &["oppimateriaali"],
            json!({"organisations": [TESTIKUNTA, KAIKKIKUNTA], "allow_test_learner_id": true}),
            &[],
        );
        assert_eq!(
            refused.all_services,
            [AllServices {
                organisation: KAIKKIKUNTA.to_owned(),
                accepted: false
            }]
        );
        assert_eq!(refused.only_in_contract, [KAIKKIKUNTA]);
        let text = DriftReport {
            providers: vec![refused],
        }
        .render_text();
        assert!(
            text.contains("unless listed in allow_all_services_for"),
            "{text}"
        );

        let accepted = drift(
            &["oppimateriaali"],
            json!({"organisations": [TESTIKUNTA], "allow_test_learner_id": true}),
            &[KAIKKIKUNTA],
        );
        assert_eq!(accepted.only_in_registry, [KAIKKIKUNTA]);
        assert!(accepted.all_services[0].accepted);
    }

    #[test]
    fn a_disagreeing_test_learner_setting_is_reported() {
        let d = drift(
            &["oppimateriaali"],
            json!({"organisations": [TESTIKUNTA]}),
            &[],
        );
        assert_eq!(
            d.test_learner_id,
            Some(TestLearnerDrift {
                contract: false,
                registry: true
            })
        );
        let text = DriftReport { providers: vec![d] }.render_text();
        assert!(
            text.contains("the contract says false, the registry (allowtestlearnerid) says true"),
            "{text}"
        );
    }

    #[test]
    fn unknown_and_duplicate_client_ids_are_reported() {
        let d = drift(&["other", "nobody"], json!({"organisations": [MUU]}), &[]);
        assert_eq!(d.client_ids_not_found, ["nobody"]);
        assert_eq!(d.duplicate_client_ids, ["other"]);
        // A duplicate permits nothing, so the contract's MUU is not backed.
        assert_eq!(d.only_in_contract, [MUU]);
        assert_eq!(d.test_learner_id, None);
    }

    #[test]
    fn an_agreement_with_a_controller_the_registry_does_not_permit_is_listed() {
        let d = drift(
            &["oppimateriaali"],
            json!({
                "organisations": [TESTIKUNTA, VANHA],
                "allow_test_learner_id": true,
                "release": {"uid": {}},
                "agreements": {TESTIKUNTA: {"release": {"uid": {}}}, VANHA: {"release": {}}},
                "default_agreement": "deny"
            }),
            &[],
        );
        assert_eq!(d.agreements_not_permitted, [VANHA]);
        let text = DriftReport { providers: vec![d] }.render_text();
        assert!(
            text.contains(&format!(
                "agreements with controllers the registry does not permit: {VANHA}"
            )),
            "{text}"
        );
    }

    #[test]
    fn a_contract_for_every_organisation_is_drift() {
        let d = drift(
            &["oppimateriaali"],
            json!({"organisations": ["*"], "allow_test_learner_id": true}),
            &[],
        );
        assert!(d.contract_permits_every_organisation);
        assert!(d.has_drift());
        assert!(d.only_in_registry.is_empty());
    }

    #[test]
    fn the_json_rendering_names_every_field() {
        let d = drift(&["oppimateriaali"], json!({"organisations": [VANHA]}), &[]);
        let v: serde_json::Value =
            serde_json::from_str(&DriftReport { providers: vec![d] }.to_json()).unwrap();
        let p = &v["providers"][0];
        assert_eq!(p["provider"], "shop");
        assert_eq!(p["only_in_contract"], json!([VANHA]));
        assert_eq!(
            p["test_learner_id"],
            json!({"contract": false, "registry": true})
        );
    }

    #[test]
    fn a_saved_snapshot_keeps_both_bodies_byte_for_byte() {
        let file = format!("{{\"identityproviders\": {IDPS}, \"serviceproviders\": {SPS}}}");
        let (idps, sps) = split_saved(file.as_bytes()).unwrap();
        assert_eq!(idps, IDPS.as_bytes());
        assert_eq!(sps, SPS.as_bytes());
        assert!(Snapshot::parse(&idps, &sps, Phase::Production).is_ok());
        for bad in [
            "[]".to_owned(),
            format!("{{\"identityproviders\": {IDPS}}}"),
            format!("{{\"identityproviders\": {IDPS}, \"serviceproviders\": {SPS}, \"x\": 1}}"),
        ] {
            assert!(split_saved(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_saved_fixtures_read_alike_in_both_forms() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/registry");
        let from_dir = read_saved(&dir).unwrap();
        let from_file = read_saved(&dir.join("snapshot.json")).unwrap();
        assert_eq!(from_dir.0.trim_ascii_end(), from_file.0.as_slice());
        assert_eq!(from_dir.1.trim_ascii_end(), from_file.1.as_slice());
        let s = Snapshot::parse(&from_file.0, &from_file.1, Phase::Production).unwrap();
        let p = s.permissions(&["oppimateriaali-prod".to_owned()]);
        assert!(p
            .organisations
            .iter()
            .any(|o| o.organisation == TESTIKUNTA && !o.all_services));
        assert!(p.allow_test_learner_id);
    }

    #[test]
    fn a_saved_snapshot_may_be_a_directory_of_two_files() {
        let dir = std::env::temp_dir().join(format!("mpass-guard-drift-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(IDENTITY_PROVIDERS_FILE), IDPS).unwrap();
        std::fs::write(dir.join(SERVICE_PROVIDERS_FILE), SPS).unwrap();
        let (idps, sps) = read_saved(&dir).unwrap();
        assert_eq!(
            (idps.as_slice(), sps.as_slice()),
            (IDPS.as_bytes(), SPS.as_bytes())
        );
        std::fs::remove_file(dir.join(SERVICE_PROVIDERS_FILE)).unwrap();
        let err = read_saved(&dir).unwrap_err();
        assert!(err.contains(SERVICE_PROVIDERS_FILE), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
