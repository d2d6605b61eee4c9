//! The MPASSid management service as a source of permissions over time: the
//! configuration of the source, when to fetch, what a fetch result means, and
//! which organisations permit each provider right now. Pure: the glue does the
//! HTTP calls through an Envoy cluster and passes the results and the clock
//! in, as for remote keys ([`crate::jwks::RemoteKeys`]).
//!
//! Behaviour:
//! - one refresh reads two documents, `<base_uri>/api/v2/provisioning/identityproviders`
//!   and `.../serviceproviders`, with HTTP Basic credentials; the refresh
//!   succeeds only when both answer 200 within the size limit and
//!   [`Snapshot::parse`] accepts them;
//! - refresh at start, then every `refresh_interval` (at least 1 s); a failed
//!   refresh keeps the last good snapshot (up to `max_stale`, then [`RegistrySource::permitted`]
//!   answers `None`: the engine answers 503 `registry_unavailable`) and is
//!   retried with exponential backoff (1 s doubling, at most 60 s and at
//!   most `refresh_interval`);
//! - the registry's "empty permissions = every service" is **not** a
//!   permission here unless the organisation is listed in
//!   `allow_all_services_for`; each organisation refused that way is named
//!   in a warning when it first appears;
//! - a client id registered on more than one active service provider makes
//!   that provider's registry permissions empty (deny, with a warning): the
//!   management service does not check uniqueness, so whoever registers a
//!   copy of a client id could otherwise borrow the permissions given to
//!   another service;
//! - [`RegistrySource::generation`] changes whenever the permitted
//!   organisations or the test learner setting of any watched provider
//!   change, so the engine can drop cached outcomes. Staleness is a matter of
//!   time, not of content: check [`RegistrySource::permitted`] per request.
//!
//! The credentials are kept in a [`BasicAuth`] whose `Debug` hides them; no
//! message of this module contains them or a response body.

use std::collections::BTreeSet;
use std::fmt;
use std::rc::Rc;

use base64::Engine as _;
use serde::Deserialize;

use crate::claims::is_organisation_oid;
use crate::config::compile::{cluster_name, positive, set_duration};
use crate::error::{index, join, ConfigError};
use crate::jwks::{FetchPolicy, Fetched, Target};
use crate::registry::{Permissions, Phase, Snapshot};

/// The provisioning path of the identity providers, under `base_uri`.
pub const IDENTITY_PROVIDERS_PATH: &str = "/api/v2/provisioning/identityproviders";
/// The provisioning path of the service providers, under `base_uri`.
pub const SERVICE_PROVIDERS_PATH: &str = "/api/v2/provisioning/serviceproviders";

/// Default time between refreshes.
pub const DEFAULT_REFRESH_INTERVAL_MS: u64 = 300_000;
/// Default upper bound on one provisioning document. The identity providers
/// of the whole country, each with its permissions and their member
/// services, run to megabytes.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
/// Largest accepted `max_response_bytes`.
pub const MAX_RESPONSE_BYTES_LIMIT: usize = 64 * 1024 * 1024;

// ------------------------------------------------------------ configuration

/// The deployment phase whose integrations count, by configuration name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PhaseName {
    Production,
    Preproduction,
    Testing,
}

impl From<PhaseName> for Phase {
    fn from(p: PhaseName) -> Phase {
        match p {
            PhaseName::Production => Phase::Production,
            PhaseName::Preproduction => Phase::Preproduction,
            PhaseName::Testing => Phase::Testing,
        }
    }
}

/// The JSON of the registry source (`registry` in the plugin configuration).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// The Envoy cluster that reaches the management service (TLS is the
    /// cluster's business).
    pub cluster: String,
    /// The service's base URL, e.g. `https://virkailija.opintopolku.fi/mpassid`.
    pub base_uri: String,
    /// The VM environment variable holding the provisioning user name.
    pub username_env: String,
    /// The VM environment variable holding the provisioning password.
    pub password_env: String,
    /// Which integrations count: `production`, `preproduction` or `testing`.
    pub deployment_phase: PhaseName,
    #[serde(default)]
    pub refresh_interval: Option<String>,
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub max_stale: Option<String>,
    #[serde(default)]
    pub max_response_bytes: Option<usize>,
    /// Organisation OIDs whose "empty permissions = all services" counts as
    /// a permission. Default none.
    #[serde(default)]
    pub allow_all_services_for: Vec<String>,
}

/// An HTTP Basic `Authorization` header value. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct BasicAuth(String);

impl BasicAuth {
    /// `Basic base64(username ":" password)` (RFC 7617). The user name may
    /// not contain `:`, and neither may hold control characters.
    pub fn new(username: &str, password: &str) -> Result<BasicAuth, &'static str> {
        if username.is_empty() || password.is_empty() {
            return Err("is empty");
        }
        if username.contains(':') {
            return Err("a Basic user name cannot contain ':'");
        }
        if username
            .chars()
            .chain(password.chars())
            .any(char::is_control)
        {
            return Err("contains control characters");
        }
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
        Ok(BasicAuth(format!("Basic {encoded}")))
    }

    /// The header value, for the glue's call only: never log it.
    pub fn header_value(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BasicAuth(<redacted>)")
    }
}

/// A checked registry source configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrySettings {
    pub cluster: String,
    pub identity_providers: Target,
    pub service_providers: Target,
    pub credentials: BasicAuth,
    pub phase: Phase,
    /// `cache_duration_ms` is the refresh interval; backoff and
    /// `refetch_interval_ms` (how often waiting requests may bring a first
    /// refresh forward) keep the key fetch defaults.
    pub policy: FetchPolicy,
    pub allow_all_services_for: BTreeSet<String>,
}

/// Compiles the registry source at `path`, reading the credentials with
/// `env`. Returns the settings and load-time warnings.
pub fn compile(
    wire: &RegistryConfig,
    env: &dyn Fn(&str) -> Option<String>,
    path: &str,
) -> Result<(RegistrySettings, Vec<String>), ConfigError> {
    let mut warnings = Vec::new();
    let cluster = cluster_name(&wire.cluster, &join(path, "cluster"))?;
    let (identity_providers, service_providers) = targets(&wire.base_uri, &join(path, "base_uri"))?;
    let username = secret(env, &wire.username_env, &join(path, "username_env"))?;
    let password = secret(env, &wire.password_env, &join(path, "password_env"))?;
    let credentials = BasicAuth::new(&username, &password).map_err(|m| {
        ConfigError::new(
            join(path, "username_env"),
            format!("the credentials are not usable: {m}"),
        )
    })?;

    let mut policy = FetchPolicy {
        cache_duration_ms: DEFAULT_REFRESH_INTERVAL_MS,
        max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        ..FetchPolicy::default()
    };
    for (slot, raw, name) in [
        (
            &mut policy.cache_duration_ms,
            &wire.refresh_interval,
            "refresh_interval",
        ),
        (&mut policy.timeout_ms, &wire.timeout, "timeout"),
        (&mut policy.max_stale_ms, &wire.max_stale, "max_stale"),
    ] {
        let at = join(path, name);
        set_duration(slot, raw.as_deref(), &at)?;
        // Zero would be no timeout at all in Envoy, a refresh on every timer
        // tick, or a snapshot that is stale as soon as it arrives.
        positive(*slot, &at)?;
    }
    if policy.cache_duration_ms < 1_000 {
        return Err(ConfigError::new(
            join(path, "refresh_interval"),
            "must be at least 1s: every refresh reads the whole registry",
        ));
    }
    // A failed refresh is retried no later than a regular one would be.
    policy.backoff_max_ms = policy.backoff_max_ms.min(policy.cache_duration_ms);
    policy.backoff_initial_ms = policy.backoff_initial_ms.min(policy.backoff_max_ms);
    if policy.max_stale_ms < policy.cache_duration_ms {
        return Err(ConfigError::new(
            join(path, "max_stale"),
            "must be at least refresh_interval: otherwise the snapshot goes stale between two good refreshes",
        ));
    }
    if let Some(n) = wire.max_response_bytes {
        if !(1024..=MAX_RESPONSE_BYTES_LIMIT).contains(&n) {
            return Err(ConfigError::new(
                join(path, "max_response_bytes"),
                format!("must be between 1024 and {MAX_RESPONSE_BYTES_LIMIT}"),
            ));
        }
        policy.max_response_bytes = n;
    }

    let list_path = join(path, "allow_all_services_for");
    let mut allow_all_services_for = BTreeSet::new();
    for (i, oid) in wire.allow_all_services_for.iter().enumerate() {
        if !is_organisation_oid(oid) {
            return Err(ConfigError::new(
                index(&list_path, i),
                "not an education provider's OPH OID (1.2.246.562.10.* or 1.2.246.562.99.*)",
            ));
        }
        if !allow_all_services_for.insert(oid.clone()) {
            return Err(ConfigError::new(index(&list_path, i), "listed twice"));
        }
        warnings.push(format!(
            "{list_path}: the registry's \"all services\" of {oid} counts as a permission for every provider"
        ));
    }
    Ok((
        RegistrySettings {
            cluster,
            identity_providers,
            service_providers,
            credentials,
            phase: wire.deployment_phase.into(),
            policy,
            allow_all_services_for,
        },
        warnings,
    ))
}

/// The two document targets under `base`. The credentials travel in every
/// request and hold write access to the management service: a plain
/// `http://` base outside loopback is refused.
fn targets(base: &str, path: &str) -> Result<(Target, Target), ConfigError> {
    if base.contains(['?', '#']) {
        return Err(ConfigError::new(path, "must not carry a query or fragment"));
    }
    let base = base.trim_end_matches('/');
    let parse = |suffix: &str| {
        Target::parse(&format!("{base}{suffix}"))
            .ok_or_else(|| ConfigError::new(path, "not an http(s) URL"))
    };
    let idps = parse(IDENTITY_PROVIDERS_PATH)?;
    let sps = parse(SERVICE_PROVIDERS_PATH)?;
    if base.starts_with("http://") && !is_loopback(&idps.authority) {
        return Err(ConfigError::new(
            path,
            "http:// only on loopback: the Basic credentials must not travel unencrypted",
        ));
    }
    Ok((idps, sps))
}

fn is_loopback(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host == "localhost" || host == "::1" || host.starts_with("127.")
}

fn secret(
    env: &dyn Fn(&str) -> Option<String>,
    name: &str,
    path: &str,
) -> Result<String, ConfigError> {
    if name.is_empty() {
        return Err(ConfigError::new(
            path,
            "must name a VM environment variable",
        ));
    }
    match env(name) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(ConfigError::new(
            path,
            format!("the VM environment variable {name} is not set or empty"),
        )),
    }
}

// ------------------------------------------------------- effective permission

/// What mpass-guard takes from the registry for one provider, after its own
/// rules ("all services" only when opted in, duplicates deny).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permitted {
    /// The permitting organisations, by OID.
    pub organisations: BTreeSet<String>,
    /// Whether the service allows test learner numbers.
    pub allow_test_learner_id: bool,
    /// Organisations that permit every service, refused because they are not
    /// in `allow_all_services_for`.
    pub refused_all_services: BTreeSet<String>,
    /// Whether any client id was found on a service provider.
    pub found: bool,
    /// Client ids on more than one service provider (then nothing is permitted).
    pub duplicate_client_id: Vec<String>,
}

/// Applies mpass-guard's rules to what the registry says.
pub fn effective(p: &Permissions, allow_all_services_for: &BTreeSet<String>) -> Permitted {
    let mut out = Permitted {
        allow_test_learner_id: p.allow_test_learner_id,
        found: p.found,
        duplicate_client_id: p.duplicate_client_id.clone(),
        ..Permitted::default()
    };
    for perm in &p.organisations {
        if perm.all_services && !allow_all_services_for.contains(&perm.organisation) {
            out.refused_all_services.insert(perm.organisation.clone());
        } else if out.duplicate_client_id.is_empty() {
            out.organisations.insert(perm.organisation.clone());
        }
    }
    if !out.duplicate_client_id.is_empty() {
        out.allow_test_learner_id = false;
    }
    out
}

// ------------------------------------------------------------ state machine

/// Which of the two documents a fetch is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Document {
    IdentityProviders,
    ServiceProviders,
}

/// One HTTP call the glue should make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The refresh this call belongs to; a result of an abandoned refresh
    /// is ignored.
    pub cycle: u64,
    pub document: Document,
    pub target: Target,
}

/// A state change worth a log line (never a body, never the credentials).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub ok: bool,
    pub message: String,
    /// True when this result ends a refresh, so requests waiting for a
    /// first snapshot may be decided.
    pub settled: bool,
    /// True when the generation changed.
    pub changed: bool,
    /// Warnings naming organisations or client ids, each given once when it
    /// appears.
    pub warnings: Vec<String>,
}

/// The registry state of one configuration. One per VM.
#[derive(Debug, Clone)]
pub struct RegistrySource {
    pub settings: RegistrySettings,
    /// The keys (audiences) of each watched provider, by provider index.
    watched: Vec<Vec<String>>,
    current: Option<Rc<Snapshot>>,
    permitted: Vec<Permitted>,
    fetched_at: Option<u64>,
    /// The refresh under way and when it started.
    in_flight: Option<(u64, u64)>,
    cycle: u64,
    identity_providers: Option<Vec<u8>>,
    service_providers: Option<Vec<u8>>,
    next_fetch_at: u64,
    failures: u32,
    last_wake: Option<u64>,
    generation: u64,
    /// Refresh counters, for the glue's metrics.
    pub successes: u64,
    pub errors: u64,
}

impl RegistrySource {
    /// A new state that wants its first refresh at once. `watched` holds,
    /// per provider index, the provider's `audiences` (an empty list for a
    /// provider that does not take organisations from the registry).
    pub fn new(settings: RegistrySettings, watched: Vec<Vec<String>>) -> RegistrySource {
        RegistrySource {
            settings,
            watched,
            current: None,
            permitted: Vec::new(),
            fetched_at: None,
            in_flight: None,
            cycle: 0,
            identity_providers: None,
            service_providers: None,
            next_fetch_at: 0,
            failures: 0,
            last_wake: None,
            generation: 0,
            successes: 0,
            errors: 0,
        }
    }

    fn fresh(&self, now: u64) -> bool {
        self.fetched_at
            .is_some_and(|at| now.saturating_sub(at) <= self.settings.policy.max_stale_ms)
    }

    /// The last good snapshot, if it is not older than `max_stale`.
    pub fn snapshot(&self, now: u64) -> Option<Rc<Snapshot>> {
        self.current.as_ref().filter(|_| self.fresh(now)).cloned()
    }

    /// What the registry permits for provider `provider` at `now`. `None`
    /// when there is no snapshot, it is older than `max_stale`, or the
    /// provider is not watched: answer 503 `registry_unavailable`.
    pub fn permitted(&self, provider: usize, now: u64) -> Option<&Permitted> {
        if !self.fresh(now) {
            return None;
        }
        self.permitted.get(provider)
    }

    /// Changes whenever what any watched provider is permitted changes; 0
    /// before the first good refresh.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The two calls to start, if a refresh is due and none is under way. A
    /// refresh under way for longer than twice the timeout is presumed lost.
    pub fn due(&mut self, now: u64) -> Option<[Step; 2]> {
        if let Some((_, started)) = self.in_flight {
            if now.saturating_sub(started) < self.settings.policy.timeout_ms.saturating_mul(2) {
                return None;
            }
            self.in_flight = None;
        }
        if now < self.next_fetch_at {
            return None;
        }
        self.cycle += 1;
        self.in_flight = Some((self.cycle, now));
        self.identity_providers = None;
        self.service_providers = None;
        let step = |document, target: &Target| Step {
            cycle: self.cycle,
            document,
            target: target.clone(),
        };
        Some([
            step(
                Document::IdentityProviders,
                &self.settings.identity_providers,
            ),
            step(Document::ServiceProviders, &self.settings.service_providers),
        ])
    }

    /// True while a refresh is under way.
    pub fn in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    /// The request headers of a call (`:authority`, `:path`, ...,
    /// `authorization`): the glue sends exactly these.
    pub fn headers<'a>(&'a self, step: &'a Step) -> [(&'a str, &'a str); 5] {
        [
            (":method", "GET"),
            (":path", step.target.path.as_str()),
            (":authority", step.target.authority.as_str()),
            ("accept", "application/json"),
            ("authorization", self.settings.credentials.header_value()),
        ]
    }

    /// A request is waiting for a first snapshot: brings the next refresh
    /// forward, at most once per `refetch_interval`, so a burst of requests
    /// during an outage does not defeat the backoff.
    pub fn wake(&mut self, now: u64) {
        if self.in_flight.is_some() || self.current.is_some() || now >= self.next_fetch_at {
            return;
        }
        if let Some(last) = self.last_wake {
            if now.saturating_sub(last) < self.settings.policy.refetch_interval_ms {
                return;
            }
        }
        self.last_wake = Some(now);
        self.next_fetch_at = now;
    }

    /// Applies the result of one call. `None` when there is nothing to say:
    /// the first of the two documents arrived, or the result belongs to a
    /// refresh that already ended.
    pub fn on_fetched(&mut self, now: u64, step: &Step, result: Fetched) -> Option<Event> {
        match self.in_flight {
            Some((cycle, _)) if cycle == step.cycle => {}
            _ => return None,
        }
        let what = match step.document {
            Document::IdentityProviders => "identity providers",
            Document::ServiceProviders => "service providers",
        };
        let limit = self.settings.policy.max_response_bytes;
        let body = match result {
            Fetched::Failed => {
                return Some(self.fail(now, &format!("{what}: the request failed or timed out")))
            }
            Fetched::TooLarge => {
                return Some(self.fail(now, &format!("{what}: the response exceeds {limit} bytes")))
            }
            Fetched::Response { status: 401, .. } => {
                return Some(self.fail(now, &format!("{what}: the credentials were refused (401)")))
            }
            Fetched::Response { status, .. } if status != 200 => {
                return Some(self.fail(now, &format!("{what}: the response status is {status}")))
            }
            Fetched::Response { body, .. } if body.len() > limit => {
                return Some(self.fail(now, &format!("{what}: the response exceeds {limit} bytes")))
            }
            Fetched::Response { body, .. } => body,
        };
        match step.document {
            Document::IdentityProviders => self.identity_providers = Some(body),
            Document::ServiceProviders => self.service_providers = Some(body),
        }
        let (Some(idps), Some(sps)) = (&self.identity_providers, &self.service_providers) else {
            return None;
        };
        let parsed = Snapshot::parse(idps, sps, self.settings.phase);
        self.identity_providers = None;
        self.service_providers = None;
        match parsed {
            Ok(snapshot) => Some(self.succeed(now, snapshot)),
            Err(e) => Some(self.fail(now, &e.to_string())),
        }
    }

    fn succeed(&mut self, now: u64, snapshot: Snapshot) -> Event {
        self.in_flight = None;
        let permitted: Vec<Permitted> = self
            .watched
            .iter()
            .map(|keys| {
                if keys.is_empty() {
                    Permitted::default()
                } else {
                    effective(
                        &snapshot.permissions(keys),
                        &self.settings.allow_all_services_for,
                    )
                }
            })
            .collect();
        let mut warnings = Vec::new();
        for (i, p) in permitted.iter().enumerate() {
            let old = self.permitted.get(i);
            let keys = self
                .watched
                .get(i)
                .map(|k| k.join(", "))
                .unwrap_or_default();
            for org in &p.refused_all_services {
                if !old.is_some_and(|o| o.refused_all_services.contains(org)) {
                    warnings.push(format!(
                        "registry: {org} permits every service (empty permissions); not a permission for {keys} unless listed in allow_all_services_for"
                    ));
                }
            }
            if !p.duplicate_client_id.is_empty()
                && old.is_none_or(|o| o.duplicate_client_id != p.duplicate_client_id)
            {
                warnings.push(format!(
                    "registry: client id {} is registered on more than one service provider; nothing is permitted for {keys} until that is resolved",
                    p.duplicate_client_id.join(", ")
                ));
            }
            let was_found = old.is_none_or(|o| o.found);
            if !keys.is_empty() && !p.found && was_found {
                warnings.push(format!(
                    "registry: no active service provider of this phase has client id {keys}"
                ));
            }
        }
        let had_idps = self
            .current
            .as_ref()
            .is_none_or(|c| !c.identity_providers.is_empty());
        if snapshot.identity_providers.is_empty() && had_idps {
            // Most likely the wrong deployment_phase or the wrong service:
            // every registry-backed request of every provider is refused.
            warnings.push(
                "registry: no active identity provider of this deployment phase; no organisation permits anything"
                    .to_owned(),
            );
        }
        let changed = self.current.is_none() || permitted != self.permitted;
        if changed {
            self.generation += 1;
        }
        self.permitted = permitted;
        let counts = (
            snapshot.identity_providers.len(),
            snapshot.service_providers.len(),
        );
        self.current = Some(Rc::new(snapshot));
        self.fetched_at = Some(now);
        self.failures = 0;
        self.successes += 1;
        self.next_fetch_at = now.saturating_add(self.settings.policy.cache_duration_ms);
        Event {
            ok: true,
            message: format!(
                "registry {}: {} identity provider(s), {} service provider(s) of this phase",
                if changed {
                    "loaded, permissions changed"
                } else {
                    "refreshed, permissions unchanged"
                },
                counts.0,
                counts.1
            ),
            settled: true,
            changed,
            warnings,
        }
    }

    fn fail(&mut self, now: u64, reason: &str) -> Event {
        self.in_flight = None;
        self.identity_providers = None;
        self.service_providers = None;
        self.errors += 1;
        self.failures = self.failures.saturating_add(1);
        let policy = &self.settings.policy;
        let shift = self.failures.saturating_sub(1).min(16);
        let backoff = policy
            .backoff_initial_ms
            .saturating_mul(1u64 << shift)
            .min(policy.backoff_max_ms);
        self.next_fetch_at = now.saturating_add(backoff);
        let keeping = match self.fetched_at {
            Some(at) if self.fresh(now) => format!(
                "keeping the last good snapshot ({} s old)",
                now.saturating_sub(at) / 1000
            ),
            Some(at) => format!(
                "the last good snapshot is {} s old, past max_stale: requests get 503",
                now.saturating_sub(at) / 1000
            ),
            None => "no snapshot yet".to_owned(),
        };
        Event {
            ok: false,
            message: format!("registry refresh failed: {reason}; {keeping}; retry in {backoff} ms"),
            settled: true,
            changed: false,
            warnings: Vec::new(),
        }
    }

    /// Whether a good snapshot was ever loaded (it may be stale now).
    pub fn has_snapshot(&self) -> bool {
        self.current.is_some()
    }

    /// Whether the latest refresh failed (the last good snapshot, if any,
    /// is being served).
    pub fn failing(&self) -> bool {
        self.failures > 0
    }

    /// Age of the snapshot in seconds, if there is one.
    pub fn age_secs(&self, now: u64) -> Option<u64> {
        self.fetched_at.map(|at| now.saturating_sub(at) / 1000)
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
    use serde_json::json;

    /// A fixed clock: 2026-11-26T00:00:00Z in milliseconds.
    const T0: u64 = 1_795_651_200_000;
    const TESTIKUNTA: &str = "1.2.246.562.10.99887766551";
    const KAIKKIKUNTA: &str = "1.2.246.562.10.11111111111";
    const MUU: &str = "1.2.246.562.10.44444444444";

    fn idp(id: i64, org: &str, sets: &[i64]) -> serde_json::Value {
        json!({
            "id": id, "organization": {"oid": org, "name": "x", "children": null},
            "permissions": sets.iter().map(|s| json!({"to": {"id": s, "integrations": []}})).collect::<Vec<_>>(),
            "deploymentPhase": 1, "active": true,
            "configurationEntity": {"attributes": [], "idp": {"type": "wilma"}}
        })
    }

    fn idps(items: &[serde_json::Value]) -> Vec<u8> {
        serde_json::to_vec(&json!({ "identityProviders": items })).unwrap()
    }

    /// Two services: `oppimateriaali` in set 3000045 (test learners allowed)
    /// and `other` in set 3000099.
    fn sps() -> Vec<u8> {
        sps_with(&[("oppimateriaali", 3000045), ("other", 3000099)])
    }

    fn sps_with(services: &[(&str, i64)]) -> Vec<u8> {
        let items: Vec<_> = services
            .iter()
            .enumerate()
            .map(|(i, (client, set))| json!({
                "id": 2000210 + i as i64, "integrationSets": [{"id": set, "configurationEntity": {"attributes": [], "set": {"type": "sp"}}}],
                "deploymentPhase": 1, "active": true,
                "configurationEntity": {"attributes": [{"type": "data", "name": "allowtestlearnerid", "content": "true"}],
                    "sp": {"type": "oidc", "clientId": client}}
            }))
            .collect();
        serde_json::to_vec(&json!({ "serviceProviders": items })).unwrap()
    }

    fn default_idps() -> Vec<u8> {
        idps(&[
            idp(1000123, TESTIKUNTA, &[3000045]),
            idp(1000124, KAIKKIKUNTA, &[]),
            idp(1000126, MUU, &[3000099]),
        ])
    }

    fn env(name: &str) -> Option<String> {
        match name {
            "MGMT_USER" => Some("mpass-guard".to_owned()),
            "MGMT_PASSWORD" => Some("s3cret:with colon".to_owned()),
            _ => None,
        }
    }

    fn wire() -> serde_json::Value {
        json!({
            "cluster": "mpassid_mgmt",
            "base_uri": "https://virkailija.opintopolku.fi/mpassid/",
            "username_env": "MGMT_USER",
            "password_env": "MGMT_PASSWORD",
            "deployment_phase": "production",
        })
    }

    fn compile_json(v: serde_json::Value) -> Result<(RegistrySettings, Vec<String>), ConfigError> {
        let wire: RegistryConfig =
            serde_json::from_value(v).map_err(|e| ConfigError::new("", e.to_string()))?;
        compile(&wire, &env, "registry")
    }

    fn settings() -> RegistrySettings {
        compile_json(wire()).unwrap().0
    }

    fn source() -> RegistrySource {
        RegistrySource::new(
            settings(),
            vec![
                vec!["oppimateriaali".to_owned()],
                vec!["other".to_owned()],
                vec![],
            ],
        )
    }

    fn ok(body: Vec<u8>) -> Fetched {
        Fetched::Response { status: 200, body }
    }

    /// Runs one refresh that is due at `now`; the identity providers answer
    /// `first`, the service providers `second`.
    fn refresh(r: &mut RegistrySource, now: u64, first: Fetched, second: Fetched) -> Event {
        let [a, b] = r.due(now).expect("a refresh is due");
        let early = r.on_fetched(now, &a, first);
        match early {
            Some(event) => {
                // The refresh already ended: the second answer is ignored.
                assert_eq!(r.on_fetched(now, &b, second), None);
                event
            }
            None => r
                .on_fetched(now, &b, second)
                .expect("both documents arrived"),
        }
    }

    fn good(r: &mut RegistrySource, now: u64) -> Event {
        refresh(r, now, ok(default_idps()), ok(sps()))
    }

    fn orgs(r: &RegistrySource, provider: usize, now: u64) -> Vec<String> {
        r.permitted(provider, now)
            .expect("a fresh snapshot")
            .organisations
            .iter()
            .cloned()
            .collect()
    }

    #[test]
    fn the_configuration_compiles_to_two_documents_under_the_base_uri() {
        let s = settings();
        assert_eq!(s.identity_providers.authority, "virkailija.opintopolku.fi");
        assert_eq!(
            s.identity_providers.path,
            "/mpassid/api/v2/provisioning/identityproviders"
        );
        assert_eq!(
            s.service_providers.path,
            "/mpassid/api/v2/provisioning/serviceproviders"
        );
        assert_eq!(s.phase, Phase::Production);
        assert_eq!(s.policy.cache_duration_ms, DEFAULT_REFRESH_INTERVAL_MS);
        assert_eq!(s.policy.max_response_bytes, DEFAULT_MAX_RESPONSE_BYTES);
        assert!(s.allow_all_services_for.is_empty());
    }

    #[test]
    fn credentials_become_a_basic_header_that_debug_output_hides() {
        let s = settings();
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("mpass-guard:s3cret:with colon")
        );
        assert_eq!(s.credentials.header_value(), expected);
        let shown = format!("{s:?}");
        assert!(!shown.contains(&expected[6..]), "{shown}");
        assert!(!shown.contains("s3cret"), "{shown}");
        let r = source();
        let step = r.clone().due(T0).unwrap()[0].clone();
        let headers = r.headers(&step);
        assert!(headers.contains(&("authorization", expected.as_str())));
        assert!(headers.contains(&(":path", "/mpassid/api/v2/provisioning/identityproviders")));
    }

    #[test]
    fn configuration_errors_name_the_field() {
        let cases = [
            (json!({"base_uri": "ftp://x"}), "registry.base_uri"),
            (
                json!({"base_uri": "http://mgmt.example.fi"}),
                "registry.base_uri",
            ),
            (
                json!({"base_uri": "https://x/mpassid?a=1"}),
                "registry.base_uri",
            ),
            (json!({"cluster": "two words"}), "registry.cluster"),
            (json!({"username_env": "NOT_SET"}), "registry.username_env"),
            (json!({"password_env": ""}), "registry.password_env"),
            (
                json!({"refresh_interval": "5 minutes"}),
                "registry.refresh_interval",
            ),
            (json!({"timeout": "0s"}), "registry.timeout"),
            (
                json!({"refresh_interval": "500ms"}),
                "registry.refresh_interval",
            ),
            (
                json!({"refresh_interval": "600s", "max_stale": "300s"}),
                "registry.max_stale",
            ),
            (
                json!({"max_response_bytes": 10}),
                "registry.max_response_bytes",
            ),
            (
                json!({"allow_all_services_for": [KAIKKIKUNTA, "30076"]}),
                "registry.allow_all_services_for[1]",
            ),
            (
                json!({"allow_all_services_for": [KAIKKIKUNTA, KAIKKIKUNTA]}),
                "registry.allow_all_services_for[1]",
            ),
        ];
        for (change, path) in cases {
            let mut v = wire();
            for (k, val) in change.as_object().unwrap() {
                v[k] = val.clone();
            }
            let err = compile_json(v.clone()).unwrap_err();
            assert_eq!(err.path, path, "{v}: {err}");
            assert!(!err.message.contains("s3cret"), "{err}");
        }
    }

    #[test]
    fn unknown_fields_and_unknown_phases_are_refused() {
        let mut v = wire();
        v["password"] = json!("inline");
        assert!(serde_json::from_value::<RegistryConfig>(v).is_err());
        let mut v = wire();
        v["deployment_phase"] = json!("prod");
        assert!(serde_json::from_value::<RegistryConfig>(v).is_err());
        for (name, phase) in [
            ("testing", Phase::Testing),
            ("preproduction", Phase::Preproduction),
        ] {
            let mut v = wire();
            v["deployment_phase"] = json!(name);
            assert_eq!(compile_json(v).unwrap().0.phase, phase);
        }
    }

    #[test]
    fn plain_http_is_accepted_on_loopback_only() {
        for base in [
            "http://127.0.0.1:8080/mpassid",
            "http://localhost:1",
            "http://[::1]:80",
        ] {
            let mut v = wire();
            v["base_uri"] = json!(base);
            assert!(compile_json(v).is_ok(), "{base}");
        }
    }

    #[test]
    fn first_refresh_is_due_at_once_and_nothing_is_permitted_until_it_succeeds() {
        let mut r = source();
        assert_eq!(r.permitted(0, T0), None);
        assert_eq!(r.generation(), 0);
        let [a, b] = r.due(T0).unwrap();
        assert_eq!(a.document, Document::IdentityProviders);
        assert_eq!(b.document, Document::ServiceProviders);
        assert!(r.in_flight());
        assert_eq!(r.due(T0 + 10), None, "one refresh at a time");
        assert_eq!(r.on_fetched(T0, &a, ok(default_idps())), None);
        assert_eq!(r.permitted(0, T0), None, "half a refresh permits nothing");
        let event = r.on_fetched(T0, &b, ok(sps())).unwrap();
        assert!(event.ok && event.settled && event.changed, "{event:?}");
        assert_eq!(orgs(&r, 0, T0), [TESTIKUNTA]);
        assert_eq!(orgs(&r, 1, T0), [MUU]);
        assert!(r.permitted(0, T0).unwrap().allow_test_learner_id);
        assert_eq!(r.permitted(2, T0), Some(&Permitted::default()));
        assert_eq!(
            r.permitted(3, T0),
            None,
            "an unwatched index is not permitted"
        );
        assert_eq!(r.generation(), 1);
    }

    #[test]
    fn the_documents_may_answer_in_either_order() {
        let mut r = source();
        let [a, b] = r.due(T0).unwrap();
        assert_eq!(r.on_fetched(T0, &b, ok(sps())), None);
        assert!(r.on_fetched(T0, &a, ok(default_idps())).unwrap().ok);
        assert_eq!(orgs(&r, 0, T0), [TESTIKUNTA]);
    }

    #[test]
    fn all_services_is_refused_with_a_warning_naming_the_organisation_unless_opted_in() {
        let mut r = source();
        let event = good(&mut r, T0);
        let named: Vec<_> = event
            .warnings
            .iter()
            .filter(|w| w.contains(KAIKKIKUNTA))
            .collect();
        assert_eq!(
            named.len(),
            2,
            "one per watched provider: {:?}",
            event.warnings
        );
        assert!(!orgs(&r, 0, T0).contains(&KAIKKIKUNTA.to_owned()));
        assert!(r
            .permitted(0, T0)
            .unwrap()
            .refused_all_services
            .contains(KAIKKIKUNTA));
        // The same refusal is not repeated at every refresh.
        let event = good(&mut r, T0 + 300_000);
        assert!(event.warnings.is_empty(), "{:?}", event.warnings);

        let mut v = wire();
        v["allow_all_services_for"] = json!([KAIKKIKUNTA]);
        let (opted, warnings) = compile_json(v).unwrap();
        assert!(warnings.iter().any(|w| w.contains(KAIKKIKUNTA)));
        let mut r = RegistrySource::new(opted, vec![vec!["oppimateriaali".to_owned()]]);
        let event = good(&mut r, T0);
        assert!(event.warnings.is_empty(), "{:?}", event.warnings);
        assert_eq!(orgs(&r, 0, T0), [KAIKKIKUNTA, TESTIKUNTA]);
    }

    #[test]
    fn a_withdrawn_permission_changes_the_generation_and_an_unchanged_refresh_does_not() {
        let mut r = source();
        good(&mut r, T0);
        let t1 = T0 + 300_000;
        assert_eq!(r.clone().due(t1 - 1), None);
        let event = good(&mut r, t1);
        assert!(event.ok && !event.changed, "{event:?}");
        assert_eq!(r.generation(), 1);
        let t2 = t1 + 300_000;
        let withdrawn = idps(&[idp(1000123, TESTIKUNTA, &[]), idp(1000126, MUU, &[3000099])]);
        let withdrawn = String::from_utf8(withdrawn).unwrap().replace(
            r#""permissions":[]"#,
            r#""permissions":[{"to":{"id":3000077}}]"#,
        );
        let event = refresh(&mut r, t2, ok(withdrawn.into_bytes()), ok(sps()));
        assert!(event.changed, "{event:?}");
        assert_eq!(r.generation(), 2);
        assert!(
            orgs(&r, 0, t2).is_empty(),
            "Testikunta withdrew the permission"
        );
        assert_eq!(orgs(&r, 1, t2), [MUU]);
    }

    #[test]
    fn a_changed_test_learner_setting_changes_the_generation() {
        let mut r = source();
        good(&mut r, T0);
        let strict = String::from_utf8(sps()).unwrap().replacen(
            r#""content":"true""#,
            r#""content":"false""#,
            1,
        );
        let event = refresh(
            &mut r,
            T0 + 300_000,
            ok(default_idps()),
            ok(strict.into_bytes()),
        );
        assert!(event.changed);
        assert!(!r.permitted(0, T0 + 300_000).unwrap().allow_test_learner_id);
    }

    #[test]
    fn failures_keep_the_last_good_snapshot_and_back_off_exponentially_to_the_max() {
        let mut r = source();
        good(&mut r, T0);
        let mut now = T0 + 300_000;
        for wait in [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000] {
            let event = refresh(&mut r, now, Fetched::Failed, ok(sps()));
            assert!(!event.ok && event.settled);
            assert!(
                event.message.contains("keeping the last good snapshot"),
                "{}",
                event.message
            );
            assert_eq!(orgs(&r, 0, now), [TESTIKUNTA]);
            assert_eq!(
                r.clone().due(now + wait - 1),
                None,
                "before the backoff of {wait}"
            );
            now += wait;
        }
        assert_eq!(r.errors, 8);
        assert_eq!(r.generation(), 1, "failures change nothing");
        good(&mut r, now);
        now += 300_000;
        refresh(&mut r, now, Fetched::Failed, ok(sps()));
        assert_eq!(
            r.clone().due(now + 999),
            None,
            "a success resets the backoff"
        );
        assert!(r.due(now + 1_000).is_some());
    }

    #[test]
    fn the_backoff_never_waits_longer_than_the_refresh_interval() {
        let mut v = wire();
        v["refresh_interval"] = json!("10s");
        let mut r = RegistrySource::new(compile_json(v).unwrap().0, vec![]);
        let mut now = T0;
        for wait in [1_000, 2_000, 4_000, 8_000, 10_000, 10_000] {
            refresh(&mut r, now, Fetched::Failed, ok(sps()));
            assert_eq!(r.clone().due(now + wait - 1), None, "before {wait}");
            assert!(r.clone().due(now + wait).is_some(), "at {wait}");
            now += wait;
        }
    }

    #[test]
    fn past_max_stale_nothing_is_permitted() {
        let mut v = wire();
        v["max_stale"] = json!("3600s");
        let mut r = RegistrySource::new(
            compile_json(v).unwrap().0,
            vec![vec!["oppimateriaali".to_owned()]],
        );
        good(&mut r, T0);
        refresh(&mut r, T0 + 300_000, Fetched::Failed, ok(sps()));
        assert_eq!(orgs(&r, 0, T0 + 3_600_000), [TESTIKUNTA]);
        assert_eq!(r.permitted(0, T0 + 3_600_001), None);
        assert!(r.snapshot(T0 + 3_600_001).is_none());
        let event = refresh(&mut r, T0 + 3_600_001, ok(b"<html>".to_vec()), ok(sps()));
        assert!(
            event.message.contains("past max_stale"),
            "{}",
            event.message
        );
        // A good refresh makes it available again.
        good(&mut r, T0 + 3_700_000);
        assert_eq!(orgs(&r, 0, T0 + 3_700_000), [TESTIKUNTA]);
    }

    #[test]
    fn garbage_errors_oversize_and_refused_documents_are_failures_that_keep_the_snapshot() {
        let limit = settings().policy.max_response_bytes;
        let cases: Vec<(Fetched, Fetched, &str)> = vec![
            (Fetched::Failed, ok(sps()), "failed or timed out"),
            (Fetched::TooLarge, ok(sps()), "exceeds"),
            (ok(vec![b' '; limit + 1]), ok(sps()), "exceeds"),
            (
                ok(default_idps()),
                Fetched::Response {
                    status: 500,
                    body: sps(),
                },
                "status is 500",
            ),
            (
                Fetched::Response {
                    status: 401,
                    body: Vec::new(),
                },
                ok(sps()),
                "credentials were refused",
            ),
            (
                Fetched::Response {
                    status: 404,
                    body: Vec::new(),
                },
                ok(sps()),
                "status is 404",
            ),
            (ok(b"<html>not json".to_vec()), ok(sps()), "malformed"),
            (
                ok(default_idps()),
                ok(b"{\"serviceProviders\": 3}".to_vec()),
                "unexpected",
            ),
            (ok(sps()), ok(sps()), "no identityProviders"),
        ];
        for (first, second, expect) in cases {
            let mut r = source();
            let event = refresh(&mut r, T0, first.clone(), second.clone());
            assert!(!event.ok, "{expect}");
            assert!(event.message.contains(expect), "{}", event.message);
            assert!(
                event.message.contains("no snapshot yet"),
                "{}",
                event.message
            );
            assert_eq!(r.permitted(0, T0), None);
            assert_eq!((r.successes, r.errors), (0, 1));
            // With a good snapshot in place, the same answer keeps it.
            let mut r = source();
            good(&mut r, T0);
            let event = refresh(&mut r, T0 + 300_000, first, second);
            assert!(!event.ok && !event.changed, "{expect}");
            assert_eq!(orgs(&r, 0, T0 + 300_000), [TESTIKUNTA], "{expect}");
            assert_eq!(r.generation(), 1);
        }
    }

    #[test]
    fn a_result_of_an_abandoned_refresh_is_ignored() {
        let mut r = source();
        let [a, b] = r.due(T0).unwrap();
        // Lost: after twice the timeout a new refresh starts.
        assert_eq!(r.due(T0 + 9_999), None);
        let [a2, b2] = r.due(T0 + 10_000).unwrap();
        assert_eq!(r.on_fetched(T0 + 10_001, &a, ok(default_idps())), None);
        assert_eq!(r.on_fetched(T0 + 10_001, &b, ok(sps())), None);
        assert_eq!(
            r.permitted(0, T0 + 10_001),
            None,
            "the late answers were not used"
        );
        assert_eq!(r.on_fetched(T0 + 10_002, &a2, ok(default_idps())), None);
        assert!(r.on_fetched(T0 + 10_002, &b2, ok(sps())).unwrap().ok);
    }

    #[test]
    fn a_duplicate_client_id_permits_nothing_and_is_named_in_a_warning() {
        let mut r = source();
        let dup = sps_with(&[
            ("oppimateriaali", 3000045),
            ("oppimateriaali", 3000099),
            ("other", 3000099),
        ]);
        let event = refresh(&mut r, T0, ok(default_idps()), ok(dup));
        assert!(event.ok);
        assert!(
            event
                .warnings
                .iter()
                .any(|w| w.contains("oppimateriaali") && w.contains("more than one")),
            "{:?}",
            event.warnings
        );
        let p = r.permitted(0, T0).unwrap();
        assert!(p.organisations.is_empty());
        assert!(!p.allow_test_learner_id);
        assert_eq!(p.duplicate_client_id, ["oppimateriaali"]);
        assert_eq!(orgs(&r, 1, T0), [MUU], "the other provider is not affected");
    }

    #[test]
    fn an_unknown_client_id_is_named_once() {
        let mut r = RegistrySource::new(settings(), vec![vec!["nobody".to_owned()]]);
        let event = good(&mut r, T0);
        assert!(
            event
                .warnings
                .iter()
                .any(|w| w.contains("client id nobody")),
            "{:?}",
            event.warnings
        );
        assert!(!r.permitted(0, T0).unwrap().found);
        let event = good(&mut r, T0 + 300_000);
        assert!(!event
            .warnings
            .iter()
            .any(|w| w.contains("client id nobody")));
    }

    #[test]
    fn a_registry_without_identity_providers_of_the_phase_is_warned_about() {
        let mut v = wire();
        v["deployment_phase"] = json!("testing");
        let mut r = RegistrySource::new(
            compile_json(v).unwrap().0,
            vec![vec!["oppimateriaali".to_owned()]],
        );
        let event = good(&mut r, T0);
        assert!(event.ok);
        assert!(
            event
                .warnings
                .iter()
                .any(|w| w.contains("no active identity provider")),
            "{:?}",
            event.warnings
        );
        assert!(orgs(&r, 0, T0).is_empty());
        let event = good(&mut r, T0 + 300_000);
        assert!(event.warnings.is_empty(), "said once: {:?}", event.warnings);
    }

    #[test]
    fn waiting_requests_do_not_bypass_the_backoff() {
        let mut r = source();
        refresh(&mut r, T0, Fetched::Failed, ok(sps()));
        refresh(&mut r, T0 + 1_000, Fetched::Failed, ok(sps()));
        let mut early = 0;
        for t in (T0 + 1_100..T0 + 2_900).step_by(100) {
            r.wake(t);
            if let Some([a, _]) = r.due(t) {
                early += 1;
                r.on_fetched(t, &a, Fetched::Failed);
            }
        }
        assert!(early <= 1, "{early} refreshes brought forward");
    }
}
