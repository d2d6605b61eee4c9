//! Per-controller agreements inside a provider's contract.
//!
//! The education provider (a municipality, a school operator) is the data
//! controller of its users' data, and it agrees with each service what the
//! service may process. A contract's `release` is the most the service can
//! ever receive; an agreement is one controller's part of it:
//!
//! ```json
//! "agreements": {
//!   "1.2.246.562.10.00000000001": {
//!     "release": { "uid": {}, "email": { "only_roles": [2], "purpose": "payment receipts" } },
//!     "allow_test_learner_id": false
//!   }
//! },
//! "default_agreement": "deny"
//! ```
//!
//! An agreement can only narrow the contract: an attribute outside the
//! contract's release, role codes outside the contract's `only_roles`, or
//! test learner numbers the contract refuses are load errors. Controllers
//! without an agreement get `default_agreement`, which must be chosen
//! explicitly: `deny` (their users' roles do not count as permitted) or
//! `contract` (the contract's whole release).
//!
//! # Which controller decides
//!
//! The controller of a value is the education provider of the role it
//! belongs to (the first field of an `urn:mpass.id:role` string; a school
//! belongs to the providers of the roles held in it; a provider info value
//! to its provider). Multi-valued attributes are filtered value by value
//! under their own controller's agreement. A single-valued attribute (names,
//! uid, learner number, e-mail, grade, ...) says something about the person
//! as a whole, so it is released only when **every** controller of the
//! request releases it with its conditions met: a teacher of Vantaa and
//! Espoo gets an e-mail released only if both agreements release it. A
//! test learner number likewise needs every controller's consent.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;

use crate::claims::{self, is_organisation_oid, Attribute};
use crate::error::{join, ConfigError};
use crate::unique_map::{Keys, UniqueMap};

/// What the contract does for a controller without an agreement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DefaultAgreement {
    /// The controller's users' roles are not permitted.
    Deny,
    /// The contract's whole release applies.
    Contract,
}

/// One attribute of an agreement (`agreements.<oid>.release.<name>`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgreedRule {
    /// Role codes (1-6) this controller releases the attribute to; a subset
    /// of the contract's own `only_roles`.
    #[serde(default)]
    pub only_roles: Option<Vec<i64>>,
    /// This controller's stated purpose.
    #[serde(default)]
    pub purpose: Option<String>,
}

/// The JSON of one agreement.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgreementConfig {
    /// Attribute name → conditions; only names in the contract's release.
    #[serde(default)]
    pub release: UniqueMap<AgreedRule, AgreedNames>,
    /// Whether this controller accepts test learner numbers; absent: the
    /// contract's setting.
    #[serde(default)]
    pub allow_test_learner_id: Option<bool>,
}

/// The keys of an agreement's `release`: attribute names.
pub struct AgreedNames;

impl Keys for AgreedNames {
    const EXPECTING: &'static str = "an object of attribute names to agreed rules";
    fn twice(key: &str) -> String {
        format!("attribute `{key}` is listed twice in the agreement's release")
    }
}

/// A contract's `agreements`, in the order written; a controller written
/// twice is refused (a plain map would silently keep the last one).
pub type AgreementList = UniqueMap<AgreementConfig, Controllers>;

/// The keys of [`AgreementList`]: education-provider OIDs.
pub struct Controllers;

impl Keys for Controllers {
    const EXPECTING: &'static str = "an object of education-provider OIDs to agreements";
    fn twice(key: &str) -> String {
        format!("controller `{key}` has two agreements")
    }
}

/// What the contract tells the compiler about itself.
#[derive(Debug, Clone, Copy)]
pub struct ContractLimits<'a> {
    /// Per released attribute (catalogue index): its role mask (0 = any).
    pub released: &'a [(usize, u8)],
    pub allow_test_learner_id: bool,
}

/// One controller's compiled agreement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agreement {
    /// Per catalogue attribute index: role mask (0 = any role) and purpose.
    rules: Vec<(usize, u8, Option<Arc<str>>)>,
    allow_test_learner_id: bool,
}

impl Agreement {
    /// The whole contract, for `default_agreement: contract`.
    fn whole(limits: &ContractLimits<'_>) -> Agreement {
        Agreement {
            rules: limits
                .released
                .iter()
                .map(|(i, m)| (*i, *m, None))
                .collect(),
            allow_test_learner_id: limits.allow_test_learner_id,
        }
    }

    /// Whether the attribute is released to a user holding `held` (bit
    /// `1 << code`) under this controller.
    pub fn releases(&self, attr: &Attribute, held: u8) -> bool {
        self.rules
            .iter()
            .any(|(i, mask, _)| *i == attr.index && (*mask == 0 || mask & held != 0))
    }

    /// This controller's purpose for the attribute, if it stated one.
    pub fn purpose(&self, attr: &Attribute) -> Option<&Arc<str>> {
        self.rules
            .iter()
            .find(|(i, _, _)| *i == attr.index)
            .and_then(|(_, _, p)| p.as_ref())
    }

    /// Whether this controller accepts test learner numbers.
    pub fn allows_test_learner_id(&self) -> bool {
        self.allow_test_learner_id
    }

    /// The released attributes: catalogue index, role codes, purpose.
    pub fn entries(&self) -> impl Iterator<Item = (usize, Vec<u8>, Option<&str>)> + '_ {
        self.rules.iter().map(|(i, mask, p)| {
            (
                *i,
                (1..=6).filter(|c| mask & (1 << c) != 0).collect(),
                p.as_deref(),
            )
        })
    }
}

/// Every agreement of one contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agreements {
    by_controller: BTreeMap<String, Agreement>,
    default: DefaultAgreement,
    whole: Agreement,
}

impl Agreements {
    /// Compiles `agreements` and `default_agreement` of the contract at
    /// `path`. `None` when the contract has no agreements (one release for
    /// every controller, as before).
    pub fn compile(
        wire: &AgreementList,
        default: Option<DefaultAgreement>,
        limits: &ContractLimits<'_>,
        path: &str,
    ) -> Result<Option<Agreements>, ConfigError> {
        let agreements_path = join(path, "agreements");
        let default = match (wire.entries.is_empty(), default) {
            (true, None) => return Ok(None),
            (true, Some(_)) => {
                return Err(ConfigError::new(
                    join(path, "default_agreement"),
                    "given without any agreements",
                ))
            }
            (false, None) => {
                return Err(ConfigError::new(
                    join(path, "default_agreement"),
                    "required with agreements: \"deny\" or \"contract\" for controllers without an agreement",
                ))
            }
            (false, Some(d)) => d,
        };
        let mut by_controller = BTreeMap::new();
        for (oid, agreement) in &wire.entries {
            let ap = format!(
                "{agreements_path}[{}]",
                serde_json::Value::from(oid.as_str())
            );
            if !is_organisation_oid(oid) {
                return Err(ConfigError::new(
                    ap,
                    "an agreement is keyed by the education provider's OPH OID (1.2.246.562.10.* or 1.2.246.562.99.*)",
                ));
            }
            let mut rules = Vec::new();
            for (name, rule) in &agreement.release.entries {
                let rp = format!("{ap}.release[{}]", serde_json::Value::from(name.as_str()));
                let Some((attr, _)) = claims::lookup(name) else {
                    return Err(ConfigError::new(rp, format!("unknown attribute `{name}`")));
                };
                let Some((_, contract_mask)) =
                    limits.released.iter().find(|(i, _)| *i == attr.index)
                else {
                    return Err(ConfigError::new(
                        rp,
                        format!("widens the contract: `{name}` is not in the provider's release"),
                    ));
                };
                if rules.iter().any(|(i, _, _)| *i == attr.index) {
                    return Err(ConfigError::new(
                        rp,
                        format!("attribute `{name}` is listed twice"),
                    ));
                }
                let mask = match &rule.only_roles {
                    None => *contract_mask,
                    Some(codes) => {
                        let op = join(&rp, "only_roles");
                        if codes.is_empty() {
                            return Err(ConfigError::new(
                                op,
                                "must list at least one role code 1-6 (omit it for the contract's roles)",
                            ));
                        }
                        let mut mask = 0u8;
                        for c in codes {
                            match u8::try_from(*c) {
                                Ok(c @ 1..=6) => mask |= 1 << c,
                                _ => {
                                    return Err(ConfigError::new(
                                        op,
                                        format!("role code {c} is not one of 1-6"),
                                    ))
                                }
                            }
                        }
                        if *contract_mask != 0 && mask & !contract_mask != 0 {
                            return Err(ConfigError::new(
                                op,
                                "widens the contract: role codes outside the contract's only_roles",
                            ));
                        }
                        mask
                    }
                };
                let purpose = match &rule.purpose {
                    Some(p) if p.trim().is_empty() || p.chars().any(char::is_control) => {
                        return Err(ConfigError::new(
                            join(&rp, "purpose"),
                            "purpose must be non-empty text without control characters",
                        ))
                    }
                    Some(p) => Some(Arc::<str>::from(p.trim())),
                    None => None,
                };
                rules.push((attr.index, mask, purpose));
            }
            rules.sort_by_key(|(i, _, _)| *i);
            let allow_test = match agreement.allow_test_learner_id {
                Some(true) if !limits.allow_test_learner_id => {
                    return Err(ConfigError::new(
                        join(&ap, "allow_test_learner_id"),
                        "widens the contract: the contract does not allow test learner numbers",
                    ))
                }
                Some(v) => v,
                None => limits.allow_test_learner_id,
            };
            by_controller.insert(
                oid.clone(),
                Agreement {
                    rules,
                    allow_test_learner_id: allow_test,
                },
            );
        }
        Ok(Some(Agreements {
            by_controller,
            default,
            whole: Agreement::whole(limits),
        }))
    }

    /// The agreement that applies to a controller; `None` when it has none
    /// and the default is `deny`.
    pub fn for_controller(&self, controller: &str) -> Option<&Agreement> {
        match self.by_controller.get(controller) {
            Some(a) => Some(a),
            None => match self.default {
                DefaultAgreement::Deny => None,
                DefaultAgreement::Contract => Some(&self.whole),
            },
        }
    }

    /// The default for controllers without an agreement.
    pub fn default(&self) -> DefaultAgreement {
        self.default
    }

    /// The agreements, by controller OID.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Agreement)> + '_ {
        self.by_controller.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// A canonical form for the contract version.
    pub fn canonical(&self) -> serde_json::Value {
        let list: Vec<serde_json::Value> = self
            .by_controller
            .iter()
            .map(|(oid, a)| {
                let rules: Vec<serde_json::Value> = a
                    .entries()
                    .map(|(i, codes, p)| serde_json::json!([i, codes, p]))
                    .collect();
                serde_json::json!([oid, rules, a.allow_test_learner_id])
            })
            .collect();
        let default = match self.default {
            DefaultAgreement::Deny => "deny",
            DefaultAgreement::Contract => "contract",
        };
        serde_json::json!([default, list])
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use serde_json::{json, Map, Value};

    use crate::contract::{CompileContext, Contract, ContractConfig};

    const VANTAA: &str = "1.2.246.562.10.00000000092";
    const ESPOO: &str = "1.2.246.562.10.00000000049";
    const HELSINKI: &str = "1.2.246.562.10.00000000091";

    fn compile(contract: Value) -> Result<Contract, String> {
        let wire: ContractConfig = serde_json::from_value(contract).map_err(|e| e.to_string())?;
        Contract::compile(
            &wire,
            "providers.shop.contract",
            &CompileContext {
                header_prefix: "x-mpass-",
                extra_never_release: &[],
            },
        )
        .map(|(c, _)| c)
        .map_err(|e| e.to_string())
    }

    fn shop(agreements: Value, default: &str) -> Contract {
        compile(json!({
            "organisations": [VANTAA, ESPOO, HELSINKI],
            "release": {
                "uid": {},
                "given_name": {},
                "role": {},
                "school_info": {},
                "email": {"purpose": "payment receipts", "only_roles": [2, 3, 4, 5, 6]}
            },
            "agreements": agreements,
            "default_agreement": default
        }))
        .unwrap()
    }

    fn role(provider: &str, school: &str, code: u8) -> String {
        let name = if code == 1 { "Oppilas" } else { "Opettaja" };
        format!("{provider};{school};7A;{name};{code};{provider}1;")
    }

    fn user(roles: &[String]) -> Map<String, Value> {
        let schools: Vec<String> = roles
            .iter()
            .map(|r| {
                let oid = r.split(';').nth(5).unwrap_or_default();
                format!("{oid};Koulu")
            })
            .collect();
        json!({
            "sub": "s",
            "urn:mpass.id:uid": "MPASSOID.teacher",
            "given_name": "Tiina",
            "email": "tiina@example.fi",
            "urn:mpass.id:role": roles,
            "urn:mpass.id:schoolInfo": schools,
        })
        .as_object()
        .cloned()
        .unwrap()
    }

    fn header<'a>(release: &'a crate::contract::Release, suffix: &str) -> Option<&'a str> {
        release
            .headers
            .iter()
            .find(|(n, _)| n.ends_with(suffix))
            .map(|(_, v)| v.as_str())
    }

    fn agreements() -> Value {
        json!({
            VANTAA: {"release": {"uid": {}, "given_name": {}, "role": {}, "school_info": {},
                                 "email": {"only_roles": [2], "purpose": "receipts for Vantaa staff"}}},
            ESPOO: {"release": {"uid": {}, "given_name": {}, "school_info": {}}}
        })
    }

    #[test]
    fn a_teacher_of_the_municipality_that_agreed_to_email_receives_it_under_its_purpose() {
        let c = shop(agreements(), "deny");
        let r = c.apply(&user(&[role(VANTAA, "10001", 2)])).unwrap();
        assert!(r.released.contains(&"email"), "{:?}", r.released);
        let purpose = r.purposes.iter().find(|(a, _)| *a == "email").unwrap();
        assert_eq!(&*purpose.1, "receipts for Vantaa staff");
    }

    #[test]
    fn a_teacher_of_two_municipalities_gets_single_valued_data_only_if_both_agree() {
        let c = shop(agreements(), "deny");
        let r = c
            .apply(&user(&[role(VANTAA, "10001", 2), role(ESPOO, "20002", 2)]))
            .unwrap();
        // Espoo did not agree to e-mail: withheld for the person as a whole.
        assert!(!r.released.contains(&"email"));
        assert!(r.withheld.contains(&"email"));
        // Both agreed to the name.
        assert!(r.released.contains(&"given_name"));
    }

    #[test]
    fn multi_valued_values_are_released_under_their_own_controllers_agreement() {
        let c = shop(agreements(), "deny");
        let vantaa = role(VANTAA, "10001", 2);
        let espoo = role(ESPOO, "20002", 2);
        let r = c.apply(&user(&[vantaa.clone(), espoo.clone()])).unwrap();
        // Espoo's agreement has no role: only the Vantaa role string goes.
        let roles = header(&r, "role").unwrap();
        assert!(roles.contains(VANTAA), "{roles}");
        assert!(!roles.contains(ESPOO), "{roles}");
        // Both agreed to school info: both schools go.
        let schools = header(&r, "school-info").unwrap();
        assert!(
            schools.contains("000000000921") && schools.contains("000000000491"),
            "{schools}"
        );
    }

    #[test]
    fn a_controller_without_an_agreement_is_denied_or_gets_the_contract_as_chosen() {
        let helsinki = user(&[role(HELSINKI, "30003", 2)]);
        let denied = shop(agreements(), "deny").apply(&helsinki).unwrap_err();
        assert_eq!(denied.reason, "organisation_not_permitted");
        let whole = shop(agreements(), "contract").apply(&helsinki).unwrap();
        assert!(whole.released.contains(&"email"));
        assert!(header(&whole, "role").is_some_and(|r| r.contains(HELSINKI)));
    }

    #[test]
    fn an_unagreed_controllers_roles_do_not_count_next_to_an_agreed_one() {
        let c = shop(agreements(), "deny");
        let r = c
            .apply(&user(&[
                role(VANTAA, "10001", 2),
                role(HELSINKI, "30003", 2),
            ]))
            .unwrap();
        let roles = header(&r, "role").unwrap();
        assert!(!roles.contains(HELSINKI), "{roles}");
        // Only Vantaa is a controller of this request: its e-mail rule decides.
        assert!(r.released.contains(&"email"));
    }

    #[test]
    fn an_agreement_cannot_widen_the_contract() {
        let base = |agreement: Value| {
            json!({
                "organisations": [VANTAA],
                "release": {"uid": {}, "email": {"purpose": "receipts", "only_roles": [2, 3]}},
                "agreements": {VANTAA: agreement},
                "default_agreement": "deny"
            })
        };
        for (agreement, words) in [
            (
                json!({"release": {"given_name": {}}}),
                "not in the provider's release",
            ),
            (
                json!({"release": {"email": {"only_roles": [1, 2]}}}),
                "outside the contract's only_roles",
            ),
            (
                json!({"allow_test_learner_id": true}),
                "does not allow test learner numbers",
            ),
            (json!({"release": {"nonsense": {}}}), "unknown attribute"),
            (json!({"release": {"uid": {"purpose": " "}}}), "purpose"),
        ] {
            let err = compile(base(agreement.clone())).unwrap_err();
            assert!(err.contains(words), "{agreement}: {err}");
            assert!(err.contains("agreements"), "{err}");
        }
    }

    #[test]
    fn a_controller_or_an_agreed_attribute_written_twice_is_refused_not_overwritten() {
        let twice_controller = format!(
            r#"{{"organisations": ["{VANTAA}"], "release": {{"uid": {{}}, "email": {{}}}},
                "agreements": {{"{VANTAA}": {{"release": {{"uid": {{}}, "email": {{}}}}}},
                                "{VANTAA}": {{"release": {{"uid": {{}}}}}}}},
                "default_agreement": "deny"}}"#
        );
        let err = serde_json::from_str::<ContractConfig>(&twice_controller).unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("controller `{VANTAA}` has two agreements")),
            "{err}"
        );
        let twice_attribute = format!(
            r#"{{"organisations": ["{VANTAA}"], "release": {{"uid": {{}}, "email": {{}}}},
                "agreements": {{"{VANTAA}": {{"release": {{"email": {{"only_roles": [2]}}, "email": {{}}}}}}}},
                "default_agreement": "deny"}}"#
        );
        let err = serde_json::from_str::<ContractConfig>(&twice_attribute).unwrap_err();
        assert!(
            err.to_string()
                .contains("attribute `email` is listed twice"),
            "{err}"
        );
    }

    #[test]
    fn agreements_need_an_explicit_default_and_oid_keys() {
        let err = compile(json!({
            "organisations": [VANTAA], "release": {"uid": {}},
            "agreements": {VANTAA: {"release": {"uid": {}}}}
        }))
        .unwrap_err();
        assert!(err.contains("default_agreement"), "{err}");
        let err = compile(json!({
            "organisations": [VANTAA], "release": {"uid": {}},
            "default_agreement": "deny"
        }))
        .unwrap_err();
        assert!(err.contains("without any agreements"), "{err}");
        let err = compile(json!({
            "organisations": [VANTAA], "release": {"uid": {}},
            "agreements": {"30076": {}}, "default_agreement": "deny"
        }))
        .unwrap_err();
        assert!(err.contains("OPH OID"), "{err}");
    }

    #[test]
    fn a_test_learner_number_needs_every_controllers_consent() {
        let contract = |espoo_test: bool| {
            compile(json!({
                "organisations": [VANTAA, ESPOO],
                "allow_test_learner_id": true,
                "release": {"uid": {}},
                "agreements": {
                    VANTAA: {"release": {"uid": {}}},
                    ESPOO: {"release": {"uid": {}}, "allow_test_learner_id": espoo_test}
                },
                "default_agreement": "deny"
            }))
            .unwrap()
        };
        let mut learner = user(&[role(VANTAA, "10001", 1), role(ESPOO, "20002", 1)]);
        learner.insert(
            "urn:oid:1.3.6.1.4.1.16161.1.1.27".into(),
            json!("1.2.246.562.98.12345678901"),
        );
        assert!(contract(true).apply(&learner).is_ok());
        let err = contract(false).apply(&learner).unwrap_err();
        assert_eq!(err.reason, "test_identity_not_allowed");
    }

    #[test]
    fn agreements_change_the_contract_version_and_no_agreements_keep_it() {
        let plain = compile(json!({"organisations": [VANTAA], "release": {"uid": {}}})).unwrap();
        let same = compile(json!({"organisations": [VANTAA], "release": {"uid": {}}})).unwrap();
        assert_eq!(plain.version(), same.version());
        let agreed = compile(json!({
            "organisations": [VANTAA], "release": {"uid": {}},
            "agreements": {VANTAA: {"release": {"uid": {}}}}, "default_agreement": "deny"
        }))
        .unwrap();
        assert_ne!(plain.version(), agreed.version());
    }
}
