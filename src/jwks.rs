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
use crate::config::{Config, IssuerKeys};
use crate::keys::KeySet;

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
#[derive(Debug)]
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
    /// Fetch counters, for the glue's metrics.
    pub successes: u64,
    pub errors: u64,
}

/// A state change worth a log line (never a body, never key material).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub ok: bool,
    pub message: String,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
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
        if self.in_flight.is_some() {
            return true;
        }
        if let Some(last) = self.last_kid_refetch {
            if now.saturating_sub(last) < self.policy.refetch_interval_ms {
                return false;
            }
        }
        self.last_kid_refetch = Some(now);
        self.next_fetch_at = now;
        true
    }

    /// Schedules a fetch as soon as possible (used when a request is parked
    /// waiting for a first key set).
    pub fn wake(&mut self, now: u64) {
        if self.in_flight.is_none() && self.current.is_none() {
            self.next_fetch_at = self.next_fetch_at.min(now);
        }
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
                        return Event { ok: true, message };
                    }
                    Err(e) => Err(format!("not a usable JWKS: {e}")),
                }
            }
        };
        let reason = outcome.err().unwrap_or_default();
        self.fail(now, step, &reason)
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
                self.next_fetch_at = now;
                Event {
                    ok: true,
                    message: format!("discovery for {} found its jwks_uri", self.issuer),
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
        }
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

/// The remote key state of every issuer of a configuration, by issuer index
/// (`None` for issuers with inline keys). One per VM.
#[derive(Debug, Default)]
pub struct KeyStore {
    pub issuers: Vec<Option<RemoteKeys>>,
}

impl KeyStore {
    /// Fresh state for `config`: every remote issuer wants a fetch at once.
    pub fn new(config: &Config) -> KeyStore {
        KeyStore {
            issuers: config
                .issuers
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

    /// The remote state of issuer `i`, if it has remote keys.
    pub fn get_mut(&mut self, i: usize) -> Option<&mut RemoteKeys> {
        self.issuers.get_mut(i).and_then(Option::as_mut)
    }

    /// True when any issuer fetches keys remotely.
    pub fn has_remote(&self) -> bool {
        self.issuers.iter().any(Option::is_some)
    }
}
