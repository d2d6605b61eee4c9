//! Remote key sets over time: when to fetch, what a fetch result means, and
//! which key set a request may use. Pure: the glue does the HTTP calls and
//! passes the results and the clock in.
//!
//! Behaviour, per issuer:
//! - fetch at start, then every `cache_duration`;
//! - a failed fetch keeps the last good key set (up to `max_stale`) and is
//!   retried with exponential backoff;
//! - an unknown `kid` may force one refetch, at most once per
//!   `refetch_interval`, coalesced with any fetch already in flight;
//! - discovery (`/.well-known/openid-configuration`) is redone whenever a
//!   key set fetch fails, otherwise its `jwks_uri` is reused.

use std::rc::Rc;

use serde::Deserialize;

use crate::alg::Alg;
use crate::keys::KeySet;
use crate::verify::TimePolicy;

/// Default upper bound on a JWKS or discovery response.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 256 * 1024;

/// Timing and size policy for one issuer's remote keys (milliseconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPolicy {
    pub cache_duration_ms: u64,
    pub timeout_ms: u64,
    pub initial_wait_ms: u64,
    pub refetch_interval_ms: u64,
    pub max_stale_ms: u64,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    pub max_response_bytes: usize,
}

impl Default for FetchPolicy {
    fn default() -> Self {
        FetchPolicy {
            cache_duration_ms: 600_000,
            timeout_ms: 5_000,
            initial_wait_ms: 2_000,
            refetch_interval_ms: 30_000,
            max_stale_ms: 24 * 3_600_000,
            backoff_initial_ms: 1_000,
            backoff_max_ms: 60_000,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}

/// An absolute `http(s)` URL split for an HTTP call through a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub authority: String,
    pub path: String,
}

impl Target {
    /// Parses `https://host[:port]/path?query`. `None` for anything else.
    pub fn parse(uri: &str) -> Option<Target> {
        let rest = uri
            .strip_prefix("https://")
            .or_else(|| uri.strip_prefix("http://"))?;
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (rest.get(..i)?, rest.get(i..)?),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
        let bad = |s: &str| {
            s.is_empty()
                || s.bytes()
                    .any(|b| b <= b' ' || b == 0x7f || b == b'@' || b == b'#')
        };
        if bad(authority) || path.bytes().any(|b| b <= b' ' || b == 0x7f || b == b'#') {
            return None;
        }
        Some(Target {
            authority: authority.to_owned(),
            path,
        })
    }
}

/// Where an issuer's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A fixed JWKS URL.
    Jwks(Target),
    /// Discovery from the issuer URL; `well_known` is the discovery document.
    Discovery { well_known: Target },
}

/// What the glue should fetch now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Discovery(Target),
    Jwks(Target),
}

/// The outcome of an HTTP call, as the glue saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// Status and body (the glue enforces the size cap before reading).
    Response { status: u16, body: Vec<u8> },
    /// The body was larger than `max_response_bytes`.
    TooLarge,
    /// Timeout, connection failure or a dispatch error.
    Failed,
}

/// What a request may use right now.
#[derive(Debug, Clone)]
pub enum Availability {
    /// A usable key set.
    Ready(Rc<KeySet>),
    /// No usable key set (never fetched, or too stale): wait, then 503.
    Unavailable,
}

/// One issuer's remote key state.
#[derive(Debug, Clone)]
pub struct RemoteKeys {
    pub issuer: String,
    /// The Envoy cluster the fetches go through.
    pub cluster: String,
    source: Source,
    pub policy: FetchPolicy,
    allowed: Vec<Alg>,
    jwks_target: Option<Target>,
    current: Option<Rc<KeySet>>,
    fetched_at: Option<u64>,
    in_flight: Option<u64>,
    next_fetch_at: u64,
    failures: u32,
    last_kid_refetch: Option<u64>,
    /// The next fetch was brought forward by an unknown `kid` or a waiting
    /// request (not the schedule): the glue asks the process's budget.
    forced: bool,
    /// The fetch [`Self::due`] last returned was a forced one.
    due_forced: bool,
    /// The discovery document's `userinfo_endpoint`, as written there.
    userinfo_endpoint: Option<String>,
    /// Fetch counters, for the glue's metrics.
    pub successes: u64,
    pub errors: u64,
}

/// A state change worth a log line (never a body, never key material).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub ok: bool,
    pub message: String,
    /// True when this result ends a fetch cycle, so requests waiting for
    /// the issuer's keys may be decided again. False after a discovery
    /// success: the key set fetch it leads to is still to come, and a request
    /// resumed now would be judged against the old key set.
    pub settled: bool,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
    #[serde(default)]
    userinfo_endpoint: Option<String>,
}

impl RemoteKeys {
    /// A new state that wants its first fetch at once.
    pub fn new(
        issuer: &str,
        cluster: &str,
        source: Source,
        policy: FetchPolicy,
        allowed: &[Alg],
    ) -> RemoteKeys {
        let jwks_target = match &source {
            Source::Jwks(t) => Some(t.clone()),
            Source::Discovery { .. } => None,
        };
        RemoteKeys {
            issuer: issuer.to_owned(),
            cluster: cluster.to_owned(),
            source,
            policy,
            allowed: allowed.to_vec(),
            jwks_target,
            current: None,
            fetched_at: None,
            in_flight: None,
            next_fetch_at: 0,
            failures: 0,
            last_kid_refetch: None,
            forced: false,
            due_forced: false,
            userinfo_endpoint: None,
            successes: 0,
            errors: 0,
        }
    }

    /// What a request may use at `now`.
    pub fn availability(&self, now: u64) -> Availability {
        match (&self.current, self.fetched_at) {
            (Some(keys), Some(at)) if now.saturating_sub(at) <= self.policy.max_stale_ms => {
                Availability::Ready(Rc::clone(keys))
            }
            _ => Availability::Unavailable,
        }
    }

    /// The next fetch to start, if one is due and none is in flight. A fetch
    /// in flight for longer than twice the timeout is presumed lost.
    pub fn due(&mut self, now: u64) -> Option<Step> {
        if let Some(started) = self.in_flight {
            if now.saturating_sub(started) < self.policy.timeout_ms.saturating_mul(2) {
                return None;
            }
            self.in_flight = None;
        }
        if now < self.next_fetch_at {
            return None;
        }
        self.in_flight = Some(now);
        self.due_forced = std::mem::take(&mut self.forced);
        Some(match (&self.jwks_target, &self.source) {
            (Some(t), _) => Step::Jwks(t.clone()),
            (None, Source::Discovery { well_known }) => Step::Discovery(well_known.clone()),
            (None, Source::Jwks(t)) => Step::Jwks(t.clone()),
        })
    }

    /// True while a fetch is under way.
    pub fn in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    /// An unknown `kid` was seen. Returns true when a refetch was scheduled
    /// (or one is already in flight) so the request should wait for it;
    /// false when the interval forbids another fetch (answer `unknown_key`).
    pub fn request_kid_refetch(&mut self, now: u64) -> bool {
        // A refetch under way, or scheduled and not yet started (the glue
        // starts it on its next tick): wait for that one.
        if self.in_flight.is_some() || self.forced {
            return true;
        }
        if let Some(last) = self.last_kid_refetch {
            if now.saturating_sub(last) < self.policy.refetch_interval_ms {
                return false;
            }
        }
        self.last_kid_refetch = Some(now);
        self.next_fetch_at = now;
        self.forced = true;
        true
    }

    /// True (once) when the fetch [`Self::due`] just returned was brought
    /// forward by an unknown `kid` or a waiting request.
    pub fn take_forced(&mut self) -> bool {
        std::mem::take(&mut self.due_forced)
    }

    /// When the next scheduled fetch is due (ms): after a success the
    /// refresh, after a failure the backoff's retry.
    pub fn next_fetch_at(&self) -> u64 {
        self.next_fetch_at
    }

    /// A request is parked waiting for a first key set: brings the next
    /// fetch forward, but no more often than an unknown `kid` may (the two
    /// share one budget). Without that limit every request arriving during
    /// an outage would start a fetch, and the backoff would mean nothing.
    pub fn wake(&mut self, now: u64) {
        if self.in_flight.is_some() || self.current.is_some() || now >= self.next_fetch_at {
            return;
        }
        if let Some(last) = self.last_kid_refetch {
            if now.saturating_sub(last) < self.policy.refetch_interval_ms {
                return;
            }
        }
        self.last_kid_refetch = Some(now);
        self.next_fetch_at = now;
        self.forced = true;
    }

    /// Applies a fetch result.
    pub fn on_fetched(&mut self, now: u64, step: &Step, result: Fetched) -> Event {
        self.in_flight = None;
        let outcome: Result<(), String> = match (step, result) {
            (_, Fetched::Failed) => Err("the request failed or timed out".to_owned()),
            (_, Fetched::TooLarge) => Err(format!(
                "the response exceeds {} bytes",
                self.policy.max_response_bytes
            )),
            (_, Fetched::Response { status, .. }) if status != 200 => {
                Err(format!("the response status is {status}"))
            }
            (Step::Discovery(_), Fetched::Response { body, .. }) => {
                return self.on_discovery(now, &body)
            }
            (Step::Jwks(_), Fetched::Response { body, .. }) => {
                match KeySet::parse(&body, &self.allowed) {
                    Ok((set, skipped)) => {
                        let n = set.len();
                        let changed = self
                            .current
                            .as_ref()
                            .is_none_or(|old| old.fingerprint() != set.fingerprint());
                        self.current = Some(Rc::new(set));
                        self.fetched_at = Some(now);
                        self.failures = 0;
                        self.successes += 1;
                        self.next_fetch_at = now.saturating_add(self.policy.cache_duration_ms);
                        let mut message = format!(
                            "key set for {} {}: {n} usable key(s)",
                            self.issuer,
                            if changed {
                                "loaded"
                            } else {
                                "refreshed, unchanged"
                            }
                        );
                        if !skipped.is_empty() {
                            message.push_str(&format!("; skipped: {}", skipped.join("; ")));
                        }
                        return Event {
                            ok: true,
                            message,
                            settled: true,
                        };
                    }
                    Err(e) => Err(format!("not a usable JWKS: {e}")),
                }
            }
        };
        let reason = outcome.err().unwrap_or_default();
        self.fail(now, step, &reason)
    }

    /// Adopts a key set another VM of this Envoy fetched (a newer
    /// generation of [`crate::shared_keys::Record`]): the document is parsed
    /// here once, and `max_stale` and the next refresh count from the time
    /// it was fetched, not from now, so every VM ages the same key set alike.
    /// Nothing changes when the document is over `max_response_bytes` or not
    /// a usable JWKS for this issuer's algorithms; the event says why.
    pub fn adopt_shared(
        &mut self,
        fetched_at: u64,
        userinfo_endpoint: Option<&str>,
        document: &[u8],
    ) -> Event {
        let refused = |message: String| Event {
            ok: false,
            message,
            settled: false,
        };
        if document.len() > self.policy.max_response_bytes {
            return refused(format!(
                "shared key set for {} exceeds {} bytes; not adopted",
                self.issuer, self.policy.max_response_bytes
            ));
        }
        match KeySet::parse(document, &self.allowed) {
            Ok((set, _skipped)) => {
                let n = set.len();
                self.current = Some(Rc::new(set));
                self.fetched_at = Some(fetched_at);
                self.failures = 0;
                self.in_flight = None;
                self.next_fetch_at = fetched_at.saturating_add(self.policy.cache_duration_ms);
                // Discovery ran in the fetching VM only: keep what it found.
                if let Some(endpoint) = userinfo_endpoint {
                    self.userinfo_endpoint = Some(endpoint.to_owned());
                }
                Event {
                    ok: true,
                    message: format!(
                        "key set for {} adopted from another VM: {n} usable key(s)",
                        self.issuer
                    ),
                    settled: true,
                }
            }
            Err(e) => refused(format!(
                "shared key set for {} not adopted: not a usable JWKS: {e}",
                self.issuer
            )),
        }
    }

    fn on_discovery(&mut self, now: u64, body: &[u8]) -> Event {
        let doc: Discovery = match serde_json::from_slice(body) {
            Ok(d) => d,
            Err(_) => {
                return self.fail(
                    now,
                    &Step::Discovery(self.well_known()),
                    "not a discovery document",
                );
            }
        };
        // OpenID Connect Discovery 1.0 section 4.3: the issuer in the
        // document must be exactly the one we trust.
        if doc.issuer != self.issuer {
            return self.fail(
                now,
                &Step::Discovery(self.well_known()),
                "the document names another issuer",
            );
        }
        match Target::parse(&doc.jwks_uri) {
            Some(t) => {
                self.jwks_target = Some(t);
                // Kept across failures, as the key set is: a later failed
                // discovery does not make userinfo unreachable.
                if doc.userinfo_endpoint.is_some() {
                    self.userinfo_endpoint = doc.userinfo_endpoint;
                }
                self.next_fetch_at = now;
                Event {
                    ok: true,
                    message: format!("discovery for {} found its jwks_uri", self.issuer),
                    settled: false,
                }
            }
            None => self.fail(
                now,
                &Step::Discovery(self.well_known()),
                "jwks_uri is not an http(s) URL",
            ),
        }
    }

    fn well_known(&self) -> Target {
        match &self.source {
            Source::Discovery { well_known } => well_known.clone(),
            Source::Jwks(t) => t.clone(),
        }
    }

    fn fail(&mut self, now: u64, step: &Step, reason: &str) -> Event {
        self.errors += 1;
        self.failures = self.failures.saturating_add(1);
        let shift = self.failures.saturating_sub(1).min(16);
        let backoff = self
            .policy
            .backoff_initial_ms
            .saturating_mul(1u64 << shift)
            .min(self.policy.backoff_max_ms);
        self.next_fetch_at = now.saturating_add(backoff);
        if matches!(self.source, Source::Discovery { .. }) {
            // Redo discovery next time: the jwks_uri may have moved.
            self.jwks_target = None;
        }
        let what = match step {
            Step::Discovery(_) => "discovery",
            Step::Jwks(_) => "key set fetch",
        };
        let keeping = match self.fetched_at {
            Some(at) => format!(
                "keeping the last good key set ({} s old)",
                now.saturating_sub(at) / 1000
            ),
            None => "no key set yet".to_owned(),
        };
        Event {
            ok: false,
            message: format!(
                "{what} for {} failed: {reason}; {keeping}; retry in {} ms",
                self.issuer, backoff
            ),
            settled: true,
        }
    }

    /// The discovery document's `userinfo_endpoint`, once discovered.
    pub fn userinfo_endpoint(&self) -> Option<&str> {
        self.userinfo_endpoint.as_deref()
    }

    /// Number of keys in use (0 when none).
    pub fn key_count(&self) -> usize {
        self.current.as_ref().map_or(0, |k| k.len())
    }

    /// Age of the key set in seconds, if there is one.
    pub fn age_secs(&self, now: u64) -> Option<u64> {
        self.fetched_at.map(|at| now.saturating_sub(at) / 1000)
    }
}

/// An issuer, by its position in the compiled configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IssuerId(pub(crate) usize);

impl IssuerId {
    /// The position, for tables indexed like the issuers.
    pub fn index(self) -> usize {
        self.0
    }
}

/// Where a checked issuer's keys come from.
#[derive(Debug)]
pub enum IssuerKeys {
    /// Inline keys, fixed for the life of the configuration.
    Local(Rc<KeySet>),
    /// Keys fetched through an Envoy cluster; their state lives in a
    /// [`KeyStore`].
    Remote {
        cluster: String,
        source: Source,
        policy: FetchPolicy,
    },
}

/// A checked issuer.
#[derive(Debug)]
pub struct Issuer {
    pub issuer: String,
    pub allowed: Vec<Alg>,
    pub time: TimePolicy,
    pub keys: IssuerKeys,
    /// The userinfo call made after an ID token of this issuer verifies.
    pub userinfo: Option<crate::userinfo::Userinfo>,
}

/// The remote key state of every issuer of a configuration, by issuer id
/// (`None` for issuers with inline keys). One per VM.
#[derive(Debug, Default)]
pub struct KeyStore {
    issuers: Vec<Option<RemoteKeys>>,
}

impl KeyStore {
    /// Fresh state for these issuers: every remote one wants a fetch at once.
    pub fn new(issuers: &[Issuer]) -> KeyStore {
        KeyStore {
            issuers: issuers
                .iter()
                .map(|i| match &i.keys {
                    IssuerKeys::Local(_) => None,
                    IssuerKeys::Remote {
                        cluster,
                        source,
                        policy,
                    } => Some(RemoteKeys::new(
                        &i.issuer,
                        cluster,
                        source.clone(),
                        policy.clone(),
                        &i.allowed,
                    )),
                })
                .collect(),
        }
    }

    /// The remote state of issuer `id`, if it has remote keys.
    pub fn get(&self, id: IssuerId) -> Option<&RemoteKeys> {
        self.issuers.get(id.0).and_then(Option::as_ref)
    }

    /// The remote state of issuer `id`, if it has remote keys.
    pub fn get_mut(&mut self, id: IssuerId) -> Option<&mut RemoteKeys> {
        self.issuers.get_mut(id.0).and_then(Option::as_mut)
    }

    /// The fetch policy of issuer `id`, if it has remote keys.
    pub fn policy(&self, id: IssuerId) -> Option<&FetchPolicy> {
        self.get(id).map(|r| &r.policy)
    }

    /// Every issuer with remote keys, with its id.
    pub fn remote(&self) -> impl Iterator<Item = (IssuerId, &RemoteKeys)> {
        self.issuers
            .iter()
            .enumerate()
            .filter_map(|(i, r)| Some((IssuerId(i), r.as_ref()?)))
    }

    /// Every issuer with remote keys, with its id, to step their fetches.
    pub fn remote_mut(&mut self) -> impl Iterator<Item = (IssuerId, &mut RemoteKeys)> {
        self.issuers
            .iter_mut()
            .enumerate()
            .filter_map(|(i, r)| Some((IssuerId(i), r.as_mut()?)))
    }

    /// [`KeySet::precompute_tables`] for every remote issuer's current key
    /// set: the tables a new key set needs, built off the request path.
    pub fn precompute_tables(&self) -> usize {
        self.issuers
            .iter()
            .flatten()
            .filter_map(|r| r.current.as_deref())
            .map(KeySet::precompute_tables)
            .sum()
    }

    /// True when any issuer fetches keys remotely.
    pub fn has_remote(&self) -> bool {
        self.issuers.iter().any(Option::is_some)
    }
}

#[cfg(test)]
// Tests may panic: a panic is a failed test, not a crashed VM.
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;
    use crate::mint::{load_pem, public_jwk};
    use serde_json::json;

    const ISS: &str = "https://mpass-proxy-test.csc.fi";
    const KEYSET: &str = "https://mpass-proxy-test.csc.fi/idp/profile/oidc/keyset";
    /// A fixed clock: 2026-11-26T00:00:00Z in milliseconds.
    const T0: u64 = 1_795_651_200_000;

    fn jwks(keys: &[(&str, &str)]) -> Vec<u8> {
        let keys: Vec<serde_json::Value> = keys
            .iter()
            .map(|(file, kid)| {
                let pem = format!("{}/tests/keys/{file}", env!("CARGO_MANIFEST_DIR"));
                public_jwk(&load_pem(pem).unwrap(), Some(kid), Some(Alg::RS256)).unwrap()
            })
            .collect();
        serde_json::to_vec(&json!({ "keys": keys })).unwrap()
    }

    fn keys_a() -> Vec<u8> {
        jwks(&[("rsa-a.pem", "a")])
    }

    fn ok(body: Vec<u8>) -> Fetched {
        Fetched::Response { status: 200, body }
    }

    fn target(uri: &str) -> Target {
        Target::parse(uri).unwrap()
    }

    #[test]
    fn a_second_unknown_kid_before_the_refetch_starts_waits_for_the_same_refetch() {
        let mut r = remote();
        let step = r.due(T0).unwrap();
        r.on_fetched(T0, &step, ok(keys_a()));
        assert!(r.request_kid_refetch(T0 + 10));
        assert!(
            r.request_kid_refetch(T0 + 20),
            "refused before the refetch started"
        );
        let step = r.due(T0 + 30).unwrap();
        assert!(r.take_forced());
        assert!(r.request_kid_refetch(T0 + 40));
        r.on_fetched(T0 + 50, &step, ok(keys_a()));
        // Spent: the next unknown kid within the interval is refused.
        assert!(!r.request_kid_refetch(T0 + 60));
        assert!(!r.take_forced());
    }

    #[test]
    fn a_key_set_adopted_from_another_vm_ages_from_its_fetch_time() {
        let mut r = remote();
        assert!(r.due(T0).is_some());
        let fetched_at = T0 - 1_000;
        let event = r.adopt_shared(fetched_at, Some("https://op.example/userinfo"), &keys_a());
        assert!(event.ok && event.settled, "{event:?}");
        assert!(!r.in_flight());
        assert_eq!(r.key_count(), 1);
        assert!(matches!(r.availability(T0), Availability::Ready(_)));
        // What the other VM's discovery found comes with the key set.
        assert_eq!(r.userinfo_endpoint(), Some("https://op.example/userinfo"));
        // The next refresh and max_stale count from the other VM's fetch.
        let policy = FetchPolicy::default();
        assert_eq!(r.due(fetched_at + policy.cache_duration_ms - 1), None);
        let stale = fetched_at + policy.max_stale_ms + 1;
        assert!(matches!(r.availability(stale), Availability::Unavailable));
        // Adopting is not a fetch of this VM's.
        assert_eq!((r.successes, r.errors), (0, 0));
    }

    #[test]
    fn a_shared_key_set_over_the_size_limit_or_unusable_is_not_adopted() {
        let mut r = remote();
        r.policy.max_response_bytes = 10;
        let event = r.adopt_shared(T0, Some("https://op.example/userinfo"), &keys_a());
        assert!(!event.ok && !event.settled);
        assert_eq!(r.key_count(), 0);
        assert_eq!(r.userinfo_endpoint(), None);
        let mut r = remote();
        assert!(!r.adopt_shared(T0, None, b"{\"keys\":[]}").ok);
        assert!(!r.adopt_shared(T0, None, b"not json").ok);
        assert!(matches!(r.availability(T0), Availability::Unavailable));
    }

    fn remote() -> RemoteKeys {
        RemoteKeys::new(
            ISS,
            "mpass",
            Source::Jwks(target(KEYSET)),
            FetchPolicy::default(),
            &[Alg::RS256],
        )
    }

    fn discovering() -> RemoteKeys {
        RemoteKeys::new(
            ISS,
            "mpass",
            Source::Discovery {
                well_known: target(&format!("{ISS}/.well-known/openid-configuration")),
            },
            FetchPolicy::default(),
            &[Alg::RS256],
        )
    }

    fn kids(r: &RemoteKeys, now: u64) -> Vec<String> {
        match r.availability(now) {
            Availability::Ready(set) => set.kids().into_iter().map(str::to_owned).collect(),
            Availability::Unavailable => panic!("no key set"),
        }
    }

    fn is_unavailable(r: &RemoteKeys, now: u64) -> bool {
        matches!(r.availability(now), Availability::Unavailable)
    }

    /// Runs one fetch that is due at `now` with `result`.
    fn fetch(r: &mut RemoteKeys, now: u64, result: Fetched) -> Event {
        let step = r.due(now).expect("a fetch is due");
        r.on_fetched(now, &step, result)
    }

    #[test]
    fn first_fetch_is_due_at_once_and_requests_wait_until_then() {
        let mut r = remote();
        assert!(is_unavailable(&r, T0));
        assert_eq!(r.due(T0), Some(Step::Jwks(target(KEYSET))));
        assert!(r.in_flight());
        assert_eq!(r.due(T0 + 10), None, "one fetch at a time");
    }

    #[test]
    fn success_is_used_and_refreshed_after_cache_duration() {
        let mut r = remote();
        let event = fetch(&mut r, T0, ok(keys_a()));
        assert!(event.ok, "{}", event.message);
        assert_eq!(kids(&r, T0), ["a"]);
        assert_eq!(r.key_count(), 1);
        assert_eq!(r.successes, 1);
        assert_eq!(r.due(T0 + 599_999), None);
        assert_eq!(r.due(T0 + 600_000), Some(Step::Jwks(target(KEYSET))));
    }

    #[test]
    fn failure_keeps_the_last_good_set_and_backs_off_exponentially_to_the_max() {
        let mut r = remote();
        fetch(&mut r, T0, ok(keys_a()));
        let mut now = T0 + 600_000;
        let waits = [
            1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000, 60_000,
        ];
        for wait in waits {
            let event = fetch(&mut r, now, Fetched::Failed);
            assert!(!event.ok);
            assert!(event.message.contains("keeping the last good key set"));
            assert_eq!(kids(&r, now), ["a"], "the last good set stays in use");
            assert_eq!(
                r.clone().due(now + wait - 1),
                None,
                "before the backoff of {wait}"
            );
            now += wait;
        }
        assert_eq!(r.errors, 9);
        // A success resets the backoff.
        fetch(&mut r, now, ok(keys_a()));
        now += 600_000;
        fetch(&mut r, now, Fetched::Failed);
        assert_eq!(r.clone().due(now + 999), None);
        assert!(r.due(now + 1_000).is_some());
    }

    #[test]
    fn max_stale_makes_the_last_good_set_unavailable() {
        let mut r = remote();
        r.policy.max_stale_ms = 3_600_000;
        fetch(&mut r, T0, ok(keys_a()));
        fetch(&mut r, T0 + 600_000, Fetched::Failed);
        assert_eq!(kids(&r, T0 + 3_600_000), ["a"]);
        assert!(is_unavailable(&r, T0 + 3_600_001));
    }

    #[test]
    fn unknown_kid_refetch_is_at_most_once_per_interval_and_coalesced() {
        let mut r = remote();
        fetch(&mut r, T0, ok(keys_a()));
        let now = T0 + 1_000;
        assert!(
            r.request_kid_refetch(now),
            "the first unknown kid may refetch"
        );
        let step = r.due(now).unwrap();
        // While that fetch is in flight, more unknown kids wait for it.
        for i in 0..50 {
            assert!(r.request_kid_refetch(now + i));
            assert_eq!(r.due(now + i), None, "coalesced: no second fetch");
        }
        r.on_fetched(now + 60, &step, ok(keys_a()));
        // Within the interval: no refetch, answer unknown_key.
        assert!(!r.request_kid_refetch(now + 100));
        assert!(!r.request_kid_refetch(now + 29_999));
        assert_eq!(r.due(now + 29_999), None);
        // After it: one more.
        assert!(r.request_kid_refetch(now + 30_000));
        assert!(r.due(now + 30_000).is_some());
    }

    #[test]
    fn waiting_requests_do_not_bypass_the_backoff() {
        let mut r = remote();
        fetch(&mut r, T0, Fetched::Failed);
        fetch(&mut r, T0 + 1_000, Fetched::Failed);
        // The next attempt is due at T0 + 3 s; a burst of waiting requests
        // may bring it forward once per refetch interval, not once each.
        let mut early = 0;
        for t in (T0 + 1_100..T0 + 2_900).step_by(100) {
            r.wake(t);
            if let Some(step) = r.due(t) {
                early += 1;
                r.on_fetched(t, &step, Fetched::Failed);
            }
        }
        assert!(early <= 1, "{early} fetches brought forward");
    }

    #[test]
    fn discovery_keeps_its_userinfo_endpoint_across_a_failed_rediscovery() {
        let mut r = discovering();
        assert_eq!(r.userinfo_endpoint(), None);
        let step = r.due(T0).unwrap();
        let doc = json!({ "issuer": ISS, "jwks_uri": KEYSET,
                          "userinfo_endpoint": "https://op.example/userinfo" });
        r.on_fetched(T0, &step, ok(serde_json::to_vec(&doc).unwrap()));
        assert_eq!(r.userinfo_endpoint(), Some("https://op.example/userinfo"));
        let step = r.due(T0).unwrap();
        r.on_fetched(T0, &step, Fetched::Failed);
        assert_eq!(r.userinfo_endpoint(), Some("https://op.example/userinfo"));
    }

    #[test]
    fn discovery_then_jwks_uri() {
        let mut r = discovering();
        let step = r.due(T0).unwrap();
        assert_eq!(
            step,
            Step::Discovery(target(&format!("{ISS}/.well-known/openid-configuration")))
        );
        let doc = json!({ "issuer": ISS, "jwks_uri": KEYSET });
        let event = r.on_fetched(T0, &step, ok(serde_json::to_vec(&doc).unwrap()));
        assert!(event.ok, "{}", event.message);
        assert!(
            !event.settled,
            "waiting requests must wait for the key set too"
        );
        assert!(is_unavailable(&r, T0), "discovery alone gives no keys");
        assert_eq!(r.due(T0), Some(Step::Jwks(target(KEYSET))));
        let event = r.on_fetched(T0, &Step::Jwks(target(KEYSET)), ok(keys_a()));
        assert!(event.settled);
        assert_eq!(kids(&r, T0), ["a"]);
        // The refresh reuses the jwks_uri; a failure redoes discovery.
        assert_eq!(r.due(T0 + 600_000), Some(Step::Jwks(target(KEYSET))));
        r.on_fetched(T0 + 600_000, &Step::Jwks(target(KEYSET)), Fetched::Failed);
        assert!(matches!(r.due(T0 + 601_000), Some(Step::Discovery(_))));
        assert_eq!(kids(&r, T0 + 601_000), ["a"]);
    }

    #[test]
    fn discovery_naming_another_issuer_fails() {
        for other in [
            "https://evil.example",
            "https://mpass-proxy-test.csc.fi/",
            "HTTPS://MPASS-PROXY-TEST.CSC.FI",
        ] {
            let mut r = discovering();
            let doc = json!({ "issuer": other, "jwks_uri": KEYSET });
            let event = fetch(&mut r, T0, ok(serde_json::to_vec(&doc).unwrap()));
            assert!(!event.ok, "{other}");
            assert!(event.message.contains("another issuer"));
            assert!(matches!(r.due(T0 + 1_000), Some(Step::Discovery(_))));
        }
    }

    #[test]
    fn discovery_without_a_usable_jwks_uri_fails() {
        for doc in [
            json!({ "issuer": ISS }),
            json!({ "issuer": ISS, "jwks_uri": "ftp://x/keys" }),
            json!([1, 2]),
        ] {
            let mut r = discovering();
            let event = fetch(&mut r, T0, ok(serde_json::to_vec(&doc).unwrap()));
            assert!(!event.ok, "{doc}");
            assert_eq!(r.errors, 1);
        }
    }

    #[test]
    fn oversized_500_garbage_and_keyless_sets_are_failures() {
        let cases = [
            Fetched::TooLarge,
            Fetched::Failed,
            Fetched::Response {
                status: 500,
                body: keys_a(),
            },
            Fetched::Response {
                status: 404,
                body: Vec::new(),
            },
            ok(b"<html>not json".to_vec()),
            ok(b"{\"keys\": 3}".to_vec()),
            ok(b"{\"keys\": []}".to_vec()),
            // A key set with no key usable for RS256.
            ok(serde_json::to_vec(&json!({ "keys": [public_jwk(
                &load_pem(format!("{}/tests/keys/ec-p256.pem", env!("CARGO_MANIFEST_DIR"))).unwrap(),
                Some("ec"),
                Some(Alg::ES256),
            ).unwrap()] }))
            .unwrap()),
        ];
        for result in cases {
            let mut r = remote();
            let label = format!("{result:?}").chars().take(40).collect::<String>();
            let event = fetch(&mut r, T0, result);
            assert!(!event.ok, "{label}");
            assert!(event.settled);
            assert!(
                event.message.contains("no key set yet"),
                "{}",
                event.message
            );
            assert!(is_unavailable(&r, T0), "{label}");
            assert_eq!((r.successes, r.errors), (0, 1));
            // ... and with a good set in place, the same result keeps it.
        }
    }

    #[test]
    fn rotation_replaces_the_set_and_a_removed_kid_is_gone_after_refresh() {
        let mut r = remote();
        fetch(&mut r, T0, ok(jwks(&[("rsa-a.pem", "a")])));
        let t1 = T0 + 600_000;
        fetch(
            &mut r,
            t1,
            ok(jwks(&[("rsa-a.pem", "a"), ("rsa-b.pem", "b")])),
        );
        assert_eq!(kids(&r, t1), ["a", "b"]);
        let t2 = t1 + 600_000;
        let event = fetch(&mut r, t2, ok(jwks(&[("rsa-b.pem", "b")])));
        assert!(event.message.contains("loaded"), "{}", event.message);
        assert_eq!(kids(&r, t2), ["b"], "a is gone");
        let event = fetch(&mut r, t2 + 600_000, ok(jwks(&[("rsa-b.pem", "b")])));
        assert!(event.message.contains("unchanged"), "{}", event.message);
    }

    #[test]
    fn a_lost_fetch_is_given_up_after_twice_the_timeout() {
        let mut r = remote();
        assert!(r.due(T0).is_some());
        assert_eq!(r.due(T0 + 9_999), None);
        assert!(r.due(T0 + 10_000).is_some());
    }

    #[test]
    fn targets_are_plain_http_urls_only() {
        assert_eq!(
            Target::parse("https://mpass-proxy.csc.fi/idp/profile/oidc/keyset"),
            Some(Target {
                authority: "mpass-proxy.csc.fi".into(),
                path: "/idp/profile/oidc/keyset".into()
            })
        );
        assert_eq!(
            Target::parse("http://127.0.0.1:8080").map(|t| t.path),
            Some("/".into())
        );
        for bad in [
            "ftp://x/y",
            "https://",
            "https://user@host/",
            "https://host/a b",
            "https://host/#frag",
        ] {
            assert_eq!(Target::parse(bad), None, "{bad}");
        }
    }
}
