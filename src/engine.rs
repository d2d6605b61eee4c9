//! The whole per-request decision, pure: `Engine::handle(request, now)`
//! returns what to do with the request; the glue only carries it out.
//!
//! Order matters and is fixed: sanitise client identity headers first (on
//! every path), then decide once whose request it is (routing's one
//! classification: a provider's protected path, its public prefix, a CORS
//! preflight, unmatched, or refused), then extract, verify and apply the
//! contract where the path is protected, seal every passing request the
//! same way ([`Sealer`]: every token of a configured issuer and every
//! session cookie out, except the one token a contract forwards), and only
//! then add released headers.

use std::cell::RefCell;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::BuildHasher;
use std::rc::Rc;

use ring::hmac;

use crate::cache::Lru;

use crate::config::Unmatched;
use crate::config::{Config, Provider};
use crate::contract::Release;
use crate::extract::{Carrier, ExtractError, Found};
use crate::jwks::{Availability, KeyStore};
use crate::jwks::{IssuerId, IssuerKeys};
use crate::routing::{Lookup, ProviderId};
use crate::seal::{Sealed, Sealer, Strip};
use crate::verify::{audience_in, Retained, TokenError, Untrusted, Verified};

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

/// A local reply instead of forwarding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// What the glue does with the request.
#[derive(Debug, Clone)]
pub struct Decision {
    /// Headers to remove (every occurrence), applied first.
    pub remove: Vec<String>,
    /// Headers to set (replacing), applied after the removals.
    pub set: Vec<(String, String)>,
    /// Headers to set as bytes (replacing), applied after the removals and
    /// before `set`: the token's carriers rewritten without tokens
    /// (cookie, query string, `Referer`, `Origin`), byte for byte.
    pub set_bytes: Vec<(String, Vec<u8>)>,
    /// The audit line of stripped tokens (no token, no value), if any.
    pub stripped: Option<StrippedAudit>,
    /// What the contract released, shared with the token cache; its headers
    /// are set after `set` (see [`Decision::headers`]).
    pub release: Option<Rc<Admitted>>,
    /// `Some` to answer locally; the request never reaches the upstream.
    pub respond: Option<Response>,
    /// The audit record, for requests that matched a provider.
    pub audit: Option<Rc<Audit>>,
    /// `Some(issuer index)`: park the request until that issuer's keys
    /// change or the wait ends, then decide again with `resumed` set.
    pub wait: Option<IssuerId>,
    /// Counters to increment besides the release's own (see
    /// [`Decision::counter_ids`]); names from [`Engine::counter_name`].
    pub counters: Vec<CounterId>,
}

impl Decision {
    /// Every header to set, in order: `set`, then the released ones.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.set
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .chain(self.release.iter().flat_map(|a| a.headers.iter()))
    }

    /// Every counter to increment once for this request.
    pub fn counter_ids(&self) -> impl Iterator<Item = CounterId> + '_ {
        self.counters
            .iter()
            .chain(self.release.iter().flat_map(|a| a.counters.iter()))
            .copied()
    }
}

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

/// Counter names seen so far. Bounded by the configuration: every name is
/// made of a provider id, a fixed outcome or reason, and an attribute name
/// from the catalogue or a contract.
#[derive(Default)]
struct Interner {
    names: Vec<Rc<str>>,
    ids: HashMap<Rc<str>, CounterId>,
    /// Per provider index, outcome and attribute: skips formatting the name
    /// when a new token meets a known provider.
    per_attribute: HashMap<(ProviderId, Tally, &'static str), CounterId>,
}

/// The counters of an admitted request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Tally {
    /// `provider.<id>.allowed` (the attribute is ignored).
    Allowed,
    Released,
    Withheld,
}

impl Interner {
    /// `provider.<id>.allowed` or `provider.<id>.released|withheld.<attribute>`.
    fn attribute(
        &mut self,
        index: ProviderId,
        provider: &Provider,
        kind: Tally,
        attribute: &'static str,
    ) -> CounterId {
        if let Some(id) = self.per_attribute.get(&(index, kind, attribute)) {
            return *id;
        }
        let name = match kind {
            Tally::Allowed => format!("provider.{}.allowed", provider.id),
            Tally::Released => format!(
                "provider.{}.released.{}",
                provider.id,
                counter_name(attribute)
            ),
            Tally::Withheld => format!(
                "provider.{}.withheld.{}",
                provider.id,
                counter_name(attribute)
            ),
        };
        let id = self.id(&name);
        self.per_attribute.insert((index, kind, attribute), id);
        id
    }

    fn id(&mut self, name: &str) -> CounterId {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        let id = CounterId(u32::try_from(self.names.len()).unwrap_or(u32::MAX));
        let name: Rc<str> = name.into();
        self.names.push(Rc::clone(&name));
        self.ids.insert(name, id);
        id
    }
}

/// Tokens taken out of a passing request: which provider (or `unmatched`),
/// from which kinds of carrier, how many. No token, no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrippedAudit {
    pub provider: String,
    pub carriers: Vec<(&'static str, u32)>,
    pub count: u32,
}

impl StrippedAudit {
    /// The JSON log line.
    pub fn to_json(&self, now: i64) -> String {
        #[derive(serde::Serialize)]
        struct Line<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            time: i64,
            provider: &'a str,
            carriers: std::collections::BTreeMap<&'static str, u32>,
            count: u32,
        }
        serde_json::to_string(&Line {
            kind: "mpass_guard.tokens_stripped",
            time: now,
            provider: &self.provider,
            carriers: self.carriers.iter().copied().collect(),
            count: self.count,
        })
        .unwrap_or_default()
    }
}

/// One audit record: no token, no claim value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audit {
    pub provider: String,
    pub allowed: bool,
    pub status: u16,
    pub reason: &'static str,
    pub released: Vec<&'static str>,
    pub withheld: Vec<&'static str>,
    pub purposes: Vec<(&'static str, std::sync::Arc<str>)>,
    pub contract_version: String,
    /// Keyed pseudonym of `iss` + `sub`, when a key is configured and the
    /// token was verified.
    pub subject: Option<String>,
    /// The JSON of everything above, rendered once when the record is made
    /// for a cached decision (the time is added per request).
    pub rendered: Option<Rc<str>>,
}

impl Audit {
    /// The JSON log line.
    pub fn to_json(&self, now: i64) -> String {
        let mut out = String::new();
        self.write_json(now, &mut out);
        out
    }

    /// Appends the JSON log line (no newline) to `out`.
    pub fn write_json(&self, now: i64, out: &mut String) {
        let fresh;
        let body: &str = match &self.rendered {
            Some(body) => body,
            None => {
                fresh = self.render_body();
                &fresh
            }
        };
        // `body` is a JSON object: splice the type and time in front.
        let rest = body.get(1..).unwrap_or("}");
        let sep = if rest == "}" { "" } else { "," };
        let _ = write!(
            out,
            r#"{{"type":"mpass_guard.audit","time":{now}{sep}{rest}"#
        );
    }

    /// The record's fields as a JSON object, without type and time.
    fn render_body(&self) -> Rc<str> {
        /// The record as serialised; fields in name order, as a JSON object
        /// from a map would have them.
        #[derive(serde::Serialize)]
        struct Body<'a> {
            contract_version: &'a str,
            decision: &'static str,
            provider: &'a str,
            purposes: std::collections::BTreeMap<&'static str, &'a str>,
            reason: &'static str,
            released: &'a [&'static str],
            status: u16,
            subject: Option<&'a str>,
            withheld: &'a [&'static str],
        }
        let body = Body {
            contract_version: &self.contract_version,
            decision: if self.allowed { "allow" } else { "deny" },
            provider: &self.provider,
            purposes: self.purposes.iter().map(|(k, v)| (*k, &**v)).collect(),
            reason: self.reason,
            released: &self.released,
            status: self.status,
            subject: self.subject.as_deref(),
            withheld: &self.withheld,
        };
        serde_json::to_string(&body)
            .unwrap_or_else(|_| "{}".to_owned())
            .into()
    }
}

/// The engine: the compiled configuration and this VM's token cache.
pub struct Engine {
    pub config: Config,
    pseudonym_key: Option<hmac::Key>,
    /// Verified tokens (the VM is single-threaded; the cache is per VM).
    cache: RefCell<Lru<u64, Entry>>,
    /// The cache's keyed hash (SipHash with a random key per VM).
    token_hasher: RandomState,
    counters: RefCell<Interner>,
    fixed: FixedCounters,
}

/// Counters that do not depend on a provider, interned at start.
struct FixedCounters {
    spoofed: CounterId,
    unmatched: CounterId,
    ambiguous_path: CounterId,
    invalid_authority: CounterId,
    /// Per [`crate::seal::Place`], `tokens_stripped.<carrier>`.
    stripped: Vec<CounterId>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The result of a full verification.
struct Checked {
    token: Verified,
    issuer: IssuerId,
    /// Fingerprint of the verifying key; `None` for a provider's HS secret.
    key: Option<[u8; 32]>,
}

/// A release for one provider with everything the request path needs
/// already rendered: headers, counters and the audit record.
pub struct Admitted {
    headers: Packed,
    counters: Vec<CounterId>,
    audit: Rc<Audit>,
}

// Released values stay out of Debug output.
impl std::fmt::Debug for Admitted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admitted")
            .field("released", &self.audit.released)
            .finish_non_exhaustive()
    }
}

impl Admitted {
    fn new(
        index: ProviderId,
        provider: &Provider,
        release: Release,
        subject: Option<String>,
        names: &RefCell<Interner>,
    ) -> Admitted {
        let mut names = names.borrow_mut();
        let mut counters = Vec::with_capacity(1 + release.released.len() + release.withheld.len());
        counters.push(names.attribute(index, provider, Tally::Allowed, ""));
        for a in &release.released {
            counters.push(names.attribute(index, provider, Tally::Released, a));
        }
        for a in &release.withheld {
            counters.push(names.attribute(index, provider, Tally::Withheld, a));
        }
        let mut audit = Audit {
            provider: provider.id.clone(),
            allowed: true,
            status: 200,
            reason: "ok",
            released: release.released,
            withheld: release.withheld,
            purposes: release.purposes,
            contract_version: provider.contract.version().to_owned(),
            subject,
            rendered: None,
        };
        audit.rendered = Some(audit.render_body());
        Admitted {
            headers: Packed::new(&release.headers),
            counters,
            audit: Rc::new(audit),
        }
    }
}

/// Header names and values in one buffer: a cached release is a handful of
/// allocations however many attributes it sets, which keeps evicting it
/// cheap.
struct Packed {
    text: String,
    /// Per header: end of the name, end of the value (offsets into `text`).
    ends: Vec<(u32, u32)>,
}

impl Packed {
    fn new(headers: &[(String, String)]) -> Packed {
        let mut text = String::with_capacity(headers.iter().map(|(n, v)| n.len() + v.len()).sum());
        let mut ends = Vec::with_capacity(headers.len());
        for (name, value) in headers {
            text.push_str(name);
            let name_end = text.len();
            text.push_str(value);
            ends.push((
                u32::try_from(name_end).unwrap_or(u32::MAX),
                u32::try_from(text.len()).unwrap_or(u32::MAX),
            ));
        }
        Packed { text, ends }
    }

    fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut start = 0usize;
        self.ends.iter().map(move |&(name_end, end)| {
            let (name_end, end) = (name_end as usize, end as usize);
            let name = self.text.get(start..name_end).unwrap_or_default();
            let value = self.text.get(name_end..end).unwrap_or_default();
            start = end;
            (name, value)
        })
    }
}

/// The outcome for one provider, computed from the token's claims.
fn outcome_for(
    claims: &serde_json::Map<String, serde_json::Value>,
    provider_index: ProviderId,
    provider: &Provider,
    subject: Option<String>,
    names: &RefCell<Interner>,
) -> Outcome {
    match audience_in(claims, &provider.audiences) {
        Err(e) => Err(Refusal::Forbidden(e.reason())),
        Ok(_) => provider
            .contract
            .apply(claims)
            .map(|release| {
                Rc::new(Admitted::new(
                    provider_index,
                    provider,
                    release,
                    subject,
                    names,
                ))
            })
            .map_err(|d| Refusal::Contract(d.reason)),
    }
}

/// What a token means for one provider: the release, or a refusal
/// (audience or contract) that does not depend on time.
type Outcome = Result<Rc<Admitted>, Refusal>;

/// A verified token in the cache.
struct Entry {
    /// The token itself: a hit needs the whole token to be equal, not just
    /// its key.
    raw: Box<str>,
    token: Retained,
    issuer: IssuerId,
    key: Option<[u8; 32]>,
    /// For HS* tokens: the provider whose secret verified it.
    hmac_provider: Option<ProviderId>,
    subject: Option<String>,
    /// Per provider index, computed on first use.
    outcomes: Vec<(ProviderId, Outcome)>,
}

impl Entry {
    fn outcome(
        &mut self,
        provider_index: ProviderId,
        provider: &Provider,
        names: &RefCell<Interner>,
    ) -> Outcome {
        if let Some((_, o)) = self.outcomes.iter().find(|(p, _)| *p == provider_index) {
            return o.clone();
        }
        // A provider this token has not met yet: parse its claims again.
        let o = match self.token.claims() {
            Ok(claims) => outcome_for(
                &claims,
                provider_index,
                provider,
                self.subject.clone(),
                names,
            ),
            Err(e) => Err(Refusal::Token(e.reason())),
        };
        self.outcomes.push((provider_index, o.clone()));
        o
    }
}

/// What a cache lookup found.
enum Hit {
    /// The entry answers.
    Valid,
    /// The token is no longer acceptable (expired): refuse.
    Refused(Refusal),
    /// The entry cannot answer (key gone, other provider's secret): verify
    /// afresh.
    Stale,
}

/// Per-request context for verification.
struct Ctx<'a> {
    now_ms: u64,
    keys: &'a mut KeyStore,
    resumed: bool,
}

/// Why a request was refused, before it is rendered.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    /// Not a refusal yet: wait for this issuer's keys.
    Wait(IssuerId),
    Missing,
    KeysUnavailable,
    Token(&'static str),
    Forbidden(&'static str),
    Contract(&'static str),
}

impl Engine {
    /// Wraps a compiled configuration.
    pub fn new(config: Config) -> Engine {
        let pseudonym_key = config
            .pseudonym_key
            .as_ref()
            .map(|k| hmac::Key::new(hmac::HMAC_SHA256, k));
        let cache = RefCell::new(Lru::new(config.cache_max_entries, config.cache_max_bytes));
        let mut names = Interner::default();
        let fixed = FixedCounters {
            spoofed: names.id("spoofed_headers_removed"),
            unmatched: names.id(&format!("unmatched.{}", config.unmatched.name())),
            ambiguous_path: names.id("ambiguous_path"),
            invalid_authority: names.id("invalid_authority"),
            stripped: crate::seal::Place::ALL
                .iter()
                .map(|p| names.id(&format!("tokens_stripped.{}", p.name())))
                .collect(),
        };
        Engine {
            config,
            pseudonym_key,
            cache,
            token_hasher: RandomState::new(),
            counters: RefCell::new(names),
            fixed,
        }
    }

    /// The name of a counter (without the `mpass_guard.` prefix).
    pub fn counter_name(&self, id: CounterId) -> Option<Rc<str>> {
        self.counters.borrow().names.get(id.index()).cloned()
    }

    /// The names of every counter a decision increments, in order.
    pub fn counter_names(&self, decision: &Decision) -> Vec<String> {
        decision
            .counter_ids()
            .filter_map(|id| self.counter_name(id))
            .map(|n| n.to_string())
            .collect()
    }

    /// Number of verified tokens held in this VM's cache.
    pub fn cached_tokens(&self) -> usize {
        self.cache.borrow().len()
    }

    /// Decides what happens to one request. `now_ms` is Unix milliseconds
    /// from the host clock; `keys` is this VM's remote key state; `resumed`
    /// is set when a parked request is decided again (it must not wait twice).
    pub fn handle(
        &self,
        req: &Request<'_>,
        now_ms: u64,
        keys: &mut KeyStore,
        resumed: bool,
    ) -> Decision {
        let cfg = &self.config;
        let mut decision = Decision {
            remove: cfg.sanitiser.spoofed(req.headers),
            set: Vec::new(),
            set_bytes: Vec::new(),
            stripped: None,
            release: None,
            respond: None,
            audit: None,
            wait: None,
            counters: Vec::new(),
        };
        if !decision.remove.is_empty() {
            decision.counters.push(self.fixed.spoofed);
        }
        let authority = header(req.headers, ":authority")
            .or_else(|| header(req.headers, "host"))
            .unwrap_or_default();
        let path = header(req.headers, ":path").unwrap_or("/");
        let (provider_index, provider, public) =
            match cfg.matcher.find_checked(authority, path, req.route_name) {
                Lookup::Provider(i) => match cfg.provider(i) {
                    Some(p) => (i, p, false),
                    None => return decision,
                },
                Lookup::Public(i) => match cfg.provider(i) {
                    Some(p) => (i, p, true),
                    None => return decision,
                },
                Lookup::None => return self.unmatched(req, decision),
                Lookup::Conflict => {
                    decision.counters.push(self.fixed.ambiguous_path);
                    decision.respond = Some(bad_request("ambiguous_path"));
                    return decision;
                }
                Lookup::InvalidAuthority => {
                    decision.counters.push(self.fixed.invalid_authority);
                    decision.respond = Some(bad_request("invalid_authority"));
                    return decision;
                }
            };
        // A public prefix or a CORS preflight: passes with nothing released,
        // every token stripped.
        if public || (cfg.bypass_cors_preflight && is_preflight(req.headers)) {
            let sealed = cfg
                .sealer
                .seal(req.byte_headers(), Strip::Tokens { keep: None });
            self.apply_seal(&mut decision, sealed, &provider.id);
            return decision;
        }

        let ctx = Ctx {
            now_ms,
            keys,
            resumed,
        };
        match self.admit(provider_index, provider, req, path, ctx) {
            Ok((admitted, kept, _subject)) => {
                let sealed = cfg.sealer.seal(
                    req.byte_headers(),
                    Strip::Tokens {
                        keep: kept.as_ref(),
                    },
                );
                self.apply_seal(&mut decision, sealed, &provider.id);
                decision.audit = Some(Rc::clone(&admitted.audit));
                decision.release = Some(admitted);
            }
            Err((Refusal::Wait(issuer), _)) => {
                decision.wait = Some(issuer);
            }
            Err((refusal, subject)) => {
                let response = self.render(&refusal);
                let reason = match refusal {
                    Refusal::Missing => "missing_token",
                    Refusal::KeysUnavailable | Refusal::Wait(_) => "keys_unavailable",
                    Refusal::Token(r) | Refusal::Forbidden(r) | Refusal::Contract(r) => r,
                };
                let counter = self
                    .counters
                    .borrow_mut()
                    .id(&format!("provider.{}.denied.{}", provider.id, reason));
                decision.counters.push(counter);
                decision.audit = Some(Rc::new(Audit {
                    provider: provider.id.clone(),
                    allowed: false,
                    status: response.status,
                    reason,
                    released: Vec::new(),
                    withheld: Vec::new(),
                    purposes: Vec::new(),
                    contract_version: provider.contract.version().to_owned(),
                    subject,
                    rendered: None,
                }));
                decision.respond = Some(response);
            }
        }
        decision
    }

    /// A request no provider claims, under the `unmatched` policy.
    fn unmatched(&self, req: &Request<'_>, mut decision: Decision) -> Decision {
        let cfg = &self.config;
        decision.counters.push(self.fixed.unmatched);
        let strip = match cfg.unmatched {
            Unmatched::Pass => Strip::SessionOnly,
            Unmatched::Strip | Unmatched::Deny => Strip::Tokens { keep: None },
        };
        let sealed = cfg.sealer.seal(req.byte_headers(), strip);
        if cfg.unmatched == Unmatched::Deny && sealed.ours {
            decision.respond = Some(self.render(&Refusal::Forbidden("unmatched_token")));
            return decision;
        }
        self.apply_seal(&mut decision, sealed, "unmatched");
        decision
    }

    /// Adds the sealing's header changes, counters and audit line.
    fn apply_seal(&self, decision: &mut Decision, sealed: Sealed, provider: &str) {
        for (place, n) in sealed.places() {
            if let Some(c) = self.fixed.stripped.get(place as usize) {
                for _ in 0..n {
                    decision.counters.push(*c);
                }
            }
        }
        let count = sealed.count();
        if count > 0 {
            decision.stripped = Some(StrippedAudit {
                provider: provider.to_owned(),
                carriers: sealed.places().map(|(p, n)| (p.name(), n)).collect(),
                count,
            });
        }
        for name in sealed.remove {
            if !decision.remove.contains(&name) {
                decision.remove.push(name);
            }
        }
        decision.set_bytes = sealed.set;
    }

    /// The request trailers to remove: identity headers and every trailer
    /// holding a token (a trailer is never a place a contract forwards a
    /// token from), with the counters to add.
    pub fn trailers(&self, trailers: &[(String, Vec<u8>)]) -> (Vec<String>, Vec<CounterId>) {
        let cfg = &self.config;
        let mut remove: Vec<String> = Vec::new();
        let mut counters = Vec::new();
        for (name, _) in trailers {
            if cfg.sanitiser.is_identity_header(name) && !remove.contains(name) {
                remove.push(name.clone());
            }
        }
        if !remove.is_empty() {
            counters.push(self.fixed.spoofed);
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
            if let Some(c) = self.fixed.stripped.get(place as usize) {
                counters.extend(std::iter::repeat_n(*c, n as usize));
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
        // The same carrier twice is ambiguous whatever it holds.
        if all
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

    /// Extracts, verifies (or finds the token in the cache) and applies the
    /// contract.
    #[allow(clippy::type_complexity)]
    fn admit(
        &self,
        provider_index: ProviderId,
        provider: &Provider,
        req: &Request<'_>,
        path: &str,
        ctx: Ctx<'_>,
    ) -> Result<(Rc<Admitted>, Option<Carrier>, Option<String>), (Refusal, Option<String>)> {
        let cfg = &self.config;
        let all = cfg.locations.find_all(req.headers, path);
        let found = match all.and_then(|all| Self::find_token(&cfg.sealer, all)) {
            Ok(Some(found)) => found,
            Ok(None) => return Err((Refusal::Missing, None)),
            Err(ExtractError::Ambiguous) => return Err((Refusal::Token("ambiguous_token"), None)),
        };
        if found.token.len() > cfg.max_token_bytes {
            return Err((Refusal::Token(TokenError::TooLarge.reason()), None));
        }
        let key = self.cache_key(&found.token);
        let finish = |outcome: Outcome, subject: Option<String>| {
            let release = outcome.map_err(|r| (r, subject.clone()))?;
            let kept = provider.forward.then(|| found.carrier.clone());
            Ok((release, kept, subject))
        };

        let mut ctx = ctx;
        {
            let mut cache = self.cache.borrow_mut();
            if let Some(entry) = cache.get_mut(&key).filter(|e| *e.raw == *found.token) {
                match self.revalidate(entry, provider_index, &mut ctx) {
                    Hit::Valid => {
                        let outcome = entry.outcome(provider_index, provider, &self.counters);
                        let subject = entry.subject.clone();
                        drop(cache);
                        return finish(outcome, subject);
                    }
                    Hit::Refused(refusal) => {
                        cache.remove(&key);
                        return Err((refusal, None));
                    }
                    Hit::Stale => cache.remove(&key),
                }
            }
        }

        let verified = self
            .verify(provider, &found.token, ctx)
            .map_err(|e| (e, None))?;
        let subject = self.pseudonym(&verified.token);
        let outcome = outcome_for(
            verified.token.claims(),
            provider_index,
            provider,
            subject.clone(),
            &self.counters,
        );
        let entry = Entry {
            raw: found.token.as_str().into(),
            subject: subject.clone(),
            hmac_provider: verified.key.is_none().then_some(provider_index),
            token: verified.token.into_retained(),
            issuer: verified.issuer,
            key: verified.key,
            outcomes: vec![(provider_index, outcome.clone())],
        };
        // An entry holds the token, its decoded claims JSON (smaller than
        // the token) and, per provider, about 1 KiB of packed headers,
        // counters and audit record; BENCHMARKS.md has the VM memory this
        // estimate gives with the cache full.
        let bytes = found
            .token
            .len()
            .saturating_add(entry.token.size())
            .saturating_add(1024);
        self.cache.borrow_mut().insert(key, entry, bytes);
        finish(outcome, subject)
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

    /// Whether a cached entry may answer for this provider now.
    fn revalidate(&self, entry: &Entry, provider_index: ProviderId, ctx: &mut Ctx<'_>) -> Hit {
        // An HS* token was checked with one provider's secret only.
        if entry.hmac_provider.is_some_and(|p| p != provider_index) {
            return Hit::Stale;
        }
        let Some(issuer) = self.config.issuers.get(entry.issuer.index()) else {
            return Hit::Stale;
        };
        if let Some(fingerprint) = &entry.key {
            // The key that verified the token must still be in the set: a
            // rotation that removes it ends the token's cached validity.
            let present = match &issuer.keys {
                IssuerKeys::Local(keys) => keys.contains(fingerprint),
                IssuerKeys::Remote { .. } => match ctx.keys.get_mut(entry.issuer) {
                    Some(remote) => match remote.availability(ctx.now_ms) {
                        Availability::Ready(keys) => keys.contains(fingerprint),
                        Availability::Unavailable => false,
                    },
                    None => false,
                },
            };
            if !present {
                return Hit::Stale;
            }
        }
        let now = i64::try_from(ctx.now_ms / 1000).unwrap_or(i64::MAX);
        match entry.token.check_times(&issuer.time, now) {
            Ok(()) => Hit::Valid,
            Err(e) => Hit::Refused(Refusal::Token(e.reason())),
        }
    }

    /// Verifies issuer, algorithm, signature and times; the audience is the
    /// provider's business, asked of the verified token in `outcome_for`.
    fn verify(&self, provider: &Provider, token: &str, ctx: Ctx<'_>) -> Result<Checked, Refusal> {
        let refuse = |e: TokenError| Refusal::Token(e.reason());
        let untrusted = Untrusted::decode(token, self.config.max_token_bytes).map_err(refuse)?;
        let (index, issuer) = untrusted
            .issuer()
            .and_then(|iss| self.config.issuer(iss))
            .ok_or(Refusal::Token(TokenError::UnknownIssuer.reason()))?;
        let alg = untrusted.alg();
        if !issuer.allowed.contains(&alg) {
            return Err(refuse(TokenError::AlgorithmNotAllowed));
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
                    let remote = ctx.keys.get_mut(index).ok_or(Refusal::KeysUnavailable)?;
                    match remote.availability(ctx.now_ms) {
                        Availability::Ready(keys) => keys,
                        // A key outage is not the user's fault: 503, never 401.
                        Availability::Unavailable if ctx.resumed => {
                            return Err(Refusal::KeysUnavailable)
                        }
                        Availability::Unavailable => {
                            remote.wake(ctx.now_ms);
                            return Err(Refusal::Wait(index));
                        }
                    }
                }
            };
            match untrusted.verify_with_keyset(&keys) {
                Ok((verified, key)) => (verified, Some(key.fingerprint())),
                Err(TokenError::UnknownKey) if !ctx.resumed => {
                    // Maybe the issuer rotated: one coalesced, rate-limited
                    // refetch, then decide again.
                    let refetch = ctx
                        .keys
                        .get_mut(index)
                        .is_some_and(|remote| remote.request_kid_refetch(ctx.now_ms));
                    return Err(if refetch {
                        Refusal::Wait(index)
                    } else {
                        refuse(TokenError::UnknownKey)
                    });
                }
                Err(e) => return Err(refuse(e)),
            }
        };
        let now = i64::try_from(ctx.now_ms / 1000).unwrap_or(i64::MAX);
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

    fn render(&self, refusal: &Refusal) -> Response {
        let realm = &self.config.realm;
        let (status, challenge, body) = match refusal {
            Refusal::KeysUnavailable | Refusal::Wait(_) => (
                503,
                None,
                r#"{"error":"temporarily_unavailable","reason":"keys_unavailable"}"#.to_owned(),
            ),
            Refusal::Missing => (
                401,
                Some(format!("Bearer realm=\"{realm}\"")),
                r#"{"error":"missing_token"}"#.to_owned(),
            ),
            Refusal::Token(reason) => (
                401,
                Some(format!(
                    "Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"{reason}\""
                )),
                format!(r#"{{"error":"invalid_token","reason":"{reason}"}}"#),
            ),
            Refusal::Forbidden(reason) => (
                403,
                None,
                format!(r#"{{"error":"forbidden","reason":"{reason}"}}"#),
            ),
            Refusal::Contract(reason) => (
                403,
                None,
                format!(r#"{{"error":"contract_violation","reason":"{reason}"}}"#),
            ),
        };
        let mut headers = vec![
            ("content-type".to_owned(), "application/json".to_owned()),
            ("cache-control".to_owned(), "no-store".to_owned()),
        ];
        if let Some(c) = challenge {
            headers.push(("www-authenticate".to_owned(), c));
        }
        if status == 503 {
            headers.push(("retry-after".to_owned(), "5".to_owned()));
        }
        Response {
            status,
            headers,
            body,
        }
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

/// A stats-safe name for an attribute: its alias, where it has one.
fn counter_name(attribute: &str) -> String {
    crate::claims::lookup(attribute)
        .map(|(a, _)| a.alias.to_owned())
        .unwrap_or_else(|| {
            attribute
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect()
        })
}
