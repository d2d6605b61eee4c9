//! Plain-language names of the catalogue attributes, in Finnish and English,
//! for reports a data protection officer reads beside the claim names
//! (`explain`, drift reports). The Finnish names follow the words MPASSid and
//! the Finnish National Agency for Education use (oppijanumero, kutsumanimi,
//! luokka-aste...).

use crate::claims::{Attribute, CATALOGUE};

/// An attribute's names for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlainName {
    /// Finnish.
    pub fi: &'static str,
    /// English.
    pub en: &'static str,
}

const fn n(fi: &'static str, en: &'static str) -> PlainName {
    PlainName { fi, en }
}

/// By canonical claim name (`claims::CATALOGUE[i].name`).
static NAMES: &[(&str, PlainName)] = &[
    ("sub", n("käyttäjätunniste", "subject identifier")),
    ("given_name", n("etunimet", "given names")),
    ("family_name", n("sukunimi", "family name")),
    ("urn:mpass.id:nickname", n("kutsumanimi", "calling name")),
    (
        "urn:mpass.id:uid",
        n(
            "käyttäjätunnus kotiorganisaatiossa",
            "user id in the home directory",
        ),
    ),
    (
        "urn:oid:1.3.6.1.4.1.16161.1.1.27",
        n("oppijanumero", "national learner number"),
    ),
    ("urn:mpass.id:schoolInfo", n("koulu", "school")),
    ("urn:mpass.id:classLevel", n("luokka-aste", "grade")),
    (
        "urn:mpass.id:learningMaterialsCharge",
        n("oppimateriaalimaksu", "learning materials charge"),
    ),
    ("urn:mpass.id:role", n("rooli", "role")),
    (
        "urn:mpass.id:educationProviderInfo",
        n("koulutuksen järjestäjä", "education provider"),
    ),
    (
        "urn:mpass.id:originalIssuer",
        n("alkuperäinen tietojen luovuttaja", "original issuer"),
    ),
    ("email", n("sähköpostiosoite", "e-mail address")),
    (
        "email_verified",
        n("sähköpostiosoite vahvistettu", "e-mail address verified"),
    ),
    (
        "urn:mpass.id:class",
        n("ryhmä tai luokka", "group or class"),
    ),
    ("urn:mpass.id:school", n("koulun nimi", "school name")),
    ("urn:mpass.id:schoolCode", n("koulukoodi", "school code")),
    ("urn:mpass.id:municipality", n("kunta", "municipality")),
    (
        "urn:mpass.id:municipalityCode",
        n("kuntanumero", "municipality code"),
    ),
];

/// The plain-language names of the attribute with this canonical name.
pub fn by_canonical(name: &str) -> Option<PlainName> {
    NAMES
        .iter()
        .find(|(canonical, _)| *canonical == name)
        .map(|(_, p)| *p)
}

/// The plain-language names of a catalogue attribute.
pub fn of(attr: &Attribute) -> Option<PlainName> {
    by_canonical(attr.name)
}

/// Every catalogue attribute with its names, in catalogue order.
pub fn all() -> impl Iterator<Item = (&'static Attribute, Option<PlainName>)> {
    CATALOGUE.iter().map(|a| (a, of(a)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn every_catalogue_attribute_has_a_finnish_and_an_english_name() {
        for (attr, names) in all() {
            let names = names.unwrap_or_else(|| panic!("{} has no plain names", attr.name));
            assert!(!names.fi.trim().is_empty(), "{}", attr.name);
            assert!(!names.en.trim().is_empty(), "{}", attr.name);
        }
    }

    #[test]
    fn every_name_belongs_to_one_catalogue_attribute() {
        let canonical: BTreeSet<&str> = CATALOGUE.iter().map(|a| a.name).collect();
        let mut seen = BTreeSet::new();
        for (name, _) in NAMES {
            assert!(canonical.contains(name), "{name} is not in the catalogue");
            assert!(seen.insert(*name), "{name} is named twice");
        }
    }

    #[test]
    fn plain_names_are_told_apart() {
        let fi: BTreeSet<&str> = NAMES.iter().map(|(_, p)| p.fi).collect();
        let en: BTreeSet<&str> = NAMES.iter().map(|(_, p)| p.en).collect();
        assert_eq!(fi.len(), NAMES.len());
        assert_eq!(en.len(), NAMES.len());
    }

    #[test]
    fn the_learner_number_is_oppijanumero() {
        let p = by_canonical(crate::claims::LEARNER_ID).unwrap();
        assert_eq!((p.fi, p.en), ("oppijanumero", "national learner number"));
        assert_eq!(
            by_canonical("learner_id"),
            None,
            "aliases are not canonical names"
        );
    }
}
