//! The plugin configuration: its JSON wire format and its compilation into a
//! checked runtime object.
//!
//! Every check happens here, at load: a configuration that compiles cannot
//! fail at request time. Errors name the field path
//! (`providers.studeo.audiences[0]`). Unknown fields are errors. Field names
//! follow Envoy's `jwt_authn` where they mean the same thing.

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::alg::Alg;
use crate::contract::{CompileContext, Contract, ContractConfig};
use crate::error::{index, join, ConfigError};
use crate::extract::Locations;
use crate::forward::Sanitiser;
use crate::jwks::{FetchPolicy, Source, Target};
use crate::keys::KeySet;
use crate::verify::TimePolicy;

/// Default upper bound on a token's size, checked before any decoding.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Default clock skew, as in `jwt_authn`.
pub const DEFAULT_CLOCK_SKEW_SECONDS: u64 = 60;
/// Default maximum token lifetime (`exp - iat`): one day. MPASSid issues
/// one-hour ID tokens; anything living longer than a day is suspicious.
pub const DEFAULT_MAX_LIFETIME_SECONDS: u64 = 86_400;
/// The header prefix mpass-guard owns.
pub const DEFAULT_HEADER_PREFIX: &str = "x-mpass-";
/// Default token cache bounds: enough for a school's morning rush on one
/// worker, and within an 8 MiB share of the VM's memory.
pub const DEFAULT_CACHE_MAX_ENTRIES: usize = 4096;
pub const DEFAULT_CACHE_MAX_BYTES: usize = 8 * 1024 * 1024;

// ---------------------------------------------------------------- wire format

/// The plugin configuration as JSON.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    pub issuers: Vec<IssuerConfig>,
    #[serde(default)]
    pub from_headers: Option<Vec<HeaderConfig>>,
    #[serde(default)]
    pub from_cookies: Vec<String>,
    #[serde(default)]
    pub from_params: Vec<String>,
    #[serde(default)]
    pub header_prefix: Option<String>,
    #[serde(default)]
    pub strip_headers: Vec<String>,
    #[serde(default)]
    pub never_release: Vec<String>,
    #[serde(default)]
    pub max_token_bytes: Option<usize>,
    #[serde(default)]
    pub realm: Option<String>,
    #[serde(default)]
    pub audit: Option<AuditConfig>,
    #[serde(default)]
    pub token_cache: Option<TokenCacheConfig>,
    /// Provider id -> its JSON, kept raw so that each provider is parsed,
    /// compiled and dropped in turn: with thousands of providers the VM's
    /// memory (which never shrinks) then peaks at one provider's wire form.
    pub providers: ProviderList,
}

/// The `providers` object, in the order written, each value still raw JSON.
/// A provider id written twice is an error (a map would keep the last).
#[derive(Debug, Default)]
pub struct ProviderList(pub Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for ProviderList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = ProviderList;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object of provider ids to providers")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<ProviderList, A::Error> {
                let mut out: Vec<(String, Box<RawValue>)> = Vec::new();
                let mut seen = HashSet::new();
                while let Some(id) = m.next_key::<String>()? {
                    if !seen.insert(id.clone()) {
                        return Err(serde::de::Error::custom(format!(
                            "provider `{id}` is listed twice"
                        )));
                    }
                    out.push((id, m.next_value()?));
                }
                Ok(ProviderList(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// One trusted issuer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    pub issuer: String,
    #[serde(default)]
    pub local_jwks: Option<DataSource>,
    #[serde(default)]
    pub remote_jwks: Option<RemoteJwksConfig>,
    #[serde(default)]
    pub discovery: Option<DiscoveryConfig>,
    #[serde(default)]
    pub key_fetch: Option<KeyFetchConfig>,
    #[serde(default)]
    pub allowed_algorithms: Option<Vec<String>>,
    #[serde(default)]
    pub clock_skew_seconds: Option<u64>,
    #[serde(default)]
    pub max_lifetime_seconds: Option<u64>,
    #[serde(default)]
    pub require_expiration: Option<bool>,
}

/// Envoy's `DataSource`, inline forms only (a Wasm VM cannot read files).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSource {
    pub inline_string: String,
}

/// Envoy's `HttpUri`: where to fetch, through which cluster.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpUri {
    pub uri: String,
    pub cluster: String,
    #[serde(default)]
    pub timeout: Option<String>,
}

/// `jwt_authn`'s `remote_jwks`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteJwksConfig {
    pub http_uri: HttpUri,
    #[serde(default)]
    pub cache_duration: Option<String>,
}

/// OpenID Connect discovery from the issuer URL.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryConfig {
    /// The Envoy cluster that reaches the issuer (TLS is the cluster's business).
    pub cluster: String,
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub cache_duration: Option<String>,
}

/// How remote keys behave over time.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFetchConfig {
    #[serde(default)]
    pub initial_wait: Option<String>,
    #[serde(default)]
    pub refetch_interval: Option<String>,
    #[serde(default)]
    pub max_stale: Option<String>,
    #[serde(default)]
    pub backoff_initial: Option<String>,
    #[serde(default)]
    pub backoff_max: Option<String>,
    #[serde(default)]
    pub max_response_bytes: Option<usize>,
}

/// A header that may carry the token.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderConfig {
    pub name: String,
    #[serde(default)]
    pub value_prefix: String,
}

/// The per-VM verified-token cache.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenCacheConfig {
    /// Entries at most; 0 turns the cache off.
    #[serde(default)]
    pub max_entries: Option<usize>,
    /// Approximate bytes at most.
    #[serde(default)]
    pub max_bytes: Option<usize>,
}

/// Audit settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Environment variable (from `vm_config.environment_variables`) holding
    /// the key for the keyed pseudonym of `sub`.
    #[serde(default)]
    pub pseudonym_key_env: Option<String>,
    /// How long audit lines may wait in the VM to be written together in one
    /// log call (`"0s"`, the default: one log call per decision). Batching
    /// saves a host call and a log write per request; lines still waiting
    /// when a VM fails are lost.
    #[serde(default)]
    pub flush_interval: Option<String>,
}

/// Default for `audit.flush_interval`: none, one log call per decision, so
/// a line is in Envoy's log by the time the response is sent.
pub const DEFAULT_AUDIT_FLUSH_MS: u64 = 0;
/// Longest `audit.flush_interval` accepted.
pub const MAX_AUDIT_FLUSH_MS: u64 = 10_000;

/// One service provider.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub audiences: Vec<String>,
    #[serde(rename = "match")]
    pub matching: MatchConfig,
    #[serde(default)]
    pub hs_secret_env: Option<String>,
    #[serde(default)]
    pub forward: bool,
    /// Kept raw: identical contracts are compiled once.
    #[serde(default)]
    pub contract: Option<Box<RawValue>>,
}

/// How requests are matched to a provider.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    #[serde(default)]
    pub authorities: Vec<String>,
    #[serde(default)]
    pub path_prefixes: Vec<String>,
    #[serde(default)]
    pub route_names: Vec<String>,
}

// ------------------------------------------------------------ compiled form

/// Where a checked issuer's keys come from.
#[derive(Debug)]
pub enum IssuerKeys {
    /// Inline keys, fixed for the life of the configuration.
    Local(Rc<KeySet>),
    /// Keys fetched through an Envoy cluster; their state lives in a
    /// [`KeyStore`](crate::jwks::KeyStore).
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
}

/// A checked provider.
#[derive(Debug)]
pub struct Provider {
    pub id: String,
    pub audiences: Vec<String>,
    /// The client secret for HS* ID tokens, from the VM's environment.
    pub hs_secret: Option<Vec<u8>>,
    /// Keep the token in the request after verification.
    pub forward: bool,
    /// Shared between providers whose contracts are written identically.
    pub contract: Rc<Contract>,
}

/// The whole compiled configuration.
#[derive(Debug)]
pub struct Config {
    pub issuers: Vec<Issuer>,
    issuer_index: HashMap<String, usize>,
    pub providers: Vec<Provider>,
    pub matcher: Matcher,
    pub locations: Locations,
    pub sanitiser: Sanitiser,
    pub max_token_bytes: usize,
    pub realm: String,
    pub header_prefix: String,
    /// Key for the audit pseudonym of `sub`; `None` leaves it out.
    pub pseudonym_key: Option<Vec<u8>>,
    /// Longest time an audit line waits to be logged with others (0: never).
    pub audit_flush_ms: u64,
    /// Token cache bounds.
    pub cache_max_entries: usize,
    pub cache_max_bytes: usize,
    /// Load-time warnings, logged by the glue.
    pub warnings: Vec<String>,
}

impl Config {
    /// Parses and compiles `json`. `env` reads the VM's environment.
    pub fn load(json: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let de = &mut serde_json::Deserializer::from_slice(json);
        let wire: PluginConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            ConfigError::new(path, strip_position(&e.inner().to_string()))
        })?;
        compile(wire, env)
    }

    /// The issuer with exactly this `iss`, and its index.
    pub fn issuer(&self, iss: &str) -> Option<(usize, &Issuer)> {
        let i = *self.issuer_index.get(iss)?;
        Some((i, self.issuers.get(i)?))
    }
}

/// serde_json appends "at line 1 column 7"; the path says more.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg.get(..i).unwrap_or(msg).to_owned(),
        None => msg.to_owned(),
    }
}

fn compile(
    wire: PluginConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let mut warnings = Vec::new();

    if wire.issuers.is_empty() {
        return Err(ConfigError::new(
            "issuers",
            "at least one issuer is required",
        ));
    }
    let mut issuers = Vec::new();
    let mut issuer_index = HashMap::new();
    for (i, ic) in wire.issuers.iter().enumerate() {
        let path = index("issuers", i);
        let issuer = compile_issuer(ic, &path, &mut warnings)?;
        if issuer_index.insert(issuer.issuer.clone(), i).is_some() {
            return Err(ConfigError::new(
                join(&path, "issuer"),
                "issuer listed twice",
            ));
        }
        issuers.push(issuer);
    }

    let header_prefix = wire
        .header_prefix
        .clone()
        .unwrap_or_else(|| DEFAULT_HEADER_PREFIX.to_owned())
        .to_ascii_lowercase();
    if header_prefix.len() < 3
        || !crate::extract::is_token_name(&header_prefix)
        || !header_prefix.ends_with('-')
    {
        return Err(ConfigError::new(
            "header_prefix",
            "must be a header-name prefix of at least 3 characters ending in '-'",
        ));
    }

    let headers: Option<Vec<(String, String)>> = wire.from_headers.as_ref().map(|hs| {
        hs.iter()
            .map(|h| (h.name.clone(), h.value_prefix.clone()))
            .collect()
    });
    let locations = Locations::compile(
        headers.as_deref(),
        &wire.from_cookies,
        &wire.from_params,
        "",
    )?;
    let mut sanitiser = Sanitiser::compile(&header_prefix, &wire.strip_headers, "")?;

    let max_token_bytes = wire.max_token_bytes.unwrap_or(DEFAULT_MAX_TOKEN_BYTES);
    if !(256..=1024 * 1024).contains(&max_token_bytes) {
        return Err(ConfigError::new(
            "max_token_bytes",
            "must be between 256 and 1048576",
        ));
    }
    let realm = wire
        .realm
        .clone()
        .unwrap_or_else(|| "mpass-guard".to_owned());
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

    for (i, name) in wire.never_release.iter().enumerate() {
        if name.trim().is_empty() {
            return Err(ConfigError::new(
                index("never_release", i),
                "must not be empty",
            ));
        }
    }
    let ctx = CompileContext {
        header_prefix: &header_prefix,
        extra_never_release: &wire.never_release,
    };

    if wire.providers.0.is_empty() {
        return Err(ConfigError::new(
            "providers",
            "at least one provider is required",
        ));
    }
    let mut list = wire.providers.0;
    list.sort_by(|a, b| a.0.cmp(&b.0));
    let mut providers = Vec::with_capacity(list.len());
    let mut matcher = MatcherBuilder::default();
    // Identical contracts (by their JSON text) are compiled once and shared.
    let mut contracts: HashMap<String, (Rc<Contract>, String, Vec<String>)> = HashMap::new();
    for (id, raw) in list {
        let path = join("providers", &id);
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
        let de = &mut serde_json::Deserializer::from_str(raw.get());
        let pc: ProviderConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let inner = e.path().to_string();
            let at = if inner == "." {
                path.clone()
            } else {
                join(&path, &inner)
            };
            ConfigError::new(at, strip_position(&e.inner().to_string()))
        })?;
        drop(raw);
        if pc.audiences.is_empty() {
            return Err(ConfigError::new(
                join(&path, "audiences"),
                "at least one audience is required",
            ));
        }
        for (i, a) in pc.audiences.iter().enumerate() {
            if a.is_empty() {
                return Err(ConfigError::new(
                    index(&join(&path, "audiences"), i),
                    "must not be empty",
                ));
            }
        }
        let hs_secret = match &pc.hs_secret_env {
            None => None,
            Some(var) => {
                let p = join(&path, "hs_secret_env");
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
                    // RFC 7518 section 3.2 wants at least 256 bits; the
                    // secret is issued by MPASSid, so warn rather than refuse.
                    warnings.push(format!(
                        "{p}: the client secret is shorter than 32 bytes (RFC 7518 section 3.2)"
                    ));
                }
                Some(value.into_bytes())
            }
        };
        let contract_path = join(&path, "contract");
        let key = match &pc.contract {
            Some(c) => c.get().to_owned(),
            None => String::new(),
        };
        let contract = match contracts.get(&key) {
            Some((contract, first_path, first_warnings)) => {
                // Same text, same contract: its warnings apply here too.
                for w in first_warnings {
                    warnings.push(w.replacen(first_path.as_str(), &contract_path, 1));
                }
                Rc::clone(contract)
            }
            None => {
                let wire_contract = match &pc.contract {
                    Some(raw) => {
                        let de = &mut serde_json::Deserializer::from_str(raw.get());
                        serde_path_to_error::deserialize(de).map_err(|e| {
                            let inner = e.path().to_string();
                            let at = if inner == "." {
                                contract_path.clone()
                            } else {
                                join(&contract_path, &inner)
                            };
                            ConfigError::new(at, strip_position(&e.inner().to_string()))
                        })?
                    }
                    // No contract: verification only, nothing released.
                    None => release_nothing(),
                };
                let (compiled, contract_warnings) =
                    Contract::compile(&wire_contract, &contract_path, &ctx)?;
                let compiled = Rc::new(compiled);
                for name in compiled.header_names() {
                    sanitiser.add_emitted(name);
                }
                warnings.extend(contract_warnings.iter().cloned());
                contracts.insert(
                    key,
                    (
                        Rc::clone(&compiled),
                        contract_path.clone(),
                        contract_warnings,
                    ),
                );
                compiled
            }
        };
        let pi = providers.len();
        matcher.add(&pc.matching, pi, &join(&path, "match"))?;
        providers.push(Provider {
            id,
            audiences: pc.audiences,
            hs_secret,
            forward: pc.forward || contract.forwards_token(),
            contract,
        });
    }

    // A header that carries the token must not also be an identity header:
    // sanitising would strip it on every route, and a contract header of the
    // same name would overwrite the token.
    for (i, loc) in locations.headers.iter().enumerate() {
        if sanitiser.is_identity_header(&loc.name) {
            let path = if wire.from_headers.is_some() {
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

    let pseudonym_key = match wire
        .audit
        .as_ref()
        .and_then(|a| a.pseudonym_key_env.as_ref())
    {
        None => {
            warnings.push(
                "audit.pseudonym_key_env is not set: audit lines carry no subject pseudonym".into(),
            );
            None
        }
        Some(var) => {
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
            Some(value.into_bytes())
        }
    };

    let mut audit_flush_ms = DEFAULT_AUDIT_FLUSH_MS;
    set_duration(
        &mut audit_flush_ms,
        wire.audit
            .as_ref()
            .and_then(|a| a.flush_interval.as_deref()),
        "audit.flush_interval",
    )?;
    if audit_flush_ms > MAX_AUDIT_FLUSH_MS {
        return Err(ConfigError::new(
            "audit.flush_interval",
            "must be at most 10s (audit lines wait in the VM's memory until then)",
        ));
    }

    let cache = wire.token_cache.as_ref();
    let cache_max_entries = cache
        .and_then(|c| c.max_entries)
        .unwrap_or(DEFAULT_CACHE_MAX_ENTRIES);
    let cache_max_bytes = cache
        .and_then(|c| c.max_bytes)
        .unwrap_or(DEFAULT_CACHE_MAX_BYTES);
    if cache_max_entries > 1_000_000 {
        return Err(ConfigError::new(
            "token_cache.max_entries",
            "must be at most 1000000",
        ));
    }
    if cache_max_bytes > 256 * 1024 * 1024 {
        return Err(ConfigError::new(
            "token_cache.max_bytes",
            "must be at most 268435456",
        ));
    }

    Ok(Config {
        audit_flush_ms,
        cache_max_entries,
        cache_max_bytes,
        issuers,
        issuer_index,
        providers,
        matcher: matcher.build(),
        locations,
        sanitiser,
        max_token_bytes,
        realm,
        header_prefix,
        pseudonym_key,
        warnings,
    })
}

fn compile_issuer(
    ic: &IssuerConfig,
    path: &str,
    warnings: &mut Vec<String>,
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
    let mut allowed = Vec::new();
    match &ic.allowed_algorithms {
        None => allowed.push(Alg::RS256),
        Some(list) => {
            let p = join(path, "allowed_algorithms");
            if list.is_empty() {
                return Err(ConfigError::new(p, "must list at least one algorithm"));
            }
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
        }
    }
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
    let needs_jwks = allowed.iter().any(|a| !a.is_hmac());
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
    let keys = if let Some(src) = &ic.local_jwks {
        let (set, skipped) = KeySet::parse(src.inline_string.as_bytes(), &allowed)
            .map_err(|e| ConfigError::new(join(path, "local_jwks.inline_string"), e.to_string()))?;
        for w in skipped {
            warnings.push(format!("{}: {w}", join(path, "local_jwks")));
        }
        IssuerKeys::Local(Rc::new(set))
    } else if let Some(remote) = &ic.remote_jwks {
        let p = join(path, "remote_jwks");
        let hp = join(&p, "http_uri");
        let target = Target::parse(&remote.http_uri.uri)
            .ok_or_else(|| ConfigError::new(join(&hp, "uri"), "not an http(s) URL"))?;
        let mut policy = fetch_policy(ic.key_fetch.as_ref(), &join(path, "key_fetch"))?;
        set_duration(
            &mut policy.timeout_ms,
            remote.http_uri.timeout.as_deref(),
            &join(&hp, "timeout"),
        )?;
        set_duration(
            &mut policy.cache_duration_ms,
            remote.cache_duration.as_deref(),
            &join(&p, "cache_duration"),
        )?;
        positive(policy.timeout_ms, &join(&hp, "timeout"))?;
        positive(policy.cache_duration_ms, &join(&p, "cache_duration"))?;
        IssuerKeys::Remote {
            cluster: cluster_name(&remote.http_uri.cluster, &join(&hp, "cluster"))?,
            source: Source::Jwks(target),
            policy,
        }
    } else if let Some(d) = &ic.discovery {
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
        let mut policy = fetch_policy(ic.key_fetch.as_ref(), &join(path, "key_fetch"))?;
        set_duration(
            &mut policy.timeout_ms,
            d.timeout.as_deref(),
            &join(&p, "timeout"),
        )?;
        set_duration(
            &mut policy.cache_duration_ms,
            d.cache_duration.as_deref(),
            &join(&p, "cache_duration"),
        )?;
        positive(policy.timeout_ms, &join(&p, "timeout"))?;
        positive(policy.cache_duration_ms, &join(&p, "cache_duration"))?;
        IssuerKeys::Remote {
            cluster: cluster_name(&d.cluster, &join(&p, "cluster"))?,
            source: Source::Discovery { well_known },
            policy,
        }
    } else if needs_jwks {
        return Err(ConfigError::new(
            path,
            "a key source is required: local_jwks, remote_jwks or discovery",
        ));
    } else {
        IssuerKeys::Local(Rc::new(KeySet::from_keys(Vec::new())))
    };
    Ok(Issuer {
        issuer: ic.issuer.clone(),
        allowed,
        time,
        keys,
    })
}

/// The contract of a provider that has none: every organisation, no attribute.
fn release_nothing() -> ContractConfig {
    ContractConfig {
        organisations: vec!["*".to_owned()],
        identifier_form: Default::default(),
        allow_test_learner_id: false,
        required: Vec::new(),
        release: Default::default(),
        payload_header: None,
        forward_token: false,
        agreements: Default::default(),
        default_agreement: None,
    }
}

fn cluster_name(name: &str, path: &str) -> Result<String, ConfigError> {
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
fn positive(ms: u64, path: &str) -> Result<(), ConfigError> {
    if ms == 0 {
        return Err(ConfigError::new(path, "must be longer than zero"));
    }
    Ok(())
}

fn set_duration(slot: &mut u64, raw: Option<&str>, path: &str) -> Result<(), ConfigError> {
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

// ------------------------------------------------------------------ matching

/// The result of matching a request to a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// No provider: the request passes through (sanitised).
    None,
    /// This provider.
    Provider(usize),
    /// The raw and the normalised path match different providers.
    Conflict,
}

/// Finds the provider a request goes to. Precedence: Envoy route name, then
/// authority with the longest path prefix, then any authority with the
/// longest path prefix. Lookups are hash lookups, one per distinct prefix
/// length, so the cost does not grow with the number of providers.
#[derive(Debug, Default)]
pub struct Matcher {
    by_route: HashMap<String, usize>,
    /// authority ("" for any) -> path prefix ("" for any) -> provider.
    by_authority: HashMap<String, HashMap<String, usize>>,
    /// Distinct prefix lengths, longest first.
    lengths: Vec<usize>,
    /// Whether any provider matches on route names (saves a host call).
    pub uses_route_names: bool,
}

#[derive(Default)]
struct MatcherBuilder {
    m: Matcher,
}

impl MatcherBuilder {
    fn add(&mut self, mc: &MatchConfig, provider: usize, path: &str) -> Result<(), ConfigError> {
        if mc.authorities.is_empty() && mc.path_prefixes.is_empty() && mc.route_names.is_empty() {
            return Err(ConfigError::new(
                path,
                "give at least one of authorities, path_prefixes, route_names",
            ));
        }
        for (i, r) in mc.route_names.iter().enumerate() {
            let p = index(&join(path, "route_names"), i);
            if r.is_empty() {
                return Err(ConfigError::new(p, "must not be empty"));
            }
            if self.m.by_route.insert(r.clone(), provider).is_some() {
                return Err(ConfigError::new(
                    p,
                    "route name already used by another provider",
                ));
            }
            self.m.uses_route_names = true;
        }
        if mc.authorities.is_empty() && mc.path_prefixes.is_empty() {
            return Ok(());
        }
        let mut authorities = Vec::new();
        for (i, a) in mc.authorities.iter().enumerate() {
            let norm = normalise_authority(a);
            if norm.is_empty()
                || norm
                    .bytes()
                    .any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b == b'/')
            {
                return Err(ConfigError::new(
                    index(&join(path, "authorities"), i),
                    "not a host[:port]",
                ));
            }
            authorities.push((norm, i));
        }
        if authorities.is_empty() {
            authorities.push((String::new(), 0));
        }
        let mut prefixes = Vec::new();
        for (i, p) in mc.path_prefixes.iter().enumerate() {
            if !p.starts_with('/') || p.contains('?') || p.contains('#') {
                return Err(ConfigError::new(
                    index(&join(path, "path_prefixes"), i),
                    "must start with '/' and hold no query or fragment",
                ));
            }
            prefixes.push((p.clone(), i));
        }
        if prefixes.is_empty() {
            prefixes.push((String::new(), 0));
        }
        for (a, ai) in &authorities {
            for (p, pi) in &prefixes {
                let slot = self.m.by_authority.entry(a.clone()).or_default();
                if slot.insert(p.clone(), provider).is_some() {
                    let at = if mc.path_prefixes.is_empty() {
                        index(&join(path, "authorities"), *ai)
                    } else {
                        index(&join(path, "path_prefixes"), *pi)
                    };
                    return Err(ConfigError::new(
                        at,
                        "another provider already matches this authority and path",
                    ));
                }
                if !self.m.lengths.contains(&p.len()) {
                    self.m.lengths.push(p.len());
                }
            }
        }
        Ok(())
    }

    fn build(mut self) -> Matcher {
        self.m.lengths.sort_unstable_by(|a, b| b.cmp(a));
        self.m
    }
}

impl Matcher {
    /// The provider for a request (`path` may carry a query). The path is
    /// matched both as a normalising upstream reads it (so `//shop/x` or
    /// `/public/../shop/x` cannot slip past the `/shop/` provider when Envoy
    /// does not normalise) and as sent (so `/shop/../public` still needs a
    /// token): matching more is the safe direction. When the two belong to
    /// different providers (`/a/../b/x`), Envoy may route the raw path to one
    /// service while the token and the release would be the other's, so the
    /// answer is [`Lookup::Conflict`] and the request is refused.
    pub fn find_checked(&self, authority: &str, path: &str, route_name: Option<&str>) -> Lookup {
        if let Some(r) = route_name.and_then(|r| self.by_route.get(r)) {
            return Lookup::Provider(*r);
        }
        let path = path.split(['?', '#']).next().unwrap_or_default();
        self.lookup(&normalise_authority(authority), path)
    }

    fn lookup(&self, authority: &str, path: &str) -> Lookup {
        let normalised = self.find_path(authority, &normalise_path(path));
        let raw = self.find_path(authority, path);
        match (normalised, raw) {
            (Some(a), Some(b)) if a != b => Lookup::Conflict,
            (Some(a), _) | (None, Some(a)) => Lookup::Provider(a),
            (None, None) => Lookup::None,
        }
    }

    fn find_path(&self, authority: &str, path: &str) -> Option<usize> {
        for auth in [authority, ""] {
            if let Some(prefixes) = self.by_authority.get(auth) {
                for &len in &self.lengths {
                    if let Some(p) = path.get(..len).and_then(|p| prefixes.get(p)) {
                        return Some(*p);
                    }
                }
            }
        }
        None
    }
}

/// A request path (without query) as an upstream that normalises paths
/// would read it: `%2E`, `%2F` and `%5C` decoded, `\` read as `/`, repeated
/// slashes merged and `.` / `..` segments removed (RFC 3986 section 5.2.4).
/// Used for provider matching only; Envoy's own `normalize_path` and
/// `merge_slashes` should still be on (see SECURITY.md).
pub fn normalise_path(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut decoded = String::with_capacity(path.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let escaped = (b == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .filter(|c| matches!(c, b'.' | b'/' | b'\\'));
        match escaped {
            Some(c) => {
                decoded.push(char::from(c));
                i += 3;
            }
            None => {
                let len = path
                    .get(i..)
                    .and_then(|rest| rest.chars().next())
                    .map_or(1, char::len_utf8);
                decoded.push_str(path.get(i..i + len).unwrap_or_default());
                i += len;
            }
        }
    }
    let decoded = decoded.replace('\\', "/");
    let mut segments: Vec<&str> = Vec::new();
    let raw: Vec<&str> = decoded.split('/').collect();
    for seg in &raw {
        match *seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for seg in &segments {
        out.push('/');
        out.push_str(seg);
    }
    let trailing = matches!(raw.last(), Some(&"" | &"." | &".."));
    if trailing || out.is_empty() {
        out.push('/');
    }
    out
}

/// Lowercases, drops a trailing dot and the default ports 80 and 443.
pub fn normalise_authority(a: &str) -> String {
    let mut s = a.trim().to_ascii_lowercase();
    for port in [":80", ":443"] {
        if let Some(stripped) = s.strip_suffix(port) {
            s = stripped.to_owned();
            break;
        }
    }
    if let Some(stripped) = s.strip_suffix('.') {
        s = stripped.to_owned();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"k","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;

    fn base() -> Value {
        json!({
            "issuers": [{
                "issuer": "https://mpass-proxy-test.csc.fi",
                "allowed_algorithms": ["ES256"],
                "local_jwks": { "inline_string": JWKS }
            }],
            "providers": {
                "shop": { "audiences": ["shop"], "match": { "path_prefixes": ["/shop/"] } }
            }
        })
    }

    fn load(v: &Value) -> Result<Config, ConfigError> {
        Config::load(v.to_string().as_bytes(), &|name| {
            (name == "SECRET").then(|| "s".repeat(40))
        })
    }

    fn error_path(v: &Value) -> String {
        load(v)
            .err()
            .map(|e| e.path)
            .unwrap_or_else(|| "<accepted>".into())
    }

    #[test]
    fn the_base_configuration_loads_with_defaults() {
        let c = load(&base()).unwrap();
        let (_, issuer) = c.issuer("https://mpass-proxy-test.csc.fi").unwrap();
        assert_eq!(issuer.time.clock_skew_secs, 60);
        assert_eq!(issuer.time.max_lifetime_secs, Some(86_400));
        assert!(issuer.time.require_expiration);
        assert_eq!(c.max_token_bytes, 16 * 1024);
        assert_eq!(c.header_prefix, "x-mpass-");
        assert_eq!(c.locations, Locations::default());
    }

    #[test]
    fn every_error_names_its_field_path() {
        type Mutation = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(&str, Mutation)> = vec![
            (
                "issuers[0].jwks_url",
                Box::new(|v| v["issuers"][0]["jwks_url"] = json!("x")),
            ),
            (
                "providers.shop.audiences[0]",
                Box::new(|v| v["providers"]["shop"]["audiences"] = json!([""])),
            ),
            (
                "providers.shop.audiences",
                Box::new(|v| v["providers"]["shop"]["audiences"] = json!([])),
            ),
            (
                "issuers[0].allowed_algorithms[0]",
                Box::new(|v| v["issuers"][0]["allowed_algorithms"] = json!(["none"])),
            ),
            (
                "issuers[0].issuer",
                Box::new(|v| v["issuers"][0]["issuer"] = json!("not a url")),
            ),
            (
                "issuers[0]",
                Box::new(|v| {
                    v["issuers"][0]["remote_jwks"] =
                        json!({"http_uri": {"uri": "https://k/j", "cluster": "c"}});
                }),
            ),
            (
                "issuers[0].remote_jwks.http_uri.timeout",
                Box::new(|v| {
                    v["issuers"][0]
                        .as_object_mut()
                        .unwrap()
                        .remove("local_jwks");
                    v["issuers"][0]["remote_jwks"] = json!({"http_uri": {"uri": "https://k/j", "cluster": "c", "timeout": "soon"}});
                }),
            ),
            (
                "providers.shop.hs_secret_env",
                Box::new(|v| v["providers"]["shop"]["hs_secret_env"] = json!("MISSING")),
            ),
            (
                "providers.shop.match",
                Box::new(|v| v["providers"]["shop"]["match"] = json!({})),
            ),
            (
                "providers.shop.match.path_prefixes[0]",
                Box::new(|v| v["providers"]["shop"]["match"]["path_prefixes"] = json!(["shop"])),
            ),
            (
                "from_headers[0].name",
                Box::new(|v| v["from_headers"] = json!([{"name": "X-Mpass-Token"}])),
            ),
            (
                "from_headers[0].name",
                Box::new(|v| {
                    v["strip_headers"] = json!(["x-id-token"]);
                    v["from_headers"] = json!([{"name": "x_id_token"}]);
                }),
            ),
            (
                "token_cache.max_entries",
                Box::new(|v| v["token_cache"] = json!({"max_entries": 10_000_000})),
            ),
            (
                "header_prefix",
                Box::new(|v| v["header_prefix"] = json!("x")),
            ),
        ];
        for (want, mutate) in cases {
            let mut v = base();
            mutate(&mut v);
            assert_eq!(error_path(&v), want, "{v}");
        }
    }

    #[test]
    fn a_provider_id_written_twice_is_refused() {
        let text = r#"{"issuers": [], "providers": {"a": {}, "a": {}}}"#;
        let err = Config::load(text.as_bytes(), &|_| None).unwrap_err();
        assert!(err.message.contains("listed twice"), "{err}");
    }

    #[test]
    fn errors_inside_a_provider_name_the_full_path() {
        let mut v = base();
        v["providers"]["shop"]["contract"] =
            json!({"organisations": ["*"], "release": {"uid": {"purpos": "x"}}});
        assert_eq!(error_path(&v), "providers.shop.contract.release.uid.purpos");
        let mut v = base();
        v["providers"]["shop"]["match"]["hosts"] = json!(["x"]);
        assert_eq!(error_path(&v), "providers.shop.match.hosts");
    }

    #[test]
    fn identical_contracts_are_compiled_once_and_shared() {
        let mut v = base();
        let contract =
            json!({"organisations": ["*"], "release": {"email": {"purpose": "receipts"}}});
        v["providers"] = json!({
            "a": { "audiences": ["a"], "match": { "path_prefixes": ["/a/"] }, "contract": contract },
            "b": { "audiences": ["b"], "match": { "path_prefixes": ["/b/"] }, "contract": contract },
            "c": { "audiences": ["c"], "match": { "path_prefixes": ["/c/"] },
                   "contract": {"organisations": ["*"], "release": {"uid": {}}} }
        });
        let c = load(&v).unwrap();
        assert!(Rc::ptr_eq(
            &c.providers[0].contract,
            &c.providers[1].contract
        ));
        assert!(!Rc::ptr_eq(
            &c.providers[0].contract,
            &c.providers[2].contract
        ));
        // The shared contract's warning (e-mail not limited to staff) is
        // reported for each provider that has it.
        for id in ["providers.a.contract", "providers.b.contract"] {
            assert!(
                c.warnings.iter().any(|w| w.starts_with(id)),
                "{id}: {:?}",
                c.warnings
            );
        }
    }

    #[test]
    fn two_providers_cannot_claim_the_same_path() {
        let mut v = base();
        v["providers"]["zeta"] =
            json!({ "audiences": ["o"], "match": { "path_prefixes": ["/shop/"] } });
        // Providers are compiled in id order; the later one is named.
        assert_eq!(error_path(&v), "providers.zeta.match.path_prefixes[0]");
    }

    #[test]
    fn providers_match_by_route_then_authority_then_longest_prefix() {
        let mut v = base();
        v["providers"] = json!({
            "any-shop": { "audiences": ["a"], "match": { "path_prefixes": ["/shop/"] } },
            "deep": { "audiences": ["b"], "match": { "path_prefixes": ["/shop/admin/"] } },
            "host": { "audiences": ["c"], "match": { "authorities": ["Shop.Example.FI"] } },
            "host-shop": { "audiences": ["d"], "match": { "authorities": ["shop.example.fi"], "path_prefixes": ["/shop/"] } },
            "route": { "audiences": ["e"], "match": { "route_names": ["r1"] } }
        });
        let c = load(&v).unwrap();
        let id = |authority: &str, path: &str, route: Option<&str>| match c
            .matcher
            .find_checked(authority, path, route)
        {
            Lookup::Provider(i) => Some(c.providers[i].id.as_str()),
            Lookup::None | Lookup::Conflict => None,
        };
        assert_eq!(id("x.fi", "/shop/a", None), Some("any-shop"));
        assert_eq!(id("x.fi", "/shop/admin/x?q=1", None), Some("deep"));
        assert_eq!(id("shop.example.fi:443", "/other", None), Some("host"));
        assert_eq!(id("SHOP.example.fi", "/shop/x", None), Some("host-shop"));
        assert_eq!(id("shop.example.fi", "/shop/x", Some("r1")), Some("route"));
        assert_eq!(id("x.fi", "/public", None), None);
        assert_eq!(id("x.fi", "/sho", None), None);
        // A path that reads as another provider's once normalised is neither.
        assert_eq!(
            c.matcher.find_checked("x.fi", "/shop/admin/../x", None),
            Lookup::Conflict
        );
        assert_eq!(
            c.matcher.find_checked("x.fi", "//shop/x", None),
            Lookup::Provider(0)
        );
    }

    #[test]
    fn durations_read_seconds_and_milliseconds() {
        assert_eq!(parse_duration_ms("1.5s"), Some(1500));
        assert_eq!(parse_duration_ms("250ms"), Some(250));
        assert_eq!(parse_duration_ms("600s"), Some(600_000));
        for bad in ["", "s", "10", "-1s", "1e3s", "1.5m", "ten seconds"] {
            assert_eq!(parse_duration_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_short_client_secret_is_a_warning_not_an_error() {
        let mut v = base();
        v["issuers"][0]["allowed_algorithms"] = json!(["ES256", "HS256"]);
        v["providers"]["shop"]["hs_secret_env"] = json!("SHORT");
        let c = Config::load(v.to_string().as_bytes(), &|_| Some("tiny".into())).unwrap();
        assert!(c
            .warnings
            .iter()
            .any(|w| w.contains("shorter than 32 bytes")));
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod key_fetch_tests {
    use super::*;
    use serde_json::json;

    fn load_issuer(issuer: serde_json::Value) -> Result<Config, ConfigError> {
        let cfg = json!({
            "issuers": [issuer],
            "providers": {"p": {"audiences": ["client"], "match": {"path_prefixes": ["/"]}}}
        });
        Config::load(&serde_json::to_vec(&cfg).unwrap(), &|_| None)
    }

    fn remote(issuer: &Config) -> (&str, &Source, &FetchPolicy) {
        match &issuer.issuers[0].keys {
            IssuerKeys::Remote {
                cluster,
                source,
                policy,
            } => (cluster.as_str(), source, policy),
            IssuerKeys::Local(_) => panic!("local keys"),
        }
    }

    #[test]
    fn discovery_needs_only_the_issuer_url_and_a_cluster() {
        let cfg = load_issuer(json!({
            "issuer": "https://mpass-proxy.csc.fi",
            "discovery": {"cluster": "mpass_prod"}
        }))
        .unwrap();
        let (cluster, source, policy) = remote(&cfg);
        assert_eq!(cluster, "mpass_prod");
        assert_eq!(
            source,
            &Source::Discovery {
                well_known: Target::parse(
                    "https://mpass-proxy.csc.fi/.well-known/openid-configuration"
                )
                .unwrap()
            }
        );
        assert_eq!(policy, &FetchPolicy::default());
    }

    #[test]
    fn remote_jwks_and_key_fetch_timings_are_read() {
        let cfg = load_issuer(json!({
            "issuer": "https://mpass-proxy-test.csc.fi",
            "remote_jwks": {
                "http_uri": {"uri": "https://mpass-proxy-test.csc.fi/idp/profile/oidc/keyset",
                             "cluster": "mpass_test", "timeout": "2s"},
                "cache_duration": "300s"
            },
            "key_fetch": {"initial_wait": "500ms", "refetch_interval": "10s", "max_stale": "3600s",
                          "backoff_initial": "2s", "backoff_max": "30s", "max_response_bytes": 65536}
        }))
        .unwrap();
        let (_, _, policy) = remote(&cfg);
        assert_eq!(
            policy,
            &FetchPolicy {
                cache_duration_ms: 300_000,
                timeout_ms: 2_000,
                initial_wait_ms: 500,
                refetch_interval_ms: 10_000,
                max_stale_ms: 3_600_000,
                backoff_initial_ms: 2_000,
                backoff_max_ms: 30_000,
                max_response_bytes: 65_536,
            }
        );
    }

    #[test]
    fn audit_batching_is_off_by_default_and_bounded_when_asked_for() {
        let with_audit = |audit: serde_json::Value| {
            let cfg = json!({
                "issuers": [{"issuer": "https://i.example", "discovery": {"cluster": "c"}}],
                "audit": audit,
                "providers": {"p": {"audiences": ["client"], "match": {"path_prefixes": ["/"]}}}
            });
            Config::load(&serde_json::to_vec(&cfg).unwrap(), &|_| None)
        };
        assert_eq!(with_audit(json!({})).unwrap().audit_flush_ms, 0);
        assert_eq!(
            with_audit(json!({"flush_interval": "250ms"}))
                .unwrap()
                .audit_flush_ms,
            250
        );
        for bad in ["11s", "soon", "-1s"] {
            let e = with_audit(json!({ "flush_interval": bad }))
                .unwrap_err()
                .to_string();
            assert!(e.contains("audit.flush_interval"), "{bad}: {e}");
        }
    }

    #[test]
    fn zero_timeout_or_cache_duration_is_refused_with_its_path() {
        for (issuer, path) in [
            (
                json!({"issuer": "https://i.example", "discovery": {"cluster": "c", "timeout": "0s"}}),
                "discovery.timeout",
            ),
            (
                json!({"issuer": "https://i.example",
                       "discovery": {"cluster": "c", "cache_duration": "0ms"}}),
                "discovery.cache_duration",
            ),
            (
                json!({"issuer": "https://i.example", "remote_jwks": {
                    "http_uri": {"uri": "https://i.example/jwks", "cluster": "c", "timeout": "0s"}}}),
                "remote_jwks.http_uri.timeout",
            ),
        ] {
            let e = load_issuer(issuer).unwrap_err().to_string();
            assert!(e.contains(path), "{e}");
            assert!(e.contains("longer than zero"), "{e}");
        }
    }

    #[test]
    fn bad_key_fetch_values_name_their_field() {
        for (key_fetch, path) in [
            (json!({"backoff_initial": "0s"}), "key_fetch.backoff_max"),
            (json!({"initial_wait": "61s"}), "key_fetch.initial_wait"),
            (
                json!({"max_response_bytes": 10}),
                "key_fetch.max_response_bytes",
            ),
            (
                json!({"refetch_interval": "soon"}),
                "key_fetch.refetch_interval",
            ),
        ] {
            let e = load_issuer(json!({"issuer": "https://i.example",
                                       "discovery": {"cluster": "c"}, "key_fetch": key_fetch}))
            .unwrap_err()
            .to_string();
            assert!(e.contains(path), "{e}");
        }
    }
}
