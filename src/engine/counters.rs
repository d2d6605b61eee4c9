//! Counter names and their interning: every metric name the filter emits is
//! built here, one function per kind of counter, so the naming scheme has
//! one home. Names are given without the `mpass_guard.` prefix.

use std::collections::HashMap;
use std::rc::Rc;

use crate::config::Provider;
use crate::routing::ProviderId;

/// A counter, interned: the glue maps it to the host's metric once, and a
/// request increments counters without building or hashing their names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CounterId(u32);

impl CounterId {
    /// Dense index, from 0, in the order the counters were first used.
    pub fn index(self) -> usize {
        self.0 as usize
    }

    /// The counter at a dense index (the inverse of [`CounterId::index`]).
    pub fn from_index(index: usize) -> CounterId {
        CounterId(u32::try_from(index).unwrap_or(u32::MAX))
    }
}

/// The counters of an admitted request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tally {
    /// `provider.<id>.allowed` (the attribute is ignored).
    Allowed,
    Released,
    Withheld,
}

/// Requests whose client-supplied identity headers were removed.
pub const SPOOFED: &str = "spoofed_headers_removed";
/// Requests that matched no provider.
pub const UNMATCHED: &str = "unmatched";
/// Requests whose path matched providers ambiguously.
pub const AMBIGUOUS_PATH: &str = "ambiguous_path";

/// `provider.<id>.allowed` or `provider.<id>.released|withheld.<attribute>`.
pub fn admitted_name(provider: &str, kind: Tally, attribute: &str) -> String {
    match kind {
        Tally::Allowed => format!("provider.{provider}.allowed"),
        Tally::Released => format!(
            "provider.{provider}.released.{}",
            attribute_label(attribute)
        ),
        Tally::Withheld => format!(
            "provider.{provider}.withheld.{}",
            attribute_label(attribute)
        ),
    }
}

/// `provider.<id>.denied.<reason>`.
pub fn denied_name(provider: &str, reason: &str) -> String {
    format!("provider.{provider}.denied.{reason}")
}

/// `issuer.<label>.fetch_ok` or `issuer.<label>.fetch_failed`.
pub fn issuer_fetch_name(issuer: &str, ok: bool) -> String {
    let outcome = if ok { "fetch_ok" } else { "fetch_failed" };
    format!("issuer.{}.{outcome}", issuer_label(issuer))
}

/// The gauge `issuer.<label>.keys_in_use`.
pub fn issuer_keys_in_use_name(issuer: &str) -> String {
    format!("issuer.{}.keys_in_use", issuer_label(issuer))
}

/// The gauge `issuer.<label>.key_set_age_seconds`.
pub fn issuer_key_set_age_name(issuer: &str) -> String {
    format!("issuer.{}.key_set_age_seconds", issuer_label(issuer))
}

/// A stats-safe label for an issuer URL: its host with dots as underscores.
fn issuer_label(issuer: &str) -> String {
    let host = issuer
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default();
    host.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A stats-safe name for an attribute: its alias, where it has one.
fn attribute_label(attribute: &str) -> String {
    crate::claims::lookup(attribute)
        .map(|(a, _)| a.alias.to_owned())
        .unwrap_or_else(|| {
            attribute
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect()
        })
}

/// Counter names seen so far. Bounded by the configuration: every name is
/// made of a provider id, a fixed outcome or reason, and an attribute name
/// from the catalogue or a contract.
#[derive(Debug)]
pub(crate) struct Interner {
    names: Vec<Rc<str>>,
    ids: HashMap<Rc<str>, CounterId>,
    /// Per provider index, outcome and attribute: skips formatting the name
    /// when a new token meets a known provider.
    per_attribute: HashMap<(ProviderId, Tally, &'static str), CounterId>,
    pub(crate) spoofed: CounterId,
    pub(crate) unmatched: CounterId,
    pub(crate) ambiguous_path: CounterId,
}

impl Default for Interner {
    fn default() -> Interner {
        let mut names = Interner {
            names: Vec::new(),
            ids: HashMap::new(),
            per_attribute: HashMap::new(),
            spoofed: CounterId(0),
            unmatched: CounterId(0),
            ambiguous_path: CounterId(0),
        };
        names.spoofed = names.id(SPOOFED);
        names.unmatched = names.id(UNMATCHED);
        names.ambiguous_path = names.id(AMBIGUOUS_PATH);
        names
    }
}

impl Interner {
    /// The counter of an admitted request's outcome for one attribute.
    pub(crate) fn attribute(
        &mut self,
        index: ProviderId,
        provider: &Provider,
        kind: Tally,
        attribute: &'static str,
    ) -> CounterId {
        if let Some(id) = self.per_attribute.get(&(index, kind, attribute)) {
            return *id;
        }
        let id = self.id(&admitted_name(&provider.id, kind, attribute));
        self.per_attribute.insert((index, kind, attribute), id);
        id
    }

    /// The counter of a refusal.
    pub(crate) fn denied(&mut self, provider: &Provider, reason: &str) -> CounterId {
        self.id(&denied_name(&provider.id, reason))
    }

    fn id(&mut self, name: &str) -> CounterId {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        let id = CounterId::from_index(self.names.len());
        let name: Rc<str> = name.into();
        self.names.push(Rc::clone(&name));
        self.ids.insert(name, id);
        id
    }

    /// The name of an interned counter.
    pub(crate) fn name(&self, id: CounterId) -> Option<Rc<str>> {
        self.names.get(id.index()).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixed_counters_come_first_in_a_fresh_interner() {
        let names = Interner::default();
        assert_eq!(names.name(names.spoofed).as_deref(), Some(SPOOFED));
        assert_eq!(names.name(names.unmatched).as_deref(), Some(UNMATCHED));
        assert_eq!(
            names.name(names.ambiguous_path).as_deref(),
            Some("ambiguous_path")
        );
        assert_eq!(names.name(CounterId::from_index(3)), None);
    }

    #[test]
    fn the_same_name_is_interned_once() {
        let mut names = Interner::default();
        let a = names.id("provider.shop.denied.expired");
        assert_eq!(names.id("provider.shop.denied.expired"), a);
        assert_ne!(names.id("provider.shop.denied.bad_signature"), a);
        assert_eq!(CounterId::from_index(a.index()), a);
    }

    #[test]
    fn attribute_counters_use_the_catalogue_alias_or_a_safe_spelling() {
        assert_eq!(
            admitted_name("shop", Tally::Allowed, "uid"),
            "provider.shop.allowed"
        );
        assert_eq!(
            admitted_name("shop", Tally::Withheld, "urn:x:odd-name"),
            "provider.shop.withheld.urn_x_odd_name"
        );
        assert_eq!(
            denied_name("shop", "expired"),
            "provider.shop.denied.expired"
        );
    }

    #[test]
    fn issuer_metrics_are_labelled_by_the_issuer_host() {
        let iss = "https://mpass-proxy.csc.fi/idp";
        assert_eq!(
            issuer_fetch_name(iss, true),
            "issuer.mpass-proxy_csc_fi.fetch_ok"
        );
        assert_eq!(
            issuer_fetch_name(iss, false),
            "issuer.mpass-proxy_csc_fi.fetch_failed"
        );
        assert_eq!(
            issuer_keys_in_use_name(iss),
            "issuer.mpass-proxy_csc_fi.keys_in_use"
        );
        assert_eq!(
            issuer_key_set_age_name("http://127.0.0.1:8080"),
            "issuer.127_0_0_1_8080.key_set_age_seconds"
        );
    }
}
