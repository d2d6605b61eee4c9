//! The configuration's JSON wire format: serde types only, every object
//! `deny_unknown_fields`. Field names follow Envoy's `jwt_authn` where they
//! mean the same thing. Nothing here checks values: that is
//! [`compile`](super::compile)'s business.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::unique_map::{Keys, UniqueMap};

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
    /// What happens to requests no provider claims.
    #[serde(default)]
    pub unmatched: Unmatched,
    /// `jwt_authn`'s name and meaning: a CORS preflight passes without a
    /// token (still sanitised).
    #[serde(default)]
    pub bypass_cors_preflight: bool,
    /// The oauth2 filter's session cookies.
    #[serde(default)]
    pub session: Option<SessionConfig>,
    /// The gateway's own issuer and signing keys (signed tokens, issue 13).
    #[serde(default)]
    pub gateway: Option<crate::signing::GatewayConfig>,
    /// The `stat_prefix=` dimension of every metric this instance defines
    /// (`[a-z0-9_]+`, default `main`), as Envoy's filters have one.
    #[serde(default)]
    pub stat_prefix: Option<String>,
    /// Which code verifies RS*/PS* signatures: `fast` (the project's
    /// `rsa_fast`, default) or `ring` (the kill switch).
    #[serde(default)]
    pub rsa_verifier: crate::verify::RsaVerifier,
    /// Which code verifies EdDSA signatures: `fast` (the project's
    /// `ed25519_fast`, default) or `ring` (the kill switch).
    #[serde(default)]
    pub eddsa_verifier: crate::verify::EddsaVerifier,
    /// Which code verifies ES256 signatures: `fast` (the project's
    /// `p256_fast`, default) or `ring` (the kill switch).
    #[serde(default)]
    pub ec_verifier: crate::verify::EcVerifier,
    /// The MPASSid management service, for contracts whose organisations
    /// come from it (`contract.organisations_from`).
    #[serde(default)]
    pub registry: Option<crate::registry_source::RegistryConfig>,
    /// Provider id -> its JSON, kept raw so that each provider is parsed,
    /// compiled and dropped in turn: with thousands of providers the VM's
    /// memory (which never shrinks) then peaks at one provider's wire form.
    pub providers: ProviderList,
}

/// The `providers` object, in the order written, each value still raw JSON.
/// A provider id written twice is an error (a map would keep the last).
pub type ProviderList = UniqueMap<Box<RawValue>, ProviderIds>;

/// The keys of [`ProviderList`]: provider ids.
pub struct ProviderIds;

impl Keys for ProviderIds {
    const EXPECTING: &'static str = "an object of provider ids to providers";
    fn twice(key: &str) -> String {
        format!("provider `{key}` is listed twice")
    }
}

/// The `unmatched` policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unmatched {
    /// Remove every token, then pass.
    #[default]
    Strip,
    /// Refuse a request that carries a configured issuer's token.
    Deny,
    /// Leave tokens in place (identity headers are still removed).
    Pass,
}

impl Unmatched {
    /// The counter's `action` value.
    pub fn name(self) -> &'static str {
        match self {
            Unmatched::Strip => "strip",
            Unmatched::Deny => "deny",
            Unmatched::Pass => "pass",
        }
    }
}

/// Envoy's oauth2 filter session, as mpass-guard sees it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    /// Cookie names removed from every upstream request (default: the
    /// oauth2 filter's own names).
    #[serde(default)]
    pub cookie_names: Option<Vec<String>>,
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
    /// Accept an `http://` issuer or key URL outside loopback.
    #[serde(default)]
    pub allow_insecure_http: bool,
    /// Call the issuer's userinfo endpoint after the ID token verifies.
    #[serde(default)]
    pub userinfo: Option<crate::userinfo::UserinfoConfig>,
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
    /// Also write each decision's audit line to Envoy's application log
    /// (default `false`: the decision record in filter state, read by the
    /// access log, is always written).
    #[serde(default)]
    pub log: Option<bool>,
}

/// One service provider.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub audiences: Vec<String>,
    #[serde(rename = "match")]
    pub matching: MatchConfig,
    #[serde(default)]
    pub hs_secret_env: Option<String>,
    /// Refused at compile: `contract.forward_token` is the one setting.
    #[serde(default)]
    pub forward: Option<serde_json::Value>,
    /// Sub-paths that pass without a token (still sanitised).
    #[serde(default)]
    pub public_prefixes: Vec<String>,
    /// Kept raw: identical contracts are compiled once.
    #[serde(default)]
    pub contract: Option<Box<RawValue>>,
    /// Marks the provider as login-protected (behind Envoy's oauth2 filter).
    #[serde(default)]
    pub login: Option<crate::login::LoginConfig>,
    /// A candidate contract, same shape, evaluated next to `contract` on
    /// every request and never enforced (issue 14 item 5).
    #[serde(default)]
    pub shadow_contract: Option<Box<RawValue>>,
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
