//! Provider contracts: what each service provider may receive, checked at
//! load time and applied value by value at request time.
//!
//! A contract is written as JSON ([`ContractConfig`], under
//! `providers.<id>.contract`) and compiled once into a [`Contract`]: names
//! are resolved against the catalogue, header names are built and checked,
//! organisations go into a lookup set and the contract version is hashed.
//! [`Contract::apply`] then only filters and renders.
//!
//! # Wire format
//!
//! ```json
//! {
//!   "organisations": ["1.2.246.562.10.00000000001", "30076"],
//!   "identifier_form": "oid",
//!   "allow_test_learner_id": false,
//!   "required": ["uid"],
//!   "release": {
//!     "uid": {},
//!     "learner_id": {"purpose": "linking course results"},
//!     "email": {"purpose": "payment receipts", "only_roles": [2, 3, 4, 5, 6]},
//!     "given_name": {"header": "x-shop-first-name"}
//!   },
//!   "payload_header": "x-mpass-claims",
//!   "forward_token": false
//! }
//! ```
//!
//! | field | default | meaning |
//! |---|---|---|
//! | `organisations` | required | OPH organisation OIDs (`1.2.246.562.10.*`, test branch `1.2.246.562.99.*`), 5-digit TK school codes, or exactly `["*"]` |
//! | `identifier_form` | `"oid"` | which school id form the service receives: `oid`, `tk`, `both` |
//! | `allow_test_learner_id` | `false` | accept `1.2.246.562.98.*` learner numbers |
//! | `required` | `[]` | attributes that must be released, or the request is denied |
//! | `release` | `{}` | attribute name → rule; an empty contract is a pure gate |
//! | `release.*.purpose` | none | why; mandatory for sensitive attributes; recorded for audit |
//! | `release.*.only_roles` | any role | role codes 1-6; the attribute is withheld unless a permitted role has one |
//! | `release.*.header` | prefix + catalogue suffix | custom header name |
//! | `payload_header` | none | header carrying all released claims as base64url JSON |
//! | `forward_token` | `false` | whether the engine passes the token on (warns: a token is wider than any contract) |
//!
//! # Decisions at request time
//!
//! Deny by default, in this order: a malformed learner number
//! (`invalid_learner_id`) or a test learner number the contract does not
//! allow (`test_identity_not_allowed`), whether or not the learner number is
//! released; no role in a permitted organisation while organisations is not
//! `*` (`organisation_not_permitted`); a required attribute with nothing left
//! to release after filtering (`missing_required_attribute`). Stricter than
//! "present in the token" on purpose: a service that requires an attribute
//! relies on receiving it.
//!
//! Values are filtered one by one. A role is permitted when its provider
//! OID, school TK code or school OID is listed. A school or charge value is
//! permitted when its school id is listed or belongs to a permitted role; a
//! provider info when the provider is listed or provides a permitted role;
//! the original issuer when it is listed or is the provider or school of a
//! permitted role. Values that cannot be parsed (role strings of neither 4
//! nor 7 fields, values without a school id) are dropped: what cannot be
//! attributed to an organisation cannot be shown to be permitted. The 2019
//! single-organisation attributes (school, group, municipality) are released
//! only when every role in the token is permitted, and the 2019 school code
//! only when permitted, because they cannot be tied to one role.

use crate::agreement::{AgreementList, Agreements, ContractLimits, DefaultAgreement};
use crate::claims::{
    self, classify_learner_id, is_oid, is_organisation_oid, is_tk_code, normalise, parse_role,
    role_code, Attribute, LearnerIdKind, Normalised, OrgScope, ValueType, CATALOGUE,
    LEARNER_ID_ATTRIBUTE, ROLE_ATTRIBUTE, SCHOOL_CODE_ATTRIBUTE,
};
use crate::error::{index, join, ConfigError};
use crate::http::check_header_name;
use crate::minted::{SignedTokenConfig, DEFAULT_HEADER};
use crate::render;
use crate::unique_map::{Keys, UniqueMap};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

/// Which form of school identifier a service receives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentifierForm {
    /// OPH organisation OIDs only (TK codes are being given up).
    #[default]
    Oid,
    /// Statistics Finland (TK) codes only, for legacy services.
    Tk,
    /// Both, as data model 1.4 sends them.
    Both,
}

impl IdentifierForm {
    /// The wire name: `oid`, `tk` or `both`.
    pub fn as_str(self) -> &'static str {
        match self {
            IdentifierForm::Oid => "oid",
            IdentifierForm::Tk => "tk",
            IdentifierForm::Both => "both",
        }
    }
}

/// How one attribute is released (the value under `release.<name>`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRule {
    /// Why the service receives it; mandatory for sensitive attributes.
    #[serde(default)]
    pub purpose: Option<String>,
    /// Release only to users holding one of these role codes (1-6) in a
    /// permitted organisation.
    #[serde(default)]
    pub only_roles: Option<Vec<i64>>,
    /// A custom header name instead of the prefixed default.
    #[serde(default)]
    pub header: Option<String>,
}

/// The `release` object, in the order written; a name written twice is refused.
pub type ReleaseList = UniqueMap<ReleaseRule, ReleaseNames>;

/// The keys of [`ReleaseList`]: attribute names.
pub struct ReleaseNames;

impl Keys for ReleaseNames {
    const EXPECTING: &'static str = "an object of attribute names to release rules";
    fn twice(key: &str) -> String {
        format!("attribute `{key}` is listed twice in release")
    }
}

/// The JSON under `providers.<id>.contract`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContractConfig {
    /// Permitted organisations, or exactly `["*"]`. Required unless
    /// `organisations_from` is `registry`.
    #[serde(default)]
    pub organisations: Vec<String>,
    /// Where the permitted organisations come from: the static list
    /// (default), the management service's registry, or both.
    #[serde(default)]
    pub organisations_from: OrganisationsFrom,
    /// Which school id form the service receives (default `oid`).
    #[serde(default)]
    pub identifier_form: IdentifierForm,
    /// Whether test learner numbers are accepted (default `false`).
    #[serde(default)]
    pub allow_test_learner_id: bool,
    /// Attributes that must be released.
    #[serde(default)]
    pub required: Vec<String>,
    /// Attribute name (canonical, alias or 2019) → rule.
    #[serde(default)]
    pub release: ReleaseList,
    /// Optional header carrying every released claim as base64url JSON.
    #[serde(default)]
    pub payload_header: Option<String>,
    /// Whether the token itself is forwarded upstream (default `false`).
    #[serde(default)]
    pub forward_token: bool,
    /// A gateway-signed token carrying the released claims (issue 13); the
    /// per-provider parts (`aud`, the key) are compiled by the configuration.
    #[serde(default)]
    pub signed_token: Option<SignedTokenConfig>,
    /// Per-controller agreements: education-provider OID → what that
    /// controller allows of `release` (see [`crate::agreement`]).
    #[serde(default)]
    pub agreements: AgreementList,
    /// Controllers without an agreement: `deny` or `contract`; required
    /// with `agreements`.
    #[serde(default)]
    pub default_agreement: Option<DefaultAgreement>,
}

/// Where a contract's permitted organisations come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrganisationsFrom {
    /// Only the contract's `organisations` list.
    #[default]
    Static,
    /// Only the organisations the registry (top-level `registry`) permits.
    Registry,
    /// The static list and the registry's organisations together.
    Both,
}

impl OrganisationsFrom {
    /// The configuration name.
    pub fn as_str(self) -> &'static str {
        match self {
            OrganisationsFrom::Static => "static",
            OrganisationsFrom::Registry => "registry",
            OrganisationsFrom::Both => "both",
        }
    }

    /// Whether the registry supplies organisations.
    pub fn uses_registry(self) -> bool {
        self != OrganisationsFrom::Static
    }
}

/// What compilation needs from the surrounding configuration.
#[derive(Debug, Clone, Copy)]
pub struct CompileContext<'a> {
    /// Prefix of default header names, e.g. `x-mpass-`.
    pub header_prefix: &'a str,
    /// Claim or attribute names the operator adds to the never-releasable
    /// list (any name of a catalogue attribute bans that attribute).
    pub extra_never_release: &'a [String],
}

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denial {
    /// One of the [`reason`] constants.
    pub reason: &'static str,
    /// The canonical attribute name concerned, never its value.
    pub attribute: Option<&'static str>,
}

/// Denial reasons.
pub mod reason {
    /// No role in a permitted organisation.
    pub const ORGANISATION_NOT_PERMITTED: &str = "organisation_not_permitted";
    /// A test learner number and the contract does not allow them.
    pub const TEST_IDENTITY_NOT_ALLOWED: &str = "test_identity_not_allowed";
    /// The learner number is not a learner number.
    pub const INVALID_LEARNER_ID: &str = "invalid_learner_id";
    /// A required attribute has nothing to release.
    pub const MISSING_REQUIRED_ATTRIBUTE: &str = "missing_required_attribute";
}

/// Summary entry in [`Release::withheld`] for claims on a never-releasable list.
pub const WITHHELD_NEVER_RELEASABLE: &str = "never_releasable";
/// Summary entry in [`Release::withheld`] for claims outside the catalogue.
pub const WITHHELD_OTHER: &str = "other";

/// The attributes whose released values the decision record carries for
/// RBAC (see [`Release::rbac_values`]).
const RBAC_ATTRIBUTES: [&str; 2] = [crate::claims::ROLE, "urn:mpass.id:educationProviderInfo"];

/// What the upstream receives for one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Release {
    /// Header name and encoded value, in catalogue order, payload last.
    pub headers: Vec<(String, String)>,
    /// Canonical names of the released attributes.
    pub released: Vec<&'static str>,
    /// Canonical names of attributes present but not released (including
    /// wrongly typed ones), then [`WITHHELD_NEVER_RELEASABLE`] and
    /// [`WITHHELD_OTHER`] as summaries. Protocol claims are not listed.
    pub withheld: Vec<&'static str>,
    /// The stated purpose of each released attribute that has one.
    pub purposes: Vec<(&'static str, Arc<str>)>,
    /// The released claims under their MPASSid claim names, typed as in the
    /// token (booleans, arrays for multi-valued attributes): what the
    /// payload header and the signed token carry. Built only when the
    /// contract has a `payload_header` or a `signed_token`.
    pub claims: Option<Map<String, Value>>,
    /// The released values of role and education-provider attributes, as
    /// the upstream receives them: all the decision metadata may carry for
    /// RBAC (see [`crate::metadata`]). Other attributes' values are not kept.
    pub rbac_values: Vec<(&'static str, Vec<String>)>,
    /// The education providers (controllers) of the user's permitted roles,
    /// each with the role codes held under it (bit `1 << code`; filled only
    /// under agreements): whose users the release speaks of, for the
    /// per-controller `released_attributes` counters. OIDs, no personal value.
    pub controllers: Vec<(String, u8)>,
}

/// A read-only view of one compiled release rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleView<'a> {
    /// The catalogue attribute released.
    pub attribute: &'static Attribute,
    /// The header it is written to.
    pub header: &'a str,
    /// The stated purpose, if any.
    pub purpose: Option<&'a str>,
    /// The permitted role codes; empty means any role.
    pub only_roles: Vec<u8>,
    /// Whether the request is denied when nothing of it can be released.
    pub required: bool,
}

#[derive(Debug, Clone)]
struct Rule {
    attr: &'static Attribute,
    header: String,
    purpose: Option<Arc<str>>,
    /// Bit `1 << code` per permitted role code; 0 means any role.
    role_mask: u8,
}

/// A compiled, checked contract.
#[derive(Debug, Clone)]
pub struct Contract {
    any_organisation: bool,
    organisations: HashSet<String>,
    organisations_from: OrganisationsFrom,
    identifier_form: IdentifierForm,
    allow_test_learner_id: bool,
    required: Vec<&'static Attribute>,
    /// In catalogue order.
    rules: Vec<Rule>,
    payload_header: Option<String>,
    forward_token: bool,
    /// The `signed_token` block as written, and the header it is carried in
    /// (`None` for `authorization`, which is replaced, not owned).
    signed_token: Option<(SignedTokenConfig, Option<String>)>,
    /// `None`: one release for every controller.
    agreements: Option<Agreements>,
    version: String,
}

/// A member path; names with characters beyond `[A-Za-z0-9_]` are quoted so
/// the dots of `urn:mpass.id:role` are not read as path separators.
fn member(parent: &str, name: &str) -> String {
    if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        join(parent, name)
    } else {
        format!("{parent}[{}]", Value::String(name.to_owned()))
    }
}

fn resolve_banned(extra: &[String]) -> (HashSet<usize>, Vec<String>) {
    let mut attrs = HashSet::new();
    let mut names = Vec::new();
    for n in extra {
        match claims::lookup(n) {
            Some((a, _)) => {
                attrs.insert(a.index);
            }
            None => names.push(n.clone()),
        }
    }
    (attrs, names)
}

impl Contract {
    /// Compiles and checks a contract. `path` is the field path of the
    /// contract (e.g. `providers.studeo.contract`), used in every error.
    /// Returns the contract and load-time warnings.
    pub fn compile(
        wire: &ContractConfig,
        path: &str,
        ctx: &CompileContext<'_>,
    ) -> Result<(Contract, Vec<String>), ConfigError> {
        let mut warnings = Vec::new();

        // Organisations.
        let org_path = join(path, "organisations");
        let from = wire.organisations_from;
        match from {
            OrganisationsFrom::Registry if !wire.organisations.is_empty() => {
                return Err(ConfigError::new(
                    org_path,
                    "must be empty with organisations_from \"registry\" (use \"both\" to add a static list)",
                ));
            }
            OrganisationsFrom::Registry => {}
            _ if wire.organisations.is_empty() => {
                return Err(ConfigError::new(
                    org_path,
                    format!(
                        "must list at least one organisation, or \"*\" for every organisation (organisations_from \"{}\")",
                        from.as_str()
                    ),
                ));
            }
            _ => {}
        }
        let any_organisation = wire.organisations.iter().any(|o| o == "*");
        if any_organisation && from.uses_registry() {
            // "*" already permits everyone: the registry could only narrow
            // it, and an operator writing both means something else.
            return Err(ConfigError::new(
                join(path, "organisations_from"),
                "\"*\" permits every organisation: it cannot be combined with the registry",
            ));
        }
        let mut organisations = HashSet::new();
        for (i, o) in wire.organisations.iter().enumerate() {
            let p = index(&org_path, i);
            if o == "*" {
                if wire.organisations.len() > 1 {
                    return Err(ConfigError::new(p, "\"*\" must be the only organisation"));
                }
                continue;
            }
            if !(is_organisation_oid(o) || is_tk_code(o)) {
                return Err(ConfigError::new(
                    p,
                    "must be an OPH organisation OID (1.2.246.562.10.* or 1.2.246.562.99.*), a 5-digit Statistics Finland school code, or \"*\"",
                ));
            }
            if !organisations.insert(o.clone()) {
                warnings.push(format!("{p}: organisation `{o}` is listed twice"));
            }
        }

        // Release rules.
        let (banned_attrs, banned_names) = resolve_banned(ctx.extra_never_release);
        let release_path = join(path, "release");
        let mut rules: Vec<Rule> = Vec::new();
        let mut written_as: HashMap<usize, &str> = HashMap::new();
        let mut headers: HashMap<String, String> = HashMap::new();
        for (name, rule) in &wire.release.entries {
            let p = member(&release_path, name);
            let never = claims::is_never_releasable(name)
                || banned_names.iter().any(|b| b.eq_ignore_ascii_case(name));
            if never {
                return Err(ConfigError::new(
                    p,
                    format!("attribute `{name}` is never releasable ({path})"),
                ));
            }
            let attr = match claims::lookup(name) {
                Some((a, _)) => a,
                None => {
                    return Err(ConfigError::new(
                        p,
                        format!("unknown attribute `{name}` ({path}); use a catalogue name such as `uid`, `role` or `school_info`"),
                    ))
                }
            };
            if banned_attrs.contains(&attr.index) {
                return Err(ConfigError::new(
                    p,
                    format!("attribute `{name}` is never releasable by operator policy ({path})"),
                ));
            }
            if let Some(first) = written_as.insert(attr.index, name) {
                return Err(ConfigError::new(
                    p,
                    format!(
                        "attribute `{name}` is `{}`, already released as `{first}`",
                        attr.name
                    ),
                ));
            }
            let purpose = match &rule.purpose {
                Some(s) if s.trim().is_empty() => {
                    return Err(ConfigError::new(
                        join(&p, "purpose"),
                        "purpose must not be empty",
                    ))
                }
                Some(s) if s.chars().any(char::is_control) => {
                    return Err(ConfigError::new(
                        join(&p, "purpose"),
                        "purpose must not contain control characters",
                    ))
                }
                Some(s) => Some(Arc::<str>::from(s.trim())),
                None if attr.sensitive => {
                    return Err(ConfigError::new(
                        p,
                        format!(
                        "attribute `{name}` is sensitive and needs a non-empty purpose ({path})"
                    ),
                    ))
                }
                None => None,
            };
            let mut role_mask = 0u8;
            if let Some(codes) = &rule.only_roles {
                let rp = join(&p, "only_roles");
                if codes.is_empty() {
                    return Err(ConfigError::new(
                        rp,
                        "must list at least one role code 1-6 (omit it to allow every role)",
                    ));
                }
                for (i, c) in codes.iter().enumerate() {
                    match u8::try_from(*c) {
                        Ok(c @ 1..=6) => role_mask |= 1 << c,
                        _ => {
                            return Err(ConfigError::new(
                                index(&rp, i),
                                format!("role code {c} is not one of 1-6"),
                            ))
                        }
                    }
                }
            }
            let (header, hp) = match &rule.header {
                Some(h) => (h.clone(), join(&p, "header")),
                None => (
                    format!("{}{}", ctx.header_prefix, attr.header_suffix),
                    p.clone(),
                ),
            };
            check_header_name(&header).map_err(|m| ConfigError::new(hp.clone(), m))?;
            if let Some(other) = headers.insert(header.clone(), hp.clone()) {
                return Err(ConfigError::new(
                    hp,
                    format!("header `{header}` is already used by {other}"),
                ));
            }
            rules.push(Rule {
                attr,
                header,
                purpose,
                role_mask,
            });
        }
        rules.sort_by_key(|r| r.attr.index);

        if let Some(h) = &wire.payload_header {
            let hp = join(path, "payload_header");
            check_header_name(h).map_err(|m| ConfigError::new(hp.clone(), m))?;
            if let Some(other) = headers.insert(h.clone(), hp.clone()) {
                return Err(ConfigError::new(
                    hp,
                    format!("header `{h}` is already used by {other}"),
                ));
            }
        }

        let signed_token = match &wire.signed_token {
            None => None,
            Some(st) => {
                let hp = join(&join(path, "signed_token"), "header");
                let name = st.header.as_deref().unwrap_or(DEFAULT_HEADER);
                if name.eq_ignore_ascii_case("authorization") {
                    if wire.forward_token {
                        return Err(ConfigError::new(
                            hp,
                            "the signed token cannot replace `authorization` while forward_token is true (the forwarded token would be overwritten)",
                        ));
                    }
                    Some((st.clone(), None))
                } else {
                    check_header_name(name).map_err(|m| ConfigError::new(hp.clone(), m))?;
                    if let Some(other) = headers.insert(name.to_owned(), hp.clone()) {
                        return Err(ConfigError::new(
                            hp,
                            format!("header `{name}` is already used by {other}"),
                        ));
                    }
                    Some((st.clone(), Some(name.to_owned())))
                }
            }
        };

        // Required attributes.
        let req_path = join(path, "required");
        let mut required: Vec<&'static Attribute> = Vec::new();
        for (i, name) in wire.required.iter().enumerate() {
            let p = index(&req_path, i);
            let Some((attr, _)) = claims::lookup(name) else {
                return Err(ConfigError::new(
                    p,
                    format!("unknown attribute `{name}` ({path})"),
                ));
            };
            let Some(rule) = rules.iter().find(|r| r.attr.index == attr.index) else {
                return Err(ConfigError::new(
                    p,
                    format!("required attribute `{name}` is not in release ({path})"),
                ));
            };
            if rule.role_mask != 0 {
                // A role-conditional attribute is withheld, never denied;
                // requiring it would silently turn it into an access rule.
                return Err(ConfigError::new(
                    p,
                    format!("required attribute `{name}` cannot have only_roles"),
                ));
            }
            if required.iter().any(|a| a.index == attr.index) {
                return Err(ConfigError::new(
                    p,
                    format!("attribute `{name}` is required twice"),
                ));
            }
            required.push(attr);
        }

        // E-mail is the channel for direct marketing to minors: releasing it
        // to learners is allowed, but never silently.
        if let Some(rule) = rules.iter().find(|r| r.attr.name == "email") {
            if rule.role_mask == 0 || rule.role_mask & (1 << role_code::LEARNER) != 0 {
                let written = written_as.get(&rule.attr.index).copied().unwrap_or("email");
                warnings.push(format!(
                    "{}: email is released to learners too; list only staff role codes (2-6) in only_roles unless the purpose needs pupils' addresses",
                    member(&release_path, written)
                ));
            }
        }

        // A 2019 school code is a TK code: under `oid` it can never be sent.
        if wire.identifier_form == IdentifierForm::Oid {
            if let Some(rule) = rules
                .iter()
                .find(|r| r.attr.index == SCHOOL_CODE_ATTRIBUTE.index)
            {
                let written = written_as
                    .get(&rule.attr.index)
                    .copied()
                    .unwrap_or("school_code");
                warnings.push(format!(
                    "{}: the 2019 school code is a TK code and identifier_form is \"oid\": it is never released; set identifier_form to \"tk\" or \"both\"",
                    member(&release_path, written)
                ));
            }
        }

        if wire.forward_token {
            let missing = CATALOGUE.len() - rules.len();
            warnings.push(format!(
                "{}: forward_token is true: the token is wider than the contract (it carries whatever MPASSid sent, including claims no contract may release; this contract does not release {missing} catalogue attributes)",
                join(path, "forward_token")
            ));
        }

        let limits: Vec<(usize, u8)> = rules.iter().map(|r| (r.attr.index, r.role_mask)).collect();
        let agreements = Agreements::compile(
            &wire.agreements,
            wire.default_agreement,
            &ContractLimits {
                released: &limits,
                allow_test_learner_id: wire.allow_test_learner_id,
            },
            path,
        )?;
        if let Some(a) = &agreements {
            // With the registry, the organisations are known only at run time.
            if !any_organisation && from == OrganisationsFrom::Static {
                for (oid, _) in a.iter() {
                    if !organisations.contains(oid) {
                        warnings.push(format!(
                            "{}: agreement for `{oid}`, which the contract's organisations do not list: it applies only to roles of that provider permitted through one of its schools",
                            join(path, "agreements")
                        ));
                    }
                }
            }
        }
        let mut contract = Contract {
            any_organisation,
            organisations,
            organisations_from: from,
            identifier_form: wire.identifier_form,
            allow_test_learner_id: wire.allow_test_learner_id,
            required,
            rules,
            payload_header: wire.payload_header.clone(),
            forward_token: wire.forward_token,
            signed_token,
            agreements,
            version: String::new(),
        };
        contract.version = contract.compute_version();
        Ok((contract, warnings))
    }

    /// Canonical serialisation: arrays only (never maps, whose order could
    /// depend on serde_json features), organisations sorted, rules in
    /// catalogue order, names canonical. Hashed with SHA-256.
    fn compute_version(&self) -> String {
        let mut orgs: Vec<&str> = self.organisations.iter().map(String::as_str).collect();
        orgs.sort_unstable();
        let rules: Vec<Value> = self
            .rules
            .iter()
            .map(|r| {
                let codes: Vec<u8> = (1..=6).filter(|c| r.role_mask & (1 << c) != 0).collect();
                serde_json::json!([r.attr.name, r.header, r.purpose.as_deref(), codes])
            })
            .collect();
        let required: Vec<&str> = self.required.iter().map(|a| a.name).collect();
        let mut canonical = serde_json::json!([
            "mpass-guard-contract/1",
            self.any_organisation,
            orgs,
            self.identifier_form.as_str(),
            self.allow_test_learner_id,
            required,
            rules,
            self.payload_header,
            self.forward_token,
        ]);
        // Appended only when present, so contracts without a signed token
        // keep the versions they had.
        if let (Some((st, _)), Value::Array(parts)) = (&self.signed_token, &mut canonical) {
            parts.push(serde_json::json!([
                "signed_token",
                st.header
                    .as_deref()
                    .unwrap_or(DEFAULT_HEADER)
                    .to_ascii_lowercase(),
                st.sub.as_deref().unwrap_or("pairwise"),
                st.lifetime.as_deref(),
            ]));
        }
        // Appended only when present: contracts without agreements keep
        // the version they had.
        if let (Some(a), Value::Array(items)) = (&self.agreements, &mut canonical) {
            items.push(a.canonical());
        }
        // Appended only for registry-backed contracts: static ones keep
        // their versions. The organisations above are then the effective
        // ones (static and registry), so a new registry snapshot that
        // changes them changes the version too.
        if let (true, Value::Array(items)) =
            (self.organisations_from.uses_registry(), &mut canonical)
        {
            items.push(serde_json::json!([
                "organisations_from",
                self.organisations_from.as_str()
            ]));
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, canonical.to_string().as_bytes());
        digest
            .as_ref()
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Every header this contract can emit, so the sanitiser can remove
    /// them from the client's request first.
    pub fn header_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.rules
            .iter()
            .map(|r| r.header.as_str())
            .chain(self.payload_header.as_deref())
            .chain(self.signed_token.iter().filter_map(|(_, h)| h.as_deref()))
    }

    /// The `signed_token` block as written, if the contract has one.
    pub fn signed_token(&self) -> Option<&SignedTokenConfig> {
        self.signed_token.as_ref().map(|(st, _)| st)
    }

    /// The contract version: the first 16 hex digits of a SHA-256 over its
    /// canonical form, for the audit log.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Whether the token itself is forwarded upstream.
    pub fn forwards_token(&self) -> bool {
        self.forward_token
    }

    /// The permitted organisations, sorted; `None` when every organisation
    /// is permitted (`["*"]`).
    pub fn organisations(&self) -> Option<Vec<&str>> {
        if self.any_organisation {
            return None;
        }
        let mut orgs: Vec<&str> = self.organisations.iter().map(String::as_str).collect();
        orgs.sort_unstable();
        Some(orgs)
    }

    /// Where the permitted organisations come from.
    pub fn organisations_from(&self) -> OrganisationsFrom {
        self.organisations_from
    }

    /// The contract as enforced under a registry snapshot: the permitted
    /// organisations are the registry's (`registry`) or the static list and
    /// the registry's (`both`); test learner numbers are accepted only when
    /// both the contract and the registry allow them (the stricter wins:
    /// the registry records what the controller permits, the contract what
    /// the operator agreed, and neither may widen the other). A static
    /// contract is returned unchanged.
    pub fn under_registry(
        &self,
        organisations: &BTreeSet<String>,
        allow_test_learner_id: bool,
    ) -> Contract {
        let mut c = self.clone();
        if !self.organisations_from.uses_registry() {
            return c;
        }
        if self.organisations_from == OrganisationsFrom::Registry {
            c.organisations.clear();
        }
        c.organisations.extend(organisations.iter().cloned());
        c.allow_test_learner_id = self.allow_test_learner_id && allow_test_learner_id;
        c.version = c.compute_version();
        c
    }

    /// Which school id form the service receives.
    pub fn identifier_form(&self) -> IdentifierForm {
        self.identifier_form
    }

    /// Whether test learner numbers are accepted.
    pub fn allows_test_learner_id(&self) -> bool {
        self.allow_test_learner_id
    }

    /// The header carrying every released claim as base64url JSON, if any.
    pub fn payload_header(&self) -> Option<&str> {
        self.payload_header.as_deref()
    }

    /// The per-controller agreements, if the contract has any.
    pub fn agreements(&self) -> Option<&Agreements> {
        self.agreements.as_ref()
    }

    /// The release rules in catalogue order, for `explain` and documentation.
    pub fn rules(&self) -> impl Iterator<Item = RuleView<'_>> + '_ {
        self.rules.iter().map(|r| RuleView {
            attribute: r.attr,
            header: &r.header,
            purpose: r.purpose.as_deref(),
            only_roles: (1..=6).filter(|c| r.role_mask & (1 << c) != 0).collect(),
            required: self.required.iter().any(|a| a.index == r.attr.index),
        })
    }

    /// Decides what the upstream receives for these (verified) claims.
    pub fn apply(&self, claims: &Map<String, Value>) -> Result<Release, Denial> {
        self.apply_normalised(&normalise(claims))
    }

    /// [`Contract::apply`] for claims already normalised.
    pub fn apply_normalised(&self, n: &Normalised<'_>) -> Result<Release, Denial> {
        self.check_learner_id(n)?;
        let scope = self.organisation_scope(n)?;
        self.check_agreed_learner_id(n, &scope)?;

        // Sized once: a header and a name per rule (the payload header
        // last), instead of growing by doubling.
        let mut release = Release {
            headers: Vec::with_capacity(self.rules.len() + 1),
            released: Vec::with_capacity(self.rules.len()),
            ..Release::default()
        };
        if self.agreements.is_some() {
            release.controllers = scope
                .controllers
                .iter()
                .map(|(c, held)| ((*c).to_owned(), *held))
                .collect();
        } else {
            for c in &scope.providers {
                if !release.controllers.iter().any(|(x, _)| x == c) {
                    release.controllers.push(((*c).to_owned(), 0));
                }
            }
        }
        let wants_claims = self.payload_header.is_some() || self.signed_token.is_some();
        let mut payload = Map::new();
        for rule in &self.rules {
            let Some(values) = n.get(rule.attr) else {
                continue;
            };
            if rule.role_mask != 0 && rule.role_mask & scope.held == 0 {
                continue;
            }
            let mut kept = self.filter(rule.attr, values, &scope);
            // An empty value says nothing; an empty header would read as "present".
            kept.retain(|v| !v.is_empty());
            let Some(first) = kept.first() else { continue };
            let value = if rule.attr.multi {
                render::encode_multi(&kept)
            } else {
                render::encode_single(first)
            };
            if wants_claims {
                let v = match (rule.attr.value_type, rule.attr.multi) {
                    (ValueType::Bool, _) => Value::Bool(first == "true"),
                    (ValueType::Text, true) => Value::Array(
                        kept.iter()
                            .map(|v| Value::String(v.as_ref().to_owned()))
                            .collect(),
                    ),
                    (ValueType::Text, false) => Value::String(first.as_ref().to_owned()),
                };
                payload.insert(rule.attr.name.to_owned(), v);
            }
            release.headers.push((rule.header.clone(), value));
            release.released.push(rule.attr.name);
            if RBAC_ATTRIBUTES.contains(&rule.attr.name) {
                let owned = kept.into_iter().map(Cow::into_owned).collect();
                release.rbac_values.push((rule.attr.name, owned));
            }
            if let Some(p) = self
                .agreed_purpose(rule.attr, &scope)
                .or(rule.purpose.as_ref())
            {
                release.purposes.push((rule.attr.name, Arc::clone(p)));
            }
        }

        // `email_verified` says something about an address: where the
        // contract releases the address but withholds it for this user (a
        // learner under a staff-only rule), the flag is withheld with it.
        if release.released.contains(&"email_verified")
            && !release.released.contains(&"email")
            && self.rules.iter().any(|r| r.attr.name == "email")
        {
            if let Some(i) = release.released.iter().position(|a| *a == "email_verified") {
                release.released.remove(i);
                if let Some(h) = release.headers.get(i) {
                    let name = h.0.clone();
                    release.headers.retain(|(n, _)| *n != name);
                }
                release.purposes.retain(|(a, _)| *a != "email_verified");
                payload.remove("email_verified");
            }
        }

        for attr in &self.required {
            if !release.released.contains(&attr.name) {
                return Err(Denial {
                    reason: reason::MISSING_REQUIRED_ATTRIBUTE,
                    attribute: Some(attr.name),
                });
            }
        }

        if let Some(h) = &self.payload_header {
            release
                .headers
                .push((h.clone(), render::encode_payload(&payload)));
        }
        if wants_claims {
            release.claims = Some(payload);
        }
        for attr in n.present() {
            if !release.released.contains(&attr.name) {
                release.withheld.push(attr.name);
            }
        }
        release.withheld.extend(n.invalid.iter().copied());
        if n.never_releasable > 0 {
            release.withheld.push(WITHHELD_NEVER_RELEASABLE);
        }
        if n.other > 0 {
            release.withheld.push(WITHHELD_OTHER);
        }
        Ok(release)
    }

    fn check_learner_id(&self, n: &Normalised<'_>) -> Result<(), Denial> {
        let deny = |reason| {
            Err(Denial {
                reason,
                attribute: Some(LEARNER_ID_ATTRIBUTE.name),
            })
        };
        // A learner number of the wrong JSON type is as malformed as a bad string.
        if n.invalid.contains(&LEARNER_ID_ATTRIBUTE.name) {
            return deny(reason::INVALID_LEARNER_ID);
        }
        let Some(id) = n.get(LEARNER_ID_ATTRIBUTE).and_then(|v| v.first().copied()) else {
            return Ok(());
        };
        match classify_learner_id(id) {
            LearnerIdKind::Real => Ok(()),
            LearnerIdKind::Test if self.allow_test_learner_id => Ok(()),
            LearnerIdKind::Test => deny(reason::TEST_IDENTITY_NOT_ALLOWED),
            LearnerIdKind::Malformed => deny(reason::INVALID_LEARNER_ID),
        }
    }

    /// Whether the agreements let this value of `attr` through. Without
    /// agreements, always.
    fn agreed_value(&self, attr: &Attribute, scope: &Scope<'_>, owner: ValueOwner<'_>) -> bool {
        let Some(agreements) = &self.agreements else {
            return true;
        };
        let decide = |controller: &str| {
            let held = scope
                .controllers
                .iter()
                .find(|(c, _)| *c == controller)
                .map_or(0, |(_, h)| *h);
            agreements
                .for_controller(controller)
                .is_some_and(|a| a.releases(attr, held))
        };
        let every = || {
            if scope.controllers.is_empty() {
                // Reached only under `default_agreement: contract`.
                agreements.default() == DefaultAgreement::Contract
            } else {
                scope.controllers.iter().all(|(c, _)| decide(c))
            }
        };
        match owner {
            ValueOwner::Person => every(),
            ValueOwner::Controller(c) if scope.controllers.iter().any(|(k, _)| *k == c) => {
                decide(c)
            }
            // A provider the user holds no permitted role under: nobody
            // narrower than every controller can speak for it.
            ValueOwner::Controller(_) => every(),
            ValueOwner::School(id) => {
                let mut owners = scope
                    .school_controllers
                    .iter()
                    .filter(|(s, _)| *s == id)
                    .peekable();
                if owners.peek().is_none() {
                    every()
                } else {
                    owners.all(|(_, c)| decide(c))
                }
            }
        }
    }

    /// A test learner number needs every controller's consent too.
    fn check_agreed_learner_id(&self, n: &Normalised<'_>, scope: &Scope<'_>) -> Result<(), Denial> {
        let Some(agreements) = &self.agreements else {
            return Ok(());
        };
        let Some(id) = n.get(LEARNER_ID_ATTRIBUTE).and_then(|v| v.first().copied()) else {
            return Ok(());
        };
        if classify_learner_id(id) != LearnerIdKind::Test {
            return Ok(());
        }
        let allowed = scope.controllers.iter().all(|(c, _)| {
            agreements
                .for_controller(c)
                .is_some_and(|a| a.allows_test_learner_id())
        });
        if allowed {
            Ok(())
        } else {
            Err(Denial {
                reason: reason::TEST_IDENTITY_NOT_ALLOWED,
                attribute: Some(LEARNER_ID_ATTRIBUTE.name),
            })
        }
    }

    /// The purpose recorded for a released attribute: the one controller's
    /// own, when the request has exactly one controller that stated one.
    fn agreed_purpose<'s>(&'s self, attr: &Attribute, scope: &Scope<'_>) -> Option<&'s Arc<str>> {
        let agreements = self.agreements.as_ref()?;
        match scope.controllers.as_slice() {
            [(c, _)] => agreements.for_controller(c)?.purpose(attr),
            _ => None,
        }
    }

    fn listed(&self, id: &str) -> bool {
        !id.is_empty() && self.organisations.contains(id)
    }

    fn organisation_scope<'n>(&self, n: &Normalised<'n>) -> Result<Scope<'n>, Denial> {
        let mut scope = Scope {
            all_roles_permitted: true,
            ..Scope::default()
        };
        for &s in n.get(ROLE_ATTRIBUTE).unwrap_or_default() {
            let permitted = parse_role(s).filter(|r| {
                (self.any_organisation
                    || self.listed(r.provider)
                    || self.listed(r.school_tk)
                    || self.listed(r.school_oid))
                    // A controller without an agreement under `deny`.
                    && self
                        .agreements
                        .as_ref()
                        .is_none_or(|a| a.for_controller(r.provider).is_some())
            });
            match permitted {
                Some(r) => {
                    if let Some(c) = r.code {
                        scope.held |= 1 << c;
                    }
                    if self.agreements.is_some() {
                        let bit = r.code.map_or(0, |c| 1u8 << c);
                        match scope.controllers.iter_mut().find(|(c, _)| *c == r.provider) {
                            Some((_, held)) => *held |= bit,
                            None => scope.controllers.push((r.provider, bit)),
                        }
                        for school in [r.school_tk, r.school_oid] {
                            if !school.is_empty() {
                                scope.school_controllers.push((school, r.provider));
                            }
                        }
                    }
                    scope.providers.push(r.provider);
                    scope.schools.push(r.school_tk);
                    scope.schools.push(r.school_oid);
                    scope.roles.push(s);
                }
                None => scope.all_roles_permitted = false,
            }
        }
        if !self.any_organisation && scope.roles.is_empty() {
            return Err(Denial {
                reason: reason::ORGANISATION_NOT_PERMITTED,
                attribute: None,
            });
        }
        // No controller could be identified (no role): only an explicit
        // `default_agreement: contract` lets the request through.
        if let Some(a) = &self.agreements {
            if scope.controllers.is_empty() && a.default() == DefaultAgreement::Deny {
                return Err(Denial {
                    reason: reason::ORGANISATION_NOT_PERMITTED,
                    attribute: None,
                });
            }
        }
        scope.schools.retain(|s| !s.is_empty());
        scope.providers.retain(|s| !s.is_empty());
        // A 2019 school code outside the contract makes the other 2019
        // organisation attributes unattributable too.
        if let Some(code) = n
            .get(SCHOOL_CODE_ATTRIBUTE)
            .and_then(|v| v.first().copied())
        {
            if !self.school_permitted(code, &scope) {
                scope.all_roles_permitted = false;
            }
        }
        Ok(scope)
    }

    fn school_permitted(&self, id: &str, scope: &Scope<'_>) -> bool {
        self.any_organisation || self.listed(id) || scope.schools.contains(&id)
    }

    fn provider_permitted(&self, id: &str, scope: &Scope<'_>) -> bool {
        self.any_organisation || self.listed(id) || scope.providers.contains(&id)
    }

    /// Whether a school id has a form this contract sends.
    fn form_kept(&self, id: &str) -> bool {
        match self.identifier_form {
            IdentifierForm::Both => is_tk_code(id) || is_oid(id),
            IdentifierForm::Oid => is_oid(id),
            IdentifierForm::Tk => is_tk_code(id),
        }
    }

    /// The values of `attr` this contract lets through, borrowed from the
    /// claims where they pass unchanged (all but role strings whose school
    /// id field is blanked).
    fn filter<'n>(
        &self,
        attr: &Attribute,
        values: &[&'n str],
        scope: &Scope<'n>,
    ) -> Vec<Cow<'n, str>> {
        let kept = |v: &&'n str| Cow::Borrowed(*v);
        match attr.scope {
            _ if is_person_scoped(attr) && !self.agreed_value(attr, scope, ValueOwner::Person) => {
                Vec::new()
            }
            OrgScope::Person => values.iter().map(kept).collect(),
            OrgScope::Role => scope
                .roles
                .iter()
                .filter(|s| {
                    let provider = parse_role(s).map_or("", |r| r.provider);
                    self.agreed_value(attr, scope, ValueOwner::Controller(provider))
                })
                .map(|s| self.role_in_form(s))
                .collect(),
            OrgScope::SchoolInfo => values
                .iter()
                .filter(|v| {
                    v.split_once(';').is_some_and(|(id, _)| {
                        self.form_kept(id)
                            && self.school_permitted(id, scope)
                            && self.agreed_value(attr, scope, ValueOwner::School(id))
                    })
                })
                .map(kept)
                .collect(),
            OrgScope::Charge => values
                .iter()
                .filter(|v| {
                    v.split_once(';').is_some_and(|(flag, id)| {
                        (flag == "0" || flag == "1")
                            && self.form_kept(id)
                            && self.school_permitted(id, scope)
                            && self.agreed_value(attr, scope, ValueOwner::School(id))
                    })
                })
                .map(kept)
                .collect(),
            OrgScope::ProviderInfo => values
                .iter()
                .filter(|v| {
                    v.split_once(';').is_some_and(|(id, _)| {
                        is_oid(id)
                            && self.provider_permitted(id, scope)
                            && self.agreed_value(attr, scope, ValueOwner::Controller(id))
                    })
                })
                .map(kept)
                .collect(),
            OrgScope::Issuer => values
                .iter()
                .filter(|id| {
                    is_oid(id)
                        && (self.provider_permitted(id, scope) || self.school_permitted(id, scope))
                })
                .map(kept)
                .collect(),
            OrgScope::LegacySchoolCode => values
                .iter()
                .filter(|id| {
                    is_tk_code(id)
                        && self.identifier_form != IdentifierForm::Oid
                        && self.school_permitted(id, scope)
                })
                .map(kept)
                .collect(),
            OrgScope::LegacyOrganisation if scope.all_roles_permitted => {
                values.iter().map(kept).collect()
            }
            OrgScope::LegacyOrganisation => Vec::new(),
        }
    }

    /// Blanks the school id field the service does not receive. Splitting
    /// and re-joining on `;` keeps every other field byte for byte.
    fn role_in_form<'n>(&self, role: &'n str) -> Cow<'n, str> {
        let blank = match self.identifier_form {
            IdentifierForm::Both => None,
            IdentifierForm::Oid => Some(1),
            IdentifierForm::Tk if role.split(';').count() == 7 => Some(5),
            IdentifierForm::Tk => None,
        };
        match blank {
            None => Cow::Borrowed(role),
            Some(b) => {
                let mut out = String::with_capacity(role.len());
                for (i, f) in role.split(';').enumerate() {
                    if i > 0 {
                        out.push(';');
                    }
                    if i != b {
                        out.push_str(f);
                    }
                }
                Cow::Owned(out)
            }
        }
    }
}

/// Per-request organisation facts derived from the permitted roles.
#[derive(Debug, Default)]
struct Scope<'n> {
    /// Role strings in permitted organisations.
    roles: Vec<&'n str>,
    /// Bit `1 << code` per role code held in a permitted organisation.
    held: u8,
    /// School ids (TK and OID) of permitted roles.
    schools: Vec<&'n str>,
    /// Provider ids of permitted roles.
    providers: Vec<&'n str>,
    /// Whether every role in the token (and the 2019 school code) is permitted.
    all_roles_permitted: bool,
    /// With agreements: each controller of a permitted role and the role
    /// codes held under it.
    controllers: Vec<(&'n str, u8)>,
    /// With agreements: school id (TK or OID) and the controller of a
    /// permitted role held in it.
    school_controllers: Vec<(&'n str, &'n str)>,
}

/// Whose agreement decides a value.
#[derive(Debug, Clone, Copy)]
enum ValueOwner<'v> {
    /// Single-valued or unattributable: every controller of the request.
    Person,
    /// A value of this education provider.
    Controller(&'v str),
    /// A value of this school: the controllers of the roles held in it.
    School(&'v str),
}

/// Attributes released under every controller's agreement at once: those
/// not filtered value by value.
fn is_person_scoped(attr: &Attribute) -> bool {
    matches!(
        attr.scope,
        OrgScope::Person
            | OrgScope::Issuer
            | OrgScope::LegacySchoolCode
            | OrgScope::LegacyOrganisation
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_are_checked() {
        assert!(check_header_name("x-mpass-uid").is_ok());
        for bad in [
            "",
            ":path",
            "X-Upper",
            "a b",
            "a\r\nb",
            "cookie",
            "host",
            "x-envoy-original-path",
            "x-forwarded-for",
            "te",
        ] {
            assert!(check_header_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn member_paths_quote_dotted_names() {
        assert_eq!(member("r", "uid"), "r.uid");
        assert_eq!(member("r", "urn:mpass.id:role"), "r[\"urn:mpass.id:role\"]");
    }
}
