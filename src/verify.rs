//! Token decoding and checks: strict compact-JWS parsing, signature
//! verification (ring, plugged into jwt-compact as one [`Algorithm`]), and the
//! registered-claim checks on time and audience.
//!
//! This module knows nothing about providers or configuration: callers pass in
//! the key, secret, time policy, audiences and clock. Errors are classes
//! ([`TokenError::reason`]) and never carry token content.
//!
//! The intended order for a caller is: [`Untrusted::decode`], pick the key or
//! secret by issuer and `alg`, [`Untrusted::verify_with_key`] /
//! [`Untrusted::verify_with_secret`], then [`Untrusted::check_times`] and
//! [`Untrusted::check_audience`]. Claims read before verification are
//! attacker-controlled and may only be used to choose the key.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use jwt_compact::{Algorithm, AlgorithmExt as _, AlgorithmSignature, Empty, UntrustedToken};
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::alg::{Alg, KeyFamily};
use crate::keys::{decode_b64url_strict, KeyMaterial, KeySet, VerifyingKey};

/// The latest time claim we accept: 9999-12-31T23:59:59Z. Real tokens are far
/// below it, and jwt-compact's own claim parser (chrono) refuses times far
/// beyond it, so bounding here keeps the two parsers in agreement.
pub const MAX_TIME: i64 = 253_402_300_799;

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
        })
    }
}

impl std::error::Error for TokenError {}

/// Time rules for [`Untrusted::check_times`].
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
    token: UntrustedToken<'static, Empty>,
    alg: Alg,
    kid: Option<String>,
    claims: Map<String, Value>,
    exp: Option<i64>,
    nbf: Option<i64>,
    iat: Option<i64>,
    size: usize,
    signing_input_len: usize,
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
    /// The size limit is checked first, before any decoding work.
    pub fn decode(token: &str, max_bytes: usize) -> Result<Untrusted, TokenError> {
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
        // `jku`, `x5u`, `x5c` and `jwk` are deliberately never read: keys come
        // only from configuration and the provider's configured JWKS, never
        // from the token that the key is meant to check.

        if p64.is_empty() || s64.is_empty() {
            return Err(TokenError::Malformed);
        }
        let payload = decode_b64url_strict(p64).ok_or(TokenError::Malformed)?;
        if decode_b64url_strict(s64).is_none() {
            return Err(TokenError::Malformed);
        }
        let claims = match parse_strict_object(&payload) {
            Ok(c) => c,
            Err(StrictError::Duplicate) => return Err(TokenError::DuplicateClaim),
            Err(_) => return Err(TokenError::Malformed),
        };
        let exp = time_claim(&claims, "exp")?;
        let nbf = time_claim(&claims, "nbf")?;
        let iat = time_claim(&claims, "iat")?;
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

        // jwt-compact parses the same bytes again and becomes the owner of
        // header, signed data and signature for the Validator. Our strict
        // checks above ran first, so anything it would disagree on is refused.
        let untrusted = UntrustedToken::<Empty>::new(token)
            .map_err(|_| TokenError::Malformed)?
            .into_owned();
        if untrusted.algorithm() != alg.name() {
            return Err(TokenError::Malformed);
        }
        Ok(Untrusted {
            token: untrusted,
            alg,
            kid,
            claims,
            exp,
            nbf,
            iat,
            size: token.len(),
            signing_input_len: h64.len() + 1 + p64.len(),
        })
    }

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
        match self.claims.get("aud") {
            Some(Value::String(a)) => vec![a.as_str()],
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        }
    }

    /// All claims, parsed strictly (no duplicate names at any depth).
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
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
        self.signing_input_len
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
    pub fn verify_with_key(&self, key: &VerifyingKey) -> Result<(), TokenError> {
        if self.alg.is_hmac() || !key.accepts(self.alg) {
            return Err(TokenError::UnknownKey);
        }
        self.validate(&RingKey::Public(&key.material))
    }

    /// Verifies an HS256/384/512 token with a provider's client secret
    /// (constant-time comparison in ring).
    ///
    /// The secret must come from provider configuration only. Any byte string
    /// passes here if the token was made with it, including the bytes of a
    /// public key: that is why a secret is never derived from a JWKS or a
    /// certificate. Non-HMAC tokens and an empty secret are `unknown_key`.
    pub fn verify_with_secret(&self, secret: &[u8]) -> Result<(), TokenError> {
        if !self.alg.is_hmac() || secret.is_empty() {
            return Err(TokenError::UnknownKey);
        }
        self.validate(&RingKey::Secret(secret))
    }

    /// Verifies against the candidate keys of a key set (by `alg` and `kid`),
    /// returning the key that verified. No candidate is `unknown_key`; if
    /// candidates exist but none verifies, `bad_signature`.
    pub fn verify_with_keyset<'a>(&self, set: &'a KeySet) -> Result<&'a VerifyingKey, TokenError> {
        if self.alg.is_hmac() {
            return Err(TokenError::UnknownKey);
        }
        let candidates = set.candidates(self.alg, self.kid());
        if candidates.is_empty() {
            return Err(TokenError::UnknownKey);
        }
        candidates
            .into_iter()
            .find(|k| self.verify_with_key(k).is_ok())
            .ok_or(TokenError::BadSignature)
    }

    fn validate(&self, key: &RingKey<'_>) -> Result<(), TokenError> {
        let verifier = RingVerifier {
            alg: self.alg,
            _key: PhantomData,
        };
        match verifier.validator::<Empty>(key).validate(&self.token) {
            Ok(_) => Ok(()),
            Err(jwt_compact::ValidationError::MalformedClaims(_)) => Err(TokenError::InvalidClaim),
            Err(_) => Err(TokenError::BadSignature),
        }
    }

    /// Checks `exp`, `nbf`, `iat` and lifetime against `now` (seconds since the epoch).
    pub fn check_times(&self, policy: &TimePolicy, now: i64) -> Result<(), TokenError> {
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

    /// Checks that `aud` holds one of `audiences` and returns the match.
    ///
    /// With several `aud` values and an `azp`, the match must be `azp`
    /// (OpenID Connect Core 3.1.3.7): the token was issued to that party.
    pub fn check_audience(&self, audiences: &[String]) -> Result<String, TokenError> {
        let token_auds = self.audiences();
        let accepted = |a: &str| audiences.iter().any(|want| want == a);
        let azp = match (token_auds.len() > 1, self.azp()) {
            (true, Some(azp)) => Some(azp),
            _ => None,
        };
        token_auds
            .into_iter()
            .find(|a| accepted(a) && azp.map_or(true, |azp| azp == *a))
            .map(str::to_owned)
            .ok_or(TokenError::AudienceMismatch)
    }
}

/// A registered time claim: absent, or a non-negative JSON integer up to
/// [`MAX_TIME`]. Strings, floats (`1.0`, `1e9`) and negatives are refused
/// rather than coerced, so every verifier in the chain reads the same time.
fn time_claim(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) if !n.is_f64() => match n.as_i64() {
            Some(t) if (0..=MAX_TIME).contains(&t) => Ok(Some(t)),
            _ => Err(TokenError::InvalidClaim),
        },
        Some(_) => Err(TokenError::InvalidClaim),
    }
}

// ---- ring as a jwt-compact Algorithm -------------------------------------

/// What a [`RingVerifier`] verifies with: a public key or an HMAC secret.
enum RingKey<'k> {
    Public(&'k KeyMaterial),
    Secret(&'k [u8]),
}

/// Uninhabited: jwt-compact is used only to verify; minting lives in `mint`.
enum NoSigning {}

/// Signature bytes as decoded by jwt-compact; the length check per algorithm
/// happens in `verify_signature`, because the algorithm is chosen at run time.
struct RingSignature(Vec<u8>);

impl AlgorithmSignature for RingSignature {
    fn try_from_slice(slice: &[u8]) -> anyhow::Result<Self> {
        Ok(RingSignature(slice.to_vec()))
    }

    fn as_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.0)
    }
}

/// One jwt-compact [`Algorithm`] for every [`Alg`], backed by ring. Its
/// `name()` is the header `alg` it was built for, so jwt-compact's Validator
/// refuses any token whose header names another algorithm.
struct RingVerifier<'k> {
    alg: Alg,
    _key: PhantomData<&'k ()>,
}

impl<'k> Algorithm for RingVerifier<'k> {
    type SigningKey = NoSigning;
    type VerifyingKey = RingKey<'k>;
    type Signature = RingSignature;

    fn name(&self) -> Cow<'static, str> {
        Cow::Borrowed(self.alg.name())
    }

    fn sign(&self, signing_key: &NoSigning, _message: &[u8]) -> RingSignature {
        match *signing_key {}
    }

    /// False whenever the algorithm and the key disagree, whatever the bytes.
    fn verify_signature(&self, sig: &RingSignature, key: &RingKey<'k>, message: &[u8]) -> bool {
        let sig = sig.0.as_slice();
        match (self.alg.family(), key) {
            (KeyFamily::Rsa, RingKey::Public(KeyMaterial::Rsa { n, e })) => {
                let params = match self.alg {
                    Alg::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                    Alg::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                    Alg::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                    Alg::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
                    Alg::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
                    Alg::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
                    _ => return false,
                };
                // An RSA signature is exactly as long as the modulus.
                sig.len() == n.len()
                    && RsaPublicKeyComponents {
                        n: n.as_slice(),
                        e: e.as_slice(),
                    }
                    .verify(params, message, sig)
                    .is_ok()
            }
            // JWS ES256 is the fixed 64-byte r||s form, never DER. ring
            // refuses r = 0 or s = 0 (the "psychic signature" bug).
            (KeyFamily::EcP256, RingKey::Public(KeyMaterial::EcP256 { point })) => {
                sig.len() == 64
                    && UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                        .verify(message, sig)
                        .is_ok()
            }
            (KeyFamily::Ed25519, RingKey::Public(KeyMaterial::Ed25519 { public })) => {
                sig.len() == 64
                    && UnparsedPublicKey::new(&signature::ED25519, public)
                        .verify(message, sig)
                        .is_ok()
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

// ---- strict JSON ----------------------------------------------------------

#[derive(Debug, PartialEq, Eq)]
enum StrictError {
    NotJson,
    NotObject,
    Duplicate,
}

/// Parses a JSON object, refusing duplicate member names at any depth.
/// serde_json alone keeps the last duplicate silently; another verifier in
/// the chain might keep the first, and then the two would disagree on, say,
/// who the issuer is.
fn parse_strict_object(bytes: &[u8]) -> Result<Map<String, Value>, StrictError> {
    match serde_json::from_slice::<StrictValue>(bytes) {
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
            if map.contains_key(&name) {
                // The name itself stays out of the error: it is token content.
                return Err(de::Error::custom("duplicate member name"));
            }
            let StrictValue(v) = access.next_value()?;
            map.insert(name, v);
        }
        Ok(Value::Object(map))
    }
}
