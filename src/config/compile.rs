//! Compiles the wire format into a checked [`Config`], one function per
//! part. Each part reports its own errors into a [`Report`], so one load
//! names every independent error (each issuer, each provider, each
//! top-level field); a part that depends on a refused one is skipped
//! rather than reported twice.

use std::collections::HashMap;
use std::rc::Rc;

use crate::alg::Alg;
use crate::contract::{CompileContext, Contract, ContractConfig};
use crate::error::{index, join, ConfigError};
use crate::extract::Locations;
use crate::forward::Sanitiser;
use crate::jwks::{FetchPolicy, Issuer, IssuerId, IssuerKeys, Source, Target};
use crate::keys::KeySet;
use crate::minted::SignedToken;
use crate::routing::{MatchRule, MatcherBuilder, ProviderId};
use crate::seal::{Issuers, Sealer, DEFAULT_SESSION_COOKIES};
use crate::signing::Gateway;
use crate::userinfo::Userinfo;
use crate::verify::TimePolicy;

use super::wire::{
    AuditConfig, DiscoveryConfig, HttpUri, IssuerConfig, KeyFetchConfig, PluginConfig,
    ProviderConfig, RemoteJwksConfig, SessionConfig, TokenCacheConfig,
};
use super::{
    Config, Provider, Warning, DEFAULT_AUDIT_FLUSH_MS, DEFAULT_CACHE_MAX_BYTES,
    DEFAULT_CACHE_MAX_ENTRIES, DEFAULT_CLOCK_SKEW_SECONDS, DEFAULT_HEADER_PREFIX,
    DEFAULT_MAX_LIFETIME_SECONDS, DEFAULT_MAX_TOKEN_BYTES, DEFAULT_STAT_PREFIX, MAX_AUDIT_FLUSH_MS,
};

/// What a load has found so far: errors and warnings, in order.
#[derive(Debug, Default)]
struct Report {
    errors: Vec<ConfigError>,
    warnings: Vec<Warning>,
}

impl Report {
    /// The value of `r`, or `None` with its error kept.
    fn keep<T>(&mut self, r: Result<T, ConfigError>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.errors.push(e);
                None
            }
        }
    }
}

/// A `serde_path_to_error` error as a [`ConfigError`] at `base` joined with
/// the path inside the value that failed.
pub(crate) fn located(
    base: &str,
    e: &serde_path_to_error::Error<serde_json::Error>,
) -> ConfigError {
    let inner = e.path().to_string();
    let at = if inner == "." {
        base.to_owned()
    } else {
        join(base, &inner)
    };
    ConfigError::new(at, strip_position(&e.inner().to_string()))
}

/// Reads raw JSON at `path` as a `T`.
fn parse_at<T: serde::de::DeserializeOwned>(raw: &str, path: &str) -> Result<T, ConfigError> {
    let de = &mut serde_json::Deserializer::from_str(raw);
    serde_path_to_error::deserialize(de).map_err(|e| located(path, &e))
}

/// serde_json appends "at line 1 column 7"; the path says more.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg.get(..i).unwrap_or(msg).to_owned(),
        None => msg.to_owned(),
    }
}

/// Compiles `wire`, or returns every error found (at least one).
pub(crate) fn compile(
    wire: PluginConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, Vec<ConfigError>> {
    let mut report = Report::default();
    let (issuers, issuer_index) = issuers(&wire.issuers, &mut report);
    let prefix = report.keep(header_prefix(wire.header_prefix.as_deref()));
    let locations = report.keep(locations(&wire));
    for (i, h) in wire.from_headers.iter().flatten().enumerate() {
        if !h.value_prefix.is_empty() && !h.value_prefix.ends_with(' ') {
            report.warnings.push(Warning::new(
                join(&index("from_headers", i), "value_prefix"),
                "does not end with a space: `Bearer` also matches `BearerX...`; write `Bearer `",
            ));
        }
    }
    let sanitiser = prefix
        .as_deref()
        .and_then(|p| report.keep(Sanitiser::compile(p, &wire.strip_headers, "")));
    let max_token_bytes = report.keep(max_token_bytes(wire.max_token_bytes));
    let realm = report.keep(realm(wire.realm.as_deref()));
    let never_release = report.keep(never_release(&wire.never_release));
    // `Err(())`: the block was refused (its error is reported); providers
    // then skip their signed tokens rather than report it again.
    let gateway = match &wire.gateway {
        None => Ok(None),
        Some(g) => report
            .keep(Gateway::compile(g, "gateway", env))
            .map(Some)
            .ok_or(()),
    };

    // Providers need the prefix (contract headers live under it) and add
    // their headers to the sanitiser; without those, they are not checked.
    let providers = match (prefix.as_deref(), sanitiser, never_release) {
        (Some(prefix), Some(mut sanitiser), Some(())) => {
            let ctx = CompileContext {
                header_prefix: prefix,
                extra_never_release: &wire.never_release,
            };
            let gw = gateway.as_ref().map(Option::as_ref).map_err(|_| ());
            let compiled = providers(wire.providers, &ctx, &mut sanitiser, env, gw, &mut report);
            Some((compiled, sanitiser))
        }
        _ => None,
    };
    if let (Some(locations), Some((_, sanitiser))) = (&locations, &providers) {
        report.keep(token_headers_are_not_identity_headers(
            locations,
            sanitiser,
            wire.from_headers.is_some(),
        ));
    }

    let registry = match &wire.registry {
        None => Ok(None),
        Some(r) => {
            let compiled = registry(r, env, &mut report.warnings);
            report.keep(compiled).map(Some).ok_or(())
        }
    };
    if let (Some((Some((list, _)), _)), Ok(registry)) = (&providers, &registry) {
        registry_users(list, registry.is_some(), &mut report);
    }
    let key = pseudonym_key(wire.audit.as_ref(), env, &mut report.warnings);
    let pseudonym_key = report.keep(key);
    let audit_flush_ms = report.keep(audit_flush_ms(wire.audit.as_ref()));
    let cache = report.keep(cache_bounds(wire.token_cache.as_ref()));
    let session = report.keep(session_cookies(wire.session.as_ref()));
    let stat_prefix = report.keep(stat_prefix(wire.stat_prefix.as_deref()));
    let audit_log = wire.audit.as_ref().and_then(|a| a.log).unwrap_or(false);

    let (
        Some(header_prefix),
        Some(locations),
        Some(max_token_bytes),
        Some(realm),
        Some(pseudonym_key),
        Some(audit_flush_ms),
        Some((cache_max_entries, cache_max_bytes)),
        Some((Some((providers, matcher)), sanitiser)),
        Some(session_cookies),
        Some(stat_prefix),
        Ok(registry),
    ) = (
        prefix,
        locations,
        max_token_bytes,
        realm,
        pseudonym_key,
        audit_flush_ms,
        cache,
        providers,
        session,
        stat_prefix,
        registry,
    )
    else {
        return Err(report.errors);
    };
    if !report.errors.is_empty() {
        return Err(report.errors);
    }
    // A login restart clears the oauth2 filter's cookies and the configured
    // ones; the sealer also removes the access token's cookie (when another
    // is configured) and the loop marker from every upstream request.
    let mut login_cookies: Vec<String> = crate::seal::DEFAULT_SESSION_COOKIES
        .iter()
        .map(|c| (*c).to_owned())
        .collect();
    let carriers: Vec<String> = issuers
        .iter()
        .filter_map(|i| match &i.userinfo {
            Some(crate::userinfo::Userinfo {
                access_token: crate::userinfo::AccessToken::Cookie(name),
                ..
            }) => Some(name.clone()),
            _ => None,
        })
        .collect();
    let mut sealed_cookies = session_cookies;
    for name in sealed_cookies.iter().chain(&carriers) {
        if !login_cookies.contains(name) {
            login_cookies.push(name.clone());
        }
    }
    let login = providers.iter().any(|p| p.login.is_some());
    let marker = login.then(|| crate::login::MARKER_COOKIE.to_owned());
    for name in carriers.into_iter().chain(marker) {
        if !sealed_cookies.contains(&name) {
            sealed_cookies.push(name);
        }
    }
    let sealer = Sealer::new(
        Issuers::new(issuers.iter().map(|i| i.issuer.clone())),
        locations.clone(),
        sealed_cookies,
    );
    let mut access_token_headers: Vec<String> = Vec::new();
    for i in &issuers {
        if let Some(crate::userinfo::Userinfo {
            access_token: crate::userinfo::AccessToken::Header(name),
            ..
        }) = &i.userinfo
        {
            if !access_token_headers.contains(name) {
                access_token_headers.push(name.clone());
            }
        }
    }
    Ok(Config {
        login_cookies,
        access_token_headers,
        sealer,
        unmatched: wire.unmatched,
        bypass_cors_preflight: wire.bypass_cors_preflight,
        rsa_verifier: wire.rsa_verifier,
        eddsa_verifier: wire.eddsa_verifier,
        ec_verifier: wire.ec_verifier,
        audit_flush_ms,
        audit_log,
        stat_prefix,
        cache_max_entries,
        cache_max_bytes,
        gateway: gateway.ok().flatten(),
        issuers,
        issuer_index,
        providers,
        matcher,
        locations,
        sanitiser,
        max_token_bytes,
        realm,
        header_prefix,
        pseudonym_key,
        registry,
        warnings: report.warnings,
    })
}

/// The top-level `registry`, with the credentials read from the VM's
/// environment.
fn registry(
    wire: &crate::registry_source::RegistryConfig,
    env: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<Warning>,
) -> Result<crate::registry_source::RegistrySettings, ConfigError> {
    let (settings, found) = crate::registry_source::compile(wire, env, "registry")?;
    for w in found {
        warnings.push(match w.split_once(": ") {
            Some((p, m)) => Warning::new(p, m),
            None => Warning::new("registry", w),
        });
    }
    Ok(settings)
}

/// A contract that takes organisations from the registry needs one; a
/// registry no contract uses is fetched for nothing (a warning).
fn registry_users(providers: &[Provider], configured: bool, report: &mut Report) {
    let mut used = false;
    for p in providers {
        let contracts = [
            ("contract", Some(&p.contract)),
            ("shadow_contract", p.shadow.as_ref()),
        ];
        for (field, c) in contracts {
            let Some(from) = c.map(|c| c.organisations_from()) else {
                continue;
            };
            if !from.uses_registry() {
                continue;
            }
            used = true;
            if !configured {
                report.errors.push(ConfigError::new(
                    join(
                        &join(&join("providers", &p.id), field),
                        "organisations_from",
                    ),
                    format!(
                        "\"{}\" needs the top-level registry (the management service source)",
                        from.as_str()
                    ),
                ));
            }
        }
    }
    if configured && !used {
        report.warnings.push(Warning::new(
            "registry",
            "no contract takes its organisations from the registry (organisations_from): it is fetched for nothing",
        ));
    }
}

/// Every issuer, each checked on its own; the refused ones are left out.
fn issuers(list: &[IssuerConfig], report: &mut Report) -> (Vec<Issuer>, HashMap<String, IssuerId>) {
    let mut issuers = Vec::new();
    let mut by_name = HashMap::new();
    if list.is_empty() {
        report.errors.push(ConfigError::new(
            "issuers",
            "at least one issuer is required",
        ));
    }
    for (i, ic) in list.iter().enumerate() {
        let path = index("issuers", i);
        let checked = issuer(ic, &path, &mut report.warnings);
        let Some(issuer) = report.keep(checked) else {
            continue;
        };
        if by_name.contains_key(&issuer.issuer) {
            report.errors.push(ConfigError::new(
                join(&path, "issuer"),
                "issuer listed twice",
            ));
            continue;
        }
        by_name.insert(issuer.issuer.clone(), IssuerId(issuers.len()));
        issuers.push(issuer);
    }
    (issuers, by_name)
}

fn stat_prefix(raw: Option<&str>) -> Result<String, ConfigError> {
    let prefix = raw.unwrap_or(DEFAULT_STAT_PREFIX);
    if prefix.is_empty()
        || prefix.len() > 64
        || !prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(ConfigError::new(
            "stat_prefix",
            "must be 1 to 64 of [a-z0-9_] (it is a label value in every metric name)",
        ));
    }
    Ok(prefix.to_owned())
}

/// A provider id as a stats tag value: a `.` would end the value inside a
/// stat name (the tag regex is `\.provider=([^.]+)`), so it becomes `_`.
pub fn stat_id(id: &str) -> String {
    id.replace('.', "_")
}

fn header_prefix(raw: Option<&str>) -> Result<String, ConfigError> {
    let prefix = raw.unwrap_or(DEFAULT_HEADER_PREFIX).to_ascii_lowercase();
    if prefix.len() < 3 || !crate::extract::is_token_name(&prefix) || !prefix.ends_with('-') {
        return Err(ConfigError::new(
            "header_prefix",
            "must be a header-name prefix of at least 3 characters ending in '-'",
        ));
    }
    Ok(prefix)
}

fn locations(wire: &PluginConfig) -> Result<Locations, ConfigError> {
    let headers: Option<Vec<(String, String)>> = wire.from_headers.as_ref().map(|hs| {
        hs.iter()
            .map(|h| (h.name.clone(), h.value_prefix.clone()))
            .collect()
    });
    Locations::compile(
        headers.as_deref(),
        &wire.from_cookies,
        &wire.from_params,
        "",
    )
}

/// `session.cookie_names`, or the oauth2 filter's defaults.
fn session_cookies(session: Option<&SessionConfig>) -> Result<Vec<String>, ConfigError> {
    let Some(names) = session.and_then(|s| s.cookie_names.as_ref()) else {
        return Ok(DEFAULT_SESSION_COOKIES
            .iter()
            .map(|c| (*c).to_owned())
            .collect());
    };
    for (i, name) in names.iter().enumerate() {
        if !crate::http::is_token(name) {
            return Err(ConfigError::new(
                index("session.cookie_names", i),
                "not a valid cookie name",
            ));
        }
    }
    Ok(names.clone())
}

fn max_token_bytes(raw: Option<usize>) -> Result<usize, ConfigError> {
    let n = raw.unwrap_or(DEFAULT_MAX_TOKEN_BYTES);
    if !(256..=1024 * 1024).contains(&n) {
        return Err(ConfigError::new(
            "max_token_bytes",
            "must be between 256 and 1048576",
        ));
    }
    Ok(n)
}

fn realm(raw: Option<&str>) -> Result<String, ConfigError> {
    let realm = raw.unwrap_or("mpass-guard");
    if realm.is_empty()
        || realm
            .bytes()
            .any(|b| b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b))
    {
        return Err(ConfigError::new(
            "realm",
            "must be non-empty printable ASCII without quotes or backslashes",
        ));
    }
    Ok(realm.to_owned())
}

fn never_release(names: &[String]) -> Result<(), ConfigError> {
    match names.iter().position(|n| n.trim().is_empty()) {
        Some(i) => Err(ConfigError::new(
            index("never_release", i),
            "must not be empty",
        )),
        None => Ok(()),
    }
}

/// A contract compiled once, for every provider that writes it identically.
struct Shared {
    contract: Rc<Contract>,
    /// Where it was first compiled, and the warnings it had there.
    path: String,
    warnings: Vec<Warning>,
}

/// Every provider in id order, each checked on its own, and the matcher;
/// `None` when any provider was refused.
fn providers(
    list: super::wire::ProviderList,
    ctx: &CompileContext<'_>,
    sanitiser: &mut Sanitiser,
    env: &dyn Fn(&str) -> Option<String>,
    gateway: Result<Option<&Gateway>, ()>,
    report: &mut Report,
) -> Option<(Vec<Provider>, crate::routing::Matcher)> {
    let mut list = list.entries;
    if list.is_empty() {
        report.errors.push(ConfigError::new(
            "providers",
            "at least one provider is required",
        ));
        return None;
    }
    list.sort_by(|a, b| a.0.cmp(&b.0));
    let mut providers = Vec::with_capacity(list.len());
    let mut matcher = MatcherBuilder::default();
    let mut refused = false;
    // Identical contracts (by their JSON text) are compiled once and shared.
    let mut contracts: HashMap<String, Shared> = HashMap::new();
    // Stat-safe id -> the provider path that took it first.
    let mut stat_ids: HashMap<String, String> = HashMap::new();
    for (id, raw) in list {
        let path = join("providers", &id);
        let sid = stat_id(&id);
        if let Some(first) = stat_ids.get(&sid) {
            report.errors.push(ConfigError::new(
                &path,
                format!(
                    "provider ids {first} and {path} both appear as provider={sid} in metric names (a '.' reads as '_'): rename one"
                ),
            ));
            refused = true;
            continue;
        }
        stat_ids.insert(sid.clone(), path.clone());
        let compiled = provider_config(&id, raw.get(), &path).and_then(|pc| {
            drop(raw);
            if pc.forward.is_some() {
                return Err(ConfigError::new(
                    join(&path, "forward"),
                    "refused: the one setting that forwards the raw token is contract.forward_token",
                ));
            }
            let hs_secret = hs_secret(
                pc.hs_secret_env.as_deref(),
                &path,
                env,
                &mut report.warnings,
            )?;
            let contract = shared_contract(
                pc.contract.as_deref(),
                &join(&path, "contract"),
                ctx,
                sanitiser,
                &mut contracts,
                report,
            )?;
            let shadow = match pc.shadow_contract.as_deref() {
                Some(raw) => Some(shared_contract(
                    Some(raw),
                    &join(&path, "shadow_contract"),
                    ctx,
                    sanitiser,
                    &mut contracts,
                    report,
                )?),
                None => None,
            };
            let rule = MatchRule {
                authorities: &pc.matching.authorities,
                path_prefixes: &pc.matching.path_prefixes,
                route_names: &pc.matching.route_names,
                public_prefixes: &pc.public_prefixes,
            };
            matcher.add(&rule, ProviderId(providers.len()), &join(&path, "match"))?;
            let signed_token = signed_token(&id, &pc, &contract, &path, gateway, report)?;
            let login = match &pc.login {
                Some(l) => Some(crate::login::Login::compile(l, &join(&path, "login"))?),
                None => None,
            };
            Ok(Provider {
                login,
                id,
                stat_id: sid,
                audiences: pc.audiences,
                hs_secret,
                forward: contract.forwards_token(),
                contract,
                shadow,
                signed_token,
            })
        });
        match compiled {
            Ok(p) => providers.push(p),
            Err(e) => {
                report.errors.push(e);
                refused = true;
            }
        }
    }
    (!refused).then(|| (providers, matcher.build()))
}

/// The provider's signed token, when its contract has one: `aud` is the
/// provider's first audience (its MPASSid client id, which the service
/// already knows). Skipped when the `gateway` block was refused.
fn signed_token(
    id: &str,
    pc: &ProviderConfig,
    contract: &Contract,
    path: &str,
    gateway: Result<Option<&Gateway>, ()>,
    report: &mut Report,
) -> Result<Option<SignedToken>, ConfigError> {
    let (Some(wire), Ok(gateway)) = (contract.signed_token(), gateway) else {
        return Ok(None);
    };
    let st_path = join(&join(path, "contract"), "signed_token");
    let audience = pc.audiences.first().map(String::as_str).unwrap_or_default();
    let mut warnings = Vec::new();
    let st = SignedToken::compile(wire, &st_path, id, audience, gateway, &mut warnings)?;
    for w in warnings {
        report.warnings.push(match w.split_once(": ") {
            Some((p, m)) => Warning::new(p, m),
            None => Warning::new(st_path.clone(), w),
        });
    }
    Ok(Some(st))
}

/// A provider's own JSON, with its id and audiences checked.
fn provider_config(id: &str, raw: &str, path: &str) -> Result<ProviderConfig, ConfigError> {
    if id.is_empty()
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(ConfigError::new(
            path,
            "provider ids use letters, digits, '-', '_' and '.' only (they appear in stats names)",
        ));
    }
    let pc: ProviderConfig = parse_at(raw, path)?;
    if pc.audiences.is_empty() {
        return Err(ConfigError::new(
            join(path, "audiences"),
            "at least one audience is required",
        ));
    }
    if let Some(i) = pc.audiences.iter().position(String::is_empty) {
        return Err(ConfigError::new(
            index(&join(path, "audiences"), i),
            "must not be empty",
        ));
    }
    Ok(pc)
}

fn hs_secret(
    var: Option<&str>,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<Warning>,
) -> Result<Option<Vec<u8>>, ConfigError> {
    let Some(var) = var else {
        return Ok(None);
    };
    let p = join(path, "hs_secret_env");
    let value = env(var).ok_or_else(|| {
        ConfigError::new(
            p.clone(),
            format!("environment variable {var} is not set in the VM"),
        )
    })?;
    if value.is_empty() {
        return Err(ConfigError::new(p, "the secret is empty"));
    }
    if value.len() < 32 {
        // RFC 7518 section 3.2 wants at least 256 bits; the secret is
        // issued by MPASSid, so warn rather than refuse.
        warnings.push(Warning::new(
            p,
            "the client secret is shorter than 32 bytes (RFC 7518 section 3.2)",
        ));
    }
    Ok(Some(value.into_bytes()))
}

/// The provider's contract, compiled or shared with an identical one.
///
/// Also compiles a `shadow_contract` (at its own path): a shadow is checked
/// exactly as an enforced contract is, and its header names are sanitised
/// too, so promoting it changes nothing a client could have pre-set.
fn shared_contract(
    raw: Option<&serde_json::value::RawValue>,
    contract_path: &str,
    ctx: &CompileContext<'_>,
    sanitiser: &mut Sanitiser,
    contracts: &mut HashMap<String, Shared>,
    report: &mut Report,
) -> Result<Rc<Contract>, ConfigError> {
    let contract_path = contract_path.to_owned();
    let key = raw.map(|c| c.get().to_owned()).unwrap_or_default();
    if let Some(shared) = contracts.get(&key) {
        // Same text, same contract: its warnings apply here too.
        for w in &shared.warnings {
            let rest = w.path.get(shared.path.len()..).unwrap_or_default();
            report.warnings.push(Warning::new(
                format!("{contract_path}{rest}"),
                w.message.clone(),
            ));
        }
        return Ok(Rc::clone(&shared.contract));
    }
    let wire_contract = match raw {
        Some(raw) => parse_at(raw.get(), &contract_path)?,
        // No contract: verification only, nothing released.
        None => release_nothing(),
    };
    let (compiled, contract_warnings) = Contract::compile(&wire_contract, &contract_path, ctx)?;
    let compiled = Rc::new(compiled);
    for name in compiled.header_names() {
        sanitiser.add_emitted(name);
    }
    // The contract writes `path: message`; its path starts with ours.
    let warnings: Vec<Warning> = contract_warnings
        .iter()
        .map(|w| match w.split_once(": ") {
            Some((p, m)) => Warning::new(p, m),
            None => Warning::new(contract_path.clone(), w.clone()),
        })
        .collect();
    report.warnings.extend(warnings.iter().cloned());
    contracts.insert(
        key,
        Shared {
            contract: Rc::clone(&compiled),
            path: contract_path,
            warnings,
        },
    );
    Ok(compiled)
}

/// A header that carries the token must not also be an identity header:
/// sanitising would strip it on every route, and a contract header of the
/// same name would overwrite the token.
fn token_headers_are_not_identity_headers(
    locations: &Locations,
    sanitiser: &Sanitiser,
    written: bool,
) -> Result<(), ConfigError> {
    for (i, loc) in locations.headers.iter().enumerate() {
        if sanitiser.is_identity_header(&loc.name) {
            let path = if written {
                join(&index("from_headers", i), "name")
            } else {
                "from_headers".to_owned()
            };
            return Err(ConfigError::new(
                path,
                "a token header cannot also be an identity header (header_prefix, strip_headers or a contract header)",
            ));
        }
    }
    Ok(())
}

fn pseudonym_key(
    audit: Option<&AuditConfig>,
    env: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<Warning>,
) -> Result<Option<Vec<u8>>, ConfigError> {
    let Some(var) = audit.and_then(|a| a.pseudonym_key_env.as_ref()) else {
        warnings.push(Warning::new(
            "",
            "audit.pseudonym_key_env is not set: audit lines carry no subject pseudonym",
        ));
        return Ok(None);
    };
    let value = env(var).ok_or_else(|| {
        ConfigError::new(
            "audit.pseudonym_key_env",
            format!("environment variable {var} is not set in the VM"),
        )
    })?;
    if value.len() < 16 {
        return Err(ConfigError::new(
            "audit.pseudonym_key_env",
            "the pseudonym key must be at least 16 bytes",
        ));
    }
    Ok(Some(value.into_bytes()))
}

fn audit_flush_ms(audit: Option<&AuditConfig>) -> Result<u64, ConfigError> {
    let mut ms = DEFAULT_AUDIT_FLUSH_MS;
    set_duration(
        &mut ms,
        audit.and_then(|a| a.flush_interval.as_deref()),
        "audit.flush_interval",
    )?;
    if ms > MAX_AUDIT_FLUSH_MS {
        return Err(ConfigError::new(
            "audit.flush_interval",
            "must be at most 10s (audit lines wait in the VM's memory until then)",
        ));
    }
    Ok(ms)
}

fn cache_bounds(cache: Option<&TokenCacheConfig>) -> Result<(usize, usize), ConfigError> {
    let entries = cache
        .and_then(|c| c.max_entries)
        .unwrap_or(DEFAULT_CACHE_MAX_ENTRIES);
    let bytes = cache
        .and_then(|c| c.max_bytes)
        .unwrap_or(DEFAULT_CACHE_MAX_BYTES);
    if entries > 1_000_000 {
        return Err(ConfigError::new(
            "token_cache.max_entries",
            "must be at most 1000000",
        ));
    }
    if bytes > 256 * 1024 * 1024 {
        return Err(ConfigError::new(
            "token_cache.max_bytes",
            "must be at most 268435456",
        ));
    }
    Ok((entries, bytes))
}

/// One issuer: its URL, algorithms, time policy and key source.
fn issuer(
    ic: &IssuerConfig,
    path: &str,
    warnings: &mut Vec<Warning>,
) -> Result<Issuer, ConfigError> {
    // OpenID Connect Core 1.0 section 2: the issuer is a case-sensitive URL
    // with no query or fragment. Plain http is accepted for loopback tests.
    let is_url = (ic.issuer.starts_with("https://") || ic.issuer.starts_with("http://"))
        && Target::parse(&ic.issuer).is_some()
        && !ic.issuer.contains(['?', '#']);
    if !is_url {
        return Err(ConfigError::new(
            join(path, "issuer"),
            "must be an https URL without query or fragment, as MPASSid's issuers are",
        ));
    }
    insecure_http(
        &ic.issuer,
        ic.allow_insecure_http,
        &join(path, "issuer"),
        warnings,
    )?;
    if let Some(remote) = &ic.remote_jwks {
        insecure_http(
            &remote.http_uri.uri,
            ic.allow_insecure_http,
            &join(path, "remote_jwks.http_uri.uri"),
            warnings,
        )?;
    }
    if ic.issuer.ends_with('/') {
        warnings.push(Warning::new(
            join(path, "issuer"),
            "ends with '/': `iss` is compared exactly, and MPASSid's issuers have no trailing '/'",
        ));
    }
    let allowed = allowed_algorithms(ic.allowed_algorithms.as_deref(), path)?;
    let time = TimePolicy {
        clock_skew_secs: ic.clock_skew_seconds.unwrap_or(DEFAULT_CLOCK_SKEW_SECONDS),
        max_lifetime_secs: Some(
            ic.max_lifetime_seconds
                .unwrap_or(DEFAULT_MAX_LIFETIME_SECONDS),
        ),
        require_expiration: ic.require_expiration.unwrap_or(true),
    };
    if time.clock_skew_secs > 600 {
        return Err(ConfigError::new(
            join(path, "clock_skew_seconds"),
            "must be at most 600",
        ));
    }
    let keys = issuer_keys(ic, &allowed, path, warnings)?;
    let userinfo = match &ic.userinfo {
        Some(u) => Some(Userinfo::compile(u, ic, &join(path, "userinfo"), warnings)?),
        None => None,
    };
    Ok(Issuer {
        issuer: ic.issuer.clone(),
        allowed,
        time,
        keys,
        userinfo,
    })
}

/// Whether the authority at the start of `rest` (a URL after its
/// `scheme://`) is a loopback host.
fn loopback(rest: &str) -> bool {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = crate::authority::Authority::parse(authority)
        .map(|a| a.host)
        .unwrap_or_default();
    host == "localhost"
        || host.ends_with(".localhost")
        || host.starts_with("127.")
        || host == "[::1]"
}

/// Whether a URL fetched at run time (from a discovery document) may be
/// used: https, or http to loopback, or any http with `allow_insecure_http`
/// - the load-time rule of [`insecure_http`], applied later.
pub(crate) fn secure_enough(url: &str, allow_insecure_http: bool) -> bool {
    if url.starts_with("https://") {
        return true;
    }
    match url.strip_prefix("http://") {
        Some(rest) => allow_insecure_http || loopback(rest),
        None => false,
    }
}

/// An `http://` URL outside loopback is refused unless the issuer says
/// `allow_insecure_http` (then it warns): keys fetched in clear text can be
/// replaced on the way, and anyone who can forge keys can forge tokens.
pub(crate) fn insecure_http(
    url: &str,
    allowed: bool,
    path: &str,
    warnings: &mut Vec<Warning>,
) -> Result<(), ConfigError> {
    let Some(rest) = url.strip_prefix("http://") else {
        return Ok(());
    };
    if loopback(rest) {
        return Ok(());
    }
    if !allowed {
        return Err(ConfigError::new(
            path,
            "an http:// URL outside loopback is refused (keys and tokens could be replaced on the way); use https, or set allow_insecure_http: true on the issuer",
        ));
    }
    warnings.push(Warning::new(
        path,
        "plain http outside loopback (allow_insecure_http): keys can be replaced on the way",
    ));
    Ok(())
}

fn allowed_algorithms(list: Option<&[String]>, path: &str) -> Result<Vec<Alg>, ConfigError> {
    let Some(list) = list else {
        return Ok(vec![Alg::RS256]);
    };
    let p = join(path, "allowed_algorithms");
    if list.is_empty() {
        return Err(ConfigError::new(p, "must list at least one algorithm"));
    }
    let mut allowed = Vec::new();
    for (i, name) in list.iter().enumerate() {
        let alg = Alg::from_name(name).ok_or_else(|| {
            let msg = if name.eq_ignore_ascii_case("none") {
                "unsigned tokens are never accepted".to_owned()
            } else {
                format!("unsupported algorithm {name:?}")
            };
            ConfigError::new(index(&p, i), msg)
        })?;
        if !allowed.contains(&alg) {
            allowed.push(alg);
        }
    }
    Ok(allowed)
}

/// The issuer's one key source: inline, `remote_jwks` or `discovery`.
fn issuer_keys(
    ic: &IssuerConfig,
    allowed: &[Alg],
    path: &str,
    warnings: &mut Vec<Warning>,
) -> Result<IssuerKeys, ConfigError> {
    let sources = usize::from(ic.local_jwks.is_some())
        + usize::from(ic.remote_jwks.is_some())
        + usize::from(ic.discovery.is_some());
    if sources > 1 {
        return Err(ConfigError::new(
            path,
            "give only one of local_jwks, remote_jwks, discovery",
        ));
    }
    if ic.key_fetch.is_some() && ic.local_jwks.is_some() {
        return Err(ConfigError::new(
            join(path, "key_fetch"),
            "applies only to remote_jwks or discovery",
        ));
    }
    if let Some(src) = &ic.local_jwks {
        let (set, skipped) = KeySet::parse(src.inline_string.as_bytes(), allowed)
            .map_err(|e| ConfigError::new(join(path, "local_jwks.inline_string"), e.to_string()))?;
        for w in skipped {
            warnings.push(Warning::new(join(path, "local_jwks"), w.to_string()));
        }
        return Ok(IssuerKeys::Local(Rc::new(set)));
    }
    if let Some(remote) = &ic.remote_jwks {
        return remote_jwks(ic, remote, path);
    }
    if let Some(d) = &ic.discovery {
        return discovery(ic, d, path);
    }
    if allowed.iter().any(|a| !a.is_hmac()) {
        return Err(ConfigError::new(
            path,
            "a key source is required: local_jwks, remote_jwks or discovery",
        ));
    }
    Ok(IssuerKeys::Local(Rc::new(KeySet::from_keys(Vec::new()))))
}

fn remote_jwks(
    ic: &IssuerConfig,
    remote: &RemoteJwksConfig,
    path: &str,
) -> Result<IssuerKeys, ConfigError> {
    let p = join(path, "remote_jwks");
    let hp = join(&p, "http_uri");
    let HttpUri {
        uri,
        cluster,
        timeout,
    } = &remote.http_uri;
    let target = Target::parse(uri)
        .ok_or_else(|| ConfigError::new(join(&hp, "uri"), "not an http(s) URL"))?;
    remote_source(
        ic,
        path,
        Source::Jwks(target),
        (cluster, &join(&hp, "cluster")),
        (timeout.as_deref(), &join(&hp, "timeout")),
        (
            remote.cache_duration.as_deref(),
            &join(&p, "cache_duration"),
        ),
    )
}

fn discovery(
    ic: &IssuerConfig,
    d: &DiscoveryConfig,
    path: &str,
) -> Result<IssuerKeys, ConfigError> {
    let p = join(path, "discovery");
    let well_known = Target::parse(&format!(
        "{}/.well-known/openid-configuration",
        ic.issuer.trim_end_matches('/')
    ))
    .ok_or_else(|| {
        ConfigError::new(
            join(path, "issuer"),
            "discovery needs an http(s) issuer URL",
        )
    })?;
    remote_source(
        ic,
        path,
        Source::Discovery { well_known },
        (&d.cluster, &join(&p, "cluster")),
        (d.timeout.as_deref(), &join(&p, "timeout")),
        (d.cache_duration.as_deref(), &join(&p, "cache_duration")),
    )
}

/// The remote key source both `remote_jwks` and `discovery` build: the
/// issuer's `key_fetch` policy with this source's timeout and cache
/// duration, each given with its field path.
fn remote_source(
    ic: &IssuerConfig,
    path: &str,
    source: Source,
    (cluster, cluster_path): (&str, &str),
    (timeout, timeout_path): (Option<&str>, &str),
    (cache, cache_path): (Option<&str>, &str),
) -> Result<IssuerKeys, ConfigError> {
    let mut policy = fetch_policy(ic.key_fetch.as_ref(), &join(path, "key_fetch"))?;
    set_duration(&mut policy.timeout_ms, timeout, timeout_path)?;
    set_duration(&mut policy.cache_duration_ms, cache, cache_path)?;
    positive(policy.timeout_ms, timeout_path)?;
    positive(policy.cache_duration_ms, cache_path)?;
    Ok(IssuerKeys::Remote {
        cluster: cluster_name(cluster, cluster_path)?,
        source,
        policy,
    })
}

/// The contract of a provider that has none: every organisation, no attribute.
fn release_nothing() -> ContractConfig {
    ContractConfig {
        organisations: vec!["*".to_owned()],
        organisations_from: Default::default(),
        identifier_form: Default::default(),
        allow_test_learner_id: false,
        required: Vec::new(),
        release: Default::default(),
        payload_header: None,
        forward_token: false,
        signed_token: None,
        agreements: Default::default(),
        default_agreement: None,
    }
}

/// The name of an Envoy cluster, checked: non-empty, no whitespace or
/// control characters.
pub(crate) fn cluster_name(name: &str, path: &str) -> Result<String, ConfigError> {
    if name.is_empty()
        || name
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(ConfigError::new(path, "must name an Envoy cluster"));
    }
    Ok(name.to_owned())
}

fn fetch_policy(kf: Option<&KeyFetchConfig>, path: &str) -> Result<FetchPolicy, ConfigError> {
    let mut p = FetchPolicy::default();
    let Some(kf) = kf else {
        return Ok(p);
    };
    set_duration(
        &mut p.initial_wait_ms,
        kf.initial_wait.as_deref(),
        &join(path, "initial_wait"),
    )?;
    set_duration(
        &mut p.refetch_interval_ms,
        kf.refetch_interval.as_deref(),
        &join(path, "refetch_interval"),
    )?;
    set_duration(
        &mut p.max_stale_ms,
        kf.max_stale.as_deref(),
        &join(path, "max_stale"),
    )?;
    set_duration(
        &mut p.backoff_initial_ms,
        kf.backoff_initial.as_deref(),
        &join(path, "backoff_initial"),
    )?;
    set_duration(
        &mut p.backoff_max_ms,
        kf.backoff_max.as_deref(),
        &join(path, "backoff_max"),
    )?;
    if let Some(n) = kf.max_response_bytes {
        if !(1024..=16 * 1024 * 1024).contains(&n) {
            return Err(ConfigError::new(
                join(path, "max_response_bytes"),
                "must be between 1024 and 16777216",
            ));
        }
        p.max_response_bytes = n;
    }
    if p.initial_wait_ms > 60_000 {
        return Err(ConfigError::new(
            join(path, "initial_wait"),
            "must be at most 60s",
        ));
    }
    if p.backoff_initial_ms == 0 || p.backoff_max_ms < p.backoff_initial_ms {
        return Err(ConfigError::new(
            join(path, "backoff_max"),
            "backoff_initial must be positive and at most backoff_max",
        ));
    }
    Ok(p)
}

/// A zero fetch timeout would be no timeout at all in Envoy, and a zero
/// cache duration a fetch on every timer tick: both are refused at load.
pub(crate) fn positive(ms: u64, path: &str) -> Result<(), ConfigError> {
    if ms == 0 {
        return Err(ConfigError::new(path, "must be longer than zero"));
    }
    Ok(())
}

/// Sets `slot` from a duration string, if one is given.
pub(crate) fn set_duration(
    slot: &mut u64,
    raw: Option<&str>,
    path: &str,
) -> Result<(), ConfigError> {
    if let Some(raw) = raw {
        *slot = parse_duration_ms(raw)
            .ok_or_else(|| ConfigError::new(path, "not a duration (e.g. \"1.5s\", \"250ms\")"))?;
    }
    Ok(())
}

/// Parses a protobuf-JSON duration (`"1.5s"`) or milliseconds (`"250ms"`).
pub fn parse_duration_ms(raw: &str) -> Option<u64> {
    let (number, scale) = if let Some(n) = raw.strip_suffix("ms") {
        (n, 1.0)
    } else {
        (raw.strip_suffix('s')?, 1000.0)
    };
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    let ms = (value * scale).round();
    (ms.is_finite() && (0.0..=1e13).contains(&ms)).then_some(ms as u64)
}
