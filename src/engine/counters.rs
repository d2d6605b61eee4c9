//! Counter names and their interning: every metric name the filter emits is
//! built here, one function per kind of counter, so the naming scheme has
//! one home. Names are given without the `mpass_guard.` prefix.

use std::collections::HashMap;
use std::rc::Rc;

use crate::config::Provider;
use crate::routing::ProviderId;

/// A counter, interned: the glue maps it to the host's metric once, and a
/// request increments counters without building or hashing their names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct CounterId(u32);

/// The counters one request increments: inline up to eight (a cold
/// release counts one or two besides its own list), so a request makes no
/// allocation for them.
pub type Counters = crate::few::Few<CounterId, 8>;

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
/// A malformed `:authority`, refused with 400.
pub const INVALID_AUTHORITY: &str = "invalid_authority";

/// `tokens_stripped.stat_prefix=<sp>.carrier=<carrier>`: one token removed
/// from a request by the sealer.
pub fn stripped_name(sp: &str, carrier: &str) -> String {
    format!("tokens_stripped.stat_prefix={sp}.carrier={carrier}")
}

/// `decisions.stat_prefix=<sp>.provider=<id>.outcome=allow.reason=ok` or
/// `released|withheld.stat_prefix=<sp>.provider=<id>.attribute=<alias>`;
/// `provider` is the stat-safe id ([`Provider::stat_id`]).
pub fn admitted_name(sp: &str, provider: &str, kind: Tally, attribute: &str) -> String {
    let dims = format!("stat_prefix={sp}.provider={provider}");
    match kind {
        Tally::Allowed => format!("decisions.{dims}.outcome=allow.reason=ok"),
        Tally::Released => format!("released.{dims}.attribute={}", attribute_label(attribute)),
        Tally::Withheld => format!("withheld.{dims}.attribute={}", attribute_label(attribute)),
    }
}

/// `decisions.stat_prefix=<sp>.provider=<id>.outcome=deny.reason=<reason>`.
pub fn denied_name(sp: &str, provider: &str, reason: &str) -> String {
    format!("decisions.stat_prefix={sp}.provider={provider}.outcome=deny.reason={reason}")
}

/// `released_attributes.stat_prefix=<sp>.provider=<id>.controller=<oid>.attribute=<alias>`:
/// an attribute released to a provider of a user of this controller. The
/// controller is an OID with `.` as `_` (`1_2_246_562_10_00000000001`),
/// or `other` for one no contract of the configuration names.
pub fn released_by_controller_name(
    sp: &str,
    provider: &str,
    controller: &str,
    attribute: &str,
) -> String {
    format!(
        "released_attributes.stat_prefix={sp}.provider={provider}.controller={}.attribute={}",
        controller.replace('.', "_"),
        attribute_label(attribute)
    )
}

/// The `controller=` label of a controller no contract names.
pub const OTHER_CONTROLLER: &str = "other";

/// `shadow_evaluations.stat_prefix=<sp>.provider=<id>`: a request whose
/// provider's shadow contract was compared with the enforced one.
pub fn shadow_evaluations_name(sp: &str, provider: &str) -> String {
    format!("shadow_evaluations.stat_prefix={sp}.provider={provider}")
}

/// `shadow_differences.stat_prefix=<sp>.provider=<id>.change=<kind>`: a
/// request on which the shadow contract would have decided differently, once
/// per kind of difference ([`crate::shadow::Change`], a fixed set).
pub fn shadow_differences_name(sp: &str, provider: &str, change: &str) -> String {
    format!("shadow_differences.stat_prefix={sp}.provider={provider}.change={change}")
}

/// `key_fetch.stat_prefix=<sp>.issuer=<label>.result=<ok|failed>`.
pub fn issuer_fetch_name(sp: &str, issuer: &str, ok: bool) -> String {
    let result = if ok { "ok" } else { "failed" };
    format!("key_fetch.{}.result={result}", issuer_dims(sp, issuer))
}

/// The gauge `keys_in_use.stat_prefix=<sp>.issuer=<label>`.
pub fn issuer_keys_in_use_name(sp: &str, issuer: &str) -> String {
    format!("keys_in_use.{}", issuer_dims(sp, issuer))
}

/// The gauge `key_set_age_seconds.stat_prefix=<sp>.issuer=<label>`.
pub fn issuer_key_set_age_name(sp: &str, issuer: &str) -> String {
    format!("key_set_age_seconds.{}", issuer_dims(sp, issuer))
}

/// `registry_fetches.stat_prefix=<sp>.result=<ok|failed>`: one per
/// registry refresh (both documents).
pub fn registry_fetch_name(sp: &str, ok: bool) -> String {
    let result = if ok { "ok" } else { "failed" };
    format!("registry_fetches.stat_prefix={sp}.result={result}")
}

/// The gauge `registry_snapshot_age_seconds.stat_prefix=<sp>`.
pub fn registry_snapshot_age_name(sp: &str) -> String {
    format!("registry_snapshot_age_seconds.stat_prefix={sp}")
}

/// `userinfo_calls.stat_prefix=<sp>.issuer=<label>`: one userinfo call.
pub fn userinfo_calls_name(sp: &str, issuer: &str) -> String {
    format!("userinfo_calls.{}", issuer_dims(sp, issuer))
}

/// `userinfo_failures.stat_prefix=<sp>.issuer=<label>.reason=<reason>`.
pub fn userinfo_failures_name(sp: &str, issuer: &str, reason: &str) -> String {
    format!(
        "userinfo_failures.{}.reason={reason}",
        issuer_dims(sp, issuer)
    )
}

/// `login_restarts.stat_prefix=<sp>.provider=<id>`: a browser sent back to login.
pub fn login_restarts_name(sp: &str, provider: &str) -> String {
    format!("login_restarts.stat_prefix={sp}.provider={provider}")
}

/// The histogram `decision_time_us.stat_prefix=<sp>`.
pub fn decision_time_name(sp: &str) -> String {
    format!("decision_time_us.stat_prefix={sp}")
}

fn issuer_dims(sp: &str, issuer: &str) -> String {
    format!("stat_prefix={sp}.issuer={}", issuer_label(issuer))
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

/// The hasher of the interner's maps. Their keys are made of the
/// configuration (provider ids, controllers, attribute and reason names),
/// never of a request's bytes, so a keyed hash buys nothing there; SipHash
/// cost about 470 instructions per attribute counter of a cold release.
/// They hash with the unkeyed table hasher ([`crate::routing::Tables`]).
type NameMap<K> = HashMap<K, CounterId, crate::routing::Tables>;

/// Counter names seen so far. Bounded by the configuration: every name is
/// made of a provider id, a fixed outcome or reason, and an attribute name
/// from the catalogue or a contract.
#[derive(Debug)]
pub(crate) struct Interner {
    names: Vec<Rc<str>>,
    ids: NameMap<Rc<str>>,
    /// Per provider index, outcome and attribute: skips formatting the name
    /// when a new token meets a known provider.
    per_attribute: NameMap<(ProviderId, Tally, &'static str)>,
    /// The controllers the configuration names (sorted): each its own
    /// `controller=` label, any other one `other` (the names stay bounded).
    controllers: Vec<String>,
    /// Per provider index, controller (index into `controllers`, or its
    /// length for `other`) and attribute.
    per_controller: NameMap<(ProviderId, usize, &'static str)>,
    pub(crate) spoofed: CounterId,
    pub(crate) unmatched: CounterId,
    pub(crate) ambiguous_path: CounterId,
    pub(crate) cache_hit: CounterId,
    pub(crate) cache_miss: CounterId,
    pub(crate) cache_eviction: CounterId,
    /// `invalid_authority.stat_prefix=<sp>`: a malformed `:authority`.
    pub(crate) invalid_authority: CounterId,
    /// `registry_stale.stat_prefix=<sp>`: a request decided with the last
    /// good registry snapshot while the latest refresh failed.
    pub(crate) registry_stale: CounterId,
    /// Per [`crate::seal::Place`] (by its index),
    /// `tokens_stripped.stat_prefix=<sp>.carrier=<place>`.
    pub(crate) stripped: Vec<CounterId>,
    /// The `stat_prefix=` value of every name.
    stat_prefix: String,
}

impl Default for Interner {
    fn default() -> Interner {
        Interner::new(crate::config::DEFAULT_STAT_PREFIX)
    }
}

impl Interner {
    /// The fixed counters first, every name under `stat_prefix`.
    pub(crate) fn new(stat_prefix: &str) -> Interner {
        let mut names = Interner {
            names: Vec::new(),
            ids: NameMap::default(),
            per_attribute: NameMap::default(),
            controllers: Vec::new(),
            per_controller: NameMap::default(),
            spoofed: CounterId(0),
            unmatched: CounterId(0),
            ambiguous_path: CounterId(0),
            cache_hit: CounterId(0),
            cache_miss: CounterId(0),
            cache_eviction: CounterId(0),
            invalid_authority: CounterId(0),
            registry_stale: CounterId(0),
            stripped: Vec::new(),
            stat_prefix: stat_prefix.to_owned(),
        };
        let sp = stat_prefix;
        names.spoofed = names.id(&format!("{SPOOFED}.stat_prefix={sp}"));
        names.unmatched = names.id(&format!("{UNMATCHED}.stat_prefix={sp}.action=strip"));
        names.ambiguous_path = names.id(&format!("{AMBIGUOUS_PATH}.stat_prefix={sp}"));
        names.cache_hit = names.id(&format!("token_cache.stat_prefix={sp}.result=hit"));
        names.cache_miss = names.id(&format!("token_cache.stat_prefix={sp}.result=miss"));
        names.cache_eviction = names.id(&format!("token_cache.stat_prefix={sp}.result=eviction"));
        names.invalid_authority = names.id(&format!("{INVALID_AUTHORITY}.stat_prefix={sp}"));
        names.registry_stale = names.id(&format!("registry_stale.stat_prefix={sp}"));
        names.stripped = crate::seal::Place::ALL
            .iter()
            .map(|p| names.id(&stripped_name(sp, p.name())))
            .collect();
        names
    }

    /// Names the `unmatched` counter after the configured policy
    /// (`action=strip|deny|pass`).
    pub(crate) fn unmatched_action(&mut self, action: &str) {
        let name = format!(
            "{UNMATCHED}.stat_prefix={}.action={action}",
            self.stat_prefix
        );
        self.unmatched = self.id(&name);
    }

    /// The counter of one token removed from a carrier, if the place is known.
    pub(crate) fn stripped(&self, place: crate::seal::Place) -> Option<CounterId> {
        self.stripped.get(place as usize).copied()
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
        let id = self.id(&admitted_name(
            &self.stat_prefix.clone(),
            &provider.stat_id,
            kind,
            attribute,
        ));
        self.per_attribute.insert((index, kind, attribute), id);
        id
    }

    /// The counters of one shadow comparison: the evaluation, then one per
    /// kind of difference.
    pub(crate) fn shadow(
        &mut self,
        provider: &Provider,
        changes: &[crate::shadow::Change],
    ) -> Vec<CounterId> {
        let sp = self.stat_prefix.clone();
        let mut ids = vec![self.id(&shadow_evaluations_name(&sp, &provider.stat_id))];
        for c in changes {
            ids.push(self.id(&shadow_differences_name(&sp, &provider.stat_id, c.name())));
        }
        ids
    }

    /// Names the controllers that get a `controller=` label of their own.
    pub(crate) fn set_controllers(&mut self, mut controllers: Vec<String>) {
        controllers.sort_unstable();
        controllers.dedup();
        if controllers != self.controllers {
            // Slots index the list: a new list makes them stale.
            self.per_controller.clear();
            self.controllers = controllers;
        }
    }

    /// The `released_attributes` counter of one attribute released to a
    /// provider for a user of `controller`.
    pub(crate) fn released_by(
        &mut self,
        index: ProviderId,
        provider: &Provider,
        controller: &str,
        attribute: &'static str,
    ) -> CounterId {
        let slot = self
            .controllers
            .binary_search_by(|c| c.as_str().cmp(controller))
            .unwrap_or(self.controllers.len());
        if let Some(id) = self.per_controller.get(&(index, slot, attribute)) {
            return *id;
        }
        let label = self
            .controllers
            .get(slot)
            .map_or(OTHER_CONTROLLER, String::as_str);
        let name =
            released_by_controller_name(&self.stat_prefix, &provider.stat_id, label, attribute);
        let id = self.id(&name);
        self.per_controller.insert((index, slot, attribute), id);
        id
    }

    /// The counter of a refusal.
    pub(crate) fn denied(&mut self, provider: &Provider, reason: &str) -> CounterId {
        let name = denied_name(&self.stat_prefix, &provider.stat_id, reason);
        self.id(&name)
    }

    /// One userinfo call for an issuer.
    pub(crate) fn userinfo_call(&mut self, issuer: &str) -> CounterId {
        let name = userinfo_calls_name(&self.stat_prefix, issuer);
        self.id(&name)
    }

    /// One failed userinfo result for an issuer, by reason.
    pub(crate) fn userinfo_failure(&mut self, issuer: &str, reason: &str) -> CounterId {
        let name = userinfo_failures_name(&self.stat_prefix, issuer, reason);
        self.id(&name)
    }

    /// One browser sent back to login by a provider.
    pub(crate) fn login_restart(&mut self, provider: &Provider) -> CounterId {
        let name = login_restarts_name(&self.stat_prefix, &provider.stat_id);
        self.id(&name)
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
        let names = Interner::new("edge");
        let name = |id| names.name(id).as_deref().map(str::to_owned);
        assert_eq!(
            name(names.spoofed).as_deref(),
            Some("spoofed_headers_removed.stat_prefix=edge")
        );
        assert_eq!(
            name(names.unmatched).as_deref(),
            Some("unmatched.stat_prefix=edge.action=strip")
        );
        assert_eq!(
            name(names.ambiguous_path).as_deref(),
            Some("ambiguous_path.stat_prefix=edge")
        );
        assert_eq!(
            name(names.cache_hit).as_deref(),
            Some("token_cache.stat_prefix=edge.result=hit")
        );
        assert_eq!(
            name(names.invalid_authority).as_deref(),
            Some("invalid_authority.stat_prefix=edge")
        );
        assert_eq!(
            names
                .stripped(crate::seal::Place::Cookie)
                .and_then(name)
                .as_deref(),
            Some("tokens_stripped.stat_prefix=edge.carrier=cookie")
        );
        assert_eq!(
            name(names.registry_stale).as_deref(),
            Some("registry_stale.stat_prefix=edge")
        );
        assert_eq!(names.name(CounterId::from_index(14)), None);
    }

    #[test]
    fn the_name_hasher_gives_every_attribute_slot_its_own_hash() {
        use std::collections::HashSet;
        use std::hash::BuildHasher;
        let mut keys = HashSet::new();
        for p in 0..4 {
            for kind in [Tally::Allowed, Tally::Released, Tally::Withheld] {
                for attr in crate::claims::CATALOGUE.iter() {
                    for name in [attr.name, attr.alias, "", "urn:x:no-such-attribute"] {
                        keys.insert((ProviderId(p), kind, name));
                    }
                }
            }
        }
        let build = crate::routing::Tables::default();
        let hashes: HashSet<u64> = keys.iter().map(|k| build.hash_one(k)).collect();
        assert_eq!(hashes.len(), keys.len());
    }

    #[test]
    fn the_unmatched_counter_is_named_after_the_policy() {
        let mut names = Interner::new("edge");
        names.unmatched_action("deny");
        assert_eq!(
            names.name(names.unmatched).as_deref(),
            Some("unmatched.stat_prefix=edge.action=deny")
        );
    }

    #[test]
    fn the_same_name_is_interned_once() {
        let mut names = Interner::default();
        let a = names.id("decisions.x");
        assert_eq!(names.id("decisions.x"), a);
        assert_ne!(names.id("decisions.y"), a);
        assert_eq!(CounterId::from_index(a.index()), a);
    }

    #[test]
    fn attribute_counters_use_the_catalogue_alias_or_a_safe_spelling() {
        assert_eq!(
            admitted_name("main", "shop", Tally::Allowed, "uid"),
            "decisions.stat_prefix=main.provider=shop.outcome=allow.reason=ok"
        );
        assert_eq!(
            admitted_name("main", "shop", Tally::Withheld, "urn:x:odd-name"),
            "withheld.stat_prefix=main.provider=shop.attribute=urn_x_odd_name"
        );
        assert_eq!(
            denied_name("main", "shop", "expired"),
            "decisions.stat_prefix=main.provider=shop.outcome=deny.reason=expired"
        );
    }

    #[test]
    fn userinfo_and_login_counters_carry_issuer_reason_and_provider_labels() {
        let iss = "https://op.example:8443";
        assert_eq!(
            userinfo_calls_name("main", iss),
            "userinfo_calls.stat_prefix=main.issuer=op_example_8443"
        );
        assert_eq!(
            userinfo_failures_name("main", iss, "userinfo_refused"),
            "userinfo_failures.stat_prefix=main.issuer=op_example_8443.reason=userinfo_refused"
        );
        assert_eq!(
            login_restarts_name("main", "legacy_app"),
            "login_restarts.stat_prefix=main.provider=legacy_app"
        );
    }

    #[test]
    fn released_attributes_are_labelled_by_controller_with_dots_as_underscores() {
        assert_eq!(
            released_by_controller_name("main", "shop", "1.2.246.562.10.00000000001", "email"),
            "released_attributes.stat_prefix=main.provider=shop.controller=1_2_246_562_10_00000000001.attribute=email"
        );
        assert_eq!(
            released_by_controller_name("main", "shop", OTHER_CONTROLLER, "urn:mpass.id:uid"),
            "released_attributes.stat_prefix=main.provider=shop.controller=other.attribute=uid"
        );
    }

    #[test]
    fn shadow_counters_are_labelled_by_provider_and_change() {
        assert_eq!(
            shadow_evaluations_name("main", "shop"),
            "shadow_evaluations.stat_prefix=main.provider=shop"
        );
        assert_eq!(
            shadow_differences_name("main", "shop", "would_refuse"),
            "shadow_differences.stat_prefix=main.provider=shop.change=would_refuse"
        );
    }

    #[test]
    fn issuer_metrics_are_labelled_by_the_issuer_host() {
        let iss = "https://mpass-proxy.csc.fi/idp";
        assert_eq!(
            issuer_fetch_name("main", iss, true),
            "key_fetch.stat_prefix=main.issuer=mpass-proxy_csc_fi.result=ok"
        );
        assert_eq!(
            issuer_fetch_name("main", iss, false),
            "key_fetch.stat_prefix=main.issuer=mpass-proxy_csc_fi.result=failed"
        );
        assert_eq!(
            issuer_keys_in_use_name("main", iss),
            "keys_in_use.stat_prefix=main.issuer=mpass-proxy_csc_fi"
        );
        assert_eq!(
            issuer_key_set_age_name("main", "http://127.0.0.1:8080"),
            "key_set_age_seconds.stat_prefix=main.issuer=127_0_0_1_8080"
        );
    }
}
