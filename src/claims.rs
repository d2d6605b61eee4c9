//! The MPASSid claim model: the attribute catalogue, the names a token or a
//! contract may use for each attribute, the claims that must never reach a
//! service, and the parsers for the structured values (role strings, learner
//! numbers, organisation ids).
//!
//! This module knows what the claims *mean*; it never decides what a service
//! may receive (that is [`crate::contract`]).
//!
//! # Catalogue
//!
//! A contract may name an attribute by its canonical claim name, its alias or
//! its 2019 name. Tokens are read by canonical and 2019 names only (aliases
//! are a configuration convenience, MPASSid never emits them). Header names
//! are the configured prefix (normally `x-mpass-`) plus the suffix below.
//!
//! | canonical claim name | alias | 2019 name | header suffix | values | sensitive |
//! |---|---|---|---|---|---|
//! | `sub` | `sub` | | `sub` | single | |
//! | `given_name` | `given_name` | | `given-name` | single | |
//! | `family_name` | `family_name` | | `family-name` | single | |
//! | `urn:mpass.id:nickname` | `nickname` | | `nickname` | single | |
//! | `urn:mpass.id:uid` | `uid` | `mpass_uid` | `uid` | single | |
//! | `urn:oid:1.3.6.1.4.1.16161.1.1.27` | `learner_id` | `learnerId` | `learner-id` | single | yes |
//! | `urn:mpass.id:schoolInfo` | `school_info` | | `school-info` | multi | |
//! | `urn:mpass.id:classLevel` | `class_level` | | `class-level` | single | yes |
//! | `urn:mpass.id:learningMaterialsCharge` | `learning_materials_charge` | | `learning-materials-charge` | multi | yes |
//! | `urn:mpass.id:role` | `role` | `mpass_role` | `role` | multi | |
//! | `urn:mpass.id:educationProviderInfo` | `education_provider_info` | | `education-provider-info` | multi | |
//! | `urn:mpass.id:originalIssuer` | `original_issuer` | | `original-issuer` | single | |
//! | `email` | `email` | | `email` | single | yes |
//! | `email_verified` | `email_verified` | | `email-verified` | single (boolean) | |
//! | `urn:mpass.id:class` | `group` | `mpass_class` | `group` | single, 2019 only | |
//! | `urn:mpass.id:school` | `school` | `mpass_school` | `school` | single, 2019 only | |
//! | `urn:mpass.id:schoolCode` | `school_code` | `mpass_schoolCode` | `school-code` | single, 2019 only | |
//! | `urn:mpass.id:municipality` | `municipality` | `mpass_municipality` | `municipality` | single, 2019 only | |
//! | `urn:mpass.id:municipalityCode` | `municipality_code` | `mpass_municipalitycode` | `municipality-code` | single, 2019 only | |
//!
//! *Sensitive* attributes may only be released under a stated purpose: the
//! learner number links a person across every service, `classLevel` is an age
//! proxy, `learningMaterialsCharge` is economic data, and e-mail is the
//! channel for direct marketing to minors.
//!
//! # Never releasable
//!
//! [`NEVER_RELEASABLE`] lists claim names no contract may name, compared
//! ASCII-case-insensitively: the hashes of the national identity number
//! (`legacyCryptId`/`legacyCryptIde` under every name they have had), the
//! national identity number itself (`hetu`, OID `1.2.246.21`, common claim
//! spellings), and anything carrying a birth date, a birth year or an age
//! (OIDC `birthdate`, PKIX and SCHAC date-of-birth attributes, `age`). None of
//! these is in the catalogue, so a release can never carry them by
//! construction; the list exists so that naming one in a contract is a loud
//! configuration error rather than "unknown attribute". Operators may extend
//! the list; they cannot shrink it.

use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::OnceLock;

/// How the values of an attribute are typed in a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    /// A JSON string.
    Text,
    /// A JSON boolean (or the strings `"true"` / `"false"`), normalised to
    /// the text `true` / `false`.
    Bool,
}

/// Which organisation an attribute's values belong to, so that a contract can
/// filter them value by value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrgScope {
    /// Describes the person, not an organisation.
    Person,
    /// Role strings: each names a provider and a school.
    Role,
    /// `<school id>;<name>`.
    SchoolInfo,
    /// `<0|1>;<school id>`.
    Charge,
    /// `<provider OID>;<name>`.
    ProviderInfo,
    /// The whole value is an organisation OID.
    Issuer,
    /// A 2019 school code (TK).
    LegacySchoolCode,
    /// A 2019 attribute describing the user's single organisation (school
    /// name, group, municipality).
    LegacyOrganisation,
}

/// One attribute of the MPASSid data model.
#[derive(Debug, PartialEq, Eq)]
pub struct Attribute {
    /// Position in [`CATALOGUE`].
    pub index: usize,
    /// The canonical claim name (data model 1.4 or OIDC standard).
    pub name: &'static str,
    /// The short name a contract may use.
    pub alias: &'static str,
    /// The 2019 OIDC claim names that mean this attribute.
    pub legacy: &'static [&'static str],
    /// The default header name after the configured prefix.
    pub header_suffix: &'static str,
    /// Whether the attribute carries several values.
    pub multi: bool,
    /// Whether a contract must state a purpose to release it.
    pub sensitive: bool,
    /// How values are typed in the token.
    pub value_type: ValueType,
    /// Which organisation the values belong to.
    pub scope: OrgScope,
}

// A positional constructor keeps the catalogue table compact; the fields
// are named in the doc table above.
#[allow(clippy::too_many_arguments)]
const fn attr(
    index: usize,
    name: &'static str,
    alias: &'static str,
    legacy: &'static [&'static str],
    header_suffix: &'static str,
    multi: bool,
    sensitive: bool,
    scope: OrgScope,
) -> Attribute {
    Attribute {
        index,
        name,
        alias,
        legacy,
        header_suffix,
        multi,
        sensitive,
        value_type: ValueType::Text,
        scope,
    }
}

/// Canonical name of the national learner number (oppijanumero).
pub const LEARNER_ID: &str = "urn:oid:1.3.6.1.4.1.16161.1.1.27";
/// Canonical name of the role attribute.
pub const ROLE: &str = "urn:mpass.id:role";

/// Every attribute mpass-guard can release, in a fixed order (the order of
/// headers and of the payload).
pub static CATALOGUE: [Attribute; 19] = [
    attr(0, "sub", "sub", &[], "sub", false, false, OrgScope::Person),
    attr(
        1,
        "given_name",
        "given_name",
        &[],
        "given-name",
        false,
        false,
        OrgScope::Person,
    ),
    attr(
        2,
        "family_name",
        "family_name",
        &[],
        "family-name",
        false,
        false,
        OrgScope::Person,
    ),
    attr(
        3,
        "urn:mpass.id:nickname",
        "nickname",
        &[],
        "nickname",
        false,
        false,
        OrgScope::Person,
    ),
    attr(
        4,
        "urn:mpass.id:uid",
        "uid",
        &["mpass_uid"],
        "uid",
        false,
        false,
        OrgScope::Person,
    ),
    attr(
        5,
        LEARNER_ID,
        "learner_id",
        &["learnerId"],
        "learner-id",
        false,
        true,
        OrgScope::Person,
    ),
    attr(
        6,
        "urn:mpass.id:schoolInfo",
        "school_info",
        &[],
        "school-info",
        true,
        false,
        OrgScope::SchoolInfo,
    ),
    attr(
        7,
        "urn:mpass.id:classLevel",
        "class_level",
        &[],
        "class-level",
        false,
        true,
        OrgScope::Person,
    ),
    attr(
        8,
        "urn:mpass.id:learningMaterialsCharge",
        "learning_materials_charge",
        &[],
        "learning-materials-charge",
        true,
        true,
        OrgScope::Charge,
    ),
    attr(
        9,
        ROLE,
        "role",
        &["mpass_role"],
        "role",
        true,
        false,
        OrgScope::Role,
    ),
    attr(
        10,
        "urn:mpass.id:educationProviderInfo",
        "education_provider_info",
        &[],
        "education-provider-info",
        true,
        false,
        OrgScope::ProviderInfo,
    ),
    attr(
        11,
        "urn:mpass.id:originalIssuer",
        "original_issuer",
        &[],
        "original-issuer",
        false,
        false,
        OrgScope::Issuer,
    ),
    attr(
        12,
        "email",
        "email",
        &[],
        "email",
        false,
        true,
        OrgScope::Person,
    ),
    Attribute {
        index: 13,
        name: "email_verified",
        alias: "email_verified",
        legacy: &[],
        header_suffix: "email-verified",
        multi: false,
        sensitive: false,
        value_type: ValueType::Bool,
        scope: OrgScope::Person,
    },
    attr(
        14,
        "urn:mpass.id:class",
        "group",
        &["mpass_class"],
        "group",
        false,
        false,
        OrgScope::LegacyOrganisation,
    ),
    attr(
        15,
        "urn:mpass.id:school",
        "school",
        &["mpass_school"],
        "school",
        false,
        false,
        OrgScope::LegacyOrganisation,
    ),
    attr(
        16,
        "urn:mpass.id:schoolCode",
        "school_code",
        &["mpass_schoolCode"],
        "school-code",
        false,
        false,
        OrgScope::LegacySchoolCode,
    ),
    attr(
        17,
        "urn:mpass.id:municipality",
        "municipality",
        &["mpass_municipality"],
        "municipality",
        false,
        false,
        OrgScope::LegacyOrganisation,
    ),
    attr(
        18,
        "urn:mpass.id:municipalityCode",
        "municipality_code",
        &["mpass_municipalitycode"],
        "municipality-code",
        false,
        false,
        OrgScope::LegacyOrganisation,
    ),
];

/// Claim names that no contract may ever release (compared
/// ASCII-case-insensitively). See the module documentation for why.
pub const NEVER_RELEASABLE: &[&str] = &[
    // Hashes of the national identity number (HETU), trivially reversible.
    "urn:mpass.id:legacyCryptId",
    "urn:mpass.id:legacyCryptIde",
    "legacyCryptId",
    "legacyCryptIde",
    "mpass_cid",
    "mpass_cide",
    // The national identity number itself.
    "hetu",
    "urn:oid:1.2.246.21",
    "national_identification_number",
    "nationalIdentificationNumber",
    "personal_identity_code",
    "ssn",
    // Birth date, birth year, age: MPASSid must not let a service derive age.
    "birthdate",
    "birth_date",
    "birthDate",
    "date_of_birth",
    "dateOfBirth",
    "urn:oid:1.3.6.1.5.5.7.9.1",
    "schacDateOfBirth",
    "urn:oid:1.3.6.1.4.1.25178.1.2.3",
    "schacYearOfBirth",
    "urn:oid:1.3.6.1.4.1.25178.1.0.2.3",
    "birth_year",
    "age",
];

/// Protocol claims of the ID token itself: they are not user attributes, so
/// they are neither released nor reported as withheld.
pub const PROTOCOL_CLAIMS: &[&str] = &[
    "iss",
    "aud",
    "exp",
    "iat",
    "nbf",
    "jti",
    "nonce",
    "acr",
    "amr",
    "azp",
    "auth_time",
    "at_hash",
    "c_hash",
    "s_hash",
    "sid",
];

/// The learner number attribute.
pub static LEARNER_ID_ATTRIBUTE: &Attribute = &CATALOGUE[5];
/// The role attribute.
pub static ROLE_ATTRIBUTE: &Attribute = &CATALOGUE[9];
/// The 2019 school code attribute.
pub static SCHOOL_CODE_ATTRIBUTE: &Attribute = &CATALOGUE[16];

/// Whether `name` is on the built-in never-releasable list.
pub fn is_never_releasable(name: &str) -> bool {
    NEVER_RELEASABLE
        .iter()
        .any(|n| n.eq_ignore_ascii_case(name))
}

/// How a name refers to an attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// The canonical claim name.
    Canonical,
    /// The short contract alias.
    Alias,
    /// A 2019 OIDC name.
    Legacy,
}

/// The name index holds only the catalogue's names, fixed at start, and is
/// only read afterwards, so it hashes with the unkeyed table hasher
/// ([`crate::routing::Tables`]): SipHash was half the cost of a lookup, and
/// a cold request looks up every claim name of the token.
type NameIndex = HashMap<&'static str, (&'static Attribute, NameKind), crate::routing::Tables>;

fn name_index() -> &'static NameIndex {
    static INDEX: OnceLock<NameIndex> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut m = NameIndex::default();
        for a in CATALOGUE.iter() {
            for l in a.legacy {
                m.insert(*l, (a, NameKind::Legacy));
            }
            m.insert(a.alias, (a, NameKind::Alias));
            // Canonical last: where an alias equals the canonical name
            // (`sub`, `email`), it is reported as canonical.
            m.insert(a.name, (a, NameKind::Canonical));
        }
        m
    })
}

/// Finds an attribute by canonical name, alias or 2019 name.
pub fn lookup(name: &str) -> Option<(&'static Attribute, NameKind)> {
    name_index().get(name).copied()
}

/// A token's claims mapped onto the catalogue. The values borrow from the
/// claims and share one list (each attribute holds its span of it): a cold
/// request normalises its token once, and a `String` per value and a `Vec`
/// per attribute were an allocation each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Normalised<'c> {
    /// Per catalogue index, the span of `all` holding the attribute's
    /// values; a single-valued attribute has one value.
    spans: [Option<(usize, usize)>; CATALOGUE.len()],
    /// Every value kept, attribute after attribute.
    all: Vec<&'c str>,
    /// Catalogue attributes present with a value of the wrong type; they were
    /// dropped.
    pub invalid: Vec<&'static str>,
    /// How many claims on the never-releasable list the token carried.
    pub never_releasable: usize,
    /// How many other non-protocol claims the token carried (not in the
    /// catalogue, never released).
    pub other: usize,
}

impl<'c> Normalised<'c> {
    /// The values of `attr`, if the token carried it with a valid type.
    pub fn get(&self, attr: &Attribute) -> Option<&[&'c str]> {
        let (start, end) = self.spans.get(attr.index).copied().flatten()?;
        self.all.get(start..end)
    }

    /// The catalogue attributes present, in catalogue order.
    pub fn present(&self) -> impl Iterator<Item = &'static Attribute> + '_ {
        CATALOGUE
            .iter()
            .filter(move |a| matches!(self.spans.get(a.index), Some(Some(_))))
    }
}

/// Appends the values of a claim typed for `attr` to `out`; false (and
/// nothing appended) if the claim has the wrong type.
fn push_typed<'c>(attr: &Attribute, value: &'c Value, out: &mut Vec<&'c str>) -> bool {
    match (attr.value_type, value) {
        (ValueType::Bool, Value::Bool(true)) => out.push("true"),
        (ValueType::Bool, Value::Bool(false)) => out.push("false"),
        (ValueType::Bool, Value::String(s)) if s == "true" || s == "false" => out.push(s),
        (ValueType::Bool, _) => return false,
        (ValueType::Text, Value::String(s)) => out.push(s),
        // Only multi-valued attributes may be arrays; every item must be a
        // string or the whole claim is dropped (no partial guessing).
        (ValueType::Text, Value::Array(items)) if attr.multi => {
            let start = out.len();
            for item in items {
                match item.as_str() {
                    Some(s) => out.push(s),
                    None => {
                        out.truncate(start);
                        return false;
                    }
                }
            }
        }
        (ValueType::Text, _) => return false,
    }
    true
}

/// Maps a token's claims onto the catalogue: 2019 names become current names
/// (the current name wins when both are present) and values are typed
/// (string, or array of strings for multi-valued attributes; a single string
/// is accepted for a multi-valued attribute because the 2019 tokens sent
/// one). A catalogue claim of any other type is dropped and recorded in
/// [`Normalised::invalid`].
pub fn normalise(claims: &Map<String, Value>) -> Normalised<'_> {
    let mut out = Normalised {
        all: Vec::with_capacity(32),
        ..Normalised::default()
    };
    for (name, value) in claims {
        match lookup(name) {
            // Aliases are contract vocabulary; MPASSid never emits them.
            Some((attr, kind)) if kind != NameKind::Alias => {
                if kind == NameKind::Legacy && claims.contains_key(attr.name) {
                    // The current name wins; the 2019 copy is ignored.
                    continue;
                }
                let start = out.all.len();
                match (
                    push_typed(attr, value, &mut out.all),
                    out.spans.get_mut(attr.index),
                ) {
                    (true, Some(slot)) => *slot = Some((start, out.all.len())),
                    _ => {
                        out.all.truncate(start);
                        if !out.invalid.contains(&attr.name) {
                            out.invalid.push(attr.name);
                        }
                    }
                }
            }
            _ => {
                if is_never_releasable(name) {
                    out.never_releasable += 1;
                } else if !PROTOCOL_CLAIMS.contains(&name.as_str()) {
                    out.other += 1;
                }
            }
        }
    }
    out
}

/// The role codes of data model 1.4.
pub mod role_code {
    /// Learner (oppilas / opiskelija).
    pub const LEARNER: u8 = 1;
    /// Teacher (opettaja).
    pub const TEACHER: u8 = 2;
    /// Administrative staff (hallintohenkilö).
    pub const ADMINISTRATIVE: u8 = 3;
    /// School secretary (koulusihteeri).
    pub const SECRETARY: u8 = 4;
    /// Substitute teacher (sijaisopettaja).
    pub const SUBSTITUTE: u8 = 5;
    /// Principal (rehtori).
    pub const PRINCIPAL: u8 = 6;
}

/// A parsed role string. Fields borrow from the string; absent fields of the
/// 4-field forms are empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role<'a> {
    /// Education provider OID (or, in 1.0-1.1, the municipality).
    pub provider: &'a str,
    /// School Statistics Finland (TK) code.
    pub school_tk: &'a str,
    /// Group (class).
    pub group: &'a str,
    /// Role name in Finnish.
    pub name: &'a str,
    /// Role code 1-6, if known.
    pub code: Option<u8>,
    /// School OID (7-field form only).
    pub school_oid: &'a str,
    /// Office OID (7-field form only).
    pub office: &'a str,
    /// Whether the string had the 7-field 1.4 form.
    pub seven_fields: bool,
}

/// Maps a Finnish role name to its code.
pub fn role_code_for_name(name: &str) -> Option<u8> {
    match name.trim().to_lowercase().as_str() {
        "oppilas" | "opiskelija" => Some(role_code::LEARNER),
        "opettaja" => Some(role_code::TEACHER),
        "hallintohenkilö" => Some(role_code::ADMINISTRATIVE),
        "koulusihteeri" => Some(role_code::SECRETARY),
        "sijaisopettaja" => Some(role_code::SUBSTITUTE),
        "rehtori" => Some(role_code::PRINCIPAL),
        _ => None,
    }
}

/// Parses a role string in the 7-field 1.4 form or a 4-field older form.
/// Returns `None` for any other shape. In the 7-field form the code field
/// is authoritative; when it is empty or not 1-6 the role name is used.
pub fn parse_role(s: &str) -> Option<Role<'_>> {
    // At most eight fields are looked at (the eighth only to refuse the
    // string), into an array: called several times per role and request,
    // a `Vec` of the fields was one allocation each time.
    let mut fields = [""; 8];
    let mut count = 0;
    for (slot, field) in fields.iter_mut().zip(s.split(';')) {
        *slot = field;
        count += 1;
    }
    match fields.get(..count).unwrap_or_default() {
        [provider, tk, group, name, code, school_oid, office] => Some(Role {
            provider,
            school_tk: tk,
            group,
            name,
            code: match code.parse::<u8>() {
                Ok(c) if (1..=6).contains(&c) && code.len() == 1 => Some(c),
                _ => role_code_for_name(name),
            },
            school_oid,
            office,
            seven_fields: true,
        }),
        [provider, tk, group, name] => Some(Role {
            provider,
            school_tk: tk,
            group,
            name,
            code: role_code_for_name(name),
            school_oid: "",
            office: "",
            seven_fields: false,
        }),
        _ => None,
    }
}

/// What a learner number is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LearnerIdKind {
    /// `1.2.246.562.24.` followed by 11 digits.
    Real,
    /// `1.2.246.562.98.` followed by digits: not a real person, not unique.
    Test,
    /// Anything else.
    Malformed,
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Classifies a learner number.
pub fn classify_learner_id(s: &str) -> LearnerIdKind {
    if let Some(rest) = s.strip_prefix("1.2.246.562.24.") {
        if rest.len() == 11 && all_digits(rest) {
            return LearnerIdKind::Real;
        }
    } else if let Some(rest) = s.strip_prefix("1.2.246.562.98.") {
        if all_digits(rest) {
            return LearnerIdKind::Test;
        }
    }
    LearnerIdKind::Malformed
}

/// Whether `s` is a 5-digit Statistics Finland (TK) school code.
pub fn is_tk_code(s: &str) -> bool {
    s.len() == 5 && all_digits(s)
}

/// Whether `s` is a dotted numeric OID (at least two arcs, no empty arc).
pub fn is_oid(s: &str) -> bool {
    // One pass over the bytes: digits and dots, a dot somewhere, no empty
    // arc (no leading, trailing or doubled dot).
    let mut dots = false;
    let mut arc_empty = true;
    for b in s.bytes() {
        match b {
            b'0'..=b'9' => arc_empty = false,
            b'.' if !arc_empty => {
                dots = true;
                arc_empty = true;
            }
            _ => return false,
        }
    }
    dots && !arc_empty
}

/// Whether `s` is an OPH organisation OID: `1.2.246.562.10.<digits>` or the
/// test branch `1.2.246.562.99.<digits>`.
pub fn is_organisation_oid(s: &str) -> bool {
    s.strip_prefix("1.2.246.562.10.")
        .or_else(|| s.strip_prefix("1.2.246.562.99."))
        .is_some_and(all_digits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn catalogue_indices_match_positions() {
        for (i, a) in CATALOGUE.iter().enumerate() {
            assert_eq!(a.index, i, "{}", a.name);
        }
    }

    #[test]
    fn no_name_means_two_attributes() {
        let mut seen = std::collections::HashMap::new();
        for a in CATALOGUE.iter() {
            let mut names = vec![a.name, a.alias];
            names.extend(a.legacy.iter().copied());
            names.dedup();
            for n in names {
                assert!(!is_never_releasable(n), "{n}");
                if let Some(prev) = seen.insert(n, a.name) {
                    assert_eq!(prev, a.name, "{n} is ambiguous");
                }
            }
        }
    }

    #[test]
    fn every_catalogue_name_looks_up_its_attribute_and_near_misses_do_not() {
        for a in CATALOGUE.iter() {
            let mut names = vec![a.name, a.alias];
            names.extend(a.legacy.iter().copied());
            for n in names {
                assert_eq!(lookup(n).map(|(x, _)| x.index), Some(a.index), "{n}");
                for miss in [
                    format!("{n}\0"),
                    format!("{n} "),
                    n.to_uppercase(),
                    n[1..].to_owned(),
                ] {
                    if miss != n && lookup(&miss).is_some_and(|(x, _)| x.index == a.index) {
                        panic!("{miss:?} looked up {}", a.name);
                    }
                }
            }
        }
        assert_eq!(lookup("").map(|(a, _)| a.name), None);
    }

    #[test]
    fn legacy_names_map_to_current_names_and_current_wins() {
        let claims = map(json!({
            "learnerId": "1.2.246.562.24.90000000001",
            "mpass_uid": "old",
            "urn:mpass.id:uid": "new",
            "mpass_role": "Demojärvi;00000;9A;Oppilas",
            "mpass_cid": "x",
            "_comment": "y",
            "iss": "z",
        }));
        let n = normalise(&claims);
        let uid = lookup("uid").map(|(a, _)| a);
        assert_eq!(uid.and_then(|a| n.get(a)), Some(&["new"][..]));
        let role = lookup(ROLE).map(|(a, _)| a);
        assert_eq!(
            role.and_then(|a| n.get(a)),
            Some(&["Demojärvi;00000;9A;Oppilas"][..])
        );
        assert_eq!(n.never_releasable, 1);
        assert_eq!(n.other, 1);
    }

    #[test]
    fn wrongly_typed_values_are_dropped_and_counted() {
        let claims = map(json!({
            "given_name": ["a", "b"],
            "urn:mpass.id:role": ["ok", 3],
            "email_verified": true,
            "urn:mpass.id:classLevel": 9,
        }));
        let n = normalise(&claims);
        assert_eq!(
            n.present().map(|a| a.name).collect::<Vec<_>>(),
            ["email_verified"]
        );
        assert_eq!(n.invalid.len(), 3);
    }

    #[test]
    fn role_strings_of_every_known_form_parse() {
        let r = parse_role("1.2.246.562.10.1;30076;9F;Oppilas;1;1.2.246.562.10.2;");
        assert_eq!(
            r.as_ref().map(|r| (r.code, r.school_oid, r.office)),
            Some((Some(1), "1.2.246.562.10.2", ""))
        );
        let r = parse_role("1.2.246.562.10.1;30076;;Rehtori;;1.2.246.562.10.2;1.2.3");
        assert_eq!(r.map(|r| r.code), Some(Some(6)));
        let r = parse_role("Demojärvi;00000;9A;Oppilas");
        assert_eq!(
            r.map(|r| (r.provider, r.code)),
            Some(("Demojärvi", Some(1)))
        );
        assert_eq!(parse_role("a;b;c;Kokki").map(|r| r.code), Some(None));
        assert_eq!(
            parse_role("a;b;c;HALLINTOHENKILÖ").map(|r| r.code),
            Some(Some(3))
        );
        assert_eq!(
            parse_role("a;b;c;Opettaja;7;x;y").map(|r| r.code),
            Some(Some(2))
        );
        assert!(parse_role("a;b;c").is_none());
        assert!(parse_role("a;b;c;d;e;f").is_none());
    }

    /// The role parser as it was, fields collected into a `Vec`: the
    /// oracle for the array-based one.
    fn parse_role_by_vec(s: &str) -> Option<Role<'_>> {
        let f: Vec<&str> = s.split(';').collect();
        match f.as_slice() {
            [provider, tk, group, name, code, school_oid, office] => Some(Role {
                provider,
                school_tk: tk,
                group,
                name,
                code: match code.parse::<u8>() {
                    Ok(c) if (1..=6).contains(&c) && code.len() == 1 => Some(c),
                    _ => role_code_for_name(name),
                },
                school_oid,
                office,
                seven_fields: true,
            }),
            [provider, tk, group, name] => Some(Role {
                provider,
                school_tk: tk,
                group,
                name,
                code: role_code_for_name(name),
                school_oid: "",
                office: "",
                seven_fields: false,
            }),
            _ => None,
        }
    }

    #[test]
    fn role_strings_of_three_five_six_eight_and_nine_fields_are_refused() {
        for s in [
            "a;b;c",
            "a;b;c;d;e",
            "a;b;c;d;e;f",
            "1;2;3;4;5;6;7;8",
            "1;2;3;4;5;6;7;8;9",
            "",
        ] {
            assert_eq!(parse_role(s), None, "{s}");
        }
    }

    proptest::proptest! {
        #[test]
        fn role_parsing_agrees_with_the_vec_parser(
            fields in proptest::collection::vec("[a-zA-Z0-9.;ÄÖ ]{0,6}", 0..10),
        ) {
            let s = fields.join(";");
            proptest::prop_assert_eq!(parse_role(&s), parse_role_by_vec(&s));
        }

        #[test]
        fn oid_recognition_agrees_with_the_split_rule(s in "[0-9.a]{0,12}") {
            let by_split = s.contains('.') && s.split('.').all(all_digits);
            proptest::prop_assert_eq!(is_oid(&s), by_split);
        }
    }

    #[test]
    fn learner_numbers_are_classified() {
        assert_eq!(
            classify_learner_id("1.2.246.562.24.20000000018"),
            LearnerIdKind::Real
        );
        assert_eq!(
            classify_learner_id("1.2.246.562.98.10000000001"),
            LearnerIdKind::Test
        );
        assert_eq!(
            classify_learner_id("1.2.246.562.24.2000000001"),
            LearnerIdKind::Malformed
        );
        assert_eq!(
            classify_learner_id("1.2.246.562.24.2000000001x"),
            LearnerIdKind::Malformed
        );
        assert_eq!(
            classify_learner_id("1.2.246.562.98."),
            LearnerIdKind::Malformed
        );
        assert_eq!(classify_learner_id(""), LearnerIdKind::Malformed);
    }

    #[test]
    fn organisation_ids_are_recognised() {
        assert!(is_tk_code("04647"));
        assert!(!is_tk_code("4647"));
        assert!(is_organisation_oid("1.2.246.562.10.00000000001"));
        assert!(is_organisation_oid("1.2.246.562.99.5"));
        assert!(!is_organisation_oid("1.2.246.562.24.20000000018"));
        assert!(!is_organisation_oid("1.2.246.562.10."));
        assert!(is_oid("1.2.246.562.10.5"));
        assert!(!is_oid("1..2"));
    }
}
