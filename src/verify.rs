//! Token decoding and checks: strict compact-JWS parsing (one base64 and
//! JSON pass over the token), signature verification (ring, and
//! [`crate::rsa_fast`] for RS*/PS*, behind one dispatch,
//! `RingVerifier::verify_signature`), and the registered-claim checks on time
//! and audience.
//!
//! This module knows nothing about providers or configuration: callers pass in
//! the key, secret, time policy, audiences and clock. Errors are classes
//! ([`TokenError::reason`]) and never carry token content.
//!
//! Trust is carried by types, as in jwt-compact: [`Untrusted::decode`] makes
//! an [`Untrusted`] token; the caller picks the key or secret by issuer and
//! `alg`, and [`Untrusted::verify_with_key`] / [`Untrusted::verify_with_secret`]
//! / [`Untrusted::verify_with_keyset`] consume it and return a [`Verified`]
//! one, whose [`Verified::check_times`] and [`Verified::audience`] the caller
//! then asks. Claims read before verification are attacker-controlled and
//! may only be used to choose the key.

use std::cmp::Ordering;
use std::fmt;

use ring::signature::{self, UnparsedPublicKey};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::alg::{Alg, KeyFamily};
use crate::keys::{decode_b64url_strict, KeyMaterial, KeySet, VerifyingKey};
use crate::rsa_fast::{Hash, Padding};

/// The latest time claim we accept: 9999-12-31T23:59:59Z. Real tokens are far
/// below it, and other verifiers' claim parsers (jwt-compact's chrono) refuse
/// times far beyond it, so bounding here keeps the parsers in agreement.
pub const MAX_TIME: i64 = 253_402_300_799;

/// Which code verifies RS*/PS* signatures (the top-level `rsa_verifier`).
/// Both accept the same keys (the JWKS parser enforces the common limits) and
/// must give the same verdict on every signature; `Ring` exists as a kill
/// switch should a defect ever be found in [`crate::rsa_fast`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RsaVerifier {
    /// [`crate::rsa_fast`], with per-key precomputed Montgomery constants.
    #[default]
    Fast,
    /// ring's `RsaPublicKeyComponents::verify` (recomputes the key's
    /// constants on every call: slower, independent code).
    Ring,
}

impl RsaVerifier {
    /// The configuration value.
    pub fn name(self) -> &'static str {
        match self {
            RsaVerifier::Fast => "fast",
            RsaVerifier::Ring => "ring",
        }
    }
}

/// Which code verifies ES256 signatures (the top-level `ec_verifier`).
/// Both accept the same keys (the JWKS parser validates the point as ring
/// does) and must give the same verdict on every signature; `Ring` exists
/// as a kill switch should a defect ever be found in [`crate::p256_fast`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EcVerifier {
    /// [`crate::p256_fast`], with a per-key table of multiples of the key.
    #[default]
    Fast,
    /// ring's `ECDSA_P256_SHA256_FIXED` (no per-key precomputation:
    /// slower, independent code).
    Ring,
}

impl EcVerifier {
    /// The configuration value.
    pub fn name(self) -> &'static str {
        match self {
            EcVerifier::Fast => "fast",
            EcVerifier::Ring => "ring",
        }
    }
}

/// Which code verifies EdDSA (Ed25519) signatures (the top-level
/// `eddsa_verifier`). Both accept the same keys (the JWKS parser keeps every
/// 32-byte key, as ring does) and must give the same verdict on every
/// signature; `Ring` exists as a kill switch should a defect ever be found
/// in [`crate::ed25519_fast`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EddsaVerifier {
    /// [`crate::ed25519_fast`]: the key decoded once, with a per-key table
    /// of multiples.
    #[default]
    Fast,
    /// ring's `ED25519` (decodes the key and runs a double-scalar
    /// multiplication on every call: slower, independent code).
    Ring,
}

impl EddsaVerifier {
    /// The configuration value.
    pub fn name(self) -> &'static str {
        match self {
            EddsaVerifier::Fast => "fast",
            EddsaVerifier::Ring => "ring",
        }
    }
}

/// The verifier choices of a configuration (`rsa_verifier`, `ec_verifier`,
/// `eddsa_verifier`). One choice alone means the default for the others.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Verifiers {
    /// RS*/PS*.
    pub rsa: RsaVerifier,
    /// ES256.
    pub ec: EcVerifier,
    /// EdDSA.
    pub eddsa: EddsaVerifier,
}

impl From<RsaVerifier> for Verifiers {
    fn from(rsa: RsaVerifier) -> Verifiers {
        Verifiers {
            rsa,
            ..Verifiers::default()
        }
    }
}

impl From<EcVerifier> for Verifiers {
    fn from(ec: EcVerifier) -> Verifiers {
        Verifiers {
            ec,
            ..Verifiers::default()
        }
    }
}

impl From<EddsaVerifier> for Verifiers {
    fn from(eddsa: EddsaVerifier) -> Verifiers {
        Verifiers {
            eddsa,
            ..Verifiers::default()
        }
    }
}

/// Why a token was refused. [`TokenError::reason`] gives the class used in
/// HTTP responses and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Not a well-formed compact JWS with JSON object header and claims.
    Malformed,
    /// Larger than the configured limit.
    TooLarge,
    /// `alg` missing, not a string, `none`, or not an algorithm we implement.
    UnsupportedAlgorithm,
    /// A known algorithm the provider does not allow.
    AlgorithmNotAllowed,
    /// The issuer is not a configured provider.
    UnknownIssuer,
    /// No key (or secret) that may verify this token.
    UnknownKey,
    /// The signature does not verify.
    BadSignature,
    /// `exp` has passed.
    Expired,
    /// `nbf` is in the future.
    NotYetValid,
    /// `iat` is in the future.
    IssuedInFuture,
    /// The token lives longer than the policy allows.
    LifetimeTooLong,
    /// `exp` is required and absent.
    MissingExpiration,
    /// No accepted audience in `aud`, or `azp` disagrees.
    AudienceMismatch,
    /// The header has a `crit` list: we understand no extensions.
    UnsupportedCriticalHeader,
    /// A JSON member name appears twice in the claims.
    DuplicateClaim,
    /// A registered claim has the wrong type or range.
    InvalidClaim,
    /// The header `typ` says the JWT is something other than an ID token
    /// (`at+jwt`, `logout+jwt`, `secevent+jwt`, ...), RFC 8725 section 3.11.
    WrongType,
}

impl TokenError {
    /// Short snake_case class, stable, safe to send to clients.
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::Malformed => "malformed",
            TokenError::TooLarge => "too_large",
            TokenError::UnsupportedAlgorithm => "unsupported_algorithm",
            TokenError::AlgorithmNotAllowed => "algorithm_not_allowed",
            TokenError::UnknownIssuer => "unknown_issuer",
            TokenError::UnknownKey => "unknown_key",
            TokenError::BadSignature => "bad_signature",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
            TokenError::IssuedInFuture => "issued_in_future",
            TokenError::LifetimeTooLong => "lifetime_too_long",
            TokenError::MissingExpiration => "missing_expiration",
            TokenError::AudienceMismatch => "audience_mismatch",
            TokenError::UnsupportedCriticalHeader => "unsupported_critical_header",
            TokenError::DuplicateClaim => "duplicate_claim",
            TokenError::InvalidClaim => "invalid_claim",
            TokenError::WrongType => "wrong_token_type",
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenError::Malformed => "malformed token",
            TokenError::TooLarge => "token too large",
            TokenError::UnsupportedAlgorithm => "unsupported algorithm",
            TokenError::AlgorithmNotAllowed => "algorithm not allowed",
            TokenError::UnknownIssuer => "unknown issuer",
            TokenError::UnknownKey => "no key can verify this token",
            TokenError::BadSignature => "bad signature",
            TokenError::Expired => "token expired",
            TokenError::NotYetValid => "token not yet valid",
            TokenError::IssuedInFuture => "token issued in the future",
            TokenError::LifetimeTooLong => "token lifetime too long",
            TokenError::MissingExpiration => "token has no expiration",
            TokenError::AudienceMismatch => "audience mismatch",
            TokenError::UnsupportedCriticalHeader => "unsupported critical header",
            TokenError::DuplicateClaim => "duplicate claim",
            TokenError::InvalidClaim => "invalid claim",
            TokenError::WrongType => "token type is not an id token",
        })
    }
}

impl std::error::Error for TokenError {}

/// Time rules for [`Verified::check_times`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimePolicy {
    /// Tolerated clock difference with the issuer, applied to `exp`, `nbf`, `iat`.
    pub clock_skew_secs: u64,
    /// Longest accepted lifetime (`exp - iat`, or `exp - now` without `iat`).
    pub max_lifetime_secs: Option<u64>,
    /// Whether a token without `exp` is refused (it should be, for ID tokens).
    pub require_expiration: bool,
}

/// A decoded, structurally checked, **not yet verified** token.
pub struct Untrusted {
    /// The JWS signing input, `h64.p64`: the bytes the signature covers.
    signing_input: Vec<u8>,
    /// The signature, decoded from its strict base64url.
    signature: Vec<u8>,
    alg: Alg,
    kid: Option<String>,
    /// The decoded claims JSON, kept for [`Verified::into_retained`].
    payload: Vec<u8>,
    claims: Map<String, Value>,
    exp: Option<i64>,
    nbf: Option<i64>,
    iat: Option<i64>,
    size: usize,
}

// Claims stay out of Debug output so a stray `{:?}` cannot log them.
impl fmt::Debug for Untrusted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Untrusted")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl Untrusted {
    /// Decodes a compact JWS strictly. Nothing is verified: see the module docs.
    ///
    /// The size limit is checked first, before any decoding work. The token
    /// is base64-decoded and parsed once: what the signature check needs
    /// (signing input, signature bytes) is kept from this pass.
    pub fn decode(token: &str, max_bytes: usize) -> Result<Untrusted, TokenError> {
        Parsed::parse(token, max_bytes)?.finish()
    }
}

/// [`Untrusted::decode`] up to the signature part: header and claims
/// decoded and checked, in the order that gives each refusal its reason.
struct Parsed<'t> {
    token: &'t str,
    /// `h64.p64`, the signing input.
    signed: &'t str,
    s64: &'t str,
    header: Map<String, Value>,
    alg: Alg,
    kid: Option<String>,
    payload: Vec<u8>,
    claims: Map<String, Value>,
    exp: Option<i64>,
    nbf: Option<i64>,
    iat: Option<i64>,
}

impl<'t> Parsed<'t> {
    fn parse(token: &'t str, max_bytes: usize) -> Result<Parsed<'t>, TokenError> {
        if token.len() > max_bytes {
            return Err(TokenError::TooLarge);
        }
        // Compact JWS has exactly three parts; a JWE has five. We never decrypt.
        let mut parts = token.split('.');
        let (Some(h64), Some(p64), Some(s64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };

        // The header is read first so that an `alg: none` token (whose
        // signature part is usually empty) is reported as such.
        let header_bytes = decode_b64url_strict(h64).ok_or(TokenError::Malformed)?;
        let header = match parse_strict_object(&header_bytes) {
            Ok(h) => h,
            // A duplicated header member (say two `alg`) is the classic parser
            // differential: refuse it outright.
            Err(_) => return Err(TokenError::Malformed),
        };
        let alg = match header.get("alg") {
            Some(Value::String(name)) => {
                Alg::from_name(name).ok_or(TokenError::UnsupportedAlgorithm)?
            }
            _ => return Err(TokenError::UnsupportedAlgorithm),
        };
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(k)) => Some(k.clone()),
            Some(_) => return Err(TokenError::Malformed),
        };
        match header.get("crit") {
            None => {}
            // RFC 7515 4.1.11: every listed extension must be understood, and
            // we implement none. An empty list is forbidden by the RFC.
            Some(Value::Array(list)) if !list.is_empty() => {
                return Err(TokenError::UnsupportedCriticalHeader)
            }
            Some(_) => return Err(TokenError::Malformed),
        }
        // Explicit typing (RFC 8725 section 3.11): an access token, logout
        // token or security event token of the same issuer and keys must not
        // pass as an ID token. ID tokens carry no `typ`, or the generic `JWT`.
        match header.get("typ") {
            None => {}
            Some(Value::String(t)) if is_plain_jwt_type(t) => {}
            Some(Value::String(_)) => return Err(TokenError::WrongType),
            Some(_) => return Err(TokenError::Malformed),
        }
        // `jku`, `x5u`, `x5c` and `jwk` are deliberately never read: keys come
        // only from configuration and the provider's configured JWKS, never
        // from the token that the key is meant to check.

        if p64.is_empty() || s64.is_empty() {
            return Err(TokenError::Malformed);
        }
        let payload = decode_b64url_strict(p64).ok_or(TokenError::Malformed)?;
        let claims = match parse_strict_object(&payload) {
            Ok(c) => c,
            Err(StrictError::Duplicate) => return Err(TokenError::DuplicateClaim),
            Err(_) => return Err(TokenError::Malformed),
        };
        // A fractional time is rounded towards refusing: `exp` down, `nbf`
        // and `iat` up.
        let exp = time_claim(&claims, "exp", Round::Down)?;
        let nbf = time_claim(&claims, "nbf", Round::Up)?;
        let iat = time_claim(&claims, "iat", Round::Up)?;
        for name in ["iss", "sub", "azp"] {
            if claims.get(name).is_some_and(|v| !v.is_string()) {
                return Err(TokenError::InvalidClaim);
            }
        }
        match claims.get("aud") {
            None | Some(Value::String(_)) => {}
            Some(Value::Array(items)) if items.iter().all(Value::is_string) => {}
            Some(_) => return Err(TokenError::InvalidClaim),
        }

        let signed = token
            .get(..h64.len() + 1 + p64.len())
            .ok_or(TokenError::Malformed)?;
        Ok(Parsed {
            token,
            signed,
            s64,
            header,
            alg,
            kid,
            payload,
            claims,
            exp,
            nbf,
            iat,
        })
    }

    /// The header members other verifiers read, and the signature. These
    /// refusals come last, where jwt-compact made them when it parsed the
    /// token a second time (up to mpass-guard 0.2): a token refused by
    /// several checks keeps the reason it had.
    fn finish(self) -> Result<Untrusted, TokenError> {
        if !header_members_well_typed(&self.header) {
            return Err(TokenError::Malformed);
        }
        let signature = decode_b64url_strict(self.s64).ok_or(TokenError::Malformed)?;
        Ok(Untrusted {
            signing_input: self.signed.as_bytes().to_vec(),
            signature,
            alg: self.alg,
            kid: self.kid,
            payload: self.payload,
            claims: self.claims,
            exp: self.exp,
            nbf: self.nbf,
            iat: self.iat,
            size: self.token.len(),
        })
    }
}

impl Untrusted {
    /// The header `alg`.
    pub fn alg(&self) -> Alg {
        self.alg
    }

    /// The header `kid`.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The `iss` claim (unverified until a signature check passes).
    pub fn issuer(&self) -> Option<&str> {
        self.claims.get("iss").and_then(Value::as_str)
    }

    /// The `sub` claim.
    pub fn subject(&self) -> Option<&str> {
        self.claims.get("sub").and_then(Value::as_str)
    }

    /// The `azp` claim.
    pub fn azp(&self) -> Option<&str> {
        self.claims.get("azp").and_then(Value::as_str)
    }

    /// The `aud` values (a single string counts as one).
    pub fn audiences(&self) -> Vec<&str> {
        aud_values(&self.claims)
    }

    /// All claims, parsed strictly (no duplicate names at any depth).
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }

    /// The claims as the JSON text they were decoded from.
    pub fn claims_json(&self) -> &[u8] {
        &self.payload
    }

    /// `exp`, seconds since the epoch.
    pub fn exp(&self) -> Option<i64> {
        self.exp
    }

    /// `nbf`, seconds since the epoch.
    pub fn nbf(&self) -> Option<i64> {
        self.nbf
    }

    /// `iat`, seconds since the epoch.
    pub fn iat(&self) -> Option<i64> {
        self.iat
    }

    /// Size of the whole token in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Length of the JWS signing input (`header.payload`) in bytes.
    pub fn signing_input_len(&self) -> usize {
        self.signing_input.len()
    }

    /// Verifies the signature with a public key (RS*, PS*, ES256, EdDSA).
    ///
    /// An HMAC token is refused with `unknown_key` without looking at the
    /// key: a public key is public, so "verifying" an HS* token with its bytes
    /// as the secret would let anyone forge tokens (algorithm confusion). A
    /// key of another family, or one that declared a different `alg`, is
    /// likewise `unknown_key`: it cannot have made this signature, and the
    /// caller chose the wrong key. Only a real signature check failing is
    /// `bad_signature`.
    fn check_key(&self, key: &VerifyingKey) -> Result<(), TokenError> {
        self.check_key_using(key, Verifiers::default())
    }

    /// [`Self::check_key`] with the verifiers chosen by the caller.
    fn check_key_using(&self, key: &VerifyingKey, with: Verifiers) -> Result<(), TokenError> {
        if self.alg.is_hmac() || !key.accepts(self.alg) {
            return Err(TokenError::UnknownKey);
        }
        self.validate(&RingKey::Public(&key.material), with)
    }

    /// Verifies an HS256/384/512 token with a provider's client secret
    /// (constant-time comparison in ring).
    ///
    /// The secret must come from provider configuration only. Any byte string
    /// passes here if the token was made with it, including the bytes of a
    /// public key: that is why a secret is never derived from a JWKS or a
    /// certificate. Non-HMAC tokens and an empty secret are `unknown_key`.
    fn check_secret(&self, secret: &[u8]) -> Result<(), TokenError> {
        if !self.alg.is_hmac() || secret.is_empty() {
            return Err(TokenError::UnknownKey);
        }
        self.validate(&RingKey::Secret(secret), Verifiers::default())
    }

    /// Verifies against the candidate keys of a key set (by `alg` and `kid`),
    /// returning the key that verified. No candidate is `unknown_key`; if
    /// candidates exist but none verifies, `bad_signature`.
    #[cfg(test)]
    fn find_key<'a>(&self, set: &'a KeySet) -> Result<&'a VerifyingKey, TokenError> {
        self.find_key_using(set, Verifiers::default())
    }

    /// [`Self::find_key`] with the verifiers chosen by the caller.
    fn find_key_using<'a>(
        &self,
        set: &'a KeySet,
        with: Verifiers,
    ) -> Result<&'a VerifyingKey, TokenError> {
        if self.alg.is_hmac() {
            return Err(TokenError::UnknownKey);
        }
        let candidates = set.candidates(self.alg, self.kid());
        if candidates.is_empty() {
            return Err(TokenError::UnknownKey);
        }
        candidates
            .into_iter()
            .find(|k| self.check_key_using(k, with).is_ok())
            .ok_or(TokenError::BadSignature)
    }

    /// The signature check itself. Every claim was checked when the token
    /// was decoded, so a signature that verifies is all that is left.
    fn validate(&self, key: &RingKey<'_>, with: Verifiers) -> Result<(), TokenError> {
        let verifier = RingVerifier {
            alg: self.alg,
            rsa: with.rsa,
            eddsa: with.eddsa,
            ec: with.ec,
        };
        if verifier.verify_signature(&self.signature, key, &self.signing_input) {
            Ok(())
        } else {
            Err(TokenError::BadSignature)
        }
    }

    /// Checks `exp`, `nbf`, `iat` and lifetime against `now` (seconds since the epoch).
    fn check_times(&self, policy: &TimePolicy, now: i64) -> Result<(), TokenError> {
        self.times().check(policy, now)
    }

    /// See [`Verified::audience`].
    fn check_audience(&self, audiences: &[String]) -> Result<String, TokenError> {
        audience_in(&self.claims, audiences)
    }

    /// Verifies the signature with a public key (see `check_key` for the
    /// rules) and hands back the token as [`Verified`].
    pub fn verify_with_key(self, key: &VerifyingKey) -> Result<Verified, TokenError> {
        self.check_key(key)?;
        Ok(Verified { token: self })
    }

    /// Verifies an HS* token with a provider's client secret (see
    /// `check_secret`) and hands back the token as [`Verified`].
    pub fn verify_with_secret(self, secret: &[u8]) -> Result<Verified, TokenError> {
        self.check_secret(secret)?;
        Ok(Verified { token: self })
    }

    /// Verifies against the candidate keys of a key set (by `alg` and
    /// `kid`) and returns the token as [`Verified`] with the key that
    /// verified. No candidate is `unknown_key`; if candidates exist but none
    /// verifies, `bad_signature`.
    pub fn verify_with_keyset(self, set: &KeySet) -> Result<(Verified, &VerifyingKey), TokenError> {
        self.verify_with_keyset_using(set, Verifiers::default())
    }

    /// [`Self::verify_with_keyset`] with RS*/PS* and ES256 signatures
    /// checked by the verifiers chosen (the configuration's `rsa_verifier`
    /// and `ec_verifier`; an [`RsaVerifier`] alone leaves ES256 at its
    /// default); other families are unaffected.
    pub fn verify_with_keyset_using(
        self,
        set: &KeySet,
        with: impl Into<Verifiers>,
    ) -> Result<(Verified, &VerifyingKey), TokenError> {
        let key = self.find_key_using(set, with.into())?;
        Ok((Verified { token: self }, key))
    }

    fn times(&self) -> Times {
        Times {
            exp: self.exp,
            nbf: self.nbf,
            iat: self.iat,
        }
    }
}

/// A token whose signature has been verified: only
/// [`Untrusted::verify_with_key`], [`Untrusted::verify_with_secret`] and
/// [`Untrusted::verify_with_keyset`] make one. Its times and audience are
/// checked by the caller, with [`Verified::check_times`] and
/// [`Verified::audience`], because they depend on the clock and the provider.
pub struct Verified {
    token: Untrusted,
}

// Claims stay out of Debug output, as for `Untrusted`.
impl fmt::Debug for Verified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verified")
            .field("alg", &self.token.alg)
            .field("kid", &self.token.kid)
            .finish_non_exhaustive()
    }
}

impl Verified {
    /// The signed `iss`.
    pub fn issuer(&self) -> Option<&str> {
        self.token.issuer()
    }

    /// The signed claims.
    pub fn claims(&self) -> &Map<String, Value> {
        self.token.claims()
    }

    /// The signed claims as the JSON text they were decoded from.
    pub fn claims_json(&self) -> &[u8] {
        self.token.claims_json()
    }

    /// The algorithm the signature was verified with.
    pub fn alg(&self) -> Alg {
        self.token.alg()
    }

    /// The `kid` of the signed header.
    pub fn kid(&self) -> Option<&str> {
        self.token.kid()
    }

    /// Checks `exp`, `nbf`, `iat` and lifetime against `now` (seconds since the epoch).
    pub fn check_times(&self, policy: &TimePolicy, now: i64) -> Result<(), TokenError> {
        self.token.check_times(policy, now)
    }

    /// The audience of `audiences` this token was issued to: `aud` must hold
    /// one of them, and with several `aud` values and an `azp`, the match
    /// must be `azp` (OpenID Connect Core 3.1.3.7).
    pub fn audience(&self, audiences: &[String]) -> Result<String, TokenError> {
        self.token.check_audience(audiences)
    }

    /// What a cache keeps of a token once it is verified: its times and its
    /// decoded claims JSON, a single allocation instead of the parsed tree.
    pub fn into_retained(self) -> Retained {
        Retained {
            times: self.token.times(),
            payload: self.token.payload.into_boxed_slice(),
        }
    }
}

/// A verified token as a cache holds it (see [`Verified::into_retained`]).
pub struct Retained {
    times: Times,
    payload: Box<[u8]>,
}

impl Retained {
    /// As [`Verified::check_times`].
    pub fn check_times(&self, policy: &TimePolicy, now: i64) -> Result<(), TokenError> {
        self.times.check(policy, now)
    }

    /// The claims, parsed again (they parsed strictly when the token was
    /// decoded, so this fails only if memory was corrupted).
    pub fn claims(&self) -> Result<Map<String, Value>, TokenError> {
        parse_strict_object(&self.payload).map_err(|_| TokenError::Malformed)
    }

    /// Bytes held.
    pub fn size(&self) -> usize {
        self.payload.len()
    }
}

/// As [`Verified::audience`], on the parsed claims of a verified token
/// (a [`Retained`] one, read back from the cache).
pub fn audience_in(
    claims: &Map<String, Value>,
    audiences: &[String],
) -> Result<String, TokenError> {
    let accepted = |a: &str| audiences.iter().any(|want| want == a);
    // Walked in place rather than collected (a cold request asks this once
    // per provider): the same values in the same order as `aud_values`.
    let found = match claims.get("aud") {
        // One value: `azp` is not consulted.
        Some(Value::String(a)) => Some(a.as_str()).filter(|a| accepted(a)),
        Some(Value::Array(items)) => {
            let values = || items.iter().filter_map(Value::as_str);
            let azp = match values().nth(1) {
                Some(_) => claims.get("azp").and_then(Value::as_str),
                None => None,
            };
            values().find(|a| accepted(a) && azp.is_none_or(|azp| azp == *a))
        }
        _ => None,
    };
    found.map(str::to_owned).ok_or(TokenError::AudienceMismatch)
}

/// The `aud` values (a single string counts as one).
fn aud_values(claims: &Map<String, Value>) -> Vec<&str> {
    match claims.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// The registered time claims of a token.
#[derive(Debug, Clone, Copy)]
struct Times {
    exp: Option<i64>,
    nbf: Option<i64>,
    iat: Option<i64>,
}

impl Times {
    fn check(&self, policy: &TimePolicy, now: i64) -> Result<(), TokenError> {
        // i128 so that no combination of i64 times and u64 policy overflows.
        let now = i128::from(now);
        let skew = i128::from(policy.clock_skew_secs);
        match self.exp {
            None if policy.require_expiration => return Err(TokenError::MissingExpiration),
            Some(exp) if now > i128::from(exp) + skew => return Err(TokenError::Expired),
            _ => {}
        }
        if self.nbf.is_some_and(|nbf| i128::from(nbf) > now + skew) {
            return Err(TokenError::NotYetValid);
        }
        if self.iat.is_some_and(|iat| i128::from(iat) > now + skew) {
            return Err(TokenError::IssuedInFuture);
        }
        if let (Some(max), Some(exp)) = (policy.max_lifetime_secs, self.exp) {
            let start = self.iat.map_or(now, i128::from);
            if i128::from(exp) - start > i128::from(max) {
                return Err(TokenError::LifetimeTooLong);
            }
        }
        Ok(())
    }
}

/// Whether a header `typ` names a plain JWT: `JWT` or `application/jwt`,
/// compared case-insensitively (RFC 7515 section 4.1.9: a media type, its
/// `application/` prefix optional).
fn is_plain_jwt_type(typ: &str) -> bool {
    let t = typ.strip_prefix("application/").unwrap_or(typ);
    t.eq_ignore_ascii_case("jwt")
}

/// Whether the header members that other JOSE libraries read have the types
/// they read them as, so that no verifier in the chain parses a header this
/// filter accepted as something else (or fails on it). These are the rules
/// jwt-compact 0.8 applied when it parsed every token a second time: `cty`
/// absent or `json` (a nested JWT, `cty: "JWT"`, is not an ID token); `jku`
/// and `x5u` strings (never fetched: see `Parsed::parse`); `x5t` and
/// `x5t#S256` base64url thumbprints. `null` counts as absent there, as in
/// serde's `Option`. `kid` and `typ` are checked, more strictly, where they
/// are read.
fn header_members_well_typed(header: &Map<String, Value>) -> bool {
    let optional_string = |name: &str| {
        matches!(
            header.get(name),
            None | Some(Value::Null) | Some(Value::String(_))
        )
    };
    let cty = match header.get("cty") {
        None | Some(Value::Null) => true,
        Some(Value::String(cty)) => cty.eq_ignore_ascii_case("json"),
        Some(_) => false,
    };
    cty && optional_string("jku")
        && optional_string("x5u")
        && is_thumbprint(header.get("x5t"), 20)
        && is_thumbprint(header.get("x5t#S256"), 32)
}

/// A certificate thumbprint of `len` bytes (SHA-1: 20, SHA-256: 32) as
/// jwt-compact reads one: base64url with up to two `=` tolerated at the end;
/// exactly `len` bytes, or a longer UTF-8 string (its hex form). Absent or
/// `null` is fine.
fn is_thumbprint(value: Option<&Value>, len: usize) -> bool {
    let encoded = match value {
        None | Some(Value::Null) => return true,
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return false,
    };
    let mut unpadded = encoded;
    for _ in 0..2 {
        unpadded = unpadded.strip_suffix('=').unwrap_or(unpadded);
    }
    let decoded = decode_b64url_strict(unpadded);
    match (unpadded.len() * 3 / 4).cmp(&len) {
        Ordering::Less => false,
        Ordering::Equal => decoded.is_some(),
        Ordering::Greater => decoded.is_some_and(|bytes| std::str::from_utf8(&bytes).is_ok()),
    }
}

/// Which way a fractional NumericDate is rounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Round {
    Down,
    Up,
}

/// A registered time claim: absent, or a non-negative JSON number up to
/// [`MAX_TIME`]. NumericDate may be fractional (RFC 7519 section 2: `1.5`,
/// `1e9`), as jwt_authn accepts; it is rounded the way that refuses sooner
/// (the caller says which) and then compared in whole seconds. Strings,
/// negatives and absurd values (beyond year 9999) are refused rather than
/// coerced.
fn time_claim(
    claims: &Map<String, Value>,
    name: &str,
    round: Round,
) -> Result<Option<i64>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) if !n.is_f64() => match n.as_i64() {
            Some(t) if (0..=MAX_TIME).contains(&t) => Ok(Some(t)),
            _ => Err(TokenError::InvalidClaim),
        },
        Some(Value::Number(n)) => {
            let f = n.as_f64().ok_or(TokenError::InvalidClaim)?;
            if f.is_nan() || f < 0.0 {
                return Err(TokenError::InvalidClaim);
            }
            let whole = match round {
                Round::Down => f.floor(),
                Round::Up => f.ceil(),
            };
            // Checked as a float first, so the conversion cannot saturate.
            if !whole.is_finite() || whole < 0.0 || whole > MAX_TIME as f64 {
                return Err(TokenError::InvalidClaim);
            }
            #[allow(clippy::cast_possible_truncation)]
            Ok(Some(whole as i64))
        }
        Some(_) => Err(TokenError::InvalidClaim),
    }
}

// ---- signature verification ----------------------------------------------

/// What a [`RingVerifier`] verifies with: a public key or an HMAC secret.
enum RingKey<'k> {
    Public(&'k KeyMaterial),
    Secret(&'k [u8]),
}

/// The signature check of one [`Alg`], backed by ring (RSA by
/// [`crate::rsa_fast`], with per-key precomputed Montgomery constants, unless
/// `rsa_verifier` says ring). The algorithm is the header's, chosen by
/// [`Untrusted::decode`]; the key was chosen by issuer and `alg`.
struct RingVerifier {
    alg: Alg,
    rsa: RsaVerifier,
    ec: EcVerifier,
    eddsa: EddsaVerifier,
}

impl RingVerifier {
    /// False whenever the algorithm and the key disagree, whatever the bytes.
    fn verify_signature(&self, sig: &[u8], key: &RingKey<'_>, message: &[u8]) -> bool {
        match (self.alg.family(), key) {
            (KeyFamily::Rsa, RingKey::Public(KeyMaterial::Rsa { public, .. })) => {
                let Some((padding, hash)) = self.alg.rsa_scheme() else {
                    return false;
                };
                // rsa_fast by default: ring recomputes the key's Montgomery
                // constants on every call. An RSA signature is exactly as
                // long as the modulus; both verifiers check that too.
                sig.len() == public.modulus_len()
                    && match self.rsa {
                        RsaVerifier::Fast => public.verify(padding, hash, message, sig),
                        RsaVerifier::Ring => ring_rsa_verify(padding, hash, key, message, sig),
                    }
            }
            // JWS ES256 is the fixed 64-byte r||s form, never DER. Both
            // refuse r or s outside 1..n (r = 0 or s = 0 is the "psychic
            // signature" bug). p256_fast by default: ring has no per-key
            // precomputation.
            (KeyFamily::EcP256, RingKey::Public(KeyMaterial::EcP256 { point, public })) => {
                sig.len() == 64
                    && match self.ec {
                        EcVerifier::Fast => public.verify(message, sig),
                        EcVerifier::Ring => {
                            UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                                .verify(message, sig)
                                .is_ok()
                        }
                    }
            }
            // ed25519_fast by default: ring decodes the key and runs a
            // double-scalar multiplication on every call. Same rules (s < L,
            // R compared as bytes, cofactorless), checked against ring.
            (
                KeyFamily::Ed25519,
                RingKey::Public(KeyMaterial::Ed25519 {
                    public,
                    precomputed,
                }),
            ) => {
                sig.len() == 64
                    && match self.eddsa {
                        EddsaVerifier::Fast => precomputed.verify(message, sig),
                        EddsaVerifier::Ring => UnparsedPublicKey::new(&signature::ED25519, public)
                            .verify(message, sig)
                            .is_ok(),
                    }
            }
            (KeyFamily::Hmac, RingKey::Secret(secret)) => {
                let h = match self.alg {
                    Alg::HS256 => ring::hmac::HMAC_SHA256,
                    Alg::HS384 => ring::hmac::HMAC_SHA384,
                    Alg::HS512 => ring::hmac::HMAC_SHA512,
                    _ => return false,
                };
                // ring::hmac::verify compares in constant time.
                !secret.is_empty()
                    && ring::hmac::verify(&ring::hmac::Key::new(h, secret), message, sig).is_ok()
            }
            _ => false,
        }
    }
}

/// RS*/PS* verification by ring (the `rsa_verifier: "ring"` kill switch).
/// ring's parameter sets allow 2048 to 8192 bits and exponents up to 2^33-1,
/// the limits the JWKS parser already enforces for `rsa_fast`, so the same
/// keys verify with either.
fn ring_rsa_verify(
    padding: Padding,
    hash: Hash,
    key: &RingKey<'_>,
    message: &[u8],
    sig: &[u8],
) -> bool {
    let RingKey::Public(KeyMaterial::Rsa { n, e, .. }) = key else {
        return false;
    };
    let params: &signature::RsaParameters = match (padding, hash) {
        (Padding::Pkcs1v15, Hash::Sha256) => &signature::RSA_PKCS1_2048_8192_SHA256,
        (Padding::Pkcs1v15, Hash::Sha384) => &signature::RSA_PKCS1_2048_8192_SHA384,
        (Padding::Pkcs1v15, Hash::Sha512) => &signature::RSA_PKCS1_2048_8192_SHA512,
        (Padding::Pss, Hash::Sha256) => &signature::RSA_PSS_2048_8192_SHA256,
        (Padding::Pss, Hash::Sha384) => &signature::RSA_PSS_2048_8192_SHA384,
        (Padding::Pss, Hash::Sha512) => &signature::RSA_PSS_2048_8192_SHA512,
    };
    signature::RsaPublicKeyComponents {
        n: n.as_slice(),
        e: e.as_slice(),
    }
    .verify(params, message, sig)
    .is_ok()
}

// ---- strict JSON ----------------------------------------------------------

#[derive(Debug, PartialEq, Eq)]
enum StrictError {
    NotJson,
    NotObject,
    Duplicate,
}

/// A JSON object parsed as strictly as a token's claims (duplicate member
/// names refused at any depth): for other signed or fetched claim sets,
/// such as a userinfo response.
pub fn parse_claims_json(bytes: &[u8]) -> Option<Map<String, Value>> {
    parse_strict_object(bytes).ok()
}

/// Parses a JSON object, refusing duplicate member names at any depth.
/// serde_json alone keeps the last duplicate silently; another verifier in
/// the chain might keep the first, and then the two would disagree on, say,
/// who the issuer is.
fn parse_strict_object(bytes: &[u8]) -> Result<Map<String, Value>, StrictError> {
    // Valid UTF-8 as a whole (every real token) is parsed as a `str`, whose
    // strings serde_json does not validate again one by one (that was about
    // a sixth of the parse). Anything else takes the byte parser, which
    // fails where it always did, so every error keeps its class.
    let parsed = match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::from_str::<StrictValue>(text),
        Err(_) => serde_json::from_slice::<StrictValue>(bytes),
    };
    match parsed {
        Ok(StrictValue(Value::Object(map))) => Ok(map),
        Ok(_) => Err(StrictError::NotObject),
        // Our visitor accepts every JSON shape, so the only data-category
        // error it can raise is the duplicate-name one.
        Err(e) if e.classify() == serde_json::error::Category::Data => Err(StrictError::Duplicate),
        Err(_) => Err(StrictError::NotJson),
    }
}

struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a json value without duplicate member names")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("non-finite number"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(name) = access.next_key::<String>()? {
            // One search per member: the duplicate check finds the slot the
            // value then goes into. The name is refused before its value is
            // parsed, as a duplicate, whatever follows.
            let serde_json::map::Entry::Vacant(slot) = map.entry(name) else {
                // The name itself stays out of the error: it is token content.
                return Err(de::Error::custom("duplicate member name"));
            };
            let StrictValue(v) = access.next_value()?;
            slot.insert(v);
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod reference;

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
    use crate::mint::{load_pem, public_jwk, sign_bytes, sign_compact, sign_raw, SigningKey};
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use serde_json::json;

    /// Fixed clock: 2026-11-26T12:00:00Z.
    const NOW: i64 = 1_795_694_400;
    const MAX: usize = 16 * 1024;
    const SECRET: &[u8] = b"client-secret-from-provider-config-0123456789";
    const ISS: &str = "https://mpass-proxy-test.csc.fi";

    fn key_path(name: &str) -> String {
        format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    fn signing_key(alg: Alg) -> SigningKey {
        match alg.family() {
            KeyFamily::Rsa => load_pem(key_path("rsa-a.pem")).unwrap(),
            KeyFamily::EcP256 => load_pem(key_path("ec-p256.pem")).unwrap(),
            KeyFamily::Ed25519 => load_pem(key_path("ed25519.pem")).unwrap(),
            KeyFamily::Hmac => SigningKey::hmac(SECRET.to_vec()),
        }
    }

    fn verifying_key(file: &str, alg: Option<Alg>) -> VerifyingKey {
        let jwk = public_jwk(&load_pem(key_path(file)).unwrap(), Some(file), alg).unwrap();
        let doc = serde_json::to_vec(&json!({ "keys": [jwk] })).unwrap();
        let (set, _) = KeySet::parse(&doc, &Alg::ALL).unwrap();
        set.keys()[0].clone()
    }

    fn key_file(alg: Alg) -> &'static str {
        match alg.family() {
            KeyFamily::Rsa => "rsa-a.pem",
            KeyFamily::EcP256 => "ec-p256.pem",
            _ => "ed25519.pem",
        }
    }

    fn claims() -> Value {
        json!({
            "iss": ISS,
            "sub": "pairwise-subject",
            "aud": "client-a",
            "iat": NOW - 10,
            "exp": NOW + 3600,
        })
    }

    fn mint(alg: Alg, claims: &Value) -> String {
        let payload = serde_json::to_vec(claims).unwrap();
        sign_compact(alg, &signing_key(alg), &json!({"kid": "k1"}), &payload).unwrap()
    }

    fn mint_raw(alg: Alg, header: &str, payload: &str) -> String {
        sign_raw(
            alg,
            &signing_key(alg),
            header.as_bytes(),
            payload.as_bytes(),
        )
        .unwrap()
    }

    fn verify(alg: Alg, token: &str) -> Result<(), TokenError> {
        let t = Untrusted::decode(token, MAX)?;
        if alg.is_hmac() {
            t.check_secret(SECRET)
        } else {
            t.check_key(&verifying_key(key_file(alg), None))
        }
    }

    fn decode_err(token: &str) -> &'static str {
        Untrusted::decode(token, MAX).unwrap_err().reason()
    }

    fn parts(token: &str) -> Vec<String> {
        token.split('.').map(str::to_owned).collect()
    }

    #[test]
    fn every_algorithm_round_trips_from_signing_to_verification() {
        for alg in Alg::ALL {
            let token = mint(alg, &claims());
            let t = Untrusted::decode(&token, MAX).unwrap();
            assert_eq!(t.alg(), alg);
            assert_eq!(t.kid(), Some("k1"));
            assert_eq!(t.issuer(), Some(ISS));
            assert_eq!(t.size(), token.len());
            assert_eq!(t.signing_input_len(), token.rfind('.').unwrap());
            assert_eq!(verify(alg, &token), Ok(()), "{alg}");
        }
    }

    /// With each verifier choice: a fresh `alg` token verifies against
    /// `ours`; the same token with one signature bit flipped (at byte
    /// `flip`) or its first byte cut is `bad_signature`; and against
    /// `impostor` (the same kid, another key), `bad_signature` too.
    fn assert_each_choice_verifies_and_refuses<V: Copy + fmt::Debug + Into<Verifiers>>(
        alg: Alg,
        ours: &KeySet,
        impostor: Option<&KeySet>,
        choices: &[V],
        flip: usize,
    ) {
        let token = mint(alg, &claims());
        let p = parts(&token);
        let mut sig = URL_SAFE_NO_PAD.decode(&p[2]).unwrap();
        sig[flip] ^= 1;
        let tampered = format!("{}.{}.{}", p[0], p[1], URL_SAFE_NO_PAD.encode(&sig));
        let truncated = format!("{}.{}.{}", p[0], p[1], URL_SAFE_NO_PAD.encode(&sig[1..]));
        for &with in choices {
            let check = |t: &str, set: &KeySet| {
                Untrusted::decode(t, MAX)
                    .unwrap()
                    .verify_with_keyset_using(set, with)
                    .map(|_| ())
            };
            assert_eq!(check(&token, ours), Ok(()), "{alg} {with:?}");
            for bad in [&tampered, &truncated] {
                assert_eq!(
                    check(bad, ours),
                    Err(TokenError::BadSignature),
                    "{alg} {with:?}"
                );
            }
            if let Some(impostor) = impostor {
                assert_eq!(
                    check(&token, impostor),
                    Err(TokenError::BadSignature),
                    "{alg} {with:?}"
                );
            }
        }
    }

    #[test]
    fn both_rsa_verifiers_accept_every_rs_and_ps_token_and_refuse_tampering() {
        let mut a = verifying_key("rsa-a.pem", None);
        a.kid = Some("k1".into());
        let mut b = verifying_key("rsa-b.pem", None);
        b.kid = Some("k1".into());
        let ours = KeySet::from_keys(vec![a]);
        let impostor = KeySet::from_keys(vec![b]);
        for alg in Alg::ALL
            .into_iter()
            .filter(|a| a.family() == KeyFamily::Rsa)
        {
            assert_each_choice_verifies_and_refuses(
                alg,
                &ours,
                Some(&impostor),
                &[RsaVerifier::Fast, RsaVerifier::Ring],
                7,
            );
        }
    }

    #[test]
    fn both_ec_verifiers_accept_es256_tokens_and_refuse_tampering_and_other_keys() {
        let mut k = verifying_key("ec-p256.pem", None);
        k.kid = Some("k1".into());
        let ours = KeySet::from_keys(vec![k]);
        assert_each_choice_verifies_and_refuses(
            Alg::ES256,
            &ours,
            None,
            &[EcVerifier::Fast, EcVerifier::Ring],
            40,
        );
    }

    #[test]
    fn both_eddsa_verifiers_accept_an_eddsa_token_and_refuse_tampering_and_another_key() {
        let mut k = verifying_key("ed25519.pem", None);
        k.kid = Some("k1".into());
        let ours = KeySet::from_keys(vec![k]);
        // Same kid, another Ed25519 key (the base point's encoding).
        let mut base = [0x66u8; 32];
        base[0] = 0x58;
        let impostor = KeySet::from_keys(vec![VerifyingKey {
            kid: Some("k1".into()),
            alg: None,
            material: KeyMaterial::Ed25519 {
                public: base,
                precomputed: crate::ed25519_fast::Ed25519PublicKey::new(base),
            },
        }]);
        assert_each_choice_verifies_and_refuses(
            Alg::EdDSA,
            &ours,
            Some(&impostor),
            &[EddsaVerifier::Fast, EddsaVerifier::Ring],
            40,
        );
    }

    #[test]
    fn the_eddsa_verifier_choice_does_not_touch_other_families() {
        for alg in [Alg::RS256, Alg::ES256] {
            let mut k = verifying_key(key_file(alg), None);
            k.kid = Some("k1".into());
            let set = KeySet::from_keys(vec![k]);
            let t = Untrusted::decode(&mint(alg, &claims()), MAX).unwrap();
            assert!(
                t.verify_with_keyset_using(&set, EddsaVerifier::Ring)
                    .is_ok(),
                "{alg}"
            );
        }
    }

    #[test]
    fn the_ec_verifier_choice_does_not_touch_other_families() {
        for alg in [Alg::RS256, Alg::PS256, Alg::EdDSA] {
            let mut k = verifying_key(key_file(alg), None);
            k.kid = Some("k1".into());
            let set = KeySet::from_keys(vec![k]);
            let t = Untrusted::decode(&mint(alg, &claims()), MAX).unwrap();
            assert!(
                t.verify_with_keyset_using(&set, EcVerifier::Ring).is_ok(),
                "{alg}"
            );
        }
    }

    #[test]
    fn the_rsa_verifier_choice_does_not_touch_other_families() {
        for alg in [Alg::ES256, Alg::EdDSA] {
            let mut k = verifying_key(key_file(alg), None);
            k.kid = Some("k1".into());
            let set = KeySet::from_keys(vec![k]);
            let t = Untrusted::decode(&mint(alg, &claims()), MAX).unwrap();
            assert!(
                t.verify_with_keyset_using(&set, RsaVerifier::Ring).is_ok(),
                "{alg}"
            );
        }
    }

    #[test]
    fn a_token_signed_by_another_key_has_a_bad_signature() {
        for alg in [Alg::RS256, Alg::PS512] {
            let t = Untrusted::decode(&mint(alg, &claims()), MAX).unwrap();
            let other = verifying_key("rsa-b.pem", None);
            assert_eq!(t.check_key(&other), Err(TokenError::BadSignature));
        }
        let t = Untrusted::decode(&mint(Alg::HS256, &claims()), MAX).unwrap();
        assert_eq!(
            t.check_secret(b"another-secret"),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn a_tampered_payload_has_a_bad_signature() {
        let mut evil = claims();
        evil["sub"] = json!("someone-else");
        let other = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&evil).unwrap());
        for alg in Alg::ALL {
            let p = parts(&mint(alg, &claims()));
            let token = format!("{}.{}.{}", p[0], other, p[2]);
            assert_eq!(verify(alg, &token), Err(TokenError::BadSignature), "{alg}");
        }
    }

    #[test]
    fn alg_none_in_any_spelling_or_missing_is_an_unsupported_algorithm() {
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims()).unwrap());
        let headers = [
            r#"{"alg":"none"}"#,
            r#"{"alg":"None"}"#,
            r#"{"alg":"NONE"}"#,
            r#"{"alg":""}"#,
            r#"{"alg":"rs256"}"#,
            r#"{"alg":null}"#,
            r#"{"alg":["RS256"]}"#,
            r#"{"typ":"JWT"}"#,
        ];
        for h in headers {
            let h64 = URL_SAFE_NO_PAD.encode(h);
            for sig in ["", "AAAA"] {
                let token = format!("{h64}.{body}.{sig}");
                assert_eq!(decode_err(&token), "unsupported_algorithm", "{h} {sig:?}");
            }
        }
    }

    #[test]
    fn hs256_token_signed_with_the_rsa_public_key_is_rejected_by_verify_with_key() {
        // The classic algorithm-confusion attack: the attacker knows the
        // public key and uses its bytes, in the forms a careless verifier
        // might hold, as an HMAC secret.
        let key = verifying_key("rsa-a.pem", None);
        let jwk = public_jwk(&load_pem(key_path("rsa-a.pem")).unwrap(), None, None).unwrap();
        let jwk_bytes = serde_json::to_vec(&jwk).unwrap();
        let pem_bytes = std::fs::read(key_path("rsa-a.public.pem")).unwrap();
        let payload = serde_json::to_vec(&claims()).unwrap();
        for public_bytes in [jwk_bytes, pem_bytes] {
            let forged = sign_compact(
                Alg::HS256,
                &SigningKey::hmac(public_bytes.clone()),
                &json!({}),
                &payload,
            )
            .unwrap();
            let t = Untrusted::decode(&forged, MAX).unwrap();
            assert_eq!(t.check_key(&key), Err(TokenError::UnknownKey));
            let set = KeySet::from_keys(vec![key.clone()]);
            assert_eq!(t.find_key(&set), Err(TokenError::UnknownKey));
            // It passes only with that exact byte string as the secret, which
            // is why HS secrets come only from provider configuration.
            assert_eq!(t.check_secret(&public_bytes), Ok(()));
            assert_eq!(t.check_secret(SECRET), Err(TokenError::BadSignature));
        }
    }

    #[test]
    fn a_key_of_another_family_or_declared_alg_is_an_unknown_key() {
        let rs = Untrusted::decode(&mint(Alg::RS256, &claims()), MAX).unwrap();
        assert_eq!(
            rs.check_key(&verifying_key("ec-p256.pem", None)),
            Err(TokenError::UnknownKey)
        );
        assert_eq!(
            rs.check_key(&verifying_key("rsa-a.pem", Some(Alg::PS256))),
            Err(TokenError::UnknownKey)
        );
        assert_eq!(
            rs.check_key(&verifying_key("rsa-a.pem", Some(Alg::RS256))),
            Ok(())
        );
        assert_eq!(rs.check_secret(SECRET), Err(TokenError::UnknownKey));
        let hs = Untrusted::decode(&mint(Alg::HS256, &claims()), MAX).unwrap();
        assert_eq!(hs.check_secret(b""), Err(TokenError::UnknownKey));
    }

    #[test]
    fn keyset_verification_uses_the_kid_and_reports_unknown_or_bad() {
        let mut a = verifying_key("rsa-a.pem", None);
        a.kid = Some("k1".into());
        let mut b = verifying_key("rsa-b.pem", None);
        b.kid = Some("k2".into());
        let t = Untrusted::decode(&mint(Alg::RS256, &claims()), MAX).unwrap();
        let set = KeySet::from_keys(vec![b.clone(), a.clone()]);
        assert_eq!(t.find_key(&set).unwrap().kid.as_deref(), Some("k1"));
        let only_b = KeySet::from_keys(vec![b.clone()]);
        assert_eq!(t.find_key(&only_b), Err(TokenError::UnknownKey));
        b.kid = Some("k1".into());
        let impostor = KeySet::from_keys(vec![b]);
        assert_eq!(t.find_key(&impostor), Err(TokenError::BadSignature));
    }

    #[test]
    fn header_jwk_and_jku_are_never_used_to_find_a_key() {
        let attacker = load_pem(key_path("rsa-b.pem")).unwrap();
        let header = json!({
            "jwk": public_jwk(&attacker, None, None).unwrap(),
            "jku": "https://attacker.example/jwks",
            "x5u": "https://attacker.example/cert",
        });
        let payload = serde_json::to_vec(&claims()).unwrap();
        let token = sign_compact(Alg::RS256, &attacker, &header, &payload).unwrap();
        let t = Untrusted::decode(&token, MAX).unwrap();
        let ours = KeySet::from_keys(vec![verifying_key("rsa-a.pem", None)]);
        assert_eq!(t.find_key(&ours), Err(TokenError::BadSignature));
    }

    #[test]
    fn the_psychic_es256_signature_with_r_and_s_zero_is_rejected() {
        let p = parts(&mint(Alg::ES256, &claims()));
        let zero = URL_SAFE_NO_PAD.encode([0u8; 64]);
        let token = format!("{}.{}.{zero}", p[0], p[1]);
        assert_eq!(verify(Alg::ES256, &token), Err(TokenError::BadSignature));
    }

    #[test]
    fn zero_wrong_length_and_trailing_byte_signatures_are_bad() {
        for alg in Alg::ALL {
            let token = mint(alg, &claims());
            let p = parts(&token);
            let sig = URL_SAFE_NO_PAD.decode(&p[2]).unwrap();
            let mut longer = sig.clone();
            longer.push(0);
            let variants = [
                vec![0u8; sig.len()],
                sig[..sig.len() - 1].to_vec(),
                longer,
                vec![0u8],
            ];
            for v in variants {
                let t = format!("{}.{}.{}", p[0], p[1], URL_SAFE_NO_PAD.encode(&v));
                assert_eq!(
                    verify(alg, &t),
                    Err(TokenError::BadSignature),
                    "{alg} {}",
                    v.len()
                );
            }
            let empty = format!("{}.{}.", p[0], p[1]);
            assert_eq!(decode_err(&empty), "malformed", "{alg}");
        }
    }

    #[test]
    fn a_crit_header_is_refused() {
        let body = serde_json::to_string(&claims()).unwrap();
        let t = mint_raw(
            Alg::RS256,
            r#"{"alg":"RS256","crit":["exp"],"exp":1}"#,
            &body,
        );
        assert_eq!(decode_err(&t), "unsupported_critical_header");
        let t = mint_raw(
            Alg::RS256,
            r#"{"alg":"RS256","b64":false,"crit":["b64"]}"#,
            &body,
        );
        assert_eq!(decode_err(&t), "unsupported_critical_header");
        let t = mint_raw(Alg::RS256, r#"{"alg":"RS256","crit":[]}"#, &body);
        assert_eq!(decode_err(&t), "malformed");
    }

    #[test]
    fn duplicate_members_in_claims_or_header_are_refused() {
        let dup_iss = format!(
            r#"{{"iss":"{ISS}","iss":"https://evil.example","aud":"client-a","exp":{}}}"#,
            NOW + 60
        );
        let t = mint_raw(Alg::RS256, r#"{"alg":"RS256"}"#, &dup_iss);
        assert_eq!(decode_err(&t), "duplicate_claim");
        let nested = r#"{"iss":"x","exp":1,"urn:mpass.id:x":{"a":1,"a":2}}"#;
        let t = mint_raw(Alg::RS256, r#"{"alg":"RS256"}"#, nested);
        assert_eq!(decode_err(&t), "duplicate_claim");
        let t = mint_raw(
            Alg::HS256,
            r#"{"alg":"HS256","alg":"RS256"}"#,
            r#"{"exp":1}"#,
        );
        assert_eq!(decode_err(&t), "malformed");
    }

    #[test]
    fn time_claims_must_be_non_negative_numbers_within_range() {
        let bad = [
            json!("1795694400"),
            json!(-1),
            json!(-0.5),
            json!(u64::MAX),
            json!(MAX_TIME + 1),
            json!(MAX_TIME as f64 + 1.5),
            json!(null),
            json!([1]),
            json!(true),
        ];
        for claim in ["exp", "nbf", "iat"] {
            for value in &bad {
                let mut c = claims();
                c[claim] = value.clone();
                let t = mint(Alg::RS256, &c);
                assert_eq!(decode_err(&t), "invalid_claim", "{claim}={value}");
            }
        }
        for raw in [
            r#"{"exp":1e300}"#,
            r#"{"exp":99999999999999999999}"#,
            r#"{"exp":-1e-9}"#,
        ] {
            let t = mint_raw(Alg::RS256, r#"{"alg":"RS256"}"#, raw);
            assert_eq!(decode_err(&t), "invalid_claim", "{raw}");
        }
    }

    #[test]
    fn fractional_and_exponent_times_are_numeric_dates_rounded_towards_refusal() {
        for (raw, exp, nbf, iat) in [
            (r#"{"exp":1767225600.5}"#, Some(1_767_225_600), None, None),
            (r#"{"exp":1e9}"#, Some(1_000_000_000), None, None),
            (r#"{"exp":1795694400.0}"#, Some(1_795_694_400), None, None),
            (
                r#"{"exp":2000.9,"nbf":1000.1,"iat":1000.000001}"#,
                Some(2000),
                Some(1001),
                Some(1001),
            ),
        ] {
            let t = Untrusted::decode(&mint_raw(Alg::RS256, r#"{"alg":"RS256"}"#, raw), MAX)
                .unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert_eq!((t.exp(), t.nbf(), t.iat()), (exp, nbf, iat), "{raw}");
        }
    }

    #[test]
    fn a_typ_other_than_jwt_is_refused_as_the_wrong_token_type() {
        for typ in [
            "at+jwt",
            "application/at+jwt",
            "logout+jwt",
            "secevent+jwt",
            "JOSE",
            "id_token",
        ] {
            let header = format!(r#"{{"alg":"RS256","typ":"{typ}"}}"#);
            let t = mint_raw(Alg::RS256, &header, r#"{"exp":1}"#);
            assert_eq!(decode_err(&t), "wrong_token_type", "{typ}");
        }
        for typ in ["JWT", "jwt", "application/jwt", "Jwt"] {
            let header = format!(r#"{{"alg":"RS256","typ":"{typ}"}}"#);
            let t = mint_raw(Alg::RS256, &header, r#"{"exp":1}"#);
            assert!(Untrusted::decode(&t, MAX).is_ok(), "{typ}");
        }
        let t = mint_raw(Alg::RS256, r#"{"alg":"RS256","typ":1}"#, r#"{"exp":1}"#);
        assert_eq!(decode_err(&t), "malformed");
    }

    #[test]
    fn iss_aud_azp_and_sub_must_have_their_registered_types() {
        let bad = [
            ("iss", json!(5)),
            ("aud", json!(5)),
            ("aud", json!(["client-a", 5])),
            ("aud", json!({"a": 1})),
            ("azp", json!(["client-a"])),
            ("sub", json!(42)),
        ];
        for (name, value) in bad {
            let mut c = claims();
            c[name] = value.clone();
            assert_eq!(
                decode_err(&mint(Alg::RS256, &c)),
                "invalid_claim",
                "{name}={value}"
            );
        }
    }

    #[test]
    fn base64_must_be_strict_unpadded_url_safe_and_canonical() {
        let token = mint(Alg::RS256, &claims());
        let p = parts(&token);
        let padded_payload = format!("{}.{}=.{}", p[0], p[1], p[2]);
        let std_sig = p[2].replace('-', "+").replace('_', "/");
        assert_ne!(std_sig, p[2], "test signature should contain - or _");
        let std_alphabet = format!("{}.{}.{std_sig}", p[0], p[1]);
        let spaced = format!("{}.{} .{}", p[0], p[1], p[2]);
        let newline = format!("{}\n.{}.{}", p[0], p[1], p[2]);
        // 256 bytes encode to 342 chars whose last one has 4 unused bits, so
        // it is one of A, Q, g, w; the next letter sets an unused bit.
        let mut sig = p[2].clone().into_bytes();
        let last = sig.last_mut().unwrap();
        assert!(b"AQgw".contains(last));
        *last += 1;
        let non_canonical = format!("{}.{}.{}", p[0], p[1], String::from_utf8(sig).unwrap());
        // The signature part follows the same rules.
        let padded_sig = format!("{token}==");
        // 342 + 3 characters: one more than whole bytes can take.
        let ragged_sig = format!("{token}AAA");
        let spaced_sig = format!("{}.{}. {}", p[0], p[1], p[2]);
        let dotted_sig = format!("{}.{}.{}", p[0], p[1], p[2].replacen('A', "%", 1));
        for t in [
            padded_payload,
            std_alphabet,
            spaced,
            newline,
            non_canonical,
            padded_sig,
            ragged_sig,
            spaced_sig,
            dotted_sig,
        ] {
            assert_eq!(decode_err(&t), "malformed", "{t}");
        }
    }

    #[test]
    fn a_cty_other_than_json_is_malformed() {
        let body = serde_json::to_string(&claims()).unwrap();
        for cty in [
            r#""JWT""#,
            r#""jwt""#,
            r#""application/json""#,
            r#""""#,
            "5",
            "[]",
        ] {
            let header = format!(r#"{{"alg":"RS256","cty":{cty}}}"#);
            assert_eq!(
                decode_err(&mint_raw(Alg::RS256, &header, &body)),
                "malformed",
                "{cty}"
            );
        }
        for cty in [r#""json""#, r#""JSON""#, "null"] {
            let header = format!(r#"{{"alg":"RS256","cty":{cty}}}"#);
            assert!(
                Untrusted::decode(&mint_raw(Alg::RS256, &header, &body), MAX).is_ok(),
                "{cty}"
            );
        }
    }

    #[test]
    fn a_jku_or_x5u_that_is_not_a_string_is_malformed() {
        let body = serde_json::to_string(&claims()).unwrap();
        for name in ["jku", "x5u"] {
            for v in ["5", "[]", "{}", "true"] {
                let header = format!(r#"{{"alg":"RS256","{name}":{v}}}"#);
                let t = mint_raw(Alg::RS256, &header, &body);
                assert_eq!(decode_err(&t), "malformed", "{name}={v}");
            }
            for v in [r#""https://attacker.example/""#, "null"] {
                let header = format!(r#"{{"alg":"RS256","{name}":{v}}}"#);
                let t = mint_raw(Alg::RS256, &header, &body);
                assert!(Untrusted::decode(&t, MAX).is_ok(), "{name}={v}");
            }
        }
    }

    #[test]
    fn x5t_thumbprints_must_be_base64url_of_their_digest_length_or_longer_text() {
        let body = serde_json::to_string(&claims()).unwrap();
        let enc = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        for (name, len) in [("x5t", 20), ("x5t#S256", 32)] {
            let good = enc(&vec![7u8; len]);
            let hex = enc("ab".repeat(len).as_bytes());
            let accepted = [
                good.clone(),
                format!("{good}="),
                format!("{good}=="),
                hex.clone(),
            ];
            let refused = [
                format!("{good}==="),
                good[..good.len() - 1].to_owned(),
                // Longer than the digest, and not UTF-8.
                enc(&vec![0xffu8; len + 8]),
                good.replace('H', "+"),
                String::new(),
            ];
            let decode = |v: &str| {
                let header = format!(r#"{{"alg":"RS256","{name}":"{v}"}}"#);
                Untrusted::decode(&mint_raw(Alg::RS256, &header, &body), MAX).map(|_| ())
            };
            for v in accepted {
                assert_eq!(decode(&v), Ok(()), "{name}={v}");
            }
            for v in refused {
                assert_eq!(decode(&v), Err(TokenError::Malformed), "{name}={v}");
            }
            let header = format!(r#"{{"alg":"RS256","{name}":20}}"#);
            assert_eq!(
                decode_err(&mint_raw(Alg::RS256, &header, &body)),
                "malformed"
            );
        }
        // 20 bytes in 27 characters: the last one has two unused bits.
        let mut sha1 = enc(&[7u8; 20]).into_bytes();
        *sha1.last_mut().unwrap() += 1;
        let header = format!(
            r#"{{"alg":"RS256","x5t":"{}"}}"#,
            String::from_utf8(sha1).unwrap()
        );
        assert_eq!(
            decode_err(&mint_raw(Alg::RS256, &header, &body)),
            "malformed"
        );
    }

    #[test]
    fn header_member_and_signature_refusals_come_after_the_claim_checks() {
        let dup = format!(r#"{{"iss":"{ISS}","iss":"x","exp":{}}}"#, NOW + 60);
        let bad_time = r#"{"exp":"soon"}"#;
        for header in [
            r#"{"alg":"RS256","cty":"JWT"}"#,
            r#"{"alg":"RS256","x5t":5}"#,
        ] {
            assert_eq!(
                decode_err(&mint_raw(Alg::RS256, header, &dup)),
                "duplicate_claim"
            );
            assert_eq!(
                decode_err(&mint_raw(Alg::RS256, header, bad_time)),
                "invalid_claim"
            );
        }
        let t = mint_raw(Alg::RS256, r#"{"alg":"RS256"}"#, bad_time);
        assert_eq!(decode_err(&format!("{t}==")), "invalid_claim");
    }

    #[test]
    fn only_three_part_compact_tokens_are_accepted() {
        let token = mint(Alg::RS256, &claims());
        let p = parts(&token);
        let cases = [
            format!("{}.{}", p[0], p[1]),
            format!("{token}.{}", p[2]),
            // A JWE has five parts.
            format!("{}.{}.{}.{}.{}", p[0], p[1], p[2], p[2], p[2]),
            format!("{token}."),
            format!(".{}.{}", p[1], p[2]),
            format!("{}..{}", p[0], p[2]),
            String::new(),
        ];
        for t in cases {
            assert_eq!(decode_err(&t), "malformed");
        }
    }

    #[test]
    fn header_and_claims_must_be_json_objects() {
        let cases = [
            (r#"["RS256"]"#, r#"{"exp":1}"#),
            (r#"{"alg":"RS256""#, r#"{"exp":1}"#),
            (r#"{"alg":"RS256","kid":7}"#, r#"{"exp":1}"#),
            (r#"{"alg":"RS256"}"#, r#"["not","an","object"]"#),
            (r#"{"alg":"RS256"}"#, "not json"),
            (r#"{"alg":"RS256","cty":"JWT"}"#, r#"{"exp":1}"#),
        ];
        for (h, c) in cases {
            assert_eq!(
                decode_err(&mint_raw(Alg::RS256, h, c)),
                "malformed",
                "{h} {c}"
            );
        }
    }

    #[test]
    fn an_oversize_token_is_refused_before_decoding() {
        let token = mint(Alg::RS256, &claims());
        assert_eq!(Untrusted::decode(&token, token.len()).map(|_| ()), Ok(()));
        let err = Untrusted::decode(&token, token.len() - 1).unwrap_err();
        assert_eq!(err.reason(), "too_large");
        // Garbage over the limit is too_large, not malformed: nothing was parsed.
        assert_eq!(decode_err(&"!".repeat(MAX + 1)), "too_large");
    }

    fn times(exp: Option<i64>, nbf: Option<i64>, iat: Option<i64>) -> Untrusted {
        let mut c = json!({"iss": ISS});
        for (name, v) in [("exp", exp), ("nbf", nbf), ("iat", iat)] {
            if let Some(v) = v {
                c[name] = json!(v);
            }
        }
        Untrusted::decode(&mint(Alg::HS256, &c), MAX).unwrap()
    }

    #[test]
    fn time_checks_follow_the_policy_with_a_fixed_clock() {
        let policy = TimePolicy {
            clock_skew_secs: 60,
            max_lifetime_secs: Some(3600),
            require_expiration: true,
        };
        let ok = Ok(());
        type Case = (
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Result<(), TokenError>,
        );
        let cases: [Case; 12] = [
            (Some(NOW + 600), None, Some(NOW), ok),
            (Some(NOW - 60), None, None, ok),
            (Some(NOW - 61), None, None, Err(TokenError::Expired)),
            (None, None, Some(NOW), Err(TokenError::MissingExpiration)),
            (Some(NOW + 600), Some(NOW + 60), None, ok),
            (
                Some(NOW + 600),
                Some(NOW + 61),
                None,
                Err(TokenError::NotYetValid),
            ),
            (
                Some(NOW + 600),
                None,
                Some(NOW + 61),
                Err(TokenError::IssuedInFuture),
            ),
            (Some(NOW + 3600), None, Some(NOW), ok),
            (
                Some(NOW + 3601),
                None,
                Some(NOW),
                Err(TokenError::LifetimeTooLong),
            ),
            (
                Some(NOW + 3601),
                None,
                None,
                Err(TokenError::LifetimeTooLong),
            ),
            (
                Some(NOW + 3000),
                None,
                Some(NOW - 1000),
                Err(TokenError::LifetimeTooLong),
            ),
            (
                Some(MAX_TIME),
                Some(0),
                Some(0),
                Err(TokenError::LifetimeTooLong),
            ),
        ];
        for (exp, nbf, iat, want) in cases {
            let got = times(exp, nbf, iat).check_times(&policy, NOW);
            assert_eq!(got, want, "exp={exp:?} nbf={nbf:?} iat={iat:?}");
        }
        let lax = TimePolicy {
            clock_skew_secs: u64::MAX,
            max_lifetime_secs: None,
            require_expiration: false,
        };
        assert_eq!(times(None, None, None).check_times(&lax, NOW), Ok(()));
        assert_eq!(
            times(Some(0), None, None).check_times(&lax, i64::MAX),
            Ok(())
        );
    }

    #[test]
    fn verification_turns_the_untrusted_token_into_a_verified_one_that_answers_for_its_audience() {
        let token = mint(Alg::RS256, &claims());
        let mut key = verifying_key("rsa-a.pem", None);
        key.kid = Some("k1".into());
        let verified = Untrusted::decode(&token, MAX)
            .unwrap()
            .verify_with_key(&key)
            .unwrap();
        assert_eq!(verified.issuer(), Some(ISS));
        assert_eq!(
            verified.audience(&["client-a".to_owned()]),
            Ok("client-a".to_owned())
        );
        assert_eq!(
            verified.audience(&["client-b".to_owned()]),
            Err(TokenError::AudienceMismatch)
        );
        let policy = TimePolicy {
            clock_skew_secs: 0,
            max_lifetime_secs: None,
            require_expiration: true,
        };
        assert_eq!(verified.check_times(&policy, NOW), Ok(()));
        assert_eq!(
            verified.check_times(&policy, NOW + 7200),
            Err(TokenError::Expired)
        );
        let mut other = verifying_key("rsa-b.pem", None);
        other.kid = Some("k2".into());
        let refused = Untrusted::decode(&token, MAX)
            .unwrap()
            .verify_with_key(&other);
        assert_eq!(refused.err(), Some(TokenError::BadSignature));
        let set = KeySet::from_keys(vec![other, key]);
        let (verified, used) = Untrusted::decode(&token, MAX)
            .unwrap()
            .verify_with_keyset(&set)
            .unwrap();
        assert_eq!(used.kid.as_deref(), Some("k1"));
        assert_eq!(
            verified.claims().get("sub"),
            Some(&json!("pairwise-subject"))
        );
    }

    /// `audience_in` as it was, over the collected `aud` values: the oracle
    /// for the one that walks them in place.
    fn audience_by_vec(claims: &Map<String, Value>, audiences: &[String]) -> Option<String> {
        let token_auds = aud_values(claims);
        let accepted = |a: &str| audiences.iter().any(|want| want == a);
        let azp = match (
            token_auds.len() > 1,
            claims.get("azp").and_then(Value::as_str),
        ) {
            (true, Some(azp)) => Some(azp),
            _ => None,
        };
        token_auds
            .into_iter()
            .find(|a| accepted(a) && azp.is_none_or(|azp| azp == *a))
            .map(str::to_owned)
    }

    proptest::proptest! {
        #[test]
        fn audience_choice_agrees_with_the_collected_values(
            single in proptest::option::of("[abc]"),
            list in proptest::collection::vec("[abc]", 0..4),
            azp in proptest::option::of("[abcd]"),
            want in proptest::collection::vec("[abd]", 0..3),
        ) {
            let mut c = Map::new();
            c.insert("aud".into(), match single {
                Some(a) => json!(a),
                None => json!(list),
            });
            if let Some(azp) = azp {
                c.insert("azp".into(), json!(azp));
            }
            proptest::prop_assert_eq!(audience_in(&c, &want).ok(), audience_by_vec(&c, &want));
        }
    }

    #[test]
    fn audience_must_match_and_azp_must_name_the_match_when_aud_has_several() {
        let want = vec!["client-a".to_owned(), "client-b".to_owned()];
        let cases = [
            (json!("client-a"), None, Ok("client-a")),
            (json!("client-x"), None, Err(TokenError::AudienceMismatch)),
            (json!(["client-x", "client-b"]), None, Ok("client-b")),
            (
                json!(["client-x", "client-b"]),
                Some("client-b"),
                Ok("client-b"),
            ),
            (
                json!(["client-a", "client-b"]),
                Some("client-b"),
                Ok("client-b"),
            ),
            (
                json!(["client-a", "client-x"]),
                Some("client-x"),
                Err(TokenError::AudienceMismatch),
            ),
            (json!("client-a"), Some("someone-else"), Ok("client-a")),
            (json!([]), None, Err(TokenError::AudienceMismatch)),
        ];
        for (aud, azp, expected) in cases {
            let mut c = claims();
            c["aud"] = aud.clone();
            if let Some(azp) = azp {
                c["azp"] = json!(azp);
            }
            let t = Untrusted::decode(&mint(Alg::RS256, &c), MAX).unwrap();
            let got = t.check_audience(&want);
            assert_eq!(got, expected.map(str::to_owned), "aud={aud} azp={azp:?}");
        }
        let mut c = claims();
        c.as_object_mut().unwrap().remove("aud");
        let t = Untrusted::decode(&mint(Alg::RS256, &c), MAX).unwrap();
        assert_eq!(t.check_audience(&want), Err(TokenError::AudienceMismatch));
    }

    #[test]
    fn errors_display_without_token_content_and_reasons_are_snake_case() {
        let all = [
            TokenError::Malformed,
            TokenError::TooLarge,
            TokenError::UnsupportedAlgorithm,
            TokenError::AlgorithmNotAllowed,
            TokenError::UnknownIssuer,
            TokenError::UnknownKey,
            TokenError::BadSignature,
            TokenError::Expired,
            TokenError::NotYetValid,
            TokenError::IssuedInFuture,
            TokenError::LifetimeTooLong,
            TokenError::MissingExpiration,
            TokenError::AudienceMismatch,
            TokenError::UnsupportedCriticalHeader,
            TokenError::DuplicateClaim,
            TokenError::InvalidClaim,
        ];
        for e in all {
            let shown = e.to_string();
            assert_eq!(shown, shown.to_lowercase());
            assert!(!shown.ends_with('.'));
            assert!(e
                .reason()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_'));
        }
        let t = Untrusted::decode(&mint(Alg::RS256, &claims()), MAX).unwrap();
        assert!(!format!("{t:?}").contains("pairwise-subject"));
    }

    #[test]
    fn sign_bytes_and_verify_signature_agree_for_a_raw_signing_input() {
        // Guards the mint/verify pairing independently of the JWS layout.
        let key = signing_key(Alg::EdDSA);
        let sig = sign_bytes(Alg::EdDSA, &key, b"a.b").unwrap();
        let v = RingVerifier {
            alg: Alg::EdDSA,
            rsa: RsaVerifier::Fast,
            ec: EcVerifier::Fast,
            eddsa: EddsaVerifier::Fast,
        };
        let material = verifying_key("ed25519.pem", None).material;
        assert!(v.verify_signature(&sig, &RingKey::Public(&material), b"a.b"));
        assert!(!v.verify_signature(&sig, &RingKey::Secret(SECRET), b"a.b"));
    }
}
