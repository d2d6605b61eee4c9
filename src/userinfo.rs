//! The OpenID Connect userinfo endpoint (Core 1.0 section 5.3), pure: the
//! issuer's `userinfo` settings (wire form and load-time checks), finding
//! the access token in a request, the call to make, and the checks a
//! response must pass before its attributes may join the ID token's.
//!
//! In MPASSid's authorization-code flow the attributes (`urn:mpass.id:*`)
//! usually come only from userinfo, so when the gateway is the relying
//! party, the contract is applied to the ID token's claims plus userinfo's.
//! The rules here are the ones that keep that merge from weakening the ID
//! token: the response must be about the same subject (`sub`, 5.3.2), a
//! signed response must verify with the issuer's own keys and name the
//! issuer and the client when it names them, and userinfo can only add
//! claims, never replace one of the ID token's or set a registered one.
//!
//! Nothing here does I/O: the glue makes the call the engine asks for and
//! hands the response back as a [`Response`].

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::config::compile::{cluster_name, positive, set_duration};
use crate::config::{IssuerConfig, Warning};
use crate::error::ConfigError;
use crate::jwks::{Issuer, Target};
use crate::keys::KeySet;
use crate::verify::{parse_claims_json, Untrusted};

/// Default call timeout.
pub const DEFAULT_TIMEOUT_MS: u64 = 2_000;
/// Longest timeout accepted: a parked browser request waits this long.
pub const MAX_TIMEOUT_MS: u64 = 30_000;
/// Default upper bound on the response body.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// The oauth2 filter's default cookie for the access token.
pub const DEFAULT_ACCESS_TOKEN_COOKIE: &str = "BearerToken";
/// What the call accepts (5.3.2: JSON, or a JWT when the client registered
/// a signed response).
pub const ACCEPT: &str = "application/json, application/jwt";

/// Claims userinfo may never contribute: the ID token's registered claims
/// (RFC 7519 4.1 and OpenID Connect Core 2). Present in the ID token they
/// win anyway; absent there they stay absent, so a userinfo response can
/// never make a token look issued for another audience, time or nonce.
const REGISTERED: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "auth_time",
    "nonce",
    "acr",
    "amr",
    "azp",
    "at_hash",
    "c_hash",
    "sid",
];

// ------------------------------------------------------------- wire form

/// The issuer's `userinfo` object.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserinfoConfig {
    /// The endpoint URL; optional with `discovery` (its `userinfo_endpoint`).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The Envoy cluster that reaches the endpoint.
    pub cluster: String,
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub max_response_bytes: Option<usize>,
    #[serde(default)]
    pub access_token: Option<AccessTokenConfig>,
}

/// Where the access token is: `{"cookie": NAME}` or `{"header": NAME}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessTokenConfig {
    #[serde(default)]
    pub cookie: Option<String>,
    #[serde(default)]
    pub header: Option<String>,
}

// --------------------------------------------------------- compiled form

/// Where the access token is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessToken {
    /// A cookie (the oauth2 filter's `BearerToken` by default).
    Cookie(String),
    /// A header (lowercase); a `Bearer ` prefix is taken off.
    Header(String),
}

/// An issuer's checked `userinfo` settings.
#[derive(Debug, Clone)]
pub struct Userinfo {
    /// The configured endpoint; `None`: discovery's `userinfo_endpoint`.
    pub endpoint: Option<Target>,
    pub cluster: String,
    pub timeout_ms: u64,
    pub max_response_bytes: usize,
    pub access_token: AccessToken,
    /// The issuer's `allow_insecure_http`, for a discovered endpoint.
    pub allow_insecure_http: bool,
}

impl Userinfo {
    /// Compiles an issuer's `userinfo` at `path` (`issuers[0].userinfo`).
    pub fn compile(
        cfg: &UserinfoConfig,
        issuer: &IssuerConfig,
        path: &str,
        warnings: &mut Vec<Warning>,
    ) -> Result<Userinfo, ConfigError> {
        let at = |field: &str| format!("{path}.{field}");
        let endpoint = match &cfg.endpoint {
            Some(url) => {
                let target = Target::parse(url)
                    .filter(|_| !url.contains('#'))
                    .ok_or_else(|| ConfigError::new(at("endpoint"), "not an http(s) URL"))?;
                // The same rule as for key URLs: the access token and the
                // attributes must not cross the network in clear text.
                crate::config::compile::insecure_http(
                    url,
                    issuer.allow_insecure_http,
                    &at("endpoint"),
                    warnings,
                )?;
                Some(target)
            }
            None if issuer.discovery.is_some() => None,
            None => {
                return Err(ConfigError::new(
                    at("endpoint"),
                    "required unless the issuer uses discovery (its userinfo_endpoint)",
                ))
            }
        };
        let cluster = cluster_name(&cfg.cluster, &at("cluster"))?;
        let mut timeout_ms = DEFAULT_TIMEOUT_MS;
        set_duration(&mut timeout_ms, cfg.timeout.as_deref(), &at("timeout"))?;
        positive(timeout_ms, &at("timeout"))?;
        if timeout_ms > MAX_TIMEOUT_MS {
            return Err(ConfigError::new(at("timeout"), "must be at most 30s"));
        }
        let max_response_bytes = cfg.max_response_bytes.unwrap_or(DEFAULT_MAX_RESPONSE_BYTES);
        if !(256..=1024 * 1024).contains(&max_response_bytes) {
            return Err(ConfigError::new(
                at("max_response_bytes"),
                "must be between 256 and 1048576",
            ));
        }
        let access_token = match &cfg.access_token {
            None => AccessToken::Cookie(DEFAULT_ACCESS_TOKEN_COOKIE.to_owned()),
            Some(AccessTokenConfig {
                cookie: Some(name),
                header: None,
            }) => {
                if !crate::http::is_token(name) {
                    return Err(ConfigError::new(
                        at("access_token.cookie"),
                        "not a valid cookie name",
                    ));
                }
                AccessToken::Cookie(name.clone())
            }
            Some(AccessTokenConfig {
                cookie: None,
                header: Some(name),
            }) => {
                if !crate::http::is_lowercase_token(name) || name.starts_with(':') {
                    return Err(ConfigError::new(
                        at("access_token.header"),
                        "must be a lowercase header name",
                    ));
                }
                AccessToken::Header(name.clone())
            }
            Some(_) => {
                return Err(ConfigError::new(
                    at("access_token"),
                    "give exactly one of cookie, header",
                ))
            }
        };
        Ok(Userinfo {
            endpoint,
            cluster,
            timeout_ms,
            max_response_bytes,
            access_token,
            allow_insecure_http: issuer.allow_insecure_http,
        })
    }

    /// Where to call: the configured endpoint, or `discovered` (the
    /// discovery document's `userinfo_endpoint`) when it passes the same
    /// rule as a configured one. `None`: nowhere usable (yet).
    pub fn target(&self, discovered: Option<&str>) -> Option<Target> {
        if let Some(t) = &self.endpoint {
            return Some(t.clone());
        }
        let url = discovered?;
        if url.contains('#')
            || !crate::config::compile::secure_enough(url, self.allow_insecure_http)
        {
            return None;
        }
        Target::parse(url)
    }
}

impl AccessToken {
    /// The access token of a request, if its carrier holds one usable in a
    /// header value (visible ASCII, no spaces). Header names are lowercase.
    pub fn find<'a>(&self, headers: &'a [(String, String)]) -> Option<&'a str> {
        let token = match self {
            AccessToken::Cookie(name) => headers
                .iter()
                .filter(|(n, _)| n == "cookie")
                .flat_map(|(_, v)| v.split(';'))
                .filter_map(|pair| pair.trim().split_once('='))
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.trim().trim_matches('"'))?,
            AccessToken::Header(name) => {
                let value = headers.iter().find(|(n, _)| n == name)?.1.trim();
                match value.get(..7) {
                    Some(p) if p.eq_ignore_ascii_case("bearer ") => {
                        value.get(7..).unwrap_or_default().trim()
                    }
                    _ => value,
                }
            }
        };
        let usable = !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic());
        usable.then_some(token)
    }
}

// --------------------------------------------------------- the response

/// Why a userinfo result cannot be used. Each is a refusal, never a
/// release from fewer checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No answer in time, a connection failure or a 5xx/429: not the
    /// user's fault (503 with `Retry-After`).
    Unavailable,
    /// The OP refused the access token (401/403), or there was none: the
    /// session is over (a browser logs in again; an API client gets 401).
    Refused,
    /// An answer that fails a check: not JSON or a verifiable JWT, too
    /// large, another content type or status, another subject (502).
    Invalid,
}

impl Failure {
    /// The stable reason (audit record, counter label, reply body).
    pub fn reason(self) -> &'static str {
        match self {
            Failure::Unavailable => "userinfo_unavailable",
            Failure::Refused => "userinfo_refused",
            Failure::Invalid => "userinfo_invalid",
        }
    }
}

/// A userinfo call's result, as the glue saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// Status, `content-type` and body (the glue checks the size first).
    Answer {
        status: u16,
        content_type: Option<String>,
        body: Vec<u8>,
    },
    /// The body was larger than `max_response_bytes`.
    TooLarge,
    /// Timeout, connection failure, dispatch error, or a lost call.
    Failed,
}

/// What a response is checked against: the verified ID token's `sub` and
/// audiences, and the issuer's keys for a signed response.
pub struct Expect<'a> {
    pub issuer: &'a Issuer,
    /// The issuer's key set now (`None`: no usable keys).
    pub keys: Option<&'a KeySet>,
    pub sub: &'a str,
    pub audiences: &'a [String],
    pub max_bytes: usize,
}

/// Checks a response and returns userinfo's claims.
pub fn check(response: &Response, expect: &Expect<'_>) -> Result<Map<String, Value>, Failure> {
    let (status, content_type, body) = match response {
        Response::Failed => return Err(Failure::Unavailable),
        Response::TooLarge => return Err(Failure::Invalid),
        Response::Answer {
            status,
            content_type,
            body,
        } => (*status, content_type.as_deref(), body),
    };
    match status {
        200 => {}
        // RFC 6750 3.1: invalid_token is 401, insufficient_scope 403.
        401 | 403 => return Err(Failure::Refused),
        408 | 429 | 500..=599 => return Err(Failure::Unavailable),
        _ => return Err(Failure::Invalid),
    }
    if body.len() > expect.max_bytes {
        return Err(Failure::Invalid);
    }
    let media = content_type
        .and_then(|c| c.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase());
    let claims = match media.as_deref() {
        Some("application/json") => parse_claims_json(body).ok_or(Failure::Invalid)?,
        Some("application/jwt") => signed(body, expect)?,
        _ => return Err(Failure::Invalid),
    };
    // 5.3.2: the sub in the response MUST equal the ID token's; otherwise
    // the response MUST NOT be used (a token substitution attack).
    match claims.get("sub").and_then(Value::as_str) {
        Some(sub) if sub == expect.sub => Ok(claims),
        _ => Err(Failure::Invalid),
    }
}

/// A signed (JWS) userinfo response: verified with the issuer's keys only,
/// with the issuer's allowed algorithms, never an HS* client secret; `iss`
/// and `aud` checked when present (5.3.2). An encrypted response (JWE, five
/// parts) fails to decode: mpass-guard holds no decryption key.
fn signed(body: &[u8], expect: &Expect<'_>) -> Result<Map<String, Value>, Failure> {
    let text = std::str::from_utf8(body)
        .map_err(|_| Failure::Invalid)?
        .trim();
    let untrusted = Untrusted::decode(text, expect.max_bytes).map_err(|_| Failure::Invalid)?;
    let alg = untrusted.alg();
    if alg.is_hmac() || !expect.issuer.allowed.contains(&alg) {
        return Err(Failure::Invalid);
    }
    let keys = expect.keys.ok_or(Failure::Unavailable)?;
    let (verified, _) = untrusted
        .verify_with_keyset(keys)
        .map_err(|_| Failure::Invalid)?;
    let claims = verified.claims();
    if let Some(iss) = claims.get("iss") {
        if iss.as_str() != Some(expect.issuer.issuer.as_str()) {
            return Err(Failure::Invalid);
        }
    }
    if let Some(aud) = claims.get("aud") {
        let named = |a: &Value| {
            a.as_str()
                .is_some_and(|a| expect.audiences.iter().any(|w| w == a))
        };
        let ok = match aud {
            Value::Array(list) => list.iter().any(named),
            one => named(one),
        };
        if !ok {
            return Err(Failure::Invalid);
        }
    }
    Ok(claims.clone())
}

/// The claims the contract sees: the ID token's, plus each userinfo claim
/// the ID token does not have, except registered claims (see
/// [`REGISTERED`]): the signed ID token wins every conflict.
pub fn merge(id_token: &Map<String, Value>, userinfo: &Map<String, Value>) -> Map<String, Value> {
    let mut out = id_token.clone();
    for (name, value) in userinfo {
        if REGISTERED.contains(&name.as_str()) || out.contains_key(name) {
            continue;
        }
        out.insert(name.clone(), value.clone());
    }
    out
}

/// The attributes userinfo adds to an ID token (what [`merge`] would add),
/// kept apart so a cache holds only these.
pub fn additions(
    id_token: &Map<String, Value>,
    userinfo: Map<String, Value>,
) -> Map<String, Value> {
    userinfo
        .into_iter()
        .filter(|(name, _)| !REGISTERED.contains(&name.as_str()) && !id_token.contains_key(name))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn issuer_config(v: Value) -> IssuerConfig {
        serde_json::from_value(v).unwrap()
    }

    fn compile(issuer: Value) -> Result<Userinfo, ConfigError> {
        let ic = issuer_config(issuer);
        let cfg = ic.userinfo.as_ref().unwrap();
        Userinfo::compile(cfg, &ic, "issuers[0].userinfo", &mut Vec::new())
    }

    #[test]
    fn defaults_are_two_seconds_64_kib_and_the_bearer_token_cookie() {
        let u = compile(
            json!({"issuer": "https://op.example", "discovery": {"cluster": "op"},
                                "userinfo": {"cluster": "op"}}),
        )
        .unwrap();
        assert_eq!(u.endpoint, None);
        assert_eq!(u.timeout_ms, 2_000);
        assert_eq!(u.max_response_bytes, 65_536);
        assert_eq!(u.access_token, AccessToken::Cookie("BearerToken".into()));
    }

    #[test]
    fn without_discovery_the_endpoint_is_required_and_must_not_be_plain_http() {
        let base = json!({"issuer": "https://op.example", "local_jwks": {"inline_string": "{\"keys\":[]}"}});
        let mut v = base.clone();
        v["userinfo"] = json!({"cluster": "op"});
        assert_eq!(compile(v).unwrap_err().path, "issuers[0].userinfo.endpoint");
        let mut v = base.clone();
        v["userinfo"] = json!({"cluster": "op", "endpoint": "http://op.example/userinfo"});
        assert_eq!(compile(v).unwrap_err().path, "issuers[0].userinfo.endpoint");
        let mut v = base.clone();
        v["allow_insecure_http"] = json!(true);
        v["userinfo"] = json!({"cluster": "op", "endpoint": "http://op.example/userinfo"});
        assert!(compile(v).is_ok());
        let mut v = base;
        v["userinfo"] = json!({"cluster": "op", "endpoint": "https://op.example/me",
                               "access_token": {"header": "authorization"}, "timeout": "500ms"});
        let u = compile(v).unwrap();
        assert_eq!(u.endpoint.unwrap().path, "/me");
        assert_eq!(u.access_token, AccessToken::Header("authorization".into()));
        assert_eq!(u.timeout_ms, 500);
    }

    #[test]
    fn bad_values_name_their_field() {
        let cases = [
            (json!({"cluster": ""}), "issuers[0].userinfo.cluster"),
            (
                json!({"cluster": "op", "timeout": "0s"}),
                "issuers[0].userinfo.timeout",
            ),
            (
                json!({"cluster": "op", "timeout": "1m"}),
                "issuers[0].userinfo.timeout",
            ),
            (
                json!({"cluster": "op", "timeout": "31s"}),
                "issuers[0].userinfo.timeout",
            ),
            (
                json!({"cluster": "op", "max_response_bytes": 10}),
                "issuers[0].userinfo.max_response_bytes",
            ),
            (
                json!({"cluster": "op", "access_token": {}}),
                "issuers[0].userinfo.access_token",
            ),
            (
                json!({"cluster": "op", "access_token": {"cookie": "a", "header": "b"}}),
                "issuers[0].userinfo.access_token",
            ),
            (
                json!({"cluster": "op", "access_token": {"cookie": "a b"}}),
                "issuers[0].userinfo.access_token.cookie",
            ),
            (
                json!({"cluster": "op", "access_token": {"header": "Authorization"}}),
                "issuers[0].userinfo.access_token.header",
            ),
        ];
        for (u, path) in cases {
            let v = json!({"issuer": "https://op.example", "discovery": {"cluster": "op"}, "userinfo": u});
            assert_eq!(compile(v).unwrap_err().path, path);
        }
    }

    fn headers(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| ((*n).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn the_access_token_is_read_from_its_cookie_or_header() {
        let c = AccessToken::Cookie("BearerToken".into());
        let h = headers(&[("cookie", "a=1; BearerToken=at-1; IdToken=x")]);
        assert_eq!(c.find(&h), Some("at-1"));
        assert_eq!(c.find(&headers(&[("cookie", "BearerToken=")])), None);
        assert_eq!(c.find(&headers(&[("cookie", "XBearerToken=at")])), None);
        let a = AccessToken::Header("authorization".into());
        assert_eq!(
            a.find(&headers(&[("authorization", "Bearer at-2")])),
            Some("at-2")
        );
        assert_eq!(a.find(&headers(&[("authorization", "bearer at 2")])), None);
        assert_eq!(a.find(&headers(&[])), None);
    }

    fn issuer() -> Issuer {
        Issuer {
            issuer: "https://op.example".into(),
            allowed: vec![crate::alg::Alg::RS256],
            time: crate::verify::TimePolicy {
                clock_skew_secs: 60,
                max_lifetime_secs: None,
                require_expiration: true,
            },
            keys: crate::jwks::IssuerKeys::Local(std::rc::Rc::new(KeySet::from_keys(Vec::new()))),
            userinfo: None,
        }
    }

    fn json_answer(status: u16, ct: &str, body: &str) -> Response {
        Response::Answer {
            status,
            content_type: Some(ct.into()),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn statuses_content_types_and_subjects_map_to_the_three_failures() {
        let iss = issuer();
        let aud = vec!["client".to_owned()];
        let e = Expect {
            issuer: &iss,
            keys: None,
            sub: "s1",
            audiences: &aud,
            max_bytes: 100,
        };
        let ok = check(
            &json_answer(
                200,
                "application/json; charset=utf-8",
                r#"{"sub":"s1","x":1}"#,
            ),
            &e,
        );
        assert_eq!(ok.unwrap().get("x"), Some(&json!(1)));
        let cases = [
            (
                json_answer(200, "application/json", r#"{"sub":"s2"}"#),
                Failure::Invalid,
            ),
            (
                json_answer(200, "application/json", r#"{"x":1}"#),
                Failure::Invalid,
            ),
            (
                json_answer(200, "application/json", r#"{"sub":"s1","sub":"s2"}"#),
                Failure::Invalid,
            ),
            (
                json_answer(200, "text/html", r#"{"sub":"s1"}"#),
                Failure::Invalid,
            ),
            (
                json_answer(200, "application/json", "not json"),
                Failure::Invalid,
            ),
            (
                json_answer(
                    200,
                    "application/json",
                    &format!(r#"{{"sub":"s1","p":"{}"}}"#, "a".repeat(100)),
                ),
                Failure::Invalid,
            ),
            (
                json_answer(200, "application/jwt", "a.b.c"),
                Failure::Invalid,
            ),
            (json_answer(401, "application/json", "{}"), Failure::Refused),
            (json_answer(403, "application/json", "{}"), Failure::Refused),
            (json_answer(503, "text/plain", ""), Failure::Unavailable),
            (json_answer(429, "text/plain", ""), Failure::Unavailable),
            (json_answer(302, "text/plain", ""), Failure::Invalid),
            (Response::TooLarge, Failure::Invalid),
            (Response::Failed, Failure::Unavailable),
        ];
        for (r, want) in cases {
            assert_eq!(check(&r, &e).unwrap_err(), want, "{r:?}");
        }
    }

    #[test]
    fn the_id_token_wins_and_userinfo_never_sets_a_registered_claim() {
        let id = obj(json!({"sub": "s1", "aud": "client", "given_name": "From-Token"}));
        let ui = obj(
            json!({"sub": "s1", "given_name": "From-Userinfo", "aud": "other",
                            "nonce": "n", "urn:mpass.id:uid": "u1"}),
        );
        let merged = merge(&id, &ui);
        assert_eq!(merged["given_name"], json!("From-Token"));
        assert_eq!(merged["aud"], json!("client"));
        assert!(!merged.contains_key("nonce"));
        assert_eq!(merged["urn:mpass.id:uid"], json!("u1"));
        let added = additions(&id, ui);
        assert_eq!(added.keys().collect::<Vec<_>>(), ["urn:mpass.id:uid"]);
        assert_eq!(merge(&id, &added), merged);
    }

    #[test]
    fn a_discovered_endpoint_follows_the_https_rule() {
        let u = compile(
            json!({"issuer": "https://op.example", "discovery": {"cluster": "op"},
                                "userinfo": {"cluster": "op"}}),
        )
        .unwrap();
        assert_eq!(u.target(None), None);
        assert_eq!(u.target(Some("https://op.example/ui")).unwrap().path, "/ui");
        assert_eq!(
            u.target(Some("http://127.0.0.1:8080/ui"))
                .unwrap()
                .authority,
            "127.0.0.1:8080"
        );
        assert_eq!(u.target(Some("http://op.example/ui")), None);
        assert_eq!(u.target(Some("ftp://op.example/ui")), None);
        let insecure = compile(
            json!({"issuer": "https://op.example", "discovery": {"cluster": "op"},
                                       "allow_insecure_http": true, "userinfo": {"cluster": "op"}}),
        )
        .unwrap();
        assert!(insecure.target(Some("http://op.example/ui")).is_some());
    }

    #[test]
    fn failures_have_stable_reasons() {
        assert_eq!(Failure::Unavailable.reason(), "userinfo_unavailable");
        assert_eq!(Failure::Refused.reason(), "userinfo_refused");
        assert_eq!(Failure::Invalid.reason(), "userinfo_invalid");
    }
}
