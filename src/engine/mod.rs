//! The whole per-request decision, pure: `Engine::handle(request, now,
//! state)` returns an [`Outcome`]; the glue only carries it out.
//!
//! Order matters and is fixed: sanitise client identity headers first (on
//! every path), then decide once whose request it is (routing's one
//! classification: a provider's protected path, its public prefix, a CORS
//! preflight, unmatched, or refused), then extract, verify and apply the
//! contract where the path is protected, seal every passing request the
//! same way ([`Sealer`]: every token of a configured issuer and every
//! session cookie out, except the one token a contract forwards), and only
//! then add released headers.
//!
//! The [`Engine`] is the compiled configuration and never changes. What
//! changes per VM (remote key state, token cache, counter names, parked
//! requests, audit batch) lives in one [`VmState`], owned by the glue's root
//! context and passed in as `&mut`. That choice, rather than `RefCell`s
//! inside the engine, lets the borrow checker prove no state is borrowed
//! twice (a `RefCell` would turn that bug into a panic, i.e. a trapped VM),
//! keeps the engine shareable and immutable, and lets a test hold and
//! inspect the state between requests.
//!
//! Modules: [`decision`] (what to do, applied to header lists),
//! [`refusal`] (typed refusals and their replies), [`audit`] (records and
//! batching), [`parked`] (the parked-request queue), [`counters`] (metric
//! names, interned), [`entry`] (token cache entries and their
//! revalidation).

pub mod audit;
pub mod counters;
pub mod decision;
mod entry;
pub mod parked;
pub mod refusal;
mod session;

use std::collections::hash_map::RandomState;
use std::fmt::Write as _;
use std::hash::BuildHasher;
use std::rc::Rc;

use ring::hmac;

use crate::cache::S3Fifo;
use crate::config::{Config, Provider, Unmatched};
use crate::contract::Contract;
use crate::extract::{Carrier, ExtractError, Found};
use crate::jwks::Fetched;
use crate::jwks::{Availability, IssuerId, IssuerKeys, KeyStore};
use crate::minted::{MintError, Slot};
use crate::registry_source::{Event as RegistryEvent, RegistrySource, Step as RegistryStep};
use crate::routing::{Lookup, ProviderId};
use crate::seal::{Known, Sealed, Sealer, Strip};
use crate::signing::CACHE_CONTROL;
use crate::userinfo::{Failure, Userinfo};
use crate::verify::{TokenError, Untrusted, Verified};

pub use audit::{Audit, AuditBatch, Pushed, TokenFacts};
use audit::{RecordMemo, RenderMemo, Who};
pub use counters::CounterId;
pub use decision::{Admitted, Decision, Outcome, Response, StrippedAudit, WaitFor};
pub use parked::ParkedQueue;
pub use refusal::Refusal;
pub use session::Call;

use counters::{Counters, Interner};
pub(crate) use entry::Shadowed;
use entry::{verdict_for, Contracts, Entry, Hit, Verdict};
use session::{Sessions, Slot as Session};

/// The parts of a request the decision needs. Header names are lowercase, as
/// Envoy passes them; pseudo-headers (`:authority`, `:path`) are included.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub headers: &'a [(String, String)],
    /// Envoy's `xds.route_name`, when a provider matches on route names.
    pub route_name: Option<&'a str>,
    /// The same headers with their values as the client sent the bytes
    /// (the rewrites of [`Sealer`] keep them byte for byte). Empty: the
    /// values of `headers` are the bytes.
    pub raw: &'a [(String, Vec<u8>)],
}

/// A header map as the host returns it: names, and values as bytes.
pub type RawHeaders = Vec<(String, Vec<u8>)>;

/// The text view of the header map as the host returns it (values as
/// bytes), and the bytes to keep as [`Request::raw`]. When every value is
/// UTF-8 (the usual case) the values move into the text view without a copy
/// and no raw map is kept: the text is the bytes. Otherwise the text view is
/// a lossy copy (for matching only) and the raw map is kept, so the rewrites
/// keep the bytes the client sent.
pub fn text_headers(raw: RawHeaders) -> (Vec<(String, String)>, RawHeaders) {
    if raw.iter().all(|(_, v)| std::str::from_utf8(v).is_ok()) {
        let headers = raw
            .into_iter()
            .map(|(n, v)| {
                let v = String::from_utf8(v)
                    .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
                (n, v)
            })
            .collect();
        return (headers, Vec::new());
    }
    let headers = raw
        .iter()
        .map(|(n, v)| (n.clone(), String::from_utf8_lossy(v).into_owned()))
        .collect();
    (headers, raw)
}

impl<'a> Request<'a> {
    /// A request whose header values are all text.
    pub fn new(headers: &'a [(String, String)], route_name: Option<&'a str>) -> Request<'a> {
        Request {
            headers,
            route_name,
            raw: &[],
        }
    }

    /// Every header as name and value bytes.
    fn byte_headers(&self) -> Box<dyn Iterator<Item = (&'a str, &'a [u8])> + 'a> {
        if self.raw.is_empty() {
            Box::new(self.headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())))
        } else {
            Box::new(self.raw.iter().map(|(n, v)| (n.as_str(), v.as_slice())))
        }
    }
}

/// The engine: the compiled configuration, immutable once made.
pub struct Engine {
    config: Config,
    pseudonym_key: Option<hmac::Key>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Everything of one VM that changes as requests are decided.
pub struct VmState {
    /// Remote key state per issuer; the glue drives its fetches.
    pub keys: KeyStore,
    /// The management service source (`registry`); the glue drives its
    /// fetches and hands the results to [`Engine::registry_fetched`].
    pub registry: Option<RegistrySource>,
    /// Per provider index: its contract under the current registry
    /// snapshot (registry-backed providers only), rebuilt when the
    /// snapshot's generation changes.
    registry_contracts: Vec<Option<Contracts>>,
    /// Requests waiting for something, decided again when it arrives.
    pub parked: ParkedQueue,
    /// Audit lines gathered for one log call.
    pub audit: AuditBatch,
    /// Verified tokens (the VM is single-threaded; the cache is per VM).
    cache: S3Fifo<u64, Entry>,
    /// The cache's keyed hash (SipHash with a random key per VM).
    token_hasher: RandomState,
    counters: Interner,
    /// Userinfo per session, and the calls to make.
    sessions: Sessions,
}

impl std::fmt::Debug for VmState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VmState")
            .field("keys", &self.keys)
            .field("parked", &self.parked)
            .field("cached_tokens", &self.cache.len())
            .finish_non_exhaustive()
    }
}

impl VmState {
    /// The name of a counter (without the `mpass_guard.` prefix).
    pub fn counter_name(&self, id: CounterId) -> Option<Rc<str>> {
        self.counters.name(id)
    }

    /// The names of every counter an outcome increments, in order.
    pub fn counter_names(&self, outcome: &Outcome) -> Vec<String> {
        outcome
            .counter_ids()
            .filter_map(|id| self.counter_name(id))
            .map(|n| n.to_string())
            .collect()
    }

    /// Number of verified tokens held in this VM's cache.
    pub fn cached_tokens(&self) -> usize {
        self.cache.len()
    }

    /// Parks a request decided at `now_ms` until `wait` is ready or its
    /// wait (the issuer's `initial_wait`) ends.
    pub fn park(&mut self, context_id: u32, wait: WaitFor, now_ms: u64) {
        let wait_ms = match &wait {
            WaitFor::Keys(issuer) => self.keys.policy(*issuer).map_or(0, |p| p.initial_wait_ms),
            WaitFor::Registry => self
                .registry
                .as_ref()
                .map_or(0, |r| r.settings.policy.initial_wait_ms),
            // Envoy ends the call at its timeout; the margin lets that
            // answer arrive before the deadline resumes the request.
            WaitFor::Userinfo(key) => self
                .sessions
                .timeout_ms(*key)
                .saturating_add(USERINFO_MARGIN_MS),
        };
        self.parked
            .park(context_id, wait, now_ms.saturating_add(wait_ms));
    }

    /// The userinfo calls to make, queued since the last take (the glue
    /// makes each and hands its response to [`Engine::userinfo_response`]).
    pub fn take_userinfo_calls(&mut self) -> Vec<Call> {
        self.sessions.take_calls()
    }

    /// Number of sessions with a userinfo result or call.
    pub fn userinfo_sessions(&self) -> usize {
        self.sessions.len()
    }

    /// The token cache's key: a SipHash, keyed at random per VM, of the
    /// token's last 64 bytes (its signature's, distinct for distinct
    /// tokens) - a fraction of a SHA-256 in V8. It only picks the entry: an
    /// entry answers only for a byte-equal token, so a collision, chance or
    /// forged, can only cause a miss, and only verified tokens are inserted.
    fn cache_key(&self, token: &str) -> u64 {
        let bytes = token.as_bytes();
        let tail = bytes.get(bytes.len().saturating_sub(64)..).unwrap_or(bytes);
        self.token_hasher.hash_one(tail)
    }
}

/// How long past its call's timeout a request waits for userinfo.
const USERINFO_MARGIN_MS: u64 = 1_000;

/// The result of a full verification.
struct Checked {
    token: Verified,
    issuer: IssuerId,
    /// Fingerprint of the verifying key; `None` for a provider's HS secret.
    key: Option<[u8; 32]>,
}

/// Why admission stopped short of a release.
enum Halt {
    /// Not a refusal yet: wait, then decide again.
    Wait(WaitFor),
    /// Refused, with what the audit may say of a verified token.
    Refuse(Refusal, Who),
}

impl From<Refusal> for Halt {
    fn from(r: Refusal) -> Halt {
        Halt::Refuse(r, Who::default())
    }
}

/// Per-request context for verification.
struct Ctx<'a> {
    now_ms: u64,
    state: &'a mut VmState,
    resumed: bool,
}

impl Engine {
    /// Wraps a compiled configuration.
    pub fn new(config: Config) -> Engine {
        let pseudonym_key = config
            .pseudonym_key
            .as_ref()
            .map(|k| hmac::Key::new(hmac::HMAC_SHA256, k));
        Engine {
            config,
            pseudonym_key,
        }
    }

    /// A fresh per-VM state for this configuration.
    pub fn new_state(&self) -> VmState {
        let mut counters = Interner::new(&self.config.stat_prefix);
        counters.unmatched_action(self.config.unmatched.name());
        counters.set_controllers(self.controllers());
        let registry = self
            .config
            .registry
            .as_ref()
            .map(|r| RegistrySource::new(r.clone(), self.config.registry_watched()));
        VmState {
            keys: KeyStore::new(&self.config.issuers),
            registry,
            registry_contracts: Vec::new(),
            parked: ParkedQueue::default(),
            audit: AuditBatch::new(self.config.audit_flush_ms),
            cache: S3Fifo::new(self.config.cache_max_entries, self.config.cache_max_bytes),
            token_hasher: RandomState::new(),
            counters,
            sessions: Sessions::new(self.config.cache_max_entries, self.config.cache_max_bytes),
        }
    }

    /// Whether some issuer calls userinfo (the glue then keeps a timer for
    /// the deadlines of requests waiting for it).
    pub fn uses_userinfo(&self) -> bool {
        self.config.issuers.iter().any(|i| i.userinfo.is_some())
    }

    /// Applies a userinfo call's response to its session (a session no
    /// longer waiting is left alone). Returns the counters to increment and
    /// the failure, if any (for the glue's log line: a reason, no value).
    pub fn userinfo_response(
        &self,
        key: u64,
        response: &crate::userinfo::Response,
        now_ms: u64,
        state: &mut VmState,
    ) -> (Vec<CounterId>, Option<Failure>) {
        let Some((id, sub, audiences, max_bytes)) = state.sessions.pending(key) else {
            return (Vec::new(), None);
        };
        let Some(issuer) = self.config.issuers.get(id.index()) else {
            return (Vec::new(), None);
        };
        let keys = match &issuer.keys {
            IssuerKeys::Local(keys) => Some(Rc::clone(keys)),
            IssuerKeys::Remote { .. } => {
                match state.keys.get_mut(id).map(|r| r.availability(now_ms)) {
                    Some(Availability::Ready(keys)) => Some(keys),
                    _ => None,
                }
            }
        };
        let expect = crate::userinfo::Expect {
            issuer,
            keys: keys.as_deref(),
            sub: &sub,
            audiences: &audiences,
            max_bytes,
        };
        match crate::userinfo::check(response, &expect) {
            Ok(claims) => {
                let extra = crate::userinfo::additions(&serde_json::Map::new(), claims);
                let bytes = serde_json::to_vec(&extra).map_or(0, |v| v.len());
                state
                    .sessions
                    .settle(key, Session::Done(Rc::new(extra)), bytes);
                (Vec::new(), None)
            }
            Err(f) => {
                state.sessions.settle(key, Session::Failed(f), 0);
                let c = state.counters.userinfo_failure(&issuer.issuer, f.reason());
                (vec![c], Some(f))
            }
        }
    }

    /// Applies the result of one registry call (see
    /// [`RegistrySource::on_fetched`]); when the permissions changed, the
    /// contracts of registry-backed providers are rebuilt under the new
    /// snapshot. Returns the event to log, if any.
    pub fn registry_fetched(
        &self,
        state: &mut VmState,
        now_ms: u64,
        step: &RegistryStep,
        result: Fetched,
    ) -> Option<RegistryEvent> {
        let source = state.registry.as_mut()?;
        let event = source.on_fetched(now_ms, step, result)?;
        if event.changed {
            let source = &*source;
            let mut controllers = self.controllers();
            state.registry_contracts = self
                .config
                .providers
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    if !p.uses_registry() {
                        return None;
                    }
                    let permitted = source.permitted(i, now_ms)?;
                    // The registry's organisations get controller labels of
                    // their own too: bounded by the registry, not by users.
                    controllers.extend(permitted.organisations.iter().cloned());
                    let under = |c: &Contract| {
                        Rc::new(c.under_registry(
                            &permitted.organisations,
                            permitted.allow_test_learner_id,
                        ))
                    };
                    Some(Contracts {
                        contract: under(&p.contract),
                        shadow: p.shadow.as_deref().map(under),
                    })
                })
                .collect();
            state.counters.set_controllers(controllers);
        }
        Some(event)
    }

    /// The contracts (enforced, shadow) that apply to this provider now, with the registry
    /// generation it belongs to (0 for a static contract). A
    /// registry-backed provider without a usable snapshot waits for the
    /// first one (once), then is refused with 503: never a release without
    /// the controllers' permissions.
    fn contract_now(
        &self,
        provider_index: ProviderId,
        provider: &Provider,
        state: &mut VmState,
        now_ms: u64,
        resumed: bool,
        counted: &mut Counters,
    ) -> Result<(Contracts, u64), Halt> {
        if !provider.uses_registry() {
            let own = Contracts {
                contract: Rc::clone(&provider.contract),
                shadow: provider.shadow.clone(),
            };
            return Ok((own, 0));
        }
        let Some(source) = state.registry.as_mut() else {
            return Err(Refusal::RegistryUnavailable.into());
        };
        if source.permitted(provider_index.index(), now_ms).is_some() {
            let Some(Some(contract)) = state.registry_contracts.get(provider_index.index()) else {
                return Err(Refusal::RegistryUnavailable.into());
            };
            if source.failing() {
                counted.push(state.counters.registry_stale);
            }
            return Ok((contract.clone(), source.generation()));
        }
        if !resumed && !source.has_snapshot() {
            source.wake(now_ms);
            return Err(Halt::Wait(WaitFor::Registry));
        }
        Err(Refusal::RegistryUnavailable.into())
    }

    /// Every controller (education-provider OID) a contract or shadow
    /// contract of this configuration names, in its organisations or its
    /// agreements: the bounded set of `controller=` labels.
    pub fn controllers(&self) -> Vec<String> {
        let mut out = Vec::new();
        for p in &self.config.providers {
            for c in std::iter::once(&p.contract).chain(p.shadow.as_ref()) {
                if let Some(list) = c.organisations() {
                    out.extend(
                        list.into_iter()
                            .filter(|o| crate::claims::is_organisation_oid(o))
                            .map(str::to_owned),
                    );
                }
                if let Some(a) = c.agreements() {
                    out.extend(a.iter().map(|(oid, _)| oid.to_owned()));
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Whether some provider matches on Envoy's route name (the glue then
    /// reads `xds.route_name` for each request).
    pub fn uses_route_names(&self) -> bool {
        self.config.matcher.uses_route_names
    }

    /// The audit flush interval in milliseconds (0: no batching).
    pub fn audit_flush_ms(&self) -> u64 {
        self.config.audit_flush_ms
    }

    /// The `stat_prefix=` value of every metric.
    pub fn stat_prefix(&self) -> &str {
        &self.config.stat_prefix
    }

    /// Builds the per-key verification tables of every key set in use, the
    /// inline ones and the remote ones `keys` holds now (see
    /// [`crate::keys::KeySet::precompute_tables`]). The glue calls it when
    /// the VM is configured and on every tick, so a new key set's tables are
    /// built off the request path; a request that comes first builds its
    /// key's table itself. Returns how many tables were built.
    pub fn precompute_key_tables(&self, keys: &KeyStore) -> usize {
        let local: usize = self
            .config
            .issuers
            .iter()
            .filter_map(|i| match &i.keys {
                IssuerKeys::Local(set) => Some(set.precompute_tables()),
                IssuerKeys::Remote { .. } => None,
            })
            .sum();
        local + keys.precompute_tables()
    }

    /// The configured RS*/PS* verifier (`rsa_verifier`), for the load log line.
    pub fn rsa_verifier(&self) -> crate::verify::RsaVerifier {
        self.config.rsa_verifier
    }

    /// The configured EdDSA verifier (`eddsa_verifier`), for the load log line.
    pub fn eddsa_verifier(&self) -> crate::verify::EddsaVerifier {
        self.config.eddsa_verifier
    }

    /// The configured ES256 verifier (`ec_verifier`), for the load log line.
    pub fn ec_verifier(&self) -> crate::verify::EcVerifier {
        self.config.ec_verifier
    }

    /// Whether audit lines also go to Envoy's application log (`audit.log`).
    pub fn audit_log(&self) -> bool {
        self.config.audit_log
    }

    /// Number of issuers and of providers configured.
    pub fn sizes(&self) -> (usize, usize) {
        (self.config.issuers.len(), self.config.providers.len())
    }

    /// Decides what happens to one request. `now_ms` is Unix milliseconds
    /// from the host clock; `state` is this VM's; `resumed` is set when a
    /// parked request is decided again (it must not wait twice).
    pub fn handle(
        &self,
        req: &Request<'_>,
        now_ms: u64,
        state: &mut VmState,
        resumed: bool,
    ) -> Outcome {
        let cfg = &self.config;
        let remove = cfg.sanitiser.spoofed(req.headers);
        let mut counters = Counters::new();
        if !remove.is_empty() {
            counters.push(state.counters.spoofed);
        }
        let authority = header(req.headers, ":authority")
            .or_else(|| header(req.headers, "host"))
            .unwrap_or_default();
        let path = header(req.headers, ":path").unwrap_or("/");
        // The gateway's own JWKS and discovery document, before any provider.
        if let Some(response) = self.gateway_document(req, authority, path) {
            return respond(response, counters, None);
        }
        let (provider_index, provider, public) =
            match cfg.matcher.find_checked(authority, path, req.route_name) {
                Lookup::Provider(i) => match cfg.provider(i) {
                    Some(p) => (i, p, false),
                    None => return forward(remove, counters),
                },
                Lookup::Public(i) => match cfg.provider(i) {
                    Some(p) => (i, p, true),
                    None => return forward(remove, counters),
                },
                Lookup::None => return self.unmatched(req, remove, counters, state),
                Lookup::Conflict => {
                    counters.push(state.counters.ambiguous_path);
                    let r = Refusal::AmbiguousPath.render(&cfg.realm);
                    return respond(r, counters, Some("ambiguous_path"));
                }
                Lookup::InvalidAuthority => {
                    counters.push(state.counters.invalid_authority);
                    return respond(
                        bad_request("invalid_authority"),
                        counters,
                        Some("invalid_authority"),
                    );
                }
            };
        // A public prefix or a CORS preflight: passes with nothing released,
        // every token stripped.
        let mut remove = remove;
        for name in &cfg.access_token_headers {
            // The access token returns every attribute at userinfo: it
            // never reaches an upstream, on any provider path.
            if header(req.headers, name).is_some() && !remove.contains(name) {
                remove.push(name.clone());
            }
        }
        if public || (cfg.bypass_cors_preflight && is_preflight(req.headers)) {
            let sealed = cfg
                .sealer
                .seal(req.byte_headers(), Strip::Tokens { keep: None });
            let mut outcome = forward(remove, counters);
            apply_seal(&mut outcome, sealed, &provider.id, state);
            return outcome;
        }

        let ctx = Ctx {
            now_ms,
            state: &mut *state,
            resumed,
        };
        match self.admit(provider_index, provider, req, path, ctx, &mut counters) {
            Ok((admitted, kept, token, found)) => {
                let known = found.as_ref().and_then(|f| match &f.carrier {
                    Carrier::Header(header) => Some(Known {
                        header,
                        token: f.token.as_bytes(),
                    }),
                    _ => None,
                });
                let sealed = cfg.sealer.seal_known(
                    req.byte_headers(),
                    Strip::Tokens {
                        keep: kept.as_ref(),
                    },
                    known,
                );
                let mut outcome = Outcome {
                    audit: Some(Rc::clone(&admitted.audit)),
                    decision: Decision::Forward {
                        remove,
                        set: Vec::new(),
                        set_bytes: Vec::new(),
                        release: Some(admitted),
                        token,
                    },
                    counters,
                    stripped_tokens: 0,
                    stripped: None,
                    refused: None,
                };
                apply_seal(&mut outcome, sealed, &provider.id, state);
                outcome
            }
            Err(Halt::Wait(wait)) => Outcome {
                decision: Decision::Wait(wait),
                audit: None,
                counters,
                stripped_tokens: 0,
                stripped: None,
                refused: None,
            },
            Err(Halt::Refuse(refusal, who)) => {
                // A login-protected provider answers a browser with a
                // restart or a page (the `refusal` rendering choice).
                let browser = provider.login.as_ref().and_then(|login| {
                    login.reply(
                        crate::login::Browser::of(req.headers),
                        &refusal,
                        &provider.id,
                        &cfg.login_cookies,
                    )
                });
                let (response, reason) = match browser {
                    Some((response, true)) => {
                        counters.push(state.counters.login_restart(provider));
                        (response, crate::login::LOGIN_REQUIRED)
                    }
                    Some((response, false)) => (response, refusal.reason()),
                    None => (refusal.render(&cfg.realm), refusal.reason()),
                };
                counters.push(state.counters.denied(provider, reason));
                if let Some(s) = &who.shadow {
                    counters.extend_from_slice(&s.counters);
                }
                Outcome {
                    audit: Some(Rc::new(Audit {
                        provider: provider.id.clone(),
                        allowed: false,
                        status: response.status,
                        reason,
                        released: Vec::new(),
                        withheld: Vec::new(),
                        purposes: Vec::new(),
                        contract_version: provider.contract.version().to_owned(),
                        subject: who.subject,
                        token: who.token,
                        rbac_values: Vec::new(),
                        shadow: who.shadow.map(|s| Rc::clone(&s.diff)),
                        rendered: RenderMemo::default(),
                        encoded: RecordMemo::default(),
                    })),
                    decision: Decision::Respond(response),
                    counters,
                    stripped_tokens: 0,
                    stripped: None,
                    refused: None,
                }
            }
        }
    }

    /// A request no provider claims, under the `unmatched` policy.
    fn unmatched(
        &self,
        req: &Request<'_>,
        remove: Vec<String>,
        mut counters: Counters,
        state: &mut VmState,
    ) -> Outcome {
        let cfg = &self.config;
        counters.push(state.counters.unmatched);
        let strip = match cfg.unmatched {
            Unmatched::Pass => Strip::SessionOnly,
            Unmatched::Strip | Unmatched::Deny => Strip::Tokens { keep: None },
        };
        let sealed = cfg.sealer.seal(req.byte_headers(), strip);
        if cfg.unmatched == Unmatched::Deny && sealed.ours {
            let reason = "unmatched_token";
            let response = Refusal::Forbidden(reason).render(&cfg.realm);
            return respond(response, counters, Some(reason));
        }
        let mut outcome = forward(remove, counters);
        apply_seal(&mut outcome, sealed, "unmatched", state);
        outcome
    }

    /// The request trailers to remove: identity headers and every trailer
    /// holding a token (a trailer is never a place a contract forwards a
    /// token from), with the counters to add.
    pub fn trailers(
        &self,
        trailers: &[(String, Vec<u8>)],
        state: &VmState,
    ) -> (Vec<String>, Vec<CounterId>) {
        let cfg = &self.config;
        let mut remove: Vec<String> = Vec::new();
        let mut counters = Vec::new();
        for (name, _) in trailers {
            if cfg.sanitiser.is_identity_header(name) && !remove.contains(name) {
                remove.push(name.clone());
            }
        }
        if !remove.is_empty() {
            counters.push(state.counters.spoofed);
        }
        let strip = match cfg.unmatched {
            Unmatched::Pass => Strip::SessionOnly,
            _ => Strip::Tokens { keep: None },
        };
        let sealed = cfg.sealer.seal_trailers(
            trailers.iter().map(|(n, v)| (n.as_str(), v.as_slice())),
            strip,
        );
        for (place, n) in sealed.places() {
            if let Some(c) = state.counters.stripped(place) {
                counters.extend(std::iter::repeat_n(c, n as usize));
            }
        }
        for name in sealed.remove {
            if !remove.contains(&name) {
                remove.push(name);
            }
        }
        (remove, counters)
    }

    /// The one token of the request: a single configured carrier's, or,
    /// when several carriers hold something, the one that is a configured
    /// issuer's token (an opaque access token next to an ID token is not a
    /// second ID token); two such tokens are ambiguous.
    fn find_token(sealer: &Sealer, all: Vec<Found>) -> Result<Option<Found>, ExtractError> {
        if all.len() <= 1 {
            return Ok(all.into_iter().next());
        }
        // The same carrier twice is ambiguous whatever it holds, and so is
        // an empty carrier next to another (not an opaque token: nothing).
        if all.iter().any(|f| f.token.is_empty())
            || all
                .iter()
                .enumerate()
                .any(|(i, a)| all.iter().skip(i + 1).any(|b| b.carrier == a.carrier))
        {
            return Err(ExtractError::Ambiguous);
        }
        let mut ours: Vec<Found> = all
            .into_iter()
            .filter(|f| sealer.issuers.in_value(f.token.as_bytes()))
            .collect();
        if ours.len() == 1 {
            Ok(ours.pop())
        } else {
            Err(ExtractError::Ambiguous)
        }
    }

    /// The gateway's JWKS or discovery document, when this request asks
    /// for one (`GET`/`HEAD` on a configured host): answered here, never
    /// by the upstream.
    fn gateway_document(&self, req: &Request<'_>, authority: &str, path: &str) -> Option<Response> {
        let gw = self.config.gateway.as_ref()?;
        let method = header(req.headers, ":method").unwrap_or_default();
        let doc = gw.document(method, authority, path)?;
        Some(Response {
            status: 200,
            headers: vec![
                ("content-type".to_owned(), "application/json".to_owned()),
                ("cache-control".to_owned(), CACHE_CONTROL.to_owned()),
            ],
            body: if method == "HEAD" {
                String::new()
            } else {
                doc.to_owned()
            },
        })
    }

    /// The signed token's header for an admitted request of a provider
    /// with `contract.signed_token`: the slot's cached token, or a new one.
    fn signed_token(
        &self,
        provider: &Provider,
        contract: &Contract,
        admitted: &Admitted,
        slot: Option<&mut Slot>,
        now_s: u64,
    ) -> Result<Option<(String, String)>, Refusal> {
        let (Some(st), Some(gateway)) = (&provider.signed_token, &self.config.gateway) else {
            return Ok(None);
        };
        let slot = slot.ok_or(Refusal::Signing)?;
        let empty = serde_json::Map::new();
        let released = admitted.claims.as_ref().unwrap_or(&empty);
        match slot.token(st, gateway, released, contract.version(), now_s) {
            Ok(token) => Ok(Some(st.header(token))),
            Err(MintError::SourceExpired) => Err(Refusal::Token(TokenError::Expired.reason())),
            Err(MintError::Signing) => Err(Refusal::Signing),
        }
    }

    /// Extracts, verifies (or finds the token in the cache) and applies the
    /// contract. On success: the release, the carrier of the token the
    /// contract forwards (kept by the sealer), and the
    /// signed token's header when the provider has one, and the token when
    /// it is known to be a configured issuer's ([`Known`], for the sealer).
    #[allow(clippy::type_complexity)]
    fn admit(
        &self,
        provider_index: ProviderId,
        provider: &Provider,
        req: &Request<'_>,
        path: &str,
        ctx: Ctx<'_>,
        counted: &mut Counters,
    ) -> Result<
        (
            Rc<Admitted>,
            Option<Carrier>,
            Option<(String, String)>,
            Option<Found>,
        ),
        Halt,
    > {
        let cfg = &self.config;
        let all = cfg.locations.find_all(req.headers, path);
        let found = match all.and_then(|all| Self::find_token(&cfg.sealer, all)) {
            Ok(Some(found)) => found,
            Ok(None) => return Err(Refusal::Missing.into()),
            Err(ExtractError::Ambiguous) => return Err(Refusal::Token("ambiguous_token").into()),
        };
        if found.token.len() > cfg.max_token_bytes {
            return Err(Refusal::Token(TokenError::TooLarge.reason()).into());
        }
        let (contract, generation) = self.contract_now(
            provider_index,
            provider,
            ctx.state,
            ctx.now_ms,
            ctx.resumed,
            counted,
        )?;
        let key = ctx.state.cache_key(&found.token);
        let now_s = ctx.now_ms / 1000;
        let finish = |verdict: Verdict,
                      shadowed: Option<Rc<Shadowed>>,
                      mut who: Who,
                      slot: Option<&mut Slot>| {
            // A refusal's record carries the shadow comparison too.
            who.shadow = shadowed;
            let release = verdict.map_err(|r| Halt::Refuse(r, who.clone()))?;
            let token = self
                .signed_token(provider, &contract.contract, &release, slot, now_s)
                .map_err(|r| Halt::Refuse(r, who))?;
            let kept = provider.forward.then(|| found.carrier.clone());
            Ok::<_, Halt>((release, kept, token))
        };

        let state = &mut *ctx.state;
        if let Some(entry) = state
            .cache
            .get_mut(&key)
            .filter(|e| crate::seal::same_bytes(e.raw.as_bytes(), found.token.as_bytes()))
        {
            let issuer = cfg.issuers.get(entry.issuer.index());
            match entry.revalidate(provider_index, issuer, &mut state.keys, ctx.now_ms) {
                Hit::Valid => {
                    counted.push(state.counters.cache_hit);
                    let (verdict, shadowed) = entry.verdict(
                        provider_index,
                        provider,
                        &contract,
                        generation,
                        &mut state.counters,
                    );
                    let who = entry.who.clone();
                    let ours = entry.ours;
                    let slot = match provider.signed_token {
                        Some(_) if verdict.is_ok() => entry.slot(provider_index),
                        _ => None,
                    };
                    let (release, kept, token) = finish(verdict, shadowed, who, slot)?;
                    return Ok((release, kept, token, ours.then_some(found)));
                }
                Hit::Refused(refusal) => {
                    counted.push(state.counters.cache_hit);
                    state.cache.remove(&key);
                    return Err(refusal.into());
                }
                Hit::Stale => state.cache.remove(&key),
            }
        }

        counted.push(state.counters.cache_miss);
        let now_ms = ctx.now_ms;
        let verified = self.verify(provider, &found.token, ctx.state, now_ms, ctx.resumed)?;
        let state = ctx.state;
        let who = Who {
            subject: self.pseudonym(&verified.token),
            token: Some(Rc::new(TokenFacts {
                issuer: verified.token.issuer().map(str::to_owned),
                kid: verified.token.kid().map(str::to_owned),
                alg: verified.token.alg().name(),
            })),
            shadow: None,
        };
        // An issuer with userinfo: its attributes join the claims before
        // the contract sees them, and nothing is released until they have.
        let userinfo = match cfg.issuers.get(verified.issuer.index()) {
            Some(issuer) => match &issuer.userinfo {
                Some(ui) => {
                    let step = self.userinfo(
                        key,
                        &found.token,
                        &verified,
                        issuer,
                        ui,
                        req,
                        state,
                        (now_ms, ctx.resumed),
                        counted,
                    );
                    Some(step.map_err(|h| match h {
                        Halt::Refuse(r, _) => Halt::Refuse(r, who.clone()),
                        wait => wait,
                    })?)
                }
                None => None,
            },
            None => None,
        };
        let merged;
        let claims = match &userinfo {
            Some(extra) => {
                merged = crate::userinfo::merge(verified.token.claims(), extra);
                &merged
            }
            None => verified.token.claims(),
        };
        let (verdict, shadowed) = verdict_for(
            claims,
            provider_index,
            provider,
            &contract,
            who.clone(),
            &mut state.counters,
        );
        let mut minted = Vec::new();
        if provider.signed_token.is_some() && verdict.is_ok() {
            minted.push((provider_index, Slot::new(claims)));
        }
        // The strict decode's result, not a second (lenient) decode.
        let ours = verified.token.issuer().is_some_and(|iss| {
            cfg.sealer.issuers.decoded_is_ours(
                found.token.as_bytes(),
                verified.token.claims_json(),
                iss,
            )
        });
        let mut entry = Entry {
            raw: found.token.as_str().into(),
            ours,
            who: who.clone(),
            hmac_provider: verified.key.is_none().then_some(provider_index),
            token: verified.token.into_retained(),
            issuer: verified.issuer,
            key: verified.key,
            verdicts: vec![(
                provider_index,
                generation,
                verdict.clone(),
                shadowed.clone(),
            )],
            minted,
            userinfo: userinfo.clone(),
        };
        let result = finish(
            verdict,
            shadowed,
            who,
            entry.minted.first_mut().map(|(_, slot)| slot),
        );
        // An entry holds the token, its decoded claims JSON (smaller than
        // the token) and, per provider, about 1 KiB of packed headers,
        // counters and audit record; BENCHMARKS.md has the VM memory this
        // estimate gives with the cache full.
        let bytes = found
            .token
            .len()
            .saturating_add(entry.token.size())
            .saturating_add(1024)
            .saturating_add(entry.minted.iter().map(|(_, s)| s.size()).sum())
            .saturating_add(userinfo.as_ref().map_or(0, |u| u.len().saturating_mul(128)));
        let evicted = state.cache.insert(key, entry, bytes);
        counted.extend(std::iter::repeat_n(state.counters.cache_eviction, evicted));
        let (release, kept, token) = result?;
        Ok((release, kept, token, ours.then_some(found)))
    }

    /// The userinfo step of a verified token whose issuer has `userinfo`:
    /// the session's attributes when its call succeeded; a wait for the
    /// session's one call (started here if there is none); or the refusal
    /// the call ended in. Never a release without them.
    #[allow(clippy::too_many_arguments)]
    fn userinfo(
        &self,
        key: u64,
        raw: &str,
        verified: &Checked,
        issuer: &crate::jwks::Issuer,
        ui: &Userinfo,
        req: &Request<'_>,
        state: &mut VmState,
        (now_ms, resumed): (u64, bool),
        counted: &mut Counters,
    ) -> Result<Rc<serde_json::Map<String, serde_json::Value>>, Halt> {
        match state.sessions.get(key, raw) {
            Some(Session::Done(extra)) => return Ok(Rc::clone(extra)),
            // A lost call (past its deadline, never answered): a new
            // request of the session starts another.
            Some(Session::Pending {
                started_ms,
                timeout_ms,
                ..
            }) if !resumed
                && now_ms
                    > started_ms
                        .saturating_add(*timeout_ms)
                        .saturating_add(USERINFO_MARGIN_MS) => {}
            // Another request of the session started the call: wait for it
            // (coalesced). Resumed and still pending: its deadline passed.
            Some(Session::Pending { .. }) if resumed => {
                return Err(Refusal::Userinfo(Failure::Unavailable).into())
            }
            Some(Session::Pending { .. }) => return Err(Halt::Wait(WaitFor::Userinfo(key))),
            // The requests that waited share the call's failure; a new
            // request of the session tries again.
            Some(Session::Failed(f)) if resumed => return Err(Refusal::Userinfo(*f).into()),
            _ => {}
        }
        let mut fail = |f: Failure, state: &mut VmState| {
            counted.push(state.counters.userinfo_failure(&issuer.issuer, f.reason()));
            Err(Halt::from(Refusal::Userinfo(f)))
        };
        // No access token: the session cannot show its attributes. The ID
        // token itself (an API client's `Authorization` when that is also
        // the access token's carrier) is not one.
        let Some(access_token) = ui.access_token.find(req.headers).filter(|t| *t != raw) else {
            return fail(Failure::Refused, state);
        };
        let discovered = state
            .keys
            .get(verified.issuer)
            .and_then(|r| r.userinfo_endpoint());
        let Some(target) = ui.target(discovered) else {
            return fail(Failure::Unavailable, state);
        };
        let claims = verified.token.claims();
        let Some(sub) = claims.get("sub").and_then(serde_json::Value::as_str) else {
            return fail(Failure::Invalid, state);
        };
        let audiences = match claims.get("aud") {
            Some(serde_json::Value::String(a)) => vec![a.clone()],
            Some(serde_json::Value::Array(list)) => list
                .iter()
                .filter_map(|a| a.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        let pending = Session::Pending {
            issuer: verified.issuer,
            sub: sub.to_owned(),
            audiences,
            max_bytes: ui.max_response_bytes,
            timeout_ms: ui.timeout_ms,
            started_ms: now_ms,
        };
        // Counted by the glue as it makes the call (a waiting request's
        // own counters are counted only once it is decided).
        let counter = state.counters.userinfo_call(&issuer.issuer);
        state.sessions.start(
            key,
            raw,
            pending,
            (&target.authority, &target.path),
            &ui.cluster,
            ui.timeout_ms,
            ui.max_response_bytes,
            access_token,
            counter,
        );
        Err(Halt::Wait(WaitFor::Userinfo(key)))
    }

    /// Verifies issuer, algorithm, signature and times; the audience is the
    /// provider's business, asked of the verified token in `verdict_for`.
    fn verify(
        &self,
        provider: &Provider,
        token: &str,
        state: &mut VmState,
        now_ms: u64,
        resumed: bool,
    ) -> Result<Checked, Halt> {
        let refuse = |e: TokenError| Refusal::Token(e.reason());
        let untrusted = Untrusted::decode(token, self.config.max_token_bytes).map_err(refuse)?;
        let (index, issuer) = untrusted
            .issuer()
            .and_then(|iss| self.config.issuer(iss))
            .ok_or(Refusal::Token(TokenError::UnknownIssuer.reason()))?;
        let alg = untrusted.alg();
        if !issuer.allowed.contains(&alg) {
            return Err(refuse(TokenError::AlgorithmNotAllowed).into());
        }
        let (verified, key) = if alg.is_hmac() {
            // HS* tokens are checked only with this provider's own client
            // secret, never with anything from a JWKS (key confusion).
            let secret = provider
                .hs_secret
                .as_deref()
                .ok_or(refuse(TokenError::UnknownKey))?;
            (untrusted.verify_with_secret(secret).map_err(refuse)?, None)
        } else {
            let keys = match &issuer.keys {
                IssuerKeys::Local(keys) => std::rc::Rc::clone(keys),
                IssuerKeys::Remote { .. } => {
                    let remote = state.keys.get_mut(index).ok_or(Refusal::KeysUnavailable)?;
                    match remote.availability(now_ms) {
                        Availability::Ready(keys) => keys,
                        // A key outage is not the user's fault: 503, never 401.
                        Availability::Unavailable if resumed => {
                            return Err(Refusal::KeysUnavailable.into())
                        }
                        Availability::Unavailable => {
                            remote.wake(now_ms);
                            return Err(Halt::Wait(WaitFor::Keys(index)));
                        }
                    }
                }
            };
            let with = crate::verify::Verifiers {
                rsa: self.config.rsa_verifier,
                eddsa: self.config.eddsa_verifier,
                ec: self.config.ec_verifier,
            };
            match untrusted.verify_with_keyset_using(&keys, with) {
                // The print computed when the set was parsed, not a new hash.
                Ok((verified, key)) => (verified, Some(keys.fingerprint_of(key))),
                Err(TokenError::UnknownKey) if !resumed => {
                    // Maybe the issuer rotated: one coalesced, rate-limited
                    // refetch, then decide again.
                    let refetch = state
                        .keys
                        .get_mut(index)
                        .is_some_and(|remote| remote.request_kid_refetch(now_ms));
                    return Err(if refetch {
                        Halt::Wait(WaitFor::Keys(index))
                    } else {
                        refuse(TokenError::UnknownKey).into()
                    });
                }
                Err(e) => return Err(refuse(e).into()),
            }
        };
        let now = i64::try_from(now_ms / 1000).unwrap_or(i64::MAX);
        verified.check_times(&issuer.time, now).map_err(refuse)?;
        Ok(Checked {
            token: verified,
            issuer: index,
            key,
        })
    }

    fn pseudonym(&self, token: &Verified) -> Option<String> {
        let key = self.pseudonym_key.as_ref()?;
        let sub = token.claims().get("sub")?.as_str()?;
        let mut ctx = hmac::Context::with_key(key);
        ctx.update(token.issuer().unwrap_or_default().as_bytes());
        ctx.update(b"\0");
        ctx.update(sub.as_bytes());
        let tag = ctx.sign();
        let mut out = String::with_capacity(32);
        for b in tag.as_ref().iter().take(16) {
            let _ = write!(out, "{b:02x}");
        }
        Some(out)
    }
}

/// A request forwarded with only the sanitiser's removals (so far).
fn forward(remove: Vec<String>, counters: Counters) -> Outcome {
    Outcome {
        decision: Decision::Forward {
            remove,
            set: Vec::new(),
            set_bytes: Vec::new(),
            release: None,
            token: None,
        },
        audit: None,
        counters,
        stripped_tokens: 0,
        stripped: None,
        refused: None,
    }
}

/// A local reply no provider decided (`refused`: its reason in the record).
fn respond(response: Response, counters: Counters, refused: Option<&'static str>) -> Outcome {
    Outcome {
        decision: Decision::Respond(response),
        audit: None,
        counters,
        stripped_tokens: 0,
        stripped: None,
        refused,
    }
}

/// Adds the sealing's header changes, counters and audit line to a
/// forwarded outcome.
fn apply_seal(outcome: &mut Outcome, sealed: Sealed, provider: &str, state: &VmState) {
    for (place, n) in sealed.places() {
        if let Some(c) = state.counters.stripped(place) {
            outcome.counters.extend(std::iter::repeat_n(c, n as usize));
        }
    }
    let count = sealed.count();
    outcome.stripped_tokens = count;
    if count > 0 {
        outcome.stripped = Some(StrippedAudit {
            provider: provider.to_owned(),
            carriers: sealed.places().map(|(p, n)| (p.name(), n)).collect(),
            count,
        });
    }
    if let Decision::Forward {
        remove, set_bytes, ..
    } = &mut outcome.decision
    {
        for name in sealed.remove {
            if !remove.contains(&name) {
                remove.push(name);
            }
        }
        *set_bytes = sealed.set;
    }
}

/// A 400 for a request whose identity cannot be decided.
fn bad_request(reason: &str) -> Response {
    Response {
        status: 400,
        headers: vec![
            ("content-type".to_owned(), "application/json".to_owned()),
            ("cache-control".to_owned(), "no-store".to_owned()),
        ],
        body: format!(r#"{{"error":"invalid_request","reason":"{reason}"}}"#),
    }
}

/// A CORS preflight: `OPTIONS` with `Origin` and
/// `Access-Control-Request-Method` (jwt_authn's `bypass_cors_preflight`).
fn is_preflight(headers: &[(String, String)]) -> bool {
    header(headers, ":method") == Some("OPTIONS")
        && header(headers, "origin").is_some()
        && header(headers, "access-control-request-method").is_some()
}

/// The first value of a header.
fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}
