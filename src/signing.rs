//! The gateway's own signing keys (issue 13): the `gateway` configuration
//! block, its compilation into a checked key set, compact JWS signing with
//! the one key that signs, and the public documents a verifier fetches (the
//! JWKS and the OpenID discovery document).
//!
//! Keys are PKCS#8 PEM text from the VM environment, never from the
//! configuration itself, so the plugin configuration (often in a ConfigMap)
//! carries no private key. Several keys may be listed: exactly one signs, the
//! others are only published, so a key can be introduced before it signs and
//! kept published after it stops, and verifiers never see a token whose key
//! they cannot fetch. Every replica given the same keys publishes the same
//! JWKS and mints tokens every replica's consumers accept.
//!
//! Randomness: ECDSA (hedged nonces) and RSA (blinding) in ring need a
//! `SecureRandom`, and ring's only one is `SystemRandom`, which on
//! wasm32-wasip1 is WASI `random_get`. Envoy implements `random_get` with
//! BoringSSL's `RAND_bytes`, and the filter already calls it at every start
//! (std's `HashMap` seeds its hasher through it). Ed25519 needs no randomness.

use std::collections::HashSet;
use std::fmt;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::alg::Alg;
use crate::error::{index, join, ConfigError};

/// Where the JWKS is answered when `jwks_path` is not set.
pub const DEFAULT_JWKS_PATH: &str = "/.well-known/mpass-guard/jwks.json";
/// The discovery document's path under the issuer (OpenID Connect Discovery 1.0, section 4).
pub const DISCOVERY_SUFFIX: &str = "/.well-known/openid-configuration";
/// `cache-control` for the JWKS and discovery answers. Five minutes: a key
/// removed from the set stops verifying within that time at verifiers that
/// honour it, and a new signing key should be published at least this long
/// before it signs.
pub const CACHE_CONTROL: &str = "public, max-age=300";
/// The signing algorithms a gateway key may use.
pub const SIGNING_ALGS: [Alg; 3] = [Alg::ES256, Alg::EdDSA, Alg::RS256];
/// The shortest pairwise key accepted: 256 bits, the HMAC-SHA256 output size.
pub const MIN_PAIRWISE_KEY_BYTES: usize = 32;

// ---------------------------------------------------------------- wire format

/// The `gateway` block as JSON.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// The gateway's issuer URL, the `iss` of every minted token.
    pub issuer: String,
    /// The path the JWKS is answered on (default [`DEFAULT_JWKS_PATH`]).
    #[serde(default)]
    pub jwks_path: Option<String>,
    /// The authorities the JWKS and discovery are answered on; empty: every host.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// The key set: exactly one with `sign: true`.
    pub keys: Vec<GatewayKeyConfig>,
    /// The VM environment variable holding the key of pairwise subjects.
    #[serde(default)]
    pub pairwise_key_env: Option<String>,
}

/// One key of the `gateway.keys` list.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayKeyConfig {
    /// The JWK `kid`, unique in the set.
    pub kid: String,
    /// `ES256`, `EdDSA` or `RS256`.
    pub alg: String,
    /// The VM environment variable holding the PKCS#8 PEM private key.
    pub private_key_env: String,
    /// Whether this key signs (exactly one does); the others are only published.
    #[serde(default)]
    pub sign: bool,
}

// -------------------------------------------------------------------- runtime

enum Pair {
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
    Rsa(RsaKeyPair),
}

/// A checked gateway key: its `kid`, algorithm and private key.
pub struct GatewayKey {
    kid: String,
    alg: Alg,
    pair: Pair,
}

impl fmt::Debug for GatewayKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print private key material.
        f.debug_struct("GatewayKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl GatewayKey {
    /// Parses a PKCS#8 PEM private key for `alg`. The message says what is
    /// wrong, without any of the key's text.
    pub fn from_pem(kid: &str, alg: Alg, pem: &str) -> Result<GatewayKey, String> {
        let der =
            pem_to_der(pem).ok_or("not a PKCS#8 PEM private key (-----BEGIN PRIVATE KEY-----)")?;
        let pair = match alg {
            Alg::ES256 => EcdsaKeyPair::from_pkcs8(
                &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                &der,
                &SystemRandom::new(),
            )
            .map(Pair::Ec)
            .map_err(|_| "not a P-256 private key (ES256 needs one)")?,
            // OpenSSL writes Ed25519 keys as PKCS#8 v1 (no public key
            // inside), which only the "maybe unchecked" loader accepts.
            Alg::EdDSA => Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
                .map(Pair::Ed)
                .map_err(|_| "not an Ed25519 private key (EdDSA needs one)")?,
            Alg::RS256 => RsaKeyPair::from_pkcs8(&der)
                .map(Pair::Rsa)
                .map_err(|_| "not an RSA private key of at least 2048 bits (RS256 needs one)")?,
            other => return Err(unsupported(other.name())),
        };
        Ok(GatewayKey {
            kid: kid.to_owned(),
            alg,
            pair,
        })
    }

    /// The key's `kid`.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The key's algorithm.
    pub fn alg(&self) -> Alg {
        self.alg
    }

    /// The public JWK: `kty`, the public parameters, `kid`, `alg`, `use: sig`.
    pub fn public_jwk(&self) -> Value {
        let b64 = |b: &[u8]| Value::String(URL_SAFE_NO_PAD.encode(b));
        let mut jwk = match &self.pair {
            Pair::Ec(k) => {
                // Uncompressed SEC1 point: 0x04 || x (32) || y (32).
                let p = k.public_key().as_ref();
                json!({
                    "kty": "EC", "crv": "P-256",
                    "x": b64(p.get(1..33).unwrap_or_default()),
                    "y": b64(p.get(33..65).unwrap_or_default()),
                })
            }
            Pair::Ed(k) => {
                json!({ "kty": "OKP", "crv": "Ed25519", "x": b64(k.public_key().as_ref()) })
            }
            Pair::Rsa(k) => {
                let c = signature::RsaPublicKeyComponents::<Vec<u8>>::from(k.public());
                json!({ "kty": "RSA", "n": b64(&c.n), "e": b64(&c.e) })
            }
        };
        if let Value::Object(m) = &mut jwk {
            m.insert("kid".into(), json!(self.kid));
            m.insert("alg".into(), json!(self.alg.name()));
            m.insert("use".into(), json!("sig"));
        }
        jwk
    }

    fn sign(&self, rng: &SystemRandom, message: &[u8]) -> Result<Vec<u8>, SignError> {
        match &self.pair {
            Pair::Ec(k) => k
                .sign(rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| SignError),
            Pair::Ed(k) => Ok(k.sign(message).as_ref().to_vec()),
            Pair::Rsa(k) => {
                let mut sig = vec![0u8; k.public().modulus_len()];
                k.sign(&signature::RSA_PKCS1_SHA256, rng, message, &mut sig)
                    .map_err(|_| SignError)?;
                Ok(sig)
            }
        }
    }
}

fn unsupported(name: &str) -> String {
    format!("unsupported signing algorithm `{name}` (ES256, EdDSA or RS256)")
}

/// Signing failed (in practice: the host's random source failed). The caller
/// must not forward the request without the token it promised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignError;

impl fmt::Display for SignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("signing the gateway token failed")
    }
}

impl std::error::Error for SignError {}

/// The compiled `gateway` block: issuer, key set, published documents.
#[derive(Debug)]
pub struct Gateway {
    issuer: String,
    jwks_path: String,
    discovery_path: String,
    hosts: Vec<String>,
    /// The key that signs.
    signing: GatewayKey,
    /// The keys only published, in configuration order.
    published: Vec<GatewayKey>,
    /// `b64url({"alg","kid","typ"})` of the signing key, followed by `.`.
    header_prefix: String,
    pairwise_key: Option<ring::hmac::Key>,
    jwks_json: String,
    discovery_json: String,
    rng: SystemRandom,
}

impl Gateway {
    /// Compiles and checks the `gateway` block. `path` is its field path
    /// (`gateway`); `env` reads the VM environment.
    pub fn compile(
        wire: &GatewayConfig,
        path: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Gateway, ConfigError> {
        let issuer_path = join(path, "issuer");
        let (origin, base_path) =
            split_issuer(&wire.issuer).map_err(|m| ConfigError::new(&issuer_path, m))?;

        let jwks_path = wire
            .jwks_path
            .clone()
            .unwrap_or_else(|| DEFAULT_JWKS_PATH.to_owned());
        check_path(&jwks_path).map_err(|m| ConfigError::new(join(path, "jwks_path"), m))?;
        let discovery_path = format!("{base_path}{DISCOVERY_SUFFIX}");
        if jwks_path == discovery_path {
            return Err(ConfigError::new(
                join(path, "jwks_path"),
                "must differ from the discovery document's path",
            ));
        }

        let hosts_path = join(path, "hosts");
        let mut hosts = Vec::with_capacity(wire.hosts.len());
        for (i, h) in wire.hosts.iter().enumerate() {
            let h = h.to_ascii_lowercase();
            if h.is_empty()
                || !h.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
                })
            {
                return Err(ConfigError::new(
                    index(&hosts_path, i),
                    "must be an authority (host or host:port)",
                ));
            }
            hosts.push(h);
        }

        let keys_path = join(path, "keys");
        if wire.keys.is_empty() {
            return Err(ConfigError::new(&keys_path, "at least one key is required"));
        }
        let mut keys = Vec::with_capacity(wire.keys.len());
        let mut kids = HashSet::new();
        let mut signer: Option<usize> = None;
        for (i, k) in wire.keys.iter().enumerate() {
            let kp = index(&keys_path, i);
            check_kid(&k.kid).map_err(|m| ConfigError::new(join(&kp, "kid"), m))?;
            if !kids.insert(k.kid.as_str()) {
                return Err(ConfigError::new(
                    join(&kp, "kid"),
                    format!("kid `{}` is listed twice", k.kid),
                ));
            }
            let alg = Alg::from_name(&k.alg)
                .filter(|a| SIGNING_ALGS.contains(a))
                .ok_or_else(|| ConfigError::new(join(&kp, "alg"), unsupported(&k.alg)))?;
            let ep = join(&kp, "private_key_env");
            let pem = env(&k.private_key_env).ok_or_else(|| {
                ConfigError::new(
                    &ep,
                    format!(
                        "environment variable {} is not set in the VM",
                        k.private_key_env
                    ),
                )
            })?;
            let key = GatewayKey::from_pem(&k.kid, alg, &pem)
                .map_err(|m| ConfigError::new(&ep, format!("{}: {m}", k.private_key_env)))?;
            if k.sign {
                if let Some(first) = signer {
                    return Err(ConfigError::new(
                        join(&kp, "sign"),
                        format!(
                            "only one key signs, and {} already does",
                            index(&keys_path, first)
                        ),
                    ));
                }
                signer = Some(i);
            }
            keys.push(key);
        }
        let signer = signer.ok_or_else(|| {
            ConfigError::new(&keys_path, "exactly one key must have `sign: true`")
        })?;
        let signing = keys.remove(signer);
        let published = keys;

        let pairwise_key = match &wire.pairwise_key_env {
            None => None,
            Some(var) => {
                let p = join(path, "pairwise_key_env");
                let value = env(var).ok_or_else(|| {
                    ConfigError::new(
                        &p,
                        format!("environment variable {var} is not set in the VM"),
                    )
                })?;
                if value.len() < MIN_PAIRWISE_KEY_BYTES {
                    return Err(ConfigError::new(
                        p,
                        format!("the pairwise key must be at least {MIN_PAIRWISE_KEY_BYTES} bytes"),
                    ));
                }
                Some(ring::hmac::Key::new(
                    ring::hmac::HMAC_SHA256,
                    value.as_bytes(),
                ))
            }
        };

        let header = json!({ "alg": signing.alg.name(), "kid": signing.kid, "typ": "JWT" });
        let mut header_prefix = URL_SAFE_NO_PAD.encode(header.to_string());
        header_prefix.push('.');

        // The signing key first: a verifier that ignores `kid` tries it first.
        let mut jwks: Vec<Value> = vec![signing.public_jwk()];
        let mut algs: Vec<&str> = vec![signing.alg.name()];
        for k in &published {
            jwks.push(k.public_jwk());
            if !algs.contains(&k.alg.name()) {
                algs.push(k.alg.name());
            }
        }
        let jwks_json = json!({ "keys": jwks }).to_string();
        let jwks_uri = format!("{origin}{jwks_path}");
        let discovery_json = json!({
            "issuer": wire.issuer,
            "jwks_uri": jwks_uri,
            "id_token_signing_alg_values_supported": algs,
            "subject_types_supported": ["pairwise", "public"],
            "claims_supported": ["iss", "aud", "sub", "iat", "exp", "jti", "contract_version"],
        })
        .to_string();

        Ok(Gateway {
            issuer: wire.issuer.clone(),
            jwks_path,
            discovery_path,
            hosts,
            signing,
            published,
            header_prefix,
            pairwise_key,
            jwks_json,
            discovery_json,
            rng: SystemRandom::new(),
        })
    }

    /// The issuer URL, exactly as configured (the `iss` of minted tokens).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The path the JWKS is answered on.
    pub fn jwks_path(&self) -> &str {
        &self.jwks_path
    }

    /// The path the discovery document is answered on: the issuer's path
    /// followed by [`DISCOVERY_SUFFIX`].
    pub fn discovery_path(&self) -> &str {
        &self.discovery_path
    }

    /// Whether the documents are answered on this authority (`host[:port]`,
    /// compared case-insensitively). No configured host means every host.
    pub fn serves_host(&self, authority: &str) -> bool {
        self.hosts.is_empty() || self.hosts.iter().any(|h| h.eq_ignore_ascii_case(authority))
    }

    /// The public JWKS (`{"keys":[...]}`), signing key first.
    pub fn jwks_json(&self) -> &str {
        &self.jwks_json
    }

    /// The discovery document.
    pub fn discovery_json(&self) -> &str {
        &self.discovery_json
    }

    /// Every key, the signing key first, then the published ones in
    /// configuration order.
    pub fn keys(&self) -> impl Iterator<Item = &GatewayKey> + '_ {
        std::iter::once(&self.signing).chain(&self.published)
    }

    /// The key that signs.
    pub fn signing_key(&self) -> &GatewayKey {
        &self.signing
    }

    /// The key of pairwise subjects, if `pairwise_key_env` is set.
    pub fn pairwise_key(&self) -> Option<&ring::hmac::Key> {
        self.pairwise_key.as_ref()
    }

    /// The document this request asks for, if the gateway answers it: a
    /// `GET` or `HEAD` on a configured host (or any, when none is
    /// configured) for exactly the JWKS path or the discovery path (the
    /// query string is ignored). Other methods on these paths, and other
    /// hosts, belong to the upstream.
    pub fn document(&self, method: &str, authority: &str, path: &str) -> Option<&str> {
        if !(method == "GET" || method == "HEAD") || !self.serves_host(authority) {
            return None;
        }
        let path = path.split_once('?').map_or(path, |(p, _)| p);
        if path == self.jwks_path {
            Some(&self.jwks_json)
        } else if path == self.discovery_path {
            Some(&self.discovery_json)
        } else {
            None
        }
    }

    /// Fills `out` from the host's secure random source.
    pub fn fill_random(&self, out: &mut [u8]) -> Result<(), SignError> {
        ring::rand::SecureRandom::fill(&self.rng, out).map_err(|_| SignError)
    }

    /// Signs a claims object (JSON bytes) as a compact JWS with the signing
    /// key; the header is `{"alg","kid","typ":"JWT"}`.
    pub fn sign(&self, claims_json: &[u8]) -> Result<String, SignError> {
        let mut out =
            String::with_capacity(self.header_prefix.len() + claims_json.len() * 4 / 3 + 400);
        out.push_str(&self.header_prefix);
        URL_SAFE_NO_PAD.encode_string(claims_json, &mut out);
        let sig = self.signing_key().sign(&self.rng, out.as_bytes())?;
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(sig, &mut out);
        Ok(out)
    }
}

/// Decodes a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`) to DER. Whitespace
/// is ignored, and so are literal `\n` pairs, which some secret stores and
/// YAML values leave in a PEM written on one line.
pub fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    const BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
    const END: &str = "-----END PRIVATE KEY-----";
    let start = pem.find(BEGIN)? + BEGIN.len();
    let rest = pem.get(start..)?;
    let body = rest.get(..rest.find(END)?)?.replace("\\n", "");
    let body: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    STANDARD.decode(body).ok()
}

/// Splits an issuer URL into its origin (`https://host[:port]`) and its path
/// without a trailing `/`. HTTPS only, except plain HTTP on loopback (tests,
/// demos); no query, fragment or user info (OpenID Connect Discovery 1.0,
/// section 3: the issuer is an https URL with no query or fragment).
fn split_issuer(issuer: &str) -> Result<(String, String), String> {
    let (scheme, rest) = issuer
        .split_once("://")
        .ok_or("must be an https URL (e.g. https://gateway.example)")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (rest.get(..i).unwrap_or(rest), rest.get(i..).unwrap_or("")),
        None => (rest, ""),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err("must name a host and no user info".into());
    }
    if issuer.contains('?') || issuer.contains('#') {
        return Err("must have no query or fragment".into());
    }
    if !issuer.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be printable ASCII without spaces".into());
    }
    let host = authority
        .rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(authority, |(h, _)| h);
    let loopback = matches!(host, "localhost" | "[::1]") || host.starts_with("127.");
    match scheme {
        "https" => {}
        "http" if loopback => {}
        "http" => return Err("must be https (plain http only on loopback)".into()),
        _ => return Err("must be an https URL".into()),
    }
    let path = path.trim_end_matches('/');
    check_path_chars(path)?;
    Ok((format!("{scheme}://{authority}"), path.to_owned()))
}

fn check_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') || path.len() < 2 {
        return Err("must be an absolute path (e.g. /.well-known/mpass-guard/jwks.json)".into());
    }
    check_path_chars(path)
}

fn check_path_chars(path: &str) -> Result<(), String> {
    if path.contains("//") || path.split('/').any(|s| s == "." || s == "..") {
        return Err("must be a normalised path (no empty, `.` or `..` segments)".into());
    }
    if !path
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'.' | b'_' | b'~'))
    {
        return Err("path must be unreserved URL characters (A-Z a-z 0-9 - . _ ~ /)".into());
    }
    Ok(())
}

fn check_kid(kid: &str) -> Result<(), String> {
    if kid.is_empty() || kid.len() > 64 {
        return Err("must be 1-64 characters".into());
    }
    if !kid
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
    {
        return Err("must be unreserved characters (A-Z a-z 0-9 - . _ ~)".into());
    }
    Ok(())
}

/// Reads the claims of a compact JWS without checking it (tests, `explain`).
pub fn peek_claims(token: &str) -> Option<Map<String, Value>> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
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
    use ring::signature::UnparsedPublicKey;

    const EC: &str = include_str!("../tests/keys/ec-p256.pem");
    const ED: &str = include_str!("../tests/keys/ed25519.pem");
    const RSA: &str = include_str!("../tests/keys/rsa-a.pem");
    const RSA_1024: &str = include_str!("../tests/keys/rsa-1024.pem");

    fn env(name: &str) -> Option<String> {
        match name {
            "EC_KEY" => Some(EC.into()),
            "ED_KEY" => Some(ED.into()),
            "RSA_KEY" => Some(RSA.into()),
            "RSA_1024" => Some(RSA_1024.into()),
            "ONE_LINE" => Some(ED.replace('\n', "\\n")),
            "NOT_PEM" => Some("hello".into()),
            "PAIRWISE" => Some("p".repeat(32)),
            "SHORT" => Some("p".repeat(31)),
            _ => None,
        }
    }

    fn wire(v: Value) -> GatewayConfig {
        serde_json::from_value(v).unwrap()
    }

    fn base() -> Value {
        json!({
            "issuer": "https://gw.example",
            "keys": [
                { "kid": "ed-1", "alg": "EdDSA", "private_key_env": "ED_KEY", "sign": true },
                { "kid": "ec-0", "alg": "ES256", "private_key_env": "EC_KEY" },
                { "kid": "rsa-0", "alg": "RS256", "private_key_env": "RSA_KEY" }
            ],
            "pairwise_key_env": "PAIRWISE"
        })
    }

    fn compile(v: Value) -> Result<Gateway, ConfigError> {
        Gateway::compile(&wire(v), "gateway", &env)
    }

    fn error(mutate: impl FnOnce(&mut Value)) -> ConfigError {
        let mut v = base();
        mutate(&mut v);
        compile(v).unwrap_err()
    }

    /// Verifies a compact JWS against one JWK of a published set, with ring.
    fn verifies_with(jwks: &str, token: &str) -> bool {
        let jwks: Value = serde_json::from_str(jwks).unwrap();
        let header: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        let Some(jwk) = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == header["kid"])
        else {
            return false;
        };
        let (input, sig) = token.rsplit_once('.').unwrap();
        let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
        let b = |f: &str| URL_SAFE_NO_PAD.decode(jwk[f].as_str().unwrap()).unwrap();
        match jwk["alg"].as_str().unwrap() {
            "EdDSA" => UnparsedPublicKey::new(&signature::ED25519, b("x"))
                .verify(input.as_bytes(), &sig)
                .is_ok(),
            "ES256" => {
                let mut point = vec![4u8];
                point.extend(b("x"));
                point.extend(b("y"));
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(input.as_bytes(), &sig)
                    .is_ok()
            }
            "RS256" => signature::RsaPublicKeyComponents {
                n: b("n"),
                e: b("e"),
            }
            .verify(
                &signature::RSA_PKCS1_2048_8192_SHA256,
                input.as_bytes(),
                &sig,
            )
            .is_ok(),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn each_algorithm_signs_a_token_its_published_jwk_verifies() {
        for (kid, alg, var) in [
            ("a", "ES256", "EC_KEY"),
            ("b", "EdDSA", "ED_KEY"),
            ("c", "RS256", "RSA_KEY"),
        ] {
            let gw = compile(json!({
                "issuer": "https://gw.example",
                "keys": [{ "kid": kid, "alg": alg, "private_key_env": var, "sign": true }]
            }))
            .unwrap();
            let token = gw.sign(br#"{"sub":"x"}"#).unwrap();
            assert!(verifies_with(gw.jwks_json(), &token), "{alg}");
            let header: Value = serde_json::from_slice(
                &URL_SAFE_NO_PAD
                    .decode(token.split('.').next().unwrap())
                    .unwrap(),
            )
            .unwrap();
            assert_eq!(header, json!({ "alg": alg, "kid": kid, "typ": "JWT" }));
            assert_eq!(peek_claims(&token).unwrap()["sub"], "x");
            // A changed payload no longer verifies.
            let mut parts: Vec<&str> = token.split('.').collect();
            let other = URL_SAFE_NO_PAD.encode(br#"{"sub":"y"}"#);
            parts[1] = &other;
            assert!(!verifies_with(gw.jwks_json(), &parts.join(".")), "{alg}");
        }
    }

    #[test]
    fn the_jwks_publishes_every_key_public_parameters_only_signing_key_first() {
        let gw = compile(base()).unwrap();
        let jwks: Value = serde_json::from_str(gw.jwks_json()).unwrap();
        let keys = jwks["keys"].as_array().unwrap();
        let kids: Vec<&str> = keys.iter().map(|k| k["kid"].as_str().unwrap()).collect();
        assert_eq!(kids, ["ed-1", "ec-0", "rsa-0"]);
        let fields = |k: &Value| {
            let mut f: Vec<String> = k.as_object().unwrap().keys().cloned().collect();
            f.sort();
            f.join(",")
        };
        assert_eq!(fields(&keys[0]), "alg,crv,kid,kty,use,x");
        assert_eq!(fields(&keys[1]), "alg,crv,kid,kty,use,x,y");
        assert_eq!(fields(&keys[2]), "alg,e,kid,kty,n,use");
        assert_eq!(keys[1]["crv"], "P-256");
        assert_eq!(keys[0]["crv"], "Ed25519");
        assert!(keys.iter().all(|k| k["use"] == "sig"));
        // No private parameter of any kind.
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(keys.iter().all(|k| k.get(private).is_none()), "{private}");
        }
        // A token signed with the signing key verifies against the set.
        assert!(verifies_with(gw.jwks_json(), &gw.sign(b"{}").unwrap()));
    }

    #[test]
    fn the_discovery_document_names_the_issuer_jwks_uri_and_algorithms() {
        let mut v = base();
        v["issuer"] = json!("https://gw.example:8443/mpass/");
        v["jwks_path"] = json!("/keys.json");
        let gw = compile(v).unwrap();
        let d: Value = serde_json::from_str(gw.discovery_json()).unwrap();
        assert_eq!(d["issuer"], "https://gw.example:8443/mpass/");
        assert_eq!(d["jwks_uri"], "https://gw.example:8443/keys.json");
        assert_eq!(
            d["id_token_signing_alg_values_supported"],
            json!(["EdDSA", "ES256", "RS256"])
        );
        assert_eq!(
            gw.discovery_path(),
            "/mpass/.well-known/openid-configuration"
        );
        assert_eq!(gw.jwks_path(), "/keys.json");
    }

    #[test]
    fn defaults_answer_on_every_host_at_the_well_known_paths() {
        let gw = compile(base()).unwrap();
        assert_eq!(gw.jwks_path(), DEFAULT_JWKS_PATH);
        assert_eq!(gw.discovery_path(), "/.well-known/openid-configuration");
        assert!(gw.serves_host("anything.example"));
        let d: Value = serde_json::from_str(gw.discovery_json()).unwrap();
        assert_eq!(
            d["jwks_uri"],
            "https://gw.example/.well-known/mpass-guard/jwks.json"
        );
    }

    #[test]
    fn configured_hosts_limit_where_the_documents_are_answered() {
        let mut v = base();
        v["hosts"] = json!(["GW.example", "gw.example:8443"]);
        let gw = compile(v).unwrap();
        assert!(gw.serves_host("gw.example"));
        assert!(gw.serves_host("gw.EXAMPLE:8443"));
        assert!(!gw.serves_host("shop.example"));
    }

    #[test]
    fn documents_are_answered_for_get_and_head_on_their_exact_paths_only() {
        let mut v = base();
        v["hosts"] = json!(["gw.example"]);
        let gw = compile(v).unwrap();
        let jwks = gw.jwks_json();
        assert_eq!(
            gw.document("GET", "gw.example", DEFAULT_JWKS_PATH),
            Some(jwks)
        );
        assert_eq!(
            gw.document(
                "HEAD",
                "GW.example",
                "/.well-known/mpass-guard/jwks.json?v=2"
            ),
            Some(jwks)
        );
        assert_eq!(
            gw.document("GET", "gw.example", "/.well-known/openid-configuration"),
            Some(gw.discovery_json())
        );
        assert_eq!(gw.document("POST", "gw.example", DEFAULT_JWKS_PATH), None);
        assert_eq!(gw.document("GET", "shop.example", DEFAULT_JWKS_PATH), None);
        assert_eq!(
            gw.document("GET", "gw.example", "/.well-known/mpass-guard/jwks.json/x"),
            None
        );
        assert_eq!(
            gw.document("GET", "gw.example", "/.well-known/mpass-guard/JWKS.json"),
            None
        );
    }

    #[test]
    fn a_pem_written_on_one_line_with_escaped_newlines_loads() {
        let gw = compile(json!({
            "issuer": "https://gw.example",
            "keys": [{ "kid": "k", "alg": "EdDSA", "private_key_env": "ONE_LINE", "sign": true }]
        }))
        .unwrap();
        assert!(verifies_with(gw.jwks_json(), &gw.sign(b"{}").unwrap()));
    }

    #[test]
    fn a_key_whose_variable_is_not_set_is_refused_at_its_path() {
        let e = error(|v| v["keys"][1]["private_key_env"] = json!("UNSET"));
        assert_eq!(e.path, "gateway.keys[1].private_key_env");
        assert!(e.message.contains("UNSET is not set"), "{e}");
    }

    #[test]
    fn a_malformed_key_is_refused_without_echoing_it() {
        let e = error(|v| v["keys"][0]["private_key_env"] = json!("NOT_PEM"));
        assert_eq!(e.path, "gateway.keys[0].private_key_env");
        assert!(e.message.contains("not a PKCS#8 PEM"), "{e}");
        assert!(!e.message.contains("hello"), "{e}");
    }

    #[test]
    fn a_key_of_the_wrong_kind_for_its_algorithm_is_refused() {
        let e = error(|v| v["keys"][1]["private_key_env"] = json!("ED_KEY"));
        assert_eq!(e.path, "gateway.keys[1].private_key_env");
        assert!(e.message.contains("not a P-256 private key"), "{e}");
        let e = error(|v| v["keys"][2]["private_key_env"] = json!("RSA_1024"));
        assert!(e.message.contains("at least 2048 bits"), "{e}");
        let e = error(|v| v["keys"][0]["private_key_env"] = json!("RSA_KEY"));
        assert!(e.message.contains("not an Ed25519 private key"), "{e}");
    }

    #[test]
    fn an_algorithm_outside_es256_eddsa_rs256_is_refused() {
        for alg in ["HS256", "PS256", "none", "es256", "RS512"] {
            let e = error(|v| v["keys"][1]["alg"] = json!(alg));
            assert_eq!(e.path, "gateway.keys[1].alg", "{alg}");
            assert!(e.message.contains("unsupported signing algorithm"), "{e}");
        }
    }

    #[test]
    fn exactly_one_key_signs() {
        let e = error(|v| v["keys"][2]["sign"] = json!(true));
        assert_eq!(e.path, "gateway.keys[2].sign");
        assert!(e.message.contains("gateway.keys[0] already does"), "{e}");
        let e = error(|v| v["keys"][0]["sign"] = json!(false));
        assert_eq!(e.path, "gateway.keys");
        assert!(e.message.contains("exactly one key"), "{e}");
        let e = error(|v| v["keys"] = json!([]));
        assert_eq!(e.path, "gateway.keys");
    }

    #[test]
    fn a_kid_listed_twice_is_refused() {
        let e = error(|v| v["keys"][2]["kid"] = json!("ed-1"));
        assert_eq!(e.path, "gateway.keys[2].kid");
        assert!(e.message.contains("listed twice"), "{e}");
        let e = error(|v| v["keys"][2]["kid"] = json!("a b"));
        assert_eq!(e.path, "gateway.keys[2].kid");
    }

    #[test]
    fn the_issuer_must_be_https_without_query_or_fragment() {
        for bad in [
            "gw.example",
            "http://gw.example",
            "ftp://gw.example",
            "https://gw.example/?a=1",
            "https://u@gw.example",
            "https://gw.example/a b",
            "https:///x",
        ] {
            let e = error(|v| v["issuer"] = json!(bad));
            assert_eq!(e.path, "gateway.issuer", "{bad}");
        }
        for good in [
            "http://127.0.0.1:10000",
            "http://localhost:8080/gw",
            "https://gw.example/mpass",
        ] {
            let mut v = base();
            v["issuer"] = json!(good);
            assert!(compile(v).is_ok(), "{good}");
        }
    }

    #[test]
    fn a_jwks_path_must_be_a_normalised_absolute_path() {
        for bad in [
            "keys.json",
            "/",
            "/a/../b",
            "/a//b",
            "/a?b",
            "/.well-known/openid-configuration",
        ] {
            let e = error(|v| v["jwks_path"] = json!(bad));
            assert_eq!(e.path, "gateway.jwks_path", "{bad}");
        }
    }

    #[test]
    fn the_pairwise_key_must_be_set_and_long_enough() {
        let e = error(|v| v["pairwise_key_env"] = json!("UNSET"));
        assert_eq!(e.path, "gateway.pairwise_key_env");
        let e = error(|v| v["pairwise_key_env"] = json!("SHORT"));
        assert!(e.message.contains("at least 32 bytes"), "{e}");
        assert!(compile(base()).unwrap().pairwise_key().is_some());
    }

    #[test]
    fn unknown_fields_are_refused() {
        let mut v = base();
        v["keys"][0]["private_key"] = json!("inline");
        assert!(serde_json::from_value::<GatewayConfig>(v).is_err());
        let mut v = base();
        v["jwks"] = json!("/x");
        assert!(serde_json::from_value::<GatewayConfig>(v).is_err());
    }

    #[test]
    fn a_key_prints_without_its_private_material() {
        let gw = compile(base()).unwrap();
        let printed = format!("{gw:?}");
        assert!(printed.contains("ed-1"));
        assert!(!printed.contains(&ED[30..60]));
    }
}
