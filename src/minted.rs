//! The gateway-signed token for one provider and one request (issue 13): the
//! `contract.signed_token` block, its compilation, and minting.
//!
//! The claims are exactly the contract's released claims for this request
//! (under their MPASSid claim names, as the payload header carries them) plus
//! the registered claims the gateway vouches for: `iss` (the gateway), `aud`
//! (the provider), `sub`, `iat`, `exp`, `jti` and `contract_version`. Nothing
//! else of the MPASSid token is copied: not its `iss`, `aud`, `nonce`,
//! `at_hash`, `sid` or any withheld claim. The registered claims are written
//! last, so a released claim of the same name (the catalogue has `sub`)
//! never overrides them.
//!
//! Choices a verifying service would expect:
//! - `sub: pairwise` (the default) is base64url (no padding) of
//!   HMAC-SHA256 over the provider id, the MPASSid issuer and the MPASSid
//!   subject, each length-prefixed, with the gateway's pairwise key: stable
//!   for one user at one provider, unlinkable across providers without the
//!   key. `original` copies the MPASSid `sub`.
//! - `exp` is never later than the MPASSid token's `exp`, and at most
//!   `lifetime` after `iat` (default 300 s, at most 3600 s).
//! - `jti` is 16 random bytes (base64url): unique across replicas and
//!   restarts without coordination. A derived `jti` (a hash of subject,
//!   audience and `iat`) would repeat for two mints in the same second, on
//!   two replicas or after a cache eviction, and a service that detects
//!   replays by `jti` would refuse the second.
//! - The header is `{"alg","kid","typ":"JWT"}` (RFC 7519 section 5.1).

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::contract::check_header_name;
use crate::error::{join, ConfigError};
use crate::signing::{Gateway, SignError};

/// The header the token is written to when `header` is not set.
pub const DEFAULT_HEADER: &str = "x-mpass-token";
/// The default lifetime of a minted token, in seconds.
pub const DEFAULT_LIFETIME_SECONDS: u64 = 300;
/// The longest lifetime accepted, in seconds.
pub const MAX_LIFETIME_SECONDS: u64 = 3600;
/// A cached token is re-minted when less than this share of its lifetime
/// is left (one fifth)...
pub const REMINT_FRACTION: u64 = 5;
/// ...or less than this many seconds, whichever is more (but at most half
/// the lifetime): enough for a request to reach a slow upstream and be
/// verified there.
pub const REMINT_MIN_SECONDS: u64 = 30;
/// The claim carrying the contract version.
pub const CONTRACT_VERSION_CLAIM: &str = "contract_version";

// ---------------------------------------------------------------- wire format

/// The `contract.signed_token` block as JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedTokenConfig {
    /// The header carrying the token; `authorization` means
    /// `Authorization: Bearer <token>`.
    #[serde(default)]
    pub header: Option<String>,
    /// `pairwise` (default) or `original`.
    #[serde(default)]
    pub sub: Option<String>,
    /// A duration (`"300s"`, `"5m"` is not accepted: protobuf JSON form).
    #[serde(default)]
    pub lifetime: Option<String>,
}

// -------------------------------------------------------------------- runtime

/// Where the token goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Carrier {
    /// `Authorization: Bearer <token>` (the client's own `Authorization` is
    /// replaced, never appended to).
    Authorization,
    /// A header of this (lowercase) name with the bare token.
    Header(String),
}

/// The form of the minted `sub`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectForm {
    /// A keyed hash per provider (see the module documentation).
    Pairwise,
    /// The MPASSid `sub` as it is.
    Original,
}

/// A compiled `contract.signed_token` for one provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedToken {
    carrier: Carrier,
    sub: SubjectForm,
    lifetime: u64,
    audience: String,
    provider_id: String,
}

/// The MPASSid facts a minted token is built from, besides the released claims.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    /// The verified MPASSid token's `iss`.
    pub issuer: &'a str,
    /// Its `sub`.
    pub subject: &'a str,
    /// Its `exp` (seconds since the epoch).
    pub exp: u64,
}

/// A minted token and the times the cache needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Minted {
    /// The compact JWS.
    pub token: String,
    /// Its `iat`.
    pub iat: u64,
    /// Its `exp`.
    pub exp: u64,
    /// Whether `exp` is the MPASSid token's `exp` (re-minting cannot extend it).
    pub capped_by_source: bool,
}

/// Why no token could be minted for this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MintError {
    /// The MPASSid token expires now or earlier (accepted within clock skew):
    /// any token minted from it would already be expired.
    SourceExpired,
    /// Signing or the random source failed.
    Signing,
}

impl fmt::Display for MintError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MintError::SourceExpired => {
                "the mpassid token expires before a minted token could live"
            }
            MintError::Signing => "signing the gateway token failed",
        })
    }
}

impl std::error::Error for MintError {}

impl From<SignError> for MintError {
    fn from(_: SignError) -> Self {
        MintError::Signing
    }
}

impl SignedToken {
    /// Compiles and checks a provider's `signed_token` block. `path` is its
    /// field path (`providers.studeo.contract.signed_token`); `audience` is
    /// the minted `aud` (the provider's first configured audience, its
    /// MPASSid client id, which the service already knows); `gateway` is the
    /// compiled top-level `gateway` block, if any. Returns load-time
    /// warnings in `warnings`.
    pub fn compile(
        wire: &SignedTokenConfig,
        path: &str,
        provider_id: &str,
        audience: &str,
        gateway: Option<&Gateway>,
        warnings: &mut Vec<String>,
    ) -> Result<SignedToken, ConfigError> {
        let Some(gateway) = gateway else {
            return Err(ConfigError::new(
                path,
                "a signed token needs the top-level `gateway` block (issuer and keys)",
            ));
        };
        if audience.is_empty() {
            return Err(ConfigError::new(
                path,
                "the provider has no audience to use as `aud`",
            ));
        }
        let hp = join(path, "header");
        let carrier = match wire.header.as_deref() {
            None => Carrier::Header(DEFAULT_HEADER.to_owned()),
            Some(h) if h.eq_ignore_ascii_case("authorization") => Carrier::Authorization,
            Some(h) => {
                check_header_name(h).map_err(|m| ConfigError::new(&hp, m))?;
                Carrier::Header(h.to_owned())
            }
        };
        let sp = join(path, "sub");
        let sub = match wire.sub.as_deref() {
            None | Some("pairwise") => SubjectForm::Pairwise,
            Some("original") => {
                warnings.push(format!(
                    "{sp}: `original` gives every provider the same MPASSid subject, so providers can link a user; `pairwise` cannot be linked"
                ));
                SubjectForm::Original
            }
            Some(other) => {
                return Err(ConfigError::new(
                    sp,
                    format!("`{other}` is not a subject form (pairwise or original)"),
                ))
            }
        };
        if sub == SubjectForm::Pairwise && gateway.pairwise_key().is_none() {
            return Err(ConfigError::new(
                sp,
                "a pairwise subject needs gateway.pairwise_key_env",
            ));
        }
        let lp = join(path, "lifetime");
        let lifetime = match wire.lifetime.as_deref() {
            None => DEFAULT_LIFETIME_SECONDS,
            Some(raw) => {
                let ms = crate::config::parse_duration_ms(raw)
                    .ok_or_else(|| ConfigError::new(&lp, "not a duration (e.g. \"300s\")"))?;
                if ms % 1000 != 0 || ms == 0 {
                    return Err(ConfigError::new(
                        &lp,
                        "must be a whole number of seconds, at least 1s",
                    ));
                }
                if ms / 1000 > MAX_LIFETIME_SECONDS {
                    return Err(ConfigError::new(
                        &lp,
                        format!("must be at most {MAX_LIFETIME_SECONDS}s"),
                    ));
                }
                ms / 1000
            }
        };
        Ok(SignedToken {
            carrier,
            sub,
            lifetime,
            audience: audience.to_owned(),
            provider_id: provider_id.to_owned(),
        })
    }

    /// Where the token goes.
    pub fn carrier(&self) -> &Carrier {
        &self.carrier
    }

    /// The header name and value that carry `token` (set, never appended).
    pub fn header(&self, token: &str) -> (String, String) {
        match &self.carrier {
            Carrier::Authorization => ("authorization".to_owned(), format!("Bearer {token}")),
            Carrier::Header(h) => (h.clone(), token.to_owned()),
        }
    }

    /// The subject form.
    pub fn subject_form(&self) -> SubjectForm {
        self.sub
    }

    /// The configured lifetime, in seconds.
    pub fn lifetime(&self) -> u64 {
        self.lifetime
    }

    /// The minted `aud`.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The claims of the token this request gets, without signing it (the
    /// `jti` is left out: `explain` shows these).
    pub fn claims(
        &self,
        gateway: &Gateway,
        released: &Map<String, Value>,
        source: &Source<'_>,
        contract_version: &str,
        now: u64,
    ) -> Result<(Map<String, Value>, bool), MintError> {
        if source.exp <= now {
            return Err(MintError::SourceExpired);
        }
        let limit = now.saturating_add(self.lifetime);
        let (exp, capped) = if source.exp <= limit {
            (source.exp, true)
        } else {
            (limit, false)
        };
        let sub = match self.sub {
            SubjectForm::Original => source.subject.to_owned(),
            SubjectForm::Pairwise => {
                // Checked at compile; without the key nothing is minted
                // rather than a linkable subject.
                let key = gateway.pairwise_key().ok_or(MintError::Signing)?;
                pairwise_subject(key, &self.provider_id, source.issuer, source.subject)
            }
        };
        let mut claims = released.clone();
        claims.insert("iss".into(), Value::from(gateway.issuer()));
        claims.insert("aud".into(), Value::from(self.audience.as_str()));
        claims.insert("sub".into(), Value::from(sub));
        claims.insert("iat".into(), Value::from(now));
        claims.insert("exp".into(), Value::from(exp));
        claims.insert(CONTRACT_VERSION_CLAIM.into(), Value::from(contract_version));
        Ok((claims, capped))
    }

    /// Mints the token for one request at `now` (seconds since the epoch).
    pub fn mint(
        &self,
        gateway: &Gateway,
        released: &Map<String, Value>,
        source: &Source<'_>,
        contract_version: &str,
        now: u64,
    ) -> Result<Minted, MintError> {
        let (mut claims, capped_by_source) =
            self.claims(gateway, released, source, contract_version, now)?;
        let mut jti = [0u8; 16];
        gateway.fill_random(&mut jti)?;
        claims.insert("jti".into(), Value::from(URL_SAFE_NO_PAD.encode(jti)));
        let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(now);
        let json = serde_json::to_vec(&claims).map_err(|_| MintError::Signing)?;
        Ok(Minted {
            token: gateway.sign(&json)?,
            iat: now,
            exp,
            capped_by_source,
        })
    }
}

impl Minted {
    /// Whether a cached token should be replaced at `now`: when it has
    /// expired, or when less than a fifth of its lifetime (at least 30 s, at
    /// most half the lifetime) is left and a new one would live longer.
    /// A token whose `exp` is the MPASSid token's is kept to the end: a new
    /// one would expire at the same second.
    pub fn needs_reminting(&self, now: u64) -> bool {
        if now >= self.exp {
            return true;
        }
        if self.capped_by_source {
            return false;
        }
        let lifetime = self.exp.saturating_sub(self.iat);
        let margin = (lifetime / REMINT_FRACTION)
            .max(REMINT_MIN_SECONDS)
            .min(lifetime / 2);
        self.exp - now < margin
    }
}

/// The MPASSid facts of [`Source`], owned: kept in the token cache entry
/// so a cached token can be re-minted without parsing the claims again.
#[derive(Clone, PartialEq, Eq)]
pub struct OwnedSource {
    issuer: String,
    subject: String,
    exp: u64,
}

// The subject is a claim value: it stays out of Debug output.
impl fmt::Debug for OwnedSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedSource")
            .field("exp", &self.exp)
            .finish_non_exhaustive()
    }
}

impl OwnedSource {
    /// `iss`, `sub` and `exp` of verified MPASSid claims; `None` when one is
    /// missing or mistyped (verification requires them, so only a test or a
    /// token without `exp` meets this, and no token is minted then).
    pub fn from_claims(claims: &Map<String, Value>) -> Option<OwnedSource> {
        Some(OwnedSource {
            issuer: claims.get("iss")?.as_str()?.to_owned(),
            subject: claims.get("sub")?.as_str()?.to_owned(),
            exp: claims.get("exp")?.as_u64()?,
        })
    }

    /// The borrowed form [`SignedToken::mint`] takes.
    pub fn source(&self) -> Source<'_> {
        Source {
            issuer: &self.issuer,
            subject: &self.subject,
            exp: self.exp,
        }
    }
}

/// The minted token of one verified MPASSid token for one provider, as the
/// token cache keeps it: re-minted only when [`Minted::needs_reminting`]
/// says so, or when the contract version it was minted under is not the
/// current one (the cache key includes the contract version).
#[derive(Clone)]
pub struct Slot {
    source: Option<OwnedSource>,
    minted: Option<(Box<str>, Minted)>,
}

// Tokens stay out of Debug output.
impl fmt::Debug for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slot")
            .field("minted", &self.minted.is_some())
            .finish_non_exhaustive()
    }
}

impl Slot {
    /// An empty slot for the token with these verified claims.
    pub fn new(claims: &Map<String, Value>) -> Slot {
        Slot {
            source: OwnedSource::from_claims(claims),
            minted: None,
        }
    }

    /// The token for this request at `now`: the cached one, or a new one
    /// (then cached) when there is none, it nears its end, or it was minted
    /// under another contract version. `released` is the contract's release
    /// for this token and provider.
    pub fn token(
        &mut self,
        st: &SignedToken,
        gateway: &Gateway,
        released: &Map<String, Value>,
        contract_version: &str,
        now: u64,
    ) -> Result<&str, MintError> {
        let fresh = self
            .minted
            .as_ref()
            .is_some_and(|(v, m)| **v == *contract_version && !m.needs_reminting(now));
        if !fresh {
            let source = self.source.as_ref().ok_or(MintError::SourceExpired)?;
            let m = st.mint(gateway, released, &source.source(), contract_version, now)?;
            self.minted = Some((contract_version.into(), m));
        }
        self.minted
            .as_ref()
            .map(|(_, m)| m.token.as_str())
            .ok_or(MintError::Signing)
    }

    /// Approximate bytes held (for the cache's byte bound).
    pub fn size(&self) -> usize {
        let source = self
            .source
            .as_ref()
            .map_or(0, |s| s.issuer.len() + s.subject.len());
        // A minted token is about 4/3 of its claims plus a signature:
        // counted when minted, bounded by the lifetime of the entry.
        source + self.minted.as_ref().map_or(0, |(_, m)| m.token.len())
    }
}

/// The pairwise subject: base64url(HMAC-SHA256(key, len‖provider ‖ len‖issuer ‖ len‖subject)),
/// each length a 4-byte big-endian count, so no two inputs share an encoding.
pub fn pairwise_subject(
    key: &ring::hmac::Key,
    provider_id: &str,
    issuer: &str,
    subject: &str,
) -> String {
    let mut ctx = ring::hmac::Context::with_key(key);
    for part in [provider_id, issuer, subject] {
        let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
        ctx.update(&len.to_be_bytes());
        ctx.update(part.as_bytes());
    }
    URL_SAFE_NO_PAD.encode(ctx.sign().as_ref())
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
    use crate::signing::{peek_claims, GatewayConfig};
    use serde_json::json;

    const NOW: u64 = 1_795_694_400;
    const ED: &str = include_str!("../tests/keys/ed25519.pem");

    fn env(name: &str) -> Option<String> {
        match name {
            "ED_KEY" => Some(ED.into()),
            "PAIRWISE" => Some("k".repeat(32)),
            _ => None,
        }
    }

    fn gateway(pairwise: bool) -> Gateway {
        let mut v = json!({
            "issuer": "https://gw.example",
            "keys": [{ "kid": "ed-1", "alg": "EdDSA", "private_key_env": "ED_KEY", "sign": true }],
        });
        if pairwise {
            v["pairwise_key_env"] = json!("PAIRWISE");
        }
        let wire: GatewayConfig = serde_json::from_value(v).unwrap();
        Gateway::compile(&wire, "gateway", &env).unwrap()
    }

    fn compile_for(
        v: Value,
        provider: &str,
        gw: Option<&Gateway>,
    ) -> Result<SignedToken, ConfigError> {
        let wire: SignedTokenConfig = serde_json::from_value(v).unwrap();
        let mut warnings = Vec::new();
        SignedToken::compile(
            &wire,
            "providers.p.contract.signed_token",
            provider,
            &format!("{provider}-client"),
            gw,
            &mut warnings,
        )
    }

    fn source(exp: u64) -> Source<'static> {
        Source {
            issuer: "https://mpass-proxy.csc.fi",
            subject: "MPASSOID.c5fe0bd0dcb09e1e0d7e2f",
            exp,
        }
    }

    fn released() -> Map<String, Value> {
        json!({
            "given_name": "Maija",
            "urn:mpass.id:schoolCode": ["00001"],
            "sub": "MPASSOID.c5fe0bd0dcb09e1e0d7e2f",
        })
        .as_object()
        .unwrap()
        .clone()
    }

    fn mint(st: &SignedToken, gw: &Gateway, exp: u64) -> Minted {
        st.mint(gw, &released(), &source(exp), "v7", NOW).unwrap()
    }

    #[test]
    fn the_minted_claims_are_the_released_claims_and_the_registered_ones_only() {
        let gw = gateway(true);
        let st = compile_for(json!({}), "p", Some(&gw)).unwrap();
        let m = mint(&st, &gw, NOW + 3600);
        let claims = peek_claims(&m.token).unwrap();
        let mut names: Vec<&str> = claims.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "aud",
                "contract_version",
                "exp",
                "given_name",
                "iat",
                "iss",
                "jti",
                "sub",
                "urn:mpass.id:schoolCode"
            ]
        );
        assert_eq!(claims["iss"], "https://gw.example");
        assert_eq!(claims["aud"], "p-client");
        assert_eq!(claims["iat"], NOW);
        assert_eq!(claims["exp"], NOW + DEFAULT_LIFETIME_SECONDS);
        assert_eq!(claims["contract_version"], "v7");
        assert_eq!(claims["given_name"], "Maija");
        assert_eq!(claims["urn:mpass.id:schoolCode"], json!(["00001"]));
        // The released `sub` never overrides the pairwise one.
        assert_ne!(claims["sub"], "MPASSOID.c5fe0bd0dcb09e1e0d7e2f");
        assert_eq!((m.iat, m.exp, m.capped_by_source), (NOW, NOW + 300, false));
    }

    #[test]
    fn exp_is_never_later_than_the_mpassid_tokens() {
        let gw = gateway(true);
        let st = compile_for(json!({ "lifetime": "3600s" }), "p", Some(&gw)).unwrap();
        let m = mint(&st, &gw, NOW + 120);
        assert_eq!(peek_claims(&m.token).unwrap()["exp"], NOW + 120);
        assert!(m.capped_by_source);
        assert_eq!(
            st.mint(&gw, &released(), &source(NOW), "v7", NOW)
                .unwrap_err(),
            MintError::SourceExpired
        );
    }

    #[test]
    fn pairwise_subjects_differ_between_providers_and_repeat_within_one() {
        let gw = gateway(true);
        let a = compile_for(json!({}), "shop", Some(&gw)).unwrap();
        let b = compile_for(json!({}), "studeo", Some(&gw)).unwrap();
        let sub =
            |st: &SignedToken| peek_claims(&mint(st, &gw, NOW + 600).token).unwrap()["sub"].clone();
        assert_eq!(sub(&a), sub(&a));
        assert_ne!(sub(&a), sub(&b));
        assert_eq!(sub(&a).as_str().unwrap().len(), 43);
        // The inputs are framed: moving a character between fields changes the hash.
        let key = gw.pairwise_key().unwrap();
        assert_ne!(
            pairwise_subject(key, "ab", "c", "d"),
            pairwise_subject(key, "a", "bc", "d")
        );
    }

    #[test]
    fn original_subject_copies_the_mpassid_sub_and_warns() {
        let gw = gateway(false);
        let wire: SignedTokenConfig = serde_json::from_value(json!({ "sub": "original" })).unwrap();
        let mut warnings = Vec::new();
        let st = SignedToken::compile(
            &wire,
            "x.signed_token",
            "p",
            "aud",
            Some(&gw),
            &mut warnings,
        )
        .unwrap();
        assert!(
            warnings
                .iter()
                .any(|w| w.starts_with("x.signed_token.sub: ")),
            "{warnings:?}"
        );
        let claims = peek_claims(&mint(&st, &gw, NOW + 600).token).unwrap();
        assert_eq!(claims["sub"], "MPASSOID.c5fe0bd0dcb09e1e0d7e2f");
    }

    #[test]
    fn every_mint_has_a_new_jti() {
        let gw = gateway(true);
        let st = compile_for(json!({}), "p", Some(&gw)).unwrap();
        let jti = || peek_claims(&mint(&st, &gw, NOW + 600).token).unwrap()["jti"].clone();
        let (a, b) = (jti(), jti());
        assert_ne!(a, b);
        assert_eq!(a.as_str().unwrap().len(), 22);
    }

    #[test]
    fn the_carrier_is_a_header_or_an_authorization_bearer() {
        let gw = gateway(true);
        let st = compile_for(json!({}), "p", Some(&gw)).unwrap();
        assert_eq!(st.header("t"), ("x-mpass-token".to_owned(), "t".to_owned()));
        let st = compile_for(json!({ "header": "Authorization" }), "p", Some(&gw)).unwrap();
        assert_eq!(
            st.header("t"),
            ("authorization".to_owned(), "Bearer t".to_owned())
        );
        let st = compile_for(json!({ "header": "x-shop-assertion" }), "p", Some(&gw)).unwrap();
        assert_eq!(st.carrier(), &Carrier::Header("x-shop-assertion".into()));
    }

    #[test]
    fn bad_signed_token_settings_are_refused_at_their_paths() {
        let gw = gateway(true);
        let path = |v: Value| compile_for(v, "p", Some(&gw)).unwrap_err().path;
        assert_eq!(
            path(json!({ "header": "cookie" })),
            "providers.p.contract.signed_token.header"
        );
        assert_eq!(
            path(json!({ "header": "X-Upper" })),
            "providers.p.contract.signed_token.header"
        );
        assert_eq!(
            path(json!({ "sub": "public" })),
            "providers.p.contract.signed_token.sub"
        );
        for lifetime in ["3601s", "0s", "1.5s", "5m", "soon"] {
            assert_eq!(
                path(json!({ "lifetime": lifetime })),
                "providers.p.contract.signed_token.lifetime",
                "{lifetime}"
            );
        }
        assert_eq!(
            compile_for(json!({ "lifetime": "3600s" }), "p", Some(&gw))
                .unwrap()
                .lifetime(),
            3600
        );
        assert!(serde_json::from_value::<SignedTokenConfig>(json!({ "alg": "ES256" })).is_err());
    }

    #[test]
    fn a_signed_token_needs_the_gateway_and_pairwise_its_key() {
        let e = compile_for(json!({}), "p", None).unwrap_err();
        assert_eq!(e.path, "providers.p.contract.signed_token");
        assert!(e.message.contains("gateway"), "{e}");
        let no_key = gateway(false);
        let e = compile_for(json!({}), "p", Some(&no_key)).unwrap_err();
        assert_eq!(e.path, "providers.p.contract.signed_token.sub");
        assert!(e.message.contains("pairwise_key_env"), "{e}");
    }

    fn verified_claims(exp: u64) -> Map<String, Value> {
        json!({ "iss": "https://mpass-proxy.csc.fi", "sub": "MPASSOID.c5fe0bd0dcb09e1e0d7e2f", "exp": exp })
            .as_object()
            .unwrap()
            .clone()
    }

    #[test]
    fn a_slot_keeps_its_token_until_it_nears_its_end_or_the_contract_changes() {
        let gw = gateway(true);
        let st = compile_for(json!({}), "p", Some(&gw)).unwrap();
        let mut slot = Slot::new(&verified_claims(NOW + 3600));
        let first = slot
            .token(&st, &gw, &released(), "v7", NOW)
            .unwrap()
            .to_owned();
        // Same token while it has more than a fifth of its lifetime left.
        assert_eq!(
            slot.token(&st, &gw, &released(), "v7", NOW + 240).unwrap(),
            first
        );
        // Near its end: a new one, with a later exp.
        let later = slot
            .token(&st, &gw, &released(), "v7", NOW + 241)
            .unwrap()
            .to_owned();
        assert_ne!(later, first);
        assert_eq!(peek_claims(&later).unwrap()["exp"], NOW + 241 + 300);
        // Another contract version: a new token, whatever its age.
        let other = slot
            .token(&st, &gw, &released(), "v8", NOW + 242)
            .unwrap()
            .to_owned();
        assert_ne!(other, later);
        assert_eq!(peek_claims(&other).unwrap()["contract_version"], "v8");
        assert!(slot.size() > other.len());
    }

    #[test]
    fn a_slot_without_an_mpassid_exp_mints_nothing() {
        let gw = gateway(true);
        let st = compile_for(json!({}), "p", Some(&gw)).unwrap();
        let mut claims = verified_claims(NOW + 3600);
        claims.remove("exp");
        let mut slot = Slot::new(&claims);
        assert_eq!(
            slot.token(&st, &gw, &released(), "v7", NOW).unwrap_err(),
            MintError::SourceExpired
        );
        let mut slot = Slot::new(&verified_claims(NOW));
        assert_eq!(
            slot.token(&st, &gw, &released(), "v7", NOW).unwrap_err(),
            MintError::SourceExpired
        );
    }

    #[test]
    fn a_cached_token_is_reminted_near_its_end_unless_the_mpassid_token_ends_first() {
        let gw = gateway(true);
        let st = compile_for(json!({}), "p", Some(&gw)).unwrap();
        let m = mint(&st, &gw, NOW + 3600);
        // 300 s lifetime: the margin is 60 s.
        assert!(!m.needs_reminting(NOW));
        assert!(!m.needs_reminting(NOW + 240));
        assert!(m.needs_reminting(NOW + 241));
        assert!(m.needs_reminting(NOW + 300));
        // A 40 s lifetime: the margin is half of it, 20 s, not 30 s.
        let short = compile_for(json!({ "lifetime": "40s" }), "p", Some(&gw)).unwrap();
        let m = mint(&short, &gw, NOW + 3600);
        assert!(!m.needs_reminting(NOW + 20));
        assert!(m.needs_reminting(NOW + 21));
        // Capped by the MPASSid token: kept until it expires.
        let m = mint(&st, &gw, NOW + 100);
        assert!(!m.needs_reminting(NOW + 99));
        assert!(m.needs_reminting(NOW + 100));
    }
}
