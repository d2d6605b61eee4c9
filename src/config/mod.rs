//! The plugin configuration: its JSON wire format ([`wire`]) and its
//! compilation ([`compile`]) into a checked runtime [`Config`].
//!
//! Every check happens here, at load: a configuration that compiles cannot
//! fail at request time. Errors name the field path
//! (`providers.studeo.audiences[0]`), and one load reports every
//! independent error it finds. Unknown fields are errors. Config never
//! touches a request: it builds the [`Matcher`] that the engine asks.

pub mod compile;
pub mod wire;

use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;

pub use compile::parse_duration_ms;
pub use wire::*;

use crate::contract::Contract;
use crate::error::ConfigError;
use crate::extract::Locations;
use crate::forward::Sanitiser;
pub use crate::jwks::{Issuer, IssuerId, IssuerKeys};
use crate::minted::SignedToken;
pub use crate::routing::{normalise_authority, normalise_path, Lookup, Matcher, ProviderId};
use crate::seal::Sealer;
use crate::signing::Gateway;

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
/// Default for `audit.flush_interval`: none, one log call per decision, so
/// a line is in Envoy's log by the time the response is sent.
pub const DEFAULT_AUDIT_FLUSH_MS: u64 = 0;
/// Longest `audit.flush_interval` accepted.
pub const MAX_AUDIT_FLUSH_MS: u64 = 10_000;
/// Default `stat_prefix`, as Envoy's filters default theirs.
pub const DEFAULT_STAT_PREFIX: &str = "main";

/// A checked provider.
#[derive(Debug)]
pub struct Provider {
    pub id: String,
    /// The id as a stats tag value: `.` (which would end the value in a
    /// stat name) as `_`. Unique: two ids that map to one are refused.
    pub stat_id: String,
    pub audiences: Vec<String>,
    /// The client secret for HS* ID tokens, from the VM's environment.
    pub hs_secret: Option<Vec<u8>>,
    /// Keep the token in the request after verification.
    pub forward: bool,
    /// Shared between providers whose contracts are written identically.
    pub contract: Rc<Contract>,
    /// The candidate contract (`shadow_contract`): evaluated on the same
    /// claims as `contract`, compared, never enforced.
    pub shadow: Option<Rc<Contract>>,
    /// The gateway-signed token this provider receives (`contract.signed_token`).
    pub signed_token: Option<SignedToken>,
    /// Login-protected: browsers are sent back to login (`login`).
    pub login: Option<crate::login::Login>,
}

impl Provider {
    /// Whether its contract or its shadow contract takes organisations
    /// from the registry.
    pub fn uses_registry(&self) -> bool {
        std::iter::once(&self.contract)
            .chain(self.shadow.as_ref())
            .any(|c| c.organisations_from().uses_registry())
    }
}

/// The whole compiled configuration.
#[derive(Debug)]
pub struct Config {
    pub issuers: Vec<Issuer>,
    issuer_index: HashMap<String, IssuerId>,
    pub providers: Vec<Provider>,
    pub matcher: Matcher,
    pub locations: Locations,
    pub sanitiser: Sanitiser,
    /// Removes tokens and session cookies from every request.
    pub sealer: Sealer,
    /// The session cookies a login restart clears (the oauth2 filter's
    /// defaults and `session.cookie_names`).
    pub login_cookies: Vec<String>,
    /// Headers that carry a userinfo access token (`access_token.header`):
    /// removed from every request on a provider's paths.
    pub access_token_headers: Vec<String>,
    /// The `unmatched` policy.
    pub unmatched: Unmatched,
    /// Whether a CORS preflight to a protected path passes without a token.
    pub bypass_cors_preflight: bool,
    pub max_token_bytes: usize,
    /// Which code verifies RS*/PS* signatures (`rsa_verifier`).
    pub rsa_verifier: crate::verify::RsaVerifier,
    /// Which code verifies EdDSA signatures (`eddsa_verifier`).
    pub eddsa_verifier: crate::verify::EddsaVerifier,
    /// Which code verifies ES256 signatures (`ec_verifier`).
    pub ec_verifier: crate::verify::EcVerifier,
    pub realm: String,
    pub header_prefix: String,
    /// Key for the audit pseudonym of `sub`; `None` leaves it out.
    pub pseudonym_key: Option<Vec<u8>>,
    /// Longest time an audit line waits to be logged with others (0: never).
    pub audit_flush_ms: u64,
    /// Whether audit lines go to Envoy's application log (`audit.log`).
    pub audit_log: bool,
    /// The `stat_prefix=` value of every metric (`[a-z0-9_]+`).
    pub stat_prefix: String,
    /// Token cache bounds.
    pub cache_max_entries: usize,
    pub cache_max_bytes: usize,
    /// The gateway's issuer, keys and published documents (`gateway`).
    pub gateway: Option<Gateway>,
    /// The management service source (`registry`), if configured.
    pub registry: Option<crate::registry_source::RegistrySettings>,
    /// Load-time warnings, logged by the glue.
    pub warnings: Vec<Warning>,
}

impl Config {
    /// Parses and compiles `json`. `env` reads the VM's environment. On
    /// refusal every independent error is reported, each with its path;
    /// [`ConfigErrors::first`] is the first of them.
    pub fn load(json: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigErrors> {
        let de = &mut serde_json::Deserializer::from_slice(json);
        let wire: PluginConfig = serde_path_to_error::deserialize(de)
            .map_err(|e| ConfigErrors(vec![compile::located("", &e)]))?;
        compile::compile(wire, env).map_err(ConfigErrors)
    }

    /// The issuer with exactly this `iss`, and its id.
    pub fn issuer(&self, iss: &str) -> Option<(IssuerId, &Issuer)> {
        let id = *self.issuer_index.get(iss)?;
        Some((id, self.issuers.get(id.index())?))
    }

    /// Per provider index, the keys the registry is asked about: the
    /// provider's audiences when its contract takes organisations from the
    /// registry, else none.
    pub fn registry_watched(&self) -> Vec<Vec<String>> {
        self.providers
            .iter()
            .map(|p| {
                if p.uses_registry() {
                    p.audiences.clone()
                } else {
                    Vec::new()
                }
            })
            .collect()
    }

    /// The provider with this id.
    pub fn provider(&self, id: ProviderId) -> Option<&Provider> {
        self.providers.get(id.index())
    }
}

/// Why a configuration was refused: at least one error, in the order found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(Vec<ConfigError>);

impl ConfigErrors {
    /// The first error found (there is always one).
    pub fn first(&self) -> Option<&ConfigError> {
        self.0.first()
    }

    /// Every error, in the order found.
    pub fn all(&self) -> &[ConfigError] {
        &self.0
    }
}

/// One error a line.
impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A load-time warning: the configuration is accepted, but this field
/// deserves a look. The glue logs it; the CLI prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Where in the configuration (may be empty).
    pub path: String,
    /// What is worth a look.
    pub message: String,
}

impl Warning {
    /// A warning about `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
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

    fn load(v: &Value) -> Result<Config, ConfigErrors> {
        Config::load(v.to_string().as_bytes(), &|name| {
            (name == "SECRET").then(|| "s".repeat(40))
        })
    }

    fn error_path(v: &Value) -> String {
        load(v)
            .err()
            .and_then(|e| e.first().map(|e| e.path.clone()))
            .unwrap_or_else(|| "<accepted>".into())
    }

    fn warned(v: &Value, path: &str) -> bool {
        load(v).unwrap().warnings.iter().any(|w| w.path == path)
    }

    #[test]
    fn a_plain_http_issuer_outside_loopback_is_refused_unless_marked_insecure() {
        let mut v = base();
        v["issuers"][0]["issuer"] = json!("http://mpass.example");
        assert_eq!(error_path(&v), "issuers[0].issuer");
        v["issuers"][0]["allow_insecure_http"] = json!(true);
        assert!(warned(&v, "issuers[0].issuer"));
        let mut v = base();
        v["issuers"][0]["issuer"] = json!("http://127.0.0.1:8080");
        assert!(load(&v).is_ok());
    }

    #[test]
    fn a_plain_http_key_url_outside_loopback_is_refused() {
        let mut v = base();
        v["issuers"][0]
            .as_object_mut()
            .unwrap()
            .remove("local_jwks");
        v["issuers"][0]["remote_jwks"] =
            json!({"http_uri": {"uri": "http://keys.example/jwks", "cluster": "keys"}});
        assert_eq!(error_path(&v), "issuers[0].remote_jwks.http_uri.uri");
    }

    #[test]
    fn an_issuer_with_a_trailing_slash_and_a_prefix_without_its_space_warn() {
        let mut v = base();
        v["issuers"][0]["issuer"] = json!("https://mpass-proxy-test.csc.fi/");
        v["from_headers"] = json!([{"name": "authorization", "value_prefix": "Bearer"}]);
        assert!(warned(&v, "issuers[0].issuer"));
        assert!(warned(&v, "from_headers[0].value_prefix"));
    }

    #[test]
    fn provider_level_forward_is_refused_with_a_hint_to_the_contract_setting() {
        let mut v = base();
        v["providers"]["shop"]["forward"] = json!(true);
        let e = load(&v).unwrap_err();
        let e = e.first().unwrap();
        assert_eq!(e.path, "providers.shop.forward");
        assert!(e.to_string().contains("contract.forward_token"));
    }

    #[test]
    fn forwarding_the_token_always_warns() {
        let mut v = base();
        v["providers"]["shop"]["contract"] =
            json!({"organisations": ["*"], "release": {}, "forward_token": true});
        assert!(warned(&v, "providers.shop.contract.forward_token"));
        assert!(load(&v).unwrap().providers[0].forward);
    }

    #[test]
    fn rsa_verifier_defaults_to_fast_takes_ring_and_refuses_anything_else() {
        use crate::verify::RsaVerifier;
        assert_eq!(load(&base()).unwrap().rsa_verifier, RsaVerifier::Fast);
        let mut v = base();
        v["rsa_verifier"] = json!("ring");
        assert_eq!(load(&v).unwrap().rsa_verifier, RsaVerifier::Ring);
        v["rsa_verifier"] = json!("fast");
        assert_eq!(load(&v).unwrap().rsa_verifier, RsaVerifier::Fast);
        for bad in [json!("openssl"), json!("Ring"), json!(true)] {
            v["rsa_verifier"] = bad;
            assert_eq!(error_path(&v), "rsa_verifier");
        }
    }

    #[test]
    fn eddsa_verifier_defaults_to_fast_takes_ring_and_refuses_anything_else() {
        use crate::verify::EddsaVerifier;
        assert_eq!(load(&base()).unwrap().eddsa_verifier, EddsaVerifier::Fast);
        let mut v = base();
        v["eddsa_verifier"] = json!("ring");
        assert_eq!(load(&v).unwrap().eddsa_verifier, EddsaVerifier::Ring);
        v["eddsa_verifier"] = json!("fast");
        assert_eq!(load(&v).unwrap().eddsa_verifier, EddsaVerifier::Fast);
        for bad in [json!("dalek"), json!("Fast"), json!(0)] {
            v["eddsa_verifier"] = bad;
            assert_eq!(error_path(&v), "eddsa_verifier");
        }
    }

    #[test]
    fn ec_verifier_defaults_to_fast_takes_ring_and_refuses_anything_else() {
        use crate::verify::EcVerifier;
        assert_eq!(load(&base()).unwrap().ec_verifier, EcVerifier::Fast);
        let mut v = base();
        v["ec_verifier"] = json!("ring");
        assert_eq!(load(&v).unwrap().ec_verifier, EcVerifier::Ring);
        v["ec_verifier"] = json!("fast");
        assert_eq!(load(&v).unwrap().ec_verifier, EcVerifier::Fast);
        for bad in [json!("openssl"), json!("Fast"), json!(1)] {
            v["ec_verifier"] = bad;
            assert_eq!(error_path(&v), "ec_verifier");
        }
    }

    #[test]
    fn the_sealing_settings_default_to_strip_and_no_preflight_bypass() {
        let c = load(&base()).unwrap();
        assert_eq!(c.unmatched, Unmatched::Strip);
        assert!(!c.bypass_cors_preflight);
        let mut v = base();
        v["unmatched"] = json!("deny");
        v["bypass_cors_preflight"] = json!(true);
        v["session"] = json!({"cookie_names": ["Sess"]});
        let c = load(&v).unwrap();
        assert_eq!(c.unmatched, Unmatched::Deny);
        assert!(c.bypass_cors_preflight);
        v["unmatched"] = json!("allow");
        assert_eq!(error_path(&v), "unmatched");
        v["unmatched"] = json!("pass");
        v["session"] = json!({"cookie_names": ["a b"]});
        assert_eq!(error_path(&v), "session.cookie_names[0]");
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
    fn one_load_reports_every_independent_error_with_its_path() {
        let mut v = base();
        v["issuers"][0]["clock_skew_seconds"] = json!(601);
        v["issuers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"issuer": "not a url"}));
        v["header_prefix"] = json!("x");
        v["token_cache"] = json!({"max_entries": 2_000_000});
        v["providers"]["a"] = json!({"audiences": [], "match": {"path_prefixes": ["/a/"]}});
        v["providers"]["b"] = json!({"audiences": ["b"], "match": {}});
        let errors = load(&v).unwrap_err();
        let paths: Vec<&str> = errors.all().iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "issuers[0].clock_skew_seconds",
                "issuers[1].issuer",
                "header_prefix",
                "token_cache.max_entries",
            ]
        );
        // With a valid prefix the providers are checked, each on its own.
        v["header_prefix"] = json!("x-mpass-");
        let errors = load(&v).unwrap_err();
        let paths: Vec<&str> = errors.all().iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "issuers[0].clock_skew_seconds",
                "issuers[1].issuer",
                "providers.a.audiences",
                "providers.b.match",
                "token_cache.max_entries",
            ]
        );
        assert_eq!(
            errors.first().map(|e| e.path.as_str()),
            paths.first().copied()
        );
        assert_eq!(errors.to_string().lines().count(), paths.len());
    }

    #[test]
    fn a_provider_id_written_twice_is_refused() {
        let text = r#"{"issuers": [], "providers": {"a": {}, "a": {}}}"#;
        let err = Config::load(text.as_bytes(), &|_| None).unwrap_err();
        assert!(err.to_string().contains("listed twice"), "{err}");
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
                c.warnings.iter().any(|w| w.to_string().starts_with(id)),
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
            Lookup::Provider(i) => Some(c.providers[i.index()].id.as_str()),
            _ => None,
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
            Lookup::Provider(ProviderId(0))
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
            .any(|w| w.message.contains("shorter than 32 bytes")));
    }

    #[test]
    fn the_stat_prefix_defaults_to_main_and_the_audit_line_is_off() {
        let c = load(&base()).unwrap();
        assert_eq!(c.stat_prefix, "main");
        assert!(!c.audit_log);
        let mut v = base();
        v["stat_prefix"] = json!("edge_2");
        v["audit"] = json!({"log": true});
        let c = load(&v).unwrap();
        assert_eq!(c.stat_prefix, "edge_2");
        assert!(c.audit_log);
    }

    #[test]
    fn a_stat_prefix_that_would_break_a_metric_name_is_refused() {
        for bad in ["", "Main", "a.b", "a-b", "a=b", &"x".repeat(65)] {
            let mut v = base();
            v["stat_prefix"] = json!(bad);
            assert_eq!(error_path(&v), "stat_prefix", "{bad:?}");
        }
    }

    #[test]
    fn provider_ids_keep_dashes_and_read_dots_as_underscores_in_stats() {
        let mut v = base();
        v["providers"] = json!({
            "legacy-lms": { "audiences": ["a"], "match": { "path_prefixes": ["/a/"] } },
            "legacy.lms": { "audiences": ["b"], "match": { "path_prefixes": ["/b/"] } }
        });
        let c = load(&v).unwrap();
        let ids: Vec<(&str, &str)> = c
            .providers
            .iter()
            .map(|p| (p.id.as_str(), p.stat_id.as_str()))
            .collect();
        assert_eq!(
            ids,
            [("legacy-lms", "legacy-lms"), ("legacy.lms", "legacy_lms")]
        );
    }

    #[test]
    fn two_provider_ids_with_one_stat_name_are_refused_naming_both() {
        let mut v = base();
        v["providers"] = json!({
            "legacy_lms": { "audiences": ["a"], "match": { "path_prefixes": ["/a/"] } },
            "legacy.lms": { "audiences": ["b"], "match": { "path_prefixes": ["/b/"] } }
        });
        let e = load(&v).unwrap_err().to_string();
        assert!(e.contains("providers.legacy.lms"), "{e}");
        assert!(e.contains("providers.legacy_lms"), "{e}");
        assert!(e.contains("provider=legacy_lms"), "{e}");
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
    use crate::jwks::{FetchPolicy, Source, Target};
    use serde_json::json;

    fn load_issuer(issuer: serde_json::Value) -> Result<Config, ConfigErrors> {
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
